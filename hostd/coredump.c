/* vmseal-hostd — guest memory dumps, sealed as they are read (coredump.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include <vmseal/sealed.h>

#include "coredump.h"
#include "strutil.h"

#define DUMP_FD_NAME "vmseal-dump"
#define QMP_TIMEOUT_MS 15000

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct pipe_src {
    int fd;
    int64_t deadline;
    uint64_t bytes;
} pipe_src;

static ssize_t pipe_read(void *ctx, void *buf, size_t len)
{
    pipe_src *p = ctx;
    for (;;) {
        int64_t left = p->deadline - mono_ms();
        if (left <= 0)
            return vmseal_fail(ETIMEDOUT, "the memory dump took too long");
        struct pollfd pf = {.fd = p->fd, .events = POLLIN};
        int pr = poll(&pf, 1, left > 1000 ? 1000 : (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0)
            return -errno;
        if (pr == 0)
            continue;
        ssize_t n = read(p->fd, buf, len);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            return -errno;
        p->bytes += (uint64_t)n;
        return n;
    }
}

typedef struct file_dst {
    int fd;
    uint64_t bytes;
} file_dst;

static int file_write(void *ctx, const void *buf, size_t len)
{
    file_dst *d = ctx;
    int r = vmseal_write_all(d->fd, buf, len);
    if (r == 0)
        d->bytes += len;
    return r;
}

/* After QEMU closed the pipe: its verdict from query-dump. */
static int dump_status(hostd_qmp *q, int64_t deadline)
{
    for (;;) {
        json_t *ret = NULL;
        int r = hostd_qmp_execute(q, "query-dump", NULL, QMP_TIMEOUT_MS, &ret);
        if (r < 0)
            return r;
        const char *st = json_string_value(json_object_get(ret, "status"));
        int done = st && strcmp(st, "completed") == 0;
        int failed = !st || strcmp(st, "failed") == 0 || strcmp(st, "none") == 0;
        json_decref(ret);
        if (done)
            return 0;
        if (failed)
            return vmseal_fail(EIO, "QEMU reports the memory dump failed");
        if (mono_ms() >= deadline)
            return vmseal_fail(ETIMEDOUT, "the memory dump took too long");
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

int hostd_coredump_write(hostd_qmp *q, int home_fd, const vmseal_secret *kek,
                         const char *provider, const char *kek_id, int timeout_ms,
                         hostd_coredump_result *out)
{
    memset(out, 0, sizeof(*out));
    if (!q)
        return vmseal_fail(ESRCH, "the VM is not running");
    int64_t deadline = mono_ms() + (timeout_ms > 0 ? timeout_ms : 600000);
    char stamp[32], tmp[96];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
    snprintf(out->file, sizeof(out->file), "%s%s%s", VMSEAL_COREDUMP_PREFIX, stamp,
             kek ? VMSEAL_COREDUMP_SEALED_SUFFIX : VMSEAL_COREDUMP_PLAIN_SUFFIX);
    snprintf(tmp, sizeof(tmp), ".%s.part", out->file);
    out->sealed = kek != NULL;

    int p[2] = {-1, -1};
    int fd = openat(home_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return vmseal_fail(errno, "memory dump: cannot create %s: %s", tmp, strerror(errno));
    int r = 0, started = 0;
    if (pipe2(p, O_CLOEXEC) != 0) {
        r = vmseal_fail(errno, "memory dump: pipe: %s", strerror(errno));
        goto out;
    }
    r = hostd_qmp_getfd(q, DUMP_FD_NAME, p[1], QMP_TIMEOUT_MS);
    close(p[1]);   /* QEMU has its own copy now (or none: then EOF at once) */
    p[1] = -1;
    if (r < 0)
        goto out;
    r = hostd_qmp_execute(q, "dump-guest-memory",
                          json_pack("{s:b, s:s, s:b}", "paging", 0, "protocol",
                                    "fd:" DUMP_FD_NAME, "detach", 1),
                          QMP_TIMEOUT_MS, NULL);
    if (r < 0) {
        /* the named descriptor would stay with QEMU otherwise */
        if (hostd_qmp_execute(q, "closefd", json_pack("{s:s}", "fdname", DUMP_FD_NAME),
                              QMP_TIMEOUT_MS, NULL) < 0) {
            /* QEMU drops it with the monitor connection at the latest */
        }
        goto out;
    }
    started = 1;
    pipe_src src = {.fd = p[0], .deadline = deadline};
    file_dst dst = {.fd = fd};
    if (kek) {
        vmseal_stream io = {.read = pipe_read, .read_ctx = &src, .write = file_write,
                            .write_ctx = &dst};
        r = vmseal_seal(kek, provider, kek_id, 0, &io);
    } else {
        uint8_t *buf = malloc(65536);
        r = buf ? 0 : vmseal_fail(ENOMEM, "out of memory");
        for (ssize_t n; r == 0 && (n = pipe_read(&src, buf, 65536)) != 0;)
            r = n < 0 ? (int)n : file_write(&dst, buf, (size_t)n);
        free(buf);
    }
    if (r < 0) {
        r = vmseal_fail(-r, "memory dump: %s", vmseal_last_error());
        goto out;
    }
    r = dump_status(q, deadline);
    if (r == 0 && fsync(fd) != 0)
        r = vmseal_fail(errno, "memory dump: fsync: %s", strerror(errno));
    if (r == 0 && renameat(home_fd, tmp, home_fd, out->file) != 0)
        r = vmseal_fail(errno, "memory dump: rename: %s", strerror(errno));
    out->bytes = dst.bytes;
    out->guest_bytes = src.bytes;
out:
    if (p[0] >= 0)
        close(p[0]);   /* a dump still running gets EPIPE and fails */
    close(fd);
    if (r < 0) {
        char msg[512];
        hostd_copy_str(msg, sizeof(msg), vmseal_last_error());
        (void)unlinkat(home_fd, tmp, 0);
        if (started)   /* let QEMU finish failing before the VM is used again */
            (void)dump_status(q, mono_ms() + 5000);
        vmseal_fail(-r, "%s", msg);
    }
    return r;
}
