/* Master key backend: a 256-bit key in a 0600 file, AES-256-GCM in OpenSSL. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "masterkey.h"

typedef struct file_mk {
    kmsd_masterkey base;
    vmseal_secret *key;
    EVP_CIPHER *gcm;
} file_mk;

static int gcm(file_mk *f, int enc, const uint8_t *iv, const uint8_t *aad, size_t aadlen,
               const uint8_t *in, size_t len, uint8_t *out, uint8_t *tag)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, ok = c && EVP_CipherInit_ex2(c, f->gcm, vmseal_secret_cdata(f->key), iv, enc, NULL) &&
                    EVP_CipherUpdate(c, NULL, &n, aad, (int)aadlen) &&
                    EVP_CipherUpdate(c, out, &n, in, (int)len);
    if (ok && !enc)
        ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, KMSD_MK_TAG_LEN, tag) == 1;
    int fin = ok && EVP_CipherFinal_ex(c, out + n, &n) == 1;
    if (fin && enc)
        fin = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, KMSD_MK_TAG_LEN, tag) == 1;
    EVP_CIPHER_CTX_free(c);
    if (!ok)
        return vmseal_fail(EIO, "master key: cipher failure");
    if (!fin) {
        OPENSSL_cleanse(out, len);
        return vmseal_fail(EBADMSG, "master key: wrapped key does not authenticate "
                                    "(wrong master key or tampered store)");
    }
    return 0;
}

static int file_seal(kmsd_masterkey *mk, const uint8_t iv[KMSD_MK_IV_LEN], const uint8_t *aad,
                     size_t aadlen, const uint8_t *in, size_t len, uint8_t *out,
                     uint8_t tag[KMSD_MK_TAG_LEN])
{
    return gcm((file_mk *)mk, 1, iv, aad, aadlen, in, len, out, tag);
}

static int file_open(kmsd_masterkey *mk, const uint8_t iv[KMSD_MK_IV_LEN], const uint8_t *aad,
                     size_t aadlen, const uint8_t *in, size_t len, uint8_t *out,
                     const uint8_t tag[KMSD_MK_TAG_LEN])
{
    return gcm((file_mk *)mk, 0, iv, aad, aadlen, in, len, out, (uint8_t *)tag);
}

static void file_free(kmsd_masterkey *mk)
{
    file_mk *f = (file_mk *)mk;
    vmseal_secret_free(f->key);
    EVP_CIPHER_free(f->gcm);
    free(f);
}

int kmsd_mk_open_file(const char *path, kmsd_masterkey **out)
{
    *out = NULL;
    file_mk *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    int r = vmseal_secret_read_keyfile(path, 32, &f->key);
    if (r < 0) {
        free(f);
        return vmseal_fail(-r, "master key file %s: %s", path, vmseal_last_error());
    }
    f->gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    if (!f->gcm) {
        file_free(&f->base);
        return vmseal_fail(ENOTSUP, "master key: AES-256-GCM unavailable");
    }
    f->base.seal = file_seal;
    f->base.open = file_open;
    f->base.free = file_free;
    snprintf(f->base.desc, sizeof(f->base.desc), "file %s", path);
    *out = &f->base;
    return 0;
}

/* Write a 32-byte key as hex to a new 0600 file. */
static int write_key_file(const char *path, const vmseal_secret *k)
{
    char hex[65];
    vmseal_hex_encode(vmseal_secret_cdata(k), 32, hex);
    hex[64] = '\n';
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        int r = errno;
        OPENSSL_cleanse(hex, sizeof(hex));
        return vmseal_fail(r, "cannot create master key file %s: %s", path, strerror(r));
    }
    ssize_t w = write(fd, hex, 65);
    OPENSSL_cleanse(hex, sizeof(hex));
    if (w != 65 || fsync(fd) != 0) {
        close(fd);
        unlink(path);
        return vmseal_fail(EIO, "cannot write master key file %s", path);
    }
    close(fd);
    return 0;
}

int kmsd_mk_create_file(const char *path)
{
    vmseal_secret *k;
    int r = vmseal_secret_random(32, &k);
    if (r < 0)
        return r;
    r = write_key_file(path, k);
    vmseal_secret_free(k);
    return r;
}

int kmsd_mk_copy_file(const char *src, const char *dst)
{
    vmseal_secret *k;
    int r = vmseal_secret_read_keyfile(src, 32, &k);
    if (r < 0)
        return vmseal_fail(-r, "master key file %s: %s", src, vmseal_last_error());
    r = write_key_file(dst, k);
    vmseal_secret_free(k);
    return r;
}
