#!/usr/bin/python3
"""Seed corpus of fuzz/migstream.c: migration streams sealed with Python's
AES-GCM (the `cryptography` package, an implementation independent of
vmseal's) under the fixed test key of fuzz/fuzz_seal_keys.h and the nonce
0x0706050403020100; plus broken ones.  Usage: gen-migstream-corpus.py OUTDIR"""
import os
import struct
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY = bytes(range(32))
NONCE = 0x0706050403020100


def frame(aead, counter, ftype, payload):
    hdr = b"VMM1" + bytes([ftype, 0, 0, 0]) + struct.pack(">I", len(payload))
    iv = struct.pack(">QI", NONCE, counter)
    return hdr + aead.encrypt(iv, payload, hdr)


def stream(chunks):
    aead = AESGCM(KEY)
    out = b"".join(frame(aead, i, 1, c) for i, c in enumerate(chunks))
    total = sum(len(c) for c in chunks)
    return out + frame(aead, len(chunks), 2, struct.pack(">Q", total))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    seeds = {
        "valid-empty": stream([]),
        "valid-one": stream([b"QEVM\x00\x00\x00\x03"]),
        "valid-three": stream([b"a" * 100, b"b", bytes(range(256)) * 4]),
        "valid-4k": stream([bytes(4096)]),
    }
    three = seeds["valid-three"]
    first = len(frame(AESGCM(KEY), 0, 1, b"a" * 100))
    seeds["bad-bitflip"] = three[:20] + bytes([three[20] ^ 1]) + three[21:]
    seeds["bad-truncated"] = three[: len(three) - 10]
    seeds["bad-no-end"] = three[: len(three) - 36]
    seeds["bad-reordered"] = three[first:first * 2 - 99] + three[:first]
    seeds["bad-extended"] = three + three[:first]
    seeds["bad-length"] = b"VMM1\x01\x00\x00\x00\x00\x10\x00\x01" + bytes(32)
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
