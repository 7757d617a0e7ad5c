/* vm.conf: strict key = value parser, writer and atomic save. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vmseal/vmconf.h>

typedef struct entry {
    char *key;
    char *value;
    unsigned line;      /* where parse found it; 0 when set in memory */
} entry;

struct vmseal_vmconf {
    entry *e;
    size_t n, cap;
};

static const char HEADER[] =
    "# vmseal VM configuration, written by vmseal-hostd.\n"
    "# Key safes (vmseal:keysafe:v1:...) hold keys wrapped by a KEK that only\n"
    "# the key server and the hosts running this VM have; editing them breaks\n"
    "# the VM.\n";

vmseal_vmconf *vmseal_vmconf_new(void)
{
    return calloc(1, sizeof(vmseal_vmconf));
}

void vmseal_vmconf_free(vmseal_vmconf *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->e[i].key);
        free(c->e[i].value);
    }
    free(c->e);
    free(c);
}

int vmseal_vmconf_key_valid(const char *key)
{
    size_t n = key ? strlen(key) : 0;
    if (n == 0 || n > VMSEAL_VMCONF_KEY_MAX || !(key[0] >= 'a' && key[0] <= 'z'))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = key[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
              ch == '-'))
            return 0;
    }
    return 1;
}

static int value_bytes_valid(const char *v, size_t n)
{
    if (n > VMSEAL_VMCONF_VALUE_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch < 0x20 || ch == 0x7f)
            return 0;
    }
    if (n > 0 && (v[0] == ' ' || v[n - 1] == ' '))
        return 0;
    return 1;
}

int vmseal_vmconf_value_valid(const char *value)
{
    return value && value_bytes_valid(value, strlen(value));
}

static entry *find(const vmseal_vmconf *c, const char *key)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->e[i].key, key) == 0)
            return &c->e[i];
    return NULL;
}

const char *vmseal_vmconf_get(const vmseal_vmconf *c, const char *key)
{
    entry *e = find(c, key);
    return e ? e->value : NULL;
}

int vmseal_vmconf_get_u64(const vmseal_vmconf *c, const char *key, uint64_t *out)
{
    const char *v = vmseal_vmconf_get(c, key);
    if (!v)
        return vmseal_fail(ENOENT, "vm.conf: %s is missing", key);
    if (!*v || strlen(v) > 20)
        return vmseal_fail(EPROTO, "vm.conf: %s is not a number", key);
    uint64_t x = 0;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9')
            return vmseal_fail(EPROTO, "vm.conf: %s is not a number", key);
        unsigned d = (unsigned)(*p - '0');
        if (x > (UINT64_MAX - d) / 10)
            return vmseal_fail(EPROTO, "vm.conf: %s is out of range", key);
        x = x * 10 + d;
    }
    *out = x;
    return 0;
}

static int append(vmseal_vmconf *c, const char *key, size_t kl, const char *val, size_t vl,
                  unsigned line)
{
    if (c->n >= VMSEAL_VMCONF_ENTRIES_MAX)
        return vmseal_fail(E2BIG, "vm.conf: more than %d entries", VMSEAL_VMCONF_ENTRIES_MAX);
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 32;
        entry *ne = realloc(c->e, ncap * sizeof(*ne));
        if (!ne)
            return vmseal_fail(ENOMEM, "out of memory");
        c->e = ne;
        c->cap = ncap;
    }
    char *k = strndup(key, kl), *v = strndup(val, vl);
    if (!k || !v) {
        free(k);
        free(v);
        return vmseal_fail(ENOMEM, "out of memory");
    }
    c->e[c->n].key = k;
    c->e[c->n].value = v;
    c->e[c->n].line = line;
    c->n++;
    return 0;
}

int vmseal_vmconf_set(vmseal_vmconf *c, const char *key, const char *value)
{
    if (!vmseal_vmconf_key_valid(key))
        return vmseal_fail(EINVAL, "vm.conf: invalid key");
    if (!vmseal_vmconf_value_valid(value))
        return vmseal_fail(EINVAL, "vm.conf: invalid value for %s", key);
    entry *e = find(c, key);
    if (e) {
        char *v = strdup(value);
        if (!v)
            return vmseal_fail(ENOMEM, "out of memory");
        free(e->value);
        e->value = v;
        return 0;
    }
    return append(c, key, strlen(key), value, strlen(value), 0);
}

int vmseal_vmconf_setf(vmseal_vmconf *c, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *v = NULL;
    int n = vasprintf(&v, fmt, ap);
    va_end(ap);
    if (n < 0)
        return vmseal_fail(ENOMEM, "out of memory");
    int r = vmseal_vmconf_set(c, key, v);
    free(v);
    return r;
}

static void remove_at(vmseal_vmconf *c, size_t i)
{
    free(c->e[i].key);
    free(c->e[i].value);
    memmove(&c->e[i], &c->e[i + 1], (c->n - i - 1) * sizeof(entry));
    c->n--;
}

void vmseal_vmconf_unset(vmseal_vmconf *c, const char *key)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->e[i].key, key) == 0) {
            remove_at(c, i);
            return;
        }
}

void vmseal_vmconf_unset_prefix(vmseal_vmconf *c, const char *prefix)
{
    size_t pl = strlen(prefix);
    for (size_t i = 0; i < c->n;) {
        if (strncmp(c->e[i].key, prefix, pl) == 0)
            remove_at(c, i);
        else
            i++;
    }
}

size_t vmseal_vmconf_count(const vmseal_vmconf *c) { return c->n; }
const char *vmseal_vmconf_key_at(const vmseal_vmconf *c, size_t i) { return i < c->n ? c->e[i].key : NULL; }
const char *vmseal_vmconf_value_at(const vmseal_vmconf *c, size_t i) { return i < c->n ? c->e[i].value : NULL; }
unsigned vmseal_vmconf_line_at(const vmseal_vmconf *c, size_t i) { return i < c->n ? c->e[i].line : 0; }

unsigned vmseal_vmconf_line_of(const vmseal_vmconf *c, const char *key)
{
    entry *e = find(c, key);
    return e ? e->line : 0;
}

vmseal_vmconf *vmseal_vmconf_dup(const vmseal_vmconf *c)
{
    vmseal_vmconf *d = vmseal_vmconf_new();
    if (!d)
        return NULL;
    for (size_t i = 0; i < c->n; i++)
        if (append(d, c->e[i].key, strlen(c->e[i].key), c->e[i].value, strlen(c->e[i].value),
                   c->e[i].line) < 0) {
            vmseal_vmconf_free(d);
            return NULL;
        }
    return d;
}

static int is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

int vmseal_vmconf_parse(const char *text, size_t len, vmseal_vmconf **out)
{
    *out = NULL;
    if (len > VMSEAL_VMCONF_FILE_MAX)
        return vmseal_fail(EPROTO, "vm.conf: larger than %u bytes", VMSEAL_VMCONF_FILE_MAX);
    vmseal_vmconf *c = vmseal_vmconf_new();
    if (!c)
        return vmseal_fail(ENOMEM, "out of memory");
    size_t pos = 0;
    unsigned lineno = 0;
    int r = 0;
    while (pos < len) {
        lineno++;
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - line) : len - pos;
        pos += ll + (nl ? 1 : 0);
        size_t a = 0, b = ll;
        while (a < b && is_blank(line[a]))
            a++;
        while (b > a && is_blank(line[b - 1]))
            b--;
        if (a == b || line[a] == '#') {
            if (memchr(line, '\0', ll)) {
                r = vmseal_fail(EPROTO, "vm.conf: line %u: NUL byte", lineno);
                goto fail;
            }
            continue;
        }
        const char *eq = memchr(line + a, '=', b - a);
        if (!eq) {
            r = vmseal_fail(EPROTO, "vm.conf: line %u: expected key = value", lineno);
            goto fail;
        }
        size_t ke = (size_t)(eq - line);
        while (ke > a && is_blank(line[ke - 1]))
            ke--;
        size_t vs = (size_t)(eq - line) + 1;
        while (vs < b && is_blank(line[vs]))
            vs++;
        char key[VMSEAL_VMCONF_KEY_MAX + 1];
        size_t kl = ke - a;
        if (kl == 0 || kl > VMSEAL_VMCONF_KEY_MAX) {
            r = vmseal_fail(EPROTO, "vm.conf: line %u: bad key length", lineno);
            goto fail;
        }
        memcpy(key, line + a, kl);
        key[kl] = '\0';
        if (memchr(key, '\0', kl) || !vmseal_vmconf_key_valid(key)) {
            r = vmseal_fail(EPROTO, "vm.conf: line %u: invalid key (use [a-z0-9._-])", lineno);
            goto fail;
        }
        if (!value_bytes_valid(line + vs, b - vs)) {
            r = vmseal_fail(EPROTO, "vm.conf: line %u: value for %s has control characters or is too long",
                            lineno, key);
            goto fail;
        }
        if (find(c, key)) {
            r = vmseal_fail(EPROTO, "vm.conf: line %u: %s given twice", lineno, key);
            goto fail;
        }
        r = append(c, key, kl, line + vs, b - vs, lineno);
        if (r < 0)
            goto fail;
    }
    *out = c;
    return 0;
fail:
    vmseal_vmconf_free(c);
    return r;
}

/* Read the open file fd (closed here) and parse it; `label` names it in
 * messages. */
static int load_fd(int fd, const char *label, vmseal_vmconf **out)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > VMSEAL_VMCONF_FILE_MAX) {
        close(fd);
        return vmseal_fail(EPROTO, "%s: not a regular file of at most 1 MiB", label);
    }
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size + 1);
    if (!buf) {
        close(fd);
        return vmseal_fail(ENOMEM, "out of memory");
    }
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    int r = vmseal_vmconf_parse(buf, got, out);
    free(buf);
    if (r < 0)
        return vmseal_fail(r, "%s: %s", label, vmseal_last_error());
    return 0;
}

int vmseal_vmconf_load(const char *path, vmseal_vmconf **out)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return vmseal_fail(errno, "%s: %s", path, strerror(errno));
    return load_fd(fd, path, out);
}

int vmseal_vmconf_loadat(int dirfd, const char *name, vmseal_vmconf **out)
{
    *out = NULL;
    if (!name || !*name || strchr(name, '/'))
        return vmseal_fail(EINVAL, "vm.conf: a file name, not a path, is needed");
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        return e == ELOOP ? vmseal_fail(ELOOP, "%s is a symlink (not followed)", name)
                          : vmseal_fail(e, "%s: %s", name, strerror(e));
    }
    return load_fd(fd, name, out);
}

char *vmseal_vmconf_format(const vmseal_vmconf *c)
{
    size_t total = sizeof(HEADER);
    for (size_t i = 0; i < c->n; i++)
        total += strlen(c->e[i].key) + strlen(c->e[i].value) + 4;
    char *out = malloc(total + 1);
    if (!out)
        return NULL;
    char *p = out;
    memcpy(p, HEADER, sizeof(HEADER) - 1);
    p += sizeof(HEADER) - 1;
    for (size_t i = 0; i < c->n; i++) {
        size_t kl = strlen(c->e[i].key), vl = strlen(c->e[i].value);
        memcpy(p, c->e[i].key, kl);
        p += kl;
        memcpy(p, vl ? " = " : " =", vl ? 3 : 2);
        p += vl ? 3 : 2;
        memcpy(p, c->e[i].value, vl);
        p += vl;
        *p++ = '\n';
    }
    *p = '\0';
    return out;
}

int vmseal_vmconf_saveat(const vmseal_vmconf *c, int dirfd, const char *name)
{
    if (!name || !*name || strchr(name, '/') || strlen(name) > 250)
        return vmseal_fail(EINVAL, "vm.conf: a file name, not a path, is needed");
    char *text = vmseal_vmconf_format(c);
    if (!text)
        return vmseal_fail(ENOMEM, "out of memory");
    char tmp[256];
    snprintf(tmp, sizeof(tmp), "%s.tmp", name);
    /* A left-over temporary file (or anything planted under its name) is
     * removed, never written through. */
    if (unlinkat(dirfd, tmp, 0) != 0 && errno != ENOENT) {
        int e = errno;
        free(text);
        return vmseal_fail(e, "%s: %s", tmp, strerror(e));
    }
    int r = 0;
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY,
                    0600);
    if (fd < 0) {
        r = vmseal_fail(errno, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    int w = vmseal_write_all(fd, text, strlen(text));
    if (w == 0 && fsync(fd) != 0)
        w = -errno;
    if (close(fd) != 0 && w == 0)
        w = -errno;
    if (w < 0) {
        unlinkat(dirfd, tmp, 0);
        r = vmseal_fail(-w, "%s: %s", tmp, strerror(-w));
        goto out;
    }
    if (renameat(dirfd, tmp, dirfd, name) != 0) {
        r = vmseal_fail(errno, "rename %s: %s", name, strerror(errno));
        unlinkat(dirfd, tmp, 0);
        goto out;
    }
    int dfd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        if (fsync(dfd) != 0)
            r = vmseal_fail(errno, "fsync of %s: %s", name, strerror(errno));
        close(dfd);
    }
out:
    free(text);
    return r;
}

int vmseal_vmconf_save(const vmseal_vmconf *c, const char *path)
{
    char *dircopy = strdup(path), *basecopy = strdup(path);
    if (!dircopy || !basecopy) {
        free(dircopy);
        free(basecopy);
        return vmseal_fail(ENOMEM, "out of memory");
    }
    int r;
    int dfd = open(dirname(dircopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        r = vmseal_fail(errno, "%s: %s", path, strerror(errno));
    } else {
        r = vmseal_vmconf_saveat(c, dfd, basename(basecopy));
        if (r < 0)
            r = vmseal_fail(-r, "%s: %s", path, vmseal_last_error());
        close(dfd);
    }
    free(dircopy);
    free(basecopy);
    return r;
}
