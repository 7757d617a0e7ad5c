/* vmseal-hostd: small string helpers shared by the host agent's files. */
#ifndef VMSEAL_HOSTD_STRUTIL_H
#define VMSEAL_HOSTD_STRUTIL_H

#include <stddef.h>

#include <vmseal/common.h>

/* Formatted string in new memory (free()), NULL when out of memory. */
char *hostd_asprintf(const char *fmt, ...) VMSEAL_PRINTF(1, 2);

/* Bounded copy that always terminates (may cut). */
void hostd_copy_str(char *dst, size_t len, const char *src);

#endif
