/* KEK store: locked memory, copies out, replace, delete, bad input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "keystore.h"

static vmseal_secret *key_of(unsigned char fill)
{
    unsigned char raw[32];
    memset(raw, fill, sizeof(raw));
    vmseal_secret *s = NULL;
    assert_int_equal(vmseal_secret_from(raw, sizeof(raw), &s), 0);
    return s;
}

static void test_keystore(void **state)
{
    (void)state;
    assert_null(hostd_keystore_new("bad provider"));
    hostd_keystore *ks = hostd_keystore_new("kms1");
    assert_non_null(ks);
    assert_int_equal(hostd_keystore_put(ks, "kek-1", NULL, key_of(1)), 0);
    assert_int_equal(hostd_keystore_put(ks, "kek/2 with spaces", "other", key_of(2)), 0);
    assert_int_equal(hostd_keystore_count(ks), 2);
    vmseal_secret *k = NULL;
    char provider[VMSEAL_KEYSAFE_PROVIDER_MAX + 1];
    assert_int_equal(hostd_keystore_get(ks, "kek-1", &k, provider), 0);
    assert_string_equal(provider, "kms1");
    assert_int_equal(vmseal_secret_cdata(k)[0], 1);
    vmseal_secret_free(k);
    assert_int_equal(hostd_keystore_get(ks, "kek/2 with spaces", &k, provider), 0);
    assert_string_equal(provider, "other");
    vmseal_secret_free(k);
    /* replace (the generation changes: what was proven with the old key is
     * proven again) */
    uint64_t g0 = hostd_keystore_generation(ks);
    assert_int_equal(hostd_keystore_put(ks, "kek-1", NULL, key_of(9)), 0);
    uint64_t g1 = hostd_keystore_generation(ks);
    assert_true(g1 != g0);
    assert_int_equal(hostd_keystore_count(ks), 2);
    assert_int_equal(hostd_keystore_get(ks, "kek-1", &k, NULL), 0);
    assert_int_equal(vmseal_secret_cdata(k)[31], 9);
    vmseal_secret_free(k);
    /* bad input: the secret is taken (freed) anyway */
    vmseal_secret *short_key = NULL;
    assert_int_equal(vmseal_secret_from("abc", 3, &short_key), 0);
    assert_int_equal(hostd_keystore_put(ks, "kek-3", NULL, short_key), -EINVAL);
    assert_int_equal(hostd_keystore_put(ks, "", NULL, key_of(3)), -EINVAL);
    assert_int_equal(hostd_keystore_put(ks, "kek-3", "bad:provider", key_of(3)), -EINVAL);
    assert_int_equal(hostd_keystore_put(ks, "kek-3", NULL, NULL), -EINVAL);
    /* absent keys */
    assert_int_equal(hostd_keystore_get(ks, "kek-3", &k, NULL), -ENOKEY);
    assert_null(k);
    assert_false(hostd_keystore_has(ks, "kek-3"));
    assert_int_equal(hostd_keystore_delete(ks, "kek-3"), -ENOKEY);
    assert_true(hostd_keystore_generation(ks) == g1);   /* refusals change nothing */
    assert_int_equal(hostd_keystore_delete(ks, "kek-1"), 0);
    assert_true(hostd_keystore_generation(ks) != g1);
    assert_false(hostd_keystore_has(ks, "kek-1"));
    assert_true(hostd_keystore_has(ks, "kek/2 with spaces"));
    assert_int_equal(hostd_keystore_count(ks), 1);
    hostd_keystore_free(ks);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_keystore)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
