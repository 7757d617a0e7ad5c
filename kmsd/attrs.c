/* The attribute model: which attributes a client may set, add, modify or
 * delete; how values are stored (canonical TTLV of the Attribute Value) and
 * turned back into Attribute structures; the attributes derived from the
 * object row (Unique Identifier, Object Type, State, Initial Date, Last
 * Change Date). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

#define T KMSD_ATTR_TEMPLATE
#define A KMSD_ATTR_ADD
#define M KMSD_ATTR_MODIFY
#define D KMSD_ATTR_DELETE
#define C KMSD_ATTR_COLUMN

static const struct {
    const char *name;
    unsigned rules;
} attr_rules[] = {
    {VMSEAL_KMIP_ATTR_UNIQUE_IDENTIFIER, C},
    {VMSEAL_KMIP_ATTR_OBJECT_TYPE, C},
    {VMSEAL_KMIP_ATTR_STATE, C},
    {VMSEAL_KMIP_ATTR_INITIAL_DATE, C},
    {VMSEAL_KMIP_ATTR_LAST_CHANGE_DATE, C},
    {VMSEAL_KMIP_ATTR_NAME, T | A | M | D},
    {VMSEAL_KMIP_ATTR_CRYPTOGRAPHIC_ALGORITHM, T},
    {VMSEAL_KMIP_ATTR_CRYPTOGRAPHIC_LENGTH, T},
    {VMSEAL_KMIP_ATTR_CRYPTOGRAPHIC_USAGE_MASK, T},
    {VMSEAL_KMIP_ATTR_CRYPTOGRAPHIC_PARAMETERS, T | A | M | D},
    {VMSEAL_KMIP_ATTR_OPERATION_POLICY_NAME, T | A | M | D},
    {VMSEAL_KMIP_ATTR_ACTIVATION_DATE, T},
    {VMSEAL_KMIP_ATTR_PROCESS_START_DATE, T | A | M},
    {VMSEAL_KMIP_ATTR_PROTECT_STOP_DATE, T | A | M},
    {VMSEAL_KMIP_ATTR_DEACTIVATION_DATE, 0},
    {VMSEAL_KMIP_ATTR_DESTROY_DATE, 0},
    {VMSEAL_KMIP_ATTR_COMPROMISE_DATE, 0},
    {VMSEAL_KMIP_ATTR_COMPROMISE_OCCURRENCE_DATE, 0},
    {VMSEAL_KMIP_ATTR_REVOCATION_REASON, 0},
    {VMSEAL_KMIP_ATTR_OBJECT_GROUP, T | A | D},
    {VMSEAL_KMIP_ATTR_LINK, T | A | M | D},
    {VMSEAL_KMIP_ATTR_APPLICATION_SPECIFIC_INFORMATION, T | A | M | D},
    {VMSEAL_KMIP_ATTR_CONTACT_INFORMATION, T | A | M | D},
    {VMSEAL_KMIP_ATTR_ALTERNATIVE_NAME, T | A | M | D},
    {VMSEAL_KMIP_ATTR_DESCRIPTION, T | A | M | D},
    {VMSEAL_KMIP_ATTR_COMMENT, T | A | M | D},
};

unsigned kmsd_attr_rules(const char *name)
{
    if (!strncmp(name, "x-", 2) && name[2])
        return T | A | M | D | KMSD_ATTR_MULTI | KMSD_ATTR_KNOWN;
    if (!strncmp(name, "y-", 2))
        return KMSD_ATTR_MULTI | KMSD_ATTR_KNOWN; /* server-defined: read-only */
    for (size_t i = 0; i < sizeof(attr_rules) / sizeof(attr_rules[0]); i++) {
        if (!strcmp(attr_rules[i].name, name)) {
            const vmseal_kmip_attr_info *info = vmseal_kmip_attr_lookup(name);
            return attr_rules[i].rules | KMSD_ATTR_KNOWN |
                   ((info && info->multi) ? KMSD_ATTR_MULTI : 0);
        }
    }
    return 0;
}

int kmsd_attr_check_value(kmsd_op *op, const char *name, const vmseal_ttlv *value)
{
    if (!value)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_MISSING_DATA, "attribute %s has no value", name);
    if (vmseal_ttlv_tag(value) != VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD, "attribute %s: bad value", name);
    const vmseal_kmip_attr_info *info = vmseal_kmip_attr_lookup(name);
    if (info && vmseal_ttlv_type_of(value) != info->type)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD,
                            "attribute %s must be a %s, not a %s", name,
                            vmseal_ttlv_type_name(info->type),
                            vmseal_ttlv_type_name(vmseal_ttlv_type_of(value)));
    if (vmseal_ttlv_encoded_len(value) > 64 * 1024)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD, "attribute %s is too large", name);
    return 0;
}

int kmsd_attr_encode(const vmseal_ttlv *value, uint8_t **buf, size_t *len)
{
    return vmseal_ttlv_encode(value, buf, len);
}

int kmsd_attr_append_stored(vmseal_ttlv *parent, const char *name, int idx, const uint8_t *v,
                            size_t len)
{
    vmseal_ttlv *value;
    int r = vmseal_ttlv_decode(v, len, &value);
    if (r < 0)
        return vmseal_fail(EBADMSG, "stored attribute %s is corrupt", name);
    vmseal_ttlv *a = vmseal_ttlv_add_struct(parent, VMSEAL_KMIP_TAG_ATTRIBUTE);
    vmseal_ttlv_add_text(a, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, name);
    if (idx > 0)
        vmseal_ttlv_add_int(a, VMSEAL_KMIP_TAG_ATTRIBUTE_INDEX, idx);
    if (!a || vmseal_ttlv_append(a, value) < 0) {
        vmseal_ttlv_free(value);
        return -ENOMEM;
    }
    return 0;
}

static vmseal_ttlv *column_attr(vmseal_ttlv *parent, const char *name)
{
    vmseal_ttlv *a = vmseal_ttlv_add_struct(parent, VMSEAL_KMIP_TAG_ATTRIBUTE);
    vmseal_ttlv_add_text(a, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, name);
    return a;
}

int kmsd_attr_append_columns(vmseal_ttlv *parent, const kmsd_obj *o, const char *name)
{
    if (!name || !strcmp(name, VMSEAL_KMIP_ATTR_UNIQUE_IDENTIFIER))
        vmseal_ttlv_add_text(column_attr(parent, VMSEAL_KMIP_ATTR_UNIQUE_IDENTIFIER),
                             VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE, o->uid);
    if (!name || !strcmp(name, VMSEAL_KMIP_ATTR_OBJECT_TYPE))
        vmseal_ttlv_add_enum(column_attr(parent, VMSEAL_KMIP_ATTR_OBJECT_TYPE),
                             VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE, o->object_type);
    if (!name || !strcmp(name, VMSEAL_KMIP_ATTR_STATE))
        vmseal_ttlv_add_enum(column_attr(parent, VMSEAL_KMIP_ATTR_STATE),
                             VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE, o->state);
    if (!name || !strcmp(name, VMSEAL_KMIP_ATTR_INITIAL_DATE))
        vmseal_ttlv_add_datetime(column_attr(parent, VMSEAL_KMIP_ATTR_INITIAL_DATE),
                                 VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE, o->created);
    if (!name || !strcmp(name, VMSEAL_KMIP_ATTR_LAST_CHANGE_DATE))
        vmseal_ttlv_add_datetime(column_attr(parent, VMSEAL_KMIP_ATTR_LAST_CHANGE_DATE),
                                 VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE, o->changed);
    return vmseal_ttlv_build_error(parent);
}

int kmsd_attr_store(kmsd_db *db, const char *uid, const char *name, const vmseal_ttlv *value,
                    int replace_single)
{
    uint8_t *buf;
    size_t len;
    int r = kmsd_attr_encode(value, &buf, &len);
    if (r < 0)
        return r;
    int idx = 0;
    if (kmsd_attr_rules(name) & KMSD_ATTR_MULTI) {
        idx = kmsd_db_attr_next_index(db, uid, name);
    } else if (!replace_single) {
        int n = kmsd_db_attr_count(db, uid, name);
        if (n > 0) {
            vmseal_ttlv_buf_free(buf, len);
            return -EEXIST;
        }
        idx = n < 0 ? n : 0;
    }
    if (idx >= 0)
        r = kmsd_db_attr_put(db, uid, name, idx, buf, len);
    vmseal_ttlv_buf_free(buf, len);
    return r < 0 ? r : idx;
}

int kmsd_attr_store_int(kmsd_db *db, const char *uid, const char *name, int type, int64_t v)
{
    vmseal_ttlv *holder = vmseal_ttlv_struct(VMSEAL_KMIP_TAG_ATTRIBUTE);
    vmseal_ttlv *val = NULL;
    switch (type) {
    case VMSEAL_TTLV_INTEGER:
        val = vmseal_ttlv_add_int(holder, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE, (int32_t)v);
        break;
    case VMSEAL_TTLV_ENUM:
        val = vmseal_ttlv_add_enum(holder, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE, (uint32_t)v);
        break;
    case VMSEAL_TTLV_DATETIME:
        val = vmseal_ttlv_add_datetime(holder, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE, v);
        break;
    default:
        break;
    }
    int r = val ? kmsd_attr_store(db, uid, name, val, 1) : -ENOMEM;
    vmseal_ttlv_free(holder);
    return r;
}

int kmsd_attr_apply_template(kmsd_op *op, kmsd_db *db, const char *uid,
                             const vmseal_ttlv *tmpl, int64_t *activation)
{
    *activation = -1;
    if (!tmpl)
        return 0;
    if (vmseal_ttlv_find(tmpl, VMSEAL_KMIP_TAG_NAME))
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_FEATURE_NOT_SUPPORTED,
                            "templates (named Template objects) are not supported");
    for (vmseal_ttlv *a = NULL; (a = vmseal_ttlv_next(tmpl, VMSEAL_KMIP_TAG_ATTRIBUTE, a));) {
        const char *name;
        if (vmseal_ttlv_find_text(a, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, &name, NULL) < 0)
            return kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD, "attribute without a name");
        unsigned rules = kmsd_attr_rules(name);
        if (!(rules & KMSD_ATTR_KNOWN))
            return kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD,
                                "attribute \"%s\" is not supported", name);
        if (!(rules & KMSD_ATTR_TEMPLATE))
            return kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD,
                                "attribute \"%s\" cannot be set by the client", name);
        vmseal_ttlv *value = vmseal_ttlv_find(a, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE);
        if (kmsd_attr_check_value(op, name, value) < 0)
            return -1;
        if (!strcmp(name, VMSEAL_KMIP_ATTR_ACTIVATION_DATE) &&
            vmseal_ttlv_get_datetime(value, activation) < 0)
            return kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD, "bad Activation Date");
        int r = kmsd_attr_store(db, uid, name, value, 0);
        if (r == -EEXIST)
            return kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD,
                                "attribute \"%s\" given more than once", name);
        if (r < 0)
            return kmsd_op_fail_errno(op, r, "storing attributes");
    }
    return 0;
}
