/* "key = value" configuration files (lib/conf/conffile.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <vmseal/common.h>
#include <vmseal/conffile.h>

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void test_reads_settings(void **state)
{
    (void)state;
    char dir[] = "/tmp/vmseal-conffile-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/x.conf", dir);
    write_file(path, "# comment\n\n  port = 5696  \nname=a b\n\tempty =\n  # indented\nbroken\n");
    vmseal_conffile *cf = NULL;
    assert_int_equal(vmseal_conffile_open(path, &cf), 0);
    char *k, *v;
    assert_int_equal(vmseal_conffile_next(cf, &k, &v), 1);
    assert_string_equal(k, "port");
    assert_string_equal(v, "5696");
    assert_int_equal(vmseal_conffile_line(cf), 3);
    assert_int_equal(vmseal_conffile_next(cf, &k, &v), 1);
    assert_string_equal(k, "name");
    assert_string_equal(v, "a b");
    assert_int_equal(vmseal_conffile_next(cf, &k, &v), 1);
    assert_string_equal(k, "empty");
    assert_string_equal(v, "");
    assert_int_equal(vmseal_conffile_line(cf), 5);
    assert_int_equal(vmseal_conffile_next(cf, &k, &v), -EINVAL);
    char want[160];
    snprintf(want, sizeof(want), "%s:7: expected key = value", path);
    assert_string_equal(vmseal_last_error(), want);
    assert_int_equal(vmseal_conffile_next(cf, &k, &v), 0);
    vmseal_conffile_close(cf);

    char *p = vmseal_conffile_path(dir, "x.conf");
    assert_string_equal(p, path);
    free(p);
    p = vmseal_conffile_path(path, "x.conf");
    assert_string_equal(p, path);
    free(p);
    p = vmseal_conffile_dir(path);
    assert_string_equal(p, dir);
    free(p);

    assert_int_equal(unlink(path), 0);
    assert_int_equal(vmseal_conffile_open(path, &cf), -ENOENT);
    assert_null(cf);
    assert_non_null(strstr(vmseal_last_error(), "cannot open"));
    assert_int_equal(rmdir(dir), 0);
}

static void test_dir_and_resolve(void **state)
{
    (void)state;
    struct {
        const char *file, *dir;
    } dirs[] = {{"kmsd.conf", "."}, {"/kmsd.conf", "/"}, {"/etc/vmseal/kmsd.conf", "/etc/vmseal"},
                {"a/b.conf", "a"}, {"", "."}};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        char *d = vmseal_conffile_dir(dirs[i].file);
        assert_string_equal(d, dirs[i].dir);
        free(d);
    }
    char *r = vmseal_conffile_resolve("/etc/vmseal", "cert.pem");
    assert_string_equal(r, "/etc/vmseal/cert.pem");
    free(r);
    r = vmseal_conffile_resolve("/etc/vmseal", "/srv/cert.pem");
    assert_string_equal(r, "/srv/cert.pem");
    free(r);
    r = vmseal_conffile_resolve(NULL, "cert.pem");
    assert_string_equal(r, "cert.pem");
    free(r);
}

static void test_int(void **state)
{
    (void)state;
    long n = -7;
    assert_int_equal(vmseal_conffile_int("65535", 0, 65535, &n), 0);
    assert_int_equal(n, 65535);
    assert_int_equal(vmseal_conffile_int("0", 0, 65535, &n), 0);
    assert_int_equal(n, 0);
    const char *bad[] = {"", "65536", "-1", "12x", "x", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        n = 42;
        assert_int_equal(vmseal_conffile_int(bad[i], 0, 65535, &n), -1);
        assert_int_equal(n, 42);
    }
    char s[] = " \t a b \n";
    assert_string_equal(vmseal_conffile_trim(s), "a b");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_settings),
        cmocka_unit_test(test_dir_and_resolve),
        cmocka_unit_test(test_int),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
