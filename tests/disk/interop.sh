#!/usr/bin/env bash
# LUKS1 interop, both ways, against the real tools:
#   vmseal -> qemu-img (luks driver), cryptsetup luksDump, nbdkit luks filter
#   qemu-img create -f luks / cryptsetup luksFormat -> vmseal decrypt
source "$VMSEAL_SRC/tests/testlib.sh"
T=$VMSEAL_BUILD/tests/disk/disk-tool
cd "$TMP"

# A disk secret file (0600): its 64 lower-case hex digits are the LUKS
# passphrase, so the same file serves QEMU's secret,file= and disk-tool.
umask 077
secret() { head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' > "$1"; }
secret s1
secret s2
PASS_OBJ="--object secret,id=s0,file=$TMP/s1"
qemu_read() { # IMG OUT
  qemu-img convert $PASS_OBJ --image-opts "driver=luks,key-secret=s0,file.filename=$1" -O raw "$2"
}

# Random data with a zero gap and a file-system hole: 48 MiB + 1000 bytes.
head -c $((20 << 20)) /dev/urandom > plain.raw
head -c $((4 << 20)) /dev/zero >> plain.raw
truncate -s $((32 << 20)) plain.raw
head -c $((16 << 20)) /dev/urandom >> plain.raw
head -c 1000 /dev/urandom >> plain.raw
size=$(stat -c %s plain.raw)
padded=$(( (size + 511) / 512 * 512 ))

# --- vmseal encrypt -> qemu-img reads it byte-exact --------------------------
UUID=5c8ad8c3-7c1e-4d3b-9a0e-2f4b6c8d0e1a
$T -u $UUID encrypt plain.raw enc.img s1 || fail "vmseal encrypt"
qemu_read enc.img q.raw || fail "qemu-img convert of a vmseal image"
[ "$(stat -c %s q.raw)" -eq "$padded" ] || fail "qemu sees payload of $(stat -c %s q.raw), want $padded"
cmp -n "$size" plain.raw q.raw || fail "qemu-img read different bytes"
[ -z "$(tail -c +$((size + 1)) q.raw | tr -d '\0')" ] || fail "padding is not zeros"
ok "qemu-img (luks driver) reads a vmseal-encrypted image byte-exact"

# --- cryptsetup luksDump reads our header --------------------------------------
dump=$(cryptsetup luksDump enc.img) || fail "cryptsetup luksDump"
grep -Eq '^Version:\s+1$' <<<"$dump" || fail "luksDump: version"
grep -Eq '^Cipher name:\s+aes$' <<<"$dump" || fail "luksDump: cipher"
grep -Eq '^Cipher mode:\s+xts-plain64$' <<<"$dump" || fail "luksDump: mode"
grep -Eq '^Hash spec:\s+sha256$' <<<"$dump" || fail "luksDump: hash"
grep -Eq '^MK bits:\s+512$' <<<"$dump" || fail "luksDump: key bits"
grep -Eq "^UUID:\s+$UUID\$" <<<"$dump" || fail "luksDump: UUID"
grep -Eq '^MK iterations:\s+1000$' <<<"$dump" || fail "luksDump: MK iterations"
grep -A1 'Key Slot 0: ENABLED' <<<"$dump" | grep -Eq 'Iterations:\s+1000$' || fail "luksDump: slot 0 iterations"
[ "$(cryptsetup luksUUID enc.img)" = "$UUID" ] || fail "luksUUID"
# cryptsetup accepts our passphrase (header-only check, no device-mapper).
cryptsetup open --test-passphrase --key-file s1 enc.img || fail "cryptsetup rejects our passphrase"
! cryptsetup open --test-passphrase --key-file s2 enc.img 2>/dev/null || fail "cryptsetup accepts a wrong passphrase"
# Our probe agrees with cryptsetup on the payload offset.
off=$($T probe enc.img | sed -n 's/^payload_offset=//p')
cs_off=$(sed -En 's/^Payload offset:\s+([0-9]+)$/\1/p' <<<"$dump")
[ "$off" -eq $((cs_off * 512)) ] || fail "payload offset $off vs cryptsetup $cs_off sectors"
ok "cryptsetup luksDump: LUKS1 aes xts-plain64 sha256 512-bit, UUID, 1000 iterations"

# --- qemu-img info / qemu-io: a vmseal-created empty disk is usable by QEMU -----
$T create new.img $((8 << 20)) s1 || fail "vmseal create"
qemu-img info $PASS_OBJ --image-opts "driver=luks,key-secret=s0,file.filename=new.img" \
  | grep -q 'virtual size: 8 MiB' || fail "qemu-img info of a created disk"
head -c 1048576 /dev/urandom > chunk.raw
qemu-io $PASS_OBJ --image-opts "driver=luks,key-secret=s0,file.filename=new.img" \
  -c "write -P 0x5a 3M 64k" >/dev/null || fail "qemu-io write into a created disk"
$T decrypt new.img new.raw s1 || fail "decrypt a disk QEMU wrote into"
[ "$(dd if=new.raw bs=64k skip=48 count=1 status=none | tr -d '\132' | wc -c)" -eq 0 ] \
  || fail "QEMU's write is not what vmseal decrypts"
ok "QEMU writes into a vmseal-created disk; vmseal decrypts what QEMU wrote"

# --- nbdkit luks filter reads our image (passphrase from the 0600 file) --------
if command -v nbdkit >/dev/null && command -v nbdcopy >/dev/null; then
  nbdkit -U - file enc.img --filter=luks passphrase=+"$TMP/s1" \
    --run 'nbdcopy "$uri" nbd.raw' || fail "nbdkit luks filter + nbdcopy"
  cmp -n "$size" plain.raw nbd.raw || fail "nbdkit read different bytes"
  ok "nbdkit luks filter reads a vmseal image byte-exact"
else
  echo "# nbdkit/nbdcopy not installed: skipped nbdkit check"
fi

# --- qemu-img create -f luks -> vmseal decrypts it byte-exact ------------------
retry 5 qemu-img create -q -f luks $PASS_OBJ -o key-secret=s0,iter-time=10 qemu.img "$padded" \
  || fail "qemu-img create -f luks (5 tries)"
qemu-img convert -n $PASS_OBJ -f raw plain.raw --target-image-opts \
  "driver=luks,key-secret=s0,file.filename=qemu.img" || fail "fill the qemu image"
$T probe qemu.img >/dev/null || fail "strict probe rejects a qemu-img header"
$T decrypt qemu.img from-qemu.raw s1 || fail "vmseal decrypt of a qemu-img image"
cmp -n "$size" plain.raw from-qemu.raw || fail "vmseal decrypted a qemu image differently"
# All-zero plaintext became holes.
alloc=$(( $(stat -c %b from-qemu.raw) * $(stat -c %B from-qemu.raw) ))
[ "$alloc" -le $((size - (8 << 20))) ] || fail "zero regions were not left as holes ($alloc bytes allocated)"
ok "vmseal decrypts a qemu-img -f luks image byte-exact, zeros become holes"

# --- cryptsetup luksFormat -> vmseal decrypts it --------------------------------
truncate -s $(( (2 << 20) + (8 << 20) )) cs.img
cryptsetup luksFormat -q --type luks1 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
  --key-file s1 cs.img || fail "cryptsetup luksFormat"
head -c $((8 << 20)) plain.raw > small.raw
qemu-img convert -n $PASS_OBJ -f raw small.raw --target-image-opts \
  "driver=luks,key-secret=s0,file.filename=cs.img" || fail "fill the cryptsetup image"
$T decrypt cs.img cs-v.raw s1 || fail "vmseal decrypt of a cryptsetup image"
cmp small.raw cs-v.raw || fail "vmseal decrypted a cryptsetup image differently"
ok "vmseal decrypts a cryptsetup luksFormat image byte-exact"
truncate -s $((4 << 20)) cbc.img
cryptsetup luksFormat -q --type luks1 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
  --cipher aes-cbc-essiv:sha256 --key-size 256 --key-file s1 cbc.img || fail "luksFormat cbc"
! $T decrypt cbc.img cbc.raw s1 2>err.txt || fail "aes-cbc-essiv image accepted"
grep -q "not supported" err.txt || fail "other cipher: unclear error: $(cat err.txt)"
ok "an aes-cbc-essiv LUKS1 image is refused as not supported"

# --- errors: wrong passphrase, damaged images, no overwrite --------------------
set +e
$T decrypt enc.img wrong.raw s2 2>err.txt; rc=$?
set -e
[ $rc -eq 4 ] && grep -q "wrong passphrase" err.txt || fail "wrong passphrase: rc=$rc $(cat err.txt)"
[ ! -e wrong.raw ] && [ ! -e wrong.raw.partial ] || fail "wrong passphrase left output behind"
head -c $((1 << 20)) enc.img > trunc.img
! $T decrypt trunc.img t.raw s1 2>err.txt || fail "truncated image accepted"
grep -q "truncated" err.txt || fail "truncated: unclear error: $(cat err.txt)"
cp enc.img bad.img
printf '\x00\x00\x00\x00' | dd of=bad.img bs=1 seek=$((208 + 40)) conv=notrunc status=none
! $T probe bad.img 2>err.txt || fail "corrupt keyslot offset accepted"
grep -q "key material" err.txt || fail "corrupt header: unclear error: $(cat err.txt)"
! $T decrypt plain.raw x.raw s1 2>err.txt || fail "raw input accepted as LUKS"
grep -q "not a LUKS" err.txt || fail "raw input: unclear error: $(cat err.txt)"
! $T encrypt plain.raw enc.img s1 2>/dev/null || fail "encrypt overwrote an existing image"
ok "clear errors: wrong passphrase (EKEYREJECTED), truncated, corrupt header, not LUKS, exists"

# --- the same image after keyslot changes still opens in QEMU ------------------
$T keyslot-add enc.img s1 s2 >/dev/null || fail "keyslot-add"
$T keyslot-remove enc.img s1 >/dev/null || fail "keyslot-remove"
cryptsetup open --test-passphrase --key-file s2 enc.img || fail "cryptsetup: new keyslot"
! cryptsetup open --test-passphrase --key-file s1 enc.img 2>/dev/null || fail "removed slot still opens"
qemu-img convert --object secret,id=s0,file="$TMP/s2" \
  --image-opts "driver=luks,key-secret=s0,file.filename=enc.img" -O raw q2.raw || fail "qemu after keyslot change"
cmp -n "$size" plain.raw q2.raw || fail "content changed by keyslot operations"
ok "keyslot add/remove: cryptsetup and qemu-img follow"

# --- an image a VM has open is refused (QEMU's OFD image locks) ---------------
cp enc.img busy.img
qemu-nbd --object secret,id=s0,file="$TMP/s2" \
  --image-opts "driver=luks,key-secret=s0,file.filename=$TMP/busy.img" \
  --socket="$TMP/nbd.sock" --fork --pid-file="$TMP/nbd.pid" || fail "qemu-nbd"
at_exit 'kill $(cat "$TMP/nbd.pid") 2>/dev/null'
! $T rekey busy.img s2 2>err.txt || fail "rekey of an image QEMU has open"
grep -q "in use" err.txt || fail "rekey in use: unclear error: $(cat err.txt)"
! $T decrypt busy.img busy.raw s2 2>err.txt || fail "decrypt of an image QEMU writes to"
grep -q "open for writing" err.txt || fail "decrypt in use: unclear error: $(cat err.txt)"
kill "$(cat "$TMP/nbd.pid")"
for _ in $(seq 1 50); do kill -0 "$(cat "$TMP/nbd.pid")" 2>/dev/null || break; sleep 0.1; done
$T rekey busy.img s2 || fail "rekey after QEMU closed the image"
ok "images a VM (qemu-nbd) holds open are refused: rekey and decrypt say so"
