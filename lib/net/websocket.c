/* WebSocket framing (include/vmseal/websocket.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <jansson.h>

#include <vmseal/tls.h>
#include <vmseal/websocket.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ------------------------------------------------------------- frames */

long vmseal_ws_parse(uint8_t *buf, size_t len, int masked, size_t max_payload,
                     vmseal_ws_frame *f, uint16_t *close_code)
{
    *close_code = 0;
    memset(f, 0, sizeof(*f));
    if (len < 2)
        return 0;
    int fin = buf[0] >> 7, rsv = (buf[0] >> 4) & 7, op = buf[0] & 15;
    int has_mask = buf[1] >> 7;
    uint64_t plen = buf[1] & 127;
    size_t off = 2;
    *close_code = VMSEAL_WS_PROTOCOL_ERROR;
    if (rsv)
        return vmseal_fail(EPROTO, "websocket: reserved bits set (no extension was agreed)");
    if (op != VMSEAL_WS_CONT && op != VMSEAL_WS_TEXT && op != VMSEAL_WS_BINARY &&
        op != VMSEAL_WS_CLOSE && op != VMSEAL_WS_PING && op != VMSEAL_WS_PONG)
        return vmseal_fail(EPROTO, "websocket: unknown opcode %d", op);
    if (has_mask != masked)
        return vmseal_fail(EPROTO, masked ? "websocket: a client frame without a mask"
                                          : "websocket: a server frame with a mask");
    if (op >= 8 && (!fin || plen > VMSEAL_WS_CONTROL_MAX))
        return vmseal_fail(EPROTO, "websocket: control frame fragmented or over 125 bytes");
    if (plen == 126) {
        if (len < off + 2)
            goto more;
        plen = (uint64_t)buf[2] << 8 | buf[3];
        off += 2;
        if (plen < 126)
            return vmseal_fail(EPROTO, "websocket: length not in its shortest form");
    } else if (plen == 127) {
        if (len < off + 8)
            goto more;
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = plen << 8 | buf[2 + i];
        off += 8;
        if (plen >> 63)
            return vmseal_fail(EPROTO, "websocket: length with the top bit set");
        if (plen <= 0xffff)
            return vmseal_fail(EPROTO, "websocket: length not in its shortest form");
    }
    if (plen > max_payload) {
        *close_code = VMSEAL_WS_TOO_BIG;
        return vmseal_fail(EMSGSIZE, "websocket: frame of %llu bytes (at most %zu)",
                           (unsigned long long)plen, max_payload);
    }
    const uint8_t *mask = NULL;
    if (masked) {
        if (len < off + 4)
            goto more;
        mask = buf + off;
        off += 4;
    }
    if (len - off < plen)
        goto more;
    *close_code = 0;
    f->fin = fin;
    f->opcode = op;
    f->payload = buf + off;
    f->len = (size_t)plen;
    if (mask) {
        uint8_t m[4];
        memcpy(m, mask, 4);
        vmseal_ws_mask(f->payload, f->len, m, 0);
    }
    return (long)(off + plen);
more:
    *close_code = 0;
    return 0;
}

size_t vmseal_ws_header(uint8_t out[14], int opcode, int fin, uint64_t len, const uint8_t *mask)
{
    size_t n = 0;
    out[n++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 15));
    uint8_t mb = mask ? 0x80 : 0;
    if (len < 126) {
        out[n++] = mb | (uint8_t)len;
    } else if (len <= 0xffff) {
        out[n++] = mb | 126;
        out[n++] = (uint8_t)(len >> 8);
        out[n++] = (uint8_t)len;
    } else {
        out[n++] = mb | 127;
        for (int i = 7; i >= 0; i--)
            out[n++] = (uint8_t)(len >> (8 * i));
    }
    if (mask) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

void vmseal_ws_mask(uint8_t *p, size_t len, const uint8_t mask[4], size_t offset)
{
    for (size_t i = 0; i < len; i++)
        p[i] ^= mask[(i + offset) & 3];
}

/* ---------------------------------------------------------- handshake */

int vmseal_ws_accept_key(const char *key, char out[29])
{
    out[0] = '\0';
    uint8_t raw[32];
    size_t kl = key ? strlen(key) : 0;
    if (kl != 24 || EVP_DecodeBlock(raw, (const unsigned char *)key, 24) != 18 ||
        key[22] != '=' || key[23] != '=')
        return vmseal_fail(EINVAL, "Sec-WebSocket-Key is not the base64 of 16 bytes");
    char buf[24 + sizeof(WS_GUID)];
    memcpy(buf, key, 24);
    memcpy(buf + 24, WS_GUID, sizeof(WS_GUID));
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdl = 0;
    /* SHA-1 only because RFC 6455 says so: not a security function here */
    if (EVP_Digest(buf, strlen(buf), md, &mdl, EVP_sha1(), NULL) != 1 || mdl != 20)
        return vmseal_fail(EIO, "SHA-1 failed");
    if (EVP_EncodeBlock((unsigned char *)out, md, 20) != 28)
        return vmseal_fail(EIO, "base64 failed");
    return 0;
}

/* Does the comma-separated header value hold token (case-insensitive)? */
static int has_token(const char *v, const char *token)
{
    size_t tl = strlen(token);
    while (v && *v) {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        const char *e = v;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > v && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - v) == tl && strncasecmp(v, token, tl) == 0)
            return 1;
        v = e;
    }
    return 0;
}

int vmseal_ws_check_request(const char *method, const char *upgrade, const char *connection,
                            const char *version, const char *key)
{
    char acc[29];
    if (!method || strcmp(method, "GET") != 0)
        return vmseal_fail(EINVAL, "a websocket opens with GET"), 400;
    if (!has_token(upgrade, "websocket") || !has_token(connection, "upgrade"))
        return vmseal_fail(EINVAL, "this is a websocket endpoint: send Upgrade: websocket"), 400;
    if (!version || strcmp(version, "13") != 0)
        return vmseal_fail(EINVAL, "websocket version 13 only"), 426;
    if (vmseal_ws_accept_key(key, acc) < 0)
        return 400;
    return 0;
}

/* -------------------------------------------------------- connections */

struct vmseal_ws {
    int fd;
    SSL *ssl;
    int client;
    size_t max_payload;
    uint8_t *in;
    size_t in_cap, in_len, in_used;   /* in_used: the frame handed out last */
    int frag;                         /* inside a fragmented message */
    int eof, closed_sent;
    uint16_t peer_code;
    char peer_reason[VMSEAL_WS_CONTROL_MAX + 1];
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

vmseal_ws *vmseal_ws_new(int fd, SSL *ssl, int client, size_t max_payload)
{
    vmseal_ws *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->fd = ssl ? SSL_get_fd(ssl) : fd;
    w->ssl = ssl;
    w->client = client;
    w->max_payload = max_payload ? max_payload : VMSEAL_WS_MAX_PAYLOAD;
    w->in_cap = w->max_payload + 14;
    w->in = malloc(w->in_cap);
    if (!w->in) {
        free(w);
        return NULL;
    }
    int fl = fcntl(w->fd, F_GETFL);
    if (fl >= 0)
        (void)fcntl(w->fd, F_SETFL, fl | O_NONBLOCK);
    if (ssl)
        SSL_set_mode(ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return w;
}

void vmseal_ws_free(vmseal_ws *w)
{
    if (!w)
        return;
    OPENSSL_cleanse(w->in, w->in_cap);   /* console text */
    free(w->in);
    free(w);
}

int vmseal_ws_fd(const vmseal_ws *w)
{
    return w->fd;
}

int vmseal_ws_feed(vmseal_ws *w, const void *data, size_t len)
{
    if (len > w->in_cap - w->in_len)
        return vmseal_fail(EMSGSIZE, "websocket: too much data before the first frame");
    memcpy(w->in + w->in_len, data, len);
    w->in_len += len;
    return 0;
}

int vmseal_ws_buffered(const vmseal_ws *w)
{
    return w->in_len > w->in_used || (w->ssl && SSL_pending(w->ssl) > 0);
}

/* Read into the buffer: > 0 bytes, 0 nothing now, < 0 end or error. */
static int fill(vmseal_ws *w)
{
    size_t room = w->in_cap - w->in_len;
    if (room == 0)
        return 0;
    if (w->ssl) {
        size_t n = 0;
        ERR_clear_error();
        if (SSL_read_ex(w->ssl, w->in + w->in_len, room, &n) == 1) {
            w->in_len += n;
            return (int)n;
        }
        int e = SSL_get_error(w->ssl, 0);
        ERR_clear_error();
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return 0;
        return e == SSL_ERROR_ZERO_RETURN ? vmseal_fail(EPIPE, "websocket: the peer closed")
                                          : vmseal_fail(ECONNRESET, "websocket: TLS error");
    }
    ssize_t r = recv(w->fd, w->in + w->in_len, room, MSG_DONTWAIT);
    if (r > 0) {
        w->in_len += (size_t)r;
        return (int)r;
    }
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (r == 0)
        return vmseal_fail(EPIPE, "websocket: the peer closed");
    return vmseal_fail(errno, "websocket: %s", strerror(errno));
}

static int write_all(vmseal_ws *w, const uint8_t *p, size_t len, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    while (len) {
        short ev = POLLOUT;
        if (w->ssl) {
            size_t n = 0;
            ERR_clear_error();
            if (SSL_write_ex(w->ssl, p, len, &n) == 1) {
                p += n;
                len -= n;
                continue;
            }
            int e = SSL_get_error(w->ssl, 0);
            ERR_clear_error();
            if (e == SSL_ERROR_WANT_READ)
                ev = POLLIN;
            else if (e != SSL_ERROR_WANT_WRITE)
                return vmseal_fail(ECONNRESET, "websocket: TLS write failed");
        } else {
            ssize_t r = send(w->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (r > 0) {
                p += r;
                len -= (size_t)r;
                continue;
            }
            if (r < 0 && errno != EAGAIN && errno != EINTR)
                return vmseal_fail(errno == EPIPE ? EPIPE : errno, "websocket: %s",
                                   strerror(errno));
        }
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return vmseal_fail(ETIMEDOUT, "websocket: the peer does not read (slow reader)");
        struct pollfd pf = {.fd = w->fd, .events = ev};
        if (poll(&pf, 1, (int)left) < 0 && errno != EINTR)
            return vmseal_fail(errno, "poll: %s", strerror(errno));
    }
    return 0;
}

int vmseal_ws_send(vmseal_ws *w, int opcode, const void *data, size_t len, int timeout_ms)
{
    if (w->closed_sent)
        return vmseal_fail(EPIPE, "websocket: closed");
    if (len > w->max_payload || (opcode >= 8 && len > VMSEAL_WS_CONTROL_MAX))
        return vmseal_fail(EMSGSIZE, "websocket: frame too large to send");
    uint8_t *buf = malloc(len + 14);
    if (!buf)
        return vmseal_fail(ENOMEM, "out of memory");
    uint8_t mask[4];
    if (w->client && RAND_bytes(mask, 4) != 1) {
        free(buf);
        return vmseal_fail(EIO, "no random bytes for the mask");
    }
    size_t h = vmseal_ws_header(buf, opcode, 1, len, w->client ? mask : NULL);
    if (len)
        memcpy(buf + h, data, len);
    if (w->client)
        vmseal_ws_mask(buf + h, len, mask, 0);
    int r = write_all(w, buf, h + len, timeout_ms);
    OPENSSL_cleanse(buf, h + len);
    free(buf);
    if (opcode == VMSEAL_WS_CLOSE)
        w->closed_sent = 1;
    return r;
}

void vmseal_ws_close(vmseal_ws *w, uint16_t code, const char *reason)
{
    if (w->closed_sent)
        return;
    uint8_t p[VMSEAL_WS_CONTROL_MAX];
    size_t n = 0;
    if (code) {
        p[0] = (uint8_t)(code >> 8);
        p[1] = (uint8_t)code;
        n = 2;
        size_t rl = reason ? strlen(reason) : 0;
        if (rl > sizeof(p) - 2)
            rl = sizeof(p) - 2;
        /* do not cut a UTF-8 sequence */
        while (rl > 0 && rl < strlen(reason) && ((uint8_t)reason[rl] & 0xc0) == 0x80)
            rl--;
        memcpy(p + 2, reason, rl);
        n += rl;
    }
    if (vmseal_ws_send(w, VMSEAL_WS_CLOSE, p, n, 1000) < 0)
        w->eof = 1;
    w->closed_sent = 1;
    vmseal_clear_error();
}

uint16_t vmseal_ws_peer_close(const vmseal_ws *w, char *reason, size_t len)
{
    if (reason && len)
        snprintf(reason, len, "%s", w->peer_reason);
    return w->peer_code;
}

int vmseal_ws_recv(vmseal_ws *w, vmseal_ws_frame *f, int timeout_ms)
{
    memset(f, 0, sizeof(*f));
    if (w->in_used) {
        memmove(w->in, w->in + w->in_used, w->in_len - w->in_used);
        w->in_len -= w->in_used;
        w->in_used = 0;
    }
    for (;;) {
        uint16_t code = 0;
        long n = vmseal_ws_parse(w->in, w->in_len, !w->client, w->max_payload, f, &code);
        if (n < 0) {
            char why[256];
            snprintf(why, sizeof(why), "%s", vmseal_last_error());
            vmseal_ws_close(w, code, why);
            return vmseal_fail((int)-n, "%s", why);
        }
        if (n == 0) {
            int r = fill(w);
            if (r < 0)
                return r;
            if (r == 0)
                return 0;
            continue;
        }
        w->in_used = (size_t)n;
        switch (f->opcode) {
        case VMSEAL_WS_PING:
        {
            int r = vmseal_ws_send(w, VMSEAL_WS_PONG, f->payload, f->len, timeout_ms);
            if (r < 0)
                return r;
            break;
        }
        case VMSEAL_WS_PONG:
            break;
        case VMSEAL_WS_CLOSE:
            if (f->len == 1) {
                vmseal_ws_close(w, VMSEAL_WS_PROTOCOL_ERROR, "close frame of one byte");
                return vmseal_fail(EPROTO, "websocket: close frame of one byte");
            }
            w->peer_code = f->len >= 2 ? (uint16_t)(f->payload[0] << 8 | f->payload[1]) : 1005;
            snprintf(w->peer_reason, sizeof(w->peer_reason), "%.*s",
                     f->len > 2 ? (int)(f->len - 2) : 0, f->len > 2 ? (char *)f->payload + 2 : "");
            return 1;
        case VMSEAL_WS_CONT:
            if (!w->frag) {
                vmseal_ws_close(w, VMSEAL_WS_PROTOCOL_ERROR, "continuation without a message");
                return vmseal_fail(EPROTO, "websocket: continuation frame without a message");
            }
            w->frag = !f->fin;
            return 1;
        default:   /* TEXT, BINARY */
            if (w->frag) {
                vmseal_ws_close(w, VMSEAL_WS_PROTOCOL_ERROR, "new message inside a fragmented one");
                return vmseal_fail(EPROTO, "websocket: a new message inside a fragmented one");
            }
            w->frag = !f->fin;
            return 1;
        }
        /* a control frame was handled: drop it and go on */
        memmove(w->in, w->in + w->in_used, w->in_len - w->in_used);
        w->in_len -= w->in_used;
        w->in_used = 0;
    }
}

/* ----------------------------------------------------- client handshake */

int vmseal_ws_client_handshake(SSL *ssl, const char *host, const char *path, const char *headers,
                               int timeout_ms, int *status, char *msg, size_t msglen)
{
    *status = 0;
    if (msg && msglen)
        msg[0] = '\0';
    uint8_t nonce[16];
    char key[32], want[29];
    if (RAND_bytes(nonce, sizeof(nonce)) != 1 ||
        EVP_EncodeBlock((unsigned char *)key, nonce, sizeof(nonce)) != 24)
        return vmseal_fail(EIO, "no random bytes");
    if (vmseal_ws_accept_key(key, want) < 0)
        return -EIO;
    char *req = NULL;
    int n = asprintf(&req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                     path, host, key, headers ? headers : "");
    if (n < 0)
        return vmseal_fail(ENOMEM, "out of memory");
    int r = vmseal_tls_write_full(ssl, req, (size_t)n, timeout_ms);
    OPENSSL_cleanse(req, (size_t)n);   /* may hold a token */
    free(req);
    if (r < 0)
        return r;
    /* the headers, a byte at a time (nothing of the first frame is read) */
    char *h = malloc(VMSEAL_WS_HANDSHAKE_MAX + 1);
    if (!h)
        return vmseal_fail(ENOMEM, "out of memory");
    size_t hl = 0;
    while (hl < 4 || memcmp(h + hl - 4, "\r\n\r\n", 4) != 0) {
        if (hl == VMSEAL_WS_HANDSHAKE_MAX) {
            free(h);
            return vmseal_fail(EPROTO, "websocket: answer headers over %d bytes",
                               VMSEAL_WS_HANDSHAKE_MAX);
        }
        r = vmseal_tls_read_full(ssl, h + hl, 1, timeout_ms);
        if (r < 0) {
            free(h);
            return r;
        }
        hl++;
    }
    h[hl] = '\0';
    int st = 0;
    if (sscanf(h, "HTTP/1.%*1[01] %3d", &st) != 1 || st < 100 || st > 599) {
        free(h);
        return vmseal_fail(EPROTO, "websocket: not an HTTP answer");
    }
    *status = st;
    long clen = 0;
    int got_accept = 0;
    for (char *save = NULL, *line = strtok_r(h, "\r\n", &save); line;
         line = strtok_r(NULL, "\r\n", &save)) {
        if (strncasecmp(line, "Content-Length:", 15) == 0)
            clen = strtol(line + 15, NULL, 10);
        if (strncasecmp(line, "Sec-WebSocket-Accept:", 21) == 0) {
            char *v = line + 21;
            while (*v == ' ')
                v++;
            got_accept = strcmp(v, want) == 0;
        }
    }
    free(h);
    if (st == 101) {
        if (!got_accept)
            return vmseal_fail(EPROTO, "websocket: the server's Sec-WebSocket-Accept is wrong");
        return 0;
    }
    /* an error answer: its JSON "error" text, bounded */
    if (clen > 0 && clen <= 4096 && msg && msglen) {
        char body[4097];
        if (vmseal_tls_read_full(ssl, body, (size_t)clen, timeout_ms) == (int)clen) {
            body[clen] = '\0';
            json_t *j = json_loads(body, 0, NULL);
            const char *e = json_string_value(json_object_get(j, "error"));
            snprintf(msg, msglen, "%s", e ? e : "");
            json_decref(j);
        }
    }
    return vmseal_fail(EPROTO, "HTTP %d%s%s", st, msg && *msg ? ": " : "", msg ? msg : "");
}

/* --------------------------------------------------------------- relay */

void vmseal_ws_relay(vmseal_ws *a, vmseal_ws *b, int idle_ms, int send_ms, char *why, size_t whylen)
{
    vmseal_ws *s[2] = {a, b};
    int64_t last = now_ms();
    snprintf(why, whylen, "ended");
    for (;;) {
        int moved = 0;
        for (int i = 0; i < 2; i++) {
            vmseal_ws_frame f;
            int r = vmseal_ws_recv(s[i], &f, send_ms);
            if (r < 0) {
                snprintf(why, whylen, "%s side: %s", i ? "far" : "near", vmseal_last_error());
                vmseal_ws_close(s[!i], r == -EPROTO || r == -EMSGSIZE ? VMSEAL_WS_PROTOCOL_ERROR
                                                                     : VMSEAL_WS_GOING_AWAY,
                                "the other side went away");
                return;
            }
            if (r == 0)
                continue;
            moved = 1;
            if (f.opcode == VMSEAL_WS_CLOSE) {
                char reason[VMSEAL_WS_CONTROL_MAX + 1];
                uint16_t code = vmseal_ws_peer_close(s[i], reason, sizeof(reason));
                snprintf(why, whylen, "%s side closed (%u %s)", i ? "far" : "near", code, reason);
                vmseal_ws_close(s[i], VMSEAL_WS_NORMAL, "");
                vmseal_ws_close(s[!i], code == 1005 || code == 1006 ? VMSEAL_WS_NORMAL : code,
                                reason);
                return;
            }
            if (vmseal_ws_send(s[!i], f.opcode == VMSEAL_WS_TEXT ? VMSEAL_WS_TEXT : VMSEAL_WS_BINARY,
                               f.payload, f.len, send_ms) < 0) {
                snprintf(why, whylen, "%s side: %s", i ? "near" : "far", vmseal_last_error());
                vmseal_ws_close(s[i], VMSEAL_WS_POLICY, "the other side does not keep up");
                return;
            }
        }
        if (moved) {
            last = now_ms();
            continue;
        }
        if (vmseal_ws_buffered(a) || vmseal_ws_buffered(b))
            continue;
        int wait = 1000;
        if (idle_ms > 0) {
            int64_t left = last + idle_ms - now_ms();
            if (left <= 0) {
                snprintf(why, whylen, "idle for %d s", idle_ms / 1000);
                vmseal_ws_close(a, VMSEAL_WS_GOING_AWAY, "idle timeout");
                vmseal_ws_close(b, VMSEAL_WS_GOING_AWAY, "idle timeout");
                return;
            }
            if (left < wait)
                wait = (int)left;
        }
        struct pollfd p[2] = {{.fd = a->fd, .events = POLLIN}, {.fd = b->fd, .events = POLLIN}};
        if (poll(p, 2, wait) < 0 && errno != EINTR) {
            snprintf(why, whylen, "poll: %s", strerror(errno));
            return;
        }
    }
}
