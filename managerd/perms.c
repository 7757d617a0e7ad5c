/* vmseal-managerd — groups and permissions: reading and changing them.
 * What they give (effective privileges) is authz.c's; who may change them
 * is the API layer's (api_perms.c). Objects: root, host:NAME, folder:NAME,
 * vm:NAME; a user's role on the root is the user's own role (users.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmseal/common.h>

#include "managerd.h"

int groups_exists(manager *m, const char *name)
{
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r, "SELECT name FROM groups WHERE name = $1", name, STORE_END);
    int n = rc < 0 ? rc : (int)store_rows_count(r);
    store_rows_free(r);
    return n;
}

int groups_grants(manager *m, const char *group, json_t **out)
{
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r, "SELECT object, role FROM permissions WHERE principal = $1 AND is_group = 1",
                         group, STORE_END);
    if (rc < 0)
        return rc;
    json_t *arr = json_array();
    for (size_t i = 0; i < store_rows_count(r); i++)
        json_array_append_new(arr, json_pack("{s:s,s:s}", "object", store_rows_get(r, i, 0), "role",
                                             store_rows_get(r, i, 1)));
    store_rows_free(r);
    *out = arr;
    return 0;
}

int groups_list(manager *m, json_t **out)
{
    store_rows *r = NULL, *mem = NULL;
    int rc = store_execv(m->db, &r, "SELECT name FROM groups ORDER BY name", STORE_END);
    if (rc >= 0)
        rc = store_execv(m->db, &mem, "SELECT group_name, user_name FROM group_members ORDER BY user_name",
                         STORE_END);
    if (rc < 0) {
        store_rows_free(r);
        return rc;
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
    *out = json_pack("{s:o}", "groups", arr);
    return 0;
}

int groups_create(manager *m, const char *actor, const char *name, json_t **out)
{
    char now[32];
    snprintf(now, sizeof(now), "%lld", (long long)mgr_now());
    int rc = store_execv(m->db, NULL, "INSERT INTO groups (name, created) VALUES ($1, $2)", name, now,
                         STORE_END);
    if (rc == -EEXIST)
        rc = vmseal_fail(EEXIST, "group %s exists already", name);
    if (rc < 0)
        return rc;
    *out = json_pack("{s:s}", "name", name);
    event_add(m, actor, "group.create", name, NULL, *out);
    return 0;
}

int groups_delete(manager *m, const char *actor, const char *group)
{
    int rc = store_execv(m->db, NULL, "DELETE FROM permissions WHERE principal = $1 AND is_group = 1", group,
                         STORE_END);
    if (rc >= 0)
        rc = store_execv(m->db, NULL, "DELETE FROM group_members WHERE group_name = $1", group, STORE_END);
    if (rc >= 0)
        rc = store_execv(m->db, NULL, "DELETE FROM groups WHERE name = $1", group, STORE_END);
    if (rc < 0)
        return rc;
    json_t *ov = json_pack("{s:s}", "name", group);
    event_add(m, actor, "group.delete", group, ov, NULL);
    json_decref(ov);
    return 0;
}

int groups_member(manager *m, const char *actor, const char *group, const char *user, int add)
{
    int rc;
    if (add)
        rc = store_execv(m->db, NULL, "INSERT INTO group_members (group_name, user_name) VALUES ($1, $2)",
                         group, user, STORE_END);
    else
        rc = store_execv(m->db, NULL, "DELETE FROM group_members WHERE group_name = $1 AND user_name = $2",
                         group, user, STORE_END);
    if (rc == -EEXIST)
        rc = 1;   /* already a member: nothing changes */
    if (rc < 0)
        return rc;
    if (rc > 0) {
        json_t *v = json_pack("{s:s,s:s}", "group", group, "user", user);
        event_add(m, actor, add ? "group.member-add" : "group.member-rm", group, add ? NULL : v,
                  add ? v : NULL);
        json_decref(v);
    }
    return 0;
}

static json_t *permission_json(store_rows *r, size_t i)
{
    int is_group = atoi(store_rows_get(r, i, 1));
    return json_pack("{s:s,s:s,s:s,s:b}", "object", store_rows_get(r, i, 2), is_group ? "group" : "user",
                     store_rows_get(r, i, 0), "role", store_rows_get(r, i, 3), "propagate",
                     atoi(store_rows_get(r, i, 4)));
}

int perms_list(manager *m, const char *object, json_t **out)
{
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r,
                         "SELECT principal, is_group, object, role, propagate FROM permissions "
                         "WHERE $1 = '' OR object = $1 ORDER BY object, is_group, principal",
                         object ? object : "", STORE_END);
    if (rc < 0)
        return rc;
    json_t *arr = json_array();
    /* Each user's own role is their permission on the root. */
    if (!object || !strcmp(object, "root")) {
        store_rows *u = NULL;
        if (store_execv(m->db, &u, "SELECT name, role FROM users ORDER BY name", STORE_END) >= 0)
            for (size_t i = 0; i < store_rows_count(u); i++)
                json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:b,s:b}", "object", "root", "user",
                                                     store_rows_get(u, i, 0), "role", store_rows_get(u, i, 1),
                                                     "propagate", 1, "user_role", 1));
        store_rows_free(u);
    }
    for (size_t i = 0; i < store_rows_count(r); i++)
        json_array_append_new(arr, permission_json(r, i));
    store_rows_free(r);
    *out = json_pack("{s:o}", "permissions", arr);
    return 0;
}

int perms_get(manager *m, const char *principal, int is_group, const char *object, char *role,
              size_t rlen, int *propagate)
{
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r,
                         "SELECT role, propagate FROM permissions WHERE principal = $1 AND is_group = $2 AND object = $3",
                         principal, is_group ? "1" : "0", object, STORE_END);
    if (rc >= 0 && store_rows_count(r) == 0)
        rc = vmseal_fail(ENOENT, "no permission for %s on %s", principal, object);
    if (rc >= 0) {
        snprintf(role, rlen, "%s", store_rows_get(r, 0, 0));
        *propagate = atoi(store_rows_get(r, 0, 1));
    }
    store_rows_free(r);
    return rc < 0 ? rc : 0;
}

int perms_set(manager *m, const char *actor, const char *object, const char *principal, int is_group,
              const char *role, int propagate, json_t **out)
{
    const char *g = is_group ? "1" : "0";
    char oldrole[80];
    int oldprop = 0;
    int rc = perms_get(m, principal, is_group, object, oldrole, sizeof(oldrole), &oldprop);
    json_t *old = rc == 0 ? json_pack("{s:s,s:b}", "role", oldrole, "propagate", oldprop) : NULL;
    if (rc == -ENOENT)
        rc = 0;
    char now[32];
    snprintf(now, sizeof(now), "%lld", (long long)mgr_now());
    if (rc >= 0)
        rc = store_execv(m->db, NULL, "DELETE FROM permissions WHERE principal = $1 AND is_group = $2 AND object = $3",
                         principal, g, object, STORE_END);
    if (rc >= 0)
        rc = store_execv(m->db, NULL,
                         "INSERT INTO permissions (principal, is_group, object, role, propagate, created) "
                         "VALUES ($1, $2, $3, $4, $5, $6)",
                         principal, g, object, role, propagate ? "1" : "0", now, STORE_END);
    if (rc < 0) {
        json_decref(old);
        return rc;
    }
    *out = json_pack("{s:s,s:s,s:s,s:b}", "object", object, is_group ? "group" : "user", principal, "role",
                     role, "propagate", propagate);
    event_add(m, actor, "permission.add", object, old, *out);
    json_decref(old);
    return 0;
}

int perms_remove(manager *m, const char *actor, const char *object, const char *principal, int is_group)
{
    char role[80];
    int propagate = 0;
    int rc = perms_get(m, principal, is_group, object, role, sizeof(role), &propagate);
    if (rc < 0)
        return rc;
    rc = store_execv(m->db, NULL, "DELETE FROM permissions WHERE principal = $1 AND is_group = $2 AND object = $3",
                     principal, is_group ? "1" : "0", object, STORE_END);
    if (rc < 0)
        return rc;
    json_t *old = json_pack("{s:s,s:s,s:s,s:b}", "object", object, is_group ? "group" : "user", principal,
                            "role", role, "propagate", propagate);
    event_add(m, actor, "permission.remove", object, old, NULL);
    json_decref(old);
    return 0;
}
