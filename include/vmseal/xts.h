/* vmseal — the disk data path: AES-XTS over 512-byte sectors, plain64 IV.
 *
 * This is exactly what LUKS1 "aes-xts-plain64" (and dm-crypt, QEMU's luks
 * driver, nbdkit's luks filter) do: sector n (counted from the start of the
 * encrypted payload) is one XTS data unit of 512 bytes whose tweak is n as
 * a 64-bit little-endian integer zero-extended to 16 bytes.
 *
 * The key is the LUKS volume key: 64 bytes = AES-256-XTS (vmseal's default),
 * 32 bytes = AES-128-XTS (accepted to read foreign images). OpenSSL EVP does
 * the cipher work. A handle is NOT thread-safe: use one per thread
 * (vmseal_xts_new is cheap).
 */
#ifndef VMSEAL_XTS_H
#define VMSEAL_XTS_H

#include <vmseal/common.h>
#include <vmseal/secret.h>

#define VMSEAL_SECTOR_SIZE 512u

typedef struct vmseal_xts vmseal_xts;

/* Key schedule for a 32- or 64-byte XTS key (the key is copied into the
 * OpenSSL context; the caller keeps ownership of `key`). -EINVAL on a bad
 * length, -EIO if OpenSSL refuses the key (e.g. both halves equal). */
int vmseal_xts_new(const vmseal_secret *key, vmseal_xts **out) VMSEAL_MUST_CHECK;

/* Wipe and free; NULL is fine. */
void vmseal_xts_free(vmseal_xts *x);

/* Encrypt / decrypt `nsectors` consecutive 512-byte sectors, the first of
 * which is sector number `first_sector`. in == out (in place) is allowed;
 * otherwise the buffers must not overlap. Returns 0 or a negative errno. */
int vmseal_xts_encrypt(vmseal_xts *x, uint64_t first_sector, const uint8_t *in,
                       uint8_t *out, size_t nsectors) VMSEAL_MUST_CHECK;
int vmseal_xts_decrypt(vmseal_xts *x, uint64_t first_sector, const uint8_t *in,
                       uint8_t *out, size_t nsectors) VMSEAL_MUST_CHECK;

#endif
