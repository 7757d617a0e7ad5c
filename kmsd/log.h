/* vmseal-kmsd — diagnostic log (stderr and/or a file). Never key bytes. */
#ifndef KMSD_LOG_H
#define KMSD_LOG_H

#include <vmseal/common.h>

enum { KMSD_LOG_ERROR = 0, KMSD_LOG_WARN = 1, KMSD_LOG_INFO = 2, KMSD_LOG_DEBUG = 3 };

/* Log to stderr, and also to path when given (opened O_APPEND, 0600). */
int kmsd_log_open(const char *path, int level);
void kmsd_log_close(void);
void kmsd_log(int level, const char *fmt, ...) VMSEAL_PRINTF(2, 3);

#define kmsd_err(...) kmsd_log(KMSD_LOG_ERROR, __VA_ARGS__)
#define kmsd_warn(...) kmsd_log(KMSD_LOG_WARN, __VA_ARGS__)
#define kmsd_info(...) kmsd_log(KMSD_LOG_INFO, __VA_ARGS__)
#define kmsd_debug(...) kmsd_log(KMSD_LOG_DEBUG, __VA_ARGS__)

/* "2024-05-01T12:00:00.123Z" */
void kmsd_timestamp(char out[32]);

#endif
