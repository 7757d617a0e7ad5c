/* The syslog forwarder's message format (RFC 5424 with structured data):
 * header, SD-PARAM escaping, severities, the BOM, UTF-8 clean-up, value
 * truncation within SYSLOG_MAX_MSG; and syslog_target parsing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "syslog_fwd.h"

static char msg[SYSLOG_MAX_MSG + 1];

static const syslog_event base = {
    .id = "42", .time = "1700000000", .user = "administrator", .source = "127.0.0.1",
    .action = "role.create", .object = "Encryptor", .old_value = NULL,
    .new_value = "{\"privileges\":\"System.Read\"}", .result = "ok",
    .hash = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
};

/* Whether s[0..n) is valid UTF-8 without C0 controls. */
static int clean_utf8(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t l = p[i] < 0x80 ? 1 : (p[i] & 0xE0) == 0xC0 ? 2 : (p[i] & 0xF0) == 0xE0 ? 3
                 : (p[i] & 0xF8) == 0xF0 ? 4 : 0;
        if (l == 0 || i + l > n || (l == 1 && p[i] < 0x20))
            return 0;
        for (size_t k = 1; k < l; k++)
            if ((p[i + k] & 0xC0) != 0x80)
                return 0;
        i += l;
    }
    return 1;
}

static void test_format(void **state)
{
    (void)state;
    size_t n = syslog_format(&base, "mgr1.example", msg, sizeof(msg));
    const char *want =
        "<85>1 2023-11-14T22:13:20Z mgr1.example vmseal-managerd - role.create [vmseal@32473 id=\"42\" "
        "user=\"administrator\" source=\"127.0.0.1\" object=\"Encryptor\" result=\"ok\" "
        "hash=\"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"] "
        "\xEF\xBB\xBFold=null new={\"privileges\":\"System.Read\"}";
    assert_string_equal(msg, want);
    assert_int_equal(n, strlen(want));

    syslog_event e = base;
    e.result = "denied";
    e.hash = NULL;
    e.time = "garbage";
    syslog_format(&e, "", msg, sizeof(msg));
    assert_memory_equal(msg, "<84>1 - - vmseal-managerd - role.create [", 40);
    assert_null(strstr(msg, "hash="));
    e.result = "failed";
    e.action = "a b\x01";
    syslog_format(&e, "host name", msg, sizeof(msg));
    assert_memory_equal(msg, "<84>1 - host_name vmseal-managerd - a_b_ [", 41);
}

static void test_escaping(void **state)
{
    (void)state;
    syslog_event e = base;
    e.user = "a\"b\\c]d";
    e.object = "tab\there \xC3\xA9 bad\xFF\xC3 ok";
    e.new_value = "{\"x\":\"]\\\"\"}";
    syslog_format(&e, "h", msg, sizeof(msg));
    assert_non_null(strstr(msg, " user=\"a\\\"b\\\\c\\]d\" "));
    assert_non_null(strstr(msg, " object=\"tab?here \xC3\xA9 bad?? ok\" "));
    /* MSG is not escaped */
    assert_non_null(strstr(msg, "new={\"x\":\"]\\\"\"}"));
    assert_true(clean_utf8(msg, strlen(msg)));
    /* overlong and surrogate forms are invalid */
    e.object = "\xC0\xAF\xED\xA0\x80";
    syslog_format(&e, "h", msg, sizeof(msg));
    assert_non_null(strstr(msg, " object=\"?????\" "));
}

static char *repeat(const char *unit, size_t times)
{
    size_t l = strlen(unit);
    char *s = malloc(l * times + 1);
    assert_non_null(s);
    for (size_t i = 0; i < times; i++)
        memcpy(s + i * l, unit, l);
    s[l * times] = '\0';
    return s;
}

static void test_truncation(void **state)
{
    (void)state;
    syslog_event e = base;
    /* a long new value: cut at a character, marked, message bounded */
    char *big = repeat("\xC3\xA9", 10000);
    e.new_value = big;
    size_t n = syslog_format(&e, "h", msg, sizeof(msg));
    assert_true(n <= SYSLOG_MAX_MSG);
    assert_true(n > SYSLOG_MAX_MSG - 64);
    assert_int_equal(strlen(msg), n);
    assert_non_null(strstr(msg, " truncated=\"1\"] "));
    assert_memory_equal(msg + n - 3, "...", 3);
    assert_true(clean_utf8(msg, n));
    assert_non_null(strstr(msg, "old=null new=\xC3\xA9"));
    /* both long: each keeps about half */
    char *big2 = repeat("x", 20000);
    e.old_value = big2;
    n = syslog_format(&e, "h", msg, sizeof(msg));
    assert_true(n <= SYSLOG_MAX_MSG);
    const char *o = strstr(msg, "old="), *nw = strstr(msg, " new=");
    assert_non_null(o);
    assert_non_null(nw);
    assert_true(nw - o > 3000);
    assert_true(n - (size_t)(nw - msg) > 3000);
    /* every field huge: header and SD bounded, message still whole */
    char *quotes = repeat("\"]", 5000);
    e.user = e.source = e.object = e.result = e.hash = e.action = quotes;
    n = syslog_format(&e, big2, msg, sizeof(msg));
    assert_true(n <= SYSLOG_MAX_MSG);
    assert_non_null(strstr(msg, "\xEF\xBB\xBFold=xxxx"));
    assert_non_null(strstr(msg, " new=\xC3\xA9"));
    /* no value was cut in the middle of an escape */
    const char *user = strstr(msg, " user=\"");
    assert_non_null(user);
    assert_memory_equal(strstr(user + 7, "...\""), "...\" source=", 12);
    assert_true(clean_utf8(msg, n));
    /* a small buffer is respected */
    char small[64];
    n = syslog_format(&base, "h", small, sizeof(small));
    assert_true(n < sizeof(small));
    assert_int_equal(strlen(small), n);
    free(big);
    free(big2);
    free(quotes);
}

static void test_target(void **state)
{
    (void)state;
    syslog_target t;
    assert_int_equal(syslog_target_parse("tcp://127.0.0.1:514", &t), 0);
    assert_int_equal(t.tls, 0);
    assert_string_equal(t.host, "127.0.0.1");
    assert_int_equal(t.port, 514);
    assert_int_equal(syslog_target_parse("tls://logs.example.com:6514", &t), 0);
    assert_int_equal(t.tls, 1);
    assert_string_equal(t.host, "logs.example.com");
    assert_int_equal(syslog_target_parse("tls://[::1]:6514", &t), 0);
    assert_string_equal(t.host, "::1");
    assert_int_equal(t.port, 6514);
    const char *bad[] = {"udp://h:514", "tcp://h", "tcp://:514", "tcp://h:0", "tcp://h:65536",
                         "tcp://h:51x", "tcp://::1:514", "tls://[::1]6514", "tcp://u@h:514",
                         "tcp://h/x:514", "h:514", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(syslog_target_parse(bad[i], &t), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_target),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
