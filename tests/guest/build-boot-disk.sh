#!/usr/bin/env bash
# Build a small BIOS-bootable disk image, the way a distribution image is
# laid out (no -kernel: the firmware boots it from its own disk):
#
#   build-boot-disk.sh OUT.qcow2 MARKER
#
#   partition 1 (FAT16, active): syslinux (installed with mtools, no mount),
#       the Debian cloud kernel and an initramfs: the busybox initramfs of
#       build-guest.sh with one more archive on top whose /init loads the
#       virtio modules, mounts /dev/vda2 and switch_roots into it
#   partition 2 (ext4, made with mkfs.ext4 -d): a busybox userland whose
#       /sbin/init prints "VMSEAL-ROOTFS-MARKER <the content of
#       /etc/vmseal-marker>" on the serial console (and, when there is a
#       second disk, "VMSEAL-VDB-MD5 <md5 of its 4 MiB at 200 MiB>") and
#       powers off
#   MBR: syslinux's mbr.bin, the partition table written here.
#
# MARKER may hold only [A-Za-z0-9._-]. Needs: build-guest.sh's packages,
# syslinux, syslinux-common, mtools, dosfstools, e2fsprogs, qemu-utils,
# python3. No root, no loop device.
set -euo pipefail
die() { echo "build-boot-disk: $*" >&2; exit 1; }
[ $# -eq 2 ] || die "usage: build-boot-disk.sh OUT.qcow2 MARKER"
out=$1 marker=$2
case "$marker" in *[!A-Za-z0-9._-]*|'') die "bad marker" ;; esac
here=$(cd "$(dirname "$0")" && pwd)
guest=$("$here/build-guest.sh")
for f in /usr/lib/syslinux/mbr/mbr.bin; do [ -r "$f" ] || die "$f missing (syslinux-common)"; done
command -v syslinux >/dev/null || die "syslinux is not installed"
command -v mcopy >/dev/null || die "mtools is not installed"
command -v mkfs.vfat >/dev/null || die "dosfstools is not installed"

work=$(mktemp -d "${TMPDIR:-/tmp}/vmseal-bootdisk.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- the initramfs: build-guest's, plus an archive with the switching /init
mkdir -p "$work/initx"
cat > "$work/initx/init" <<'SH'
#!/bin/sh
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
echo "VMSEAL-INITRAMFS $(uname -r)"
for m in $(cat /etc/modules.order); do insmod /lib/modules/$m.ko 2>/dev/null; done
i=0
while [ ! -b /dev/vda2 ] && [ $i -lt 200 ]; do usleep 100000; i=$((i + 1)); done
mkdir -p /newroot
if mount -t ext4 -o ro /dev/vda2 /newroot; then
  umount /proc /sys
  mount --move /dev /newroot/dev
  exec switch_root /newroot /sbin/init
fi
echo "VMSEAL-ROOTFS-MOUNT-FAILED"
poweroff -f
SH
chmod 755 "$work/initx/init"
(cd "$work/initx" && echo init | cpio --quiet -o -H newc -R 0:0) | gzip -9n > "$work/top.gz"
cat "$guest/initrd.gz" "$work/top.gz" > "$work/initrd.gz"

# --- the root file system
root=$work/root
mkdir -p "$root"/{bin,sbin,dev,proc,sys,etc,tmp}
cp /bin/busybox "$root/bin/busybox"
file -L "$root/bin/busybox" 2>/dev/null | grep -q 'statically linked' || die "busybox is not static"
for a in sh cat echo mount poweroff sync uname dd md5sum; do ln -s busybox "$root/bin/$a"; done
printf '%s\n' "$marker" > "$root/etc/vmseal-marker"
cat > "$root/sbin/init" <<'SH'
#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
echo "VMSEAL-ROOTFS-MARKER $(cat /etc/vmseal-marker)"
echo "VMSEAL-ROOTFS-ROOT $(cat /proc/cmdline)"
# a second disk: the MD5 of its 4 MiB at offset 200 MiB (tests/system/test_e2e_import.sh)
if [ -b /dev/vdb ]; then
  echo "VMSEAL-VDB-MD5 $(dd if=/dev/vdb bs=1M skip=200 count=4 2>/dev/null | md5sum)"
fi
echo "VMSEAL-POWEROFF"
sync
poweroff -f
SH
chmod 755 "$root/sbin/init"
mkfs.ext4 -q -F -d "$root" -L vmsealroot "$work/root.img" 16M

# --- the boot partition (FAT16, 24 MiB)
mkfs.vfat -n VMSEALBOOT -C "$work/boot.img" 24576 >/dev/null
cat > "$work/syslinux.cfg" <<'CFG'
SERIAL 0 115200
DEFAULT linux
TIMEOUT 0
PROMPT 0
LABEL linux
  KERNEL vmlinuz
  INITRD initrd.gz
  APPEND console=ttyS0 panic=-1 root=/dev/vda2 quiet
CFG
export MTOOLS_SKIP_CHECK=1
mcopy -i "$work/boot.img" "$guest/vmlinuz" ::vmlinuz
mcopy -i "$work/boot.img" "$work/initrd.gz" ::initrd.gz
mcopy -i "$work/boot.img" "$work/syslinux.cfg" ::syslinux.cfg
syslinux --install "$work/boot.img"

# --- the disk: 1 MiB gap, boot, root; MBR with two primary partitions
python3 - "$work/disk.raw" "$work/boot.img" "$work/root.img" <<'PY'
import os, struct, sys
disk, boot, root = sys.argv[1:4]
S = 512
b_off, b_len = 2048, os.path.getsize(boot) // S
r_off = b_off + b_len
r_len = os.path.getsize(root) // S
total = (r_off + r_len) * S
def entry(active, ptype, lba, n):
    # CHS fields unused (0xfe,0xff,0xff: "use LBA")
    return struct.pack("<B3sB3sII", 0x80 if active else 0, b"\xfe\xff\xff", ptype,
                       b"\xfe\xff\xff", lba, n)
with open(disk, "wb") as f:
    f.truncate(total)
    mbr = open("/usr/lib/syslinux/mbr/mbr.bin", "rb").read()[:440]
    f.write(mbr.ljust(440, b"\0"))
    f.seek(446)
    f.write(entry(True, 0x06, b_off, b_len) + entry(False, 0x83, r_off, r_len) + b"\0" * 32)
    f.write(b"\x55\xaa")
    for src, off in ((boot, b_off), (root, r_off)):
        f.seek(off * S)
        with open(src, "rb") as s:
            while True:
                chunk = s.read(1 << 20)
                if not chunk:
                    break
                f.write(chunk)
PY
qemu-img convert -q -f raw -O qcow2 "$work/disk.raw" "$out"
