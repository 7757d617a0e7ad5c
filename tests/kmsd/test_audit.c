/* kmsd audit hash chain: the construction (checked against OpenSSL directly),
 * the line parser, continuing the chain across reopen, torn lines at open
 * and after a short write (RLIMIT_FSIZE), a second writer refused, and the
 * verifier on tampered logs. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "audit.h"
#include "log.h"

static char dir[64], path[128];
static const unsigned char zero[32];

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/vmseal-audit.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof(path), "%s/audit.log", dir);
    kmsd_log_open(NULL, KMSD_LOG_ERROR, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kmsd_audit_close();
    unlink(path);
    return rmdir(dir);
}

static void reset_file(void)
{
    kmsd_audit_close();
    unlink(path);
}

static char *slurp(size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[1 << 16];
    *len = fread(buf, 1, sizeof(buf) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static void append_raw(const char *s, size_t n)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, s, n), (ssize_t)n);
    close(fd);
}

static void hex(const unsigned char *in, char out[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", in[i]);
}

/* A chained line BODY seq=N prev=P hash=H (no newline); updates prev. */
static size_t make_line(char *out, size_t room, const char *body, uint64_t seq,
                        unsigned char prev[32])
{
    unsigned char h[32];
    assert_int_equal(kmsd_audit_chain_hash(prev, body, strlen(body), seq, h), 0);
    char p[65], hh[65];
    hex(prev, p);
    hex(h, hh);
    int n = snprintf(out, room, "%s seq=%" PRIu64 " prev=%s hash=%s", body, seq, p, hh);
    memcpy(prev, h, 32);
    return (size_t)n;
}

static void test_construction(void **state)
{
    (void)state;
    const char *body = "2025-05-01T10:22:00.512Z audit peer=- identity=\"x\" op=Get uid=\"2\" "
                       "result=Success";
    unsigned char prev[32], got[32], want[32];
    for (int i = 0; i < 32; i++)
        prev[i] = (unsigned char)i;
    assert_int_equal(kmsd_audit_chain_hash(prev, body, strlen(body), 12, got), 0);
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    assert_true(EVP_DigestInit_ex(m, EVP_sha256(), NULL) && EVP_DigestUpdate(m, prev, 32) &&
                EVP_DigestUpdate(m, body, strlen(body)) && EVP_DigestUpdate(m, "12", 2) &&
                EVP_DigestFinal_ex(m, want, NULL));
    EVP_MD_CTX_free(m);
    assert_memory_equal(got, want, 32);
}

static void test_parse(void **state)
{
    (void)state;
    char line[1024];
    unsigned char prev[32] = {0};
    /* a quoted reason may hold text that looks like chain fields */
    const char *body = "T audit peer=- identity=\"a\" op=Get uid=\"1\" result=Failed "
                       "reason=\"x seq=1 prev=00 hash=00\"";
    size_t n = make_line(line, sizeof(line), body, 1, prev);
    kmsd_audit_record r;
    assert_int_equal(kmsd_audit_parse_line(line, n, &r), 0);
    assert_int_equal(r.seq, 1);
    assert_int_equal(r.body_len, strlen(body));
    assert_true(r.hash_ok);
    assert_false(r.recovered);
    assert_memory_equal(r.prev, zero, 32);
    assert_memory_equal(r.hash, prev, 32);

    /* every byte counts: one flipped bit anywhere is refused or mismatches */
    for (size_t i = 0; i < n; i++) {
        line[i] ^= 1;
        int rc = kmsd_audit_parse_line(line, n, &r);
        assert_true(rc < 0 || !r.hash_ok || memcmp(r.hash, prev, 32) != 0 ||
                    memcmp(r.prev, zero, 32) != 0 || r.seq != 1);
        line[i] ^= 1;
    }
    /* strict syntax */
    const char *bad[] = {
        "x seq=01 prev=0000000000000000000000000000000000000000000000000000000000000000 hash="
        "0000000000000000000000000000000000000000000000000000000000000000",
        "x seq=0 prev=0000000000000000000000000000000000000000000000000000000000000000 hash="
        "0000000000000000000000000000000000000000000000000000000000000000",
        "x seq=10000000000000000000 prev=000000000000000000000000000000000000000000000000000000"
        "0000000000 hash=0000000000000000000000000000000000000000000000000000000000000000",
        "x seq=1 prev=000000000000000000000000000000000000000000000000000000000000000A hash="
        "0000000000000000000000000000000000000000000000000000000000000000",
        "x seq=1 prev=0000000000000000000000000000000000000000000000000000000000000000 hash="
        "000000000000000000000000000000000000000000000000000000000000000",
        "x seq=1  prev=0000000000000000000000000000000000000000000000000000000000000000 hash="
        "0000000000000000000000000000000000000000000000000000000000000000",
        "x seq= prev=0000000000000000000000000000000000000000000000000000000000000000 hash="
        "0000000000000000000000000000000000000000000000000000000000000000",
        "seq=1 prev=0000000000000000000000000000000000000000000000000000000000000000 hash="
        "0000000000000000000000000000000000000000000000000000000000000000",
        "",
        "hash=",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(kmsd_audit_parse_line(bad[i], strlen(bad[i]), &r), -1);
    /* the greatest seq, and NULs in the body */
    char nul[] = "a\0b";
    memset(prev, 0, 32);
    unsigned char h[32];
    assert_int_equal(kmsd_audit_chain_hash(prev, nul, 3, UINT64_C(9999999999999999999), h), 0);
    char hh[65];
    hex(h, hh);
    memcpy(line, nul, 3);
    n = 3 + (size_t)snprintf(line + 3, sizeof(line) - 3, " seq=9999999999999999999 prev=%064d hash=%s",
                             0, hh);
    assert_int_equal(kmsd_audit_parse_line(line, n, &r), 0);
    assert_true(r.hash_ok);
    assert_int_equal(r.body_len, 3);
}

static void write_records(int k)
{
    for (int i = 0; i < k; i++)
        kmsd_audit("127.0.0.1:5", "CN=a,O=\"q\"\n", "Get", "1", "Failed", "why seq=1\x01");
}

static uint64_t verify_ok(uint64_t records, uint64_t skipped)
{
    kmsd_audit_verifier v;
    int rc = kmsd_audit_verify_file(path, &v);
    if (rc != 0)
        print_error("%s\n", v.error);
    assert_int_equal(rc, 0);
    assert_int_equal(v.records, records);
    assert_int_equal(v.skipped, skipped);
    return v.records;
}

static void test_reopen_continues(void **state)
{
    (void)state;
    reset_file();
    assert_int_equal(kmsd_audit_open(path), 0);
    write_records(3);
    kmsd_audit_close();
    assert_int_equal(kmsd_audit_open(path), 0);
    write_records(2);
    kmsd_audit_close();
    verify_ok(5, 0);
    size_t len;
    char *s = slurp(&len);
    /* escaping kept: one line per record, no raw control characters */
    int lines = 0;
    for (size_t i = 0; i < len; i++) {
        lines += s[i] == '\n';
        assert_true(s[i] == '\n' || (unsigned char)s[i] >= 0x20);
    }
    assert_int_equal(lines, 5);
    assert_non_null(strstr(s, "identity=\"CN=a,O=\\\"q\\\"\\x0a\""));
    assert_non_null(strstr(s, "reason=\"why seq=1\\x01\" seq=5 prev="));
}

static void test_torn_at_open(void **state)
{
    (void)state;
    reset_file();
    assert_int_equal(kmsd_audit_open(path), 0);
    write_records(2);
    kmsd_audit_close();
    const char *torn = "2025-01-01T00:00:00.000Z audit peer=1.2.3.4:5 iden";
    append_raw(torn, strlen(torn));
    assert_int_equal(kmsd_audit_open(path), 0);
    write_records(1);
    kmsd_audit_close();
    verify_ok(4, 1);
    size_t len;
    char *s = slurp(&len);
    assert_non_null(strstr(s, " iden\n"));
    assert_non_null(strstr(s, " op=audit.recovered uid=\"\" result=Success torn_bytes=50 torn_sha256="));

    /* a file that is only a torn line */
    reset_file();
    append_raw("garbage", 7);
    assert_int_equal(kmsd_audit_open(path), 0);
    write_records(1);
    kmsd_audit_close();
    verify_ok(2, 1);
}

static void test_legacy_tail(void **state)
{
    (void)state;
    reset_file();
    const char *old = "2024-01-01T00:00:00.000Z audit peer=- identity=\"\" op=Get uid=\"\" "
                      "result=Success\n";
    append_raw(old, strlen(old));
    assert_int_equal(kmsd_audit_open(path), 0);
    write_records(2);
    kmsd_audit_close();
    kmsd_audit_verifier v;
    assert_int_equal(kmsd_audit_verify_file(path, &v), -1);
    assert_int_equal(v.bad_record, 1);
    assert_int_equal(v.bad_line, 1);
    assert_non_null(strstr(v.error, "no valid chain fields"));
}

static void test_short_write(void **state)
{
    (void)state;
    reset_file();
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(kmsd_audit_open(path), 0);
    write_records(1);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    /* the failed records go to stderr: keep the test output quiet */
    int saved = dup(STDERR_FILENO), devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, STDERR_FILENO);
    /* nothing written (EFBIG): the chain does not move */
    lim.rlim_cur = (rlim_t)st.st_size;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    write_records(1);
    /* 30 bytes written: a torn line */
    lim.rlim_cur = (rlim_t)st.st_size + 30;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    write_records(1);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(devnull);
    assert_int_equal(stat(path, &st), 0);
    /* recorded before the next record */
    write_records(1);
    kmsd_audit_close();
    verify_ok(3, 1);
    size_t len;
    char *s = slurp(&len);
    assert_non_null(strstr(s, "torn_bytes=30 "));
}

static void test_second_writer(void **state)
{
    (void)state;
    reset_file();
    append_raw("", 0);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);
    assert_true(kmsd_audit_open(path) < 0);
    close(fd);
    assert_int_equal(kmsd_audit_open(path), 0);
    kmsd_audit_close();
}

/* In-memory logs through the line API. */
typedef struct {
    char text[16][512];
    size_t len[16];
    int n;
} log_t;

static void build(log_t *l, int n)
{
    unsigned char prev[32] = {0};
    l->n = n;
    for (int i = 0; i < n; i++) {
        char body[64];
        snprintf(body, sizeof(body), "T audit peer=- identity=\"\" op=Get uid=\"%d\" result=Success",
                 i);
        l->len[i] = make_line(l->text[i], sizeof(l->text[i]), body, (uint64_t)i + 1, prev);
    }
}

static int run(const log_t *l, int last_newline, kmsd_audit_verifier *v)
{
    kmsd_audit_verify_init(v);
    for (int i = 0; i < l->n; i++)
        if (kmsd_audit_verify_line(v, l->text[i], l->len[i], i < l->n - 1 || last_newline) < 0)
            return -1;
    return kmsd_audit_verify_end(v);
}

static void expect_bad(const log_t *l, int last_newline, uint64_t record, uint64_t line,
                       const char *text)
{
    kmsd_audit_verifier v;
    assert_int_equal(run(l, last_newline, &v), -1);
    if (v.bad_record != record || v.bad_line != line || !strstr(v.error, text))
        print_error("%s\n", v.error);
    assert_int_equal(v.bad_record, record);
    assert_int_equal(v.bad_line, line);
    assert_non_null(strstr(v.error, text));
}

static void test_verifier(void **state)
{
    (void)state;
    static log_t l, t;
    kmsd_audit_verifier v;
    build(&l, 6);
    assert_int_equal(run(&l, 1, &v), 0);
    assert_int_equal(v.records, 6);
    kmsd_audit_verify_init(&v);
    assert_int_equal(kmsd_audit_verify_end(&v), 0); /* empty log */
    assert_int_equal(v.records, 0);

    t = l; /* edit */
    t.text[2][3] ^= 1;
    expect_bad(&t, 1, 3, 3, "hash mismatch");
    t = l; /* delete */
    memmove(&t.text[2], &t.text[3], sizeof(t.text[0]) * 3);
    memmove(&t.len[2], &t.len[3], sizeof(t.len[0]) * 3);
    t.n = 5;
    expect_bad(&t, 1, 3, 3, "seq=4, expected 3");
    t = l; /* swap */
    memcpy(t.text[2], l.text[3], sizeof(t.text[0]));
    memcpy(t.text[3], l.text[2], sizeof(t.text[0]));
    t.len[2] = l.len[3];
    t.len[3] = l.len[2];
    expect_bad(&t, 1, 3, 3, "hash mismatch");
    t = l; /* torn tail */
    t.len[5] -= 10;
    expect_bad(&t, 0, 6, 6, "torn last line");
    expect_bad(&l, 0, 6, 6, "torn last line"); /* even when only the newline is missing */
    t = l; /* a too long line */
    kmsd_audit_verify_init(&v);
    static char big[KMSD_AUDIT_LINE_MAX + 2];
    memset(big, 'a', sizeof(big));
    assert_int_equal(kmsd_audit_verify_line(&v, l.text[0], l.len[0], 1), 0);
    assert_int_equal(kmsd_audit_verify_line(&v, big, sizeof(big), 1), 0);
    assert_int_equal(kmsd_audit_verify_end(&v), -1);
    assert_non_null(strstr(v.error, "record 2 (line 2): line longer than"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_construction),   cmocka_unit_test(test_parse),
        cmocka_unit_test(test_reopen_continues), cmocka_unit_test(test_torn_at_open),
        cmocka_unit_test(test_legacy_tail),    cmocka_unit_test(test_short_write),
        cmocka_unit_test(test_second_writer),  cmocka_unit_test(test_verifier),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
