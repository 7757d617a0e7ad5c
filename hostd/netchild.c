/* vmseal-hostd — the network child (netchild.h). */
#include <dirent.h>
#include <fcntl.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <poll.h>

#include <vmseal/https_server.h>
#include <vmseal/log.h>
#include <vmseal/websocket.h>

#include "manager_link.h"
#include "netchild.h"
#include "privsep.h"
#include "strutil.h"

typedef struct pending {
    struct pending *next;
    uint64_t id;
    int done;
    int status;
    uint8_t *text;          /* the RESPONSE message; JSON at text + off */
    size_t text_len, off, msg_len;
} pending;

/* An interactive console (console_mux.h on the monitor's side): the
 * manager's websocket <-> PS_CONSOLE_* messages. Output from the monitor
 * waits in a bounded queue: a websocket that does not keep up is closed. */
#define NC_CONSOLE_QUEUE (1u << 20)
#define NC_CONSOLE_SEND_MS 5000       /* the manager must take a frame within */
#define NC_CONSOLE_IDLE_MS (3600 * 1000) /* no byte either way: closed */
#define NC_CONSOLE_OPEN_MS 10000

typedef struct nsess {
    struct nsess *next;
    uint64_t id;
    int answered, status;          /* CONSOLE_OPENED */
    char msg[PS_TEXT_MAX + 1];
    int closed;                    /* the monitor closed it (msg: why) */
    int overflow;
    uint8_t *q;                    /* guest output for the websocket */
    size_t qlen;
    int wake[2];
} nsess;

typedef struct mgr_job {
    uint32_t type;
    uint8_t *data;
    size_t len;
} mgr_job;

#define MGR_QUEUE 4

static struct {
    const hostd_net_config *cfg;
    ps_chan chan;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int dead;
    uint64_t next_id;
    pending *pend;
    mgr_job q[MGR_QUEUE];
    unsigned nq;
    hostd_manager_link link;
    nsess *cons;
} N = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

/* The shared logger, tagged vmseal-hostd[network] (hostd_net_main). */
#define nlog(level, ...) vmseal_log(VMSEAL_LOG_##level, __VA_ARGS__)

static void die(const char *why)
{
    pthread_mutex_lock(&N.lock);
    if (!N.dead)
        vmseal_log(*N.cfg->stopping ? VMSEAL_LOG_INFO : VMSEAL_LOG_ERROR,
                   "link to the monitor lost: %s", why);
    N.dead = 1;
    shutdown(N.chan.fd, SHUT_RDWR);
    pthread_cond_broadcast(&N.cond);
    pthread_mutex_unlock(&N.lock);
}

/* ------------------------------------------------------------- HTTPS */

static void access_log(void *arg, const char *method, const char *path, int status,
                       const char *peer, const char *remote)
{
    (void)arg;
    if (status == 0)
        nlog(WARNING, "TLS handshake from %s failed: %s", remote, path);
    else
        nlog(INFO, "%s %s %s -> %d%s%s", remote, method, path, status, *peer ? " cert " : "", peer);
}


/* ----------------------------------------------------------- consoles */

static void nsess_wake(nsess *s)
{
    if (write(s->wake[1], "x", 1) < 0) {
        /* full: the session wakes anyway */
    }
}

static void nsess_unlink_free(nsess *s)
{
    pthread_mutex_lock(&N.lock);
    for (nsess **pp = &N.cons; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    pthread_mutex_unlock(&N.lock);
    if (s->q) {
        OPENSSL_cleanse(s->q, NC_CONSOLE_QUEUE);   /* guest output */
        free(s->q);
    }
    for (int i = 0; i < 2; i++)
        if (s->wake[i] >= 0)
            close(s->wake[i]);
    free(s);
}

static int send_console_close(uint64_t id, const char *why)
{
    ps_buf b = {0};
    ps_put_u64(&b, id);
    char m[PS_TEXT_MAX + 1];
    hostd_copy_str(m, sizeof(m), why);
    ps_put_str(&b, m);
    int r = ps_send(&N.chan, PS_CONSOLE_CLOSE, &b);
    ps_buf_free(&b);
    return r;
}

static int send_console_data(uint64_t id, const uint8_t *p, size_t n)
{
    while (n) {
        size_t k = n < PS_CONSOLE_CHUNK ? n : PS_CONSOLE_CHUNK;
        ps_buf b = {0};
        ps_put_u64(&b, id);
        ps_put_bytes(&b, p, k);
        int r = ps_send(&N.chan, PS_CONSOLE_DATA, &b);
        ps_buf_free(&b);
        if (r < 0)
            return r;
        p += k;
        n -= k;
    }
    return 0;
}

/* The websocket, in its own thread (https_server.h); fd -1: never opened. */
static void console_session(void *arg, int fd, const char *extra, size_t extra_len)
{
    nsess *s = arg;
    if (fd < 0) {
        (void)send_console_close(s->id, "the websocket did not open");
        nsess_unlink_free(s);
        return;
    }
    vmseal_ws *ws = vmseal_ws_new(fd, NULL, 0, VMSEAL_WS_MAX_PAYLOAD);
    uint8_t *out = malloc(NC_CONSOLE_QUEUE);
    char why[300] = "closed";
    int tell = 1;
    if (!ws || !out || (extra_len && vmseal_ws_feed(ws, extra, extra_len) < 0)) {
        snprintf(why, sizeof(why), "out of memory");
        goto done;
    }
    struct timespec last;
    clock_gettime(CLOCK_MONOTONIC, &last);
    for (;;) {
        int moved = 0;
        vmseal_ws_frame f;
        int r = vmseal_ws_recv(ws, &f, NC_CONSOLE_SEND_MS);
        if (r < 0) {
            snprintf(why, sizeof(why), "manager side: %s", vmseal_last_error());
            break;
        }
        if (r > 0 && f.opcode == VMSEAL_WS_CLOSE) {
            vmseal_ws_close(ws, VMSEAL_WS_NORMAL, "");
            snprintf(why, sizeof(why), "closed by the manager");
            break;
        }
        if (r > 0 && f.len && send_console_data(s->id, f.payload, f.len) < 0) {
            snprintf(why, sizeof(why), "the monitor is gone");
            vmseal_ws_close(ws, VMSEAL_WS_GOING_AWAY, "the host agent is stopping");
            tell = 0;
            break;
        }
        moved |= r > 0;
        pthread_mutex_lock(&N.lock);
        size_t n = s->qlen;
        memcpy(out, s->q, n);
        OPENSSL_cleanse(s->q, n);
        s->qlen = 0;
        int closed = s->closed, overflow = s->overflow, dead = N.dead;
        char msg[PS_TEXT_MAX + 1];
        hostd_copy_str(msg, sizeof(msg), s->msg);
        pthread_mutex_unlock(&N.lock);
        for (size_t off = 0; off < n;) {
            size_t k = n - off < VMSEAL_WS_MAX_PAYLOAD ? n - off : VMSEAL_WS_MAX_PAYLOAD;
            if (vmseal_ws_send(ws, VMSEAL_WS_BINARY, out + off, k, NC_CONSOLE_SEND_MS) < 0) {
                snprintf(why, sizeof(why), "manager side: %s", vmseal_last_error());
                overflow = 1;
                break;
            }
            off += k;
        }
        OPENSSL_cleanse(out, n);
        moved |= n > 0;
        if (overflow) {
            vmseal_ws_close(ws, VMSEAL_WS_POLICY, "the console reader is too slow: closed");
            snprintf(why, sizeof(why), "the console reader is too slow");
            break;
        }
        if (closed) {
            vmseal_ws_close(ws, VMSEAL_WS_NORMAL, msg);
            tell = 0;
            break;
        }
        if (dead) {
            vmseal_ws_close(ws, VMSEAL_WS_GOING_AWAY, "the host agent is stopping");
            tell = 0;
            break;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (moved) {
            last = now;
            continue;
        }
        if (vmseal_ws_buffered(ws))
            continue;
        long idle = (now.tv_sec - last.tv_sec) * 1000 + (now.tv_nsec - last.tv_nsec) / 1000000;
        if (idle >= NC_CONSOLE_IDLE_MS) {
            vmseal_ws_close(ws, VMSEAL_WS_GOING_AWAY, "idle timeout");
            snprintf(why, sizeof(why), "idle");
            break;
        }
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = s->wake[0], .events = POLLIN}};
        (void)poll(p, 2, 1000);
        if (p[1].revents) {
            char junk[64];
            while (read(s->wake[0], junk, sizeof(junk)) > 0) {
            }
        }
    }
done:
    if (tell)
        (void)send_console_close(s->id, why);
    vmseal_clear_error();
    if (out) {
        OPENSSL_cleanse(out, NC_CONSOLE_QUEUE);
        free(out);
    }
    vmseal_ws_free(ws);
    nsess_unlink_free(s);
}

/* GET /v1/vms/{uuid}/console | /vnc with Upgrade: websocket */
static void console_open(const vmseal_http_request *req, vmseal_http_response *resp,
                         uint32_t kind, const char *uuid)
{
    int st = vmseal_ws_check_request(req->method, vmseal_http_header(req, "Upgrade"),
                                     vmseal_http_header(req, "Connection"),
                                     vmseal_http_header(req, "Sec-WebSocket-Version"),
                                     vmseal_http_header(req, "Sec-WebSocket-Key"));
    if (st) {
        vmseal_http_error(resp, st, "%s", vmseal_last_error());
        return;
    }
    nsess *s = calloc(1, sizeof(*s));
    if (!s || !(s->q = malloc(NC_CONSOLE_QUEUE)) || pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        if (s)
            free(s->q);
        free(s);
        vmseal_http_error(resp, 503, "out of resources");
        return;
    }
    pthread_mutex_lock(&N.lock);
    s->id = ++N.next_id;
    s->next = N.cons;
    N.cons = s;
    int dead = N.dead;
    pthread_mutex_unlock(&N.lock);
    int r = -EPIPE;
    if (!dead) {
        ps_buf b = {0};
        ps_put_u64(&b, s->id);
        ps_put_u32(&b, kind);
        ps_put_str(&b, uuid);
        ps_put_str(&b, req->peer_fingerprint ? req->peer_fingerprint : "");
        r = ps_send(&N.chan, PS_CONSOLE_OPEN, &b);
        ps_buf_free(&b);
    }
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += NC_CONSOLE_OPEN_MS / 1000;
    pthread_mutex_lock(&N.lock);
    while (r == 0 && !s->answered && !N.dead)
        if (pthread_cond_timedwait(&N.cond, &N.lock, &dl) == ETIMEDOUT)
            break;
    int answered = s->answered, status = s->status;
    char msg[PS_TEXT_MAX + 1];
    hostd_copy_str(msg, sizeof(msg), s->msg);
    pthread_mutex_unlock(&N.lock);
    if (!answered) {
        if (r == 0)
            (void)send_console_close(s->id, "no answer in time");
        nsess_unlink_free(s);
        vmseal_http_error(resp, 503, "the host agent is not available");
        return;
    }
    if (status != 200) {
        nsess_unlink_free(s);
        vmseal_http_error(resp, status, "%s", msg);
        return;
    }
    if (vmseal_http_websocket(req, resp, console_session, s) < 0) {
        (void)send_console_close(s->id, "bad websocket request");
        nsess_unlink_free(s);
    }
}

/* A console message from the monitor (reader thread: never blocks). */
static int console_msg(uint32_t type, const uint8_t *data, size_t len)
{
    ps_rd rd = {.p = data, .len = len};
    uint64_t id = ps_get_u64(&rd);
    uint32_t status = 0;
    char msg[PS_TEXT_MAX + 1] = "";
    const uint8_t *p = NULL;
    size_t n = 0;
    if (type == PS_CONSOLE_OPENED) {
        status = ps_get_u32(&rd);
        ps_get_str(&rd, msg, sizeof(msg), PS_TEXT_MAX);
        if (status < 200 || status > 599)
            rd.err = 1;
    } else if (type == PS_CONSOLE_DATA) {
        p = ps_get_bytes(&rd, PS_CONSOLE_CHUNK, &n);
        if (n == 0)
            rd.err = 1;
    } else {
        ps_get_str(&rd, msg, sizeof(msg), PS_TEXT_MAX);
    }
    if (ps_rd_end(&rd) < 0)
        return vmseal_fail(EPROTO, "malformed console message");
    pthread_mutex_lock(&N.lock);
    nsess *s = N.cons;
    while (s && s->id != id)
        s = s->next;
    if (s) {
        if (type == PS_CONSOLE_OPENED && !s->answered) {
            s->answered = 1;
            s->status = (int)status;
            hostd_copy_str(s->msg, sizeof(s->msg), msg);
            pthread_cond_broadcast(&N.cond);
        } else if (type == PS_CONSOLE_DATA) {
            if (n > NC_CONSOLE_QUEUE - s->qlen) {
                s->overflow = 1;
            } else {
                memcpy(s->q + s->qlen, p, n);
                s->qlen += n;
            }
        } else if (type == PS_CONSOLE_CLOSE) {
            s->closed = 1;
            hostd_copy_str(s->msg, sizeof(s->msg), msg);
        }
        nsess_wake(s);
    }
    pthread_mutex_unlock(&N.lock);
    return 0;   /* a console that just ended: dropped */
}

/* /v1/vms/{uuid}/console or /vnc: the kind, uuid copied; 0 otherwise. */
static uint32_t console_path(const char *path, char uuid[PS_UUID_MAX + 1])
{
    if (strncmp(path, "/v1/vms/", 8) != 0)
        return 0;
    const char *u = path + 8, *sl = strchr(u, '/');
    if (!sl || sl == u || (size_t)(sl - u) > PS_UUID_MAX)
        return 0;
    uint32_t kind = !strcmp(sl, "/console") ? PS_CONSOLE_SERIAL
                    : !strcmp(sl, "/vnc")   ? PS_CONSOLE_VNC
                                            : 0;
    if (kind) {
        memcpy(uuid, u, (size_t)(sl - u));
        uuid[sl - u] = '\0';
    }
    return kind;
}

static void handler(void *arg, const vmseal_http_request *req, vmseal_http_response *resp)
{
    (void)arg;
    const hostd_net_config *c = N.cfg;
    /* the manager's certificate only, by its fingerprint (the monitor checks
     * again): a host certificate from the same CA with the manager's
     * subject is not the manager */
    if (strcmp(req->peer_fingerprint, c->manager_fingerprint) != 0 ||
        (c->manager_subject && strcmp(req->peer_subject, c->manager_subject) != 0)) {
        vmseal_http_error(resp, 403, "client certificate %s is not the manager's",
                          *req->peer_subject ? req->peer_subject : "(none)");
        return;
    }
    char cuuid[PS_UUID_MAX + 1];
    uint32_t kind = console_path(req->path, cuuid);
    if (kind) {
        console_open(req, resp, kind, cuuid);
        return;
    }
    uint32_t method = ps_method_of(req->method);
    if (!method) {
        vmseal_http_error(resp, 405, "method %s not allowed", req->method);
        return;
    }
    /* the only query parameter of the API: GET /v1/vms/{uuid}/log?tail=N */
    char path[PS_PATH_MAX + 1];
    const char *tail = vmseal_http_query(req, "tail");
    size_t pl = strlen(req->path);
    int n;
    if (tail && pl > 12 && strncmp(req->path, "/v1/vms/", 8) == 0 &&
        strcmp(req->path + pl - 4, "/log") == 0)
        n = snprintf(path, sizeof(path), "%s?tail=%s", req->path, tail);
    else
        n = snprintf(path, sizeof(path), "%s", req->path);
    if (n < 0 || (size_t)n >= sizeof(path) || path[0] != '/') {
        vmseal_http_error(resp, 404, "no such endpoint");
        return;
    }
    pending p = {0};
    pthread_mutex_lock(&N.lock);
    p.id = ++N.next_id;
    p.next = N.pend;
    N.pend = &p;
    int dead = N.dead;
    pthread_mutex_unlock(&N.lock);
    int r = -EPIPE;
    if (!dead) {
        ps_buf b = {0};
        ps_put_u64(&b, p.id);
        ps_put_u32(&b, method);
        ps_put_str(&b, path);
        ps_put_str(&b, req->peer_subject);
        ps_put_str(&b, req->peer_fingerprint ? req->peer_fingerprint : "");
        ps_put_bytes(&b, req->body, req->body_len);
        r = ps_send(&N.chan, PS_REQUEST, &b);
        ps_buf_free(&b);
    }
    pthread_mutex_lock(&N.lock);
    while (r == 0 && !p.done && !N.dead)
        pthread_cond_wait(&N.cond, &N.lock);
    for (pending **pp = &N.pend; *pp; pp = &(*pp)->next)
        if (*pp == &p) {
            *pp = p.next;
            break;
        }
    pthread_mutex_unlock(&N.lock);
    if (!p.done) {
        vmseal_http_error(resp, 503, "the host agent is not available");
        return;
    }
    if (p.text_len == 0) {
        resp->status = p.status;
    } else {
        json_error_t err;
        json_t *j = json_loadb((const char *)p.text + p.off, p.text_len, 0, &err);
        if (j)
            vmseal_http_json(resp, p.status, j);
        else
            vmseal_http_error(resp, 502, "the host agent answered no JSON");
    }
    ps_msg_free(p.text, p.msg_len);
}

/* ------------------------------------------------------- manager calls */

static int send_result(uint64_t id, int err, const char *msg)
{
    ps_buf b = {0};
    ps_put_u64(&b, id);
    ps_put_u32(&b, (uint32_t)(err < 0 ? -err : err));
    char m[PS_TEXT_MAX + 1];
    hostd_copy_str(m, sizeof(m), msg);
    ps_put_str(&b, m);
    int r = ps_send(&N.chan, PS_RESULT, &b);
    ps_buf_free(&b);
    return r;
}

static int do_register(const uint8_t *data, size_t len)
{
    ps_rd rd = {.p = data, .len = len};
    uint64_t id = ps_get_u64(&rd);
    char name[PS_TEXT_MAX + 1], url[PS_TEXT_MAX + 1], ds[PS_TEXT_MAX + 1], pub64[64];
    ps_get_str(&rd, name, sizeof(name), PS_TEXT_MAX);
    ps_get_str(&rd, url, sizeof(url), PS_TEXT_MAX);
    ps_get_str(&rd, ds, sizeof(ds), PS_TEXT_MAX);
    size_t pl = 0;
    const uint8_t *pub = ps_get_bytes(&rd, VMSEAL_KD_PUB_LEN, &pl);
    if (ps_rd_end(&rd) < 0 || pl != VMSEAL_KD_PUB_LEN ||
        vmseal_kd_b64(pub, pl, pub64, sizeof(pub64)) < 0)
        return vmseal_fail(EPROTO, "privsep: malformed REGISTER");
    int r = N.link.url ? hostd_manager_register(&N.link, name, url, ds, pub64)
                       : vmseal_fail(ENOTCONN, "no manager_url");
    return send_result(id, r, r < 0 ? vmseal_last_error() : "");
}

static int do_fetch(const uint8_t *data, size_t len)
{
    ps_rd rd = {.p = data, .len = len};
    uint64_t id = ps_get_u64(&rd);
    uint32_t n = ps_get_u32(&rd);
    if (rd.err || n > PS_KEYS_MAX)
        return vmseal_fail(EPROTO, "privsep: malformed FETCH_KEYS");
    json_t *ids = json_array();
    for (uint32_t i = 0; i < n && !rd.err; i++) {
        char kid[VMSEAL_KEYSAFE_KEK_ID_MAX + 1];
        ps_get_str(&rd, kid, sizeof(kid), VMSEAL_KEYSAFE_KEK_ID_MAX);
        json_array_append_new(ids, json_string(kid));
    }
    if (ps_rd_end(&rd) < 0) {
        json_decref(ids);
        return vmseal_fail(EPROTO, "privsep: malformed FETCH_KEYS");
    }
    ps_keys k = {.id = id};
    int r = N.link.url ? hostd_manager_fetch_keys(&N.link, ids, &k)
                       : vmseal_fail(ENOTCONN, "no manager_url");
    json_decref(ids);
    if (r < 0) {
        k.err = (uint32_t)-r;
        hostd_copy_str(k.message, sizeof(k.message), vmseal_last_error());
    }
    ps_buf b = {0};
    ps_keys_encode(&k, &b);
    ps_keys_free(&k);
    r = ps_send(&N.chan, PS_KEYS, &b);
    ps_buf_free(&b);
    return r;
}

static void *mgr_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&N.lock);
        while (N.nq == 0 && !N.dead)
            pthread_cond_wait(&N.cond, &N.lock);
        if (N.nq == 0) {
            pthread_mutex_unlock(&N.lock);
            return NULL;
        }
        mgr_job j = N.q[0];
        memmove(&N.q[0], &N.q[1], (--N.nq) * sizeof(N.q[0]));
        pthread_mutex_unlock(&N.lock);
        /* errors of the manager go back in the reply; a failure here is
         * a malformed message or a broken link */
        int r = j.type == PS_REGISTER ? do_register(j.data, j.len) : do_fetch(j.data, j.len);
        if (r < 0)
            die(vmseal_last_error());
        ps_msg_free(j.data, j.len);
    }
}

static void *reader_main(void *arg)
{
    (void)arg;
    for (;;) {
        uint32_t type;
        uint8_t *data;
        size_t len;
        int r = ps_recv(&N.chan, &type, &data, &len);
        if (r < 0) {
            die(r == -EPIPE ? "end of file" : vmseal_last_error());
            return NULL;
        }
        if (type == PS_RESPONSE) {
            ps_rd rd = {.p = data, .len = len};
            uint64_t id = ps_get_u64(&rd);
            uint32_t status = ps_get_u32(&rd);
            size_t tl = 0;
            const uint8_t *t = ps_get_bytes(&rd, PS_RESPONSE_MAX, &tl);
            if (ps_rd_end(&rd) < 0 || status < 100 || status > 599) {
                ps_msg_free(data, len);
                die("malformed RESPONSE");
                return NULL;
            }
            pthread_mutex_lock(&N.lock);
            pending *p = N.pend;
            while (p && p->id != id)
                p = p->next;
            if (p && !p->done) {
                p->done = 1;
                p->status = (int)status;
                p->text = data;
                p->msg_len = len;
                p->off = (size_t)(t - data);
                p->text_len = tl;
                data = NULL;
                pthread_cond_broadcast(&N.cond);
            }
            pthread_mutex_unlock(&N.lock);
            ps_msg_free(data, len);
        } else if (type == PS_CONSOLE_OPENED || type == PS_CONSOLE_DATA ||
                   type == PS_CONSOLE_CLOSE) {
            int r2 = console_msg(type, data, len);
            ps_msg_free(data, len);
            if (r2 < 0) {
                die(vmseal_last_error());
                return NULL;
            }
        } else if (type == PS_REGISTER || type == PS_FETCH_KEYS) {
            pthread_mutex_lock(&N.lock);
            int full = N.nq == MGR_QUEUE;
            if (!full)
                N.q[N.nq++] = (mgr_job){type, data, len};
            pthread_cond_broadcast(&N.cond);
            pthread_mutex_unlock(&N.lock);
            if (full) {
                ps_msg_free(data, len);
                die("too many manager calls at once");
                return NULL;
            }
        } else {
            ps_msg_free(data, len);
            die("a message type the monitor does not send");
            return NULL;
        }
    }
}

/* ----------------------------------------------------------- the child */

/* Close every descriptor but stdin/out/err and keep. */
static void close_others(int keep)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) {
        for (int fd = 3; fd < 4096; fd++)
            if (fd != keep)
                close(fd);
        return;
    }
    int dfd = dirfd(d), fds[1024], n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n < 1024) {
        int fd = atoi(de->d_name);
        if (de->d_name[0] >= '0' && de->d_name[0] <= '9' && fd > 2 && fd != keep && fd != dfd)
            fds[n++] = fd;
    }
    closedir(d);
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

static char *slurp(const char *path)
{
    FILE *f = path ? fopen(path, "re") : NULL;
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            char *nb = malloc(cap = cap * 2 + 8192);
            if (!nb)
                break;
            if (buf) {
                memcpy(nb, buf, len);
                OPENSSL_cleanse(buf, len);
                free(buf);
            }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, 4096, f);
        len += r;
        if (r == 0 || len > (1u << 20))
            break;
    }
    fclose(f);
    if (buf)
        buf[len] = '\0';
    return buf;
}

static void free_pem(char *p)
{
    if (p) {
        OPENSSL_cleanse(p, strlen(p));
        free(p);
    }
}

int hostd_net_main(const hostd_net_config *c)
{
    N.cfg = c;
    /* tag our lines; also drops the syslog connection shared with the
     * monitor before close_others() closes its descriptor */
    vmseal_log_set_process("network");
    if (c->title && c->title_len > 1) {
        memset(c->title, 0, c->title_len);
        hostd_copy_str(c->title, c->title_len, "vmseal-hostd: network");
    }
    prctl(PR_SET_NAME, "hostd: network", 0, 0, 0);
    if (prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) != 0 || getppid() != c->parent) {
        nlog(ERROR, "the monitor is gone");
        return 1;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
        nlog(ERROR, "prctl: %s", strerror(errno));
        return 1;
    }
    close_others(c->fd);
    ps_chan_init(&N.chan, c->fd);
    N.link = (hostd_manager_link){.url = c->manager_url, .ca_file = c->manager_ca,
                                   .cert_file = c->cert, .key_file = c->key};

    struct passwd *pw = NULL;
    char *ca_pem = NULL, *cert_pem = NULL, *key_pem = NULL;
    if (c->user) {
        if (!(pw = getpwnam(c->user))) {
            nlog(ERROR, "network_user %s does not exist", c->user);
            return 1;
        }
        /* the client side reads these per call: keep them in memory */
        ca_pem = slurp(c->manager_ca);
        cert_pem = slurp(c->cert);
        key_pem = slurp(c->key);
        if (!ca_pem || !cert_pem || !key_pem) {
            nlog(ERROR, "cannot read the TLS files before dropping privileges");
            free_pem(ca_pem), free_pem(cert_pem), free_pem(key_pem);
            return 1;
        }
        N.link = (hostd_manager_link){.url = c->manager_url, .ca_pem = ca_pem,
                                       .cert_pem = cert_pem, .key_pem = key_pem};
    }

    vmseal_https_config sc = {
        .bind_addr = c->listen,
        .port = c->port,
        .tls = {.cert_file = c->cert, .key_file = c->key, .ca_file = c->ca,
                .require_client_cert = 1, .require_eku = 1},
        .handler = handler,
        .log = access_log,
    };
    vmseal_https_server *srv = NULL;
    int rc = 1;
    if (vmseal_https_server_start(&sc, &srv) < 0) {
        nlog(ERROR, "%s", vmseal_last_error());
        goto out;
    }
    if (pw && (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0 ||
               setuid(0) == 0)) {
        nlog(ERROR, "cannot become %s: %s", c->user, strerror(errno));
        goto out;
    }
    pthread_t reader, mgr;
    if (pthread_create(&reader, NULL, reader_main, NULL) != 0)
        goto out;
    if (pthread_create(&mgr, NULL, mgr_main, NULL) != 0) {
        die("no thread");
        pthread_join(reader, NULL);
        goto out;
    }
    ps_buf b = {0};
    ps_put_u32(&b, (uint32_t)vmseal_https_server_port(srv));
    if (ps_send(&N.chan, PS_READY, &b) < 0)
        die(vmseal_last_error());
    ps_buf_free(&b);
    nlog(INFO, "serving https://%s:%d/v1 as %s", c->listen, vmseal_https_server_port(srv),
         pw ? c->user : "root");
    for (;;) {
        pthread_mutex_lock(&N.lock);
        int dead = N.dead;
        pthread_mutex_unlock(&N.lock);
        if (dead || *c->stopping)
            break;
        struct timespec ts = {0, 100000000L};
        nanosleep(&ts, NULL);
    }
    rc = *c->stopping ? 0 : 1;
    /* the server's handlers may still wait for the monitor: stop them first */
    vmseal_https_server_stop(srv);
    srv = NULL;
    die(rc == 0 ? "stopping" : "the monitor is gone");
    pthread_join(reader, NULL);
    pthread_join(mgr, NULL);
out:
    vmseal_https_server_stop(srv);
    ps_chan_destroy(&N.chan);
    close(c->fd);
    free_pem(ca_pem), free_pem(cert_pem), free_pem(key_pem);
    return rc;
}
