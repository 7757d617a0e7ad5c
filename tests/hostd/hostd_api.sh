#!/usr/bin/env bash
# vmseal-hostd over HTTPS with mutual TLS, driven with curl and certificates
# made here with openssl: keys, create, power, marker through the encrypted
# disk, encrypt/decrypt of an existing VM, shallow and deep recrypt, only the
# manager's certificate admitted, and a restart that leaves encrypted VMs
# locked until their KEK is PUT again. KEKs are PUT sealed to the host's
# custody key (GET /v1/host), as the manager does; a KEK in clear and keys
# sealed for another host or provider are refused.
source "$VMSEAL_SRC/tests/testlib.sh"

HOSTD=$VMSEAL_BUILD/hostd/vmseal-hostd
KT=$VMSEAL_BUILD/tests/hostd/kek_tool
guest=$("$VMSEAL_SRC/tests/guest/build-guest.sh" "$VMSEAL_BUILD/guest")
KERNEL=vmlinuz INITRD=initrd.gz   # names in the images folder

# ---- certificates: one CA; the manager (clientAuth), the host (serverAuth
# + clientAuth), and an intruder signed by the same CA
cd "$TMP"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/O=vmseal/CN=test-ca" -keyout ca.key -out ca.crt \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
leaf() {  # name subject eku [san]
  local ext="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=$3"
  [ -n "${4:-}" ] && ext+="
subjectAltName=$4"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$2" \
    -keyout "$1.key" -out "$1.csr" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
    -extfile <(echo "$ext") -out "$1.crt" 2>/dev/null
  chmod 600 "$1.key"
}
leaf manager "/O=vmseal/CN=manager" clientAuth
leaf host "/O=vmseal/CN=host-a" serverAuth,clientAuth "IP:127.0.0.1,DNS:localhost"
leaf intruder "/O=vmseal/CN=intruder" clientAuth
# same CA, the manager's own subject: the manager is known by its fingerprint
leaf impostor "/O=vmseal/CN=manager" clientAuth
ok "certificates made"

mkdir -p ds images
cp "$guest/vmlinuz" "$guest/initrd.gz" images/
# QEMU confined to a user of its own (hostd runs as root here)
QUSER=
if [ "$(id -u)" = 0 ]; then
  QUSER=vmsqapi$$
  useradd --system --no-create-home --shell /usr/sbin/nologin "$QUSER" || fail "useradd $QUSER"
  at_exit "userdel $QUSER >/dev/null 2>&1"
fi
cat > hostd.conf <<EOF
name = host-a
datastore = $TMP/ds
images = $TMP/images
listen = 127.0.0.1
port = 0
cert = $TMP/host.crt
key = $TMP/host.key
ca = $TMP/ca.crt
manager_fingerprint = $(openssl x509 -in "$TMP/manager.crt" -noout -fingerprint -sha256 | sed 's/.*=//')
manager_subject = CN=manager,O=vmseal
accel = tcg
grace_seconds = 30
${QUSER:+qemu_user = $QUSER}
EOF

HPID=
start_hostd() {
  rm -f port
  "$HOSTD" -c hostd.conf --port-file port >>hostd.log 2>&1 &
  HPID=$!
  for _ in $(seq 100); do [ -s port ] && break; sleep 0.1; done
  [ -s port ] || { cat hostd.log >&2; fail "hostd did not start"; }
  PORT=$(cat port)
  expect 200 GET /v1/host
  CUSTODY=$(jget custody_key)   # a new custody key pair at every start
}
stop_hostd() {  # a clean stop exits 0 (sanitizer reports make it fail)
  [ -n "$HPID" ] || return 0
  local rc=0
  kill -TERM "$HPID" 2>/dev/null || true
  wait "$HPID" 2>/dev/null || rc=$?
  HPID=
  [ "$rc" = 0 ] || { tail -30 hostd.log >&2; fail "hostd exited with status $rc"; }
}
kill_vms() { for f in "$TMP"/ds/*/qemu.pid "$TMP"/ds/*/run-*/qemu.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done; true; }
at_exit stop_hostd
at_exit kill_vms

# api METHOD PATH [BODY] [CERT]: prints the body, sets CODE
api() {
  local who=${4:-manager} out
  out=$(curl -sS --max-time 120 --cacert ca.crt --cert "$who.crt" --key "$who.key" \
        -X "$1" -H 'Content-Type: application/json' ${3:+--data "$3"} \
        -w '\n%{http_code}' "https://127.0.0.1:$PORT$2") || { CODE=000; BODY=; return 0; }
  CODE=${out##*$'\n'}
  BODY=${out%$'\n'*}
}
expect() {  # CODE METHOD PATH [BODY]
  local want=$1; shift
  api "$@"
  [ "$CODE" = "$want" ] || fail "$1 $2: HTTP $CODE, wanted $want: $BODY"
}
jget() { /usr/bin/python3 -c 'import json,sys; d=json.loads(sys.argv[1])
for k in sys.argv[2].split("."): d=d[int(k)] if isinstance(d,list) else d[k]
print("null" if d is None else (str(d).lower() if isinstance(d,bool) else d))' "$BODY" "$1"; }

wait_task() {  # TASK_ID -> success or fail
  local i state
  for i in $(seq 600); do
    expect 200 GET "/v1/tasks/$1"
    state=$(jget state)
    [ "$state" != running ] && break
    sleep 0.2
  done
  [ "$state" = success ] || fail "task $1: $state: $(jget error)"
  [ "$(jget progress)" = 100 ] || fail "task $1 finished below 100%"
}
task() {  # UUID ACTION BODY
  expect 202 POST "/v1/vms/$1/$2" "$3"
  wait_task "$(jget task_id)"
}
wait_off() {
  local i
  for i in $(seq 900); do
    expect 200 GET "/v1/vms/$1"
    [ "$(jget power_state)" = off ] && return 0
    sleep 0.1
  done
  fail "VM $1 did not power off"
}
# put_key WANT KEK_ID KEY_B64 [HOST [PROVIDER_SEALED [PROVIDER_SENT]]]: PUT a
# KEK sealed to the host's custody key, as the manager does
put_key() {
  local blob
  blob=$("$KT" seal "$CUSTODY" "${4:-host-a}" "$2" "${5:-vmseal}" "$3") || fail "kek_tool seal"
  expect "$1" PUT "/v1/keys/$2" "{\"sealed_key\": \"$blob\", \"provider\": \"${6:-${5:-vmseal}}\"}"
}
# The guest's console through GET /v1/vms/{uuid}/log (sealed for encrypted VMs)
log_bytes() { expect 200 GET "/v1/vms/$1/log?tail=0"; jget bytes; }
log_since() {  # UUID OFFSET: the console text after log byte OFFSET
  local total
  total=$(log_bytes "$1")
  expect 200 GET "/v1/vms/$1/log?tail=$((total - $2))"
  jget log
}
wait_log() {  # UUID OFFSET TEXT
  local i
  local out
  for i in $(seq 300); do
    out=$(log_since "$1" "$2")
    grep -q "$3" <<<"$out" && return 0
    sleep 0.2
  done
  fail "no $3 on the console of $1"
}
boot() {  # UUID HOME APPEND EXPECT: boot, guest acts and powers off
  local since out
  since=$(log_bytes "$1")
  expect 200 PATCH "/v1/vms/$1" "{\"append\": \"console=ttyS0 quiet $3\"}"
  expect 200 POST "/v1/vms/$1/power-on"
  wait_off "$1"
  out=$(log_since "$1" "$since")
  grep -q "$4" <<<"$out" || { tail -5 <<<"$out" >&2; fail "no $4 on the console"; }
}

start_hostd
ok "hostd listens on $PORT"

# ---- only the manager gets in
expect 403 GET /v1/vms "" intruder
expect 403 GET /v1/vms "" impostor
curl -sS --max-time 10 --cacert ca.crt "https://127.0.0.1:$PORT/v1/vms" >/dev/null 2>&1 \
  && fail "a client without certificate was served"
ok "intruder certificate 403, a certificate with the manager's subject but not its fingerprint 403, no certificate refused at TLS"

# ---- keys
K1=$(openssl rand -base64 32) K2=$(openssl rand -base64 32) K3=$(openssl rand -base64 32)
put_key 200 kek-1 "$K1"
put_key 200 kek-2 "$K2"
expect 400 PUT /v1/keys/kek-x '{"sealed_key": "c2hvcnQ=", "provider": "vmseal"}'
expect 400 PUT /v1/keys/kek-x "{\"key\": \"$K1\"}"
case "$BODY" in *"send sealed_key"*) ;; *) fail "a KEK in clear: $BODY";; esac
put_key 422 kek-x "$K1" host-b                # sealed for another host
put_key 422 kek-x "$K1" host-a other vmseal   # ... for another provider
put_key 422 kek-x "$K1" host-a vmseal other   # ... sent as another provider
blob=$("$KT" seal "$CUSTODY" host-a kek-1 vmseal "$K1")
expect 422 PUT /v1/keys/kek-x "{\"sealed_key\": \"$blob\", \"provider\": \"vmseal\"}"  # another KEK id
expect 200 GET /v1/host
[ "$(jget keks)" = 2 ] || fail "a refused key was stored: $BODY"
ok "sealed KEKs stored; a short one, one in clear, and ones for another host, provider or id refused"

# ---- boot files: names in the images folder only
expect 400 POST /v1/vms "{\"name\": \"leak01\", \"disks\": [], \"kernel\": \"$KERNEL\",
  \"initrd\": \"$TMP/host.key\", \"policy\": \"none\"}"
grep -q "images folder" <<<"$BODY" || fail "no clear message: $BODY"
expect 400 POST /v1/vms "{\"name\": \"leak02\", \"disks\": [], \"kernel\": \"../images/vmlinuz\", \"policy\": \"none\"}"
[ -e "$TMP/ds/leak01" ] && fail "a refused VM left a folder"
ok "kernel/initrd outside the images folder refused (400)"

# ---- new encrypted VM, marker through the encrypted disk
expect 201 POST /v1/vms "{\"name\": \"web01\", \"cpus\": 1, \"memory_mb\": 256, \"disks\": [{\"size_mb\": 32}],
  \"firmware\": \"bios\", \"kernel\": \"$KERNEL\", \"initrd\": \"$INITRD\", \"policy\": \"encrypted\", \"kek_id\": \"kek-1\"}"
VM1=$(jget uuid) HOME1=$(jget home)
[ "$(jget encrypted)" = true ] || fail "VM not encrypted"
grep -q '^vm.keysafe = vmseal:keysafe:v1:vmseal:kek-1:' "$HOME1/vm.conf" || fail "no VM key safe"
grep -q '^disk0.keysafe = vmseal:keysafe:v1:' "$HOME1/vm.conf" || fail "no disk key safe"
boot "$VM1" "$HOME1" vmseal.marker=APIMARK1 "VMSEAL-MARKER-WRITTEN vda"
[ "$(grep -c APIMARK1 "$HOME1/disk0.luks")" = 0 ] || fail "marker in clear in the image"
boot "$VM1" "$HOME1" vmseal.check=APIMARK1 VMSEAL-CHECK-OK
ok "encrypted VM: marker written and read back, image holds no clear text"
[ -e "$HOME1/serial.log" ] && fail "an encrypted VM has a clear serial.log"
grep -rqa -e VMSEAL-GUEST-BOOT -e VMSEAL-CHECK "$HOME1" && fail "console text in clear in the VM home"
ls "$HOME1"/serial-00000001.vmslog >/dev/null || fail "no sealed console log"
expect 200 GET "/v1/vms/$VM1/log?tail=50"
[ "$(jget encrypted)" = true ] && [ "$(jget bytes)" -gt 50 ] || fail "log: $BODY"
[ "$(python3 -c 'import json,sys; print(len(json.loads(sys.argv[1])["log"]))' "$BODY")" = 50 ] \
  || fail "tail=50 through HTTPS: $BODY"
expect 400 GET "/v1/vms/$VM1/log?tail=x"
expect 405 POST "/v1/vms/$VM1/log"
ok "encrypted VM: the console is sealed on disk and read through GET .../log?tail=N"

# ---- existing VM without encryption: encrypt, decrypt
expect 201 POST /v1/vms "{\"name\": \"db01\", \"disks\": [{\"size_mb\": 16}, {\"size_mb\": 16}],
  \"kernel\": \"$KERNEL\", \"initrd\": \"$INITRD\", \"policy\": \"none\"}"
VM2=$(jget uuid) HOME2=$(jget home)
boot "$VM2" "$HOME2" vmseal.marker=APIMARK2 "VMSEAL-MARKER-WRITTEN vdb"
[ "$(grep -c APIMARK2 "$HOME2/disk0.img")" = 1 ] || fail "plain VM: marker not in the image"
task "$VM2" encrypt '{"kek_id": "kek-1"}'
[ -e "$HOME2/disk0.img" ] && fail "plain image left behind"
[ "$(cat "$HOME2"/disk*.luks | grep -c APIMARK2)" = 0 ] || fail "marker in clear after encrypt"
boot "$VM2" "$HOME2" vmseal.check=APIMARK2 VMSEAL-CHECK-OK
ok "existing VM encrypted; data intact"
task "$VM2" decrypt '{}'
[ "$(grep -c APIMARK2 "$HOME2/disk1.img")" = 1 ] || fail "decrypted image lacks the marker"
boot "$VM2" "$HOME2" vmseal.check=APIMARK2 VMSEAL-CHECK-OK
ok "decrypted again; data intact"

# ---- shallow recrypt while running, deep recrypt powered off
expect 200 PATCH "/v1/vms/$VM1" '{"append": "console=ttyS0 quiet vmseal.wait=1"}'
since1=$(log_bytes "$VM1")
expect 200 POST "/v1/vms/$VM1/power-on"
task "$VM1" recrypt '{"new_kek_id": "kek-2", "deep": false}'
expect 200 GET "/v1/vms/$VM1"
[ "$(jget kek_id)" = kek-2 ] && [ "$(jget power_state)" = on ] || fail "shallow recrypt: $BODY"
wait_log "$VM1" "$since1" VMSEAL-READY
if [ -n "$QUSER" ]; then
  qpid=$(cat "$HOME1"/run-*/qemu.pid)
  st=$(cat "/proc/$qpid/status")
  quid=$(id -u "$QUSER")
  grep -q "^Uid:[[:space:]]*$quid[[:space:]]*$quid[[:space:]]*$quid[[:space:]]*$quid\$" <<<"$st" || fail "QEMU uid: $(grep ^Uid <<<"$st")"
  grep -q '^CapEff:[[:space:]]*0*$' <<<"$st" || fail "QEMU capabilities: $(grep ^Cap <<<"$st")"
  grep -q '^NoNewPrivs:[[:space:]]*1$' <<<"$st" || fail "QEMU may gain privileges"
  ok "QEMU runs as $QUSER ($quid) with no capabilities, and its encrypted guest runs"
fi
expect 200 POST "/v1/vms/$VM1/power-off" '{"grace_seconds": 60}'
put_key 200 kek-3 "$K3"
before=$(sha256sum < "$HOME1/disk0.luks")
task "$VM1" recrypt '{"new_kek_id": "kek-3", "deep": true}'
[ "$(sha256sum < "$HOME1/disk0.luks")" != "$before" ] || fail "deep recrypt left the image as it was"
grep -q ':kek-2:' "$HOME1/vm.conf" && fail "key safes still under kek-2"
boot "$VM1" "$HOME1" vmseal.check=APIMARK1 VMSEAL-CHECK-OK
ok "shallow recrypt while running, deep recrypt; data intact"

# ---- no KEK on disk, anywhere
for k in "$K1" "$K2" "$K3"; do
  grep -rqF -- "$k" ds hostd.log && fail "a KEK was written to disk"
done
ok "no KEK in the datastore or the log"

# ---- restart: a running VM keeps running; encrypted VMs are locked until
# their key comes back
expect 200 PATCH "/v1/vms/$VM2" '{"append": "console=ttyS0 quiet vmseal.wait=1"}'
: > "$HOME2/serial.log"
expect 200 POST "/v1/vms/$VM2/power-on"
QPID=$(cat "$HOME2"/run-*/qemu.pid)
stop_hostd
kill -0 "$QPID" || fail "QEMU stopped with hostd"
start_hostd
expect 200 GET "/v1/vms/$VM2"
[ "$(jget power_state)" = on ] || fail "running VM not found running after restart: $BODY"
for _ in $(seq 300); do grep -q VMSEAL-READY "$HOME2/serial.log" && break; sleep 0.1; done
expect 200 POST "/v1/vms/$VM2/power-off" '{"grace_seconds": 60}'
grep -q VMSEAL-POWER-BUTTON "$HOME2/serial.log" || fail "re-attached VM did not get the power button"
[ "$(stat -c %a "$HOME2/serial.log")" = 600 ] || fail "serial.log of a VM without encryption is not 0600"
ok "a VM runs on across a hostd restart and is re-attached"
expect 200 GET "/v1/vms/$VM1"
[ "$(jget locked)" = true ] || fail "VM not locked after restart: $BODY"
case "$(jget locked_reason)" in *kek-3*) ;; *) fail "locked reason: $(jget locked_reason)";; esac
expect 409 POST "/v1/vms/$VM1/power-on"
expect 409 GET "/v1/vms/$VM1/log"
case "$BODY" in *"VM locked: KEK kek-3"*) ;; *) fail "log of a locked VM: $BODY";; esac
put_key 200 kek-3 "$K3"
expect 200 GET "/v1/vms/$VM1"
[ "$(jget locked)" = false ] || fail "still locked with its KEK back"
boot "$VM1" "$HOME1" vmseal.check=APIMARK1 VMSEAL-CHECK-OK
ok "restart: locked until the KEK is PUT again, then boots"

# ---- crash (kill -9) in the middle of an encrypt and of a deep recrypt:
# after a restart hostd finishes both once it has the KEK again
expect 201 POST /v1/vms "{\"name\": \"big01\", \"disks\": [{\"size_mb\": 384}],
  \"kernel\": \"$KERNEL\", \"initrd\": \"$INITRD\", \"policy\": \"none\"}"
VM3=$(jget uuid) HOME3=$(jget home)
dd if=/dev/urandom of="$HOME3/disk0.img" bs=1M count=384 conv=notrunc status=none
printf 'VMSEAL-MARKER:CRASHMARK:vda\n' | dd of="$HOME3/disk0.img" bs=512 seek=2048 conv=notrunc status=none
crash_during() {  # UUID ACTION BODY: start the task, kill -9 hostd while it runs
  expect 202 POST "/v1/vms/$1/$2" "$3"
  local t=$(jget task_id) p=0
  for _ in $(seq 400); do
    expect 200 GET "/v1/tasks/$t"
    p=$(jget progress)
    [ "$(jget state)" = running ] && [ "$p" -ge 5 ] && break
    [ "$(jget state)" = running ] || fail "task ended before it could be interrupted"
    sleep 0.02
  done
  kill -KILL "$HPID"; wait "$HPID" 2>/dev/null || true; HPID=
  echo "# killed hostd at $p% of $2"
}
finish_after_restart() {  # UUID [KEK_ID KEY]...: the last KEK put lets it resume
  local vm=$1; shift
  start_hostd
  expect 200 GET "/v1/vms/$vm"
  [ "$(jget pending_operation)" != null ] || fail "no unfinished operation recorded: $BODY"
  expect 409 POST "/v1/vms/$vm/power-on"
  while [ $# -gt 2 ]; do
    put_key 200 "$1" "$2"
    [ "$(jget resumed_tasks)" = 0 ] || fail "resumed without all its KEKs: $BODY"
    shift 2
  done
  put_key 200 "$1" "$2"
  [ "$(jget resumed_tasks)" = 1 ] || fail "the unfinished operation was not resumed: $BODY"
  set -- "$vm"
  for _ in $(seq 600); do
    expect 200 GET "/v1/vms/$1"
    [ "$(jget pending_operation)" = null ] && [ "$(jget task)" = null ] && return 0
    sleep 0.2
  done
  fail "the resumed operation did not finish: $BODY"
}
put_key 200 kek-3 "$K3"
crash_during "$VM3" encrypt '{"kek_id": "kek-3"}'
finish_after_restart "$VM3" kek-3 "$K3"
expect 200 GET "/v1/vms/$VM3"
[ "$(jget encrypted)" = true ] || fail "not encrypted after the resumed encrypt"
[ -e "$HOME3/disk0.img" ] && fail "plain image left after the resumed encrypt"
[ "$(grep -c CRASHMARK "$HOME3/disk0.luks")" = 0 ] || fail "clear text in the image"
boot "$VM3" "$HOME3" vmseal.check=CRASHMARK VMSEAL-CHECK-OK
ok "encrypt killed midway, finished after restart; data intact"
put_key 200 kek-2 "$K2"
crash_during "$VM3" recrypt '{"new_kek_id": "kek-2", "deep": true}'
finish_after_restart "$VM3" kek-3 "$K3" kek-2 "$K2"   # old and new KEK
expect 200 GET "/v1/vms/$VM3"
[ "$(jget kek_id)" = kek-2 ] || fail "deep recrypt did not move to kek-2: $BODY"
boot "$VM3" "$HOME3" vmseal.check=CRASHMARK VMSEAL-CHECK-OK
ok "deep recrypt killed midway, finished after restart; data intact"

# ---- delete
expect 204 DELETE "/v1/vms/$VM2"
[ -e "$HOME2" ] && fail "home of a deleted VM left"
expect 404 GET "/v1/vms/$VM2"
expect 204 DELETE /v1/keys/kek-3
expect 404 DELETE /v1/keys/kek-1   # gone with the restart
ok "VM and KEK deleted"
