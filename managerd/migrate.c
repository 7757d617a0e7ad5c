/* vmseal-managerd — live migration of a running VM to another host that
 * sees its datastore (docs/architecture.md, "Encrypted live migration").
 *
 * The manager makes a one-time 256-bit key and 64-bit nonce (RAND_bytes,
 * never the KMS: nothing outlives the migration), pushes the VM's KEK to
 * the destination (as a power-on does), asks the destination to receive
 * (POST /v1/vms/migrate-in: it adopts the VM folder, starts QEMU paused
 * and its receiving relay, and says its port), then the source to send
 * (POST /v1/vms/{uuid}/migrate-out: a host task). It follows the source's
 * task (progress into its own task row, action "migrate", state
 * "migrating" while it runs), waits for the destination's task (the guest
 * continued there), then tells the source (migrate-end: its QEMU ends and
 * it forgets the VM) and names the new host in the inventory; an event
 * vm.migrate records the old and the new host. Any failure before the
 * destination runs the guest: the source continues it (migrate-end
 * completed=false), the destination forgets the VM, the inventory keeps
 * the source. The key travels only inside the two request bodies over
 * mutual TLS (jansson's copies are wiped when freed:
 * vmseal_json_wipe_on_free); it is never in an event, a task or a log.
 *
 * A migrate task row is not one the watcher (tasks.c) drives: its state
 * "migrating" is not an open state; a manager restarted mid-migration
 * leaves it "migrating" and the hosts decide alone (the relay's timeout
 * fails a stalled stream; a source whose migration completed waits
 * paused for migrate-end: see docs/architecture.md). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <vmseal/common.h>
#include <vmseal/http_client.h>
#include <vmseal/secret.h>

#include "managerd.h"

#define MIG_WAIT_S 3600   /* the whole migration, at most */

typedef struct mig_job {
    manager *m;
    char user[128], name[80], uuid[40], from[80], to[80], kek[160], prov[80];
    char src_addr[256], dst_addr[256];
    long long task;
    vmseal_secret *key;   /* 32 bytes of key, 8 of nonce */
} mig_job;

/* "https://HOST:PORT[/]" -> HOST (no brackets for IPv6) */
static int host_address(manager *m, const char *host, char *out, size_t len)
{
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r, "SELECT url FROM hosts WHERE name = $1", host, STORE_END);
    if (rc < 0)
        return rc;
    const char *url = store_rows_count(r) ? store_rows_get(r, 0, 0) : NULL;
    rc = url ? 0 : vmseal_fail(ENOENT, "no host named %s", host);
    if (rc == 0) {
        const char *a = strncmp(url, "https://", 8) == 0 ? url + 8 : url;
        size_t n;
        if (*a == '[') {
            a++;
            n = strcspn(a, "]");
        } else {
            n = strcspn(a, ":/");
        }
        if (n == 0 || n >= len)
            rc = vmseal_fail(EINVAL, "host %s: no address in its URL", host);
        else
            snprintf(out, len, "%.*s", (int)n, a);
    }
    store_rows_free(r);
    return rc;
}

static int refused(const char *host, long status, const json_t *resp)
{
    int e = status == 409 ? EBUSY : status == 400 ? EINVAL : status == 404 ? ENOENT : EREMOTEIO;
    return vmseal_fail(e, "host %s: %s", host, vmseal_http_error_text(resp));
}

/* The spec for one side: key and nonce as hex, written straight into the
 * JSON strings (the hex text lives in a vmseal_secret meanwhile). */
static json_t *spec_json(const mig_job *j)
{
    static const char hx[] = "0123456789abcdef";
    vmseal_secret *t = vmseal_secret_new(2 * 40 + 2);
    if (!t)
        return NULL;
    char *k = (char *)vmseal_secret_data(t);
    const unsigned char *b = vmseal_secret_cdata(j->key);
    for (int i = 0; i < 40; i++) {
        k[2 * i] = hx[b[i] >> 4];
        k[2 * i + 1] = hx[b[i] & 15];
    }
    json_t *s = json_object();
    json_object_set_new(s, "key", json_stringn(k, 64));
    json_object_set_new(s, "nonce", json_stringn(k + 64, 16));
    vmseal_secret_free(t);
    return s;
}

static void task_set(manager *m, long long id, const char *state, int progress, const char *err)
{
    char ids[32], pg[16], now[32];
    snprintf(ids, sizeof(ids), "%lld", id);
    snprintf(pg, sizeof(pg), "%d", progress);
    snprintf(now, sizeof(now), "%lld", (long long)mgr_now());
    if (store_execv(m->db, NULL,
                    "UPDATE tasks SET state = $2, progress = $3, error = $4, updated = $5 WHERE id = $1",
                    ids, state, pg, err, now, STORE_END) < 0)
        mgr_log("task %lld: cannot record %s: %s", id, state, vmseal_last_error());
}

/* Wait for a host task: 0 success, -EIO failed (its error in last_error),
 * progress into our row (when row). */
static int follow(manager *m, const char *host, const char *hid, long long row, int timeout_s)
{
    char path[160];
    snprintf(path, sizeof(path), "/v1/tasks/%s", hid);
    int misses = 0;
    for (int waited = 0; waited < timeout_s * 4; waited++) {
        long status = 0;
        json_t *resp = NULL;
        int rc = hosts_call(m, host, "GET", path, NULL, &status, &resp);
        if (rc < 0 || status != 200) {
            json_decref(resp);
            /* a host that is gone: a few tries, then it failed */
            if (++misses >= 12)
                return vmseal_fail(EREMOTEIO, "host %s does not answer about its task %s", host, hid);
            usleep(250 * 1000);
            continue;
        }
        misses = 0;
        const char *st = json_string_value(json_object_get(resp, "state"));
        int pg = (int)json_integer_value(json_object_get(resp, "progress"));
        if (row && pg > 0)
            task_set(m, row, "migrating", pg > 99 ? 99 : pg, NULL);
        if (st && strcmp(st, "running") != 0) {
            int ok = strcmp(st, "success") == 0;
            if (!ok)
                vmseal_fail(EIO, "host %s: %s", host,
                            json_string_value(json_object_get(resp, "error"))
                                ? json_string_value(json_object_get(resp, "error"))
                                : st);
            json_decref(resp);
            return ok ? 0 : -EIO;
        }
        json_decref(resp);
        usleep(250 * 1000);
    }
    return vmseal_fail(ETIMEDOUT, "host %s: task %s did not end in %d s", host, hid, timeout_s);
}

static void end_source(manager *m, const mig_job *j, int completed)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/vms/%s/migrate-end", j->uuid);
    json_t *b = json_pack("{s:b}", "completed", completed);
    long status = 0;
    json_t *resp = NULL;
    if (hosts_call(m, j->from, "POST", path, b, &status, &resp) < 0 || status != 200)
        mgr_log("VM %s: host %s did not take migrate-end (completed %d): %s", j->name, j->from,
                completed, resp ? vmseal_http_error_text(resp) : vmseal_last_error());
    json_decref(b);
    json_decref(resp);
}

static void forget_on_dest(manager *m, const mig_job *j)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/vms/%s/release", j->uuid);
    long status = 0;
    json_t *resp = NULL;
    if (hosts_call(m, j->to, "POST", path, NULL, &status, &resp) == 0 && status != 200 &&
        status != 404)
        mgr_log("VM %s: host %s did not forget it after the failed migration: %s", j->name, j->to,
                vmseal_http_error_text(resp));
    json_decref(resp);
}

/* The migration itself (the API thread answered already). */
static int run(mig_job *j)
{
    manager *m = j->m;
    long status = 0;
    json_t *resp = NULL;
    char port_s[16] = "", src_task[64] = "", dst_task[64] = "";
    int rc = 0;
    int dest_started = 0;
    if (j->kek[0] && hosts_push_key(m, j->to, j->prov, j->kek) < 0) {
        rc = vmseal_fail(EREMOTEIO, "%s", vmseal_last_error());
        goto fail;
    }
    json_t *spec = spec_json(j);
    if (!spec) {
        rc = vmseal_fail(ENOMEM, "out of memory");
        goto fail;
    }
    char listen[300];
    snprintf(listen, sizeof(listen), "%s:0", j->dst_addr);
    json_object_set_new(spec, "listen", json_string(listen));
    json_object_set_new(spec, "peer", json_string(j->src_addr));
    json_t *body = json_pack("{s:s, s:s, s:o}", "name", j->name, "uuid", j->uuid, "spec", spec);
    rc = hosts_call(m, j->to, "POST", "/v1/vms/migrate-in", body, &status, &resp);
    json_decref(body);
    if (rc < 0 || status != 202) {
        rc = rc < 0 ? vmseal_fail(EREMOTEIO, "%s", vmseal_last_error()) : refused(j->to, status, resp);
        goto fail;
    }
    dest_started = 1;
    int port = (int)json_integer_value(json_object_get(resp, "port"));
    snprintf(port_s, sizeof(port_s), "%d", port);
    snprintf(dst_task, sizeof(dst_task), "%s",
             json_string_value(json_object_get(json_object_get(resp, "task"), "id"))
                 ? json_string_value(json_object_get(json_object_get(resp, "task"), "id"))
                 : "");
    json_decref(resp);
    resp = NULL;

    spec = spec_json(j);
    if (!spec) {
        rc = vmseal_fail(ENOMEM, "out of memory");
        goto fail;
    }
    char dest[300];
    snprintf(dest, sizeof(dest), strchr(j->dst_addr, ':') ? "[%s]:%d" : "%s:%d", j->dst_addr, port);
    json_object_set_new(spec, "dest", json_string(dest));
    body = json_pack("{s:o}", "spec", spec);
    char path[128];
    snprintf(path, sizeof(path), "/v1/vms/%s/migrate-out", j->uuid);
    rc = hosts_call(m, j->from, "POST", path, body, &status, &resp);
    json_decref(body);
    vmseal_secret_free(j->key);   /* both sides have it: the manager forgets it */
    j->key = NULL;
    if (rc < 0 || status != 202) {
        rc = rc < 0 ? vmseal_fail(EREMOTEIO, "%s", vmseal_last_error()) : refused(j->from, status, resp);
        goto fail;
    }
    snprintf(src_task, sizeof(src_task), "%s",
             json_string_value(json_object_get(resp, "id")) ? json_string_value(json_object_get(resp, "id"))
                                                             : "");
    json_decref(resp);
    resp = NULL;
    {
        char ids[32];
        snprintf(ids, sizeof(ids), "%lld", j->task);
        (void)store_execv(m->db, NULL, "UPDATE tasks SET host_task = $2 WHERE id = $1", ids, src_task,
                          STORE_END);
    }
    rc = follow(m, j->from, src_task, j->task, MIG_WAIT_S);
    if (rc < 0) {
        char msg[600];
        snprintf(msg, sizeof(msg), "%s", vmseal_last_error());
        end_source(m, j, 0);   /* the guest runs on there (continued if it was left paused) */
        rc = vmseal_fail(EIO, "%s", msg);
        goto fail;
    }
    /* the source sent everything: the destination loads it and continues */
    rc = dst_task[0] ? follow(m, j->to, dst_task, 0, 300) : vmseal_fail(EPROTO, "no destination task");
    if (rc < 0) {
        char msg[600];
        snprintf(msg, sizeof(msg), "the destination did not take over: %s", vmseal_last_error());
        end_source(m, j, 0);
        rc = vmseal_fail(EIO, "%s", msg);
        goto fail;
    }
    rc = store_execv(m->db, NULL, "UPDATE vms SET host = $2 WHERE uuid = $1", j->uuid, j->to, STORE_END);
    if (rc < 0)
        mgr_log("VM %s runs on %s but the inventory was not updated: %s", j->name, j->to,
                vmseal_last_error());
    end_source(m, j, 1);
    {
        /* the source's run ended: the destination's console log goes on */
        char p2[128];
        snprintf(p2, sizeof(p2), "/v1/vms/%s/migrate-end", j->uuid);
        json_t *b2 = json_pack("{s:b, s:b}", "completed", 1, "destination", 1);
        long st2 = 0;
        json_t *r2 = NULL;
        if (hosts_call(m, j->to, "POST", p2, b2, &st2, &r2) < 0 || st2 != 200)
            mgr_log("VM %s: host %s did not take migrate-end: %s", j->name, j->to,
                    r2 ? vmseal_http_error_text(r2) : vmseal_last_error());
        json_decref(b2);
        json_decref(r2);
    }
    task_set(m, j->task, "success", 100, NULL);
    json_t *ov = json_pack("{s:s}", "host", j->from);
    json_t *nv = json_pack("{s:s, s:s}", "host", j->to, "encrypted_stream", "aes-256-gcm");
    event_add(m, j->user, "vm.migrate", j->name, ov, nv);
    json_decref(ov);
    json_decref(nv);
    mgr_log("VM %s migrated from %s to %s", j->name, j->from, j->to);
    return 0;
fail:;
    char msg[700];
    snprintf(msg, sizeof(msg), "%s", vmseal_last_error());
    json_decref(resp);
    if (dest_started)
        forget_on_dest(m, j);
    task_set(m, j->task, "error", 0, msg);
    json_t *fo = json_pack("{s:s}", "host", j->from);
    json_t *fn = json_pack("{s:s, s:s}", "host", j->from, "wanted_host", j->to);
    event_record(m, j->user, "vm.migrate", j->name, fo, fn, "failed");
    json_decref(fo);
    json_decref(fn);
    mgr_log("VM %s: migration from %s to %s failed (it stays on %s): %s", j->name, j->from, j->to,
            j->from, msg);
    return rc;
}

static void *job_main(void *arg)
{
    mig_job *j = arg;
    (void)run(j);
    vmseal_secret_free(j->key);
    free(j);
    return NULL;
}

int vms_migrate(manager *m, const char *user, const char *name, const char *to, json_t **out)
{
    *out = NULL;
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r, "SELECT uuid, host, kek_id, provider FROM vms WHERE name = $1", name,
                         STORE_END);
    if (rc < 0)
        return rc;
    if (store_rows_count(r) == 0) {
        store_rows_free(r);
        return vmseal_fail(ENOENT, "no VM named %s", name);
    }
    mig_job *j = calloc(1, sizeof(*j));
    if (!j) {
        store_rows_free(r);
        return vmseal_fail(ENOMEM, "out of memory");
    }
    j->m = m;
    snprintf(j->user, sizeof(j->user), "%s", user);
    snprintf(j->name, sizeof(j->name), "%s", name);
    snprintf(j->to, sizeof(j->to), "%s", to);
    snprintf(j->uuid, sizeof(j->uuid), "%s", store_rows_get(r, 0, 0));
    snprintf(j->from, sizeof(j->from), "%s", store_rows_get(r, 0, 1));
    if (store_rows_get(r, 0, 2))
        snprintf(j->kek, sizeof(j->kek), "%s", store_rows_get(r, 0, 2));
    if (store_rows_get(r, 0, 3))
        snprintf(j->prov, sizeof(j->prov), "%s", store_rows_get(r, 0, 3));
    store_rows_free(r);
    r = NULL;
    if (!strcmp(j->from, j->to))
        rc = vmseal_fail(EALREADY, "VM %s is on host %s already", name, to);
    if (rc == 0)
        rc = host_address(m, j->to, j->dst_addr, sizeof(j->dst_addr));
    if (rc == 0)
        rc = host_address(m, j->from, j->src_addr, sizeof(j->src_addr));
    long long busy = rc == 0 ? tasks_open_for(m, j->uuid) : 0;
    if (busy)
        rc = vmseal_fail(EBUSY, "VM %s is busy with task %lld", name, busy);
    if (rc == 0) {
        rc = store_execv(m->db, &r, "SELECT id FROM tasks WHERE vm_uuid = $1 AND state = 'migrating'",
                         j->uuid, STORE_END);
        if (rc == 0 && store_rows_count(r))
            rc = vmseal_fail(EBUSY, "VM %s is migrating (task %s)", name, store_rows_get(r, 0, 0));
        store_rows_free(r);
        r = NULL;
    }
    /* the VM must run where the inventory says */
    if (rc == 0) {
        char path[128];
        snprintf(path, sizeof(path), "/v1/vms/%s", j->uuid);
        long status = 0;
        json_t *resp = NULL;
        rc = hosts_call(m, j->from, "GET", path, NULL, &status, &resp);
        if (rc < 0)
            rc = vmseal_fail(EREMOTEIO, "%s", vmseal_last_error());
        else if (status != 200)
            rc = refused(j->from, status, resp);
        else if (json_is_true(json_object_get(resp, "tpm")))
            /* swtpm's state does not travel in the stream yet: refused,
             * never a migration that would leave the vTPM behind */
            rc = vmseal_fail(EBUSY, "VM %s has a vTPM: live migration of a VM with a vTPM is not "
                                    "supported (docs/architecture.md)", name);
        else if (!json_is_string(json_object_get(resp, "power_state")) ||
                 strcmp(json_string_value(json_object_get(resp, "power_state")), "on") != 0)
            rc = vmseal_fail(EALREADY, "VM %s is not running (%s): only a running VM migrates", name,
                             json_string_value(json_object_get(resp, "power_state"))
                                 ? json_string_value(json_object_get(resp, "power_state"))
                                 : "?");
        json_decref(resp);
    }
    if (rc == 0) {
        /* one-time key and nonce: never from the KMS, never stored */
        j->key = vmseal_secret_new(40);
        if (!j->key || RAND_bytes(vmseal_secret_data(j->key), 40) != 1)
            rc = vmseal_fail(EIO, "no randomness for the migration key");
    }
    if (rc == 0) {
        char now[32];
        snprintf(now, sizeof(now), "%lld", (long long)mgr_now());
        json_t *params = json_pack("{s:s, s:s}", "from", j->from, "to", j->to);
        char *ps = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(params);
        rc = ps ? store_execv(m->db, &r,
                              "INSERT INTO tasks (vm_uuid, action, host, state, progress, user_name, params, "
                              "created, updated) VALUES ($1, 'migrate', $2, 'migrating', 0, $3, $4, $5, $5) "
                              "RETURNING id",
                              j->uuid, j->from, user, ps, now, STORE_END)
                : vmseal_fail(ENOMEM, "out of memory");
        free(ps);
        if (rc == 0 && store_rows_count(r))
            j->task = atoll(store_rows_get(r, 0, 0));
        else if (rc == 0)
            rc = vmseal_fail(EIO, "the task was not recorded");
        store_rows_free(r);
    }
    pthread_t th;
    if (rc == 0) {
        long long id = j->task;
        int e = pthread_create(&th, NULL, job_main, j);
        if (e != 0) {
            task_set(m, id, "error", 0, "cannot start a thread");
            rc = vmseal_fail(e, "cannot start a thread: %s", strerror(e));
        } else {
            pthread_detach(th);
            json_t *t = NULL;
            rc = tasks_get(m, id, &t);
            if (rc == 0)
                *out = json_pack("{s:o}", "task", t);
            return rc;
        }
    }
    vmseal_secret_free(j->key);
    free(j);
    return rc;
}
