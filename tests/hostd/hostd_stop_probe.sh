#!/usr/bin/env bash
# vmseal-hostd with accel = auto stopped while its KVM probe QEMU runs:
# SIGTERM ends hostd with status 0 at once and the probe QEMU and its
# /tmp/vmseal-kvm-probe.* folder are gone; SIGKILL of hostd takes the probe
# QEMU with it (PR_SET_PDEATHSIG). Skipped without read-write /dev/kvm
# (then there is no probe QEMU to stop).
source "$VMSEAL_SRC/tests/testlib.sh"

[ -r /dev/kvm ] && [ -w /dev/kvm ] || { echo "1..0 # SKIP no read-write /dev/kvm"; exit 77; }
unset VMSEAL_ACCEL
HOSTD=$VMSEAL_BUILD/hostd/vmseal-hostd
guest=$("$VMSEAL_SRC/tests/guest/build-guest.sh" "$VMSEAL_BUILD/guest")

cd "$TMP"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=host-a" -keyout host.key -out host.crt 2>/dev/null
chmod 600 host.key

# probe_pid HOSTD_PID: the pid of hostd's KVM probe QEMU, waiting up to 10 s
probe_pid() {
  local i c
  for ((i = 0; i < 500; i++)); do
    for c in $(pgrep -P "$1" 2>/dev/null); do
      if tr '\0' ' ' < "/proc/$c/cmdline" 2>/dev/null | grep -q 'vmseal-kvm-probe'; then
        echo "$c"; return 0
      fi
    done
    kill -0 "$1" 2>/dev/null || return 1
    sleep 0.02
  done
  return 1
}
probe_dir() {  # PID: the probe folder named on the QEMU command line
  tr '\0' '\n' < "/proc/$1/cmdline" | sed -n 's|^file:\(/tmp/vmseal-kvm-probe\.[^/]*\)/.*|\1|p'
}
gone_within() {  # PID SECONDS
  local i
  for ((i = 0; i < $2 * 20; i++)); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.05
  done
  return 1
}

HPID= QPID=
kill_left() {
  [ -n "$HPID" ] && kill -KILL "$HPID" 2>/dev/null
  [ -n "$QPID" ] && kill -KILL "$QPID" 2>/dev/null
  true
}
at_exit kill_left

start() {  # N: a fresh datastore (no probe cache), hostd started
  mkdir -p "ds$1"
  cat > "hostd$1.conf" <<EOF
name = host-a
datastore = $TMP/ds$1
listen = 127.0.0.1
port = 0
cert = $TMP/host.crt
key = $TMP/host.key
ca = $TMP/host.crt
manager_fingerprint = 0000000000000000000000000000000000000000000000000000000000000000
manager_subject = CN=manager
accel = auto
probe_kernel = $guest/vmlinuz
probe_initrd = $guest/initrd.gz
EOF
  "$HOSTD" -c "hostd$1.conf" --port-file "port$1" >"hostd$1.log" 2>&1 &
  HPID=$!
  QPID=$(probe_pid "$HPID") || { cat "hostd$1.log" >&2; echo "# no probe QEMU seen (it ended first); not testable this run"; exit 77; }
}

# ---- SIGTERM during the probe
start 1
dir=$(probe_dir "$QPID")
[ -n "$dir" ] || fail "probe folder not found on the QEMU command line"
t0=$(date +%s%N)
kill -TERM "$HPID"
rc=0
wait "$HPID" || rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
HPID=
[ "$rc" = 0 ] || { cat hostd1.log >&2; fail "hostd exited with status $rc on SIGTERM during the probe"; }
ok "SIGTERM during the KVM probe: hostd exits 0 in $ms ms"
[ "$ms" -lt 5000 ] || fail "hostd took $ms ms to stop"
gone_within "$QPID" 2 || fail "probe QEMU $QPID still running after hostd stopped"
[ ! -e "$dir" ] || fail "probe folder $dir left behind"
[ ! -s port1 ] || fail "hostd started serving after a stop during the probe"
[ ! -e ds1/.kvm-probe ] || ! grep -q . ds1/.kvm-probe || fail "an interrupted probe was cached"
grep -q "stopping" hostd1.log || fail "no stop logged"
QPID=
ok "probe QEMU and its folder are gone, nothing cached, hostd never served"

# ---- SIGKILL of hostd during the probe: the probe QEMU dies with it
start 2
dir=$(probe_dir "$QPID")
kill -KILL "$HPID"
wait "$HPID" 2>/dev/null || true
HPID=
gone_within "$QPID" 5 || fail "probe QEMU $QPID outlived a killed hostd"
QPID=
rm -rf "$dir"  # a killed hostd cannot clean up; only the QEMU must not linger
ok "SIGKILL of hostd takes its probe QEMU with it"
