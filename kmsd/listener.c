/* Listening sockets, the accept loop (one thread per connection, bounded by
 * max_connections), and a clean stop on SIGTERM.
 *
 * Before its TLS handshake is done a connection is nobody's: the accept loop
 * admits it through a connection guard (include/vmseal/conn_guard.h) — at
 * most max_handshakes_per_address handshakes from one source address, at
 * most max_handshakes in all (the biggest address's oldest handshake is
 * dropped to make room for another address), at most max_connections in
 * all. Sessions with a verified client certificate are never dropped. The
 * session runs on a dup() of the accepted socket; the listener keeps the
 * original until the slot is released, so that a drop (shutdown) never hits
 * a reused descriptor. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <vmseal/conn_guard.h>

#include "log.h"
#include "server.h"

int kmsd_listen(kmsd_server *srv, const char *address, int port)
{
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    int gr = getaddrinfo(address && *address ? address : NULL, portstr, &hints, &res);
    if (gr != 0)
        return vmseal_fail(EINVAL, "cannot resolve listen address %s: %s", address, gai_strerror(gr));
    int err = 0;
    for (struct addrinfo *a = res; a && srv->n_listen < KMSD_MAX_LISTEN; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (a->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        if (bind(fd, a->ai_addr, a->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
            err = errno;
            close(fd);
            continue;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
            int p = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                             : ntohs(((struct sockaddr_in *)&ss)->sin_port);
            if (!srv->port)
                srv->port = p;
        }
        srv->listen_fd[srv->n_listen++] = fd;
        /* with port 0, bind the other families to the same port */
        if (port == 0 && srv->port) {
            snprintf(portstr, sizeof(portstr), "%d", srv->port);
            port = srv->port;
        }
    }
    freeaddrinfo(res);
    if (srv->n_listen == 0)
        return vmseal_fail(err ? err : EADDRNOTAVAIL, "cannot listen on %s port %d: %s",
                           address, port, strerror(err ? err : EADDRNOTAVAIL));
    return 0;
}

/* A connection as the listener keeps it: the session sees c (first, so
 * that kmsd_conn_set_open finds the rest). */
struct conn_arg {
    kmsd_conn c;
    kmsd_server *srv;
    vmseal_conn_guard *guard;
    vmseal_conn_slot *slot;
    int guard_fd;              /* the accepted socket; c.fd is its dup */
};

static void conn_remove(kmsd_server *srv, kmsd_conn *c)
{
    pthread_mutex_lock(&srv->conn_lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->n_conns--;
    pthread_cond_broadcast(&srv->conn_cond);
    pthread_mutex_unlock(&srv->conn_lock);
}

int kmsd_conn_set_open(kmsd_server *srv, kmsd_conn *c, int open)
{
    int r = 0;
    pthread_mutex_lock(&srv->conn_lock);
    if (open && atomic_load(&srv->stopping))
        r = -ECANCELED;
    else
        c->fd_open = open;
    pthread_mutex_unlock(&srv->conn_lock);
    /* authenticated (verified client certificate): never dropped */
    struct conn_arg *a = (struct conn_arg *)c;
    if (r == 0 && open)
        vmseal_conn_guard_set_state(a->guard, a->slot, VMSEAL_CONN_ACTIVE);
    return r;
}

static void *conn_main(void *p)
{
    struct conn_arg *a = p;
    kmsd_session_run(a->srv, &a->c);
    vmseal_conn_guard_release(a->guard, a->slot);
    close(a->guard_fd);
    conn_remove(a->srv, &a->c);
    free(a);
    return NULL;
}

static void peer_name(const struct sockaddr_storage *ss, char *out, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
        port = ntohs(s4->sin_port);
        snprintf(out, len, "%s:%d", host, port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        port = ntohs(s6->sin6_port);
        snprintf(out, len, "[%s]:%d", host, port);
    } else {
        snprintf(out, len, "unknown");
    }
}

/* Refusals are logged at most once a second, with a count. */
struct refusal_log {
    time_t last;
    unsigned long more;
};

static void log_refusal(struct refusal_log *rl, const char *peer, const char *why)
{
    time_t now = time(NULL);
    if (now == rl->last) {
        rl->more++;
        return;
    }
    if (rl->more)
        kmsd_warn("connection from %s refused: %s (and %lu more refused since the last such line)",
                  peer, why, rl->more);
    else
        kmsd_warn("connection from %s refused: %s", peer, why);
    rl->last = now;
    rl->more = 0;
}

/* One accepted socket: admit it through the guard (or close it at once)
 * and start its session thread. */
static void accept_one(kmsd_server *srv, vmseal_conn_guard *guard, pthread_attr_t *attr, int fd,
                       const struct sockaddr_storage *ss, socklen_t sl, struct refusal_log *rl)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct conn_arg *a = calloc(1, sizeof(*a));
    if (!a) {
        close(fd);
        return;
    }
    peer_name(ss, a->c.peer, sizeof(a->c.peer));
    const char *why = NULL;
    a->slot = vmseal_conn_guard_admit(guard, fd, (const struct sockaddr *)ss, sl, &why);
    if (!a->slot) {
        log_refusal(rl, a->c.peer, why ? why : "connection limits");
        close(fd);
        free(a);
        return;
    }
    a->c.fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (a->c.fd < 0) {
        kmsd_warn("connection from %s dropped: %s", a->c.peer, strerror(errno));
        vmseal_conn_guard_release(guard, a->slot);
        close(fd);
        free(a);
        return;
    }
    a->srv = srv;
    a->guard = guard;
    a->guard_fd = fd;
    kmsd_conn *c = &a->c;
    pthread_mutex_lock(&srv->conn_lock);
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->n_conns++;
    pthread_mutex_unlock(&srv->conn_lock);
    pthread_t th;
    if (pthread_create(&th, attr, conn_main, a) != 0) {
        kmsd_warn("connection from %s dropped: cannot start a thread", c->peer);
        conn_remove(srv, c);
        vmseal_conn_guard_release(guard, a->slot);
        close(c->fd);
        close(fd);
        free(a);
    }
}

int kmsd_serve(kmsd_server *srv)
{
    vmseal_conn_limits lim = {
        .max_conns = (unsigned)srv->cfg->max_connections,
        .max_handshakes = (unsigned)srv->cfg->max_handshakes,
        .max_handshakes_per_addr = (unsigned)srv->cfg->max_handshakes_per_address,
    };
    vmseal_conn_guard *guard = vmseal_conn_guard_new(&lim);
    if (!guard) {
        kmsd_err("out of memory");
        return -ENOMEM;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 512 * 1024);
    struct pollfd pfd[KMSD_MAX_LISTEN + 1];
    int n = 0;
    for (int i = 0; i < srv->n_listen; i++)
        pfd[n++] = (struct pollfd){.fd = srv->listen_fd[i], .events = POLLIN};
    pfd[n++] = (struct pollfd){.fd = srv->wake[0], .events = POLLIN};
    struct refusal_log rl = {0};
    while (!atomic_load(&srv->stopping)) {
        int r = poll(pfd, (nfds_t)n, -1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            kmsd_err("poll: %s", strerror(errno));
            break;
        }
        if (pfd[n - 1].revents)
            break;
        for (int i = 0; i < n - 1; i++) {
            if (!(pfd[i].revents & POLLIN))
                continue;
            /* drain the backlog (non-blocking listening sockets): under a
             * flood a full kernel queue would drop other clients' SYNs */
            for (int k = 0; k < 256; k++) {
                struct sockaddr_storage ss;
                socklen_t sl = sizeof(ss);
                int fd = accept4(pfd[i].fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
                if (fd < 0) {
                    if (errno == EMFILE || errno == ENFILE) {
                        kmsd_warn("accept: %s (raise the open-file limit)", strerror(errno));
                        usleep(10000);
                    }
                    break;
                }
                accept_one(srv, guard, &attr, fd, &ss, sl, &rl);
            }
        }
    }
    pthread_attr_destroy(&attr);
    /* stop: no new connections; wake idle sessions (reads see EOF), cut
     * handshakes short, and let requests in flight finish */
    atomic_store(&srv->stopping, 1);
    for (int i = 0; i < srv->n_listen; i++)
        close(srv->listen_fd[i]);
    srv->n_listen = 0;
    vmseal_conn_guard_shutdown(guard, 1u << VMSEAL_CONN_HANDSHAKE);
    pthread_mutex_lock(&srv->conn_lock);
    for (kmsd_conn *c = srv->conns; c; c = c->next)
        if (c->fd_open)
            shutdown(c->fd, SHUT_RD);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 15;
    while (srv->n_conns > 0) {
        if (pthread_cond_timedwait(&srv->conn_cond, &srv->conn_lock, &deadline) == ETIMEDOUT)
            break;
    }
    int left = srv->n_conns;
    pthread_mutex_unlock(&srv->conn_lock);
    if (left)
        kmsd_warn("stopping with %d connections still busy", left);
    else
        vmseal_conn_guard_free(guard);   /* else still in use by those threads */
    return left ? -EBUSY : 0;
}

void kmsd_server_stop(kmsd_server *srv)
{
    atomic_store(&srv->stopping, 1);
    char b = 1;
    ssize_t w = write(srv->wake[1], &b, 1);
    (void)w;
}
