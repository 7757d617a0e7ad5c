# Helpers for tests against PyKMIP's server (pykmip-server, Debian
# python3-pykmip); source after tests/testlib.sh. Files go to $TMP.

# free_port: a TCP port on 127.0.0.1 nobody listens on right now.
free_port() {
  $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ossl ARGS...: the openssl CLI, quiet; fails the test when it fails.
ossl() { openssl "$@" 2>/dev/null || fail "openssl $1"; }

# pykmip_issue NAME CN EXTENSIONS: NAME.key + NAME.pem signed by ca.pem/ca.key
# (RSA 2048, 2 days); EXTENSIONS is printf %b text for -extfile.
pykmip_issue() {
  ossl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$2"
  printf '%b' "$3" > "$1.ext"
  ossl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$1.pem" -days 2 -extfile "$1.ext"
  chmod 600 "$1.key"
}

# pykmip_certs CA_CN: in $TMP, a CA (ca.pem), server.pem for 127.0.0.1
# (serverAuth) and client.pem with CN vmseal-manager (clientAuth).
pykmip_certs() {
  (cd "$TMP" || exit 1
   ossl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=$1" \
     -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
   pykmip_issue server 127.0.0.1 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n'
   pykmip_issue client vmseal-manager 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n'
  ) || fail "certificates for pykmip-server"
}

# pykmip_conf PORT: $TMP/server.conf for pykmip-server on 127.0.0.1:PORT,
# mutual TLS 1.2 with the certificates of pykmip_certs, database in $TMP.
pykmip_conf() {
  mkdir -p "$TMP/policies"
  cat > "$TMP/server.conf" <<EOC
[server]
hostname=127.0.0.1
port=$1
certificate_path=$TMP/server.pem
key_path=$TMP/server.key
ca_path=$TMP/ca.pem
auth_suite=TLS1.2
policy_path=$TMP/policies
enable_tls_client_auth=True
logging_level=INFO
database_path=$TMP/pykmip.db
EOC
}
