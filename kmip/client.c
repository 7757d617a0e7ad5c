/* KMIP client: connection reuse and failover across a KMS cluster, version
 * negotiation, and the operations the manager needs. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include <vmseal/kmip_client.h>
#include <vmseal/log.h>

#include "transport_internal.h"

#define DEFAULT_PORT 5696
#define DEFAULT_CONNECT_MS 5000
#define DEFAULT_IO_MS 30000

typedef struct {
    char *host;
    int port;
    char *label;             /* "host:port" as configured */
    SSL_SESSION *session;    /* for resumption */
} server;

struct vmseal_kmip_client {
    server *servers;
    size_t n;
    SSL_CTX *ctx;
    SSL *ssl;                /* current connection, NULL when none */
    size_t cur;              /* index of the connected server */
    int used;                /* the connection already carried an exchange */
    int connect_ms, io_ms;
    vmseal_kmip_version version;
    int version_fixed;
    int negotiated;
    char *username;
    vmseal_secret *password; /* NUL-terminated */
    uint32_t ubi_counter;
};

/* ---- setup --------------------------------------------------------------- */

int vmseal_kmip_parse_server(const char *s, char *host, size_t hlen, int *port)
{
    const char *colon;
    size_t n;
    if (!s)
        return vmseal_fail(EINVAL, "KMIP server address missing");
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb)
            return vmseal_fail(EINVAL, "bad KMIP server address %.80s", s);
        n = (size_t)(rb - s - 1);
        colon = rb[1] == ':' ? rb + 1 : NULL;
        if (n == 0 || n >= hlen || (rb[1] && !colon))
            return vmseal_fail(EINVAL, "bad KMIP server address %.80s", s);
        memcpy(host, s + 1, n);
    } else {
        colon = strrchr(s, ':');
        n = colon ? (size_t)(colon - s) : strlen(s);
        if (n == 0 || n >= hlen || memchr(s, ':', n))
            return vmseal_fail(EINVAL, "bad KMIP server address %.80s (HOST[:PORT] or [V6][:PORT])", s);
        memcpy(host, s, n);
    }
    host[n] = '\0';
    for (const char *p = host; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
              *p == '-' || *p == ':' || *p == '_'))
            return vmseal_fail(EINVAL, "bad character in KMIP server host %.80s", s);
    *port = DEFAULT_PORT;
    if (colon) {
        char *end;
        errno = 0;
        long v = strtol(colon + 1, &end, 10);
        if (errno || *end || end == colon + 1 || v < 1 || v > 65535)
            return vmseal_fail(EINVAL, "bad port in KMIP server address %.80s", s);
        *port = (int)v;
    }
    return 0;
}

static int parse_server(const char *s, server *out)
{
    char host[256];
    int port;
    int rc = vmseal_kmip_parse_server(s, host, sizeof(host), &port);
    if (rc < 0)
        return rc;
    size_t hlen = strlen(host);
    out->host = strndup(host, hlen);
    out->label = strdup(s);
    out->port = port;
    if (!out->host || !out->label)
        return vmseal_fail(ENOMEM, "KMIP client: out of memory");
    return 0;
}

void vmseal_kmip_client_free(vmseal_kmip_client *c)
{
    if (!c)
        return;
    vmseal_kmip_client_disconnect(c);
    for (size_t i = 0; i < c->n; i++) {
        free(c->servers[i].host);
        free(c->servers[i].label);
        if (c->servers[i].session)
            SSL_SESSION_free(c->servers[i].session);
    }
    free(c->servers);
    if (c->ctx)
        SSL_CTX_free(c->ctx);
    free(c->username);
    vmseal_secret_free(c->password);
    free(c);
}

int vmseal_kmip_client_new(const vmseal_kmip_client_config *cfg, vmseal_kmip_client **out)
{
    *out = NULL;
    if (!cfg || !cfg->servers || cfg->n_servers == 0)
        return vmseal_fail(EINVAL, "KMIP client: no key server configured");
    if (cfg->version.major && !vmseal_kmip_version_supported(&cfg->version))
        return vmseal_fail(ENOTSUP, "KMIP client: protocol version %d.%d is not supported (1.0-1.4)",
                           cfg->version.major, cfg->version.minor);
    vmseal_kmip_client *c = calloc(1, sizeof(*c));
    if (!c)
        return vmseal_fail(ENOMEM, "KMIP client: out of memory");
    int rc = 0;
    c->servers = calloc(cfg->n_servers, sizeof(server));
    if (!c->servers) {
        rc = vmseal_fail(ENOMEM, "KMIP client: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < cfg->n_servers; i++) {
        c->n = i + 1;
        if ((rc = parse_server(cfg->servers[i], &c->servers[i])) < 0)
            goto fail;
    }
    c->ctx = vmseal_tls_client_ctx_new(&cfg->tls);
    /* Key material arrives in TLS records: OpenSSL wipes each record's
     * plaintext once read, so no copy of a KEK stays in its buffers. */
    if (c->ctx)
        SSL_CTX_set_options(c->ctx, SSL_OP_CLEANSE_PLAINTEXT);
    if (!c->ctx) {
        rc = -EINVAL;
        vmseal_fail(EINVAL, "KMIP client: %s", vmseal_last_error());
        goto fail;
    }
    c->connect_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : DEFAULT_CONNECT_MS;
    c->io_ms = cfg->io_timeout_ms > 0 ? cfg->io_timeout_ms : DEFAULT_IO_MS;
    if (cfg->version.major) {
        c->version = cfg->version;
        c->version_fixed = 1;
    }
    if (cfg->username && !(c->username = strdup(cfg->username))) {
        rc = vmseal_fail(ENOMEM, "KMIP client: out of memory");
        goto fail;
    }
    if (cfg->password) {
        size_t pl = strlen(cfg->password);
        if ((rc = vmseal_secret_from(cfg->password, pl + 1, &c->password)) < 0)
            goto fail;
    }
    *out = c;
    return 0;
fail:
    vmseal_kmip_client_free(c);
    return rc;
}

const char *vmseal_kmip_client_server(const vmseal_kmip_client *c)
{
    return c && c->ssl ? c->servers[c->cur].label : NULL;
}

vmseal_kmip_version vmseal_kmip_client_version(const vmseal_kmip_client *c)
{
    return c ? c->version : (vmseal_kmip_version){0, 0};
}

size_t vmseal_kmip_client_n_servers(const vmseal_kmip_client *c)
{
    return c ? c->n : 0;
}

int vmseal_kmip_client_current(const vmseal_kmip_client *c)
{
    return c && c->ssl ? (int)c->cur : -1;
}

const char *vmseal_kmip_client_server_label(const vmseal_kmip_client *c, size_t i)
{
    return c && i < c->n ? c->servers[i].label : NULL;
}

void vmseal_kmip_client_disconnect(vmseal_kmip_client *c)
{
    if (!c || !c->ssl)
        return;
    server *s = &c->servers[c->cur];
    SSL_SESSION *sess = SSL_get1_session(c->ssl);
    if (sess) {
        if (s->session)
            SSL_SESSION_free(s->session);
        s->session = SSL_SESSION_is_resumable(sess) ? sess : NULL;
        if (!s->session)
            SSL_SESSION_free(sess);
    }
    kmip_close_nosigpipe(c->ssl);
    c->ssl = NULL;
    c->used = 0;
}

/* Drop a broken connection without trying to resume it later. */
static void drop_connection(vmseal_kmip_client *c)
{
    if (!c->ssl)
        return;
    server *s = &c->servers[c->cur];
    if (s->session) {
        SSL_SESSION_free(s->session);
        s->session = NULL;
    }
    kmip_close_nosigpipe(c->ssl);
    c->ssl = NULL;
    c->used = 0;
}

/* ---- one exchange on the current connection ------------------------------ */

static vmseal_kmip_request_opts request_opts(const vmseal_kmip_client *c)
{
    vmseal_kmip_request_opts o = {0};
    o.username = c->username;
    o.password = c->password ? (const char *)vmseal_secret_cdata(c->password) : NULL;
    return o;
}

/* Send encoded bytes, read and parse the answer. Transport errors are
 * returned as they are (the caller decides about failover). */
static int exchange_io(vmseal_kmip_client *c, const vmseal_secret *req, vmseal_kmip_response **out)
{
    *out = NULL;
    int rc = vmseal_tls_write_full(c->ssl, vmseal_secret_cdata(req), vmseal_secret_len(req), c->io_ms);
    if (rc < 0)
        return rc;
    vmseal_secret *msg = NULL;
    rc = vmseal_kmip_recv(c->ssl, 0, c->io_ms, &msg);
    if (rc < 0)
        return rc;
    if (!msg)
        return vmseal_fail(ECONNRESET, "KMIP: %s closed the connection without answering",
                           c->servers[c->cur].label);
    c->used = 1;
    rc = vmseal_kmip_response_parse(vmseal_secret_cdata(msg), vmseal_secret_len(msg), NULL, out);
    vmseal_secret_free(msg);
    if (rc < 0)
        return vmseal_fail(EPROTO, "KMIP: bad response from %s: %s", c->servers[c->cur].label,
                           vmseal_last_error());
    return 0;
}

static int exchange(vmseal_kmip_client *c, const vmseal_secret *req, vmseal_kmip_response **out)
{
    kmip_sigpipe_guard g;
    kmip_sigpipe_block(&g);
    int rc = exchange_io(c, req, out);
    kmip_sigpipe_restore(&g);
    return rc;
}

/* Discover Versions on a fresh connection: highest common 1.0-1.4. */
static int negotiate(vmseal_kmip_client *c)
{
    vmseal_kmip_version v11 = {1, 1};
    vmseal_kmip_request_opts o = request_opts(c);
    vmseal_ttlv *m = vmseal_kmip_request_new(&v11, &o);
    vmseal_ttlv *p = vmseal_kmip_request_add(m, VMSEAL_KMIP_OP_DISCOVER_VERSIONS, NULL, 0);
    for (int minor = 4; minor >= 0; minor--) {
        vmseal_ttlv *pv = vmseal_ttlv_add_struct(p, VMSEAL_KMIP_TAG_PROTOCOL_VERSION);
        vmseal_ttlv_add_int(pv, VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MAJOR, 1);
        vmseal_ttlv_add_int(pv, VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MINOR, minor);
    }
    vmseal_secret *enc;
    int rc = vmseal_ttlv_encode_secret(m, &enc);
    vmseal_ttlv_free(m);
    if (rc < 0)
        return rc;
    vmseal_kmip_response *resp;
    rc = exchange(c, enc, &resp);
    vmseal_secret_free(enc);
    if (rc < 0)
        return rc;
    vmseal_kmip_version best = {1, 0}; /* a 1.0 server does not know Discover Versions */
    if (resp->count == 1 && resp->items[0].status == VMSEAL_KMIP_STATUS_SUCCESS) {
        for (vmseal_ttlv *pv = NULL;
             (pv = vmseal_ttlv_next(resp->items[0].payload, VMSEAL_KMIP_TAG_PROTOCOL_VERSION, pv));) {
            vmseal_kmip_version v;
            if (vmseal_ttlv_find_int(pv, VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MAJOR, &v.major) == 0 &&
                vmseal_ttlv_find_int(pv, VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MINOR, &v.minor) == 0 &&
                vmseal_kmip_version_supported(&v)) {
                best = v; /* the server lists its preferred version first */
                break;
            }
        }
    }
    vmseal_kmip_response_free(resp);
    c->version = best;
    c->negotiated = 1;
    return 0;
}

/* Append "; label: reason" to a bounded error summary. */
static void note_failure(char *buf, size_t cap, const char *label)
{
    size_t l = strlen(buf);
    if (l + 4 < cap)
        snprintf(buf + l, cap - l, "%s%s: %s", l ? "; " : "", label, vmseal_last_error());
}

static int connect_server(vmseal_kmip_client *c, size_t i)
{
    server *s = &c->servers[i];
    SSL *ssl = NULL;
    kmip_sigpipe_guard g;
    kmip_sigpipe_block(&g);
    int rc = vmseal_tls_connect(c->ctx, s->host, s->port, c->connect_ms, s->session, &ssl);
    if (rc < 0 && s->session) {
        /* A stale session must not cost us the server. */
        SSL_SESSION_free(s->session);
        s->session = NULL;
        rc = vmseal_tls_connect(c->ctx, s->host, s->port, c->connect_ms, NULL, &ssl);
    }
    kmip_sigpipe_restore(&g);
    if (rc < 0)
        return rc;
    c->ssl = ssl;
    c->cur = i;
    c->used = 0;
    if (!c->version_fixed && !c->negotiated) {
        rc = negotiate(c);
        if (rc < 0) {
            drop_connection(c);
            return rc;
        }
        c->used = 0; /* negotiation does not make the connection "old" */
    }
    return 0;
}

/* Connect to the first server in order that is not marked in skip[]. */
static int connect_any(vmseal_kmip_client *c, unsigned char *skip, char *errs, size_t errcap)
{
    for (size_t i = 0; i < c->n; i++) {
        if (skip[i])
            continue;
        if (connect_server(c, i) == 0)
            return 0;
        skip[i] = 1;
        note_failure(errs, errcap, c->servers[i].label);
    }
    return vmseal_fail(EHOSTUNREACH, "KMIP: no key server could be reached (%s)", errs);
}

int vmseal_kmip_client_connect(vmseal_kmip_client *c)
{
    if (!c)
        return vmseal_fail(EINVAL, "KMIP client: none");
    if (c->ssl)
        return 0;
    unsigned char *skip = calloc(c->n, 1);
    char errs[1024] = "";
    if (!skip)
        return vmseal_fail(ENOMEM, "KMIP client: out of memory");
    int rc = connect_any(c, skip, errs, sizeof(errs));
    free(skip);
    return rc;
}

static int connect_server(vmseal_kmip_client *c, size_t i);

int vmseal_kmip_client_connect_to(vmseal_kmip_client *c, size_t i)
{
    if (!c || i >= c->n)
        return vmseal_fail(EINVAL, "KMIP client: no server %zu", i + 1);
    if (c->ssl && c->cur == i)
        return 0;
    vmseal_kmip_client_disconnect(c);
    int rc = connect_server(c, i);
    if (rc < 0)
        return vmseal_fail(rc, "KMIP: %s: %s", c->servers[i].label, vmseal_last_error());
    return 0;
}

static int transport_error(int rc)
{
    return rc == -ECONNRESET || rc == -EPIPE || rc == -ETIMEDOUT || rc == -EIO || rc == -ECONNREFUSED ||
           rc == -EPROTO || rc == -ENOTCONN || rc == -ECONNABORTED || rc == -EMSGSIZE;
}

/* Check that the response answers the request item by item. */
static int match_response(const vmseal_ttlv *request, vmseal_kmip_response *resp)
{
    size_t nreq = vmseal_ttlv_count(request, VMSEAL_KMIP_TAG_BATCH_ITEM);
    if (resp->count != nreq) {
        /* PyKMIP answers a message it cannot parse with one item, no Operation. */
        if (resp->count == 1 && resp->items[0].status != VMSEAL_KMIP_STATUS_SUCCESS &&
            resp->items[0].operation == 0)
            return vmseal_kmip_result_errno(&resp->items[0]);
        return vmseal_fail(EPROTO, "KMIP: response has %zu batch items for %zu requested", resp->count, nreq);
    }
    size_t i = 0;
    for (vmseal_ttlv *bi = NULL; (bi = vmseal_ttlv_next(request, VMSEAL_KMIP_TAG_BATCH_ITEM, bi)); i++) {
        uint32_t op = 0;
        const uint8_t *ubi = NULL;
        size_t ubilen = 0;
        if (vmseal_ttlv_find_enum(bi, VMSEAL_KMIP_TAG_OPERATION, &op) < 0)
            op = 0;
        if (vmseal_ttlv_find(bi, VMSEAL_KMIP_TAG_UNIQUE_BATCH_ITEM_ID) &&
            vmseal_ttlv_find_bytes(bi, VMSEAL_KMIP_TAG_UNIQUE_BATCH_ITEM_ID, &ubi, &ubilen) < 0)
            ubi = NULL;
        const vmseal_kmip_response_item *it = &resp->items[i];
        if (it->operation && it->operation != op)
            return vmseal_fail(EPROTO, "KMIP: response item %zu is for operation 0x%X, not 0x%X", i + 1,
                               it->operation, op);
        if (it->ubi && (!ubi || it->ubi_len != ubilen || memcmp(it->ubi, ubi, ubilen) != 0))
            return vmseal_fail(EPROTO, "KMIP: response item %zu has another Unique Batch Item ID", i + 1);
    }
    vmseal_clear_error();
    return 0;
}

int vmseal_kmip_client_call(vmseal_kmip_client *c, vmseal_ttlv *request, vmseal_kmip_response **out)
{
    *out = NULL;
    if (!c || !request)
        return vmseal_fail(EINVAL, "KMIP client: nothing to send");
    vmseal_secret *enc;
    int rc = vmseal_ttlv_encode_secret(request, &enc);
    if (rc < 0)
        return rc;
    unsigned char *skip = calloc(c->n, 1);
    char errs[1024] = "";
    if (!skip) {
        vmseal_secret_free(enc);
        return vmseal_fail(ENOMEM, "KMIP client: out of memory");
    }
    vmseal_kmip_response *resp = NULL;
    int retried_idle = 0;
    for (;;) {
        if (!c->ssl && (rc = connect_any(c, skip, errs, sizeof(errs))) < 0)
            break;
        int reused = c->used;
        rc = exchange(c, enc, &resp);
        if (rc == 0)
            break;
        if (!transport_error(rc))
            break;
        size_t failed = c->cur;
        if (reused && !retried_idle) {
            /* A connection we kept open broke: the server may have closed
             * it while idle or restarted. Try that server once more. */
            drop_connection(c);
            retried_idle = 1;
            if (connect_server(c, failed) == 0)
                continue;
        }
        note_failure(errs, sizeof(errs), c->servers[failed].label);
        drop_connection(c);
        skip[failed] = 1;
    }
    free(skip);
    vmseal_secret_free(enc);
    if (rc < 0)
        return rc;
    if ((rc = match_response(request, resp)) < 0) {
        vmseal_kmip_response_free(resp);
        return rc;
    }
    *out = resp;
    return 0;
}

/* ---- operation helpers --------------------------------------------------- */

/* A request for this client's version, with one item; returns its payload. */
static vmseal_ttlv *new_request(vmseal_kmip_client *c, uint32_t op, vmseal_ttlv **msg)
{
    vmseal_kmip_request_opts o = request_opts(c);
    *msg = vmseal_kmip_request_new(&c->version, &o);
    uint8_t ubi[4];
    uint32_t n = ++c->ubi_counter;
    memcpy(ubi, "vs", 2);
    ubi[2] = (uint8_t)(n >> 8);
    ubi[3] = (uint8_t)n;
    return vmseal_kmip_request_add(*msg, op, ubi, sizeof(ubi));
}

/* Make sure the version is known before building a request. */
static int prepare(vmseal_kmip_client *c)
{
    if (!c)
        return vmseal_fail(EINVAL, "KMIP client: none");
    if (c->version_fixed || c->negotiated)
        return 0;
    return vmseal_kmip_client_connect(c);
}

/* Send a one-item request; on success *resp holds it and *payload its
 * Response Payload (never NULL on success). Frees msg. */
static int call_one(vmseal_kmip_client *c, vmseal_ttlv *msg, const char *what, vmseal_kmip_response **resp,
                    vmseal_ttlv **payload)
{
    *resp = NULL;
    int rc = vmseal_kmip_client_call(c, msg, resp);
    vmseal_ttlv_free(msg);
    if (rc < 0)
        return vmseal_fail(rc, "KMIP %s: %s", what, vmseal_last_error());
    if ((rc = vmseal_kmip_result_errno(&(*resp)->items[0])) < 0) {
        vmseal_kmip_response_free(*resp);
        *resp = NULL;
        return vmseal_fail(rc, "KMIP %s: %s", what, vmseal_last_error());
    }
    *payload = (*resp)->items[0].payload;
    if (!*payload) {
        vmseal_kmip_response_free(*resp);
        *resp = NULL;
        return vmseal_fail(EPROTO, "KMIP %s: the server sent no Response Payload", what);
    }
    return 0;
}

static void add_attr_text(vmseal_ttlv *parent, const char *name, const char *value)
{
    vmseal_ttlv *a = vmseal_ttlv_add_struct(parent, VMSEAL_KMIP_TAG_ATTRIBUTE);
    vmseal_ttlv_add_text(a, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, name);
    vmseal_ttlv_add_text(a, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE, value);
}

static void add_attr_enum(vmseal_ttlv *parent, const char *name, uint32_t value)
{
    vmseal_ttlv *a = vmseal_ttlv_add_struct(parent, VMSEAL_KMIP_TAG_ATTRIBUTE);
    vmseal_ttlv_add_text(a, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, name);
    vmseal_ttlv_add_enum(a, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE, value);
}

static void add_attr_int(vmseal_ttlv *parent, const char *name, int32_t value)
{
    vmseal_ttlv *a = vmseal_ttlv_add_struct(parent, VMSEAL_KMIP_TAG_ATTRIBUTE);
    vmseal_ttlv_add_text(a, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, name);
    vmseal_ttlv_add_int(a, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE, value);
}

static void add_attr_name(vmseal_ttlv *parent, const char *name)
{
    vmseal_ttlv *a = vmseal_ttlv_add_struct(parent, VMSEAL_KMIP_TAG_ATTRIBUTE);
    vmseal_ttlv_add_text(a, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, VMSEAL_KMIP_ATTR_NAME);
    vmseal_ttlv *v = vmseal_ttlv_add_struct(a, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE);
    vmseal_ttlv_add_text(v, VMSEAL_KMIP_TAG_NAME_VALUE, name);
    vmseal_ttlv_add_enum(v, VMSEAL_KMIP_TAG_NAME_TYPE, VMSEAL_KMIP_NAME_UNINTERPRETED_TEXT_STRING);
}

static int copy_uid(const vmseal_ttlv *payload, char **uid, const char *what)
{
    const char *s;
    size_t len;
    int rc = vmseal_ttlv_find_text(payload, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, &s, &len);
    if (rc < 0)
        return vmseal_fail(EPROTO, "KMIP %s: %s", what, vmseal_last_error());
    if (len == 0)
        return vmseal_fail(EPROTO, "KMIP %s: empty Unique Identifier", what);
    *uid = strdup(s);
    return *uid ? 0 : vmseal_fail(ENOMEM, "KMIP %s: out of memory", what);
}

static int check_uid(const char *uid, const char *what)
{
    if (!uid || !*uid)
        return vmseal_fail(EINVAL, "KMIP %s: no Unique Identifier given", what);
    return 0;
}

/* ---- operations ---------------------------------------------------------- */

int vmseal_kmip_discover_versions(vmseal_kmip_client *c, vmseal_kmip_version *out, size_t max, size_t *n)
{
    *n = 0;
    int rc = prepare(c);
    if (rc < 0)
        return rc;
    vmseal_ttlv *msg, *payload;
    vmseal_kmip_response *resp;
    new_request(c, VMSEAL_KMIP_OP_DISCOVER_VERSIONS, &msg);
    if ((rc = call_one(c, msg, "Discover Versions", &resp, &payload)) < 0)
        return rc;
    for (vmseal_ttlv *pv = NULL; (pv = vmseal_ttlv_next(payload, VMSEAL_KMIP_TAG_PROTOCOL_VERSION, pv));) {
        vmseal_kmip_version v;
        if (vmseal_ttlv_find_int(pv, VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MAJOR, &v.major) < 0 ||
            vmseal_ttlv_find_int(pv, VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MINOR, &v.minor) < 0) {
            vmseal_kmip_response_free(resp);
            return vmseal_fail(EPROTO, "KMIP Discover Versions: %s", vmseal_last_error());
        }
        if (*n < max)
            out[*n] = v;
        (*n)++;
    }
    if (*n > max)
        *n = max;
    vmseal_kmip_response_free(resp);
    return 0;
}

int vmseal_kmip_query(vmseal_kmip_client *c, vmseal_kmip_server_info *info)
{
    memset(info, 0, sizeof(*info));
    int rc = prepare(c);
    if (rc < 0)
        return rc;
    vmseal_ttlv *msg, *payload;
    vmseal_kmip_response *resp;
    vmseal_ttlv *p = new_request(c, VMSEAL_KMIP_OP_QUERY, &msg);
    vmseal_ttlv_add_enum(p, VMSEAL_KMIP_TAG_QUERY_FUNCTION, VMSEAL_KMIP_QUERY_OPERATIONS);
    vmseal_ttlv_add_enum(p, VMSEAL_KMIP_TAG_QUERY_FUNCTION, VMSEAL_KMIP_QUERY_OBJECTS);
    vmseal_ttlv_add_enum(p, VMSEAL_KMIP_TAG_QUERY_FUNCTION, VMSEAL_KMIP_QUERY_SERVER_INFORMATION);
    if ((rc = call_one(c, msg, "Query", &resp, &payload)) < 0)
        return rc;
    for (vmseal_ttlv *x = NULL; (x = vmseal_ttlv_next(payload, VMSEAL_KMIP_TAG_OPERATION, x));) {
        uint32_t v;
        if (vmseal_ttlv_get_enum(x, &v) == 0 && info->n_operations < 64)
            info->operations[info->n_operations++] = v;
    }
    for (vmseal_ttlv *x = NULL; (x = vmseal_ttlv_next(payload, VMSEAL_KMIP_TAG_OBJECT_TYPE, x));) {
        uint32_t v;
        if (vmseal_ttlv_get_enum(x, &v) == 0 && info->n_object_types < 16)
            info->object_types[info->n_object_types++] = v;
    }
    const char *vendor;
    size_t vlen;
    if (vmseal_ttlv_find_text(payload, VMSEAL_KMIP_TAG_VENDOR_IDENTIFICATION, &vendor, &vlen) == 0)
        vmseal_log_escape(vendor, vlen, info->vendor, sizeof(info->vendor));
    vmseal_kmip_cluster_info_parse(vmseal_ttlv_find(payload, VMSEAL_KMIP_TAG_SERVER_INFORMATION),
                                   &info->cluster);
    vmseal_clear_error();
    vmseal_kmip_response_free(resp);
    return 0;
}

int vmseal_kmip_create_aes(vmseal_kmip_client *c, const vmseal_kmip_create_opts *opts, char **uid)
{
    *uid = NULL;
    int rc = prepare(c);
    if (rc < 0)
        return rc;
    int32_t bits = opts && opts->bits ? opts->bits : 256;
    int32_t mask = opts && opts->usage_mask ? opts->usage_mask
                                            : (VMSEAL_KMIP_USAGE_ENCRYPT | VMSEAL_KMIP_USAGE_DECRYPT);
    if (bits != 128 && bits != 192 && bits != 256)
        return vmseal_fail(EINVAL, "KMIP Create: AES keys are 128, 192 or 256 bits, not %d", bits);
    vmseal_ttlv *msg, *payload;
    vmseal_kmip_response *resp;
    vmseal_ttlv *p = new_request(c, VMSEAL_KMIP_OP_CREATE, &msg);
    vmseal_ttlv_add_enum(p, VMSEAL_KMIP_TAG_OBJECT_TYPE, VMSEAL_KMIP_OBJ_SYMMETRIC_KEY);
    vmseal_ttlv *ta = vmseal_ttlv_add_struct(p, VMSEAL_KMIP_TAG_TEMPLATE_ATTRIBUTE);
    add_attr_enum(ta, VMSEAL_KMIP_ATTR_CRYPTOGRAPHIC_ALGORITHM, VMSEAL_KMIP_ALG_AES);
    add_attr_int(ta, VMSEAL_KMIP_ATTR_CRYPTOGRAPHIC_LENGTH, bits);
    add_attr_int(ta, VMSEAL_KMIP_ATTR_CRYPTOGRAPHIC_USAGE_MASK, mask);
    if (opts && opts->name)
        add_attr_name(ta, opts->name);
    for (size_t i = 0; opts && i < opts->n_attrs; i++)
        add_attr_text(ta, opts->attrs[i].name, opts->attrs[i].value);
    if ((rc = call_one(c, msg, "Create", &resp, &payload)) < 0)
        return rc;
    rc = copy_uid(payload, uid, "Create");
    vmseal_kmip_response_free(resp);
    return rc;
}

/* The key bytes of a Get Response Payload (a Symmetric Key, Raw or
 * Transparent, not wrapped) into secure memory. */
static int get_payload_key(const vmseal_ttlv *payload, const char *uid, vmseal_secret **key)
{
    *key = NULL;
    uint32_t type = 0;
    vmseal_ttlv *kb = vmseal_ttlv_dig(payload, VMSEAL_KMIP_TAG_SYMMETRIC_KEY, VMSEAL_KMIP_TAG_KEY_BLOCK, 0);
    if (vmseal_ttlv_find_enum(payload, VMSEAL_KMIP_TAG_OBJECT_TYPE, &type) < 0 ||
        type != VMSEAL_KMIP_OBJ_SYMMETRIC_KEY || !kb)
        return vmseal_fail(EPROTO, "KMIP Get %s: not a symmetric key", uid);
    if (vmseal_ttlv_find(kb, VMSEAL_KMIP_TAG_KEY_WRAPPING_DATA))
        return vmseal_fail(ENOTSUP, "KMIP Get %s: the server returned a wrapped key", uid);
    uint32_t fmt = 0;
    if (vmseal_ttlv_find_enum(kb, VMSEAL_KMIP_TAG_KEY_FORMAT_TYPE, &fmt) < 0)
        fmt = 0;
    vmseal_ttlv *km = vmseal_ttlv_dig(kb, VMSEAL_KMIP_TAG_KEY_VALUE, VMSEAL_KMIP_TAG_KEY_MATERIAL, 0);
    if (fmt == VMSEAL_KMIP_KEYFMT_TRANSPARENT_SYMMETRIC_KEY)
        km = vmseal_ttlv_find(km, VMSEAL_KMIP_TAG_KEY);
    else if (fmt != VMSEAL_KMIP_KEYFMT_RAW)
        return vmseal_fail(ENOTSUP, "KMIP Get %s: key format %s is not supported", uid,
                           vmseal_kmip_enum_name(VMSEAL_KMIP_TAG_KEY_FORMAT_TYPE, fmt)
                               ? vmseal_kmip_enum_name(VMSEAL_KMIP_TAG_KEY_FORMAT_TYPE, fmt) : "?");
    int rc = vmseal_ttlv_get_secret(km, key);
    if (rc < 0)
        return vmseal_fail(rc == -ENODATA ? EPROTO : rc, "KMIP Get %s: no key material (%s)", uid,
                           vmseal_last_error());
    int32_t bits;
    if (vmseal_ttlv_find_int(kb, VMSEAL_KMIP_TAG_CRYPTOGRAPHIC_LENGTH, &bits) == 0 &&
        (size_t)bits != 8 * vmseal_secret_len(*key)) {
        size_t got = vmseal_secret_len(*key);
        vmseal_secret_free(*key);
        *key = NULL;
        return vmseal_fail(EPROTO, "KMIP Get %s: %zu key bytes but Cryptographic Length %d", uid, got, bits);
    }
    vmseal_clear_error();
    return 0;
}

int vmseal_kmip_get_key(vmseal_kmip_client *c, const char *uid, vmseal_secret **key)
{
    *key = NULL;
    int rc = check_uid(uid, "Get");
    if (rc < 0 || (rc = prepare(c)) < 0)
        return rc;
    vmseal_ttlv *msg, *payload;
    vmseal_kmip_response *resp;
    vmseal_ttlv_add_text(new_request(c, VMSEAL_KMIP_OP_GET, &msg), VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, uid);
    if ((rc = call_one(c, msg, "Get", &resp, &payload)) < 0)
        return rc;
    rc = get_payload_key(payload, uid, key);
    vmseal_kmip_response_free(resp);
    return rc;
}

/* One batch of at most VMSEAL_KMIP_GET_BATCH keys. */
static int get_keys_batch(vmseal_kmip_client *c, vmseal_kmip_get_item *items, size_t n)
{
    vmseal_kmip_request_opts o = request_opts(c);
    o.batch_error_option = VMSEAL_KMIP_BATCH_CONTINUE;
    vmseal_ttlv *msg = vmseal_kmip_request_new(&c->version, &o);
    for (size_t i = 0; i < n; i++) {
        uint8_t ubi[4];
        uint32_t u = ++c->ubi_counter;
        memcpy(ubi, "vb", 2);
        ubi[2] = (uint8_t)(u >> 8);
        ubi[3] = (uint8_t)u;
        vmseal_ttlv *p = vmseal_kmip_request_add(msg, VMSEAL_KMIP_OP_GET_ATTRIBUTES, ubi, sizeof(ubi));
        vmseal_ttlv_add_text(p, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, items[i].uid);
        vmseal_ttlv_add_text(p, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, "x-Identifier");
        u = ++c->ubi_counter;
        ubi[2] = (uint8_t)(u >> 8);
        ubi[3] = (uint8_t)u;
        p = vmseal_kmip_request_add(msg, VMSEAL_KMIP_OP_GET, ubi, sizeof(ubi));
        vmseal_ttlv_add_text(p, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, items[i].uid);
    }
    vmseal_kmip_response *resp = NULL;
    int rc = vmseal_kmip_client_call(c, msg, &resp);
    vmseal_ttlv_free(msg);
    if (rc < 0)
        return vmseal_fail(rc, "KMIP Get: %s", vmseal_last_error());
    for (size_t i = 0; i < n; i++) {
        vmseal_kmip_get_item *it = &items[i];
        const vmseal_kmip_response_item *ga = &resp->items[2 * i], *g = &resp->items[2 * i + 1];
        /* The identity: a server without custom attributes answers without
         * one (or refuses the Get Attributes); the Get decides. */
        if (vmseal_kmip_result_errno(ga) == 0 && ga->payload) {
            vmseal_ttlv *v = vmseal_kmip_attr_value(ga->payload, "x-Identifier", 0);
            const char *t;
            size_t tl;
            if (v && vmseal_ttlv_get_text(v, &t, &tl) == 0 && tl < sizeof(it->identifier)) {
                memcpy(it->identifier, t, tl);
                it->identifier[tl] = '\0';
            }
        }
        if ((it->rc = vmseal_kmip_result_errno(g)) == 0) {
            if (!g->payload)
                it->rc = vmseal_fail(EPROTO, "KMIP Get %s: the server sent no Response Payload", it->uid);
            else
                it->rc = get_payload_key(g->payload, it->uid, &it->key);
        }
        if (it->rc < 0)
            snprintf(it->error, sizeof(it->error), "%s", vmseal_last_error());
    }
    vmseal_kmip_response_free(resp);
    vmseal_clear_error();
    return 0;
}

int vmseal_kmip_get_keys(vmseal_kmip_client *c, vmseal_kmip_get_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        items[i].key = NULL;
        items[i].identifier[0] = '\0';
        items[i].error[0] = '\0';
        items[i].rc = check_uid(items[i].uid, "Get");
        if (items[i].rc < 0)
            return items[i].rc;
    }
    int rc = prepare(c);
    for (size_t i = 0; rc >= 0 && i < n; i += VMSEAL_KMIP_GET_BATCH)
        rc = get_keys_batch(c, items + i, n - i < VMSEAL_KMIP_GET_BATCH ? n - i : VMSEAL_KMIP_GET_BATCH);
    if (rc < 0) {
        for (size_t i = 0; i < n; i++) {
            vmseal_secret_free(items[i].key);
            items[i].key = NULL;
        }
    }
    return rc;
}

/* Operations whose request and response payloads are just the UID. */
static int uid_only(vmseal_kmip_client *c, uint32_t op, const char *uid, const char *what)
{
    int rc = check_uid(uid, what);
    if (rc < 0 || (rc = prepare(c)) < 0)
        return rc;
    vmseal_ttlv *msg, *payload;
    vmseal_kmip_response *resp;
    vmseal_ttlv_add_text(new_request(c, op, &msg), VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, uid);
    if ((rc = call_one(c, msg, what, &resp, &payload)) < 0)
        return rc;
    vmseal_kmip_response_free(resp);
    return 0;
}

int vmseal_kmip_activate(vmseal_kmip_client *c, const char *uid)
{
    return uid_only(c, VMSEAL_KMIP_OP_ACTIVATE, uid, "Activate");
}

int vmseal_kmip_destroy(vmseal_kmip_client *c, const char *uid)
{
    return uid_only(c, VMSEAL_KMIP_OP_DESTROY, uid, "Destroy");
}

int vmseal_kmip_revoke(vmseal_kmip_client *c, const char *uid, uint32_t reason, const char *message)
{
    int rc = check_uid(uid, "Revoke");
    if (rc < 0 || (rc = prepare(c)) < 0)
        return rc;
    vmseal_ttlv *msg, *payload;
    vmseal_kmip_response *resp;
    vmseal_ttlv *p = new_request(c, VMSEAL_KMIP_OP_REVOKE, &msg);
    vmseal_ttlv_add_text(p, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, uid);
    vmseal_ttlv *rr = vmseal_ttlv_add_struct(p, VMSEAL_KMIP_TAG_REVOCATION_REASON);
    vmseal_ttlv_add_enum(rr, VMSEAL_KMIP_TAG_REVOCATION_REASON_CODE,
                         reason ? reason : VMSEAL_KMIP_REVOKE_CESSATION_OF_OPERATION);
    if (message)
        vmseal_ttlv_add_text(rr, VMSEAL_KMIP_TAG_REVOCATION_MESSAGE, message);
    if (reason == VMSEAL_KMIP_REVOKE_KEY_COMPROMISE || reason == VMSEAL_KMIP_REVOKE_CA_COMPROMISE)
        vmseal_ttlv_add_datetime(p, VMSEAL_KMIP_TAG_COMPROMISE_OCCURRENCE_DATE, (int64_t)time(NULL));
    if ((rc = call_one(c, msg, "Revoke", &resp, &payload)) < 0)
        return rc;
    vmseal_kmip_response_free(resp);
    return 0;
}

void vmseal_kmip_uids_free(char **uids, size_t n)
{
    if (!uids)
        return;
    for (size_t i = 0; i < n; i++)
        free(uids[i]);
    free(uids);
}

int vmseal_kmip_locate(vmseal_kmip_client *c, const vmseal_kmip_locate_filter *f, char ***uids, size_t *n)
{
    *uids = NULL;
    *n = 0;
    int rc = prepare(c);
    if (rc < 0)
        return rc;
    vmseal_ttlv *msg, *payload;
    vmseal_kmip_response *resp;
    vmseal_ttlv *p = new_request(c, VMSEAL_KMIP_OP_LOCATE, &msg);
    if (f && f->max_items > 0)
        vmseal_ttlv_add_int(p, VMSEAL_KMIP_TAG_MAXIMUM_ITEMS, f->max_items);
    if (f && f->object_type)
        add_attr_enum(p, VMSEAL_KMIP_ATTR_OBJECT_TYPE, f->object_type);
    if (f && f->name)
        add_attr_name(p, f->name);
    if (f && f->state)
        add_attr_enum(p, VMSEAL_KMIP_ATTR_STATE, f->state);
    for (size_t i = 0; f && i < f->n_attrs; i++)
        add_attr_text(p, f->attrs[i].name, f->attrs[i].value);
    if ((rc = call_one(c, msg, "Locate", &resp, &payload)) < 0)
        return rc;
    size_t count = vmseal_ttlv_count(payload, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER);
    char **list = calloc(count ? count : 1, sizeof(char *));
    if (!list) {
        vmseal_kmip_response_free(resp);
        return vmseal_fail(ENOMEM, "KMIP Locate: out of memory");
    }
    size_t i = 0;
    for (vmseal_ttlv *x = NULL; (x = vmseal_ttlv_next(payload, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, x)); i++) {
        const char *s;
        if ((rc = vmseal_ttlv_get_text(x, &s, NULL)) < 0 || !(list[i] = strdup(s))) {
            vmseal_kmip_uids_free(list, i);
            vmseal_kmip_response_free(resp);
            return rc < 0 ? vmseal_fail(EPROTO, "KMIP Locate: %s", vmseal_last_error())
                          : vmseal_fail(ENOMEM, "KMIP Locate: out of memory");
        }
    }
    vmseal_kmip_response_free(resp);
    *uids = list;
    *n = count;
    return 0;
}

int vmseal_kmip_get_attributes(vmseal_kmip_client *c, const char *uid, const char *const *names, size_t n,
                               vmseal_ttlv **attrs)
{
    *attrs = NULL;
    int rc = check_uid(uid, "Get Attributes");
    if (rc < 0 || (rc = prepare(c)) < 0)
        return rc;
    vmseal_ttlv *msg, *payload;
    vmseal_kmip_response *resp;
    vmseal_ttlv *p = new_request(c, VMSEAL_KMIP_OP_GET_ATTRIBUTES, &msg);
    vmseal_ttlv_add_text(p, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, uid);
    for (size_t i = 0; names && i < n; i++)
        vmseal_ttlv_add_text(p, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, names[i]);
    if ((rc = call_one(c, msg, "Get Attributes", &resp, &payload)) < 0)
        return rc;
    *attrs = vmseal_ttlv_detach(payload);
    resp->items[0].payload = NULL;
    vmseal_kmip_response_free(resp);
    return 0;
}

vmseal_ttlv *vmseal_kmip_attr_value(const vmseal_ttlv *attrs, const char *name, size_t nth)
{
    if (!name)
        return NULL;
    for (vmseal_ttlv *a = NULL; (a = vmseal_ttlv_next(attrs, VMSEAL_KMIP_TAG_ATTRIBUTE, a));) {
        const char *an;
        if (vmseal_ttlv_find_text(a, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, &an, NULL) < 0 || strcmp(an, name) != 0)
            continue;
        if (nth-- == 0)
            return vmseal_ttlv_find(a, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE);
    }
    vmseal_clear_error();
    return NULL;
}

int vmseal_kmip_add_attributes(vmseal_kmip_client *c, const char *uid, const vmseal_kmip_text_attr *attrs,
                               size_t n)
{
    int rc = check_uid(uid, "Add Attribute");
    if (rc < 0 || (rc = prepare(c)) < 0)
        return rc;
    if (n == 0)
        return 0;
    vmseal_kmip_request_opts o = request_opts(c);
    vmseal_ttlv *msg = vmseal_kmip_request_new(&c->version, &o);
    for (size_t i = 0; i < n; i++) {
        uint8_t ubi[4];
        uint32_t k = ++c->ubi_counter;
        memcpy(ubi, "vs", 2);
        ubi[2] = (uint8_t)(k >> 8);
        ubi[3] = (uint8_t)k;
        vmseal_ttlv *p = vmseal_kmip_request_add(msg, VMSEAL_KMIP_OP_ADD_ATTRIBUTE, ubi, sizeof(ubi));
        vmseal_ttlv_add_text(p, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, uid);
        add_attr_text(p, attrs[i].name, attrs[i].value);
    }
    vmseal_kmip_response *resp;
    rc = vmseal_kmip_client_call(c, msg, &resp);
    vmseal_ttlv_free(msg);
    if (rc < 0)
        return vmseal_fail(rc, "KMIP Add Attribute: %s", vmseal_last_error());
    for (size_t i = 0; i < resp->count; i++) {
        if ((rc = vmseal_kmip_result_errno(&resp->items[i])) < 0) {
            rc = vmseal_fail(rc, "KMIP Add Attribute %s: %s", attrs[i].name, vmseal_last_error());
            break;
        }
    }
    vmseal_kmip_response_free(resp);
    return rc;
}
