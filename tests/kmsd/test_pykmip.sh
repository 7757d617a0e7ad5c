#!/usr/bin/env bash
# PyKMIP's client against vmseal-kmsd: life of a key, attributes, locate,
# register, access control (owner, grant, revoke-access, admin).
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/kmsd/kmsd_lib.sh"

kmsd_init "$TMP/k"
kmsd_start "$TMP/k"
out=$(timeout 120 $PY "$KTESTS/pykmip_client.py" "$TMP/k" "$PORT") || { echo "$out"; cat "$TMP/k/server.log"; fail "PyKMIP client run"; }
echo "$out" | sed 's/^/  /'
ruid=$(echo "$out" | sed -n 's/^RUID //p')
[ -n "$ruid" ] || fail "no registered uid"
ok "PyKMIP client session"
si=$(timeout 60 $PY "$KTESTS/pg_cluster_tool.py" "$TMP/k" alice server-info "$PORT") || fail "Query Server Information"
jq -e '.store == "sqlite" and (keys == ["store", "vendor"]) and (.vendor | startswith("vmseal vmseal-kmsd "))' \
  <<< "$si" >/dev/null \
  || fail "Server Information of a SQLite node: $si"
ok "Query Server Information of a SQLite node: store sqlite, nothing else"

bob_get() {
  timeout 60 $PY - "$TMP/k" "$PORT" "$ruid" <<'PY'
import sys
from kmip.pie import client, exceptions
d, port, uid = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = client.ProxyKmipClient(hostname='127.0.0.1', port=port, cert=f'{d}/clients/bob/bob.crt',
                           key=f'{d}/clients/bob/bob.key', ca=f'{d}/ca.crt', config_file='/dev/null')
c.open()
try:
    print(len(c.get(uid).value))
except exceptions.KmipOperationFailure as e:
    print(e.reason.name)
c.close()
PY
}
[ "$(bob_get)" = PERMISSION_DENIED ] || fail "bob denied before the grant"
"$KMSD" -c "$TMP/k" grant "$ruid" "CN=bob,O=vmseal" >/dev/null || fail "grant"
"$KMSD" -c "$TMP/k" grants | grep -q "^$ruid	CN=bob,O=vmseal$" || fail "grants lists it"
[ "$(bob_get)" = 32 ] || fail "bob may read after the grant"
ok "grant lets another identity read the key"
"$KMSD" -c "$TMP/k" revoke-access "$ruid" "CN=bob,O=vmseal" >/dev/null || fail "revoke-access"
[ "$(bob_get)" = PERMISSION_DENIED ] || fail "bob denied after revoke-access"
ok "revoke-access withdraws it"

# the audit trail names identities and operations, never key bytes
grep -q 'identity="CN=bob,O=vmseal" op=Get uid="'"$ruid"'" result=Failed reason="Permission Denied' "$TMP/k/audit.log" \
  || fail "audit line for the denied Get"
grep -q 'identity="CN=alice,O=vmseal" op=Create uid="1" result=Success' "$TMP/k/audit.log" || fail "audit line for Create"
if grep -qi "$(printf '000102030405060708090a0b0c0d0e0f')" "$TMP/k/audit.log" "$TMP/k/server.log"; then
  fail "key bytes in a log"
fi
ok "audit lines"
kmsd_stop
grep -q "stopped" "$TMP/k/server.log" || fail "clean stop logged"
ok "SIGTERM stops the server cleanly"
