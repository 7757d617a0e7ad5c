/* Diagnostic log lines: timestamp, level, message. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static int log_fd = -1;
static int log_level = KMSD_LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void kmsd_timestamp(char out[32])
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(tv.tv_usec / 1000));
}

int kmsd_log_open(const char *path, int level)
{
    log_level = level;
    if (!path || !*path)
        return 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return vmseal_fail(errno, "cannot open log file %s: %s", path, strerror(errno));
    log_fd = fd;
    return 0;
}

void kmsd_log_close(void)
{
    if (log_fd >= 0)
        close(log_fd);
    log_fd = -1;
}

void kmsd_log(int level, const char *fmt, ...)
{
    if (level > log_level)
        return;
    static const char *const names[] = {"error", "warning", "info", "debug"};
    char line[2048], ts[32];
    kmsd_timestamp(ts);
    int n = snprintf(line, sizeof(line), "%s vmseal-kmsd %s: ", ts, names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    /* one line per record: control characters from peers are neutralised */
    for (size_t i = (size_t)n; i < len; i++)
        if ((unsigned char)line[i] < 0x20)
            line[i] = '?';
    line[len++] = '\n';
    pthread_mutex_lock(&log_lock);
    ssize_t w = write(STDERR_FILENO, line, len);
    if (log_fd >= 0)
        w = write(log_fd, line, len);
    (void)w;
    pthread_mutex_unlock(&log_lock);
}
