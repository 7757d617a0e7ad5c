#!/usr/bin/env bash
# End to end, a datastore that is too small: the host's datastore is a
# 96 MiB tmpfs this test mounts. With a file filling it up,
#  - encrypt, deep rekey and decrypt that do not fit are refused before
#    anything is written, naming what they need and what is free; the task
#    ends, nothing changed, the VM boots; with the room back they succeed;
#  - with the host's check switched off (test hook
#    VMSEAL_TEST_SKIP_SPACE_CHECK) they run out of room part-way: the host
#    rolls the operation back at once, the task ends 'rolled-back', the VM
#    is as it was and boots; with the room back, task resume succeeds.
# After each step the manager and the host agree.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/system/system_lib.sh"

[ "$(id -u)" -eq 0 ] || fail "mounting a tmpfs needs root"
stack_kmsd_setup kms1
stack_kmsd_start kms1
stack_managerd_setup
stack_managerd_start
stack_login
stack_kms_add prov1 kms1
stack_hostd_setup esx1
DS=$STACK_DIR/esx1/datastore
mount -t tmpfs -o size=96m,mode=0700 vmseal-test-datastore "$DS" || fail "mount a tmpfs on $DS"
at_exit "umount -l '$DS'"     # after stack_cleanup (registered first): QEMU and hostd are gone
stack_hostd_start esx1
expect_rc 0 vmseal vm create sp1 --host esx1 --disk 32 \
  --kernel vmlinuz --initrd initrd.gz --append "console=ttyS0 quiet"
H=$(stack_vm_home esx1 sp1)
UUID=$(stack_vm_uuid sp1)
# 24 MiB of data (so that no image of it is mostly holes), then the marker
dd if=/dev/urandom of="$H/disk0.img" bs=1M seek=2 count=24 conv=notrunc status=none
boot_mark esx1 sp1 spacemark
ok "VM sp1 on a 96 MiB tmpfs datastore ($(df -B1M --output=used "$DS" | tail -n1 | tr -d ' ') MiB used)"

host_vm() { stack_host_api esx1 GET "/v1/vms/$UUID" | head -n1; }
agree() {
  local m h
  m=$(vmseal --json vm info sp1) || return 1
  h=$(host_vm) || return 1
  jq -e --argjson h "$h" '
    (.encrypted == $h.encrypted) and ((.kek_id // "") == ($h.kek_id // "")) and
    ($h.pending_operation == null) and ($h.task == null) and (.task == null)' <<<"$m" >/dev/null
}
free_mib() { df -B1M --output=avail "$DS" | tail -n1 | tr -d ' '; }
# fill N: leave N MiB free
fill() {
  rm -f "$DS/.filler"
  local n=$(($(free_mib) - $1))
  [ "$n" -gt 0 ] || fail "cannot leave $1 MiB free"
  dd if=/dev/zero of="$DS/.filler" bs=1M count="$n" status=none 2>/dev/null || true
}
unfill() { rm -f "$DS/.filler"; }
last_task() { vmseal --json task ls | jq -c --arg u "$UUID" '[.tasks[] | select(.vm_uuid == $u)][0]'; }
no_leftovers() {
  ls "$H" | grep -E '\.partial|\.ckpt' && fail "partial images left in $H: $(ls "$H")"
  grep -Eq '^(op|disk0\.next)' "$H/vm.conf" && fail "vm.conf keeps the operation: $(cat "$H/vm.conf")"
  return 0
}

# refused RC WHAT CLI-ARGS...: too little room, refused up front
refused() {
  local what=$1 kek_before t; shift
  kek_before=$(vmseal --json vm info sp1 | jq -r '.kek_id // ""')
  fill 12
  expect_rc 1 vmseal "$@"
  echo "# $what refused: $OUT"
  grep -Eq "needs [0-9]+ MiB, [0-9]+ MiB are free" <<<"$OUT" || fail "$what: the refusal does not name the room: $OUT"
  t=$(last_task)
  jq -e '.state == "error"' <<<"$t" >/dev/null || fail "$what: task $t"
  stack_until 30 agree || fail "$what refused: manager and host disagree"
  [ "$(vmseal --json vm info sp1 | jq -r '.kek_id // ""')" = "$kek_before" ] || fail "$what refused: the VM changed"
  no_leftovers
  boot_check esx1 sp1 spacemark
  unfill
  expect_rc 0 vmseal "$@"
  stack_until 30 agree || fail "$what with room: manager and host disagree"
  boot_check esx1 sp1 spacemark
  ok "$what that does not fit is refused up front (the VM boots); with the room back it succeeds"
}

refused encrypt vm encrypt sp1
refused "deep rekey" vm rekey sp1 --deep
refused decrypt vm decrypt sp1

# --- the host's check off: out of room part-way ----------------------------
stack_hostd_stop esx1
export VMSEAL_TEST_SKIP_SPACE_CHECK=1
stack_hostd_start esx1
unset VMSEAL_TEST_SKIP_SPACE_CHECK
grep -q "TEST HOOK VMSEAL_TEST_SKIP_SPACE_CHECK" "$STACK_DIR/esx1/hostd.log" || fail "the hook is not in force"

# midway WHAT CLI-ARGS...: runs out of room part-way, rolled back, resumed
midway() {
  local what=$1 kek_before t id; shift
  kek_before=$(vmseal --json vm info sp1 | jq -r '.kek_id // ""')
  fill 12
  expect_rc 1 vmseal "$@"
  t=$(last_task)
  id=$(jq -r .id <<<"$t")
  echo "# $what out of room: $(jq -c '{id, state, error}' <<<"$t")"
  jq -e '.state == "rolled-back" and (.error | test("No space left|room"))' <<<"$t" >/dev/null ||
    fail "$what out of room: task $t"
  stack_until 30 agree || fail "$what out of room: manager and host disagree"
  [ "$(vmseal --json vm info sp1 | jq -r '.kek_id // ""')" = "$kek_before" ] || fail "$what out of room: the VM changed"
  no_leftovers
  [ "$(free_mib)" -ge 10 ] || fail "$what out of room: the room did not come back ($(free_mib) MiB free)"
  boot_check esx1 sp1 spacemark
  unfill
  expect_rc 0 vmseal task resume "$id"
  stack_until 30 agree || fail "$what resumed: manager and host disagree"
  [ "$(vmseal --json vm info sp1 | jq -r '.kek_id // ""')" != "$kek_before" ] || fail "$what resumed: nothing changed"
  boot_check esx1 sp1 spacemark
  ok "$what out of room part-way: rolled back at once (task $id), the VM boots; task resume succeeds with the room back"
}

midway encrypt vm encrypt sp1
midway "deep rekey" vm rekey sp1 --deep
midway decrypt vm decrypt sp1
finish
