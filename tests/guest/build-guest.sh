#!/usr/bin/env bash
# Build the small Linux test guest: the Debian cloud kernel plus a busybox
# initramfs whose /init acts on kernel command-line parameters.
#
#   build-guest.sh [OUTDIR]        (default: $VMSEAL_BUILD/guest or ./build/guest)
#
# Prints the directory holding `vmlinuz` and `initrd.gz` (cached per kernel
# version and per content of this script; rebuilt when either changes).
# Needs: linux-image-cloud-amd64, busybox-static, cpio, gzip. No root needed.
#
# Guest command line (append):
#   vmseal.marker=STR   write the block "VMSEAL-MARKER:STR:<disk>" at byte
#                       offset 1 MiB of every virtio disk, sync, print
#                       VMSEAL-MARKER-WRITTEN <disk>
#   vmseal.check=STR    read that block back from every virtio disk and print
#                       VMSEAL-CHECK-OK or VMSEAL-CHECK-FAIL <disk>
#   vmseal.wait=1       after the actions stay up (prints VMSEAL-READY) until
#                       the ACPI power button (system_powerdown) is pressed;
#                       default: power off at once after the actions
# STR may hold only [A-Za-z0-9._-]. Output goes to the first serial port.
set -euo pipefail

die() { echo "build-guest: $*" >&2; exit 1; }

out_root=${1:-${VMSEAL_BUILD:-$PWD/build}/guest}
kernel=$(ls -1 /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n1 || true)
[ -n "$kernel" ] || die "no /boot/vmlinuz-*-cloud-amd64 (apt-get install linux-image-cloud-amd64)"
[ -r "$kernel" ] || die "$kernel is not readable"
kver=${kernel#/boot/vmlinuz-}
moddir=/lib/modules/$kver
[ -f "$moddir/modules.dep" ] || die "$moddir/modules.dep missing"
bb=$(command -v busybox || true)
[ -n "$bb" ] && file -L "$bb" 2>/dev/null | grep -q 'statically linked' \
  || bb=/bin/busybox
[ -x "$bb" ] || die "busybox-static is not installed"
command -v cpio >/dev/null || die "cpio is not installed"

self_hash=$(sha256sum "$0" | cut -c1-16)
out=$out_root/$kver
stamp="$kver $self_hash $(stat -c %Y "$kernel") $(stat -c %Y "$bb")"
if [ -f "$out/initrd.gz" ] && [ -f "$out/vmlinuz" ] && [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "$out"
  exit 0
fi

mkdir -p "$out_root"
work=$(mktemp -d "$out_root/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,run,etc/acpi/PWRF,lib/modules,var/log,var/run}

# busybox and its applet links
cp "$bb" "$root/bin/busybox"
for a in $("$root/bin/busybox" --list); do
  [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"
done

# Kernel modules, dependencies first (from modules.dep), decompressed.
wanted=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk evdev button)
declare -A path_of=() loaded=()
while IFS= read -r line; do
  f=${line%%:*}
  n=${f##*/}; n=${n%%.ko*}; n=${n//-/_}
  path_of[$n]=$line
done < "$moddir/modules.dep"
order=()
add_mod() {  # name
  local n=${1//-/_} line f deps d
  [ -n "${loaded[$n]:-}" ] && return 0
  if [ -z "${path_of[$n]:-}" ]; then
    grep -q "/${1}.ko" "$moddir/modules.builtin" 2>/dev/null && return 0   # built in
    die "module $1 neither in modules.dep nor built in for $kver"
  fi
  line=${path_of[$n]}
  f=${line%%:*}; deps=${line#*:}
  for d in $deps; do
    d=${d##*/}; add_mod "${d%%.ko*}"
  done
  loaded[$n]=1
  case "$f" in
    *.ko) cp "$moddir/$f" "$root/lib/modules/$n.ko" ;;
    *.ko.xz) xz -dc "$moddir/$f" > "$root/lib/modules/$n.ko" ;;
    *.ko.zst) zstd -qdc "$moddir/$f" > "$root/lib/modules/$n.ko" ;;
    *.ko.gz) gzip -dc "$moddir/$f" > "$root/lib/modules/$n.ko" ;;
    *) die "unknown module format $f" ;;
  esac
  order+=("$n")
}
for m in "${wanted[@]}"; do add_mod "$m"; done
printf '%s\n' "${order[@]}" > "$root/etc/modules.order"

# ACPI power button -> immediate power off (busybox acpid maps KEY_POWER
# to the action PWRF/00000080 relative to its config dir).
cat > "$root/etc/acpi/PWRF/00000080" <<'SH'
#!/bin/sh
echo "VMSEAL-POWER-BUTTON" > /dev/console
sync
poweroff -f
SH
chmod 755 "$root/etc/acpi/PWRF/00000080"

cat > "$root/init" <<'SH'
#!/bin/sh
# vmseal test guest init (busybox). See tests/guest/build-guest.sh.
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
echo "VMSEAL-GUEST-BOOT $(uname -r)"
for m in $(cat /etc/modules.order); do
  insmod /lib/modules/$m.ko 2>/dev/null || echo "vmseal-guest: insmod $m failed"
done

marker= check= wait=0
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    vmseal.marker=*) marker=${arg#vmseal.marker=} ;;
    vmseal.check=*) check=${arg#vmseal.check=} ;;
    vmseal.wait=*) wait=${arg#vmseal.wait=} ;;
  esac
done
valid() { case "$1" in *[!A-Za-z0-9._-]*) return 1 ;; esac; return 0; }

# wait up to 10 s for the virtio disks to appear
disks=
i=0
while [ $i -lt 100 ]; do
  disks=$(cd /sys/block && ls -d vd* 2>/dev/null || true)
  [ -n "$disks" ] && break
  [ -n "$marker$check" ] || break
  usleep 100000; i=$((i + 1))
done
for d in $disks; do
  echo "VMSEAL-DISK $d $(cat /sys/block/$d/size) sectors"
done

if [ -n "$marker" ]; then
  if ! valid "$marker" || [ -z "$disks" ]; then
    echo "VMSEAL-MARKER-FAIL invalid marker or no disk"
  else
    for d in $disks; do
      if printf 'VMSEAL-MARKER:%s:%s\n' "$marker" "$d" |
         dd of=/dev/$d bs=512 seek=2048 count=1 conv=sync,notrunc,fsync 2>/dev/null; then
        echo "VMSEAL-MARKER-WRITTEN $d"
      else
        echo "VMSEAL-MARKER-FAIL $d"
      fi
    done
    sync
  fi
fi

if [ -n "$check" ]; then
  result=OK
  if ! valid "$check" || [ -z "$disks" ]; then
    result=FAIL
  fi
  for d in $disks; do
    echo 3 > /proc/sys/vm/drop_caches
    got=$(dd if=/dev/$d bs=512 skip=2048 count=1 2>/dev/null | head -n1 | tr -d '\0')
    if [ "$got" = "VMSEAL-MARKER:$check:$d" ]; then
      echo "VMSEAL-CHECK-DISK-OK $d"
    else
      echo "VMSEAL-CHECK-DISK-FAIL $d"
      result=FAIL
    fi
  done
  echo "VMSEAL-CHECK-$result"
fi

# vTPM (vmseal.tpmnv=write:STR of 16 chars | read): raw TPM 2.0 commands on
# /dev/tpm0 (password session, empty auth) on NV index 0x01500016.
tpmnv= ram=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    vmseal.tpmnv=*) tpmnv=${arg#vmseal.tpmnv=} ;;
    vmseal.ram=*) ram=${arg#vmseal.ram=} ;;
  esac
done
tpm_cmd() {  # printf format, args -> the response in hex on stdout
  fmt=$1; shift
  printf "$fmt" "$@" > /tmp/tpmcmd
  exec 3<>/dev/tpm0 || return 1
  dd if=/tmp/tpmcmd bs=4096 count=1 2>/dev/null >&3
  dd bs=4096 count=1 2>/dev/null <&3 > /tmp/tpmresp
  exec 3<&-
  od -An -tx1 -v /tmp/tpmresp | tr -d ' \n'
}
if [ -n "$tpmnv" ]; then
  i=0
  while [ ! -c /dev/tpm0 ] && [ $i -lt 50 ]; do usleep 100000; i=$((i + 1)); done
  if [ -c /dev/tpm0 ]; then echo "VMSEAL-TPM-PRESENT"; else echo "VMSEAL-TPM-ABSENT"; fi
  case "$tpmnv" in
    write:????????????????)
      v=${tpmnv#write:}
      r=$(tpm_cmd '\x80\x02\x00\x00\x00\x2d\x00\x00\x01\x2a\x40\x00\x00\x01\x00\x00\x00\x09\x40\x00\x00\x09\x00\x00\x00\x00\x00\x00\x00\x00\x0e\x01\x50\x00\x16\x00\x0b\x00\x04\x00\x04\x00\x00\x00\x10')
      echo "VMSEAL-TPMNV-DEFINE ${r:12:8}"
      r=$(tpm_cmd '\x80\x02\x00\x00\x00\x33\x00\x00\x01\x37\x01\x50\x00\x16\x01\x50\x00\x16\x00\x00\x00\x09\x40\x00\x00\x09\x00\x00\x00\x00\x00\x00\x10%s\x00\x00' "$v")
      echo "VMSEAL-TPMNV-WRITE ${r:12:8}" ;;
    read)
      r=$(tpm_cmd '\x80\x02\x00\x00\x00\x23\x00\x00\x01\x4e\x01\x50\x00\x16\x01\x50\x00\x16\x00\x00\x00\x09\x40\x00\x00\x09\x00\x00\x00\x00\x00\x00\x10\x00\x00')
      echo "VMSEAL-TPMNV-READ ${r:12:8} ${r:32:32}" ;;
  esac
fi
# vmseal.ram=STR: STR reversed stays in this shell's memory (a marker in
# guest RAM that is nowhere else: for memory dumps)
if [ -n "$ram" ] && valid "$ram"; then
  ram_marker="VMSEAL-RAM:$(echo "$ram" | rev)"
  echo "VMSEAL-RAM-SET"
fi

if [ "$wait" = 1 ]; then
  acpid -c /etc/acpi -l /var/log/acpid.log
  echo "VMSEAL-READY"
  while :; do sleep 3600; done
fi
echo "VMSEAL-POWEROFF"
sync
poweroff -f
SH
chmod 755 "$root/init"

(cd "$root" && find . -print0 | LC_ALL=C sort -z |
   cpio --null --quiet -o -H newc -R 0:0) | gzip -9n > "$work/initrd.gz"
cp "$kernel" "$work/vmlinuz"
mkdir -p "$out"
mv -f "$work/initrd.gz" "$out/initrd.gz"
mv -f "$work/vmlinuz" "$out/vmlinuz"
echo "$stamp" > "$out/stamp"
echo "$out"
