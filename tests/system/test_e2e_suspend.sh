#!/usr/bin/env bash
# Suspend / resume end to end on real QEMU (TCG): an encrypted VM's guest
# makes a random marker in RAM and prints it with a counter every second
# (tests/guest, vmseal.ramtick=1). Suspended, its memory state is a sealed
# file in the VM home and the marker is nowhere in clear on the datastore;
# a flipped byte or a cut file is refused with a clear error and the VM
# stays suspended, unharmed; resumed, the guest goes on with the same
# marker and counter (no new boot). A shallow rekey of a suspended VM keeps
# its state usable; a deep one is refused. The control: a VM without
# encryption keeps a clear state file, in which the same grep finds its
# marker. Then the VM is suspended again and resumed on a second host
# agent that sees the same datastore.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/system/system_lib.sh"

base_stack
APPEND="console=ttyS0 quiet vmseal.wait=1 vmseal.ramtick=1"

# ram_line VM: the last "VMSEAL-RAM <marker> <n>" line of its console
ram_line() { { stack_vm_console "$1" | grep -a '^VMSEAL-RAM VMRAM' || true; } | tail -n1 | tr -d '\r'; }
has_ram_line() { [ -n "$(ram_line "$1")" ]; }
counter_past() { # VM MARKER N: the guest printed MARKER with a counter above N
  local l; l=$(ram_line "$1")
  [ "$(cut -d' ' -f2 <<<"$l")" = "$2" ] && [ "$(cut -d' ' -f3 <<<"$l")" -gt "$3" ]
}
state_of() { stack_vm_field "$1" '.runtime.power_state'; }

expect_rc 0 vmseal vm create vm1 --host esx1 --disk 8 --memory 128 --encrypt \
  --kernel vmlinuz --initrd initrd.gz --append "$APPEND"
HOME1=$(stack_vm_home esx1 vm1)
expect_rc 0 vmseal vm start vm1
stack_until 240 has_ram_line vm1 || fail "guest vm1 did not print its RAM marker"
line=$(ram_line vm1)
MARK=$(cut -d' ' -f2 <<<"$line")
[[ "$MARK" =~ ^VMRAM[0-9a-f]{24}$ ]] || fail "odd RAM marker line: $line"
boots=$(stack_vm_console vm1 | grep -ac '^VMSEAL-GUEST-BOOT' || true)
ok "encrypted guest runs with marker $MARK in RAM"

stack_until 120 counter_past vm1 "$MARK" 2 || fail "the guest's counter does not go on: $(ram_line vm1)"
expect_rc 0 vmseal vm suspend vm1
[ "$(state_of vm1)" = suspended ] || fail "vm1 is not suspended: $(state_of vm1)"
N=$(ram_line vm1 | cut -d' ' -f3)
STATE=$(sed -n 's/^state.file = //p' "$HOME1/vm.conf")
[[ "$STATE" =~ ^suspend-[0-9a-f]{16}\.vmss$ ]] || { cat "$HOME1/vm.conf" >&2; fail "no sealed state file in vm.conf"; }
[ -f "$HOME1/$STATE" ] || fail "state file $STATE missing"
[ "$(head -c 8 "$HOME1/$STATE")" = VMSEALSF ] || fail "$STATE is not a sealed file"
size=$(stat -c %s "$HOME1/$STATE")
[ "$size" -gt 1000000 ] || fail "state file too small to hold the guest's memory ($size bytes)"
[ "$(stat -c %a "$HOME1/$STATE")" = 600 ] || fail "state file mode $(stat -c %a "$HOME1/$STATE")"
hits=$(grep -rla "$MARK" "$(dirname "$HOME1")" || true)
[ -z "$hits" ] || fail "RAM marker in clear on the datastore: $hits"
ls "$HOME1" | grep -q '\.partial$' && fail "a .partial file was left behind"
ok "suspended: $STATE sealed ($size bytes), the marker is in no file of the datastore, QEMU ended"

# the state opens offline with the KEK (vmseal-crypto-util state decrypt):
# QEMU's migration stream, holding the guest's RAM marker; damage is refused
CU=$VMSEAL_BUILD/crypto-util/vmseal-crypto-util
kek=$(vmseal --json vm info vm1 | jq -r .kek_id)
stack_kmip kms1 get "$kek" --reveal-to-fd 3 3>"$TMP/kek" >/dev/null
chmod 600 "$TMP/kek"
[ "$(stat -c %s "$TMP/kek")" = 32 ] || fail "KEK from the KMS"
expect_rc 0 "$CU" state decrypt --kek-file "$TMP/kek" --kek-id "$kek" --quiet "$HOME1/$STATE" "$TMP/stream"
[ "$(head -c 4 "$TMP/stream" | od -An -c | tr -d ' \n')" = QEVM ] || fail "decrypted state is not a QEMU stream"
grep -qa "$MARK" "$TMP/stream" || fail "the guest's RAM marker is not in the decrypted state"
rm -f "$TMP/stream"
cp -p "$HOME1/$STATE" "$TMP/cut.vmss.src"
mkdir "$TMP/cut"; cp "$HOME1/vm.conf" "$TMP/cut/"
head -c $((size - 5000)) "$HOME1/$STATE" > "$TMP/cut/$STATE"
expect_rc 2 "$CU" state decrypt --kek-file "$TMP/kek" --quiet "$TMP/cut/$STATE" "$TMP/stream"
grep -q "damaged" <<<"$OUT" || fail "crypto-util: cut state file: no clear error: $OUT"
[ ! -e "$TMP/stream" ] || fail "crypto-util left output of a cut state file"
rm -rf "$TMP/cut" "$TMP/cut.vmss.src"
ok "state decrypt opens $STATE offline with the KEK (a QEMU stream with the marker), refuses a cut copy"

# damaged state: refused, the VM stays suspended and unharmed
cp -p "$HOME1/$STATE" "$TMP/state.orig"
printf '\xff' | dd of="$HOME1/$STATE" bs=1 seek=$((size / 2)) conv=notrunc status=none
expect_rc 1 vmseal vm resume vm1
grep -q "damaged" <<<"$OUT" || fail "flipped byte: no clear error: $OUT"
[ "$(state_of vm1)" = suspended ] || fail "after a refused resume vm1 is $(state_of vm1)"
cp -p "$TMP/state.orig" "$HOME1/$STATE"
truncate -s $((size - 70000)) "$HOME1/$STATE"
expect_rc 1 vmseal vm resume vm1
grep -q "damaged" <<<"$OUT" || fail "cut file: no clear error: $OUT"
[ "$(state_of vm1)" = suspended ] || fail "after a refused resume vm1 is $(state_of vm1)"
cp -p "$TMP/state.orig" "$HOME1/$STATE"
expect_rc 6 vmseal vm set vm1 --memory 256
grep -q "suspended" <<<"$OUT" || fail "vm set of a suspended VM: $OUT"
ok "a flipped byte and a cut state file are refused (\"damaged\"), the VM stays suspended"

# a shallow rekey keeps the state usable (it is bound to the per-VM
# secret); a deep one is refused while suspended
kek0=$(vmseal --json vm info vm1 | jq -r .kek_id)
expect_rc 0 vmseal vm rekey vm1
kek1=$(vmseal --json vm info vm1 | jq -r .kek_id)
[ "$kek1" != "$kek0" ] || fail "shallow rekey kept $kek0"
expect_rc 6 vmseal vm rekey vm1 --deep
ok "suspended VM: shallow rekey done ($kek1), deep rekey refused"

expect_rc 0 vmseal vm resume vm1
[ "$(state_of vm1)" = on ] || fail "vm1 is $(state_of vm1) after resume"
stack_until 240 counter_past vm1 "$MARK" "$N" || fail "after resume: $(ram_line vm1) (wanted $MARK past $N)"
b2=$(stack_vm_console vm1 | grep -ac '^VMSEAL-GUEST-BOOT' || true)
[ "$b2" = "$boots" ] || fail "the guest booted again instead of resuming ($boots -> $b2)"
[ ! -e "$HOME1/$STATE" ] || fail "state file left after resume"
grep -q '^state.file' "$HOME1/vm.conf" && fail "state.file left in vm.conf"
expect_rc 6 vmseal vm resume vm1
ok "resumed: same marker $MARK, counter past $N, no new boot, state file removed"

# the host agent killed in the middle (test hook VMSEAL_TEST_CRASH_AT,
# hostd/vmstate.h): restarted, it leaves the VM consistent at each point
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
no_state_files() { ! ls "$HOME1" | grep -q '^suspend-'; }
N=$(ram_line vm1 | cut -d' ' -f3)
crash_at suspend-saved vmseal vm suspend vm1
[ "$(state_of vm1)" = on ] || fail "after a crash before vm.conf named the state: vm1 is $(state_of vm1)"
stack_until 120 counter_past vm1 "$MARK" "$N" || fail "the guest stopped by the unfinished suspend does not go on"
no_state_files || fail "state files left: $(ls "$HOME1")"
ok "killed after the state was written, before vm.conf named it: the guest goes on, the file is removed"
crash_at suspend-recorded vmseal vm suspend vm1
[ "$(state_of vm1)" = suspended ] || fail "after a crash once vm.conf named the state: vm1 is $(state_of vm1)"
N=$(ram_line vm1 | cut -d' ' -f3)
[ -n "$N" ] || fail "the console log of the VM suspended by the recovery does not read"
crash_at resume-continued vmseal vm resume vm1
[ "$(state_of vm1)" = on ] || fail "after a crash once the guest ran again: vm1 is $(state_of vm1)"
grep -q '^state.file' "$HOME1/vm.conf" && fail "state.file left in vm.conf after the recovered resume"
no_state_files || fail "state files left: $(ls "$HOME1")"
stack_until 120 counter_past vm1 "$MARK" "$N" || fail "after the recovered resume: $(ram_line vm1)"
ok "killed once vm.conf named the state: suspended; killed once the resumed guest ran: it runs, the state is dropped"

# another host that sees the same datastore resumes it; the inventory moves
# the VM there and the first host forgets it (its files stay)
N=$(ram_line vm1 | cut -d' ' -f3)
expect_rc 0 vmseal vm suspend vm1
stack_hostd_setup esx2
sed -i "s|^datastore = .*|datastore = $(dirname "$HOME1")|" "$STACK_DIR/esx2/hostd.conf"
stack_hostd_start esx2
expect_rc 0 vmseal vm resume vm1 --host esx2
[ "$(stack_vm_field vm1 .host)" = esx2 ] || fail "the inventory does not name esx2 for vm1"
[ "$(state_of vm1)" = on ] || fail "vm1 is $(state_of vm1) after the resume on esx2"
stack_until 240 counter_past vm1 "$MARK" "$N" || fail "after resume on esx2: $(ram_line vm1)"
b3=$(stack_vm_console vm1 | grep -ac '^VMSEAL-GUEST-BOOT' || true)
# (old console segments rotate away: the count may only go down)
[ "$b3" -le "$boots" ] || fail "the guest booted again on esx2 ($boots -> $b3)"
stack_host_api esx1 GET /v1/vms | head -n -1 | jq -e --arg u "$(stack_vm_uuid vm1)" \
  'all(.vms[]; .uuid != $u)' >/dev/null || fail "esx1 still lists vm1"
ok "suspended on esx1, resumed on esx2 (shared datastore): same marker, the inventory names esx2, esx1 forgot it"

# events
expect_rc 0 vmseal --json events --since 0
jq -e 'map(select(.object == "vm1" and (.action == "vm.suspend" or .action == "vm.resume")
        and .result != "denied")) | length >= 2' <<<"$OUT" >/dev/null || fail "no vm.suspend / vm.resume events"
expect_rc 0 vmseal vm stop vm1
stack_vm_wait_off vm1 60 || fail "vm1 did not power off"

# control: a VM without encryption keeps a clear state file, where the
# same grep finds its marker
expect_rc 0 vmseal vm create vm2 --host esx1 --disk 8 --memory 128 --no-encrypt \
  --kernel vmlinuz --initrd initrd.gz --append "$APPEND"
HOME2=$(stack_vm_home esx1 vm2)
expect_rc 0 vmseal vm start vm2
stack_until 240 has_ram_line vm2 || fail "guest vm2 did not print its RAM marker"
MARK2=$(ram_line vm2 | cut -d' ' -f2)
expect_rc 0 vmseal vm suspend vm2
STATE2=$(sed -n 's/^state.file = //p' "$HOME2/vm.conf")
[[ "$STATE2" =~ ^suspend-[0-9a-f]{16}\.vmstate$ ]] || fail "no clear state file for vm2"
grep -qa "$MARK2" "$HOME2/$STATE2" || fail "control: marker $MARK2 not found in the clear state file"
expect_rc 0 vmseal vm discard-state vm2
[ "$(state_of vm2)" = off ] || fail "vm2 is $(state_of vm2) after discard-state"
[ ! -e "$HOME2/$STATE2" ] || fail "discard-state left $STATE2"
ok "control: the clear state of a plain VM shows its marker; discard-state powers it off"

finish
