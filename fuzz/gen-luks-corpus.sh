#!/usr/bin/env bash
# Regenerate fuzz/corpus/luks_header/: the 592-byte LUKS1 headers of real
# images made by cryptsetup, qemu-img and vmseal (key material cut off; the
# headers hold only salts and digests). Usage: fuzz/gen-luks-corpus.sh BUILDDIR
set -euo pipefail
build=$(realpath "${1:?build dir}")
out=$(realpath "$(dirname "$0")")/corpus/luks_header
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
umask 077
printf '%064d' 0 | tr 0 a > s
mkdir -p "$out"
hdr() { head -c 592 "$1" > "$out/$2"; }

truncate -s 4M cs.img
cryptsetup luksFormat -q --type luks1 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file s cs.img
hdr cs.img cryptsetup-aes-xts-512
truncate -s 4M cs2.img
cryptsetup luksFormat -q --type luks1 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
  --cipher aes-cbc-essiv:sha256 --key-size 256 --hash sha1 --key-file s cs2.img
head -c 32 /dev/urandom > s2
cryptsetup luksAddKey -q --pbkdf-force-iterations 1000 --key-file s cs2.img s2
hdr cs2.img cryptsetup-aes-cbc-essiv-2slots
for i in 1 2 3 4 5; do
  qemu-img create -q -f luks --object secret,id=s0,file=s -o key-secret=s0,iter-time=10 q.img 1M && break
done
hdr q.img qemu-img-luks
"$build/tests/disk/disk-tool" create v.img 1048576 s
"$build/tests/disk/disk-tool" keyslot-add v.img s s >/dev/null
hdr v.img vmseal-2slots
ls -l "$out"
