#!/usr/bin/python3
"""Drive an interactive console command through a pseudo-terminal, as a
user at a terminal would:

  console_pty.py CMD EXPECT PROGRAM ARGS...

Runs PROGRAM on a new pty, waits for its "Connected" line, types CMD and a
carriage return, reads until EXPECT appears, types Ctrl-] (detach) and
requires PROGRAM to exit with status 0. While attached the terminal must be
in raw mode (no local echo). Prints what it saw on failure.
"""
import os
import pty
import select
import sys
import termios
import time

cmd, expect, argv = sys.argv[1].encode(), sys.argv[2].encode(), sys.argv[3:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)
seen = b""


def read_until(want, secs):
    global seen
    end = time.time() + secs
    while want not in seen:
        left = end - time.time()
        if left <= 0:
            return False
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                d = os.read(fd, 4096)
            except OSError:
                return want in seen
            if not d:
                return want in seen
            seen += d
    return True


def fail(msg):
    print("not ok - %s; the terminal showed:\n%s" % (msg, seen.decode(errors="replace")))
    try:
        os.kill(pid, 9)
    except OSError:
        pass
    sys.exit(1)


if not read_until(b"Connected", 60):
    fail("no 'Connected' line")
# raw mode: no echo by the local terminal, no line editing
if termios.tcgetattr(fd)[3] & termios.ECHO:
    fail("the terminal still echoes locally (not raw)")
os.write(fd, cmd + b"\r")
if not read_until(expect, 120):
    fail("no %r after typing %r" % (expect, cmd))
os.write(fd, b"\x1d")
if not read_until(b"Detached", 30):
    fail("Ctrl-] did not detach")
_, status = os.waitpid(pid, 0)
if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
    fail("exit status %r" % status)
print("ok - typed %r at the console, read %r, Ctrl-] detached (exit 0)" % (cmd.decode(), expect.decode()))
