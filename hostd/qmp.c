/* QMP client: line-framed JSON over a UNIX stream socket. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "qmp.h"
#include "strutil.h"

#define QMP_MAX_LINE (4u << 20)   /* one message; QEMU's are far smaller */
#define QMP_MAX_EVENTS 256

struct hostd_qmp {
    int fd;
    char *buf;          /* received bytes not yet consumed */
    size_t len, cap;
    json_t *events;     /* queued events, oldest first */
    unsigned long next_id;
};

static int remaining(int64_t deadline)
{
    int64_t left = deadline - hostd_now_ms();
    return left < 0 ? 0 : (int)(left > 1000000 ? 1000000 : left);
}

int hostd_qmp_fd(const hostd_qmp *q)
{
    return q->fd;
}

static int send_all(hostd_qmp *q, const char *data, size_t len, int64_t deadline)
{
    size_t off = 0;
    while (off < len) {
        ssize_t w = send(q->fd, data + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd p = {.fd = q->fd, .events = POLLOUT};
            int t = remaining(deadline);
            int r = poll(&p, 1, t);
            if (r < 0 && errno != EINTR)
                return vmseal_fail(errno, "QMP: poll: %s", strerror(errno));
            if (r == 0)
                return vmseal_fail(ETIMEDOUT, "QMP: timed out sending a command");
            continue;
        }
        if (w < 0 && (errno == EPIPE || errno == ECONNRESET))
            return vmseal_fail(ECONNRESET, "QMP: QEMU closed the monitor");
        return vmseal_fail(errno ? errno : EIO, "QMP: send: %s", strerror(errno));
    }
    return 0;
}

/* Receive more bytes into the buffer. timeout 0: do not block. */
static int fill(hostd_qmp *q, int timeout)
{
    if (q->len == q->cap) {
        if (q->cap >= QMP_MAX_LINE)
            return vmseal_fail(EPROTO, "QMP: message longer than %u bytes", QMP_MAX_LINE);
        size_t ncap = q->cap ? q->cap * 2 : 8192;
        char *nb = realloc(q->buf, ncap);
        if (!nb)
            return vmseal_fail(ENOMEM, "QMP: out of memory");
        q->buf = nb;
        q->cap = ncap;
    }
    for (;;) {
        struct pollfd p = {.fd = q->fd, .events = POLLIN};
        int r = poll(&p, 1, timeout);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return vmseal_fail(errno, "QMP: poll: %s", strerror(errno));
        if (r == 0)
            return vmseal_fail(ETIMEDOUT, "QMP: timed out waiting for QEMU");
        ssize_t n = recv(q->fd, q->buf + q->len, q->cap - q->len, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0 && errno == ECONNRESET)
            n = 0;
        if (n < 0)
            return vmseal_fail(errno, "QMP: recv: %s", strerror(errno));
        if (n == 0)
            return vmseal_fail(ECONNRESET, "QMP: QEMU closed the monitor");
        q->len += (size_t)n;
        return 0;
    }
}

/* Take one complete line from the buffer as JSON; 1 if one was taken,
 * 0 if no complete line is buffered. Empty lines are skipped. */
static int take_line(hostd_qmp *q, json_t **msg)
{
    for (;;) {
        if (q->len == 0)
            return 0;
        char *nl = memchr(q->buf, '\n', q->len);
        if (!nl)
            return 0;
        size_t linelen = (size_t)(nl - q->buf);
        size_t used = linelen + 1;
        while (linelen > 0 && (q->buf[linelen - 1] == '\r' || q->buf[linelen - 1] == ' '))
            linelen--;
        json_t *j = NULL;
        json_error_t err;
        if (linelen > 0)
            j = json_loadb(q->buf, linelen, JSON_REJECT_DUPLICATES, &err);
        memmove(q->buf, q->buf + used, q->len - used);
        q->len -= used;
        if (linelen == 0)
            continue;
        if (!j || !json_is_object(j)) {
            json_decref(j);
            return vmseal_fail(EPROTO, "QMP: QEMU sent a line that is not a JSON object");
        }
        *msg = j;
        return 1;
    }
}

static void queue_event(hostd_qmp *q, json_t *ev)
{
    if (json_array_size(q->events) >= QMP_MAX_EVENTS)
        json_array_remove(q->events, 0);
    json_array_append_new(q->events, ev);
}

/* Next message: blocks until deadline (deadline < 0: do not block). */
static int next_message(hostd_qmp *q, int64_t deadline, json_t **msg)
{
    for (;;) {
        int r = take_line(q, msg);
        if (r != 0)
            return r < 0 ? r : 0;
        r = fill(q, deadline < 0 ? 0 : remaining(deadline));
        if (r < 0)
            return r;
    }
}

int hostd_qmp_poll(hostd_qmp *q)
{
    for (;;) {
        json_t *m = NULL;
        int r = next_message(q, -1, &m);
        if (r == -ETIMEDOUT) {
            vmseal_clear_error();
            return 0;
        }
        if (r < 0)
            return r;
        if (json_object_get(m, "event"))
            queue_event(q, m);
        else
            json_decref(m);   /* a stray reply (to a command that timed out) */
    }
}

static int reply_error(const char *cmd, json_t *m)
{
    json_t *e = json_object_get(m, "error");
    const char *cls = json_string_value(json_object_get(e, "class"));
    const char *desc = json_string_value(json_object_get(e, "desc"));
    return vmseal_fail(EREMOTEIO, "QEMU refused %s: %s (%s)", cmd,
                       desc ? desc : "no description", cls ? cls : "no class");
}

/* Wait for the reply carrying `id`, queueing events. */
static int await_reply(hostd_qmp *q, const char *cmd, const char *id, int64_t deadline,
                       json_t **ret)
{
    for (;;) {
        json_t *m = NULL;
        int r = next_message(q, deadline, &m);
        if (r == -ETIMEDOUT)
            return vmseal_fail(ETIMEDOUT, "QMP: no reply to %s in time", cmd);
        if (r < 0)
            return r;
        if (json_object_get(m, "event")) {
            queue_event(q, m);
            continue;
        }
        const char *rid = json_string_value(json_object_get(m, "id"));
        if (!rid || strcmp(rid, id) != 0) {
            json_decref(m);   /* reply to an earlier, timed-out command */
            continue;
        }
        if (json_object_get(m, "error")) {
            r = reply_error(cmd, m);
            json_decref(m);
            return r;
        }
        json_t *rv = json_object_get(m, "return");
        if (!rv) {
            json_decref(m);
            return vmseal_fail(EPROTO, "QMP: reply to %s has neither return nor error", cmd);
        }
        if (ret)
            *ret = json_incref(rv);
        json_decref(m);
        return 0;
    }
}

int hostd_qmp_execute(hostd_qmp *q, const char *cmd, json_t *args, int timeout_ms,
                       json_t **ret)
{
    int64_t deadline = hostd_now_ms() + timeout_ms;
    if (ret)
        *ret = NULL;
    char id[32];
    snprintf(id, sizeof(id), "vmseal-%lu", q->next_id++);
    json_t *req = json_pack("{s:s, s:s}", "execute", cmd, "id", id);
    if (!req) {
        json_decref(args);
        return vmseal_fail(ENOMEM, "QMP: out of memory");
    }
    if (args)
        json_object_set_new(req, "arguments", args);
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (!text)
        return vmseal_fail(ENOMEM, "QMP: out of memory");
    size_t tl = strlen(text);
    char *line = realloc(text, tl + 2);
    if (!line) {
        free(text);
        return vmseal_fail(ENOMEM, "QMP: out of memory");
    }
    line[tl] = '\n';
    line[tl + 1] = '\0';
    int r = send_all(q, line, tl + 1, deadline);
    free(line);
    if (r < 0)
        return r;
    return await_reply(q, cmd, id, deadline, ret);
}

static int id_is_safe(const char *id)
{
    if (!id || !*id || strlen(id) > 64)
        return 0;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
            return 0;
    return 1;
}

int hostd_qmp_add_secret(hostd_qmp *q, const char *id, const vmseal_secret *data,
                          int timeout_ms)
{
    int64_t deadline = hostd_now_ms() + timeout_ms;
    if (!id_is_safe(id))
        return vmseal_fail(EINVAL, "QMP: secret id must be [A-Za-z0-9_-]{1,64}");
    size_t dlen = vmseal_secret_len(data);
    if (dlen == 0 || dlen > 4096)
        return vmseal_fail(EINVAL, "QMP: secret must be 1..4096 bytes");
    char rid[32];
    snprintf(rid, sizeof(rid), "vmseal-%lu", q->next_id++);
    char head[256], tail[64];
    int hl = snprintf(head, sizeof(head),
                      "{\"execute\":\"object-add\",\"id\":\"%s\",\"arguments\":"
                      "{\"qom-type\":\"secret\",\"id\":\"%s\",\"format\":\"base64\",\"data\":\"",
                      rid, id);
    int tlen = snprintf(tail, sizeof(tail), "\"}}\n");
    if (hl < 0 || (size_t)hl >= sizeof(head) || tlen < 0)
        return vmseal_fail(EINVAL, "QMP: secret id too long");
    size_t b64len = 4 * ((dlen + 2) / 3);
    vmseal_secret *msg = vmseal_secret_new((size_t)hl + b64len + 1 + (size_t)tlen);
    if (!msg)
        return vmseal_fail(ENOMEM, "QMP: out of memory");
    unsigned char *p = vmseal_secret_data(msg);
    memcpy(p, head, (size_t)hl);
    int enc = EVP_EncodeBlock(p + hl, vmseal_secret_cdata(data), (int)dlen);
    if (enc != (int)b64len) {
        vmseal_secret_free(msg);
        return vmseal_fail(EIO, "QMP: base64 encoding failed");
    }
    memcpy(p + hl + b64len, tail, (size_t)tlen);
    size_t total = (size_t)hl + b64len + (size_t)tlen;
    int r = send_all(q, (const char *)p, total, deadline);
    vmseal_secret_free(msg);
    if (r < 0)
        return r;
    return await_reply(q, "object-add secret", rid, deadline, NULL);
}

int hostd_qmp_wait_event(hostd_qmp *q, const char *name, int timeout_ms, json_t **event)
{
    int64_t deadline = hostd_now_ms() + timeout_ms;
    if (event)
        *event = NULL;
    for (;;) {
        size_t i;
        json_t *ev;
        json_array_foreach(q->events, i, ev) {
            const char *en = json_string_value(json_object_get(ev, "event"));
            if (!name || (en && strcmp(en, name) == 0)) {
                if (event)
                    *event = json_incref(ev);
                json_array_remove(q->events, i);
                return 0;
            }
        }
        json_t *m = NULL;
        int r = next_message(q, deadline, &m);
        if (r == -ETIMEDOUT)
            return vmseal_fail(ETIMEDOUT, "QMP: no %s event in time", name ? name : "");
        if (r < 0)
            return r;
        if (json_object_get(m, "event"))
            queue_event(q, m);
        else
            json_decref(m);
    }
}

int hostd_qmp_connect(const char *path, int timeout_ms, hostd_qmp **out)
{
    int64_t deadline = hostd_now_ms() + timeout_ms;
    *out = NULL;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return vmseal_fail(ENAMETOOLONG, "QMP: socket path %s is longer than %zu bytes", path,
                           sizeof(sa.sun_path) - 1);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return vmseal_fail(errno, "QMP: socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int e = errno;
        close(fd);
        return vmseal_fail(e, "QMP: connect %s: %s", path, strerror(e));
    }
    int r = hostd_qmp_open_fd(fd, remaining(deadline), out);
    if (r < 0)
        return vmseal_fail(r, "%s (%s)", vmseal_last_error(), path);
    return 0;
}

int hostd_qmp_open_fd(int fd, int timeout_ms, hostd_qmp **out)
{
    int64_t deadline = hostd_now_ms() + timeout_ms;
    *out = NULL;
    hostd_qmp *q = calloc(1, sizeof(*q));
    if (!q) {
        close(fd);
        return vmseal_fail(ENOMEM, "QMP: out of memory");
    }
    q->fd = fd;
    q->events = json_array();
    q->next_id = 1;
    int r;

    json_t *greeting = NULL;
    r = next_message(q, deadline, &greeting);
    if (r < 0) {
        if (r == -ETIMEDOUT)
            vmseal_fail(ETIMEDOUT, "QMP: no greeting from QEMU");
        hostd_qmp_close(q);
        return r;
    }
    int is_qmp = json_is_object(json_object_get(greeting, "QMP"));
    json_decref(greeting);
    if (!is_qmp) {
        hostd_qmp_close(q);
        return vmseal_fail(EPROTO, "QMP: the peer did not greet with QMP");
    }
    r = hostd_qmp_execute(q, "qmp_capabilities", NULL, remaining(deadline), NULL);
    if (r < 0) {
        hostd_qmp_close(q);
        return r;
    }
    *out = q;
    return 0;
}

void hostd_qmp_close(hostd_qmp *q)
{
    if (!q)
        return;
    if (q->fd >= 0)
        close(q->fd);
    json_decref(q->events);
    free(q->buf);
    free(q);
}

/* Send `line` (n bytes, a command with id `id`) with fd riding on its first
 * byte, and wait for the answer to cmd. */
static int send_with_fd(hostd_qmp *q, const char *cmd, const char *id, char *line, int n, int fd,
                        int64_t deadline, json_t **ret)
{
    /* The descriptor rides on the first byte; the rest of the line follows. */
    char cbuf[CMSG_SPACE(sizeof(int))];
    memset(cbuf, 0, sizeof(cbuf));
    struct iovec iov = {.iov_base = line, .iov_len = 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                        .msg_controllen = sizeof(cbuf)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    for (;;) {
        ssize_t w = sendmsg(q->fd, &mh, MSG_NOSIGNAL);
        if (w == 1)
            break;
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd p = {.fd = q->fd, .events = POLLOUT};
            if (poll(&p, 1, remaining(deadline)) == 0)
                return vmseal_fail(ETIMEDOUT, "QMP: timed out sending a command");
            continue;
        }
        return vmseal_fail(errno == EPIPE ? ECONNRESET : (errno ? errno : EIO),
                           "QMP: sendmsg: %s", strerror(errno));
    }
    int r = send_all(q, line + 1, (size_t)n - 1, deadline);
    if (r < 0)
        return r;
    return await_reply(q, cmd, id, deadline, ret);
}

int hostd_qmp_getfd(hostd_qmp *q, const char *name, int fd, int timeout_ms)
{
    int64_t deadline = hostd_now_ms() + timeout_ms;
    if (!id_is_safe(name))
        return vmseal_fail(EINVAL, "QMP: fd name must be [A-Za-z0-9_-]{1,64}");
    char id[32], line[256];
    snprintf(id, sizeof(id), "vmseal-%lu", q->next_id++);
    int n = snprintf(line, sizeof(line),
                     "{\"execute\":\"getfd\",\"id\":\"%s\",\"arguments\":{\"fdname\":\"%s\"}}\n",
                     id, name);
    if (n < 0 || (size_t)n >= sizeof(line))
        return vmseal_fail(EINVAL, "QMP: fd name too long");
    return send_with_fd(q, "getfd", id, line, n, fd, deadline, NULL);
}

int hostd_qmp_add_fd(hostd_qmp *q, int fdset, int fd, int timeout_ms, json_t **ret)
{
    if (ret)
        *ret = NULL;
    int64_t deadline = hostd_now_ms() + timeout_ms;
    if (fdset > 65535)
        return vmseal_fail(EINVAL, "QMP: fdset id out of range");
    char id[32], line[256];
    snprintf(id, sizeof(id), "vmseal-%lu", q->next_id++);
    int n = fdset >= 0
                ? snprintf(line, sizeof(line),
                           "{\"execute\":\"add-fd\",\"id\":\"%s\",\"arguments\":{\"fdset-id\":%d}}\n",
                           id, fdset)
                : snprintf(line, sizeof(line), "{\"execute\":\"add-fd\",\"id\":\"%s\"}\n", id);
    if (n < 0 || (size_t)n >= sizeof(line))
        return vmseal_fail(EINVAL, "QMP: command too long");
    return send_with_fd(q, "add-fd", id, line, n, fd, deadline, ret);
}
