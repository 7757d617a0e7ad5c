/* AES key wrap (RFC 3394) and key wrap with padding (RFC 5649) via OpenSSL. */
#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <vmseal/keywrap.h>

static const EVP_CIPHER *wrap_cipher(size_t kek_len, int pad)
{
    switch (kek_len) {
    case 16: return pad ? EVP_aes_128_wrap_pad() : EVP_aes_128_wrap();
    case 24: return pad ? EVP_aes_192_wrap_pad() : EVP_aes_192_wrap();
    case 32: return pad ? EVP_aes_256_wrap_pad() : EVP_aes_256_wrap();
    default: return NULL;
    }
}

size_t vmseal_keywrap_pad_wrapped_len(size_t plain_len)
{
    size_t padded = (plain_len + 7) / 8 * 8;
    if (padded < 8)
        padded = 8;
    return padded + 8;
}

/* One EVP pass over the whole input (wrap modes take it in one update). */
static int wrap_run(const vmseal_secret *kek, int pad, int enc, const uint8_t *in,
                    size_t in_len, uint8_t *out, size_t *out_len)
{
    const EVP_CIPHER *cipher = wrap_cipher(vmseal_secret_len(kek), pad);
    if (!cipher)
        return vmseal_fail(EINVAL, "key wrap: KEK must be 16, 24 or 32 bytes, not %zu",
                           vmseal_secret_len(kek));
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx)
        return vmseal_fail(ENOMEM, "key wrap: out of memory");
    EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    int rc = 0, n = 0, fin = 0;
    if (EVP_CipherInit_ex(ctx, cipher, NULL, vmseal_secret_cdata(kek), NULL, enc) != 1) {
        rc = vmseal_fail(EIO, "key wrap: cipher setup failed");
        goto out;
    }
    if (EVP_CipherUpdate(ctx, out, &n, in, (int)in_len) != 1 || n < 0 ||
        EVP_CipherFinal_ex(ctx, out + n, &fin) != 1) {
        rc = enc ? vmseal_fail(EIO, "key wrap: wrapping failed")
                 : vmseal_fail(EBADMSG, "key unwrap: integrity check failed "
                                        "(wrong key or corrupt wrapped key)");
        goto out;
    }
    *out_len = (size_t)n + (size_t)fin;
out:
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

static int do_wrap(const vmseal_secret *kek, int pad, const vmseal_secret *plain,
                   uint8_t *out, size_t out_cap, size_t *out_len)
{
    size_t len = vmseal_secret_len(plain);
    if (len == 0 || len > VMSEAL_KEYWRAP_MAX_PLAIN)
        return vmseal_fail(EINVAL, "key wrap: key length %zu out of range 1..%u", len,
                           VMSEAL_KEYWRAP_MAX_PLAIN);
    if (!pad && (len < 16 || len % 8 != 0))
        return vmseal_fail(EINVAL, "key wrap: RFC 3394 needs a multiple of 8 bytes, "
                                   "at least 16 (got %zu); use the padded variant", len);
    size_t need = pad ? vmseal_keywrap_pad_wrapped_len(len) : len + 8;
    if (out_cap < need)
        return vmseal_fail(ENOBUFS, "key wrap: output needs %zu bytes", need);
    size_t got = 0;
    int rc = wrap_run(kek, pad, 1, vmseal_secret_cdata(plain), len, out, &got);
    if (rc < 0)
        return rc;
    if (got != need) {
        OPENSSL_cleanse(out, out_cap);
        return vmseal_fail(EIO, "key wrap: unexpected output length %zu", got);
    }
    *out_len = got;
    return 0;
}

static int do_unwrap(const vmseal_secret *kek, int pad, const uint8_t *wrapped,
                     size_t wrapped_len, vmseal_secret **plain)
{
    *plain = NULL;
    if (wrapped_len < (pad ? 16u : 24u) || wrapped_len % 8 != 0 ||
        wrapped_len > VMSEAL_KEYWRAP_MAX_PLAIN + 8)
        return vmseal_fail(EPROTO, "key unwrap: wrapped key length %zu is impossible "
                                   "(a multiple of 8, %u..%u)", wrapped_len,
                           pad ? 16u : 24u, VMSEAL_KEYWRAP_MAX_PLAIN + 8);
    /* The result is at most wrapped_len - 8 bytes, but OpenSSL wipes
     * wrapped_len bytes of the output buffer when the check fails. */
    vmseal_secret *s = vmseal_secret_new(wrapped_len);
    if (!s)
        return vmseal_fail(ENOMEM, "key unwrap: out of memory");
    size_t got = 0;
    int rc = wrap_run(kek, pad, 0, wrapped, wrapped_len, vmseal_secret_data(s), &got);
    if (rc < 0 || got == 0 || got > wrapped_len - 8) {
        vmseal_secret_free(s); /* wipes whatever OpenSSL wrote */
        return rc < 0 ? rc : vmseal_fail(EBADMSG, "key unwrap: bad unwrapped length");
    }
    vmseal_secret_truncate(s, got);
    *plain = s;
    return 0;
}

int vmseal_keywrap_pad_wrap(const vmseal_secret *kek, const vmseal_secret *plain,
                            uint8_t *out, size_t out_cap, size_t *out_len)
{
    return do_wrap(kek, 1, plain, out, out_cap, out_len);
}

int vmseal_keywrap_pad_unwrap(const vmseal_secret *kek, const uint8_t *wrapped,
                              size_t wrapped_len, vmseal_secret **plain)
{
    return do_unwrap(kek, 1, wrapped, wrapped_len, plain);
}

int vmseal_keywrap_wrap(const vmseal_secret *kek, const vmseal_secret *plain,
                        uint8_t *out, size_t out_cap, size_t *out_len)
{
    return do_wrap(kek, 0, plain, out, out_cap, out_len);
}

int vmseal_keywrap_unwrap(const vmseal_secret *kek, const uint8_t *wrapped,
                          size_t wrapped_len, vmseal_secret **plain)
{
    return do_unwrap(kek, 0, wrapped, wrapped_len, plain);
}
