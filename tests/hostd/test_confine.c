/* qemu-img for imports confined like QEMU (hostd/confine.h): with a
 * qemu_user (here "nobody"; hostd runs as root) the qemu-img child runs as
 * that user with no supplementary groups, no capabilities and no new
 * privileges, yet reads the source and writes the output and the LUKS
 * passphrase it was handed (an encrypted and a plain import succeed, the
 * plain one byte-exact); the output goes back to root:root 0600; a source
 * the user cannot read is refused with a message naming the user. A
 * wrapper in front of the real qemu-img records what the child is. Skipped
 * when not root or without a "nobody" user. */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <vmseal/diskimport.h>
#include <vmseal/secret.h>

#include "confine.h"

static char dir[64];

static const char *p(const char *name)
{
    static char buf[4][256];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
    return buf[i];
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *b = calloc(1, 4096);
    size_t n = fread(b, 1, 4095, f);
    b[n] = '\0';
    fclose(f);
    return b;
}

/* What the wrapper saw of itself: "Key:\tvalue" of /proc/self/status or
 * "uid N" lines. */
static void expect_confined(const char *log, const struct passwd *pw)
{
    char want[64];
    snprintf(want, sizeof(want), "uid %u gid %u groups %u\n", (unsigned)pw->pw_uid,
             (unsigned)pw->pw_gid, (unsigned)pw->pw_gid);
    if (!strstr(log, want))
        fail_msg("qemu-img ran as\n%s\nwant %s", log, want);
    assert_non_null(strstr(log, "NoNewPrivs:\t1"));
    assert_non_null(strstr(log, "CapEff:\t0000000000000000"));
    assert_non_null(strstr(log, "CapPrm:\t0000000000000000"));
}

static void test_import_confined(void **state)
{
    (void)state;
    struct passwd *pwp = getpwnam("nobody");
    if (geteuid() != 0 || !pwp)
        skip();
    struct passwd pw = *pwp;
    snprintf(dir, sizeof(dir), "/tmp/vmseal-confine.XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(chmod(dir, 0755), 0);
    /* the wrapper: what it runs as, then the real qemu-img */
    FILE *w = fopen(p("qemu-img-wrap"), "w");
    assert_non_null(w);
    fprintf(w, "#!/bin/sh\n{ echo \"uid $(id -u) gid $(id -g) groups $(id -G)\"; "
               "grep -E '^(NoNewPrivs|CapEff|CapPrm):' /proc/self/status; } >> %s\n"
               "exec qemu-img \"$@\"\n", p("who.log"));
    fclose(w);
    assert_int_equal(chmod(p("qemu-img-wrap"), 0755), 0);
    int lf = open(p("who.log"), O_WRONLY | O_CREAT | O_TRUNC, 0666);
    assert_true(lf >= 0);
    assert_int_equal(fchmod(lf, 0666), 0);
    close(lf);
    /* a 4 MiB raw source, readable by others (as an images folder's) */
    int sf = open(p("src.raw"), O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(sf >= 0);
    static char block[1 << 20];
    for (int i = 0; i < 4; i++) {
        memset(block, 'A' + i, sizeof(block));
        assert_int_equal(write(sf, block, sizeof(block)), (ssize_t)sizeof(block));
    }
    assert_int_equal(fchmod(sf, 0644), 0);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    assert_true(dfd >= 0);

    /* plain */
    hostd_import_confine cf;
    vmseal_import_opts io;
    assert_int_equal(hostd_import_confine_init("nobody", sf, "src.raw", &cf, &io), 0);
    io.qemu_img = p("qemu-img-wrap");
    if (vmseal_disk_import_at(sf, "src.raw", "raw", dfd, "plain.img", NULL, NULL, &io, NULL) != 0)
        fail_msg("confined plain import: %s", vmseal_last_error());
    hostd_import_done(&cf, dfd, "plain.img");
    char *log = slurp(p("who.log"));
    assert_non_null(log);
    expect_confined(log, &pw);
    free(log);
    struct stat st;
    assert_int_equal(stat(p("plain.img"), &st), 0);
    assert_int_equal(st.st_uid, 0);
    assert_int_equal(st.st_gid, 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "cmp -s -n %d %s %s", 4 << 20, p("src.raw"), p("plain.img"));
    assert_int_equal(system(cmd), 0);

    /* encrypted: the passphrase pipe reaches the confined qemu-img */
    lf = open(p("who.log"), O_WRONLY | O_TRUNC);
    close(lf);
    vmseal_secret *pass = NULL;
    const char *pw_hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    assert_int_equal(vmseal_secret_from(pw_hex, strlen(pw_hex), &pass), 0);
    assert_int_equal(hostd_import_confine_init("nobody", sf, "src.raw", &cf, &io), 0);
    io.qemu_img = p("qemu-img-wrap");
    if (vmseal_disk_import_at(sf, "src.raw", "raw", dfd, "enc.luks", pass, NULL, &io, NULL) != 0)
        fail_msg("confined encrypted import: %s", vmseal_last_error());
    hostd_import_done(&cf, dfd, "enc.luks");
    log = slurp(p("who.log"));
    assert_non_null(log);
    expect_confined(log, &pw);
    free(log);
    assert_int_equal(stat(p("enc.luks"), &st), 0);
    assert_int_equal(st.st_uid, 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    snprintf(cmd, sizeof(cmd), "grep -c AAAAAAAAAAAAAAAA %s >/dev/null", p("enc.luks"));
    assert_int_not_equal(system(cmd), 0);
    vmseal_secret_free(pass);

    /* a source the user cannot read: refused before qemu-img runs */
    assert_int_equal(fchmod(sf, 0600), 0);
    assert_int_equal(hostd_import_confine_init("nobody", sf, "src.raw", &cf, &io), -EACCES);
    assert_non_null(strstr(vmseal_last_error(), "not readable by nobody (qemu_user"));
    /* no qemu_user: not confined (opts of defaults) */
    assert_int_equal(hostd_import_confine_init(NULL, sf, "src.raw", &cf, &io), 0);
    assert_int_equal(cf.confine, 0);
    /* root is no qemu_user */
    assert_int_equal(hostd_import_confine_init("root", sf, "src.raw", &cf, &io), -ENOENT);

    close(sf);
    close(dfd);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_import_confined),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
