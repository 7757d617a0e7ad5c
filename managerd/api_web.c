/* vmseal-managerd — the web client (docs/web.md): its static files, the
 * security headers of every answer, and the rules of its cookie session.
 *
 * The files under web/ are compiled into the manager (web/embed.py makes
 * web_assets.c at build time): nothing is read from disk or fetched at run
 * time, and a path that is not one of them is 404 (no file system lookup,
 * so no traversal). /ui/api-table.json is the operation table of
 * api_table.c, which the client uses to name the privilege an action
 * lacks.
 *
 * The browser's session: POST /api/v1/session {"cookie": true} sets the
 * token in a cookie that script cannot read (HttpOnly), that travels only
 * over TLS (Secure), only to this origin (__Host- prefix, Path=/) and never
 * with a request another site starts (SameSite=Strict). A request that
 * authenticates with the cookie must also be same-origin (Origin and
 * Sec-Fetch-Site, when the browser sends them), and one that changes
 * anything (any method but GET and HEAD) must carry the session's CSRF
 * token in X-CSRF-Token. Requests with an Authorization header never use
 * the cookie.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include <vmseal/common.h>

#include "api.h"

/* No inline script or style, no eval, nothing from another origin, no
 * framing; Trusted Types make every HTML-parsing sink (innerHTML,
 * insertAdjacentHTML, document.write...) throw, so server strings can only
 * ever become text. Must fit a response header value (255 bytes). */
static const char csp[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'; "
    "require-trusted-types-for 'script'; trusted-types 'none'";

void api_web_headers(vmseal_http_response *resp)
{
    _Static_assert(sizeof(csp) <= sizeof(resp->headers[0].value), "CSP too long for a header");
    vmseal_http_add_header(resp, "Content-Security-Policy", csp);
    vmseal_http_add_header(resp, "X-Content-Type-Options", "nosniff");
    vmseal_http_add_header(resp, "X-Frame-Options", "DENY");
    vmseal_http_add_header(resp, "Referrer-Policy", "no-referrer");
    vmseal_http_add_header(resp, "Cross-Origin-Opener-Policy", "same-origin");
    vmseal_http_add_header(resp, "Cross-Origin-Resource-Policy", "same-origin");
    vmseal_http_add_header(resp, "Strict-Transport-Security", "max-age=31536000");
}

int api_web_path(const char *path)
{
    return !strcmp(path, "/") || !strcmp(path, "/ui") || !strncmp(path, "/ui/", 4);
}

static void plain(vmseal_http_response *resp, int status, const char *text)
{
    resp->status = status;
    resp->raw = strdup(text);
    resp->raw_len = resp->raw ? strlen(text) : 0;
    resp->content_type = "text/plain; charset=utf-8";
}

void api_web(api_ctx *ctx)
{
    const char *method = ctx->req->method, *path = ctx->req->path;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        plain(ctx->resp, 405, "the web client's files are read with GET\n");
        vmseal_http_add_header(ctx->resp, "Allow", "GET, HEAD");
        return;
    }
    if (!strcmp(path, "/") || !strcmp(path, "/ui") || !strcmp(path, "/ui/"))
        path = "/ui/index.html";
    if (!strcmp(path, "/ui/api-table.json")) {
        vmseal_http_json(ctx->resp, 200, api_table_json());
        return;
    }
    for (const web_asset *a = web_assets; a->path; a++) {
        if (strcmp(a->path, path) != 0)
            continue;
        ctx->resp->raw = malloc(a->len ? a->len : 1);
        if (!ctx->resp->raw) {
            plain(ctx->resp, 500, "out of memory\n");
            return;
        }
        memcpy(ctx->resp->raw, a->data, a->len);
        ctx->resp->raw_len = a->len;
        ctx->resp->content_type = a->type;
        ctx->resp->status = 200;
        return;
    }
    plain(ctx->resp, 404, "no such file in the web client\n");
}

void api_web_set_cookie(vmseal_http_response *resp, const char *token, long long max_age)
{
    char v[256];
    snprintf(v, sizeof(v), "%s=%s; Path=/; Max-Age=%lld; Secure; HttpOnly; SameSite=Strict", API_COOKIE,
             token ? token : "", token && max_age > 0 ? max_age : 0);
    vmseal_http_add_header(resp, "Set-Cookie", v);
    OPENSSL_cleanse(v, sizeof(v));
}

/* NULL when the request may come from this origin's own page (or from no
 * page at all: a typed address), else why not. */
static const char *cross_site(api_ctx *ctx, char *why, size_t len)
{
    const char *site = vmseal_http_header(ctx->req, "Sec-Fetch-Site");
    if (site && strcmp(site, "same-origin") != 0 && strcmp(site, "none") != 0) {
        snprintf(why, len, "the request came from another site (Sec-Fetch-Site: %.32s)", site);
        return why;
    }
    const char *origin = vmseal_http_header(ctx->req, "Origin");
    if (origin) {
        const char *host = vmseal_http_header(ctx->req, "Host");
        char want[300];
        snprintf(want, sizeof(want), "https://%s", host ? host : "");
        if (!host || strcasecmp(origin, want) != 0) {
            snprintf(why, len, "the request came from another origin (Origin: %.100s)", origin);
            return why;
        }
    }
    return NULL;
}

static int refuse(api_ctx *ctx, const char *why)
{
    vmseal_http_error(ctx->resp, 403, "cross-site request refused: %s", why);
    json_t *nv = json_pack("{s:s,s:s,s:s}", "reason", why, "method", ctx->req->method, "path",
                           ctx->req->path);
    if (ctx->user[0])
        event_record(ctx->m, ctx->user, "web.csrf", "root", NULL, nv, "denied");
    json_decref(nv);
    mgr_log("cross-site request refused: %s %s from %s: %s", ctx->req->method, ctx->req->path,
            ctx->req->remote_addr, why);
    return -1;
}

int api_web_csrf_check(api_ctx *ctx)
{
    char why[200];
    if (cross_site(ctx, why, sizeof(why)))
        return refuse(ctx, why);
    const char *m = ctx->req->method;
    if (!strcmp(m, "GET") || !strcmp(m, "HEAD"))
        return 0;
    const char *got = vmseal_http_header(ctx->req, API_CSRF_HEADER);
    char want[65];
    auth_csrf_token(ctx->token, want);
    if (!got || strlen(got) != 64 || strlen(want) != 64 || vmseal_memcmp_ct(got, want, 64) != 0)
        return refuse(ctx, "the session's CSRF token (" API_CSRF_HEADER ") is missing or wrong");
    return 0;
}

int api_web_login_check(api_ctx *ctx)
{
    char why[200];
    if (cross_site(ctx, why, sizeof(why)))
        return refuse(ctx, why);
    /* Forms (and so other sites) can send only url-encoded, multipart or
     * text/plain bodies without a CORS preflight, which this server never
     * grants: JSON proves the page's own script sent it. */
    const char *ct = vmseal_http_header(ctx->req, "Content-Type");
    if (!ct || strncasecmp(ct, "application/json", 16) != 0 || (ct[16] && ct[16] != ';'))
        return refuse(ctx, "a browser's login must be sent as application/json");
    return 0;
}
