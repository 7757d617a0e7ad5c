#!/usr/bin/env bash
# nbdkit-vmseal-plugin (blockd/): the decrypted view of a LUKS1 disk over
# NBD on a unix socket, driven by QEMU's NBD client (qemu-io), nbdcopy and a
# hostile raw-socket client; every result is cross-checked against QEMU's
# own luks driver and cryptsetup on the same image.
source "$VMSEAL_SRC/tests/testlib.sh"
PLUGIN=$VMSEAL_BUILD/blockd/nbdkit-vmseal-plugin.so
U=$VMSEAL_BUILD/crypto-util/vmseal-crypto-util
CLIENT=$VMSEAL_SRC/tests/blockd/nbd_client.py
[ -f "$PLUGIN" ] || fail "plugin not built: $PLUGIN"
cd "$TMP"
umask 077

# serve NAME ARGS...: nbdkit with the plugin on $TMP/NAME.sock; pid in
# $SPID. Extra redirections (the key descriptor) come from the caller.
serve_pid() { [ -S "$TMP/$1.sock" ]; }
serve() {
  local name=$1; shift
  rm -f "$TMP/$name.sock"
  nbdkit -f -U "$TMP/$name.sock" "$PLUGIN" "$@" >"$TMP/$name.log" 2>&1 &
  SPID=$!
  at_exit "kill -9 $SPID 2>/dev/null"
  local i
  for i in $(seq 100); do
    [ -S "$TMP/$name.sock" ] && return 0
    kill -0 $SPID 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
nbd() { echo "nbd+unix:///?socket=$TMP/$1.sock"; }
QLUKS=(--object secret,id=s0,file=$TMP/pass --image-opts driver=luks,key-secret=s0,file.filename=$TMP/d.luks)
qio_nbd() { local s=$1; shift; qemu-io -f raw "$@" "$(nbd "$s")" >qio.out 2>&1 && ! grep -qiE 'fail|error' qio.out; }
qio_luks() { qemu-io "${QLUKS[@]}" "$@" >qio.out 2>&1 && ! grep -qiE 'fail|error' qio.out; }

# ---- a LUKS1 image made by QEMU, served with the passphrase on a pipe --------------
head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' > pass
retry 4 qemu-img create -q -f luks --object secret,id=s0,file=pass \
  -o key-secret=s0,cipher-alg=aes-256,cipher-mode=xts,ivgen-alg=plain64,hash-alg=sha256,iter-time=10 \
  d.luks 16M || fail "qemu-img create luks"
SIZE=$((16 << 20))
serve a file=$TMP/d.luks passfd=5 5<pass || { cat a.log >&2; fail "server with passfd did not start"; }
A=$SPID
[ "$(nbdinfo --size "$(nbd a)")" = "$SIZE" ] || fail "export size is not the payload size"
[ "$(nbdinfo --json "$(nbd a)" | $PY -c 'import json,sys; print(json.load(sys.stdin)["exports"][0]["block_size_minimum"])')" = 512 ] \
  || fail "minimum block size 512 not advertised"
ok "serves the payload ($SIZE bytes) and advertises 512-byte blocks"

# writes through the plugin read back through QEMU's luks driver ...
qio_nbd a -c 'write -P 0xa1 0 512' -c 'write -P 0xb2 4096 1M' -c 'write -P 0xc3 3000 1000' \
  -c "write -P 0xd4 $((SIZE - 8192)) 8192" -c 'aio_write -P 0xe5 2M 64k' -c 'aio_write -P 0xe6 3M 3M' -c aio_flush \
  || { cat qio.out >&2; fail "writes through the plugin"; }
stop $A
qio_luks -c 'read -P 0xa1 0 512' -c 'read -P 0xb2 4096 1M' -c 'read -P 0xc3 3000 1000' \
  -c "read -P 0xd4 $((SIZE - 8192)) 8192" -c 'read -P 0xe5 2M 64k' -c 'read -P 0xe6 3M 3M' \
  || { cat qio.out >&2; fail "QEMU's luks driver does not see what the plugin wrote"; }
ok "writes through the plugin (aligned, unaligned via QEMU's RMW, last sector, 3 MiB) read back by QEMU's luks driver"

# ... and QEMU's writes read back through the plugin; whole disk byte-exact
qio_luks -c 'write -P 0x5a 8M 1M' -c 'write -P 0x6b 5M 512' || fail "qemu luks write"
serve b file=$TMP/d.luks passfd=5 5<pass || fail "restart"
B=$SPID
qio_nbd b -c 'read -P 0x5a 8M 1M' -c 'read -P 0x6b 5M 512' -c 'read -P 0xa1 0 512' \
  || { cat qio.out >&2; fail "the plugin does not see what QEMU's luks driver wrote"; }
nbdcopy "$(nbd b)" via-plugin.raw || fail "nbdcopy"
qemu-img convert "${QLUKS[@]}" -O raw via-qemu.raw 2>/dev/null || \
  qemu-img convert --object secret,id=s0,file=$TMP/pass --image-opts \
    driver=luks,key-secret=s0,file.filename=$TMP/d.luks -O raw via-qemu.raw || fail "qemu-img convert"
cmp via-plugin.raw via-qemu.raw || fail "nbdcopy through the plugin differs from qemu-img convert of the LUKS image"
ok "nbdcopy through the plugin == qemu-img convert through QEMU's luks driver (whole disk)"

# the image stays a valid LUKS1 volume for cryptsetup
cryptsetup luksDump d.luks >dump.txt || fail "cryptsetup luksDump"
grep -q 'xts-plain64' dump.txt || fail "luksDump: cipher mode"

# ---- the key is never in argv, the environment or a file -------------------
for f in cmdline environ; do
  tr '\0' '\n' < /proc/$B/$f > "$f.txt"
  grep -qF "$(cat pass)" "$f.txt" && fail "the passphrase is in the server's $f"
done
cryptsetup luksDump --dump-volume-key --volume-key-file vk.bin --batch-mode --key-file pass d.luks >/dev/null \
  || fail "cryptsetup volume key"
VKHEX=$(od -An -v -tx1 vk.bin | tr -d ' \n')
grep -rqF "$VKHEX" "$TMP"/*.log /proc/$B/cmdline /proc/$B/environ 2>/dev/null && fail "volume key text leaked"
stop $B
ok "the passphrase is neither in the server's argv nor its environment"

# ---- keyfd: the volume key itself (what the key custody process hands over) --
serve c file=$TMP/d.luks keyfd=6 6<vk.bin || { cat c.log >&2; fail "server with keyfd did not start"; }
C=$SPID
qio_nbd c -c 'read -P 0x5a 8M 1M' -c 'read -P 0xb2 4096 1M' || { cat qio.out >&2; fail "keyfd: read"; }
stop $C
ok "keyfd=N: the volume key from a descriptor serves the same data"

# a wrong key or passphrase serves nothing
head -c 64 /dev/urandom > wrong.bin
serve w1 file=$TMP/d.luks keyfd=6 6<wrong.bin && fail "a wrong volume key was accepted"
grep -q 'does not match' w1.log || { cat w1.log >&2; fail "wrong key: reason"; }
head -c 32 /dev/urandom > short.bin
serve w2 file=$TMP/d.luks keyfd=6 6<short.bin && fail "a 32-byte key for a 512-bit volume was accepted"
echo nope > wrongpass
serve w3 file=$TMP/d.luks passfd=5 5<wrongpass && fail "a wrong passphrase was accepted"
serve w4 file=/etc/hostname passfd=5 5<pass && fail "a non-LUKS file was served"
ok "wrong key, short key, wrong passphrase, non-LUKS file: the server refuses to start"

# ---- a vmseal disk, passphrase piped straight from vmseal-crypto-util -------
head -c 32 /dev/urandom > kek
$U disk create --kek-file kek --kek-id kek-1 --size 4M v.img >/dev/null 2>&1 || fail "vmseal disk create"
$U disk passphrase --kek-file kek --out-fd 1 v.img | {
  nbdkit -f -U "$TMP/v.sock" "$PLUGIN" file="$TMP/v.img" passfd=0 >v.log 2>&1 & echo $! > v.pid; wait; } &
for i in $(seq 100); do [ -S v.sock ] && break; sleep 0.05; done
at_exit "kill \$(cat $TMP/v.pid) 2>/dev/null"
qio_nbd v -c 'write -P 0x77 1M 1M' -c flush || { cat v.log qio.out >&2; fail "vmseal disk via plugin"; }
kill "$(cat v.pid)"; sleep 0.2
$U disk passphrase --kek-file kek --out-file vpass v.img >/dev/null 2>&1 || fail "passphrase file"
qemu-io --object secret,id=s1,file=$TMP/vpass --image-opts driver=luks,key-secret=s1,file.filename=$TMP/v.img \
  -c 'read -P 0x77 1M 1M' >qio.out 2>&1 && ! grep -qi fail qio.out || { cat qio.out >&2; fail "vmseal disk: QEMU reads back"; }
ok "a vmseal-crypto-util disk, passphrase piped from 'disk passphrase --out-fd': QEMU reads what the plugin wrote"

# ---- hostile clients: refused without touching data -------------------------
serve h file=$TMP/d.luks passfd=5 5<pass || fail "server h"
H=$SPID
before=$(sha256sum < d.luks)
for c in unaligned-write past-end-read past-end-write wrap-read huge-write huge-read bad-magic unknown-cmd bad-option; do
  r=$(timeout 20 $PY "$CLIENT" "$TMP/h.sock" "$c" 2>&1) || fail "$c: client crashed: $r"
  case $r in
    "error "*|closed) ;;
    *) fail "hostile request $c was answered '$r'";;
  esac
  kill -0 $H 2>/dev/null || fail "$c killed the server"
  echo "#   $c -> $r"
done
[ "$($PY "$CLIENT" "$TMP/h.sock" good-read)" = ok ] || fail "server no longer serves after hostile clients"
[ "$(sha256sum < d.luks)" = "$before" ] || fail "hostile requests changed the image"
ok "hostile NBD requests (unaligned, past end, wrap, 4 GiB lengths, bad magic, unknown command, bad option) refused; image unchanged"
stop $H

# ---- FLUSH and FUA reach the disk: fdatasync before the reply ---------------
command -v strace >/dev/null || fail "strace missing"
rm -f f.sock
strace -f -qq -e trace=fdatasync,pwrite64 -o trace.txt \
  nbdkit -f -U "$TMP/f.sock" "$PLUGIN" file="$TMP/d.luks" passfd=5 5<pass >f.log 2>&1 &
F=$!
for i in $(seq 600); do [ -S f.sock ] && break; sleep 0.05; done
FN=$(pgrep -P $F) || fail "nbdkit under strace did not start"
at_exit "kill $FN 2>/dev/null"
[ -S f.sock ] || fail "nbdkit under strace: no socket"
count_sync() { grep -c 'fdatasync(' trace.txt || true; }
qio_nbd f -c 'write -P 1 0 4k' || fail "plain write"
n0=$(count_sync)
qio_nbd f -c 'write -f -P 2 0 4k' || fail "FUA write"   # -f: FUA
n1=$(count_sync)
qio_nbd f -c 'write -P 3 0 4k' -c flush || fail "write + flush"
n2=$(count_sync)
kill $FN; wait $F || true
# qemu-io's close flushes too, so each open/close adds one; FUA adds one more.
[ "$n1" -gt "$n0" ] || fail "no fdatasync for a FUA write"
[ "$n2" -gt "$n1" ] || fail "no fdatasync for FLUSH"
awk '/pwrite64\(/ {w=NR} /fdatasync\(/ {if (w) s=NR} END {exit !(s > w)}' trace.txt || fail "no fdatasync after the last write"
ok "FUA and FLUSH are fdatasync before the reply (strace: $n0 -> $n1 -> $n2)"

# ---- SIGKILL mid-write: flushed data intact, the guest side sees errors -----
serve k file=$TMP/d.luks passfd=5 5<pass || fail "server k"
K=$SPID
qio_nbd k -c 'write -P 0x42 0 4M' -c flush || fail "flushed write"
( qemu-io -f raw -c 'write -P 0x99 6M 8M' -c 'write -P 0x99 6M 8M' -c 'write -P 0x99 6M 8M' -c flush "$(nbd k)" >kill.out 2>&1; echo $? > kill.rc ) &
QP=$!
sleep 0.05
kill -9 $K
wait $QP || true
grep -qiE 'error|fail|disconnect|reset|broken' kill.out || [ "$(cat kill.rc)" != 0 ] \
  || { cat kill.out >&2; fail "the client did not notice the server's death"; }
serve k2 file=$TMP/d.luks passfd=5 5<pass || fail "restart after SIGKILL"
qio_nbd k2 -c 'read -P 0x42 0 4M' || { cat qio.out >&2; fail "flushed data lost after SIGKILL"; }
stop $SPID
qemu-img info --image-opts "driver=luks,key-secret=s0,file.filename=$TMP/d.luks" --object secret,id=s0,file=$TMP/pass \
  >/dev/null 2>&1 || qemu-img info d.luks >/dev/null || fail "qemu-img no longer opens the image"
cryptsetup luksDump d.luks >/dev/null || fail "cryptsetup no longer reads the header"
qio_luks -c 'read -P 0x42 0 4M' || fail "QEMU luks: flushed data after SIGKILL"
ok "SIGKILL mid-write: the client gets errors, flushed data reads back exactly, image opens in qemu-img and cryptsetup"

# ---- raw=1: a plain image as it is (hostd's export of a plain VM) -----------
head -c $((4 << 20)) /dev/urandom > plain.img
head -c 1000 /dev/urandom > plain.odd      # not whole sectors: the tail is not served
if nbdkit -f -U "$TMP/bad.sock" "$PLUGIN" file=$TMP/plain.img raw=1 passfd=5 5<pass >bad.log 2>&1; then
  fail "raw=1 with a key accepted"
fi
grep -q "raw=1 takes no key" bad.log || { cat bad.log >&2; fail "raw=1 with a key: message"; }
serve r file=$TMP/plain.img raw=1 || { cat r.log >&2; fail "raw server"; }
nbdcopy "$(nbd r)" plain.copy || fail "nbdcopy of the raw export"
cmp -s plain.img plain.copy || fail "raw export differs from the image"
qio_nbd r -c 'write -P 0x77 1M 4096' || fail "write through raw=1"
stop $SPID
[ "$(dd if=plain.img bs=4096 skip=256 count=1 status=none | od -An -v -tx1 | tr -d ' \n' | sed 's/77//g')" = "" ] \
  || fail "raw write not in the image"
ok "raw=1 serves a plain image byte-exact (no XTS), refuses a key"
