/* The disk functions for an image named relative to a folder descriptor
 * (include/vmseal/disk.h, "..._at"). The image is reached as
 * /proc/self/fd/DIRFD/NAME: the kernel resolves the folder through the
 * descriptor, so a folder renamed or replaced by a symlink after it was
 * opened changes nothing, and the path functions below (which never follow
 * a symlink in the last component) do the rest: one code path for both. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "disk_internal.h"

typedef struct at_path {
    char path[4096 + 64];
    char prefix[40];             /* "/proc/self/fd/N/" ("" for AT_FDCWD) */
} at_path;

static int at_make(int dirfd, const char *name, at_path *a)
{
    a->prefix[0] = '\0';
    if (!name || !*name)
        return vmseal_fail(EINVAL, "no image name");
    if (dirfd == AT_FDCWD) {
        if (strlen(name) >= sizeof(a->path))
            return vmseal_fail(ENAMETOOLONG, "image path too long");
        snprintf(a->path, sizeof(a->path), "%s", name);
        return 0;
    }
    if (dirfd < 0 || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
        strlen(name) > 255)
        return vmseal_fail(EINVAL, "%s: an image in a folder is a file name, not a path", name);
    snprintf(a->prefix, sizeof(a->prefix), "/proc/self/fd/%d/", dirfd);
    snprintf(a->path, sizeof(a->path), "%s%s", a->prefix, name);
    return 0;
}

/* Messages name the image by its name, not by the /proc path. */
static int at_done(const at_path *a, const at_path *b, int rc)
{
    if (rc >= 0)
        return rc;
    char msg[1024];
    snprintf(msg, sizeof(msg), "%s", vmseal_last_error());
    for (int k = 0; k < 2; k++) {
        const char *pre = k ? (b ? b->prefix : "") : a->prefix;
        size_t pl = strlen(pre);
        if (!pl)
            continue;
        char *hit;
        while ((hit = strstr(msg, pre)) != NULL)
            memmove(hit, hit + pl, strlen(hit + pl) + 1);
    }
    return vmseal_fail(-rc, "%s", msg);
}

int vmseal_disk_probe_at(int dirfd, const char *name, vmseal_disk_info *info)
{
    at_path a;
    int rc = at_make(dirfd, name, &a);
    return rc < 0 ? rc : at_done(&a, NULL, vmseal_disk_probe(a.path, info));
}

int vmseal_disk_create_at(int dirfd, const char *name, uint64_t size, const vmseal_secret *pass,
                          const vmseal_disk_opts *o)
{
    at_path a;
    int rc = at_make(dirfd, name, &a);
    return rc < 0 ? rc : at_done(&a, NULL, vmseal_disk_create(a.path, size, pass, o));
}

int vmseal_disk_encrypt_at(int in_dirfd, const char *plain_in, int out_dirfd,
                           const char *luks_out, const vmseal_secret *pass,
                           const vmseal_disk_opts *o)
{
    at_path a, b;
    int rc = at_make(in_dirfd, plain_in, &a);
    if (rc == 0)
        rc = at_make(out_dirfd, luks_out, &b);
    return rc < 0 ? rc : at_done(&a, &b, vmseal_disk_encrypt(a.path, b.path, pass, o));
}

int vmseal_disk_decrypt_at(int in_dirfd, const char *luks_in, int out_dirfd,
                           const char *plain_out, const vmseal_secret *pass,
                           const vmseal_disk_opts *o)
{
    at_path a, b;
    int rc = at_make(in_dirfd, luks_in, &a);
    if (rc == 0)
        rc = at_make(out_dirfd, plain_out, &b);
    return rc < 0 ? rc : at_done(&a, &b, vmseal_disk_decrypt(a.path, b.path, pass, o));
}

int vmseal_disk_rekey_at(int dirfd, const char *name, const vmseal_secret *pass,
                         const vmseal_disk_opts *o)
{
    at_path a;
    int rc = at_make(dirfd, name, &a);
    return rc < 0 ? rc : at_done(&a, NULL, vmseal_disk_rekey(a.path, pass, o));
}

int vmseal_disk_verify_passphrase_at(int dirfd, const char *name, const vmseal_secret *pass)
{
    at_path a;
    int rc = at_make(dirfd, name, &a);
    return rc < 0 ? rc : at_done(&a, NULL, vmseal_disk_verify_passphrase(a.path, pass));
}

/* One partial output and its checkpoint files: locked first (an operation
 * that still runs keeps its partial), then removed relative to dirfd. */
static int discard_one(int dirfd, const char *name, const char *suffix)
{
    char partial[300], ckpt[320], tmp[330];
    if ((size_t)snprintf(partial, sizeof(partial), "%s%s", name, suffix) >= sizeof(partial))
        return vmseal_fail(ENAMETOOLONG, "%s: name too long", name);
    snprintf(ckpt, sizeof(ckpt), "%s.ckpt", partial);
    snprintf(tmp, sizeof(tmp), "%s.tmp", ckpt);
    int fd = openat(dirfd, partial, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0) {
        int rc = vmseal_lock_exclusive(fd, partial);
        if (rc < 0) {
            close(fd);
            return rc;
        }
    } else if (errno != ENOENT && errno != ELOOP) {
        return vmseal_fail(errno, "%s: %s", partial, strerror(errno));
    }
    const char *files[] = {ckpt, tmp, partial};
    int rc = 0;
    for (size_t i = 0; i < 3 && rc == 0; i++)
        if (unlinkat(dirfd, files[i], 0) != 0 && errno != ENOENT)
            rc = vmseal_fail(errno, "cannot remove %s: %s", files[i], strerror(errno));
    if (fd >= 0)
        close(fd);
    return rc;
}

int vmseal_disk_discard_partial_at(int dirfd, const char *name)
{
    at_path a;
    int rc = at_make(dirfd, name, &a);
    if (rc < 0)
        return rc;
    if (dirfd == AT_FDCWD && strchr(name, '/'))
        return vmseal_fail(EINVAL, "%s: give a folder descriptor and a file name", name);
    rc = discard_one(dirfd, name, ".partial");
    if (rc == 0)
        rc = discard_one(dirfd, name, ".rekey.partial");
    if (rc == 0 && dirfd != AT_FDCWD && fsync(dirfd) != 0)
        rc = vmseal_fail(errno, "fsync of the folder of %s: %s", name, strerror(errno));
    return rc;
}
