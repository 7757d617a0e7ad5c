/* AES-256-GCM helper over OpenSSL EVP (see gcm.h). */
#include <errno.h>
#include <limits.h>

#include <openssl/crypto.h>

#include "gcm.h"

int gcm_init(gcm_ctx *g, const uint8_t key[GCM_KEY_LEN], int enc)
{
    g->enc = enc;
    g->ctx = EVP_CIPHER_CTX_new();
    if (!g->ctx)
        return vmseal_fail(ENOMEM, "AES-GCM: out of memory");
    if (EVP_CipherInit_ex(g->ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1 ||
        EVP_CIPHER_CTX_ctrl(g->ctx, EVP_CTRL_GCM_SET_IVLEN, GCM_NONCE_LEN, NULL) != 1 ||
        EVP_CipherInit_ex(g->ctx, NULL, NULL, key, NULL, enc) != 1) {
        gcm_done(g);
        return vmseal_fail(EIO, "AES-GCM: cipher setup failed");
    }
    return 0;
}

void gcm_done(gcm_ctx *g)
{
    EVP_CIPHER_CTX_free(g->ctx); /* cleanses the key schedule */
    g->ctx = NULL;
}

static int gcm_run(gcm_ctx *g, const uint8_t *nonce, const uint8_t *aad, size_t aad_len,
                   const uint8_t *in, size_t len, uint8_t *out)
{
    int n = 0;
    if (len > INT_MAX || aad_len > INT_MAX)
        return -1;
    if (EVP_CipherInit_ex(g->ctx, NULL, NULL, NULL, nonce, g->enc) != 1)
        return -1;
    if (aad_len && EVP_CipherUpdate(g->ctx, NULL, &n, aad, (int)aad_len) != 1)
        return -1;
    if (len && (EVP_CipherUpdate(g->ctx, out, &n, in, (int)len) != 1 || (size_t)n != len))
        return -1;
    return 0;
}

int gcm_encrypt(gcm_ctx *g, const uint8_t nonce[GCM_NONCE_LEN], const uint8_t *aad,
                size_t aad_len, const uint8_t *in, size_t len, uint8_t *out,
                uint8_t tag[GCM_TAG_LEN])
{
    int n = 0;
    if (gcm_run(g, nonce, aad, aad_len, in, len, out) != 0 ||
        EVP_CipherFinal_ex(g->ctx, out + len, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(g->ctx, EVP_CTRL_GCM_GET_TAG, GCM_TAG_LEN, tag) != 1)
        return vmseal_fail(EIO, "AES-GCM: encryption failed");
    return 0;
}

int gcm_decrypt(gcm_ctx *g, const uint8_t nonce[GCM_NONCE_LEN], const uint8_t *aad,
                size_t aad_len, const uint8_t *in, size_t len, uint8_t *out,
                const uint8_t tag[GCM_TAG_LEN])
{
    int n = 0;
    if (gcm_run(g, nonce, aad, aad_len, in, len, out) != 0 ||
        EVP_CIPHER_CTX_ctrl(g->ctx, EVP_CTRL_GCM_SET_TAG, GCM_TAG_LEN, (void *)tag) != 1) {
        if (len)
            OPENSSL_cleanse(out, len);
        return vmseal_fail(EIO, "AES-GCM: decryption failed");
    }
    if (EVP_CipherFinal_ex(g->ctx, out + len, &n) != 1) {
        if (len)
            OPENSSL_cleanse(out, len);
        return vmseal_fail(EBADMSG, "AES-GCM: authentication failed");
    }
    return 0;
}
