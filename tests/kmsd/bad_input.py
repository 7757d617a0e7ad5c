"""Hostile input over TLS to vmseal-kmsd. Each case either gets an error
response (Invalid Message, decoded by PyKMIP) or a closed connection, and
the server keeps serving a well-behaved client afterwards."""
import os
import random
import socket
import ssl
import struct
import sys
import threading

from kmip.core import enums, utils
from kmip.core.messages import messages

d, port, vectors = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def ctx_for(name):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(f'{d}/ca.crt')
    ctx.load_cert_chain(f'{d}/clients/{name}/{name}.crt', f'{d}/clients/{name}/{name}.key')
    return ctx


CTX = ctx_for('alice')


def fail(msg):
    print('FAIL:', msg)
    sys.exit(1)


def connect():
    raw = socket.create_connection(('127.0.0.1', port), timeout=15)
    return CTX.wrap_socket(raw, server_hostname='127.0.0.1')


def recv_message(s):
    """One response, or None when the server closed the connection."""
    try:
        hdr = b''
        while len(hdr) < 8:
            c = s.recv(8 - len(hdr))
            if not c:
                return None
            hdr += c
        (n,) = struct.unpack('>I', hdr[4:])
        body = b''
        while len(body) < n:
            c = s.recv(n - len(body))
            if not c:
                return None
            body += c
        return hdr + body
    except (ConnectionResetError, ssl.SSLError, socket.timeout):
        return None


def decode(resp):
    m = messages.ResponseMessage()
    m.read(utils.BytearrayStream(resp), kmip_version=enums.KMIPVersion.KMIP_1_0)
    return m


def expect_invalid(resp, what):
    if resp is None:
        fail(f'{what}: connection closed without an answer')
    m = decode(resp)
    b = m.batch_items[0]
    if b.result_status.value != enums.ResultStatus.OPERATION_FAILED or \
            b.result_reason.value != enums.ResultReason.INVALID_MESSAGE:
        fail(f'{what}: {b.result_status} {b.result_reason}')
    print(f'ok {what}: Invalid Message ({b.result_message.value})')


def expect_closed(s, what):
    if recv_message(s) is not None:
        fail(f'{what}: the connection stayed open')
    print(f'ok {what}: then the connection is closed')


def vector(name):
    with open(os.path.join(vectors, name + '.request.hex')) as f:
        return bytes.fromhex(f.read().strip())


DISCOVER = vector('01-discover-versions')


def healthy(what):
    """A well-behaved request on a fresh connection still works."""
    with connect() as s:
        s.sendall(DISCOVER)
        m = decode(recv_message(s))
        if m.batch_items[0].result_status.value != enums.ResultStatus.SUCCESS:
            fail(f'server unhealthy after {what}')
    print(f'ok server still serves after {what}')


# 1. truncated: a header announcing more than is sent, then close_notify
with connect() as s:
    s.sendall(DISCOVER[:40])
    s.unwrap()
print('ok truncated message + close')
healthy('a truncated message')

# 2. oversized: the length field says 2 GiB
with connect() as s:
    s.sendall(b'\x42\x00\x78\x01' + struct.pack('>I', 0x80000000) + b'\x00' * 64)
    expect_invalid(recv_message(s), 'length 2 GiB')
    expect_closed(s, 'length 2 GiB')
healthy('an oversized length')

# 3. wrong inner length: the Request Header claims 8 bytes more than it has
bad = bytearray(DISCOVER)
(hl,) = struct.unpack('>I', bad[12:16])
bad[12:16] = struct.pack('>I', hl + 8)
with connect() as s:
    s.sendall(bytes(bad))
    expect_invalid(recv_message(s), 'wrong inner length')
    # a framed-but-invalid message leaves the connection usable
    s.sendall(DISCOVER)
    m = decode(recv_message(s))
    if m.batch_items[0].result_status.value != enums.ResultStatus.SUCCESS:
        fail('same connection after an invalid message')
    print('ok the same connection answers the next valid message')

# 4. garbage inside a well-formed frame, many times
rng = random.Random(5696)
with connect() as s:
    for i in range(200):
        n = rng.choice([8, 16, 24, 64, 200, 1000])
        body = bytes(rng.getrandbits(8) for _ in range(n))
        s.sendall(b'\x42\x00\x78\x01' + struct.pack('>I', n) + body)
        r = recv_message(s)
        if r is None:
            fail(f'garbage #{i}: closed')
        b = decode(r).batch_items[0]
        if b.result_status.value != enums.ResultStatus.OPERATION_FAILED:
            fail(f'garbage #{i} succeeded?')
print('ok 200 garbage bodies: each answered with a failure, connection kept')
healthy('garbage bodies')

# 5. garbage from the first byte (not a KMIP structure): error, then close
with connect() as s:
    s.sendall(b'GET / HTTP/1.1\r\nHost: x\r\n\r\n')
    expect_invalid(recv_message(s), 'not TTLV at all')
    expect_closed(s, 'not TTLV at all')

# 6. every prefix of a real request, each on its own connection, cut by close
create = vector('06-create')
for cut in range(1, len(create), 17):
    with connect() as s:
        s.sendall(create[:cut])
        s.unwrap()
print('ok every 17th prefix of a Create request, cut off')
healthy('cut-off requests')

# 7. bit flips in a real request: never a crash
for i in range(300):
    m = bytearray(create)
    pos = rng.randrange(8, len(m))
    m[pos] ^= 1 << rng.randrange(8)
    with connect() as s:
        s.sendall(bytes(m))
        recv_message(s)
print('ok 300 single-bit flips of a Create request')

# 8. a response message sent as a request
with connect() as s:
    with open(os.path.join(vectors, '01-discover-versions.response.hex')) as f:
        s.sendall(bytes.fromhex(f.read().strip()))
    expect_invalid(recv_message(s), 'a Response Message as request')

# 9. plain TCP, no TLS: the handshake fails, the server survives
with socket.create_connection(('127.0.0.1', port), timeout=15) as raw:
    raw.sendall(DISCOVER)
    try:
        raw.recv(100)
    except ConnectionResetError:
        pass
print('ok plain TCP instead of TLS')

# 10. many clients at once while the junk above was going on
errors = []


def worker():
    try:
        with connect() as s:
            for _ in range(5):
                s.sendall(DISCOVER)
                if decode(recv_message(s)).batch_items[0].result_status.value != \
                        enums.ResultStatus.SUCCESS:
                    errors.append('bad answer')
    except Exception as e:  # noqa: BLE001
        errors.append(repr(e))


threads = [threading.Thread(target=worker) for _ in range(64)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if errors:
    fail(f'concurrent clients: {errors[:3]}')
print('ok 64 concurrent connections x 5 requests')
healthy('everything')

# TLS session resumption (TLS 1.3 tickets and TLS 1.2 sessions)
for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
    rctx = ctx_for('alice')
    rctx.maximum_version = version
    raw = socket.create_connection(('127.0.0.1', port), timeout=15)
    with rctx.wrap_socket(raw, server_hostname='127.0.0.1') as s:
        s.sendall(DISCOVER)
        decode(recv_message(s))
        session = s.session
    raw = socket.create_connection(('127.0.0.1', port), timeout=15)
    with rctx.wrap_socket(raw, server_hostname='127.0.0.1', session=session) as s:
        if not s.session_reused:
            fail(f'{version.name}: session not resumed')
        s.sendall(create)
        b = decode(recv_message(s)).batch_items[0]
        if b.result_status.value != enums.ResultStatus.SUCCESS:
            fail(f'{version.name}: Create on a resumed session failed: {b.result_message}')
    print(f'ok {version.name} session resumed; the identity carries over (Create works)')
