#!/usr/bin/env bash
# vmseal-managerd with PyKMIP's server (pykmip-server, Debian python3-pykmip)
# as its key provider: trust both ways (CA upload; CSR signed with the openssl
# CLI as the KMS administrator), status over TLS 1.2 with the suites PyKMIP
# needs, then KEK creation/retrieval/hand-out through the manager's code
# (interop_keys), failing over past a dead server.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/managerd/managerd_lib.sh"
source "$VMSEAL_SRC/tests/pykmip_lib.sh"
[ -x /usr/bin/pykmip-server ] || fail "pykmip-server missing (apt-get install python3-pykmip)"

cd "$TMP"
pykmip_certs "pykmip test CA"

KPORT=$(free_port) DEAD=$(free_port)
pykmip_conf "$KPORT"
# its own process group (it forks helpers): stopped by group id at the end
setsid $PY /usr/bin/pykmip-server -f "$TMP/server.conf" -l "$TMP/server.log" >>"$TMP/server.out" 2>&1 </dev/null &
KPID=$!
at_exit "kill -KILL -- -$KPID 2>/dev/null"
for ((i = 0; i < 150; i++)); do
  (exec 3<>/dev/tcp/127.0.0.1/$KPORT) 2>/dev/null && break
  kill -0 "$KPID" 2>/dev/null || { tail -5 "$TMP/server.out" >&2; fail "pykmip-server died"; }
  sleep 0.1
done
ok "pykmip-server on 127.0.0.1:$KPORT"

export HOME=$TMP/home
mkdir -p "$HOME"
M=$TMP/m
mgr_init "$M"
mgr_start "$M"
expect_rc 0 "$VMSEAL" --url "$MURL" --ca "$M/ca.crt" login --password-file "$M/admin-password"
expect_rc 0 "$VMSEAL" kms add pykmip --server "127.0.0.1:$DEAD" --server "127.0.0.1:$KPORT"
expect_rc 0 "$VMSEAL" kms trust pykmip --ca "$TMP/ca.pem"
expect_rc 0 "$VMSEAL" kms csr pykmip --out "$TMP/mgr.csr"
printf 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n' > mgr.ext
ossl x509 -req -in mgr.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out mgr.pem -days 2 -extfile mgr.ext
expect_rc 0 "$VMSEAL" kms client-cert pykmip --cert "$TMP/mgr.pem"
expect_rc 0 "$VMSEAL" --json kms status pykmip
echo "$OUT" | $PY -c '
import json,sys
s=json.load(sys.stdin)
assert s["state"]=="connected", s
a,b=s["servers"]
assert a["state"]=="unreachable", a
assert b["tls_ok"] and b["kmip_ok"] and b["protocol"]=="TLSv1.2", b
' || fail "status with pykmip-server: $OUT"
ok "manager and pykmip-server trust each other; status over TLS 1.2"
mgr_stop

timeout 120 "$VMSEAL_BUILD/tests/managerd/interop_keys" "$TMP" "127.0.0.1:$KPORT" "127.0.0.1:$DEAD" \
  "$TMP/ca.pem" "$TMP/client.pem" "$TMP/client.key" pykmip || { tail -20 "$TMP/server.log" >&2; fail "interop_keys"; }
ok "KEKs through pykmip-server"
