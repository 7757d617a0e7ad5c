/* vmseal-hostd: small helpers shared by the host agent's files (strings,
 * time). */
#ifndef VMSEAL_HOSTD_STRUTIL_H
#define VMSEAL_HOSTD_STRUTIL_H

#include <stddef.h>
#include <stdint.h>

#include <vmseal/common.h>

/* Formatted string in new memory (free()), NULL when out of memory. */
char *hostd_asprintf(const char *fmt, ...) VMSEAL_PRINTF(1, 2);

/* Milliseconds on the monotonic clock (for deadlines). */
int64_t hostd_now_ms(void);

/* Sleep ms milliseconds (signals do not cut it short). */
void hostd_sleep_ms(int ms);

/* Bounded copy that always terminates (may cut). */
void hostd_copy_str(char *dst, size_t len, const char *src);

/* The last non-empty line of the file open on fd (its last 2 KiB at most),
 * control characters made spaces, into buf ("" when there is none); closes
 * fd. For error messages that quote a helper process's log. */
void hostd_fd_last_line(int fd, char *buf, size_t len);

#endif
