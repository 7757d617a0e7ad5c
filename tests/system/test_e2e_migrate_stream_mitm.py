"""A man in the middle for tests/system/test_e2e_migrate_stream.py: forwards
one TCP connection from 127.0.0.1:PORT to DST:DPORT and flips one bit of the
byte at offset 1 MiB of the stream."""
import socket
import threading


def run(port, dst, dport):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(1)
    c, _ = ls.accept()
    ls.close()
    u = socket.create_connection((dst, dport))

    def back():
        try:
            while u.recv(65536):
                pass
        except OSError:
            pass
        try:
            c.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    threading.Thread(target=back, daemon=True).start()
    total = 0
    at = 1 << 20
    try:
        while True:
            b = bytearray(c.recv(65536))
            if not b:
                break
            if total <= at < total + len(b):
                b[at - total] ^= 0x04
                print("flipped a bit at byte %d" % at, flush=True)
            total += len(b)
            u.sendall(b)
    except OSError:
        pass
    u.close()
    c.close()
