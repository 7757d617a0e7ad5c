/* KMIP message layer: parse every vector as a request/response, rebuild
 * vectors byte for byte with the builders, refuse malformed messages. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <vmseal/kmip_msg.h>

#include "vectors.h"

static void test_vcenter_messages_parse(void **state)
{
    (void)state;
    char dir[4096];
    vector_dir(dir, sizeof(dir), "vcenter-7.0.3");
    DIR *d = opendir(dir);
    if (!d)
        fail_msg("cannot open %s", dir);
    int nreq = 0, nresp = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len;
        if (strstr(e->d_name, ".request.hex")) {
            uint8_t *buf = vector_load(e->d_name, &len);
            vmseal_kmip_request *req;
            vmseal_kmip_version seen;
            if (vmseal_kmip_request_parse(buf, len, NULL, &req, &seen) != 0)
                fail_msg("%s: %s", e->d_name, vmseal_last_error());
            assert_int_equal(req->version.major, 1);
            assert_int_equal(req->version.minor, 1);
            assert_int_equal(seen.minor, 1);
            assert_true(vmseal_kmip_version_supported(&req->version));
            assert_int_equal(req->credential_type, 0);
            assert_true(req->batch_order);
            assert_int_equal(req->batch_error_option, VMSEAL_KMIP_BATCH_STOP);
            assert_int_equal(req->count, strstr(e->d_name, "add-attribute") ? 3 : 1);
            for (size_t i = 0; i < req->count; i++)
                assert_non_null(req->items[i].payload);
            vmseal_kmip_request_free(req);
            free(buf);
            nreq++;
        } else if (strstr(e->d_name, ".response.hex")) {
            uint8_t *buf = vector_load(e->d_name, &len);
            vmseal_kmip_response *resp;
            if (vmseal_kmip_response_parse(buf, len, NULL, &resp) != 0)
                fail_msg("%s: %s", e->d_name, vmseal_last_error());
            assert_int_equal(resp->count, 1);
            assert_true(resp->timestamp > 0x67000000);
            vmseal_kmip_response_free(resp);
            free(buf);
            nresp++;
        }
    }
    closedir(d);
    assert_int_equal(nreq, 36);
    assert_int_equal(nresp, 36);
}

static void test_oasis_messages_parse(void **state)
{
    (void)state;
    char path[4096];
    vector_dir(path, sizeof(path), "kmip-testcases-v1.1.txt");
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *line = NULL;
    size_t cap = 0;
    ssize_t r;
    int nreq = 0, nresp = 0, batched = 0;
    while ((r = getline(&line, &cap, f)) > 0) {
        while (r > 0 && (line[r - 1] == '\n' || line[r - 1] == '\r'))
            line[--r] = 0;
        int is_req = strncmp(line, "420078", 6) == 0;
        if (!is_req && strncmp(line, "42007B", 6) != 0)
            continue;
        size_t len = (size_t)r / 2;
        uint8_t *buf = malloc(len);
        assert_int_equal(vmseal_hex_decode(line, (size_t)r, buf, len), 0);
        if (is_req) {
            vmseal_kmip_request *req;
            if (vmseal_kmip_request_parse(buf, len, NULL, &req, NULL) != 0)
                fail_msg("OASIS request %d: %s", nreq + 1, vmseal_last_error());
            assert_int_equal(req->version.major, 1);
            batched += req->count > 1;
            vmseal_kmip_request_free(req);
            nreq++;
        } else {
            vmseal_kmip_response *resp;
            if (vmseal_kmip_response_parse(buf, len, NULL, &resp) != 0)
                fail_msg("OASIS response %d: %s", nresp + 1, vmseal_last_error());
            vmseal_kmip_response_free(resp);
            nresp++;
        }
        free(buf);
    }
    free(line);
    fclose(f);
    assert_int_equal(nreq, 260);
    assert_int_equal(nresp, 260);
    assert_true(batched >= 1); /* 3.1.4 Locate & Get batch */
}

static vmseal_kmip_request *load_request(const char *name)
{
    size_t len;
    uint8_t *buf = vector_load(name, &len);
    vmseal_kmip_request *req;
    if (vmseal_kmip_request_parse(buf, len, NULL, &req, NULL) != 0)
        fail_msg("%s: %s", name, vmseal_last_error());
    free(buf);
    return req;
}

static vmseal_kmip_response *load_response(const char *name)
{
    size_t len;
    uint8_t *buf = vector_load(name, &len);
    vmseal_kmip_response *resp;
    if (vmseal_kmip_response_parse(buf, len, NULL, &resp) != 0)
        fail_msg("%s: %s", name, vmseal_last_error());
    free(buf);
    return resp;
}

static void assert_encodes_to(const vmseal_ttlv *msg, const char *vector)
{
    size_t vlen, elen;
    uint8_t *want = vector_load(vector, &vlen);
    uint8_t *enc;
    if (vmseal_ttlv_encode(msg, &enc, &elen) != 0)
        fail_msg("%s: %s", vector, vmseal_last_error());
    if (elen != vlen || memcmp(enc, want, vlen) != 0)
        fail_msg("%s: built message differs from the vector (%zu vs %zu bytes)", vector, elen, vlen);
    vmseal_ttlv_buf_free(enc, elen);
    free(want);
}

static void test_request_fields(void **state)
{
    (void)state;
    vmseal_kmip_request *req = load_request("01-discover-versions.request.hex");
    assert_int_equal(req->items[0].operation, VMSEAL_KMIP_OP_DISCOVER_VERSIONS);
    assert_null(req->items[0].ubi);
    assert_int_equal(vmseal_ttlv_count(req->items[0].payload, 0), 0);
    vmseal_kmip_request_free(req);

    req = load_request("04-query.request.hex");
    assert_int_equal(req->items[0].operation, VMSEAL_KMIP_OP_QUERY);
    assert_int_equal(req->items[0].ubi_len, 8);
    uint32_t qf;
    assert_int_equal(vmseal_ttlv_find_enum(req->items[0].payload, VMSEAL_KMIP_TAG_QUERY_FUNCTION, &qf), 0);
    assert_int_equal(qf, VMSEAL_KMIP_QUERY_SERVER_INFORMATION);
    vmseal_kmip_request_free(req);

    req = load_request("27-add-attribute.request.hex");
    assert_int_equal(req->count, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(req->items[i].operation, VMSEAL_KMIP_OP_ADD_ATTRIBUTE);
        assert_int_equal(req->items[i].ubi[4], i + 1);
    }
    const char *s;
    vmseal_ttlv *attr = vmseal_ttlv_find(req->items[1].payload, VMSEAL_KMIP_TAG_ATTRIBUTE);
    assert_int_equal(vmseal_ttlv_find_text(attr, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE, &s, NULL), 0);
    assert_string_equal(s, "ESXi Server");
    vmseal_kmip_request_free(req);
}

static void test_build_vcenter_requests(void **state)
{
    (void)state;
    vmseal_kmip_version v11 = {1, 1};
    /* 01: DiscoverVersions without a batch item ID. */
    vmseal_ttlv *m = vmseal_kmip_request_new(&v11, NULL);
    assert_non_null(vmseal_kmip_request_add(m, VMSEAL_KMIP_OP_DISCOVER_VERSIONS, NULL, 0));
    assert_encodes_to(m, "01-discover-versions.request.hex");
    vmseal_ttlv_free(m);

    /* 15: Get UID "2". */
    m = vmseal_kmip_request_new(&v11, NULL);
    vmseal_ttlv *p = vmseal_kmip_request_add(m, VMSEAL_KMIP_OP_GET, "QLKC\x01\0\0\0", 8);
    vmseal_ttlv_add_text(p, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, "2");
    assert_encodes_to(m, "15-get.request.hex");
    vmseal_ttlv_free(m);

    /* 11: three AddAttribute items in one batch; Batch Count follows. */
    m = vmseal_kmip_request_new(&v11, NULL);
    static const char *names[] = {"x-Product_Version", "x-Vendor", "x-Product"};
    static const char *values[] = {"7.0.3 build-19480866", "VMware, Inc.", "VMware vSphere"};
    for (int i = 0; i < 3; i++) {
        uint8_t ubi[8] = {'Q', 'L', 'K', 'C', (uint8_t)(i + 1), 0, 0, 0};
        p = vmseal_kmip_request_add(m, VMSEAL_KMIP_OP_ADD_ATTRIBUTE, ubi, 8);
        vmseal_ttlv_add_text(p, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, "1");
        vmseal_ttlv *a = vmseal_ttlv_add_struct(p, VMSEAL_KMIP_TAG_ATTRIBUTE);
        vmseal_ttlv_add_text(a, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, names[i]);
        vmseal_ttlv_add_text(a, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE, values[i]);
    }
    assert_encodes_to(m, "11-add-attribute.request.hex");
    vmseal_ttlv_free(m);
}

static void test_build_responses(void **state)
{
    (void)state;
    /* 15: Get response, rebuilt from the parsed request + the key from the vector. */
    vmseal_kmip_request *req = load_request("15-get.request.hex");
    vmseal_kmip_response *want = load_response("15-get.response.hex");
    vmseal_secret *key;
    assert_int_equal(vmseal_ttlv_get_secret(vmseal_ttlv_dig(want->items[0].payload,
        VMSEAL_KMIP_TAG_SYMMETRIC_KEY, VMSEAL_KMIP_TAG_KEY_BLOCK, VMSEAL_KMIP_TAG_KEY_VALUE,
        VMSEAL_KMIP_TAG_KEY_MATERIAL, 0), &key), 0);
    vmseal_ttlv *m = vmseal_kmip_response_new(&req->version, want->timestamp);
    vmseal_ttlv *p = vmseal_kmip_response_add_success(m, &req->items[0]);
    vmseal_ttlv_add_enum(p, VMSEAL_KMIP_TAG_OBJECT_TYPE, VMSEAL_KMIP_OBJ_SYMMETRIC_KEY);
    vmseal_ttlv_add_text(p, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, "2");
    vmseal_ttlv *kb = vmseal_ttlv_add_struct(vmseal_ttlv_add_struct(p, VMSEAL_KMIP_TAG_SYMMETRIC_KEY),
                                             VMSEAL_KMIP_TAG_KEY_BLOCK);
    vmseal_ttlv_add_enum(kb, VMSEAL_KMIP_TAG_KEY_FORMAT_TYPE, VMSEAL_KMIP_KEYFMT_RAW);
    vmseal_ttlv_add_secret(vmseal_ttlv_add_struct(kb, VMSEAL_KMIP_TAG_KEY_VALUE),
                           VMSEAL_KMIP_TAG_KEY_MATERIAL, key);
    vmseal_ttlv_add_enum(kb, VMSEAL_KMIP_TAG_CRYPTOGRAPHIC_ALGORITHM, VMSEAL_KMIP_ALG_AES);
    vmseal_ttlv_add_int(kb, VMSEAL_KMIP_TAG_CRYPTOGRAPHIC_LENGTH, 256);
    assert_encodes_to(m, "15-get.response.hex");
    vmseal_ttlv_free(m);
    vmseal_secret_free(key);
    vmseal_kmip_request_free(req);
    vmseal_kmip_response_free(want);

    /* 11: PyKMIP's answer to the AddAttribute batch it could not parse:
     * version 1.0, one item without Operation, Invalid Message. */
    want = load_response("11-add-attribute.response.hex");
    assert_int_equal(want->version.minor, 0);
    assert_int_equal(want->items[0].operation, 0);
    assert_null(want->items[0].ubi);
    assert_int_equal(want->items[0].status, VMSEAL_KMIP_STATUS_OPERATION_FAILED);
    assert_int_equal(want->items[0].reason, VMSEAL_KMIP_REASON_INVALID_MESSAGE);
    assert_null(want->items[0].payload);
    assert_int_equal(vmseal_kmip_result_errno(&want->items[0]), -EINVAL);
    assert_string_equal(vmseal_last_error(),
        "Invalid Message: Error parsing request message. See server logs for more information.");
    vmseal_kmip_version v10 = {1, 0};
    m = vmseal_kmip_response_new(&v10, want->timestamp);
    vmseal_kmip_response_add_failure(m, NULL, VMSEAL_KMIP_REASON_INVALID_MESSAGE,
                                     "Error parsing request message. See server logs for more information.");
    assert_encodes_to(m, "11-add-attribute.response.hex");
    vmseal_ttlv_free(m);
    vmseal_kmip_response_free(want);

    /* 17: Activate response echoes Operation and the batch item ID. */
    req = load_request("17-activate.request.hex");
    want = load_response("17-activate.response.hex");
    m = vmseal_kmip_response_new(&req->version, want->timestamp);
    p = vmseal_kmip_response_add_success(m, &req->items[0]);
    vmseal_ttlv_add_text(p, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, "2");
    assert_encodes_to(m, "17-activate.response.hex");
    assert_int_equal(vmseal_kmip_result_errno(&want->items[0]), 0);
    vmseal_ttlv_free(m);
    vmseal_kmip_request_free(req);
    vmseal_kmip_response_free(want);
}

static void test_batch_response_counts(void **state)
{
    (void)state;
    vmseal_kmip_request *req = load_request("22-add-attribute.request.hex");
    vmseal_ttlv *m = vmseal_kmip_response_new(&req->version, 0);
    vmseal_ttlv_add_text(vmseal_kmip_response_add_success(m, &req->items[0]),
                         VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, "2");
    vmseal_kmip_response_add_failure(m, &req->items[1], VMSEAL_KMIP_REASON_PERMISSION_DENIED, "no \xff way");
    vmseal_kmip_response_add_result(m, &req->items[2], VMSEAL_KMIP_STATUS_OPERATION_UNDONE,
                                    VMSEAL_KMIP_REASON_GENERAL_FAILURE, NULL);
    uint8_t *enc;
    size_t len;
    assert_int_equal(vmseal_ttlv_encode(m, &enc, &len), 0);
    vmseal_kmip_response *resp;
    assert_int_equal(vmseal_kmip_response_parse(enc, len, NULL, &resp), 0);
    assert_int_equal(resp->count, 3);
    assert_int_equal(resp->version.minor, 1);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(resp->items[i].operation, VMSEAL_KMIP_OP_ADD_ATTRIBUTE);
        assert_int_equal(resp->items[i].ubi_len, 8);
        assert_memory_equal(resp->items[i].ubi, req->items[i].ubi, 8);
    }
    assert_int_equal(vmseal_kmip_result_errno(&resp->items[0]), 0);
    assert_int_equal(vmseal_kmip_result_errno(&resp->items[1]), -EACCES);
    assert_string_equal(vmseal_last_error(), "Permission Denied: no ? way");
    assert_int_equal(resp->items[2].status, VMSEAL_KMIP_STATUS_OPERATION_UNDONE);
    assert_int_equal(vmseal_kmip_result_errno(&resp->items[2]), -EREMOTEIO);
    assert_string_equal(vmseal_last_error(), "General Failure");
    vmseal_kmip_response_free(resp);
    vmseal_ttlv_buf_free(enc, len);
    vmseal_ttlv_free(m);
    vmseal_kmip_request_free(req);

    vmseal_kmip_response_item it = {.status = 1, .reason = VMSEAL_KMIP_REASON_ITEM_NOT_FOUND, .message = ""};
    assert_int_equal(vmseal_kmip_result_errno(&it), -ENOENT);
    assert_string_equal(vmseal_last_error(), "Item Not Found");
    it.reason = 0x7777;
    assert_int_equal(vmseal_kmip_result_errno(&it), -EREMOTEIO);
    assert_string_equal(vmseal_last_error(), "Result Reason 0x7777");
}

static void test_auth_and_options(void **state)
{
    (void)state;
    vmseal_kmip_version v14 = {1, 4};
    vmseal_kmip_request_opts o = {.max_response_size = 4096, .username = "alice", .password = "s3cret",
                                  .timestamp = true};
    vmseal_ttlv *m = vmseal_kmip_request_new(&v14, &o);
    vmseal_ttlv_add_text(vmseal_kmip_request_add(m, VMSEAL_KMIP_OP_GET, NULL, 0),
                         VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, "7");
    char *dump = vmseal_ttlv_dump_str(m);
    assert_null(strstr(dump, "s3cret"));
    assert_non_null(strstr(dump, "\"alice\""));
    free(dump);
    uint8_t *enc;
    size_t len;
    assert_int_equal(vmseal_ttlv_encode(m, &enc, &len), 0);
    vmseal_kmip_request *req;
    assert_int_equal(vmseal_kmip_request_parse(enc, len, NULL, &req, NULL), 0);
    assert_int_equal(req->version.minor, 4);
    assert_int_equal(req->max_response_size, 4096);
    assert_int_equal(req->credential_type, VMSEAL_KMIP_CRED_USERNAME_AND_PASSWORD);
    assert_string_equal(req->username, "alice");
    assert_string_equal(req->password, "s3cret");
    assert_true(req->timestamp > 1700000000);
    assert_int_equal(req->count, 1);
    vmseal_kmip_request_free(req);
    vmseal_ttlv_buf_free(enc, len);
    vmseal_ttlv_free(m);
}

/* Build a request with a tweak applied, then expect parse to fail. */
static int parse_built(vmseal_ttlv *m, vmseal_kmip_version *seen)
{
    uint8_t *enc;
    size_t len;
    if (vmseal_ttlv_encode(m, &enc, &len) != 0)
        fail_msg("encode: %s", vmseal_last_error());
    vmseal_kmip_request *req = (vmseal_kmip_request *)0x1;
    int rc = vmseal_kmip_request_parse(enc, len, NULL, &req, seen);
    if (rc == 0)
        vmseal_kmip_request_free(req);
    else
        assert_null(req);
    vmseal_ttlv_buf_free(enc, len);
    vmseal_ttlv_free(m);
    return rc;
}

static vmseal_ttlv *good_request(int items)
{
    vmseal_kmip_version v13 = {1, 3};
    vmseal_ttlv *m = vmseal_kmip_request_new(&v13, NULL);
    for (int i = 0; i < items; i++) {
        uint8_t ubi[1] = {(uint8_t)i};
        vmseal_ttlv_add_text(vmseal_kmip_request_add(m, VMSEAL_KMIP_OP_GET, ubi, 1),
                             VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, "1");
    }
    return m;
}

static void test_malformed_requests(void **state)
{
    (void)state;
    vmseal_kmip_version seen;
    assert_int_equal(parse_built(good_request(2), &seen), 0);
    assert_int_equal(seen.minor, 3);

    /* Batch Count disagrees with the items: version is still reported. */
    vmseal_ttlv *m = good_request(2);
    vmseal_ttlv_free(vmseal_ttlv_find(m, VMSEAL_KMIP_TAG_BATCH_ITEM));
    seen.minor = 99;
    assert_int_equal(parse_built(m, &seen), -EPROTO);
    assert_int_equal(seen.major, 1);
    assert_int_equal(seen.minor, 3);
    assert_non_null(strstr(vmseal_last_error(), "Batch Count is 2 but there are 1"));

    /* No items at all. */
    assert_int_equal(parse_built(good_request(0), NULL), -EPROTO);

    /* Missing Operation / Request Payload. */
    m = good_request(1);
    vmseal_ttlv_free(vmseal_ttlv_dig(m, VMSEAL_KMIP_TAG_BATCH_ITEM, VMSEAL_KMIP_TAG_OPERATION, 0));
    assert_int_equal(parse_built(m, NULL), -EPROTO);
    assert_non_null(strstr(vmseal_last_error(), "missing Operation"));
    m = good_request(1);
    vmseal_ttlv_free(vmseal_ttlv_dig(m, VMSEAL_KMIP_TAG_BATCH_ITEM, VMSEAL_KMIP_TAG_REQUEST_PAYLOAD, 0));
    assert_int_equal(parse_built(m, NULL), -EPROTO);

    /* Operation of the wrong type. */
    m = good_request(1);
    vmseal_ttlv *bi = vmseal_ttlv_find(m, VMSEAL_KMIP_TAG_BATCH_ITEM);
    vmseal_ttlv_free(vmseal_ttlv_find(bi, VMSEAL_KMIP_TAG_OPERATION));
    vmseal_ttlv_add_int(bi, VMSEAL_KMIP_TAG_OPERATION, 10);
    assert_int_equal(parse_built(m, NULL), -EPROTO);
    assert_non_null(strstr(vmseal_last_error(), "Operation has type Integer, expected Enumeration"));

    /* Batch of two without / with duplicate IDs. */
    m = good_request(2);
    vmseal_ttlv_free(vmseal_ttlv_dig(m, VMSEAL_KMIP_TAG_BATCH_ITEM, VMSEAL_KMIP_TAG_UNIQUE_BATCH_ITEM_ID, 0));
    assert_int_equal(parse_built(m, NULL), -EPROTO);
    m = good_request(2);
    vmseal_ttlv *ubi = vmseal_ttlv_dig(m, VMSEAL_KMIP_TAG_BATCH_ITEM, VMSEAL_KMIP_TAG_UNIQUE_BATCH_ITEM_ID, 0);
    vmseal_ttlv *second = vmseal_ttlv_next(m, VMSEAL_KMIP_TAG_BATCH_ITEM, vmseal_ttlv_find(m, VMSEAL_KMIP_TAG_BATCH_ITEM));
    vmseal_ttlv_free(vmseal_ttlv_find(second, VMSEAL_KMIP_TAG_UNIQUE_BATCH_ITEM_ID));
    vmseal_ttlv *dup;
    assert_int_equal(vmseal_ttlv_dup(ubi, &dup), 0);
    assert_int_equal(vmseal_ttlv_append(second, dup), 0);
    assert_int_equal(parse_built(m, NULL), -EPROTO);
    assert_non_null(strstr(vmseal_last_error(), "same Unique Batch Item ID"));

    /* Two headers; unknown field in the header; stray item in the message. */
    m = good_request(1);
    vmseal_ttlv *h;
    assert_int_equal(vmseal_ttlv_dup(vmseal_ttlv_find(m, VMSEAL_KMIP_TAG_REQUEST_HEADER), &h), 0);
    assert_int_equal(vmseal_ttlv_append(m, h), 0);
    assert_int_equal(parse_built(m, NULL), -EPROTO);
    m = good_request(1);
    vmseal_ttlv_add_text(vmseal_ttlv_find(m, VMSEAL_KMIP_TAG_REQUEST_HEADER), VMSEAL_KMIP_TAG_NAME_VALUE, "x");
    assert_int_equal(parse_built(m, NULL), -EPROTO);
    m = good_request(1);
    vmseal_ttlv_add_int(m, VMSEAL_KMIP_TAG_BATCH_COUNT, 1);
    assert_int_equal(parse_built(m, NULL), -EPROTO);

    /* Missing Protocol Version: version unknown, reported as 1.0. */
    m = good_request(1);
    vmseal_ttlv_free(vmseal_ttlv_dig(m, VMSEAL_KMIP_TAG_REQUEST_HEADER, VMSEAL_KMIP_TAG_PROTOCOL_VERSION, 0));
    seen.minor = 99;
    assert_int_equal(parse_built(m, &seen), -EPROTO);
    assert_int_equal(seen.major, 1);
    assert_int_equal(seen.minor, 0);

    /* Bad Batch Error Continuation Option value; credential without username. */
    m = good_request(1);
    vmseal_ttlv_add_enum(vmseal_ttlv_find(m, VMSEAL_KMIP_TAG_REQUEST_HEADER),
                         VMSEAL_KMIP_TAG_BATCH_ERROR_CONTINUATION_OPTION, 9);
    assert_int_equal(parse_built(m, NULL), -EPROTO);
    m = good_request(1);
    vmseal_ttlv *cred = vmseal_ttlv_add_struct(vmseal_ttlv_add_struct(
        vmseal_ttlv_find(m, VMSEAL_KMIP_TAG_REQUEST_HEADER), VMSEAL_KMIP_TAG_AUTHENTICATION),
        VMSEAL_KMIP_TAG_CREDENTIAL);
    vmseal_ttlv_add_enum(cred, VMSEAL_KMIP_TAG_CREDENTIAL_TYPE, VMSEAL_KMIP_CRED_USERNAME_AND_PASSWORD);
    vmseal_ttlv_add_struct(cred, VMSEAL_KMIP_TAG_CREDENTIAL_VALUE);
    assert_int_equal(parse_built(m, NULL), -EPROTO);
    assert_non_null(strstr(vmseal_last_error(), "Username"));

    /* A response is not a request, and vice versa. */
    size_t len;
    uint8_t *buf = vector_load("06-create.response.hex", &len);
    vmseal_kmip_request *req;
    assert_int_equal(vmseal_kmip_request_parse(buf, len, NULL, &req, NULL), -EPROTO);
    free(buf);
    buf = vector_load("06-create.request.hex", &len);
    vmseal_kmip_response *resp;
    assert_int_equal(vmseal_kmip_response_parse(buf, len, NULL, &resp), -EPROTO);
    /* Garbage: TTLV error passes through. */
    buf[4] = 0x7F;
    assert_int_equal(vmseal_kmip_request_parse(buf, len, NULL, &req, NULL), -EPROTO);
    vmseal_kmip_version v;
    assert_int_equal(vmseal_kmip_request_parse(buf, len, &(vmseal_ttlv_limits){.max_size = 64}, &req, &v),
                     -EMSGSIZE);
    free(buf);
}

static void test_error_response(void **state)
{
    (void)state;
    vmseal_kmip_version v12 = {1, 2};
    vmseal_ttlv *m = vmseal_kmip_error_response(&v12, VMSEAL_KMIP_REASON_INVALID_MESSAGE,
                                                "KMIP decode at byte 12: bad");
    uint8_t *enc;
    size_t len;
    assert_int_equal(vmseal_ttlv_encode(m, &enc, &len), 0);
    vmseal_kmip_response *resp;
    assert_int_equal(vmseal_kmip_response_parse(enc, len, NULL, &resp), 0);
    assert_int_equal(resp->version.minor, 2);
    assert_int_equal(resp->count, 1);
    assert_int_equal(resp->items[0].operation, 0);
    assert_int_equal(resp->items[0].reason, VMSEAL_KMIP_REASON_INVALID_MESSAGE);
    assert_string_equal(resp->items[0].message, "KMIP decode at byte 12: bad");
    vmseal_kmip_response_free(resp);
    vmseal_ttlv_buf_free(enc, len);
    vmseal_ttlv_free(m);

    m = vmseal_kmip_error_response(NULL, VMSEAL_KMIP_REASON_INVALID_MESSAGE, NULL);
    assert_int_equal(vmseal_ttlv_encode(m, &enc, &len), 0);
    assert_int_equal(vmseal_kmip_response_parse(enc, len, NULL, &resp), 0);
    assert_int_equal(resp->version.minor, 0);
    assert_string_equal(resp->items[0].message, "");
    vmseal_kmip_response_free(resp);
    vmseal_ttlv_buf_free(enc, len);
    vmseal_ttlv_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vcenter_messages_parse),
        cmocka_unit_test(test_oasis_messages_parse),
        cmocka_unit_test(test_request_fields),
        cmocka_unit_test(test_build_vcenter_requests),
        cmocka_unit_test(test_build_responses),
        cmocka_unit_test(test_batch_response_counts),
        cmocka_unit_test(test_auth_and_options),
        cmocka_unit_test(test_malformed_requests),
        cmocka_unit_test(test_error_response),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
