/* QMP client against a real QEMU (-machine none): greeting, commands,
 * errors, secrets, events, timeouts, QEMU going away. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "qmp.h"

static char dir[64];
static char sock_path[128];
static pid_t qemu_pid;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void start_qemu(void)
{
    unlink(sock_path);
    char chardev[256];
    snprintf(chardev, sizeof(chardev), "socket,id=mon,path=%s,server=on,wait=off", sock_path);
    qemu_pid = fork();
    assert_true(qemu_pid >= 0);
    if (qemu_pid == 0) {
        execlp("qemu-system-x86_64", "qemu-system-x86_64", "-machine", "none", "-nodefaults",
               "-display", "none", "-S", "-chardev", chardev, "-mon", "chardev=mon,mode=control",
               (char *)NULL);
        _exit(127);
    }
}

static hostd_qmp *connect_retry(void)
{
    hostd_qmp *q = NULL;
    for (int i = 0; i < 500; i++) {
        int r = hostd_qmp_connect(sock_path, 5000, &q);
        if (r == 0)
            return q;
        assert_true(r == -ENOENT || r == -ECONNREFUSED);
        usleep(20000);
    }
    fail_msg("QEMU monitor did not come up");
    return NULL;
}

static void stop_qemu(void)
{
    if (qemu_pid > 0) {
        kill(qemu_pid, SIGKILL);
        waitpid(qemu_pid, NULL, 0);
        qemu_pid = 0;
    }
}

static void test_missing_socket(void **state)
{
    (void)state;
    hostd_qmp *q = NULL;
    char p[100];
    snprintf(p, sizeof(p), "%s/none.sock", dir);
    assert_int_equal(hostd_qmp_connect(p, 1000, &q), -ENOENT);
    assert_null(q);
    char longp[200];
    memset(longp, 'a', sizeof(longp) - 1);
    longp[sizeof(longp) - 1] = '\0';
    assert_int_equal(hostd_qmp_connect(longp, 1000, &q), -ENAMETOOLONG);
}

/* A peer that accepts but never speaks: the greeting wait is bounded. */
static void test_silent_peer_times_out(void **state)
{
    (void)state;
    char p[100];
    snprintf(p, sizeof(p), "%s/silent.sock", dir);
    int ls = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", p);
    assert_int_equal(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(ls, 1), 0);
    hostd_qmp *q = NULL;
    int64_t t0 = now_ms();
    assert_int_equal(hostd_qmp_connect(p, 300, &q), -ETIMEDOUT);
    int64_t took = now_ms() - t0;
    assert_true(took >= 250 && took < 3000);
    close(ls);
}

/* A peer that greets with garbage. */
static void test_not_qmp(void **state)
{
    (void)state;
    char p[100];
    snprintf(p, sizeof(p), "%s/garbage.sock", dir);
    int ls = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", p);
    assert_int_equal(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(ls, 2), 0);
    const char *greetings[] = {"hello there\r\n", "{\"nope\": 1}\r\n", "[1,2]\n"};
    for (int i = 0; i < 3; i++) {
        pid_t child = fork();
        if (child == 0) {
            int c = accept(ls, NULL, NULL);
            ssize_t w = write(c, greetings[i], strlen(greetings[i]));
            (void)w;
            usleep(500000);
            _exit(0);
        }
        hostd_qmp *q = NULL;
        assert_int_equal(hostd_qmp_connect(p, 3000, &q), -EPROTO);
        waitpid(child, NULL, 0);
    }
    close(ls);
}

static void test_commands_errors_events(void **state)
{
    (void)state;
    start_qemu();
    hostd_qmp *q = connect_retry();

    json_t *ret = NULL;
    assert_int_equal(hostd_qmp_execute(q, "query-status", NULL, 5000, &ret), 0);
    assert_string_equal(json_string_value(json_object_get(ret, "status")), "prelaunch");
    json_decref(ret);

    assert_int_equal(hostd_qmp_execute(q, "no-such-command", NULL, 5000, NULL), -EREMOTEIO);
    assert_non_null(strstr(vmseal_last_error(), "CommandNotFound"));

    /* arguments are passed through */
    assert_int_equal(hostd_qmp_execute(q, "qom-list", json_pack("{s:s}", "path", "/nowhere"),
                                        5000, NULL), -EREMOTEIO);

    /* secrets: created with base64 data, visible as objects, deletable */
    vmseal_secret *sec = NULL;
    assert_int_equal(vmseal_secret_from("0123456789abcdef\"\\\n", 19, &sec), 0);
    assert_int_equal(hostd_qmp_add_secret(q, "bad id", sec, 5000), -EINVAL);
    assert_int_equal(hostd_qmp_add_secret(q, "sec-1", sec, 5000), 0);
    assert_int_equal(hostd_qmp_add_secret(q, "sec-1", sec, 5000), -EREMOTEIO);
    assert_int_equal(hostd_qmp_execute(q, "qom-list", json_pack("{s:s}", "path", "/objects"),
                                        5000, &ret), 0);
    size_t i;
    json_t *o;
    int found = 0;
    json_array_foreach(ret, i, o)
        if (strcmp(json_string_value(json_object_get(o, "name")), "sec-1") == 0)
            found = 1;
    json_decref(ret);
    assert_true(found);
    assert_int_equal(hostd_qmp_execute(q, "object-del", json_pack("{s:s}", "id", "sec-1"), 5000,
                                        NULL), 0);
    vmseal_secret_free(sec);

    /* events: none pending -> bounded wait; then STOP/RESUME */
    int64_t t0 = now_ms();
    assert_int_equal(hostd_qmp_wait_event(q, "RESUME", 200, NULL), -ETIMEDOUT);
    assert_true(now_ms() - t0 < 2000);
    assert_int_equal(hostd_qmp_execute(q, "cont", NULL, 5000, NULL), 0);
    assert_int_equal(hostd_qmp_execute(q, "stop", NULL, 5000, NULL), 0);
    json_t *ev = NULL;
    assert_int_equal(hostd_qmp_wait_event(q, "STOP", 5000, &ev), 0);
    assert_string_equal(json_string_value(json_object_get(ev, "event")), "STOP");
    json_decref(ev);
    /* RESUME came before STOP and was kept in the queue */
    assert_int_equal(hostd_qmp_wait_event(q, "RESUME", 100, NULL), 0);
    assert_int_equal(hostd_qmp_poll(q), 0);

    /* quit: the reply, a SHUTDOWN event, then the monitor closes */
    assert_int_equal(hostd_qmp_execute(q, "quit", NULL, 5000, NULL), 0);
    assert_int_equal(hostd_qmp_wait_event(q, "SHUTDOWN", 5000, NULL), 0);
    int r = hostd_qmp_execute(q, "query-status", NULL, 5000, NULL);
    assert_true(r == -ECONNRESET);
    assert_int_equal(hostd_qmp_poll(q), -ECONNRESET);
    hostd_qmp_close(q);
    waitpid(qemu_pid, NULL, 0);
    qemu_pid = 0;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/vmseal-qmp.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(sock_path, sizeof(sock_path), "%s/qmp.sock", dir);
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    stop_qemu();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_socket),
        cmocka_unit_test(test_silent_peer_times_out),
        cmocka_unit_test(test_not_qmp),
        cmocka_unit_test(test_commands_errors_events),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
