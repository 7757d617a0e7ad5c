#!/usr/bin/env bash
# Bad input over TLS (truncated, 2 GiB length, wrong lengths, garbage, bit
# flips) and refused clients (other CA, no clientAuth EKU, no certificate):
# each refused with a clear logged reason, the server keeps serving.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/kmsd/kmsd_lib.sh"

vec=$VMSEAL_SHARED/kmip-vectors/vcenter-7.0.3
kmsd_init "$TMP/k"
kmsd_start "$TMP/k"
timeout 240 $PY "$KTESTS/bad_input.py" "$TMP/k" "$PORT" "$vec" || { tail -20 "$TMP/k/server.log"; fail "bad input"; }
kill -0 "$KPID" || fail "server died"
grep -q "exceeds the" "$TMP/k/server.log" || fail "oversized message logged"
ok "bad input answered or refused, server alive"

# clients the TLS layer must refuse, with the reason logged with the address
try_client() {   # CERT KEY CA -> prints the python outcome
  timeout 30 $PY - "$PORT" "$@" <<'PY'
import socket, ssl, struct, sys
port, cert, key, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
if cert != '-':
    ctx.load_cert_chain(cert, key)
try:
    with socket.create_connection(('127.0.0.1', port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname='127.0.0.1') as s:
            s.sendall(bytes.fromhex(open(sys.argv[5]).read().strip()))
            data = s.recv(8)
            print('ANSWERED' if data else 'CLOSED')
except (ssl.SSLError, ConnectionError, OSError) as e:
    print('REFUSED', e)
PY
}
req=$vec/01-discover-versions.request.hex
out=$(try_client "$TMP/k/clients/alice/alice.crt" "$TMP/k/clients/alice/alice.key" "$TMP/k/ca.crt" "$req")
[[ $out == ANSWERED* ]] || fail "a good client: $out"

# another CA: a second, unrelated setup's client certificate
"$KMSD" init "$TMP/other" >/dev/null
out=$(try_client "$TMP/other/clients/admin/admin.crt" "$TMP/other/clients/admin/admin.key" "$TMP/k/ca.crt" "$req")
[[ $out == REFUSED* ]] || fail "foreign CA client accepted: $out"
grep -q "TLS connection from 127.0.0.1:[0-9]* refused: TLS handshake failed: client certificate not signed by a trusted CA" \
  "$TMP/k/server.log" || fail "foreign CA reason logged"
ok "client certificate from another CA refused, reason logged"

# our CA, but no clientAuth EKU (serverAuth only), made with the openssl CLI
openssl req -new -newkey rsa:2048 -nodes -subj "/O=vmseal/CN=noeku" \
  -keyout "$TMP/noeku.key" -out "$TMP/noeku.csr" 2>/dev/null || fail "csr"
printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$TMP/ext"
openssl x509 -req -in "$TMP/noeku.csr" -CA "$TMP/k/ca.crt" -CAkey "$TMP/k/ca.key" -CAcreateserial \
  -days 1 -extfile "$TMP/ext" -out "$TMP/noeku.crt" 2>/dev/null || fail "sign"
out=$(try_client "$TMP/noeku.crt" "$TMP/noeku.key" "$TMP/k/ca.crt" "$req")
[[ $out == REFUSED* || $out == CLOSED* ]] || fail "client without clientAuth accepted: $out"
grep -q "refused: TLS handshake failed: certificate lacks the clientAuth extended key usage" \
  "$TMP/k/server.log" || fail "EKU reason logged"
ok "client certificate without clientAuth EKU refused, reason logged"

out=$(try_client - - "$TMP/k/ca.crt" "$req")
[[ $out == REFUSED* || $out == CLOSED* ]] || fail "client without certificate accepted: $out"
grep -q "refused: TLS handshake failed: no client certificate presented" "$TMP/k/server.log" \
  || fail "missing certificate reason logged"
ok "client without a certificate refused, reason logged"

out=$(try_client "$TMP/k/clients/alice/alice.crt" "$TMP/k/clients/alice/alice.key" "$TMP/k/ca.crt" "$req")
[[ $out == ANSWERED* ]] || fail "server still serves: $out"
kmsd_stop
ok "server healthy to the end, clean stop"
