/* vmseal-hostd — the monitor's end of the privilege separation (privsep.h):
 * answers the network child's REQUESTs with hostd_host_handle() on a
 * bounded pool of threads, and asks the child to call the manager
 * (REGISTER, FETCH_KEYS). KEKs come back only sealed to the host's custody
 * key and are opened here. Any protocol error drops the child: the link is
 * then dead (hostd_monitor_alive) and vmseal-hostd stops. */
#ifndef VMSEAL_HOSTD_MONITOR_H
#define VMSEAL_HOSTD_MONITOR_H

#include <signal.h>

#include "host.h"

typedef struct hostd_monitor hostd_monitor;

typedef struct hostd_monitor_config {
    hostd_host *host;
    int fd;                       /* our end of the socketpair (taken: closed at stop) */
    unsigned workers;             /* request threads (default 8) */
    unsigned queue_max;           /* requests waiting for a thread (default 64; more: 503) */
    const char *manager_fingerprint; /* SHA-256 (64 lower-case hex) of the only client
                                        certificate that may call (checked again here) */
    void (*log)(void *arg, const char *line); /* NULL: the shared logger (tests set it) */
    void *log_arg;
} hostd_monitor_config;

int hostd_monitor_start(const hostd_monitor_config *cfg, hostd_monitor **out) VMSEAL_MUST_CHECK;

/* Shut the link down, join every thread, free. */
void hostd_monitor_stop(hostd_monitor *m);

/* 1 while the link works; 0 after end of file or a protocol error (why:
 * hostd_monitor_error). */
int hostd_monitor_alive(hostd_monitor *m);
const char *hostd_monitor_error(hostd_monitor *m);

/* Wait for the child's READY (its HTTPS port). -EPIPE when the link died,
 * -ETIMEDOUT, -EINTR when *stop became set. */
int hostd_monitor_wait_ready(hostd_monitor *m, int timeout_ms, volatile sig_atomic_t *stop,
                             int *port)
    VMSEAL_MUST_CHECK;

/* Through the child: register with the manager (name, our URL, datastore,
 * the custody public key). */
int hostd_monitor_register(hostd_monitor *m, const char *name, const char *url,
                           const char *datastore) VMSEAL_MUST_CHECK;

/* Through the child: fetch the sealed KEKs the host's VMs need, open and
 * store them; note why the others are missing. Returns how many stored. */
int hostd_monitor_fetch_keys(hostd_monitor *m) VMSEAL_MUST_CHECK;

#endif
