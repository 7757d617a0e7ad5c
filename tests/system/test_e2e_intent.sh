#!/usr/bin/env bash
# End to end, the manager killed (SIGKILL) at every step of a task: for
# encrypt, shallow rekey, deep rekey and decrypt, vmseal-managerd runs with
# the test hook VMSEAL_TEST_CRASH_AT=STEP:ACTION (managerd/crashpoint.c)
# and kills itself exactly there:
#   kek-created      the KEK exists on the KMS, nothing is recorded yet
#   intent-recorded  the task and its KEK are recorded, the host not asked
#   host-accepted    the host started the operation, the manager did not
#                    record that it did (the case of issue 14)
#   task-running     recorded as running
#   host-finished    the host is done, the end is not recorded yet
#   task-finished    the end is recorded (the host did not drop the old KEK)
# Restarted, the manager and the host agree within seconds (policy, KEK, no
# unfinished operation), the task has an end, the KEKs are in the right
# state (none left 'pending'), and the guest reads its marker.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/system/system_lib.sh"

base_stack
expect_rc 0 vmseal vm create vmx --host esx1 --disk 16 \
  --kernel vmlinuz --initrd initrd.gz --append "console=ttyS0 quiet"
UUID=$(stack_vm_uuid vmx)
boot_mark esx1 vmx intentmark
ok "plain VM vmx wrote its marker"

# the host's view: GET /v1/vms/{uuid} as the manager calls it
host_vm() { stack_host_api esx1 GET "/v1/vms/$UUID" | head -n1; }

# agree: the manager's record and the host's vm.conf say the same (policy,
# KEK), the host has no unfinished operation and the manager no open task
agree() {
  local m h
  m=$(vmseal --json vm info vmx) || return 1
  h=$(host_vm) || return 1
  jq -e --argjson h "$h" '
    (.encrypted == $h.encrypted) and ((.kek_id // "") == ($h.kek_id // "")) and
    ($h.pending_operation == null) and ($h.task == null) and (.task == null)' <<<"$m" >/dev/null
}

# the KEK the manager records for vmx ("" when not encrypted)
mgr_kek() { vmseal --json vm info vmx | jq -r '.kek_id // ""'; }

# crash_run STEP ACTION CLI-ARGS...: restart the manager with the hook,
# run the command (it loses the manager on the way), check that the
# manager died of SIGKILL at that step, start it again.
crash_run() {
  local point=$1 action=$2 pid st; shift 2
  stack_managerd_stop
  export VMSEAL_TEST_CRASH_AT=$point:$action
  stack_managerd_start
  unset VMSEAL_TEST_CRASH_AT
  pid=${STACK_PID[manager]}
  vmseal "$@" >"$TMP/crash.out" 2>&1 || true
  stack_until 60 sh -c "! kill -0 $pid 2>/dev/null" ||
    { cat "$TMP/crash.out" >&2; fail "the manager did not reach $point of $action"; }
  st=0
  wait "$pid" 2>/dev/null || st=$?
  unset 'STACK_PID[manager]'
  [ "$st" -eq 137 ] || fail "the manager ended with status $st at $point of $action (not SIGKILL)"
  grep -q "TEST HOOK: killed at $point of $action" "$STACK_DIR/manager/managerd.log" ||
    fail "no trace of the kill at $point of $action in the manager's log"
  stack_managerd_start
}

# converge STEP ACTION BEFORE-KEK WANT: after the restart the two sides
# agree within 30 s; WANT is "changed" (the operation was carried out) or
# "unchanged" (nothing happened); the VM's last task has ended; no KEK of
# the VM is left pending.
converge() {
  local point=$1 action=$2 before=$3 want=$4 after t
  stack_until 30 agree || fail "$action killed at $point: manager and host disagree: manager" \
    "$(vmseal --json vm info vmx | jq -c '{encrypted, kek_id, task}'), host $(host_vm | jq -c '{encrypted, kek_id, pending_operation, task}')"
  after=$(mgr_kek)
  if [ "$want" = changed ]; then
    [ "$after" != "$before" ] || fail "$action killed at $point: the operation was not carried out (KEK '$after')"
  else
    [ "$after" = "$before" ] || fail "$action killed at $point: the VM changed ('$before' -> '$after')"
  fi
  t=$(vmseal --json task ls | jq -c --arg u "$UUID" '[.tasks[] | select(.vm_uuid == $u)][0] // {}')
  if jq -e '.state == "pending" or .state == "running"' <<<"$t" >/dev/null; then
    fail "$action killed at $point: task without an end: $t"
  fi
  vmseal --json keys ls --vm vmx | jq -e --arg k "$after" '
    ([.keys[] | select(.state == "pending")] | length == 0) and
    ($k == "" or ([.keys[] | select(.kek_id == $k and .state == "active")] | length == 1))' >/dev/null ||
    fail "$action killed at $point: KEK states: $(vmseal --json keys ls --vm vmx | jq -c '[.keys[] | {kek_id, state}]')"
  echo "# $action killed at $point: $want; last task $(jq -c '{id, state, error}' <<<"$t")"
}

# one action at one step; when the step comes before the host is asked, the
# operation is then run again without the hook (it must succeed)
one() {
  local point=$1 action=$2 before want; shift 2
  before=$(mgr_kek)
  crash_run "$point" "$action" "$@"
  case $point in
    kek-created | intent-recorded) want=unchanged ;;
    *) want=changed ;;
  esac
  converge "$point" "$action" "$before" "$want"
  if [ "$want" = unchanged ]; then
    expect_rc 0 vmseal "$@"
    stack_until 30 agree || fail "$action run again after $point: manager and host disagree"
  fi
}

points=(kek-created intent-recorded host-accepted task-running host-finished task-finished)
for point in "${points[@]}"; do
  one "$point" encrypt vm encrypt vmx
  one "$point" recrypt-shallow vm rekey vmx
  one "$point" recrypt-deep vm rekey vmx --deep
  [ "$point" = kek-created ] || one "$point" decrypt vm decrypt vmx
  [ "$point" = kek-created ] && expect_rc 0 vmseal vm decrypt vmx
  boot_check esx1 vmx intentmark
  ok "killed at $point of encrypt, shallow rekey, deep rekey and decrypt: manager and host agree, the guest reads its marker"
done

# --- the manager's record disagrees with the host, no task (a manager
# database restored from an older backup, or the crashes of issue 14 with
# the old manager): the host's vm.conf wins
db_set() {   # SQL...: change the manager's database while it is stopped
  stack_managerd_stop
  $PY - "$STACK_DIR/manager/managerd.db" "$@" <<'PY' || fail "database edit"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for q in sys.argv[2:]:
    db.execute(q)
db.commit()
PY
  stack_managerd_start
}
expect_rc 0 vmseal vm encrypt vmx
kek=$(mgr_kek)
db_set "UPDATE vms SET policy = 'none', kek_id = NULL, provider = NULL WHERE name = 'vmx'" \
  "UPDATE keks SET state = 'pending' WHERE kek_id = '$kek'"
stack_until 30 agree || fail "the manager did not take the host's view (encrypted under $kek)"
[ "$(mgr_kek)" = "$kek" ] || fail "the manager adopted another KEK: $(mgr_kek)"
vmseal --json keys ls --vm vmx | jq -e --arg k "$kek" '[.keys[] | select(.kek_id == $k and .state == "active")] | length == 1' \
  >/dev/null || fail "KEK $kek is not active again"
expect_rc 0 vmseal --json events --action vm.reconcile
jq -e --arg k "$kek" '[.[] | select(.object == "vmx" and .new.kek_id == $k and .old.policy == "none")] | length == 1' \
  <<<"$OUT" >/dev/null || fail "no vm.reconcile event with the old and new values"
expect_rc 0 vmseal vm decrypt vmx
ok "a manager that says 'not encrypted' takes the host's view (encrypted under KEK $kek, active again), with an event; decrypt works"
db_set "UPDATE vms SET policy = 'encrypted', kek_id = '$kek', provider = 'prov1' WHERE name = 'vmx'" \
  "UPDATE keks SET state = 'active' WHERE kek_id = '$kek'"
stack_until 30 agree || fail "the manager did not take the host's view (not encrypted)"
vmseal --json keys ls --vm vmx | jq -e --arg k "$kek" '[.keys[] | select(.kek_id == $k and .state == "retired")] | length == 1' \
  >/dev/null || fail "KEK $kek is not retired"
expect_rc 0 vmseal vm encrypt vmx
boot_check esx1 vmx intentmark
ok "a manager that says 'encrypted' takes the host's view (plain; its KEK retired); encrypt works, the guest reads its marker"

# what the manager made sense of, as events
expect_rc 0 vmseal --json events --since 0 --action task.reconcile
for d in abandoned adopted; do
  jq -e --arg d "$d" '[.[] | select(.new.decision == $d)] | length > 0' <<<"$OUT" >/dev/null ||
    fail "no task.reconcile event with decision $d"
done
ok "reconciliation decisions are events (abandoned, adopted)"
# KEKs made before a kill at kek-created were never recorded: orphans the
# clean-up revokes, never lost silently
expect_rc 0 vmseal --json keys ls --orphans prov1
n=$(jq '.orphans | length' <<<"$OUT")
[ "$n" -ge 3 ] || fail "orphan KEKs of the kills at kek-created: $n"
ok "KEKs made before the manager died at kek-created are listed as orphans ($n)"
finish
