/* The encrypted migration stream (migstream.h): frames round-trip; a
 * replayed, dropped, reordered, truncated or bit-flipped frame, another key
 * or another nonce fail, and a failure is final; the descriptor pumps carry
 * a large stream exactly and refuse a truncated or extended one. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/rand.h>

#include <vmseal/migstream.h>

#define NONCE 0x0123456789abcdefULL

typedef struct frame {
    uint8_t *buf;
    size_t len;
} frame;

static vmseal_secret *key;

static int setup(void **state)
{
    (void)state;
    return vmseal_secret_random(VMSEAL_MIG_KEY_LEN, &key);
}

static int teardown(void **state)
{
    (void)state;
    vmseal_secret_free(key);
    return 0;
}

/* Seal n data frames of sizes len[i] (content: i repeated), then the end
 * frame; frames[n] is the end frame. */
static frame *seal_frames(const size_t *len, int n)
{
    vmseal_mig_stream *s = NULL;
    assert_int_equal(vmseal_mig_stream_new(key, NONCE, 1, &s), 0);
    frame *f = calloc((size_t)n + 1, sizeof(*f));
    for (int i = 0; i <= n; i++) {
        size_t pl = i < n ? len[i] : 8;
        f[i].buf = malloc(VMSEAL_MIG_HDR_LEN + pl + VMSEAL_MIG_TAG_LEN);
        if (i < n) {
            memset(f[i].buf + VMSEAL_MIG_HDR_LEN, 'A' + i, pl);
            assert_int_equal(vmseal_mig_seal_data(s, f[i].buf, pl, &f[i].len), 0);
            /* the clear bytes are gone from the frame (checked on payloads of
             * 16 bytes or more: a single ciphertext byte equals its clear
             * byte one time in 256) */
            if (pl >= 16) {
                size_t same = 0;
                for (size_t b = 0; b < pl; b++)
                    same += f[i].buf[VMSEAL_MIG_HDR_LEN + b] == (uint8_t)('A' + i);
                assert_true(same < pl / 2);
            }
        } else {
            assert_int_equal(vmseal_mig_seal_end(s, f[i].buf, &f[i].len), 0);
        }
        assert_int_equal(f[i].len, VMSEAL_MIG_HDR_LEN + pl + VMSEAL_MIG_TAG_LEN);
    }
    assert_true(vmseal_mig_finished(s));
    /* nothing after the end */
    uint8_t extra[VMSEAL_MIG_HDR_LEN + 1 + VMSEAL_MIG_TAG_LEN];
    size_t el;
    assert_int_equal(vmseal_mig_seal_data(s, extra, 1, &el), -EPROTO);
    vmseal_mig_stream_free(s);
    return f;
}

static void free_frames(frame *f, int n)
{
    for (int i = 0; i <= n; i++)
        free(f[i].buf);
    free(f);
}

/* Feed one frame (a copy) to a receiver: the result of parse, then open. */
static int feed(vmseal_mig_stream *r, const frame *f, size_t *plain, int *end, uint8_t *out)
{
    size_t blen = 0;
    int rc = vmseal_mig_parse_header(r, f->buf, &blen);
    if (rc < 0)
        return rc;
    /* what a reader of the stream would take as the body: blen bytes after
     * the header (zeros past the frame, as if the next bytes were those) */
    uint8_t *body = calloc(1, blen);
    size_t have = f->len - VMSEAL_MIG_HDR_LEN;
    memcpy(body, f->buf + VMSEAL_MIG_HDR_LEN, have < blen ? have : blen);
    rc = vmseal_mig_open(r, f->buf, body, blen, plain, end);
    if (rc == 0 && out && *plain)
        memcpy(out, body, *plain);
    free(body);
    return rc;
}

static vmseal_mig_stream *receiver(const vmseal_secret *k, uint64_t nonce)
{
    vmseal_mig_stream *r = NULL;
    assert_int_equal(vmseal_mig_stream_new(k, nonce, 0, &r), 0);
    return r;
}

static void test_roundtrip(void **state)
{
    (void)state;
    size_t len[] = {1, 100, VMSEAL_MIG_MAX_PAYLOAD, 4096};
    frame *f = seal_frames(len, 4);
    vmseal_mig_stream *r = receiver(key, NONCE);
    uint8_t *out = malloc(VMSEAL_MIG_MAX_PAYLOAD);
    size_t plain;
    int end;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(feed(r, &f[i], &plain, &end, out), 0);
        assert_int_equal(plain, len[i]);
        assert_int_equal(end, 0);
        assert_int_equal(out[0], 'A' + i);
        assert_int_equal(out[plain - 1], 'A' + i);
    }
    assert_false(vmseal_mig_finished(r));
    assert_int_equal(feed(r, &f[4], &plain, &end, out), 0);
    assert_int_equal(end, 1);
    assert_true(vmseal_mig_finished(r));
    assert_int_equal(vmseal_mig_bytes(r), 1 + 100 + VMSEAL_MIG_MAX_PAYLOAD + 4096);
    assert_int_equal(vmseal_mig_frames(r), 5);
    /* a frame after the end: refused (a replay of the end, too) */
    assert_int_equal(feed(r, &f[4], &plain, &end, out), -EPROTO);
    vmseal_mig_stream_free(r);
    free(out);
    free_frames(f, 4);
}

/* A receiver given frames in the order idx[]: the first failure's index
 * and code. */
static int run_order(const frame *f, const int *idx, int n, int *failed_at)
{
    vmseal_mig_stream *r = receiver(key, NONCE);
    size_t plain;
    int end, rc = 0;
    *failed_at = -1;
    for (int i = 0; i < n; i++) {
        rc = feed(r, &f[idx[i]], &plain, &end, NULL);
        if (rc < 0) {
            *failed_at = i;
            /* final: even the right next frame is refused now */
            int rc2 = feed(r, &f[i], &plain, &end, NULL);
            assert_true(rc2 < 0);
            break;
        }
    }
    vmseal_mig_stream_free(r);
    return rc;
}

static void test_replay_drop_reorder(void **state)
{
    (void)state;
    size_t len[] = {64, 64, 64, 64};
    frame *f = seal_frames(len, 4);
    int at;
    int good[] = {0, 1, 2, 3, 4};
    assert_int_equal(run_order(f, good, 5, &at), 0);
    int replay[] = {0, 1, 1, 2, 3, 4};
    assert_int_equal(run_order(f, replay, 6, &at), -EBADMSG);
    assert_int_equal(at, 2);
    int replay_first[] = {0, 0};
    assert_int_equal(run_order(f, replay_first, 2, &at), -EBADMSG);
    assert_int_equal(at, 1);
    int drop[] = {0, 2, 3, 4};
    assert_int_equal(run_order(f, drop, 4, &at), -EBADMSG);
    assert_int_equal(at, 1);
    int drop_last_data[] = {0, 1, 2, 4};
    assert_int_equal(run_order(f, drop_last_data, 4, &at), -EBADMSG);
    assert_int_equal(at, 3);
    int reorder[] = {1, 0, 2, 3, 4};
    assert_int_equal(run_order(f, reorder, 5, &at), -EBADMSG);
    assert_int_equal(at, 0);
    int swap[] = {0, 2, 1, 3, 4};
    assert_int_equal(run_order(f, swap, 5, &at), -EBADMSG);
    assert_int_equal(at, 1);
    int end_early[] = {4};
    assert_int_equal(run_order(f, end_early, 1, &at), -EBADMSG);
    free_frames(f, 4);
}

/* Frames from another migration (key or nonce) do not open. */
static void test_other_key_or_nonce(void **state)
{
    (void)state;
    size_t len[] = {32};
    frame *f = seal_frames(len, 1);
    size_t plain;
    int end;
    vmseal_mig_stream *r = receiver(key, NONCE ^ 1);
    assert_int_equal(feed(r, &f[0], &plain, &end, NULL), -EBADMSG);
    vmseal_mig_stream_free(r);
    vmseal_secret *other = NULL;
    assert_int_equal(vmseal_secret_random(VMSEAL_MIG_KEY_LEN, &other), 0);
    r = receiver(other, NONCE);
    assert_int_equal(feed(r, &f[0], &plain, &end, NULL), -EBADMSG);
    vmseal_mig_stream_free(r);
    vmseal_secret_free(other);
    /* wrong key length, and a receiver cannot seal */
    vmseal_secret *short_key = NULL;
    assert_int_equal(vmseal_secret_random(16, &short_key), 0);
    assert_int_equal(vmseal_mig_stream_new(short_key, NONCE, 1, &r), -EINVAL);
    vmseal_secret_free(short_key);
    r = receiver(key, NONCE);
    size_t fl;
    assert_int_equal(vmseal_mig_seal_end(r, f[0].buf, &fl), -EINVAL);
    vmseal_mig_stream_free(r);
    free_frames(f, 1);
}

/* Every single bit flipped anywhere in a data frame and in the end frame
 * fails: the header's structure with -EPROTO, anything else -EBADMSG. */
static void test_bit_flips(void **state)
{
    (void)state;
    size_t len[] = {48};
    frame *f = seal_frames(len, 1);
    for (int which = 0; which <= 1; which++) {
        frame *fr = &f[which];
        for (size_t byte = 0; byte < fr->len; byte++) {
            for (int bit = 0; bit < 8; bit++) {
                vmseal_mig_stream *r = receiver(key, NONCE);
                size_t plain;
                int end;
                if (which == 1)
                    assert_int_equal(feed(r, &f[0], &plain, &end, NULL), 0);
                fr->buf[byte] ^= (uint8_t)(1u << bit);
                int rc = feed(r, fr, &plain, &end, NULL);
                fr->buf[byte] ^= (uint8_t)(1u << bit);
                if (rc != -EBADMSG && rc != -EPROTO)
                    fail_msg("frame %d byte %zu bit %d: %d", which, byte, bit, rc);
                if (byte >= VMSEAL_MIG_HDR_LEN)
                    assert_int_equal(rc, -EBADMSG);
                vmseal_mig_stream_free(r);
            }
        }
    }
    free_frames(f, 1);
}

static void test_bad_headers(void **state)
{
    (void)state;
    vmseal_mig_stream *r = receiver(key, NONCE);
    uint8_t h[VMSEAL_MIG_HDR_LEN] = {'V', 'M', 'M', '1', 1, 0, 0, 0, 0, 0x10, 0, 1};
    size_t blen;
    /* one byte over the largest payload: refused before any body is read */
    assert_int_equal(vmseal_mig_parse_header(r, h, &blen), -EPROTO);
    assert_int_equal(blen, 0);
    vmseal_mig_stream_free(r);
    uint8_t zero[VMSEAL_MIG_HDR_LEN] = {'V', 'M', 'M', '1', 1, 0, 0, 0, 0, 0, 0, 0};
    r = receiver(key, NONCE);
    assert_int_equal(vmseal_mig_parse_header(r, zero, &blen), -EPROTO);
    vmseal_mig_stream_free(r);
    uint8_t end9[VMSEAL_MIG_HDR_LEN] = {'V', 'M', 'M', '1', 2, 0, 0, 0, 0, 0, 0, 9};
    r = receiver(key, NONCE);
    assert_int_equal(vmseal_mig_parse_header(r, end9, &blen), -EPROTO);
    vmseal_mig_stream_free(r);
    uint8_t max[VMSEAL_MIG_HDR_LEN] = {'V', 'M', 'M', '1', 1, 0, 0, 0, 0, 0x10, 0, 0};
    r = receiver(key, NONCE);
    assert_int_equal(vmseal_mig_parse_header(r, max, &blen), 0);
    assert_int_equal(blen, VMSEAL_MIG_MAX_PAYLOAD + VMSEAL_MIG_TAG_LEN);
    /* a body that is not the header's */
    uint8_t body[64] = {0};
    size_t plain;
    int end;
    assert_int_equal(vmseal_mig_open(r, max, body, sizeof(body), &plain, &end), -EPROTO);
    vmseal_mig_stream_free(r);
}

/* ---- pumps over sockets ---------------------------------------------------- */

typedef struct pump {
    vmseal_mig_stream *s;
    int in, out, rc;
} pump;

static void *pump_send(void *arg)
{
    pump *p = arg;
    p->rc = vmseal_mig_send_fd(p->s, p->in, p->out);
    close(p->out);
    return NULL;
}

static void *writer(void *arg)
{
    pump *p = arg;
    uint8_t *data = (uint8_t *)p->s; /* abused: the buffer */
    p->rc = vmseal_write_all(p->out, data, (size_t)p->in);
    close(p->out);
    return NULL;
}

static void *reader(void *arg)
{
    pump *p = arg;
    uint8_t *data = (uint8_t *)p->s;
    size_t got = 0;
    for (;;) {
        ssize_t n = read(p->in, data + got, (size_t)p->rc - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        if (got == (size_t)p->rc)
            break;
    }
    p->rc = (int)got;
    return NULL;
}

/* clear -> [send_fd] -> wire (captured) -> optional tamper -> [recv_fd] -> out */
static int through(const uint8_t *data, size_t len, uint8_t **wire_out, size_t *wire_len,
                   void (*tamper)(uint8_t **w, size_t *wl), uint8_t *out, size_t *out_len)
{
    int a[2], b[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, b), 0);
    vmseal_mig_stream *s = NULL, *r = NULL;
    assert_int_equal(vmseal_mig_stream_new(key, NONCE, 1, &s), 0);
    /* the clear source */
    pump w = {(vmseal_mig_stream *)(uintptr_t)data, (int)len, a[0], 0};
    pump p = {s, a[1], b[0], 0};
    pthread_t tw, tp;
    pthread_create(&tw, NULL, writer, &w);
    pthread_create(&tp, NULL, pump_send, &p);
    /* capture the wire */
    size_t cap = len + len / 16 + 4096, wl = 0;
    uint8_t *wire = malloc(cap);
    ssize_t n;
    while ((n = read(b[1], wire + wl, cap - wl)) > 0)
        wl += (size_t)n;
    pthread_join(tw, NULL);
    pthread_join(tp, NULL);
    close(a[1]);
    close(b[1]);
    assert_int_equal(p.rc, 0);
    vmseal_mig_stream_free(s);
    if (tamper)
        tamper(&wire, &wl);
    /* replay the (tampered) wire into a receiver */
    int c[2], d[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, c), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, d), 0);
    assert_int_equal(vmseal_mig_stream_new(key, NONCE, 0, &r), 0);
    pump w2 = {(vmseal_mig_stream *)(uintptr_t)wire, (int)wl, c[0], 0};
    pump rd = {(vmseal_mig_stream *)(uintptr_t)out, d[1], -1, (int)*out_len};
    pthread_t tr;
    pthread_create(&tw, NULL, writer, &w2);
    pthread_create(&tr, NULL, reader, &rd);
    int rc = vmseal_mig_recv_fd(r, c[1], d[0]);
    close(d[0]);
    close(c[1]); /* a writer still writing gets EPIPE */
    pthread_join(tw, NULL);
    pthread_join(tr, NULL);
    close(d[1]);
    vmseal_mig_stream_free(r);
    *out_len = (size_t)rd.rc;
    if (wire_out)
        *wire_out = wire, *wire_len = wl;
    else
        free(wire);
    return rc;
}

#define BIG (8u << 20)

static uint8_t *big_data(void)
{
    uint8_t *d = malloc(BIG);
    assert_int_equal(RAND_bytes(d, BIG), 1);
    /* a marker that must not cross in clear */
    for (size_t off = 0; off + 32 < BIG; off += 65536)
        memcpy(d + off, "VMSEAL-MIGSTREAM-TEST-MARKER-XY", 32);
    return d;
}

static void test_pump_roundtrip(void **state)
{
    (void)state;
    uint8_t *d = big_data(), *out = malloc(BIG), *wire;
    size_t out_len = BIG, wl;
    assert_int_equal(through(d, BIG, &wire, &wl, NULL, out, &out_len), 0);
    assert_int_equal(out_len, BIG);
    assert_memory_equal(d, out, BIG);
    assert_null(memmem(wire, wl, "VMSEAL-MIGSTREAM-TEST-MARKER", 28));
    assert_true(wl > BIG && wl < BIG + BIG / 64);
    free(wire);
    free(d);
    free(out);
}

static void tamper_truncate_boundary(uint8_t **w, size_t *wl)
{
    /* drop the end frame: a cut at a frame boundary */
    *wl -= VMSEAL_MIG_HDR_LEN + 8 + VMSEAL_MIG_TAG_LEN;
}

static void tamper_truncate_mid(uint8_t **w, size_t *wl)
{
    (void)w;
    *wl /= 2;
}

static void tamper_extend(uint8_t **w, size_t *wl)
{
    /* the stream goes on after its end frame: its first frame again */
    *w = realloc(*w, *wl + 100);
    memcpy(*w + *wl, *w, 100);
    *wl += 100;
}

static void tamper_flip(uint8_t **w, size_t *wl)
{
    (*w)[*wl / 3] ^= 0x20;
}

static void tamper_empty(uint8_t **w, size_t *wl)
{
    (void)w;
    *wl = 0;
}

static void test_pump_tampered(void **state)
{
    (void)state;
    uint8_t *d = big_data(), *out = malloc(BIG);
    size_t out_len = BIG;
    assert_int_equal(through(d, BIG, NULL, NULL, tamper_truncate_boundary, out, &out_len), -EPIPE);
    out_len = BIG;
    assert_int_equal(through(d, BIG, NULL, NULL, tamper_truncate_mid, out, &out_len), -EPIPE);
    assert_true(out_len < BIG / 2);
    out_len = BIG;
    assert_int_equal(through(d, BIG, NULL, NULL, tamper_extend, out, &out_len), -EPROTO);
    out_len = BIG;
    int rc = through(d, BIG, NULL, NULL, tamper_flip, out, &out_len);
    assert_true(rc == -EBADMSG || rc == -EPROTO);
    assert_true(out_len < BIG / 3 + 1);
    out_len = BIG;
    assert_int_equal(through(d, BIG, NULL, NULL, tamper_empty, out, &out_len), -EPIPE);
    assert_int_equal(out_len, 0);
    free(d);
    free(out);
}

/* Streams sealed by another AES-GCM implementation (Python's cryptography,
 * fuzz/gen-migstream-corpus.py) open, and the broken ones do not. */
static void test_python_streams(void **state)
{
    (void)state;
    const char *src = getenv("VMSEAL_SRC");
    if (!src)
        skip();
    static const uint8_t k[32] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                  16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
    vmseal_secret *fk = NULL;
    assert_int_equal(vmseal_secret_from(k, sizeof(k), &fk), 0);
    const char *names[] = {"valid-empty", "valid-one", "valid-three", "valid-4k", "bad-bitflip",
                           "bad-truncated", "bad-no-end", "bad-reordered", "bad-extended",
                           "bad-length"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/fuzz/corpus/migstream/%s", src, names[i]);
        int fd = open(path, O_RDONLY);
        assert_true(fd >= 0);
        int out = open("/dev/null", O_WRONLY);
        vmseal_mig_stream *r = NULL;
        assert_int_equal(vmseal_mig_stream_new(fk, 0x0706050403020100ULL, 0, &r), 0);
        int rc = vmseal_mig_recv_fd(r, fd, out);
        if (names[i][0] == 'v') {
            if (rc != 0)
                fail_msg("%s: %s", names[i], vmseal_last_error());
        } else if (rc == 0) {
            fail_msg("%s accepted", names[i]);
        }
        if (strcmp(names[i], "valid-three") == 0)
            assert_int_equal(vmseal_mig_bytes(r), 100 + 1 + 1024);
        vmseal_mig_stream_free(r);
        close(fd);
        close(out);
    }
    vmseal_secret_free(fk);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_replay_drop_reorder),
        cmocka_unit_test(test_other_key_or_nonce),
        cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_pump_roundtrip),
        cmocka_unit_test(test_pump_tampered),
        cmocka_unit_test(test_python_streams),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
