/* KEK delivery to a host's key-custody process (see kekdelivery.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include <vmseal/kekdelivery.h>

#include "gcm.h"

struct vmseal_kd_keypair {
    vmseal_secret *priv;                  /* 32 bytes */
    uint8_t pub[VMSEAL_KD_PUB_LEN];
};

static int x25519_public(const uint8_t *priv, uint8_t pub[VMSEAL_KD_PUB_LEN])
{
    EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, 32);
    size_t n = VMSEAL_KD_PUB_LEN;
    int ok = k && EVP_PKEY_get_raw_public_key(k, pub, &n) == 1 && n == VMSEAL_KD_PUB_LEN;
    EVP_PKEY_free(k);   /* OpenSSL clears the private key it copied */
    return ok ? 0 : vmseal_fail(EIO, "X25519 key failed");
}

int vmseal_kd_keypair_new(vmseal_kd_keypair **out)
{
    *out = NULL;
    vmseal_kd_keypair *kp = calloc(1, sizeof(*kp));
    if (!kp)
        return vmseal_fail(ENOMEM, "out of memory");
    int rc = vmseal_secret_random(32, &kp->priv);
    if (rc >= 0)
        rc = x25519_public(vmseal_secret_cdata(kp->priv), kp->pub);
    if (rc < 0) {
        vmseal_kd_keypair_free(kp);
        return rc;
    }
    *out = kp;
    return 0;
}

void vmseal_kd_keypair_free(vmseal_kd_keypair *kp)
{
    if (!kp)
        return;
    vmseal_secret_free(kp->priv);
    free(kp);
}

void vmseal_kd_public(const vmseal_kd_keypair *kp, uint8_t pub[VMSEAL_KD_PUB_LEN])
{
    memcpy(pub, kp->pub, VMSEAL_KD_PUB_LEN);
}

/* info = "vmseal kek delivery v1" 0 host 0 kek_id 0 provider */
static int make_info(const char *host, const char *kek_id, const char *provider, uint8_t *info, size_t *len)
{
    static const char label[] = "vmseal kek delivery v1";
    const char *parts[] = {host, kek_id, provider};
    size_t n = sizeof(label) - 1;
    memcpy(info, label, n);
    for (size_t i = 0; i < 3; i++) {
        size_t l = parts[i] ? strlen(parts[i]) : 0;
        if (l == 0 || l > 255)
            return vmseal_fail(EINVAL, "KEK delivery: host, KEK id and provider are 1..255 bytes");
        info[n++] = 0;
        memcpy(info + n, parts[i], l);
        n += l;
    }
    *len = n;
    return 0;
}

#define INFO_MAX (32 + 3 * 256)

/* key = HKDF-SHA256(shared, salt = epk || pub, info) */
static int derive(const uint8_t *shared, const uint8_t epk[32], const uint8_t pub[32], const uint8_t *info,
                  size_t info_len, uint8_t key[32])
{
    uint8_t salt[64];
    memcpy(salt, epk, 32);
    memcpy(salt + 32, pub, 32);
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
    size_t klen = 32;
    int ok = c && EVP_PKEY_derive_init(c) == 1 && EVP_PKEY_CTX_set_hkdf_md(c, EVP_sha256()) == 1 &&
             EVP_PKEY_CTX_set1_hkdf_salt(c, salt, sizeof(salt)) == 1 &&
             EVP_PKEY_CTX_set1_hkdf_key(c, shared, 32) == 1 &&
             EVP_PKEY_CTX_add1_hkdf_info(c, info, (int)info_len) == 1 && EVP_PKEY_derive(c, key, &klen) == 1 &&
             klen == 32;
    EVP_PKEY_CTX_free(c);
    return ok ? 0 : vmseal_fail(EIO, "HKDF failed");
}

/* shared = X25519(priv, peer) into a secret */
static int x25519(EVP_PKEY *mine, const uint8_t peer[32], vmseal_secret **shared)
{
    EVP_PKEY *p = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, 32);
    EVP_PKEY_CTX *c = p ? EVP_PKEY_CTX_new(mine, NULL) : NULL;
    vmseal_secret *s = vmseal_secret_new(32);
    size_t n = 32;
    int ok = c && s && EVP_PKEY_derive_init(c) == 1 && EVP_PKEY_derive_set_peer(c, p) == 1 &&
             EVP_PKEY_derive(c, vmseal_secret_data(s), &n) == 1 && n == 32;
    EVP_PKEY_CTX_free(c);
    EVP_PKEY_free(p);
    if (!ok) {
        vmseal_secret_free(s);
        return vmseal_fail(EBADMSG, "X25519 failed (a bad public key?)");
    }
    *shared = s;
    return 0;
}

int vmseal_kd_seal(const uint8_t pub[VMSEAL_KD_PUB_LEN], const char *host, const char *kek_id,
                   const char *provider, const vmseal_secret *kek, uint8_t blob[VMSEAL_KD_BLOB_LEN])
{
    if (vmseal_secret_len(kek) != VMSEAL_KD_KEK_LEN)
        return vmseal_fail(EINVAL, "KEK delivery: a KEK is 32 bytes");
    uint8_t info[INFO_MAX];
    size_t info_len;
    int rc = make_info(host, kek_id, provider, info, &info_len);
    if (rc < 0)
        return rc;
    vmseal_secret *eph = NULL, *shared = NULL, *key = NULL;
    EVP_PKEY *ek = NULL;
    rc = vmseal_secret_random(32, &eph);
    if (rc >= 0 && !(ek = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, vmseal_secret_cdata(eph), 32)))
        rc = vmseal_fail(EIO, "X25519 key failed");
    size_t n = 32;
    if (rc >= 0 && (EVP_PKEY_get_raw_public_key(ek, blob, &n) != 1 || n != 32))
        rc = vmseal_fail(EIO, "X25519 key failed");
    if (rc >= 0)
        rc = x25519(ek, pub, &shared);
    if (rc >= 0 && !(key = vmseal_secret_new(32)))
        rc = -ENOMEM;
    if (rc >= 0)
        rc = derive(vmseal_secret_cdata(shared), blob, pub, info, info_len, vmseal_secret_data(key));
    if (rc >= 0) {
        gcm_ctx g;
        static const uint8_t nonce[GCM_NONCE_LEN] = {0};
        rc = gcm_init(&g, vmseal_secret_cdata(key), 1);
        if (rc >= 0) {
            if (gcm_encrypt(&g, nonce, info, info_len, vmseal_secret_cdata(kek), VMSEAL_KD_KEK_LEN, blob + 32,
                            blob + 32 + VMSEAL_KD_KEK_LEN) < 0)
                rc = vmseal_fail(EIO, "AES-GCM failed");
            gcm_done(&g);
        }
    }
    EVP_PKEY_free(ek);
    vmseal_secret_free(eph);
    vmseal_secret_free(shared);
    vmseal_secret_free(key);
    if (rc < 0)
        OPENSSL_cleanse(blob, VMSEAL_KD_BLOB_LEN);
    return rc < 0 ? rc : 0;
}

int vmseal_kd_open(const vmseal_kd_keypair *kp, const char *host, const char *kek_id, const char *provider,
                   const uint8_t *blob, size_t bloblen, vmseal_secret **kek)
{
    *kek = NULL;
    if (bloblen != VMSEAL_KD_BLOB_LEN)
        return vmseal_fail(EBADMSG, "KEK delivery: a sealed KEK is %d bytes, not %zu", VMSEAL_KD_BLOB_LEN, bloblen);
    uint8_t info[INFO_MAX];
    size_t info_len;
    int rc = make_info(host, kek_id, provider, info, &info_len);
    if (rc < 0)
        return rc;
    EVP_PKEY *mine = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, vmseal_secret_cdata(kp->priv), 32);
    vmseal_secret *shared = NULL, *key = NULL, *out = NULL;
    if (!mine)
        rc = vmseal_fail(EIO, "X25519 key failed");
    if (rc >= 0)
        rc = x25519(mine, blob, &shared);
    if (rc >= 0 && (!(key = vmseal_secret_new(32)) || !(out = vmseal_secret_new(VMSEAL_KD_KEK_LEN))))
        rc = -ENOMEM;
    if (rc >= 0)
        rc = derive(vmseal_secret_cdata(shared), blob, kp->pub, info, info_len, vmseal_secret_data(key));
    if (rc >= 0) {
        gcm_ctx g;
        static const uint8_t nonce[GCM_NONCE_LEN] = {0};
        rc = gcm_init(&g, vmseal_secret_cdata(key), 0);
        if (rc >= 0) {
            if (gcm_decrypt(&g, nonce, info, info_len, blob + 32, VMSEAL_KD_KEK_LEN, vmseal_secret_data(out),
                            blob + 32 + VMSEAL_KD_KEK_LEN) < 0)
                rc = vmseal_fail(EBADMSG, "KEK %s: the sealed key does not open here (another host, key "
                                          "or provider, or changed on the way)", kek_id);
            gcm_done(&g);
        }
    }
    EVP_PKEY_free(mine);
    vmseal_secret_free(shared);
    vmseal_secret_free(key);
    if (rc < 0) {
        vmseal_secret_free(out);
        return rc;
    }
    *kek = out;
    return 0;
}

int vmseal_kd_b64(const uint8_t *in, size_t len, char *out, size_t outlen)
{
    if (outlen < 4 * ((len + 2) / 3) + 1)
        return vmseal_fail(ENOSPC, "base64 buffer too small");
    EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    return 0;
}

int vmseal_kd_unb64(const char *in, uint8_t *out, size_t outlen)
{
    size_t l = in ? strlen(in) : 0;
    if (l != 4 * ((outlen + 2) / 3) || l > 1024)
        return vmseal_fail(EINVAL, "base64: expected %zu bytes", outlen);
    uint8_t buf[800];
    int n = EVP_DecodeBlock(buf, (const unsigned char *)in, (int)l);
    size_t pad = (in[l - 1] == '=') + (in[l - 2] == '=');
    if (n < 0 || (size_t)n - pad != outlen) {
        OPENSSL_cleanse(buf, sizeof(buf));
        return vmseal_fail(EINVAL, "base64: expected %zu bytes", outlen);
    }
    memcpy(out, buf, outlen);
    OPENSSL_cleanse(buf, sizeof(buf));
    return 0;
}
