/* vmseal-migrate-relay: one live migration's encrypted transport.
 *
 *   vmseal-migrate-relay send --qemu-fd N --key-fd K --connect HOST:PORT [--timeout S]
 *   vmseal-migrate-relay recv --qemu-fd N --key-fd K --listen ADDR:PORT
 *                             [--peer ADDR] [--ready-fd R] [--timeout S]
 *
 * The source's relay reads QEMU's clear migration stream from --qemu-fd (a
 * socket QEMU was given with QMP getfd + migrate "fd:NAME"), seals it into
 * frames (include/vmseal/migstream.h) and sends them over one TCP
 * connection; the destination's relay accepts one connection (from --peer
 * only, when given), opens each frame and writes the clear bytes to its
 * --qemu-fd (QEMU: -incoming defer, migrate-incoming "fd:NAME").
 *
 * The one-time key and nonce are read from --key-fd until EOF: 32 key
 * bytes then the nonce (8 bytes, big-endian); never from argv or the
 * environment. The relay holds that key and its TCP socket, nothing else:
 * hostd's monitor, which holds KEKs, never opens a network socket; it
 * starts a relay per migration (fork + exec, so no copy of the monitor's
 * memory) with only these descriptors.
 *
 * --ready-fd: recv writes the port it listens on ("PORT\n") there once
 * listening. --timeout: seconds without progress (connect, accept, read,
 * write) before giving up, default 60. Exit 0 after the whole stream went
 * through (recv: a verified end frame, then EOF); 1 on any failure, after
 * shutting the QEMU socket so that QEMU fails the migration at once: the
 * source then keeps running, the destination QEMU ends.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <vmseal/log.h>
#include <vmseal/migstream.h>
#include <vmseal/secret.h>

static void usage(void)
{
    fprintf(stderr,
            "usage: vmseal-migrate-relay send --qemu-fd N --key-fd K --connect HOST:PORT "
            "[--timeout S]\n"
            "       vmseal-migrate-relay recv --qemu-fd N --key-fd K --listen ADDR:PORT "
            "[--peer ADDR] [--ready-fd R] [--timeout S]\n");
    exit(2);
}

static int parse_int(const char *s, int lo, int hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "vmseal-migrate-relay: bad number: %s\n", s);
        exit(2);
    }
    return (int)v;
}

/* "HOST:PORT" or "[V6]:PORT" -> addrinfo (numeric host only: no DNS). */
static struct addrinfo *parse_addr(const char *s, int passive)
{
    char host[256];
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= sizeof(host)) {
        fprintf(stderr, "vmseal-migrate-relay: bad address: %s\n", s);
        exit(2);
    }
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']')
        h++, hl -= 2;
    memcpy(host, h, hl);
    host[hl] = 0;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV |
                                         (passive ? AI_PASSIVE : 0)};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(host, colon + 1, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "vmseal-migrate-relay: bad address %s: %s\n", s, gai_strerror(rc));
        exit(2);
    }
    return ai;
}

static void set_timeouts(int fd, int secs)
{
    struct timeval tv = {.tv_sec = secs};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    /* a peer that vanished (destination killed, network cut) is noticed
     * within the timeout even while nothing is sent */
    unsigned int ms = (unsigned int)secs * 1000u;
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
    int big = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
}

static int wait_fd(int fd, short ev, int secs)
{
    struct pollfd p = {.fd = fd, .events = ev};
    for (;;) {
        int n = poll(&p, 1, secs * 1000);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        return n == 0 ? -ETIMEDOUT : 0;
    }
}

static int do_connect(const char *addr, int secs)
{
    struct addrinfo *ai = parse_addr(addr, 0);
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        freeaddrinfo(ai);
        return vmseal_fail(errno, "socket: %s", strerror(errno));
    }
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    if (rc < 0 && errno != EINPROGRESS) {
        rc = vmseal_fail(errno, "connecting to %s: %s", addr, strerror(errno));
        close(fd);
        return rc;
    }
    if (rc < 0) {
        int err = 0;
        socklen_t el = sizeof(err);
        if ((rc = wait_fd(fd, POLLOUT, secs)) < 0 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
            if (!rc)
                rc = -(err ? err : errno);
            vmseal_fail(-rc, "connecting to %s: %s", addr, strerror(-rc));
            close(fd);
            return rc;
        }
    }
    int fl = 0; /* back to blocking: the pumps block, under socket timeouts */
    if (fcntl(fd, F_SETFL, fl) < 0) {
        rc = vmseal_fail(errno, "fcntl: %s", strerror(errno));
        close(fd);
        return rc;
    }
    return fd;
}

static int same_host(const struct sockaddr_storage *ss, const char *peer)
{
    char buf[INET6_ADDRSTRLEN];
    const void *a = ss->ss_family == AF_INET
                        ? (const void *)&((const struct sockaddr_in *)ss)->sin_addr
                        : (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
    if (!inet_ntop(ss->ss_family, a, buf, sizeof(buf)))
        return 0;
    return strcmp(buf, peer) == 0;
}

static int do_accept(const char *addr, const char *peer, int ready_fd, int secs)
{
    struct addrinfo *ai = parse_addr(addr, 1);
    int ls = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), rc, one = 1;
    if (ls < 0) {
        freeaddrinfo(ai);
        return vmseal_fail(errno, "socket: %s", strerror(errno));
    }
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    int big = 4 << 20; /* inherited by the accepted socket, before the window is set */
    setsockopt(ls, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    if (bind(ls, ai->ai_addr, ai->ai_addrlen) < 0 || listen(ls, 4) < 0) {
        rc = vmseal_fail(errno, "listening on %s: %s", addr, strerror(errno));
        freeaddrinfo(ai);
        close(ls);
        return rc;
    }
    freeaddrinfo(ai);
    if (ready_fd >= 0) {
        struct sockaddr_storage me;
        socklen_t ml = sizeof(me);
        getsockname(ls, (struct sockaddr *)&me, &ml);
        int port = ntohs(me.ss_family == AF_INET ? ((struct sockaddr_in *)&me)->sin_port
                                                 : ((struct sockaddr_in6 *)&me)->sin6_port);
        char msg[16];
        int n = snprintf(msg, sizeof(msg), "%d\n", port);
        if (vmseal_write_all(ready_fd, msg, (size_t)n) < 0) {
            close(ls);
            return vmseal_fail(EIO, "cannot write to the ready descriptor");
        }
        close(ready_fd);
    }
    time_t deadline = time(NULL) + secs;
    for (;;) {
        int left = (int)(deadline - time(NULL));
        if (left <= 0 || (rc = wait_fd(ls, POLLIN, left)) < 0) {
            close(ls);
            return vmseal_fail(ETIMEDOUT, "no migration connection on %s within %d s", addr,
                               secs);
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(ls, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        if (peer && !same_host(&ss, peer)) {
            /* not the source host: not even a byte is read */
            vmseal_log(VMSEAL_LOG_WARNING, "refused a connection not from %s", peer);
            close(fd);
            continue;
        }
        close(ls);
        return fd;
    }
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    int sender = strcmp(argv[1], "send") == 0;
    if (!sender && strcmp(argv[1], "recv") != 0)
        usage();
    int qemu_fd = -1, key_fd = -1, ready_fd = -1, secs = 60;
    const char *connect_to = NULL, *listen_on = NULL, *peer = NULL;
    for (int i = 2; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        const char *o = argv[i], *v = argv[++i];
        if (!strcmp(o, "--qemu-fd"))
            qemu_fd = parse_int(v, 0, INT_MAX);
        else if (!strcmp(o, "--key-fd"))
            key_fd = parse_int(v, 0, INT_MAX);
        else if (!strcmp(o, "--ready-fd") && !sender)
            ready_fd = parse_int(v, 0, INT_MAX);
        else if (!strcmp(o, "--timeout"))
            secs = parse_int(v, 1, 3600);
        else if (!strcmp(o, "--connect") && sender)
            connect_to = v;
        else if (!strcmp(o, "--listen") && !sender)
            listen_on = v;
        else if (!strcmp(o, "--peer") && !sender)
            peer = v;
        else
            usage();
    }
    if (qemu_fd < 0 || key_fd < 0 || (sender ? !connect_to : !listen_on))
        usage();
    vmseal_log_set_process(sender ? "migrate-send" : "migrate-recv");
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    if (vmseal_harden_process() < 0) {
        vmseal_log(VMSEAL_LOG_ERROR, "cannot harden the process");
        return 1;
    }

    vmseal_secret *km = NULL, *key = NULL;
    vmseal_mig_stream *s = NULL;
    int net = -1, rc = vmseal_secret_read_fd(key_fd, VMSEAL_MIG_KEY_LEN + VMSEAL_MIG_NONCE_LEN, &km);
    close(key_fd);
    if (rc == 0 && vmseal_secret_len(km) != VMSEAL_MIG_KEY_LEN + VMSEAL_MIG_NONCE_LEN)
        rc = vmseal_fail(EINVAL, "the key descriptor must hold %d bytes",
                         VMSEAL_MIG_KEY_LEN + VMSEAL_MIG_NONCE_LEN);
    uint64_t nonce = 0;
    if (rc == 0) {
        const unsigned char *p = vmseal_secret_cdata(km);
        for (int i = 0; i < VMSEAL_MIG_NONCE_LEN; i++)
            nonce = nonce << 8 | p[VMSEAL_MIG_KEY_LEN + i];
        rc = vmseal_secret_from(p, VMSEAL_MIG_KEY_LEN, &key);
    }
    vmseal_secret_free(km);
    if (rc == 0)
        rc = vmseal_mig_stream_new(key, nonce, sender, &s);
    vmseal_secret_free(key); /* the stream keeps only its cipher context */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (rc == 0) {
        net = sender ? do_connect(connect_to, secs) : do_accept(listen_on, peer, ready_fd, secs);
        if (net < 0)
            rc = net;
    }
    if (rc == 0) {
        set_timeouts(net, secs);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        rc = sender ? vmseal_mig_send_fd(s, qemu_fd, net) : vmseal_mig_recv_fd(s, net, qemu_fd);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs_used = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (rc == 0) {
        if (sender)
            shutdown(net, SHUT_WR);
        vmseal_log(VMSEAL_LOG_INFO, "%s %llu bytes in %llu frames, %.3f s",
                sender ? "sent" : "received", (unsigned long long)vmseal_mig_bytes(s),
                (unsigned long long)vmseal_mig_frames(s), secs_used);
        /* sender: wait for the receiver to close (it read the end frame) */
        if (sender) {
            char b;
            while (read(net, &b, 1) > 0) {
            }
        }
    } else {
        vmseal_log(VMSEAL_LOG_ERROR, "migration stream failed after %llu bytes: %s",
                s ? (unsigned long long)vmseal_mig_bytes(s) : 0ULL, vmseal_last_error());
        shutdown(qemu_fd, SHUT_RDWR);
    }
    close(qemu_fd);
    if (net >= 0)
        close(net);
    vmseal_mig_stream_free(s);
    return rc == 0 ? 0 : 1;
}
