/* The encrypted live-migration stream (include/vmseal/migstream.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <vmseal/migstream.h>

#include "gcm.h"

static const uint8_t mig_magic[4] = {'V', 'M', 'M', '1'};

struct vmseal_mig_stream {
    gcm_ctx gcm;
    uint64_t nonce;
    uint64_t frames; /* frames sealed / opened (the next frame's counter) */
    uint64_t bytes;  /* clear bytes in data frames */
    int sender;
    int finished;
    int failed;
    /* receiver: the header parsed last, waiting for its body */
    int have_hdr;
    uint8_t type;
    uint32_t len;
};

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

int vmseal_mig_stream_new(const vmseal_secret *key, uint64_t nonce, int sender,
                          vmseal_mig_stream **out)
{
    *out = NULL;
    if (!key || vmseal_secret_len(key) != VMSEAL_MIG_KEY_LEN)
        return vmseal_fail(EINVAL, "migration stream: the key must be %d bytes",
                           VMSEAL_MIG_KEY_LEN);
    vmseal_mig_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return vmseal_fail(ENOMEM, "migration stream: out of memory");
    int rc = gcm_init(&s->gcm, vmseal_secret_cdata(key), sender ? 1 : 0);
    if (rc < 0) {
        free(s);
        return rc;
    }
    s->nonce = nonce;
    s->sender = sender ? 1 : 0;
    *out = s;
    return 0;
}

void vmseal_mig_stream_free(vmseal_mig_stream *s)
{
    if (!s)
        return;
    gcm_done(&s->gcm);
    OPENSSL_cleanse(s, sizeof(*s));
    free(s);
}

int vmseal_mig_finished(const vmseal_mig_stream *s) { return s->finished; }
uint64_t vmseal_mig_bytes(const vmseal_mig_stream *s) { return s->bytes; }
uint64_t vmseal_mig_frames(const vmseal_mig_stream *s) { return s->frames; }

static int mig_nonce(const vmseal_mig_stream *s, uint8_t iv[GCM_NONCE_LEN])
{
    if (s->frames >= UINT32_MAX)
        return vmseal_fail(EOVERFLOW, "migration stream: too many frames");
    put64(iv, s->nonce);
    put32(iv + 8, (uint32_t)s->frames);
    return 0;
}

static void mig_header(uint8_t *hdr, uint8_t type, uint32_t len)
{
    memcpy(hdr, mig_magic, 4);
    hdr[4] = type;
    hdr[5] = hdr[6] = hdr[7] = 0;
    put32(hdr + 8, len);
}

static int mig_seal(vmseal_mig_stream *s, uint8_t type, uint8_t *frame, size_t len,
                    size_t *frame_len)
{
    uint8_t iv[GCM_NONCE_LEN];
    if (!s->sender)
        return vmseal_fail(EINVAL, "migration stream: not a sender");
    if (s->failed || s->finished)
        return vmseal_fail(EPROTO, "migration stream: %s",
                           s->failed ? "failed before" : "already ended");
    int rc = mig_nonce(s, iv);
    if (rc < 0) {
        s->failed = 1;
        return rc;
    }
    mig_header(frame, type, (uint32_t)len);
    uint8_t *p = frame + VMSEAL_MIG_HDR_LEN;
    rc = gcm_encrypt(&s->gcm, iv, frame, VMSEAL_MIG_HDR_LEN, p, len, p, p + len);
    if (rc < 0) {
        s->failed = 1;
        return rc;
    }
    s->frames++;
    *frame_len = VMSEAL_MIG_HDR_LEN + len + VMSEAL_MIG_TAG_LEN;
    return 0;
}

int vmseal_mig_seal_data(vmseal_mig_stream *s, uint8_t *frame, size_t len, size_t *frame_len)
{
    if (len == 0 || len > VMSEAL_MIG_MAX_PAYLOAD)
        return vmseal_fail(EINVAL, "migration stream: a data frame holds 1..%u bytes",
                           VMSEAL_MIG_MAX_PAYLOAD);
    int rc = mig_seal(s, VMSEAL_MIG_DATA, frame, len, frame_len);
    if (rc == 0)
        s->bytes += len;
    return rc;
}

int vmseal_mig_seal_end(vmseal_mig_stream *s, uint8_t *frame, size_t *frame_len)
{
    put64(frame + VMSEAL_MIG_HDR_LEN, s->bytes);
    int rc = mig_seal(s, VMSEAL_MIG_END, frame, 8, frame_len);
    if (rc == 0)
        s->finished = 1;
    return rc;
}

static int mig_bad(vmseal_mig_stream *s, int err, const char *what)
{
    s->failed = 1;
    return vmseal_fail(err, "migration stream: frame %llu: %s", (unsigned long long)s->frames,
                       what);
}

int vmseal_mig_parse_header(vmseal_mig_stream *s, const uint8_t hdr[VMSEAL_MIG_HDR_LEN],
                            size_t *body_len)
{
    *body_len = 0;
    if (s->sender)
        return vmseal_fail(EINVAL, "migration stream: not a receiver");
    if (s->failed)
        return vmseal_fail(EPROTO, "migration stream: failed before");
    if (s->finished)
        return mig_bad(s, EPROTO, "data after the end frame");
    if (memcmp(hdr, mig_magic, 4) != 0)
        return mig_bad(s, EPROTO, "bad magic");
    if (hdr[5] || hdr[6] || hdr[7])
        return mig_bad(s, EPROTO, "reserved bytes not zero");
    uint32_t len = get32(hdr + 8);
    if (hdr[4] == VMSEAL_MIG_DATA) {
        if (len == 0 || len > VMSEAL_MIG_MAX_PAYLOAD)
            return mig_bad(s, EPROTO, "bad data length");
    } else if (hdr[4] == VMSEAL_MIG_END) {
        if (len != 8)
            return mig_bad(s, EPROTO, "bad end frame length");
    } else {
        return mig_bad(s, EPROTO, "unknown frame type");
    }
    s->have_hdr = 1;
    s->type = hdr[4];
    s->len = len;
    *body_len = (size_t)len + VMSEAL_MIG_TAG_LEN;
    return 0;
}

int vmseal_mig_open(vmseal_mig_stream *s, const uint8_t hdr[VMSEAL_MIG_HDR_LEN], uint8_t *body,
                    size_t body_len, size_t *plain_len, int *end)
{
    uint8_t iv[GCM_NONCE_LEN];
    *plain_len = 0;
    *end = 0;
    if (s->sender)
        return vmseal_fail(EINVAL, "migration stream: not a receiver");
    if (s->failed)
        return vmseal_fail(EPROTO, "migration stream: failed before");
    if (!s->have_hdr || hdr[4] != s->type || get32(hdr + 8) != s->len)
        return mig_bad(s, EINVAL, "body without its parsed header");
    s->have_hdr = 0;
    if (body_len != (size_t)s->len + VMSEAL_MIG_TAG_LEN)
        return mig_bad(s, EPROTO, "body length does not match the header");
    int rc = mig_nonce(s, iv);
    if (rc < 0) {
        s->failed = 1;
        return rc;
    }
    rc = gcm_decrypt(&s->gcm, iv, hdr, VMSEAL_MIG_HDR_LEN, body, s->len, body, body + s->len);
    if (rc < 0)
        return mig_bad(s, EBADMSG,
                       "authentication failed (tampered, replayed, dropped or reordered data, "
                       "or another key)");
    s->frames++;
    if (s->type == VMSEAL_MIG_END) {
        uint64_t n = get64(body);
        if (n != s->bytes)
            return mig_bad(s, EPROTO, "the end frame's byte count does not match");
        s->finished = 1;
        *end = 1;
        return 0;
    }
    s->bytes += s->len;
    *plain_len = s->len;
    return 0;
}

/* ---- pumps ---------------------------------------------------------------- */

/* Read exactly len bytes: 1 done, 0 EOF before any byte, -EPIPE EOF part-way,
 * -errno. */
static int read_full(int fd, uint8_t *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return got ? -EPIPE : 0;
        got += (size_t)n;
    }
    return 1;
}

int vmseal_mig_send_fd(vmseal_mig_stream *s, int in_fd, int out_fd)
{
    uint8_t *frame = malloc(VMSEAL_MIG_HDR_LEN + VMSEAL_MIG_FRAME_PAYLOAD + VMSEAL_MIG_TAG_LEN);
    if (!frame)
        return vmseal_fail(ENOMEM, "migration stream: out of memory");
    size_t flen = 0;
    int rc = 0;
    for (;;) {
        /* One read per frame: whatever QEMU has written, up to a frame. */
        ssize_t n = read(in_fd, frame + VMSEAL_MIG_HDR_LEN, VMSEAL_MIG_FRAME_PAYLOAD);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = vmseal_fail(errno, "migration stream: reading the clear stream failed");
            break;
        }
        if (n == 0) {
            rc = vmseal_mig_seal_end(s, frame, &flen);
            if (rc == 0 && (rc = vmseal_write_all(out_fd, frame, flen)) < 0)
                vmseal_fail(-rc, "migration stream: sending the end frame failed");
            break;
        }
        rc = vmseal_mig_seal_data(s, frame, (size_t)n, &flen);
        if (rc < 0)
            break;
        if ((rc = vmseal_write_all(out_fd, frame, flen)) < 0) {
            vmseal_fail(-rc, "migration stream: sending a frame failed");
            break;
        }
    }
    OPENSSL_cleanse(frame, VMSEAL_MIG_HDR_LEN + VMSEAL_MIG_FRAME_PAYLOAD + VMSEAL_MIG_TAG_LEN);
    free(frame);
    return rc;
}

int vmseal_mig_recv_fd(vmseal_mig_stream *s, int in_fd, int out_fd)
{
    uint8_t hdr[VMSEAL_MIG_HDR_LEN];
    uint8_t *body = malloc(VMSEAL_MIG_MAX_PAYLOAD + VMSEAL_MIG_TAG_LEN);
    if (!body)
        return vmseal_fail(ENOMEM, "migration stream: out of memory");
    int rc;
    for (;;) {
        rc = read_full(in_fd, hdr, sizeof(hdr));
        if (rc == 0 && s->finished) {
            rc = 0;
            break;
        }
        if (rc <= 0) {
            rc = rc == 0 || rc == -EPIPE
                     ? vmseal_fail(EPIPE, "migration stream: ended before its end frame "
                                          "(truncated)")
                     : vmseal_fail(-rc, "migration stream: receiving failed");
            break;
        }
        size_t blen = 0, plen = 0;
        int end = 0;
        if ((rc = vmseal_mig_parse_header(s, hdr, &blen)) < 0)
            break;
        rc = read_full(in_fd, body, blen);
        if (rc <= 0) {
            rc = rc == 0 || rc == -EPIPE
                     ? vmseal_fail(EPIPE, "migration stream: ended inside a frame (truncated)")
                     : vmseal_fail(-rc, "migration stream: receiving failed");
            break;
        }
        if ((rc = vmseal_mig_open(s, hdr, body, blen, &plen, &end)) < 0)
            break;
        if (plen && (rc = vmseal_write_all(out_fd, body, plen)) < 0) {
            vmseal_fail(-rc, "migration stream: writing the clear stream failed");
            break;
        }
    }
    OPENSSL_cleanse(body, VMSEAL_MIG_MAX_PAYLOAD + VMSEAL_MIG_TAG_LEN);
    free(body);
    return rc;
}
