/* Key safe: round trip, binding to the object, tamper and parser strictness. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <vmseal/keysafe.h>

#define OBJ "disk:6f1c2a3e-1111-4222-8333-944455556666"

static vmseal_secret *kek, *kek2, *dek;

static int setup(void **state)
{
    (void)state;
    if (vmseal_secret_random(32, &kek) || vmseal_secret_random(32, &kek2) ||
        vmseal_secret_random(32, &dek))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    vmseal_secret_free(kek);
    vmseal_secret_free(kek2);
    vmseal_secret_free(dek);
    return 0;
}

static char *wrap(const char *provider, const char *kek_id, const char *obj)
{
    char *line = NULL;
    int rc = vmseal_keysafe_wrap(kek, provider, kek_id, obj, dek, &line);
    if (rc != 0)
        fail_msg("wrap: %s", vmseal_last_error());
    assert_non_null(line);
    return line;
}

static void test_round_trip(void **state)
{
    (void)state;
    char *line = wrap("local", "kek-1", OBJ);
    assert_int_equal(strncmp(line, "vmseal:keysafe:v1:local:kek-1:", 30), 0);
    assert_null(strchr(line, '\n'));
    assert_true(strlen(line) <= VMSEAL_KEYSAFE_LINE_MAX);

    vmseal_keysafe_info info;
    assert_int_equal(vmseal_keysafe_parse(line, &info), 0);
    assert_int_equal(info.version, 1);
    assert_string_equal(info.provider, "local");
    assert_string_equal(info.kek_id, "kek-1");
    assert_int_equal(info.payload_len, 32);

    vmseal_secret *out = NULL;
    assert_int_equal(vmseal_keysafe_unwrap(kek, line, OBJ, &out), 0);
    assert_int_equal(vmseal_secret_cmp(out, dek), 0);
    vmseal_secret_free(out);

    /* A config-file line with its newline is accepted. */
    char buf[VMSEAL_KEYSAFE_LINE_MAX + 8];
    snprintf(buf, sizeof(buf), "%s\r\n", line);
    assert_int_equal(vmseal_keysafe_unwrap(kek, buf, OBJ, &out), 0);
    vmseal_secret_free(out);
    snprintf(buf, sizeof(buf), "%s\n", line);
    assert_int_equal(vmseal_keysafe_unwrap(kek, buf, OBJ, &out), 0);
    vmseal_secret_free(out);

    /* A fresh nonce per wrap: the same secret never gives the same line. */
    char *again = wrap("local", "kek-1", OBJ);
    assert_string_not_equal(line, again);
    free(again);
    free(line);
}

static void test_any_kek_id_text(void **state)
{
    (void)state;
    const char *ids[] = {"1", "a b:c%d\te", "ünïcödé-κλειδί", "550e8400-e29b-41d4-a716-446655440000",
                         "x/y+z=@~._-", "%41", ":::", "\x01\x7f\xff"};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        char *line = wrap("kmip_prod-1.a", ids[i], OBJ);
        /* Exactly 6 ':'-separated fields: the id never adds a separator. */
        int colons = 0;
        for (char *p = line; *p; p++) {
            colons += *p == ':';
            assert_true((unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f);
        }
        assert_int_equal(colons, 5);
        vmseal_keysafe_info info;
        assert_int_equal(vmseal_keysafe_parse(line, &info), 0);
        assert_string_equal(info.kek_id, ids[i]);
        assert_string_equal(info.provider, "kmip_prod-1.a");
        vmseal_secret *out = NULL;
        assert_int_equal(vmseal_keysafe_unwrap(kek, line, OBJ, &out), 0);
        assert_int_equal(vmseal_secret_cmp(out, dek), 0);
        vmseal_secret_free(out);
        free(line);
    }
    char *line = wrap("local", "a b", OBJ);
    assert_non_null(strstr(line, ":a%20b:"));
    free(line);
}

static void test_moved_or_wrong_key_refused(void **state)
{
    (void)state;
    char *line = wrap("local", "kek-1", OBJ);
    vmseal_secret *out = (vmseal_secret *)1;
    /* Copied next to another disk. */
    assert_int_equal(vmseal_keysafe_unwrap(kek, line, "disk:00000000-1111-4222-8333-944455556666",
                                           &out), -EBADMSG);
    assert_null(out);
    assert_non_null(strstr(vmseal_last_error(), "another object"));
    /* Same UUID, other kind of object. */
    assert_int_equal(vmseal_keysafe_unwrap(kek, line, "vm:6f1c2a3e-1111-4222-8333-944455556666",
                                           &out), -EBADMSG);
    /* Wrong KEK. */
    out = (vmseal_secret *)1;
    assert_int_equal(vmseal_keysafe_unwrap(kek2, line, OBJ, &out), -EBADMSG);
    assert_null(out);
    assert_non_null(strstr(vmseal_last_error(), "wrong key"));
    free(line);
}

static void test_header_fields_are_bound(void **state)
{
    (void)state;
    /* Relabelling the KEK id or provider (e.g. to make a host fetch another
     * key) breaks the authentication even though the line still parses. */
    char *line = wrap("local", "kek-1", OBJ);
    char buf[VMSEAL_KEYSAFE_LINE_MAX + 1];
    const char *blob = strrchr(line, ':') + 1;
    vmseal_secret *out = (vmseal_secret *)1;
    snprintf(buf, sizeof(buf), "vmseal:keysafe:v1:local:kek-2:%s", blob);
    assert_int_equal(vmseal_keysafe_parse(buf, NULL), 0);
    assert_int_equal(vmseal_keysafe_unwrap(kek, buf, OBJ, &out), -EBADMSG);
    snprintf(buf, sizeof(buf), "vmseal:keysafe:v1:kmip:kek-1:%s", blob);
    assert_int_equal(vmseal_keysafe_unwrap(kek, buf, OBJ, &out), -EBADMSG);
    assert_null(out);
    free(line);
}

static void test_every_byte_change_refused(void **state)
{
    (void)state;
    char *line = wrap("local", "id with space", OBJ);
    size_t n = strlen(line);
    const char subst[] = {'A', 'z', '0', '+', '/', '=', '%', ':', 'v', ' ', '\x80'};
    char *t = malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < sizeof(subst); k++) {
            memcpy(t, line, n + 1);
            if (t[i] == subst[k])
                continue;
            t[i] = subst[k];
            vmseal_secret *out = (vmseal_secret *)1;
            int rc = vmseal_keysafe_unwrap(kek, t, OBJ, &out);
            if (rc == 0)
                fail_msg("changed byte %zu to 0x%02x and it still unwrapped", i,
                         (unsigned char)subst[k]);
            assert_null(out);
            assert_true(rc == -EBADMSG || rc == -EPROTO || rc == -ENOTSUP);
            assert_true(vmseal_last_error()[0] != '\0');
        }
        /* Bit flips within the byte as well. */
        for (int b = 0; b < 8; b++) {
            memcpy(t, line, n + 1);
            t[i] ^= (char)(1 << b);
            vmseal_secret *out = NULL;
            if (t[i] != 0 && vmseal_keysafe_unwrap(kek, t, OBJ, &out) == 0)
                fail_msg("bit %d of byte %zu flipped and it still unwrapped", b, i);
            assert_null(out);
        }
    }
    free(t);
    free(line);
}

struct bad {
    const char *line;
    int err;
    const char *msg; /* substring of the error message */
};

static void test_malformed_lines(void **state)
{
    (void)state;
    char *good = wrap("local", "kek-1", OBJ);
    const char *blob = strrchr(good, ':') + 1;
    char overlong[VMSEAL_KEYSAFE_LINE_MAX + 64];
    memset(overlong, 'A', sizeof(overlong) - 1);
    overlong[sizeof(overlong) - 1] = '\0';
    memcpy(overlong, "vmseal:keysafe:v1:local:k:", 26);
    char noncanon[VMSEAL_KEYSAFE_LINE_MAX];
    /* 29 bytes in base64 end in "xx=": the last digit carries 2 unused bits,
     * which must be zero ("B" sets one). */
    snprintf(noncanon, sizeof(noncanon), "vmseal:keysafe:v1:local:k:%s",
             "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=");
    char buf[6][VMSEAL_KEYSAFE_LINE_MAX];
    snprintf(buf[0], sizeof(buf[0]), "vmseal:keysafe:v2:local:kek-1:%s", blob);
    snprintf(buf[1], sizeof(buf[1]), "vmseal:keysafe:v1:local:kek-1:%s:extra", blob);
    snprintf(buf[2], sizeof(buf[2]), "vmseal:keysafe:v1:local:%s", blob);
    snprintf(buf[3], sizeof(buf[3]), "vmseal:keysafe:v1:lo cal:kek-1:%s", blob);
    snprintf(buf[4], sizeof(buf[4]), "vmseal:keysafe:v1:local:kek%%2D1:%s", blob);
    snprintf(buf[5], sizeof(buf[5]), " vmseal:keysafe:v1:local:kek-1:%s", blob);
    const struct bad cases[] = {
        {"", -EPROTO, "not a vmseal key safe"},
        {"vmseal:keysafe", -EPROTO, "not a vmseal key safe"},
        {"VMSEAL:KEYSAFE:v1:local:k:AAAA", -EPROTO, "not a vmseal key safe"},
        {"vmseal:keysafe:", -EPROTO, "version"},
        {"vmseal:keysafe:x1:local:k:AAAA", -EPROTO, "version"},
        {"vmseal:keysafe:v01:local:k:AAAA", -EPROTO, "version"},
        {buf[0], -ENOTSUP, "v2 is not supported"},
        {"vmseal:keysafe:v99", -ENOTSUP, "v99"},
        {buf[1], -EPROTO, "too many"},
        {buf[2], -EPROTO, "expected 4 fields"},
        {"vmseal:keysafe:v1", -EPROTO, "expected 4 fields"},
        {"vmseal:keysafe:v1::k:AAAA", -EPROTO, "provider"},
        {buf[3], -EPROTO, "provider"},
        {"vmseal:keysafe:v1:local::AAAA", -EPROTO, "empty KEK id"},
        {"vmseal:keysafe:v1:local:a%2:AAAA", -EPROTO, "cut-off"},
        {"vmseal:keysafe:v1:local:a%2a:AAAA", -EPROTO, "upper-case"},
        {"vmseal:keysafe:v1:local:a%00:AAAA", -EPROTO, "NUL"},
        {buf[4], -EPROTO, "written as itself"},
        {"vmseal:keysafe:v1:local:a b:AAAA", -EPROTO, "must be escaped"},
        {"vmseal:keysafe:v1:local:k:", -EPROTO, "base64"},
        {"vmseal:keysafe:v1:local:k:AAA", -EPROTO, "base64"},
        {"vmseal:keysafe:v1:local:k:AA!A", -EPROTO, "base64"},
        {"vmseal:keysafe:v1:local:k:A=AA", -EPROTO, "base64"},
        {"vmseal:keysafe:v1:local:k:AAAA", -EPROTO, "too short"},
        {noncanon, -EPROTO, "non-canonical"},
        {overlong, -EPROTO, "longer than"},
        {buf[5], -EPROTO, "not a vmseal key safe"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        vmseal_keysafe_info info;
        int rc = vmseal_keysafe_parse(cases[i].line, &info);
        if (rc != cases[i].err || !strstr(vmseal_last_error(), cases[i].msg))
            fail_msg("case %zu '%.60s': got %d '%s', expected %d '%s'", i, cases[i].line, rc,
                     vmseal_last_error(), cases[i].err, cases[i].msg);
        vmseal_secret *out = (vmseal_secret *)1;
        assert_int_equal(vmseal_keysafe_unwrap(kek, cases[i].line, OBJ, &out), cases[i].err);
        assert_null(out);
    }
    free(good);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    char *line = NULL;
    assert_int_equal(vmseal_keysafe_wrap(kek, "", "k", OBJ, dek, &line), -EINVAL);
    assert_int_equal(vmseal_keysafe_wrap(kek, "a:b", "k", OBJ, dek, &line), -EINVAL);
    assert_int_equal(vmseal_keysafe_wrap(kek, "local", "", OBJ, dek, &line), -EINVAL);
    assert_int_equal(vmseal_keysafe_wrap(kek, "local", "k", "", dek, &line), -EINVAL);
    char longid[300];
    memset(longid, 'x', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    assert_int_equal(vmseal_keysafe_wrap(kek, "local", longid, OBJ, dek, &line), -EINVAL);
    vmseal_secret *short_kek;
    assert_int_equal(vmseal_secret_random(16, &short_kek), 0);
    assert_int_equal(vmseal_keysafe_wrap(short_kek, "local", "k", OBJ, dek, &line), -EINVAL);
    vmseal_secret_free(short_kek);
    assert_null(line);
    /* The longest ids and payload still fit in a line. */
    vmseal_secret *big;
    assert_int_equal(vmseal_secret_random(VMSEAL_KEYSAFE_PAYLOAD_MAX, &big), 0);
    char worst[VMSEAL_KEYSAFE_KEK_ID_MAX + 1];
    memset(worst, ' ', sizeof(worst) - 1);
    worst[sizeof(worst) - 1] = '\0';
    char prov[VMSEAL_KEYSAFE_PROVIDER_MAX + 1];
    memset(prov, 'p', sizeof(prov) - 1);
    prov[sizeof(prov) - 1] = '\0';
    assert_int_equal(vmseal_keysafe_wrap(kek, prov, worst, longid + 45, big, &line), 0);
    assert_true(strlen(line) <= VMSEAL_KEYSAFE_LINE_MAX);
    vmseal_secret *out;
    assert_int_equal(vmseal_keysafe_unwrap(kek, line, longid + 45, &out), 0);
    assert_int_equal(vmseal_secret_cmp(out, big), 0);
    vmseal_secret_free(out);
    vmseal_secret_free(big);
    free(line);
}

static void test_rewrap(void **state)
{
    (void)state;
    char *line = wrap("local", "old", OBJ), *nl = NULL;
    assert_int_equal(vmseal_keysafe_rewrap(kek, line, OBJ, kek2, "kmip", "new", &nl), 0);
    vmseal_keysafe_info info;
    assert_int_equal(vmseal_keysafe_parse(nl, &info), 0);
    assert_string_equal(info.kek_id, "new");
    vmseal_secret *out = NULL;
    assert_int_equal(vmseal_keysafe_unwrap(kek, nl, OBJ, &out), -EBADMSG);
    assert_int_equal(vmseal_keysafe_unwrap(kek2, nl, OBJ, &out), 0);
    assert_int_equal(vmseal_secret_cmp(out, dek), 0);
    vmseal_secret_free(out);
    free(nl);
    /* Rewrap with the wrong old KEK does nothing. */
    assert_int_equal(vmseal_keysafe_rewrap(kek2, line, OBJ, kek, "kmip", "new", &nl), -EBADMSG);
    assert_null(nl);
    free(line);
}

/* The one spelling of key-safe objects; never bound to a missing UUID. */
static void test_object_id(void **state)
{
    (void)state;
    char o[64];
    assert_int_equal(vmseal_keysafe_object_id("vm", "6f1c2a3e-1111-4222-8333-944455556666", o, sizeof(o)), 0);
    assert_string_equal(o, "vm:6f1c2a3e-1111-4222-8333-944455556666");
    assert_int_equal(vmseal_keysafe_object_id("disk", "6f1c2a3e-1111-4222-8333-944455556666", o, sizeof(o)), 0);
    assert_string_equal(o, "disk:6f1c2a3e-1111-4222-8333-944455556666");
    assert_int_equal(vmseal_keysafe_object_id("disk", "", o, sizeof(o)), -EINVAL);
    assert_int_equal(vmseal_keysafe_object_id("disk", NULL, o, sizeof(o)), -EINVAL);
    assert_int_equal(vmseal_keysafe_object_id("disk", "not-a-uuid", o, sizeof(o)), -EINVAL);
    assert_int_equal(vmseal_keysafe_object_id("nvram", "6f1c2a3e-1111-4222-8333-944455556666", o, sizeof(o)), -EINVAL);
    assert_int_equal(vmseal_keysafe_object_id("vm", "6f1c2a3e-1111-4222-8333-944455556666", o, 10), -ENOSPC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_any_kek_id_text),
        cmocka_unit_test(test_moved_or_wrong_key_refused),
        cmocka_unit_test(test_header_fields_are_bound),
        cmocka_unit_test(test_every_byte_change_refused),
        cmocka_unit_test(test_malformed_lines),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_rewrap),
        cmocka_unit_test(test_object_id),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
