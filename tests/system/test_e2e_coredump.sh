#!/usr/bin/env bash
# End to end: `vmseal vm dump` of a running encrypted guest. QEMU writes the
# guest's memory into a pipe; the host agent seals it on the fly into the VM
# home. The sealed file holds no marker the guest keeps in RAM;
# vmseal-crypto-util coredump decrypt with the VM's KEK gives an ELF core
# that holds it; another KEK is refused; a powered-off VM has no memory to
# dump.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/system/system_lib.sh"
CU=$VMSEAL_BUILD/crypto-util/vmseal-crypto-util

R=ram$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
MARK="VMSEAL-RAM:$(printf %s "$R" | rev)"   # the guest keeps R reversed: only in its RAM

base_stack
expect_rc 0 vmseal vm create dump1 --host esx1 --encrypt --memory 128 \
  --kernel vmlinuz --initrd initrd.gz --append "console=ttyS0 quiet vmseal.ram=$R vmseal.wait=1"
H=$(stack_vm_home esx1 dump1)
expect_rc 1 vmseal vm dump dump1
ok "a powered-off VM cannot be dumped"

expect_rc 0 vmseal vm start dump1
stack_until 300 stack_vm_console_has dump1 '^VMSEAL-READY' || fail "guest did not come up"
stack_vm_console_has dump1 '^VMSEAL-RAM-SET' || fail "guest did not set its RAM marker"
expect_rc 0 vmseal --json vm dump dump1
f=$(jq -r .file <<<"$OUT")
[ "$(jq -r .sealed <<<"$OUT")" = true ] || fail "the dump of an encrypted VM is not sealed"
case "$f" in vmcore-*.vmsealed) ;; *) fail "dump file name $f" ;; esac
[ -f "$H/$f" ] || fail "no $f in the VM home"
[ "$(stat -c %a "$H/$f")" = 600 ] || fail "$f is not mode 0600"
[ "$(head -c 8 "$H/$f")" = VMSEALSF ] || fail "$f is not a sealed file"
ls -a "$H" | grep -q '\.part$' && fail "temporary dump file left"
if grep -a -q "$MARK" "$H/$f"; then fail "the RAM marker is in clear in the sealed dump"; fi
if grep -a -q -r "$MARK" "$H"; then fail "the RAM marker is in clear in the VM home"; fi
[ "$(stat -c %s "$H/$f")" -gt $((100 << 20)) ] || fail "the dump is smaller than the guest's memory"
stack_vm_console_has dump1 '^VMSEAL-READY' || fail "guest gone after the dump"
[ "$(stack_vm_field dump1 .runtime.power_state)" = on ] || fail "the VM is not running after the dump"
ok "vmseal vm dump: a sealed file in the VM home, no RAM marker in clear, the guest runs on"

kek=$(vmseal --json vm info dump1 | jq -r .kek_id)
stack_kmip kms1 get "$kek" --reveal-to-fd 3 3>"$TMP/kek" >/dev/null
chmod 600 "$TMP/kek"
[ "$(stat -c %s "$TMP/kek")" = 32 ] || fail "KEK from the KMS"
expect_rc 0 "$CU" coredump decrypt --kek-file "$TMP/kek" --quiet "$H/$f" "$TMP/core"
[ "$(head -c 4 "$TMP/core" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] || fail "the decrypted dump is not ELF"
grep -a -q "$MARK" "$TMP/core" || fail "the guest's RAM marker is not in the decrypted dump"
ok "coredump decrypt with the VM's KEK: an ELF core holding the guest's RAM marker"

head -c 32 /dev/urandom > "$TMP/other"; chmod 600 "$TMP/other"
expect_rc 2 "$CU" coredump decrypt --kek-file "$TMP/other" --quiet "$H/$f" "$TMP/core2"
[ ! -e "$TMP/core2" ] || fail "output left after a refused decrypt"
ok "another KEK is refused"

expect_rc 0 vmseal vm stop dump1
finish
