/* vmseal CLI — consoles through the manager's websocket:
 *   vm console NAME                 the terminal on the guest's serial port
 *                                   (raw mode; Ctrl-] detaches)
 *   vm vnc NAME [--listen ADDR:PORT] a local VNC endpoint (one viewer) for
 *                                   the VM's display
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include <vmseal/tls.h>
#include <vmseal/websocket.h>

#include "cli.h"

#define DETACH_KEY 0x1d   /* Ctrl-] */
#define SEND_MS 10000
#define LINGER_MS 2000    /* stdin not a terminal ended: wait for the answer this long */

static int status_exit(int status)
{
    switch (status) {
    case 401: return EXIT_AUTH;
    case 403: return EXIT_DENIED;
    case 404: return EXIT_NOTFOUND;
    case 409:
    case 429: return EXIT_CONFLICT;
    case 400:
    case 426: return EXIT_USAGE;
    default: return EXIT_FAIL;
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Connect and open the websocket: an exit code; *ctx, *ssl on EXIT_OK. */
static int open_ws(cli *c, const char *name, const char *what, SSL_CTX **ctx, SSL **ssl)
{
    *ctx = NULL;
    *ssl = NULL;
    const char *url = c->url ? c->url : c->session ? jstr(c->session, "url") : NULL;
    const char *ca = c->ca ? c->ca : c->session ? jstr(c->session, "ca") : NULL;
    const char *token = c->session ? jstr(c->session, "token") : "";
    if (!url || !*url) {
        fprintf(stderr, "vmseal: not logged in: run `vmseal login --url https://MANAGER:PORT --ca CA.crt`\n");
        return EXIT_AUTH;
    }
    if (!ca || !*ca) {
        fprintf(stderr, "vmseal: no CA certificate to verify the manager with (--ca or $VMSEAL_CA)\n");
        return EXIT_USAGE;
    }
    if (c->session && c->url && strcmp(c->url, jstr(c->session, "url")) != 0)
        token = "";
    char host[256];
    int port = 443;
    const char *h = strncmp(url, "https://", 8) == 0 ? url + 8 : NULL;
    size_t hl = h ? strcspn(h, "/") : 0;
    if (!h || hl == 0 || hl >= sizeof(host)) {
        fprintf(stderr, "vmseal: the manager URL must be https://HOST:PORT\n");
        return EXIT_USAGE;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    char *colon = strrchr(host, ':');
    if (colon && !strchr(colon, ']')) {
        *colon = '\0';
        port = atoi(colon + 1);
    }
    if (host[0] == '[') {
        memmove(host, host + 1, strlen(host));
        char *rb = strchr(host, ']');
        if (rb)
            *rb = '\0';
    }
    vmseal_tls_config tc = {.ca_file = ca};
    *ctx = vmseal_tls_client_ctx_new(&tc);
    if (!*ctx) {
        fprintf(stderr, "vmseal: %s\n", vmseal_last_error());
        return EXIT_FAIL;
    }
    if (vmseal_tls_connect(*ctx, host, port, 10000, NULL, ssl) < 0) {
        fprintf(stderr, "vmseal: %s\n", vmseal_last_error());
        return EXIT_UNREACHABLE;
    }
    char path[300], esc[200], hdr[600] = "";
    cli_escape(name, esc, sizeof(esc));
    snprintf(path, sizeof(path), "/api/v1/vms/%s/%s", esc, what);
    if (*token && strlen(token) < 500)
        snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s\r\n", token);
    int status = 0;
    char msg[600];
    int r = vmseal_ws_client_handshake(*ssl, host, path, hdr, 30000, &status, msg, sizeof(msg));
    OPENSSL_cleanse(hdr, sizeof(hdr));
    if (r < 0) {
        cli_reported = 1;
        if (status == 401)
            fprintf(stderr, "vmseal: %s (run `vmseal login`)\n", *msg ? msg : "not logged in");
        else
            fprintf(stderr, "vmseal: %s\n", *msg ? msg : vmseal_last_error());
        return status ? status_exit(status) : EXIT_UNREACHABLE;
    }
    return EXIT_OK;
}

static struct termios saved_tio;
static int tio_saved;

static void tty_restore(void)
{
    if (tio_saved)
        tcsetattr(0, TCSAFLUSH, &saved_tio);
    tio_saved = 0;
}

static int write_out(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The closing frame's text for the user; exit code. */
static int closed(vmseal_ws *ws, int quiet)
{
    char reason[VMSEAL_WS_CONTROL_MAX + 1];
    uint16_t code = vmseal_ws_peer_close(ws, reason, sizeof(reason));
    if (code != VMSEAL_WS_NORMAL || *reason) {
        if (!quiet || code != VMSEAL_WS_NORMAL)
            fprintf(stderr, "\r\nvmseal: console closed: %s (%u)\r\n", *reason ? reason : "by the server",
                    code);
    }
    return code == VMSEAL_WS_NORMAL ? EXIT_OK : EXIT_FAIL;
}

static int serial_console(cli *c, const char *name)
{
    SSL_CTX *ctx;
    SSL *ssl;
    int rc = open_ws(c, name, "console", &ctx, &ssl);
    if (rc != EXIT_OK) {
        if (ssl)
            vmseal_tls_close(ssl);
        SSL_CTX_free(ctx);
        return rc;
    }
    vmseal_ws *ws = vmseal_ws_new(-1, ssl, 1, VMSEAL_WS_MAX_PAYLOAD);
    if (!ws) {
        vmseal_tls_close(ssl);
        SSL_CTX_free(ctx);
        return EXIT_FAIL;
    }
    int tty = isatty(0);
    if (tty && tcgetattr(0, &saved_tio) == 0) {
        struct termios raw = saved_tio;
        cfmakeraw(&raw);
        tio_saved = 1;
        atexit(tty_restore);
        tcsetattr(0, TCSAFLUSH, &raw);
    }
    if (!c->quiet)
        fprintf(stderr, "Connected to the serial console of VM %s; Ctrl-] detaches.\r\n", name);
    uint8_t in[4096];
    int in_eof = 0;
    int64_t linger_until = 0;
    rc = EXIT_OK;
    for (;;) {
        vmseal_ws_frame f;
        int r = vmseal_ws_recv(ws, &f, SEND_MS);
        if (r < 0) {
            fprintf(stderr, "\r\nvmseal: console lost: %s\r\n", vmseal_last_error());
            rc = EXIT_FAIL;
            break;
        }
        if (r > 0) {
            if (f.opcode == VMSEAL_WS_CLOSE) {
                rc = closed(ws, c->quiet);
                break;
            }
            if (write_out(1, f.payload, f.len) < 0) {
                vmseal_ws_close(ws, VMSEAL_WS_NORMAL, "");
                break;
            }
            if (in_eof)
                linger_until = now_ms() + LINGER_MS;
            continue;
        }
        if (vmseal_ws_buffered(ws))
            continue;
        if (in_eof && now_ms() >= linger_until) {
            vmseal_ws_close(ws, VMSEAL_WS_NORMAL, "");
            break;
        }
        struct pollfd p[2] = {{.fd = vmseal_ws_fd(ws), .events = POLLIN},
                              {.fd = 0, .events = POLLIN}};
        if (poll(p, in_eof ? 1 : 2, in_eof ? 200 : -1) < 0 && errno != EINTR)
            break;
        if (!in_eof && p[1].revents) {
            ssize_t n = read(0, in, sizeof(in));
            if (n <= 0) {
                in_eof = 1;
                linger_until = now_ms() + LINGER_MS;
                continue;
            }
            uint8_t *dk = memchr(in, DETACH_KEY, (size_t)n);
            size_t k = dk ? (size_t)(dk - in) : (size_t)n;
            if (k && vmseal_ws_send(ws, VMSEAL_WS_BINARY, in, k, SEND_MS) < 0) {
                fprintf(stderr, "\r\nvmseal: console lost: %s\r\n", vmseal_last_error());
                rc = EXIT_FAIL;
                break;
            }
            if (dk) {
                vmseal_ws_close(ws, VMSEAL_WS_NORMAL, "detached");
                if (!c->quiet)
                    fprintf(stderr, "\r\nDetached from VM %s.\r\n", name);
                break;
            }
        }
    }
    OPENSSL_cleanse(in, sizeof(in));
    tty_restore();
    vmseal_ws_free(ws);
    vmseal_tls_close(ssl);
    SSL_CTX_free(ctx);
    return rc;
}

/* One VNC viewer on a local TCP port, relayed to the VM's display. */
static int vnc_proxy(cli *c, const char *name, const char *listen_at)
{
    char addr[64] = "127.0.0.1";
    int port = 0;
    if (listen_at) {
        const char *colon = strrchr(listen_at, ':');
        if (!colon || (size_t)(colon - listen_at) >= sizeof(addr))
            return EXIT_USAGE;
        snprintf(addr, sizeof(addr), "%.*s", (int)(colon - listen_at), listen_at);
        port = atoi(colon + 1);
        if (port < 0 || port > 65535)
            return EXIT_USAGE;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        fprintf(stderr, "vmseal: --listen wants IPv4ADDR:PORT\n");
        return EXIT_USAGE;
    }
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    socklen_t sl = sizeof(sa);
    if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(ls, 1) != 0 ||
        getsockname(ls, (struct sockaddr *)&sa, &sl) != 0) {
        fprintf(stderr, "vmseal: cannot listen on %s:%d: %s\n", addr, port, strerror(errno));
        if (ls >= 0)
            close(ls);
        return EXIT_FAIL;
    }
    printf("VNC display of VM %s: connect a viewer to %s:%u (one connection)\n", name, addr,
           ntohs(sa.sin_port));
    fflush(stdout);
    int cs = accept(ls, NULL, NULL);
    close(ls);
    if (cs < 0)
        return EXIT_FAIL;
    SSL_CTX *ctx;
    SSL *ssl;
    int rc = open_ws(c, name, "vnc", &ctx, &ssl);
    if (rc != EXIT_OK) {
        close(cs);
        if (ssl)
            vmseal_tls_close(ssl);
        SSL_CTX_free(ctx);
        return rc;
    }
    vmseal_ws *ws = vmseal_ws_new(-1, ssl, 1, VMSEAL_WS_MAX_PAYLOAD);
    uint8_t buf[16384];
    rc = ws ? EXIT_OK : EXIT_FAIL;
    while (ws) {
        vmseal_ws_frame f;
        int r = vmseal_ws_recv(ws, &f, SEND_MS);
        if (r < 0) {
            fprintf(stderr, "vmseal: VNC console lost: %s\n", vmseal_last_error());
            rc = EXIT_FAIL;
            break;
        }
        if (r > 0) {
            if (f.opcode == VMSEAL_WS_CLOSE) {
                rc = closed(ws, c->quiet);
                break;
            }
            if (write_out(cs, f.payload, f.len) < 0) {
                vmseal_ws_close(ws, VMSEAL_WS_NORMAL, "the viewer left");
                break;
            }
            continue;
        }
        if (vmseal_ws_buffered(ws))
            continue;
        struct pollfd p[2] = {{.fd = vmseal_ws_fd(ws), .events = POLLIN}, {.fd = cs, .events = POLLIN}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents) {
            ssize_t n = read(cs, buf, sizeof(buf));
            if (n <= 0) {
                vmseal_ws_close(ws, VMSEAL_WS_NORMAL, "the viewer left");
                break;
            }
            if (vmseal_ws_send(ws, VMSEAL_WS_BINARY, buf, (size_t)n, SEND_MS) < 0) {
                rc = EXIT_FAIL;
                break;
            }
        }
    }
    close(cs);
    vmseal_ws_free(ws);
    vmseal_tls_close(ssl);
    SSL_CTX_free(ctx);
    return rc;
}

int cmd_vm_console(cli *c, int argc, char **argv)
{
    int vnc = !strcmp(argv[1], "vnc");
    const char *listen_at = NULL;
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    optind = 2;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch == 'l' && vnc)
            listen_at = optarg;
        else
            return EXIT_USAGE;
    }
    if (argc - optind != 1)
        return EXIT_USAGE;
    signal(SIGPIPE, SIG_IGN);
    return vnc ? vnc_proxy(c, argv[optind], listen_at) : serial_console(c, argv[optind]);
}
