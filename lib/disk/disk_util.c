/* Small file helpers shared by the LUKS1 disk code. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "disk_internal.h"

char *vmseal_path_with_suffix(const char *path, const char *suffix)
{
    size_t a = strlen(path), b = strlen(suffix);
    char *s = malloc(a + b + 1);
    if (!s)
        return NULL;
    memcpy(s, path, a);
    memcpy(s + a, suffix, b + 1);
    return s;
}

int vmseal_fsync_parent_dir(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return vmseal_fail(ENOMEM, "out of memory");
    const char *dir = dirname(copy);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;
    if (fd < 0 || fsync(fd) != 0)
        rc = vmseal_fail(errno, "fsync of directory %s failed: %s", dir, strerror(errno));
    if (fd >= 0)
        close(fd);
    free(copy);
    return rc;
}

int vmseal_luks1_header_sha256(int fd, uint8_t out[32])
{
    uint8_t hdr[VMSEAL_LUKS1_HEADER_SIZE];
    ssize_t r = pread(fd, hdr, sizeof(hdr), 0);
    if (r != (ssize_t)sizeof(hdr))
        return vmseal_fail(r < 0 ? errno : EPROTO, "cannot read the LUKS1 header");
    unsigned int len = 0;
    if (EVP_Digest(hdr, sizeof(hdr), out, &len, EVP_sha256(), NULL) != 1 || len != 32)
        return vmseal_fail(EIO, "SHA-256 failed");
    return 0;
}

int vmseal_lock_exclusive(int fd, const char *path)
{
    /* An OFD write lock over the whole file: conflicts with QEMU's image
     * locks (so a disk in use by a running VM is refused, and a VM cannot
     * open it meanwhile) and with another vmseal run on the same file. */
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
        return 0;
    if (errno == EAGAIN || errno == EACCES)
        return vmseal_fail(EBUSY, "%s is in use (locked by a running VM or another vmseal "
                           "operation)", path);
    if (errno == EINVAL || errno == ENOLCK || errno == EOPNOTSUPP)
        return 0;   /* no locking on this file system */
    return vmseal_fail(errno, "%s: cannot lock: %s", path, strerror(errno));
}

int vmseal_rename_noreplace(const char *from, const char *to)
{
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return vmseal_fail(errno, "cannot rename %s to %s: %s", from, to, strerror(errno));
    /* File systems without RENAME_NOREPLACE: link() never replaces. */
    if (link(from, to) != 0)
        return vmseal_fail(errno, "cannot rename %s to %s: %s", from, to, strerror(errno));
    unlink(from);
    return 0;
}

/* QEMU's image locking protocol (block/file-posix.c): a process holding
 * permission bit i has a shared OFD lock on byte 100 + i; one that refuses
 * to share it, on byte 200 + i. Bit 0 is "consistent read", bit 1 "write". */
#define QEMU_LOCK_PERM_BASE 100
#define QEMU_LOCK_SHARED_BASE 200
#define QEMU_PERM_CONSISTENT_READ 0
#define QEMU_PERM_WRITE 1

static int ofd_lock_byte(int fd, off_t byte)
{
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
    return fcntl(fd, F_OFD_SETLK, &fl);
}

int vmseal_lock_shared_read(int fd, const char *path)
{
    /* Take the locks first (no one may start writing), then look for a
     * writer that was already there. */
    if (ofd_lock_byte(fd, QEMU_LOCK_PERM_BASE + QEMU_PERM_CONSISTENT_READ) != 0 ||
        ofd_lock_byte(fd, QEMU_LOCK_SHARED_BASE + QEMU_PERM_WRITE) != 0) {
        if (errno == EAGAIN || errno == EACCES)
            return vmseal_fail(EBUSY, "%s is in use (a running VM or another vmseal operation "
                               "holds it)", path);
        return 0;   /* no locking on this file system */
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
                       .l_start = QEMU_LOCK_PERM_BASE + QEMU_PERM_WRITE, .l_len = 1};
    if (fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK)
        return vmseal_fail(EBUSY, "%s is open for writing (a running VM?): its content would "
                           "change under the copy", path);
    return 0;
}

int vmseal_disk_check_unused(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return vmseal_fail(errno, "%s: %s", path, strerror(errno));
    int r = vmseal_lock_shared_read(fd, path);
    close(fd);
    return r;
}
