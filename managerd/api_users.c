/* vmseal-managerd — /api/v1/users and /api/v1/roles.
 *
 * No escalation (see authz.c): creating a user or assigning a role needs
 * every privilege of that role; changing, resetting or deleting a user needs
 * every privilege that user holds (on every object); putting privileges
 * into a role needs holding them. The last Administrator cannot be deleted
 * or demoted. One's own password needs the old one, whoever one is. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include <vmseal/common.h>

#include "managerd.h"

static json_t *user_json(store_rows *r, size_t i)
{
    return json_pack("{s:s,s:s,s:I,s:I}", "name", store_rows_get(r, i, 0), "role",
                     store_rows_get(r, i, 1), "created", (json_int_t)atoll(store_rows_get(r, i, 2)),
                     "password_changed", (json_int_t)atoll(store_rows_get(r, i, 3)));
}

static int load_user(api_ctx *ctx, const char *name, store_rows **r)
{
    int rc = store_execv(ctx->m->db, r,
                         "SELECT name, role, created, pw_changed, pwhash FROM users WHERE name = $1",
                         name, STORE_END);
    if (rc < 0)
        return rc;
    if (store_rows_count(*r) == 0) {
        store_rows_free(*r);
        *r = NULL;
        return vmseal_fail(ENOENT, "no user named %s", name);
    }
    return 0;
}

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

/* 409 when name is the last Administrator. */
static int last_admin(api_ctx *ctx, const char *op, const char *name, const char *role)
{
    if (strcmp(role, "Administrator") != 0)
        return 0;
    long n = 0;
    int rc = authz_admin_count(ctx->m, &n);
    if (rc < 0) {
        api_fail(ctx, rc);
        return rc;
    }
    if (n > 1)
        return 0;
    vmseal_http_error(ctx->resp, 409, "%s is the last Administrator: make another one first", name);
    json_t *nv = json_pack("{s:s}", "reason", "last Administrator");
    event_record(ctx->m, ctx->user, op, name, NULL, nv, "failed");
    json_decref(nv);
    return -EBUSY;
}

static void users_list(api_ctx *ctx)
{
    if (api_authorize(ctx, "user.list", NULL) < 0)
        return;
    store_rows *r = NULL;
    int rc = store_execv(ctx->m->db, &r,
                         "SELECT name, role, created, pw_changed FROM users ORDER BY name", STORE_END);
    if (rc < 0) {
        api_fail(ctx, rc);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < store_rows_count(r); i++)
        json_array_append_new(arr, user_json(r, i));
    store_rows_free(r);
    vmseal_http_json(ctx->resp, 200, json_pack("{s:o}", "users", arr));
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
    json_t *b;
    if (api_body(ctx, &schema_user_patch, &b) < 0)
        return;
    store_rows *r = NULL;
    int rc = load_user(ctx, name, &r);
    if (rc < 0) {
        api_fail(ctx, rc);
        json_decref(b);
        return;
    }
    const char *role = json_string_value(json_object_get(b, "role"));
    json_t *old = json_pack("{s:s}", "role", store_rows_get(r, 0, 1));
    char oldrole[80];
    snprintf(oldrole, sizeof(oldrole), "%s", store_rows_get(r, 0, 1));
    store_rows_free(r);
    if (may_assign_role(ctx, "user.role", role) < 0 || api_require_dominance(ctx, "user.role", name) < 0 ||
        (strcmp(role, "Administrator") != 0 && last_admin(ctx, "user.role", name, oldrole) < 0)) {
        json_decref(old);
        json_decref(b);
        return;
    }
    rc = store_execv(ctx->m->db, NULL, "UPDATE users SET role = $2 WHERE name = $1", name, role, STORE_END);
    if (rc == -EINVAL || rc == -EEXIST)
        rc = vmseal_fail(EINVAL, "no role named %s", role);
    if (rc < 0) {
        api_fail(ctx, rc);
    } else {
        json_t *nv = json_pack("{s:s}", "role", role);
        event_add(ctx->m, ctx->user, "user.role", name, old, nv);
        json_decref(nv);
        vmseal_http_json(ctx->resp, 200, json_pack("{s:s,s:s}", "name", name, "role", role));
    }
    json_decref(old);
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
    store_rows *r = NULL;
    int rc = load_user(ctx, name, &r);
    if (rc < 0) {
        api_fail(ctx, rc);
        json_decref(b);
        return;
    }
    const char *oldpw = json_string_value(json_object_get(b, "old_password"));
    if (self) {
        /* Changing one's own password needs the current one, always: a
         * stolen session must not be enough to take the account over. */
        int vrc = oldpw ? auth_password_verify(oldpw, strlen(oldpw), store_rows_get(r, 0, 4)) : -EACCES;
        if (vrc < 0) {
            store_rows_free(r);
            json_decref(b);
            if (vrc == -ENOBUFS) {
                api_fail(ctx, vrc);
                return;
            }
            vmseal_http_error(ctx->resp, 403, "the current password (old_password) is wrong or missing");
            json_t *nv = json_pack("{s:s}", "reason", "wrong or missing old password");
            event_record(ctx->m, ctx->user, "user.password", name, NULL, nv, "denied");
            json_decref(nv);
            return;
        }
    }
    store_rows_free(r);
    const char *bearer = vmseal_http_header(ctx->req, "Authorization");
    rc = auth_set_password(ctx->m, name, json_string_value(json_object_get(b, "password")),
                           self && bearer && strlen(bearer) > 7 ? bearer + 7 : NULL);
    json_decref(b);
    if (rc < 0) {
        api_fail(ctx, rc);
        return;
    }
    json_t *nv = json_pack("{s:s}", "password", "changed");
    event_add(ctx->m, ctx->user, "user.password", name, NULL, nv);
    json_decref(nv);
    vmseal_http_json(ctx->resp, 200, json_pack("{s:s,s:b}", "name", name, "password_changed", 1));
}

static void user_delete(api_ctx *ctx, const char *name)
{
    if (api_authorize(ctx, "user.delete", NULL) < 0)
        return;
    if (!strcmp(name, ctx->user)) {
        vmseal_http_error(ctx->resp, 409, "you cannot remove yourself");
        return;
    }
    store_rows *r = NULL;
    int rc = load_user(ctx, name, &r);
    if (rc < 0) {
        api_fail(ctx, rc);
        return;
    }
    json_t *old = user_json(r, 0);
    char role[80];
    snprintf(role, sizeof(role), "%s", store_rows_get(r, 0, 1));
    store_rows_free(r);
    if (api_require_dominance(ctx, "user.delete", name) < 0 || last_admin(ctx, "user.delete", name, role) < 0) {
        json_decref(old);
        return;
    }
    rc = store_execv(ctx->m->db, NULL, "DELETE FROM users WHERE name = $1", name, STORE_END);
    if (rc >= 0)
        rc = store_execv(ctx->m->db, NULL, "DELETE FROM sessions WHERE user_name = $1", name, STORE_END);
    if (rc >= 0)
        rc = store_execv(ctx->m->db, NULL, "DELETE FROM permissions WHERE principal = $1 AND is_group = 0", name,
                         STORE_END);
    if (rc >= 0)
        rc = store_execv(ctx->m->db, NULL, "DELETE FROM group_members WHERE user_name = $1", name, STORE_END);
    if (rc < 0) {
        api_fail(ctx, rc);
    } else {
        event_add(ctx->m, ctx->user, "user.delete", name, old, NULL);
        vmseal_http_json(ctx->resp, 200, json_pack("{s:s,s:b}", "name", name, "deleted", 1));
    }
    json_decref(old);
}

void api_users(api_ctx *ctx)
{
    const char *m = ctx->req->method;
    if (ctx->nseg == 1 && !strcmp(m, "GET")) {
        users_list(ctx);
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
        store_rows *r = NULL;
        int rc = load_user(ctx, ctx->seg[1], &r);
        if (rc < 0) {
            api_fail(ctx, rc);
            return;
        }
        vmseal_http_json(ctx->resp, 200, user_json(r, 0));
        store_rows_free(r);
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

static json_t *split_privileges(const char *list)
{
    json_t *privs = json_array();
    char *copy = strdup(list ? list : "");
    char *save = NULL;
    for (char *t = copy ? strtok_r(copy, " ", &save) : NULL; t; t = strtok_r(NULL, " ", &save))
        json_array_append_new(privs, json_string(t));
    free(copy);
    return privs;
}

static void roles_list(api_ctx *ctx)
{
    if (api_authorize(ctx, "role.list", NULL) < 0)
        return;
    store_rows *r = NULL;
    int rc = store_execv(ctx->m->db, &r, "SELECT name, privileges, builtin FROM roles ORDER BY name", STORE_END);
    if (rc < 0) {
        api_fail(ctx, rc);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < store_rows_count(r); i++)
        json_array_append_new(arr, json_pack("{s:s,s:o,s:b}", "name", store_rows_get(r, i, 0), "privileges",
                                             split_privileges(store_rows_get(r, i, 1)), "builtin",
                                             atoi(store_rows_get(r, i, 2))));
    store_rows_free(r);
    json_t *all = json_array();
    for (const mgr_privilege *q = mgr_privileges; q->name; q++)
        json_array_append_new(all, json_string(q->name));
    vmseal_http_json(ctx->resp, 200, json_pack("{s:o,s:o}", "roles", arr, "all_privileges", all));
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
    const char *name = json_string_value(json_object_get(b, "name"));
    int rc = store_execv(ctx->m->db, NULL, "INSERT INTO roles (name, privileges, builtin) VALUES ($1, $2, 0)",
                         name, privs, STORE_END);
    if (rc == -EEXIST)
        rc = vmseal_fail(EEXIST, "role %s exists already", name);
    if (rc < 0) {
        api_fail(ctx, rc);
    } else {
        json_t *nv = json_pack("{s:s,s:o}", "name", name, "privileges", split_privileges(privs));
        event_add(ctx->m, ctx->user, "role.create", name, NULL, nv);
        vmseal_http_json(ctx->resp, 201, nv);
    }
    json_decref(b);
}

/* The role's stored privileges and whether it is built in. */
static int load_role(api_ctx *ctx, const char *name, char **privs, int *builtin)
{
    store_rows *r = NULL;
    int rc = store_execv(ctx->m->db, &r, "SELECT privileges, builtin FROM roles WHERE name = $1", name,
                         STORE_END);
    if (rc < 0)
        return rc;
    if (store_rows_count(r) == 0) {
        store_rows_free(r);
        return vmseal_fail(ENOENT, "no role named %s", name);
    }
    *privs = strdup(store_rows_get(r, 0, 0));
    *builtin = atoi(store_rows_get(r, 0, 1));
    store_rows_free(r);
    return *privs ? 0 : vmseal_fail(ENOMEM, "out of memory");
}

static void role_update(api_ctx *ctx, const char *name)
{
    if (api_authorize(ctx, "role.update", NULL) < 0)
        return;
    json_t *b;
    if (api_body(ctx, &schema_role_patch, &b) < 0)
        return;
    char *oldp = NULL, privs[4096];
    int builtin = 0;
    privset set = 0;
    int rc = load_role(ctx, name, &oldp, &builtin);
    if (rc < 0) {
        api_fail(ctx, rc);
        json_decref(b);
        return;
    }
    if (builtin) {
        vmseal_http_error(ctx->resp, 403, "built-in role %s cannot be changed", name);
    } else if (privileges_from(ctx, json_object_get(b, "privileges"), privs, sizeof(privs), &set) >= 0 &&
               api_authorize_set(ctx, "role.update", "root", set | privset_parse(oldp)) >= 0) {
        rc = store_execv(ctx->m->db, NULL, "UPDATE roles SET privileges = $2 WHERE name = $1", name, privs,
                         STORE_END);
        if (rc < 0) {
            api_fail(ctx, rc);
        } else {
            json_t *ov = json_pack("{s:o}", "privileges", split_privileges(oldp));
            json_t *nv = json_pack("{s:s,s:o}", "name", name, "privileges", split_privileges(privs));
            event_add(ctx->m, ctx->user, "role.update", name, ov, nv);
            json_decref(ov);
            vmseal_http_json(ctx->resp, 200, nv);
        }
    }
    free(oldp);
    json_decref(b);
}

static void role_delete(api_ctx *ctx, const char *name)
{
    if (api_authorize(ctx, "role.delete", NULL) < 0)
        return;
    char *privs = NULL;
    int builtin = 0;
    int rc = load_role(ctx, name, &privs, &builtin);
    if (rc < 0) {
        api_fail(ctx, rc);
        return;
    }
    if (builtin) {
        free(privs);
        api_fail(ctx, vmseal_fail(EPERM, "built-in role %s cannot be removed", name));
        return;
    }
    if (api_authorize_set(ctx, "role.delete", "root", privset_parse(privs)) < 0) {
        free(privs);
        return;
    }
    store_rows *r = NULL;
    rc = store_execv(ctx->m->db, &r,
                     "SELECT (SELECT COUNT(*) FROM users WHERE role = $1), "
                     "(SELECT COUNT(*) FROM permissions WHERE role = $1)",
                     name, STORE_END);
    if (rc >= 0 && (atoi(store_rows_get(r, 0, 0)) || atoi(store_rows_get(r, 0, 1))))
        rc = vmseal_fail(EBUSY, "role %s is assigned to users or used in permissions", name);
    store_rows_free(r);
    if (rc >= 0)
        rc = store_execv(ctx->m->db, NULL, "DELETE FROM roles WHERE name = $1", name, STORE_END);
    if (rc < 0) {
        free(privs);
        api_fail(ctx, rc);
        return;
    }
    json_t *old = json_pack("{s:s,s:o}", "name", name, "privileges", split_privileges(privs));
    free(privs);
    event_add(ctx->m, ctx->user, "role.delete", name, old, NULL);
    json_decref(old);
    vmseal_http_json(ctx->resp, 200, json_pack("{s:s,s:b}", "name", name, "deleted", 1));
}

void api_roles(api_ctx *ctx)
{
    const char *m = ctx->req->method;
    if (ctx->nseg == 1 && !strcmp(m, "GET"))
        roles_list(ctx);
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
