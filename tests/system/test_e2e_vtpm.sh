#!/usr/bin/env bash
# End to end: a vTPM 2.0 (swtpm) for an encrypted VM, swtpm and QEMU
# confined to a qemu_user. The guest finds
# /dev/tpm0, defines a TPM NV index and writes a value; after a power cycle,
# a shallow and a deep rekey it reads the value back. The state file in the
# VM home holds no plaintext of it; swtpm with another key (or none) refuses
# the state. Removing the vTPM deletes its state; a VM without encryption
# cannot have one.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/system/system_lib.sh"
command -v swtpm >/dev/null || fail "swtpm is not installed (scripts/deps: swtpm)"
command -v swtpm_ioctl >/dev/null || fail "swtpm_ioctl is not installed (scripts/deps: swtpm-tools)"

M=vtpmNV$(head -c 5 /dev/urandom | od -An -tx1 | tr -d ' \n')   # 16 characters
[ ${#M} -eq 16 ] || fail "marker length"
MHEX=$(printf %s "$M" | od -An -tx1 | tr -d ' \n')
base="console=ttyS0 quiet"

# hostd drops QEMU and swtpm to a user of their own (qemu_user)
QU=vmsqt$((RANDOM % 100000))
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
expect_rc 2 vmseal vm create plain1 --host esx1 --no-encrypt --tpm
grep -qi "encrypted VM" <<<"$OUT" || { echo "$OUT" >&2; fail "refusal names the reason"; }
ok "a VM without encryption cannot have a vTPM"

expect_rc 0 vmseal vm create tpm1 --host esx1 --encrypt --tpm --disk 8 \
  --kernel vmlinuz --initrd initrd.gz --append "$base vmseal.tpmnv=write:$M"
H=$(stack_vm_home esx1 tpm1)
[ "$(stack_vm_field tpm1 .runtime.tpm)" = true ] || fail "the host does not report the vTPM"
grep -q '^tpm = 1$' "$H/vm.conf" || fail "vm.conf has no tpm = 1"
out=$(stack_vm_boot esx1 tpm1 300) || fail "boot (write)"
grep -q '^VMSEAL-TPM-PRESENT' <<<"$out" || { echo "$out" >&2; fail "the guest has no /dev/tpm0"; }
grep -q '^VMSEAL-TPMNV-DEFINE 00000000' <<<"$out" && grep -q '^VMSEAL-TPMNV-WRITE 00000000' <<<"$out" ||
  { echo "$out" >&2; fail "NV define/write in the guest"; }
ok "the guest sees /dev/tpm0 and writes an NV index"

[ -s "$H/vtpm.state" ] || fail "no vtpm.state in the VM home"
[ "$(stat -c %a "$H/vtpm.state")" = 600 ] || fail "vtpm.state is not mode 0600"
[ "$(stat -c %U "$H/vtpm.state")" = "$QU" ] || fail "vtpm.state does not belong to qemu_user (swtpm's)"
if grep -a -q "$M" "$H/vtpm.state"; then fail "the NV value is in clear in vtpm.state"; fi
if grep -a -q "$M" "$H/swtpm.log" 2>/dev/null; then fail "the NV value is in swtpm.log"; fi
"$VMSEAL_BUILD/crypto-util/vmseal-crypto-util" check "$H/vtpm.state" | grep -q 'encrypted (vTPM state (swtpm), AES-256-CBC' ||
  fail "crypto-util check does not see vtpm.state encrypted"
ok "vtpm.state holds no plaintext of the NV value"

read_back() {  # what: the guest reads the NV index back
  local out
  vmseal vm set tpm1 --append "$base vmseal.tpmnv=read" >/dev/null || fail "vm set --append"
  out=$(stack_vm_boot esx1 tpm1 300) || fail "boot (read, $1)"
  grep -q "^VMSEAL-TPMNV-READ 00000000 $MHEX" <<<"$out" || { echo "$out" >&2; fail "NV value not read back ($1)"; }
}
read_back "power cycle"
ok "after a power cycle the guest reads the NV value back"

# Another key, or none, does not open the state (swtpm's own check).
W=$(mktemp -d)
cp "$H/vtpm.state" "$W/state"
head -c 32 /dev/urandom > "$W/key"
try_swtpm() {  # extra swtpm args...: 0 when swtpm accepts the state (CMD_INIT)
  local rc=0
  swtpm socket --tpm2 --tpmstate "backend-uri=file://$W/state" --ctrl "type=unixio,path=$W/ctrl" \
    --server "type=unixio,path=$W/srv" --log "file=$W/log" "$@" &
  local p=$!
  local i
  for ((i = 0; i < 100; i++)); do [ -S "$W/ctrl" ] && break; sleep 0.1; done
  swtpm_ioctl --unix "$W/ctrl" -i >/dev/null 2>&1 || rc=1
  swtpm_ioctl --unix "$W/ctrl" -s >/dev/null 2>&1 || true
  kill "$p" 2>/dev/null; wait "$p" 2>/dev/null || true
  rm -f "$W/ctrl" "$W/srv"
  return $rc
}
# the check itself: a state made here under a known key opens with that key only
: > "$W/state"
try_swtpm --key "file=$W/key,format=binary,mode=aes-256-cbc" || fail "swtpm: a fresh state under a key"
try_swtpm --key "file=$W/key,format=binary,mode=aes-256-cbc" || fail "swtpm: reopening with the same key"
head -c 32 /dev/urandom > "$W/key2"
if try_swtpm --key "file=$W/key2,format=binary,mode=aes-256-cbc"; then fail "control: another key accepted"; fi
cp "$H/vtpm.state" "$W/state"
if try_swtpm --key "file=$W/key,format=binary,mode=aes-256-cbc"; then fail "swtpm opened the state with another key"; fi
cp "$H/vtpm.state" "$W/state"
if try_swtpm; then fail "swtpm opened the state without a key"; fi
: > "$W/state"
try_swtpm || fail "swtpm: a fresh state without a key"
set +e; "$VMSEAL_BUILD/crypto-util/vmseal-crypto-util" check "$W/state" >/dev/null; rc=$?; set -e
[ $rc = 1 ] || fail "crypto-util check: a state without a key is not reported plain (rc $rc)"
rm -rf "$W"
ok "swtpm refuses the state with a wrong key and without one"

expect_rc 0 vmseal vm rekey tpm1
read_back "shallow rekey"
expect_rc 0 vmseal vm rekey tpm1 --deep
read_back "deep rekey"
ok "after a shallow and a deep rekey the guest reads the NV value back"

expect_rc 1 vmseal vm decrypt tpm1
grep -qi "vTPM" <<<"$OUT" || { echo "$OUT" >&2; fail "decrypt refusal names the vTPM"; }
ok "decrypting a VM with a vTPM is refused"

expect_rc 0 vmseal vm tpm tpm1 off
[ ! -e "$H/vtpm.state" ] || fail "vtpm.state left after removing the vTPM"
[ "$(stack_vm_field tpm1 .runtime.tpm)" = false ] || fail "the host still reports a vTPM"
expect_rc 0 vmseal vm tpm tpm1 on
vmseal vm set tpm1 --append "$base vmseal.tpmnv=read" >/dev/null || fail "vm set --append"
out=$(stack_vm_boot esx1 tpm1 300) || fail "boot (fresh vTPM)"
grep -q '^VMSEAL-TPM-PRESENT' <<<"$out" || { echo "$out" >&2; fail "no /dev/tpm0 after vtpm on"; }
if grep -q "^VMSEAL-TPMNV-READ 00000000" <<<"$out"; then fail "the new vTPM still has the old NV index"; fi
ok "vm tpm off deletes the state; a new vTPM starts empty"

# while the VM runs: its swtpm runs as qemu_user with no_new_privs, and ends with QEMU
vmseal vm set tpm1 --append "$base vmseal.wait=1" >/dev/null || fail "vm set --append"
expect_rc 0 vmseal vm start tpm1
stack_until 300 stack_vm_console_has tpm1 '^VMSEAL-READY' || fail "guest did not come up"
sp=""
for p in $(pgrep -x swtpm); do
  [ "$(stat -c %U /proc/$p)" = "$QU" ] && sp=$p
done
[ -n "$sp" ] || { ps -o pid,user,args -C swtpm >&2; fail "no swtpm running as $QU"; }
grep -q '^NoNewPrivs:[[:space:]]*1' /proc/$sp/status || fail "swtpm may gain privileges"
grep -q '^CapEff:[[:space:]]*0000000000000000' /proc/$sp/status || fail "swtpm has capabilities"
tr '\0' ' ' < /proc/$sp/cmdline | grep -q -- '--key fd=' || fail "swtpm's key does not come from a descriptor"
expect_rc 0 vmseal vm stop tpm1
stack_until 30 bash -c "! kill -0 $sp 2>/dev/null" || fail "swtpm outlived its VM"
ok "swtpm runs as qemu_user without privileges, its key from a descriptor, and ends with the VM"
finish
