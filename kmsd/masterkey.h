/* vmseal-kmsd — the master key that wraps every stored key at rest.
 *
 * Format of a wrapped object (AES-256-GCM, the master key never leaves its
 * backend; with PKCS#11 the cipher runs on the token):
 *
 *   byte 0      format version (1)
 *   bytes 1-12  random 96-bit IV
 *   bytes 13-   ciphertext (same length as the plaintext)
 *   last 16     GCM tag
 *
 * AAD = "vmseal-kmsd/v1/" || object unique identifier, so a wrapped blob
 * copied onto another object's row fails to unwrap.
 */
#ifndef KMSD_MASTERKEY_H
#define KMSD_MASTERKEY_H

#include <stddef.h>
#include <stdint.h>

#include <vmseal/secret.h>

#define KMSD_MK_IV_LEN 12
#define KMSD_MK_TAG_LEN 16
#define KMSD_MK_OVERHEAD (1 + KMSD_MK_IV_LEN + KMSD_MK_TAG_LEN)

typedef struct kmsd_masterkey kmsd_masterkey;

struct kmsd_masterkey {
    /* AES-256-GCM seal/open with the master key; in/out may not overlap. */
    int (*seal)(kmsd_masterkey *mk, const uint8_t iv[KMSD_MK_IV_LEN], const uint8_t *aad,
                size_t aadlen, const uint8_t *in, size_t len, uint8_t *out,
                uint8_t tag[KMSD_MK_TAG_LEN]);
    int (*open)(kmsd_masterkey *mk, const uint8_t iv[KMSD_MK_IV_LEN], const uint8_t *aad,
                size_t aadlen, const uint8_t *in, size_t len, uint8_t *out,
                const uint8_t tag[KMSD_MK_TAG_LEN]);
    void (*free)(kmsd_masterkey *mk);
    char desc[256];   /* "file /path" or "pkcs11 token LABEL key LABEL" */
};

/* Wrap plaintext for object uid into a malloc'd blob (free with free()). */
int kmsd_mk_wrap(kmsd_masterkey *mk, const char *uid, const uint8_t *plain, size_t len,
                 uint8_t **blob, size_t *bloblen) VMSEAL_MUST_CHECK;
/* Unwrap into a new secret; -EBADMSG when the blob or binding is wrong. */
int kmsd_mk_unwrap(kmsd_masterkey *mk, const char *uid, const uint8_t *blob, size_t bloblen,
                   vmseal_secret **out) VMSEAL_MUST_CHECK;
/* Same into a caller's (secure) buffer of exactly bloblen - KMSD_MK_OVERHEAD
 * bytes. */
int kmsd_mk_unwrap_into(kmsd_masterkey *mk, const char *uid, const uint8_t *blob, size_t bloblen,
                        uint8_t *out, size_t outlen) VMSEAL_MUST_CHECK;
void kmsd_mk_free(kmsd_masterkey *mk);

/* File backend: 32 bytes raw or 64 hex characters, file mode 0600 enforced. */
int kmsd_mk_open_file(const char *path, kmsd_masterkey **out) VMSEAL_MUST_CHECK;
/* Create a new random master key file (0600, refuses to overwrite). */
int kmsd_mk_create_file(const char *path) VMSEAL_MUST_CHECK;

/* Copy a master key file (checked as by kmsd_mk_open_file) to a new file
 * dst (hex, 0600, refuses to overwrite): another node of a cluster. */
int kmsd_mk_copy_file(const char *src, const char *dst) VMSEAL_MUST_CHECK;

/* PKCS#11 backend: module path, token label, PIN file (0600), key label.
 * With create, a new non-extractable AES-256 key is generated on the token
 * (refused when one with this label exists). */
typedef struct kmsd_pkcs11_params {
    const char *module;
    const char *token_label;
    const char *pin_file;
    const char *key_label;
} kmsd_pkcs11_params;
int kmsd_mk_open_pkcs11(const kmsd_pkcs11_params *p, int create, kmsd_masterkey **out)
    VMSEAL_MUST_CHECK;

#endif
