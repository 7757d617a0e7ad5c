"""Connection-slot exhaustion against our daemons, for test_abuse.sh
(standard library only).

  abuse.py attack PORT MODE COUNT SECONDS READY_FILE [SRC]
      MODE tcp: COUNT connections from SRC (default 127.0.0.2) that send
      nothing; MODE tls: each sends a TLS ClientHello, then nothing (the
      handshake is never finished); MODE idle: each finishes the TLS
      handshake (no client certificate), then sends nothing. Connections the server closes are opened
      again (up to 2,000 a second), for SECONDS, then everything is closed. READY_FILE is written
      once the first COUNT connect()s were issued. Prints a summary.

  abuse.py probe PORT CA PATH COUNT INTERVAL MAX_S [--cert C --key K]
                 [--token T] [--expect KEY]
      COUNT times, every INTERVAL s, a fresh TLS connection from 127.0.0.1,
      GET PATH, and require 200 with a JSON body (holding KEY) within MAX_S
      seconds. Prints each time; exit 1 when one failed or was late.

  abuse.py login PORT CA USER PASSWORD_FILE
      POST /api/v1/session; prints the token.

  abuse.py longpoll PORT CA TOKEN WAIT
      GET /api/v1/events?since=LAST&wait=WAIT on the manager; exit 0 when
      it answers 200 after the whole wait (no event came) or with events.
"""
import errno
import json
import os
import resource
import select
import socket
import ssl
import sys
import time


RATE = 2000   # new connections a second once the first COUNT are open


def client_hello():
    """The bytes of one TLS ClientHello (the same for every connection)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname='localhost')
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def handshake_step(tls, data):
    """Feed what the server sent; what to send back (until the handshake
    is done; afterwards nothing: session tickets are read and ignored)."""
    obj, inc, out = tls
    if data:
        inc.write(data)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def attack(port, mode, count, seconds, ready, src='127.0.0.2'):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, count + 256) if hard != resource.RLIM_INFINITY else count + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    hello = client_hello() if mode == 'tls' else b''
    ctx = None
    if mode == 'idle':
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    poller = select.epoll()
    socks = {}          # fd -> [socket, connected, hello_sent]
    stats = {'connects': 0, 'closed_by_server': 0, 'max_open': 0, 'max_established': 0}

    def open_one():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.bind((src, 0))
        except OSError:
            s.close()
            raise
        rc = s.connect_ex(('127.0.0.1', port))
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            return False
        tls = None
        if ctx:
            inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = (ctx.wrap_bio(inc, out, server_hostname='localhost'), inc, out)
        socks[s.fileno()] = [s, False, tls]
        poller.register(s.fileno(), select.EPOLLOUT | select.EPOLLIN | select.EPOLLRDHUP)
        stats['connects'] += 1
        return True

    def drop(fd):
        s = socks.pop(fd)[0]
        poller.unregister(fd)
        s.close()

    for _ in range(count):
        open_one()
    stats['max_open'] = len(socks)
    with open(ready, 'w') as f:
        f.write('%d\n' % len(socks))
    end = time.monotonic() + seconds
    budget, last = 0.0, time.monotonic()
    while time.monotonic() < end:
        for fd, ev in poller.poll(0.1):
            ent = socks.get(fd)
            if not ent:
                continue
            s = ent[0]
            if ev & (select.EPOLLERR | select.EPOLLHUP | select.EPOLLRDHUP) and ent[1]:
                stats['closed_by_server'] += 1
                drop(fd)
                continue
            if ev & select.EPOLLOUT and not ent[1]:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    drop(fd)
                    continue
                ent[1] = True
                poller.modify(fd, select.EPOLLIN | select.EPOLLRDHUP)
                if hello or ent[2]:
                    try:
                        s.send(hello or handshake_step(ent[2], b''))
                    except OSError:
                        stats['closed_by_server'] += 1
                        drop(fd)
                        continue
            if ev & select.EPOLLIN:
                try:
                    data = s.recv(65536)   # tls: the ServerHello flight, ignored
                except BlockingIOError:
                    continue
                except OSError:
                    data = b''
                if not data:
                    stats['closed_by_server'] += 1
                    drop(fd)
                    continue
                if ent[2]:
                    try:
                        reply = handshake_step(ent[2], data)
                        if reply:
                            s.send(reply)
                    except (OSError, ssl.SSLError):
                        stats['closed_by_server'] += 1
                        drop(fd)
        stats['max_open'] = max(stats['max_open'], len(socks))
        stats['max_established'] = max(stats['max_established'],
                                       sum(1 for e in socks.values() if e[1]))
        # keep COUNT connections: open again what the server closed, at
        # most RATE a second
        now = time.monotonic()
        budget = min(budget + (now - last) * RATE, float(count))
        last = now
        while len(socks) < count and budget >= 1:
            budget -= 1
            if not open_one():
                break
    for fd in list(socks):
        drop(fd)
    print('attack %s from %s: %d connects in %.0f s, %d closed by the server, '
          'at most %d open (%d established)' % (mode, src, stats['connects'], seconds,
                                                stats['closed_by_server'], stats['max_open'],
                                                stats['max_established']))


def tls_ctx(ca, cert=None, key=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def request(port, ctx, method, path, body=None, token=None, timeout=5.0):
    """One request on a fresh connection: (status, parsed JSON body)."""
    with socket.create_connection(('127.0.0.1', port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname='127.0.0.1') as s:
            data = json.dumps(body).encode() if body is not None else b''
            head = '%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n' % (method, path)
            if token:
                head += 'Authorization: Bearer %s\r\n' % token
            if body is not None:
                head += 'Content-Type: application/json\r\nContent-Length: %d\r\n' % len(data)
            s.sendall(head.encode() + b'\r\n' + data)
            resp = b''
            while True:
                try:
                    chunk = s.recv(65536)
                except ssl.SSLError:
                    break   # closed without close_notify
                if not chunk:
                    break
                resp += chunk
    head, _, payload = resp.partition(b'\r\n\r\n')
    if not head:
        raise OSError('no answer')
    status = int(head.split(b' ', 2)[1])
    headers = head.lower()
    if b'transfer-encoding: chunked' in headers:
        out, rest = b'', payload
        while rest:
            size, _, rest = rest.partition(b'\r\n')
            n = int(size, 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        payload = out
    return status, json.loads(payload) if payload else None


def probe(port, ca, path, count, interval, max_s, cert=None, key=None, token=None, expect=None):
    ctx = tls_ctx(ca, cert, key)
    worst, bad = 0.0, 0
    for i in range(count):
        t0 = time.monotonic()
        try:
            status, body = request(port, ctx, 'GET', path, token=token, timeout=max_s + 2)
            dt = time.monotonic() - t0
            good = status == 200 and isinstance(body, dict) and (not expect or expect in body)
            print('probe %d: GET %s -> %d in %.1f ms%s' % (i, path, status, dt * 1000,
                                                         '' if good else ' (WRONG ANSWER)'))
        except (OSError, ValueError) as e:
            dt = time.monotonic() - t0
            good = False
            print('probe %d: GET %s failed after %.1f ms: %s' % (i, path, dt * 1000, e))
        worst = max(worst, dt)
        if not good or dt > max_s:
            bad += 1
        sys.stdout.flush()
        if i + 1 < count:
            time.sleep(interval)
    print('probes: %d, worst %.1f ms, %d failed or slower than %.0f ms' %
          (count, worst * 1000, bad, max_s * 1000))
    return 1 if bad else 0


def main(argv):
    cmd = argv[1]
    if cmd == 'attack':
        attack(int(argv[2]), argv[3], int(argv[4]), float(argv[5]), argv[6],
               *(argv[7:8] or []))
        return 0
    if cmd == 'probe':
        opts, pos, i = {}, [], 2
        while i < len(argv):
            if argv[i].startswith('--'):
                opts[argv[i][2:]] = argv[i + 1]
                i += 2
            else:
                pos.append(argv[i])
                i += 1
        port, ca, path, count, interval, max_s = pos
        return probe(int(port), ca, path, int(count), float(interval), float(max_s),
                     opts.get('cert'), opts.get('key'), opts.get('token'), opts.get('expect'))
    if cmd == 'login':
        port, ca, user, pwfile = argv[2:6]
        with open(pwfile) as f:
            pw = f.read().strip()
        status, body = request(int(port), tls_ctx(ca), 'POST', '/api/v1/session',
                               body={'user': user, 'password': pw})
        if status != 201:
            print('login: %d %s' % (status, body), file=sys.stderr)
            return 1
        print(body['token'])
        return 0
    if cmd == 'longpoll':
        port, ca, token, wait = int(argv[2]), argv[3], argv[4], int(argv[5])
        ctx = tls_ctx(ca)
        status, body = request(port, ctx, 'GET', '/api/v1/events?since=-1', token=token)
        if status != 200:
            print('longpoll: events: %d %s' % (status, body))
            return 1
        t0 = time.monotonic()
        try:
            status, body = request(port, ctx, 'GET', '/api/v1/events?since=%d&wait=%d' %
                                   (body['last'], wait), token=token, timeout=wait + 30)
        except (OSError, ValueError) as e:
            print('longpoll: failed after %.1f s: %s' % (time.monotonic() - t0, e))
            return 1
        dt = time.monotonic() - t0
        n = len(body.get('events', [])) if isinstance(body, dict) else -1
        print('longpoll: GET /api/v1/events?wait=%d -> %d after %.1f s with %d events' %
              (wait, status, dt, n))
        return 0 if status == 200 and (n > 0 or dt >= wait - 1) else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv))
