/* vmseal-managerd — interactive consoles (managerd.h, "consoles.c"): the
 * client's websocket relayed to the host agent's, frame by frame; nothing
 * is buffered beyond one frame, a side that does not take a frame within
 * CONSOLE_SEND_MS ends the console, as does CONSOLE_IDLE_MS of silence.
 * The console text is guest data: it is never logged, and the frame
 * buffers are wiped when freed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include <vmseal/log.h>
#include <vmseal/tls.h>
#include <vmseal/websocket.h>

#include "managerd.h"

struct console_link {
    manager *m;
    SSL_CTX *ctx;
    SSL *ssl;
    char user[80], name[80], host[80];
    int vnc;
};

static void link_free(console_link *l)
{
    if (!l)
        return;
    if (l->ssl)
        vmseal_tls_close(l->ssl);
    SSL_CTX_free(l->ctx);
    free(l);
}

/* "https://HOST:PORT[/]" -> host, port */
static int split_url(const char *url, char *host, size_t hl, int *port)
{
    if (strncmp(url, "https://", 8) != 0)
        return vmseal_fail(EINVAL, "host URL %s is not https://HOST:PORT", url);
    const char *h = url + 8, *end = h + strcspn(h, "/");
    const char *colon = NULL;
    if (*h == '[') {
        const char *rb = memchr(h, ']', (size_t)(end - h));
        if (!rb)
            return vmseal_fail(EINVAL, "host URL %s: bad address", url);
        colon = rb[1] == ':' ? rb + 1 : NULL;
        if ((size_t)(rb - h - 1) >= hl)
            return vmseal_fail(EINVAL, "host URL too long");
        snprintf(host, hl, "%.*s", (int)(rb - h - 1), h + 1);
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        size_t n = (size_t)((colon ? colon : end) - h);
        if (n == 0 || n >= hl)
            return vmseal_fail(EINVAL, "host URL %s: bad host", url);
        snprintf(host, hl, "%.*s", (int)n, h);
    }
    *port = 443;
    if (colon) {
        char *e;
        long p = strtol(colon + 1, &e, 10);
        if (e != end || p < 1 || p > 65535)
            return vmseal_fail(EINVAL, "host URL %s: bad port", url);
        *port = (int)p;
    }
    return 0;
}

int consoles_open(manager *m, const char *user, const char *name, int vnc, console_link **out,
                  int *host_status)
{
    *out = NULL;
    *host_status = 0;
    char uuid[40], host[80];
    int enc = 0;
    int rc = vms_locate(m, name, uuid, host, &enc);
    if (rc < 0)
        return rc;
    store_rows *r = NULL;
    rc = store_execv(m->db, &r, "SELECT url FROM hosts WHERE name = $1", host, STORE_END);
    if (rc < 0)
        return rc;
    char url[1200];
    snprintf(url, sizeof(url), "%s", store_rows_count(r) ? store_rows_get(r, 0, 0) : "");
    store_rows_free(r);
    if (!url[0])
        return vmseal_fail(ENOENT, "VM %s: no host named %s", name, host);
    char hname[300];
    int port = 0;
    if ((rc = split_url(url, hname, sizeof(hname), &port)) < 0)
        return rc;
    console_link *l = calloc(1, sizeof(*l));
    if (!l)
        return vmseal_fail(ENOMEM, "out of memory");
    l->m = m;
    l->vnc = vnc;
    snprintf(l->user, sizeof(l->user), "%s", user);
    snprintf(l->name, sizeof(l->name), "%s", name);
    snprintf(l->host, sizeof(l->host), "%s", host);
    vmseal_tls_config tc = {.cert_file = m->cfg->cert_file, .key_file = m->cfg->key_file,
                            .ca_file = m->cfg->host_ca_file};
    int tmo = m->cfg->host_timeout_ms < 10000 ? m->cfg->host_timeout_ms : 10000;
    l->ctx = vmseal_tls_client_ctx_new(&tc);
    if (!l->ctx) {
        rc = -EIO;
        goto fail;
    }
    rc = vmseal_tls_connect(l->ctx, hname, port, tmo, NULL, &l->ssl);
    if (rc < 0) {
        rc = vmseal_fail(EREMOTEIO, "host %s: %s", host, vmseal_last_error());
        goto fail;
    }
    char path[120], msg[600];
    snprintf(path, sizeof(path), "/v1/vms/%s/%s", uuid, vnc ? "vnc" : "console");
    int st = 0;
    rc = vmseal_ws_client_handshake(l->ssl, hname, path, NULL, tmo, &st, msg, sizeof(msg));
    if (rc < 0) {
        if (st && st != 101) {
            *host_status = st;
            rc = vmseal_fail(EREMOTEIO, "host %s: %s", host, *msg ? msg : vmseal_last_error());
        } else {
            rc = vmseal_fail(EREMOTEIO, "host %s: %s", host, vmseal_last_error());
        }
        goto fail;
    }
    /* Opening the console of an encrypted VM is a cryptographic access
     * (seed 001): every one is an event; so is any other console. */
    json_t *nv = json_pack("{s:s,s:b}", "console", vnc ? "vnc" : "serial", "encrypted", enc);
    event_add(m, user, vnc ? "vm.vnc" : "vm.console", name, NULL, nv);
    json_decref(nv);
    *out = l;
    return 0;
fail:
    ERR_clear_error();
    link_free(l);
    return rc;
}

void consoles_relay(console_link *l, int fd, const char *extra, size_t extra_len)
{
    if (fd < 0) {
        link_free(l);
        return;
    }
    vmseal_ws *near = vmseal_ws_new(fd, NULL, 0, VMSEAL_WS_MAX_PAYLOAD);
    vmseal_ws *far = vmseal_ws_new(-1, l->ssl, 1, VMSEAL_WS_MAX_PAYLOAD);
    char why[300] = "out of memory";
    if (near && far && (!extra_len || vmseal_ws_feed(near, extra, extra_len) == 0))
        vmseal_ws_relay(near, far, CONSOLE_IDLE_MS, CONSOLE_SEND_MS, why, sizeof(why));
    /* who and how long, never what */
    vmseal_log(VMSEAL_LOG_INFO, "%s console of VM %s (user %s, host %s) ended: %s",
               l->vnc ? "VNC" : "serial", l->name, l->user, l->host, why);
    vmseal_ws_free(near);
    vmseal_ws_free(far);
    ERR_clear_error();
    link_free(l);
}
