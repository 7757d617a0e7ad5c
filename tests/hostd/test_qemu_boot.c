/* The QEMU runner against real QEMU (TCG) and the test guest: LUKS1 disks
 * made by qemu-img, opened by QEMU with the passphrase handed over QMP.
 *
 * - the guest writes a marker through the encrypted disk; the image file
 *   does not contain it, `qemu-img convert` with the passphrase shows it;
 *   a second boot reads it back;
 * - the passphrase is in neither QEMU's argv nor its environment, and the
 *   secret object is gone from QEMU once the disk is open;
 * - a wrong passphrase fails the start cleanly (no QEMU left behind);
 * - ACPI power-off of a waiting guest; raw + LUKS disks side by side.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "qemu.h"
#include "qmp.h"
#include "testutil.h"

static char kernel[1200], initrd[1200];
static char tmpdir[256];
/* QEMUs started by this test, killed at teardown when a test failed midway */
static pid_t started[32];
static size_t nstarted;

static void track(hostd_qemu *vm)
{
    if (nstarted < 32)
        started[nstarted++] = hostd_qemu_pid(vm);
}

/* ---- helpers ---- */

static int wait_for_text(const char *path, const char *needle, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 100) {
        if (testutil_count_in_file(path, needle) > 0)
            return 0;
        usleep(100 * 1000);
    }
    return -1;
}

static int read_proc_file(pid_t pid, const char *what, char *buf, size_t len)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, what);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, len);
    close(fd);
    return (int)n;
}

typedef struct luks_disk {
    char path[512];
    char keyfile[512];
    vmseal_secret *pass;   /* 64 hex characters */
    char pass_text[65];
} luks_disk;

static void make_luks_disk(luks_disk *d, const char *name, const char *size)
{
    uint8_t raw[32];
    assert_int_equal(RAND_bytes(raw, sizeof(raw)), 1);
    vmseal_hex_encode(raw, sizeof(raw), d->pass_text);
    assert_int_equal(vmseal_secret_from(d->pass_text, 64, &d->pass), 0);
    snprintf(d->path, sizeof(d->path), "%s/%s.luks", tmpdir, name);
    snprintf(d->keyfile, sizeof(d->keyfile), "%s/%s.key", tmpdir, name);
    int fd = open(d->keyfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, d->pass_text, 64), 64);
    close(fd);
    /* qemu-img create -f luks fails ~1 run in 4 on these machines (more under
     * load): retry, up to 12 times so that a run of failures stays unlikely */
    int rc = -1;
    for (int i = 0; i < 12 && rc != 0; i++) {
        unlink(d->path);
        rc = testutil_run("qemu-img create -q -f luks --object secret,id=s0,file=%s "
                 "-o key-secret=s0,iter-time=10 %s %s >/dev/null 2>&1",
                 d->keyfile, d->path, size);
    }
    assert_int_equal(rc, 0);
}

static void free_luks_disk(luks_disk *d)
{
    vmseal_secret_free(d->pass);
    d->pass = NULL;
}

static void make_home(char *home, size_t len, const char *name)
{
    snprintf(home, len, "%s/%s", tmpdir, name);
    assert_int_equal(mkdir(home, 0700), 0);
}

static hostd_qemu_spec base_spec(const char *home, const char *append)
{
    hostd_qemu_spec s = {
        .run_dir = home,
        .name = "testvm",
        .uuid = "6c1f0b5e-3c55-4a8e-9d0e-1b2b3c4d5e6f",
        .cpus = 1,
        .memory_mb = 256,
        .accel = VMSEAL_ACCEL_TCG,
        .kernel = kernel,
        .initrd = initrd,
        .append = append,
        .timeout_ms = 20000,
    };
    return s;
}

static void boot_and_wait(hostd_qemu_spec *s, const char *expect)
{
    hostd_qemu *vm = NULL;
    int r = hostd_qemu_start(s, &vm);
    if (r != 0)
        fail_msg("start: %s", vmseal_last_error());
    track(vm);
    assert_int_equal(hostd_qemu_wait_exit(vm, 90000), 0);
    hostd_qemu_free(vm);
    char serial[1100];
    snprintf(serial, sizeof(serial), "%s/serial.log", s->run_dir);
    if (testutil_count_in_file(serial, expect) <= 0) {
        testutil_run("cat %s >&2", serial);
        fail_msg("serial console lacks %s", expect);
    }
    /* hostd made it (O_NOFOLLOW) and QEMU got it as a descriptor: 0600 */
    struct stat st;
    assert_int_equal(lstat(serial, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
}

/* ---- tests ---- */

static void test_marker_through_luks(void **state)
{
    (void)state;
    luks_disk d;
    make_luks_disk(&d, "disk0", "64M");
    char home[512];
    make_home(home, sizeof(home), "vm-marker");
    char marker[64], append[256];
    uint8_t rnd[8];
    assert_int_equal(RAND_bytes(rnd, sizeof(rnd)), 1);
    char hex[17];
    vmseal_hex_encode(rnd, sizeof(rnd), hex);
    snprintf(marker, sizeof(marker), "MARK%s", hex);
    snprintf(append, sizeof(append), "console=ttyS0 quiet vmseal.marker=%s", marker);

    hostd_qemu_disk disk = {.path = d.path, .passphrase = d.pass};
    hostd_qemu_spec s = base_spec(home, append);
    s.disks = &disk;
    s.ndisks = 1;
    boot_and_wait(&s, "VMSEAL-MARKER-WRITTEN vda");

    /* The image holds only ciphertext ... */
    char full[128];
    snprintf(full, sizeof(full), "VMSEAL-MARKER:%s:vda", marker);
    assert_int_equal(testutil_count_in_file(d.path, marker), 0);
    /* ... that qemu-img, given the passphrase, decrypts to the marker. */
    char plain[600];
    snprintf(plain, sizeof(plain), "%s/plain.raw", tmpdir);
    assert_int_equal(testutil_run("qemu-img convert --object secret,id=s0,file=%s "
                         "--image-opts driver=luks,key-secret=s0,file.filename=%s "
                         "-O raw %s",
                         d.keyfile, d.path, plain), 0);
    assert_int_equal(testutil_count_in_file(plain, full), 1);
    unlink(plain);

    /* A second boot reads it back through QEMU's LUKS driver. */
    snprintf(append, sizeof(append), "console=ttyS0 quiet vmseal.check=%s", marker);
    s.append = append;
    boot_and_wait(&s, "VMSEAL-CHECK-OK");
    free_luks_disk(&d);
}

static void test_secret_not_in_argv_env_and_deleted(void **state)
{
    (void)state;
    luks_disk d;
    make_luks_disk(&d, "disk1", "32M");
    char home[512];
    make_home(home, sizeof(home), "vm-wait");
    hostd_qemu_disk disk = {.path = d.path, .passphrase = d.pass};
    hostd_qemu_spec s = base_spec(home, "console=ttyS0 quiet vmseal.wait=1");
    s.disks = &disk;
    s.ndisks = 1;
    hostd_qemu *vm = NULL;
    if (hostd_qemu_start(&s, &vm) != 0)
        fail_msg("start: %s", vmseal_last_error());
    track(vm);
    pid_t pid = hostd_qemu_pid(vm);
    char serial[600];
    snprintf(serial, sizeof(serial), "%s/serial.log", home);
    assert_int_equal(wait_for_text(serial, "VMSEAL-READY", 90000), 0);
    assert_true(testutil_count_in_file(serial, "VMSEAL-DISK vda") > 0);

    /* Neither the passphrase nor its base64 form is in argv or environ. */
    char b64[100];
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)d.pass_text, 64);
    static char buf[1 << 20];
    const char *what[] = {"cmdline", "environ"};
    for (int i = 0; i < 2; i++) {
        int n = read_proc_file(pid, what[i], buf, sizeof(buf));
        assert_true(n > 0 || i == 1);
        if (n > 0) {
            assert_null(memmem(buf, (size_t)n, d.pass_text, 64));
            assert_null(memmem(buf, (size_t)n, b64, strlen(b64)));
        }
    }
    /* The secret object is gone from QEMU, the disk is open. */
    hostd_qmp *q = hostd_qemu_monitor(vm);
    assert_non_null(q);
    json_t *ret = NULL;
    assert_int_equal(hostd_qmp_execute(q, "qom-list", json_pack("{s:s}", "path", "/objects"),
                                        5000, &ret), 0);
    size_t i;
    json_t *o;
    int found_secret = 0;
    json_array_foreach(ret, i, o) {
        const char *n = json_string_value(json_object_get(o, "name"));
        if (n && strncmp(n, "vmseal-sec", 10) == 0)
            found_secret = 1;
    }
    json_decref(ret);
    assert_false(found_secret);
    char status[32];
    assert_int_equal(hostd_qemu_status(vm, status, sizeof(status)), 0);
    assert_string_equal(status, "running");

    /* ACPI power button: the guest powers itself off. */
    assert_int_equal(hostd_qemu_power_off(vm, 60000), 0);
    assert_false(hostd_qemu_alive(vm));
    assert_true(testutil_count_in_file(serial, "VMSEAL-POWER-BUTTON") > 0);
    assert_int_equal(hostd_qemu_status(vm, status, sizeof(status)), -ESRCH);
    hostd_qemu_free(vm);
    free_luks_disk(&d);
}

static void test_wrong_passphrase(void **state)
{
    (void)state;
    luks_disk d;
    make_luks_disk(&d, "disk2", "16M");
    char home[512];
    make_home(home, sizeof(home), "vm-wrong");
    vmseal_secret *wrong = NULL;
    assert_int_equal(vmseal_secret_from("0000000000000000000000000000000000000000000000000000000000000000",
                                        64, &wrong), 0);
    hostd_qemu_disk disk = {.path = d.path, .passphrase = wrong};
    hostd_qemu_spec s = base_spec(home, "console=ttyS0 quiet");
    s.disks = &disk;
    s.ndisks = 1;
    hostd_qemu *vm = NULL;
    int r = hostd_qemu_start(&s, &vm);
    assert_int_equal(r, -EREMOTEIO);
    assert_null(vm);
    assert_non_null(strstr(vmseal_last_error(), d.path));
    /* no QEMU left running on that home */
    assert_int_equal(hostd_qemu_attach(home, s.uuid, 1000, &vm), -ESRCH);
    vmseal_secret_free(wrong);
    free_luks_disk(&d);
}

static void test_raw_and_luks_disks(void **state)
{
    (void)state;
    luks_disk d;
    make_luks_disk(&d, "disk3", "16M");
    char raw[600];
    snprintf(raw, sizeof(raw), "%s/raw.img", tmpdir);
    assert_int_equal(testutil_run("truncate -s 16M %s", raw), 0);
    char home[512];
    make_home(home, sizeof(home), "vm-two");
    hostd_qemu_disk disks[2] = {{.path = d.path, .passphrase = d.pass}, {.path = raw}};
    hostd_qemu_spec s = base_spec(home, "console=ttyS0 quiet vmseal.marker=TWODISKS");
    s.disks = disks;
    s.ndisks = 2;
    boot_and_wait(&s, "VMSEAL-MARKER-WRITTEN vdb");
    char serial[600];
    snprintf(serial, sizeof(serial), "%s/serial.log", home);
    assert_true(testutil_count_in_file(serial, "VMSEAL-MARKER-WRITTEN vda") > 0);
    assert_int_equal(testutil_count_in_file(d.path, "VMSEAL-MARKER:TWODISKS"), 0);
    assert_int_equal(testutil_count_in_file(raw, "VMSEAL-MARKER:TWODISKS:vdb"), 1);
    free_luks_disk(&d);
}

static void test_refuses_second_start(void **state)
{
    (void)state;
    char home[512];
    make_home(home, sizeof(home), "vm-busy");
    hostd_qemu_spec s = base_spec(home, "console=ttyS0 quiet vmseal.wait=1");
    hostd_qemu *vm = NULL, *vm2 = NULL, *att = NULL;
    if (hostd_qemu_start(&s, &vm) != 0)
        fail_msg("start: %s", vmseal_last_error());
    track(vm);
    assert_int_equal(hostd_qemu_start(&s, &vm2), -EBUSY);
    /* re-attach (as a restarted hostd would) finds the same process */
    hostd_qmp *q = hostd_qemu_monitor(vm);
    assert_non_null(q);
    hostd_qemu_free(vm);   /* drops our monitor connection, QEMU keeps running */
    assert_int_equal(hostd_qemu_attach(home, s.uuid, 5000, &att), 0);
    assert_int_equal(hostd_qemu_attach(home, "00000000-0000-0000-0000-000000000000", 1000, &vm2),
                     -ESRCH);
    char status[32];
    assert_int_equal(hostd_qemu_status(att, status, sizeof(status)), 0);
    hostd_qemu_kill(att);
    assert_false(hostd_qemu_alive(att));
    hostd_qemu_free(att);
}

/* The console log is never opened through a symlink (or a hard link):
 * QEMU is not started; the target stays as it was. */
static void test_serial_log_symlink_refused(void **state)
{
    (void)state;
    char home[512], target[600], lnk[600];
    make_home(home, sizeof(home), "vm-symlink");
    snprintf(target, sizeof(target), "%s/elsewhere", tmpdir);
    snprintf(lnk, sizeof(lnk), "%s/serial.log", home);
    assert_int_equal(symlink(target, lnk), 0);
    hostd_qemu_spec s = base_spec(home, "console=ttyS0 quiet");
    hostd_qemu *vm = NULL;
    assert_int_equal(hostd_qemu_start(&s, &vm), -ELOOP);
    assert_non_null(strstr(vmseal_last_error(), "symbolic link"));
    assert_int_not_equal(access(target, F_OK), 0);   /* not created through the link */
    unlink(lnk);
    /* a hard link to another file */
    int fd = open(target, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(link(target, lnk) == 0 ? 0 : -1, 0);
    assert_int_equal(hostd_qemu_start(&s, &vm), -EPROTO);
    assert_non_null(strstr(vmseal_last_error(), "hard link"));
    struct stat st;
    assert_int_equal(stat(target, &st), 0);
    assert_int_equal(st.st_size, 0);
    unlink(lnk);
    unlink(target);
}

static void test_bad_spec(void **state)
{
    (void)state;
    char home[512];
    make_home(home, sizeof(home), "vm-bad");
    hostd_qemu *vm = NULL;
    hostd_qemu_spec s = base_spec(home, NULL);
    s.name = "bad name";
    assert_int_equal(hostd_qemu_start(&s, &vm), -EINVAL);
    s = base_spec(home, NULL);
    s.uuid = "not-a-uuid";
    assert_int_equal(hostd_qemu_start(&s, &vm), -EINVAL);
    s = base_spec(home, NULL);
    hostd_qemu_disk missing = {.path = "/nonexistent/disk.img"};
    s.disks = &missing;
    s.ndisks = 1;
    assert_int_equal(hostd_qemu_start(&s, &vm), -ENOENT);
    s = base_spec(home, NULL);
    s.qemu = "/nonexistent/qemu-system-x86_64";
    assert_int_equal(hostd_qemu_start(&s, &vm), -EIO);
    assert_null(vm);
}

/* UEFI: OVMF with its variable store in a LUKS1 image attached as pflash1
 * over QMP, booting the test guest from a LUKS1 disk. */
static void test_uefi_encrypted_nvram(void **state)
{
    (void)state;
    const char *code = "/usr/share/OVMF/OVMF_CODE_4M.fd", *vars = "/usr/share/OVMF/OVMF_VARS_4M.fd";
    if (access(code, R_OK) != 0 || access(vars, R_OK) != 0) {
        fprintf(stderr, "ovmf is not installed\n");
        fail();
    }
    struct stat st;
    assert_int_equal(stat(vars, &st), 0);
    char size[32];
    snprintf(size, sizeof(size), "%lld", (long long)st.st_size);
    luks_disk nv, d;
    make_luks_disk(&nv, "nvram", size);
    make_luks_disk(&d, "uefidisk", "16M");
    assert_int_equal(testutil_run("qemu-img convert --object secret,id=s0,file=%s -n -f raw %s "
                         "--target-image-opts driver=luks,key-secret=s0,file.filename=%s",
                         nv.keyfile, vars, nv.path), 0);
    assert_int_equal(testutil_count_in_file(nv.path, "_FVH"), 0);   /* firmware volume signature */

    char home[512];
    make_home(home, sizeof(home), "vm-uefi");
    hostd_qemu_disk disk = {.path = d.path, .passphrase = d.pass};
    hostd_qemu_disk nvram = {.path = nv.path, .passphrase = nv.pass};
    hostd_qemu_spec s = base_spec(home, "console=ttyS0 quiet vmseal.marker=UEFIMARK");
    s.firmware_code = code;
    s.nvram = &nvram;
    s.disks = &disk;
    s.ndisks = 1;
    boot_and_wait(&s, "VMSEAL-MARKER-WRITTEN vda");
    assert_int_equal(testutil_count_in_file(d.path, "UEFIMARK"), 0);
    assert_int_equal(testutil_count_in_file(nv.path, "_FVH"), 0);

    /* A wrong NVRAM passphrase fails the start. */
    vmseal_secret *wrong = NULL;
    assert_int_equal(vmseal_secret_from("ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                                        64, &wrong), 0);
    nvram.passphrase = wrong;
    hostd_qemu *vm = NULL;
    assert_int_equal(hostd_qemu_start(&s, &vm), -EREMOTEIO);
    vmseal_secret_free(wrong);
    free_luks_disk(&nv);
    free_luks_disk(&d);
}

/* The KVM probe gives a definite answer, caches it, and the cached answer
 * comes back at once. (On machines where /dev/kvm exists but KVM guests
 * hang, the answer is 0 after the probe's timeout.) */
static void test_kvm_probe(void **state)
{
    (void)state;
    char cache[400];
    snprintf(cache, sizeof(cache), "%s/kvm-probe.cache", tmpdir);
    hostd_kvm_probe p = {
        .kernel = kernel, .initrd = initrd, .expect = "VMSEAL-POWEROFF",
        .cache_file = cache, .timeout_ms = 15000,
    };
    int first = hostd_qemu_probe_kvm(&p);
    assert_true(first == 0 || first == 1);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(hostd_qemu_probe_kvm(&p), first);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(t1.tv_sec - t0.tv_sec < 2);
    if (access("/dev/kvm", R_OK | W_OK) == 0)
        assert_true(testutil_count_in_file(cache, "kvm-probe:") == 1);
    /* the environment overrides the probe */
    setenv("VMSEAL_ACCEL", "tcg", 1);
    assert_int_equal(hostd_qemu_pick_accel(&p), VMSEAL_ACCEL_TCG);
    setenv("VMSEAL_ACCEL", "kvm", 1);
    assert_int_equal(hostd_qemu_pick_accel(&p), VMSEAL_ACCEL_KVM);
    unsetenv("VMSEAL_ACCEL");
    assert_int_equal(hostd_qemu_pick_accel(&p), first ? VMSEAL_ACCEL_KVM : VMSEAL_ACCEL_TCG);
    if (first) {
        /* KVM said yes: a guest really boots with it */
        char home[512];
        make_home(home, sizeof(home), "vm-kvm");
        hostd_qemu_spec s = base_spec(home, "console=ttyS0 quiet");
        s.accel = VMSEAL_ACCEL_KVM;
        boot_and_wait(&s, "VMSEAL-POWEROFF");
    }
}

/* QEMU confined: with run_as it runs as that user with no capabilities
 * (and no way to gain any), boots from kernel/initrd descriptors opened by
 * the caller and reads its LUKS disk through descriptors handed over in
 * fdsets (it cannot open the 0700 root-owned home itself). */
static char qemu_user[32];

static void remove_qemu_user(void)
{
    if (qemu_user[0])
        testutil_run("userdel %s >/dev/null 2>&1", qemu_user);
}

static long proc_status_field(pid_t pid, const char *field, int hex)
{
    static char buf[8192];
    int n = read_proc_file(pid, "status", buf, sizeof(buf) - 1);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    char *p = strstr(buf, field);
    if (!p)
        return -1;
    return strtol(p + strlen(field), NULL, hex ? 16 : 10);
}

static void test_confined_qemu(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    snprintf(qemu_user, sizeof(qemu_user), "vmsq%d", (int)getpid() % 100000);
    if (testutil_run("useradd --system --no-create-home --shell /usr/sbin/nologin %s", qemu_user) != 0) {
        qemu_user[0] = '\0';
        fail_msg("useradd failed");
    }
    atexit(remove_qemu_user);
    char idcmd[128], uidtxt[32] = "";
    snprintf(idcmd, sizeof(idcmd), "id -u %s", qemu_user);
    FILE *f = popen(idcmd, "r");
    assert_non_null(f);
    assert_non_null(fgets(uidtxt, sizeof(uidtxt), f));
    pclose(f);
    long uid = strtol(uidtxt, NULL, 10);
    assert_true(uid > 0);

    luks_disk d;
    make_luks_disk(&d, "confined", "32M");
    char home[512];
    make_home(home, sizeof(home), "vm-confined");
    int kfd = open(kernel, O_RDONLY | O_CLOEXEC), ifd = open(initrd, O_RDONLY | O_CLOEXEC);
    assert_true(kfd > 0 && ifd > 0);
    char append[200];
    snprintf(append, sizeof(append), "console=ttyS0 quiet vmseal.marker=CONFINED%d vmseal.wait=1",
             (int)getpid());
    hostd_qemu_disk disk = {.path = d.path, .passphrase = d.pass};
    hostd_qemu_spec s = base_spec(home, append);
    s.kernel = s.initrd = NULL;
    s.kernel_fd = kfd;
    s.initrd_fd = ifd;
    s.run_as = qemu_user;
    s.disks = &disk;
    s.ndisks = 1;
    hostd_qemu *vm = NULL;
    if (hostd_qemu_start(&s, &vm) != 0)
        fail_msg("start: %s", vmseal_last_error());
    track(vm);
    pid_t pid = hostd_qemu_pid(vm);
    char serial[600];
    snprintf(serial, sizeof(serial), "%s/serial.log", home);
    if (wait_for_text(serial, "VMSEAL-READY", 90000) != 0) {
        testutil_run("cat %s %s/qemu.log >&2", serial, home);
        fail_msg("the confined guest did not come up");
    }
    assert_true(testutil_count_in_file(serial, "VMSEAL-MARKER-WRITTEN vda") > 0);
    /* the process: the user's uid (real, effective, saved, fs), no
     * capabilities, no_new_privs */
    assert_int_equal(proc_status_field(pid, "Uid:\t", 0), uid);
    char *status = NULL;
    static char buf[8192];
    int n = read_proc_file(pid, "status", buf, sizeof(buf) - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    status = strstr(buf, "Uid:\t");
    char want[128];
    snprintf(want, sizeof(want), "Uid:\t%ld\t%ld\t%ld\t%ld\n", uid, uid, uid, uid);
    assert_non_null(status);
    assert_memory_equal(status, want, strlen(want));
    assert_int_equal(proc_status_field(pid, "CapEff:\t", 1), 0);
    assert_int_equal(proc_status_field(pid, "CapPrm:\t", 1), 0);
    assert_int_equal(proc_status_field(pid, "NoNewPrivs:\t", 0), 1);
    /* no path to the kernel, initrd or disk on its command line */
    n = read_proc_file(pid, "cmdline", buf, sizeof(buf) - 1);
    assert_true(n > 0);
    assert_null(memmem(buf, (size_t)n, kernel, strlen(kernel)));
    assert_null(memmem(buf, (size_t)n, d.path, strlen(d.path)));
    assert_int_equal(hostd_qemu_power_off(vm, 60000), 0);
    hostd_qemu_free(vm);

    /* a second confined boot reads the marker back through LUKS */
    snprintf(append, sizeof(append), "console=ttyS0 quiet vmseal.check=CONFINED%d", (int)getpid());
    s.append = append;
    boot_and_wait(&s, "VMSEAL-CHECK-OK");
    close(kfd);
    close(ifd);
    free_luks_disk(&d);
}

static int setup(void **state)
{
    (void)state;
    if (testutil_guest(kernel, sizeof(kernel), initrd, sizeof(initrd)) < 0)
        return -1;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/vmseal-qemu-test.XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < nstarted; i++)
        if (started[i] > 0 && kill(started[i], 0) == 0)
            kill(started[i], SIGKILL);
    if (tmpdir[0])
        testutil_rmtree(tmpdir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_spec),
        cmocka_unit_test(test_serial_log_symlink_refused),
        cmocka_unit_test(test_marker_through_luks),
        cmocka_unit_test(test_secret_not_in_argv_env_and_deleted),
        cmocka_unit_test(test_wrong_passphrase),
        cmocka_unit_test(test_raw_and_luks_disks),
        cmocka_unit_test(test_refuses_second_start),
        cmocka_unit_test(test_uefi_encrypted_nvram),
        cmocka_unit_test(test_kvm_probe),
        cmocka_unit_test(test_confined_qemu),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
