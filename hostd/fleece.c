/* vmseal-hostd — point-in-time view of a running VM's disk (fleece.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <openssl/crypto.h>

#include <vmseal/disk.h>
#include <vmseal/log.h>
#include <vmseal/secret.h>

#include "fleece.h"
#include "strutil.h"

#define QMP_MS 15000
#define JOB_MS 120000
#define PASS_RAW 32
#define FDSET_FLEECE0 900   /* QEMU's fdsets 9.. are the VM's own images */

struct hostd_fleece {
    int home_fd;
    size_t idx;
    char file[48], sock_name[48];
    char *sock_path;
    char sec[48], luks_node[48], node[48], job[48], mk_job[48], exp_id[48], exp_name[16];
    char lsn_name[48];
    int fdset;
    int have_file, have_fdset, have_sec, have_luks, have_node, have_job, have_server, have_export;
};

int hostd_fleece_connect(const hostd_fleece *f)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->sock_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return vmseal_fail(errno, "fleece: socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int e = errno;
        close(fd);
        return vmseal_fail(e, "fleece: cannot reach QEMU's export: %s", strerror(e));
    }
    return fd;
}

/* The NBD server's listening socket, bound in the VM home (only hostd
 * reaches it there: QEMU runs as qemu_user and gets the descriptor). */
static int listen_socket(hostd_fleece *f, hostd_qmp *q)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->sock_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return vmseal_fail(errno, "fleece: socket: %s", strerror(errno));
    int r = 0;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 1) != 0)
        r = vmseal_fail(errno, "fleece: cannot listen on %s: %s", f->sock_path, strerror(errno));
    if (r == 0)
        r = hostd_qmp_getfd(q, f->lsn_name, fd, QMP_MS);
    close(fd);
    return r;
}

const char *hostd_fleece_export_name(const hostd_fleece *f)
{
    return f->exp_name;
}

/* Wait until job `id` has concluded, dismiss it; its error, if any, fails. */
static int wait_job(hostd_qmp *q, const char *id)
{
    int64_t end = hostd_now_ms() + JOB_MS;
    for (;;) {
        json_t *ret = NULL;
        int r = hostd_qmp_execute(q, "query-jobs", NULL, QMP_MS, &ret);
        if (r < 0)
            return r;
        const char *status = NULL, *err = NULL;
        size_t i;
        json_t *j;
        json_array_foreach(ret, i, j) {
            const char *jid = json_string_value(json_object_get(j, "id"));
            if (jid && !strcmp(jid, id)) {
                status = json_string_value(json_object_get(j, "status"));
                err = json_string_value(json_object_get(j, "error"));
            }
        }
        int concluded = status && !strcmp(status, "concluded");
        char msg[256];
        snprintf(msg, sizeof(msg), "%s", err ? err : "");
        json_decref(ret);
        if (!status)
            return vmseal_fail(EIO, "QEMU job %s vanished", id);
        if (concluded) {
            r = hostd_qmp_execute(q, "job-dismiss", json_pack("{s:s}", "id", id), QMP_MS, NULL);
            if (msg[0])
                return vmseal_fail(EIO, "QEMU job %s failed: %s", id, msg);
            return r;
        }
        if (hostd_now_ms() >= end)
            return vmseal_fail(ETIMEDOUT, "QEMU job %s did not end in %d s", id, JOB_MS / 1000);
        hostd_sleep_ms(100);
    }
}

/* A one-time passphrase: 32 random bytes as 64 hex digits. */
static int one_time_pass(vmseal_secret **out)
{
    vmseal_secret *raw = NULL;
    int r = vmseal_secret_random(PASS_RAW, &raw);
    if (r < 0)
        return r;
    vmseal_secret *s = vmseal_secret_new(2 * PASS_RAW);
    if (!s) {
        vmseal_secret_free(raw);
        return -ENOMEM;
    }
    static const char hex[] = "0123456789abcdef";
    const unsigned char *b = vmseal_secret_cdata(raw);
    unsigned char *d = vmseal_secret_data(s);
    for (size_t i = 0; i < PASS_RAW; i++) {
        d[2 * i] = (unsigned char)hex[b[i] >> 4];
        d[2 * i + 1] = (unsigned char)hex[b[i] & 15];
    }
    vmseal_secret_free(raw);
    *out = s;
    return 0;
}

/* Undo in QEMU what the flags say was done; quiet: leftovers of a hostd
 * that stopped during an export (what is not there fails, unlogged). */
static void undo(hostd_fleece *f, hostd_qmp *q, int quiet)
{
    int lvl = quiet ? VMSEAL_LOG_DEBUG : VMSEAL_LOG_WARNING;
    if (f->have_export &&
        hostd_qmp_execute(q, "block-export-del", json_pack("{s:s, s:s}", "id", f->exp_id,
                                                           "mode", "hard"), QMP_MS, NULL) < 0)
        vmseal_log(lvl, "fleece: block-export-del: %s", vmseal_last_error());
    if (f->have_server && hostd_qmp_execute(q, "nbd-server-stop", NULL, QMP_MS, NULL) < 0)
        vmseal_log(lvl, "fleece: nbd-server-stop: %s", vmseal_last_error());
    if (f->have_job) {
        if (hostd_qmp_execute(q, "block-job-cancel", json_pack("{s:s, s:b}", "device", f->job,
                                                               "force", 1), QMP_MS, NULL) < 0)
            vmseal_log(lvl, "fleece: block-job-cancel: %s", vmseal_last_error());
        /* the job is gone before its target node can go */
        int64_t end = hostd_now_ms() + JOB_MS;
        while (hostd_now_ms() < end) {
            json_t *ret = NULL;
            if (hostd_qmp_execute(q, "query-block-jobs", NULL, QMP_MS, &ret) < 0)
                break;
            int found = 0;
            size_t i;
            json_t *j;
            json_array_foreach(ret, i, j) {
                const char *d = json_string_value(json_object_get(j, "device"));
                found |= d && !strcmp(d, f->job);
            }
            json_decref(ret);
            if (!found)
                break;
            hostd_sleep_ms(100);
        }
    }
    if (f->have_node && hostd_qmp_execute(q, "blockdev-del", json_pack("{s:s}", "node-name",
                                                                   f->node), QMP_MS, NULL) < 0)
        vmseal_log(lvl, "fleece: blockdev-del %s: %s", f->node, vmseal_last_error());
    if (f->have_luks &&
        hostd_qmp_execute(q, "blockdev-del", json_pack("{s:s}", "node-name", f->luks_node),
                          QMP_MS, NULL) < 0)
        vmseal_log(lvl, "fleece: blockdev-del %s: %s", f->luks_node,
                   vmseal_last_error());
    if (f->have_fdset &&
        hostd_qmp_execute(q, "remove-fd", json_pack("{s:i}", "fdset-id", f->fdset), QMP_MS,
                          NULL) < 0)
        vmseal_log(lvl, "fleece: remove-fd: %s", vmseal_last_error());
    if (f->have_sec &&
        hostd_qmp_execute(q, "object-del", json_pack("{s:s}", "id", f->sec), QMP_MS, NULL) < 0)
        vmseal_log(lvl, "fleece: object-del: %s", vmseal_last_error());
}

void hostd_fleece_stop(hostd_fleece *f, hostd_qmp *q)
{
    if (!f)
        return;
    if (q)
        undo(f, q, 0);
    /* the old blocks in it are ciphertext under a key nobody has now */
    if (f->have_file)
        unlinkat(f->home_fd, f->file, 0);
    unlinkat(f->home_fd, f->sock_name, 0);
    free(f->sock_path);
    free(f);
}

int hostd_fleece_start(hostd_qmp *q, int home_fd, const char *home, size_t idx, uint64_t size,
                       hostd_fleece **out)
{
    *out = NULL;
    hostd_fleece *f = calloc(1, sizeof(*f));
    if (!f)
        return vmseal_fail(ENOMEM, "out of memory");
    f->home_fd = home_fd;
    f->idx = idx;
    snprintf(f->file, sizeof(f->file), "fleece%zu.luks", idx);
    snprintf(f->sock_name, sizeof(f->sock_name), "fleece%zu.sock", idx);
    snprintf(f->sec, sizeof(f->sec), "vmseal-fleece-sec%zu", idx);
    snprintf(f->luks_node, sizeof(f->luks_node), "vmseal-fleece-luks%zu", idx);
    snprintf(f->node, sizeof(f->node), "vmseal-fleece%zu", idx);
    snprintf(f->job, sizeof(f->job), "vmseal-fleece-job%zu", idx);
    snprintf(f->mk_job, sizeof(f->mk_job), "vmseal-fleece-mk%zu", idx);
    snprintf(f->exp_id, sizeof(f->exp_id), "vmseal-fleece-exp%zu", idx);
    snprintf(f->exp_name, sizeof(f->exp_name), "disk%zu", idx);
    snprintf(f->lsn_name, sizeof(f->lsn_name), "vmseal-fleece-lsn%zu", idx);
    f->fdset = FDSET_FLEECE0 + (int)idx;
    f->sock_path = hostd_asprintf("%s/%s", home, f->sock_name);
    char path[32];
    snprintf(path, sizeof(path), "/dev/fdset/%d", f->fdset);
    char disk_node[32];
    snprintf(disk_node, sizeof(disk_node), "vmseal-disk%zu", idx);
    int r = f->sock_path ? 0 : vmseal_fail(ENOMEM, "out of memory");
    if (r == 0 && strlen(f->sock_path) >= 108)
        r = vmseal_fail(ENAMETOOLONG, "fleece: socket path too long: %s", f->sock_path);
    /* leftovers of a hostd that stopped during an export: QEMU keeps what
     * it was given (nodes, job, NBD server) until told otherwise */
    f->have_export = f->have_server = f->have_job = f->have_node = f->have_luks = 1;
    f->have_fdset = f->have_sec = 1;
    undo(f, q, 1);
    if (hostd_qmp_execute(q, "job-dismiss", json_pack("{s:s}", "id", f->mk_job), QMP_MS, NULL) < 0)
        vmseal_log(VMSEAL_LOG_DEBUG, "fleece: no job to dismiss: %s", vmseal_last_error());
    f->have_export = f->have_server = f->have_job = f->have_node = f->have_luks = 0;
    f->have_fdset = f->have_sec = 0;
    unlinkat(home_fd, f->file, 0);
    unlinkat(home_fd, f->sock_name, 0);
    vmseal_secret *pass = NULL;
    if (r == 0)
        r = one_time_pass(&pass);
    /* room for the qcow2: the data, its L2 tables and refcounts, and slack */
    uint64_t payload = (size + size / 64 + (16u << 20)) & ~(uint64_t)511;
    if (r == 0) {
        r = vmseal_disk_create_at(home_fd, f->file, payload, pass, NULL);
        f->have_file = r == 0;
    }
    if (r == 0) {   /* QEMU (qemu_user) cannot open it in the home: it gets the descriptor */
        int fd = openat(home_fd, f->file, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
            r = vmseal_fail(errno, "fleece: %s: %s", f->file, strerror(errno));
        else {
            r = hostd_qmp_add_fd(q, f->fdset, fd, QMP_MS, NULL);
            f->have_fdset = r == 0;
            close(fd);
        }
    }
    if (r == 0) {
        r = hostd_qmp_add_secret(q, f->sec, pass, QMP_MS);
        f->have_sec = r == 0;
    }
    vmseal_secret_free(pass);
    if (r == 0) {
        r = hostd_qmp_execute(q, "blockdev-add",
                              json_pack("{s:s, s:s, s:s, s:{s:s, s:s}}", "driver", "luks",
                                        "node-name", f->luks_node, "key-secret", f->sec, "file",
                                        "driver", "file", "filename", path),
                              QMP_MS, NULL);
        f->have_luks = r == 0;
    }
    if (r == 0) {   /* the LUKS node has its key: the secret object goes */
        if (hostd_qmp_execute(q, "object-del", json_pack("{s:s}", "id", f->sec), QMP_MS, NULL) == 0)
            f->have_sec = 0;
        r = hostd_qmp_execute(q, "blockdev-create",
                              json_pack("{s:s, s:{s:s, s:s, s:I}}", "job-id", f->mk_job, "options",
                                        "driver", "qcow2", "file", f->luks_node, "size",
                                        (json_int_t)size),
                              QMP_MS, NULL);
        if (r == 0)
            r = wait_job(q, f->mk_job);
    }
    if (r == 0) {
        r = hostd_qmp_execute(q, "blockdev-add",
                              json_pack("{s:s, s:s, s:s, s:s}", "driver", "qcow2", "node-name",
                                        f->node, "file", f->luks_node, "backing", disk_node),
                              QMP_MS, NULL);
        f->have_node = r == 0;
    }
    if (r == 0) {
        r = hostd_qmp_execute(q, "blockdev-backup",
                              json_pack("{s:s, s:s, s:s, s:s, s:b}", "job-id", f->job, "device",
                                        disk_node, "target", f->node, "sync", "none",
                                        "auto-dismiss", 1),
                              QMP_MS, NULL);
        f->have_job = r == 0;
    }
    if (r == 0)
        r = listen_socket(f, q);
    if (r == 0) {
        r = hostd_qmp_execute(q, "nbd-server-start",
                              json_pack("{s:{s:s, s:{s:s}}, s:i}", "addr", "type", "fd", "data",
                                        "str", f->lsn_name, "max-connections", 1),
                              QMP_MS, NULL);
        f->have_server = r == 0;
    }
    if (r == 0) {
        r = hostd_qmp_execute(q, "block-export-add",
                              json_pack("{s:s, s:s, s:s, s:s, s:b}", "type", "nbd", "id",
                                        f->exp_id, "node-name", f->node, "name", f->exp_name,
                                        "writable", 0),
                              QMP_MS, NULL);
        f->have_export = r == 0;
    }
    if (r < 0) {
        char why[512];
        snprintf(why, sizeof(why), "%s", vmseal_last_error());
        hostd_fleece_stop(f, q);
        return vmseal_fail(r, "disk %zu: no point-in-time view: %s", idx, why);
    }
    *out = f;
    return 0;
}
