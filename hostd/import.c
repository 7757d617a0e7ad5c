/* vmseal-hostd — the room an import needs, and adopting a LUKS1 image
 * (hostd/import.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <vmseal/disk.h>
#include <vmseal/common.h>
#include <vmseal/keysafe.h>
#include <vmseal/diskdesc.h>
#include <vmseal/diskimport.h>
#include <vmseal/vmrecord.h>

#include "import.h"
#include "keystore.h"
#include "strutil.h"

#define IMPORT_HEADER_BYTES (2ull << 20)   /* payload offset of the images hostd writes */
#define IMPORT_MARGIN (4ull << 20)         /* vm.conf, checkpoints, logs */

uint64_t hostd_import_bytes(const hostd_host_env *env, const char *from, uint64_t size, int encrypted)
{
    if (encrypted)
        return size + IMPORT_HEADER_BYTES;   /* written densely */
    /* a plain disk keeps the source's holes: at most what the source holds
     * (a compressed image may need more; that import stops at ENOSPC and
     * keeps its partial disk for a resume) */
    struct stat st;
    int fd = hostd_vm_open_boot_file(env, "disk image", from);
    uint64_t alloc = size;
    if (fd >= 0 && fstat(fd, &st) == 0 && (uint64_t)st.st_blocks * 512 < size)
        alloc = (uint64_t)st.st_blocks * 512;
    if (fd >= 0)
        close(fd);
    vmseal_clear_error();
    return alloc;
}

int hostd_import_check_space(const hostd_host_env *env, int dirfd, uint64_t need, const char *what,
                             const char *vm)
{
    if (env->skip_space_check)
        return 0;
    struct statvfs sv;
    if (fstatvfs(dirfd, &sv) != 0)
        return vmseal_fail(errno, "cannot tell the free space of the datastore: %s", strerror(errno));
    uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
    need += IMPORT_MARGIN;
    if (need <= avail)
        return 0;
    return vmseal_fail(ENOSPC, "not enough room on the datastore for the %s of VM %s: it needs %llu MiB, "
                       "%llu MiB are free", what, vm,
                       (unsigned long long)((need + (1u << 20) - 1) >> 20),
                       (unsigned long long)(avail >> 20));
}

/* ------------------------------------------------------------ adopt */

typedef struct adopt_ctx {
    hostd_vm *vm;
    const hostd_host_env *env;
    const char *image;
    const vmseal_secret *user;
    int remove_old;
    int home_fd;
    int idx;
} adopt_ctx;

/* Copy src into dst (a new empty file) keeping holes: only the data areas
 * SEEK_DATA finds are copied, the size is set at the end. */
static int copy_sparse(int src, int dst, uint64_t size, const char *image)
{
    off_t pos = 0;
    while ((uint64_t)pos < size) {
        off_t data = lseek(src, pos, SEEK_DATA);
        if (data < 0 && errno == ENXIO)
            break;   /* a hole up to the end */
        if (data < 0)
            data = pos;   /* no SEEK_DATA here: everything is data */
        off_t hole = lseek(src, data, SEEK_HOLE);
        if (hole < 0 || (uint64_t)hole > size)
            hole = (off_t)size;
        off_t in = data, out = data;
        while (in < hole) {
            size_t chunk = (size_t)(hole - in) > (64u << 20) ? (64u << 20) : (size_t)(hole - in);
            ssize_t n = copy_file_range(src, &in, dst, &out, chunk, 0);
            if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP)) {
                /* no in-kernel copy between these files: read and write */
                char buf[1 << 14];
                ssize_t r = pread(src, buf, chunk < sizeof(buf) ? chunk : sizeof(buf), in);
                n = r > 0 ? pwrite(dst, buf, (size_t)r, out) : r;
                if (n > 0) {
                    in += n;
                    out += n;
                }
            }   /* else copy_file_range moved the offsets itself */
            if (n < 0)
                return vmseal_fail(errno, "disk image %s: copy failed: %s", image, strerror(errno));
            if (n == 0)
                return vmseal_fail(EIO, "disk image %s: shorter than it was (changed while copied)",
                                   image);
        }
        pos = hole;
    }
    if (ftruncate(dst, (off_t)size) != 0)
        return vmseal_fail(errno, "disk image %s: copy failed: %s", image, strerror(errno));
    if (fsync(dst) != 0)
        return vmseal_fail(errno, "disk image %s: copy failed: %s", image, strerror(errno));
    return 0;
}

/* The source's LUKS1 header, checked before anything is written. */
static int check_source(int src, const char *image, vmseal_disk_info *info, uint64_t *fsize,
                        uint64_t *alloc)
{
    uint8_t hdr[4096];
    struct stat st;
    if (fstat(src, &st) != 0)
        return vmseal_fail(errno, "disk image %s: %s", image, strerror(errno));
    ssize_t n = pread(src, hdr, sizeof(hdr), 0);
    if (n < 0)
        return vmseal_fail(errno, "disk image %s: %s", image, strerror(errno));
    int r = vmseal_luks1_header_parse(hdr, (size_t)n, info);
    if (r < 0)
        return vmseal_fail(EINVAL, "disk image %s cannot be adopted: %s (a LUKS1 image made by "
                           "qemu-img create -f luks or cryptsetup luksFormat --type luks1 is)",
                           image, vmseal_last_error());
    if (strcmp(info->cipher, "aes") != 0 || strcmp(info->cipher_mode, "xts-plain64") != 0 ||
        (info->key_bits != 512 && info->key_bits != 256))
        return vmseal_fail(EINVAL, "disk image %s cannot be adopted: cipher %s-%s with a %u-bit key "
                           "(vmseal runs aes-xts-plain64, 256 or 512 bits)", image, info->cipher,
                           info->cipher_mode, info->key_bits);
    if ((uint64_t)st.st_size < info->payload_offset_bytes)
        return vmseal_fail(EINVAL, "disk image %s is truncated: its LUKS1 header area alone is "
                           "%llu bytes", image, (unsigned long long)info->payload_offset_bytes);
    uint64_t payload = (uint64_t)st.st_size - info->payload_offset_bytes;
    if (payload < VMSEAL_VMREC_DISK_SIZE_MIN || payload > VMSEAL_VMREC_DISK_SIZE_MAX ||
        payload % (1u << 20))
        return vmseal_fail(EINVAL, "disk image %s: its payload is %llu bytes; a disk is whole MiB, "
                           "1 MiB to 1 TiB", image, (unsigned long long)payload);
    info->payload_bytes = payload;
    for (char *c = info->uuid; *c; c++)
        if (*c >= 'A' && *c <= 'F')
            *c = (char)(*c - 'A' + 'a');
    if (!vmseal_uuid_valid(info->uuid))
        return vmseal_fail(EINVAL, "disk image %s: its LUKS UUID is not a UUID vmseal can bind a key "
                           "safe to", image);
    *fsize = (uint64_t)st.st_size;
    *alloc = (uint64_t)st.st_blocks * 512;
    if (*alloc > *fsize)
        *alloc = *fsize;
    return 0;
}

/* A new random disk secret, wrapped by the VM's KEK for object `obj`: the
 * key safe line, and the LUKS passphrase it stands for. */
static int new_disk_secret(const hostd_host_env *env, const char *vm_keysafe, const char *obj,
                           char **line, vmseal_secret **pass)
{
    vmseal_keysafe_info ki;
    vmseal_secret *kek = NULL, *s = NULL;
    char provider[VMSEAL_KEYSAFE_PROVIDER_MAX + 1];
    *line = NULL;
    *pass = NULL;
    int r = vm_keysafe ? vmseal_keysafe_parse(vm_keysafe, &ki)
                       : vmseal_fail(EPROTO, "vm.conf holds no key safe of the VM's secret");
    if (r == 0)
        r = hostd_keystore_get(env->keys, ki.kek_id, &kek, provider);
    if (r == 0)
        r = vmseal_secret_random(32, &s);
    if (r == 0)
        r = vmseal_keysafe_wrap(kek, provider, ki.kek_id, obj, s, line);
    if (r == 0)
        r = vmseal_disk_passphrase_from_secret(s, pass);
    vmseal_secret_free(kek);
    vmseal_secret_free(s);
    if (r < 0) {
        free(*line);
        *line = NULL;
    }
    return r;
}

static int adopt_edit(vmseal_vmrec *next, void *arg)
{
    adopt_ctx *a = arg;
    const char *image = a->image;
    size_t idx = next->ndisks;
    if (idx >= VMSEAL_VM_MAX_DISKS)
        return vmseal_fail(EINVAL, "VM %s has %d disks already (the most)", hostd_vm_name(a->vm),
                           VMSEAL_VM_MAX_DISKS);
    if (next->policy != VMSEAL_POLICY_ENCRYPTED)
        return vmseal_fail(EINVAL, "VM %s is not encrypted: a LUKS image joins encrypted VMs only",
                           hostd_vm_name(a->vm));
    /* as adding a disk: a saved state or a snapshot's layers expect the
     * disks the VM has now */
    if (next->state_file[0])
        return vmseal_fail(EBUSY, "VM %s is suspended: resume it (or discard its saved state) to "
                           "adopt a disk", hostd_vm_name(a->vm));
    if (next->nsnaps)
        return vmseal_fail(EBUSY, "VM %s has %zu snapshot(s): remove them (vmseal vm snapshot rm) "
                           "to adopt a disk", hostd_vm_name(a->vm), next->nsnaps);
    int src = hostd_vm_open_boot_file(a->env, "disk image", image);
    if (src < 0)
        return src;
    vmseal_disk_info info;
    uint64_t fsize = 0, alloc = 0;
    int r = check_source(src, image, &info, &fsize, &alloc);
    for (size_t i = 0; r == 0 && i < next->ndisks; i++)
        if (!strcmp(next->disks[i].luks_uuid, info.uuid))
            r = vmseal_fail(EEXIST, "disk image %s (LUKS UUID %s) is disk%zu of VM %s already", image,
                            info.uuid, i, hostd_vm_name(a->vm));
    vmseal_vmrec_image *d = &next->disks[idx];
    char tmp[VMSEAL_VMREC_FILE_MAX + 16], path[VMSEAL_VMREC_FILE_MAX + 64], obj[64];
    if (r == 0)
        r = vmseal_vmrec_image_file_name((long)idx, 1, d->file, sizeof(d->file));
    struct stat st;
    if (r == 0 && fstatat(a->home_fd, d->file, &st, AT_SYMLINK_NOFOLLOW) == 0)
        r = vmseal_fail(EEXIST, "%s/%s exists already: not overwritten", hostd_vm_home(a->vm), d->file);
    if (r == 0)
        r = hostd_import_check_space(a->env, a->home_fd, alloc, "adoption of a disk image",
                                     hostd_vm_name(a->vm));
    snprintf(tmp, sizeof(tmp), "%s.adopt", d->file);
    snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", a->home_fd, tmp);
    int out = -1;
    if (r == 0) {
        /* a copy an earlier, interrupted adoption left is not trusted */
        (void)unlinkat(a->home_fd, tmp, 0);
        out = openat(a->home_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (out < 0)
            r = vmseal_fail(errno, "%s/%s: %s", hostd_vm_home(a->vm), tmp, strerror(errno));
    }
    if (r == 0)
        r = copy_sparse(src, out, fsize, image);
    if (out >= 0)
        close(out);
    close(src);
    /* the user's passphrase first, on the VM's copy: a wrong one leaves
     * nothing behind (the copy is removed, vm.conf is not touched) */
    if (r == 0 && vmseal_disk_verify_passphrase(path, a->user) < 0)
        r = vmseal_fail(EKEYREJECTED, "disk image %s: the passphrase given opens none of its keyslots",
                        image);
    char *line = NULL;
    vmseal_secret *pass = NULL;
    if (r == 0) {
        hostd_copy_str(d->luks_uuid, sizeof(d->luks_uuid), info.uuid);
        r = vmseal_vmrec_keysafe_object(next, (long)idx, 0, obj, sizeof(obj));
    }
    if (r == 0)
        r = new_disk_secret(a->env, next->vm_keysafe, obj, &line, &pass);
    vmseal_disk_info after;
    int e = r == 0 ? vmseal_disk_adopt(path, a->user, pass, a->remove_old, &after) : 0;
    if (e < 0) {
        /* the library names the copy by its /proc path: say it in our words */
        r = vmseal_fail(-e, "disk image %s: adoption failed%s", image,
                        e == -EKEYREJECTED ? ": the passphrase given opens none of its keyslots"
                        : e == -EBUSY ? ": its copy is held by another process"
                        : ": its LUKS header could not be changed");
    }
    vmseal_secret_free(pass);
    if (r == 0 && strcasecmp(after.uuid, info.uuid) != 0)   /* the source changed while copied */
        r = vmseal_fail(ESTALE, "disk image %s changed while it was copied: try again", image);
    if (r == 0 && renameat2(a->home_fd, tmp, a->home_fd, d->file, RENAME_NOREPLACE) != 0)
        r = vmseal_fail(errno, "%s/%s: %s", hostd_vm_home(a->vm), d->file, strerror(errno));
    if (r == 0 && fsync(a->home_fd) != 0)
        r = vmseal_fail(errno, "fsync of %s: %s", hostd_vm_home(a->vm), strerror(errno));
    if (r < 0) {
        free(line);
        (void)unlinkat(a->home_fd, tmp, 0);
        d->luks_uuid[0] = '\0';
        d->file[0] = '\0';
        return r;
    }
    d->size = info.payload_bytes;
    d->keysafe = line;
    next->ndisks = idx + 1;
    a->idx = (int)idx;
    return 0;
}

int hostd_vm_adopt_disk(hostd_vm *vm, const hostd_host_env *env, const char *image,
                        const vmseal_secret *user, int remove_old)
{
    if (!user || vmseal_secret_len(user) == 0 || vmseal_secret_len(user) > HOSTD_ADOPT_PASSPHRASE_MAX)
        return vmseal_fail(EINVAL, "the passphrase must be 1 to %d bytes", HOSTD_ADOPT_PASSPHRASE_MAX);
    if (!hostd_vm_encrypted(vm))
        return vmseal_fail(EINVAL, "VM %s is not encrypted: a LUKS image joins encrypted VMs only "
                           "(import it with --from into a plain disk instead)", hostd_vm_name(vm));
    char reason[300];
    if (hostd_vm_locked(vm, env, reason, sizeof(reason)))
        return vmseal_fail(ENOKEY, "VM %s is locked: %s", hostd_vm_name(vm), reason);
    adopt_ctx a = {.vm = vm, .env = env, .image = image, .user = user, .remove_old = remove_old,
                   .idx = -1};
    a.home_fd = open(hostd_vm_home(vm), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (a.home_fd < 0)
        return vmseal_fail(errno, "%s: %s", hostd_vm_home(vm), strerror(errno));
    int r = hostd_vm_edit(vm, "adopting a disk image", adopt_edit, &a);
    close(a.home_fd);
    if (r < 0)
        return r;
    hostd_vm_log(vm, "disk%d adopted from %s (LUKS1, data not re-encrypted)%s", a.idx, image,
                 remove_old ? "; the passphrase given was removed from it" : "");
    return a.idx;
}
