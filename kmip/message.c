/* KMIP request/response messages: parsing with validation, building. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vmseal/kmip_msg.h>

#include "ttlv_internal.h"

bool vmseal_kmip_version_supported(const vmseal_kmip_version *v)
{
    return v && v->major == 1 && v->minor >= 0 && v->minor <= 4;
}

static const char *tname(uint32_t tag)
{
    const char *n = vmseal_kmip_tag_name(tag);
    return n ? n : "unknown tag";
}

/* The single child with this tag: 0 found, -ENOENT none, -EPROTO duplicated. */
static int only_child(const vmseal_ttlv *parent, uint32_t tag, vmseal_ttlv **out, const char *where)
{
    *out = vmseal_ttlv_find(parent, tag);
    if (!*out)
        return vmseal_fail(ENOENT, "%s: missing %s", where, tname(tag));
    if (vmseal_ttlv_next(parent, tag, *out))
        return vmseal_fail(EPROTO, "%s: %s appears more than once", where, tname(tag));
    return 0;
}

/* Required single child of the given type. */
static int need(const vmseal_ttlv *parent, uint32_t tag, vmseal_ttlv_type type, vmseal_ttlv **out,
                const char *where)
{
    int rc = only_child(parent, tag, out, where);
    if (rc == -ENOENT)
        return vmseal_fail(EPROTO, "%s: missing %s", where, tname(tag));
    if (rc < 0)
        return rc;
    if (vmseal_ttlv_type_of(*out) != type)
        return vmseal_fail(EPROTO, "%s: %s has type %s, expected %s", where, tname(tag),
                           vmseal_ttlv_type_name(vmseal_ttlv_type_of(*out)), vmseal_ttlv_type_name(type));
    return 0;
}

/* Optional single child of the given type: 0 present, 1 absent, <0 bad. */
static int maybe(const vmseal_ttlv *parent, uint32_t tag, vmseal_ttlv_type type, vmseal_ttlv **out,
                 const char *where)
{
    int rc = only_child(parent, tag, out, where);
    if (rc == -ENOENT) {
        vmseal_clear_error();
        return 1;
    }
    if (rc < 0)
        return rc;
    if (vmseal_ttlv_type_of(*out) != type)
        return vmseal_fail(EPROTO, "%s: %s has type %s, expected %s", where, tname(tag),
                           vmseal_ttlv_type_name(vmseal_ttlv_type_of(*out)), vmseal_ttlv_type_name(type));
    return 0;
}

/* Every child of parent has one of the allowed tags. */
static int only_tags(const vmseal_ttlv *parent, const uint32_t *allowed, size_t n, const char *where)
{
    for (vmseal_ttlv *c = NULL; (c = vmseal_ttlv_next(parent, 0, c));) {
        size_t i;
        for (i = 0; i < n; i++)
            if (vmseal_ttlv_tag(c) == allowed[i])
                break;
        if (i == n)
            return vmseal_fail(EPROTO, "%s: unexpected %s (0x%06X)", where, tname(vmseal_ttlv_tag(c)),
                               vmseal_ttlv_tag(c));
    }
    return 0;
}

static int parse_version(const vmseal_ttlv *header, vmseal_kmip_version *v, const char *where)
{
    vmseal_ttlv *pv, *x;
    int rc = need(header, VMSEAL_KMIP_TAG_PROTOCOL_VERSION, VMSEAL_TTLV_STRUCTURE, &pv, where);
    if (rc < 0)
        return rc;
    if ((rc = need(pv, VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MAJOR, VMSEAL_TTLV_INTEGER, &x, where)) < 0 ||
        (rc = vmseal_ttlv_get_int(x, &v->major)) < 0)
        return rc;
    if ((rc = need(pv, VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MINOR, VMSEAL_TTLV_INTEGER, &x, where)) < 0 ||
        (rc = vmseal_ttlv_get_int(x, &v->minor)) < 0)
        return rc;
    if (v->major < 0 || v->minor < 0)
        return vmseal_fail(EPROTO, "%s: negative protocol version", where);
    return 0;
}

/* Batch Count equals the number of Batch Items, and there is at least one. */
static int check_batch_count(const vmseal_ttlv *root, const vmseal_ttlv *header, size_t *count,
                             const char *where)
{
    vmseal_ttlv *bc;
    int32_t n;
    int rc = need(header, VMSEAL_KMIP_TAG_BATCH_COUNT, VMSEAL_TTLV_INTEGER, &bc, where);
    if (rc < 0 || (rc = vmseal_ttlv_get_int(bc, &n)) < 0)
        return rc;
    size_t items = vmseal_ttlv_count(root, VMSEAL_KMIP_TAG_BATCH_ITEM);
    if (n < 1)
        return vmseal_fail(EPROTO, "%s: Batch Count is %d", where, n);
    if ((size_t)n != items)
        return vmseal_fail(EPROTO, "%s: Batch Count is %d but there are %zu Batch Items", where, n, items);
    *count = items;
    return 0;
}

/* ---- requests ------------------------------------------------------------ */

void vmseal_kmip_request_free(vmseal_kmip_request *req)
{
    if (!req)
        return;
    vmseal_ttlv_free(req->tree);
    free(req->items);
    free(req);
}

static int parse_auth(vmseal_kmip_request *req, const vmseal_ttlv *auth)
{
    const char *w = "KMIP request Authentication";
    vmseal_ttlv *cred, *x;
    /* KMIP 1.0-1.4 carry one Credential; take the first if a client repeats it. */
    cred = vmseal_ttlv_find(auth, VMSEAL_KMIP_TAG_CREDENTIAL);
    if (!cred || vmseal_ttlv_type_of(cred) != VMSEAL_TTLV_STRUCTURE)
        return vmseal_fail(EPROTO, "%s: missing Credential", w);
    int rc = need(cred, VMSEAL_KMIP_TAG_CREDENTIAL_TYPE, VMSEAL_TTLV_ENUM, &x, w);
    if (rc < 0 || (rc = vmseal_ttlv_get_enum(x, &req->credential_type)) < 0)
        return rc;
    if (req->credential_type == 0)
        return vmseal_fail(EPROTO, "%s: Credential Type 0", w);
    req->credential = cred;
    if (req->credential_type != VMSEAL_KMIP_CRED_USERNAME_AND_PASSWORD)
        return 0;
    vmseal_ttlv *val;
    if ((rc = need(cred, VMSEAL_KMIP_TAG_CREDENTIAL_VALUE, VMSEAL_TTLV_STRUCTURE, &val, w)) < 0)
        return rc;
    if ((rc = need(val, VMSEAL_KMIP_TAG_USERNAME, VMSEAL_TTLV_TEXT, &x, w)) < 0 ||
        (rc = vmseal_ttlv_get_text(x, &req->username, NULL)) < 0)
        return rc;
    rc = maybe(val, VMSEAL_KMIP_TAG_PASSWORD, VMSEAL_TTLV_TEXT, &x, w);
    if (rc < 0)
        return rc;
    if (rc == 0 && (rc = vmseal_ttlv_get_text(x, &req->password, NULL)) < 0)
        return rc;
    return 0;
}

static int parse_request_header(vmseal_kmip_request *req, const vmseal_ttlv *h)
{
    const char *w = "KMIP Request Header";
    vmseal_ttlv *x;
    int rc;
    /* Known header fields of 1.0-1.4; anything else is refused. */
    static const uint32_t allowed[] = {
        VMSEAL_KMIP_TAG_PROTOCOL_VERSION, VMSEAL_KMIP_TAG_MAXIMUM_RESPONSE_SIZE,
        VMSEAL_KMIP_TAG_ASYNCHRONOUS_INDICATOR, VMSEAL_KMIP_TAG_ATTESTATION_CAPABLE_INDICATOR,
        VMSEAL_KMIP_TAG_ATTESTATION_TYPE, VMSEAL_KMIP_TAG_AUTHENTICATION,
        VMSEAL_KMIP_TAG_BATCH_ERROR_CONTINUATION_OPTION, VMSEAL_KMIP_TAG_BATCH_ORDER_OPTION,
        VMSEAL_KMIP_TAG_TIME_STAMP, VMSEAL_KMIP_TAG_BATCH_COUNT,
        VMSEAL_KMIP_TAG_CLIENT_CORRELATION_VALUE, VMSEAL_KMIP_TAG_SERVER_CORRELATION_VALUE,
    };
    if ((rc = only_tags(h, allowed, sizeof(allowed) / sizeof(allowed[0]), w)) < 0)
        return rc;
    if ((rc = maybe(h, VMSEAL_KMIP_TAG_MAXIMUM_RESPONSE_SIZE, VMSEAL_TTLV_INTEGER, &x, w)) < 0)
        return rc;
    if (rc == 0) {
        if ((rc = vmseal_ttlv_get_int(x, &req->max_response_size)) < 0)
            return rc;
        if (req->max_response_size <= 0)
            return vmseal_fail(EPROTO, "%s: Maximum Response Size %d", w, req->max_response_size);
    }
    if ((rc = maybe(h, VMSEAL_KMIP_TAG_ASYNCHRONOUS_INDICATOR, VMSEAL_TTLV_BOOL, &x, w)) < 0)
        return rc;
    if (rc == 0 && (rc = vmseal_ttlv_get_bool(x, &req->async_indicator)) < 0)
        return rc;
    if ((rc = maybe(h, VMSEAL_KMIP_TAG_AUTHENTICATION, VMSEAL_TTLV_STRUCTURE, &x, w)) < 0)
        return rc;
    if (rc == 0 && (rc = parse_auth(req, x)) < 0)
        return rc;
    req->batch_order = true;
    if ((rc = maybe(h, VMSEAL_KMIP_TAG_BATCH_ORDER_OPTION, VMSEAL_TTLV_BOOL, &x, w)) < 0)
        return rc;
    if (rc == 0 && (rc = vmseal_ttlv_get_bool(x, &req->batch_order)) < 0)
        return rc;
    req->batch_error_option = VMSEAL_KMIP_BATCH_STOP;
    if ((rc = maybe(h, VMSEAL_KMIP_TAG_BATCH_ERROR_CONTINUATION_OPTION, VMSEAL_TTLV_ENUM, &x, w)) < 0)
        return rc;
    if (rc == 0) {
        if ((rc = vmseal_ttlv_get_enum(x, &req->batch_error_option)) < 0)
            return rc;
        if (req->batch_error_option < VMSEAL_KMIP_BATCH_CONTINUE ||
            req->batch_error_option > VMSEAL_KMIP_BATCH_UNDO)
            return vmseal_fail(EPROTO, "%s: Batch Error Continuation Option %u", w,
                               req->batch_error_option);
    }
    if ((rc = maybe(h, VMSEAL_KMIP_TAG_TIME_STAMP, VMSEAL_TTLV_DATETIME, &x, w)) < 0)
        return rc;
    if (rc == 0 && (rc = vmseal_ttlv_get_datetime(x, &req->timestamp)) < 0)
        return rc;
    return 0;
}

static int parse_request_item(vmseal_kmip_request_item *it, vmseal_ttlv *bi, size_t idx)
{
    char w[64];
    snprintf(w, sizeof(w), "KMIP request Batch Item %zu", idx + 1);
    if (vmseal_ttlv_type_of(bi) != VMSEAL_TTLV_STRUCTURE)
        return vmseal_fail(EPROTO, "%s is not a structure", w);
    static const uint32_t allowed[] = {
        VMSEAL_KMIP_TAG_OPERATION, VMSEAL_KMIP_TAG_UNIQUE_BATCH_ITEM_ID,
        VMSEAL_KMIP_TAG_REQUEST_PAYLOAD, VMSEAL_KMIP_TAG_MESSAGE_EXTENSION,
    };
    int rc = only_tags(bi, allowed, sizeof(allowed) / sizeof(allowed[0]), w);
    if (rc < 0)
        return rc;
    vmseal_ttlv *x;
    it->item = bi;
    if ((rc = need(bi, VMSEAL_KMIP_TAG_OPERATION, VMSEAL_TTLV_ENUM, &x, w)) < 0 ||
        (rc = vmseal_ttlv_get_enum(x, &it->operation)) < 0)
        return rc;
    if ((rc = maybe(bi, VMSEAL_KMIP_TAG_UNIQUE_BATCH_ITEM_ID, VMSEAL_TTLV_BYTES, &x, w)) < 0)
        return rc;
    if (rc == 0) {
        if ((rc = vmseal_ttlv_get_bytes(x, &it->ubi, &it->ubi_len)) < 0)
            return rc;
        if (it->ubi_len == 0)
            return vmseal_fail(EPROTO, "%s: empty Unique Batch Item ID", w);
    }
    if ((rc = need(bi, VMSEAL_KMIP_TAG_REQUEST_PAYLOAD, VMSEAL_TTLV_STRUCTURE, &it->payload, w)) < 0)
        return rc;
    if ((rc = maybe(bi, VMSEAL_KMIP_TAG_MESSAGE_EXTENSION, VMSEAL_TTLV_STRUCTURE, &it->extension, w)) < 0)
        return rc;
    if (rc == 1)
        it->extension = NULL;
    return 0;
}

int vmseal_kmip_request_parse(const uint8_t *buf, size_t len, const vmseal_ttlv_limits *limits,
                              vmseal_kmip_request **out, vmseal_kmip_version *seen)
{
    *out = NULL;
    if (seen)
        *seen = (vmseal_kmip_version){1, 0};
    vmseal_kmip_request *req = calloc(1, sizeof(*req));
    if (!req)
        return vmseal_fail(ENOMEM, "KMIP request: out of memory");
    int rc = vmseal_ttlv_decode_ex(buf, len, limits, &req->tree);
    if (rc < 0)
        goto fail;
    vmseal_ttlv *root = req->tree;
    const char *w = "KMIP request";
    if (vmseal_ttlv_tag(root) != VMSEAL_KMIP_TAG_REQUEST_MESSAGE ||
        vmseal_ttlv_type_of(root) != VMSEAL_TTLV_STRUCTURE) {
        rc = vmseal_fail(EPROTO, "%s: not a Request Message but %s", w, tname(vmseal_ttlv_tag(root)));
        goto fail;
    }
    static const uint32_t allowed[] = {VMSEAL_KMIP_TAG_REQUEST_HEADER, VMSEAL_KMIP_TAG_BATCH_ITEM};
    vmseal_ttlv *h;
    if ((rc = only_tags(root, allowed, 2, w)) < 0 ||
        (rc = need(root, VMSEAL_KMIP_TAG_REQUEST_HEADER, VMSEAL_TTLV_STRUCTURE, &h, w)) < 0 ||
        (rc = parse_version(h, &req->version, "KMIP Request Header")) < 0)
        goto fail;
    if (seen)
        *seen = req->version;
    if ((rc = parse_request_header(req, h)) < 0 ||
        (rc = check_batch_count(root, h, &req->count, "KMIP Request Header")) < 0)
        goto fail;
    req->items = calloc(req->count, sizeof(req->items[0]));
    if (!req->items) {
        rc = vmseal_fail(ENOMEM, "KMIP request: out of memory");
        goto fail;
    }
    size_t i = 0;
    for (vmseal_ttlv *bi = NULL; (bi = vmseal_ttlv_next(root, VMSEAL_KMIP_TAG_BATCH_ITEM, bi)); i++)
        if ((rc = parse_request_item(&req->items[i], bi, i)) < 0)
            goto fail;
    if (req->count > 1) {
        /* KMIP 1.x §7.2: Unique Batch Item ID is required when Batch Count > 1. */
        for (i = 0; i < req->count; i++) {
            if (!req->items[i].ubi) {
                rc = vmseal_fail(EPROTO, "%s: Batch Item %zu has no Unique Batch Item ID in a batch of %zu",
                                 w, i + 1, req->count);
                goto fail;
            }
            for (size_t j = 0; j < i; j++) {
                if (req->items[j].ubi_len == req->items[i].ubi_len &&
                    memcmp(req->items[j].ubi, req->items[i].ubi, req->items[i].ubi_len) == 0) {
                    rc = vmseal_fail(EPROTO, "%s: Batch Items %zu and %zu have the same Unique Batch Item ID",
                                     w, j + 1, i + 1);
                    goto fail;
                }
            }
        }
    }
    *out = req;
    return 0;
fail:
    vmseal_kmip_request_free(req);
    return rc;
}

/* Keep the header's Batch Count equal to the number of Batch Items. */
static void bump_batch_count(vmseal_ttlv *msg, uint32_t header_tag)
{
    vmseal_ttlv *bc = vmseal_ttlv_dig(msg, header_tag, VMSEAL_KMIP_TAG_BATCH_COUNT, 0);
    if (bc && bc->type == VMSEAL_TTLV_INTEGER)
        bc->v.i = (int64_t)vmseal_ttlv_count(msg, VMSEAL_KMIP_TAG_BATCH_ITEM);
}

static void add_version(vmseal_ttlv *header, const vmseal_kmip_version *v)
{
    vmseal_ttlv *pv = vmseal_ttlv_add_struct(header, VMSEAL_KMIP_TAG_PROTOCOL_VERSION);
    vmseal_ttlv_add_int(pv, VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MAJOR, v ? v->major : 1);
    vmseal_ttlv_add_int(pv, VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MINOR, v ? v->minor : 0);
}

vmseal_ttlv *vmseal_kmip_request_new(const vmseal_kmip_version *v, const vmseal_kmip_request_opts *opts)
{
    vmseal_ttlv *m = vmseal_ttlv_struct(VMSEAL_KMIP_TAG_REQUEST_MESSAGE);
    vmseal_ttlv *h = vmseal_ttlv_add_struct(m, VMSEAL_KMIP_TAG_REQUEST_HEADER);
    add_version(h, v);
    if (opts && opts->max_response_size > 0)
        vmseal_ttlv_add_int(h, VMSEAL_KMIP_TAG_MAXIMUM_RESPONSE_SIZE, opts->max_response_size);
    if (opts && opts->username) {
        vmseal_ttlv *cred = vmseal_ttlv_add_struct(
            vmseal_ttlv_add_struct(h, VMSEAL_KMIP_TAG_AUTHENTICATION), VMSEAL_KMIP_TAG_CREDENTIAL);
        vmseal_ttlv_add_enum(cred, VMSEAL_KMIP_TAG_CREDENTIAL_TYPE, VMSEAL_KMIP_CRED_USERNAME_AND_PASSWORD);
        vmseal_ttlv *val = vmseal_ttlv_add_struct(cred, VMSEAL_KMIP_TAG_CREDENTIAL_VALUE);
        vmseal_ttlv_add_text(val, VMSEAL_KMIP_TAG_USERNAME, opts->username);
        if (opts->password)
            vmseal_ttlv_add_text(val, VMSEAL_KMIP_TAG_PASSWORD, opts->password);
    }
    if (opts && opts->batch_error_option)
        vmseal_ttlv_add_enum(h, VMSEAL_KMIP_TAG_BATCH_ERROR_CONTINUATION_OPTION, opts->batch_error_option);
    if (opts && opts->timestamp)
        vmseal_ttlv_add_datetime(h, VMSEAL_KMIP_TAG_TIME_STAMP, (int64_t)time(NULL));
    vmseal_ttlv_add_int(h, VMSEAL_KMIP_TAG_BATCH_COUNT, 0);
    return m;
}

vmseal_ttlv *vmseal_kmip_request_add(vmseal_ttlv *request, uint32_t operation, const void *ubi,
                                     size_t ubi_len)
{
    vmseal_ttlv *bi = vmseal_ttlv_add_struct(request, VMSEAL_KMIP_TAG_BATCH_ITEM);
    vmseal_ttlv_add_enum(bi, VMSEAL_KMIP_TAG_OPERATION, operation);
    if (ubi && ubi_len)
        vmseal_ttlv_add_bytes(bi, VMSEAL_KMIP_TAG_UNIQUE_BATCH_ITEM_ID, ubi, ubi_len);
    vmseal_ttlv *p = vmseal_ttlv_add_struct(bi, VMSEAL_KMIP_TAG_REQUEST_PAYLOAD);
    if (request)
        bump_batch_count(request, VMSEAL_KMIP_TAG_REQUEST_HEADER);
    return p;
}

/* ---- responses ----------------------------------------------------------- */

vmseal_ttlv *vmseal_kmip_response_new(const vmseal_kmip_version *v, int64_t timestamp)
{
    vmseal_ttlv *m = vmseal_ttlv_struct(VMSEAL_KMIP_TAG_RESPONSE_MESSAGE);
    vmseal_ttlv *h = vmseal_ttlv_add_struct(m, VMSEAL_KMIP_TAG_RESPONSE_HEADER);
    add_version(h, v);
    vmseal_ttlv_add_datetime(h, VMSEAL_KMIP_TAG_TIME_STAMP, timestamp ? timestamp : (int64_t)time(NULL));
    vmseal_ttlv_add_int(h, VMSEAL_KMIP_TAG_BATCH_COUNT, 0);
    return m;
}

static vmseal_ttlv *add_result_item(vmseal_ttlv *response, const vmseal_kmip_request_item *req,
                                    uint32_t status, uint32_t reason, const char *message)
{
    vmseal_ttlv *bi = vmseal_ttlv_add_struct(response, VMSEAL_KMIP_TAG_BATCH_ITEM);
    if (req && req->operation)
        vmseal_ttlv_add_enum(bi, VMSEAL_KMIP_TAG_OPERATION, req->operation);
    if (req && req->ubi && req->ubi_len)
        vmseal_ttlv_add_bytes(bi, VMSEAL_KMIP_TAG_UNIQUE_BATCH_ITEM_ID, req->ubi, req->ubi_len);
    vmseal_ttlv_add_enum(bi, VMSEAL_KMIP_TAG_RESULT_STATUS, status);
    if (status != VMSEAL_KMIP_STATUS_SUCCESS) {
        if (reason)
            vmseal_ttlv_add_enum(bi, VMSEAL_KMIP_TAG_RESULT_REASON, reason);
        if (message) {
            /* Result Message must be UTF-8: replace anything else so that a
             * stray byte in an error text cannot break the whole response. */
            size_t n = strlen(message);
            if (ttlv_utf8_valid(message, n)) {
                vmseal_ttlv_add_text_n(bi, VMSEAL_KMIP_TAG_RESULT_MESSAGE, message, n);
            } else {
                char *clean = malloc(n + 1);
                if (clean) {
                    for (size_t i = 0; i < n; i++)
                        clean[i] = (message[i] & 0x80) ? '?' : message[i];
                    vmseal_ttlv_add_text_n(bi, VMSEAL_KMIP_TAG_RESULT_MESSAGE, clean, n);
                    free(clean);
                }
            }
        }
    }
    if (response)
        bump_batch_count(response, VMSEAL_KMIP_TAG_RESPONSE_HEADER);
    return bi;
}

vmseal_ttlv *vmseal_kmip_response_add_result(vmseal_ttlv *response, const vmseal_kmip_request_item *req,
                                             uint32_t status, uint32_t reason, const char *message)
{
    vmseal_ttlv *bi = add_result_item(response, req, status, reason, message);
    if (status == VMSEAL_KMIP_STATUS_SUCCESS)
        vmseal_ttlv_add_struct(bi, VMSEAL_KMIP_TAG_RESPONSE_PAYLOAD);
    return bi;
}

vmseal_ttlv *vmseal_kmip_response_add_success(vmseal_ttlv *response, const vmseal_kmip_request_item *req)
{
    vmseal_ttlv *bi = add_result_item(response, req, VMSEAL_KMIP_STATUS_SUCCESS, 0, NULL);
    return vmseal_ttlv_add_struct(bi, VMSEAL_KMIP_TAG_RESPONSE_PAYLOAD);
}

vmseal_ttlv *vmseal_kmip_response_add_failure(vmseal_ttlv *response, const vmseal_kmip_request_item *req,
                                              uint32_t reason, const char *message)
{
    return add_result_item(response, req, VMSEAL_KMIP_STATUS_OPERATION_FAILED, reason, message);
}

vmseal_ttlv *vmseal_kmip_error_response(const vmseal_kmip_version *v, uint32_t reason, const char *message)
{
    vmseal_ttlv *m = vmseal_kmip_response_new(v, 0);
    add_result_item(m, NULL, VMSEAL_KMIP_STATUS_OPERATION_FAILED, reason, message);
    return m;
}

void vmseal_kmip_response_free(vmseal_kmip_response *resp)
{
    if (!resp)
        return;
    vmseal_ttlv_free(resp->tree);
    free(resp->items);
    free(resp);
}

static int parse_response_item(vmseal_kmip_response_item *it, vmseal_ttlv *bi, size_t idx)
{
    char w[64];
    snprintf(w, sizeof(w), "KMIP response Batch Item %zu", idx + 1);
    if (vmseal_ttlv_type_of(bi) != VMSEAL_TTLV_STRUCTURE)
        return vmseal_fail(EPROTO, "%s is not a structure", w);
    vmseal_ttlv *x;
    int rc;
    it->item = bi;
    it->message = "";
    if ((rc = maybe(bi, VMSEAL_KMIP_TAG_OPERATION, VMSEAL_TTLV_ENUM, &x, w)) < 0)
        return rc;
    if (rc == 0 && (rc = vmseal_ttlv_get_enum(x, &it->operation)) < 0)
        return rc;
    if ((rc = maybe(bi, VMSEAL_KMIP_TAG_UNIQUE_BATCH_ITEM_ID, VMSEAL_TTLV_BYTES, &x, w)) < 0)
        return rc;
    if (rc == 0 && (rc = vmseal_ttlv_get_bytes(x, &it->ubi, &it->ubi_len)) < 0)
        return rc;
    if ((rc = need(bi, VMSEAL_KMIP_TAG_RESULT_STATUS, VMSEAL_TTLV_ENUM, &x, w)) < 0 ||
        (rc = vmseal_ttlv_get_enum(x, &it->status)) < 0)
        return rc;
    if ((rc = maybe(bi, VMSEAL_KMIP_TAG_RESULT_REASON, VMSEAL_TTLV_ENUM, &x, w)) < 0)
        return rc;
    if (rc == 0 && (rc = vmseal_ttlv_get_enum(x, &it->reason)) < 0)
        return rc;
    if ((rc = maybe(bi, VMSEAL_KMIP_TAG_RESULT_MESSAGE, VMSEAL_TTLV_TEXT, &x, w)) < 0)
        return rc;
    if (rc == 0 && (rc = vmseal_ttlv_get_text(x, &it->message, NULL)) < 0)
        return rc;
    if ((rc = maybe(bi, VMSEAL_KMIP_TAG_RESPONSE_PAYLOAD, VMSEAL_TTLV_STRUCTURE, &it->payload, w)) < 0)
        return rc;
    if (rc == 1)
        it->payload = NULL;
    return 0;
}

int vmseal_kmip_response_parse(const uint8_t *buf, size_t len, const vmseal_ttlv_limits *limits,
                               vmseal_kmip_response **out)
{
    *out = NULL;
    vmseal_kmip_response *resp = calloc(1, sizeof(*resp));
    if (!resp)
        return vmseal_fail(ENOMEM, "KMIP response: out of memory");
    int rc = vmseal_ttlv_decode_ex(buf, len, limits, &resp->tree);
    if (rc < 0)
        goto fail;
    vmseal_ttlv *root = resp->tree, *h, *x;
    const char *w = "KMIP response";
    if (vmseal_ttlv_tag(root) != VMSEAL_KMIP_TAG_RESPONSE_MESSAGE ||
        vmseal_ttlv_type_of(root) != VMSEAL_TTLV_STRUCTURE) {
        rc = vmseal_fail(EPROTO, "%s: not a Response Message but %s", w, tname(vmseal_ttlv_tag(root)));
        goto fail;
    }
    if ((rc = need(root, VMSEAL_KMIP_TAG_RESPONSE_HEADER, VMSEAL_TTLV_STRUCTURE, &h, w)) < 0 ||
        (rc = parse_version(h, &resp->version, "KMIP Response Header")) < 0 ||
        (rc = check_batch_count(root, h, &resp->count, "KMIP Response Header")) < 0)
        goto fail;
    if ((rc = maybe(h, VMSEAL_KMIP_TAG_TIME_STAMP, VMSEAL_TTLV_DATETIME, &x, w)) < 0)
        goto fail;
    if (rc == 0 && (rc = vmseal_ttlv_get_datetime(x, &resp->timestamp)) < 0)
        goto fail;
    resp->items = calloc(resp->count, sizeof(resp->items[0]));
    if (!resp->items) {
        rc = vmseal_fail(ENOMEM, "KMIP response: out of memory");
        goto fail;
    }
    size_t i = 0;
    for (vmseal_ttlv *bi = NULL; (bi = vmseal_ttlv_next(root, VMSEAL_KMIP_TAG_BATCH_ITEM, bi)); i++)
        if ((rc = parse_response_item(&resp->items[i], bi, i)) < 0)
            goto fail;
    *out = resp;
    return 0;
fail:
    vmseal_kmip_response_free(resp);
    return rc;
}

int vmseal_kmip_result_errno(const vmseal_kmip_response_item *item)
{
    if (!item)
        return vmseal_fail(EINVAL, "KMIP: no result");
    if (item->status == VMSEAL_KMIP_STATUS_SUCCESS)
        return 0;
    int e;
    switch (item->reason) {
    case VMSEAL_KMIP_REASON_ITEM_NOT_FOUND:
    case VMSEAL_KMIP_REASON_OBJECT_ARCHIVED:
        e = ENOENT;
        break;
    case VMSEAL_KMIP_REASON_PERMISSION_DENIED:
    case VMSEAL_KMIP_REASON_AUTHENTICATION_NOT_SUCCESSFUL:
        e = EACCES;
        break;
    case VMSEAL_KMIP_REASON_OPERATION_NOT_SUPPORTED:
    case VMSEAL_KMIP_REASON_FEATURE_NOT_SUPPORTED:
    case VMSEAL_KMIP_REASON_KEY_FORMAT_TYPE_NOT_SUPPORTED:
    case VMSEAL_KMIP_REASON_KEY_COMPRESSION_TYPE_NOT_SUPPORTED:
    case VMSEAL_KMIP_REASON_APPLICATION_NAMESPACE_NOT_SUPPORTED:
        e = ENOTSUP;
        break;
    case VMSEAL_KMIP_REASON_INVALID_MESSAGE:
    case VMSEAL_KMIP_REASON_INVALID_FIELD:
    case VMSEAL_KMIP_REASON_MISSING_DATA:
    case VMSEAL_KMIP_REASON_INDEX_OUT_OF_BOUNDS:
    case VMSEAL_KMIP_REASON_ENCODING_OPTION_ERROR:
        e = EINVAL;
        break;
    case VMSEAL_KMIP_REASON_ILLEGAL_OPERATION:
    case VMSEAL_KMIP_REASON_SENSITIVE:
    case VMSEAL_KMIP_REASON_NOT_EXTRACTABLE:
        e = EPERM;
        break;
    case VMSEAL_KMIP_REASON_RESPONSE_TOO_LARGE:
        e = EMSGSIZE;
        break;
    case VMSEAL_KMIP_REASON_CRYPTOGRAPHIC_FAILURE:
        e = EIO;
        break;
    case VMSEAL_KMIP_REASON_OBJECT_ALREADY_EXISTS:
        e = EEXIST;
        break;
    case VMSEAL_KMIP_REASON_OPERATION_CANCELED_BY_REQUESTER:
        e = ECANCELED;
        break;
    default:
        e = EREMOTEIO;
        break;
    }
    const char *rname = vmseal_kmip_enum_name(VMSEAL_KMIP_TAG_RESULT_REASON, item->reason);
    const char *sname = vmseal_kmip_enum_name(VMSEAL_KMIP_TAG_RESULT_STATUS, item->status);
    char rbuf[32];
    if (!rname) {
        snprintf(rbuf, sizeof(rbuf), "Result Reason 0x%X", item->reason);
        rname = item->reason ? rbuf : (sname ? sname : "Operation Failed");
    }
    if (item->message && *item->message)
        return vmseal_fail(e, "%s: %s", rname, item->message);
    return vmseal_fail(e, "%s", rname);
}
