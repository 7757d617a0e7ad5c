/* vmseal-kmsd — what the store backends share (not a public API).
 *
 * kmsd_store and kmsd_db are one type for both backends: the functions of
 * store.h dispatch through be (store_api.c) to the SQLite backend
 * (store.c, with backup.c) or the PostgreSQL one (store_pg.c). */
#ifndef KMSD_STORE_INTERNAL_H
#define KMSD_STORE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include <sqlite3.h>

#include "masterkey.h"
#include "store.h"

#define KMSD_STMT_MAX 32  /* prepared statements cached per connection */
#define KMSD_POOL_MAX 64  /* idle connections kept per store */

struct pg_conn;           /* libpq's PGconn */
struct kmsd_pg;           /* store_pg.c */

typedef struct kmsd_backend {
    const char *name;     /* "sqlite", "postgresql" */
    void (*close)(kmsd_store *st);
    void (*describe)(kmsd_store *st, char *buf, size_t len);
    int (*read_begin)(kmsd_store *st, kmsd_db **db);
    int (*write_begin)(kmsd_store *st, kmsd_db **db);
    int (*end)(kmsd_store *st, kmsd_db *db, int commit);
    int (*next_uid)(kmsd_db *db, char uid[KMSD_UID_MAX]);
    int (*insert)(kmsd_db *db, const kmsd_obj *o, const uint8_t *wrapped, size_t len);
    int (*get)(kmsd_db *db, const char *uid, kmsd_obj *out);
    int (*material)(kmsd_db *db, const char *uid, uint8_t **blob, size_t *len);
    int (*set_state)(kmsd_db *db, const char *uid, uint32_t state, int64_t now);
    int (*erase_material)(kmsd_db *db, const char *uid);
    int (*touch)(kmsd_db *db, const char *uid, int64_t now);
    int (*attrs)(kmsd_db *db, const char *uid, const char *name, kmsd_attr_cb cb, void *ctx);
    int (*attr_put)(kmsd_db *db, const char *uid, const char *name, int idx, const uint8_t *v,
                    size_t len);
    int (*attr_next_index)(kmsd_db *db, const char *uid, const char *name);
    int (*attr_count)(kmsd_db *db, const char *uid, const char *name);
    int (*attr_delete)(kmsd_db *db, const char *uid, const char *name, int idx);
    int (*locate)(kmsd_db *db, const char *identity, uint32_t object_type, uint32_t state,
                  const kmsd_filter *filters, size_t n_filters, int64_t max_items,
                  int64_t offset, kmsd_uid_cb cb, void *ctx);
    int (*granted)(kmsd_db *db, const char *uid, const char *identity);
    int (*grant)(kmsd_db *db, const char *uid, const char *identity);
    int (*revoke_access)(kmsd_db *db, const char *uid, const char *identity);
    int (*grants)(kmsd_db *db, kmsd_grant_cb cb, void *ctx);
    /* PostgreSQL only (NULL in SQLite): the cluster's tables */
    int (*audit_append)(kmsd_db *db, const char *const *bodies, const size_t *lens, size_t n,
                        uint64_t *last_seq);
    int (*audit_read)(kmsd_db *db, uint64_t after, size_t max, kmsd_audit_row_cb cb, void *ctx);
    int (*audit_head)(kmsd_db *db, uint64_t *seq, unsigned char hash[32]);
    int (*heartbeat)(kmsd_db *db, const kmsd_node_info *n, int stopping);
    int (*nodes)(kmsd_db *db, kmsd_node_cb cb, void *ctx);
    int (*replication)(kmsd_db *db, kmsd_db_replication *out);
    int (*import_object)(kmsd_db *db, const kmsd_obj *o, const uint8_t *wrapped, size_t len);
} kmsd_backend;

extern const kmsd_backend kmsd_sqlite_backend;
extern const kmsd_backend kmsd_pg_backend;

struct kmsd_db {
    const kmsd_backend *be;
    int writer;               /* a write transaction */
    /* SQLite */
    sqlite3 *h;
    sqlite3_stmt *st[KMSD_STMT_MAX];
    /* PostgreSQL */
    struct pg_conn *pc;
    kmsd_store *store;
    uint64_t prepared;        /* statements prepared on this connection (bit per id) */
    int broken;               /* the connection failed: close it, never pool it */
    int fresh;                /* just connected (not taken from the pool) */
    int rollback_sent;        /* a read's ROLLBACK is sent, its answer not read yet */
};

struct kmsd_store {
    const kmsd_backend *be;
    kmsd_masterkey *mk;
    struct kmsd_pg *pg;       /* PostgreSQL state (store_pg.c) */
    /* SQLite */
    char *path;
    char *journal;
    /* group commit (see kmsd_store_end in store.c) */
    pthread_mutex_t wlock;
    pthread_cond_t committed;
    atomic_int queued;        /* threads waiting for wlock */
    int txn_open;             /* a write transaction is open on the writer */
    int pending;              /* finished changes in it, not yet committed */
    int64_t txn_start_ns;
    uint64_t gen;             /* generation of the open transaction */
    uint64_t done_gen;        /* generations < done_gen are committed */
    int gen_rc[64];           /* commit result by generation % 64 */
    kmsd_db *writer;
    pthread_mutex_t plock;
    kmsd_db *pool[KMSD_POOL_MAX];
    int n_pool;
};

/* Open a connection (flags: SQLITE_OPEN_*; journal NULL: wal) with the
 * store's pragmas; read-only connections change nothing. */
int kmsd_db_open(const char *path, int flags, const char *journal, kmsd_db **out);
void kmsd_db_close(kmsd_db *db);
/* vmseal_fail() with SQLite's message, mapped to an errno. */
int kmsd_db_error(sqlite3 *h, const char *what);
/* The schema version is ours; the master key opens the store's probe
 * (with may_create, a store without a probe gets one). */
int kmsd_store_check_schema(kmsd_db *db);
int kmsd_store_check_masterkey(kmsd_db *db, kmsd_masterkey *mk, int may_create);

/* The master-key probe (store_api.c): a fixed text wrapped by the master
 * key under a reserved id, kept in the store's metadata. make: a new one
 * (free()); check: 0 when mk opens it, -EKEYREJECTED otherwise. */
int kmsd_probe_make(kmsd_masterkey *mk, uint8_t **blob, size_t *len);
int kmsd_probe_check(kmsd_masterkey *mk, const uint8_t *blob, size_t len);

#endif
