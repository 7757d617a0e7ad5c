#!/usr/bin/env bash
# Privilege separation of vmseal-hostd, checked in memory: KEKs are pushed
# sealed, an encrypted VM is created and booted, shallow-rekeyed while it
# runs, deep-rekeyed, decrypted; at each step /proc/PID/mem of the network
# process ("vmseal-hostd: network") is searched for every KEK and every
# disk secret in raw, hex (lower, upper) and base64 form: none may be there.
# The same scan of the monitor finds the KEK of the running VM (it lives
# there), which shows the scanner works.
source "$VMSEAL_SRC/tests/testlib.sh"

HOSTD=$VMSEAL_BUILD/hostd/vmseal-hostd
# A sanitizer build maps terabytes of shadow memory: not scannable in time.
if ldd "$HOSTD" 2>/dev/null | grep -q -e libasan -e libtsan -e libmsan; then
  echo "1..0 # SKIP sanitizer build (its shadow memory is too large to scan)"; exit 77
fi
KT=$VMSEAL_BUILD/tests/hostd/kek_tool
SCAN=$VMSEAL_SRC/tests/hostd/memscan.py
guest=$("$VMSEAL_SRC/tests/guest/build-guest.sh" "$VMSEAL_BUILD/guest")
KERNEL=vmlinuz INITRD=initrd.gz   # names in the images folder

cd "$TMP"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/O=vmseal/CN=test-ca" -keyout ca.key -out ca.crt \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
leaf() {  # name subject eku
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$2" \
    -keyout "$1.key" -out "$1.csr" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
    -extfile <(printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=IP:127.0.0.1\n' "$3") \
    -out "$1.crt" 2>/dev/null
  chmod 600 "$1.key"
}
leaf manager "/O=vmseal/CN=manager" clientAuth
leaf host "/O=vmseal/CN=host-a" serverAuth,clientAuth
mkdir -p ds images
cp "$guest/vmlinuz" "$guest/initrd.gz" images/
cat > hostd.conf <<EOF2
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
EOF2

HPID=
stop_hostd() {
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

api() {
  local out
  out=$(curl -sS --max-time 120 --cacert ca.crt --cert manager.crt --key manager.key \
        -X "$1" -H 'Content-Type: application/json' ${3:+--data "$3"} \
        -w '\n%{http_code}' "https://127.0.0.1:$PORT$2") || { CODE=000; BODY=; return 0; }
  CODE=${out##*$'\n'}
  BODY=${out%$'\n'*}
}
expect() {
  local want=$1; shift
  api "$@"
  [ "$CODE" = "$want" ] || fail "$1 $2: HTTP $CODE, wanted $want: $BODY"
}
jget() { /usr/bin/python3 -c 'import json,sys; d=json.loads(sys.argv[1])
for k in sys.argv[2].split("."): d=d[int(k)] if isinstance(d,list) else d[k]
print("null" if d is None else (str(d).lower() if isinstance(d,bool) else d))' "$BODY" "$1"; }
put_key() {  # KEK_ID KEY_B64
  local blob
  blob=$("$KT" seal "$CUSTODY" host-a "$1" vmseal "$2") || fail "kek_tool seal"
  expect 200 PUT "/v1/keys/$1" "{\"sealed_key\": \"$blob\", \"provider\": \"vmseal\"}"
}
task() {  # UUID ACTION BODY
  expect 202 POST "/v1/vms/$1/$2" "$3"
  local t=$(jget task_id) state
  for _ in $(seq 600); do
    expect 200 GET "/v1/tasks/$t"
    state=$(jget state)
    [ "$state" != running ] && break
    sleep 0.2
  done
  [ "$state" = success ] || fail "task $2: $state: $(jget error)"
}
wait_console() {  # UUID TEXT
  for _ in $(seq 600); do
    expect 200 GET "/v1/vms/$1/log?tail=4096"
    grep -q "$2" <<<"$(jget log)" && return 0
    sleep 0.2
  done
  fail "no $2 on the console of $1"
}
wait_off() {
  for _ in $(seq 900); do
    expect 200 GET "/v1/vms/$1"
    [ "$(jget power_state)" = off ] && return 0
    sleep 0.1
  done
  fail "VM $1 did not power off"
}

"$HOSTD" -c hostd.conf --port-file port >>hostd.log 2>&1 &
HPID=$!
for _ in $(seq 100); do [ -s port ] && break; sleep 0.1; done
[ -s port ] || { cat hostd.log >&2; fail "hostd did not start"; }
PORT=$(cat port)
NPID=
for c in $(pgrep -P "$HPID"); do
  [ "$(cat "/proc/$c/comm")" = "hostd: network" ] && NPID=$c
done
[ -n "$NPID" ] || fail "no network process under hostd $HPID"
tr '\0' ' ' < "/proc/$NPID/cmdline" | grep -q '^vmseal-hostd: network' || fail "process title"
grep -q '^NoNewPrivs:[[:space:]]*1' "/proc/$NPID/status" || fail "the network process may gain privileges"
[ "$(ls "/proc/$NPID/fd" | wc -l)" -lt 20 ] || fail "the network process keeps many descriptors"
ok "hostd $HPID, network process $NPID (no_new_privs)"
expect 200 GET /v1/host
CUSTODY=$(jget custody_key)

K1=$(openssl rand -base64 32) K2=$(openssl rand -base64 32) K3=$(openssl rand -base64 32)
hex() { base64 -d <<<"$1" | od -An -tx1 | tr -d ' \n'; }
SECRETS=("kek-1=$(hex "$K1")" "kek-2=$(hex "$K2")" "kek-3=$(hex "$K3")")
put_key kek-1 "$K1"
put_key kek-2 "$K2"

disk_secret() {  # HOME KEK_B64: the disk0 secret, hex
  local line uuid
  line=$(sed -n 's/^disk0.keysafe = //p' "$1/vm.conf")
  uuid=$(dd if="$1/disk0.luks" bs=1 skip=168 count=40 status=none | tr -d '\0')
  "$KT" unwrap "$2" "disk:$uuid" "$line" || fail "cannot unwrap the disk secret"
}
# scan PID: "NAME FORM COUNT" lines of every secret known so far
scan() { python3 "$SCAN" "$1" "${SECRETS[@]}" || fail "scan of $1 failed"; }
child_clean() {  # WHEN
  local out
  kill -0 "$NPID" || fail "the network process is gone"
  out=$(scan "$NPID")
  head -1 <<<"$out"
  if awk '!/^#/ && $3 > 0 {bad=1; print "# FOUND in the network process: " $0} END {exit !bad}' <<<"$out"; then
    fail "key material in the network process ($1)"
  fi
  ok "network process: none of ${#SECRETS[@]} secrets in any form ($1)"
}

expect 201 POST /v1/vms "{\"name\": \"scan01\", \"disks\": [{\"size_mb\": 32}], \"kernel\": \"$KERNEL\",
  \"initrd\": \"$INITRD\", \"policy\": \"encrypted\", \"kek_id\": \"kek-1\",
  \"append\": \"console=ttyS0 quiet vmseal.marker=SCANMARK vmseal.wait=1\"}"
VM=$(jget uuid) HOME1=$(jget home)
SECRETS+=("disk-a=$(disk_secret "$HOME1" "$K1")")
expect 200 POST "/v1/vms/$VM/power-on"
wait_console "$VM" VMSEAL-READY
ok "encrypted VM running"

# the scanner works: the KEK of the running VM is in the monitor
out=$(scan "$HPID")
head -1 <<<"$out"
grep -q '^kek-1 raw [1-9]' <<<"$out" || { echo "$out" >&2; fail "the scanner did not find kek-1 in the monitor"; }
ok "the scanner finds kek-1 in the monitor ($(grep '^kek-1 raw' <<<"$out"))"
child_clean "VM running"

task "$VM" recrypt '{"new_kek_id": "kek-2", "deep": false}'
child_clean "after a shallow rekey of the running VM"
expect 200 POST "/v1/vms/$VM/power-off" '{"grace_seconds": 60}'
wait_off "$VM"
put_key kek-3 "$K3"
task "$VM" recrypt '{"new_kek_id": "kek-3", "deep": true}'
SECRETS+=("disk-b=$(disk_secret "$HOME1" "$K3")")
expect 200 POST "/v1/vms/$VM/power-on"
wait_console "$VM" VMSEAL-READY
child_clean "after a deep rekey, booted again"
expect 200 POST "/v1/vms/$VM/power-off" '{"grace_seconds": 60}'
wait_off "$VM"
task "$VM" decrypt '{}'
child_clean "after decrypt"
stop_hostd
ok "hostd stopped cleanly"
