#!/usr/bin/env bash
# vmseal-crypto-util state decrypt on suspend state files sealed by
# vmseal-hostd's own code (tests/seal/seal-vmstate.c: hostd_vmstate_key) in
# VM homes made by hostd's code (make-vmhome): the stream comes back byte for
# byte; a wrong KEK, a flipped byte, a cut file, a renamed file, another VM's
# vm.conf, a clear .vmstate and data that is not a QEMU stream are refused
# with a clear error and no output file. (tests/system/test_e2e_suspend.sh
# opens a real state file of a suspended guest.)
source "$VMSEAL_SRC/tests/testlib.sh"
U=$VMSEAL_BUILD/crypto-util/vmseal-crypto-util
MK=$VMSEAL_BUILD/tests/seal/make-vmhome
SV=$VMSEAL_BUILD/tests/seal/seal-vmstate
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
$MK ds kek1 kek-vm1 vm1 1 bios > uuid1 || fail "make-vmhome vm1"
$MK ds kek2 kek-vm2 vm2 1 bios > uuid2 || fail "make-vmhome vm2"
H1=$(home_of vm1); H2=$(home_of vm2)

# a stand-in stream: QEMU's header (QEVM, version 3) and 3 MiB of data, so
# it spans many 64 KiB chunks
{ printf 'QEVM\0\0\0\3'; head -c $((3 << 20)) /dev/urandom; printf 'STREAM-END-MARK'; } > stream
F=suspend-0123456789abcdef.vmss
$SV "$H1/vm.conf" kek1 $F < stream || fail "seal-vmstate"
[ "$(head -c 8 "$H1/$F")" = VMSEALSF ] || fail "not a sealed file"
if grep -qa STREAM-END-MARK "$H1/$F"; then fail "the stream is in clear in the state file"; fi

expect_rc 0 $U state decrypt --kek-file kek1 "$H1/$F" plain
cmp -s stream plain || fail "decrypted state differs from the stream"
[ "$(stat -c %a plain)" = 600 ] || fail "output mode $(stat -c %a plain)"
grep -q "verified and decrypted the saved state" err.txt || fail "no summary: $(cat err.txt)"
expect_rc 0 $U state decrypt --kek-fd 3 --kek-id kek-vm1 --vm-config "$H1/vm.conf" "$H1/$F" - 3<kek1
cmp -s stream out.txt || fail "decrypted state to stdout (--kek-fd) differs"
ok "state decrypt: the stream sealed by hostd's code comes back byte for byte (file and fd KEK)"

refused() { # WHAT PATTERN CMD...: exit 2, PATTERN in the error, no OUT file left
  local what=$1 pat=$2; shift 2
  rm -f res
  expect_rc 2 "$@"
  grep -qi -- "$pat" err.txt || { cat err.txt >&2; fail "$what: error does not say '$pat'"; }
  [ ! -e res ] || fail "$what: an output file was left"
  ls -a | grep -q '\.res\.tmp' && fail "$what: a temporary file was left"
  return 0
}
refused "wrong KEK" "vm.keysafe" $U state decrypt --kek-file kek2 "$H1/$F" res
refused "wrong KEK id" "not 'kek-other'" $U state decrypt --kek-file kek1 --kek-id kek-other "$H1/$F" res
cp -p "$H1/$F" orig
size=$(stat -c %s "$H1/$F")
printf '\x5a' | dd of="$H1/$F" bs=1 seek=$((size / 2)) conv=notrunc status=none
refused "flipped byte" "damaged" $U state decrypt --kek-file kek1 "$H1/$F" res
cp -p orig "$H1/$F"; truncate -s $((size - 1000)) "$H1/$F"
refused "cut file" "damaged" $U state decrypt --kek-file kek1 "$H1/$F" res
cp -p orig "$H1/$F"; truncate -s 100 "$H1/$F"
refused "cut header" "damaged" $U state decrypt --kek-file kek1 "$H1/$F" res
cp -p orig "$H1/$F"
cp -p orig "$H1/suspend-fedcba9876543210.vmss"
refused "renamed file" "not this VM" $U state decrypt --kek-file kek1 "$H1/suspend-fedcba9876543210.vmss" res
cp -p orig "$H2/$F"
refused "another VM's home" "vm.keysafe" $U state decrypt --kek-file kek1 "$H2/$F" res
refused "another VM's vm.conf" "vm.keysafe" $U state decrypt --kek-file kek1 --vm-config "$H2/vm.conf" "$H1/$F" res
cp -p orig "$H1/other.bin"
refused "not a state file name" "not a suspend state file name" $U state decrypt --kek-file kek1 "$H1/other.bin" res
: > "$H1/suspend-0123456789abcdef.vmstate"
refused "clear state" "without encryption" $U state decrypt --kek-file kek1 "$H1/suspend-0123456789abcdef.vmstate" res
head -c 100000 /dev/urandom > notqemu
G=suspend-00000000000000aa.vmss
$SV "$H1/vm.conf" kek1 $G < notqemu || fail "seal-vmstate (not QEMU)"
refused "not a QEMU stream" "not a QEMU migration stream" $U state decrypt --kek-file kek1 "$H1/$G" res
expect_rc 0 $U state decrypt --kek-file kek1 "$H1/$F" res
cmp -s stream res || fail "the intact file no longer decrypts"
expect_rc 64 $U state decrypt --kek-file kek1 "$H1/$F"
expect_rc 64 $U state frobnicate
ok "state decrypt refuses a wrong KEK, damage, a renamed or foreign file, a clear or non-QEMU state"
