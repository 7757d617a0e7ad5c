#!/usr/bin/env bash
# End to end, key server faults: with the KMS down a restarted host agent
# reports the encrypted VM locked (with the reason) and nothing else breaks;
# when the KMS is back the VM unlocks by itself (the manager gives the host
# the KEK; no power-on needed) and boots. A KMS cluster of two
# servers (the second a replica of the first): with the first one down the
# manager fails over to the second, for handing out KEKs and for rekeying.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/system/system_lib.sh"

base_stack
expect_rc 0 vmseal vm create vm1 --host esx1 --disk 16 --encrypt \
  --kernel vmlinuz --initrd initrd.gz --append "console=ttyS0 quiet"
expect_rc 0 vmseal vm create plain1 --host esx1 --disk 16 \
  --kernel vmlinuz --initrd initrd.gz --append "console=ttyS0 quiet"
boot_mark esx1 vm1 kmsmark1
ok "encrypted VM vm1 wrote its marker"

# --- the KMS is down while the host agent restarts -----------------------
stack_kmsd_stop kms1
stack_hostd_stop esx1
stack_hostd_start esx1
reason=
for ((i = 0; i < 100; i++)); do reason=$(vm_locked vm1) && break; sleep 0.2; done
[ -n "$reason" ] || fail "vm1 is not reported locked with the KMS down: $(stack_vm_json vm1)"
echo "# locked reason: $reason"
grep -qi "kms\|key\|provider\|unreachable\|refused" <<<"$reason" || fail "locked reason says nothing useful: $reason"
expect_rc 0 vmseal vm info vm1
grep -q "^Locked:      yes" <<<"$OUT" || fail "vm info does not show Locked: $OUT"
expect_rc 1 vmseal vm start vm1
grep -qi "refused\|unreachable\|key provider\|KMS" <<<"$OUT" || fail "power-on error with the KMS down: $OUT"
[ "$(stack_vm_field vm1 .runtime.locked)" = true ] || fail "vm1 no longer locked"
# nothing else breaks: the plain VM still boots, the manager still answers
expect_rc 0 vmseal vm ls
boot_mark esx1 plain1 plainmark
ok "KMS down: vm1 locked ($reason), power-on refused with a clear error, the plain VM still boots"

stack_kmsd_start kms1
stack_until 30 vmseal kms status prov1 || fail "prov1 not connected after the KMS came back"
# the manager gives the host the KEK it lacks as soon as the KMS gives it
# again: vm1 unlocks without anyone powering it on
stack_until 60 vm_unlocked vm1 || fail "vm1 still locked 60 s after the KMS came back: $(vm_locked vm1)"
grep -q "host esx1: gave it KEK .* its VMs need" "$STACK_DIR/manager/managerd.log" || fail "no trace of the refresh"
stack_vm_is_off vm1 || fail "vm1 was powered on"
boot_check esx1 vm1 kmsmark1
ok "KMS back: vm1 unlocks without a power-on, then boots and reads its marker"

# --- a cluster of two servers; the first one goes down ------------------------
expect_rc 0 vmseal vm rekey vm1                       # KEK made on kms1
stack_kmsd_replica kms1 kms2                          # the cluster's second server
stack_kmsd_start kms2
expect_rc 0 vmseal kms servers prov1 --server "127.0.0.1:${STACK_PORT[kms1]}" \
  --server "127.0.0.1:${STACK_PORT[kms2]}"
stack_kmsd_stop kms1
expect_rc 0 vmseal --json kms status prov1
jq -e '.state == "connected" and (.servers[0].reachable | not) and .servers[1].tls_ok' <<<"$OUT" >/dev/null ||
  fail "cluster status with the first server down: $OUT"
stack_hostd_stop esx1
stack_hostd_start esx1
stack_until 60 vm_unlocked vm1 || fail "vm1 not unlocked through the second server: $(vm_locked vm1)"
boot_check esx1 vm1 kmsmark1
ok "first KMS server down: the host gets vm1's KEK through the second server"
kek_before=$(vmseal --json vm info vm1 | jq -r .kek_id)
expect_rc 0 vmseal vm rekey vm1
kek_after=$(vmseal --json vm info vm1 | jq -r .kek_id)
[ "$kek_after" != "$kek_before" ] || fail "rekey on the second server kept the KEK"
boot_check esx1 vm1 kmsmark1
ok "rekey with the first server down: new KEK $kek_after from the second server; vm1 boots"
finish
