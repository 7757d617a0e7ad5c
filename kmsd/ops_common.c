/* Shared pieces of the operation handlers: failures, object lookup with
 * access control, the dispatch table. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ops.h"

const kmsd_op_entry kmsd_ops[] = {
    {VMSEAL_KMIP_OP_CREATE, kmsd_op_create},
    {VMSEAL_KMIP_OP_REGISTER, kmsd_op_register},
    {VMSEAL_KMIP_OP_LOCATE, kmsd_op_locate},
    {VMSEAL_KMIP_OP_GET, kmsd_op_get},
    {VMSEAL_KMIP_OP_GET_ATTRIBUTES, kmsd_op_get_attributes},
    {VMSEAL_KMIP_OP_GET_ATTRIBUTE_LIST, kmsd_op_get_attribute_list},
    {VMSEAL_KMIP_OP_ADD_ATTRIBUTE, kmsd_op_add_attribute},
    {VMSEAL_KMIP_OP_MODIFY_ATTRIBUTE, kmsd_op_modify_attribute},
    {VMSEAL_KMIP_OP_DELETE_ATTRIBUTE, kmsd_op_delete_attribute},
    {VMSEAL_KMIP_OP_ACTIVATE, kmsd_op_activate},
    {VMSEAL_KMIP_OP_REVOKE, kmsd_op_revoke},
    {VMSEAL_KMIP_OP_DESTROY, kmsd_op_destroy},
    {VMSEAL_KMIP_OP_QUERY, kmsd_op_query},
    {VMSEAL_KMIP_OP_DISCOVER_VERSIONS, kmsd_op_discover_versions},
};
const size_t kmsd_n_ops = sizeof(kmsd_ops) / sizeof(kmsd_ops[0]);

int64_t kmsd_now(void)
{
    return (int64_t)time(NULL);
}

int kmsd_op_fail(kmsd_op *op, uint32_t reason, const char *fmt, ...)
{
    op->reason = reason;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(op->message, sizeof(op->message), fmt, ap);
    va_end(ap);
    return -1;
}

int kmsd_op_fail_errno(kmsd_op *op, int err, const char *what)
{
    if (err == -EBADMSG || err == -EKEYREJECTED)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_CRYPTOGRAPHIC_FAILURE, "%s: %s", what,
                            vmseal_last_error());
    return kmsd_op_fail(op, VMSEAL_KMIP_REASON_GENERAL_FAILURE, "%s: %s", what,
                        *vmseal_last_error() ? vmseal_last_error() : strerror(-err));
}

int kmsd_op_uid(kmsd_op *op, const vmseal_ttlv *req, char uid[KMSD_UID_MAX])
{
    const char *s;
    size_t len;
    int r = vmseal_ttlv_find_text(req, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, &s, &len);
    if (r == -ENOENT) {
        if (!op->placeholder[0])
            return kmsd_op_fail(op, VMSEAL_KMIP_REASON_MISSING_DATA,
                                "no Unique Identifier (and no ID Placeholder in this batch)");
        snprintf(uid, KMSD_UID_MAX, "%s", op->placeholder);
    } else if (r < 0) {
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD, "bad Unique Identifier");
    } else {
        if (len == 0 || len >= KMSD_UID_MAX)
            return kmsd_op_fail(op, VMSEAL_KMIP_REASON_ITEM_NOT_FOUND, "no object with that "
                                                                         "Unique Identifier");
        memcpy(uid, s, len + 1);
    }
    snprintf(op->uid, sizeof(op->uid), "%s", uid);
    return 0;
}

int kmsd_op_load(kmsd_op *op, kmsd_db *db, const char *uid, kmsd_obj *o)
{
    int r = kmsd_db_get(db, uid, o);
    if (r == -ENOENT)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_ITEM_NOT_FOUND, "no object %s", uid);
    if (r < 0)
        return kmsd_op_fail_errno(op, r, "reading the store");
    if (op->admin || !strcmp(o->owner, op->identity))
        return 0;
    r = kmsd_db_granted(db, uid, op->identity);
    if (r < 0)
        return kmsd_op_fail_errno(op, r, "reading the store");
    if (r == 0)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_PERMISSION_DENIED,
                            "object %s belongs to another client", uid);
    return 0;
}

int kmsd_op_begin(kmsd_op *op, int write, const char *uid, kmsd_db **db, kmsd_obj *o)
{
    int r = write ? kmsd_store_write_begin(op->srv->store, db)
                  : kmsd_store_read_begin(op->srv->store, db);
    if (r < 0)
        return kmsd_op_fail_errno(op, r, "opening the store");
    if (kmsd_op_load(op, *db, uid, o) < 0) {
        (void)kmsd_store_end(op->srv->store, *db, 0);
        return -1;
    }
    return 0;
}
