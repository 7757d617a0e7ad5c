/* Resume checkpoints for long disk operations.
 *
 * A checkpoint says "the first `done` bytes of payload of the partial
 * output are converted and on disk". It is only believed when it is
 * authentic (HMAC-SHA256 under a key derived with HKDF from a volume key
 * the run holds, so a checkpoint cannot be forged or mixed up with another
 * disk) and when it is bound to exactly the files at hand: the identity of
 * the input (device, inode, size, mtime) and the SHA-256 of the LUKS1
 * headers of input and output. Anything else means "start over".
 *
 * File layout (168 bytes, integers little-endian):
 *   magic "VMSLCKP1" | op u32 | reserved u32 | done u64 | total u64 |
 *   src_dev u64 | src_ino u64 | src_size u64 | src_mtime_ns u64 |
 *   src_header_sha256[32] | dst_header_sha256[32] | reserved[8] | hmac[32]
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include <vmseal/xts.h>

#include "disk_internal.h"

#define CKPT_MAGIC "VMSLCKP1"
#define CKPT_BODY 136
#define CKPT_SIZE (CKPT_BODY + 32)

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void encode(const disk_checkpoint *c, uint8_t *b)
{
    memset(b, 0, CKPT_BODY);
    memcpy(b, CKPT_MAGIC, 8);
    put64(b + 8, c->op);          /* op u32 + reserved u32, little-endian */
    put64(b + 16, c->done);
    put64(b + 24, c->total);
    put64(b + 32, c->src_dev);
    put64(b + 40, c->src_ino);
    put64(b + 48, c->src_size);
    put64(b + 56, c->src_mtime_ns);
    memcpy(b + 64, c->src_header_sha256, 32);
    memcpy(b + 96, c->dst_header_sha256, 32);
    /* bytes 128..135 reserved, zero */
}

static int mac(const vmseal_secret *key, const uint8_t *body, uint8_t out[32])
{
    vmseal_secret *mk = vmseal_secret_new(32);
    if (!mk)
        return vmseal_fail(ENOMEM, "checkpoint: out of memory");
    int rc = -EIO;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *mctx = m ? EVP_MAC_CTX_new(m) : NULL;
    static const char info[] = "vmseal disk checkpoint v1";
    OSSL_PARAM kp[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
                                          (void *)vmseal_secret_cdata(key), vmseal_secret_len(key)),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, sizeof(info) - 1),
        OSSL_PARAM_construct_end(),
    };
    OSSL_PARAM mp[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    size_t outl = 0;
    if (kctx && mctx &&
        EVP_KDF_derive(kctx, vmseal_secret_data(mk), 32, kp) == 1 &&
        EVP_MAC_init(mctx, vmseal_secret_cdata(mk), 32, mp) == 1 &&
        EVP_MAC_update(mctx, body, CKPT_BODY) == 1 &&
        EVP_MAC_final(mctx, out, &outl, 32) == 1 && outl == 32)
        rc = 0;
    EVP_MAC_CTX_free(mctx);
    EVP_MAC_free(m);
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    vmseal_secret_free(mk);
    return rc == 0 ? 0 : vmseal_fail(EIO, "checkpoint: HMAC failed");
}

int vmseal_checkpoint_write(const char *path, const disk_checkpoint *c, const vmseal_secret *key)
{
    uint8_t b[CKPT_SIZE];
    encode(c, b);
    int rc = mac(key, b, b + CKPT_BODY);
    if (rc < 0)
        return rc;
    char *tmp = vmseal_path_with_suffix(path, ".tmp");
    if (!tmp)
        return vmseal_fail(ENOMEM, "checkpoint: out of memory");
    /* whatever sits under the temporary name (a stale file, a planted
     * symlink) is removed, never written through */
    if (unlink(tmp) != 0 && errno != ENOENT) {
        rc = vmseal_fail(errno, "checkpoint %s: %s", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = vmseal_fail(errno, "checkpoint %s: %s", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    ssize_t w = write(fd, b, sizeof(b));
    int e = errno;
    if (w != (ssize_t)sizeof(b) || fsync(fd) != 0) {
        e = w < 0 ? e : (errno ? errno : EIO);
        close(fd);
        unlink(tmp);
        free(tmp);
        return vmseal_fail(e, "checkpoint %s: write failed: %s", path, strerror(e));
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        free(tmp);
        return vmseal_fail(e, "checkpoint %s: rename failed: %s", path, strerror(e));
    }
    free(tmp);
    return vmseal_fsync_parent_dir(path);
}

int vmseal_checkpoint_read(const char *path, const vmseal_secret *key, disk_checkpoint *c)
{
    memset(c, 0, sizeof(*c));
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? -ENOENT : vmseal_fail(errno, "checkpoint %s: %s", path, strerror(errno));
    uint8_t b[CKPT_SIZE + 1], want[32];
    ssize_t r = read(fd, b, sizeof(b));
    close(fd);
    if (r != CKPT_SIZE || memcmp(b, CKPT_MAGIC, 8) != 0)
        return vmseal_fail(EBADMSG, "checkpoint %s: malformed", path);
    int rc = mac(key, b, want);
    if (rc < 0)
        return rc;
    if (CRYPTO_memcmp(want, b + CKPT_BODY, 32) != 0)
        return vmseal_fail(EBADMSG, "checkpoint %s: not authentic for this disk", path);
    uint64_t opw = get64(b + 8);
    c->op = (uint32_t)opw;
    c->done = get64(b + 16);
    c->total = get64(b + 24);
    c->src_dev = get64(b + 32);
    c->src_ino = get64(b + 40);
    c->src_size = get64(b + 48);
    c->src_mtime_ns = get64(b + 56);
    memcpy(c->src_header_sha256, b + 64, 32);
    memcpy(c->dst_header_sha256, b + 96, 32);
    if (opw >> 32 || c->done > c->total || c->done % VMSEAL_SECTOR_SIZE)
        return vmseal_fail(EBADMSG, "checkpoint %s: inconsistent", path);
    return 0;
}

int vmseal_checkpoint_bind_source(int fd, disk_checkpoint *c)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return vmseal_fail(errno, "stat: %s", strerror(errno));
    c->src_dev = (uint64_t)st.st_dev;
    c->src_ino = (uint64_t)st.st_ino;
    c->src_size = (uint64_t)st.st_size;
    c->src_mtime_ns = (uint64_t)st.st_mtim.tv_sec * 1000000000ull + (uint64_t)st.st_mtim.tv_nsec;
    return 0;
}
