/* vmseal — HTTPS server shared by the daemons (manager, host agent).
 *
 * TLS is OpenSSL (include/vmseal/tls.h); HTTP parsing is libmicrohttpd, fed
 * with the already-decrypted stream: every accepted TCP connection gets a
 * TLS handshake (optionally demanding a client certificate signed by the
 * configured CA), then a socketpair whose one end goes to libmicrohttpd
 * (MHD_add_connection) while a pump thread copies bytes between the TLS
 * session and the other end. Request handlers see the verified peer
 * certificate's subject and SHA-256 fingerprint.
 *
 * Handlers run one per connection thread, so a handler may block (long
 * polls, calls to other servers). Request bodies are bounded (max_body,
 * default 1 MiB): a larger declared or sent body gets 413 without reaching
 * the handler. Bodies are wiped after the handler returns (they may carry
 * key material).
 */
#ifndef VMSEAL_HTTPS_SERVER_H
#define VMSEAL_HTTPS_SERVER_H

#include <jansson.h>

#include <vmseal/common.h>
#include <vmseal/tls.h>

typedef struct vmseal_https_server vmseal_https_server;

/* One request as the handler sees it. Strings live until the handler
 * returns. */
typedef struct vmseal_http_request {
    const char *method;            /* "GET", "POST", ... */
    const char *path;              /* URL path, percent-decoded, without query */
    const char *body;              /* NUL-terminated copy of the body ("" if none) */
    size_t body_len;
    const char *peer_subject;      /* RFC 2253 subject of the verified client
                                      certificate, "" when the client sent none */
    const char *peer_fingerprint;  /* SHA-256 of the client certificate, lower-case
                                      hex, "" when none */
    const char *remote_addr;       /* "127.0.0.1:41234" */
    void *internal;                /* for the accessors below */
} vmseal_http_request;

/* Request header (case-insensitive name) or NULL. */
const char *vmseal_http_header(const vmseal_http_request *req, const char *name);
/* Query-string argument (percent-decoded) or NULL. */
const char *vmseal_http_query(const vmseal_http_request *req, const char *name);
/* Cookie (from the Cookie request header, by exact name) or NULL. */
const char *vmseal_http_cookie(const vmseal_http_request *req, const char *name);

/* Room for a handler's own headers plus a web client's security headers
 * (Content-Security-Policy and the like, set on every manager response). */
#define VMSEAL_HTTP_MAX_EXTRA_HEADERS 12

/* What the handler fills in. Default: status 500, no body. */
typedef struct vmseal_http_response {
    int status;
    json_t *json;              /* body as JSON (the server takes the reference) */
    char *raw;                 /* or a raw body (malloc'd; the server frees it) */
    size_t raw_len;
    const char *content_type;  /* for raw; default "application/octet-stream" */
    struct {
        const char *name;      /* static strings or strings that outlive the call */
        char value[256];
    } headers[VMSEAL_HTTP_MAX_EXTRA_HEADERS];
    int n_headers;
    /* Set by vmseal_http_websocket: after the 101 answer the connection
     * (decrypted bytes, a socket) belongs to upgrade, run in a thread of
     * its own; extra: bytes the client sent after its request. upgrade is
     * called exactly once: with fd -1 when the switch did not happen. It
     * returns when it is done with fd (the server closes it). */
    void (*upgrade)(void *arg, int fd, const char *extra, size_t extra_len);
    void *upgrade_arg;
} vmseal_http_response;

/* Set resp to {status, {"error": message}} (printf style). */
void vmseal_http_error(vmseal_http_response *resp, int status, const char *fmt, ...)
    VMSEAL_PRINTF(3, 4);
/* Set resp to {status, json} (takes the reference). */
void vmseal_http_json(vmseal_http_response *resp, int status, json_t *json);
/* Add a response header (value copied, truncated at 255 bytes). */
void vmseal_http_add_header(vmseal_http_response *resp, const char *name, const char *value);

/* Accept a WebSocket upgrade request (include/vmseal/websocket.h): checks
 * the headers, answers 101 with Sec-WebSocket-Accept and hands the
 * connection to fn. 0, or -1 with an error answer set in resp (fn is then
 * not called). Upgraded connections have no idle timeout of the server's:
 * fn bounds its own. */
int vmseal_http_websocket(const vmseal_http_request *req, vmseal_http_response *resp,
                          void (*fn)(void *arg, int fd, const char *extra, size_t extra_len),
                          void *arg);

typedef void (*vmseal_http_handler)(void *arg, const vmseal_http_request *req,
                                    vmseal_http_response *resp);

typedef struct vmseal_https_config {
    const char *bind_addr;          /* default "127.0.0.1"; "0.0.0.0" or "::" for all */
    int port;                       /* 0: pick a free port (see vmseal_https_server_port) */
    vmseal_tls_config tls;          /* server certificate, key, client CA, require_client_cert */
    size_t max_body;                /* default 1 MiB */
    /* Abuse limits (include/vmseal/conn_guard.h, docs/architecture.md):
     * a full server drops the oldest unfinished handshake or idle
     * connection of the address holding the most, never a running
     * handler. */
    unsigned max_connections;       /* default 64 */
    int handshake_timeout_ms;       /* default 5000 */
    unsigned idle_timeout_s;        /* between requests (not while a handler
                                       runs), default 30 */
    unsigned max_handshakes;        /* connections still in the TLS handshake,
                                       default max_connections / 2 */
    unsigned max_handshakes_per_addr; /* of them from one source address
                                         (IPv6: /64) once half of
                                         max_handshakes are in use; more are
                                         closed at once; default 16 */
    vmseal_http_handler handler;
    void *handler_arg;
    /* Optional: called for every finished request (for access logs):
     * method, path, status, peer subject. */
    void (*log)(void *arg, const char *method, const char *path, int status,
                const char *peer_subject, const char *remote_addr);
    void *log_arg;
} vmseal_https_config;

/* Bind, listen and start serving. -errno with vmseal_last_error() set. */
int vmseal_https_server_start(const vmseal_https_config *cfg, vmseal_https_server **out)
    VMSEAL_MUST_CHECK;

/* The TCP port actually bound. */
int vmseal_https_server_port(const vmseal_https_server *srv);

/* Stop accepting, close every connection, join threads, free. NULL is fine. */
void vmseal_https_server_stop(vmseal_https_server *srv);

/* Process-wide: make jansson wipe every block it frees (JSON bodies may
 * carry base64 key material). Call once at start, before any JSON use. */
void vmseal_json_wipe_on_free(void);

#endif
