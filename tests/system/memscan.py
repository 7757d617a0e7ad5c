#!/usr/bin/python3
"""memscan.py PID... : search the readable memory of processes for key bytes.

The keys come hex-encoded, one per line, on standard input. Each is looked
for raw, as lower- and upper-case hex and as base64 (padded and not). Prints
one line per hit ("PID ADDRESS form") and exits 1 when anything was found,
0 otherwise; 2 when a process could not be read at all (the scan proved
nothing)."""
import base64
import re
import sys


def needles(keys):
    out = []
    for k in keys:
        out += [(k, "raw"), (k.hex().encode(), "hex"), (k.hex().upper().encode(), "HEX"),
                (base64.b64encode(k), "base64"), (base64.b64encode(k).rstrip(b"="), "base64")]
    return out


def scan(pid, ns):
    hits, readable = [], 0
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+)", line)
            start, end, perms = int(m.group(1), 16), int(m.group(2), 16), m.group(3)
            if perms[0] != "r" or "[vvar]" in line or "[vsyscall]" in line:
                continue
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except (OSError, ValueError):
                continue
            readable += len(data)
            for n, form in ns:
                i = data.find(n)
                if i >= 0:
                    hits.append("%d %x %s" % (pid, start + i, form))
    return hits, readable


def main():
    keys = [bytes.fromhex(l.strip()) for l in sys.stdin if l.strip()]
    if not keys:
        sys.exit("memscan: no keys on standard input")
    ns = needles(keys)
    found = False
    for pid in map(int, sys.argv[1:]):
        hits, readable = scan(pid, ns)
        if readable == 0:
            print("memscan: nothing of process %d could be read" % pid, file=sys.stderr)
            sys.exit(2)
        for h in hits:
            print(h)
            found = True
    sys.exit(1 if found else 0)


main()
