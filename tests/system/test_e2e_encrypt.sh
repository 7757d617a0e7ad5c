#!/usr/bin/env bash
# End to end: encrypt an existing VM by applying the VM Encryption policy.
# A plain UEFI VM with two disks (NVRAM = OVMF variables) boots and writes
# markers; `vmseal vm encrypt` converts every disk and the NVRAM to LUKS1;
# the markers vanish from the files on the host, the guest still reads
# them, also after a deep rekey (every disk and the NVRAM get new data keys).
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/system/system_lib.sh"
[ -r /usr/share/OVMF/OVMF_CODE_4M.fd ] || fail "OVMF is not installed (scripts/deps: ovmf)"

base_stack
expect_rc 0 vmseal vm create uefi1 --host esx1 --firmware uefi --disk 16 --disk 8 \
  --kernel vmlinuz --initrd initrd.gz --append "console=ttyS0 quiet"
H=$(stack_vm_home esx1 uefi1)
[ -f "$H/disk0.img" ] && [ -f "$H/disk1.img" ] && [ -f "$H/nvram.fd" ] || { ls -l "$H" >&2; fail "plain VM files"; }
[ "$(vmseal --json vm info uefi1 | jq -r .encrypted)" = false ] || fail "uefi1 encrypted at creation"
expect_rc 0 vmseal vm set uefi1 --append "console=ttyS0 quiet vmseal.marker=encmark"
out=$(stack_vm_boot esx1 uefi1 300) || fail "boot (marker)"
grep -q '^VMSEAL-MARKER-WRITTEN vda' <<<"$out" && grep -q '^VMSEAL-MARKER-WRITTEN vdb' <<<"$out" ||
  { echo "$out" >&2; fail "markers on both disks"; }
grep -a -q 'VMSEAL-MARKER:encmark:vda' "$H/disk0.img" || fail "marker not in the plain disk0.img"
grep -a -q 'VMSEAL-MARKER:encmark:vdb' "$H/disk1.img" || fail "marker not in the plain disk1.img"
ok "plain UEFI VM with two disks wrote its markers (visible in the raw images)"

expect_rc 0 vmseal vm encrypt uefi1
[ "$(vmseal --json vm info uefi1 | jq -r .encrypted)" = true ] || fail "uefi1 not encrypted"
for f in disk0.luks disk1.luks nvram.luks; do
  cryptsetup isLuks --type luks1 "$H/$f" || fail "$f is not LUKS1"
done
for f in disk0.img disk1.img nvram.fd; do [ ! -e "$H/$f" ] || fail "$f left behind"; done
if grep -a -q 'VMSEAL-MARKER:encmark' "$H"/*.luks; then fail "marker visible after encrypt"; fi
grep -q "^[a-z0-9.]*keysafe = " "$H/vm.conf" || fail "no key safes in vm.conf"
boot_check esx1 uefi1 encmark
ok "vmseal vm encrypt: both disks and the NVRAM are LUKS1, markers gone from the files, the guest reads them"

mk() { local f; for f in disk0.luks disk1.luks nvram.luks; do cryptsetup luksDump "$H/$f" | grep -A1 'MK digest'; done; }
before=$(mk)
expect_rc 0 vmseal vm rekey uefi1 --deep
after=$(mk)
for i in 1 2 3; do
  [ "$(sed -n "$((2 * i - 1))p" <<<"$before")" != "$(sed -n "$((2 * i - 1))p" <<<"$after")" ] ||
    fail "deep rekey kept the data key of image $i"
done
boot_check esx1 uefi1 encmark
ok "deep rekey: new data keys for both disks and the NVRAM; the guest reads its markers"
finish
