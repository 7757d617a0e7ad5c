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

/* ------------------------------------------------------------------------
 * Sealed logs: a log that grows while it is written (a guest's serial
 * console), kept as numbered segment files "<base>-<seq>.vmslog" in one
 * folder (byte layout in docs/formats.md, "Sealed log").
 *
 * Each segment has a header like a sealed file's (magic "VMSEALLG", random
 * per-segment key wrapped by the log key with RFC 5649, header MAC under a
 * key derived from it) that also records the VM UUID, the segment's
 * sequence number, the lowest sequence number kept beside it, and the log
 * offset of its first byte. Then records are appended, one per flush: a
 * 4-byte record header (end flag, length) in clear, the AES-256-GCM
 * ciphertext and tag; nonce = prefix | record index | end flag (STREAM),
 * AAD = SHA-256(segment header) | record header. The last record of a
 * finished segment carries the end flag. A record is never rewritten, so no
 * nonce is ever used twice.
 *
 * Detected: wrong key, altered header or record, records reordered, dropped
 * or taken from another segment, a record cut short, data after the end
 * record, segments missing, renamed, reordered or moved from another VM, a
 * non-last segment without its end record. Not detectable without state kept
 * elsewhere: the newest records or segments removed at once (a rollback to
 * an earlier, consistent state of the log).
 * ------------------------------------------------------------------------ */
#define VMSEAL_SLOG_MAGIC "VMSEALLG"
#define VMSEAL_SLOG_VERSION 1
#define VMSEAL_SLOG_HEADER_LEN 144u
#define VMSEAL_SLOG_RECORD_DEFAULT 65536u     /* plaintext bytes per record */
#define VMSEAL_SLOG_RECORD_MIN 512u           /* record maxima are powers of two */
#define VMSEAL_SLOG_RECORD_MAX (1u << 20)
#define VMSEAL_SLOG_RECORD_OVERHEAD 20u       /* record header + GCM tag */
#define VMSEAL_SLOG_NAME_MAX 64u

/* A segment header's fields (readable without a key). */
typedef struct vmseal_slog_info {
    unsigned version;
    uint32_t record_max;
    char uuid[37];        /* the VM's UUID, lower case */
    uint64_t seq;         /* 1, 2, ... */
    uint64_t first;       /* lowest sequence number kept when this one was made */
    uint64_t offset;      /* log bytes before this segment */
    uint64_t created;     /* Unix time (informational) */
} vmseal_slog_info;

/* How far reading one segment got (also filled in on failure). */
typedef struct vmseal_slog_state {
    uint64_t records;     /* records that verified */
    uint64_t bytes;       /* plaintext bytes in them */
    uint64_t good_len;    /* file bytes up to the end of the last verified record */
    int header_ok;        /* the header verified under the key */
    int ended;            /* the end record was read */
    int torn;             /* the input stopped inside a record (cut short) */
} vmseal_slog_state;

/* The log key of a VM: HKDF-SHA256(VM secret, info "vmseal sealed log v1"
 * NUL "vm:<uuid>"), 32 bytes. */
int vmseal_slog_key(const vmseal_secret *vm_secret, const char *vm_uuid,
                    vmseal_secret **log_key) VMSEAL_MUST_CHECK;

/* The key of a sealed file that belongs to a VM (suspend state, snapshot
 * memory): HKDF-SHA256(VM secret, info "vmseal vm file v1" NUL
 * "vm:<uuid>" NUL purpose), 32 bytes. purpose: 1..VMSEAL_VMFILE_PURPOSE_MAX
 * printable ASCII characters without blanks naming the file's role and
 * identity (hostd uses "state:<file name>"), so a file sealed for one
 * role or name does not open as another. Such a file's header names
 * provider VMSEAL_VMFILE_PROVIDER and KEK id "vm:<uuid>/<purpose>". */
#define VMSEAL_VMFILE_PURPOSE_MAX 128u
#define VMSEAL_VMFILE_PROVIDER "vmseal-vm"
int vmseal_vmfile_key(const vmseal_secret *vm_secret, const char *vm_uuid, const char *purpose,
                      vmseal_secret **key) VMSEAL_MUST_CHECK;

/* Parse a segment header (no key, nothing verified): 0, -EPROTO, -ENOTSUP,
 * -ENODATA when len is too short. */
int vmseal_slog_probe_header(const uint8_t *buf, size_t len, vmseal_slog_info *info);

/* Verify and decrypt one segment read from io->read; verified plaintext
 * goes to io->write record by record. 0 when the input ended cleanly: after
 * the end record (state->ended), or at a record boundary without one (a
 * segment being written, or cut at a record boundary: the caller decides).
 * -EPROTO malformed or cut short (state->torn), data after the end record;
 * -ENOTSUP; -EBADMSG wrong key, altered header, a record that fails
 * authentication. Messages name the record and its byte offset. */
int vmseal_slog_read(const vmseal_secret *log_key, const vmseal_stream *io,
                     vmseal_slog_info *info, vmseal_slog_state *state) VMSEAL_MUST_CHECK;

/* Writing one segment. */
typedef struct vmseal_slog_writer vmseal_slog_writer;

/* Start a segment: writes its header to io->write. want gives uuid, seq,
 * first, offset and record_max (0: the default); created is set here. */
int vmseal_slog_begin(const vmseal_secret *log_key, const vmseal_slog_info *want,
                      const vmseal_stream *io, vmseal_slog_writer **out) VMSEAL_MUST_CHECK;
/* Append len bytes as records of at most record_max bytes (len 0: none). */
int vmseal_slog_append(vmseal_slog_writer *w, const void *buf, size_t len) VMSEAL_MUST_CHECK;
/* Write the (empty) end record; nothing may be appended afterwards. */
int vmseal_slog_finish(vmseal_slog_writer *w) VMSEAL_MUST_CHECK;
uint64_t vmseal_slog_writer_bytes(const vmseal_slog_writer *w);   /* plaintext so far */
uint64_t vmseal_slog_writer_length(const vmseal_slog_writer *w);  /* file bytes so far */
const vmseal_slog_info *vmseal_slog_writer_info(const vmseal_slog_writer *w);
void vmseal_slog_writer_free(vmseal_slog_writer *w);

/* Close an unfinished segment that was cut back to state.good_len: write
 * the (empty) end record after its `records` records. header: its first
 * VMSEAL_SLOG_HEADER_LEN bytes (verified again here). Only an empty end
 * record is ever added to an existing segment, so a record nonce is never
 * reused with other contents. */
int vmseal_slog_terminate(const vmseal_secret *log_key, const uint8_t *header, size_t header_len,
                          uint64_t records, const vmseal_stream *io) VMSEAL_MUST_CHECK;

/* Segment file names: "<base>-<seq, at least 8 digits>.vmslog". base:
 * 1..32 of [a-z0-9_]. Parse: the sequence number, or 0 when name is not
 * the canonical name of a segment of base. */
int vmseal_slog_name(char *buf, size_t len, const char *base, uint64_t seq);
uint64_t vmseal_slog_parse_name(const char *name, const char *base);

/* Segments of base in a folder: how many, lowest and highest sequence
 * numbers (0 when none). */
int vmseal_slog_list(int dirfd, const char *base, size_t *count, uint64_t *lowest,
                     uint64_t *highest) VMSEAL_MUST_CHECK;

/* The whole log in a folder. */
typedef struct vmseal_slog_log_info {
    size_t segments;       /* segments read (first..last) */
    uint64_t first, last;  /* their sequence numbers; 0 when the log is empty */
    uint64_t start;        /* log offset of the first byte kept */
    uint64_t total;        /* log length: every byte ever written, kept or rotated away */
    int last_open;         /* the last segment has no end record (allowed only with
                              VMSEAL_SLOG_ALLOW_OPEN) */
} vmseal_slog_log_info;

#define VMSEAL_SLOG_ALLOW_OPEN 1   /* a writer is appending to the last segment */

/* Verify and decrypt every kept segment in order (openat with O_NOFOLLOW,
 * regular files only); plaintext goes to emit(ctx, buf, len) as it
 * verifies. Checks on top of vmseal_slog_read: segments first..last (first
 * from the last segment's header) all present, each header naming its own
 * sequence number and this uuid, each segment starting where the previous
 * one ended, every segment but the last ended (the last too unless
 * VMSEAL_SLOG_ALLOW_OPEN). -EPROTO / -EBADMSG / -ENOTSUP with a message
 * naming the segment file on damage. An empty folder is an empty log. */
int vmseal_slog_read_dir(const vmseal_secret *log_key, int dirfd, const char *base,
                         const char *uuid, int flags,
                         int (*emit)(void *ctx, const void *buf, size_t len), void *ctx,
                         vmseal_slog_log_info *info) VMSEAL_MUST_CHECK;

#endif
