/* vmseal-managerd — who may do what, on which object.
 *
 * Objects form a tree: root -> host:H -> vm:V, and root -> folder:F -> vm:V
 * for a VM placed in folder F. A VM's chain, most specific first, is
 * vm:V, folder:F (when it has one), host:H, root.
 *
 * Permissions grant a role to a user or a group on an object, optionally
 * propagating to the objects below. A user's own role (users.role) is that
 * user's propagating permission on the root. As in vSphere, the effective
 * privileges on an object come from the most specific level of its chain
 * at which any permission applies: a permission set on the object itself,
 * or a propagating one on an ancestor; at that level a permission for the
 * user wins over those of the user's groups, and several groups' roles are
 * united. So a NoAccess permission on one VM hides it from an
 * Administrator, and a role granted on one host reaches only its VMs.
 *
 * Nobody escalates: granting, assigning, or putting into a role a privilege
 * needs holding it on that object; changing, resetting or deleting a user
 * needs holding every privilege that user holds, on every object where the
 * user has any (authz_dominates). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmseal/common.h>

#include "managerd.h"

privset privset_all(void)
{
    privset s = 0;
    size_t i = 0;
    for (const mgr_privilege *p = mgr_privileges; p->name; p++, i++)
        s |= (privset)1 << i;
    return s;
}

int privset_index(const char *name)
{
    int i = 0;
    for (const mgr_privilege *p = mgr_privileges; p->name; p++, i++)
        if (!strcmp(p->name, name))
            return i;
    return -1;
}

privset privset_parse(const char *list)
{
    privset s = 0;
    if (!list)
        return 0;
    const char *p = list;
    while (*p) {
        while (*p == ' ')
            p++;
        const char *e = p;
        while (*e && *e != ' ')
            e++;
        if (e > p) {
            char name[96];
            size_t n = (size_t)(e - p);
            if (n < sizeof(name)) {
                memcpy(name, p, n);
                name[n] = '\0';
                int i = privset_index(name);
                if (i >= 0)
                    s |= (privset)1 << i;
            }
        }
        p = e;
    }
    return s;
}

char *privset_string(privset s)
{
    size_t len = 1;
    for (const mgr_privilege *p = mgr_privileges; p->name; p++)
        len += strlen(p->name) + 1;
    char *out = calloc(1, len), *o = out;
    if (!out)
        return NULL;
    size_t i = 0;
    for (const mgr_privilege *p = mgr_privileges; p->name; p++, i++) {
        if (!(s & ((privset)1 << i)))
            continue;
        if (o != out)
            *o++ = ' ';
        o = stpcpy(o, p->name);
    }
    return out;
}

const char *privset_first_missing(privset have, privset want)
{
    privset miss = want & ~have;
    size_t i = 0;
    for (const mgr_privilege *p = mgr_privileges; p->name; p++, i++)
        if (miss & ((privset)1 << i))
            return p->name;
    return NULL;
}

int authz_role_privileges(manager *m, const char *role, privset *out)
{
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r, "SELECT privileges FROM roles WHERE name = $1", role, STORE_END);
    if (rc < 0)
        return rc;
    if (store_rows_count(r) == 0) {
        store_rows_free(r);
        return vmseal_fail(ENOENT, "no role named %s", role);
    }
    *out = privset_parse(store_rows_get(r, 0, 0));
    store_rows_free(r);
    return 0;
}

int authz_parse_object(const char *object, char *kind, size_t kindlen, const char **name)
{
    if (!object)
        return vmseal_fail(EINVAL, "no object named");
    if (!strcmp(object, "root")) {
        snprintf(kind, kindlen, "root");
        *name = "";
        return 0;
    }
    const char *c = strchr(object, ':');
    if (!c)
        return vmseal_fail(EINVAL, "object %.80s: use root, host:NAME, folder:NAME or vm:NAME", object);
    size_t n = (size_t)(c - object);
    if (!((n == 4 && !strncmp(object, "host", 4)) || (n == 6 && !strncmp(object, "folder", 6)) ||
          (n == 2 && !strncmp(object, "vm", 2))) ||
        !api_valid_name(c + 1))
        return vmseal_fail(EINVAL, "object %.80s: use root, host:NAME, folder:NAME or vm:NAME", object);
    snprintf(kind, kindlen, "%.*s", (int)n, object);
    *name = c + 1;
    return 0;
}

/* The chain of an object, most specific first; *encrypted for VMs. */
static int object_chain(manager *m, const char *object, char chain[4][80], size_t *n, int *encrypted)
{
    char kind[8];
    const char *name;
    *n = 0;
    if (encrypted)
        *encrypted = 0;
    int rc = authz_parse_object(object, kind, sizeof(kind), &name);
    if (rc < 0)
        return rc;
    if (strcmp(kind, "root") != 0)
        snprintf(chain[(*n)++], 80, "%s", object);
    if (!strcmp(kind, "vm")) {
        store_rows *r = NULL;
        rc = store_execv(m->db, &r, "SELECT host, folder, kek_id FROM vms WHERE name = $1", name, STORE_END);
        if (rc < 0)
            return rc;
        if (store_rows_count(r) == 1) {
            const char *folder = store_rows_get(r, 0, 1);
            if (folder && *folder)
                snprintf(chain[(*n)++], 80, "folder:%s", folder);
            snprintf(chain[(*n)++], 80, "host:%s", store_rows_get(r, 0, 0));
            if (encrypted)
                *encrypted = store_rows_get(r, 0, 2) != NULL;
        }
        store_rows_free(r);
    }
    snprintf(chain[(*n)++], 80, "root");
    return 0;
}

/* The roles that apply to user at one level: 1 and *out set when any. */
static int level_privileges(manager *m, const char *user, const char *object, int own, privset *out)
{
    store_rows *r = NULL;
    int rc;
    *out = 0;
    if (!strcmp(object, "root"))
        rc = store_execv(m->db, &r, "SELECT role, 1 FROM users WHERE name = $1", user, STORE_END);
    else
        rc = store_execv(m->db, &r,
                         "SELECT role, propagate FROM permissions WHERE principal = $1 AND is_group = 0 "
                         "AND object = $2",
                         user, object, STORE_END);
    if (rc < 0)
        return rc;
    int found = 0;
    for (size_t i = 0; i < store_rows_count(r) && !found; i++) {
        if (!own && !atoi(store_rows_get(r, i, 1)))
            continue;
        privset p = 0;
        rc = authz_role_privileges(m, store_rows_get(r, i, 0), &p);
        if (rc < 0 && rc != -ENOENT)
            break;
        *out = p;
        found = 1;
    }
    store_rows_free(r);
    if (rc < 0 && rc != -ENOENT)
        return rc;
    if (found)
        return 1;
    r = NULL;
    rc = store_execv(m->db, &r,
                     "SELECT p.role, p.propagate FROM permissions p JOIN group_members g "
                     "ON g.group_name = p.principal WHERE p.is_group = 1 AND g.user_name = $1 AND p.object = $2",
                     user, object, STORE_END);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < store_rows_count(r); i++) {
        if (!own && !atoi(store_rows_get(r, i, 1)))
            continue;
        privset p = 0;
        if (authz_role_privileges(m, store_rows_get(r, i, 0), &p) == 0) {
            *out |= p;
            found = 1;
        }
    }
    store_rows_free(r);
    return found;
}

int authz_effective(manager *m, const char *user, const char *object, privset *out, int *encrypted)
{
    char chain[4][80];
    size_t n = 0;
    *out = 0;
    int rc = object_chain(m, object, chain, &n, encrypted);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        privset p = 0;
        rc = level_privileges(m, user, chain[i], i == 0, &p);
        if (rc < 0)
            return rc;
        if (rc > 0) {
            *out = p;
            return 0;
        }
    }
    return 0;
}

/* Every object where user (or a group of user's) has a permission, plus root. */
static int user_objects(manager *m, const char *user, json_t **out)
{
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r,
                         "SELECT DISTINCT object FROM permissions WHERE (is_group = 0 AND principal = $1) "
                         "OR (is_group = 1 AND principal IN (SELECT group_name FROM group_members "
                         "WHERE user_name = $1))",
                         user, STORE_END);
    if (rc < 0)
        return rc;
    json_t *a = json_array();
    json_array_append_new(a, json_string("root"));
    for (size_t i = 0; i < store_rows_count(r); i++)
        json_array_append_new(a, json_string(store_rows_get(r, i, 0)));
    store_rows_free(r);
    *out = a;
    return 0;
}

int authz_dominates(manager *m, const char *actor, const char *target, char *object, size_t olen,
                    const char **missing)
{
    *missing = NULL;
    json_t *objs = NULL;
    int rc = user_objects(m, target, &objs);
    if (rc < 0)
        return rc;
    size_t i;
    json_t *o;
    json_array_foreach(objs, i, o) {
        const char *obj = json_string_value(o);
        privset a = 0, t = 0;
        rc = authz_effective(m, actor, obj, &a, NULL);
        if (rc >= 0)
            rc = authz_effective(m, target, obj, &t, NULL);
        if (rc < 0)
            break;
        const char *miss = privset_first_missing(a, t);
        if (miss) {
            *missing = miss;
            snprintf(object, olen, "%s", obj);
            break;
        }
    }
    json_decref(objs);
    return rc < 0 ? rc : 0;
}

int authz_admin_count(manager *m, long *n)
{
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r, "SELECT COUNT(*) FROM users WHERE role = 'Administrator'", STORE_END);
    if (rc < 0)
        return rc;
    *n = atol(store_rows_get(r, 0, 0) ? store_rows_get(r, 0, 0) : "0");
    store_rows_free(r);
    return 0;
}
