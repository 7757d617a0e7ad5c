# Shared helpers for shell-driven tests (source it). Tests print TAP-ish
# lines and exit non-zero on the first failure; meson counts the script.
set -euo pipefail
: "${VMSEAL_BUILD:?run through meson test}"
TMP=$(mktemp -d /tmp/vmseal-test.XXXXXX)
cleanup_hooks=()
on_exit() { local h; for h in "${cleanup_hooks[@]}"; do eval "$h" || true; done; rm -rf "$TMP"; }
trap on_exit EXIT
at_exit() { cleanup_hooks+=("$1"); }
ok() { echo "ok - $*"; }
fail() { echo "not ok - $*" >&2; exit 1; }
# retry N CMD...: qemu-img create -f luks fails ~1 in 4 on these machines.
retry() { local n=$1 i; shift; for ((i = 1; i <= n; i++)); do "$@" && return 0; sleep 0.2; done; return 1; }
PY=/usr/bin/python3
