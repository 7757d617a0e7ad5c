/* Sealed files: round trips (memory and pipes) and every kind of damage. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/rand.h>

#include <vmseal/sealed.h>

#define CS VMSEAL_SEALED_CHUNK_DEFAULT
#define TAG VMSEAL_SEALED_TAG_LEN

static vmseal_secret *kek, *kek2;

typedef struct mem {
    uint8_t *data;
    size_t len, cap, pos;
    size_t max_read;   /* simulate short reads (pipes); 0 = no limit */
} mem;

static ssize_t mem_read(void *ctx, void *buf, size_t len)
{
    mem *m = ctx;
    size_t n = m->len - m->pos;
    if (n > len)
        n = len;
    if (m->max_read && n > m->max_read)
        n = m->max_read;
    if (n)
        memcpy(buf, m->data + m->pos, n);
    m->pos += n;
    return (ssize_t)n;
}

static int mem_write(void *ctx, const void *buf, size_t len)
{
    mem *m = ctx;
    if (m->len + len > m->cap) {
        m->cap = (m->len + len) * 2 + 64;
        m->data = realloc(m->data, m->cap);
        assert_non_null(m->data);
    }
    memcpy(m->data + m->len, buf, len);
    m->len += len;
    return 0;
}

static mem mem_random(size_t len)
{
    mem m = {malloc(len ? len : 1), len, len, 0, 0};
    assert_non_null(m.data);
    if (len)
        assert_int_equal(RAND_bytes(m.data, (int)len), 1);
    return m;
}

static mem mem_copy(const mem *src)
{
    mem m = {malloc(src->len ? src->len : 1), src->len, src->len, 0, 0};
    if (src->len)
        memcpy(m.data, src->data, src->len);
    return m;
}

static mem seal_mem(const vmseal_secret *k, const mem *plain, uint32_t cs)
{
    mem in = *plain, out = {0};
    in.pos = 0;
    vmseal_stream io = {mem_read, &in, mem_write, &out};
    if (vmseal_seal(k, "local", "kek-1", cs, &io) != 0)
        fail_msg("seal: %s", vmseal_last_error());
    return out;
}

/* Unseal; returns rc and frees the output unless *out is wanted. */
static int unseal_mem(const vmseal_secret *k, const mem *sealed, mem *out_keep)
{
    mem in = *sealed, out = {0};
    in.pos = 0;
    vmseal_stream io = {mem_read, &in, mem_write, &out};
    int rc = vmseal_unseal(k, &io, NULL);
    if (out_keep)
        *out_keep = out;
    else
        free(out.data);
    return rc;
}

static size_t sealed_size(const mem *s, size_t plain_len, uint32_t cs)
{
    vmseal_sealed_info info;
    int h = vmseal_sealed_probe_header(s->data, s->len, &info);
    assert_true(h > 0);
    return (size_t)h + plain_len / cs * (cs + TAG) + plain_len % cs + TAG;
}

static int setup(void **state)
{
    (void)state;
    return vmseal_secret_random(32, &kek) || vmseal_secret_random(32, &kek2);
}

static int teardown(void **state)
{
    (void)state;
    vmseal_secret_free(kek);
    vmseal_secret_free(kek2);
    return 0;
}

static void test_round_trip_sizes(void **state)
{
    (void)state;
    const size_t sizes[] = {0, 1, CS - 1, CS, CS + 1, 2 * CS, 3 * 1024 * 1024 + 7};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        mem plain = mem_random(sizes[i]);
        mem sealed = seal_mem(kek, &plain, 0);
        assert_int_equal(sealed.len, sealed_size(&sealed, sizes[i], CS));
        /* Short reads as from a pipe. */
        sealed.max_read = 1000;
        mem out;
        int rc = unseal_mem(kek, &sealed, &out);
        if (rc != 0)
            fail_msg("size %zu: %s", sizes[i], vmseal_last_error());
        assert_int_equal(out.len, sizes[i]);
        assert_true(sizes[i] == 0 || memcmp(out.data, plain.data, sizes[i]) == 0);
        /* Nothing of the plaintext shows in the sealed file. */
        if (sizes[i] >= 64)
            assert_null(memmem(sealed.data, sealed.len, plain.data, 32));
        free(out.data);
        free(sealed.data);
        free(plain.data);
    }
}

static void test_probe_header(void **state)
{
    (void)state;
    mem plain = mem_random(10);
    mem sealed = seal_mem(kek, &plain, 0);
    vmseal_sealed_info info;
    int h = vmseal_sealed_probe_header(sealed.data, sealed.len, &info);
    assert_true(h > (int)VMSEAL_SEALED_FIXED_LEN && h <= (int)VMSEAL_SEALED_HEADER_MAX);
    assert_int_equal(info.version, 1);
    assert_int_equal(info.chunk_size, CS);
    assert_string_equal(info.provider, "local");
    assert_string_equal(info.kek_id, "kek-1");
    assert_int_equal(memcmp(sealed.data, "VMSEALSF", 8), 0);
    /* Short buffers: -ENODATA, other data: -EPROTO, other version: -ENOTSUP. */
    assert_int_equal(vmseal_sealed_probe_header(sealed.data, 20, &info), -ENODATA);
    assert_int_equal(vmseal_sealed_probe_header(sealed.data, (size_t)h - 1, &info), -ENODATA);
    assert_int_equal(vmseal_sealed_probe_header((const uint8_t *)"LUKS\xba\xbe", 6, &info),
                     -EPROTO);
    mem copy = mem_copy(&sealed);
    copy.data[8] = 2;
    assert_int_equal(vmseal_sealed_probe_header(copy.data, copy.len, &info), -ENOTSUP);
    assert_int_equal(unseal_mem(kek, &copy, NULL), -ENOTSUP);
    copy.data[8] = 1;
    copy.data[14] = 0x03; /* chunk size not a power of two */
    assert_int_equal(vmseal_sealed_probe_header(copy.data, copy.len, &info), -EPROTO);
    free(copy.data);
    /* Empty or foreign input. */
    mem empty = {0};
    assert_int_equal(unseal_mem(kek, &empty, NULL), -EPROTO);
    mem foreign = mem_random(100);
    foreign.data[0] = 'x';
    assert_int_equal(unseal_mem(kek, &foreign, NULL), -EPROTO);
    assert_non_null(strstr(vmseal_last_error(), "not a vmseal sealed file"));
    free(foreign.data);
    free(sealed.data);
    free(plain.data);
}

static void test_wrong_kek(void **state)
{
    (void)state;
    mem plain = mem_random(1000);
    mem sealed = seal_mem(kek, &plain, 0), out;
    assert_int_equal(unseal_mem(kek2, &sealed, &out), -EBADMSG);
    assert_non_null(strstr(vmseal_last_error(), "wrong key"));
    assert_non_null(strstr(vmseal_last_error(), "kek-1"));
    assert_int_equal(out.len, 0); /* nothing written */
    free(out.data);
    free(sealed.data);
    free(plain.data);
}

static void test_header_tamper_before_output(void **state)
{
    (void)state;
    mem plain = mem_random(100);
    mem sealed = seal_mem(kek, &plain, 0), out;
    int h = vmseal_sealed_probe_header(sealed.data, sealed.len, NULL);
    /* Relabel the KEK id ("kek-1" -> "kek-2"): parses, but the MAC fails
     * before a single plaintext byte is written. */
    uint8_t *id = memmem(sealed.data, (size_t)h, "kek-1", 5);
    assert_non_null(id);
    id[4] = '2';
    assert_int_equal(unseal_mem(kek, &sealed, &out), -EBADMSG);
    assert_non_null(strstr(vmseal_last_error(), "altered"));
    assert_int_equal(out.len, 0);
    free(out.data);
    id[4] = '1';
    /* The nonce prefix is covered too. */
    sealed.data[16] ^= 1;
    assert_int_equal(unseal_mem(kek, &sealed, &out), -EBADMSG);
    assert_int_equal(out.len, 0);
    free(out.data);
    free(sealed.data);
    free(plain.data);
}

static void test_truncation_everywhere(void **state)
{
    (void)state;
    /* Small chunks: every possible truncation point. */
    const uint32_t cs = 512;
    mem plain = mem_random(5 * cs + 100);
    mem sealed = seal_mem(kek, &plain, cs);
    size_t full = sealed.len;
    assert_int_equal(unseal_mem(kek, &sealed, NULL), 0);
    for (size_t n = 0; n < full; n++) {
        sealed.len = n;
        int rc = unseal_mem(kek, &sealed, NULL);
        if (rc != -EPROTO && rc != -EBADMSG)
            fail_msg("truncated to %zu of %zu bytes: got %d", n, full, rc);
    }
    sealed.len = full;
    free(sealed.data);
    free(plain.data);

    /* Default chunks, plaintext a whole number of chunks (empty final chunk):
     * cut at each chunk boundary and inside each chunk. */
    plain = mem_random(3 * CS);
    sealed = seal_mem(kek, &plain, 0);
    full = sealed.len;
    size_t h = (size_t)vmseal_sealed_probe_header(sealed.data, sealed.len, NULL);
    for (size_t c = 0; c <= 3; c++) {
        size_t cuts[] = {h + c * (CS + TAG), h + c * (CS + TAG) + 1, h + c * (CS + TAG) + 7000};
        for (size_t k = 0; k < 3; k++) {
            if (cuts[k] >= full)
                continue;
            sealed.len = cuts[k];
            int rc = unseal_mem(kek, &sealed, NULL);
            if (rc == 0)
                fail_msg("truncated at %zu of %zu: not detected", cuts[k], full);
            if (k == 0)
                assert_non_null(strstr(vmseal_last_error(), "truncated"));
        }
    }
    free(sealed.data);
    free(plain.data);
}

static void test_chunk_swap_reorder_drop_append(void **state)
{
    (void)state;
    const size_t chunk = CS + TAG;
    mem pa = mem_random(3 * CS + 10), pb = mem_random(3 * CS + 10);
    mem a = seal_mem(kek, &pa, 0), b = seal_mem(kek, &pb, 0);
    size_t h = (size_t)vmseal_sealed_probe_header(a.data, a.len, NULL);
    assert_int_equal(h, (size_t)vmseal_sealed_probe_header(b.data, b.len, NULL));

    /* Chunk 1 of b put into a (same KEK, same position). */
    mem t = mem_copy(&a);
    memcpy(t.data + h + chunk, b.data + h + chunk, chunk);
    assert_int_equal(unseal_mem(kek, &t, NULL), -EBADMSG);
    assert_non_null(strstr(vmseal_last_error(), "chunk 1"));
    free(t.data);
    /* Whole header of b on a's chunks. */
    t = mem_copy(&a);
    memcpy(t.data, b.data, h);
    assert_int_equal(unseal_mem(kek, &t, NULL), -EBADMSG);
    free(t.data);
    /* Chunks 0 and 1 swapped. */
    t = mem_copy(&a);
    memcpy(t.data + h, a.data + h + chunk, chunk);
    memcpy(t.data + h + chunk, a.data + h, chunk);
    assert_int_equal(unseal_mem(kek, &t, NULL), -EBADMSG);
    assert_non_null(strstr(vmseal_last_error(), "chunk 0"));
    free(t.data);
    /* Chunk 1 dropped. */
    t = mem_copy(&a);
    memmove(t.data + h + chunk, t.data + h + 2 * chunk, t.len - h - 2 * chunk);
    t.len -= chunk;
    assert_int_equal(unseal_mem(kek, &t, NULL), -EBADMSG);
    free(t.data);
    /* Final chunk of a non-final size: data appended. */
    const size_t extra[] = {1, TAG, 100, chunk, 2 * chunk};
    for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
        t = mem_copy(&a);
        for (size_t k = 0; k < extra[i]; k++)
            mem_write(&t, "\0", 1);
        int rc = unseal_mem(kek, &t, NULL);
        if (rc != -EBADMSG)
            fail_msg("appended %zu bytes: got %d", extra[i], rc);
        free(t.data);
    }
    /* Appending the final chunk again. */
    t = mem_copy(&a);
    mem_write(&t, a.data + h + 3 * chunk, a.len - h - 3 * chunk);
    assert_int_equal(unseal_mem(kek, &t, NULL), -EBADMSG);
    free(t.data);
    free(a.data);
    free(b.data);
    free(pa.data);
    free(pb.data);
}

static void test_bit_flips(void **state)
{
    (void)state;
    /* Small chunks: every bit of the file. */
    mem plain = mem_random(1300);
    mem sealed = seal_mem(kek, &plain, 512);
    for (size_t bit = 0; bit < sealed.len * 8; bit++) {
        sealed.data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        int rc = unseal_mem(kek, &sealed, NULL);
        if (rc == 0)
            fail_msg("flip of bit %zu of %zu bytes not detected", bit, sealed.len);
        sealed.data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_int_equal(unseal_mem(kek, &sealed, NULL), 0);
    free(sealed.data);
    free(plain.data);

    /* Default chunks: sampled positions over a 1 MiB file. */
    plain = mem_random(1 << 20);
    sealed = seal_mem(kek, &plain, 0);
    uint32_t r;
    for (int i = 0; i < 200; i++) {
        assert_int_equal(RAND_bytes((uint8_t *)&r, sizeof(r)), 1);
        size_t pos = i < 100 ? (size_t)i : r % sealed.len;
        uint8_t mask = (uint8_t)(1u << (r >> 29));
        sealed.data[pos] ^= mask;
        if (unseal_mem(kek, &sealed, NULL) == 0)
            fail_msg("flip at byte %zu not detected", pos);
        sealed.data[pos] ^= mask;
    }
    free(sealed.data);
    free(plain.data);
}

/* Pipes: a feeder thread writes the input, a drain thread collects output. */
typedef struct pipe_job {
    int fd;
    mem *m;
} pipe_job;

static void *feeder(void *arg)
{
    pipe_job *j = arg;
    size_t off = 0;
    while (off < j->m->len) {
        ssize_t w = write(j->fd, j->m->data + off, j->m->len - off > 7777 ? 7777 : j->m->len - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    close(j->fd);
    return NULL;
}

static void *drain(void *arg)
{
    pipe_job *j = arg;
    uint8_t buf[5000];
    ssize_t r;
    while ((r = read(j->fd, buf, sizeof(buf))) > 0)
        mem_write(j->m, buf, (size_t)r);
    close(j->fd);
    return NULL;
}

static int through_pipes(int seal, const mem *in, mem *out)
{
    int a[2], b[2];
    assert_int_equal(pipe(a), 0);
    assert_int_equal(pipe(b), 0);
    mem src = *in;
    pipe_job fj = {a[1], &src}, dj = {b[0], out};
    pthread_t ft, dt;
    pthread_create(&ft, NULL, feeder, &fj);
    pthread_create(&dt, NULL, drain, &dj);
    int rc = seal ? vmseal_seal_stream(kek, "local", "kek-1", a[0], b[1])
                  : vmseal_unseal_stream(kek, a[0], b[1], NULL);
    close(a[0]);
    close(b[1]);
    pthread_join(ft, NULL);
    pthread_join(dt, NULL);
    return rc;
}

static void test_pipes(void **state)
{
    (void)state;
    const size_t sizes[] = {0, 1, CS - 1, CS, CS + 1, 5 * 1024 * 1024 + 3};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        mem plain = mem_random(sizes[i]), sealed = {0}, back = {0};
        assert_int_equal(through_pipes(1, &plain, &sealed), 0);
        assert_int_equal(sealed.len, sealed_size(&sealed, sizes[i], CS));
        assert_int_equal(through_pipes(0, &sealed, &back), 0);
        assert_int_equal(back.len, plain.len);
        assert_true(plain.len == 0 || memcmp(back.data, plain.data, plain.len) == 0);
        /* A truncated file through a pipe fails too. */
        free(back.data);
        back = (mem){0};
        sealed.len -= 1;
        assert_int_not_equal(through_pipes(0, &sealed, &back), 0);
        free(back.data);
        free(sealed.data);
        free(plain.data);
    }
}

static void test_bad_arguments(void **state)
{
    (void)state;
    mem plain = mem_random(10), out = {0};
    vmseal_stream io = {mem_read, &plain, mem_write, &out};
    assert_int_equal(vmseal_seal(kek, "local", "k", 1000, &io), -EINVAL);
    assert_int_equal(vmseal_seal(kek, "lo:cal", "k", 0, &io), -EINVAL);
    assert_int_equal(vmseal_seal(kek, "local", "", 0, &io), -EINVAL);
    vmseal_secret *k16;
    assert_int_equal(vmseal_secret_random(16, &k16), 0);
    assert_int_equal(vmseal_seal(k16, "local", "k", 0, &io), -EINVAL);
    vmseal_secret_free(k16);
    assert_int_equal(out.len, 0);
    free(plain.data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_sizes),
        cmocka_unit_test(test_probe_header),
        cmocka_unit_test(test_wrong_kek),
        cmocka_unit_test(test_header_tamper_before_output),
        cmocka_unit_test(test_truncation_everywhere),
        cmocka_unit_test(test_chunk_swap_reorder_drop_append),
        cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_pipes),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
