/* Private: AES-256-GCM with a 96-bit nonce and 128-bit tag, one context
 * reused for many messages under one key (OpenSSL EVP). */
#ifndef VMSEAL_LIB_GCM_H
#define VMSEAL_LIB_GCM_H

#include <openssl/evp.h>

#include <vmseal/common.h>

#define GCM_KEY_LEN 32
#define GCM_NONCE_LEN 12
#define GCM_TAG_LEN 16

typedef struct gcm_ctx {
    EVP_CIPHER_CTX *ctx;
    int enc;
} gcm_ctx;

/* Load a 32-byte key for encryption (enc=1) or decryption (enc=0). */
int gcm_init(gcm_ctx *g, const uint8_t key[GCM_KEY_LEN], int enc);
void gcm_done(gcm_ctx *g);

/* out may equal in. */
int gcm_encrypt(gcm_ctx *g, const uint8_t nonce[GCM_NONCE_LEN], const uint8_t *aad,
                size_t aad_len, const uint8_t *in, size_t len, uint8_t *out,
                uint8_t tag[GCM_TAG_LEN]);

/* -EBADMSG when the tag does not verify; out is wiped then. */
int gcm_decrypt(gcm_ctx *g, const uint8_t nonce[GCM_NONCE_LEN], const uint8_t *aad,
                size_t aad_len, const uint8_t *in, size_t len, uint8_t *out,
                const uint8_t tag[GCM_TAG_LEN]) VMSEAL_MUST_CHECK;

#endif
