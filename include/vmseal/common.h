/* vmseal — shared definitions for the public API.
 *
 * Conventions (as in libcryptsetup): functions return 0 or a positive count
 * on success and a negative errno on failure. Failures also leave a
 * human-readable message retrievable with vmseal_last_error(). Functions
 * that verify something are marked VMSEAL_MUST_CHECK.
 */
#ifndef VMSEAL_COMMON_H
#define VMSEAL_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define VMSEAL_MUST_CHECK __attribute__((warn_unused_result))
#define VMSEAL_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* Errors beyond errno that callers may want to tell apart are mapped onto
 * errno values with a fixed meaning in vmseal:
 *   -EBADMSG      authentication failed: wrong key or tampered data
 *   -EKEYREJECTED the key is not the one this object is bound to
 *   -EPROTO       malformed input (bad magic, bad length, truncated)
 *   -ENOTSUP      a format version or algorithm vmseal does not handle
 */

/* Message describing the last failure in this thread ("" if none). */
const char *vmseal_last_error(void);

/* Clear the thread's last error. */
void vmseal_clear_error(void);

/* Record an error message for this thread; returns -err_no (pass a positive
 * errno) so callers can write `return vmseal_fail(EINVAL, "...")`. */
int vmseal_fail(int err_no, const char *fmt, ...) VMSEAL_PRINTF(2, 3);

/* Constant-time comparison: 0 when equal. */
int vmseal_memcmp_ct(const void *a, const void *b, size_t len) VMSEAL_MUST_CHECK;

/* Lower-case hex encoding; out must have room for 2*len+1 bytes. */
void vmseal_hex_encode(const uint8_t *in, size_t len, char *out);

/* Write all of buf to fd, retrying short writes and EINTR: 0, or -errno
 * (-EIO when write makes no progress). */
int vmseal_write_all(int fd, const void *buf, size_t len) VMSEAL_MUST_CHECK;

/* Strict hex decoding of exactly 2*outlen characters; -EPROTO on error. */
int vmseal_hex_decode(const char *in, size_t inlen, uint8_t *out, size_t outlen)
    VMSEAL_MUST_CHECK;

#endif
