/* hostd's console log writer (hostd/serial.c) without QEMU: a socketpair
 * stands in for QEMU's console socket. Flushing on the timer, rotation and
 * retention over many MiB, a console without a key that buffers until the
 * key comes, closing a segment a crashed hostd left open (also with a torn
 * last record), a damaged segment kept as it is, the plain log's checks,
 * the UTF-8 cleaning of console bytes for JSON. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <vmseal/sealed.h>

#include "serial.h"

#define UUID "3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b"

static char dir[256];
static char notes[8192];

static void on_note(void *arg, const char *line)
{
    (void)arg;
    size_t n = strlen(notes);
    snprintf(notes + n, sizeof(notes) - n, "%s\n", line);
}

static vmseal_secret *log_key(void)
{
    vmseal_secret *k = NULL;
    uint8_t raw[32];
    for (int i = 0; i < 32; i++)
        raw[i] = (uint8_t)(i * 7 + 1);
    assert_int_equal(vmseal_secret_from(raw, 32, &k), 0);
    return k;
}

static void fresh_dir(void)
{
    char cmd[300];
    if (dir[0]) {
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        assert_int_equal(system(cmd), 0);
    }
    snprintf(dir, sizeof(dir), "/tmp/vmseal-console-test.XXXXXX");
    assert_non_null(mkdtemp(dir));
    notes[0] = '\0';
}

static off_t seg_size(int seq)
{
    char p[400];
    snprintf(p, sizeof(p), "%s/serial-%08d.vmslog", dir, seq);
    struct stat st;
    return stat(p, &st) == 0 ? st.st_size : -1;
}

static void send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t w = send(fd, p, len, 0);
        assert_true(w > 0);
        p += w;
        len -= (size_t)w;
    }
}

/* Read the whole log with a fresh key (VM off: every segment closed). */
static uint8_t *read_all(size_t tail, size_t *len, uint64_t *total)
{
    vmseal_secret *k = log_key();
    uint8_t *t = NULL;
    int r = hostd_console_read_sealed(dir, UUID, k, tail, &t, len, total);
    if (r != 0)
        fail_msg("read: %s", vmseal_last_error());
    vmseal_secret_free(k);
    return t;
}

static void test_flush_on_timer_and_close(void **state)
{
    (void)state;
    fresh_dir();
    hostd_console *c = NULL;
    assert_int_equal(hostd_console_new(dir, UUID, log_key(), on_note, NULL, &c), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(hostd_console_attach(c, sv[0]), 0);
    off_t empty = seg_size(1);
    assert_int_equal(empty, VMSEAL_SLOG_HEADER_LEN);
    send_all(sv[1], "hello console\n", 14);
    /* sealed within about a second, without anyone asking */
    for (int i = 0; i < 30 && seg_size(1) == empty; i++)
        usleep(100000);
    assert_int_equal(seg_size(1), empty + VMSEAL_SLOG_RECORD_OVERHEAD + 14);
    /* a read flushes what is pending at once and accepts the open segment */
    send_all(sv[1], "more", 4);
    usleep(50000);
    uint8_t *t = NULL;
    size_t len;
    uint64_t total;
    assert_int_equal(hostd_console_read(c, 1000, &t, &len, &total), 0);
    assert_int_equal(len, 18);
    assert_int_equal(total, 18);
    assert_memory_equal(t, "hello console\nmore", 18);
    hostd_console_text_free(t, len);
    /* QEMU goes away: the segment gets its end record */
    close(sv[1]);
    usleep(300000);
    t = read_all(4, &len, &total);
    assert_int_equal(len, 4);
    assert_memory_equal(t, "more", 4);
    assert_int_equal(total, 18);
    hostd_console_text_free(t, len);
    hostd_console_free(c);
    assert_null(strstr(notes, "dropped"));
}

static void test_rotation_and_retention(void **state)
{
    (void)state;
    fresh_dir();
    hostd_console *c = NULL;
    assert_int_equal(hostd_console_new(dir, UUID, log_key(), on_note, NULL, &c), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(hostd_console_attach(c, sv[0]), 0);
    /* 11 MiB of numbered lines: rotated at 1 MiB, the newest 8 kept */
    static char chunk[65536];
    uint64_t sent = 0, line = 0;
    while (sent < (11u << 20)) {
        size_t n = 0;
        while (n + 32 < sizeof(chunk))
            n += (size_t)snprintf(chunk + n, sizeof(chunk) - n, "line %012llu\n",
                                  (unsigned long long)line++);
        send_all(sv[1], chunk, n);
        sent += n;
    }
    close(sv[1]);
    hostd_console_free(c);   /* joins the reader after it saw the end */
    size_t len;
    uint64_t total;
    uint8_t *t = read_all(VMSEAL_CONSOLE_TAIL_MAX, &len, &total);
    assert_int_equal(total, sent);
    assert_int_equal(len, VMSEAL_CONSOLE_TAIL_MAX);
    char lastline[32];
    snprintf(lastline, sizeof(lastline), "line %012llu\n", (unsigned long long)(line - 1));
    assert_memory_equal(t + len - strlen(lastline), lastline, strlen(lastline));
    hostd_console_text_free(t, len);
    /* about 11 segments were made; only the newest 8 are kept, every one
     * but the last holding at least 1 MiB */
    int last = 0;
    for (int s = 1; s < 40; s++)
        if (seg_size(s) > 0)
            last = s;
    assert_true(last >= 10);
    for (int s = 1; s <= last; s++) {
        if (s <= last - VMSEAL_CONSOLE_KEEP)
            assert_int_equal(seg_size(s), -1);
        else if (s < last)
            assert_true(seg_size(s) >= (off_t)(1u << 20));
        else
            assert_true(seg_size(s) > 0);
    }
    /* the folder reader agrees, all of it verified */
    vmseal_secret *k = log_key();
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    vmseal_slog_log_info li;
    assert_int_equal(vmseal_slog_read_dir(k, dfd, "serial", UUID, 0, NULL, NULL, &li), 0);
    assert_int_equal(li.first, (uint64_t)(last - VMSEAL_CONSOLE_KEEP + 1));
    assert_int_equal(li.last, (uint64_t)last);
    assert_true(li.start > 0 && li.start < total);
    close(dfd);
    vmseal_secret_free(k);
}

static void test_no_key_then_key(void **state)
{
    (void)state;
    fresh_dir();
    hostd_console *c = NULL;
    assert_int_equal(hostd_console_new(dir, UUID, NULL, on_note, NULL, &c), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(hostd_console_attach(c, sv[0]), 0);
    send_all(sv[1], "before the key\n", 15);
    usleep(1300000);
    assert_int_equal(seg_size(1), -1);   /* nothing on disk, nothing in clear */
    uint8_t *t = NULL;
    size_t len;
    uint64_t total;
    assert_int_equal(hostd_console_read(c, 100, &t, &len, &total), -ENOKEY);
    assert_false(hostd_console_has_key(c));
    assert_int_equal(hostd_console_set_key(c, log_key()), 0);
    assert_true(hostd_console_has_key(c));
    send_all(sv[1], "after\n", 6);
    usleep(50000);
    assert_int_equal(hostd_console_read(c, 100, &t, &len, &total), 0);
    assert_int_equal(len, 21);
    assert_memory_equal(t, "before the key\nafter\n", 21);
    hostd_console_text_free(t, len);
    close(sv[1]);
    hostd_console_free(c);
}

/* A segment left open (hostd killed), then one with a torn last record:
 * the next console closes it and says so; the text up to there stays. */
static void test_recover_unfinished(void **state)
{
    (void)state;
    fresh_dir();
    for (int torn = 0; torn < 2; torn++) {
        hostd_console *c = NULL;
        assert_int_equal(hostd_console_new(dir, UUID, log_key(), on_note, NULL, &c), 0);
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(hostd_console_attach(c, sv[0]), 0);
        send_all(sv[1], "first\n", 6);
        usleep(100000);   /* the reader has it */
        uint8_t *t = NULL;
        size_t len;
        uint64_t total;
        assert_int_equal(hostd_console_read(c, 100, &t, &len, &total), 0);   /* flushed */
        hostd_console_text_free(t, len);
        send_all(sv[1], "second\n", 7);
        usleep(100000);
        assert_int_equal(hostd_console_read(c, 100, &t, &len, &total), 0);
        hostd_console_text_free(t, len);
        /* "crash": copy the open segment aside before the clean close */
        int seq = torn ? 3 : 1;   /* the second round: 2 is the one that closed the first */
        char p[400], keep[420];
        snprintf(p, sizeof(p), "%s/serial-%08d.vmslog", dir, seq);
        snprintf(keep, sizeof(keep), "%s.crash", p);
        char cmd[900];
        snprintf(cmd, sizeof(cmd), "cp %s %s", p, keep);
        assert_int_equal(system(cmd), 0);
        close(sv[1]);
        hostd_console_free(c);
        assert_int_equal(rename(keep, p), 0);
        if (torn) {
            struct stat st;
            assert_int_equal(stat(p, &st), 0);
            assert_int_equal(truncate(p, st.st_size - 3), 0);
        }
        notes[0] = '\0';
        t = NULL;
        /* VM off and the segment open: the log is damaged until ... */
        vmseal_secret *k = log_key();
        assert_int_equal(hostd_console_read_sealed(dir, UUID, k, 100, &t, &len, &total), -EPROTO);
        /* ... the next console closes it */
        assert_int_equal(hostd_console_new(dir, UUID, log_key(), on_note, NULL, &c), 0);
        assert_non_null(strstr(notes, "was left unfinished"));
        assert_true(!torn || strstr(notes, "partial record was dropped"));
        hostd_console_free(c);
        assert_int_equal(hostd_console_read_sealed(dir, UUID, k, 1000, &t, &len, &total), 0);
        const char *want = torn ? "first\nsecond\nfirst\n" : "first\nsecond\n";
        assert_int_equal(len, strlen(want));
        assert_memory_equal(t, want, len);
        hostd_console_text_free(t, len);
        vmseal_secret_free(k);
    }
}

static void test_damaged_kept(void **state)
{
    (void)state;
    fresh_dir();
    hostd_console *c = NULL;
    assert_int_equal(hostd_console_new(dir, UUID, log_key(), on_note, NULL, &c), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(hostd_console_attach(c, sv[0]), 0);
    send_all(sv[1], "some text\n", 10);
    close(sv[1]);
    hostd_console_free(c);
    char p[400], cmd[600];
    snprintf(p, sizeof(p), "%s/serial-00000001.vmslog", dir);
    snprintf(cmd, sizeof(cmd), "printf 'Z' | dd of=%s bs=1 seek=150 conv=notrunc status=none", p);
    assert_int_equal(system(cmd), 0);
    struct stat before, after;
    assert_int_equal(stat(p, &before), 0);
    notes[0] = '\0';
    assert_int_equal(hostd_console_new(dir, UUID, log_key(), on_note, NULL, &c), 0);
    assert_non_null(strstr(notes, "is damaged"));
    hostd_console_free(c);
    assert_int_equal(stat(p, &after), 0);
    assert_int_equal(before.st_size, after.st_size);   /* not repaired */
    vmseal_secret *k = log_key();
    uint8_t *t = NULL;
    size_t len;
    uint64_t total;
    assert_int_equal(hostd_console_read_sealed(dir, UUID, k, 100, &t, &len, &total), -EBADMSG);
    vmseal_secret_free(k);
}

static void test_plain_and_symlinks(void **state)
{
    (void)state;
    fresh_dir();
    int fd = hostd_console_open_plain(dir);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "plain\n", 6), 6);
    close(fd);
    char p[400], target[400];
    snprintf(p, sizeof(p), "%s/serial.log", dir);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    uint8_t *t = NULL;
    size_t len;
    uint64_t total;
    assert_int_equal(hostd_console_read_plain(dir, 3, &t, &len, &total), 0);
    assert_int_equal(len, 3);
    assert_int_equal(total, 6);
    assert_memory_equal(t, "in\n", 3);
    hostd_console_text_free(t, len);
    /* an older 0644 log becomes 0600 */
    assert_int_equal(chmod(p, 0644), 0);
    fd = hostd_console_open_plain(dir);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    /* sealing it (the VM gets encrypted) */
    vmseal_secret *k = log_key();
    assert_int_equal(hostd_console_seal_plain(dir, UUID, k, on_note, NULL), 0);
    assert_int_not_equal(access(p, F_OK), 0);
    assert_int_equal(hostd_console_read_sealed(dir, UUID, k, 100, &t, &len, &total), 0);
    assert_int_equal(len, 6);
    hostd_console_text_free(t, len);
    /* and back */
    assert_int_equal(hostd_console_unseal_to_plain(dir, UUID, k, on_note, NULL), 0);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 6);
    assert_int_equal(seg_size(1), -1);
    /* a symlink as serial.log or as the next segment is not followed */
    unlink(p);
    snprintf(target, sizeof(target), "%s/target", dir);
    assert_int_equal(symlink(target, p), 0);
    assert_int_equal(hostd_console_open_plain(dir), -ELOOP);
    assert_int_equal(hostd_console_read_plain(dir, 10, &t, &len, &total), -ELOOP);
    unlink(p);
    snprintf(p, sizeof(p), "%s/serial-00000001.vmslog", dir);
    assert_int_equal(symlink(target, p), 0);
    hostd_console *c = NULL;
    assert_int_equal(hostd_console_new(dir, UUID, log_key(), on_note, NULL, &c), -ELOOP);
    assert_null(c);
    assert_int_not_equal(access(target, F_OK), 0);
    vmseal_secret_free(k);
}

static void test_utf8(void **state)
{
    (void)state;
    size_t n;
    char *s = hostd_console_utf8((const uint8_t *)"ok \xc3\xa9 \xe2\x82\xac", 9, 0, &n);
    assert_string_equal(s, "ok \xc3\xa9 \xe2\x82\xac");
    free(s);
    /* NUL, a lone continuation byte, an overlong form, a surrogate, a cut sequence */
    static const uint8_t bad[] = {'a', 0, 'b', 0x80, 'c', 0xc0, 0xaf, 'd', 0xed, 0xa0, 0x80, 0xe2, 0x82};
    s = hostd_console_utf8(bad, sizeof(bad), 0, &n);
    assert_int_equal(strlen(s), n);
    assert_memory_equal(s, "a\xef\xbf\xbd" "b\xef\xbf\xbd" "c", 9);
    free(s);
    /* a tail that starts inside a character drops its continuation bytes */
    s = hostd_console_utf8((const uint8_t *)"\x82\xac" "x", 3, 1, &n);
    assert_string_equal(s, "x");
    free(s);
}

static int teardown(void **state)
{
    (void)state;
    if (dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd) != 0)
            return -1;
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flush_on_timer_and_close),
        cmocka_unit_test(test_rotation_and_retention),
        cmocka_unit_test(test_no_key_then_key),
        cmocka_unit_test(test_recover_unfinished),
        cmocka_unit_test(test_damaged_kept),
        cmocka_unit_test(test_plain_and_symlinks),
        cmocka_unit_test(test_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
