#!/usr/bin/env bash
# vmseal-kmsd on a PostgreSQL store, against a real PostgreSQL server that
# this test starts on a 127.0.0.1 port: the store's own tests, init and join
# (a wrong master key refused with nothing touched), two nodes driven by
# PyKMIP (the interop checks of test_pykmip, grants, ids that never collide,
# Gets across nodes), the audit chain in the database (two writers,
# tampering found), the database going away (errors within a second, back
# by itself), a SQLite store imported with its ids, cluster status.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/pykmip_lib.sh"
source "$VMSEAL_SRC/tests/kmsd/kmsd_lib.sh"
source "$VMSEAL_SRC/tests/kmsd/pg_lib.sh"

pg_primary p1
pg_conninfo "$TMP/ci" p1
ok "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:${PG_PORT[p1]}"

# ---- the store layer ----------------------------------------------------------
VMSEAL_TEST_PG_CONNINFO=$TMP/ci timeout 120 "$VMSEAL_BUILD/tests/kmsd/test_store_pg" \
  >"$TMP/unit.log" 2>&1 || { cat "$TMP/unit.log"; fail "test_store_pg"; }
grep -q "PASSED.*7 test" "$TMP/unit.log" || { cat "$TMP/unit.log"; fail "store tests did not all run"; }
ok "store: schema, UUIDs, attributes, locate, grants, row locks and audit chain of two nodes, import"
pg_sql p1 "DROP SCHEMA public CASCADE; CREATE SCHEMA public" >/dev/null 2>&1 || fail "reset the database"

# ---- init and join ------------------------------------------------------------
cp "$TMP/ci" "$TMP/ci-open"
chmod 644 "$TMP/ci-open"
if "$KMSD" init "$TMP/x" --store postgresql --conninfo-file "$TMP/ci-open" 2>"$TMP/err"; then
  fail "a group/world-readable conninfo file was accepted"
fi
grep -q "group/world accessible" "$TMP/err" || { cat "$TMP/err"; fail "reason for the conninfo refusal"; }
ok "a conninfo file others can read is refused"

A=$TMP/a B=$TMP/b
"$KMSD" init "$A" --store postgresql --conninfo-file "$TMP/ci" --node-name node-a >/dev/null \
  || fail "init --store postgresql"
[ ! -e "$A/kmsd.db" ] || fail "a SQLite file was made"
grep -q "^store = postgresql$" "$A/kmsd.conf" || fail "store in kmsd.conf"
grep -q "^database_conninfo_file = $TMP/ci$" "$A/kmsd.conf" || fail "conninfo file in kmsd.conf"
"$KMSD" -c "$A" enroll alice >/dev/null 2>&1 || fail "enroll alice"
"$KMSD" -c "$A" enroll bob >/dev/null 2>&1 || fail "enroll bob"
if "$KMSD" init "$TMP/a2" --store postgresql --conninfo-file "$TMP/ci" 2>"$TMP/err" >/dev/null; then
  fail "a second init on the same database"
fi
grep -q "holds a vmseal-kmsd store already" "$TMP/err" || { cat "$TMP/err"; fail "reason of the second init"; }
[ ! -e "$TMP/a2" ] || fail "the refused init made files"
ok "init makes the store in PostgreSQL; a second init on it is refused before anything is made"

state() { pg_sql p1 "SELECT (SELECT count(*) FROM kmsd_objects), (SELECT count(*) FROM kmsd_nodes), (SELECT seq FROM kmsd_audit_head), (SELECT md5(string_agg(encode(v, 'hex'), ',' ORDER BY k)) FROM kmsd_meta)"; }
before=$(state)
"$KMSD" init "$TMP/other" >/dev/null || fail "init of another setup"
if "$KMSD" join "$B" --conninfo-file "$TMP/ci" --ca "$A/ca.crt" --ca-key "$A/ca.key" \
    --master-key-file "$TMP/other/master.key" --node-name node-b >/dev/null 2>"$TMP/err"; then
  fail "join with another master key"
fi
grep -q "does not open the cluster's store" "$TMP/err" || { cat "$TMP/err"; fail "reason of the join refusal"; }
[ ! -e "$B" ] || fail "the refused join made $B"
[ "$(state)" = "$before" ] || fail "the refused join changed the database"
ok "join with a wrong master key: refused, no file made, the database untouched"
"$KMSD" join "$B" --conninfo-file "$TMP/ci" --ca "$A/ca.crt" --ca-key "$A/ca.key" \
  --master-key-file "$A/master.key" --node-name node-b >/dev/null || fail "join"
cmp -s <(tr -d '\n' < "$A/master.key") <(tr -d '\n' < "$B/master.key") || fail "master key copied"
[ "$(stat -c %a "$B/master.key")" = 600 ] || fail "master key copy 0600"
openssl verify -CAfile "$A/ca.crt" "$B/server.crt" >/dev/null || fail "node b's certificate from the cluster CA"
ok "join: same master key, a server certificate from the cluster's CA"
# `init --join` is the same command (--store postgresql may be given as for the first node)
if "$KMSD" init --join "$TMP/j2" --store postgresql --conninfo-file "$TMP/ci" --ca "$A/ca.crt" \
    --ca-key "$A/ca.key" --master-key-file "$TMP/other/master.key" >/dev/null 2>"$TMP/err"; then
  fail "init --join with another master key"
fi
grep -q "does not open the cluster's store" "$TMP/err" || { cat "$TMP/err"; fail "reason of the init --join refusal"; }
[ ! -e "$TMP/j2" ] || fail "the refused init --join made files"
rc=0; "$KMSD" init "$TMP/j2" --join --store sqlite --conninfo-file "$TMP/ci" --ca "$A/ca.crt" --ca-key "$A/ca.key" \
  --master-key-file "$A/master.key" >/dev/null 2>"$TMP/err" || rc=$?
[ "$rc" = 2 ] && grep -q "joins a cluster on PostgreSQL" "$TMP/err" || { cat "$TMP/err"; fail "init --join --store sqlite"; }
"$KMSD" init --join "$TMP/j2" --store=postgresql --conninfo-file "$TMP/ci" --ca "$A/ca.crt" --ca-key "$A/ca.key" \
  --master-key-file "$A/master.key" --node-name node-j >"$TMP/out" || fail "init --join"
grep -q "joins the cluster's store" "$TMP/out" || fail "init --join output"
grep -q '^store *= *postgresql' "$TMP/j2/kmsd.conf" && grep -q '^node_name *= *node-j' "$TMP/j2/kmsd.conf" \
  || { cat "$TMP/j2/kmsd.conf"; fail "init --join kmsd.conf"; }
cmp -s <(tr -d '\n' < "$A/master.key") <(tr -d '\n' < "$TMP/j2/master.key") || fail "init --join: master key"
[ "$(state)" = "$before" ] || fail "init --join changed the database"
ok "init --join = join: same checks, same result; --store sqlite refused"

# a node whose master key does not match refuses to start
mkdir -p "$TMP/c"
cp "$B/kmsd.conf" "$B/server.crt" "$B/server.key" "$B/ca.crt" "$TMP/c/"
cp "$TMP/other/master.key" "$TMP/c/master.key"
if timeout 30 "$KMSD" -c "$TMP/c" serve --listen 127.0.0.1 --port 0 >"$TMP/c.log" 2>&1; then
  fail "a node with a wrong master key served"
fi
grep -q "is not the one this store was created with" "$TMP/c.log" || { cat "$TMP/c.log"; fail "reason"; }
[ "$(state)" = "$before" ] || fail "the refused node changed the database"
ok "serve with a wrong master key: refused at start, nothing written"

# ---- two nodes, PyKMIP ------------------------------------------------------------
kmsd_start "$A"; PA=$PORT; KA=$KPID; LA=$KLOG
kmsd_start "$B"; PB=$PORT; KB=$KPID; LB=$KLOG
out=$(timeout 120 $PY "$KTESTS/pykmip_client.py" "$A" "$PA") || { echo "$out"; tail "$LA"; fail "PyKMIP client run"; }
ruid=$(echo "$out" | sed -n 's/^RUID //p')
[[ $ruid =~ ^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$ ]] || fail "registered uid is a UUID ($ruid)"
ok "PyKMIP interop checks against a PostgreSQL-backed node ($(echo "$out" | grep -c '^ok') checks)"

bob_get() {  # PORT: bob's Get of ruid through that node
  timeout 60 $PY - "$A" "$1" "$ruid" <<'PY'
import sys
from kmip.pie import client, exceptions
d, port, uid = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = client.ProxyKmipClient(hostname='127.0.0.1', port=port, cert=f'{d}/clients/bob/bob.crt',
                           key=f'{d}/clients/bob/bob.key', ca=f'{d}/ca.crt', config_file='/dev/null')
c.open()
try:
    print(len(c.get(uid).value))
except exceptions.KmipOperationFailure as e:
    print(e.reason.name)
c.close()
PY
}
[ "$(bob_get "$PB")" = PERMISSION_DENIED ] || fail "bob denied on node b before the grant"
"$KMSD" -c "$B" grant "$ruid" "CN=bob,O=vmseal" >/dev/null || fail "grant through node b's configuration"
"$KMSD" -c "$A" grants | grep -q "^$ruid	CN=bob,O=vmseal$" || fail "node a lists the grant"
[ "$(bob_get "$PA")" = 32 ] || fail "bob may read through node a after the grant"
"$KMSD" -c "$A" revoke-access "$ruid" "CN=bob,O=vmseal" >/dev/null || fail "revoke-access"
[ "$(bob_get "$PB")" = PERMISSION_DENIED ] || fail "bob denied on node b after revoke-access"
ok "grants made on one node hold on the other"

# ids from two nodes never collide: 4 creators, 2 per node, at once
tool() { timeout 120 $PY "$KTESTS/kmsd_tool.py" "$A" "$1" alice "${@:2}"; }
pids=()
for i in 1 2 3 4; do
  port=$PA; [ $((i % 2)) -eq 0 ] && port=$PB
  tool "$port" create-get 25 > "$TMP/par.$i" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent creator failed"; done
cat "$TMP"/par.* > "$TMP/par"
[ "$(wc -l < "$TMP/par")" -eq 100 ] || fail "100 creates"
[ "$(cut -d' ' -f1 "$TMP/par" | sort -u | wc -l)" -eq 100 ] || fail "100 distinct identifiers"
cut -d' ' -f1 "$TMP/par" | grep -Evq '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' \
  && fail "an identifier is not a UUID"
tool "$PB" get $(cut -d' ' -f1 "$TMP/par.1") > "$TMP/got.1" || fail "get node a's keys from node b"
tool "$PA" get $(cut -d' ' -f1 "$TMP/par.2") > "$TMP/got.2" || fail "get node b's keys from node a"
diff "$TMP/par.1" "$TMP/got.1" >/dev/null && diff "$TMP/par.2" "$TMP/got.2" >/dev/null \
  || fail "keys differ between nodes"
ok "100 concurrent Creates on two nodes: 100 distinct UUIDs, each Get-able with the same bytes from the other node"

# ---- the audit chain in the database -------------------------------------------------
sleep 0.5   # the last records are appended in the background
out=$("$KMSD" -c "$B" audit-verify) || { echo "$out"; fail "audit-verify"; }
echo "$out" | sed 's/^/  /'
n=$(echo "$out" | sed -n 's/.*: \([0-9]*\) records, chain intact/\1/p')
[ "${n:-0}" -ge 200 ] || fail "audit records of both nodes ($n)"
[ "$(pg_sql p1 "SELECT count(DISTINCT node) FROM kmsd_audit")" = 2 ] || fail "records from both nodes"
[ "$(pg_sql p1 "SELECT count(*) > 0 FROM kmsd_audit WHERE line ~ ' audit node=node-b peer=127\.0\.0\.1:[0-9]+ identity=\"CN=alice,O=vmseal\" op=Create uid=\"[0-9a-f-]{36}\" result=Success seq=[0-9]+ prev=[0-9a-f]{64} hash=[0-9a-f]{64}$'")" = t ] \
  || fail "audit line format"
for k in $(cut -d' ' -f2 "$TMP/par"); do echo "$k"; done > "$TMP/keyhex"
pg_sql p1 "SELECT lower(line) FROM kmsd_audit" > "$TMP/audit-lines"
if grep -qiFf "$TMP/keyhex" "$TMP/audit-lines"; then fail "key bytes in the audit chain"; fi
orig=$(pg_sql p1 "SELECT line FROM kmsd_audit WHERE seq=7")
pg_sql p1 "UPDATE kmsd_audit SET line=replace(line, 'result=Success', 'result=Failed') WHERE seq=7" >/dev/null
if "$KMSD" -c "$A" audit-verify > "$TMP/verify" 2>&1; then fail "an edited record verified"; fi
grep -q "record 7 (line 7): hash mismatch" "$TMP/verify" || { cat "$TMP/verify"; fail "the edited record is named"; }
pg_sql p1 "UPDATE kmsd_audit SET line=\$q\$$orig\$q\$ WHERE seq=7" >/dev/null
"$KMSD" -c "$A" audit-verify >/dev/null || fail "restored record"
last=$(pg_sql p1 "SELECT max(seq) FROM kmsd_audit")
pg_sql p1 "CREATE TABLE cut AS SELECT * FROM kmsd_audit WHERE seq=$last; DELETE FROM kmsd_audit WHERE seq=$last" >/dev/null
if "$KMSD" -c "$A" audit-verify > "$TMP/verify" 2>&1; then fail "a cut tail verified"; fi
grep -q "records deleted from the end" "$TMP/verify" || { cat "$TMP/verify"; fail "the cut tail is named"; }
pg_sql p1 "INSERT INTO kmsd_audit SELECT * FROM cut; DROP TABLE cut" >/dev/null
ok "audit chain of both nodes in the database: verifies; an edited record and a cut tail are found"

# ---- the database goes away --------------------------------------------------------------
pg_stop p1 immediate
for port in "$PA" "$PB"; do
  r=$(timeout 30 $PY "$KTESTS/pg_cluster_tool.py" "$A" alice timed-create "$port") || fail "timed create"
  echo "  database down, node port $port: $r"
  [[ $r == "error "* ]] || fail "a Create was answered without its database"
  echo "$r" | grep -q "OPERATION_FAILED GENERAL_FAILURE: .*database" || fail "Operation Failed naming the database"
  awk '{ exit !($2 < 1.0) }' <<< "$r" || fail "the error took a second or more"
done
kill -0 "$KA" && kill -0 "$KB" || fail "a node died without its database"
ok "database down: both nodes answer Operation Failed within a second"
pg_start p1
for ((i = 0; i < 50; i++)); do
  r=$(timeout 30 $PY "$KTESTS/pg_cluster_tool.py" "$A" alice timed-create "$PA")
  [[ $r == "ok "* ]] && break
  sleep 0.2
done
[[ $r == "ok "* ]] || fail "node a did not come back with its database: $r"
grep -q "database unavailable" "$LA" || fail "the outage is logged"
grep -q "available again" "$LA" || fail "the return is logged"
ok "database back: the nodes reconnect by themselves"

# ---- backup/restore are PostgreSQL's ---------------------------------------------------------
if "$KMSD" -c "$A" backup "$TMP/bk" 2>"$TMP/err"; then fail "backup of a PostgreSQL store"; fi
grep -q "pg_dump" "$TMP/err" || fail "backup names PostgreSQL's tools"

# ---- a SQLite store imported with its ids -------------------------------------------------------
O=$TMP/old
mkdir -p "$O"
cp "$A/server.crt" "$A/server.key" "$A/ca.crt" "$O/"
mkdir -p "$O/clients"
cp -r "$A/clients/alice" "$O/clients/"
cp "$A/ca.crt" "$O/"
(umask 077; cat > "$O/kmsd.conf" <<EOC
cert = server.crt
key = server.key
ca = ca.crt
database = kmsd.db
master_key_file = $A/master.key
audit_log = audit.log
EOC
)
kmsd_start "$O"; PO=$PORT; KO=$KPID
timeout 60 $PY "$KTESTS/kmsd_tool.py" "$O" "$PO" alice create-get 3 > "$TMP/old-keys" || fail "keys on the SQLite node"
[ "$(cut -d' ' -f1 "$TMP/old-keys" | tr '\n' ' ')" = "1 2 3 " ] || fail "the SQLite node hands out 1, 2, 3"
if "$KMSD" -c "$A" import-sqlite "$O/kmsd.db" 2>"$TMP/err"; then fail "import while its server runs"; fi
grep -q "stop the server" "$TMP/err" || { cat "$TMP/err"; fail "reason of the import refusal"; }
KPID=$KO; KLOG=$O/server.log; kmsd_stop
"$KMSD" -c "$A" import-sqlite "$O/kmsd.db" | grep -q "^vmseal-kmsd: 3 objects" || fail "import-sqlite"
tool "$PB" get 1 2 3 > "$TMP/old-got" || fail "get the imported ids through node b"
diff "$TMP/old-keys" "$TMP/old-got" >/dev/null || fail "imported keys changed"
tool "$PA" get 2 | diff - <(sed -n 2p "$TMP/old-keys") >/dev/null || fail "imported key through node a"
if "$KMSD" -c "$A" import-sqlite "$O/kmsd.db" 2>"$TMP/err"; then fail "a second import"; fi
grep -q "exists already" "$TMP/err" || { cat "$TMP/err"; fail "reason of the second import refusal"; }
new=$(tool "$PA" create 1)
[[ $new =~ ^[0-9a-f]{8}- ]] || fail "new objects still get UUIDs ($new)"
ok "a SQLite store imported: its ids 1, 2, 3 still served, same bytes, from both nodes"

# ---- cluster status ---------------------------------------------------------------------------------
sleep 2.5
"$KMSD" -c "$A" cluster status > "$TMP/status" || { cat "$TMP/status"; fail "cluster status"; }
sed 's/^/  /' "$TMP/status"
grep -q "127.0.0.1:${PG_PORT[p1]} *primary" "$TMP/status" || fail "status: the primary"
grep -Eq "^  node-a  127.0.0.1:$PA .* alive$" "$TMP/status" || fail "status: node a alive"
grep -Eq "^  node-b  127.0.0.1:$PB .* alive$" "$TMP/status" || fail "status: node b alive"
KPID=$KB; KLOG=$LB; kmsd_stop
"$KMSD" -c "$A" cluster status > "$TMP/status" || fail "cluster status"
grep -Eq "^  node-b .* stopped$" "$TMP/status" || { cat "$TMP/status"; fail "status: node b stopped"; }
ok "cluster status: the primary, both nodes alive, then node b stopped"
KPID=$KA; KLOG=$LA; kmsd_stop
"$KMSD" -c "$A" audit-verify >/dev/null || fail "the chain after both nodes stopped"
ok "clean stops; the audit chain verifies"
