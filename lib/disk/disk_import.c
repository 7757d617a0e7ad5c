/* Import a disk image through QEMU's block layer (include/vmseal/diskimport.h).
 *
 * qemu-img does the format work (qcow2, vmdk, vdi, vhdx parsing and, for an
 * encrypted output, the LUKS1 data path of QEMU's `luks` driver); vmseal
 * formats the output (lib/disk/disk_header.c), drives the copy window by
 * window and keeps the resume checkpoint. qemu-img runs with only the
 * source, the output and the passphrase pipe open, stdin /dev/null,
 * PR_SET_NO_NEW_PRIVS, and dies with its parent.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include <vmseal/diskimport.h>

#include "disk_internal.h"

#define OP_IMPORT 4u              /* checkpoint op (after enum bulk_op) */
#define INFO_MAX (1u << 20)       /* qemu-img info output we read */
#define ERR_MAX 2048u             /* qemu-img's stderr we keep */
#define FD_SRC 3
#define FD_OUT 4
#define FD_PASS 5

/* ------------------------------------------------------------ detection */

static int has(const uint8_t *b, size_t len, size_t off, const void *magic, size_t n)
{
    return len >= off + n && memcmp(b + off, magic, n) == 0;
}

const char *vmseal_image_format_detect(const uint8_t *buf, size_t len)
{
    if (!buf || len < 512)
        return NULL;
    if (has(buf, len, 0, "QFI\xfb", 4)) {
        /* qcow2 is version 2 or 3 (big-endian u32 at 4); version 1 is
         * QEMU's old "qcow", not imported */
        uint32_t v = (uint32_t)buf[4] << 24 | (uint32_t)buf[5] << 16 | (uint32_t)buf[6] << 8 | buf[7];
        return v == 2 || v == 3 ? "qcow2" : NULL;
    }
    if (has(buf, len, 0, "QED\0", 4))
        return NULL;
    if (has(buf, len, 0, "KDMV", 4))
        return "vmdk";                         /* hosted sparse extent */
    if (has(buf, len, 0, "COWD", 4))
        return NULL;                           /* ESX sparse: extents of a descriptor */
    if (has(buf, len, 0, "# Disk DescriptorFile", 21))
        return NULL;                           /* a text descriptor naming other files */
    if (has(buf, len, 64, "\x7f\x10\xda\xbe", 4))
        return "vdi";                          /* little-endian 0xbeda107f at 0x40 */
    if (has(buf, len, 0, "vhdxfile", 8))
        return "vhdx";
    if (has(buf, len, 0, "LUKS\xba\xbe", 6))
        return "luks";
    if (has(buf, len, 0, "conectix", 8))
        return NULL;                           /* VHD (vpc): not in the list */
    return "raw";
}

int vmseal_image_format_importable(const char *f)
{
    static const char *const ok[] = {"raw", "qcow2", "vmdk", "vdi", "vhdx", NULL};
    for (size_t i = 0; f && ok[i]; i++)
        if (!strcmp(f, ok[i]))
            return 1;
    return 0;
}

/* ------------------------------------------------------------ qemu-img */

typedef struct child_io {
    int src, out, pass;            /* descriptors for FD_SRC, FD_OUT, FD_PASS (-1: none) */
    char *outbuf;                  /* stdout (info), NUL-terminated */
    size_t outlen;
    char err[ERR_MAX + 1];         /* stderr, cut */
    size_t errlen;
} child_io;

static void child_exec(const char *qemu_img, char *const argv[], const child_io *io, int outw,
                       int errw)
{
    /* In the child: only what qemu-img needs. */
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    (void)prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0)
        _exit(126);
    /* Move every source descriptor above the target numbers first. */
    int fds[3] = {io->src, io->out, io->pass};
    int targets[3] = {FD_SRC, FD_OUT, FD_PASS};
    int high[3];
    for (int i = 0; i < 3; i++)
        high[i] = fds[i] >= 0 ? fcntl(fds[i], F_DUPFD_CLOEXEC, 10) : -1;
    int ow = fcntl(outw, F_DUPFD_CLOEXEC, 10), ew = fcntl(errw, F_DUPFD_CLOEXEC, 10);
    if (ow < 0 || ew < 0 || dup2(devnull, 0) < 0 || dup2(ow, 1) < 0 || dup2(ew, 2) < 0)
        _exit(126);
    for (int i = 0; i < 3; i++)
        if (high[i] >= 0 && dup2(high[i], targets[i]) < 0)
            _exit(126);
    if (close_range(FD_PASS + 1, ~0u, 0) != 0) {
        for (int fd = FD_PASS + 1; fd < 1024; fd++)
            close(fd);
    }
    signal(SIGPIPE, SIG_DFL);
    execvp(qemu_img, argv);
    _exit(127);
}

/* Read what a pipe has now into a bounded buffer; 0 at EOF. */
static int drain(int fd, char *buf, size_t cap, size_t *len)
{
    char tmp[4096];
    ssize_t n = read(fd, tmp, sizeof(tmp));
    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 1 : 0;
    if (n == 0)
        return 0;
    size_t take = *len + (size_t)n > cap ? cap - *len : (size_t)n;
    memcpy(buf + *len, tmp, take);
    *len += take;
    return 1;
}

/* Run qemu-img; 0 when it exited 0. Raises -ECANCELED (the child killed)
 * when *cancel becomes set. want_out: keep stdout (bounded). */
static int run_qemu_img(const char *qemu_img, char *const argv[], child_io *io, int want_out,
                        volatile sig_atomic_t *cancel)
{
    int op[2] = {-1, -1}, ep[2] = {-1, -1};
    if (pipe2(op, O_CLOEXEC) != 0 || pipe2(ep, O_CLOEXEC) != 0) {
        int e = errno;
        for (int i = 0; i < 2; i++) {
            if (op[i] >= 0)
                close(op[i]);
        }
        return vmseal_fail(e, "pipe: %s", strerror(e));
    }
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(op[0]), close(op[1]), close(ep[0]), close(ep[1]);
        return vmseal_fail(e, "fork: %s", strerror(e));
    }
    if (pid == 0)
        child_exec(qemu_img, argv, io, op[1], ep[1]);
    close(op[1]);
    close(ep[1]);
    io->errlen = 0;
    io->outlen = 0;
    size_t cap = want_out ? INFO_MAX : 0;
    if (want_out) {
        io->outbuf = malloc(INFO_MAX + 1);
        if (!io->outbuf) {
            kill(pid, SIGKILL);
            cap = 0;
        }
    }
    int open_out = 1, open_err = 1, killed = 0;
    char sink[1];
    while (open_out || open_err) {
        struct pollfd p[2] = {{.fd = open_out ? op[0] : -1, .events = POLLIN},
                              {.fd = open_err ? ep[0] : -1, .events = POLLIN}};
        int n = poll(p, 2, 100);
        if (cancel && *cancel && !killed) {
            kill(pid, SIGKILL);
            killed = 1;
        }
        if (n <= 0)
            continue;
        if (p[0].revents)
            open_out = cap ? drain(op[0], io->outbuf, cap, &io->outlen)
                           : drain(op[0], sink, 0, &(size_t){0});
        if (p[1].revents)
            open_err = drain(ep[0], io->err, ERR_MAX, &io->errlen);
    }
    close(op[0]);
    close(ep[0]);
    if (io->outbuf)
        io->outbuf[io->outlen] = '\0';
    io->err[io->errlen] = '\0';
    /* one line of qemu-img's complaint, for the message */
    char *nl = strchr(io->err, '\n');
    if (nl)
        *nl = '\0';
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (killed)
        return vmseal_fail(ECANCELED, "cancelled");
    if (want_out && !io->outbuf)
        return vmseal_fail(ENOMEM, "out of memory");
    if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
        return vmseal_fail(ENOENT, "cannot run %s", qemu_img);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return vmseal_fail(EIO, "qemu-img failed: %s", io->errlen ? io->err : "no message");
    return 0;
}

/* The JSON block-node spec of the source: format driver over the file
 * descriptor, no backing file, no locking (the caller holds our own). */
static char *source_spec(const char *format, uint64_t off, uint64_t len)
{
    json_t *file = json_pack("{s:s, s:s, s:s}", "driver", "file", "filename", "/dev/fd/3",
                             "locking", "off");
    json_t *node = json_pack("{s:s, s:o}", "driver", format, "file", file);
    if (node && !strcmp(format, "qcow2"))
        json_object_set_new(node, "backing", json_null());
    json_t *top = len ? json_pack("{s:s, s:I, s:I, s:o}", "driver", "raw", "offset", (json_int_t)off,
                                  "size", (json_int_t)len, "file", node)
                      : node;
    char *s = top ? json_dumps(top, JSON_COMPACT) : NULL;
    json_decref(top);
    if (!s)
        return NULL;
    char *spec = NULL;
    if (asprintf(&spec, "json:%s", s) < 0)
        spec = NULL;
    free(s);
    return spec;
}

static char *target_spec(int luks, uint64_t off, uint64_t len)
{
    json_t *file = json_pack("{s:s, s:s, s:s}", "driver", "file", "filename", "/dev/fd/4",
                             "locking", "off");
    json_t *node = luks ? json_pack("{s:s, s:s, s:o}", "driver", "luks", "key-secret", "vmseal-pass",
                                    "file", file)
                        : file;
    json_t *top = json_pack("{s:s, s:I, s:I, s:o}", "driver", "raw", "offset", (json_int_t)off,
                            "size", (json_int_t)len, "file", node);
    char *s = top ? json_dumps(top, JSON_COMPACT) : NULL;
    json_decref(top);
    if (!s)
        return NULL;
    char *spec = NULL;
    if (asprintf(&spec, "json:%s", s) < 0)
        spec = NULL;
    free(s);
    return spec;
}

static const char *qemu_img_of(const vmseal_import_opts *io)
{
    return io && io->qemu_img ? io->qemu_img : "qemu-img";
}

/* Does a vmdk name any file but the source? */
static int vmdk_foreign_extents(json_t *fs, const char *filename)
{
    json_t *ext = json_object_get(json_object_get(fs, "data"), "extents");
    size_t i;
    json_t *e;
    json_array_foreach(ext, i, e) {
        const char *f = json_string_value(json_object_get(e, "filename"));
        if (!f || strcmp(f, filename))
            return 1;
    }
    return 0;
}

int vmseal_image_inspect(int src_fd, const char *src_name, const char *format,
                         const vmseal_import_opts *io, vmseal_image_info *info)
{
    memset(info, 0, sizeof(*info));
    const char *name = src_name ? src_name : "the source image";
    struct stat st;
    if (fstat(src_fd, &st) != 0)
        return vmseal_fail(errno, "%s: %s", name, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return vmseal_fail(EINVAL, "%s is not a regular file", name);
    uint8_t head[4096] = {0};
    ssize_t n = pread(src_fd, head, sizeof(head), 0);
    if (n < 0)
        return vmseal_fail(errno, "%s: %s", name, strerror(errno));
    /* detected on the first bytes, zero-padded */
    const char *seen = vmseal_image_format_detect(head, sizeof(head));
    if (!format && !seen)
        return vmseal_fail(ENOTSUP, "%s: an image format vmseal does not import (a vmdk "
                           "descriptor, QED, VHD, qcow version 1, ...)", name);
    if (n < 512)
        return vmseal_fail(EINVAL, "%s is too small to be a disk image (%zd bytes)", name, n);
    if (!format)
        format = seen;
    else if (strcmp(format, "raw") && (!seen || strcmp(format, seen))) {
        return vmseal_fail(EINVAL, "%s does not look like a %s image", name, format);
    }
    if (!strcmp(format, "luks"))
        return vmseal_fail(ENOTSUP, "%s is a LUKS image: adopt it (vmseal vm disk add --adopt) "
                           "instead of importing it", name);
    if (!vmseal_image_format_importable(format))
        return vmseal_fail(ENOTSUP, "%s: format %s is not imported (raw, qcow2, vmdk, vdi, vhdx)",
                           name, format);

    char *spec = source_spec(format, 0, 0);
    if (!spec)
        return vmseal_fail(ENOMEM, "out of memory");
    char *argv[] = {(char *)qemu_img_of(io), "info", "--output=json", spec, NULL};
    child_io cio = {.src = src_fd, .out = -1, .pass = -1};
    int rc = run_qemu_img(qemu_img_of(io), argv, &cio, 1, NULL);
    free(spec);
    json_t *j = NULL;
    if (rc == 0) {
        j = json_loadb(cio.outbuf, cio.outlen, 0, NULL);
        if (!json_is_object(j))
            rc = vmseal_fail(EIO, "qemu-img info: unreadable answer");
    }
    free(cio.outbuf);
    if (rc < 0) {
        json_decref(j);
        return rc == -EIO ? vmseal_fail(EINVAL, "%s cannot be read as %s: %s", name, format,
                                        vmseal_last_error())
                          : rc;
    }
    json_t *fs = json_object_get(j, "format-specific");
    json_t *vs = json_object_get(j, "virtual-size");
    const char *qfmt = json_string_value(json_object_get(j, "format"));
    if (json_object_get(j, "backing-filename") || json_object_get(j, "full-backing-filename"))
        rc = vmseal_fail(EINVAL, "%s has a backing file: import a self-contained image "
                         "(qemu-img convert it first)", name);
    else if (json_object_get(json_object_get(fs, "data"), "data-file"))
        rc = vmseal_fail(EINVAL, "%s keeps its data in an external file: refused", name);
    else if (json_is_true(json_object_get(j, "encrypted")))
        rc = vmseal_fail(ENOTSUP, "%s is encrypted by its own format: refused", name);
    else if (!strcmp(format, "vmdk") && vmdk_foreign_extents(fs, "/dev/fd/3"))
        rc = vmseal_fail(EINVAL, "%s names other files (vmdk extents): refused", name);
    else if (!qfmt || strcmp(qfmt, format))
        rc = vmseal_fail(EINVAL, "%s: qemu-img reads it as %s, not %s", name, qfmt ? qfmt : "?",
                         format);
    else if (!json_is_integer(vs) || json_integer_value(vs) <= 0 ||
             (uint64_t)json_integer_value(vs) > VMSEAL_IMPORT_MAX_SIZE)
        rc = vmseal_fail(EINVAL, "%s: its disk size must be 1 byte to 1 TiB", name);
    if (rc == 0) {
        snprintf(info->format, sizeof(info->format), "%s", format);
        info->virtual_size = (uint64_t)json_integer_value(vs);
        info->disk_size = (info->virtual_size + (1u << 20) - 1) / (1u << 20) * (1u << 20);
    }
    json_decref(j);
    return rc;
}

/* ------------------------------------------------------------ the run */

struct imp {
    char *path, *partial, *ckpt;
    int out;
    int owned;
    vmseal_secret *key;            /* the checkpoint's key */
    disk_checkpoint c;
};

static int lstat_exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

/* A plain output has no key: its checkpoint is authenticated under a fixed
 * one. Anyone who could forge it can write the plain image itself. */
static int plain_ckpt_key(vmseal_secret **k)
{
    static const char label[] = "vmseal plain import checkpoint (no secret)";
    return vmseal_secret_from(label, sizeof(label) - 1, k);
}

static int resume_point(struct imp *m, const vmseal_secret *pass, const char *uuid,
                        uint64_t *done, uint64_t *off)
{
    disk_checkpoint have;
    int rc;
    *off = 0;
    if (pass) {
        vmseal_disk_info di;
        rc = vmseal_disk_open_key(m->out, m->partial, pass, &di, &m->key);
        if (rc < 0)
            return rc;
        if (di.payload_bytes != m->c.total || (uuid && strcmp(uuid, di.uuid)))
            return -ESTALE;
        *off = di.payload_offset_bytes;
    } else {
        struct stat st;
        if (fstat(m->out, &st) != 0 || (uint64_t)st.st_size != m->c.total)
            return -ESTALE;
        rc = plain_ckpt_key(&m->key);
        if (rc < 0)
            return rc;
    }
    rc = vmseal_checkpoint_read(m->ckpt, m->key, &have);
    if (rc < 0)
        return rc;
    if (have.op != OP_IMPORT || have.total != m->c.total || have.src_dev != m->c.src_dev ||
        have.src_ino != m->c.src_ino || have.src_size != m->c.src_size ||
        have.src_mtime_ns != m->c.src_mtime_ns ||
        CRYPTO_memcmp(have.dst_header_sha256, m->c.dst_header_sha256, 32) != 0 ||
        have.done > have.total)
        return -ESTALE;
    *done = have.done;
    return 0;
}

static int fresh(struct imp *m, const vmseal_secret *pass, const char *uuid, uint64_t *off)
{
    if (m->out >= 0)
        close(m->out);
    m->out = -1;
    vmseal_secret_free(m->key);
    m->key = NULL;
    unlink(m->ckpt);
    unlink(m->partial);
    m->out = open(m->partial, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (m->out < 0)
        return vmseal_fail(errno, "%s: %s", m->partial, strerror(errno));
    int rc = vmseal_lock_exclusive(m->out, m->partial);
    m->owned = rc == 0;
    if (rc < 0)
        return rc;
    *off = 0;
    if (pass)
        return vmseal_luks_format(m->partial, m->out, m->c.total, pass, uuid, &m->key, off);
    if (ftruncate(m->out, (off_t)m->c.total) != 0)
        return vmseal_fail(errno, "%s: cannot size the image: %s", m->partial, strerror(errno));
    return plain_ckpt_key(&m->key);
}

static int copy_window(int src_fd, const char *format, struct imp *m, const vmseal_secret *pass,
                       uint64_t off, uint64_t len, const vmseal_import_opts *io,
                       volatile sig_atomic_t *cancel)
{
    int pp[2] = {-1, -1};
    if (pass) {
        if (pipe2(pp, O_CLOEXEC) != 0)
            return vmseal_fail(errno, "pipe: %s", strerror(errno));
        /* 64 bytes fit in any pipe buffer: written whole before the child
         * starts, read by QEMU's secret object from /dev/fd/5 */
        int w = vmseal_write_all(pp[1], vmseal_secret_cdata(pass), vmseal_secret_len(pass));
        close(pp[1]);
        if (w < 0) {
            close(pp[0]);
            return vmseal_fail(-w, "pipe: %s", strerror(-w));
        }
    }
    char *src = source_spec(format, off, len);
    char *dst = target_spec(pass != NULL, off, len);
    int rc = src && dst ? 0 : vmseal_fail(ENOMEM, "out of memory");
    if (rc == 0) {
        const char *img = qemu_img_of(io);
        char *argv[16];
        int k = 0;
        argv[k++] = (char *)img;
        argv[k++] = "convert";
        if (pass) {
            argv[k++] = "--object";
            argv[k++] = "secret,id=vmseal-pass,file=/dev/fd/5";
        }
        argv[k++] = "-n";
        /* A plain output is a fresh sparse file: zero areas of the source
         * stay holes. A hole in a LUKS payload would decrypt to noise, not
         * zeros, so an encrypted output gets its zeros written (encrypted). */
        if (!pass)
            argv[k++] = "--target-is-zero";
        argv[k++] = "-O";
        argv[k++] = "raw";
        argv[k++] = src;
        argv[k++] = dst;
        argv[k] = NULL;
        child_io cio = {.src = src_fd, .out = m->out, .pass = pp[0]};
        rc = run_qemu_img(img, argv, &cio, 0, cancel);
    }
    if (pp[0] >= 0)
        close(pp[0]);
    free(src);
    free(dst);
    return rc;
}

static int import_run(int src_fd, const char *src_name, const char *format, const char *out_path,
                      const vmseal_secret *pass, const vmseal_disk_opts *o,
                      const vmseal_import_opts *io, const vmseal_image_info *info)
{
    struct imp m = {.out = -1};
    int rc = 0;
    m.path = strdup(out_path);
    m.partial = vmseal_path_with_suffix(out_path, ".partial");
    m.ckpt = m.partial ? vmseal_path_with_suffix(m.partial, ".ckpt") : NULL;
    if (!m.path || !m.ckpt)
        rc = vmseal_fail(ENOMEM, "out of memory");
    if (rc == 0 && lstat_exists(out_path))
        rc = vmseal_fail(EEXIST, "%s already exists; refusing to overwrite it", out_path);
    if (rc == 0)
        rc = vmseal_lock_shared_read(src_fd, src_name);
    m.c.op = OP_IMPORT;
    m.c.total = info->disk_size;
    if (rc == 0)
        rc = vmseal_checkpoint_bind_source(src_fd, &m.c);
    uint64_t done = 0, off = 0;
    int resumed = 0;
    if (rc == 0) {
        m.out = open(m.partial, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (m.out < 0 && errno != ENOENT)
            rc = vmseal_fail(errno, "%s: %s", m.partial, strerror(errno));
        else if (m.out >= 0) {
            /* A qemu-img left by a run that was killed shares the partial's
             * open file (and so its lock) until its PR_SET_PDEATHSIG lands:
             * give it a moment before calling the image busy. */
            for (int tries = 0; (rc = vmseal_lock_exclusive(m.out, m.partial)) == -EBUSY && tries < 100;
                 tries++)
                nanosleep(&(struct timespec){.tv_nsec = 100000000}, NULL);
            m.owned = rc == 0;
            if (rc == 0 && pass)
                rc = vmseal_luks1_header_sha256(m.out, m.c.dst_header_sha256);
            if (rc == 0) {
                resumed = resume_point(&m, pass, o ? o->uuid : NULL, &done, &off) == 0;
                if (!resumed)
                    done = 0;
            } else if (rc != -EBUSY) {
                rc = 0;     /* not a LUKS header: start over */
            }
        }
    }
    if (rc == 0 && !resumed) {
        rc = fresh(&m, pass, o ? o->uuid : NULL, &off);
        memset(m.c.dst_header_sha256, 0, 32);
        if (rc == 0 && pass)
            rc = vmseal_luks1_header_sha256(m.out, m.c.dst_header_sha256);
        if (rc == 0 && fsync(m.out) != 0)
            rc = vmseal_fail(errno, "%s: fsync failed: %s", m.partial, strerror(errno));
        if (rc == 0) {
            m.c.done = 0;
            rc = vmseal_checkpoint_write(m.ckpt, &m.c, m.key);
        }
    }
    (void)off;
    uint64_t window = io && io->window ? io->window : VMSEAL_IMPORT_WINDOW;
    window = (window + VMSEAL_SECTOR_SIZE - 1) / VMSEAL_SECTOR_SIZE * VMSEAL_SECTOR_SIZE;
    if (rc == 0 && o && o->progress)
        o->progress(done, m.c.total, o->progress_ctx);
    while (rc == 0 && done < m.c.total) {
        if (o && o->cancel && *o->cancel) {
            rc = vmseal_fail(ECANCELED, "cancelled");
            break;
        }
        uint64_t len = m.c.total - done < window ? m.c.total - done : window;
        /* past the source's end (rounding up to 1 MiB) nothing is read */
        uint64_t src_len = done >= info->virtual_size ? 0
                           : (info->virtual_size - done < len ? info->virtual_size - done : len);
        if (src_len)
            rc = copy_window(src_fd, format, &m, pass, done, src_len, io, o ? o->cancel : NULL);
        if (rc == 0 && fdatasync(m.out) != 0)
            rc = vmseal_fail(errno, "%s: fdatasync failed: %s", m.partial, strerror(errno));
        if (rc == 0) {
            done += len;
            m.c.done = done;
            rc = vmseal_checkpoint_write(m.ckpt, &m.c, m.key);
        }
        if (rc == 0 && o && o->progress)
            o->progress(done, m.c.total, o->progress_ctx);
    }
    if (rc == 0 && fsync(m.out) != 0)
        rc = vmseal_fail(errno, "%s: fsync failed: %s", m.partial, strerror(errno));
    if (rc == 0) {
        unlink(m.ckpt);
        rc = vmseal_rename_noreplace(m.partial, out_path);
        if (rc == 0)
            rc = vmseal_fsync_parent_dir(out_path);
    } else if (rc != -ECANCELED && m.owned) {
        unlink(m.ckpt);
        unlink(m.partial);
    }
    if (m.out >= 0)
        close(m.out);
    vmseal_secret_free(m.key);
    free(m.path);
    free(m.partial);
    free(m.ckpt);
    return rc;
}

int vmseal_disk_import_at(int src_fd, const char *src_name, const char *format, int out_dirfd,
                          const char *out_name, const vmseal_secret *pass,
                          const vmseal_disk_opts *o, const vmseal_import_opts *io,
                          vmseal_image_info *info)
{
    vmseal_image_info own;
    if (!out_name || !*out_name)
        return vmseal_fail(EINVAL, "import: no output name");
    if (!info || !info->format[0]) {
        int rc = vmseal_image_inspect(src_fd, src_name, format, io, &own);
        if (rc < 0)
            return rc;
        if (info)
            *info = own;
        info = &own;
    }
    if (out_dirfd != AT_FDCWD &&
        (strchr(out_name, '/') || !strcmp(out_name, ".") || !strcmp(out_name, "..") ||
         strlen(out_name) > 255))
        return vmseal_fail(EINVAL, "%s: an image in a folder is a file name, not a path", out_name);
    char path[4096 + 64];
    char prefix[40] = "";
    if (out_dirfd != AT_FDCWD)
        snprintf(prefix, sizeof(prefix), "/proc/self/fd/%d/", out_dirfd);
    if ((size_t)snprintf(path, sizeof(path), "%s%s", prefix, out_name) >= sizeof(path))
        return vmseal_fail(ENAMETOOLONG, "image path too long");
    int rc = import_run(src_fd, src_name, info->format, path, pass, o, io, info);
    if (rc < 0 && prefix[0]) {
        /* messages name the image by its name, not by the /proc path */
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s", vmseal_last_error());
        size_t pl = strlen(prefix);
        char *hit;
        while ((hit = strstr(msg, prefix)) != NULL)
            memmove(hit, hit + pl, strlen(hit + pl) + 1);
        return vmseal_fail(-rc, "%s", msg);
    }
    return rc;
}

/* ------------------------------------------------------------ adopt */

int vmseal_disk_adopt(const char *path, const vmseal_secret *old_pass,
                      const vmseal_secret *new_pass, int remove_old, vmseal_disk_info *info)
{
    vmseal_disk_info own;
    if (!info)
        info = &own;
    if (!path || !old_pass || !new_pass)
        return vmseal_fail(EINVAL, "adopt: missing argument");
    int rc = vmseal_disk_probe(path, info);
    if (rc < 0)
        return rc;
    rc = vmseal_disk_check_cipher(path, info);
    if (rc < 0)
        return rc;
    rc = vmseal_disk_check_unused(path);
    if (rc < 0)
        return rc;
    int have_new = vmseal_disk_verify_passphrase(path, new_pass) == 0;
    int old_ok = vmseal_disk_verify_passphrase(path, old_pass) == 0;
    if (!old_ok && !(have_new && remove_old))
        return vmseal_fail(EKEYREJECTED, "%s: the passphrase given opens no keyslot", path);
    if (!have_new) {
        rc = vmseal_disk_keyslot_add(path, old_pass, new_pass);
        if (rc < 0)
            return rc;
        rc = vmseal_disk_verify_passphrase(path, new_pass);
        if (rc < 0)
            return vmseal_fail(EIO, "%s: the new keyslot does not open", path);
    }
    if (remove_old && old_ok) {
        if (vmseal_secret_cmp(old_pass, new_pass) == 0)
            return vmseal_fail(EINVAL, "%s: the old passphrase is vmseal's own", path);
        rc = vmseal_disk_keyslot_remove(path, old_pass);
        if (rc < 0)
            return rc;
    }
    return vmseal_disk_probe(path, info);
}
