#!/usr/bin/env bash
# Online backup while the server runs and writes; restore into a fresh
# folder (same master key and certificates); the keys read back the same.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/kmsd/kmsd_lib.sh"

kmsd_init "$TMP/k"
kmsd_start "$TMP/k"
tool() { timeout 120 $PY "$KTESTS/kmsd_tool.py" "$1" "$PORT" alice "${@:2}"; }
tool "$TMP/k" create-get 10 > "$TMP/before" || fail "create"
# keep writing while the backup runs
tool "$TMP/k" create 40 > "$TMP/during" &
writer=$!
sleep 0.2
"$KMSD" -c "$TMP/k" backup "$TMP/backup.db" || fail "backup while running"
wait "$writer" || fail "writer"
[ "$(stat -c %a "$TMP/backup.db")" = 600 ] || fail "backup is private"
"$KMSD" -c "$TMP/k" backup "$TMP/backup.db" 2>/dev/null && fail "backup overwrote a file"
ok "online backup"

# restore is refused while the server holds the store
"$KMSD" -c "$TMP/k" restore "$TMP/backup.db" 2>"$TMP/err" && fail "restore under a running server"
grep -q "in use by a running vmseal-kmsd" "$TMP/err" || fail "restore refusal explained"
ok "restore refused while the server runs"
kmsd_stop

# a fresh folder: configuration, certificates and master key, no store
mkdir -m 700 "$TMP/n"
cp -a "$TMP/k/kmsd.conf" "$TMP/k/master.key" "$TMP/k"/*.crt "$TMP/k"/*.key "$TMP/k/clients" "$TMP/n/"
"$KMSD" -c "$TMP/n" restore "$TMP/backup.db" || fail "restore"
kmsd_start "$TMP/n"
tool "$TMP/n" get $(cut -d' ' -f1 "$TMP/before") > "$TMP/after" || fail "get after restore"
diff "$TMP/before" "$TMP/after" >/dev/null || fail "keys differ after restore"
ok "restored keys read back identically"
# new objects continue after the restored ones
uid=$(tool "$TMP/n" create 1)
[ "$uid" -gt 10 ] || fail "new uid $uid after restore"
kmsd_stop

# a different master key cannot restore it
mkdir -m 700 "$TMP/x"
"$KMSD" init "$TMP/x" >/dev/null
rm "$TMP/x/kmsd.db"
"$KMSD" -c "$TMP/x" restore "$TMP/backup.db" 2>"$TMP/err" && fail "restore with another master key"
grep -q "master key" "$TMP/err" || fail "wrong master key explained"
ok "restore with another master key refused"
