/* libvmseal — the human-readable VM configuration file (vm.conf).
 *
 *   # comment
 *   name = web01
 *   disk0.keysafe = vmseal:keysafe:v1:vmseal:kek-1:...
 *
 * One `key = value` per line. Keys: 1..64 of [a-z0-9._-], starting with a
 * letter; each key at most once. Values: 0..4096 bytes of printable text
 * (no control characters; UTF-8 is passed through); surrounding blanks are
 * not part of the value. Comments and blank lines are dropped on parse and
 * the file is written back with a fixed header comment, keys in insertion
 * order. At most 1024 entries, 1 MiB of file.
 *
 * vmseal_vmconf_save replaces the file atomically: a temporary file in the
 * same directory (created new, never through a symlink), fsync, rename over
 * the old one, fsync of the directory.
 * A crash leaves either the old or the new file, never a mix.
 */
#ifndef VMSEAL_VMCONF_H
#define VMSEAL_VMCONF_H

#include <stdint.h>

#include <vmseal/common.h>

#define VMSEAL_VMCONF_KEY_MAX 64
#define VMSEAL_VMCONF_VALUE_MAX 4096
#define VMSEAL_VMCONF_ENTRIES_MAX 1024
#define VMSEAL_VMCONF_FILE_MAX (1u << 20)

typedef struct vmseal_vmconf vmseal_vmconf;

vmseal_vmconf *vmseal_vmconf_new(void);
void vmseal_vmconf_free(vmseal_vmconf *c);
vmseal_vmconf *vmseal_vmconf_dup(const vmseal_vmconf *c);

/* Strict parse of untrusted bytes; -EPROTO with "line N: what" on error. */
int vmseal_vmconf_parse(const char *text, size_t len, vmseal_vmconf **out) VMSEAL_MUST_CHECK;
int vmseal_vmconf_load(const char *path, vmseal_vmconf **out) VMSEAL_MUST_CHECK;
/* The file `name` (no '/') in the folder dirfd, not followed when it is a
 * symlink (-ELOOP); only a regular file is read. */
int vmseal_vmconf_loadat(int dirfd, const char *name, vmseal_vmconf **out) VMSEAL_MUST_CHECK;

/* Text form (malloc'd, NUL-terminated). */
char *vmseal_vmconf_format(const vmseal_vmconf *c);
int vmseal_vmconf_save(const vmseal_vmconf *c, const char *path) VMSEAL_MUST_CHECK;
/* The same relative to the folder dirfd (which may be O_PATH): NAME.tmp is
 * created with O_EXCL | O_NOFOLLOW (a stale one, or a symlink planted
 * there, is removed first, never written through), renamed over NAME with
 * renameat, and the folder fsync'd. */
int vmseal_vmconf_saveat(const vmseal_vmconf *c, int dirfd, const char *name) VMSEAL_MUST_CHECK;

/* NULL when absent. */
const char *vmseal_vmconf_get(const vmseal_vmconf *c, const char *key);
/* Decimal unsigned value; -ENOENT when absent, -EPROTO when not a number. */
int vmseal_vmconf_get_u64(const vmseal_vmconf *c, const char *key, uint64_t *out);

/* Set (replace in place or append). -EINVAL for a bad key or value. */
int vmseal_vmconf_set(vmseal_vmconf *c, const char *key, const char *value);
int vmseal_vmconf_setf(vmseal_vmconf *c, const char *key, const char *fmt, ...)
    VMSEAL_PRINTF(3, 4);
void vmseal_vmconf_unset(vmseal_vmconf *c, const char *key);
/* Remove every key that starts with prefix. */
void vmseal_vmconf_unset_prefix(vmseal_vmconf *c, const char *prefix);

/* Iterate: 0 .. count-1. */
size_t vmseal_vmconf_count(const vmseal_vmconf *c);
const char *vmseal_vmconf_key_at(const vmseal_vmconf *c, size_t i);
const char *vmseal_vmconf_value_at(const vmseal_vmconf *c, size_t i);
/* The line of the file an entry was parsed from (1..); 0 for an entry
 * added in memory or a key that is absent. dup keeps it, and so does a set
 * that replaces a value in place. */
unsigned vmseal_vmconf_line_at(const vmseal_vmconf *c, size_t i);
unsigned vmseal_vmconf_line_of(const vmseal_vmconf *c, const char *key);

int vmseal_vmconf_key_valid(const char *key);
int vmseal_vmconf_value_valid(const char *value);

#endif
