/* Deep rekey of a LUKS1 image: new volume key, all data re-encrypted.
 *
 * Crash safety comes from never touching the old image until the new one is
 * complete (see docs/formats.md, "LUKS1 disks"):
 *
 *   1. Lock IMG (OFD write lock: also refuses an image a VM has open) and
 *      open its volume key with the passphrase.
 *   2. Build IMG.rekey.partial beside it: a fresh LUKS1 header with a new
 *      random volume key, the same UUID, the same passphrase in keyslot 0;
 *      fsync; write checkpoint IMG.rekey.partial.ckpt (done = 0).
 *   3. Re-encrypt the payload old key -> new key into the partial image;
 *      every ~1/16 of the way: fdatasync(partial), then a new checkpoint
 *      (tmp + fsync + rename). Holes of the old image (never-written areas)
 *      stay holes.
 *   4. fsync(partial); rename(partial, IMG) — atomic replace; fsync(dir).
 *   5. unlink(checkpoint); fsync(dir).
 *
 * At every instant IMG is either the complete old image (before 4) or the
 * complete new one (after 4), both opened by the same passphrase. A re-run
 * resumes from the checkpoint if it is authentic (HMAC keyed from the NEW
 * volume key, which only the partial's keyslot gives out) and bound to this
 * very IMG (inode, size, mtime, header hash) and partial (header hash);
 * otherwise it starts over. A checkpoint left without a partial (crash
 * between 4 and 5) whose header hash is IMG's says "already done".
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "disk_internal.h"

struct rk {
    const char *path;
    char *partial, *ckpt;
    int img, out;
    int owned;                     /* we hold the partial's lock */
    vmseal_secret *old_key, *new_key;
    disk_checkpoint c;             /* what the checkpoints say */
};

static int rk_checkpoint(uint64_t done, void *arg)
{
    struct rk *r = arg;
    r->c.done = done;
    return vmseal_checkpoint_write(r->ckpt, &r->c, r->new_key);
}

static int rk_same_source(const disk_checkpoint *a, const disk_checkpoint *b)
{
    return a->op == b->op && a->total == b->total && a->src_dev == b->src_dev &&
           a->src_ino == b->src_ino && a->src_size == b->src_size &&
           a->src_mtime_ns == b->src_mtime_ns &&
           CRYPTO_memcmp(a->src_header_sha256, b->src_header_sha256, 32) == 0;
}

/* A checkpoint without a partial image: did the last run already finish? */
static int already_done(struct rk *r, const uint8_t cur_sha[32], uint64_t total)
{
    disk_checkpoint have;
    struct stat st;
    if (lstat(r->partial, &st) == 0 || lstat(r->ckpt, &st) != 0)
        return 0;
    int done = vmseal_checkpoint_read(r->ckpt, r->old_key, &have) == 0 &&
               have.op == BULK_REKEY && have.done == have.total && have.total == total &&
               CRYPTO_memcmp(have.dst_header_sha256, cur_sha, 32) == 0;
    unlink(r->ckpt);
    vmseal_fsync_parent_dir(r->ckpt);
    return done;
}

/* Is there a partial image we can continue? Sets r->new_key and *start. */
static int resume_point(struct rk *r, const vmseal_secret *pass, const vmseal_disk_info *cur,
                        uint64_t *start, uint64_t *new_off)
{
    r->out = open(r->partial, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (r->out < 0)
        return errno == ENOENT ? -ENOENT : vmseal_fail(errno, "%s: %s", r->partial, strerror(errno));
    int rc = vmseal_lock_exclusive(r->out, r->partial);
    if (rc < 0)
        return rc;                  /* another rekey is running: leave it alone */
    r->owned = 1;
    vmseal_disk_info info;
    disk_checkpoint have;
    uint8_t sha[32];
    rc = vmseal_disk_probe_fd(r->out, r->partial, &info);
    if (rc == 0)
        rc = vmseal_disk_volume_key(r->partial, pass, &r->new_key, NULL);
    if (rc == 0)
        rc = vmseal_checkpoint_read(r->ckpt, r->new_key, &have);
    if (rc == 0)
        rc = vmseal_luks1_header_sha256(r->out, sha);
    if (rc < 0)
        return -ESTALE;
    if (!rk_same_source(&have, &r->c) || info.payload_bytes != cur->payload_bytes ||
        strcmp(info.uuid, cur->uuid) != 0 || CRYPTO_memcmp(sha, have.dst_header_sha256, 32) != 0)
        return -ESTALE;
    *start = have.done;
    *new_off = info.payload_offset_bytes;
    memcpy(r->c.dst_header_sha256, sha, 32);
    return 0;
}

static int fresh(struct rk *r, const vmseal_secret *pass, const vmseal_disk_info *cur,
                 uint64_t *new_off)
{
    if (r->out >= 0)
        close(r->out);
    r->out = -1;
    vmseal_secret_free(r->new_key);
    r->new_key = NULL;
    unlink(r->ckpt);
    unlink(r->partial);
    r->out = open(r->partial, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (r->out < 0)
        return vmseal_fail(errno, "%s: %s", r->partial, strerror(errno));
    int rc = vmseal_lock_exclusive(r->out, r->partial);
    if (rc < 0)
        return rc;
    r->owned = 1;
    /* The new image replaces the old one: same owner and mode. */
    struct stat st;
    if (fstat(r->img, &st) == 0) {
        if (fchown(r->out, st.st_uid, st.st_gid) != 0) {
            /* not root: the file stays ours */
        }
        fchmod(r->out, st.st_mode & 07777);
    }
    rc = vmseal_luks_format(r->partial, r->out, cur->payload_bytes, pass, cur->uuid, &r->new_key,
                            new_off);
    if (rc == 0)
        rc = vmseal_luks1_header_sha256(r->out, r->c.dst_header_sha256);
    if (rc == 0 && fsync(r->out) != 0)
        rc = vmseal_fail(errno, "%s: fsync failed: %s", r->partial, strerror(errno));
    if (rc == 0)
        rc = rk_checkpoint(0, r);
    return rc;
}

int vmseal_disk_rekey(const char *path, const vmseal_secret *pass, const vmseal_disk_opts *o)
{
    if (!path || !pass)
        return vmseal_fail(EINVAL, "rekey: missing argument");
    struct rk r = {.path = path, .img = -1, .out = -1, .c = {.op = BULK_REKEY}};
    vmseal_disk_info cur;
    uint8_t cur_sha[32];
    uint64_t start = 0, new_off = 0;
    int resumed = 0, rc = 0;
    r.partial = vmseal_path_with_suffix(path, ".rekey.partial");
    r.ckpt = r.partial ? vmseal_path_with_suffix(r.partial, ".ckpt") : NULL;
    if (!r.ckpt)
        rc = vmseal_fail(ENOMEM, "out of memory");
    if (rc == 0) {
        r.img = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (r.img < 0)
            rc = vmseal_fail(errno, "%s: %s", path, strerror(errno));
    }
    if (rc == 0)
        rc = vmseal_lock_exclusive(r.img, path);
    if (rc == 0)
        rc = vmseal_disk_open_key(r.img, path, pass, &cur, &r.old_key);
    if (rc == 0)
        rc = vmseal_luks1_header_sha256(r.img, cur_sha);
    if (rc == 0 && already_done(&r, cur_sha, cur.payload_bytes)) {
        if (o && o->progress)
            o->progress(cur.payload_bytes, cur.payload_bytes, o->progress_ctx);
        goto out;               /* the previous run had replaced the image */
    }
    if (rc == 0) {
        r.c.total = cur.payload_bytes;
        memcpy(r.c.src_header_sha256, cur_sha, 32);
        rc = vmseal_checkpoint_bind_source(r.img, &r.c);
    }
    if (rc == 0) {
        rc = resume_point(&r, pass, &cur, &start, &new_off);
        resumed = rc == 0;
        if (rc == -EBUSY)
            goto out;
        rc = resumed ? 0 : fresh(&r, pass, &cur, &new_off);
    }
    if (rc == 0) {
        bulk_job job = {
            .op = BULK_REKEY, .src_fd = r.img, .dst_fd = r.out,
            .src_off = cur.payload_offset_bytes, .src_len = cur.payload_bytes,
            .dst_off = new_off, .total = cur.payload_bytes, .start = start,
            .src_key = r.old_key, .dst_key = r.new_key, .resumed = resumed,
            .checkpoint = rk_checkpoint, .checkpoint_ctx = &r, .opts = o,
        };
        rc = vmseal_bulk_run(&job);
    }
    if (rc == 0 && fsync(r.out) != 0)
        rc = vmseal_fail(errno, "%s: fsync failed: %s", r.partial, strerror(errno));
    if (rc == 0 && rename(r.partial, path) != 0)
        rc = vmseal_fail(errno, "cannot replace %s: %s", path, strerror(errno));
    if (rc == 0) {
        rc = vmseal_fsync_parent_dir(path);
        unlink(r.ckpt);
        int rc2 = vmseal_fsync_parent_dir(path);
        rc = rc ? rc : rc2;
        r.owned = 0;             /* the partial is now the image */
    }
out:
    /* A failed (not interrupted) run removes its partial image; the old one
     * is untouched. */
    if (rc < 0 && rc != -ECANCELED && r.owned) {
        unlink(r.ckpt);
        unlink(r.partial);
    }
    if (r.out >= 0)
        close(r.out);
    if (r.img >= 0)
        close(r.img);
    vmseal_secret_free(r.old_key);
    vmseal_secret_free(r.new_key);
    free(r.partial);
    free(r.ckpt);
    return rc;
}
