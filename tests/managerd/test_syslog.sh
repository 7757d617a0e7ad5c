#!/usr/bin/env bash
# vmseal-managerd forwards its events to a real rsyslog (Debian's rsyslogd,
# imtcp, started here with its own configuration) as RFC 5424 messages with
# structured data: over TCP; while the collector is down, across a manager
# restart, nothing is lost and the order is kept; over TLS (rsyslog's ossl
# driver, x509/certvalid: the manager's client certificate); a collector
# whose certificate the manager does not trust gets nothing and the events
# stay spooled until the right collector is back. Every message received is
# compared byte for byte with the event row (tests/managerd/syslog_check.py).
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/pykmip_lib.sh"      # free_port, ossl
source "$VMSEAL_SRC/tests/managerd/managerd_lib.sh"

RSYSLOGD=$(command -v rsyslogd || echo /usr/sbin/rsyslogd)
[ -x "$RSYSLOGD" ] || fail "rsyslogd not found (scripts/deps installs rsyslog)"
ls /usr/lib/*/rsyslog/lmnsd_ossl.so >/dev/null 2>&1 || fail "rsyslog's ossl driver not found (rsyslog-openssl)"
CHECK=("$PY" "$VMSEAL_SRC/tests/managerd/syslog_check.py")
HOSTNAME_SD=vmseal-test-manager

# wait_for SECONDS WHAT CMD...: until CMD succeeds, at most SECONDS.
wait_for() {
  local s=$1 what=$2 i; shift 2
  for ((i = 0; i < s * 5; i++)); do
    "$@" && return 0
    sleep 0.2
  done
  tail -20 "$MLOG" >&2
  fail "$what (waited $s s)"
}

# rs_start NAME PORT [CERT KEY CA AUTHMODE]: rsyslogd in $TMP/rs-NAME listening
# on 127.0.0.1:PORT (plain TCP, or TLS with the ossl driver), writing each
# raw message received as one line of $TMP/rs-NAME/received.log.
declare -A RSPID
rs_start() {
  local name=$1 port=$2 d=$TMP/rs-$1 tls_global='' module='module(load="imtcp")' i
  mkdir -p "$d"
  if [ $# -gt 2 ]; then
    tls_global="DefaultNetstreamDriverCertFile=\"$3\" DefaultNetstreamDriverKeyFile=\"$4\" DefaultNetstreamDriverCAFile=\"$5\""
    module="module(load=\"imtcp\" StreamDriver.Name=\"ossl\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"$6\")"
  fi
  cat > "$d/rsyslog.conf" <<EOF
global(workDirectory="$d" maxMessageSize="64k" $tls_global)
$module
input(type="imtcp" port="$port" address="127.0.0.1")
template(name="raw" type="string" string="%rawmsg%\n")
action(type="omfile" file="$d/received.log" template="raw")
EOF
  "$RSYSLOGD" -n -i "$d/rsyslogd.pid" -f "$d/rsyslog.conf" >>"$d/rsyslogd.log" 2>&1 &
  RSPID[$name]=$!
  at_exit "kill -9 ${RSPID[$name]} 2>/dev/null"
  for ((i = 0; i < 100; i++)); do
    ss -Hltn "sport = :$port" | grep -q LISTEN && return 0
    kill -0 "${RSPID[$name]}" 2>/dev/null || { cat "$d/rsyslogd.log" >&2; fail "rsyslogd $name did not start"; }
    sleep 0.1
  done
  fail "rsyslogd $name does not listen on $port"
}

rs_stop() {
  local pid=${RSPID[$1]} i
  kill -TERM "$pid"
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  fail "rsyslogd $1 did not stop"
}

db_value() { "$PY" -c 'import sqlite3,sys; r=sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=10).execute(sys.argv[2]).fetchone(); print(r[0] if r and r[0] is not None else "")' "$M/managerd.db" "$1"; }
last_id() { db_value "SELECT MAX(id) FROM events"; }
cursor() { db_value "SELECT value FROM meta WHERE key = 'syslog.sent'"; }
received() { "${CHECK[@]}" "$M/managerd.db" "$TMP/rs-$1/received.log" "$HOSTNAME_SD" --wait --last "$2"; }

export HOME=$TMP/home
mkdir -p "$HOME"
M=$TMP/m
mgr_init "$M"

# --- TCP ------------------------------------------------------------------
RP=$(free_port)
rs_start tcp "$RP"
cat >> "$M/managerd.conf" <<EOF
syslog_target = tcp://127.0.0.1:$RP
syslog_hostname = $HOSTNAME_SD
syslog_retry_max = 2
EOF
mgr_start "$M"
grep -q "syslog: forwarding events to tcp://127.0.0.1:$RP" "$MLOG" || fail "forwarder not started"
expect_rc 0 "$VMSEAL" --url "$MURL" --ca "$M/ca.crt" login --password-file "$M/admin-password"
expect_rc 0 "$VMSEAL" role add Encryptor System.Read Cryptographer.Encrypt
printf 'bobpassword1\n' > "$TMP/bobpw"
expect_rc 0 "$VMSEAL" user add bob --role ReadOnly --password-file "$TMP/bobpw"
mkdir -p "$TMP/bobhome"
HOME=$TMP/bobhome expect_rc 0 "$VMSEAL" --url "$MURL" --ca "$M/ca.crt" login bob --password-file "$TMP/bobpw"
HOME=$TMP/bobhome expect_rc 5 "$VMSEAL" role add Sneaky System.Read   # recorded as 'denied'
L=$(last_id)
wait_for 30 "events up to $L at rsyslog" received tcp "$L"
"${CHECK[@]}" "$M/managerd.db" "$TMP/rs-tcp/received.log" "$HOSTNAME_SD" --first 1 --last "$L" \
  || fail "messages over TCP"
grep -q 'role.create \[vmseal@32473 id="[0-9]*" user="administrator" .*object="Encryptor" result="ok" hash="[0-9a-f]\{64\}"\]' \
  "$TMP/rs-tcp/received.log" || fail "structured data of role.create"
grep -q '^<84>1 .* result="denied"' "$TMP/rs-tcp/received.log" || fail "denied event with severity warning"
grep -q "syslog: connected to tcp://127.0.0.1:$RP" "$MLOG" || fail "connect not logged"
[ "$(cursor)" = "$L" ] || fail "cursor $(cursor), expected $L"
ok "events 1..$L at rsyslog over TCP as RFC 5424 with structured data (denied: warning); cursor stored"

# --- collector down, manager restarted: nothing lost, order kept -----------
rs_stop tcp
for i in $(seq 1 50); do expect_rc 0 "$VMSEAL" role add "Outage$i" System.Read; done
mgr_stop
[ "$(cursor)" = "$L" ] || fail "cursor moved to $(cursor) while the collector was down"
grep -q "events waiting" "$MLOG" || fail "backlog not logged"
mgr_start "$M" "$MPORT"
for i in $(seq 51 100); do expect_rc 0 "$VMSEAL" role add "Outage$i" System.Read; done
L2=$(last_id)
[ $((L2 - L)) -ge 100 ] || fail "only $((L2 - L)) events made"
[ "$(cursor)" = "$L" ] || fail "cursor moved to $(cursor) while the collector was down"
rs_start tcp "$RP"
wait_for 30 "events up to $L2 after the outage" received tcp "$L2"
"${CHECK[@]}" "$M/managerd.db" "$TMP/rs-tcp/received.log" "$HOSTNAME_SD" --first 1 --last "$L2" \
  || fail "messages after the outage"
rs_stop tcp
ok "collector down for $((L2 - L)) events and a manager restart: all arrive once, in order"

# --- TLS --------------------------------------------------------------------
mkdir -p "$TMP/pki" "$TMP/rogue"
# issue DIR NAME CN EXTENSIONS: DIR/NAME.{key,crt} signed by DIR/ca.{key,crt}
issue() {
  ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1/$2.key" -out "$1/$2.csr" -subj "/CN=$3"
  printf '%b' "$4" > "$1/$2.ext"
  ossl x509 -req -in "$1/$2.csr" -CA "$1/ca.crt" -CAkey "$1/ca.key" -CAcreateserial -out "$1/$2.crt" -days 2 -extfile "$1/$2.ext"
  chmod 600 "$1/$2.key"
}
for d in "$TMP/pki" "$TMP/rogue"; do
  ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/ca.key" -out "$d/ca.crt" \
    -days 2 -subj "/CN=syslog test CA $(basename "$d")" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign
  issue "$d" collector collector 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n'
done
issue "$TMP/pki" manager vmseal-manager 'extendedKeyUsage=clientAuth\n'
issue "$TMP/pki" othername collector 'subjectAltName=DNS:other.example\nextendedKeyUsage=serverAuth\n'
TP=$(free_port)
rs_start tls "$TP" "$TMP/pki/collector.crt" "$TMP/pki/collector.key" "$TMP/pki/ca.crt" x509/certvalid
mgr_stop
sed -i '/^syslog_target/d' "$M/managerd.conf"
cat >> "$M/managerd.conf" <<EOF
syslog_target = tls://127.0.0.1:$TP
syslog_ca = $TMP/pki/ca.crt
syslog_cert = $TMP/pki/manager.crt
syslog_key = $TMP/pki/manager.key
EOF
mgr_start "$M" "$MPORT"
expect_rc 0 "$VMSEAL" role add OverTls System.Read
L3=$(last_id)
wait_for 30 "event $L3 over TLS" received tls "$L3"
"${CHECK[@]}" "$M/managerd.db" "$TMP/rs-tls/received.log" "$HOSTNAME_SD" --first $((L2 + 1)) --last "$L3" \
  || fail "messages over TLS"
grep -q "syslog: connected to tls://127.0.0.1:$TP" "$MLOG" || fail "TLS connect not logged"
ok "event $L3 over TLS (rsyslog ossl, x509/certvalid with the manager's client certificate)"

# --- untrusted collectors get nothing; the events stay spooled ----------------
rs_stop tls
rs_start rogue "$TP" "$TMP/rogue/collector.crt" "$TMP/rogue/collector.key" "$TMP/rogue/ca.crt" anon
expect_rc 0 "$VMSEAL" role add WhileRogue System.Read
L4=$(last_id)
n0=$(grep -c "cannot connect to tls://127.0.0.1:$TP" "$MLOG" || true)
wait_for 30 "a refused TLS handshake" bash -c "[ \$(grep -c 'cannot connect to tls://127.0.0.1:$TP' '$MLOG') -gt $n0 ]"
rs_stop rogue
[ ! -s "$TMP/rs-rogue/received.log" ] || fail "the untrusted collector received: $(cat "$TMP/rs-rogue/received.log")"
[ "$(cursor)" = "$L3" ] || fail "cursor moved to $(cursor) with an untrusted collector"
rs_start rogue2 "$TP" "$TMP/pki/othername.crt" "$TMP/pki/othername.key" "$TMP/pki/ca.crt" anon
n0=$(grep -c "cannot connect to tls://127.0.0.1:$TP" "$MLOG" || true)
wait_for 30 "a refused TLS handshake (name)" bash -c "[ \$(grep -c 'cannot connect to tls://127.0.0.1:$TP' '$MLOG') -gt $n0 ]"
rs_stop rogue2
[ ! -s "$TMP/rs-rogue2/received.log" ] || fail "a collector with another name received events"
[ "$(cursor)" = "$L3" ] || fail "cursor moved to $(cursor) with a wrongly named collector"
ok "collectors with an untrusted CA or another name get nothing; events stay spooled"
# the right collector, but the manager without its client certificate: with
# TLS 1.3 the collector refuses it after the client's side of the handshake
rs_start tls "$TP" "$TMP/pki/collector.crt" "$TMP/pki/collector.key" "$TMP/pki/ca.crt" x509/certvalid
mgr_stop
cp "$M/managerd.conf" "$TMP/managerd.conf.full"
sed -i '/^syslog_cert\|^syslog_key/d' "$M/managerd.conf"
mgr_start "$M" "$MPORT"
wait_for 30 "the collector refusing the manager without a client certificate" \
  grep -q "cannot connect to tls://127.0.0.1:$TP: .*certificate required" "$MLOG"
sleep 1
mgr_stop
[ "$(cursor)" = "$L3" ] || fail "cursor moved to $(cursor) without a client certificate"
"${CHECK[@]}" "$M/managerd.db" "$TMP/rs-tls/received.log" "$HOSTNAME_SD" --first $((L2 + 1)) --last "$L3" \
  || fail "the collector received events from a manager it refused"
cp "$TMP/managerd.conf.full" "$M/managerd.conf"
mgr_start "$M" "$MPORT"
ok "a collector that requires a client certificate gets nothing without one"
wait_for 30 "event $L4 once the right collector is back" received tls "$L4"
"${CHECK[@]}" "$M/managerd.db" "$TMP/rs-tls/received.log" "$HOSTNAME_SD" --first $((L2 + 1)) --last "$L4" \
  || fail "messages after the untrusted collectors"
mgr_stop
rs_stop tls
[ "$(cursor)" = "$L4" ] || fail "cursor $(cursor), expected $L4"
ok "the spooled event reaches the trusted collector; clean stop"
