# PostgreSQL servers for kmsd tests (source after tests/testlib.sh): real
# postgres processes in $TMP on 127.0.0.1 ports, run as the postgres user
# when the test runs as root, stopped at exit. The helpers are
# scripts/lib/pg.sh (shared with scripts/demo):
#
#   pg_primary NAME            initdb + start a primary (sets PG_PORT[NAME])
#   pg_standby NAME PRIMARY    pg_basebackup -R from PRIMARY + start a hot standby
#                              (application_name = NAME for synchronous_standby_names)
#   pg_sync_standby PRIMARY STANDBY   make STANDBY the synchronous standby
#   pg_start NAME / pg_stop NAME [MODE] / pg_promote NAME
#   pg_sql NAME SQL...         psql -tA on database kmsd as user vmseal
#   pg_conninfo FILE NAME...   a 0600 conninfo file listing the servers NAME...
source "$VMSEAL_SRC/scripts/lib/pg.sh"
pg_fail() { fail "$@"; }
pg_at_exit() { at_exit "$1"; }
pg_init "$TMP"
