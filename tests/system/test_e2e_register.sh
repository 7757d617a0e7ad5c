#!/usr/bin/env bash
# End to end: an encrypted VM leaves the inventory (vm unregister) and comes
# back (vm register HOST UUID), as after a manager restored from an older
# backup; who may register an encrypted VM; the VM boots and reads its data
# afterwards, and its host gets its KEK again after a restart.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/system/system_lib.sh"

base_stack
expect_rc 0 vmseal vm create reg1 --host esx1 --disk 16 --encrypt \
  --kernel vmlinuz --initrd initrd.gz --append "console=ttyS0 quiet"
expect_rc 0 vmseal vm create plain1 --host esx1 --disk 16 --no-encrypt
uuid=$(vmseal --json vm info reg1 | jq -r .uuid)
kek=$(vmseal --json vm info reg1 | jq -r .kek_id)
puuid=$(vmseal --json vm info plain1 | jq -r .uuid)
boot_mark esx1 reg1 registermark
H=$(stack_vm_home esx1 reg1)

expect_rc 0 vmseal vm unregister reg1
expect_rc 0 vmseal vm unregister plain1
expect_rc 4 vmseal vm info reg1
[ -f "$H/vm.conf" ] || fail "the host lost the VM on unregister"
[ "$(stack_host_api esx1 GET "/v1/vms/$uuid" | head -n1 | jq -r .kek_id)" = "$kek" ] || fail "host view of reg1"
ok "vm unregister: gone from the inventory, kept on the host"

# a No Cryptography Administrator may register the plain VM, not the encrypted one
printf 'bobpassword1\n' > "$TMP/bobpw"
expect_rc 0 vmseal user add bob --role NoCryptoAdmin --password-file "$TMP/bobpw"
bob() { XDG_CONFIG_HOME=$TMP/bob "$STACK_CLI" "$@"; }
bob --url "$STACK_URL" --ca "$STACK_CA" login bob --password-file "$TMP/bobpw" >/dev/null || fail "bob login"
OUT=$(bob vm register esx1 "$uuid" 2>&1) && fail "bob registered an encrypted VM"
grep -q "lacks the Cryptographer.RegisterVM privilege on host:esx1" <<<"$OUT" || fail "register message: $OUT"
expect_rc 4 vmseal vm info reg1
OUT=$(bob vm register esx1 "$puuid" 2>&1) || fail "bob registers a plain VM: $OUT"
ok "registering an encrypted VM needs Cryptographer.RegisterVM; a plain one does not"

# the administrator takes it back, under a new name
expect_rc 4 vmseal vm register esx1 11111111-2222-4333-8444-555555555555
expect_rc 0 vmseal vm register esx1 "$uuid" --name reg1-back
expect_rc 6 vmseal vm register esx1 "$uuid"
j=$(vmseal --json vm info reg1-back)
[ "$(jq -r .kek_id <<<"$j")" = "$kek" ] && [ "$(jq -r .encrypted <<<"$j")" = true ] && \
  [ "$(jq -r .kms <<<"$j")" = prov1 ] || fail "registered VM: $j"
vmseal --json events --action vm.register | jq -e --arg u "$uuid" 'map(select(.new.uuid == $u and .result == "ok")) | length == 1' \
  >/dev/null || fail "vm.register event"
ok "vm register: back as reg1-back, encrypted with KEK $kek from prov1"

# it works: the host restarts (forgets its KEKs), gets the KEK back, the guest reads its marker
stack_hostd_stop esx1
stack_hostd_start esx1
stack_until 60 vm_unlocked reg1-back || fail "reg1-back still locked after the host restart: $(vm_locked reg1-back)"
boot_check esx1 reg1-back registermark
ok "after a host restart the registered VM unlocks through the manager and reads its marker"

# its console output: sealed on the host, shown to whoever holds Cryptographer.Access
expect_rc 0 vmseal vm log reg1-back
grep -q 'VMSEAL-CHECK-OK' <<<"$OUT" || fail "vm log shows the guest's output: $OUT"
if grep -rqa 'VMSEAL-CHECK-OK' "$H"; then fail "the guest's output is in clear in the VM home"; fi
OUT=$(bob vm log reg1-back 2>&1) && fail "bob read an encrypted VM's console"
grep -q "lacks the Cryptographer.Access privilege on vm:reg1-back" <<<"$OUT" || fail "vm log message: $OUT"
vmseal --json events --action vm.log --result denied --user bob | jq -e 'length == 1' >/dev/null || fail "denied vm.log not audited"
ok "vm log: the sealed console for Cryptographer.Access only; nothing in clear on the host"
finish
