# scripts/lib/stack.sh — bring up the whole vmseal stack on 127.0.0.1
# (sourced by scripts/demo and tests/system/*.sh).
#
#   vmseal-kmsd      one or two key servers (a second one is a replica made
#                    from an online backup of the first: same master key,
#                    same keys, another port — a KMS cluster)
#   vmseal-managerd  SQLite database in its folder
#   vmseal-hostd     one host agent with its datastore, registered with the
#                    manager through its certificate
#   vmseal           the CLI, logged in; its session lives under $STACK_DIR
#
# Every daemon listens on a free port it picks itself (--port 0, reported in
# a port file); every wait is bounded and polls a status; stack_cleanup kills
# every process the stack started (daemons and the QEMUs the host agent
# started, found through their qemu.pid files), by process id.
#
# Usage:
#   source scripts/lib/stack.sh
#   stack_init DIR BUILD          # BUILD: meson build folder
#   trap stack_cleanup EXIT       # (tests: at_exit stack_cleanup)
#   stack_kmsd_setup kms1; stack_kmsd_start kms1
#   stack_managerd_setup; stack_managerd_start; stack_login
#   stack_kms_add prov1 kms1 [kms2]   # add + trust + client cert + default
#   stack_kmsd_replica kms1 kms2      # (a second server of the cluster)
#   stack_kmsd_pg_setup kms1 CONNINFO; stack_kmsd_pg_setup kms2 CONNINFO kms1
#                                     # (or: nodes on one PostgreSQL store)
#   stack_kmsd_kill kms1              # kill -9 a key server (a crash)
#   stack_guest                       # the test guest -> $STACK_GUEST
#   stack_hostd_setup esx1 [auto|tcg|kvm]; stack_hostd_start esx1
#   vmseal vm create ...              # the CLI, with the stack's session
#   vmseal vm set VM --append ARGS; stack_vm_boot esx1 VM     # guest output
#   stack_vm_console VM [OFFSET]; stack_vm_console_has VM PATTERN  # via vm log
#   stack_hostd_stop esx1; stack_hostd_start esx1             # restart
# Failures call stack_fail (default: message and exit 1; callers may
# redefine it, e.g. tests map it to testlib's fail).

STACK_TIMEOUT=${STACK_TIMEOUT:-60}      # seconds for any one wait
declare -A STACK_PID=() STACK_PORT=()
STACK_UNCLEAN=()   # daemons that did not stop cleanly in stack_cleanup

stack_fail() { printf 'stack: %s\n' "$*" >&2; exit 1; }

# stack_init DIR BUILD: a fresh stack folder; BUILD holds the binaries.
stack_init() {
  STACK_DIR=$1
  STACK_BUILD=$2
  mkdir -p "$STACK_DIR"
  STACK_DIR=$(cd "$STACK_DIR" && pwd)
  STACK_KMSD=$STACK_BUILD/kmsd/vmseal-kmsd
  STACK_MGRD=$STACK_BUILD/managerd/vmseal-managerd
  STACK_HOSTD=$STACK_BUILD/hostd/vmseal-hostd
  STACK_CLI=$STACK_BUILD/cli/vmseal
  local b
  for b in "$STACK_KMSD" "$STACK_MGRD" "$STACK_HOSTD" "$STACK_CLI"; do
    [ -x "$b" ] || stack_fail "$b is not built"
  done
  # The CLI keeps its session in $XDG_CONFIG_HOME/vmseal: one per stack.
  export XDG_CONFIG_HOME=$STACK_DIR/cli-config
  mkdir -p "$XDG_CONFIG_HOME"
  chmod 700 "$XDG_CONFIG_HOME"
  unset VMSEAL_URL VMSEAL_CA VMSEAL_MANAGERD_CONFIG VMSEAL_HOSTD_CONFIG VMSEAL_KMSD_CONFIG
}

# vmseal ARGS...: the CLI of this stack.
vmseal() { "$STACK_CLI" "$@"; }

# stack_wait_file FILE PID WHAT LOG: until FILE is non-empty; fail if PID dies.
stack_wait_file() {
  local f=$1 pid=$2 what=$3 log=$4 i
  for ((i = 0; i < STACK_TIMEOUT * 20; i++)); do
    [ -s "$f" ] && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$log" >&2
      stack_fail "$what exited during start-up (log: $log)"
    fi
    sleep 0.05
  done
  stack_fail "$what did not start within ${STACK_TIMEOUT}s (log: $log)"
}

# stack_until SECONDS CMD...: run CMD every 0.2 s until it succeeds; 1 on timeout.
stack_until() {
  local secs=$1 i; shift
  for ((i = 0; i < secs * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}

# stack_stop_pid NAME: SIGTERM the process, wait (bounded, 10 s), then
# SIGKILL. Returns 1 (and shows the end of its log) unless it exited with
# status 0 on SIGTERM — a clean shutdown (no crash, no sanitizer report).
stack_stop_pid() {
  local name=$1 pid=${STACK_PID[$1]:-} i rc=0 probes=() c
  [ -n "$pid" ] || return 0
  # a host agent's KVM probe QEMU (accel = auto) must not outlive it
  stack_probe_children() {
    local c
    for c in $(pgrep -P "$1" 2>/dev/null); do
      tr '\0' ' ' 2>/dev/null < "/proc/$c/cmdline" | grep -q 'qemu-system.*vmseal-kvm-probe' && echo "$c"
    done
    return 0
  }
  probes=($(stack_probe_children "$pid"))
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    probes+=($(stack_probe_children "$pid"))
    sleep 0.05
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    echo "stack: $name did not stop within 10 s of SIGTERM" >&2
    rc=1
  fi
  local st=0
  wait "$pid" 2>/dev/null || st=$?
  for c in "${probes[@]}"; do
    if kill -0 "$c" 2>/dev/null; then
      echo "stack: $name left its KVM probe QEMU (pid $c) running; killing it" >&2
      kill -KILL "$c" 2>/dev/null || true
      rc=1
    fi
  done
  unset "STACK_PID[$name]"
  if [ "$rc" -eq 0 ] && [ "$st" -ne 0 ]; then
    echo "stack: $name exited with status $st on SIGTERM; end of its log:" >&2
    tail -n 30 "$(stack_log "$name")" >&2 2>/dev/null || true
    rc=1
  fi
  return "$rc"
}

# stack_log NAME: the log file of a daemon of the stack.
stack_log() {
  local d=$STACK_DIR/$1
  if [ -f "$d/hostd.conf" ]; then echo "$d/hostd.log"
  elif [ -f "$d/managerd.conf" ]; then echo "$d/managerd.log"
  else echo "$d/server.log"; fi
}

# ---- key servers -----------------------------------------------------------------------

# stack_kmsd_setup NAME: vmseal-kmsd init in $STACK_DIR/NAME and a client
# certificate (CN=manager) for the manager.
stack_kmsd_setup() {
  local d=$STACK_DIR/$1
  "$STACK_KMSD" init "$d" --host 127.0.0.1 >"$STACK_DIR/$1.init.log" 2>&1 ||
    { cat "$STACK_DIR/$1.init.log" >&2; stack_fail "vmseal-kmsd init $1"; }
  "$STACK_KMSD" -c "$d" enroll manager >>"$STACK_DIR/$1.init.log" 2>&1 ||
    { cat "$STACK_DIR/$1.init.log" >&2; stack_fail "vmseal-kmsd enroll manager"; }
}

# stack_kmsd_replica FROM NAME: a second server of the cluster: a copy of
# FROM's folder (same master key, CA and server certificate) whose store is
# an online backup of FROM's store. FROM may be running.
stack_kmsd_replica() {
  local from=$STACK_DIR/$1 d=$STACK_DIR/$2
  rm -rf "$d"
  mkdir -p "$d"
  "$STACK_KMSD" -c "$from" backup "$STACK_DIR/$2.backup" >/dev/null 2>&1 ||
    stack_fail "vmseal-kmsd backup of $1"
  (cd "$from" && tar --exclude='*.db' --exclude='*.db-*' --exclude='*.lock' --exclude='*.log' \
     --exclude=port -cf - .) | (cd "$d" && tar -xf -) || stack_fail "copy $1 to $2"
  "$STACK_KMSD" -c "$d" restore "$STACK_DIR/$2.backup" >/dev/null 2>&1 ||
    stack_fail "vmseal-kmsd restore into $2"
  rm -f "$STACK_DIR/$2.backup"
}

# stack_kmsd_pg_setup NAME CONNINFO [FIRST]: a node of a key-server cluster
# on one PostgreSQL store (docs/kmsd.md, "A cluster on PostgreSQL"), node
# name NAME. Without FIRST the cluster's first node: `init --store
# postgresql` makes the store in the (empty) database CONNINFO names, and a
# client certificate for the manager. With FIRST: `join` with FIRST's CA and
# master key (same store, same keys), and FIRST's client files for the
# manager (one CA: the manager's certificate works on every node).
stack_kmsd_pg_setup() {
  local n=$1 ci=$2 first=${3:-} d=$STACK_DIR/$1
  if [ -z "$first" ]; then
    "$STACK_KMSD" init "$d" --host 127.0.0.1 --store postgresql --conninfo-file "$ci" \
      --node-name "$n" >"$STACK_DIR/$n.init.log" 2>&1 ||
      { cat "$STACK_DIR/$n.init.log" >&2; stack_fail "vmseal-kmsd init $n --store postgresql"; }
    "$STACK_KMSD" -c "$d" enroll manager >>"$STACK_DIR/$n.init.log" 2>&1 ||
      { cat "$STACK_DIR/$n.init.log" >&2; stack_fail "vmseal-kmsd enroll manager"; }
  else
    local f=$STACK_DIR/$first
    "$STACK_KMSD" join "$d" --conninfo-file "$ci" --ca "$f/ca.crt" --ca-key "$f/ca.key" \
      --master-key-file "$f/master.key" --node-name "$n" --host 127.0.0.1 \
      >"$STACK_DIR/$n.init.log" 2>&1 ||
      { cat "$STACK_DIR/$n.init.log" >&2; stack_fail "vmseal-kmsd join $n"; }
    mkdir -p "$d/clients"
    cp -r "$f/clients/manager" "$d/clients/" || stack_fail "copying the manager's client files to $n"
  fi
}

# stack_kmsd_kill NAME: kill -9 a key server (a crash: no goodbye, its
# connections just break); stack_kmsd_start NAME brings it back on its port.
stack_kmsd_kill() {
  local pid=${STACK_PID[$1]:-}
  [ -n "$pid" ] || return 0
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "STACK_PID[$1]"
}

# stack_kmsd_start NAME [PORT]: serve on 127.0.0.1 (PORT, default a free
# one; a restarted server keeps its port); sets STACK_PORT[NAME].
stack_kmsd_start() {
  local n=$1 d=$STACK_DIR/$1 port=${2:-${STACK_PORT[$1]:-0}}
  rm -f "$d/port"
  "$STACK_KMSD" -c "$d" serve --listen 127.0.0.1 --port "$port" --port-file "$d/port" \
    >>"$d/server.log" 2>&1 &
  STACK_PID[$n]=$!
  stack_wait_file "$d/port" "${STACK_PID[$n]}" "vmseal-kmsd $n" "$d/server.log"
  STACK_PORT[$n]=$(cat "$d/port")
}

stack_kmsd_stop() { stack_stop_pid "$1" || stack_fail "vmseal-kmsd $1 did not stop cleanly"; }

# ---- the manager -------------------------------------------------------------------------

stack_managerd_setup() {
  local d=$STACK_DIR/manager
  "$STACK_MGRD" init "$d" --host 127.0.0.1 >"$STACK_DIR/manager.init.log" 2>&1 ||
    { cat "$STACK_DIR/manager.init.log" >&2; stack_fail "vmseal-managerd init"; }
  # poll host tasks often, compare the hosts' VMs every 2 s and try a
  # failed step again soon: the stack's operations are short
  local kv
  for kv in "task_poll_ms = 200" "reconcile_interval = 2" "task_retry_delay_ms = 500"; do
    if grep -q "^${kv%% *}" "$d/managerd.conf"; then
      sed -i "s/^${kv%% *}.*/$kv/" "$d/managerd.conf"
    else
      echo "$kv" >> "$d/managerd.conf"
    fi
  done
  STACK_MANAGER_SUBJECT=$(openssl x509 -in "$d/$(stack_conf "$d/managerd.conf" cert server.crt)" \
    -noout -subject -nameopt RFC2253 | sed 's/^subject=//')
}

# stack_conf FILE KEY DEFAULT: a "key = value" setting.
stack_conf() {
  local v
  v=$(sed -n "s/^$2[[:space:]]*=[[:space:]]*//p" "$1" | tail -n1)
  echo "${v:-$3}"
}

stack_managerd_start() {
  local d=$STACK_DIR/manager port=${STACK_PORT[manager]:-0}
  rm -f "$d/port"
  "$STACK_MGRD" -c "$d" serve --listen 127.0.0.1 --port "$port" --port-file "$d/port" \
    >>"$d/managerd.log" 2>&1 &
  STACK_PID[manager]=$!
  stack_wait_file "$d/port" "${STACK_PID[manager]}" "vmseal-managerd" "$d/managerd.log"
  STACK_PORT[manager]=$(cat "$d/port")
  STACK_URL=https://127.0.0.1:${STACK_PORT[manager]}
  STACK_CA=$d/ca.crt
}

stack_managerd_stop() { stack_stop_pid manager || stack_fail "vmseal-managerd did not stop cleanly"; }

# stack_login: the CLI logs in as the administrator.
stack_login() {
  vmseal --url "$STACK_URL" --ca "$STACK_CA" login administrator \
    --password-file "$STACK_DIR/manager/admin-password" >/dev/null || stack_fail "vmseal login"
}

# stack_kms_add PROVIDER KMSNAME...: a key provider whose cluster is those
# servers (in failover order); the manager trusts their CA and presents the
# client certificate enrolled on the first one; it becomes the default.
stack_kms_add() {
  local prov=$1 k servers=(); shift
  for k in "$@"; do servers+=(--server "127.0.0.1:${STACK_PORT[$k]:?kmsd $k has no port}"); done
  local first=$STACK_DIR/$1
  vmseal kms add "$prov" "${servers[@]}" >/dev/null || stack_fail "vmseal kms add $prov"
  vmseal kms trust "$prov" --ca "$first/ca.crt" >/dev/null || stack_fail "vmseal kms trust $prov"
  vmseal kms client-cert "$prov" --cert "$first/clients/manager/manager.crt" \
    --key "$first/clients/manager/manager.key" >/dev/null || stack_fail "vmseal kms client-cert $prov"
  vmseal kms default "$prov" >/dev/null || stack_fail "vmseal kms default $prov"
}

# ---- the host agent ------------------------------------------------------------------------

# stack_hostd_setup NAME [ACCEL]: a certificate from the manager CA, a
# datastore folder and hostd.conf. ACCEL: auto (probe KVM with the test
# guest, fall back to TCG), kvm or tcg (default: $STACK_ACCEL or tcg).
stack_hostd_setup() {
  local n=$1 accel=${2:-${STACK_ACCEL:-tcg}} d=$STACK_DIR/$1 m=$STACK_DIR/manager
  mkdir -p "$d/datastore" "$d/images"
  stack_images_fill "$d/images"
  "$STACK_MGRD" -c "$m" issue-host "$n" --out "$d" --host 127.0.0.1 >/dev/null 2>"$d/issue.log" ||
    { cat "$d/issue.log" >&2; stack_fail "vmseal-managerd issue-host $n"; }
  {
    echo "name = $n"
    echo "datastore = $d/datastore"
    echo "images = $d/images"
    echo "listen = 127.0.0.1"
    echo "port = 0"
    echo "cert = $d/$n.crt"
    echo "key = $d/$n.key"
    echo "ca = $d/ca.crt"
    echo "manager_fingerprint = $(cat "$d/manager.sha256")"
    echo "manager_subject = $STACK_MANAGER_SUBJECT"
    echo "manager_url = $STACK_URL"
    echo "manager_ca = $m/ca.crt"
    echo "accel = $accel"
    echo "grace_seconds = 5"
    if [ "$accel" = auto ] && [ -n "${STACK_GUEST:-}" ]; then
      echo "probe_kernel = $STACK_GUEST/vmlinuz"
      echo "probe_initrd = $STACK_GUEST/initrd.gz"
    fi
  } > "$d/hostd.conf"
}

# stack_hostd_start NAME: start, wait until it serves and the manager lists
# it (registered); a restarted host keeps its port.
stack_hostd_start() {
  local n=$1 d=$STACK_DIR/$1
  rm -f "$d/port"
  "$STACK_HOSTD" -c "$d/hostd.conf" --port "${STACK_PORT[$n]:-0}" --port-file "$d/port" \
    >>"$d/hostd.log" 2>&1 &
  STACK_PID[$n]=$!
  stack_wait_file "$d/port" "${STACK_PID[$n]}" "vmseal-hostd $n" "$d/hostd.log"
  STACK_PORT[$n]=$(cat "$d/port")
  stack_until "$STACK_TIMEOUT" stack_host_registered "$n" ||
    { tail -n 20 "$d/hostd.log" >&2; stack_fail "vmseal-hostd $n did not register with the manager"; }
}

# stack_host_registered NAME: the manager lists the host with its current URL.
stack_host_registered() {
  vmseal --json host ls | jq -e --arg n "$1" --arg u "https://127.0.0.1:${STACK_PORT[$1]}" \
    '.hosts[] | select(.name == $n and .url == $u)' >/dev/null
}

stack_hostd_stop() { stack_stop_pid "$1" || stack_fail "vmseal-hostd $1 did not stop cleanly"; }

# stack_host_api NAME METHOD PATH [JSON]: call the host agent's API as the
# manager (with its client certificate); prints the answer, then the HTTP
# status on a line of its own.
stack_host_api() {
  local m=$STACK_DIR/manager body=()
  [ $# -ge 4 ] && body=(-H 'Content-Type: application/json' -d "$4")
  curl -sS --max-time 20 --cacert "$m/ca.crt" \
    --cert "$m/$(stack_conf "$m/managerd.conf" cert server.crt)" \
    --key "$m/$(stack_conf "$m/managerd.conf" key server.key)" \
    -X "$2" "${body[@]}" -w '\n%{http_code}\n' "https://127.0.0.1:${STACK_PORT[$1]}$3"
}

# ---- VMs -------------------------------------------------------------------------------------

# stack_vm_json NAME: `vmseal --json vm info NAME` (with the host's live view).
stack_vm_json() { vmseal --json vm info "$1"; }

# stack_vm_field NAME JQ: one value of the VM's live view.
stack_vm_field() { stack_vm_json "$1" | jq -r "$2"; }

# stack_vm_home HOST VM: the VM's home folder on the host's datastore.
stack_vm_home() { echo "$STACK_DIR/$1/datastore/$2"; }

# stack_vm_wait_off NAME SECONDS: until the host reports the VM powered off.
stack_vm_is_off() {
  local p
  p=$(stack_vm_field "$1" '.runtime.power_state // .runtime.power // empty') || return 1
  [ "$p" = off ] || [ "$p" = poweredOff ] || [ "$p" = stopped ]
}
stack_vm_wait_off() { stack_until "${2:-$STACK_TIMEOUT}" stack_vm_is_off "$1"; }

# ---- cleanup ---------------------------------------------------------------------------------

# stack_cleanup: stop every daemon (host agents first), then kill the QEMUs
# the host agents started (their pids from qemu.pid, checked to be QEMU).
stack_cleanup() {
  local n pid f
  [ -n "${STACK_DIR:-}" ] || return 0
  for n in "${!STACK_PID[@]}"; do
    [ -f "$STACK_DIR/$n/hostd.conf" ] && { stack_stop_pid "$n" || STACK_UNCLEAN+=("$n"); }
  done
  for n in "${!STACK_PID[@]}"; do stack_stop_pid "$n" || STACK_UNCLEAN+=("$n"); done
  while IFS= read -r f; do
    pid=$(cat "$f" 2>/dev/null) || continue
    [[ $pid =~ ^[0-9]+$ ]] || continue
    if tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline" | grep -q "qemu-system.*$STACK_DIR"; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done < <(find "$STACK_DIR" -name qemu.pid 2>/dev/null)
  return 0
}

# ---- guests (tests/guest/build-guest.sh) -------------------------------------------------

# stack_guest: build (or reuse) the test guest; sets STACK_GUEST to the
# folder holding vmlinuz and initrd.gz.
stack_guest() {
  local src=${STACK_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
  STACK_GUEST=$("$src/tests/guest/build-guest.sh" "$STACK_BUILD/guest") || stack_fail "building the test guest"
  local h
  for h in "$STACK_DIR"/*/images; do [ -d "$h" ] && stack_images_fill "$h"; done
  return 0
}

# stack_images_fill DIR: the test guest into a host's images folder (VMs boot
# only from there; the API names the files: --kernel vmlinuz --initrd initrd.gz).
stack_images_fill() {
  [ -n "${STACK_GUEST:-}" ] || return 0
  cp -f "$STACK_GUEST/vmlinuz" "$STACK_GUEST/initrd.gz" "$1/" || stack_fail "copying the guest into $1"
}

# stack_vm_uuid NAME
stack_vm_uuid() { vmseal --json vm info "$1" | jq -r .uuid; }

# stack_vm_console NAME [OFFSET]: the guest's serial console as the manager
# shows it (vmseal vm log: sealed on the host for an encrypted VM), from byte
# OFFSET of the log on; "" if the VM has no output yet.
stack_vm_console() {
  local j
  j=$(vmseal --json vm log "$1" --tail 1048576 2>/dev/null) || return 0
  /usr/bin/python3 -c '
import json, sys
j = json.loads(sys.argv[1]); off = int(sys.argv[2])
log = j.get("log", "").encode(); total = int(j.get("bytes", len(log)))
new = total - off
sys.stdout.write((log[-new:] if 0 < new <= len(log) else (log if new > len(log) else b"")).decode(errors="replace"))
' "$j" "${2:-0}"
}

# stack_vm_console_bytes NAME: how many bytes the console log holds now.
stack_vm_console_bytes() {
  vmseal --json vm log "$1" --tail 1 2>/dev/null | jq -r '.bytes // 0' 2>/dev/null || echo 0
}

# stack_vm_console_has NAME PATTERN: the console shows PATTERN (grep -E).
stack_vm_console_has() { stack_vm_console "$1" | grep -Eaq "$2"; }

# stack_vm_boot HOST NAME [SECONDS]: power the VM on through the manager,
# wait until the guest has powered itself off, and print what it wrote to
# its serial port during this boot (read through the manager: vm log).
# Fails (status 1) if power-on fails or the guest does not finish in time.
stack_vm_boot() {
  local name=$2 secs=${3:-180} off i out
  off=$(stack_vm_console_bytes "$name")
  vmseal vm start "$name" >/dev/null || return 1
  for ((i = 0; i < secs * 2; i++)); do
    out=$(stack_vm_console "$name" "$off")
    if grep -aq 'VMSEAL-POWEROFF\|reboot: Power down' <<<"$out"; then
      stack_until 30 stack_vm_is_off "$name" || { echo "VM $name did not power off" >&2; return 1; }
      stack_vm_console "$name" "$off" | tr -d '\r' | grep -a '^VMSEAL-'
      return 0
    fi
    sleep 0.5
  done
  echo "guest $name did not finish within ${secs}s" >&2
  stack_vm_console "$name" "$off" | tail -n 20 >&2
  return 1
}

# stack_kmip KMSNAME ARGS...: vmseal-kmip against a key server of the stack,
# as the manager (its enrolled client certificate).
stack_kmip() {
  local k=$STACK_DIR/$1; shift
  "$STACK_BUILD/kmip/vmseal-kmip" --server "127.0.0.1:${STACK_PORT[${k##*/}]}" \
    --cert "$k/clients/manager/manager.crt" --key "$k/clients/manager/manager.key" --ca "$k/ca.crt" "$@"
}

# stack_kek_tags KMSNAME KEK: the vCenter-style tags (x-*) of a KEK on the
# key server, one "name = value" per line.
stack_kek_tags() {
  stack_kmip "$1" attrs "$2" | awk '
    /Attribute Name/ { n = $0; sub(/.*Data: "/, "", n); sub(/"$/, "", n); next }
    /Attribute Value/ && n ~ /^x-/ { v = $0; sub(/.*Data: "/, "", v); sub(/"$/, "", v); print n " = " v }
    { n = "" }'
}
