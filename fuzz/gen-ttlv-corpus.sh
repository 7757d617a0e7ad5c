#!/usr/bin/env bash
# Regenerate fuzz/corpus/ttlv/ from the shared KMIP vectors: every distinct
# vCenter/PyKMIP message plus a spread of OASIS 1.1 test-case messages
# (~45 files). The corpus is committed; run this only to refresh it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
shared=${VMSEAL_SHARED:-$here/../../shared}
out=$here/corpus/ttlv
rm -rf "$out"; mkdir -p "$out"
vc=$shared/kmip-vectors/vcenter-7.0.3
for f in "$vc"/{01,02,04,06,08,11,15,16,17,27,36}-*.request.hex \
         "$vc"/{01,04,06,08,11,15,16,17}-*.response.hex; do
  tr -d '\n' < "$f" | xxd -r -p > "$out/vc-$(basename "$f" .hex).bin"
done
# Every 20th OASIS message (requests and responses alike), plus the one
# whose Vendor Extension carries a non-KMIP tag (0x014242).
grep -E '^(420078|42007B)[0-9A-F]+' "$shared/kmip-vectors/kmip-testcases-v1.1.txt" | tr -d '\r' |
  awk 'NR % 20 == 1 || /42009C0100000010014242/' | while read -r hex; do
    n=$((${n:-0} + 1))
    printf '%s' "$hex" | xxd -r -p > "$out/oasis-$(printf '%03d' "$n").bin"
  done
# Identical inputs add nothing: keep one of each.
declare -A seen
for f in "$out"/*.bin; do
  h=$(sha256sum "$f" | cut -c1-64)
  if [ -n "${seen[$h]:-}" ]; then rm "$f"; else seen[$h]=1; fi
done
ls "$out" | wc -l
