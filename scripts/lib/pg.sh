# scripts/lib/pg.sh — PostgreSQL servers on 127.0.0.1 for vmseal-kmsd
# clusters (docs/kmsd.md, "A cluster on PostgreSQL"): real postgres
# processes in a scratch folder, run as the postgres user when the caller
# is root. Sourced by tests/kmsd/pg_lib.sh (the tests) and scripts/demo.
#
#   pg_init ROOT               the servers live in ROOT/pg-NAME (ROOT made 0755 when
#                              root runs this; its parents must let postgres through)
#   pg_primary NAME            initdb + start a primary (sets PG_PORT[NAME]);
#                              database kmsd, user vmseal, trust on 127.0.0.1
#   pg_standby NAME PRIMARY    pg_basebackup -R from PRIMARY + start a hot standby
#                              (cluster_name = NAME for synchronous_standby_names)
#   pg_sync_standby PRIMARY STANDBY   make STANDBY the synchronous standby
#   pg_start NAME / pg_stop NAME [MODE] / pg_promote NAME
#   pg_sql NAME SQL...         psql -tA on database kmsd as user vmseal
#   pg_conninfo FILE NAME...   a 0600 conninfo file listing the servers NAME...
#
# Callers may redefine pg_fail MSG (default: message, exit 1) and
# pg_at_exit CMD (default: nothing; register CMD to run at exit — the
# servers are stopped with `pg_stop NAME immediate`).

pg_fail() { printf 'pg: %s\n' "$*" >&2; exit 1; }
pg_at_exit() { :; }

declare -A PG_PORT PG_OPTS
PGAS=()

pg_init() {
  PG_ROOT=$1
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -x "$PGBIN/initdb" ] || pg_fail "PostgreSQL server binaries not found (scripts/deps installs postgresql)"
  PGAS=()
  if [ "$(id -u)" -eq 0 ]; then
    chmod 755 "$PG_ROOT"
    PGAS=(runuser -u postgres --)
    "${PGAS[@]}" test -x "$PG_ROOT" ||
      pg_fail "the postgres user cannot reach $PG_ROOT (make its parent folders searchable)"
  fi
}

_pg_dir() { echo "$PG_ROOT/pg-$1"; }

_pg_free_port() {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# pg_start NAME: start the server of NAME (its port and options kept by pg_primary/pg_standby)
pg_start() {
  local d; d=$(_pg_dir "$1")
  "${PGAS[@]}" "$PGBIN/pg_ctl" -D "$d/data" -l "$d/server.log" -w -t 60 \
    -o "-p ${PG_PORT[$1]} -k $d ${PG_OPTS[$1]}" start >/dev/null \
    || { tail -20 "$d/server.log" >&2; pg_fail "pg_ctl start $1"; }
}

# pg_stop NAME [MODE]: fast by default; immediate = a crash (no shutdown checkpoint)
pg_stop() {
  local d; d=$(_pg_dir "$1")
  "${PGAS[@]}" "$PGBIN/pg_ctl" -D "$d/data" -m "${2:-fast}" -w -t 60 stop >/dev/null 2>&1 || true
}

pg_promote() {
  local d; d=$(_pg_dir "$1")
  "${PGAS[@]}" "$PGBIN/pg_ctl" -D "$d/data" -w -t 60 promote >/dev/null || pg_fail "pg_ctl promote $1"
}

pg_sql() {
  local n=$1; shift
  "$PGBIN/psql" -X -q -tA -h 127.0.0.1 -p "${PG_PORT[$n]}" -U vmseal -d kmsd -c "$*"
}

pg_primary() {
  local n=$1 d; d=$(_pg_dir "$1")
  mkdir -p "$d"
  [ ${#PGAS[@]} -eq 0 ] || chown postgres "$d"
  PG_PORT[$n]=$(_pg_free_port)
  PG_OPTS[$n]="-c listen_addresses=127.0.0.1 -c fsync=off -c cluster_name=$n"
  "${PGAS[@]}" "$PGBIN/initdb" -D "$d/data" -A trust -U vmseal --no-sync >"$d/initdb.log" 2>&1 \
    || { cat "$d/initdb.log" >&2; pg_fail "initdb $n"; }
  cat >> "$d/data/postgresql.conf" <<EOC
wal_level = replica
max_wal_senders = 8
hot_standby = on
wal_keep_size = 64MB
EOC
  echo "host replication all 127.0.0.1/32 trust" >> "$d/data/pg_hba.conf"
  pg_start "$n"
  pg_at_exit "pg_stop $n immediate"
  "$PGBIN/createdb" -h 127.0.0.1 -p "${PG_PORT[$n]}" -U vmseal kmsd || pg_fail "createdb"
}

pg_standby() {
  local n=$1 p=$2 d; d=$(_pg_dir "$1")
  mkdir -p "$d"
  [ ${#PGAS[@]} -eq 0 ] || chown postgres "$d"
  PG_PORT[$n]=$(_pg_free_port)
  PG_OPTS[$n]="-c listen_addresses=127.0.0.1 -c fsync=off -c cluster_name=$n"
  "${PGAS[@]}" "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "${PG_PORT[$p]}" -U vmseal -D "$d/data" \
    -R -X stream -c fast >"$d/basebackup.log" 2>&1 || { cat "$d/basebackup.log" >&2; pg_fail "pg_basebackup $n"; }
  pg_start "$n"
  pg_at_exit "pg_stop $n immediate"
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
  pg_fail "$sb is not a synchronous standby of $p"
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
