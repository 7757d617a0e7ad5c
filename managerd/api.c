/* vmseal-managerd — REST API entry: routing, authentication, helpers.
 *
 * /, /ui/...                 the web client's static files (api_web.c)
 * /api/v1/session            log in (no token needed)
 * /api/v1/hosts/register     host agents, authenticated by client certificate
 * /api/v1/hosts/self/...     host agents, authenticated by client certificate
 * everything else            "Authorization: Bearer TOKEN" from a session, or
 *                            (no Authorization header) the web client's
 *                            session cookie, with its CSRF token on every
 *                            state-changing request (docs/web.md)
 * Every answer carries the security headers of api_web_headers().
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmseal/common.h>
#include <vmseal/http_status.h>

#include "api.h"

int api_body(api_ctx *ctx, const api_schema *s, json_t **out)
{
    char err[256];
    int rc = api_parse(ctx->req->body, ctx->req->body_len, s, out, err, sizeof(err));
    if (rc < 0)
        vmseal_http_error(ctx->resp, 400, "%s", err);
    return rc;
}

void api_fail(api_ctx *ctx, int rc)
{
    const char *msg = vmseal_last_error();
    vmseal_http_error(ctx->resp, vmseal_http_status_for(rc), "%s", *msg ? msg : strerror(-rc));
}

void api_reply(api_ctx *ctx, int rc, int status, json_t *out)
{
    if (rc < 0) {
        json_decref(out);
        api_fail(ctx, rc);
    } else {
        vmseal_http_json(ctx->resp, status, out);
    }
}

static int split(api_ctx *ctx, const char *path)
{
    static const char prefix[] = "/api/v1/";
    if (strncmp(path, prefix, sizeof(prefix) - 1) != 0)
        return -1;
    snprintf(ctx->segbuf, sizeof(ctx->segbuf), "%s", path + sizeof(prefix) - 1);
    ctx->nseg = 0;
    char *save = NULL;
    for (char *t = strtok_r(ctx->segbuf, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
        if (ctx->nseg == sizeof(ctx->seg) / sizeof(ctx->seg[0]))
            return -1;
        ctx->seg[ctx->nseg++] = t;
    }
    return ctx->nseg > 0 ? 0 : -1;
}

static const char *bearer(const vmseal_http_request *req)
{
    const char *h = vmseal_http_header(req, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return NULL;
    return h + 7;
}

void api_handle(void *arg, const vmseal_http_request *req, vmseal_http_response *resp)
{
    api_ctx ctx = {.m = arg, .req = req, .resp = resp};
    api_web_headers(resp);
    vmseal_clear_error();
    event_set_source(req->remote_addr);
    if (api_web_path(req->path)) {
        api_web(&ctx);
        goto out;
    }
    if (strlen(req->path) >= sizeof(ctx.segbuf) || split(&ctx, req->path) < 0) {
        vmseal_http_error(resp, 404, "no such resource: %s", req->path);
        return;
    }
    const char *s0 = ctx.seg[0];
    if (!strcmp(s0, "session") && !strcmp(req->method, "POST")) {
        api_session(&ctx);
        goto out;
    }
    if (!strcmp(s0, "hosts") && ctx.nseg >= 2 &&
        (!strcmp(ctx.seg[1], "register") || !strcmp(ctx.seg[1], "self"))) {
        api_hosts(&ctx);
        goto out;
    }
    /* A Bearer token wins; the cookie counts only when the request has no
     * Authorization header at all (so API clients never meet the CSRF
     * rules, and a browser's cookie never adds to a token). */
    ctx.token = bearer(req);
    if (!vmseal_http_header(req, "Authorization")) {
        ctx.token = vmseal_http_cookie(req, API_COOKIE);
        ctx.cookie = ctx.token != NULL;
    }
    int rc = auth_session(ctx.m, ctx.token, ctx.user, sizeof(ctx.user), ctx.role, sizeof(ctx.role),
                          &ctx.privileges);
    if (rc < 0 && rc != -EACCES) {
        vmseal_http_error(resp, 503, "cannot check the session: %s", vmseal_last_error());
        goto out;
    }
    if (rc < 0) {
        vmseal_http_error(resp, 401, "%s", vmseal_last_error());
        vmseal_http_add_header(resp, "WWW-Authenticate", "Bearer realm=\"vmseal\"");
        if (ctx.cookie)
            api_web_set_cookie(resp, NULL, 0);   /* a stale cookie goes */
        goto out;
    }
    if (ctx.cookie && api_web_csrf_check(&ctx) < 0)
        goto out;
    if (!strcmp(s0, "session") && ctx.nseg == 2 && !strcmp(ctx.seg[1], "privileges") &&
        !strcmp(req->method, "GET"))
        api_session_privileges(&ctx);
    else if (!strcmp(s0, "session"))
        api_session(&ctx);
    else if (!strcmp(s0, "users"))
        api_users(&ctx);
    else if (!strcmp(s0, "roles"))
        api_roles(&ctx);
    else if (!strcmp(s0, "events"))
        api_events(&ctx);
    else if (!strcmp(s0, "kms"))
        api_kms(&ctx);
    else if (!strcmp(s0, "hosts"))
        api_hosts(&ctx);
    else if (!strcmp(s0, "vms"))
        api_vms(&ctx);
    else if (!strcmp(s0, "tasks"))
        api_tasks(&ctx);
    else if (!strcmp(s0, "groups"))
        api_groups(&ctx);
    else if (!strcmp(s0, "permissions"))
        api_permissions(&ctx);
    else if (!strcmp(s0, "keys"))
        api_keys(&ctx);
    else if (!strcmp(s0, "diagnostics"))
        api_diagnostics(&ctx);
    else
        vmseal_http_error(resp, 404, "no such resource: %s", req->path);
out:
    event_set_source(NULL);
    free(ctx.privileges);
}
