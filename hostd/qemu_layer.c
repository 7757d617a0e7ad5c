/* Snapshot layers in a running QEMU: a qcow2 overlay (LUKS-encrypted for an
 * encrypted VM) added over the monitor on top of a disk's node, its backing
 * node named explicitly (see qemu.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "qemu.h"
#include "qmp.h"

#define FDSET_LAYER0 100   /* + disk * 16 + layer (qemu.c uses 1..9 and 10..25) */

void hostd_qemu_layer_node(size_t disk, size_t layer, char *buf, size_t len)
{
    if (layer == 0)
        snprintf(buf, len, "vmseal-disk%zu", disk);
    else
        snprintf(buf, len, "vmseal-disk%zu-l%zu", disk, layer);
}

static int open_layer(int dir_fd, const char *file, int flags)
{
    int fd = openat(dir_fd, file, flags | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        return vmseal_fail(e, "snapshot layer %s: %s", file,
                           e == ELOOP ? "a symlink (not followed)" : strerror(e));
    }
    struct stat st;
    int fl;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (fl = fcntl(fd, F_GETFL)) < 0 ||
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        close(fd);
        return vmseal_fail(EINVAL, "snapshot layer %s is not a regular file", file);
    }
    return fd;
}

int hostd_qemu_add_layer(hostd_qmp *q, size_t disk, size_t layer, int dir_fd, const char *file,
                         const vmseal_secret *passphrase, const char *backing, int timeout_ms)
{
    if (!q)
        return vmseal_fail(ESRCH, "QEMU's monitor is not connected");
    if (disk >= 16 || layer == 0 || layer >= 16)
        return vmseal_fail(EINVAL, "snapshot layer %zu of disk %zu: out of range", layer, disk);
    int fdset = FDSET_LAYER0 + (int)(disk * 16 + layer);
    int r = 0;
    int flags[2] = {O_RDWR, O_RDONLY};
    for (int k = 0; k < 2 && r == 0; k++) {
        int fd = open_layer(dir_fd, file, flags[k]);
        if (fd < 0)
            return fd;
        r = hostd_qmp_add_fd(q, fdset, fd, timeout_ms, NULL);
        close(fd);
    }
    if (r < 0)
        return vmseal_fail(-r, "snapshot layer %s: %s", file, vmseal_last_error());
    char node[32], sec[40], fname[32];
    hostd_qemu_layer_node(disk, layer, node, sizeof(node));
    snprintf(sec, sizeof(sec), "vmseal-sec%zu-l%zu", disk, layer);
    snprintf(fname, sizeof(fname), "/dev/fdset/%d", fdset);
    if (passphrase && (r = hostd_qmp_add_secret(q, sec, passphrase, timeout_ms)) < 0)
        return r;
    json_t *args = json_pack("{s:s, s:s, s:{s:s, s:s}, s:s}", "driver", "qcow2", "node-name",
                             node, "file", "driver", "file", "filename", fname, "discard", "unmap");
    if (args && passphrase)
        json_object_set_new(args, "encrypt",
                            json_pack("{s:s, s:s}", "format", "luks", "key-secret", sec));
    if (args)
        json_object_set_new(args, "backing", backing ? json_string(backing) : json_null());
    r = args ? hostd_qmp_execute(q, "blockdev-add", args, timeout_ms, NULL)
             : vmseal_fail(ENOMEM, "out of memory");
    /* The secret object stays: qcow2 opens its LUKS header again when the
     * node is reactivated after an incoming memory stream (a revert), and
     * QEMU holds the layer's volume key all along anyway. On failure it
     * goes. */
    if (passphrase && r < 0 &&
        hostd_qmp_execute(q, "object-del", json_pack("{s:s}", "id", sec), timeout_ms, NULL) < 0) {
        /* QEMU may be gone: nothing more to do */
    }
    if (r < 0)
        return vmseal_fail(-r, "snapshot layer %s: %s", file, vmseal_last_error());
    return 0;
}
