"""Shared helpers of bench/migrate-bench and tests/system/test_e2e_migrate.sh:
QEMU with the test guest, a QMP client that can pass descriptors (getfd),
and the three migration transports (plain TCP, QEMU's TLS-PSK, vmseal's
relay)."""
import json
import os
import secrets
import socket
import subprocess
import time

QEMU = os.environ.get("QEMU", "qemu-system-x86_64")


class QMP:
    def __init__(self, path, timeout=120):
        deadline = time.time() + timeout
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        self.f = self.s.makefile("rb")
        self._read()  # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        while True:
            line = self.f.readline()
            if not line:
                raise EOFError("QMP closed")
            msg = json.loads(line)
            if "event" in msg:
                continue
            return msg

    def cmd(self, name, fds=None, **args):
        req = json.dumps({"execute": name, "arguments": args}).encode()
        if fds:
            socket.send_fds(self.s, [req], fds)
        else:
            self.s.sendall(req)
        r = self._read()
        if "error" in r:
            raise RuntimeError("%s: %s" % (name, r["error"].get("desc")))
        return r.get("return")

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


class Guest:
    """One QEMU process (TCG) running the busybox test guest."""

    def __init__(self, workdir, name, guestdir, mem_mib, append, incoming=False,
                 netns=None, smp=1, disk=None):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.qmp_path = os.path.join(self.dir, "qmp.sock")
        self.log = os.path.join(self.dir, "serial.log")
        for p in (self.qmp_path, self.log):
            if os.path.exists(p):
                os.unlink(p)
        argv = [QEMU, "-machine", "q35,accel=tcg", "-cpu", "max", "-m", str(mem_mib),
                "-smp", str(smp), "-nodefaults", "-display", "none", "-no-user-config",
                "-kernel", os.path.join(guestdir, "vmlinuz"),
                "-initrd", os.path.join(guestdir, "initrd.gz"),
                "-append", "console=ttyS0 quiet " + append,
                "-serial", "file:" + self.log,
                "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path]
        if disk:
            # a raw image on the shared folder both hosts see
            argv += ["-drive", "file=%s,format=raw,if=virtio,cache=none" % disk]
        if incoming:
            argv += ["-incoming", "defer"]
        if netns:
            argv = ["ip", "netns", "exec", netns] + argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=open(os.path.join(self.dir, "qemu.log"), "ab"),
                                     stderr=subprocess.STDOUT)
        self.qmp = QMP(self.qmp_path)

    def serial(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_serial(self, text, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in self.serial():
                return True
            if self.proc.poll() is not None:
                raise RuntimeError("QEMU %s exited" % self.dir)
            time.sleep(0.2)
        raise TimeoutError("no %r on %s's console within %d s" % (text, self.dir, timeout))

    def status(self):
        return self.qmp.cmd("query-status")["status"]

    def kill(self):
        self.qmp.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def wait_migration(g, timeout):
    """Poll query-migrate until completed or failed; the last answer."""
    deadline = time.time() + timeout
    while True:
        r = g.qmp.cmd("query-migrate")
        if r.get("status") in ("completed", "failed", "cancelled"):
            return r
        if time.time() > deadline:
            raise TimeoutError("migration still %s after %d s" % (r.get("status"), timeout))
        time.sleep(0.05)


def wait_incoming(g, timeout):
    """Wait until the destination runs (or its QEMU ended)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if g.proc.poll() is not None:
            return "exited"
        try:
            st = g.status()
        except (EOFError, OSError, RuntimeError):
            return "exited"
        if st not in ("inmigrate", "paused", "prelaunch"):
            return st
        time.sleep(0.05)
    return "timeout"


def fast(g):
    # Lift QEMU's default cap of 128 MiB/s; keep the default downtime.
    g.qmp.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 40})


def relay_key():
    """A one-time key + nonce, as hostd hands it to the relay (40 bytes)."""
    return secrets.token_bytes(40)


def start_relay(relay, mode, key, qemu_fd, addr, netns=None, peer=None, timeout=60,
                log=None):
    """Start vmseal-migrate-relay; the key goes through a pipe. recv: returns
    (proc, port) once it listens."""
    kr, kw = os.pipe()
    os.write(kw, key)
    os.close(kw)
    argv = [relay, mode, "--qemu-fd", str(qemu_fd), "--key-fd", str(kr),
            "--timeout", str(timeout)]
    fds = [kr, qemu_fd]
    rr = rw = None
    if mode == "recv":
        rr, rw = os.pipe()
        argv += ["--listen", addr, "--ready-fd", str(rw)]
        fds.append(rw)
        if peer:
            argv += ["--peer", peer]
    else:
        argv += ["--connect", addr]
    if netns:
        argv = ["ip", "netns", "exec", netns] + argv
    p = subprocess.Popen(argv, pass_fds=fds, stdin=subprocess.DEVNULL,
                         stderr=open(log, "ab") if log else None)
    os.close(kr)
    os.close(qemu_fd)
    port = None
    if rw is not None:
        os.close(rw)
        with os.fdopen(rr, "rb") as f:
            line = f.readline()
        if not line:
            raise RuntimeError("the receiving relay did not start")
        port = int(line)
    return p, port


def migrate(src, dst, mode, relay=None, dst_addr="127.0.0.1", src_addr=None, port=None,
            tlsdir=None, dst_netns=None, src_netns=None, timeout=600, relay_log=None):
    """Migrate src -> dst (dst started with -incoming defer). mode: plain,
    tls, vmseal. Returns (query-migrate answer, the time the source was told
    to migrate (time.time()), relays)."""
    relays = []
    for g in (src, dst):
        g.qmp.cmd("migrate-set-parameters", **{"tls-creds": "tls0" if mode == "tls" else ""})
    if mode in ("plain", "tls"):
        uri = "tcp:%s:%d" % (dst_addr, port)
        dst.qmp.cmd("migrate-incoming", uri=uri)
        t0 = time.time()
        src.qmp.cmd("migrate", uri=uri)
    else:
        key = relay_key()
        a, b = socket.socketpair()
        dst.qmp.cmd("getfd", fds=[a.fileno()], fdname="migin")
        a.close()
        rp, rport = start_relay(relay, "recv", key, os.dup(b.fileno()),
                                "%s:%d" % (dst_addr, port or 0), netns=dst_netns,
                                peer=src_addr, log=relay_log)
        b.close()
        dst.qmp.cmd("migrate-incoming", uri="fd:migin")
        c, d = socket.socketpair()
        src.qmp.cmd("getfd", fds=[c.fileno()], fdname="migout")
        c.close()
        sp, _ = start_relay(relay, "send", key, os.dup(d.fileno()),
                            "%s:%d" % (dst_addr, rport), netns=src_netns, log=relay_log)
        d.close()
        relays = [sp, rp]
        t0 = time.time()
        src.qmp.cmd("migrate", uri="fd:migout")
    r = wait_migration(src, timeout)
    return r, t0, relays


def tls_psk(g, workdir, endpoint, psk_hex):
    d = os.path.join(workdir, "tls-" + endpoint)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "keys.psk"), "w") as f:
        f.write("qemu:%s\n" % psk_hex)
    os.chmod(os.path.join(d, "keys.psk"), 0o600)
    args = {"qom-type": "tls-creds-psk", "id": "tls0", "endpoint": endpoint, "dir": d}
    if endpoint == "client":
        args["username"] = "qemu"
    g.qmp.cmd("object-add", **args)
