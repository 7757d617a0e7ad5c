/* Locate: by Object Type, State, Name, custom and other stored attributes
 * (exact value match), with Maximum Items and Offset Items. Only objects the
 * caller may use are found (admins: all). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

#define MAX_FILTERS 32

struct loc_ctx {
    vmseal_ttlv *resp;
    char first[KMSD_UID_MAX];
};

static int loc_cb(void *ctx, const char *uid)
{
    struct loc_ctx *c = ctx;
    if (!c->first[0])
        strncpy(c->first, uid, KMSD_UID_MAX - 1);
    return vmseal_ttlv_add_text(c->resp, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, uid) ? 0 : -ENOMEM;
}

int kmsd_op_locate(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp)
{
    int32_t max_items = 0, offset = 0;
    int r = vmseal_ttlv_find_int(req, VMSEAL_KMIP_TAG_MAXIMUM_ITEMS, &max_items);
    if ((r < 0 && r != -ENOENT) || max_items < 0)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD, "bad Maximum Items");
    r = vmseal_ttlv_find_int(req, VMSEAL_KMIP_TAG_OFFSET_ITEMS, &offset);
    if ((r < 0 && r != -ENOENT) || offset < 0)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD, "bad Offset Items");

    uint32_t type = 0, state = 0;
    kmsd_filter filters[MAX_FILTERS];
    uint8_t *bufs[MAX_FILTERS];
    size_t nf = 0;
    int rc = 0;
    for (vmseal_ttlv *a = NULL; rc == 0 && (a = vmseal_ttlv_next(req, VMSEAL_KMIP_TAG_ATTRIBUTE, a));) {
        const char *name;
        if (vmseal_ttlv_find_text(a, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, &name, NULL) < 0) {
            rc = kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD, "attribute without a name");
            break;
        }
        vmseal_ttlv *value = vmseal_ttlv_find(a, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE);
        if (kmsd_attr_check_value(op, name, value) < 0) {
            rc = -1;
            break;
        }
        if (!strcmp(name, VMSEAL_KMIP_ATTR_OBJECT_TYPE)) {
            if (vmseal_ttlv_get_enum(value, &type) < 0)
                rc = kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD, "bad Object Type");
        } else if (!strcmp(name, VMSEAL_KMIP_ATTR_STATE)) {
            if (vmseal_ttlv_get_enum(value, &state) < 0)
                rc = kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD, "bad State");
        } else if (kmsd_attr_rules(name) & KMSD_ATTR_COLUMN) {
            rc = kmsd_op_fail(op, VMSEAL_KMIP_REASON_FEATURE_NOT_SUPPORTED,
                              "Locate by \"%s\" is not supported", name);
        } else if (nf == MAX_FILTERS) {
            rc = kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD, "too many attributes");
        } else if (kmsd_attr_encode(value, &bufs[nf], &filters[nf].len) < 0) {
            rc = kmsd_op_fail(op, VMSEAL_KMIP_REASON_GENERAL_FAILURE, "out of memory");
        } else {
            filters[nf].name = name;
            filters[nf].value = bufs[nf];
            nf++;
        }
    }
    if (rc == 0) {
        kmsd_db *db;
        r = kmsd_store_read_begin(op->srv->store, &db);
        if (r < 0) {
            rc = kmsd_op_fail_errno(op, r, "opening the store");
        } else {
            /* Located Items (1.3+) comes first: count, then list */
            struct loc_ctx c = {.resp = resp};
            if (op->version.major > 1 || op->version.minor >= 3) {
                vmseal_ttlv *hold = vmseal_ttlv_struct(VMSEAL_KMIP_TAG_RESPONSE_PAYLOAD);
                c.resp = hold;
                r = kmsd_db_locate(db, op->admin ? NULL : op->identity, type, state, filters, nf,
                                   max_items, offset, loc_cb, &c);
                if (r >= 0) {
                    vmseal_ttlv_add_int(resp, VMSEAL_KMIP_TAG_LOCATED_ITEMS, r);
                    vmseal_ttlv *u;
                    while ((u = vmseal_ttlv_find(hold, 0)))
                        if (vmseal_ttlv_append(resp, vmseal_ttlv_detach(u)) < 0)
                            break;
                }
                vmseal_ttlv_free(hold);
            } else {
                r = kmsd_db_locate(db, op->admin ? NULL : op->identity, type, state, filters, nf,
                                   max_items, offset, loc_cb, &c);
            }
            (void)kmsd_store_end(op->srv->store, db, 0);
            if (r < 0)
                rc = kmsd_op_fail_errno(op, r, "searching the store");
            else if (c.first[0]) {
                snprintf(op->placeholder, sizeof(op->placeholder), "%s", c.first);
                snprintf(op->uid, sizeof(op->uid), "%s", c.first);
            }
        }
    }
    for (size_t i = 0; i < nf; i++)
        vmseal_ttlv_buf_free(bufs[i], filters[i].len);
    return rc;
}
