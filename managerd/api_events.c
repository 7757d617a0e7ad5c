/* vmseal-managerd — the event log and diagnostics:
 *   GET /events?since=ID&limit=N&wait=SECONDS&user=U&object=O&action=A&result=R&from=T&to=T
 *   GET /events/verify        check the hash chain
 *   GET /diagnostics          manager facts for support */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"

static int int_arg(api_ctx *ctx, const char *name, long long lo, long long hi, long long def, long long *out)
{
    const char *v = vmseal_http_query(ctx->req, name);
    *out = def;
    if (!v)
        return 0;
    char *end;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || x < lo || x > hi) {
        vmseal_http_error(ctx->resp, 400, "%s must be a whole number from %lld to %lld", name, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

static int name_arg(api_ctx *ctx, const char *name, size_t max, const char **out)
{
    const char *v = vmseal_http_query(ctx->req, name);
    *out = v;
    if (v && strlen(v) > max) {
        vmseal_http_error(ctx->resp, 400, "%s is longer than %zu characters", name, max);
        return -1;
    }
    return 0;
}

void api_events(api_ctx *ctx)
{
    if (strcmp(ctx->req->method, "GET") != 0 || ctx->nseg > 2 ||
        (ctx->nseg == 2 && strcmp(ctx->seg[1], "verify") != 0)) {
        vmseal_http_error(ctx->resp, 404, "use GET /api/v1/events or /api/v1/events/verify");
        return;
    }
    json_t *out = NULL;
    if (ctx->nseg == 2) {
        if (api_authorize(ctx, "event.verify", NULL) < 0)
            return;
        int rc = events_verify(ctx->m, &out);
        if (rc < 0)
            api_fail(ctx, rc);
        else
            vmseal_http_json(ctx->resp, 200, out);
        return;
    }
    if (api_authorize(ctx, "event.list", NULL) < 0)
        return;
    long long s, l, w, from, to;
    events_filter f = {0};
    if (int_arg(ctx, "since", INT64_MIN / 2, INT64_MAX / 2, 0, &s) < 0 || int_arg(ctx, "limit", 1, 1000, 100, &l) < 0 ||
        int_arg(ctx, "wait", 0, 60, 0, &w) < 0 || int_arg(ctx, "from", 0, INT64_MAX / 2, 0, &from) < 0 ||
        int_arg(ctx, "to", 0, INT64_MAX / 2, 0, &to) < 0 || name_arg(ctx, "user", 64, &f.user) < 0 ||
        name_arg(ctx, "object", 200, &f.object) < 0 || name_arg(ctx, "action", 64, &f.action) < 0 ||
        name_arg(ctx, "result", 16, &f.result) < 0)
        return;
    f.from = from;
    f.to = to;
    int rc = events_list(ctx->m, &f, s, (int)l, (int)w, &out);
    if (rc < 0)
        api_fail(ctx, rc);
    else
        vmseal_http_json(ctx->resp, 200, out);
}

void api_diagnostics(api_ctx *ctx)
{
    if (ctx->nseg != 1 || strcmp(ctx->req->method, "GET") != 0) {
        vmseal_http_error(ctx->resp, 404, "use GET /api/v1/diagnostics");
        return;
    }
    if (api_authorize(ctx, "diagnostics.get", NULL) < 0)
        return;
    json_t *out = NULL;
    int rc = diagnostics_get(ctx->m, &out);
    api_reply(ctx, rc, 200, out);
}
