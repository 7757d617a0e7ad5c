/* vmseal-managerd — groups, permissions on objects, and what one may do:
 *
 *   GET    /groups                          {"groups": [{name, members[]}]}
 *   POST   /groups                          {name}
 *   DELETE /groups/{group}
 *   PUT    /groups/{group}/members/{user}
 *   DELETE /groups/{group}/members/{user}
 *   GET    /permissions[?object=O]          {"permissions": [{object, user|group, role, propagate}]}
 *   POST   /permissions                     {object, user|group, role, propagate?}
 *   DELETE /permissions?object=O&user=U | &group=G
 *   GET    /session/privileges?object=O     what the caller may do on O
 *
 * Objects: root, host:NAME, folder:NAME, vm:NAME. A user's role on the root
 * is the user's own role (PATCH /users/{name}); permissions set the others.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmseal/common.h>

#include "api.h"

/* The caller must hold every privilege group G grants, on each object where
 * G has a permission: else adding a member would hand them out. */
static int may_manage_group(api_ctx *ctx, const char *op, const char *group)
{
    json_t *grants = NULL;
    int rc = groups_grants(ctx->m, group, &grants);
    if (rc < 0) {
        api_fail(ctx, rc);
        return rc;
    }
    size_t i;
    json_t *g;
    json_array_foreach(grants, i, g) {
        privset p = 0;
        if (authz_role_privileges(ctx->m, json_string_value(json_object_get(g, "role")), &p) == 0)
            rc = api_authorize_set(ctx, op, json_string_value(json_object_get(g, "object")), p);
        if (rc < 0)
            break;
    }
    json_decref(grants);
    return rc;
}

static void groups_get_all(api_ctx *ctx)
{
    if (api_authorize(ctx, "group.list", NULL) < 0)
        return;
    json_t *out = NULL;
    int rc = groups_list(ctx->m, &out);
    api_reply(ctx, rc, 200, out);
}

void api_groups(api_ctx *ctx)
{
    const char *m = ctx->req->method;
    if (ctx->nseg == 1 && !strcmp(m, "GET")) {
        groups_get_all(ctx);
        return;
    }
    if (ctx->nseg == 1 && !strcmp(m, "POST")) {
        if (api_authorize(ctx, "group.create", NULL) < 0)
            return;
        json_t *b;
        if (api_body(ctx, &schema_group_add, &b) < 0)
            return;
        json_t *out = NULL;
        int rc = groups_create(ctx->m, ctx->user, json_string_value(json_object_get(b, "name")), &out);
        api_reply(ctx, rc, 201, out);
        json_decref(b);
        return;
    }
    if (ctx->nseg < 2 || !api_valid_name(ctx->seg[1]) || (ctx->nseg >= 4 && !api_valid_name(ctx->seg[3]))) {
        vmseal_http_error(ctx->resp, 404, "no such group or user");
        return;
    }
    const char *group = ctx->seg[1];
    if (ctx->nseg == 2 && !strcmp(m, "DELETE")) {
        if (api_authorize(ctx, "group.delete", NULL) < 0)
            return;
        int rc = groups_exists(ctx->m, group);
        if (rc == 0)
            rc = vmseal_fail(ENOENT, "no group named %s", group);
        if (rc < 0) {
            api_fail(ctx, rc);
            return;
        }
        if (may_manage_group(ctx, "group.delete", group) < 0)
            return;
        rc = groups_delete(ctx->m, ctx->user, group);
        api_reply(ctx, rc, 200, rc < 0 ? NULL : json_pack("{s:s,s:b}", "name", group, "deleted", 1));
        return;
    }
    if (ctx->nseg == 4 && !strcmp(ctx->seg[2], "members") && (!strcmp(m, "PUT") || !strcmp(m, "DELETE"))) {
        int add = !strcmp(m, "PUT");
        const char *op = add ? "group.member-add" : "group.member-rm";
        const char *user = ctx->seg[3];
        if (api_authorize(ctx, op, NULL) < 0)
            return;
        int rc = groups_exists(ctx->m, group);
        if (rc == 0)
            rc = vmseal_fail(ENOENT, "no group named %s", group);
        if (rc > 0) {
            rc = users_exists(ctx->m, user);
            if (rc == 0)
                rc = vmseal_fail(ENOENT, "no user named %s", user);
        }
        if (rc < 0) {
            api_fail(ctx, rc);
            return;
        }
        if (may_manage_group(ctx, op, group) < 0 || api_require_dominance(ctx, op, user) < 0)
            return;
        rc = groups_member(ctx->m, ctx->user, group, user, add);
        api_reply(ctx, rc, 200,
                  rc < 0 ? NULL : json_pack("{s:s,s:s,s:b}", "group", group, "user", user, "member", add));
        return;
    }
    vmseal_http_error(ctx->resp, 404, "no such resource or method: %s %s", m, ctx->req->path);
}

static void permissions_get_all(api_ctx *ctx)
{
    if (api_authorize(ctx, "permission.list", NULL) < 0)
        return;
    json_t *out = NULL;
    int rc = perms_list(ctx->m, vmseal_http_query(ctx->req, "object"), &out);
    api_reply(ctx, rc, 200, out);
}

/* Check object and principal; fills the principal, is_group. */
static int permission_target(api_ctx *ctx, const char *object, const char *user, const char *group,
                             const char **principal, int *is_group)
{
    char kind[8];
    const char *name;
    if (authz_parse_object(object, kind, sizeof(kind), &name) < 0) {
        vmseal_http_error(ctx->resp, 400, "%s", vmseal_last_error());
        return -EINVAL;
    }
    if (!strcmp(kind, "root") && user) {
        vmseal_http_error(ctx->resp, 400, "a user's permission on the root is the user's role: "
                                          "use PATCH /users/{name} (vmseal user role)");
        return -EINVAL;
    }
    if ((user != NULL) == (group != NULL)) {
        vmseal_http_error(ctx->resp, 400, "name either a user or a group");
        return -EINVAL;
    }
    int rc = user ? users_exists(ctx->m, user) : groups_exists(ctx->m, group);
    if (rc == 0)
        rc = vmseal_fail(ENOENT, "no %s named %s", user ? "user" : "group", user ? user : group);
    if (rc < 0) {
        api_fail(ctx, rc);
        return rc;
    }
    *principal = user ? user : group;
    *is_group = user == NULL;
    return 0;
}

static void permission_add(api_ctx *ctx)
{
    json_t *b;
    if (api_body(ctx, &schema_permission, &b) < 0)
        return;
    const char *object = json_string_value(json_object_get(b, "object"));
    const char *user = json_string_value(json_object_get(b, "user"));
    const char *group = json_string_value(json_object_get(b, "group"));
    const char *role = json_string_value(json_object_get(b, "role"));
    json_t *pj = json_object_get(b, "propagate");
    int propagate = pj ? json_is_true(pj) : 1;
    const char *principal = NULL;
    int is_group = 0;
    privset p = 0;
    int rc;
    if (!role) {
        vmseal_http_error(ctx->resp, 400, "field 'role' is required");
        goto out;
    }
    if (permission_target(ctx, object, user, group, &principal, &is_group) < 0 ||
        api_authorize(ctx, "permission.add", object) < 0)
        goto out;
    rc = authz_role_privileges(ctx->m, role, &p);
    if (rc < 0) {
        vmseal_http_error(ctx->resp, 400, "no role named %s", role);
        goto out;
    }
    /* Hold what you grant; and for a user, hold what they hold. */
    if (api_authorize_set(ctx, "permission.add", object, p) < 0 ||
        (user && api_require_dominance(ctx, "permission.add", user) < 0) ||
        (group && may_manage_group(ctx, "permission.add", group) < 0))
        goto out;
    /* Replacing a permission needs holding what it gave, too. */
    char oldrole[80];
    int oldprop = 0;
    rc = perms_get(ctx->m, principal, is_group, object, oldrole, sizeof(oldrole), &oldprop);
    if (rc == 0) {
        privset oldp = 0;
        if (authz_role_privileges(ctx->m, oldrole, &oldp) == 0 &&
            api_authorize_set(ctx, "permission.add", object, oldp) < 0)
            goto out;
    }
    json_t *nv = NULL;
    rc = rc < 0 && rc != -ENOENT ? rc : perms_set(ctx->m, ctx->user, object, principal, is_group, role, propagate, &nv);
    api_reply(ctx, rc, 201, nv);
out:
    json_decref(b);
}

static void permission_remove(api_ctx *ctx)
{
    const char *object = vmseal_http_query(ctx->req, "object");
    const char *user = vmseal_http_query(ctx->req, "user");
    const char *group = vmseal_http_query(ctx->req, "group");
    const char *principal = NULL;
    int is_group = 0;
    if (!object) {
        vmseal_http_error(ctx->resp, 400, "give ?object=...&user=... or &group=...");
        return;
    }
    if ((user && !api_valid_name(user)) || (group && !api_valid_name(group))) {
        vmseal_http_error(ctx->resp, 400, "invalid user or group name");
        return;
    }
    if (permission_target(ctx, object, user, group, &principal, &is_group) < 0 ||
        api_authorize(ctx, "permission.remove", object) < 0)
        return;
    char role[80];
    int propagate = 0;
    int rc = perms_get(ctx->m, principal, is_group, object, role, sizeof(role), &propagate);
    if (rc < 0) {
        api_fail(ctx, rc);
        return;
    }
    privset p = 0;
    (void)authz_role_privileges(ctx->m, role, &p);
    if (api_authorize_set(ctx, "permission.remove", object, p) < 0 ||
        (user && api_require_dominance(ctx, "permission.remove", user) < 0) ||
        (group && may_manage_group(ctx, "permission.remove", group) < 0))
        return;
    rc = perms_remove(ctx->m, ctx->user, object, principal, is_group);
    api_reply(ctx, rc, 200,
              rc < 0 ? NULL
                     : json_pack("{s:s,s:s,s:b}", "object", object, "principal", principal, "deleted", 1));
}

void api_permissions(api_ctx *ctx)
{
    const char *m = ctx->req->method;
    if (ctx->nseg != 1)
        vmseal_http_error(ctx->resp, 404, "no such resource: %s", ctx->req->path);
    else if (!strcmp(m, "GET"))
        permissions_get_all(ctx);
    else if (!strcmp(m, "POST"))
        permission_add(ctx);
    else if (!strcmp(m, "DELETE"))
        permission_remove(ctx);
    else
        vmseal_http_error(ctx->resp, 405, "use GET, POST or DELETE on /api/v1/permissions");
}

void api_session_privileges(api_ctx *ctx)
{
    const char *object = vmseal_http_query(ctx->req, "object");
    if (!object)
        object = "root";
    char kind[8];
    const char *name;
    if (authz_parse_object(object, kind, sizeof(kind), &name) < 0) {
        vmseal_http_error(ctx->resp, 400, "%s", vmseal_last_error());
        return;
    }
    if (api_authorize(ctx, "whoami.on", object) < 0)
        return;
    privset p = 0;
    int encrypted = 0;
    int rc = authz_effective(ctx->m, ctx->user, object, &p, &encrypted);
    if (rc < 0) {
        api_fail(ctx, rc);
        return;
    }
    json_t *privs = json_array(), *ops = json_array();
    size_t i = 0;
    for (const mgr_privilege *q = mgr_privileges; q->name; q++, i++)
        if (p & ((privset)1 << i))
            json_array_append_new(privs, json_string(q->name));
    /* The operations of the table that apply to this kind of object and
     * that the caller may do there. */
    for (const api_op *o = mgr_api_ops; o->id; o++) {
        if (strcmp(o->on, kind) != 0 && !(strcmp(kind, "root") == 0 && strcmp(o->on, "root") == 0))
            continue;
        privset want = privset_parse(o->privileges);
        if (o->crypto && encrypted)
            want |= privset_parse(o->crypto);
        if (!privset_first_missing(p, want))
            json_array_append_new(ops, json_string(o->id));
    }
    vmseal_http_json(ctx->resp, 200, json_pack("{s:s,s:s,s:o,s:o}", "user", ctx->user, "object", object,
                                               "privileges", privs, "operations", ops));
}
