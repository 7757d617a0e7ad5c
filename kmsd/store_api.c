/* The store interface of store.h, dispatched to the backend of each store
 * (SQLite: store.c, PostgreSQL: store_pg.c), and the master-key probe both
 * backends keep in their metadata. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "store_internal.h"

#define CHECK_UID "__master_key_check__"
static const uint8_t check_plain[32] = "vmseal-kmsd master key probe v1";

int kmsd_probe_make(kmsd_masterkey *mk, uint8_t **blob, size_t *len)
{
    return kmsd_mk_wrap(mk, CHECK_UID, check_plain, sizeof(check_plain), blob, len);
}

int kmsd_probe_check(kmsd_masterkey *mk, const uint8_t *blob, size_t len)
{
    vmseal_secret *s;
    int r = kmsd_mk_unwrap(mk, CHECK_UID, blob, len, &s);
    if (r < 0)
        return vmseal_fail(EKEYREJECTED, "the master key (%s) is not the one this store was "
                                         "created with", mk->desc);
    int same = vmseal_secret_len(s) == sizeof(check_plain) &&
               vmseal_memcmp_ct(vmseal_secret_cdata(s), check_plain, sizeof(check_plain)) == 0;
    vmseal_secret_free(s);
    return same ? 0 : vmseal_fail(EKEYREJECTED, "master key probe mismatch");
}

void kmsd_store_close(kmsd_store *st)
{
    if (st)
        st->be->close(st);
}

kmsd_masterkey *kmsd_store_masterkey(kmsd_store *st)
{
    return st->mk;
}

const char *kmsd_store_backend(const kmsd_store *st)
{
    return st->be->name;
}

void kmsd_store_describe(kmsd_store *st, char *buf, size_t len)
{
    st->be->describe(st, buf, len);
}

int kmsd_store_read_begin(kmsd_store *st, kmsd_db **db)
{
    return st->be->read_begin(st, db);
}

int kmsd_store_write_begin(kmsd_store *st, kmsd_db **db)
{
    return st->be->write_begin(st, db);
}

int kmsd_store_end(kmsd_store *st, kmsd_db *db, int commit)
{
    return st->be->end(st, db, commit);
}

int kmsd_db_next_uid(kmsd_db *db, char uid[KMSD_UID_MAX])
{
    return db->be->next_uid(db, uid);
}

int kmsd_db_insert(kmsd_db *db, const kmsd_obj *o, const uint8_t *wrapped, size_t len)
{
    return db->be->insert(db, o, wrapped, len);
}

int kmsd_db_get(kmsd_db *db, const char *uid, kmsd_obj *out)
{
    return db->be->get(db, uid, out);
}

int kmsd_db_material(kmsd_db *db, const char *uid, uint8_t **blob, size_t *len)
{
    return db->be->material(db, uid, blob, len);
}

int kmsd_db_set_state(kmsd_db *db, const char *uid, uint32_t state, int64_t now)
{
    return db->be->set_state(db, uid, state, now);
}

int kmsd_db_erase_material(kmsd_db *db, const char *uid)
{
    return db->be->erase_material(db, uid);
}

int kmsd_db_touch(kmsd_db *db, const char *uid, int64_t now)
{
    return db->be->touch(db, uid, now);
}

int kmsd_db_attrs(kmsd_db *db, const char *uid, const char *name, kmsd_attr_cb cb, void *ctx)
{
    return db->be->attrs(db, uid, name, cb, ctx);
}

int kmsd_db_attr_put(kmsd_db *db, const char *uid, const char *name, int idx, const uint8_t *v,
                     size_t len)
{
    return db->be->attr_put(db, uid, name, idx, v, len);
}

int kmsd_db_attr_next_index(kmsd_db *db, const char *uid, const char *name)
{
    return db->be->attr_next_index(db, uid, name);
}

int kmsd_db_attr_count(kmsd_db *db, const char *uid, const char *name)
{
    return db->be->attr_count(db, uid, name);
}

int kmsd_db_attr_delete(kmsd_db *db, const char *uid, const char *name, int idx)
{
    return db->be->attr_delete(db, uid, name, idx);
}

int kmsd_db_locate(kmsd_db *db, const char *identity, uint32_t object_type, uint32_t state,
                   const kmsd_filter *filters, size_t n_filters, int64_t max_items,
                   int64_t offset, kmsd_uid_cb cb, void *ctx)
{
    return db->be->locate(db, identity, object_type, state, filters, n_filters, max_items,
                          offset, cb, ctx);
}

int kmsd_db_granted(kmsd_db *db, const char *uid, const char *identity)
{
    return db->be->granted(db, uid, identity);
}

int kmsd_db_grant(kmsd_db *db, const char *uid, const char *identity)
{
    return db->be->grant(db, uid, identity);
}

int kmsd_db_revoke_access(kmsd_db *db, const char *uid, const char *identity)
{
    return db->be->revoke_access(db, uid, identity);
}

int kmsd_db_grants(kmsd_db *db, kmsd_grant_cb cb, void *ctx)
{
    return db->be->grants(db, cb, ctx);
}

/* ---- PostgreSQL only ------------------------------------------------------ */

static int not_here(kmsd_db *db, const char *what)
{
    return vmseal_fail(ENOTSUP, "%s needs store = postgresql (this store is %s)", what,
                       db->be->name);
}

int kmsd_db_audit_append(kmsd_db *db, const char *const *bodies, const size_t *lens, size_t n,
                         uint64_t *last_seq)
{
    if (!db->be->audit_append)
        return not_here(db, "an audit chain in the database");
    return db->be->audit_append(db, bodies, lens, n, last_seq);
}

int kmsd_db_audit_read(kmsd_db *db, uint64_t after, size_t max, kmsd_audit_row_cb cb, void *ctx)
{
    if (!db->be->audit_read)
        return not_here(db, "an audit chain in the database");
    return db->be->audit_read(db, after, max, cb, ctx);
}

int kmsd_db_audit_head(kmsd_db *db, uint64_t *seq, unsigned char hash[32])
{
    if (!db->be->audit_head)
        return not_here(db, "an audit chain in the database");
    return db->be->audit_head(db, seq, hash);
}

int kmsd_db_heartbeat(kmsd_db *db, const kmsd_node_info *n, int stopping)
{
    if (!db->be->heartbeat)
        return not_here(db, "cluster heartbeats");
    return db->be->heartbeat(db, n, stopping);
}

int kmsd_db_nodes(kmsd_db *db, kmsd_node_cb cb, void *ctx)
{
    if (!db->be->nodes)
        return not_here(db, "cluster heartbeats");
    return db->be->nodes(db, cb, ctx);
}

int kmsd_db_replication_info(kmsd_db *db, kmsd_db_replication *out)
{
    memset(out, 0, sizeof(*out));
    if (!db->be->replication)
        return not_here(db, "replication");
    return db->be->replication(db, out);
}

int kmsd_db_import_object(kmsd_db *db, const kmsd_obj *o, const uint8_t *wrapped, size_t len)
{
    if (!db->be->import_object)
        return not_here(db, "importing objects");
    return db->be->import_object(db, o, wrapped, len);
}
