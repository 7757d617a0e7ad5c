/* vmseal-crypto-util: key loading, output files, progress, errors. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <vmseal/keysafe.h>

#include "cu.h"

const char *cu_prog = "vmseal-crypto-util";
int cu_quiet;
volatile sig_atomic_t cu_cancel;

void cu_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", cu_prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

const char *cu_msg_after(const char *msg, const char *what)
{
    size_t n = strlen(what);
    return n && strncmp(msg, what, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ' ? msg + n + 2 : msg;
}

int cu_fail(const char *what)
{
    cu_err("%s: %s", what, cu_msg_after(vmseal_last_error(), what));
    return CU_ERROR;
}

void cu_info(const char *fmt, ...)
{
    if (cu_quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

double cu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void cu_kek_opts_init(cu_kek_opts *k)
{
    k->file = NULL;
    k->fd = -1;
    k->id = NULL;
    k->provider = "local";
}

/* Raw 32 bytes, or 64 hex digits with an optional newline. */
static int decode_key(vmseal_secret *raw, vmseal_secret **kek)
{
    size_t n = vmseal_secret_len(raw);
    const unsigned char *p = vmseal_secret_cdata(raw);
    if (n == 32)
        return vmseal_secret_dup(raw, kek);
    while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r'))
        n--;
    if (n != 64)
        return vmseal_fail(EPROTO, "the KEK must be 32 raw bytes or 64 hex digits");
    vmseal_secret *k = vmseal_secret_new(32);
    if (!k)
        return vmseal_fail(ENOMEM, "out of memory");
    int rc = vmseal_hex_decode((const char *)p, 64, vmseal_secret_data(k), 32);
    if (rc < 0) {
        vmseal_secret_free(k);
        return vmseal_fail(EPROTO, "the KEK must be 32 raw bytes or 64 hex digits");
    }
    *kek = k;
    return 0;
}

int cu_kek_load(const cu_kek_opts *k, vmseal_secret **kek)
{
    *kek = NULL;
    if (k->file && k->fd >= 0) {
        cu_err("give either --kek-file or --kek-fd, not both");
        return -1;
    }
    if (k->file) {
        if (vmseal_secret_read_keyfile(k->file, 32, kek) < 0) {
            cu_fail("KEK");
            return -1;
        }
        return 0;
    }
    if (k->fd >= 0) {
        vmseal_secret *raw = NULL;
        int rc = vmseal_secret_read_fd(k->fd, 66, &raw);
        if (rc == 0) {
            rc = decode_key(raw, kek);
            vmseal_secret_free(raw);
        }
        if (rc < 0) {
            cu_err("KEK from fd %d: %s", k->fd, vmseal_last_error());
            return -1;
        }
        return 0;
    }
    cu_err("a KEK is needed: --kek-file FILE (mode 0600) or --kek-fd N");
    return -1;
}

int cu_kek_check_ids(const cu_kek_opts *k)
{
    if (!k->id) {
        cu_err("--kek-id ID is needed (the KEK's id at its key provider)");
        return -1;
    }
    if (!vmseal_keysafe_kek_id_valid(k->id)) {
        cu_err("--kek-id must be 1..%d bytes", VMSEAL_KEYSAFE_KEK_ID_MAX);
        return -1;
    }
    if (!vmseal_keysafe_provider_valid(k->provider)) {
        cu_err("--provider must be 1..%d characters of A-Z a-z 0-9 . _ -",
               VMSEAL_KEYSAFE_PROVIDER_MAX);
        return -1;
    }
    return 0;
}

int cu_passphrase_load(const char *file, int fd, vmseal_secret **out)
{
    *out = NULL;
    int own = 0;
    if (file) {
        fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
            cu_err("%s: %s", file, strerror(errno));
            return -1;
        }
        own = 1;
        struct stat st;
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077)) {
            cu_err("%s: must be a regular file readable only by its owner (chmod 600)", file);
            close(fd);
            return -1;
        }
    }
    vmseal_secret *raw = NULL;
    int rc = vmseal_secret_read_fd(fd, 512, &raw);
    if (own)
        close(fd);
    if (rc < 0) {
        cu_err("passphrase: %s", vmseal_last_error());
        return -1;
    }
    size_t n = vmseal_secret_len(raw);
    const unsigned char *p = vmseal_secret_cdata(raw);
    if (n > 0 && p[n - 1] == '\n')
        n--;
    if (n > 0 && p[n - 1] == '\r')
        n--;
    if (n == 0) {
        vmseal_secret_free(raw);
        cu_err("passphrase is empty");
        return -1;
    }
    vmseal_secret_truncate(raw, n);
    *out = raw;
    return 0;
}

int cu_parse_uint(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

int cu_parse_size(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    unsigned shift = 0;
    switch (*end) {
    case '\0': break;
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    case 't': case 'T': shift = 40; break;
    default: return -1;
    }
    if (*end && end[1] != '\0' && strcmp(end + 1, "iB") != 0 && strcmp(end + 1, "B") != 0)
        return -1;
    if (shift && v > (UINT64_MAX >> shift))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

int cu_parse_fd(const char *s, int *fd)
{
    uint64_t v;
    if (cu_parse_uint(s, &v) < 0 || v > INT_MAX)
        return -1;
    *fd = (int)v;
    return 0;
}

static void human(uint64_t b, char *buf, size_t len)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int i = 0;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    snprintf(buf, len, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

void cu_progress_init(cu_progress *p, const char *label)
{
    p->label = label;
    p->enabled = !cu_quiet && isatty(STDERR_FILENO);
    p->start = cu_now();
    p->last = 0;
}

void cu_progress_update(uint64_t done, uint64_t total, void *ctx)
{
    cu_progress *p = ctx;
    if (!p || !p->enabled)
        return;
    double now = cu_now();
    if (now - p->last < 0.2 && done != total)
        return;
    p->last = now;
    char d[32], t[32], bar[31];
    human(done, d, sizeof(d));
    double el = now - p->start, rate = el > 0 ? (double)done / el / 1e6 : 0;
    if (total) {
        double f = (double)done / (double)total;
        int fill = (int)(f * 30);
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[30] = '\0';
        human(total, t, sizeof(t));
        fprintf(stderr, "\r%s [%s] %5.1f%% %s / %s  %.0f MB/s  ", p->label, bar, f * 100, d, t,
                rate);
    } else {
        fprintf(stderr, "\r%s %s  %.0f MB/s  ", p->label, d, rate);
    }
    fflush(stderr);
}

void cu_progress_end(cu_progress *p)
{
    if (p->enabled && p->last > 0)
        fputc('\n', stderr);
}

static void on_signal(int sig)
{
    (void)sig;
    if (cu_cancel) /* second Ctrl-C: stop now */
        _exit(130);
    cu_cancel = 1;
}

void cu_install_cancel_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int cu_out_open(cu_out *o, const char *path, int force, mode_t mode)
{
    o->path = path;
    o->tmp = NULL;
    o->fd = -1;
    o->force = force;
    if (strcmp(path, "-") == 0) {
        if (isatty(STDOUT_FILENO)) {
            cu_err("refusing to write binary data to a terminal; redirect stdout or give a file");
            return -1;
        }
        o->fd = STDOUT_FILENO;
        return 0;
    }
    struct stat st;
    if (!force && lstat(path, &st) == 0) {
        cu_err("%s already exists (use --force to replace it)", path);
        return -1;
    }
    char *d = strdup(path), *b = strdup(path);
    if (!d || !b) {
        free(d);
        free(b);
        cu_err("out of memory");
        return -1;
    }
    size_t n = strlen(path) + 32;
    o->tmp = malloc(n);
    if (o->tmp)
        snprintf(o->tmp, n, "%s/.%s.tmp-XXXXXX", dirname(d), basename(b));
    free(d);
    free(b);
    if (!o->tmp) {
        cu_err("out of memory");
        return -1;
    }
    o->fd = mkostemp(o->tmp, O_CLOEXEC);
    if (o->fd < 0) {
        cu_err("cannot create a file next to %s: %s", path, strerror(errno));
        free(o->tmp);
        o->tmp = NULL;
        return -1;
    }
    if (fchmod(o->fd, mode) != 0) {
        cu_err("%s: chmod: %s", o->tmp, strerror(errno));
        cu_out_abort(o);
        return -1;
    }
    return 0;
}

int cu_out_commit(cu_out *o)
{
    if (!o->tmp)
        return 0; /* stdout */
    if (fsync(o->fd) != 0) {
        cu_err("%s: fsync: %s", o->path, strerror(errno));
        cu_out_abort(o);
        return -1;
    }
    close(o->fd);
    o->fd = -1;
    /* Without --force never replace a file that appeared meanwhile. */
    int rc = o->force ? rename(o->tmp, o->path)
                      : renameat2(AT_FDCWD, o->tmp, AT_FDCWD, o->path, RENAME_NOREPLACE);
    if (rc != 0) {
        cu_err("%s: %s", o->path, strerror(errno));
        cu_out_abort(o);
        return -1;
    }
    free(o->tmp);
    o->tmp = NULL;
    return 0;
}

void cu_out_abort(cu_out *o)
{
    if (o->fd >= 0 && o->tmp)
        close(o->fd);
    o->fd = -1;
    if (o->tmp) {
        unlink(o->tmp);
        free(o->tmp);
        o->tmp = NULL;
    }
}
