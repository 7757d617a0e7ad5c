/* vmseal-kmsd — the object store: SQLite (one node, the default) or
 * PostgreSQL (several nodes on one database cluster), behind one interface.
 *
 * One row per managed object, its key material wrapped by the master key
 * (masterkey.h), attributes as canonical TTLV bytes of their Attribute
 * Value, and access grants.
 *
 * SQLite (store.c): unique identifier = decimal row id, as KMIP servers
 * customarily hand out ("1", "2", ...). WAL journal with synchronous=FULL:
 * a committed change survives kill -9 and power loss. Readers come from a
 * pool of connections (snapshot per transaction); one writer connection
 * serialised by a mutex, transactions begun IMMEDIATE so that
 * check-then-update sequences are atomic.
 *
 * PostgreSQL (store_pg.c): new objects get random UUIDs (no two nodes can
 * hand out the same one); ids imported from a SQLite store keep their
 * value. A pool of connections to the primary (never a standby); read
 * transactions are REPEATABLE READ snapshots, write transactions lock the
 * object row they load (kmsd_db_get FOR UPDATE), so check-then-update
 * sequences are atomic across nodes. kmsd_store_end(commit) returns once
 * PostgreSQL confirmed the COMMIT (synchronous_commit as configured). The
 * audit chain and the nodes' heartbeats live in the same database.
 */
#ifndef KMSD_STORE_H
#define KMSD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <vmseal/common.h>

#include "masterkey.h"

#define KMSD_UID_MAX 64   /* a UUID (36) or a decimal id, and the NUL */
#define KMSD_IDENTITY_MAX 512

typedef struct kmsd_store kmsd_store;
typedef struct kmsd_db kmsd_db;

typedef struct kmsd_obj {
    char uid[KMSD_UID_MAX];
    char owner[KMSD_IDENTITY_MAX];
    uint32_t object_type;  /* KMIP Object Type */
    uint32_t state;        /* KMIP State */
    uint32_t key_format;   /* Key Format Type the material is kept in */
    uint32_t subtype;      /* Secret Data Type for Secret Data, else 0 */
    uint32_t alg;          /* Cryptographic Algorithm (0: none), kept for Get */
    int32_t bits;          /* Cryptographic Length (0: none), kept for Get */
    int64_t created;       /* Initial Date */
    int64_t changed;       /* Last Change Date */
    int has_material;
} kmsd_obj;

/* Open the SQLite store (create when create is set and the file is new).
 * The master key must be the one the store was created with (checked
 * against a stored probe). */
int kmsd_store_open(const char *path, const char *journal_mode, kmsd_masterkey *mk, int create,
                    kmsd_store **out) VMSEAL_MUST_CHECK;

/* PostgreSQL store. conninfo: a libpq connection string (keywords or URI),
 * possibly with a password, so kept in a secret; the store keeps a copy.
 * mode KMSD_PG_CREATE makes the schema and the master-key probe in a
 * database that holds no store (-EEXIST otherwise); KMSD_PG_OPEN requires
 * an existing store whose probe this master key opens (-EKEYREJECTED), and
 * changes nothing in the database before that check. */
enum { KMSD_PG_OPEN = 0, KMSD_PG_CREATE = 1 };
typedef struct kmsd_pg_params {
    const vmseal_secret *conninfo;
    const char *node;            /* this node's name (application_name) */
    const char *synchronous_commit; /* "on" (NULL), "remote_apply", "remote_write", "local" */
    int timeout_ms;              /* bound on each statement (0: 5000) */
    int connect_timeout_s;       /* per host (0: 2; libpq's minimum is 2) */
} kmsd_pg_params;
int kmsd_store_open_pg(const kmsd_pg_params *p, kmsd_masterkey *mk, int mode, kmsd_store **out)
    VMSEAL_MUST_CHECK;
/* Read a conninfo file: a regular file (not a symlink) that neither group
 * nor others may access; '#' lines are comments, the other lines are joined.
 * The result is NUL-terminated (length without the NUL). */
int kmsd_pg_read_conninfo(const char *path, vmseal_secret **out) VMSEAL_MUST_CHECK;

void kmsd_store_close(kmsd_store *st);
kmsd_masterkey *kmsd_store_masterkey(kmsd_store *st);
/* "sqlite" or "postgresql". */
const char *kmsd_store_backend(const kmsd_store *st);
/* PostgreSQL: "HOST:PORT" of the primary the last connection went to, or
 * the reason the database is unavailable; SQLite: the file. */
void kmsd_store_describe(kmsd_store *st, char *buf, size_t len);

/* Transactions. read: a snapshot from the pool; write: the writer, IMMEDIATE.
 * end() commits (commit != 0) or rolls back, and releases the handle. */
int kmsd_store_read_begin(kmsd_store *st, kmsd_db **db) VMSEAL_MUST_CHECK;
int kmsd_store_write_begin(kmsd_store *st, kmsd_db **db) VMSEAL_MUST_CHECK;
int kmsd_store_end(kmsd_store *st, kmsd_db *db, int commit);

/* Objects. */
int kmsd_db_next_uid(kmsd_db *db, char uid[KMSD_UID_MAX]);
int kmsd_db_insert(kmsd_db *db, const kmsd_obj *o, const uint8_t *wrapped, size_t len);
int kmsd_db_get(kmsd_db *db, const char *uid, kmsd_obj *out);      /* -ENOENT */
int kmsd_db_material(kmsd_db *db, const char *uid, uint8_t **blob, size_t *len); /* free() */
int kmsd_db_set_state(kmsd_db *db, const char *uid, uint32_t state, int64_t now);
int kmsd_db_erase_material(kmsd_db *db, const char *uid);
int kmsd_db_touch(kmsd_db *db, const char *uid, int64_t now);

/* Attributes: value = canonical TTLV encoding of the Attribute Value item. */
typedef int (*kmsd_attr_cb)(void *ctx, const char *name, int idx, const uint8_t *v, size_t len);
/* name NULL: all attributes, ordered by name then index. */
int kmsd_db_attrs(kmsd_db *db, const char *uid, const char *name, kmsd_attr_cb cb, void *ctx);
int kmsd_db_attr_put(kmsd_db *db, const char *uid, const char *name, int idx, const uint8_t *v,
                     size_t len);
int kmsd_db_attr_next_index(kmsd_db *db, const char *uid, const char *name); /* 0 when none */
int kmsd_db_attr_count(kmsd_db *db, const char *uid, const char *name);
/* idx < 0: every instance. Returns the number deleted. */
int kmsd_db_attr_delete(kmsd_db *db, const char *uid, const char *name, int idx);

/* Locate. identity NULL = any object (admin); otherwise objects owned by or
 * granted to identity. object_type/state 0 = any. Each filter requires an
 * attribute with that name and exactly that encoded value. */
typedef struct kmsd_filter {
    const char *name;
    const uint8_t *value;
    size_t len;
} kmsd_filter;
typedef int (*kmsd_uid_cb)(void *ctx, const char *uid);
int kmsd_db_locate(kmsd_db *db, const char *identity, uint32_t object_type, uint32_t state,
                   const kmsd_filter *filters, size_t n_filters, int64_t max_items,
                   int64_t offset, kmsd_uid_cb cb, void *ctx);

/* Access grants (managed by admins with `vmseal-kmsd grant/revoke-access`). */
int kmsd_db_granted(kmsd_db *db, const char *uid, const char *identity); /* 1/0/-err */
int kmsd_db_grant(kmsd_db *db, const char *uid, const char *identity);
int kmsd_db_revoke_access(kmsd_db *db, const char *uid, const char *identity); /* count */
typedef int (*kmsd_grant_cb)(void *ctx, const char *uid, const char *identity);
int kmsd_db_grants(kmsd_db *db, kmsd_grant_cb cb, void *ctx);

/* ---- PostgreSQL only (-ENOTSUP on SQLite) ---------------------------------- */

/* Append audit records to the chain in the database (in a write
 * transaction): the chain head row is locked, so appends of all nodes are
 * serialised; each body gets " seq=N prev=H hash=H" as in the audit file
 * (audit.h). *last_seq: the seq of the last record appended. */
int kmsd_db_audit_append(kmsd_db *db, const char *const *bodies, const size_t *lens, size_t n,
                         uint64_t *last_seq);
/* Records with seq > after, in order, at most max; returns the count. */
typedef int (*kmsd_audit_row_cb)(void *ctx, uint64_t seq, const char *line, size_t len);
int kmsd_db_audit_read(kmsd_db *db, uint64_t after, size_t max, kmsd_audit_row_cb cb, void *ctx);
/* The chain head: seq and hash of the last record (0 and zeros: empty). */
int kmsd_db_audit_head(kmsd_db *db, uint64_t *seq, unsigned char hash[32]);

/* Heartbeats: one row per node, refreshed by each node (cluster.c). */
#define KMSD_NODE_MAX 64
typedef struct kmsd_node_info {
    char name[KMSD_NODE_MAX];
    char address[128];        /* where it serves KMIP */
    char version[32];
    char instance[40];        /* random per start */
    int64_t pid;
    int64_t started;          /* unix time (the node's clock) */
    double seen_ago;          /* seconds since its last heartbeat (database clock) */
    double up;                /* seconds since it started (database clock) */
    int stopped;              /* it said goodbye */
} kmsd_node_info;
int kmsd_db_heartbeat(kmsd_db *db, const kmsd_node_info *n, int stopping);
typedef int (*kmsd_node_cb)(void *ctx, const kmsd_node_info *n);
int kmsd_db_nodes(kmsd_db *db, kmsd_node_cb cb, void *ctx);
/* The database as this node sees it: the primary it is connected to, its
 * synchronous replication settings and its standbys (pg_stat_replication;
 * states and lags need the pg_monitor role, else they are unknown). */
#define KMSD_STANDBY_MAX 8
typedef struct kmsd_standby_info {
    char name[64];            /* application_name */
    char state[24];           /* streaming, catchup, ... ("" when not visible) */
    char sync_state[16];      /* sync, async, potential, quorum ("" when not visible) */
    int64_t replay_lag_ms;    /* -1: unknown */
    int64_t bytes_behind;     /* -1: unknown */
} kmsd_standby_info;
typedef struct kmsd_db_replication {
    char primary[160];        /* HOST:PORT of this connection */
    char version[32];         /* server_version */
    char synchronous_commit[32];
    char synchronous_standby_names[128];
    kmsd_standby_info standby[KMSD_STANDBY_MAX];
    size_t n_standby;         /* kept (at most KMSD_STANDBY_MAX) */
    size_t n_standby_total;   /* connected */
} kmsd_db_replication;
int kmsd_db_replication_info(kmsd_db *db, kmsd_db_replication *out);
/* Insert an object with its given uid (import from SQLite); -EEXIST when
 * the uid is taken. */
int kmsd_db_import_object(kmsd_db *db, const kmsd_obj *o, const uint8_t *wrapped, size_t len);

/* Copy every object, attribute and grant of the SQLite store sqlite_path
 * (opened read-only; mk must open it) into the PostgreSQL store dst, ids
 * unchanged, in one transaction: all or nothing (-EEXIST when an id is
 * already taken). *n_objects: how many were copied. */
int kmsd_store_import_sqlite(kmsd_store *dst, const char *sqlite_path, size_t *n_objects)
    VMSEAL_MUST_CHECK;

/* Online backup of a running store into a new file (consistent snapshot,
 * VACUUM INTO). Works from any process; refuses to overwrite dest. */
int kmsd_store_backup(const char *db_path, const char *dest) VMSEAL_MUST_CHECK;
/* Replace db_path with the backup (after integrity and master-key checks).
 * The server must not be running (checked with the store's lock file). */
int kmsd_store_restore(const char *backup, const char *db_path, kmsd_masterkey *mk)
    VMSEAL_MUST_CHECK;

/* Exclusive lock held by a running server: <db>.lock (flock). Returns the
 * lock fd, or -EBUSY when another process holds it. */
int kmsd_store_lock(const char *db_path) VMSEAL_MUST_CHECK;

#endif
