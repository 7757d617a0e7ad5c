/* vmseal-hostd — disk images brought into a VM from the host's images
 * folder, beyond what lib/disk/disk_import.c converts (hostd/import.c):
 * the room an import needs, asked before anything is recorded, and the
 * adoption of a LUKS1 image someone made with qemu-img or cryptsetup.
 * docs/architecture.md, "Disk import". */
#ifndef HOSTD_IMPORT_H
#define HOSTD_IMPORT_H

#include <stdint.h>

#include <vmseal/secret.h>

#include "vm.h"

/* The most a user passphrase of an adopted image may be (bytes). */
#define HOSTD_ADOPT_PASSPHRASE_MAX 1024

/* 0 when `need` bytes (plus a margin for vm.conf and logs) fit on the
 * file system of the folder dirfd; -ENOSPC with "not enough room on the
 * datastore for the <what> of VM <vm>: it needs N MiB, M MiB are free"
 * otherwise. env->skip_space_check skips it (a test hook). */
int hostd_import_check_space(const hostd_host_env *env, int dirfd, uint64_t need, const char *what,
                             const char *vm) VMSEAL_MUST_CHECK;

/* The bytes an import of the image `from` of the images folder, `size`
 * bytes of payload, writes: encrypted, the whole payload and the LUKS
 * header (written densely); plain, at most what the source file holds (its
 * holes stay holes). */
uint64_t hostd_import_bytes(const hostd_host_env *env, const char *from, uint64_t size, int encrypted);

/* Adopt the LUKS1 image `image` of the images folder as a new disk of the
 * encrypted, powered-off VM vm, without re-encrypting its data: its
 * ciphertext is copied into the VM home (holes kept; the image in the
 * images folder is not changed), `user` must open one of its keyslots,
 * a new disk secret wrapped by the VM's KEK becomes vmseal's keyslot and
 * the disk's key safe in vm.conf, and with remove_old the keyslot `user`
 * opens is removed from the VM's copy. Returns the new disk's index, or
 * -errno: -EKEYREJECTED wrong passphrase (nothing is left behind),
 * -EINVAL not a LUKS1 aes-xts image (LUKS2 included) or a bad name,
 * -ENOSPC no room, -ENOKEY the VM is locked, -EBUSY running or busy,
 * -EEXIST the same image (LUKS UUID) is one of the VM's disks already.
 * Messages never hold the passphrase. */
int hostd_vm_adopt_disk(hostd_vm *vm, const hostd_host_env *env, const char *image,
                        const vmseal_secret *user, int remove_old) VMSEAL_MUST_CHECK;

#endif
