/* GetAttributes, GetAttributeList, AddAttribute, ModifyAttribute,
 * DeleteAttribute. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

struct append_ctx {
    vmseal_ttlv *resp;
    int names_only;
    const char *last;   /* GetAttributeList: one name per attribute */
    char lastbuf[256];
};

static int append_cb(void *ctx, const char *name, int idx, const uint8_t *v, size_t len)
{
    struct append_ctx *c = ctx;
    if (c->names_only) {
        if (c->last && !strcmp(c->last, name))
            return 0;
        snprintf(c->lastbuf, sizeof(c->lastbuf), "%s", name);
        c->last = c->lastbuf;
        vmseal_ttlv_add_text(c->resp, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, name);
        return 0;
    }
    return kmsd_attr_append_stored(c->resp, name, idx, v, len);
}

static int read_object(kmsd_op *op, const vmseal_ttlv *req, char uid[KMSD_UID_MAX], kmsd_db **db,
                       kmsd_obj *o)
{
    if (kmsd_op_uid(op, req, uid) < 0)
        return -1;
    return kmsd_op_begin(op, 0, uid, db, o);
}

int kmsd_op_get_attributes(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp)
{
    char uid[KMSD_UID_MAX];
    kmsd_db *db;
    kmsd_obj o;
    if (read_object(op, req, uid, &db, &o) < 0)
        return -1;
    vmseal_ttlv_add_text(resp, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, uid);
    struct append_ctx c = {.resp = resp};
    int r = 0;
    if (!vmseal_ttlv_find(req, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME)) {
        r = kmsd_attr_append_columns(resp, &o, NULL);
        if (r == 0)
            r = kmsd_db_attrs(db, uid, NULL, append_cb, &c);
    } else {
        for (vmseal_ttlv *n = NULL;
             r >= 0 && (n = vmseal_ttlv_next(req, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, n));) {
            const char *name;
            if (vmseal_ttlv_get_text(n, &name, NULL) < 0) {
                (void)kmsd_store_end(op->srv->store, db, 0);
                return kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD, "bad Attribute Name");
            }
            /* names we do not hold (unknown, custom not yet added) are
             * simply absent from the answer */
            if (kmsd_attr_rules(name) & KMSD_ATTR_COLUMN)
                r = kmsd_attr_append_columns(resp, &o, name);
            else
                r = kmsd_db_attrs(db, uid, name, append_cb, &c);
        }
    }
    (void)kmsd_store_end(op->srv->store, db, 0);
    if (r < 0)
        return kmsd_op_fail_errno(op, r, "reading attributes");
    return 0;
}

int kmsd_op_get_attribute_list(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp)
{
    char uid[KMSD_UID_MAX];
    kmsd_db *db;
    kmsd_obj o;
    if (read_object(op, req, uid, &db, &o) < 0)
        return -1;
    vmseal_ttlv_add_text(resp, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, uid);
    static const char *const columns[] = {
        VMSEAL_KMIP_ATTR_UNIQUE_IDENTIFIER, VMSEAL_KMIP_ATTR_OBJECT_TYPE, VMSEAL_KMIP_ATTR_STATE,
        VMSEAL_KMIP_ATTR_INITIAL_DATE, VMSEAL_KMIP_ATTR_LAST_CHANGE_DATE};
    for (size_t i = 0; i < sizeof(columns) / sizeof(columns[0]); i++)
        vmseal_ttlv_add_text(resp, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, columns[i]);
    struct append_ctx c = {.resp = resp, .names_only = 1};
    int r = kmsd_db_attrs(db, uid, NULL, append_cb, &c);
    (void)kmsd_store_end(op->srv->store, db, 0);
    if (r < 0)
        return kmsd_op_fail_errno(op, r, "reading attributes");
    return 0;
}

/* Common start of the three attribute-changing operations: UID, the
 * Attribute structure, a write transaction and the object. */
static int begin_change(kmsd_op *op, const vmseal_ttlv *req, unsigned need, char uid[KMSD_UID_MAX],
                        const vmseal_ttlv **attr, const char **name, kmsd_db **db, kmsd_obj *o)
{
    if (kmsd_op_uid(op, req, uid) < 0)
        return -1;
    *attr = vmseal_ttlv_find(req, VMSEAL_KMIP_TAG_ATTRIBUTE);
    if (*attr) {
        if (vmseal_ttlv_find_text(*attr, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, name, NULL) < 0)
            return kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD, "attribute without a name");
    } else if (need == KMSD_ATTR_DELETE &&
               vmseal_ttlv_find_text(req, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, name, NULL) == 0) {
        /* KMIP 1.x DeleteAttribute: Attribute Name (+ Attribute Index) */
    } else {
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_MISSING_DATA, "no Attribute");
    }
    unsigned rules = kmsd_attr_rules(*name);
    if (!(rules & KMSD_ATTR_KNOWN))
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD,
                            "attribute \"%s\" is not supported", *name);
    if (!(rules & need))
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_PERMISSION_DENIED,
                            "attribute \"%s\" cannot be %s by the client", *name,
                            need == KMSD_ATTR_ADD      ? "added"
                            : need == KMSD_ATTR_MODIFY ? "modified"
                                                       : "deleted");
    return kmsd_op_begin(op, 1, uid, db, o);
}

static int end_change(kmsd_op *op, kmsd_db *db, const char *uid, int ok)
{
    int r = 0;
    if (ok)
        r = kmsd_db_touch(db, uid, kmsd_now());
    int c = kmsd_store_end(op->srv->store, db, ok && r == 0);
    if (!ok)
        return -1;
    if (r < 0 || c < 0)
        return kmsd_op_fail_errno(op, r < 0 ? r : c, "committing");
    return 0;
}

int kmsd_op_add_attribute(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp)
{
    char uid[KMSD_UID_MAX];
    const vmseal_ttlv *attr;
    const char *name;
    kmsd_db *db;
    kmsd_obj o;
    if (begin_change(op, req, KMSD_ATTR_ADD, uid, &attr, &name, &db, &o) < 0)
        return -1;
    vmseal_ttlv *value = vmseal_ttlv_find(attr, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE);
    int ok = kmsd_attr_check_value(op, name, value) == 0;
    int idx = -1;
    if (ok) {
        idx = kmsd_attr_store(db, uid, name, value, 0);
        if (idx == -EEXIST)
            ok = kmsd_op_fail(op, VMSEAL_KMIP_REASON_ILLEGAL_OPERATION,
                              "single-instance attribute \"%s\" is already set; use "
                              "ModifyAttribute", name) == 0;
        else if (idx < 0)
            ok = kmsd_op_fail_errno(op, idx, "storing the attribute") == 0;
    }
    if (end_change(op, db, uid, ok) < 0)
        return -1;
    vmseal_ttlv_add_text(resp, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, uid);
    vmseal_ttlv *a = vmseal_ttlv_add_struct(resp, VMSEAL_KMIP_TAG_ATTRIBUTE);
    vmseal_ttlv_add_text(a, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, name);
    if (idx > 0)
        vmseal_ttlv_add_int(a, VMSEAL_KMIP_TAG_ATTRIBUTE_INDEX, idx);
    vmseal_ttlv *copy;
    if (vmseal_ttlv_dup(value, &copy) < 0 || vmseal_ttlv_append(a, copy) < 0)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_GENERAL_FAILURE, "out of memory");
    return 0;
}

int kmsd_op_modify_attribute(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp)
{
    char uid[KMSD_UID_MAX];
    const vmseal_ttlv *attr;
    const char *name;
    kmsd_db *db;
    kmsd_obj o;
    if (begin_change(op, req, KMSD_ATTR_MODIFY, uid, &attr, &name, &db, &o) < 0)
        return -1;
    int32_t idx = 0;
    int r = vmseal_ttlv_find_int(attr, VMSEAL_KMIP_TAG_ATTRIBUTE_INDEX, &idx);
    vmseal_ttlv *value = vmseal_ttlv_find(attr, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE);
    int ok = (r == 0 || r == -ENOENT) && idx >= 0;
    if (!ok)
        kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD, "bad Attribute Index");
    ok = ok && kmsd_attr_check_value(op, name, value) == 0;
    if (ok) {
        /* the instance must exist: delete it, then write the new value */
        int n = kmsd_db_attr_delete(db, uid, name, idx);
        if (n < 0)
            ok = kmsd_op_fail_errno(op, n, "modifying the attribute") == 0;
        else if (n == 0)
            ok = kmsd_op_fail(op, VMSEAL_KMIP_REASON_ITEM_NOT_FOUND,
                              "object %s has no attribute \"%s\" (index %d)", uid, name, idx) == 0;
        if (ok) {
            uint8_t *buf;
            size_t len;
            r = kmsd_attr_encode(value, &buf, &len);
            if (r == 0) {
                r = kmsd_db_attr_put(db, uid, name, idx, buf, len);
                vmseal_ttlv_buf_free(buf, len);
            }
            if (r < 0)
                ok = kmsd_op_fail_errno(op, r, "modifying the attribute") == 0;
        }
    }
    if (end_change(op, db, uid, ok) < 0)
        return -1;
    vmseal_ttlv_add_text(resp, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, uid);
    vmseal_ttlv *copy;
    if (vmseal_ttlv_dup(attr, &copy) < 0 || vmseal_ttlv_append(resp, copy) < 0)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_GENERAL_FAILURE, "out of memory");
    return 0;
}

struct keep_ctx {
    vmseal_ttlv *resp;
    int idx;
    int done;
};

static int keep_cb(void *ctx, const char *name, int idx, const uint8_t *v, size_t len)
{
    struct keep_ctx *c = ctx;
    if (idx != c->idx || c->done)
        return 0;
    c->done = 1;
    return kmsd_attr_append_stored(c->resp, name, idx, v, len);
}

int kmsd_op_delete_attribute(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp)
{
    char uid[KMSD_UID_MAX];
    const vmseal_ttlv *attr;
    const char *name;
    kmsd_db *db;
    kmsd_obj o;
    if (begin_change(op, req, KMSD_ATTR_DELETE, uid, &attr, &name, &db, &o) < 0)
        return -1;
    int32_t idx = 0;
    int r = vmseal_ttlv_find_int(attr ? attr : req, VMSEAL_KMIP_TAG_ATTRIBUTE_INDEX, &idx);
    int ok = (r == 0 || r == -ENOENT) && idx >= 0;
    if (!ok)
        kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD, "bad Attribute Index");
    vmseal_ttlv_add_text(resp, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, uid);
    struct keep_ctx k = {.resp = resp, .idx = idx};
    if (ok) {
        r = kmsd_db_attrs(db, uid, name, keep_cb, &k);
        if (r < 0)
            ok = kmsd_op_fail_errno(op, r, "reading attributes") == 0;
        else if (!k.done)
            ok = kmsd_op_fail(op, VMSEAL_KMIP_REASON_ITEM_NOT_FOUND,
                              "object %s has no attribute \"%s\" (index %d)", uid, name, idx) == 0;
    }
    if (ok) {
        r = kmsd_db_attr_delete(db, uid, name, idx);
        if (r < 0)
            ok = kmsd_op_fail_errno(op, r, "deleting the attribute") == 0;
    }
    return end_change(op, db, uid, ok);
}
