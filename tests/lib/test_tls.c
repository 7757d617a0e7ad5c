/* TLS contexts: mutual TLS, EKU checks, name checks, resumption, timeouts and
 * the plain-language reasons for refused handshakes. Certificates are made
 * by the test itself (lib/crypto/pki.c, OpenSSL API). */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <vmseal/pki.h>
#include <vmseal/tls.h>

#include "testutil.h"

static char dir[64];

static void path(char *out, const char *name)
{
    snprintf(out, 256, "%s/%s", dir, name);
}

static int setup_pki(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/vmseal-tls.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    X509 *ca, *ca2;
    EVP_PKEY *cakey, *ca2key;
    const long day = 86400;
    testutil_issue(dir, "ca", "Test CA", 1, 0, -day, 365 * day, NULL, NULL, &ca, &cakey);
    testutil_issue(dir, "ca2", "Other CA", 1, 0, -day, 365 * day, NULL, NULL, &ca2, &ca2key);
    testutil_issue(dir, "server", "kms.test", 0, VMSEAL_PKI_EKU_SERVER,
                   -day, 30 * day, ca, cakey, NULL, NULL);
    testutil_issue(dir, "client", "client", 0, VMSEAL_PKI_EKU_CLIENT,
                   -day, 30 * day, ca, cakey, NULL, NULL);
    testutil_issue(dir, "noeku", "noeku", 0, 0, -day, 30 * day, ca, cakey, NULL, NULL);
    testutil_issue(dir, "srvonly", "srvonly", 0, VMSEAL_PKI_EKU_SERVER,
                   -day, 30 * day, ca, cakey, NULL, NULL);
    testutil_issue(dir, "expired", "expired", 0, VMSEAL_PKI_EKU_CLIENT,
                   -10 * day, -day, ca, cakey, NULL, NULL);
    testutil_issue(dir, "stranger", "stranger", 0, VMSEAL_PKI_EKU_CLIENT,
                   -day, 30 * day, ca2, ca2key, NULL, NULL);
    testutil_issue(dir, "server2", "kms.other", 0, VMSEAL_PKI_EKU_SERVER,
                   -day, 30 * day, ca2, ca2key, NULL, NULL);
    X509_free(ca);
    X509_free(ca2);
    EVP_PKEY_free(cakey);
    EVP_PKEY_free(ca2key);
    return 0;
}

static int teardown_pki(void **state)
{
    (void)state;
    return testutil_rmtree(dir);
}

/* --- a one-shot server in a thread --------------------------------------- */

struct server {
    SSL_CTX *ctx;
    int lfd;
    int port;
    int accept_timeout;
    int conns;          /* connections to serve */
    int rc[4];
    char err[4][512];
    char subject[4][256];
    char fpr[4][65];
    int reused[4];
    pthread_t th;
};

static void *server_main(void *arg)
{
    struct server *s = arg;
    for (int i = 0; i < s->conns; i++) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) {
            s->rc[i] = -errno;
            continue;
        }
        SSL *ssl = NULL;
        s->rc[i] = vmseal_tls_accept(s->ctx, fd, s->accept_timeout, &ssl);
        snprintf(s->err[i], sizeof(s->err[i]), "%s", vmseal_last_error());
        if (s->rc[i] < 0)
            continue;
        if (vmseal_tls_peer_subject(ssl, s->subject[i], sizeof(s->subject[i])) < 0)
            s->subject[i][0] = '\0';
        if (vmseal_tls_peer_fingerprint(ssl, s->fpr[i]) < 0)
            s->fpr[i][0] = '\0';
        s->reused[i] = SSL_session_reused(ssl);
        unsigned char buf[5];
        int n = vmseal_tls_read_full(ssl, buf, sizeof(buf), 5000);
        if (n == (int)sizeof(buf))
            (void)vmseal_tls_write_full(ssl, buf, sizeof(buf), 5000);
        else if (n < 0) {
            s->rc[i] = n;
            snprintf(s->err[i], sizeof(s->err[i]), "%s", vmseal_last_error());
        }
        vmseal_tls_close(ssl);
    }
    return NULL;
}

static SSL_CTX *server_ctx(const char *cert, const char *key, int require_eku)
{
    char c[256], k[256], ca[256];
    path(c, cert);
    path(k, key);
    path(ca, "ca.crt");
    vmseal_tls_config cfg = {.cert_file = c, .key_file = k, .ca_file = ca,
                             .require_client_cert = 1, .require_eku = require_eku};
    SSL_CTX *ctx = vmseal_tls_server_ctx_new(&cfg);
    assert_non_null(ctx);
    return ctx;
}

static void server_start_t(struct server *s, SSL_CTX *ctx, int conns, int timeout_ms)
{
    memset(s, 0, sizeof(*s));
    s->ctx = ctx;
    s->conns = conns;
    s->accept_timeout = timeout_ms;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->lfd, 8), 0);
    socklen_t al = sizeof(a);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &al), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->th, NULL, server_main, s), 0);
}

static void server_start(struct server *s, SSL_CTX *ctx, int conns)
{
    server_start_t(s, ctx, conns, 5000);
}

static void server_join(struct server *s)
{
    pthread_join(s->th, NULL);
    close(s->lfd);
    SSL_CTX_free(s->ctx);
}

static SSL_CTX *client_ctx(const char *cert, const char *ca_name, const char *server_name)
{
    char c[256], k[256], ca[256];
    if (cert) {
        snprintf(c, sizeof(c), "%s/%s.crt", dir, cert);
        snprintf(k, sizeof(k), "%s/%s.key", dir, cert);
    }
    path(ca, ca_name);
    vmseal_tls_config cfg = {.cert_file = cert ? c : NULL, .key_file = cert ? k : NULL,
                             .ca_file = ca, .require_eku = 1, .server_name = server_name};
    SSL_CTX *ctx = vmseal_tls_client_ctx_new(&cfg);
    assert_non_null(ctx);
    return ctx;
}

/* Connect, then send and receive 5 bytes. Returns 0 or the first error. */
static int client_talk(SSL_CTX *ctx, int port, SSL_SESSION *resume, SSL_SESSION **sess_out,
                       char *err, size_t errlen)
{
    SSL *ssl = NULL;
    int r = vmseal_tls_connect(ctx, "127.0.0.1", port, 5000, resume, &ssl);
    if (r == 0) {
        r = vmseal_tls_write_full(ssl, "hello", 5, 5000);
        if (r >= 0) {
            char buf[5];
            r = vmseal_tls_read_full(ssl, buf, 5, 5000);
            if (r == 5)
                r = memcmp(buf, "hello", 5) == 0 ? 0 : -EPROTO;
            else if (r == 0)
                r = -ECONNRESET;
        }
        if (r == 0 && sess_out)
            *sess_out = SSL_get1_session(ssl);
        if (r < 0)
            snprintf(err, errlen, "%s", vmseal_last_error());
        vmseal_tls_close(ssl);
    } else {
        snprintf(err, errlen, "%s", vmseal_last_error());
    }
    return r;
}

/* --- tests --------------------------------------------------------------- */

static void test_mutual_tls_ok(void **state)
{
    (void)state;
    struct server s;
    server_start(&s, server_ctx("server.crt", "server.key", 1), 1);
    SSL_CTX *c = client_ctx("client", "ca.crt", NULL);
    char err[512] = "";
    assert_int_equal(client_talk(c, s.port, NULL, NULL, err, sizeof(err)), 0);
    server_join(&s);
    assert_int_equal(s.rc[0], 0);
    assert_string_equal(s.subject[0], "CN=client,O=vmseal");
    /* fingerprint = SHA-256 of the DER client certificate */
    char p[256];
    snprintf(p, sizeof(p), "%s/client.crt", dir);
    X509 *x;
    assert_int_equal(vmseal_pki_read_cert(p, &x), 0);
    unsigned char md[32];
    unsigned int mdlen = 0;
    assert_int_equal(X509_digest(x, EVP_sha256(), md, &mdlen), 1);
    char hex[65];
    vmseal_hex_encode(md, 32, hex);
    assert_string_equal(s.fpr[0], hex);
    X509_free(x);
    SSL_CTX_free(c);
}

static void expect_server_refusal(const char *client_cert, int require_eku, const char *reason)
{
    struct server s;
    server_start(&s, server_ctx("server.crt", "server.key", require_eku), 1);
    SSL_CTX *c = client_ctx(client_cert, "ca.crt", NULL);
    char err[512] = "";
    int r = client_talk(c, s.port, NULL, NULL, err, sizeof(err));
    server_join(&s);
    SSL_CTX_free(c);
    assert_true(r < 0);
    assert_true(s.rc[0] < 0);
    if (!strstr(s.err[0], reason))
        fail_msg("server said \"%s\", expected \"%s\"", s.err[0], reason);
}

static void test_wrong_ca_refused(void **state)
{
    (void)state;
    expect_server_refusal("stranger", 1, "client certificate not signed by a trusted CA");
}

static void test_no_eku_refused(void **state)
{
    (void)state;
    expect_server_refusal("noeku", 1, "lacks the clientAuth extended key usage");
    expect_server_refusal("srvonly", 1, "lacks the clientAuth extended key usage");
}

static void test_no_eku_allowed_when_not_required(void **state)
{
    (void)state;
    struct server s;
    server_start(&s, server_ctx("server.crt", "server.key", 0), 1);
    SSL_CTX *c = client_ctx("noeku", "ca.crt", NULL);
    char err[512] = "";
    assert_int_equal(client_talk(c, s.port, NULL, NULL, err, sizeof(err)), 0);
    server_join(&s);
    assert_string_equal(s.subject[0], "CN=noeku,O=vmseal");
    SSL_CTX_free(c);
}

static void test_expired_refused(void **state)
{
    (void)state;
    expect_server_refusal("expired", 1, "certificate expired");
}

static void test_no_client_cert_refused(void **state)
{
    (void)state;
    expect_server_refusal(NULL, 1, "no client certificate presented");
}

static void test_server_name_mismatch(void **state)
{
    (void)state;
    struct server s;
    server_start(&s, server_ctx("server.crt", "server.key", 1), 1);
    SSL_CTX *c = client_ctx("client", "ca.crt", "kms.example.org");
    char err[512] = "";
    assert_true(client_talk(c, s.port, NULL, NULL, err, sizeof(err)) < 0);
    server_join(&s);
    SSL_CTX_free(c);
    if (!strstr(err, "server name mismatch"))
        fail_msg("client said \"%s\"", err);
    /* and the name the certificate does carry is accepted */
    server_start(&s, server_ctx("server.crt", "server.key", 1), 1);
    c = client_ctx("client", "ca.crt", "localhost");
    assert_int_equal(client_talk(c, s.port, NULL, NULL, err, sizeof(err)), 0);
    server_join(&s);
    SSL_CTX_free(c);
}

static void test_untrusted_server(void **state)
{
    (void)state;
    struct server s;
    server_start(&s, server_ctx("server2.crt", "server2.key", 1), 1);
    SSL_CTX *c = client_ctx("client", "ca.crt", NULL);
    char err[512] = "";
    assert_true(client_talk(c, s.port, NULL, NULL, err, sizeof(err)) < 0);
    server_join(&s);
    SSL_CTX_free(c);
    if (!strstr(err, "server certificate not signed by a trusted CA"))
        fail_msg("client said \"%s\"", err);
}

static void test_protocol_version(void **state)
{
    (void)state;
    struct server s;
    server_start(&s, server_ctx("server.crt", "server.key", 1), 1);
    SSL_CTX *c = client_ctx("client", "ca.crt", NULL);
    SSL_CTX_set_min_proto_version(c, TLS1_VERSION);
    SSL_CTX_set_max_proto_version(c, TLS1_1_VERSION);
    SSL_CTX_set_cipher_list(c, "DEFAULT:@SECLEVEL=0");
    char err[512] = "";
    assert_true(client_talk(c, s.port, NULL, NULL, err, sizeof(err)) < 0);
    server_join(&s);
    SSL_CTX_free(c);
    if (!strstr(s.err[0], "protocol version"))
        fail_msg("server said \"%s\"", s.err[0]);
}

static void resume_with(int version)
{
    struct server s;
    server_start(&s, server_ctx("server.crt", "server.key", 1), 2);
    SSL_CTX *c = client_ctx("client", "ca.crt", NULL);
    SSL_CTX_set_max_proto_version(c, version);
    SSL_SESSION *sess = NULL;
    char err[512] = "";
    assert_int_equal(client_talk(c, s.port, NULL, &sess, err, sizeof(err)), 0);
    assert_non_null(sess);
    assert_int_equal(client_talk(c, s.port, sess, NULL, err, sizeof(err)), 0);
    server_join(&s);
    SSL_SESSION_free(sess);
    SSL_CTX_free(c);
    assert_int_equal(s.reused[0], 0);
    assert_int_equal(s.reused[1], 1);
    /* the identity survives resumption */
    assert_string_equal(s.subject[1], "CN=client,O=vmseal");
}

static void test_resumption_tls12(void **state)
{
    (void)state;
    resume_with(TLS1_2_VERSION);
}

static void test_resumption_tls13(void **state)
{
    (void)state;
    resume_with(TLS1_3_VERSION);
}

static void test_accept_timeout(void **state)
{
    (void)state;
    struct server s;
    server_start_t(&s, server_ctx("server.crt", "server.key", 1), 1, 300);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)s.port)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    server_join(&s); /* silent client: the handshake must give up */
    clock_gettime(CLOCK_MONOTONIC, &t1);
    close(fd);
    assert_int_equal(s.rc[0], -ETIMEDOUT);
    assert_non_null(strstr(s.err[0], "timed out"));
    assert_true(t1.tv_sec - t0.tv_sec < 4);
}

static void test_garbage_is_not_tls(void **state)
{
    (void)state;
    struct server s;
    server_start(&s, server_ctx("server.crt", "server.key", 1), 1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)s.port)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    const char req[] = "GET / HTTP/1.0\r\n\r\n";
    assert_int_equal(write(fd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
    server_join(&s);
    close(fd);
    assert_true(s.rc[0] < 0);
    assert_non_null(strstr(s.err[0], "HTTP"));
}

static void test_legacy_cbc_suites(void **state)
{
    (void)state;
    /* A client offering only the legacy CBC suites still completes a
     * TLS 1.2 handshake with our server (the RSA server key is what
     * pykmip-server would use; here: a fresh RSA pair). */
    char ca[256], c[256], k[256];
    path(ca, "ca.crt");
    X509 *cacert;
    EVP_PKEY *cakey;
    char p[256];
    path(p, "ca.crt");
    assert_int_equal(vmseal_pki_read_cert(p, &cacert), 0);
    path(p, "ca.key");
    assert_int_equal(vmseal_pki_read_key(p, &cakey), 0);
    static const char *const ips[] = {"127.0.0.1"};
    vmseal_pki_req req = {.common_name = "rsa-server", .key_type = VMSEAL_PKI_RSA2048,
                          .eku = VMSEAL_PKI_EKU_SERVER, .ip_addrs = ips, .n_ip = 1,
                          .not_before_s = -60, .not_after_s = 86400};
    X509 *cert;
    EVP_PKEY *key;
    assert_int_equal(vmseal_pki_issue(&req, cacert, cakey, &key, &cert), 0);
    path(c, "rsa.crt");
    path(k, "rsa.key");
    assert_int_equal(vmseal_pki_write_cert(c, cert, 0), 0);
    assert_int_equal(vmseal_pki_write_key(k, key, 0), 0);
    /* the key file is private */
    struct stat st;
    assert_int_equal(stat(k, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* refuses to overwrite */
    assert_int_equal(vmseal_pki_write_key(k, key, 0), -EEXIST);
    X509_free(cert);
    EVP_PKEY_free(key);
    X509_free(cacert);
    EVP_PKEY_free(cakey);

    struct server s;
    server_start(&s, server_ctx("rsa.crt", "rsa.key", 1), 1);
    char cc[256], ck[256];
    path(cc, "client.crt");
    path(ck, "client.key");
    vmseal_tls_config cfg = {.cert_file = cc, .key_file = ck, .ca_file = ca,
                             .legacy_cbc_suites = 1};
    SSL_CTX *cl = vmseal_tls_client_ctx_new(&cfg);
    assert_non_null(cl);
    SSL_CTX_set_max_proto_version(cl, TLS1_2_VERSION);
    assert_int_equal(SSL_CTX_set_cipher_list(cl, "ECDHE-RSA-AES256-SHA384:AES256-SHA256"), 1);
    char err[512] = "";
    assert_int_equal(client_talk(cl, s.port, NULL, NULL, err, sizeof(err)), 0);
    server_join(&s);
    SSL_CTX_free(cl);
}

static void test_bad_config(void **state)
{
    (void)state;
    vmseal_tls_config cfg = {.cert_file = "/nonexistent.crt", .key_file = "/nonexistent.key",
                             .ca_file = "/nonexistent.ca", .require_client_cert = 1};
    assert_null(vmseal_tls_server_ctx_new(&cfg));
    assert_non_null(strstr(vmseal_last_error(), "/nonexistent.crt"));
    char c[256], k[256];
    path(c, "server.crt");
    path(k, "client.key");
    vmseal_tls_config cfg2 = {.cert_file = c, .key_file = k, .ca_file = c,
                              .require_client_cert = 1};
    assert_null(vmseal_tls_server_ctx_new(&cfg2));
    assert_non_null(strstr(vmseal_last_error(), "does not match"));
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mutual_tls_ok),
        cmocka_unit_test(test_wrong_ca_refused),
        cmocka_unit_test(test_no_eku_refused),
        cmocka_unit_test(test_no_eku_allowed_when_not_required),
        cmocka_unit_test(test_expired_refused),
        cmocka_unit_test(test_no_client_cert_refused),
        cmocka_unit_test(test_server_name_mismatch),
        cmocka_unit_test(test_untrusted_server),
        cmocka_unit_test(test_protocol_version),
        cmocka_unit_test(test_resumption_tls12),
        cmocka_unit_test(test_resumption_tls13),
        cmocka_unit_test(test_accept_timeout),
        cmocka_unit_test(test_garbage_is_not_tls),
        cmocka_unit_test(test_legacy_cbc_suites),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, setup_pki, teardown_pki);
}
