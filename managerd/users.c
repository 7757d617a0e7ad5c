/* vmseal-managerd — users and roles: reading, changing, removing them
 * (auth.c makes users and checks passwords; authz.c says what a role gives
 * on which object). Who may do these is the API layer's concern
 * (api_users.c); here are the rules of the objects themselves: the last
 * Administrator stays, built-in roles and roles in use stay. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmseal/common.h>

#include "managerd.h"

static json_t *user_json(store_rows *r, size_t i)
{
    return json_pack("{s:s,s:s,s:I,s:I}", "name", store_rows_get(r, i, 0), "role",
                     store_rows_get(r, i, 1), "created", (json_int_t)atoll(store_rows_get(r, i, 2)),
                     "password_changed", (json_int_t)atoll(store_rows_get(r, i, 3)));
}

static int load_user(manager *m, const char *name, store_rows **r)
{
    int rc = store_execv(m->db, r,
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

/* -EBUSY (and a "failed" event for op) when name, whose role is role, is
 * the last Administrator. */
static int last_admin(manager *m, const char *actor, const char *op, const char *name, const char *role)
{
    if (strcmp(role, "Administrator") != 0)
        return 0;
    long n = 0;
    int rc = authz_admin_count(m, &n);
    if (rc < 0)
        return rc;
    if (n > 1)
        return 0;
    json_t *nv = json_pack("{s:s}", "reason", "last Administrator");
    event_record(m, actor, op, name, NULL, nv, "failed");
    json_decref(nv);
    return vmseal_fail(EBUSY, "%s is the last Administrator: make another one first", name);
}

int users_list(manager *m, json_t **out)
{
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r, "SELECT name, role, created, pw_changed FROM users ORDER BY name",
                         STORE_END);
    if (rc < 0)
        return rc;
    json_t *arr = json_array();
    for (size_t i = 0; i < store_rows_count(r); i++)
        json_array_append_new(arr, user_json(r, i));
    store_rows_free(r);
    *out = json_pack("{s:o}", "users", arr);
    return 0;
}

int users_get(manager *m, const char *name, json_t **out)
{
    store_rows *r = NULL;
    int rc = load_user(m, name, &r);
    if (rc < 0)
        return rc;
    *out = user_json(r, 0);
    store_rows_free(r);
    return 0;
}

int users_exists(manager *m, const char *name)
{
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r, "SELECT name FROM users WHERE name = $1", name, STORE_END);
    int n = rc < 0 ? rc : (int)store_rows_count(r);
    store_rows_free(r);
    return n;
}

int users_check_password(manager *m, const char *name, const char *password)
{
    store_rows *r = NULL;
    int rc = load_user(m, name, &r);
    if (rc < 0)
        return rc;
    rc = password ? auth_password_verify(password, strlen(password), store_rows_get(r, 0, 4)) : -EACCES;
    store_rows_free(r);
    if (rc == -ENOBUFS)
        return rc;
    return rc < 0 ? vmseal_fail(EACCES, "the current password (old_password) is wrong or missing") : 0;
}

int users_set_role(manager *m, const char *actor, const char *name, const char *role)
{
    store_rows *r = NULL;
    int rc = load_user(m, name, &r);
    if (rc < 0)
        return rc;
    char oldrole[80];
    snprintf(oldrole, sizeof(oldrole), "%s", store_rows_get(r, 0, 1));
    store_rows_free(r);
    if (strcmp(role, "Administrator") != 0 && (rc = last_admin(m, actor, "user.role", name, oldrole)) < 0)
        return rc;
    rc = store_execv(m->db, NULL, "UPDATE users SET role = $2 WHERE name = $1", name, role, STORE_END);
    if (rc == -EINVAL || rc == -EEXIST)
        rc = vmseal_fail(EINVAL, "no role named %s", role);
    if (rc < 0)
        return rc;
    json_t *ov = json_pack("{s:s}", "role", oldrole), *nv = json_pack("{s:s}", "role", role);
    event_add(m, actor, "user.role", name, ov, nv);
    json_decref(ov);
    json_decref(nv);
    return 0;
}

int users_set_password(manager *m, const char *actor, const char *name, const char *password,
                       const char *keep_token)
{
    int rc = auth_set_password(m, name, password, keep_token);
    if (rc < 0)
        return rc;
    json_t *nv = json_pack("{s:s}", "password", "changed");
    event_add(m, actor, "user.password", name, NULL, nv);
    json_decref(nv);
    return 0;
}

int users_delete(manager *m, const char *actor, const char *name)
{
    store_rows *r = NULL;
    int rc = load_user(m, name, &r);
    if (rc < 0)
        return rc;
    json_t *old = user_json(r, 0);
    char role[80];
    snprintf(role, sizeof(role), "%s", store_rows_get(r, 0, 1));
    store_rows_free(r);
    rc = last_admin(m, actor, "user.delete", name, role);
    if (rc >= 0)
        rc = store_execv(m->db, NULL, "DELETE FROM users WHERE name = $1", name, STORE_END);
    if (rc >= 0)
        rc = store_execv(m->db, NULL, "DELETE FROM sessions WHERE user_name = $1", name, STORE_END);
    if (rc >= 0)
        rc = store_execv(m->db, NULL, "DELETE FROM permissions WHERE principal = $1 AND is_group = 0", name,
                         STORE_END);
    if (rc >= 0)
        rc = store_execv(m->db, NULL, "DELETE FROM group_members WHERE user_name = $1", name, STORE_END);
    if (rc >= 0)
        event_add(m, actor, "user.delete", name, old, NULL);
    json_decref(old);
    return rc < 0 ? rc : 0;
}

/* ------------------------------------------------------------------ roles */

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

int roles_list(manager *m, json_t **out)
{
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r, "SELECT name, privileges, builtin FROM roles ORDER BY name", STORE_END);
    if (rc < 0)
        return rc;
    json_t *arr = json_array();
    for (size_t i = 0; i < store_rows_count(r); i++)
        json_array_append_new(arr, json_pack("{s:s,s:o,s:b}", "name", store_rows_get(r, i, 0), "privileges",
                                             split_privileges(store_rows_get(r, i, 1)), "builtin",
                                             atoi(store_rows_get(r, i, 2))));
    store_rows_free(r);
    json_t *all = json_array();
    for (const mgr_privilege *q = mgr_privileges; q->name; q++)
        json_array_append_new(all, json_string(q->name));
    *out = json_pack("{s:o,s:o}", "roles", arr, "all_privileges", all);
    return 0;
}

int roles_get_custom(manager *m, const char *name, const char *what, char **privs)
{
    *privs = NULL;
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r, "SELECT privileges, builtin FROM roles WHERE name = $1", name,
                         STORE_END);
    if (rc < 0)
        return rc;
    if (store_rows_count(r) == 0) {
        store_rows_free(r);
        return vmseal_fail(ENOENT, "no role named %s", name);
    }
    int builtin = atoi(store_rows_get(r, 0, 1));
    *privs = builtin ? NULL : strdup(store_rows_get(r, 0, 0));
    store_rows_free(r);
    if (builtin)
        return vmseal_fail(EPERM, "built-in role %s cannot be %s", name, what);
    return *privs ? 0 : vmseal_fail(ENOMEM, "out of memory");
}

int roles_create(manager *m, const char *actor, const char *name, const char *privs, json_t **out)
{
    int rc = store_execv(m->db, NULL, "INSERT INTO roles (name, privileges, builtin) VALUES ($1, $2, 0)",
                         name, privs, STORE_END);
    if (rc == -EEXIST)
        rc = vmseal_fail(EEXIST, "role %s exists already", name);
    if (rc < 0)
        return rc;
    *out = json_pack("{s:s,s:o}", "name", name, "privileges", split_privileges(privs));
    event_add(m, actor, "role.create", name, NULL, *out);
    return 0;
}

int roles_update(manager *m, const char *actor, const char *name, const char *privs, json_t **out)
{
    char *oldp = NULL;
    int rc = roles_get_custom(m, name, "changed", &oldp);
    if (rc < 0)
        return rc;
    rc = store_execv(m->db, NULL, "UPDATE roles SET privileges = $2 WHERE name = $1", name, privs,
                     STORE_END);
    if (rc >= 0) {
        json_t *ov = json_pack("{s:o}", "privileges", split_privileges(oldp));
        *out = json_pack("{s:s,s:o}", "name", name, "privileges", split_privileges(privs));
        event_add(m, actor, "role.update", name, ov, *out);
        json_decref(ov);
    }
    free(oldp);
    return rc < 0 ? rc : 0;
}

int roles_delete(manager *m, const char *actor, const char *name)
{
    char *privs = NULL;
    int rc = roles_get_custom(m, name, "removed", &privs);
    if (rc < 0)
        return rc;
    store_rows *r = NULL;
    rc = store_execv(m->db, &r,
                     "SELECT (SELECT COUNT(*) FROM users WHERE role = $1), "
                     "(SELECT COUNT(*) FROM permissions WHERE role = $1)",
                     name, STORE_END);
    if (rc >= 0 && (atoi(store_rows_get(r, 0, 0)) || atoi(store_rows_get(r, 0, 1))))
        rc = vmseal_fail(EBUSY, "role %s is assigned to users or used in permissions", name);
    store_rows_free(r);
    if (rc >= 0)
        rc = store_execv(m->db, NULL, "DELETE FROM roles WHERE name = $1", name, STORE_END);
    if (rc < 0) {
        free(privs);
        return rc;
    }
    json_t *old = json_pack("{s:s,s:o}", "name", name, "privileges", split_privileges(privs));
    free(privs);
    event_add(m, actor, "role.delete", name, old, NULL);
    json_decref(old);
    return 0;
}
