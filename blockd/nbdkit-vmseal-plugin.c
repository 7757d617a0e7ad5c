/* nbdkit-vmseal-plugin: the decrypted view of a vmseal LUKS1 disk
 * (aes-xts-plain64) served by nbdkit, so QEMU reaches an encrypted disk
 * through its NBD client on a unix socket instead of its own luks driver.
 *
 *   nbdkit -f -U SOCK PATH/nbdkit-vmseal-plugin.so file=IMAGE keyfd=N
 *   nbdkit -f -U SOCK PATH/nbdkit-vmseal-plugin.so file=IMAGE passfd=N
 *
 * keyfd=N: the LUKS volume key (32 or 64 raw bytes) is read from the
 *   inherited descriptor N until EOF (a pipe or socketpair end from the key
 *   custody process); it is checked against the header's master-key digest
 *   (libcryptsetup) before a single byte is served.
 * passfd=N: the LUKS passphrase (vmseal: hex of the disk secret) is read
 *   from N instead and opens a keyslot through libcryptsetup.
 * raw=1: a plain (unencrypted) image, served as it is, no key (hostd's
 *   disk export of a plain VM: the image is opened before nbdkit drops to
 *   its -u user, which nbdkit's file plugin does not do).
 * Only the descriptor number is in argv; the key lives in vmseal_secret
 * (locked, not dumped, not inherited by fork). It is read and checked in
 * .get_ready, before nbdkit binds its socket; nbdkit must run in the
 * foreground (-f), which .after_fork enforces (the daemonising fork would
 * lose the MADV_DONTFORK key pages).
 *
 * Data path: every request is whole 512-byte sectors (the plugin advertises
 * minimum block size 512 and refuses anything else with EINVAL before any
 * I/O); a read is one pread of the ciphertext and an in-place multi-sector
 * XTS decrypt, a write one XTS encrypt into a per-thread buffer and one
 * pwrite. nbdkit runs requests on parallel threads; each thread has its own
 * OpenSSL contexts. FLUSH = fdatasync of the image; FUA = fdatasync after
 * the write, before the reply. There is no cache in this process: a reply
 * means the bytes were handed to the kernel (and, with FUA/FLUSH, to the
 * disk). If the process dies, QEMU's NBD client fails outstanding and later
 * requests with EIO; nothing is ever answered from stale state.
 */
#define NBDKIT_API_VERSION 2
#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libcryptsetup.h>
#include <nbdkit-plugin.h>

#include <vmseal/disk.h>
#include <vmseal/secret.h>
#include <vmseal/xts.h>

#define MAX_REQUEST (32u * 1024 * 1024)   /* nbdkit's own limit; advertised */

static char *image_path;
static int key_fd = -1, pass_fd = -1;
static int image_fd = -1;
static int image_readonly;
static int raw_image;
static uint64_t payload_off, payload_len;
static vmseal_secret *volume_key;
static pthread_key_t tls_key;

typedef struct worker {
    vmseal_xts *xts;
    uint8_t *buf;        /* ciphertext staging for writes */
    size_t cap;
} worker;

static void worker_free(void *p)
{
    worker *w = p;
    if (!w)
        return;
    vmseal_xts_free(w->xts);
    free(w->buf);
    free(w);
}

static worker *get_worker(void)
{
    worker *w = pthread_getspecific(tls_key);
    if (w)
        return w;
    w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    if (vmseal_xts_new(volume_key, &w->xts) < 0 || pthread_setspecific(tls_key, w) != 0) {
        worker_free(w);
        return NULL;
    }
    return w;
}

static int parse_fd(const char *value, int *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno || !end || *end || end == value || v < 0 || v > INT_MAX) {
        nbdkit_error("not a file descriptor number: %s", value);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int vs_config(const char *key, const char *value)
{
    if (strcmp(key, "file") == 0) {
        free(image_path);
        image_path = nbdkit_realpath(value);
        return image_path ? 0 : -1;
    }
    if (strcmp(key, "keyfd") == 0)
        return parse_fd(value, &key_fd);
    if (strcmp(key, "passfd") == 0)
        return parse_fd(value, &pass_fd);
    if (strcmp(key, "raw") == 0) {
        raw_image = nbdkit_parse_bool(value);
        return raw_image < 0 ? -1 : 0;
    }
    nbdkit_error("unknown parameter '%s'", key);
    return -1;
}

static int vs_config_complete(void)
{
    if (!image_path) {
        nbdkit_error("file=IMAGE is required");
        return -1;
    }
    if (raw_image && (key_fd >= 0 || pass_fd >= 0)) {
        nbdkit_error("raw=1 takes no key");
        return -1;
    }
    if (!raw_image && (key_fd < 0) == (pass_fd < 0)) {
        nbdkit_error("exactly one of keyfd=N or passfd=N is required");
        return -1;
    }
    return 0;
}

/* Check a volume key against the image header (PBKDF2 digest compare). */
static int verify_volume_key(const vmseal_secret *vk)
{
    struct crypt_device *cd = NULL;
    int rc = crypt_init(&cd, image_path);
    if (rc == 0)
        rc = crypt_load(cd, CRYPT_LUKS1, NULL);
    if (rc == 0)
        rc = crypt_volume_key_verify(cd, (const char *)vmseal_secret_cdata(vk),
                                     vmseal_secret_len(vk));
    crypt_free(cd);
    return rc;
}

/* Key and image are checked before nbdkit binds its socket, so a server
 * with a wrong key never accepts a client. */
static pid_t ready_pid;

static int open_image(void);

static int vs_get_ready(void)
{
    ready_pid = getpid();
    if (raw_image) {
        payload_off = 0;
        return open_image();
    }
    vmseal_disk_info info;
    int rc = vmseal_disk_probe(image_path, &info);
    if (rc < 0 || !info.is_luks) {
        nbdkit_error("%s: not a LUKS1 disk (%s)", image_path, vmseal_last_error());
        return -1;
    }
    if (strcmp(info.cipher, "aes") != 0 || strcmp(info.cipher_mode, "xts-plain64") != 0 ||
        (info.key_bits != 512 && info.key_bits != 256)) {
        nbdkit_error("%s: cipher %s-%s/%u is not aes-xts-plain64", image_path, info.cipher,
                     info.cipher_mode, info.key_bits);
        return -1;
    }
    if (key_fd >= 0) {
        rc = vmseal_secret_read_fd(key_fd, 64, &volume_key);
        close(key_fd);
        key_fd = -1;
        if (rc < 0) {
            nbdkit_error("cannot read the volume key: %s", vmseal_last_error());
            return -1;
        }
        if (vmseal_secret_len(volume_key) != info.key_bits / 8 ||
            verify_volume_key(volume_key) < 0) {
            nbdkit_error("%s: the volume key given does not match the header", image_path);
            return -1;
        }
    } else {
        vmseal_secret *pass = NULL;
        rc = vmseal_secret_read_fd(pass_fd, 512, &pass);
        close(pass_fd);
        pass_fd = -1;
        if (rc == 0) {
            size_t n = vmseal_secret_len(pass);
            if (n && vmseal_secret_cdata(pass)[n - 1] == '\n')
                vmseal_secret_truncate(pass, n - 1);
            rc = vmseal_disk_volume_key(image_path, pass, &volume_key, NULL);
        }
        vmseal_secret_free(pass);
        if (rc < 0) {
            nbdkit_error("%s: cannot open a keyslot: %s", image_path, vmseal_last_error());
            return -1;
        }
    }
    /* A handle now proves OpenSSL accepts the key before we serve. */
    vmseal_xts *probe = NULL;
    if (vmseal_xts_new(volume_key, &probe) < 0) {
        nbdkit_error("%s", vmseal_last_error());
        return -1;
    }
    vmseal_xts_free(probe);
    payload_off = info.payload_offset_bytes;
    return open_image();
}

/* Open the image (as the user nbdkit starts as) and size the export. */
static int open_image(void)
{
    image_fd = open(image_path, O_RDWR | O_CLOEXEC);
    if (image_fd < 0 && (errno == EACCES || errno == EROFS)) {
        image_fd = open(image_path, O_RDONLY | O_CLOEXEC);
        image_readonly = 1;
    }
    struct stat st;
    if (image_fd < 0 || fstat(image_fd, &st) != 0) {
        nbdkit_error("%s: %m", image_path);
        return -1;
    }
    if ((uint64_t)st.st_size < payload_off) {
        nbdkit_error("%s: truncated image", image_path);
        return -1;
    }
    payload_len = ((uint64_t)st.st_size - payload_off) & ~(uint64_t)(VMSEAL_SECTOR_SIZE - 1);
    if (pthread_key_create(&tls_key, worker_free) != 0) {
        nbdkit_error("pthread_key_create failed");
        return -1;
    }
    return 0;
}

/* vmseal_secret pages are MADV_DONTFORK: nbdkit's daemonising fork would
 * leave the child without the key. */
static int vs_after_fork(void)
{
    if (getpid() != ready_pid) {
        nbdkit_error("run nbdkit in the foreground (-f): the volume key does not "
                     "survive its daemonising fork");
        return -1;
    }
    return 0;
}

static void vs_unload(void)
{
    if (image_fd >= 0)
        close(image_fd);
    vmseal_secret_free(volume_key);
    free(image_path);
}

static void *vs_open(int readonly)
{
    static int handle;
    return &handle;
}

static int64_t vs_get_size(void *h) { return (int64_t)payload_len; }
static int vs_can_write(void *h) { return !image_readonly; }
static int vs_can_flush(void *h) { return 1; }
static int vs_can_fua(void *h) { return NBDKIT_FUA_NATIVE; }
static int vs_can_multi_conn(void *h) { return 1; }

static int vs_block_size(void *h, uint32_t *minimum, uint32_t *preferred, uint32_t *maximum)
{
    *minimum = VMSEAL_SECTOR_SIZE;
    *preferred = 4096;
    *maximum = MAX_REQUEST;
    return 0;
}

/* nbdkit already refused requests past the end; also refuse what the data
 * path cannot express without read-modify-write. */
static int check_request(uint32_t count, uint64_t offset)
{
    if ((offset | count) & (VMSEAL_SECTOR_SIZE - 1) || count > MAX_REQUEST ||
        offset > payload_len || count > payload_len - offset) {
        nbdkit_error("request %" PRIu32 "@%" PRIu64 " is not whole sectors inside the disk",
                     count, offset);
        nbdkit_set_error(EINVAL);
        return -1;
    }
    return 0;
}

static int full_pread(uint8_t *buf, size_t n, uint64_t off)
{
    while (n) {
        ssize_t r = pread(image_fd, buf, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            nbdkit_set_error(r < 0 ? errno : EIO);
            nbdkit_error("pread: %s", r < 0 ? strerror(errno) : "short read");
            return -1;
        }
        buf += r, n -= (size_t)r, off += (uint64_t)r;
    }
    return 0;
}

static int full_pwrite(const uint8_t *buf, size_t n, uint64_t off)
{
    while (n) {
        ssize_t r = pwrite(image_fd, buf, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            nbdkit_set_error(r < 0 ? errno : EIO);
            nbdkit_error("pwrite: %s", r < 0 ? strerror(errno) : "short write");
            return -1;
        }
        buf += r, n -= (size_t)r, off += (uint64_t)r;
    }
    return 0;
}

static int sync_image(void)
{
    if (fdatasync(image_fd) != 0) {
        nbdkit_set_error(errno);
        nbdkit_error("fdatasync: %m");
        return -1;
    }
    return 0;
}

static int vs_pread(void *h, void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
    if (check_request(count, offset) < 0)
        return -1;
    if (raw_image)
        return full_pread(buf, count, offset);
    worker *w = get_worker();
    if (!w) {
        nbdkit_set_error(ENOMEM);
        return -1;
    }
    if (full_pread(buf, count, payload_off + offset) < 0)
        return -1;
    if (vmseal_xts_decrypt(w->xts, offset / VMSEAL_SECTOR_SIZE, buf, buf,
                           count / VMSEAL_SECTOR_SIZE) < 0) {
        memset(buf, 0, count);   /* never hand out half-decrypted data */
        nbdkit_set_error(EIO);
        return -1;
    }
    return 0;
}

static int vs_pwrite(void *h, const void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
    if (check_request(count, offset) < 0)
        return -1;
    if (raw_image) {
        if (full_pwrite(buf, count, offset) < 0)
            return -1;
        return (flags & NBDKIT_FLAG_FUA) ? sync_image() : 0;
    }
    worker *w = get_worker();
    if (w && w->cap < count) {
        uint8_t *nb = realloc(w->buf, count);
        if (nb)
            w->buf = nb, w->cap = count;
    }
    if (!w || w->cap < count) {
        nbdkit_set_error(ENOMEM);
        return -1;
    }
    if (vmseal_xts_encrypt(w->xts, offset / VMSEAL_SECTOR_SIZE, buf, w->buf,
                           count / VMSEAL_SECTOR_SIZE) < 0) {
        nbdkit_set_error(EIO);
        return -1;
    }
    if (full_pwrite(w->buf, count, payload_off + offset) < 0)
        return -1;
    if ((flags & NBDKIT_FLAG_FUA) && sync_image() < 0)
        return -1;
    return 0;
}

static int vs_flush(void *h, uint32_t flags)
{
    return sync_image();
}

static struct nbdkit_plugin plugin = {
    .name = "vmseal",
    .longname = "vmseal LUKS1 (aes-xts-plain64) disk",
    .version = "1",
    .description = "decrypted view of a vmseal LUKS1 disk image",
    .config = vs_config,
    .config_complete = vs_config_complete,
    .config_help = "file=IMAGE    the LUKS1 image (required)\n"
                   "keyfd=N       read the volume key from descriptor N, or\n"
                   "passfd=N      read the LUKS passphrase from descriptor N, or\n"
                   "raw=1         a plain image (no key)",
    .magic_config_key = "file",
    .get_ready = vs_get_ready,
    .after_fork = vs_after_fork,
    .unload = vs_unload,
    .open = vs_open,
    .get_size = vs_get_size,
    .can_write = vs_can_write,
    .can_flush = vs_can_flush,
    .can_fua = vs_can_fua,
    .can_multi_conn = vs_can_multi_conn,
    .block_size = vs_block_size,
    .pread = vs_pread,
    .pwrite = vs_pwrite,
    .flush = vs_flush,
    .errno_is_preserved = 0,
};

NBDKIT_REGISTER_PLUGIN(plugin)
