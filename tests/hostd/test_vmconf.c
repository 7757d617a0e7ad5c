/* vm.conf: strict parsing, round trip, editing, atomic save. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <vmseal/vmconf.h>

static vmseal_vmconf *parse_ok(const char *text)
{
    vmseal_vmconf *c = NULL;
    int r = vmseal_vmconf_parse(text, strlen(text), &c);
    if (r != 0)
        fail_msg("parse failed: %s", vmseal_last_error());
    return c;
}

static void parse_bad(const char *text, size_t len, const char *msg_part)
{
    vmseal_vmconf *c = NULL;
    assert_int_equal(vmseal_vmconf_parse(text, len, &c), -EPROTO);
    assert_null(c);
    if (msg_part && !strstr(vmseal_last_error(), msg_part))
        fail_msg("message '%s' lacks '%s'", vmseal_last_error(), msg_part);
}

static void test_parse_and_get(void **state)
{
    (void)state;
    vmseal_vmconf *c = parse_ok("# comment\n\n  name =  web01  \nappend = console=ttyS0 a=b\n"
                                "empty =\ndisks = 2\nbig = 18446744073709551615\n"
                                "over = 18446744073709551616\nneg = -1\nlast = no newline");
    assert_int_equal(vmseal_vmconf_count(c), 8);
    assert_string_equal(vmseal_vmconf_get(c, "name"), "web01");
    assert_string_equal(vmseal_vmconf_get(c, "append"), "console=ttyS0 a=b");
    assert_string_equal(vmseal_vmconf_get(c, "empty"), "");
    assert_string_equal(vmseal_vmconf_get(c, "last"), "no newline");
    assert_null(vmseal_vmconf_get(c, "missing"));
    uint64_t v;
    assert_int_equal(vmseal_vmconf_get_u64(c, "disks", &v), 0);
    assert_int_equal(v, 2);
    assert_int_equal(vmseal_vmconf_get_u64(c, "big", &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(vmseal_vmconf_get_u64(c, "over", &v), -EPROTO);
    assert_int_equal(vmseal_vmconf_get_u64(c, "neg", &v), -EPROTO);
    assert_int_equal(vmseal_vmconf_get_u64(c, "empty", &v), -EPROTO);
    assert_int_equal(vmseal_vmconf_get_u64(c, "missing", &v), -ENOENT);
    vmseal_vmconf_free(c);
}

static void test_parse_errors(void **state)
{
    (void)state;
    parse_bad("name = a\nname = b\n", 18, "line 2");
    parse_bad("a = 1\nName = x\n", 15, "line 2");
    parse_bad("novalue\n", 8, "line 1");
    parse_bad("= x\n", 4, "line 1");
    parse_bad("1abc = x\n", 9, "line 1");
    parse_bad("a = x\ty\n", 8, "line 1");
    parse_bad("a = x\r\n", 7, "line 1");
    parse_bad("a = x\0y\n", 8, "line 1");
    parse_bad("# c\0\n", 5, "NUL");
    char key[80];
    memset(key, 'a', 65);
    snprintf(key + 65, sizeof(key) - 65, " = 1\n");
    parse_bad(key, strlen(key), "line 1");
    size_t n = VMSEAL_VMCONF_VALUE_MAX + 10;
    char *big = malloc(n + 1);
    memcpy(big, "a = ", 4);
    memset(big + 4, 'x', n - 4);
    parse_bad(big, n, "line 1");
    free(big);
    /* too many entries */
    size_t cap = (VMSEAL_VMCONF_ENTRIES_MAX + 1) * 16;
    char *many = malloc(cap), *p = many;
    for (int i = 0; i <= VMSEAL_VMCONF_ENTRIES_MAX; i++)
        p += sprintf(p, "k%d = v\n", i);
    vmseal_vmconf *c = NULL;
    assert_int_equal(vmseal_vmconf_parse(many, (size_t)(p - many), &c), -E2BIG);
    free(many);
}

static void test_edit_and_format(void **state)
{
    (void)state;
    vmseal_vmconf *c = vmseal_vmconf_new();
    assert_int_equal(vmseal_vmconf_set(c, "name", "vm1"), 0);
    assert_int_equal(vmseal_vmconf_setf(c, "disks", "%d", 2), 0);
    assert_int_equal(vmseal_vmconf_set(c, "disk0.file", "disk0.img"), 0);
    assert_int_equal(vmseal_vmconf_set(c, "disk0.next.file", "disk0.luks"), 0);
    assert_int_equal(vmseal_vmconf_set(c, "disk1.file", "disk1.img"), 0);
    assert_int_equal(vmseal_vmconf_set(c, "name", "vm2"), 0);   /* replaced in place */
    assert_int_equal(vmseal_vmconf_key_at(c, 0)[0], 'n');
    assert_int_equal(vmseal_vmconf_set(c, "Bad", "x"), -EINVAL);
    assert_int_equal(vmseal_vmconf_set(c, "ok", " leading"), -EINVAL);
    assert_int_equal(vmseal_vmconf_set(c, "ok", "new\nline"), -EINVAL);
    vmseal_vmconf_unset_prefix(c, "disk0.");
    assert_null(vmseal_vmconf_get(c, "disk0.file"));
    assert_null(vmseal_vmconf_get(c, "disk0.next.file"));
    assert_string_equal(vmseal_vmconf_get(c, "disk1.file"), "disk1.img");
    vmseal_vmconf_unset(c, "disks");
    vmseal_vmconf_unset(c, "not-there");
    char *text = vmseal_vmconf_format(c);
    assert_non_null(strstr(text, "\nname = vm2\ndisk1.file = disk1.img\n"));
    vmseal_vmconf *again = parse_ok(text);
    assert_int_equal(vmseal_vmconf_count(again), 2);
    vmseal_vmconf *d = vmseal_vmconf_dup(again);
    assert_string_equal(vmseal_vmconf_get(d, "name"), "vm2");
    free(text);
    vmseal_vmconf_free(again);
    vmseal_vmconf_free(d);
    vmseal_vmconf_free(c);
}

static void test_atomic_save(void **state)
{
    (void)state;
    char dir[] = "/tmp/vmseal-vmconf.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128], tmp[140];
    snprintf(path, sizeof(path), "%s/vm.conf", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    vmseal_vmconf *c = parse_ok("name = one\n");
    assert_int_equal(vmseal_vmconf_save(c, path), 0);
    struct stat st1, st2;
    assert_int_equal(stat(path, &st1), 0);
    assert_int_equal(st1.st_mode & 0777, 0600);
    assert_int_equal(vmseal_vmconf_set(c, "name", "two"), 0);
    assert_int_equal(vmseal_vmconf_save(c, path), 0);
    assert_int_equal(stat(path, &st2), 0);
    assert_true(st1.st_ino != st2.st_ino);   /* replaced by rename, not rewritten */
    assert_int_not_equal(access(tmp, F_OK), 0);
    vmseal_vmconf *back = NULL;
    assert_int_equal(vmseal_vmconf_load(path, &back), 0);
    assert_string_equal(vmseal_vmconf_get(back, "name"), "two");
    vmseal_vmconf_free(back);
    assert_int_equal(vmseal_vmconf_load(dir, &back), -EPROTO);   /* a directory */
    char missing[140];
    snprintf(missing, sizeof(missing), "%s/none.conf", dir);
    assert_int_equal(vmseal_vmconf_load(missing, &back), -ENOENT);
    vmseal_vmconf_free(c);
    unlink(path);
    rmdir(dir);
}

/* Line numbers are kept for messages; loadat/saveat work relative to a
 * folder and never through a symlink. */
static void test_lines_and_at(void **state)
{
    (void)state;
    vmseal_vmconf *c = parse_ok("# head\n\nname = a\n  # c\ndisks = 1\n");
    assert_int_equal(vmseal_vmconf_line_at(c, 0), 3);
    assert_int_equal(vmseal_vmconf_line_of(c, "disks"), 5);
    assert_int_equal(vmseal_vmconf_line_of(c, "none"), 0);
    assert_int_equal(vmseal_vmconf_set(c, "name", "b"), 0);
    assert_int_equal(vmseal_vmconf_line_of(c, "name"), 3);
    assert_int_equal(vmseal_vmconf_set(c, "added", "x"), 0);
    assert_int_equal(vmseal_vmconf_line_of(c, "added"), 0);
    vmseal_vmconf *d = vmseal_vmconf_dup(c);
    assert_int_equal(vmseal_vmconf_line_of(d, "disks"), 5);
    vmseal_vmconf_free(d);

    char dir[] = "/tmp/vmseal-vmconf-at.XXXXXX", victim[64], path[96];
    assert_non_null(mkdtemp(dir));
    int dfd = open(dir, O_PATH | O_DIRECTORY);
    assert_true(dfd >= 0);
    assert_int_equal(vmseal_vmconf_saveat(c, dfd, "vm.conf"), 0);
    vmseal_vmconf *back = NULL;
    assert_int_equal(vmseal_vmconf_loadat(dfd, "vm.conf", &back), 0);
    assert_string_equal(vmseal_vmconf_get(back, "name"), "b");
    vmseal_vmconf_free(back);
    assert_int_equal(vmseal_vmconf_loadat(dfd, "../vm.conf", &back), -EINVAL);
    /* a symlink planted as the temporary file is removed, not written through */
    snprintf(victim, sizeof(victim), "%s.victim", dir);
    FILE *f = fopen(victim, "w");
    assert_non_null(f);
    fputs("untouched\n", f);
    fclose(f);
    assert_int_equal(symlinkat(victim, dfd, "vm.conf.tmp"), 0);
    assert_int_equal(vmseal_vmconf_saveat(c, dfd, "vm.conf"), 0);
    char got[32] = "";
    f = fopen(victim, "r");
    assert_non_null(f);
    assert_non_null(fgets(got, sizeof(got), f));
    fclose(f);
    assert_string_equal(got, "untouched\n");
    /* vm.conf itself replaced by a symlink: not read */
    assert_int_equal(unlinkat(dfd, "vm.conf", 0), 0);
    assert_int_equal(symlinkat(victim, dfd, "vm.conf"), 0);
    assert_int_equal(vmseal_vmconf_loadat(dfd, "vm.conf", &back), -ELOOP);
    assert_null(back);
    assert_int_equal(unlinkat(dfd, "vm.conf", 0), 0);
    close(dfd);
    snprintf(path, sizeof(path), "%s", dir);
    assert_int_equal(rmdir(path), 0);
    unlink(victim);
    vmseal_vmconf_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_get),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_edit_and_format),
        cmocka_unit_test(test_atomic_save),
        cmocka_unit_test(test_lines_and_at),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
