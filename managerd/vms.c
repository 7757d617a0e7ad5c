/* vmseal-managerd — VMs, the encryption policy, power, recrypt, tasks.
 *
 * The encryption policy is a VM attribute: "encrypted" (vSphere's "VM
 * Encryption" policy) or "none" ("Datastore default"). Applying a policy is
 * how a VM is encrypted or decrypted:
 *   none -> encrypted   Cryptographer.Encrypt: a new KEK on the key
 *                       provider (one KEK per VM, tagged with the VM), pushed
 *                       to the VM's host, then the host's encrypt task
 *   encrypted -> none   Cryptographer.Decrypt: the host's decrypt task
 *   rekey               Cryptographer.Recrypt: a new KEK; shallow = the
 *                       host rewraps the key safes, deep = new data keys too
 * Long host work runs as a host task; the manager keeps a task row per
 * operation, polls the host (task watcher thread) and, when the task ends,
 * records the new state and an event with the old and new values.
 *
 * Domain code (managerd.h): the API layer (api_vms.c) has checked the
 * caller's privileges; failures are -errno with a message, -EREMOTEIO when
 * the host or the key provider failed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vmseal/common.h>
#include <vmseal/diskdesc.h>

#include "managerd.h"

static const char vm_cols[] =
    "SELECT uuid, name, host, spec, policy, kek_id, provider, created, folder FROM vms";

static json_t *vm_json(store_rows *r, size_t i)
{
    json_t *spec = json_loads(store_rows_get(r, i, 3), 0, NULL);
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s?,s:s?,s:I}", "uuid", store_rows_get(r, i, 0), "name",
                          store_rows_get(r, i, 1), "host", store_rows_get(r, i, 2), "policy",
                          store_rows_get(r, i, 4), "kek_id", store_rows_get(r, i, 5), "kms",
                          store_rows_get(r, i, 6), "created", (json_int_t)atoll(store_rows_get(r, i, 7)));
    json_object_set_new(o, "encrypted", json_boolean(store_rows_get(r, i, 5) != NULL));
    const char *folder = store_rows_get(r, i, 8);
    if (folder && *folder)
        json_object_set_new(o, "folder", json_string(folder));
    if (spec)
        json_object_update(o, spec);
    json_decref(spec);
    return o;
}

static int load_vm(manager *m, const char *name, store_rows **r)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "%s WHERE name = $1", vm_cols);
    const char *p[] = {name};
    int rc = store_exec(m->db, sql, 1, p, r);
    if (rc < 0)
        return rc;
    if (store_rows_count(*r) == 0) {
        store_rows_free(*r);
        *r = NULL;
        return vmseal_fail(ENOENT, "no VM named %s", name);
    }
    return 0;
}

int vms_list(manager *m, json_t **out)
{
    store_rows *r = NULL;
    char sql[256];
    snprintf(sql, sizeof(sql), "%s ORDER BY name", vm_cols);
    int rc = store_exec(m->db, sql, 0, NULL, &r);
    if (rc < 0)
        return rc;
    json_t *arr = json_array();
    for (size_t i = 0; i < store_rows_count(r); i++)
        json_array_append_new(arr, vm_json(r, i));
    store_rows_free(r);
    *out = json_pack("{s:o}", "vms", arr);
    return 0;
}

/* The host's view of a VM: GET {host}/v1/vms/{uuid}. */
static int vm_runtime(manager *m, const char *host, const char *uuid, json_t **out, char *err,
                      size_t errlen)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/vms/%s", uuid);
    long status = 0;
    json_t *resp = NULL;
    int rc = hosts_call(m, host, "GET", path, NULL, &status, &resp);
    if (rc < 0) {
        snprintf(err, errlen, "%s", vmseal_last_error());
        return rc;
    }
    if (status != 200) {
        snprintf(err, errlen, "host %s: HTTP %ld: %s", host, status, vmseal_http_error_text(resp));
        json_decref(resp);
        return status == 404 ? -ENOENT : -EIO;
    }
    *out = resp;
    return 0;
}

int vms_get(manager *m, const char *name, int live, json_t **out)
{
    store_rows *r = NULL;
    int rc = load_vm(m, name, &r);
    if (rc < 0)
        return rc;
    json_t *o = vm_json(r, 0);
    if (live) {
        json_t *rt = NULL;
        char err[512];
        if (vm_runtime(m, store_rows_get(r, 0, 2), store_rows_get(r, 0, 0), &rt, err, sizeof(err)) == 0)
            json_object_set_new(o, "runtime", rt);
        else
            json_object_set_new(o, "runtime_error", json_string(err));
    }
    store_rows_free(r);
    store_rows *t = NULL;
    if (store_execv(m->db, &t, "SELECT id FROM tasks WHERE vm_uuid = $1 AND state = 'running'",
                    json_string_value(json_object_get(o, "uuid")), STORE_END) >= 0 &&
        store_rows_count(t))
        json_object_set_new(o, "task", json_integer(atoll(store_rows_get(t, 0, 0))));
    store_rows_free(t);
    *out = o;
    return 0;
}

/* A failure of the VM's host or of a key provider is the peer's: -EREMOTEIO
 * (502 at the API), whatever errno it had; the message stays. */
static int peer_failure(void)
{
    return vmseal_fail(EREMOTEIO, "%s", vmseal_last_error());
}

/* A failure of the manager's own records (inventory, KEKs, tasks) once the
 * request was accepted: -EIO (500), whatever errno the database gave; the
 * message stays. */
static int own_failure(void)
{
    return vmseal_fail(EIO, "%s", vmseal_last_error());
}

/* The parts of VM `name`'s row the actions need (-ENOENT when there is no
 * such VM). */
typedef struct vm_row {
    char uuid[40], host[80], policy[16], kek[160], prov[80];
} vm_row;

static int get_vm_row(manager *m, const char *name, vm_row *v)
{
    store_rows *r = NULL;
    int rc = load_vm(m, name, &r);
    if (rc < 0)
        return rc;
    memset(v, 0, sizeof(*v));
    snprintf(v->uuid, sizeof(v->uuid), "%s", store_rows_get(r, 0, 0));
    snprintf(v->host, sizeof(v->host), "%s", store_rows_get(r, 0, 2));
    if (store_rows_get(r, 0, 4))
        snprintf(v->policy, sizeof(v->policy), "%s", store_rows_get(r, 0, 4));
    if (store_rows_get(r, 0, 5))
        snprintf(v->kek, sizeof(v->kek), "%s", store_rows_get(r, 0, 5));
    if (store_rows_get(r, 0, 6))
        snprintf(v->prov, sizeof(v->prov), "%s", store_rows_get(r, 0, 6));
    store_rows_free(r);
    return 0;
}

int vms_find(manager *m, const char *name)
{
    vm_row v;
    return get_vm_row(m, name, &v);
}

/* The host answered with an error status: its 409, 400 and 404 are passed
 * on (-EBUSY, -EINVAL, -ENOENT), anything else is the host's failure
 * (-EREMOTEIO). */
static int host_refused(const char *host, long status, const json_t *resp)
{
    int e = status == 409 ? EBUSY : status == 400 ? EINVAL : status == 404 ? ENOENT : EREMOTEIO;
    return vmseal_fail(e, "host %s: %s", host, vmseal_http_error_text(resp));
}

static int record_kek(manager *m, const char *kek_id, const char *provider, const char *uuid,
                      const char *state)
{
    char now[32];
    snprintf(now, sizeof(now), "%lld", (long long)mgr_now());
    return store_execv(m->db, NULL,
                       "INSERT INTO keks (kek_id, provider, vm_uuid, state, created) VALUES ($1, $2, $3, $4, $5)",
                       kek_id, provider, uuid, state, now, STORE_END);
}

/* Only the record of this VM's KEK: a KEK id another VM's record holds
 * (servers that hand out the same ids) is never changed from here. */
static int set_kek_state(manager *m, const char *provider, const char *kek_id, const char *uuid,
                         const char *state)
{
    return store_execv(m->db, NULL,
                       "UPDATE keks SET state = $3 WHERE provider = $1 AND kek_id = $2 AND vm_uuid = $4",
                       provider, kek_id, state, uuid, STORE_END);
}

/* A KEK made for an operation on VM uuid that failed: "unused". The
 * failure being reported stays this thread's error message. */
static void kek_unused(manager *m, const char *provider, const char *kek_id, const char *uuid)
{
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", vmseal_last_error());
    (void)set_kek_state(m, provider, kek_id, uuid, "unused");
    (void)vmseal_fail(0, "%s", msg);
}

/* New KEK for a VM on provider (NULL: the default), recorded as pending,
 * pushed to the host. An unknown provider asked for is -EINVAL, no default
 * provider -ENOKEY. */
static int new_kek_for(manager *m, const char *want_provider, const char *uuid, const char *name,
                       const char *host, char **provider, char **kek_id)
{
    *kek_id = NULL;
    *provider = NULL;
    int rc;
    if (want_provider) {
        json_t *p = NULL;
        rc = kms_provider_get(m, want_provider, &p);
        json_decref(p);
        if (rc < 0)
            return rc == -ENOENT ? vmseal_fail(EINVAL, "%s", vmseal_last_error()) : rc;
        *provider = strdup(want_provider);
    } else {
        rc = kms_provider_default(m, provider);
        if (rc < 0)
            return rc == -ENOENT ? vmseal_fail(ENOKEY, "%s", vmseal_last_error()) : rc;
    }
    rc = keys_create_kek(m, *provider, uuid, name, kek_id);
    if (rc < 0)
        return vmseal_fail(EREMOTEIO, "key provider %s: cannot create a key: %s", *provider,
                           vmseal_last_error());
    rc = record_kek(m, *kek_id, *provider, uuid, "pending");
    if (rc < 0) {
        /* e.g. the id is recorded for another VM already: that record is
         * left alone; the new key is an orphan (keys ls --orphans) */
        rc = rc == -EEXIST ? vmseal_fail(EEXIST, "key provider %s gave KEK id %s, which is recorded for "
                                         "another VM: not used", *provider, *kek_id)
                           : own_failure();
        free(*kek_id);
        *kek_id = NULL;
        return rc;
    }
    rc = hosts_push_key(m, host, *provider, *kek_id);
    if (rc < 0) {
        rc = peer_failure();
        kek_unused(m, *provider, *kek_id, uuid);
        return rc;
    }
    return 0;
}

int vms_host_default_policy(manager *m, const char *host, char *policy, size_t len)
{
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r, "SELECT default_policy FROM hosts WHERE name = $1", host, STORE_END);
    int known = rc >= 0 && store_rows_count(r) == 1;
    snprintf(policy, len, "%s",
             known && !strcmp(store_rows_get(r, 0, 0), "encrypted") ? "encrypted" : "none");
    store_rows_free(r);
    return known;
}

int vms_create(manager *m, const char *user, const json_t *req, const char *policy, json_t **out)
{
    const char *name = json_string_value(json_object_get(req, "name"));
    const char *host = json_string_value(json_object_get(req, "host"));
    const char *folder = json_string_value(json_object_get(req, "folder"));
    int encrypted = !strcmp(policy, "encrypted");
    char host_default[16];
    *out = NULL;
    if (vms_host_default_policy(m, host, host_default, sizeof(host_default)) != 1)
        return vmseal_fail(EINVAL, "no host named %s", host);

    json_t *spec = json_object();
    const json_t *v;
    json_object_set_new(spec, "cpus", json_integer((v = json_object_get(req, "cpus")) ? json_integer_value(v) : 1));
    json_object_set_new(spec, "memory_mb",
                        json_integer((v = json_object_get(req, "memory_mb")) ? json_integer_value(v) : 256));
    json_object_set_new(spec, "disks", (v = json_object_get(req, "disks")) ? json_deep_copy(v) : json_array());
    json_object_set_new(spec, "firmware",
                        json_string((v = json_object_get(req, "firmware")) ? json_string_value(v) : "bios"));
    const char *opt[] = {"kernel", "initrd", "append"};
    for (size_t i = 0; i < 3; i++)
        if (json_object_get(req, opt[i]))
            json_object_set(spec, opt[i], json_object_get(req, opt[i]));
    char uuid[37], now[32];
    if (vmseal_uuid_random(uuid) < 0) {
        json_decref(spec);
        return vmseal_fail(EIO, "%s", vmseal_last_error());
    }
    snprintf(now, sizeof(now), "%lld", (long long)mgr_now());
    char *spec_s = json_dumps(spec, JSON_COMPACT | JSON_SORT_KEYS);
    /* Reserve the name first. */
    int rc = store_execv(m->db, NULL,
                         "INSERT INTO vms (uuid, name, host, spec, policy, created, folder) "
                         "VALUES ($1, $2, $3, $4, 'none', $5, $6)",
                         uuid, name, host, spec_s, now, folder ? folder : "", STORE_END);
    free(spec_s);
    if (rc < 0) {
        json_decref(spec);
        return rc == -EEXIST ? vmseal_fail(EEXIST, "a VM named %s exists already", name) : own_failure();
    }
    char *provider = NULL, *kek_id = NULL;
    if (encrypted) {
        rc = new_kek_for(m, json_string_value(json_object_get(req, "kms")), uuid, name, host,
                         &provider, &kek_id);
        if (rc < 0)
            goto undo;
    }
    json_t *body = json_deep_copy(spec);
    json_object_set_new(body, "name", json_string(name));
    json_object_set_new(body, "uuid", json_string(uuid));
    json_object_set_new(body, "policy", json_string(policy));
    if (kek_id)
        json_object_set_new(body, "kek_id", json_string(kek_id));
    long status = 0;
    json_t *resp = NULL;
    rc = hosts_call(m, host, "POST", "/v1/vms", body, &status, &resp);
    json_decref(body);
    if (rc < 0) {
        rc = peer_failure();
        goto undo;
    }
    if (status < 200 || status > 299) {
        rc = host_refused(host, status, resp);
        json_decref(resp);
        goto undo;
    }
    json_decref(resp);
    if (encrypted) {
        rc = store_execv(m->db, NULL,
                         "UPDATE vms SET policy = 'encrypted', kek_id = $2, provider = $3 WHERE uuid = $1",
                         uuid, kek_id, provider, STORE_END);
        if (rc >= 0)
            rc = set_kek_state(m, provider, kek_id, uuid, "active");
        if (rc < 0) {
            rc = own_failure();
            goto undo;
        }
    }
    json_t *nv = json_deep_copy(spec);
    json_object_set_new(nv, "uuid", json_string(uuid));
    json_object_set_new(nv, "host", json_string(host));
    json_object_set_new(nv, "policy", json_string(policy));
    if (folder)
        json_object_set_new(nv, "folder", json_string(folder));
    if (kek_id) {
        json_object_set_new(nv, "kek_id", json_string(kek_id));
        json_object_set_new(nv, "kms", json_string(provider));
    }
    event_add(m, user, "vm.create", name, NULL, nv);
    json_decref(nv);
    rc = vms_get(m, name, 0, out);
    json_decref(spec);
    free(provider);
    free(kek_id);
    return rc < 0 ? rc : 0;
undo:;
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", vmseal_last_error());
    (void)store_execv(m->db, NULL, "DELETE FROM vms WHERE uuid = $1", uuid, STORE_END);
    (void)vmseal_fail(0, "%s", msg);
    if (kek_id)
        kek_unused(m, provider, kek_id, uuid);
    json_decref(spec);
    free(provider);
    free(kek_id);
    return rc < 0 ? rc : -EIO;
}

static int running_task(manager *m, const char *uuid)
{
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r, "SELECT id FROM tasks WHERE vm_uuid = $1 AND state = 'running'", uuid, STORE_END);
    long long id = rc >= 0 && store_rows_count(r) ? atoll(store_rows_get(r, 0, 0)) : 0;
    store_rows_free(r);
    return (int)id;
}

/* Start a host task and record it; *out = {task}. */
static int start_task(manager *m, const char *user, const char *uuid, const char *name,
                      const char *host, const char *action, const char *path, const json_t *body,
                      const json_t *params, json_t **out)
{
    long status = 0;
    json_t *resp = NULL;
    int rc = hosts_call(m, host, "POST", path, body, &status, &resp);
    if (rc < 0)
        return peer_failure();
    if (status < 200 || status > 299) {
        rc = host_refused(host, status, resp);
        json_decref(resp);
        return rc;
    }
    json_t *tid = json_object_get(resp, "task_id");
    char htask[64];
    if (json_is_integer(tid))
        snprintf(htask, sizeof(htask), "%lld", (long long)json_integer_value(tid));
    else if (json_is_string(tid) && json_string_length(tid) < sizeof(htask))
        snprintf(htask, sizeof(htask), "%s", json_string_value(tid));
    else {
        json_decref(resp);
        return vmseal_fail(EREMOTEIO, "host %s did not return a task_id", host);
    }
    json_decref(resp);
    char now[32];
    snprintf(now, sizeof(now), "%lld", (long long)mgr_now());
    char *ps = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS);
    store_rows *r = NULL;
    rc = store_execv(m->db, &r,
                     "INSERT INTO tasks (vm_uuid, action, host, host_task, state, progress, user_name, "
                     "params, created, updated) VALUES ($1, $2, $3, $4, 'running', 0, $5, $6, $7, $7) "
                     "RETURNING id",
                     uuid, action, host, htask, user, ps, now, STORE_END);
    free(ps);
    if (rc < 0)
        return own_failure();
    long long id = atoll(store_rows_get(r, 0, 0));
    store_rows_free(r);
    json_t *ev = json_deep_copy(params);
    json_object_set_new(ev, "task", json_integer(id));
    json_object_set_new(ev, "action", json_string(action));
    event_add(m, user, "task.start", name, NULL, ev);
    json_decref(ev);
    json_t *t = NULL;
    if (tasks_get(m, id, &t) < 0)
        t = json_pack("{s:I}", "id", (json_int_t)id);
    *out = json_pack("{s:o}", "task", t);
    return 0;
}

/* Encrypt, decrypt and deep recrypt need the VM powered off (as in
 * vSphere); say so before any key is made. A VM its host does not know is
 * -ESTALE. */
static int require_off(manager *m, const char *host, const char *uuid, const char *name,
                       const char *what)
{
    json_t *rt = NULL;
    char err[512];
    int rc = vm_runtime(m, host, uuid, &rt, err, sizeof(err));
    if (rc < 0)
        return vmseal_fail(rc == -ENOENT ? ESTALE : EREMOTEIO, "%s", err);
    const char *ps = json_string_value(json_object_get(rt, "power_state"));
    int on = ps && !strcmp(ps, "on");
    json_decref(rt);
    if (on)
        return vmseal_fail(EBUSY, "VM %s must be powered off to %s it", name, what);
    return 0;
}

int vms_set_policy(manager *m, const char *user, const char *name, const char *want,
                   const char *kms, json_t **out)
{
    *out = NULL;
    vm_row v;
    int rc = get_vm_row(m, name, &v);
    if (rc < 0)
        return rc;
    int encrypt = !strcmp(want, "encrypted");
    if (!strcmp(v.policy, want)) {
        rc = vms_get(m, name, 0, out);
        if (rc < 0)
            return own_failure();
        json_object_set_new(*out, "changed", json_false());
        return 0;
    }
    int t = running_task(m, v.uuid);
    if (t)
        return vmseal_fail(EBUSY, "VM %s is busy with task %d", name, t);
    rc = require_off(m, v.host, v.uuid, name, encrypt ? "encrypt" : "decrypt");
    if (rc < 0)
        return rc;
    if (encrypt) {
        char *provider = NULL, *kek_id = NULL;
        rc = new_kek_for(m, kms, v.uuid, name, v.host, &provider, &kek_id);
        if (rc >= 0) {
            json_t *body = json_pack("{s:s}", "kek_id", kek_id);
            json_t *params = json_pack("{s:s,s:s,s:s,s:s}", "old_policy", v.policy, "policy", want,
                                       "kek_id", kek_id, "kms", provider);
            char path[128];
            snprintf(path, sizeof(path), "/v1/vms/%s/encrypt", v.uuid);
            rc = start_task(m, user, v.uuid, name, v.host, "encrypt", path, body, params, out);
            if (rc < 0)
                kek_unused(m, provider, kek_id, v.uuid);
            json_decref(body);
            json_decref(params);
        }
        free(provider);
        free(kek_id);
        return rc < 0 ? rc : 1;
    }
    /* decrypt: the host needs the current KEK to open the disks */
    if (v.kek[0]) {
        rc = hosts_push_key(m, v.host, v.prov, v.kek);
        if (rc < 0)
            return peer_failure();
    }
    json_t *params = json_pack("{s:s,s:s,s:s?,s:s?}", "old_policy", v.policy, "policy", want,
                               "old_kek_id", v.kek[0] ? v.kek : NULL, "kms",
                               v.prov[0] ? v.prov : NULL);
    char path[128];
    snprintf(path, sizeof(path), "/v1/vms/%s/decrypt", v.uuid);
    json_t *body = json_object();
    rc = start_task(m, user, v.uuid, name, v.host, "decrypt", path, body, params, out);
    json_decref(body);
    json_decref(params);
    return rc < 0 ? rc : 1;
}

/* Settings a powered-off VM can change (the host's PATCH /v1/vms/{uuid}):
 * forwarded to the host, then stored in the VM's spec; the event holds the
 * old and new values of the fields that changed ("" removes kernel, initrd
 * or append: null in the event). */
int vms_reconfigure(manager *m, const char *user, const char *name, const json_t *req, json_t **out)
{
    *out = NULL;
    vm_row v;
    int rc = get_vm_row(m, name, &v);
    if (rc < 0)
        return rc;
    int t = running_task(m, v.uuid);
    if (t)
        return vmseal_fail(EBUSY, "VM %s is busy with task %d", name, t);
    rc = require_off(m, v.host, v.uuid, name, "reconfigure");
    if (rc < 0)
        return rc;
    store_rows *r = NULL;
    rc = load_vm(m, name, &r);
    if (rc < 0)
        return rc;
    json_t *spec = json_loads(store_rows_get(r, 0, 3), 0, NULL);
    store_rows_free(r);
    if (!json_is_object(spec)) {
        json_decref(spec);
        return vmseal_fail(EIO, "VM %s: stored spec is not a JSON object", name);
    }
    static const char *const keys[] = {"cpus", "memory_mb", "kernel", "initrd", "append"};
    json_t *ov = json_object(), *nv = json_object();
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const json_t *want = json_object_get(req, keys[i]);
        if (!want)
            continue;
        const json_t *have = json_object_get(spec, keys[i]);
        int removes = json_is_string(want) && json_string_length(want) == 0;
        if (removes ? !have : (have && json_equal((json_t *)have, (json_t *)want)))
            continue;
        json_object_set_new(ov, keys[i], have ? json_deep_copy(have) : json_null());
        json_object_set_new(nv, keys[i], removes ? json_null() : json_deep_copy(want));
    }
    char path[128];
    snprintf(path, sizeof(path), "/v1/vms/%s", v.uuid);
    long status = 0;
    json_t *resp = NULL;
    /* Everything asked for goes to the host, so a host that differs from
     * the stored spec is brought in line too. */
    rc = hosts_call(m, v.host, "PATCH", path, (json_t *)req, &status, &resp);
    if (rc < 0) {
        rc = peer_failure();
        goto out;
    }
    if (status < 200 || status > 299) {
        rc = host_refused(v.host, status, resp);
        goto out;
    }
    int changed = json_object_size(nv) > 0;
    if (changed) {
        const char *k;
        json_t *x;
        json_object_foreach(nv, k, x) {
            if (json_is_null(x))
                json_object_del(spec, k);
            else
                json_object_set(spec, k, x);
        }
        char *spec_s = json_dumps(spec, JSON_COMPACT | JSON_SORT_KEYS);
        rc = spec_s ? store_execv(m->db, NULL, "UPDATE vms SET spec = $2 WHERE uuid = $1", v.uuid,
                                  spec_s, STORE_END)
                    : vmseal_fail(ENOMEM, "out of memory");
        free(spec_s);
        if (rc < 0) {
            rc = vmseal_fail(EIO, "the host changed VM %s but the inventory was not updated: %s",
                             name, vmseal_last_error());
            goto out;
        }
        event_add(m, user, "vm.reconfigure", name, ov, nv);
    }
    rc = vms_get(m, name, 0, out);
    if (rc < 0) {
        rc = own_failure();
        goto out;
    }
    json_object_set_new(*out, "changed", json_boolean(changed));
    rc = 0;
out:
    json_decref(resp);
    json_decref(spec);
    json_decref(ov);
    json_decref(nv);
    return rc;
}

int vms_rekey(manager *m, const char *user, const char *name, int deep, const char *kms,
              json_t **out)
{
    *out = NULL;
    vm_row v;
    int rc = get_vm_row(m, name, &v);
    if (rc < 0)
        return rc;
    if (!v.kek[0])
        return vmseal_fail(ENOKEY, "VM %s is not encrypted", name);
    int t = running_task(m, v.uuid);
    if (t)
        return vmseal_fail(EBUSY, "VM %s is busy with task %d", name, t);
    if (deep && (rc = require_off(m, v.host, v.uuid, name, "deep-rekey")) < 0)
        return rc;
    rc = hosts_push_key(m, v.host, v.prov, v.kek);   /* the host needs the old KEK too */
    if (rc < 0)
        return peer_failure();
    char *provider = NULL, *kek_id = NULL;
    rc = new_kek_for(m, kms ? kms : v.prov, v.uuid, name, v.host, &provider, &kek_id);
    if (rc < 0) {
        free(provider);
        free(kek_id);
        return rc;
    }
    json_t *body = json_pack("{s:s,s:b}", "new_kek_id", kek_id, "deep", deep);
    json_t *params = json_pack("{s:s,s:s,s:s,s:s,s:b}", "old_kek_id", v.kek, "old_kms", v.prov,
                               "kek_id", kek_id, "kms", provider, "deep", deep);
    char path[128];
    snprintf(path, sizeof(path), "/v1/vms/%s/recrypt", v.uuid);
    rc = start_task(m, user, v.uuid, name, v.host, deep ? "recrypt-deep" : "recrypt-shallow", path,
                    body, params, out);
    if (rc < 0)
        kek_unused(m, provider, kek_id, v.uuid);
    json_decref(body);
    json_decref(params);
    free(provider);
    free(kek_id);
    return rc;
}

int vms_power(manager *m, const char *user, const char *name, int on, json_t **out)
{
    *out = NULL;
    vm_row v;
    int rc = get_vm_row(m, name, &v);
    if (rc < 0)
        return rc;
    if (on && v.kek[0]) {
        /* The host must hold the VM's KEK to power it on. */
        rc = hosts_push_key(m, v.host, v.prov, v.kek);
        if (rc < 0)
            return peer_failure();
    }
    json_t *before = NULL;
    char err[512];
    const char *old_state = NULL;
    if (vm_runtime(m, v.host, v.uuid, &before, err, sizeof(err)) == 0)
        old_state = json_string_value(json_object_get(before, "power_state"));
    char path[128];
    snprintf(path, sizeof(path), "/v1/vms/%s/%s", v.uuid, on ? "power-on" : "power-off");
    long status = 0;
    json_t *resp = NULL;
    json_t *body = json_object();
    rc = hosts_call(m, v.host, "POST", path, body, &status, &resp);
    json_decref(body);
    if (rc < 0) {
        json_decref(before);
        return peer_failure();
    }
    if (status < 200 || status > 299) {
        rc = host_refused(v.host, status, resp);
        json_decref(resp);
        json_decref(before);
        return rc;
    }
    json_t *ov = json_pack("{s:s?}", "power_state", old_state);
    json_t *nv = json_pack("{s:s}", "power_state", on ? "on" : "off");
    event_add(m, user, on ? "vm.power-on" : "vm.power-off", name, ov, nv);
    json_decref(ov);
    json_decref(nv);
    json_decref(before);
    *out = resp ? resp : json_pack("{s:s}", "power", on ? "on" : "off");
    return 0;
}

/* The VM a delete or unregister removes from the inventory: loaded (its
 * JSON in *old, for the event), and not busy. */
static int vm_to_remove(manager *m, const char *name, json_t **old, char uuid[40], char host[80])
{
    *old = NULL;
    store_rows *r = NULL;
    int rc = load_vm(m, name, &r);
    if (rc < 0)
        return rc;
    *old = vm_json(r, 0);
    snprintf(uuid, 40, "%s", store_rows_get(r, 0, 0));
    snprintf(host, 80, "%s", store_rows_get(r, 0, 2));
    store_rows_free(r);
    int t = running_task(m, uuid);
    if (t) {
        json_decref(*old);
        *old = NULL;
        return vmseal_fail(EBUSY, "VM %s is busy with task %d", name, t);
    }
    return 0;
}

/* Drop the VM's row and the permissions set on it: a later VM of the same
 * name must not inherit them. */
static int forget_vm(manager *m, const char *uuid, const char *name)
{
    char vobj[96];
    snprintf(vobj, sizeof(vobj), "vm:%s", name);
    int rc = store_execv(m->db, NULL, "DELETE FROM vms WHERE uuid = $1", uuid, STORE_END);
    if (rc >= 0)
        rc = store_execv(m->db, NULL, "DELETE FROM permissions WHERE object = $1", vobj, STORE_END);
    return rc;
}

int vms_delete(manager *m, const char *user, const char *name)
{
    json_t *old = NULL;
    char uuid[40], host[80];
    int rc = vm_to_remove(m, name, &old, uuid, host);
    if (rc < 0)
        return rc;
    char path[128];
    snprintf(path, sizeof(path), "/v1/vms/%s", uuid);
    long status = 0;
    json_t *resp = NULL;
    rc = hosts_call(m, host, "DELETE", path, NULL, &status, &resp);
    if (rc < 0) {
        json_decref(old);
        return peer_failure();
    }
    if ((status < 200 || status > 299) && status != 404) {
        rc = host_refused(host, status, resp);
        json_decref(resp);
        json_decref(old);
        return rc;
    }
    json_decref(resp);
    rc = forget_vm(m, uuid, name);
    if (rc >= 0)
        rc = store_execv(m->db, NULL, "UPDATE keks SET state = 'retired' WHERE vm_uuid = $1 AND state <> 'unused'",
                         uuid, STORE_END);
    if (rc < 0) {
        json_decref(old);
        return own_failure();
    }
    event_add(m, user, "vm.delete", name, old, NULL);
    json_decref(old);
    return 0;
}

/* ------------------------------------------------------------------ tasks */

static const char task_cols[] =
    "SELECT t.id, t.vm_uuid, t.action, t.host, t.host_task, t.state, t.progress, t.error, t.user_name, "
    "t.params, t.created, t.updated, v.name FROM tasks t LEFT JOIN vms v ON v.uuid = t.vm_uuid";

static json_t *task_json(store_rows *r, size_t i)
{
    json_t *params = json_loads(store_rows_get(r, i, 9), 0, NULL);
    return json_pack("{s:I,s:s,s:s?,s:s,s:s,s:s?,s:s,s:I,s:s?,s:s,s:o,s:I,s:I}", "id",
                     (json_int_t)atoll(store_rows_get(r, i, 0)), "vm_uuid", store_rows_get(r, i, 1),
                     "vm", store_rows_get(r, i, 12), "action", store_rows_get(r, i, 2), "host",
                     store_rows_get(r, i, 3), "host_task", store_rows_get(r, i, 4), "state",
                     store_rows_get(r, i, 5), "progress", (json_int_t)atoll(store_rows_get(r, i, 6)),
                     "error", store_rows_get(r, i, 7), "user", store_rows_get(r, i, 8), "params",
                     params ? params : json_object(), "created", (json_int_t)atoll(store_rows_get(r, i, 10)),
                     "updated", (json_int_t)atoll(store_rows_get(r, i, 11)));
}

int tasks_get(manager *m, long long id, json_t **out)
{
    char sql[512], ids[32];
    snprintf(sql, sizeof(sql), "%s WHERE t.id = $1", task_cols);
    snprintf(ids, sizeof(ids), "%lld", id);
    const char *p[] = {ids};
    store_rows *r = NULL;
    int rc = store_exec(m->db, sql, 1, p, &r);
    if (rc < 0)
        return rc;
    if (store_rows_count(r) == 0) {
        store_rows_free(r);
        return vmseal_fail(ENOENT, "no task %lld", id);
    }
    *out = task_json(r, 0);
    store_rows_free(r);
    return 0;
}

int tasks_list(manager *m, json_t **out)
{
    char sql[512];
    snprintf(sql, sizeof(sql), "%s ORDER BY t.id DESC LIMIT 200", task_cols);
    store_rows *r = NULL;
    int rc = store_exec(m->db, sql, 0, NULL, &r);
    if (rc < 0)
        return rc;
    json_t *arr = json_array();
    for (size_t i = 0; i < store_rows_count(r); i++)
        json_array_append_new(arr, task_json(r, i));
    store_rows_free(r);
    *out = json_pack("{s:o}", "tasks", arr);
    return 0;
}

struct finish_tx {
    json_t *task;
    const char *state;
    const char *error;
    int progress;
};

/* The host task ended: record the VM's new state. */
static int finish_fn(store *db, void *arg)
{
    struct finish_tx *f = arg;
    json_t *t = f->task, *p = json_object_get(t, "params");
    const char *action = json_string_value(json_object_get(t, "action"));
    const char *uuid = json_string_value(json_object_get(t, "vm_uuid"));
    const char *kek = json_string_value(json_object_get(p, "kek_id"));
    const char *kms = json_string_value(json_object_get(p, "kms"));
    const char *old_kek = json_string_value(json_object_get(p, "old_kek_id"));
    const char *old_kms = json_string_value(json_object_get(p, "old_kms"));
    char id[32], now[32], prog[16];
    snprintf(id, sizeof(id), "%lld", (long long)json_integer_value(json_object_get(t, "id")));
    snprintf(now, sizeof(now), "%lld", (long long)mgr_now());
    snprintf(prog, sizeof(prog), "%d", f->progress);
    int rc = store_execv(db, NULL, "UPDATE tasks SET state = $2, error = $3, progress = $4, updated = $5 WHERE id = $1",
                         id, f->state, f->error, prog, now, STORE_END);
    int ok = !strcmp(f->state, "success");
    if (rc < 0)
        return rc;
    if (!strcmp(action, "encrypt")) {
        if (ok)
            rc = store_execv(db, NULL, "UPDATE vms SET policy = 'encrypted', kek_id = $2, provider = $3 WHERE uuid = $1",
                             uuid, kek, kms, STORE_END);
        if (rc >= 0)
            rc = store_execv(db, NULL, "UPDATE keks SET state = $3 WHERE provider = $1 AND kek_id = $2 AND vm_uuid = $4",
                             kms, kek, ok ? "active" : "unused", uuid, STORE_END);
    } else if (!strcmp(action, "decrypt")) {
        if (ok)
            rc = store_execv(db, NULL, "UPDATE vms SET policy = 'none', kek_id = NULL, provider = NULL WHERE uuid = $1",
                             uuid, STORE_END);
        if (rc >= 0 && ok && old_kek)
            rc = store_execv(db, NULL, "UPDATE keks SET state = 'retired' WHERE provider = $1 AND kek_id = $2 AND vm_uuid = $3",
                             old_kms ? old_kms : kms, old_kek, uuid, STORE_END);
    } else if (!strncmp(action, "recrypt", 7)) {
        if (ok)
            rc = store_execv(db, NULL, "UPDATE vms SET kek_id = $2, provider = $3 WHERE uuid = $1", uuid, kek,
                             kms, STORE_END);
        if (rc >= 0)
            rc = store_execv(db, NULL, "UPDATE keks SET state = $3 WHERE provider = $1 AND kek_id = $2 AND vm_uuid = $4",
                             kms, kek, ok ? "active" : "unused", uuid, STORE_END);
        if (rc >= 0 && ok)
            rc = store_execv(db, NULL, "UPDATE keks SET state = 'retired' WHERE provider = $1 AND kek_id = $2 AND vm_uuid = $3",
                             old_kms, old_kek, uuid, STORE_END);
    }
    return rc;
}

static const char *map_host_state(const char *s)
{
    if (!s)
        return NULL;
    if (!strcmp(s, "done") || !strcmp(s, "success") || !strcmp(s, "succeeded") || !strcmp(s, "completed"))
        return "success";
    if (!strcmp(s, "error") || !strcmp(s, "failed") || !strcmp(s, "cancelled") || !strcmp(s, "canceled"))
        return "error";
    return "running";
}

/* The host forgot our task: adopt the task it resumed for this VM, or judge
 * by the VM's state whether the operation completed. */
static void reconcile(manager *m, json_t *t, const char *id, const char **state, const char **error)
{
    const char *host = json_string_value(json_object_get(t, "host"));
    const char *uuid = json_string_value(json_object_get(t, "vm_uuid"));
    const char *action = json_string_value(json_object_get(t, "action"));
    json_t *p = json_object_get(t, "params");
    json_t *vm = NULL;
    char err[512];
    int rc = vm_runtime(m, host, uuid, &vm, err, sizeof(err));
    if (rc == -ENOENT) {
        *state = "error";
        *error = "the VM is gone from its host";
        return;
    }
    if (rc < 0)
        return;   /* try again later */
    json_t *task = json_object_get(vm, "task");
    const char *tid = json_string_value(json_object_get(task, "id"));
    if (json_is_object(task) && tid) {
        (void)store_execv(m->db, NULL, "UPDATE tasks SET host_task = $2 WHERE id = $1", id, tid, STORE_END);
        mgr_log("task %s: following host task %s after the host restarted", id, tid);
        json_decref(vm);
        return;
    }
    if (json_is_string(json_object_get(vm, "pending_operation"))) {
        json_decref(vm);
        return;   /* waiting for its KEK; the host resumes once it has it */
    }
    int enc = json_is_true(json_object_get(vm, "encrypted"));
    const char *kek = json_string_value(json_object_get(vm, "kek_id"));
    const char *want = json_string_value(json_object_get(p, "kek_id"));
    int done;
    if (!strcmp(action, "decrypt"))
        done = !enc;
    else
        done = enc && kek && want && !strcmp(kek, want);
    *state = done ? "success" : "error";
    *error = done ? NULL : "the host restarted and the operation did not complete; apply it again";
    json_decref(vm);
}

static void poll_task(manager *m, json_t *t)
{
    const char *host = json_string_value(json_object_get(t, "host"));
    const char *htask = json_string_value(json_object_get(t, "host_task"));
    char path[128], id[32];
    snprintf(path, sizeof(path), "/v1/tasks/%s", htask ? htask : "");
    snprintf(id, sizeof(id), "%lld", (long long)json_integer_value(json_object_get(t, "id")));
    long status = 0;
    json_t *resp = NULL;
    if (hosts_call(m, host, "GET", path, NULL, &status, &resp) < 0)
        return;   /* host unreachable for now: try again on the next round */
    const char *state = NULL, *error = NULL;
    int progress = 0;
    if (status == 200) {
        state = map_host_state(json_string_value(json_object_get(resp, "state")));
        error = json_string_value(json_object_get(resp, "error"));
        progress = (int)json_integer_value(json_object_get(resp, "progress"));
    } else if (status == 404) {
        /* The host restarted and forgot the task id: it resumes interrupted
         * operations by itself. Follow the VM instead. */
        json_decref(resp);
        resp = NULL;
        reconcile(m, t, id, &state, &error);
    }
    if (!state) {
        json_decref(resp);
        return;
    }
    char now[32], prog[16];
    snprintf(now, sizeof(now), "%lld", (long long)mgr_now());
    snprintf(prog, sizeof(prog), "%d", progress);
    if (!strcmp(state, "running")) {
        (void)store_execv(m->db, NULL, "UPDATE tasks SET progress = $2, updated = $3 WHERE id = $1 AND progress <> $2",
                          id, prog, now, STORE_END);
        json_decref(resp);
        return;
    }
    struct finish_tx f = {.task = t, .state = state, .error = error,
                          .progress = !strcmp(state, "success") ? 100 : progress};
    if (store_tx(m->db, finish_fn, &f) < 0) {
        mgr_log("task %s: cannot record the end: %s", id, vmseal_last_error());
        json_decref(resp);
        return;
    }
    /* The event: old and new values of what changed. */
    json_t *p = json_object_get(t, "params");
    const char *action = json_string_value(json_object_get(t, "action"));
    const char *vm = json_string_value(json_object_get(t, "vm"));
    const char *user = json_string_value(json_object_get(t, "user"));
    const char *object = vm ? vm : json_string_value(json_object_get(t, "vm_uuid"));
    if (!strcmp(state, "success")) {
        json_t *ov = NULL, *nv = NULL;
        const char *ev = "vm.policy";
        if (!strcmp(action, "encrypt") || !strcmp(action, "decrypt")) {
            ov = json_pack("{s:O?,s:O?}", "policy", json_object_get(p, "old_policy"), "kek_id",
                           json_object_get(p, "old_kek_id"));
            nv = json_pack("{s:O?,s:O?,s:O?}", "policy", json_object_get(p, "policy"), "kek_id",
                           json_object_get(p, "kek_id"), "kms", json_object_get(p, "kms"));
        } else {
            ev = "vm.rekey";
            ov = json_pack("{s:O?,s:O?}", "kek_id", json_object_get(p, "old_kek_id"), "kms",
                           json_object_get(p, "old_kms"));
            nv = json_pack("{s:O?,s:O?,s:O?}", "kek_id", json_object_get(p, "kek_id"), "kms",
                           json_object_get(p, "kms"), "deep", json_object_get(p, "deep"));
        }
        event_add(m, user, ev, object, ov, nv);
        json_decref(ov);
        json_decref(nv);
        /* The old KEK is retired: the host forgets it now (it would also
         * not get it back after a restart). */
        const char *old_kek = json_string_value(json_object_get(p, "old_kek_id"));
        if (old_kek && (strcmp(action, "encrypt") != 0)) {
            char kpath[300];
            long kst = 0;
            json_t *kr = NULL;
            snprintf(kpath, sizeof(kpath), "/v1/keys/%s", old_kek);
            if (hosts_call(m, host, "DELETE", kpath, NULL, &kst, &kr) < 0 || (kst != 204 && kst != 404))
                mgr_log("task %s: host %s did not drop retired KEK %s (HTTP %ld)", id, host, old_kek, kst);
            json_decref(kr);
        }
    } else {
        json_t *nv = json_pack("{s:I,s:s,s:s?}", "task", (json_int_t)json_integer_value(json_object_get(t, "id")),
                               "action", action, "error", error);
        event_add(m, user, "task.failed", object, NULL, nv);
        json_decref(nv);
    }
    json_decref(resp);
}

static void *watcher_main(void *arg)
{
    manager *m = arg;
    for (;;) {
        pthread_mutex_lock(&m->lock);
        int stop = m->stopping;
        pthread_mutex_unlock(&m->lock);
        if (stop)
            break;
        char sql[512];
        snprintf(sql, sizeof(sql), "%s WHERE t.state = 'running' ORDER BY t.id", task_cols);
        store_rows *r = NULL;
        if (store_exec(m->db, sql, 0, NULL, &r) >= 0) {
            for (size_t i = 0; i < store_rows_count(r); i++) {
                json_t *t = task_json(r, i);
                poll_task(m, t);
                json_decref(t);
            }
        }
        store_rows_free(r);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long ns = ts.tv_nsec + (long)m->cfg->task_poll_ms * 1000000L;
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        pthread_mutex_lock(&m->lock);
        if (!m->stopping)
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


int vms_move(manager *m, const char *user, const char *name, const char *folder, json_t **out)
{
    *out = NULL;
    store_rows *r = NULL;
    int rc = load_vm(m, name, &r);
    if (rc < 0)
        return rc;
    json_t *ov = json_pack("{s:s}", "folder", store_rows_get(r, 0, 8));
    char uuid[40];
    snprintf(uuid, sizeof(uuid), "%s", store_rows_get(r, 0, 0));
    store_rows_free(r);
    rc = store_execv(m->db, NULL, "UPDATE vms SET folder = $2 WHERE uuid = $1", uuid, folder, STORE_END);
    if (rc < 0) {
        json_decref(ov);
        return own_failure();
    }
    json_t *nv = json_pack("{s:s}", "folder", folder);
    event_add(m, user, "vm.move", name, ov, nv);
    json_decref(ov);
    json_decref(nv);
    rc = vms_get(m, name, 0, out);
    return rc < 0 ? own_failure() : 0;
}

int vms_log(manager *m, const char *user, const char *name, long long tail, json_t **out)
{
    *out = NULL;
    vm_row v;
    int rc = get_vm_row(m, name, &v);
    if (rc < 0)
        return rc;
    char path[160];
    snprintf(path, sizeof(path), "/v1/vms/%s/log?tail=%lld", v.uuid, tail);
    long status = 0;
    json_t *resp = NULL;
    rc = hosts_call(m, v.host, "GET", path, NULL, &status, &resp);
    if (rc >= 0 && status == 409 && v.kek[0]) {
        /* The host unseals the log with the VM's KEK: give it, once. */
        json_decref(resp);
        resp = NULL;
        rc = hosts_push_key(m, v.host, v.prov, v.kek);
        if (rc >= 0)
            rc = hosts_call(m, v.host, "GET", path, NULL, &status, &resp);
    }
    if (rc < 0)
        return peer_failure();
    if (status < 200 || status > 299) {
        rc = host_refused(v.host, status, resp);
        json_decref(resp);
        return rc;
    }
    /* Reading an encrypted VM's output is a cryptographic access: audited. */
    if (v.kek[0]) {
        json_t *nv = json_pack("{s:I}", "tail", (json_int_t)tail);
        event_add(m, user, "vm.log", name, NULL, nv);
        json_decref(nv);
    }
    *out = resp;
    return 0;
}

/* Unregister: the VM leaves the inventory; the host keeps it (its files
 * and its key safes), and its KEK record stays so it can come back. */
int vms_unregister(manager *m, const char *user, const char *name, char uuid[40])
{
    json_t *old = NULL;
    char host[80];
    int rc = vm_to_remove(m, name, &old, uuid, host);
    if (rc < 0)
        return rc;
    rc = forget_vm(m, uuid, name);
    if (rc < 0) {
        json_decref(old);
        return own_failure();
    }
    event_add(m, user, "vm.unregister", name, old, NULL);
    json_decref(old);
    return 0;
}

/* Register a VM that exists on a host but not in the inventory (after an
 * unregister, or a manager restored from an older backup): the host's view
 * gives its settings and KEK id. */
int vms_register_probe(manager *m, const char *host, const char *uuid, json_t **vm)
{
    *vm = NULL;
    if (!vmseal_uuid_valid(uuid))
        return vmseal_fail(EINVAL, "uuid: not a UUID");
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r, "SELECT name FROM vms WHERE uuid = $1", uuid, STORE_END);
    if (rc >= 0 && store_rows_count(r)) {
        rc = vmseal_fail(EEXIST, "VM %s is registered already as %s", uuid, store_rows_get(r, 0, 0));
        store_rows_free(r);
        return rc;
    }
    store_rows_free(r);
    r = NULL;
    rc = store_execv(m->db, &r, "SELECT name FROM hosts WHERE name = $1", host, STORE_END);
    int known = rc >= 0 && store_rows_count(r) == 1;
    store_rows_free(r);
    if (!known)
        return vmseal_fail(EINVAL, "no host named %s", host);
    char err[512];
    rc = vm_runtime(m, host, uuid, vm, err, sizeof(err));
    if (rc < 0)
        return vmseal_fail(rc == -ENOENT ? ENOENT : EREMOTEIO, "%s", err);
    return 0;
}

int vms_register(manager *m, const char *user, const json_t *req, const json_t *vm, json_t **out)
{
    const char *host = json_string_value(json_object_get(req, "host"));
    const char *uuid = json_string_value(json_object_get(req, "uuid"));
    const char *want_name = json_string_value(json_object_get(req, "name"));
    const char *kms = json_string_value(json_object_get(req, "kms"));
    *out = NULL;
    int encrypted = json_is_true(json_object_get(vm, "encrypted"));
    const char *kek = json_string_value(json_object_get(vm, "kek_id"));
    const char *name = want_name ? want_name : json_string_value(json_object_get(vm, "name"));
    if (!name || !api_valid_name(name))
        return vmseal_fail(EINVAL, "give the VM a name (the host's is not a valid one)");
    /* The key provider: asked for, else the one that recorded this KEK,
     * else the default. */
    char *provider = NULL;
    store_rows *r = NULL;
    if (encrypted && kek) {
        if (kms) {
            provider = strdup(kms);
        } else {
            if (store_execv(m->db, &r, "SELECT provider FROM keks WHERE kek_id = $1", kek, STORE_END) >= 0 &&
                store_rows_count(r) == 1)
                provider = strdup(store_rows_get(r, 0, 0));
            store_rows_free(r);
            if (!provider && kms_provider_default(m, &provider) < 0)
                return vmseal_fail(EINVAL, "say which key provider holds KEK %s (kms)", kek);
        }
    }
    json_t *spec = json_object();
    static const char *const keep[] = {"cpus", "memory_mb", "firmware"};
    for (size_t i = 0; i < 3; i++)
        if (json_object_get(vm, keep[i]))
            json_object_set(spec, keep[i], json_object_get(vm, keep[i]));
    json_t *disks = json_array();
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(vm, "disks"), i, d)
        json_array_append_new(disks, json_pack("{s:O}", "size_mb", json_object_get(d, "size_mb")));
    json_object_set_new(spec, "disks", disks);
    char *spec_s = json_dumps(spec, JSON_COMPACT | JSON_SORT_KEYS);
    char now[32];
    snprintf(now, sizeof(now), "%lld", (long long)mgr_now());
    int rc = store_execv(m->db, NULL,
                         "INSERT INTO vms (uuid, name, host, spec, policy, kek_id, provider, created) "
                         "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                         uuid, name, host, spec_s, encrypted ? "encrypted" : "none", encrypted ? kek : NULL,
                         encrypted ? provider : NULL, now, STORE_END);
    free(spec_s);
    if (rc >= 0 && encrypted && kek) {
        rc = store_execv(m->db, NULL, "UPDATE keks SET state = 'active', vm_uuid = $3 WHERE provider = $1 AND kek_id = $2",
                         provider, kek, uuid, STORE_END);
        if (rc == 0)
            rc = record_kek(m, kek, provider, uuid, "active");
    }
    if (rc < 0) {
        rc = rc == -EEXIST ? vmseal_fail(EEXIST, "a VM named %s exists already", name) : own_failure();
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", vmseal_last_error());
        (void)store_execv(m->db, NULL, "DELETE FROM vms WHERE uuid = $1", uuid, STORE_END);
        (void)vmseal_fail(0, "%s", msg);
        goto out;
    }
    json_t *nv = json_deep_copy(spec);
    json_object_set_new(nv, "uuid", json_string(uuid));
    json_object_set_new(nv, "host", json_string(host));
    if (encrypted && kek) {
        json_object_set_new(nv, "kek_id", json_string(kek));
        json_object_set_new(nv, "kms", json_string(provider));
    }
    event_add(m, user, "vm.register", name, NULL, nv);
    json_decref(nv);
    rc = vms_get(m, name, 0, out);
    if (rc < 0)
        rc = own_failure();
out:
    json_decref(spec);
    free(provider);
    return rc < 0 ? rc : 0;
}
