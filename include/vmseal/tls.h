/* vmseal — TLS contexts shared by every daemon and client (OpenSSL 3).
 *
 * Mutual TLS everywhere: servers require a client certificate signed by the
 * configured CA; clients verify the server against the CA (and its name).
 * TLS 1.2 minimum, TLS 1.3 preferred. Handshake failures are explained in
 * plain language (unknown CA, missing clientAuth EKU, expired, ...).
 */
#ifndef VMSEAL_TLS_H
#define VMSEAL_TLS_H

#include <openssl/ssl.h>

#include <vmseal/common.h>

typedef struct vmseal_tls_config {
    const char *cert_file;     /* our certificate chain (PEM) */
    const char *key_file;      /* our private key (PEM, 0600) */
    const char *ca_file;       /* CA bundle that peers must chain to (PEM) */
    int require_client_cert;   /* server: demand a client certificate (default on for vmseal) */
    int require_eku;           /* server: client cert must carry clientAuth EKU;
                                  client: server cert must carry serverAuth EKU */
    int legacy_cbc_suites;     /* client: also offer TLS 1.2 CBC suites
                                  (ECDHE-RSA-AES256-SHA384, AES256-SHA256)
                                  that pykmip-server needs */
    int fs_aead_only;          /* server: TLS 1.2 suites limited to forward-secret AEAD
                                  ones (VMSEAL_TLS12_FS_AEAD_SUITES); TLS 1.3 unchanged */
    const char *server_name;   /* client: name to verify (NULL: host given to connect) */
} vmseal_tls_config;

/* TLS 1.2 suites of fs_aead_only servers: ECDHE key exchange (forward
 * secrecy) with AES-GCM or ChaCha20-Poly1305 (AEAD), ECDSA or RSA
 * certificates. No static-RSA key exchange, no CBC, no SHA-1 MACs. */
#define VMSEAL_TLS12_FS_AEAD_SUITES                                                  \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                     \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                     \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"

/* Build contexts; NULL on failure with vmseal_last_error() set. Server
 * contexts enable session resumption (cache + tickets). */
SSL_CTX *vmseal_tls_server_ctx_new(const vmseal_tls_config *cfg);
SSL_CTX *vmseal_tls_client_ctx_new(const vmseal_tls_config *cfg);

/* Server side: TLS handshake on an accepted socket, bounded by timeout_ms.
 * On failure returns a negative errno and a plain-language reason
 * (vmseal_last_error()); the caller logs it with the peer address. */
int vmseal_tls_accept(SSL_CTX *ctx, int fd, int timeout_ms, SSL **out) VMSEAL_MUST_CHECK;

/* Client side: TCP connect to host:port and handshake, bounded by timeout_ms;
 * the server certificate is verified against the CA and host name. */
int vmseal_tls_connect(SSL_CTX *ctx, const char *host, int port, int timeout_ms,
                       SSL_SESSION *resume, SSL **out) VMSEAL_MUST_CHECK;

/* Peer identity = subject of the verified peer certificate as a one-line
 * RFC 2253 string ("CN=manager,O=vmseal"). -ENOENT when there is none. */
int vmseal_tls_peer_subject(SSL *ssl, char *buf, size_t len);

/* SHA-256 fingerprint of the verified peer certificate, lower-case hex. */
int vmseal_tls_peer_fingerprint(SSL *ssl, char out[65]);

/* Full read/write helpers with a timeout (ms); return bytes or -errno. */
int vmseal_tls_read_full(SSL *ssl, void *buf, size_t len, int timeout_ms);
int vmseal_tls_write_full(SSL *ssl, const void *buf, size_t len, int timeout_ms);

/* Close the TLS session (close_notify) and the socket, free the SSL. */
void vmseal_tls_close(SSL *ssl);

#endif
