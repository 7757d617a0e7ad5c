/* hostd's side of an encrypted live migration (hostd/migrate.c) with real
 * QEMU (TCG), the test guest and a LUKS1 disk both QEMUs open (a shared
 * datastore), on 127.0.0.1:
 *
 * - a counting guest migrates to a destination QEMU started with
 *   hostd_qemu_spec.incoming_defer (paused, the same disk and passphrase); after
 *   `cont` it counts on, without a reboot; the relays' argv and environment
 *   hold neither the key nor the nonce, the relay has only its descriptors;
 * - a destination relay with another key refuses the first frame: the
 *   migration fails, the source runs on; the destination never ran;
 * - the destination QEMU killed mid-stream: the migration fails, the
 *   source runs on;
 * - cancelled on the source: the stream ends cleanly at a frame boundary,
 *   the destination QEMU refuses the incomplete state and never runs;
 * - the guest powered off, its disk booted again reads its marker.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/rand.h>

#include <vmseal/migstream.h>

#include "migrate.h"
#include "qemu.h"
#include "qmp.h"
#include "testutil.h"

static char kernel[1200], initrd[1200], relay[1200];
static char tmpdir[256];
static pid_t started[16];
static size_t nstarted;

static void track(hostd_qemu *vm)
{
    if (nstarted < 16)
        started[nstarted++] = hostd_qemu_pid(vm);
}

static char pass_text[65], keyfile[600], image[600];
static vmseal_secret *pass;

static void make_disk(void)
{
    uint8_t raw[32];
    assert_int_equal(RAND_bytes(raw, sizeof(raw)), 1);
    vmseal_hex_encode(raw, sizeof(raw), pass_text);
    assert_int_equal(vmseal_secret_from(pass_text, 64, &pass), 0);
    snprintf(image, sizeof(image), "%s/shared-disk0.luks", tmpdir);
    snprintf(keyfile, sizeof(keyfile), "%s/disk0.key", tmpdir);
    int fd = open(keyfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, pass_text, 64), 64);
    close(fd);
    int rc = -1;
    for (int i = 0; i < 12 && rc != 0; i++) { /* qemu-img luks is flaky under load */
        unlink(image);
        rc = testutil_run("qemu-img create -q -f luks --object secret,id=s0,file=%s "
                          "-o key-secret=s0,iter-time=10 %s 32M >/dev/null 2>&1",
                          keyfile, image);
    }
    assert_int_equal(rc, 0);
}

static hostd_qemu *start_vm(const char *name, const char *append, int incoming)
{
    static char homes[8][600];
    static int nh;
    char *home = homes[nh++ % 8];
    snprintf(home, 600, "%s/%s", tmpdir, name);
    assert_int_equal(mkdir(home, 0700), 0);
    hostd_qemu_disk disk = {.path = image, .passphrase = pass};
    hostd_qemu_spec s = {
        .run_dir = home, .name = "migvm", .uuid = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        .cpus = 1, .memory_mb = 160, .accel = VMSEAL_ACCEL_TCG, .kernel = kernel,
        .initrd = initrd, .append = append, .timeout_ms = 60000, .disks = &disk, .ndisks = 1,
        .incoming_defer = incoming,
    };
    hostd_qemu *vm = NULL;
    if (hostd_qemu_start(&s, &vm) != 0)
        fail_msg("start %s: %s", name, vmseal_last_error());
    track(vm);
    return vm;
}

static void serial_path(const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s/serial.log", tmpdir, name);
}

/* The last VMSEAL-COUNT on a console (0: none). */
static long last_count(const char *name)
{
    char path[700], line[256];
    serial_path(name, path, sizeof(path));
    FILE *f = fopen(path, "r");
    long n = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "VMSEAL-COUNT ", 13) == 0)
            n = strtol(line + 13, NULL, 10);
    fclose(f);
    return n;
}

static long wait_count_above(const char *name, long n, int timeout_s)
{
    for (int i = 0; i < timeout_s * 5; i++) {
        long c = last_count(name);
        if (c > n)
            return c;
        usleep(200 * 1000);
    }
    fail_msg("%s: the guest did not count past %ld within %d s", name, n, timeout_s);
    return 0;
}

static void status_is(hostd_qemu *vm, const char *want)
{
    char st[64];
    assert_int_equal(hostd_qemu_status(vm, st, sizeof(st)), 0);
    if (strcmp(st, want) != 0)
        fail_msg("QEMU is %s, not %s", st, want);
}

static void no_key_in_proc(pid_t pid, const vmseal_secret *key, uint64_t nonce)
{
    char path[64], buf[8192], hex[65];
    const char *files[] = {"cmdline", "environ"};
    vmseal_hex_encode(vmseal_secret_cdata(key), 32, hex);
    char nhex[17];
    snprintf(nhex, sizeof(nhex), "%016llx", (unsigned long long)nonce);
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, files[i]);
        int fd = open(path, O_RDONLY);
        assert_true(fd >= 0);
        ssize_t n = read(fd, buf, sizeof(buf));
        close(fd);
        assert_true(n >= 0);
        assert_null(memmem(buf, (size_t)n, vmseal_secret_cdata(key), 8));
        assert_null(memmem(buf, (size_t)n, hex, 16));
        assert_null(memmem(buf, (size_t)n, nhex, 16));
        if (i == 1)
            assert_int_equal(n, 0); /* an empty environment */
    }
    /* only stdin, stdout, stderr, the key pipe (until read), the QEMU
     * socket, the ready pipe (until used) and its own sockets */
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    assert_non_null(d);
    struct dirent *de;
    int count = 0;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            count++;
    closedir(d);
    assert_true(count <= 7);
}

static hostd_migrate_spec spec_for(const vmseal_secret *key, uint64_t nonce, const char *addr)
{
    hostd_migrate_spec s = {.relay = relay, .key = key, .nonce = nonce, .address = addr,
                            .peer = "127.0.0.1", .timeout_s = 30};
    return s;
}

static void test_migrate(void **state)
{
    (void)state;
    make_disk();
    char marker[40], append[300];
    uint8_t rnd[8];
    assert_int_equal(RAND_bytes(rnd, sizeof(rnd)), 1);
    char hex[17];
    vmseal_hex_encode(rnd, sizeof(rnd), hex);
    snprintf(marker, sizeof(marker), "MIG%s", hex);
    snprintf(append, sizeof(append),
             "console=ttyS0 quiet vmseal.marker=%s vmseal.mem=%s vmseal.memmib=2 vmseal.count=1 "
             "vmseal.wait=1", marker, marker);
    hostd_qemu *a = start_vm("a", append, 0);
    wait_count_above("a", 1, 300);

    /* 1. a -> b */
    vmseal_secret *key = NULL;
    uint64_t nonce;
    assert_int_equal(vmseal_secret_random(VMSEAL_MIG_KEY_LEN, &key), 0);
    assert_int_equal(RAND_bytes((unsigned char *)&nonce, sizeof(nonce)), 1);
    hostd_qemu *b = start_vm("b", "", 1);
    status_is(b, "inmigrate");
    hostd_migrate_spec in = spec_for(key, nonce, "127.0.0.1:0");
    hostd_migration *min = NULL, *mout = NULL;
    int port = 0;
    if (hostd_migrate_incoming(hostd_qemu_monitor(b), &in, &port, &min) != 0)
        fail_msg("incoming: %s", vmseal_last_error());
    assert_true(port > 0);
    no_key_in_proc(hostd_migrate_relay_pid(min), key, nonce);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    hostd_migrate_spec outs = spec_for(key, nonce, addr);
    long before = last_count("a");
    if (hostd_migrate_outgoing(hostd_qemu_monitor(a), &outs, &mout) != 0)
        fail_msg("outgoing: %s", vmseal_last_error());
    if (hostd_migrate_wait(mout, hostd_qemu_monitor(a), 300000) != 0)
        fail_msg("source: %s", vmseal_last_error());
    if (hostd_migrate_wait(min, hostd_qemu_monitor(b), 60000) != 0)
        fail_msg("destination: %s", vmseal_last_error());
    status_is(b, "paused");
    hostd_migrate_free(mout);
    hostd_migrate_free(min);
    status_is(a, "postmigrate");
    assert_int_equal(hostd_qmp_execute(hostd_qemu_monitor(b), "cont", NULL, 15000, NULL), 0);
    long after = wait_count_above("b", before, 120);
    char bserial[700];
    serial_path("b", bserial, sizeof(bserial));
    assert_int_equal(testutil_count_in_file(bserial, "VMSEAL-GUEST-BOOT"), 0);
    print_message("migrated: counted %ld on the source, %ld on the destination\n", before, after);
    hostd_qemu_kill(a);
    hostd_qemu_free(a);
    vmseal_secret_free(key);

    /* 2. b -> c, the receiving relay under another key: the first frame fails */
    vmseal_secret *k1 = NULL, *k2 = NULL;
    assert_int_equal(vmseal_secret_random(VMSEAL_MIG_KEY_LEN, &k1), 0);
    assert_int_equal(vmseal_secret_random(VMSEAL_MIG_KEY_LEN, &k2), 0);
    hostd_qemu *c = start_vm("c", "", 1);
    in = spec_for(k2, nonce, "127.0.0.1:0");
    assert_int_equal(hostd_migrate_incoming(hostd_qemu_monitor(c), &in, &port, &min), 0);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    outs = spec_for(k1, nonce, addr);
    assert_int_equal(hostd_migrate_outgoing(hostd_qemu_monitor(b), &outs, &mout), 0);
    assert_int_equal(hostd_migrate_wait(mout, hostd_qemu_monitor(b), 300000), -EIO);
    print_message("another key: %s\n", vmseal_last_error());
    assert_int_equal(hostd_migrate_wait(min, hostd_qemu_monitor(c), 60000), -EIO);
    hostd_migrate_free(mout);
    hostd_migrate_free(min);
    status_is(b, "running");
    long n = last_count("b");
    wait_count_above("b", n + 1, 120);
    char cserial[700];
    serial_path("c", cserial, sizeof(cserial));
    assert_int_equal(testutil_count_in_file(cserial, "VMSEAL-COUNT"), 0);
    hostd_qemu_kill(c);
    hostd_qemu_free(c);
    vmseal_secret_free(k1);
    vmseal_secret_free(k2);

    /* 3. b -> d, d killed mid-stream */
    assert_int_equal(vmseal_secret_random(VMSEAL_MIG_KEY_LEN, &key), 0);
    hostd_qemu *d = start_vm("d", "", 1);
    in = spec_for(key, nonce, "127.0.0.1:0");
    assert_int_equal(hostd_migrate_incoming(hostd_qemu_monitor(d), &in, &port, &min), 0);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    outs = spec_for(key, nonce, addr);
    outs.max_bandwidth = 2 << 20; /* slow enough to be killed part-way */
    assert_int_equal(hostd_migrate_outgoing(hostd_qemu_monitor(b), &outs, &mout), 0);
    sleep(2);
    kill(hostd_qemu_pid(d), SIGKILL);
    assert_int_equal(hostd_migrate_wait(mout, hostd_qemu_monitor(b), 300000), -EIO);
    print_message("destination killed: %s\n", vmseal_last_error());
    hostd_migrate_free(mout);
    hostd_migrate_free(min);
    hostd_qemu_free(d);
    status_is(b, "running");
    n = last_count("b");
    wait_count_above("b", n + 1, 120);
    vmseal_secret_free(key);

    /* 4. b -> f, cancelled on the source part-way: the source relay sees
     * QEMU close its socket and ends the stream cleanly, every frame
     * verifies, yet the destination QEMU misses QEMU's own end marker and
     * never runs the guest; the source runs on */
    assert_int_equal(vmseal_secret_random(VMSEAL_MIG_KEY_LEN, &key), 0);
    hostd_qemu *f = start_vm("f", "", 1);
    in = spec_for(key, nonce, "127.0.0.1:0");
    assert_int_equal(hostd_migrate_incoming(hostd_qemu_monitor(f), &in, &port, &min), 0);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    outs = spec_for(key, nonce, addr);
    outs.max_bandwidth = 2 << 20;
    assert_int_equal(hostd_migrate_outgoing(hostd_qemu_monitor(b), &outs, &mout), 0);
    sleep(2);
    assert_int_equal(hostd_qmp_execute(hostd_qemu_monitor(b), "migrate_cancel", NULL, 15000,
                                       NULL), 0);
    assert_int_equal(hostd_migrate_wait(mout, hostd_qemu_monitor(b), 300000), -EIO);
    print_message("cancelled: %s\n", vmseal_last_error());
    assert_int_equal(hostd_migrate_wait(min, hostd_qemu_monitor(f), 60000), -EIO);
    print_message("its destination: %s\n", vmseal_last_error());
    hostd_migrate_free(mout);
    hostd_migrate_free(min);
    char fserial[700];
    serial_path("f", fserial, sizeof(fserial));
    assert_int_equal(testutil_count_in_file(fserial, "VMSEAL-COUNT"), 0);
    hostd_qemu_kill(f);
    hostd_qemu_free(f);
    status_is(b, "running");
    n = last_count("b");
    wait_count_above("b", n + 1, 120);
    vmseal_secret_free(key);

    /* the disk: power off, boot again, read the marker */
    hostd_qemu_kill(b);
    hostd_qemu_free(b);
    snprintf(append, sizeof(append), "console=ttyS0 quiet vmseal.check=%s", marker);
    hostd_qemu *e = start_vm("e", append, 0);
    assert_int_equal(hostd_qemu_wait_exit(e, 300000), 0);
    hostd_qemu_free(e);
    char eserial[700];
    serial_path("e", eserial, sizeof(eserial));
    assert_int_equal(testutil_count_in_file(eserial, "VMSEAL-CHECK-OK"), 1);
    /* the marker never reached the image in clear */
    assert_int_equal(testutil_count_in_file(image, marker), 0);
    vmseal_secret_free(pass);
}

static int setup(void **state)
{
    (void)state;
    if (testutil_guest(kernel, sizeof(kernel), initrd, sizeof(initrd)) < 0)
        return -1;
    const char *b = getenv("VMSEAL_BUILD");
    snprintf(relay, sizeof(relay), "%s/hostd/vmseal-migrate-relay", b ? b : "build");
    if (access(relay, X_OK) != 0)
        return -1;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/vmseal-migrate-test.XXXXXX");
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
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrate),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
