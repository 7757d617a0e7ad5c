"""A KMIP server that answers a Query with hostile Server Information, for
the manager's key-provider status (kmip/cluster_info.c must bound and
escape all of it).

  hostile_kmip_server.py KMSDIR PORTFILE

Serves mutual TLS on 127.0.0.1 (a free port, written to PORTFILE) with
KMSDIR's server certificate, requiring a client certificate from KMSDIR's
CA. Discover Versions is answered with the request's version, Query with
the hostile facts below, anything else with Operation Not Supported.
TTLV is encoded and decoded here by hand, independently of vmseal's code.
"""
import os
import socket
import ssl
import struct
import sys
import threading
import time

STRUCT, INT, LONG, ENUM, TEXT, BYTES, DATETIME = 1, 2, 3, 5, 7, 8, 9
T_PROTOCOL_VERSION, T_MAJOR, T_MINOR = 0x420069, 0x42006A, 0x42006B
T_REQUEST_HEADER, T_RESPONSE_HEADER = 0x420077, 0x42007A
T_RESPONSE_MESSAGE, T_BATCH_ITEM, T_BATCH_COUNT = 0x42007B, 0x42000F, 0x42000D
T_OPERATION, T_UBI, T_RESULT_STATUS, T_RESULT_REASON = 0x42005C, 0x420093, 0x42007F, 0x42007E
T_RESULT_MESSAGE, T_PAYLOAD, T_TIME_STAMP = 0x42007D, 0x42007C, 0x420092
T_VENDOR, T_SERVER_INFORMATION = 0x42009D, 0x420088
OP_QUERY, OP_DISCOVER = 0x18, 0x1E
X = {n: 0x54C000 + i for i, n in enumerate(
    "_ store node facts_age database role address version error sync_commit sync_names standby "
    "name state sync_state replay_lag bytes_behind cluster_node seen_ago standbys_total "
    "nodes_total".split()) if i}


def item(tag, typ, value):
    if typ == STRUCT:
        body = b"".join(value)
    elif typ in (INT, ENUM):
        body = struct.pack(">i" if typ == INT else ">I", value)
        return tag.to_bytes(3, "big") + bytes([typ]) + b"\0\0\0\4" + body + b"\0" * 4
    elif typ in (LONG, DATETIME):
        body = struct.pack(">q", value)
    else:
        body = value.encode() if isinstance(value, str) else value
    return tag.to_bytes(3, "big") + bytes([typ]) + struct.pack(">I", len(body)) + body + \
        b"\0" * ((8 - len(body) % 8) % 8)


def t(name, v): return item(X[name], TEXT, v)
def lng(name, v): return item(X[name], LONG, v)
def s(name, *kids): return item(X[name], STRUCT, list(kids))


def decode(buf):
    """[(tag, type, value)] of one level; structures decoded recursively."""
    out = []
    while len(buf) >= 8:
        tag, typ, n = int.from_bytes(buf[:3], "big"), buf[3], int.from_bytes(buf[4:8], "big")
        val, buf = buf[8:8 + n], buf[8 + (n + 7) // 8 * 8:]
        out.append((tag, typ, decode(val) if typ == STRUCT else val))
    return out


def find(items, tag):
    return next((v for tg, _, v in items if tg == tag), None)


def hostile_info():
    nodes = [s("cluster_node", t("name", "n%d" % k), t("address", "10.0.0.%d:5696" % (k % 250)),
               t("state", "alive"), lng("seen_ago", k)) for k in range(1000)]
    return item(T_SERVER_INFORMATION, STRUCT, [
        t("store", "postgresql"),
        t("node", "evil\x1b]0;owned\x07\nFAKE LINE node kms9 alive"),
        lng("facts_age", -7),
        s("database", t("role", "primary\x1b[2J\x1b[H"), t("address", "A" * 5000),
          t("version", "\u202e51 LQSergtsoP"), t("sync_commit", "on\r\nsynchronous: all fine"),
          t("sync_names", "\u0085\u2028x")),
        item(X["standbys_total"], TEXT, "many"),
        s("standby", t("name", "s1\x1b[5m"), lng("replay_lag", -1000), lng("bytes_behind", 2 ** 62),
          t("state", "streaming"), lng("sync_state", 3)),
        lng("nodes_total", 10 ** 18),
        *nodes,
        item(X["cluster_node"], TEXT, "a node as text"),
    ])


def answer(req):
    msg = decode(req)
    if not msg or msg[0][1] != STRUCT:
        return None
    top = msg[0][2]
    hdr = find(top, T_REQUEST_HEADER) or []
    pv = find(hdr, T_PROTOCOL_VERSION) or []
    major = int.from_bytes(find(pv, T_MAJOR) or b"\0\0\0\1", "big")
    minor = int.from_bytes(find(pv, T_MINOR) or b"\0\0\0\0", "big")
    batch = []
    for tag, _, bi in top:
        if tag != T_BATCH_ITEM:
            continue
        op = int.from_bytes(find(bi, T_OPERATION)[:4], "big")
        kids = [item(T_OPERATION, ENUM, op)]
        ubi = find(bi, T_UBI)
        if ubi is not None:
            kids.append(item(T_UBI, BYTES, ubi))
        if op == OP_DISCOVER:
            kids += [item(T_RESULT_STATUS, ENUM, 0), item(T_PAYLOAD, STRUCT, [
                item(T_PROTOCOL_VERSION, STRUCT, [item(T_MAJOR, INT, major), item(T_MINOR, INT, minor)])])]
        elif op == OP_QUERY:
            kids += [item(T_RESULT_STATUS, ENUM, 0), item(T_PAYLOAD, STRUCT, [
                item(T_OPERATION, ENUM, OP_QUERY),
                item(T_VENDOR, TEXT, "Evil\x1b[31m KMS\nsecond line"), hostile_info()])]
        else:
            kids += [item(T_RESULT_STATUS, ENUM, 1), item(T_RESULT_REASON, ENUM, 0x05),
                     item(T_RESULT_MESSAGE, TEXT, "not supported here")]
        batch.append(item(T_BATCH_ITEM, STRUCT, kids))
    header = item(T_RESPONSE_HEADER, STRUCT, [
        item(T_PROTOCOL_VERSION, STRUCT, [item(T_MAJOR, INT, major), item(T_MINOR, INT, minor)]),
        item(T_TIME_STAMP, DATETIME, int(time.time())), item(T_BATCH_COUNT, INT, len(batch))])
    return item(T_RESPONSE_MESSAGE, STRUCT, [header] + batch)


def read_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def serve(conn):
    try:
        while True:
            hdr = read_exact(conn, 8)
            if hdr is None:
                return
            n = int.from_bytes(hdr[4:8], "big")
            if n > 1 << 20:
                return
            body = read_exact(conn, n)
            if body is None:
                return
            resp = answer(hdr + body)
            if resp is None:
                return
            conn.sendall(resp)
    except (OSError, ssl.SSLError):
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


def main():
    d, portfile = sys.argv[1], sys.argv[2]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(d, "server.crt"), os.path.join(d, "server.key"))
    ctx.load_verify_locations(os.path.join(d, "ca.crt"))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    with open(portfile + ".tmp", "w") as f:
        f.write("%d\n" % ls.getsockname()[1])
    os.rename(portfile + ".tmp", portfile)
    while True:
        raw, _ = ls.accept()
        try:
            conn = ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            continue
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
