#!/usr/bin/env bash
# Snapshots end to end on real QEMU (TCG), an encrypted VM (hostd/snapshot.h):
#  - powered off: the guest writes disk marker A, snapshot, it writes B;
#    revert: it reads A back (B is gone); neither marker is in clear in any
#    file of the datastore (the layers are qcow2 with LUKS encryption);
#  - running, with memory: the guest counts with a RAM marker; a snapshot
#    pauses it, seals its memory (snap-*.vmss) and puts new layers under it
#    over QMP; it counts on; revert: the same marker with the counter of
#    the snapshot's moment (no new boot); the marker is nowhere in clear;
#  - a shallow rekey rewraps every layer's key safe, and revert still works;
#    deep rekey and decrypt are refused (409) with snapshots;
#  - rm merges a layer down (qemu-img commit, passphrases from pipes):
#    the guest still reads its marker;
#  - abuse: a role without VirtualMachine.State.*, hostile names;
#  - hostd killed mid-snapshot (test hook): restarted, the VM is consistent.
# A running snapshot with memory restarts QEMU on the new layers from the
# state just saved (the migration stream lets go of the disks); one
# without memory switches the running QEMU (blockdev-snapshot).
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/system/system_lib.sh"

base_stack
DS=$STACK_DIR/esx1/datastore
ram_line() { { stack_vm_console "$1" | grep -a '^VMSEAL-RAM VMRAM' || true; } | tail -n1 | tr -d '\r'; }
has_ram_line() { [ -n "$(ram_line "$1")" ]; }
counter_past() { # VM MARKER N
  local l; l=$(ram_line "$1")
  [ "$(cut -d' ' -f2 <<<"$l")" = "$2" ] && [ "$(cut -d' ' -f3 <<<"$l")" -gt "$3" ]
}
counter_below() { # VM MARKER N: the last line has MARKER and a counter below N
  local l; l=$(ram_line "$1")
  [ "$(cut -d' ' -f2 <<<"$l")" = "$2" ] && [ "$(cut -d' ' -f3 <<<"$l")" -lt "$3" ]
}
state_of() { stack_vm_field "$1" '.runtime.power_state'; }
nowhere_in_clear() { # TEXT WHAT
  local hits; hits=$(grep -rlaF "$1" "$DS" || true)
  [ -z "$hits" ] || fail "$2 in clear on the datastore: $hits"
}
boot_check_fails() { # HOST VM MARKER: the guest does not find MARKER
  vmseal vm set "$2" --append "console=ttyS0 quiet vmseal.check=$3" >/dev/null || fail "vm set"
  local out; out=$(stack_vm_boot "$1" "$2") || fail "boot of $2 (check)"
  grep -q '^VMSEAL-CHECK-FAIL' <<<"$out" || { echo "$out" >&2; fail "guest $2 still reads $3"; }
}

expect_rc 0 vmseal vm create vm1 --host esx1 --disk 8 --memory 128 --encrypt \
  --kernel vmlinuz --initrd initrd.gz --append "console=ttyS0 quiet"
HOME1=$(stack_vm_home esx1 vm1)
MA=snapA$(od -An -tx4 -N4 /dev/urandom | tr -d ' ')
MB=snapB$(od -An -tx4 -N4 /dev/urandom | tr -d ' ')

# --- powered off ---------------------------------------------------------
boot_mark esx1 vm1 "$MA"
expect_rc 0 vmseal vm snapshot create vm1 off1
grep -q '^snapshots = 1$' "$HOME1/vm.conf" || { cat "$HOME1/vm.conf" >&2; fail "vm.conf has no snapshot"; }
L1=$(sed -n 's/^snap0.disk0.file = //p' "$HOME1/vm.conf")
[ -f "$HOME1/$L1" ] || fail "layer $L1 missing"
# adopting a disk under a snapshot is refused (its layers expect the disks
# the VM has), before any image is opened
printf 'pw' > "$STACK_DIR/adopt.pw"
expect_rc 6 vmseal vm disk adopt vm1 --image no-such.luks --passphrase-file "$STACK_DIR/adopt.pw"
grep -q snapshot <<<"$OUT" || fail "the adopt refusal does not name the snapshots: $OUT"
[ "$(head -c 3 "$HOME1/$L1")" = QFI ] || fail "$L1 is not a qcow2 image"
grep -q '^snap0.disk0.keysafe = vmseal:keysafe:' "$HOME1/vm.conf" || fail "the layer has no key safe"
qemu-img info "$HOME1/$L1" 2>/dev/null | grep -q 'encrypted: yes' || fail "$L1 is not encrypted"
boot_mark esx1 vm1 "$MB"
boot_check esx1 vm1 "$MB"
nowhere_in_clear "VMSEAL-MARKER:$MA" "disk marker A"
nowhere_in_clear "VMSEAL-MARKER:$MB" "disk marker B"
expect_rc 0 vmseal vm snapshot revert vm1 off1
[ "$(state_of vm1)" = off ] || fail "vm1 is $(state_of vm1) after reverting to a snapshot without memory"
[ ! -e "$HOME1/$L1" ] || fail "the old layer $L1 was left"
boot_check esx1 vm1 "$MA"
ok "powered off: marker A, snapshot, marker B, revert: the guest reads A again; no marker in clear"
boot_check_fails esx1 vm1 "$MB"
ok "after the revert, B is gone"

# --- running, with memory ---------------------------------------------------
expect_rc 0 vmseal vm set vm1 --append "console=ttyS0 quiet vmseal.wait=1 vmseal.ramtick=1"
expect_rc 0 vmseal vm start vm1
stack_until 240 has_ram_line vm1 || fail "guest vm1 did not print its RAM marker"
MARK=$(ram_line vm1 | cut -d' ' -f2)
[[ "$MARK" =~ ^VMRAM[0-9a-f]{24}$ ]] || fail "odd RAM marker: $(ram_line vm1)"
stack_until 120 counter_past vm1 "$MARK" 2 || fail "the guest does not count"
boots=$(stack_vm_console vm1 | grep -ac '^VMSEAL-GUEST-BOOT' || true)
expect_rc 0 vmseal vm snapshot create vm1 live1 --memory
N1=$(ram_line vm1 | cut -d' ' -f3)
[ "$(state_of vm1)" = on ] || fail "vm1 is $(state_of vm1) after a snapshot with memory"
ST=$(sed -n 's/^snap1.state = //p' "$HOME1/vm.conf")
[[ "$ST" =~ ^snap-[0-9a-f]{16}\.vmss$ ]] || { cat "$HOME1/vm.conf" >&2; fail "no sealed memory file for live1"; }
[ "$(head -c 8 "$HOME1/$ST")" = VMSEALSF ] || fail "$ST is not a sealed file"
nowhere_in_clear "$MARK" "RAM marker"
stack_until 120 counter_past vm1 "$MARK" $((N1 + 4)) || fail "the guest does not count on after the snapshot"
N2=$(ram_line vm1 | cut -d' ' -f3)
ok "running: snapshot with memory ($ST sealed), the guest counts on ($N1 -> $N2)"
expect_rc 0 vmseal vm snapshot ls vm1
grep -q live1 <<<"$OUT" && grep -q off1 <<<"$OUT" || fail "snapshot ls: $OUT"
expect_rc 0 vmseal vm snapshot revert vm1 live1
[ "$(state_of vm1)" = on ] || fail "vm1 is $(state_of vm1) after reverting to a snapshot with memory"
stack_until 240 counter_below vm1 "$MARK" "$N2" || fail "after revert: $(ram_line vm1) (wanted $MARK below $N2)"
b2=$(stack_vm_console vm1 | grep -ac '^VMSEAL-GUEST-BOOT' || true)
[ "$b2" -le "$boots" ] || fail "the guest booted again instead of going on from its memory"
nowhere_in_clear "$MARK" "RAM marker"
ok "revert to live1: the guest goes on from the snapshot's moment (same marker, counter below $N2, no boot)"

# --- rekeys ------------------------------------------------------------------
expect_rc 0 vmseal vm stop vm1
stack_vm_wait_off vm1 60 || fail "vm1 did not power off"
kek0=$(vmseal --json vm info vm1 | jq -r .kek_id)
expect_rc 0 vmseal vm rekey vm1
kek1=$(vmseal --json vm info vm1 | jq -r .kek_id)
[ "$kek1" != "$kek0" ] || fail "shallow rekey kept $kek0"
grep '^snap[0-9].disk[0-9].keysafe' "$HOME1/vm.conf" | grep -qF ":$kek0:" && fail "a layer's key safe still names $kek0"
[ "$(grep -c "^snap[0-9].disk[0-9].keysafe = .*:$kek1:" "$HOME1/vm.conf")" = 2 ] || fail "not every layer rewrapped"
expect_rc 6 vmseal vm rekey vm1 --deep
grep -q snapshot <<<"$OUT" || fail "deep rekey refusal does not say why: $OUT"
expect_rc 6 vmseal vm decrypt vm1
grep -q snapshot <<<"$OUT" || fail "decrypt refusal does not say why: $OUT"
expect_rc 0 vmseal vm snapshot revert vm1 live1
stack_until 240 counter_below vm1 "$MARK" "$N2" || fail "revert after the rekey: $(ram_line vm1)"
ok "shallow rekey rewrapped every layer ($kek1) and revert works; deep rekey and decrypt refused (409)"

# --- abuse ---------------------------------------------------------------------
printf 'bobpassword1\n' > "$TMP/bobpw"
expect_rc 0 vmseal user add bob --role ReadOnly --password-file "$TMP/bobpw"
bob() { XDG_CONFIG_HOME=$TMP/bob "$STACK_CLI" "$@"; }
bob --url "$STACK_URL" --ca "$STACK_CA" login bob --password-file "$TMP/bobpw" >/dev/null || fail "bob login"
rc=0; OUT=$(bob vm snapshot ls vm1 2>&1) || rc=$?
[ $rc -eq 0 ] || fail "ReadOnly may list snapshots: exit $rc $OUT"
for v in "create vm1 bobs:VirtualMachine.State.CreateSnapshot" \
         "revert vm1 live1:VirtualMachine.State.RevertToSnapshot" \
         "rm vm1 live1:VirtualMachine.State.RemoveSnapshot"; do
  rc=0; OUT=$(bob vm snapshot ${v%%:*} </dev/null 2>&1) || rc=$?
  [ $rc -eq 5 ] || fail "bob: vm snapshot ${v%%:*}: exit $rc, expected 5: $OUT"
  grep -q "${v##*:}" <<<"$OUT" || fail "the refusal does not name ${v##*:}: $OUT"
done
vmseal --json events --result denied --user bob | jq -e 'map(select(.action | startswith("vm.snapshot"))) | length >= 3' \
  >/dev/null || fail "no denied events for bob's snapshot attempts"
long=$(printf 'a%.0s' {1..65})
for bad in "../x" ".." ".hidden" "-x" "$long" "café" "a/b" "a b"; do
  rc=0; OUT=$(vmseal vm snapshot create vm1 "$bad" 2>&1) || rc=$?
  [ $rc -ne 0 ] || fail "snapshot name '$bad' accepted"
  rc=0; OUT=$(vmseal vm snapshot revert vm1 "$bad" 2>&1) || rc=$?
  [ $rc -ne 0 ] || fail "revert to '$bad' accepted"
done
[ "$(grep -c '^snap[0-9].name' "$HOME1/vm.conf")" = 2 ] || fail "hostile names changed vm.conf"
ls -a "$DS" | grep -v -e '^\.\{1,2\}$' -e '^vm1$' && fail "something appeared next to the VM home"
ok "no VirtualMachine.State.*: refused (exit 5, named, audited); hostile names refused, nothing written"

# --- hostd killed mid-snapshot --------------------------------------------------
crash_at() { # POINT CMD...: run CMD against a hostd that dies at POINT, then restart it
  local point=$1; shift
  stack_hostd_stop esx1
  export VMSEAL_TEST_CRASH_AT=$point
  stack_hostd_start esx1
  unset VMSEAL_TEST_CRASH_AT
  "$@" >/dev/null 2>&1 && fail "$* succeeded although hostd was to die at $point"
  wait "${STACK_PID[esx1]}" 2>/dev/null || true
  unset 'STACK_PID[esx1]'
  grep -q "killed at $point" "$STACK_DIR/esx1/hostd.log" || fail "hostd did not die at $point"
  stack_hostd_start esx1
  stack_until 60 vm_unlocked vm1 || fail "vm1 locked after the restart"
}
files_named() { # every snap-* file in the home is named by vm.conf, and the marker is gone
  local f
  for f in $(ls "$HOME1" | grep '^snap-'); do
    grep -q " = $f\$" "$HOME1/vm.conf" || fail "$f left behind, not in vm.conf"
  done
  [ ! -e "$HOME1/snapshot.busy" ] || fail "snapshot.busy left behind"
}
N=$(ram_line vm1 | cut -d' ' -f3)
crash_at snapshot-files vmseal vm snapshot create vm1 crash1 --memory
[ "$(state_of vm1)" = on ] || fail "after a crash before QEMU switched: vm1 is $(state_of vm1)"
grep -q '^snap[0-9].name = crash1' "$HOME1/vm.conf" && fail "crash1 recorded"
files_named
stack_until 120 counter_past vm1 "$MARK" "$N" || fail "the guest paused by the unfinished snapshot does not go on"
ok "killed with the layer files made: they are removed, the guest goes on"
crash_at snapshot-recorded vmseal vm snapshot create vm1 crash2 --memory
grep -q '^snap[0-9].name = crash2' "$HOME1/vm.conf" || fail "crash2 not recorded"
[ "$(state_of vm1)" = off ] || fail "after a crash once vm.conf recorded it: vm1 is $(state_of vm1)"
files_named
expect_rc 0 vmseal vm snapshot revert vm1 crash2
stack_until 240 has_ram_line vm1 || fail "no guest after reverting to crash2"
stack_until 240 counter_past vm1 "$MARK" 0 || fail "reverting to crash2: $(ram_line vm1)"
ok "killed once vm.conf recorded the snapshot (memory saved): QEMU ended, the snapshot holds that moment and reverts"
crash_at snapshot-switched vmseal vm snapshot create vm1 crash3
grep -q '^snap[0-9].name = crash3' "$HOME1/vm.conf" && fail "crash3 recorded"
[ "$(state_of vm1)" = off ] || fail "after a crash with QEMU switched, not recorded: vm1 is $(state_of vm1)"
files_named
ok "killed with QEMU on layers vm.conf does not name: QEMU ended, the files removed, the chain intact"

# --- rm: merged down offline ------------------------------------------------------
expect_rc 0 vmseal vm snapshot rm vm1 off1
expect_rc 0 vmseal vm snapshot rm vm1 crash2
expect_rc 0 vmseal vm snapshot rm vm1 live1
grep -q '^snap' "$HOME1/vm.conf" && fail "vm.conf still has snapshots"
ls "$HOME1" | grep -q '^snap-' && fail "snapshot files left: $(ls "$HOME1")"
boot_check esx1 vm1 "$MA"
nowhere_in_clear "VMSEAL-MARKER:$MA" "disk marker A"
expect_rc 0 vmseal --json events --since 0
jq -e 'map(select(.object == "vm1" and (.action | startswith("vm.snapshot-")) and .result != "denied")) | length >= 8' \
  <<<"$OUT" >/dev/null || fail "no vm.snapshot-* events"
ok "every snapshot removed (layers merged down with qemu-img commit): the guest reads A, nothing in clear"

finish
