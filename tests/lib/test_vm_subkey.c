/* Keys derived from the per-VM secret (include/vmseal/vmkeys.h): the
 * derivation is HKDF-SHA256 as documented (checked against OpenSSL's HKDF
 * computed here independently), one key per VM and purpose, and bad inputs
 * are refused. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include <vmseal/vmkeys.h>

static const char *U1 = "619e3975-e4e5-46cc-bb43-7a73c163d3f1";
static const char *U2 = "619e3975-e4e5-46cc-bb43-7a73c163d3f2";

static vmseal_secret *secret(uint8_t fill)
{
    uint8_t b[32];
    memset(b, fill, sizeof(b));
    vmseal_secret *s = NULL;
    assert_int_equal(vmseal_secret_from(b, sizeof(b), &s), 0);
    return s;
}

static vmseal_secret *derive(const vmseal_secret *s, const char *uuid, const char *purpose)
{
    vmseal_secret *k = NULL;
    assert_int_equal(vmseal_vm_subkey(s, uuid, purpose, &k), 0);
    assert_int_equal(vmseal_secret_len(k), 32);
    return k;
}

static void test_documented_derivation(void **state)
{
    (void)state;
    vmseal_secret *s = secret(0x42);
    vmseal_secret *k = derive(s, U1, "vtpm");
    /* info = "vmseal vm subkey v1" NUL "vm:<uuid>" NUL "vtpm" */
    uint8_t info[128], want[32];
    size_t n = 0;
    memcpy(info, "vmseal vm subkey v1", 20), n = 20;
    memcpy(info + n, "vm:", 3), n += 3;
    memcpy(info + n, U1, 36), n += 36;
    info[n++] = 0;
    memcpy(info + n, "vtpm", 4), n += 4;
    uint8_t ikm[32];
    memset(ikm, 0x42, sizeof(ikm));
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
    size_t wl = sizeof(want);
    assert_non_null(c);
    assert_int_equal(EVP_PKEY_derive_init(c), 1);
    assert_int_equal(EVP_PKEY_CTX_set_hkdf_md(c, EVP_sha256()), 1);
    assert_int_equal(EVP_PKEY_CTX_set1_hkdf_key(c, ikm, sizeof(ikm)), 1);
    assert_int_equal(EVP_PKEY_CTX_add1_hkdf_info(c, info, (int)n), 1);
    assert_int_equal(EVP_PKEY_derive(c, want, &wl), 1);
    EVP_PKEY_CTX_free(c);
    assert_memory_equal(vmseal_secret_cdata(k), want, 32);
    vmseal_secret_free(k);
    vmseal_secret_free(s);
}

static void test_one_key_per_vm_and_purpose(void **state)
{
    (void)state;
    vmseal_secret *s = secret(1), *s2 = secret(2);
    vmseal_secret *a = derive(s, U1, VMSEAL_VMKEY_VTPM), *a2 = derive(s, U1, VMSEAL_VMKEY_VTPM);
    vmseal_secret *b = derive(s, U1, VMSEAL_VMKEY_VTPM_MIGRATION), *c = derive(s, U2, "vtpm");
    vmseal_secret *d = derive(s2, U1, "vtpm");
    assert_memory_equal(vmseal_secret_cdata(a), vmseal_secret_cdata(a2), 32);
    assert_memory_not_equal(vmseal_secret_cdata(a), vmseal_secret_cdata(b), 32);
    assert_memory_not_equal(vmseal_secret_cdata(a), vmseal_secret_cdata(c), 32);
    assert_memory_not_equal(vmseal_secret_cdata(a), vmseal_secret_cdata(d), 32);
    vmseal_secret *all[] = {a, a2, b, c, d, s, s2};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        vmseal_secret_free(all[i]);
}

static void test_refusals(void **state)
{
    (void)state;
    vmseal_secret *s = secret(3), *k = NULL, *shortk = NULL;
    uint8_t b[8] = {0};
    assert_int_equal(vmseal_secret_from(b, sizeof(b), &shortk), 0);
    assert_int_equal(vmseal_vm_subkey(shortk, U1, "vtpm", &k), -EINVAL);
    assert_int_equal(vmseal_vm_subkey(NULL, U1, "vtpm", &k), -EINVAL);
    assert_int_equal(vmseal_vm_subkey(s, "619E3975-E4E5-46CC-BB43-7A73C163D3F1", "vtpm", &k), -EINVAL);
    assert_int_equal(vmseal_vm_subkey(s, "not-a-uuid", "vtpm", &k), -EINVAL);
    assert_int_equal(vmseal_vm_subkey(s, U1, "", &k), -EINVAL);
    assert_int_equal(vmseal_vm_subkey(s, U1, "VTPM", &k), -EINVAL);
    assert_int_equal(vmseal_vm_subkey(s, U1, "a-purpose-that-is-far-too-long-for-it", &k), -EINVAL);
    assert_null(k);
    vmseal_secret_free(shortk);
    vmseal_secret_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_documented_derivation),
        cmocka_unit_test(test_one_key_per_vm_and_purpose),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
