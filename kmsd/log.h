/* vmseal-kmsd — diagnostic log: the shared logger (include/vmseal/log.h),
 * tagged "vmseal-kmsd". Never key bytes. */
#ifndef KMSD_LOG_H
#define KMSD_LOG_H

#include <vmseal/common.h>
#include <vmseal/log.h>

enum {
    KMSD_LOG_ERROR = VMSEAL_LOG_ERROR,
    KMSD_LOG_WARN = VMSEAL_LOG_WARNING,
    KMSD_LOG_INFO = VMSEAL_LOG_INFO,
    KMSD_LOG_DEBUG = VMSEAL_LOG_DEBUG,
};

/* Log to outputs (VMSEAL_LOG_STDERR and/or VMSEAL_LOG_SYSLOG; 0: stderr),
 * and also to path when given (opened O_APPEND, 0600). */
int kmsd_log_open(const char *path, int level, unsigned outputs);
void kmsd_log_close(void);

#define kmsd_err(...) vmseal_log(VMSEAL_LOG_ERROR, __VA_ARGS__)
#define kmsd_warn(...) vmseal_log(VMSEAL_LOG_WARNING, __VA_ARGS__)
#define kmsd_info(...) vmseal_log(VMSEAL_LOG_INFO, __VA_ARGS__)
#define kmsd_debug(...) vmseal_log(VMSEAL_LOG_DEBUG, __VA_ARGS__)

/* "2024-05-01T12:00:00.123Z" */
void kmsd_timestamp(char out[32]);

#endif
