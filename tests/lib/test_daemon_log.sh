#!/usr/bin/env bash
# The daemons' diagnostic log (lib/log.c) as configured in their files:
#   vmseal-kmsd      log_output = syslog, log_level = debug: nothing on
#                    stderr; its lines, debug included, reach /dev/log with
#                    the right priorities
#   vmseal-hostd     log_output = stderr,syslog: both processes tagged
#                    ([monitor], [network]); the network child still reaches
#                    syslog after closing the descriptors it inherited; a
#                    request path with an encoded newline (an attacker
#                    forging a log line) stays on one escaped line
#   vmseal-managerd  log_level = warning: info lines are not written, a
#                    failed TLS handshake (warning) is
# and every line the three write to stderr has the shared format. /dev/log
# is our own socket: the test runs in a private mount namespace with /dev
# overlaid (skipped where namespaces or overlayfs are not available).
if [ -z "${VMSEAL_LOG_NS:-}" ]; then
  unshare -m true 2>/dev/null || { echo "1..0 # SKIP no mount namespaces"; exit 77; }
  VMSEAL_LOG_NS=1 exec unshare -m "$0" "$@"
fi
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/kmsd/kmsd_lib.sh"
source "$VMSEAL_SRC/tests/managerd/managerd_lib.sh"
HOSTD=$VMSEAL_BUILD/hostd/vmseal-hostd

# ---- a private /dev/log ---------------------------------------------------
mount --make-rprivate / || fail "mount --make-rprivate"
mkdir -p "$TMP/ov/u" "$TMP/ov/w"
if ! mount -t overlay overlay -o "lowerdir=/dev,upperdir=$TMP/ov/u,workdir=$TMP/ov/w" /dev 2>/dev/null; then
  echo "1..0 # SKIP no overlayfs for a private /dev/log"
  exit 77
fi
SYSLOG=$TMP/syslog.txt
: > "$SYSLOG"
# one datagram a line; a newline inside one would show as <NL>
$PY -u - "$SYSLOG" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/dev/log")
with open(sys.argv[1], "ab", buffering=0) as f:
    while True:
        d = s.recv(65536)
        f.write(d.replace(b"\n", b"<NL>") + b"\n")
PY
RPID=$!
at_exit "kill $RPID 2>/dev/null"
for _ in $(seq 100); do [ -S /dev/log ] && break; sleep 0.05; done
[ -S /dev/log ] || fail "syslog receiver did not start"

# wait_syslog PATTERN WHAT: until a datagram matches (ERE), 10 s at most
wait_syslog() {
  for _ in $(seq 200); do grep -Eq -- "$1" "$SYSLOG" && return 0; sleep 0.05; done
  sed 's/^/  syslog: /' "$SYSLOG" >&2
  fail "not in syslog: $2"
}

# every line of a daemon's stderr: TIMESTAMP PROGRAM[PROCESS] LEVEL: MESSAGE
LINE_RE='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z vmseal-(kmsd|managerd|hostd\[(monitor|network)\]) (error|warning|info|debug): '
check_format() {
  local bad
  bad=$(grep -Evn -- "$LINE_RE" "$1" || true)
  [ -z "$bad" ] || { echo "$bad" | head -5 >&2; fail "$2: lines not in the log format"; }
}

# ---- vmseal-kmsd: syslog only, debug ------------------------------------------
kmsd_init "$TMP/k"
printf 'log_output = syslog\nlog_level = debug\n' >> "$TMP/k/kmsd.conf"
kmsd_start "$TMP/k"
wait_syslog "^<30>.* vmseal-kmsd\[$KPID\]: listening on 127\.0\.0\.1 port $PORT;" "kmsd start (daemon.info)"
out=$(timeout 60 $PY "$KTESTS/kmsd_tool.py" "$TMP/k" "$PORT" alice create-get 1) || { echo "$out"; fail "kmsd create-get"; }
wait_syslog "^<31>.* vmseal-kmsd\[$KPID\]: connection from 127\.0\.0\.1:[0-9]+: CN=alice,O=vmseal" "kmsd debug line (daemon.debug)"
# a TLS client certificate kmsd does not know: a warning
$PY - "$PORT" <<'PY' || true
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
s.settimeout(5)
try:
    s.recv(100)
except Exception:
    pass
PY
wait_syslog "^<28>.* vmseal-kmsd\[$KPID\]: TLS connection from 127\.0\.0\.1:[0-9]+ refused" "kmsd TLS refusal (daemon.warning)"
kmsd_stop
wait_syslog "^<30>.* vmseal-kmsd\[$KPID\]: stopped$" "kmsd stop"
grep -q "vmseal-kmsd" "$KLOG" && { cat "$KLOG" >&2; fail "kmsd wrote to stderr with log_output = syslog"; }
ok "kmsd: log_output = syslog, log_level = debug: lines at daemon.info/debug/warning, nothing on stderr"

# ---- vmseal-hostd: stderr and syslog, two processes -----------------------------
mkdir -p "$TMP/h/ds"
(cd "$TMP/h"
 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=vmseal/CN=test CA" \
   -days 2 -keyout ca.key -out ca.crt -addext "basicConstraints=critical,CA:TRUE" \
   -addext "keyUsage=critical,keyCertSign,cRLSign"
 leaf() {
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
accel = tcg
log_output = stderr,syslog
EOF
HLOG=$TMP/h/hostd.log
"$HOSTD" -c "$TMP/h/hostd.conf" --port-file "$TMP/h/port" >>"$HLOG" 2>&1 &
HPID=$!
at_exit "kill -9 $HPID 2>/dev/null"
daemon_wait_port vmseal-hostd "$HPID" "$TMP/h/port" "$HLOG" 200
HPORT=$DAEMON_PORT
hcurl() {
  curl -gsS -o /dev/null -w '%{http_code}' --cacert "$TMP/h/ca.crt" --cert "$TMP/h/manager.crt" \
    --key "$TMP/h/manager.key" "https://127.0.0.1:$HPORT$1"
}
[ "$(hcurl /v1/host)" = 200 ] || fail "hostd GET /v1/host"
# an attacker's path: a newline, then what would look like a line of hostd's
FORGED='2030-01-01T00:00:00.000Z vmseal-hostd[monitor] info: KEK k1 removed from memory'
code=$(hcurl "/v1/vms/x%0A${FORGED// /%20}%0D") || true
[ "$code" = 404 ] || [ "$code" = 400 ] || fail "hostd: forged path answered $code"
wait_syslog "^<30>.* vmseal-hostd\[[0-9]+\]: network: 127\.0\.0\.1:[0-9]+ GET /v1/host -> 200 cert " "hostd access line (network child, after closing its descriptors)"
wait_syslog "vmseal-hostd\[[0-9]+\]: network: 127\.0\.0\.1:[0-9]+ GET /v1/vms/x\\\\n2030-01-01T00:00:00\.000Z vmseal-hostd\[monitor\] info: KEK k1 removed from memory\\\\r -> " "hostd: the forged path, escaped"
grep -q "vmseal-hostd\[$HPID\]: monitor: accelerator: tcg" "$SYSLOG" || fail "hostd monitor line in syslog"
npid=$(grep -Eo "vmseal-hostd\[[0-9]+\]: network: serving" "$SYSLOG" | grep -Eo '[0-9]+' | head -1)
[ -n "$npid" ] && [ "$npid" != "$HPID" ] || fail "hostd network child's syslog lines carry its own pid"
daemon_stop vmseal-hostd "$HPID" "$HLOG"
check_format "$HLOG" hostd
grep -q '^2030-' "$HLOG" && fail "hostd: a forged line in hostd.log"
grep -Eq "vmseal-hostd\[network\] info: 127\.0\.0\.1:[0-9]+ GET /v1/vms/x\\\\n2030-01-01T00:00:00\.000Z vmseal-hostd\[monitor\] info: KEK k1 removed from memory\\\\r -> " "$HLOG" ||
  { cat "$HLOG" >&2; fail "hostd: the forged path is not on one escaped line"; }
grep -q "vmseal-hostd\[monitor\] info: stopping" "$HLOG" || fail "hostd monitor line on stderr"
grep -q "<NL>" "$SYSLOG" && fail "a syslog message with a newline"
ok "hostd: stderr and syslog, [monitor] and [network], a forged line stays one escaped line"

# ---- vmseal-managerd: level warning ------------------------------------------------
mgr_init "$TMP/m"
printf 'log_level = warning\n' >> "$TMP/m/managerd.conf"
mgr_start "$TMP/m"
$PY - "$MPORT" <<'PY' || true
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"\x16\x03\x01\x00\x05hello")
s.settimeout(5)
try:
    s.recv(100)
except Exception:
    pass
PY
for _ in $(seq 100); do grep -q "TLS handshake from" "$MLOG" && break; sleep 0.05; done
grep -Eq "vmseal-managerd warning: TLS handshake from 127\.0\.0\.1:[0-9]+ failed" "$MLOG" ||
  { cat "$MLOG" >&2; fail "managerd: the failed handshake (warning) not logged"; }
mgr_stop
check_format "$MLOG" managerd
grep -Eq " (info|debug): " "$MLOG" && { cat "$MLOG" >&2; fail "managerd: info lines with log_level = warning"; }
ok "managerd: log_level = warning writes warnings and no info lines"
