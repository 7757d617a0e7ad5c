#!/usr/bin/env bash
# Deep rekey crash safety: kill -9 a rekey of a 64 MiB image at random
# moments, ten times. After every kill the image must decrypt byte-exact
# with the same passphrase (old or new header), leave no output looking
# valid elsewhere, and a re-run must finish; finally the volume key (the
# header's MK digest) must have changed.
source "$VMSEAL_SRC/tests/testlib.sh"
T=$VMSEAL_BUILD/tests/disk/disk-tool
cd "$TMP"
umask 077
head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' > s1

head -c $((64 << 20)) /dev/urandom > plain.raw
$T encrypt plain.raw img s1 || fail "encrypt"
digest() { $T probe img | sed -n 's/^mk_digest=//p'; }
d0=$(digest)
[ -n "$d0" ] || fail "probe"

now_ms() { date +%s%3N; }
# How long does one full rekey take here? Kill points are spread over it.
cp img timing.img
t0=$(now_ms)
$T -t 1 rekey timing.img s1 || fail "timing rekey"
span=$(( $(now_ms) - t0 + 50 ))
rm -f timing.img
echo "# one rekey takes ~$((span - 50)) ms; killing at random points in [0, $span) ms"

check_readable() { # after a kill: the image must be the old or the new, complete
  rm -f dec.raw
  $T decrypt img dec.raw s1 || fail "after kill $1: image does not decrypt ($2)"
  cmp -s plain.raw dec.raw || fail "after kill $1: content differs ($2)"
  cryptsetup open --test-passphrase --key-file s1 img || fail "after kill $1: cryptsetup rejects"
  rm -f dec.raw
}

before=0 after=0 seen=$d0
for i in $(seq 1 10); do
  delay=$(( RANDOM % span ))
  $T -t 1 rekey img s1 2>/dev/null &
  pid=$!
  sleep "$(awk -v ms="$delay" 'BEGIN { printf "%.3f", ms / 1000 }')"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  d=$(digest) || fail "after kill $i: header unreadable"
  state="killed at ${delay} ms"
  if [ "$d" = "$seen" ]; then before=$((before + 1)); state="$state, image not yet replaced"
  else after=$((after + 1)); state="$state, image replaced"; seen=$d; fi
  check_readable "$i" "$state"
  echo "# kill $i: $state"
done
ok "10 kill -9 at random points ($before before / $after after the replace): image always decrypts byte-exact"

# Finish: a re-run resumes or completes, then everything is clean.
$T -p -t 1 rekey img s1 2>progress.txt || fail "final rekey"
head -1 progress.txt | sed 's/^/# first progress of the final run: /'
[ ! -e img.rekey.partial ] && [ ! -e img.rekey.partial.ckpt ] || fail "leftovers after the final rekey"
check_readable final "after the final rekey"
d1=$(digest)
[ "$d1" != "$d0" ] || fail "the volume key did not change (MK digest $d0)"
ok "re-run completes; volume key changed (MK digest $d0 -> $d1); content byte-exact"

# Resume really resumes: kill after the first checkpoint, the next run
# starts past zero.
for attempt in 1 2 3 4 5; do
  $T -p -t 1 rekey img s1 2>progress.txt &
  pid=$!
  for _ in $(seq 1 400); do
    grep -qv '^progress 0/' progress.txt 2>/dev/null && break
    sleep 0.005
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [ -e img.rekey.partial.ckpt ] && [ -e img.rekey.partial ] && break
done
[ -e img.rekey.partial ] || fail "could not stop a rekey between checkpoints in 5 tries"
check_readable resume "partial rekey present"
$T -p -t 1 rekey img s1 2>progress.txt || fail "resumed rekey"
first=$(head -1 progress.txt | sed -E 's/^progress ([0-9]+)\/.*/\1/')
[ "$first" -gt 0 ] || fail "rekey did not resume from its checkpoint (started at $first)"
check_readable resumed "after resumed rekey"
ok "killed rekey resumes from its checkpoint (at $first bytes)"
