/* vmseal-hostd — host encryption mode (hostmode.h). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hostmode.h"
#include "strutil.h"

#define DEFAULT_DIR "/var/lib/vmseal/cores"
#define CORE_PATTERN "/proc/sys/kernel/core_pattern"

/* A path the kernel's word splitting keeps whole. */
static int plain_path(const char *p)
{
    if (!p || p[0] != '/' || strlen(p) > 256)
        return 0;
    for (; *p; p++)
        if (*p <= ' ' || *p == '%' || *p == 0x7f)
            return 0;
    return 1;
}

static int check_key(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return vmseal_fail(errno, "core_dump_key %s: %s", path, strerror(errno));
    char buf[80];
    ssize_t n = read(fd, buf, sizeof(buf));
    close(fd);
    if (n == 65 && buf[64] == '\n')
        n = 64;
    uint8_t pub[32];
    if (n != 64 || vmseal_hex_decode(buf, 64, pub, 32) < 0)
        return vmseal_fail(EINVAL, "core_dump_key %s: not a host public key (64 hex digits; "
                                   "vmseal-crypto-util hostkey generate)", path);
    return 0;
}

static int read_pattern(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, len - 1);
    int e = errno;
    close(fd);
    if (n < 0)
        return -e;
    buf[n] = '\0';
    if (n > 0 && buf[n - 1] == '\n')
        buf[n - 1] = '\0';
    return 0;
}

int hostd_hostmode_setup(const hostd_hostmode_config *cfg, hostd_hostmode *out)
{
    memset(out, 0, sizeof(*out));
    const char *dir = cfg->dir ? cfg->dir : DEFAULT_DIR;
    char exe[PATH_MAX], handler[PATH_MAX];
    if (cfg->handler) {
        hostd_copy_str(handler, sizeof(handler), cfg->handler);
    } else {
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (n <= 0)
            return vmseal_fail(EIO, "encryption_mode: cannot find vmseal-hostd's folder");
        exe[n] = '\0';
        if (snprintf(handler, sizeof(handler), "%s/vmseal-coredump-handler", dirname(exe)) >=
            (int)sizeof(handler))
            return vmseal_fail(ENAMETOOLONG, "encryption_mode: the handler's path is too long");
    }
    if (!cfg->key)
        return vmseal_fail(EINVAL, "encryption_mode = yes needs core_dump_key = FILE");
    if (!plain_path(cfg->key) || !plain_path(dir) || !plain_path(handler))
        return vmseal_fail(EINVAL, "encryption_mode: core_dump_key, core_dump_dir and the "
                                   "handler must be absolute paths without spaces or %%");
    int r = check_key(cfg->key);
    if (r < 0)
        return r;
    if (access(handler, X_OK) != 0)
        return vmseal_fail(ENOENT, "encryption_mode: %s is not an executable", handler);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return vmseal_fail(errno, "core_dump_dir %s: %s", dir, strerror(errno));
    struct stat st;
    if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return vmseal_fail(ENOTDIR, "core_dump_dir %s is not a folder", dir);
    if (st.st_mode & 0077)
        return vmseal_fail(EPERM, "core_dump_dir %s is open to others (mode %o; 0700 wanted)",
                           dir, (unsigned)(st.st_mode & 0777));
    out->enabled = 1;
    /* %P: pid in the initial namespace, %e: the name, %t: the time */
    int pl = snprintf(out->pattern, sizeof(out->pattern), "|%s --key %s --dir %s %%P %%e %%t",
                      handler, cfg->key, dir);
    if (pl < 0 || (size_t)pl >= sizeof(out->pattern) || pl > 127)
        return vmseal_fail(ENAMETOOLONG, "encryption_mode: the core_pattern would be %d bytes, "
                                         "the kernel takes 127: use shorter paths", pl);
    const char *cp = cfg->core_pattern_path ? cfg->core_pattern_path : CORE_PATTERN;
    if (cfg->manage) {
        int fd = open(cp, O_WRONLY | O_CLOEXEC | O_TRUNC);
        size_t len = strlen(out->pattern);
        if (fd < 0 || write(fd, out->pattern, len) != (ssize_t)len)
            snprintf(out->error, sizeof(out->error), "cannot write %s: %s", cp, strerror(errno));
        if (fd >= 0)
            close(fd);
    }
    char now[1100];
    r = read_pattern(cp, now, sizeof(now));
    if (r < 0) {
        if (!out->error[0])
            snprintf(out->error, sizeof(out->error), "cannot read %s: %s", cp, strerror(-r));
    } else if (strcmp(now, out->pattern) != 0) {
        if (!out->error[0])
            snprintf(out->error, sizeof(out->error),
                     "%s is not vmseal-coredump-handler's (core dumps are not sealed)", cp);
    } else {
        out->installed = 1;
        out->error[0] = '\0';
    }
    return 0;
}

json_t *hostd_hostmode_json(const hostd_hostmode *m)
{
    if (!m || !m->enabled)
        return json_pack("{s:b}", "enabled", 0);
    return json_pack("{s:b, s:s, s:b, s:s?}", "enabled", 1, "core_pattern", m->pattern,
                     "installed", m->installed, "error", m->error[0] ? m->error : NULL);
}
