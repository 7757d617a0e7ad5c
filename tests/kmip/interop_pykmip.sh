#!/usr/bin/env bash
# Interop: vmseal's KMIP client (library + vmseal-kmip CLI) against PyKMIP's
# own server (pykmip-server, Debian python3-pykmip) over mutual TLS 1.2.
# Certificates come from the openssl CLI; the server runs on 127.0.0.1 on a
# random free port and is killed at the end.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/pykmip_lib.sh"

KMIP=$VMSEAL_BUILD/kmip/vmseal-kmip
CLIENT_TEST=$VMSEAL_BUILD/tests/kmip/interop_client
[ -x /usr/bin/pykmip-server ] || fail "pykmip-server missing (apt-get install python3-pykmip)"
[ -x "$KMIP" ] || fail "vmseal-kmip not built"

# --- certificates: CA, server (serverAuth, SAN 127.0.0.1), client (clientAuth)
cd "$TMP"
pykmip_certs "vmseal interop CA"
# A client certificate from another CA: must be refused.
ossl req -x509 -newkey rsa:2048 -nodes -keyout rogue.key -out rogue.pem -days 2 -subj "/CN=rogue" \
  -addext extendedKeyUsage=clientAuth
chmod 600 rogue.key
ok "certificates"

# --- pykmip-server
PORT=$(free_port)
DEAD=$(free_port)   # nothing listens there
pykmip_conf "$PORT"

# start/stop through a script so that the C test can restart the server too
cat > server-ctl.sh <<EOF
#!/usr/bin/env bash
# server-ctl.sh start|stop|restart — pids live in $TMP/server.pid (server,
# also its process group)
# and $TMP/watchdog.pid (kills the server after 170 s whatever happens).
# restart kills the server outright: a crash under the client's connection.
set -u
stop() {  # signal — to the server's whole process group (it forks helpers)
  if [ -s "$TMP/server.pid" ]; then
    pid=\$(cat "$TMP/server.pid")
    kill -\$1 -- -"\$pid" 2>/dev/null || true
    for i in \$(seq 30); do kill -0 -- -"\$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- -"\$pid" 2>/dev/null || true
    : > "$TMP/server.pid"
  fi
  if [ -s "$TMP/watchdog.pid" ]; then
    kill -- -"\$(cat "$TMP/watchdog.pid")" 2>/dev/null || true
    : > "$TMP/watchdog.pid"
  fi
}
start() {
  # its own session and process group (setsid execs: same pid), so that
  # stopping it also ends the helper processes it forks
  setsid $PY /usr/bin/pykmip-server -f "$TMP/server.conf" -l "$TMP/server.log" >> "$TMP/server.out" 2>&1 < /dev/null &
  pid=\$!
  echo \$pid > "$TMP/server.pid"
  setsid bash -c "sleep 170; kill -KILL -- -\$pid" > /dev/null 2>&1 < /dev/null &
  echo \$! > "$TMP/watchdog.pid"
  for i in \$(seq 150); do
    (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && exit 0
    kill -0 \$pid 2>/dev/null || { echo "pykmip-server died" >&2; tail -5 "$TMP/server.out" >&2; exit 1; }
    sleep 0.1
  done
  echo "pykmip-server did not start listening" >&2
  exit 1
}
case "\$1" in start) start ;; stop) stop TERM ;; restart) stop KILL; start ;; esac
EOF
chmod +x server-ctl.sh
at_exit "$TMP/server-ctl.sh stop"
# KEEP_TMP=1: keep a copy of the work folder (logs, certs) in /tmp/kmip-interop-kept
[ -n "${KEEP_TMP:-}" ] && at_exit "cp -r $TMP /tmp/kmip-interop-kept"
./server-ctl.sh start || fail "pykmip-server start"
ok "pykmip-server listening on 127.0.0.1:$PORT"

K=("$KMIP" --cert client.pem --key client.key --ca ca.pem --legacy-cbc --timeout 10000)
LIVE=(--server "127.0.0.1:$PORT")

# --- CLI: the key life cycle
"${K[@]}" "${LIVE[@]}" discover > versions.txt || fail "discover: $(cat versions.txt)"
grep -qx '1.4' versions.txt && grep -qx '1.0' versions.txt || fail "discover: $(tr '\n' ' ' < versions.txt)"
ok "discover versions: $(tr '\n' ' ' < versions.txt)"
"${K[@]}" "${LIVE[@]}" query > query.txt || fail "query"
grep -q '^vendor: PyKMIP' query.txt || fail "query vendor: $(head -1 query.txt)"
grep -q '^operation: Create$' query.txt || fail "query lists no Create"
ok "query: $(head -1 query.txt)"

NAME="vmseal-interop-$$"
UID1=$("${K[@]}" "${LIVE[@]}" create --name "$NAME" -v 2> create.err) || fail "create: $(cat create.err)"
[ -n "$UID1" ] || fail "create returned no UID"
grep -q "KMIP 1.4" create.err || fail "version not negotiated to 1.4: $(cat create.err)"
ok "create AES-256 '$NAME' -> UID $UID1 (KMIP 1.4 negotiated)"

out=$("${K[@]}" "${LIVE[@]}" get "$UID1" 3> key1.bin --reveal-to-fd 3) || fail "get: $out"
[ "$out" = "$UID1: symmetric key, 32 bytes" ] || fail "get said: $out"
[ "$(stat -c %s key1.bin)" = 32 ] || fail "revealed key is $(stat -c %s key1.bin) bytes"
"${K[@]}" "${LIVE[@]}" get "$UID1" > get-plain.txt || fail "get without reveal"
! grep -q "$(xxd -p -c 64 key1.bin)" get-plain.txt || fail "get printed the key"
ok "get (pre-active): 32 key bytes, only on the reveal fd"

"${K[@]}" "${LIVE[@]}" activate "$UID1" || fail "activate"
"${K[@]}" "${LIVE[@]}" get "$UID1" --reveal-to-fd 3 3> key2.bin > /dev/null || fail "get after activate"
cmp -s key1.bin key2.bin || fail "the key changed between two Gets"
ok "activate; get returns the same key"

"${K[@]}" "${LIVE[@]}" locate --name "$NAME" > located.txt || fail "locate"
[ "$(cat located.txt)" = "$UID1" ] || fail "locate by name: $(tr '\n' ' ' < located.txt)"
"${K[@]}" "${LIVE[@]}" locate --name "no-such-$$" > none.txt || fail "locate (no match)"
[ ! -s none.txt ] || fail "locate of an unknown name found $(cat none.txt)"
ok "locate by name"

"${K[@]}" "${LIVE[@]}" attrs "$UID1" State "Cryptographic Length" "Cryptographic Algorithm" > attrs.txt || fail "attrs"
grep -q 'Data: 0x00000002 (Active)' attrs.txt || fail "State is not Active: $(cat attrs.txt)"
grep -q 'Data: 256 ' attrs.txt || fail "Cryptographic Length is not 256"
grep -q '(AES)' attrs.txt || fail "algorithm is not AES"
ok "get attributes: Active, AES, 256"

if "${K[@]}" "${LIVE[@]}" destroy "$UID1" 2> destroy.err; then fail "PyKMIP destroyed an active key"; fi
grep -q 'Destroy: Permission Denied: ' destroy.err || fail "destroy of active key: $(cat destroy.err)"
ok "destroy of an active key is refused: $(cat destroy.err)"
"${K[@]}" "${LIVE[@]}" revoke "$UID1" --reason cessation --message "interop test" || fail "revoke"
"${K[@]}" "${LIVE[@]}" attrs "$UID1" State > state.txt || fail "attrs after revoke"
grep -q '(Deactivated)' state.txt || fail "revoked key is not Deactivated: $(cat state.txt)"
"${K[@]}" "${LIVE[@]}" destroy "$UID1" || fail "destroy after revoke"
if "${K[@]}" "${LIVE[@]}" get "$UID1" 2> gone.err; then fail "get of a destroyed key succeeded"; fi
grep -q 'Item Not Found' gone.err || fail "get of destroyed key: $(cat gone.err)"
ok "revoke -> Deactivated; destroy; get -> Item Not Found"

# --- failover and errors
UID2=$("${K[@]}" --server "127.0.0.1:$DEAD" "${LIVE[@]}" create --name "$NAME-fo" -v 2> fo.err) || fail "failover create: $(cat fo.err)"
grep -q "server 127.0.0.1:$PORT" fo.err || fail "failover used: $(cat fo.err)"
ok "cluster [dead 127.0.0.1:$DEAD, live]: create on the live server -> UID $UID2"
if "${K[@]}" --server "127.0.0.1:$DEAD" --server "127.0.0.1:$DEAD" discover 2> dead.err; then fail "dead cluster answered"; fi
grep -q 'no key server could be reached' dead.err || fail "dead cluster: $(cat dead.err)"
ok "all servers down: $(cat dead.err)"
if "$KMIP" --cert rogue.pem --key rogue.key --ca ca.pem --legacy-cbc "${LIVE[@]}" discover 2> rogue.err; then
  fail "a client certificate from a foreign CA was accepted"
fi
ok "foreign client certificate refused: $(cat rogue.err)"
if "$KMIP" --cert client.pem --key client.key --ca rogue.pem --legacy-cbc "${LIVE[@]}" discover 2> trust.err; then
  fail "a server not signed by our CA was accepted"
fi
grep -qi 'certificate\|verify\|CA' trust.err || fail "untrusted server: $(cat trust.err)"
ok "untrusted server refused: $(cat trust.err)"

# --- library: connection reuse, failover and reconnection after a restart
"$CLIENT_TEST" "$PORT" "$DEAD" "$TMP" || fail "interop_client (exit $?)"
ok "library scenario (interop_client)"
