/* vmseal-hostd — host encryption mode (seed 004): the host's own core dumps
 * are sealed to a host public key by vmseal-coredump-handler, which the
 * kernel runs for every crashing process through kernel.core_pattern.
 *
 * hostd.conf:
 *   encryption_mode = yes           (default no)
 *   core_dump_key = FILE            the host public key (64 hex digits;
 *                                   vmseal-crypto-util hostkey generate)
 *   core_dump_dir = DIR             sealed cores (default /var/lib/vmseal/cores,
 *                                   made 0700)
 *   core_dump_handler = PATH        default: vmseal-coredump-handler beside
 *                                   vmseal-hostd
 *   core_pattern = manage|check     manage (default): hostd writes
 *                                   /proc/sys/kernel/core_pattern at start;
 *                                   check: it only reads it and reports
 * GET /v1/host reports "encryption_mode": {enabled, core_pattern (wanted),
 * installed (the kernel's matches), error}.
 */
#ifndef VMSEAL_HOSTD_HOSTMODE_H
#define VMSEAL_HOSTD_HOSTMODE_H

#include <jansson.h>

#include <vmseal/common.h>

typedef struct hostd_hostmode {
    int enabled;
    int installed;          /* the kernel's core_pattern is the one wanted */
    char pattern[1024];     /* the core_pattern wanted */
    char error[256];        /* why it is not installed ("" when it is) */
} hostd_hostmode;

typedef struct hostd_hostmode_config {
    const char *key;        /* public key file */
    const char *dir;        /* NULL: /var/lib/vmseal/cores */
    const char *handler;    /* NULL: beside /proc/self/exe */
    int manage;             /* write core_pattern */
    const char *core_pattern_path;   /* NULL: /proc/sys/kernel/core_pattern (tests) */
} hostd_hostmode_config;

/* Check the key and folder, and install (manage) or check the pattern.
 * -errno for a configuration that cannot work (missing key, bad folder);
 * a pattern that could not be installed is not an error: out->error says
 * why, and hostd logs it loudly. */
int hostd_hostmode_setup(const hostd_hostmode_config *cfg, hostd_hostmode *out) VMSEAL_MUST_CHECK;

/* {enabled, core_pattern, installed, error} (new ref). */
json_t *hostd_hostmode_json(const hostd_hostmode *m);

#endif
