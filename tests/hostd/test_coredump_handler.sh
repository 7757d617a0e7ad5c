#!/usr/bin/env bash
# Host encryption mode: vmseal-coredump-handler (the kernel.core_pattern pipe
# handler) seals a core dump fed on stdin to the host's public key, as the
# kernel would feed it; vmseal-crypto-util coredump decrypt --host-key opens
# it with the private key only. The machine's core_pattern is not touched.
source "$VMSEAL_SRC/tests/testlib.sh"
H=$VMSEAL_BUILD/hostd/vmseal-coredump-handler
CU=$VMSEAL_BUILD/crypto-util/vmseal-crypto-util
cd "$TMP"
mkdir cores

"$CU" hostkey generate host.key host.pub >/dev/null 2>&1 || fail "hostkey generate"
[ "$(stat -c %a host.key)" = 600 ] || fail "the private key is not mode 0600"
grep -Eq '^[0-9a-f]{64}$' host.pub || fail "public key format"
"$CU" hostkey generate other.key other.pub >/dev/null 2>&1 || fail "hostkey generate (other)"
cmp -s host.pub other.pub && fail "two key pairs are the same"
ok "hostkey generate: a private key (0600) and a public key"

# a fake core: ELF magic, 3 MiB of random data, a marker in the middle
MARK="VMSEAL-CORE-MARKER-$RANDOM$RANDOM"
{ printf '\177ELF'; head -c 1500000 /dev/urandom; printf '%s' "$MARK"; head -c 1600000 /dev/urandom; } > core.in
"$H" --key host.pub --dir cores 4242 'vmseal-hostd x' 1700000000 < core.in || fail "handler exit status"
f=cores/core-1700000000-vmseal-hostd_x-4242.vmhcore
[ -f "$f" ] || { ls -la cores >&2; fail "no sealed core in the folder"; }
[ "$(stat -c %a "$f")" = 600 ] || fail "sealed core is not mode 0600"
[ "$(head -c 8 "$f")" = VMSEALHC ] || fail "not a host-sealed file"
grep -a -q "$MARK" "$f" && fail "the marker is in clear in the sealed core"
[ "$(ls -A cores | wc -l)" = 1 ] || fail "stray files in the core folder"
"$CU" check "$f" | grep -q 'encrypted (host-sealed core dump' || fail "crypto-util check does not see it encrypted"
ok "the handler seals stdin into core-TIME-COMM-PID.vmhcore (mode 0600), no plaintext"

"$CU" coredump decrypt --host-key host.key --quiet "$f" core.out || fail "decrypt with the host key"
cmp -s core.in core.out || fail "the decrypted core differs"
ok "coredump decrypt --host-key gives the core back"

set +e
"$CU" coredump decrypt --host-key other.key --quiet "$f" bad.out 2>err.txt; rc=$?
set -e
[ $rc = 2 ] && grep -q "another host key" err.txt && [ ! -e bad.out ] || { cat err.txt >&2; fail "another host key: rc $rc"; }
"$CU" coredump decrypt --kek-file other.key --quiet "$f" bad.out 2>/dev/null && fail "opened as a KEK-sealed file"
[ ! -e bad.out ] || fail "output left"
ok "another host key is refused"

tamper() {  # OFFSET: flip one byte there; the decrypt must fail and leave nothing
  cp "$f" t.vmhcore
  printf "$(printf '\\%03o' $(( $(od -An -tu1 -j "$1" -N1 t.vmhcore) ^ 1 )))" |
    dd of=t.vmhcore bs=1 seek="$1" conv=notrunc 2>/dev/null
  if "$CU" coredump decrypt --host-key host.key --quiet t.vmhcore t.out 2>/dev/null; then
    fail "a flipped byte at $1 was not detected"
  fi
  [ ! -e t.out ] || fail "output left after a refused decrypt (byte $1)"
}
tamper 12           # the ephemeral public key
tamper 50           # the host public key
tamper 100          # the sealed header
tamper 2000000      # the data
head -c 2000000 "$f" > t.vmhcore
"$CU" coredump decrypt --host-key host.key --quiet t.vmhcore t.out 2>/dev/null && fail "a truncated core was accepted"
ok "flipped bytes (prefix, header, data) and truncation are refused"

set +e
"$H" --key host.pub --dir cores --max-mb 1 77 big 1700000001 < core.in; rc=$?
set -e
[ $rc = 1 ] || fail "--max-mb: exit status $rc"
[ "$(ls -A cores | wc -l)" = 1 ] || fail "a dropped core left a file"
echo nothex > bad.pub
set +e
"$H" --key bad.pub --dir cores 78 x 1700000002 < core.in; rc=$?
"$H" --key host.pub --dir nowhere 79 x 1700000003 < core.in; rc2=$?
"$H" --key host.pub 80 x 1700000004 < core.in; rc3=$?
set -e
[ $rc = 1 ] && [ $rc2 = 1 ] && [ $rc3 = 2 ] || fail "bad key / folder / usage: $rc $rc2 $rc3"
[ "$(ls -A cores | wc -l)" = 1 ] || fail "a refused core left a file"
ok "too large, a bad public key, a missing folder: nothing is written"
