#!/usr/bin/env bash
# End to end on real QEMU (TCG): kmsd + managerd + hostd + CLI. An encrypted
# VM is created, its guest writes a marker that is absent from the image on
# the host, shallow rekey (while it runs) and deep rekey keep the data
# readable, a restarted host agent unlocks the VM through the KMS, the event
# log tells who did what, and decrypt gives plain images that boot.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/system/system_lib.sh"

base_stack
expect_rc 0 vmseal vm create vm1 --host esx1 --disk 32 --encrypt \
  --kernel vmlinuz --initrd initrd.gz --append "console=ttyS0 quiet"
HOME1=$(stack_vm_home esx1 vm1)
kek0=$(vmseal --json vm info vm1 | jq -r .kek_id)
[ -n "$kek0" ] && [ "$kek0" != null ] || fail "no KEK id for vm1"
[ -f "$HOME1/disk0.luks" ] || fail "no LUKS disk in the VM home"
cryptsetup isLuks --type luks1 "$HOME1/disk0.luks" || fail "disk0.luks is not LUKS1"
tags=$(stack_kek_tags kms1 "$kek0")
grep -qx "x-Identifier = $(stack_vm_uuid vm1)" <<<"$tags" && grep -qx "x-Name = vm1" <<<"$tags" &&
  grep -qx "x-Vendor = vmseal" <<<"$tags" || { echo "$tags" >&2; fail "KEK tags on the KMS"; }
ok "encrypted VM created (KEK $kek0 on prov1, tagged with the VM on the KMS)"

boot_mark esx1 vm1 e2emark1
if grep -a -q 'VMSEAL-MARKER:e2emark1' "$HOME1/disk0.luks"; then fail "marker visible in the image file"; fi
ok "guest wrote its marker; the image file on the host does not show it"

# shallow rekey while the guest runs
# reconfigure through the manager (vm set, powered off): forwarded to the
# host, stored, and an event with old and new values of exactly the fields
# that changed (cpus is given but unchanged; boot_mark made the first one)
A0="console=ttyS0 quiet vmseal.marker=e2emark1" A1="console=ttyS0 quiet vmseal.wait=1"
expect_rc 0 vmseal --json vm set vm1 --cpus 1 --memory 320 --append "$A1"
jq -e --arg a "$A1" '.changed == true and .cpus == 1 and .memory_mb == 320 and .append == $a' \
  <<<"$OUT" >/dev/null || fail "vm set answer: $OUT"
expect_rc 0 vmseal --json vm info vm1
jq -e --arg a "$A1" '.memory_mb == 320 and .runtime.memory_mb == 320 and .append == $a' \
  <<<"$OUT" >/dev/null || fail "vm set not on the manager and the host: $OUT"
grep -qxF "append = $A1" "$HOME1/vm.conf" || { cat "$HOME1/vm.conf" >&2; fail "vm set: append not in the host's vm.conf"; }
expect_rc 0 vmseal --json events --since 0
jq -e --arg o "$A0" --arg n "$A1" 'map(select(.action == "vm.reconfigure" and .object == "vm1"))
  | length == 2 and (.[1].old == {memory_mb: 256, append: $o}) and (.[1].new == {memory_mb: 320, append: $n})' \
  <<<"$OUT" >/dev/null || { jq 'map(select(.action == "vm.reconfigure"))' <<<"$OUT" >&2; fail "vm.reconfigure event"; }
expect_rc 0 vmseal vm set vm1 --memory 320
grep -q "nothing to change" <<<"$OUT" || fail "vm set without a change: $OUT"
expect_rc 2 vmseal vm set vm1
ok "vm set through the manager: host and inventory updated, vm.reconfigure event with old and new values"
expect_rc 0 vmseal vm start vm1
stack_until 120 stack_vm_console_has vm1 VMSEAL-READY || fail "guest did not come up"
expect_rc 6 vmseal vm set vm1 --memory 256
grep -q "must be powered off to reconfigure" <<<"$OUT" || fail "vm set while running: $OUT"
[ "$(vmseal --json vm info vm1 | jq .memory_mb)" = 320 ] || fail "refused vm set changed the inventory"
ok "vm set of a running VM: 409 (exit 6), nothing changed"
luks_before=$(head -c 4096 "$HOME1/disk0.luks" | sha256sum)
expect_rc 0 vmseal vm rekey vm1
kek1=$(vmseal --json vm info vm1 | jq -r .kek_id)
[ "$kek1" != "$kek0" ] || fail "shallow rekey kept KEK $kek0"
[ "$(head -c 4096 "$HOME1/disk0.luks" | sha256sum)" = "$luks_before" ] || fail "shallow rekey changed the LUKS header"
grep -q "^vm.keysafe = vmseal:keysafe:v1:[^:]*:$kek1:" "$HOME1/vm.conf" || fail "key safes not rewrapped with $kek1"
expect_rc 0 vmseal vm stop vm1
stack_vm_wait_off vm1 60 || fail "vm1 did not power off"
ok "shallow rekey while running: new KEK $kek1, LUKS header untouched"

uuid_before=$(cryptsetup luksDump "$HOME1/disk0.luks" | sed -n 's/^UUID:[[:space:]]*//p')
mk_before=$(cryptsetup luksDump "$HOME1/disk0.luks" | sed -n '/MK digest/,/MK salt/p')
expect_rc 0 vmseal vm rekey vm1 --deep
kek2=$(vmseal --json vm info vm1 | jq -r .kek_id)
[ "$kek2" != "$kek1" ] || fail "deep rekey kept KEK $kek1"
[ "$(cryptsetup luksDump "$HOME1/disk0.luks" | sed -n '/MK digest/,/MK salt/p')" != "$mk_before" ] ||
  fail "deep rekey kept the disk's data key"
if grep -a -q 'VMSEAL-MARKER:e2emark1' "$HOME1"/disk0.*; then fail "marker visible after deep rekey"; fi
boot_check esx1 vm1 e2emark1
ok "deep rekey: new KEK $kek2 and data key; the guest still reads its marker"

# host agent restart: KEKs are in memory only; it gets them back via the manager
stack_hostd_stop esx1
stack_hostd_start esx1
stack_until 60 vm_unlocked vm1 || fail "vm1 still locked after the host agent restarted: $(vm_locked vm1)"
boot_check esx1 vm1 e2emark1
ok "hostd restart: the VM unlocks via the manager and the KMS, and boots"

# The KEKs reached the host over mutual TLS and stayed in memory: none of
# them, raw, hex or base64, is in any file of the manager, the host or the CLI.
for k in "$kek0" "$kek1" "$kek2"; do
  hex=$(stack_kmip kms1 get "$k" --reveal-to-fd 3 3>&1 >/dev/null | xxd -p -c 64)
  [ ${#hex} -eq 64 ] || fail "KEK $k: no 32 key bytes from the KMS"
  KEKHEX=$hex $PY - "$STACK_DIR/manager" "$STACK_DIR/esx1" "$XDG_CONFIG_HOME" <<'PY' || fail "KEK $k found on disk"
import base64, os, sys
k = bytes.fromhex(os.environ["KEKHEX"])
needles = [k, k.hex().encode(), k.hex().upper().encode(), base64.b64encode(k), base64.b64encode(k).rstrip(b"=")]
bad = 0
for top in sys.argv[1:]:
    for d, _, files in os.walk(top):
        for f in files:
            p = os.path.join(d, f)
            if os.path.islink(p) or not os.path.isfile(p) or f.endswith(".sock"):
                continue
            data = open(p, "rb").read()
            if any(n in data for n in needles):
                print("KEK bytes in", p, file=sys.stderr); bad = 1
sys.exit(bad)
PY
done
ok "no KEK (raw, hex, base64) in any file of the manager, the host agent or the CLI"

# ... nor in the memory of the manager, a network-facing process: a KEK
# passes through it in locked memory only, sealed for the host and wiped at
# once. The scan is shown to work: it finds a KEK planted in a process.
for k in "$kek0" "$kek1" "$kek2"; do
  stack_kmip kms1 get "$k" --reveal-to-fd 3 3>&1 >/dev/null | xxd -p -c 64
done > "$TMP/keks.hex"
[ "$(wc -l < "$TMP/keks.hex")" = 3 ] || fail "KEKs from the KMS"
$PY -c 'import sys,time; k=bytes.fromhex(open(sys.argv[1]).readline().strip()); x=k.hex(); print("ready", flush=True); time.sleep(30)' \
  "$TMP/keks.hex" > "$TMP/plant.out" & plant=$!
stack_until 10 grep -q ready "$TMP/plant.out" || fail "planted process"
set +e; $PY "$VMSEAL_SRC/tests/system/memscan.py" "$plant" < "$TMP/keks.hex" > "$TMP/scan.out"; rc=$?; set -e
kill $plant 2>/dev/null; wait $plant 2>/dev/null || true
[ $rc = 1 ] || fail "the memory scan does not find a planted KEK ($rc): $(cat "$TMP/scan.out")"
set +e; $PY "$VMSEAL_SRC/tests/system/memscan.py" "${STACK_PID[manager]}" < "$TMP/keks.hex" > "$TMP/scan.out"; rc=$?; set -e
[ $rc = 0 ] || fail "KEK bytes in vmseal-managerd's memory ($rc): $(head -5 "$TMP/scan.out")"
ok "no KEK (raw, hex, base64) in the memory of vmseal-managerd after the lifecycle; the scan finds a planted one"

expect_rc 0 vmseal --json events --since 0
for a in vm.create vm.rekey vm.power-on host.register kms.add; do
  jq -e --arg a "$a" 'map(select(.action == $a)) | length > 0' <<<"$OUT" >/dev/null || fail "no $a event"
done
[ "$(jq '[.[] | select(.action == "vm.rekey")] | length' <<<"$OUT")" -eq 2 ] || fail "two vm.rekey events"
jq -e --arg o "$kek1" --arg n "$kek2" \
  'map(select(.action == "vm.rekey" and .old.kek_id == $o and .new.kek_id == $n and .new.deep == true)) | length == 1' \
  <<<"$OUT" >/dev/null || fail "deep rekey event with old and new KEK"
expect_rc 0 vmseal events
grep -q "vm.rekey" <<<"$OUT" || fail "events table"
ok "event log: who, what, old and new values"

expect_rc 0 vmseal vm decrypt vm1
[ "$(vmseal --json vm info vm1 | jq -r .encrypted)" = false ] || fail "vm1 still encrypted"
[ -f "$HOME1/disk0.img" ] && [ ! -e "$HOME1/disk0.luks" ] || fail "decrypt did not leave a raw disk0.img"
grep -q "^[a-z0-9.]*keysafe =" "$HOME1/vm.conf" && fail "key safes left in vm.conf after decrypt"
grep -a -q 'VMSEAL-MARKER:e2emark1:vda' "$HOME1/disk0.img" || fail "marker not in the plain image"
boot_check esx1 vm1 e2emark1
ok "decrypt: plain raw image holding the marker, boots and reads it"
finish
