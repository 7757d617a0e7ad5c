/* vmseal — admission of TCP connections before they are authenticated,
 * shared by the daemons' accept loops (HTTPS server, kmsd).
 *
 * Every accepted connection takes a slot, in one of three states:
 *   HANDSHAKE  accepted, TLS handshake not finished (nobody known yet)
 *   IDLE       between requests (keep-alive), or reading a request
 *   ACTIVE     a request is being served, or (kmsd) an authenticated
 *              session: never shed
 * and is counted against its source address (IPv4 address, IPv6 /64).
 *
 * Limits: at most max_handshakes_per_addr connections from one address in
 * HANDSHAKE once half of max_handshakes are in use (more are refused at
 * once; below that, a burst of clients behind one address gets through),
 * max_handshakes in HANDSHAKE in all, max_conns in all. When a total is reached, room is made by shedding a
 * connection of the address that holds the most slots — provided it holds
 * at least two more than the newcomer's address — its oldest HANDSHAKE
 * connection first, else its least recently used IDLE one; failing that, the
 * newcomer's own address gives up its oldest (if at least 1 s in its state,
 * so that an address cannot churn through its own slots as fast as it
 * connects); failing that, the newcomer is refused. So one address can take
 * the slots of no other.
 *
 * Shedding is shutdown(fd, SHUT_RDWR): the thread serving the connection
 * sees EOF or an error and ends. The guard never closes a descriptor; the
 * caller keeps fd open until vmseal_conn_guard_release() (give the TLS code
 * a dup() of it when that code may close it on its own), so that a shed
 * never hits a reused descriptor number.
 */
#ifndef VMSEAL_CONN_GUARD_H
#define VMSEAL_CONN_GUARD_H

#include <sys/socket.h>

#include <vmseal/common.h>

typedef struct vmseal_conn_guard vmseal_conn_guard;
typedef struct vmseal_conn_slot vmseal_conn_slot;

typedef enum vmseal_conn_state {
    VMSEAL_CONN_HANDSHAKE = 0,
    VMSEAL_CONN_IDLE = 1,
    VMSEAL_CONN_ACTIVE = 2,
} vmseal_conn_state;

typedef struct vmseal_conn_limits {
    unsigned max_conns;               /* all connections (required, > 0) */
    unsigned max_handshakes;          /* in HANDSHAKE, all addresses; 0: max_conns */
    unsigned max_handshakes_per_addr; /* in HANDSHAKE from one address, once half of
                                         max_handshakes are in use; 0: max_handshakes */
} vmseal_conn_limits;

/* NULL on out of memory. */
vmseal_conn_guard *vmseal_conn_guard_new(const vmseal_conn_limits *limits);
/* Every slot must have been released. NULL is fine. */
void vmseal_conn_guard_free(vmseal_conn_guard *g);

/* Admit a connection accepted from addr (state HANDSHAKE), shedding others
 * as described above when a total is reached. NULL when refused (the
 * caller closes fd), with a plain reason in *why (static string). */
vmseal_conn_slot *vmseal_conn_guard_admit(vmseal_conn_guard *g, int fd, const struct sockaddr *addr,
                                          socklen_t addrlen, const char **why);

/* Move a connection to another state (ignored once it was shed). */
void vmseal_conn_guard_set_state(vmseal_conn_guard *g, vmseal_conn_slot *s, vmseal_conn_state st);

/* Whether the guard shed this connection (to explain its end in logs). */
int vmseal_conn_guard_was_shed(vmseal_conn_guard *g, vmseal_conn_slot *s);

/* The connection is over: free its slot. The caller closes fd afterwards. */
void vmseal_conn_guard_release(vmseal_conn_guard *g, vmseal_conn_slot *s);

/* Shut down every connection in one of the states in the mask
 * (1 << VMSEAL_CONN_HANDSHAKE | ...), e.g. at server stop. */
void vmseal_conn_guard_shutdown(vmseal_conn_guard *g, unsigned state_mask);

typedef struct vmseal_conn_stats {
    unsigned conns;        /* admitted, not shed, not released */
    unsigned handshakes;   /* of them in HANDSHAKE */
    unsigned addrs;        /* distinct source addresses among them */
    unsigned long long refused, shed;  /* since the start */
} vmseal_conn_stats;

void vmseal_conn_guard_stats(vmseal_conn_guard *g, vmseal_conn_stats *out);

#endif
