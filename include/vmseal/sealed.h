/* vmseal — sealed files: streaming authenticated encryption of VM home
 * files (NVRAM copies, suspend and snapshot memory, core dumps, vTPM state).
 *
 * Format (byte layout in docs/formats.md, "Sealed file"):
 *   header   magic "VMSEALSF", version 1, chunk size, 7-byte random nonce
 *            prefix, provider and KEK id (to find the KEK), the random
 *            per-file key wrapped by the KEK (RFC 5649), and an HMAC-SHA256
 *            over the header under a key derived from the per-file key.
 *   chunks   the plaintext cut into chunks of `chunk size` bytes (64 KiB by
 *            default), each AES-256-GCM encrypted with nonce
 *            prefix | chunk index (32-bit) | final flag (STREAM, Hoang et
 *            al. 2015) and the SHA-256 of the header as AAD. The last chunk
 *            is the only one shorter than the chunk size (possibly empty) and
 *            the only one with the final flag.
 * So a wrong KEK, a changed header, truncation (at a chunk boundary or
 * inside a chunk), reordered or dropped chunks, chunks taken from another
 * file, appended data and bit flips are all detected.
 *
 * Memory use is constant (one chunk); input and output may be pipes.
 *
 * STREAMING CAVEAT: unsealing writes each chunk's plaintext once that chunk
 * is verified, so when the input turns out truncated or corrupt further on,
 * part of the plaintext has already been written. Callers writing a regular
 * file must write to a temporary file and rename it only on success (as
 * vmseal-crypto-util does); consumers of a pipe must discard what they read
 * when the unsealer fails (non-zero exit status).
 */
#ifndef VMSEAL_SEALED_H
#define VMSEAL_SEALED_H

#include <sys/types.h>

#include <vmseal/common.h>
#include <vmseal/secret.h>

#define VMSEAL_SEALED_MAGIC "VMSEALSF"
#define VMSEAL_SEALED_VERSION 1
#define VMSEAL_SEALED_CHUNK_DEFAULT 65536u
#define VMSEAL_SEALED_CHUNK_MIN 512u          /* chunk sizes are powers of two */
#define VMSEAL_SEALED_CHUNK_MAX (4u << 20)
#define VMSEAL_SEALED_FIXED_LEN 28u           /* header bytes before the variable fields */
#define VMSEAL_SEALED_HEADER_MAX 640u         /* longest possible header */
#define VMSEAL_SEALED_TAG_LEN 16u

/* Where the bytes come from and go to. read returns the number of bytes
 * read (fewer than asked is fine), 0 at end of input, or a negative errno;
 * write must write everything and return 0 or a negative errno. */
typedef struct vmseal_stream {
    ssize_t (*read)(void *ctx, void *buf, size_t len);
    void *read_ctx;
    int (*write)(void *ctx, const void *buf, size_t len);
    void *write_ctx;
} vmseal_stream;

/* What a sealed file's header says, readable without a key. */
typedef struct vmseal_sealed_info {
    unsigned version;
    uint32_t chunk_size;
    size_t header_len;
    char provider[33];
    char kek_id[256];
} vmseal_sealed_info;

/* Seal everything `io` reads until end of input. kek: 32 bytes; provider
 * and kek_id follow the key-safe rules (include/vmseal/keysafe.h) and are
 * recorded in the header so the right KEK can be found later. chunk_size 0
 * means VMSEAL_SEALED_CHUNK_DEFAULT. */
int vmseal_seal(const vmseal_secret *kek, const char *provider, const char *kek_id,
                uint32_t chunk_size, const vmseal_stream *io);

/* Verify and decrypt. Errors: -EPROTO not a sealed file / malformed /
 * truncated, -ENOTSUP unknown version or algorithm, -EBADMSG wrong KEK,
 * altered header or a chunk that fails authentication, or errors of io.
 * See the streaming caveat above. info (optional) receives the header. */
int vmseal_unseal(const vmseal_secret *kek, const vmseal_stream *io,
                  vmseal_sealed_info *info) VMSEAL_MUST_CHECK;

/* The same over file descriptors (pipes, files, sockets). */
int vmseal_seal_stream(const vmseal_secret *kek, const char *provider, const char *kek_id,
                       int in_fd, int out_fd);
int vmseal_unseal_stream(const vmseal_secret *kek, int in_fd, int out_fd,
                         vmseal_sealed_info *info) VMSEAL_MUST_CHECK;

/* Parse a header from the first bytes of a file (no key needed, nothing is
 * verified). Returns the header length, -EPROTO when the bytes are not a
 * sealed-file header (or a malformed one), -ENOTSUP for an unknown version,
 * -ENODATA when `len` is too short to hold the whole header. */
int vmseal_sealed_probe_header(const uint8_t *buf, size_t len, vmseal_sealed_info *info);

#endif
