/* The secure buffer: guarded, locked, undumpable, wiped. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <vmseal/secret.h>

#define SECRET_MAX (1u << 20)

struct vmseal_secret {
    unsigned char *base;   /* start of the whole mapping (leading guard page) */
    size_t map_len;        /* whole mapping, guards included */
    unsigned char *data;   /* cap bytes ending at the trailing guard page */
    size_t cap;
    size_t len;
    int locked;
};

static size_t page_size(void)
{
    static size_t ps;
    if (!ps)
        ps = (size_t)sysconf(_SC_PAGESIZE);
    return ps;
}

vmseal_secret *vmseal_secret_new(size_t len)
{
    if (len == 0 || len > SECRET_MAX) {
        errno = EINVAL;
        return NULL;
    }
    vmseal_secret *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    size_t ps = page_size();
    size_t inner = (len + ps - 1) / ps * ps;
    s->map_len = inner + 2 * ps;
    s->base = mmap(NULL, s->map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (s->base == MAP_FAILED) {
        free(s);
        return NULL;
    }
    unsigned char *inner_start = s->base + ps;
    if (mprotect(inner_start, inner, PROT_READ | PROT_WRITE) != 0) {
        munmap(s->base, s->map_len);
        free(s);
        return NULL;
    }
    (void)madvise(inner_start, inner, MADV_DONTDUMP);
    (void)madvise(inner_start, inner, MADV_DONTFORK);
    s->locked = mlock(inner_start, inner) == 0;
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
    if (s->locked)
        munlock(s->base + ps, inner);
    munmap(s->base, s->map_len);
    OPENSSL_cleanse(s, sizeof(*s));
    free(s);
}

int vmseal_secret_random(size_t len, vmseal_secret **out)
{
    *out = NULL;
    vmseal_secret *s = vmseal_secret_new(len);
    if (!s)
        return vmseal_fail(errno, "secret: cannot allocate %zu bytes", len);
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
        return vmseal_fail(errno, "secret: cannot allocate %zu bytes", len);
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
        return vmseal_fail(errno, "secret: cannot allocate %zu bytes", maxlen);
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
        vmseal_secret_free(raw);
        return vmseal_fail(ENOMEM, "key file %s: out of memory", path);
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
