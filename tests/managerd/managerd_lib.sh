# Helpers for tests that run vmseal-managerd and drive it with the CLI
# (source after tests/testlib.sh).
source "$VMSEAL_SRC/tests/daemon_lib.sh"
MGRD=$VMSEAL_BUILD/managerd/vmseal-managerd
VMSEAL=$VMSEAL_BUILD/cli/vmseal

# mgr_init DIR [init options...]
mgr_init() {
  local d=$1; shift
  "$MGRD" init "$d" "$@" >/dev/null 2>"$TMP/init.err" || { cat "$TMP/init.err" >&2; fail "vmseal-managerd init $d"; }
}

# mgr_start DIR [PORT]: serve on 127.0.0.1, PORT or a free port; sets
# MPORT, MPID, MURL.
mgr_start() {
  local d=$1 port=${2:-0}
  MLOG=$d/managerd.log
  rm -f "$d/port"
  "$MGRD" -c "$d" serve --listen 127.0.0.1 --port "$port" --port-file "$d/port" >>"$MLOG" 2>&1 &
  MPID=$!
  at_exit "kill -9 $MPID 2>/dev/null"
  daemon_wait_port vmseal-managerd "$MPID" "$d/port" "$MLOG" 200
  MPORT=$DAEMON_PORT
  MURL=https://127.0.0.1:$MPORT
}

# mgr_stop: SIGTERM and wait for a clean exit.
mgr_stop() {
  daemon_stop vmseal-managerd "$MPID" "$MLOG"
}

# expect_rc N CMD...: run CMD, require exit status N; output in $OUT.
expect_rc() {
  local want=$1 got=0; shift
  OUT=$("$@" 2>&1) || got=$?
  [ "$got" -eq "$want" ] || { echo "$OUT" >&2; fail "exit status $got, expected $want: $*"; }
}
