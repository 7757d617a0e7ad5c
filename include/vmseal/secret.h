/* vmseal — the one secure-buffer type for all key material.
 *
 * A vmseal_secret lives in its own anonymous mapping, surrounded by
 * PROT_NONE guard pages, mlock'd, excluded from core dumps (MADV_DONTDUMP),
 * and wiped with OPENSSL_cleanse before it is unmapped. The data ends right
 * against the trailing guard page so that an overrun faults at once.
 *
 * Locked memory or nothing: when mlock fails, the allocation fails (NULL,
 * errno ENOMEM, vmseal_last_error() says why and names RLIMIT_MEMLOCK),
 * unless the process called vmseal_secret_allow_unlocked(1).
 *
 * Accounting: every live secret is charged its whole page-rounded size
 * (what mlock pins) to a process-wide total, which may be capped
 * (vmseal_secret_set_limit), and to the calling thread's quota if it has
 * entered one (vmseal_secret_quota_enter), e.g. one per network connection.
 */
#ifndef VMSEAL_SECRET_H
#define VMSEAL_SECRET_H

#include <vmseal/common.h>

typedef struct vmseal_secret vmseal_secret;

/* Allocate a zeroed secret of len bytes (1..1 MiB). NULL on failure, errno
 * set and vmseal_last_error() explaining: EINVAL (bad length), ENOMEM (no
 * mapping, the memory cannot be locked, or the process-wide limit is
 * reached), EDQUOT (the thread's quota is used up). */
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

/* Whether the pages are locked in memory (mlock succeeded); always 1
 * unless unlocked secrets were allowed. */
int vmseal_secret_is_locked(const vmseal_secret *s);

/* ---- policy and accounting ---------------------------------------------- */

/* allow = 1: when mlock fails, keep the secret in unlocked memory (it may be
 * swapped to disk) instead of failing; the hook, if set, is called each
 * time that happens (bytes, mlock's errno). Default: refused. */
void vmseal_secret_allow_unlocked(int allow);
int vmseal_secret_unlocked_allowed(void);
void vmseal_secret_set_unlocked_hook(void (*hook)(size_t bytes, int err));
/* Secrets that ended up unlocked since the start. */
unsigned long vmseal_secret_unlocked_count(void);

/* Cap the bytes (page-rounded, guard pages excluded) of all live secrets of
 * the process; 0 = no cap (the default). */
void vmseal_secret_set_limit(size_t max_bytes);
size_t vmseal_secret_limit(void);
/* Bytes (page-rounded) of all live secrets now. */
size_t vmseal_secret_in_use(void);

/* How many bytes this process may lock: SIZE_MAX when unbounded
 * (CAP_IPC_LOCK, or RLIMIT_MEMLOCK unlimited), else RLIMIT_MEMLOCK. */
size_t vmseal_secret_memlock_limit(void);

/* Start-up check: map and lock a test buffer of `need` bytes, then release
 * it. -ENOMEM with a message naming RLIMIT_MEMLOCK when it cannot be
 * locked. Independent of vmseal_secret_allow_unlocked(). */
int vmseal_secret_check_lockable(size_t need) VMSEAL_MUST_CHECK;

/* A quota: at most max_bytes (page-rounded) and max_count secrets alive at
 * once among those allocated by threads that entered it (0 = no bound).
 * A secret is charged to the quota current when it was allocated and
 * refunded when freed, by whichever thread; the quota lives until it was
 * freed and its last secret is gone. */
typedef struct vmseal_secret_quota vmseal_secret_quota;
vmseal_secret_quota *vmseal_secret_quota_new(size_t max_bytes, size_t max_count);
void vmseal_secret_quota_free(vmseal_secret_quota *q);
/* Make q (NULL: none) the calling thread's quota; returns the previous one. */
vmseal_secret_quota *vmseal_secret_quota_enter(vmseal_secret_quota *q);
/* The calling thread's quota (NULL: none). */
vmseal_secret_quota *vmseal_secret_quota_current(void);
/* Current use; and how many allocations the quota refused so far. */
void vmseal_secret_quota_usage(const vmseal_secret_quota *q, size_t *bytes, size_t *count);
unsigned long vmseal_secret_quota_refusals(const vmseal_secret_quota *q);

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
