/* vmseal-managerd — /api/v1/session: log in, who am I, log out.
 *
 * A login with "cookie": true is the web client's: the token goes only
 * into an HttpOnly, Secure, SameSite=Strict cookie (never into the body,
 * so the page's script never holds it), and the answer carries the
 * session's CSRF token instead (docs/web.md). */
#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>

#include "api.h"

void api_session(api_ctx *ctx)
{
    const char *method = ctx->req->method;
    if (ctx->nseg != 1)
        goto notfound;
    if (!strcmp(method, "POST")) {
        json_t *b;
        if (api_body(ctx, &schema_session, &b) < 0)
            return;
        int cookie = json_is_true(json_object_get(b, "cookie"));
        if (cookie && api_web_login_check(ctx) < 0) {
            json_decref(b);
            return;
        }
        char token[80];
        int64_t expires = 0;
        const char *user = json_string_value(json_object_get(b, "user"));
        int rc = auth_login(ctx->m, user, json_string_value(json_object_get(b, "password")), token,
                            sizeof(token), &expires);
        if (rc < 0) {
            json_decref(b);
            /* a wrong user name or password is a failed authentication
             * (401); the rest as everywhere (429 locked, 503 busy) */
            if (rc == -EACCES)
                vmseal_http_error(ctx->resp, 401, "%s", vmseal_last_error());
            else
                api_fail(ctx, rc);
            if (rc == -EAGAIN)
                vmseal_http_add_header(ctx->resp, "Retry-After", "60");
            return;
        }
        api_ctx who = {.m = ctx->m};
        if (auth_session(ctx->m, token, who.user, sizeof(who.user), who.role, sizeof(who.role),
                         &who.privileges) < 0) {
            json_decref(b);
            OPENSSL_cleanse(token, sizeof(token));
            api_fail(ctx, -EIO);
            return;
        }
        if (cookie) {
            char csrf[65];
            auth_csrf_token(token, csrf);
            api_web_set_cookie(ctx->resp, token, (long long)(expires - mgr_now()));
            vmseal_http_json(ctx->resp, 201,
                             json_pack("{s:s,s:I,s:s,s:s,s:s}", "csrf", csrf, "expires",
                                       (json_int_t)expires, "user", who.user, "role", who.role,
                                       "privileges", who.privileges));
        } else {
            vmseal_http_json(ctx->resp, 201,
                             json_pack("{s:s,s:I,s:s,s:s,s:s}", "token", token, "expires",
                                       (json_int_t)expires, "user", who.user, "role", who.role,
                                       "privileges", who.privileges));
        }
        free(who.privileges);
        OPENSSL_cleanse(token, sizeof(token));
        json_decref(b);
        return;
    }
    if (!strcmp(method, "GET")) {
        json_t *o = json_pack("{s:s,s:s,s:s}", "user", ctx->user, "role", ctx->role, "privileges",
                              ctx->privileges);
        if (ctx->cookie) {
            /* a reloaded page learns its CSRF token here (same-origin
             * read; SameSite=Strict keeps the cookie off cross-site ones) */
            char csrf[65];
            auth_csrf_token(ctx->token, csrf);
            json_object_set_new(o, "csrf", json_string(csrf));
        }
        vmseal_http_json(ctx->resp, 200, o);
        return;
    }
    if (!strcmp(method, "DELETE")) {
        int rc = auth_logout(ctx->m, ctx->token);
        if (ctx->cookie)
            api_web_set_cookie(ctx->resp, NULL, 0);
        if (rc < 0)
            api_fail(ctx, rc);
        else
            vmseal_http_json(ctx->resp, 200, json_pack("{s:b}", "logged_out", 1));
        return;
    }
notfound:
    vmseal_http_error(ctx->resp, 405, "use POST (log in), GET or DELETE on /api/v1/session");
}
