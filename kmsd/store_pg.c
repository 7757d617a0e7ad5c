/* PostgreSQL object store (libpq): several vmseal-kmsd nodes on one
 * database cluster. Schema, a pool of connections to the primary, every
 * statement bounded in time, objects with UUIDs, the audit chain and the
 * nodes' heartbeats. See store.h and docs/kmsd.md, "A cluster on
 * PostgreSQL". */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <openssl/rand.h>

#include "audit.h"
#include "log.h"
#include "store.h"
#include "store_internal.h"

#define SCHEMA_VERSION 1
#define MAXP 140                   /* parameters of one statement (Locate: 5 + 2 x 64) */
#define AUDIT_BATCH_MAX 64
#define DOWN_HOLD_NS 1000000000LL  /* after a failed connect, fail fast for 1 s */
#define CONNINFO_MAX 4096
#define SCHEMA_LOCK "7434035566427546995" /* pg_advisory_xact_lock key for the schema */

struct kmsd_pg {
    vmseal_secret *conninfo;       /* NUL-terminated */
    char node[KMSD_NODE_MAX];
    char sync_commit[24];
    char connect_timeout[12];
    int timeout_ms;
    pthread_mutex_t lock;
    kmsd_db *idle[KMSD_POOL_MAX];
    int n_idle;
    int64_t down_until;            /* monotonic ns; 0: not known to be down */
    int was_down;
    char down_reason[400];
    char server[160];              /* "HOST:PORT" of the last connection made */
};

/* ---- statements ------------------------------------------------------------ */

enum {
    P_GET, P_GET_LOCK, P_MATERIAL, P_INSERT, P_SET_STATE, P_ERASE, P_TOUCH,
    P_ATTRS_ALL, P_ATTRS_NAME, P_ATTR_PUT, P_ATTR_NEXT, P_ATTR_COUNT, P_ATTR_DEL, P_ATTR_DEL_ALL,
    P_GRANTED, P_GRANT, P_REVOKE, P_GRANTS,
    P_AUDIT_LOCK, P_AUDIT_SET, P_AUDIT_READ, P_AUDIT_HEAD, P_HEARTBEAT, P_NODES,
    P_COUNT
};
_Static_assert(P_COUNT <= 64, "prepared statement bits");

#define OBJ_COLS "uid, owner, object_type, state, created, changed, material IS NOT NULL," \
                 " key_format, subtype, alg, bits"

static const char *const pg_sql[P_COUNT] = {
    [P_GET] = "SELECT " OBJ_COLS " FROM kmsd_objects WHERE uid=$1",
    [P_GET_LOCK] = "SELECT " OBJ_COLS " FROM kmsd_objects WHERE uid=$1 FOR UPDATE",
    [P_MATERIAL] = "SELECT material FROM kmsd_objects WHERE uid=$1",
    [P_INSERT] = "INSERT INTO kmsd_objects(uid, owner, object_type, state, material, created,"
                 " changed, key_format, subtype, alg, bits, node)"
                 " VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
    [P_SET_STATE] = "UPDATE kmsd_objects SET state=$1, changed=$2 WHERE uid=$3",
    [P_ERASE] = "UPDATE kmsd_objects SET material=NULL WHERE uid=$1",
    [P_TOUCH] = "UPDATE kmsd_objects SET changed=$1 WHERE uid=$2",
    [P_ATTRS_ALL] = "SELECT name, idx::bigint, value FROM kmsd_attributes WHERE uid=$1"
                    " ORDER BY name COLLATE \"C\", idx",
    [P_ATTRS_NAME] = "SELECT name, idx::bigint, value FROM kmsd_attributes"
                     " WHERE uid=$1 AND name=$2 ORDER BY idx",
    [P_ATTR_PUT] = "INSERT INTO kmsd_attributes(uid, name, idx, value) VALUES($1,$2,$3,$4)"
                   " ON CONFLICT (uid, name, idx) DO UPDATE SET value=EXCLUDED.value",
    [P_ATTR_NEXT] = "SELECT COALESCE(MAX(idx)+1, 0)::bigint FROM kmsd_attributes"
                    " WHERE uid=$1 AND name=$2",
    [P_ATTR_COUNT] = "SELECT COUNT(*) FROM kmsd_attributes WHERE uid=$1 AND name=$2",
    [P_ATTR_DEL] = "DELETE FROM kmsd_attributes WHERE uid=$1 AND name=$2 AND idx=$3",
    [P_ATTR_DEL_ALL] = "DELETE FROM kmsd_attributes WHERE uid=$1 AND name=$2",
    [P_GRANTED] = "SELECT 1 FROM kmsd_grants WHERE uid=$1 AND identity=$2",
    [P_GRANT] = "INSERT INTO kmsd_grants(uid, identity) VALUES($1,$2) ON CONFLICT DO NOTHING",
    [P_REVOKE] = "DELETE FROM kmsd_grants WHERE uid=$1 AND identity=$2",
    [P_GRANTS] = "SELECT uid, identity FROM kmsd_grants"
                 " ORDER BY uid COLLATE \"C\", identity COLLATE \"C\"",
    [P_AUDIT_LOCK] = "SELECT seq, hash FROM kmsd_audit_head WHERE id=1 FOR UPDATE",
    [P_AUDIT_SET] = "UPDATE kmsd_audit_head SET seq=$1, hash=$2 WHERE id=1",
    [P_AUDIT_READ] = "SELECT seq, line FROM kmsd_audit WHERE seq>$1 ORDER BY seq LIMIT $2",
    [P_AUDIT_HEAD] = "SELECT seq, hash FROM kmsd_audit_head WHERE id=1",
    [P_HEARTBEAT] =
        "INSERT INTO kmsd_nodes(name, address, version, instance, pid, started, seen, up_since,"
        " stopped) VALUES($1,$2,$3,$4,$5,$6, clock_timestamp(), clock_timestamp(), $7)"
        " ON CONFLICT (name) DO UPDATE SET address=EXCLUDED.address, version=EXCLUDED.version,"
        " pid=EXCLUDED.pid, started=EXCLUDED.started, seen=EXCLUDED.seen,"
        " stopped=EXCLUDED.stopped, up_since=CASE WHEN kmsd_nodes.instance=EXCLUDED.instance"
        " THEN kmsd_nodes.up_since ELSE EXCLUDED.up_since END, instance=EXCLUDED.instance",
    [P_NODES] = "SELECT name, address, version, instance, pid, started,"
                " (EXTRACT(EPOCH FROM clock_timestamp()-seen)*1000)::bigint,"
                " (EXTRACT(EPOCH FROM clock_timestamp()-up_since)*1000)::bigint, stopped"
                " FROM kmsd_nodes ORDER BY name COLLATE \"C\"",
};

static const char schema_sql[] =
    "CREATE TABLE kmsd_meta(k TEXT PRIMARY KEY, v BYTEA NOT NULL);"
    "CREATE TABLE kmsd_objects("
    " id BIGSERIAL PRIMARY KEY,"
    " uid TEXT NOT NULL UNIQUE,"
    " owner TEXT NOT NULL,"
    " object_type BIGINT NOT NULL,"
    " state BIGINT NOT NULL,"
    " material BYTEA,"
    " created BIGINT NOT NULL,"
    " changed BIGINT NOT NULL,"
    " key_format BIGINT NOT NULL DEFAULT 0,"
    " subtype BIGINT NOT NULL DEFAULT 0,"
    " alg BIGINT NOT NULL DEFAULT 0,"
    " bits BIGINT NOT NULL DEFAULT 0,"
    " node TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX kmsd_objects_owner ON kmsd_objects(owner);"
    "CREATE TABLE kmsd_attributes("
    " uid TEXT NOT NULL,"
    " name TEXT NOT NULL,"
    " idx INTEGER NOT NULL,"
    " value BYTEA NOT NULL,"
    " PRIMARY KEY(uid, name, idx));"
    "CREATE INDEX kmsd_attributes_value ON kmsd_attributes(name, value);"
    "CREATE TABLE kmsd_grants("
    " uid TEXT NOT NULL,"
    " identity TEXT NOT NULL,"
    " PRIMARY KEY(uid, identity));"
    "CREATE TABLE kmsd_audit("
    " seq BIGINT PRIMARY KEY,"
    " node TEXT NOT NULL,"
    " line TEXT NOT NULL);"
    "CREATE TABLE kmsd_audit_head("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " seq BIGINT NOT NULL,"
    " hash BYTEA NOT NULL);"
    "INSERT INTO kmsd_audit_head VALUES(1, 0, '\\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);"
    "CREATE TABLE kmsd_nodes("
    " name TEXT PRIMARY KEY,"
    " address TEXT NOT NULL,"
    " version TEXT NOT NULL,"
    " instance TEXT NOT NULL,"
    " pid BIGINT NOT NULL,"
    " started BIGINT NOT NULL,"
    " seen TIMESTAMPTZ NOT NULL,"
    " up_since TIMESTAMPTZ NOT NULL,"
    " stopped BOOLEAN NOT NULL);";

/* ---- parameters and results -------------------------------------------------- */

typedef struct pgq {
    int n;
    const char *v[MAXP];
    int l[MAXP];
    int f[MAXP];
    char num[MAXP][24];
} pgq;

static void q_text(pgq *q, const char *s)
{
    q->v[q->n] = s;
    q->l[q->n] = 0;
    q->f[q->n] = 0;
    q->n++;
}

static void q_int(pgq *q, int64_t x)
{
    snprintf(q->num[q->n], sizeof(q->num[0]), "%" PRId64, x);
    q_text(q, q->num[q->n]);
}

static void q_bytes(pgq *q, const void *p, size_t len)
{
    q->v[q->n] = p ? (const char *)p : "";
    q->l[q->n] = (int)len;
    q->f[q->n] = 1;
    q->n++;
}

static void q_null(pgq *q)
{
    q->v[q->n] = NULL;
    q->l[q->n] = 0;
    q->f[q->n] = 0;
    q->n++;
}

/* An integer or boolean column in binary format (big-endian). */
static int64_t col_int(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    const unsigned char *p = (const unsigned char *)PQgetvalue(r, row, col);
    int len = PQgetlength(r, row, col);
    if (len < 1 || len > 8)
        return 0;
    uint64_t u = (len > 1 && (p[0] & 0x80)) ? ~UINT64_C(0) : 0;
    for (int i = 0; i < len; i++)
        u = (u << 8) | p[i];
    return (int64_t)u;
}

static int utf8_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p, n;
        uint32_t cp;
        if (c < 0x80) {
            p++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        for (unsigned i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        p += n + 1;
    }
    return 1;
}

/* ---- one statement, bounded in time -------------------------------------- */

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The first line of a libpq message. */
static void first_line(char *out, size_t len, const char *msg)
{
    snprintf(out, len, "%s", msg && *msg ? msg : "unknown error");
    out[strcspn(out, "\n")] = '\0';
}

static void note_down(kmsd_store *st, const char *why)
{
    struct kmsd_pg *pg = st->pg;
    pthread_mutex_lock(&pg->lock);
    pg->down_until = mono_ns() + DOWN_HOLD_NS;
    snprintf(pg->down_reason, sizeof(pg->down_reason), "%s", why);
    int first = !pg->was_down;
    pg->was_down = 1;
    pthread_mutex_unlock(&pg->lock);
    if (first)
        kmsd_err("database unavailable: %s (requests fail until it is back)", why);
}

static int lost(kmsd_db *db, const char *what)
{
    char msg[300];
    first_line(msg, sizeof(msg), PQerrorMessage(db->pc));
    db->broken = 1;
    note_down(db->store, msg);
    return vmseal_fail(ECONNRESET, "store: database connection lost (%s): %s", what, msg);
}

static int timed_out(kmsd_db *db, const char *what)
{
    db->broken = 1;
    char msg[200];
    snprintf(msg, sizeof(msg), "no answer within %d ms (%s)", db->store->pg->timeout_ms, what);
    note_down(db->store, msg);
    return vmseal_fail(ETIMEDOUT, "store: the database did not answer within %d ms (%s); the "
                       "connection is dropped", db->store->pg->timeout_ms, what);
}

/* Wait until the connection's socket is ready for ev or the deadline. */
static int wait_fd(PGconn *c, short ev, int64_t deadline)
{
    for (;;) {
        int64_t left = (deadline - mono_ns()) / 1000000;
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = PQsocket(c), .events = ev};
        if (p.fd < 0)
            return -1;
        int r = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

/* Flush the query and collect its results; *out: the first error result,
 * else the last result. 0, or -errno with the connection marked broken
 * when it failed or the deadline passed. */
static int collect(kmsd_db *db, int64_t deadline, PGresult **out, const char *what)
{
    PGconn *c = db->pc;
    *out = NULL;
    for (;;) {
        int f = PQflush(c);
        if (f == 0)
            break;
        if (f < 0)
            return lost(db, what);
        int w = wait_fd(c, POLLOUT | POLLIN, deadline);
        if (w == 0)
            return timed_out(db, what);
        if (w < 0 || !PQconsumeInput(c))
            return lost(db, what);
    }
    PGresult *keep = NULL;
    for (;;) {
        while (PQisBusy(c)) {
            int w = wait_fd(c, POLLIN, deadline);
            if (w == 0) {
                PQclear(keep);
                return timed_out(db, what);
            }
            if (w < 0 || !PQconsumeInput(c)) {
                PQclear(keep);
                return lost(db, what);
            }
        }
        PGresult *r = PQgetResult(c);
        if (!r)
            break;
        ExecStatusType s = PQresultStatus(keep);
        if (keep && (s == PGRES_FATAL_ERROR || s == PGRES_BAD_RESPONSE)) {
            PQclear(r);
            continue;
        }
        PQclear(keep);
        keep = r;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        PQclear(keep);
        return lost(db, what);
    }
    if (!keep)
        return vmseal_fail(EIO, "store: %s: no result", what);
    *out = keep;
    return 0;
}

static int result_error(kmsd_db *db, PGresult *res, const char *what)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    char msg[300];
    first_line(msg, sizeof(msg), PQresultErrorMessage(res));
    int e = EIO;
    if (state) {
        if (!strcmp(state, "23505"))
            e = EEXIST;               /* unique_violation */
        else if (!strcmp(state, "40001") || !strcmp(state, "40P01") || !strcmp(state, "55P03"))
            e = EBUSY;                /* serialization, deadlock, lock timeout */
        else if (!strcmp(state, "25006"))
            e = EROFS;                /* read-only transaction: a standby */
        else if (!strcmp(state, "42P01"))
            e = ENOENT;               /* undefined table */
        else if (!strcmp(state, "57014"))
            e = ETIMEDOUT;            /* statement timeout */
        else if (!strncmp(state, "22", 2))
            e = EINVAL;               /* data exception */
        else if (!strncmp(state, "08", 2) || !strncmp(state, "57P", 3)) {
            e = ECONNRESET;           /* connection failure, admin shutdown */
            db->broken = 1;
            note_down(db->store, msg);
        }
    }
    return vmseal_fail(e, "store: %s: %s", what, msg);
}

/* Run a statement: id >= 0 a prepared one (prepared on first use on this
 * connection) with binary results; id < 0 and q: sql with parameters,
 * binary results; id < 0 and no q: sql in the simple protocol (several
 * statements allowed, text results). *out (may be NULL): the result. */
static int pg_run(kmsd_db *db, int id, const char *sql, const pgq *q, PGresult **out,
                  const char *what)
{
    if (out)
        *out = NULL;
    if (db->broken)
        return vmseal_fail(ECONNRESET, "store: %s: the database connection is gone", what);
    for (int i = 0; q && i < q->n; i++)
        if (q->v[i] && q->f[i] == 0 && !utf8_ok(q->v[i]))
            return vmseal_fail(EINVAL, "store: %s: a text value is not valid UTF-8", what);
    PGconn *c = db->pc;
    int64_t deadline = mono_ns() + (int64_t)db->store->pg->timeout_ms * 1000000;
    PGresult *res = NULL;
    int r;
    char name[8];
    if (id >= 0) {
        snprintf(name, sizeof(name), "k%d", id);
        sql = pg_sql[id];
        if (!(db->prepared & (UINT64_C(1) << id))) {
            if (!PQsendPrepare(c, name, sql, 0, NULL))
                return lost(db, what);
            if ((r = collect(db, deadline, &res, what)) < 0)
                return r;
            if (PQresultStatus(res) != PGRES_COMMAND_OK) {
                r = result_error(db, res, what);
                PQclear(res);
                return r;
            }
            PQclear(res);
            db->prepared |= UINT64_C(1) << id;
        }
        if (!PQsendQueryPrepared(c, name, q ? q->n : 0, q ? q->v : NULL, q ? q->l : NULL,
                                 q ? q->f : NULL, 1))
            return lost(db, what);
    } else if (q) {
        if (!PQsendQueryParams(c, sql, q->n, NULL, q->v, q->l, q->f, 1))
            return lost(db, what);
    } else {
        if (!PQsendQuery(c, sql))
            return lost(db, what);
    }
    if ((r = collect(db, deadline, &res, what)) < 0)
        return r;
    ExecStatusType s = PQresultStatus(res);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
        r = result_error(db, res, what);
        PQclear(res);
        return r;
    }
    if (out)
        *out = res;
    else
        PQclear(res);
    return 0;
}

/* Rows changed by an INSERT/UPDATE/DELETE. */
static int changed_rows(kmsd_db *db, int id, const pgq *q, const char *what)
{
    PGresult *res;
    int r = pg_run(db, id, NULL, q, &res, what);
    if (r < 0)
        return r;
    const char *t = PQcmdTuples(res);
    r = t && *t ? atoi(t) : 0;
    PQclear(res);
    return r;
}

/* ---- connections ------------------------------------------------------------ */

static void notice_log(void *arg, const char *message)
{
    (void)arg;
    char msg[300];
    first_line(msg, sizeof(msg), message);
    kmsd_debug("database: %s", msg);
}

static void db_free(kmsd_db *db)
{
    if (!db)
        return;
    PQfinish(db->pc);
    free(db);
}

/* A new connection to the primary, set up for kmsd. */
static int pg_connect(kmsd_store *st, kmsd_db **out)
{
    struct kmsd_pg *pg = st->pg;
    *out = NULL;
    char app[KMSD_NODE_MAX + 16];
    snprintf(app, sizeof(app), "vmseal-kmsd %s", pg->node);
    /* the conninfo may override what comes before dbname, not what follows */
    const char *kw[] = {"connect_timeout", "application_name", "keepalives", "keepalives_idle",
                        "keepalives_interval", "keepalives_count", "dbname",
                        "target_session_attrs", NULL};
    const char *val[] = {pg->connect_timeout, app, "1", "10", "3", "3",
                         (const char *)vmseal_secret_cdata(pg->conninfo), "read-write", NULL};
    PGconn *c = PQconnectdbParams(kw, val, 1);
    if (!c)
        return vmseal_fail(ENOMEM, "store: out of memory");
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[400];
        first_line(msg, sizeof(msg), PQerrorMessage(c));
        PQfinish(c);
        note_down(st, msg);
        return vmseal_fail(ECONNREFUSED, "store: database unavailable: %s", msg);
    }
    PQsetNoticeProcessor(c, notice_log, NULL);
    kmsd_db *db = calloc(1, sizeof(*db));
    if (!db) {
        PQfinish(c);
        return -ENOMEM;
    }
    db->be = &kmsd_pg_backend;
    db->pc = c;
    db->store = st;
    db->fresh = 1;
    char setup[400];
    snprintf(setup, sizeof(setup),
             "SET synchronous_commit TO '%s'; SET lock_timeout TO %d;"
             " SET idle_in_transaction_session_timeout TO %d; SELECT pg_is_in_recovery()",
             pg->sync_commit, pg->timeout_ms, pg->timeout_ms * 4 > 60000 ? pg->timeout_ms * 4 : 60000);
    PGresult *res;
    int r = pg_run(db, -1, setup, NULL, &res, "connection set-up");
    if (r < 0) {
        db_free(db);
        return r;
    }
    int standby = PQntuples(res) == 1 && !strcmp(PQgetvalue(res, 0, 0), "t");
    PQclear(res);
    char where[160];
    snprintf(where, sizeof(where), "%s:%s", PQhost(c) ? PQhost(c) : "?", PQport(c) ? PQport(c) : "?");
    if (standby) {
        db_free(db);
        note_down(st, "only a standby answered");
        return vmseal_fail(EROFS, "store: %s is a standby (read-only): vmseal-kmsd works on the "
                           "primary only", where);
    }
    pthread_mutex_lock(&pg->lock);
    int back = pg->was_down;
    pg->was_down = 0;
    pg->down_until = 0;
    pg->down_reason[0] = '\0';
    int moved = pg->server[0] && strcmp(pg->server, where) != 0;
    snprintf(pg->server, sizeof(pg->server), "%s", where);
    pthread_mutex_unlock(&pg->lock);
    if (back || moved)
        kmsd_info("database: connected to the primary at %s%s", where,
                  back ? " (available again)" : " (a new primary)");
    *out = db;
    return 0;
}

static void flush_idle(kmsd_store *st)
{
    struct kmsd_pg *pg = st->pg;
    kmsd_db *old[KMSD_POOL_MAX];
    pthread_mutex_lock(&pg->lock);
    int n = pg->n_idle;
    memcpy(old, pg->idle, sizeof(old[0]) * (size_t)n);
    pg->n_idle = 0;
    pthread_mutex_unlock(&pg->lock);
    for (int i = 0; i < n; i++)
        db_free(old[i]);
}

static int acquire(kmsd_store *st, kmsd_db **out)
{
    struct kmsd_pg *pg = st->pg;
    pthread_mutex_lock(&pg->lock);
    if (pg->n_idle > 0) {
        kmsd_db *db = pg->idle[--pg->n_idle];
        pthread_mutex_unlock(&pg->lock);
        db->fresh = 0;
        *out = db;
        return 0;
    }
    int64_t now = mono_ns();
    if (pg->down_until && now < pg->down_until) {
        int r = vmseal_fail(ECONNREFUSED, "store: database unavailable: %s (next attempt within "
                            "%lld ms)", pg->down_reason,
                            (long long)((pg->down_until - now) / 1000000 + 1));
        pthread_mutex_unlock(&pg->lock);
        return r;
    }
    pthread_mutex_unlock(&pg->lock);
    return pg_connect(st, out);
}

static void release(kmsd_store *st, kmsd_db *db)
{
    struct kmsd_pg *pg = st->pg;
    db->writer = 0;
    if (!db->broken && (db->rollback_sent || PQtransactionStatus(db->pc) == PQTRANS_IDLE)) {
        pthread_mutex_lock(&pg->lock);
        if (pg->n_idle < KMSD_POOL_MAX) {
            pg->idle[pg->n_idle++] = db;
            db = NULL;
        }
        pthread_mutex_unlock(&pg->lock);
    }
    db_free(db);
}

static int begin(kmsd_store *st, kmsd_db **out, int write)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        kmsd_db *db;
        int r = acquire(st, &db);
        if (r < 0)
            return r;
        db->writer = write;
        r = 0;
        if (db->rollback_sent) {
            /* the answer to the last read's ROLLBACK (normally here already) */
            PGresult *res;
            db->rollback_sent = 0;
            int64_t deadline = mono_ns() + (int64_t)st->pg->timeout_ms * 1000000;
            r = collect(db, deadline, &res, "rollback");
            if (r == 0) {
                if (PQresultStatus(res) != PGRES_COMMAND_OK)
                    r = result_error(db, res, "rollback");
                PQclear(res);
            }
        }
        if (r == 0)
            r = pg_run(db, -1, write ? "BEGIN" : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                       NULL, NULL, "begin");
        if (r == 0) {
            *out = db;
            return 0;
        }
        /* a pooled connection that died while idle (the primary restarted,
         * failed over): the others are likely dead too; one fresh attempt */
        int retry = db->broken && !db->fresh;
        release(st, db);
        if (!retry)
            return r;
        flush_idle(st);
        pthread_mutex_lock(&st->pg->lock);
        st->pg->down_until = 0;
        pthread_mutex_unlock(&st->pg->lock);
    }
    return vmseal_fail(ECONNRESET, "store: database unavailable");
}

static int pg_read_begin(kmsd_store *st, kmsd_db **out)
{
    return begin(st, out, 0);
}

static int pg_write_begin(kmsd_store *st, kmsd_db **out)
{
    return begin(st, out, 1);
}

static int pg_end(kmsd_store *st, kmsd_db *db, int commit)
{
    int r = 0;
    if (db->writer && commit) {
        PGresult *res;
        r = pg_run(db, -1, "COMMIT", NULL, &res, "commit");
        if (r == 0) {
            /* COMMIT of a transaction that had failed answers ROLLBACK */
            if (strcmp(PQcmdStatus(res), "COMMIT") != 0)
                r = vmseal_fail(EIO, "store: the transaction was rolled back");
            PQclear(res);
        } else if (r == -ECONNRESET || r == -ETIMEDOUT) {
            r = vmseal_fail(-r, "%s; the change may or may not have been committed",
                            vmseal_last_error());
        }
    } else if (!db->broken && !db->writer) {
        /* a read changed nothing: its ROLLBACK need not be waited for; the
         * next user of the connection reads the answer (begin) */
        if (PQsendQuery(db->pc, "ROLLBACK") && PQflush(db->pc) == 0)
            db->rollback_sent = 1;
        else
            db->broken = 1;
    } else if (!db->broken) {
        (void)pg_run(db, -1, "ROLLBACK", NULL, NULL, "rollback");
    }
    release(st, db);
    return r;
}

/* ---- objects ------------------------------------------------------------------ */

static int pg_next_uid(kmsd_db *db, char uid[KMSD_UID_MAX])
{
    (void)db;
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1)
        return vmseal_fail(EIO, "no randomness for a unique identifier");
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    snprintf(uid, KMSD_UID_MAX,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
    return 0;
}

static int pg_insert(kmsd_db *db, const kmsd_obj *o, const uint8_t *wrapped, size_t len)
{
    pgq q = {0};
    q_text(&q, o->uid);
    q_text(&q, o->owner);
    q_int(&q, o->object_type);
    q_int(&q, o->state);
    if (wrapped)
        q_bytes(&q, wrapped, len);
    else
        q_null(&q);
    q_int(&q, o->created);
    q_int(&q, o->changed);
    q_int(&q, o->key_format);
    q_int(&q, o->subtype);
    q_int(&q, o->alg);
    q_int(&q, o->bits);
    q_text(&q, db->store->pg->node);
    int r = pg_run(db, P_INSERT, NULL, &q, NULL, "insert");
    if (r == -EEXIST)
        return vmseal_fail(EEXIST, "store: an object %s exists already", o->uid);
    return r;
}

static int pg_get(kmsd_db *db, const char *uid, kmsd_obj *o)
{
    if (!utf8_ok(uid))
        return -ENOENT; /* no stored id is anything else */
    pgq q = {0};
    q_text(&q, uid);
    PGresult *res;
    int r = pg_run(db, db->writer ? P_GET_LOCK : P_GET, NULL, &q, &res, "get");
    if (r < 0)
        return r;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return -ENOENT;
    }
    memset(o, 0, sizeof(*o));
    snprintf(o->uid, sizeof(o->uid), "%s", PQgetvalue(res, 0, 0));
    snprintf(o->owner, sizeof(o->owner), "%s", PQgetvalue(res, 0, 1));
    o->object_type = (uint32_t)col_int(res, 0, 2);
    o->state = (uint32_t)col_int(res, 0, 3);
    o->created = col_int(res, 0, 4);
    o->changed = col_int(res, 0, 5);
    o->has_material = (int)col_int(res, 0, 6);
    o->key_format = (uint32_t)col_int(res, 0, 7);
    o->subtype = (uint32_t)col_int(res, 0, 8);
    o->alg = (uint32_t)col_int(res, 0, 9);
    o->bits = (int32_t)col_int(res, 0, 10);
    PQclear(res);
    return 0;
}

static int pg_material(kmsd_db *db, const char *uid, uint8_t **blob, size_t *len)
{
    *blob = NULL;
    *len = 0;
    pgq q = {0};
    q_text(&q, uid);
    PGresult *res;
    int r = pg_run(db, P_MATERIAL, NULL, &q, &res, "material");
    if (r < 0)
        return r;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return -ENOENT;
    }
    int n = PQgetlength(res, 0, 0);
    if (PQgetisnull(res, 0, 0) || n <= 0) {
        PQclear(res);
        return -ENODATA;
    }
    *blob = malloc((size_t)n);
    if (!*blob) {
        PQclear(res);
        return -ENOMEM;
    }
    memcpy(*blob, PQgetvalue(res, 0, 0), (size_t)n);
    *len = (size_t)n;
    PQclear(res);
    return 0;
}

static int pg_set_state(kmsd_db *db, const char *uid, uint32_t state, int64_t now)
{
    pgq q = {0};
    q_int(&q, state);
    q_int(&q, now);
    q_text(&q, uid);
    int r = changed_rows(db, P_SET_STATE, &q, "set state");
    return r < 0 ? r : r ? 0 : -ENOENT;
}

static int pg_erase_material(kmsd_db *db, const char *uid)
{
    pgq q = {0};
    q_text(&q, uid);
    int r = changed_rows(db, P_ERASE, &q, "erase");
    return r < 0 ? r : r ? 0 : -ENOENT;
}

static int pg_touch(kmsd_db *db, const char *uid, int64_t now)
{
    pgq q = {0};
    q_int(&q, now);
    q_text(&q, uid);
    int r = changed_rows(db, P_TOUCH, &q, "touch");
    return r < 0 ? r : r ? 0 : -ENOENT;
}

/* ---- attributes ---------------------------------------------------------------- */

static int pg_attrs(kmsd_db *db, const char *uid, const char *name, kmsd_attr_cb cb, void *ctx)
{
    if (name && !utf8_ok(name))
        return 0; /* no attribute has such a name */
    pgq q = {0};
    q_text(&q, uid);
    if (name)
        q_text(&q, name);
    PGresult *res;
    int r = pg_run(db, name ? P_ATTRS_NAME : P_ATTRS_ALL, NULL, &q, &res, "attributes");
    if (r < 0)
        return r;
    int n = PQntuples(res);
    for (int i = 0; i < n; i++) {
        int c = cb(ctx, PQgetvalue(res, i, 0), (int)col_int(res, i, 1),
                   (const uint8_t *)PQgetvalue(res, i, 2), (size_t)PQgetlength(res, i, 2));
        if (c < 0) {
            PQclear(res);
            return c;
        }
    }
    PQclear(res);
    return n;
}

static int pg_attr_put(kmsd_db *db, const char *uid, const char *name, int idx, const uint8_t *v,
                       size_t len)
{
    pgq q = {0};
    q_text(&q, uid);
    q_text(&q, name);
    q_int(&q, idx);
    q_bytes(&q, v, len);
    return pg_run(db, P_ATTR_PUT, NULL, &q, NULL, "attribute");
}

static int count_query(kmsd_db *db, int id, const char *uid, const char *name)
{
    if (!utf8_ok(name))
        return 0;
    pgq q = {0};
    q_text(&q, uid);
    q_text(&q, name);
    PGresult *res;
    int r = pg_run(db, id, NULL, &q, &res, "attribute");
    if (r < 0)
        return r;
    int64_t v = PQntuples(res) == 1 ? col_int(res, 0, 0) : 0;
    PQclear(res);
    return v > INT32_MAX ? INT32_MAX : (int)v;
}

static int pg_attr_next_index(kmsd_db *db, const char *uid, const char *name)
{
    return count_query(db, P_ATTR_NEXT, uid, name);
}

static int pg_attr_count(kmsd_db *db, const char *uid, const char *name)
{
    return count_query(db, P_ATTR_COUNT, uid, name);
}

static int pg_attr_delete(kmsd_db *db, const char *uid, const char *name, int idx)
{
    if (!utf8_ok(name))
        return 0;
    pgq q = {0};
    q_text(&q, uid);
    q_text(&q, name);
    if (idx >= 0)
        q_int(&q, idx);
    return changed_rows(db, idx < 0 ? P_ATTR_DEL_ALL : P_ATTR_DEL, &q, "attribute");
}

/* ---- locate ---------------------------------------------------------------------- */

static int pg_locate(kmsd_db *db, const char *identity, uint32_t object_type, uint32_t state,
                     const kmsd_filter *filters, size_t n_filters, int64_t max_items,
                     int64_t offset, kmsd_uid_cb cb, void *ctx)
{
    if (n_filters > 64)
        return vmseal_fail(EINVAL, "locate: too many attributes");
    for (size_t i = 0; i < n_filters; i++)
        if (!utf8_ok(filters[i].name))
            return 0;
    char sql[8192];
    pgq q = {0};
    size_t n = (size_t)snprintf(sql, sizeof(sql), "SELECT o.uid FROM kmsd_objects o WHERE true");
    if (identity) {
        q_text(&q, identity);
        n += (size_t)snprintf(sql + n, sizeof(sql) - n,
                              " AND (o.owner=$%d OR EXISTS(SELECT 1 FROM kmsd_grants g"
                              " WHERE g.uid=o.uid AND g.identity=$%d))", q.n, q.n);
    }
    if (object_type) {
        q_int(&q, object_type);
        n += (size_t)snprintf(sql + n, sizeof(sql) - n, " AND o.object_type=$%d", q.n);
    }
    if (state) {
        q_int(&q, state);
        n += (size_t)snprintf(sql + n, sizeof(sql) - n, " AND o.state=$%d", q.n);
    }
    for (size_t i = 0; i < n_filters; i++) {
        q_text(&q, filters[i].name);
        q_bytes(&q, filters[i].value, filters[i].len);
        n += (size_t)snprintf(sql + n, sizeof(sql) - n,
                              " AND EXISTS(SELECT 1 FROM kmsd_attributes a WHERE a.uid=o.uid"
                              " AND a.name=$%d AND a.value=$%d)", q.n - 1, q.n);
    }
    n += (size_t)snprintf(sql + n, sizeof(sql) - n, " ORDER BY o.id");
    if (max_items > 0) {
        q_int(&q, max_items);
        n += (size_t)snprintf(sql + n, sizeof(sql) - n, " LIMIT $%d", q.n);
    }
    if (offset > 0) {
        q_int(&q, offset);
        snprintf(sql + n, sizeof(sql) - n, " OFFSET $%d", q.n);
    }
    PGresult *res;
    int r = pg_run(db, -1, sql, &q, &res, "locate");
    if (r < 0)
        return r;
    int rows = PQntuples(res);
    for (int i = 0; i < rows; i++) {
        int c = cb(ctx, PQgetvalue(res, i, 0));
        if (c < 0) {
            PQclear(res);
            return c;
        }
    }
    PQclear(res);
    return rows;
}

/* ---- grants ------------------------------------------------------------------------- */

static int pg_granted(kmsd_db *db, const char *uid, const char *identity)
{
    pgq q = {0};
    q_text(&q, uid);
    q_text(&q, identity);
    PGresult *res;
    int r = pg_run(db, P_GRANTED, NULL, &q, &res, "grant lookup");
    if (r < 0)
        return r;
    r = PQntuples(res) > 0;
    PQclear(res);
    return r;
}

static int pg_grant(kmsd_db *db, const char *uid, const char *identity)
{
    pgq q = {0};
    q_text(&q, uid);
    q_text(&q, identity);
    return pg_run(db, P_GRANT, NULL, &q, NULL, "grant");
}

static int pg_revoke_access(kmsd_db *db, const char *uid, const char *identity)
{
    pgq q = {0};
    q_text(&q, uid);
    q_text(&q, identity);
    return changed_rows(db, P_REVOKE, &q, "revoke access");
}

static int pg_grants(kmsd_db *db, kmsd_grant_cb cb, void *ctx)
{
    PGresult *res;
    int r = pg_run(db, P_GRANTS, NULL, NULL, &res, "grants");
    if (r < 0)
        return r;
    int n = PQntuples(res);
    for (int i = 0; i < n; i++) {
        int c = cb(ctx, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
        if (c < 0) {
            PQclear(res);
            return c;
        }
    }
    PQclear(res);
    return n;
}

/* ---- audit chain ------------------------------------------------------------------------ */

static int head_row(kmsd_db *db, int id, uint64_t *seq, unsigned char hash[32])
{
    PGresult *res;
    int r = pg_run(db, id, NULL, NULL, &res, "audit chain head");
    if (r < 0)
        return r;
    if (PQntuples(res) != 1 || PQgetlength(res, 0, 1) != 32 || col_int(res, 0, 0) < 0) {
        PQclear(res);
        return vmseal_fail(EBADMSG, "store: the audit chain head row is missing or damaged");
    }
    *seq = (uint64_t)col_int(res, 0, 0);
    memcpy(hash, PQgetvalue(res, 0, 1), 32);
    PQclear(res);
    return 0;
}

static int pg_audit_head(kmsd_db *db, uint64_t *seq, unsigned char hash[32])
{
    return head_row(db, P_AUDIT_HEAD, seq, hash);
}

static int pg_audit_append(kmsd_db *db, const char *const *bodies, const size_t *lens, size_t n,
                           uint64_t *last_seq)
{
    if (n == 0 || n > AUDIT_BATCH_MAX)
        return vmseal_fail(EINVAL, "store: audit batch of %zu records", n);
    uint64_t seq;
    unsigned char prev[32];
    /* audit records are not waited for (no fsync per batch): they reach the
     * disk with PostgreSQL's WAL writer, within wal_writer_delay */
    int r = pg_run(db, -1, "SET LOCAL synchronous_commit TO off", NULL, NULL, "audit append");
    if (r < 0)
        return r;
    /* the row lock serialises the appends of every node until COMMIT */
    r = head_row(db, P_AUDIT_LOCK, &seq, prev);
    if (r < 0)
        return r;
    char *lines[AUDIT_BATCH_MAX] = {0};
    char sql[64 + AUDIT_BATCH_MAX * 24];
    pgq q = {0};
    q_text(&q, db->store->pg->node);
    size_t sn = (size_t)snprintf(sql, sizeof(sql), "INSERT INTO kmsd_audit(seq, node, line) VALUES");
    for (size_t i = 0; i < n; i++) {
        unsigned char h[32];
        seq++;
        if (kmsd_audit_chain_hash(prev, bodies[i], lens[i], seq, h) < 0) {
            r = vmseal_fail(EIO, "audit: SHA-256 failed");
            goto out;
        }
        char ph[65], hh[65];
        vmseal_hex_encode(prev, 32, ph);
        vmseal_hex_encode(h, 32, hh);
        size_t cap = lens[i] + 200;
        lines[i] = malloc(cap);
        if (!lines[i]) {
            r = -ENOMEM;
            goto out;
        }
        memcpy(lines[i], bodies[i], lens[i]);
        snprintf(lines[i] + lens[i], cap - lens[i], " seq=%" PRIu64 " prev=%s hash=%s", seq, ph,
                 hh);
        memcpy(prev, h, 32);
        q_int(&q, (int64_t)seq);
        q_text(&q, lines[i]);
        sn += (size_t)snprintf(sql + sn, sizeof(sql) - sn, "%s($%d,$1,$%d)", i ? "," : "",
                               q.n - 1, q.n);
    }
    if ((r = pg_run(db, -1, sql, &q, NULL, "audit append")) < 0)
        goto out;
    pgq h = {0};
    q_int(&h, (int64_t)seq);
    q_bytes(&h, prev, 32);
    if ((r = pg_run(db, P_AUDIT_SET, NULL, &h, NULL, "audit chain head")) < 0)
        goto out;
    *last_seq = seq;
out:
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    return r;
}

static int pg_audit_read(kmsd_db *db, uint64_t after, size_t max, kmsd_audit_row_cb cb, void *ctx)
{
    pgq q = {0};
    q_int(&q, (int64_t)after);
    q_int(&q, (int64_t)(max > 100000 ? 100000 : max));
    PGresult *res;
    int r = pg_run(db, P_AUDIT_READ, NULL, &q, &res, "audit read");
    if (r < 0)
        return r;
    int n = PQntuples(res);
    for (int i = 0; i < n; i++) {
        int c = cb(ctx, (uint64_t)col_int(res, i, 0), PQgetvalue(res, i, 1),
                   (size_t)PQgetlength(res, i, 1));
        if (c < 0) {
            PQclear(res);
            return c;
        }
    }
    PQclear(res);
    return n;
}

/* ---- nodes ------------------------------------------------------------------------------- */

static int pg_heartbeat(kmsd_db *db, const kmsd_node_info *n, int stopping)
{
    int r = pg_run(db, -1, "SET LOCAL synchronous_commit TO off", NULL, NULL, "heartbeat");
    if (r < 0)
        return r;
    pgq q = {0};
    q_text(&q, n->name);
    q_text(&q, n->address);
    q_text(&q, n->version);
    q_text(&q, n->instance);
    q_int(&q, n->pid);
    q_int(&q, n->started);
    q_text(&q, stopping ? "true" : "false");
    return pg_run(db, P_HEARTBEAT, NULL, &q, NULL, "heartbeat");
}

static int pg_nodes(kmsd_db *db, kmsd_node_cb cb, void *ctx)
{
    PGresult *res;
    int r = pg_run(db, P_NODES, NULL, NULL, &res, "nodes");
    if (r < 0)
        return r;
    int rows = PQntuples(res);
    for (int i = 0; i < rows; i++) {
        kmsd_node_info n = {0};
        snprintf(n.name, sizeof(n.name), "%s", PQgetvalue(res, i, 0));
        snprintf(n.address, sizeof(n.address), "%s", PQgetvalue(res, i, 1));
        snprintf(n.version, sizeof(n.version), "%s", PQgetvalue(res, i, 2));
        snprintf(n.instance, sizeof(n.instance), "%s", PQgetvalue(res, i, 3));
        n.pid = col_int(res, i, 4);
        n.started = col_int(res, i, 5);
        n.seen_ago = (double)col_int(res, i, 6) / 1000.0;
        n.up = (double)col_int(res, i, 7) / 1000.0;
        n.stopped = (int)col_int(res, i, 8);
        int c = cb(ctx, &n);
        if (c < 0) {
            PQclear(res);
            return c;
        }
    }
    PQclear(res);
    return rows;
}

/* The primary this connection talks to, its replication settings and its
 * standbys (text results: a few values, read every heartbeat). */
static int pg_replication(kmsd_db *db, kmsd_db_replication *out)
{
    PGconn *c = db->pc;
    const char *h = PQhost(c), *p = PQport(c);
    snprintf(out->primary, sizeof(out->primary), "%.100s:%.20s", h && *h ? h : "?", p && *p ? p : "5432");
    PGresult *res;
    int r = pg_run(db, -1,
                   "SELECT current_setting('server_version'), current_setting('synchronous_commit'),"
                   " current_setting('synchronous_standby_names')",
                   NULL, &res, "replication settings");
    if (r < 0)
        return r;
    if (PQntuples(res) == 1) {
        snprintf(out->version, sizeof(out->version), "%s", PQgetvalue(res, 0, 0));
        snprintf(out->synchronous_commit, sizeof(out->synchronous_commit), "%s", PQgetvalue(res, 0, 1));
        snprintf(out->synchronous_standby_names, sizeof(out->synchronous_standby_names), "%s",
                 PQgetvalue(res, 0, 2));
    }
    PQclear(res);
    /* A lag PostgreSQL no longer shows (a standby that caught up and sees no
     * traffic) is 0; without pg_monitor the state and lags are NULL: -1. */
    r = pg_run(db, -1,
               "SELECT application_name, COALESCE(state, ''), COALESCE(sync_state, ''),"
               " COALESCE((EXTRACT(EPOCH FROM replay_lag)*1000)::bigint,"
               "  CASE WHEN state IS NULL THEN -1 ELSE 0 END),"
               " COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint, -1)"
               " FROM pg_stat_replication ORDER BY application_name COLLATE \"C\"",
               NULL, &res, "pg_stat_replication");
    if (r < 0)
        return r;
    int rows = PQntuples(res);
    out->n_standby_total = (size_t)rows;
    for (int i = 0; i < rows && out->n_standby < KMSD_STANDBY_MAX; i++) {
        kmsd_standby_info *s = &out->standby[out->n_standby++];
        snprintf(s->name, sizeof(s->name), "%s", PQgetvalue(res, i, 0));
        snprintf(s->state, sizeof(s->state), "%s", PQgetvalue(res, i, 1));
        snprintf(s->sync_state, sizeof(s->sync_state), "%s", PQgetvalue(res, i, 2));
        s->replay_lag_ms = strtoll(PQgetvalue(res, i, 3), NULL, 10);
        s->bytes_behind = strtoll(PQgetvalue(res, i, 4), NULL, 10);
    }
    PQclear(res);
    return 0;
}

/* ---- opening ------------------------------------------------------------------------------- */

static void pg_close(kmsd_store *st)
{
    if (!st)
        return;
    if (st->pg) {
        flush_idle(st);
        vmseal_secret_free(st->pg->conninfo);
        pthread_mutex_destroy(&st->pg->lock);
        free(st->pg);
    }
    free(st);
}

static void pg_describe(kmsd_store *st, char *buf, size_t len)
{
    struct kmsd_pg *pg = st->pg;
    pthread_mutex_lock(&pg->lock);
    if (pg->was_down)
        snprintf(buf, len, "PostgreSQL, unavailable: %s", pg->down_reason);
    else
        snprintf(buf, len, "PostgreSQL, primary %s", pg->server[0] ? pg->server : "(not yet connected)");
    pthread_mutex_unlock(&pg->lock);
}

/* Read the store's metadata: schema version and probe. -ENOENT: no store. */
static int read_meta(kmsd_db *db, kmsd_masterkey *mk)
{
    PGresult *res;
    int r = pg_run(db, -1, "SELECT k, v FROM kmsd_meta WHERE k IN ('schema', 'mk_check')",
                   &(pgq){0}, &res, "store metadata");
    if (r == -ENOENT)
        return vmseal_fail(ENOENT, "the database holds no vmseal-kmsd store: make one with "
                           "`vmseal-kmsd init DIR --store postgresql ...` on the first node; "
                           "other nodes `vmseal-kmsd join` it");
    if (r < 0)
        return r;
    int have_schema = 0, ver = 0;
    const uint8_t *probe = NULL;
    size_t probe_len = 0;
    for (int i = 0; i < PQntuples(res); i++) {
        const char *k = PQgetvalue(res, i, 0);
        if (!strcmp(k, "schema")) {
            char v[16];
            int l = PQgetlength(res, i, 1);
            snprintf(v, sizeof(v), "%.*s", l < 15 ? l : 15, PQgetvalue(res, i, 1));
            ver = atoi(v);
            have_schema = 1;
        } else if (!strcmp(k, "mk_check")) {
            probe = (const uint8_t *)PQgetvalue(res, i, 1);
            probe_len = (size_t)PQgetlength(res, i, 1);
        }
    }
    if (!have_schema || !probe) {
        PQclear(res);
        return vmseal_fail(EBADMSG, "the database's kmsd_meta table lacks the schema version or "
                           "the master key probe: not a vmseal-kmsd store");
    }
    if (ver != SCHEMA_VERSION) {
        PQclear(res);
        return vmseal_fail(ENOTSUP, "store schema version %d is not supported (want %d)", ver,
                           SCHEMA_VERSION);
    }
    r = mk ? kmsd_probe_check(mk, probe, probe_len) : 0;
    PQclear(res);
    return r;
}

static int create_schema(kmsd_db *db, kmsd_masterkey *mk)
{
    PGresult *res;
    int r = pg_run(db, -1, "SELECT pg_advisory_xact_lock(" SCHEMA_LOCK "),"
                   " to_regclass('kmsd_meta') IS NOT NULL", &(pgq){0}, &res, "schema lock");
    if (r < 0)
        return r;
    int exists = PQntuples(res) == 1 && col_int(res, 0, 1);
    PQclear(res);
    if (exists)
        return vmseal_fail(EEXIST, "the database holds a vmseal-kmsd store already: add this node "
                           "to it with `vmseal-kmsd join` (same master key), or name another "
                           "database");
    if ((r = pg_run(db, -1, schema_sql, NULL, NULL, "creating the schema")) < 0)
        return r;
    uint8_t *blob;
    size_t bl;
    if ((r = kmsd_probe_make(mk, &blob, &bl)) < 0)
        return r;
    char ver[8], now[24];
    snprintf(ver, sizeof(ver), "%d", SCHEMA_VERSION);
    snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
    pgq q = {0};
    q_bytes(&q, ver, strlen(ver));
    q_bytes(&q, blob, bl);
    q_bytes(&q, now, strlen(now));
    r = pg_run(db, -1, "INSERT INTO kmsd_meta(k, v) VALUES('schema', $1), ('mk_check', $2),"
               " ('created', $3)", &q, NULL, "store metadata");
    free(blob);
    return r;
}

int kmsd_store_open_pg(const kmsd_pg_params *p, kmsd_masterkey *mk, int mode, kmsd_store **out)
{
    *out = NULL;
    if (!p->conninfo || vmseal_secret_len(p->conninfo) == 0)
        return vmseal_fail(EINVAL, "store: no PostgreSQL connection string");
    kmsd_store *st = calloc(1, sizeof(*st));
    struct kmsd_pg *pg = calloc(1, sizeof(*pg));
    if (!st || !pg) {
        free(st);
        free(pg);
        return -ENOMEM;
    }
    st->be = &kmsd_pg_backend;
    st->mk = mk;
    st->pg = pg;
    pthread_mutex_init(&pg->lock, NULL);
    /* the conninfo is a C string: copy it with its NUL */
    size_t cl = strnlen((const char *)vmseal_secret_cdata(p->conninfo),
                        vmseal_secret_len(p->conninfo));
    int r = vmseal_secret_from(vmseal_secret_cdata(p->conninfo), cl + 1, &pg->conninfo);
    if (r < 0) {
        pg_close(st);
        return r;
    }
    vmseal_secret_data(pg->conninfo)[cl] = '\0';
    snprintf(pg->node, sizeof(pg->node), "%s", p->node && *p->node ? p->node : "kmsd");
    snprintf(pg->sync_commit, sizeof(pg->sync_commit), "%s",
             p->synchronous_commit ? p->synchronous_commit : "on");
    snprintf(pg->connect_timeout, sizeof(pg->connect_timeout), "%d",
             p->connect_timeout_s > 0 ? p->connect_timeout_s : 2);
    pg->timeout_ms = p->timeout_ms > 0 ? p->timeout_ms : 5000;
    kmsd_db *db;
    if ((r = begin(st, &db, mode == KMSD_PG_CREATE)) < 0) {
        pg_close(st);
        return r;
    }
    if (mode == KMSD_PG_CREATE) {
        r = create_schema(db, mk);
        int c = pg_end(st, db, r == 0);
        if (r == 0)
            r = c;
    } else {
        r = read_meta(db, mk);
        (void)pg_end(st, db, 0);
    }
    if (r < 0) {
        pg_close(st);
        return r;
    }
    *out = st;
    return 0;
}

int kmsd_pg_read_conninfo(const char *path, vmseal_secret **out)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return vmseal_fail(errno, "database_conninfo_file %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return vmseal_fail(EINVAL, "database_conninfo_file %s: not a regular file", path);
    }
    if (sb.st_mode & (S_IRWXG | S_IRWXO)) {
        close(fd);
        return vmseal_fail(EPERM, "database_conninfo_file %s: mode %03o is group/world "
                           "accessible (it may hold a password); chmod 600 it", path,
                           (unsigned)(sb.st_mode & 0777));
    }
    vmseal_secret *raw;
    int r = vmseal_secret_read_fd(fd, CONNINFO_MAX, &raw);
    close(fd);
    if (r < 0)
        return vmseal_fail(-r, "database_conninfo_file %s: %s", path, vmseal_last_error());
    vmseal_secret *s = vmseal_secret_new(vmseal_secret_len(raw) + 1);
    if (!s) {
        vmseal_secret_free(raw);
        return vmseal_fail(ENOMEM, "database_conninfo_file %s: %s", path, vmseal_last_error());
    }
    /* drop '#' lines, join the others with spaces */
    const unsigned char *in = vmseal_secret_cdata(raw);
    unsigned char *o = vmseal_secret_data(s);
    size_t n = vmseal_secret_len(raw), k = 0;
    for (size_t i = 0; i < n;) {
        size_t e = i;
        while (e < n && in[e] != '\n')
            e++;
        size_t b = i;
        while (b < e && (in[b] == ' ' || in[b] == '\t' || in[b] == '\r'))
            b++;
        if (b < e && in[b] != '#') {
            if (k)
                o[k++] = ' ';
            size_t t = e;
            while (t > b && (in[t - 1] == ' ' || in[t - 1] == '\t' || in[t - 1] == '\r'))
                t--;
            memcpy(o + k, in + b, t - b);
            k += t - b;
        }
        i = e + 1;
    }
    vmseal_secret_free(raw);
    o[k] = '\0';
    if (k == 0 || memchr(o, '\0', k)) {
        vmseal_secret_free(s);
        return vmseal_fail(EINVAL, "database_conninfo_file %s: no connection string in it", path);
    }
    /* syntax check; libpq's message is not shown, it may quote a password */
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse((const char *)o, &err);
    if (!opts) {
        PQfreemem(err);
        vmseal_secret_free(s);
        return vmseal_fail(EINVAL, "database_conninfo_file %s: not a valid libpq connection "
                           "string (key=value pairs or a postgresql:// URI; the parser's message "
                           "is withheld as it may quote a password)", path);
    }
    PQconninfoFree(opts);
    vmseal_secret_truncate(s, k + 1);
    *out = s;
    return 0;
}

const kmsd_backend kmsd_pg_backend = {
    .name = "postgresql",
    .close = pg_close,
    .describe = pg_describe,
    .read_begin = pg_read_begin,
    .write_begin = pg_write_begin,
    .end = pg_end,
    .next_uid = pg_next_uid,
    .insert = pg_insert,
    .get = pg_get,
    .material = pg_material,
    .set_state = pg_set_state,
    .erase_material = pg_erase_material,
    .touch = pg_touch,
    .attrs = pg_attrs,
    .attr_put = pg_attr_put,
    .attr_next_index = pg_attr_next_index,
    .attr_count = pg_attr_count,
    .attr_delete = pg_attr_delete,
    .locate = pg_locate,
    .granted = pg_granted,
    .grant = pg_grant,
    .revoke_access = pg_revoke_access,
    .grants = pg_grants,
    .audit_append = pg_audit_append,
    .audit_read = pg_audit_read,
    .audit_head = pg_audit_head,
    .heartbeat = pg_heartbeat,
    .nodes = pg_nodes,
    .replication = pg_replication,
    .import_object = pg_insert,
};
