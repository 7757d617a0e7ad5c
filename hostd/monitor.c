/* vmseal-hostd — the monitor's end of the privilege separation. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <vmseal/log.h>

#include "console_mux.h"
#include "monitor.h"
#include "privsep.h"
#include "strutil.h"

typedef struct job {
    struct job *next;
    uint8_t *data;      /* the REQUEST message */
    size_t len;
} job;

struct hostd_monitor {
    hostd_host *host;
    char manager_fp[65];
    ps_chan chan;
    void (*log)(void *arg, const char *line);
    void *log_arg;

    pthread_mutex_t lock;
    pthread_cond_t cond;          /* queue, ready, replies, death */
    int dead, stopping;
    char error[512];
    int ready, port;

    job *head, *tail;
    unsigned queued, queue_max;
    pthread_t reader;
    pthread_t *workers;
    unsigned nworkers;

    /* the one call to the manager in flight (REGISTER or FETCH_KEYS) */
    pthread_mutex_t call_lock;
    uint64_t call_id;
    uint32_t call_want;           /* PS_RESULT or PS_KEYS */
    uint8_t *reply;
    size_t reply_len;
    int have_reply;

    hostd_cmux *cmux;             /* interactive consoles (console_mux.h) */
};

/* Through the shared logger (include/vmseal/log.h), or to the config's
 * log hook (tests). */
static void mlog(hostd_monitor *m, vmseal_log_level level, const char *fmt, ...)
    VMSEAL_PRINTF(3, 4);
static void mlog(hostd_monitor *m, vmseal_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (m->log) {
        char line[1024];
        vsnprintf(line, sizeof(line), fmt, ap);
        m->log(m->log_arg, line);
    } else {
        vmseal_logv(level, fmt, ap);
    }
    va_end(ap);
}

/* The link is dead (lock held): wake everyone, shut the socket. */
static void die_locked(hostd_monitor *m, const char *why)
{
    if (m->dead)
        return;
    m->dead = 1;
    hostd_copy_str(m->error, sizeof(m->error), why);
    shutdown(m->chan.fd, SHUT_RDWR);
    pthread_cond_broadcast(&m->cond);
}

static int send_response(hostd_monitor *m, uint64_t id, int status, const char *text, size_t len)
{
    ps_buf b = {0};
    ps_put_u64(&b, id);
    ps_put_u32(&b, (uint32_t)status);
    ps_put_bytes(&b, text, len);
    int r = ps_send(&m->chan, PS_RESPONSE, &b);
    ps_buf_free(&b);
    return r;
}

static void send_error(hostd_monitor *m, uint64_t id, int status, const char *msg)
{
    json_t *j = json_pack("{s:s}", "error", msg);
    char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (send_response(m, id, status, t ? t : "", t ? strlen(t) : 0) < 0)
        mlog(m, VMSEAL_LOG_ERROR, "cannot answer the network process: %s", vmseal_last_error());
    free(t);
}

/* One REQUEST: hostd_host_handle() validates path and body strictly. */
static void serve(hostd_monitor *m, const uint8_t *data, size_t len)
{
    ps_request *rq = malloc(sizeof(*rq));
    if (!rq)
        return;
    if (ps_request_parse(data, len, rq) < 0) {   /* checked by the reader already */
        free(rq);
        return;
    }
    int status = 500;
    json_t *out = NULL;
    if (m->manager_fp[0] && strcmp(rq->fingerprint, m->manager_fp) != 0) {
        /* the child let through a certificate that is not the manager's */
        status = 403;
        out = json_pack("{s:s}", "error", "client certificate is not the manager's (fingerprint)");
    } else {
        hostd_host_handle(m->host, ps_method_name(rq->method), rq->path, (const char *)rq->body,
                           rq->body_len, rq->subject, &status, &out);
    }
    size_t n = out ? json_dumpb(out, NULL, 0, JSON_COMPACT) : 0;
    char *text = n ? malloc(n) : NULL;
    if (n && (!text || json_dumpb(out, text, n, JSON_COMPACT) != n))
        n = 0;
    json_decref(out);
    int r;
    if (out && n == 0)
        send_error(m, rq->id, 500, "out of memory"), r = 0;
    else if (n > PS_RESPONSE_MAX)
        send_error(m, rq->id, 500, "response too large"), r = 0;
    else
        r = send_response(m, rq->id, status, text, n);
    if (r < 0)
        mlog(m, VMSEAL_LOG_ERROR, "cannot answer the network process: %s", vmseal_last_error());
    if (text) {
        OPENSSL_cleanse(text, n);   /* a console log may be in it */
        free(text);
    }
    free(rq);
}

static void *worker_main(void *arg)
{
    hostd_monitor *m = arg;
    for (;;) {
        pthread_mutex_lock(&m->lock);
        while (!m->head && !m->stopping)
            pthread_cond_wait(&m->cond, &m->lock);
        job *j = m->head;
        if (!j) {
            pthread_mutex_unlock(&m->lock);
            return NULL;
        }
        m->head = j->next;
        if (!m->head)
            m->tail = NULL;
        m->queued--;
        pthread_mutex_unlock(&m->lock);
        serve(m, j->data, j->len);
        ps_msg_free(j->data, j->len);
        free(j);
    }
}

/* A REQUEST from the child: checked here, queued for a worker. */
static int on_request(hostd_monitor *m, uint8_t *data, size_t len)
{
    ps_request *rq = malloc(sizeof(*rq));
    if (!rq)
        return vmseal_fail(ENOMEM, "out of memory");
    int r = ps_request_parse(data, len, rq);
    uint64_t id = rq->id;
    free(rq);
    if (r < 0)
        return r;
    job *j = calloc(1, sizeof(*j));
    pthread_mutex_lock(&m->lock);
    if (!j || m->queued >= m->queue_max) {
        pthread_mutex_unlock(&m->lock);
        free(j);
        ps_msg_free(data, len);
        send_error(m, id, 503, "the host is busy; try again");
        return 0;
    }
    j->data = data;
    j->len = len;
    if (m->tail)
        m->tail->next = j;
    else
        m->head = j;
    m->tail = j;
    m->queued++;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    return 0;
}

static void *reader_main(void *arg)
{
    hostd_monitor *m = arg;
    for (;;) {
        uint32_t type = 0;
        uint8_t *data = NULL;
        size_t len = 0;
        int r = ps_recv(&m->chan, &type, &data, &len);
        if (r == -EPIPE) {
            pthread_mutex_lock(&m->lock);
            die_locked(m, "the network process closed the link");
            pthread_mutex_unlock(&m->lock);
            return NULL;
        }
        if (r == 0) {
            switch (type) {
            case PS_REQUEST:
                r = on_request(m, data, len);
                if (r == 0)
                    data = NULL;   /* queued, or answered and freed */
                break;
            case PS_READY: {
                ps_rd rd = {.p = data, .len = len};
                uint32_t port = ps_get_u32(&rd);
                if (ps_rd_end(&rd) < 0 || port == 0 || port > 65535) {
                    r = vmseal_fail(EPROTO, "privsep: malformed READY");
                    break;
                }
                pthread_mutex_lock(&m->lock);
                if (m->ready)
                    r = vmseal_fail(EPROTO, "privsep: READY twice");
                m->ready = 1;
                m->port = (int)port;
                pthread_cond_broadcast(&m->cond);
                pthread_mutex_unlock(&m->lock);
                break;
            }
            case PS_RESULT:
            case PS_KEYS: {
                ps_rd rd = {.p = data, .len = len};
                uint64_t id = ps_get_u64(&rd);
                if (rd.err) {
                    r = vmseal_fail(EPROTO, "privsep: malformed reply");
                    break;
                }
                pthread_mutex_lock(&m->lock);
                if (id == m->call_id && type == m->call_want && !m->have_reply) {
                    m->reply = data;
                    m->reply_len = len;
                    m->have_reply = 1;
                    data = NULL;
                    pthread_cond_broadcast(&m->cond);
                }
                pthread_mutex_unlock(&m->lock);
                if (data)
                    mlog(m, VMSEAL_LOG_WARNING,
                         "privsep: a reply nobody waits for (id %llu) dropped",
                         (unsigned long long)id);
                break;
            }
            case PS_CONSOLE_OPEN:
            case PS_CONSOLE_DATA:
            case PS_CONSOLE_CLOSE:
                r = hostd_cmux_handle(m->cmux, type, data, len);
                break;
            default:   /* a monitor-to-child type coming back */
                r = vmseal_fail(EPROTO, "privsep: message type %u not expected from the "
                                "network process", type);
            }
        }
        ps_msg_free(data, len);
        if (r < 0) {
            char why[600];
            snprintf(why, sizeof(why), "dropping the network process: %s", vmseal_last_error());
            mlog(m, VMSEAL_LOG_ERROR, "%s", why);
            pthread_mutex_lock(&m->lock);
            die_locked(m, why);
            pthread_mutex_unlock(&m->lock);
            return NULL;
        }
    }
}

int hostd_monitor_start(const hostd_monitor_config *cfg, hostd_monitor **out)
{
    *out = NULL;
    hostd_monitor *m = calloc(1, sizeof(*m));
    if (!m)
        return vmseal_fail(ENOMEM, "out of memory");
    snprintf(m->manager_fp, sizeof(m->manager_fp), "%s", cfg->manager_fingerprint ? cfg->manager_fingerprint : "");
    m->host = cfg->host;
    ps_chan_init(&m->chan, cfg->fd);
    m->log = cfg->log;
    m->log_arg = cfg->log_arg;
    m->queue_max = cfg->queue_max ? cfg->queue_max : 64;
    pthread_mutex_init(&m->lock, NULL);
    pthread_mutex_init(&m->call_lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    unsigned n = cfg->workers ? cfg->workers : 8;
    m->workers = calloc(n, sizeof(*m->workers));
    if (!m->workers || hostd_cmux_new(m->host, &m->chan, m->manager_fp, &m->cmux) < 0 ||
        pthread_create(&m->reader, NULL, reader_main, m) != 0) {
        hostd_cmux_free(m->cmux);
        free(m->workers);
        ps_chan_destroy(&m->chan);
        free(m);
        return vmseal_fail(ENOMEM, "cannot start the monitor threads");
    }
    for (; m->nworkers < n; m->nworkers++)
        if (pthread_create(&m->workers[m->nworkers], NULL, worker_main, m) != 0)
            break;
    *out = m;
    return 0;
}

void hostd_monitor_stop(hostd_monitor *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    m->stopping = 1;
    die_locked(m, "stopping");
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    pthread_join(m->reader, NULL);
    for (unsigned i = 0; i < m->nworkers; i++)
        pthread_join(m->workers[i], NULL);
    for (job *j = m->head, *nx; j; j = nx) {
        nx = j->next;
        ps_msg_free(j->data, j->len);
        free(j);
    }
    ps_msg_free(m->reply, m->reply_len);
    hostd_cmux_free(m->cmux);   /* the link is down: consoles end */
    close(m->chan.fd);
    ps_chan_destroy(&m->chan);
    pthread_cond_destroy(&m->cond);
    pthread_mutex_destroy(&m->lock);
    pthread_mutex_destroy(&m->call_lock);
    free(m->workers);
    free(m);
}

int hostd_monitor_alive(hostd_monitor *m)
{
    pthread_mutex_lock(&m->lock);
    int alive = !m->dead;
    pthread_mutex_unlock(&m->lock);
    return alive;
}

const char *hostd_monitor_error(hostd_monitor *m)
{
    return m->error;
}

static void deadline_in(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int hostd_monitor_wait_ready(hostd_monitor *m, int timeout_ms, volatile sig_atomic_t *stop,
                             int *port)
{
    int r = 0;
    pthread_mutex_lock(&m->lock);
    for (int waited = 0; !m->ready && !m->dead; waited += 100) {
        if (stop && *stop) {
            r = -EINTR;
            break;
        }
        if (waited >= timeout_ms) {
            r = -ETIMEDOUT;
            break;
        }
        struct timespec ts;
        deadline_in(&ts, 100);
        pthread_cond_timedwait(&m->cond, &m->lock, &ts);
    }
    if (r == 0 && !m->ready)
        r = -EPIPE;
    *port = m->port;
    pthread_mutex_unlock(&m->lock);
    if (r == -EPIPE)
        return vmseal_fail(EPIPE, "the network process ended: %s", m->error);
    if (r == -ETIMEDOUT)
        return vmseal_fail(ETIMEDOUT, "the network process did not start its HTTPS server");
    return r;
}

/* Send one call and wait (up to 2 minutes) for its reply. */
static int call(hostd_monitor *m, uint32_t type, uint32_t want, ps_buf *b, uint64_t id,
                uint8_t **reply, size_t *reply_len)
{
    pthread_mutex_lock(&m->lock);
    m->call_id = id;
    m->call_want = want;
    m->have_reply = 0;
    pthread_mutex_unlock(&m->lock);
    int r = ps_send(&m->chan, type, b);
    if (r < 0)
        return r;
    struct timespec ts;
    deadline_in(&ts, 120000);
    pthread_mutex_lock(&m->lock);
    while (!m->have_reply && !m->dead && r == 0)
        if (pthread_cond_timedwait(&m->cond, &m->lock, &ts) == ETIMEDOUT)
            r = -ETIMEDOUT;
    if (m->have_reply) {
        *reply = m->reply;
        *reply_len = m->reply_len;
        m->reply = NULL;
        m->have_reply = 0;
        r = 0;
    } else if (r == 0) {
        r = -EPIPE;
    }
    m->call_id = 0;
    pthread_mutex_unlock(&m->lock);
    if (r == -ETIMEDOUT)
        return vmseal_fail(ETIMEDOUT, "the network process did not answer");
    if (r == -EPIPE)
        return vmseal_fail(EPIPE, "the network process ended: %s", m->error);
    return r;
}

static uint64_t next_id(void)
{
    static uint64_t n;
    static pthread_mutex_t l = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&l);
    uint64_t id = ++n;
    pthread_mutex_unlock(&l);
    return id;
}

int hostd_monitor_register(hostd_monitor *m, const char *name, const char *url,
                           const char *datastore)
{
    pthread_mutex_lock(&m->call_lock);
    uint8_t pub[VMSEAL_KD_PUB_LEN];
    hostd_host_custody_public(m->host, pub);
    uint64_t id = next_id();
    ps_buf b = {0};
    ps_put_u64(&b, id);
    ps_put_str(&b, name);
    ps_put_str(&b, url);
    ps_put_str(&b, datastore);
    ps_put_bytes(&b, pub, sizeof(pub));
    uint8_t *rep = NULL;
    size_t rl = 0;
    int r = call(m, PS_REGISTER, PS_RESULT, &b, id, &rep, &rl);
    ps_buf_free(&b);
    pthread_mutex_unlock(&m->call_lock);
    if (r < 0)
        return r;
    ps_rd rd = {.p = rep, .len = rl};
    (void)ps_get_u64(&rd);
    uint32_t err = ps_get_u32(&rd);
    char msg[PS_TEXT_MAX + 1];
    ps_get_str(&rd, msg, sizeof(msg), PS_TEXT_MAX);
    r = ps_rd_end(&rd);
    ps_msg_free(rep, rl);
    if (r < 0)
        return vmseal_fail(EPROTO, "privsep: malformed RESULT");
    if (err)
        return vmseal_fail(err < 4096 ? (int)err : EIO, "%s", msg);
    return 0;
}

int hostd_monitor_fetch_keys(hostd_monitor *m)
{
    json_t *ids = hostd_host_kek_ids(m->host);
    size_t n = json_array_size(ids);
    if (n == 0) {
        json_decref(ids);
        return 0;
    }
    if (n > PS_KEYS_MAX)
        n = PS_KEYS_MAX;
    uint64_t id = next_id();
    ps_buf b = {0};
    ps_put_u64(&b, id);
    ps_put_u32(&b, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        ps_put_str(&b, json_string_value(json_array_get(ids, i)));
    json_decref(ids);
    pthread_mutex_lock(&m->call_lock);
    uint8_t *rep = NULL;
    size_t rl = 0;
    int r = call(m, PS_FETCH_KEYS, PS_KEYS, &b, id, &rep, &rl);
    pthread_mutex_unlock(&m->call_lock);
    ps_buf_free(&b);
    if (r < 0)
        return r;
    ps_keys k;
    r = ps_keys_parse(rep, rl, &k);
    ps_msg_free(rep, rl);
    if (r < 0)
        return r;
    if (k.err) {
        r = vmseal_fail(k.err < 4096 ? (int)k.err : EIO, "%s", k.message);
        ps_keys_free(&k);
        return r;
    }
    int stored = 0;
    for (size_t i = 0; i < k.nkeys; i++) {
        const char *kid = k.keys[i].kek_id;
        if (hostd_host_put_sealed(m->host, kid, k.keys[i].provider[0] ? k.keys[i].provider : NULL,
                                   k.keys[i].blob, VMSEAL_KD_BLOB_LEN) == 0) {
            stored++;
        } else if (vmseal_keysafe_kek_id_valid(kid)) {
            mlog(m, VMSEAL_LOG_WARNING, "%s", vmseal_last_error());
            hostd_host_note_key(m->host, kid, "the manager sent a sealed key that does not open "
                                 "here (sealed for another host or provider?)");
        }
    }
    for (size_t i = 0; i < k.ndenied; i++)
        if (vmseal_keysafe_kek_id_valid(k.denied[i]))
            hostd_host_note_key(m->host, k.denied[i],
                                 "the manager refused it (no VM of this host uses it there)");
    for (size_t i = 0; i < k.nfailed; i++)
        if (vmseal_keysafe_kek_id_valid(k.failed[i].kek_id)) {
            char msg[PS_TEXT_MAX + 100];
            snprintf(msg, sizeof(msg), "the manager could not get it from the key server: %s",
                     k.failed[i].reason[0] ? k.failed[i].reason : "no reason given");
            hostd_host_note_key(m->host, k.failed[i].kek_id, msg);
        }
    ps_keys_free(&k);
    return stored;
}
