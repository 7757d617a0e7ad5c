/* Wrapped-object format on top of a master key backend (see masterkey.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "masterkey.h"

#define AAD_PREFIX "vmseal-kmsd/v1/"
#define MAX_UID 256

static size_t make_aad(const char *uid, uint8_t *aad)
{
    size_t p = strlen(AAD_PREFIX), u = strlen(uid);
    memcpy(aad, AAD_PREFIX, p);
    memcpy(aad + p, uid, u);
    return p + u;
}

int kmsd_mk_wrap(kmsd_masterkey *mk, const char *uid, const uint8_t *plain, size_t len,
                 uint8_t **blob, size_t *bloblen)
{
    *blob = NULL;
    if (strlen(uid) > MAX_UID || len == 0 || len > (1u << 20))
        return vmseal_fail(EINVAL, "master key: bad object to wrap");
    uint8_t aad[sizeof(AAD_PREFIX) + MAX_UID];
    size_t aadlen = make_aad(uid, aad);
    size_t n = len + KMSD_MK_OVERHEAD;
    uint8_t *b = malloc(n);
    if (!b)
        return -ENOMEM;
    b[0] = 1;
    if (RAND_bytes(b + 1, KMSD_MK_IV_LEN) != 1) {
        free(b);
        return vmseal_fail(EIO, "master key: no randomness");
    }
    int r = mk->seal(mk, b + 1, aad, aadlen, plain, len, b + 1 + KMSD_MK_IV_LEN,
                     b + n - KMSD_MK_TAG_LEN);
    if (r < 0) {
        free(b);
        return r;
    }
    *blob = b;
    *bloblen = n;
    return 0;
}

int kmsd_mk_unwrap_into(kmsd_masterkey *mk, const char *uid, const uint8_t *blob, size_t bloblen,
                        uint8_t *out, size_t outlen)
{
    if (strlen(uid) > MAX_UID)
        return vmseal_fail(EINVAL, "master key: bad object id");
    if (bloblen <= KMSD_MK_OVERHEAD || blob[0] != 1)
        return vmseal_fail(EBADMSG, "master key: object %s: wrapped key is malformed", uid);
    size_t len = bloblen - KMSD_MK_OVERHEAD;
    if (outlen != len)
        return vmseal_fail(EINVAL, "master key: object %s: output of %zu bytes for %zu", uid,
                           outlen, len);
    uint8_t aad[sizeof(AAD_PREFIX) + MAX_UID];
    size_t aadlen = make_aad(uid, aad);
    return mk->open(mk, blob + 1, aad, aadlen, blob + 1 + KMSD_MK_IV_LEN, len, out,
                    blob + bloblen - KMSD_MK_TAG_LEN);
}

int kmsd_mk_unwrap(kmsd_masterkey *mk, const char *uid, const uint8_t *blob, size_t bloblen,
                   vmseal_secret **out)
{
    *out = NULL;
    if (bloblen <= KMSD_MK_OVERHEAD)
        return vmseal_fail(EBADMSG, "master key: object %s: wrapped key is malformed", uid);
    vmseal_secret *s = vmseal_secret_new(bloblen - KMSD_MK_OVERHEAD);
    if (!s)
        return -ENOMEM;
    int r = kmsd_mk_unwrap_into(mk, uid, blob, bloblen, vmseal_secret_data(s), vmseal_secret_len(s));
    if (r < 0) {
        vmseal_secret_free(s);
        return r;
    }
    *out = s;
    return 0;
}

void kmsd_mk_free(kmsd_masterkey *mk)
{
    if (mk)
        mk->free(mk);
}
