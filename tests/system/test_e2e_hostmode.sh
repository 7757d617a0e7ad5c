#!/usr/bin/env bash
# Host encryption mode through the manager (vmseal host encryption-mode):
# a host agent with a host key (core_dump_key) starts with the mode off;
# an encrypted VM arriving turns it on (as in vSphere); disabling is refused
# (409) while the VM is there and allowed once it is gone; the CLI enables
# it again, the host agent reports it, and the core_pattern it installed,
# driven as the kernel would, seals a core that only the host's private key
# opens. The kernel's own core_pattern is never touched: hostd writes a
# stand-in file (VMSEAL_TEST_CORE_PATTERN_FILE), and the test checks the
# real one is unchanged. Events record each change (who may do what:
# tests/managerd/authz_matrix.py).
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/system/system_lib.sh"
CU=$VMSEAL_BUILD/crypto-util/vmseal-crypto-util

REAL_BEFORE=$(cat /proc/sys/kernel/core_pattern)
restore_real() {  # safety net: should a hostd have written the real one
  [ "$(cat /proc/sys/kernel/core_pattern)" = "$REAL_BEFORE" ] ||
    printf '%s' "$REAL_BEFORE" > /proc/sys/kernel/core_pattern
}
at_exit restore_real
# short paths: the kernel takes a core_pattern of at most 127 bytes
S=$(mktemp -d /tmp/vmhm.XXXXXX)
at_exit "rm -rf $S"
ln -s "$VMSEAL_BUILD/hostd/vmseal-coredump-handler" "$S/h"
"$CU" hostkey generate "$S/priv" "$S/k" >/dev/null 2>&1 || fail "hostkey generate"
printf 'core\n' > "$S/pattern"
export VMSEAL_TEST_CORE_PATTERN_FILE=$S/pattern

stack_kmsd_setup kms1
stack_kmsd_start kms1
stack_managerd_setup
stack_managerd_start
stack_login
stack_kms_add prov1 kms1
stack_hostd_setup esx1
printf 'core_dump_key = %s\ncore_dump_dir = %s\ncore_dump_handler = %s\n' "$S/k" "$S/c" "$S/h" \
  >> "$STACK_DIR/esx1/hostd.conf"
stack_hostd_start esx1

mode_field() { vmseal --json host encryption-mode show esx1 | jq -r ".$1"; }
expect_rc 0 vmseal --json host encryption-mode show esx1
[ "$(jq -r .enabled <<<"$OUT")" = false ] || fail "the mode is on at start: $OUT"
[ "$(jq -r .configurable <<<"$OUT")" = true ] || fail "the host key is not seen: $OUT"
[ "$(cat "$S/pattern")" = core ] || fail "hostd changed the pattern while the mode is off"
ok "a host with a host key starts with the mode off, pattern untouched"

# an encrypted VM on the host turns it on; it cannot be disabled then
expect_rc 0 vmseal vm create hm1 --host esx1 --encrypt --disk 8
[ "$(mode_field enabled)" = true ] || fail "an encrypted VM did not turn the mode on"
[ "$(mode_field installed)" = true ] || fail "the pattern is not installed: $(mode_field error)"
[ "$(mode_field encrypted_vms)" = 1 ] || fail "encrypted_vms is not 1"
PAT=$(cat "$S/pattern")
[ "$PAT" = "|$S/h --key $S/k --dir $S/c %P %e %t" ] || fail "the pattern installed: $PAT"
expect_rc 6 vmseal host encryption-mode disable esx1
grep -qi "encrypted VMs" <<<"$OUT" || fail "the refusal does not say why: $OUT"
[ "$(cat "$S/pattern")" = "$PAT" ] || fail "a refused disable changed the pattern"
stack_host_api esx1 GET /v1/host | head -n -1 | jq -e '.encryption_mode.enabled == true' >/dev/null ||
  fail "GET /v1/host does not report the mode"
ok "an encrypted VM turned the mode on; disable is refused (409) while it is on the host"

expect_rc 0 vmseal vm rm hm1
expect_rc 0 vmseal host encryption-mode disable esx1
grep -q "disabled" <<<"$OUT" || fail "disable: $OUT"
[ "$(cat "$S/pattern")" = core ] || fail "disable did not put the previous pattern back: $(cat "$S/pattern")"
[ "$(mode_field enabled)" = false ] || fail "still enabled after disable"
ok "with the VM gone the mode is disabled and the previous core_pattern is back"

expect_rc 0 vmseal host encryption-mode enable esx1
grep -q "sealed to the host key" <<<"$OUT" || fail "enable: $OUT"
[ "$(cat "$S/pattern")" = "$PAT" ] || fail "enable did not install the pattern"
# the choice outlives a restart of the host agent
stack_hostd_stop esx1
stack_hostd_start esx1
[ "$(mode_field enabled)" = true ] || fail "the mode was lost across a restart"
# the pattern as the kernel runs it: a core on stdin, sealed to the host key
cmd=${PAT#|}
cmd=${cmd/\%P/4242}; cmd=${cmd/\%e/crashy}; cmd=${cmd/\%t/1700000000}
{ printf '\177ELF'; printf 'HOSTMODE-CORE-MARKER'; head -c 50000 /dev/zero; } > "$TMP/core.in"
# shellcheck disable=SC2086
$cmd < "$TMP/core.in" || fail "the handler the pattern names failed"
f=$S/c/core-1700000000-crashy-4242.vmhcore
[ -f "$f" ] || fail "no sealed core in $S/c: $(ls "$S/c")"
if grep -qa HOSTMODE-CORE-MARKER "$f"; then fail "the core is in clear"; fi
expect_rc 0 "$CU" coredump decrypt --host-key "$S/priv" --quiet "$f" "$TMP/core.out"
cmp -s "$TMP/core.in" "$TMP/core.out" || fail "the decrypted core differs"
ok "enabled through the CLI, kept across a restart; the installed pattern seals a core the host key opens"

expect_rc 0 vmseal --json events --since 0
jq -e 'map(select(.action == "host.encryption-mode" and .object == "esx1")) | length >= 2' <<<"$OUT" \
  >/dev/null || fail "no host.encryption-mode events"
ok "events record the changes"

[ "$(cat /proc/sys/kernel/core_pattern)" = "$REAL_BEFORE" ] || fail "the kernel's core_pattern was changed"
ok "the kernel's own core_pattern is unchanged"
finish
