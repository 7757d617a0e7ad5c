/* A guest's memory state to a (sealed) file and back: see vmstate.h. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include <vmseal/sealed.h>
#include <vmseal/vmrecord.h>

#include "strutil.h"
#include "vmstate.h"

#define STATE_FDNAME "vmseal-state"
#define COPY_BUF 65536u
#define NOTE_EVERY (64ull << 20)   /* a progress line per 64 MiB */
#define POLL_MS 100

static void notef(hostd_vmstate_note note, void *ctx, const char *fmt, ...) VMSEAL_PRINTF(3, 4);
static void notef(hostd_vmstate_note note, void *ctx, const char *fmt, ...)
{
    if (!note)
        return;
    char line[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    note(ctx, line);
}

int hostd_vmstate_new_name(const char *prefix, int sealed, char *buf, size_t len)
{
    size_t pl = prefix ? strlen(prefix) : 0;
    if (pl == 0 || pl > 16 || strspn(prefix, "abcdefghijklmnopqrstuvwxyz") != pl)
        return vmseal_fail(EINVAL, "state file prefix must be 1..16 of [a-z]");
    uint8_t rnd[8];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return vmseal_fail(EIO, "no random bytes for a state file name");
    char hex[17];
    vmseal_hex_encode(rnd, sizeof(rnd), hex);
    int n = snprintf(buf, len, "%s-%s%s", prefix, hex,
                     sealed ? VMSEAL_VMREC_STATE_SEALED_EXT : VMSEAL_VMREC_STATE_PLAIN_EXT);
    if (n < 0 || (size_t)n >= len || !vmseal_vmrec_state_file_valid(buf, sealed))
        return vmseal_fail(ENAMETOOLONG, "state file name buffer too small");
    return 0;
}

int hostd_vmstate_key(const vmseal_secret *vm_secret, const char *uuid, const char *file,
                      vmseal_secret **key, char *label, size_t label_len)
{
    *key = NULL;
    char purpose[VMSEAL_VMFILE_PURPOSE_MAX + 1];
    int n = snprintf(purpose, sizeof(purpose), "state:%s", file);
    if (n < 0 || (size_t)n >= sizeof(purpose))
        return vmseal_fail(ENAMETOOLONG, "state file name too long");
    n = snprintf(label, label_len, "vm:%s/%s", uuid, purpose);
    if (n < 0 || (size_t)n >= label_len)
        return vmseal_fail(ENAMETOOLONG, "state file label too long");
    return vmseal_vmfile_key(vm_secret, uuid, purpose, key);
}

void hostd_vmstate_crash_point(const char *point)
{
    const char *v = getenv("VMSEAL_TEST_CRASH_AT");
    if (!v || strcmp(v, point) != 0)
        return;
    fprintf(stderr, "vmseal-hostd: TEST HOOK VMSEAL_TEST_CRASH_AT: killed at %s\n", point);
    raise(SIGKILL);
}

int hostd_vmstate_is_state_name(const char *name, int *partial)
{
    char base[VMSEAL_VMREC_FILE_MAX + 1];
    size_t n = strlen(name);
    *partial = n > 8 && strcmp(name + n - 8, ".partial") == 0;
    if (*partial)
        n -= 8;
    if (n >= sizeof(base) || strncmp(name, "suspend-", 8) != 0)
        return 0;
    memcpy(base, name, n);
    base[n] = '\0';
    return vmseal_vmrec_state_file_valid(base, 1) || vmseal_vmrec_state_file_valid(base, 0);
}

/* ------------------------------------------------------------ the pump */

typedef struct pump {
    int in_fd, out_fd;              /* the pipe end / the file */
    const vmseal_secret *key;       /* NULL: copy in clear */
    const char *label;              /* sealing: the header's KEK id */
    int sealing;                    /* 1: pipe -> sealed file; 0: sealed file -> pipe */
    volatile int stop;              /* set by the caller: give up */
    uint64_t bytes;                 /* stream bytes so far */
    uint64_t *progress;             /* the caller's copy of bytes (optional) */
    uint64_t next_note;
    hostd_vmstate_note note;
    void *note_ctx;
    const char *what;               /* "saved", "loaded" */
    int rc;
    volatile int done;              /* the thread has finished */
    char err[600];
} pump;

/* Read, waking up to look at the stop flag. */
static ssize_t pump_read(void *arg, void *buf, size_t len)
{
    pump *p = arg;
    for (;;) {
        if (p->stop)
            return -ECANCELED;
        struct pollfd pf = {.fd = p->in_fd, .events = POLLIN};
        int r = poll(&pf, 1, 500);
        if (r < 0 && errno != EINTR)
            return -errno;
        if (r <= 0)
            continue;
        ssize_t n = read(p->in_fd, buf, len);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            return -errno;
        if (p->sealing) {
            p->bytes += (uint64_t)n;
            if (p->progress)
                __atomic_store_n(p->progress, p->bytes, __ATOMIC_RELAXED);
        }
        return n;
    }
}

static int pump_write(void *arg, const void *buf, size_t len)
{
    pump *p = arg;
    const uint8_t *b = buf;
    while (len > 0) {
        if (p->stop)
            return -ECANCELED;
        if (!p->sealing) {
            struct pollfd pf = {.fd = p->out_fd, .events = POLLOUT};
            int r = poll(&pf, 1, 500);
            if (r < 0 && errno != EINTR)
                return -errno;
            if (r <= 0)
                continue;
        }
        ssize_t n = write(p->out_fd, b, len);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            return -errno;
        b += n;
        len -= (size_t)n;
        if (!p->sealing) {
            p->bytes += (uint64_t)n;
            if (p->progress)
                __atomic_store_n(p->progress, p->bytes, __ATOMIC_RELAXED);
        }
    }
    if (p->bytes >= p->next_note) {
        notef(p->note, p->note_ctx, "memory state: %llu MiB %s",
              (unsigned long long)(p->bytes >> 20), p->what);
        p->next_note = p->bytes + NOTE_EVERY;
    }
    return 0;
}

static void *pump_main(void *arg)
{
    pump *p = arg;
    vmseal_stream io = {.read = pump_read, .read_ctx = p, .write = pump_write, .write_ctx = p};
    int r;
    if (p->key && p->sealing) {
        r = vmseal_seal(p->key, VMSEAL_VMFILE_PROVIDER, p->label, 0, &io);
    } else if (p->key) {
        r = vmseal_unseal(p->key, &io, NULL);
    } else {
        uint8_t *buf = malloc(COPY_BUF);
        r = buf ? 0 : vmseal_fail(ENOMEM, "out of memory");
        for (;;) {
            ssize_t n = r == 0 ? pump_read(p, buf, COPY_BUF) : 0;
            if (n <= 0) {
                if (n < 0)
                    r = vmseal_fail((int)-n, "%s", strerror((int)-n));
                break;
            }
            if ((r = pump_write(p, buf, (size_t)n)) < 0) {
                r = vmseal_fail(-r, "%s", strerror(-r));
                break;
            }
        }
        free(buf);
    }
    p->rc = r;
    if (r < 0)
        hostd_copy_str(p->err, sizeof(p->err), vmseal_last_error());
    __atomic_store_n(&p->done, 1, __ATOMIC_RELEASE);
    /* the pipe end goes at once: QEMU sees the end (or a broken pipe) */
    if (p->sealing) {
        close(p->in_fd);
        p->in_fd = -1;
    } else {
        close(p->out_fd);
        p->out_fd = -1;
    }
    return NULL;
}

/* The pump on a thread of its own: 0 (*started set) or -errno. */
static int start_pump(pump *p, pthread_t *th, int *started)
{
    int e = pthread_create(th, NULL, pump_main, p);
    if (e != 0)
        return vmseal_fail(e, "cannot start a thread: %s", strerror(e));
    *started = 1;
    return 0;
}

/* Poll query-migrate until completed (0) or failed; gives up after
 * timeout_ms without the pump moving on. */
static int wait_migration(hostd_qmp *q, pump *p, int timeout_ms, const char *what)
{
    uint64_t last = 0;
    int64_t since = hostd_now_ms();
    for (;;) {
        json_t *ret = NULL;
        int r = hostd_qmp_execute(q, "query-migrate", NULL, timeout_ms, &ret);
        if (r < 0)
            return r;
        const char *st = json_string_value(json_object_get(ret, "status"));
        char status[40];
        hostd_copy_str(status, sizeof(status), st ? st : "");
        const char *desc = json_string_value(json_object_get(ret, "error-desc"));
        char why[300];
        hostd_copy_str(why, sizeof(why), desc ? desc : "no reason given");
        json_decref(ret);
        if (strcmp(status, "completed") == 0)
            return 0;
        if (strcmp(status, "failed") == 0 || strcmp(status, "cancelled") == 0)
            return vmseal_fail(EIO, "QEMU: %s the memory state failed: %s", what, why);
        /* the file (or the disk) failed first: no need to wait for QEMU */
        if (__atomic_load_n(&p->done, __ATOMIC_ACQUIRE) && p->rc < 0)
            return vmseal_fail(EIO, "%s the memory state stopped: %s", what, p->err);
        if (p->bytes != last) {
            last = p->bytes;
            since = hostd_now_ms();
        } else if (hostd_now_ms() - since > timeout_ms) {
            return vmseal_fail(ETIMEDOUT, "QEMU: %s the memory state made no progress for %d s",
                               what, timeout_ms / 1000);
        }
        hostd_sleep_ms(POLL_MS);
    }
}

/* Join the pump; once QEMU is done with the stream it has timeout_ms to
 * finish (QEMU closing its end ends it), then it is told to stop. */
static void pump_join(pthread_t th, pump *p, int timeout_ms)
{
    int64_t until = hostd_now_ms() + timeout_ms;
    while (!__atomic_load_n(&p->done, __ATOMIC_ACQUIRE) && !p->stop && hostd_now_ms() < until)
        hostd_sleep_ms(POLL_MS / 2);
    if (!__atomic_load_n(&p->done, __ATOMIC_ACQUIRE) && !p->stop) {
        p->stop = 1;
        pthread_join(th, NULL);
        if (p->rc == 0 || p->rc == -ECANCELED) {
            p->rc = -ETIMEDOUT;
            snprintf(p->err, sizeof(p->err), "QEMU did not close the state stream in time");
        }
        return;
    }
    pthread_join(th, NULL);
}

/* Was the guest running? */
static int guest_running(hostd_qmp *q, int timeout_ms)
{
    json_t *ret = NULL;
    if (hostd_qmp_execute(q, "query-status", NULL, timeout_ms, &ret) < 0)
        return -1;
    int on = json_is_true(json_object_get(ret, "running"));
    json_decref(ret);
    return on;
}

int hostd_vmstate_save(hostd_qmp *q, int dirfd, const char *name, const vmseal_secret *key,
                       const char *label, hostd_vmstate_note note, void *ctx, int timeout_ms,
                       uint64_t *bytes)
{
    if (bytes)
        *bytes = 0;
    if (!q)
        return vmseal_fail(ESRCH, "QEMU's monitor is not connected");
    char partial[VMSEAL_VMREC_FILE_MAX + 16];
    snprintf(partial, sizeof(partial), "%s.partial", name);
    int fd = openat(dirfd, partial, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST && unlinkat(dirfd, partial, 0) == 0)
        fd = openat(dirfd, partial, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return vmseal_fail(errno, "cannot create %s: %s", partial, strerror(errno));
    int pp[2];
    if (pipe2(pp, O_CLOEXEC) < 0) {
        int e = errno;
        close(fd);
        unlinkat(dirfd, partial, 0);
        return vmseal_fail(e, "pipe: %s", strerror(e));
    }
    int was_running = guest_running(q, timeout_ms);
    int r = was_running < 0 ? -EIO : 0;
    if (r == 0 && was_running)
        r = hostd_qmp_execute(q, "stop", NULL, timeout_ms, NULL);
    if (r == 0)
        r = hostd_qmp_getfd(q, STATE_FDNAME, pp[1], timeout_ms);
    close(pp[1]);
    pump p = {.in_fd = pp[0], .out_fd = fd, .key = key, .label = label, .sealing = 1,
              .next_note = NOTE_EVERY, .note = note, .note_ctx = ctx, .what = "saved",
              .progress = bytes};
    pthread_t th;
    int started = 0;
    if (r == 0)
        r = start_pump(&p, &th, &started);
    if (r == 0)
        r = hostd_qmp_execute(q, "migrate", json_pack("{s:s}", "uri", "fd:" STATE_FDNAME),
                              timeout_ms, NULL);
    if (r == 0)
        r = wait_migration(q, &p, timeout_ms, "saving");
    if (r < 0 && started)
        if (hostd_qmp_execute(q, "migrate_cancel", NULL, timeout_ms, NULL) < 0) {
            /* QEMU may be gone already: the pump stops on its own below */
        }
    char err[600];
    hostd_copy_str(err, sizeof(err), vmseal_last_error());
    if (started) {
        if (r < 0)
            p.stop = 1;
        pump_join(th, &p, timeout_ms);
    } else {
        close(pp[0]);
    }
    if (r == 0 && p.rc < 0)
        r = vmseal_fail(-p.rc, "writing %s: %s", name, p.err);
    else if (r < 0)
        vmseal_fail(-r, "%s", err);
    if (r == 0 && fsync(fd) < 0)
        r = vmseal_fail(errno, "fsync %s: %s", partial, strerror(errno));
    if (close(fd) < 0 && r == 0)
        r = vmseal_fail(errno, "close %s: %s", partial, strerror(errno));
    if (r == 0 && renameat(dirfd, partial, dirfd, name) < 0)
        r = vmseal_fail(errno, "cannot rename %s: %s", partial, strerror(errno));
    if (r == 0 && fsync(dirfd) < 0)
        r = vmseal_fail(errno, "fsync of the VM home: %s", strerror(errno));
    if (r < 0) {
        hostd_copy_str(err, sizeof(err), vmseal_last_error());
        unlinkat(dirfd, partial, 0);
        unlinkat(dirfd, name, 0);
        if (was_running > 0 && hostd_qmp_execute(q, "cont", NULL, timeout_ms, NULL) < 0)
            notef(note, ctx, "suspend failed and the guest could not be continued: %s",
                  vmseal_last_error());
        return vmseal_fail(-r, "%s", err);
    }
    if (bytes)
        *bytes = p.bytes;
    notef(note, ctx, "memory state: %llu bytes saved to %s%s", (unsigned long long)p.bytes, name,
          key ? " (sealed)" : "");
    return 0;
}

int hostd_vmstate_load(hostd_qmp *q, int dirfd, const char *name, const vmseal_secret *key,
                       hostd_vmstate_note note, void *ctx, int timeout_ms, uint64_t *bytes)
{
    if (bytes)
        *bytes = 0;
    if (!q)
        return vmseal_fail(ESRCH, "QEMU's monitor is not connected");
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return vmseal_fail(errno == ELOOP ? ELOOP : errno, "saved state %s: %s", name,
                           errno == ELOOP ? "a symbolic link: not followed" : strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return vmseal_fail(EPROTO, "saved state %s is not a regular file", name);
    }
    int pp[2];
    if (pipe2(pp, O_CLOEXEC) < 0) {
        int e = errno;
        close(fd);
        return vmseal_fail(e, "pipe: %s", strerror(e));
    }
    int r = hostd_qmp_getfd(q, STATE_FDNAME, pp[0], timeout_ms);
    close(pp[0]);
    pump p = {.in_fd = fd, .out_fd = pp[1], .key = key, .sealing = 0, .next_note = NOTE_EVERY,
              .note = note, .note_ctx = ctx, .what = "loaded", .progress = bytes};
    pthread_t th;
    int started = 0;
    if (r == 0)
        r = start_pump(&p, &th, &started);
    if (r == 0)
        r = hostd_qmp_execute(q, "migrate-incoming", json_pack("{s:s}", "uri", "fd:" STATE_FDNAME),
                              timeout_ms, NULL);
    if (r == 0)
        r = wait_migration(q, &p, timeout_ms, "loading");
    char err[600];
    hostd_copy_str(err, sizeof(err), vmseal_last_error());
    if (started) {
        if (r < 0)
            p.stop = 1;
        pump_join(th, &p, timeout_ms);
    } else {
        close(pp[1]);
    }
    close(fd);
    /* The file's own verdict comes first: when it is damaged, QEMU's
     * failure (a cut stream) is only the consequence. */
    if (started && (p.rc == -EPROTO || p.rc == -EBADMSG || p.rc == -ENOTSUP))
        return vmseal_fail(EBADMSG, "the saved state %s is damaged or not this VM's: %s", name,
                           p.err);
    if (r < 0)
        return vmseal_fail(-r, "%s", err);
    if (p.rc < 0)
        return vmseal_fail(-p.rc, "loading %s: %s", name, p.err);
    r = hostd_qmp_execute(q, "cont", NULL, timeout_ms, NULL);
    if (r < 0)
        return r;
    notef(note, ctx, "memory state: %llu bytes loaded from %s%s", (unsigned long long)p.bytes, name,
          key ? " (verified)" : "");
    return 0;
}
