#!/usr/bin/env bash
# Started as root with run_as_user: the server binds, reads its keys, then
# runs as that user (and still serves). Skipped when not root.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/kmsd/kmsd_lib.sh"

[ "$(id -u)" -eq 0 ] || { echo "not root: skipped"; exit 77; }
user=nobody
id "$user" >/dev/null 2>&1 || { echo "no user $user: skipped"; exit 77; }
kmsd_init "$TMP/k"
echo "run_as_user = $user" >> "$TMP/k/kmsd.conf"
# the store and its folder belong to the service user; keys stay root's
chown "$user" "$TMP/k" "$TMP/k/kmsd.db"
chmod 711 "$TMP"
kmsd_start "$TMP/k"
uid=$(awk '/^Uid:/ { print $2 }' "/proc/$KPID/status")
[ "$uid" = "$(id -u "$user")" ] || fail "server runs as uid $uid"
caps=$(awk '/^CapEff:/ { print $2 }' "/proc/$KPID/status")
[ "$caps" = 0000000000000000 ] || fail "capabilities left: $caps"
out=$(timeout 60 $PY "$KTESTS/kmsd_tool.py" "$TMP/k" "$PORT" alice create-get 1) || fail "serves after dropping privileges"
[ "$(echo "$out" | awk '{ print length($2) }')" = 64 ] || fail "key"
ok "runs as $user after binding, no capabilities, serves"
[ "$(awk '/^Uid:/ { print $2 }' "/proc/$KPID/status")" != 0 ] || fail "root again"
kmsd_stop
