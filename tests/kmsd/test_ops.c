/* vmseal-kmsd request processing without TLS: batches (Continue, Stop,
 * Undo), ID Placeholder, Maximum Response Size, credentials, protocol
 * versions, Register/Get formats, attribute rules. Requests are built with
 * the kmip message API and answered by kmsd_process_message() against a
 * real store in a temporary folder. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <vmseal/kmip.h>
#include <vmseal/kmip_msg.h>

#include "audit.h"
#include "config.h"
#include "log.h"
#include "masterkey.h"
#include "server.h"
#include "store.h"

static kmsd_server srv;
static char dir[64];
static const vmseal_kmip_version V12 = {1, 2};

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/vmseal-ops.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    char p[256], hash[256];
    if (kmsd_password_hash("s3cret", 6, hash, sizeof(hash)) < 0)
        return -1;
    snprintf(p, sizeof(p), "%s/kmsd.conf", dir);
    FILE *f = fopen(p, "w");
    if (!f)
        return -1;
    fprintf(f, "cert = x.crt\nkey = x.key\nca = ca.crt\nmaster_key_file = master.key\n"
               "audit_log = audit.log\nadmin = CN=admin\nuser = carol %s\n", hash);
    fclose(f);
    snprintf(p, sizeof(p), "%s/master.key", dir);
    if (kmsd_mk_create_file(p) < 0 || kmsd_config_load(dir, &srv.cfg) < 0 ||
        kmsd_mk_open_file(p, &srv.mk) < 0 ||
        kmsd_store_open(srv.cfg->database, "wal", srv.mk, 1, &srv.store) < 0 ||
        kmsd_audit_open(srv.cfg->audit_log) < 0)
        return -1;
    kmsd_log_open(NULL, KMSD_LOG_ERROR, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kmsd_store_close(srv.store);
    kmsd_mk_free(srv.mk);
    kmsd_config_free(srv.cfg);
    kmsd_audit_close();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Send a request tree as identity; return the parsed response. */
static vmseal_kmip_response *ask(vmseal_ttlv *req, const char *identity)
{
    uint8_t *buf;
    size_t len;
    assert_int_equal(vmseal_ttlv_encode(req, &buf, &len), 0);
    vmseal_ttlv_free(req);
    vmseal_ttlv *resp = kmsd_process_message(&srv, identity, "test", buf, len);
    vmseal_ttlv_buf_free(buf, len);
    assert_non_null(resp);
    uint8_t *rb;
    size_t rl;
    assert_int_equal(vmseal_ttlv_encode(resp, &rb, &rl), 0);
    vmseal_ttlv_free(resp);
    vmseal_kmip_response *r;
    assert_int_equal(vmseal_kmip_response_parse(rb, rl, NULL, &r), 0);
    vmseal_ttlv_buf_free(rb, rl);
    return r;
}

static void attr_enum(vmseal_ttlv *t, const char *n, uint32_t v)
{
    vmseal_ttlv *a = vmseal_ttlv_add_struct(t, VMSEAL_KMIP_TAG_ATTRIBUTE);
    vmseal_ttlv_add_text(a, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, n);
    vmseal_ttlv_add_enum(a, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE, v);
}

static void attr_int(vmseal_ttlv *t, const char *n, int32_t v)
{
    vmseal_ttlv *a = vmseal_ttlv_add_struct(t, VMSEAL_KMIP_TAG_ATTRIBUTE);
    vmseal_ttlv_add_text(a, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, n);
    vmseal_ttlv_add_int(a, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE, v);
}

static void attr_text(vmseal_ttlv *t, const char *n, const char *v)
{
    vmseal_ttlv *a = vmseal_ttlv_add_struct(t, VMSEAL_KMIP_TAG_ATTRIBUTE);
    vmseal_ttlv_add_text(a, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, n);
    vmseal_ttlv_add_text(a, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE, v);
}

static void add_create(vmseal_ttlv *req, int bits, const void *ubi)
{
    vmseal_ttlv *p = vmseal_kmip_request_add(req, VMSEAL_KMIP_OP_CREATE, ubi, ubi ? 4 : 0);
    vmseal_ttlv_add_enum(p, VMSEAL_KMIP_TAG_OBJECT_TYPE, VMSEAL_KMIP_OBJ_SYMMETRIC_KEY);
    vmseal_ttlv *t = vmseal_ttlv_add_struct(p, VMSEAL_KMIP_TAG_TEMPLATE_ATTRIBUTE);
    attr_enum(t, "Cryptographic Algorithm", VMSEAL_KMIP_ALG_AES);
    attr_int(t, "Cryptographic Length", bits);
}

static void add_get(vmseal_ttlv *req, const char *uid, const void *ubi)
{
    vmseal_ttlv *p = vmseal_kmip_request_add(req, VMSEAL_KMIP_OP_GET, ubi, ubi ? 4 : 0);
    if (uid)
        vmseal_ttlv_add_text(p, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, uid);
}

static void set_batch_option(vmseal_ttlv *req, uint32_t opt)
{
    vmseal_ttlv *hdr = vmseal_ttlv_find(req, VMSEAL_KMIP_TAG_REQUEST_HEADER);
    /* the option belongs before Batch Count */
    vmseal_ttlv *bc = vmseal_ttlv_detach(vmseal_ttlv_find(hdr, VMSEAL_KMIP_TAG_BATCH_COUNT));
    vmseal_ttlv_add_enum(hdr, VMSEAL_KMIP_TAG_BATCH_ERROR_CONTINUATION_OPTION, opt);
    assert_int_equal(vmseal_ttlv_append(hdr, bc), 0);
}

static const char *uid_of(const vmseal_kmip_response_item *it)
{
    const char *u = NULL;
    assert_int_equal(vmseal_ttlv_find_text(it->payload, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, &u, NULL), 0);
    return u;
}

static void test_batch_continue_stop_undo(void **state)
{
    (void)state;
    /* Continue: the failure does not stop the next item */
    vmseal_ttlv *req = vmseal_kmip_request_new(&V12, NULL);
    add_get(req, "999999", "a001");
    add_create(req, 128, "a002");
    set_batch_option(req, VMSEAL_KMIP_BATCH_CONTINUE);
    vmseal_kmip_response *r = ask(req, "CN=alice");
    assert_int_equal(r->count, 2);
    assert_int_equal(r->items[0].status, VMSEAL_KMIP_STATUS_OPERATION_FAILED);
    assert_int_equal(r->items[0].reason, VMSEAL_KMIP_REASON_ITEM_NOT_FOUND);
    assert_memory_equal(r->items[0].ubi, "a001", 4);
    assert_int_equal(r->items[1].status, VMSEAL_KMIP_STATUS_SUCCESS);
    assert_memory_equal(r->items[1].ubi, "a002", 4);
    vmseal_kmip_response_free(r);

    /* Stop (the default): nothing after the failure runs */
    req = vmseal_kmip_request_new(&V12, NULL);
    add_get(req, "999999", "b001");
    add_create(req, 128, "b002");
    r = ask(req, "CN=alice");
    assert_int_equal(r->count, 1);
    assert_int_equal(r->items[0].status, VMSEAL_KMIP_STATUS_OPERATION_FAILED);
    vmseal_kmip_response_free(r);

    /* Undo: refused, honestly */
    req = vmseal_kmip_request_new(&V12, NULL);
    add_create(req, 128, "c001");
    add_create(req, 128, "c002");
    set_batch_option(req, VMSEAL_KMIP_BATCH_UNDO);
    r = ask(req, "CN=alice");
    assert_int_equal(r->items[0].reason, VMSEAL_KMIP_REASON_FEATURE_NOT_SUPPORTED);
    vmseal_kmip_response_free(r);
}

static void test_id_placeholder(void **state)
{
    (void)state;
    vmseal_ttlv *req = vmseal_kmip_request_new(&V12, NULL);
    add_create(req, 256, "p001");
    vmseal_kmip_request_add(req, VMSEAL_KMIP_OP_ACTIVATE, "p002", 4);
    add_get(req, NULL, "p003");
    vmseal_kmip_response *r = ask(req, "CN=alice");
    assert_int_equal(r->count, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(r->items[i].status, VMSEAL_KMIP_STATUS_SUCCESS);
    char uid[32];
    snprintf(uid, sizeof(uid), "%s", uid_of(&r->items[0]));
    assert_string_equal(uid_of(&r->items[1]), uid);
    assert_string_equal(uid_of(&r->items[2]), uid);
    vmseal_kmip_response_free(r);

    /* no placeholder in a fresh request: Missing Data */
    req = vmseal_kmip_request_new(&V12, NULL);
    add_get(req, NULL, NULL);
    r = ask(req, "CN=alice");
    assert_int_equal(r->items[0].reason, VMSEAL_KMIP_REASON_MISSING_DATA);
    vmseal_kmip_response_free(r);
}

static void test_max_response_size(void **state)
{
    (void)state;
    vmseal_kmip_request_opts o = {.max_response_size = 100};
    vmseal_ttlv *req = vmseal_kmip_request_new(&V12, NULL);
    add_create(req, 256, NULL);
    vmseal_kmip_response *r = ask(req, "CN=alice");
    char uid[32];
    snprintf(uid, sizeof(uid), "%s", uid_of(&r->items[0]));
    vmseal_kmip_response_free(r);
    req = vmseal_kmip_request_new(&V12, &o);
    add_get(req, uid, NULL);
    r = ask(req, "CN=alice"); /* a Get answer does not fit in 100 bytes */
    assert_int_equal(r->items[0].status, VMSEAL_KMIP_STATUS_OPERATION_FAILED);
    assert_int_equal(r->items[0].reason, VMSEAL_KMIP_REASON_RESPONSE_TOO_LARGE);
    vmseal_kmip_response_free(r);
}

static void test_credentials(void **state)
{
    (void)state;
    vmseal_kmip_request_opts bad = {.username = "carol", .password = "wrong"};
    vmseal_ttlv *req = vmseal_kmip_request_new(&V12, &bad);
    add_create(req, 128, NULL);
    vmseal_kmip_response *r = ask(req, "CN=alice");
    assert_int_equal(r->items[0].reason, VMSEAL_KMIP_REASON_AUTHENTICATION_NOT_SUCCESSFUL);
    vmseal_kmip_response_free(r);
    vmseal_kmip_request_opts good = {.username = "carol", .password = "s3cret"};
    for (int i = 0; i < 2; i++) { /* second time: the verified-password cache */
        req = vmseal_kmip_request_new(&V12, &good);
        add_create(req, 128, NULL);
        r = ask(req, "CN=alice");
        assert_int_equal(r->items[0].status, VMSEAL_KMIP_STATUS_SUCCESS);
        vmseal_kmip_response_free(r);
    }
    vmseal_kmip_request_opts nobody = {.username = "mallory", .password = "s3cret"};
    req = vmseal_kmip_request_new(&V12, &nobody);
    add_create(req, 128, NULL);
    r = ask(req, "CN=alice");
    assert_int_equal(r->items[0].reason, VMSEAL_KMIP_REASON_AUTHENTICATION_NOT_SUCCESSFUL);
    vmseal_kmip_response_free(r);
}

static void test_versions(void **state)
{
    (void)state;
    /* DiscoverVersions with a client list: only shared versions, our order */
    vmseal_kmip_version v11 = {1, 1};
    vmseal_ttlv *req = vmseal_kmip_request_new(&v11, NULL);
    vmseal_ttlv *p = vmseal_kmip_request_add(req, VMSEAL_KMIP_OP_DISCOVER_VERSIONS, NULL, 0);
    const int32_t list[][2] = {{2, 0}, {1, 2}, {1, 4}};
    for (int i = 0; i < 3; i++) {
        vmseal_ttlv *pv = vmseal_ttlv_add_struct(p, VMSEAL_KMIP_TAG_PROTOCOL_VERSION);
        vmseal_ttlv_add_int(pv, VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MAJOR, list[i][0]);
        vmseal_ttlv_add_int(pv, VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MINOR, list[i][1]);
    }
    vmseal_kmip_response *r = ask(req, "CN=alice");
    assert_int_equal(r->version.major, 1);
    assert_int_equal(r->version.minor, 1);
    assert_int_equal(vmseal_ttlv_count(r->items[0].payload, VMSEAL_KMIP_TAG_PROTOCOL_VERSION), 2);
    int32_t mi;
    assert_int_equal(vmseal_ttlv_find_int(vmseal_ttlv_find(r->items[0].payload,
                                                           VMSEAL_KMIP_TAG_PROTOCOL_VERSION),
                                          VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MINOR, &mi), 0);
    assert_int_equal(mi, 4);
    vmseal_kmip_response_free(r);

    /* a 2.0 request: DiscoverVersions answers, the rest is refused */
    vmseal_kmip_version v20 = {2, 0};
    req = vmseal_kmip_request_new(&v20, NULL);
    vmseal_kmip_request_add(req, VMSEAL_KMIP_OP_DISCOVER_VERSIONS, "d001", 4);
    add_create(req, 128, "d002");
    set_batch_option(req, VMSEAL_KMIP_BATCH_CONTINUE);
    r = ask(req, "CN=alice");
    assert_int_equal(r->items[0].status, VMSEAL_KMIP_STATUS_SUCCESS);
    assert_int_equal(r->items[1].reason, VMSEAL_KMIP_REASON_INVALID_MESSAGE);
    vmseal_kmip_response_free(r);

    /* unsupported operation */
    req = vmseal_kmip_request_new(&V12, NULL);
    vmseal_kmip_request_add(req, VMSEAL_KMIP_OP_REKEY, NULL, 0);
    r = ask(req, "CN=alice");
    assert_int_equal(r->items[0].reason, VMSEAL_KMIP_REASON_OPERATION_NOT_SUPPORTED);
    vmseal_kmip_response_free(r);
}

static void test_register_formats(void **state)
{
    (void)state;
    uint8_t key[24];
    for (int i = 0; i < 24; i++)
        key[i] = (uint8_t)(0xa0 + i);
    vmseal_ttlv *req, *p, *kb, *km, *g;
    req = vmseal_kmip_request_new(&V12, NULL);
    p = vmseal_kmip_request_add(req, VMSEAL_KMIP_OP_REGISTER, NULL, 0);
    vmseal_ttlv_add_enum(p, VMSEAL_KMIP_TAG_OBJECT_TYPE, VMSEAL_KMIP_OBJ_SYMMETRIC_KEY);
    kb = vmseal_ttlv_add_struct(vmseal_ttlv_add_struct(p, VMSEAL_KMIP_TAG_SYMMETRIC_KEY),
                                VMSEAL_KMIP_TAG_KEY_BLOCK);
    vmseal_ttlv_add_enum(kb, VMSEAL_KMIP_TAG_KEY_FORMAT_TYPE, VMSEAL_KMIP_KEYFMT_TRANSPARENT_SYMMETRIC_KEY);
    km = vmseal_ttlv_add_struct(vmseal_ttlv_add_struct(kb, VMSEAL_KMIP_TAG_KEY_VALUE),
                                VMSEAL_KMIP_TAG_KEY_MATERIAL);
    vmseal_ttlv_add_bytes(km, VMSEAL_KMIP_TAG_KEY, key, sizeof(key));
    vmseal_ttlv_add_enum(kb, VMSEAL_KMIP_TAG_CRYPTOGRAPHIC_ALGORITHM, VMSEAL_KMIP_ALG_AES);
    vmseal_ttlv_add_int(kb, VMSEAL_KMIP_TAG_CRYPTOGRAPHIC_LENGTH, 192);
    vmseal_kmip_response *r = ask(req, "CN=alice");
    assert_int_equal(r->items[0].status, VMSEAL_KMIP_STATUS_SUCCESS);
    char uid[32];
    snprintf(uid, sizeof(uid), "%s", uid_of(&r->items[0]));
    vmseal_kmip_response_free(r);

    const uint32_t fmts[] = {0, VMSEAL_KMIP_KEYFMT_RAW, VMSEAL_KMIP_KEYFMT_TRANSPARENT_SYMMETRIC_KEY};
    for (int i = 0; i < 3; i++) {
        req = vmseal_kmip_request_new(&V12, NULL);
        g = vmseal_kmip_request_add(req, VMSEAL_KMIP_OP_GET, NULL, 0);
        vmseal_ttlv_add_text(g, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, uid);
        if (fmts[i])
            vmseal_ttlv_add_enum(g, VMSEAL_KMIP_TAG_KEY_FORMAT_TYPE, fmts[i]);
        r = ask(req, "CN=alice");
        assert_int_equal(r->items[0].status, VMSEAL_KMIP_STATUS_SUCCESS);
        vmseal_ttlv *kv = vmseal_ttlv_dig(r->items[0].payload, VMSEAL_KMIP_TAG_SYMMETRIC_KEY,
                                          VMSEAL_KMIP_TAG_KEY_BLOCK, VMSEAL_KMIP_TAG_KEY_VALUE,
                                          VMSEAL_KMIP_TAG_KEY_MATERIAL, 0);
        if (fmts[i] == VMSEAL_KMIP_KEYFMT_TRANSPARENT_SYMMETRIC_KEY)
            kv = vmseal_ttlv_find(kv, VMSEAL_KMIP_TAG_KEY);
        const uint8_t *b;
        size_t bl;
        assert_int_equal(vmseal_ttlv_get_bytes(kv, &b, &bl), 0);
        assert_int_equal(bl, 24);
        assert_memory_equal(b, key, 24);
        int32_t len;
        assert_int_equal(vmseal_ttlv_find_int(vmseal_ttlv_dig(r->items[0].payload,
                                                              VMSEAL_KMIP_TAG_SYMMETRIC_KEY,
                                                              VMSEAL_KMIP_TAG_KEY_BLOCK, 0),
                                              VMSEAL_KMIP_TAG_CRYPTOGRAPHIC_LENGTH, &len), 0);
        assert_int_equal(len, 192);
        vmseal_kmip_response_free(r);
    }
    /* other formats and wrapping: clear refusals */
    req = vmseal_kmip_request_new(&V12, NULL);
    g = vmseal_kmip_request_add(req, VMSEAL_KMIP_OP_GET, NULL, 0);
    vmseal_ttlv_add_text(g, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, uid);
    vmseal_ttlv_add_enum(g, VMSEAL_KMIP_TAG_KEY_FORMAT_TYPE, VMSEAL_KMIP_KEYFMT_PKCS8);
    r = ask(req, "CN=alice");
    assert_int_equal(r->items[0].reason, VMSEAL_KMIP_REASON_KEY_FORMAT_TYPE_NOT_SUPPORTED);
    vmseal_kmip_response_free(r);
    req = vmseal_kmip_request_new(&V12, NULL);
    g = vmseal_kmip_request_add(req, VMSEAL_KMIP_OP_GET, NULL, 0);
    vmseal_ttlv_add_text(g, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, uid);
    vmseal_ttlv_add_enum(vmseal_ttlv_add_struct(g, VMSEAL_KMIP_TAG_KEY_WRAPPING_SPECIFICATION),
                         VMSEAL_KMIP_TAG_WRAPPING_METHOD, 1);
    r = ask(req, "CN=alice");
    assert_int_equal(r->items[0].reason, VMSEAL_KMIP_REASON_FEATURE_NOT_SUPPORTED);
    assert_non_null(strstr(r->items[0].message, "Key Wrapping Specification"));
    vmseal_kmip_response_free(r);
    /* a wrong-length AES key is refused at Register */
    req = vmseal_kmip_request_new(&V12, NULL);
    p = vmseal_kmip_request_add(req, VMSEAL_KMIP_OP_REGISTER, NULL, 0);
    vmseal_ttlv_add_enum(p, VMSEAL_KMIP_TAG_OBJECT_TYPE, VMSEAL_KMIP_OBJ_SYMMETRIC_KEY);
    kb = vmseal_ttlv_add_struct(vmseal_ttlv_add_struct(p, VMSEAL_KMIP_TAG_SYMMETRIC_KEY),
                                VMSEAL_KMIP_TAG_KEY_BLOCK);
    vmseal_ttlv_add_enum(kb, VMSEAL_KMIP_TAG_KEY_FORMAT_TYPE, VMSEAL_KMIP_KEYFMT_RAW);
    vmseal_ttlv_add_bytes(vmseal_ttlv_add_struct(kb, VMSEAL_KMIP_TAG_KEY_VALUE),
                          VMSEAL_KMIP_TAG_KEY_MATERIAL, key, 20);
    vmseal_ttlv_add_enum(kb, VMSEAL_KMIP_TAG_CRYPTOGRAPHIC_ALGORITHM, VMSEAL_KMIP_ALG_AES);
    r = ask(req, "CN=alice");
    assert_int_equal(r->items[0].reason, VMSEAL_KMIP_REASON_INVALID_FIELD);
    vmseal_kmip_response_free(r);
}

static void test_attribute_rules(void **state)
{
    (void)state;
    vmseal_ttlv *req = vmseal_kmip_request_new(&V12, NULL);
    add_create(req, 128, NULL);
    vmseal_kmip_response *r = ask(req, "CN=alice");
    char uid[32];
    snprintf(uid, sizeof(uid), "%s", uid_of(&r->items[0]));
    vmseal_kmip_response_free(r);

    /* single-instance Contact Information: added once, then Illegal Operation */
    for (int i = 0; i < 2; i++) {
        req = vmseal_kmip_request_new(&V12, NULL);
        vmseal_ttlv *p = vmseal_kmip_request_add(req, VMSEAL_KMIP_OP_ADD_ATTRIBUTE, NULL, 0);
        vmseal_ttlv_add_text(p, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, uid);
        attr_text(p, "Contact Information", "ops@example.org");
        r = ask(req, "CN=alice");
        if (i == 0)
            assert_int_equal(r->items[0].status, VMSEAL_KMIP_STATUS_SUCCESS);
        else
            assert_int_equal(r->items[0].reason, VMSEAL_KMIP_REASON_ILLEGAL_OPERATION);
        vmseal_kmip_response_free(r);
    }
    /* custom attributes are multi-instance: the second gets index 1 */
    for (int i = 0; i < 2; i++) {
        req = vmseal_kmip_request_new(&V12, NULL);
        vmseal_ttlv *p = vmseal_kmip_request_add(req, VMSEAL_KMIP_OP_ADD_ATTRIBUTE, NULL, 0);
        vmseal_ttlv_add_text(p, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, uid);
        attr_text(p, "x-tag", i ? "second" : "first");
        r = ask(req, "CN=alice");
        assert_int_equal(r->items[0].status, VMSEAL_KMIP_STATUS_SUCCESS);
        int32_t idx = 0;
        int rc = vmseal_ttlv_find_int(vmseal_ttlv_find(r->items[0].payload, VMSEAL_KMIP_TAG_ATTRIBUTE),
                                      VMSEAL_KMIP_TAG_ATTRIBUTE_INDEX, &idx);
        assert_int_equal(i ? rc : rc == -ENOENT ? 0 : rc, 0);
        assert_int_equal(idx, i);
        vmseal_kmip_response_free(r);
    }
    /* wrong type for a standard attribute */
    req = vmseal_kmip_request_new(&V12, NULL);
    vmseal_ttlv *p = vmseal_kmip_request_add(req, VMSEAL_KMIP_OP_ADD_ATTRIBUTE, NULL, 0);
    vmseal_ttlv_add_text(p, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, uid);
    attr_int(p, "Contact Information", 5);
    r = ask(req, "CN=alice");
    assert_int_equal(r->items[0].reason, VMSEAL_KMIP_REASON_INVALID_FIELD);
    vmseal_kmip_response_free(r);
    /* read-only attributes */
    req = vmseal_kmip_request_new(&V12, NULL);
    p = vmseal_kmip_request_add(req, VMSEAL_KMIP_OP_MODIFY_ATTRIBUTE, NULL, 0);
    vmseal_ttlv_add_text(p, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, uid);
    attr_enum(p, "State", VMSEAL_KMIP_STATE_ACTIVE);
    r = ask(req, "CN=alice");
    assert_int_equal(r->items[0].reason, VMSEAL_KMIP_REASON_PERMISSION_DENIED);
    vmseal_kmip_response_free(r);
    /* modify of an instance that does not exist */
    req = vmseal_kmip_request_new(&V12, NULL);
    p = vmseal_kmip_request_add(req, VMSEAL_KMIP_OP_MODIFY_ATTRIBUTE, NULL, 0);
    vmseal_ttlv_add_text(p, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, uid);
    attr_text(p, "Description", "nothing here yet");
    r = ask(req, "CN=alice");
    assert_int_equal(r->items[0].reason, VMSEAL_KMIP_REASON_ITEM_NOT_FOUND);
    vmseal_kmip_response_free(r);
    /* another identity: Permission Denied, the admin: fine */
    req = vmseal_kmip_request_new(&V12, NULL);
    add_get(req, uid, NULL);
    r = ask(req, "CN=bob");
    assert_int_equal(r->items[0].reason, VMSEAL_KMIP_REASON_PERMISSION_DENIED);
    vmseal_kmip_response_free(r);
    req = vmseal_kmip_request_new(&V12, NULL);
    add_get(req, uid, NULL);
    r = ask(req, "CN=admin");
    assert_int_equal(r->items[0].status, VMSEAL_KMIP_STATUS_SUCCESS);
    vmseal_kmip_response_free(r);
    /* an Activation Date in the past activates at once; in the future: refused */
    for (int future = 0; future < 2; future++) {
        req = vmseal_kmip_request_new(&V12, NULL);
        p = vmseal_kmip_request_add(req, VMSEAL_KMIP_OP_CREATE, NULL, 0);
        vmseal_ttlv_add_enum(p, VMSEAL_KMIP_TAG_OBJECT_TYPE, VMSEAL_KMIP_OBJ_SYMMETRIC_KEY);
        vmseal_ttlv *t = vmseal_ttlv_add_struct(p, VMSEAL_KMIP_TAG_TEMPLATE_ATTRIBUTE);
        attr_enum(t, "Cryptographic Algorithm", VMSEAL_KMIP_ALG_AES);
        attr_int(t, "Cryptographic Length", 256);
        vmseal_ttlv *a = vmseal_ttlv_add_struct(t, VMSEAL_KMIP_TAG_ATTRIBUTE);
        vmseal_ttlv_add_text(a, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, "Activation Date");
        vmseal_ttlv_add_datetime(a, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE,
                                 (int64_t)time(NULL) + (future ? 86400 : -60));
        r = ask(req, "CN=alice");
        if (future) {
            assert_int_equal(r->items[0].reason, VMSEAL_KMIP_REASON_FEATURE_NOT_SUPPORTED);
        } else {
            assert_int_equal(r->items[0].status, VMSEAL_KMIP_STATUS_SUCCESS);
            char u2[32];
            snprintf(u2, sizeof(u2), "%s", uid_of(&r->items[0]));
            vmseal_kmip_response_free(r);
            req = vmseal_kmip_request_new(&V12, NULL);
            p = vmseal_kmip_request_add(req, VMSEAL_KMIP_OP_GET_ATTRIBUTES, NULL, 0);
            vmseal_ttlv_add_text(p, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, u2);
            vmseal_ttlv_add_text(p, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, "State");
            r = ask(req, "CN=alice");
            uint32_t st;
            assert_int_equal(vmseal_ttlv_find_enum(vmseal_ttlv_find(r->items[0].payload,
                                                                    VMSEAL_KMIP_TAG_ATTRIBUTE),
                                                   VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE, &st), 0);
            assert_int_equal(st, VMSEAL_KMIP_STATE_ACTIVE);
        }
        vmseal_kmip_response_free(r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_continue_stop_undo),
        cmocka_unit_test(test_id_placeholder),
        cmocka_unit_test(test_max_response_size),
        cmocka_unit_test(test_credentials),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_register_formats),
        cmocka_unit_test(test_attribute_rules),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
