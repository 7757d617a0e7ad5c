/* HTTPS server: OpenSSL terminates TLS, libmicrohttpd parses HTTP.
 *
 *   client ──TLS──> [pump thread: SSL_read/SSL_write] <──socketpair──> MHD
 *
 * The accept thread hands every TCP connection to a pump thread, which does
 * the TLS handshake, records the peer identity under the fd of the MHD end
 * of a fresh socketpair, gives that end to MHD (MHD_add_connection; MHD runs
 * one thread per connection, without a listen socket), then copies bytes
 * both ways until either side closes. MHD's connection-start notification
 * puts the connection record into the connection's socket context, where the
 * request handler finds the identity.
 *
 * Abuse limits (include/vmseal/conn_guard.h): the accept thread admits a
 * connection only within the per-address handshake cap and the totals,
 * shedding the biggest address's oldest handshaking or idle connections
 * when full; a pump thread exists only for an admitted connection, so
 * threads are bounded by max_connections. The handshake has its deadline
 * (handshake_timeout_ms); between requests MHD's connection timeout
 * (idle_timeout_s) applies, never while a handler runs (long polls).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/err.h>

#include <vmseal/conn_guard.h>
#include <vmseal/https_server.h>
#include <vmseal/websocket.h>

#define DEFAULT_MAX_BODY (1u << 20)
#define DEFAULT_MAX_CONNECTIONS 64
#define DEFAULT_HANDSHAKE_TIMEOUT_MS 5000
#define DEFAULT_IDLE_TIMEOUT_S 30
#define DEFAULT_MAX_HANDSHAKES_PER_ADDR 16
#define PUMP_BUF 16384

/* One accepted connection: the pump thread's, and once MHD started it, also
 * MHD's socket context (refs counts both). */
struct peer_info {
    vmseal_https_server *srv;
    int tcp_fd;                /* the accepted socket, open until the slot is
                                  released (the TLS session runs on a dup) */
    vmseal_conn_slot *slot;    /* admission slot, NULL once released */
    int busy;                  /* a handler runs (no idle timeout) */
    int upgraded;              /* a websocket owns it (no idle timeout here) */
    struct upgrade_ctx *up;    /* a websocket answer queued, not yet run */
    int refs;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int fd;                    /* MHD's end of the socketpair (lookup key) */
    char subject[512];
    char fingerprint[65];
    char remote[INET6_ADDRSTRLEN + 8];
    struct peer_info *next;    /* pending list */
};

/* At most one log line a second for a kind of event under attack. */
struct log_limit {
    time_t last;
    unsigned long suppressed;
};

struct vmseal_https_server {
    vmseal_https_config cfg;
    SSL_CTX *ctx;
    struct MHD_Daemon *mhd;
    int listen_fd;
    int port;
    int stop_pipe[2];
    pthread_t accept_thread;
    int accept_started;

    pthread_mutex_t lock;
    pthread_cond_t idle;
    unsigned active;           /* pump and websocket threads alive */
    int stopping;
    struct peer_info *pending; /* identities waiting for MHD's STARTED */
    vmseal_conn_guard *guard;  /* per-address admission */
    struct log_limit refused_log, shed_log;
};

/* Per-request state (MHD's con_cls). */
struct req_ctx {
    char *body;
    size_t len, cap;
    int too_large;
};


/* A queued upgrade: the peer's (p->up) until it runs or the connection
 * closes. */
struct upgrade_ctx {
    vmseal_https_server *srv;
    struct peer_info *p;
    void (*fn)(void *arg, int fd, const char *extra, size_t extra_len);
    void *arg;
    int started;
    struct MHD_UpgradeResponseHandle *urh;
    int fd;
    char *extra;
    size_t extra_len;
};

/* ------------------------------------------------------------ responses */

void vmseal_http_json(vmseal_http_response *resp, int status, json_t *json)
{
    if (resp->json)
        json_decref(resp->json);
    resp->status = status;
    resp->json = json;
}

void vmseal_http_error(vmseal_http_response *resp, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    vmseal_http_json(resp, status, json_pack("{s:s}", "error", msg));
}

void vmseal_http_add_header(vmseal_http_response *resp, const char *name, const char *value)
{
    if (resp->n_headers >= VMSEAL_HTTP_MAX_EXTRA_HEADERS)
        return;
    resp->headers[resp->n_headers].name = name;
    snprintf(resp->headers[resp->n_headers].value, sizeof(resp->headers[0].value), "%s", value);
    resp->n_headers++;
}

const char *vmseal_http_header(const vmseal_http_request *req, const char *name)
{
    return MHD_lookup_connection_value((struct MHD_Connection *)req->internal, MHD_HEADER_KIND, name);
}

const char *vmseal_http_query(const vmseal_http_request *req, const char *name)
{
    return MHD_lookup_connection_value((struct MHD_Connection *)req->internal,
                                       MHD_GET_ARGUMENT_KIND, name);
}

const char *vmseal_http_cookie(const vmseal_http_request *req, const char *name)
{
    return MHD_lookup_connection_value((struct MHD_Connection *)req->internal, MHD_COOKIE_KIND, name);
}

/* --------------------------------------------------- jansson wipe-on-free */

static void *wipe_malloc(size_t n)
{
    return malloc(n);
}

static void wipe_free(void *p)
{
    if (!p)
        return;
    OPENSSL_cleanse(p, malloc_usable_size(p));
    free(p);
}

void vmseal_json_wipe_on_free(void)
{
    json_set_alloc_funcs(wipe_malloc, wipe_free);
}

/* ------------------------------------------------------ connections */

static void conn_unref(vmseal_https_server *srv, struct peer_info *p)
{
    pthread_mutex_lock(&srv->lock);
    int last = --p->refs == 0;
    pthread_mutex_unlock(&srv->lock);
    if (last)
        free(p);
}

/* A handler starts or ends: an ACTIVE connection is never shed and has no
 * idle timeout in the pump. */
static void conn_set_busy(vmseal_https_server *srv, struct peer_info *p, int busy)
{
    if (!p)
        return;
    pthread_mutex_lock(&srv->lock);
    p->busy = busy;
    if (p->slot)
        vmseal_conn_guard_set_state(srv->guard, p->slot,
                                    busy ? VMSEAL_CONN_ACTIVE : VMSEAL_CONN_IDLE);
    pthread_mutex_unlock(&srv->lock);
}

static int conn_busy(vmseal_https_server *srv, struct peer_info *p)
{
    pthread_mutex_lock(&srv->lock);
    int b = p->busy || p->upgraded;
    pthread_mutex_unlock(&srv->lock);
    return b;
}

/* Log "what: why" at most once a second per kind; the others are counted
 * into the next line. */
static void log_limited(vmseal_https_server *srv, struct log_limit *ll, const char *remote,
                        const char *what, const char *why)
{
    if (!srv->cfg.log)
        return;
    time_t now = time(NULL);
    unsigned long more = 0;
    pthread_mutex_lock(&srv->lock);
    int emit = now != ll->last;
    if (emit) {
        more = ll->suppressed;
        ll->suppressed = 0;
        ll->last = now;
    } else {
        ll->suppressed++;
    }
    pthread_mutex_unlock(&srv->lock);
    if (!emit)
        return;
    char msg[400];
    if (more)
        snprintf(msg, sizeof(msg), "%s: %s (and %lu more since the last such line)", what, why,
                 more);
    else
        snprintf(msg, sizeof(msg), "%s: %s", what, why);
    srv->cfg.log(srv->cfg.log_arg, "TLS", msg, 0, "", remote);
}

/* ------------------------------------------------------- MHD callbacks */

static void upgrade_cb(void *cls, struct MHD_Connection *c, void *req_cls, const char *extra_in,
                       size_t extra_in_size, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh);

static enum MHD_Result queue(struct MHD_Connection *c, vmseal_http_response *r)
{
    struct MHD_Response *mr;
    if (r->upgrade && r->status == 101) {
        mr = MHD_create_response_for_upgrade(upgrade_cb, r->upgrade_arg);
    } else if (r->json) {
        char *txt = json_dumps(r->json, JSON_COMPACT);
        size_t n = txt ? strlen(txt) : 0;
        mr = MHD_create_response_from_buffer(n, txt ? txt : (char *)"", MHD_RESPMEM_MUST_COPY);
        if (txt) {
            OPENSSL_cleanse(txt, n);
            free(txt);
        }
        if (mr)
            MHD_add_response_header(mr, "Content-Type", "application/json");
    } else if (r->raw) {
        mr = MHD_create_response_from_buffer(r->raw_len, r->raw, MHD_RESPMEM_MUST_COPY);
        if (mr)
            MHD_add_response_header(mr, "Content-Type",
                                    r->content_type ? r->content_type : "application/octet-stream");
    } else {
        mr = MHD_create_response_from_buffer(0, (char *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (!mr)
        return MHD_NO;
    MHD_add_response_header(mr, "Cache-Control", "no-store");
    for (int i = 0; i < r->n_headers; i++)
        MHD_add_response_header(mr, r->headers[i].name, r->headers[i].value);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)r->status, mr);
    MHD_destroy_response(mr);
    return ret;
}

static void response_clear(vmseal_http_response *r)
{
    if (r->json)
        json_decref(r->json);
    if (r->raw) {
        OPENSSL_cleanse(r->raw, r->raw_len);
        free(r->raw);
    }
    memset(r, 0, sizeof(*r));
}

static struct peer_info *conn_peer(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? (struct peer_info *)ci->socket_context : NULL;
}

static void log_request(vmseal_https_server *srv, const char *method, const char *path, int status,
                        const struct peer_info *p)
{
    if (srv->cfg.log)
        srv->cfg.log(srv->cfg.log_arg, method, path, status, p ? p->subject : "",
                     p ? p->remote : "");
}

static enum MHD_Result reply_413(vmseal_https_server *srv, struct MHD_Connection *c,
                                 const char *method, const char *url)
{
    vmseal_http_response r = {0};
    vmseal_http_error(&r, 413, "request body larger than %zu bytes", srv->cfg.max_body);
    enum MHD_Result ret = queue(c, &r);
    response_clear(&r);
    log_request(srv, method, url, 413, conn_peer(c));
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    vmseal_https_server *srv = cls;
    struct req_ctx *rc = *con_cls;
    if (!rc) {
        rc = calloc(1, sizeof(*rc));
        if (!rc)
            return MHD_NO;
        *con_cls = rc;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (errno || *end || n > srv->cfg.max_body) {
                rc->too_large = 1;
                return reply_413(srv, c, method, url);
            }
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (rc->too_large)
            return MHD_YES;
        if (n > srv->cfg.max_body - rc->len) {
            rc->too_large = 1;
            OPENSSL_cleanse(rc->body, rc->cap);
            free(rc->body);
            rc->body = NULL;
            rc->len = rc->cap = 0;
            return MHD_YES;
        }
        if (rc->len + n + 1 > rc->cap) {
            size_t cap = rc->cap ? rc->cap : 4096;
            while (cap < rc->len + n + 1)
                cap *= 2;
            char *nb = malloc(cap);
            if (!nb)
                return MHD_NO;
            if (rc->body) {
                memcpy(nb, rc->body, rc->len);
                OPENSSL_cleanse(rc->body, rc->cap);
                free(rc->body);
            }
            rc->body = nb;
            rc->cap = cap;
        }
        memcpy(rc->body + rc->len, upload_data, n);
        rc->len += n;
        rc->body[rc->len] = '\0';
        return MHD_YES;
    }
    if (rc->too_large)
        return reply_413(srv, c, method, url);

    struct peer_info *p = conn_peer(c);
    vmseal_http_request req = {
        .method = method,
        .path = url,
        .body = rc->body ? rc->body : "",
        .body_len = rc->len,
        .peer_subject = p ? p->subject : "",
        .peer_fingerprint = p ? p->fingerprint : "",
        .remote_addr = p ? p->remote : "",
        .internal = c,
    };
    vmseal_http_response resp = {.status = 500};
    conn_set_busy(srv, p, 1);
    srv->cfg.handler(srv->cfg.handler_arg, &req, &resp);
    if (resp.status < 100 || resp.status > 599) {
        response_clear(&resp);
        vmseal_http_error(&resp, 500, "internal error: handler returned no status");
    }
    struct upgrade_ctx *up = NULL;
    if (resp.upgrade && resp.status == 101) {
        /* the peer holds it from now: run by upgrade_cb, or cancelled when
         * the connection closes first */
        up = calloc(1, sizeof(*up));
        if (up && p) {
            *up = (struct upgrade_ctx){.srv = srv, .p = p, .fn = resp.upgrade,
                                       .arg = resp.upgrade_arg, .fd = -1};
            pthread_mutex_lock(&srv->lock);
            if (p->up) {   /* one upgrade per connection */
                free(up);
                up = NULL;
            } else {
                p->up = up;
            }
            pthread_mutex_unlock(&srv->lock);
        } else {
            free(up);
            up = NULL;
        }
        if (!up) {
            resp.upgrade(resp.upgrade_arg, -1, NULL, 0);
            resp.upgrade = NULL;
            response_clear(&resp);
            vmseal_http_error(&resp, 503, "cannot switch protocols now");
        } else {
            resp.upgrade_arg = up;
        }
    }
    enum MHD_Result ret = queue(c, &resp);
    log_request(srv, method, url, resp.status, p);
    response_clear(&resp);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    conn_set_busy(cls, conn_peer(c), 0);
    struct req_ctx *rc = *con_cls;
    if (!rc)
        return;
    if (rc->body) {
        OPENSSL_cleanse(rc->body, rc->cap);
        free(rc->body);
    }
    free(rc);
    *con_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    vmseal_https_server *srv = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!ci)
            return;
        int fd = ci->connect_fd;
        pthread_mutex_lock(&srv->lock);
        for (struct peer_info **pp = &srv->pending; *pp; pp = &(*pp)->next) {
            if ((*pp)->fd == fd) {
                struct peer_info *p = *pp;
                *pp = p->next;
                p->next = NULL;
                p->refs++;
                *socket_context = p;
                break;
            }
        }
        pthread_mutex_unlock(&srv->lock);
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        struct peer_info *p = *socket_context;
        if (p) {
            pthread_mutex_lock(&srv->lock);
            struct upgrade_ctx *up = p->up;
            p->up = NULL;
            pthread_mutex_unlock(&srv->lock);
            if (up && !up->started) {   /* the switch never happened */
                up->fn(up->arg, -1, NULL, 0);
                free(up);
            }
            conn_unref(srv, p);
        }
        *socket_context = NULL;
    }
}

/* ----------------------------------------------------------- websocket */

int vmseal_http_websocket(const vmseal_http_request *req, vmseal_http_response *resp,
                          void (*fn)(void *arg, int fd, const char *extra, size_t extra_len),
                          void *arg)
{
    int st = vmseal_ws_check_request(req->method, vmseal_http_header(req, "Upgrade"),
                                     vmseal_http_header(req, "Connection"),
                                     vmseal_http_header(req, "Sec-WebSocket-Version"),
                                     vmseal_http_header(req, "Sec-WebSocket-Key"));
    char acc[29];
    if (st == 0 && vmseal_ws_accept_key(vmseal_http_header(req, "Sec-WebSocket-Key"), acc) < 0)
        st = 400;
    if (st) {
        vmseal_http_error(resp, st, "%s", vmseal_last_error());
        if (st == 426)
            vmseal_http_add_header(resp, "Sec-WebSocket-Version", "13");
        return -1;
    }
    if (resp->json)
        json_decref(resp->json);
    resp->json = NULL;
    resp->status = 101;
    vmseal_http_add_header(resp, "Upgrade", "websocket");
    vmseal_http_add_header(resp, "Sec-WebSocket-Accept", acc);
    resp->upgrade = fn;
    resp->upgrade_arg = arg;
    return 0;
}

static void *upgrade_main(void *arg)
{
    struct upgrade_ctx *up = arg;
    up->fn(up->arg, up->fd, up->extra, up->extra_len);
    if (up->extra) {
        OPENSSL_cleanse(up->extra, up->extra_len);
        free(up->extra);
    }
    vmseal_https_server *srv = up->srv;
    struct peer_info *p = up->p;
    MHD_upgrade_action(up->urh, MHD_UPGRADE_ACTION_CLOSE);
    free(up);
    conn_unref(srv, p);
    OPENSSL_thread_stop();
    pthread_mutex_lock(&srv->lock);
    srv->active--;
    pthread_cond_broadcast(&srv->idle);
    pthread_mutex_unlock(&srv->lock);
    return NULL;
}

static void upgrade_cb(void *cls, struct MHD_Connection *c, void *req_cls, const char *extra_in,
                       size_t extra_in_size, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
    (void)c;
    (void)req_cls;
    struct upgrade_ctx *up = cls;
    vmseal_https_server *srv = up->srv;
    struct peer_info *p = up->p;
    pthread_mutex_lock(&srv->lock);
    up->started = 1;
    if (p->up == up)
        p->up = NULL;
    p->upgraded = 1;
    p->refs++;           /* the session's */
    srv->active++;       /* stopping the server waits for it */
    if (p->slot)
        vmseal_conn_guard_set_state(srv->guard, p->slot, VMSEAL_CONN_ACTIVE);
    pthread_mutex_unlock(&srv->lock);
    up->urh = urh;
    up->fd = sock;
    if (extra_in_size) {
        up->extra = malloc(extra_in_size);
        if (up->extra) {
            memcpy(up->extra, extra_in, extra_in_size);
            up->extra_len = extra_in_size;
        }
    }
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &at, upgrade_main, up) != 0) {
        up->fn(up->arg, -1, NULL, 0);
        free(up->extra);
        MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
        free(up);
        conn_unref(srv, p);
        pthread_mutex_lock(&srv->lock);
        srv->active--;
        pthread_cond_broadcast(&srv->idle);
        pthread_mutex_unlock(&srv->lock);
    }
    pthread_attr_destroy(&at);
}

/* ---------------------------------------------------------------- pump */

static void unlink_pending(vmseal_https_server *srv, struct peer_info *p)
{
    pthread_mutex_lock(&srv->lock);
    for (struct peer_info **pp = &srv->pending; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            p->next = NULL;
            break;
        }
    }
    pthread_mutex_unlock(&srv->lock);
}

/* Copy between the TLS session and MHD's socketpair until both are done or
 * the server stops. MHD closes idle connections (idle_timeout_s between
 * requests); the pump gives up on its own only after a longer silence and
 * never while a handler runs. */
static void pump(vmseal_https_server *srv, struct peer_info *p, SSL *ssl, int sp)
{
    unsigned char *in = malloc(PUMP_BUF), *out = malloc(PUMP_BUF);
    size_t in_len = 0, in_off = 0, out_len = 0;
    int tls_eof = 0, tls_dead = 0, sp_eof = 0;
    int tfd = SSL_get_fd(ssl);
    int idle_ms = (int)srv->cfg.idle_timeout_s * 1000 + 30000;
    if (!in || !out)
        goto done;
    for (;;) {
        short tev, sev;
        int progress;
        do {
            progress = 0;
            tev = sev = 0;
            if (!tls_eof && in_len == 0) {
                size_t n = 0;
                ERR_clear_error();
                if (SSL_read_ex(ssl, in, PUMP_BUF, &n) == 1) {
                    in_len = n;
                    in_off = 0;
                    progress = 1;
                } else {
                    int e = SSL_get_error(ssl, 0);
                    if (e == SSL_ERROR_WANT_READ) {
                        tev |= POLLIN;
                    } else if (e == SSL_ERROR_WANT_WRITE) {
                        tev |= POLLOUT;
                    } else {
                        /* close_notify, a plain TCP close, or an error */
                        if (e != SSL_ERROR_ZERO_RETURN)
                            tls_dead = 1;
                        tls_eof = 1;
                        ERR_clear_error();
                        shutdown(sp, SHUT_WR);
                        progress = 1;
                    }
                }
            }
            if (in_len) {
                ssize_t w = send(sp, in + in_off, in_len, MSG_NOSIGNAL);
                if (w > 0) {
                    in_off += (size_t)w;
                    in_len -= (size_t)w;
                    progress = 1;
                } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
                    sev |= POLLOUT;
                } else {
                    goto done; /* MHD closed the connection */
                }
            }
            if (!sp_eof && out_len == 0) {
                ssize_t r = recv(sp, out, PUMP_BUF, 0);
                if (r > 0) {
                    out_len = (size_t)r;
                    progress = 1;
                } else if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
                    sev |= POLLIN;
                } else {
                    sp_eof = 1;
                    progress = 1;
                }
            }
            if (out_len) {
                if (tls_dead)
                    goto done;
                size_t n = 0;
                ERR_clear_error();
                if (SSL_write_ex(ssl, out, out_len, &n) == 1) {
                    out_len = 0;
                    progress = 1;
                } else {
                    int e = SSL_get_error(ssl, 0);
                    if (e == SSL_ERROR_WANT_READ)
                        tev |= POLLIN;
                    else if (e == SSL_ERROR_WANT_WRITE)
                        tev |= POLLOUT;
                    else
                        goto done;
                }
            }
            if (sp_eof && out_len == 0)
                goto done;      /* MHD is finished with this connection */
            if (tls_dead && in_len == 0 && out_len == 0 && sp_eof)
                goto done;
        } while (progress);

        struct pollfd pfd[3] = {
            {.fd = tfd, .events = tev},
            {.fd = sp, .events = sev},
            {.fd = srv->stop_pipe[0], .events = POLLIN},
        };
        int r = poll(pfd, 3, idle_ms);
        if (r == 0 && !conn_busy(srv, p))
            goto done;
        if (r < 0 && errno != EINTR)
            goto done;
        if (pfd[2].revents)
            goto done;
    }
done:
    if (in)
        OPENSSL_cleanse(in, PUMP_BUF);
    if (out)
        OPENSSL_cleanse(out, PUMP_BUF);
    free(in);
    free(out);
    if (tls_dead)
        SSL_set_quiet_shutdown(ssl, 1);
}

static void format_addr(const struct sockaddr_storage *ss, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        port = ntohs(a->sin_port);
        snprintf(buf, len, "%s:%d", host, port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        port = ntohs(a->sin6_port);
        snprintf(buf, len, "[%s]:%d", host, port);
    } else {
        snprintf(buf, len, "?");
    }
}

static void *pump_main(void *argp)
{
    struct peer_info *p = argp;
    vmseal_https_server *srv = p->srv;
    SSL *ssl = NULL;
    int sp[2] = {-1, -1};
    /* A write to a connection that was shed or reset (TLS 1.3 tickets,
     * close_notify) must not kill a process that did not ignore SIGPIPE:
     * blocked here, such a signal stays pending in this thread and goes
     * with it. */
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);
    format_addr(&p->addr, p->remote, sizeof(p->remote));

    /* The handshake runs on a dup: vmseal_tls_accept closes its descriptor
     * on failure, while tcp_fd stays open for the guard until the slot is
     * released. */
    int hs = fcntl(p->tcp_fd, F_DUPFD_CLOEXEC, 0);
    if (hs < 0)
        goto out;
    if (vmseal_tls_accept(srv->ctx, hs, srv->cfg.handshake_timeout_ms, &ssl) < 0) {
        /* vmseal_tls_accept closed hs. */
        if (vmseal_conn_guard_was_shed(srv->guard, p->slot))
            log_limited(srv, &srv->shed_log, p->remote, "handshake dropped",
                        "room made for other addresses (connection limits)");
        else if (srv->cfg.log)
            srv->cfg.log(srv->cfg.log_arg, "TLS", vmseal_last_error(), 0, "", p->remote);
        goto out;
    }
    conn_set_busy(srv, p, 0);   /* HANDSHAKE -> IDLE */
    if (vmseal_tls_peer_subject(ssl, p->subject, sizeof(p->subject)) < 0)
        p->subject[0] = '\0';
    if (p->subject[0] == '\0' || vmseal_tls_peer_fingerprint(ssl, p->fingerprint) < 0)
        p->fingerprint[0] = '\0';
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0)
        goto out;
    int fl = fcntl(sp[1], F_GETFL);
    fcntl(sp[1], F_SETFL, fl | O_NONBLOCK);
    p->fd = sp[0];
    pthread_mutex_lock(&srv->lock);
    p->next = srv->pending;
    srv->pending = p;
    pthread_mutex_unlock(&srv->lock);
    /* MHD owns sp[0] from here on (and closes it even on failure). */
    if (MHD_add_connection(srv->mhd, sp[0], (const struct sockaddr *)&p->addr, p->addrlen) ==
        MHD_YES)
        pump(srv, p, ssl, sp[1]);
    /* MHD starts the connection in its own thread (STARTED takes p off the
     * pending list) or, failing, closes its end without starting it. */
    unlink_pending(srv, p);
out:
    if (sp[1] >= 0)
        close(sp[1]);
    vmseal_tls_close(ssl);
    ERR_clear_error();
    OPENSSL_thread_stop();
    pthread_mutex_lock(&srv->lock);
    vmseal_conn_slot *slot = p->slot;
    p->slot = NULL;
    pthread_mutex_unlock(&srv->lock);
    vmseal_conn_guard_release(srv->guard, slot);
    close(p->tcp_fd);
    conn_unref(srv, p);
    pthread_mutex_lock(&srv->lock);
    srv->active--;
    pthread_cond_broadcast(&srv->idle);
    pthread_mutex_unlock(&srv->lock);
    return NULL;
}

/* -------------------------------------------------------------- accept */

/* One accepted socket: admit it (or refuse it at once) and start its pump
 * thread. */
static void admit(vmseal_https_server *srv, int fd, const struct sockaddr_storage *addr,
                  socklen_t addrlen, pthread_attr_t *attr)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct peer_info *p = calloc(1, sizeof(*p));
    if (!p) {
        close(fd);
        return;
    }
    const char *why = NULL;
    p->slot = vmseal_conn_guard_admit(srv->guard, fd, (const struct sockaddr *)addr, addrlen, &why);
    if (!p->slot) {
        close(fd);
        format_addr(addr, p->remote, sizeof(p->remote));
        log_limited(srv, &srv->refused_log, p->remote, "connection refused",
                    why ? why : "connection limits");
        free(p);
        return;
    }
    p->srv = srv;
    p->tcp_fd = fd;
    p->refs = 1;
    p->fd = -1;
    p->addr = *addr;
    p->addrlen = addrlen;
    pthread_mutex_lock(&srv->lock);
    srv->active++;
    pthread_mutex_unlock(&srv->lock);
    pthread_t t;
    if (pthread_create(&t, attr, pump_main, p) != 0) {
        vmseal_conn_guard_release(srv->guard, p->slot);
        close(fd);
        free(p);
        pthread_mutex_lock(&srv->lock);
        srv->active--;
        pthread_cond_broadcast(&srv->idle);
        pthread_mutex_unlock(&srv->lock);
    }
}

static void *accept_main(void *arg)
{
    vmseal_https_server *srv = arg;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (;;) {
        struct pollfd pfd[2] = {
            {.fd = srv->listen_fd, .events = POLLIN},
            {.fd = srv->stop_pipe[0], .events = POLLIN},
        };
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pfd[1].revents)
            break;
        if (!(pfd[0].revents & POLLIN))
            continue;
        /* Drain the backlog (the listening socket is non-blocking): under a
         * flood the kernel queue must not fill, or other clients' SYNs are
         * dropped and retried only a second later. */
        for (int i = 0; i < 256; i++) {
            struct sockaddr_storage addr;
            socklen_t addrlen = sizeof(addr);
            int fd = accept4(srv->listen_fd, (struct sockaddr *)&addr, &addrlen, SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EMFILE || errno == ENFILE)
                    usleep(100000);
                break;
            }
            admit(srv, fd, &addr, addrlen, &attr);
        }
    }
    pthread_attr_destroy(&attr);
    return NULL;
}

/* ---------------------------------------------------------- lifecycle */

static int listen_on(const char *addr, int port, int *port_out)
{
    struct sockaddr_storage ss = {0};
    socklen_t sl;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        sl = sizeof(*a4);
    } else if (inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        sl = sizeof(*a6);
    } else {
        return vmseal_fail(EINVAL, "https: bind address %s is not an IP address", addr);
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return vmseal_fail(errno, "https: socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0) {
        int e = errno;
        close(fd);
        return vmseal_fail(e, "https: cannot bind %s:%d: %s", addr, port, strerror(e));
    }
    if (listen(fd, 1024) != 0) {
        int e = errno;
        close(fd);
        return vmseal_fail(e, "https: listen: %s", strerror(e));
    }
    sl = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *port_out = ntohs(ss.ss_family == AF_INET ? a4->sin_port : a6->sin6_port);
    return fd;
}

int vmseal_https_server_start(const vmseal_https_config *cfg, vmseal_https_server **out)
{
    *out = NULL;
    if (!cfg->handler)
        return vmseal_fail(EINVAL, "https: no request handler");
    vmseal_https_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return vmseal_fail(ENOMEM, "https: out of memory");
    srv->cfg = *cfg;
    srv->cfg.tls.cert_file = srv->cfg.tls.key_file = srv->cfg.tls.ca_file = NULL;
    srv->cfg.bind_addr = NULL;
    if (!srv->cfg.max_body)
        srv->cfg.max_body = DEFAULT_MAX_BODY;
    if (!srv->cfg.max_connections)
        srv->cfg.max_connections = DEFAULT_MAX_CONNECTIONS;
    if (srv->cfg.handshake_timeout_ms <= 0)
        srv->cfg.handshake_timeout_ms = DEFAULT_HANDSHAKE_TIMEOUT_MS;
    if (!srv->cfg.idle_timeout_s)
        srv->cfg.idle_timeout_s = DEFAULT_IDLE_TIMEOUT_S;
    if (!srv->cfg.max_handshakes || srv->cfg.max_handshakes > srv->cfg.max_connections)
        srv->cfg.max_handshakes = srv->cfg.max_connections > 1 ? srv->cfg.max_connections / 2 : 1;
    if (!srv->cfg.max_handshakes_per_addr)
        srv->cfg.max_handshakes_per_addr = DEFAULT_MAX_HANDSHAKES_PER_ADDR;
    if (srv->cfg.max_handshakes_per_addr > srv->cfg.max_handshakes)
        srv->cfg.max_handshakes_per_addr = srv->cfg.max_handshakes;
    srv->listen_fd = -1;
    srv->stop_pipe[0] = srv->stop_pipe[1] = -1;
    pthread_mutex_init(&srv->lock, NULL);
    pthread_cond_init(&srv->idle, NULL);
    int rc;

    vmseal_conn_limits lim = {.max_conns = srv->cfg.max_connections,
                              .max_handshakes = srv->cfg.max_handshakes,
                              .max_handshakes_per_addr = srv->cfg.max_handshakes_per_addr};
    srv->guard = vmseal_conn_guard_new(&lim);
    if (!srv->guard) {
        rc = vmseal_fail(ENOMEM, "https: out of memory");
        goto fail;
    }
    /* Every HTTPS server (manager, host agent) offers TLS 1.2 with forward
     * secrecy and AEAD only, as kmsd does; TLS 1.3 stays. */
    vmseal_tls_config tls = cfg->tls;
    tls.fs_aead_only = 1;
    srv->ctx = vmseal_tls_server_ctx_new(&tls);
    if (!srv->ctx) {
        rc = vmseal_fail(EINVAL, "https: %s", vmseal_last_error());
        goto fail;
    }
    if (pipe2(srv->stop_pipe, O_CLOEXEC) != 0) {
        rc = vmseal_fail(errno, "https: pipe: %s", strerror(errno));
        goto fail;
    }
    rc = listen_on(cfg->bind_addr ? cfg->bind_addr : "127.0.0.1", cfg->port, &srv->port);
    if (rc < 0)
        goto fail;
    srv->listen_fd = rc;

    srv->mhd = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
            MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC | MHD_ALLOW_UPGRADE,
        0, NULL, NULL, on_request, srv,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
        /* Admission is the guard's (it sheds; MHD would only refuse, and
         * counts a closed connection until its cleanup runs): MHD's limit
         * is a backstop above the guard's bound on live connections. */
        MHD_OPTION_CONNECTION_LIMIT, 2 * (unsigned)srv->cfg.max_connections + 8,
        /* Between requests, and while a request is being read; not while
         * a handler runs (one thread per connection). */
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)srv->cfg.idle_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)65536,
        MHD_OPTION_END);
    if (!srv->mhd) {
        rc = vmseal_fail(EIO, "https: cannot start the HTTP engine (libmicrohttpd)");
        goto fail;
    }
    int e = pthread_create(&srv->accept_thread, NULL, accept_main, srv);
    if (e != 0) {
        rc = vmseal_fail(e, "https: cannot start the accept thread");
        goto fail;
    }
    srv->accept_started = 1;
    *out = srv;
    return 0;
fail:
    vmseal_https_server_stop(srv);
    return rc;
}

int vmseal_https_server_port(const vmseal_https_server *srv)
{
    return srv->port;
}

void vmseal_https_server_stop(vmseal_https_server *srv)
{
    if (!srv)
        return;
    pthread_mutex_lock(&srv->lock);
    srv->stopping = 1;
    pthread_mutex_unlock(&srv->lock);
    if (srv->stop_pipe[1] >= 0) {
        char b = 1;
        ssize_t w = write(srv->stop_pipe[1], &b, 1);
        (void)w;
    }
    if (srv->accept_started)
        pthread_join(srv->accept_thread, NULL);
    if (srv->listen_fd >= 0)
        close(srv->listen_fd);
    /* Pumps see the stop pipe and close their ends; handshakes in progress
     * are cut short. */
    if (srv->guard)
        vmseal_conn_guard_shutdown(srv->guard, 1u << VMSEAL_CONN_HANDSHAKE);
    pthread_mutex_lock(&srv->lock);
    while (srv->active > 0)
        pthread_cond_wait(&srv->idle, &srv->lock);
    pthread_mutex_unlock(&srv->lock);
    if (srv->mhd)
        MHD_stop_daemon(srv->mhd);   /* frees the connections MHD held */
    if (srv->stop_pipe[0] >= 0)
        close(srv->stop_pipe[0]);
    if (srv->stop_pipe[1] >= 0)
        close(srv->stop_pipe[1]);
    SSL_CTX_free(srv->ctx);
    vmseal_conn_guard_free(srv->guard);
    pthread_cond_destroy(&srv->idle);
    pthread_mutex_destroy(&srv->lock);
    free(srv);
}
