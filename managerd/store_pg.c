/* vmseal-managerd — PostgreSQL backend of the store (libpq). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include <vmseal/common.h>

#include "store.h"

static void notice_quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;   /* "relation already exists, skipping" and the like */
}

static int pg_open(const char *uri, void **out)
{
    *out = NULL;
    PGconn *c = PQconnectdb(uri);
    if (!c)
        return vmseal_fail(ENOMEM, "store: out of memory");
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[400];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
        msg[strcspn(msg, "\n")] = '\0';
        PQfinish(c);
        return vmseal_fail(ECONNREFUSED, "store: cannot connect to PostgreSQL: %s", msg);
    }
    PQsetNoticeProcessor(c, notice_quiet, NULL);
    *out = c;
    return 0;
}

static void pg_close(void *db)
{
    PQfinish(db);
}

static int pg_exec(void *db, const char *sql, size_t n, const char *const *params, store_rows **out)
{
    PGconn *c = db;
    if (PQstatus(c) != CONNECTION_OK) {
        PQreset(c);
        if (PQstatus(c) != CONNECTION_OK)
            return vmseal_fail(ECONNRESET, "store: PostgreSQL connection lost");
    }
    PGresult *res = PQexecParams(c, sql, (int)n, NULL, params, NULL, NULL, 0);
    if (!res)
        return vmseal_fail(ENOMEM, "store: %s", PQerrorMessage(c));
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        int e = EIO;
        if (state && strcmp(state, "23505") == 0)
            e = EEXIST;        /* unique_violation */
        else if (state && strncmp(state, "23", 2) == 0)
            e = EINVAL;        /* other integrity constraints */
        char msg[400];
        snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
        msg[strcspn(msg, "\n")] = '\0';
        PQclear(res);
        return vmseal_fail(e, "store: %s", msg);
    }
    int rc = 0;
    if (out) {
        int cols = PQnfields(res), rows = PQntuples(res);
        store_rows *r = store_rows_new((size_t)cols);
        if (!r) {
            PQclear(res);
            return vmseal_fail(ENOMEM, "store: out of memory");
        }
        const char *vals[64];
        size_t lens[64];
        if (cols > 64)
            cols = 64;
        for (int i = 0; i < rows; i++) {
            for (int k = 0; k < cols; k++) {
                vals[k] = PQgetisnull(res, i, k) ? NULL : PQgetvalue(res, i, k);
                lens[k] = (size_t)PQgetlength(res, i, k);
            }
            if (store_rows_add(r, vals, lens) < 0) {
                store_rows_free(r);
                PQclear(res);
                return vmseal_fail(ENOMEM, "store: out of memory");
            }
        }
        *out = r;
    } else {
        const char *t = PQcmdTuples(res);
        rc = t && *t ? atoi(t) : 0;
    }
    PQclear(res);
    return rc;
}

const struct store_backend_ops store_pg_ops = {
    .name = "postgresql",
    .open = pg_open,
    .close = pg_close,
    .exec = pg_exec,
    .id_type = "BIGSERIAL PRIMARY KEY",
    .big_type = "BIGINT",
};
