/* VM home folders of vmseal-hostd: the key safes of a VM's disks and NVRAM
 * live in its vm.conf (include/vmseal/vmconf.h), not in <image>.vmdesc.
 *   diskN.file, diskN.luks.uuid, diskN.keysafe   bound to "disk:<LUKS UUID>"
 *   nvram.file, vm.keysafe                       bound to "vm:<VM uuid>"
 * (names and bindings as hostd/vm.c writes them). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <vmseal/keysafe.h>
#include <vmseal/vmconf.h>

#include "cu.h"

void cu_vmdisk_clear(cu_vmdisk *d)
{
    free(d->image);
    free(d->conf_path);
    vmseal_vmconf_free(d->conf);
    memset(d, 0, sizeof(*d));
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Fill d for disk `which` ("0".."N" or "nvram") of the loaded config;
 * with ".next" appended: the image an unfinished encrypt/decrypt/rekey
 * operation is writing (diskN.next.file, nvram.next.file). */
static int pick(cu_vmdisk *d, const char *which_arg)
{
    const vmseal_vmconf *c = d->conf;
    const char *uuid = vmseal_vmconf_get(c, "uuid");
    const char *file = NULL, *ks = NULL;
    char key[48], which[24];
    snprintf(which, sizeof(which), "%s", which_arg);
    size_t wl = strlen(which);
    d->next = wl > 5 && strcmp(which + wl - 5, ".next") == 0;
    if (d->next)
        which[wl - 5] = '\0';
    const char *nx = d->next ? ".next" : "";
    if (!uuid)
        return vmseal_fail(EPROTO, "%s: no VM uuid", d->conf_path);
    if (strcmp(which, "nvram") == 0) {
        d->index = -1;
        snprintf(key, sizeof(key), "nvram%s.file", nx);
        file = vmseal_vmconf_get(c, key);
        if (!file)
            return vmseal_fail(ENOENT, "%s: the VM has no %s", d->conf_path, key);
        snprintf(d->key, sizeof(d->key), "vm%s.keysafe", nx);
        if (vmseal_keysafe_object_id("vm", uuid, d->object, sizeof(d->object)) < 0)
            return vmseal_fail(EPROTO, "%s: %s", d->conf_path, vmseal_last_error());
        d->uuid[0] = '\0';
    } else {
        uint64_t n, nd;
        if (cu_parse_uint(which, &n) < 0)
            return vmseal_fail(EINVAL, "--disk: a disk number or 'nvram', not '%s'", which);
        if (vmseal_vmconf_get_u64(c, "disks", &nd) < 0 || n >= nd)
            return vmseal_fail(ENOENT, "%s: the VM has no disk %s", d->conf_path, which);
        d->index = (int)n;
        snprintf(key, sizeof(key), "disk%d%s.file", d->index, nx);
        file = vmseal_vmconf_get(c, key);
        if (!file)
            return vmseal_fail(d->next ? ENOENT : EPROTO, "%s: no %s", d->conf_path, key);
        snprintf(key, sizeof(key), "disk%d%s.luks.uuid", d->index, nx);
        const char *lu = vmseal_vmconf_get(c, key);
        snprintf(d->uuid, sizeof(d->uuid), "%s", lu ? lu : "");
        snprintf(d->key, sizeof(d->key), "disk%d%s.keysafe", d->index, nx);
        /* a plain disk has no LUKS UUID: no object (its key safe, if one
         * were there, would not open) */
        if (vmseal_keysafe_object_id("disk", d->uuid, d->object, sizeof(d->object)) < 0)
            d->object[0] = '\0';
    }
    if (strchr(file, '/'))
        return vmseal_fail(EPROTO, "%s: image name '%s' is not a plain file name", d->conf_path,
                           file);
    ks = vmseal_vmconf_get(c, d->key);
    d->keysafe = ks;
    char *dir = dir_of(d->conf_path);
    d->image = dir ? join(dir, file) : NULL;
    free(dir);
    if (!d->image)
        return vmseal_fail(ENOMEM, "out of memory");
    return 0;
}

int cu_vmhome_open(const char *conf_path, const char *which, cu_vmdisk *d)
{
    memset(d, 0, sizeof(*d));
    d->conf_path = strdup(conf_path);
    if (!d->conf_path)
        return vmseal_fail(ENOMEM, "out of memory");
    int r = vmseal_vmconf_load(conf_path, &d->conf);
    if (r < 0)
        return vmseal_fail(r, "%s: %s", conf_path, vmseal_last_error());
    return pick(d, which);
}

int cu_vmhome_lookup(const char *image, cu_vmdisk *d)
{
    memset(d, 0, sizeof(*d));
    struct stat ist, cst;
    if (lstat(image, &ist) != 0)
        return vmseal_fail(errno, "%s: %s", image, strerror(errno));
    if (S_ISLNK(ist.st_mode))   /* a VM home's files are never followed */
        return vmseal_fail(ELOOP, "%s is a symlink (not followed)", image);
    char *dir = dir_of(image);
    d->conf_path = dir ? join(dir, "vm.conf") : NULL;
    free(dir);
    if (!d->conf_path)
        return vmseal_fail(ENOMEM, "out of memory");
    if (lstat(d->conf_path, &cst) != 0 || !S_ISREG(cst.st_mode))
        return 0;
    int r = vmseal_vmconf_load(d->conf_path, &d->conf);
    if (r < 0)
        return vmseal_fail(r, "%s: %s", d->conf_path, vmseal_last_error());
    uint64_t nd = 0;
    if (vmseal_vmconf_get_u64(d->conf, "disks", &nd) < 0 || nd > 1024)
        nd = 0;
    for (uint64_t i = 0; i < 2 * (nd + 1); i++) {
        char which[32];
        uint64_t k = i % (nd + 1);
        const char *nx = i > nd ? ".next" : "";
        if (k == nd)
            snprintf(which, sizeof(which), "nvram%s", nx);
        else
            snprintf(which, sizeof(which), "%llu%s", (unsigned long long)k, nx);
        free(d->image);
        d->image = NULL;
        if (pick(d, which) < 0)
            continue;
        struct stat st;
        if (lstat(d->image, &st) == 0 && st.st_dev == ist.st_dev && st.st_ino == ist.st_ino)
            return 1;
    }
    return 0;
}
