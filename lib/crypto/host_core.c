/* libvmseal — host-sealed files (include/vmseal/hostcore.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/sha.h>

#include <vmseal/hostcore.h>

#define HC_INFO "vmseal host core v1"
#define HC_PROVIDER "host"

int vmseal_hostcore_public(const vmseal_secret *priv, uint8_t pub[32])
{
    if (!priv || vmseal_secret_len(priv) != VMSEAL_HOSTCORE_KEY_LEN)
        return vmseal_fail(EINVAL, "host key: a private key is 32 bytes");
    EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, vmseal_secret_cdata(priv), 32);
    size_t n = 32;
    int ok = k && EVP_PKEY_get_raw_public_key(k, pub, &n) == 1 && n == 32;
    EVP_PKEY_free(k);
    return ok ? 0 : vmseal_fail(EIO, "host key: X25519 failed");
}

int vmseal_hostcore_keygen(vmseal_secret **priv, uint8_t pub[32])
{
    *priv = NULL;
    vmseal_secret *p = NULL;
    int r = vmseal_secret_random(VMSEAL_HOSTCORE_KEY_LEN, &p);
    if (r == 0)
        r = vmseal_hostcore_public(p, pub);
    if (r < 0) {
        vmseal_secret_free(p);
        return r;
    }
    *priv = p;
    return 0;
}

static void kek_id_of(const uint8_t pub[32], char out[32])
{
    uint8_t h[SHA256_DIGEST_LENGTH];
    SHA256(pub, 32, h);
    int n = snprintf(out, 32, "hostcore-");
    for (int i = 0; i < 8; i++)
        n += snprintf(out + n, (size_t)(32 - n), "%02x", h[i]);
}

/* KEK = HKDF-SHA256(X25519(mine, peer), salt = E || H, info) */
static int derive_kek(const uint8_t *mine_priv, const uint8_t peer[32], const uint8_t epk[32],
                      const uint8_t hpk[32], vmseal_secret **kek)
{
    *kek = NULL;
    vmseal_secret *shared = vmseal_secret_new(32), *k = vmseal_secret_new(32);
    EVP_PKEY *me = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, mine_priv, 32);
    EVP_PKEY *p = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, 32);
    EVP_PKEY_CTX *c = me && p ? EVP_PKEY_CTX_new(me, NULL) : NULL;
    size_t n = 32;
    int ok = shared && k && c && EVP_PKEY_derive_init(c) == 1 && EVP_PKEY_derive_set_peer(c, p) == 1 &&
             EVP_PKEY_derive(c, vmseal_secret_data(shared), &n) == 1 && n == 32;
    EVP_PKEY_CTX_free(c);
    EVP_PKEY_free(p);
    EVP_PKEY_free(me);
    if (ok) {
        uint8_t salt[64];
        memcpy(salt, epk, 32);
        memcpy(salt + 32, hpk, 32);
        EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
        EVP_KDF_CTX *kc = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, vmseal_secret_data(shared), 32),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt, sizeof(salt)),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (char *)HC_INFO,
                                              sizeof(HC_INFO) - 1),
            OSSL_PARAM_construct_end(),
        };
        ok = kc && EVP_KDF_derive(kc, vmseal_secret_data(k), 32, params) == 1;
        EVP_KDF_CTX_free(kc);
        EVP_KDF_free(kdf);
    }
    vmseal_secret_free(shared);
    if (!ok) {
        vmseal_secret_free(k);
        return vmseal_fail(EBADMSG, "host-sealed file: key agreement failed (a bad public key?)");
    }
    *kek = k;
    return 0;
}

int vmseal_hostcore_seal(const uint8_t pub[32], const vmseal_stream *io)
{
    vmseal_secret *eph = NULL, *kek = NULL;
    uint8_t prefix[VMSEAL_HOSTCORE_PREFIX_LEN];
    int r = vmseal_secret_random(32, &eph);
    if (r < 0)
        return r;
    memcpy(prefix, VMSEAL_HOSTCORE_MAGIC, 8);
    prefix[8] = VMSEAL_HOSTCORE_VERSION;
    r = vmseal_hostcore_public(eph, prefix + 9);
    memcpy(prefix + 41, pub, 32);
    if (r == 0)
        r = derive_kek(vmseal_secret_cdata(eph), pub, prefix + 9, pub, &kek);
    vmseal_secret_free(eph);   /* the ephemeral key is gone before any data is read */
    if (r == 0)
        r = io->write(io->write_ctx, prefix, sizeof(prefix));
    if (r == 0) {
        char id[32];
        kek_id_of(pub, id);
        r = vmseal_seal(kek, HC_PROVIDER, id, 0, io);
    }
    vmseal_secret_free(kek);
    return r;
}

int vmseal_hostcore_open(const vmseal_secret *priv, const vmseal_stream *io)
{
    uint8_t prefix[VMSEAL_HOSTCORE_PREFIX_LEN], mine[32];
    size_t got = 0;
    while (got < sizeof(prefix)) {
        ssize_t n = io->read(io->read_ctx, prefix + got, sizeof(prefix) - got);
        if (n < 0)
            return (int)n;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    size_t cmp = got < 8 ? got : 8;
    if (got == 0 || memcmp(prefix, VMSEAL_HOSTCORE_MAGIC, cmp) != 0)
        return vmseal_fail(EPROTO, "not a host-sealed file (bad magic)");
    if (got < sizeof(prefix))
        return vmseal_fail(EPROTO, "host-sealed file: header truncated");
    if (prefix[8] != VMSEAL_HOSTCORE_VERSION)
        return vmseal_fail(ENOTSUP, "host-sealed file: version %u is not supported", prefix[8]);
    int r = vmseal_hostcore_public(priv, mine);
    if (r < 0)
        return r;
    if (CRYPTO_memcmp(mine, prefix + 41, 32) != 0)
        return vmseal_fail(EKEYREJECTED, "host-sealed file: sealed to another host key");
    vmseal_secret *kek = NULL;
    r = derive_kek(vmseal_secret_cdata(priv), prefix + 9, prefix + 9, prefix + 41, &kek);
    if (r < 0)
        return r;
    vmseal_sealed_info info;
    r = vmseal_unseal(kek, io, &info);
    vmseal_secret_free(kek);
    return r;
}
