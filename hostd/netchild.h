/* vmseal-hostd — the network child ("vmseal-hostd: network"): the HTTPS
 * server the manager calls (TLS, HTTP, the manager's certificate checked)
 * and the calls to the manager. It holds hostd's TLS key and certificate
 * and never a KEK, a disk secret or a log key: requests go to the monitor
 * as PS_REQUEST messages (privsep.h) and KEKs from the manager stay sealed
 * to the monitor's custody key. */
#ifndef VMSEAL_HOSTD_NETCHILD_H
#define VMSEAL_HOSTD_NETCHILD_H

#include <signal.h>
#include <sys/types.h>

typedef struct hostd_net_config {
    int fd;                         /* our end of the socketpair */
    pid_t parent;                   /* the monitor (we die with it) */
    const char *listen;
    int port;
    const char *cert, *key, *ca;    /* ca: of the manager's client certificate */
    const char *manager_subject;    /* NULL: any (the fingerprint decides) */
    const char *manager_fingerprint; /* SHA-256 of the manager's certificate, 64 hex */
    const char *manager_url;        /* NULL: no calls to the manager */
    const char *manager_ca;
    const char *user;               /* network_user: setuid to it after loading TLS (NULL: stay) */
    volatile sig_atomic_t *stopping;
    char *title;                    /* argv[0]'s memory, for the process title */
    size_t title_len;
} hostd_net_config;

/* Run the child; returns its exit status. */
int hostd_net_main(const hostd_net_config *cfg);

#endif
