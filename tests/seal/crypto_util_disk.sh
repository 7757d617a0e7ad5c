#!/usr/bin/env bash
# vmseal-crypto-util disk verbs against the real peers: disks the tool makes
# open in qemu-img / qemu-io / cryptsetup with the passphrase from `disk
# passphrase`; descriptors moved to another disk are refused; rekey,
# keyslots, check, interrupted-run recovery.
source "$VMSEAL_SRC/tests/testlib.sh"
U=$VMSEAL_BUILD/crypto-util/vmseal-crypto-util
cd "$TMP"
umask 077

expect_rc() { # WANT CMD...
  local want=$1 rc=0; shift
  "$@" >out.txt 2>err.txt || rc=$?
  [ "$rc" -eq "$want" ] || { cat out.txt err.txt >&2; fail "'$*' exited $rc, want $want"; }
}
qemu_read() { # IMAGE PASSFILE OUT: qemu-img's own LUKS driver decrypts
  qemu-img convert --object "secret,id=s0,file=$2" \
    --image-opts "driver=luks,key-secret=s0,file.filename=$1" -O raw "$3"
}

head -c 32 /dev/urandom > kek1; head -c 32 /dev/urandom > kek2; head -c 32 /dev/urandom > kek3
K1=(--kek-file kek1 --kek-id kek-1)

# A raw image with a recognisable marker, data, a zero gap and a hole.
printf 'VMSEAL-DISK-MARKER-1234567890' > plain.img
head -c $((3 << 20)) /dev/urandom >> plain.img
truncate -s $((8 << 20)) plain.img
head -c 100000 /dev/urandom >> plain.img
truncate -s $((9 << 20)) plain.img

# --- encrypt: LUKS1 + descriptor; the marker is gone ------------------------------
expect_rc 0 $U disk encrypt "${K1[@]}" plain.img enc.img
[ -f enc.img.vmdesc ] || fail "no descriptor"
grep -Eq '^uuid = [0-9a-f-]{36}$' enc.img.vmdesc || fail "descriptor has no uuid"
grep -Eq '^keysafe = vmseal:keysafe:v1:local:kek-1:' enc.img.vmdesc || fail "descriptor key safe"
! grep -q 'state = incomplete' enc.img.vmdesc || fail "descriptor still incomplete"
uuid=$(sed -n 's/^uuid = //p' enc.img.vmdesc)
[ "$(cryptsetup luksUUID enc.img)" = "$uuid" ] || fail "descriptor uuid != LUKS UUID"
! grep -q VMSEAL-DISK-MARKER enc.img || fail "marker visible in the encrypted image"
expect_rc 0 $U check enc.img enc.img.vmdesc
grep -q "enc.img: encrypted (LUKS1 disk" out.txt || fail "check enc.img"
grep -q "KEK 'kek-1' at provider 'local'" out.txt || fail "check shows the KEK id"
expect_rc 1 $U check enc.img plain.img
expect_rc 2 $U disk encrypt "${K1[@]}" plain.img enc.img
grep -q 'already exists' err.txt || fail "encrypt over an existing disk not refused"
# Foreign LUKS images (cryptsetup-made, header work on the file only).
printf 'pw' > pw
truncate -s 20M l1.img l2.img
cryptsetup luksFormat --type luks1 --batch-mode --pbkdf-force-iterations 1000 --key-file pw l1.img
cryptsetup luksFormat --type luks2 --batch-mode --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
  --key-file pw l2.img
expect_rc 0 $U check l1.img l2.img
grep -q 'l1.img: encrypted (LUKS1 disk.*no vmseal descriptor' out.txt || fail "check foreign LUKS1"
grep -q 'l2.img: encrypted (LUKS2' out.txt || fail "check LUKS2"
head -c 1000 enc.img > cut.img
expect_rc 2 $U check cut.img
grep -q 'truncated' out.txt || fail "check of a truncated LUKS image: $(cat out.txt)"
rm -f l1.img l2.img cut.img
ok "disk encrypt: LUKS1 image + descriptor bound to the LUKS UUID; marker gone; check (also foreign LUKS1/LUKS2, truncated)"

# --- passphrase -> QEMU opens the disk ---------------------------------------------
expect_rc 0 $U disk passphrase --kek-file kek1 --out-file pass enc.img
[ "$(stat -c %a pass)" = 600 ] || fail "passphrase file mode $(stat -c %a pass)"
[ "$(stat -c %s pass)" = 64 ] || fail "passphrase file is not 64 hex characters"
qemu_read enc.img pass q.raw || fail "qemu-img cannot open the disk with the passphrase"
cmp plain.img q.raw || fail "qemu-img reads other bytes than the plain image"
grep -q VMSEAL-DISK-MARKER q.raw || fail "qemu-img does not see the marker"
cryptsetup open --test-passphrase --key-file pass enc.img || fail "cryptsetup rejects the passphrase"
expect_rc 2 $U disk passphrase --kek-file kek1 --out-file pass enc.img   # never overwrites
# Through an fd (a pipe), as hostd hands it to QEMU.
$U disk passphrase --kek-file kek1 --out-fd 7 enc.img 7>&1 | cmp - pass || fail "--out-fd"
# Never to a terminal, when one is available to try.
if [ -w /dev/tty ] && { : > /dev/tty; } 2>/dev/null; then
  expect_rc 2 $U disk passphrase --kek-file kek1 --out-fd 7 enc.img 7>/dev/tty
fi
expect_rc 2 $U disk passphrase --kek-file kek2 --out-file pass2 enc.img
grep -q 'wrong key' err.txt || fail "wrong KEK not explained"
[ ! -e pass2 ] || fail "passphrase file written with a wrong KEK"
rm -f pass
ok "disk passphrase: 0600 file or fd; qemu-img and cryptsetup open the disk; wrong KEK refused"

# --- create: an empty disk QEMU writes into, vmseal reads back -----------------------
expect_rc 0 $U disk create "${K1[@]}" --size 16M new.img
expect_rc 0 $U disk passphrase --kek-file kek1 --out-file newpass new.img
qemu-io --object secret,id=s0,file=newpass \
  --image-opts "driver=luks,key-secret=s0,file.filename=new.img" \
  -c "write -P 0x5a 1M 64k" >/dev/null || fail "qemu-io cannot write the created disk"
expect_rc 0 $U disk decrypt --kek-file kek1 new.img new.raw
[ "$(stat -c %s new.raw)" = $((16 << 20)) ] || fail "created disk payload size"
cmp -n 65536 -i $((1 << 20)):0 new.raw <(head -c 65536 /dev/zero | tr '\0' 'Z') \
  || fail "vmseal does not read what QEMU wrote"
ok "disk create: QEMU writes into it, vmseal decrypt reads the data back"

# --- decrypt -------------------------------------------------------------------------
expect_rc 0 $U disk decrypt --kek-file kek1 enc.img dec.img
cmp plain.img dec.img || fail "decrypt differs from the original"
expect_rc 2 $U disk decrypt --kek-file kek1 enc.img dec.img
expect_rc 2 $U disk decrypt --kek-file kek2 enc.img dec2.img
[ ! -e dec2.img ] && [ ! -e dec2.img.partial ] || fail "output left after a wrong key"
expect_rc 2 $U disk decrypt --kek-file kek1 --kek-id kek-9 enc.img dec2.img
grep -q "wrapped by KEK 'kek-1'" err.txt || fail "--kek-id mismatch not explained"
ok "disk decrypt restores the original byte for byte; wrong key / key id refused"

# --- a descriptor moved next to another disk does not unwrap --------------------------
cp new.img.vmdesc new.img.vmdesc.orig
cp enc.img.vmdesc new.img.vmdesc
expect_rc 2 $U disk passphrase --kek-file kek1 --out-fd 1 new.img
grep -q 'belongs to disk' err.txt || fail "moved descriptor: no clear message"
# Even with its uuid line edited to match, the key safe refuses (bound to the UUID).
newuuid=$(cryptsetup luksUUID new.img)
sed -i "s/^uuid = .*/uuid = $newuuid/" new.img.vmdesc
expect_rc 2 $U disk passphrase --kek-file kek1 --out-fd 1 new.img
grep -q 'another object' err.txt || fail "edited moved descriptor: wrong message"
expect_rc 2 $U disk decrypt --kek-file kek1 new.img moved.raw
[ ! -e moved.raw ] || fail "decrypted with a moved descriptor"
# The LUKS image copied under another name keeps its UUID and still opens.
mv new.img.vmdesc.orig new.img.vmdesc
cp new.img copy.img; cp new.img.vmdesc copy.img.vmdesc
expect_rc 0 $U disk passphrase --kek-file kek1 --out-fd 1 copy.img
ok "descriptor copied next to another disk refused (also with its uuid edited)"

# --- keyslots ---------------------------------------------------------------------------
printf 'correct horse battery staple\n' > recovery; chmod 600 recovery
expect_rc 0 $U disk keyslot-add --kek-file kek1 --new-passphrase-file recovery enc.img
grep -q 'keyslot 1' err.txt || fail "keyslot-add: slot number"
printf 'correct horse battery staple' > recovery.qemu
qemu_read enc.img recovery.qemu r.raw || fail "qemu-img rejects the recovery passphrase"
cmp plain.img r.raw || fail "recovery passphrase reads other data"
chmod 644 recovery
expect_rc 2 $U disk keyslot-add --kek-file kek1 --new-passphrase-file recovery enc.img
chmod 600 recovery
expect_rc 0 $U check enc.img
grep -q '2 keyslots' out.txt || fail "check does not count 2 keyslots"
expect_rc 0 $U disk passphrase --kek-file kek1 --out-file vpass enc.img
expect_rc 2 $U disk keyslot-remove --kek-file kek1 --passphrase-file vpass enc.img
grep -q "vmseal's own keyslot" err.txt || fail "removing vmseal's keyslot not refused"
expect_rc 0 $U disk keyslot-remove --kek-file kek1 --passphrase-fd 5 enc.img 5<recovery
! qemu_read enc.img recovery.qemu r2.raw 2>/dev/null || fail "removed passphrase still opens"
qemu_read enc.img vpass r3.raw || fail "vmseal passphrase lost after keyslot-remove"
ok "keyslot-add (recovery passphrase opens in qemu-img), keyslot-remove; own slot protected"

# --- rekey: deep (new data key) and shallow (new KEK) -------------------------------------
mk1=$(cryptsetup luksDump enc.img | grep -A1 'MK digest')
expect_rc 0 $U disk rekey --kek-file kek1 enc.img
mk2=$(cryptsetup luksDump enc.img | grep -A1 'MK digest')
[ "$mk1" != "$mk2" ] || fail "deep rekey kept the data key"
[ "$(cryptsetup luksUUID enc.img)" = "$uuid" ] || fail "deep rekey changed the UUID"
qemu_read enc.img vpass d.raw || fail "qemu-img after deep rekey"
cmp plain.img d.raw || fail "data changed by deep rekey"
expect_rc 64 $U disk rekey --kek-file kek1 --shallow enc.img
expect_rc 0 $U disk rekey --kek-file kek1 --shallow --new-kek-file kek2 --new-kek-id kek-2 enc.img
expect_rc 0 $U check enc.img
grep -q "KEK 'kek-2'" out.txt || fail "shallow rekey: check still shows the old KEK"
expect_rc 2 $U disk passphrase --kek-file kek1 --out-fd 1 enc.img
expect_rc 0 $U disk passphrase --kek-file kek2 --out-fd 1 enc.img
cmp out.txt vpass || fail "shallow rekey changed the passphrase"
# Deep rekey plus a new KEK in one go.
expect_rc 0 $U disk rekey --kek-file kek2 --new-kek-file kek3 --new-kek-id kek-3 \
  --new-provider kmip-a enc.img
expect_rc 0 $U disk decrypt --kek-file kek3 enc.img dec3.img
cmp plain.img dec3.img || fail "data after deep rekey + new KEK"
ok "disk rekey: deep (new data key, same data), shallow (new KEK only), both"

# --- interrupted runs: the descriptor carries the secret for the resume -----------------
# Simulate a run stopped after the descriptor (marked incomplete) was written.
expect_rc 0 $U disk encrypt "${K1[@]}" plain.img r.img
ruuid=$(sed -n 's/^uuid = //p' r.img.vmdesc)
rm r.img; echo 'state = incomplete' >> r.img.vmdesc
expect_rc 0 $U check r.img.vmdesc
grep -q 'incomplete' out.txt || fail "check does not show an incomplete descriptor"
expect_rc 2 $U disk encrypt --kek-file kek1 --kek-id kek-2 plain.img r.img  # other KEK id: refused
expect_rc 0 $U disk encrypt "${K1[@]}" plain.img r.img
grep -q 'resuming' err.txt || fail "no resume message"
[ "$(cryptsetup luksUUID r.img)" = "$ruuid" ] || fail "resumed run made another UUID"
! grep -q incomplete r.img.vmdesc || fail "descriptor still incomplete after the resume"
# Stopped after the image was renamed but before the descriptor was finished.
echo 'state = incomplete' >> r.img.vmdesc
expect_rc 0 $U disk encrypt "${K1[@]}" plain.img r.img
! grep -q incomplete r.img.vmdesc || fail "descriptor not completed"
expect_rc 0 $U disk decrypt --kek-file kek1 r.img resumed.raw
cmp plain.img resumed.raw || fail "resumed disk content"
# A failed run leaves no descriptor behind.
expect_rc 2 $U disk encrypt "${K1[@]}" no-such-input.img f.img
[ ! -e f.img ] && [ ! -e f.img.vmdesc ] || fail "failed encrypt left files"
# A stale complete descriptor blocks a new disk of that name.
cp enc.img.vmdesc g.img.vmdesc
expect_rc 2 $U disk create "${K1[@]}" --size 1M g.img
[ ! -e g.img ] || fail "create over a foreign descriptor"
ok "interrupted create/encrypt resume with the same secret and UUID; failures leave nothing"

# --- a real Ctrl-C during encrypt, then the same command resumes ---------------------
head -c $((160 << 20)) /dev/urandom > big.img
interrupted=0
for delay in 0.3 0.15 0.05; do
  rm -f big.enc big.enc.*
  $U disk encrypt --threads 1 "${K1[@]}" big.img big.enc 2>sig.err & pid=$!
  sleep $delay
  kill -INT $pid 2>/dev/null || true
  rc=0; wait $pid || rc=$?
  if [ $rc -ne 0 ]; then
    grep -q 'run the same command again to resume' sig.err || fail "interrupt: $(cat sig.err)"
    [ ! -e big.enc ] || fail "interrupted encrypt left a final image"
    grep -q 'state = incomplete' big.enc.vmdesc || fail "descriptor not kept incomplete"
    interrupted=1
    break
  fi
done
expect_rc 0 $U disk encrypt --threads 1 "${K1[@]}" big.img big.enc
[ $interrupted -eq 0 ] || grep -q resuming err.txt || fail "no resume after Ctrl-C"
expect_rc 0 $U disk decrypt --kek-file kek1 big.enc big.dec
cmp big.img big.dec || fail "content after Ctrl-C and resume"
rm -f big.*
if [ $interrupted -eq 1 ]; then
  ok "Ctrl-C stops disk encrypt at a checkpoint; the same command resumes; content exact"
else
  ok "disk encrypt too fast to interrupt here; the re-run still produced an exact disk"
fi

# --- adopt: LUKS1 images made by qemu-img and by cryptsetup ------------------------
printf 'their-passphrase' > theirs; printf 'not-their-passphrase' > wrongpw
printf 'ADOPT-MARKER-%s' "$RANDOM" > marker.txt
head -c $((2 << 20)) /dev/urandom > adopt.plain
dd if=marker.txt of=adopt.plain conv=notrunc status=none
# (QEMU's PBKDF2 calibration fails about one run in three here, "Unable to
# get accurate CPU usage": tried up to ten times, as tests/disk/test_import.c)
for i in 1 2 3 4 5 6 7 8 9 10; do
  qemu-img convert -q --object secret,id=s,file=theirs -f raw adopt.plain -O luks \
    -o key-secret=s,iter-time=10 q.luks && break
  rm -f q.luks
  sleep 0.3
done
[ -f q.luks ] || fail "qemu-img could not make a LUKS image"
truncate -s $((4 << 20)) c.luks
cryptsetup luksFormat -q --type luks1 --pbkdf-force-iterations 1000 --key-file theirs c.luks
for img in q.luks c.luks; do
  slots=$(cryptsetup luksDump "$img" | grep -c ENABLED)
  mk=$(cryptsetup luksDump "$img" | grep -A1 'MK digest')
  expect_rc 2 $U disk adopt "${K1[@]}" --passphrase-file wrongpw "$img"
  [ ! -e "$img.vmdesc" ] || fail "$img: a wrong passphrase left a descriptor"
  [ "$(cryptsetup luksDump "$img" | grep -c ENABLED)" = "$slots" ] || fail "$img: wrong passphrase wrote a keyslot"
  # the passphrase never on the command line: only fd or 0600 file
  expect_rc 0 $U disk adopt "${K1[@]}" --passphrase-fd 3 "$img" 3<theirs
  grep -q 'adopted' err.txt || { cat err.txt >&2; fail "$img: adopt message"; }
  [ "$(sed -n 's/^uuid = //p' "$img.vmdesc")" = "$(cryptsetup luksUUID "$img")" ] || fail "$img: descriptor UUID"
  [ "$(cryptsetup luksDump "$img" | grep -A1 'MK digest')" = "$mk" ] || fail "$img: the data key changed"
  expect_rc 0 $U disk verify --kek-file kek1 "$img"
  cryptsetup open --test-passphrase --key-file theirs "$img" || fail "$img: their passphrase gone too early"
  expect_rc 2 $U disk adopt "${K1[@]}" --passphrase-file theirs "$img"     # once
  grep -q 'already' err.txt || fail "$img: adopting twice not refused"
done
# vmseal's passphrase reads the data qemu-img wrote; then the old one is removed
expect_rc 0 $U disk passphrase --kek-file kek1 --out-file q.pass q.luks
qemu_read q.luks q.pass q.out
cmp <(head -c 2097152 q.out) adopt.plain || fail "adopted image content"
rm -f q.luks.vmdesc
expect_rc 0 $U disk adopt "${K1[@]}" --passphrase-file theirs --remove-passphrase q.luks
expect_rc 0 $U disk verify --kek-file kek1 q.luks
if cryptsetup open --test-passphrase --key-file theirs q.luks 2>/dev/null; then
  fail "--remove-passphrase left the old passphrase"
fi
rm -f q.* c.luks* adopt.plain marker.txt theirs wrongpw
ok "disk adopt: qemu-img and cryptsetup LUKS1 images get vmseal's keyslot and key safe, data key kept; wrong passphrase changes nothing; --remove-passphrase"
