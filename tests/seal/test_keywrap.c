/* RFC 3394 / RFC 5649 key wrap: published vectors, tamper, wrong KEK. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <vmseal/keywrap.h>

static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = strlen(hex) / 2;
    assert_true(n <= cap);
    assert_int_equal(vmseal_hex_decode(hex, strlen(hex), out, n), 0);
    return n;
}

static vmseal_secret *secret_hex(const char *hex)
{
    uint8_t buf[4096];
    size_t n = unhex(hex, buf, sizeof(buf));
    vmseal_secret *s = NULL;
    assert_int_equal(vmseal_secret_from(buf, n, &s), 0);
    return s;
}

struct vector {
    const char *src;   /* where the vector is published */
    const char *kek, *plain, *wrapped;
};

/* RFC 5649 section 6 and the first records of NIST's CAVP KWP_AE files
 * (SP 800-38F, kwtestvectors.zip: KWP_AE_128.txt, KWP_AE_256.txt). */
static const struct vector kwp[] = {
    {"RFC 5649 6 (20 bytes)", "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8",
     "c37b7e6492584340bed12207808941155068f738",
     "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"},
    {"RFC 5649 6 (7 bytes)", "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8",
     "466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"},
    {"KWP_AE_128 #0 (8 bits)", "7efb9b3964de316e7245c86186d98b5f", "3e",
     "116a4054c13b7feade9c22aa57b3caed"},
    {"KWP_AE_128 (64 bits)", "45c770fc267175072d70a38269c54685", "cc5fb15a17795c34",
     "78ffa3f03b65c55b812f355730af71ac"},
    {"KWP_AE_128 (72 bits)", "853e2bac0f1e629867acea0d2b3c087e", "49575527bc59530fbe",
     "b43781062eb0317eb2dec6329f2d64de1c33d85570d57db6"},
    {"KWP_AE_256 #0 (8 bits)", "2800f18237cf8d2ba1dfe361784fd7519b0fdb0ec73e2ab1c0b966b9173fc5b5",
     "ad", "c1eccf2d077a385e67aaeb35552c893c"},
    {"KWP_AE_256 (64 bits)", "1c997c2bb5a15a4593e337b3249675d557467417917f6bc5165c9af6a3e29504",
     "3e3eafc50cd4e939", "163eb9e7dbc8ed0086dffbc6ab00e329"},
    {"KWP_AE_256 (72 bits)", "8df1533f99be6fe60f951057fed1daccd14bd4e34118f24af677bbf46bf11fe7",
     "fb36b1f3907fb5edce", "6974d7bae0221b4ed91336c26af77e32761f6024d8bbf292"},
    {"KWP_AE_256 (248 bits)", "dea4667d911b5c9ec996cdb35da0e29bc996cbfb0e0a56bac12fccc334d732eb",
     "25d58d437a56a7332a18541333201f9929fccde11b06844c19ba1ca224cfd6",
     "86d4e258391f15d7d4f0ab3e15d6f45e65dd2f8caf4c6720963bb8970fc2f3a4a58dc74674347ec9"},
};

/* RFC 3394 section 4. */
static const struct vector kw[] = {
    {"RFC 3394 4.1", "000102030405060708090a0b0c0d0e0f", "00112233445566778899aabbccddeeff",
     "1fa68b0a8112b447aef34bd8fb5a7b829d3e862371d2cfe5"},
    {"RFC 3394 4.3", "000102030405060708090a0b0c0d0e0f1011121314151617",
     "00112233445566778899aabbccddeeff", "96778b25ae6ca435f92b5b97c050aed2468ab8a17ad84e5d"},
    {"RFC 3394 4.6", "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
     "00112233445566778899aabbccddeeff000102030405060708090a0b0c0d0e0f",
     "28c9f404c4b810f4cbccb35cfb87f8263f5786e2d80ed326cbc7f0e71a99f43bfb988b9b7a02dd21"},
};

static void check_vector(const struct vector *v, int pad)
{
    vmseal_secret *kek = secret_hex(v->kek);
    vmseal_secret *plain = secret_hex(v->plain);
    uint8_t expect[512], out[512];
    size_t elen = unhex(v->wrapped, expect, sizeof(expect)), olen = 0;
    int rc = pad ? vmseal_keywrap_pad_wrap(kek, plain, out, sizeof(out), &olen)
                 : vmseal_keywrap_wrap(kek, plain, out, sizeof(out), &olen);
    if (rc != 0)
        fail_msg("%s: wrap failed: %s", v->src, vmseal_last_error());
    assert_int_equal(olen, elen);
    if (memcmp(out, expect, elen) != 0)
        fail_msg("%s: wrapped value differs from the published one", v->src);
    if (pad)
        assert_int_equal(vmseal_keywrap_pad_wrapped_len(vmseal_secret_len(plain)), elen);

    vmseal_secret *back = NULL;
    rc = pad ? vmseal_keywrap_pad_unwrap(kek, expect, elen, &back)
             : vmseal_keywrap_unwrap(kek, expect, elen, &back);
    assert_int_equal(rc, 0);
    assert_int_equal(vmseal_secret_cmp(back, plain), 0);
    vmseal_secret_free(back);

    /* Every single bit flip in the wrapped key is refused. */
    for (size_t i = 0; i < elen * 8; i++) {
        expect[i / 8] ^= (uint8_t)(1u << (i % 8));
        back = (vmseal_secret *)1;
        rc = pad ? vmseal_keywrap_pad_unwrap(kek, expect, elen, &back)
                 : vmseal_keywrap_unwrap(kek, expect, elen, &back);
        if (rc != -EBADMSG)
            fail_msg("%s: flip of bit %zu gave %d", v->src, i, rc);
        assert_null(back);
        expect[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    vmseal_secret_free(kek);
    vmseal_secret_free(plain);
}

static void test_rfc5649_and_kwp_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(kwp) / sizeof(kwp[0]); i++)
        check_vector(&kwp[i], 1);
}

static void test_rfc3394_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(kw) / sizeof(kw[0]); i++)
        check_vector(&kw[i], 0);
}

static void test_wrong_kek_refused(void **state)
{
    (void)state;
    vmseal_secret *kek, *other, *dek;
    assert_int_equal(vmseal_secret_random(32, &kek), 0);
    assert_int_equal(vmseal_secret_random(32, &other), 0);
    assert_int_equal(vmseal_secret_random(32, &dek), 0);
    uint8_t w[64];
    size_t wlen;
    assert_int_equal(vmseal_keywrap_pad_wrap(kek, dek, w, sizeof(w), &wlen), 0);
    assert_int_equal(wlen, 40);
    vmseal_secret *out = (vmseal_secret *)1;
    assert_int_equal(vmseal_keywrap_pad_unwrap(other, w, wlen, &out), -EBADMSG);
    assert_null(out);
    assert_non_null(strstr(vmseal_last_error(), "wrong key"));
    /* RFC 3394 too. */
    assert_int_equal(vmseal_keywrap_wrap(kek, dek, w, sizeof(w), &wlen), 0);
    assert_int_equal(vmseal_keywrap_unwrap(other, w, wlen, &out), -EBADMSG);
    assert_null(out);
    assert_int_equal(vmseal_keywrap_unwrap(kek, w, wlen, &out), 0);
    assert_int_equal(vmseal_secret_cmp(out, dek), 0);
    vmseal_secret_free(out);
    vmseal_secret_free(kek);
    vmseal_secret_free(other);
    vmseal_secret_free(dek);
}

static void test_bad_lengths(void **state)
{
    (void)state;
    vmseal_secret *kek, *odd;
    assert_int_equal(vmseal_secret_random(32, &kek), 0);
    assert_int_equal(vmseal_secret_random(20, &odd), 0);
    uint8_t w[64] = {0};
    size_t wlen;
    vmseal_secret *out;
    /* Impossible wrapped lengths are malformed input, not a key problem. */
    assert_int_equal(vmseal_keywrap_pad_unwrap(kek, w, 8, &out), -EPROTO);
    assert_int_equal(vmseal_keywrap_pad_unwrap(kek, w, 17, &out), -EPROTO);
    assert_int_equal(vmseal_keywrap_unwrap(kek, w, 16, &out), -EPROTO);
    /* Unpadded wrap needs a multiple of 8. */
    assert_int_equal(vmseal_keywrap_wrap(kek, odd, w, sizeof(w), &wlen), -EINVAL);
    /* Output buffer too small. */
    assert_int_equal(vmseal_keywrap_pad_wrap(kek, odd, w, 16, &wlen), -ENOBUFS);
    /* Bad KEK size. */
    vmseal_secret *k20 = odd;
    assert_int_equal(vmseal_keywrap_pad_wrap(k20, kek, w, sizeof(w), &wlen), -EINVAL);
    vmseal_secret_free(kek);
    vmseal_secret_free(odd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc5649_and_kwp_vectors),
        cmocka_unit_test(test_rfc3394_vectors),
        cmocka_unit_test(test_wrong_kek_refused),
        cmocka_unit_test(test_bad_lengths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
