#!/usr/bin/env bash
# The audit log is a SHA-256 hash chain (docs/kmsd.md, "Audit"): a real
# server writes it, a restart continues it, audit-verify accepts it and names
# the first bad record of every tampered copy (one byte edited, a record
# deleted, two swapped, the middle cut, a line inserted, the head cut, the
# last line torn). A torn last line left by a crash is closed and recorded
# (audit.recovered) when the server starts again, and the chain stays intact.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/kmsd/kmsd_lib.sh"

kmsd_init "$TMP/k"
A=$TMP/k/audit.log
tool() { timeout 120 $PY "$KTESTS/kmsd_tool.py" "$TMP/k" "$PORT" "$@"; }
ZERO=0000000000000000000000000000000000000000000000000000000000000000
field() { sed -n "${2}p" "$1" | sed -n "s/.* $3=\([0-9a-f]*\)\( .*\)\?$/\1/p"; }

kmsd_start "$TMP/k"
tool alice create-get 3 >/dev/null || fail "create-get"
tool bob get 1 >/dev/null 2>&1 && fail "bob may not read alice's key"
kmsd_stop
n1=$(wc -l < "$A")
[ "$n1" -eq 7 ] || fail "7 audit lines after the first run (got $n1)"
[ "$(field "$A" 1 seq)" = 1 ] && [ "$(field "$A" 1 prev)" = "$ZERO" ] \
  || fail "the first record has seq=1 prev=64 zeros: $(head -1 "$A")"
grep -q 'identity="CN=bob,O=vmseal" op=Get uid="1" result=Failed reason="Permission Denied.*" seq=7 prev=[0-9a-f]\{64\} hash=[0-9a-f]\{64\}$' "$A" \
  || fail "chain fields after the escaped fields: $(sed -n 7p "$A")"
ok "records chained from seq=1, prev=0…0"

# restart: the chain continues from the last line of the file
kmsd_start "$TMP/k"
grep -q "hash chain continues at seq=8 after hash=$(field "$A" 7 hash)" "$KLOG" \
  || fail "the server names where the chain continues"
pids=()
for i in 1 2 3; do tool alice create 4 >/dev/null & pids+=($!); done
for p in "${pids[@]}"; do wait "$p" || fail "concurrent creators"; done
kmsd_stop
grep -q "last record seq=19 hash=$(field "$A" 19 hash)" "$KLOG" || fail "the head at stop"
[ "$(field "$A" 8 seq)" = 8 ] && [ "$(field "$A" 8 prev)" = "$(field "$A" 7 hash)" ] \
  || fail "after a restart seq=8 chains from record 7"
"$KMSD" -c "$TMP/k" audit-verify > "$TMP/out" || { cat "$TMP/out"; fail "audit-verify of the log"; }
grep -qx "audit log $A: 19 records, chain intact" "$TMP/out" || fail "verdict: $(cat "$TMP/out")"
# FILE given: no configuration needed
(cd "$TMP" && env -u VMSEAL_KMSD_CONFIG "$KMSD" audit-verify "$A") > "$TMP/out" \
  || fail "audit-verify FILE without a configuration"
ok "restart and 3 concurrent clients: 19 records, chain intact"

# tampered copies: exit 1 naming the first bad record
expect_bad() { # FILE "record R (line L): TEXT" what
  local rc=0
  "$KMSD" audit-verify "$1" > "$TMP/out" 2>&1 || rc=$?
  [ "$rc" -eq 1 ] || { cat "$TMP/out"; fail "$3: exit status $rc, not 1"; }
  grep -qF "audit log $1: $2" "$TMP/out" || fail "$3: $(cat "$TMP/out")"
  ok "$3: $(cut -c1-110 "$TMP/out")"
}
MISMATCH="hash mismatch — edited, deleted or reordered records before or at this line"
flip() { # FILE LINE: flip the low bit of one byte of the body of that line
  $PY - "$1" "$2" <<'PY'
import sys
p, n = sys.argv[1], int(sys.argv[2])
lines = open(p, 'rb').read().split(b'\n')
i = lines[n - 1].index(b' audit ') + 1
b = bytearray(lines[n - 1]); b[i] ^= 1; lines[n - 1] = bytes(b)
open(p, 'wb').write(b'\n'.join(lines))
PY
}
cp "$A" "$TMP/edit"; flip "$TMP/edit" 10
cmp -s "$A" "$TMP/edit" && fail "the edit changed nothing"
expect_bad "$TMP/edit" "record 10 (line 10): $MISMATCH" "one byte of record 10 edited"
sed '10d' "$A" > "$TMP/del"
expect_bad "$TMP/del" "record 10 (line 10): $MISMATCH" "record 10 deleted"
awk 'NR == 10 { held = $0; next } { print } NR == 11 { print held }' "$A" > "$TMP/swap"
expect_bad "$TMP/swap" "record 10 (line 10): $MISMATCH" "records 10 and 11 swapped"
sed '5,12d' "$A" > "$TMP/cut"
expect_bad "$TMP/cut" "record 5 (line 5): $MISMATCH" "records 5-12 cut from the middle"
sed '1d' "$A" > "$TMP/head"
expect_bad "$TMP/head" "record 1 (line 1): $MISMATCH" "record 1 cut from the head"
sed '6a 2025-05-01T10:22:00.512Z audit peer=- identity="x" op=Get uid="1" result=Success' "$A" > "$TMP/ins"
expect_bad "$TMP/ins" "record 7 (line 7): no valid chain fields" "a line inserted"
sed '4s/\(.* hash=[0-9a-f]*\)[0-9]\([0-9a-f]*\)$/\1x\2/' "$A" > "$TMP/hashfield"
expect_bad "$TMP/hashfield" "record 4 (line 4): no valid chain fields" "a byte of record 4's hash field"
sed '4s/ prev=\([0-9a-f]*\)/ prev=\U\1/' "$A" > "$TMP/upper"
cmp -s "$A" "$TMP/upper" && fail "upper-casing changed nothing"
expect_bad "$TMP/upper" "record 4 (line 4): no valid chain fields" "record 4's prev in upper case"
cp "$A" "$TMP/torn"; truncate -s -40 "$TMP/torn"
expect_bad "$TMP/torn" "record 19 (line 19): torn last line" "the last line torn mid-way"

# a crash mid-write leaves a torn last line: the next start closes it,
# records it (audit.recovered) and the chain stays intact
truncate -s -40 "$A"
kmsd_start "$TMP/k"
grep -q "a torn line of .* bytes .* recorded by audit.recovered seq=19" "$KLOG" || fail "torn line reported"
tool alice create 1 >/dev/null || fail "create after the torn line"
kmsd_stop
sed -n 20p "$A" | grep -q ' op=audit.recovered uid="" result=Success torn_bytes=[0-9]* torn_sha256=[0-9a-f]\{64\} seq=19 ' \
  || fail "line 20 records the torn line 19: $(sed -n 20p "$A")"
"$KMSD" audit-verify "$A" > "$TMP/out" || { cat "$TMP/out"; fail "audit-verify after recovery"; }
grep -qx "audit log $A: 20 records, chain intact" "$TMP/out" || fail "after recovery: $(cat "$TMP/out")"
grep -q "1 torn line(s) skipped" "$TMP/out" || fail "the skipped torn line is shown"
ok "torn last line closed and recorded at the next start; 20 records, chain intact"
sed '19d' "$A" > "$TMP/notorn"
expect_bad "$TMP/notorn" "record 19 (line 19): audit.recovered names a torn line" "the torn line deleted"

# a second server may not write the same file (the chain would fork)
kmsd_start "$TMP/k"
"$KMSD" init "$TMP/k2" --ec >/dev/null || fail "init k2"
sed -i "s|^audit_log.*|audit_log = $A|" "$TMP/k2/kmsd.conf"
timeout 20 "$KMSD" -c "$TMP/k2" serve --listen 127.0.0.1 --port 0 > "$TMP/k2.log" 2>&1 \
  && fail "a second server on the same audit log"
grep -q "audit log $A is in use by another process" "$TMP/k2.log" || fail "refusal: $(cat "$TMP/k2.log")"
kmsd_stop
ok "a second writer of the same audit log is refused"

# audit to stderr: no chained file, nothing to verify
sed -i 's|^audit_log.*|audit_log = -|' "$TMP/k2/kmsd.conf"
rc=0; "$KMSD" -c "$TMP/k2" audit-verify > "$TMP/out" 2>&1 || rc=$?
[ "$rc" -eq 2 ] && grep -q "no chained file" "$TMP/out" || fail "audit-verify with audit_log = -: $rc $(cat "$TMP/out")"
ok "audit_log = - has no chain to verify (exit 2)"
