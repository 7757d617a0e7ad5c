/* vmseal — key safe: a secret (per-VM or per-disk key) wrapped by a KEK.
 *
 * A key safe is one line of text that fits in a `key = value` config file:
 *
 *   vmseal:keysafe:v1:<provider>:<kek-id>:<base64(nonce | ciphertext | tag)>
 *
 * The secret is encrypted with AES-256-GCM under the 32-byte KEK, with a
 * random 96-bit nonce per wrap. The additional authenticated data binds the
 * wrap to the format version, the provider, the KEK id and the id of the
 * object that owns the key safe (e.g. "disk:<LUKS UUID>", "vm:<VM UUID>"),
 * so a key safe copied next to another disk or into another VM's config
 * does not unwrap. Byte layout and escaping: docs/formats.md, "Key safe".
 *
 * Field syntax:
 *   provider  1..32 characters of [A-Za-z0-9._-]
 *   kek-id    1..255 bytes of any text (no NUL). In the line, every byte
 *             outside [A-Za-z0-9._~+/=@-] is written %XX (upper-case hex) and
 *             only those bytes are, so each id has exactly one spelling.
 *   object id 1..255 bytes (no NUL); not stored in the line.
 *   payload   1..512 bytes.
 */
#ifndef VMSEAL_KEYSAFE_H
#define VMSEAL_KEYSAFE_H

#include <vmseal/common.h>
#include <vmseal/secret.h>

#define VMSEAL_KEYSAFE_PREFIX "vmseal:keysafe:"
#define VMSEAL_KEYSAFE_VERSION 1
#define VMSEAL_KEYSAFE_PROVIDER_MAX 32
#define VMSEAL_KEYSAFE_KEK_ID_MAX 255
#define VMSEAL_KEYSAFE_OBJECT_ID_MAX 255
#define VMSEAL_KEYSAFE_PAYLOAD_MAX 512
#define VMSEAL_KEYSAFE_LINE_MAX 2048      /* longest valid line, without NUL */
#define VMSEAL_KEYSAFE_KEK_LEN 32

/* What a key safe says about itself; readable without any key. */
typedef struct vmseal_keysafe_info {
    unsigned version;                                 /* 1 */
    char provider[VMSEAL_KEYSAFE_PROVIDER_MAX + 1];
    char kek_id[VMSEAL_KEYSAFE_KEK_ID_MAX + 1];       /* decoded (raw) id */
    size_t payload_len;                               /* bytes of the wrapped secret */
} vmseal_keysafe_info;

/* 1 if the string is a valid provider name / KEK id / object id, else 0. */
int vmseal_keysafe_provider_valid(const char *provider);
int vmseal_keysafe_kek_id_valid(const char *kek_id);
int vmseal_keysafe_object_id_valid(const char *object_id);

/* The one spelling of the object a VM's key safe is bound to:
 * "vm:<VM UUID>" (kind "vm") or "disk:<LUKS UUID>" (kind "disk", also the
 * VM secret's NVRAM uses "vm"). -EINVAL, and nothing written, for another
 * kind or a UUID that is missing or not an RFC 4122 UUID: a key safe is
 * never bound to "disk:" alone. */
int vmseal_keysafe_object_id(const char *kind, const char *uuid, char *out, size_t outlen) VMSEAL_MUST_CHECK;

/* Wrap `payload` under `kek` (32 bytes) for `object_id`. *line receives a
 * malloc'd NUL-terminated line without newline (caller frees). */
int vmseal_keysafe_wrap(const vmseal_secret *kek, const char *provider, const char *kek_id,
                        const char *object_id, const vmseal_secret *payload, char **line);

/* Parse a line without any key (for `vmseal-crypto-util check` and to pick
 * the KEK to fetch). Strict: -EPROTO for anything malformed (wrong prefix,
 * missing or extra fields, bad characters or escapes, bad base64, too short,
 * overlong), -ENOTSUP for a version other than v1. The line may end in one
 * "\n" or "\r\n"; nothing else may follow it. */
int vmseal_keysafe_parse(const char *line, vmseal_keysafe_info *info);

/* Verify and unwrap. Nothing is returned unless the GCM tag verifies;
 * *payload is NULL on any failure. Errors: those of parse, and -EBADMSG
 * "wrong key, or key safe belongs to another object" (wrong KEK, tampered
 * line, or a key safe moved from another object: these cannot be told
 * apart cryptographically). */
int vmseal_keysafe_unwrap(const vmseal_secret *kek, const char *line, const char *object_id,
                          vmseal_secret **payload) VMSEAL_MUST_CHECK;

/* Shallow recrypt: unwrap with old_kek, wrap again for the same object
 * under new_kek / new_provider / new_kek_id. *new_line as for wrap. */
int vmseal_keysafe_rewrap(const vmseal_secret *old_kek, const char *line, const char *object_id,
                          const vmseal_secret *new_kek, const char *new_provider,
                          const char *new_kek_id, char **new_line) VMSEAL_MUST_CHECK;

#endif
