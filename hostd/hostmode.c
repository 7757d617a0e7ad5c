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
#define MODE_FILE "encryption-mode"            /* in the core folder: "on" or "off" */
#define BEFORE_FILE "core_pattern.before"      /* the kernel's pattern before enabling */

static int install(const hostd_hostmode_config *cfg, hostd_hostmode *out);
static int in_dir(const char *dir, const char *name, char *buf, size_t len);
static int write_small(const char *dir, const char *name, const char *text);

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
    return install(cfg, out);
}

/* Check cfg and install (or check) the pattern into out's status fields. */
static int install(const hostd_hostmode_config *cfg, hostd_hostmode *out)
{
    out->enabled = out->installed = 0;
    out->pattern[0] = out->error[0] = '\0';
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
        /* the kernel's pattern as it was, for hostd_hostmode_disable */
        char before[1100], bpath[600];
        struct stat bst;
        if (read_pattern(cp, before, sizeof(before)) == 0 && strcmp(before, out->pattern) != 0 &&
            in_dir(dir, BEFORE_FILE, bpath, sizeof(bpath)) == 0 && lstat(bpath, &bst) != 0 &&
            (r = write_small(dir, BEFORE_FILE, before)) < 0)
            return r;
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

/* ------------------------------------------------- on and off at run time */

static hostd_hostmode_config config_of(const hostd_hostmode *m)
{
    hostd_hostmode_config c = {.key = m->key[0] ? m->key : NULL, .dir = m->dir,
                               .handler = m->handler[0] ? m->handler : NULL,
                               .manage = m->manage,
                               .core_pattern_path = m->core_pattern_path};
    return c;
}

static int in_dir(const char *dir, const char *name, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= len)
        return vmseal_fail(ENAMETOOLONG, "core_dump_dir: path too long");
    return 0;
}

/* Write a small file whole (temporary name, fsync, rename). */
static int write_small(const char *dir, const char *name, const char *text)
{
    char path[600], tmp[640];
    int r = in_dir(dir, name, path, sizeof(path));
    if (r < 0)
        return r;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return vmseal_fail(errno, "%s: %s", tmp, strerror(errno));
    size_t len = strlen(text);
    int ok = write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
    int e = errno;
    close(fd);
    if (!ok || rename(tmp, path) != 0) {
        e = ok ? errno : e;
        unlink(tmp);
        return vmseal_fail(e, "%s: %s", path, strerror(e));
    }
    return 0;
}

static int remember(const hostd_hostmode *m, int on)
{
    return write_small(m->dir, MODE_FILE, on ? "on\n" : "off\n");
}

int hostd_hostmode_init(const hostd_hostmode_config *cfg, int conf_enabled, hostd_hostmode *out)
{
    memset(out, 0, sizeof(*out));
    const char *tp = getenv("VMSEAL_TEST_CORE_PATTERN_FILE");
    hostd_copy_str(out->core_pattern_path, sizeof(out->core_pattern_path),
                   cfg->core_pattern_path ? cfg->core_pattern_path : tp && *tp ? tp : CORE_PATTERN);
    hostd_copy_str(out->dir, sizeof(out->dir), cfg->dir ? cfg->dir : DEFAULT_DIR);
    out->manage = cfg->manage;
    if (cfg->handler)
        hostd_copy_str(out->handler, sizeof(out->handler), cfg->handler);
    if (!cfg->key) {
        if (conf_enabled)
            return vmseal_fail(EINVAL, "encryption_mode = yes needs core_dump_key = FILE");
        return 0;
    }
    if (strlen(cfg->key) >= sizeof(out->key) ||
        strlen(cfg->dir ? cfg->dir : DEFAULT_DIR) >= sizeof(out->dir) ||
        (cfg->handler && strlen(cfg->handler) >= sizeof(out->handler)))
        return vmseal_fail(ENAMETOOLONG, "encryption_mode: paths too long");
    hostd_copy_str(out->key, sizeof(out->key), cfg->key);
    out->configured = 1;
    /* the last choice made through the API wins over hostd.conf */
    char path[600], buf[8];
    int on = conf_enabled;
    if (in_dir(out->dir, MODE_FILE, path, sizeof(path)) == 0 &&
        read_pattern(path, buf, sizeof(buf)) == 0)
        on = strcmp(buf, "on") == 0;
    if (!on)
        return 0;
    hostd_hostmode_config c = config_of(out);
    return install(&c, out);
}

int hostd_hostmode_enable(hostd_hostmode *m)
{
    if (!m || !m->configured)
        return vmseal_fail(ENOKEY, "host encryption mode needs a host key: core_dump_key = FILE "
                                   "in hostd.conf (vmseal-crypto-util hostkey generate)");
    if (m->enabled)
        return 0;
    hostd_hostmode_config c = config_of(m);
    hostd_hostmode tmp = *m;
    int r = install(&c, &tmp);   /* checks key, handler and folder first */
    if (r < 0)
        return r;
    *m = tmp;
    return remember(m, 1);
}

int hostd_hostmode_disable(hostd_hostmode *m)
{
    if (!m || !m->enabled)
        return 0;
    if (m->manage) {
        char path[600], before[1100];
        if (in_dir(m->dir, BEFORE_FILE, path, sizeof(path)) < 0 ||
            read_pattern(path, before, sizeof(before)) < 0)
            hostd_copy_str(before, sizeof(before), "core");
        int fd = open(m->core_pattern_path, O_WRONLY | O_CLOEXEC | O_TRUNC);
        size_t len = strlen(before);
        int ok = fd >= 0 && write(fd, before, len) == (ssize_t)len;
        int e = errno;
        if (fd >= 0)
            close(fd);
        if (!ok)
            return vmseal_fail(e, "cannot write %s: %s", m->core_pattern_path, strerror(e));
        if (in_dir(m->dir, BEFORE_FILE, path, sizeof(path)) == 0)
            unlink(path);
    }
    m->enabled = m->installed = 0;
    m->pattern[0] = m->error[0] = '\0';
    return remember(m, 0);
}
