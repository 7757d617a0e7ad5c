/* The audit chain in a PostgreSQL store: a bounded queue that kmsd_audit()
 * fills, a thread that appends it to the database in batches (the chain
 * head row lock serialises all nodes), and the verifier of the chain read
 * back from the database. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <vmseal/common.h>

#include "audit.h"
#include "log.h"
#include "store.h"

#define BATCH 64
#define RETRY_NS 500000000LL
#define GATHER_NS 5000000LL   /* a batch waits up to 5 ms for more records */
#define VERIFY_CHUNK 1000

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;          /* CLOCK_MONOTONIC */
    int running, stop;
    int64_t stop_deadline;
    pthread_t th;
    kmsd_store *st;
    char node[KMSD_NODE_MAX];
    char *items[KMSD_AUDIT_DB_QUEUE];
    size_t lens[KMSD_AUDIT_DB_QUEUE];
    size_t head, n;
    int failing;
    unsigned long overflow;
} q = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void wait_until(int64_t t)
{
    struct timespec ts = {.tv_sec = t / 1000000000, .tv_nsec = t % 1000000000};
    pthread_cond_timedwait(&q.cond, &q.lock, &ts);
}

static void to_stderr(const char *line, size_t n)
{
    char buf[4096];
    int k = snprintf(buf, sizeof(buf), "%.*s\n", (int)(n < sizeof(buf) - 2 ? n : sizeof(buf) - 2),
                     line);
    ssize_t w = write(STDERR_FILENO, buf, (size_t)k);
    (void)w;
}

int kmsd_audit_db_submit(const char *ts, const char *rest, size_t rest_len)
{
    pthread_mutex_lock(&q.lock);
    if (!q.running) {
        pthread_mutex_unlock(&q.lock);
        return 0;
    }
    size_t cap = strlen(ts) + strlen(q.node) + rest_len + 32;
    char *line = malloc(cap);
    int n = line ? snprintf(line, cap, "%s audit node=%s %.*s", ts, q.node, (int)rest_len, rest)
                 : 0;
    if (line && q.n < KMSD_AUDIT_DB_QUEUE) {
        size_t at = (q.head + q.n) % KMSD_AUDIT_DB_QUEUE;
        q.items[at] = line;
        q.lens[at] = (size_t)n;
        q.n++;
        if (q.n == 1 || q.n == BATCH) /* the first of a batch, or a full one */
            pthread_cond_signal(&q.cond);
        pthread_mutex_unlock(&q.lock);
        return 1;
    }
    unsigned long o = ++q.overflow;
    pthread_mutex_unlock(&q.lock);
    if (o == 1 || o % 1000 == 0)
        kmsd_err("audit: %d records wait for the database already (%lu overflowed so far); "
                 "this record is written to stderr instead of the chain",
                 KMSD_AUDIT_DB_QUEUE, o);
    if (line)
        to_stderr(line, (size_t)n);
    else
        to_stderr(rest, rest_len);
    free(line);
    return 1;
}

static int append_batch(const char *const *bodies, const size_t *lens, size_t k, uint64_t *last)
{
    kmsd_db *db;
    int r = kmsd_store_write_begin(q.st, &db);
    if (r < 0)
        return r;
    r = kmsd_db_audit_append(db, bodies, lens, k, last);
    int c = kmsd_store_end(q.st, db, r == 0);
    return r < 0 ? r : c;
}

static void *flusher(void *arg)
{
    (void)arg;
    int64_t retry_at = 0;
    pthread_mutex_lock(&q.lock);
    for (;;) {
        while (q.n == 0 && !q.stop)
            pthread_cond_wait(&q.cond, &q.lock);
        if (q.n == 0)
            break; /* stopping, all written */
        if (q.stop && mono_ns() > q.stop_deadline)
            break;
        if (retry_at && mono_ns() < retry_at) {
            wait_until(q.stop && q.stop_deadline < retry_at ? q.stop_deadline : retry_at);
            continue;
        }
        /* one transaction per record would cost as much as the operations
         * themselves: let a batch gather (records are queued already, the
         * operations do not wait for this) */
        if (q.n < BATCH && !q.stop && !retry_at) {
            int64_t until = mono_ns() + GATHER_NS;
            while (q.n < BATCH && !q.stop && mono_ns() < until)
                wait_until(until);
        }
        size_t k = q.n < BATCH ? q.n : BATCH;
        const char *bodies[BATCH];
        size_t lens[BATCH];
        for (size_t i = 0; i < k; i++) {
            bodies[i] = q.items[(q.head + i) % KMSD_AUDIT_DB_QUEUE];
            lens[i] = q.lens[(q.head + i) % KMSD_AUDIT_DB_QUEUE];
        }
        pthread_mutex_unlock(&q.lock);
        uint64_t last = 0;
        int r = append_batch(bodies, lens, k, &last);
        char why[300];
        snprintf(why, sizeof(why), "%s", r < 0 ? vmseal_last_error() : "");
        pthread_mutex_lock(&q.lock);
        if (r == 0) {
            for (size_t i = 0; i < k; i++) {
                free(q.items[q.head]);
                q.items[q.head] = NULL;
                q.head = (q.head + 1) % KMSD_AUDIT_DB_QUEUE;
            }
            q.n -= k;
            retry_at = 0;
            if (q.failing)
                kmsd_info("audit: records are written to the database chain again (up to "
                          "seq=%" PRIu64 ")", last);
            q.failing = 0;
        } else {
            if (!q.failing)
                kmsd_err("audit: cannot append to the chain in the database (%s); %zu records "
                         "wait, retried every %lld ms", why, q.n, RETRY_NS / 1000000);
            q.failing = 1;
            retry_at = mono_ns() + RETRY_NS;
        }
    }
    size_t left = q.n;
    if (left)
        kmsd_err("audit: %zu records could not be written to the database; they follow on "
                 "stderr", left);
    while (q.n) {
        to_stderr(q.items[q.head], q.lens[q.head]);
        free(q.items[q.head]);
        q.items[q.head] = NULL;
        q.head = (q.head + 1) % KMSD_AUDIT_DB_QUEUE;
        q.n--;
    }
    pthread_mutex_unlock(&q.lock);
    return NULL;
}

int kmsd_audit_db_start(kmsd_store *st, const char *node)
{
    pthread_mutex_lock(&q.lock);
    if (q.running) {
        pthread_mutex_unlock(&q.lock);
        return vmseal_fail(EBUSY, "audit: the database sink runs already");
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q.cond, &ca);
    pthread_condattr_destroy(&ca);
    q.st = st;
    snprintf(q.node, sizeof(q.node), "%s", node);
    q.stop = 0;
    q.head = q.n = 0;
    q.failing = 0;
    q.overflow = 0;
    int r = pthread_create(&q.th, NULL, flusher, NULL);
    if (r != 0) {
        pthread_mutex_unlock(&q.lock);
        return vmseal_fail(r, "audit: cannot start its thread: %s", strerror(r));
    }
    q.running = 1;
    pthread_mutex_unlock(&q.lock);
    return 0;
}

void kmsd_audit_db_stop(int timeout_ms)
{
    pthread_mutex_lock(&q.lock);
    if (!q.running) {
        pthread_mutex_unlock(&q.lock);
        return;
    }
    q.stop = 1;
    q.stop_deadline = mono_ns() + (int64_t)timeout_ms * 1000000;
    pthread_cond_broadcast(&q.cond);
    pthread_mutex_unlock(&q.lock);
    pthread_join(q.th, NULL);
    pthread_mutex_lock(&q.lock);
    q.running = 0;
    pthread_cond_destroy(&q.cond);
    pthread_mutex_unlock(&q.lock);
}

/* ---- verifying the chain in the database ---- */

typedef struct {
    kmsd_audit_verifier *v;
    uint64_t last, head;
    int bad;
} vctx;

static int feed_row(void *ctx, uint64_t seq, const char *line, size_t len)
{
    vctx *c = ctx;
    if (seq > c->head)
        return 0; /* appended after we read the head */
    c->last = seq;
    if (kmsd_audit_verify_line(c->v, line, len, 1) < 0) {
        c->bad = 1;
        return -ECANCELED;
    }
    return 0;
}

int kmsd_audit_verify_db(kmsd_store *st, kmsd_audit_verifier *v)
{
    kmsd_audit_verify_init(v);
    kmsd_db *db;
    unsigned char head_hash[32];
    vctx c = {.v = v};
    int r = kmsd_store_read_begin(st, &db);
    if (r == 0) {
        r = kmsd_db_audit_head(db, &c.head, head_hash);
        (void)kmsd_store_end(st, db, 0);
    }
    if (r < 0)
        return -2;
    while (c.last < c.head) {
        uint64_t before = c.last;
        if ((r = kmsd_store_read_begin(st, &db)) < 0)
            return -2;
        r = kmsd_db_audit_read(db, c.last, VERIFY_CHUNK, feed_row, &c);
        (void)kmsd_store_end(st, db, 0);
        if (c.bad)
            return -1;
        if (r < 0)
            return -2;
        if (c.last == before)
            break; /* nothing more in the table */
    }
    if (kmsd_audit_verify_end(v) < 0)
        return -1;
    if (v->records != c.head) {
        v->failed = 1;
        v->bad_record = v->records + 1;
        snprintf(v->error, sizeof(v->error),
                 "the chain head says %" PRIu64 " records but the table holds %" PRIu64
                 " in order — records deleted from the end or the head row edited",
                 c.head, v->records);
        return -1;
    }
    if (c.head && CRYPTO_memcmp(v->prev, head_hash, 32) != 0) {
        v->failed = 1;
        v->bad_record = c.head;
        snprintf(v->error, sizeof(v->error),
                 "record %" PRIu64 ": its hash is not the one in the chain head row — the last "
                 "record or the head row was replaced", c.head);
        return -1;
    }
    return 0;
}
