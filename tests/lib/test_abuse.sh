#!/usr/bin/env bash
# Connection-slot exhaustion: vmseal-kmsd, vmseal-managerd and vmseal-hostd
# run for real on 127.0.0.1 with their default limits; from 127.0.0.2 an
# attacker keeps 2,000 connections open — raw TCP that sends nothing, then
# TLS ClientHello-then-silence, and (managerd, which asks for no client
# certificate) finished handshakes then silence — while a legitimate client on 127.0.0.1 must
# get a correct answer within 1 s each time: a KMIP Query (kmsd, client
# certificate), GET /api/v1/session with a token (managerd), GET /v1/host
# with the manager's certificate (hostd). A manager long poll (events,
# wait=40) runs through its attacks and must not be cut.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/kmsd/kmsd_lib.sh"
source "$VMSEAL_SRC/tests/managerd/managerd_lib.sh"

ABUSE=$VMSEAL_SRC/tests/lib/abuse.py
KMIP_PROBE=${KMIP_PROBE:-$VMSEAL_BUILD/tests/lib/kmip_probe}
HOSTD=$VMSEAL_BUILD/hostd/vmseal-hostd
CONNS=2000          # attacker connections, kept open
ATTACK_S=9          # each attack lasts this long, then stops by itself
PROBES=10           # legitimate requests during each attack, 0.5 s apart
LIMIT_S=1.0         # each must be answered within this
LIMIT_MS=1000
DAEMONS=${ABUSE_DAEMONS:-kmsd managerd hostd}   # a subset, for debugging
want() { [[ " $DAEMONS " == *" $1 "* ]]; }
MODES=${ABUSE_MODES:-tcp tls idle}

# 2,000 sockets here, more in the daemons (their limits keep them few, but
# the old code kept one per connection)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge $((CONNS + 200)) ] || fail "open-file limit $(ulimit -n) < $((CONNS + 200))"
$PY - <<'PY' || fail "cannot bind 127.0.0.2 (loopback is 127.0.0.0/8 on Linux)"
import socket
s = socket.socket(); s.bind(('127.0.0.2', 0)); s.close()
PY

ATTACK_PID=
stop_attack() { [ -n "$ATTACK_PID" ] && kill "$ATTACK_PID" 2>/dev/null; ATTACK_PID=; true; }
at_exit stop_attack

# under_attack NAME PORT MODE CMD...: start the attacker, wait until its
# connections are issued, run CMD (the probes), require it to succeed while
# the attack still runs, then let the attack end.
under_attack() {
  local name=$1 port=$2 mode=$3 rc=0; shift 3
  [[ " $MODES " == *" $mode "* ]] || return 0
  rm -f "$TMP/ready"
  $PY "$ABUSE" attack "$port" "$mode" "$CONNS" "$ATTACK_S" "$TMP/ready" 127.0.0.2 \
    >"$TMP/attack.out" 2>&1 &
  ATTACK_PID=$!
  for _ in $(seq 100); do [ -s "$TMP/ready" ] && break; sleep 0.05; done
  [ -s "$TMP/ready" ] || { cat "$TMP/attack.out" >&2; fail "$name/$mode: the attacker did not start"; }
  sleep 1      # let the attacker's connections pile up
  local t0=$SECONDS
  "$@" >"$TMP/probe.out" 2>&1 || rc=$?
  kill -0 "$ATTACK_PID" 2>/dev/null ||
    { cat "$TMP/attack.out" "$TMP/probe.out" >&2; fail "$name/$mode: attack ended before the probes"; }
  wait "$ATTACK_PID" || true
  ATTACK_PID=
  sed 's/^/  /' "$TMP/attack.out"
  grep -E '^(probes|kmip probes):' "$TMP/probe.out" | sed 's/^/  /'
  [ "$rc" -eq 0 ] || { cat "$TMP/probe.out" >&2; fail "$name/$mode: legitimate client not served within ${LIMIT_S}s under attack"; }
  ok "$name, $CONNS $mode connections from 127.0.0.2: $PROBES legitimate requests from 127.0.0.1 answered within ${LIMIT_S}s (probes took $((SECONDS - t0)) s)"
}

# ---- vmseal-kmsd ------------------------------------------------------
if want kmsd; then
kmsd_init "$TMP/k"
kmsd_start "$TMP/k"
kprobe() {
  "$KMIP_PROBE" "$PORT" "$TMP/k/ca.crt" "$TMP/k/clients/alice/alice.crt" \
    "$TMP/k/clients/alice/alice.key" "$PROBES" 500 "$LIMIT_MS"
}
kprobe_once() { "$KMIP_PROBE" "$PORT" "$TMP/k/ca.crt" "$TMP/k/clients/alice/alice.crt" \
                  "$TMP/k/clients/alice/alice.key" 1 0 5000 >/dev/null; }
kprobe_once || fail "kmsd: Query before the attack"
under_attack kmsd "$PORT" tcp kprobe
under_attack kmsd "$PORT" tls kprobe
kill -0 "$KPID" || fail "kmsd died"
grep -q "refused: too many TLS handshakes in progress from this address" "$TMP/k/server.log" ||
  fail "kmsd: refusals not logged"
kmsd_stop
fi

# ---- vmseal-managerd --------------------------------------------------
if want managerd; then
mgr_init "$TMP/m"
mgr_start "$TMP/m"
TOKEN=$($PY "$ABUSE" login "$MPORT" "$TMP/m/ca.crt" administrator "$TMP/m/admin-password") ||
  fail "managerd: login"
mprobe() {
  $PY "$ABUSE" probe "$MPORT" "$TMP/m/ca.crt" /api/v1/session "$PROBES" 0.5 "$LIMIT_S" \
    --token "$TOKEN" --expect user
}
# a long poll runs through the attacks: never dropped, and the 30 s idle
# timeout does not cut it (it applies between requests)
$PY "$ABUSE" longpoll "$MPORT" "$TMP/m/ca.crt" "$TOKEN" 40 >"$TMP/longpoll.out" 2>&1 &
LONGPOLL_PID=$!
at_exit "kill $LONGPOLL_PID 2>/dev/null"
under_attack managerd "$MPORT" tcp mprobe
under_attack managerd "$MPORT" tls mprobe
# the manager asks for no client certificate: finished handshakes, then
# idle connections, are what fills its slots
under_attack managerd "$MPORT" idle mprobe
wait "$LONGPOLL_PID" || { cat "$TMP/longpoll.out" >&2; fail "managerd: long poll cut"; }
ok "managerd: $(cat "$TMP/longpoll.out")"
kill -0 "$MPID" || fail "managerd died"
grep -q "too many TLS handshakes in progress from this address" "$MLOG" ||
  fail "managerd: refusals not logged"
mgr_stop
fi

# ---- vmseal-hostd -----------------------------------------------------
if want hostd; then
mkdir -p "$TMP/h/ds"
(cd "$TMP/h"
 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
   -subj "/O=vmseal/CN=test-ca" -keyout ca.key -out ca.crt \
   -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
 leaf() {  # name subject eku [san]
   local ext="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=$3"
   [ -n "${4:-}" ] && ext+="
subjectAltName=$4"
   openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$2" \
     -keyout "$1.key" -out "$1.csr"
   openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
     -extfile <(echo "$ext") -out "$1.crt"
   chmod 600 "$1.key"
 }
 leaf manager "/O=vmseal/CN=manager" clientAuth
 leaf host "/O=vmseal/CN=host-a" serverAuth,clientAuth "IP:127.0.0.1,DNS:localhost"
) >/dev/null 2>&1 || fail "hostd certificates"
cat > "$TMP/h/hostd.conf" <<EOF
name = host-a
datastore = $TMP/h/ds
listen = 127.0.0.1
port = 0
cert = $TMP/h/host.crt
key = $TMP/h/host.key
ca = $TMP/h/ca.crt
manager_fingerprint = $(openssl x509 -in "$TMP/h/manager.crt" -noout -fingerprint -sha256 | sed 's/.*=//')
manager_subject = CN=manager,O=vmseal
accel = tcg
EOF
HLOG=$TMP/h/hostd.log
"$HOSTD" -c "$TMP/h/hostd.conf" --port-file "$TMP/h/port" >>"$HLOG" 2>&1 &
HPID=$!
at_exit "kill -9 $HPID 2>/dev/null"
daemon_wait_port vmseal-hostd "$HPID" "$TMP/h/port" "$HLOG" 200
HPORT=$DAEMON_PORT
hprobe() {
  $PY "$ABUSE" probe "$HPORT" "$TMP/h/ca.crt" /v1/host "$PROBES" 0.5 "$LIMIT_S" \
    --cert "$TMP/h/manager.crt" --key "$TMP/h/manager.key"
}
under_attack hostd "$HPORT" tcp hprobe
under_attack hostd "$HPORT" tls hprobe
kill -0 "$HPID" || fail "hostd died"
grep -q "too many TLS handshakes in progress from this address" "$HLOG" ||
  fail "hostd: refusals not logged"
daemon_stop vmseal-hostd "$HPID" "$HLOG"
fi
ok "$DAEMONS served 127.0.0.1 while 127.0.0.2 kept $CONNS connections open"
