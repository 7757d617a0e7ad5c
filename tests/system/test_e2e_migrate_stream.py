#!/usr/bin/python3
"""Encrypted live migration between two hosts, at the transport level.

Two network namespaces joined by a veth pair stand for two hosts; a shared
folder is their datastore. A TCG guest (tests/guest) with a disk on that
folder counts on its serial console and keeps a memory marker in RAM
(vmseal.mem). Its QEMU migrates with QMP `migrate fd:` through
vmseal-migrate-relay (one-time key and nonce handed over a pipe) across the
veth, as hostd drives it:

  1. control: a plaintext migration A -> B (QMP migrate tcp:) -- the
     capture on the veth shows the memory marker: the check can fail;
  2. encrypted B -> A and A -> B: the guest keeps counting (no reboot, the
     count goes on), the capture of each shows no marker in clear;
  3. the destination QEMU killed mid-stream: the migration fails, the
     source keeps running and counting;
  4. the network cut mid-stream (veth down): the relays give up after their
     timeout, the source keeps running;
  5. a man in the middle flips one bit of one frame: the destination relay
     refuses it ("authentication failed"), the destination does not run,
     the source keeps running;
  6. a connection from another address than the source's (--peer) is
     refused before any byte is read;
  then the guest is powered off and its disk, booted again, reads the
  marker it wrote before the first migration: intact.

Needs root (ip netns), tcpdump and QEMU; exit 77 (skipped) without them.
"""
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import migrate_lib as ml  # noqa: E402

SRC = os.environ.get("VMSEAL_SRC", os.path.dirname(os.path.dirname(HERE)))
BUILD = os.environ.get("VMSEAL_BUILD", os.path.join(SRC, "build"))
RELAY = os.path.join(BUILD, "hostd", "vmseal-migrate-relay")
BOOT_TIMEOUT = 300
MIG_TIMEOUT = 300


def skip(why):
    print("SKIP: " + why)
    sys.exit(77)


def fail(why):
    print("FAIL: " + why)
    sys.exit(1)


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def sh(*argv, check=True):
    return subprocess.run(argv, check=check, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True).stdout


if os.geteuid() != 0:
    skip("needs root for ip netns")
for tool in ("ip", "tcpdump", ml.QEMU):
    if not shutil.which(tool):
        skip("%s not installed" % tool)
if not os.access(RELAY, os.X_OK):
    fail("%s missing" % RELAY)

tag = "%d" % (os.getpid() % 100000)
NS_A, NS_B = "vmsm-a-" + tag, "vmsm-b-" + tag
VA, VB = "vmsa" + tag, "vmsb" + tag
net = 16 + os.getpid() % 200
IP_A, IP_B = "10.%d.77.1" % net, "10.%d.77.2" % net
work = tempfile.mkdtemp(prefix="vmseal-migrate-test.")
shared = os.path.join(work, "shared")
os.makedirs(shared)
procs = []
guests = []


def cleanup():
    for g in guests:
        try:
            g.kill()
        except Exception:
            pass
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    for ns in (NS_A, NS_B):
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
    if os.environ.get("KEEP_WORK"):
        print("work dir kept: " + work)
    else:
        shutil.rmtree(work, ignore_errors=True)


def main():
    sh("ip", "netns", "add", NS_A)
    sh("ip", "netns", "add", NS_B)
    sh("ip", "link", "add", VA, "netns", NS_A, "type", "veth", "peer", "name", VB,
       "netns", NS_B)
    for ns, dev, ip in ((NS_A, VA, IP_A), (NS_B, VB, IP_B)):
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "addr", "add", ip + "/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
    deadline = time.time() + 30
    while "LOWER_UP" not in sh("ip", "-n", NS_A, "link", "show", "dev", VA) or \
            "LOWER_UP" not in sh("ip", "-n", NS_B, "link", "show", "dev", VB):
        if time.time() > deadline:
            fail("the veth pair does not come up")
        time.sleep(0.2)
    log("hosts: %s (%s) and %s (%s), veth %s-%s" % (NS_A, IP_A, NS_B, IP_B, VA, VB))

    env = dict(os.environ, VMSEAL_BUILD=BUILD)
    guestdir = subprocess.check_output([os.path.join(SRC, "tests", "guest", "build-guest.sh")],
                                       env=env, text=True).strip()
    disk = os.path.join(shared, "disk0.raw")
    with open(disk, "wb") as f:
        f.truncate(16 << 20)
    memmark = "MEM" + secrets.token_hex(10)
    diskmark = "DISK" + secrets.token_hex(6)
    append = "vmseal.marker=%s vmseal.mem=%s vmseal.memmib=4 vmseal.count=1 vmseal.wait=1" % (
        diskmark, memmark)
    relay_log = os.path.join(work, "relay.log")
    open(relay_log, "w").close()
    seq = [0]

    def guest(ns, incoming):
        seq[0] += 1
        g = ml.Guest(work, "vm%d" % seq[0], guestdir, 160, "" if incoming else append,
                     incoming=incoming, netns=ns, disk=disk)
        guests.append(g)
        return g

    def counts(g):
        return [int(l.split()[1]) for l in g.serial().splitlines()
                if l.startswith("VMSEAL-COUNT ") and l.split()[1].isdigit()]

    def wait_count_above(g, n, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            c = counts(g)
            if c and c[-1] > n:
                return c[-1]
            time.sleep(0.5)
        fail("%s: the guest did not count past %d within %d s (last %s)" %
             (g.dir, n, timeout, counts(g)[-1:] or "none"))

    def capture(name):
        pcap = os.path.join(work, name + ".pcap")
        p = subprocess.Popen(["ip", "netns", "exec", NS_A, "tcpdump", "-i", VA, "-s", "0",
                              "-U", "-n", "-w", pcap, "tcp"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(p)
        # tcpdump says "listening on" once the capture runs
        line = p.stderr.readline().decode()
        if "listening" not in line:
            fail("tcpdump: " + line)
        return p, pcap

    def stop_capture(cap):
        p, pcap = cap
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        p.wait(timeout=30)
        with open(pcap, "rb") as f:
            data = f.read()
        return data

    def migrate_ok(src, src_ns, src_ip, dst_ns, dst_ip, mode, name):
        dst = guest(dst_ns, incoming=True)
        before = counts(src)
        cap = capture(name)
        r, _, relays = ml.migrate(src, dst, mode, relay=RELAY, dst_addr=dst_ip, src_addr=src_ip,
                                  port=40000 + seq[0], dst_netns=dst_ns, src_netns=src_ns,
                                  timeout=MIG_TIMEOUT, relay_log=relay_log)
        if r.get("status") != "completed":
            fail("%s: migration %s: %s" % (name, r.get("status"), r.get("error-desc")))
        for p in relays:
            if p.wait(timeout=60) != 0:
                fail("%s: a relay failed: %s" % (name, open(relay_log).read()))
        dst.qmp.cmd("cont")  # the destination resumes (hostd's step 3)
        st = ml.wait_incoming(dst, 60)
        if st != "running":
            fail("%s: destination is %s" % (name, st))
        data = stop_capture(cap)
        last = before[-1] if before else 0
        n = wait_count_above(dst, last)
        if "VMSEAL-GUEST-BOOT" in dst.serial():
            fail("%s: the guest booted again on the destination" % name)
        log("%s: %s migration done, %.1f MiB; the guest counted %d on the source, goes on "
            "with %d on the destination; capture %d KiB" %
            (name, mode, r["ram"]["transferred"] / 2**20, last, n, len(data) >> 10))
        src.kill()
        guests.remove(src)
        return dst, data

    # boot on host A
    a = guest(NS_A, incoming=False)
    a.wait_serial("VMSEAL-MARKER-WRITTEN", BOOT_TIMEOUT)
    a.wait_serial("VMSEAL-MEM-FILLED", BOOT_TIMEOUT)
    wait_count_above(a, 1, BOOT_TIMEOUT)
    log("guest up on A, counting")
    marker = ("VMSEAL-MEM:" + memmark).encode()

    # 1. control: in clear, the marker crosses
    b, data = migrate_ok(a, NS_A, IP_A, NS_B, IP_B, "plain", "control")
    if marker not in data:
        fail("control: the memory marker is not in the capture of a plaintext migration: "
             "the capture check cannot see guest memory")
    log("control: the plaintext migration shows the marker %d times" % data.count(marker))

    # 2. encrypted there and back
    a, data = migrate_ok(b, NS_B, IP_B, NS_A, IP_A, "vmseal", "encrypted B->A")
    if memmark.encode() in data or marker in data:
        fail("encrypted B->A: the marker crossed in clear")
    b, data = migrate_ok(a, NS_A, IP_A, NS_B, IP_B, "vmseal", "encrypted A->B")
    if memmark.encode() in data:
        fail("encrypted A->B: the marker crossed in clear")
    log("encrypted migrations: no marker on the veth")
    src, src_ns, src_ip, dst_ns, dst_ip = b, NS_B, IP_B, NS_A, IP_A

    def slow(g):
        # slow enough to be cut part-way on any machine
        g.qmp.cmd("migrate-set-parameters", **{"max-bandwidth": 4 << 20})

    def fast(g):
        ml.fast(g)

    def expect_source_survives(name, src_g, r):
        if r.get("status") != "failed":
            fail("%s: the migration ended %s" % (name, r.get("status")))
        st = src_g.status()
        if st != "running":
            fail("%s: the source is %s" % (name, st))
        n = counts(src_g)[-1]
        m = wait_count_above(src_g, n + 1)
        log("%s: migration failed (%s); the source runs and counts on (%d -> %d)" %
            (name, r.get("error-desc", "?"), n, m))

    def start_encrypted(src_g, dst_g, port, via_port=None, key=None, relay_timeout=60):
        key = key or ml.relay_key()
        x, y = socket.socketpair()
        dst_g.qmp.cmd("getfd", fds=[x.fileno()], fdname="migin")
        x.close()
        rp, rport = ml.start_relay(RELAY, "recv", key, os.dup(y.fileno()),
                                   "%s:%d" % (dst_ip, port), netns=dst_ns, peer=src_ip,
                                   timeout=relay_timeout, log=relay_log)
        y.close()
        procs.append(rp)
        dst_g.qmp.cmd("migrate-incoming", uri="fd:migin")
        x, y = socket.socketpair()
        src_g.qmp.cmd("getfd", fds=[x.fileno()], fdname="migout")
        x.close()
        target = "%s:%d" % (dst_ip, via_port or rport)
        sp, _ = ml.start_relay(RELAY, "send", key, os.dup(y.fileno()), target, netns=src_ns,
                               timeout=relay_timeout, log=relay_log)
        y.close()
        procs.append(sp)
        src_g.qmp.cmd("migrate", uri="fd:migout")
        return sp, rp

    def wait_transferred(g, nbytes, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = g.qmp.cmd("query-migrate")
            if r.get("status") != "active" and r.get("status") != "setup":
                fail("migration %s before %d bytes" % (r.get("status"), nbytes))
            if r.get("ram", {}).get("transferred", 0) >= nbytes:
                return
            time.sleep(0.1)
        fail("migration did not move %d bytes within %d s" % (nbytes, timeout))

    # 3. destination killed mid-stream
    slow(src)
    dst = guest(dst_ns, incoming=True)
    sp, rp = start_encrypted(src, dst, 41001)
    wait_transferred(src, 2 << 20)
    dst.proc.kill()
    r = ml.wait_migration(src, MIG_TIMEOUT)
    expect_source_survives("destination killed", src, r)
    sp.wait(timeout=120)
    rp.wait(timeout=120)
    dst.kill()
    guests.remove(dst)

    # 4. network cut mid-stream (the relays' timeout: 5 s)
    dst = guest(dst_ns, incoming=True)
    sp, rp = start_encrypted(src, dst, 41002, relay_timeout=5)
    wait_transferred(src, 2 << 20)
    sh("ip", "-n", NS_A, "link", "set", VA, "down")
    t0 = time.time()
    r = ml.wait_migration(src, MIG_TIMEOUT)
    sh("ip", "-n", NS_A, "link", "set", VA, "up")
    expect_source_survives("network cut (after %.0f s)" % (time.time() - t0), src, r)
    sp.wait(timeout=120)
    rp.wait(timeout=120)
    if ml.wait_incoming(dst, 30) == "running":
        fail("network cut: the destination runs")
    dst.kill()
    guests.remove(dst)
    sh("ip", "-n", NS_A, "addr", "flush", "dev", VA, check=False)
    sh("ip", "-n", NS_A, "addr", "add", IP_A + "/24", "dev", VA, check=False)

    # 5. a man in the middle flips one bit of the stream (after 1 MiB)
    fast(src)
    mitm_port = 41100
    # The proxy runs in the source's namespace; the relay connects to it.
    mitm = subprocess.Popen(
        ["ip", "netns", "exec", src_ns, sys.executable, "-c",
         "import sys; sys.path.insert(0, %r); import test_e2e_migrate_stream_mitm as m; "
         "m.run(%d, %r, %d)" % (HERE, mitm_port, dst_ip, 41003)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    procs.append(mitm)
    time.sleep(1.0)
    dst = guest(dst_ns, incoming=True)
    before = os.path.getsize(relay_log)
    key = ml.relay_key()
    x, y = socket.socketpair()
    dst.qmp.cmd("getfd", fds=[x.fileno()], fdname="migin")
    x.close()
    rp, _ = ml.start_relay(RELAY, "recv", key, os.dup(y.fileno()), "%s:41003" % dst_ip,
                           netns=dst_ns, peer=src_ip, log=relay_log)
    y.close()
    dst.qmp.cmd("migrate-incoming", uri="fd:migin")
    x, y = socket.socketpair()
    src.qmp.cmd("getfd", fds=[x.fileno()], fdname="migout")
    x.close()
    sp, _ = ml.start_relay(RELAY, "send", key, os.dup(y.fileno()), "127.0.0.1:%d" % mitm_port,
                           netns=src_ns, log=relay_log)
    y.close()
    src.qmp.cmd("migrate", uri="fd:migout")
    r = ml.wait_migration(src, MIG_TIMEOUT)
    out, _ = mitm.communicate(timeout=60)
    if "flipped" not in out:
        fail("tampering: the proxy did not flip a bit: %s" % out)
    if rp.wait(timeout=60) == 0:
        fail("tampering: the receiving relay accepted a flipped bit")
    sp.wait(timeout=60)
    with open(relay_log) as f:
        f.seek(before)
        rl = f.read()
    if "authentication failed" not in rl:
        fail("tampering: the relay did not say why: " + rl)
    if ml.wait_incoming(dst, 30) == "running":
        fail("tampering: the destination runs")
    dst.kill()
    guests.remove(dst)
    expect_source_survives("one bit flipped", src, r)

    # 6. a connection from another address is refused (--peer)
    key = ml.relay_key()
    x, y = socket.socketpair()
    rp, rport = ml.start_relay(RELAY, "recv", key, os.dup(y.fileno()), "0.0.0.0:41004",
                               netns=dst_ns, peer="10.%d.77.9" % net, timeout=5, log=relay_log)
    y.close()
    before = os.path.getsize(relay_log)
    q, z = socket.socketpair()
    sp, _ = ml.start_relay(RELAY, "send", key, os.dup(z.fileno()), "%s:41004" % dst_ip,
                           netns=src_ns, timeout=5, log=relay_log)
    z.close()
    q.sendall(b"x" * 1000)
    q.close()
    if rp.wait(timeout=60) == 0:
        fail("--peer: the relay took a connection from another address")
    with open(relay_log) as f:
        f.seek(before)
        if "refused a connection not from" not in f.read():
            fail("--peer: no refusal logged")
    sp.wait(timeout=60)
    x.close()
    log("a connection from another address than the source's is refused")

    # the disk: power off and boot it again; it reads its marker
    src.kill()
    guests.remove(src)
    chk = ml.Guest(work, "check", guestdir, 160, "vmseal.check=%s" % diskmark, netns=NS_A,
                   disk=disk)
    guests.append(chk)
    chk.wait_serial("VMSEAL-POWEROFF", BOOT_TIMEOUT)
    if "VMSEAL-CHECK-OK" not in chk.serial():
        fail("the disk lost its marker: " + chk.serial()[-500:])
    log("the disk, booted again, reads the marker it wrote before the migrations")
    print("PASS")


try:
    main()
finally:
    cleanup()
