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

#include "managerd.h"

static int group_exists(api_ctx *ctx, const char *name)
{
    store_rows *r = NULL;
    int rc = store_execv(ctx->m->db, &r, "SELECT name FROM groups WHERE name = $1", name, STORE_END);
    int n = rc < 0 ? rc : (int)store_rows_count(r);
    store_rows_free(r);
    return n;
}

static int user_exists(api_ctx *ctx, const char *name)
{
    store_rows *r = NULL;
    int rc = store_execv(ctx->m->db, &r, "SELECT name FROM users WHERE name = $1", name, STORE_END);
    int n = rc < 0 ? rc : (int)store_rows_count(r);
    store_rows_free(r);
    return n;
}

/* The caller must hold every privilege group G grants, on each object where
 * G has a permission: else adding a member would hand them out. */
static int may_manage_group(api_ctx *ctx, const char *op, const char *group)
{
    store_rows *r = NULL;
    int rc = store_execv(ctx->m->db, &r, "SELECT object, role FROM permissions WHERE principal = $1 AND is_group = 1",
                         group, STORE_END);
    if (rc < 0) {
        api_fail(ctx, rc);
        return rc;
    }
    for (size_t i = 0; i < store_rows_count(r) && rc >= 0; i++) {
        privset p = 0;
        if (authz_role_privileges(ctx->m, store_rows_get(r, i, 1), &p) == 0)
            rc = api_authorize_set(ctx, op, store_rows_get(r, i, 0), p);
    }
    store_rows_free(r);
    return rc;
}

static void groups_list(api_ctx *ctx)
{
    if (api_authorize(ctx, "group.list", NULL) < 0)
        return;
    store_rows *r = NULL, *mem = NULL;
    int rc = store_execv(ctx->m->db, &r, "SELECT name FROM groups ORDER BY name", STORE_END);
    if (rc >= 0)
        rc = store_execv(ctx->m->db, &mem, "SELECT group_name, user_name FROM group_members ORDER BY user_name",
                         STORE_END);
    if (rc < 0) {
        store_rows_free(r);
        api_fail(ctx, rc);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < store_rows_count(r); i++) {
        json_t *members = json_array();
        for (size_t k = 0; k < store_rows_count(mem); k++)
            if (!strcmp(store_rows_get(mem, k, 0), store_rows_get(r, i, 0)))
                json_array_append_new(members, json_string(store_rows_get(mem, k, 1)));
        json_array_append_new(arr, json_pack("{s:s,s:o}", "name", store_rows_get(r, i, 0), "members", members));
    }
    store_rows_free(r);
    store_rows_free(mem);
    vmseal_http_json(ctx->resp, 200, json_pack("{s:o}", "groups", arr));
}

void api_groups(api_ctx *ctx)
{
    const char *m = ctx->req->method;
    if (ctx->nseg == 1 && !strcmp(m, "GET")) {
        groups_list(ctx);
        return;
    }
    if (ctx->nseg == 1 && !strcmp(m, "POST")) {
        if (api_authorize(ctx, "group.create", NULL) < 0)
            return;
        json_t *b;
        if (api_body(ctx, &schema_group_add, &b) < 0)
            return;
        const char *name = json_string_value(json_object_get(b, "name"));
        char now[32];
        snprintf(now, sizeof(now), "%lld", (long long)mgr_now());
        int rc = store_execv(ctx->m->db, NULL, "INSERT INTO groups (name, created) VALUES ($1, $2)", name, now,
                             STORE_END);
        if (rc == -EEXIST)
            rc = vmseal_fail(EEXIST, "group %s exists already", name);
        if (rc < 0) {
            api_fail(ctx, rc);
        } else {
            json_t *nv = json_pack("{s:s}", "name", name);
            event_add(ctx->m, ctx->user, "group.create", name, NULL, nv);
            vmseal_http_json(ctx->resp, 201, nv);
        }
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
        int rc = group_exists(ctx, group);
        if (rc == 0)
            rc = vmseal_fail(ENOENT, "no group named %s", group);
        if (rc < 0) {
            api_fail(ctx, rc);
            return;
        }
        if (may_manage_group(ctx, "group.delete", group) < 0)
            return;
        rc = store_execv(ctx->m->db, NULL, "DELETE FROM permissions WHERE principal = $1 AND is_group = 1", group,
                         STORE_END);
        if (rc >= 0)
            rc = store_execv(ctx->m->db, NULL, "DELETE FROM group_members WHERE group_name = $1", group, STORE_END);
        if (rc >= 0)
            rc = store_execv(ctx->m->db, NULL, "DELETE FROM groups WHERE name = $1", group, STORE_END);
        if (rc < 0) {
            api_fail(ctx, rc);
            return;
        }
        json_t *ov = json_pack("{s:s}", "name", group);
        event_add(ctx->m, ctx->user, "group.delete", group, ov, NULL);
        json_decref(ov);
        vmseal_http_json(ctx->resp, 200, json_pack("{s:s,s:b}", "name", group, "deleted", 1));
        return;
    }
    if (ctx->nseg == 4 && !strcmp(ctx->seg[2], "members") && (!strcmp(m, "PUT") || !strcmp(m, "DELETE"))) {
        int add = !strcmp(m, "PUT");
        const char *op = add ? "group.member-add" : "group.member-rm";
        const char *user = ctx->seg[3];
        if (api_authorize(ctx, op, NULL) < 0)
            return;
        int rc = group_exists(ctx, group);
        if (rc == 0)
            rc = vmseal_fail(ENOENT, "no group named %s", group);
        if (rc > 0) {
            rc = user_exists(ctx, user);
            if (rc == 0)
                rc = vmseal_fail(ENOENT, "no user named %s", user);
        }
        if (rc < 0) {
            api_fail(ctx, rc);
            return;
        }
        if (may_manage_group(ctx, op, group) < 0 || api_require_dominance(ctx, op, user) < 0)
            return;
        if (add)
            rc = store_execv(ctx->m->db, NULL, "INSERT INTO group_members (group_name, user_name) VALUES ($1, $2)",
                             group, user, STORE_END);
        else
            rc = store_execv(ctx->m->db, NULL, "DELETE FROM group_members WHERE group_name = $1 AND user_name = $2",
                             group, user, STORE_END);
        if (rc == -EEXIST)
            rc = 1;   /* already a member: nothing changes */
        if (rc < 0) {
            api_fail(ctx, rc);
            return;
        }
        if (rc > 0) {
            json_t *v = json_pack("{s:s,s:s}", "group", group, "user", user);
            event_add(ctx->m, ctx->user, op, group, add ? NULL : v, add ? v : NULL);
            json_decref(v);
        }
        vmseal_http_json(ctx->resp, 200, json_pack("{s:s,s:s,s:b}", "group", group, "user", user, "member", add));
        return;
    }
    vmseal_http_error(ctx->resp, 404, "no such resource or method: %s %s", m, ctx->req->path);
}

static json_t *permission_json(store_rows *r, size_t i)
{
    int is_group = atoi(store_rows_get(r, i, 1));
    return json_pack("{s:s,s:s,s:s,s:b}", "object", store_rows_get(r, i, 2), is_group ? "group" : "user",
                     store_rows_get(r, i, 0), "role", store_rows_get(r, i, 3), "propagate",
                     atoi(store_rows_get(r, i, 4)));
}

static void permissions_list(api_ctx *ctx)
{
    if (api_authorize(ctx, "permission.list", NULL) < 0)
        return;
    const char *object = vmseal_http_query(ctx->req, "object");
    store_rows *r = NULL;
    int rc = store_execv(ctx->m->db, &r,
                         "SELECT principal, is_group, object, role, propagate FROM permissions "
                         "WHERE $1 = '' OR object = $1 ORDER BY object, is_group, principal",
                         object ? object : "", STORE_END);
    if (rc < 0) {
        api_fail(ctx, rc);
        return;
    }
    json_t *arr = json_array();
    /* Each user's own role is their permission on the root. */
    if (!object || !strcmp(object, "root")) {
        store_rows *u = NULL;
        if (store_execv(ctx->m->db, &u, "SELECT name, role FROM users ORDER BY name", STORE_END) >= 0)
            for (size_t i = 0; i < store_rows_count(u); i++)
                json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:b,s:b}", "object", "root", "user",
                                                     store_rows_get(u, i, 0), "role", store_rows_get(u, i, 1),
                                                     "propagate", 1, "user_role", 1));
        store_rows_free(u);
    }
    for (size_t i = 0; i < store_rows_count(r); i++)
        json_array_append_new(arr, permission_json(r, i));
    store_rows_free(r);
    vmseal_http_json(ctx->resp, 200, json_pack("{s:o}", "permissions", arr));
}

/* Check object and principal; fills the principal, is_group ("0"/"1"). */
static int permission_target(api_ctx *ctx, const char *object, const char *user, const char *group,
                             const char **principal, const char **is_group)
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
    int rc = user ? user_exists(ctx, user) : group_exists(ctx, group);
    if (rc == 0)
        rc = vmseal_fail(ENOENT, "no %s named %s", user ? "user" : "group", user ? user : group);
    if (rc < 0) {
        api_fail(ctx, rc);
        return rc;
    }
    *principal = user ? user : group;
    *is_group = user ? "0" : "1";
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
    const char *principal = NULL, *is_group = NULL;
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
    store_rows *r = NULL;
    rc = store_execv(ctx->m->db, &r,
                     "SELECT role, propagate FROM permissions WHERE principal = $1 AND is_group = $2 AND object = $3",
                     principal, is_group, object, STORE_END);
    json_t *old = NULL;
    if (rc >= 0 && store_rows_count(r) == 1) {
        privset oldp = 0;
        if (authz_role_privileges(ctx->m, store_rows_get(r, 0, 0), &oldp) == 0 &&
            api_authorize_set(ctx, "permission.add", object, oldp) < 0) {
            store_rows_free(r);
            goto out;
        }
        old = json_pack("{s:s,s:b}", "role", store_rows_get(r, 0, 0), "propagate", atoi(store_rows_get(r, 0, 1)));
    }
    store_rows_free(r);
    char now[32];
    snprintf(now, sizeof(now), "%lld", (long long)mgr_now());
    if (rc >= 0)
        rc = store_execv(ctx->m->db, NULL, "DELETE FROM permissions WHERE principal = $1 AND is_group = $2 AND object = $3",
                         principal, is_group, object, STORE_END);
    if (rc >= 0)
        rc = store_execv(ctx->m->db, NULL,
                         "INSERT INTO permissions (principal, is_group, object, role, propagate, created) "
                         "VALUES ($1, $2, $3, $4, $5, $6)",
                         principal, is_group, object, role, propagate ? "1" : "0", now, STORE_END);
    if (rc < 0) {
        json_decref(old);
        api_fail(ctx, rc);
        goto out;
    }
    json_t *nv = json_pack("{s:s,s:s,s:s,s:b}", "object", object, user ? "user" : "group", principal, "role", role,
                           "propagate", propagate);
    event_add(ctx->m, ctx->user, "permission.add", object, old, nv);
    json_decref(old);
    vmseal_http_json(ctx->resp, 201, nv);
out:
    json_decref(b);
}

static void permission_remove(api_ctx *ctx)
{
    const char *object = vmseal_http_query(ctx->req, "object");
    const char *user = vmseal_http_query(ctx->req, "user");
    const char *group = vmseal_http_query(ctx->req, "group");
    const char *principal = NULL, *is_group = NULL;
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
    store_rows *r = NULL;
    int rc = store_execv(ctx->m->db, &r,
                         "SELECT role, propagate FROM permissions WHERE principal = $1 AND is_group = $2 AND object = $3",
                         principal, is_group, object, STORE_END);
    if (rc >= 0 && store_rows_count(r) == 0)
        rc = vmseal_fail(ENOENT, "no permission for %s on %s", principal, object);
    if (rc < 0) {
        store_rows_free(r);
        api_fail(ctx, rc);
        return;
    }
    privset p = 0;
    (void)authz_role_privileges(ctx->m, store_rows_get(r, 0, 0), &p);
    json_t *old = json_pack("{s:s,s:s,s:s,s:b}", "object", object, user ? "user" : "group", principal, "role",
                            store_rows_get(r, 0, 0), "propagate", atoi(store_rows_get(r, 0, 1)));
    store_rows_free(r);
    if (api_authorize_set(ctx, "permission.remove", object, p) < 0 ||
        (user && api_require_dominance(ctx, "permission.remove", user) < 0) ||
        (group && may_manage_group(ctx, "permission.remove", group) < 0)) {
        json_decref(old);
        return;
    }
    rc = store_execv(ctx->m->db, NULL, "DELETE FROM permissions WHERE principal = $1 AND is_group = $2 AND object = $3",
                     principal, is_group, object, STORE_END);
    if (rc < 0) {
        json_decref(old);
        api_fail(ctx, rc);
        return;
    }
    event_add(ctx->m, ctx->user, "permission.remove", object, old, NULL);
    json_decref(old);
    vmseal_http_json(ctx->resp, 200, json_pack("{s:s,s:s,s:b}", "object", object, "principal", principal, "deleted", 1));
}

void api_permissions(api_ctx *ctx)
{
    const char *m = ctx->req->method;
    if (ctx->nseg != 1)
        vmseal_http_error(ctx->resp, 404, "no such resource: %s", ctx->req->path);
    else if (!strcmp(m, "GET"))
        permissions_list(ctx);
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
