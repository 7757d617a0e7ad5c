#!/usr/bin/env bash
# End to end: a VM config edited (on the host, hostd stopped) so that its
# key safes name the wrong KEK — another VM's KEK, then a KEK that does not
# exist. Power-on fails with a clear error, the disk image is untouched,
# and putting the config back makes the VM boot and read its data.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/system/system_lib.sh"

base_stack
for v in vm1 vm2; do
  expect_rc 0 vmseal vm create "$v" --host esx1 --disk 16 --encrypt \
    --kernel vmlinuz --initrd initrd.gz --append "console=ttyS0 quiet"
done
kek1=$(vmseal --json vm info vm1 | jq -r .kek_id)
kek2=$(vmseal --json vm info vm2 | jq -r .kek_id)
[ "$kek1" != "$kek2" ] || fail "two VMs share KEK $kek1"
boot_mark esx1 vm1 wrongkeymark
H=$(stack_vm_home esx1 vm1)
cp "$H/vm.conf" "$TMP/vm.conf.good"
sum_disk=$(sha256sum < "$H/disk0.luks")
grep -q "keysafe = vmseal:keysafe:v1:prov1:$kek1:" "$H/vm.conf" || fail "vm1's key safes do not name KEK $kek1"
ok "vm1 (KEK $kek1) and vm2 (KEK $kek2), vm1 wrote its marker"

# point_to KEK: rewrite vm1's key safes to name KEK (hostd stopped meanwhile)
point_to() {
  stack_hostd_stop esx1
  sed "s/^\([a-z0-9.]*keysafe = vmseal:keysafe:v1:prov1:\)$kek1:/\1$1:/" "$TMP/vm.conf.good" > "$H/vm.conf"
  grep -q "keysafe = vmseal:keysafe:v1:prov1:$1:" "$H/vm.conf" || fail "edit of vm.conf"
  stack_hostd_start esx1
}

# --- another VM's KEK: the host holds that key, but it does not open vm1's
# safes: the host proves it, vm1 is locked (not "unlocked" because a key of
# that id is there)
point_to "$kek2"
reason=
for ((i = 0; i < 100; i++)); do reason=$(vm_locked vm1) && break; sleep 0.2; done
[ -n "$reason" ] || fail "vm1 is not reported locked with another VM's KEK: $(stack_vm_json vm1)"
echo "# locked reason: $reason"
grep -q "KEK $kek2 is on this host but does not open" <<<"$reason" || fail "the locked reason does not say the key is wrong: $reason"
expect_rc 6 vmseal vm start vm1      # conflict: the VM is locked
echo "# power-on error: $OUT"
grep -qi "locked.*does not open" <<<"$OUT" || fail "unclear error for the wrong KEK: $OUT"
stack_vm_is_off vm1 || fail "vm1 is running with the wrong key"
[ "$(sha256sum < "$H/disk0.luks")" = "$sum_disk" ] || fail "disk image changed"
vm_unlocked vm2 || fail "vm2 locked too"
ok "another VM's KEK: vm1 locked (the key held does not open its key safes), power-on refused; disk image untouched"

# --- a KEK that does not exist: the VM is locked with the reason
point_to 987654
reason=
for ((i = 0; i < 100; i++)); do reason=$(vm_locked vm1) && break; sleep 0.2; done
[ -n "$reason" ] || fail "vm1 not reported locked with an unknown KEK: $(stack_vm_json vm1)"
echo "# locked reason: $reason"
grep -q 987654 <<<"$reason" || fail "the locked reason does not name the KEK: $reason"
expect_rc 6 vmseal vm start vm1      # conflict: the VM is locked
grep -q "locked.*987654" <<<"$OUT" || fail "unclear power-on error for an unknown KEK: $OUT"
[ "$(sha256sum < "$H/disk0.luks")" = "$sum_disk" ] || fail "disk image changed"
# vm2 is not affected
expect_rc 0 vmseal vm info vm2
vm_unlocked vm2 || fail "vm2 locked too"
ok "unknown KEK: vm1 locked ($reason), vm2 unaffected, disk image untouched"

# --- the config put back: vm1 boots and reads its marker
stack_hostd_stop esx1
cp "$TMP/vm.conf.good" "$H/vm.conf"
stack_hostd_start esx1
stack_until 60 vm_unlocked vm1 || fail "vm1 still locked with its config fixed: $(vm_locked vm1)"
boot_check esx1 vm1 wrongkeymark
ok "config fixed: vm1 unlocks, boots and reads its marker"
finish
