# Helpers for the end-to-end system tests (source after tests/testlib.sh):
# the whole stack through scripts/lib/stack.sh, failures through fail().
source "$VMSEAL_SRC/scripts/lib/stack.sh"
stack_fail() { fail "stack: $*"; }
STACK_SRC=$VMSEAL_SRC
stack_init "$TMP/stack" "$VMSEAL_BUILD"
at_exit stack_cleanup
stack_guest

# boot_check HOST VM MARKER: boot the guest with vmseal.check=MARKER; it must
# read back the marker it wrote earlier.
boot_check() {
  vmseal vm set "$2" --append "console=ttyS0 quiet vmseal.check=$3" >/dev/null || fail "vm set $2 --append"
  local out
  out=$(stack_vm_boot "$1" "$2") || fail "boot of $2 (check)"
  grep -q '^VMSEAL-CHECK-OK' <<<"$out" || { echo "$out" >&2; fail "guest $2 does not read its marker $3"; }
}

# boot_mark HOST VM MARKER: boot the guest with vmseal.marker=MARKER.
boot_mark() {
  vmseal vm set "$2" --append "console=ttyS0 quiet vmseal.marker=$3" >/dev/null || fail "vm set $2 --append"
  local out
  out=$(stack_vm_boot "$1" "$2") || fail "boot of $2 (marker)"
  grep -q '^VMSEAL-MARKER-WRITTEN vda' <<<"$out" || { echo "$out" >&2; fail "guest $2 did not write its marker"; }
}

# expect_rc N CMD...: run CMD, require exit status N; output in $OUT.
expect_rc() {
  local want=$1 got=0; shift
  OUT=$("$@" 2>&1) || got=$?
  [ "$got" -eq "$want" ] || { echo "$OUT" >&2; fail "exit status $got, expected $want: $*"; }
}

# vm_locked VM: the host reports the VM locked (prints the reason).
vm_locked() {
  local j
  j=$(stack_vm_json "$1") || return 1
  jq -e '.runtime.locked == true' <<<"$j" >/dev/null || return 1
  jq -r '.runtime.locked_reason' <<<"$j"
}
vm_unlocked() { stack_vm_json "$1" | jq -e '.runtime.locked == false' >/dev/null; }

# base stack: one key server, the manager (logged in, provider prov1), host esx1
base_stack() {
  stack_kmsd_setup kms1
  stack_kmsd_start kms1
  stack_managerd_setup
  stack_managerd_start
  stack_login
  stack_kms_add prov1 kms1
  stack_hostd_setup esx1
  stack_hostd_start esx1
}

# finish: stop the whole stack; every daemon must exit with status 0 on
# SIGTERM (no crash, no sanitizer report).
finish() {
  stack_cleanup
  [ ${#STACK_UNCLEAN[@]} -eq 0 ] || fail "did not stop cleanly: ${STACK_UNCLEAN[*]}"
  ok "every daemon stopped cleanly on SIGTERM"
}
