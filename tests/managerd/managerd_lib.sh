# Helpers for tests that run vmseal-managerd and drive it with the CLI
# (source after tests/testlib.sh).
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
  local d=$1 port=${2:-0} i
  MLOG=$d/managerd.log
  rm -f "$d/port"
  "$MGRD" -c "$d" serve --listen 127.0.0.1 --port "$port" --port-file "$d/port" >>"$MLOG" 2>&1 &
  MPID=$!
  at_exit "kill -9 $MPID 2>/dev/null"
  for ((i = 0; i < 200; i++)); do
    [ -s "$d/port" ] && break
    kill -0 "$MPID" 2>/dev/null || { cat "$MLOG" >&2; fail "vmseal-managerd did not start"; }
    sleep 0.05
  done
  [ -s "$d/port" ] || fail "vmseal-managerd did not write its port"
  MPORT=$(cat "$d/port")
  MURL=https://127.0.0.1:$MPORT
}

# mgr_stop: SIGTERM and wait for a clean exit.
mgr_stop() {
  kill -TERM "$MPID"
  local i rc=0
  for ((i = 0; i < 200; i++)); do
    if ! kill -0 "$MPID" 2>/dev/null; then
      wait "$MPID" 2>/dev/null || rc=$?
      [ "$rc" -eq 0 ] || { tail -30 "$MLOG" >&2; fail "vmseal-managerd exited with status $rc"; }
      return 0
    fi
    sleep 0.05
  done
  fail "vmseal-managerd did not stop on SIGTERM"
}

# expect_rc N CMD...: run CMD, require exit status N; output in $OUT.
expect_rc() {
  local want=$1 got=0; shift
  OUT=$("$@" 2>&1) || got=$?
  [ "$got" -eq "$want" ] || { echo "$OUT" >&2; fail "exit status $got, expected $want: $*"; }
}
