/* The host agent's API handler against real QEMU (TCG), the test guest and
 * real LUKS1 images, without the HTTPS transport (tests/hostd/hostd_api.sh
 * drives the daemon over mutual TLS):
 *   create encrypted VM -> marker through the encrypted disk; key safes in
 *   vm.conf unwrap with the KEK to the passphrase qemu-img accepts;
 *   plain VM -> encrypt -> decrypt with the marker checked at each step;
 *   shallow recrypt while running; deep recrypt (new LUKS volume key);
 *   UEFI with the NVRAM as LUKS1; reopen -> locked until the KEK comes back;
 *   an interrupted encrypt finished after restart.
 */
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
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <vmseal/disk.h>
#include <vmseal/kekdelivery.h>
#include <vmseal/keysafe.h>
#include <vmseal/vmconf.h>

#include "host.h"
#include "testutil.h"

static char kernel[1200], initrd[1200];
static char tmpdir[256], datastore[300];
static char guest_kernel[1200];   /* the guest kernel outside the images folder */
static hostd_host *host;

typedef struct kek {
    char id[32];
    unsigned char raw[32];
    char b64[64];
} kek;

static kek K1, K2, K3;

/* ------------------------------------------------------------- helpers */

/* Occurrences of needle in every file of a VM home. */
static long count_in_home(const char *home, const char *needle)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "grep -rac -- '%s' %s | awk -F: '{s+=$NF} END {print s+0}'", needle, home);
    FILE *p = popen(cmd, "r");
    long n = -1;
    if (p) {
        if (fscanf(p, "%ld", &n) != 1)
            n = -1;
        pclose(p);
    }
    return n;
}

static json_t *call(int expect, const char *method, const char *path, const char *fmt, ...)
    VMSEAL_PRINTF(4, 5);
static json_t *call(int expect, const char *method, const char *path, const char *fmt, ...)
{
    char body[4096] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(body, sizeof(body), fmt, ap);
        va_end(ap);
    }
    int status = 0;
    json_t *resp = NULL;
    hostd_host_handle(host, method, path, body, strlen(body), "CN=manager", &status, &resp);
    if (status != expect) {
        char *txt = resp ? json_dumps(resp, 0) : NULL;
        fail_msg("%s %s: status %d (wanted %d): %s", method, path, status, expect, txt ? txt : "");
    }
    return resp;
}

static void make_kek(kek *k, const char *id)
{
    snprintf(k->id, sizeof(k->id), "%s", id);
    assert_int_equal(RAND_bytes(k->raw, 32), 1);
    EVP_EncodeBlock((unsigned char *)k->b64, k->raw, 32);
}

/* PUT /v1/keys/{id} with the KEK sealed to the host's custody key, as the
 * manager sends it, for host name hname and provider prov (sent as such). */
static json_t *put_sealed(int expect, const kek *k, const char *id, const char *hname,
                          const char *prov)
{
    uint8_t pub[VMSEAL_KD_PUB_LEN], blob[VMSEAL_KD_BLOB_LEN];
    char b64[200], path[300];
    hostd_host_custody_public(host, pub);
    vmseal_secret *s = NULL;
    assert_int_equal(vmseal_secret_from(k->raw, 32, &s), 0);
    assert_int_equal(vmseal_kd_seal(pub, hname, id, prov, s, blob), 0);
    vmseal_secret_free(s);
    assert_int_equal(vmseal_kd_b64(blob, sizeof(blob), b64, sizeof(b64)), 0);
    snprintf(path, sizeof(path), "/v1/keys/%s", id);
    return call(expect, "PUT", path, "{\"sealed_key\": \"%s\", \"provider\": \"vmseal\"}", b64);
}

static void put_kek(const kek *k)
{
    json_decref(put_sealed(200, k, k->id, "host-test", "vmseal"));
}

static const char *jstr(json_t *j, const char *key)
{
    const char *s = json_string_value(json_object_get(j, key));
    assert_non_null(s);
    return s;
}

static void vm_path(char *buf, size_t len, const char *uuid, const char *suffix)
{
    snprintf(buf, len, "/v1/vms/%s%s", uuid, suffix);
}

static json_t *get_vm(const char *uuid)
{
    char p[128];
    vm_path(p, sizeof(p), uuid, "");
    return call(200, "GET", p, NULL);
}

static void wait_power_off(const char *uuid, int timeout_s)
{
    for (int i = 0; i < timeout_s * 10; i++) {
        hostd_host_tick(host);
        json_t *v = get_vm(uuid);
        int off = strcmp(jstr(v, "power_state"), "off") == 0;
        json_decref(v);
        if (off)
            return;
        usleep(100000);
    }
    fail_msg("VM %s did not power off", uuid);
}

static json_t *wait_task(const char *task_id, int timeout_s)
{
    char p[128];
    snprintf(p, sizeof(p), "/v1/tasks/%s", task_id);
    for (int i = 0; i < timeout_s * 10; i++) {
        json_t *t = call(200, "GET", p, NULL);
        if (strcmp(jstr(t, "state"), "running") != 0)
            return t;
        json_decref(t);
        usleep(100000);
    }
    fail_msg("task %s did not finish", task_id);
    return NULL;
}

static void run_task_ok(const char *uuid, const char *action, const char *body)
{
    char p[160];
    vm_path(p, sizeof(p), uuid, action);
    json_t *t = call(202, "POST", p, "%s", body);
    char id[40];
    snprintf(id, sizeof(id), "%s", jstr(t, "task_id"));
    json_decref(t);
    t = wait_task(id, 120);
    if (strcmp(jstr(t, "state"), "success") != 0)
        fail_msg("task %s %s: %s", action, jstr(t, "state"), json_string_value(json_object_get(t, "error")));
    assert_int_equal(json_integer_value(json_object_get(t, "progress")), 100);
    json_decref(t);
}

/* ---- the guest's console through GET /v1/vms/{uuid}/log ---- */

/* The log's total length. */
static uint64_t log_bytes(const char *uuid)
{
    char p[160];
    vm_path(p, sizeof(p), uuid, "/log?tail=0");
    json_t *j = call(200, "GET", p, NULL);
    assert_true(json_is_integer(json_object_get(j, "bytes")));
    uint64_t n = (uint64_t)json_integer_value(json_object_get(j, "bytes"));
    assert_int_equal(json_string_length(json_object_get(j, "log")), 0);
    json_decref(j);
    return n;
}

/* What the console printed after log byte `since` (malloc'd). */
static char *log_since(const char *uuid, uint64_t since)
{
    uint64_t total = log_bytes(uuid);
    assert_true(total >= since);
    char p[200];
    vm_path(p, sizeof(p), uuid, "");
    snprintf(p + strlen(p), sizeof(p) - strlen(p), "/log?tail=%llu",
             (unsigned long long)(total - since));
    json_t *j = call(200, "GET", p, NULL);
    char *text = strdup(jstr(j, "log"));
    json_decref(j);
    return text;
}

/* Wait until the console shows `expect` after byte `since`. */
static void wait_log(const char *uuid, uint64_t since, const char *expect, int timeout_s)
{
    for (int i = 0; i < timeout_s * 5; i++) {
        char *t = log_since(uuid, since);
        int found = strstr(t, expect) != NULL;
        free(t);
        if (found)
            return;
        usleep(200000);
    }
    char *t = log_since(uuid, since);
    fprintf(stderr, "console:\n%s\n", t);
    free(t);
    fail_msg("the console of %s did not show %s", uuid, expect);
}

/* Boot the VM with this kernel command line and wait until the guest has
 * powered itself off; its console during this boot must show `expect`. */
static void boot_with(const char *uuid, const char *home, const char *append, const char *expect)
{
    (void)home;
    uint64_t since = log_bytes(uuid);
    char p[160];
    vm_path(p, sizeof(p), uuid, "");
    json_decref(call(200, "PATCH", p, "{\"append\": \"console=ttyS0 quiet %s\"}", append));
    vm_path(p, sizeof(p), uuid, "/power-on");
    json_decref(call(200, "POST", p, NULL));
    wait_power_off(uuid, 90);
    char *t = log_since(uuid, since);
    if (!strstr(t, expect)) {
        fprintf(stderr, "console:\n%s\n", t);
        free(t);
        fail_msg("serial console of %s lacks %s", uuid, expect);
    }
    free(t);
}

/* Passphrase of disk N from vm.conf with a KEK, as the test's own
 * independent computation: unwrap the key safe, hex of the secret. */
static void disk_keyfile(const char *home, int idx, const kek *k, const char *keyfile)
{
    char conf_path[600];
    snprintf(conf_path, sizeof(conf_path), "%s/vm.conf", home);
    vmseal_vmconf *c = NULL;
    assert_int_equal(vmseal_vmconf_load(conf_path, &c), 0);
    char key[64], obj[80];
    snprintf(key, sizeof(key), "disk%d.keysafe", idx);
    const char *line = vmseal_vmconf_get(c, key);
    assert_non_null(line);
    snprintf(key, sizeof(key), "disk%d.luks.uuid", idx);
    snprintf(obj, sizeof(obj), "disk:%s", vmseal_vmconf_get(c, key));
    vmseal_secret *kk = NULL, *secret = NULL, *pass = NULL;
    assert_int_equal(vmseal_secret_from(k->raw, 32, &kk), 0);
    assert_int_equal(vmseal_keysafe_unwrap(kk, line, obj, &secret), 0);
    assert_int_equal(vmseal_disk_passphrase_from_secret(secret, &pass), 0);
    int fd = open(keyfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, vmseal_secret_cdata(pass), 64), 64);
    close(fd);
    vmseal_secret_free(kk);
    vmseal_secret_free(secret);
    vmseal_secret_free(pass);
    vmseal_vmconf_free(c);
}

static void assert_plain_via_qemu_img(const char *home, const char *file, int idx, const kek *k,
                                      const char *needle)
{
    char keyfile[600], out[600];
    snprintf(keyfile, sizeof(keyfile), "%s/pass.key", tmpdir);
    snprintf(out, sizeof(out), "%s/plain.raw", tmpdir);
    disk_keyfile(home, idx, k, keyfile);
    assert_int_equal(testutil_run("qemu-img convert --object secret,id=s0,file=%s "
                         "--image-opts driver=luks,key-secret=s0,file.filename=%s/%s -O raw %s",
                         keyfile, home, file, out), 0);
    assert_true(testutil_count_in_file(out, needle) >= 1);
    unlink(out);
    unlink(keyfile);
}

static json_t *create_vm(const char *name, const char *policy, const char *kek_id,
                         const char *firmware, int ndisks)
{
    char disks[256] = "[";
    for (int i = 0; i < ndisks; i++)
        snprintf(disks + strlen(disks), sizeof(disks) - strlen(disks), "%s{\"size_mb\": 16}",
                 i ? ", " : "");
    strcat(disks, "]");
    char kekpart[128] = "";
    if (kek_id)
        snprintf(kekpart, sizeof(kekpart), ", \"kek_id\": \"%s\"", kek_id);
    return call(201, "POST", "/v1/vms",
                "{\"name\": \"%s\", \"cpus\": 1, \"memory_mb\": 256, \"disks\": %s, "
                "\"firmware\": \"%s\", \"kernel\": \"%s\", \"initrd\": \"%s\", "
                "\"append\": \"console=ttyS0 quiet\", \"policy\": \"%s\"%s}",
                name, disks, firmware, kernel, initrd, policy, kekpart);
}

static void open_host(void)
{
    hostd_host_config cfg = {
        .datastore = datastore,
        .accel = VMSEAL_ACCEL_TCG,
        .allowed_subject = "CN=manager",
        .power_off_grace_ms = 30000,
        .name = "host-test",
    };
    assert_int_equal(hostd_host_open(&cfg, &host), 0);
}

/* --------------------------------------------------------------- tests */

static void test_keys_api(void **state)
{
    (void)state;
    put_kek(&K1);
    /* wrong lengths, not base64, not JSON */
    json_decref(call(400, "PUT", "/v1/keys/bad", "{\"key\": \"AAAA\"}"));
    json_decref(call(400, "PUT", "/v1/keys/bad", "{\"key\": \"%s\"}",
                     "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    json_decref(call(400, "PUT", "/v1/keys/bad", "{\"key\": \"****************************************!!!=\"}"));
    json_decref(call(400, "PUT", "/v1/keys/bad", "not json"));
    json_decref(call(400, "PUT", "/v1/keys/bad", "{\"sealed_key\": \"AAAA\"}"));
    /* sealed for another host or provider: 422, nothing stored */
    json_decref(put_sealed(422, &K2, "kek-2", "host-other", "vmseal"));
    json_decref(put_sealed(422, &K2, "kek-2", "host-test", "other"));
    json_decref(call(404, "DELETE", "/v1/keys/kek-2", NULL));
    json_decref(call(404, "DELETE", "/v1/keys/never-put", NULL));
    /* '?' is part of a path (only GET .../log takes a query) */
    json_decref(put_sealed(200, &K2, "odd?id=1", "host-test", "vmseal"));
    json_decref(call(404, "DELETE", "/v1/keys/odd", NULL));
    json_decref(call(204, "DELETE", "/v1/keys/odd?id=1", NULL));
    /* only the manager's certificate may call */
    int status = 0;
    json_t *resp = NULL;
    hostd_host_handle(host, "GET", "/v1/vms", "", 0, "CN=intruder", &status, &resp);
    assert_int_equal(status, 403);
    json_decref(resp);
    hostd_host_handle(host, "GET", "/v1/vms", "", 0, "", &status, &resp);
    assert_int_equal(status, 403);
    json_decref(resp);
    json_decref(call(404, "GET", "/v1/nothing", NULL));
}

/* The live-migration endpoints refuse what is malformed or out of place
 * before anything starts (the whole flow: tests/system/test_e2e_migrate.sh). */
static void test_migrate_api_refusals(void **state)
{
    (void)state;
    json_t *vm = create_vm("mig1", "encrypted", K1.id, "bios", 1);
    char uuid[40], path[200];
    snprintf(uuid, sizeof(uuid), "%s", jstr(vm, "uuid"));
    json_decref(vm);
    const char *key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    /* migrate-in: key and nonce of the wrong length or not hex, no listen address */
    json_decref(call(400, "POST", "/v1/vms/migrate-in",
                     "{\"name\": \"mig1\", \"uuid\": \"%s\", \"spec\": {\"key\": \"00\", "
                     "\"nonce\": \"0001020304050607\", \"listen\": \"127.0.0.1:0\"}}", uuid));
    json_decref(call(400, "POST", "/v1/vms/migrate-in",
                     "{\"name\": \"mig1\", \"uuid\": \"%s\", \"spec\": {\"key\": \"%s\", "
                     "\"nonce\": \"00010203040506zz\", \"listen\": \"127.0.0.1:0\"}}", uuid, key));
    json_decref(call(400, "POST", "/v1/vms/migrate-in",
                     "{\"name\": \"mig1\", \"uuid\": \"%s\", \"spec\": {\"key\": \"%s\", "
                     "\"nonce\": \"0001020304050607\"}}", uuid, key));
    json_decref(call(400, "POST", "/v1/vms/migrate-in", "{\"name\": \"mig1\", \"uuid\": \"%s\"}", uuid));
    /* migrate-in of a uuid that is not the VM in that folder: refused, nothing started */
    json_decref(call(409, "POST", "/v1/vms/migrate-in",
                     "{\"name\": \"mig1\", \"uuid\": \"11111111-1111-4111-8111-111111111111\", "
                     "\"spec\": {\"key\": \"%s\", \"nonce\": \"0001020304050607\", "
                     "\"listen\": \"127.0.0.1:0\"}}", key));
    /* migrate-out of a VM that is not running; no destination */
    snprintf(path, sizeof(path), "/v1/vms/%s/migrate-out", uuid);
    json_decref(call(409, "POST", path,
                     "{\"spec\": {\"key\": \"%s\", \"nonce\": \"0001020304050607\", "
                     "\"dest\": \"127.0.0.1:9\"}}", key));
    json_decref(call(400, "POST", path,
                     "{\"spec\": {\"key\": \"%s\", \"nonce\": \"0001020304050607\"}}", key));
    /* migrate-end needs a boolean; a VM that is not running is not continued */
    snprintf(path, sizeof(path), "/v1/vms/%s/migrate-end", uuid);
    json_decref(call(400, "POST", path, "{\"completed\": \"yes\"}"));
    json_decref(call(409, "POST", path, "{\"completed\": false}"));
    /* a VM with a vTPM: migrate-in refused (409) before its QEMU starts (swtpm's
     * state does not travel in the stream); the host forgets it again */
    snprintf(path, sizeof(path), "/v1/vms/%s", uuid);
    json_decref(call(200, "PATCH", path, "{\"tpm\": true}"));
    json_t *e = call(409, "POST", "/v1/vms/migrate-in",
                     "{\"name\": \"mig1\", \"uuid\": \"%s\", \"spec\": {\"key\": \"%s\", "
                     "\"nonce\": \"0001020304050607\", \"listen\": \"127.0.0.1:0\"}}", uuid, key);
    assert_non_null(strstr(jstr(e, "error"), "vTPM"));
    json_decref(e);
    json_decref(call(200, "POST", "/v1/vms/adopt", "{\"name\": \"mig1\", \"uuid\": \"%s\"}", uuid));
    /* the VM is still listed, powered off */
    json_t *v = call(200, "GET", path, NULL);
    assert_string_equal(jstr(v, "power_state"), "off");
    json_decref(v);
    json_decref(call(204, "DELETE", path, NULL));   /* the later tests count the VMs */
}

static void test_encrypted_vm_marker(void **state)
{
    (void)state;
    json_t *vm = create_vm("enc1", "encrypted", K1.id, "bios", 1);
    char uuid[40], home[600];
    snprintf(uuid, sizeof(uuid), "%s", jstr(vm, "uuid"));
    snprintf(home, sizeof(home), "%s", jstr(vm, "home"));
    assert_true(json_is_true(json_object_get(vm, "encrypted")));
    assert_string_equal(jstr(vm, "kek_id"), K1.id);
    json_decref(vm);
    /* a second VM of the same name is refused; bad requests are 400 */
    json_decref(call(409, "POST", "/v1/vms", "{\"name\": \"enc1\"}"));
    json_decref(call(400, "POST", "/v1/vms", "{\"name\": \"x y\"}"));
    json_decref(call(409, "POST", "/v1/vms", "{\"name\": \"k\", \"policy\": \"encrypted\", \"kek_id\": \"nokek\"}"));
    json_decref(call(400, "POST", "/v1/vms", "{\"name\": \"d\", \"disks\": [{\"size_mb\": 0}]}"));

    /* vm.conf: key safes, no key */
    char conf[700];
    snprintf(conf, sizeof(conf), "%s/vm.conf", home);
    assert_int_equal(testutil_count_in_file(conf, "vm.keysafe = vmseal:keysafe:v1:vmseal:kek-1:"), 1);
    assert_int_equal(testutil_count_in_file(conf, "disk0.keysafe = vmseal:keysafe:v1:"), 1);
    assert_int_equal(testutil_count_in_file(conf, K1.b64), 0);
    char disk[700];
    snprintf(disk, sizeof(disk), "%s/disk0.luks", home);
    vmseal_disk_info info;
    assert_int_equal(vmseal_disk_probe(disk, &info), 0);
    assert_int_equal(testutil_count_in_file(conf, info.uuid), 1);

    boot_with(uuid, home, "vmseal.marker=ENCONEMARK", "VMSEAL-MARKER-WRITTEN vda");
    assert_int_equal(count_in_home(home, "MARKER:ENCONEMARK"), 0);
    assert_plain_via_qemu_img(home, "disk0.luks", 0, &K1, "VMSEAL-MARKER:ENCONEMARK:vda");
    boot_with(uuid, home, "vmseal.check=ENCONEMARK", "VMSEAL-CHECK-OK");

    /* the log says what happened, in clear text, without keys */
    char log[700];
    snprintf(log, sizeof(log), "%s/vm.log", home);
    assert_true(testutil_count_in_file(log, "powered on") >= 2);
    assert_int_equal(testutil_count_in_file(log, K1.b64), 0);
}

static void test_encrypt_decrypt_existing(void **state)
{
    (void)state;
    json_t *vm = create_vm("plain1", "none", NULL, "bios", 2);
    char uuid[40], home[600];
    snprintf(uuid, sizeof(uuid), "%s", jstr(vm, "uuid"));
    snprintf(home, sizeof(home), "%s", jstr(vm, "home"));
    assert_false(json_is_true(json_object_get(vm, "encrypted")));
    json_decref(vm);
    boot_with(uuid, home, "vmseal.marker=PLAINMARK", "VMSEAL-MARKER-WRITTEN vdb");
    assert_int_equal(count_in_home(home, "MARKER:PLAINMARK:vda"), 1);

    /* a task needs a KEK the host has; a second task waits its turn */
    char p[160];
    vm_path(p, sizeof(p), uuid, "/encrypt");
    json_decref(call(409, "POST", p, "{\"kek_id\": \"not-here\"}"));
    json_decref(call(400, "POST", p, "{}"));
    run_task_ok(uuid, "/encrypt", "{\"kek_id\": \"kek-1\"}");
    vm = get_vm(uuid);
    assert_true(json_is_true(json_object_get(vm, "encrypted")));
    assert_true(json_is_null(json_object_get(vm, "pending_operation")));
    json_decref(vm);
    char f[700];
    snprintf(f, sizeof(f), "%s/disk0.img", home);
    assert_int_not_equal(access(f, F_OK), 0);
    assert_int_equal(count_in_home(home, "MARKER:PLAINMARK"), 0);
    assert_plain_via_qemu_img(home, "disk1.luks", 1, &K1, "VMSEAL-MARKER:PLAINMARK:vdb");
    boot_with(uuid, home, "vmseal.check=PLAINMARK", "VMSEAL-CHECK-OK");
    /* encrypting twice is refused */
    json_t *t = call(202, "POST", p, "{\"kek_id\": \"kek-1\"}");
    char id[40];
    snprintf(id, sizeof(id), "%s", jstr(t, "task_id"));
    json_decref(t);
    t = wait_task(id, 30);
    assert_string_equal(jstr(t, "state"), "error");
    json_decref(t);

    run_task_ok(uuid, "/decrypt", "");
    assert_int_equal(count_in_home(home, "MARKER:PLAINMARK:vda"), 1);
    snprintf(f, sizeof(f), "%s/disk0.luks", home);
    assert_int_not_equal(access(f, F_OK), 0);
    boot_with(uuid, home, "vmseal.check=PLAINMARK", "VMSEAL-CHECK-OK");
    vm_path(p, sizeof(p), uuid, "");
    json_decref(call(204, "DELETE", p, NULL));
    assert_int_not_equal(access(home, F_OK), 0);
    json_decref(call(404, "GET", p, NULL));
}

/* ---------------------------------------------------- the console log */

/* Occurrences of needle in every file under dir (sockets skipped), by a
 * walk of our own; *files counts the files read. */
static long scan_tree(const char *dir, const char *needle, int *files)
{
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "find %s -type f", dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[1100];
    long total = 0;
    *files = 0;
    while (fgets(line, sizeof(line), p)) {
        line[strcspn(line, "\n")] = '\0';
        long n = testutil_count_in_file(line, needle);
        if (n < 0)
            fail_msg("cannot read %s", line);
        if (n > 0)
            fprintf(stderr, "found %s in %s\n", needle, line);
        total += n;
        (*files)++;
    }
    pclose(p);
    return total;
}

static json_t *get_log(int expect, const char *uuid, const char *query)
{
    char p[200];
    vm_path(p, sizeof(p), uuid, "/log");
    if (query)
        snprintf(p + strlen(p), sizeof(p) - strlen(p), "?%s", query);
    return call(expect, "GET", p, NULL);
}

static void seg_file(char *buf, size_t len, const char *home, int seq)
{
    snprintf(buf, len, "%s/serial-%08d.vmslog", home, seq);
}

/* Expect 422 "serial log damaged" naming `what`. */
static void expect_damaged(const char *uuid, const char *what)
{
    json_t *e = get_log(422, uuid, NULL);
    const char *msg = jstr(e, "error");
    if (!strstr(msg, "serial log damaged") || !strstr(msg, what))
        fail_msg("damage report \"%s\" does not say \"%s\"", msg, what);
    json_decref(e);
}

/* An encrypted VM's console never reaches the host's disk in clear: it is
 * sealed by hostd and read back through GET .../log; damage to the sealed
 * log is reported; symlinks are not followed; a hostd restart while the VM
 * runs loses nothing once the KEK is back. A VM without encryption keeps a
 * 0600 serial.log, which encrypting it seals and decrypting writes back. */
static void test_serial_log(void **state)
{
    (void)state;
    /* the guest prints "VMSEAL-DISK vda <sectors> sectors": a random disk
     * size makes it a marker found nowhere else (vm.conf has bytes) */
    unsigned char rnd;
    assert_int_equal(RAND_bytes(&rnd, 1), 1);
    unsigned mb = 5 + rnd % 40;
    char marker[64], boot_marker[] = "VMSEAL-GUEST-BOOT";
    snprintf(marker, sizeof(marker), "VMSEAL-DISK vda %u sectors", mb * 2048);
    json_t *vm = call(201, "POST", "/v1/vms",
                      "{\"name\": \"con1\", \"disks\": [{\"size_mb\": %u}], \"kernel\": \"%s\", "
                      "\"initrd\": \"%s\", \"append\": \"console=ttyS0 quiet\", "
                      "\"policy\": \"encrypted\", \"kek_id\": \"kek-1\"}", mb, kernel, initrd);
    char uuid[40], home[600], p[200], f[700], g[700];
    snprintf(uuid, sizeof(uuid), "%s", jstr(vm, "uuid"));
    snprintf(home, sizeof(home), "%s", jstr(vm, "home"));
    json_decref(vm);
    /* nothing logged yet: an empty log */
    json_t *j = get_log(200, uuid, NULL);
    assert_true(json_is_true(json_object_get(j, "encrypted")));
    assert_int_equal(json_integer_value(json_object_get(j, "bytes")), 0);
    json_decref(j);

    boot_with(uuid, home, "vmseal.marker=CONSOLEMARK", "VMSEAL-MARKER-WRITTEN vda");
    j = get_log(200, uuid, NULL);
    const char *text = jstr(j, "log");
    assert_non_null(strstr(text, marker));
    assert_non_null(strstr(text, boot_marker));
    assert_true(json_is_true(json_object_get(j, "encrypted")));
    json_int_t total = json_integer_value(json_object_get(j, "bytes"));
    assert_int_equal((size_t)total, json_string_length(json_object_get(j, "log")));
    json_decref(j);
    /* in no file of the VM home (= its run directory), not even in part */
    int files = 0;
    assert_int_equal(scan_tree(home, marker, &files), 0);
    assert_int_equal(scan_tree(home, boot_marker, &files), 0);
    assert_int_equal(scan_tree(home, "VMSEAL-MARKER-WRITTEN", &files), 0);
    assert_true(files >= 4);   /* vm.conf, vm.log, qemu.log, disk0.luks, a segment */
    snprintf(f, sizeof(f), "%s/serial.log", home);
    assert_int_not_equal(access(f, F_OK), 0);
    seg_file(f, sizeof(f), home, 1);
    struct stat st;
    assert_int_equal(lstat(f, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);

    /* tail: the last N bytes; bad values refused, big ones bounded */
    j = get_log(200, uuid, "tail=10");
    assert_int_equal(json_string_length(json_object_get(j, "log")), 10);
    assert_int_equal(json_integer_value(json_object_get(j, "bytes")), total);
    json_decref(j);
    json_decref(get_log(200, uuid, "tail=99999999999"));
    json_decref(get_log(400, uuid, "tail=ten"));
    json_decref(get_log(400, uuid, "tail=-1"));
    json_decref(get_log(400, uuid, "lines=3"));
    vm_path(p, sizeof(p), uuid, "/log");
    json_decref(call(405, "POST", p, NULL));

    /* while the VM runs, the console is sealed within about a second */
    uint64_t since = log_bytes(uuid);
    vm_path(p, sizeof(p), uuid, "");
    json_decref(call(200, "PATCH", p, "{\"append\": \"console=ttyS0 quiet vmseal.wait=1\"}"));
    vm_path(p, sizeof(p), uuid, "/power-on");
    json_decref(call(200, "POST", p, NULL));
    wait_log(uuid, since, "VMSEAL-READY", 90);
    assert_int_equal(scan_tree(home, "VMSEAL-READY", &files), 0);
    assert_int_equal(scan_tree(home, marker, &files), 0);

    /* hostd restarts while the VM runs: locked until the KEK is back, then
     * the console is sealed again (into a new segment) */
    hostd_host_close(host);
    host = NULL;
    open_host();
    json_t *e = get_log(409, uuid, NULL);
    assert_non_null(strstr(jstr(e, "error"), "VM locked: KEK kek-1 is not loaded"));
    json_decref(e);
    put_kek(&K1);
    hostd_host_tick(host);
    vm_path(p, sizeof(p), uuid, "/power-off");
    json_decref(call(200, "POST", p, "{\"grace_seconds\": 60}"));
    wait_log(uuid, since, "VMSEAL-POWER-BUTTON", 10);
    char *t = log_since(uuid, since);
    assert_true(strstr(t, "VMSEAL-READY") < strstr(t, "VMSEAL-POWER-BUTTON"));
    free(t);
    assert_int_equal(scan_tree(home, "VMSEAL-POWER-BUTTON", &files), 0);
    seg_file(f, sizeof(f), home, 3);
    assert_int_equal(access(f, F_OK), 0);   /* boot, wait boot, after the restart */

    /* the KEK leaves: the log is locked, with a clear message */
    json_decref(call(204, "DELETE", "/v1/keys/kek-1", NULL));
    e = get_log(409, uuid, "tail=100");
    assert_non_null(strstr(jstr(e, "error"), "VM locked: KEK kek-1 is not loaded on this host"));
    json_decref(e);
    put_kek(&K1);
    json_decref(get_log(200, uuid, NULL));

    /* damage: every kind is reported, nothing crashes */
    snprintf(g, sizeof(g), "%s/seg.keep", tmpdir);
    seg_file(f, sizeof(f), home, 2);
    assert_int_equal(testutil_run("cp -p %s %s", f, g), 0);
    assert_int_equal(stat(f, &st), 0);
    /* a byte of the first record changed (header 144 bytes, then the record) */
    assert_int_equal(testutil_run("printf 'X' | dd of=%s bs=1 seek=160 conv=notrunc status=none",
                                  f), 0);
    expect_damaged(uuid, "fails authentication");
    /* cut inside a record */
    assert_int_equal(testutil_run("cp -p %s %s", g, f), 0);
    assert_int_equal(truncate(f, st.st_size - 7), 0);
    expect_damaged(uuid, "truncated inside record");
    /* cut at a record boundary: the end record gone */
    assert_int_equal(truncate(f, st.st_size - 20), 0);
    expect_damaged(uuid, "has no end record");
    /* a segment removed */
    unlink(f);
    expect_damaged(uuid, "serial-00000002.vmslog is missing");
    /* the header changed */
    assert_int_equal(testutil_run("cp -p %s %s", g, f), 0);
    assert_int_equal(testutil_run("printf '\\377' | dd of=%s bs=1 seek=70 conv=notrunc status=none",
                                  f), 0);
    expect_damaged(uuid, "header");
    assert_int_equal(testutil_run("cp -p %s %s", g, f), 0);
    json_decref(get_log(200, uuid, NULL));

    /* offline, with the KEK: vmseal-crypto-util log and check */
    {
        char cu[700], kf[700], bad[700], outf[700];
        snprintf(cu, sizeof(cu), "%s/crypto-util/vmseal-crypto-util", getenv("VMSEAL_BUILD"));
        snprintf(kf, sizeof(kf), "%s/kek1.key", tmpdir);
        snprintf(bad, sizeof(bad), "%s/kek2.key", tmpdir);
        snprintf(outf, sizeof(outf), "%s/console.txt", tmpdir);
        int fd = open(kf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, K1.raw, 32), 32);
        close(fd);
        fd = open(bad, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, K2.raw, 32), 32);
        close(fd);
        total = (json_int_t)log_bytes(uuid);
        assert_int_equal(testutil_run("%s log --quiet --kek-file %s %s %s", cu, kf, home, outf), 0);
        assert_int_equal(stat(outf, &st), 0);
        assert_int_equal(st.st_size, total);
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_true(testutil_count_in_file(outf, marker) >= 1);
        unlink(outf);
        assert_int_equal(testutil_run("%s log --quiet --kek-file %s --tail 10 %s/vm.conf %s", cu,
                                      kf, home, outf), 0);
        assert_int_equal(stat(outf, &st), 0);
        assert_int_equal(st.st_size, 10);
        unlink(outf);
        assert_int_equal(testutil_run("%s log --quiet --kek-file %s %s %s 2>/dev/null", cu, bad,
                                      home, outf), 2);
        assert_int_not_equal(access(outf, F_OK), 0);
        assert_int_equal(testutil_run("%s check %s/serial-00000001.vmslog", cu, home), 0);
        seg_file(f, sizeof(f), home, 2);
        assert_int_equal(truncate(f, 150), 0);   /* cut inside its first record */
        assert_int_equal(testutil_run("%s log --quiet --kek-file %s %s %s", cu, kf, home, outf), 2);
        assert_int_not_equal(access(outf, F_OK), 0);
        assert_int_equal(testutil_run("cp -p %s %s", g, f), 0);
        assert_int_equal(testutil_run("%s log --quiet --kek-file %s %s >/dev/null", cu, kf, home), 0);
        unlink(kf);
        unlink(bad);
    }

    /* a symlink where the next segment goes: power-on refused, not followed */
    char target[700];
    snprintf(target, sizeof(target), "%s/symlink-target", tmpdir);
    seg_file(f, sizeof(f), home, 4);
    assert_int_equal(symlink(target, f), 0);
    vm_path(p, sizeof(p), uuid, "/power-on");
    e = call(409, "POST", p, NULL);
    assert_non_null(strstr(jstr(e, "error"), "symbolic link"));
    json_decref(e);
    expect_damaged(uuid, "symbolic link");
    assert_int_not_equal(access(target, F_OK), 0);
    unlink(f);
    json_decref(get_log(200, uuid, NULL));

    /* ---- without encryption: serial.log, 0600, no symlink followed */
    vm = call(201, "POST", "/v1/vms",
              "{\"name\": \"con2\", \"disks\": [{\"size_mb\": %u}], \"kernel\": \"%s\", "
              "\"initrd\": \"%s\", \"policy\": \"none\"}", mb, kernel, initrd);
    char uuid2[40], home2[600];
    snprintf(uuid2, sizeof(uuid2), "%s", jstr(vm, "uuid"));
    snprintf(home2, sizeof(home2), "%s", jstr(vm, "home"));
    json_decref(vm);
    boot_with(uuid2, home2, "vmseal.marker=PLAINCON", "VMSEAL-MARKER-WRITTEN vda");
    j = get_log(200, uuid2, NULL);
    assert_false(json_is_true(json_object_get(j, "encrypted")));
    assert_non_null(strstr(jstr(j, "log"), marker));
    json_int_t total2 = json_integer_value(json_object_get(j, "bytes"));
    json_decref(j);
    snprintf(f, sizeof(f), "%s/serial.log", home2);
    assert_int_equal(lstat(f, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_size, total2);
    assert_true(scan_tree(home2, marker, &files) >= 1);   /* the scan does find clear text */
    assert_int_equal(testutil_run("cp -p %s %s", f, g), 0);
    unlink(f);
    assert_int_equal(symlink(target, f), 0);
    vm_path(p, sizeof(p), uuid2, "/power-on");
    e = call(409, "POST", p, NULL);
    assert_non_null(strstr(jstr(e, "error"), "symbolic link"));
    json_decref(e);
    assert_int_not_equal(access(target, F_OK), 0);
    expect_damaged(uuid2, "symbolic link");
    unlink(f);
    assert_int_equal(testutil_run("cp -p %s %s", g, f), 0);

    /* encrypting seals serial.log; decrypting writes it back */
    run_task_ok(uuid2, "/encrypt", "{\"kek_id\": \"kek-1\"}");
    assert_int_not_equal(access(f, F_OK), 0);
    assert_int_equal(scan_tree(home2, marker, &files), 0);
    j = get_log(200, uuid2, NULL);
    assert_true(json_is_true(json_object_get(j, "encrypted")));
    assert_non_null(strstr(jstr(j, "log"), marker));
    assert_int_equal(json_integer_value(json_object_get(j, "bytes")), total2);
    json_decref(j);
    run_task_ok(uuid2, "/decrypt", "");
    assert_int_equal(lstat(f, &st), 0);
    assert_int_equal(st.st_size, total2);
    assert_int_equal(st.st_mode & 07777, 0600);
    seg_file(g, sizeof(g), home2, 1);
    assert_int_not_equal(access(g, F_OK), 0);
    j = get_log(200, uuid2, NULL);
    assert_false(json_is_true(json_object_get(j, "encrypted")));
    assert_non_null(strstr(jstr(j, "log"), marker));
    json_decref(j);

    /* the log never went to vm.log or hostd's messages */
    snprintf(f, sizeof(f), "%s/vm.log", home);
    assert_int_equal(testutil_count_in_file(f, marker), 0);
    vm_path(p, sizeof(p), uuid, "");
    json_decref(call(204, "DELETE", p, NULL));
    vm_path(p, sizeof(p), uuid2, "");
    json_decref(call(204, "DELETE", p, NULL));
}

static void test_recrypt(void **state)
{
    (void)state;
    put_kek(&K2);
    put_kek(&K3);
    json_t *vm = create_vm("rec1", "encrypted", K1.id, "bios", 1);
    char uuid[40], home[600], p[160];
    snprintf(uuid, sizeof(uuid), "%s", jstr(vm, "uuid"));
    snprintf(home, sizeof(home), "%s", jstr(vm, "home"));
    json_decref(vm);
    boot_with(uuid, home, "vmseal.marker=RECMARK", "VMSEAL-MARKER-WRITTEN vda");

    /* shallow recrypt while the VM runs */
    uint64_t since_on = log_bytes(uuid);
    vm_path(p, sizeof(p), uuid, "");
    json_decref(call(200, "PATCH", p, "{\"append\": \"console=ttyS0 quiet vmseal.wait=1\"}"));
    vm_path(p, sizeof(p), uuid, "/power-on");
    json_decref(call(200, "POST", p, NULL));
    json_decref(call(409, "POST", p, NULL));   /* already on */
    run_task_ok(uuid, "/recrypt", "{\"new_kek_id\": \"kek-2\", \"deep\": false}");
    vm = get_vm(uuid);
    assert_string_equal(jstr(vm, "kek_id"), "kek-2");
    assert_string_equal(jstr(vm, "power_state"), "on");
    json_decref(vm);
    char conf[700];
    snprintf(conf, sizeof(conf), "%s/vm.conf", home);
    assert_int_equal(testutil_count_in_file(conf, ":kek-1:"), 0);
    assert_int_equal(testutil_count_in_file(conf, ":kek-2:"), 2);
    /* deep recrypt needs the VM off */
    vm_path(p, sizeof(p), uuid, "/recrypt");
    json_t *t = call(202, "POST", p, "{\"new_kek_id\": \"kek-3\", \"deep\": true}");
    char id[40];
    snprintf(id, sizeof(id), "%s", jstr(t, "task_id"));
    json_decref(t);
    t = wait_task(id, 30);
    assert_string_equal(jstr(t, "state"), "error");
    json_decref(t);
    /* the guest is up and listens to the power button */
    wait_log(uuid, since_on, "VMSEAL-READY", 60);
    vm_path(p, sizeof(p), uuid, "/power-off");
    json_decref(call(200, "POST", p, "{\"grace_seconds\": 60}"));
    wait_log(uuid, since_on, "VMSEAL-POWER-BUTTON", 5);
    json_decref(call(409, "POST", p, NULL));   /* already off */

    /* the old KEK is no longer needed */
    json_decref(call(204, "DELETE", "/v1/keys/kek-1", NULL));
    char disk[700];
    snprintf(disk, sizeof(disk), "%s/disk0.luks", home);
    vmseal_disk_info before, after;
    assert_int_equal(vmseal_disk_probe(disk, &before), 0);
    run_task_ok(uuid, "/recrypt", "{\"new_kek_id\": \"kek-3\", \"deep\": true}");
    assert_int_equal(vmseal_disk_probe(disk, &after), 0);
    assert_string_equal(before.uuid, after.uuid);
    assert_memory_not_equal(before.mk_digest, after.mk_digest, 20);   /* new volume key */
    assert_int_equal(testutil_count_in_file(conf, ":kek-2:"), 0);
    assert_int_equal(testutil_count_in_file(conf, ":kek-3:"), 2);
    assert_plain_via_qemu_img(home, "disk0.luks", 0, &K3, "VMSEAL-MARKER:RECMARK:vda");
    boot_with(uuid, home, "vmseal.check=RECMARK", "VMSEAL-CHECK-OK");
}

static void test_uefi_nvram(void **state)
{
    (void)state;
    if (access("/usr/share/OVMF/OVMF_CODE_4M.fd", R_OK) != 0)
        fail_msg("ovmf is not installed");
    json_t *vm = create_vm("uefi1", "none", NULL, "uefi", 1);
    char uuid[40], home[600];
    snprintf(uuid, sizeof(uuid), "%s", jstr(vm, "uuid"));
    snprintf(home, sizeof(home), "%s", jstr(vm, "home"));
    json_decref(vm);
    char f[700];
    snprintf(f, sizeof(f), "%s/nvram.fd", home);
    assert_true(testutil_count_in_file(f, "_FVH") >= 1);
    run_task_ok(uuid, "/encrypt", "{\"kek_id\": \"kek-3\"}");
    snprintf(f, sizeof(f), "%s/nvram.luks", home);
    vmseal_disk_info info;
    assert_int_equal(vmseal_disk_probe(f, &info), 0);
    assert_int_equal(count_in_home(home, "_FVH"), 0);
    vm = get_vm(uuid);
    assert_true(json_is_true(json_object_get(json_object_get(vm, "nvram"), "encrypted")));
    json_decref(vm);
    boot_with(uuid, home, "vmseal.marker=UEFIVM", "VMSEAL-MARKER-WRITTEN vda");
    assert_int_equal(count_in_home(home, "MARKER:UEFIVM"), 0);
}

/* Restart: KEKs were in memory only, so encrypted VMs are locked until the
 * manager hands the keys over again. */
static void test_restart_locks(void **state)
{
    (void)state;
    hostd_host_close(host);
    host = NULL;
    /* Homes a datastore user made are not taken as VMs (vm.conf is checked
     * as a whole, nothing is followed): enc1's folder copied with a vm.conf
     * naming 9 disks, one whose vm.conf is a symlink to enc1's, one that is
     * a symlink to enc1's folder. None of them is touched. */
    assert_int_equal(testutil_run("cd %s && cp -a enc1 evil1 && sed -i 's/^disks = .*/disks = 9/' "
                                  "evil1/vm.conf && cp -a enc1 evil2 && rm evil2/vm.conf && "
                                  "ln -s ../enc1/vm.conf evil2/vm.conf && ln -s enc1 evil3 && "
                                  "sha256sum evil1/vm.conf enc1/vm.conf > %s/evil.sum",
                                  datastore, tmpdir), 0);
    open_host();
    json_t *list = call(200, "GET", "/v1/vms", NULL);
    json_t *vms = json_object_get(list, "vms");
    assert_int_equal(json_array_size(vms), 3);   /* enc1, rec1, uefi1 */
    assert_int_equal(testutil_run("cd %s && sha256sum -c --quiet %s/evil.sum && rm -rf evil1 evil2 "
                                  "evil3", datastore, tmpdir), 0);
    size_t i;
    json_t *v;
    char rec_uuid[40] = "";
    json_array_foreach(vms, i, v) {
        assert_true(json_is_true(json_object_get(v, "locked")));
        assert_non_null(strstr(jstr(v, "locked_reason"), "is not available on this host"));
        if (strcmp(jstr(v, "name"), "rec1") == 0)
            snprintf(rec_uuid, sizeof(rec_uuid), "%s", jstr(v, "uuid"));
    }
    json_decref(list);
    json_t *ids = hostd_host_kek_ids(host);
    assert_int_equal(json_array_size(ids), 2);   /* kek-1 (enc1), kek-3 */
    json_decref(ids);
    char p[160];
    vm_path(p, sizeof(p), rec_uuid, "/power-on");
    json_t *err = call(409, "POST", p, NULL);
    assert_non_null(strstr(jstr(err, "error"), "locked"));
    json_decref(err);
    /* a wrong key under kek-3's id: held, but it opens none of rec1's key
     * safes, so rec1 stays locked and says so */
    json_decref(put_sealed(200, &K2, "kek-3", "host-test", "vmseal"));
    json_t *vm = get_vm(rec_uuid);
    assert_true(json_is_true(json_object_get(vm, "locked")));
    assert_non_null(strstr(jstr(vm, "locked_reason"), "is on this host but does not open"));
    json_decref(vm);
    err = call(409, "POST", p, NULL);
    assert_non_null(strstr(jstr(err, "error"), "does not open"));
    json_decref(err);
    put_kek(&K3);
    vm = get_vm(rec_uuid);
    assert_false(json_is_true(json_object_get(vm, "locked")));
    char home[600];
    snprintf(home, sizeof(home), "%s", jstr(vm, "home"));
    json_decref(vm);
    boot_with(rec_uuid, home, "vmseal.check=RECMARK", "VMSEAL-CHECK-OK");
}

/* An encrypt interrupted (here: the host shuts down while it runs) is
 * recorded in vm.conf and finished after the restart once the KEK is back. */
static void test_interrupted_encrypt_resumes(void **state)
{
    (void)state;
    json_t *vm = call(201, "POST", "/v1/vms",
                      "{\"name\": \"big1\", \"disks\": [{\"size_mb\": 256}], \"kernel\": \"%s\", "
                      "\"initrd\": \"%s\", \"policy\": \"none\"}", kernel, initrd);
    char uuid[40], home[600], p[160];
    snprintf(uuid, sizeof(uuid), "%s", jstr(vm, "uuid"));
    snprintf(home, sizeof(home), "%s", jstr(vm, "home"));
    json_decref(vm);
    /* fill the disk with data so the conversion takes a while */
    assert_int_equal(testutil_run("dd if=/dev/urandom of=%s/disk0.img bs=1M count=256 conv=notrunc status=none", home), 0);
    assert_int_equal(testutil_run("printf 'VMSEAL-MARKER:BIGMARK:vda\\n' | dd of=%s/disk0.img bs=512 seek=2048 conv=notrunc status=none", home), 0);
    vm_path(p, sizeof(p), uuid, "/encrypt");
    json_t *t = call(202, "POST", p, "{\"kek_id\": \"kek-3\"}");
    json_decref(t);
    usleep(200000);
    hostd_host_close(host);   /* cancels the task; it stops at a checkpoint */
    host = NULL;
    char conf[700];
    snprintf(conf, sizeof(conf), "%s/vm.conf", home);
    assert_int_equal(testutil_count_in_file(conf, "op = encrypt"), 1);

    open_host();
    vm = get_vm(uuid);
    assert_string_equal(jstr(vm, "pending_operation"), "encrypt");
    assert_true(json_is_true(json_object_get(vm, "locked")));
    json_decref(vm);
    vm_path(p, sizeof(p), uuid, "/power-on");
    json_decref(call(409, "POST", p, NULL));
    json_t *r = put_sealed(200, &K3, "kek-3", "host-test", "vmseal");
    assert_int_equal(json_integer_value(json_object_get(r, "resumed_tasks")), 1);
    json_decref(r);
    for (int i = 0; i < 1200; i++) {
        vm = get_vm(uuid);
        int done = json_is_null(json_object_get(vm, "pending_operation")) &&
                   json_is_null(json_object_get(vm, "task"));
        json_decref(vm);
        if (done)
            break;
        usleep(100000);
    }
    vm = get_vm(uuid);
    assert_true(json_is_null(json_object_get(vm, "pending_operation")));
    assert_true(json_is_true(json_object_get(vm, "encrypted")));
    json_decref(vm);
    assert_int_equal(count_in_home(home, "MARKER:BIGMARK"), 0);
    assert_plain_via_qemu_img(home, "disk0.luks", 0, &K3, "VMSEAL-MARKER:BIGMARK:vda");
    vm_path(p, sizeof(p), uuid, "");
    json_decref(call(204, "DELETE", p, NULL));
}

/* Start a task on the VM, wait until it has converted something, cancel it:
 * the task ends with ECANCELED and vm.conf keeps the unfinished operation. */
static void start_and_cancel(const char *uuid, const char *action, const char *body, const char *op)
{
    char p[160], tp[128];
    vm_path(p, sizeof(p), uuid, action);
    json_t *t = call(202, "POST", p, "%s", body);
    snprintf(tp, sizeof(tp), "/v1/tasks/%s", jstr(t, "task_id"));
    json_decref(t);
    for (int i = 0; i < 3000; i++) {
        t = call(200, "GET", tp, NULL);
        int going = json_integer_value(json_object_get(t, "progress")) >= 1 ||
                    strcmp(jstr(t, "state"), "running") != 0;
        json_decref(t);
        if (going)
            break;
        usleep(2000);
    }
    vm_path(p, sizeof(p), uuid, "/cancel");
    json_decref(call(202, "POST", p, NULL));
    t = wait_task(strrchr(tp, '/') + 1, 120);
    assert_string_equal(jstr(t, "state"), "error");
    assert_int_equal(json_integer_value(json_object_get(t, "errno")), ECANCELED);
    json_decref(t);
    json_t *vm = get_vm(uuid);
    assert_string_equal(jstr(vm, "pending_operation"), op);
    assert_true(json_is_null(json_object_get(vm, "task")));
    assert_string_equal(jstr(json_object_get(vm, "last_task"), "state"), "error");
    json_decref(vm);
    /* nothing runs now: a cancel is a no-op */
    vm_path(p, sizeof(p), uuid, "/cancel");
    json_t *r = call(200, "POST", p, NULL);
    assert_true(json_is_null(json_object_get(r, "task")));
    json_decref(r);
}

/* Cancel stops an encrypt and a deep recrypt at a checkpoint; rollback puts
 * the VM back as it was (the image untouched, nothing the operation wrote
 * left, the key safes under the old KEK) and it boots; resume finishes a
 * cancelled encrypt. */
static void test_cancel_rollback_resume(void **state)
{
    (void)state;
    json_t *vm = call(201, "POST", "/v1/vms",
                      "{\"name\": \"can1\", \"disks\": [{\"size_mb\": 384}], \"kernel\": \"%s\", "
                      "\"initrd\": \"%s\", \"policy\": \"none\"}", kernel, initrd);
    char uuid[40], home[600], p[160];
    snprintf(uuid, sizeof(uuid), "%s", jstr(vm, "uuid"));
    snprintf(home, sizeof(home), "%s", jstr(vm, "home"));
    json_decref(vm);
    assert_int_equal(testutil_run("dd if=/dev/urandom of=%s/disk0.img bs=1M count=384 conv=notrunc status=none", home), 0);
    assert_int_equal(testutil_run("printf 'VMSEAL-MARKER:CANMARK:vda\\n' | dd of=%s/disk0.img bs=512 seek=2048 conv=notrunc status=none", home), 0);
    assert_int_equal(testutil_run("cd %s && sha256sum disk0.img > %s/can1.sum", home, tmpdir), 0);

    /* encrypt, cancelled, rolled back */
    start_and_cancel(uuid, "/encrypt", "{\"kek_id\": \"kek-3\"}", "encrypt");
    vm_path(p, sizeof(p), uuid, "/rollback");
    run_task_ok(uuid, "/rollback", "{}");
    vm = get_vm(uuid);
    assert_true(json_is_null(json_object_get(vm, "pending_operation")));
    assert_false(json_is_true(json_object_get(vm, "encrypted")));
    json_decref(vm);
    assert_int_equal(testutil_run("cd %s && sha256sum -c --quiet %s/can1.sum && ! ls disk0.luks* 2>/dev/null && "
                                  "! grep -q 'next\\|^op' vm.conf", home, tmpdir), 0);
    boot_with(uuid, home, "vmseal.check=CANMARK", "VMSEAL-CHECK-OK");
    /* a rollback with nothing unfinished does nothing */
    run_task_ok(uuid, "/rollback", "{}");

    /* encrypt, cancelled, resumed: finished, the old image gone */
    start_and_cancel(uuid, "/encrypt", "{\"kek_id\": \"kek-3\"}", "encrypt");
    run_task_ok(uuid, "/resume", "{}");
    vm = get_vm(uuid);
    assert_true(json_is_null(json_object_get(vm, "pending_operation")));
    assert_true(json_is_true(json_object_get(vm, "encrypted")));
    assert_string_equal(jstr(vm, "kek_id"), "kek-3");
    json_decref(vm);
    assert_int_equal(testutil_run("cd %s && test ! -e disk0.img && ! ls disk0.luks.* 2>/dev/null", home), 0);
    assert_plain_via_qemu_img(home, "disk0.luks", 0, &K3, "VMSEAL-MARKER:CANMARK:vda");

    /* deep recrypt to kek-1, cancelled, rolled back: still under kek-3 */
    put_kek(&K1);
    assert_int_equal(testutil_run("cd %s && grep keysafe vm.conf > %s/can1.ks", home, tmpdir), 0);
    start_and_cancel(uuid, "/recrypt", "{\"new_kek_id\": \"kek-1\", \"deep\": true}", "recrypt-deep");
    vm = get_vm(uuid);
    assert_string_equal(jstr(vm, "pending_kek"), "kek-1");
    json_decref(vm);
    run_task_ok(uuid, "/rollback", "{}");
    vm = get_vm(uuid);
    assert_true(json_is_null(json_object_get(vm, "pending_operation")));
    assert_true(json_is_null(json_object_get(vm, "pending_kek")));
    assert_string_equal(jstr(vm, "kek_id"), "kek-3");
    json_decref(vm);
    assert_int_equal(testutil_run("cd %s && grep keysafe vm.conf | cmp -s - %s/can1.ks && ! ls *.partial* "
                                  "2>/dev/null && ! grep -q rekeyed vm.conf", home, tmpdir), 0);
    assert_plain_via_qemu_img(home, "disk0.luks", 0, &K3, "VMSEAL-MARKER:CANMARK:vda");
    boot_with(uuid, home, "vmseal.check=CANMARK", "VMSEAL-CHECK-OK");
    vm_path(p, sizeof(p), uuid, "");
    json_decref(call(204, "DELETE", p, NULL));
}

/* Boot files come only from the images folder, by name (issue 9, 1). */
static void test_boot_files_from_images_only(void **state)
{
    (void)state;
    char secret[600], link[700];
    snprintf(secret, sizeof(secret), "%s/host-tls.key", tmpdir);
    assert_int_equal(testutil_run("echo HOST-PRIVATE-KEY > %s", secret), 0);
    /* a symlink in the images folder, and a folder symlinked there */
    snprintf(link, sizeof(link), "%s/.images/evil.img", datastore);
    assert_int_equal(symlink(secret, link), 0);
    snprintf(link, sizeof(link), "%s/.images/up", datastore);
    assert_int_equal(symlink(tmpdir, link), 0);
    const char *bad[] = {secret, guest_kernel, "../host-tls.key", "guest/../../host-tls.key",
                         "evil.img", "up/host-tls.key", "/guest/vmlinuz", "guest//vmlinuz",
                         "./guest/vmlinuz", "guest/nothere", "guest", "guest/vml$inuz"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *e = call(400, "POST", "/v1/vms",
                         "{\"name\": \"boot%zu\", \"cpus\": 1, \"memory_mb\": 256, \"disks\": [], "
                         "\"kernel\": \"%s\", \"initrd\": \"%s\", \"policy\": \"none\"}",
                         i, kernel, bad[i]);
        const char *msg = jstr(e, "error");
        if (!strstr(msg, "images folder"))
            fail_msg("initrd %s: %s", bad[i], msg);
        json_decref(e);
        e = call(400, "POST", "/v1/vms",
                 "{\"name\": \"bootk%zu\", \"cpus\": 1, \"memory_mb\": 256, \"disks\": [], "
                 "\"kernel\": \"%s\", \"policy\": \"none\"}", i, bad[i]);
        json_decref(e);
    }
    /* nothing was made for the refused VMs */
    char home[700];
    snprintf(home, sizeof(home), "%s/boot0", datastore);
    assert_int_not_equal(access(home, F_OK), 0);
    /* the same on PATCH */
    json_t *vm = create_vm("bootok", "none", NULL, "bios", 0);
    char uuid[40], p[160];
    snprintf(uuid, sizeof(uuid), "%s", jstr(vm, "uuid"));
    json_decref(vm);
    vm_path(p, sizeof(p), uuid, "");
    json_decref(call(400, "PATCH", p, "{\"initrd\": \"%s\"}", secret));
    json_decref(call(400, "PATCH", p, "{\"kernel\": \"evil.img\"}"));
    json_decref(call(400, "PATCH", p, "{\"initrd\": \"../host-tls.key\"}"));
    vm = call(200, "PATCH", p, "{\"initrd\": \"guest/initrd.gz\"}");
    json_decref(vm);
    json_decref(call(204, "DELETE", p, NULL));
    snprintf(link, sizeof(link), "%s/.images/evil.img", datastore);
    unlink(link);
    snprintf(link, sizeof(link), "%s/.images/up", datastore);
    unlink(link);
}

/* Symlinks in a VM home are not followed (issue 9, 3). */
static void test_vm_home_symlinks(void **state)
{
    (void)state;
    json_t *vm = create_vm("symvm", "none", NULL, "bios", 1);
    char uuid[40], home[600], f[700], outside[600], outlog[600], p[160];
    snprintf(uuid, sizeof(uuid), "%s", jstr(vm, "uuid"));
    snprintf(home, sizeof(home), "%s", jstr(vm, "home"));
    json_decref(vm);
    /* the disk replaced by a symlink to a file outside */
    snprintf(outside, sizeof(outside), "%s/outside.img", tmpdir);
    assert_int_equal(testutil_run("head -c 16777216 /dev/zero | tr '\\0' 'O' > %s && "
                                  "sha256sum < %s > %s.sum", outside, outside, outside), 0);
    snprintf(f, sizeof(f), "%s/disk0.img", home);
    assert_int_equal(unlink(f), 0);
    assert_int_equal(symlink(outside, f), 0);
    vm_path(p, sizeof(p), uuid, "/encrypt");
    json_t *t = call(202, "POST", p, "{\"kek_id\": \"kek-1\"}");
    char id[40];
    snprintf(id, sizeof(id), "%s", jstr(t, "task_id"));
    json_decref(t);
    t = wait_task(id, 60);
    assert_string_equal(jstr(t, "state"), "error");
    json_decref(t);
    assert_int_equal(testutil_run("sha256sum < %s | cmp -s - %s.sum", outside, outside), 0);
    snprintf(f, sizeof(f), "%s/disk0.luks", home);
    assert_int_not_equal(access(f, F_OK), 0);
    /* power-on refuses it too */
    vm_path(p, sizeof(p), uuid, "/power-on");
    json_t *e = call(409, "POST", p, NULL);
    json_decref(e);
    assert_int_equal(testutil_run("sha256sum < %s | cmp -s - %s.sum", outside, outside), 0);

    /* vm.log replaced by a symlink: hostd's next line does not go through it */
    snprintf(outlog, sizeof(outlog), "%s/outside.log", tmpdir);
    assert_int_equal(testutil_run("echo ORIGINAL > %s", outlog), 0);
    snprintf(f, sizeof(f), "%s/vm.log", home);
    assert_int_equal(unlink(f), 0);
    assert_int_equal(symlink(outlog, f), 0);
    vm_path(p, sizeof(p), uuid, "");
    json_decref(call(200, "PATCH", p, "{\"cpus\": 2}"));
    assert_int_equal(testutil_run("test \"$(cat %s)\" = ORIGINAL", outlog), 0);
    struct stat st;
    assert_int_equal(lstat(f, &st), 0);
    assert_true(S_ISLNK(st.st_mode));

    /* The home renamed and its name made a symlink to a decoy folder:
     * hostd keeps working in the VM's own folder (its descriptor), writes
     * nothing into the decoy, and deletes nothing there. */
    char moved[640], decoy[600];
    snprintf(moved, sizeof(moved), "%s.moved", home);
    snprintf(decoy, sizeof(decoy), "%s/decoy", tmpdir);
    assert_int_equal(testutil_run("mkdir %s && echo DECOY > %s/keep && mv %s %s && ln -s %s %s",
                                  decoy, decoy, home, moved, decoy, home), 0);
    json_decref(call(200, "PATCH", p, "{\"cpus\": 3}"));
    snprintf(f, sizeof(f), "%s/vm.conf", moved);
    assert_int_equal(testutil_count_in_file(f, "cpus = 3"), 1);
    assert_int_equal(testutil_run("test \"$(ls %s)\" = keep", decoy), 0);
    e = call(409, "DELETE", p, NULL);
    assert_non_null(strstr(jstr(e, "error"), "no longer the VM's folder"));
    json_decref(e);
    assert_int_equal(testutil_run("test \"$(cat %s/keep)\" = DECOY && test -f %s/vm.conf", decoy,
                                  moved), 0);
    assert_int_equal(testutil_run("rm %s && mv %s %s", home, moved, home), 0);
    json_decref(call(204, "DELETE", p, NULL));
    assert_int_equal(testutil_run("test \"$(cat %s)\" = ORIGINAL", outlog), 0);
    assert_int_equal(testutil_run("sha256sum < %s | cmp -s - %s.sum", outside, outside), 0);
}

static int setup(void **state)
{
    (void)state;
    if (testutil_guest(kernel, sizeof(kernel), initrd, sizeof(initrd)) < 0)
        return -1;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/vmseal-host-test.XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(datastore, sizeof(datastore), "%s/ds", tmpdir);
    if (mkdir(datastore, 0700) != 0)
        return -1;
    make_kek(&K1, "kek-1");
    make_kek(&K2, "kek-2");
    make_kek(&K3, "kek-3");
    hostd_host_config cfg = {.datastore = datastore, .accel = VMSEAL_ACCEL_TCG,
                              .allowed_subject = "CN=manager", .name = "host-test"};
    if (hostd_host_open(&cfg, &host) != 0)
        return -1;
    /* the host made its images folder (DATASTORE/.images): the guest goes
     * there, and VMs name its files */
    snprintf(guest_kernel, sizeof(guest_kernel), "%s", kernel);
    if (testutil_run("mkdir -p %s/.images/guest && cp %s %s/.images/guest/vmlinuz && "
                     "cp %s %s/.images/guest/initrd.gz", datastore, kernel, datastore, initrd,
                     datastore) != 0)
        return -1;
    snprintf(kernel, sizeof(kernel), "guest/vmlinuz");
    snprintf(initrd, sizeof(initrd), "guest/initrd.gz");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    hostd_host_close(host);
    /* any QEMU a failed test left behind runs from the datastore */
    testutil_run("for f in %s/*/qemu.pid %s/*/run-*/qemu.pid; do [ -f \"$f\" ] && kill -9 $(cat \"$f\") 2>/dev/null; done; true",
        datastore, datastore);
    testutil_rmtree(tmpdir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_api),
        cmocka_unit_test(test_boot_files_from_images_only),
        cmocka_unit_test(test_vm_home_symlinks),
        cmocka_unit_test(test_migrate_api_refusals),
        cmocka_unit_test(test_encrypted_vm_marker),
        cmocka_unit_test(test_encrypt_decrypt_existing),
        cmocka_unit_test(test_serial_log),
        cmocka_unit_test(test_recrypt),
        cmocka_unit_test(test_uefi_nvram),
        cmocka_unit_test(test_restart_locks),
        cmocka_unit_test(test_interrupted_encrypt_resumes),
        cmocka_unit_test(test_cancel_rollback_resume),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
