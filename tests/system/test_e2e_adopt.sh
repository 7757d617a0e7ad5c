#!/usr/bin/env bash
# End to end, adopting LUKS1 images someone made (docs/architecture.md,
# "Disk import"): one made by `qemu-img create -f luks`, one by
# `cryptsetup luksFormat` on an image file, each holding the guest's marker
# written through QEMU's luks driver, join an encrypted VM through the API
# (`vmseal vm disk adopt`, the passphrase from a file and from a
# descriptor) without re-encrypting their data: vmseal's keyslot and key
# safe are added, the guest reads both markers, and with
# --remove-passphrase the user's passphrase no longer opens the VM's copy.
# The passphrases are nowhere in the daemons' logs, events or datastore.
# Abuse: a wrong passphrase (422, nothing written), a LUKS2 image, a
# non-LUKS file, paths leading out of the images folder, a symlink, the
# same image twice, a plain VM, NoCryptoAdmin (403). Then the room check
# before imports and adoptions on a small datastore (a tmpfs): refused
# naming the MiB needed and free, nothing recorded.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/system/system_lib.sh"
[ "$(id -u)" -eq 0 ] || fail "mounting a tmpfs needs root"

stack_kmsd_setup kms1
stack_kmsd_start kms1
stack_managerd_setup
stack_managerd_start
stack_login
stack_kms_add prov1 kms1
stack_hostd_setup esx1
DS=$STACK_DIR/esx1/datastore
mount -t tmpfs -o size=160m,mode=0700 vmseal-test-adopt "$DS" || fail "mount a tmpfs on $DS"
at_exit "umount -l '$DS'"     # after stack_cleanup (registered first)
stack_hostd_start esx1
IMG=$STACK_DIR/esx1/images

pa=user-pass-A-$RANDOM$RANDOM
pb=user-pass-B-$RANDOM$RANDOM
printf '%s' "$pa" > "$TMP/pa"
printf '%s' "$pb" > "$TMP/pb"
printf 'wrong-pass-%s' "$RANDOM" > "$TMP/wrong"
chmod 600 "$TMP/pa" "$TMP/pb" "$TMP/wrong"

# qemu-img's LUKS creation fails now and then on a loaded machine (its
# PBKDF calibration): tried up to ten times
made=0
for ((i = 0; i < 10; i++)); do
  rm -f "$IMG/a.luks"
  if qemu-img create -q -f luks --object "secret,id=s0,file=$TMP/pa" \
       -o key-secret=s0,iter-time=50 "$IMG/a.luks" 16M 2>"$TMP/qerr"; then
    made=1
    break
  fi
done
[ $made = 1 ] || { cat "$TMP/qerr" >&2; fail "qemu-img create -f luks"; }
truncate -s 18M "$IMG/b.luks"
cryptsetup luksFormat -q --type luks1 --iter-time 50 --key-file "$TMP/pb" "$IMG/b.luks" ||
  fail "cryptsetup luksFormat --type luks1"
cryptsetup isLuks --type luks1 "$IMG/a.luks" || fail "a.luks is not LUKS1"

# the guest's marker (tests/guest: 512 bytes at 1 MiB of each disk), written
# through QEMU's luks driver with the user's passphrase
m=adopted-$RANDOM$RANDOM
put_marker() {   # IMAGE PASSFILE DISK
  printf 'VMSEAL-MARKER:%s:%s\n' "$m" "$3" > "$TMP/blk"
  truncate -s 512 "$TMP/blk"
  qemu-io --object "secret,id=s0,file=$2" --image-opts \
    "driver=luks,key-secret=s0,file.driver=file,file.filename=$1" \
    -c "write -s $TMP/blk 1M 512" >/dev/null || fail "writing the marker into $1"
}
put_marker "$IMG/a.luks" "$TMP/pa" vda
put_marker "$IMG/b.luks" "$TMP/pb" vdb
sum_a=$(sha256sum < "$IMG/a.luks")
ok "a LUKS1 image by qemu-img create -f luks, one by cryptsetup luksFormat; markers written through QEMU's luks driver"

expect_rc 0 vmseal vm create adp --host esx1 --encrypt --memory 128 \
  --kernel vmlinuz --initrd initrd.gz --append "console=ttyS0 quiet"
H=$(stack_vm_home esx1 adp)
no_disk() {
  ! grep -q '^disk[0-9]*\.' "$H/vm.conf" || fail "$1 left a disk in vm.conf"
  ! ls "$H" | grep -q 'disk' || { ls -l "$H" >&2; fail "$1 left a file in the VM home"; }
}

# --- abuse first: nothing may be written
expect_rc 1 vmseal vm disk adopt adp --image a.luks --passphrase-file "$TMP/wrong"
grep -qi 'passphrase given opens none' <<<"$OUT" || { echo "$OUT" >&2; fail "a wrong passphrase: no clear refusal"; }
grep -q "wrong-pass" <<<"$OUT" && fail "the refusal echoes the passphrase"
# the manager's answer itself (a session of its own for curl)
XDG_CONFIG_HOME=$TMP/adm "$STACK_CLI" --url "$STACK_URL" --ca "$STACK_CA" login administrator \
  --password-file "$STACK_DIR/manager/admin-password" >/dev/null || fail "second login"
tok=$(jq -r .token "$TMP/adm/vmseal/session.json")
code=$(curl -sS --max-time 60 --cacert "$STACK_CA" -H "Authorization: Bearer $tok" \
  -H 'Content-Type: application/json' -o "$TMP/resp" -w '%{http_code}' \
  -d "{\"adopt\": \"a.luks\", \"passphrase\": \"$(cat "$TMP/wrong")\"}" "$STACK_URL/api/v1/vms/adp/disks")
[ "$code" = 422 ] || { cat "$TMP/resp" >&2; fail "a wrong passphrase: HTTP $code, not 422"; }
grep -q "wrong-pass" "$TMP/resp" && fail "the 422 answer echoes the passphrase"
code=$(curl -sS --max-time 60 --cacert "$STACK_CA" -H "Authorization: Bearer $tok" \
  -H 'Content-Type: application/json' -o "$TMP/resp" -w '%{http_code}' \
  -d "{\"adopt\": \"a.luks\", \"passphrase\": \"$(head -c 1100 /dev/zero | tr '\0' x)\"}" \
  "$STACK_URL/api/v1/vms/adp/disks")
[ "$code" = 400 ] || { cat "$TMP/resp" >&2; fail "a 1100-byte passphrase: HTTP $code, not 400"; }
no_disk "a wrong passphrase"
[ "$(sha256sum < "$IMG/a.luks")" = "$sum_a" ] || fail "a refused adoption changed the source image"
ok "a wrong passphrase: 422, nothing written, the source unchanged; a passphrase over 1024 bytes: 400"

truncate -s 18M "$IMG/c2.luks"
cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --iter-time 50 --key-file "$TMP/pa" "$IMG/c2.luks" ||
  fail "cryptsetup luksFormat --type luks2"
head -c 8M /dev/urandom > "$IMG/noise.raw"
ln -s "$IMG/a.luks" "$IMG/link.luks"
for src in c2.luks noise.raw /etc/passwd ../../manager/admin-password link.luks missing.luks; do
  expect_rc 2 vmseal vm disk adopt adp --image "$src" --passphrase-file "$TMP/pa"   # 400
  grep -qi 'LUKS1\|images folder\|LUKS version 2' <<<"$OUT" || { echo "$OUT" >&2; fail "refusal of $src does not say why"; }
  grep -q "$pa" <<<"$OUT" && fail "the refusal of $src echoes the passphrase"
done
no_disk "a refused source"
ok "refused (400, said why): a LUKS2 image, a non-LUKS file, an absolute path, a path leading out, a symlink, a missing image"

expect_rc 0 vmseal vm create plainv --host esx1 --no-encrypt --kernel vmlinuz --initrd initrd.gz
expect_rc 2 vmseal vm disk adopt plainv --image a.luks --passphrase-file "$TMP/pa"
grep -qi 'not encrypted' <<<"$OUT" || { echo "$OUT" >&2; fail "adopting into a plain VM"; }
ok "refused: adopting into a plain VM"

printf 'bobpassword1\n' > "$TMP/bobpw"
expect_rc 0 vmseal user add bob --role NoCryptoAdmin --password-file "$TMP/bobpw"
bob() { XDG_CONFIG_HOME=$TMP/bob "$STACK_CLI" "$@"; }
bob --url "$STACK_URL" --ca "$STACK_CA" login bob --password-file "$TMP/bobpw" >/dev/null || fail "bob login"
rc=0
OUT=$(bob vm disk adopt adp --image a.luks --passphrase-file "$TMP/pa" 2>&1) || rc=$?
[ $rc = 5 ] || { echo "$OUT" >&2; fail "NoCryptoAdmin adopted a disk into an encrypted VM (exit $rc)"; }
grep -q "Cryptographer.AddDisk" <<<"$OUT" || fail "denied message: $OUT"
no_disk "a denied adoption"
ok "NoCryptoAdmin: 403 (Cryptographer.AddDisk), nothing written"

# --- adopted: the passphrase from a file, kept; from a descriptor, removed
expect_rc 0 vmseal vm disk adopt adp --image a.luks --passphrase-file "$TMP/pa"
grep -q 'disk0 adopted' <<<"$OUT" || { echo "$OUT" >&2; fail "adopt output"; }
OUT=$(vmseal vm disk adopt adp --image b.luks --passphrase-fd 3 --remove-passphrase 3<"$TMP/pb" 2>&1) ||
  { echo "$OUT" >&2; fail "adopt with --passphrase-fd"; }
grep -q 'disk1 adopted' <<<"$OUT" || { echo "$OUT" >&2; fail "adopt output (fd)"; }
for d in 0 1; do
  cryptsetup isLuks --type luks1 "$H/disk$d.luks" || fail "disk$d.luks is not LUKS1"
  grep -q "^disk$d.keysafe = " "$H/vm.conf" || fail "no key safe for disk$d"
done
[ "$(grep "^disk0.luks.uuid" "$H/vm.conf" | awk '{print $3}')" = "$(cryptsetup luksUUID "$IMG/a.luks")" ] ||
  fail "disk0's LUKS UUID is not the adopted image's"
cryptsetup open --test-passphrase --key-file "$TMP/pa" "$H/disk0.luks" || fail "the kept passphrase does not open disk0"
cryptsetup open --test-passphrase --key-file "$TMP/pb" "$H/disk1.luks" 2>/dev/null &&
  fail "--remove-passphrase: the user's passphrase still opens disk1"
[ "$(cryptsetup luksDump "$H/disk1.luks" | grep -c ': ENABLED')" = 1 ] || fail "disk1 should hold vmseal's keyslot only"
# not re-encrypted: the payload's ciphertext is the source's, byte for byte
off=$((2 * 1024 * 1024))
cmp -s <(tail -c +$((off + 1)) "$IMG/a.luks") <(tail -c +$((off + 1)) "$H/disk0.luks") ||
  fail "disk0's payload differs from the source's (re-encrypted?)"
[ "$(sha256sum < "$IMG/a.luks")" = "$sum_a" ] || fail "adopting changed the source image"
ok "adopted (qemu-img's with --passphrase-file, cryptsetup's with --passphrase-fd and --remove-passphrase): vmseal's keyslot added, data untouched"

expect_rc 6 vmseal vm disk adopt adp --image a.luks --passphrase-file "$TMP/pa"
grep -q 'already' <<<"$OUT" || { echo "$OUT" >&2; fail "the same image twice"; }
ok "the same image (LUKS UUID) twice: 409"

boot_check esx1 adp "$m"
ok "the guest reads its markers from both adopted disks"

vmseal --json events --action vm.disk-add > "$TMP/ev.json" || fail "events"
jq -e 'map(select(.result == "ok" and .new.adopt != null)) | length == 2' "$TMP/ev.json" >/dev/null ||
  { cat "$TMP/ev.json" >&2; fail "vm.disk-add events of the adoptions"; }
for p in "$pa" "$pb"; do
  if grep -r -a -q "$p" "$STACK_DIR" "$TMP/ev.json"; then
    grep -r -a -l "$p" "$STACK_DIR" >&2
    fail "a user's passphrase is in the stack's files (logs, store, datastore)"
  fi
done
ok "audited (vm.disk-add events name the image); the passphrases are in no log, event or datastore file"

# --- the room check, before anything is recorded
expect_rc 0 vmseal vm create sp --host esx1 --encrypt --kernel vmlinuz --initrd initrd.gz
SH=$(stack_vm_home esx1 sp)
free_mb=$(($(stat -f -c '%a * %S' "$DS") / 1048576))
head -c $(((free_mb - 3) * 1048576)) /dev/zero > "$DS/filler" || fail "filling the datastore"
qemu-img create -q -f qcow2 "$IMG/big.qcow2" 40M
expect_rc 1 vmseal vm disk adopt sp --image a.luks --passphrase-file "$TMP/pa"
grep -q 'not enough room.*needs [0-9]* MiB, [0-9]* MiB are free' <<<"$OUT" || { echo "$OUT" >&2; fail "adopt: room refusal"; }
expect_rc 1 vmseal vm disk add sp --from big.qcow2
grep -q 'not enough room.*needs [0-9]* MiB, [0-9]* MiB are free' <<<"$OUT" || { echo "$OUT" >&2; fail "disk add --from: room refusal"; }
! grep -q '^disk[0-9]*\.' "$SH/vm.conf" || fail "a refused import left a disk in vm.conf"
! ls "$SH" | grep -q 'disk' || fail "a refused import left a file"
expect_rc 1 vmseal vm create sp2 --host esx1 --encrypt --disk-from big.qcow2
grep -q 'not enough room.*needs [0-9]* MiB, [0-9]* MiB are free' <<<"$OUT" || { echo "$OUT" >&2; fail "vm create --disk-from: room refusal"; }
[ ! -e "$(stack_vm_home esx1 sp2)" ] || fail "a refused vm create --disk-from made a VM home"
rm -f "$DS/filler"
ok "no room: adopt, disk add --from and vm create --disk-from refused before anything is written, naming MiB needed and free"

# --- imports are the manager's tasks: task ls, task wait, the inventory's disks refreshed
expect_rc 0 vmseal --json vm disk add sp --from big.qcow2 --no-wait
tid=$(jq -r '.task.id' <<<"$OUT")
[[ "$tid" =~ ^[0-9]+$ ]] || { echo "$OUT" >&2; fail "disk add --from: no manager task in the answer"; }
vmseal --json task ls | jq -e --argjson id "$tid" '.tasks[] | select(.id == $id and .action == "import")' >/dev/null ||
  fail "the import is not in task ls"
expect_rc 0 vmseal task wait "$tid"
vmseal --json task info "$tid" | jq -e '.state == "success" and .progress == 100' >/dev/null ||
  { vmseal --json task info "$tid" >&2; fail "the import task did not end in success"; }
vmseal --json vm info sp | jq -e '.disks | length == 1 and .[0].size_mb == 40' >/dev/null ||
  { vmseal --json vm info sp >&2; fail "the inventory's disks were not refreshed after the import"; }
expect_rc 0 vmseal --json vm create sp3 --host esx1 --encrypt --disk 4 --disk-from big.qcow2 --no-wait \
  --kernel vmlinuz --initrd initrd.gz
tid3=$(jq -r '.task.id' <<<"$OUT")
[[ "$tid3" =~ ^[0-9]+$ ]] || { echo "$OUT" >&2; fail "vm create --disk-from: no manager task in the answer"; }
expect_rc 0 vmseal task wait "$tid3"
vmseal --json vm info sp3 | jq -e '[.disks[].size_mb] == [4, 40]' >/dev/null ||
  { vmseal --json vm info sp3 >&2; fail "the inventory's disks of sp3"; }
vmseal --json events --action vm.disk-import | jq -e 'map(select(.result == "ok")) | length == 2' >/dev/null ||
  fail "vm.disk-import events"
ok "vm disk add --from and vm create --disk-from are manager tasks (task ls, task wait, success at 100%); the inventory's disks are the host's afterwards; event vm.disk-import"

# --- cancelling an import: the host's task stops at a window's end, the
# partial disk is kept, task resume finishes it. A 1 GiB sparse qcow2 into
# the plain VM is 16 windows; one of its qemu-img is held (SIGSTOP, found
# as hostd's child) while the task is cancelled.
qemu-img create -q -f qcow2 "$IMG/long.qcow2" 1G
qemu-io -f qcow2 -c "write -P 0x5a 0 1M" -c "write -P 0x5b 1000M 1M" "$IMG/long.qcow2" >/dev/null
PH=$(stack_vm_home esx1 plainv)
expect_rc 0 vmseal --json vm disk add plainv --from long.qcow2 --no-wait
ltid=$(jq -r '.task.id' <<<"$OUT")
held=
for ((i = 0; i < 400; i++)); do
  held=$(pgrep -P "${STACK_PID[esx1]}" -x qemu-img | head -n1 || true)
  [ -n "$held" ] && kill -STOP "$held" 2>/dev/null && break
  held=
  sleep 0.02
done
if [ -z "$held" ]; then
  echo "# the import had finished before it could be held: cancel not exercised"
  expect_rc 0 vmseal task wait "$ltid"
else
  expect_rc 0 vmseal task cancel "$ltid" --no-wait
  kill -CONT "$held"
  stack_until 120 sh -c "'$STACK_CLI' --json task info $ltid | jq -e '.state == \"cancelled\"'" ||
    { vmseal --json task info "$ltid" >&2; fail "the import task did not end cancelled"; }
  [ -e "$PH/disk0.img.partial" ] || { ls -l "$PH" >&2; fail "the cancelled import did not keep its partial disk"; }
  grep -q '^op = create' "$PH/vm.conf" || fail "vm.conf does not keep the unfinished import"
  ok "task cancel: the host's import stopped, the task is cancelled, the partial disk and vm.conf's create kept"
  expect_rc 0 vmseal task resume "$ltid" --no-wait
  expect_rc 0 vmseal task wait "$ltid"
fi
vmseal --json task info "$ltid" | jq -e '.state == "success"' >/dev/null || fail "the import did not end in success"
! grep -q '^op = ' "$PH/vm.conf" || fail "the import left its operation"
[ "$(qemu-img compare -q -f qcow2 -F raw "$IMG/long.qcow2" "$PH/disk0.img"; echo $?)" = 0 ] ||
  fail "the imported disk differs from its source"
vmseal --json vm info plainv | jq -e '.disks | length == 1 and .[0].size_mb == 1024' >/dev/null ||
  fail "the inventory's disks of plainv"
ok "task resume finished the import; the disk is its source's content"
finish
