#!/usr/bin/env bash
# End to end, crash safety: the host agent is killed (SIGKILL) in the middle
# of encrypting a VM by policy. Restarted, it gets the new KEK back through
# the manager, finishes the interrupted conversion by itself, and the guest
# reads the data it wrote before.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/system/system_lib.sh"

base_stack
expect_rc 0 vmseal vm create big1 --host esx1 --disk 1536 \
  --kernel vmlinuz --initrd initrd.gz --append "console=ttyS0 quiet"
H=$(stack_vm_home esx1 big1)
# data all over the disk (written on the host: the VM is plain and off), so
# the conversion takes long enough to be interrupted
dd if=/dev/urandom of="$H/disk0.img" bs=1M seek=8 count=1500 conv=notrunc status=none
boot_mark esx1 big1 crashmark
sum_plain=$(sha256sum < "$H/disk0.img")
ok "plain VM with 1.5 GiB of data and a marker"

expect_rc 0 vmseal --json vm encrypt big1 --no-wait
task=$(jq -r .id <<<"$OUT")
# kill the host agent once the conversion is under way
for ((i = 0; i < 600; i++)); do
  p=$(stack_host_api esx1 GET /v1/tasks | head -n1 | jq -r '[.tasks[] | select(.state == "running")][0].progress // 0')
  [ "${p:-0}" -ge 1 ] && break
  sleep 0.05
done
[ "${p:-0}" -ge 1 ] && [ "${p:-0}" -lt 100 ] || fail "the conversion was not caught under way (progress $p)"
kill -KILL "${STACK_PID[esx1]}"
wait "${STACK_PID[esx1]}" 2>/dev/null || true
unset 'STACK_PID[esx1]'
grep -q '^op = ' "$H/vm.conf" || fail "no interrupted operation recorded in vm.conf"
ok "host agent killed at ${p}% of the conversion"

stack_hostd_start esx1
stack_until 300 sh -c "! grep -q '^op = ' '$H/vm.conf'" || fail "the interrupted encryption was not finished: $(grep '^op' "$H/vm.conf")"
grep -a 'resum' "$STACK_DIR/esx1/hostd.log" | tail -n 2 | sed 's/^/# /'
cryptsetup isLuks --type luks1 "$H/disk0.luks" || fail "disk0.luks is not LUKS1"
[ ! -e "$H/disk0.img" ] || fail "disk0.img left behind"
if grep -a -q 'VMSEAL-MARKER:crashmark' "$H/disk0.luks"; then fail "marker visible in the encrypted image"; fi
ok "restarted host agent finished the encryption by itself"

# the manager's view catches up: the VM is encrypted with the task's KEK
stack_until 60 sh -c "'$STACK_CLI' --json vm info big1 | jq -e '.encrypted == true and .policy == \"encrypted\"'" ||
  fail "the manager does not show big1 encrypted: $(vmseal --json vm info big1 | jq -c '{policy, encrypted, kek_id}')"
expect_rc 0 vmseal --json task info "$task"
echo "# manager task $task: $(jq -c '{state, progress, error}' <<<"$OUT")"
[ "$(jq -r .params.kek_id <<<"$OUT")" = "$(vmseal --json vm info big1 | jq -r .kek_id)" ] ||
  fail "big1's KEK is not the one its encrypt task made"
ok "the manager shows big1 encrypted with the task's KEK"
boot_check esx1 big1 crashmark
ok "the guest reads its marker from the encrypted disk"
finish
