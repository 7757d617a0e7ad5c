#!/usr/bin/env bash
# LUKS1 header work bounds: a header whose keyslot (or digest) iteration
# count, payload offset or key size is out of bounds is refused by the
# strict parser, with the field and the bound named, before any PBKDF2 runs
# (`disk verify` and `check` answer within a second instead of running for
# hours); headers made by cryptsetup and qemu-img with their default,
# benchmarked PBKDF2 cost (2 s) on this machine are still accepted.
source "$VMSEAL_SRC/tests/testlib.sh"
U=$VMSEAL_BUILD/crypto-util/vmseal-crypto-util
cd "$TMP"
umask 077

# patch IMG OFFSET VALUE: write a big-endian u32 into the header
patch() {
  $PY - "$@" <<'PY'
import struct, sys
path, off, val = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(path, 'r+b') as f:
    f.seek(off)
    f.write(struct.pack('>I', val))
PY
}
# timed WANT_RC MAX_S CMD...: exit status WANT_RC within MAX_S seconds;
# output in out.txt
timed() {
  local want=$1 max=$2 rc=0; shift 2
  local t0; t0=$(date +%s%N)
  timeout -k 2 30 "$@" >out.txt 2>&1 || rc=$?
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  [ "$rc" -eq "$want" ] || { cat out.txt >&2; fail "'$*' exited $rc after $ms ms, want $want"; }
  [ "$ms" -le $((max * 1000)) ] || { cat out.txt >&2; fail "'$*' took $ms ms (at most ${max} s)"; }
  ELAPSED=$ms
}
ITER_BOUND=33554432
MAX=2147483647

# ---- a vmseal disk: verify works, then refuses a patched header at once --------------
head -c 32 /dev/urandom > kek
K=(--kek-file kek --kek-id kek-1)
$U disk create "${K[@]}" --size 1M v.img >/dev/null 2>&1 || fail "disk create"
cp v.img v.orig
cp v.img.vmdesc v.orig.vmdesc
timed 0 5 $U disk verify "${K[@]}" v.img
ok "disk verify of a normal vmseal header (${ELAPSED} ms)"

patch v.img $((208 + 4)) $MAX          # keyslot 0 iterations
timed 2 1 $U disk verify "${K[@]}" v.img
grep -q "keyslot 0 iterations $MAX exceed the bound of $ITER_BOUND" out.txt || { cat out.txt; fail "verify: unclear error"; }
ok "disk verify refuses keyslot iterations 2^31-1 in ${ELAPSED} ms: $(head -1 out.txt)"
timed 2 1 $U check v.img
grep -q "damaged LUKS header: .*keyslot 0 iterations $MAX exceed the bound of $ITER_BOUND" out.txt \
  || { cat out.txt; fail "check: unclear error"; }
ok "check refuses it too (${ELAPSED} ms)"
timed 2 1 $U disk passphrase "${K[@]}" --out-file pass.txt v.img
grep -q "iterations $MAX exceed" out.txt || fail "disk passphrase: unclear error"
[ ! -e pass.txt ] || fail "disk passphrase wrote a passphrase"
ok "disk passphrase refuses it before any PBKDF2 (${ELAPSED} ms)"

cp v.orig v.img
patch v.img 164 $MAX                   # volume-key digest iterations
timed 2 1 $U disk verify "${K[@]}" v.img
grep -q "volume-key digest iterations $MAX exceed the bound of $ITER_BOUND" out.txt || { cat out.txt; fail "digest: unclear"; }
ok "disk verify refuses digest iterations 2^31-1 (${ELAPSED} ms)"

cp v.orig v.img
patch v.img 104 $(( (1 << 21) + 8 ))   # payload offset (sectors)
timed 2 1 $U disk verify "${K[@]}" v.img
grep -q "payload offset 2097160 sectors exceeds the bound of 2097152 sectors" out.txt || { cat out.txt; fail "payload: unclear"; }
ok "disk verify refuses a payload offset over 1 GiB (${ELAPSED} ms)"

cp v.orig v.img
patch v.img 108 128                    # key bytes
timed 2 1 $U disk verify "${K[@]}" v.img
grep -q "invalid key size 128 bytes (key bytes must be 16..64" out.txt || { cat out.txt; fail "key bytes: unclear"; }
ok "disk verify refuses 128 key bytes, naming the bound"

cp v.orig v.img
patch v.img $((208 + 4)) $ITER_BOUND   # exactly the bound: accepted by the parser
timed 0 1 $U check v.img
ok "iterations exactly at the bound pass the parser"
cp v.orig v.img
timed 0 5 $U disk verify "${K[@]}" v.img
ok "the unpatched header verifies again"

# ---- cryptsetup and qemu-img headers with their benchmarked PBKDF2 (2 s) --------------
printf '%064d' 0 | tr 0 a > s
truncate -s 8M cs.img
cryptsetup luksFormat -q --type luks1 --key-file s cs.img || fail "cryptsetup luksFormat"
it=$(cryptsetup luksDump cs.img | sed -En 's/^\s+Iterations:\s+([0-9]+)$/\1/p' | head -1)
timed 0 1 $U check cs.img
grep -q "encrypted (LUKS1 disk" out.txt || { cat out.txt; fail "cryptsetup header refused"; }
ok "cryptsetup luksFormat --type luks1 header ($it keyslot iterations) accepted"
patch cs.img $((208 + 4)) $MAX
timed 2 1 $U check cs.img
grep -q "keyslot 0 iterations $MAX exceed the bound" out.txt || { cat out.txt; fail "patched cryptsetup header"; }
ok "the same header with 2^31-1 iterations refused (${ELAPSED} ms)"

retry 6 qemu-img create -q -f luks --object secret,id=s0,file=s -o key-secret=s0 q.img 1M \
  2>/dev/null || fail "qemu-img create -f luks (6 tries)"
it=$(cryptsetup luksDump q.img | sed -En 's/^\s+Iterations:\s+([0-9]+)$/\1/p' | head -1)
timed 0 1 $U check q.img
grep -q "encrypted (LUKS1 disk" out.txt || { cat out.txt; fail "qemu-img header refused"; }
ok "qemu-img create -f luks header ($it keyslot iterations) accepted"
patch q.img $((208 + 4)) $MAX
timed 2 1 $U check q.img
grep -q "keyslot 0 iterations $MAX exceed the bound" out.txt || { cat out.txt; fail "patched qemu-img header"; }
ok "the same header with 2^31-1 iterations refused (${ELAPSED} ms)"

# ---- the fuzz corpus seed made the same way -----------------------------------------
seed=$VMSEAL_SRC/fuzz/corpus/luks_header/bad-keyslot-iterations-2g
[ -f "$seed" ] || fail "no corpus seed $seed"
timed 2 1 $U check "$seed"
grep -q "keyslot 0 iterations $MAX exceed the bound" out.txt || { cat out.txt; fail "corpus seed"; }
ok "fuzz corpus seed bad-keyslot-iterations-2g is refused for its iterations"
