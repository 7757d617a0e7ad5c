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
#   vmseal.mem=STR      keep "VMSEAL-MEM:STR" repeated in guest RAM (a file in
#                       the initramfs' tmpfs), vmseal.memmib=N MiB of it
#                       (default 1); prints VMSEAL-MEM-FILLED
#   vmseal.count=1      print "VMSEAL-COUNT N" (N = 1, 2, ...) every second,
#                       from a background loop, for as long as it runs
#   vmseal.net=dhcp     bring eth0 (virtio-net) up by DHCP (busybox udhcpc),
#                       print VMSEAL-NET-ADDR <address> or VMSEAL-NET-FAIL
#   vmseal.ip=A.B.C.D/N a static address on eth0 instead (VMSEAL-NET-ADDR)
#   vmseal.fetch=HOST:PORT  then fetch http://HOST:PORT/ (busybox wget) and
#                       print each line as VMSEAL-FETCH:<line>, or
#                       VMSEAL-FETCH-FAIL
#   vmseal.httpd=PORT   serve /www on PORT (busybox httpd); its index.html
#                       holds VMSEAL-GUEST-PAGE:<vmseal.token=STR>; prints
#                       VMSEAL-HTTPD-UP
#   vmseal.hotplug=1    (with vmseal.wait=1) bring up by DHCP every network
#                       interface that appears later (a hot-plugged NIC):
#                       VMSEAL-NET-ADDR <interface> <address> <MAC>
#   vmseal.wait=1       after the actions stay up (prints VMSEAL-READY) until
#                       the ACPI power button (system_powerdown) is pressed;
#                       default: power off at once after the actions
#   vmseal.shell=1      after the actions run a shell on the serial port
#                       (prints VMSEAL-SHELL-READY; the power button still
#                       powers off): the console tests type into it
#   vmseal.fsyncwrite=1 write 4 KiB blocks "VMSEAL-BLK:<i>" at 4 MiB + i*4 KiB
#                       of vda, each with fsync, printing VMSEAL-FSYNCED <i>
#                       after each, until a write fails (VMSEAL-WRITE-ERROR <i>,
#                       then a read of vda is tried: VMSEAL-READ-ERROR or
#                       VMSEAL-READ-OK) or 100000 blocks; then stays up
#   vmseal.fsynccheck=N read blocks 0..N of vda back (4 MiB on): prints
#                       VMSEAL-FSYNC-CHECK-OK N or VMSEAL-FSYNC-CHECK-FAIL <i>
#   vmseal.sum=1        print VMSEAL-SUM <sha256 of the whole of vda>
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
wanted=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk evdev button
        virtio_net)
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

# udhcpc's hook: configure the interface from the DHCP answer.
mkdir -p "$root/etc/udhcpc"
cat > "$root/etc/udhcpc/script" <<'SH'
#!/bin/sh
case "$1" in
  bound|renew)
    ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}" up
    # the first interface up keeps the default route
    if ! route -n | grep -q '^0\.0\.0\.0'; then
      for r in $router; do route add default gw "$r" dev "$interface"; break; done
      : > /etc/resolv.conf
      for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    fi
    echo "$ip" > "/run/net-addr.$interface" ;;
  deconfig) ifconfig "$interface" 0.0.0.0 ;;
esac
exit 0
SH
chmod 755 "$root/etc/udhcpc/script"

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

marker= check= wait=0 mem= memmib=1 count=0 shell=0 ramtick=0 net= ip= fetch= httpd= token= hotplug= fsyncwrite= fsynccheck= sum=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    vmseal.mem=*) mem=${arg#vmseal.mem=} ;;
    vmseal.memmib=*) memmib=${arg#vmseal.memmib=} ;;
    vmseal.count=*) count=${arg#vmseal.count=} ;;
    vmseal.net=*) net=${arg#vmseal.net=} ;;
    vmseal.ip=*) ip=${arg#vmseal.ip=} ;;
    vmseal.fetch=*) fetch=${arg#vmseal.fetch=} ;;
    vmseal.httpd=*) httpd=${arg#vmseal.httpd=} ;;
    vmseal.token=*) token=${arg#vmseal.token=} ;;
    vmseal.hotplug=*) hotplug=${arg#vmseal.hotplug=} ;;
    vmseal.fsyncwrite=*) fsyncwrite=${arg#vmseal.fsyncwrite=} ;;
    vmseal.sum=*) sum=${arg#vmseal.sum=} ;;
    vmseal.fsynccheck=*) fsynccheck=${arg#vmseal.fsynccheck=} ;;
    vmseal.marker=*) marker=${arg#vmseal.marker=} ;;
    vmseal.check=*) check=${arg#vmseal.check=} ;;
    vmseal.wait=*) wait=${arg#vmseal.wait=} ;;
    vmseal.shell=*) shell=${arg#vmseal.shell=} ;;
    vmseal.ramtick=*) ramtick=${arg#vmseal.ramtick=} ;;
  esac
done
valid() { case "$1" in *[!A-Za-z0-9._-]*) return 1 ;; esac; return 0; }

# wait up to 10 s for the virtio disks to appear
disks=
i=0
while [ $i -lt 100 ]; do
  disks=$(cd /sys/block && ls -d vd* 2>/dev/null || true)
  [ -n "$disks" ] && break
  [ -n "$marker$check$fsyncwrite$fsynccheck$sum" ] || break
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

if [ -n "$mem" ] && valid "$mem"; then
  # 1 MiB of the marker, then N copies of it in RAM (not zero pages)
  yes "VMSEAL-MEM:$mem" | head -c 1048576 > /tmp/mem1
  i=0
  while [ $i -lt "$memmib" ]; do cat /tmp/mem1; i=$((i + 1)); done > /tmp/mem
  echo "VMSEAL-MEM-FILLED $memmib"
fi
if [ "$count" = 1 ]; then
  ( n=1; while :; do echo "VMSEAL-COUNT $n"; n=$((n + 1)); sleep 1; done ) &
fi

# network (virtio-net): DHCP or a static address, then a fetch and/or a server
netok() { case "$1" in *[!A-Za-z0-9./:_-]*) return 1 ;; esac; return 0; }
if [ -n "$net$ip" ]; then
  i=0
  while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do usleep 100000; i=$((i + 1)); done
  ifconfig lo 127.0.0.1 up
  addr=
  if [ "$net" = dhcp ]; then
    udhcpc -i eth0 -s /etc/udhcpc/script -n -q -t 20 -T 2 >/dev/null 2>&1 &&
      addr=$(cat /run/net-addr.eth0 2>/dev/null)
  elif netok "$ip"; then
    ifconfig eth0 "${ip%/*}" netmask 255.255.255.0 up && addr=${ip%/*}
  fi
  if [ -n "$addr" ]; then
    echo "VMSEAL-NET-ADDR $addr $(cat /sys/class/net/eth0/address)"
  else
    echo "VMSEAL-NET-FAIL"
  fi
fi
if [ -n "$httpd" ] && netok "$httpd"; then
  mkdir -p /www
  valid "$token" && echo "VMSEAL-GUEST-PAGE:$token" > /www/index.html
  httpd -p "$httpd" -h /www && echo "VMSEAL-HTTPD-UP $httpd"
fi
if [ -n "$fetch" ]; then
  # busybox nc (the static busybox's wget crashes on name lookup): a bare
  # HTTP/1.0 GET; the body is what follows the blank line
  if netok "$fetch" &&
     printf 'GET / HTTP/1.0\r\nHost: %s\r\n\r\n' "$fetch" |
       nc -w 20 "${fetch%:*}" "${fetch##*:}" > /tmp/page 2>/tmp/fetch.err &&
     head -n1 /tmp/page | grep -q ' 200 '; then
    sed '1,/^\r*$/d' /tmp/page | while IFS= read -r l; do echo "VMSEAL-FETCH:$l"; done
  else
    echo "VMSEAL-FETCH-FAIL $(head -n1 /tmp/fetch.err 2>/dev/null) $(head -n1 /tmp/page 2>/dev/null)"
  fi
fi

if [ "$hotplug" = 1 ] && [ "$wait" = 1 ]; then
  (
    seen=" $(ls /sys/class/net | tr '\n' ' ') "
    while :; do
      for i in $(ls /sys/class/net); do
        case "$seen" in *" $i "*) continue ;; esac
        seen="$seen$i "
        if udhcpc -i "$i" -s /etc/udhcpc/script -n -q -t 20 -T 2 >/dev/null 2>&1; then
          echo "VMSEAL-NET-ADDR $i $(cat /run/net-addr.$i) $(cat /sys/class/net/$i/address)"
        else
          echo "VMSEAL-NET-FAIL $i"
        fi
      done
      usleep 500000
    done
  ) &
fi

if [ "$fsyncwrite" = 1 ]; then
  i=0
  while [ $i -lt 100000 ]; do
    if printf 'VMSEAL-BLK:%d\n' $i |
       dd of=/dev/vda bs=4096 seek=$((1024 + i)) count=1 conv=sync,notrunc,fsync 2>/dev/null; then
      echo "VMSEAL-FSYNCED $i"
    else
      echo "VMSEAL-WRITE-ERROR $i"
      echo 3 > /proc/sys/vm/drop_caches
      if dd if=/dev/vda of=/dev/null bs=4096 skip=7 count=1 2>/dev/null; then
        echo "VMSEAL-READ-OK"
      else
        echo "VMSEAL-READ-ERROR"
      fi
      break
    fi
    i=$((i + 1))
  done
  wait=1
fi

if [ -n "$fsynccheck" ]; then
  case "$fsynccheck" in *[!0-9]*|'') fsynccheck=-1 ;; esac
  echo 3 > /proc/sys/vm/drop_caches
  i=0 bad=
  while [ $i -le "$fsynccheck" ]; do
    got=$(dd if=/dev/vda bs=4096 skip=$((1024 + i)) count=1 2>/dev/null | head -n1 | tr -d '\0')
    [ "$got" = "VMSEAL-BLK:$i" ] || { bad=$i; break; }
    i=$((i + 1))
  done
  if [ -z "$bad" ] && [ "$fsynccheck" -ge 0 ]; then
    echo "VMSEAL-FSYNC-CHECK-OK $fsynccheck"
  else
    echo "VMSEAL-FSYNC-CHECK-FAIL ${bad:-none}"
  fi
fi

if [ "$sum" = 1 ] && [ -b /dev/vda ]; then
  echo 3 > /proc/sys/vm/drop_caches
  echo "VMSEAL-SUM $(sha256sum /dev/vda | cut -d' ' -f1)"
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

if [ "$shell" = 1 ]; then
  # an interactive shell on the serial port (the console tests type into it)
  acpid -c /etc/acpi -l /var/log/acpid.log
  echo "VMSEAL-SHELL-READY"
  while :; do sh; done
fi
if [ "$wait" = 1 ]; then
  acpid -c /etc/acpi -l /var/log/acpid.log
  echo "VMSEAL-READY"
  if [ "$ramtick" = 1 ]; then
    # a marker made here, held only in RAM (never on a disk, the command
    # line or the host), printed with a counter every second: after a
    # resume the same marker and a counter that goes on prove the memory
    # came back (suspend / snapshot tests)
    head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' > /run/ram-hex
    echo "VMRAM$(cat /run/ram-hex)" > /run/ram-marker
    n=0
    while :; do n=$((n + 1)); echo "VMSEAL-RAM $(cat /run/ram-marker) $n"; sleep 1; done
  fi
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
