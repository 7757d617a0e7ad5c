/* vmseal-managerd — the event log forwarded to a syslog collector (see
 * syslog_fwd.h).
 *
 * Message (RFC 5424), one per event:
 *   <PRI>1 TIME HOST vmseal-managerd - ACTION [vmseal@32473 id="" user=""
 *     source="" object="" result="" hash=""] BOM old=JSON new=JSON
 * PRI is facility authpriv (10) with severity notice (5) for result "ok" and
 * warning (4) for "denied" and "failed" (85 and 84). TIME is the event's
 * time (UTC, seconds). The SD-PARAM values escape '"', '\' and ']'; MSG is
 * UTF-8 and starts with the BOM. Invalid UTF-8 and control characters
 * become '?'. A message is at most SYSLOG_MAX_MSG bytes: long values are
 * cut and end with "...", and truncated="1" is added.
 *
 * Delivery: the thread reads up to SYSLOG_BATCH events after the cursor
 * (id order; the manager's single store connection and lock make ids commit
 * in order), writes them framed as "LEN SP MSG", waits until the
 * collector's TCP acknowledged every byte (SIOCOUTQ is 0), then stores the
 * cursor. A connection the collector closed is noticed before a batch is
 * written to it. Any failure closes the connection and retries from the
 * cursor after a back-off (1 s doubling up to syslog_retry_max).
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <vmseal/common.h>
#include <vmseal/conffile.h>
#include <vmseal/tls.h>

#include "managerd.h"
#include "syslog_fwd.h"

#define CONNECT_TIMEOUT_MS 5000
#define IO_TIMEOUT_MS 10000
#define IDLE_WAIT_S 5
#define SETTLE_MS 1000
#define STR_(x) #x
#define STR(x) STR_(x)

/* ------------------------------------------------------------ target */

int syslog_target_parse(const char *s, syslog_target *out)
{
    memset(out, 0, sizeof(*out));
    if (!strncmp(s, "tcp://", 6))
        out->tls = 0;
    else if (!strncmp(s, "tls://", 6))
        out->tls = 1;
    else
        return vmseal_fail(EINVAL, "syslog_target must be tcp://HOST:PORT or tls://HOST:PORT");
    const char *h = s + 6, *colon;
    size_t hl;
    if (*h == '[') {
        const char *end = strchr(h, ']');
        if (!end || end[1] != ':')
            return vmseal_fail(EINVAL, "syslog_target: bad [IPv6]:PORT in %s", s);
        h++;
        hl = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(h, ':');
        if (!colon)
            return vmseal_fail(EINVAL, "syslog_target: no port in %s", s);
        hl = (size_t)(colon - h);
        if (memchr(h, ':', hl))
            return vmseal_fail(EINVAL, "syslog_target: write an IPv6 address as [ADDR]:PORT");
    }
    if (hl == 0 || hl >= sizeof(out->host) || memchr(h, '/', hl) || memchr(h, '@', hl))
        return vmseal_fail(EINVAL, "syslog_target: bad host in %s", s);
    long port;
    if (vmseal_conffile_int(colon + 1, 1, 65535, &port) < 0)
        return vmseal_fail(EINVAL, "syslog_target: bad port in %s", s);
    memcpy(out->host, h, hl);
    out->host[hl] = '\0';
    out->port = (int)port;
    return 0;
}

/* ------------------------------------------------------------ format */

typedef struct obuf {
    char *p;
    size_t len, cap;
} obuf;

static void put(obuf *b, const char *s, size_t n)
{
    if (n > b->cap - b->len)
        n = b->cap - b->len;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void puts_(obuf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (n bytes left); 0 if invalid
 * (overlong forms, surrogates and code points above U+10FFFF are). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0], cp, min;
    size_t len;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, cp = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* What the character at s becomes in the message: into o (up to 4 bytes),
 * returns its length; *used is how many input bytes it takes. */
static size_t encode_char(const unsigned char *s, size_t n, int sd, char o[4], size_t *used)
{
    size_t l = utf8_seq(s, n);
    if (l == 0) {
        *used = 1;
        o[0] = '?';
        return 1;
    }
    *used = l;
    if (l > 1) {
        memcpy(o, s, l);
        return l;
    }
    unsigned char c = s[0];
    if (c < 0x20 || c == 0x7F) {
        o[0] = '?';
        return 1;
    }
    if (sd && (c == '"' || c == '\\' || c == ']')) {
        o[0] = '\\';
        o[1] = (char)c;
        return 2;
    }
    o[0] = (char)c;
    return 1;
}

static size_t encoded_len(const char *s, int sd)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), total = 0;
    while (n) {
        char o[4];
        size_t used;
        total += encode_char(p, n, sd, o, &used);
        p += used;
        n -= used;
    }
    return total;
}

/* Append s (escaped for a PARAM-VALUE when sd) in at most max bytes; a
 * value that does not fit is cut at a character and ends with "...".
 * Returns 1 when it was cut. */
static int put_value(obuf *b, const char *s, size_t max, int sd)
{
    int cut = encoded_len(s, sd) > max;
    size_t limit = cut ? (max >= 3 ? max - 3 : 0) : max, done = 0;
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    while (n) {
        char o[4];
        size_t used, k = encode_char(p, n, sd, o, &used);
        if (done + k > limit)
            break;
        put(b, o, k);
        done += k;
        p += used;
        n -= used;
    }
    if (cut)
        put(b, "...", max >= 3 ? 3 : 0);
    return cut;
}

/* A header field of printable US-ASCII (RFC 5424 PRINTUSASCII), at most
 * max characters; other bytes become '_'; empty is the NILVALUE "-". */
static void put_token(obuf *b, const char *s, size_t max)
{
    size_t n = 0;
    for (; s && s[n] && n < max; n++) {
        unsigned char c = (unsigned char)s[n];
        char ch = c >= 33 && c <= 126 ? (char)c : '_';
        put(b, &ch, 1);
    }
    if (n == 0)
        put(b, "-", 1);
}

static void put_param(obuf *b, const char *name, const char *v, size_t max)
{
    put(b, " ", 1);
    puts_(b, name);
    put(b, "=\"", 2);
    put_value(b, v ? v : "", max, 1);
    put(b, "\"", 1);
}

size_t syslog_format(const syslog_event *e, const char *hostname, char *out, size_t cap)
{
    obuf b = {.p = out, .len = 0, .cap = cap > SYSLOG_MAX_MSG ? SYSLOG_MAX_MSG : (cap ? cap - 1 : 0)};
    int ok = e->result && !strcmp(e->result, "ok");
    char pri[16];
    snprintf(pri, sizeof(pri), "<%d>1 ", SYSLOG_FACILITY * 8 + (ok ? 5 : 4));
    puts_(&b, pri);
    /* TIMESTAMP: the event's time */
    char ts[32] = "-", *end = NULL;
    long long t = e->time ? strtoll(e->time, &end, 10) : -1;
    struct tm tm;
    time_t tt = (time_t)t;
    if (e->time && end && !*end && t >= 0 && gmtime_r(&tt, &tm) && tm.tm_year + 1900 <= 9999)
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    puts_(&b, ts);
    put(&b, " ", 1);
    put_token(&b, hostname, 255);
    puts_(&b, " " SYSLOG_APP_NAME " - ");
    put_token(&b, e->action, 32);   /* MSGID */
    /* STRUCTURED-DATA: every value bounded, so the header and SD take at
     * most ~1.6 KB and MSG keeps the rest. */
    puts_(&b, " [" SYSLOG_SD_ID);
    char id[24];
    snprintf(id, sizeof(id), "%lld", e->id ? atoll(e->id) : 0LL);
    put_param(&b, "id", id, 24);
    put_param(&b, "user", e->user, 256);
    put_param(&b, "source", e->source, 128);
    put_param(&b, "object", e->object, 512);
    put_param(&b, "result", e->result, 32);
    if (e->hash)
        put_param(&b, "hash", e->hash, 128);
    /* MSG: old and new value share what is left */
    static const char trunc_param[] = " truncated=\"1\"";
    static const char bom[] = "\xEF\xBB\xBF";
    const char *ov = e->old_value ? e->old_value : "null", *nv = e->new_value ? e->new_value : "null";
    size_t fixed = b.len + strlen(trunc_param) + strlen("] ") + strlen(bom) + strlen("old=") +
                   strlen(" new=");
    size_t room = b.cap > fixed ? b.cap - fixed : 0;
    size_t lo = encoded_len(ov, 0), ln = encoded_len(nv, 0), mo = lo, mn = ln;
    if (lo + ln > room) {
        size_t half = room / 2;
        if (lo <= half)
            mn = room - lo;
        else if (ln <= half)
            mo = room - ln;
        else
            mo = half, mn = room - half;
    }
    if (mo < lo || mn < ln)
        puts_(&b, trunc_param);
    puts_(&b, "] ");
    puts_(&b, bom);
    puts_(&b, "old=");
    put_value(&b, ov, mo, 0);
    puts_(&b, " new=");
    put_value(&b, nv, mn, 0);
    if (cap)
        out[b.len] = '\0';
    return b.len;
}

/* ------------------------------------------------------------ forwarder */

struct syslog_fwd {
    manager *m;
    syslog_target t;
    char url[300];
    char hostname[256];
    SSL_CTX *ctx;
    int stopfd;                /* eventfd: readable once stopping */
    int stop;                  /* under m->lock */
    pthread_t thread;
    int fd;                    /* connection, -1 when none */
    SSL *ssl;
    long long cursor;          /* last id delivered */
    int cursor_loaded;
    int backoff_s, retry_max_s;
    int catching_up;           /* connected with a backlog; log when it is gone */
    char *batch;
    size_t batch_cap;
    char msg[SYSLOG_MAX_MSG + 1];
};

static int stopping(syslog_fwd *f)
{
    pthread_mutex_lock(&f->m->lock);
    int s = f->stop || f->m->stopping;
    pthread_mutex_unlock(&f->m->lock);
    return s;
}

/* Wait up to ms for fd to be ready for events (fd < 0: just wait); 0 when
 * ready, -ETIMEDOUT, or -ECANCELED once stopping. */
static int wait_fd(syslog_fwd *f, int fd, short events, int ms, short *revents)
{
    struct pollfd p[2] = {{.fd = f->stopfd, .events = POLLIN}, {.fd = fd, .events = events}};
    int r;
    do
        r = poll(p, fd >= 0 ? 2 : 1, ms);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return -errno;
    if (p[0].revents)
        return -ECANCELED;
    if (revents)
        *revents = p[1].revents;
    return r == 0 ? -ETIMEDOUT : 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int left_ms(int64_t deadline)
{
    int64_t l = deadline - now_ms();
    return l < 0 ? 0 : (int)l;
}

static void conn_close(syslog_fwd *f)
{
    if (f->ssl) {
        vmseal_tls_close(f->ssl);   /* closes the socket too */
        f->ssl = NULL;
    } else if (f->fd >= 0) {
        close(f->fd);
    }
    f->fd = -1;
}

static int tcp_connect(syslog_fwd *f)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", f->t.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int gr = getaddrinfo(f->t.host, port, &hints, &res);
    if (gr != 0)
        return vmseal_fail(EHOSTUNREACH, "cannot resolve %s: %s", f->t.host, gai_strerror(gr));
    int64_t deadline = now_ms() + CONNECT_TIMEOUT_MS;
    int last = ECONNREFUSED;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0) {
            last = errno;
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            freeaddrinfo(res);
            return fd;
        }
        last = errno;
        if (errno == EINPROGRESS) {
            short rev = 0;
            int w = wait_fd(f, fd, POLLOUT, left_ms(deadline), &rev);
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            if (w == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0) {
                freeaddrinfo(res);
                return fd;
            }
            last = w < 0 ? -w : soerr;
        }
        close(fd);
        if (last == ECANCELED)
            break;
    }
    freeaddrinfo(res);
    return vmseal_fail(last, "cannot connect to %s:%d: %s", f->t.host, f->t.port,
                       last == ETIMEDOUT ? "timed out" : strerror(last));
}

static int tls_error(const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "connection closed";
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    return vmseal_fail(EPIPE, "%s: %s", what, buf);
}

/* With TLS 1.3 the client's handshake ends before the server has checked
 * the client's certificate: a collector that refuses it says so (alert)
 * only afterwards, and what was written until then is lost. Wait for the
 * server's first records (session tickets, sent once it accepted us) or
 * its alert, at most SETTLE_MS (a server that sends nothing costs that). */
static int tls_settle(syslog_fwd *f)
{
    if (SSL_version(f->ssl) != TLS1_3_VERSION)
        return 0;
    int64_t deadline = now_ms() + SETTLE_MS;
    for (;;) {
        short rev = 0;
        int w = wait_fd(f, f->fd, POLLIN, left_ms(deadline), &rev);
        if (w == -ETIMEDOUT)
            return 0;
        if (w < 0)
            return vmseal_fail(-w, "interrupted");
        char tmp[512];
        size_t n = 0;
        ERR_clear_error();
        if (SSL_read_ex(f->ssl, tmp, sizeof(tmp), &n) == 1)
            return 0;
        int err = SSL_get_error(f->ssl, 0);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
            ERR_clear_error();
            if (SSL_get_session(f->ssl) && SSL_SESSION_is_resumable(SSL_get_session(f->ssl)))
                return 0;   /* a ticket: the server accepted the handshake */
            continue;
        }
        SSL_set_quiet_shutdown(f->ssl, 1);
        return tls_error("the collector closed the connection after the handshake");
    }
}

static int conn_open(syslog_fwd *f)
{
    if (f->t.tls) {
        int rc = vmseal_tls_connect(f->ctx, f->t.host, f->t.port, CONNECT_TIMEOUT_MS, NULL, &f->ssl);
        if (rc < 0)
            return rc;
        f->fd = SSL_get_fd(f->ssl);
        rc = tls_settle(f);
        if (rc < 0)
            conn_close(f);
        return rc;
    }
    int fd = tcp_connect(f);
    if (fd < 0)
        return fd;
    f->fd = fd;
    return 0;
}

/* Whether the collector still has the connection open: it never sends
 * anything (plain TCP) or only TLS records such as session tickets, so
 * end-of-stream, a reset or a close_notify mean it is gone. */
static int conn_alive(syslog_fwd *f)
{
    struct pollfd p = {.fd = f->fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) < 0)
        return -errno;
    if (p.revents & (POLLERR | POLLHUP | POLLRDHUP))
        return vmseal_fail(ECONNRESET, "the collector closed the connection");
    if (!(p.revents & POLLIN))
        return 0;
    char tmp[512];
    for (;;) {
        if (f->ssl) {
            size_t n = 0;
            ERR_clear_error();
            if (SSL_read_ex(f->ssl, tmp, sizeof(tmp), &n) == 1)
                continue;
            int err = SSL_get_error(f->ssl, 0);
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
                ERR_clear_error();
                return 0;
            }
            ERR_clear_error();
            SSL_set_quiet_shutdown(f->ssl, 1);
            return vmseal_fail(ECONNRESET, "the collector closed the connection");
        }
        ssize_t n = recv(f->fd, tmp, sizeof(tmp), MSG_DONTWAIT);
        if (n > 0)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n < 0 && errno == EINTR)
            continue;
        return vmseal_fail(ECONNRESET, "the collector closed the connection");
    }
}

static int conn_write(syslog_fwd *f, const char *p, size_t len)
{
    int64_t deadline = now_ms() + IO_TIMEOUT_MS;
    while (len) {
        short want = POLLOUT;
        if (f->ssl) {
            size_t n = 0;
            ERR_clear_error();
            if (SSL_write_ex(f->ssl, p, len, &n) == 1) {
                p += n, len -= n;
                continue;
            }
            int err = SSL_get_error(f->ssl, 0);
            if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
                SSL_set_quiet_shutdown(f->ssl, 1);
                return tls_error("TLS write failed");
            }
            want = err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        } else {
            ssize_t n = send(f->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n >= 0) {
                p += n, len -= (size_t)n;
                continue;
            }
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return vmseal_fail(errno, "write failed: %s", strerror(errno));
        }
        int w = wait_fd(f, f->fd, want, left_ms(deadline), NULL);
        if (w == -ETIMEDOUT)
            return vmseal_fail(ETIMEDOUT, "write timed out (the collector does not read)");
        if (w < 0)
            return vmseal_fail(-w, "write interrupted: %s", strerror(-w));
    }
    return 0;
}

/* Wait until the collector's TCP acknowledged every byte written, so a
 * collector that died with our data unread is noticed before the cursor
 * moves. */
static int conn_acked(syslog_fwd *f)
{
    int64_t deadline = now_ms() + IO_TIMEOUT_MS;
    for (;;) {
        int q = 0;
        if (ioctl(f->fd, SIOCOUTQ, &q) < 0)
            return 0;   /* not a socket that tells: trust the write */
        if (q == 0)
            return 0;
        short rev = 0;
        int w = wait_fd(f, f->fd, POLLRDHUP, 10, &rev);
        if (w == 0 && (rev & (POLLERR | POLLHUP | POLLRDHUP)))
            return vmseal_fail(ECONNRESET, "the collector closed the connection with %d bytes unread", q);
        if (w < 0 && w != -ETIMEDOUT)
            return vmseal_fail(-w, "interrupted");
        if (now_ms() >= deadline)
            return vmseal_fail(ETIMEDOUT, "the collector did not acknowledge %d bytes", q);
    }
}

/* ---- the cursor and the spool (the events table) */

static int cursor_load(syslog_fwd *f)
{
    store_rows *r = NULL;
    int rc = store_execv(f->m->db, &r, "SELECT value FROM meta WHERE key = 'syslog.sent'", STORE_END);
    if (rc < 0)
        return rc;
    const char *v = store_rows_get(r, 0, 0);
    f->cursor = v ? atoll(v) : 0;
    store_rows_free(r);
    f->cursor_loaded = 1;
    return 0;
}

static int cursor_save(syslog_fwd *f)
{
    char v[32];
    snprintf(v, sizeof(v), "%lld", f->cursor);
    int rc = store_execv(f->m->db, NULL, "UPDATE meta SET value = $1 WHERE key = 'syslog.sent'", v,
                         STORE_END);
    if (rc == 0)
        rc = store_execv(f->m->db, NULL, "INSERT INTO meta (key, value) VALUES ('syslog.sent', $1)", v,
                         STORE_END);
    return rc < 0 ? rc : 0;
}

static long long backlog(syslog_fwd *f)
{
    char s[32];
    snprintf(s, sizeof(s), "%lld", f->cursor);
    store_rows *r = NULL;
    long long n = -1;
    if (store_execv(f->m->db, &r, "SELECT COUNT(*) FROM events WHERE id > $1", s, STORE_END) >= 0 &&
        store_rows_get(r, 0, 0))
        n = atoll(store_rows_get(r, 0, 0));
    store_rows_free(r);
    return n;
}

static int fetch(syslog_fwd *f, store_rows **r)
{
    char s[32];
    snprintf(s, sizeof(s), "%lld", f->cursor);
    return store_execv(f->m->db, r,
                       "SELECT id, time, user_name, source, action, object, old_value, new_value, "
                       "result, hash FROM events WHERE id > $1 ORDER BY id LIMIT " STR(SYSLOG_BATCH),
                       s, STORE_END);
}

/* ---- the thread */

static void fail_retry(syslog_fwd *f, const char *what)
{
    char err[512];
    snprintf(err, sizeof(err), "%s", vmseal_last_error());
    conn_close(f);
    if (stopping(f))
        return;
    long long n = f->cursor_loaded ? backlog(f) : -1;
    if (n >= 0)
        mgr_log("syslog: %s %s: %s; %lld event%s waiting, next try in %d s", what, f->url, err, n,
                n == 1 ? "" : "s", f->backoff_s);
    else
        mgr_log("syslog: %s %s: %s; next try in %d s", what, f->url, err, f->backoff_s);
    (void)wait_fd(f, -1, 0, f->backoff_s * 1000, NULL);
    f->backoff_s = f->backoff_s * 2 > f->retry_max_s ? f->retry_max_s : f->backoff_s * 2;
}

static void idle_wait(syslog_fwd *f)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += IDLE_WAIT_S;
    pthread_mutex_lock(&f->m->lock);
    /* A wake-up between our query and this wait is missed; the timeout
     * bounds the delay it causes. */
    if (!f->stop && !f->m->stopping)
        pthread_cond_timedwait(&f->m->changed, &f->m->lock, &ts);
    pthread_mutex_unlock(&f->m->lock);
}

static int send_batch(syslog_fwd *f, store_rows *r, long long *last)
{
    size_t n = store_rows_count(r), len = 0;
    for (size_t i = 0; i < n; i++) {
        syslog_event e = {
            .id = store_rows_get(r, i, 0), .time = store_rows_get(r, i, 1),
            .user = store_rows_get(r, i, 2), .source = store_rows_get(r, i, 3),
            .action = store_rows_get(r, i, 4), .object = store_rows_get(r, i, 5),
            .old_value = store_rows_get(r, i, 6), .new_value = store_rows_get(r, i, 7),
            .result = store_rows_get(r, i, 8), .hash = store_rows_get(r, i, 9),
        };
        size_t ml = syslog_format(&e, f->hostname, f->msg, sizeof(f->msg));
        int k = snprintf(f->batch + len, f->batch_cap - len, "%zu ", ml);
        if (k < 0 || (size_t)k + ml > f->batch_cap - len)
            return vmseal_fail(ENOSPC, "syslog: batch buffer too small");
        len += (size_t)k;
        memcpy(f->batch + len, f->msg, ml);
        len += ml;
        *last = atoll(e.id ? e.id : "0");
    }
    int rc = conn_write(f, f->batch, len);
    if (rc >= 0)
        rc = conn_acked(f);
    return rc;
}

static void *fwd_main(void *arg)
{
    syslog_fwd *f = arg;
    while (!stopping(f)) {
        if (!f->cursor_loaded && cursor_load(f) < 0) {
            fail_retry(f, "cannot read the cursor for");
            continue;
        }
        store_rows *r = NULL;
        if (fetch(f, &r) < 0) {
            fail_retry(f, "cannot read the events for");
            continue;
        }
        if (store_rows_count(r) == 0) {
            store_rows_free(r);
            if (f->catching_up) {
                mgr_log("syslog: %s has every event up to id %lld", f->url, f->cursor);
                f->catching_up = 0;
            }
            idle_wait(f);
            continue;
        }
        if (f->fd >= 0 && conn_alive(f) < 0) {
            store_rows_free(r);
            mgr_log("syslog: %s: %s; reconnecting", f->url, vmseal_last_error());
            conn_close(f);
            continue;
        }
        if (f->fd < 0) {
            if (conn_open(f) < 0) {
                store_rows_free(r);
                fail_retry(f, "cannot connect to");
                continue;
            }
            long long n = backlog(f);
            mgr_log("syslog: connected to %s, %lld event%s to send (after id %lld)", f->url, n,
                    n == 1 ? "" : "s", f->cursor);
            f->catching_up = 1;
        }
        long long last = f->cursor;
        int rc = send_batch(f, r, &last);
        store_rows_free(r);
        if (rc < 0) {
            fail_retry(f, "cannot send to");
            continue;
        }
        f->backoff_s = 1;
        if (last > f->cursor) {
            f->cursor = last;
            if (cursor_save(f) < 0)
                mgr_log("syslog: cannot store the cursor (id %lld): %s; those events may be sent "
                        "again after a restart", f->cursor, vmseal_last_error());
        }
    }
    conn_close(f);
    return NULL;
}

static void fwd_free(syslog_fwd *f)
{
    if (!f)
        return;
    conn_close(f);
    SSL_CTX_free(f->ctx);
    if (f->stopfd >= 0)
        close(f->stopfd);
    free(f->batch);
    free(f);
}

int syslog_fwd_start(manager *m, syslog_fwd **out)
{
    *out = NULL;
    const mgr_config *c = m->cfg;
    if (!c->syslog_target || !*c->syslog_target)
        return 0;
    syslog_fwd *f = calloc(1, sizeof(*f));
    if (!f)
        return vmseal_fail(ENOMEM, "out of memory");
    f->m = m;
    f->fd = -1;
    f->stopfd = -1;
    f->backoff_s = 1;
    f->retry_max_s = c->syslog_retry_max_s > 0 ? c->syslog_retry_max_s : 30;
    int rc = syslog_target_parse(c->syslog_target, &f->t);
    if (rc < 0)
        goto fail;
    snprintf(f->url, sizeof(f->url), "%s", c->syslog_target);
    if (c->syslog_hostname && *c->syslog_hostname)
        snprintf(f->hostname, sizeof(f->hostname), "%s", c->syslog_hostname);
    else if (gethostname(f->hostname, sizeof(f->hostname) - 1) < 0)
        snprintf(f->hostname, sizeof(f->hostname), "-");
    if (f->t.tls) {
        if (!c->syslog_ca) {
            rc = vmseal_fail(EINVAL, "syslog_target %s needs syslog_ca", f->url);
            goto fail;
        }
        vmseal_tls_config tc = {.ca_file = c->syslog_ca, .cert_file = c->syslog_cert,
                                .key_file = c->syslog_key};
        f->ctx = vmseal_tls_client_ctx_new(&tc);
        if (!f->ctx) {
            rc = vmseal_fail(EINVAL, "syslog: %s", vmseal_last_error());
            goto fail;
        }
    }
    f->batch_cap = (size_t)SYSLOG_BATCH * (SYSLOG_MAX_MSG + 16);
    f->batch = malloc(f->batch_cap);
    f->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!f->batch || f->stopfd < 0) {
        rc = vmseal_fail(ENOMEM, "syslog: out of memory or file descriptors");
        goto fail;
    }
    int e = pthread_create(&f->thread, NULL, fwd_main, f);
    if (e != 0) {
        rc = vmseal_fail(e, "cannot start the syslog forwarder");
        goto fail;
    }
    mgr_log("syslog: forwarding events to %s (%s, facility authpriv, hostname %s)", f->url,
            f->t.tls ? "TLS" : "TCP", f->hostname);
    *out = f;
    return 0;
fail:
    fwd_free(f);
    return rc;
}

void syslog_fwd_stop(syslog_fwd *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->m->lock);
    f->stop = 1;
    pthread_cond_broadcast(&f->m->changed);
    pthread_mutex_unlock(&f->m->lock);
    uint64_t one = 1;
    if (write(f->stopfd, &one, sizeof(one)) < 0)
        mgr_log("syslog: cannot signal the forwarder: %s", strerror(errno));
    pthread_join(f->thread, NULL);
    fwd_free(f);
}
