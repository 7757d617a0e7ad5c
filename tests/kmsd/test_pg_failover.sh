#!/usr/bin/env bash
# A key-server cluster that never loses a key: a PostgreSQL primary and a
# streaming hot standby (synchronous, synchronous_standby_names) started by
# this test on 127.0.0.1 ports, two vmseal-kmsd nodes on them (the conninfo
# lists both hosts), a Create/Get load through both nodes; kill -9 one node;
# stop the primary (immediate: a crash) and promote the standby. Every
# Create that was acknowledged is Get-able afterwards with identical bytes
# from either node: acknowledged, lost (must be 0) and refused are counted.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/pykmip_lib.sh"
source "$VMSEAL_SRC/tests/kmsd/kmsd_lib.sh"
source "$VMSEAL_SRC/tests/kmsd/pg_lib.sh"

pg_primary p1
pg_standby s1 p1
# a Create is acknowledged once the standby has it on disk too (set on the
# primary only: the promoted standby runs alone afterwards)
pg_sql p1 "ALTER SYSTEM SET synchronous_standby_names = 's1'" >/dev/null
pg_sql p1 "SELECT pg_reload_conf()" >/dev/null
for ((i = 0; i < 100; i++)); do
  [ "$(pg_sql p1 "SELECT sync_state FROM pg_stat_replication WHERE application_name='s1'")" = sync ] && break
  sleep 0.1
done
[ "$(pg_sql p1 "SELECT sync_state FROM pg_stat_replication WHERE application_name='s1'")" = sync ] \
  || fail "the standby is not a synchronous standby"
pg_conninfo "$TMP/ci" p1 s1
ok "PostgreSQL primary :${PG_PORT[p1]} and synchronous hot standby :${PG_PORT[s1]}"

A=$TMP/a B=$TMP/b
"$KMSD" init "$A" --store postgresql --conninfo-file "$TMP/ci" --node-name node-a >/dev/null || fail "init"
"$KMSD" -c "$A" enroll alice >/dev/null 2>&1 || fail "enroll"
"$KMSD" join "$B" --conninfo-file "$TMP/ci" --ca "$A/ca.crt" --ca-key "$A/ca.key" \
  --master-key-file "$A/master.key" --node-name node-b >/dev/null || fail "join"
mkdir -p "$B/clients" && cp -r "$A/clients/alice" "$B/clients/"
kmsd_start "$A"; PA=$PORT; KA=$KPID; LA=$KLOG
kmsd_start "$B"; PB=$PORT; KB=$KPID; LB=$KLOG
sleep 2.5
"$KMSD" -c "$A" cluster status > "$TMP/status" || { cat "$TMP/status"; fail "cluster status"; }
sed 's/^/  /' "$TMP/status"
grep -q "127.0.0.1:${PG_PORT[s1]} *standby" "$TMP/status" || fail "status: the standby"
grep -Eq "^  s1  127.0.0.1  streaming  sync  lag: " "$TMP/status" || fail "status: synchronous replication"
grep -Eq "^  node-a .* alive$" "$TMP/status" && grep -Eq "^  node-b .* alive$" "$TMP/status" \
  || fail "status: both nodes alive"
ok "two nodes on the cluster; cluster status shows primary, sync standby and both nodes"

# The same facts over KMIP: a Query for Server Information (what the
# manager's key-provider status shows), read by PyKMIP and decoded here.
info() { timeout 60 $PY "$KTESTS/pg_cluster_tool.py" "$A" alice server-info "$1"; }
si=$(info "$PA") || fail "Query Server Information"
echo "  node a, Server Information: $si"
jq -e --arg p "127.0.0.1:${PG_PORT[p1]}" '.vendor | startswith("vmseal vmseal-kmsd")' <<< "$si" >/dev/null \
  || fail "vendor identification"
jq -e --arg p "127.0.0.1:${PG_PORT[p1]}" '.store == "postgresql" and .node == "node-a"
    and .facts_age_ms >= 0 and .facts_age_ms < 3000
    and .database.role == "primary" and .database.address == $p and (.database.version | length > 0)
    and .database.synchronous_commit == "on" and .database.synchronous_standby_names == "s1"
    and .standbys_total == 1 and .standbys[0].name == "s1" and .standbys[0].state == "streaming"
    and .standbys[0].sync_state == "sync" and .standbys[0].replay_lag_ms >= 0 and .standbys[0].bytes_behind >= 0
    and .nodes_total == 2 and ([.nodes[] | select(.state == "alive") | .name] == ["node-a", "node-b"])
    and ([.nodes[].address] == ["127.0.0.1:'"$PA"'", "127.0.0.1:'"$PB"'"])' <<< "$si" >/dev/null \
  || fail "Server Information of node a: $si"
si=$(info "$PB") || fail "Query Server Information (node b)"
jq -e '.node == "node-b" and .database.role == "primary" and .nodes_total == 2' <<< "$si" >/dev/null \
  || fail "Server Information of node b: $si"
ok "a KMIP Query for Server Information tells the cluster: primary, synchronous standby with its lag, both nodes alive"

tool() { timeout 60 $PY "$KTESTS/pg_cluster_tool.py" "$A" alice "$@"; }
: > "$TMP/acked"
timeout 150 $PY "$KTESTS/pg_cluster_tool.py" "$A" alice load "$TMP/acked" "$TMP/stop" "$PA" "$PB" \
  > "$TMP/load.out" 2>"$TMP/load.err" &
LOADPID=$!
at_exit "touch $TMP/stop; kill $LOADPID 2>/dev/null"
sleep 3
n1=$(wc -l < "$TMP/acked")
[ "$n1" -gt 10 ] || fail "the load runs ($n1 acknowledged)"
kill -9 "$KA"
wait "$KA" 2>/dev/null || true
ok "kill -9 node a under load ($n1 Creates acknowledged so far)"
sleep 2
pg_stop p1 immediate
t_down=$(date +%s.%N)
ok "primary stopped (immediate)"
sleep 0.5
r=$(tool timed-create "$PB") || fail "timed create"
echo "  node b without a primary: $r"
[[ $r == "error "* ]] || fail "node b answered a Create without a primary"
awk '{ exit !($2 < 1.0) }' <<< "$r" || fail "node b took a second or more to answer"
ok "node b answers Operation Failed at once while there is no primary"
si=
for ((i = 0; i < 50; i++)); do
  si=$(info "$PB") || fail "Query Server Information without a primary"
  jq -e '.database.role == "unavailable"' <<< "$si" >/dev/null && break
  sleep 0.2
done
jq -e '.database.role == "unavailable" and (.database.error | test("unavailable|refused|connect"))
       and (.nodes // [] | length == 0)' <<< "$si" >/dev/null \
  || fail "Server Information without a primary: $si"
ok "without a primary node b still answers Query, its Server Information says why the database is unavailable"
pg_promote s1
t_promoted=$(date +%s.%N)
for ((i = 0; i < 100; i++)); do
  r=$(tool timed-create "$PB")
  [[ $r == "ok "* ]] && break
  sleep 0.1
done
[[ $r == "ok "* ]] || fail "node b did not reconnect to the promoted standby: $r"
t_back=$(date +%s.%N)
ok "standby promoted; node b serves again by itself $(awk -v a="$t_promoted" -v b="$t_back" 'BEGIN{printf "%.1f", b-a}') s after the promotion ($(awk -v a="$t_down" -v b="$t_back" 'BEGIN{printf "%.1f", b-a}') s without a primary)"
grep -q "connected to the primary at 127.0.0.1:${PG_PORT[s1]}" "$LB" || fail "node b logs its new primary"
for ((i = 0; i < 50; i++)); do
  si=$(info "$PB") || fail "Query Server Information after the promotion"
  jq -e '.database.role == "primary"' <<< "$si" >/dev/null && break
  sleep 0.2
done
jq -e --arg p "127.0.0.1:${PG_PORT[s1]}" '.database.role == "primary" and .database.address == $p
    and .standbys_total == 0 and (.nodes[] | select(.name == "node-b") | .state == "alive")' <<< "$si" >/dev/null \
  || fail "Server Information after the promotion: $si"
ok "after the promotion node b reports the promoted standby as its primary, with no standby"

# node a restarts on the new primary while the load goes on
kmsd_start "$A"; PA2=$PORT; KA=$KPID; LA=$KLOG
sleep 3
touch "$TMP/stop"
wait "$LOADPID" || { cat "$TMP/load.err"; fail "the load client failed"; }
read -r load_line < "$TMP/load.out"
echo "  load: $load_line"

# every acknowledged Create, from both nodes (node a on its new port)
res=$(timeout 240 $PY "$KTESTS/pg_cluster_tool.py" "$A" alice check "$TMP/acked" "$PA2" "$PB" 2>"$TMP/check.err") \
  || { cat "$TMP/check.err"; fail "check"; }
acked=$(sed -n 's/.*acknowledged=\([0-9]*\).*/\1/p' <<< "$res")
lost=$(sed -n 's/.*lost=\([0-9]*\).*/\1/p' <<< "$res")
mism=$(sed -n 's/.*mismatched=\([0-9]*\).*/\1/p' <<< "$res")
refused=$(sed -n 's/.*refused=\([0-9]*\).*/\1/p' <<< "$load_line")
echo "  acknowledged=$acked lost=$lost refused=$refused mismatched=$mism"
[ "$lost" = 0 ] && [ "$mism" = 0 ] || { head "$TMP/check.err"; fail "acknowledged keys lost or changed"; }
[ "$acked" -gt "$n1" ] || fail "Creates were acknowledged after the failover too"
[ "$(cut -d' ' -f1 "$TMP/acked" | sort -u | wc -l)" -eq "$acked" ] || fail "an id was handed out twice"
ok "failover: $acked Creates acknowledged, 0 lost, $refused refused; every key Get-able with the same bytes from both nodes"

"$KMSD" -c "$A" cluster status > "$TMP/status" || { cat "$TMP/status"; fail "cluster status after"; }
sed 's/^/  /' "$TMP/status"
grep -q "127.0.0.1:${PG_PORT[p1]} *unreachable" "$TMP/status" || fail "status: the old primary is unreachable"
grep -q "127.0.0.1:${PG_PORT[s1]} *primary" "$TMP/status" || fail "status: the promoted standby is the primary"
sleep 0.5
"$KMSD" -c "$B" audit-verify > "$TMP/verify" || { cat "$TMP/verify"; fail "audit chain after the failover"; }
sed 's/^/  /' "$TMP/verify"
ok "after the failover: cluster status names the new primary; the audit chain verifies"
KPID=$KA; KLOG=$LA; kmsd_stop
KPID=$KB; KLOG=$LB; kmsd_stop
