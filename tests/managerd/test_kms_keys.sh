#!/usr/bin/env bash
# The manager's KEK creation, tagging, retrieval and hand-out against a real
# vmseal-kmsd (see interop_keys.c).
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/kmsd/kmsd_lib.sh"
kmsd_init "$TMP/k"
"$KMSD" -c "$TMP/k" enroll manager >/dev/null 2>&1 || fail "enroll manager"
kmsd_start "$TMP/k"
DEAD=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
timeout 120 "$VMSEAL_BUILD/tests/managerd/interop_keys" "$TMP" "127.0.0.1:$PORT" "127.0.0.1:$DEAD" \
  "$TMP/k/ca.crt" "$TMP/k/clients/manager/manager.crt" "$TMP/k/clients/manager/manager.key" kmsd \
  || { tail -20 "$TMP/k/server.log" >&2; fail "interop_keys"; }
grep -q 'identity="CN=manager,O=vmseal" op=Create' "$TMP/k/audit.log" || fail "kmsd audit shows the manager creating keys"
kmsd_stop
ok "KEKs through vmseal-kmsd"
