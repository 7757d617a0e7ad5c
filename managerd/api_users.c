/* vmseal-managerd — /api/v1/users and /api/v1/roles.
 *
 * No escalation (see authz.c): creating a user or assigning a role needs
 * every privilege of that role; changing, resetting or deleting a user needs
 * every privilege that user holds (on every object); putting privileges
 * into a role needs holding them. The last Administrator cannot be deleted
 * or demoted (users.c). One's own password needs the old one, whoever one
 * is. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmseal/common.h>

#include "api.h"

/* 403 unless the caller holds every privilege of role (on the root). */
static int may_assign_role(api_ctx *ctx, const char *op, const char *role)
{
    privset p = 0;
    int rc = authz_role_privileges(ctx->m, role, &p);
    if (rc == -ENOENT) {
        vmseal_http_error(ctx->resp, 400, "no role named %s", role);
        return rc;
    }
    if (rc < 0) {
        api_fail(ctx, rc);
        return rc;
    }
    return api_authorize_set(ctx, op, "root", p);
}

static void users_get_all(api_ctx *ctx)
{
    if (api_authorize(ctx, "user.list", NULL) < 0)
        return;
    json_t *out = NULL;
    int rc = users_list(ctx->m, &out);
    api_reply(ctx, rc, 200, out);
}

static void user_add(api_ctx *ctx)
{
    if (api_authorize(ctx, "user.create", NULL) < 0)
        return;
    json_t *b;
    if (api_body(ctx, &schema_user_add, &b) < 0)
        return;
    const char *name = json_string_value(json_object_get(b, "name"));
    const char *role = json_string_value(json_object_get(b, "role"));
    if (may_assign_role(ctx, "user.create", role) < 0) {
        json_decref(b);
        return;
    }
    int rc = auth_user_create(ctx->m, ctx->user, name,
                              json_string_value(json_object_get(b, "password")), role);
    if (rc < 0)
        api_fail(ctx, rc == -ENOENT ? -EINVAL : rc);
    else
        vmseal_http_json(ctx->resp, 201, json_pack("{s:s,s:s}", "name", name, "role", role));
    json_decref(b);
}

static void user_patch(api_ctx *ctx, const char *name)
{
    if (api_authorize(ctx, "user.role", NULL) < 0)
        return;
    json_t *b, *u = NULL;
    if (api_body(ctx, &schema_user_patch, &b) < 0)
        return;
    int rc = users_get(ctx->m, name, &u);
    json_decref(u);
    if (rc < 0) {
        api_fail(ctx, rc);
        json_decref(b);
        return;
    }
    const char *role = json_string_value(json_object_get(b, "role"));
    if (may_assign_role(ctx, "user.role", role) < 0 || api_require_dominance(ctx, "user.role", name) < 0) {
        json_decref(b);
        return;
    }
    rc = users_set_role(ctx->m, ctx->user, name, role);
    api_reply(ctx, rc, 200, rc < 0 ? NULL : json_pack("{s:s,s:s}", "name", name, "role", role));
    json_decref(b);
}

static void user_password(api_ctx *ctx, const char *name)
{
    int self = strcmp(name, ctx->user) == 0;
    if (!self && (api_authorize(ctx, "user.password", NULL) < 0 ||
                  api_require_dominance(ctx, "user.password", name) < 0))
        return;
    json_t *b;
    if (api_body(ctx, &schema_password, &b) < 0)
        return;
    int rc;
    if (self) {
        /* Changing one's own password needs the current one, always: a
         * stolen session must not be enough to take the account over. */
        rc = users_check_password(ctx->m, name, json_string_value(json_object_get(b, "old_password")));
        if (rc == -EACCES) {
            api_fail(ctx, rc);
            json_t *nv = json_pack("{s:s}", "reason", "wrong or missing old password");
            event_record(ctx->m, ctx->user, "user.password", name, NULL, nv, "denied");
            json_decref(nv);
            json_decref(b);
            return;
        }
    } else {
        json_t *u = NULL;
        rc = users_get(ctx->m, name, &u);
        json_decref(u);
    }
    if (rc < 0) {
        api_fail(ctx, rc);
        json_decref(b);
        return;
    }
    /* one's own session (Bearer or the web client's cookie) stays */
    rc = users_set_password(ctx->m, ctx->user, name, json_string_value(json_object_get(b, "password")),
                            self ? ctx->token : NULL);
    json_decref(b);
    api_reply(ctx, rc, 200, rc < 0 ? NULL : json_pack("{s:s,s:b}", "name", name, "password_changed", 1));
}

static void user_delete(api_ctx *ctx, const char *name)
{
    if (api_authorize(ctx, "user.delete", NULL) < 0)
        return;
    if (!strcmp(name, ctx->user)) {
        vmseal_http_error(ctx->resp, 409, "you cannot remove yourself");
        return;
    }
    json_t *u = NULL;
    int rc = users_get(ctx->m, name, &u);
    json_decref(u);
    if (rc < 0) {
        api_fail(ctx, rc);
        return;
    }
    if (api_require_dominance(ctx, "user.delete", name) < 0)
        return;
    rc = users_delete(ctx->m, ctx->user, name);
    api_reply(ctx, rc, 200, rc < 0 ? NULL : json_pack("{s:s,s:b}", "name", name, "deleted", 1));
}

void api_users(api_ctx *ctx)
{
    const char *m = ctx->req->method;
    if (ctx->nseg == 1 && !strcmp(m, "GET")) {
        users_get_all(ctx);
        return;
    }
    if (ctx->nseg == 1 && !strcmp(m, "POST")) {
        user_add(ctx);
        return;
    }
    if (ctx->nseg >= 2 && !api_valid_name(ctx->seg[1])) {
        vmseal_http_error(ctx->resp, 404, "no such user");
        return;
    }
    if (ctx->nseg == 2 && !strcmp(m, "GET")) {
        if (strcmp(ctx->seg[1], ctx->user) != 0 && api_authorize(ctx, "user.get", NULL) < 0)
            return;
        json_t *out = NULL;
        int rc = users_get(ctx->m, ctx->seg[1], &out);
        api_reply(ctx, rc, 200, out);
        return;
    }
    if (ctx->nseg == 2 && !strcmp(m, "PATCH")) {
        user_patch(ctx, ctx->seg[1]);
        return;
    }
    if (ctx->nseg == 2 && !strcmp(m, "DELETE")) {
        user_delete(ctx, ctx->seg[1]);
        return;
    }
    if (ctx->nseg == 3 && !strcmp(ctx->seg[2], "password") && !strcmp(m, "PUT")) {
        user_password(ctx, ctx->seg[1]);
        return;
    }
    vmseal_http_error(ctx->resp, 404, "no such resource or method: %s %s", m, ctx->req->path);
}

/* Privileges from a JSON array into a space-separated list and a set;
 * 400 for unknown names. */
static int privileges_from(api_ctx *ctx, const json_t *arr, char *out, size_t outlen, privset *set)
{
    size_t i;
    json_t *p;
    out[0] = '\0';
    *set = 0;
    json_array_foreach(arr, i, p) {
        const char *s = json_string_value(p);
        int idx = privset_index(s);
        if (idx < 0) {
            vmseal_http_error(ctx->resp, 400, "unknown privilege %.64s", s);
            return -EINVAL;
        }
        if (*set & ((privset)1 << idx))
            continue;
        *set |= (privset)1 << idx;
        if (strlen(out) + strlen(s) + 2 > outlen) {
            vmseal_http_error(ctx->resp, 400, "too many privileges");
            return -EINVAL;
        }
        if (out[0])
            strcat(out, " ");
        strcat(out, s);
    }
    return 0;
}

static void roles_get_all(api_ctx *ctx)
{
    if (api_authorize(ctx, "role.list", NULL) < 0)
        return;
    json_t *out = NULL;
    int rc = roles_list(ctx->m, &out);
    api_reply(ctx, rc, 200, out);
}

static void role_add(api_ctx *ctx)
{
    if (api_authorize(ctx, "role.create", NULL) < 0)
        return;
    json_t *b;
    if (api_body(ctx, &schema_role_add, &b) < 0)
        return;
    char privs[4096];
    privset set = 0;
    if (privileges_from(ctx, json_object_get(b, "privileges"), privs, sizeof(privs), &set) < 0 ||
        api_authorize_set(ctx, "role.create", "root", set) < 0) {
        json_decref(b);
        return;
    }
    json_t *out = NULL;
    int rc = roles_create(ctx->m, ctx->user, json_string_value(json_object_get(b, "name")), privs, &out);
    api_reply(ctx, rc, 201, out);
    json_decref(b);
}

static void role_update(api_ctx *ctx, const char *name)
{
    if (api_authorize(ctx, "role.update", NULL) < 0)
        return;
    json_t *b;
    if (api_body(ctx, &schema_role_patch, &b) < 0)
        return;
    char *oldp = NULL, privs[4096];
    privset set = 0;
    int rc = roles_get_custom(ctx->m, name, "changed", &oldp);
    if (rc < 0) {
        api_fail(ctx, rc);
    } else if (privileges_from(ctx, json_object_get(b, "privileges"), privs, sizeof(privs), &set) >= 0 &&
               api_authorize_set(ctx, "role.update", "root", set | privset_parse(oldp)) >= 0) {
        json_t *out = NULL;
        rc = roles_update(ctx->m, ctx->user, name, privs, &out);
        api_reply(ctx, rc, 200, out);
    }
    free(oldp);
    json_decref(b);
}

static void role_delete(api_ctx *ctx, const char *name)
{
    if (api_authorize(ctx, "role.delete", NULL) < 0)
        return;
    char *privs = NULL;
    int rc = roles_get_custom(ctx->m, name, "removed", &privs);
    if (rc < 0) {
        api_fail(ctx, rc);
        return;
    }
    rc = api_authorize_set(ctx, "role.delete", "root", privset_parse(privs));
    free(privs);
    if (rc < 0)
        return;
    rc = roles_delete(ctx->m, ctx->user, name);
    api_reply(ctx, rc, 200, rc < 0 ? NULL : json_pack("{s:s,s:b}", "name", name, "deleted", 1));
}

void api_roles(api_ctx *ctx)
{
    const char *m = ctx->req->method;
    if (ctx->nseg == 1 && !strcmp(m, "GET"))
        roles_get_all(ctx);
    else if (ctx->nseg == 1 && !strcmp(m, "POST"))
        role_add(ctx);
    else if (ctx->nseg == 2 && !api_valid_name(ctx->seg[1]))
        vmseal_http_error(ctx->resp, 404, "no such role");
    else if (ctx->nseg == 2 && !strcmp(m, "PATCH"))
        role_update(ctx, ctx->seg[1]);
    else if (ctx->nseg == 2 && !strcmp(m, "DELETE"))
        role_delete(ctx, ctx->seg[1]);
    else
        vmseal_http_error(ctx->resp, 404, "no such resource or method: %s %s", m, ctx->req->path);
}
