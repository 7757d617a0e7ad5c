#!/usr/bin/env bash
# Master key on a PKCS#11 token (SoftHSM2): init generates a non-extractable
# AES-256 key on the token, keys are wrapped on the token; create -> restart
# -> get works; the wrong PIN or a missing key fails clearly.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/kmsd/kmsd_lib.sh"

MODULE=/usr/lib/softhsm/libsofthsm2.so
[ -e "$MODULE" ] || MODULE=$(ls /usr/lib/*/softhsm/libsofthsm2.so 2>/dev/null | head -1)
[ -e "$MODULE" ] || fail "softhsm2 module not found (scripts/deps installs softhsm2)"
mkdir -p "$TMP/tokens"
cat > "$TMP/softhsm2.conf" <<CONF
directories.tokendir = $TMP/tokens
objectstore.backend = file
log.level = ERROR
CONF
export SOFTHSM2_CONF=$TMP/softhsm2.conf
softhsm2-util --init-token --free --label vmseal-test --pin 4321 --so-pin 87654321 >/dev/null \
  || fail "softhsm2-util --init-token"
( umask 077; printf '4321\n' > "$TMP/pin" )

kmsd_init "$TMP/k" --pkcs11-module "$MODULE" --pkcs11-token vmseal-test --pkcs11-pin-file "$TMP/pin"
[ ! -e "$TMP/k/master.key" ] || fail "no master key file with PKCS#11"
grep -q "^pkcs11_module = $MODULE" "$TMP/k/kmsd.conf" || fail "config names the module"
ok "init with the master key on the token"

# the key object is on the token, sensitive and not extractable
if command -v pkcs11-tool >/dev/null; then
  pkcs11-tool --module "$MODULE" --token-label vmseal-test --login --pin 4321 --list-objects --type secrkey \
    2>/dev/null > "$TMP/objs" || fail "pkcs11-tool --list-objects"
  grep -q "vmseal-kmsd-master" "$TMP/objs" || fail "key object on the token"
  if pkcs11-tool --module "$MODULE" --token-label vmseal-test --login --pin 4321 --read-object \
      --type secrkey --label vmseal-kmsd-master >/dev/null 2>&1; then
    fail "the master key could be read off the token"
  fi
  ok "master key is on the token and cannot be read off it"
fi

tool() { timeout 60 $PY "$KTESTS/kmsd_tool.py" "$TMP/k" "$PORT" alice "$@"; }
kmsd_start "$TMP/k"
grep -q "master key: PKCS#11 token \"vmseal-test\"" "$TMP/k/server.log" || fail "server uses the token"
tool create-get 3 > "$TMP/before" || fail "create on the token-backed server"
kmsd_stop
kmsd_start "$TMP/k"
tool get $(cut -d' ' -f1 "$TMP/before") > "$TMP/after" || fail "get after restart"
diff "$TMP/before" "$TMP/after" >/dev/null || fail "keys differ after restart"
ok "create -> restart -> get with the PKCS#11 master key"
kmsd_stop

# the store is useless without the token key: a wrong PIN refuses to start
( umask 077; printf '0000\n' > "$TMP/pin" )
"$KMSD" -c "$TMP/k" serve --listen 127.0.0.1 --port 0 2>"$TMP/err" && fail "started with a wrong PIN"
grep -q "C_Login failed: PIN incorrect" "$TMP/err" || { cat "$TMP/err"; fail "wrong PIN explained"; }
ok "wrong PIN refused clearly"
( umask 077; printf '4321\n' > "$TMP/pin" )
chmod 644 "$TMP/pin"
"$KMSD" -c "$TMP/k" serve --listen 127.0.0.1 --port 0 2>"$TMP/err" && fail "started with a readable PIN file"
grep -q "mode 0600" "$TMP/err" || fail "PIN file mode explained"
ok "world-readable PIN file refused"
