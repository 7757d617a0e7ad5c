/* vmseal-managerd — GET /api/v1/vms/{vm}/console | /vnc: a websocket to the
 * VM's serial port or VNC display (consoles.c relays it to the host).
 * Checked like every op (api_table.c: vm.console, vm.vnc): an encrypted
 * VM's console also needs Cryptographer.Access. */
#include <string.h>

#include <vmseal/http_status.h>
#include <vmseal/websocket.h>

#include "api.h"

static void relay(void *arg, int fd, const char *extra, size_t extra_len)
{
    consoles_relay(arg, fd, extra, extra_len);
}

void api_vm_console(api_ctx *ctx, const char *name, int vnc)
{
    const vmseal_http_request *req = ctx->req;
    if (strcmp(req->method, "GET") != 0) {
        vmseal_http_error(ctx->resp, 405, "a console opens with GET (a websocket)");
        return;
    }
    if (api_authorize(ctx, vnc ? "vm.vnc" : "vm.console", name) < 0)
        return;
    int st = vmseal_ws_check_request(req->method, vmseal_http_header(req, "Upgrade"),
                                     vmseal_http_header(req, "Connection"),
                                     vmseal_http_header(req, "Sec-WebSocket-Version"),
                                     vmseal_http_header(req, "Sec-WebSocket-Key"));
    if (st) {
        vmseal_http_error(ctx->resp, st, "%s", vmseal_last_error());
        return;
    }
    console_link *l = NULL;
    int hs = 0;
    int rc = consoles_open(ctx->m, ctx->user, name, vnc, &l, &hs);
    if (rc < 0) {
        /* the host's refusal (no such VM there, not running, too many
         * consoles) keeps its status; a host that speaks of certificates
         * is the manager's problem, not the caller's */
        if (hs >= 400 && hs <= 599 && hs != 401 && hs != 403)
            vmseal_http_error(ctx->resp, hs, "%s", vmseal_last_error());
        else
            api_fail(ctx, rc);
        return;
    }
    if (vmseal_http_websocket(req, ctx->resp, relay, l) < 0)
        consoles_relay(l, -1, NULL, 0);
}
