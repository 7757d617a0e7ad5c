#!/usr/bin/env bash
# A committed Create survives kill -9 right after its response: restart, the
# keys are there with the same bytes. Repeated a few times.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/kmsd/kmsd_lib.sh"

kmsd_init "$TMP/k"
tool() { timeout 60 $PY "$KTESTS/kmsd_tool.py" "$TMP/k" "$PORT" alice "$@"; }
: > "$TMP/expected"
for round in 1 2 3; do
  kmsd_start "$TMP/k"
  tool create-get 5 >> "$TMP/expected" || fail "create-get"
  # the last Create: kill -9 as soon as its response is in
  uid=$(tool create 1) || fail "create"
  kill -9 "$KPID"
  wait "$KPID" 2>/dev/null || true
  echo "$uid" >> "$TMP/last-uids"
done
kmsd_start "$TMP/k"
n=$(wc -l < "$TMP/expected")
[ "$n" -eq 15 ] || fail "15 keys made ($n)"
# every key made before a kill reads back identically
tool get $(cut -d' ' -f1 "$TMP/expected") > "$TMP/got" || fail "get after restart"
diff "$TMP/expected" "$TMP/got" >/dev/null || fail "keys changed across kill -9"
# and the Creates answered just before each kill are there too
tool get $(cat "$TMP/last-uids") > "$TMP/last" || fail "the last Create before kill -9 is lost"
[ "$(wc -l < "$TMP/last")" -eq 3 ] || fail "3 last keys"
awk '{ if (length($2) != 64) exit 1 }' "$TMP/last" || fail "32-byte keys"
ok "kill -9 right after Create loses nothing (3 rounds, $((n + 3)) keys)"

# concurrent creators share group commits: every answered Create is durable
pids=()
for i in 1 2 3 4 5 6 7 8; do
  tool create-get 10 > "$TMP/par.$i" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent creator failed"; done
cat "$TMP"/par.* > "$TMP/par"
kill -9 "$KPID"
wait "$KPID" 2>/dev/null || true
[ "$(wc -l < "$TMP/par")" -eq 80 ] || fail "80 concurrent creates answered"
[ "$(cut -d' ' -f1 "$TMP/par" | sort -u | wc -l)" -eq 80 ] || fail "80 distinct identifiers"
kmsd_start "$TMP/k"
tool get $(cut -d' ' -f1 "$TMP/par") > "$TMP/par.got" || fail "get after kill -9"
diff "$TMP/par" "$TMP/par.got" >/dev/null || fail "concurrent keys changed across kill -9"
ok "8 concurrent creators, kill -9, all 80 keys intact"
kmsd_stop
