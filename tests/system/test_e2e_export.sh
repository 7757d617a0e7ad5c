#!/usr/bin/env bash
# End to end: `vmseal vm export` of a RUNNING encrypted VM's disk from a
# consistent point (QEMU image fleecing, hostd/fleece.h; docs/architecture.md
# "Disk export"). The guest writes marker A (fsync'd), the export starts, the
# guest overwrites it with marker B while the export is open; nbdcopy over
# TLS-PSK reads A (the disk as it was when the export started), never B;
# the old block QEMU keeps aside lands encrypted in a one-time LUKS file in
# the VM home, which is gone with the export; afterwards the disk holds B.
# An unused running export expires and is torn down the same way; a second
# export while one runs is refused.
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
QU=vmsx$(($$ % 100000))
useradd --system --no-create-home --shell /usr/sbin/nologin "$QU" >/dev/null 2>&1 || fail "useradd $QU"
at_exit "userdel $QU >/dev/null 2>&1"
echo "qemu_user = $QU" >> "$CONF"
stack_hostd_start esx1

# in the guest's shell (serial console), as a user at a terminal
guest() { /usr/bin/python3 "$VMSEAL_SRC/tests/system/console_pty.py" "$1" "$2" "$STACK_CLI" vm console "$3"; }
MARK_OFF=$((2048 * 512))
marker_at() { dd if="$1" bs=512 skip=2048 count=1 status=none | head -n1 | tr -d '\0'; }
export_idle() { [ "$(stack_vm_field "$1" .runtime.busy)" = null ]; }

expect_rc 0 vmseal vm create live1 --host esx1 --disk 64 --encrypt \
  --kernel vmlinuz --initrd initrd.gz --append "console=ttyS0 quiet vmseal.marker=AAA1 vmseal.shell=1"
H=$(stack_vm_home esx1 live1)
expect_rc 0 vmseal vm start live1
stack_until 300 stack_vm_console_has live1 VMSEAL-SHELL-READY ||
  { stack_vm_console live1 | tail -n 20 >&2; fail "the guest's shell did not start"; }
stack_vm_console_has live1 'VMSEAL-MARKER-WRITTEN vda' || fail "the guest did not write marker A"
[ "$(stack_vm_field live1 '.runtime.disks[0].data_path')" = nbd ] || fail "disk 0 not on the nbd path"

# the export of the running VM: a point-in-time view
expect_rc 0 vmseal --json vm export live1 --disk 0 --psk-file "$TMP/a.psk"
E=$OUT
jq -e '.view == "decrypted" and .source == "running" and .read_only == true and .size == 67108864' \
  <<<"$E" >/dev/null || fail "export answer: $E"
URI=$(jq -r .uri <<<"$E")
[ -f "$H/fleece0.luks" ] && [ -S "$H/fleece0.sock" ] || fail "no fleecing file and socket in the VM home"
cryptsetup isLuks --type luks1 "$H/fleece0.luks" || fail "the fleecing file is not LUKS1"
[ "$(stack_vm_field live1 .runtime.busy)" = exporting ] || fail "the VM is not held while exporting"
[ "$(stack_vm_field live1 .runtime.power_state)" = on ] || fail "the VM stopped for the export"

# the guest goes on writing: it overwrites A with B (fsync) while the export is open
guest "printf 'VMSEAL-MARKER:%s:vda\\n' BBB2 | dd of=/dev/vda bs=512 seek=2048 count=1 conv=sync,notrunc,fsync 2>/dev/null && echo wrote-\$((40+2))-b" \
  wrote-42-b live1 || fail "the guest could not overwrite its marker during the export"
# QEMU copied the old block aside: into the encrypted fleecing file, not in clear
if grep -aq 'VMSEAL-MARKER:AAA1' "$H/fleece0.luks"; then fail "the old block in clear in the fleecing file"; fi
if grep -aq 'VMSEAL-MARKER' "$H/disk0.luks"; then fail "a marker in clear in the disk image"; fi

nbdcopy "$URI?tls-psk-file=$TMP/a.psk" "$TMP/live.img" ||
  { tail -n 5 "$H/export-disk0.log" >&2; tail -n 20 "$LOG" >&2; fail "nbdcopy over TLS of the running VM's export"; }
[ "$(stat -c %s "$TMP/live.img")" = 67108864 ] || fail "export size"
got=$(marker_at "$TMP/live.img")
[ "$got" = "VMSEAL-MARKER:AAA1:vda" ] || fail "the export reads '$got', not marker A as at its start"
if grep -aq 'VMSEAL-MARKER:BBB2' "$TMP/live.img"; then fail "the export holds the guest's later write B"; fi
ok "vm export of a running VM: nbdcopy over TLS-PSK reads marker A as at the export's start while the guest overwrote it with B; the old block kept aside only encrypted"

# the end of the export undoes the fleecing: file, socket, job; the guest runs on
stack_until 60 export_idle live1 || fail "the VM stays busy after the export"
[ ! -e "$H/fleece0.luks" ] && [ ! -e "$H/fleece0.sock" ] || fail "fleecing file or socket left behind"
grep -q "live1: disk 0 exported (decrypted, point-in-time view of the running VM" "$LOG" || fail "hostd did not log the running export"
if grep -q "warning: fleece: " "$LOG"; then grep "fleece: " "$LOG" >&2; fail "the fleecing teardown reported errors"; fi
guest "echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda bs=512 skip=2048 count=1 2>/dev/null | head -n1; echo read-\$((6*7))-done" \
  'VMSEAL-MARKER:BBB2:vda' live1 || fail "the guest does not read B after the export"
ok "after the export: fleecing file and socket removed, no teardown error, the guest runs on and reads B"

# an unused running export expires and is torn down; a second export meanwhile is refused
expect_rc 0 vmseal --json vm export live1 --disk 0 --ttl 3 --psk-file "$TMP/b.psk"
URI=$(jq -r .uri <<<"$OUT")
[ -f "$H/fleece0.luks" ] || fail "no fleecing file for the second export"
expect_rc 6 vmseal vm export live1 --disk 0 --psk-file "$TMP/c.psk"
sleep 5
if nbdinfo --size "$URI?tls-psk-file=$TMP/b.psk" >/dev/null 2>&1; then fail "expired running export served"; fi
stack_until 60 export_idle live1 || fail "the VM stays busy after an expired export"
[ ! -e "$H/fleece0.luks" ] && [ ! -e "$H/fleece0.sock" ] || fail "fleecing file left after expiry"
# and another one works again (the NBD server and the job of the last are gone)
expect_rc 0 vmseal --json vm export live1 --disk 0 --psk-file "$TMP/d.psk"
URI=$(jq -r .uri <<<"$OUT")
nbdcopy "$URI?tls-psk-file=$TMP/d.psk" "$TMP/live2.img" || fail "nbdcopy of the third export"
[ "$(marker_at "$TMP/live2.img")" = "VMSEAL-MARKER:BBB2:vda" ] || fail "the third export does not read B"
stack_until 60 export_idle live1 || fail "the VM stays busy after the third export"
ok "running export: a second one at the same time refused; an unused one expires and is torn down; the next reads B"

# hostd killed during a running export: QEMU keeps the nodes, job and NBD server
# it was given; the next hostd's export clears them and works
expect_rc 0 vmseal --json vm export live1 --disk 0 --psk-file "$TMP/k.psk"
[ -f "$H/fleece0.luks" ] || fail "no fleecing file before the kill"
kill -KILL "${STACK_PID[esx1]}"
wait "${STACK_PID[esx1]}" 2>/dev/null || true
stack_hostd_start esx1
[ "$(stack_vm_field live1 .runtime.power_state)" = on ] || fail "the VM is not running after hostd's restart"
stack_until 60 export_idle live1 || fail "the VM is busy after hostd's restart"
expect_rc 0 vmseal --json vm export live1 --disk 0 --psk-file "$TMP/l.psk"
nbdcopy "$(jq -r .uri <<<"$OUT")?tls-psk-file=$TMP/l.psk" "$TMP/live3.img" ||
  { tail -n 20 "$LOG" >&2; fail "nbdcopy after hostd was killed during an export"; }
[ "$(marker_at "$TMP/live3.img")" = "VMSEAL-MARKER:BBB2:vda" ] || fail "the export after the kill does not read B"
stack_until 60 export_idle live1 || fail "the VM stays busy"
[ ! -e "$H/fleece0.luks" ] && [ ! -e "$H/fleece0.sock" ] || fail "fleecing file left after the kill and a new export"
ok "hostd killed (SIGKILL) during a running export: the next hostd's export clears QEMU's leftovers and reads B"

# the ciphertext is exported from the powered-off VM only (the image changes under a running one)
if vmseal vm export live1 --disk 0 --ciphertext --bundle-file "$TMP/run.bundle" --psk-file "$TMP/run.psk" 2>"$TMP/err"; then
  fail "ciphertext export of a running VM"; fi
grep -q "powered on: its ciphertext is exported from the powered-off VM" "$TMP/err" || fail "message: $(cat "$TMP/err")"
[ ! -e "$TMP/run.bundle" ] || fail "a bundle file for a refused export"
stack_until 60 export_idle live1 || fail "the VM stays busy after a refused export"

# powered off, the disk holds B (the powered-off export reads the image itself)
expect_rc 0 vmseal vm stop live1
stack_vm_wait_off live1 60 || fail "live1 did not power off"
expect_rc 0 vmseal --json vm export live1 --disk 0 --psk-file "$TMP/e.psk"
jq -e '.source == "powered-off"' <<<"$OUT" >/dev/null || fail "powered-off export answer: $OUT"
nbdcopy "$(jq -r .uri <<<"$OUT")?tls-psk-file=$TMP/e.psk" "$TMP/off.img" || fail "nbdcopy powered off"
[ "$(marker_at "$TMP/off.img")" = "VMSEAL-MARKER:BBB2:vda" ] || fail "the disk does not hold B"
ok "powered off: the disk holds B"

# ---- the ciphertext with its key bundle: a backup that stays encrypted end to end
printf 'bobpassword1\n' > "$TMP/bobpw"
expect_rc 0 vmseal user add bob --role NoCryptoAdmin --password-file "$TMP/bobpw"
bob() { XDG_CONFIG_HOME=$TMP/bob "$STACK_CLI" "$@"; }
bob --url "$STACK_URL" --ca "$STACK_CA" login bob --password-file "$TMP/bobpw" >/dev/null || fail "bob login"
OUT=$(bob vm export live1 --disk 0 --psk-file "$TMP/bobd.psk" 2>&1) && fail "bob exported the decrypted view"
grep -q "lacks the Cryptographer.ExportDisk privilege on vm:live1" <<<"$OUT" || fail "decrypted export denied message: $OUT"
# a No Cryptography Administrator may back up the ciphertext (DiskRandomRead alone)
OUT=$(bob --json vm export live1 --disk 0 --ciphertext --bundle-file "$TMP/b.bundle" --psk-file "$TMP/bob.psk" 2>&1) ||
  fail "bob's ciphertext export: $OUT"
E=$OUT
jq -e --argjson n "$(stat -c %s "$H/disk0.luks")" '.view == "ciphertext" and .source == "powered-off" and .size == $n' \
  <<<"$E" >/dev/null || fail "ciphertext export answer: $(jq 'del(.psk)' <<<"$E")"
[ "$(stat -c %a "$TMP/b.bundle")" = 600 ] || fail "the bundle file is not 0600"
nbdcopy "$(jq -r .uri <<<"$E")?tls-psk-file=$TMP/bob.psk" "$TMP/cipher.img" ||
  { tail -n 5 "$H/export-disk0.log" >&2; fail "nbdcopy of the ciphertext export"; }
cmp -s "$TMP/cipher.img" "$H/disk0.luks" || fail "the ciphertext export differs from the image"
if grep -aq 'VMSEAL-MARKER' "$TMP/cipher.img"; then fail "plaintext in the ciphertext export"; fi
cryptsetup isLuks --type luks1 "$TMP/cipher.img" || fail "the exported bytes are not LUKS1"
cryptsetup luksDump "$TMP/cipher.img" | grep -q 'xts-plain64' || fail "cryptsetup luksDump of the export"
LU=$(cryptsetup luksUUID "$TMP/cipher.img")
KEK=$(stack_vm_field live1 .kek_id)
KS=$(sed -n 's/^disk0\.keysafe = //p' "$H/vm.conf")
[ -n "$KEK" ] && [ "$KEK" != null ] && [ -n "$KS" ] || fail "no KEK id or key safe to compare with"
jq -e --arg lu "$LU" --arg kek "$KEK" --arg ks "$KS" --arg uuid "$(stack_vm_uuid live1)" '
  .format == "vmseal-disk-key-bundle-1" and .luks_uuid == $lu and .disk_id == ("disk:" + $lu) and
  .kek_id == $kek and .keysafe == $ks and .vm == $uuid and .disk == 0 and
  (keys - ["format", "vm", "disk", "disk_id", "luks_uuid", "kek_id", "key_provider", "keysafe"] == [])' \
  "$TMP/b.bundle" >/dev/null || fail "key bundle: $(cat "$TMP/b.bundle")"
jq -e '.bundle == input' <(echo "$E") "$TMP/b.bundle" >/dev/null || fail "the bundle file is not the API's bundle"
vmseal --json events --action vm.export | jq -e 'map(select(.user == "bob" and .result == "ok")) | length == 1' \
  >/dev/null || fail "no vm.export event for bob's ciphertext export"
stack_until 30 export_idle live1 || fail "the VM stays busy after the ciphertext export"
# a plain disk has no ciphertext
expect_rc 0 vmseal vm create plain1 --host esx1 --disk 8 --no-encrypt --kernel vmlinuz --initrd initrd.gz
if vmseal vm export plain1 --disk 0 --ciphertext --bundle-file "$TMP/p.bundle" --psk-file "$TMP/p.psk" 2>"$TMP/err"; then
  fail "ciphertext export of a plain disk"; fi
grep -q "disk 0 is not encrypted" "$TMP/err" || fail "plain ciphertext message: $(cat "$TMP/err")"
ok "ciphertext export: NoCryptoAdmin (DiskRandomRead) gets the LUKS1 image byte-exact (no plaintext marker, luksDump opens it) and the key bundle (the disk's key safe under KEK $KEK, bound to disk:$LU); decrypted view still 403; refused for a plain disk and a running VM"

# the same on QEMU's own luks data path (the fleecing source is QEMU's luks node)
stack_hostd_stop esx1
printf 'disk0.disk_path = qemu-luks\n' >> "$H/vm.conf"
stack_hostd_start esx1
expect_rc 0 vmseal vm start live1
stack_until 300 stack_vm_console_has live1 VMSEAL-SHELL-READY || fail "the guest's shell did not start (qemu-luks)"
[ "$(stack_vm_field live1 '.runtime.disks[0].data_path')" = qemu-luks ] || fail "disk 0 not on QEMU's luks path"
expect_rc 0 vmseal --json vm export live1 --disk 0 --psk-file "$TMP/q.psk"
jq -e '.source == "running"' <<<"$OUT" >/dev/null || fail "qemu-luks export answer: $OUT"
URI=$(jq -r .uri <<<"$OUT")
guest "printf 'VMSEAL-MARKER:%s:vda\\n' CCC3 | dd of=/dev/vda bs=512 seek=2048 count=1 conv=sync,notrunc,fsync 2>/dev/null && echo wrote-\$((40+3))-c" \
  wrote-43-c live1 || fail "the guest could not overwrite its marker (qemu-luks)"
nbdcopy "$URI?tls-psk-file=$TMP/q.psk" "$TMP/luks.img" || fail "nbdcopy of the running export (qemu-luks)"
[ "$(marker_at "$TMP/luks.img")" = "VMSEAL-MARKER:BBB2:vda" ] || fail "qemu-luks: the export does not read B as at its start"
stack_until 60 export_idle live1 || fail "the VM stays busy (qemu-luks)"
[ ! -e "$H/fleece0.luks" ] || fail "fleecing file left (qemu-luks)"
expect_rc 0 vmseal vm stop live1
stack_vm_wait_off live1 60 || fail "live1 did not power off"
ok "running export on QEMU's luks data path: reads B as at the start while the guest wrote C"
finish
