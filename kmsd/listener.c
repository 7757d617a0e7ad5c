/* Listening sockets, the accept loop (one thread per connection, bounded by
 * max_connections), and a clean stop on SIGTERM. */
#include <arpa/inet.h>
#include <errno.h>
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
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
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

struct conn_arg {
    kmsd_server *srv;
    kmsd_conn *c;
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
    return r;
}

static void *conn_main(void *p)
{
    struct conn_arg *a = p;
    kmsd_session_run(a->srv, a->c);
    conn_remove(a->srv, a->c);
    free(a->c);
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

int kmsd_serve(kmsd_server *srv)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 512 * 1024);
    struct pollfd pfd[KMSD_MAX_LISTEN + 1];
    int n = 0;
    for (int i = 0; i < srv->n_listen; i++)
        pfd[n++] = (struct pollfd){.fd = srv->listen_fd[i], .events = POLLIN};
    pfd[n++] = (struct pollfd){.fd = srv->wake[0], .events = POLLIN};
    time_t last_full_warning = 0;
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
            struct sockaddr_storage ss;
            socklen_t sl = sizeof(ss);
            int fd = accept4(pfd[i].fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EMFILE || errno == ENFILE) {
                    kmsd_warn("accept: %s (raise the open-file limit)", strerror(errno));
                    usleep(10000);
                }
                continue;
            }
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            kmsd_conn *c = calloc(1, sizeof(*c));
            struct conn_arg *a = calloc(1, sizeof(*a));
            if (!c || !a) {
                free(c);
                free(a);
                close(fd);
                continue;
            }
            c->fd = fd;
            peer_name(&ss, c->peer, sizeof(c->peer));
            a->srv = srv;
            a->c = c;
            pthread_mutex_lock(&srv->conn_lock);
            if (srv->n_conns >= srv->cfg->max_connections) {
                pthread_mutex_unlock(&srv->conn_lock);
                time_t now = time(NULL);
                if (now != last_full_warning)
                    kmsd_warn("connection from %s refused: %d connections open (max_connections)",
                              c->peer, srv->cfg->max_connections);
                last_full_warning = now;
                close(fd);
                free(c);
                free(a);
                continue;
            }
            c->next = srv->conns;
            if (srv->conns)
                srv->conns->prev = c;
            srv->conns = c;
            srv->n_conns++;
            pthread_mutex_unlock(&srv->conn_lock);
            pthread_t th;
            if (pthread_create(&th, &attr, conn_main, a) != 0) {
                kmsd_warn("connection from %s dropped: cannot start a thread", c->peer);
                conn_remove(srv, c);
                close(fd);
                free(c);
                free(a);
            }
        }
    }
    pthread_attr_destroy(&attr);
    /* stop: no new connections; wake idle sessions (reads see EOF) and
     * let requests in flight finish */
    atomic_store(&srv->stopping, 1);
    for (int i = 0; i < srv->n_listen; i++)
        close(srv->listen_fd[i]);
    srv->n_listen = 0;
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
    return left ? -EBUSY : 0;
}

void kmsd_server_stop(kmsd_server *srv)
{
    atomic_store(&srv->stopping, 1);
    char b = 1;
    ssize_t w = write(srv->wake[1], &b, 1);
    (void)w;
}
