/* vmseal-managerd — the API layer's privilege checks: each operation's row
 * of api_table.c on the object it names, and the no-escalation rules
 * (granting, assigning or putting into a role a privilege needs holding it;
 * changing a user needs holding what they hold). A refusal is a 403 naming
 * the missing privilege and a "denied" event. The effective privileges come
 * from authz.c. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <vmseal/common.h>

#include "api.h"

static void object_of(const api_op *op, const char *name, char *out, size_t len)
{
    if (!strcmp(op->on, "root") || !name)
        snprintf(out, len, "root");
    else if (!strcmp(op->on, "object"))
        snprintf(out, len, "%s", name);
    else
        snprintf(out, len, "%s:%s", op->on, name);
}

int api_deny(api_ctx *ctx, const char *op, const char *object, const char *privilege, const char *why)
{
    if (why)
        vmseal_http_error(ctx->resp, 403, "permission denied: %s", why);
    else
        vmseal_http_error(ctx->resp, 403, "permission denied: user %s lacks the %s privilege on %s",
                          ctx->user, privilege, object);
    json_t *nv = json_pack("{s:s?,s:s?}", "missing", privilege, "reason", why);
    event_record(ctx->m, ctx->user, op, object, NULL, nv, "denied");
    json_decref(nv);
    return -EACCES;
}

int api_authorize_set(api_ctx *ctx, const char *op, const char *object, privset want)
{
    privset have = 0;
    int rc = authz_effective(ctx->m, ctx->user, object, &have, NULL);
    if (rc < 0) {
        api_fail(ctx, rc);
        return rc;
    }
    const char *miss = privset_first_missing(have, want);
    return miss ? api_deny(ctx, op, object, miss, NULL) : 0;
}

int api_authorize(api_ctx *ctx, const char *op_id, const char *name)
{
    const api_op *op = api_op_find(op_id);
    if (!op) {
        vmseal_http_error(ctx->resp, 500, "internal: no access rule for %s", op_id);
        return -EACCES;
    }
    char object[96];
    object_of(op, name, object, sizeof(object));
    privset have = 0;
    int encrypted = 0;
    int rc = authz_effective(ctx->m, ctx->user, object, &have, &encrypted);
    if (rc < 0) {
        api_fail(ctx, rc);   /* an object that is not one: 400 (EINVAL) */
        return rc;
    }
    const char *miss = privset_first_missing(have, privset_parse(op->privileges));
    if (!miss && op->crypto && encrypted)
        miss = privset_first_missing(have, privset_parse(op->crypto));
    if (miss)
        return api_deny(ctx, op_id, object, miss, NULL);
    return 0;
}

int api_may(api_ctx *ctx, const char *privilege, const char *object)
{
    privset have = 0;
    if (authz_effective(ctx->m, ctx->user, object, &have, NULL) < 0)
        return 0;
    int i = privset_index(privilege);
    return i >= 0 && (have & ((privset)1 << i));
}

int api_require_dominance(api_ctx *ctx, const char *op, const char *target)
{
    char object[96];
    const char *miss = NULL;
    int rc = authz_dominates(ctx->m, ctx->user, target, object, sizeof(object), &miss);
    if (rc < 0) {
        api_fail(ctx, rc);
        return rc;
    }
    if (!miss)
        return 0;
    char why[256];
    snprintf(why, sizeof(why), "user %s holds the %s privilege on %s, which %s lacks", target, miss, object,
             ctx->user);
    return api_deny(ctx, op, strcmp(object, "root") ? object : target, miss, why);
}
