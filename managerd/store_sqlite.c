/* vmseal-managerd — SQLite backend of the store. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include <vmseal/common.h>

#include "store.h"

static int sq_open(const char *uri, void **out)
{
    *out = NULL;
    /* Create the file 0600 first: it holds password hashes and tokens. */
    int fd = open(uri, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return vmseal_fail(errno, "store: cannot open %s: %s", uri, strerror(errno));
    close(fd);
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(uri, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL);
    if (rc != SQLITE_OK) {
        int e = vmseal_fail(EIO, "store: cannot open %s: %s", uri,
                            db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return e;
    }
    sqlite3_busy_timeout(db, 5000);
    sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
    sqlite3_exec(db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
    sqlite3_exec(db, "PRAGMA foreign_keys=ON", NULL, NULL, NULL);
    *out = db;
    return 0;
}

static void sq_close(void *db)
{
    sqlite3_close(db);
}

/* $N → ?N (SQLite reads $1 as a named parameter otherwise). */
static char *placeholders(const char *sql)
{
    char *out = strdup(sql);
    if (!out)
        return NULL;
    int in_str = 0;
    for (char *p = out; *p; p++) {
        if (*p == '\'')
            in_str = !in_str;
        else if (!in_str && *p == '$' && p[1] >= '1' && p[1] <= '9')
            *p = '?';
    }
    return out;
}

static int sq_exec(void *dbp, const char *sql, size_t n, const char *const *params, store_rows **out)
{
    sqlite3 *db = dbp;
    char *q = placeholders(sql);
    if (!q)
        return vmseal_fail(ENOMEM, "store: out of memory");
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, q, -1, &st, NULL);
    free(q);
    if (rc != SQLITE_OK)
        return vmseal_fail(EIO, "store: %s", sqlite3_errmsg(db));
    for (size_t i = 0; i < n; i++) {
        rc = params[i] ? sqlite3_bind_text(st, (int)i + 1, params[i], -1, SQLITE_TRANSIENT)
                       : sqlite3_bind_null(st, (int)i + 1);
        if (rc != SQLITE_OK) {
            sqlite3_finalize(st);
            return vmseal_fail(EINVAL, "store: bind %zu: %s", i + 1, sqlite3_errmsg(db));
        }
    }
    int cols = sqlite3_column_count(st);
    store_rows *rows = NULL;
    if (out) {
        rows = store_rows_new((size_t)cols);
        if (!rows) {
            sqlite3_finalize(st);
            return vmseal_fail(ENOMEM, "store: out of memory");
        }
    }
    const char *vals[64];
    size_t lens[64];
    if (cols > 64)
        cols = 64;
    for (;;) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
            break;
        if (rc != SQLITE_ROW) {
            int ext = sqlite3_extended_errcode(db);
            int e = (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY)
                        ? EEXIST
                        : (rc == SQLITE_CONSTRAINT ? EINVAL : (rc == SQLITE_BUSY ? EBUSY : EIO));
            vmseal_fail(e, "store: %s", sqlite3_errmsg(db));
            sqlite3_finalize(st);
            store_rows_free(rows);
            return -e;
        }
        if (!rows)
            continue;
        for (int c = 0; c < cols; c++) {
            vals[c] = (const char *)sqlite3_column_text(st, c);
            lens[c] = (size_t)sqlite3_column_bytes(st, c);
        }
        if (store_rows_add(rows, vals, lens) < 0) {
            sqlite3_finalize(st);
            store_rows_free(rows);
            return vmseal_fail(ENOMEM, "store: out of memory");
        }
    }
    sqlite3_finalize(st);
    if (out) {
        *out = rows;
        return 0;
    }
    return sqlite3_changes(db);
}

const struct store_backend_ops store_sqlite_ops = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .exec = sq_exec,
    .id_type = "INTEGER PRIMARY KEY AUTOINCREMENT",
    .big_type = "INTEGER",
};
