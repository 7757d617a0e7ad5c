/* Activate, Revoke, Destroy: the KMIP object states
 *   Pre-Active -> Active -> Deactivated / Compromised -> Destroyed
 * with Activation, Deactivation, Compromise and Destroy Dates recorded. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ops.h"

static int begin(kmsd_op *op, const vmseal_ttlv *req, char uid[KMSD_UID_MAX], kmsd_db **db,
                 kmsd_obj *o)
{
    if (kmsd_op_uid(op, req, uid) < 0)
        return -1;
    return kmsd_op_begin(op, 1, uid, db, o);
}

static int finish(kmsd_op *op, kmsd_db *db, int ok, const char *uid, vmseal_ttlv *resp)
{
    int c = kmsd_store_end(op->srv->store, db, ok);
    if (!ok)
        return -1;
    if (c < 0)
        return kmsd_op_fail_errno(op, c, "committing");
    vmseal_ttlv_add_text(resp, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, uid);
    return 0;
}

static const char *state_name(uint32_t s)
{
    const char *n = vmseal_kmip_enum_name(VMSEAL_KMIP_TAG_STATE, s);
    return n ? n : "unknown";
}

static int set_state(kmsd_op *op, kmsd_db *db, const char *uid, uint32_t state, const char *date,
                     int64_t now)
{
    int r = kmsd_db_set_state(db, uid, state, now);
    if (r == 0 && date)
        r = kmsd_attr_store_int(db, uid, date, VMSEAL_TTLV_DATETIME, now);
    return r < 0 ? kmsd_op_fail_errno(op, r, "updating the object") : 0;
}

int kmsd_op_activate(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp)
{
    char uid[KMSD_UID_MAX];
    kmsd_db *db;
    kmsd_obj o;
    if (begin(op, req, uid, &db, &o) < 0)
        return -1;
    int ok;
    if (o.state != VMSEAL_KMIP_STATE_PRE_ACTIVE)
        ok = kmsd_op_fail(op, VMSEAL_KMIP_REASON_PERMISSION_DENIED,
                          "object %s is %s: only Pre-Active objects can be activated", uid,
                          state_name(o.state)) == 0;
    else
        ok = set_state(op, db, uid, VMSEAL_KMIP_STATE_ACTIVE, VMSEAL_KMIP_ATTR_ACTIVATION_DATE,
                       kmsd_now()) == 0;
    return finish(op, db, ok, uid, resp);
}

int kmsd_op_revoke(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp)
{
    const vmseal_ttlv *rr = vmseal_ttlv_find(req, VMSEAL_KMIP_TAG_REVOCATION_REASON);
    uint32_t code;
    if (!rr || vmseal_ttlv_find_enum(rr, VMSEAL_KMIP_TAG_REVOCATION_REASON_CODE, &code) < 0)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_MISSING_DATA,
                            "Revoke needs a Revocation Reason with a Revocation Reason Code");
    const char *msg;
    int mr = vmseal_ttlv_find_text(rr, VMSEAL_KMIP_TAG_REVOCATION_MESSAGE, &msg, NULL);
    if (mr < 0 && mr != -ENOENT)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD, "bad Revocation Message");
    int64_t occurred = 0;
    int orr = vmseal_ttlv_find_datetime(req, VMSEAL_KMIP_TAG_COMPROMISE_OCCURRENCE_DATE, &occurred);
    if (orr < 0 && orr != -ENOENT)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD, "bad Compromise Occurrence Date");
    int compromise = code == VMSEAL_KMIP_REVOKE_KEY_COMPROMISE ||
                     code == VMSEAL_KMIP_REVOKE_CA_COMPROMISE;

    char uid[KMSD_UID_MAX];
    kmsd_db *db;
    kmsd_obj o;
    if (begin(op, req, uid, &db, &o) < 0)
        return -1;
    int64_t now = kmsd_now();
    int ok = 1;
    if (compromise) {
        uint32_t to;
        switch (o.state) {
        case VMSEAL_KMIP_STATE_PRE_ACTIVE:
        case VMSEAL_KMIP_STATE_ACTIVE:
        case VMSEAL_KMIP_STATE_DEACTIVATED:
            to = VMSEAL_KMIP_STATE_COMPROMISED;
            break;
        case VMSEAL_KMIP_STATE_DESTROYED:
            to = VMSEAL_KMIP_STATE_DESTROYED_COMPROMISED;
            break;
        default:
            to = 0;
        }
        if (!to)
            ok = kmsd_op_fail(op, VMSEAL_KMIP_REASON_ILLEGAL_OPERATION,
                              "object %s is already %s", uid, state_name(o.state)) == 0;
        else
            ok = set_state(op, db, uid, to, VMSEAL_KMIP_ATTR_COMPROMISE_DATE, now) == 0 &&
                 (kmsd_attr_store_int(db, uid, VMSEAL_KMIP_ATTR_COMPROMISE_OCCURRENCE_DATE,
                                      VMSEAL_TTLV_DATETIME, orr == 0 ? occurred : now) >= 0 ||
                  kmsd_op_fail(op, VMSEAL_KMIP_REASON_GENERAL_FAILURE, "store failure") == 0);
    } else if (o.state != VMSEAL_KMIP_STATE_ACTIVE) {
        ok = kmsd_op_fail(op, VMSEAL_KMIP_REASON_ILLEGAL_OPERATION,
                          "object %s is %s: only Active objects can be deactivated by Revoke "
                          "(compromise reasons apply to any state)",
                          uid, state_name(o.state)) == 0;
    } else {
        ok = set_state(op, db, uid, VMSEAL_KMIP_STATE_DEACTIVATED,
                       VMSEAL_KMIP_ATTR_DEACTIVATION_DATE, now) == 0;
    }
    if (ok) {
        vmseal_ttlv *reason_copy;
        if (vmseal_ttlv_dup(rr, &reason_copy) < 0) {
            ok = kmsd_op_fail(op, VMSEAL_KMIP_REASON_GENERAL_FAILURE, "out of memory") == 0;
        } else {
            /* stored as the Attribute Value of Revocation Reason */
            vmseal_ttlv *holder = vmseal_ttlv_struct(VMSEAL_KMIP_TAG_ATTRIBUTE);
            vmseal_ttlv *val = vmseal_ttlv_add_struct(holder, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE);
            vmseal_ttlv *c;
            while ((c = vmseal_ttlv_find(reason_copy, 0)))
                if (vmseal_ttlv_append(val, vmseal_ttlv_detach(c)) < 0)
                    break;
            int r = val ? kmsd_attr_store(db, uid, VMSEAL_KMIP_ATTR_REVOCATION_REASON, val, 1) : -ENOMEM;
            vmseal_ttlv_free(holder);
            vmseal_ttlv_free(reason_copy);
            if (r < 0)
                ok = kmsd_op_fail_errno(op, r, "storing the revocation reason") == 0;
        }
    }
    return finish(op, db, ok, uid, resp);
}

int kmsd_op_destroy(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp)
{
    char uid[KMSD_UID_MAX];
    kmsd_db *db;
    kmsd_obj o;
    if (begin(op, req, uid, &db, &o) < 0)
        return -1;
    uint32_t to = 0;
    int ok = 1;
    switch (o.state) {
    case VMSEAL_KMIP_STATE_PRE_ACTIVE:
    case VMSEAL_KMIP_STATE_DEACTIVATED:
        to = VMSEAL_KMIP_STATE_DESTROYED;
        break;
    case VMSEAL_KMIP_STATE_COMPROMISED:
        to = VMSEAL_KMIP_STATE_DESTROYED_COMPROMISED;
        break;
    case VMSEAL_KMIP_STATE_ACTIVE:
        ok = kmsd_op_fail(op, VMSEAL_KMIP_REASON_PERMISSION_DENIED,
                          "object %s is Active: Revoke it before destroying it", uid) == 0;
        break;
    default:
        ok = kmsd_op_fail(op, VMSEAL_KMIP_REASON_ILLEGAL_OPERATION, "object %s is already %s",
                          uid, state_name(o.state)) == 0;
    }
    if (ok) {
        int64_t now = kmsd_now();
        ok = set_state(op, db, uid, to, VMSEAL_KMIP_ATTR_DESTROY_DATE, now) == 0;
        if (ok) {
            /* the wrapped key is erased (secure_delete overwrites freed pages) */
            int r = kmsd_db_erase_material(db, uid);
            if (r < 0)
                ok = kmsd_op_fail_errno(op, r, "erasing the key") == 0;
        }
    }
    return finish(op, db, ok, uid, resp);
}
