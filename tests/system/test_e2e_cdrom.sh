#!/usr/bin/env bash
# End to end: the CD-ROM drive and the boot order. ISOs made here
# (genisoimage) with a marker file sit in the host's images folder; `vmseal
# vm cdrom --iso` puts one in a powered-off VM's drive and the guest mounts
# /dev/sr0 and reads the marker; another is put into the running VM (QMP
# add-fd + blockdev-change-medium) and the guest finds it; names leading out
# of the images folder, absolute paths and symlinks are refused; --eject
# leaves no drive. `vmseal vm set --boot` orders disk0 and the drive in
# QEMU's boot list (the guest reads fw_cfg bootorder), and is a
# cryptographic setting on an encrypted VM.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/system/system_lib.sh"

base_stack
printf 'bobpassword1\n' > "$TMP/bobpw"
expect_rc 0 vmseal user add bob --role NoCryptoAdmin --password-file "$TMP/bobpw"
bob() { XDG_CONFIG_HOME=$TMP/bob "$STACK_CLI" "$@"; }
bob --url "$STACK_URL" --ca "$STACK_CA" login bob --password-file "$TMP/bobpw" >/dev/null || fail "bob login"
# --- vm cdrom: ISOs of the images folder, read-only, at power-on and into the running VM
command -v genisoimage >/dev/null || fail "genisoimage is not installed (scripts/deps)"
IMG=$STACK_DIR/esx1/images
for m in one two; do
  mkdir -p "$TMP/iso-$m"; echo "cdmark-$m" > "$TMP/iso-$m/marker.txt"
  genisoimage -quiet -r -V "VMSEAL-$m" -o "$IMG/$m.iso" "$TMP/iso-$m" || fail "genisoimage"
done
expect_rc 0 vmseal vm create cd1 --host esx1 --no-encrypt --disk 8 --kernel vmlinuz --initrd initrd.gz \
  --append "console=ttyS0 quiet vmseal.cdrom=cdmark-one"
expect_rc 0 vmseal vm cdrom cd1 --iso one.iso
[ "$(sed -n 's/^cdrom = //p' "$(stack_vm_home esx1 cd1)/vm.conf")" = one.iso ] || fail "vm.conf has no cdrom = one.iso"
out=$(stack_vm_boot esx1 cd1 300) || fail "boot of cd1 with one.iso"
grep -q '^VMSEAL-CDROM cdmark-one$' <<<"$out" || { echo "$out" >&2; fail "the guest does not read one.iso"; }
ok "vm cdrom --iso: the guest mounts /dev/sr0 and reads the ISO's marker"

expect_rc 0 vmseal vm set cd1 --append "console=ttyS0 quiet vmseal.cdrom=cdmark-two"
off=$(stack_vm_console_bytes cd1)
expect_rc 0 vmseal vm start cd1
stack_until 120 sh -c "'$STACK_CLI' --json vm log cd1 --tail 65536 | grep -q 'VMSEAL-DISK vda'" || fail "cd1 did not come up"
expect_rc 0 vmseal vm cdrom cd1 --iso two.iso
stack_vm_wait_off cd1 240 || { stack_vm_console cd1 "$off" | tail -n 20 >&2; fail "cd1 did not finish"; }
stack_vm_console cd1 "$off" | grep -aq '^VMSEAL-CDROM cdmark-two' ||
  { stack_vm_console cd1 "$off" | tail -n 20 >&2; fail "the running guest did not read two.iso"; }
[ "$(sed -n 's/^cdrom = //p' "$(stack_vm_home esx1 cd1)/vm.conf")" = two.iso ] || fail "vm.conf does not say two.iso"
ok "vm cdrom --iso into the running VM (QMP blockdev-change-medium with an fdset): the guest reads the new disc"

ln -s /etc/passwd "$IMG/evil.iso"
mkdir -p "$TMP/outside"; genisoimage -quiet -r -o "$TMP/outside/x.iso" "$TMP/iso-one"
for src in ../../manager/admin-password /etc/passwd "$TMP/outside/x.iso" evil.iso ../images/one.iso missing.iso; do
  expect_rc 2 vmseal vm cdrom cd1 --iso "$src"
  grep -qi 'images folder' <<<"$OUT" || { echo "$OUT" >&2; fail "refusal of $src does not say why"; }
done
[ "$(sed -n 's/^cdrom = //p' "$(stack_vm_home esx1 cd1)/vm.conf")" = two.iso ] || fail "a refused ISO changed vm.conf"
ok "refused: ISO names leading out of the images folder, absolute, a symlink, a missing one"

expect_rc 0 vmseal vm cdrom cd1 --eject
grep -q '^cdrom' "$(stack_vm_home esx1 cd1)/vm.conf" && fail "cdrom still in vm.conf after eject"
expect_rc 0 vmseal vm set cd1 --append "console=ttyS0 quiet vmseal.cdrom=cdmark-one vmseal.cdwait=5"
out=$(stack_vm_boot esx1 cd1 300) || fail "boot of cd1 without a disc"
grep -q '^VMSEAL-CDROM-FAIL' <<<"$out" || { echo "$out" >&2; fail "the guest still finds a disc after eject"; }
ok "vm cdrom --eject: no drive, no disc"

# --- boot order: bootindex of disk0, the CD-ROM drive and NIC0 (QEMU's fw_cfg bootorder)
expect_rc 0 vmseal vm cdrom cd1 --iso one.iso
expect_rc 0 vmseal vm set cd1 --boot cdrom,disk
[ "$(sed -n 's/^boot = //p' "$(stack_vm_home esx1 cd1)/vm.conf")" = cdrom,disk ] || fail "vm.conf boot"
expect_rc 0 vmseal vm set cd1 --append "console=ttyS0 quiet vmseal.bootorder=1"
out=$(stack_vm_boot esx1 cd1 300) || fail "boot of cd1 (boot order)"
bo=$(sed -n 's/^VMSEAL-BOOTORDER //p' <<<"$out")
cdpos=$(tr ' ' '\n' <<<"$bo" | grep -n 'scsi@7' | head -n1 | cut -d: -f1)
dkpos=$(tr ' ' '\n' <<<"$bo" | grep -n '@10' | head -n1 | cut -d: -f1)
[ -n "$cdpos" ] && [ -n "$dkpos" ] && [ "$cdpos" -lt "$dkpos" ] || { echo "$out" >&2; fail "boot order cdrom,disk not in fw_cfg: $bo"; }
expect_rc 0 vmseal vm set cd1 --boot disk,cdrom
out=$(stack_vm_boot esx1 cd1 300) || fail "boot of cd1 (boot order 2)"
bo=$(sed -n 's/^VMSEAL-BOOTORDER //p' <<<"$out")
cdpos=$(tr ' ' '\n' <<<"$bo" | grep -n 'scsi@7' | head -n1 | cut -d: -f1)
dkpos=$(tr ' ' '\n' <<<"$bo" | grep -n '@10' | head -n1 | cut -d: -f1)
[ -n "$cdpos" ] && [ -n "$dkpos" ] && [ "$dkpos" -lt "$cdpos" ] || { echo "$out" >&2; fail "boot order disk,cdrom not in fw_cfg: $bo"; }
expect_rc 2 vmseal vm set cd1 --boot floppy
expect_rc 2 vmseal vm set cd1 --boot disk,disk
# on an encrypted VM the boot order is a cryptographic setting
expect_rc 0 vmseal vm create enc1 --host esx1 --encrypt --disk 8 --kernel vmlinuz --initrd initrd.gz
rc=0; OUT=$(bob vm set enc1 --boot cdrom,disk 2>&1) || rc=$?
[ $rc -eq 5 ] && grep -q 'Cryptographer.Encrypt' <<<"$OUT" || fail "bob set the boot order of an encrypted VM: $rc $OUT"
ok "vm set --boot: QEMU's boot order follows (cdrom,disk then disk,cdrom); bad orders refused; encrypted VMs need Cryptographer.Encrypt"

finish
