/* vmseal-managerd — clock and log lines (stderr, UTC timestamps). */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "managerd.h"

int64_t mgr_now(void)
{
    return (int64_t)time(NULL);
}

void mgr_log(const char *fmt, ...)
{
    char msg[2048], ts[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(stderr, "%s vmseal-managerd: %s\n", ts, msg);
}
