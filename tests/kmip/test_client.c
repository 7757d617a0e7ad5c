/* KMIP client without a server: configuration checks and the error a
 * cluster of unreachable servers gives (real sockets, closed ports). */
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include <vmseal/kmip_client.h>
#include <vmseal/pki.h>

/* A port on 127.0.0.1 where nothing listens (bound, never listened). */
static int closed_port(int *fd)
{
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(*fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t l = sizeof(a);
    assert_int_equal(getsockname(*fd, (struct sockaddr *)&a, &l), 0);
    return ntohs(a.sin_port);
}

static void test_config_errors(void **state)
{
    (void)state;
    vmseal_kmip_client *c = (vmseal_kmip_client *)0x1;
    vmseal_kmip_client_config cfg = {0};
    assert_int_equal(vmseal_kmip_client_new(&cfg, &c), -EINVAL);
    assert_null(c);
    static const char *bad[] = {"host:0", "host:65536", "host:x", ":5696", "[::1", "[::1]x", "h:12a"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *s[] = {bad[i]};
        cfg.servers = s;
        cfg.n_servers = 1;
        if (vmseal_kmip_client_new(&cfg, &c) != -EINVAL)
            fail_msg("accepted server address %s", bad[i]);
    }
    const char *s[] = {"127.0.0.1:5696"};
    cfg.servers = s;
    cfg.version = (vmseal_kmip_version){2, 0};
    assert_int_equal(vmseal_kmip_client_new(&cfg, &c), -ENOTSUP);
    cfg.version = (vmseal_kmip_version){0, 0};
    cfg.tls.ca_file = "/nonexistent/ca.pem";
    assert_int_equal(vmseal_kmip_client_new(&cfg, &c), -EINVAL);
    assert_non_null(strstr(vmseal_last_error(), "/nonexistent/ca.pem"));
}

static void test_unreachable_cluster(void **state)
{
    (void)state;
    int fd1, fd2;
    char a[64], b[64];
    snprintf(a, sizeof(a), "127.0.0.1:%d", closed_port(&fd1));
    snprintf(b, sizeof(b), "[::1]:%d", closed_port(&fd2));
    const char *servers[] = {a, b, "localhost"};
    /* A CA to trust (the client refuses to run without one). */
    char ca[] = "/tmp/vmseal-test-ca-XXXXXX";
    int cafd = mkstemp(ca);
    assert_true(cafd >= 0);
    close(cafd);
    vmseal_pki_req req = {.common_name = "test CA", .key_type = VMSEAL_PKI_EC_P256, .is_ca = 1,
                          .not_before_s = -60, .not_after_s = 3600};
    EVP_PKEY *k;
    X509 *x;
    assert_int_equal(vmseal_pki_issue(&req, NULL, NULL, &k, &x), 0);
    assert_int_equal(vmseal_pki_write_cert(ca, x, 0), 0);
    EVP_PKEY_free(k);
    X509_free(x);
    vmseal_kmip_client_config cfg = {.servers = servers, .n_servers = 2, .connect_timeout_ms = 2000,
                                     .tls = {.ca_file = ca}};
    vmseal_kmip_client *c;
    assert_int_equal(vmseal_kmip_client_new(&cfg, &c), 0);
    assert_null(vmseal_kmip_client_server(c));
    char *uid = NULL;
    int rc = vmseal_kmip_create_aes(c, NULL, &uid);
    assert_int_equal(rc, -EHOSTUNREACH);
    assert_null(uid);
    /* One line that names every server tried, in order. */
    const char *msg = vmseal_last_error();
    const char *pa = strstr(msg, a), *pb = strstr(msg, b);
    assert_non_null(pa);
    assert_non_null(pb);
    assert_true(pa < pb);
    vmseal_secret *key = (vmseal_secret *)0x1;
    assert_int_equal(vmseal_kmip_get_key(c, "1", &key), -EHOSTUNREACH);
    assert_null(key);
    assert_int_equal(vmseal_kmip_get_key(c, "", &key), -EINVAL);
    vmseal_kmip_create_opts o = {.bits = 100};
    vmseal_kmip_client_free(c);

    /* With a fixed version no connection is needed to refuse bad input. */
    cfg.version = (vmseal_kmip_version){1, 2};
    assert_int_equal(vmseal_kmip_client_new(&cfg, &c), 0);
    assert_int_equal(vmseal_kmip_create_aes(c, &o, &uid), -EINVAL);
    assert_int_equal(vmseal_kmip_client_version(c).minor, 2);
    vmseal_kmip_client_free(c);
    unlink(ca);
    close(fd1);
    close(fd2);
}

static void test_attr_value(void **state)
{
    (void)state;
    vmseal_ttlv *p = vmseal_ttlv_struct(VMSEAL_KMIP_TAG_RESPONSE_PAYLOAD);
    for (int i = 0; i < 3; i++) {
        vmseal_ttlv *a = vmseal_ttlv_add_struct(p, VMSEAL_KMIP_TAG_ATTRIBUTE);
        vmseal_ttlv_add_text(a, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, i == 1 ? "State" : "Object Group");
        vmseal_ttlv_add_int(a, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE, i);
    }
    int32_t v;
    assert_int_equal(vmseal_ttlv_get_int(vmseal_kmip_attr_value(p, "Object Group", 1), &v), 0);
    assert_int_equal(v, 2);
    assert_int_equal(vmseal_ttlv_get_int(vmseal_kmip_attr_value(p, "State", 0), &v), 0);
    assert_int_equal(v, 1);
    assert_null(vmseal_kmip_attr_value(p, "State", 1));
    assert_null(vmseal_kmip_attr_value(p, "Name", 0));
    assert_null(vmseal_kmip_attr_value(NULL, "Name", 0));
    vmseal_ttlv_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_unreachable_cluster),
        cmocka_unit_test(test_attr_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
