#!/usr/bin/env bash
# vCenter 7.0.3's recorded KMIP requests replayed over TLS to vmseal-kmsd,
# one connection per group as vCenter did; every answer checked and decoded
# by PyKMIP (see vcenter_replay.py).
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/kmsd/kmsd_lib.sh"

vec=$VMSEAL_SHARED/kmip-vectors/vcenter-7.0.3
[ -d "$vec" ] || fail "no vectors in $vec"
"$KMSD" init "$TMP/k" >/dev/null || fail init
"$KMSD" -c "$TMP/k" enroll vcenter >/dev/null 2>&1 || fail enroll
kmsd_start "$TMP/k"
timeout 120 $PY "$KTESTS/vcenter_replay.py" "$TMP/k" "$PORT" "$vec" || { tail -20 "$TMP/k/server.log"; fail "replay"; }
ok "vCenter 7.0.3 replay"
n=$(grep -c 'identity="CN=vcenter,O=vmseal" op=Add Attribute uid="[12]" result=Success' "$TMP/k/audit.log")
[ "$n" -eq 12 ] || fail "12 AddAttribute audit lines (got $n)"
ok "audit: one line per batch item"
kmsd_stop
