/* Saved VM state (hostd/vmstate.c) against a real QEMU (-machine none, no
 * guest to boot): a state saved sealed loads into a QEMU started with
 * -incoming defer, which then runs; a flipped byte, a cut file, appended
 * bytes, another key or another file's name are refused as damaged and the
 * QEMU loading it never runs; a save that cannot finish leaves no file and
 * the guest running; clear files for VMs without encryption. */
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
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <vmseal/sealed.h>
#include <vmseal/vmrecord.h>

#include "qmp.h"
#include "vmstate.h"

#define UUID "619e3975-e4e5-46cc-bb43-7a73c163d3f1"

static char dir[64];
static int dirfd_ = -1;
static vmseal_secret *vm_secret;

typedef struct qemu {
    pid_t pid;
    hostd_qmp *q;
    char sock[128];
} qemu;

static void start_qemu(qemu *m, const char *tag, int incoming)
{
    snprintf(m->sock, sizeof(m->sock), "%s/%s.sock", dir, tag);
    unlink(m->sock);
    char chardev[256];
    snprintf(chardev, sizeof(chardev), "socket,id=mon,path=%s,server=on,wait=off", m->sock);
    m->pid = fork();
    assert_true(m->pid >= 0);
    if (m->pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        if (incoming)
            execlp("qemu-system-x86_64", "qemu-system-x86_64", "-machine", "none", "-nodefaults",
                   "-display", "none", "-S", "-chardev", chardev, "-mon", "chardev=mon,mode=control",
                   "-incoming", "defer", (char *)NULL);
        else
            execlp("qemu-system-x86_64", "qemu-system-x86_64", "-machine", "none", "-nodefaults",
                   "-display", "none", "-S", "-chardev", chardev, "-mon", "chardev=mon,mode=control",
                   (char *)NULL);
        _exit(127);
    }
    m->q = NULL;
    for (int i = 0; i < 1000 && !m->q; i++) {
        int r = hostd_qmp_connect(m->sock, 5000, &m->q);
        if (r < 0) {
            assert_true(r == -ENOENT || r == -ECONNREFUSED);
            usleep(20000);
        }
    }
    assert_non_null(m->q);
}

static void stop_qemu(qemu *m)
{
    if (m->q)
        hostd_qmp_close(m->q);
    m->q = NULL;
    if (m->pid > 0) {
        kill(m->pid, SIGKILL);
        waitpid(m->pid, NULL, 0);
    }
    m->pid = 0;
}

/* "running", "paused", ...; "" once QEMU is gone */
static const char *status_of(qemu *m, char *buf, size_t len)
{
    json_t *ret = NULL;
    buf[0] = '\0';
    if (hostd_qmp_execute(m->q, "query-status", NULL, 5000, &ret) == 0)
        snprintf(buf, len, "%s", json_string_value(json_object_get(ret, "status")));
    json_decref(ret);
    return buf;
}

static void key_for(const char *file, vmseal_secret **key, char *label, size_t len)
{
    assert_int_equal(hostd_vmstate_key(vm_secret, UUID, file, key, label, len), 0);
}

/* Save a running guest's state into `file` (sealed unless plain). */
static void save(const char *file, int plain)
{
    qemu a = {0};
    start_qemu(&a, "src", 0);
    assert_int_equal(hostd_qmp_execute(a.q, "cont", NULL, 5000, NULL), 0);
    vmseal_secret *key = NULL;
    char label[300];
    if (!plain)
        key_for(file, &key, label, sizeof(label));
    uint64_t bytes = 0;
    int r = hostd_vmstate_save(a.q, dirfd_, file, key, plain ? NULL : label, NULL, NULL, 20000,
                               &bytes);
    if (r != 0)
        fail_msg("save: %s", vmseal_last_error());
    assert_true(bytes > 0);
    char st[40];
    assert_string_not_equal(status_of(&a, st, sizeof(st)), "running");   /* stays stopped */
    vmseal_secret_free(key);
    stop_qemu(&a);
    struct stat sb;
    assert_int_equal(fstatat(dirfd_, file, &sb, AT_SYMLINK_NOFOLLOW), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    char partial[128];
    snprintf(partial, sizeof(partial), "%s.partial", file);
    assert_int_equal(fstatat(dirfd_, partial, &sb, 0), -1);
}

/* Load `file` (under the key of `key_name`) into a fresh QEMU: the result;
 * *ran: the guest runs afterwards. */
static int load(const char *file, const char *key_name, int plain, int *ran, char *msg,
                size_t msglen)
{
    qemu b = {0};
    start_qemu(&b, "dst", 1);
    vmseal_secret *key = NULL;
    char label[300];
    if (!plain)
        key_for(key_name, &key, label, sizeof(label));
    uint64_t bytes = 0;
    int r = hostd_vmstate_load(b.q, dirfd_, file, key, NULL, NULL, 20000, &bytes);
    if (r == 0 && bytes == 0)
        fail_msg("a load that worked counted no bytes");
    snprintf(msg, msglen, "%s", vmseal_last_error());
    vmseal_secret_free(key);
    char st[40];
    *ran = strcmp(status_of(&b, st, sizeof(st)), "running") == 0;
    stop_qemu(&b);
    return r;
}

static void copy_file(const char *from, const char *to, long cut, long flip, const char *append)
{
    char a[256], b[256];
    snprintf(a, sizeof(a), "%s/%s", dir, from);
    snprintf(b, sizeof(b), "%s/%s", dir, to);
    FILE *in = fopen(a, "rb"), *out = fopen(b, "wb");
    assert_non_null(in);
    assert_non_null(out);
    long n = 0;
    int c;
    while ((c = fgetc(in)) != EOF) {
        if (cut >= 0 && n >= cut)
            break;
        fputc(n == flip ? c ^ 0x01 : c, out);
        n++;
    }
    if (append)
        fputs(append, out);
    fclose(in);
    fclose(out);
    chmod(b, 0600);
}

static long file_size(const char *name)
{
    struct stat sb;
    assert_int_equal(fstatat(dirfd_, name, &sb, 0), 0);
    return (long)sb.st_size;
}

static void test_sealed_round_trip(void **state)
{
    (void)state;
    char file[80];
    assert_int_equal(hostd_vmstate_new_name("suspend", 1, file, sizeof(file)), 0);
    assert_true(vmseal_vmrec_state_file_valid(file, 1));
    save(file, 0);
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    uint8_t head[VMSEAL_SEALED_HEADER_MAX];
    ssize_t n = read(fd, head, sizeof(head));
    close(fd);
    vmseal_sealed_info info;
    assert_true(vmseal_sealed_probe_header(head, (size_t)n, &info) > 0);
    assert_string_equal(info.provider, VMSEAL_VMFILE_PROVIDER);
    char want[200];
    snprintf(want, sizeof(want), "vm:%s/state:%s", UUID, file);
    assert_string_equal(info.kek_id, want);
    int ran = 0;
    char msg[800];
    int r = load(file, file, 0, &ran, msg, sizeof(msg));
    if (r != 0)
        fail_msg("load: %s", msg);
    assert_true(ran);
}

static void test_damaged_refused(void **state)
{
    (void)state;
    const char *good = "suspend-00000000000000aa.vmss";
    save(good, 0);
    long size = file_size(good);
    struct {
        const char *what;
        long cut, flip;
        const char *append;
    } cases[] = {
        {"a flipped byte in the header", -1, 40, NULL},
        {"a flipped byte in the data", -1, size / 2, NULL},
        {"the last byte flipped", -1, size - 1, NULL},
        {"cut inside", size / 2, -1, NULL},
        {"cut by one byte", size - 1, -1, NULL},
        {"bytes appended", -1, -1, "more"},
    };
    const char *bad = "suspend-00000000000000bb.vmss";
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        copy_file(good, bad, cases[i].cut, cases[i].flip, cases[i].append);
        int ran = 1;
        char msg[800];
        /* the key of bad's own name, so only the damage is wrong */
        int r = load(bad, bad, 0, &ran, msg, sizeof(msg));
        if (r != -EBADMSG || !strstr(msg, "damaged") || ran)
            fail_msg("%s: %d ran %d: %s", cases[i].what, r, ran, msg);
    }
    /* an intact file under another name (or another VM's key) */
    copy_file(good, bad, -1, -1, NULL);
    int ran = 1;
    char msg[800];
    assert_int_equal(load(bad, bad, 0, &ran, msg, sizeof(msg)), -EBADMSG);
    assert_false(ran);
    /* and the original still loads */
    assert_int_equal(load(good, good, 0, &ran, msg, sizeof(msg)), 0);
    assert_true(ran);
}

static void test_plain(void **state)
{
    (void)state;
    const char *file = "suspend-00000000000000cc.vmstate";
    save(file, 1);
    int ran = 0;
    char msg[800];
    assert_int_equal(load(file, NULL, 1, &ran, msg, sizeof(msg)), 0);
    assert_true(ran);
}

/* The file cannot be put in place (a folder holds its name): no file is
 * left and the guest runs on. */
static void test_save_fails_guest_runs_on(void **state)
{
    (void)state;
    const char *file = "suspend-00000000000000dd.vmss";
    assert_int_equal(mkdirat(dirfd_, file, 0700), 0);
    assert_int_equal(mkdirat(dirfd_, "suspend-00000000000000dd.vmss/x", 0700), 0);
    qemu a = {0};
    start_qemu(&a, "src", 0);
    assert_int_equal(hostd_qmp_execute(a.q, "cont", NULL, 5000, NULL), 0);
    vmseal_secret *key = NULL;
    char label[300];
    key_for(file, &key, label, sizeof(label));
    int r = hostd_vmstate_save(a.q, dirfd_, file, key, label, NULL, NULL, 20000, NULL);
    assert_true(r < 0);
    char st[40];
    assert_string_equal(status_of(&a, st, sizeof(st)), "running");
    vmseal_secret_free(key);
    stop_qemu(&a);
    struct stat sb;
    assert_int_equal(fstatat(dirfd_, "suspend-00000000000000dd.vmss.partial", &sb, 0), -1);
}

static void test_names(void **state)
{
    (void)state;
    char a[80], b[80];
    assert_int_equal(hostd_vmstate_new_name("suspend", 1, a, sizeof(a)), 0);
    assert_int_equal(hostd_vmstate_new_name("suspend", 1, b, sizeof(b)), 0);
    assert_string_not_equal(a, b);
    int partial = 0;
    assert_true(hostd_vmstate_is_state_name(a, &partial));
    assert_false(partial);
    char p[100];
    snprintf(p, sizeof(p), "%s.partial", a);
    assert_true(hostd_vmstate_is_state_name(p, &partial));
    assert_true(partial);
    assert_false(hostd_vmstate_is_state_name("disk0.luks", &partial));
    assert_false(hostd_vmstate_is_state_name("vm.conf", &partial));
    assert_int_equal(hostd_vmstate_new_name("Bad", 1, a, sizeof(a)), -EINVAL);
    assert_int_equal(hostd_vmstate_new_name("suspend", 1, a, 10), -ENAMETOOLONG);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/vmseal-vmstate.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    dirfd_ = open(dir, O_RDONLY | O_DIRECTORY);
    signal(SIGPIPE, SIG_IGN);
    vmseal_secret_allow_unlocked(1);
    return dirfd_ >= 0 && vmseal_secret_random(32, &vm_secret) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    vmseal_secret_free(vm_secret);
    close(dirfd_);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_sealed_round_trip),
        cmocka_unit_test(test_damaged_refused),
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_save_fails_guest_runs_on),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
