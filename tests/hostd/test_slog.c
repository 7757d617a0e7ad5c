/* Sealed logs (lib/crypto/sealed_file.c, docs/formats.md "Sealed log"): one
 * segment written and read back, every truncation and every bit flip
 * refused, records from another segment refused, an unfinished segment
 * closed; a folder of segments with every inconsistency a reader must
 * notice (missing, renamed, other VM, cut, not ended, symlink).
 *
 *   test_slog                       the unit tests
 *   test_slog --write-corpus DIR    seed corpus of fuzz/sealed_log.c (made
 *                                   with the public test key of
 *                                   fuzz/fuzz_seal_keys.h)
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <vmseal/sealed.h>

#include "../../fuzz/fuzz_seal_keys.h"

#define UUID "6b1d2c0e-35a4-4b8e-9a52-0c1f4e7d9a10"
#define UUID2 "0f7c9e62-0d41-4c57-8a8b-3ab3d1f0c2e4"

static vmseal_secret *key, *key2;

/* ------------------------------------------------------- memory streams */

typedef struct buf {
    uint8_t *p;
    size_t len, cap, pos;
} buf;

static int buf_write(void *ctx, const void *data, size_t len)
{
    buf *b = ctx;
    if (b->len + len > b->cap) {
        size_t ncap = (b->len + len) * 2 + 64;
        uint8_t *np = realloc(b->p, ncap);
        if (!np)
            return -ENOMEM;
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    return 0;
}

static ssize_t buf_read(void *ctx, void *data, size_t len)
{
    buf *b = ctx;
    size_t n = b->len - b->pos;
    if (n > len)
        n = len;
    if (n > 1000)   /* odd-sized reads, like a pipe */
        n = 1000;
    memcpy(data, b->p + b->pos, n);
    b->pos += n;
    return (ssize_t)n;
}

static void buf_free(buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* Read segment bytes; the plaintext goes to *plain. */
static int read_seg(const vmseal_secret *k, const uint8_t *data, size_t len, buf *plain,
                    vmseal_slog_info *info, vmseal_slog_state *st)
{
    buf in = {(uint8_t *)data, len, len, 0};
    vmseal_stream io = {buf_read, &in, buf_write, plain};
    return vmseal_slog_read(k, &io, info, st);
}

/* A segment holding the given pieces, one append each; finished or not. */
static void make_seg(buf *out, const vmseal_secret *k, const char *uuid, uint64_t seq,
                     uint64_t first, uint64_t offset, uint32_t record_max, int finish,
                     const char *const *pieces, size_t n)
{
    vmseal_slog_info want = {.record_max = record_max, .seq = seq, .first = first,
                             .offset = offset};
    snprintf(want.uuid, sizeof(want.uuid), "%s", uuid);
    vmseal_stream io = {NULL, NULL, buf_write, out};
    vmseal_slog_writer *w = NULL;
    assert_int_equal(vmseal_slog_begin(k, &want, &io, &w), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(vmseal_slog_append(w, pieces[i], strlen(pieces[i])), 0);
    if (finish)
        assert_int_equal(vmseal_slog_finish(w), 0);
    vmseal_slog_writer_free(w);
}

static const char *const PIECES[] = {"boot: hello\n", "second flush, a bit longer\n",
                                     "x", "VMSEAL-MARKER in the third record\n"};
#define NPIECES (sizeof(PIECES) / sizeof(PIECES[0]))

static const char *joined(void)
{
    static char all[512];
    all[0] = '\0';
    for (size_t i = 0; i < NPIECES; i++)
        strcat(all, PIECES[i]);
    return all;
}

/* ------------------------------------------------------------ segments */

static void test_roundtrip(void **state)
{
    (void)state;
    buf seg = {0}, plain = {0};
    make_seg(&seg, key, UUID, 3, 2, 1000, 0, 1, PIECES, NPIECES);
    vmseal_slog_info info;
    vmseal_slog_state st;
    assert_int_equal(read_seg(key, seg.p, seg.len, &plain, &info, &st), 0);
    const char *all = joined();
    assert_int_equal(plain.len, strlen(all));
    assert_memory_equal(plain.p, all, plain.len);
    assert_true(st.ended && st.header_ok && !st.torn);
    assert_int_equal(st.records, NPIECES + 1);
    assert_int_equal(st.bytes, strlen(all));
    assert_int_equal(st.good_len, seg.len);
    assert_int_equal(seg.len, VMSEAL_SLOG_HEADER_LEN + (NPIECES + 1) * VMSEAL_SLOG_RECORD_OVERHEAD +
                                  strlen(all));
    assert_string_equal(info.uuid, UUID);
    assert_int_equal(info.seq, 3);
    assert_int_equal(info.first, 2);
    assert_int_equal(info.offset, 1000);
    assert_int_equal(info.record_max, VMSEAL_SLOG_RECORD_DEFAULT);
    /* the probe agrees without a key */
    vmseal_slog_info probe;
    assert_int_equal(vmseal_slog_probe_header(seg.p, seg.len, &probe), 0);
    assert_memory_equal(&probe, &info, sizeof(info));
    assert_int_equal(vmseal_slog_probe_header(seg.p, 100, &probe), -ENODATA);
    /* the text is not in the file */
    assert_null(memmem(seg.p, seg.len, "VMSEAL-MARKER", 13));
    buf_free(&seg);
    buf_free(&plain);
}

static void test_records_split(void **state)
{
    (void)state;
    /* 512-byte records: 1300 bytes become 3 records */
    char big[1301];
    memset(big, 'a', 1300);
    big[1300] = '\0';
    const char *p[] = {big};
    buf seg = {0}, plain = {0};
    make_seg(&seg, key, UUID, 1, 1, 0, 512, 1, p, 1);
    vmseal_slog_state st;
    assert_int_equal(read_seg(key, seg.p, seg.len, &plain, NULL, &st), 0);
    assert_int_equal(st.records, 4);
    assert_int_equal(plain.len, 1300);
    buf_free(&seg);
    buf_free(&plain);
}

static void test_wrong_key_and_garbage(void **state)
{
    (void)state;
    buf seg = {0}, plain = {0};
    make_seg(&seg, key, UUID, 1, 1, 0, 0, 1, PIECES, NPIECES);
    vmseal_slog_state st;
    assert_int_equal(read_seg(key2, seg.p, seg.len, &plain, NULL, &st), -EBADMSG);
    assert_non_null(strstr(vmseal_last_error(), "wrong key"));
    assert_int_equal(plain.len, 0);
    assert_false(st.header_ok);
    assert_int_equal(read_seg(key, (const uint8_t *)"hello", 5, &plain, NULL, &st), -EPROTO);
    assert_int_equal(read_seg(key, (const uint8_t *)"", 0, &plain, NULL, &st), -EPROTO);
    /* another version */
    seg.p[8] = 2;
    assert_int_equal(read_seg(key, seg.p, seg.len, &plain, NULL, &st), -ENOTSUP);
    buf_free(&seg);
    buf_free(&plain);
}

/* Every prefix: refused, or (at a record boundary) read as unfinished. */
static void test_every_truncation(void **state)
{
    (void)state;
    buf seg = {0};
    make_seg(&seg, key, UUID, 1, 1, 0, 0, 1, PIECES, NPIECES);
    size_t boundaries = 0;
    buf none = {0};
    vmseal_slog_state st0;
    assert_int_equal(read_seg(key, seg.p, 0, &none, NULL, &st0), -EPROTO);
    for (size_t n = 1; n < seg.len; n++) {
        buf plain = {0};
        vmseal_slog_state st;
        int r = read_seg(key, seg.p, n, &plain, NULL, &st);
        if (r == 0) {
            assert_false(st.ended);
            assert_int_equal(st.good_len, n);
            boundaries++;
        } else {
            assert_int_equal(r, -EPROTO);
            assert_true(st.torn);
            assert_true(st.good_len < n);
        }
        buf_free(&plain);
    }
    /* after the header and after each data record */
    assert_int_equal(boundaries, NPIECES + 1);
    buf_free(&seg);
}

static void test_every_bit_flip(void **state)
{
    (void)state;
    const char *p[] = {"abc", "defgh"};
    buf seg = {0};
    make_seg(&seg, key, UUID, 1, 1, 0, 0, 1, p, 2);
    for (size_t i = 0; i < seg.len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            seg.p[i] ^= (uint8_t)(1u << bit);
            buf plain = {0};
            vmseal_slog_state st;
            int r = read_seg(key, seg.p, seg.len, &plain, NULL, &st);
            if (r == 0)
                fail_msg("flip of bit %d of byte %zu not detected", bit, i);
            /* a flipped end flag or length may leave a clean prefix, but never the end */
            assert_false(st.ended);
            seg.p[i] ^= (uint8_t)(1u << bit);
            buf_free(&plain);
        }
    }
    buf_free(&seg);
}

static void test_swap_and_append(void **state)
{
    (void)state;
    const char *p[] = {"0123456789"};
    buf a = {0}, b = {0}, plain = {0};
    make_seg(&a, key, UUID, 1, 1, 0, 0, 1, p, 1);
    make_seg(&b, key, UUID, 1, 1, 0, 0, 1, p, 1);
    /* same sizes; b's first record inside a */
    size_t rec = VMSEAL_SLOG_HEADER_LEN, rlen = VMSEAL_SLOG_RECORD_OVERHEAD + 10;
    memcpy(a.p + rec, b.p + rec, rlen);
    vmseal_slog_state st;
    assert_int_equal(read_seg(key, a.p, a.len, &plain, NULL, &st), -EBADMSG);
    assert_non_null(strstr(vmseal_last_error(), "record 0"));
    /* data after the end record */
    assert_int_equal(buf_write(&b, "junk", 4), 0);
    assert_int_equal(read_seg(key, b.p, b.len, &plain, NULL, &st), -EPROTO);
    assert_non_null(strstr(vmseal_last_error(), "after the end record"));
    /* records swapped inside one segment */
    buf c = {0};
    const char *q[] = {"AAAA", "BBBB"};
    make_seg(&c, key, UUID, 1, 1, 0, 0, 1, q, 2);
    uint8_t tmp[24];
    memcpy(tmp, c.p + rec, 24);
    memcpy(c.p + rec, c.p + rec + 24, 24);
    memcpy(c.p + rec + 24, tmp, 24);
    assert_int_equal(read_seg(key, c.p, c.len, &plain, NULL, &st), -EBADMSG);
    buf_free(&a);
    buf_free(&b);
    buf_free(&c);
    buf_free(&plain);
}

static void test_terminate(void **state)
{
    (void)state;
    buf seg = {0}, plain = {0};
    make_seg(&seg, key, UUID, 4, 1, 77, 0, 0, PIECES, NPIECES);   /* not finished */
    vmseal_slog_state st;
    assert_int_equal(read_seg(key, seg.p, seg.len, &plain, NULL, &st), 0);
    assert_false(st.ended);
    assert_int_equal(st.records, NPIECES);
    /* a torn last record: cut back, then closed */
    seg.len -= 3;
    buf_free(&plain);
    assert_int_equal(read_seg(key, seg.p, seg.len, &plain, NULL, &st), -EPROTO);
    assert_true(st.torn);
    assert_int_equal(st.records, NPIECES - 1);
    seg.len = st.good_len;
    vmseal_stream io = {NULL, NULL, buf_write, &seg};
    assert_int_equal(vmseal_slog_terminate(key2, seg.p, seg.len, st.records, &io), -EBADMSG);
    assert_int_equal(vmseal_slog_terminate(key, seg.p, seg.len, st.records, &io), 0);
    buf_free(&plain);
    assert_int_equal(read_seg(key, seg.p, seg.len, &plain, NULL, &st), 0);
    assert_true(st.ended);
    assert_int_equal(plain.len, strlen(joined()) - strlen(PIECES[NPIECES - 1]));
    buf_free(&seg);
    buf_free(&plain);
}

static void test_log_key(void **state)
{
    (void)state;
    vmseal_secret *vs = NULL, *a = NULL, *b = NULL, *c = NULL;
    assert_int_equal(vmseal_secret_from(fuzz_test_kek, 32, &vs), 0);
    assert_int_equal(vmseal_slog_key(vs, UUID, &a), 0);
    assert_int_equal(vmseal_slog_key(vs, UUID2, &b), 0);
    /* upper-case spelling of the same uuid: the same key */
    char up[37];
    snprintf(up, sizeof(up), "%s", UUID);
    for (char *p = up; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    assert_int_equal(vmseal_slog_key(vs, up, &c), 0);
    assert_int_equal(vmseal_secret_len(a), 32);
    assert_int_not_equal(vmseal_secret_cmp(a, b), 0);
    assert_int_equal(vmseal_secret_cmp(a, c), 0);
    assert_int_not_equal(vmseal_secret_cmp(a, vs), 0);
    vmseal_secret *bad = NULL;
    assert_int_equal(vmseal_slog_key(vs, "not-a-uuid", &bad), -EINVAL);
    assert_null(bad);
    vmseal_secret_free(vs);
    vmseal_secret_free(a);
    vmseal_secret_free(b);
    vmseal_secret_free(c);
}

/* The key of a VM's sealed files (suspend state): bound to the VM secret,
 * the UUID and the purpose; never the log key; bad purposes refused. */
static void test_vmfile_key(void **state)
{
    (void)state;
    vmseal_secret *vs = NULL, *a = NULL, *b = NULL, *c = NULL, *d = NULL, *lk = NULL;
    assert_int_equal(vmseal_secret_from(fuzz_test_kek, 32, &vs), 0);
    assert_int_equal(vmseal_vmfile_key(vs, UUID, "state:suspend-1.vmss", &a), 0);
    assert_int_equal(vmseal_vmfile_key(vs, UUID2, "state:suspend-1.vmss", &b), 0);
    assert_int_equal(vmseal_vmfile_key(vs, UUID, "state:suspend-2.vmss", &c), 0);
    assert_int_equal(vmseal_vmfile_key(vs, UUID, "state:suspend-1.vmss", &d), 0);
    assert_int_equal(vmseal_slog_key(vs, UUID, &lk), 0);
    assert_int_equal(vmseal_secret_len(a), 32);
    assert_int_equal(vmseal_secret_cmp(a, d), 0);
    assert_int_not_equal(vmseal_secret_cmp(a, b), 0);
    assert_int_not_equal(vmseal_secret_cmp(a, c), 0);
    assert_int_not_equal(vmseal_secret_cmp(a, lk), 0);
    assert_int_not_equal(vmseal_secret_cmp(a, vs), 0);
    /* a file sealed under one purpose does not open under another */
    static const char text[] = "guest memory state";
    int in[2], mid[2], out[2];
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(mid), 0);
    assert_int_equal(write(in[1], text, sizeof(text)), (ssize_t)sizeof(text));
    close(in[1]);
    assert_int_equal(vmseal_seal_stream(a, VMSEAL_VMFILE_PROVIDER, "vm:x/state:suspend-1.vmss",
                                        in[0], mid[1]), 0);
    close(in[0]);
    close(mid[1]);
    assert_int_equal(pipe(out), 0);
    assert_int_equal(vmseal_unseal_stream(c, mid[0], out[1], NULL), -EBADMSG);
    close(mid[0]);
    close(out[0]);
    close(out[1]);
    vmseal_secret *bad = NULL;
    assert_int_equal(vmseal_vmfile_key(vs, UUID, "", &bad), -EINVAL);
    assert_int_equal(vmseal_vmfile_key(vs, UUID, "has blank", &bad), -EINVAL);
    assert_int_equal(vmseal_vmfile_key(vs, "not-a-uuid", "state:x", &bad), -EINVAL);
    char longp[VMSEAL_VMFILE_PURPOSE_MAX + 2];
    memset(longp, 'p', sizeof(longp) - 1);
    longp[sizeof(longp) - 1] = '\0';
    assert_int_equal(vmseal_vmfile_key(vs, UUID, longp, &bad), -EINVAL);
    assert_null(bad);
    vmseal_secret_free(vs);
    vmseal_secret_free(a);
    vmseal_secret_free(b);
    vmseal_secret_free(c);
    vmseal_secret_free(d);
    vmseal_secret_free(lk);
}

static void test_names(void **state)
{
    (void)state;
    char n[VMSEAL_SLOG_NAME_MAX];
    assert_int_equal(vmseal_slog_name(n, sizeof(n), "serial", 7), 0);
    assert_string_equal(n, "serial-00000007.vmslog");
    assert_int_equal(vmseal_slog_parse_name(n, "serial"), 7);
    assert_int_equal(vmseal_slog_parse_name("serial-123456789.vmslog", "serial"), 123456789);
    assert_int_equal(vmseal_slog_parse_name("serial-0000007.vmslog", "serial"), 0);
    assert_int_equal(vmseal_slog_parse_name("serial-000000007.vmslog", "serial"), 0);
    assert_int_equal(vmseal_slog_parse_name("serial-00000000.vmslog", "serial"), 0);
    assert_int_equal(vmseal_slog_parse_name("serial-0000000x.vmslog", "serial"), 0);
    assert_int_equal(vmseal_slog_parse_name("serial-00000007.vmslog.tmp", "serial"), 0);
    assert_int_equal(vmseal_slog_parse_name(".serial-00000007.vmslog", "serial"), 0);
    assert_int_equal(vmseal_slog_parse_name("other-00000007.vmslog", "serial"), 0);
    assert_int_equal(vmseal_slog_parse_name("serial-99999999999999999999.vmslog", "serial"), 0);
    assert_int_equal(vmseal_slog_parse_name("serial-18446744073709551615.vmslog", "serial"),
                     UINT64_MAX);
    assert_int_equal(vmseal_slog_name(n, sizeof(n), "Bad", 1), -EINVAL);
}

/* -------------------------------------------------------------- folders */

static char dir[256];
static int dirfd_;

static void put_file(const char *name, const buf *b)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b->p, b->len), (ssize_t)b->len);
    close(fd);
}

static void seg_file(uint64_t seq, uint64_t first, uint64_t offset, const char *text, int finish,
                     const char *uuid, const vmseal_secret *k)
{
    buf b = {0};
    const char *p[] = {text};
    make_seg(&b, k, uuid, seq, first, offset, 0, finish, p, 1);
    char name[VMSEAL_SLOG_NAME_MAX];
    assert_int_equal(vmseal_slog_name(name, sizeof(name), "serial", seq), 0);
    put_file(name, &b);
    buf_free(&b);
}

static int collect(void *ctx, const void *data, size_t len)
{
    return buf_write(ctx, data, len);
}

static int read_log(int flags, buf *out, vmseal_slog_log_info *li)
{
    buf_free(out);
    return vmseal_slog_read_dir(key, dirfd_, "serial", UUID, flags, collect, out, li);
}

static void seg_path(char *p, size_t len, uint64_t seq)
{
    char name[VMSEAL_SLOG_NAME_MAX];
    assert_int_equal(vmseal_slog_name(name, sizeof(name), "serial", seq), 0);
    snprintf(p, len, "%s/%s", dir, name);
}

static void test_folder(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/vmseal-slog-test.XXXXXX");
    assert_non_null(mkdtemp(dir));
    dirfd_ = open(dir, O_RDONLY | O_DIRECTORY);
    assert_true(dirfd_ >= 0);
    buf out = {0};
    vmseal_slog_log_info li;
    /* empty folder: empty log */
    assert_int_equal(read_log(0, &out, &li), 0);
    assert_int_equal(li.total, 0);
    assert_int_equal(li.segments, 0);

    /* 2..4 kept (1 rotated away), 4 still open */
    seg_file(2, 1, 100, "two\n", 1, UUID, key);
    seg_file(3, 2, 104, "three\n", 1, UUID, key);
    seg_file(4, 2, 110, "four\n", 0, UUID, key);
    assert_int_equal(read_log(0, &out, &li), -EPROTO);
    assert_non_null(strstr(vmseal_last_error(), "serial-00000004.vmslog has no end record"));
    assert_int_equal(read_log(VMSEAL_SLOG_ALLOW_OPEN, &out, &li), 0);
    assert_int_equal(out.len, 15);
    assert_memory_equal(out.p, "two\nthree\nfour\n", 15);
    assert_int_equal(li.first, 2);
    assert_int_equal(li.last, 4);
    assert_int_equal(li.start, 100);
    assert_int_equal(li.total, 115);
    assert_true(li.last_open);
    seg_file(4, 2, 110, "four\n", 1, UUID, key);
    assert_int_equal(read_log(0, &out, &li), 0);
    assert_false(li.last_open);
    /* leftovers below `first` are ignored; names that are not segments too */
    seg_file(1, 1, 0, "one\n", 1, UUID2, key2);
    buf junk = {(uint8_t *)"junk", 4, 4, 0};
    put_file("serial-5.vmslog", &junk);
    put_file("serial-00000005.vmslog.tmp", &junk);
    assert_int_equal(read_log(0, &out, &li), 0);
    assert_int_equal(li.total, 115);

    char p[512], q[512];
    /* segment 3 copied over segment 4 (same header fields but its number) */
    seg_path(p, sizeof(p), 3);
    seg_path(q, sizeof(q), 4);
    char cmd[1100];
    snprintf(cmd, sizeof(cmd), "cp %s %s", p, q);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(read_log(0, &out, &li), -EPROTO);
    assert_non_null(strstr(vmseal_last_error(), "serial-00000004.vmslog holds segment 3"));
    seg_file(4, 2, 110, "four\n", 1, UUID, key);
    assert_int_equal(read_log(0, &out, &li), 0);
    /* a segment in the middle missing */
    unlink(p);
    assert_int_equal(read_log(0, &out, &li), -EPROTO);
    assert_non_null(strstr(vmseal_last_error(), "serial-00000003.vmslog is missing"));
    seg_file(3, 2, 104, "three\n", 1, UUID, key);
    assert_int_equal(read_log(0, &out, &li), 0);

    /* a segment cut at a record boundary (its end record gone) */
    seg_path(p, sizeof(p), 3);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(truncate(p, sb.st_size - VMSEAL_SLOG_RECORD_OVERHEAD), 0);
    assert_int_equal(read_log(VMSEAL_SLOG_ALLOW_OPEN, &out, &li), -EPROTO);
    assert_non_null(strstr(vmseal_last_error(), "serial-00000003.vmslog has no end record"));
    /* cut inside a record */
    assert_int_equal(truncate(p, sb.st_size - 25), 0);
    assert_int_equal(read_log(0, &out, &li), -EPROTO);
    assert_non_null(strstr(vmseal_last_error(), "truncated inside record"));
    /* a segment whose text was replaced by an ended one of another length */
    seg_file(3, 2, 104, "three and more\n", 1, UUID, key);
    assert_int_equal(read_log(0, &out, &li), -EPROTO);
    assert_non_null(strstr(vmseal_last_error(), "starts at log byte 110"));
    seg_file(3, 2, 104, "three\n", 1, UUID, key);
    /* another VM's segment with this VM's key and name */
    seg_file(3, 2, 104, "three\n", 1, UUID2, key);
    assert_int_equal(read_log(0, &out, &li), -EPROTO);
    assert_non_null(strstr(vmseal_last_error(), "belongs to VM " UUID2));
    /* another key */
    seg_file(3, 2, 104, "three\n", 1, UUID, key2);
    assert_int_equal(read_log(0, &out, &li), -EBADMSG);
    assert_non_null(strstr(vmseal_last_error(), "serial-00000003.vmslog"));
    seg_file(3, 2, 104, "three\n", 1, UUID, key);
    assert_int_equal(read_log(0, &out, &li), 0);

    /* a symlink in place of a segment is not followed */
    seg_path(p, sizeof(p), 3);
    unlink(p);
    snprintf(q, sizeof(q), "%s/elsewhere", dir);
    seg_file(3, 2, 104, "three\n", 1, UUID, key);
    assert_int_equal(rename(p, q), 0);
    assert_int_equal(symlink(q, p), 0);
    assert_int_equal(read_log(0, &out, &li), -ELOOP);
    assert_non_null(strstr(vmseal_last_error(), "symbolic link"));
    unlink(p);
    assert_int_equal(rename(q, p), 0);
    assert_int_equal(read_log(0, &out, &li), 0);

    /* first..last from the newest header: deleting the oldest kept one is seen */
    seg_path(p, sizeof(p), 2);
    unlink(p);
    assert_int_equal(read_log(0, &out, &li), -EPROTO);
    assert_non_null(strstr(vmseal_last_error(), "serial-00000002.vmslog is missing"));

    buf_free(&out);
    close(dirfd_);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* --------------------------------------------------------------- corpus */

static void write_corpus(const char *outdir)
{
    mkdir(outdir, 0755);
    struct {
        const char *name;
        int finish;
        uint32_t rm;
        const char *const *pieces;
        size_t n;
    } seeds[] = {
        {"valid-ended", 1, 0, PIECES, NPIECES},
        {"valid-open", 0, 0, PIECES, NPIECES},
        {"valid-empty", 1, 0, NULL, 0},
        {"valid-small-records", 1, 512, PIECES, NPIECES},
    };
    for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
        buf b = {0};
        make_seg(&b, key, UUID, 2, 1, 10, seeds[i].rm, seeds[i].finish, seeds[i].pieces,
                 seeds[i].n);
        char p[4096];
        snprintf(p, sizeof(p), "%s/%s", outdir, seeds[i].name);
        FILE *f = fopen(p, "wb");
        if (!f || fwrite(b.p, 1, b.len, f) != b.len || fclose(f) != 0) {
            fprintf(stderr, "cannot write %s\n", p);
            exit(1);
        }
        if (i == 0) {
            /* damaged variants of the first */
            b.p[b.len - 5] ^= 1;
            snprintf(p, sizeof(p), "%s/bad-bitflip", outdir);
            f = fopen(p, "wb");
            if (!f || fwrite(b.p, 1, b.len, f) != b.len || fclose(f) != 0)
                exit(1);
            snprintf(p, sizeof(p), "%s/bad-truncated", outdir);
            f = fopen(p, "wb");
            if (!f || fwrite(b.p, 1, b.len - 30, f) != b.len - 30 || fclose(f) != 0)
                exit(1);
        }
        buf_free(&b);
    }
    buf b = {0};
    make_seg(&b, key2, UUID, 1, 1, 0, 0, 1, PIECES, NPIECES);
    char p[4096];
    snprintf(p, sizeof(p), "%s/bad-other-key", outdir);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(b.p, 1, b.len, f) != b.len || fclose(f) != 0)
        exit(1);
    buf_free(&b);
}

int main(int argc, char **argv)
{
    uint8_t k2[32];
    for (size_t i = 0; i < 32; i++)
        k2[i] = (uint8_t)(0xa0 + i);
    if (vmseal_secret_from(fuzz_test_kek, sizeof(fuzz_test_kek), &key) != 0 ||
        vmseal_secret_from(k2, 32, &key2) != 0)
        return 1;
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0) {
        write_corpus(argv[2]);
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_records_split),
        cmocka_unit_test(test_wrong_key_and_garbage),
        cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_every_bit_flip),
        cmocka_unit_test(test_swap_and_append),
        cmocka_unit_test(test_terminate),
        cmocka_unit_test(test_log_key),
        cmocka_unit_test(test_vmfile_key),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_folder),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    vmseal_secret_free(key);
    vmseal_secret_free(key2);
    return r;
}
