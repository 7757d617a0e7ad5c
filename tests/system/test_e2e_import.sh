#!/usr/bin/env bash
# End to end, bringing a real disk image: a BIOS-bootable qcow2 made here
# (tests/guest/build-boot-disk.sh: syslinux, kernel and initramfs on a FAT
# partition, an ext4 root file system holding a marker) is imported
# encrypted by `vmseal vm create --disk-from`, and the VM boots from that
# disk itself (no -kernel): the guest prints the marker it reads from its
# root file system, which is nowhere in clear on the datastore. Then a data
# disk imported with `vmseal vm disk add --from` while the host agent is
# killed (SIGKILL) part-way: restarted, it finishes the import by itself and
# the guest reads the data. Abuse: sources outside the images folder, a
# symlink, an image with a backing file.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/system/system_lib.sh"
for c in syslinux mcopy mkfs.vfat mkfs.ext4; do
  command -v $c >/dev/null || fail "$c is not installed (scripts/deps: syslinux mtools dosfstools)"
done

base_stack
IMG=$STACK_DIR/esx1/images
marker=rootfs-$RANDOM$RANDOM
"$VMSEAL_SRC/tests/guest/build-boot-disk.sh" "$IMG/debian-like.qcow2" "$marker" || fail "building the boot disk"
ok "a bootable qcow2 with an ext4 root file system holding $marker"

expect_rc 0 vmseal vm create imp1 --host esx1 --encrypt --memory 256 --disk-from debian-like.qcow2
grep -q 'importing\|imported\|created' <<<"$OUT" || { echo "$OUT" >&2; fail "vm create output"; }
H=$(stack_vm_home esx1 imp1)
cryptsetup isLuks --type luks1 "$H/disk0.luks" || fail "disk0.luks is not LUKS1"
grep -q '^op = \|^disk0.from' "$H/vm.conf" && fail "the import left its operation in vm.conf"
for f in "$H"/* "$STACK_DIR/esx1/hostd.log"; do
  if grep -a -q "$marker" "$f"; then fail "the marker is in clear in $f"; fi
done
ok "vm create --disk-from: disk0 is LUKS1, the marker is nowhere in clear on the datastore"

out=$(stack_vm_boot esx1 imp1 300) || fail "boot of imp1 from its disk"
grep -q "^VMSEAL-ROOTFS-MARKER $marker\$" <<<"$out" || { echo "$out" >&2; fail "the guest did not read its root file system"; }
grep -q '^VMSEAL-ROOTFS-ROOT .*BOOT_IMAGE=vmlinuz' <<<"$out" || { echo "$out" >&2; fail "not booted by the disk's own boot loader"; }
ok "the VM boots from the encrypted disk (its own boot loader) and prints the marker of its root file system"

# --- abuse: only names in the images folder, no symlink, nothing that names other files
ln -s /etc/passwd "$IMG/evil.raw"
qemu-img create -q -f qcow2 -b debian-like.qcow2 -F qcow2 "$IMG/overlay.qcow2"
for src in /etc/passwd ../../manager/admin-password evil.raw overlay.qcow2 missing.qcow2; do
  expect_rc 2 vmseal vm disk add imp1 --from "$src"   # 400: a bad request
  grep -qi 'images folder\|backing file' <<<"$OUT" || { echo "$OUT" >&2; fail "refusal of $src does not say why"; }
done
[ "$(grep -c '^disk[0-9]*.file' "$H/vm.conf")" = 1 ] || fail "a refused source left a disk in vm.conf"
ok "refused: an absolute path, a path leading out, a symlink, a qcow2 with a backing file, a missing image"

# --- a data disk imported while the host agent is killed part-way
qemu-img create -q -f qcow2 "$IMG/data.qcow2" 320M
head -c 4M /dev/urandom > "$TMP/slice"
qemu-io -f qcow2 -c "write -P 0x11 0 60M" -c "write -P 0x22 64M 60M" -c "write -P 0x33 128M 60M" \
  -c "write -P 0x44 260M 60M" "$IMG/data.qcow2" >/dev/null
qemu-io -f qcow2 -c "write -s $TMP/slice 200M 4M" "$IMG/data.qcow2" >/dev/null
want=$(md5sum < "$TMP/slice" | cut -d' ' -f1)
expect_rc 0 vmseal --json vm disk add imp1 --from data.qcow2 --no-wait
for ((i = 0; i < 600; i++)); do
  [ -e "$H/disk1.luks.partial.ckpt" ] && break
  sleep 0.05
done
kill -KILL "${STACK_PID[esx1]}"
wait "${STACK_PID[esx1]}" 2>/dev/null || true
unset 'STACK_PID[esx1]'
if [ -e "$H/disk1.luks" ]; then
  echo "# the import had finished before the kill"
else
  [ -e "$H/disk1.luks.partial" ] || fail "no partial import after the kill"
  grep -q '^op = create' "$H/vm.conf" && grep -q '^disk1.from = data.qcow2' "$H/vm.conf" ||
    fail "vm.conf does not record the unfinished import"
  ok "host agent killed during the import of disk1 (partial image and checkpoint left)"
fi
stack_hostd_start esx1
stack_until 90 sh -c "! grep -q '^op = ' '$H/vm.conf'" ||
  { tail -n 30 "$STACK_DIR/esx1/hostd.log" >&2; fail "the interrupted import was not finished"; }
cryptsetup isLuks --type luks1 "$H/disk1.luks" || fail "disk1.luks is not LUKS1"
[ ! -e "$H/disk1.luks.partial" ] || fail "partial image left behind"
out=$(stack_vm_boot esx1 imp1 300) || fail "boot of imp1 with two disks"
grep -q "^VMSEAL-ROOTFS-MARKER $marker\$" <<<"$out" || { echo "$out" >&2; fail "root file system after the import"; }
grep -q "^VMSEAL-VDB-MD5 $want" <<<"$out" || { echo "$out" >&2; fail "the guest does not read disk1's data"; }
grep -a 'disk1\|resum' "$STACK_DIR/esx1/hostd.log" | tail -n 3 | sed 's/^/# /'
ok "restarted, the host agent finished the import by itself; the guest reads disk1's data"

expect_rc 0 vmseal vm disk add imp1 --size 8
cryptsetup isLuks --type luks1 "$H/disk2.luks" || fail "disk2.luks is not LUKS1"
[ "$(jq '.runtime.disks | length' <<<"$(stack_vm_json imp1)")" = 3 ] || fail "imp1 does not show 3 disks"
ok "vm disk add --size: an empty encrypted disk"
finish
