/* Disk descriptor "<image>.vmdesc": parse, format, atomic write (diskdesc.h). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include <vmseal/diskdesc.h>

int vmseal_uuid_valid(const char *s)
{
    if (!s || strlen(s) != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return 0;
        }
    }
    return 1;
}

int vmseal_uuid_random(char out[37])
{
    uint8_t b[16];
    if (RAND_bytes(b, sizeof(b)) != 1)
        return vmseal_fail(EIO, "uuid: random generator failed");
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    char hex[33];
    vmseal_hex_encode(b, 16, hex);
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
    return 0;
}

void vmseal_disk_object_id(const char *uuid, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s%s", VMSEAL_DISK_OBJECT_PREFIX, uuid);
    /* LUKS UUIDs compare case-insensitively: bind the lower-case form. */
    for (char *p = out; *p; p++)
        if (*p >= 'A' && *p <= 'F')
            *p = (char)(*p - 'A' + 'a');
}

char *vmseal_diskdesc_path(const char *image)
{
    size_t n = strlen(image);
    char *p = malloc(n + sizeof(VMSEAL_DISKDESC_SUFFIX));
    if (!p)
        return NULL;
    memcpy(p, image, n);
    memcpy(p + n, VMSEAL_DISKDESC_SUFFIX, sizeof(VMSEAL_DISKDESC_SUFFIX));
    return p;
}

static int is_space(char c) { return c == ' ' || c == '\t'; }

int vmseal_diskdesc_parse(const char *text, size_t len, vmseal_diskdesc *d)
{
    memset(d, 0, sizeof(*d));
    if (len > VMSEAL_DISKDESC_MAX)
        return vmseal_fail(EPROTO, "disk descriptor: longer than %d bytes", VMSEAL_DISKDESC_MAX);
    if (memchr(text, '\0', len))
        return vmseal_fail(EPROTO, "disk descriptor: contains a NUL byte (not text)");
    enum { K_VERSION, K_FORMAT, K_UUID, K_KEYSAFE, K_STATE, K_N };
    static const char *const keys[K_N] = {"version", "format", "uuid", "keysafe", "state"};
    int seen[K_N] = {0};
    size_t pos = 0;
    unsigned lineno = 0;
    while (pos < len) {
        lineno++;
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - line) : len - pos;
        pos += ll + (nl ? 1 : 0);
        if (ll > 0 && line[ll - 1] == '\r')
            ll--;
        size_t a = 0;
        while (a < ll && is_space(line[a]))
            a++;
        if (a == ll || line[a] == '#')
            continue;
        size_t k0 = a;
        while (a < ll && ((line[a] >= 'a' && line[a] <= 'z') || line[a] == '_'))
            a++;
        size_t klen = a - k0;
        while (a < ll && is_space(line[a]))
            a++;
        if (klen == 0 || a == ll || line[a] != '=')
            return vmseal_fail(EPROTO, "disk descriptor line %u: expected 'key = value'", lineno);
        a++;
        while (a < ll && is_space(line[a]))
            a++;
        size_t vend = ll;
        while (vend > a && is_space(line[vend - 1]))
            vend--;
        const char *val = line + a;
        size_t vlen = vend - a;
        int k = -1;
        for (int i = 0; i < K_N; i++)
            if (strlen(keys[i]) == klen && memcmp(keys[i], line + k0, klen) == 0)
                k = i;
        if (k < 0) {
            if (klen > 2 && memcmp(line + k0, "x_", 2) == 0)
                continue;
            return vmseal_fail(EPROTO, "disk descriptor line %u: unknown key '%.*s'", lineno,
                               (int)(klen > 40 ? 40 : klen), line + k0);
        }
        if (seen[k]++)
            return vmseal_fail(EPROTO, "disk descriptor line %u: '%s' given twice", lineno,
                               keys[k]);
        switch (k) {
        case K_VERSION:
            if (vlen != 1 || val[0] != '1')
                return vmseal_fail(ENOTSUP, "disk descriptor: version '%.*s' is not supported "
                                            "(this vmseal reads version 1)",
                                   (int)(vlen > 20 ? 20 : vlen), val);
            d->version = 1;
            break;
        case K_FORMAT:
            if (vlen != 5 || memcmp(val, "luks1", 5) != 0)
                return vmseal_fail(ENOTSUP, "disk descriptor: disk format '%.*s' is not "
                                            "supported (only luks1)",
                                   (int)(vlen > 20 ? 20 : vlen), val);
            memcpy(d->format, "luks1", 6);
            break;
        case K_UUID:
            if (vlen != 36)
                return vmseal_fail(EPROTO, "disk descriptor line %u: bad uuid", lineno);
            memcpy(d->uuid, val, 36);
            if (!vmseal_uuid_valid(d->uuid))
                return vmseal_fail(EPROTO, "disk descriptor line %u: bad uuid", lineno);
            break;
        case K_KEYSAFE: {
            if (vlen > VMSEAL_KEYSAFE_LINE_MAX)
                return vmseal_fail(EPROTO, "disk descriptor line %u: key safe too long", lineno);
            memcpy(d->keysafe, val, vlen);
            d->keysafe[vlen] = '\0';
            int rc = vmseal_keysafe_parse(d->keysafe, NULL);
            if (rc < 0) {
                char why[256];
                snprintf(why, sizeof(why), "%s", vmseal_last_error());
                return vmseal_fail(rc, "disk descriptor line %u: %s", lineno, why);
            }
            break;
        }
        case K_STATE:
            if (vlen != 10 || memcmp(val, "incomplete", 10) != 0)
                return vmseal_fail(EPROTO, "disk descriptor line %u: unknown state", lineno);
            d->incomplete = 1;
            break;
        }
    }
    for (int i = 0; i < K_STATE; i++)
        if (!seen[i])
            return vmseal_fail(EPROTO, "disk descriptor: '%s' is missing", keys[i]);
    return 0;
}

int vmseal_diskdesc_read(const char *path, vmseal_diskdesc *d)
{
    memset(d, 0, sizeof(*d));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return vmseal_fail(errno, "%s: %s", path, strerror(errno));
    char *buf = malloc(VMSEAL_DISKDESC_MAX + 1);
    if (!buf) {
        close(fd);
        return vmseal_fail(ENOMEM, "out of memory");
    }
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, buf + got, VMSEAL_DISKDESC_MAX + 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            free(buf);
            return vmseal_fail(e, "%s: %s", path, strerror(e));
        }
        if (r == 0 || (got += (size_t)r) > VMSEAL_DISKDESC_MAX)
            break;
    }
    close(fd);
    int rc = vmseal_diskdesc_parse(buf, got, d);
    free(buf);
    if (rc < 0) {
        char why[384];
        snprintf(why, sizeof(why), "%s", vmseal_last_error());
        return vmseal_fail(rc, "%s: %s", path, why);
    }
    return 0;
}

int vmseal_diskdesc_write(const char *path, const vmseal_diskdesc *d, int replace)
{
    if (!vmseal_uuid_valid(d->uuid))
        return vmseal_fail(EINVAL, "disk descriptor: bad uuid");
    int rc = vmseal_keysafe_parse(d->keysafe, NULL);
    if (rc < 0)
        return rc;
    char text[VMSEAL_KEYSAFE_LINE_MAX + 256];
    int n = snprintf(text, sizeof(text),
                     "# vmseal disk descriptor (docs/formats.md). The key safe only\n"
                     "# unwraps for the disk with this LUKS UUID.\n"
                     "version = 1\nformat = luks1\nuuid = %s\nkeysafe = %s\n%s",
                     d->uuid, d->keysafe, d->incomplete ? "state = incomplete\n" : "");
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp)
        return vmseal_fail(ENOMEM, "out of memory");
    snprintf(tmp, plen + 16, "%s.tmp-XXXXXX", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        rc = vmseal_fail(errno, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    ssize_t w = write(fd, text, (size_t)n);
    if (w != n || fchmod(fd, 0600) != 0 || fsync(fd) != 0) {
        rc = vmseal_fail(errno ? errno : EIO, "%s: write failed: %s", tmp, strerror(errno));
        close(fd);
        goto fail;
    }
    close(fd);
    if (replace) {
        if (rename(tmp, path) != 0) {
            rc = vmseal_fail(errno, "%s: %s", path, strerror(errno));
            goto fail;
        }
    } else {
        /* link() fails with EEXIST instead of replacing. */
        if (link(tmp, path) != 0) {
            rc = errno == EEXIST ? vmseal_fail(EEXIST, "%s already exists", path)
                                 : vmseal_fail(errno, "%s: %s", path, strerror(errno));
            goto fail;
        }
        unlink(tmp);
    }
    /* Make the rename durable. */
    char *dir = strdup(path);
    if (dir) {
        int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
        free(dir);
    }
    free(tmp);
    return 0;
fail:
    unlink(tmp);
    free(tmp);
    return rc;
}
