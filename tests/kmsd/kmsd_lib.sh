# Helpers for vmseal-kmsd tests (source after tests/testlib.sh).
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
  local d=$1 i
  KLOG=$d/server.log
  rm -f "$d/port"
  "$KMSD" -c "$d" serve --listen 127.0.0.1 --port 0 --port-file "$d/port" \
    >>"$d/server.log" 2>&1 &
  KPID=$!
  at_exit "kill -9 $KPID 2>/dev/null"
  for ((i = 0; i < 100; i++)); do
    [ -s "$d/port" ] && break
    kill -0 "$KPID" 2>/dev/null || { cat "$d/server.log" >&2; fail "vmseal-kmsd did not start"; }
    sleep 0.05
  done
  [ -s "$d/port" ] || fail "vmseal-kmsd did not write its port"
  PORT=$(cat "$d/port")
}

# kmsd_stop: SIGTERM and wait (clean shutdown must finish within 10 s).
kmsd_stop() {
  kill -TERM "$KPID"
  local i
  for ((i = 0; i < 200; i++)); do
    if ! kill -0 "$KPID" 2>/dev/null; then
      local rc=0
      wait "$KPID" 2>/dev/null || rc=$?
      [ "$rc" -eq 0 ] || { tail -30 "$KLOG" >&2; fail "vmseal-kmsd exited with status $rc"; }
      return 0
    fi
    sleep 0.05
  done
  fail "vmseal-kmsd did not stop on SIGTERM"
}
