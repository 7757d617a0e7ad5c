/* Create, encrypt and decrypt LUKS1 images.
 *
 * Outputs are built as "<out>.partial" and renamed into place (never over
 * an existing file) only once complete and fsync'd, so a half-written
 * output never looks valid. Next to the partial output lives
 * "<out>.partial.ckpt" (lib/disk/disk_checkpoint.c): written only after the data
 * it covers was fdatasync'd, authenticated with a key derived from the
 * volume key, and bound to the input file and to the partial's LUKS header.
 * Calling the same function again after a crash, kill or cancel resumes
 * from it; a partial output without a believable checkpoint is discarded.
 * Other failures remove the partial output.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <vmseal/xts.h>

#include "disk_internal.h"

struct ckpt_ctx {
    const char *path;
    disk_checkpoint c;
    const vmseal_secret *key;
};

static int write_ckpt(uint64_t done, void *arg)
{
    struct ckpt_ctx *k = arg;
    k->c.done = done;
    return vmseal_checkpoint_write(k->path, &k->c, k->key);
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static int same_source(const disk_checkpoint *a, const disk_checkpoint *b)
{
    return a->op == b->op && a->total == b->total && a->src_dev == b->src_dev &&
           a->src_ino == b->src_ino && a->src_size == b->src_size &&
           a->src_mtime_ns == b->src_mtime_ns &&
           CRYPTO_memcmp(a->src_header_sha256, b->src_header_sha256, 32) == 0;
}

/* Paths and descriptors of one run. */
struct run {
    char *partial, *ckpt;
    int in, out;
    vmseal_secret *key;        /* volume key the checkpoint is keyed with */
    int owned;                 /* we hold the lock on the partial output */
};

static void run_end(struct run *r, int rc)
{
    if (r->out >= 0)
        close(r->out);
    if (r->in >= 0)
        close(r->in);
    /* Keep the partial output for a resume only when interrupted. */
    if (rc < 0 && rc != -ECANCELED && r->partial && r->owned) {
        if (r->ckpt)
            unlink(r->ckpt);
        unlink(r->partial);
    }
    vmseal_secret_free(r->key);
    free(r->partial);
    free(r->ckpt);
}

static int run_names(struct run *r, const char *out)
{
    r->in = r->out = -1;
    r->partial = vmseal_path_with_suffix(out, ".partial");
    r->ckpt = r->partial ? vmseal_path_with_suffix(r->partial, ".ckpt") : NULL;
    if (!r->ckpt)
        return vmseal_fail(ENOMEM, "out of memory");
    if (exists(out))
        return vmseal_fail(EEXIST, "%s already exists; refusing to overwrite it", out);
    return 0;
}

/* Open an existing partial output and lock it; 1 if there is one. */
static int open_partial(struct run *r)
{
    r->out = open(r->partial, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (r->out < 0)
        return errno == ENOENT ? 0 : vmseal_fail(errno, "%s: %s", r->partial, strerror(errno));
    int rc = vmseal_lock_exclusive(r->out, r->partial);
    r->owned = rc == 0;
    return rc < 0 ? rc : 1;
}

/* Throw away a partial output that cannot be resumed, create a fresh one. */
static int fresh_partial(struct run *r)
{
    if (r->out < 0) {
        int rc = open_partial(r);   /* someone else working on it? */
        if (rc < 0)
            return rc;
    }
    if (r->out >= 0) {
        close(r->out);
        r->out = -1;
    }
    unlink(r->ckpt);
    unlink(r->partial);
    r->out = open(r->partial, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (r->out < 0)
        return vmseal_fail(errno, "%s: %s", r->partial, strerror(errno));
    int rc = vmseal_lock_exclusive(r->out, r->partial);
    r->owned = rc == 0;
    return rc;
}

static int finish(struct run *r, const char *out)
{
    if (fsync(r->out) != 0)
        return vmseal_fail(errno, "%s: fsync failed: %s", r->partial, strerror(errno));
    /* Drop the checkpoint first: a crash right after leaves a partial
     * without checkpoint, which is simply redone, never a stale claim. */
    unlink(r->ckpt);
    int rc = vmseal_rename_noreplace(r->partial, out);
    if (rc < 0)
        return rc;
    free(r->partial);       /* renamed: nothing to clean up any more */
    r->partial = NULL;
    return vmseal_fsync_parent_dir(out);
}

static int input_size(int fd, const char *path, uint64_t *size)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return vmseal_fail(errno, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
        return vmseal_fail(EINVAL, "%s: not a regular file or block device", path);
    off_t end = lseek(fd, 0, SEEK_END);
    if (end < 0)
        return vmseal_fail(errno, "%s: %s", path, strerror(errno));
    *size = (uint64_t)end;
    return 0;
}

int vmseal_disk_create(const char *path, uint64_t size, const vmseal_secret *pass,
                       const vmseal_disk_opts *o)
{
    if (!path || !pass)
        return vmseal_fail(EINVAL, "create: missing argument");
    if (size == 0 || size % VMSEAL_SECTOR_SIZE)
        return vmseal_fail(EINVAL, "create: size must be a non-zero multiple of 512 bytes");
    struct run r = {0};
    int rc = run_names(&r, path);
    if (rc == 0)
        rc = fresh_partial(&r);
    uint64_t off = 0;
    if (rc == 0) {
        if (o && o->progress)
            o->progress(0, size, o->progress_ctx);
        rc = vmseal_luks_format(r.partial, r.out, size, pass, o ? o->uuid : NULL, &r.key, &off);
    }
    if (rc == 0)
        rc = finish(&r, path);
    if (rc == 0 && o && o->progress)
        o->progress(size, size, o->progress_ctx);
    run_end(&r, rc);
    return rc;
}

/* Can the partial output of an interrupted encrypt be trusted? */
static int encrypt_resume_point(struct run *r, const vmseal_secret *pass, const disk_checkpoint *want,
                                const char *uuid, uint64_t *start, uint64_t *off)
{
    vmseal_disk_info info;
    disk_checkpoint have;
    uint8_t sha[32];
    int rc = vmseal_disk_open_key(r->out, r->partial, pass, &info, &r->key);
    if (rc == 0)
        rc = vmseal_checkpoint_read(r->ckpt, r->key, &have);
    if (rc == 0)
        rc = vmseal_luks1_header_sha256(r->out, sha);
    if (rc < 0)
        return rc;
    if (!same_source(&have, want) || info.payload_bytes != want->total ||
        CRYPTO_memcmp(sha, have.dst_header_sha256, 32) != 0 || (uuid && strcmp(uuid, info.uuid)))
        return -ESTALE;
    *start = have.done;
    *off = info.payload_offset_bytes;
    return 0;
}

int vmseal_disk_encrypt(const char *plain_in, const char *luks_out, const vmseal_secret *pass,
                        const vmseal_disk_opts *o)
{
    if (!plain_in || !luks_out || !pass)
        return vmseal_fail(EINVAL, "encrypt: missing argument");
    struct run r = {0};
    int rc = run_names(&r, luks_out);
    uint64_t size = 0, start = 0, off = 0;
    int resumed = 0;
    struct ckpt_ctx k = {.c = {.op = BULK_ENCRYPT}};
    if (rc == 0) {
        r.in = open(plain_in, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (r.in < 0)
            rc = vmseal_fail(errno, "%s: %s", plain_in, strerror(errno));
    }
    if (rc == 0)
        rc = vmseal_lock_shared_read(r.in, plain_in);
    if (rc == 0)
        rc = input_size(r.in, plain_in, &size);
    if (rc == 0 && size == 0)
        rc = vmseal_fail(EINVAL, "%s: input is empty", plain_in);
    if (rc == 0) {
        k.c.total = (size + VMSEAL_SECTOR_SIZE - 1) / VMSEAL_SECTOR_SIZE * VMSEAL_SECTOR_SIZE;
        rc = vmseal_checkpoint_bind_source(r.in, &k.c);
    }
    if (rc == 0)
        rc = open_partial(&r);
    if (rc == 1) {
        /* Not resumable (no or stale checkpoint, other passphrase, other
         * input): start over. */
        rc = encrypt_resume_point(&r, pass, &k.c, o ? o->uuid : NULL, &start, &off);
        resumed = rc == 0;
        if (!resumed) {
            vmseal_secret_free(r.key);
            r.key = NULL;
        }
        rc = 0;
    }
    if (rc == 0 && !resumed) {
        rc = fresh_partial(&r);
        if (rc == 0)
            rc = vmseal_luks_format(r.partial, r.out, k.c.total, pass, o ? o->uuid : NULL,
                                    &r.key, &off);
    }
    if (rc == 0)
        rc = vmseal_luks1_header_sha256(r.out, k.c.dst_header_sha256);
    if (rc == 0) {
        k.path = r.ckpt;
        k.key = r.key;
        if (!resumed) {
            /* Header (and keyslot) on disk before the first checkpoint. */
            if (fsync(r.out) != 0)
                rc = vmseal_fail(errno, "%s: fsync failed: %s", r.partial, strerror(errno));
            else
                rc = write_ckpt(0, &k);
        }
    }
    if (rc == 0) {
        bulk_job job = {
            .op = BULK_ENCRYPT, .src_fd = r.in, .dst_fd = r.out,
            .src_off = 0, .src_len = size, .dst_off = off, .total = k.c.total, .start = start,
            .dst_key = r.key, .resumed = resumed, .checkpoint = write_ckpt,
            .checkpoint_ctx = &k, .opts = o,
        };
        rc = vmseal_bulk_run(&job);
    }
    if (rc == 0)
        rc = finish(&r, luks_out);
    run_end(&r, rc);
    return rc;
}

static int decrypt_resume_point(struct run *r, const disk_checkpoint *want, uint64_t *start)
{
    disk_checkpoint have;
    struct stat st;
    int rc = vmseal_checkpoint_read(r->ckpt, r->key, &have);
    if (rc < 0)
        return rc;
    if (fstat(r->out, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != want->total ||
        !same_source(&have, want))
        return -ESTALE;
    *start = have.done;
    return 0;
}

int vmseal_disk_decrypt(const char *luks_in, const char *plain_out, const vmseal_secret *pass,
                        const vmseal_disk_opts *o)
{
    if (!luks_in || !plain_out || !pass)
        return vmseal_fail(EINVAL, "decrypt: missing argument");
    struct run r = {0};
    int rc = run_names(&r, plain_out);
    vmseal_disk_info info;
    uint64_t start = 0;
    int resumed = 0;
    struct ckpt_ctx k = {.c = {.op = BULK_DECRYPT}};
    if (rc == 0) {
        r.in = open(luks_in, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (r.in < 0)
            rc = vmseal_fail(errno, "%s: %s", luks_in, strerror(errno));
    }
    if (rc == 0)
        rc = vmseal_lock_shared_read(r.in, luks_in);
    if (rc == 0)
        rc = vmseal_disk_open_key(r.in, luks_in, pass, &info, &r.key);
    if (rc == 0) {
        k.c.total = info.payload_bytes;
        rc = vmseal_checkpoint_bind_source(r.in, &k.c);
    }
    if (rc == 0)
        rc = vmseal_luks1_header_sha256(r.in, k.c.src_header_sha256);
    if (rc == 0)
        rc = open_partial(&r);
    if (rc == 1) {
        rc = decrypt_resume_point(&r, &k.c, &start);
        resumed = rc == 0;
        rc = 0;
    }
    if (rc == 0 && !resumed) {
        rc = fresh_partial(&r);
        if (rc == 0 && ftruncate(r.out, (off_t)info.payload_bytes) != 0)
            rc = vmseal_fail(errno, "%s: cannot size the output: %s", r.partial, strerror(errno));
        if (rc == 0) {
            k.path = r.ckpt;
            k.key = r.key;
            rc = write_ckpt(0, &k);
        }
    }
    if (rc == 0) {
        k.path = r.ckpt;
        k.key = r.key;
        bulk_job job = {
            .op = BULK_DECRYPT, .src_fd = r.in, .dst_fd = r.out,
            .src_off = info.payload_offset_bytes, .src_len = info.payload_bytes, .dst_off = 0,
            .total = info.payload_bytes, .start = start, .src_key = r.key, .resumed = resumed,
            .checkpoint = write_ckpt, .checkpoint_ctx = &k, .opts = o,
        };
        rc = vmseal_bulk_run(&job);
    }
    if (rc == 0)
        rc = finish(&r, plain_out);
    run_end(&r, rc);
    return rc;
}
