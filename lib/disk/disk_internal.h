/* Private pieces of the LUKS1 disk implementation (lib/disk*.c). */
#ifndef VMSEAL_DISK_INTERNAL_H
#define VMSEAL_DISK_INTERNAL_H

#include <stdint.h>
#include <sys/types.h>

#include <vmseal/disk.h>
#include <vmseal/secret.h>
#include <vmseal/xts.h>

/* ---- bulk sector conversion (lib/disk/disk_bulk.c) ---- */

enum bulk_op { BULK_ENCRYPT = 1, BULK_DECRYPT = 2, BULK_REKEY = 3 };

/* Called from the calling thread after dst has been fdatasync'd up to
 * `done` bytes of payload; a negative return aborts the run. */
typedef int (*bulk_checkpoint_fn)(uint64_t done, void *ctx);

typedef struct bulk_job {
    enum bulk_op op;
    int src_fd, dst_fd;            /* src read with pread, dst written with pwrite */
    uint64_t src_off;              /* byte offset of the payload in src */
    uint64_t src_len;              /* bytes readable from src_off (encrypt: may be
                                      < total, the rest reads as zeros) */
    uint64_t dst_off;
    uint64_t total;                /* payload bytes, multiple of 512 */
    uint64_t start;                /* resume point: already done below this */
    const vmseal_secret *src_key;  /* decrypt, rekey */
    const vmseal_secret *dst_key;  /* encrypt, rekey */
    int resumed;                   /* dst may hold stale data past `start` */
    bulk_checkpoint_fn checkpoint;
    void *checkpoint_ctx;
    const vmseal_disk_opts *opts;
} bulk_job;

/* Run the conversion with opts->threads workers. Encrypt skips reading
 * holes of src (zeros); decrypt leaves all-zero 4 KiB plaintext blocks as
 * holes; rekey keeps holes of src as holes. Returns 0, -ECANCELED (after a
 * last checkpoint) or a negative errno. */
int vmseal_bulk_run(const bulk_job *job);

/* ---- checkpoint file (lib/disk/disk_checkpoint.c) ---- */

typedef struct disk_checkpoint {
    uint32_t op;                   /* enum bulk_op */
    uint64_t done, total;
    uint64_t src_dev, src_ino, src_size, src_mtime_ns;
    uint8_t src_header_sha256[32]; /* LUKS header of src (zeros for raw src) */
    uint8_t dst_header_sha256[32]; /* LUKS header of dst (zeros for raw dst) */
} disk_checkpoint;

/* Write atomically (tmp + fsync + rename), authenticated with a key derived
 * from `key` (a LUKS volume key the run holds). */
int vmseal_checkpoint_write(const char *path, const disk_checkpoint *c, const vmseal_secret *key);

/* Read and authenticate; -ENOENT if absent, -EBADMSG if not authentic. */
int vmseal_checkpoint_read(const char *path, const vmseal_secret *key, disk_checkpoint *c);

/* Identity of an input file for binding a checkpoint to it. */
int vmseal_checkpoint_bind_source(int fd, disk_checkpoint *c);

/* ---- header work (lib/disk/disk_header.c) ---- */

/* Strict probe of an open image (header parse + size checks). */
int vmseal_disk_probe_fd(int fd, const char *path, vmseal_disk_info *info);

/* -ENOTSUP unless aes-xts-plain64 with a 256/512-bit key. */
int vmseal_disk_check_cipher(const char *path, const vmseal_disk_info *info);

/* Probe the open image `path`, require our cipher, and recover its volume
 * key with `pass` (the three steps every conversion starts with). */
int vmseal_disk_open_key(int fd, const char *path, const vmseal_secret *pass,
                         vmseal_disk_info *info, vmseal_secret **volume_key) VMSEAL_MUST_CHECK;

/* Format the open, empty file `path` as LUKS1 aes-xts-plain64 with a new
 * random 512-bit volume key, `pass` in keyslot 0 (PBKDF2, 1000 iterations),
 * sized to hold payload_bytes (sparse). Returns the volume key and the
 * payload offset in bytes. */
int vmseal_luks_format(const char *path, int fd, uint64_t payload_bytes,
                       const vmseal_secret *pass, const char *uuid,
                       vmseal_secret **vk_out, uint64_t *payload_off);

/* ---- helpers shared by lib/disk*.c (lib/disk/disk_util.c) ---- */

/* fsync the directory holding path. */
int vmseal_fsync_parent_dir(const char *path);

/* SHA-256 of the 592-byte LUKS1 header at the start of fd. */
int vmseal_luks1_header_sha256(int fd, uint8_t out[32]);

/* Whole-file OFD write lock; -EBUSY when someone (QEMU, vmseal) holds one. */
int vmseal_lock_exclusive(int fd, const char *path);

/* For an input that is read while we work: QEMU-compatible shared locks
 * ("consistent read", "no one else may write"); -EBUSY when a writer (a
 * running VM) has the file open. */
int vmseal_lock_shared_read(int fd, const char *path);

/* rename() that fails with -EEXIST instead of replacing `to`. */
int vmseal_rename_noreplace(const char *from, const char *to);

/* path + suffix in a new heap string (NULL on ENOMEM). */
char *vmseal_path_with_suffix(const char *path, const char *suffix);

#endif
