/* vmseal-managerd — the database behind the manager.
 *
 * A tiny SQL interface with two backends: SQLite (a file path, the default)
 * and PostgreSQL (a "postgresql://..." or "postgres://..." conninfo, via
 * libpq). Every value crosses the interface as text (NULL for SQL NULL);
 * parameters are written $1, $2, ... in the SQL text for both backends.
 * The schema is written once with two dialect words:
 *   {ID}    an auto-increment integer primary key
 *   {BIG}   a 64-bit integer column type
 *
 * All calls are serialised by one (recursive) lock; store_tx() runs a
 * function inside a transaction while holding it, so a group of statements
 * is atomic and isolated from other request threads.
 */
#ifndef VMSEAL_MANAGERD_STORE_H
#define VMSEAL_MANAGERD_STORE_H

#include <stddef.h>

typedef struct store store;
typedef struct store_rows store_rows;

/* Open (and create the schema of) the database named by uri. */
int store_open(const char *uri, store **out);
void store_close(store *s);
/* "sqlite" or "postgresql" */
const char *store_backend(const store *s);

/* Run one statement with n text parameters. When out is not NULL, the result
 * rows are returned (free with store_rows_free); the count of changed rows
 * is returned for statements without a result. -errno on failure (-EEXIST
 * for a unique-constraint violation) with vmseal_last_error() set. */
int store_exec(store *s, const char *sql, size_t n, const char *const *params, store_rows **out);

/* Convenience: store_exec with a list of parameters ending with STORE_END
 * (a parameter may be NULL for SQL NULL). */
extern const char store_end_marker[];
#define STORE_END store_end_marker
int store_execv(store *s, store_rows **out, const char *sql, ...);

/* Run fn(s, arg) inside BEGIN ... COMMIT; a negative return rolls back and
 * is returned. Called from inside fn (the same thread), it runs as part of
 * the outer transaction. */
int store_tx(store *s, int (*fn)(store *s, void *arg), void *arg);

size_t store_rows_count(const store_rows *r);
size_t store_rows_columns(const store_rows *r);
/* Value at (row, col): NULL for SQL NULL or out of range. */
const char *store_rows_get(const store_rows *r, size_t row, size_t col);
void store_rows_free(store_rows *r);

/* The schema version this build writes. */
#define STORE_SCHEMA_VERSION "3"

/* ---- backends (store_sqlite.c, store_pg.c) ------------------------------- */

struct store_backend_ops {
    const char *name;
    int (*open)(const char *uri, void **db);
    void (*close)(void *db);
    /* sql uses $N placeholders */
    int (*exec)(void *db, const char *sql, size_t n, const char *const *params, store_rows **out);
    const char *id_type;   /* replaces {ID} */
    const char *big_type;  /* replaces {BIG} */
};

extern const struct store_backend_ops store_sqlite_ops;
extern const struct store_backend_ops store_pg_ops;

/* For backends: build a result set. */
store_rows *store_rows_new(size_t columns);
int store_rows_add(store_rows *r, const char *const *values, const size_t *lens);

#endif
