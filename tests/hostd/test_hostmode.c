/* Host encryption mode (hostd/hostmode.c): the core_pattern hostd installs
 * (written to a stand-in file, never the kernel's), what it refuses, and
 * the pattern driven as the kernel would: split into words, %P %e %t
 * filled in, a core fed on stdin to the handler it names; the sealed core
 * opens with the host's private key only. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "hostmode.h"

static char dir[64], key[128], pat[128], cores[128], handler[128], cu[512], priv[128];

static int run(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/vmseal-hm.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    const char *b = getenv("VMSEAL_BUILD");
    /* short paths: the kernel takes a core_pattern of at most 127 bytes */
    char real[512];
    snprintf(real, sizeof(real), "%s/hostd/vmseal-coredump-handler", b ? b : "build");
    snprintf(handler, sizeof(handler), "%s/h", dir);
    if (symlink(real, handler) != 0)
        return -1;
    snprintf(cu, sizeof(cu), "%s/crypto-util/vmseal-crypto-util", b ? b : "build");
    snprintf(key, sizeof(key), "%s/k", dir);
    snprintf(priv, sizeof(priv), "%s/h.key", dir);
    snprintf(pat, sizeof(pat), "%s/core_pattern", dir);
    snprintf(cores, sizeof(cores), "%s/c", dir);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s hostkey generate %s %s >/dev/null 2>&1", cu, priv, key);
    if (run(cmd) != 0)
        return -1;
    FILE *f = fopen(pat, "w");
    if (!f)
        return -1;
    fputs("core\n", f);
    fclose(f);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return run(cmd) == 0 ? 0 : -1;
}

static void test_check_and_manage(void **state)
{
    (void)state;
    hostd_hostmode m;
    hostd_hostmode_config c = {.key = key, .dir = cores, .handler = handler,
                               .core_pattern_path = pat};
    /* check: the pattern is not there, reported, the folder made 0700 */
    assert_int_equal(hostd_hostmode_setup(&c, &m), 0);
    assert_true(m.enabled);
    assert_false(m.installed);
    assert_non_null(strstr(m.error, "not vmseal-coredump-handler's"));
    struct stat st;
    assert_int_equal(stat(cores, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    /* manage: written, read back, installed */
    c.manage = 1;
    assert_int_equal(hostd_hostmode_setup(&c, &m), 0);
    assert_true(m.installed);
    assert_string_equal(m.error, "");
    assert_true(m.pattern[0] == '|');
    assert_non_null(strstr(m.pattern, " %P %e %t"));
    json_t *j = hostd_hostmode_json(&m);
    assert_true(json_is_true(json_object_get(j, "installed")));
    json_decref(j);

    /* as the kernel runs it: words of the pattern, specifiers filled in */
    char cmd[4096], p[2048];
    snprintf(p, sizeof(p), "%s", m.pattern + 1);
    char *at = strstr(p, "%P %e %t");
    assert_non_null(at);
    snprintf(at, sizeof(p) - (size_t)(at - p), "4242 vmseal-hostd 1700000000");
    snprintf(cmd, sizeof(cmd),
             "{ printf '\\177ELF'; printf 'HOSTD-CORE-MARKER'; head -c 100000 /dev/zero; } > %s/core.in && "
             "%s < %s/core.in", dir, p, dir);
    assert_int_equal(run(cmd), 0);
    snprintf(cmd, sizeof(cmd), "test -f %s/core-1700000000-vmseal-hostd-4242.vmhcore && "
             "! grep -q HOSTD-CORE-MARKER %s/core-1700000000-vmseal-hostd-4242.vmhcore && "
             "%s coredump decrypt --host-key %s --quiet %s/core-1700000000-vmseal-hostd-4242.vmhcore "
             "%s/core.out && cmp -s %s/core.in %s/core.out", cores, cores, cu, priv, cores, dir, dir, dir);
    assert_int_equal(run(cmd), 0);
}

static void test_refusals(void **state)
{
    (void)state;
    hostd_hostmode m;
    hostd_hostmode_config c = {.key = key, .dir = cores, .handler = handler,
                               .core_pattern_path = pat};
    c.key = NULL;
    assert_int_equal(hostd_hostmode_setup(&c, &m), -EINVAL);
    char bad[160];
    snprintf(bad, sizeof(bad), "%s/bad.pub", dir);
    FILE *f = fopen(bad, "w");
    assert_non_null(f);
    fputs("not a key\n", f);
    fclose(f);
    c.key = bad;
    assert_int_equal(hostd_hostmode_setup(&c, &m), -EINVAL);
    c.key = "relative/key.pub";
    assert_int_equal(hostd_hostmode_setup(&c, &m), -EINVAL);
    c.key = key;
    c.handler = "/nonexistent/vmseal-coredump-handler";
    assert_int_equal(hostd_hostmode_setup(&c, &m), -ENOENT);
    c.handler = handler;
    char open_dir[160];
    snprintf(open_dir, sizeof(open_dir), "%s/open", dir);
    assert_int_equal(mkdir(open_dir, 0755), 0);
    c.dir = open_dir;
    assert_int_equal(hostd_hostmode_setup(&c, &m), -EPERM);
    c.dir = "/tmp/with space";
    assert_int_equal(hostd_hostmode_setup(&c, &m), -EINVAL);
    json_t *j = hostd_hostmode_json(NULL);
    assert_true(json_is_false(json_object_get(j, "enabled")));
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_and_manage),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
