/* vmseal — KEK delivery to a host's key-custody process.
 *
 * A host's key-custody process makes an X25519 key pair when it starts (the
 * private half in a vmseal_secret, never on disk) and the host publishes the
 * public half when it registers. The manager seals each KEK it hands over to
 * that public key, so the host's network-facing process — and anything
 * between — only ever carries an opaque blob; only the custody process can
 * open it. A blob is bound to the host name, the KEK id and the key provider
 * name, so it cannot be replayed as another key or to another host.
 *
 *   blob = epk (32) || ct (32) || tag (16)
 *   shared = X25519(ephemeral private, custody public)
 *   key    = HKDF-SHA256(ikm = shared, salt = epk || custody public,
 *                        info = "vmseal kek delivery v1" 0 host 0 kek_id 0 provider)
 *   ct, tag = AES-256-GCM(key, nonce = 12 zero bytes, aad = info, kek)
 * Each blob has a fresh ephemeral key, so its GCM key is used once and the
 * fixed nonce is safe. Everything is OpenSSL (EVP X25519, HKDF, AES-GCM).
 */
#ifndef VMSEAL_KEKDELIVERY_H
#define VMSEAL_KEKDELIVERY_H

#include <stddef.h>
#include <stdint.h>

#include <vmseal/common.h>
#include <vmseal/secret.h>

#define VMSEAL_KD_PUB_LEN 32
#define VMSEAL_KD_KEK_LEN 32
#define VMSEAL_KD_BLOB_LEN (VMSEAL_KD_PUB_LEN + VMSEAL_KD_KEK_LEN + 16)

/* The custody key pair: private half in locked memory. */
typedef struct vmseal_kd_keypair vmseal_kd_keypair;
int vmseal_kd_keypair_new(vmseal_kd_keypair **out) VMSEAL_MUST_CHECK;
void vmseal_kd_keypair_free(vmseal_kd_keypair *kp);
void vmseal_kd_public(const vmseal_kd_keypair *kp, uint8_t pub[VMSEAL_KD_PUB_LEN]);

/* Seal a 32-byte KEK for the holder of pub. host, kek_id and provider are
 * 1..255 bytes each, without NUL. */
int vmseal_kd_seal(const uint8_t pub[VMSEAL_KD_PUB_LEN], const char *host, const char *kek_id,
                   const char *provider, const vmseal_secret *kek,
                   uint8_t blob[VMSEAL_KD_BLOB_LEN]) VMSEAL_MUST_CHECK;

/* Open a blob: -EBADMSG when it was not sealed for this key pair and this
 * (host, kek_id, provider), or was changed. */
int vmseal_kd_open(const vmseal_kd_keypair *kp, const char *host, const char *kek_id,
                   const char *provider, const uint8_t *blob, size_t bloblen,
                   vmseal_secret **kek) VMSEAL_MUST_CHECK;

/* Base64 (standard, padded) of a public key or blob; and back (-EINVAL for
 * anything else than exactly outlen bytes). */
int vmseal_kd_b64(const uint8_t *in, size_t len, char *out, size_t outlen);
int vmseal_kd_unb64(const char *in, uint8_t *out, size_t outlen) VMSEAL_MUST_CHECK;

#endif
