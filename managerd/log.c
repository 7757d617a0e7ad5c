/* vmseal-managerd — clock and log lines: mgr_log writes through the shared
 * logger (include/vmseal/log.h) at level info; main.c configures it from
 * managerd.conf (log_level, log_output). */
#include <stdarg.h>
#include <time.h>

#include <vmseal/log.h>

#include "managerd.h"

int64_t mgr_now(void)
{
    return (int64_t)time(NULL);
}

void mgr_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmseal_logv(VMSEAL_LOG_INFO, fmt, ap);
    va_end(ap);
}
