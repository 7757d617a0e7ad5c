#!/usr/bin/env bash
# End to end, long operations cancelled, failed and resumed:
#  - an encrypt cancelled part-way (vmseal task cancel): the host's task
#    stops, what it wrote is removed, the task ends 'cancelled', the KEK is
#    'unused', the VM is as it was and boots; vmseal task resume runs it
#    again with the same KEK and it succeeds;
#  - an encrypt that fails part-way for good (a symlink planted where the
#    second disk's image goes): the manager rolls it back by itself (task
#    'rolled-back', the first disk's new image gone), the VM boots; with the
#    symlink gone, task resume succeeds;
#  - a deep rekey whose rollback cannot be done either (a folder planted
#    where its partial image goes): the task is 'blocked', the VM keeps its
#    old KEK and no API call is refused for good: with the folder gone, task
#    resume finishes the rekey.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/system/system_lib.sh"

base_stack
expect_rc 0 vmseal vm create big1 --host esx1 --disk 1024 --disk 16 \
  --kernel vmlinuz --initrd initrd.gz --append "console=ttyS0 quiet"
H=$(stack_vm_home esx1 big1)
UUID=$(stack_vm_uuid big1)
# data all over the first disk, so that the conversion takes a while
dd if=/dev/urandom of="$H/disk0.img" bs=1M seek=8 count=1000 conv=notrunc status=none
boot_mark esx1 big1 cancelmark
sum0=$(sha256sum < "$H/disk0.img")
ok "plain VM big1 (1 GiB of data and a marker, two disks)"

host_vm() { stack_host_api esx1 GET "/v1/vms/$UUID" | head -n1; }
agree() {
  local m h
  m=$(vmseal --json vm info big1) || return 1
  h=$(host_vm) || return 1
  jq -e --argjson h "$h" '
    (.encrypted == $h.encrypted) and ((.kek_id // "") == ($h.kek_id // "")) and
    ($h.pending_operation == null) and ($h.task == null) and (.task == null)' <<<"$m" >/dev/null
}
kek_state() { vmseal --json keys ls --vm big1 | jq -r --arg k "$1" '.keys[] | select(.kek_id == $k) | .state'; }
task_field() { vmseal --json task info "$1" | jq -r "$2"; }

# --- cancel part-way, then resume -------------------------------------------
expect_rc 0 vmseal --json vm encrypt big1 --no-wait
task=$(jq -r .id <<<"$OUT")
kek=$(jq -r .params.kek_id <<<"$OUT")
stack_until 120 sh -c "'$STACK_CLI' --json task info $task | jq -e '.progress >= 1'" ||
  fail "the encrypt did not get under way: $(vmseal --json task info "$task")"
[ -e "$H/disk0.luks.partial" ] || fail "no partial image while encrypting"
expect_rc 0 vmseal task cancel "$task"
[ "$(task_field "$task" .state)" = cancelled ] || fail "task $task: $(vmseal --json task info "$task")"
stack_until 30 agree || fail "manager and host disagree after the cancel"
jq -e '.encrypted == false' <<<"$(host_vm)" >/dev/null || fail "the host's VM is encrypted after the cancel"
ls "$H"/disk*.luks* 2>/dev/null && fail "the cancelled encrypt left images behind"
[ "$(sha256sum < "$H/disk0.img")" = "$sum0" ] || fail "disk0.img changed"
[ "$(kek_state "$kek")" = unused ] || fail "KEK $kek of the cancelled task is $(kek_state "$kek")"
expect_rc 0 vmseal --json events --action task.cancel
jq -e --argjson t "$task" '[.[] | select(.new.task == $t and .user == "administrator")] | length == 1' <<<"$OUT" \
  >/dev/null || fail "no task.cancel event by the administrator"
boot_check esx1 big1 cancelmark
ok "encrypt cancelled part-way: task $task cancelled, nothing left of it, KEK unused, the guest reads its marker"
expect_rc 6 vmseal task cancel "$task"           # ended: conflict
expect_rc 0 vmseal task resume "$task"
[ "$(task_field "$task" .state)" = success ] || fail "resumed task $task: $(vmseal --json task info "$task")"
stack_until 30 agree || fail "manager and host disagree after the resume"
[ "$(vmseal --json vm info big1 | jq -r .kek_id)" = "$kek" ] || fail "big1 is not under the task's KEK $kek"
[ "$(kek_state "$kek")" = active ] || fail "KEK $kek is $(kek_state "$kek")"
boot_check esx1 big1 cancelmark
ok "task resume runs the cancelled encrypt again: big1 encrypted under KEK $kek, boots"

# --- fails part-way for good: rolled back by the manager, then resumed -------
expect_rc 0 vmseal vm decrypt big1
ln -s /etc/hostname "$H/disk1.luks"               # where the second disk's new image goes
expect_rc 1 vmseal --json vm encrypt big1
task2=$(vmseal --json task ls | jq -r --arg u "$UUID" '[.tasks[] | select(.vm_uuid == $u)][0].id')
kek2=$(task_field "$task2" .params.kek_id)
[ "$(task_field "$task2" .state)" = rolled-back ] || fail "task $task2: $(vmseal --json task info "$task2")"
task_field "$task2" .error | grep -qi "symlink" || fail "the error does not say why: $(task_field "$task2" .error)"
stack_until 30 agree || fail "manager and host disagree after the rollback"
[ ! -e "$H/disk0.luks" ] && [ ! -L "$H/disk1.luks" ] || fail "the rollback left images behind: $(ls "$H")"
[ "$(kek_state "$kek2")" = unused ] || fail "KEK $kek2 is $(kek_state "$kek2")"
boot_check esx1 big1 cancelmark
ok "encrypt failing on the second disk: rolled back by the manager (task $task2), the guest reads its marker"
expect_rc 0 vmseal task resume "$task2"
stack_until 30 agree || fail "manager and host disagree after the resume"
[ "$(vmseal --json vm info big1 | jq -r .kek_id)" = "$kek2" ] || fail "big1 is not under KEK $kek2"
boot_check esx1 big1 cancelmark
ok "task resume runs it again: big1 encrypted under KEK $kek2"

# --- a rollback that cannot be done: blocked, then resumed --------------------
mkdir "$H/disk0.luks.rekey.partial"
expect_rc 1 vmseal vm rekey big1 --deep
task3=$(vmseal --json task ls | jq -r --arg u "$UUID" '[.tasks[] | select(.vm_uuid == $u)][0].id')
[ "$(task_field "$task3" .state)" = blocked ] || fail "task $task3: $(vmseal --json task info "$task3")"
echo "# blocked: $(task_field "$task3" .error)"
jq -e '.pending_operation == "recrypt-deep" and .kek_id != null' <<<"$(host_vm)" >/dev/null ||
  fail "the host's VM: $(host_vm)"
expect_rc 6 vmseal vm decrypt big1                 # busy with the blocked task
rmdir "$H/disk0.luks.rekey.partial"
expect_rc 0 vmseal task resume "$task3"
stack_until 30 agree || fail "manager and host disagree after resuming the blocked task"
kek3=$(task_field "$task3" .params.kek_id)
[ "$(vmseal --json vm info big1 | jq -r .kek_id)" = "$kek3" ] || fail "big1 is not under KEK $kek3"
[ "$(kek_state "$kek2")" = retired ] || fail "the old KEK $kek2 is $(kek_state "$kek2")"
boot_check esx1 big1 cancelmark
ok "a deep rekey whose rollback failed is blocked (task $task3), resumed once the folder is gone: KEK $kek3"

# --- the host dies during a task: the VM is let go (unregister) and taken
# back (register); the manager follows the host's unfinished encrypt ------------
expect_rc 0 vmseal vm decrypt big1
expect_rc 0 vmseal --json vm encrypt big1 --no-wait
task4=$(jq -r .id <<<"$OUT")
kek4=$(jq -r .params.kek_id <<<"$OUT")
stack_until 120 sh -c "'$STACK_CLI' --json task info $task4 | jq -e '.progress >= 1'" || fail "encrypt not under way"
kill -KILL "${STACK_PID[esx1]}"
wait "${STACK_PID[esx1]}" 2>/dev/null || true
unset 'STACK_PID[esx1]'
expect_rc 0 vmseal vm unregister big1
[ "$(task_field "$task4" .state)" = error ] && task_field "$task4" .error | grep -q unregistered ||
  fail "task $task4 after the unregister: $(vmseal --json task info "$task4")"
stack_hostd_start esx1
jq -e '.pending_operation == "encrypt" and .locked == true' <<<"$(host_vm)" >/dev/null ||
  fail "the host's VM after its restart: $(host_vm | jq -c '{pending_operation, locked, locked_reason}')"
expect_rc 0 vmseal vm register esx1 "$UUID" --name big1
stack_until 120 agree || fail "the manager did not finish the host's unfinished encrypt: $(host_vm | jq -c .)"
[ "$(vmseal --json vm info big1 | jq -r .kek_id)" = "$kek4" ] || fail "big1 is not under KEK $kek4"
vmseal --json task ls | jq -e --arg u "$UUID" '[.tasks[] | select(.vm_uuid == $u and .params.adopted == true and
  .state == "success" and .user == "-")] | length == 1' >/dev/null || fail "no adopted task that succeeded"
[ "$(kek_state "$kek4")" = active ] || fail "KEK $kek4 is $(kek_state "$kek4")"
boot_check esx1 big1 cancelmark
ok "host killed during an encrypt, VM unregistered (its task ended) and registered again: the manager adopts the host's unfinished encrypt and finishes it under KEK $kek4"
finish
