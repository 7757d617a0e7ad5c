/* HTTPS server abuse limits, on 127.0.0.1 with attackers bound to
 * 127.0.0.2: a handler that runs longer than the idle timeout still
 * answers (long polls), idle keep-alive connections are closed after the
 * idle timeout, silent connections after the handshake deadline, one
 * address gets at most max_handshakes_per_addr handshakes while others are
 * served, and a full server sheds the oldest idle connection of the address
 * holding the most slots — never a request in progress — and lets an
 * address replace only its own connections older than 1 s. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <vmseal/http_client.h>
#include <vmseal/https_server.h>
#include <vmseal/pki.h>

#include "testutil.h"

static char dir[64];

static void p(char *out, const char *name)
{
    snprintf(out, 256, "%s/%s", dir, name);
}

static int setup_pki(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/vmseal-limits.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    X509 *ca;
    EVP_PKEY *cakey;
    testutil_issue(dir, "ca", "Test CA", 1, 0, -3600, 86400, NULL, NULL, &ca, &cakey);
    testutil_issue(dir, "server", "manager.test", 0, VMSEAL_PKI_EKU_SERVER,
                   -3600, 86400, ca, cakey, NULL, NULL);
    testutil_issue(dir, "client", "host-a", 0, VMSEAL_PKI_EKU_CLIENT,
                   -3600, 86400, ca, cakey, NULL, NULL);
    X509_free(ca);
    EVP_PKEY_free(cakey);
    return 0;
}

static int teardown_pki(void **state)
{
    (void)state;
    return testutil_rmtree(dir);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* /sleep?ms=N sleeps before answering. */
static void handler(void *arg, const vmseal_http_request *req, vmseal_http_response *resp)
{
    (void)arg;
    const char *ms = vmseal_http_query(req, "ms");
    if (strcmp(req->path, "/sleep") == 0 && ms)
        usleep((useconds_t)atoi(ms) * 1000);
    vmseal_http_json(resp, 200, json_pack("{s:s}", "path", req->path));
}

static vmseal_https_server *start(vmseal_https_config *cfg)
{
    static char cert[256], key[256], ca[256];
    p(cert, "server.crt");
    p(key, "server.key");
    p(ca, "ca.crt");
    cfg->bind_addr = "0.0.0.0";
    cfg->tls = (vmseal_tls_config){.cert_file = cert, .key_file = key, .ca_file = ca,
                                   .require_client_cert = 0, .require_eku = 1};
    cfg->handler = handler;
    vmseal_https_server *srv = NULL;
    int rc = vmseal_https_server_start(cfg, &srv);
    if (rc < 0)
        fprintf(stderr, "start: %s\n", vmseal_last_error());
    assert_int_equal(rc, 0);
    return srv;
}

static vmseal_http_client *client(long timeout_ms)
{
    char ca[256];
    p(ca, "ca.crt");
    vmseal_http_client_config cc = {.ca_file = ca, .timeout_ms = timeout_ms,
                                    .connect_timeout_ms = timeout_ms};
    vmseal_http_client *c = NULL;
    assert_int_equal(vmseal_http_client_new(&cc, &c), 0);
    return c;
}

static int get(vmseal_http_client *c, vmseal_https_server *srv, const char *path)
{
    char u[256];
    snprintf(u, sizeof(u), "https://127.0.0.1:%d%s", vmseal_https_server_port(srv), path);
    long status = 0;
    json_t *resp = NULL;
    int rc = vmseal_http_call(c, "GET", u, NULL, &status, &resp);
    json_decref(resp);
    return rc < 0 ? rc : (int)status;
}

/* A TCP connection from 127.0.0.2 (the attacker's address). */
static int attacker_connect(vmseal_https_server *srv)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.2", &a.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    a.sin_port = htons((uint16_t)vmseal_https_server_port(srv));
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

/* Whether the server closed fd within timeout_ms (EOF or reset). */
static int closed_within(int fd, int timeout_ms)
{
    double end = now_s() + timeout_ms / 1000.0;
    for (;;) {
        int left = (int)((end - now_s()) * 1000);
        if (left < 0)
            return 0;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, left) <= 0)
            continue;
        char b[4096];
        ssize_t r = recv(fd, b, sizeof(b), MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
            return 1;
    }
}

/* A completed TLS handshake from 127.0.0.2, then silence. */
static SSL *attacker_tls(SSL_CTX *ctx, vmseal_https_server *srv)
{
    int fd = attacker_connect(srv);
    SSL *ssl = SSL_new(ctx);
    assert_non_null(ssl);
    SSL_set_fd(ssl, fd);
    assert_int_equal(SSL_connect(ssl), 1);
    return ssl;
}

static SSL_CTX *attacker_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    return ctx;
}

static void ssl_free_all(SSL **s, int n)
{
    for (int i = 0; i < n; i++) {
        if (!s[i])
            continue;
        int fd = SSL_get_fd(s[i]);
        SSL_free(s[i]);
        close(fd);
    }
}

/* ------------------------------------------------------------- tests */

/* TLS 1.2 suites without forward secrecy or with CBC/SHA-1 are refused by
 * every HTTPS server (manager and host agent); ECDHE+AEAD and TLS 1.3 work. */
static int handshake_with(vmseal_https_server *srv, int max_version, const char *suites)
{
    SSL_CTX *ctx = attacker_ctx();
    SSL_CTX_set_max_proto_version(ctx, max_version);
    if (suites)
        assert_int_equal(SSL_CTX_set_cipher_list(ctx, suites), 1);
    int fd = attacker_connect(srv);
    SSL *ssl = SSL_new(ctx);
    assert_non_null(ssl);
    SSL_set_fd(ssl, fd);
    int ok = SSL_connect(ssl) == 1;
    ERR_clear_error();
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(ctx);
    return ok;
}

static void test_tls12_forward_secret_aead_only(void **state)
{
    (void)state;
    vmseal_https_config cfg = {0};
    vmseal_https_server *srv = start(&cfg);
    static const char *refused[] = {"AES128-SHA", "AES256-GCM-SHA384", "AES256-SHA256",
                                    "ECDHE+AES128+SHA1", "ECDHE+AES256+SHA384:!AESGCM", "ECDHE-RSA-AES128-SHA", "ECDHE-ECDSA-AES128-SHA",
                                    "DHE-RSA-AES256-GCM-SHA384"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        if (handshake_with(srv, TLS1_2_VERSION, refused[i])) {
            fprintf(stderr, "TLS 1.2 %s accepted\n", refused[i]);
            fail();
        }
    }
    assert_true(handshake_with(srv, TLS1_2_VERSION, "ECDHE+AESGCM"));
    assert_true(handshake_with(srv, TLS1_2_VERSION, "ECDHE+CHACHA20"));
    assert_true(handshake_with(srv, TLS1_3_VERSION, NULL));
    vmseal_https_server_stop(srv);
}

static void test_handler_longer_than_idle_timeout(void **state)
{
    (void)state;
    vmseal_https_config cfg = {.idle_timeout_s = 1};
    vmseal_https_server *srv = start(&cfg);
    vmseal_http_client *c = client(10000);
    double t0 = now_s();
    assert_int_equal(get(c, srv, "/sleep?ms=2500"), 200);
    assert_true(now_s() - t0 >= 2.4);
    /* the same keep-alive connection (or a new one) still works */
    assert_int_equal(get(c, srv, "/x"), 200);
    vmseal_http_client_free(c);
    vmseal_https_server_stop(srv);
}

static void test_idle_connection_closed(void **state)
{
    (void)state;
    vmseal_https_config cfg = {.idle_timeout_s = 1};
    vmseal_https_server *srv = start(&cfg);
    SSL_CTX *ctx = attacker_ctx();
    SSL *s = attacker_tls(ctx, srv);
    double t0 = now_s();
    assert_true(closed_within(SSL_get_fd(s), 5000));
    double took = now_s() - t0;
    assert_true(took >= 0.8);
    ssl_free_all(&s, 1);
    SSL_CTX_free(ctx);
    vmseal_https_server_stop(srv);
}

static void test_handshake_deadline(void **state)
{
    (void)state;
    vmseal_https_config cfg = {.handshake_timeout_ms = 700};
    vmseal_https_server *srv = start(&cfg);
    int fd = attacker_connect(srv);
    double t0 = now_s();
    assert_true(closed_within(fd, 3000));
    assert_true(now_s() - t0 >= 0.5);
    close(fd);
    vmseal_https_server_stop(srv);
}

static void test_handshakes_per_address(void **state)
{
    (void)state;
    vmseal_https_config cfg = {.max_handshakes = 8, .max_handshakes_per_addr = 2,
                               .handshake_timeout_ms = 20000};
    vmseal_https_server *srv = start(&cfg);
    enum { N = 40 };
    int fd[N];
    for (int i = 0; i < N; i++)
        fd[i] = attacker_connect(srv);
    usleep(200000);
    /* the cap (2) binds from half the handshake slots (4) on: 4 kept for
     * their handshake, the rest closed at once */
    int closed = 0;
    for (int i = 0; i < N; i++)
        closed += closed_within(fd[i], 300);
    assert_int_equal(closed, N - 4);
    /* another address is served at once */
    vmseal_http_client *c = client(2000);
    double t0 = now_s();
    assert_int_equal(get(c, srv, "/x"), 200);
    assert_true(now_s() - t0 < 1.0);
    vmseal_http_client_free(c);
    for (int i = 0; i < N; i++)
        close(fd[i]);
    vmseal_https_server_stop(srv);
}

static void test_burst_from_one_address(void **state)
{
    (void)state;
    /* below half the handshake slots (16 of 32) one address is not held to
     * its cap (4): a burst of clients behind one address gets through */
    vmseal_https_config cfg = {.max_handshakes = 32, .max_handshakes_per_addr = 4,
                               .handshake_timeout_ms = 20000};
    vmseal_https_server *srv = start(&cfg);
    enum { N = 24 };
    int fd[N];
    for (int i = 0; i < N; i++)
        fd[i] = attacker_connect(srv);
    usleep(200000);
    int closed = 0;
    for (int i = 0; i < N; i++)
        closed += closed_within(fd[i], 300);
    assert_int_equal(closed, N - 16);
    for (int i = 0; i < N; i++)
        close(fd[i]);
    vmseal_https_server_stop(srv);
}

struct long_req {
    vmseal_https_server *srv;
    int status;
};

static void *long_req_main(void *arg)
{
    struct long_req *lr = arg;
    vmseal_http_client *c = client(10000);
    lr->status = get(c, lr->srv, "/sleep?ms=3000");
    vmseal_http_client_free(c);
    return NULL;
}

static void test_full_server_sheds_oldest_idle(void **state)
{
    (void)state;
    vmseal_https_config cfg = {.max_connections = 8, .idle_timeout_s = 60};
    vmseal_https_server *srv = start(&cfg);
    /* a long request from 127.0.0.1 holds one slot */
    struct long_req lr = {srv, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, long_req_main, &lr), 0);
    usleep(300000);
    /* 127.0.0.2 fills the other 7 with idle TLS connections */
    SSL_CTX *ctx = attacker_ctx();
    enum { N = 7, MORE = 5 };
    SSL *s[N + MORE];
    for (int i = 0; i < N; i++) {
        s[i] = attacker_tls(ctx, srv);
        usleep(20000); /* distinct ages */
    }
    /* full: a new client from 127.0.0.1 is served at once, in the room of
     * the attacker's oldest connection */
    vmseal_http_client *c = client(2000);
    double t0 = now_s();
    assert_int_equal(get(c, srv, "/x"), 200);
    assert_true(now_s() - t0 < 1.0);
    assert_true(closed_within(SSL_get_fd(s[0]), 1000));
    assert_false(closed_within(SSL_get_fd(s[N - 1]), 100));
    /* more from 127.0.0.2 take neither the request in progress nor
     * 127.0.0.1's keep-alive connection: refused while the attacker's own
     * connections are younger than 1 s (no churn), then they replace its
     * own oldest */
    int fd = attacker_connect(srv);
    assert_true(closed_within(fd, 1000));
    close(fd);
    assert_false(closed_within(SSL_get_fd(s[1]), 100));
    usleep(1100000);
    for (int i = N; i < N + MORE; i++)
        s[i] = attacker_tls(ctx, srv);
    assert_true(closed_within(SSL_get_fd(s[1]), 1000));
    assert_false(closed_within(SSL_get_fd(s[N + MORE - 1]), 100));
    pthread_join(t, NULL);
    assert_int_equal(lr.status, 200);
    assert_int_equal(get(c, srv, "/y"), 200);
    vmseal_http_client_free(c);
    ssl_free_all(s, N + MORE);
    SSL_CTX_free(ctx);
    vmseal_https_server_stop(srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls12_forward_secret_aead_only),
        cmocka_unit_test(test_handler_longer_than_idle_timeout),
        cmocka_unit_test(test_idle_connection_closed),
        cmocka_unit_test(test_handshake_deadline),
        cmocka_unit_test(test_handshakes_per_address),
        cmocka_unit_test(test_burst_from_one_address),
        cmocka_unit_test(test_full_server_sheds_oldest_idle),
    };
    return cmocka_run_group_tests(tests, setup_pki, teardown_pki);
}
