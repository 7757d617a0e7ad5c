/* The one errno -> HTTP status table of the daemons' APIs
 * (lib/net/http_status.c): what each errno means to a client, the same for
 * vmseal-managerd and vmseal-hostd, and docs/api.md ("Errors: errno ->
 * status") saying exactly what the code does. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <vmseal/http_status.h>

/* The statuses clients and the other daemon rely on. */
static void test_statuses(void **state)
{
    (void)state;
    static const struct {
        int err, status;
    } want[] = {
        {EINVAL, 400}, {EPROTO, 400}, {E2BIG, 400}, {ERANGE, 400},
        {EACCES, 403}, {EPERM, 403},
        {ENOENT, 404},
        {EEXIST, 409}, {EBUSY, 409}, {EALREADY, 409}, {ENOTEMPTY, 409}, {ENOKEY, 409},
        {ELOOP, 409}, {ESTALE, 409},
        /* a sealed KEK for another host, a damaged sealed log: the request
         * was understood, the data does not open (422) — not a peer's
         * failure (the two daemons disagreed here: 502 and 422) */
        {EKEYREJECTED, 422}, {EBADMSG, 422},
        {EAGAIN, 429},
        {ENOTSUP, 501}, {EOPNOTSUPP, 501}, {ENOSYS, 501},
        /* only a failure the daemon marks as a peer's is 502 */
        {EREMOTEIO, 502},
        {ENOBUFS, 503},
        /* network errnos by themselves are not a peer's verdict: a
         * daemon's own failure (its database, QEMU's monitor socket) */
        {ECONNREFUSED, 500}, {ECONNRESET, 500}, {ETIMEDOUT, 500}, {EHOSTUNREACH, 500},
        {EIO, 500}, {ENOMEM, 500}, {ENOSPC, 500},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (vmseal_http_status_for(-want[i].err) != want[i].status)
            fail_msg("errno %d (%s): %d, want %d", want[i].err, strerror(want[i].err),
                     vmseal_http_status_for(-want[i].err), want[i].status);
        /* a positive errno means the same */
        assert_int_equal(vmseal_http_status_for(want[i].err), want[i].status);
    }
    /* no errno, or one nobody knows: an internal error */
    assert_int_equal(vmseal_http_status_for(0), 500);
    assert_int_equal(vmseal_http_status_for(-100000), 500);
    assert_int_equal(vmseal_http_status_for(-2147483647), 500);
}

/* Each errno once, each status an error status. */
static void test_table_well_formed(void **state)
{
    (void)state;
    size_t n = 0;
    const vmseal_http_errno_status *t = vmseal_http_status_table(&n);
    assert_true(n > 10);
    for (size_t i = 0; i < n; i++) {
        assert_true(t[i].err > 0);
        assert_true(t[i].status >= 400 && t[i].status <= 599);
        assert_int_equal(vmseal_http_status_for(-t[i].err), t[i].status);
        assert_true(t[i].name[0] == 'E');
        for (size_t k = 0; k < i; k++)
            if (t[k].err == t[i].err)
                fail_msg("%s listed twice", t[i].name);
    }
}

/* docs/api.md lists exactly the table: every row's errnos have its status,
 * and every errno of the table is in a row. */
static void test_docs_match(void **state)
{
    (void)state;
    const char *src = getenv("VMSEAL_SRC");
    if (!src)
        skip();
    char path[4096];
    snprintf(path, sizeof(path), "%s/docs/api.md", src);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = 0;
    const vmseal_http_errno_status *t = vmseal_http_status_table(&n);
    int *seen = calloc(n, sizeof(int));
    assert_non_null(seen);
    char line[2048];
    int in = 0, rows = 0;
    while (fgets(line, sizeof(line), f)) {
        if (!strncmp(line, "<!-- errno-status:", 18)) {
            in = 1;
            continue;
        }
        if (!strncmp(line, "<!-- errno-status end", 21))
            break;
        if (!in || strncmp(line, "| `", 3) != 0)
            continue;
        /* | `EINVAL`, `EPROTO` | 400 | meaning | */
        char *bar = strchr(line + 1, '|');
        assert_non_null(bar);
        int status = atoi(bar + 1);
        rows++;
        for (char *p = line + 1; p < bar;) {
            char *a = strchr(p, '`');
            if (!a || a > bar)
                break;
            char *b = strchr(a + 1, '`');
            assert_non_null(b);
            *b = '\0';
            size_t i = 0;
            while (i < n && strcmp(t[i].name, a + 1) != 0)
                i++;
            if (i == n)
                fail_msg("docs/api.md lists %s, which the table does not", a + 1);
            if (t[i].status != status)
                fail_msg("docs/api.md: %s is %d, the code says %d", a + 1, status, t[i].status);
            seen[i]++;
            p = b + 1;
        }
    }
    fclose(f);
    assert_true(rows > 0);
    for (size_t i = 0; i < n; i++)
        if (seen[i] != 1)
            fail_msg("docs/api.md lists %s %d times (want once)", t[i].name, seen[i]);
    free(seen);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_statuses),
        cmocka_unit_test(test_table_well_formed),
        cmocka_unit_test(test_docs_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
