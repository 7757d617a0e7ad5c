#!/usr/bin/env bash
# End to end, a key provider that never loses a key (issue 13): two
# vmseal-kmsd nodes on one PostgreSQL store — a primary and a synchronous
# streaming standby started here on 127.0.0.1 ports — the manager with one
# key provider listing both nodes, a host agent running guests under QEMU
# (TCG), the vmseal CLI as the administrator.
#
#   node 1 killed -> a VM created encrypted, another encrypted, a shallow
#   and a deep rekey, all through node 2 (its keys have UUIDs: no clash)
#   -> node 1 back, node 2 killed, and the database's primary crashes: the
#   standby is promoted, node 1 finds it by itself -> the host agent
#   restarts and asks the manager for its KEKs -> every VM unlocks and
#   boots, and each guest reads the marker it wrote before.
#
# On the way the provider's status (vmseal kms status) shows the cluster as
# each node reports it: the primary, the standby and its lag, nodes alive
# or gone.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/pykmip_lib.sh"
source "$VMSEAL_SRC/tests/system/system_lib.sh"
source "$VMSEAL_SRC/tests/kmsd/pg_lib.sh"

UUID_RE='^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
kek_of() { vmseal --json vm info "$1" | jq -r .kek_id; }
# made_by PGNAME KEK: the node that created KEK (kmsd_objects.node)
made_by() { pg_sql "$1" "SELECT node FROM kmsd_objects WHERE uid='$2'"; }
# status: the provider's status as JSON in $ST (exit status of kms status)
status() { ST=$(vmseal --json kms status prov1); }
# jq_st FILTER: the filter holds on $ST (on failure: show it)
jq_st() { jq -e "$@" <<<"$ST" >/dev/null; }

# --- the database: a primary and a synchronous hot standby ------------------
pg_primary p1
pg_standby s1 p1
pg_sync_standby p1 s1
pg_conninfo "$TMP/db.conninfo" p1 s1
ok "PostgreSQL primary :${PG_PORT[p1]} and synchronous standby :${PG_PORT[s1]}"

# --- two key-server nodes on it, the manager, a host --------------------------
stack_kmsd_pg_setup kms1 "$TMP/db.conninfo"
stack_kmsd_pg_setup kms2 "$TMP/db.conninfo" kms1
stack_kmsd_start kms1
stack_kmsd_start kms2
stack_managerd_setup
stack_managerd_start
stack_login
stack_kms_add prov1 kms1 kms2
stack_hostd_setup esx1
stack_hostd_start esx1
both_alive() {
  status || return 1
  jq_st --arg p "127.0.0.1:${PG_PORT[p1]}" '[.servers[] | .state == "connected" and .cluster.store == "postgresql"
      and .cluster.database.role == "primary" and .cluster.database.address == $p
      and .cluster.standbys[0].name == "s1" and .cluster.standbys[0].sync_state == "sync"
      and .cluster.standbys[0].replay_lag_ms >= 0
      and ([.cluster.nodes[] | select(.state == "alive") | .name] == ["kms1", "kms2"])] == [true, true]
    and [.servers[].cluster.node] == ["kms1", "kms2"]'
}
stack_until 20 both_alive || fail "kms status does not show the cluster: $ST"
vmseal kms status prov1 | sed 's/^/  /'
ok "key provider prov1 = kms1 + kms2; its status shows the primary, the sync standby s1 and both nodes alive"

# --- before any fault ------------------------------------------------------------
expect_rc 0 vmseal vm create vm-a --host esx1 --disk 16 --encrypt \
  --kernel vmlinuz --initrd initrd.gz --append "console=ttyS0 quiet"
expect_rc 0 vmseal vm create vm-b --host esx1 --disk 16 \
  --kernel vmlinuz --initrd initrd.gz --append "console=ttyS0 quiet"
boot_mark esx1 vm-a mark-a
boot_mark esx1 vm-b mark-b
kek_a0=$(kek_of vm-a)
[[ $kek_a0 =~ $UUID_RE ]] || fail "KEK id of vm-a is not a UUID: $kek_a0"
ok "vm-a encrypted (KEK $kek_a0, made by $(made_by p1 "$kek_a0")) and plain vm-b wrote their markers"

# --- node 1 down: everything through node 2 --------------------------------------
stack_kmsd_kill kms1
expect_rc 0 vmseal vm create vm-c --host esx1 --disk 16 --encrypt \
  --kernel vmlinuz --initrd initrd.gz --append "console=ttyS0 quiet"
boot_mark esx1 vm-c mark-c
expect_rc 0 vmseal vm encrypt vm-b
kek_b1=$(kek_of vm-b)
expect_rc 0 vmseal vm rekey vm-a
kek_a1=$(kek_of vm-a)
[ "$kek_a1" != "$kek_a0" ] || fail "shallow rekey of vm-a kept its KEK"
expect_rc 0 vmseal vm rekey vm-b --deep
kek_b2=$(kek_of vm-b)
[ "$kek_b2" != "$kek_b1" ] || fail "deep rekey of vm-b kept its KEK"
kek_c=$(kek_of vm-c)
for k in "$kek_c" "$kek_b1" "$kek_a1" "$kek_b2"; do
  [[ $k =~ $UUID_RE ]] || fail "KEK id $k is not a UUID"
  [ "$(made_by p1 "$k")" = kms2 ] || fail "KEK $k was not made by kms2 (node 1 is down): $(made_by p1 "$k")"
done
[ "$(printf '%s\n' "$kek_a0" "$kek_a1" "$kek_b1" "$kek_b2" "$kek_c" | sort -u | wc -l)" = 5 ] ||
  fail "two KEKs share an id"
kms1_gone() {
  status || true
  jq_st '(.servers[0].reachable | not) and .servers[1].state == "connected"
    and (.servers[1].cluster.nodes[] | select(.name == "kms1") | .state == "gone")
    and (.servers[1].cluster.nodes[] | select(.name == "kms2") | .state == "alive")'
}
stack_until 20 kms1_gone || fail "kms status with node 1 down: $ST"
ok "node 1 killed: vm-c created encrypted, vm-b encrypted, vm-a shallow and vm-b deep rekeyed, all 4 KEKs made by kms2; status: kms1 gone"

# --- node 1 back, node 2 down, the database fails over ----------------------------
stack_kmsd_start kms1
stack_kmsd_kill kms2
pg_stop p1 immediate
pg_promote s1
on_new_primary() {
  status || return 1
  jq_st --arg p "127.0.0.1:${PG_PORT[s1]}" '.servers[0].state == "connected"
    and .servers[0].cluster.database.role == "primary" and .servers[0].cluster.database.address == $p
    and .servers[0].cluster.standbys_total == 0 and (.servers[1].reachable | not)'
}
stack_until 30 on_new_primary || fail "node 1 is not serving on the promoted standby: $ST"
vmseal kms status prov1 | sed 's/^/  /'
ok "node 1 back, node 2 killed, primary crashed and standby promoted: node 1 serves on the new primary"

# --- the host agent restarts: it asks the manager for every KEK --------------------
stack_hostd_stop esx1
stack_hostd_start esx1
all_unlocked() { vm_unlocked vm-a && vm_unlocked vm-b && vm_unlocked vm-c; }
stack_until 60 all_unlocked ||
  fail "not every VM unlocked after the host restart: vm-a $(vm_locked vm-a) vm-b $(vm_locked vm-b) vm-c $(vm_locked vm-c)"
for k in "$kek_a1" "$kek_b2" "$kek_c"; do
  n=$(pg_sql s1 "SELECT count(*) FROM kmsd_audit WHERE line LIKE '% node=kms1 %' AND line LIKE '%op=Get uid=\"$k\"%result=Success%'")
  [ "$n" -ge 1 ] || fail "no Get of KEK $k by node 1 in the audit chain"
done
ok "host restarted: vm-a, vm-b and vm-c unlocked with the KEKs node 2 made, fetched through node 1"
boot_check esx1 vm-a mark-a
boot_check esx1 vm-b mark-b
boot_check esx1 vm-c mark-c
ok "every VM boots and its guest reads the marker it wrote (vm-b across its encryption and deep rekey)"
finish
