/* Bulk sector conversion for LUKS1 images: encrypt, decrypt, re-encrypt.
 *
 * The payload is cut into 4 MiB work items. Worker threads take items in
 * order from a shared counter; each one reads its item with pread, runs the
 * XTS data path over all its sectors in one call, and writes it with pwrite,
 * so reads, writes and cipher work of different items overlap. The calling
 * thread only watches: when the contiguous prefix of finished items has
 * grown by the checkpoint interval it fdatasync()s the output and calls the
 * job's checkpoint function (data first, then checkpoint: a checkpoint never
 * claims bytes that are not on disk). It also reports progress and polls
 * opts->cancel.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <vmseal/xts.h>

#include "disk_internal.h"

#define CHUNK (4u << 20)
#define ZERO_BLOCK 4096u
#define MAX_THREADS 64u

struct shared {
    const bulk_job *job;
    uint64_t nchunks;
    uint64_t next;            /* next item to hand out */
    uint64_t prefix;          /* items [0, prefix) are all finished */
    uint64_t window;          /* items handed out stay below prefix + window */
    uint8_t *done;            /* per item: finished */
    int stop;                 /* no more items: cancel or error */
    int err;                  /* first error (negative errno) */
    char errmsg[512];
    pthread_mutex_t mu;
    pthread_cond_t cv;        /* worker -> watcher: an item finished */
    pthread_cond_t room;      /* watcher -> workers: prefix moved or stop */
    struct extent *ext;       /* data extents of src (NULL: all data) */
    size_t n_ext;
};

/* A data extent [start, end) of the source file, in file offsets. */
struct extent {
    uint64_t start, end;
};

struct worker {
    struct shared *s;
    pthread_t tid;
    int started;
    vmseal_xts *dec, *enc;
    uint8_t *buf;
};

static int pread_full(int fd, uint8_t *buf, size_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t r = pread(fd, buf, len, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return vmseal_fail(errno, "read at offset %llu failed: %s",
                               (unsigned long long)off, strerror(errno));
        if (r == 0)
            return vmseal_fail(EPROTO, "unexpected end of file at offset %llu (truncated image?)",
                               (unsigned long long)off);
        buf += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static int pwrite_full(int fd, const uint8_t *buf, size_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t r = pwrite(fd, buf, len, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return vmseal_fail(errno, "write at offset %llu failed: %s",
                               (unsigned long long)off, strerror(errno));
        buf += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/* Make [off, off+len) of fd read as zeros without allocating: punch a hole,
 * or write zeros where the file system cannot punch. */
static int make_zero(int fd, uint64_t off, uint64_t len, const uint8_t *zeros)
{
    if (len == 0)
        return 0;
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
        return 0;
    while (len > 0) {
        size_t n = len > ZERO_BLOCK ? ZERO_BLOCK : (size_t)len;
        int rc = pwrite_full(fd, zeros, n, off);
        if (rc < 0)
            return rc;
        off += n;
        len -= n;
    }
    return 0;
}

/* Map the data extents of [from, to) of fd once, before the workers start:
 * SEEK_DATA/SEEK_HOLE cost time proportional to what they skip on some
 * file systems (tmpfs scans pages), so asking per work item would be
 * quadratic. NULL with *n = 0 when the file system cannot tell (all data). */
static int map_extents(int fd, uint64_t from, uint64_t to, struct extent **out, size_t *n)
{
    size_t cap = 0, len = 0;
    struct extent *v = NULL;
    uint64_t pos = from;
    *out = NULL;
    *n = 0;
    while (pos < to) {
        off_t d = lseek(fd, (off_t)pos, SEEK_DATA);
        if (d < 0 && errno == ENXIO)
            break;
        if (d < 0) {          /* no SEEK_DATA here: treat everything as data */
            free(v);
            return 0;
        }
        if ((uint64_t)d >= to)
            break;
        off_t h = lseek(fd, d, SEEK_HOLE);
        uint64_t e = (h < 0 || (uint64_t)h > to) ? to : (uint64_t)h;
        if (len == cap) {
            cap = cap ? 2 * cap : 64;
            struct extent *nv = realloc(v, cap * sizeof(*v));
            if (!nv) {
                free(v);
                return vmseal_fail(ENOMEM, "bulk: out of memory");
            }
            v = nv;
        }
        v[len].start = (uint64_t)d;
        v[len].end = e;
        len++;
        pos = e;
    }
    if (!v) {                 /* all hole: an empty, non-NULL map */
        v = malloc(sizeof(*v));
        if (!v)
            return vmseal_fail(ENOMEM, "bulk: out of memory");
    }
    *out = v;
    *n = len;
    return 0;
}

/* Next data extent within [pos, end): 1 and [*ds, *de) if one, 0 if the
 * rest is a hole. */
static int next_data(const struct shared *s, uint64_t pos, uint64_t end, uint64_t *ds, uint64_t *de)
{
    if (pos >= end)
        return 0;
    if (!s->ext) {
        *ds = pos;
        *de = end;
        return 1;
    }
    /* First extent ending after pos (binary search). */
    size_t lo = 0, hi = s->n_ext;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->ext[mid].end <= pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == s->n_ext || s->ext[lo].start >= end)
        return 0;
    *ds = s->ext[lo].start > pos ? s->ext[lo].start : pos;
    *de = s->ext[lo].end < end ? s->ext[lo].end : end;
    return 1;
}

static uint64_t round_down(uint64_t v, uint64_t a) { return v / a * a; }
static uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

static int chunk_encrypt(struct worker *w, uint64_t a, uint64_t n)
{
    const bulk_job *j = w->s->job;
    memset(w->buf, 0, n);
    /* Only the data extents of the plain input are read; holes and the part
     * past its end are zeros. */
    uint64_t lim = a + n < j->src_len ? a + n : j->src_len;
    uint64_t pos = j->src_off + a, end = j->src_off + lim, ds, de;
    while (pos < end && next_data(w->s, pos, end, &ds, &de) == 1) {
        int rc = pread_full(j->src_fd, w->buf + (ds - j->src_off - a), de - ds, ds);
        if (rc < 0)
            return rc;
        pos = de;
    }
    int rc = vmseal_xts_encrypt(w->enc, a / VMSEAL_SECTOR_SIZE, w->buf, w->buf,
                                n / VMSEAL_SECTOR_SIZE);
    return rc < 0 ? rc : pwrite_full(j->dst_fd, w->buf, n, j->dst_off + a);
}

static int chunk_decrypt(struct worker *w, uint64_t a, uint64_t n, const uint8_t *zeros)
{
    const bulk_job *j = w->s->job;
    int rc = pread_full(j->src_fd, w->buf, n, j->src_off + a);
    if (rc < 0)
        return rc;
    rc = vmseal_xts_decrypt(w->dec, a / VMSEAL_SECTOR_SIZE, w->buf, w->buf, n / VMSEAL_SECTOR_SIZE);
    if (rc < 0)
        return rc;
    /* Write runs of non-zero blocks; all-zero blocks stay (or become) holes. */
    uint64_t i = 0;
    while (i < n) {
        uint64_t bl = n - i < ZERO_BLOCK ? n - i : ZERO_BLOCK;
        int zero = memcmp(w->buf + i, zeros, bl) == 0;
        uint64_t k = i + bl;
        while (k < n) {
            uint64_t b2 = n - k < ZERO_BLOCK ? n - k : ZERO_BLOCK;
            if ((memcmp(w->buf + k, zeros, b2) == 0) != zero)
                break;
            k += b2;
        }
        if (!zero)
            rc = pwrite_full(j->dst_fd, w->buf + i, k - i, j->dst_off + a + i);
        else if (j->resumed)
            rc = make_zero(j->dst_fd, j->dst_off + a + i, k - i, zeros);
        if (rc < 0)
            return rc;
        i = k;
    }
    return 0;
}

static int chunk_rekey(struct worker *w, uint64_t a, uint64_t n, const uint8_t *zeros)
{
    const bulk_job *j = w->s->job;
    uint64_t pos = j->src_off + a, end = j->src_off + a + n, ds, de;
    while (pos < end) {
        int more = next_data(w->s, pos, end, &ds, &de);
        if (!more) {
            ds = de = end;
        } else {
            /* Extents of a sector-aligned payload are sector-aligned on any
             * real file system; round outwards to be sure. */
            ds = round_down(ds - j->src_off, VMSEAL_SECTOR_SIZE) + j->src_off;
            de = round_up(de - j->src_off, VMSEAL_SECTOR_SIZE) + j->src_off;
            if (ds < pos)
                ds = pos;
            if (de > end)
                de = end;
        }
        /* A never-written area (hole) of the old image stays never-written. */
        if (ds > pos && j->resumed) {
            int rc = make_zero(j->dst_fd, j->dst_off + (pos - j->src_off), ds - pos, zeros);
            if (rc < 0)
                return rc;
        }
        if (!more)
            break;
        uint64_t len = de - ds, p = ds - j->src_off;
        int rc = pread_full(j->src_fd, w->buf, len, ds);
        if (rc == 0)
            rc = vmseal_xts_decrypt(w->dec, p / VMSEAL_SECTOR_SIZE, w->buf, w->buf,
                                    len / VMSEAL_SECTOR_SIZE);
        if (rc == 0)
            rc = vmseal_xts_encrypt(w->enc, p / VMSEAL_SECTOR_SIZE, w->buf, w->buf,
                                    len / VMSEAL_SECTOR_SIZE);
        if (rc == 0)
            rc = pwrite_full(j->dst_fd, w->buf, len, j->dst_off + p);
        if (rc < 0)
            return rc;
        pos = de;
    }
    return 0;
}

static void *worker_main(void *arg)
{
    static const uint8_t zeros[ZERO_BLOCK];
    struct worker *w = arg;
    struct shared *s = w->s;
    const bulk_job *j = s->job;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        /* Workers run at most `window` items ahead of the checkpointed
         * prefix: bounded work in flight, and a cancel stops promptly. */
        while (!s->stop && !s->err && s->next < s->nchunks && s->next >= s->prefix + s->window)
            pthread_cond_wait(&s->room, &s->mu);
        if (s->stop || s->err || s->next >= s->nchunks) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        uint64_t idx = s->next++;
        pthread_mutex_unlock(&s->mu);

        uint64_t a = j->start + idx * CHUNK;
        uint64_t n = j->total - a < CHUNK ? j->total - a : CHUNK;
        int rc;
        if (j->op == BULK_ENCRYPT)
            rc = chunk_encrypt(w, a, n);
        else if (j->op == BULK_DECRYPT)
            rc = chunk_decrypt(w, a, n, zeros);
        else
            rc = chunk_rekey(w, a, n, zeros);

        pthread_mutex_lock(&s->mu);
        if (rc < 0) {
            if (!s->err) {
                s->err = rc;
                snprintf(s->errmsg, sizeof(s->errmsg), "%s", vmseal_last_error());
            }
            s->stop = 1;
            pthread_cond_broadcast(&s->room);
        } else {
            s->done[idx] = 1;
        }
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
    /* The buffer held plaintext. */
    OPENSSL_cleanse(w->buf, CHUNK);
    return NULL;
}

static unsigned thread_count(const vmseal_disk_opts *o, uint64_t nchunks)
{
    long n = o && o->threads ? (long)o->threads : sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    if ((unsigned long)n > MAX_THREADS)
        n = MAX_THREADS;
    if ((uint64_t)n > nchunks)
        n = (long)nchunks;
    return n < 1 ? 1 : (unsigned)n;
}

/* About 16 checkpoints per run: at least one per work item, at most 256 MiB
 * of work lost to a crash. */
static uint64_t checkpoint_interval(uint64_t total)
{
    uint64_t iv = total / 16;
    if (iv < CHUNK)
        iv = CHUNK;
    if (iv > (256u << 20))
        iv = 256u << 20;
    return round_up(iv, CHUNK);
}

static void workers_free(struct worker *ws, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        vmseal_xts_free(ws[i].dec);
        vmseal_xts_free(ws[i].enc);
        free(ws[i].buf);
    }
    free(ws);
}

static void report(const bulk_job *j, uint64_t done)
{
    if (j->opts && j->opts->progress)
        j->opts->progress(done, j->total, j->opts->progress_ctx);
}

int vmseal_bulk_run(const bulk_job *j)
{
    if (j->total % VMSEAL_SECTOR_SIZE || j->start % VMSEAL_SECTOR_SIZE || j->start > j->total)
        return vmseal_fail(EINVAL, "bulk: unaligned range");
    report(j, j->start);
    if (j->start == j->total)
        return 0;

    struct shared s = {.job = j};
    s.nchunks = (j->total - j->start + CHUNK - 1) / CHUNK;
    s.done = calloc(s.nchunks, 1);
    unsigned nt = thread_count(j->opts, s.nchunks);
    struct worker *ws = calloc(nt, sizeof(*ws));
    if (!s.done || !ws) {
        free(s.done);
        free(ws);
        return vmseal_fail(ENOMEM, "bulk: out of memory");
    }
    int rc = 0;
    if (j->op != BULK_DECRYPT) {
        uint64_t lim = j->src_len < j->total ? j->src_len : j->total;
        rc = map_extents(j->src_fd, j->src_off + (j->start < lim ? j->start : lim),
                         j->src_off + lim, &s.ext, &s.n_ext);
    }
    for (unsigned i = 0; i < nt && rc == 0; i++) {
        ws[i].s = &s;
        if (posix_memalign((void **)&ws[i].buf, 4096, CHUNK) != 0) {
            ws[i].buf = NULL;
            rc = vmseal_fail(ENOMEM, "bulk: out of memory");
            break;
        }
        if (j->src_key)
            rc = vmseal_xts_new(j->src_key, &ws[i].dec);
        if (rc == 0 && j->dst_key)
            rc = vmseal_xts_new(j->dst_key, &ws[i].enc);
    }
    if (rc < 0) {
        workers_free(ws, nt);
        free(s.done);
        free(s.ext);
        return rc;
    }
    pthread_mutex_init(&s.mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s.cv, &ca);
    pthread_cond_init(&s.room, NULL);
    s.window = 8 + 2 * (uint64_t)nt;
    pthread_condattr_destroy(&ca);

    for (unsigned i = 0; i < nt; i++) {
        if (pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]) != 0) {
            pthread_mutex_lock(&s.mu);
            s.stop = 1;
            if (!s.err) {
                s.err = -EAGAIN;
                snprintf(s.errmsg, sizeof(s.errmsg), "bulk: cannot start a thread");
            }
            pthread_mutex_unlock(&s.mu);
            break;
        }
        ws[i].started = 1;
    }

    const uint64_t interval = checkpoint_interval(j->total);
    uint64_t prefix = 0;               /* items finished contiguously */
    uint64_t checkpointed = j->start;  /* bytes covered by the last checkpoint */
    int cancelled = 0;
    pthread_mutex_lock(&s.mu);
    for (;;) {
        uint64_t before = prefix;
        while (prefix < s.nchunks && s.done[prefix])
            prefix++;
        if (s.err)
            break;
        uint64_t bytes = j->start + prefix * CHUNK;
        if (bytes > j->total)
            bytes = j->total;
        int finished = prefix == s.nchunks;
        if (j->opts && j->opts->cancel && *j->opts->cancel && !s.stop) {
            s.stop = 1;
            pthread_cond_broadcast(&s.room);
        }
        /* After a cancel, wait until every item handed out is finished;
         * then the prefix covers all the work done and is checkpointed. */
        int busy = 0;
        for (uint64_t k = prefix; k < s.next && k < s.nchunks; k++)
            busy |= !s.done[k];
        int drained = s.stop && !busy;
        int ckpt_now = bytes > checkpointed &&
                       (bytes - checkpointed >= interval || finished || drained);
        if (prefix != before || ckpt_now) {
            pthread_mutex_unlock(&s.mu);
            int crc = 0;
            if (ckpt_now) {
                if (fdatasync(j->dst_fd) != 0)
                    crc = vmseal_fail(errno, "fdatasync of the output failed: %s", strerror(errno));
                else if (j->checkpoint)
                    crc = j->checkpoint(bytes, j->checkpoint_ctx);
                if (crc == 0)
                    checkpointed = bytes;
            }
            if (prefix != before && crc == 0)
                report(j, bytes);
            pthread_mutex_lock(&s.mu);
            if (crc < 0 && !s.err) {
                s.err = crc;
                s.stop = 1;
                snprintf(s.errmsg, sizeof(s.errmsg), "%s", vmseal_last_error());
                break;
            }
            /* Only now may the workers move on: they stay within `window`
             * items of what was last reported (so a cancel from the
             * progress callback stops within that distance). */
            if (j->opts && j->opts->cancel && *j->opts->cancel)
                s.stop = 1;
            s.prefix = prefix;
            pthread_cond_broadcast(&s.room);
        }
        if (finished)
            break;
        if (drained) {
            cancelled = 1;
            break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&s.cv, &s.mu, &ts);
    }
    s.stop = 1;
    pthread_cond_broadcast(&s.room);
    rc = s.err;
    pthread_mutex_unlock(&s.mu);
    for (unsigned i = 0; i < nt; i++)
        if (ws[i].started)
            pthread_join(ws[i].tid, NULL);
    if (rc < 0)
        vmseal_fail(rc, "%s", s.errmsg);
    else if (cancelled)
        rc = vmseal_fail(ECANCELED, "interrupted; run the same command again to resume");
    workers_free(ws, nt);
    free(s.done);
    free(s.ext);
    pthread_cond_destroy(&s.cv);
    pthread_cond_destroy(&s.room);
    pthread_mutex_destroy(&s.mu);
    return rc;
}
