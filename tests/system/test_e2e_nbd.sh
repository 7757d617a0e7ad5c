#!/usr/bin/env bash
# End to end: an encrypted VM's disk through the NBD data path
# (hostd.conf disk_path = nbd, blockd/nbdkit-vmseal-plugin.so; see
# docs/architecture.md, "Disk data path"). The guest writes 4 KiB blocks,
# each followed by fsync; the disk's nbdkit is killed with SIGKILL mid-way:
# the guest gets I/O errors (no reconnect, never another server's data),
# hostd reports the dead server; after a power cycle every block the guest
# saw fsync'd reads back exactly — through the plugin and through QEMU's own
# luks driver (vm.conf disk0.disk_path = qemu-luks) — and the image is still a
# LUKS1 volume for qemu-img and cryptsetup. Without the plugin hostd falls
# back to QEMU's luks driver and says why.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/system/system_lib.sh"
PLUGIN=$VMSEAL_BUILD/blockd/nbdkit-vmseal-plugin.so
[ -f "$PLUGIN" ] || fail "plugin not built: $PLUGIN"

stack_kmsd_setup kms1
stack_kmsd_start kms1
stack_managerd_setup
stack_managerd_start
stack_login
stack_kms_add prov1 kms1
stack_hostd_setup esx1
CONF=$STACK_DIR/esx1/hostd.conf
LOG=$STACK_DIR/esx1/hostd.log
echo "nbd_plugin = $PLUGIN" >> "$CONF"
# QEMU and the disk servers drop to their own user
QU=vmsn$(($$ % 100000))
useradd --system --no-create-home --shell /usr/sbin/nologin "$QU" >/dev/null 2>&1 || fail "useradd $QU"
at_exit "userdel $QU >/dev/null 2>&1"
echo "qemu_user = $QU" >> "$CONF"
stack_hostd_start esx1
grep -q "encrypted disks of running VMs: nbd: .*nbdkit with $PLUGIN" "$LOG" ||
  { tail -n 20 "$LOG" >&2; fail "hostd does not say it uses the nbd path"; }

expect_rc 0 vmseal vm create nbd1 --host esx1 --disk 64 --encrypt \
  --kernel vmlinuz --initrd initrd.gz --append "console=ttyS0 quiet vmseal.fsyncwrite=1"
H=$(stack_vm_home esx1 nbd1)
expect_rc 0 vmseal vm start nbd1
stack_until 300 stack_vm_console_has nbd1 'VMSEAL-FSYNCED 20' ||
  { stack_vm_console nbd1 | tail -n 20 >&2; fail "guest did not write through the nbd path"; }
J=$(stack_vm_json nbd1)
jq -e '.runtime.disks[0].data_path == "nbd" and .runtime.disks[0].nbd_server.state == "running"' \
  <<<"$J" >/dev/null || { jq .runtime.disks <<<"$J" >&2; fail "VM description: disk 0 not on a running nbd server"; }
P=$(jq -r '.runtime.disks[0].nbd_server.pid' <<<"$J")
cmd=$(tr '\0' ' ' < "/proc/$P/cmdline")
grep -q "^[^ ]*nbdkit -s --log=stderr .*nbdkit-vmseal-plugin.so file=$H/disk0.luks passfd=3 $" <<<"$cmd" ||
  fail "nbdkit command line: $cmd"
grep -q '^NoNewPrivs:[[:space:]]*1' "/proc/$P/status" || fail "nbdkit may gain privileges"
[ "$(awk '/^Uid:/ {print $2 $3 $4 $5}' "/proc/$P/status")" = "$(id -u "$QU")$(id -u "$QU")$(id -u "$QU")$(id -u "$QU")" ] ||
  fail "nbdkit does not run as $QU"
[ "$(awk '/^Gid:/ {print $2 $3 $4 $5}' "/proc/$P/status")" = "$(id -g "$QU")$(id -g "$QU")$(id -g "$QU")$(id -g "$QU")" ] ||
  fail "nbdkit does not run with $QU's group"
grep -qE '^Groups:[[:space:]]*$|^Groups:[[:space:]]*'"$(id -g "$QU")"'[[:space:]]*$' "/proc/$P/status" ||
  fail "nbdkit keeps supplementary groups: $(grep ^Groups: "/proc/$P/status")"
[ "$(awk '/^CapBnd:/ {print $2}' "/proc/$P/status")" = 00000000000000c0 ] || fail "nbdkit's capability bounding set"
[ "$(awk '/^CapEff:/ {print $2}' "/proc/$P/status")" = 0000000000000000 ] || fail "nbdkit has capabilities"
# the key is nowhere but in the process: not in argv, environment, home or log
[ "$(tr '\0' '\n' < "/proc/$P/environ" | cut -d= -f1 | tr '\n' ' ')" = "PATH " ] ||
  fail "nbdkit inherits hostd's environment"
[ -z "$(find "$H" -type s ! -name qmp.sock ! -name serial.sock ! -name vnc.sock)" ] || fail "a socket file in the VM home (the connection is a socketpair)"
if ss -xlp 2>/dev/null | grep -q "pid=$P,"; then fail "nbdkit listens on a socket"; fi
if ss -tlp 2>/dev/null | grep -q "pid=$P,"; then fail "nbdkit listens on TCP"; fi
expect_rc 0 vmseal vm info nbd1
grep -q '^Disk 0 path: nbd (server running)' <<<"$OUT" || { echo "$OUT" >&2; fail "vmseal vm info: disk path"; }
ok "encrypted disk served by nbdkit (pid $P as $QU, one connection on a socketpair, no new privileges, clean environment); vm info says nbd"

# hostd restarts under a running VM: the server keeps serving, hostd finds it again
stack_hostd_stop esx1
kill -0 "$P" || fail "nbdkit died with hostd"
stack_hostd_start esx1
fsynced() { stack_vm_console nbd1 | tr -d '\r' | grep -a '^VMSEAL-FSYNCED' | tail -n1 | cut -d' ' -f2; }
n0=$(fsynced)
writes_on() { local n; n=$(fsynced); [ -n "$n" ] && [ "$n" -gt $((n0 + 5)) ]; }
stack_until 120 writes_on || fail "the guest stopped writing across a hostd restart"
J=$(stack_vm_json nbd1)
jq -e --argjson p "$P" '.runtime.disks[0].data_path == "nbd" and .runtime.disks[0].nbd_server == {pid: $p, state: "running"}' \
  <<<"$J" >/dev/null || { jq .runtime.disks <<<"$J" >&2; fail "after a hostd restart: the server not found again"; }
ok "hostd restart: the disk server keeps serving the running guest and is found again"

kill -KILL "$P"
stack_until 120 stack_vm_console_has nbd1 'VMSEAL-READ-(ERROR|OK)' ||
  { stack_vm_console nbd1 | tail -n 20 >&2; fail "the guest did not notice the dead server"; }
con=$(stack_vm_console nbd1 | tr -d '\r')
grep -aq '^VMSEAL-WRITE-ERROR ' <<<"$con" || fail "no write error in the guest"
grep -aq '^VMSEAL-READ-ERROR' <<<"$con" || fail "the guest still reads the disk of a dead server"
K=$(grep -a '^VMSEAL-FSYNCED ' <<<"$con" | tail -n1 | cut -d' ' -f2)
[ "$K" -ge 20 ] || fail "last fsync'd block $K"
stack_until 30 grep -q "disk 0: its NBD server (pid $P) exited while the VM runs" "$LOG" ||
  { tail -n 20 "$LOG" >&2; fail "hostd did not report the dead server"; }
[ "$(stack_vm_field nbd1 '.runtime.disks[0].nbd_server.state')" = exited ] || fail "VM description: server not exited"
[ "$(grep -c "disk 0: its NBD server (pid $P) exited" "$LOG")" = 1 ] || fail "the dead server reported more than once"
ok "SIGKILL of the disk's nbdkit: the guest gets write and read errors after block $K, hostd reports it once"

expect_rc 0 vmseal vm stop nbd1
stack_vm_wait_off nbd1 60 || fail "nbd1 did not power off"
[ ! -e "$H/nbd-disk0.pid" ] && [ ! -e "$H/nbd-disk0.exited" ] || fail "server records left after power-off"
qemu-img info "$H/disk0.luks" | grep -q '^file format: luks' || fail "qemu-img does not see a LUKS image"
cryptsetup luksDump "$H/disk0.luks" | grep -q 'xts-plain64' || fail "cryptsetup luksDump"
cryptsetup isLuks --type luks1 "$H/disk0.luks" || fail "not LUKS1"
if grep -aq 'VMSEAL-BLK:' "$H/disk0.luks"; then fail "block contents visible in the image file"; fi
expect_rc 0 vmseal vm set nbd1 --append "console=ttyS0 quiet vmseal.fsynccheck=$K vmseal.sum=1 vmseal.wait=1"
expect_rc 0 vmseal vm start nbd1
stack_until 300 stack_vm_console_has nbd1 "VMSEAL-FSYNC-CHECK-(OK|FAIL)" || fail "check boot"
stack_vm_console_has nbd1 "VMSEAL-FSYNC-CHECK-OK $K" ||
  { stack_vm_console nbd1 | grep -a FSYNC-CHECK >&2; fail "fsync'd blocks lost"; }
stack_until 300 stack_vm_console_has nbd1 "VMSEAL-SUM " || fail "the guest did not hash its disk"
GUEST_SUM=$(stack_vm_console nbd1 | tr -d '\r' | grep -a '^VMSEAL-SUM ' | tail -n1 | cut -d' ' -f2)
P2=$(stack_vm_field nbd1 '.runtime.disks[0].nbd_server.pid')
[ "$P2" != "$P" ] && kill -0 "$P2" || fail "no new server after the power cycle"
expect_rc 0 vmseal vm stop nbd1
stack_vm_wait_off nbd1 60 || fail "nbd1 did not power off"
stack_until 20 bash -c "! kill -0 $P2 2>/dev/null" || fail "nbdkit $P2 still runs after power-off"
ok "after a power cycle every fsync'd block (0..$K) reads back exactly through the plugin; image still LUKS1 for qemu-img and cryptsetup; server stopped with the VM"

# the same blocks through QEMU's own luks driver: the per-disk override (over the VM's)
stack_hostd_stop esx1
printf 'vm.disk_path = nbd\ndisk0.disk_path = qemu-luks\n' >> "$H/vm.conf"
stack_hostd_start esx1
expect_rc 0 vmseal vm start nbd1
stack_until 300 stack_vm_console_has nbd1 "VMSEAL-READY" || fail "boot with qemu-luks"
stack_vm_console_has nbd1 "VMSEAL-FSYNC-CHECK-OK $K" || fail "QEMU's luks driver does not read what the plugin wrote"
[ "$(stack_vm_field nbd1 '.runtime.disks[0].data_path')" = qemu-luks ] || fail "override: data path not qemu-luks"
[ ! -e "$H/nbd-disk0.pid" ] || fail "a server started for a qemu-luks disk"
expect_rc 0 vmseal vm stop nbd1
stack_vm_wait_off nbd1 60 || fail "nbd1 did not power off"
ok "disk0.disk_path = qemu-luks (over vm.disk_path = nbd): QEMU's luks driver reads every fsync'd block byte-exact"

# ---- vmseal vm export: a one-time NBD-over-TLS endpoint ------------------------------
export_idle() { [ "$(stack_vm_field nbd1 .runtime.busy)" = null ]; }
key_dirs() { { ls -d /tmp/vmseal-export.* 2>/dev/null || true; } | sort; }
KEYDIRS0=$(key_dirs)
no_new_key_dirs() { [ "$(key_dirs)" = "$KEYDIRS0" ]; }
# the decrypted view, read by nbdcopy over TLS with the one-time key: the bytes the guest saw
stack_until 30 export_idle || fail "the VM stays busy after an export"
expect_rc 0 vmseal --json vm export nbd1 --disk 0 --psk-file "$TMP/a.psk"
E=$OUT
URI=$(jq -r .uri <<<"$E")
jq -e '.view == "decrypted" and .read_only == true and .tls == "psk" and .disk == 0 and .size == 67108864' \
  <<<"$E" >/dev/null || fail "export answer: $E"
[ "$(stat -c %a "$TMP/a.psk")" = 600 ] || fail "the PSK file is not 0600"
[ "$(stack_vm_field nbd1 .runtime.busy)" = exporting ] || fail "the VM is not held while exporting"
expect_rc 6 vmseal vm start nbd1
# plain NBD (no TLS) is refused
if nbdinfo --size "nbd://127.0.0.1:$(jq -r .port <<<"$E")/" >/dev/null 2>&1; then fail "export without TLS"; fi
stack_until 30 export_idle || fail "the VM stays busy after an export"
expect_rc 0 vmseal --json vm export nbd1 --disk 0 --psk-file "$TMP/a.psk"
E=$OUT
URI=$(jq -r .uri <<<"$E")
nbdcopy "$URI?tls-psk-file=$TMP/a.psk" "$TMP/export.img" || { tail -n 5 "$H/export-disk0.log" >&2; fail "nbdcopy over TLS"; }
[ "$(sha256sum < "$TMP/export.img" | cut -d' ' -f1)" = "$GUEST_SUM" ] || fail "the export differs from what the guest sees"
if nbdinfo --size "$URI?tls-psk-file=$TMP/a.psk" >/dev/null 2>&1; then fail "second use of an export"; fi
ok "vm export: nbdcopy over TLS-PSK reads exactly the guest's bytes (sha256 $GUEST_SUM); plain NBD and a second use refused; the VM stays off meanwhile"

# a wrong key is refused (and uses the endpoint up)
stack_until 30 export_idle || fail "the VM stays busy after an export"
expect_rc 0 vmseal --json vm export nbd1 --disk 0 --psk-file "$TMP/b.psk"
URI=$(jq -r .uri <<<"$OUT")
printf 'vmseal:%s\n' "$(head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n')" > "$TMP/wrong.psk"
if nbdinfo --size "$URI?tls-psk-file=$TMP/wrong.psk" >/dev/null 2>&1; then fail "wrong PSK accepted"; fi
if nbdinfo --size "$URI?tls-psk-file=$TMP/b.psk" >/dev/null 2>&1; then fail "endpoint reused after a failed attempt"; fi
# an endpoint not used in time is gone
stack_until 30 export_idle || fail "the VM stays busy after an export"
expect_rc 0 vmseal --json vm export nbd1 --disk 0 --ttl 2 --psk-file "$TMP/c.psk"
URI=$(jq -r .uri <<<"$OUT")
sleep 4
if nbdinfo --size "$URI?tls-psk-file=$TMP/c.psk" >/dev/null 2>&1; then fail "expired endpoint served"; fi
stack_until 20 no_new_key_dirs || fail "export key files left behind"
stack_until 30 export_idle || fail "the VM stays busy after the exports"
expect_rc 4 vmseal vm export nbd1 --disk 3 --psk-file "$TMP/d.psk"
ok "vm export: wrong key, second attempt and expired endpoint refused; key files removed; no disk 3"

# a No Cryptography Administrator may not export an encrypted VM's disk
printf 'bobpassword1\n' > "$TMP/bobpw"
expect_rc 0 vmseal user add bob --role NoCryptoAdmin --password-file "$TMP/bobpw"
bob() { XDG_CONFIG_HOME=$TMP/bob "$STACK_CLI" "$@"; }
bob --url "$STACK_URL" --ca "$STACK_CA" login bob --password-file "$TMP/bobpw" >/dev/null || fail "bob login"
OUT=$(bob vm export nbd1 --disk 0 --psk-file "$TMP/bob.psk" 2>&1) && fail "bob exported an encrypted disk"
grep -q "lacks the Cryptographer.ExportDisk privilege on vm:nbd1" <<<"$OUT" || fail "export denied message: $OUT"
[ ! -e "$TMP/bob.psk" ] || fail "a PSK file for a denied export"
vmseal --json events --action vm.export | jq -e 'map(select(.result == "ok")) | length == 4' >/dev/null ||
  fail "vm.export events"
# ... but may export a plain VM's disk (VirtualMachine.Provisioning.DiskRandomRead)
expect_rc 0 vmseal vm create plain1 --host esx1 --disk 8 --no-encrypt --kernel vmlinuz --initrd initrd.gz
PH=$(stack_vm_home esx1 plain1)
printf 'VMSEAL-PLAIN-EXPORT' | dd of="$PH/disk0.img" bs=512 seek=100 conv=notrunc status=none
OUT=$(bob --json vm export plain1 --disk 0 --psk-file "$TMP/bob.psk" 2>&1) || fail "bob exports a plain disk: $OUT"
jq -e '.view == "plain" and .size == 8388608' <<<"$OUT" >/dev/null || fail "plain export answer: $OUT"
nbdcopy "$(jq -r .uri <<<"$OUT")?tls-psk-file=$TMP/bob.psk" "$TMP/plain.img" || fail "nbdcopy of the plain export"
cmp -s "$TMP/plain.img" "$PH/disk0.img" || fail "the plain export differs from the image"
ok "vm export needs Cryptographer.ExportDisk on an encrypted VM (403 for NoCryptoAdmin), not on a plain one; audited"

# no plugin: the fallback, with the reason in the log
stack_hostd_stop esx1
sed -i '/^vm.disk_path = /d; /^disk0.disk_path = /d' "$H/vm.conf"
sed -i "s|^nbd_plugin = .*|nbd_plugin = $TMP/absent.so|" "$CONF"
stack_hostd_start esx1
grep -q "nbd unavailable (no plugin at $TMP/absent.so): QEMU's luks driver instead" "$LOG" ||
  { tail -n 5 "$LOG" >&2; fail "fallback reason not logged"; }
expect_rc 0 vmseal vm start nbd1
stack_until 300 stack_vm_console_has nbd1 "VMSEAL-READY" || fail "boot with the fallback"
[ "$(stack_vm_field nbd1 '.runtime.disks[0].data_path')" = qemu-luks ] || fail "fallback: data path not qemu-luks"
expect_rc 0 vmseal vm info nbd1
grep -q '^Disk 0 path: qemu-luks$' <<<"$OUT" || { echo "$OUT" >&2; fail "vmseal vm info: fallback path"; }
expect_rc 0 vmseal vm stop nbd1
stack_vm_wait_off nbd1 60 || fail "nbd1 did not power off"
ok "plugin absent: hostd falls back to QEMU's luks driver and logs why"

# a bad setting stops hostd at start
stack_hostd_stop esx1
echo "disk_path = fast" >> "$CONF"
if "$VMSEAL_BUILD/hostd/vmseal-hostd" -c "$CONF" --port 0 > "$TMP/bad.log" 2>&1; then fail "hostd started with disk_path = fast"; fi
grep -q "disk_path must be nbd or qemu-luks" "$TMP/bad.log" || { cat "$TMP/bad.log" >&2; fail "bad disk_path message"; }
sed -i '/^disk_path = fast/d' "$CONF"
stack_hostd_start esx1
ok "disk_path = fast is refused at start"
finish
