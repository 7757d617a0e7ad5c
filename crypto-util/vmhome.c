/* VM home folders of vmseal-hostd: the key safes of a VM's disks and NVRAM
 * live in its vm.conf, read through the schema module
 * (include/vmseal/vmrecord.h), not in <image>.vmdesc. A disk's key safe is
 * bound to "disk:<LUKS UUID>", the NVRAM's (the VM's secret) to
 * "vm:<VM uuid>". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <vmseal/vmrecord.h>

#include "cu.h"

void cu_vmdisk_clear(cu_vmdisk *d)
{
    free(d->image);
    free(d->conf_path);
    vmseal_vmrec_free(d->rec);
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
 * with ".next" appended: the image an unfinished encrypt/decrypt operation
 * is writing. */
static int pick(cu_vmdisk *d, const char *which_arg)
{
    const vmseal_vmrec *c = d->rec;
    char which[24];
    snprintf(which, sizeof(which), "%s", which_arg);
    size_t wl = strlen(which);
    d->next = wl > 5 && strcmp(which + wl - 5, ".next") == 0;
    if (d->next)
        which[wl - 5] = '\0';
    long idx;
    if (strcmp(which, "nvram") == 0) {
        if (!c->nvram.file[0])
            return vmseal_fail(ENOENT, "%s: the VM has no NVRAM", d->conf_path);
        idx = -1;
    } else {
        uint64_t n;
        if (cu_parse_uint(which, &n) < 0)
            return vmseal_fail(EINVAL, "--disk: a disk number or 'nvram', not '%s'", which);
        if (n >= c->ndisks)
            return vmseal_fail(ENOENT, "%s: the VM has no disk %s", d->conf_path, which);
        idx = (long)n;
    }
    const vmseal_vmrec_image *im = vmseal_vmrec_image_at_const(c, idx);
    const char *file = d->next ? im->next_file : im->file;
    if (!file[0])
        return vmseal_fail(ENOENT, "%s: no new image of %s %s (no unfinished operation writes "
                           "one)", d->conf_path, idx < 0 ? "the" : "disk",
                           idx < 0 ? "NVRAM" : which);
    d->index = (int)idx;
    if (vmseal_vmrec_keysafe_key(idx, d->next, d->key, sizeof(d->key)) < 0)
        return -EINVAL;
    if (idx < 0) {
        d->keysafe = d->next ? c->vm_next_keysafe : c->vm_keysafe;
        d->uuid[0] = '\0';
    } else {
        d->keysafe = d->next ? im->next_keysafe : im->keysafe;
        snprintf(d->uuid, sizeof(d->uuid), "%s", d->next ? im->next_luks_uuid : im->luks_uuid);
    }
    /* a plain disk has no LUKS UUID: no object (its key safe, if one were
     * there, would not open) */
    if (vmseal_vmrec_keysafe_object(c, idx, d->next, d->object, sizeof(d->object)) < 0)
        d->object[0] = '\0';
    vmseal_clear_error();
    char *dir = dir_of(d->conf_path);
    free(d->image);
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
    int r = vmseal_vmrec_load(conf_path, &d->rec);
    if (r < 0)
        return r;
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
    d->conf_path = dir ? join(dir, VMSEAL_VMREC_FILE) : NULL;
    free(dir);
    if (!d->conf_path)
        return vmseal_fail(ENOMEM, "out of memory");
    if (lstat(d->conf_path, &cst) != 0 || !S_ISREG(cst.st_mode))
        return 0;
    int r = vmseal_vmrec_load(d->conf_path, &d->rec);
    if (r < 0)
        return r;
    size_t nd = d->rec->ndisks;
    for (size_t i = 0; i < 2 * (nd + 1); i++) {
        char which[32];
        size_t k = i % (nd + 1);
        const char *nx = i > nd ? ".next" : "";
        if (k == nd)
            snprintf(which, sizeof(which), "nvram%s", nx);
        else
            snprintf(which, sizeof(which), "%zu%s", k, nx);
        free(d->image);
        d->image = NULL;
        if (pick(d, which) < 0)
            continue;
        struct stat st;
        if (lstat(d->image, &st) == 0 && st.st_dev == ist.st_dev && st.st_ino == ist.st_ino)
            return 1;
    }
    vmseal_clear_error();
    return 0;
}
