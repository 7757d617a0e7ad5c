/* LUKS1 disk API: create / encrypt / decrypt / rekey / keyslots, cancel and
 * resume, checkpoint trust, wrong passphrases, damaged images. Everything
 * runs in a private temporary directory. Interop with qemu-img, cryptsetup
 * and nbdkit is in interop.sh; kill -9 crash safety in rekey-crash.sh. */
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

#include <vmseal/disk.h>
#include <vmseal/xts.h>

#define MiB (1024u * 1024u)

/* Internal (lib/disk/disk_internal.h): refuses ciphers other than aes-xts-plain64. */
int vmseal_disk_check_cipher(const char *path, const vmseal_disk_info *info);

static char dir[64];

static char *p(const char *name)
{
    static char buf[8][256];
    static int i;
    i = (i + 1) % 8;
    snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
    return buf[i];
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/vmseal-disk-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd);
}

static vmseal_secret *passphrase(void)
{
    vmseal_secret *s = NULL, *pass = NULL;
    assert_int_equal(vmseal_secret_random(VMSEAL_DISK_SECRET_LEN, &s), 0);
    assert_int_equal(vmseal_disk_passphrase_from_secret(s, &pass), 0);
    vmseal_secret_free(s);
    return pass;
}

/* size bytes: random data with a zero gap and a hole in the middle. */
static void make_plain(const char *path, size_t size)
{
    uint8_t *buf = malloc(size);
    assert_non_null(buf);
    for (size_t i = 0; i < size; i++)
        buf[i] = (uint8_t)(i * 2654435761u >> 13);
    memset(buf + size / 3, 0, size / 8);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, size / 2), (ssize_t)(size / 2));
    /* leave [size/2, size/2 + 1 MiB) as a file-system hole */
    assert_int_equal(pwrite(fd, buf + size / 2 + MiB, size - size / 2 - MiB, size / 2 + MiB),
                     (ssize_t)(size - size / 2 - MiB));
    close(fd);
    free(buf);
}

static uint8_t *slurp(const char *path, size_t *len)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    uint8_t *b = malloc((size_t)st.st_size + 1);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, b + got, (size_t)st.st_size - got);
        assert_true(r > 0);
        got += (size_t)r;
    }
    close(fd);
    *len = got;
    return b;
}

/* plain (len) equals the first len bytes of out, and out is zero beyond. */
static void assert_same_content(const char *plain, const char *out)
{
    size_t a, b;
    uint8_t *x = slurp(plain, &a), *y = slurp(out, &b);
    assert_true(b >= a && b - a < VMSEAL_SECTOR_SIZE);
    assert_memory_equal(x, y, a);
    for (size_t i = a; i < b; i++)
        assert_int_equal(y[i], 0);
    free(x);
    free(y);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Cancelling from the first progress report past 0 is deterministic: the
 * workers run at most 8 + 2 * threads items of 4 MiB ahead of the reported
 * prefix, so the tests below use more items than that (48 MiB with one
 * thread, 64 MiB with two). */
struct prog {
    uint64_t first, last;
    int calls;
    volatile sig_atomic_t cancel;
    int cancel_when_above_zero;
    const char *save_ckpt;     /* at done == total, hard-link this checkpoint */
};

static void on_progress(uint64_t done, uint64_t total, void *ctx)
{
    struct prog *pg = ctx;
    if (pg->calls++ == 0)
        pg->first = done;
    pg->last = done;
    assert_true(done <= total);
    if (pg->cancel_when_above_zero && done > 0 && done < total)
        pg->cancel = 1;
    if (pg->save_ckpt && done == total) {
        char saved[300];
        snprintf(saved, sizeof(saved), "%s.saved", pg->save_ckpt);
        assert_int_equal(link(pg->save_ckpt, saved), 0);
    }
}

static vmseal_disk_opts opts_for(struct prog *pg, unsigned threads)
{
    memset(pg, 0, sizeof(*pg));
    vmseal_disk_opts o = {.progress = on_progress, .progress_ctx = pg, .threads = threads,
                          .cancel = &pg->cancel};
    return o;
}

static void test_passphrase_is_hex_of_secret(void **state)
{
    (void)state;
    uint8_t raw[32];
    for (int i = 0; i < 32; i++)
        raw[i] = (uint8_t)(0xa0 + i);
    vmseal_secret *s = NULL, *pass = NULL;
    assert_int_equal(vmseal_secret_from(raw, 32, &s), 0);
    assert_int_equal(vmseal_disk_passphrase_from_secret(s, &pass), 0);
    assert_int_equal(vmseal_secret_len(pass), 64);
    assert_memory_equal(vmseal_secret_cdata(pass), "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf", 32);
    assert_memory_equal(vmseal_secret_cdata(pass) + 32, "b0b1b2b3b4b5b6b7b8b9babbbcbdbebf", 32);
    vmseal_secret_free(s);
    vmseal_secret_free(pass);
}

static void test_create_probe_verify(void **state)
{
    (void)state;
    vmseal_secret *pass = passphrase(), *other = passphrase();
    const char *uuid = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";
    vmseal_disk_opts o = {.uuid = uuid};
    assert_int_equal(vmseal_disk_create(p("c.img"), 8 * MiB, pass, &o), 0);
    vmseal_disk_info in;
    assert_int_equal(vmseal_disk_probe(p("c.img"), &in), 0);
    assert_int_equal(in.is_luks, 1);
    assert_int_equal(in.version, 1);
    assert_string_equal(in.uuid, uuid);
    assert_string_equal(in.cipher, "aes");
    assert_string_equal(in.cipher_mode, "xts-plain64");
    assert_string_equal(in.hash, "sha256");
    assert_int_equal(in.key_bits, 512);
    assert_int_equal(in.payload_bytes, 8 * MiB);
    assert_int_equal(in.active_slots, 1);
    assert_int_equal(in.slot_mask, 1);
    assert_int_equal(in.slot_iterations[0], 1000);
    assert_int_equal(in.mk_digest_iterations, 1000);
    assert_false(exists(p("c.img.partial")));
    /* Never-written payload is sparse. */
    struct stat st;
    assert_int_equal(stat(p("c.img"), &st), 0);
    assert_true((uint64_t)st.st_blocks * 512 < in.payload_offset_bytes + MiB);

    assert_int_equal(vmseal_disk_verify_passphrase(p("c.img"), pass), 0);
    assert_int_equal(vmseal_disk_verify_passphrase(p("c.img"), other), -EKEYREJECTED);
    assert_non_null(strstr(vmseal_last_error(), "wrong passphrase"));
    /* Refuses to overwrite, bad sizes. */
    assert_int_equal(vmseal_disk_create(p("c.img"), 8 * MiB, pass, NULL), -EEXIST);
    assert_int_equal(vmseal_disk_create(p("d.img"), 1000, pass, NULL), -EINVAL);
    assert_int_equal(vmseal_disk_create(p("d.img"), 0, pass, NULL), -EINVAL);
    o.uuid = "not-a-uuid";
    assert_true(vmseal_disk_create(p("d.img"), MiB, pass, &o) < 0);
    assert_false(exists(p("d.img")));
    assert_false(exists(p("d.img.partial")));
    /* Each image gets its own random volume key. */
    vmseal_secret *k1 = NULL, *k2 = NULL;
    assert_int_equal(vmseal_disk_create(p("e.img"), MiB, pass, NULL), 0);
    assert_int_equal(vmseal_disk_volume_key(p("c.img"), pass, &k1, NULL), 0);
    assert_int_equal(vmseal_disk_volume_key(p("e.img"), pass, &k2, &in), 0);
    assert_int_equal(vmseal_secret_len(k1), 64);
    assert_int_not_equal(vmseal_secret_cmp(k1, k2), 0);
    vmseal_secret_free(k2);
    assert_int_equal(vmseal_disk_volume_key(p("e.img"), other, &k2, NULL), -EKEYREJECTED);
    assert_null(k2);
    vmseal_secret_free(k1);
    vmseal_secret_free(pass);
    vmseal_secret_free(other);
}

static void test_encrypt_decrypt_roundtrip(void **state)
{
    (void)state;
    vmseal_secret *pass = passphrase(), *other = passphrase();
    size_t size = 13 * MiB + 1234;      /* not a multiple of 512: padded */
    make_plain(p("plain"), size);
    struct prog pg;
    vmseal_disk_opts o = opts_for(&pg, 2);
    assert_int_equal(vmseal_disk_encrypt(p("plain"), p("enc.img"), pass, &o), 0);
    assert_int_equal(pg.first, 0);
    assert_int_equal(pg.last, (13 * MiB + 1536));
    assert_false(exists(p("enc.img.partial")));
    assert_false(exists(p("enc.img.partial.ckpt")));
    vmseal_disk_info in;
    assert_int_equal(vmseal_disk_probe(p("enc.img"), &in), 0);
    assert_int_equal(in.payload_bytes, 13 * MiB + 1536);

    /* The ciphertext is the XTS data path's output for sector numbers
     * counted from the payload start. */
    vmseal_secret *vk = NULL;
    assert_int_equal(vmseal_disk_volume_key(p("enc.img"), pass, &vk, NULL), 0);
    vmseal_xts *x = NULL;
    assert_int_equal(vmseal_xts_new(vk, &x), 0);
    size_t el, pl;
    uint8_t *e = slurp(p("enc.img"), &el), *pt = slurp(p("plain"), &pl);
    uint8_t sec[VMSEAL_SECTOR_SIZE];
    assert_int_equal(vmseal_xts_decrypt(x, 7, e + in.payload_offset_bytes + 7 * 512, sec, 1), 0);
    assert_memory_equal(sec, pt + 7 * 512, 512);
    free(e);
    free(pt);
    vmseal_xts_free(x);
    vmseal_secret_free(vk);

    assert_int_equal(vmseal_disk_decrypt(p("enc.img"), p("dec"), other, NULL), -EKEYREJECTED);
    assert_false(exists(p("dec")));
    assert_false(exists(p("dec.partial")));
    o = opts_for(&pg, 3);
    assert_int_equal(vmseal_disk_decrypt(p("enc.img"), p("dec"), pass, &o), 0);
    assert_same_content(p("plain"), p("dec"));
    /* All-zero plaintext became holes. */
    struct stat st;
    assert_int_equal(stat(p("dec"), &st), 0);
    assert_true((uint64_t)st.st_blocks * 512 + MiB <= (uint64_t)st.st_size);
    assert_int_equal(vmseal_disk_decrypt(p("enc.img"), p("dec"), pass, NULL), -EEXIST);
    assert_int_equal(vmseal_disk_encrypt(p("plain"), p("enc.img"), pass, NULL), -EEXIST);
    vmseal_secret_free(pass);
    vmseal_secret_free(other);
}

static void test_encrypt_cancel_resume(void **state)
{
    (void)state;
    vmseal_secret *pass = passphrase();
    make_plain(p("plain2"), 64 * MiB);
    struct prog pg;
    vmseal_disk_opts o = opts_for(&pg, 2);
    pg.cancel_when_above_zero = 1;
    assert_int_equal(vmseal_disk_encrypt(p("plain2"), p("enc2.img"), pass, &o), -ECANCELED);
    assert_false(exists(p("enc2.img")));
    assert_true(exists(p("enc2.img.partial")));
    assert_true(exists(p("enc2.img.partial.ckpt")));
    uint64_t stopped = pg.last;
    assert_true(stopped > 0 && stopped < 64 * MiB);
    /* Resumes where the checkpoint says. */
    o = opts_for(&pg, 2);
    assert_int_equal(vmseal_disk_encrypt(p("plain2"), p("enc2.img"), pass, &o), 0);
    assert_int_equal(pg.first, stopped);
    assert_false(exists(p("enc2.img.partial.ckpt")));
    assert_int_equal(vmseal_disk_decrypt(p("enc2.img"), p("dec2"), pass, NULL), 0);
    assert_same_content(p("plain2"), p("dec2"));
    vmseal_secret_free(pass);
}

/* An interrupted encrypt and deep rekey given up: their partial images and
 * checkpoints go, the input and the image stay as they were; one an
 * operation still holds is not touched; a planted symlink is removed, its
 * target is not. */
static void test_discard_partial(void **state)
{
    (void)state;
    vmseal_secret *pass = passphrase();
    assert_int_equal(mkdir(p("dhome"), 0700), 0);
    int dfd = open(p("dhome"), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    assert_true(dfd >= 0);
    make_plain(p("dhome/plain"), 32 * MiB);
    size_t before_len;
    uint8_t *before = slurp(p("dhome/plain"), &before_len);
    struct prog pg;
    vmseal_disk_opts o = opts_for(&pg, 1);
    pg.cancel_when_above_zero = 1;
    assert_int_equal(vmseal_disk_encrypt_at(dfd, "plain", dfd, "e.luks", pass, &o), -ECANCELED);
    assert_true(exists(p("dhome/e.luks.partial")));
    assert_true(exists(p("dhome/e.luks.partial.ckpt")));
    /* held by a running operation (an OFD lock): -EBUSY, nothing removed */
    int held = open(p("dhome/e.luks.partial"), O_RDWR);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    assert_int_equal(fcntl(held, F_OFD_SETLK, &fl), 0);
    assert_int_equal(vmseal_disk_discard_partial_at(dfd, "e.luks"), -EBUSY);
    assert_true(exists(p("dhome/e.luks.partial")));
    close(held);
    assert_int_equal(vmseal_disk_discard_partial_at(dfd, "e.luks"), 0);
    assert_false(exists(p("dhome/e.luks.partial")));
    assert_false(exists(p("dhome/e.luks.partial.ckpt")));
    assert_false(exists(p("dhome/e.luks")));
    size_t after_len;
    uint8_t *after = slurp(p("dhome/plain"), &after_len);
    assert_int_equal(after_len, before_len);
    assert_memory_equal(after, before, before_len);
    free(after);
    /* nothing left: 0 again */
    assert_int_equal(vmseal_disk_discard_partial_at(dfd, "e.luks"), 0);
    /* a deep rekey given up: the image is the old one, still opens */
    assert_int_equal(vmseal_disk_encrypt_at(dfd, "plain", dfd, "e.luks", pass, NULL), 0);
    vmseal_disk_info i0, i1;
    assert_int_equal(vmseal_disk_probe_at(dfd, "e.luks", &i0), 0);
    o = opts_for(&pg, 1);
    pg.cancel_when_above_zero = 1;
    assert_int_equal(vmseal_disk_rekey_at(dfd, "e.luks", pass, &o), -ECANCELED);
    assert_true(exists(p("dhome/e.luks.rekey.partial")));
    assert_int_equal(vmseal_disk_discard_partial_at(dfd, "e.luks"), 0);
    assert_false(exists(p("dhome/e.luks.rekey.partial")));
    assert_false(exists(p("dhome/e.luks.rekey.partial.ckpt")));
    assert_int_equal(vmseal_disk_probe_at(dfd, "e.luks", &i1), 0);
    assert_memory_equal(i0.mk_digest, i1.mk_digest, sizeof(i0.mk_digest));   /* the old volume key */
    assert_int_equal(vmseal_disk_decrypt_at(dfd, "e.luks", dfd, "back", pass, NULL), 0);
    assert_same_content(p("dhome/plain"), p("dhome/back"));
    /* a planted symlink under the partial's name: removed, its target kept */
    assert_int_equal(system("echo VICTIM > /tmp/vmseal-discard-victim.txt"), 0);
    assert_int_equal(symlinkat("/tmp/vmseal-discard-victim.txt", dfd, "x.luks.partial"), 0);
    assert_int_equal(vmseal_disk_discard_partial_at(dfd, "x.luks"), 0);
    assert_false(exists(p("dhome/x.luks.partial")));
    size_t vl;
    uint8_t *v = slurp("/tmp/vmseal-discard-victim.txt", &vl);
    assert_int_equal(vl, 7);
    free(v);
    unlink("/tmp/vmseal-discard-victim.txt");
    /* a name, not a path */
    assert_int_equal(vmseal_disk_discard_partial_at(dfd, "../dhome/e.luks"), -EINVAL);
    free(before);
    close(dfd);
    vmseal_secret_free(pass);
}

static void flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= 0x01;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

static void test_untrusted_checkpoint_restarts(void **state)
{
    (void)state;
    vmseal_secret *pass = passphrase();
    make_plain(p("plain3"), 48 * MiB);
    struct prog pg;
    vmseal_disk_opts o = opts_for(&pg, 1);
    pg.cancel_when_above_zero = 1;
    assert_int_equal(vmseal_disk_encrypt(p("plain3"), p("enc3.img"), pass, &o), -ECANCELED);
    flip_byte(p("enc3.img.partial.ckpt"), 20);   /* the `done` field */
    o = opts_for(&pg, 1);
    assert_int_equal(vmseal_disk_encrypt(p("plain3"), p("enc3.img"), pass, &o), 0);
    assert_int_equal(pg.first, 0);               /* started over */
    /* Decrypt: a checkpoint whose MAC does not verify is not believed. */
    o = opts_for(&pg, 1);
    pg.cancel_when_above_zero = 1;
    assert_int_equal(vmseal_disk_decrypt(p("enc3.img"), p("dec3"), pass, &o), -ECANCELED);
    assert_true(exists(p("dec3.partial.ckpt")));
    flip_byte(p("dec3.partial.ckpt"), 140);      /* inside the HMAC */
    o = opts_for(&pg, 1);
    assert_int_equal(vmseal_disk_decrypt(p("enc3.img"), p("dec3"), pass, &o), 0);
    assert_int_equal(pg.first, 0);
    assert_same_content(p("plain3"), p("dec3"));
    /* A checkpoint that is missing means the partial output is redone. */
    o = opts_for(&pg, 1);
    pg.cancel_when_above_zero = 1;
    assert_int_equal(vmseal_disk_encrypt(p("plain3"), p("enc3b.img"), pass, &o), -ECANCELED);
    assert_int_equal(unlink(p("enc3b.img.partial.ckpt")), 0);
    o = opts_for(&pg, 1);
    assert_int_equal(vmseal_disk_encrypt(p("plain3"), p("enc3b.img"), pass, &o), 0);
    assert_int_equal(pg.first, 0);
    vmseal_secret_free(pass);
}

static void test_decrypt_cancel_resume_and_stale(void **state)
{
    (void)state;
    vmseal_secret *pass = passphrase();
    make_plain(p("plain4"), 48 * MiB);
    assert_int_equal(vmseal_disk_encrypt(p("plain4"), p("enc4.img"), pass, NULL), 0);
    struct prog pg;
    vmseal_disk_opts o = opts_for(&pg, 1);
    pg.cancel_when_above_zero = 1;
    assert_int_equal(vmseal_disk_decrypt(p("enc4.img"), p("dec4"), pass, &o), -ECANCELED);
    uint64_t stopped = pg.last;
    assert_true(stopped > 0);
    o = opts_for(&pg, 1);
    assert_int_equal(vmseal_disk_decrypt(p("enc4.img"), p("dec4"), pass, &o), 0);
    assert_int_equal(pg.first, stopped);
    assert_same_content(p("plain4"), p("dec4"));

    /* A checkpoint for an input that changed since is not believed. */
    o = opts_for(&pg, 1);
    pg.cancel_when_above_zero = 1;
    assert_int_equal(vmseal_disk_decrypt(p("enc4.img"), p("dec5"), pass, &o), -ECANCELED);
    struct timespec ts[2] = {{0, UTIME_NOW}, {12345, 0}};
    assert_int_equal(utimensat(AT_FDCWD, p("enc4.img"), ts, 0), 0);
    o = opts_for(&pg, 1);
    assert_int_equal(vmseal_disk_decrypt(p("enc4.img"), p("dec5"), pass, &o), 0);
    assert_int_equal(pg.first, 0);
    assert_same_content(p("plain4"), p("dec5"));
    vmseal_secret_free(pass);
}

static void mk_digest(const char *path, uint8_t out[20])
{
    vmseal_disk_info in;
    assert_int_equal(vmseal_disk_probe(path, &in), 0);
    memcpy(out, in.mk_digest, 20);
}

static void test_rekey(void **state)
{
    (void)state;
    vmseal_secret *pass = passphrase(), *other = passphrase(), *vk0 = NULL, *vk1 = NULL;
    make_plain(p("plain6"), 48 * MiB);
    assert_int_equal(vmseal_disk_encrypt(p("plain6"), p("r.img"), pass, NULL), 0);
    uint8_t d0[20], d1[20];
    mk_digest(p("r.img"), d0);
    vmseal_disk_info before, after;
    assert_int_equal(vmseal_disk_volume_key(p("r.img"), pass, &vk0, &before), 0);

    assert_int_equal(vmseal_disk_rekey(p("r.img"), other, NULL), -EKEYREJECTED);
    /* Interrupted: the image is still the old one, fully readable. */
    struct prog pg;
    vmseal_disk_opts o = opts_for(&pg, 1);
    pg.cancel_when_above_zero = 1;
    assert_int_equal(vmseal_disk_rekey(p("r.img"), pass, &o), -ECANCELED);
    uint64_t stopped = pg.last;
    mk_digest(p("r.img"), d1);
    assert_memory_equal(d0, d1, 20);
    assert_true(exists(p("r.img.rekey.partial")));
    assert_int_equal(vmseal_disk_decrypt(p("r.img"), p("r-dec1"), pass, NULL), 0);
    assert_same_content(p("plain6"), p("r-dec1"));
    /* Resumed and finished: new volume key, same UUID and content. The
     * progress callback keeps a copy of the final checkpoint. */
    o = opts_for(&pg, 1);
    pg.save_ckpt = p("r.img.rekey.partial.ckpt");
    assert_int_equal(vmseal_disk_rekey(p("r.img"), pass, &o), 0);
    assert_int_equal(pg.first, stopped);
    assert_false(exists(p("r.img.rekey.partial")));
    assert_false(exists(p("r.img.rekey.partial.ckpt")));
    mk_digest(p("r.img"), d1);
    assert_memory_not_equal(d0, d1, 20);
    assert_int_equal(vmseal_disk_volume_key(p("r.img"), pass, &vk1, &after), 0);
    assert_int_not_equal(vmseal_secret_cmp(vk0, vk1), 0);
    assert_string_equal(before.uuid, after.uuid);
    assert_int_equal(before.payload_bytes, after.payload_bytes);
    assert_int_equal(vmseal_disk_decrypt(p("r.img"), p("r-dec2"), pass, NULL), 0);
    assert_same_content(p("plain6"), p("r-dec2"));

    /* A crash between the rename and the checkpoint's removal: the re-run
     * sees the work is done and does not rekey again. */
    char saved[300];
    snprintf(saved, sizeof(saved), "%s.saved", p("r.img.rekey.partial.ckpt"));
    assert_int_equal(rename(saved, p("r.img.rekey.partial.ckpt")), 0);
    o = opts_for(&pg, 1);
    assert_int_equal(vmseal_disk_rekey(p("r.img"), pass, &o), 0);
    uint8_t d2[20];
    mk_digest(p("r.img"), d2);
    assert_memory_equal(d1, d2, 20);
    assert_false(exists(p("r.img.rekey.partial.ckpt")));
    /* And a plain second rekey changes the key again. */
    assert_int_equal(vmseal_disk_rekey(p("r.img"), pass, NULL), 0);
    mk_digest(p("r.img"), d2);
    assert_memory_not_equal(d1, d2, 20);
    vmseal_secret_free(vk0);
    vmseal_secret_free(vk1);
    vmseal_secret_free(pass);
    vmseal_secret_free(other);
}

static void test_rekey_keeps_holes(void **state)
{
    (void)state;
    vmseal_secret *pass = passphrase();
    assert_int_equal(vmseal_disk_create(p("h.img"), 64 * MiB, pass, NULL), 0);
    assert_int_equal(vmseal_disk_rekey(p("h.img"), pass, NULL), 0);
    struct stat st;
    assert_int_equal(stat(p("h.img"), &st), 0);
    assert_true((uint64_t)st.st_blocks * 512 < 4 * MiB);
    assert_int_equal(vmseal_disk_verify_passphrase(p("h.img"), pass), 0);
    vmseal_secret_free(pass);
}

static void test_keyslots(void **state)
{
    (void)state;
    vmseal_secret *a = passphrase(), *b = passphrase(), *c = passphrase();
    assert_int_equal(vmseal_disk_create(p("k.img"), MiB, a, NULL), 0);
    assert_int_equal(vmseal_disk_keyslot_add(p("k.img"), c, b), -EKEYREJECTED);
    assert_int_equal(vmseal_disk_keyslot_add(p("k.img"), a, b), 1);
    vmseal_disk_info in;
    assert_int_equal(vmseal_disk_probe(p("k.img"), &in), 0);
    assert_int_equal(in.active_slots, 2);
    assert_int_equal(in.slot_iterations[1], 1000);
    assert_int_equal(vmseal_disk_verify_passphrase(p("k.img"), b), 0);
    /* Both passphrases give the same volume key. */
    vmseal_secret *ka = NULL, *kb = NULL;
    assert_int_equal(vmseal_disk_volume_key(p("k.img"), a, &ka, NULL), 0);
    assert_int_equal(vmseal_disk_volume_key(p("k.img"), b, &kb, NULL), 0);
    assert_int_equal(vmseal_secret_cmp(ka, kb), 0);
    assert_int_equal(vmseal_disk_keyslot_remove(p("k.img"), c), -EKEYREJECTED);
    assert_int_equal(vmseal_disk_keyslot_remove(p("k.img"), a), 0);
    assert_int_equal(vmseal_disk_verify_passphrase(p("k.img"), a), -EKEYREJECTED);
    assert_int_equal(vmseal_disk_keyslot_remove(p("k.img"), b), -EBUSY);
    assert_non_null(strstr(vmseal_last_error(), "last"));
    assert_int_equal(vmseal_disk_verify_passphrase(p("k.img"), b), 0);
    /* Fill all eight slots. */
    for (int i = 0; i < 7; i++)
        assert_true(vmseal_disk_keyslot_add(p("k.img"), b, c) >= 0);
    assert_int_equal(vmseal_disk_keyslot_add(p("k.img"), b, c), -ENOSPC);
    vmseal_secret_free(ka);
    vmseal_secret_free(kb);
    vmseal_secret_free(a);
    vmseal_secret_free(b);
    vmseal_secret_free(c);
}

static uint8_t *corpus_header(const char *name)
{
    const char *src = getenv("VMSEAL_SRC");
    assert_non_null(src);
    char path[512];
    snprintf(path, sizeof(path), "%s/fuzz/corpus/luks_header/%s", src, name);
    size_t len;
    uint8_t *b = slurp(path, &len);
    assert_int_equal(len, VMSEAL_LUKS1_HEADER_SIZE);
    return b;
}

static void put_be32(uint8_t *p4, uint32_t v)
{
    p4[0] = (uint8_t)(v >> 24);
    p4[1] = (uint8_t)(v >> 16);
    p4[2] = (uint8_t)(v >> 8);
    p4[3] = (uint8_t)v;
}

/* Real headers from cryptsetup, qemu-img and vmseal parse; each strict
 * check refuses its own kind of damage with a message saying so. */
static void test_header_parse(void **state)
{
    (void)state;
    vmseal_disk_info in;
    uint8_t *h = corpus_header("cryptsetup-aes-cbc-essiv-2slots");
    assert_int_equal(vmseal_luks1_header_parse(h, VMSEAL_LUKS1_HEADER_SIZE, &in), 0);
    assert_string_equal(in.cipher_mode, "cbc-essiv:sha256");
    assert_string_equal(in.hash, "sha1");
    assert_int_equal(in.key_bits, 256);
    assert_int_equal(in.active_slots, 2);
    assert_int_equal(vmseal_disk_check_cipher("x", &in), -ENOTSUP);
    assert_non_null(strstr(vmseal_last_error(), "not supported"));
    free(h);
    h = corpus_header("qemu-img-luks");
    assert_int_equal(vmseal_luks1_header_parse(h, VMSEAL_LUKS1_HEADER_SIZE, &in), 0);
    assert_string_equal(in.cipher_mode, "xts-plain64");
    assert_int_equal(in.key_bits, 512);
    free(h);
    h = corpus_header("cryptsetup-aes-xts-512");
    assert_int_equal(vmseal_luks1_header_parse(h, VMSEAL_LUKS1_HEADER_SIZE, &in), 0);
    free(h);
    uint8_t *good = corpus_header("vmseal-2slots");
    assert_int_equal(vmseal_luks1_header_parse(good, VMSEAL_LUKS1_HEADER_SIZE, &in), 0);
    assert_int_equal(in.slot_mask, 3);
    assert_int_equal(in.payload_offset_bytes, 4096 * 512);

    static const struct {
        size_t off;
        int kind;            /* 0: byte value, 1: be32 value */
        uint32_t val;
        int err;
        const char *msg;
    } bad[] = {
        {0, 0, 'X', EPROTO, "bad magic"},
        {7, 0, 2, ENOTSUP, "version 2"},
        {8, 0, 0, EPROTO, "cipher name is empty"},
        {9, 0, '/', EPROTO, "invalid character"},
        {104, 1, 0, ENOTSUP, "detached header"},
        {104, 1, 1000, EPROTO, "runs into the payload"},
        {108, 1, 65, EPROTO, "invalid key size"},
        {164, 1, 0, EPROTO, "zero volume-key digest"},
        {168 + 8, 0, 'x', EPROTO, "malformed UUID"},
        {168 + 36, 0, 'a', EPROTO, "36-character UUID"},
        {208, 1, 0x12345678, EPROTO, "invalid state"},
        {208 + 4, 1, 0, EPROTO, "zero iterations"},
        {208 + 40, 1, 1, EPROTO, "overlaps the header"},
        {208 + 48 + 40, 1, 8, EPROTO, "overlap"},
        {208 + 7 * 48 + 44, 1, 3999, EPROTO, "stripes"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t b[VMSEAL_LUKS1_HEADER_SIZE];
        memcpy(b, good, sizeof(b));
        if (bad[i].kind == 0)
            b[bad[i].off] = (uint8_t)bad[i].val;
        else
            put_be32(b + bad[i].off, bad[i].val);
        int rc = vmseal_luks1_header_parse(b, sizeof(b), &in);
        if (rc != -bad[i].err || !strstr(vmseal_last_error(), bad[i].msg))
            fail_msg("damage #%zu: rc %d, message \"%s\", want -%d and \"%s\"", i, rc,
                     vmseal_last_error(), bad[i].err, bad[i].msg);
        assert_int_equal(in.is_luks, 0);
    }
    /* The 40-byte cipher-name field may hold junk after its terminator. */
    uint8_t b[VMSEAL_LUKS1_HEADER_SIZE];
    memcpy(b, good, sizeof(b));
    b[8 + 20] = 0x7f;
    assert_int_equal(vmseal_luks1_header_parse(b, sizeof(b), &in), 0);
    assert_string_equal(in.cipher, "aes");
    /* Truncated buffers. */
    assert_int_equal(vmseal_luks1_header_parse(good, VMSEAL_LUKS1_HEADER_SIZE - 1, &in), -EPROTO);
    assert_int_equal(vmseal_luks1_header_parse(NULL, 0, &in), -EPROTO);
    free(good);
}

static void test_damaged_images(void **state)
{
    (void)state;
    vmseal_secret *pass = passphrase();
    vmseal_disk_info in;
    assert_int_equal(vmseal_disk_create(p("x.img"), MiB, pass, NULL), 0);
    /* Not LUKS at all. */
    make_plain(p("junk"), 4 * MiB);
    assert_int_equal(vmseal_disk_probe(p("junk"), &in), -EPROTO);
    assert_non_null(strstr(vmseal_last_error(), "not a LUKS"));
    assert_int_equal(vmseal_disk_decrypt(p("junk"), p("junk.out"), pass, NULL), -EPROTO);
    assert_false(exists(p("junk.out")));
    /* Truncated: header area cut short, and a header-only stub. */
    assert_int_equal(system("true"), 0);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "cp %s %s && truncate -s 1048576 %s && head -c 300 %s > %s",
             p("x.img"), p("t.img"), p("t.img"), p("x.img"), p("t2.img"));
    assert_int_equal(system(cmd), 0);
    assert_int_equal(vmseal_disk_probe(p("t.img"), &in), -EPROTO);
    assert_non_null(strstr(vmseal_last_error(), "truncated"));
    assert_int_equal(vmseal_disk_decrypt(p("t.img"), p("t.out"), pass, NULL), -EPROTO);
    assert_int_equal(vmseal_disk_rekey(p("t.img"), pass, NULL), -EPROTO);
    assert_int_equal(vmseal_disk_verify_passphrase(p("t.img"), pass), -EPROTO);
    assert_int_equal(vmseal_disk_probe(p("t2.img"), &in), -EPROTO);
    assert_non_null(strstr(vmseal_last_error(), "truncated"));
    /* Corrupt keyslot stripes / version. */
    snprintf(cmd, sizeof(cmd), "cp %s %s", p("x.img"), p("s.img"));
    assert_int_equal(system(cmd), 0);
    flip_byte(p("s.img"), 208 + 47);            /* keyslot 0 stripes */
    assert_int_equal(vmseal_disk_probe(p("s.img"), &in), -EPROTO);
    assert_non_null(strstr(vmseal_last_error(), "stripes"));
    assert_int_equal(vmseal_disk_decrypt(p("s.img"), p("s.out"), pass, NULL), -EPROTO);
    flip_byte(p("s.img"), 208 + 47);
    flip_byte(p("s.img"), 7);                   /* version 1 -> 0 */
    assert_int_equal(vmseal_disk_probe(p("s.img"), &in), -ENOTSUP);
    flip_byte(p("s.img"), 7);
    /* A damaged volume-key digest: every passphrase is rejected. */
    flip_byte(p("s.img"), 112);
    assert_int_equal(vmseal_disk_probe(p("s.img"), &in), 0);
    assert_int_equal(vmseal_disk_verify_passphrase(p("s.img"), pass), -EKEYREJECTED);
    assert_int_equal(vmseal_disk_probe(p("no-such-file"), &in), -ENOENT);
    vmseal_secret_free(pass);
}

/* The ..._at variants: images named in a folder descriptor (a VM home);
 * the folder is not found again by path, names are not followed; a symlink
 * planted as the checkpoint's temporary file is not written through. */
static void test_at_variants(void **state)
{
    (void)state;
    vmseal_secret *pass = passphrase();
    assert_int_equal(mkdir(p("home"), 0700), 0);
    assert_int_equal(mkdir(p("decoy"), 0700), 0);
    int dfd = open(p("home"), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    assert_true(dfd >= 0);
    assert_int_equal(vmseal_disk_create_at(dfd, "d0.luks", 4 * MiB, pass, NULL), 0);
    assert_int_equal(vmseal_disk_verify_passphrase_at(dfd, "d0.luks", pass), 0);
    vmseal_disk_info info;
    assert_int_equal(vmseal_disk_probe_at(dfd, "d0.luks", &info), 0);
    assert_int_equal(info.payload_bytes, 4 * MiB);
    make_plain(p("home/plain"), 16 * MiB);
    /* the checkpoint's temporary file planted as a symlink to a victim */
    assert_int_equal(system("echo VICTIM > /tmp/vmseal-disk-victim.txt"), 0);
    assert_int_equal(symlinkat("/tmp/vmseal-disk-victim.txt", dfd, "e.luks.partial.ckpt.tmp"), 0);
    struct prog pg;
    vmseal_disk_opts o = opts_for(&pg, 1);
    assert_int_equal(vmseal_disk_encrypt_at(dfd, "plain", dfd, "e.luks", pass, &o), 0);
    size_t vl;
    uint8_t *v = slurp("/tmp/vmseal-disk-victim.txt", &vl);
    assert_int_equal(vl, 7);
    assert_memory_equal(v, "VICTIM\n", 7);
    free(v);
    unlink("/tmp/vmseal-disk-victim.txt");
    assert_int_equal(vmseal_disk_decrypt_at(dfd, "e.luks", dfd, "d.raw", pass, NULL), 0);
    assert_same_content(p("home/plain"), p("home/d.raw"));
    assert_int_equal(vmseal_disk_rekey_at(dfd, "e.luks", pass, NULL), 0);
    assert_int_equal(vmseal_disk_verify_passphrase_at(dfd, "e.luks", pass), 0);
    /* AT_FDCWD: name is a path */
    assert_int_equal(vmseal_disk_probe_at(AT_FDCWD, p("home/e.luks"), &info), 0);
    /* names only; a symlink is not followed, and the message names it */
    assert_int_equal(vmseal_disk_probe_at(dfd, "../home/d0.luks", &info), -EINVAL);
    assert_int_equal(vmseal_disk_probe_at(dfd, "..", &info), -EINVAL);
    assert_int_equal(vmseal_disk_create_at(dfd, "", MiB, pass, NULL), -EINVAL);
    assert_int_equal(symlinkat("d0.luks", dfd, "link.luks"), 0);
    assert_int_equal(vmseal_disk_probe_at(dfd, "link.luks", &info), -ELOOP);
    assert_int_equal(vmseal_disk_decrypt_at(dfd, "link.luks", dfd, "x.raw", pass, NULL), -ELOOP);
    assert_non_null(strstr(vmseal_last_error(), "link.luks"));
    assert_null(strstr(vmseal_last_error(), "/proc/self/fd"));
    /* the folder renamed and its name made a symlink to a decoy: the work
     * still happens in the folder the descriptor holds */
    assert_int_equal(rename(p("home"), p("moved")), 0);
    assert_int_equal(symlink(p("decoy"), p("home")), 0);
    assert_int_equal(vmseal_disk_create_at(dfd, "after.luks", MiB, pass, NULL), 0);
    assert_true(exists(p("moved/after.luks")));
    assert_false(exists(p("decoy/after.luks")));
    close(dfd);
    vmseal_secret_free(pass);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_passphrase_is_hex_of_secret),
        cmocka_unit_test(test_create_probe_verify),
        cmocka_unit_test(test_encrypt_decrypt_roundtrip),
        cmocka_unit_test(test_encrypt_cancel_resume),
        cmocka_unit_test(test_untrusted_checkpoint_restarts),
        cmocka_unit_test(test_decrypt_cancel_resume_and_stale),
        cmocka_unit_test(test_rekey),
        cmocka_unit_test(test_rekey_keeps_holes),
        cmocka_unit_test(test_keyslots),
        cmocka_unit_test(test_header_parse),
        cmocka_unit_test(test_damaged_images),
        cmocka_unit_test(test_at_variants),
        cmocka_unit_test(test_discard_partial),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
