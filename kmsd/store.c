/* SQLite object store: schema, pooled connections, object/attribute/grant
 * queries (the backend table at the end; backup and restore in backup.c). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store.h"
#include "store_internal.h"

#define SCHEMA_VERSION 1

enum {
    S_BEGIN, S_BEGIN_IMM, S_COMMIT, S_ROLLBACK, S_SAVEPOINT, S_RELEASE, S_ROLLBACK_TO,
    S_NEXT_UID, S_INSERT, S_GET, S_MATERIAL, S_SET_STATE, S_ERASE, S_TOUCH,
    S_ATTRS_ALL, S_ATTRS_NAME, S_ATTR_PUT, S_ATTR_NEXT, S_ATTR_COUNT, S_ATTR_DEL, S_ATTR_DEL_ALL,
    S_GRANTED, S_GRANT, S_REVOKE, S_GRANTS,
    S_COUNT
};
_Static_assert(S_COUNT <= KMSD_STMT_MAX, "raise KMSD_STMT_MAX");

static const char *const sql_text[S_COUNT] = {
    [S_BEGIN] = "BEGIN",
    [S_BEGIN_IMM] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_SAVEPOINT] = "SAVEPOINT op",
    [S_RELEASE] = "RELEASE op",
    [S_ROLLBACK_TO] = "ROLLBACK TO op",
    [S_NEXT_UID] = "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name='objects'),0)+1",
    [S_INSERT] = "INSERT INTO objects(id, uid, owner, object_type, state, material, created,"
                 " changed, key_format, subtype, alg, bits) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
    [S_GET] = "SELECT uid, owner, object_type, state, created, changed, material IS NOT NULL,"
              " key_format, subtype, alg, bits FROM objects WHERE uid=?",
    [S_MATERIAL] = "SELECT material FROM objects WHERE uid=?",
    [S_SET_STATE] = "UPDATE objects SET state=?, changed=? WHERE uid=?",
    [S_ERASE] = "UPDATE objects SET material=NULL WHERE uid=?",
    [S_TOUCH] = "UPDATE objects SET changed=? WHERE uid=?",
    [S_ATTRS_ALL] = "SELECT name, idx, value FROM attributes WHERE uid=? ORDER BY name, idx",
    [S_ATTRS_NAME] = "SELECT name, idx, value FROM attributes WHERE uid=? AND name=? ORDER BY idx",
    [S_ATTR_PUT] = "INSERT OR REPLACE INTO attributes(uid, name, idx, value) VALUES(?,?,?,?)",
    [S_ATTR_NEXT] = "SELECT COALESCE(MAX(idx)+1, 0) FROM attributes WHERE uid=? AND name=?",
    [S_ATTR_COUNT] = "SELECT COUNT(*) FROM attributes WHERE uid=? AND name=?",
    [S_ATTR_DEL] = "DELETE FROM attributes WHERE uid=? AND name=? AND idx=?",
    [S_ATTR_DEL_ALL] = "DELETE FROM attributes WHERE uid=? AND name=?",
    [S_GRANTED] = "SELECT 1 FROM grants WHERE uid=? AND identity=?",
    [S_GRANT] = "INSERT OR IGNORE INTO grants(uid, identity) VALUES(?,?)",
    [S_REVOKE] = "DELETE FROM grants WHERE uid=? AND identity=?",
    [S_GRANTS] = "SELECT uid, identity FROM grants ORDER BY uid, identity",
};

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS objects("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " uid TEXT NOT NULL UNIQUE,"
    " owner TEXT NOT NULL,"
    " object_type INTEGER NOT NULL,"
    " state INTEGER NOT NULL,"
    " material BLOB,"
    " created INTEGER NOT NULL,"
    " changed INTEGER NOT NULL,"
    " key_format INTEGER NOT NULL DEFAULT 0,"
    " subtype INTEGER NOT NULL DEFAULT 0,"
    " alg INTEGER NOT NULL DEFAULT 0,"
    " bits INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS objects_owner ON objects(owner);"
    "CREATE TABLE IF NOT EXISTS attributes("
    " uid TEXT NOT NULL,"
    " name TEXT NOT NULL,"
    " idx INTEGER NOT NULL,"
    " value BLOB NOT NULL,"
    " PRIMARY KEY(uid, name, idx)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS attributes_value ON attributes(name, value);"
    "CREATE TABLE IF NOT EXISTS grants("
    " uid TEXT NOT NULL,"
    " identity TEXT NOT NULL,"
    " PRIMARY KEY(uid, identity)) WITHOUT ROWID;";


int kmsd_db_error(sqlite3 *h, const char *what)
{
    int code = h ? sqlite3_errcode(h) : SQLITE_ERROR;
    int e = (code == SQLITE_BUSY || code == SQLITE_LOCKED) ? EBUSY
            : (code == SQLITE_CORRUPT || code == SQLITE_NOTADB) ? EBADMSG
            : (code == SQLITE_FULL) ? ENOSPC
            : (code == SQLITE_CANTOPEN || code == SQLITE_PERM || code == SQLITE_READONLY) ? EACCES
                                                                                         : EIO;
    return vmseal_fail(e, "store: %s: %s", what, h ? sqlite3_errmsg(h) : "out of memory");
}

static sqlite3_stmt *stmt(kmsd_db *db, int id)
{
    if (!db->st[id]) {
        if (sqlite3_prepare_v3(db->h, sql_text[id], -1, SQLITE_PREPARE_PERSISTENT, &db->st[id],
                               NULL) != SQLITE_OK) {
            kmsd_db_error(db->h, "prepare");
            return NULL;
        }
    }
    sqlite3_reset(db->st[id]);
    sqlite3_clear_bindings(db->st[id]);
    return db->st[id];
}

static int exec_stmt(kmsd_db *db, int id, const char *what)
{
    sqlite3_stmt *s = stmt(db, id);
    if (!s)
        return -EIO;
    int r = sqlite3_step(s);
    sqlite3_reset(s);
    return (r == SQLITE_DONE || r == SQLITE_ROW) ? 0 : kmsd_db_error(db->h, what);
}

void kmsd_db_close(kmsd_db *db)
{
    if (!db)
        return;
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(db->st[i]);
    sqlite3_close(db->h);
    free(db);
}

int kmsd_db_open(const char *path, int flags, const char *journal, kmsd_db **out)
{
    *out = NULL;
    kmsd_db *db = calloc(1, sizeof(*db));
    if (!db)
        return -ENOMEM;
    db->be = &kmsd_sqlite_backend;
    if (sqlite3_open_v2(path, &db->h, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        int r = kmsd_db_error(db->h, "open");
        kmsd_db_close(db);
        return vmseal_fail(-r, "cannot open store %s: %s", path, vmseal_last_error());
    }
    sqlite3_busy_timeout(db->h, 10000);
    sqlite3_extended_result_codes(db->h, 0);
    char pragmas[256];
    if (flags & SQLITE_OPEN_READONLY)
        snprintf(pragmas, sizeof(pragmas), "PRAGMA foreign_keys=ON;");
    else
        snprintf(pragmas, sizeof(pragmas),
                 "PRAGMA journal_mode=%s; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
                 "PRAGMA secure_delete=ON;",
                 journal ? journal : "wal");
    char *msg = NULL;
    if (sqlite3_exec(db->h, pragmas, NULL, NULL, &msg) != SQLITE_OK) {
        int r = vmseal_fail(EIO, "store %s: %s", path, msg ? msg : "pragma failed");
        sqlite3_free(msg);
        kmsd_db_close(db);
        return r;
    }
    *out = db;
    return 0;
}

static int meta_get(kmsd_db *db, const char *k, uint8_t **v, size_t *len)
{
    sqlite3_stmt *s;
    *v = NULL;
    *len = 0;
    if (sqlite3_prepare_v2(db->h, "SELECT v FROM meta WHERE k=?", -1, &s, NULL) != SQLITE_OK)
        return kmsd_db_error(db->h, "meta");
    sqlite3_bind_text(s, 1, k, -1, SQLITE_STATIC);
    int r = sqlite3_step(s);
    int rc = -ENOENT;
    if (r == SQLITE_ROW) {
        int n = sqlite3_column_bytes(s, 0);
        const void *p = sqlite3_column_blob(s, 0);
        *v = malloc((size_t)n + 1);
        if (*v) {
            if (n)
                memcpy(*v, p, (size_t)n);
            (*v)[n] = 0;
            *len = (size_t)n;
            rc = 0;
        } else {
            rc = -ENOMEM;
        }
    } else if (r != SQLITE_DONE) {
        rc = kmsd_db_error(db->h, "meta");
    }
    sqlite3_finalize(s);
    return rc;
}

static int meta_put(kmsd_db *db, const char *k, const void *v, size_t len)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db->h, "INSERT OR REPLACE INTO meta(k, v) VALUES(?,?)", -1, &s,
                           NULL) != SQLITE_OK)
        return kmsd_db_error(db->h, "meta");
    sqlite3_bind_text(s, 1, k, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, v, (int)len, SQLITE_STATIC);
    int r = sqlite3_step(s);
    sqlite3_finalize(s);
    return r == SQLITE_DONE ? 0 : kmsd_db_error(db->h, "meta");
}

/* Verify (or, in a new store, record) that this master key opens the store. */
int kmsd_store_check_masterkey(kmsd_db *db, kmsd_masterkey *mk, int may_create)
{
    uint8_t *v;
    size_t len;
    int r = meta_get(db, "mk_check", &v, &len);
    if (r == -ENOENT) {
        if (!may_create)
            return vmseal_fail(EBADMSG, "store has no master key probe: not a vmseal-kmsd store");
        uint8_t *blob;
        size_t bl;
        if ((r = kmsd_probe_make(mk, &blob, &bl)) < 0)
            return r;
        r = meta_put(db, "mk_check", blob, bl);
        free(blob);
        if (r == 0) {
            char ver[8];
            snprintf(ver, sizeof(ver), "%d", SCHEMA_VERSION);
            r = meta_put(db, "schema", ver, strlen(ver));
        }
        return r;
    }
    if (r < 0)
        return r;
    r = kmsd_probe_check(mk, v, len);
    free(v);
    return r;
}

int kmsd_store_check_schema(kmsd_db *db)
{
    uint8_t *v;
    size_t len;
    int r = meta_get(db, "schema", &v, &len);
    if (r < 0)
        return vmseal_fail(EBADMSG, "not a vmseal-kmsd store (no schema version)");
    int ver = atoi((char *)v);
    free(v);
    if (ver != SCHEMA_VERSION)
        return vmseal_fail(ENOTSUP, "store schema version %d is not supported (want %d)", ver,
                           SCHEMA_VERSION);
    return 0;
}

int kmsd_store_open(const char *path, const char *journal_mode, kmsd_masterkey *mk, int create,
                    kmsd_store **out)
{
    *out = NULL;
    struct stat sb;
    int exists = stat(path, &sb) == 0;
    if (!exists && !create)
        return vmseal_fail(ENOENT, "store %s does not exist", path);
    kmsd_store *st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    st->be = &kmsd_sqlite_backend;
    st->path = strdup(path);
    st->journal = strdup(journal_mode ? journal_mode : "wal");
    st->mk = mk;
    pthread_mutex_init(&st->wlock, NULL);
    pthread_cond_init(&st->committed, NULL);
    pthread_mutex_init(&st->plock, NULL);
    if (!exists) {
        /* create it private from the start */
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) {
            int e = errno;
            kmsd_store_close(st);
            return vmseal_fail(e, "cannot create store %s: %s", path, strerror(e));
        }
        close(fd);
    }
    int r = kmsd_db_open(path, SQLITE_OPEN_READWRITE, st->journal, &st->writer);
    if (r < 0) {
        kmsd_store_close(st);
        return r;
    }
    st->writer->writer = 1;
    char *msg = NULL;
    if (sqlite3_exec(st->writer->h, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(st->writer->h, schema_sql, NULL, NULL, &msg) != SQLITE_OK) {
        r = vmseal_fail(EIO, "store %s: %s", path, msg ? msg : "schema failed");
        sqlite3_free(msg);
        sqlite3_exec(st->writer->h, "ROLLBACK", NULL, NULL, NULL);
        kmsd_store_close(st);
        return r;
    }
    r = kmsd_store_check_masterkey(st->writer, mk, !exists || create);
    if (r == 0)
        r = kmsd_store_check_schema(st->writer);
    if (r < 0) {
        sqlite3_exec(st->writer->h, "ROLLBACK", NULL, NULL, NULL);
        kmsd_store_close(st);
        return r;
    }
    if (sqlite3_exec(st->writer->h, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
        r = vmseal_fail(EIO, "store %s: %s", path, msg ? msg : "commit failed");
        sqlite3_free(msg);
        kmsd_store_close(st);
        return r;
    }
    *out = st;
    return 0;
}

static void sq_close(kmsd_store *st)
{
    if (!st)
        return;
    for (int i = 0; i < st->n_pool; i++)
        kmsd_db_close(st->pool[i]);
    kmsd_db_close(st->writer);
    pthread_mutex_destroy(&st->wlock);
    pthread_cond_destroy(&st->committed);
    pthread_mutex_destroy(&st->plock);
    free(st->path);
    free(st->journal);
    free(st);
}

static int sq_read_begin(kmsd_store *st, kmsd_db **out)
{
    kmsd_db *db = NULL;
    pthread_mutex_lock(&st->plock);
    if (st->n_pool > 0)
        db = st->pool[--st->n_pool];
    pthread_mutex_unlock(&st->plock);
    if (!db) {
        int r = kmsd_db_open(st->path, SQLITE_OPEN_READWRITE, st->journal, &db);
        if (r < 0)
            return r;
    }
    int r = exec_stmt(db, S_BEGIN, "begin");
    if (r < 0) {
        kmsd_db_close(db);
        return r;
    }
    *out = db;
    return 0;
}

/* Group commit. Each write runs in a SAVEPOINT inside one shared write
 * transaction. When a writer finishes and others are queued for the writer
 * connection, it leaves the commit to them and waits; the last writer of a
 * burst (or one finding the transaction over 64 changes or 2 ms old) commits
 * everything with one fsync and wakes the rest. kmsd_store_end() returns
 * only once the caller's change is durable (synchronous=FULL). */
#define GROUP_MAX 64
#define GROUP_MAX_NS 2000000

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* With wlock held: commit the open transaction and wake its waiters. */
static int group_commit(kmsd_store *st)
{
    int r = exec_stmt(st->writer, S_COMMIT, "commit");
    if (r < 0)
        (void)exec_stmt(st->writer, S_ROLLBACK, "rollback");
    st->gen_rc[st->gen % 64] = r;
    st->gen++;
    st->done_gen = st->gen;
    st->txn_open = 0;
    st->pending = 0;
    pthread_cond_broadcast(&st->committed);
    return r;
}

static int sq_write_begin(kmsd_store *st, kmsd_db **out)
{
    atomic_fetch_add(&st->queued, 1);
    pthread_mutex_lock(&st->wlock);
    atomic_fetch_sub(&st->queued, 1);
    int r = 0;
    if (!st->txn_open) {
        r = exec_stmt(st->writer, S_BEGIN_IMM, "begin");
        if (r == 0) {
            st->txn_open = 1;
            st->pending = 0;
            st->txn_start_ns = mono_ns();
        }
    }
    if (r == 0) {
        r = exec_stmt(st->writer, S_SAVEPOINT, "savepoint");
        if (r < 0 && st->pending)
            (void)group_commit(st);
    }
    if (r < 0) {
        pthread_mutex_unlock(&st->wlock);
        return r;
    }
    *out = st->writer;
    return 0;
}

static int write_end(kmsd_store *st, int commit)
{
    int r = 0;
    if (commit) {
        r = exec_stmt(st->writer, S_RELEASE, "release");
        if (r < 0)
            commit = 0;
    }
    if (!commit) {
        (void)exec_stmt(st->writer, S_ROLLBACK_TO, "rollback");
        (void)exec_stmt(st->writer, S_RELEASE, "release");
    }
    int must_commit = atomic_load(&st->queued) == 0 || st->pending + commit >= GROUP_MAX ||
                      mono_ns() - st->txn_start_ns > GROUP_MAX_NS;
    if (!commit) {
        /* nothing of ours to make durable; close the group if we are last */
        if (must_commit) {
            if (st->pending)
                (void)group_commit(st);
            else if (st->txn_open) {
                (void)exec_stmt(st->writer, S_ROLLBACK, "rollback");
                st->txn_open = 0;
            }
        }
        pthread_mutex_unlock(&st->wlock);
        return r;
    }
    st->pending++;
    uint64_t mine = st->gen;
    if (must_commit) {
        r = group_commit(st);
    } else {
        while (st->done_gen <= mine)
            pthread_cond_wait(&st->committed, &st->wlock);
        r = st->gen_rc[mine % 64];
    }
    pthread_mutex_unlock(&st->wlock);
    return r;
}

static int sq_end(kmsd_store *st, kmsd_db *db, int commit)
{
    if (db->writer)
        return write_end(st, commit);
    (void)exec_stmt(db, S_ROLLBACK, "rollback"); /* read transactions end */
    pthread_mutex_lock(&st->plock);
    if (st->n_pool < KMSD_POOL_MAX) {
        st->pool[st->n_pool++] = db;
        db = NULL;
    }
    pthread_mutex_unlock(&st->plock);
    kmsd_db_close(db);
    return 0;
}

/* ---- objects ------------------------------------------------------------- */

static int sq_next_uid(kmsd_db *db, char uid[KMSD_UID_MAX])
{
    sqlite3_stmt *s = stmt(db, S_NEXT_UID);
    if (!s)
        return -EIO;
    if (sqlite3_step(s) != SQLITE_ROW)
        return kmsd_db_error(db->h, "next id");
    snprintf(uid, KMSD_UID_MAX, "%" PRId64, (int64_t)sqlite3_column_int64(s, 0));
    sqlite3_reset(s);
    return 0;
}

static int sq_insert(kmsd_db *db, const kmsd_obj *o, const uint8_t *wrapped, size_t len)
{
    sqlite3_stmt *s = stmt(db, S_INSERT);
    if (!s)
        return -EIO;
    char *end;
    long long id = strtoll(o->uid, &end, 10);
    if (*end || id <= 0)
        return vmseal_fail(EINVAL, "store: bad unique identifier %s", o->uid);
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_text(s, 2, o->uid, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, o->owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, o->object_type);
    sqlite3_bind_int64(s, 5, o->state);
    if (wrapped)
        sqlite3_bind_blob(s, 6, wrapped, (int)len, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 6);
    sqlite3_bind_int64(s, 7, o->created);
    sqlite3_bind_int64(s, 8, o->changed);
    sqlite3_bind_int64(s, 9, o->key_format);
    sqlite3_bind_int64(s, 10, o->subtype);
    sqlite3_bind_int64(s, 11, o->alg);
    sqlite3_bind_int64(s, 12, o->bits);
    int r = sqlite3_step(s);
    sqlite3_reset(s);
    return r == SQLITE_DONE ? 0 : kmsd_db_error(db->h, "insert");
}

static int sq_get(kmsd_db *db, const char *uid, kmsd_obj *o)
{
    sqlite3_stmt *s = stmt(db, S_GET);
    if (!s)
        return -EIO;
    sqlite3_bind_text(s, 1, uid, -1, SQLITE_STATIC);
    int r = sqlite3_step(s);
    if (r == SQLITE_DONE) {
        sqlite3_reset(s);
        return -ENOENT;
    }
    if (r != SQLITE_ROW)
        return kmsd_db_error(db->h, "get");
    memset(o, 0, sizeof(*o));
    snprintf(o->uid, sizeof(o->uid), "%s", (const char *)sqlite3_column_text(s, 0));
    snprintf(o->owner, sizeof(o->owner), "%s", (const char *)sqlite3_column_text(s, 1));
    o->object_type = (uint32_t)sqlite3_column_int64(s, 2);
    o->state = (uint32_t)sqlite3_column_int64(s, 3);
    o->created = sqlite3_column_int64(s, 4);
    o->changed = sqlite3_column_int64(s, 5);
    o->has_material = sqlite3_column_int(s, 6);
    o->key_format = (uint32_t)sqlite3_column_int64(s, 7);
    o->subtype = (uint32_t)sqlite3_column_int64(s, 8);
    o->alg = (uint32_t)sqlite3_column_int64(s, 9);
    o->bits = (int32_t)sqlite3_column_int64(s, 10);
    sqlite3_reset(s);
    return 0;
}

static int sq_material(kmsd_db *db, const char *uid, uint8_t **blob, size_t *len)
{
    *blob = NULL;
    *len = 0;
    sqlite3_stmt *s = stmt(db, S_MATERIAL);
    if (!s)
        return -EIO;
    sqlite3_bind_text(s, 1, uid, -1, SQLITE_STATIC);
    int r = sqlite3_step(s);
    if (r != SQLITE_ROW) {
        sqlite3_reset(s);
        return r == SQLITE_DONE ? -ENOENT : kmsd_db_error(db->h, "material");
    }
    int n = sqlite3_column_bytes(s, 0);
    const void *p = sqlite3_column_blob(s, 0);
    if (!p || n <= 0) {
        sqlite3_reset(s);
        return -ENODATA;
    }
    *blob = malloc((size_t)n);
    if (!*blob) {
        sqlite3_reset(s);
        return -ENOMEM;
    }
    memcpy(*blob, p, (size_t)n);
    *len = (size_t)n;
    sqlite3_reset(s);
    return 0;
}

static int update_uid(kmsd_db *db, int id, const char *uid, int64_t a, int64_t b, int nbind,
                      const char *what)
{
    sqlite3_stmt *s = stmt(db, id);
    if (!s)
        return -EIO;
    int i = 1;
    if (nbind >= 1)
        sqlite3_bind_int64(s, i++, a);
    if (nbind >= 2)
        sqlite3_bind_int64(s, i++, b);
    sqlite3_bind_text(s, i, uid, -1, SQLITE_STATIC);
    int r = sqlite3_step(s);
    sqlite3_reset(s);
    if (r != SQLITE_DONE)
        return kmsd_db_error(db->h, what);
    return sqlite3_changes(db->h) ? 0 : -ENOENT;
}

static int sq_set_state(kmsd_db *db, const char *uid, uint32_t state, int64_t now)
{
    return update_uid(db, S_SET_STATE, uid, state, now, 2, "set state");
}

static int sq_erase_material(kmsd_db *db, const char *uid)
{
    return update_uid(db, S_ERASE, uid, 0, 0, 0, "erase");
}

static int sq_touch(kmsd_db *db, const char *uid, int64_t now)
{
    return update_uid(db, S_TOUCH, uid, now, 0, 1, "touch");
}

/* ---- attributes ---------------------------------------------------------- */

static int sq_attrs(kmsd_db *db, const char *uid, const char *name, kmsd_attr_cb cb, void *ctx)
{
    sqlite3_stmt *s = stmt(db, name ? S_ATTRS_NAME : S_ATTRS_ALL);
    if (!s)
        return -EIO;
    sqlite3_bind_text(s, 1, uid, -1, SQLITE_STATIC);
    if (name)
        sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
    int r, n = 0;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        int c = cb(ctx, (const char *)sqlite3_column_text(s, 0), sqlite3_column_int(s, 1),
                   sqlite3_column_blob(s, 2), (size_t)sqlite3_column_bytes(s, 2));
        if (c < 0) {
            sqlite3_reset(s);
            return c;
        }
        n++;
    }
    sqlite3_reset(s);
    return r == SQLITE_DONE ? n : kmsd_db_error(db->h, "attributes");
}

static int sq_attr_put(kmsd_db *db, const char *uid, const char *name, int idx, const uint8_t *v,
                     size_t len)
{
    sqlite3_stmt *s = stmt(db, S_ATTR_PUT);
    if (!s)
        return -EIO;
    sqlite3_bind_text(s, 1, uid, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, idx);
    sqlite3_bind_blob(s, 4, v, (int)len, SQLITE_STATIC);
    int r = sqlite3_step(s);
    sqlite3_reset(s);
    return r == SQLITE_DONE ? 0 : kmsd_db_error(db->h, "attribute");
}

static int count_query(kmsd_db *db, int id, const char *uid, const char *name)
{
    sqlite3_stmt *s = stmt(db, id);
    if (!s)
        return -EIO;
    sqlite3_bind_text(s, 1, uid, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
    int r = sqlite3_step(s);
    int v = r == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
    sqlite3_reset(s);
    return v >= 0 ? v : kmsd_db_error(db->h, "attribute");
}

static int sq_attr_next_index(kmsd_db *db, const char *uid, const char *name)
{
    return count_query(db, S_ATTR_NEXT, uid, name);
}

static int sq_attr_count(kmsd_db *db, const char *uid, const char *name)
{
    return count_query(db, S_ATTR_COUNT, uid, name);
}

static int sq_attr_delete(kmsd_db *db, const char *uid, const char *name, int idx)
{
    sqlite3_stmt *s = stmt(db, idx < 0 ? S_ATTR_DEL_ALL : S_ATTR_DEL);
    if (!s)
        return -EIO;
    sqlite3_bind_text(s, 1, uid, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
    if (idx >= 0)
        sqlite3_bind_int(s, 3, idx);
    int r = sqlite3_step(s);
    sqlite3_reset(s);
    return r == SQLITE_DONE ? sqlite3_changes(db->h) : kmsd_db_error(db->h, "attribute");
}

/* ---- locate -------------------------------------------------------------- */

static int sq_locate(kmsd_db *db, const char *identity, uint32_t object_type, uint32_t state,
                   const kmsd_filter *filters, size_t n_filters, int64_t max_items,
                   int64_t offset, kmsd_uid_cb cb, void *ctx)
{
    if (n_filters > 64)
        return vmseal_fail(EINVAL, "locate: too many attributes");
    char sql[8192];
    size_t n = (size_t)snprintf(sql, sizeof(sql), "SELECT o.uid FROM objects o WHERE 1");
    if (identity)
        n += (size_t)snprintf(sql + n, sizeof(sql) - n,
                              " AND (o.owner=?1 OR EXISTS(SELECT 1 FROM grants g"
                              " WHERE g.uid=o.uid AND g.identity=?1))");
    if (object_type)
        n += (size_t)snprintf(sql + n, sizeof(sql) - n, " AND o.object_type=?2");
    if (state)
        n += (size_t)snprintf(sql + n, sizeof(sql) - n, " AND o.state=?3");
    for (size_t i = 0; i < n_filters; i++)
        n += (size_t)snprintf(sql + n, sizeof(sql) - n,
                              " AND EXISTS(SELECT 1 FROM attributes a WHERE a.uid=o.uid"
                              " AND a.name=?%zu AND a.value=?%zu)",
                              6 + 2 * i, 7 + 2 * i);
    snprintf(sql + n, sizeof(sql) - n, " ORDER BY o.id LIMIT ?4 OFFSET ?5");
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db->h, sql, -1, &s, NULL) != SQLITE_OK)
        return kmsd_db_error(db->h, "locate");
    if (identity)
        sqlite3_bind_text(s, 1, identity, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, object_type);
    sqlite3_bind_int64(s, 3, state);
    sqlite3_bind_int64(s, 4, max_items > 0 ? max_items : -1);
    sqlite3_bind_int64(s, 5, offset > 0 ? offset : 0);
    for (size_t i = 0; i < n_filters; i++) {
        sqlite3_bind_text(s, (int)(6 + 2 * i), filters[i].name, -1, SQLITE_STATIC);
        sqlite3_bind_blob(s, (int)(7 + 2 * i), filters[i].value, (int)filters[i].len,
                          SQLITE_STATIC);
    }
    int r, count = 0;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        int c = cb(ctx, (const char *)sqlite3_column_text(s, 0));
        if (c < 0) {
            sqlite3_finalize(s);
            return c;
        }
        count++;
    }
    sqlite3_finalize(s);
    return r == SQLITE_DONE ? count : kmsd_db_error(db->h, "locate");
}

/* ---- grants -------------------------------------------------------------- */

static int grant_stmt(kmsd_db *db, int id, const char *uid, const char *identity, const char *w)
{
    sqlite3_stmt *s = stmt(db, id);
    if (!s)
        return -EIO;
    sqlite3_bind_text(s, 1, uid, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, identity, -1, SQLITE_STATIC);
    int r = sqlite3_step(s);
    sqlite3_reset(s);
    if (r == SQLITE_ROW)
        return 1;
    if (r != SQLITE_DONE)
        return kmsd_db_error(db->h, w);
    return id == S_GRANTED ? 0 : sqlite3_changes(db->h);
}

static int sq_granted(kmsd_db *db, const char *uid, const char *identity)
{
    return grant_stmt(db, S_GRANTED, uid, identity, "grant lookup");
}

static int sq_grant(kmsd_db *db, const char *uid, const char *identity)
{
    int r = grant_stmt(db, S_GRANT, uid, identity, "grant");
    return r < 0 ? r : 0;
}

static int sq_revoke_access(kmsd_db *db, const char *uid, const char *identity)
{
    return grant_stmt(db, S_REVOKE, uid, identity, "revoke access");
}

static int sq_grants(kmsd_db *db, kmsd_grant_cb cb, void *ctx)
{
    sqlite3_stmt *s = stmt(db, S_GRANTS);
    if (!s)
        return -EIO;
    int r, n = 0;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        int c = cb(ctx, (const char *)sqlite3_column_text(s, 0),
                   (const char *)sqlite3_column_text(s, 1));
        if (c < 0) {
            sqlite3_reset(s);
            return c;
        }
        n++;
    }
    sqlite3_reset(s);
    return r == SQLITE_DONE ? n : kmsd_db_error(db->h, "grants");
}

static void sq_describe(kmsd_store *st, char *buf, size_t len)
{
    snprintf(buf, len, "%s (%s journal)", st->path, st->journal);
}

const kmsd_backend kmsd_sqlite_backend = {
    .name = "sqlite",
    .close = sq_close,
    .describe = sq_describe,
    .read_begin = sq_read_begin,
    .write_begin = sq_write_begin,
    .end = sq_end,
    .next_uid = sq_next_uid,
    .insert = sq_insert,
    .get = sq_get,
    .material = sq_material,
    .set_state = sq_set_state,
    .erase_material = sq_erase_material,
    .touch = sq_touch,
    .attrs = sq_attrs,
    .attr_put = sq_attr_put,
    .attr_next_index = sq_attr_next_index,
    .attr_count = sq_attr_count,
    .attr_delete = sq_attr_delete,
    .locate = sq_locate,
    .granted = sq_granted,
    .grant = sq_grant,
    .revoke_access = sq_revoke_access,
    .grants = sq_grants,
};
