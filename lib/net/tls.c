/* TLS contexts, bounded handshakes and I/O, peer identity, and plain-language
 * explanations of handshake failures (OpenSSL 3). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <vmseal/tls.h>

/* Ex-data slot on SSL_CTX holding the EKU we demand of the peer's leaf. */
static int eku_ctx_index = -1;
static CRYPTO_ONCE eku_once = CRYPTO_ONCE_STATIC_INIT;

static void eku_index_init(void)
{
    eku_ctx_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* ---------------------------------------------------------------- timing */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Remaining ms until deadline (-1 = no deadline). */
static int remaining_ms(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t left = deadline - now_ms();
    if (left < 0)
        return 0;
    return left > 0x7fffffff ? 0x7fffffff : (int)left;
}

static int64_t make_deadline(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

/* Wait until fd is ready for the direction OpenSSL asked for. */
static int wait_fd(int fd, int ssl_err, int64_t deadline)
{
    struct pollfd p = {.fd = fd, .events = ssl_err == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN};
    for (;;) {
        int t = remaining_ms(deadline);
        if (t == 0)
            return -ETIMEDOUT;
        int r = poll(&p, 1, t);
        if (r > 0)
            return 0;
        if (r == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

static int set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

/* --------------------------------------------------------- explanations */

static const char *verify_reason(long v, int we_are_server)
{
    switch (v) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_CERT_UNTRUSTED:
        return we_are_server ? "client certificate not signed by a trusted CA"
                             : "server certificate not signed by a trusted CA";
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return "certificate expired";
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return "certificate not yet valid (check the clocks)";
    case X509_V_ERR_CERT_REVOKED:
        return "certificate revoked";
    case X509_V_ERR_INVALID_PURPOSE:
        return we_are_server ? "certificate lacks the clientAuth extended key usage"
                             : "certificate lacks the serverAuth extended key usage";
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        return "server name mismatch: the server certificate is not issued for this host name or address";
    case X509_V_ERR_INVALID_CA:
        return "an issuing certificate in the chain is not a CA";
    case X509_V_ERR_KEYUSAGE_NO_CERTSIGN:
        return "issuing certificate may not sign certificates";
    case X509_V_ERR_EE_KEY_TOO_SMALL:
    case X509_V_ERR_CA_KEY_TOO_SMALL:
    case X509_V_ERR_CA_MD_TOO_WEAK:
        return "certificate uses a key or signature too weak for the security level";
    default:
        return NULL;
    }
}

/* Reason codes from the handshake's error queue (alerts we received, or
 * what our own side found). */
static const char *ssl_reason(int reason, int we_are_server)
{
    switch (reason) {
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
        return "no client certificate presented";
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
        return we_are_server ? "the client does not trust our CA (unknown CA alert)"
                             : "client certificate not signed by a CA the server trusts (unknown CA alert)";
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
        return "certificate expired (the peer said so)";
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
        return we_are_server ? "the client refused our certificate (unsupported certificate)"
                             : "certificate lacks the clientAuth extended key usage (the server refused it)";
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
        return "the peer refused our certificate (bad certificate)";
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
        return "certificate revoked (the peer said so)";
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_VERSION_TOO_HIGH:
        return "protocol version: no TLS version in common (vmseal needs TLS 1.2 or newer)";
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
    case SSL_R_NO_CIPHERS_AVAILABLE:
        return "no cipher suite in common (or the peer aborted the handshake)";
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
        return "the peer spoke plain HTTP, not TLS";
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_RECORD_LENGTH_MISMATCH:
        return "the peer did not speak TLS";
    case SSL_R_TLSV1_ALERT_DECRYPT_ERROR:
    case SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC:
        return "TLS integrity failure (decrypt error)";
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
        return "certificate verification failed";
    default:
        return NULL;
    }
}

/* Turn a failed handshake or I/O into vmseal_fail(...) with a reason. */
static int explain_failure(SSL *ssl, int ssl_err, int we_are_server, const char *what)
{
    char buf[256] = "";
    const char *why = NULL;
    SSL_set_quiet_shutdown(ssl, 1); /* no close_notify after a fatal error */
    long v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK)
        why = verify_reason(v, we_are_server);
    unsigned long e, first = 0;
    while ((e = ERR_get_error()) != 0) {
        if (!first)
            first = e;
        if (!why && ERR_GET_LIB(e) == ERR_LIB_SSL)
            why = ssl_reason(ERR_GET_REASON(e), we_are_server);
    }
    if (!why && v != X509_V_OK) {
        snprintf(buf, sizeof(buf), "certificate verification failed: %s",
                 X509_verify_cert_error_string(v));
        why = buf;
    }
    if (!why && first) {
        ERR_error_string_n(first, buf, sizeof(buf));
        why = buf;
    }
    if (!why) {
        if (ssl_err == SSL_ERROR_SYSCALL || ssl_err == SSL_ERROR_ZERO_RETURN)
            why = "connection closed by the peer during the handshake";
        else
            why = "TLS failure";
    }
    ERR_clear_error();
    return vmseal_fail(EPROTO, "%s: %s", what, why);
}

/* --------------------------------------------------------------- contexts */

static int verify_cb(int ok, X509_STORE_CTX *sctx)
{
    if (!ok)
        return 0;
    if (X509_STORE_CTX_get_error_depth(sctx) != 0)
        return 1;
    SSL *ssl = X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx());
    if (!ssl)
        return 1;
    SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
    uintptr_t want = (uintptr_t)SSL_CTX_get_ex_data(ctx, eku_ctx_index);
    if (!want)
        return 1;
    /* Strict: the leaf must carry an EKU extension naming the purpose
     * (OpenSSL's purpose check alone accepts certificates without EKU). */
    X509 *leaf = X509_STORE_CTX_get_current_cert(sctx);
    uint32_t flags = X509_get_extension_flags(leaf);
    if (!(flags & EXFLAG_XKUSAGE) || !(X509_get_extended_key_usage(leaf) & (uint32_t)want)) {
        X509_STORE_CTX_set_error(sctx, X509_V_ERR_INVALID_PURPOSE);
        return 0;
    }
    return 1;
}

static int ctx_load_common(SSL_CTX *ctx, const vmseal_tls_config *cfg, int server)
{
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION))
        return vmseal_fail(EINVAL, "tls: cannot set minimum protocol version");
    if (cfg->cert_file) {
        if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_file) != 1) {
            ERR_clear_error();
            return vmseal_fail(EINVAL, "tls: cannot load certificate %s", cfg->cert_file);
        }
        if (!cfg->key_file)
            return vmseal_fail(EINVAL, "tls: certificate given without a key file");
        if (SSL_CTX_use_PrivateKey_file(ctx, cfg->key_file, SSL_FILETYPE_PEM) != 1) {
            unsigned long e = ERR_peek_last_error();
            ERR_clear_error();
            if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
                return vmseal_fail(EINVAL, "tls: private key %s does not match certificate %s",
                                   cfg->key_file, cfg->cert_file);
            return vmseal_fail(EINVAL, "tls: cannot load private key %s", cfg->key_file);
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            ERR_clear_error();
            return vmseal_fail(EINVAL, "tls: private key %s does not match certificate %s",
                               cfg->key_file, cfg->cert_file);
        }
    } else if (server) {
        return vmseal_fail(EINVAL, "tls: a server needs a certificate");
    }
    if (cfg->ca_file) {
        if (SSL_CTX_load_verify_locations(ctx, cfg->ca_file, NULL) != 1) {
            ERR_clear_error();
            return vmseal_fail(EINVAL, "tls: cannot load CA file %s", cfg->ca_file);
        }
    } else if (!server || cfg->require_client_cert) {
        return vmseal_fail(EINVAL, "tls: a CA file is required to verify the peer");
    }
    CRYPTO_THREAD_run_once(&eku_once, eku_index_init);
    if (eku_ctx_index < 0)
        return vmseal_fail(ENOMEM, "tls: no ex-data index");
    if (cfg->require_eku) {
        uintptr_t want = server ? XKU_SSL_CLIENT : XKU_SSL_SERVER;
        SSL_CTX_set_ex_data(ctx, eku_ctx_index, (void *)want);
        X509_VERIFY_PARAM *p = SSL_CTX_get0_param(ctx);
        X509_VERIFY_PARAM_set_purpose(p, server ? X509_PURPOSE_SSL_CLIENT : X509_PURPOSE_SSL_SERVER);
    }
    return 0;
}

SSL_CTX *vmseal_tls_server_ctx_new(const vmseal_tls_config *cfg)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        vmseal_fail(ENOMEM, "tls: SSL_CTX_new failed");
        return NULL;
    }
    if (ctx_load_common(ctx, cfg, 1) < 0)
        goto fail;
    if (cfg->require_client_cert) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca_file);
        if (names)
            SSL_CTX_set_client_CA_list(ctx, names);
        ERR_clear_error();
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_cb);
    } else if (cfg->ca_file) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb);
    }
    /* Resumption: a server-side session cache for TLS 1.2 session IDs and
     * stateless tickets (TLS 1.2 and 1.3). The id context is required once
     * client certificates are verified. */
    static const unsigned char sid_ctx[] = "vmseal";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, 20000);
    SSL_CTX_set_timeout(ctx, 3600);
    SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* TLS 1.2: forward secrecy and AEAD only (the TLS 1.3 suites, all
     * AEAD with ephemeral key exchange, are set apart and stay) */
    if (cfg->fs_aead_only && SSL_CTX_set_cipher_list(ctx, VMSEAL_TLS12_FS_AEAD_SUITES) != 1) {
        ERR_clear_error();
        vmseal_fail(EINVAL, "tls: cannot set the TLS 1.2 cipher suites");
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *vmseal_tls_client_ctx_new(const vmseal_tls_config *cfg)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        vmseal_fail(ENOMEM, "tls: SSL_CTX_new failed");
        return NULL;
    }
    if (ctx_load_common(ctx, cfg, 0) < 0)
        goto fail;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb);
    if (cfg->legacy_cbc_suites &&
        SSL_CTX_set_cipher_list(ctx, "DEFAULT:ECDHE-RSA-AES256-SHA384:AES256-SHA256") != 1) {
        ERR_clear_error();
        vmseal_fail(EINVAL, "tls: cannot set the legacy cipher list");
        goto fail;
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (cfg->server_name) {
        /* Stash the name to verify; vmseal_tls_connect applies it per SSL. */
        X509_VERIFY_PARAM *p = SSL_CTX_get0_param(ctx);
        X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        unsigned char ip[16];
        int is_ip = inet_pton(AF_INET, cfg->server_name, ip) == 1 ||
                    inet_pton(AF_INET6, cfg->server_name, ip) == 1;
        int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(p, cfg->server_name)
                       : X509_VERIFY_PARAM_set1_host(p, cfg->server_name, 0);
        if (!ok) {
            vmseal_fail(EINVAL, "tls: bad server name %s", cfg->server_name);
            goto fail;
        }
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* ----------------------------------------------------------- handshakes */

static int handshake(SSL *ssl, int fd, int64_t deadline, int server)
{
    for (;;) {
        ERR_clear_error();
        int r = server ? SSL_accept(ssl) : SSL_connect(ssl);
        if (r == 1)
            return 0;
        int err = SSL_get_error(ssl, r);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
            int w = wait_fd(fd, err, deadline);
            if (w == -ETIMEDOUT)
                return vmseal_fail(ETIMEDOUT, "TLS handshake timed out");
            if (w < 0)
                return vmseal_fail(-w, "TLS handshake: poll: %s", strerror(-w));
            continue;
        }
        return explain_failure(ssl, err, server, "TLS handshake failed");
    }
}

int vmseal_tls_accept(SSL_CTX *ctx, int fd, int timeout_ms, SSL **out)
{
    *out = NULL;
    int64_t deadline = make_deadline(timeout_ms);
    int r = set_nonblocking(fd);
    if (r < 0) {
        close(fd);
        return vmseal_fail(-r, "tls: fcntl: %s", strerror(-r));
    }
    SSL *ssl = SSL_new(ctx);
    if (!ssl) {
        close(fd);
        return vmseal_fail(ENOMEM, "tls: SSL_new failed");
    }
    SSL_set_fd(ssl, fd);
    r = handshake(ssl, fd, deadline, 1);
    if (r < 0) {
        SSL_free(ssl);
        close(fd);
        return r;
    }
    *out = ssl;
    return 0;
}

static int tcp_connect(const char *host, int port, int64_t deadline)
{
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int gr = getaddrinfo(host, portstr, &hints, &res);
    if (gr != 0)
        return vmseal_fail(EHOSTUNREACH, "cannot resolve %s: %s", host, gai_strerror(gr));
    int last = ECONNREFUSED;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0) {
            last = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            freeaddrinfo(res);
            return fd;
        }
        if (errno == EINPROGRESS) {
            int w = wait_fd(fd, SSL_ERROR_WANT_WRITE, deadline);
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            if (w == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0) {
                freeaddrinfo(res);
                return fd;
            }
            last = w < 0 ? -w : soerr;
        } else {
            last = errno;
        }
        close(fd);
    }
    freeaddrinfo(res);
    return vmseal_fail(last, "cannot connect to %s:%d: %s", host, port, strerror(last));
}

int vmseal_tls_connect(SSL_CTX *ctx, const char *host, int port, int timeout_ms,
                       SSL_SESSION *resume, SSL **out)
{
    *out = NULL;
    int64_t deadline = make_deadline(timeout_ms);
    int fd = tcp_connect(host, port, deadline);
    if (fd < 0)
        return fd;
    SSL *ssl = SSL_new(ctx);
    if (!ssl) {
        close(fd);
        return vmseal_fail(ENOMEM, "tls: SSL_new failed");
    }
    SSL_set_fd(ssl, fd);
    X509_VERIFY_PARAM *p = SSL_get0_param(ssl);
    const char *ctx_host = X509_VERIFY_PARAM_get0_host(p, 0);
    char *ctx_ip = X509_VERIFY_PARAM_get1_ip_asc(p);
    int have_name = ctx_host != NULL || ctx_ip != NULL;
    const char *sni = ctx_host;
    OPENSSL_free(ctx_ip);
    if (!have_name) {
        unsigned char ip[16];
        int is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
        int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(p, host)
                       : X509_VERIFY_PARAM_set1_host(p, host, 0);
        if (!ok) {
            SSL_free(ssl);
            close(fd);
            return vmseal_fail(EINVAL, "tls: bad host name %s", host);
        }
        if (!is_ip)
            sni = host;
    }
    if (sni)
        SSL_set_tlsext_host_name(ssl, sni);
    if (resume)
        SSL_set_session(ssl, resume);
    int r = handshake(ssl, fd, deadline, 0);
    if (r < 0) {
        SSL_free(ssl);
        close(fd);
        return r;
    }
    *out = ssl;
    return 0;
}

/* -------------------------------------------------------------- identity */

int vmseal_tls_peer_subject(SSL *ssl, char *buf, size_t len)
{
    X509 *peer = SSL_get0_peer_certificate(ssl);
    if (!peer || SSL_get_verify_result(ssl) != X509_V_OK)
        return vmseal_fail(ENOENT, "tls: no verified peer certificate");
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return vmseal_fail(ENOMEM, "tls: BIO_new failed");
    int r = X509_NAME_print_ex(b, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253);
    if (r < 0) {
        BIO_free(b);
        return vmseal_fail(EPROTO, "tls: cannot print the peer subject");
    }
    char *data;
    long n = BIO_get_mem_data(b, &data);
    if (n < 0 || (size_t)n >= len) {
        BIO_free(b);
        return vmseal_fail(ENOSPC, "tls: peer subject too long (%ld bytes)", n);
    }
    memcpy(buf, data, (size_t)n);
    buf[n] = '\0';
    BIO_free(b);
    return (int)n;
}

int vmseal_tls_peer_fingerprint(SSL *ssl, char out[65])
{
    X509 *peer = SSL_get0_peer_certificate(ssl);
    if (!peer)
        return vmseal_fail(ENOENT, "tls: no peer certificate");
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (X509_digest(peer, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32)
        return vmseal_fail(EIO, "tls: cannot hash the peer certificate");
    vmseal_hex_encode(md, 32, out);
    return 0;
}

/* -------------------------------------------------------------------- I/O */

int vmseal_tls_read_full(SSL *ssl, void *buf, size_t len, int timeout_ms)
{
    int64_t deadline = make_deadline(timeout_ms);
    size_t got = 0;
    int fd = SSL_get_fd(ssl);
    while (got < len) {
        size_t n = 0;
        ERR_clear_error();
        if (SSL_read_ex(ssl, (unsigned char *)buf + got, len - got, &n) == 1) {
            got += n;
            continue;
        }
        int err = SSL_get_error(ssl, 0);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
            int w = wait_fd(fd, err, deadline);
            if (w == -ETIMEDOUT)
                return vmseal_fail(ETIMEDOUT, "tls: read timed out after %zu of %zu bytes", got, len);
            if (w < 0)
                return vmseal_fail(-w, "tls: poll: %s", strerror(-w));
            continue;
        }
        unsigned long top = ERR_peek_error();
        if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && top == 0) ||
            (err == SSL_ERROR_SSL && ERR_GET_LIB(top) == ERR_LIB_SSL &&
             ERR_GET_REASON(top) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
            /* a clean close, or the peer closed TCP without close_notify
             * (many clients do; our messages carry their own lengths) */
            ERR_clear_error();
            SSL_set_quiet_shutdown(ssl, 1);
            if (got == 0)
                return 0;
            return vmseal_fail(ECONNRESET, "tls: connection closed after %zu of %zu bytes", got, len);
        }
        if (err == SSL_ERROR_SSL && got == 0) {
            /* TLS 1.3: a client learns only now that the server refused
             * its certificate; say why. */
            return explain_failure(ssl, err, SSL_is_server(ssl), "TLS connection failed");
        }
        return explain_failure(ssl, err, SSL_is_server(ssl), "tls: read failed");
    }
    return (int)got;
}

int vmseal_tls_write_full(SSL *ssl, const void *buf, size_t len, int timeout_ms)
{
    int64_t deadline = make_deadline(timeout_ms);
    size_t done = 0;
    int fd = SSL_get_fd(ssl);
    while (done < len) {
        size_t n = 0;
        ERR_clear_error();
        if (SSL_write_ex(ssl, (const unsigned char *)buf + done, len - done, &n) == 1) {
            done += n;
            continue;
        }
        int err = SSL_get_error(ssl, 0);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
            int w = wait_fd(fd, err, deadline);
            if (w == -ETIMEDOUT)
                return vmseal_fail(ETIMEDOUT, "tls: write timed out after %zu of %zu bytes", done, len);
            if (w < 0)
                return vmseal_fail(-w, "tls: poll: %s", strerror(-w));
            continue;
        }
        if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
            ERR_clear_error();
            SSL_set_quiet_shutdown(ssl, 1);
            return vmseal_fail(EPIPE, "tls: connection closed while writing");
        }
        return explain_failure(ssl, err, SSL_is_server(ssl), "tls: write failed");
    }
    return (int)done;
}

void vmseal_tls_close(SSL *ssl)
{
    if (!ssl)
        return;
    int fd = SSL_get_fd(ssl);
    /* One close_notify, without waiting for the peer's (non-blocking fd). */
    if (SSL_is_init_finished(ssl)) {
        ERR_clear_error();
        (void)SSL_shutdown(ssl);
        ERR_clear_error();
    }
    SSL_free(ssl);
    if (fd >= 0)
        close(fd);
}
