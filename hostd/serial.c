/* The guest's serial console log: plain for VMs without encryption, sealed
 * (lib/crypto/sealed_file.c "sealed logs") for encrypted ones. See serial.h. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <vmseal/sealed.h>

#include "serial.h"
#include "strutil.h"

struct hostd_console {
    pthread_mutex_t lock;      /* everything below but the thread's own fields */
    char *home;
    char uuid[37];
    int dirfd;
    vmseal_secret *key;        /* the log key; NULL until known */
    hostd_console_note note;
    void *note_arg;
    int prepared;              /* the folder was prepared under the key */
    int broken;                /* preparing failed: text is dropped */
    /* the open segment */
    int seg_fd;                /* -1: none */
    vmseal_slog_writer *w;
    /* the next segment to make */
    uint64_t next_seq, next_offset, first;
    /* text not sealed yet */
    uint8_t *pending;
    size_t npending;
    int64_t pending_since;     /* ms, monotonic */
    uint64_t dropped;
    /* the reader thread */
    int sock;
    int wake[2];
    pthread_t thread;
    int has_thread;
    atomic_int stop;
    /* interactive consoles: who sees what the thread read */
    hostd_console_output out_fn;
    void *out_arg;
    int passthrough;           /* VM without encryption: QEMU writes serial.log
                                  itself; the thread only feeds out_fn */
};

/* ------------------------------------------------------------ helpers */

static void note(hostd_console *c, const char *fmt, ...) VMSEAL_PRINTF(2, 3);
static void note(hostd_console *c, const char *fmt, ...)
{
    if (!c->note)
        return;
    char line[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    c->note(c->note_arg, line);
}

void hostd_console_text_free(void *p, size_t len)
{
    if (!p)
        return;
    OPENSSL_cleanse(p, len);
    free(p);
}

static int write_all(int fd, const void *buf, size_t len)
{
    return vmseal_write_all(fd, buf, len);
}

static int fd_write_cb(void *ctx, const void *buf, size_t len)
{
    return write_all(*(int *)ctx, buf, len);
}

static ssize_t fd_read_cb(void *ctx, void *buf, size_t len)
{
    for (;;) {
        ssize_t r = read(*(int *)ctx, buf, len);
        if (r >= 0)
            return r;
        if (errno != EINTR)
            return -errno;
    }
}

static int open_home(const char *home)
{
    /* the home itself is not followed if it is a symlink */
    int fd = open(home, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return vmseal_fail(errno, "%s: %s", home, strerror(errno));
    return fd;
}

/* A file of the home folder we write to: a regular file of ours with no
 * other hard link (a link would make us write somewhere else). */
static int check_own_file(int fd, const char *name)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return vmseal_fail(errno, "%s: %s", name, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return vmseal_fail(EPROTO, "%s is not a regular file", name);
    if (st.st_nlink != 1)
        return vmseal_fail(EPROTO, "%s has other hard links: not writing to it", name);
    if (st.st_uid != geteuid())
        return vmseal_fail(EPROTO, "%s belongs to another user: not writing to it", name);
    return 0;
}

static int open_plain_at(int dirfd, const char *home)
{
    int fd = openat(dirfd, VMSEAL_CONSOLE_PLAIN,
                    O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC,
                    0600);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP)
            return vmseal_fail(ELOOP, "%s/%s is a symbolic link: not following it", home,
                               VMSEAL_CONSOLE_PLAIN);
        return vmseal_fail(e, "%s/%s: %s", home, VMSEAL_CONSOLE_PLAIN, strerror(e));
    }
    int r = check_own_file(fd, VMSEAL_CONSOLE_PLAIN);
    if (r == 0 && fchmod(fd, 0600) != 0)   /* one an older hostd made 0644 */
        r = vmseal_fail(errno, "%s: %s", VMSEAL_CONSOLE_PLAIN, strerror(errno));
    if (r == 0 && fcntl(fd, F_SETFL, O_APPEND) != 0)
        r = vmseal_fail(errno, "%s: %s", VMSEAL_CONSOLE_PLAIN, strerror(errno));
    if (r < 0) {
        close(fd);
        return r;
    }
    return fd;
}

int hostd_console_open_plain(const char *home)
{
    int dirfd = open_home(home);
    if (dirfd < 0)
        return dirfd;
    int fd = open_plain_at(dirfd, home);
    close(dirfd);
    return fd;
}

/* ------------------------------------------------------------- segments */

/* The lowest segment to keep beside segment seq. */
static uint64_t keep_from(uint64_t prev_first, uint64_t lowest, uint64_t seq)
{
    uint64_t f = prev_first ? prev_first : (lowest ? lowest : seq);
    uint64_t min = seq > VMSEAL_CONSOLE_KEEP - 1 ? seq - (VMSEAL_CONSOLE_KEEP - 1) : 1;
    if (f < min)
        f = min;
    if (f > seq)
        f = seq;
    return f;
}

/* Remove segments older than c->first. */
static void drop_old(hostd_console *c)
{
    size_t count;
    uint64_t lowest, highest;
    if (vmseal_slog_list(c->dirfd, VMSEAL_CONSOLE_BASE, &count, &lowest, &highest) < 0) {
        vmseal_clear_error();
        return;
    }
    for (uint64_t s = lowest; count && s < c->first; s++) {
        char name[VMSEAL_SLOG_NAME_MAX];
        if (vmseal_slog_name(name, sizeof(name), VMSEAL_CONSOLE_BASE, s) == 0 &&
            unlinkat(c->dirfd, name, 0) != 0 && errno != ENOENT)
            note(c, "serial log: cannot remove the old segment %s: %s", name, strerror(errno));
    }
}

/* Make segment c->next_seq: header written to a temporary file, synced,
 * renamed into place (never replacing anything). *fd_out / *w_out: the
 * open segment. */
static int make_segment(hostd_console *c, int *fd_out, vmseal_slog_writer **w_out)
{
    char name[VMSEAL_SLOG_NAME_MAX], tmp[VMSEAL_SLOG_NAME_MAX + 8];
    int r = vmseal_slog_name(name, sizeof(name), VMSEAL_CONSOLE_BASE, c->next_seq);
    if (r < 0)
        return r;
    snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
    (void)unlinkat(c->dirfd, tmp, 0);   /* left by a crash */
    int fd = openat(c->dirfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return vmseal_fail(errno, "serial log: cannot create %s: %s", tmp, strerror(errno));
    c->first = keep_from(c->first, 0, c->next_seq);
    vmseal_slog_info want = {.seq = c->next_seq, .first = c->first, .offset = c->next_offset};
    hostd_copy_str(want.uuid, sizeof(want.uuid), c->uuid);
    vmseal_slog_writer *w = NULL;
    *fd_out = fd;
    vmseal_stream io = {NULL, NULL, fd_write_cb, fd_out};
    r = vmseal_slog_begin(c->key, &want, &io, &w);
    if (r == 0 && fdatasync(fd) != 0)
        r = vmseal_fail(errno, "serial log: %s: %s", tmp, strerror(errno));
    if (r == 0 && renameat2(c->dirfd, tmp, c->dirfd, name, RENAME_NOREPLACE) != 0)
        r = vmseal_fail(errno, "serial log: cannot make %s: %s", name, strerror(errno));
    if (r < 0) {
        vmseal_slog_writer_free(w);
        close(fd);
        *fd_out = -1;
        (void)unlinkat(c->dirfd, tmp, 0);
        return r;
    }
    (void)fsync(c->dirfd);
    *w_out = w;
    c->next_seq++;
    drop_old(c);
    return 0;
}

/* Close segment fd/w with its end record. */
static int end_segment(hostd_console *c, int *fd, vmseal_slog_writer **w)
{
    int r = 0;
    if (*w) {
        r = vmseal_slog_finish(*w);
        if (r == 0 && fdatasync(*fd) != 0)
            r = vmseal_fail(errno, "serial log: %s", strerror(errno));
        if (r < 0)
            note(c, "serial log: closing segment %" PRIu64 ": %s", vmseal_slog_writer_info(*w)->seq,
                 vmseal_last_error());
        c->next_offset = vmseal_slog_writer_info(*w)->offset + vmseal_slog_writer_bytes(*w);
        vmseal_slog_writer_free(*w);
        *w = NULL;
    }
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
    return r;
}

/* The newest segment a previous writer left: closed if it was unfinished
 * (a torn last record cut back first), noted if damaged. Fails only when
 * the file may not be touched (a symlink, not a regular file). Sets
 * c->first and c->next_offset from it. */
static int recover_last(hostd_console *c, uint64_t highest, uint64_t lowest)
{
    char name[VMSEAL_SLOG_NAME_MAX];
    int r = vmseal_slog_name(name, sizeof(name), VMSEAL_CONSOLE_BASE, highest);
    if (r < 0)
        return r;
    int fd = openat(c->dirfd, name, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP)
            return vmseal_fail(ELOOP, "serial log: %s/%s is a symbolic link: not following it",
                               c->home, name);
        return vmseal_fail(e, "serial log: %s/%s: %s", c->home, name, strerror(e));
    }
    if ((r = check_own_file(fd, name)) < 0) {
        close(fd);
        return vmseal_fail(-r, "serial log: %s/%s", c->home, vmseal_last_error());
    }
    vmseal_slog_info info;
    vmseal_slog_state st;
    vmseal_stream in = {fd_read_cb, &fd, NULL, NULL};
    r = vmseal_slog_read(c->key, &in, &info, &st);
    c->first = keep_from(st.header_ok ? info.first : 0, lowest, highest + 1);
    c->next_offset = st.header_ok ? info.offset + st.bytes : 0;
    if (r == 0 && st.ended) {
        close(fd);
        return 0;
    }
    if (st.header_ok && !st.ended && (r == 0 || (r == -EPROTO && st.torn))) {
        uint8_t h[VMSEAL_SLOG_HEADER_LEN];
        struct stat sb;
        int e = fstat(fd, &sb) == 0 && ftruncate(fd, (off_t)st.good_len) == 0 &&
                        lseek(fd, (off_t)st.good_len, SEEK_SET) == (off_t)st.good_len &&
                        pread(fd, h, sizeof(h), 0) == (ssize_t)sizeof(h)
                    ? 0
                    : errno;
        vmseal_stream out = {NULL, NULL, fd_write_cb, &fd};
        int t = e ? -e : vmseal_slog_terminate(c->key, h, sizeof(h), st.records, &out);
        if (t == 0 && fdatasync(fd) != 0)
            t = -errno;
        if (t == 0)
            note(c, "serial log: segment %s was left unfinished (hostd stopped while the VM "
                    "ran)%s; closed after %" PRIu64 " bytes", name,
                 st.torn ? ", its last record cut short: the partial record was dropped" : "",
                 st.bytes);
        else
            note(c, "serial log: cannot close the unfinished segment %s: %s", name,
                 e ? strerror(e) : vmseal_last_error());
        close(fd);
        return 0;
    }
    note(c, "serial log: segment %s is damaged (%s); it is kept as it is and a new segment "
            "follows", name, r < 0 ? vmseal_last_error() : "no end record");
    close(fd);
    return 0;
}

/* Seal the clear serial.log (from before the VM was encrypted) into a
 * segment of its own, then remove it. */
static int import_plain(hostd_console *c)
{
    int in = openat(c->dirfd, VMSEAL_CONSOLE_PLAIN,
                    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (in < 0) {
        if (errno == ENOENT)
            return 0;
        if (errno == ELOOP) {
            note(c, "serial log: %s is a symbolic link: ignored, not followed", VMSEAL_CONSOLE_PLAIN);
            return 0;
        }
        return vmseal_fail(errno, "%s/%s: %s", c->home, VMSEAL_CONSOLE_PLAIN, strerror(errno));
    }
    struct stat st;
    if (fstat(in, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(in);
        note(c, "serial log: %s is not a regular file: ignored", VMSEAL_CONSOLE_PLAIN);
        return 0;
    }
    int fd = -1;
    vmseal_slog_writer *w = NULL;
    int r = make_segment(c, &fd, &w);
    uint8_t buf[65536];
    uint64_t total = 0;
    while (r == 0) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = vmseal_fail(errno, "%s: %s", VMSEAL_CONSOLE_PLAIN, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        r = vmseal_slog_append(w, buf, (size_t)n);
        total += (uint64_t)n;
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    close(in);
    if (r == 0)
        r = end_segment(c, &fd, &w);
    else
        (void)end_segment(c, &fd, &w);
    if (r < 0)
        return r;
    if (unlinkat(c->dirfd, VMSEAL_CONSOLE_PLAIN, 0) != 0 && errno != ENOENT)
        return vmseal_fail(errno, "cannot remove %s: %s", VMSEAL_CONSOLE_PLAIN, strerror(errno));
    (void)fsync(c->dirfd);
    note(c, "serial log: the clear %s (%" PRIu64 " bytes, from before encryption) was sealed "
            "into segment %" PRIu64 " and removed", VMSEAL_CONSOLE_PLAIN, total, c->next_seq - 1);
    return 0;
}

/* With the key: close what a previous writer left, seal a clear log, and
 * (boot) open a new segment. Lock held. */
static int prepare(hostd_console *c, int boot)
{
    size_t count;
    uint64_t lowest, highest;
    int r = vmseal_slog_list(c->dirfd, VMSEAL_CONSOLE_BASE, &count, &lowest, &highest);
    if (r < 0)
        return r;
    c->first = 0;
    c->next_offset = 0;
    c->next_seq = highest + 1;
    if (highest && (r = recover_last(c, highest, lowest)) < 0)
        return r;
    if ((r = import_plain(c)) < 0)
        return r;
    if (boot && (r = make_segment(c, &c->seg_fd, &c->w)) < 0)
        return r;
    c->prepared = 1;
    return 0;
}

/* ------------------------------------------------------------- writing */

static void add_pending(hostd_console *c, const uint8_t *buf, size_t n)
{
    size_t room = VMSEAL_CONSOLE_PENDING_MAX - c->npending;
    size_t take = n < room ? n : room;
    if (take) {
        if (c->npending == 0)
            c->pending_since = hostd_now_ms();
        memcpy(c->pending + c->npending, buf, take);
        c->npending += take;
    }
    c->dropped += n - take;
}

/* Seal the pending text (lock held). */
static int flush_locked(hostd_console *c)
{
    if (c->npending == 0 || !c->key || !c->prepared || c->broken)
        return 0;
    int r = 0;
    if (c->w) {
        /* the segment must still be what we wrote */
        struct stat st;
        if (fstat(c->seg_fd, &st) != 0 || (uint64_t)st.st_size != vmseal_slog_writer_length(c->w)) {
            note(c, "serial log: segment %" PRIu64 " was changed on disk by someone else; "
                    "a new segment follows", vmseal_slog_writer_info(c->w)->seq);
            c->next_offset = vmseal_slog_writer_info(c->w)->offset + vmseal_slog_writer_bytes(c->w);
            vmseal_slog_writer_free(c->w);
            c->w = NULL;
            close(c->seg_fd);
            c->seg_fd = -1;
        }
    }
    if (!c->w && (r = make_segment(c, &c->seg_fd, &c->w)) < 0) {
        note(c, "serial log: %s; %zu bytes of console output dropped", vmseal_last_error(),
             c->npending);
        goto drop;
    }
    uint64_t good = vmseal_slog_writer_length(c->w), bytes = vmseal_slog_writer_bytes(c->w);
    r = vmseal_slog_append(c->w, c->pending, c->npending);
    if (r < 0) {
        /* cut back to the last whole record and close the segment there */
        note(c, "serial log: writing segment %" PRIu64 " failed: %s; %zu bytes of console "
                "output dropped, a new segment follows",
             vmseal_slog_writer_info(c->w)->seq, vmseal_last_error(), c->npending);
        uint8_t h[VMSEAL_SLOG_HEADER_LEN];
        uint64_t records = (good - VMSEAL_SLOG_HEADER_LEN - bytes) / VMSEAL_SLOG_RECORD_OVERHEAD;
        vmseal_stream out = {NULL, NULL, fd_write_cb, &c->seg_fd};
        if (ftruncate(c->seg_fd, (off_t)good) == 0 &&
            lseek(c->seg_fd, (off_t)good, SEEK_SET) == (off_t)good &&
            pread(c->seg_fd, h, sizeof(h), 0) == (ssize_t)sizeof(h) &&
            vmseal_slog_terminate(c->key, h, sizeof(h), records, &out) == 0)
            (void)fdatasync(c->seg_fd);
        c->next_offset = vmseal_slog_writer_info(c->w)->offset + bytes;
        vmseal_slog_writer_free(c->w);
        c->w = NULL;
        close(c->seg_fd);
        c->seg_fd = -1;
        goto drop;
    }
    if (c->dropped) {
        note(c, "serial log: %" PRIu64 " bytes of console output were dropped (no key to seal "
                "them yet, or a write failed)", c->dropped);
        c->dropped = 0;
    }
    OPENSSL_cleanse(c->pending, c->npending);
    c->npending = 0;
    if (vmseal_slog_writer_bytes(c->w) >= VMSEAL_CONSOLE_SEGMENT_BYTES)
        (void)end_segment(c, &c->seg_fd, &c->w);   /* the next flush opens the next one */
    return 0;
drop:
    c->dropped = 0;
    OPENSSL_cleanse(c->pending, c->npending);
    c->npending = 0;
    return r;
}

/* ------------------------------------------------------------- thread */

static void *reader_main(void *arg)
{
    hostd_console *c = arg;
    uint8_t buf[16384];
    int eof = 0;
    while (!eof) {
        int timeout = 250;
        pthread_mutex_lock(&c->lock);
        if (c->npending && c->key) {
            int64_t left = c->pending_since + VMSEAL_CONSOLE_FLUSH_MS - hostd_now_ms();
            timeout = left <= 0 ? 0 : (left < timeout ? (int)left : timeout);
        }
        pthread_mutex_unlock(&c->lock);
        struct pollfd p[2] = {{.fd = c->sock, .events = POLLIN}, {.fd = c->wake[0], .events = POLLIN}};
        int n = poll(p, 2, timeout);
        if (n < 0 && errno != EINTR)
            break;
        int stopping = atomic_load(&c->stop);
        if (n > 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            /* when stopping, read only what is there already */
            for (int round = 0; round < (stopping ? 64 : 1); round++) {
                ssize_t got = recv(c->sock, buf, sizeof(buf), MSG_DONTWAIT);
                if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
                    eof = 1;
                    break;
                }
                if (got < 0)
                    break;
                pthread_mutex_lock(&c->lock);
                if (!c->passthrough)
                    add_pending(c, buf, (size_t)got);
                if (c->npending >= VMSEAL_CONSOLE_FLUSH_BYTES)
                    (void)flush_locked(c);
                pthread_mutex_unlock(&c->lock);
                if (c->out_fn)   /* the log has it first */
                    c->out_fn(c->out_arg, buf, (size_t)got);
            }
        }
        pthread_mutex_lock(&c->lock);
        if (c->npending && c->key && hostd_now_ms() - c->pending_since >= VMSEAL_CONSOLE_FLUSH_MS)
            (void)flush_locked(c);
        pthread_mutex_unlock(&c->lock);
        if (stopping)
            break;
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    pthread_mutex_lock(&c->lock);
    if (!c->passthrough) {
        (void)flush_locked(c);
        (void)end_segment(c, &c->seg_fd, &c->w);
    }
    pthread_mutex_unlock(&c->lock);
    if (c->out_fn)
        c->out_fn(c->out_arg, NULL, 0);
    vmseal_clear_error();
    return NULL;
}

void hostd_console_set_output(hostd_console *c, hostd_console_output fn, void *arg)
{
    c->out_fn = fn;
    c->out_arg = arg;
}

int hostd_console_input(hostd_console *c, const uint8_t *data, size_t len, int timeout_ms)
{
    if (c->sock < 0 || atomic_load(&c->stop))
        return vmseal_fail(ENOTCONN, "the console is not attached");
    int64_t deadline = hostd_now_ms() + timeout_ms;
    while (len) {
        ssize_t w = send(c->sock, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            data += w;
            len -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR)
            return vmseal_fail(errno, "console: %s", strerror(errno));
        int64_t left = deadline - hostd_now_ms();
        if (left <= 0)
            return vmseal_fail(ETIMEDOUT, "console: the guest does not take input");
        struct pollfd p = {.fd = c->sock, .events = POLLOUT};
        (void)poll(&p, 1, (int)left);
    }
    return 0;
}

/* ---------------------------------------------------------- lifecycle */

int hostd_console_new(const char *home, const char *uuid, vmseal_secret *log_key,
                       hostd_console_note note_fn, void *note_arg, hostd_console **out)
{
    *out = NULL;
    hostd_console *c = calloc(1, sizeof(*c));
    if (!c) {
        vmseal_secret_free(log_key);
        return vmseal_fail(ENOMEM, "out of memory");
    }
    pthread_mutex_init(&c->lock, NULL);
    c->dirfd = c->seg_fd = c->sock = c->wake[0] = c->wake[1] = -1;
    c->key = log_key;
    c->note = note_fn;
    c->note_arg = note_arg;
    atomic_init(&c->stop, 0);
    hostd_copy_str(c->uuid, sizeof(c->uuid), uuid);
    c->home = strdup(home);
    c->pending = malloc(VMSEAL_CONSOLE_PENDING_MAX);
    int r = c->home && c->pending ? 0 : vmseal_fail(ENOMEM, "out of memory");
    if (r == 0 && (c->dirfd = open_home(home)) < 0)
        r = c->dirfd;
    if (r == 0 && c->key) {
        pthread_mutex_lock(&c->lock);
        r = prepare(c, 1);
        pthread_mutex_unlock(&c->lock);
    }
    if (r < 0) {
        char msg[600];
        hostd_copy_str(msg, sizeof(msg), vmseal_last_error());
        hostd_console_free(c);
        return vmseal_fail(-r, "%s", msg);
    }
    *out = c;
    return 0;
}

int hostd_console_new_passthrough(const char *home, const char *uuid, hostd_console_note note_fn,
                                   void *note_arg, hostd_console **out)
{
    int r = hostd_console_new(home, uuid, NULL, note_fn, note_arg, out);
    if (r == 0)
        (*out)->passthrough = 1;
    return r;
}

int hostd_console_attach(hostd_console *c, int sock_fd)
{
    if (c->has_thread) {
        close(sock_fd);
        return vmseal_fail(EALREADY, "the console is attached already");
    }
    if (pipe2(c->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        int e = errno;
        close(sock_fd);
        return vmseal_fail(e, "pipe: %s", strerror(e));
    }
    c->sock = sock_fd;
    int e = pthread_create(&c->thread, NULL, reader_main, c);
    if (e != 0)
        return vmseal_fail(e, "cannot start the console thread: %s", strerror(e));
    c->has_thread = 1;
    return 0;
}

int hostd_console_has_key(hostd_console *c)
{
    pthread_mutex_lock(&c->lock);
    int k = c->key != NULL || c->passthrough;
    pthread_mutex_unlock(&c->lock);
    return k;
}

int hostd_console_set_key(hostd_console *c, vmseal_secret *log_key)
{
    pthread_mutex_lock(&c->lock);
    if (c->key) {
        pthread_mutex_unlock(&c->lock);
        vmseal_secret_free(log_key);
        return 0;
    }
    c->key = log_key;
    int r = prepare(c, 1);
    if (r < 0) {
        c->broken = 1;
        note(c, "serial log: %s; console output of this run is not kept", vmseal_last_error());
    } else {
        (void)flush_locked(c);
    }
    pthread_mutex_unlock(&c->lock);
    return r;
}

void hostd_console_free(hostd_console *c)
{
    if (!c)
        return;
    if (c->has_thread) {
        atomic_store(&c->stop, 1);
        if (write(c->wake[1], "x", 1) < 0) {
            /* the thread still sees the flag within a poll period */
        }
        pthread_join(c->thread, NULL);
    } else if (!c->passthrough) {
        pthread_mutex_lock(&c->lock);
        (void)flush_locked(c);
        (void)end_segment(c, &c->seg_fd, &c->w);
        pthread_mutex_unlock(&c->lock);
    }
    if (c->npending || c->dropped)
        note(c, "serial log: %" PRIu64 " bytes of console output were not kept (the VM's key "
                "was not available)", (uint64_t)c->npending + c->dropped);
    if (c->sock >= 0)
        close(c->sock);
    for (int i = 0; i < 2; i++)
        if (c->wake[i] >= 0)
            close(c->wake[i]);
    if (c->seg_fd >= 0)
        close(c->seg_fd);
    vmseal_slog_writer_free(c->w);
    if (c->dirfd >= 0)
        close(c->dirfd);
    vmseal_secret_free(c->key);
    hostd_console_text_free(c->pending, VMSEAL_CONSOLE_PENDING_MAX);
    free(c->home);
    pthread_mutex_destroy(&c->lock);
    free(c);
    vmseal_clear_error();
}

/* ------------------------------------------------------------- reading */

/* The last cap bytes of what is emitted. */
typedef struct tailbuf {
    uint8_t *buf;
    size_t cap, len, pos;
} tailbuf;

static int tail_emit(void *ctx, const void *data, size_t n)
{
    tailbuf *t = ctx;
    const uint8_t *p = data;
    if (t->cap == 0)
        return 0;
    if (n >= t->cap) {
        memcpy(t->buf, p + n - t->cap, t->cap);
        t->pos = 0;
        t->len = t->cap;
        return 0;
    }
    size_t first = t->cap - t->pos < n ? t->cap - t->pos : n;
    memcpy(t->buf + t->pos, p, first);
    memcpy(t->buf, p + first, n - first);
    t->pos = (t->pos + n) % t->cap;
    t->len = t->len + n > t->cap ? t->cap : t->len + n;
    return 0;
}

/* Linear copy of the tail (the ring is wiped and freed). */
static int tail_take(tailbuf *t, uint8_t **text, size_t *len)
{
    uint8_t *out = malloc(t->len ? t->len : 1);
    if (!out) {
        hostd_console_text_free(t->buf, t->cap);
        return vmseal_fail(ENOMEM, "out of memory");
    }
    if (t->len < t->cap) {
        memcpy(out, t->buf, t->len);
    } else if (t->len) {
        memcpy(out, t->buf + t->pos, t->cap - t->pos);
        memcpy(out + t->cap - t->pos, t->buf, t->pos);
    }
    *text = out;
    *len = t->len;
    hostd_console_text_free(t->buf, t->cap);
    t->buf = NULL;
    return 0;
}

static int read_dir(int dirfd, const char *uuid, const vmseal_secret *key, int flags, size_t tail,
                    uint8_t **text, size_t *len, uint64_t *total)
{
    *text = NULL;
    *len = 0;
    *total = 0;
    if (tail > VMSEAL_CONSOLE_TAIL_MAX)
        tail = VMSEAL_CONSOLE_TAIL_MAX;
    tailbuf t = {.cap = tail};
    t.buf = malloc(tail ? tail : 1);
    if (!t.buf)
        return vmseal_fail(ENOMEM, "out of memory");
    vmseal_slog_log_info li;
    int r = vmseal_slog_read_dir(key, dirfd, VMSEAL_CONSOLE_BASE, uuid, flags, tail_emit, &t, &li);
    if (r < 0) {
        hostd_console_text_free(t.buf, t.cap);
        return r;
    }
    *total = li.total;
    return tail_take(&t, text, len);
}

int hostd_console_read(hostd_console *c, size_t tail, uint8_t **text, size_t *len,
                        uint64_t *total)
{
    pthread_mutex_lock(&c->lock);
    int r;
    if (!c->key)
        r = vmseal_fail(ENOKEY, "the log key is not known yet");
    else {
        (void)flush_locked(c);
        r = read_dir(c->dirfd, c->uuid, c->key, c->w ? VMSEAL_SLOG_ALLOW_OPEN : 0, tail, text,
                     len, total);
    }
    pthread_mutex_unlock(&c->lock);
    return r;
}

int hostd_console_read_sealed(const char *home, const char *uuid, const vmseal_secret *log_key,
                               size_t tail, uint8_t **text, size_t *len, uint64_t *total)
{
    int dirfd = open_home(home);
    if (dirfd < 0)
        return dirfd;
    int r = read_dir(dirfd, uuid, log_key, 0, tail, text, len, total);
    close(dirfd);
    return r;
}

int hostd_console_read_plain(const char *home, size_t tail, uint8_t **text, size_t *len,
                              uint64_t *total)
{
    *text = NULL;
    *len = 0;
    *total = 0;
    if (tail > VMSEAL_CONSOLE_TAIL_MAX)
        tail = VMSEAL_CONSOLE_TAIL_MAX;
    int dirfd = open_home(home);
    if (dirfd < 0)
        return dirfd;
    int fd = openat(dirfd, VMSEAL_CONSOLE_PLAIN, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY |
                                                     O_CLOEXEC);
    int e = errno;
    close(dirfd);
    if (fd < 0 && e == ENOENT) {
        *text = malloc(1);
        return *text ? 0 : vmseal_fail(ENOMEM, "out of memory");
    }
    if (fd < 0 && e == ELOOP)
        return vmseal_fail(ELOOP, "%s is a symbolic link: not following it", VMSEAL_CONSOLE_PLAIN);
    if (fd < 0)
        return vmseal_fail(e, "%s: %s", VMSEAL_CONSOLE_PLAIN, strerror(e));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return vmseal_fail(EPROTO, "%s is not a regular file", VMSEAL_CONSOLE_PLAIN);
    }
    uint64_t size = (uint64_t)st.st_size;
    size_t n = size < tail ? (size_t)size : tail;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        close(fd);
        return vmseal_fail(ENOMEM, "out of memory");
    }
    ssize_t got = n ? pread(fd, buf, n, (off_t)(size - n)) : 0;
    close(fd);
    if (got < 0) {
        hostd_console_text_free(buf, n);
        return vmseal_fail(EIO, "%s: %s", VMSEAL_CONSOLE_PLAIN, strerror(errno));
    }
    *text = buf;
    *len = (size_t)got;
    *total = size;
    return 0;
}

/* ------------------------------------------------- policy conversions */

int hostd_console_seal_plain(const char *home, const char *uuid, const vmseal_secret *log_key,
                              hostd_console_note note_fn, void *note_arg)
{
    vmseal_secret *k = NULL;
    int r = vmseal_secret_dup(log_key, &k);
    if (r < 0)
        return r;
    hostd_console *c = NULL;
    if ((r = hostd_console_new(home, uuid, NULL, note_fn, note_arg, &c)) < 0) {
        vmseal_secret_free(k);
        return r;
    }
    pthread_mutex_lock(&c->lock);
    c->key = k;
    r = prepare(c, 0);
    pthread_mutex_unlock(&c->lock);
    char msg[600];
    hostd_copy_str(msg, sizeof(msg), vmseal_last_error());
    hostd_console_free(c);
    return r < 0 ? vmseal_fail(-r, "%s", msg) : 0;
}

typedef struct plain_sink {
    int fd;
    int err;
} plain_sink;

static int plain_emit(void *ctx, const void *buf, size_t len)
{
    plain_sink *s = ctx;
    int r = write_all(s->fd, buf, len);
    if (r < 0)
        s->err = -r;
    return r;
}

int hostd_console_unseal_to_plain(const char *home, const char *uuid,
                                   const vmseal_secret *log_key, hostd_console_note note_fn,
                                   void *note_arg)
{
    int dirfd = open_home(home);
    if (dirfd < 0)
        return dirfd;
    size_t count;
    uint64_t lowest, highest;
    int r = vmseal_slog_list(dirfd, VMSEAL_CONSOLE_BASE, &count, &lowest, &highest);
    if (r < 0 || count == 0) {
        close(dirfd);
        return r;
    }
    plain_sink s = {.fd = open_plain_at(dirfd, home)};
    if (s.fd < 0) {
        close(dirfd);
        return s.fd;
    }
    vmseal_slog_log_info li;
    r = vmseal_slog_read_dir(log_key, dirfd, VMSEAL_CONSOLE_BASE, uuid, 0, plain_emit, &s, &li);
    if (r == 0 && fsync(s.fd) != 0)
        r = vmseal_fail(errno, "%s: %s", VMSEAL_CONSOLE_PLAIN, strerror(errno));
    close(s.fd);
    if (r < 0 && s.err) {   /* could not write the clear log: keep the sealed one */
        close(dirfd);
        return r;
    }
    if (r < 0 && note_fn) {
        char line[900];
        snprintf(line, sizeof(line), "serial log: the sealed log is damaged (%s); what verified "
                 "before the damage was written to %s, the sealed segments are removed",
                 vmseal_last_error(), VMSEAL_CONSOLE_PLAIN);
        note_fn(note_arg, line);
    }
    for (uint64_t q = lowest;; q++) {
        char name[VMSEAL_SLOG_NAME_MAX];
        if (vmseal_slog_name(name, sizeof(name), VMSEAL_CONSOLE_BASE, q) == 0)
            (void)unlinkat(dirfd, name, 0);
        if (q == highest)
            break;
    }
    (void)fsync(dirfd);
    close(dirfd);
    vmseal_clear_error();
    return 0;
}

/* ---------------------------------------------------------- text */

char *hostd_console_utf8(const uint8_t *b, size_t len, int cut, size_t *out_len)
{
    size_t i = 0;
    if (cut)   /* a character split by the cut: drop its continuation bytes */
        while (i < len && i < 3 && (b[i] & 0xC0) == 0x80)
            i++;
    char *out = malloc(3 * (len - i) + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    while (i < len) {
        uint8_t c0 = b[i];
        size_t n = 0;
        uint32_t cp = 0, min = 0;
        if (c0 >= 0x01 && c0 < 0x80) {
            out[o++] = (char)c0;
            i++;
            continue;
        }
        if (c0 >= 0xC2 && c0 <= 0xDF) {
            n = 2;
            cp = c0 & 0x1F;
            min = 0x80;
        } else if (c0 >= 0xE0 && c0 <= 0xEF) {
            n = 3;
            cp = c0 & 0x0F;
            min = 0x800;
        } else if (c0 >= 0xF0 && c0 <= 0xF4) {
            n = 4;
            cp = c0 & 0x07;
            min = 0x10000;
        }
        int ok = n > 0 && i + n <= len;
        for (size_t k = 1; ok && k < n; k++) {
            if ((b[i + k] & 0xC0) != 0x80)
                ok = 0;
            else
                cp = cp << 6 | (b[i + k] & 0x3F);
        }
        if (ok && (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)))
            ok = 0;
        if (ok) {
            memcpy(out + o, b + i, n);
            o += n;
            i += n;
        } else {   /* NUL or an invalid byte: U+FFFD */
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}
