/* vmseal — HTTPS/JSON client (libcurl with OpenSSL) for the CLI → manager
 * and manager ↔ host calls.
 *
 * The server is verified against the given CA file (and its host name);
 * optionally its public key is pinned too. A client certificate is sent
 * when configured (mutual TLS). Request and response buffers are wiped after
 * use: they may carry base64 key material. One client is one libcurl handle
 * (connection reuse); use one per thread.
 */
#ifndef VMSEAL_HTTP_CLIENT_H
#define VMSEAL_HTTP_CLIENT_H

#include <jansson.h>

#include <vmseal/common.h>

typedef struct vmseal_http_client vmseal_http_client;

typedef struct vmseal_http_client_config {
    const char *ca_file;        /* CA bundle the server must chain to (required) */
    const char *cert_file;      /* client certificate (PEM), optional */
    const char *key_file;       /* its private key (PEM), with cert_file */
    const char *pinned_pubkey;  /* optional: "sha256//BASE64[;sha256//...]" */
    /* Optional, instead of the files above: the same PEM text in memory
     * (for a process that read them before dropping privileges). */
    const char *ca_pem, *cert_pem, *key_pem;
    long connect_timeout_ms;    /* default 5000 */
    long timeout_ms;            /* whole request, default 30000 */
    size_t max_response;        /* default 16 MiB */
} vmseal_http_client_config;

int vmseal_http_client_new(const vmseal_http_client_config *cfg, vmseal_http_client **out)
    VMSEAL_MUST_CHECK;
void vmseal_http_client_free(vmseal_http_client *c);

/* Send "Authorization: Bearer TOKEN" from now on (NULL: stop). */
int vmseal_http_client_set_token(vmseal_http_client *c, const char *token);
/* Change the whole-request timeout (e.g. for long polls). */
void vmseal_http_client_set_timeout(vmseal_http_client *c, long timeout_ms);

/* One request. body may be NULL (no body). On any completed HTTP exchange
 * returns 0 with *status set (whatever the status) and *resp the parsed
 * JSON body (NULL when the body is empty; -EPROTO when it is not JSON).
 * Transport failures return a negative errno with a plain-language reason:
 *   -ECONNREFUSED  nothing listens there
 *   -ETIMEDOUT     connect or request timed out
 *   -EHOSTUNREACH  cannot resolve / reach the host
 *   -EKEYREJECTED  TLS: the server certificate is not trusted / wrong name /
 *                  pinned key mismatch, or our client certificate was refused
 *   -EMSGSIZE      response larger than max_response
 *   -ECONNRESET    other transport errors */
int vmseal_http_call(vmseal_http_client *c, const char *method, const char *url,
                     const json_t *body, long *status, json_t **resp) VMSEAL_MUST_CHECK;

/* The "error" string of an error response, or a generic text. */
const char *vmseal_http_error_text(const json_t *resp);

#endif
