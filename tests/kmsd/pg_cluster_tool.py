"""PyKMIP-driven load and checks for kmsd nodes on one PostgreSQL store.

  pg_cluster_tool.py DIR CLIENT load ACKFILE STOPFILE PORT...
      2 threads per node PORT: Create, then Get of the new key through the same
      node, until STOPFILE exists. Every Create answered with a uid is
      "acknowledged" and appended to ACKFILE at once ("uid port hex", hex "-"
      when the Get right after failed); every Create answered with an error or
      cut off is "refused". Connections are remade after a failure. Prints
      "acknowledged=N refused=M".
  pg_cluster_tool.py DIR CLIENT check ACKFILE PORT...
      Get every acknowledged uid from every node: prints
      "acknowledged=N lost=L mismatched=X" (lost: not Get-able from some node;
      mismatched: bytes differ between nodes or from those read at creation).
  pg_cluster_tool.py DIR CLIENT timed-create PORT
      one Create; prints "ok SECONDS uid" or "error SECONDS REASON: message".
  pg_cluster_tool.py DIR CLIENT server-info PORT
      a Query for Server Information (PyKMIP keeps it as raw TTLV bytes);
      prints the vmseal cluster facts in it as JSON (docs/kmsd.md, "Cluster
      status over KMIP"), decoded here independently of vmseal's code.
"""
import json
import os
import struct
import sys
import threading
import time

from kmip.core import enums
from kmip.pie import client, exceptions

d, name, cmd = sys.argv[1], sys.argv[2], sys.argv[3]
args = sys.argv[4:]


def connect(port):
    c = client.ProxyKmipClient(hostname='127.0.0.1', port=int(port),
                               cert=f'{d}/clients/{name}/{name}.crt',
                               key=f'{d}/clients/{name}/{name}.key', ca=f'{d}/ca.crt',
                               config_file='/dev/null')
    c.open()
    return c


def close(c):
    try:
        c.close()
    except Exception:
        pass


if cmd == 'load':
    ackfile, stopfile, ports = args[0], args[1], args[2:]
    lock = threading.Lock()
    counts = {'ack': 0, 'refused': 0}
    out = open(ackfile, 'a', buffering=1)

    def worker(port):
        c = None
        while not os.path.exists(stopfile):
            if c is None:
                try:
                    c = connect(port)
                except Exception:
                    c = None
                    time.sleep(0.2)
                    continue
            try:
                uid = c.create(enums.CryptographicAlgorithm.AES, 256)
            except exceptions.KmipOperationFailure:
                with lock:
                    counts['refused'] += 1
                time.sleep(0.05)
                continue
            except Exception:
                with lock:
                    counts['refused'] += 1
                close(c)
                c = None
                continue
            hexkey = '-'
            try:
                hexkey = c.get(uid).value.hex()
            except exceptions.KmipOperationFailure:
                pass
            except Exception:
                close(c)
                c = None
            with lock:
                counts['ack'] += 1
                out.write(f'{uid} {port} {hexkey}\n')
        if c is not None:
            close(c)

    threads = [threading.Thread(target=worker, args=(p,)) for p in ports for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.close()
    print(f"acknowledged={counts['ack']} refused={counts['refused']}")
elif cmd == 'check':
    ackfile, ports = args[0], args[1:]
    acked = [line.split() for line in open(ackfile) if line.strip()]
    clients = {p: connect(p) for p in ports}
    lost = mismatched = 0
    for uid, _, hexkey in acked:
        seen = set()
        for p, c in clients.items():
            try:
                seen.add(c.get(uid).value.hex())
            except Exception as e:
                lost += 1
                print(f'LOST {uid} on node port {p}: {e}', file=sys.stderr)
                break
        else:
            if len(seen) != 1 or (hexkey != '-' and seen != {hexkey}):
                mismatched += 1
                print(f'MISMATCH {uid}', file=sys.stderr)
    for c in clients.values():
        close(c)
    print(f'acknowledged={len(acked)} lost={lost} mismatched={mismatched}')
elif cmd == 'timed-create':
    c = connect(args[0])
    t0 = time.monotonic()
    try:
        uid = c.create(enums.CryptographicAlgorithm.AES, 256)
        print(f'ok {time.monotonic() - t0:.3f} {uid}')
    except exceptions.KmipOperationFailure as e:
        print(f'error {time.monotonic() - t0:.3f} {e.status.name} {e.reason.name}: {e.message}')
    close(c)
elif cmd == 'server-info':
    NAMES = {0x54C000 + i: n for i, n in enumerate(
        "_ store node facts_age_ms database role address version error synchronous_commit "
        "synchronous_standby_names standbys name state sync_state replay_lag_ms bytes_behind "
        "nodes seen_ago_ms standbys_total nodes_total".split()) if i}
    LISTS = {'standbys', 'nodes'}

    def decode(buf):
        out = {}
        while buf:
            tag = int.from_bytes(buf[:3], 'big')
            typ, n = buf[3], int.from_bytes(buf[4:8], 'big')
            val, buf = buf[8:8 + n], buf[8 + (n + 7) // 8 * 8:]
            name = NAMES.get(tag, hex(tag))
            if typ == 1:
                v = decode(val)
            elif typ == 2:
                v = struct.unpack('>i', val)[0]
            elif typ == 3:
                v = struct.unpack('>q', val)[0]
            elif typ == 7:
                v = val.decode()
            else:
                v = val.hex()
            if name in LISTS:
                out.setdefault(name, []).append(v)
            else:
                out[name] = v
        return out

    c = connect(args[0])
    r = c.proxy.query(query_functions=[enums.QueryFunction.QUERY_SERVER_INFORMATION])
    if r.result_status.value != enums.ResultStatus.SUCCESS:
        sys.exit(f'Query failed: {r.result_reason} {r.result_message}')
    print(json.dumps({'vendor': str(r.vendor_identification or ''),
                      **decode(bytes(r.server_information.data.buffer))}))
    close(c)
else:
    sys.exit(f'unknown command {cmd}')
