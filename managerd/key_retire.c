/* vmseal-managerd — the end of a KEK's life, and keys nobody recorded.
 *
 * A KEK whose VM was deleted or decrypted, or that a rekey replaced
 * (state 'retired'), or that was made for an operation that never used it
 * ('unused'), is revoked (Cessation of Operation) and then destroyed on its
 * key provider — but only when nothing can still need it:
 *   - no VM in the inventory has it as its KEK, and no task on its VM is
 *     unfinished (TASKS_OPEN_SQL);
 *   - every registered host answered GET /v1/keys and none lists it among
 *     the KEKs its VMs' configurations name (current key safes, pending
 *     operations): one unreachable host stops the whole pass;
 *   - it has been in that state for kek_destroy_grace seconds (manager.conf,
 *     default 7 days), counted from the first pass that saw it so.
 * A key destroyed on the KMS is 'destroyed' in the inventory; each step is
 * an event (key.revoke / key.destroy, failed ones too).
 *
 * Orphans: keys the KMS holds with the vmseal tags and this manager's
 * x-Manager id but that the manager never recorded (a create whose answer
 * or record was lost) are listed by keys_orphans() and revoked by the pass
 * after the same grace (event key.orphan-revoke). Keys of other managers
 * and untagged keys are never touched. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vmseal/common.h>
#include <vmseal/diskdesc.h>
#include <vmseal/kmip_client.h>

#include "managerd.h"

/* KEKs the hosts' VMs name; NULL (error set) when a host did not answer. */
static json_t *hosts_needed(manager *m)
{
    store_rows *r = NULL;
    if (store_execv(m->db, &r, "SELECT name FROM hosts ORDER BY name", STORE_END) < 0)
        return NULL;
    json_t *needed = json_object();
    for (size_t i = 0; needed && i < store_rows_count(r); i++) {
        const char *host = store_rows_get(r, i, 0);
        long status = 0;
        json_t *resp = NULL;
        int rc = hosts_call(m, host, "GET", "/v1/keys", NULL, &status, &resp);
        json_t *ids = rc >= 0 && status == 200 ? json_object_get(resp, "needed") : NULL;
        if (!json_is_array(ids)) {
            vmseal_fail(EHOSTUNREACH, "host %s did not say which KEKs it needs%s%s", host,
                        rc < 0 ? ": " : "", rc < 0 ? vmseal_last_error() : "");
            json_decref(resp);
            json_decref(needed);
            needed = NULL;
            break;
        }
        size_t j;
        json_t *v;
        json_array_foreach(ids, j, v)
            if (json_is_string(v))
                json_object_set_new(needed, json_string_value(v), json_string(host));
        json_decref(resp);
    }
    store_rows_free(r);
    return needed;
}

/* Candidates first seen now are remembered; the ones whose grace is over
 * are returned (provider, kek_id, vm_uuid, state). */
static int due_candidates(manager *m, store_rows **due)
{
    char now[32], limit[32];
    long long t = (long long)mgr_now();
    snprintf(now, sizeof(now), "%lld", t);
    snprintf(limit, sizeof(limit), "%lld", t - m->cfg->kek_destroy_grace_s);
    /* forget what is no longer a candidate (e.g. a KEK put back in use) */
    int rc = store_execv(m->db, NULL,
                         "DELETE FROM kek_retire WHERE NOT EXISTS (SELECT 1 FROM keks k WHERE "
                         "k.provider = kek_retire.provider AND k.kek_id = kek_retire.kek_id AND "
                         "k.state IN ('retired', 'unused'))",
                         STORE_END);
    if (rc >= 0)
        rc = store_execv(m->db, NULL,
                         "INSERT INTO kek_retire (provider, kek_id, since) SELECT k.provider, k.kek_id, $1 "
                         "FROM keks k WHERE k.state IN ('retired', 'unused') AND NOT EXISTS (SELECT 1 FROM "
                         "kek_retire x WHERE x.provider = k.provider AND x.kek_id = k.kek_id)",
                         now, STORE_END);
    if (rc >= 0)
        rc = store_execv(m->db, due,
                         "SELECT k.provider, k.kek_id, k.vm_uuid, k.state FROM keks k JOIN kek_retire x ON "
                         "x.provider = k.provider AND x.kek_id = k.kek_id WHERE k.state IN ('retired', 'unused') "
                         "AND x.since <= $1 AND NOT EXISTS (SELECT 1 FROM vms v WHERE v.provider = k.provider "
                         "AND v.kek_id = k.kek_id) AND NOT EXISTS (SELECT 1 FROM tasks t WHERE "
                         "t.vm_uuid = k.vm_uuid AND t.state IN " TASKS_OPEN_SQL ") ORDER BY k.provider, k.kek_id",
                         limit, STORE_END);
    return rc < 0 ? rc : 0;
}

static void key_event(manager *m, const char *action, const char *provider, const char *kek_id,
                      const char *vm_uuid, const char *result, const char *error)
{
    json_t *nv = json_pack("{s:s,s:s,s:s?}", "kek_id", kek_id, "kms", provider, "vm_uuid", vm_uuid);
    if (error)
        json_object_set_new(nv, "error", json_string(error));
    char object[128];
    snprintf(object, sizeof(object), "kms:%s", provider);
    event_record(m, "-", action, object, NULL, nv, result);
    json_decref(nv);
}

static void revoke_orphans(manager *m, json_t *revoked);

int keys_retire_pass(manager *m, json_t **report)
{
    if (report)
        *report = NULL;
    store_rows *due = NULL;
    int rc = due_candidates(m, &due);
    if (rc < 0)
        return rc;
    json_t *destroyed = json_array(), *kept = json_array();
    if (store_rows_count(due) > 0) {
        json_t *needed = hosts_needed(m);
        if (!needed) {
            char why[400];
            snprintf(why, sizeof(why), "%s", vmseal_last_error());
            mgr_log("KEK clean-up skipped: %s", why);
            store_rows_free(due);
            json_decref(destroyed);
            json_decref(kept);
            return vmseal_fail(EREMOTEIO, "KEK clean-up skipped: %s", why);
        }
        for (size_t i = 0; i < store_rows_count(due); i++) {
            const char *provider = store_rows_get(due, i, 0), *kek = store_rows_get(due, i, 1);
            const char *vm = store_rows_get(due, i, 2);
            const char *host = json_string_value(json_object_get(needed, kek));
            if (host) {
                /* a host's VM still names it: the manager's view is behind */
                json_array_append_new(kept, json_pack("{s:s,s:s,s:s}", "kek_id", kek, "kms", provider,
                                                      "needed_by", host));
                continue;
            }
            int r2 = keys_revoke_destroy(m, provider, kek, vm, 1);
            if (r2 < 0) {
                key_event(m, "key.destroy", provider, kek, vm, "failed", vmseal_last_error());
                json_array_append_new(kept, json_pack("{s:s,s:s,s:s}", "kek_id", kek, "kms", provider,
                                                      "error", vmseal_last_error()));
                continue;
            }
            (void)store_execv(m->db, NULL, "UPDATE keks SET state = 'destroyed' WHERE provider = $1 AND "
                              "kek_id = $2", provider, kek, STORE_END);
            (void)store_execv(m->db, NULL, "DELETE FROM kek_retire WHERE provider = $1 AND kek_id = $2",
                              provider, kek, STORE_END);
            key_event(m, "key.destroy", provider, kek, vm, "ok", NULL);
            mgr_log("KEK %s of key provider %s revoked and destroyed (VM %s)", kek, provider, vm ? vm : "-");
            json_array_append_new(destroyed, json_pack("{s:s,s:s}", "kek_id", kek, "kms", provider));
        }
        json_decref(needed);
    }
    store_rows_free(due);
    json_t *orphans = json_array();
    revoke_orphans(m, orphans);
    if (report) {
        *report = json_pack("{s:o,s:o,s:o}", "destroyed", destroyed, "kept", kept, "orphans_revoked", orphans);
    } else {
        json_decref(destroyed);
        json_decref(kept);
        json_decref(orphans);
    }
    return 0;
}

/* The key's State on the connected server (0 when unknown). */
static uint32_t key_state(vmseal_kmip_client *k, const char *uid)
{
    const char *names[] = {"State"};
    vmseal_ttlv *attrs = NULL;
    uint32_t st = 0;
    if (vmseal_kmip_get_attributes(k, uid, names, 1, &attrs) == 0 &&
        vmseal_ttlv_get_enum(vmseal_kmip_attr_value(attrs, "State", 0), &st) < 0)
        st = 0;
    vmseal_ttlv_free(attrs);
    return st;
}

/* Revoke (Cessation of Operation) then, when destroy, Destroy, on the
 * server that holds the key tagged for vm_uuid (or untagged); a server
 * without it is skipped; "not found" everywhere counts as done. */
int keys_revoke_destroy(manager *m, const char *provider, const char *kek_id, const char *vm_uuid, int destroy)
{
    keys_lease l;
    int rc = keys_lease_get(m, provider, &l);
    if (rc < 0) {
        keys_lease_put(m, &l);
        return rc;
    }
    vmseal_kmip_client *k = keys_lease_client(&l);
    size_t n = vmseal_kmip_client_n_servers(k);
    int unreachable = 0;
    rc = 0;
    for (size_t s = 0; s < n && rc == 0; s++) {
        vmseal_kmip_get_item it = {.uid = kek_id};
        if (vmseal_kmip_client_connect_to(k, s) < 0 || vmseal_kmip_get_keys(k, &it, 1) < 0) {
            unreachable = 1;   /* a server down may hold the key */
            continue;
        }
        vmseal_secret_free(it.key);
        if (it.rc == -ENOENT)
            continue;
        if (it.identifier[0] && vm_uuid && strcmp(it.identifier, vm_uuid) != 0)
            continue;          /* another VM's key with this id */
        uint32_t st = key_state(k, kek_id);
        if (st == VMSEAL_KMIP_STATE_ACTIVE || st == VMSEAL_KMIP_STATE_PRE_ACTIVE)
            rc = vmseal_kmip_revoke(k, kek_id, VMSEAL_KMIP_REVOKE_CESSATION_OF_OPERATION,
                                    "vmseal-managerd: no VM uses this key any more");
        if (rc == 0 && destroy)
            rc = vmseal_kmip_destroy(k, kek_id);
        if (rc < 0)
            rc = vmseal_fail(rc, "key provider %s (%s): %s", provider,
                             vmseal_kmip_client_server_label(k, s), vmseal_last_error());
    }
    keys_lease_put(m, &l);
    if (rc == 0 && unreachable)
        return vmseal_fail(EHOSTUNREACH, "key provider %s: a server could not be asked for KEK %s", provider,
                           kek_id);
    return rc;
}

int keys_manager_id(manager *m, char id[40])
{
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r, "SELECT value FROM meta WHERE key = 'instance'", STORE_END);
    if (rc >= 0 && store_rows_get(r, 0, 0)) {
        snprintf(id, 40, "%s", store_rows_get(r, 0, 0));
        store_rows_free(r);
        return 0;
    }
    store_rows_free(r);
    if (rc < 0)
        return rc;
    char fresh[40];
    if ((rc = vmseal_uuid_random(fresh)) < 0)
        return rc;
    /* two threads may race here: the first insert wins, both read it back */
    (void)store_execv(m->db, NULL, "INSERT INTO meta (key, value) VALUES ('instance', $1) ON CONFLICT DO NOTHING",
                      fresh, STORE_END);
    rc = store_execv(m->db, &r, "SELECT value FROM meta WHERE key = 'instance'", STORE_END);
    if (rc >= 0 && store_rows_get(r, 0, 0))
        snprintf(id, 40, "%s", store_rows_get(r, 0, 0));
    else if (rc >= 0)
        rc = vmseal_fail(EIO, "store: no manager instance id");
    store_rows_free(r);
    return rc < 0 ? rc : 0;
}

int keys_orphans(manager *m, const char *provider, json_t **out)
{
    *out = NULL;
    char me[40];
    int rc = keys_manager_id(m, me);
    if (rc < 0)
        return rc;
    keys_lease l;
    rc = keys_lease_get(m, provider, &l);
    if (rc < 0) {
        keys_lease_put(m, &l);
        return rc;
    }
    vmseal_kmip_client *k = keys_lease_client(&l);
    json_t *arr = json_array();
    size_t n = vmseal_kmip_client_n_servers(k);
    for (size_t s = 0; s < n && rc >= 0; s++) {
        if (vmseal_kmip_client_connect_to(k, s) < 0) {
            rc = vmseal_fail(EHOSTUNREACH, "key provider %s: %s", provider, vmseal_last_error());
            break;
        }
        vmseal_kmip_text_attr want[] = {{"x-Vendor", "vmseal"}, {"x-Manager", me}};
        vmseal_kmip_locate_filter f = {.attrs = want, .n_attrs = 2};
        char **uids = NULL;
        size_t nu = 0;
        if ((rc = vmseal_kmip_locate(k, &f, &uids, &nu)) < 0) {
            rc = vmseal_fail(rc, "key provider %s (%s): Locate: %s", provider,
                             vmseal_kmip_client_server_label(k, s), vmseal_last_error());
            break;
        }
        for (size_t i = 0; i < nu; i++) {
            const char *names[] = {"x-Identifier", "State"};
            vmseal_ttlv *attrs = NULL;
            const char *vm = NULL;
            size_t tl = 0;
            uint32_t st = 0;
            if (vmseal_kmip_get_attributes(k, uids[i], names, 2, &attrs) == 0) {
                vmseal_ttlv *v = vmseal_kmip_attr_value(attrs, "x-Identifier", 0);
                if (!v || vmseal_ttlv_get_text(v, &vm, &tl) < 0)
                    vm = NULL;
                if (vmseal_ttlv_get_enum(vmseal_kmip_attr_value(attrs, "State", 0), &st) < 0)
                    st = 0;
            }
            char vmbuf[64] = "";
            if (vm && tl < sizeof(vmbuf))
                memcpy(vmbuf, vm, tl);
            /* recorded: this id for this key's VM (servers that hand out
             * the same ids: the id alone may be another VM's record) */
            store_rows *r = NULL;
            if (store_execv(m->db, &r, "SELECT 1 FROM keks WHERE provider = $1 AND kek_id = $2 AND "
                            "($3 = '' OR vm_uuid = $3)", provider, uids[i], vmbuf, STORE_END) >= 0 &&
                store_rows_count(r) == 0) {
                const char *sn = vmseal_kmip_enum_name(VMSEAL_KMIP_TAG_STATE, st);
                json_array_append_new(arr, json_pack("{s:s,s:s,s:s?,s:s?}", "kek_id", uids[i], "server",
                                                     vmseal_kmip_client_server_label(k, s), "vm_uuid",
                                                     vmbuf[0] ? vmbuf : NULL, "state", sn));
            }
            store_rows_free(r);
            vmseal_ttlv_free(attrs);
        }
        vmseal_kmip_uids_free(uids, nu);
    }
    keys_lease_put(m, &l);
    if (rc < 0) {
        json_decref(arr);
        return rc;
    }
    *out = arr;
    return 0;
}

/* Orphans seen for the grace period are revoked (not destroyed: if one
 * turns out to be needed, an administrator can still read it). */
static void revoke_orphans(manager *m, json_t *revoked)
{
    store_rows *p = NULL;
    if (store_execv(m->db, &p, "SELECT name FROM kms_providers ORDER BY name", STORE_END) < 0)
        return;
    char now[32], limit[32];
    long long t = (long long)mgr_now();
    snprintf(now, sizeof(now), "%lld", t);
    snprintf(limit, sizeof(limit), "%lld", t - m->cfg->kek_destroy_grace_s);
    for (size_t i = 0; i < store_rows_count(p); i++) {
        const char *provider = store_rows_get(p, i, 0);
        json_t *orphans = NULL;
        if (keys_orphans(m, provider, &orphans) < 0) {
            mgr_log("key provider %s: orphan scan skipped: %s", provider, vmseal_last_error());
            continue;
        }
        size_t j;
        json_t *o;
        json_array_foreach(orphans, j, o) {
            const char *kek = json_string_value(json_object_get(o, "kek_id"));
            const char *st = json_string_value(json_object_get(o, "state"));
            if (st && strcmp(st, "Active") != 0 && strcmp(st, "PreActive") != 0)
                continue;      /* revoked already */
            (void)store_execv(m->db, NULL, "INSERT INTO kek_retire (provider, kek_id, since) VALUES ($1, $2, $3) "
                              "ON CONFLICT DO NOTHING", provider, kek, now, STORE_END);
            store_rows *r = NULL;
            int due = store_execv(m->db, &r, "SELECT 1 FROM kek_retire WHERE provider = $1 AND kek_id = $2 "
                                  "AND since <= $3", provider, kek, limit, STORE_END) >= 0 &&
                      store_rows_count(r) == 1;
            store_rows_free(r);
            if (!due)
                continue;
            const char *vm = json_string_value(json_object_get(o, "vm_uuid"));
            int rc = keys_revoke_destroy(m, provider, kek, vm, 0);
            key_event(m, "key.orphan-revoke", provider, kek, vm, rc < 0 ? "failed" : "ok",
                      rc < 0 ? vmseal_last_error() : NULL);
            if (rc >= 0) {
                (void)store_execv(m->db, NULL, "DELETE FROM kek_retire WHERE provider = $1 AND kek_id = $2",
                                  provider, kek, STORE_END);
                json_array_append_new(revoked, json_pack("{s:s,s:s}", "kek_id", kek, "kms", provider));
            }
        }
        json_decref(orphans);
    }
    store_rows_free(p);
}

static void *retire_main(void *arg)
{
    manager *m = arg;
    for (;;) {
        pthread_mutex_lock(&m->lock);
        if (!m->stopping) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += m->cfg->kek_cleanup_interval_s;
            pthread_cond_timedwait(&m->changed, &m->lock, &ts);
        }
        int stop = m->stopping;
        pthread_mutex_unlock(&m->lock);
        if (stop)
            break;
        /* woken by every event too: run at most once per interval */
        static time_t last;
        time_t now = time(NULL);
        if (now - last < m->cfg->kek_cleanup_interval_s)
            continue;
        last = now;
        (void)keys_retire_pass(m, NULL);
    }
    return NULL;
}

int keys_retire_start(manager *m)
{
    int e = pthread_create(&m->retire_thread, NULL, retire_main, m);
    if (e != 0)
        return vmseal_fail(e, "cannot start the KEK clean-up");
    m->retire_thread_started = 1;
    return 0;
}

void keys_retire_stop(manager *m)
{
    if (!m->retire_thread_started)
        return;
    pthread_mutex_lock(&m->lock);
    m->stopping = 1;
    pthread_cond_broadcast(&m->changed);
    pthread_mutex_unlock(&m->lock);
    pthread_join(m->retire_thread, NULL);
    m->retire_thread_started = 0;
}

int keys_info(manager *m, const char *kek_id, const char *provider, json_t **out)
{
    *out = NULL;
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r,
                         "SELECT k.provider, k.vm_uuid, k.state, k.created, v.name, v.host, x.since FROM keks k "
                         "LEFT JOIN vms v ON v.uuid = k.vm_uuid LEFT JOIN kek_retire x ON x.provider = k.provider "
                         "AND x.kek_id = k.kek_id WHERE k.kek_id = $1 AND ($2 = '' OR k.provider = $2)",
                         kek_id, provider ? provider : "", STORE_END);
    if (rc < 0)
        return rc;
    if (store_rows_count(r) == 0) {
        store_rows_free(r);
        return vmseal_fail(ENOENT, "no KEK %s%s%s recorded", kek_id, provider ? " of key provider " : "",
                           provider ? provider : "");
    }
    if (store_rows_count(r) > 1) {
        store_rows_free(r);
        return vmseal_fail(EINVAL, "KEK id %s is recorded for several key providers: say which (kms=NAME)",
                           kek_id);
    }
    const char *prov = store_rows_get(r, 0, 0);
    /* VMs that use it as their KEK now, and tasks that still need it */
    json_t *used = json_array(), *tasks = json_array();
    store_rows *u = NULL;
    if (store_execv(m->db, &u, "SELECT name, host FROM vms WHERE provider = $1 AND kek_id = $2 ORDER BY name",
                    prov, kek_id, STORE_END) >= 0)
        for (size_t i = 0; i < store_rows_count(u); i++)
            json_array_append_new(used, json_pack("{s:s,s:s}", "vm", store_rows_get(u, i, 0), "host",
                                                  store_rows_get(u, i, 1)));
    store_rows_free(u);
    u = NULL;
    if (store_execv(m->db, &u, "SELECT id, action, state FROM tasks WHERE vm_uuid = $1 AND state IN " TASKS_OPEN_SQL,
                    store_rows_get(r, 0, 1), STORE_END) >= 0)
        for (size_t i = 0; i < store_rows_count(u); i++)
            json_array_append_new(tasks, json_pack("{s:s,s:s}", "id", store_rows_get(u, i, 0), "action",
                                                   store_rows_get(u, i, 1)));
    store_rows_free(u);
    const char *since = store_rows_get(r, 0, 6);
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:I,s:s?,s:s?,s:o,s:o}", "kek_id", kek_id, "kms", prov, "vm_uuid",
                          store_rows_get(r, 0, 1), "state", store_rows_get(r, 0, 2), "created",
                          (json_int_t)atoll(store_rows_get(r, 0, 3)), "vm", store_rows_get(r, 0, 4), "host",
                          store_rows_get(r, 0, 5), "used_by", used, "running_tasks", tasks);
    /* retired or unused: destroyed after the grace period counted from the
     * first clean-up pass that saw it so (from now when none has yet) */
    const char *state = store_rows_get(r, 0, 2);
    if (!strcmp(state, "retired") || !strcmp(state, "unused"))
        json_object_set_new(o, "destroy_after", json_integer((since ? atoll(since) : (long long)mgr_now()) +
                                                            m->cfg->kek_destroy_grace_s));
    store_rows_free(r);
    *out = o;
    return 0;
}
