/* LUKS1 header work on image files through libcryptsetup (no device-mapper):
 * format with a fixed PBKDF2 cost, keyslot add/remove, passphrase check,
 * volume-key recovery; and the key-less probe built on our strict parser.
 *
 * Every file is first checked by vmseal_luks1_header_parse() before
 * libcryptsetup sees it, so untrusted images meet the strict parser first.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libcryptsetup.h>
#include <openssl/crypto.h>

#include "disk_internal.h"

#define VMSEAL_PBKDF2_ITERATIONS 1000
#define VK_BYTES 64

/* libcryptsetup's last error message for this thread (it would otherwise
 * print to stderr). Never holds key material: cryptsetup does not log keys. */
static _Thread_local char cs_error[256];

static void cs_log(int level, const char *msg, void *usrptr)
{
    (void)usrptr;
    if (level != CRYPT_LOG_ERROR || !msg)
        return;
    snprintf(cs_error, sizeof(cs_error), "%s", msg);
    size_t n = strlen(cs_error);
    while (n > 0 && (cs_error[n - 1] == '\n' || cs_error[n - 1] == '.'))
        cs_error[--n] = '\0';
}

static const char *cs_why(int rc)
{
    return cs_error[0] ? cs_error : strerror(-rc);
}

static int cs_init(const char *path, struct crypt_device **cd)
{
    cs_error[0] = '\0';
    int rc = crypt_init(cd, path);
    if (rc < 0)
        return vmseal_fail(-rc, "%s: cannot open: %s", path, strerror(-rc));
    crypt_set_log_callback(*cd, cs_log, NULL);
    return 0;
}

int vmseal_disk_probe_fd(int fd, const char *path, vmseal_disk_info *info)
{
    uint8_t hdr[VMSEAL_LUKS1_HEADER_SIZE];
    memset(info, 0, sizeof(*info));
    struct stat st;
    if (fstat(fd, &st) != 0)
        return vmseal_fail(errno, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
        return vmseal_fail(EINVAL, "%s: not a regular file or block device", path);
    off_t size = lseek(fd, 0, SEEK_END);
    if (size < 0)
        return vmseal_fail(errno, "%s: %s", path, strerror(errno));
    ssize_t r = pread(fd, hdr, sizeof(hdr), 0);
    if (r < 0)
        return vmseal_fail(errno, "%s: read failed: %s", path, strerror(errno));
    int rc = vmseal_luks1_header_parse(hdr, (size_t)r, info);
    if (rc < 0)
        return vmseal_fail(rc, "%s: %s", path, vmseal_last_error());
    if ((uint64_t)size < info->payload_offset_bytes) {
        rc = vmseal_fail(EPROTO, "%s: truncated image: %lld bytes, but the LUKS1 header area "
                         "alone is %llu bytes", path, (long long)size,
                         (unsigned long long)info->payload_offset_bytes);
        info->is_luks = 0;
        return rc;
    }
    info->payload_bytes = (uint64_t)size - info->payload_offset_bytes;
    if (info->payload_bytes % VMSEAL_SECTOR_SIZE) {
        info->is_luks = 0;
        return vmseal_fail(EPROTO, "%s: truncated image: payload of %llu bytes is not a whole "
                           "number of 512-byte sectors", path,
                           (unsigned long long)info->payload_bytes);
    }
    return 0;
}

int vmseal_disk_probe(const char *path, vmseal_disk_info *info)
{
    memset(info, 0, sizeof(*info));
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return vmseal_fail(errno, "%s: %s", path, strerror(errno));
    int rc = vmseal_disk_probe_fd(fd, path, info);
    close(fd);
    return rc;
}

int vmseal_disk_check_cipher(const char *path, const vmseal_disk_info *info)
{
    if (strcmp(info->cipher, "aes") != 0 || strcmp(info->cipher_mode, "xts-plain64") != 0 ||
        (info->key_bits != 512 && info->key_bits != 256))
        return vmseal_fail(ENOTSUP, "%s: cipher %s-%s with a %u-bit key is not supported "
                           "(vmseal handles aes-xts-plain64, 256 or 512 bits)", path,
                           info->cipher, info->cipher_mode, info->key_bits);
    return 0;
}

/* Load an image's header with libcryptsetup after our own strict check. */
static int cs_load(const char *path, struct crypt_device **cd, vmseal_disk_info *info)
{
    vmseal_disk_info tmp;
    int rc = vmseal_disk_probe(path, info ? info : &tmp);
    if (rc < 0)
        return rc;
    if ((rc = cs_init(path, cd)) < 0)
        return rc;
    rc = crypt_load(*cd, CRYPT_LUKS1, NULL);
    if (rc < 0) {
        crypt_free(*cd);
        *cd = NULL;
        return vmseal_fail(rc == -EINVAL ? EPROTO : -rc, "%s: cannot load the LUKS1 header: %s",
                           path, cs_why(rc));
    }
    return 0;
}

static int set_pbkdf(struct crypt_device *cd, const char *path)
{
    /* The passphrase carries 256 bits of entropy: no stretching is needed,
     * and a fixed cost means no benchmark that can fail or vary (unlike
     * qemu-img's time-based PBKDF). 1000 is the LUKS1 minimum. */
    struct crypt_pbkdf_type pbkdf = {
        .type = CRYPT_KDF_PBKDF2,
        .hash = "sha256",
        .iterations = VMSEAL_PBKDF2_ITERATIONS,
        .flags = CRYPT_PBKDF_NO_BENCHMARK,
    };
    int rc = crypt_set_pbkdf_type(cd, &pbkdf);
    if (rc < 0)
        return vmseal_fail(-rc, "%s: cannot set PBKDF2 parameters: %s", path, cs_why(rc));
    return 0;
}

static int reject(const char *path, int rc)
{
    if (rc == -EPERM || rc == -ENOENT)
        return vmseal_fail(EKEYREJECTED, "%s: wrong passphrase: it opens no keyslot of this disk",
                           path);
    return vmseal_fail(-rc, "%s: %s", path, cs_why(rc));
}

int vmseal_luks_format(const char *path, int fd, uint64_t payload_bytes,
                       const vmseal_secret *pass, const char *uuid,
                       vmseal_secret **vk_out, uint64_t *payload_off)
{
    *vk_out = NULL;
    vmseal_secret *vk = NULL;
    int rc = vmseal_secret_random(VK_BYTES, &vk);
    if (rc < 0)
        return rc;
    /* Room for the header area (2 MiB with cryptsetup's default alignment)
     * before libcryptsetup looks at the file; trimmed to size below. */
    if (ftruncate(fd, (off_t)(payload_bytes + (4u << 20))) != 0) {
        rc = vmseal_fail(errno, "%s: cannot size the image: %s", path, strerror(errno));
        vmseal_secret_free(vk);
        return rc;
    }
    struct crypt_device *cd = NULL;
    if ((rc = cs_init(path, &cd)) < 0) {
        vmseal_secret_free(vk);
        return rc;
    }
    struct crypt_params_luks1 params = {.hash = "sha256", .data_alignment = 0};
    if ((rc = set_pbkdf(cd, path)) < 0)
        goto out;
    rc = crypt_format(cd, CRYPT_LUKS1, "aes", "xts-plain64", uuid,
                      (const char *)vmseal_secret_cdata(vk), VK_BYTES, &params);
    if (rc < 0) {
        rc = vmseal_fail(rc == -EINVAL && uuid ? EINVAL : -rc, "%s: LUKS1 format failed: %s",
                         path, cs_why(rc));
        goto out;
    }
    rc = crypt_keyslot_add_by_volume_key(cd, 0, (const char *)vmseal_secret_cdata(vk), VK_BYTES,
                                         (const char *)vmseal_secret_cdata(pass),
                                         vmseal_secret_len(pass));
    if (rc < 0) {
        rc = vmseal_fail(-rc, "%s: cannot add keyslot 0: %s", path, cs_why(rc));
        goto out;
    }
    uint64_t off = crypt_get_data_offset(cd) * VMSEAL_SECTOR_SIZE;
    if (off == 0 || ftruncate(fd, (off_t)(off + payload_bytes)) != 0) {
        rc = vmseal_fail(off ? errno : EIO, "%s: cannot size the image", path);
        goto out;
    }
    *payload_off = off;
    *vk_out = vk;
    vk = NULL;
    rc = 0;
out:
    crypt_free(cd);
    vmseal_secret_free(vk);
    return rc;
}

int vmseal_disk_volume_key(const char *path, const vmseal_secret *pass,
                           vmseal_secret **volume_key, vmseal_disk_info *info)
{
    *volume_key = NULL;
    vmseal_disk_info in;
    struct crypt_device *cd = NULL;
    int rc = cs_load(path, &cd, &in);
    if (rc < 0)
        return rc;
    size_t vk_len = (size_t)crypt_get_volume_key_size(cd);
    vmseal_secret *vk = vk_len ? vmseal_secret_new(vk_len) : NULL;
    if (!vk) {
        crypt_free(cd);
        return vmseal_fail(vk_len ? ENOMEM : EPROTO, "%s: cannot hold the volume key", path);
    }
    rc = crypt_volume_key_get(cd, CRYPT_ANY_SLOT, (char *)vmseal_secret_data(vk), &vk_len,
                              (const char *)vmseal_secret_cdata(pass), vmseal_secret_len(pass));
    crypt_free(cd);
    if (rc < 0) {
        vmseal_secret_free(vk);
        return reject(path, rc);
    }
    vmseal_secret_truncate(vk, vk_len);
    *volume_key = vk;
    if (info)
        *info = in;
    return 0;
}

int vmseal_disk_open_key(int fd, const char *path, const vmseal_secret *pass,
                         vmseal_disk_info *info, vmseal_secret **volume_key)
{
    int rc = vmseal_disk_probe_fd(fd, path, info);
    if (rc == 0)
        rc = vmseal_disk_check_cipher(path, info);
    if (rc == 0)
        rc = vmseal_disk_volume_key(path, pass, volume_key, NULL);
    return rc;
}

int vmseal_disk_verify_passphrase(const char *path, const vmseal_secret *pass)
{
    struct crypt_device *cd = NULL;
    int rc = cs_load(path, &cd, NULL);
    if (rc < 0)
        return rc;
    /* A NULL name only checks the passphrase against the keyslots. */
    rc = crypt_activate_by_passphrase(cd, NULL, CRYPT_ANY_SLOT,
                                      (const char *)vmseal_secret_cdata(pass),
                                      vmseal_secret_len(pass), 0);
    crypt_free(cd);
    return rc < 0 ? reject(path, rc) : 0;
}

int vmseal_disk_keyslot_add(const char *path, const vmseal_secret *pass,
                            const vmseal_secret *new_pass)
{
    struct crypt_device *cd = NULL;
    int rc = cs_load(path, &cd, NULL);
    if (rc < 0)
        return rc;
    int active = 0;
    for (int i = 0; i < VMSEAL_LUKS1_NUM_KEYSLOTS; i++) {
        crypt_keyslot_info ki = crypt_keyslot_status(cd, i);
        active += ki == CRYPT_SLOT_ACTIVE || ki == CRYPT_SLOT_ACTIVE_LAST;
    }
    if (active >= VMSEAL_LUKS1_NUM_KEYSLOTS)
        rc = vmseal_fail(ENOSPC, "%s: all %d keyslots are in use", path, VMSEAL_LUKS1_NUM_KEYSLOTS);
    else if ((rc = set_pbkdf(cd, path)) == 0) {
        rc = crypt_keyslot_add_by_passphrase(cd, CRYPT_ANY_SLOT,
                                             (const char *)vmseal_secret_cdata(pass),
                                             vmseal_secret_len(pass),
                                             (const char *)vmseal_secret_cdata(new_pass),
                                             vmseal_secret_len(new_pass));
        if (rc < 0)
            rc = reject(path, rc);
    }
    crypt_free(cd);
    return rc;
}

int vmseal_disk_keyslot_remove(const char *path, const vmseal_secret *pass_to_remove)
{
    struct crypt_device *cd = NULL;
    int rc = cs_load(path, &cd, NULL);
    if (rc < 0)
        return rc;
    int slot = crypt_activate_by_passphrase(cd, NULL, CRYPT_ANY_SLOT,
                                            (const char *)vmseal_secret_cdata(pass_to_remove),
                                            vmseal_secret_len(pass_to_remove), 0);
    if (slot < 0) {
        crypt_free(cd);
        return reject(path, slot);
    }
    int active = 0;
    for (int i = 0; i < VMSEAL_LUKS1_NUM_KEYSLOTS; i++) {
        crypt_keyslot_info ki = crypt_keyslot_status(cd, i);
        active += ki == CRYPT_SLOT_ACTIVE || ki == CRYPT_SLOT_ACTIVE_LAST;
    }
    if (active <= 1) {
        crypt_free(cd);
        return vmseal_fail(EBUSY, "%s: refusing to remove keyslot %d, the last one "
                           "(the disk would be unreadable)", path, slot);
    }
    rc = crypt_keyslot_destroy(cd, slot);
    crypt_free(cd);
    if (rc < 0)
        return vmseal_fail(-rc, "%s: cannot remove keyslot %d: %s", path, slot, cs_why(rc));
    return slot;
}

int vmseal_disk_passphrase_from_secret(const vmseal_secret *disk_secret,
                                       vmseal_secret **passphrase)
{
    *passphrase = NULL;
    size_t n = disk_secret ? vmseal_secret_len(disk_secret) : 0;
    if (n == 0 || n > 256)
        return vmseal_fail(EINVAL, "disk secret must be 1..256 bytes");
    vmseal_secret *p = vmseal_secret_new(2 * n + 1);
    if (!p)
        return vmseal_fail(ENOMEM, "out of memory");
    vmseal_hex_encode(vmseal_secret_cdata(disk_secret), n, (char *)vmseal_secret_data(p));
    vmseal_secret_truncate(p, 2 * n);
    *passphrase = p;
    return 0;
}
