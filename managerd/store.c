/* vmseal-managerd — store front end: backend choice, schema, locking,
 * transactions, result sets. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmseal/common.h>

#include "store.h"

struct store {
    const struct store_backend_ops *ops;
    void *db;
    pthread_mutex_t lock;
    int in_tx;
};

struct store_rows {
    size_t cols, rows, cap;
    char **cells;   /* rows * cols, NULL for SQL NULL */
};

/* The whole schema. Names are chosen to be plain SQL in both dialects. */
static const char *const schema[] = {
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS roles (name TEXT PRIMARY KEY, privileges TEXT NOT NULL, "
    "builtin INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS users (id {ID}, name TEXT NOT NULL UNIQUE, "
    "role TEXT NOT NULL REFERENCES roles(name), pwhash TEXT NOT NULL, created {BIG} NOT NULL, "
    "pw_changed {BIG} NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sessions (token_hash TEXT PRIMARY KEY, "
    "user_name TEXT NOT NULL, created {BIG} NOT NULL, expires {BIG} NOT NULL)",
    "CREATE TABLE IF NOT EXISTS events (id {ID}, time {BIG} NOT NULL, user_name TEXT NOT NULL, "
    "action TEXT NOT NULL, object TEXT NOT NULL, old_value TEXT, new_value TEXT, "
    "source TEXT NOT NULL DEFAULT '-', result TEXT NOT NULL DEFAULT 'ok', prev_hash TEXT, hash TEXT)",
    "CREATE TABLE IF NOT EXISTS kms_providers (name TEXT PRIMARY KEY, is_default INTEGER NOT NULL "
    "DEFAULT 0, ca_pem TEXT, client_cert_pem TEXT, client_key_file TEXT, csr_pem TEXT, "
    "kmip_user TEXT, created {BIG} NOT NULL)",
    "CREATE TABLE IF NOT EXISTS kms_servers (provider TEXT NOT NULL REFERENCES "
    "kms_providers(name) ON DELETE CASCADE, pos INTEGER NOT NULL, address TEXT NOT NULL, "
    "PRIMARY KEY (provider, pos))",
    "CREATE TABLE IF NOT EXISTS hosts (name TEXT PRIMARY KEY, url TEXT NOT NULL, "
    "datastore TEXT NOT NULL, subject TEXT NOT NULL, fingerprint TEXT NOT NULL, "
    "registered {BIG} NOT NULL, last_seen {BIG} NOT NULL, default_policy TEXT NOT NULL DEFAULT 'none', "
    "pending_fingerprint TEXT, pending_subject TEXT, custody_key TEXT)",
    "CREATE TABLE IF NOT EXISTS vms (uuid TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
    "host TEXT NOT NULL, spec TEXT NOT NULL, policy TEXT NOT NULL, kek_id TEXT, provider TEXT, "
    "created {BIG} NOT NULL, folder TEXT NOT NULL DEFAULT '', gen INTEGER NOT NULL DEFAULT 0, "
    "host_view TEXT)",
    "CREATE TABLE IF NOT EXISTS keks (kek_id TEXT NOT NULL, provider TEXT NOT NULL, "
    "vm_uuid TEXT NOT NULL, state TEXT NOT NULL, created {BIG} NOT NULL, "
    "PRIMARY KEY (provider, kek_id))",
    "CREATE TABLE IF NOT EXISTS tasks (id {ID}, vm_uuid TEXT NOT NULL, action TEXT NOT NULL, "
    "host TEXT NOT NULL, host_task TEXT, state TEXT NOT NULL, progress INTEGER NOT NULL, "
    "error TEXT, user_name TEXT NOT NULL, params TEXT NOT NULL, created {BIG} NOT NULL, "
    "updated {BIG} NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_try {BIG} NOT NULL DEFAULT 0)",
    /* schema 2: groups, permissions on objects, failed logins */
    "CREATE TABLE IF NOT EXISTS groups (name TEXT PRIMARY KEY, created {BIG} NOT NULL)",
    "CREATE TABLE IF NOT EXISTS group_members (group_name TEXT NOT NULL REFERENCES groups(name) "
    "ON DELETE CASCADE, user_name TEXT NOT NULL, PRIMARY KEY (group_name, user_name))",
    "CREATE TABLE IF NOT EXISTS permissions (principal TEXT NOT NULL, is_group INTEGER NOT NULL, "
    "object TEXT NOT NULL, role TEXT NOT NULL REFERENCES roles(name), propagate INTEGER NOT NULL, "
    "created {BIG} NOT NULL, PRIMARY KEY (principal, is_group, object))",
    "CREATE TABLE IF NOT EXISTS revoked_certs (fingerprint TEXT PRIMARY KEY, host TEXT NOT NULL, "
    "revoked {BIG} NOT NULL)",
    "CREATE TABLE IF NOT EXISTS login_failures (user_name TEXT PRIMARY KEY, failures INTEGER NOT NULL, "
    "first {BIG} NOT NULL, locked_until {BIG} NOT NULL)",
    /* KEKs waiting for their destruction, orphans for their revocation
     * (key_retire.c): since when */
    "CREATE TABLE IF NOT EXISTS kek_retire (provider TEXT NOT NULL, kek_id TEXT NOT NULL, "
    "since {BIG} NOT NULL, PRIMARY KEY (provider, kek_id))",
};

/* Steps from one schema version to the next: schema 1 -> 2 adds the event
 * chain and source/result, VM folders, and renames RecryptVM. The new
 * tables above exist already (CREATE IF NOT EXISTS). */
static const char *const migrate_1_2[] = {
    "ALTER TABLE events ADD COLUMN source TEXT NOT NULL DEFAULT '-'",
    "ALTER TABLE events ADD COLUMN result TEXT NOT NULL DEFAULT 'ok'",
    "ALTER TABLE events ADD COLUMN prev_hash TEXT",
    "ALTER TABLE events ADD COLUMN hash TEXT",
    "ALTER TABLE vms ADD COLUMN folder TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE hosts ADD COLUMN default_policy TEXT NOT NULL DEFAULT 'none'",
    "ALTER TABLE hosts ADD COLUMN pending_fingerprint TEXT",
    "ALTER TABLE hosts ADD COLUMN pending_subject TEXT",
    "ALTER TABLE hosts ADD COLUMN custody_key TEXT",
    "UPDATE roles SET privileges = REPLACE(privileges, 'Cryptographer.RecryptVM', 'Cryptographer.Recrypt')",
    NULL,
};

/* Schema 2 -> 3: task intents (docs/architecture.md,
 * "Intents and reconciliation"): how often a task was tried and when it is
 * tried next; a VM's change counter (gen: a reconciliation applies what a
 * host said only if nothing changed the VM meanwhile) and the host's view
 * last compared (host_view: a disagreement is reported once). */
static const char *const migrate_2_3[] = {
    "ALTER TABLE tasks ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE tasks ADD COLUMN next_try {BIG} NOT NULL DEFAULT 0",
    "ALTER TABLE vms ADD COLUMN gen INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE vms ADD COLUMN host_view TEXT",
    NULL,
};

/* migrations[v - 1]: the steps from schema v to v + 1 */
static const char *const *const migrations[] = {migrate_1_2, migrate_2_3};

/* ------------------------------------------------------------- results */

store_rows *store_rows_new(size_t columns)
{
    store_rows *r = calloc(1, sizeof(*r));
    if (r)
        r->cols = columns;
    return r;
}

int store_rows_add(store_rows *r, const char *const *values, const size_t *lens)
{
    if (r->rows == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        char **nc = realloc(r->cells, cap * (r->cols ? r->cols : 1) * sizeof(char *));
        if (!nc)
            return -ENOMEM;
        r->cells = nc;
        r->cap = cap;
    }
    for (size_t c = 0; c < r->cols; c++) {
        char *v = NULL;
        if (values[c]) {
            v = malloc(lens[c] + 1);
            if (!v) {
                for (size_t k = 0; k < c; k++)
                    free(r->cells[r->rows * r->cols + k]);
                return -ENOMEM;
            }
            memcpy(v, values[c], lens[c]);
            v[lens[c]] = '\0';
        }
        r->cells[r->rows * r->cols + c] = v;
    }
    r->rows++;
    return 0;
}

size_t store_rows_count(const store_rows *r)
{
    return r ? r->rows : 0;
}

size_t store_rows_columns(const store_rows *r)
{
    return r ? r->cols : 0;
}

const char *store_rows_get(const store_rows *r, size_t row, size_t col)
{
    if (!r || row >= r->rows || col >= r->cols)
        return NULL;
    return r->cells[row * r->cols + col];
}

void store_rows_free(store_rows *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->rows * r->cols; i++)
        free(r->cells[i]);
    free(r->cells);
    free(r);
}

/* ---------------------------------------------------------------- core */

static char *dialect(const struct store_backend_ops *ops, const char *sql)
{
    size_t n = strlen(sql) + 1;
    size_t extra = strlen(ops->id_type) + strlen(ops->big_type);
    char *out = malloc(n + 8 * extra);
    if (!out)
        return NULL;
    char *o = out;
    for (const char *p = sql; *p;) {
        if (strncmp(p, "{ID}", 4) == 0) {
            o = stpcpy(o, ops->id_type);
            p += 4;
        } else if (strncmp(p, "{BIG}", 5) == 0) {
            o = stpcpy(o, ops->big_type);
            p += 5;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return out;
}

int store_exec(store *s, const char *sql, size_t n, const char *const *params, store_rows **out)
{
    if (out)
        *out = NULL;
    pthread_mutex_lock(&s->lock);
    int rc = s->ops->exec(s->db, sql, n, params, out);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

const char store_end_marker[] = "";

int store_execv(store *s, store_rows **out, const char *sql, ...)
{
    const char *params[16];
    size_t n = 0;
    va_list ap;
    va_start(ap, sql);
    for (const char *p; (p = va_arg(ap, const char *)) != STORE_END;) {
        if (n == 16) {
            va_end(ap);
            return vmseal_fail(E2BIG, "store: too many parameters");
        }
        params[n++] = p;
    }
    va_end(ap);
    return store_exec(s, sql, n, params, out);
}

int store_tx(store *s, int (*fn)(store *s, void *arg), void *arg)
{
    pthread_mutex_lock(&s->lock);
    if (s->in_tx) {
        /* inside this thread's transaction (the lock is held): part of it;
         * the outer one commits or rolls back */
        int rc = fn(s, arg);
        pthread_mutex_unlock(&s->lock);
        return rc;
    }
    s->in_tx = 1;
    int rc = s->ops->exec(s->db, "BEGIN", 0, NULL, NULL);
    if (rc >= 0) {
        rc = fn(s, arg);
        if (rc >= 0) {
            int c = s->ops->exec(s->db, "COMMIT", 0, NULL, NULL);
            if (c < 0)
                rc = c;
        } else {
            char saved[512];
            snprintf(saved, sizeof(saved), "%s", vmseal_last_error());
            (void)s->ops->exec(s->db, "ROLLBACK", 0, NULL, NULL);
            vmseal_fail(-rc, "%s", saved);
        }
    }
    s->in_tx = 0;
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* For "ALTER TABLE T ADD COLUMN C ...": 1 when table T has column C. */
static int column_exists(store *s, const char *stmt)
{
    char t[64], c[64];
    if (sscanf(stmt, "ALTER TABLE %63s ADD COLUMN %63s", t, c) != 2)
        return 0;
    char sql[200];
    snprintf(sql, sizeof(sql), "SELECT %s FROM %s LIMIT 0", c, t);
    store_rows *r = NULL;
    int rc = s->ops->exec(s->db, sql, 0, NULL, &r);
    store_rows_free(r);
    vmseal_clear_error();
    return rc >= 0;
}

static int ensure_schema(store *s)
{
    for (size_t i = 0; i < sizeof(schema) / sizeof(schema[0]); i++) {
        char *sql = dialect(s->ops, schema[i]);
        if (!sql)
            return vmseal_fail(ENOMEM, "store: out of memory");
        int rc = s->ops->exec(s->db, sql, 0, NULL, NULL);
        free(sql);
        if (rc < 0)
            return rc;
    }
    store_rows *r = NULL;
    int rc = s->ops->exec(s->db, "SELECT value FROM meta WHERE key = 'schema'", 0, NULL, &r);
    if (rc < 0)
        return rc;
    const char *v = store_rows_get(r, 0, 0);
    int want = atoi(STORE_SCHEMA_VERSION), have = v ? atoi(v) : 0;
    if (!v) {
        const char *p[] = {STORE_SCHEMA_VERSION};
        rc = s->ops->exec(s->db, "INSERT INTO meta (key, value) VALUES ('schema', $1)", 1, p, NULL);
    } else if (have >= 1 && have < want && strspn(v, "0123456789") == strlen(v)) {
        /* every step from the stored version on, in one transaction; a
         * column a table made above (CREATE IF NOT EXISTS) already has is
         * not added again (probed before the transaction: a failed
         * statement would end a PostgreSQL transaction) */
        unsigned char skip[8][16] = {{0}};
        for (int step = have; step < want && step - 1 < 8; step++)
            for (size_t i = 0; migrations[step - 1][i] && i < 16; i++)
                skip[step - 1][i] = column_exists(s, migrations[step - 1][i]);
        rc = s->ops->exec(s->db, "BEGIN", 0, NULL, NULL);
        for (int step = have; rc >= 0 && step < want; step++)
            for (size_t i = 0; rc >= 0 && migrations[step - 1][i]; i++) {
                if (step - 1 < 8 && i < 16 && skip[step - 1][i])
                    continue;
                char *sql = dialect(s->ops, migrations[step - 1][i]);
                rc = sql ? s->ops->exec(s->db, sql, 0, NULL, NULL) : vmseal_fail(ENOMEM, "out of memory");
                free(sql);
            }
        if (rc >= 0)
            rc = s->ops->exec(s->db, "UPDATE meta SET value = '" STORE_SCHEMA_VERSION "' WHERE key = 'schema'",
                              0, NULL, NULL);
        if (rc >= 0)
            rc = s->ops->exec(s->db, "COMMIT", 0, NULL, NULL);
        if (rc < 0) {
            char saved[512];
            snprintf(saved, sizeof(saved), "%s", vmseal_last_error());
            (void)s->ops->exec(s->db, "ROLLBACK", 0, NULL, NULL);
            rc = vmseal_fail(-rc, "store: migrating schema %s to " STORE_SCHEMA_VERSION ": %s", v, saved);
        }
    } else if (strcmp(v, STORE_SCHEMA_VERSION) != 0) {
        rc = vmseal_fail(ENOTSUP, "store: database schema version %s, this build knows %s", v,
                         STORE_SCHEMA_VERSION);
    }
    store_rows_free(r);
    return rc < 0 ? rc : 0;
}

int store_open(const char *uri, store **out)
{
    *out = NULL;
    store *s = calloc(1, sizeof(*s));
    if (!s)
        return vmseal_fail(ENOMEM, "store: out of memory");
    s->ops = (strncmp(uri, "postgresql://", 13) == 0 || strncmp(uri, "postgres://", 11) == 0)
                 ? &store_pg_ops
                 : &store_sqlite_ops;
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&s->lock, &a);
    pthread_mutexattr_destroy(&a);
    int rc = s->ops->open(uri, &s->db);
    if (rc < 0) {
        pthread_mutex_destroy(&s->lock);
        free(s);
        return rc;
    }
    rc = ensure_schema(s);
    if (rc < 0) {
        store_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void store_close(store *s)
{
    if (!s)
        return;
    s->ops->close(s->db);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

const char *store_backend(const store *s)
{
    return s->ops->name;
}
