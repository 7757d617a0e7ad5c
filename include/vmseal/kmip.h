/* vmseal — KMIP TTLV codec: a tree of Tag-Type-Length-Value items.
 *
 * Decoding is strict (KMIP 1.4 §9.1): every item is 8-byte aligned, fixed
 * lengths are enforced (Integer/Enumeration/Interval 4, Long Integer/
 * Boolean/Date-Time 8, Big Integer a non-zero multiple of 8), padding bytes
 * must be zero, a structure's length must equal the exact sum of its
 * children, Booleans are 0 or 1, Text Strings are valid UTF-8 without NUL,
 * tags are 0x420001–0x42FFFF or extensions 0x540000–0x54FFFF (anything goes
 * below a Vendor Extension, whose content is vendor-defined), the nesting
 * depth and the total size are bounded. Whatever the input, the decoder
 * returns -EPROTO (malformed, with the byte offset and reason in
 * vmseal_last_error()) or -EMSGSIZE (over the size limit); it never crashes.
 * The encoder always produces this canonical form, so decode → encode of any
 * accepted input gives back the same bytes.
 *
 * Secrets: byte strings and big integers at or below a key-material tag
 * (Key Material, Password, private-key components, wrapped Key Value, Data —
 * see vmseal_kmip_tag_is_sensitive()) are stored in vmseal_secret buffers,
 * every value is wiped when the tree is freed, and the dumper prints them as
 * "<redacted N bytes>".
 *
 * Building: the vmseal_ttlv_add_*() functions return the new child or NULL.
 * A failure (out of memory, NULL or non-structure parent, invalid argument
 * such as text that is not UTF-8) is also recorded in the tree, and
 * vmseal_ttlv_encode() of that tree fails with it. So builders may chain
 * calls and check once, at encode time:
 *
 *   vmseal_ttlv *attr = vmseal_ttlv_add_struct(tmpl, VMSEAL_KMIP_TAG_ATTRIBUTE);
 *   vmseal_ttlv_add_text(attr, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, "Cryptographic Length");
 *   vmseal_ttlv_add_int(attr, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE, 256);
 *
 * Reading: vmseal_ttlv_find() / vmseal_ttlv_next() walk the children of a
 * structure; typed getters fail with -EPROTO on a type mismatch and the
 * vmseal_ttlv_find_<type>() shortcuts return -ENOENT when the child is
 * missing. Every accessor accepts NULL and then fails cleanly, so lookups
 * can be chained without intermediate checks.
 */
#ifndef VMSEAL_KMIP_H
#define VMSEAL_KMIP_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <vmseal/common.h>
#include <vmseal/kmip_tags.h>
#include <vmseal/secret.h>

typedef struct vmseal_ttlv vmseal_ttlv;

#define VMSEAL_TTLV_DEFAULT_MAX_SIZE (1u << 20) /* bytes, header included */
#define VMSEAL_TTLV_DEFAULT_MAX_DEPTH 24u       /* structure nesting levels */

typedef struct vmseal_ttlv_limits {
    size_t max_size;    /* 0: VMSEAL_TTLV_DEFAULT_MAX_SIZE */
    unsigned max_depth; /* 0: VMSEAL_TTLV_DEFAULT_MAX_DEPTH */
} vmseal_ttlv_limits;

/* ---- building ------------------------------------------------------------ */

/* A new, detached structure (usually a message root). NULL on ENOMEM. */
vmseal_ttlv *vmseal_ttlv_struct(uint32_t tag);

/* Append a child to a structure; see "Building" above for failures. */
vmseal_ttlv *vmseal_ttlv_add_struct(vmseal_ttlv *parent, uint32_t tag);
vmseal_ttlv *vmseal_ttlv_add_int(vmseal_ttlv *parent, uint32_t tag, int32_t v);
vmseal_ttlv *vmseal_ttlv_add_long(vmseal_ttlv *parent, uint32_t tag, int64_t v);
vmseal_ttlv *vmseal_ttlv_add_enum(vmseal_ttlv *parent, uint32_t tag, uint32_t v);
vmseal_ttlv *vmseal_ttlv_add_bool(vmseal_ttlv *parent, uint32_t tag, bool v);
vmseal_ttlv *vmseal_ttlv_add_datetime(vmseal_ttlv *parent, uint32_t tag, int64_t t);
vmseal_ttlv *vmseal_ttlv_add_interval(vmseal_ttlv *parent, uint32_t tag, uint32_t seconds);
/* Text: NUL-terminated, or exactly len bytes (must be UTF-8, no NUL). */
vmseal_ttlv *vmseal_ttlv_add_text(vmseal_ttlv *parent, uint32_t tag, const char *s);
/* Whether s[0..len) is valid UTF-8, as a Text String must be (the add
 * functions refuse other text and mark the whole tree failed). */
bool vmseal_ttlv_text_valid(const char *s, size_t len);
vmseal_ttlv *vmseal_ttlv_add_text_n(vmseal_ttlv *parent, uint32_t tag, const char *s, size_t len);
vmseal_ttlv *vmseal_ttlv_add_bytes(vmseal_ttlv *parent, uint32_t tag, const void *p, size_t len);
/* Byte String kept in secure memory whatever the tag (key material). */
vmseal_ttlv *vmseal_ttlv_add_secret(vmseal_ttlv *parent, uint32_t tag, const vmseal_secret *s);
/* A Byte String of len zero bytes in secure memory, to be filled in place
 * through *data (e.g. a key unwrapped straight into a response). */
vmseal_ttlv *vmseal_ttlv_add_secret_space(vmseal_ttlv *parent, uint32_t tag, size_t len,
                                          uint8_t **data);
/* Big Integer: big-endian two's complement, len a non-zero multiple of 8. */
vmseal_ttlv *vmseal_ttlv_add_bigint(vmseal_ttlv *parent, uint32_t tag, const uint8_t *be, size_t len);

/* Adopt a detached tree as the last child of parent (parent owns it then).
 * On failure child is left untouched and stays the caller's. */
int vmseal_ttlv_append(vmseal_ttlv *parent, vmseal_ttlv *child) VMSEAL_MUST_CHECK;

/* Unlink an item from its parent; the caller owns (and frees) it. */
vmseal_ttlv *vmseal_ttlv_detach(vmseal_ttlv *item);

/* Deep copy (detached). */
int vmseal_ttlv_dup(const vmseal_ttlv *item, vmseal_ttlv **out) VMSEAL_MUST_CHECK;

/* Free an item and everything below it, wiping every value; an attached item
 * is detached first. NULL is fine. */
void vmseal_ttlv_free(vmseal_ttlv *item);

/* The first error recorded while building this tree (0 if none). */
int vmseal_ttlv_build_error(const vmseal_ttlv *item);

/* ---- reading ------------------------------------------------------------- */

uint32_t vmseal_ttlv_tag(const vmseal_ttlv *item);        /* 0 for NULL */
vmseal_ttlv_type vmseal_ttlv_type_of(const vmseal_ttlv *item); /* 0 for NULL */
vmseal_ttlv *vmseal_ttlv_parent(const vmseal_ttlv *item);

/* First child of a structure with this tag (tag 0: any); NULL if none. */
vmseal_ttlv *vmseal_ttlv_find(const vmseal_ttlv *parent, uint32_t tag);
/* The next child after prev with this tag (tag 0: any); prev NULL = first.
 *   for (vmseal_ttlv *a = NULL; (a = vmseal_ttlv_next(tmpl, TAG, a)); ) ... */
vmseal_ttlv *vmseal_ttlv_next(const vmseal_ttlv *parent, uint32_t tag, const vmseal_ttlv *prev);
/* Number of children with this tag (tag 0: all). */
size_t vmseal_ttlv_count(const vmseal_ttlv *parent, uint32_t tag);
/* Follow a path of tags, first match at each level, terminated by 0:
 *   vmseal_ttlv_dig(payload, TAG_SYMMETRIC_KEY, TAG_KEY_BLOCK, TAG_KEY_VALUE, 0) */
vmseal_ttlv *vmseal_ttlv_dig(const vmseal_ttlv *root, ...);

/* Typed getters: 0, -EINVAL (NULL item) or -EPROTO (other type). */
int vmseal_ttlv_get_int(const vmseal_ttlv *item, int32_t *out) VMSEAL_MUST_CHECK;
int vmseal_ttlv_get_long(const vmseal_ttlv *item, int64_t *out) VMSEAL_MUST_CHECK;
int vmseal_ttlv_get_enum(const vmseal_ttlv *item, uint32_t *out) VMSEAL_MUST_CHECK;
int vmseal_ttlv_get_bool(const vmseal_ttlv *item, bool *out) VMSEAL_MUST_CHECK;
int vmseal_ttlv_get_datetime(const vmseal_ttlv *item, int64_t *out) VMSEAL_MUST_CHECK;
int vmseal_ttlv_get_interval(const vmseal_ttlv *item, uint32_t *out) VMSEAL_MUST_CHECK;
/* Text is NUL-terminated; len may be NULL. Pointers live as long as the item. */
int vmseal_ttlv_get_text(const vmseal_ttlv *item, const char **s, size_t *len) VMSEAL_MUST_CHECK;
int vmseal_ttlv_get_bytes(const vmseal_ttlv *item, const uint8_t **p, size_t *len) VMSEAL_MUST_CHECK;
int vmseal_ttlv_get_bigint(const vmseal_ttlv *item, const uint8_t **p, size_t *len) VMSEAL_MUST_CHECK;
/* Copy a Byte String into a new secret (-ENODATA when it is empty). */
int vmseal_ttlv_get_secret(const vmseal_ttlv *item, vmseal_secret **out) VMSEAL_MUST_CHECK;

/* find + get: -ENOENT when parent has no child with that tag, -EPROTO when
 * it has the wrong type; the message names the tag. */
int vmseal_ttlv_find_int(const vmseal_ttlv *parent, uint32_t tag, int32_t *out) VMSEAL_MUST_CHECK;
int vmseal_ttlv_find_long(const vmseal_ttlv *parent, uint32_t tag, int64_t *out) VMSEAL_MUST_CHECK;
int vmseal_ttlv_find_enum(const vmseal_ttlv *parent, uint32_t tag, uint32_t *out) VMSEAL_MUST_CHECK;
int vmseal_ttlv_find_bool(const vmseal_ttlv *parent, uint32_t tag, bool *out) VMSEAL_MUST_CHECK;
int vmseal_ttlv_find_datetime(const vmseal_ttlv *parent, uint32_t tag, int64_t *out) VMSEAL_MUST_CHECK;
int vmseal_ttlv_find_interval(const vmseal_ttlv *parent, uint32_t tag, uint32_t *out) VMSEAL_MUST_CHECK;
int vmseal_ttlv_find_text(const vmseal_ttlv *parent, uint32_t tag, const char **s, size_t *len)
    VMSEAL_MUST_CHECK;
int vmseal_ttlv_find_bytes(const vmseal_ttlv *parent, uint32_t tag, const uint8_t **p, size_t *len)
    VMSEAL_MUST_CHECK;

/* Deep equality of tag, type, value and children (constant time for byte
 * values of equal length). */
bool vmseal_ttlv_equal(const vmseal_ttlv *a, const vmseal_ttlv *b);

/* ---- wire form ----------------------------------------------------------- */

/* Encode a tree into a malloc'd buffer; release it with vmseal_ttlv_buf_free()
 * (which wipes it). Fails with the tree's build error, or -EMSGSIZE when an
 * item's length does not fit in 32 bits. */
int vmseal_ttlv_encode(const vmseal_ttlv *root, uint8_t **buf, size_t *len) VMSEAL_MUST_CHECK;
void vmseal_ttlv_buf_free(uint8_t *buf, size_t len);
/* Encode into secure memory, for messages that carry key material. */
int vmseal_ttlv_encode_secret(const vmseal_ttlv *root, vmseal_secret **out) VMSEAL_MUST_CHECK;
/* Encode into a caller's buffer (e.g. reused secure memory). *len is the
 * encoded size; -ENOSPC when it exceeds cap. */
int vmseal_ttlv_encode_into(const vmseal_ttlv *root, uint8_t *buf, size_t cap, size_t *len)
    VMSEAL_MUST_CHECK;
/* Encoded size of a tree (0 when it cannot be encoded). */
size_t vmseal_ttlv_encoded_len(const vmseal_ttlv *root);

/* Decode exactly one item that fills buf (default limits). */
int vmseal_ttlv_decode(const uint8_t *buf, size_t len, vmseal_ttlv **out) VMSEAL_MUST_CHECK;
int vmseal_ttlv_decode_ex(const uint8_t *buf, size_t len, const vmseal_ttlv_limits *limits,
                          vmseal_ttlv **out) VMSEAL_MUST_CHECK;

/* Stream framing: from the first 8 bytes of a message, check that it is a
 * structure with a valid tag whose total size (8 + length) is at most
 * max_size (0: default), and give that total. -EPROTO / -EMSGSIZE. */
int vmseal_ttlv_frame_len(const uint8_t hdr[8], size_t max_size, size_t *total) VMSEAL_MUST_CHECK;

/* ---- names and diagnostics ----------------------------------------------- */

/* "Cryptographic Algorithm" for 0x420028; NULL when unknown. */
const char *vmseal_kmip_tag_name(uint32_t tag);
/* The tag whose name this is (exact, case-sensitive); 0 when unknown. */
uint32_t vmseal_kmip_tag_by_name(const char *name);
/* Name of an enumeration value for tags that carry one (Operation, Object
 * Type, Cryptographic Algorithm, State, Result Status, Result Reason, Key
 * Format Type, Name Type, Query Function, Revocation Reason Code, Credential
 * Type, Batch Error Continuation Option, Link Type); NULL when unknown. */
const char *vmseal_kmip_enum_name(uint32_t tag, uint32_t value);
/* "Structure", "Integer", ..., NULL when not a TTLV type. */
const char *vmseal_ttlv_type_name(int type);
/* Whether values at or below this tag are key material (stored in secure
 * memory, never printed). */
bool vmseal_kmip_tag_is_sensitive(uint32_t tag);

/* Standard attributes (KMIP 1.4 §3): name, tag, value type, multi-instance. */
typedef struct vmseal_kmip_attr_info {
    const char *name;
    uint32_t tag;
    vmseal_ttlv_type type;
    bool multi;
} vmseal_kmip_attr_info;
/* NULL for names that are not standard attributes (e.g. "x-..." custom ones). */
const vmseal_kmip_attr_info *vmseal_kmip_attr_lookup(const char *name);

/* Human-readable dump, one item per line in the style of the OASIS test
 * cases ("Tag: Name (0x42xxxx), Type: ..., Data: ..."), with enumeration
 * names; key material is printed as "<redacted N bytes>". */
int vmseal_ttlv_dump(const vmseal_ttlv *root, FILE *out);
/* Same into a malloc'd string (free() it); NULL on ENOMEM. */
char *vmseal_ttlv_dump_str(const vmseal_ttlv *root);

#endif
