/* vmseal — AES key wrap (RFC 3394) and AES key wrap with padding (RFC 5649,
 * NIST SP 800-38F "KWP"), done by OpenSSL EVP.
 *
 * The KEK is 16, 24 or 32 bytes (AES-128/192/256). Unwrapping checks the
 * integrity value (and, for RFC 5649, the message length indicator and the
 * zero padding) before anything is returned; on failure the output is wiped
 * and -EBADMSG is returned ("wrong key or corrupt wrapped key").
 *
 * The wrapped form is public; unwrapped keys are returned in a vmseal_secret.
 */
#ifndef VMSEAL_KEYWRAP_H
#define VMSEAL_KEYWRAP_H

#include <vmseal/common.h>
#include <vmseal/secret.h>

/* Largest key (plaintext) vmseal wraps: keys, not data. */
#define VMSEAL_KEYWRAP_MAX_PLAIN 4096u

/* Length of the RFC 5649 wrapping of `plain_len` bytes: 8 + plain_len
 * rounded up to a multiple of 8 (16 for plain_len <= 8). */
size_t vmseal_keywrap_pad_wrapped_len(size_t plain_len);

/* RFC 5649 wrap of `plain` (1..VMSEAL_KEYWRAP_MAX_PLAIN bytes) under `kek`.
 * `out` must have room for vmseal_keywrap_pad_wrapped_len(len) bytes;
 * *out_len receives the length written. */
int vmseal_keywrap_pad_wrap(const vmseal_secret *kek, const vmseal_secret *plain,
                            uint8_t *out, size_t out_cap, size_t *out_len);

/* RFC 5649 unwrap. -EBADMSG when the integrity check fails (wrong KEK or
 * tampered input), -EPROTO when the length is impossible (not a multiple of
 * 8, shorter than 16). *plain is NULL on any failure. */
int vmseal_keywrap_pad_unwrap(const vmseal_secret *kek, const uint8_t *wrapped,
                              size_t wrapped_len, vmseal_secret **plain) VMSEAL_MUST_CHECK;

/* RFC 3394 wrap (no padding): plain is a multiple of 8 bytes, at least 16;
 * the output is plain_len + 8 bytes. */
int vmseal_keywrap_wrap(const vmseal_secret *kek, const vmseal_secret *plain,
                        uint8_t *out, size_t out_cap, size_t *out_len);

/* RFC 3394 unwrap; errors as vmseal_keywrap_pad_unwrap. */
int vmseal_keywrap_unwrap(const vmseal_secret *kek, const uint8_t *wrapped,
                          size_t wrapped_len, vmseal_secret **plain) VMSEAL_MUST_CHECK;

#endif
