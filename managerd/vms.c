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
#include <vmseal/vmrecord.h>

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
    if (store_execv(m->db, &t, "SELECT id FROM tasks WHERE vm_uuid = $1 AND state IN " TASKS_OPEN_SQL,
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
    /* 422: what the user gave does not open (an adopted image's passphrase) */
    int e = status == 409 ? EBUSY : status == 400 ? EINVAL : status == 404 ? ENOENT
          : status == 422 ? EKEYREJECTED : EREMOTEIO;
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

/* A new KEK for VM uuid on the key provider (NULL: the default), made on
 * the KMS only: the caller records it. An unknown provider asked for is
 * -EINVAL, no default provider -ENOKEY. */
static int kek_make(manager *m, const char *want_provider, const char *uuid, const char *name,
                    char **provider, char **kek_id)
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
    return 0;
}

/* New KEK for a VM being created: made, recorded as pending, pushed to
 * the host. */
static int new_kek_for(manager *m, const char *want_provider, const char *uuid, const char *name,
                       const char *host, char **provider, char **kek_id)
{
    int rc = kek_make(m, want_provider, uuid, name, provider, kek_id);
    if (rc < 0)
        return rc;
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
    const char *opt[] = {"kernel", "initrd", "append", "tpm"};
    for (size_t i = 0; i < 4; i++)
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
    /* disks imported from images: the host's task doing it */
    json_t *host_task = json_incref(json_object_get(resp, "task"));
    json_decref(resp);
    if (encrypted) {
        rc = store_execv(m->db, NULL,
                         "UPDATE vms SET policy = 'encrypted', kek_id = $2, provider = $3 WHERE uuid = $1",
                         uuid, kek_id, provider, STORE_END);
        if (rc >= 0)
            rc = set_kek_state(m, provider, kek_id, uuid, "active");
        if (rc < 0) {
            rc = own_failure();
            json_decref(host_task);
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
    json_t *follow = NULL;
    const char *htask = json_string_value(json_object_get(host_task, "id"));
    if (htask) {
        /* the imports: the host's task, followed as one of the manager's */
        json_t *params = json_pack("{s:O, s:s?, s:s?}", "disks", json_object_get(spec, "disks"),
                                   "old_kek_id", kek_id, "old_kms", provider);
        task_intent in = {.user = user, .vm_uuid = uuid, .vm_name = name, .host = host,
                          .action = "import", .params = params};
        if (tasks_follow(m, &in, htask, &follow) < 0)
            mgr_log("VM %s: the host's task %s is not followed: %s", name, htask, vmseal_last_error());
        json_decref(params);
    }
    rc = vms_get(m, name, 0, out);
    if (rc == 0 && follow)
        json_object_set(*out, "task", follow);
    json_decref(follow);
    if (rc == 0 && json_is_object(host_task))
        json_object_set(*out, "host_task", host_task);
    json_decref(host_task);
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

/* Before an operation: the host's view of the VM. The manager first takes
 * what the host's vm.conf says when it differs (tasks_sync_vm: an
 * unfinished operation found there becomes a task, -EBUSY), then *v is
 * reloaded. A VM its host does not know is -ESTALE, a host that cannot be
 * asked -EREMOTEIO; *on says whether it runs. */
static int host_check(manager *m, const char *name, vm_row *v, int *on)
{
    json_t *rt = NULL;
    char err[512];
    int rc = vm_runtime(m, v->host, v->uuid, &rt, err, sizeof(err));
    if (rc < 0)
        return vmseal_fail(rc == -ENOENT ? ESTALE : EREMOTEIO, "%s", err);
    const char *ps = json_string_value(json_object_get(rt, "power_state"));
    *on = ps && !strcmp(ps, "on") ? 1 : ps && !strcmp(ps, "suspended") ? 2 : 0;
    int adopted = tasks_sync_vm(m, v->uuid, rt);
    json_decref(rt);
    if (adopted) {
        long long t = tasks_open_for(m, v->uuid);
        return vmseal_fail(EBUSY, "VM %s has an unfinished operation on its host, which task %lld "
                           "now follows", name, t);
    }
    return get_vm_row(m, name, v);
}

/* Encrypt, decrypt and deep recrypt need the VM powered off (as in
 * vSphere); say so before any key is made. */
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
    int suspended = ps && !strcmp(ps, "suspended");
    json_int_t snaps = json_integer_value(json_object_get(rt, "snapshots"));
    json_decref(rt);
    if (snaps > 0 && strcmp(what, "reconfigure") != 0)
        return vmseal_fail(EBUSY, "VM %s has %lld snapshot(s): remove them (vmseal vm snapshot rm) "
                           "to %s it", name, (long long)snaps, what);
    if (on)
        return vmseal_fail(EBUSY, "VM %s must be powered off to %s it", name, what);
    if (suspended)
        return vmseal_fail(EBUSY, "VM %s is suspended: resume it (or discard its saved state) to "
                           "%s it", name, what);
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
    long long t = tasks_open_for(m, v.uuid);
    if (t)
        return vmseal_fail(EBUSY, "VM %s is busy with task %lld", name, t);
    int on = 0;
    int hrc = host_check(m, name, &v, &on);
    if (hrc == -EBUSY || (hrc < 0 && hrc != -EREMOTEIO && hrc != -ESTALE))
        return hrc;
    if (!strcmp(v.policy, want)) {
        rc = vms_get(m, name, 0, out);
        if (rc < 0)
            return own_failure();
        json_object_set_new(*out, "changed", json_false());
        return 0;
    }
    if (hrc < 0)
        return hrc;
    if (on)
        return vmseal_fail(EBUSY, "VM %s must be powered off to %s it", name, encrypt ? "encrypt" : "decrypt");
    if ((rc = require_off(m, v.host, v.uuid, name, encrypt ? "encrypt" : "decrypt")) < 0)
        return rc;   /* a VM with snapshots: refused (their layers have their own keys) */
    if (encrypt) {
        char *provider = NULL, *kek_id = NULL;
        rc = kek_make(m, kms, v.uuid, name, &provider, &kek_id);
        if (rc >= 0) {
            mgr_crash_point("kek-created", "encrypt");
            json_t *params = json_pack("{s:s,s:s,s:s,s:s}", "old_policy", v.policy, "policy", want,
                                       "kek_id", kek_id, "kms", provider);
            task_intent in = {.user = user, .vm_uuid = v.uuid, .vm_name = name, .host = v.host,
                              .action = "encrypt", .params = params, .new_kek = kek_id,
                              .new_kms = provider};
            rc = tasks_run(m, &in, out);
            json_decref(params);
        }
        free(provider);
        free(kek_id);
        return rc < 0 ? rc : 1;
    }
    /* decrypt: the host gets the current KEK to open the disks */
    json_t *params = json_pack("{s:s,s:s,s:s?,s:s?}", "old_policy", v.policy, "policy", want,
                               "old_kek_id", v.kek[0] ? v.kek : NULL, "old_kms",
                               v.prov[0] ? v.prov : NULL);
    task_intent in = {.user = user, .vm_uuid = v.uuid, .vm_name = name, .host = v.host,
                      .action = "decrypt", .params = params};
    rc = tasks_run(m, &in, out);
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
    int t = (int)tasks_open_for(m, v.uuid);
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
    static const char *const keys[] = {"cpus", "memory_mb", "kernel", "initrd", "append", "tpm"};
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
    long long t = tasks_open_for(m, v.uuid);
    if (t)
        return vmseal_fail(EBUSY, "VM %s is busy with task %lld", name, t);
    int on = 0;
    rc = host_check(m, name, &v, &on);
    if (rc < 0)
        return rc;
    if (!v.kek[0])
        return vmseal_fail(ENOKEY, "VM %s is not encrypted", name);
    if (deep && on == 2)
        return vmseal_fail(EBUSY, "VM %s is suspended: resume it (or discard its saved state) to "
                           "deep-rekey it", name);
    if (deep && (rc = require_off(m, v.host, v.uuid, name, "deep-rekey")) < 0)
        return rc;   /* also refuses a VM with snapshots (a shallow rekey covers them) */
    if (deep && on)
        return vmseal_fail(EBUSY, "VM %s must be powered off to deep-rekey it", name);
    const char *action = deep ? "recrypt-deep" : "recrypt-shallow";
    char *provider = NULL, *kek_id = NULL;
    rc = kek_make(m, kms ? kms : v.prov, v.uuid, name, &provider, &kek_id);
    if (rc >= 0) {
        mgr_crash_point("kek-created", action);
        json_t *params = json_pack("{s:s,s:s,s:s,s:s,s:b}", "old_kek_id", v.kek, "old_kms", v.prov,
                                   "kek_id", kek_id, "kms", provider, "deep", deep);
        task_intent in = {.user = user, .vm_uuid = v.uuid, .vm_name = name, .host = v.host,
                          .action = action, .params = params, .new_kek = kek_id, .new_kms = provider};
        rc = tasks_run(m, &in, out);
        json_decref(params);
    }
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

/* Resume on another host that sees the VM's datastore: that host takes the
 * VM from the datastore (adopt) and gets the KEK; once the guest runs
 * there the inventory names the new host and the old one forgets the VM
 * (release; its files stay). When the resume fails the new host forgets it
 * again and the VM stays suspended where it was. */
static int resume_elsewhere(manager *m, const char *user, const char *name, vm_row *v,
                            const char *to, json_t **out)
{
    char def[16];
    if (vms_host_default_policy(m, to, def, sizeof(def)) != 1)
        return vmseal_fail(EINVAL, "no host named %s", to);
    long status = 0;
    json_t *resp = NULL;
    json_t *body = json_pack("{s:s, s:s}", "name", name, "uuid", v->uuid);
    int rc = hosts_call(m, to, "POST", "/v1/vms/adopt", body, &status, &resp);
    json_decref(body);
    if (rc < 0)
        return peer_failure();
    if (status < 200 || status > 299) {
        rc = host_refused(to, status, resp);
        json_decref(resp);
        return rc;
    }
    const char *ps = json_string_value(json_object_get(resp, "power_state"));
    if (!ps || strcmp(ps, "suspended") != 0) {
        rc = vmseal_fail(EALREADY, "VM %s is not suspended on the datastore host %s sees (%s)", name,
                         to, ps ? ps : "no state");
        json_decref(resp);
        return rc;
    }
    json_decref(resp);
    resp = NULL;
    char path[128];
    snprintf(path, sizeof(path), "/v1/vms/%s/release", v->uuid);
    if (v->kek[0] && hosts_push_key(m, to, v->prov, v->kek) < 0) {
        rc = peer_failure();
        (void)hosts_call(m, to, "POST", path, NULL, &status, &resp);
        json_decref(resp);
        return rc;
    }
    snprintf(path, sizeof(path), "/v1/vms/%s/power-on", v->uuid);
    body = json_object();
    rc = hosts_call(m, to, "POST", path, body, &status, &resp);
    json_decref(body);
    if (rc < 0 || status < 200 || status > 299) {
        rc = rc < 0 ? peer_failure() : host_refused(to, status, resp);
        char msg[700];
        snprintf(msg, sizeof(msg), "%s", vmseal_last_error());
        json_decref(resp);
        resp = NULL;
        snprintf(path, sizeof(path), "/v1/vms/%s/release", v->uuid);
        (void)hosts_call(m, to, "POST", path, NULL, &status, &resp);
        json_decref(resp);
        return vmseal_fail(-rc, "%s", msg);
    }
    rc = store_execv(m->db, NULL, "UPDATE vms SET host = $2 WHERE uuid = $1", v->uuid, to, STORE_END);
    if (rc < 0) {
        json_decref(resp);
        return vmseal_fail(EIO, "VM %s runs on %s but the inventory was not updated: %s", name, to,
                           vmseal_last_error());
    }
    json_t *gone = NULL;
    snprintf(path, sizeof(path), "/v1/vms/%s/release", v->uuid);
    if (hosts_call(m, v->host, "POST", path, NULL, &status, &gone) < 0 || status != 200)
        mgr_log("VM %s: host %s did not release it after the resume on %s: %s", name, v->host, to,
                vmseal_last_error());
    json_decref(gone);
    json_t *ov = json_pack("{s:s, s:s}", "power_state", "suspended", "host", v->host);
    json_t *nv = json_pack("{s:s, s:s}", "power_state", "on", "host", to);
    event_add(m, user, "vm.resume", name, ov, nv);
    json_decref(ov);
    json_decref(nv);
    *out = resp;
    return 0;
}

int vms_state(manager *m, const char *user, const char *name, const char *action, const char *to_host,
              json_t **out)
{
    *out = NULL;
    int resume = !strcmp(action, "resume");
    if (!resume && strcmp(action, "suspend") != 0 && strcmp(action, "discard-state") != 0)
        return vmseal_fail(EINVAL, "no such action %s", action);
    vm_row v;
    int rc = get_vm_row(m, name, &v);
    if (rc < 0)
        return rc;
    if (to_host && !resume)
        return vmseal_fail(EINVAL, "only a resume goes to another host");
    long long busy = tasks_open_for(m, v.uuid);
    if (busy)
        return vmseal_fail(EBUSY, "VM %s is busy with task %lld", name, busy);
    if (to_host && strcmp(to_host, v.host) != 0)
        return resume_elsewhere(m, user, name, &v, to_host, out);
    json_t *before = NULL;
    char err[512];
    const char *old_state = NULL;
    if (vm_runtime(m, v.host, v.uuid, &before, err, sizeof(err)) == 0)
        old_state = json_string_value(json_object_get(before, "power_state"));
    if (resume && old_state && strcmp(old_state, "suspended") != 0) {
        json_decref(before);
        return vmseal_fail(EALREADY, "VM %s is not suspended (it is %s)", name, old_state);
    }
    if (v.kek[0] && strcmp(action, "discard-state") != 0) {
        /* the host needs the VM's KEK to seal or open the saved state */
        rc = hosts_push_key(m, v.host, v.prov, v.kek);
        if (rc < 0) {
            json_decref(before);
            return peer_failure();
        }
    }
    char path[128];
    snprintf(path, sizeof(path), "/v1/vms/%s/%s", v.uuid, resume ? "power-on" : action);
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
    const char *now = !strcmp(action, "suspend") ? "suspended" : resume ? "on" : "off";
    char ev[32];
    snprintf(ev, sizeof(ev), "vm.%s", action);
    json_t *ov = json_pack("{s:s?}", "power_state", old_state);
    json_t *nv = json_pack("{s:s}", "power_state", now);
    event_add(m, user, ev, name, ov, nv);
    json_decref(ov);
    json_decref(nv);
    json_decref(before);
    *out = resp ? resp : json_pack("{s:s}", "power", now);
    return 0;
}

/* POST /v1/vms/{uuid}/disks on the VM's host: an empty disk ({"size_mb"})
 * or one imported from the host's images folder ({"from"}), made by a task
 * of the host's (its progress in the VM's live view). */
int vms_add_disk(manager *m, const char *user, const char *name, const json_t *req, json_t **out)
{
    *out = NULL;
    vm_row v;
    int rc = get_vm_row(m, name, &v);
    if (rc < 0)
        return rc;
    long long open_task = tasks_open_for(m, v.uuid);
    if (open_task)
        return vmseal_fail(EBUSY, "VM %s is busy with task %lld", name, open_task);
    if (v.kek[0] && hosts_push_key(m, v.host, v.prov, v.kek) < 0)
        return peer_failure();   /* the new disk secret is wrapped by the VM's KEK */
    char path[128];
    snprintf(path, sizeof(path), "/v1/vms/%s/disks", v.uuid);
    long status = 0;
    json_t *resp = NULL;
    json_t *body = json_deep_copy(req);
    rc = hosts_call(m, v.host, "POST", path, body, &status, &resp);
    json_decref(body);
    if (rc < 0)
        return peer_failure();
    if (status < 200 || status > 299) {
        rc = host_refused(v.host, status, resp);
        json_decref(resp);
        return rc;
    }
    /* never the passphrase of an adopted image */
    json_t *nv = json_pack("{s:O?, s:O?, s:O?, s:O?}", "disk", json_object_get(resp, "disk"), "from",
                           json_object_get(req, "from"), "size_mb", json_object_get(req, "size_mb"),
                           "host_task", json_object_get(resp, "id"));
    if (json_object_get(req, "adopt")) {
        json_object_set(nv, "adopt", json_object_get(req, "adopt"));
        json_object_set(nv, "passphrase_removed", json_object_get(req, "remove_passphrase")
                                                      ? json_object_get(req, "remove_passphrase")
                                                      : json_false());
    }
    event_add(m, user, "vm.disk-add", name, NULL, nv);
    json_decref(nv);
    const char *htask = json_string_value(json_object_get(resp, "id"));
    if (!json_object_get(req, "adopt") && htask) {
        /* the host's task, followed as one of the manager's (task ls) */
        json_t *params = json_pack("{s:O?, s:O?, s:O?, s:s?, s:s?}", "disk", json_object_get(resp, "disk"),
                                   "from", json_object_get(req, "from"), "size_mb",
                                   json_object_get(req, "size_mb"), "old_kek_id", v.kek[0] ? v.kek : NULL,
                                   "old_kms", v.kek[0] ? v.prov : NULL);
        task_intent in = {.user = user, .vm_uuid = v.uuid, .vm_name = name, .host = v.host,
                          .action = "import", .params = params};
        json_t *tj = NULL;
        if (tasks_follow(m, &in, htask, &tj) == 0)
            json_object_set_new(resp, "task", tj);
        else
            mgr_log("VM %s: the host's task %s is not followed: %s", name, htask, vmseal_last_error());
        json_decref(params);
    }
    *out = resp;
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
    int t = (int)tasks_open_for(m, uuid);
    if (t) {
        json_decref(*old);
        *old = NULL;
        return vmseal_fail(EBUSY, "VM %s is busy with task %d", name, t);
    }
    return 0;
}

/* Call the VM's host; when it answers 409 for an encrypted VM (its KEK is
 * not loaded there), give it the KEK once and ask again. 0 with the 2xx
 * answer in *resp, or -errno (the host's refusal or its failure). */
static int host_call_with_kek(manager *m, const vm_row *v, const char *method, const char *path,
                              const json_t *body, json_t **resp)
{
    long status = 0;
    *resp = NULL;
    int rc = hosts_call(m, v->host, method, path, body, &status, resp);
    if (rc >= 0 && status == 409 && v->kek[0]) {
        json_decref(*resp);
        *resp = NULL;
        rc = hosts_push_key(m, v->host, v->prov, v->kek);
        if (rc >= 0)
            rc = hosts_call(m, v->host, method, path, body, &status, resp);
    }
    if (rc < 0) {
        json_decref(*resp);
        *resp = NULL;
        return peer_failure();
    }
    if (status < 200 || status > 299) {
        rc = host_refused(v->host, status, *resp);
        json_decref(*resp);
        *resp = NULL;
        return rc;
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
    json_t *resp = NULL;
    /* the host unseals the log with the VM's KEK */
    if ((rc = host_call_with_kek(m, &v, "GET", path, NULL, &resp)) < 0)
        return rc;
    /* Reading an encrypted VM's output is a cryptographic access: audited. */
    if (v.kek[0]) {
        json_t *nv = json_pack("{s:I}", "tail", (json_int_t)tail);
        event_add(m, user, "vm.log", name, NULL, nv);
        json_decref(nv);
    }
    *out = resp;
    return 0;
}

/* Export: the host opens a one-time NBD-over-TLS endpoint on the disk and
 * answers with its address and one-time key, passed on to the caller. An
 * encrypted VM's host may need the KEK first (409: given once, asked
 * again). Always audited: a disk leaves the host. */
int vms_export(manager *m, const char *user, const char *name, const json_t *req, json_t **out)
{
    *out = NULL;
    vm_row v;
    int rc = get_vm_row(m, name, &v);
    if (rc < 0)
        return rc;
    char path[160];
    snprintf(path, sizeof(path), "/v1/vms/%s/export", v.uuid);
    json_t *resp = NULL;
    if ((rc = host_call_with_kek(m, &v, "POST", path, req, &resp)) < 0)
        return rc;
    json_t *nv = json_pack("{s:O, s:O, s:O}", "disk", json_object_get(resp, "disk"), "view",
                           json_object_get(resp, "view"), "port", json_object_get(resp, "port"));
    event_add(m, user, "vm.export", name, NULL, nv);
    json_decref(nv);
    *out = resp;
    return 0;
}

/* Unregister: the VM leaves the inventory; the host keeps it (its files
 * and its key safes), and its KEK record stays so it can come back. */
int vms_unregister(manager *m, const char *user, const char *name, char uuid[40])
{
    json_t *old = NULL;
    char host[80];
    /* an unfinished task does not hold the VM in the inventory (its host
     * may be gone for good): it ends, the host keeps the VM as it is */
    vm_row v;
    int rc = get_vm_row(m, name, &v);
    if (rc < 0)
        return rc;
    if (tasks_open_for(m, v.uuid) && tasks_let_go(m, v.uuid) < 0)
        return own_failure();
    rc = vm_to_remove(m, name, &old, uuid, host);
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

/* Where a VM is: its uuid and host, and (encrypted not NULL) whether it is
 * encrypted (consoles.c, nics.c). */
int vms_locate(manager *m, const char *name, char uuid[40], char host[80], int *encrypted)
{
    vm_row v;
    int rc = get_vm_row(m, name, &v);
    if (rc < 0)
        return rc;
    snprintf(uuid, 40, "%s", v.uuid);
    snprintf(host, 80, "%s", v.host);
    if (encrypted)
        *encrypted = v.kek[0] != 0;
    return 0;
}

/* POST /vms/{name}/dump: the host writes the running guest's memory into the
 * VM home, sealed under the VM's KEK when it is encrypted (the host needs
 * the KEK: given once when it asks). */
int vms_dump(manager *m, const char *user, const char *name, json_t **out)
{
    *out = NULL;
    vm_row v;
    int rc = get_vm_row(m, name, &v);
    if (rc < 0)
        return rc;
    char path[128];
    snprintf(path, sizeof(path), "/v1/vms/%s/dump", v.uuid);
    json_t *resp = NULL, *body = json_object();
    rc = host_call_with_kek(m, &v, "POST", path, body, &resp);
    json_decref(body);
    if (rc < 0)
        return rc;
    json_t *nv = json_pack("{s:O?, s:O?}", "file", json_object_get(resp, "file"), "sealed",
                           json_object_get(resp, "sealed"));
    event_add(m, user, "vm.dump", name, NULL, nv);
    json_decref(nv);
    *out = resp;
    return 0;
}

/* POST /vms/{name}/clone {name, host?, deep?, kms?}: the powered-off VM
 * cloned on its host. The clone's row is reserved first (its name); an
 * encrypted source gives an encrypted clone under a KEK of its own, made on
 * the key provider (kms, else the source's) and pushed to the host with the
 * source's. The host copies the images and gives them new secrets (see
 * hostd_vm_clone); when it fails, the row goes and the new KEK is recorded
 * "unused": no half VM stays in the inventory. */
int vms_clone(manager *m, const char *user, const char *name, const json_t *req, json_t **out)
{
    *out = NULL;
    const char *new_name = json_string_value(json_object_get(req, "name"));
    const char *to_host = json_string_value(json_object_get(req, "host"));
    const char *kms = json_string_value(json_object_get(req, "kms"));
    int deep = json_is_true(json_object_get(req, "deep"));
    vm_row v;
    int rc = get_vm_row(m, name, &v);
    if (rc < 0)
        return rc;
    if (to_host && strcmp(to_host, v.host) != 0)
        return vmseal_fail(EINVAL, "VM %s is on host %s: its clone is made there (in the same "
                           "datastore)", name, v.host);
    int encrypted = v.kek[0] != '\0';
    if (deep && !encrypted)
        return vmseal_fail(EINVAL, "VM %s is not encrypted: deep is for an encrypted VM's clone", name);
    long long t = tasks_open_for(m, v.uuid);
    if (t)
        return vmseal_fail(EBUSY, "VM %s is busy with task %lld", name, t);
    int on = 0;
    rc = host_check(m, name, &v, &on);
    if (rc < 0)
        return rc;
    if (on)
        return vmseal_fail(EBUSY, on == 2 ? "VM %s is suspended: resume it (or discard its saved "
                                            "state) to clone it"
                                          : "VM %s must be powered off to clone it", name);
    store_rows *r = NULL;
    rc = store_execv(m->db, &r, "SELECT spec FROM vms WHERE uuid = $1", v.uuid, STORE_END);
    char *spec_s = rc >= 0 && store_rows_count(r) == 1 ? strdup(store_rows_get(r, 0, 0)) : NULL;
    store_rows_free(r);
    if (!spec_s)
        return own_failure();
    char uuid[37], now[32];
    if (vmseal_uuid_random(uuid) < 0) {
        free(spec_s);
        return vmseal_fail(EIO, "%s", vmseal_last_error());
    }
    snprintf(now, sizeof(now), "%lld", (long long)mgr_now());
    rc = store_execv(m->db, NULL,
                     "INSERT INTO vms (uuid, name, host, spec, policy, created, folder) "
                     "VALUES ($1, $2, $3, $4, 'none', $5, '')",
                     uuid, new_name, v.host, spec_s, now, STORE_END);
    free(spec_s);
    if (rc < 0)
        return rc == -EEXIST ? vmseal_fail(EEXIST, "a VM named %s exists already", new_name) : own_failure();
    char *provider = NULL, *kek_id = NULL;
    json_t *resp = NULL;
    if (encrypted) {
        /* the source's KEK opens its secrets on the host; the clone's wraps
         * the new ones */
        rc = hosts_push_key(m, v.host, v.prov, v.kek);
        if (rc < 0)
            rc = peer_failure();
        if (rc >= 0)
            rc = new_kek_for(m, kms ? kms : v.prov, uuid, new_name, v.host, &provider, &kek_id);
        if (rc < 0)
            goto undo;
    }
    json_t *body = json_pack("{s:s,s:s,s:s?,s:b}", "name", new_name, "uuid", uuid, "kek_id", kek_id,
                             "deep", deep);
    char path[128];
    snprintf(path, sizeof(path), "/v1/vms/%s/clone", v.uuid);
    rc = host_call_with_kek(m, &v, "POST", path, body, &resp);
    json_decref(body);
    json_decref(resp);
    if (rc < 0)
        goto undo;
    if (encrypted) {
        rc = store_execv(m->db, NULL,
                         "UPDATE vms SET policy = 'encrypted', kek_id = $2, provider = $3 WHERE uuid = $1",
                         uuid, kek_id, provider, STORE_END);
        if (rc >= 0)
            rc = set_kek_state(m, provider, kek_id, uuid, "active");
        if (rc < 0) {
            /* the clone is on the host: vm register takes it in */
            rc = own_failure();
            goto undo;
        }
    }
    json_t *nv = json_pack("{s:s,s:s,s:s,s:s,s:s?,s:s?,s:b}", "source", name, "source_uuid", v.uuid,
                           "uuid", uuid, "host", v.host, "kek_id", kek_id, "kms", provider, "deep",
                           deep);
    event_add(m, user, "vm.clone", new_name, NULL, nv);
    json_decref(nv);
    rc = vms_get(m, new_name, 0, out);
    free(provider);
    free(kek_id);
    return rc < 0 ? own_failure() : 0;
undo:;
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", vmseal_last_error());
    (void)store_execv(m->db, NULL, "DELETE FROM vms WHERE uuid = $1", uuid, STORE_END);
    (void)vmseal_fail(0, "%s", msg);
    if (kek_id)
        kek_unused(m, provider, kek_id, uuid);
    free(provider);
    free(kek_id);
    return rc < 0 ? rc : -EIO;
}

/* DELETE /vms/{name}/disks/{N}: the host removes the disk from vm.conf and
 * deletes its file (or keeps it); its key safe goes with vm.conf's entry. */
int vms_remove_disk(manager *m, const char *user, const char *name, int disk, int keep_file, json_t **out)
{
    *out = NULL;
    vm_row v;
    int rc = get_vm_row(m, name, &v);
    if (rc < 0)
        return rc;
    long long t = tasks_open_for(m, v.uuid);
    if (t)
        return vmseal_fail(EBUSY, "VM %s is busy with task %lld", name, t);
    char path[128];
    snprintf(path, sizeof(path), "/v1/vms/%s/disk-remove", v.uuid);
    json_t *body = json_pack("{s:i,s:b}", "disk", disk, "keep_file", keep_file);
    long status = 0;
    json_t *resp = NULL;
    rc = hosts_call(m, v.host, "POST", path, body, &status, &resp);
    json_decref(body);
    if (rc < 0)
        return peer_failure();
    if (status < 200 || status > 299) {
        rc = host_refused(v.host, status, resp);
        json_decref(resp);
        return rc;
    }
    json_decref(resp);
    /* the spec's disk list follows */
    store_rows *r = NULL;
    rc = store_execv(m->db, &r, "SELECT spec FROM vms WHERE uuid = $1", v.uuid, STORE_END);
    json_t *spec = rc >= 0 && store_rows_count(r) == 1 ? json_loads(store_rows_get(r, 0, 0), 0, NULL) : NULL;
    store_rows_free(r);
    json_t *disks = json_object_get(spec, "disks");
    if (json_is_array(disks) && (size_t)disk < json_array_size(disks)) {
        json_array_remove(disks, (size_t)disk);
        char *spec_s = json_dumps(spec, JSON_COMPACT | JSON_SORT_KEYS);
        if (spec_s)
            (void)store_execv(m->db, NULL, "UPDATE vms SET spec = $2 WHERE uuid = $1", v.uuid, spec_s, STORE_END);
        free(spec_s);
    }
    json_decref(spec);
    json_t *ov = json_pack("{s:i,s:b}", "disk", disk, "keep_file", keep_file);
    event_add(m, user, "vm.disk-remove", name, ov, NULL);
    json_decref(ov);
    rc = vms_get(m, name, 0, out);
    return rc < 0 ? own_failure() : 0;
}

/* POST /vms/{name}/cdrom and PATCH {boot}: forwarded to the host's
 * POST /v1/vms/{uuid}/{what}; the host checks the VM's state and the
 * values (an ISO opens beneath its images folder). An event `action`
 * with the body. */
int vms_host_setting(manager *m, const char *user, const char *name, const char *what,
                     const char *action, const json_t *body, json_t **out)
{
    *out = NULL;
    vm_row v;
    int rc = get_vm_row(m, name, &v);
    if (rc < 0)
        return rc;
    long long t = tasks_open_for(m, v.uuid);
    if (t)
        return vmseal_fail(EBUSY, "VM %s is busy with task %lld", name, t);
    char path[160];
    snprintf(path, sizeof(path), "/v1/vms/%s/%s", v.uuid, what);
    long status = 0;
    json_t *resp = NULL;
    rc = hosts_call(m, v.host, "POST", path, body, &status, &resp);
    if (rc < 0)
        return peer_failure();
    if (status < 200 || status > 299) {
        rc = host_refused(v.host, status, resp);
        json_decref(resp);
        return rc;
    }
    event_add(m, user, action, name, NULL, resp);
    *out = resp;
    return 0;
}

/* Snapshots (hostd/snapshot.h): list, create, revert, remove on the VM's
 * host. The KEK goes to the host first for an encrypted VM (the new
 * layers' secrets are wrapped by it; a revert may resume the guest). */
int vms_snapshot(manager *m, const char *user, const char *name, const char *action,
                 const char *snap, int memory, json_t **out)
{
    *out = NULL;
    int list = !strcmp(action, "list"), create = !strcmp(action, "create"),
        revert = !strcmp(action, "revert"), remove = !strcmp(action, "remove");
    if (!list && !create && !revert && !remove)
        return vmseal_fail(EINVAL, "no such action %s", action);
    if (!list && (!snap || !vmseal_vmrec_snap_name_valid(snap)))
        return vmseal_fail(EINVAL, "a snapshot name is 1..64 of [A-Za-z0-9._-], not starting "
                           "with '.' or '-'");
    vm_row v;
    int rc = get_vm_row(m, name, &v);
    if (rc < 0)
        return rc;
    if (!list) {
        long long busy = tasks_open_for(m, v.uuid);
        if (busy)
            return vmseal_fail(EBUSY, "VM %s is busy with task %lld", name, busy);
        if (v.kek[0] && hosts_push_key(m, v.host, v.prov, v.kek) < 0)
            return peer_failure();
    }
    char path[256];
    if (list || create)
        snprintf(path, sizeof(path), "/v1/vms/%s/snapshots", v.uuid);
    else
        snprintf(path, sizeof(path), "/v1/vms/%s/snapshots/%s%s", v.uuid, snap,
                 revert ? "/revert" : "");
    json_t *body = create ? json_pack("{s:s, s:b}", "name", snap, "memory", memory) : NULL;
    long status = 0;
    json_t *resp = NULL;
    rc = hosts_call_timeout(m, v.host, list ? "GET" : remove ? "DELETE" : "POST", path, body,
                            list ? 0 : 15L * 60 * 1000, &status, &resp);
    json_decref(body);
    if (rc < 0)
        return peer_failure();
    if (status < 200 || status > 299) {
        rc = host_refused(v.host, status, resp);
        json_decref(resp);
        return rc;
    }
    if (!list) {
        char ev[40];
        snprintf(ev, sizeof(ev), "vm.snapshot-%s", action);
        json_t *nv = json_pack("{s:s, s:b}", "snapshot", snap, "memory", memory);
        event_add(m, user, ev, name, NULL, nv);
        json_decref(nv);
    }
    *out = resp ? resp : json_pack("{s:[]}", "snapshots");
    return 0;
}
