/* vmseal — disk descriptor: the small text file beside an encrypted disk
 * image, "<image>.vmdesc", that holds the disk's key safe.
 *
 *   # vmseal disk descriptor (docs/formats.md)
 *   version = 1
 *   format = luks1
 *   uuid = 6f1c2a3e-1111-4222-8333-944455556666
 *   keysafe = vmseal:keysafe:v1:local:kek-1:...
 *   state = incomplete        (only while the image is being made)
 *
 * The key safe wraps the 32-byte disk secret under the KEK, bound to the
 * object id "disk:<uuid>" of the LUKS UUID; hex(disk secret) is the LUKS
 * passphrase. Readers take the UUID from the image's LUKS header, not from
 * the descriptor, so a descriptor copied next to another disk does not
 * unwrap there.
 *
 * Syntax: UTF-8 text, at most 16 KiB; `key = value` lines (spaces around
 * '=' optional), '#' comment lines and blank lines. Keys are [a-z_]+; each
 * at most once. Unknown keys are refused (-EPROTO) unless they start with
 * "x_" (free for local notes).
 */
#ifndef VMSEAL_DISKDESC_H
#define VMSEAL_DISKDESC_H

#include <vmseal/common.h>
#include <vmseal/keysafe.h>

#define VMSEAL_DISKDESC_SUFFIX ".vmdesc"
#define VMSEAL_DISKDESC_MAX 16384
#define VMSEAL_DISK_OBJECT_PREFIX "disk:"

typedef struct vmseal_diskdesc {
    unsigned version;                        /* 1 */
    char format[16];                         /* "luks1" */
    char uuid[40];                           /* LUKS UUID, lower-case 8-4-4-4-12 */
    char keysafe[VMSEAL_KEYSAFE_LINE_MAX + 1];
    int incomplete;                          /* "state = incomplete" */
} vmseal_diskdesc;

/* 1 if s is a UUID in 8-4-4-4-12 hex form (either case). */
int vmseal_uuid_valid(const char *s);

/* Fresh random (version 4) UUID, lower case. */
int vmseal_uuid_random(char out[37]);

/* "disk:<uuid>" into out (at least 6 + 36 + 1 bytes). */
void vmseal_disk_object_id(const char *uuid, char *out, size_t outlen);

/* malloc'd "<image>.vmdesc"; NULL when out of memory. */
char *vmseal_diskdesc_path(const char *image);

/* Strict parse of descriptor text (untrusted). -EPROTO with a message naming
 * the line for anything malformed or missing, -ENOTSUP for another
 * version or format. The key safe line is syntax-checked too. */
int vmseal_diskdesc_parse(const char *text, size_t len, vmseal_diskdesc *d);

/* Read and parse a file (-ENOENT when absent). */
int vmseal_diskdesc_read(const char *path, vmseal_diskdesc *d);

/* Write atomically: a temporary file in the same directory, fsync'd, mode
 * 0600, renamed over `path` (replace = 1) or only if `path` does not exist
 * yet (replace = 0: -EEXIST). */
int vmseal_diskdesc_write(const char *path, const vmseal_diskdesc *d, int replace);

#endif
