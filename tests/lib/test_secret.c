/* Secure buffer, hex helpers and key-file loading. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <vmseal/secret.h>

static void test_new_is_zeroed_and_sized(void **state)
{
    (void)state;
    vmseal_secret *s = vmseal_secret_new(64);
    assert_non_null(s);
    assert_int_equal(vmseal_secret_len(s), 64);
    for (size_t i = 0; i < 64; i++)
        assert_int_equal(vmseal_secret_data(s)[i], 0);
    vmseal_secret_free(s);
    assert_null(vmseal_secret_new(0));
}

static void test_random_differs(void **state)
{
    (void)state;
    vmseal_secret *a, *b;
    assert_int_equal(vmseal_secret_random(32, &a), 0);
    assert_int_equal(vmseal_secret_random(32, &b), 0);
    assert_int_not_equal(vmseal_secret_cmp(a, b), 0);
    vmseal_secret *c;
    assert_int_equal(vmseal_secret_dup(a, &c), 0);
    assert_int_equal(vmseal_secret_cmp(a, c), 0);
    vmseal_secret_free(a);
    vmseal_secret_free(b);
    vmseal_secret_free(c);
}

static void test_hex_roundtrip(void **state)
{
    (void)state;
    uint8_t in[4] = {0x00, 0xab, 0x7f, 0xff}, out[4];
    char hex[9];
    vmseal_hex_encode(in, 4, hex);
    assert_string_equal(hex, "00ab7fff");
    assert_int_equal(vmseal_hex_decode("00AB7fff", 8, out, 4), 0);
    assert_memory_equal(in, out, 4);
    assert_int_equal(vmseal_hex_decode("00ab7ffg", 8, out, 4), -EPROTO);
    assert_int_equal(vmseal_hex_decode("00ab7f", 6, out, 4), -EPROTO);
}

static char *write_tmp(const char *content, size_t len, mode_t mode)
{
    char *path = strdup("/tmp/vmseal-keyfile-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
    return path;
}

static void test_keyfile(void **state)
{
    (void)state;
    const char *hex = "000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f\n";
    char *p = write_tmp(hex, strlen(hex), 0600);
    vmseal_secret *k = NULL;
    assert_int_equal(vmseal_secret_read_keyfile(p, 32, &k), 0);
    assert_int_equal(vmseal_secret_len(k), 32);
    assert_int_equal(vmseal_secret_data(k)[15], 0x0f);
    vmseal_secret_free(k);
    /* Group-readable key files are refused. */
    assert_int_equal(chmod(p, 0640), 0);
    assert_int_equal(vmseal_secret_read_keyfile(p, 32, &k), -EPERM);
    assert_null(k);
    assert_non_null(strstr(vmseal_last_error(), "chmod 600"));
    unlink(p);
    free(p);
    /* Wrong length. */
    p = write_tmp("abcd", 4, 0600);
    assert_int_equal(vmseal_secret_read_keyfile(p, 32, &k), -EPROTO);
    unlink(p);
    free(p);
    /* Raw 32 bytes. */
    char raw[32];
    memset(raw, 0x5a, sizeof(raw));
    p = write_tmp(raw, sizeof(raw), 0400);
    assert_int_equal(vmseal_secret_read_keyfile(p, 32, &k), 0);
    assert_int_equal(vmseal_secret_data(k)[31], 0x5a);
    vmseal_secret_free(k);
    unlink(p);
    free(p);
}

static void test_read_fd_limits(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(write(fds[1], "0123456789", 10), 10);
    close(fds[1]);
    vmseal_secret *s = NULL;
    assert_int_equal(vmseal_secret_read_fd(fds[0], 8, &s), -EMSGSIZE);
    close(fds[0]);
    assert_int_equal(pipe(fds), 0);
    close(fds[1]);
    assert_int_equal(vmseal_secret_read_fd(fds[0], 8, &s), -ENODATA);
    close(fds[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_is_zeroed_and_sized),
        cmocka_unit_test(test_random_differs),
        cmocka_unit_test(test_hex_roundtrip),
        cmocka_unit_test(test_keyfile),
        cmocka_unit_test(test_read_fd_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
