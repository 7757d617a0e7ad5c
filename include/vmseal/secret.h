/* vmseal — the one secure-buffer type for all key material.
 *
 * A vmseal_secret lives in its own anonymous mapping, surrounded by
 * PROT_NONE guard pages, mlock'd (best effort, failure recorded), excluded
 * from core dumps (MADV_DONTDUMP), and wiped with OPENSSL_cleanse before it
 * is unmapped. The data ends right against the trailing guard page so that
 * an overrun faults at once.
 */
#ifndef VMSEAL_SECRET_H
#define VMSEAL_SECRET_H

#include <vmseal/common.h>

typedef struct vmseal_secret vmseal_secret;

/* Allocate a zeroed secret of len bytes (1..1 MiB). NULL on failure (errno set). */
vmseal_secret *vmseal_secret_new(size_t len);

/* Allocate and fill from the OS CSPRNG (RAND_priv_bytes). */
int vmseal_secret_random(size_t len, vmseal_secret **out) VMSEAL_MUST_CHECK;

/* Copy len bytes from a buffer (the caller wipes its own copy). */
int vmseal_secret_from(const void *buf, size_t len, vmseal_secret **out) VMSEAL_MUST_CHECK;

/* Duplicate a secret. */
int vmseal_secret_dup(const vmseal_secret *s, vmseal_secret **out) VMSEAL_MUST_CHECK;

/* Wipe and free; NULL is fine. */
void vmseal_secret_free(vmseal_secret *s);

unsigned char *vmseal_secret_data(vmseal_secret *s);
const unsigned char *vmseal_secret_cdata(const vmseal_secret *s);
size_t vmseal_secret_len(const vmseal_secret *s);

/* Shrink the visible length (e.g. after decoding into an upper bound). */
void vmseal_secret_truncate(vmseal_secret *s, size_t len);

/* Constant-time equality; 0 when equal. */
int vmseal_secret_cmp(const vmseal_secret *a, const vmseal_secret *b) VMSEAL_MUST_CHECK;

/* Whether the pages are locked in memory (mlock succeeded). */
int vmseal_secret_is_locked(const vmseal_secret *s);

/* Read a secret from a file descriptor until EOF (at most maxlen bytes).
 * Trailing newline is kept: callers decide the encoding. */
int vmseal_secret_read_fd(int fd, size_t maxlen, vmseal_secret **out) VMSEAL_MUST_CHECK;

/* Read a key file: refused (-EPERM) when group- or world-accessible or not a
 * regular file. Content is either raw bytes of exactly `keylen` or their hex
 * (optionally followed by a newline). */
int vmseal_secret_read_keyfile(const char *path, size_t keylen, vmseal_secret **out)
    VMSEAL_MUST_CHECK;

/* Process hygiene for anything that holds keys: no core dumps
 * (PR_SET_DUMPABLE 0, RLIMIT_CORE 0). */
int vmseal_harden_process(void);

#endif
