/* One client connection: TLS handshake (failures logged with the plain
 * reason and the peer address), identity from the client certificate, then
 * request messages read with length checks and answered batch item by batch
 * item (Batch Error Continuation Option honoured, one audit line each). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include <vmseal/kmip_msg.h>
#include <vmseal/tls.h>

#include "audit.h"
#include "log.h"
#include "ops.h"

#define WRITE_TIMEOUT_MS 30000
#define BODY_TIMEOUT_MS 30000
#define IOBUF_SIZE 65536

/* Read one message into the connection's secure buffer (or, when larger, a
 * secret of its own in *big). 0 with *len 0: the peer closed cleanly. */
static int recv_message(kmsd_server *srv, SSL *ssl, vmseal_secret *iobuf, vmseal_secret **big,
                        const uint8_t **data, size_t *len)
{
    *big = NULL;
    *data = NULL;
    *len = 0;
    uint8_t *b = vmseal_secret_data(iobuf);
    int r = vmseal_tls_read_full(ssl, b, 8, srv->cfg->idle_timeout_ms);
    if (r <= 0)
        return r;
    size_t total;
    r = vmseal_ttlv_frame_len(b, srv->cfg->max_message_size, &total);
    if (r < 0)
        return r;
    if (total > vmseal_secret_len(iobuf)) {
        *big = vmseal_secret_new(total);
        if (!*big)
            return vmseal_fail(ENOMEM, "no secure memory for a %zu-byte message", total);
        memcpy(vmseal_secret_data(*big), b, 8);
        b = vmseal_secret_data(*big);
    }
    r = vmseal_tls_read_full(ssl, b + 8, total - 8, BODY_TIMEOUT_MS);
    if (r >= 0 && (size_t)r != total - 8)
        r = vmseal_fail(ECONNRESET, "connection closed inside a %zu-byte message", total);
    if (r < 0) {
        vmseal_secret_free(*big);
        *big = NULL;
        return r;
    }
    *data = b;
    *len = total;
    return 0;
}

/* Encode into the connection's buffer and send; large answers go through a
 * secret of their own. The bytes are wiped afterwards. */
static int send_message(SSL *ssl, vmseal_secret *iobuf, const vmseal_ttlv *resp)
{
    size_t n;
    uint8_t *b = vmseal_secret_data(iobuf);
    int r = vmseal_ttlv_encode_into(resp, b, vmseal_secret_len(iobuf), &n);
    if (r == -ENOSPC)
        return vmseal_kmip_send(ssl, resp, WRITE_TIMEOUT_MS);
    if (r < 0)
        return r;
    r = vmseal_tls_write_full(ssl, b, n, WRITE_TIMEOUT_MS);
    OPENSSL_cleanse(b, n);
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

vmseal_ttlv *kmsd_process_message(kmsd_server *srv, const char *identity, const char *peer,
                                  const uint8_t *buf, size_t len)
{
    vmseal_kmip_request *req;
    vmseal_kmip_version seen = {1, 0};
    vmseal_ttlv_limits limits = {.max_size = srv->cfg->max_message_size};
    int r = vmseal_kmip_request_parse(buf, len, &limits, &req, &seen);
    if (r < 0) {
        char why[300];
        snprintf(why, sizeof(why), "%s", vmseal_last_error());
        kmsd_warn("invalid request from %s (%s): %s", peer, identity, why);
        kmsd_audit(peer, identity, "-", "", "Failed", why);
        return vmseal_kmip_error_response(&seen, VMSEAL_KMIP_REASON_INVALID_MESSAGE, why);
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
    vmseal_secret *iobuf = vmseal_secret_new(IOBUF_SIZE);
    if (!iobuf) {
        kmsd_warn("connection from %s dropped: no secure memory", c->peer);
        goto done;
    }
    for (;;) {
        vmseal_secret *big = NULL;
        const uint8_t *data;
        size_t len;
        r = recv_message(srv, ssl, iobuf, &big, &data, &len);
        if (r == 0 && !data)
            break;
        if (r == -EPROTO || r == -EMSGSIZE) {
            /* the stream cannot be resynchronised: answer, then close */
            char why[300];
            snprintf(why, sizeof(why), "%s", vmseal_last_error());
            kmsd_warn("bad message from %s (%s): %s; closing", c->peer, identity, why);
            kmsd_audit(c->peer, identity, "-", "", "Failed", why);
            vmseal_ttlv *e = vmseal_kmip_error_response(NULL, VMSEAL_KMIP_REASON_INVALID_MESSAGE, why);
            if (e && send_message(ssl, iobuf, e) < 0)
                kmsd_debug("connection from %s: cannot send the error", c->peer);
            vmseal_ttlv_free(e);
            break;
        }
        if (r < 0) {
            if (r == -ETIMEDOUT)
                kmsd_debug("connection from %s idle: closing", c->peer);
            else if (!atomic_load(&srv->stopping))
                kmsd_debug("connection from %s: %s", c->peer, vmseal_last_error());
            break;
        }
        vmseal_ttlv *resp = kmsd_process_message(srv, identity, c->peer, data, len);
        if (big)
            vmseal_secret_free(big);
        else
            OPENSSL_cleanse(vmseal_secret_data(iobuf), len);
        r = resp ? send_message(ssl, iobuf, resp) : -ENOMEM;
        vmseal_ttlv_free(resp);
        if (r < 0) {
            kmsd_debug("connection from %s: sending failed: %s", c->peer, vmseal_last_error());
            break;
        }
        if (atomic_load(&srv->stopping))
            break;
    }
    vmseal_secret_free(iobuf);
done:
    (void)kmsd_conn_set_open(srv, c, 0);
    vmseal_tls_close(ssl);
}
