/* Disk import through QEMU's block layer (lib/disk/disk_import.c): formats
 * detected from their magic, qcow2/vmdk/vdi/vhdx/raw imported into plain
 * and LUKS1 images (checked with `qemu-img compare`, QEMU's own luks
 * driver), holes kept, cancel and resume, a checkpoint of another source
 * not believed, images naming other files refused. Real qemu-img. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <vmseal/diskimport.h>

#define MiB (1024ull * 1024ull)

static char dir[64];

static char *p(const char *name)
{
    static char buf[8][256];
    static int i;
    i = (i + 1) % 8;
    snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
    return buf[i];
}

static int sh(const char *fmt, ...) VMSEAL_PRINTF(1, 2);
static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "# exit %d: %s\n", rc, cmd);
    return rc;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/vmseal-import-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return sh("rm -rf '%s'", dir);
}

static vmseal_secret *passphrase(void)
{
    vmseal_secret *s = NULL, *pass = NULL;
    assert_int_equal(vmseal_secret_random(VMSEAL_DISK_SECRET_LEN, &s), 0);
    assert_int_equal(vmseal_disk_passphrase_from_secret(s, &pass), 0);
    vmseal_secret_free(s);
    return pass;
}

/* A 40 MiB qcow2 with data in three places (in different 16 MiB windows)
 * and the rest unallocated. */
static void make_source(const char *fmt, const char *name)
{
    assert_int_equal(sh("cd %s && qemu-img create -q -f qcow2 tmp.qcow2 40M && "
                        "qemu-io -c 'write -P 0x41 1M 64k' -c 'write -P 0x42 20M 1M' "
                        "-c 'write -P 0x43 39M 512k' tmp.qcow2 >/dev/null && "
                        "qemu-img convert -O %s tmp.qcow2 %s && rm tmp.qcow2",
                        dir, fmt, name), 0);
}

/* 0 when the LUKS image `luks` (passphrase pass) holds what `src` holds. */
static int compare_luks(const char *fmt, const char *src, const char *luks, vmseal_secret *pass)
{
    char hex[200];
    snprintf(hex, sizeof(hex), "%.*s", (int)vmseal_secret_len(pass),
             (const char *)vmseal_secret_cdata(pass));
    return sh("qemu-img compare -q --object secret,id=k,data=%s --image-opts "
              "driver=%s,file.filename=%s driver=luks,key-secret=k,file.filename=%s",
              hex, fmt, src, luks);
}

static int open_src(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

static void test_detect(void **state)
{
    (void)state;
    uint8_t b[4096] = {0};
    assert_null(vmseal_image_format_detect(b, 100));
    assert_string_equal(vmseal_image_format_detect(b, sizeof(b)), "raw");
    memcpy(b, "QFI\xfb\0\0\0\3", 8);
    assert_string_equal(vmseal_image_format_detect(b, sizeof(b)), "qcow2");
    memcpy(b, "QFI\xfb\0\0\0\1", 8);
    assert_null(vmseal_image_format_detect(b, sizeof(b)));
    memset(b, 0, sizeof(b));
    memcpy(b, "KDMV", 4);
    assert_string_equal(vmseal_image_format_detect(b, sizeof(b)), "vmdk");
    memcpy(b, "# Disk DescriptorFile\n", 22);
    assert_null(vmseal_image_format_detect(b, sizeof(b)));
    memset(b, 0, sizeof(b));
    memcpy(b + 64, "\x7f\x10\xda\xbe", 4);
    assert_string_equal(vmseal_image_format_detect(b, sizeof(b)), "vdi");
    memset(b, 0, sizeof(b));
    memcpy(b, "vhdxfile", 8);
    assert_string_equal(vmseal_image_format_detect(b, sizeof(b)), "vhdx");
    memcpy(b, "LUKS\xba\xbe", 6);
    assert_string_equal(vmseal_image_format_detect(b, sizeof(b)), "luks");
    assert_true(vmseal_image_format_importable("vdi"));
    assert_false(vmseal_image_format_importable("luks"));
    assert_false(vmseal_image_format_importable(NULL));
}

/* Every format into a plain image: identical to the source, holes kept,
 * size rounded up to whole MiB. */
static void test_plain_formats(void **state)
{
    (void)state;
    const char *fmts[] = {"qcow2", "vmdk", "vdi", "vhdx", "raw"};
    for (size_t i = 0; i < 5; i++) {
        char src[32], out[32];
        snprintf(src, sizeof(src), "src.%s", fmts[i]);
        snprintf(out, sizeof(out), "out-%s.img", fmts[i]);
        make_source(fmts[i], src);
        int fd = open_src(p(src));
        vmseal_image_info info = {0};
        int rc = vmseal_disk_import_at(fd, src, NULL, AT_FDCWD, p(out), NULL, NULL, NULL, &info);
        if (rc != 0)
            fail_msg("%s: %s", fmts[i], vmseal_last_error());
        assert_string_equal(info.format, fmts[i]);
        assert_int_equal(info.disk_size, 40 * MiB);
        close(fd);
        assert_int_equal(sh("qemu-img compare -q -f %s -F raw %s %s", fmts[i], p(src), p(out)), 0);
        struct stat st;
        assert_int_equal(stat(p(out), &st), 0);
        assert_int_equal((uint64_t)st.st_size, 40 * MiB);
        assert_true((uint64_t)st.st_blocks * 512 < 8 * MiB);     /* holes kept */
        assert_int_equal(access(p("out.img.partial"), F_OK), -1);
    }
}

/* An odd-sized raw source becomes whole MiB; the tail reads as zeros. */
static void test_raw_rounding(void **state)
{
    (void)state;
    assert_int_equal(sh("head -c 1500000 /dev/urandom > %s", p("odd.raw")), 0);
    int fd = open_src(p("odd.raw"));
    vmseal_image_info info = {0};
    assert_int_equal(vmseal_disk_import_at(fd, "odd.raw", "raw", AT_FDCWD, p("odd.img"), NULL, NULL,
                                           NULL, &info), 0);
    close(fd);
    assert_int_equal(info.virtual_size, 1500160);     /* QEMU: whole sectors */
    assert_int_equal(info.disk_size, 2 * MiB);
    assert_int_equal(sh("cmp -n 1500000 %s %s", p("odd.raw"), p("odd.img")), 0);
    assert_int_equal(sh("tail -c +1500001 %s | tr -d '\\0' | wc -c | grep -qx 0", p("odd.img")), 0);
}

static volatile sig_atomic_t cancel_flag;
static uint64_t first_done, calls;

static void cancel_after_first(uint64_t done, uint64_t total, void *ctx)
{
    (void)total;
    (void)ctx;
    if (calls++ == 0)
        first_done = done;
    if (done > 0)
        cancel_flag = 1;
}

/* Encrypted: cancelled after the first window, resumed at the checkpoint,
 * the result opens with QEMU's luks driver and equals the source. */
static void test_luks_cancel_resume(void **state)
{
    (void)state;
    make_source("qcow2", "enc.qcow2");
    vmseal_secret *pass = passphrase();
    vmseal_disk_opts o = {.progress = cancel_after_first, .cancel = &cancel_flag,
                          .uuid = "0b8f2a52-3d64-4c8e-9e0a-9a3b7f6c1d20"};
    vmseal_import_opts io = {.window = 16 * MiB};
    int fd = open_src(p("enc.qcow2"));
    cancel_flag = 0;
    calls = 0;
    assert_int_equal(vmseal_disk_import_at(fd, "enc.qcow2", NULL, AT_FDCWD, p("enc.luks"), pass, &o,
                                           &io, NULL), -ECANCELED);
    assert_int_equal(access(p("enc.luks"), F_OK), -1);
    assert_int_equal(access(p("enc.luks.partial"), F_OK), 0);
    assert_int_equal(access(p("enc.luks.partial.ckpt"), F_OK), 0);
    /* resumed: the first progress report is past the start */
    cancel_flag = 0;
    calls = 0;
    o.cancel = NULL;
    assert_int_equal(vmseal_disk_import_at(fd, "enc.qcow2", NULL, AT_FDCWD, p("enc.luks"), pass, &o,
                                           &io, NULL), 0);
    assert_true(first_done >= 16 * MiB);
    close(fd);
    assert_int_equal(access(p("enc.luks.partial"), F_OK), -1);
    assert_int_equal(compare_luks("qcow2", p("enc.qcow2"), p("enc.luks"), pass), 0);
    vmseal_disk_info di;
    assert_int_equal(vmseal_disk_probe(p("enc.luks"), &di), 0);
    assert_string_equal(di.uuid, "0b8f2a52-3d64-4c8e-9e0a-9a3b7f6c1d20");
    assert_int_equal(di.payload_bytes, 40 * MiB);
    /* no plaintext pattern on disk */
    assert_int_not_equal(sh("grep -c BBBBBBBBBBBBBBBB %s >/dev/null", p("enc.luks")), 0);
    /* the output exists now */
    fd = open_src(p("enc.qcow2"));
    assert_int_equal(vmseal_disk_import_at(fd, "enc.qcow2", NULL, AT_FDCWD, p("enc.luks"), pass, NULL,
                                           NULL, NULL), -EEXIST);
    close(fd);
    vmseal_secret_free(pass);
}

/* A partial output left by an import of another source, or with another
 * passphrase, is not resumed: started over, still correct. */
static void test_resume_other_source(void **state)
{
    (void)state;
    make_source("qcow2", "a.qcow2");
    assert_int_equal(sh("cd %s && qemu-img create -q -f qcow2 b.qcow2 40M && "
                        "qemu-io -c 'write -P 0x5a 0 30M' b.qcow2 >/dev/null", dir), 0);
    vmseal_secret *pass = passphrase();
    vmseal_disk_opts o = {.progress = cancel_after_first, .cancel = &cancel_flag};
    vmseal_import_opts io = {.window = 8 * MiB};
    int a = open_src(p("a.qcow2")), b = open_src(p("b.qcow2"));
    cancel_flag = 0;
    calls = 0;
    assert_int_equal(vmseal_disk_import_at(b, "b.qcow2", NULL, AT_FDCWD, p("x.luks"), pass, &o, &io,
                                           NULL), -ECANCELED);
    o.cancel = NULL;
    calls = 0;
    assert_int_equal(vmseal_disk_import_at(a, "a.qcow2", NULL, AT_FDCWD, p("x.luks"), pass, &o, &io,
                                           NULL), 0);
    assert_int_equal(first_done, 0);
    assert_int_equal(compare_luks("qcow2", p("a.qcow2"), p("x.luks"), pass), 0);
    close(a);
    close(b);
    vmseal_secret_free(pass);
}

/* Images that name other files, or are not imported, are refused before
 * any output exists. */
static void test_refused(void **state)
{
    (void)state;
    assert_int_equal(sh("cd %s && qemu-img create -q -f qcow2 base.qcow2 10M && "
                        "qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 over.qcow2 && "
                        "qemu-img create -q -f vmdk -o subformat=monolithicFlat flat.vmdk 10M && "
                        "qemu-img create -q -f qcow2 -o data_file=ext.raw ext.qcow2 10M && "
                        "truncate -s 8M l.luks && printf x > l.pw && cryptsetup luksFormat -q --type luks1 "
                        "--pbkdf-force-iterations 1000 --key-file l.pw l.luks && "
                        "qemu-img create -q -f vpc v.vhd 10M && "
                        "r() { for t in 1 2 3 4 5 6 7 8 9 10; do \"$@\" && return 0; sleep 0.3; done; return 1; } && "
                        "r qemu-img create -q -f qcow2 --object secret,id=s,data=x "
                        "-o encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10 e.qcow2 10M && "
                        "printf tiny > tiny.raw", dir), 0);
    struct { const char *file, *fmt; int err; const char *says; } c[] = {
        {"over.qcow2", NULL, EINVAL, "backing file"},
        {"flat.vmdk", NULL, ENOTSUP, "does not import"},
        {"flat-flat.vmdk", "vmdk", EINVAL, "does not look like"},
        {"ext.qcow2", NULL, EINVAL, "external file"},
        {"l.luks", NULL, ENOTSUP, "adopt"},
        {"v.vhd", NULL, ENOTSUP, "does not import"},
        {"e.qcow2", NULL, ENOTSUP, "encrypted"},
        {"tiny.raw", NULL, EINVAL, "too small"},
        {"base.qcow2", "vdi", EINVAL, "does not look like"},
    };
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        int fd = open_src(p(c[i].file));
        int rc = vmseal_disk_import_at(fd, c[i].file, c[i].fmt, AT_FDCWD, p("refused.img"), NULL,
                                       NULL, NULL, NULL);
        close(fd);
        if (rc != -c[i].err || !strstr(vmseal_last_error(), c[i].says))
            fail_msg("%s: %d %s", c[i].file, rc, vmseal_last_error());
        assert_int_equal(access(p("refused.img"), F_OK), -1);
        assert_int_equal(access(p("refused.img.partial"), F_OK), -1);
    }
}

static vmseal_secret *text_secret(const char *t)
{
    vmseal_secret *s = NULL;
    assert_int_equal(vmseal_secret_from(t, strlen(t), &s), 0);
    return s;
}

/* LUKS1 images made by qemu-img and by cryptsetup are adopted without
 * touching their data: a wrong passphrase changes nothing; vmseal's
 * passphrase then opens them, the old one only until it is removed;
 * running again (a resume) is harmless; LUKS2 and another cipher are
 * refused. */
static void test_adopt(void **state)
{
    (void)state;
    /* QEMU's PBKDF2 calibration can fail on a loaded machine ("Unable to
     * get accurate CPU usage", three times in a row in a CI run): tried up
     * to ten times */
    assert_int_equal(sh("cd %s && r() { for t in 1 2 3 4 5 6 7 8 9 10; do \"$@\" && return 0; sleep 0.3; done; return 1; } && "
                        "r qemu-img create -q -f luks --object secret,id=s,data=user-pass "
                        "-o key-secret=s,iter-time=10 q.luks 8M && "
                        "qemu-io --object secret,id=s,data=user-pass --image-opts "
                        "-c 'write -P 0x61 1M 64k' driver=luks,key-secret=s,file.filename=q.luks "
                        ">/dev/null && "
                        "printf user-pass > pw && truncate -s 8M c.luks && "
                        "cryptsetup luksFormat -q --type luks1 --pbkdf-force-iterations 1000 "
                        "--key-file pw c.luks && "
                        "truncate -s 8M c2.luks && cryptsetup luksFormat -q --type luks2 "
                        "--pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file pw c2.luks && "
                        "r qemu-img create -q -f luks --object secret,id=s,data=user-pass "
                        "-o key-secret=s,iter-time=10,cipher-alg=serpent-256 s.luks 8M", dir), 0);
    vmseal_secret *user = text_secret("user-pass"), *wrong = text_secret("user-pasS");
    vmseal_secret *mine = passphrase();
    const char *imgs[] = {"q.luks", "c.luks"};
    for (size_t i = 0; i < 2; i++) {
        vmseal_disk_info a, b;
        assert_int_equal(vmseal_disk_probe(p(imgs[i]), &a), 0);
        assert_int_equal(vmseal_disk_adopt(p(imgs[i]), wrong, mine, 1, &b), -EKEYREJECTED);
        assert_int_equal(vmseal_disk_probe(p(imgs[i]), &b), 0);
        assert_int_equal(b.slot_mask, a.slot_mask);                       /* nothing written */
        assert_int_equal(vmseal_disk_verify_passphrase(p(imgs[i]), mine), -EKEYREJECTED);
        assert_int_equal(vmseal_disk_adopt(p(imgs[i]), user, mine, 0, &b), 0);
        assert_string_equal(b.uuid, a.uuid);
        assert_memory_equal(b.mk_digest, a.mk_digest, 20);               /* same volume key */
        assert_int_equal(b.active_slots, a.active_slots + 1);
        assert_int_equal(vmseal_disk_verify_passphrase(p(imgs[i]), mine), 0);
        assert_int_equal(vmseal_disk_verify_passphrase(p(imgs[i]), user), 0);
        /* again, now removing the user's passphrase: only vmseal's opens */
        assert_int_equal(vmseal_disk_adopt(p(imgs[i]), user, mine, 1, &b), 0);
        assert_int_equal(b.active_slots, a.active_slots);
        assert_int_equal(vmseal_disk_verify_passphrase(p(imgs[i]), user), -EKEYREJECTED);
        assert_int_equal(vmseal_disk_verify_passphrase(p(imgs[i]), mine), 0);
        /* a resume after the removal: nothing to do */
        assert_int_equal(vmseal_disk_adopt(p(imgs[i]), user, mine, 1, &b), 0);
    }
    /* the data qemu-io wrote reads back through vmseal's passphrase */
    char hex[80];
    snprintf(hex, sizeof(hex), "%.*s", (int)vmseal_secret_len(mine),
             (const char *)vmseal_secret_cdata(mine));
    assert_int_equal(sh("qemu-io --object secret,id=s,data=%s --image-opts -c 'read -P 0x61 1M 64k' "
                        "driver=luks,key-secret=s,file.filename=%s | grep -q 'read 65536'",
                        hex, p("q.luks")), 0);
    assert_int_not_equal(vmseal_disk_adopt(p("c2.luks"), user, mine, 0, NULL), 0);
    assert_int_equal(vmseal_disk_adopt(p("s.luks"), user, mine, 0, NULL), -ENOTSUP);
    vmseal_secret_free(user);
    vmseal_secret_free(wrong);
    vmseal_secret_free(mine);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect),
        cmocka_unit_test_setup_teardown(test_plain_formats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raw_rounding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_luks_cancel_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_other_source, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adopt, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
