/* vmseal-managerd — tasks: the manager's intents and their reconciliation
 * with what the hosts did (docs/architecture.md, "Intents and
 * reconciliation").
 *
 * An operation on a VM that a host carries out (encrypt, decrypt, shallow
 * and deep rekey) is first recorded as a task in state 'pending' together
 * with the KEK made for it, in one transaction, and only then is the host
 * asked. The host's answer moves the task to 'running'; its end is
 * recorded with the VM's new state and the event in one transaction.
 * Whatever step the manager stops at, the intent is in the database, and
 * the watcher thread finds out from the host's vm.conf (GET /v1/vms/{uuid})
 * where the operation got to and finishes the task (reconcile.c decides).
 *
 * The watcher also compares, every reconcile_interval and whenever a host
 * (re)registers, every host's VMs with the inventory: for a VM without an
 * unfinished task the host's vm.conf wins (it is what opens the data), an
 * unfinished operation found on a host becomes a task the manager follows.
 *
 * Domain code (managerd.h): 0 or -errno with vmseal_last_error().
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <vmseal/common.h>

#include "managerd.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void num(char *buf, size_t len, long long v)
{
    snprintf(buf, len, "%lld", v);
}

/* ------------------------------------------------------------ task rows */

typedef struct task_row {
    long long id;
    char vm_uuid[40], vm[80], action[24], host[80], host_task[64], state[16], user[80];
    char error[800];
    int progress, attempts;
    long long created, updated, next_try;
    json_t *params;
} task_row;

static const char task_cols[] =
    "SELECT t.id, t.vm_uuid, t.action, t.host, t.host_task, t.state, t.progress, t.error, t.user_name, "
    "t.params, t.created, t.updated, v.name, t.attempts, t.next_try FROM tasks t "
    "LEFT JOIN vms v ON v.uuid = t.vm_uuid";

static void row_of(store_rows *r, size_t i, task_row *t)
{
    memset(t, 0, sizeof(*t));
#define S(field, col) snprintf(t->field, sizeof(t->field), "%s", store_rows_get(r, i, col) ? store_rows_get(r, i, col) : "")
    t->id = atoll(store_rows_get(r, i, 0));
    S(vm_uuid, 1);
    S(action, 2);
    S(host, 3);
    S(host_task, 4);
    S(state, 5);
    t->progress = atoi(store_rows_get(r, i, 6));
    S(error, 7);
    S(user, 8);
    t->params = json_loads(store_rows_get(r, i, 9), 0, NULL);
    if (!json_is_object(t->params)) {
        json_decref(t->params);
        t->params = json_object();
    }
    t->created = atoll(store_rows_get(r, i, 10));
    t->updated = atoll(store_rows_get(r, i, 11));
    S(vm, 12);
    t->attempts = atoi(store_rows_get(r, i, 13));
    t->next_try = atoll(store_rows_get(r, i, 14));
#undef S
}

static void row_free(task_row *t)
{
    json_decref(t->params);
    t->params = NULL;
}

static int load_task(manager *m, long long id, task_row *t)
{
    char sql[600], ids[32];
    snprintf(sql, sizeof(sql), "%s WHERE t.id = $1", task_cols);
    num(ids, sizeof(ids), id);
    const char *p[] = {ids};
    store_rows *r = NULL;
    int rc = store_exec(m->db, sql, 1, p, &r);
    if (rc < 0)
        return rc;
    if (store_rows_count(r) == 0) {
        store_rows_free(r);
        return vmseal_fail(ENOENT, "no task %lld", id);
    }
    row_of(r, 0, t);
    store_rows_free(r);
    return 0;
}

static const char *param(const task_row *t, const char *k)
{
    const char *v = json_string_value(json_object_get(t->params, k));
    return v && *v ? v : NULL;
}

/* The KEK the task moves the VM to (not for a decrypt) and its provider. */
static const char *new_kek(const task_row *t)
{
    return strcmp(t->action, "decrypt") ? param(t, "kek_id") : NULL;
}

static const char *new_kms(const task_row *t)
{
    return strcmp(t->action, "decrypt") ? param(t, "kms") : NULL;
}

/* The KEK the VM had before (decrypt, rekey); a decrypt recorded before
 * old_kms existed named the provider "kms". */
static const char *old_kek(const task_row *t)
{
    return param(t, "old_kek_id");
}

static const char *old_kms(const task_row *t)
{
    const char *k = param(t, "old_kms");
    return k ? k : !strcmp(t->action, "decrypt") ? param(t, "kms") : NULL;
}

static json_t *task_json_of(const task_row *t)
{
    json_t *o = json_pack("{s:I,s:s,s:s?,s:s,s:s,s:s?,s:s,s:i,s:s?,s:s,s:O,s:I,s:I,s:i}", "id",
                          (json_int_t)t->id, "vm_uuid", t->vm_uuid, "vm", t->vm[0] ? t->vm : NULL,
                          "action", t->action, "host", t->host, "host_task",
                          t->host_task[0] ? t->host_task : NULL, "state", t->state, "progress",
                          t->progress, "error", t->error[0] ? t->error : NULL, "user", t->user,
                          "params", t->params, "created", (json_int_t)t->created, "updated",
                          (json_int_t)t->updated, "attempts", t->attempts);
    if (t->next_try && (!strcmp(t->state, "running") || !strcmp(t->state, "rolling-back") ||
                        !strcmp(t->state, "cancelling")))
        json_object_set_new(o, "next_try", json_integer((json_int_t)(t->next_try / 1000)));
    return o;
}

int tasks_get(manager *m, long long id, json_t **out)
{
    task_row t;
    int rc = load_task(m, id, &t);
    if (rc < 0)
        return rc;
    *out = task_json_of(&t);
    row_free(&t);
    return 0;
}

int tasks_list(manager *m, json_t **out)
{
    char sql[600];
    snprintf(sql, sizeof(sql), "%s ORDER BY t.id DESC LIMIT 200", task_cols);
    store_rows *r = NULL;
    int rc = store_exec(m->db, sql, 0, NULL, &r);
    if (rc < 0)
        return rc;
    json_t *arr = json_array();
    for (size_t i = 0; i < store_rows_count(r); i++) {
        task_row t;
        row_of(r, i, &t);
        json_array_append_new(arr, task_json_of(&t));
        row_free(&t);
    }
    store_rows_free(r);
    *out = json_pack("{s:o}", "tasks", arr);
    return 0;
}

long long tasks_open_for(manager *m, const char *vm_uuid)
{
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r, "SELECT id FROM tasks WHERE vm_uuid = $1 AND state IN " TASKS_OPEN_SQL
                         " ORDER BY id LIMIT 1", vm_uuid, STORE_END);
    long long id = rc >= 0 && store_rows_count(r) ? atoll(store_rows_get(r, 0, 0)) : 0;
    store_rows_free(r);
    return id;
}

/* -------------------------------------------- tasks being handed to hosts */

/* An API thread hands a fresh intent to its host: the watcher leaves the
 * task alone meanwhile (it would take "no trace on the host yet" for "the
 * host never got it"). After a crash nothing is in the list. */
static int launching_add(manager *m, long long id)
{
    int ok = 0;
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < sizeof(m->launching) / sizeof(m->launching[0]) && !ok; i++)
        if (!m->launching[i]) {
            m->launching[i] = id;
            ok = 1;
        }
    pthread_mutex_unlock(&m->lock);
    return ok ? 0 : vmseal_fail(ENOBUFS, "too many operations are being started at once: try again");
}

static void launching_del(manager *m, long long id)
{
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < sizeof(m->launching) / sizeof(m->launching[0]); i++)
        if (m->launching[i] == id)
            m->launching[i] = 0;
    pthread_mutex_unlock(&m->lock);
}

static int launching_has(manager *m, long long id)
{
    int has = 0;
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < sizeof(m->launching) / sizeof(m->launching[0]); i++)
        has |= m->launching[i] == id;
    pthread_mutex_unlock(&m->lock);
    return has;
}

/* ------------------------------------------------------- talking to hosts */

/* The host's view of the VM: 0 and *v, -ENOENT (the host does not have
 * it), or another -errno (the host could not be asked). */
static int host_view_get(manager *m, const char *host, const char *uuid, host_view *v, json_t **raw)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/vms/%s", uuid);
    long status = 0;
    json_t *resp = NULL;
    if (raw)
        *raw = NULL;
    int rc = hosts_call(m, host, "GET", path, NULL, &status, &resp);
    if (rc < 0)
        return rc;
    if (status == 404) {
        json_decref(resp);
        memset(v, 0, sizeof(*v));
        return -ENOENT;
    }
    if (status != 200) {
        rc = vmseal_fail(EREMOTEIO, "host %s: HTTP %ld: %s", host, status, vmseal_http_error_text(resp));
        json_decref(resp);
        return rc;
    }
    rc = host_view_parse(resp, v);
    if (raw && rc == 0)
        *raw = resp;
    else
        json_decref(resp);
    return rc;
}

/* Give the host the KEKs the task's operation needs: the VM's current one
 * (decrypt, rekey) and the new one (encrypt, rekey). */
static int push_keys(manager *m, const task_row *t)
{
    const char *ok = old_kek(t), *ok_kms = old_kms(t), *nk = new_kek(t), *nk_kms = new_kms(t);
    if (strcmp(t->action, "encrypt") && ok && ok_kms) {
        int rc = hosts_push_key(m, t->host, ok_kms, ok);
        if (rc < 0)
            return vmseal_fail(EREMOTEIO, "%s", vmseal_last_error());
    }
    if (nk && nk_kms) {
        int rc = hosts_push_key(m, t->host, nk_kms, nk);
        if (rc < 0)
            return vmseal_fail(EREMOTEIO, "%s", vmseal_last_error());
    }
    return 0;
}

/* POST the operation to the host. For an operation the host has recorded
 * as unfinished the same call resumes it. 0 and the host task's id, a
 * refusal (> 0: the HTTP status, message set), or -errno when the host
 * could not be asked. */
static int host_start(manager *m, const task_row *t, char *htask, size_t hlen)
{
    char path[160];
    json_t *body;
    if (!strcmp(t->action, "encrypt")) {
        snprintf(path, sizeof(path), "/v1/vms/%s/encrypt", t->vm_uuid);
        body = json_pack("{s:s?}", "kek_id", new_kek(t));
    } else if (!strcmp(t->action, "decrypt")) {
        snprintf(path, sizeof(path), "/v1/vms/%s/decrypt", t->vm_uuid);
        body = json_object();
    } else if (!strcmp(t->action, "import")) {
        /* the disk is recorded on the host from the first request on
         * (tasks_follow): going on is finishing its unfinished create */
        snprintf(path, sizeof(path), "/v1/vms/%s/resume", t->vm_uuid);
        body = json_object();
    } else {
        snprintf(path, sizeof(path), "/v1/vms/%s/recrypt", t->vm_uuid);
        body = json_pack("{s:s?,s:b}", "new_kek_id", new_kek(t), "deep", !strcmp(t->action, "recrypt-deep"));
    }
    long status = 0;
    json_t *resp = NULL;
    int rc = hosts_call(m, t->host, "POST", path, body, &status, &resp);
    json_decref(body);
    if (rc < 0)
        return vmseal_fail(EREMOTEIO, "%s", vmseal_last_error());
    if (status < 200 || status > 299) {
        vmseal_fail(status == 409 ? EBUSY : status == 400 ? EINVAL : status == 404 ? ENOENT : EREMOTEIO,
                    "host %s: %s", t->host, vmseal_http_error_text(resp));
        json_decref(resp);
        return (int)status;
    }
    json_t *tid = json_object_get(resp, "task_id");
    if (json_is_string(tid) && json_string_length(tid) < hlen)
        snprintf(htask, hlen, "%s", json_string_value(tid));
    else if (json_is_integer(tid))
        snprintf(htask, hlen, "%lld", (long long)json_integer_value(tid));
    else
        htask[0] = '\0';
    json_decref(resp);
    return 0;
}

/* The errno a host refusal (HTTP status) is passed on as: its 400, 404 and
 * 409 as they are, anything else is the host's failure. */
static int refusal_errno(int status)
{
    return status == 409 ? EBUSY : status == 400 ? EINVAL : status == 404 ? ENOENT : EREMOTEIO;
}

/* ------------------------------------------------------------ task ends */

struct end_tx {
    manager *m;
    task_row *t;
    const char *state;               /* success, error */
    const char *error;
    const host_view *v;              /* what the host showed (NULL: unknown) */
    int untouched;                   /* the host was not asked, or refused: nothing changed */
    const char *decision;            /* reconciliation that ended it (event), or NULL */
    int changed;                     /* out: the task was still open */
};

/* Does the host's view still name KEK k (a key safe or the unfinished
 * operation)? Unknown views count as yes: a KEK is kept when in doubt. */
static int view_names(const host_view *v, const char *k)
{
    if (!k)
        return 0;
    if (!v)
        return 1;
    return !strcmp(v->kek, k) || !strcmp(v->op_kek, k);
}

static int end_fn(store *db, void *arg)
{
    struct end_tx *e = arg;
    task_row *t = e->t;
    manager *m = e->m;
    int ok = !strcmp(e->state, "success");
    char id[32], now[32];
    num(id, sizeof(id), t->id);
    num(now, sizeof(now), (long long)mgr_now());
    int rc = store_execv(db, NULL,
                         "UPDATE tasks SET state = $2, error = $3, progress = CASE WHEN $2 = 'success' "
                         "THEN 100 ELSE progress END, updated = $4 WHERE id = $1 AND state IN " TASKS_OPEN_SQL,
                         id, e->state, e->error, now, STORE_END);
    if (rc < 0)
        return rc;
    e->changed = rc > 0;
    if (!e->changed)
        return 0;   /* ended by someone else meanwhile */
    const char *uuid = t->vm_uuid, *nk = new_kek(t), *nkms = new_kms(t);
    const char *ok_ = old_kek(t), *okms = old_kms(t);
    if (ok && !strcmp(t->action, "import")) {
        rc = 0;   /* the disks are refreshed from the host after the end (refresh_disks) */
    } else if (ok) {
        if (!strcmp(t->action, "decrypt"))
            rc = store_execv(db, NULL, "UPDATE vms SET policy = 'none', kek_id = NULL, provider = NULL, "
                             "gen = gen + 1 WHERE uuid = $1", uuid, STORE_END);
        else
            rc = store_execv(db, NULL, "UPDATE vms SET policy = 'encrypted', kek_id = $2, provider = $3, "
                             "gen = gen + 1 WHERE uuid = $1", uuid, nk, nkms, STORE_END);
        if (rc >= 0 && nk && nkms)
            rc = store_execv(db, NULL, "UPDATE keks SET state = 'active' WHERE provider = $1 AND kek_id = $2 "
                             "AND vm_uuid = $3", nkms, nk, uuid, STORE_END);
        if (rc >= 0 && ok_ && okms && strcmp(t->action, "encrypt"))
            rc = store_execv(db, NULL, "UPDATE keks SET state = 'retired' WHERE provider = $1 AND kek_id = $2 "
                             "AND vm_uuid = $3 AND state = 'active'", okms, ok_, uuid, STORE_END);
    } else if (nk && nkms && (e->untouched || !view_names(e->v, nk))) {
        /* the new KEK was not put to use; kept while the host names it */
        rc = store_execv(db, NULL, "UPDATE keks SET state = 'unused' WHERE provider = $1 AND kek_id = $2 "
                         "AND vm_uuid = $3 AND state = 'pending'", nkms, nk, uuid, STORE_END);
    }
    if (rc >= 0 && e->v && e->v->found) {
        /* what the host showed is what the reconciliation compares with
         * next: not reported again */
        char seen[400];
        host_view_summary(e->v, seen, sizeof(seen));
        rc = store_execv(db, NULL, "UPDATE vms SET host_view = $2 WHERE uuid = $1", uuid, seen, STORE_END);
    }
    if (rc < 0)
        return rc;
    /* the event, in the same transaction: old and new values of what
     * changed, or why it failed */
    const char *object = t->vm[0] ? t->vm : t->vm_uuid;
    const char *user = t->user[0] ? t->user : "-";
    json_t *p = t->params;
    if (e->decision) {
        json_t *nv = json_pack("{s:I,s:s,s:s,s:s,s:s?}", "task", (json_int_t)t->id, "action", t->action,
                               "decision", e->decision, "state", e->state, "error", e->error);
        if (e->v) {
            char seen[400];
            host_view_summary(e->v, seen, sizeof(seen));
            json_object_set_new(nv, "host_vm", json_string(seen));
        }
        rc = event_record(m, "-", "task.reconcile", object, NULL, nv, "ok");
        json_decref(nv);
        if (rc < 0)
            return rc;
    }
    if (ok && !strcmp(t->action, "import")) {
        json_t *nv = json_deep_copy(p);
        json_object_del(nv, "old_kek_id");
        json_object_del(nv, "old_kms");
        json_object_set_new(nv, "task", json_integer(t->id));
        rc = event_record(m, user, "vm.disk-import", object, NULL, nv, "ok");
        json_decref(nv);
    } else if (ok) {
        json_t *ov, *nv;
        const char *ev = "vm.policy";
        if (!strcmp(t->action, "encrypt") || !strcmp(t->action, "decrypt")) {
            ov = json_pack("{s:O?,s:O?}", "policy", json_object_get(p, "old_policy"), "kek_id",
                           json_object_get(p, "old_kek_id"));
            nv = json_pack("{s:O?,s:O?,s:O?}", "policy", json_object_get(p, "policy"), "kek_id",
                           json_object_get(p, "kek_id"), "kms",
                           strcmp(t->action, "decrypt") ? json_object_get(p, "kms") : NULL);
        } else {
            ev = "vm.rekey";
            ov = json_pack("{s:O?,s:O?}", "kek_id", json_object_get(p, "old_kek_id"), "kms",
                           json_object_get(p, "old_kms"));
            nv = json_pack("{s:O?,s:O?,s:O?}", "kek_id", json_object_get(p, "kek_id"), "kms",
                           json_object_get(p, "kms"), "deep", json_object_get(p, "deep"));
        }
        rc = event_record(m, user, ev, object, ov, nv, "ok");
        json_decref(ov);
        json_decref(nv);
    } else {
        /* error: ended without doing it; rolled-back: failed part-way and
         * undone; cancelled: stopped and undone as the user asked */
        int cancelled = !strcmp(e->state, "cancelled");
        json_t *nv = json_pack("{s:I,s:s,s:s?,s:s}", "task", (json_int_t)t->id, "action", t->action, "error",
                               e->error, "state", e->state);
        rc = event_record(m, user, cancelled ? "task.cancelled" : "task.failed", object, NULL, nv,
                          cancelled ? "ok" : "failed");
        json_decref(nv);
    }
    return rc;
}

/* End the task (success: the VM's new state, KEK states; error: the new
 * KEK is unused unless the host names it) with its event, atomically. */
static int task_end_x(manager *m, task_row *t, const char *state, const char *error, const host_view *v,
                      int untouched, const char *decision)
{
    mgr_crash_point(!strcmp(state, "success") ? "host-finished" : "host-failed", t->action);
    struct end_tx e = {.m = m, .t = t, .state = state, .error = error, .v = v, .untouched = untouched,
                       .decision = decision};
    int rc = store_tx(m->db, end_fn, &e);
    if (rc < 0) {
        mgr_log("task %lld: cannot record its end (%s): %s", t->id, state, vmseal_last_error());
        return rc;
    }
    if (!e.changed)
        return 0;
    mgr_log("task %lld: %s of VM %s: %s%s%s", t->id, t->action, t->vm[0] ? t->vm : t->vm_uuid, state,
            error ? ": " : "", error ? error : "");
    mgr_crash_point("task-finished", t->action);
    /* undone: the new KEK is not needed on the host any more */
    const char *nk = new_kek(t);
    if ((!strcmp(state, "cancelled") || !strcmp(state, "rolled-back")) && nk && !view_names(v, nk)) {
        char kpath[300];
        long kst = 0;
        json_t *kr = NULL;
        snprintf(kpath, sizeof(kpath), "/v1/keys/%s", nk);
        (void)hosts_call(m, t->host, "DELETE", kpath, NULL, &kst, &kr);
        json_decref(kr);
    }
    /* The old KEK is retired: the host forgets it now (it would also not
     * get it back after a restart). */
    const char *ok = old_kek(t);
    if (!strcmp(state, "success") && ok && strcmp(t->action, "encrypt")) {
        char kpath[300];
        long kst = 0;
        json_t *kr = NULL;
        snprintf(kpath, sizeof(kpath), "/v1/keys/%s", ok);
        if (hosts_call(m, t->host, "DELETE", kpath, NULL, &kst, &kr) < 0 || (kst != 204 && kst != 404))
            mgr_log("task %lld: host %s did not drop retired KEK %s (HTTP %ld)", t->id, t->host, ok, kst);
        json_decref(kr);
    }
    return 0;
}

static int task_end(manager *m, task_row *t, const char *state, const char *error, const host_view *v,
                    const char *decision)
{
    return task_end_x(m, t, state, error, v, 0, decision);
}

/* ------------------------------------------------------------ intents */

struct intent_tx {
    const task_intent *in;
    long long id;
};

static int intent_fn(store *db, void *arg)
{
    struct intent_tx *x = arg;
    const task_intent *in = x->in;
    char now[32];
    num(now, sizeof(now), (long long)mgr_now());
    if (in->new_kek) {
        int rc = store_execv(db, NULL, "INSERT INTO keks (kek_id, provider, vm_uuid, state, created) "
                             "VALUES ($1, $2, $3, 'pending', $4)", in->new_kek, in->new_kms, in->vm_uuid,
                             now, STORE_END);
        if (rc == -EEXIST)
            /* the id is recorded for another VM: that record is left
             * alone; the new key is an orphan (keys ls --orphans) */
            return vmseal_fail(EEXIST, "key provider %s gave KEK id %s, which is recorded for another "
                               "VM: not used", in->new_kms, in->new_kek);
        if (rc < 0)
            return rc;
    }
    char *ps = json_dumps(in->params, JSON_COMPACT | JSON_SORT_KEYS);
    if (!ps)
        return vmseal_fail(ENOMEM, "out of memory");
    store_rows *r = NULL;
    /* only when the VM has no unfinished task */
    int rc = store_execv(db, &r,
                         "INSERT INTO tasks (vm_uuid, action, host, state, progress, user_name, params, "
                         "created, updated) SELECT $1, $2, $3, 'pending', 0, $4, $5, $6, $6 WHERE NOT EXISTS "
                         "(SELECT 1 FROM tasks WHERE vm_uuid = $1 AND state IN " TASKS_OPEN_SQL ") RETURNING id",
                         in->vm_uuid, in->action, in->host, in->user, ps, now, STORE_END);
    free(ps);
    if (rc < 0)
        return rc;
    if (store_rows_count(r) == 0) {
        store_rows_free(r);
        return vmseal_fail(EBUSY, "VM %s is busy with a task", in->vm_name);
    }
    x->id = atoll(store_rows_get(r, 0, 0));
    store_rows_free(r);
    return store_execv(db, NULL, "UPDATE vms SET gen = gen + 1 WHERE uuid = $1", in->vm_uuid, STORE_END);
}

/* Hand a pending task to its host (the caller marked it launching). */
static int launch(manager *m, task_row *t, json_t **out)
{
    int rc = push_keys(m, t);
    if (rc < 0) {
        /* the host was not asked: nothing changed, the new KEK is unused */
        char msg[800];
        snprintf(msg, sizeof(msg), "%s", vmseal_last_error());
        (void)task_end_x(m, t, "error", msg, NULL, 1, NULL);
        return vmseal_fail(EREMOTEIO, "%s", msg);
    }
    char htask[64];
    rc = host_start(m, t, htask, sizeof(htask));
    if (rc < 0) {
        /* The request may or may not have reached the host: the watcher
         * finds out from the host's vm.conf. */
        char msg[800], id[32], now[32];
        snprintf(msg, sizeof(msg), "%s", vmseal_last_error());
        num(id, sizeof(id), t->id);
        num(now, sizeof(now), (long long)mgr_now());
        (void)store_execv(m->db, NULL, "UPDATE tasks SET error = $2, updated = $3 WHERE id = $1 AND "
                          "state = 'pending'", id, msg, now, STORE_END);
        return vmseal_fail(EREMOTEIO, "%s (task %lld follows up on what the host did)", msg, t->id);
    }
    if (rc > 0) {
        char msg[800];
        snprintf(msg, sizeof(msg), "%s", vmseal_last_error());
        (void)task_end_x(m, t, "error", msg, NULL, 1, NULL);   /* a refusal changed nothing */
        return vmseal_fail(refusal_errno(rc), "%s", msg);
    }
    mgr_crash_point("host-accepted", t->action);
    char id[32], now[32];
    num(id, sizeof(id), t->id);
    num(now, sizeof(now), (long long)mgr_now());
    rc = store_execv(m->db, NULL, "UPDATE tasks SET state = 'running', host_task = $2, error = NULL, "
                     "updated = $3 WHERE id = $1 AND state = 'pending'", id, htask, now, STORE_END);
    if (rc < 0)
        return vmseal_fail(EIO, "the host started the task but the manager could not record it (the "
                           "watcher will): %s", vmseal_last_error());
    mgr_crash_point("task-running", t->action);
    json_t *ev = json_deep_copy(t->params);
    json_object_set_new(ev, "task", json_integer(t->id));
    json_object_set_new(ev, "action", json_string(t->action));
    event_add(m, t->user, "task.start", t->vm[0] ? t->vm : t->vm_uuid, NULL, ev);
    json_decref(ev);
    json_t *tj = NULL;
    if (tasks_get(m, t->id, &tj) < 0)
        tj = json_pack("{s:I}", "id", (json_int_t)t->id);
    *out = json_pack("{s:o}", "task", tj);
    return 0;
}

int tasks_run(manager *m, const task_intent *in, json_t **out)
{
    *out = NULL;
    struct intent_tx x = {.in = in};
    int rc = store_tx(m->db, intent_fn, &x);
    if (rc < 0)
        return rc == -EEXIST || rc == -EBUSY ? rc : vmseal_fail(EIO, "%s", vmseal_last_error());
    mgr_crash_point("intent-recorded", in->action);
    task_row t;
    rc = load_task(m, x.id, &t);
    if (rc < 0)
        return vmseal_fail(EIO, "%s", vmseal_last_error());
    rc = launching_add(m, t.id);
    if (rc == 0) {
        rc = launch(m, &t, out);
        launching_del(m, t.id);
    } else {
        char msg[800];
        snprintf(msg, sizeof(msg), "%s", vmseal_last_error());
        (void)task_end_x(m, &t, "error", msg, NULL, 1, NULL);
        vmseal_fail(-rc, "%s", msg);
    }
    row_free(&t);
    return rc;
}

static void wake(manager *m);

struct follow_tx {
    const task_intent *in;
    const char *host_task;
    long long id;
};

static int follow_fn(store *db, void *arg)
{
    struct follow_tx *x = arg;
    const task_intent *in = x->in;
    char now[32];
    num(now, sizeof(now), (long long)mgr_now());
    char *ps = json_dumps(in->params, JSON_COMPACT | JSON_SORT_KEYS);
    if (!ps)
        return vmseal_fail(ENOMEM, "out of memory");
    store_rows *r = NULL;
    int rc = store_execv(db, &r,
                         "INSERT INTO tasks (vm_uuid, action, host, host_task, state, progress, user_name, "
                         "params, created, updated) SELECT $1, $2, $3, $4, 'running', 0, $5, $6, $7, $7 WHERE "
                         "NOT EXISTS (SELECT 1 FROM tasks WHERE vm_uuid = $1 AND state IN " TASKS_OPEN_SQL
                         ") RETURNING id",
                         in->vm_uuid, in->action, in->host, x->host_task, in->user, ps, now, STORE_END);
    free(ps);
    if (rc < 0)
        return rc;
    if (store_rows_count(r) == 0) {
        store_rows_free(r);
        return vmseal_fail(EBUSY, "VM %s is busy with a task", in->vm_name);
    }
    x->id = atoll(store_rows_get(r, 0, 0));
    store_rows_free(r);
    return 0;
}

int tasks_follow(manager *m, const task_intent *in, const char *host_task, json_t **out)
{
    *out = NULL;
    struct follow_tx x = {.in = in, .host_task = host_task};
    int rc = store_tx(m->db, follow_fn, &x);
    if (rc < 0)
        return rc;
    json_t *ev = json_deep_copy(in->params);
    json_object_del(ev, "old_kek_id");
    json_object_del(ev, "old_kms");
    json_object_set_new(ev, "task", json_integer(x.id));
    json_object_set_new(ev, "action", json_string(in->action));
    event_add(m, in->user, "task.start", in->vm_name, NULL, ev);
    json_decref(ev);
    mgr_log("task %lld: %s of VM %s followed (host task %s)", x.id, in->action, in->vm_name, host_task);
    wake(m);
    return tasks_get(m, x.id, out);
}

/* ------------------------------------------------------------ the watcher */

static int64_t backoff_ms(manager *m, int attempts)
{
    int64_t d = m->cfg->task_retry_delay_ms;
    for (int i = 1; i < attempts && d < 60000; i++)
        d *= 2;
    return d > 60000 ? 60000 : d;
}

static void record_error(manager *m, const task_row *t, const char *why)
{
    if (!why || !*why || !strcmp(t->error, why))
        return;
    char id[32];
    num(id, sizeof(id), t->id);
    (void)store_execv(m->db, NULL, "UPDATE tasks SET error = $2 WHERE id = $1", id, why, STORE_END);
}

/* Ask the host again: it resumes the unfinished operation (or starts it
 * again when it kept nothing). Bounded and backing off. */
static void retry(manager *m, task_row *t, const char *why)
{
    char id[32], now[32], att[16], next[32], htask[64] = "";
    int attempts = t->attempts + 1;
    num(id, sizeof(id), t->id);
    num(now, sizeof(now), (long long)mgr_now());
    num(att, sizeof(att), attempts);
    num(next, sizeof(next), (long long)(now_ms() + backoff_ms(m, attempts)));
    char msg[1000];
    int rc = push_keys(m, t);
    if (rc == 0)
        rc = host_start(m, t, htask, sizeof(htask));
    if (rc != 0)
        snprintf(msg, sizeof(msg), "attempt %d: %s", attempts, vmseal_last_error());
    else
        snprintf(msg, sizeof(msg), "attempt %d after: %s", attempts, why);
    (void)store_execv(m->db, NULL, "UPDATE tasks SET attempts = $2, next_try = $3, error = $4, updated = $5, "
                      "host_task = CASE WHEN $6 = '' THEN host_task ELSE $6 END WHERE id = $1 AND state = 'running'",
                      id, att, next, msg, now, htask, STORE_END);
    json_t *nv = json_pack("{s:I,s:s,s:i,s:s}", "task", (json_int_t)t->id, "action", t->action, "attempt",
                           attempts, "why", why);
    event_record(m, "-", "task.retry", t->vm[0] ? t->vm : t->vm_uuid, NULL, nv, rc == 0 ? "ok" : "failed");
    json_decref(nv);
    mgr_log("task %lld: %s of VM %s tried again (attempt %d/%d): %s", t->id, t->action, t->vm_uuid,
            attempts, m->cfg->task_retries, rc == 0 ? "the host took it" : msg);
}

static void adopt(manager *m, task_row *t, const host_view *v, const char *why)
{
    char id[32], now[32];
    num(id, sizeof(id), t->id);
    num(now, sizeof(now), (long long)mgr_now());
    int rc = store_execv(m->db, NULL, "UPDATE tasks SET state = 'running', error = NULL, updated = $3, "
                         "host_task = CASE WHEN $2 = '' THEN host_task ELSE $2 END WHERE id = $1 AND "
                         "state = 'pending'", id, v->task_id, now, STORE_END);
    if (rc <= 0)
        return;
    char seen[400];
    host_view_summary(v, seen, sizeof(seen));
    json_t *nv = json_pack("{s:I,s:s,s:s,s:s,s:s}", "task", (json_int_t)t->id, "action", t->action, "decision",
                           "adopted", "why", why, "host_vm", seen);
    event_record(m, "-", "task.reconcile", t->vm[0] ? t->vm : t->vm_uuid, NULL, nv, "ok");
    json_decref(nv);
    mgr_log("task %lld: %s", t->id, why);
    snprintf(t->state, sizeof(t->state), "running");
}

/* Move the task from state `from` to `to` (tries counted anew), with the
 * reason and an event. */
static void set_state(manager *m, task_row *t, const char *from, const char *to, const char *why,
                      const char *event, const char *result)
{
    char id[32], now[32];
    num(id, sizeof(id), t->id);
    num(now, sizeof(now), (long long)mgr_now());
    int rc = store_execv(m->db, NULL, "UPDATE tasks SET state = $3, error = $4, attempts = 0, next_try = 0, "
                         "updated = $5 WHERE id = $1 AND state = $2", id, from, to, why, now, STORE_END);
    if (rc <= 0)
        return;
    json_t *nv = json_pack("{s:I,s:s,s:s,s:s?}", "task", (json_int_t)t->id, "action", t->action, "state", to,
                           "why", why);
    event_record(m, "-", event, t->vm[0] ? t->vm : t->vm_uuid, NULL, nv, result);
    json_decref(nv);
    mgr_log("task %lld: %s of VM %s now %s%s%s", t->id, t->action, t->vm_uuid, to, why ? ": " : "",
            why ? why : "");
    snprintf(t->state, sizeof(t->state), "%s", to);
}

/* Going back while the host still works forward: stop its task (it stops
 * at its next checkpoint; the next round rolls back). */
static void host_cancel(manager *m, const task_row *t)
{
    char path[160];
    snprintf(path, sizeof(path), "/v1/vms/%s/cancel", t->vm_uuid);
    long status = 0;
    json_t *resp = NULL;
    json_t *body = json_object();
    if (hosts_call(m, t->host, "POST", path, body, &status, &resp) == 0 && status >= 200 && status < 300)
        mgr_log("task %lld: asked host %s to stop its task on VM %s", t->id, t->host, t->vm_uuid);
    json_decref(body);
    json_decref(resp);
}

/* Ask the host to roll back the unfinished operation (vm.conf): bounded
 * and backing off as the tries going forward. */
static void host_rollback(manager *m, task_row *t, const char *why)
{
    char id[32], now[32], att[16], next[32], htask[64] = "", path[160];
    int attempts = t->attempts + 1;
    num(id, sizeof(id), t->id);
    num(now, sizeof(now), (long long)mgr_now());
    num(att, sizeof(att), attempts);
    num(next, sizeof(next), (long long)(now_ms() + backoff_ms(m, attempts)));
    /* the host may need the KEKs to put the console log back */
    (void)push_keys(m, t);
    snprintf(path, sizeof(path), "/v1/vms/%s/rollback", t->vm_uuid);
    long status = 0;
    json_t *resp = NULL, *body = json_object();
    int rc = hosts_call(m, t->host, "POST", path, body, &status, &resp);
    json_decref(body);
    char msg[1000];
    if (rc < 0)
        snprintf(msg, sizeof(msg), "rollback attempt %d: %s", attempts, vmseal_last_error());
    else if (status < 200 || status > 299)
        snprintf(msg, sizeof(msg), "rollback attempt %d: host %s: %s", attempts, t->host,
                 vmseal_http_error_text(resp));
    else
        snprintf(msg, sizeof(msg), "%s", t->error[0] ? t->error : why);
    const char *tid = json_string_value(json_object_get(resp, "task_id"));
    if (rc == 0 && status >= 200 && status < 300 && tid && strlen(tid) < sizeof(htask))
        snprintf(htask, sizeof(htask), "%s", tid);
    json_decref(resp);
    (void)store_execv(m->db, NULL, "UPDATE tasks SET attempts = $2, next_try = $3, error = $4, updated = $5, "
                      "host_task = CASE WHEN $6 = '' THEN host_task ELSE $6 END WHERE id = $1 AND state IN "
                      "('cancelling', 'rolling-back')", id, att, next, msg, now, htask, STORE_END);
    mgr_log("task %lld: asked host %s to roll back %s of VM %s (attempt %d/%d)%s%s", t->id, t->host,
            t->action, t->vm_uuid, attempts, m->cfg->task_retries, htask[0] ? "" : ": ", htask[0] ? "" : msg);
}

static void sync_vm_view(manager *m, const char *uuid, const host_view *v);

/* After an import: the inventory's disks become what the host has
 * ({"size_mb"} each, as a registered VM's). */
static void refresh_disks(manager *m, const task_row *t)
{
    host_view v;
    json_t *raw = NULL;
    store_rows *r = NULL;
    if (host_view_get(m, t->host, t->vm_uuid, &v, &raw) < 0)
        return;
    json_t *spec = NULL;
    if (store_execv(m->db, &r, "SELECT spec FROM vms WHERE uuid = $1", t->vm_uuid, STORE_END) >= 0 &&
        store_rows_count(r) == 1)
        spec = json_loads(store_rows_get(r, 0, 0), 0, NULL);
    store_rows_free(r);
    if (!json_is_object(spec)) {
        json_decref(spec);
        spec = json_object();
    }
    json_t *disks = json_array(), *d;
    size_t i;
    json_array_foreach(json_object_get(raw, "disks"), i, d)
        json_array_append_new(disks, json_pack("{s:O?}", "size_mb", json_object_get(d, "size_mb")));
    json_object_set_new(spec, "disks", disks);
    char *ss = json_dumps(spec, JSON_COMPACT | JSON_SORT_KEYS);
    if (ss && store_execv(m->db, NULL, "UPDATE vms SET spec = $2 WHERE uuid = $1", t->vm_uuid, ss,
                          STORE_END) >= 0)
        mgr_log("task %lld: VM %s has %zu disks now", t->id, t->vm[0] ? t->vm : t->vm_uuid,
                json_array_size(disks));
    free(ss);
    json_decref(spec);
    json_decref(raw);
}

/* One round for one unfinished task. */
static void step_task(manager *m, task_row *t)
{
    if (launching_has(m, t->id))
        return;
    host_view v;
    int rc = host_view_get(m, t->host, t->vm_uuid, &v, NULL);
    if (rc < 0 && rc != -ENOENT)
        return;   /* the host cannot be asked now: next round */
    task_facts f = {.action = t->action, .state = t->state, .old_kek = old_kek(t), .new_kek = new_kek(t),
                    .host_task = t->host_task, .attempts = t->attempts, .next_try_ms = t->next_try,
                    .updated_ms = t->updated * 1000, .now_ms = now_ms()};
    task_rules r = {.retries = m->cfg->task_retries, .pending_grace_ms = 3000};
    task_step s;
    task_decide(&f, &v, &r, &s);
    char id[32], now[32], prog[16];
    switch (s.kind) {
    case STEP_WAIT:
        if (!strcmp(t->state, "running") || !strcmp(t->state, "rolling-back") || !strcmp(t->state, "cancelling"))
            record_error(m, t, s.why);
        return;
    case STEP_PROGRESS:
        num(id, sizeof(id), t->id);
        num(now, sizeof(now), (long long)mgr_now());
        num(prog, sizeof(prog), v.task_progress);
        (void)store_execv(m->db, NULL, "UPDATE tasks SET progress = $2, updated = $3, host_task = $4 WHERE "
                          "id = $1 AND state IN ('running', 'cancelling', 'rolling-back') AND (progress <> $2 OR "
                          "host_task IS NULL OR host_task <> $4)", id, prog, now, v.task_id, STORE_END);
        return;
    case STEP_ADOPT:
        adopt(m, t, &v, s.why);
        return;
    case STEP_SUCCESS:
        if (task_end(m, t, "success", NULL, &v, s.why[0] ? s.why : NULL) == 0 && !strcmp(t->action, "import"))
            refresh_disks(m, t);
        return;
    case STEP_RETRY:
        retry(m, t, s.why);
        return;
    case STEP_ABANDON:
        (void)task_end(m, t, "error", s.why, &v, "abandoned");
        return;
    case STEP_FAIL:
        (void)task_end(m, t, "error", s.why, &v, NULL);
        return;
    case STEP_GONE:
        (void)task_end(m, t, "error", s.why, &v, "gone");
        return;
    case STEP_DIVERGED:
        if (task_end(m, t, "error", s.why, &v, "diverged") == 0)
            sync_vm_view(m, t->vm_uuid, &v);   /* the host's vm.conf wins */
        return;
    case STEP_ROLLBACK:
        set_state(m, t, "running", "rolling-back", s.why, "task.rollback", "failed");
        return;
    case STEP_HOST_CANCEL:
        host_cancel(m, t);
        return;
    case STEP_HOST_ROLLBACK:
        host_rollback(m, t, s.why);
        return;
    case STEP_ROLLED_BACK:
        (void)task_end(m, t, !strcmp(t->state, "cancelling") ? "cancelled" : "rolled-back",
                       !strcmp(t->state, "cancelling") ? NULL
                       : s.why[0] ? s.why : t->error[0] ? t->error : NULL, &v, NULL);
        return;
    case STEP_BLOCK:
        set_state(m, t, t->state, "blocked", s.why, "task.blocked", "failed");
        return;
    }
}

/* ------------------------------------------------ VMs without a task */

typedef struct vm_rec {
    char uuid[40], name[80], host[80], policy[16], kek[VIEW_KEK_MAX], prov[80], gen[24];
    char host_view[400];
} vm_rec;

static int load_vm_rec(manager *m, const char *uuid, vm_rec *r)
{
    store_rows *q = NULL;
    int rc = store_execv(m->db, &q, "SELECT uuid, name, host, policy, kek_id, provider, gen, host_view "
                         "FROM vms WHERE uuid = $1", uuid, STORE_END);
    if (rc < 0)
        return rc;
    if (store_rows_count(q) == 0) {
        store_rows_free(q);
        return -ENOENT;
    }
    memset(r, 0, sizeof(*r));
#define S(field, col) snprintf(r->field, sizeof(r->field), "%s", store_rows_get(q, 0, col) ? store_rows_get(q, 0, col) : "")
    S(uuid, 0);
    S(name, 1);
    S(host, 2);
    S(policy, 3);
    S(kek, 4);
    S(prov, 5);
    S(gen, 6);
    S(host_view, 7);
#undef S
    store_rows_free(q);
    return 0;
}

/* The provider of KEK k recorded for VM uuid (NULL: none, or destroyed). */
static char *kek_provider(manager *m, const char *uuid, const char *k)
{
    store_rows *q = NULL;
    char *p = NULL;
    if (store_execv(m->db, &q, "SELECT provider FROM keks WHERE kek_id = $1 AND vm_uuid = $2 AND "
                    "state <> 'destroyed' ORDER BY created DESC LIMIT 1", k, uuid, STORE_END) >= 0 &&
        store_rows_count(q))
        p = strdup(store_rows_get(q, 0, 0));
    store_rows_free(q);
    return p;
}

static void set_host_view(manager *m, const char *uuid, const char *seen)
{
    (void)store_execv(m->db, NULL, "UPDATE vms SET host_view = $2 WHERE uuid = $1", uuid, seen, STORE_END);
}

/* The host has an unfinished operation the manager has no task for (the
 * manager lost it, or a host restored from a backup): follow it as a task
 * of its own. 1 when a task was made. */
static int adopt_host_op(manager *m, const vm_rec *vr, const host_view *v, const char *seen)
{
    const char *action = !strcmp(v->op, "encrypt") ? "encrypt" : !strcmp(v->op, "decrypt") ? "decrypt"
                         : !strcmp(v->op, "recrypt-deep") ? "recrypt-deep" : NULL;
    if (!action)
        return 0;   /* e.g. an unfinished create: the host finishes it */
    char *nkms = v->op_kek[0] ? kek_provider(m, vr->uuid, v->op_kek) : NULL;
    char *okms = v->kek[0] ? kek_provider(m, vr->uuid, v->kek) : NULL;
    json_t *params = json_pack("{s:b}", "adopted", 1);
    if (!strcmp(action, "encrypt")) {
        json_object_set_new(params, "old_policy", json_string("none"));
        json_object_set_new(params, "policy", json_string("encrypted"));
    } else if (!strcmp(action, "decrypt")) {
        json_object_set_new(params, "old_policy", json_string("encrypted"));
        json_object_set_new(params, "policy", json_string("none"));
    } else {
        json_object_set_new(params, "deep", json_true());
    }
    if (v->kek[0] && strcmp(action, "encrypt")) {
        json_object_set_new(params, "old_kek_id", json_string(v->kek));
        if (okms)
            json_object_set_new(params, "old_kms", json_string(okms));
    }
    if (v->op_kek[0]) {
        json_object_set_new(params, "kek_id", json_string(v->op_kek));
        if (nkms)
            json_object_set_new(params, "kms", json_string(nkms));
    }
    char *ps = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(params);
    free(nkms);
    free(okms);
    char now[32];
    num(now, sizeof(now), (long long)mgr_now());
    store_rows *r = NULL;
    int rc = ps ? store_execv(m->db, &r,
                              "INSERT INTO tasks (vm_uuid, action, host, host_task, state, progress, user_name, "
                              "params, created, updated) SELECT $1, $2, $3, $4, 'running', 0, '-', $5, $6, $6 "
                              "WHERE NOT EXISTS (SELECT 1 FROM tasks WHERE vm_uuid = $1 AND state IN "
                              TASKS_OPEN_SQL ") AND EXISTS (SELECT 1 FROM vms WHERE uuid = $1 AND gen = $7) "
                              "RETURNING id",
                              vr->uuid, action, vr->host, v->task_running ? v->task_id : NULL, ps, now, vr->gen,
                              STORE_END)
                : -ENOMEM;
    free(ps);
    long long id = rc >= 0 && store_rows_count(r) ? atoll(store_rows_get(r, 0, 0)) : 0;
    store_rows_free(r);
    if (!id)
        return 0;
    (void)store_execv(m->db, NULL, "UPDATE vms SET gen = gen + 1, host_view = $2 WHERE uuid = $1", vr->uuid,
                      seen, STORE_END);
    json_t *nv = json_pack("{s:I,s:s,s:s,s:s}", "task", (json_int_t)id, "action", action, "decision",
                           "adopted", "host_vm", seen);
    event_record(m, "-", "task.reconcile", vr->name, NULL, nv, "ok");
    json_decref(nv);
    mgr_log("VM %s: its host %s has an unfinished %s the manager had no task for: task %lld follows it",
            vr->name, vr->host, action, id);
    return 1;
}

struct adopt_tx {
    manager *m;
    const vm_rec *vr;
    const host_view *v;
    const char *prov;          /* provider of the host's KEK (NULL: not encrypted) */
    const char *seen;
    int changed;
};

static int adopt_view_fn(store *db, void *arg)
{
    struct adopt_tx *a = arg;
    const vm_rec *vr = a->vr;
    const host_view *v = a->v;
    int rc = store_execv(db, NULL,
                         "UPDATE vms SET policy = $2, kek_id = $3, provider = $4, gen = gen + 1, host_view = $5 "
                         "WHERE uuid = $1 AND gen = $6 AND NOT EXISTS (SELECT 1 FROM tasks WHERE vm_uuid = $1 "
                         "AND state IN " TASKS_OPEN_SQL ")",
                         vr->uuid, v->encrypted ? "encrypted" : "none", v->encrypted ? v->kek : NULL,
                         v->encrypted ? a->prov : NULL, a->seen, vr->gen, STORE_END);
    if (rc <= 0)
        return rc;   /* changed meanwhile: the next round looks again */
    a->changed = 1;
    if (v->encrypted)
        rc = store_execv(db, NULL, "UPDATE keks SET state = 'active' WHERE provider = $1 AND kek_id = $2 "
                         "AND vm_uuid = $3", a->prov, v->kek, vr->uuid, STORE_END);
    /* the KEK the manager had recorded is no longer the VM's: retired (it is
     * destroyed only after the grace period, and never while a host names
     * it) */
    if (rc >= 0 && vr->kek[0] && (!v->encrypted || strcmp(vr->kek, v->kek)))
        rc = store_execv(db, NULL, "UPDATE keks SET state = 'retired' WHERE provider = $1 AND kek_id = $2 "
                         "AND vm_uuid = $3 AND state = 'active'", vr->prov, vr->kek, vr->uuid, STORE_END);
    if (rc < 0)
        return rc;
    json_t *ov = json_pack("{s:s,s:s?,s:s?}", "policy", vr->policy, "kek_id", vr->kek[0] ? vr->kek : NULL,
                           "kms", vr->prov[0] ? vr->prov : NULL);
    json_t *nv = json_pack("{s:s,s:s?,s:s?,s:s}", "policy", v->encrypted ? "encrypted" : "none", "kek_id",
                           v->encrypted ? v->kek : NULL, "kms", v->encrypted ? a->prov : NULL, "why",
                           "the host's vm.conf wins");
    rc = event_record(a->m, "-", "vm.reconcile", vr->name, ov, nv, "ok");
    json_decref(ov);
    json_decref(nv);
    return rc;
}

/* Compare one VM that has no unfinished task with its host's view. */
static int sync_vm(manager *m, const vm_rec *vr, const host_view *v)
{
    if (!v->found)
        return 0;
    char seen[400];
    host_view_summary(v, seen, sizeof(seen));
    if (v->op[0]) {
        if (!strcmp(seen, vr->host_view) && !v->task_running)
            return 0;   /* the same unfinished operation we adopted or reported before */
        return adopt_host_op(m, vr, v, seen);
    }
    int enc = !strcmp(vr->policy, "encrypted");
    if (enc == v->encrypted && (!enc || !strcmp(vr->kek, v->kek))) {
        if (strcmp(seen, vr->host_view))
            set_host_view(m, vr->uuid, seen);
        return 0;
    }
    char *prov = v->encrypted ? kek_provider(m, vr->uuid, v->kek) : NULL;
    if (v->encrypted && !prov) {
        if (!strcmp(seen, vr->host_view))
            return 0;   /* reported before */
        /* a KEK the manager never recorded for this VM: not taken (it could
         * be another VM's); say so once */
        set_host_view(m, vr->uuid, seen);
        json_t *ov = json_pack("{s:s,s:s?}", "policy", vr->policy, "kek_id", vr->kek[0] ? vr->kek : NULL);
        char why[600];
        snprintf(why, sizeof(why), "the host's vm.conf names KEK %s, which the manager has no record of "
                 "for this VM: not adopted (restore the VM's vm.conf, or unregister and register the VM)",
                 v->kek);
        json_t *nv = json_pack("{s:s,s:s}", "host_vm", seen, "why", why);
        event_record(m, "-", "vm.reconcile", vr->name, ov, nv, "failed");
        json_decref(ov);
        json_decref(nv);
        mgr_log("VM %s: %s", vr->name, why);
        return 0;
    }
    struct adopt_tx a = {.m = m, .vr = vr, .v = v, .prov = prov, .seen = seen};
    int rc = store_tx(m->db, adopt_view_fn, &a);
    if (rc >= 0 && a.changed)
        mgr_log("VM %s: the manager takes its host's view: %s (it had %s%s%s)", vr->name, seen, vr->policy,
                vr->kek[0] ? " under " : "", vr->kek);
    free(prov);
    return 0;
}

static void sync_vm_view(manager *m, const char *uuid, const host_view *v)
{
    vm_rec vr;
    if (load_vm_rec(m, uuid, &vr) == 0 && !tasks_open_for(m, uuid))
        (void)sync_vm(m, &vr, v);
}

int tasks_sync_vm(manager *m, const char *vm_uuid, const json_t *vm)
{
    host_view v;
    vm_rec vr;
    if (host_view_parse(vm, &v) < 0 || load_vm_rec(m, vm_uuid, &vr) < 0 || tasks_open_for(m, vm_uuid))
        return 0;
    return sync_vm(m, &vr, &v);
}

/* The VM leaves the inventory (unregister) while a task on it is not
 * finished: the task ends (its host keeps the VM as it is, its KEKs stay
 * as they are, nothing is destroyed); registering the VM again takes the
 * host's view. A VM whose host is gone for good is not held forever. */
int tasks_let_go(manager *m, const char *vm_uuid)
{
    char sql[600];
    snprintf(sql, sizeof(sql), "%s WHERE t.vm_uuid = $1 AND t.state IN " TASKS_OPEN_SQL, task_cols);
    const char *p[] = {vm_uuid};
    store_rows *r = NULL;
    int rc = store_exec(m->db, sql, 1, p, &r);
    for (size_t i = 0; rc >= 0 && i < store_rows_count(r); i++) {
        task_row t;
        row_of(r, i, &t);
        rc = task_end(m, &t, "error", "the VM was unregistered while the task was unfinished: its host keeps "
                      "it as it is (register it again to follow it)", NULL, "unregistered");
        row_free(&t);
    }
    store_rows_free(r);
    return rc < 0 ? rc : 0;
}

/* -------------------------------------------------- cancel and resume */

static int task_is_open(const char *state)
{
    return !strcmp(state, "pending") || !strcmp(state, "running") || !strcmp(state, "cancelling") ||
           !strcmp(state, "rolling-back") || !strcmp(state, "blocked");
}

static void wake(manager *m)
{
    pthread_mutex_lock(&m->lock);
    pthread_cond_broadcast(&m->changed);
    pthread_mutex_unlock(&m->lock);
}

static void user_event(manager *m, const char *user, const char *action, const task_row *t,
                       const char *from, const char *to)
{
    json_t *ov = json_pack("{s:s}", "state", from);
    json_t *nv = json_pack("{s:I,s:s,s:s}", "task", (json_int_t)t->id, "action", t->action, "state", to);
    event_add(m, user, action, t->vm[0] ? t->vm : t->vm_uuid, ov, nv);
    json_decref(ov);
    json_decref(nv);
}

int tasks_cancel(manager *m, const char *user, long long id, json_t **out)
{
    *out = NULL;
    task_row t;
    int rc = load_task(m, id, &t);
    if (rc < 0)
        return rc;
    if (!task_is_open(t.state)) {
        rc = vmseal_fail(EALREADY, "task %lld has ended (%s)", id, t.state);
        row_free(&t);
        return rc;
    }
    if (strcmp(t.state, "cancelling") != 0) {
        char ids[32], now[32];
        num(ids, sizeof(ids), id);
        num(now, sizeof(now), (long long)mgr_now());
        rc = store_execv(m->db, NULL, "UPDATE tasks SET state = 'cancelling', attempts = 0, next_try = 0, "
                         "updated = $3 WHERE id = $1 AND state = $2", ids, t.state, now, STORE_END);
        if (rc < 0) {
            row_free(&t);
            return vmseal_fail(EIO, "%s", vmseal_last_error());
        }
        if (rc == 0) {
            row_free(&t);
            return vmseal_fail(EBUSY, "task %lld changed meanwhile: try again", id);
        }
        user_event(m, user, "task.cancel", &t, t.state, "cancelling");
        mgr_log("task %lld: %s of VM %s cancelled by %s", id, t.action, t.vm_uuid, user);
        wake(m);
    }
    row_free(&t);
    json_t *tj = NULL;
    rc = tasks_get(m, id, &tj);
    if (rc < 0)
        return vmseal_fail(EIO, "%s", vmseal_last_error());
    *out = json_pack("{s:o}", "task", tj);
    return 0;
}

struct rerun_tx {
    task_row *t;
    int changed;
};

/* A task that ended without doing it, again: 'pending', its KEK too. */
static int rerun_fn(store *db, void *arg)
{
    struct rerun_tx *x = arg;
    task_row *t = x->t;
    char ids[32], now[32];
    num(ids, sizeof(ids), t->id);
    num(now, sizeof(now), (long long)mgr_now());
    int rc = store_execv(db, NULL,
                         "UPDATE tasks SET state = 'pending', error = NULL, progress = 0, attempts = 0, "
                         "next_try = 0, host_task = NULL, updated = $3 WHERE id = $1 AND state = $2 AND NOT "
                         "EXISTS (SELECT 1 FROM tasks o WHERE o.vm_uuid = $4 AND o.state IN " TASKS_OPEN_SQL ")",
                         ids, t->state, now, t->vm_uuid, STORE_END);
    if (rc <= 0)
        return rc;
    x->changed = 1;
    const char *nk = new_kek(t), *nkms = new_kms(t);
    if (nk && nkms)
        rc = store_execv(db, NULL, "UPDATE keks SET state = 'pending' WHERE provider = $1 AND kek_id = $2 AND "
                         "vm_uuid = $3 AND state = 'unused'", nkms, nk, t->vm_uuid, STORE_END);
    if (rc >= 0)
        rc = store_execv(db, NULL, "UPDATE vms SET gen = gen + 1 WHERE uuid = $1", t->vm_uuid, STORE_END);
    return rc < 0 ? rc : 0;
}

/* Is the VM, as the manager records it, where task t starts from? */
static int vm_before(manager *m, const task_row *t, char *why, size_t len)
{
    vm_rec vr;
    if (load_vm_rec(m, t->vm_uuid, &vr) < 0) {
        snprintf(why, len, "its VM is gone");
        return 0;
    }
    if (!strcmp(t->action, "import"))
        return 1;   /* going on: the host finishes the disk it recorded */
    int enc = !strcmp(vr.policy, "encrypted");
    const char *ok = old_kek(t);
    int before = !strcmp(t->action, "encrypt") ? !enc : enc && ok && !strcmp(vr.kek, ok);
    if (!before)
        snprintf(why, len, "VM %s is %s%s now", vr.name, enc ? "encrypted under KEK " : "not encrypted",
                 enc ? vr.kek : "");
    return before;
}

int tasks_resume(manager *m, const char *user, long long id, json_t **out)
{
    *out = NULL;
    task_row t;
    int rc = load_task(m, id, &t);
    if (rc < 0)
        return rc;
    char ids[32], now[32], was[16];
    num(ids, sizeof(ids), id);
    num(now, sizeof(now), (long long)mgr_now());
    snprintf(was, sizeof(was), "%s", t.state);
    if (!strcmp(t.state, "running") || !strcmp(t.state, "blocked")) {
        /* go on forward now, with fresh tries */
        rc = store_execv(m->db, NULL, "UPDATE tasks SET state = 'running', attempts = 0, next_try = 0, "
                         "host_task = CASE WHEN state = 'blocked' THEN NULL ELSE host_task END, updated = $3 "
                         "WHERE id = $1 AND state = $2", ids, t.state, now, STORE_END);
        if (rc == 0)
            rc = vmseal_fail(EBUSY, "task %lld changed meanwhile: try again", id);
        if (rc > 0) {
            user_event(m, user, "task.resume", &t, was, "running");
            mgr_log("task %lld: %s of VM %s resumed by %s", id, t.action, t.vm_uuid, user);
            wake(m);
        }
    } else if (!strcmp(t.state, "error") || !strcmp(t.state, "rolled-back") ||
               !strcmp(t.state, "cancelled")) {
        /* ended without doing it: run it again, from the start */
        char why[300];
        const char *nk = new_kek(&t), *nkms = new_kms(&t);
        store_rows *r = NULL;
        if (!vm_before(m, &t, why, sizeof(why))) {
            rc = vmseal_fail(ESTALE, "task %lld cannot run again: %s", id, why);
        } else if (nk && nkms &&
                   (store_execv(m->db, &r, "SELECT state FROM keks WHERE provider = $1 AND kek_id = $2 AND "
                                "vm_uuid = $3", nkms, nk, t.vm_uuid, STORE_END) < 0 ||
                    store_rows_count(r) == 0 || !strcmp(store_rows_get(r, 0, 0), "destroyed"))) {
            rc = vmseal_fail(ESTALE, "task %lld cannot run again: its KEK %s is no longer there; start "
                             "the operation anew", id, nk);
        } else {
            struct rerun_tx x = {.t = &t};
            rc = store_tx(m->db, rerun_fn, &x);
            if (rc >= 0 && !x.changed)
                rc = vmseal_fail(EBUSY, "VM %s is busy with another task, or task %lld changed meanwhile",
                                 t.vm[0] ? t.vm : t.vm_uuid, id);
        }
        store_rows_free(r);
        if (rc >= 0) {
            user_event(m, user, "task.resume", &t, was, "pending");
            mgr_log("task %lld: %s of VM %s run again by %s", id, t.action, t.vm_uuid, user);
            row_free(&t);
            rc = load_task(m, id, &t);
            if (rc == 0 && (rc = launching_add(m, id)) == 0) {
                json_t *o = NULL;
                rc = launch(m, &t, &o);
                launching_del(m, id);
                json_decref(o);
            }
        }
    } else {
        rc = vmseal_fail(strcmp(t.state, "success") ? EBUSY : EALREADY, "task %lld is %s: nothing to resume",
                         id, t.state);
    }
    row_free(&t);
    if (rc < 0)
        return rc;
    json_t *tj = NULL;
    rc = tasks_get(m, id, &tj);
    if (rc < 0)
        return vmseal_fail(EIO, "%s", vmseal_last_error());
    *out = json_pack("{s:o}", "task", tj);
    return 0;
}

/* ------------------------------------------------ KEKs a host lacks */

/* A VM its host reports locked because a KEK is missing gets it as soon as
 * the key provider gives it again (the KMS was down when the host asked):
 * its lock state is refreshed without a power-on. Only KEKs the host's VMs
 * name and the manager gives (hosts_keys_for's rule); each one asked for
 * again backing off from 2 s to 30 s while the provider fails. Watcher
 * thread only. */
typedef struct kek_retry {
    char host[80], kek[VIEW_KEK_MAX];
    int64_t next_ms, delay_ms;
} kek_retry;
static kek_retry kek_retries[64];

static kek_retry *kek_retry_slot(const char *host, const char *kek)
{
    kek_retry *free_slot = NULL, *oldest = &kek_retries[0];
    for (size_t i = 0; i < sizeof(kek_retries) / sizeof(kek_retries[0]); i++) {
        kek_retry *r = &kek_retries[i];
        if (r->host[0] && !strcmp(r->host, host) && !strcmp(r->kek, kek))
            return r;
        if (!r->host[0] && !free_slot)
            free_slot = r;
        if (r->next_ms < oldest->next_ms)
            oldest = r;
    }
    kek_retry *r = free_slot ? free_slot : oldest;
    memset(r, 0, sizeof(*r));
    snprintf(r->host, sizeof(r->host), "%s", host);
    snprintf(r->kek, sizeof(r->kek), "%s", kek);
    return r;
}

static void refresh_keys(manager *m, const char *host, const json_t *vms)
{
    size_t i;
    json_t *vm;
    int locked = 0;
    json_array_foreach(vms, i, vm)
        locked |= json_is_true(json_object_get(vm, "locked"));
    if (!locked)
        return;
    long status = 0;
    json_t *resp = NULL;
    if (hosts_call(m, host, "GET", "/v1/keys", NULL, &status, &resp) < 0 || status != 200) {
        json_decref(resp);
        return;
    }
    json_t *held = json_object_get(resp, "needed_and_held"), *id;
    int64_t now = now_ms();
    json_array_foreach(json_object_get(resp, "needed"), i, id) {
        const char *k = json_string_value(id);
        if (!k || strlen(k) >= VIEW_KEK_MAX)
            continue;
        size_t j;
        json_t *h;
        int has = 0;
        json_array_foreach(held, j, h)
            has |= json_equal(h, id);
        if (has)
            continue;
        store_rows *r = NULL;
        int rc = store_execv(m->db, &r,
                             "SELECT k.provider FROM keks k JOIN vms v ON v.uuid = k.vm_uuid WHERE k.kek_id = $1 "
                             "AND v.host = $2 AND (v.kek_id = k.kek_id OR k.state IN ('active', 'pending') OR "
                             "EXISTS (SELECT 1 FROM tasks t WHERE t.vm_uuid = v.uuid AND t.state IN "
                             TASKS_OPEN_SQL ")) ORDER BY k.created DESC LIMIT 1", k, host, STORE_END);
        char prov[80] = "";
        if (rc >= 0 && store_rows_count(r))
            snprintf(prov, sizeof(prov), "%s", store_rows_get(r, 0, 0));
        store_rows_free(r);
        if (!prov[0])
            continue;   /* not one the manager gives this host */
        kek_retry *slot = kek_retry_slot(host, k);
        if (now < slot->next_ms)
            continue;
        if (hosts_push_key(m, host, prov, k) == 0) {
            mgr_log("host %s: gave it KEK %s its VMs need (they were locked without it)", host, k);
            memset(slot, 0, sizeof(*slot));
        } else {
            if (!slot->delay_ms)
                mgr_log("host %s lacks KEK %s and the manager cannot give it now: %s (trying again)", host,
                        k, vmseal_last_error());
            slot->delay_ms = slot->delay_ms ? slot->delay_ms * 2 : 2000;
            if (slot->delay_ms > 30000)
                slot->delay_ms = 30000;
            slot->next_ms = now + slot->delay_ms;
        }
    }
    json_decref(resp);
}

/* Every VM of every host, once. */
static void reconcile_hosts(manager *m)
{
    store_rows *hr = NULL;
    if (store_execv(m->db, &hr, "SELECT name FROM hosts ORDER BY name", STORE_END) < 0)
        return;
    for (size_t h = 0; h < store_rows_count(hr); h++) {
        const char *host = store_rows_get(hr, h, 0);
        long status = 0;
        json_t *resp = NULL;
        if (hosts_call(m, host, "GET", "/v1/vms", NULL, &status, &resp) < 0 || status != 200) {
            json_decref(resp);
            continue;   /* unreachable: its VMs are compared when it is back */
        }
        json_t *byid = json_object();
        size_t i;
        json_t *vm;
        json_array_foreach(json_object_get(resp, "vms"), i, vm) {
            const char *u = json_string_value(json_object_get(vm, "uuid"));
            if (u)
                json_object_set(byid, u, vm);
        }
        store_rows *vr = NULL;
        if (store_execv(m->db, &vr, "SELECT uuid FROM vms WHERE host = $1 AND NOT EXISTS (SELECT 1 FROM "
                        "tasks t WHERE t.vm_uuid = vms.uuid AND t.state IN " TASKS_OPEN_SQL ") ORDER BY name",
                        host, STORE_END) >= 0)
            for (size_t k = 0; k < store_rows_count(vr); k++) {
                const char *u = store_rows_get(vr, k, 0);
                json_t *hv = json_object_get(byid, u);
                if (hv)
                    (void)tasks_sync_vm(m, u, hv);
            }
        store_rows_free(vr);
        json_decref(byid);
        refresh_keys(m, host, json_object_get(resp, "vms"));
        json_decref(resp);
    }
    store_rows_free(hr);
}

void tasks_reconcile_soon(manager *m)
{
    pthread_mutex_lock(&m->lock);
    m->reconcile_due = 1;
    pthread_cond_broadcast(&m->changed);
    pthread_mutex_unlock(&m->lock);
}

static void *watcher_main(void *arg)
{
    manager *m = arg;
    int64_t last_pass = 0;
    for (;;) {
        pthread_mutex_lock(&m->lock);
        int stop = m->stopping, due = m->reconcile_due;
        m->reconcile_due = 0;
        pthread_mutex_unlock(&m->lock);
        if (stop)
            break;
        /* every unfinished task: where did its host get to? */
        char sql[600];
        snprintf(sql, sizeof(sql), "%s WHERE t.state IN " TASKS_OPEN_SQL " ORDER BY t.id", task_cols);
        store_rows *r = NULL;
        if (store_exec(m->db, sql, 0, NULL, &r) >= 0) {
            for (size_t i = 0; i < store_rows_count(r); i++) {
                task_row t;
                row_of(r, i, &t);
                step_task(m, &t);
                row_free(&t);
            }
        }
        store_rows_free(r);
        /* every VM of every host: the first round, when asked, and every
         * reconcile_interval */
        int64_t now = now_ms();
        if (due || !last_pass || now - last_pass >= (int64_t)m->cfg->reconcile_interval_s * 1000) {
            last_pass = now;
            reconcile_hosts(m);
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long ns = ts.tv_nsec + (long)m->cfg->task_poll_ms * 1000000L;
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        pthread_mutex_lock(&m->lock);
        if (!m->stopping && !m->reconcile_due)
            pthread_cond_timedwait(&m->changed, &m->lock, &ts);
        pthread_mutex_unlock(&m->lock);
    }
    return NULL;
}

int tasks_start_watcher(manager *m)
{
    int e = pthread_create(&m->task_thread, NULL, watcher_main, m);
    if (e != 0)
        return vmseal_fail(e, "cannot start the task watcher");
    m->task_thread_started = 1;
    return 0;
}

void tasks_stop_watcher(manager *m)
{
    if (!m->task_thread_started)
        return;
    pthread_mutex_lock(&m->lock);
    m->stopping = 1;
    pthread_cond_broadcast(&m->changed);
    pthread_mutex_unlock(&m->lock);
    pthread_join(m->task_thread, NULL);
    m->task_thread_started = 0;
}
