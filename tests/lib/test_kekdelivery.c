/* KEK delivery (kekdelivery.h): a sealed KEK opens only for its custody key
 * pair and its (host, KEK id, provider); any changed byte is refused. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <vmseal/kekdelivery.h>

static void test_roundtrip_and_binding(void **state)
{
    (void)state;
    vmseal_kd_keypair *kp = NULL, *other = NULL;
    assert_int_equal(vmseal_kd_keypair_new(&kp), 0);
    assert_int_equal(vmseal_kd_keypair_new(&other), 0);
    uint8_t pub[VMSEAL_KD_PUB_LEN], opub[VMSEAL_KD_PUB_LEN];
    vmseal_kd_public(kp, pub);
    vmseal_kd_public(other, opub);
    assert_memory_not_equal(pub, opub, sizeof(pub));
    vmseal_secret *kek = NULL, *got = NULL;
    assert_int_equal(vmseal_secret_random(32, &kek), 0);
    uint8_t blob[VMSEAL_KD_BLOB_LEN], blob2[VMSEAL_KD_BLOB_LEN];
    assert_int_equal(vmseal_kd_seal(pub, "esx1", "42", "prov1", kek, blob), 0);
    /* the KEK is not in the blob */
    assert_null(memmem(blob, sizeof(blob), vmseal_secret_cdata(kek), 8));
    assert_int_equal(vmseal_kd_open(kp, "esx1", "42", "prov1", blob, sizeof(blob), &got), 0);
    assert_int_equal(vmseal_secret_cmp(kek, got), 0);
    vmseal_secret_free(got);
    /* fresh ephemeral key each time */
    assert_int_equal(vmseal_kd_seal(pub, "esx1", "42", "prov1", kek, blob2), 0);
    assert_memory_not_equal(blob, blob2, sizeof(blob));
    /* bound to the key pair, host, KEK id and provider */
    assert_int_equal(vmseal_kd_open(other, "esx1", "42", "prov1", blob, sizeof(blob), &got), -EBADMSG);
    assert_int_equal(vmseal_kd_open(kp, "esx2", "42", "prov1", blob, sizeof(blob), &got), -EBADMSG);
    assert_int_equal(vmseal_kd_open(kp, "esx1", "43", "prov1", blob, sizeof(blob), &got), -EBADMSG);
    assert_int_equal(vmseal_kd_open(kp, "esx1", "42", "prov2", blob, sizeof(blob), &got), -EBADMSG);
    /* "esx1"+"42" must not equal "esx14"+"2" */
    assert_int_equal(vmseal_kd_open(kp, "esx14", "2", "prov1", blob, sizeof(blob), &got), -EBADMSG);
    /* every bit of the blob counts; a short blob is refused */
    for (size_t i = 0; i < sizeof(blob); i++) {
        for (int b = 0; b < 8; b += 7) {
            blob[i] ^= (uint8_t)(1u << b);
            assert_true(vmseal_kd_open(kp, "esx1", "42", "prov1", blob, sizeof(blob), &got) < 0);
            assert_null(got);
            blob[i] ^= (uint8_t)(1u << b);
        }
    }
    assert_int_equal(vmseal_kd_open(kp, "esx1", "42", "prov1", blob, sizeof(blob) - 1, &got), -EBADMSG);
    assert_int_equal(vmseal_kd_open(kp, "", "42", "prov1", blob, sizeof(blob), &got), -EINVAL);
    /* base64 both ways, exact lengths only */
    char b64[200];
    uint8_t back[VMSEAL_KD_BLOB_LEN];
    assert_int_equal(vmseal_kd_b64(blob, sizeof(blob), b64, sizeof(b64)), 0);
    assert_int_equal(vmseal_kd_unb64(b64, back, sizeof(back)), 0);
    assert_memory_equal(blob, back, sizeof(blob));
    assert_int_equal(vmseal_kd_unb64(b64, back, sizeof(back) - 1), -EINVAL);
    assert_int_equal(vmseal_kd_unb64("!!!!", back, 3), -EINVAL);
    assert_int_equal(vmseal_kd_unb64(NULL, back, 3), -EINVAL);
    /* a low-order public key (all zero) is refused, not a zero shared key */
    uint8_t zero[VMSEAL_KD_PUB_LEN] = {0};
    assert_true(vmseal_kd_seal(zero, "esx1", "42", "prov1", kek, blob) < 0);
    vmseal_secret_free(kek);
    vmseal_kd_keypair_free(kp);
    vmseal_kd_keypair_free(other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_and_binding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
