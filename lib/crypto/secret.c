/* The secure buffer: guarded, locked, undumpable, wiped — and accounted.
 * Locked memory or nothing: a secret whose pages cannot be mlock'd is not
 * handed out unless the process allowed unlocked secrets. */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <vmseal/secret.h>

#define SECRET_MAX (1u << 20)

struct vmseal_secret_quota {
    size_t max_bytes, max_count;   /* 0: no bound */
    atomic_size_t bytes, count;
    atomic_ulong refused;
    atomic_uint refs;              /* the owner's + one per live secret */
};

struct vmseal_secret {
    unsigned char *base;   /* start of the whole mapping (leading guard page) */
    size_t map_len;        /* whole mapping, guards included */
    unsigned char *data;   /* cap bytes ending at the trailing guard page */
    size_t cap;
    size_t len;
    int locked;
    vmseal_secret_quota *quota; /* charged to it (NULL: none) */
    vmseal_secret *next;   /* in the reuse pool */
};

static atomic_int allow_unlocked;
static atomic_size_t in_use;          /* page-rounded bytes of live secrets */
static atomic_size_t limit_bytes;     /* 0: none */
static atomic_ulong unlocked_count;
static void (*_Atomic unlocked_hook)(size_t bytes, int err);
static _Thread_local vmseal_secret_quota *thread_quota;

static size_t page_size(void)
{
    static size_t ps;
    if (!ps)
        ps = (size_t)sysconf(_SC_PAGESIZE);
    return ps;
}

/* ---- policy and accounting ---------------------------------------------- */

void vmseal_secret_allow_unlocked(int allow) { atomic_store(&allow_unlocked, allow ? 1 : 0); }
int vmseal_secret_unlocked_allowed(void) { return atomic_load(&allow_unlocked); }
void vmseal_secret_set_unlocked_hook(void (*hook)(size_t, int)) { atomic_store(&unlocked_hook, hook); }
unsigned long vmseal_secret_unlocked_count(void) { return atomic_load(&unlocked_count); }
void vmseal_secret_set_limit(size_t max_bytes) { atomic_store(&limit_bytes, max_bytes); }
size_t vmseal_secret_limit(void) { return atomic_load(&limit_bytes); }
size_t vmseal_secret_in_use(void) { return atomic_load(&in_use); }

static int has_cap_ipc_lock(void)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];
    memset(d, 0, sizeof(d));
    if (syscall(SYS_capget, &h, d) != 0)
        return 0;
    return (d[CAP_IPC_LOCK / 32].effective >> (CAP_IPC_LOCK % 32)) & 1;
}

size_t vmseal_secret_memlock_limit(void)
{
    struct rlimit rl;
    if (has_cap_ipc_lock() || getrlimit(RLIMIT_MEMLOCK, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return SIZE_MAX;
    return rl.rlim_cur > SIZE_MAX ? SIZE_MAX : (size_t)rl.rlim_cur;
}

/* "RLIMIT_MEMLOCK is 65536 bytes" / "... unlimited" for messages. */
static void describe_memlock(char *buf, size_t len)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0)
        snprintf(buf, len, "RLIMIT_MEMLOCK unknown");
    else if (rl.rlim_cur == RLIM_INFINITY)
        snprintf(buf, len, "RLIMIT_MEMLOCK is unlimited");
    else
        snprintf(buf, len, "RLIMIT_MEMLOCK is %llu bytes%s", (unsigned long long)rl.rlim_cur,
                 has_cap_ipc_lock() ? ", but CAP_IPC_LOCK lifts it" : "");
}

static void pool_drain(void);

int vmseal_secret_check_lockable(size_t need)
{
    pool_drain();
    size_t ps = page_size();
    if (need == 0)
        need = 1;
    size_t len = (need + ps - 1) / ps * ps;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return vmseal_fail(ENOMEM, "cannot map %zu bytes for a memory-lock test: %s", len,
                           strerror(errno));
    int rc = 0;
    if (mlock(p, len) != 0) {
        int e = errno;
        char lim[96];
        describe_memlock(lim, sizeof(lim));
        rc = vmseal_fail(ENOMEM, "cannot lock %zu bytes of memory for secrets (mlock: %s; %s, "
                         "%zu bytes already held by secrets); raise the limit (systemd "
                         "LimitMEMLOCK=, ulimit -l) or grant CAP_IPC_LOCK",
                         len, strerror(e), lim, vmseal_secret_in_use());
    } else {
        munlock(p, len);
    }
    munmap(p, len);
    return rc;
}

vmseal_secret_quota *vmseal_secret_quota_new(size_t max_bytes, size_t max_count)
{
    vmseal_secret_quota *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    q->max_bytes = max_bytes;
    q->max_count = max_count;
    atomic_init(&q->bytes, 0);
    atomic_init(&q->count, 0);
    atomic_init(&q->refused, 0);
    atomic_init(&q->refs, 1);
    return q;
}

static void quota_unref(vmseal_secret_quota *q)
{
    if (q && atomic_fetch_sub(&q->refs, 1) == 1)
        free(q);
}

void vmseal_secret_quota_free(vmseal_secret_quota *q)
{
    if (q && thread_quota == q)
        thread_quota = NULL;
    quota_unref(q);
}

vmseal_secret_quota *vmseal_secret_quota_enter(vmseal_secret_quota *q)
{
    vmseal_secret_quota *old = thread_quota;
    thread_quota = q;
    return old;
}

vmseal_secret_quota *vmseal_secret_quota_current(void)
{
    return thread_quota;
}

void vmseal_secret_quota_usage(const vmseal_secret_quota *q, size_t *bytes, size_t *count)
{
    if (bytes)
        *bytes = q ? atomic_load(&q->bytes) : 0;
    if (count)
        *count = q ? atomic_load(&q->count) : 0;
}

unsigned long vmseal_secret_quota_refusals(const vmseal_secret_quota *q)
{
    return q ? atomic_load(&q->refused) : 0;
}

/* Charge inner bytes to the process total and the thread's quota. */
static int charge(size_t inner, vmseal_secret_quota **charged)
{
    *charged = NULL;
    size_t lim = atomic_load(&limit_bytes);
    size_t prev = atomic_fetch_add(&in_use, inner);
    if (lim && prev + inner > lim) {
        atomic_fetch_sub(&in_use, inner);
        return vmseal_fail(ENOMEM, "secret: the limit on secure memory is reached (%zu of %zu "
                           "bytes in use, %zu more asked)", prev, lim, inner);
    }
    vmseal_secret_quota *q = thread_quota;
    if (!q)
        return 0;
    size_t pb = atomic_fetch_add(&q->bytes, inner);
    size_t pc = atomic_fetch_add(&q->count, 1);
    if ((q->max_bytes && pb + inner > q->max_bytes) || (q->max_count && pc + 1 > q->max_count)) {
        atomic_fetch_sub(&q->bytes, inner);
        atomic_fetch_sub(&q->count, 1);
        atomic_fetch_sub(&in_use, inner);
        atomic_fetch_add(&q->refused, 1);
        if (q->max_count && pc + 1 > q->max_count)
            return vmseal_fail(EDQUOT, "secret: quota used up (%zu secure buffers held, at most "
                               "%zu)", pc, q->max_count);
        return vmseal_fail(EDQUOT, "secret: quota used up (%zu bytes of secure memory held, "
                           "%zu more asked, at most %zu)", pb, inner, q->max_bytes);
    }
    atomic_fetch_add(&q->refs, 1);
    *charged = q;
    return 0;
}

static void refund(size_t inner, vmseal_secret_quota *q)
{
    atomic_fetch_sub(&in_use, inner);
    if (q) {
        atomic_fetch_sub(&q->bytes, inner);
        atomic_fetch_sub(&q->count, 1);
        quota_unref(q);
    }
}

/* ---- the buffer ----------------------------------------------------------- */

/* Reuse pool: freed secrets of up to POOL_MAX_PAGES pages are wiped and kept
 * (mapped, guarded, locked) for the next allocation of the same size, at
 * most POOL_PER_SIZE per size (40 pages, 160 KiB with 4 KiB pages, in all):
 * a KMIP request allocates a few small secrets, and mmap + mlock + munmap
 * each time costs a third of kmsd's throughput. Only locked mappings are
 * pooled; the pool is dropped when a fresh mapping cannot be locked (so
 * RLIMIT_MEMLOCK is not taken by it) and, in a forked child, forgotten
 * (MADV_DONTFORK: the child has none of these mappings). */
#define POOL_MAX_PAGES 4
#define POOL_PER_SIZE 4
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static vmseal_secret *pool[POOL_MAX_PAGES + 1];
static unsigned pool_n[POOL_MAX_PAGES + 1];
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void pool_prepare(void) { pthread_mutex_lock(&pool_lock); }
static void pool_parent(void) { pthread_mutex_unlock(&pool_lock); }
static void pool_child(void)
{
    for (size_t i = 0; i <= POOL_MAX_PAGES; i++) {
        while (pool[i]) { /* the mappings are not in the child: forget them */
            vmseal_secret *n = pool[i]->next;
            free(pool[i]);
            pool[i] = n;
        }
        pool_n[i] = 0;
    }
    pthread_mutex_unlock(&pool_lock);
}
static void pool_init(void) { pthread_atfork(pool_prepare, pool_parent, pool_child); }

static void unmap_secret(vmseal_secret *s)
{
    size_t inner = s->map_len - 2 * page_size();
    if (s->locked)
        munlock(s->base + page_size(), inner);
    munmap(s->base, s->map_len);
    OPENSSL_cleanse(s, sizeof(*s));
    free(s);
}

static vmseal_secret *pool_take(size_t pages)
{
    if (pages > POOL_MAX_PAGES)
        return NULL;
    pthread_mutex_lock(&pool_lock);
    vmseal_secret *s = pool[pages];
    if (s) {
        pool[pages] = s->next;
        pool_n[pages]--;
        s->next = NULL;
    }
    pthread_mutex_unlock(&pool_lock);
    return s;
}

/* Keep a wiped, locked secret for reuse; 0 when the pool is full. */
static int pool_put(vmseal_secret *s, size_t pages)
{
    if (pages > POOL_MAX_PAGES || !s->locked)
        return 0;
    pthread_once(&pool_once, pool_init);
    pthread_mutex_lock(&pool_lock);
    int ok = pool_n[pages] < POOL_PER_SIZE;
    if (ok) {
        s->next = pool[pages];
        pool[pages] = s;
        pool_n[pages]++;
    }
    pthread_mutex_unlock(&pool_lock);
    return ok;
}

static void pool_drain(void)
{
    vmseal_secret *all = NULL;
    pthread_mutex_lock(&pool_lock);
    for (size_t i = 0; i <= POOL_MAX_PAGES; i++) {
        while (pool[i]) {
            vmseal_secret *n = pool[i]->next;
            pool[i]->next = all;
            all = pool[i];
            pool[i] = n;
        }
        pool_n[i] = 0;
    }
    pthread_mutex_unlock(&pool_lock);
    while (all) {
        vmseal_secret *n = all->next;
        unmap_secret(all);
        all = n;
    }
}


vmseal_secret *vmseal_secret_new(size_t len)
{
    if (len == 0 || len > SECRET_MAX) {
        vmseal_fail(EINVAL, "secret: %zu bytes is not 1..%u", len, SECRET_MAX);
        errno = EINVAL;
        return NULL;
    }
    size_t ps = page_size();
    size_t inner = (len + ps - 1) / ps * ps;
    vmseal_secret_quota *q;
    int rc = charge(inner, &q);
    if (rc < 0) {
        errno = -rc;
        return NULL;
    }
    vmseal_secret *s = pool_take(inner / ps);
    if (s) { /* wiped (zeros) when it was freed */
        s->quota = q;
        s->data = s->base + ps + inner - len;
        s->cap = len;
        s->len = len;
        return s;
    }
    s = calloc(1, sizeof(*s));
    if (!s) {
        refund(inner, q);
        vmseal_fail(ENOMEM, "secret: out of memory");
        errno = ENOMEM;
        return NULL;
    }
    s->quota = q;
    s->map_len = inner + 2 * ps;
    s->base = mmap(NULL, s->map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (s->base == MAP_FAILED) {
        int e = errno;
        size_t map_len = s->map_len;
        refund(inner, q);
        free(s);
        vmseal_fail(ENOMEM, "secret: cannot map %zu bytes: %s", map_len, strerror(e));
        errno = ENOMEM;
        return NULL;
    }
    unsigned char *inner_start = s->base + ps;
    if (mprotect(inner_start, inner, PROT_READ | PROT_WRITE) != 0) {
        int e = errno;
        munmap(s->base, s->map_len);
        refund(inner, q);
        free(s);
        vmseal_fail(ENOMEM, "secret: mprotect: %s", strerror(e));
        errno = ENOMEM;
        return NULL;
    }
    (void)madvise(inner_start, inner, MADV_DONTDUMP);
    (void)madvise(inner_start, inner, MADV_DONTFORK);
    s->locked = mlock(inner_start, inner) == 0;
    if (!s->locked) { /* pooled pages may hold RLIMIT_MEMLOCK: drop them, try again */
        pool_drain();
        s->locked = mlock(inner_start, inner) == 0;
    }
    if (!s->locked) {
        int e = errno;
        if (!atomic_load(&allow_unlocked)) {
            munmap(s->base, s->map_len);
            refund(inner, q);
            free(s);
            char lim[96];
            describe_memlock(lim, sizeof(lim));
            vmseal_fail(ENOMEM, "secret: cannot lock %zu bytes in memory (mlock: %s; %s, %zu "
                        "bytes held by secrets) and secrets are kept in locked memory only",
                        inner, strerror(e), lim, vmseal_secret_in_use());
            errno = ENOMEM;
            return NULL;
        }
        atomic_fetch_add(&unlocked_count, 1);
        void (*hook)(size_t, int) = atomic_load(&unlocked_hook);
        if (hook)
            hook(inner, e);
    }
    s->data = inner_start + inner - len;
    s->cap = len;
    s->len = len;
    return s;
}

void vmseal_secret_free(vmseal_secret *s)
{
    if (!s)
        return;
    size_t ps = page_size();
    size_t inner = s->map_len - 2 * ps;
    OPENSSL_cleanse(s->base + ps, inner);
    refund(inner, s->quota);
    s->quota = NULL;
    s->data = NULL;
    s->cap = s->len = 0;
    if (!pool_put(s, inner / ps))
        unmap_secret(s);
}

int vmseal_secret_random(size_t len, vmseal_secret **out)
{
    *out = NULL;
    vmseal_secret *s = vmseal_secret_new(len);
    if (!s)
        return vmseal_fail(errno, "%s", vmseal_last_error());
    if (RAND_priv_bytes(s->data, (int)len) != 1) {
        vmseal_secret_free(s);
        return vmseal_fail(EIO, "secret: random generator failed");
    }
    *out = s;
    return 0;
}

int vmseal_secret_from(const void *buf, size_t len, vmseal_secret **out)
{
    *out = NULL;
    vmseal_secret *s = vmseal_secret_new(len);
    if (!s)
        return vmseal_fail(errno, "%s", vmseal_last_error());
    memcpy(s->data, buf, len);
    *out = s;
    return 0;
}

int vmseal_secret_dup(const vmseal_secret *s, vmseal_secret **out)
{
    return vmseal_secret_from(s->data, s->len, out);
}

unsigned char *vmseal_secret_data(vmseal_secret *s) { return s->data; }
const unsigned char *vmseal_secret_cdata(const vmseal_secret *s) { return s->data; }
size_t vmseal_secret_len(const vmseal_secret *s) { return s->len; }
int vmseal_secret_is_locked(const vmseal_secret *s) { return s->locked; }

void vmseal_secret_truncate(vmseal_secret *s, size_t len)
{
    if (len < s->len) {
        OPENSSL_cleanse(s->data + len, s->len - len);
        s->len = len;
    }
}

int vmseal_secret_cmp(const vmseal_secret *a, const vmseal_secret *b)
{
    if (a->len != b->len)
        return 1;
    return CRYPTO_memcmp(a->data, b->data, a->len) != 0;
}

int vmseal_secret_read_fd(int fd, size_t maxlen, vmseal_secret **out)
{
    *out = NULL;
    vmseal_secret *s = vmseal_secret_new(maxlen);
    if (!s)
        return vmseal_fail(errno, "%s", vmseal_last_error());
    size_t got = 0;
    for (;;) {
        if (got == maxlen) {
            /* One more byte means the input is too long. */
            unsigned char probe;
            ssize_t r = read(fd, &probe, 1);
            if (r < 0 && errno == EINTR)
                continue;
            if (r != 0) {
                OPENSSL_cleanse(&probe, 1);
                vmseal_secret_free(s);
                return vmseal_fail(EMSGSIZE, "secret: key input longer than %zu bytes", maxlen);
            }
            break;
        }
        ssize_t r = read(fd, s->data + got, maxlen - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            vmseal_secret_free(s);
            return vmseal_fail(e, "secret: read failed: %s", strerror(e));
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    if (got == 0) {
        vmseal_secret_free(s);
        return vmseal_fail(ENODATA, "secret: key input is empty");
    }
    vmseal_secret_truncate(s, got);
    *out = s;
    return 0;
}

int vmseal_secret_read_keyfile(const char *path, size_t keylen, vmseal_secret **out)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return vmseal_fail(errno, "key file %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return vmseal_fail(EINVAL, "key file %s: not a regular file", path);
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        close(fd);
        return vmseal_fail(EPERM, "key file %s: mode %03o is group/world accessible; chmod 600 it",
                           path, (unsigned)(st.st_mode & 0777));
    }
    vmseal_secret *raw = NULL;
    int rc = vmseal_secret_read_fd(fd, 2 * keylen + 2, &raw);
    close(fd);
    if (rc < 0)
        return vmseal_fail(rc, "key file %s: %s", path, vmseal_last_error());
    size_t n = raw->len;
    const unsigned char *p = raw->data;
    if (n == keylen) {
        rc = vmseal_secret_from(p, keylen, out);
        vmseal_secret_free(raw);
        return rc;
    }
    while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r'))
        n--;
    if (n != 2 * keylen) {
        vmseal_secret_free(raw);
        return vmseal_fail(EPROTO, "key file %s: expected %zu raw bytes or %zu hex digits",
                           path, keylen, 2 * keylen);
    }
    vmseal_secret *key = vmseal_secret_new(keylen);
    if (!key) {
        int e = errno;
        vmseal_secret_free(raw);
        return vmseal_fail(e, "key file %s: %s", path, vmseal_last_error());
    }
    rc = vmseal_hex_decode((const char *)p, n, key->data, keylen);
    vmseal_secret_free(raw);
    if (rc < 0) {
        vmseal_secret_free(key);
        return vmseal_fail(rc, "key file %s: not raw bytes nor hex", path);
    }
    *out = key;
    return 0;
}

int vmseal_harden_process(void)
{
    struct rlimit rl = {0, 0};
    if (setrlimit(RLIMIT_CORE, &rl) != 0)
        return vmseal_fail(errno, "setrlimit(RLIMIT_CORE): %s", strerror(errno));
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        return vmseal_fail(errno, "prctl(PR_SET_DUMPABLE): %s", strerror(errno));
    return 0;
}
