/* One client connection: TLS handshake (failures logged with the plain
 * reason and the peer address), identity from the client certificate, then
 * request messages read with length checks and answered batch item by batch
 * item (Batch Error Continuation Option honoured, one audit line each).
 *
 * Locked memory one client can make the server hold is bounded: a message
 * buffer grows only with the bytes that arrived (large ones from 3/4 of
 * max_locked_memory at most), batch items and key-material values are
 * counted on the raw bytes before decoding (max_batch_items, half of
 * max_connection_secrets), and every secret of the connection's thread is
 * charged to its quota (max_connection_locked_memory, max_connection_secrets).
 * Nothing is held between requests. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include <vmseal/kmip_msg.h>
#include <vmseal/tls.h>

#include "audit.h"
#include "log.h"
#include "ops.h"

#define WRITE_TIMEOUT_MS 30000
#define BODY_TIMEOUT_MS 30000
/* A message is read into a secure buffer of at most this size first; a
 * larger one grows by doubling as its bytes arrive. */
#define FIRST_BUF 16384

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Message buffers beyond FIRST_BUF may use at most 3/4 of the server's
 * secure memory: the last quarter stays for ordinary requests, so clients
 * sending large messages cannot starve the others. */
static int large_buffer_allowed(size_t more)
{
    size_t lim = vmseal_secret_limit();
    return !lim || vmseal_secret_in_use() + more <= lim / 4 * 3;
}

/* Read one message into a secure buffer (*msg, *len bytes). The buffer
 * holds at most twice the bytes that actually arrived (or FIRST_BUF), so a
 * client announcing a large message and then stalling pins little locked
 * memory. 0 with *msg NULL: the peer closed cleanly between messages. */
static int recv_message(kmsd_server *srv, SSL *ssl, vmseal_secret **msg, size_t *len)
{
    *msg = NULL;
    *len = 0;
    uint8_t hdr[8]; /* tag, type, length: no key material */
    int r = vmseal_tls_read_full(ssl, hdr, sizeof(hdr), srv->cfg->idle_timeout_ms);
    if (r <= 0)
        return r;
    size_t total;
    r = vmseal_ttlv_frame_len(hdr, srv->cfg->max_message_size, &total);
    if (r < 0)
        return r;
    int64_t deadline = now_ms() + BODY_TIMEOUT_MS;
    size_t cap = total < FIRST_BUF ? total : FIRST_BUF;
    vmseal_secret *b = vmseal_secret_new(cap);
    if (!b)
        return vmseal_fail(errno, "no secure memory for a %zu-byte message: %s", total,
                           vmseal_last_error());
    memcpy(vmseal_secret_data(b), hdr, sizeof(hdr));
    size_t got = sizeof(hdr);
    while (got < total) {
        if (got == cap) {
            size_t ncap = cap < total / 2 ? cap * 2 : total;
            vmseal_secret *nb = NULL;
            if (!large_buffer_allowed(ncap))
                r = vmseal_fail(EBUSY, "server busy: the secure memory for large messages is "
                                "in use (%zu-byte message); try again later", total);
            else if (!(nb = vmseal_secret_new(ncap)))
                r = vmseal_fail(errno, "no secure memory for a %zu-byte message: %s", total,
                                vmseal_last_error());
            if (!nb) {
                vmseal_secret_free(b);
                return r;
            }
            memcpy(vmseal_secret_data(nb), vmseal_secret_cdata(b), got);
            vmseal_secret_free(b);
            b = nb;
            cap = ncap;
        }
        int64_t left = deadline - now_ms();
        r = left > 0 ? vmseal_tls_read_full(ssl, vmseal_secret_data(b) + got, cap - got, (int)left)
                     : vmseal_fail(ETIMEDOUT, "a %zu-byte message took longer than %d ms", total,
                                   BODY_TIMEOUT_MS);
        if (r >= 0 && (size_t)r != cap - got)
            r = vmseal_fail(ECONNRESET, "connection closed inside a %zu-byte message", total);
        if (r < 0) {
            vmseal_secret_free(b);
            return r;
        }
        got = cap;
    }
    *msg = b;
    *len = total;
    return 0;
}

/* Encode, free the tree (its key material goes before the write may
 * block on a slow reader), send, wipe. plain_ok: the message holds no key
 * material, so it may be encoded in ordinary memory when secure memory is
 * short (error answers). */
static int send_message(SSL *ssl, vmseal_ttlv *resp, int plain_ok)
{
    vmseal_secret *enc = NULL;
    uint8_t *plain = NULL;
    size_t n = 0;
    int r = vmseal_ttlv_encode_secret(resp, &enc);
    if (r < 0 && plain_ok)
        r = vmseal_ttlv_encode(resp, &plain, &n);
    vmseal_ttlv_free(resp);
    if (r < 0)
        return r;
    const uint8_t *p = enc ? vmseal_secret_cdata(enc) : plain;
    if (enc)
        n = vmseal_secret_len(enc);
    r = vmseal_tls_write_full(ssl, p, n, WRITE_TIMEOUT_MS);
    vmseal_secret_free(enc);
    vmseal_ttlv_buf_free(plain, n);
    return r < 0 ? r : 0;
}

static kmsd_op_fn find_op(uint32_t operation)
{
    for (size_t i = 0; i < kmsd_n_ops; i++)
        if (kmsd_ops[i].operation == operation)
            return kmsd_ops[i].fn;
    return NULL;
}

static const char *op_name(uint32_t operation, char *buf, size_t len)
{
    const char *n = vmseal_kmip_enum_name(VMSEAL_KMIP_TAG_OPERATION, operation);
    if (n)
        return n;
    snprintf(buf, len, "0x%08x", operation);
    return buf;
}

static void audit_item(const kmsd_op *op, const char *name, int ok)
{
    char reason[400] = "";
    if (!ok) {
        const char *rn = vmseal_kmip_enum_name(VMSEAL_KMIP_TAG_RESULT_REASON, op->reason);
        snprintf(reason, sizeof(reason), "%s: %s", rn ? rn : "?", op->message);
    }
    kmsd_audit(op->peer, op->identity, name, op->uid, ok ? "Success" : "Failed", reason);
}

/* Check the request's Authentication against the configured users. */
static int check_auth(kmsd_server *srv, const vmseal_kmip_request *req, char *why, size_t len)
{
    if (!req->credential_type) {
        if (srv->cfg->require_credential) {
            snprintf(why, len, "a username and password are required");
            return -1;
        }
        return 0;
    }
    if (req->credential_type != VMSEAL_KMIP_CRED_USERNAME_AND_PASSWORD) {
        snprintf(why, len, "only Username and Password credentials are supported");
        return -1;
    }
    if (!req->username || !req->password ||
        kmsd_config_check_password(srv->cfg, req->username, req->password,
                                   strlen(req->password)) < 0) {
        snprintf(why, len, "wrong username or password");
        return -1;
    }
    return 0;
}

/* ---- limits checked on the raw bytes, before decoding --------------------
 * The decoder keeps every key-material value (Key Material, Password, ...)
 * in a secure buffer of its own (at least one locked page each), so a
 * request of thousands of tiny such values would pin a lot of locked memory
 * before any handler runs. Count batch items and those values first. */

#define SCAN_MAX_DEPTH 32 /* deeper messages are refused by the decoder anyway */

typedef struct req_scan {
    size_t batch_items;
    size_t secrets;           /* variable-length values the decoder keeps in secure memory */
    vmseal_kmip_version version; /* from the Request Header, when readable */
} req_scan;

static uint32_t scan_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Walk the items of one structure's value p[0..len); stop quietly at
 * anything malformed (the decoder will say what is wrong). path holds the
 * tags from the root down to this structure. */
static void scan_struct(const uint8_t *p, size_t len, unsigned depth, int sensitive,
                        uint32_t path[SCAN_MAX_DEPTH], req_scan *sc)
{
    size_t off = 0;
    while (len - off >= 8) {
        const uint8_t *it = p + off;
        uint32_t tag = (uint32_t)it[0] << 16 | (uint32_t)it[1] << 8 | it[2];
        unsigned type = it[3];
        uint32_t vlen = scan_be32(it + 4);
        size_t padded = ((size_t)vlen + 7) & ~(size_t)7;
        if (padded > len - off - 8)
            return;
        int sens = sensitive || vmseal_kmip_tag_is_sensitive(tag);
        if (depth == 1 && tag == VMSEAL_KMIP_TAG_BATCH_ITEM)
            sc->batch_items++;
        if (type == VMSEAL_TTLV_STRUCTURE) {
            if (depth + 1 < SCAN_MAX_DEPTH) {
                path[depth] = tag;
                scan_struct(it + 8, vlen, depth + 1, sens, path, sc);
            }
        } else if (type == VMSEAL_TTLV_TEXT || type == VMSEAL_TTLV_BYTES ||
                   type == VMSEAL_TTLV_BIGINT) {
            sc->secrets += sens;
        } else if (type == VMSEAL_TTLV_INTEGER && vlen == 4 && depth == 3 &&
                   path[1] == VMSEAL_KMIP_TAG_REQUEST_HEADER &&
                   path[2] == VMSEAL_KMIP_TAG_PROTOCOL_VERSION) {
            if (tag == VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MAJOR)
                sc->version.major = (int32_t)scan_be32(it + 8);
            else if (tag == VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MINOR)
                sc->version.minor = (int32_t)scan_be32(it + 8);
        }
        off += 8 + padded;
    }
}

static void scan_request(const uint8_t *buf, size_t len, req_scan *sc)
{
    *sc = (req_scan){.version = {1, 0}};
    uint32_t path[SCAN_MAX_DEPTH] = {0};
    if (len < 8 || buf[3] != VMSEAL_TTLV_STRUCTURE)
        return;
    size_t vlen = scan_be32(buf + 4);
    path[0] = (uint32_t)buf[0] << 16 | (uint32_t)buf[1] << 8 | buf[2];
    if (path[0] == VMSEAL_KMIP_TAG_REQUEST_MESSAGE && vlen <= len - 8)
        scan_struct(buf + 8, vlen, 1, 0, path, sc);
    if (!vmseal_kmip_version_supported(&sc->version))
        sc->version = (vmseal_kmip_version){1, 0};
}

/* A refused request: Invalid Message for the whole message, logged and audited. */
static vmseal_ttlv *refuse_request(const char *identity, const char *peer,
                                   const vmseal_kmip_version *v, uint32_t reason, const char *why)
{
    kmsd_warn("request from %s (%s) refused: %s", peer, identity, why);
    kmsd_audit(peer, identity, "-", "", "Failed", why);
    return vmseal_kmip_error_response(v, reason, why);
}

vmseal_ttlv *kmsd_process_message(kmsd_server *srv, const char *identity, const char *peer,
                                  const uint8_t *buf, size_t len)
{
    vmseal_kmip_request *req;
    vmseal_kmip_version seen = {1, 0};
    vmseal_ttlv_limits limits = {.max_size = srv->cfg->max_message_size};
    const kmsd_config *cfg = srv->cfg;
    req_scan sc;
    scan_request(buf, len, &sc);
    char why[300];
    if (sc.batch_items > (size_t)cfg->max_batch_items) {
        snprintf(why, sizeof(why), "the request has %zu batch items; at most %d are accepted "
                 "(max_batch_items)", sc.batch_items, cfg->max_batch_items);
        return refuse_request(identity, peer, &sc.version, VMSEAL_KMIP_REASON_INVALID_MESSAGE, why);
    }
    if (sc.secrets > cfg->max_connection_secrets / 2) {
        snprintf(why, sizeof(why), "the request carries %zu key-material values; at most %zu "
                 "are accepted (half of max_connection_secrets)", sc.secrets,
                 cfg->max_connection_secrets / 2);
        return refuse_request(identity, peer, &sc.version, VMSEAL_KMIP_REASON_INVALID_MESSAGE, why);
    }
    vmseal_secret_quota *quota = vmseal_secret_quota_current();
    unsigned long refused = vmseal_secret_quota_refusals(quota);
    int r = vmseal_kmip_request_parse(buf, len, &limits, &req, &seen);
    if (r < 0) {
        uint32_t reason = VMSEAL_KMIP_REASON_INVALID_MESSAGE;
        if (vmseal_secret_quota_refusals(quota) != refused) {
            snprintf(why, sizeof(why), "decoding the request needs more secure memory than one "
                     "connection may hold (max_connection_locked_memory %zu bytes, "
                     "max_connection_secrets %zu)", cfg->max_connection_locked_memory,
                     cfg->max_connection_secrets);
            reason = VMSEAL_KMIP_REASON_GENERAL_FAILURE;
        } else if (r == -ENOMEM) {
            snprintf(why, sizeof(why), "no secure memory to decode the request; try again later");
            reason = VMSEAL_KMIP_REASON_GENERAL_FAILURE;
        } else {
            snprintf(why, sizeof(why), "%s", vmseal_last_error());
        }
        return refuse_request(identity, peer, &seen, reason, why);
    }
    vmseal_ttlv *resp = vmseal_kmip_response_new(&req->version, 0);
    char auth_why[128];
    int auth_ok = check_auth(srv, req, auth_why, sizeof(auth_why)) == 0;
    int version_ok = vmseal_kmip_version_supported(&req->version);
    kmsd_op op = {.srv = srv, .identity = identity, .peer = peer,
                  .admin = kmsd_config_is_admin(srv->cfg, identity), .version = req->version};
    int stop = 0;
    for (size_t i = 0; i < req->count && !stop && resp; i++) {
        const vmseal_kmip_request_item *it = &req->items[i];
        char nb[16];
        const char *name = op_name(it->operation, nb, sizeof(nb));
        op.reason = 0;
        op.message[0] = '\0';
        op.uid[0] = '\0';
        vmseal_ttlv *payload = vmseal_ttlv_struct(VMSEAL_KMIP_TAG_RESPONSE_PAYLOAD);
        kmsd_op_fn fn = find_op(it->operation);
        int rc;
        if (!payload) {
            rc = kmsd_op_fail(&op, VMSEAL_KMIP_REASON_GENERAL_FAILURE, "out of memory");
        } else if (!auth_ok) {
            rc = kmsd_op_fail(&op, VMSEAL_KMIP_REASON_AUTHENTICATION_NOT_SUCCESSFUL, "%s", auth_why);
        } else if (req->batch_error_option == VMSEAL_KMIP_BATCH_UNDO && req->count > 1) {
            rc = kmsd_op_fail(&op, VMSEAL_KMIP_REASON_FEATURE_NOT_SUPPORTED,
                              "Batch Error Continuation Option Undo is not supported; "
                              "use Stop or Continue");
        } else if (!version_ok && it->operation != VMSEAL_KMIP_OP_DISCOVER_VERSIONS) {
            rc = kmsd_op_fail(&op, VMSEAL_KMIP_REASON_INVALID_MESSAGE,
                              "protocol version %d.%d is not supported (1.0 to 1.4 are)",
                              req->version.major, req->version.minor);
        } else if (!fn) {
            rc = kmsd_op_fail(&op, VMSEAL_KMIP_REASON_OPERATION_NOT_SUPPORTED,
                              "operation %s is not supported by vmseal-kmsd", name);
        } else {
            rc = fn(&op, it->payload, payload);
            if (rc == 0 && vmseal_ttlv_build_error(payload))
                rc = kmsd_op_fail(&op, VMSEAL_KMIP_REASON_GENERAL_FAILURE, "building the response");
        }
        if (rc == 0) {
            vmseal_ttlv *empty = vmseal_kmip_response_add_success(resp, it);
            vmseal_ttlv *item = vmseal_ttlv_parent(empty);
            vmseal_ttlv_free(empty);
            if (!item || vmseal_ttlv_append(item, payload) < 0) {
                vmseal_ttlv_free(payload);
                vmseal_ttlv_free(resp);
                resp = NULL;
            }
        } else {
            vmseal_ttlv_free(payload);
            vmseal_kmip_response_add_failure(resp, it, op.reason, op.message);
            if (req->batch_error_option != VMSEAL_KMIP_BATCH_CONTINUE)
                stop = 1;
        }
        audit_item(&op, name, rc == 0);
    }
    if (resp && req->max_response_size > 0 &&
        vmseal_ttlv_encoded_len(resp) > (size_t)req->max_response_size) {
        vmseal_ttlv_free(resp);
        resp = vmseal_kmip_response_new(&req->version, 0);
        for (size_t i = 0; i < req->count && resp; i++)
            vmseal_kmip_response_add_failure(resp, &req->items[i],
                                             VMSEAL_KMIP_REASON_RESPONSE_TOO_LARGE,
                                             "the response exceeds the Maximum Response Size");
    }
    if (!resp)
        resp = vmseal_kmip_error_response(&req->version, VMSEAL_KMIP_REASON_GENERAL_FAILURE,
                                          "out of memory");
    vmseal_kmip_request_free(req);
    return resp;
}

void kmsd_session_run(kmsd_server *srv, kmsd_conn *c)
{
    SSL *ssl;
    int r = vmseal_tls_accept(srv->tls, c->fd, srv->cfg->handshake_timeout_ms, &ssl);
    if (r < 0) {
        kmsd_warn("TLS connection from %s refused: %s", c->peer, vmseal_last_error());
        return; /* the fd is closed */
    }
    char identity[KMSD_IDENTITY_MAX];
    if (vmseal_tls_peer_subject(ssl, identity, sizeof(identity)) < 0) {
        kmsd_warn("TLS connection from %s refused: no verified client certificate", c->peer);
        vmseal_tls_close(ssl);
        return;
    }
    if (kmsd_conn_set_open(srv, c, 1) < 0) {
        vmseal_tls_close(ssl);
        return;
    }
    kmsd_debug("connection from %s: %s (%s%s)", c->peer, identity, SSL_get_version(ssl),
               SSL_session_reused(ssl) ? ", resumed" : "");
    /* what this connection may hold in secure memory at once */
    vmseal_secret_quota *quota = vmseal_secret_quota_new(srv->cfg->max_connection_locked_memory,
                                                         srv->cfg->max_connection_secrets);
    if (!quota) {
        kmsd_warn("connection from %s dropped: out of memory", c->peer);
        goto done;
    }
    vmseal_secret_quota *prev_quota = vmseal_secret_quota_enter(quota);
    for (;;) {
        vmseal_secret *msg = NULL;
        size_t len;
        r = recv_message(srv, ssl, &msg, &len);
        if (r == 0 && !msg)
            break;
        if (r == -EPROTO || r == -EMSGSIZE || r == -ENOMEM || r == -EDQUOT || r == -EBUSY) {
            /* the stream cannot be resynchronised: answer, then close */
            char why[300];
            snprintf(why, sizeof(why), "%s", vmseal_last_error());
            int bad = r == -EPROTO || r == -EMSGSIZE;
            kmsd_warn("%s from %s (%s): %s; closing", bad ? "bad message" : "message refused",
                      c->peer, identity, why);
            kmsd_audit(c->peer, identity, "-", "", "Failed", why);
            vmseal_ttlv *e = vmseal_kmip_error_response(
                NULL, bad ? VMSEAL_KMIP_REASON_INVALID_MESSAGE : VMSEAL_KMIP_REASON_GENERAL_FAILURE,
                why);
            if (e && send_message(ssl, e, 1) < 0)
                kmsd_debug("connection from %s: cannot send the error", c->peer);
            break;
        }
        if (r < 0) {
            if (r == -ETIMEDOUT)
                kmsd_debug("connection from %s idle: closing", c->peer);
            else if (!atomic_load(&srv->stopping))
                kmsd_debug("connection from %s: %s", c->peer, vmseal_last_error());
            break;
        }
        vmseal_ttlv *resp = kmsd_process_message(srv, identity, c->peer,
                                                 vmseal_secret_cdata(msg), len);
        vmseal_secret_free(msg);
        r = resp ? send_message(ssl, resp, 0) : -ENOMEM;
        if (r < 0) {
            kmsd_debug("connection from %s: sending failed: %s", c->peer, vmseal_last_error());
            break;
        }
        if (atomic_load(&srv->stopping))
            break;
    }
    vmseal_secret_quota_enter(prev_quota);
    vmseal_secret_quota_free(quota);
done:
    (void)kmsd_conn_set_open(srv, c, 0);
    vmseal_tls_close(ssl);
}
