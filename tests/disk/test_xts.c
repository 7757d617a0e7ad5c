/* XTS data path: IEEE 1619-2007 known answers (XTS-AES-256, 512-byte data
 * units, little-endian data-unit number = LUKS plain64 sector), plus
 * multi-sector calls, in-place operation and key checks. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <vmseal/xts.h>

#include "xts_ieee1619_vectors.h"

#define SEC VMSEAL_SECTOR_SIZE

static vmseal_xts *kat_handle(void)
{
    uint8_t key[64];
    assert_int_equal(vmseal_hex_decode(IEEE1619_KEY256, 128, key, 64), 0);
    vmseal_secret *k = NULL;
    assert_int_equal(vmseal_secret_from(key, 64, &k), 0);
    vmseal_xts *x = NULL;
    assert_int_equal(vmseal_xts_new(k, &x), 0);
    vmseal_secret_free(k);
    return x;
}

static void pattern(uint8_t *p)
{
    for (unsigned i = 0; i < SEC; i++)
        p[i] = (uint8_t)i;
}

static void test_ieee1619_vectors_10_to_14(void **state)
{
    (void)state;
    vmseal_xts *x = kat_handle();
    for (size_t v = 0; v < sizeof(ieee1619_v10_14) / sizeof(ieee1619_v10_14[0]); v++) {
        uint8_t pt[SEC], ct[SEC], want[SEC], back[SEC];
        pattern(pt);
        assert_int_equal(strlen(ieee1619_v10_14[v].ct), 2 * SEC);
        assert_int_equal(vmseal_hex_decode(ieee1619_v10_14[v].ct, 2 * SEC, want, SEC), 0);
        assert_int_equal(vmseal_xts_encrypt(x, ieee1619_v10_14[v].dusn, pt, ct, 1), 0);
        if (memcmp(ct, want, SEC) != 0)
            fail_msg("IEEE 1619 vector %d: ciphertext differs", ieee1619_v10_14[v].number);
        assert_int_equal(vmseal_xts_decrypt(x, ieee1619_v10_14[v].dusn, want, back, 1), 0);
        if (memcmp(back, pt, SEC) != 0)
            fail_msg("IEEE 1619 vector %d: decryption differs", ieee1619_v10_14[v].number);
    }
    vmseal_xts_free(x);
}

/* Many sectors per call: sectors 0xfe..0x100 in one call; the middle one is
 * vector 10 (sector 0xff), and each equals its own single-sector result. */
static void test_multi_sector_call(void **state)
{
    (void)state;
    vmseal_xts *x = kat_handle();
    uint8_t pt[3 * SEC], ct[3 * SEC], one[SEC], want[SEC];
    for (int s = 0; s < 3; s++)
        pattern(pt + s * SEC);
    pt[0] ^= 0x55;          /* make the three sectors differ */
    pt[2 * SEC + 7] ^= 0xaa;
    assert_int_equal(vmseal_xts_encrypt(x, 0xfe, pt, ct, 3), 0);
    assert_int_equal(vmseal_hex_decode(ieee1619_v10_14[0].ct, 2 * SEC, want, SEC), 0);
    assert_memory_equal(ct + SEC, want, SEC);
    for (int s = 0; s < 3; s++) {
        assert_int_equal(vmseal_xts_encrypt(x, 0xfe + (uint64_t)s, pt + s * SEC, one, 1), 0);
        assert_memory_equal(one, ct + s * SEC, SEC);
    }
    /* In place, both directions. */
    uint8_t buf[3 * SEC];
    memcpy(buf, pt, sizeof(buf));
    assert_int_equal(vmseal_xts_encrypt(x, 0xfe, buf, buf, 3), 0);
    assert_memory_equal(buf, ct, sizeof(buf));
    assert_int_equal(vmseal_xts_decrypt(x, 0xfe, buf, buf, 3), 0);
    assert_memory_equal(buf, pt, sizeof(buf));
    /* Zero sectors is a no-op. */
    assert_int_equal(vmseal_xts_encrypt(x, 0, buf, buf, 0), 0);
    vmseal_xts_free(x);
}

/* The tweak uses all 64 bits of the sector number, little-endian. */
static void test_high_sector_numbers_differ(void **state)
{
    (void)state;
    vmseal_xts *x = kat_handle();
    uint8_t pt[SEC] = {0}, a[SEC], b[SEC];
    assert_int_equal(vmseal_xts_encrypt(x, 1ull << 40, pt, a, 1), 0);
    assert_int_equal(vmseal_xts_encrypt(x, 1ull << 63, pt, b, 1), 0);
    assert_memory_not_equal(a, b, SEC);
    assert_int_equal(vmseal_xts_encrypt(x, 0, pt, b, 1), 0);
    assert_memory_not_equal(a, b, SEC);
    vmseal_xts_free(x);
}

static void test_key_lengths(void **state)
{
    (void)state;
    vmseal_secret *k = NULL;
    vmseal_xts *x = NULL;
    assert_int_equal(vmseal_secret_random(48, &k), 0);
    assert_int_equal(vmseal_xts_new(k, &x), -EINVAL);
    assert_null(x);
    vmseal_secret_free(k);
    assert_int_equal(vmseal_secret_random(32, &k), 0);   /* AES-128-XTS */
    assert_int_equal(vmseal_xts_new(k, &x), 0);
    uint8_t pt[SEC] = {1}, ct[SEC], back[SEC];
    assert_int_equal(vmseal_xts_encrypt(x, 5, pt, ct, 1), 0);
    assert_int_equal(vmseal_xts_decrypt(x, 5, ct, back, 1), 0);
    assert_memory_equal(pt, back, SEC);
    vmseal_xts_free(x);
    vmseal_secret_free(k);
    vmseal_xts_free(NULL);
}

/* lib/crypto/xts.c has two paths to the same OpenSSL code: the provider's
 * cipher functions called directly (the default, faster) and EVP (the
 * fallback, VMSEAL_XTS_EVP=1). Both must give the IEEE 1619 answers and the
 * same bytes for every key length, sector number and in-place use. */
static void test_ieee1619_vectors_evp_path(void **state)
{
    assert_int_equal(setenv("VMSEAL_XTS_EVP", "1", 1), 0);
    test_ieee1619_vectors_10_to_14(state);
    unsetenv("VMSEAL_XTS_EVP");
}

static void test_direct_and_evp_paths_agree(void **state)
{
    (void)state;
    enum { N = 67 };
    static uint8_t pt[N * SEC], a[N * SEC], b[N * SEC], back[N * SEC];
    for (size_t klen = 32; klen <= 64; klen += 32) {
        vmseal_secret *k = NULL;
        vmseal_xts *fast = NULL, *evp = NULL;
        assert_int_equal(vmseal_secret_random(klen, &k), 0);
        assert_int_equal(vmseal_xts_new(k, &fast), 0);
        assert_int_equal(setenv("VMSEAL_XTS_EVP", "1", 1), 0);
        assert_int_equal(vmseal_xts_new(k, &evp), 0);
        unsetenv("VMSEAL_XTS_EVP");
        for (size_t i = 0; i < sizeof(pt); i++)
            pt[i] = (uint8_t)(i * 131 + klen);
        const uint64_t first[] = {0, 0xfe, (1ull << 40) - 3, UINT64_MAX - N + 1};
        for (size_t f = 0; f < sizeof(first) / sizeof(first[0]); f++) {
            assert_int_equal(vmseal_xts_encrypt(fast, first[f], pt, a, N), 0);
            assert_int_equal(vmseal_xts_encrypt(evp, first[f], pt, b, N), 0);
            assert_memory_equal(a, b, sizeof(a));
            assert_memory_not_equal(a, pt, SEC);
            memcpy(back, a, sizeof(back));   /* in place, crosswise */
            assert_int_equal(vmseal_xts_decrypt(evp, first[f], back, back, N), 0);
            assert_memory_equal(back, pt, sizeof(pt));
            memcpy(back, b, sizeof(back));
            assert_int_equal(vmseal_xts_decrypt(fast, first[f], back, back, N), 0);
            assert_memory_equal(back, pt, sizeof(pt));
        }
        vmseal_xts_free(fast);
        vmseal_xts_free(evp);
        vmseal_secret_free(k);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ieee1619_vectors_10_to_14),
        cmocka_unit_test(test_multi_sector_call),
        cmocka_unit_test(test_high_sector_numbers_differ),
        cmocka_unit_test(test_key_lengths),
        cmocka_unit_test(test_ieee1619_vectors_evp_path),
        cmocka_unit_test(test_direct_and_evp_paths_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
