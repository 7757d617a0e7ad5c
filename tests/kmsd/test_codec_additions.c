/* The two codec helpers vmseal-kmsd added to kmip/ttlv.c:
 * vmseal_ttlv_add_secret_space() and vmseal_ttlv_encode_into(). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <vmseal/kmip.h>

static void test_secret_space_and_encode_into(void **state)
{
    (void)state;
    vmseal_ttlv *root = vmseal_ttlv_struct(VMSEAL_KMIP_TAG_KEY_VALUE);
    uint8_t *data;
    vmseal_ttlv *km = vmseal_ttlv_add_secret_space(root, VMSEAL_KMIP_TAG_KEY_MATERIAL, 5, &data);
    assert_non_null(km);
    for (int i = 0; i < 5; i++)
        assert_int_equal(data[i], 0);
    memcpy(data, "\x01\x02\x03\x04\x05", 5);
    const uint8_t *p;
    size_t len;
    assert_int_equal(vmseal_ttlv_get_bytes(km, &p, &len), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(p, "\x01\x02\x03\x04\x05", 5);

    /* encode_into == encode */
    uint8_t *ref;
    size_t reflen;
    assert_int_equal(vmseal_ttlv_encode(root, &ref, &reflen), 0);
    assert_int_equal(reflen, 24);
    uint8_t buf[64];
    memset(buf, 0xee, sizeof(buf));
    size_t n;
    assert_int_equal(vmseal_ttlv_encode_into(root, buf, sizeof(buf), &n), 0);
    assert_int_equal(n, reflen);
    assert_memory_equal(buf, ref, n);
    /* too small: -ENOSPC with the size needed */
    assert_int_equal(vmseal_ttlv_encode_into(root, buf, 16, &n), -ENOSPC);
    assert_int_equal(n, reflen);
    vmseal_ttlv_buf_free(ref, reflen);

    /* bad lengths are build errors */
    assert_null(vmseal_ttlv_add_secret_space(root, VMSEAL_KMIP_TAG_KEY_MATERIAL, 0, &data));
    assert_null(data);
    assert_int_not_equal(vmseal_ttlv_build_error(root), 0);
    vmseal_ttlv_free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_secret_space_and_encode_into),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
