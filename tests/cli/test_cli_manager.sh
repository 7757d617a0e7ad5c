#!/usr/bin/env bash
# The vmseal CLI against a real vmseal-managerd and a real vmseal-kmsd:
# login, users and privileges, key providers (add, trust both ways through
# CSR and through an enrolled certificate, status, failover order, KMS
# down), host registration with certificates, events with old/new values.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/kmsd/kmsd_lib.sh"
source "$VMSEAL_SRC/tests/managerd/managerd_lib.sh"

export HOME=$TMP/home XDG_CONFIG_HOME=
mkdir -p "$HOME"
M=$TMP/m
mgr_init "$M"
[ "$(stat -c %a "$M/admin-password")" = 600 ] || fail "admin-password is not 0600"
mgr_start "$M"
grep -q "$(cat "$M/admin-password")" "$MLOG" && fail "the admin password is in the log"

# --- login -------------------------------------------------------------
expect_rc 3 "$VMSEAL" whoami
echo wrongpassword > "$TMP/bad"
expect_rc 3 "$VMSEAL" --url "$MURL" --ca "$M/ca.crt" login administrator --password-file "$TMP/bad"
echo "$OUT" | grep -q "wrong user name or password" || fail "bad password message"
# a CA that did not sign the manager's certificate
"$MGRD" init "$TMP/other" >/dev/null 2>&1
# init with an existing CA: its certificate and key are taken over (key
# 0600) and sign the new manager's certificate; a key of another CA is refused
mgr_init "$TMP/reuse" --ca-cert "$TMP/other/ca.crt" --ca-key "$TMP/other/ca.key"
cmp -s "$TMP/other/ca.crt" "$TMP/reuse/ca.crt" || fail "init --ca-cert: ca.crt differs"
[ "$(stat -c %a "$TMP/reuse/ca.key")" = 600 ] || fail "init --ca-key: ca.key is not 0600"
[ "$(openssl pkey -in "$TMP/reuse/ca.key" -pubout)" = "$(openssl x509 -in "$TMP/other/ca.crt" -noout -pubkey)" ] \
  || fail "init --ca-key: not the CA's key"
openssl verify -CAfile "$TMP/other/ca.crt" "$TMP/reuse/server.crt" >/dev/null || fail "init --ca-cert: server.crt"
expect_rc 1 "$MGRD" init "$TMP/mismatch" --ca-cert "$TMP/other/ca.crt" --ca-key "$M/ca.key"
echo "$OUT" | grep -q "does not match" || fail "init with a CA key of another CA"
expect_rc 7 "$VMSEAL" --url "$MURL" --ca "$TMP/other/ca.crt" login --password-file "$M/admin-password"
expect_rc 0 "$VMSEAL" --url "$MURL" --ca "$M/ca.crt" login --password-file "$M/admin-password"
[ "$(stat -c %a "$HOME/.config/vmseal/session.json")" = 600 ] || fail "session file mode"
[ "$(stat -c %a "$HOME/.config/vmseal")" = 700 ] || fail "session folder mode"
expect_rc 0 "$VMSEAL" whoami
echo "$OUT" | grep -q "^administrator (role Administrator)" || fail "whoami"
ok "login, wrong password (3), untrusted manager (7), session file 0600"

# --- users and privileges ------------------------------------------------
printf 'bobpassword1\n' > "$TMP/bobpw"
expect_rc 0 "$VMSEAL" user add bob --role NoCryptoAdmin --password-file "$TMP/bobpw"
expect_rc 6 "$VMSEAL" user add bob --role NoCryptoAdmin --password-file "$TMP/bobpw"
expect_rc 2 "$VMSEAL" user add carol --role NoSuchRole --password-file "$TMP/bobpw"
expect_rc 0 "$VMSEAL" --json user ls
echo "$OUT" | $PY -c 'import json,sys; u={x["name"]:x["role"] for x in json.load(sys.stdin)["users"]}; assert u=={"administrator":"Administrator","bob":"NoCryptoAdmin"}, u' \
  || fail "user ls --json"
expect_rc 0 "$VMSEAL" user show bob
echo "$OUT" | grep -q "^role  *NoCryptoAdmin$" || fail "user show: $OUT"
expect_rc 4 "$VMSEAL" user show nobody
BOBHOME=$TMP/bobhome; mkdir -p "$BOBHOME"
HOME=$BOBHOME expect_rc 0 "$VMSEAL" --url "$MURL" --ca "$M/ca.crt" login bob --password-file "$TMP/bobpw"
HOME=$BOBHOME expect_rc 5 "$VMSEAL" kms add nope --server 127.0.0.1:5696
echo "$OUT" | grep -q "lacks the Cryptographer.ManageKeyServers privilege" || fail "denied message"
HOME=$BOBHOME expect_rc 5 "$VMSEAL" kms ls
echo "$OUT" | grep -q "lacks the Cryptographer.ReadKeyServersInfo privilege" || fail "kms ls denied message: $OUT"
ok "No cryptography administrator may neither read nor manage key providers (5)"
# a custom role: may read and encrypt, nothing else
expect_rc 0 "$VMSEAL" role add Encryptor System.Read Cryptographer.Encrypt
expect_rc 2 "$VMSEAL" role add Bad No.Such.Privilege
expect_rc 0 "$VMSEAL" user role bob Encryptor
HOME=$BOBHOME expect_rc 5 "$VMSEAL" user add eve --role ReadOnly --password-file "$TMP/bobpw"
HOME=$BOBHOME expect_rc 0 "$VMSEAL" --json whoami
echo "$OUT" | grep -q '"privileges": "System.Read Cryptographer.Encrypt"' || fail "custom role privileges: $OUT"
expect_rc 6 "$VMSEAL" role rm Encryptor    # still assigned
expect_rc 0 "$VMSEAL" user role bob NoCryptoAdmin
expect_rc 0 "$VMSEAL" role rm Encryptor
expect_rc 5 "$VMSEAL" role rm Administrator
ok "custom roles from privileges; role changes apply to live sessions"
printf 'bobpassword2\n' > "$TMP/bobpw2"
expect_rc 0 "$VMSEAL" user passwd bob --password-file "$TMP/bobpw2"
HOME=$BOBHOME expect_rc 3 "$VMSEAL" kms ls     # bob's session ended with the reset
HOME=$BOBHOME expect_rc 3 "$VMSEAL" login bob --password-file "$TMP/bobpw"
HOME=$BOBHOME expect_rc 0 "$VMSEAL" login bob --password-file "$TMP/bobpw2"
ok "password reset ends the user's sessions; new password works"

# --- key providers: KMS down, trust both ways ----------------------------
K=$TMP/k
kmsd_init "$K"
"$KMSD" -c "$K" enroll manager >/dev/null 2>&1 || fail "enroll manager"
kmsd_start "$K"
FREE=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
expect_rc 0 "$VMSEAL" kms add k1 --server "127.0.0.1:$PORT"
expect_rc 1 "$VMSEAL" kms status k1
echo "$OUT" | grep -q "not trusted" || fail "status before trust: $OUT"
# a leaf certificate is not a trust anchor
openssl x509 -in "$K/server.crt" -out "$TMP/leaf.crt"
expect_rc 2 "$VMSEAL" kms trust k1 --ca "$TMP/leaf.crt"
echo "$OUT" | grep -q "neither a CA nor self-signed" || fail "leaf refused as trust anchor: $OUT"
# vCenter-style "Trust KMS": accept the CA the server presents in its chain
expect_rc 1 "$VMSEAL" kms trust k1 </dev/null
echo "$OUT" | grep -q "not trusted" || fail "trust needs a yes"
expect_rc 0 "$VMSEAL" kms trust k1 --yes
want=$(openssl x509 -in "$K/ca.crt" -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' | tr A-F a-f)
echo "$OUT" | grep -q "SHA-256 $want" || fail "trusted the KMS CA: $OUT"
expect_rc 0 "$VMSEAL" kms trust k1 --ca "$K/ca.crt"
expect_rc 1 "$VMSEAL" --json kms status k1
echo "$OUT" | $PY -c 'import json,sys; s=json.load(sys.stdin)["servers"][0]; assert s["reachable"] and not s["tls_ok"] and s["state"] in ("client refused","TLS failed"), s' \
  || fail "the KMS refuses a manager without a client certificate: $OUT"
# the manager makes a key and a CSR; the KMS CA signs it (openssl as the KMS admin)
expect_rc 0 "$VMSEAL" kms csr k1 --cn vmseal-manager --out "$TMP/mgr.csr"
grep -q "BEGIN CERTIFICATE REQUEST" "$TMP/mgr.csr" || fail "CSR file"
expect_rc 0 "$VMSEAL" --json kms ls
echo "$OUT" | grep -q '"csr_pending": true' || fail "csr pending shown"
expect_rc 0 "$VMSEAL" kms show k1
echo "$OUT" | grep -q "^csr_pending  *true$" || fail "kms show: $OUT"
expect_rc 4 "$VMSEAL" kms show nosuchkms
printf 'extendedKeyUsage = clientAuth\n' > "$TMP/ext"
openssl x509 -req -in "$TMP/mgr.csr" -CA "$K/ca.crt" -CAkey "$K/ca.key" -CAcreateserial -days 30 \
  -extfile "$TMP/ext" -out "$TMP/mgr.crt" 2>/dev/null || fail "openssl signs the CSR"
# a certificate for some other key is refused
expect_rc 2 "$VMSEAL" kms client-cert k1 --cert "$K/clients/alice/alice.crt"
echo "$OUT" | grep -q "does not match" || fail "mismatched certificate refused"
expect_rc 0 "$VMSEAL" kms client-cert k1 --cert "$TMP/mgr.crt"
[ "$(stat -c %a "$M/kms/k1/client.key")" = 600 ] || fail "client key mode"
expect_rc 0 "$VMSEAL" kms status k1
echo "$OUT" | grep -q "^Key provider k1: connected" || fail "connected after CSR flow: $OUT"
echo "$OUT" | grep -q "CN=kms" || true
ok "trust both ways through a CSR signed by the KMS CA: connected"

# the other flow: a certificate and key issued by vmseal-kmsd enroll
expect_rc 0 "$VMSEAL" kms add k2 --server "127.0.0.1:$FREE" --server "127.0.0.1:$PORT"
expect_rc 0 "$VMSEAL" kms trust k2 --ca "$K/ca.crt"
expect_rc 0 "$VMSEAL" kms client-cert k2 --cert "$K/clients/manager/manager.crt" --key "$K/clients/manager/manager.key"
expect_rc 0 "$VMSEAL" --json kms status k2
echo "$OUT" | $PY -c '
import json,sys
s=json.load(sys.stdin)
assert s["state"]=="connected", s
a,b=s["servers"]
assert not a["reachable"] and a["state"]=="unreachable", a
assert b["tls_ok"] and b["kms_certificate"]["status"]=="valid" and b["kms_certificate"]["days_left"]>0, b
assert b["kmip_ok"] and b["kmip_version"].startswith("1."), b
assert s["client_certificate"]["subject"]=="CN=manager,O=vmseal", s
' || fail "status of a two-server cluster with the first one down: $OUT"
expect_rc 0 "$VMSEAL" kms default k2
expect_rc 0 "$VMSEAL" --json kms ls
echo "$OUT" | $PY -c 'import json,sys; d={p["name"]:p["default"] for p in json.load(sys.stdin)["providers"]}; assert d=={"k1":False,"k2":True}, d' \
  || fail "one default provider"
ok "enrolled certificate flow, failover order shown, default provider"

kmsd_stop
expect_rc 1 "$VMSEAL" kms status k1
echo "$OUT" | grep -q "unreachable" || fail "KMS down: $OUT"
echo "$OUT" | grep -Eqi "refused|no answer within" || fail "KMS down reason: $OUT"
ok "KMS down: status says unreachable (exit 1)"

expect_rc 0 "$VMSEAL" kms servers k1 --server "127.0.0.1:$FREE" --server "127.0.0.1:$PORT"
expect_rc 4 "$VMSEAL" kms rm nosuch
expect_rc 0 "$VMSEAL" kms rm k1
[ ! -e "$M/kms/k1/client.key" ] || fail "client key left behind"

# --- hosts register with their certificates -------------------------------
"$MGRD" -c "$M" issue-host esx1 --out "$TMP/esx1" >/dev/null || fail "issue-host"
"$MGRD" -c "$M" issue-host esx2 --out "$TMP/esx2" >/dev/null || fail "issue-host"
reg() {   # reg CERTDIR NAME HOSTNAME -> HTTP status
  curl -s -o "$TMP/reg.out" -w '%{http_code}' --cacert "$M/ca.crt" --cert "$1/$2.crt" --key "$1/$2.key" \
    -H 'Content-Type: application/json' \
    -d "{\"name\":\"$3\",\"url\":\"https://127.0.0.1:9/\",\"datastore\":\"/srv/vmseal/$3\",\"custody_key\":\"CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\"}" \
    "$MURL/api/v1/hosts/register" || true
}
[ "$(reg "$TMP/esx1" esx1 esx1)" = 200 ] || fail "esx1 registers"
[ "$(reg "$TMP/esx2" esx2 esx1)" = 403 ] || fail "esx2 may not register as esx1"
grep -q "does not name host esx1" "$TMP/reg.out" || fail "CN mismatch message"
# a client certificate from another CA does not get through TLS
"$MGRD" -c "$TMP/other" issue-host esx1 --out "$TMP/rogue" >/dev/null
[ "$(reg "$TMP/rogue" esx1 esx1)" = 000 ] || fail "foreign CA refused"
# no certificate at all
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$M/ca.crt" -d '{"name":"esx1","url":"https://x:1","datastore":"d","custody_key":"CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk="}' \
  "$MURL/api/v1/hosts/register")
[ "$code" = 403 ] || fail "register without a certificate: $code"
# a registered host asks for keys of VMs it does not run: denied
out=$(curl -s --cacert "$M/ca.crt" --cert "$TMP/esx1/esx1.crt" --key "$TMP/esx1/esx1.key" \
  -d '{"kek_ids":["1","2"]}' "$MURL/api/v1/hosts/self/keys")
[ "$out" = '{"keys":[],"denied":["1","2"],"failed":[]}' ] || fail "keys for unknown KEKs: $out"
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$M/ca.crt" --cert "$TMP/esx2/esx2.crt" --key "$TMP/esx2/esx2.key" \
  -d '{"kek_ids":[]}' "$MURL/api/v1/hosts/self/keys")
[ "$code" = 403 ] || fail "an unregistered host may not ask for keys: $code"
expect_rc 0 "$VMSEAL" host ls
echo "$OUT" | grep -q "^esx1 .*https://127.0.0.1:9 .*/srv/vmseal/esx1" || fail "host ls: $OUT"
expect_rc 0 "$VMSEAL" host show esx1
echo "$OUT" | grep -q "^datastore  *\(/srv/vmseal/esx1\)$" || fail "host show: $OUT"
expect_rc 0 "$VMSEAL" --json host show esx1
echo "$OUT" | $PY -c 'import json,sys; assert json.load(sys.stdin)["name"] == "esx1"' || fail "host show --json"
ok "hosts register with a CA-signed certificate whose CN is their name"

# --- host identity: the first certificate is pinned ------------------------
fp() { openssl x509 -in "$1" -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' | tr A-F a-f; }
"$MGRD" -c "$M" issue-host esx1 --out "$TMP/esx1b" >/dev/null || fail "issue-host (second certificate)"
[ "$(reg "$TMP/esx1b" esx1 esx1)" = 403 ] || fail "a second certificate for esx1 is held"
grep -q "waits for an administrator" "$TMP/reg.out" || fail "pending message: $(cat "$TMP/reg.out")"
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$M/ca.crt" --cert "$TMP/esx1b/esx1.crt" --key "$TMP/esx1b/esx1.key" \
  -d '{"kek_ids":[]}' "$MURL/api/v1/hosts/self/keys")
[ "$code" = 403 ] || fail "the pending certificate asks for keys: $code"
expect_rc 0 "$VMSEAL" --json host ls
new=$(fp "$TMP/esx1b/esx1.crt")
echo "$OUT" | grep -q "\"pending_fingerprint\": \"$new\"" || fail "host ls shows the pending certificate: $OUT"
expect_rc 2 "$VMSEAL" host approve-cert esx1 --fingerprint "$(fp "$TMP/esx1/esx1.crt")"
expect_rc 0 "$VMSEAL" host approve-cert esx1 --fingerprint "$new"
[ "$(reg "$TMP/esx1b" esx1 esx1)" = 200 ] || fail "the approved certificate registers"
[ "$(reg "$TMP/esx1" esx1 esx1)" = 403 ] || fail "the replaced certificate still registers"
grep -q "revoked" "$TMP/reg.out" || fail "revoked message: $(cat "$TMP/reg.out")"
expect_rc 0 "$VMSEAL" host revoke-cert esx1
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$M/ca.crt" --cert "$TMP/esx1b/esx1.crt" --key "$TMP/esx1b/esx1.key" \
  -d '{"kek_ids":[]}' "$MURL/api/v1/hosts/self/keys")
[ "$code" = 403 ] || fail "a revoked certificate asks for keys: $code"
[ "$(reg "$TMP/esx1b" esx1 esx1)" = 403 ] || fail "a revoked certificate registers again"
# a third certificate after revocation: approved, works
"$MGRD" -c "$M" issue-host esx1 --out "$TMP/esx1c" >/dev/null || fail "issue-host (third certificate)"
[ "$(reg "$TMP/esx1c" esx1 esx1)" = 403 ] || fail "after revocation a new certificate waits"
expect_rc 0 "$VMSEAL" host approve-cert esx1 --fingerprint "$(fp "$TMP/esx1c/esx1.crt")"
[ "$(reg "$TMP/esx1c" esx1 esx1)" = 200 ] || fail "the approved third certificate registers"
cp "$TMP/esx1c/esx1.crt" "$TMP/esx1/esx1.crt"; cp "$TMP/esx1c/esx1.key" "$TMP/esx1/esx1.key"
# issue-host refuses the manager's own names
"$MGRD" -c "$M" issue-host vmseal-manager --out "$TMP/fake" >/dev/null 2>"$TMP/err" && fail "issue-host vmseal-manager"
"$MGRD" -c "$M" issue-host localhost --out "$TMP/fake" >/dev/null 2>"$TMP/err" && fail "issue-host localhost (a name of the manager)"
grep -q "manager's own name" "$TMP/err" || fail "issue-host message: $(cat "$TMP/err")"
expect_rc 0 "$VMSEAL" --json events --action host.
echo "$OUT" | $PY -c '
import json,sys
ev=json.load(sys.stdin); acts=[(e["action"],e["result"]) for e in ev]
for a in [("host.cert-pending","denied"),("host.approve-cert","ok"),("host.revoke-cert","ok"),("host.register","denied")]:
    assert a in acts, (a, acts)' || fail "host certificate events: $OUT"
ok "host certificates: first pinned, another held for approval, approve revokes the old, revoke-cert cuts a host off; issue-host refuses the manager's names"

# a VM on a host whose agent is down: refused, nothing left behind
expect_rc 1 "$VMSEAL" vm create vm1 --host esx1 --disk 16
expect_rc 0 "$VMSEAL" --json vm ls
[ "$(echo "$OUT" | $PY -c 'import json,sys; print(len(json.load(sys.stdin)["vms"]))')" = 0 ] || fail "VM left behind"
expect_rc 2 "$VMSEAL" vm create vm1 --host nohost
expect_rc 4 "$VMSEAL" vm info vm1
ok "VM creation on an unreachable host fails cleanly"

# --- events: who changed what from what to what ---------------------------
expect_rc 0 "$VMSEAL" --json events --since 0
echo "$OUT" | $PY -c '
import json,sys
ev=json.load(sys.stdin)
acts=[e["action"] for e in ev]
for a in ["user.create","user.password","kms.add","kms.trust","kms.csr","kms.client-cert","kms.default","kms.update","kms.remove","host.register"]:
    assert a in acts, (a, acts)
upd=[e for e in ev if e["action"]=="kms.update"][-1]
assert upd["old"]["servers"]==[upd["new"]["servers"][1]], upd
assert len(upd["new"]["servers"])==2
tr=[e for e in ev if e["action"]=="kms.trust" and e["object"]=="k1"][0]
assert tr["old"] is None and tr["new"]["is_ca"] and tr["user"]=="administrator", tr
pw=[e for e in ev if e["action"]=="user.password"][0]
assert "bobpassword" not in json.dumps(pw), pw
for e in ev:
    s=json.dumps(e)
    assert "PRIVATE KEY" not in s and "bobpassword" not in s, e
' || fail "events with old and new values: $OUT"
grep -q "bobpassword" "$MLOG" && fail "a password in the manager log"
ok "events record user, action, object, old and new values; no secrets"

# events --follow sees a change made meanwhile
( sleep 1; "$VMSEAL" user add dave --role ReadOnly --password-file "$TMP/bobpw" >/dev/null ) &
timeout 10 "$VMSEAL" events --follow > "$TMP/follow" 2>&1 &
FPID=$!
for ((i = 0; i < 100; i++)); do grep -q "user.create .*dave" "$TMP/follow" && break; sleep 0.1; done
kill "$FPID" 2>/dev/null; wait "$FPID" 2>/dev/null || true
grep -q "user.create .*dave" "$TMP/follow" || { cat "$TMP/follow"; fail "events --follow"; }
ok "events --follow"

expect_rc 0 "$VMSEAL" logout
expect_rc 3 "$VMSEAL" whoami
mgr_stop
ok "logout; clean shutdown"
