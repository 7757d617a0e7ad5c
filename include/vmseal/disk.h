/* vmseal — LUKS1 encrypted disk images.
 *
 * Format: LUKS1, aes-xts-plain64, 512-bit random volume key (the DEK),
 * 512-byte sectors, sha256, PBKDF2 with a fixed 1000 iterations (the
 * passphrase is hex(32-byte disk secret), 256 bits of entropy, so opening
 * costs no measurable time). QEMU's `luks` block driver, cryptsetup and
 * nbdkit's luks filter open these images, and vmseal opens theirs.
 *
 * Header work (format, keyslots, volume-key recovery) goes through
 * libcryptsetup on the image file; the data path is include/vmseal/xts.h.
 * No device-mapper is involved.
 *
 * Outputs are never left looking valid while incomplete: they are built as
 * "<out>.partial" (plus a small authenticated checkpoint "<out>.partial.ckpt")
 * and renamed into place once complete and fsync'd. An interrupted run
 * (crash, kill, or opts->cancel) is resumed by calling the same function
 * again with the same arguments. Deep rekey is crash-safe: see
 * docs/formats.md, "LUKS1 disks".
 *
 * All functions return 0 or a negative errno and set vmseal_last_error():
 *   -EKEYREJECTED  the passphrase opens no keyslot
 *   -EPROTO        not a LUKS1 image / malformed header / truncated image
 *   -ENOTSUP       a LUKS1 cipher setup vmseal cannot handle (not aes-xts-plain64)
 *   -EEXIST        the output already exists
 *   -ECANCELED     opts->cancel was raised; the partial output is kept for resume
 */
#ifndef VMSEAL_DISK_H
#define VMSEAL_DISK_H

#include <signal.h>

#include <vmseal/common.h>
#include <vmseal/secret.h>

#define VMSEAL_LUKS1_HEADER_SIZE 592u     /* phdr incl. 8 keyslot records */
#define VMSEAL_LUKS1_NUM_KEYSLOTS 8
#define VMSEAL_DISK_SECRET_LEN 32u        /* disk secret -> 64 hex chars passphrase */

/* Progress of a long operation, in bytes of payload. Called from the
 * calling thread only, at least once at the start and once at the end. */
typedef void (*vmseal_progress_fn)(uint64_t done, uint64_t total, void *ctx);

typedef struct vmseal_disk_opts {
    vmseal_progress_fn progress;       /* NULL: no progress */
    void *progress_ctx;
    unsigned threads;                  /* 0 = online CPUs */
    const char *uuid;                  /* create/encrypt: LUKS UUID; NULL = random */
    volatile sig_atomic_t *cancel;     /* set non-zero (e.g. from SIGINT) to stop
                                          at the next checkpoint: -ECANCELED */
} vmseal_disk_opts;

typedef struct vmseal_disk_info {
    int is_luks;                       /* 1 if a well-formed LUKS1 header */
    int version;                       /* 1 */
    char uuid[40];
    char cipher[32];                   /* "aes" */
    char cipher_mode[32];              /* "xts-plain64" */
    char hash[32];                     /* "sha256" */
    unsigned key_bits;                 /* 512 for aes-256-xts */
    uint64_t payload_offset_bytes;
    uint64_t payload_bytes;            /* file size - payload offset (0 from a buffer parse) */
    int active_slots;                  /* number of enabled keyslots */
    unsigned slot_mask;                /* bit i set: keyslot i enabled */
    uint32_t slot_iterations[VMSEAL_LUKS1_NUM_KEYSLOTS];
    uint8_t mk_digest[20];             /* PBKDF2 digest of the volume key: changes
                                          when the volume key changes */
    uint32_t mk_digest_iterations;
} vmseal_disk_info;

/* The LUKS passphrase for a disk: lower-case hex of the 32-byte disk secret
 * (64 bytes, no terminator). */
int vmseal_disk_passphrase_from_secret(const vmseal_secret *disk_secret,
                                       vmseal_secret **passphrase) VMSEAL_MUST_CHECK;

/* Strict parse of a LUKS1 header from memory (untrusted bytes): magic,
 * version, NUL-terminated names, key size, digest iterations, UUID syntax,
 * keyslot states, key-material bounds (inside the header area, before the
 * payload, not overlapping) and payload offset. Needs len >= 592.
 * -EPROTO with a message saying what is wrong. */
int vmseal_luks1_header_parse(const uint8_t *buf, size_t len, vmseal_disk_info *info);

/* Open a file and parse its header (no key needed). Also checks the file
 * holds the whole header area and that the payload is a whole number of
 * sectors. */
int vmseal_disk_probe(const char *path, vmseal_disk_info *info);

/* Create an empty encrypted disk of `size` bytes of payload (multiple of
 * 512). The payload is left sparse (never-written areas are holes). */
int vmseal_disk_create(const char *path, uint64_t size, const vmseal_secret *pass,
                       const vmseal_disk_opts *o);

/* Encrypt a raw image into a new LUKS1 image (payload = input size rounded
 * up to 512 with zeros). Holes in the input are not read (they are zeros). */
int vmseal_disk_encrypt(const char *plain_in, const char *luks_out,
                        const vmseal_secret *pass, const vmseal_disk_opts *o);

/* Decrypt a LUKS1 image into a new raw image; all-zero plaintext blocks
 * become holes. */
int vmseal_disk_decrypt(const char *luks_in, const char *plain_out,
                        const vmseal_secret *pass, const vmseal_disk_opts *o) VMSEAL_MUST_CHECK;

/* Deep rekey: new random volume key, all data re-encrypted, same UUID, the
 * passphrase kept in keyslot 0 (other keyslots are dropped). Crash-safe and
 * resumable: killing it at any moment leaves either the old or the new image
 * at `luks_path`, readable with `pass`; calling it again finishes the job
 * (and returns 0 without another rekey if the previous run had already
 * replaced the image). */
int vmseal_disk_rekey(const char *luks_path, const vmseal_secret *pass,
                      const vmseal_disk_opts *o) VMSEAL_MUST_CHECK;

/* Add new_pass in a free keyslot (PBKDF2 1000 iterations). Returns the slot
 * number. */
int vmseal_disk_keyslot_add(const char *path, const vmseal_secret *pass,
                            const vmseal_secret *new_pass);

/* Remove the keyslot that pass_to_remove opens. Refuses (-EBUSY) to remove
 * the last keyslot. Returns the slot number removed. */
int vmseal_disk_keyslot_remove(const char *path, const vmseal_secret *pass_to_remove);

/* 0 if no running VM (QEMU image lock) or vmseal operation holds the image
 * open for writing; -EBUSY if one does. Takes no lock beyond the call. */
int vmseal_disk_check_unused(const char *path) VMSEAL_MUST_CHECK;

/* 0 if pass opens a keyslot, -EKEYREJECTED if not. */
int vmseal_disk_verify_passphrase(const char *path, const vmseal_secret *pass) VMSEAL_MUST_CHECK;

/* The same for an image named relative to a folder descriptor: dirfd is a
 * folder opened with O_RDONLY | O_DIRECTORY (or O_PATH), name a file name
 * in it (no '/'); AT_FDCWD takes name as a path, as the functions above.
 * The folder is reached through the descriptor, never by a path that a
 * rename or a symlink could redirect; the image is not followed if it is a
 * symlink (-ELOOP) and its ".partial" and checkpoint files are made in the
 * same folder. Messages name the image by `name`. */
int vmseal_disk_probe_at(int dirfd, const char *name, vmseal_disk_info *info);
int vmseal_disk_create_at(int dirfd, const char *name, uint64_t size, const vmseal_secret *pass,
                          const vmseal_disk_opts *o);
int vmseal_disk_encrypt_at(int in_dirfd, const char *plain_in, int out_dirfd,
                           const char *luks_out, const vmseal_secret *pass,
                           const vmseal_disk_opts *o);
int vmseal_disk_decrypt_at(int in_dirfd, const char *luks_in, int out_dirfd,
                           const char *plain_out, const vmseal_secret *pass,
                           const vmseal_disk_opts *o) VMSEAL_MUST_CHECK;
int vmseal_disk_rekey_at(int dirfd, const char *name, const vmseal_secret *pass,
                         const vmseal_disk_opts *o) VMSEAL_MUST_CHECK;
int vmseal_disk_verify_passphrase_at(int dirfd, const char *name, const vmseal_secret *pass)
    VMSEAL_MUST_CHECK;

/* Give up an interrupted operation on image `name` in folder dirfd: remove
 * what an encrypt or decrypt into `name` (NAME.partial and its checkpoint)
 * and a deep rekey of `name` (NAME.rekey.partial and its checkpoint) left,
 * never `name` itself. A partial image that an operation still holds
 * (its OFD lock) is -EBUSY and nothing of it is removed; nothing there is
 * 0. Symlinks are removed, never followed. */
int vmseal_disk_discard_partial_at(int dirfd, const char *name) VMSEAL_MUST_CHECK;

/* Recover the volume key (for a host's own bulk conversion through
 * include/vmseal/xts.h). info (optional) receives the header. */
int vmseal_disk_volume_key(const char *path, const vmseal_secret *pass,
                           vmseal_secret **volume_key, vmseal_disk_info *info) VMSEAL_MUST_CHECK;

#endif
