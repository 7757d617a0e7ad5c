/* vmseal — KMIP messages: request/response headers and batch items over the
 * TTLV codec (include/vmseal/kmip.h), for both the server and the client,
 * protocol versions 1.0–1.4; plus framing over a TLS connection.
 *
 * Server side:
 *   vmseal_kmip_request *req;
 *   vmseal_kmip_version seen;
 *   int rc = vmseal_kmip_request_parse(buf, len, NULL, &req, &seen);
 *   if (rc < 0)   // malformed: answer Invalid Message, echoing what we saw
 *       resp = vmseal_kmip_error_response(&seen, VMSEAL_KMIP_REASON_INVALID_MESSAGE,
 *                                         vmseal_last_error());
 *   else {
 *       resp = vmseal_kmip_response_new(&req->version, 0);
 *       for (size_t i = 0; i < req->count; i++) {
 *           vmseal_ttlv *out = vmseal_kmip_response_add_success(resp, &req->items[i]);
 *           vmseal_ttlv_add_text(out, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, "1");
 *           // or vmseal_kmip_response_add_failure(resp, &req->items[i], reason, "why");
 *       }
 *   }
 *   vmseal_kmip_send(ssl, resp, timeout_ms);
 *
 * Client side: vmseal_kmip_request_new() + vmseal_kmip_request_add() per
 * batch item (returns the Request Payload to fill), then
 * vmseal_kmip_response_parse() on the answer.
 *
 * The parsed views (vmseal_kmip_request, vmseal_kmip_response) point into
 * their TTLV tree, which they own; everything is freed together.
 */
#ifndef VMSEAL_KMIP_MSG_H
#define VMSEAL_KMIP_MSG_H

#include <openssl/ssl.h>

#include <vmseal/kmip.h>

typedef struct vmseal_kmip_version {
    int32_t major, minor;
} vmseal_kmip_version;

/* 1.0 through 1.4. */
bool vmseal_kmip_version_supported(const vmseal_kmip_version *v);

/* ---- requests (server: parse; client: build) ----------------------------- */

typedef struct vmseal_kmip_request_item {
    uint32_t operation;         /* VMSEAL_KMIP_OP_* */
    const uint8_t *ubi;         /* Unique Batch Item ID, NULL when absent */
    size_t ubi_len;
    vmseal_ttlv *payload;       /* Request Payload structure */
    vmseal_ttlv *extension;     /* Message Extension, NULL when absent */
    vmseal_ttlv *item;          /* the whole Batch Item */
} vmseal_kmip_request_item;

typedef struct vmseal_kmip_request {
    vmseal_ttlv *tree;                 /* Request Message (owned) */
    vmseal_kmip_version version;
    int32_t max_response_size;         /* 0 when absent */
    bool async_indicator;              /* Asynchronous Indicator (false when absent) */
    /* Authentication: credential_type 0 when absent. For Username and
     * Password, username/password point into the tree (password NULL when
     * absent); other types: read `credential` yourself. */
    uint32_t credential_type;
    const char *username;
    const char *password;
    vmseal_ttlv *credential;           /* the Credential structure */
    bool batch_order;                  /* Batch Order Option (default true) */
    uint32_t batch_error_option;       /* Batch Error Continuation Option (default Stop) */
    int64_t timestamp;                 /* Time Stamp, 0 when absent */
    size_t count;                      /* == Batch Count == number of Batch Items */
    vmseal_kmip_request_item *items;
} vmseal_kmip_request;

/* Decode and validate a Request Message: a Request Header with Protocol
 * Version and a Batch Count equal to the number of Batch Items (at least
 * one), each with an Operation and a Request Payload, Unique Batch Item IDs
 * present (and distinct) when there is more than one item, no duplicated
 * single-valued fields. -EPROTO (or -EMSGSIZE) when malformed; then *seen (may
 * be NULL) holds the client's protocol version if it could be read, else 1.0,
 * so the error response can echo it. limits may be NULL. */
int vmseal_kmip_request_parse(const uint8_t *buf, size_t len, const vmseal_ttlv_limits *limits,
                              vmseal_kmip_request **out, vmseal_kmip_version *seen)
    VMSEAL_MUST_CHECK;
void vmseal_kmip_request_free(vmseal_kmip_request *req);

/* Client: a Request Message with a header (Protocol Version, Batch Count,
 * optional Maximum Response Size and Username/Password Authentication). */
typedef struct vmseal_kmip_request_opts {
    int32_t max_response_size;   /* 0: not sent */
    const char *username;        /* NULL: no Authentication */
    const char *password;        /* NULL: Username only */
    bool timestamp;              /* send a Time Stamp */
    uint32_t batch_error_option; /* VMSEAL_KMIP_BATCH_*; 0: not sent (the server's default, Stop) */
} vmseal_kmip_request_opts;
vmseal_ttlv *vmseal_kmip_request_new(const vmseal_kmip_version *v, const vmseal_kmip_request_opts *opts);
/* Append a Batch Item (Operation + optional Unique Batch Item ID), keep
 * Batch Count in step, and return its empty Request Payload. */
vmseal_ttlv *vmseal_kmip_request_add(vmseal_ttlv *request, uint32_t operation, const void *ubi,
                                     size_t ubi_len);

/* ---- responses (server: build; client: parse) ---------------------------- */

/* A Response Message with a Response Header (Protocol Version v — echo the
 * client's —, Time Stamp (0: now), Batch Count kept in step). */
vmseal_ttlv *vmseal_kmip_response_new(const vmseal_kmip_version *v, int64_t timestamp);
/* Append a successful Batch Item answering req (its Operation and Unique
 * Batch Item ID are echoed; req may be NULL) and return its empty Response
 * Payload to fill. */
vmseal_ttlv *vmseal_kmip_response_add_success(vmseal_ttlv *response, const vmseal_kmip_request_item *req);
/* Append a failed Batch Item (Result Status Operation Failed, Result Reason,
 * Result Message when message is not NULL). Returns the Batch Item. */
vmseal_ttlv *vmseal_kmip_response_add_failure(vmseal_ttlv *response, const vmseal_kmip_request_item *req,
                                              uint32_t reason, const char *message);
/* Same with any Result Status (e.g. Operation Undone). */
vmseal_ttlv *vmseal_kmip_response_add_result(vmseal_ttlv *response, const vmseal_kmip_request_item *req,
                                             uint32_t status, uint32_t reason, const char *message);
/* A whole response for a message that could not be parsed: one Batch Item
 * without Operation, Operation Failed + reason (usually Invalid Message).
 * v NULL: 1.0. */
vmseal_ttlv *vmseal_kmip_error_response(const vmseal_kmip_version *v, uint32_t reason, const char *message);

typedef struct vmseal_kmip_response_item {
    uint32_t operation;          /* 0 when the server sent none */
    const uint8_t *ubi;          /* NULL when absent */
    size_t ubi_len;
    uint32_t status;             /* VMSEAL_KMIP_STATUS_* */
    uint32_t reason;             /* 0 when absent */
    const char *message;         /* "" when absent */
    vmseal_ttlv *payload;        /* Response Payload, NULL when absent */
    vmseal_ttlv *item;
} vmseal_kmip_response_item;

typedef struct vmseal_kmip_response {
    vmseal_ttlv *tree;           /* Response Message (owned) */
    vmseal_kmip_version version;
    int64_t timestamp;
    size_t count;                /* number of Batch Items (Batch Count is checked) */
    vmseal_kmip_response_item *items;
} vmseal_kmip_response;

/* Decode and validate a Response Message. -EPROTO when malformed. */
int vmseal_kmip_response_parse(const uint8_t *buf, size_t len, const vmseal_ttlv_limits *limits,
                               vmseal_kmip_response **out) VMSEAL_MUST_CHECK;
void vmseal_kmip_response_free(vmseal_kmip_response *resp);

/* Map a failed item to a negative errno and set vmseal_last_error() to
 * "<Result Reason name>: <Result Message>" (e.g. "Item Not Found: ..."):
 *   Item Not Found -ENOENT, Permission Denied / Authentication Not
 *   Successful -EACCES, Operation Not Supported / Feature Not Supported /
 *   Key Format Type Not Supported ... -ENOTSUP, Invalid Message / Invalid
 *   Field / Missing Data -EINVAL, Illegal Operation -EPERM, Response Too
 *   Large -EMSGSIZE, Cryptographic Failure -EIO, Object Already Exists
 *   -EEXIST, Object Archived -ENOENT, others -EREMOTEIO.
 * Returns 0 for Success. */
int vmseal_kmip_result_errno(const vmseal_kmip_response_item *item);

/* ---- framing over TLS ---------------------------------------------------- */

/* Read one whole TTLV message (8-byte header, then the rest) into secure
 * memory. Returns 0 with *msg set, 0 with *msg NULL on a clean close before
 * any byte, or: -EPROTO when the header is not a KMIP structure and
 * -EMSGSIZE when it announces more than max_size bytes (0: 1 MiB) — the
 * stream cannot be resynchronised then, close the connection — and
 * -ETIMEDOUT / -ECONNRESET / ... from the transport. */
int vmseal_kmip_recv(SSL *ssl, size_t max_size, int timeout_ms, vmseal_secret **msg) VMSEAL_MUST_CHECK;
/* Encode and write a message (wiping the encoding afterwards). */
int vmseal_kmip_send(SSL *ssl, const vmseal_ttlv *msg, int timeout_ms) VMSEAL_MUST_CHECK;

#endif
