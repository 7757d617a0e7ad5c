#!/usr/bin/env bash
# End to end: an encrypted VM with a vTPM 2.0 (swtpm) is suspended and
# resumed, on the same host and on a second host agent that sees the same
# datastore. The guest writes a TPM NV index at boot and then reads it every
# 2 s (tests/guest vmseal.tpmtick): after each resume the reads go on with
# the value, without a new boot. QEMU's tpm-emulator carries swtpm's state
# blobs (encrypted under the vTPM migration key) in its migration stream,
# which hostd seals into the state file; the resuming host starts swtpm with
# the same two keys derived from the per-VM secret. Suspended: the state
# file is sealed, neither it nor vtpm.state holds the value in clear, swtpm
# has ended; `vmseal-crypto-util state decrypt` opens the file offline with
# the KEK into a QEMU stream with the tpm-emulator section.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/system/system_lib.sh"
command -v swtpm >/dev/null || fail "swtpm is not installed (scripts/deps: swtpm)"
CU=$VMSEAL_BUILD/crypto-util/vmseal-crypto-util

M=vtpmSR$(head -c 5 /dev/urandom | od -An -tx1 | tr -d ' \n')   # 16 characters
[ ${#M} -eq 16 ] || fail "marker length"
MHEX=$(printf %s "$M" | od -An -tx1 | tr -d ' \n')
base="console=ttyS0 quiet"

QU=vmsqs$((RANDOM % 100000))
useradd --system --no-create-home --shell /usr/sbin/nologin "$QU" || fail "useradd"
at_exit "userdel $QU >/dev/null 2>&1"
stack_kmsd_setup kms1
stack_kmsd_start kms1
stack_managerd_setup
stack_managerd_start
stack_login
stack_kms_add prov1 kms1
stack_hostd_setup esx1
echo "qemu_user = $QU" >> "$STACK_DIR/esx1/hostd.conf"
stack_hostd_start esx1

expect_rc 0 vmseal vm create tpm1 --host esx1 --encrypt --tpm --disk 8 --memory 128 \
  --kernel vmlinuz --initrd initrd.gz --append "$base vmseal.tpmnv=write:$M vmseal.wait=1 vmseal.tpmtick=1"
H=$(stack_vm_home esx1 tpm1)

tick_line() { { stack_vm_console tpm1 | grep -a '^VMSEAL-TPMNV-TICK' || true; } | tail -n1 | tr -d '\r'; }
tick_past() { # N: a tick above N that read the value
  local l; l=$(tick_line)
  [ -n "$l" ] && [ "$(cut -d' ' -f2 <<<"$l")" -gt "$1" ] &&
    [ "$(cut -d' ' -f3,4 <<<"$l")" = "00000000 $MHEX" ]
}
gboots() { stack_vm_console tpm1 | grep -ac '^VMSEAL-GUEST-BOOT' || true; }
suspend_check() { # after a suspend: sealed, no NV value in clear, swtpm ended
  [ "$(stack_vm_field tpm1 .runtime.power_state)" = suspended ] || fail "tpm1 is not suspended"
  STATE=$(sed -n 's/^state.file = //p' "$H/vm.conf")
  [[ "$STATE" =~ ^suspend-[0-9a-f]{16}\.vmss$ ]] || fail "no sealed state file in vm.conf"
  [ "$(head -c 8 "$H/$STATE")" = VMSEALSF ] || fail "$STATE is not a sealed file"
  local f
  for f in "$H/$STATE" "$H/vtpm.state"; do
    if grep -a -q "$M" "$f" || grep -a -q "$MHEX" "$f"; then fail "the NV value is in clear in $f"; fi
  done
  stack_until 30 bash -c "! pgrep -x swtpm -u $QU >/dev/null" || fail "swtpm still runs for the suspended VM"
}

expect_rc 0 vmseal vm start tpm1
stack_until 300 tick_past 2 || fail "the guest does not read the NV index while it runs: $(tick_line)"
grep -q '^VMSEAL-TPMNV-WRITE 00000000' <<<"$(stack_vm_console tpm1)" || fail "NV write in the guest"
boots=$(gboots)
ok "the guest wrote the NV index and reads it every 2 s"

expect_rc 0 vmseal vm suspend tpm1
N=$(tick_line | cut -d' ' -f2)
suspend_check
kek=$(vmseal --json vm info tpm1 | jq -r .kek_id)
stack_kmip kms1 get "$kek" --reveal-to-fd 3 3>"$TMP/kek" >/dev/null
chmod 600 "$TMP/kek"
expect_rc 0 "$CU" state decrypt --kek-file "$TMP/kek" --quiet "$H/$STATE" "$TMP/stream"
[ "$(head -c 4 "$TMP/stream" | od -An -c | tr -d ' \n')" = QEVM ] || fail "the decrypted state is not a QEMU stream"
grep -a -q 'tpm-emulator' "$TMP/stream" || fail "no tpm-emulator section in the saved state"
rm -f "$TMP/stream"
ok "suspended: the state file is sealed, no NV value in clear, swtpm ended; state decrypt shows the tpm-emulator section"

expect_rc 0 vmseal vm resume tpm1
stack_until 300 tick_past "$N" || fail "after resume: $(tick_line) (wanted a tick past $N with $MHEX)"
[ "$(gboots)" = "$boots" ] || fail "the guest booted again instead of resuming"
ok "resumed on the same host: the guest reads the NV value on (past tick $N), no new boot"

stack_until 120 tick_past $((N + 1)) || fail "the guest stopped reading: $(tick_line)"
expect_rc 0 vmseal vm suspend tpm1
N=$(tick_line | cut -d' ' -f2)
suspend_check
stack_hostd_setup esx2
sed -i "s|^datastore = .*|datastore = $(dirname "$H")|" "$STACK_DIR/esx2/hostd.conf"
echo "qemu_user = $QU" >> "$STACK_DIR/esx2/hostd.conf"
stack_hostd_start esx2
expect_rc 0 vmseal vm resume tpm1 --host esx2
[ "$(stack_vm_field tpm1 .host)" = esx2 ] || fail "the inventory does not name esx2"
stack_until 300 tick_past "$N" || fail "after resume on esx2: $(tick_line) (wanted a tick past $N)"
[ "$(gboots)" -le "$boots" ] || fail "the guest booted again on esx2"
ok "suspended on esx1, resumed on esx2: the guest reads the NV value on, no new boot"
expect_rc 0 vmseal vm stop tpm1
stack_vm_wait_off tpm1 120 || fail "tpm1 did not power off"
finish
