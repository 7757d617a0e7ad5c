#!/usr/bin/env bash
# vmseal-crypto-util: help, check (exit codes, --json), seal / unseal /
# coredump decrypt through files and pipes, wrong keys, tampering (no
# output left behind), key handling, bench.
source "$VMSEAL_SRC/tests/testlib.sh"
U=$VMSEAL_BUILD/crypto-util/vmseal-crypto-util
cd "$TMP"
umask 077

expect_rc() { # WANT CMD...: run, compare the exit status
  local want=$1 rc=0; shift
  "$@" >out.txt 2>err.txt || rc=$?
  [ "$rc" -eq "$want" ] || { cat out.txt err.txt >&2; fail "'$*' exited $rc, want $want"; }
}

# --- help for every verb -------------------------------------------------------
for v in "check" "seal" "unseal" "coredump decrypt" "bench" "disk create" "disk encrypt" \
         "disk decrypt" "disk rekey" "disk passphrase" "disk keyslot-add" "disk keyslot-remove" \
         "disk adopt"; do
  # shellcheck disable=SC2086
  expect_rc 0 $U $v --help
  grep -q '^usage: vmseal-crypto-util' out.txt || fail "$v --help prints no usage"
done
expect_rc 0 $U --help
expect_rc 0 $U help seal
grep -q 'usage: vmseal-crypto-util seal' out.txt || fail "help seal"
expect_rc 64 $U
expect_rc 64 $U frobnicate
expect_rc 64 $U seal onlyone
expect_rc 64 $U disk create --kek-file x --kek-id k img   # no --size
ok "--help for every verb; usage errors exit 64"

# --- keys: files 0600 only, fds, never argv ------------------------------------
head -c 32 /dev/urandom > kek.raw
od -An -v -tx1 kek.raw | tr -d ' \n' > kek.hex; echo >> kek.hex
head -c 32 /dev/urandom > other.kek
chmod 600 kek.raw kek.hex other.kek
head -c 200000 /dev/urandom > nvram.bin
expect_rc 0 $U seal --kek-file kek.raw --kek-id kek-1 nvram.bin a.sealed
expect_rc 0 $U unseal --kek-file kek.hex a.sealed a.out   # same key, hex form
cmp nvram.bin a.out || fail "raw and hex KEK forms differ"
expect_rc 0 $U unseal --kek-fd 3 a.sealed b.out 3<kek.raw
cmp nvram.bin b.out || fail "--kek-fd"
chmod 640 kek.raw
expect_rc 2 $U unseal --kek-file kek.raw a.sealed c.out
grep -q 'group/world accessible' err.txt || fail "group-readable KEK file not refused clearly"
[ ! -e c.out ] || fail "output written with a refused key file"
chmod 600 kek.raw
expect_rc 2 $U unseal a.sealed c.out
grep -q -- '--kek-file' err.txt || fail "missing KEK not explained"
printf 'short' > bad.kek; chmod 600 bad.kek
expect_rc 2 $U unseal --kek-file bad.kek a.sealed c.out
expect_rc 64 $U seal --kek-file kek.raw nvram.bin x.sealed            # no --kek-id
expect_rc 64 $U seal --kek-file kek.raw --kek-id k --provider 'a:b' nvram.bin x.sealed
ok "KEK from 0600 file (raw or hex) or fd; group-readable, short or missing keys refused"

# --- seal / unseal round trips: sizes, pipes ------------------------------------
for n in 0 1 65535 65536 65537 3000000; do
  head -c $n /dev/urandom > p.$n
  expect_rc 0 $U seal --kek-file kek.raw --kek-id kek-1 p.$n s.$n
  [ "$(stat -c %a s.$n)" = 600 ] || fail "sealed file mode $(stat -c %a s.$n)"
  expect_rc 0 $U unseal --kek-file kek.raw s.$n u.$n
  cmp p.$n u.$n || fail "round trip of $n bytes"
  [ "$(stat -c %a u.$n)" = 600 ] || fail "unsealed file mode"
done
# stdin -> stdout both ways, through pipes.
cat p.3000000 | $U seal --kek-file kek.raw --kek-id kek-1 - - | cat > piped.sealed
cat piped.sealed | $U unseal --kek-file kek.raw - - | cmp - p.3000000 || fail "pipe round trip"
# coredump decrypt is unseal.
expect_rc 0 $U coredump decrypt --kek-file kek.raw piped.sealed core.out
cmp core.out p.3000000 || fail "coredump decrypt"
# Sealed output hides the plaintext.
printf 'VMSEAL-NVRAM-MARKER-%.0s' {1..1000} > marker.bin
expect_rc 0 $U seal --kek-file kek.raw --kek-id kek-1 marker.bin marker.sealed
! grep -q VMSEAL-NVRAM-MARKER marker.sealed || fail "plaintext visible in the sealed file"
# Existing outputs are kept unless --force; never written to a terminal.
expect_rc 2 $U seal --kek-file kek.raw --kek-id kek-1 nvram.bin a.sealed
grep -q 'already exists' err.txt || fail "existing output not refused"
expect_rc 0 $U seal --force --kek-file kek.raw --kek-id kek-1 nvram.bin a.sealed
expect_rc 2 $U unseal --kek-file kek.raw a.sealed a.sealed
ok "seal/unseal: 0, 1, 64KiB-1, 64KiB, 64KiB+1, 3MB; pipes; coredump decrypt; mode 0600"

# --- failures: clear message, no output left behind ------------------------------
no_output() { # NAME: neither the file nor a temporary of it exists
  [ ! -e "$1" ] || fail "$1 exists after a failure"
  ! ls -a | grep -q "^\.$1\.tmp" || fail "temporary file of $1 left behind"
}
expect_rc 2 $U unseal --kek-file other.kek a.sealed w.out
grep -q "wrong key" err.txt && grep -q "kek-1" err.txt || fail "wrong KEK not explained"
no_output w.out
size=$(stat -c %s s.3000000)
for pos in 10 40 100 $((size / 2)) $((size - 1)); do   # header, key, chunk, tag
  cp s.3000000 t.sealed
  printf '\x55' | dd of=t.sealed bs=1 seek=$pos conv=notrunc status=none
  cmp -s t.sealed s.3000000 && { printf '\xaa' | dd of=t.sealed bs=1 seek=$pos conv=notrunc status=none; }
  expect_rc 2 $U unseal --kek-file kek.raw t.sealed t.out
  no_output t.out
done
for cut in 20 500 $((size / 2)) $((size - 17)) $((size - 1)); do
  head -c $cut s.3000000 > t.sealed
  expect_rc 2 $U unseal --kek-file kek.raw t.sealed t.out
  grep -Eq 'truncated|fails authentication' err.txt || fail "truncation at $cut not explained: $(cat err.txt)"
  no_output t.out
done
cp s.3000000 t.sealed; printf 'junk' >> t.sealed
expect_rc 2 $U unseal --kek-file kek.raw t.sealed t.out
no_output t.out
expect_rc 2 $U unseal --kek-file kek.raw nvram.bin t.out
grep -q 'not a vmseal sealed file' err.txt || fail "wrong file type not explained"
no_output t.out
# Pipe output: the tool says to discard, and fails.
rc=0; $U unseal --kek-file kek.raw - - < t.sealed > piped.out 2>err.txt || rc=$?
[ $rc -eq 2 ] && grep -q 'discard' err.txt || fail "pipe consumer not told to discard"
# --kek-id mismatch.
expect_rc 2 $U unseal --kek-file kek.raw --kek-id kek-2 a.sealed t.out
no_output t.out
ok "wrong key, bit flips, truncation, appended data, foreign file: exit 2, no output left"

# --- check: formats, key ids, exit codes, JSON -----------------------------------
# A VM config holding a key safe (the fuzz seed: a valid key-safe line).
ks=$(grep -a -m1 -o 'vmseal:keysafe:v1:[^"]*' "$VMSEAL_SRC/fuzz/corpus/keysafe/valid-basic")
printf 'name = "vm1"\nvmseal.keysafe = "%s"\n' "$ks" > vm.conf
expect_rc 0 $U check a.sealed vm.conf
grep -q "a.sealed: encrypted (sealed file" out.txt || fail "check: sealed file"
grep -q "KEK 'kek-1' at provider 'local'" out.txt || fail "check: key id of sealed file"
grep -q "vm.conf: holds wrapped keys" out.txt || fail "check: config with key safe"
expect_rc 1 $U check a.sealed nvram.bin
grep -q "nvram.bin: not encrypted" out.txt || fail "check: plain file"
expect_rc 2 $U check a.sealed nvram.bin does-not-exist
expect_rc 2 $U check t.sealed.missing
head -c 30 s.3000000 > trunc-header.sealed
expect_rc 2 $U check trunc-header.sealed
printf 'x = vmseal:keysafe:v1:local:kek-1:AAAA\n' > broken.conf
expect_rc 2 $U check broken.conf
expect_rc 1 $U check --json a.sealed nvram.bin
$PY - out.txt <<'PY' || fail "check --json output"
import json, sys
r = json.load(open(sys.argv[1]))
assert r[0]["status"] == "encrypted" and r[0]["format"] == "sealed", r
assert r[0]["kek_id"] == "kek-1" and r[0]["provider"] == "local", r
assert r[1]["status"] == "plain" and r[1]["encrypted"] is False, r
PY
ok "check: sealed / key safe / plain / damaged; exit 0, 1, 2; --json"

# --- bench runs -----------------------------------------------------------------
expect_rc 0 $U bench --seconds 1 --threads 1
for op in "xts encrypt" "xts decrypt" "seal" "unseal"; do
  grep -q "^$op" out.txt || fail "bench: no $op line"
done
ok "bench reports XTS and sealing throughput"
