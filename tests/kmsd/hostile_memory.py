"""A hostile KMIP client that tries to make vmseal-kmsd hold a lot of locked
memory, while a well-behaved client keeps asking for keys. A sampler reads
VmLck of the server (/proc/PID/status) every few milliseconds throughout.

  hostile_memory.py DIR PORT KMSD_PID BOUND_KB MAX_CONN_SECRETS

Attacks (raw TTLV built here):
  1. stalled large messages: 24 connections each announce a 1 MiB request,
     send 600 KiB of it and stall;
  2. thousands of key-material values in one request (each would be a
     secure buffer of its own in the decoder);
  3. a batch of 1000 Get items;
  4. more Get items than one connection may hold key buffers for.
VmLck must stay at or under BOUND_KB, and the good client must be answered
during each attack. Exits non-zero on the first violation."""
import socket
import ssl
import struct
import sys
import threading
import time

from kmip.core import enums, utils
from kmip.core.messages import messages
from kmip.pie import client

d, port, pid, bound_kb, max_conn_secrets = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                                            int(sys.argv[4]), int(sys.argv[5]))

# ---- TTLV ---------------------------------------------------------------------
def item(tag, typ, value):
    pad = (-len(value)) % 8
    return struct.pack('>I', tag)[1:] + bytes([typ]) + struct.pack('>I', len(value)) + value + b'\0' * pad


def st(tag, *children):
    return item(tag, 0x01, b''.join(children))


def integer(tag, v):
    return item(tag, 0x02, struct.pack('>i', v))


def enum(tag, v):
    return item(tag, 0x05, struct.pack('>I', v))


def text(tag, s):
    return item(tag, 0x07, s.encode())


def octets(tag, b):
    return item(tag, 0x08, b)


REQUEST_MESSAGE, REQUEST_HEADER, PROTOCOL_VERSION = 0x420078, 0x420077, 0x420069
MAJOR, MINOR, BATCH_COUNT, BATCH_ITEM = 0x42006A, 0x42006B, 0x42000D, 0x42000F
OPERATION, REQUEST_PAYLOAD, UNIQUE_IDENTIFIER = 0x42005C, 0x420079, 0x420094
OBJECT_TYPE, SYMMETRIC_KEY, KEY_BLOCK, KEY_FORMAT_TYPE = 0x420057, 0x42008F, 0x420040, 0x420042
KEY_VALUE, KEY_MATERIAL = 0x420045, 0x420043
UNIQUE_BATCH_ITEM_ID = 0x420093
OP_REGISTER, OP_GET, OP_DISCOVER = 0x03, 0x0A, 0x1E


def request(items):
    hdr = st(REQUEST_HEADER, st(PROTOCOL_VERSION, integer(MAJOR, 1), integer(MINOR, 2)),
             integer(BATCH_COUNT, len(items)))
    return st(REQUEST_MESSAGE, hdr,
              *[st(BATCH_ITEM, enum(OPERATION, op), octets(UNIQUE_BATCH_ITEM_ID, struct.pack('>I', i)),
                   st(REQUEST_PAYLOAD, *p)) for i, (op, p) in enumerate(items)])


# ---- plumbing -----------------------------------------------------------------
def fail(msg):
    print('FAIL:', msg, flush=True)
    sys.exit(1)


CTX = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
CTX.load_verify_locations(f'{d}/ca.crt')
CTX.load_cert_chain(f'{d}/clients/alice/alice.crt', f'{d}/clients/alice/alice.key')


def connect():
    raw = socket.create_connection(('127.0.0.1', port), timeout=30)
    return CTX.wrap_socket(raw, server_hostname='127.0.0.1')


def recv_message(s):
    try:
        buf = b''
        while len(buf) < 8:
            c = s.recv(8 - len(buf))
            if not c:
                return None
            buf += c
        (n,) = struct.unpack('>I', buf[4:])
        while len(buf) < 8 + n:
            c = s.recv(8 + n - len(buf))
            if not c:
                return None
            buf += c
        return buf
    except (ConnectionResetError, ssl.SSLError, socket.timeout, OSError):
        return None


def decode(resp):
    m = messages.ResponseMessage()
    m.read(utils.BytearrayStream(resp), kmip_version=enums.KMIPVersion.KMIP_1_2)
    return m


def vmlck_kb():
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmLck:'):
                return int(line.split()[1])
    return 0


class Sampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.stop = 0, False

    def run(self):
        while not self.stop:
            self.peak = max(self.peak, vmlck_kb())
            time.sleep(0.002)


def check_peak(sampler, what):
    print(f'  VmLck peak during {what}: {sampler.peak} kB (bound {bound_kb} kB)', flush=True)
    if sampler.peak > bound_kb:
        fail(f'{what}: kmsd held {sampler.peak} kB of locked memory, bound {bound_kb} kB')
    sampler.peak = vmlck_kb()


def good_client(what):
    """A well-behaved PyKMIP client creates and reads a key."""
    c = client.ProxyKmipClient(hostname='127.0.0.1', port=port,
                               cert=f'{d}/clients/bob/bob.crt', key=f'{d}/clients/bob/bob.key',
                               ca=f'{d}/ca.crt', config_file='/dev/null')
    t0 = time.time()
    c.open()
    try:
        uid = c.create(enums.CryptographicAlgorithm.AES, 256)
        if len(c.get(uid).value) != 32:
            fail(f'{what}: the good client got a wrong key')
    except Exception as e:  # noqa: BLE001
        fail(f'{what}: the good client was not served: {e!r}')
    finally:
        c.close()
    print(f'ok the good client is served: {what} ({time.time() - t0:.2f} s)', flush=True)


def result(resp, i=0):
    b = decode(resp).batch_items[i]
    return (b.result_status.value, b.result_reason.value if b.result_reason else None,
            b.result_message.value if b.result_message else '')


sampler = Sampler()
sampler.start()
time.sleep(0.05)
base = vmlck_kb()
print(f'VmLck at rest: {base} kB', flush=True)
good_client('warm-up')

# A key alice may read, for the Get batches
with connect() as s:
    c = client.ProxyKmipClient(hostname='127.0.0.1', port=port,
                               cert=f'{d}/clients/alice/alice.crt',
                               key=f'{d}/clients/alice/alice.key', ca=f'{d}/ca.crt',
                               config_file='/dev/null')
    c.open()
    uid = c.create(enums.CryptographicAlgorithm.AES, 256)
    c.close()

# ---- 1. stalled large messages --------------------------------------------------
N, ANNOUNCED, SENT = 24, 1 << 20, 600 << 10
socks = []
for i in range(N):
    s = connect()
    s.sendall(struct.pack('>I', REQUEST_MESSAGE)[1:] + b'\x01' + struct.pack('>I', ANNOUNCED - 8))
    try:
        s.sendall(b'\0' * SENT)
    except OSError:
        pass  # refused and closed by the server already
    socks.append(s)
time.sleep(1.0)
good_client(f'during {N} stalled 1 MiB messages')
busy = 0
for s in socks:
    s.settimeout(0.5)
    r = recv_message(s)
    if r is not None:
        st_, reason, msg = result(r)
        if 'server busy' not in msg:
            fail(f'stalled message answered with {reason}: {msg}')
        busy += 1
print(f'ok {N} stalled 1 MiB messages: {busy} refused with "server busy", '
      f'{N - busy} held (each buffer grows only with the bytes received)', flush=True)
check_peak(sampler, 'the stalled messages')
for s in socks:
    s.close()

# ---- 2. thousands of key-material values ------------------------------------------
VALUES = 20000
kv = st(KEY_VALUE, *[octets(KEY_MATERIAL, b'') for _ in range(VALUES)])
reg = [OP_REGISTER, [enum(OBJECT_TYPE, 2),
                     st(SYMMETRIC_KEY, st(KEY_BLOCK, enum(KEY_FORMAT_TYPE, 1), kv))]]
with connect() as s:
    s.sendall(request([reg]))
    r = recv_message(s)
    if r is None:
        fail('many key-material values: no answer')
    status, reason, msg = result(r)
    if status != enums.ResultStatus.OPERATION_FAILED or \
            reason != enums.ResultReason.INVALID_MESSAGE or 'key-material values' not in msg:
        fail(f'many key-material values: {status} {reason} {msg}')
    print(f'ok {VALUES} key-material values in one request: Invalid Message ({msg})', flush=True)
    # the connection stays usable
    s.sendall(request([(OP_DISCOVER, [])]))
    if result(recv_message(s))[0] != enums.ResultStatus.SUCCESS:
        fail('the connection after a refused request')
good_client('after the key-material flood')
check_peak(sampler, 'the key-material flood')

# ---- 3. a batch of 1000 Get items ------------------------------------------------
gets = [(OP_GET, [text(UNIQUE_IDENTIFIER, uid)]) for _ in range(1000)]
with connect() as s:
    s.sendall(request(gets))
    r = recv_message(s)
    status, reason, msg = result(r)
    if status != enums.ResultStatus.OPERATION_FAILED or \
            reason != enums.ResultReason.INVALID_MESSAGE or 'max_batch_items' not in msg:
        fail(f'1000 Get items: {status} {reason} {msg}')
    print(f'ok a batch of 1000 Get items: Invalid Message ({msg})', flush=True)
check_peak(sampler, 'the 1000-item batch')

# ---- 4. more Gets than one connection may hold key buffers for --------------------
n = max_conn_secrets + 8
with connect() as s:
    s.sendall(request([(OP_GET, [text(UNIQUE_IDENTIFIER, uid)]) for _ in range(n)]))
    r = recv_message(s)
    m = decode(r)
    ok_items = sum(1 for b in m.batch_items if b.result_status.value == enums.ResultStatus.SUCCESS)
    failed = [b for b in m.batch_items if b.result_status.value != enums.ResultStatus.SUCCESS]
    if not failed or ok_items == 0 or ok_items >= max_conn_secrets:
        fail(f'{n} Gets on one connection: {ok_items} succeeded, {len(failed)} failed'
             f' ({failed[0].result_message.value if failed else ""})')
    why = failed[0].result_message.value
    if failed[0].result_reason.value != enums.ResultReason.GENERAL_FAILURE or \
            'max_connection_secrets' not in why:
        fail(f'{n} Gets: {failed[0].result_reason.value} {why}')
    print(f'ok {n} Gets in one batch: {ok_items} keys, then Operation Failed ({why})', flush=True)
    # the buffers went back with the answer: the same connection works again
    s.sendall(request([(OP_GET, [text(UNIQUE_IDENTIFIER, uid)])]))
    if result(recv_message(s))[0] != enums.ResultStatus.SUCCESS:
        fail('the connection after the quota was reached')
    print('ok the same connection gets a key again afterwards', flush=True)
check_peak(sampler, 'the Get batch over the quota')
good_client('at the end')
sampler.stop = True
time.sleep(0.3)
print(f'VmLck at the end: {vmlck_kb()} kB', flush=True)
