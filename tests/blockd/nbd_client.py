#!/usr/bin/python3
"""A deliberately hostile NBD client for the blockd tests (raw sockets, no
library, so it can send what a well-behaved client never would).

  nbd_client.py SOCK CASE     prints one line: the outcome

Cases: unaligned-write, past-end-read, past-end-write, huge-write,
huge-read, bad-magic, bad-option, unknown-cmd, good-read (sanity).
Outcomes: "error N" (an NBD error reply with errno N), "closed" (the
server dropped the connection), "ok" (a successful reply)."""
import socket
import struct
import sys

REQ_MAGIC = 0x25609513
REP_MAGIC = 0x67446698


def recv_exact(s, n):
    buf = b''
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def handshake(s, bad_option=False):
    hello = recv_exact(s, 18)
    assert hello[:16] == b'NBDMAGICIHAVEOPT', hello
    s.sendall(struct.pack('>I', 3))            # FIXED_NEWSTYLE | NO_ZEROES
    if bad_option:
        s.sendall(b'IHAVEOPX' + struct.pack('>II', 1, 0x7fffffff))
        return None
    s.sendall(b'IHAVEOPT' + struct.pack('>II', 1, 0))   # EXPORT_NAME ""
    size, _flags = struct.unpack('>QH', recv_exact(s, 10))
    return size


def request(s, cmd, offset, length, payload=b'', flags=0, magic=REQ_MAGIC):
    s.sendall(struct.pack('>IHHQQI', magic, flags, cmd, 0x1234, offset, length) + payload)
    magic_r, err, handle = struct.unpack('>IIQ', recv_exact(s, 16))
    assert magic_r == REP_MAGIC and handle == 0x1234
    if err:
        return 'error %d' % err
    if cmd == 0:
        recv_exact(s, length)
    return 'ok'


def main():
    path, case = sys.argv[1], sys.argv[2]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    try:
        size = handshake(s, bad_option=(case == 'bad-option'))
        if case == 'bad-option':
            recv_exact(s, 1)   # any answer other than a close is accepted below
            print('answered')
            return
        if case == 'good-read':
            print(request(s, 0, 0, 4096))
        elif case == 'unaligned-write':
            print(request(s, 1, 4096 + 100, 1000, b'\xee' * 1000))
        elif case == 'past-end-read':
            print(request(s, 0, size, 4096))
        elif case == 'past-end-write':
            print(request(s, 1, size - 512, 4096, b'\xee' * 4096))
        elif case == 'wrap-read':
            print(request(s, 0, 0xfffffffffffff000, 8192))
        elif case == 'huge-write':
            # claims 4 GiB - 1 of payload, sends a little, then waits
            s.sendall(struct.pack('>IHHQQI', REQ_MAGIC, 0, 1, 1, 0, 0xffffffff) + b'\xee' * 65536)
            print('error %d' % struct.unpack('>IIQ', recv_exact(s, 16))[1])
        elif case == 'huge-read':
            print(request(s, 0, 0, 0xffffffff))
        elif case == 'bad-magic':
            print(request(s, 1, 0, 512, b'\xee' * 512, magic=0x25609514))
        elif case == 'unknown-cmd':
            print(request(s, 77, 0, 512))
        else:
            sys.exit('unknown case ' + case)
    except (EOFError, ConnectionResetError, BrokenPipeError):
        print('closed')


if __name__ == '__main__':
    main()
