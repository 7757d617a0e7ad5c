/* Audit lines, one per operation, safe against log injection. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <vmseal/common.h>

#include "audit.h"
#include "log.h"

static int audit_fd = STDERR_FILENO;
static pthread_mutex_t audit_lock = PTHREAD_MUTEX_INITIALIZER;

int kmsd_audit_open(const char *path)
{
    if (!path || !*path)
        return 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return vmseal_fail(errno, "cannot open audit log %s: %s", path, strerror(errno));
    audit_fd = fd;
    return 0;
}

void kmsd_audit_close(void)
{
    if (audit_fd != STDERR_FILENO)
        close(audit_fd);
    audit_fd = STDERR_FILENO;
}

/* Copy with quotes and control characters escaped. */
static size_t put_quoted(char *out, size_t room, const char *s)
{
    size_t n = 0;
    if (room < 3)
        return 0;
    out[n++] = '"';
    for (; s && *s && n + 5 < room; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            n += (size_t)snprintf(out + n, room - n, "\\x%02x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n++] = '"';
    out[n] = '\0';
    return n;
}

void kmsd_audit(const char *peer, const char *identity, const char *op, const char *uid,
                const char *result, const char *reason)
{
    char line[2048], ts[32];
    kmsd_timestamp(ts);
    size_t n = (size_t)snprintf(line, sizeof(line), "%s audit peer=%s identity=", ts,
                                peer ? peer : "-");
    n += put_quoted(line + n, sizeof(line) - n - 256, identity ? identity : "");
    n += (size_t)snprintf(line + n, sizeof(line) - n, " op=%s uid=", op ? op : "-");
    n += put_quoted(line + n, 80, uid ? uid : "");
    n += (size_t)snprintf(line + n, sizeof(line) - n, " result=%s", result ? result : "-");
    if (reason && *reason && n + 16 < sizeof(line)) {
        n += (size_t)snprintf(line + n, sizeof(line) - n, " reason=");
        n += put_quoted(line + n, sizeof(line) - n - 1, reason);
    }
    if (n >= sizeof(line) - 1)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    pthread_mutex_lock(&audit_lock);
    ssize_t w = write(audit_fd, line, n);
    (void)w;
    pthread_mutex_unlock(&audit_lock);
}
