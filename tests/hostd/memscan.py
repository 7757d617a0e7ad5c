#!/usr/bin/env python3
"""memscan.py PID NAME=HEX...: count each secret in the readable memory of
PID (/proc/PID/maps + /proc/PID/mem) in raw, lower-case hex, upper-case hex
and base64 form. Prints "NAME FORM COUNT" per secret and form, and a first
line "# scanned N bytes in M regions"."""
import base64
import sys


def forms(raw):
    b64 = base64.b64encode(raw)
    return {
        "raw": raw,
        "hex": raw.hex().encode(),
        "HEX": raw.hex().upper().encode(),
        # without its padding: also found inside longer base64 text that
        # starts at the same byte
        "base64": b64.rstrip(b"="),
    }


def main():
    pid = sys.argv[1]
    secrets = []
    for arg in sys.argv[2:]:
        name, hexval = arg.split("=", 1)
        for form, pat in forms(bytes.fromhex(hexval)).items():
            secrets.append((name, form, pat))
    counts = {(n, f): 0 for n, f, _ in secrets}
    longest = max(len(p) for _, _, p in secrets)
    total = regions = 0
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            path = fields[5] if len(fields) > 5 else ""
            if fields[1][0] != "r" or path in ("[vvar]", "[vsyscall]", "[vvar_vclock]"):
                continue
            regions += 1
            tail = b""
            addr = lo
            while addr < hi:
                n = min(1 << 20, hi - addr)
                try:
                    mem.seek(addr)
                    chunk = mem.read(n)
                except OSError:
                    break
                if not chunk:
                    break
                total += len(chunk)
                buf = tail + chunk
                for name, form, pat in secrets:
                    start = 0
                    while True:
                        i = buf.find(pat, start)
                        if i < 0:
                            break
                        # a hit wholly inside the carried-over tail was counted before
                        if i + len(pat) > len(tail):
                            counts[(name, form)] += 1
                        start = i + 1
                tail = buf[-(longest - 1):] if longest > 1 else b""
                addr += len(chunk)
    print(f"# scanned {total} bytes in {regions} regions of {pid}")
    for (name, form), c in counts.items():
        print(name, form, c)


main()
