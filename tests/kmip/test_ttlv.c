/* TTLV codec: known-answer vectors (vCenter 7.0.3 + PyKMIP, OASIS KMIP 1.1
 * test cases), builders/accessors, and malformed input. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <vmseal/kmip.h>

#include "vectors.h"

/* ---- vectors ------------------------------------------------------------- */

static void roundtrip(const uint8_t *buf, size_t len, const char *what)
{
    vmseal_ttlv *t = NULL;
    int rc = vmseal_ttlv_decode(buf, len, &t);
    if (rc != 0)
        fail_msg("%s: decode failed: %s", what, vmseal_last_error());
    uint8_t *enc = NULL;
    size_t elen = 0;
    assert_int_equal(vmseal_ttlv_encode(t, &enc, &elen), 0);
    if (elen != len || memcmp(enc, buf, len) != 0)
        fail_msg("%s: re-encoding differs (%zu vs %zu bytes)", what, elen, len);
    assert_int_equal(vmseal_ttlv_encoded_len(t), len);
    char *dump = vmseal_ttlv_dump_str(t);
    assert_non_null(dump);
    free(dump);
    vmseal_ttlv_buf_free(enc, elen);
    vmseal_ttlv_free(t);
}

static void test_vcenter_roundtrip(void **state)
{
    (void)state;
    char dir[4096];
    vector_dir(dir, sizeof(dir), "vcenter-7.0.3");
    DIR *d = opendir(dir);
    if (!d)
        fail_msg("cannot open %s", dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 4 || strcmp(e->d_name + l - 4, ".hex") != 0)
            continue;
        size_t len;
        uint8_t *buf = vector_load(e->d_name, &len);
        roundtrip(buf, len, e->d_name);
        free(buf);
        n++;
    }
    closedir(d);
    assert_int_equal(n, 72); /* 36 requests + 36 responses */
}

static void test_oasis_roundtrip(void **state)
{
    (void)state;
    char path[4096];
    vector_dir(path, sizeof(path), "kmip-testcases-v1.1.txt");
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t r;
    int n = 0, requests = 0;
    while ((r = getline(&line, &cap, f)) > 0) {
        while (r > 0 && (line[r - 1] == '\n' || line[r - 1] == '\r'))
            line[--r] = 0;
        if (strncmp(line, "420078", 6) != 0 && strncmp(line, "42007B", 6) != 0)
            continue;
        size_t len = (size_t)r / 2;
        uint8_t *buf = malloc(len);
        assert_non_null(buf);
        assert_int_equal(vmseal_hex_decode(line, (size_t)r, buf, len), 0);
        char what[64];
        snprintf(what, sizeof(what), "OASIS vector %d", n + 1);
        roundtrip(buf, len, what);
        free(buf);
        n++;
        requests += line[5] == '8';
    }
    free(line);
    fclose(f);
    assert_int_equal(n, 520);
    assert_int_equal(requests, 260);
}

/* Attribute Value of the Attribute named `name` in a Template-Attribute. */
static vmseal_ttlv *attr_value(const vmseal_ttlv *tmpl, const char *name)
{
    for (vmseal_ttlv *a = NULL; (a = vmseal_ttlv_next(tmpl, VMSEAL_KMIP_TAG_ATTRIBUTE, a));) {
        const char *n;
        if (vmseal_ttlv_find_text(a, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, &n, NULL) == 0 &&
            strcmp(n, name) == 0)
            return vmseal_ttlv_find(a, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE);
    }
    return NULL;
}

static vmseal_ttlv *load_tree(const char *name)
{
    size_t len;
    uint8_t *buf = vector_load(name, &len);
    vmseal_ttlv *t = NULL;
    if (vmseal_ttlv_decode(buf, len, &t) != 0)
        fail_msg("%s: %s", name, vmseal_last_error());
    free(buf);
    return t;
}

static void test_vcenter_create_values(void **state)
{
    (void)state;
    vmseal_ttlv *t = load_tree("06-create.request.hex");
    assert_int_equal(vmseal_ttlv_tag(t), VMSEAL_KMIP_TAG_REQUEST_MESSAGE);
    int32_t major, minor, count;
    vmseal_ttlv *pv = vmseal_ttlv_dig(t, VMSEAL_KMIP_TAG_REQUEST_HEADER, VMSEAL_KMIP_TAG_PROTOCOL_VERSION, 0);
    assert_int_equal(vmseal_ttlv_find_int(pv, VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MAJOR, &major), 0);
    assert_int_equal(vmseal_ttlv_find_int(pv, VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MINOR, &minor), 0);
    assert_int_equal(major, 1);
    assert_int_equal(minor, 1);
    assert_int_equal(vmseal_ttlv_find_int(vmseal_ttlv_find(t, VMSEAL_KMIP_TAG_REQUEST_HEADER),
                                          VMSEAL_KMIP_TAG_BATCH_COUNT, &count), 0);
    assert_int_equal(count, 1);
    vmseal_ttlv *item = vmseal_ttlv_find(t, VMSEAL_KMIP_TAG_BATCH_ITEM);
    uint32_t op, objtype, alg;
    assert_int_equal(vmseal_ttlv_find_enum(item, VMSEAL_KMIP_TAG_OPERATION, &op), 0);
    assert_int_equal(op, VMSEAL_KMIP_OP_CREATE);
    const uint8_t *ubi;
    size_t ubilen;
    assert_int_equal(vmseal_ttlv_find_bytes(item, VMSEAL_KMIP_TAG_UNIQUE_BATCH_ITEM_ID, &ubi, &ubilen), 0);
    assert_int_equal(ubilen, 8);
    assert_memory_equal(ubi, "QLKC\x01\0\0\0", 8);
    vmseal_ttlv *payload = vmseal_ttlv_find(item, VMSEAL_KMIP_TAG_REQUEST_PAYLOAD);
    assert_int_equal(vmseal_ttlv_find_enum(payload, VMSEAL_KMIP_TAG_OBJECT_TYPE, &objtype), 0);
    assert_int_equal(objtype, VMSEAL_KMIP_OBJ_SYMMETRIC_KEY);
    vmseal_ttlv *tmpl = vmseal_ttlv_find(payload, VMSEAL_KMIP_TAG_TEMPLATE_ATTRIBUTE);
    assert_int_equal(vmseal_ttlv_count(tmpl, VMSEAL_KMIP_TAG_ATTRIBUTE), 3);
    int32_t bits, mask;
    assert_int_equal(vmseal_ttlv_get_int(attr_value(tmpl, "Cryptographic Length"), &bits), 0);
    assert_int_equal(bits, 256);
    assert_int_equal(vmseal_ttlv_get_int(attr_value(tmpl, "Cryptographic Usage Mask"), &mask), 0);
    assert_int_equal(mask, VMSEAL_KMIP_USAGE_ENCRYPT | VMSEAL_KMIP_USAGE_DECRYPT);
    assert_int_equal(vmseal_ttlv_get_enum(attr_value(tmpl, "Cryptographic Algorithm"), &alg), 0);
    assert_int_equal(alg, VMSEAL_KMIP_ALG_AES);
    /* Typed getters refuse the wrong type. */
    assert_int_equal(vmseal_ttlv_get_enum(attr_value(tmpl, "Cryptographic Length"), &alg), -EPROTO);
    assert_non_null(strstr(vmseal_last_error(), "Attribute Value"));
    assert_int_equal(vmseal_ttlv_find_int(payload, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, &bits), -ENOENT);
    assert_non_null(strstr(vmseal_last_error(), "Unique Identifier"));
    vmseal_ttlv_free(t);

    t = load_tree("06-create.response.hex");
    const char *uid;
    size_t uidlen;
    payload = vmseal_ttlv_dig(t, VMSEAL_KMIP_TAG_BATCH_ITEM, VMSEAL_KMIP_TAG_RESPONSE_PAYLOAD, 0);
    assert_int_equal(vmseal_ttlv_find_text(payload, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, &uid, &uidlen), 0);
    assert_string_equal(uid, "1");
    assert_int_equal(uidlen, 1);
    vmseal_ttlv_free(t);
}

static void test_vcenter_add_attribute_batch(void **state)
{
    (void)state;
    vmseal_ttlv *t = load_tree("11-add-attribute.request.hex");
    int32_t count;
    assert_int_equal(vmseal_ttlv_find_int(vmseal_ttlv_find(t, VMSEAL_KMIP_TAG_REQUEST_HEADER),
                                          VMSEAL_KMIP_TAG_BATCH_COUNT, &count), 0);
    assert_int_equal(count, 3);
    assert_int_equal(vmseal_ttlv_count(t, VMSEAL_KMIP_TAG_BATCH_ITEM), 3);
    static const char *names[] = {"x-Product_Version", "x-Vendor", "x-Product"};
    static const char *values[] = {"7.0.3 build-19480866", "VMware, Inc.", "VMware vSphere"};
    int i = 0;
    for (vmseal_ttlv *it = NULL; (it = vmseal_ttlv_next(t, VMSEAL_KMIP_TAG_BATCH_ITEM, it)); i++) {
        uint32_t op;
        assert_int_equal(vmseal_ttlv_find_enum(it, VMSEAL_KMIP_TAG_OPERATION, &op), 0);
        assert_int_equal(op, VMSEAL_KMIP_OP_ADD_ATTRIBUTE);
        const uint8_t *ubi;
        size_t len;
        assert_int_equal(vmseal_ttlv_find_bytes(it, VMSEAL_KMIP_TAG_UNIQUE_BATCH_ITEM_ID, &ubi, &len), 0);
        uint8_t want[8] = {0x51, 0x4c, 0x4b, 0x43, (uint8_t)(i + 1), 0, 0, 0};
        assert_int_equal(len, 8);
        assert_memory_equal(ubi, want, 8);
        vmseal_ttlv *p = vmseal_ttlv_find(it, VMSEAL_KMIP_TAG_REQUEST_PAYLOAD);
        const char *s;
        assert_int_equal(vmseal_ttlv_find_text(p, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, &s, NULL), 0);
        assert_string_equal(s, "1");
        vmseal_ttlv *a = vmseal_ttlv_find(p, VMSEAL_KMIP_TAG_ATTRIBUTE);
        assert_int_equal(vmseal_ttlv_find_text(a, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, &s, NULL), 0);
        assert_string_equal(s, names[i]);
        assert_int_equal(vmseal_ttlv_find_text(a, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE, &s, NULL), 0);
        assert_string_equal(s, values[i]);
    }
    assert_int_equal(i, 3);
    vmseal_ttlv_free(t);
}

static void test_vcenter_get_redacts_key(void **state)
{
    (void)state;
    vmseal_ttlv *t = load_tree("15-get.request.hex");
    const char *uid;
    vmseal_ttlv *payload = vmseal_ttlv_dig(t, VMSEAL_KMIP_TAG_BATCH_ITEM, VMSEAL_KMIP_TAG_REQUEST_PAYLOAD, 0);
    assert_int_equal(vmseal_ttlv_find_text(payload, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, &uid, NULL), 0);
    assert_string_equal(uid, "2");
    vmseal_ttlv_free(t);

    t = load_tree("15-get.response.hex");
    payload = vmseal_ttlv_dig(t, VMSEAL_KMIP_TAG_BATCH_ITEM, VMSEAL_KMIP_TAG_RESPONSE_PAYLOAD, 0);
    assert_int_equal(vmseal_ttlv_find_text(payload, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, &uid, NULL), 0);
    assert_string_equal(uid, "2");
    vmseal_ttlv *km = vmseal_ttlv_dig(payload, VMSEAL_KMIP_TAG_SYMMETRIC_KEY, VMSEAL_KMIP_TAG_KEY_BLOCK,
                                      VMSEAL_KMIP_TAG_KEY_VALUE, VMSEAL_KMIP_TAG_KEY_MATERIAL, 0);
    vmseal_secret *key = NULL;
    assert_int_equal(vmseal_ttlv_get_secret(km, &key), 0);
    assert_int_equal(vmseal_secret_len(key), 32);
    /* The dump shows the key's size, never its bytes. */
    char hex[65];
    vmseal_hex_encode(vmseal_secret_cdata(key), 32, hex);
    for (char *c = hex; *c; c++)
        *c = (char)(*c >= 'a' ? *c - 32 : *c);
    char *dump = vmseal_ttlv_dump_str(t);
    assert_non_null(dump);
    assert_non_null(strstr(dump, "Key Material (0x420043)"));
    assert_non_null(strstr(dump, "<redacted 32 bytes>"));
    assert_null(strstr(dump, hex));
    assert_null(strstr(dump, hex + 48)); /* not even a tail of it */
    assert_non_null(strstr(dump, "0x00000003 (AES)"));
    free(dump);
    vmseal_secret_free(key);
    vmseal_ttlv_free(t);
}

/* ---- building ------------------------------------------------------------ */

static void test_build_and_encode(void **state)
{
    (void)state;
    /* Rebuild the vCenter Create request (06) by hand; bytes must match. */
    vmseal_ttlv *m = vmseal_ttlv_struct(VMSEAL_KMIP_TAG_REQUEST_MESSAGE);
    vmseal_ttlv *h = vmseal_ttlv_add_struct(m, VMSEAL_KMIP_TAG_REQUEST_HEADER);
    vmseal_ttlv *pv = vmseal_ttlv_add_struct(h, VMSEAL_KMIP_TAG_PROTOCOL_VERSION);
    vmseal_ttlv_add_int(pv, VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MAJOR, 1);
    vmseal_ttlv_add_int(pv, VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MINOR, 1);
    vmseal_ttlv_add_int(h, VMSEAL_KMIP_TAG_BATCH_COUNT, 1);
    vmseal_ttlv *it = vmseal_ttlv_add_struct(m, VMSEAL_KMIP_TAG_BATCH_ITEM);
    vmseal_ttlv_add_enum(it, VMSEAL_KMIP_TAG_OPERATION, VMSEAL_KMIP_OP_CREATE);
    vmseal_ttlv_add_bytes(it, VMSEAL_KMIP_TAG_UNIQUE_BATCH_ITEM_ID, "QLKC\x01\0\0\0", 8);
    vmseal_ttlv *p = vmseal_ttlv_add_struct(it, VMSEAL_KMIP_TAG_REQUEST_PAYLOAD);
    vmseal_ttlv_add_enum(p, VMSEAL_KMIP_TAG_OBJECT_TYPE, VMSEAL_KMIP_OBJ_SYMMETRIC_KEY);
    vmseal_ttlv *ta = vmseal_ttlv_add_struct(p, VMSEAL_KMIP_TAG_TEMPLATE_ATTRIBUTE);
    vmseal_ttlv *a = vmseal_ttlv_add_struct(ta, VMSEAL_KMIP_TAG_ATTRIBUTE);
    vmseal_ttlv_add_text(a, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, "Cryptographic Algorithm");
    vmseal_ttlv_add_enum(a, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE, VMSEAL_KMIP_ALG_AES);
    a = vmseal_ttlv_add_struct(ta, VMSEAL_KMIP_TAG_ATTRIBUTE);
    vmseal_ttlv_add_text(a, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, "Cryptographic Usage Mask");
    vmseal_ttlv_add_int(a, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE, 12);
    a = vmseal_ttlv_add_struct(ta, VMSEAL_KMIP_TAG_ATTRIBUTE);
    vmseal_ttlv_add_text(a, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, "Cryptographic Length");
    vmseal_ttlv_add_int(a, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE, 256);

    size_t vlen;
    uint8_t *want = vector_load("06-create.request.hex", &vlen);
    uint8_t *enc;
    size_t elen;
    assert_int_equal(vmseal_ttlv_encode(m, &enc, &elen), 0);
    assert_int_equal(elen, vlen);
    assert_memory_equal(enc, want, vlen);

    /* Equality against the decoded vector, and after dup. */
    vmseal_ttlv *d = NULL, *c = NULL;
    assert_int_equal(vmseal_ttlv_decode(want, vlen, &d), 0);
    assert_true(vmseal_ttlv_equal(m, d));
    assert_int_equal(vmseal_ttlv_dup(m, &c), 0);
    assert_true(vmseal_ttlv_equal(c, d));
    vmseal_ttlv_add_int(c, VMSEAL_KMIP_TAG_BATCH_COUNT, 1);
    assert_false(vmseal_ttlv_equal(c, d));

    /* Detach + append moves a subtree. */
    vmseal_ttlv *moved = vmseal_ttlv_detach(vmseal_ttlv_find(d, VMSEAL_KMIP_TAG_BATCH_ITEM));
    assert_non_null(moved);
    assert_int_equal(vmseal_ttlv_count(d, VMSEAL_KMIP_TAG_BATCH_ITEM), 0);
    assert_int_equal(vmseal_ttlv_append(d, moved), 0);
    assert_true(vmseal_ttlv_equal(m, d));
    assert_int_equal(vmseal_ttlv_append(d, moved), -EINVAL); /* already has a parent */
    assert_int_equal(vmseal_ttlv_append(moved, d), -EINVAL); /* d has no parent: but would be a cycle */

    vmseal_ttlv_buf_free(enc, elen);
    free(want);
    vmseal_ttlv_free(m);
    vmseal_ttlv_free(c);
    vmseal_ttlv_free(d);
}

static void test_all_types_roundtrip(void **state)
{
    (void)state;
    vmseal_ttlv *m = vmseal_ttlv_struct(VMSEAL_KMIP_TAG_REQUEST_MESSAGE);
    vmseal_ttlv_add_int(m, VMSEAL_KMIP_TAG_BATCH_COUNT, -5);
    vmseal_ttlv_add_long(m, VMSEAL_KMIP_TAG_USAGE_LIMITS_TOTAL, -1234567890123LL);
    uint8_t big[16] = {0x80, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    vmseal_ttlv_add_bigint(m, VMSEAL_KMIP_TAG_MODULUS, big, 16);
    vmseal_ttlv_add_enum(m, VMSEAL_KMIP_TAG_STATE, 0xFFFFFFFFu);
    vmseal_ttlv_add_bool(m, VMSEAL_KMIP_TAG_FRESH, true);
    vmseal_ttlv_add_text(m, VMSEAL_KMIP_TAG_NAME_VALUE, "caf\xc3\xa9 \xe2\x82\xac");
    vmseal_ttlv_add_text(m, VMSEAL_KMIP_TAG_COMMENT, "");
    vmseal_ttlv_add_bytes(m, VMSEAL_KMIP_TAG_NONCE_VALUE, "\x00\x01\x02", 3);
    vmseal_ttlv_add_datetime(m, VMSEAL_KMIP_TAG_INITIAL_DATE, 0x67EA85F5);
    vmseal_ttlv_add_interval(m, VMSEAL_KMIP_TAG_LEASE_TIME, 0xFFFFFFFFu);
    vmseal_ttlv_add_struct(m, 0x540001); /* empty extension structure */
    vmseal_secret *k;
    assert_int_equal(vmseal_secret_random(32, &k), 0);
    vmseal_ttlv_add_secret(m, VMSEAL_KMIP_TAG_KEY_MATERIAL, k);
    assert_int_equal(vmseal_ttlv_build_error(m), 0);

    uint8_t *enc;
    size_t len;
    assert_int_equal(vmseal_ttlv_encode(m, &enc, &len), 0);
    vmseal_ttlv *d;
    assert_int_equal(vmseal_ttlv_decode(enc, len, &d), 0);
    assert_true(vmseal_ttlv_equal(m, d));

    int32_t i32;
    int64_t i64;
    uint32_t u32;
    bool b;
    const char *s;
    size_t sl;
    const uint8_t *p;
    assert_int_equal(vmseal_ttlv_find_int(d, VMSEAL_KMIP_TAG_BATCH_COUNT, &i32), 0);
    assert_int_equal(i32, -5);
    assert_int_equal(vmseal_ttlv_find_long(d, VMSEAL_KMIP_TAG_USAGE_LIMITS_TOTAL, &i64), 0);
    assert_true(i64 == -1234567890123LL);
    assert_int_equal(vmseal_ttlv_get_bigint(vmseal_ttlv_find(d, VMSEAL_KMIP_TAG_MODULUS), &p, &sl), 0);
    assert_int_equal(sl, 16);
    assert_memory_equal(p, big, 16);
    assert_int_equal(vmseal_ttlv_find_enum(d, VMSEAL_KMIP_TAG_STATE, &u32), 0);
    assert_true(u32 == 0xFFFFFFFFu);
    assert_int_equal(vmseal_ttlv_find_bool(d, VMSEAL_KMIP_TAG_FRESH, &b), 0);
    assert_true(b);
    assert_int_equal(vmseal_ttlv_find_text(d, VMSEAL_KMIP_TAG_NAME_VALUE, &s, &sl), 0);
    assert_string_equal(s, "caf\xc3\xa9 \xe2\x82\xac");
    assert_int_equal(vmseal_ttlv_find_text(d, VMSEAL_KMIP_TAG_COMMENT, &s, &sl), 0);
    assert_int_equal(sl, 0);
    assert_string_equal(s, "");
    assert_int_equal(vmseal_ttlv_find_bytes(d, VMSEAL_KMIP_TAG_NONCE_VALUE, &p, &sl), 0);
    assert_int_equal(sl, 3);
    assert_int_equal(vmseal_ttlv_find_datetime(d, VMSEAL_KMIP_TAG_INITIAL_DATE, &i64), 0);
    assert_true(i64 == 0x67EA85F5);
    assert_int_equal(vmseal_ttlv_find_interval(d, VMSEAL_KMIP_TAG_LEASE_TIME, &u32), 0);
    assert_true(u32 == 0xFFFFFFFFu);
    vmseal_secret *k2;
    assert_int_equal(vmseal_ttlv_get_secret(vmseal_ttlv_find(d, VMSEAL_KMIP_TAG_KEY_MATERIAL), &k2), 0);
    assert_int_equal(vmseal_secret_cmp(k, k2), 0);

    vmseal_secret *es;
    assert_int_equal(vmseal_ttlv_encode_secret(d, &es), 0);
    assert_int_equal(vmseal_secret_len(es), len);
    assert_memory_equal(vmseal_secret_cdata(es), enc, len);

    char *dump = vmseal_ttlv_dump_str(d);
    assert_non_null(strstr(dump, "Date-Time (0x09), Data: 2025-03-31T12:09:25Z"));
    assert_non_null(strstr(dump, "Unknown tag (0x540001)"));
    assert_non_null(strstr(dump, "<redacted 32 bytes>"));
    free(dump);

    vmseal_secret_free(es);
    vmseal_secret_free(k);
    vmseal_secret_free(k2);
    vmseal_ttlv_buf_free(enc, len);
    vmseal_ttlv_free(m);
    vmseal_ttlv_free(d);
}

static void test_build_errors_are_sticky(void **state)
{
    (void)state;
    vmseal_ttlv *m = vmseal_ttlv_struct(VMSEAL_KMIP_TAG_REQUEST_MESSAGE);
    vmseal_ttlv *i = vmseal_ttlv_add_int(m, VMSEAL_KMIP_TAG_BATCH_COUNT, 1);
    assert_null(vmseal_ttlv_add_int(i, VMSEAL_KMIP_TAG_BATCH_COUNT, 1)); /* not a structure */
    assert_null(vmseal_ttlv_add_int(NULL, VMSEAL_KMIP_TAG_BATCH_COUNT, 1));
    assert_int_equal(vmseal_ttlv_build_error(m), -EINVAL);
    uint8_t *enc;
    size_t len;
    assert_int_equal(vmseal_ttlv_encode(m, &enc, &len), -EINVAL);
    assert_null(enc);
    assert_non_null(strstr(vmseal_last_error(), "non-structure"));
    vmseal_ttlv_free(m);

    m = vmseal_ttlv_struct(VMSEAL_KMIP_TAG_REQUEST_MESSAGE);
    assert_null(vmseal_ttlv_add_text(m, VMSEAL_KMIP_TAG_NAME_VALUE, "bad \xc3\x28 utf8"));
    assert_null(vmseal_ttlv_add_text_n(m, VMSEAL_KMIP_TAG_NAME_VALUE, "a\0b", 3));
    assert_null(vmseal_ttlv_add_bigint(m, VMSEAL_KMIP_TAG_MODULUS, (const uint8_t *)"1234567", 7));
    assert_null(vmseal_ttlv_add_int(m, 0x430000, 1)); /* not a KMIP tag */
    assert_int_equal(vmseal_ttlv_encode(m, &enc, &len), -EINVAL);
    assert_non_null(strstr(vmseal_last_error(), "UTF-8"));
    vmseal_ttlv_free(m);

    /* A subtree's build error follows it into the tree it joins. */
    m = vmseal_ttlv_struct(VMSEAL_KMIP_TAG_REQUEST_MESSAGE);
    vmseal_ttlv *sub = vmseal_ttlv_struct(VMSEAL_KMIP_TAG_ATTRIBUTE);
    assert_null(vmseal_ttlv_add_bigint(sub, VMSEAL_KMIP_TAG_MODULUS, (const uint8_t *)"", 0));
    assert_int_equal(vmseal_ttlv_append(m, sub), 0);
    assert_int_equal(vmseal_ttlv_build_error(m), -EINVAL);
    vmseal_ttlv_free(m);
    assert_null(vmseal_ttlv_struct(0x123456));
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(vmseal_kmip_tag_name(0x420028), "Cryptographic Algorithm");
    assert_string_equal(vmseal_kmip_tag_name(0x420124), "Replace Existing");
    assert_null(vmseal_kmip_tag_name(0x420125));
    assert_int_equal(vmseal_kmip_tag_by_name("Template-Attribute"), 0x420091);
    assert_int_equal(vmseal_kmip_tag_by_name("nope"), 0);
    assert_string_equal(vmseal_kmip_enum_name(VMSEAL_KMIP_TAG_RESULT_REASON, 0x0C), "Permission Denied");
    assert_string_equal(vmseal_kmip_enum_name(VMSEAL_KMIP_TAG_OPERATION, 0x1E), "Discover Versions");
    assert_null(vmseal_kmip_enum_name(VMSEAL_KMIP_TAG_OPERATION, 0x99));
    const vmseal_kmip_attr_info *a = vmseal_kmip_attr_lookup("Cryptographic Usage Mask");
    assert_non_null(a);
    assert_int_equal(a->tag, VMSEAL_KMIP_TAG_CRYPTOGRAPHIC_USAGE_MASK);
    assert_int_equal(a->type, VMSEAL_TTLV_INTEGER);
    assert_true(vmseal_kmip_attr_lookup("Name")->multi);
    assert_null(vmseal_kmip_attr_lookup("x-Vendor"));
    /* Every attribute name is its tag's name. */
    static const char *names[] = {"Unique Identifier", "Object Type", "State", "Activation Date",
                                  "Initial Date", "Last Change Date", "PKCS#12 Friendly Name"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        assert_int_equal(vmseal_kmip_tag_by_name(names[i]), vmseal_kmip_attr_lookup(names[i])->tag);
}

/* ---- malformed input ----------------------------------------------------- */

static int decode_rc(const uint8_t *buf, size_t len)
{
    vmseal_ttlv *t = (vmseal_ttlv *)0x1;
    int rc = vmseal_ttlv_decode(buf, len, &t);
    if (rc == 0)
        vmseal_ttlv_free(t);
    else
        assert_null(t);
    return rc;
}

static void test_truncated_everywhere(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = vector_load("15-get.response.hex", &len);
    for (size_t l = 0; l < len; l++) {
        uint8_t *copy = malloc(l ? l : 1); /* exact-size buffers so ASan sees overreads */
        memcpy(copy, buf, l);
        int rc = decode_rc(copy, l);
        if (rc != -EPROTO)
            fail_msg("truncated to %zu bytes: rc %d", l, rc);
        free(copy);
    }
    /* Trailing garbage after a complete message. */
    uint8_t *more = malloc(len + 8);
    memcpy(more, buf, len);
    memset(more + len, 0, 8);
    assert_int_equal(decode_rc(more, len + 8), -EPROTO);
    assert_non_null(strstr(vmseal_last_error(), "trailing"));
    free(more);
    free(buf);
}

/* Patch a 32-bit big-endian value at off in a copy of a vector and decode. */
static int decode_patched(const char *vec, size_t off, size_t width, uint64_t value)
{
    size_t len;
    uint8_t *buf = vector_load(vec, &len);
    assert_true(off + width <= len);
    for (size_t i = 0; i < width; i++)
        buf[off + i] = (uint8_t)(value >> (8 * (width - 1 - i)));
    int rc = decode_rc(buf, len);
    free(buf);
    return rc;
}

static void test_bad_lengths_and_values(void **state)
{
    (void)state;
    /* 01-discover-versions.request: 42007801 00000060 | 42007701 00000038 |
     * 42006901 00000020 |
     * @24 42006A02 00000004 00000001 00000000 | @40 42006B02 ... */
    const char *v = "01-discover-versions.request.hex";
    assert_int_equal(decode_patched(v, 0, 4, 0x42007801), 0);        /* unchanged */
    assert_int_equal(decode_patched(v, 4, 4, 0x68), -EPROTO);        /* outer too long */
    assert_int_equal(decode_patched(v, 4, 4, 0x58), -EPROTO);        /* outer too short */
    assert_int_equal(decode_patched(v, 4, 4, 0x5F), -EPROTO);        /* not multiple of 8 */
    assert_int_equal(decode_patched(v, 4, 4, 0xFFFFFFF8), -EPROTO);  /* oversized */
    assert_int_equal(decode_patched(v, 12, 4, 0x40), -EPROTO);       /* header overruns */
    assert_int_equal(decode_patched(v, 12, 4, 0x30), -EPROTO);       /* header short: leftovers */
    assert_int_equal(decode_patched(v, 28, 4, 8), -EPROTO);          /* Integer of length 8 */
    assert_non_null(strstr(vmseal_last_error(), "must be 4"));
    assert_int_equal(decode_patched(v, 28, 4, 3), -EPROTO);
    assert_int_equal(decode_patched(v, 36, 4, 1), -EPROTO);          /* non-zero padding */
    assert_non_null(strstr(vmseal_last_error(), "padding"));
    assert_int_equal(decode_patched(v, 27, 1, 0x0B), -EPROTO);       /* unknown type */
    assert_int_equal(decode_patched(v, 27, 1, 0x00), -EPROTO);
    assert_int_equal(decode_patched(v, 27, 1, 0x03), -EPROTO);       /* Long with length 4 */
    assert_int_equal(decode_patched(v, 24, 3, 0x410000), -EPROTO);   /* bad tag */
    assert_int_equal(decode_patched(v, 24, 3, 0x420000), -EPROTO);
    assert_int_equal(decode_patched(v, 24, 3, 0x540000), 0);          /* extension tag */
    assert_int_equal(decode_patched(v, 24, 3, 0x42006A), 0);
    assert_int_equal(decode_patched(v, 0, 1, 0x43), -EPROTO);

    /* Hand-made items. */
    static const uint8_t bool2[] = {0x42, 0x00, 0xA8, 0x06, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 2};
    assert_int_equal(decode_rc(bool2, sizeof(bool2)), -EPROTO);
    static const uint8_t bool1[] = {0x42, 0x00, 0xA8, 0x06, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1};
    assert_int_equal(decode_rc(bool1, sizeof(bool1)), 0);
    static const uint8_t text_nul[] = {0x42, 0x00, 0x55, 0x07, 0, 0, 0, 3, 'a', 0, 'b', 0, 0, 0, 0, 0};
    assert_int_equal(decode_rc(text_nul, sizeof(text_nul)), -EPROTO);
    static const uint8_t text_bad[] = {0x42, 0x00, 0x55, 0x07, 0, 0, 0, 2, 0xC0, 0x80, 0, 0, 0, 0, 0, 0};
    assert_int_equal(decode_rc(text_bad, sizeof(text_bad)), -EPROTO); /* overlong NUL */
    static const uint8_t text_sur[] = {0x42, 0x00, 0x55, 0x07, 0, 0, 0, 3, 0xED, 0xA0, 0x80, 0, 0, 0, 0, 0};
    assert_int_equal(decode_rc(text_sur, sizeof(text_sur)), -EPROTO); /* surrogate */
    static const uint8_t text_cut[] = {0x42, 0x00, 0x55, 0x07, 0, 0, 0, 2, 'a', 0xE2, 0, 0, 0, 0, 0, 0};
    assert_int_equal(decode_rc(text_cut, sizeof(text_cut)), -EPROTO); /* cut sequence */
    static const uint8_t text_ok[] = {0x42, 0x00, 0x55, 0x07, 0, 0, 0, 0};
    assert_int_equal(decode_rc(text_ok, sizeof(text_ok)), 0);     /* empty text */
    static const uint8_t big0[] = {0x42, 0x00, 0x52, 0x04, 0, 0, 0, 0};
    assert_int_equal(decode_rc(big0, sizeof(big0)), -EPROTO);
    static const uint8_t big4[] = {0x42, 0x00, 0x52, 0x04, 0, 0, 0, 4, 1, 2, 3, 4, 0, 0, 0, 0};
    assert_int_equal(decode_rc(big4, sizeof(big4)), -EPROTO);
    static const uint8_t bytes_pad[] = {0x42, 0x00, 0x93, 0x08, 0, 0, 0, 1, 7, 0, 0, 0, 0, 0, 0, 9};
    assert_int_equal(decode_rc(bytes_pad, sizeof(bytes_pad)), -EPROTO);
    static const uint8_t bytes_huge[] = {0x42, 0x00, 0x93, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 7, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(decode_rc(bytes_huge, sizeof(bytes_huge)), -EPROTO);
    /* Vendor Extension content may use any tag; elsewhere not. */
    static const uint8_t vext[] = {0x42, 0x00, 0x9C, 0x01, 0, 0, 0, 0x10,
                                   0x01, 0x42, 0x42, 0x07, 0, 0, 0, 2, 'n', 'a', 0, 0, 0, 0, 0, 0};
    assert_int_equal(decode_rc(vext, sizeof(vext)), 0);
    uint8_t novext[sizeof(vext)];
    memcpy(novext, vext, sizeof(vext));
    novext[2] = 0x9B;
    assert_int_equal(decode_rc(novext, sizeof(novext)), -EPROTO);

    /* Size limit. */
    size_t len;
    uint8_t *buf = vector_load("06-create.request.hex", &len);
    vmseal_ttlv *t;
    vmseal_ttlv_limits lim = {.max_size = len - 8};
    assert_int_equal(vmseal_ttlv_decode_ex(buf, len, &lim, &t), -EMSGSIZE);
    lim.max_size = len;
    assert_int_equal(vmseal_ttlv_decode_ex(buf, len, &lim, &t), 0);
    vmseal_ttlv_free(t);
    /* Depth limit: Create nests Message > Batch Item > Payload > Template-Attribute > Attribute. */
    lim.max_depth = 4;
    assert_int_equal(vmseal_ttlv_decode_ex(buf, len, &lim, &t), -EPROTO);
    assert_non_null(strstr(vmseal_last_error(), "deeper"));
    lim.max_depth = 5;
    assert_int_equal(vmseal_ttlv_decode_ex(buf, len, &lim, &t), 0);
    vmseal_ttlv_free(t);
    free(buf);
    assert_int_equal(decode_rc(NULL, 0), -EPROTO);
}

static void test_deep_nesting(void **state)
{
    (void)state;
    /* 1000 nested empty-ish structures: must fail cleanly, no stack blowup. */
    const size_t depth = 1000;
    size_t len = 8 * depth;
    uint8_t *buf = calloc(1, len);
    for (size_t i = 0; i < depth; i++) {
        uint8_t *p = buf + 8 * i;
        uint32_t l = (uint32_t)(len - 8 * (i + 1));
        p[0] = 0x42; p[1] = 0x00; p[2] = 0x0F; p[3] = 0x01;
        p[4] = (uint8_t)(l >> 24); p[5] = (uint8_t)(l >> 16); p[6] = (uint8_t)(l >> 8); p[7] = (uint8_t)l;
    }
    assert_int_equal(decode_rc(buf, len), -EPROTO);
    assert_non_null(strstr(vmseal_last_error(), "deeper than 24"));
    assert_int_equal(decode_rc(buf + 8 * (depth - 24), 8 * 24), 0); /* exactly the limit */
    assert_int_equal(decode_rc(buf + 8 * (depth - 25), 8 * 25), -EPROTO);
    free(buf);
}

static void test_garbage(void **state)
{
    (void)state;
    /* Deterministic pseudo-random garbage, plus garbage behind a valid header. */
    uint32_t x = 12345;
    uint8_t buf[256];
    for (int round = 0; round < 2000; round++) {
        size_t len = 1 + (size_t)(round % 255);
        for (size_t i = 0; i < len; i++) {
            x = x * 1103515245u + 12345u;
            buf[i] = (uint8_t)(x >> 16);
        }
        if (round & 1) {
            buf[0] = 0x42; buf[1] = 0x00; buf[2] = 0x78; buf[3] = 0x01;
            uint32_t l = (uint32_t)((len >= 8 ? len - 8 : 0) & ~7u);
            buf[4] = 0; buf[5] = 0; buf[6] = (uint8_t)(l >> 8); buf[7] = (uint8_t)l;
        }
        int rc = decode_rc(buf, len);
        assert_true(rc == 0 || rc == -EPROTO);
    }
}

static void test_frame_len(void **state)
{
    (void)state;
    static const uint8_t ok[8] = {0x42, 0x00, 0x78, 0x01, 0x00, 0x00, 0x00, 0x60};
    size_t total;
    assert_int_equal(vmseal_ttlv_frame_len(ok, 0, &total), 0);
    assert_int_equal(total, 0x68);
    assert_int_equal(vmseal_ttlv_frame_len(ok, 0x60, &total), -EMSGSIZE);
    static const uint8_t big[8] = {0x42, 0x00, 0x78, 0x01, 0x7F, 0xFF, 0xFF, 0xF8};
    assert_int_equal(vmseal_ttlv_frame_len(big, 0, &total), -EMSGSIZE);
    static const uint8_t http[8] = {'G', 'E', 'T', ' ', '/', ' ', 'H', 'T'};
    assert_int_equal(vmseal_ttlv_frame_len(http, 0, &total), -EPROTO);
    static const uint8_t notstruct[8] = {0x42, 0x00, 0x78, 0x02, 0, 0, 0, 4};
    assert_int_equal(vmseal_ttlv_frame_len(notstruct, 0, &total), -EPROTO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vcenter_roundtrip),
        cmocka_unit_test(test_oasis_roundtrip),
        cmocka_unit_test(test_vcenter_create_values),
        cmocka_unit_test(test_vcenter_add_attribute_batch),
        cmocka_unit_test(test_vcenter_get_redacts_key),
        cmocka_unit_test(test_build_and_encode),
        cmocka_unit_test(test_all_types_roundtrip),
        cmocka_unit_test(test_build_errors_are_sticky),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_bad_lengths_and_values),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_frame_len),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
