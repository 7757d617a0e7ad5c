#!/usr/bin/env bash
# The manager's KMIP client with a key provider of two vmseal-kmsd servers
# that share a CA, a master key and required KMIP credentials but not their
# stores (see interop_kms_cluster.c): credentials, keys found on whichever
# server holds them (never another VM's key of the same id), batched Gets,
# pooled connections, server 1 killed.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/kmsd/kmsd_lib.sh"
kmsd_init "$TMP/k1"
"$KMSD" -c "$TMP/k1" enroll manager >/dev/null 2>&1 || fail "enroll manager"
head -c 18 /dev/urandom | base64 | tr -d '\n/+=' > "$TMP/kmip.pw"
line=$("$KMSD" passwd manager < "$TMP/kmip.pw") || fail "vmseal-kmsd passwd"
printf '%s\nrequire_credential = true\n' "$line" >> "$TMP/k1/kmsd.conf"
cp -a "$TMP/k1" "$TMP/k2"      # same CA, certificates, master key; its own (empty) store
kmsd_start "$TMP/k1"; P1=$PORT; PID1=$KPID; LOG1=$KLOG
kmsd_start "$TMP/k2"; P2=$PORT
timeout 120 "$VMSEAL_BUILD/tests/managerd/interop_kms_cluster" "$TMP" "127.0.0.1:$P1" "127.0.0.1:$P2" \
  "$TMP/k1/ca.crt" "$TMP/k1/clients/manager/manager.crt" "$TMP/k1/clients/manager/manager.key" \
  "$TMP/kmip.pw" "$PID1" || { tail -20 "$LOG1" "$TMP/k2/server.log" >&2; fail "interop_kms_cluster"; }
pw=$(cat "$TMP/kmip.pw")
! grep -rqF "$pw" "$TMP/mgr.db" "$TMP/k1/audit.log" "$TMP/k2/audit.log" "$TMP/k1/server.log" "$TMP/k2/server.log" \
  || fail "the KMIP password in the manager's database or a server's log"
[ "$(stat -c %a "$TMP/mgrkms/kp/kmip.password")" = 600 ] || fail "kmip.password is not 0600"
ok "the KMIP password is only in the manager's kms/kp/kmip.password (0600)"
grep -q 'op=Get' "$TMP/k2/audit.log" || fail "server 2 served Gets"
kmsd_stop
ok "a two-server key provider through the manager's KMIP client"
