#!/usr/bin/env bash
# vmseal-kmsd's TLS offer: TLS 1.2 only with forward-secret AEAD suites
# (ECDHE + AES-GCM or ChaCha20-Poly1305), TLS 1.3 kept; static-RSA key
# exchange and CBC/SHA-1 suites refused. With an RSA server key (the
# default) and an EC one (init --ec).
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/kmsd/kmsd_lib.sh"

# s_client DIR ARGS...: a full mutual-TLS handshake as alice; prints
# "Protocol Cipher" of the session, or REFUSED
s_client() {
  local d=$1; shift
  local out
  out=$(timeout 20 openssl s_client -brief -connect "127.0.0.1:$PORT" -CAfile "$d/ca.crt" \
        -cert "$d/clients/alice/alice.crt" -key "$d/clients/alice/alice.key" \
        -verify_return_error "$@" </dev/null 2>&1) || { echo REFUSED; return 0; }
  local proto cipher
  grep -q '^CONNECTION ESTABLISHED' <<<"$out" || { echo REFUSED; return 0; }
  proto=$(sed -n 's/^Protocol version: //p' <<<"$out" | head -1)
  cipher=$(sed -n 's/^Ciphersuite: //p' <<<"$out" | head -1)
  echo "$proto $cipher"
}
refused() { # DIR WHAT ARGS...
  local d=$1 what=$2; shift 2
  local r; r=$(s_client "$d" "$@")
  [ "$r" = REFUSED ] || fail "$what accepted: $r"
  ok "$what refused"
}
accepted() { # DIR WANT WHAT ARGS...
  local d=$1 want=$2 what=$3; shift 3
  local r; r=$(s_client "$d" "$@")
  [ "$r" = "$want" ] || fail "$what: got '$r', want '$want'"
  ok "$what accepted ($r)"
}

# ---- RSA server key ----------------------------------------------------------------
kmsd_init "$TMP/k"
kmsd_start "$TMP/k"
K=$TMP/k
refused "$K" "TLS 1.2 AES128-SHA (static RSA, CBC, SHA-1)" -tls1_2 -cipher AES128-SHA
refused "$K" "TLS 1.2 AES256-GCM-SHA384 (static RSA: no forward secrecy)" -tls1_2 -cipher AES256-GCM-SHA384
refused "$K" "TLS 1.2 AES256-SHA256 (static RSA, CBC)" -tls1_2 -cipher AES256-SHA256
refused "$K" "TLS 1.2 ECDHE-RSA-AES128-SHA (CBC, SHA-1)" -tls1_2 -cipher ECDHE-RSA-AES128-SHA
refused "$K" "TLS 1.2 ECDHE-RSA-AES256-SHA384 (CBC)" -tls1_2 -cipher ECDHE-RSA-AES256-SHA384
refused "$K" "TLS 1.2 DHE-RSA-AES256-GCM-SHA384 (finite-field DHE)" -tls1_2 -cipher DHE-RSA-AES256-GCM-SHA384
accepted "$K" "TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256" "TLS 1.2 ECDHE-RSA-AES128-GCM-SHA256" \
  -tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256
accepted "$K" "TLSv1.2 ECDHE-RSA-AES256-GCM-SHA384" "TLS 1.2 ECDHE-RSA-AES256-GCM-SHA384" \
  -tls1_2 -cipher ECDHE-RSA-AES256-GCM-SHA384
accepted "$K" "TLSv1.2 ECDHE-RSA-CHACHA20-POLY1305" "TLS 1.2 ECDHE-RSA-CHACHA20-POLY1305" \
  -tls1_2 -cipher ECDHE-RSA-CHACHA20-POLY1305
accepted "$K" "TLSv1.2 ECDHE-RSA-AES256-GCM-SHA384" "TLS 1.2, the client's default list" -tls1_2
accepted "$K" "TLSv1.3 TLS_AES_256_GCM_SHA384" "TLS 1.3" -tls1_3
accepted "$K" "TLSv1.3 TLS_CHACHA20_POLY1305_SHA256" "TLS 1.3 ChaCha20-Poly1305" -tls1_3 \
  -ciphersuites TLS_CHACHA20_POLY1305_SHA256

# PyKMIP's client as configured in the tests (ssl_version PROTOCOL_TLSv1_2,
# Python's default cipher list) and with its defaults (TLS 1.3)
for v in PROTOCOL_TLSv1_2 PROTOCOL_SSLv23; do
  out=$(timeout 60 $PY - "$K" "$PORT" "$v" <<'PY'
import sys
from kmip.core import enums
from kmip.pie import client
d, port, v = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = client.ProxyKmipClient(hostname='127.0.0.1', port=port, cert=f'{d}/clients/alice/alice.crt',
                           key=f'{d}/clients/alice/alice.key', ca=f'{d}/ca.crt',
                           ssl_version=v, config_file='/dev/null')
c.open()
uid = c.create(enums.CryptographicAlgorithm.AES, 256)
print(len(c.get(uid).value), c.proxy.socket.version(), c.proxy.socket.cipher()[0])
c.close()
PY
) || fail "PyKMIP client with $v"
  [[ $out == 32\ * ]] || fail "PyKMIP with $v: $out"
  ok "PyKMIP client ($v): $out"
done
kmsd_stop

# ---- EC server key -----------------------------------------------------------------
kmsd_init "$TMP/e" --ec
kmsd_start "$TMP/e"
E=$TMP/e
refused "$E" "TLS 1.2 ECDHE-ECDSA-AES128-SHA (CBC, SHA-1)" -tls1_2 -cipher ECDHE-ECDSA-AES128-SHA
refused "$E" "TLS 1.2 ECDHE-ECDSA-AES256-SHA384 (CBC)" -tls1_2 -cipher ECDHE-ECDSA-AES256-SHA384
accepted "$E" "TLSv1.2 ECDHE-ECDSA-AES256-GCM-SHA384" "TLS 1.2 ECDHE-ECDSA-AES256-GCM-SHA384" \
  -tls1_2 -cipher ECDHE-ECDSA-AES256-GCM-SHA384
accepted "$E" "TLSv1.2 ECDHE-ECDSA-CHACHA20-POLY1305" "TLS 1.2 ECDHE-ECDSA-CHACHA20-POLY1305" \
  -tls1_2 -cipher ECDHE-ECDSA-CHACHA20-POLY1305
accepted "$E" "TLSv1.3 TLS_AES_256_GCM_SHA384" "TLS 1.3 (EC key)" -tls1_3
kmsd_stop
grep -q "no cipher suite in common" "$TMP/k/server.log" || fail "refusals not explained in the log"
ok "refused handshakes logged as 'no cipher suite in common'"
