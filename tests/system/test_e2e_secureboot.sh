#!/usr/bin/env bash
# End to end: UEFI Secure Boot (firmware uefi-secure: q35 with SMM, Debian's
# OVMF with Microsoft's keys enrolled). An unsigned EFI binary (the cloud
# kernel's EFI stub, signature removed) on an ESP is refused by the firmware
# ("Access Denied"), while the same disk boots it in a VM without Secure
# Boot. An encrypted Secure Boot VM keeps its variable store as LUKS1.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/system/system_lib.sh"
for f in OVMF_CODE_4M.ms.fd OVMF_VARS_4M.ms.fd OVMF_CODE_4M.fd; do
  [ -r /usr/share/OVMF/$f ] || fail "OVMF is not installed (scripts/deps: ovmf)"
done
command -v mformat >/dev/null && command -v mcopy >/dev/null || fail "mtools is not installed (scripts/deps: mtools)"

# An ESP: MBR with one EFI system partition at 1 MiB, FAT, \EFI\BOOT\BOOTX64.EFI
kernel=$(ls -1 /boot/vmlinuz-*-cloud-amd64 | sort -V | tail -n1)
cp "$kernel" "$TMP/boot.efi"
if command -v sbattach >/dev/null; then sbattach --remove "$TMP/boot.efi" >/dev/null 2>&1 || true; fi
if command -v sbverify >/dev/null && sbverify --list "$TMP/boot.efi" 2>/dev/null | grep -q 'signature 1'; then
  fail "the EFI binary is still signed"
fi
truncate -s 64M "$TMP/esp.img"
$PY - "$TMP/esp.img" <<'PY'
import struct, sys
total = 64 * 1024 * 1024 // 512
mbr = bytearray(512)
mbr[446:462] = struct.pack('<B3sB3sII', 0, b'\x00\x02\x00', 0xEF, b'\xff\xff\xff', 2048, total - 2048)
mbr[510:512] = b'\x55\xaa'
with open(sys.argv[1], 'r+b') as f:
    f.write(mbr)
PY
mformat -i "$TMP/esp.img@@1M" -F :: && mmd -i "$TMP/esp.img@@1M" ::/EFI ::/EFI/BOOT &&
  mcopy -i "$TMP/esp.img@@1M" "$TMP/boot.efi" ::/EFI/BOOT/BOOTX64.EFI || fail "making the ESP"

base_stack
expect_rc 0 vmseal vm create sb1 --host esx1 --no-encrypt --firmware uefi-secure --disk 64
expect_rc 0 vmseal vm create uefi1 --host esx1 --no-encrypt --firmware uefi --disk 64
expect_rc 2 vmseal vm create bad1 --host esx1 --no-encrypt --firmware bios --disk 8 --tpm
for v in sb1 uefi1; do
  H=$(stack_vm_home esx1 $v)
  dd if="$TMP/esp.img" of="$H/disk0.img" conv=notrunc status=none || fail "ESP onto $v"
done
grep -q '^secure_boot = 1$' "$(stack_vm_home esx1 sb1)/vm.conf" || fail "vm.conf of sb1 has no secure_boot = 1"
grep -q '^secure_boot' "$(stack_vm_home esx1 uefi1)/vm.conf" && fail "uefi1 has secure_boot"
cmp -s "$(stack_vm_home esx1 sb1)/nvram.fd" /usr/share/OVMF/OVMF_VARS_4M.ms.fd ||
  fail "sb1's variable store is not the one with Microsoft's keys"
[ "$(stack_vm_field sb1 .runtime.secure_boot)" = true ] || fail "the host does not report Secure Boot"
ok "a Secure Boot VM: secure_boot = 1, variables with Microsoft's keys enrolled"

expect_rc 0 vmseal vm start sb1
expect_rc 0 vmseal vm start uefi1
stack_until 300 stack_vm_console_has sb1 'BdsDxe: (failed to load|starting) Boot0001' || fail "sb1: no boot attempt"
stack_until 300 stack_vm_console_has uefi1 'BdsDxe: (failed to load|starting) Boot0001' || fail "uefi1: no boot attempt"
stack_vm_console_has sb1 'BdsDxe: failed to load Boot0001 .*Access Denied' ||
  { stack_vm_console sb1 | tr -d '\r' | tail -n 5 >&2; fail "Secure Boot did not refuse the unsigned binary"; }
stack_vm_console_has sb1 'starting Boot0001' && fail "Secure Boot started the unsigned binary"
stack_vm_console_has uefi1 'BdsDxe: starting Boot0001' ||
  { stack_vm_console uefi1 | tr -d '\r' | tail -n 5 >&2; fail "without Secure Boot the binary did not start"; }
stack_vm_console_has uefi1 'Access Denied' && fail "uefi1 refused the binary"
ok "the unsigned EFI binary is refused with Secure Boot (Access Denied) and started without it"
expect_rc 0 vmseal vm stop sb1
expect_rc 0 vmseal vm stop uefi1

expect_rc 0 vmseal vm create sbenc --host esx1 --encrypt --firmware uefi-secure --disk 8
H=$(stack_vm_home esx1 sbenc)
cryptsetup isLuks --type luks1 "$H/nvram.luks" || fail "the encrypted VM's variable store is not LUKS1"
expect_rc 0 vmseal vm start sbenc
stack_until 300 stack_vm_console_has sbenc 'BdsDxe' || fail "sbenc: the firmware did not run"
expect_rc 0 vmseal vm stop sbenc
ok "an encrypted Secure Boot VM: the variable store is LUKS1, the firmware runs from it"
finish
