#!/usr/bin/env bash
# End to end, all real: vmseal-kmsd (KMS), vmseal-managerd (manager),
# vmseal-hostd (host, QEMU under TCG), driven by the vmseal CLI as an
# administrator would: trust both ways, host registration, an encrypted VM
# created by policy, an existing VM encrypted by applying the policy, shallow
# and deep rekey, decrypt, power on through the encrypted disk, a host restart
# that gets its KEKs back from the manager, privileges, and the KMS going down.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/kmsd/kmsd_lib.sh"
source "$VMSEAL_SRC/tests/managerd/managerd_lib.sh"
HOSTD=$VMSEAL_BUILD/hostd/vmseal-hostd
guest=$("$VMSEAL_SRC/tests/guest/build-guest.sh" "$VMSEAL_BUILD/guest") || fail "test guest"
export HOME=$TMP/home XDG_CONFIG_HOME=
mkdir -p "$HOME"

# --- the KMS and the manager, trusting each other
K=$TMP/k
kmsd_init "$K"
"$KMSD" -c "$K" enroll manager >/dev/null 2>&1 || fail "enroll manager"
kmsd_start "$K"
KPORT=$PORT
M=$TMP/m
mgr_init "$M" --host mgr.test
# KEKs nothing uses are destroyed at once, when asked (keys cleanup)
printf 'kek_destroy_grace = 0\nkek_cleanup_interval = 86400\n' >> "$M/managerd.conf"
mgr_start "$M"
MSUBJ=$(openssl x509 -in "$M/server.crt" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')
expect_rc 0 "$VMSEAL" --url "$MURL" --ca "$M/ca.crt" login --password-file "$M/admin-password"
expect_rc 0 "$VMSEAL" kms add kms1 --server "127.0.0.1:$KPORT"
expect_rc 0 "$VMSEAL" kms trust kms1 --yes
expect_rc 0 "$VMSEAL" kms client-cert kms1 --cert "$K/clients/manager/manager.crt" --key "$K/clients/manager/manager.key"
expect_rc 0 "$VMSEAL" kms status kms1
ok "KMS and manager trust each other"

# --- a host agent with a certificate from the manager CA
"$MGRD" -c "$M" issue-host esx1 --out "$TMP/esx1" >/dev/null || fail "issue-host"
mkdir -p "$TMP/ds" "$TMP/images"
cp "$guest/vmlinuz" "$guest/initrd.gz" "$TMP/images/"
cat > "$TMP/hostd.conf" <<EOC
name = esx1
datastore = $TMP/ds
images = $TMP/images
listen = 127.0.0.1
port = 0
cert = $TMP/esx1/esx1.crt
key = $TMP/esx1/esx1.key
ca = $TMP/esx1/ca.crt
manager_fingerprint = $(cat "$TMP/esx1/manager.sha256")
manager_subject = $MSUBJ
manager_url = $MURL
accel = tcg
grace_seconds = 5
EOC
HLOG=$TMP/hostd.log
kill_vms() { for f in "$TMP"/ds/*/qemu.pid "$TMP"/ds/*/run-*/qemu.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done; true; }
at_exit kill_vms
hostd_start() {
  rm -f "$TMP/hport"
  "$HOSTD" -c "$TMP/hostd.conf" --port-file "$TMP/hport" >>"$HLOG" 2>&1 &
  HPID=$!
  at_exit "kill -9 $HPID 2>/dev/null"
  local i
  for ((i = 0; i < 300; i++)); do
    [ -s "$TMP/hport" ] && "$VMSEAL" --json host ls 2>/dev/null | grep -q "\"url\": \"https://127.0.0.1:$(cat "$TMP/hport")\"" && return 0
    kill -0 "$HPID" 2>/dev/null || { tail -20 "$HLOG" >&2; fail "vmseal-hostd died"; }
    sleep 0.1
  done
  tail -20 "$HLOG" >&2
  fail "host did not register"
}
hostd_stop() {
  kill -TERM "$HPID"
  local i
  for ((i = 0; i < 200; i++)); do kill -0 "$HPID" 2>/dev/null || { wait "$HPID" 2>/dev/null || true; return 0; }; sleep 0.1; done
  fail "vmseal-hostd did not stop"
}
hostd_start
expect_rc 0 "$VMSEAL" host ls
echo "$OUT" | grep -q "^esx1 " || fail "host ls"
ok "host registered itself with its certificate"

vmfield() { "$VMSEAL" --json vm info "$1" | $PY -c "import json,sys; v=json.load(sys.stdin); print(eval(sys.argv[1]))" "$2"; }

# --- an encrypted VM, created with the VM Encryption policy
expect_rc 0 "$VMSEAL" vm create vm1 --host esx1 --disk 16 --memory 128 --encrypt \
  --kernel vmlinuz --initrd initrd.gz --append "console=ttyS0"
expect_rc 0 "$VMSEAL" --json vm info vm1
K1=$(echo "$OUT" | $PY -c 'import json,sys; v=json.load(sys.stdin); assert v["encrypted"] and v["policy"]=="encrypted" and v["runtime"]["encrypted"], v; print(v["kek_id"])') \
  || fail "vm1 encrypted: $OUT"
grep -q "identity=\"CN=manager,O=vmseal\" op=Create uid=\"$K1\"" "$K/audit.log" || fail "KEK made on the KMS"
ok "vm create --encrypt: KEK $K1 from the KMS, disks encrypted on the host"

# --- an existing VM encrypted by applying the policy
expect_rc 0 "$VMSEAL" vm create vm2 --host esx1 --disk 8 --disk 8
[ "$(vmfield vm2 'v["encrypted"]')" = False ] || fail "vm2 starts plain"
expect_rc 0 "$VMSEAL" vm encrypt vm2
echo "$OUT" | grep -q "encrypting vm2: 100%\|VM vm2 is encrypted" || fail "progress: $OUT"
expect_rc 0 "$VMSEAL" --json vm info vm2
K2=$(echo "$OUT" | $PY -c 'import json,sys; v=json.load(sys.stdin); assert v["encrypted"] and v["runtime"]["encrypted"] and v["runtime"]["kek_id"]==v["kek_id"], v; print(v["kek_id"])') \
  || fail "vm2 encrypted: $OUT"
[ "$K2" != "$K1" ] || fail "one KEK per VM"
expect_rc 0 "$VMSEAL" vm encrypt vm2
echo "$OUT" | grep -q "nothing to do" || fail "policy already applied: $OUT"
ok "vm encrypt = apply the policy: task with progress, new KEK $K2"

# --- shallow and deep rekey, then decrypt
expect_rc 0 "$VMSEAL" vm rekey vm2
K3=$(vmfield vm2 'v["kek_id"]')
[ -n "$K3" ] && [ "$K3" != "$K2" ] || fail "shallow rekey gives a new KEK"
[ "$(vmfield vm2 'v["runtime"]["kek_id"]')" = "$K3" ] || fail "host uses the new KEK"
expect_rc 0 "$VMSEAL" vm rekey vm2 --deep
K4=$(vmfield vm2 'v["kek_id"]')
[ "$K4" != "$K3" ] || fail "deep rekey gives a new KEK"
expect_rc 0 "$VMSEAL" vm decrypt vm2
[ "$(vmfield vm2 'v["encrypted"], v["policy"], v["runtime"]["encrypted"]')" = "(False, 'none', False)" ] || fail "vm2 decrypted"
ok "shallow rekey, deep rekey, decrypt"

# --- power on through the encrypted disk
expect_rc 0 "$VMSEAL" vm start vm1
[ "$(vmfield vm1 'v["runtime"]["power_state"]')" = on ] || fail "vm1 on"
expect_rc 6 "$VMSEAL" vm decrypt vm1      # refused: powered on
echo "$OUT" | grep -q "must be powered off to decrypt" || fail "decrypt of a running VM: $OUT"
expect_rc 6 "$VMSEAL" vm rekey vm1 --deep
expect_rc 0 "$VMSEAL" vm rekey vm1        # shallow rekey is fine while it runs
K1B=$(vmfield vm1 'v["kek_id"]')
[ "$K1B" != "$K1" ] || fail "shallow rekey of a running VM"
expect_rc 0 "$VMSEAL" vm stop vm1
[ "$(vmfield vm1 'v["runtime"]["power_state"]')" = off ] || fail "vm1 off"
ok "power on/off of the encrypted VM; decrypting a running VM is refused"

# --- the host restarts: it asks the manager for its KEKs
hostd_stop
hostd_start
for ((i = 0; i < 100; i++)); do
  [ "$(vmfield vm1 'v["runtime"]["locked"]')" = False ] && break; sleep 0.2
done
[ "$(vmfield vm1 'v["runtime"]["locked"]')" = False ] || fail "vm1 still locked after the host restart"
grep -q "host esx1 asked for .* KEK(s): 1 given" "$MLOG" || fail "KEK hand-out logged"
ok "restarted host got the KEK of its encrypted VM from the manager"

# --- privileges
printf 'bobpassword1\n' > "$TMP/bobpw"
expect_rc 0 "$VMSEAL" user add bob --role NoCryptoAdmin --password-file "$TMP/bobpw"
BOB=$TMP/bob; mkdir -p "$BOB"
HOME=$BOB expect_rc 0 "$VMSEAL" --url "$MURL" --ca "$M/ca.crt" login bob --password-file "$TMP/bobpw"
HOME=$BOB expect_rc 5 "$VMSEAL" vm encrypt vm2
HOME=$BOB expect_rc 5 "$VMSEAL" vm decrypt vm1
HOME=$BOB expect_rc 5 "$VMSEAL" vm create vm3 --host esx1 --encrypt
HOME=$BOB expect_rc 0 "$VMSEAL" vm start vm2
HOME=$BOB expect_rc 0 "$VMSEAL" vm stop vm2
for _ in $(seq 100); do [ "$(vmfield vm2 'v["runtime"]["power_state"]')" = off ] && break; sleep 0.2; done
HOME=$BOB expect_rc 0 "$VMSEAL" vm set vm2 --memory 96
[ "$(vmfield vm2 'v["memory_mb"]')" = 96 ] || fail "bob's vm set not stored"
ok "No cryptography administrator: power and settings yes, cryptography no"
printf 'carolpassword1\n' > "$TMP/carolpw"
expect_rc 0 "$VMSEAL" user add carol --role ReadOnly --password-file "$TMP/carolpw"
CAROL=$TMP/carol; mkdir -p "$CAROL"
HOME=$CAROL expect_rc 0 "$VMSEAL" --url "$MURL" --ca "$M/ca.crt" login carol --password-file "$TMP/carolpw"
HOME=$CAROL expect_rc 5 "$VMSEAL" vm set vm2 --memory 128
echo "$OUT" | grep -q "VirtualMachine.Config.Settings" || fail "vm set denial names the privilege: $OUT"
[ "$(vmfield vm2 'v["memory_mb"]')" = 96 ] || fail "a denied vm set changed vm2"
ok "ReadOnly: vm set denied (VirtualMachine.Config.Settings)"

# --- the KMS goes down: encrypting fails cleanly, nothing changes
kmsd_stop
expect_rc 1 "$VMSEAL" vm encrypt vm2
echo "$OUT" | grep -qi "cannot create a key" || fail "KMS down message: $OUT"
[ "$(vmfield vm2 'v["encrypted"]')" = False ] || fail "vm2 unchanged"
ok "KMS down: encrypt refused with the reason, VM unchanged"

# --- events tell the story
expect_rc 0 "$VMSEAL" --json events --since 0
echo "$OUT" | $PY -c '
import json,sys
ev=json.load(sys.stdin)
pol=[e for e in ev if e["action"]=="vm.policy" and e["object"]=="vm2"]
assert pol[0]["old"]["policy"]=="none" and pol[0]["new"]["policy"]=="encrypted", pol
assert pol[-1]["old"]["policy"]=="encrypted" and pol[-1]["new"]["policy"]=="none", pol
rk=[e for e in ev if e["action"]=="vm.rekey" and e["object"]=="vm2"]
assert len(rk)==2 and rk[0]["old"]["kek_id"]!=rk[0]["new"]["kek_id"] and rk[1]["new"]["deep"] is True, rk
assert any(e["action"]=="vm.power-on" and e["new"]["power_state"]=="on" for e in ev)
rc=[e for e in ev if e["action"]=="vm.reconfigure" and e["object"]=="vm2"]
assert len(rc)==1 and rc[0]["user"]=="bob" and rc[0]["old"]=={"memory_mb":256} and rc[0]["new"]=={"memory_mb":96}, rc
for e in ev:
    assert "key" not in (e["new"] or {}), e
' || fail "events: $OUT"
ok "events: policy changes and rekeys with old and new values"

# --- the end of KEKs: the KMS back (on a new port)
kmsd_start "$K"
expect_rc 0 "$VMSEAL" kms servers kms1 --server "127.0.0.1:$PORT"
expect_rc 0 "$VMSEAL" keys info "$K2"
echo "$OUT" | grep -q "KEK $K2 (key provider kms1): retired" || fail "keys info: $OUT"
echo "$OUT" | grep -q "to be revoked and destroyed after" || fail "keys info names the destruction: $OUT"
# the manager loses track of vm1's KEK (as a record gone wrong would): the
# host still names it in vm1's configuration, so it must be kept
sqlite() { $PY -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2], sys.argv[3:]); c.commit()' "$M/managerd.db" "$@"; }
sqlite "UPDATE keks SET state = 'retired' WHERE kek_id = ?" "$K1B"
sqlite "UPDATE vms SET kek_id = NULL WHERE name = 'vm1'"
expect_rc 0 "$VMSEAL" keys cleanup
for k in "$K1" "$K2" "$K3" "$K4"; do
  echo "$OUT" | grep -q "KEK $k (key provider kms1): revoked and destroyed" || fail "KEK $k destroyed: $OUT"
  grep -q "op=Destroy uid=\"$k\"" "$K/audit.log" || fail "Destroy of $k on the KMS"
done
echo "$OUT" | grep -q "KEK $K1B (key provider kms1): kept: host esx1" || fail "vm1's KEK kept: $OUT"
! grep -q "op=Destroy uid=\"$K1B\"" "$K/audit.log" || fail "vm1's KEK destroyed on the KMS"
sqlite "UPDATE vms SET kek_id = ? WHERE name = 'vm1'" "$K1B"
sqlite "UPDATE keks SET state = 'active' WHERE kek_id = ?" "$K1B"
expect_rc 0 "$VMSEAL" vm start vm1
expect_rc 0 "$VMSEAL" vm stop vm1
expect_rc 0 "$VMSEAL" --json events --since 0
echo "$OUT" | $PY -c '
import json,sys
ev=[e for e in json.load(sys.stdin) if e["action"]=="key.destroy"]
assert len(ev)==4 and all(e["result"]=="ok" for e in ev), ev
' || fail "key.destroy events: $OUT"
ok "KEKs of a decrypted VM and replaced ones revoked and destroyed on the KMS; a KEK a host still names is kept"

expect_rc 0 "$VMSEAL" vm rm vm2
hostd_stop
mgr_stop
