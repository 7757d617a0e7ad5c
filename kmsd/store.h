/* vmseal-kmsd — the object store (SQLite).
 *
 * One row per managed object (unique identifier = decimal row id, as KMIP
 * servers customarily hand out: "1", "2", ...), its key material wrapped by
 * the master key (masterkey.h), attributes as canonical TTLV bytes of their
 * Attribute Value, and access grants. WAL journal with synchronous=FULL: a
 * committed change survives kill -9 and power loss.
 *
 * Concurrency: readers come from a pool of connections (snapshot per
 * transaction); one writer connection serialised by a mutex, transactions
 * begun IMMEDIATE so that check-then-update sequences are atomic.
 */
#ifndef KMSD_STORE_H
#define KMSD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <vmseal/common.h>

#include "masterkey.h"

#define KMSD_UID_MAX 32
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

/* Open (create when create is set and the file is new). The master key must
 * be the one the store was created with (checked against a stored probe). */
int kmsd_store_open(const char *path, const char *journal_mode, kmsd_masterkey *mk, int create,
                    kmsd_store **out) VMSEAL_MUST_CHECK;
void kmsd_store_close(kmsd_store *st);
kmsd_masterkey *kmsd_store_masterkey(kmsd_store *st);

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
