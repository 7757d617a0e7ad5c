# PostgreSQL servers for kmsd tests (source after tests/testlib.sh and
# tests/pykmip_lib.sh): real postgres processes in $TMP on 127.0.0.1 ports,
# run as the postgres user when the test runs as root, stopped at exit.
#
#   pg_primary NAME            initdb + start a primary (sets PGPORT_<NAME>)
#   pg_standby NAME PRIMARY    pg_basebackup -R from PRIMARY + start a hot standby
#                              (application_name = NAME for synchronous_standby_names)
#   pg_start NAME / pg_stop NAME [MODE] / pg_promote NAME
#   pg_sql NAME SQL...         psql -tA on database kmsd as user vmseal
#   pg_sync_standby PRIMARY STANDBY   make STANDBY the synchronous standby

PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || fail "PostgreSQL server binaries not found (scripts/deps installs postgresql)"
PGAS=()
if [ "$(id -u)" -eq 0 ]; then
  chmod 755 "$TMP"
  PGAS=(runuser -u postgres --)
fi
declare -A PG_PORT PG_OPTS

_pg_dir() { echo "$TMP/pg-$1"; }

# pg_start NAME: start the server of NAME (its port and options kept by pg_primary/pg_standby)
pg_start() {
  local d; d=$(_pg_dir "$1")
  "${PGAS[@]}" "$PGBIN/pg_ctl" -D "$d/data" -l "$d/server.log" -w -t 60 \
    -o "-p ${PG_PORT[$1]} -k $d ${PG_OPTS[$1]}" start >/dev/null \
    || { tail -20 "$d/server.log" >&2; fail "pg_ctl start $1"; }
}

# pg_stop NAME [MODE]: fast by default; immediate = a crash (no shutdown checkpoint)
pg_stop() {
  local d; d=$(_pg_dir "$1")
  "${PGAS[@]}" "$PGBIN/pg_ctl" -D "$d/data" -m "${2:-fast}" -w -t 60 stop >/dev/null 2>&1 || true
}

pg_promote() {
  local d; d=$(_pg_dir "$1")
  "${PGAS[@]}" "$PGBIN/pg_ctl" -D "$d/data" -w -t 60 promote >/dev/null || fail "pg_ctl promote $1"
}

pg_sql() {
  local n=$1; shift
  "$PGBIN/psql" -X -q -tA -h 127.0.0.1 -p "${PG_PORT[$n]}" -U vmseal -d kmsd -c "$*"
}

pg_primary() {
  local n=$1 d; d=$(_pg_dir "$1")
  mkdir -p "$d"
  [ ${#PGAS[@]} -eq 0 ] || chown postgres "$d"
  PG_PORT[$n]=$(free_port)
  PG_OPTS[$n]="-c listen_addresses=127.0.0.1 -c fsync=off -c cluster_name=$n"
  "${PGAS[@]}" "$PGBIN/initdb" -D "$d/data" -A trust -U vmseal --no-sync >"$d/initdb.log" 2>&1 \
    || { cat "$d/initdb.log" >&2; fail "initdb $n"; }
  cat >> "$d/data/postgresql.conf" <<EOC
wal_level = replica
max_wal_senders = 8
hot_standby = on
wal_keep_size = 64MB
EOC
  echo "host replication all 127.0.0.1/32 trust" >> "$d/data/pg_hba.conf"
  pg_start "$n"
  at_exit "pg_stop $n immediate"
  "$PGBIN/createdb" -h 127.0.0.1 -p "${PG_PORT[$n]}" -U vmseal kmsd || fail "createdb"
}

pg_standby() {
  local n=$1 p=$2 d; d=$(_pg_dir "$1")
  mkdir -p "$d"
  [ ${#PGAS[@]} -eq 0 ] || chown postgres "$d"
  PG_PORT[$n]=$(free_port)
  PG_OPTS[$n]="-c listen_addresses=127.0.0.1 -c fsync=off -c cluster_name=$n"
  "${PGAS[@]}" "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "${PG_PORT[$p]}" -U vmseal -D "$d/data" \
    -R -X stream -c fast >"$d/basebackup.log" 2>&1 || { cat "$d/basebackup.log" >&2; fail "pg_basebackup $n"; }
  pg_start "$n"
  at_exit "pg_stop $n immediate"
}

# pg_sync_standby PRIMARY STANDBY: a Create is acknowledged once STANDBY has
# it on disk too (set on the primary only: a promoted standby runs alone);
# waits until the primary reports STANDBY as sync.
pg_sync_standby() {
  local p=$1 sb=$2 i q
  q="SELECT sync_state FROM pg_stat_replication WHERE application_name='$sb'"
  pg_sql "$p" "ALTER SYSTEM SET synchronous_standby_names = '$sb'" >/dev/null
  pg_sql "$p" "SELECT pg_reload_conf()" >/dev/null
  for ((i = 0; i < 100; i++)); do
    [ "$(pg_sql "$p" "$q")" = sync ] && return 0
    sleep 0.1
  done
  fail "$sb is not a synchronous standby of $p"
}

# pg_conninfo FILE NAME...: a 0600 conninfo file listing the servers NAME...
pg_conninfo() {
  local f=$1 hosts="" ports="" n; shift
  for n in "$@"; do
    hosts+="${hosts:+,}127.0.0.1"
    ports+="${ports:+,}${PG_PORT[$n]}"
  done
  (umask 077; printf '# the cluster database\nhost=%s port=%s\ndbname=kmsd user=vmseal\n' \
    "$hosts" "$ports" > "$f")
}
