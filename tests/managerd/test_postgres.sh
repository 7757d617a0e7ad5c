#!/usr/bin/env bash
# The manager's PostgreSQL backend against a real PostgreSQL server that this
# test starts (initdb/pg_ctl in a temp folder, as the postgres user when run
# as root): the store unit tests, then vmseal-managerd with a postgresql://
# conninfo driven by the CLI, across a manager restart and a database outage.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/managerd/managerd_lib.sh"

PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || fail "PostgreSQL server binaries not found (scripts/deps installs postgresql)"
PGD=$TMP/pg
mkdir -p "$PGD/sock"
AS=()
if [ "$(id -u)" -eq 0 ]; then
  chmod 755 "$TMP"
  chown -R postgres "$PGD"
  AS=(runuser -u postgres --)
fi
PGPORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${AS[@]}" "$PGBIN/initdb" -D "$PGD/data" -A trust -U vmseal --no-sync >"$TMP/initdb.log" 2>&1 \
  || { cat "$TMP/initdb.log"; fail "initdb"; }
pg_up() {
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$PGD/data" -l "$PGD/server.log" -w -t 30 \
    -o "-k $PGD/sock -c listen_addresses='' -p $PGPORT -c fsync=off" start >/dev/null \
    || { cat "$PGD/server.log"; fail "pg_ctl start"; }
}
pg_down() { "${AS[@]}" "$PGBIN/pg_ctl" -D "$PGD/data" -m immediate -w stop >/dev/null 2>&1 || true; }
pg_up
at_exit pg_down
"$PGBIN/createdb" -h "$PGD/sock" -p "$PGPORT" -U vmseal vmseal || fail "createdb"
URI="postgresql:///vmseal?host=$PGD/sock&port=$PGPORT&user=vmseal"
ok "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') running on $PGD/sock"

VMSEAL_TEST_PG=$URI "$VMSEAL_BUILD/tests/managerd/test_mgr_store" >"$TMP/unit.log" 2>&1 \
  || { cat "$TMP/unit.log"; fail "store unit tests on PostgreSQL"; }
grep -q "PASSED.*9 test" "$TMP/unit.log" || { cat "$TMP/unit.log"; fail "store unit tests did not all run"; }
ok "store, users, sessions, events and task journal unit tests pass on PostgreSQL"

# a clean database for the manager
"$PGBIN/psql" -q -h "$PGD/sock" -p "$PGPORT" -U vmseal vmseal -c 'DROP SCHEMA public CASCADE; CREATE SCHEMA public' \
  >/dev/null 2>&1 || fail "reset the database"
export HOME=$TMP/home
mkdir -p "$HOME"
M=$TMP/m
mgr_init "$M" --database "$URI"
grep -q "^database = postgresql://" "$M/managerd.conf" || fail "conninfo in managerd.conf"
[ ! -e "$M/managerd.db" ] || fail "a SQLite file was made"
mgr_start "$M"
grep -q "database: postgresql" "$MLOG" || fail "backend not reported"
expect_rc 0 "$VMSEAL" --url "$MURL" --ca "$M/ca.crt" login --password-file "$M/admin-password"
printf 'carolpassword\n' > "$TMP/pw"
expect_rc 0 "$VMSEAL" user add carol --role ReadOnly --password-file "$TMP/pw"
expect_rc 0 "$VMSEAL" kms add kp --server kms1.example:5696 --server kms2.example:5696
expect_rc 0 "$VMSEAL" kms servers kp --server kms2.example:5696 --server kms1.example:5696
n=$("$PGBIN/psql" -tA -h "$PGD/sock" -p "$PGPORT" -U vmseal vmseal -c "SELECT COUNT(*) FROM users")
[ "$n" = 2 ] || fail "users live in PostgreSQL ($n)"
ok "manager on PostgreSQL: login, users, key providers"

mgr_stop
mgr_start "$M" "$MPORT"
expect_rc 0 "$VMSEAL" --json kms ls
echo "$OUT" | $PY -c 'import json,sys; p=json.load(sys.stdin)["providers"][0]; assert p["servers"]==["kms2.example:5696","kms1.example:5696"], p' \
  || fail "providers after a restart: $OUT"
expect_rc 0 "$VMSEAL" --json events --since 0
echo "$OUT" | $PY -c '
import json,sys
ev=json.load(sys.stdin)
u=[e for e in ev if e["action"]=="kms.update"][0]
assert u["old"]["servers"]==["kms1.example:5696","kms2.example:5696"] and u["new"]["servers"]==["kms2.example:5696","kms1.example:5696"], u
' || fail "events with old/new values on PostgreSQL"
ok "data and session survive a manager restart"

# the database goes away: clear errors, no crash; it comes back: works again
pg_down
expect_rc 1 "$VMSEAL" kms ls
kill -0 "$MPID" || fail "manager died without its database"
pg_up
for ((i = 0; i < 20; i++)); do "$VMSEAL" kms ls >/dev/null 2>&1 && break; sleep 0.2; done
expect_rc 0 "$VMSEAL" kms ls
ok "database outage: errors while down, recovers when back"
mgr_stop
