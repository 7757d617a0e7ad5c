#!/usr/bin/env bash
# Locked memory or nothing: vmseal-kmsd, vmseal-managerd and vmseal-hostd
# started where memory cannot be locked (RLIMIT_MEMLOCK 0 and, since tests
# run as root, without CAP_IPC_LOCK) refuse to start with a clear message;
# with allow_unlocked_memory = yes they start, say so loudly, and work.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/kmsd/kmsd_lib.sh"
source "$VMSEAL_SRC/tests/managerd/managerd_lib.sh"
HOSTD=$VMSEAL_BUILD/hostd/vmseal-hostd
# AddressSanitizer makes mlock a no-op that always succeeds: nothing to test
if grep -q __asan_init "$KMSD"; then echo "# skipped: AddressSanitizer ignores mlock"; exit 77; fi

# "${NOLOCK[@]}" CMD...: CMD without CAP_IPC_LOCK (nor a way back to it
# through exec) and with RLIMIT_MEMLOCK 0; prlimit and setpriv exec CMD, so
# CMD & gives CMD's own pid in $!
NOLOCK=(prlimit --memlock=0:0 -- setpriv --inh-caps=-ipc_lock --bounding-set=-ipc_lock --)
nolock() { "${NOLOCK[@]}" "$@"; }
nolock sh -c 'grep -q "^CapEff:.*" /proc/self/status' || fail "setpriv/prlimit do not work here"
cap_eff=$(nolock sh -c 'sed -n "s/^CapEff:\t//p" /proc/self/status')
(( (16#$cap_eff >> 14) & 1 )) && fail "CAP_IPC_LOCK still effective under setpriv"
[ "$(nolock sh -c 'ulimit -l')" = 0 ] || fail "RLIMIT_MEMLOCK is not 0 under prlimit"

# refuses NAME LOG CMD...: CMD, run without locked memory, must exit
# non-zero within 20 s, naming the limit and the override
refuses() {
  local name=$1 log=$2 rc=0; shift 2
  nolock timeout 20 "$@" >"$log" 2>&1 || rc=$?
  [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || { cat "$log" >&2; fail "$name started without locked memory (exit $rc)"; }
  grep -q "cannot lock .* bytes of memory for secrets" "$log" || { cat "$log" >&2; fail "$name: no clear reason"; }
  grep -q "RLIMIT_MEMLOCK is 0 bytes" "$log" || { cat "$log" >&2; fail "$name: limit not named"; }
  grep -q "allow_unlocked_memory = yes" "$log" || { cat "$log" >&2; fail "$name: override not named"; }
  ok "$name refuses to start without locked memory: $(grep -m1 'cannot lock' "$log" | cut -c1-160)..."
}

# ---- vmseal-kmsd ---------------------------------------------------------------
kmsd_init "$TMP/k"
refuses vmseal-kmsd "$TMP/k/refused.log" \
  "$KMSD" -c "$TMP/k" serve --listen 127.0.0.1 --port 0 --port-file "$TMP/k/port"
[ ! -s "$TMP/k/port" ] || fail "vmseal-kmsd listened before refusing"

# where locking works, the default configuration starts as before
kmsd_start "$TMP/k"
out=$(timeout 60 $PY "$KTESTS/kmsd_tool.py" "$TMP/k" "$PORT" alice create-get 1) || fail "kmsd with locked memory"
kpid=$KPID
[ "$(sed -n 's/^VmLck:\s*\([0-9]*\) kB/\1/p' /proc/$kpid/status)" -gt 0 ] || fail "kmsd holds no locked memory"
kmsd_stop
ok "vmseal-kmsd with locked memory: serves, VmLck > 0"

echo "allow_unlocked_memory = yes" >> "$TMP/k/kmsd.conf"
KLOG=$TMP/k/server.log
: > "$KLOG"
rm -f "$TMP/k/port"
"${NOLOCK[@]}" "$KMSD" -c "$TMP/k" serve --listen 127.0.0.1 --port 0 --port-file "$TMP/k/port" >>"$KLOG" 2>&1 &
KPID=$!
at_exit "kill -9 $KPID 2>/dev/null"
daemon_wait_port vmseal-kmsd "$KPID" "$TMP/k/port" "$KLOG" 100
PORT=$DAEMON_PORT
grep -q "WARNING: allow_unlocked_memory = yes" "$KLOG" || fail "kmsd: override not logged"
grep -q "KEY MATERIAL MAY BE SWAPPED TO DISK" "$KLOG" || fail "kmsd: failed lock check not logged loudly"
out=$(timeout 60 $PY "$KTESTS/kmsd_tool.py" "$TMP/k" "$PORT" alice create-get 2) || { cat "$KLOG"; fail "kmsd with the override: create-get"; }
[ "$(echo "$out" | wc -l)" = 2 ] || fail "kmsd with the override: answers"
grep -q "bytes of key material in UNLOCKED memory" "$KLOG" || fail "kmsd: unlocked secrets not logged"
[ "$(sed -n 's/^VmLck:\s*\([0-9]*\) kB/\1/p' /proc/$KPID/status)" = 0 ] || fail "kmsd locked memory after all?"
kmsd_stop
ok "vmseal-kmsd with allow_unlocked_memory = yes: starts, warns loudly, serves keys"

# ---- vmseal-managerd -------------------------------------------------------------
mgr_init "$TMP/m"
refuses vmseal-managerd "$TMP/m/refused.log" \
  "$MGRD" -c "$TMP/m" serve --listen 127.0.0.1 --port 0 --port-file "$TMP/m/port"
echo "allow_unlocked_memory = yes" >> "$TMP/m/managerd.conf"
MLOG=$TMP/m/managerd.log
rm -f "$TMP/m/port"
"${NOLOCK[@]}" "$MGRD" -c "$TMP/m" serve --listen 127.0.0.1 --port 0 --port-file "$TMP/m/port" >>"$MLOG" 2>&1 &
MPID=$!
at_exit "kill -9 $MPID 2>/dev/null"
daemon_wait_port vmseal-managerd "$MPID" "$TMP/m/port" "$MLOG" 200
grep -q "WARNING: allow_unlocked_memory = yes" "$MLOG" || fail "managerd: override not logged"
grep -q "KEY MATERIAL MAY BE SWAPPED TO DISK" "$MLOG" || fail "managerd: failed lock check not logged"
curl -sk "https://127.0.0.1:$DAEMON_PORT/api/v1/" -o /dev/null -w '%{http_code}' | grep -q '^[1-5]' \
  || fail "managerd with the override does not answer"
mgr_stop
ok "vmseal-managerd: refuses, and starts with allow_unlocked_memory = yes"

# ---- vmseal-hostd ----------------------------------------------------------------
mkdir -p "$TMP/h/ds"
cd "$TMP/h"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/O=vmseal/CN=test-ca" -keyout ca.key -out ca.crt \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=vmseal/CN=host-a" \
  -keyout host.key -out host.csr 2>/dev/null
openssl x509 -req -in host.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out host.crt \
  -extfile <(printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1\n') 2>/dev/null
chmod 600 host.key
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=vmseal/CN=manager" \
  -keyout manager.key -out manager.csr 2>/dev/null
openssl x509 -req -in manager.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out manager.crt \
  -extfile <(printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n') 2>/dev/null
cat > hostd.conf <<EOF
name = host-a
datastore = $TMP/h/ds
listen = 127.0.0.1
port = 0
cert = $TMP/h/host.crt
key = $TMP/h/host.key
ca = $TMP/h/ca.crt
manager_subject = CN=manager,O=vmseal
manager_fingerprint = $(openssl x509 -in manager.crt -noout -fingerprint -sha256 | sed 's/.*=//')
accel = tcg
EOF
refuses vmseal-hostd "$TMP/h/refused.log" "$HOSTD" -c hostd.conf --port-file port
echo "allow_unlocked_memory = yes" >> hostd.conf
"${NOLOCK[@]}" "$HOSTD" -c hostd.conf --port-file port >>hostd.log 2>&1 &
HPID=$!
at_exit "kill -9 $HPID 2>/dev/null"
daemon_wait_port vmseal-hostd "$HPID" port hostd.log 200
grep -q "WARNING: allow_unlocked_memory = yes" hostd.log || fail "hostd: override not logged"
grep -q "KEY MATERIAL MAY BE SWAPPED TO DISK" hostd.log || fail "hostd: failed lock check not logged"
daemon_stop vmseal-hostd "$HPID" hostd.log
ok "vmseal-hostd: refuses, and starts with allow_unlocked_memory = yes"
