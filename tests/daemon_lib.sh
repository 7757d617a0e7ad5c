# Start/stop helpers for our daemons in shell tests (sourced by
# tests/kmsd/kmsd_lib.sh and tests/managerd/managerd_lib.sh, after
# tests/testlib.sh).

# daemon_wait_port NAME PID PORTFILE LOG TRIES: wait (TRIES x 50 ms) until
# the daemon wrote PORTFILE; sets DAEMON_PORT. Fails (with the log) when the
# daemon dies first or never writes it.
daemon_wait_port() {
  local name=$1 pid=$2 file=$3 log=$4 tries=$5 i
  for ((i = 0; i < tries; i++)); do
    [ -s "$file" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; fail "$name did not start"; }
    sleep 0.05
  done
  [ -s "$file" ] || fail "$name did not write its port"
  DAEMON_PORT=$(cat "$file")
}

# daemon_stop NAME PID LOG: SIGTERM, then require a clean exit (status 0)
# within 10 s; shows the end of LOG otherwise.
daemon_stop() {
  local name=$1 pid=$2 log=$3 i rc=0
  kill -TERM "$pid"
  for ((i = 0; i < 200; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null || rc=$?
      [ "$rc" -eq 0 ] || { tail -30 "$log" >&2; fail "$name exited with status $rc"; }
      return 0
    fi
    sleep 0.05
  done
  fail "$name did not stop on SIGTERM"
}
