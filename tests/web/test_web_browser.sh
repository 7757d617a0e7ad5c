#!/usr/bin/env bash
# The web client in a real browser (headless Chromium + Selenium) against
# the real stack: vmseal-kmsd, vmseal-managerd, vmseal-hostd (TCG), plus a
# rogue TLS server posing as a KMS (its certificate subject is HTML) and an
# attacker's page on another origin. tests/web/web_browser.py drives the
# browser and says what is checked; screenshots of each page are kept in
# BUILD/web-screenshots. Skipped (77) only when Chromium cannot start.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/scripts/lib/stack.sh"
stack_fail() { fail "stack: $*"; }
STACK_SRC=$VMSEAL_SRC
for b in /usr/bin/chromium /usr/bin/chromedriver; do
  [ -x "$b" ] || { echo "SKIP: $b is missing (scripts/deps installs chromium and chromium-driver)"; exit 77; }
done
stack_init "$TMP/stack" "$VMSEAL_BUILD"
at_exit stack_cleanup

stack_kmsd_setup kms1
stack_kmsd_start kms1
stack_managerd_setup
stack_managerd_start
stack_login
stack_hostd_setup esx1 tcg
stack_hostd_start esx1
printf 'bobpassword1\n' > "$TMP/bob-password"
vmseal user add bob --role NoCryptoAdmin --password-file "$TMP/bob-password" >/dev/null || fail "user add bob"
ok "stack up: kmsd, managerd, hostd esx1 (TCG); bob is a NoCryptoAdmin"

freeport() { $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# a rogue "KMS": a TLS server whose self-signed certificate's subject is HTML
R=$TMP/rogue; mkdir -p "$R"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -keyout "$R/r.key" -out "$R/r.crt" -subj "/CN=<img src=x onerror=window.__pwned=1>/O=rogue" \
  >/dev/null 2>&1 || fail "rogue certificate"
RPORT=$(freeport)
openssl s_server -quiet -accept "127.0.0.1:$RPORT" -cert "$R/r.crt" -key "$R/r.key" </dev/null >"$R/log" 2>&1 &
RPID=$!
at_exit "kill $RPID 2>/dev/null"

# an attacker's page on another origin (http://localhost:PORT): a text/plain
# form POST that is valid JSON, and a credentialed no-cors fetch
A=$TMP/attacker; mkdir -p "$A"
cat > "$A/attack.html" <<EOP
<!DOCTYPE html><html><head><title>cute cats</title></head><body>
<form id="f" method="POST" action="$STACK_URL/api/v1/users" enctype="text/plain">
<input type="hidden" name='{"name":"mallory","password":"mallorypass1","role":"Administrator","x":"' value='"}'>
</form>
<script>
fetch("$STACK_URL/api/v1/groups", {method: "POST", mode: "no-cors", credentials: "include",
  headers: {"Content-Type": "text/plain"}, body: '{"name":"mallorygroup"}'})
  .catch(() => {}).finally(() => { document.title = "sent"; document.getElementById("f").submit(); });
</script></body></html>
EOP
APORT=$(freeport)
$PY -m http.server --bind 127.0.0.1 --directory "$A" "$APORT" >"$A/log" 2>&1 &
APID=$!
at_exit "kill $APID 2>/dev/null"
for ((i = 0; i < 50; i++)); do
  curl -fsS "http://127.0.0.1:$APORT/attack.html" >/dev/null 2>&1 && break
  sleep 0.1
done

M=$STACK_DIR/manager
SHOTS=$VMSEAL_BUILD/web-screenshots
rm -rf "$SHOTS"
export WEB_URL=$STACK_URL WEB_CA=$STACK_CA WEB_SHOTS=$SHOTS WEB_CLI=$STACK_CLI WEB_PROFILES=$TMP/profiles \
  WEB_ADMIN_PW=$(cat "$M/admin-password") WEB_BOB_PW=bobpassword1 \
  WEB_KMS_ADDR=127.0.0.1:${STACK_PORT[kms1]} WEB_KMS_CA=$STACK_DIR/kms1/ca.crt \
  WEB_KMS_CLIENT_CRT=$STACK_DIR/kms1/clients/manager/manager.crt \
  WEB_KMS_CLIENT_KEY=$STACK_DIR/kms1/clients/manager/manager.key \
  WEB_ROGUE_ADDR=127.0.0.1:$RPORT WEB_ATTACK_URL=http://localhost:$APORT/attack.html \
  WEB_MLOG=$M/managerd.log \
  WEB_SPKI=$(openssl x509 -in "$M/$(stack_conf "$M/managerd.conf" cert server.crt)" -pubkey -noout |
             openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)
rc=0
timeout 780 $PY "$VMSEAL_SRC/tests/web/web_browser.py" || rc=$?
[ "$rc" -eq 77 ] && exit 77
[ "$rc" -eq 0 ] || fail "web client in the browser (exit $rc; screenshots in $SHOTS)"
stack_cleanup
[ ${#STACK_UNCLEAN[@]} -eq 0 ] || fail "did not stop cleanly: ${STACK_UNCLEAN[*]}"
ok "every daemon stopped cleanly"
