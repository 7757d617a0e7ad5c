#!/usr/bin/env bash
# End to end: `vmseal vm clone` of a powered-off encrypted VM. The clone is
# encrypted under a KEK of its own (a new key of the key server), its disk
# and NVRAM key safes are new, and the source's disk secret no longer opens
# the clone's copy of the disk (its keyslot was replaced); both VMs boot and
# read what the source wrote before the clone; new UUID and MAC addresses.
# --deep gives the clone new volume keys too. A user without
# Cryptographer.Clone is refused (403, CLI exit 5); a plain VM clones without
# it. A refused clone leaves no VM (inventory, datastore). Then `vmseal vm
# disk rm`: the last disk with its file kept, a first disk (the later one
# moves down with its key safe and still boots), a new disk after that gets
# a free file name.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/system/system_lib.sh"
CU=$VMSEAL_BUILD/crypto-util/vmseal-crypto-util
[ -r /usr/share/OVMF/OVMF_CODE_4M.fd ] || fail "OVMF is not installed (scripts/deps: ovmf)"

base_stack
expect_rc 0 vmseal vm create src1 --host esx1 --encrypt --firmware uefi --disk 16 --disk 8 \
  --kernel vmlinuz --initrd initrd.gz --append "console=ttyS0 quiet"
expect_rc 0 vmseal vm nic add src1
boot_mark esx1 src1 clonemark
S=$(stack_vm_home esx1 src1)
ok "an encrypted UEFI VM with two disks and a NIC wrote its markers"

expect_rc 0 vmseal vm clone src1 cl1
grep -q 'cloned into cl1' <<<"$OUT" || { echo "$OUT" >&2; fail "vm clone output"; }
C=$(stack_vm_home esx1 cl1)
sj=$(stack_vm_json src1); cj=$(stack_vm_json cl1)
[ "$(jq -r .encrypted <<<"$cj")" = true ] || fail "the clone is not encrypted"
skek=$(jq -r .kek_id <<<"$sj"); ckek=$(jq -r .kek_id <<<"$cj")
[ -n "$ckek" ] && [ "$ckek" != null ] && [ "$ckek" != "$skek" ] || fail "the clone's KEK ($ckek) is not its own (source $skek)"
[ "$(jq -r .uuid <<<"$cj")" != "$(jq -r .uuid <<<"$sj")" ] || fail "same UUID"
grep -q "^uuid = $(jq -r .uuid <<<"$cj")\$" "$C/vm.conf" || fail "the clone's vm.conf does not hold its UUID"
smac=$(sed -n 's/^nic0.mac = //p' "$S/vm.conf"); cmac=$(sed -n 's/^nic0.mac = //p' "$C/vm.conf")
[ -n "$cmac" ] && [ "$cmac" != "$smac" ] || fail "the clone's MAC ($cmac) is the source's ($smac)"
for k in vm.keysafe disk0.keysafe disk1.keysafe; do
  sv=$(sed -n "s/^$k = //p" "$S/vm.conf"); cv=$(sed -n "s/^$k = //p" "$C/vm.conf")
  [ -n "$cv" ] && [ "$sv" != "$cv" ] || fail "$k of the clone is the source's"
  grep -q "$ckek" <<<"$cv" || fail "$k of the clone is not under the clone's KEK"
done
for f in disk0.luks disk1.luks nvram.luks; do cryptsetup isLuks --type luks1 "$C/$f" || fail "clone's $f is not LUKS1"; done
ls "$C" | grep -q 'serial-\|vtpm\|state' && { ls -l "$C" >&2; fail "the clone holds the source's logs or state"; }
ls -a "$STACK_DIR/esx1/datastore" | grep -q '\.clone' && fail "a .clone folder was left"
vmseal --json events --action vm.clone | jq -e 'map(select(.object == "cl1" and .result == "ok")) | length == 1' \
  >/dev/null || fail "no vm.clone event"
ok "vm clone: an encrypted clone with its own KEK ($ckek), key safes, UUID and MAC; no logs or state copied"

# the source's disk secret opens the source's disk, not the clone's
stack_kmip kms1 get "$skek" --reveal-to-fd 3 3>"$TMP/skek" >/dev/null
chmod 600 "$TMP/skek"
for d in 0 1; do
  rm -f "$TMP/pass$d"
  expect_rc 0 "$CU" disk passphrase --kek-file "$TMP/skek" \
    --vm-config "$S/vm.conf" --disk $d --out-file "$TMP/pass$d"
  cryptsetup luksOpen --test-passphrase --key-file "$TMP/pass$d" "$S/disk$d.luks" ||
    fail "the source's passphrase does not open its own disk$d"
  if cryptsetup luksOpen --test-passphrase --key-file "$TMP/pass$d" "$C/disk$d.luks" 2>/dev/null; then
    fail "the source's disk$d passphrase opens the clone's disk$d"
  fi
done
ok "the source's disk secrets open the source's disks, not the clone's (cryptsetup --test-passphrase)"

boot_check esx1 cl1 clonemark
boot_check esx1 src1 clonemark
ok "both VMs boot and read the markers the source wrote before the clone"

# --deep: new volume keys as well
mkd() { cryptsetup luksDump "$1" | grep -A1 'MK digest'; }
expect_rc 0 vmseal vm clone src1 cl2 --deep
C2=$(stack_vm_home esx1 cl2)
for f in disk0.luks disk1.luks nvram.luks; do
  [ "$(mkd "$S/$f")" != "$(mkd "$C2/$f")" ] || fail "--deep: the clone's $f has the source's volume key"
done
[ "$(mkd "$S/disk0.luks")" = "$(mkd "$C/disk0.luks")" ] || fail "without --deep the volume key is expected to stay"
boot_check esx1 cl2 clonemark
ok "vm clone --deep: new volume keys for the disks and the NVRAM; the clone reads the markers"

# refusals: a running source, a name taken, no Cryptographer.Clone
vmseal vm set src1 --append "console=ttyS0 quiet vmseal.wait=1" >/dev/null
expect_rc 0 vmseal vm start src1
expect_rc 6 vmseal vm clone src1 cl3
grep -q 'powered off' <<<"$OUT" || { echo "$OUT" >&2; fail "running source: message"; }
expect_rc 0 vmseal vm stop src1
stack_vm_wait_off src1 60 || fail "src1 did not stop"
expect_rc 6 vmseal vm clone src1 cl1
printf 'bobpassword1\n' > "$TMP/bobpw"
expect_rc 0 vmseal user add bob --role NoCryptoAdmin --password-file "$TMP/bobpw"
bob() { XDG_CONFIG_HOME=$TMP/bob "$STACK_CLI" "$@"; }
bob --url "$STACK_URL" --ca "$STACK_CA" login bob --password-file "$TMP/bobpw" >/dev/null || fail "bob login"
rc=0; OUT=$(bob vm clone src1 cl4 2>&1) || rc=$?
[ $rc -eq 5 ] || fail "bob's clone: exit $rc, expected 5: $OUT"
grep -q "lacks the Cryptographer.Clone privilege on vm:src1" <<<"$OUT" || fail "bob's clone message: $OUT"
vmseal --json events --result denied --user bob --action vm.clone | jq -e 'length >= 1' >/dev/null ||
  fail "no denied event for bob's clone"
[ ! -e "$(stack_vm_home esx1 cl3)" ] && [ ! -e "$(stack_vm_home esx1 cl4)" ] || fail "a refused clone left a folder"
expect_rc 4 vmseal vm info cl4
expect_rc 0 vmseal vm create plain1 --host esx1 --no-encrypt --disk 8
rc=0; OUT=$(bob vm clone plain1 plain2 2>&1) || rc=$?
[ $rc -eq 0 ] || fail "bob's clone of a plain VM: exit $rc: $OUT"
[ "$(stack_vm_field plain2 .encrypted)" = false ] || fail "the plain VM's clone is encrypted"
ok "refused: a running source (exit 6), a name taken (6), Cryptographer.Clone missing (403, exit 5, denied event); a plain VM clones without it"
# --- vm disk rm: the last disk with its file kept; a first disk (the later one moves down)
expect_rc 0 vmseal vm disk rm cl1 1 --keep-file
grep -q '^disk1\.' "$C/vm.conf" && fail "disk1 still in cl1's vm.conf"
[ -f "$C/disk1.luks" ] || fail "--keep-file: disk1.luks was deleted"
[ "$(stack_vm_field cl1 '.runtime.disks | length')" = 1 ] || fail "cl1 does not show 1 disk"
expect_rc 0 vmseal vm set cl1 --append "console=ttyS0 quiet vmseal.check=clonemark"
out=$(stack_vm_boot esx1 cl1 300) || fail "boot of cl1 after disk rm"
grep -q '^VMSEAL-CHECK-OK' <<<"$out" || { echo "$out" >&2; fail "cl1 does not read its marker after disk rm"; }
grep -q '^VMSEAL-DISK vdb' <<<"$out" && fail "cl1's guest still sees a second disk"
ok "vm disk rm --keep-file: disk1 gone from vm.conf (its key safe too), its file kept; the VM boots with disk0"

d0=$(sed -n 's/^disk1.keysafe = //p' "$C2/vm.conf")
expect_rc 0 vmseal vm disk rm cl2 0
[ ! -e "$C2/disk0.luks" ] || fail "disk0.luks was not deleted"
[ "$(sed -n 's/^disk0.file = //p' "$C2/vm.conf")" = disk1.luks ] || fail "disk1 did not move down to disk0"
[ "$(sed -n 's/^disk0.keysafe = //p' "$C2/vm.conf")" = "$d0" ] || fail "disk1's key safe did not move with it"
expect_rc 0 vmseal vm set cl2 --append "console=ttyS0 quiet"
out=$(stack_vm_boot esx1 cl2 300) || fail "boot of cl2 after disk rm"
grep -q '^VMSEAL-DISK vda 16384 sectors' <<<"$out" || { echo "$out" >&2; fail "cl2's only disk is not the former 8 MiB disk1"; }
grep -q '^VMSEAL-DISK vdb' <<<"$out" && fail "cl2 still has two disks"
expect_rc 0 vmseal vm disk add cl2 --size 4
[ "$(sed -n 's/^disk1.file = //p' "$C2/vm.conf")" = disk1-1.luks ] || fail "the new disk1 did not get a free file name"
out=$(stack_vm_boot esx1 cl2 300) || fail "boot of cl2 with a new disk"
grep -q '^VMSEAL-DISK vdb 8192 sectors' <<<"$out" || { echo "$out" >&2; fail "cl2's new disk"; }
expect_rc 2 vmseal vm disk rm cl2 9
expect_rc 4 vmseal vm disk rm cl2 5
vmseal --json events --action vm.disk-remove | jq -e 'length == 2' >/dev/null || fail "no vm.disk-remove events"
ok "vm disk rm: disk0 deleted, disk1 moved down with its key safe and boots; a new disk gets a free file name; bad indexes refused"
finish
