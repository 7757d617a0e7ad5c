/* HTTPS plumbing: the OpenSSL+libmicrohttpd server and the libcurl client,
 * against each other over real TLS on 127.0.0.1: mutual TLS round trips,
 * peer identity in handlers, refused clients (no certificate, wrong CA),
 * a client that does not trust the server, 413 for large bodies (declared
 * and chunked), concurrent requests, and a server without client certs. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
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
    vmseal_json_wipe_on_free();
    strcpy(dir, "/tmp/vmseal-https.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    X509 *ca, *ca2;
    EVP_PKEY *cakey, *ca2key;
    testutil_issue(dir, "ca", "Test CA", 1, 0, -3600, 86400, NULL, NULL, &ca, &cakey);
    testutil_issue(dir, "ca2", "Other CA", 1, 0, -3600, 86400, NULL, NULL, &ca2, &ca2key);
    testutil_issue(dir, "server", "manager.test", 0, VMSEAL_PKI_EKU_SERVER,
                   -3600, 86400, ca, cakey, NULL, NULL);
    testutil_issue(dir, "client", "host-a", 0, VMSEAL_PKI_EKU_CLIENT,
                   -3600, 86400, ca, cakey, NULL, NULL);
    testutil_issue(dir, "stranger", "stranger", 0, VMSEAL_PKI_EKU_CLIENT,
                   -3600, 86400, ca2, ca2key, NULL, NULL);
    testutil_issue(dir, "server2", "impostor", 0, VMSEAL_PKI_EKU_SERVER,
                   -3600, 86400, ca2, ca2key, NULL, NULL);
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

/* The handler echoes what it saw. /slow sleeps to overlap requests. */
static void echo(void *arg, const vmseal_http_request *req, vmseal_http_response *resp)
{
    int *calls = arg;
    __atomic_add_fetch(calls, 1, __ATOMIC_SEQ_CST);
    if (strcmp(req->path, "/slow") == 0)
        usleep(300000);
    if (strcmp(req->path, "/missing") == 0) {
        vmseal_http_error(resp, 404, "no such thing: %s", req->path);
        return;
    }
    const char *q = vmseal_http_query(req, "x");
    const char *auth = vmseal_http_header(req, "authorization");
    json_t *body = req->body_len ? json_loadb(req->body, req->body_len, 0, NULL) : NULL;
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:I,s:s?,s:s?,s:o?}", "method", req->method, "path",
                          req->path, "subject", req->peer_subject, "fingerprint",
                          req->peer_fingerprint, "body_len", (json_int_t)req->body_len, "x", q,
                          "auth", auth, "body", body);
    vmseal_http_add_header(resp, "X-Test", "yes");
    vmseal_http_json(resp, 200, o);
}

static vmseal_https_server *start(int require_client_cert, size_t max_body, int *calls)
{
    static char cert[256], key[256], ca[256];
    p(cert, "server.crt");
    p(key, "server.key");
    p(ca, "ca.crt");
    vmseal_https_config cfg = {
        .port = 0,
        .tls = {.cert_file = cert, .key_file = key, .ca_file = ca,
                .require_client_cert = require_client_cert, .require_eku = 1},
        .max_body = max_body,
        .handler = echo,
        .handler_arg = calls,
    };
    vmseal_https_server *srv = NULL;
    int rc = vmseal_https_server_start(&cfg, &srv);
    if (rc < 0)
        fprintf(stderr, "start: %s\n", vmseal_last_error());
    assert_int_equal(rc, 0);
    assert_true(vmseal_https_server_port(srv) > 0);
    return srv;
}

static vmseal_http_client *client(const char *ca, const char *who)
{
    char cap[256], cert[256], key[256];
    p(cap, ca);
    vmseal_http_client_config cfg = {.ca_file = cap, .timeout_ms = 10000};
    if (who) {
        snprintf(cert, sizeof(cert), "%s/%s.crt", dir, who);
        snprintf(key, sizeof(key), "%s/%s.key", dir, who);
        cfg.cert_file = cert;
        cfg.key_file = key;
    }
    vmseal_http_client *c = NULL;
    assert_int_equal(vmseal_http_client_new(&cfg, &c), 0);
    return c;
}

static void url(char *out, vmseal_https_server *srv, const char *host, const char *path)
{
    snprintf(out, 256, "https://%s:%d%s", host, vmseal_https_server_port(srv), path);
}

static void test_mtls_round_trip(void **state)
{
    (void)state;
    int calls = 0;
    vmseal_https_server *srv = start(1, 0, &calls);
    vmseal_http_client *c = client("ca.crt", "client");
    assert_int_equal(vmseal_http_client_set_token(c, "tok123"), 0);
    char u[256];
    url(u, srv, "127.0.0.1", "/api/v1/things?x=a%20b");
    json_t *req = json_pack("{s:s,s:i}", "name", "vm1", "n", 3);
    long status = 0;
    json_t *resp = NULL;
    for (int round = 0; round < 3; round++) {   /* connection reuse */
        assert_int_equal(vmseal_http_call(c, "POST", u, req, &status, &resp), 0);
        assert_int_equal(status, 200);
        assert_string_equal(json_string_value(json_object_get(resp, "method")), "POST");
        assert_string_equal(json_string_value(json_object_get(resp, "path")), "/api/v1/things");
        assert_string_equal(json_string_value(json_object_get(resp, "x")), "a b");
        assert_string_equal(json_string_value(json_object_get(resp, "auth")), "Bearer tok123");
        assert_string_equal(json_string_value(json_object_get(resp, "subject")), "CN=host-a,O=vmseal");
        assert_int_equal(strlen(json_string_value(json_object_get(resp, "fingerprint"))), 64);
        json_t *echoed = json_object_get(resp, "body");
        assert_true(json_equal(echoed, req));
        json_decref(resp);
    }
    /* GET without body, name-based URL, error status with JSON body */
    url(u, srv, "localhost", "/missing");
    assert_int_equal(vmseal_http_call(c, "GET", u, NULL, &status, &resp), 0);
    assert_int_equal(status, 404);
    assert_string_equal(vmseal_http_error_text(resp), "no such thing: /missing");
    json_decref(resp);
    /* DELETE without body */
    url(u, srv, "127.0.0.1", "/x");
    assert_int_equal(vmseal_http_call(c, "DELETE", u, NULL, &status, &resp), 0);
    assert_int_equal(status, 200);
    assert_int_equal(json_integer_value(json_object_get(resp, "body_len")), 0);
    json_decref(resp);
    json_decref(req);
    vmseal_http_client_free(c);
    vmseal_https_server_stop(srv);
    assert_int_equal(calls, 5);
}

static void test_client_without_cert_refused(void **state)
{
    (void)state;
    int calls = 0;
    vmseal_https_server *srv = start(1, 0, &calls);
    vmseal_http_client *c = client("ca.crt", NULL);
    char u[256];
    url(u, srv, "127.0.0.1", "/x");
    long status = 0;
    json_t *resp = NULL;
    int rc = vmseal_http_call(c, "GET", u, NULL, &status, &resp);
    assert_true(rc < 0);
    assert_null(resp);
    assert_int_equal(status, 0);
    vmseal_http_client_free(c);
    vmseal_https_server_stop(srv);
    assert_int_equal(calls, 0);
}

static void test_client_from_other_ca_refused(void **state)
{
    (void)state;
    int calls = 0;
    vmseal_https_server *srv = start(1, 0, &calls);
    vmseal_http_client *c = client("ca.crt", "stranger");
    char u[256];
    url(u, srv, "127.0.0.1", "/x");
    long status = 0;
    json_t *resp = NULL;
    assert_true(vmseal_http_call(c, "GET", u, NULL, &status, &resp) < 0);
    assert_null(resp);
    vmseal_http_client_free(c);
    vmseal_https_server_stop(srv);
    assert_int_equal(calls, 0);
}

static void test_client_distrusts_server(void **state)
{
    (void)state;
    int calls = 0;
    vmseal_https_server *srv = start(1, 0, &calls);
    /* trusts only ca2: the server's certificate does not chain to it */
    vmseal_http_client *c = client("ca2.crt", "client");
    char u[256];
    url(u, srv, "127.0.0.1", "/x");
    long status = 0;
    json_t *resp = NULL;
    assert_int_equal(vmseal_http_call(c, "GET", u, NULL, &status, &resp), -EKEYREJECTED);
    assert_non_null(strstr(vmseal_last_error(), "not trusted"));
    vmseal_http_client_free(c);
    /* right CA, wrong name: the certificate is for localhost/127.0.0.1 */
    c = client("ca.crt", "client");
    char name_url[256];
    snprintf(name_url, sizeof(name_url), "https://127.0.0.2:%d/x", vmseal_https_server_port(srv));
    /* 127.0.0.2 is not in the certificate; the server listens on 127.0.0.1
     * only, so accept either a refused connection or a name mismatch. */
    int rc = vmseal_http_call(c, "GET", name_url, NULL, &status, &resp);
    assert_true(rc == -EKEYREJECTED || rc == -ECONNREFUSED);
    vmseal_http_client_free(c);
    /* nothing listening */
    c = client("ca.crt", "client");
    vmseal_https_server_stop(srv);
    assert_int_equal(vmseal_http_call(c, "GET", u, NULL, &status, &resp), -ECONNREFUSED);
    vmseal_http_client_free(c);
    assert_int_equal(calls, 0);
}

static void test_body_limit(void **state)
{
    (void)state;
    int calls = 0;
    vmseal_https_server *srv = start(1, 4096, &calls);
    vmseal_http_client *c = client("ca.crt", "client");
    char u[256];
    url(u, srv, "127.0.0.1", "/x");
    char *big = malloc(8192);
    memset(big, 'a', 8191);
    big[8191] = '\0';
    json_t *req = json_pack("{s:s}", "blob", big);
    long status = 0;
    json_t *resp = NULL;
    assert_int_equal(vmseal_http_call(c, "POST", u, req, &status, &resp), 0);
    assert_int_equal(status, 413);
    assert_non_null(strstr(vmseal_http_error_text(resp), "larger than 4096"));
    json_decref(resp);
    json_decref(req);
    /* just under the limit works */
    big[4000] = '\0';
    req = json_pack("{s:s}", "blob", big);
    vmseal_http_client_free(c);
    c = client("ca.crt", "client");
    assert_int_equal(vmseal_http_call(c, "POST", u, req, &status, &resp), 0);
    assert_int_equal(status, 200);
    json_decref(resp);
    json_decref(req);
    vmseal_http_client_free(c);

    /* chunked upload without Content-Length, over the limit */
    CURL *h = curl_easy_init();
    char cert[256], key[256], ca[256];
    p(cert, "client.crt");
    p(key, "client.key");
    p(ca, "ca.crt");
    struct curl_slist *hdrs = curl_slist_append(NULL, "Transfer-Encoding: chunked");
    memset(big, 'b', 8191);
    big[8191] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, u);
    curl_easy_setopt(h, CURLOPT_CAINFO, ca);
    curl_easy_setopt(h, CURLOPT_SSLCERT, cert);
    curl_easy_setopt(h, CURLOPT_SSLKEY, key);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, big);
    FILE *devnull = fopen("/dev/null", "w");
    curl_easy_setopt(h, CURLOPT_WRITEDATA, devnull);
    assert_int_equal(curl_easy_perform(h), CURLE_OK);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    assert_int_equal(code, 413);
    fclose(devnull);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    free(big);
    vmseal_https_server_stop(srv);
    assert_int_equal(calls, 1);
}

struct worker {
    vmseal_https_server *srv;
    int ok;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char cap[256], cert[256], key[256], u[256];
    p(cap, "ca.crt");
    p(cert, "client.crt");
    p(key, "client.key");
    vmseal_http_client_config cfg = {.ca_file = cap, .cert_file = cert, .key_file = key};
    vmseal_http_client *c = NULL;
    if (vmseal_http_client_new(&cfg, &c) < 0)
        return NULL;
    url(u, w->srv, "127.0.0.1", "/slow");
    for (int i = 0; i < 3; i++) {
        long status = 0;
        json_t *resp = NULL;
        if (vmseal_http_call(c, "GET", u, NULL, &status, &resp) == 0 && status == 200)
            w->ok++;
        json_decref(resp);
    }
    vmseal_http_client_free(c);
    return NULL;
}

static void test_concurrent_requests(void **state)
{
    (void)state;
    int calls = 0;
    vmseal_https_server *srv = start(1, 0, &calls);
    enum { N = 8 };
    pthread_t t[N];
    struct worker w[N];
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < N; i++) {
        w[i] = (struct worker){.srv = srv};
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        total += w[i].ok;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    assert_int_equal(total, N * 3);
    assert_int_equal(calls, N * 3);
    /* 24 requests of 0.3 s each: served in parallel, not one after another
     * (7.2 s); a generous bound to survive loaded machines. */
    double secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    assert_true(secs < 6.0);
    vmseal_https_server_stop(srv);
}

static void test_optional_client_cert(void **state)
{
    (void)state;
    int calls = 0;
    vmseal_https_server *srv = start(0, 0, &calls);
    char u[256];
    url(u, srv, "127.0.0.1", "/x");
    long status = 0;
    json_t *resp = NULL;
    vmseal_http_client *c = client("ca.crt", NULL);
    assert_int_equal(vmseal_http_call(c, "GET", u, NULL, &status, &resp), 0);
    assert_int_equal(status, 200);
    assert_string_equal(json_string_value(json_object_get(resp, "subject")), "");
    assert_string_equal(json_string_value(json_object_get(resp, "fingerprint")), "");
    json_decref(resp);
    vmseal_http_client_free(c);
    c = client("ca.crt", "client");
    assert_int_equal(vmseal_http_call(c, "GET", u, NULL, &status, &resp), 0);
    assert_string_equal(json_string_value(json_object_get(resp, "subject")), "CN=host-a,O=vmseal");
    json_decref(resp);
    vmseal_http_client_free(c);
    vmseal_https_server_stop(srv);
    assert_int_equal(calls, 2);
}

static void test_stop_with_open_connection(void **state)
{
    (void)state;
    int calls = 0;
    vmseal_https_server *srv = start(1, 0, &calls);
    vmseal_http_client *c = client("ca.crt", "client");
    char u[256];
    url(u, srv, "127.0.0.1", "/x");
    long status = 0;
    json_t *resp = NULL;
    assert_int_equal(vmseal_http_call(c, "GET", u, NULL, &status, &resp), 0);
    json_decref(resp);
    /* keep-alive connection still open in c */
    vmseal_https_server_stop(srv);
    vmseal_http_client_free(c);
}

static void test_config_errors(void **state)
{
    (void)state;
    vmseal_https_server *srv = NULL;
    vmseal_https_config cfg = {.handler = echo, .tls = {.cert_file = "/nonexistent"}};
    assert_true(vmseal_https_server_start(&cfg, &srv) < 0);
    assert_null(srv);
    vmseal_http_client *c = NULL;
    vmseal_http_client_config cc = {0};
    assert_int_equal(vmseal_http_client_new(&cc, &c), -EINVAL);
    cc.ca_file = "x";
    cc.cert_file = "y";
    assert_int_equal(vmseal_http_client_new(&cc, &c), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mtls_round_trip),
        cmocka_unit_test(test_client_without_cert_refused),
        cmocka_unit_test(test_client_from_other_ca_refused),
        cmocka_unit_test(test_client_distrusts_server),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_concurrent_requests),
        cmocka_unit_test(test_optional_client_cert),
        cmocka_unit_test(test_stop_with_open_connection),
        cmocka_unit_test(test_config_errors),
    };
    return cmocka_run_group_tests(tests, setup_pki, teardown_pki);
}
