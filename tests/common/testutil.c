/* Helpers shared by the C tests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include <vmseal/pki.h>

#include "testutil.h"

int testutil_run(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int testutil_rmtree(const char *dir)
{
    return testutil_run("rm -rf %s", dir) == 0 ? 0 : -1;
}

long testutil_count_in_file(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t nl = strlen(needle), cap = (1 << 20) + nl, keep = 0, n;
    char *buf = malloc(cap);
    long count = 0;
    while (buf && (n = fread(buf + keep, 1, cap - keep, f)) > 0) {
        size_t len = keep + n;
        for (char *p = buf; (p = memmem(p, (size_t)(buf + len - p), needle, nl)) != NULL; p++)
            count++;
        /* keep a tail shorter than needle: a match in it is not complete yet */
        keep = len < nl - 1 ? len : nl - 1;
        memmove(buf, buf + len - keep, keep);
    }
    fclose(f);
    free(buf);
    return buf ? count : -1;
}

int testutil_guest(char *kernel, size_t kernel_len, char *initrd, size_t initrd_len)
{
    const char *src = getenv("VMSEAL_SRC"), *bld = getenv("VMSEAL_BUILD");
    if (!src || !bld) {
        fprintf(stderr, "run through meson test\n");
        return -1;
    }
    char cmd[2048], dir[1024];
    snprintf(cmd, sizeof(cmd), "%s/tests/guest/build-guest.sh %s/guest", src, bld);
    FILE *p = popen(cmd, "r");
    if (!p || !fgets(dir, sizeof(dir), p)) {
        if (p)
            pclose(p);
        fprintf(stderr, "building the test guest failed\n");
        return -1;
    }
    if (pclose(p) != 0)
        return -1;
    dir[strcspn(dir, "\n")] = '\0';
    snprintf(kernel, kernel_len, "%s/vmlinuz", dir);
    snprintf(initrd, initrd_len, "%s/initrd.gz", dir);
    return 0;
}

void testutil_issue(const char *dir, const char *name, const char *cn, int is_ca, int eku,
                    long not_before_s, long not_after_s, X509 *ca, EVP_PKEY *cakey,
                    X509 **cert_out, EVP_PKEY **key_out)
{
    static const char *const dns[] = {"localhost"};
    static const char *const ips[] = {"127.0.0.1"};
    vmseal_pki_req req = {
        .common_name = cn, .organization = "vmseal", .key_type = VMSEAL_PKI_EC_P256,
        .is_ca = is_ca, .eku = eku, .not_before_s = not_before_s, .not_after_s = not_after_s,
    };
    if (eku & VMSEAL_PKI_EKU_SERVER) {
        req.dns_names = dns;
        req.n_dns = 1;
        req.ip_addrs = ips;
        req.n_ip = 1;
    }
    X509 *cert;
    EVP_PKEY *key;
    assert_int_equal(vmseal_pki_issue(&req, ca, cakey, &key, &cert), 0);
    char path[512];
    snprintf(path, sizeof(path), "%s/%s.crt", dir, name);
    assert_int_equal(vmseal_pki_write_cert(path, cert, 0), 0);
    snprintf(path, sizeof(path), "%s/%s.key", dir, name);
    assert_int_equal(vmseal_pki_write_key(path, key, 0), 0);
    if (cert_out)
        *cert_out = cert;
    else
        X509_free(cert);
    if (key_out)
        *key_out = key;
    else
        EVP_PKEY_free(key);
}
