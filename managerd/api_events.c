/* vmseal-managerd — /api/v1/events?since=ID&limit=N&wait=SECONDS */
#include <stdlib.h>
#include <string.h>

#include "managerd.h"

void api_events(api_ctx *ctx)
{
    if (ctx->nseg != 1 || strcmp(ctx->req->method, "GET") != 0) {
        vmseal_http_error(ctx->resp, 404, "use GET /api/v1/events");
        return;
    }
    if (api_require(ctx, "System.Read") < 0)
        return;
    const char *since = vmseal_http_query(ctx->req, "since");
    const char *limit = vmseal_http_query(ctx->req, "limit");
    const char *wait = vmseal_http_query(ctx->req, "wait");
    char *end;
    long long s = since ? strtoll(since, &end, 10) : 0;
    if (since && (*end || end == since)) {
        vmseal_http_error(ctx->resp, 400, "since must be an event id");
        return;
    }
    long l = limit ? strtol(limit, &end, 10) : 100;
    if (limit && (*end || l < 1 || l > 1000)) {
        vmseal_http_error(ctx->resp, 400, "limit must be 1..1000");
        return;
    }
    long w = wait ? strtol(wait, &end, 10) : 0;
    if (wait && (*end || w < 0 || w > 60)) {
        vmseal_http_error(ctx->resp, 400, "wait must be 0..60 seconds");
        return;
    }
    json_t *out = NULL;
    int rc = events_list(ctx->m, s, (int)l, (int)w, &out);
    if (rc < 0)
        api_fail(ctx, rc);
    else
        vmseal_http_json(ctx->resp, 200, out);
}
