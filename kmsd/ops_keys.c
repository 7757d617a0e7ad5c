/* Create, Register and Get: objects with key material. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "ops.h"

#define MAX_MATERIAL 4096

/* Find "Name" in a Template-Attribute and read it as an int or enum. */
static int template_number(const vmseal_ttlv *tmpl, const char *name, int64_t *out)
{
    for (vmseal_ttlv *a = NULL; (a = vmseal_ttlv_next(tmpl, VMSEAL_KMIP_TAG_ATTRIBUTE, a));) {
        const char *n;
        if (vmseal_ttlv_find_text(a, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, &n, NULL) < 0 || strcmp(n, name))
            continue;
        vmseal_ttlv *v = vmseal_ttlv_find(a, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE);
        int32_t i;
        uint32_t e;
        if (vmseal_ttlv_get_int(v, &i) == 0) {
            *out = i;
            return 0;
        }
        if (vmseal_ttlv_get_enum(v, &e) == 0) {
            *out = e;
            return 0;
        }
        return -EPROTO;
    }
    return -ENOENT;
}

/* The attribute template of a request: KMIP 1.x Template-Attribute (also
 * accepted: the 2.0 Attributes structure). */
static const vmseal_ttlv *request_template(const vmseal_ttlv *req)
{
    const vmseal_ttlv *t = vmseal_ttlv_find(req, VMSEAL_KMIP_TAG_TEMPLATE_ATTRIBUTE);
    return t;
}

/* Insert a new object with its material and template attributes; the
 * caller holds a write transaction. State Pre-Active, or Active when the
 * template carries an Activation Date that is not in the future. */
static int insert_object(kmsd_op *op, kmsd_db *db, kmsd_obj *o, const vmseal_ttlv *tmpl,
                         const vmseal_secret *material, uint32_t alg, int32_t bits, int store_alg)
{
    int r = kmsd_db_next_uid(db, o->uid);
    if (r < 0)
        return kmsd_op_fail_errno(op, r, "allocating an identifier");
    snprintf(op->uid, sizeof(op->uid), "%s", o->uid);
    int64_t now = kmsd_now();
    o->created = o->changed = now;
    o->state = VMSEAL_KMIP_STATE_PRE_ACTIVE;
    o->alg = alg;
    o->bits = bits;
    snprintf(o->owner, sizeof(o->owner), "%s", op->identity);
    uint8_t *blob;
    size_t bl;
    r = kmsd_mk_wrap(op->srv->mk, o->uid, vmseal_secret_cdata(material),
                     vmseal_secret_len(material), &blob, &bl);
    if (r < 0)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_CRYPTOGRAPHIC_FAILURE,
                            "wrapping the key with the master key: %s", vmseal_last_error());
    r = kmsd_db_insert(db, o, blob, bl);
    free(blob);
    if (r < 0)
        return kmsd_op_fail_errno(op, r, "storing the object");
    int64_t activation;
    if (kmsd_attr_apply_template(op, db, o->uid, tmpl, &activation) < 0)
        return -1;
    if (store_alg && (r = kmsd_attr_store_int(db, o->uid, VMSEAL_KMIP_ATTR_CRYPTOGRAPHIC_ALGORITHM,
                                              VMSEAL_TTLV_ENUM, alg)) < 0)
        return kmsd_op_fail_errno(op, r, "storing attributes");
    if (store_alg && bits &&
        (r = kmsd_attr_store_int(db, o->uid, VMSEAL_KMIP_ATTR_CRYPTOGRAPHIC_LENGTH,
                                 VMSEAL_TTLV_INTEGER, bits)) < 0)
        return kmsd_op_fail_errno(op, r, "storing attributes");
    if (activation >= 0 && activation <= now) {
        o->state = VMSEAL_KMIP_STATE_ACTIVE;
        if ((r = kmsd_db_set_state(db, o->uid, o->state, now)) < 0)
            return kmsd_op_fail_errno(op, r, "storing the state");
    } else if (activation > now) {
        /* time-driven transitions are not run by this server: refuse
         * rather than store a date that would never take effect */
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_FEATURE_NOT_SUPPORTED,
                            "an Activation Date in the future is not supported; "
                            "create the key and Activate it later");
    }
    return 0;
}

int kmsd_op_create(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp)
{
    uint32_t type;
    if (vmseal_ttlv_find_enum(req, VMSEAL_KMIP_TAG_OBJECT_TYPE, &type) < 0)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_MISSING_DATA, "Create needs an Object Type");
    if (type != VMSEAL_KMIP_OBJ_SYMMETRIC_KEY)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_FEATURE_NOT_SUPPORTED,
                            "Create makes Symmetric Keys only (asked for %s)",
                            vmseal_kmip_enum_name(VMSEAL_KMIP_TAG_OBJECT_TYPE, type)
                                ? vmseal_kmip_enum_name(VMSEAL_KMIP_TAG_OBJECT_TYPE, type)
                                : "an unknown object type");
    const vmseal_ttlv *tmpl = request_template(req);
    int64_t alg = 0, bits = 0;
    if (template_number(tmpl, VMSEAL_KMIP_ATTR_CRYPTOGRAPHIC_ALGORITHM, &alg) < 0)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_MISSING_DATA,
                            "Create needs a Cryptographic Algorithm attribute");
    if (alg != VMSEAL_KMIP_ALG_AES)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_FEATURE_NOT_SUPPORTED,
                            "Create makes AES keys only");
    if (template_number(tmpl, VMSEAL_KMIP_ATTR_CRYPTOGRAPHIC_LENGTH, &bits) < 0)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_MISSING_DATA,
                            "Create needs a Cryptographic Length attribute");
    if (bits != 128 && bits != 192 && bits != 256)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD,
                            "AES keys are 128, 192 or 256 bits (asked for %lld)", (long long)bits);
    vmseal_secret *key;
    int r = vmseal_secret_random((size_t)bits / 8, &key);
    if (r < 0)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_CRYPTOGRAPHIC_FAILURE, "no randomness");
    kmsd_db *db;
    if ((r = kmsd_store_write_begin(op->srv->store, &db)) < 0) {
        vmseal_secret_free(key);
        return kmsd_op_fail_errno(op, r, "opening the store");
    }
    kmsd_obj o = {.object_type = VMSEAL_KMIP_OBJ_SYMMETRIC_KEY,
                  .key_format = VMSEAL_KMIP_KEYFMT_RAW};
    r = insert_object(op, db, &o, tmpl, key, (uint32_t)alg, (int32_t)bits, 0);
    vmseal_secret_free(key);
    int c = kmsd_store_end(op->srv->store, db, r == 0);
    if (r < 0)
        return r;
    if (c < 0)
        return kmsd_op_fail_errno(op, c, "committing");
    snprintf(op->placeholder, sizeof(op->placeholder), "%s", o.uid);
    vmseal_ttlv_add_enum(resp, VMSEAL_KMIP_TAG_OBJECT_TYPE, o.object_type);
    vmseal_ttlv_add_text(resp, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, o.uid);
    return 0;
}

/* Key Block of a Register request: material, algorithm, length. */
static int read_key_block(kmsd_op *op, const vmseal_ttlv *kb, int symmetric, uint32_t *format,
                          vmseal_secret **material, uint32_t *alg, int32_t *bits)
{
    if (!kb)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_MISSING_DATA, "no Key Block");
    if (vmseal_ttlv_find(kb, VMSEAL_KMIP_TAG_KEY_WRAPPING_DATA))
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_FEATURE_NOT_SUPPORTED,
                            "wrapped key material (Key Wrapping Data) is not accepted; "
                            "register the plain key over the TLS connection");
    if (vmseal_ttlv_find_enum(kb, VMSEAL_KMIP_TAG_KEY_FORMAT_TYPE, format) < 0)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_MISSING_DATA, "no Key Format Type");
    vmseal_ttlv *kv = vmseal_ttlv_find(kb, VMSEAL_KMIP_TAG_KEY_VALUE);
    vmseal_ttlv *km = vmseal_ttlv_find(kv, VMSEAL_KMIP_TAG_KEY_MATERIAL);
    if (!km)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_MISSING_DATA, "no Key Material");
    if (*format == VMSEAL_KMIP_KEYFMT_TRANSPARENT_SYMMETRIC_KEY && symmetric) {
        km = vmseal_ttlv_find(km, VMSEAL_KMIP_TAG_KEY);
        *format = VMSEAL_KMIP_KEYFMT_RAW;
    } else if (symmetric && *format != VMSEAL_KMIP_KEYFMT_RAW) {
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_KEY_FORMAT_TYPE_NOT_SUPPORTED,
                            "symmetric keys are registered as Raw or Transparent Symmetric Key");
    } else if (!symmetric && *format != VMSEAL_KMIP_KEYFMT_OPAQUE && *format != VMSEAL_KMIP_KEYFMT_RAW) {
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_KEY_FORMAT_TYPE_NOT_SUPPORTED,
                            "secret data is registered as Opaque or Raw");
    }
    const uint8_t *p;
    size_t len;
    if (vmseal_ttlv_get_bytes(km, &p, &len) < 0 || len == 0)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD, "Key Material is not a byte string");
    if (len > MAX_MATERIAL)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD, "Key Material over %d bytes",
                            MAX_MATERIAL);
    *alg = 0;
    *bits = 0;
    if (symmetric) {
        if (vmseal_ttlv_find_enum(kb, VMSEAL_KMIP_TAG_CRYPTOGRAPHIC_ALGORITHM, alg) < 0)
            return kmsd_op_fail(op, VMSEAL_KMIP_REASON_MISSING_DATA,
                                "the Key Block needs a Cryptographic Algorithm");
        int32_t b;
        int r = vmseal_ttlv_find_int(kb, VMSEAL_KMIP_TAG_CRYPTOGRAPHIC_LENGTH, &b);
        if (r == 0 && (size_t)b != len * 8)
            return kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD,
                                "Cryptographic Length %d does not match %zu bytes of material", b, len);
        if (*alg == VMSEAL_KMIP_ALG_AES && len != 16 && len != 24 && len != 32)
            return kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD,
                                "an AES key is 16, 24 or 32 bytes, not %zu", len);
        *bits = (int32_t)(len * 8);
    }
    if (vmseal_ttlv_get_secret(km, material) < 0)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_GENERAL_FAILURE,
                            "no secure memory for the key material: %s", vmseal_last_error());
    return 0;
}

int kmsd_op_register(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp)
{
    uint32_t type;
    if (vmseal_ttlv_find_enum(req, VMSEAL_KMIP_TAG_OBJECT_TYPE, &type) < 0)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_MISSING_DATA, "Register needs an Object Type");
    kmsd_obj o = {.object_type = type};
    const vmseal_ttlv *kb;
    int symmetric = type == VMSEAL_KMIP_OBJ_SYMMETRIC_KEY;
    if (symmetric) {
        kb = vmseal_ttlv_dig(req, VMSEAL_KMIP_TAG_SYMMETRIC_KEY, VMSEAL_KMIP_TAG_KEY_BLOCK, 0);
    } else if (type == VMSEAL_KMIP_OBJ_SECRET_DATA) {
        const vmseal_ttlv *sd = vmseal_ttlv_find(req, VMSEAL_KMIP_TAG_SECRET_DATA);
        if (vmseal_ttlv_find_enum(sd, VMSEAL_KMIP_TAG_SECRET_DATA_TYPE, &o.subtype) < 0)
            return kmsd_op_fail(op, VMSEAL_KMIP_REASON_MISSING_DATA, "Secret Data needs a "
                                                                        "Secret Data Type");
        kb = vmseal_ttlv_find(sd, VMSEAL_KMIP_TAG_KEY_BLOCK);
    } else {
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_FEATURE_NOT_SUPPORTED,
                            "Register accepts Symmetric Key and Secret Data objects only");
    }
    vmseal_secret *material = NULL;
    uint32_t alg = 0;
    int32_t bits = 0;
    if (read_key_block(op, kb, symmetric, &o.key_format, &material, &alg, &bits) < 0)
        return -1;
    kmsd_db *db;
    int r = kmsd_store_write_begin(op->srv->store, &db);
    if (r < 0) {
        vmseal_secret_free(material);
        return kmsd_op_fail_errno(op, r, "opening the store");
    }
    r = insert_object(op, db, &o, request_template(req), material, alg, bits, alg != 0);
    vmseal_secret_free(material);
    int c = kmsd_store_end(op->srv->store, db, r == 0);
    if (r < 0)
        return r;
    if (c < 0)
        return kmsd_op_fail_errno(op, c, "committing");
    snprintf(op->placeholder, sizeof(op->placeholder), "%s", o.uid);
    vmseal_ttlv_add_text(resp, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, o.uid);
    return 0;
}

int kmsd_op_get(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp)
{
    char uid[KMSD_UID_MAX];
    if (kmsd_op_uid(op, req, uid) < 0)
        return -1;
    if (vmseal_ttlv_find(req, VMSEAL_KMIP_TAG_KEY_WRAPPING_SPECIFICATION))
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_FEATURE_NOT_SUPPORTED,
                            "Key Wrapping Specification is not supported: keys are returned "
                            "in plain over the mutually authenticated TLS connection");
    uint32_t want = 0;
    int r = vmseal_ttlv_find_enum(req, VMSEAL_KMIP_TAG_KEY_FORMAT_TYPE, &want);
    if (r < 0 && r != -ENOENT)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD, "bad Key Format Type");
    kmsd_db *db;
    if ((r = kmsd_store_read_begin(op->srv->store, &db)) < 0)
        return kmsd_op_fail_errno(op, r, "opening the store");
    kmsd_obj o;
    uint8_t *blob = NULL;
    size_t bl = 0;
    int64_t alg = 0, bits = 0;
    r = kmsd_op_load(op, db, uid, &o);
    if (r == 0 && (o.state == VMSEAL_KMIP_STATE_DESTROYED ||
                   o.state == VMSEAL_KMIP_STATE_DESTROYED_COMPROMISED || !o.has_material))
        r = kmsd_op_fail(op, VMSEAL_KMIP_REASON_KEY_VALUE_NOT_PRESENT,
                         "object %s is destroyed: its key material is gone", uid);
    if (r == 0) {
        int e = kmsd_db_material(db, uid, &blob, &bl);
        if (e < 0)
            r = kmsd_op_fail_errno(op, e, "reading the key");
    }
    if (r == 0 && o.object_type == VMSEAL_KMIP_OBJ_SYMMETRIC_KEY) {
        alg = o.alg;
        bits = o.bits;
    }
    (void)kmsd_store_end(op->srv->store, db, 0);
    if (r < 0)
        return r;

    uint32_t format = o.key_format;
    if (o.object_type == VMSEAL_KMIP_OBJ_SYMMETRIC_KEY) {
        if (want && want != VMSEAL_KMIP_KEYFMT_RAW &&
            want != VMSEAL_KMIP_KEYFMT_TRANSPARENT_SYMMETRIC_KEY) {
            free(blob);
            return kmsd_op_fail(op, VMSEAL_KMIP_REASON_KEY_FORMAT_TYPE_NOT_SUPPORTED,
                                "symmetric keys are available as Raw or Transparent Symmetric Key");
        }
        if (want)
            format = want;
    } else if (want && want != format) {
        free(blob);
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_KEY_FORMAT_TYPE_NOT_SUPPORTED,
                            "this object is kept as %s",
                            vmseal_kmip_enum_name(VMSEAL_KMIP_TAG_KEY_FORMAT_TYPE, format));
    }
    if (bl <= KMSD_MK_OVERHEAD) {
        free(blob);
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_CRYPTOGRAPHIC_FAILURE,
                            "object %s: stored key is malformed", uid);
    }
    size_t keylen = bl - KMSD_MK_OVERHEAD;
    vmseal_ttlv_add_enum(resp, VMSEAL_KMIP_TAG_OBJECT_TYPE, o.object_type);
    vmseal_ttlv_add_text(resp, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, uid);
    vmseal_ttlv *obj, *kb;
    if (o.object_type == VMSEAL_KMIP_OBJ_SYMMETRIC_KEY) {
        obj = vmseal_ttlv_add_struct(resp, VMSEAL_KMIP_TAG_SYMMETRIC_KEY);
    } else {
        obj = vmseal_ttlv_add_struct(resp, VMSEAL_KMIP_TAG_SECRET_DATA);
        vmseal_ttlv_add_enum(obj, VMSEAL_KMIP_TAG_SECRET_DATA_TYPE, o.subtype);
    }
    kb = vmseal_ttlv_add_struct(obj, VMSEAL_KMIP_TAG_KEY_BLOCK);
    vmseal_ttlv_add_enum(kb, VMSEAL_KMIP_TAG_KEY_FORMAT_TYPE, format);
    vmseal_ttlv *kv = vmseal_ttlv_add_struct(kb, VMSEAL_KMIP_TAG_KEY_VALUE);
    /* the key is unwrapped straight into the response's secure buffer */
    uint8_t *dst = NULL;
    if (format == VMSEAL_KMIP_KEYFMT_TRANSPARENT_SYMMETRIC_KEY)
        vmseal_ttlv_add_secret_space(vmseal_ttlv_add_struct(kv, VMSEAL_KMIP_TAG_KEY_MATERIAL),
                                     VMSEAL_KMIP_TAG_KEY, keylen, &dst);
    else
        vmseal_ttlv_add_secret_space(kv, VMSEAL_KMIP_TAG_KEY_MATERIAL, keylen, &dst);
    if (!dst) {
        free(blob);
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_GENERAL_FAILURE,
                            "no secure memory for the key of object %s: the limit of this "
                            "connection (max_connection_secrets, max_connection_locked_memory) "
                            "or of the server (max_locked_memory) is reached", uid);
    }
    r = kmsd_mk_unwrap_into(op->srv->mk, uid, blob, bl, dst, keylen);
    free(blob);
    if (r < 0)
        return kmsd_op_fail(op, VMSEAL_KMIP_REASON_CRYPTOGRAPHIC_FAILURE, "unwrapping object %s: %s",
                            uid, vmseal_last_error());
    if (alg)
        vmseal_ttlv_add_enum(kb, VMSEAL_KMIP_TAG_CRYPTOGRAPHIC_ALGORITHM, (uint32_t)alg);
    if (bits)
        vmseal_ttlv_add_int(kb, VMSEAL_KMIP_TAG_CRYPTOGRAPHIC_LENGTH, (int32_t)bits);
    return vmseal_ttlv_build_error(resp) ? kmsd_op_fail(op, VMSEAL_KMIP_REASON_GENERAL_FAILURE,
                                                        "building the response")
                                         : 0;
}
