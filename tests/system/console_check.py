#!/usr/bin/python3
"""Console websockets of the manager, driven as a web client and as an
attacker would (raw TLS socket, hand-made frames):

  console_check.py URL CA USER PASSWORDFILE CHECK VM [ARGS]

CHECK:
  refused STATUS WORD   the upgrade is answered STATUS, its error names WORD
  handshake             bad upgrade requests: no key 400, version 12 426,
                        no Upgrade header 400
  hostile               unmasked, oversized, reserved bits, top-bit length,
                        big control frame, garbage, a continuation without a
                        message: each gets a close frame with the code (1002,
                        1009) and the connection ends
  shell CMD EXPECT      send CMD + CR to the serial console, read until EXPECT
  limit N               N consoles open at once; the next one gets 429
  rfb                   /vnc: the first bytes are the RFB greeting
  cross-site            the web cookie with a foreign Origin: 403; own Origin: 101
  until-close WORD      attach (prints READY) until the server closes the
                        console with a reason naming WORD
Exit status 0 when the check holds; prints "ok - ..." lines.
"""
import base64
import json
import os
import socket
import ssl
import struct
import sys
import time
import urllib.request

URL, CA, USER, PWFILE, CHECK, VM = sys.argv[1:7]
ARGS = sys.argv[7:]
HOST, PORT = URL[len("https://"):].split(":")
PORT = int(PORT)
CTX = ssl.create_default_context(cafile=CA)


def fail(msg):
    print("not ok - " + msg)
    sys.exit(1)


def login():
    body = json.dumps({"user": USER, "password": open(PWFILE).read().strip()}).encode()
    req = urllib.request.Request(URL + "/api/v1/session", data=body, method="POST")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, context=CTX, timeout=30) as r:
        return json.loads(r.read())["token"]


TOKEN = login()


class WS:
    def __init__(self, kind="console", headers=None, drop=()):
        self.s = CTX.wrap_socket(socket.create_connection((HOST, PORT), timeout=30),
                                 server_hostname=HOST)
        self.buf = b""
        key = base64.b64encode(os.urandom(16)).decode()
        h = {"Host": "%s:%d" % (HOST, PORT), "Upgrade": "websocket", "Connection": "Upgrade",
             "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13",
             "Authorization": "Bearer %s" % TOKEN}
        h.update(headers or {})
        for d in drop:
            h.pop(d, None)
        req = "GET /api/v1/vms/%s/%s HTTP/1.1\r\n" % (VM, kind)
        req += "".join("%s: %s\r\n" % kv for kv in h.items()) + "\r\n"
        self.s.sendall(req.encode())
        while b"\r\n\r\n" not in self.buf:
            d = self.s.recv(4096)
            if not d:
                fail("no answer to the upgrade")
            self.buf += d
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
        self.body = b""
        if self.status != 101:
            n = int(self.headers.get("content-length", "0"))
            while len(self.buf) < n:
                d = self.s.recv(4096)
                if not d:
                    break
                self.buf += d
            self.body = self.buf[:n]

    def error(self):
        try:
            return json.loads(self.body).get("error", "")
        except ValueError:
            return self.body.decode(errors="replace")

    def raw(self, data):
        self.s.sendall(data)

    def send(self, payload, op=2, mask=True, fin=True, rsv=0):
        hdr = bytes([(0x80 if fin else 0) | (rsv << 4) | op])
        n = len(payload)
        mb = 0x80 if mask else 0
        if n < 126:
            hdr += bytes([mb | n])
        elif n < 65536:
            hdr += bytes([mb | 126]) + struct.pack(">H", n)
        else:
            hdr += bytes([mb | 127]) + struct.pack(">Q", n)
        if mask:
            m = os.urandom(4)
            hdr += m
            payload = bytes(b ^ m[i % 4] for i, b in enumerate(payload))
        self.s.sendall(hdr + payload)

    def frame(self, timeout=60):
        """(opcode, payload), or (None, b"") at end of file."""
        self.s.settimeout(timeout)
        while True:
            b = self.buf
            if len(b) >= 2:
                if b[1] & 0x80:
                    fail("the server sent a masked frame")
                n, off = b[1] & 127, 2
                if n == 126 and len(b) >= 4:
                    n, off = struct.unpack(">H", b[2:4])[0], 4
                elif n == 127 and len(b) >= 10:
                    n, off = struct.unpack(">Q", b[2:10])[0], 10
                if (b[1] & 127) < 126 or off > 2:
                    if len(b) >= off + n:
                        self.buf = b[off + n:]
                        return b[0] & 15, b[off:off + n]
            try:
                d = self.s.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                d = b""
            if not d:
                return None, b""
            self.buf += d

    def read_until(self, want, timeout=120):
        got = b""
        end = time.time() + timeout
        while want not in got:
            if time.time() > end:
                fail("did not see %r; got %r" % (want, got[-400:]))
            op, p = self.frame(max(1, end - time.time()))
            if op is None or op == 8:
                fail("console closed before %r (%r); got %r" % (want, p, got[-400:]))
            got += p
        return got

    def close(self):
        try:
            self.send(struct.pack(">H", 1000), op=8)
            for _ in range(100):
                op, _p = self.frame(10)
                if op is None or op == 8:
                    break
        finally:
            self.s.close()


def expect_close(ws, code, what):
    """The server answers with a close frame carrying code, then ends."""
    for _ in range(1000):
        op, p = ws.frame(30)
        if op is None:
            fail("%s: connection ended without a close frame" % what)
        if op == 8:
            got = struct.unpack(">H", p[:2])[0] if len(p) >= 2 else None
            if got != code:
                fail("%s: close code %s (%r), expected %d" % (what, got, p[2:], code))
            op2, _ = ws.frame(30)
            if op2 is not None:
                fail("%s: data after the close frame" % what)
            ws.s.close()
            return p[2:].decode(errors="replace")
    fail("%s: no close frame" % what)


if CHECK == "refused":
    want, word = int(ARGS[0]), ARGS[1]
    ws = WS(kind=ARGS[2] if len(ARGS) > 2 else "console")
    if ws.status != want or word not in ws.error():
        fail("expected %d naming %s, got %d %r" % (want, word, ws.status, ws.error()))
    print("ok - %s %s refused: %d %s" % (USER, VM, ws.status, ws.error()))
elif CHECK == "handshake":
    for what, kw, st in (("no key", {"drop": ("Sec-WebSocket-Key",)}, 400),
                         ("bad key", {"headers": {"Sec-WebSocket-Key": "short"}}, 400),
                         ("version 12", {"headers": {"Sec-WebSocket-Version": "12"}}, 426),
                         ("no Upgrade", {"drop": ("Upgrade",)}, 400)):
        ws = WS(**kw)
        if ws.status != st:
            fail("%s: status %d, expected %d" % (what, ws.status, st))
        ws.s.close()
    print("ok - malformed upgrade requests: 400 / 426, no console")
elif CHECK == "hostile":
    cases = [
        ("unmasked frame", lambda w: w.send(b"ls\r", mask=False), 1002),
        ("oversized frame", lambda w: w.raw(bytes([0x82, 0xff]) + struct.pack(">Q", 1 << 30) + os.urandom(4)), 1009),
        ("64 KiB + 1 frame", lambda w: w.raw(bytes([0x82, 0xff]) + struct.pack(">Q", 65537) + os.urandom(4)), 1009),
        ("reserved bits", lambda w: w.send(b"x", rsv=4), 1002),
        ("top-bit length", lambda w: w.raw(bytes([0x82, 0xff]) + struct.pack(">Q", 1 << 63) + os.urandom(4)), 1002),
        ("non-minimal length", lambda w: w.raw(bytes([0x82, 0xfe, 0, 5]) + os.urandom(9)), 1002),
        ("200-byte ping", lambda w: w.send(b"p" * 200, op=9), 1002),
        ("fragmented ping", lambda w: w.send(b"p", op=9, fin=False), 1002),
        ("unknown opcode", lambda w: w.send(b"x", op=3), 1002),
        ("continuation first", lambda w: w.send(b"x", op=0), 1002),
        ("garbage", lambda w: w.raw(b"\xff\xfe GET / HTTP/1.1\r\n\r\n" + os.urandom(64)), 1002),
    ]
    for what, act, code in cases:
        ws = WS()
        if ws.status != 101:
            fail("%s: upgrade refused %d %s" % (what, ws.status, ws.error()))
        act(ws)
        reason = expect_close(ws, code, what)
        print("ok - %s: close %d (%s)" % (what, code, reason))
elif CHECK == "shell":
    cmd, want = ARGS[0], ARGS[1].encode()
    ws = WS()
    if ws.status != 101:
        fail("upgrade refused %d %s" % (ws.status, ws.error()))
    ws.send(cmd.encode() + b"\r")
    ws.read_until(want)
    # a ping is answered with the same bytes
    ws.send(b"vmseal", op=9)
    for _ in range(1000):
        op, p = ws.frame(30)
        if op == 10:
            if p != b"vmseal":
                fail("pong %r" % p)
            break
        if op is None or op == 8:
            fail("no pong")
    ws.close()
    print("ok - %r answered %r on the serial console" % (cmd, ARGS[1]))
elif CHECK == "limit":
    n = int(ARGS[0])
    open_ = []
    for i in range(n):
        ws = WS()
        if ws.status != 101:
            fail("console %d of %d refused: %d %s" % (i + 1, n, ws.status, ws.error()))
        open_.append(ws)
    extra = WS()
    if extra.status != 429:
        fail("console %d: status %d (%s), expected 429" % (n + 1, extra.status, extra.error()))
    extra.s.close()
    # every open console sees the same output (one reader, fanned out)
    open_[0].send(b"echo fan-$((40+2))-out\r")
    for ws in open_:
        ws.read_until(b"fan-42-out")
    for ws in open_:
        ws.close()
    print("ok - %d consoles at once see the same output; one more: 429 (%s)" % (n, extra.error()))
elif CHECK == "rfb":
    ws = WS(kind="vnc")
    if ws.status != 101:
        fail("vnc upgrade refused %d %s" % (ws.status, ws.error()))
    got = ws.read_until(b"RFB ", 60)
    while b"\n" not in got[got.index(b"RFB "):]:
        op, p = ws.frame(30)
        if op != 2:
            fail("vnc: %r" % p)
        got += p
    greet = got[got.index(b"RFB "):got.index(b"RFB ") + 12]
    if greet != b"RFB 003.008\n":
        fail("vnc greeting %r" % greet)
    ws.close()
    print("ok - VNC through the manager's websocket: %r" % greet)
elif CHECK == "cross-site":
    # the web client's cookie: a page of another origin cannot open the
    # console with it (cross-site websocket hijacking); the same origin can
    body = json.dumps({"user": USER, "password": open(PWFILE).read().strip(), "cookie": True}).encode()
    req = urllib.request.Request(URL + "/api/v1/session", data=body, method="POST")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, context=CTX, timeout=30) as r:
        cookie = r.headers["Set-Cookie"].split(";")[0]
    TOKEN = None
    evil = WS(headers={"Cookie": cookie, "Origin": "https://evil.example"}, drop=("Authorization",))
    if evil.status != 403 or "cross-site" not in evil.error():
        fail("cookie from another origin: %d %s" % (evil.status, evil.error()))
    evil.s.close()
    same = WS(headers={"Cookie": cookie, "Origin": "https://%s:%d" % (HOST, PORT)}, drop=("Authorization",))
    if same.status != 101:
        fail("cookie from the manager's origin: %d %s" % (same.status, same.error()))
    same.close()
    print("ok - the web cookie opens a console from the manager's origin only (%s)" % evil.error())
elif CHECK == "until-close":
    ws = WS()
    if ws.status != 101:
        fail("upgrade refused %d %s" % (ws.status, ws.error()))
    print("READY", flush=True)
    end = time.time() + 300
    while time.time() < end:
        op, p = ws.frame(300)
        if op is None:
            fail("connection ended without a close frame")
        if op == 8:
            reason = p[2:].decode(errors="replace")
            if ARGS[0] not in reason:
                fail("closed with %r, expected %r" % (reason, ARGS[0]))
            print("ok - the console was closed: %s" % reason)
            break
    else:
        fail("not closed")
else:
    fail("unknown check " + CHECK)
