/* vmseal — bring an existing disk image (raw, qcow2, vmdk, vdi, vhdx) into
 * a VM: read through QEMU's block layer (qemu-img) and written in one pass
 * straight into an encrypted LUKS1 disk (include/vmseal/disk.h) or a plain
 * raw one.
 *
 * The source is an open descriptor (the caller opened it safely, e.g.
 * beneath the host's images folder); it is given to qemu-img as
 * /dev/fd/N, never by a path it could be redirected through. Images that
 * name other files are refused before any data is read: a backing file, a
 * qcow2 external data file, a vmdk whose extents are other files (or a vmdk
 * descriptor file), qcow2's own encryption. The format is detected from
 * the first bytes (magic numbers only, vmseal_image_format_detect) unless
 * the caller names it; "raw" given explicitly is always read as raw.
 *
 * Conversion: the disk is copied window by window (64 MiB), each window by
 * one `qemu-img convert -n` from a raw window of the source into the same
 * window of the output (QEMU's `luks` driver for an encrypted output, the
 * LUKS passphrase handed over as a secret object read from an inherited
 * pipe, never argv/env/file). Holes: a plain output is a sparse file and
 * the areas the source holds as zeros are not written (--target-is-zero),
 * so they stay holes. An encrypted output is written densely: a hole in a
 * LUKS payload decrypts to noise, not zeros, and an imported disk must
 * read back exactly as its source did (and unwritten ciphertext would show
 * which areas the guest uses). The output is built as NAME.partial with a
 * checkpoint NAME.partial.ckpt (lib/disk/disk_checkpoint.c) written after
 * each window, bound to the source file (device, inode, size, mtime) and
 * the output's LUKS header; calling the function again after a crash, kill
 * or cancel resumes at the last window done. Returns 0, -ECANCELED (kept
 * for a resume), -EEXIST (output exists), -EINVAL/-ENOTSUP (refused source,
 * with the reason), -EIO (qemu-img failed, its message).
 */
#ifndef VMSEAL_DISKIMPORT_H
#define VMSEAL_DISKIMPORT_H

#include <stddef.h>
#include <stdint.h>

#include <vmseal/disk.h>

#define VMSEAL_IMPORT_WINDOW (64ull << 20)
#define VMSEAL_IMPORT_MAX_SIZE (1ull << 40)   /* virtual size, bytes */

/* The format of an image from its first bytes (at least 512 given; 4096
 * recommended): "qcow2", "vmdk", "vdi", "vhdx", "luks", "raw"; NULL when it
 * is a kind vmseal refuses (a vmdk descriptor text file, qcow version 1,
 * QED, ...). Untrusted bytes: fuzz/image_format.c. */
const char *vmseal_image_format_detect(const uint8_t *buf, size_t len);

/* 1 when `format` is one vmseal imports. */
int vmseal_image_format_importable(const char *format);

typedef struct vmseal_import_opts {
    const char *qemu_img;   /* NULL: "qemu-img" from PATH */
    uint64_t window;        /* 0: VMSEAL_IMPORT_WINDOW (tests use less) */
} vmseal_import_opts;

typedef struct vmseal_image_info {
    char format[16];
    uint64_t virtual_size;  /* bytes, as QEMU reads it */
    uint64_t disk_size;     /* the output's payload: virtual size rounded up to 1 MiB */
} vmseal_image_info;

/* Check the source (format, no reference to other files, size within
 * VMSEAL_IMPORT_MAX_SIZE) with `qemu-img info`: 0 and *info, or a
 * negative errno with the reason. `format` NULL: detected. */
int vmseal_image_inspect(int src_fd, const char *src_name, const char *format,
                         const vmseal_import_opts *io, vmseal_image_info *info) VMSEAL_MUST_CHECK;

/* Import src_fd into out_dirfd/out_name (a file name in that folder, or a
 * path with AT_FDCWD): encrypted with `pass` (the LUKS passphrase; the
 * LUKS UUID is o->uuid) or plain (pass NULL). info: what
 * vmseal_image_inspect said (NULL: inspected here). */
int vmseal_disk_import_at(int src_fd, const char *src_name, const char *format, int out_dirfd,
                          const char *out_name, const vmseal_secret *pass,
                          const vmseal_disk_opts *o, const vmseal_import_opts *io,
                          vmseal_image_info *info) VMSEAL_MUST_CHECK;

/* Adopt a LUKS1 image someone made (qemu-img, cryptsetup) without
 * re-encrypting it: `old_pass` (the user's passphrase) must open a keyslot;
 * `new_pass` (vmseal's, hex of a disk secret) is added in a free keyslot
 * (PBKDF2, 1000 iterations) unless it opens one already (a resumed run),
 * and with remove_old the keyslot old_pass opens is removed afterwards.
 * Refused: LUKS2 and anything but aes-xts-plain64 (-ENOTSUP), an image a
 * running VM or vmseal operation holds (-EBUSY), a wrong passphrase
 * (-EKEYREJECTED, nothing written). *info receives the header (LUKS UUID:
 * the disk's object id). */
int vmseal_disk_adopt(const char *path, const vmseal_secret *old_pass,
                      const vmseal_secret *new_pass, int remove_old, vmseal_disk_info *info)
    VMSEAL_MUST_CHECK;

#endif
