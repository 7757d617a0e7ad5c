/* vmseal-hostd — the monitor <-> network child framing (privsep.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "privsep.h"

size_t ps_max_len(uint32_t type)
{
    switch (type) {
    case PS_READY: return 4;
    case PS_REQUEST: return 8 + 4 + 3 * 4 + PS_PATH_MAX + PS_SUBJECT_MAX + PS_FPR_MAX + 4 + PS_BODY_MAX;
    case PS_RESPONSE: return 8 + 4 + 4 + PS_RESPONSE_MAX;
    case PS_REGISTER: return 8 + 4 * 4 + 3 * PS_TEXT_MAX + VMSEAL_KD_PUB_LEN;
    case PS_RESULT: return 8 + 4 + 4 + PS_TEXT_MAX;
    case PS_FETCH_KEYS: return 8 + 4 + PS_KEYS_MAX * (4 + VMSEAL_KEYSAFE_KEK_ID_MAX);
    case PS_KEYS:
        return 8 + 4 + 4 + PS_TEXT_MAX + 3 * 4 +
               PS_KEYS_MAX * (3 * 4 + VMSEAL_KEYSAFE_KEK_ID_MAX + VMSEAL_KEYSAFE_PROVIDER_MAX +
                              VMSEAL_KD_BLOB_LEN) +
               PS_KEYS_MAX * (4 + VMSEAL_KEYSAFE_KEK_ID_MAX) +
               PS_KEYS_MAX * (2 * 4 + VMSEAL_KEYSAFE_KEK_ID_MAX + PS_TEXT_MAX);
    case PS_CONSOLE_OPEN: return 8 + 4 + 4 + PS_UUID_MAX + 4 + PS_FPR_MAX;
    case PS_CONSOLE_OPENED: return 8 + 4 + 4 + PS_TEXT_MAX;
    case PS_CONSOLE_DATA: return 8 + 4 + PS_CONSOLE_CHUNK;
    case PS_CONSOLE_CLOSE: return 8 + 4 + PS_TEXT_MAX;
    default: return 0;
    }
}

static const char *const methods[] = {NULL, "GET", "POST", "PUT", "DELETE", "PATCH"};

const char *ps_method_name(uint32_t m)
{
    return m >= 1 && m <= 5 ? methods[m] : NULL;
}

uint32_t ps_method_of(const char *name)
{
    for (uint32_t m = 1; m <= 5; m++)
        if (name && strcmp(name, methods[m]) == 0)
            return m;
    return 0;
}

/* ------------------------------------------------------------ building */

static void put(ps_buf *b, const void *data, size_t len)
{
    if (b->err)
        return;
    if (b->len + len > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap < b->len + len)
            ncap *= 2;
        uint8_t *n = malloc(ncap);
        if (!n) {
            b->err = -ENOMEM;
            return;
        }
        if (b->p) {
            memcpy(n, b->p, b->len);
            OPENSSL_cleanse(b->p, b->cap);
            free(b->p);
        }
        b->p = n;
        b->cap = ncap;
    }
    if (len)
        memcpy(b->p + b->len, data, len);
    b->len += len;
}

void ps_put_u32(ps_buf *b, uint32_t v) { put(b, &v, 4); }
void ps_put_u64(ps_buf *b, uint64_t v) { put(b, &v, 8); }

void ps_put_bytes(ps_buf *b, const void *data, size_t len)
{
    if (len > UINT32_MAX) {
        b->err = -E2BIG;
        return;
    }
    ps_put_u32(b, (uint32_t)len);
    put(b, data, len);
}

void ps_put_str(ps_buf *b, const char *s)
{
    ps_put_bytes(b, s ? s : "", s ? strlen(s) : 0);
}

void ps_buf_free(ps_buf *b)
{
    if (b->p) {
        OPENSSL_cleanse(b->p, b->cap);
        free(b->p);
    }
    memset(b, 0, sizeof(*b));
}

/* ------------------------------------------------------------- reading */

static const uint8_t *take(ps_rd *r, size_t n)
{
    if (r->err || n > r->len - r->off) {
        r->err = -EPROTO;
        return NULL;
    }
    const uint8_t *p = r->p + r->off;
    r->off += n;
    return p;
}

uint32_t ps_get_u32(ps_rd *r)
{
    uint32_t v = 0;
    const uint8_t *p = take(r, 4);
    if (p)
        memcpy(&v, p, 4);
    return v;
}

uint64_t ps_get_u64(ps_rd *r)
{
    uint64_t v = 0;
    const uint8_t *p = take(r, 8);
    if (p)
        memcpy(&v, p, 8);
    return v;
}

const uint8_t *ps_get_bytes(ps_rd *r, size_t max, size_t *len)
{
    uint32_t n = ps_get_u32(r);
    *len = 0;
    if (r->err)
        return NULL;
    if (n > max) {
        r->err = -EPROTO;
        return NULL;
    }
    const uint8_t *p = take(r, n);
    if (p)
        *len = n;
    return p;
}

void ps_get_str(ps_rd *r, char *out, size_t outlen, size_t max)
{
    size_t n = 0;
    out[0] = '\0';
    const uint8_t *p = ps_get_bytes(r, max < outlen ? max : outlen - 1, &n);
    if (!p)
        return;
    if (memchr(p, 0, n)) {
        r->err = -EPROTO;
        return;
    }
    memcpy(out, p, n);
    out[n] = '\0';
}

int ps_rd_end(ps_rd *r)
{
    if (!r->err && r->off != r->len)
        r->err = -EPROTO;
    return r->err;
}

/* ------------------------------------------------------------- channel */

void ps_chan_init(ps_chan *c, int fd)
{
    c->fd = fd;
    pthread_mutex_init(&c->wlock, NULL);
}

void ps_chan_destroy(ps_chan *c)
{
    pthread_mutex_destroy(&c->wlock);
}

static int send_all(int fd, const void *p, size_t n)
{
    for (;;) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w == (ssize_t)n)
            return 0;
        if (w < 0 && errno == EINTR)
            continue;
        return w < 0 ? -errno : -EIO;   /* seqpacket: all or nothing */
    }
}

int ps_send(ps_chan *c, uint32_t type, const ps_buf *payload)
{
    if (payload->err)
        return vmseal_fail(payload->err, "privsep: message could not be built");
    if (payload->len > ps_max_len(type))
        return vmseal_fail(E2BIG, "privsep: message type %u of %zu bytes is too long", type,
                           payload->len);
    uint32_t hdr[2] = {type, (uint32_t)payload->len};
    pthread_mutex_lock(&c->wlock);
    int r = send_all(c->fd, hdr, sizeof(hdr));
    for (size_t off = 0; r == 0 && off < payload->len; off += PS_CHUNK) {
        size_t n = payload->len - off < PS_CHUNK ? payload->len - off : PS_CHUNK;
        r = send_all(c->fd, payload->p + off, n);
    }
    pthread_mutex_unlock(&c->wlock);
    return r < 0 ? vmseal_fail(r, "privsep: send: %s", strerror(-r)) : 0;
}

/* One packet of at most n bytes into p: its length, 0 at end of file. */
static ssize_t recv_packet(int fd, void *p, size_t n)
{
    char cbuf[64];
    struct iovec iov = {.iov_base = p, .iov_len = n};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                        .msg_controllen = sizeof(cbuf)};
    ssize_t r;
    do
        r = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return vmseal_fail(errno, "privsep: recv: %s", strerror(errno));
    if (mh.msg_flags & MSG_TRUNC)
        return vmseal_fail(EPROTO, "privsep: a packet longer than announced");
    if (mh.msg_controllen > 0 || (mh.msg_flags & MSG_CTRUNC)) {
        /* never expected: close what was passed, drop the peer */
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
                for (size_t i = 0; i < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
                    int fd2;
                    memcpy(&fd2, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
                    close(fd2);
                }
        return vmseal_fail(EPROTO, "privsep: descriptors or control data passed");
    }
    return r;
}

int ps_recv(ps_chan *c, uint32_t *type, uint8_t **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    uint32_t hdr[2];
    ssize_t r = recv_packet(c->fd, hdr, sizeof(hdr));
    if (r == 0)
        return -EPIPE;
    if (r < 0)
        return (int)r;
    if (r != sizeof(hdr))
        return vmseal_fail(EPROTO, "privsep: a header of %zd bytes", r);
    size_t max = ps_max_len(hdr[0]);
    if (max == 0)
        return vmseal_fail(EPROTO, "privsep: unknown message type %u", hdr[0]);
    if (hdr[1] > max)
        return vmseal_fail(EPROTO, "privsep: message type %u of %u bytes (at most %zu)", hdr[0],
                           hdr[1], max);
    uint8_t *p = malloc(hdr[1] ? hdr[1] : 1);
    if (!p)
        return vmseal_fail(ENOMEM, "out of memory");
    size_t got = 0;
    while (got < hdr[1]) {
        r = recv_packet(c->fd, p + got, hdr[1] - got);
        if (r <= 0) {
            ps_msg_free(p, hdr[1]);
            return r == 0 ? vmseal_fail(EPROTO, "privsep: end of file inside a message") : (int)r;
        }
        got += (size_t)r;
    }
    *type = hdr[0];
    *data = p;
    *len = hdr[1];
    return 0;
}

void ps_msg_free(uint8_t *data, size_t len)
{
    if (data) {
        OPENSSL_cleanse(data, len);
        free(data);
    }
}

/* ------------------------------------------------------------ messages */

int ps_request_parse(const uint8_t *data, size_t len, ps_request *out)
{
    ps_rd r = {.p = data, .len = len};
    memset(out, 0, sizeof(*out));
    out->id = ps_get_u64(&r);
    out->method = ps_get_u32(&r);
    ps_get_str(&r, out->path, sizeof(out->path), PS_PATH_MAX);
    ps_get_str(&r, out->subject, sizeof(out->subject), PS_SUBJECT_MAX);
    ps_get_str(&r, out->fingerprint, sizeof(out->fingerprint), PS_FPR_MAX);
    out->body = ps_get_bytes(&r, PS_BODY_MAX, &out->body_len);
    if (ps_rd_end(&r) < 0)
        return vmseal_fail(EPROTO, "privsep: malformed REQUEST (a length out of bounds?)");
    if (!ps_method_name(out->method))
        return vmseal_fail(EPROTO, "privsep: REQUEST with unknown method %u", out->method);
    if (out->path[0] != '/')
        return vmseal_fail(EPROTO, "privsep: REQUEST path does not start with /");
    return 0;
}

void ps_keys_encode(const ps_keys *k, ps_buf *b)
{
    ps_put_u64(b, k->id);
    ps_put_u32(b, k->err);
    ps_put_str(b, k->message);
    ps_put_u32(b, (uint32_t)k->nkeys);
    for (size_t i = 0; i < k->nkeys; i++) {
        ps_put_str(b, k->keys[i].kek_id);
        ps_put_str(b, k->keys[i].provider);
        ps_put_bytes(b, k->keys[i].blob, VMSEAL_KD_BLOB_LEN);
    }
    ps_put_u32(b, (uint32_t)k->ndenied);
    for (size_t i = 0; i < k->ndenied; i++)
        ps_put_str(b, k->denied[i]);
    ps_put_u32(b, (uint32_t)k->nfailed);
    for (size_t i = 0; i < k->nfailed; i++) {
        ps_put_str(b, k->failed[i].kek_id);
        ps_put_str(b, k->failed[i].reason);
    }
}

void ps_keys_free(ps_keys *k)
{
    if (k->keys)
        OPENSSL_cleanse(k->keys, k->nkeys * sizeof(*k->keys));
    free(k->keys);
    free(k->denied);
    free(k->failed);
    k->keys = NULL;
    k->denied = NULL;
    k->failed = NULL;
    k->nkeys = k->ndenied = k->nfailed = 0;
}

int ps_keys_parse(const uint8_t *data, size_t len, ps_keys *out)
{
    ps_rd r = {.p = data, .len = len};
    memset(out, 0, sizeof(*out));
    out->id = ps_get_u64(&r);
    out->err = ps_get_u32(&r);
    ps_get_str(&r, out->message, sizeof(out->message), PS_TEXT_MAX);
    uint32_t n = ps_get_u32(&r);
    if (!r.err && n > PS_KEYS_MAX)
        r.err = -EPROTO;
    if (!r.err && n && !(out->keys = calloc(n, sizeof(*out->keys))))
        r.err = -ENOMEM;
    for (uint32_t i = 0; !r.err && i < n; i++) {
        ps_sealed_key *k = &out->keys[i];
        ps_get_str(&r, k->kek_id, sizeof(k->kek_id), VMSEAL_KEYSAFE_KEK_ID_MAX);
        ps_get_str(&r, k->provider, sizeof(k->provider), VMSEAL_KEYSAFE_PROVIDER_MAX);
        size_t bl = 0;
        const uint8_t *blob = ps_get_bytes(&r, VMSEAL_KD_BLOB_LEN, &bl);
        if (blob && bl != VMSEAL_KD_BLOB_LEN)
            r.err = -EPROTO;
        if (!r.err)
            memcpy(k->blob, blob, VMSEAL_KD_BLOB_LEN);
        out->nkeys = i + 1;
    }
    n = ps_get_u32(&r);
    if (!r.err && n > PS_KEYS_MAX)
        r.err = -EPROTO;
    if (!r.err && n && !(out->denied = calloc(n, sizeof(*out->denied))))
        r.err = -ENOMEM;
    for (uint32_t i = 0; !r.err && i < n; i++) {
        ps_get_str(&r, out->denied[i], sizeof(out->denied[i]), VMSEAL_KEYSAFE_KEK_ID_MAX);
        out->ndenied = i + 1;
    }
    n = ps_get_u32(&r);
    if (!r.err && n > PS_KEYS_MAX)
        r.err = -EPROTO;
    if (!r.err && n && !(out->failed = calloc(n, sizeof(*out->failed))))
        r.err = -ENOMEM;
    for (uint32_t i = 0; !r.err && i < n; i++) {
        ps_get_str(&r, out->failed[i].kek_id, sizeof(out->failed[i].kek_id),
                   VMSEAL_KEYSAFE_KEK_ID_MAX);
        ps_get_str(&r, out->failed[i].reason, sizeof(out->failed[i].reason), PS_TEXT_MAX);
        out->nfailed = i + 1;
    }
    if (ps_rd_end(&r) < 0) {
        int e = r.err;
        ps_keys_free(out);
        return vmseal_fail(e == -ENOMEM ? ENOMEM : EPROTO, "privsep: malformed KEYS");
    }
    return 0;
}
