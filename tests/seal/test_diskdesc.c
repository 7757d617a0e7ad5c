/* Disk descriptor: parse, strictness, atomic write. */
#include <errno.h>
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

#include <vmseal/diskdesc.h>

static char keysafe[VMSEAL_KEYSAFE_LINE_MAX + 1];

static int setup(void **state)
{
    (void)state;
    vmseal_secret *kek, *s;
    char *line;
    if (vmseal_secret_random(32, &kek) || vmseal_secret_random(32, &s) ||
        vmseal_keysafe_wrap(kek, "local", "kek-1", "disk:x", s, &line))
        return -1;
    snprintf(keysafe, sizeof(keysafe), "%s", line);
    free(line);
    vmseal_secret_free(kek);
    vmseal_secret_free(s);
    return 0;
}

static void test_uuid(void **state)
{
    (void)state;
    char u[37], v[37];
    assert_int_equal(vmseal_uuid_random(u), 0);
    assert_int_equal(vmseal_uuid_random(v), 0);
    assert_true(vmseal_uuid_valid(u));
    assert_string_not_equal(u, v);
    assert_int_equal(u[14], '4');
    assert_true(strchr("89ab", u[19]) != NULL);
    assert_true(vmseal_uuid_valid("6F1C2A3E-1111-4222-8333-944455556666"));
    assert_false(vmseal_uuid_valid("6f1c2a3e-1111-4222-8333-94445555666"));
    assert_false(vmseal_uuid_valid("6f1c2a3e_1111-4222-8333-944455556666"));
    assert_false(vmseal_uuid_valid("6f1c2a3e-1111-4222-8333-94445555666g"));
    char obj[64];
    vmseal_disk_object_id("6F1C2A3E-1111-4222-8333-944455556666", obj, sizeof(obj));
    assert_string_equal(obj, "disk:6f1c2a3e-1111-4222-8333-944455556666");
    char *p = vmseal_diskdesc_path("/a/b.img");
    assert_string_equal(p, "/a/b.img.vmdesc");
    free(p);
}

static void test_parse_good(void **state)
{
    (void)state;
    char text[4096];
    snprintf(text, sizeof(text),
             "# comment\n\n  version=1\nformat   =  luks1\r\nuuid = 6f1c2a3e-1111-4222-8333-944455556666\n"
             "x_note = anything at all\nkeysafe = %s  \n", keysafe);
    vmseal_diskdesc d;
    assert_int_equal(vmseal_diskdesc_parse(text, strlen(text), &d), 0);
    assert_int_equal(d.version, 1);
    assert_string_equal(d.format, "luks1");
    assert_string_equal(d.uuid, "6f1c2a3e-1111-4222-8333-944455556666");
    assert_string_equal(d.keysafe, keysafe);
    assert_int_equal(d.incomplete, 0);
    /* No trailing newline, plus the incomplete marker. */
    snprintf(text, sizeof(text),
             "version = 1\nformat = luks1\nuuid = 6f1c2a3e-1111-4222-8333-944455556666\n"
             "state = incomplete\nkeysafe = %s", keysafe);
    assert_int_equal(vmseal_diskdesc_parse(text, strlen(text), &d), 0);
    assert_int_equal(d.incomplete, 1);
}

static void test_parse_bad(void **state)
{
    (void)state;
    const char *u = "uuid = 6f1c2a3e-1111-4222-8333-944455556666\n";
    char ks[VMSEAL_KEYSAFE_LINE_MAX + 32];
    snprintf(ks, sizeof(ks), "keysafe = %s\n", keysafe);
    struct { const char *a, *b, *c, *d; int err; const char *msg; } cases[] = {
        {"version = 1\n", "format = luks1\n", u, "", -EPROTO, "'keysafe' is missing"},
        {"version = 2\n", "format = luks1\n", u, ks, -ENOTSUP, "version"},
        {"version = 1\n", "format = luks2\n", u, ks, -ENOTSUP, "luks2"},
        {"version = 1\n", "format = luks1\n", "uuid = nope\n", ks, -EPROTO, "bad uuid"},
        {"version = 1\n", "format = luks1\n", u, "keysafe = vmseal:keysafe:v1:x\n", -EPROTO,
         "line 4"},
        {"version = 1\nversion = 1\n", "format = luks1\n", u, ks, -EPROTO, "twice"},
        {"version = 1\n", "format = luks1\n", u, "colour = blue\n", -EPROTO, "unknown key"},
        {"version = 1\n", "format luks1\n", u, ks, -EPROTO, "expected 'key = value'"},
        {"Version = 1\n", "format = luks1\n", u, ks, -EPROTO, "expected"},
        {"version = 1\n", "format = luks1\n", u, "state = done\n", -EPROTO, "state"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[8192];
        snprintf(text, sizeof(text), "%s%s%s%s", cases[i].a, cases[i].b, cases[i].c, cases[i].d);
        vmseal_diskdesc d;
        int rc = vmseal_diskdesc_parse(text, strlen(text), &d);
        if (rc != cases[i].err || !strstr(vmseal_last_error(), cases[i].msg))
            fail_msg("case %zu: %d '%s'", i, rc, vmseal_last_error());
    }
    vmseal_diskdesc d;
    assert_int_equal(vmseal_diskdesc_parse("version = 1\0", 12, &d), -EPROTO);
}

static void test_write_read(void **state)
{
    (void)state;
    char dir[] = "/tmp/vmseal-desc-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/disk.img.vmdesc", dir);
    vmseal_diskdesc d = {0}, back;
    d.version = 1;
    strcpy(d.format, "luks1");
    assert_int_equal(vmseal_uuid_random(d.uuid), 0);
    strcpy(d.keysafe, keysafe);
    d.incomplete = 1;
    assert_int_equal(vmseal_diskdesc_write(path, &d, 0), 0);
    assert_int_equal(vmseal_diskdesc_write(path, &d, 0), -EEXIST);
    assert_int_equal(vmseal_diskdesc_read(path, &back), 0);
    assert_int_equal(back.incomplete, 1);
    d.incomplete = 0;
    assert_int_equal(vmseal_diskdesc_write(path, &d, 1), 0);
    assert_int_equal(vmseal_diskdesc_read(path, &back), 0);
    assert_int_equal(back.incomplete, 0);
    assert_string_equal(back.uuid, d.uuid);
    assert_string_equal(back.keysafe, keysafe);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    unlink(path);
    assert_int_equal(vmseal_diskdesc_read(path, &back), -ENOENT);
    /* No temporary files left behind. */
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uuid),
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_write_read),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
