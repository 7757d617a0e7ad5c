# Helpers for vmseal-kmsd tests (source after tests/testlib.sh).
source "$VMSEAL_SRC/tests/daemon_lib.sh"
KMSD=$VMSEAL_BUILD/kmsd/vmseal-kmsd
KTESTS=$VMSEAL_SRC/tests/kmsd

# kmsd_init DIR [init options...]: a fresh setup, plus clients alice and bob.
kmsd_init() {
  local d=$1; shift
  "$KMSD" init "$d" "$@" >/dev/null || fail "vmseal-kmsd init $d"
  "$KMSD" -c "$d" enroll alice >/dev/null 2>&1 || fail "enroll alice"
  "$KMSD" -c "$d" enroll bob >/dev/null 2>&1 || fail "enroll bob"
}

# kmsd_start DIR: start the server on 127.0.0.1, a free port; sets PORT, KPID.
kmsd_start() {
  local d=$1
  KLOG=$d/server.log
  rm -f "$d/port"
  "$KMSD" -c "$d" serve --listen 127.0.0.1 --port 0 --port-file "$d/port" \
    >>"$d/server.log" 2>&1 &
  KPID=$!
  at_exit "kill -9 $KPID 2>/dev/null"
  daemon_wait_port vmseal-kmsd "$KPID" "$d/port" "$d/server.log" 100
  PORT=$DAEMON_PORT
}

# kmsd_stop: SIGTERM and wait (clean shutdown must finish within 10 s).
kmsd_stop() {
  daemon_stop vmseal-kmsd "$KPID" "$KLOG"
}
