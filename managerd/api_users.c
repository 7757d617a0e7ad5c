/* vmseal-managerd — /api/v1/users and /api/v1/roles. */
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

static void users_list(api_ctx *ctx)
{
    if (api_require(ctx, "System.Read") < 0)
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
    if (api_require(ctx, "Authorization.ModifyPermissions") < 0)
        return;
    json_t *b;
    if (api_body(ctx, &schema_user_add, &b) < 0)
        return;
    const char *name = json_string_value(json_object_get(b, "name"));
    const char *role = json_string_value(json_object_get(b, "role"));
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
    if (api_require(ctx, "Authorization.ModifyPermissions") < 0)
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
    store_rows_free(r);
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
    if (!self && api_require(ctx, "Authorization.ModifyPermissions") < 0)
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
    if (self && !auth_has(ctx, "Authorization.ModifyPermissions")) {
        /* Changing one's own password needs the current one. */
        if (!oldpw || auth_password_verify(oldpw, strlen(oldpw), store_rows_get(r, 0, 4)) < 0) {
            store_rows_free(r);
            json_decref(b);
            vmseal_http_error(ctx->resp, 403, "the current password (old_password) is wrong or missing");
            return;
        }
    }
    store_rows_free(r);
    const char *pw = json_string_value(json_object_get(b, "password"));
    char hash[256], now[32];
    rc = auth_password_hash(pw, strlen(pw), hash, sizeof(hash));
    snprintf(now, sizeof(now), "%lld", (long long)mgr_now());
    if (rc >= 0)
        rc = store_execv(ctx->m->db, NULL, "UPDATE users SET pwhash = $2, pw_changed = $3 WHERE name = $1",
                         name, hash, now, STORE_END);
    OPENSSL_cleanse(hash, sizeof(hash));
    json_decref(b);
    if (rc < 0) {
        api_fail(ctx, rc);
        return;
    }
    /* Other sessions of that user end. */
    (void)store_execv(ctx->m->db, NULL, "DELETE FROM sessions WHERE user_name = $1 AND $1 <> $2",
                      name, ctx->user, STORE_END);
    json_t *nv = json_pack("{s:s}", "password", "changed");
    event_add(ctx->m, ctx->user, "user.password", name, NULL, nv);
    json_decref(nv);
    vmseal_http_json(ctx->resp, 200, json_pack("{s:s,s:b}", "name", name, "password_changed", 1));
}

static void user_delete(api_ctx *ctx, const char *name)
{
    if (api_require(ctx, "Authorization.ModifyPermissions") < 0)
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
    store_rows_free(r);
    rc = store_execv(ctx->m->db, NULL, "DELETE FROM users WHERE name = $1", name, STORE_END);
    if (rc >= 0)
        rc = store_execv(ctx->m->db, NULL, "DELETE FROM sessions WHERE user_name = $1", name, STORE_END);
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
        if (strcmp(ctx->seg[1], ctx->user) != 0 && api_require(ctx, "System.Read") < 0)
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

static int known_privilege(const char *p)
{
    for (const char *const *q = mgr_all_privileges; *q; q++)
        if (!strcmp(*q, p))
            return 1;
    return 0;
}

void api_roles(api_ctx *ctx)
{
    const char *m = ctx->req->method;
    if (ctx->nseg == 1 && !strcmp(m, "GET")) {
        if (api_require(ctx, "System.Read") < 0)
            return;
        store_rows *r = NULL;
        int rc = store_execv(ctx->m->db, &r, "SELECT name, privileges, builtin FROM roles ORDER BY name",
                             STORE_END);
        if (rc < 0) {
            api_fail(ctx, rc);
            return;
        }
        json_t *arr = json_array();
        for (size_t i = 0; i < store_rows_count(r); i++) {
            json_t *privs = json_array();
            char *copy = strdup(store_rows_get(r, i, 1));
            char *save = NULL;
            for (char *t = copy ? strtok_r(copy, " ", &save) : NULL; t; t = strtok_r(NULL, " ", &save))
                json_array_append_new(privs, json_string(t));
            free(copy);
            json_array_append_new(arr, json_pack("{s:s,s:o,s:b}", "name", store_rows_get(r, i, 0),
                                                 "privileges", privs, "builtin",
                                                 atoi(store_rows_get(r, i, 2))));
        }
        store_rows_free(r);
        json_t *all = json_array();
        for (const char *const *q = mgr_all_privileges; *q; q++)
            json_array_append_new(all, json_string(*q));
        vmseal_http_json(ctx->resp, 200, json_pack("{s:o,s:o}", "roles", arr, "all_privileges", all));
        return;
    }
    if (ctx->nseg == 1 && !strcmp(m, "POST")) {
        if (api_require(ctx, "Authorization.ModifyRoles") < 0)
            return;
        json_t *b;
        if (api_body(ctx, &schema_role_add, &b) < 0)
            return;
        char privs[4096] = "";
        size_t i;
        json_t *p;
        json_array_foreach(json_object_get(b, "privileges"), i, p) {
            const char *s = json_string_value(p);
            if (!known_privilege(s)) {
                vmseal_http_error(ctx->resp, 400, "unknown privilege %.64s", s);
                json_decref(b);
                return;
            }
            if (privs[0])
                strcat(privs, " ");
            strcat(privs, s);
        }
        const char *name = json_string_value(json_object_get(b, "name"));
        int rc = store_execv(ctx->m->db, NULL,
                             "INSERT INTO roles (name, privileges, builtin) VALUES ($1, $2, 0)", name,
                             privs, STORE_END);
        if (rc == -EEXIST)
            rc = vmseal_fail(EEXIST, "role %s exists already", name);
        if (rc < 0) {
            api_fail(ctx, rc);
        } else {
            json_t *nv = json_pack("{s:s,s:O}", "name", name, "privileges", json_object_get(b, "privileges"));
            event_add(ctx->m, ctx->user, "role.create", name, NULL, nv);
            vmseal_http_json(ctx->resp, 201, nv);
        }
        json_decref(b);
        return;
    }
    if (ctx->nseg == 2 && !strcmp(m, "DELETE")) {
        if (api_require(ctx, "Authorization.ModifyRoles") < 0)
            return;
        const char *name = ctx->seg[1];
        store_rows *r = NULL;
        int rc = store_execv(ctx->m->db, &r,
                             "SELECT builtin, (SELECT COUNT(*) FROM users WHERE role = $1) FROM roles "
                             "WHERE name = $1",
                             name, STORE_END);
        if (rc < 0) {
            api_fail(ctx, rc);
            return;
        }
        if (store_rows_count(r) == 0)
            rc = vmseal_fail(ENOENT, "no role named %s", name);
        else if (atoi(store_rows_get(r, 0, 0)))
            rc = vmseal_fail(EPERM, "built-in role %s cannot be removed", name);
        else if (atoi(store_rows_get(r, 0, 1)))
            rc = vmseal_fail(EBUSY, "role %s is assigned to users", name);
        store_rows_free(r);
        if (rc >= 0)
            rc = store_execv(ctx->m->db, NULL, "DELETE FROM roles WHERE name = $1", name, STORE_END);
        if (rc < 0) {
            api_fail(ctx, rc);
            return;
        }
        json_t *old = json_pack("{s:s}", "name", name);
        event_add(ctx->m, ctx->user, "role.delete", name, old, NULL);
        json_decref(old);
        vmseal_http_json(ctx->resp, 200, json_pack("{s:s,s:b}", "name", name, "deleted", 1));
        return;
    }
    vmseal_http_error(ctx->resp, 404, "no such resource or method: %s %s", m, ctx->req->path);
}
