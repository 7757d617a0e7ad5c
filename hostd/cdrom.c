/* vmseal-hostd — the CD-ROM drive and the boot order (hostd/cdrom.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vmseal/http_status.h>
#include <vmseal/log.h>

#include "cdrom.h"
#include "qmp.h"
#include "strutil.h"

int hostd_boot_index(const char *order, const char *dev)
{
    if (!order || !*order)
        return -1;
    int idx = 1;   /* 0: QEMU's own direct kernel boot (-kernel), when there is one */
    size_t dl = strlen(dev);
    for (const char *p = order;; idx++) {
        size_t len = strcspn(p, ",");
        if (len == dl && strncmp(p, dev, len) == 0)
            return idx;
        if (!p[len])
            return -1;
        p += len + 1;
    }
}

int hostd_cdrom_wanted(const vmseal_vmrec *rec)
{
    return rec->cdrom[0] || hostd_boot_index(rec->boot, "cdrom") >= 0;
}

/* The ISO into a new fdset of QEMU (add-fd): /dev/fdset/N in *path. */
static int iso_fdset(struct hostd_qmp *q, int iso_fd, char *path, size_t len, int timeout_ms)
{
    json_t *ret = NULL;
    int r = hostd_qmp_add_fd(q, -1, iso_fd, timeout_ms, &ret);
    if (r < 0)
        return r;
    json_int_t id = json_integer_value(json_object_get(ret, "fdset-id"));
    json_decref(ret);
    if (id < 0 || id > 1000000)
        return vmseal_fail(EPROTO, "QMP add-fd: no fdset-id");
    snprintf(path, len, "/dev/fdset/%lld", (long long)id);
    return 0;
}

int hostd_cdrom_attach(struct hostd_qmp *q, int iso_fd, const char *bus, int bootindex,
                       int timeout_ms)
{
    json_t *ctl = json_pack("{s:s, s:s, s:s}", "driver", "virtio-scsi-pci", "id", "vmseal-scsi0",
                            "addr", "0x7");
    if (ctl && bus)
        json_object_set_new(ctl, "bus", json_string(bus));
    int r = hostd_qmp_execute(q, "device_add", ctl, timeout_ms, NULL);
    if (r < 0)
        return vmseal_fail(-r, "CD-ROM controller: %s", vmseal_last_error());
    json_t *cd = json_pack("{s:s, s:s, s:s}", "driver", "scsi-cd", "id", HOSTD_CDROM_DEV, "bus",
                           "vmseal-scsi0.0");
    if (cd && bootindex >= 0)
        json_object_set_new(cd, "bootindex", json_integer(bootindex));
    if (cd && iso_fd > 0) {
        char path[48];
        r = iso_fdset(q, iso_fd, path, sizeof(path), timeout_ms);
        if (r == 0)
            r = hostd_qmp_execute(q, "blockdev-add",
                                  json_pack("{s:s, s:s, s:b, s:{s:s, s:s, s:b}}", "driver", "raw",
                                            "node-name", "vmseal-cd", "read-only", 1, "file",
                                            "driver", "file", "filename", path, "read-only", 1),
                                  timeout_ms, NULL);
        if (r < 0) {
            json_decref(cd);
            return vmseal_fail(-r, "CD-ROM medium: %s", vmseal_last_error());
        }
        json_object_set_new(cd, "drive", json_string("vmseal-cd"));
    }
    r = hostd_qmp_execute(q, "device_add", cd, timeout_ms, NULL);
    if (r < 0)
        return vmseal_fail(-r, "CD-ROM drive: %s", vmseal_last_error());
    return 0;
}

/* ---------------------------------------------------------------- API */

typedef struct cd_edit {
    const hostd_host_env *env;
    const char *iso;        /* NULL: eject */
} cd_edit;

static int cd_fn(vmseal_vmrec *next, void *ctx)
{
    cd_edit *e = ctx;
    hostd_copy_str(next->cdrom, sizeof(next->cdrom), e->iso ? e->iso : "");
    return 0;
}

static int cd_live(struct hostd_qmp *q, const vmseal_vmrec *next, void *ctx)
{
    cd_edit *e = ctx;
    (void)next;
    int t = 15000;
    /* no drive: QEMU says the device is not found */
    json_t *blk = NULL;
    int r = hostd_qmp_execute(q, "query-block", NULL, t, &blk);
    int have = 0;
    size_t i;
    json_t *b;
    json_array_foreach(blk, i, b) {
        const char *qdev = json_string_value(json_object_get(b, "qdev"));
        if (qdev && (strcmp(qdev, HOSTD_CDROM_DEV) == 0 || strstr(qdev, "/" HOSTD_CDROM_DEV "/")))
            have = 1;
    }
    json_decref(blk);
    if (r < 0)
        return r;
    if (!have)
        return vmseal_fail(EBUSY, "the running VM has no CD-ROM drive (it was powered on without "
                           "one): power it off to insert a disc");
    if (!e->iso)
        return hostd_qmp_execute(q, "eject", json_pack("{s:s, s:b}", "id", HOSTD_CDROM_DEV, "force", 1),
                                 t, NULL);
    int fd = hostd_vm_open_boot_file(e->env, "ISO", e->iso);
    if (fd < 0)
        return fd;
    char path[48];
    r = iso_fdset(q, fd, path, sizeof(path), t);
    close(fd);
    if (r == 0)
        r = hostd_qmp_execute(q, "blockdev-change-medium",
                              json_pack("{s:s, s:s, s:s, s:s, s:b}", "id", HOSTD_CDROM_DEV, "filename",
                                        path, "format", "raw", "read-only-mode", "read-only", "force",
                                        1),
                              t, NULL);
    return r;
}

static void fail_reply(int *status, json_t **resp, int r)
{
    *status = vmseal_http_status_for(r);
    *resp = json_pack("{s:s}", "error", vmseal_last_error()[0] ? vmseal_last_error() : strerror(-r));
}

void hostd_cdrom_api(const hostd_host_env *env, hostd_vm *vm, const char *body, size_t len,
                     int *status, json_t **resp)
{
    json_error_t je;
    json_t *j = len <= HOSTD_CDROM_BODY_MAX ? json_loadb(body ? body : "", len, 0, &je) : NULL;
    int r = 0;
    cd_edit e = {.env = env};
    if (!json_is_object(j))
        r = vmseal_fail(EINVAL, "the body must be {\"iso\": NAME} or {\"eject\": true}");
    const char *key;
    json_t *v;
    if (r == 0)
        json_object_foreach(j, key, v)
            if (strcmp(key, "iso") && strcmp(key, "eject"))
                r = vmseal_fail(EINVAL, "unknown field '%.64s' (iso, eject)", key);
    json_t *iso = json_object_get(j, "iso");
    int eject = json_is_true(json_object_get(j, "eject"));
    if (r == 0 && (!iso == !eject || (iso && !json_is_string(iso))))
        r = vmseal_fail(EINVAL, "give iso (a name in the host's images folder) or eject: true");
    e.iso = json_string_value(iso);
    if (r == 0 && e.iso) {
        /* opened now: a name that does not open (outside the folder, a
         * symlink, not a file) is refused before anything changes */
        int fd = hostd_vm_open_boot_file(env, "ISO", e.iso);
        if (fd < 0)
            r = fd;
        else
            close(fd);
        if (r == 0 && strlen(e.iso) > VMSEAL_VMREC_FROM_MAX)
            r = vmseal_fail(EINVAL, "ISO name too long");
    }
    if (r == 0)
        r = hostd_vm_edit_live(vm, e.iso ? "CD-ROM inserted" : "CD-ROM ejected", cd_fn, cd_live, &e);
    json_decref(j);
    if (r < 0) {
        fail_reply(status, resp, r);
        return;
    }
    hostd_vm_log(vm, "CD-ROM: %s%s", e.iso ? "inserted " : "ejected", e.iso ? e.iso : "");
    *status = 200;
    *resp = json_pack("{s:s?}", "cdrom", e.iso);
}

typedef struct boot_edit {
    const char *order;
} boot_edit;

static int boot_fn(vmseal_vmrec *next, void *ctx)
{
    boot_edit *b = ctx;
    hostd_copy_str(next->boot, sizeof(next->boot), b->order);
    return 0;
}

void hostd_boot_api(hostd_vm *vm, const char *body, size_t len, int *status, json_t **resp)
{
    json_error_t je;
    json_t *j = len <= HOSTD_CDROM_BODY_MAX ? json_loadb(body ? body : "", len, 0, &je) : NULL;
    const char *order = json_string_value(json_object_get(j, "order"));
    int r = 0;
    if (!json_is_object(j) || json_object_size(j) != 1 || !order)
        r = vmseal_fail(EINVAL, "the body must be {\"order\": \"disk,cdrom,net\"} (\"\": the default)");
    else if (*order && !vmseal_vmrec_boot_order_valid(order))
        r = vmseal_fail(EINVAL, "boot order: disk, cdrom and net, comma-separated, each at most once");
    boot_edit b = {.order = order};
    if (r == 0)
        r = hostd_vm_edit(vm, "boot order", boot_fn, &b);
    if (r < 0) {
        json_decref(j);
        fail_reply(status, resp, r);
        return;
    }
    hostd_vm_log(vm, "boot order: %s", *order ? order : "(default)");
    *status = 200;
    *resp = json_pack("{s:s}", "boot", order);
    json_decref(j);
}
