#!/usr/bin/env bash
# vmseal-crypto-util on VM home folders made by vmseal-hostd's own code
# (tests/seal/make-vmhome.c): check names the KEK of each disk from vm.conf;
# disk passphrase/decrypt/verify --vm-config open the disks (qemu-img is the
# peer); a wrong KEK, a vm.conf copied to another VM's folder and a disk a
# running QEMU holds are refused.
source "$VMSEAL_SRC/tests/testlib.sh"
U=$VMSEAL_BUILD/crypto-util/vmseal-crypto-util
MK=$VMSEAL_BUILD/tests/seal/make-vmhome
cd "$TMP"
umask 077

expect_rc() { # WANT CMD...
  local want=$1 rc=0; shift
  "$@" >out.txt 2>err.txt || rc=$?
  [ "$rc" -eq "$want" ] || { cat out.txt err.txt >&2; fail "'$*' exited $rc, want $want"; }
}
home_of() { dirname "$(grep -l "^name = $1\$" ds/*/vm.conf)"; }

mkdir ds
head -c 32 /dev/urandom > kek1; head -c 32 /dev/urandom > kek2
fw=bios; [ -r /usr/share/OVMF/OVMF_VARS_4M.fd ] && fw=uefi
# hostd makes the LUKS images with its own code (no qemu-img), so no retry needed.
$MK ds kek1 kek-vm1 vm1 2 $fw > uuid1 || fail "make-vmhome vm1"
$MK ds kek2 kek-vm2 vm2 1 bios > uuid2 || fail "make-vmhome vm2"
H1=$(home_of vm1); H2=$(home_of vm2)
[ -f "$H1/vm.conf" ] && [ -f "$H2/vm.conf" ] || fail "no VM home folders"
d0=$H1/$(sed -n 's/^disk0.file = //p' "$H1/vm.conf")
d1=$H1/$(sed -n 's/^disk1.file = //p' "$H1/vm.conf")
e0=$H2/$(sed -n 's/^disk0.file = //p' "$H2/vm.conf")
[ "$(cryptsetup luksUUID "$d0")" = "$(sed -n 's/^disk0.luks.uuid = //p' "$H1/vm.conf")" ] ||
  fail "disk0 LUKS UUID != vm.conf disk0.luks.uuid"

# --- check: KEK id of each disk from the vm.conf beside it, no key needed ----
expect_rc 0 $U check "$d0" "$d1" "$e0"
grep -q "$d0: encrypted (LUKS1 disk.*disk 0 of VM 'vm1', key safe disk0.keysafe.*KEK 'kek-vm1' at provider 'local'" out.txt ||
  fail "check disk0: $(cat out.txt)"
grep -q "$d1: encrypted (LUKS1 disk.*disk 1 of VM 'vm1'.*KEK 'kek-vm1'" out.txt || fail "check disk1"
grep -q "$e0: encrypted (LUKS1 disk.*disk 0 of VM 'vm2'.*KEK 'kek-vm2'" out.txt || fail "check vm2 disk0"
expect_rc 0 $U check --json "$d0"
/usr/bin/python3 -c '
import json, sys
r = json.load(open("out.txt"))[0]
assert r["format"] == "luks1" and r["kek_id"] == "kek-vm1" and r["provider"] == "local", r
assert r["vm_config"].endswith("/vm.conf") and r["vm_config_key"] == "disk0.keysafe", r
' || fail "check --json of a VM disk"
expect_rc 0 $U check "$H1/vm.conf"
grep -q "VM config of 'vm1' with" out.txt || fail "check vm.conf: $(cat out.txt)"
for k in vm.keysafe disk0.keysafe disk1.keysafe; do
  grep -q "^  $k: KEK 'kek-vm1' at provider 'local'" out.txt || fail "check vm.conf lists $k"
done
expect_rc 0 $U check --json "$H1/vm.conf"
/usr/bin/python3 -c '
import json
r = json.load(open("out.txt"))[0]
ks = {e["key"]: e["kek_id"] for e in r["keysafes"]}
assert r["format"] == "vm-config" and r["status"] == "keysafe", r
assert ks == {"vm.keysafe": "kek-vm1", "disk0.keysafe": "kek-vm1", "disk1.keysafe": "kek-vm1"}, ks
' || fail "check --json vm.conf: $(cat out.txt)"
ok "check: each VM disk image names its KEK from vm.conf; vm.conf lists its key safes (text, JSON)"

# --- data through QEMU's LUKS driver, then offline work with the KEK ---------
head -c $((2 << 20)) /dev/urandom > data0.raw
expect_rc 0 $U disk passphrase --kek-file kek1 --vm-config "$H1/vm.conf" --disk 0 --out-file pass0
[ "$(stat -c %a pass0)" = 600 ] || fail "passphrase file mode"
qemu-img convert -n -f raw data0.raw --object secret,id=s0,file=pass0 \
  --target-image-opts "driver=luks,key-secret=s0,file.filename=$d0" || fail "qemu-img write disk0"
qemu-img convert --object secret,id=s0,file=pass0 \
  --image-opts "driver=luks,key-secret=s0,file.filename=$d0" -O raw back0.raw || fail "qemu-img read"
cmp back0.raw data0.raw || fail "qemu-img read back differs"
# automatic detection: the image alone (no .vmdesc; vm.conf beside it names it)
expect_rc 0 $U disk decrypt --kek-file kek1 "$d0" plain0.raw
cmp plain0.raw data0.raw || fail "disk decrypt of a VM disk is not byte-exact"
expect_rc 0 $U disk decrypt --kek-file kek1 --vm-config "$H1/vm.conf" --disk 0 plain0b.raw
cmp plain0b.raw data0.raw || fail "disk decrypt --vm-config is not byte-exact"
expect_rc 0 $U disk verify --kek-file kek1 --kek-id kek-vm1 --vm-config "$H1/vm.conf" --disk 1
expect_rc 0 $U disk passphrase --kek-file kek1 "$d1" --out-file pass1
qemu-img convert --object secret,id=s0,file=pass1 \
  --image-opts "driver=luks,key-secret=s0,file.filename=$d1" -O raw back1.raw || fail "disk1 open"
[ "$(stat -c %s back1.raw)" = $((3 << 20)) ] || fail "disk1 size"
if [ $fw = uefi ]; then
  expect_rc 0 $U disk verify --kek-file kek1 --vm-config "$H1/vm.conf" --disk nvram
  expect_rc 0 $U disk decrypt --kek-file kek1 --vm-config "$H1/vm.conf" --disk nvram nv.raw
  cmp nv.raw /usr/share/OVMF/OVMF_VARS_4M.fd || fail "NVRAM decrypts to the OVMF template"
  nv=$H1/$(sed -n 's/^nvram.file = //p' "$H1/vm.conf")
  expect_rc 0 $U check "$nv"
  grep -q "NVRAM of VM 'vm1', key safe vm.keysafe.*KEK 'kek-vm1'" out.txt || fail "check NVRAM: $(cat out.txt)"
  expect_rc 2 $U disk verify --kek-file kek2 "$nv"
fi
ok "disk passphrase/decrypt/verify --vm-config (and detected): qemu-img opens the disks, byte-exact ($fw)"

# --- refusals -----------------------------------------------------------------
expect_rc 2 $U disk passphrase --kek-file kek2 --vm-config "$H1/vm.conf" --disk 0 --out-file x
[ ! -e x ] || fail "a wrong KEK left a passphrase file"
expect_rc 2 $U disk verify --kek-file kek1 --kek-id other --vm-config "$H1/vm.conf" --disk 0
grep -q "wrapped by KEK 'kek-vm1'" err.txt || fail "wrong --kek-id message"
# vm1's vm.conf copied into (a copy of) vm2's folder: vm2's disk is refused,
# by the LUKS UUID check and, with that edited away, by the key safe's binding.
cp -a "$H2" ds/vm2copy
cp "$H1/vm.conf" ds/vm2copy/vm.conf
expect_rc 2 $U disk passphrase --kek-file kek1 --vm-config ds/vm2copy/vm.conf --disk 0 --out-file x
grep -q "vm.conf of another VM" err.txt || fail "copied vm.conf: $(cat err.txt)"
[ ! -e x ] || fail "copied vm.conf left a passphrase file"
expect_rc 2 $U check ds/vm2copy/$(basename "$e0")
u2=$(cryptsetup luksUUID "$e0")
sed -i "s/^disk0.luks.uuid = .*/disk0.luks.uuid = $u2/" ds/vm2copy/vm.conf
expect_rc 2 $U disk decrypt --kek-file kek1 --vm-config ds/vm2copy/vm.conf --disk 0 x.raw
[ ! -e x.raw ] || fail "binding: output written"
grep -qi "key safe\|authentic\|object\|bound" err.txt || fail "binding refusal message: $(cat err.txt)"
# vm2's own disk with vm2's KEK works (the refusals above are not a broken tool)
expect_rc 0 $U disk verify --kek-file kek2 --vm-config "$H2/vm.conf" --disk 0
# a running QEMU holds the image: refused; once it is gone, fine
mkfifo hold
qemu-io -f raw "$d0" < hold > /dev/null 2>&1 &
qpid=$!
exec 7> hold
at_exit "kill $qpid 2>/dev/null"
for i in $(seq 50); do   # until qemu-io has the image open
  $U disk verify --kek-file kek1 --vm-config "$H1/vm.conf" --disk 0 >/dev/null 2>&1 || break
  sleep 0.1
done
expect_rc 2 $U disk passphrase --kek-file kek1 --vm-config "$H1/vm.conf" --disk 0 --out-file x
grep -q "in use\|open for writing" err.txt || fail "image held by QEMU: $(cat err.txt)"
expect_rc 2 $U disk decrypt --kek-file kek1 "$d0" x.raw
exec 7>&-
wait $qpid || true
expect_rc 0 $U disk verify --kek-file kek1 --vm-config "$H1/vm.conf" --disk 0
# An unfinished hostd operation (vm.conf as vmseal-hostd leaves it while
# encrypting: op, diskN.next.*): check names the new image's KEK; the disk
# verbs refuse until hostd has finished.
cp -a "$H1" ds/vmop
f0=$(basename "$d0")
sed -i -e 's/^disk0\.file = /disk0.next.file = /' -e 's/^disk0\.luks\.uuid = /disk0.next.luks.uuid = /' \
  -e 's/^disk0\.keysafe = /disk0.next.keysafe = /' ds/vmop/vm.conf
printf 'disk0.file = disk0.img\nop = encrypt\nop.kek = kek-vm1\n' >> ds/vmop/vm.conf
expect_rc 0 $U check ds/vmop/$f0
grep -q "new image of disk 0 of VM 'vm1', key safe disk0.next.keysafe.*unfinished 'encrypt'.*KEK 'kek-vm1'" out.txt ||
  fail "check of an image an unfinished operation writes: $(cat out.txt)"
expect_rc 2 $U disk verify --kek-file kek1 --vm-config ds/vmop/vm.conf --disk 0.next
grep -q "unfinished 'encrypt' operation" err.txt || fail "unfinished operation not refused: $(cat err.txt)"
expect_rc 2 $U disk decrypt --kek-file kek1 ds/vmop/$f0 x.raw
[ ! -e x.raw ] || fail "unfinished operation: output written"
# A vm.conf vmseal-hostd would refuse (read through the same schema module):
# check reports it naming the key and line, the disk verbs do not use it.
cp -a "$H1" ds/vmbad
sed -i 's/^disks = .*/disks = 9/' ds/vmbad/vm.conf
line=$(grep -n '^disks = ' ds/vmbad/vm.conf | cut -d: -f1)
expect_rc 2 $U check ds/vmbad/vm.conf
grep -q "vm.conf line $line: disks: 9 is out of range" out.txt || fail "check of a bad vm.conf: $(cat out.txt)"
expect_rc 2 $U check ds/vmbad/$f0
grep -q "disks: 9 is out of range" out.txt || fail "check of a disk beside a bad vm.conf: $(cat out.txt)"
expect_rc 2 $U disk verify --kek-file kek1 --vm-config ds/vmbad/vm.conf --disk 0
grep -q "line $line: disks" err.txt || fail "disk verify with a bad vm.conf: $(cat err.txt)"
sed -i -e 's/^disks = .*/disks = 2/' -e 's/^disk1.file = .*/disk1.file = disk0.luks/' ds/vmbad/vm.conf
expect_rc 2 $U disk decrypt --kek-file kek1 --vm-config ds/vmbad/vm.conf --disk 1 x.raw
grep -q "disk1.file: disk0.luks is already disk0.file" err.txt || fail "two disks on one image: $(cat err.txt)"
[ ! -e x.raw ] || fail "bad vm.conf: output written"
# rekey/keyslot work on VM disks belongs to vmseal-hostd
expect_rc 64 $U disk rekey --kek-file kek1 --vm-config "$H1/vm.conf" --disk 0
ok "refused: wrong KEK, wrong --kek-id, vm.conf copied to another VM's folder (UUID check and key safe binding), image held by a running QEMU, unfinished hostd operation (check names the new image's KEK), a vm.conf hostd would refuse (key and line named)"

# --- symlinks in a VM home are not followed (issue 9) ------------------------
# vm2's disk replaced by a symlink to an image outside the home: the verbs
# on the VM home refuse it and the outside file is left as it was.
mv "$e0" outside.luks
ln -s "$TMP/outside.luks" "$e0"
sum=$(sha256sum < outside.luks)
expect_rc 2 $U disk decrypt --kek-file kek2 --vm-config "$H2/vm.conf" --disk 0 sym.raw
grep -qi "symlink\|too many levels" err.txt || fail "disk decrypt through a symlink: $(cat err.txt)"
[ ! -e sym.raw ] || fail "disk decrypt through a symlink wrote its output"
expect_rc 2 $U disk decrypt --kek-file kek2 "$e0" sym2.raw
expect_rc 2 $U disk verify --kek-file kek2 --vm-config "$H2/vm.conf" --disk 0
expect_rc 2 $U disk passphrase --kek-file kek2 --vm-config "$H2/vm.conf" --disk 0 --out-file sym.pass
[ ! -s sym.pass ] || fail "passphrase given for an image behind a symlink"
$U check "$e0" >out.txt 2>&1 || true
grep -q "symlink" out.txt || fail "check follows a symlink: $(cat out.txt)"
[ "$(sha256sum < outside.luks)" = "$sum" ] || fail "the symlink's target was changed"
rm "$e0"; mv outside.luks "$e0"
expect_rc 0 $U disk verify --kek-file kek2 --vm-config "$H2/vm.conf" --disk 0
ok "a VM disk replaced by a symlink: decrypt, verify, passphrase and check refuse it; the target is untouched"
