"""Small PyKMIP-based client for the shell tests.

  kmsd_tool.py DIR PORT CLIENT create N        -> prints N uids
  kmsd_tool.py DIR PORT CLIENT get UID...      -> prints "uid hex" lines
  kmsd_tool.py DIR PORT CLIENT create-get N    -> prints "uid hex" lines
"""
import sys

from kmip.core import enums
from kmip.pie import client

d, port, name, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
args = sys.argv[5:]
c = client.ProxyKmipClient(hostname='127.0.0.1', port=port,
                           cert=f'{d}/clients/{name}/{name}.crt',
                           key=f'{d}/clients/{name}/{name}.key', ca=f'{d}/ca.crt',
                           config_file='/dev/null')
c.open()
if cmd == 'create':
    for _ in range(int(args[0])):
        print(c.create(enums.CryptographicAlgorithm.AES, 256), flush=True)
elif cmd == 'get':
    for uid in args:
        print(uid, c.get(uid).value.hex(), flush=True)
elif cmd == 'create-get':
    for _ in range(int(args[0])):
        uid = c.create(enums.CryptographicAlgorithm.AES, 256)
        print(uid, c.get(uid).value.hex(), flush=True)
else:
    sys.exit(f'unknown command {cmd}')
c.close()
