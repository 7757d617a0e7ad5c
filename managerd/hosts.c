/* vmseal-managerd — host agents (vmseal-hostd): registration, identity,
 * calls to them, and handing them KEKs.
 *
 * Trust: a host agent is identified by its TLS client certificate, which
 * must chain to the manager's host CA (managerd.conf `ca`, by default the
 * CA made by `vmseal-managerd init`; `vmseal-managerd issue-host NAME`
 * issues host certificates) and whose CN must equal the host name it
 * registers. The first registration pins the certificate's SHA-256
 * fingerprint; later host calls (hosts/self/...) are matched by it. Another
 * certificate for a known host (renewed, or stolen CA key) is not accepted
 * by itself: it waits until an administrator approves it (host
 * approve-cert, which revokes the old one). A revoked certificate
 * (host revoke-cert) never registers or gets a key again.
 * The manager calls hosts with its own certificate (clientAuth) and checks
 * the host's server certificate against host_ca.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <vmseal/common.h>
#include <vmseal/kekdelivery.h>

#include "managerd.h"

/* CN of an RFC 2253 subject ("CN=host-a,O=vmseal"). */
static int subject_cn(const char *subject, char *out, size_t len)
{
    const char *p = subject;
    while (p && *p) {
        if (strncmp(p, "CN=", 3) == 0) {
            p += 3;
            size_t n = 0;
            while (*p && *p != ',' && *p != '+' && n + 1 < len) {
                if (*p == '\\')
                    return -1;   /* escaped characters: not a valid host name anyway */
                out[n++] = *p++;
            }
            out[n] = '\0';
            return n > 0 ? 0 : -1;
        }
        p = strchr(p, ',');
        if (p)
            p++;
    }
    return -1;
}

int hosts_register(manager *m, const char *fingerprint, const char *subject, const json_t *body,
                   json_t **out)
{
    if (!fingerprint[0])
        return vmseal_fail(EACCES, "host agents authenticate with their client certificate");
    const char *name = json_string_value(json_object_get(body, "name"));
    const char *url = json_string_value(json_object_get(body, "url"));
    const char *ds = json_string_value(json_object_get(body, "datastore"));
    const char *custody = json_string_value(json_object_get(body, "custody_key"));
    uint8_t ck[VMSEAL_KD_PUB_LEN];
    if (vmseal_kd_unb64(custody, ck, sizeof(ck)) < 0)
        return vmseal_fail(EINVAL, "custody_key: base64 of the 32-byte key-custody public key");
    char cn[128];
    if (subject_cn(subject, cn, sizeof(cn)) < 0 || strcmp(cn, name) != 0)
        return vmseal_fail(EACCES, "certificate subject %s does not name host %s", subject,
                           name);
    if (strncmp(url, "https://", 8) != 0 || strpbrk(url, " \t\r\n"))
        return vmseal_fail(EINVAL, "url must be https://HOST:PORT");
    size_t ul = strlen(url);
    char base[600];
    snprintf(base, sizeof(base), "%.*s", (int)(url[ul - 1] == '/' ? ul - 1 : ul), url);
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r, "SELECT host FROM revoked_certs WHERE fingerprint = $1",
                         fingerprint, STORE_END);
    if (rc < 0)
        return rc;
    int revoked = store_rows_count(r) > 0;
    store_rows_free(r);
    char who[100];
    snprintf(who, sizeof(who), "host:%s", name);
    if (revoked) {
        json_t *nv = json_pack("{s:s,s:s}", "fingerprint", fingerprint, "reason", "revoked");
        event_record(m, who, "host.register", name, NULL, nv, "denied");
        json_decref(nv);
        return vmseal_fail(EACCES, "certificate %s of host %s was revoked", fingerprint, name);
    }
    r = NULL;
    rc = store_execv(m->db, &r, "SELECT url, datastore, fingerprint, pending_fingerprint FROM hosts WHERE name = $1",
                     name, STORE_END);
    if (rc < 0)
        return rc;
    json_t *old = NULL;
    char now[32];
    snprintf(now, sizeof(now), "%lld", (long long)mgr_now());
    if (store_rows_count(r) && strcmp(store_rows_get(r, 0, 2), fingerprint) != 0) {
        /* Another certificate for a known host: held for approval. */
        const char *pending = store_rows_get(r, 0, 3);
        int is_new = !pending || strcmp(pending, fingerprint) != 0;
        store_rows_free(r);
        if (is_new) {
            rc = store_execv(m->db, NULL,
                             "UPDATE hosts SET pending_fingerprint = $2, pending_subject = $3 WHERE name = $1", name,
                             fingerprint, subject, STORE_END);
            json_t *nv = json_pack("{s:s,s:s}", "pending_fingerprint", fingerprint, "subject",
                                   subject);
            event_record(m, who, "host.cert-pending", name, NULL, nv, "denied");
            json_decref(nv);
            if (rc < 0)
                return rc;
        }
        return vmseal_fail(EACCES,
                           "host %s registered with another certificate; this one (SHA-256 %s) waits for an "
                           "administrator: vmseal host approve-cert %s --fingerprint %s",
                           name, fingerprint, name, fingerprint);
    }
    if (store_rows_count(r)) {
        old = json_pack("{s:s,s:s,s:s}", "url", store_rows_get(r, 0, 0), "datastore",
                        store_rows_get(r, 0, 1), "fingerprint", store_rows_get(r, 0, 2));
        rc = store_execv(m->db, NULL,
                         "UPDATE hosts SET url = $2, datastore = $3, subject = $4, fingerprint = $5, "
                         "last_seen = $6, custody_key = $7 WHERE name = $1",
                         name, base, ds, subject, fingerprint, now, custody, STORE_END);
    } else {
        rc = store_execv(m->db, NULL,
                         "INSERT INTO hosts (name, url, datastore, subject, fingerprint, registered, "
                         "last_seen, custody_key) VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
                         name, base, ds, subject, fingerprint, now, custody, STORE_END);
    }
    store_rows_free(r);
    if (rc >= 0) {
        json_t *nv = json_pack("{s:s,s:s,s:s}", "url", base, "datastore", ds, "fingerprint",
                               fingerprint);
        int changed = !old || !json_equal(old, nv);
        if (changed)
            event_add(m, who, old ? "host.reregister" : "host.register", name, old, nv);
        json_decref(nv);
        *out = json_pack("{s:s,s:s,s:b}", "name", name, "fingerprint", fingerprint,
                         "registered", 1);
        /* a host that (re)starts: compare its VMs with the inventory now */
        tasks_reconcile_soon(m);
    }
    json_decref(old);
    return rc < 0 ? rc : 0;
}

int hosts_identify(manager *m, const char *fingerprint, const char *subject, char *out,
                   size_t outlen)
{
    if (!fingerprint[0])
        return vmseal_fail(EACCES, "host agents authenticate with their client certificate");
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r, "SELECT name FROM hosts WHERE fingerprint = $1",
                         fingerprint, STORE_END);
    if (rc < 0)
        return rc;
    if (store_rows_count(r) != 1) {
        store_rows_free(r);
        return vmseal_fail(EACCES, "this certificate (%s) belongs to no registered host; register first",
                           subject);
    }
    snprintf(out, outlen, "%s", store_rows_get(r, 0, 0));
    store_rows_free(r);
    char now[32];
    snprintf(now, sizeof(now), "%lld", (long long)mgr_now());
    (void)store_execv(m->db, NULL, "UPDATE hosts SET last_seen = $2 WHERE name = $1", out, now, STORE_END);
    return 0;
}

int hosts_list(manager *m, json_t **out)
{
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r,
                         "SELECT h.name, h.url, h.datastore, h.subject, h.fingerprint, h.registered, "
                         "h.last_seen, (SELECT COUNT(*) FROM vms v WHERE v.host = h.name), h.default_policy, "
                         "h.pending_fingerprint "
                         "FROM hosts h ORDER BY h.name",
                         STORE_END);
    if (rc < 0)
        return rc;
    json_t *arr = json_array();
    for (size_t i = 0; i < store_rows_count(r); i++)
        json_array_append_new(
            arr, json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:s,s:s?}", "name", store_rows_get(r, i, 0), "url",
                           store_rows_get(r, i, 1), "datastore", store_rows_get(r, i, 2), "subject",
                           store_rows_get(r, i, 3), "fingerprint", store_rows_get(r, i, 4), "registered",
                           (json_int_t)atoll(store_rows_get(r, i, 5)), "last_seen",
                           (json_int_t)atoll(store_rows_get(r, i, 6)), "vms",
                           (json_int_t)atoll(store_rows_get(r, i, 7)), "default_policy",
                           store_rows_get(r, i, 8), "pending_fingerprint", store_rows_get(r, i, 9)));
    store_rows_free(r);
    *out = json_pack("{s:o}", "hosts", arr);
    return 0;
}

int hosts_remove(manager *m, const char *actor, const char *name)
{
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r,
                         "SELECT url, fingerprint, (SELECT COUNT(*) FROM vms WHERE host = $1) FROM hosts "
                         "WHERE name = $1",
                         name, STORE_END);
    if (rc < 0)
        return rc;
    if (store_rows_count(r) == 0)
        rc = vmseal_fail(ENOENT, "no host named %s", name);
    else if (atoi(store_rows_get(r, 0, 2)) > 0)
        rc = vmseal_fail(EBUSY, "host %s still has %s VM(s)", name, store_rows_get(r, 0, 2));
    json_t *old = rc >= 0 ? json_pack("{s:s,s:s}", "url", store_rows_get(r, 0, 0), "fingerprint",
                                      store_rows_get(r, 0, 1))
                          : NULL;
    store_rows_free(r);
    if (rc >= 0)
        rc = store_execv(m->db, NULL, "DELETE FROM hosts WHERE name = $1", name, STORE_END);
    if (rc >= 0)
        event_add(m, actor, "host.remove", name, old, NULL);
    json_decref(old);
    return rc < 0 ? rc : 0;
}

int hosts_call(manager *m, const char *host, const char *method, const char *path,
               const json_t *body, long *status, json_t **resp)
{
    return hosts_call_timeout(m, host, method, path, body, 0, status, resp);
}

int hosts_call_timeout(manager *m, const char *host, const char *method, const char *path,
                       const json_t *body, long timeout_ms, long *status, json_t **resp)
{
    *status = 0;
    *resp = NULL;
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r, "SELECT url FROM hosts WHERE name = $1", host, STORE_END);
    if (rc < 0)
        return rc;
    if (store_rows_count(r) == 0) {
        store_rows_free(r);
        return vmseal_fail(ENOENT, "no host named %s", host);
    }
    char url[1200];
    snprintf(url, sizeof(url), "%s%s", store_rows_get(r, 0, 0), path);
    store_rows_free(r);
    vmseal_http_client_config cc = {
        .ca_file = m->cfg->host_ca_file,
        .cert_file = m->cfg->cert_file,
        .key_file = m->cfg->key_file,
        .timeout_ms = timeout_ms > m->cfg->host_timeout_ms ? timeout_ms : m->cfg->host_timeout_ms,
        .connect_timeout_ms = m->cfg->host_timeout_ms < 5000 ? m->cfg->host_timeout_ms : 5000,
    };
    vmseal_http_client *c = NULL;
    rc = vmseal_http_client_new(&cc, &c);
    if (rc < 0)
        return rc;
    rc = vmseal_http_call(c, method, url, body, status, resp);
    vmseal_http_client_free(c);
    if (rc < 0)
        return vmseal_fail(rc, "host %s: %s", host, vmseal_last_error());
    return 0;
}

/* A KEK sealed to the host's key-custody public key (kekdelivery.h), as
 * base64: the raw KEK never enters a JSON string or an ordinary heap
 * buffer; it lives in the vmseal_secret keys_get() made, freed at once. */
static int sealed_for(manager *m, const char *host, const char *provider, const char *kek_id,
                      const vmseal_secret *key, json_t **out)
{
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r, "SELECT custody_key FROM hosts WHERE name = $1", host, STORE_END);
    if (rc < 0)
        return rc;
    const char *ck = store_rows_get(r, 0, 0);
    uint8_t pub[VMSEAL_KD_PUB_LEN], blob[VMSEAL_KD_BLOB_LEN];
    char b64[4 * ((VMSEAL_KD_BLOB_LEN + 2) / 3) + 1];
    if (!ck || vmseal_kd_unb64(ck, pub, sizeof(pub)) < 0)
        rc = vmseal_fail(EPROTO, "host %s has not told its key-custody key: it cannot receive KEKs", host);
    store_rows_free(r);
    if (rc >= 0)
        rc = vmseal_kd_seal(pub, host, kek_id, provider, key, blob);
    if (rc >= 0)
        rc = vmseal_kd_b64(blob, sizeof(blob), b64, sizeof(b64));
    if (rc >= 0 && !(*out = json_string(b64)))
        rc = vmseal_fail(ENOMEM, "out of memory");
    return rc < 0 ? rc : 0;
}

int hosts_push_key(manager *m, const char *host, const char *provider, const char *kek_id)
{
    vmseal_secret *key = NULL;
    int rc = keys_get(m, provider, kek_id, &key);
    if (rc < 0)
        return rc;
    json_t *k = NULL;
    rc = sealed_for(m, host, provider, kek_id, key, &k);
    vmseal_secret_free(key);
    if (rc < 0)
        return rc;
    json_t *body = json_object();
    if (!body) {
        json_decref(k);
        return vmseal_fail(ENOMEM, "out of memory");
    }
    json_object_set_new(body, "sealed_key", k);
    /* key safes on the host are bound to the provider name */
    json_object_set_new(body, "provider", json_string(provider));
    char path[300];
    snprintf(path, sizeof(path), "/v1/keys/%s", kek_id);
    long status = 0;
    json_t *resp = NULL;
    rc = hosts_call(m, host, "PUT", path, body, &status, &resp);
    json_decref(body);
    if (rc >= 0 && (status < 200 || status > 299))
        rc = vmseal_fail(EIO, "host %s refused key %s: HTTP %ld: %s", host, kek_id, status,
                         vmseal_http_error_text(resp));
    json_decref(resp);
    /* A KEK handed to a host is a cryptographic operation: audited. */
    char object[96];
    snprintf(object, sizeof(object), "host:%s", host);
    json_t *nv = json_pack("{s:s,s:s}", "kek_id", kek_id, "kms", provider);
    event_record(m, "-", "key.push", object, NULL, nv, rc < 0 ? "failed" : "ok");
    json_decref(nv);
    return rc < 0 ? rc : 0;
}

int hosts_keys_for(manager *m, const char *host, const json_t *kek_ids, json_t **out)
{
    json_t *keys = json_array(), *denied = json_array(), *failed = json_array();
    size_t i, n = json_array_size(kek_ids);
    json_t *idv;
    /* Which ids this host may have, and their providers. */
    keys_want *want = calloc(n ? n : 1, sizeof(*want));
    char **prov = calloc(n ? n : 1, sizeof(*prov));
    if (!want || !prov) {
        free(want);
        free(prov);
        json_decref(keys);
        json_decref(denied);
        json_decref(failed);
        return vmseal_fail(ENOMEM, "out of memory");
    }
    size_t nw = 0;
    json_array_foreach(kek_ids, i, idv) {
        const char *id = json_string_value(idv);
        store_rows *r = NULL;
        /* Only what the host's VMs need: a VM's current KEK, a KEK being
         * put in place, and the KEKs of a VM while an operation on it runs.
         * Retired and unused KEKs are refused. */
        int rc = store_execv(m->db, &r,
                             "SELECT k.provider FROM keks k JOIN vms v ON v.uuid = k.vm_uuid "
                             "WHERE k.kek_id = $1 AND v.host = $2 AND (v.kek_id = k.kek_id "
                             "OR k.state IN ('active', 'pending') OR EXISTS (SELECT 1 FROM tasks t "
                             "WHERE t.vm_uuid = v.uuid AND t.state IN " TASKS_OPEN_SQL "))",
                             id, host, STORE_END);
        const char *provider = rc >= 0 ? store_rows_get(r, 0, 0) : NULL;
        if (!provider) {
            json_array_append_new(denied, json_string(id));
        } else {
            want[nw].kek_id = id;
            prov[nw++] = strdup(provider);
        }
        store_rows_free(r);
    }
    /* One batched fetch per provider. */
    keys_want *batch = calloc(nw ? nw : 1, sizeof(*batch));
    size_t *at = calloc(nw ? nw : 1, sizeof(*at));
    for (size_t a = 0; batch && at && a < nw; a++) {
        if (!prov[a] || want[a].rc == 1)
            continue;                     /* done with another provider's batch */
        size_t nb = 0;
        for (size_t b = a; b < nw; b++)
            if (prov[b] && want[b].rc != 1 && !strcmp(prov[a], prov[b])) {
                batch[nb] = (keys_want){.kek_id = want[b].kek_id};
                at[nb++] = b;
                want[b].rc = 1;
            }
        (void)keys_get_many(m, prov[a], batch, nb);
        for (size_t j = 0; j < nb; j++) {
            keys_want *w = &batch[j];
            const char *provider = prov[at[j]];
            if (w->rc < 0 || !w->key) {
                json_array_append_new(failed, json_pack("{s:s,s:s}", "kek_id", w->kek_id, "error",
                                                        w->error[0] ? w->error : "no key"));
                continue;
            }
            json_t *k = NULL;
            int rc = sealed_for(m, host, provider, w->kek_id, w->key, &k);
            vmseal_secret_free(w->key);
            w->key = NULL;
            if (rc < 0)
                json_array_append_new(failed, json_pack("{s:s,s:s}", "kek_id", w->kek_id, "error",
                                                        vmseal_last_error()));
            else
                json_array_append_new(keys, json_pack("{s:s,s:s,s:o}", "kek_id", w->kek_id, "provider",
                                                      provider, "sealed_key", k));
        }
    }
    if (!batch || !at)
        for (size_t a = 0; a < nw; a++)
            json_array_append_new(failed, json_pack("{s:s,s:s}", "kek_id", want[a].kek_id, "error",
                                                    "out of memory"));
    free(batch);
    free(at);
    for (size_t a = 0; a < nw; a++)
        free(prov[a]);
    free(prov);
    free(want);
    mgr_log("host %s asked for %zu KEK(s): %zu given, %zu denied, %zu failed", host,
            json_array_size(kek_ids), json_array_size(keys), json_array_size(denied),
            json_array_size(failed));
    if (json_array_size(kek_ids)) {
        char object[96];
        snprintf(object, sizeof(object), "host:%s", host);
        json_t *given = json_array();
        json_array_foreach(keys, i, idv)
            json_array_append(given, json_object_get(idv, "kek_id"));
        json_t *nv = json_pack("{s:o,s:O,s:I}", "given", given, "denied", denied, "failed",
                               (json_int_t)json_array_size(failed));
        event_record(m, host, "key.deliver", object, NULL, nv, json_array_size(denied) ? "denied" : "ok");
        json_decref(nv);
    }
    *out = json_pack("{s:o,s:o,s:o}", "keys", keys, "denied", denied, "failed", failed);
    return 0;
}

int hosts_set_default_policy(manager *m, const char *actor, const char *name, const char *policy)
{
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r, "SELECT default_policy FROM hosts WHERE name = $1", name, STORE_END);
    if (rc < 0)
        return rc;
    if (store_rows_count(r) == 0) {
        store_rows_free(r);
        return vmseal_fail(ENOENT, "no host named %s", name);
    }
    json_t *ov = json_pack("{s:s}", "default_policy", store_rows_get(r, 0, 0));
    store_rows_free(r);
    rc = store_execv(m->db, NULL, "UPDATE hosts SET default_policy = $2 WHERE name = $1", name, policy, STORE_END);
    if (rc >= 0) {
        json_t *nv = json_pack("{s:s}", "default_policy", policy);
        event_add(m, actor, "host.default-policy", name, ov, nv);
        json_decref(nv);
    }
    json_decref(ov);
    return rc < 0 ? rc : 0;
}

/* Approve the certificate a known host presented (pending): it becomes the
 * pinned one and the old one is revoked. fingerprint must match the pending
 * one, so the administrator approves what they saw. */
int hosts_approve_cert(manager *m, const char *actor, const char *name, const char *fingerprint)
{
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r, "SELECT fingerprint, pending_fingerprint, pending_subject FROM hosts WHERE name = $1",
                         name, STORE_END);
    if (rc < 0)
        return rc;
    if (store_rows_count(r) == 0) {
        store_rows_free(r);
        return vmseal_fail(ENOENT, "no host named %s", name);
    }
    const char *pending = store_rows_get(r, 0, 1);
    if (!pending) {
        store_rows_free(r);
        return vmseal_fail(ENOENT, "host %s has no certificate waiting for approval", name);
    }
    if (strcmp(pending, fingerprint) != 0) {
        rc = vmseal_fail(EINVAL, "the certificate waiting for host %s has another fingerprint (%s)", name, pending);
        store_rows_free(r);
        return rc;
    }
    char old[80], sub[512], now[32];
    snprintf(old, sizeof(old), "%s", store_rows_get(r, 0, 0));
    snprintf(sub, sizeof(sub), "%s", store_rows_get(r, 0, 2) ? store_rows_get(r, 0, 2) : "");
    store_rows_free(r);
    snprintf(now, sizeof(now), "%lld", (long long)mgr_now());
    if (old[0])
        rc = store_execv(m->db, NULL, "INSERT INTO revoked_certs (fingerprint, host, revoked) VALUES ($1, $2, $3)",
                         old, name, now, STORE_END);
    if (rc == -EEXIST)
        rc = 0;
    if (rc >= 0)
        rc = store_execv(m->db, NULL,
                         "UPDATE hosts SET fingerprint = $2, subject = $3, pending_fingerprint = NULL, "
                         "pending_subject = NULL WHERE name = $1",
                         name, fingerprint, sub, STORE_END);
    if (rc < 0)
        return rc;
    json_t *ov = json_pack("{s:s}", "fingerprint", old), *nv = json_pack("{s:s}", "fingerprint", fingerprint);
    event_add(m, actor, "host.approve-cert", name, ov, nv);
    json_decref(ov);
    json_decref(nv);
    return 0;
}

/* Revoke the host's pinned certificate: it can no longer call the manager
 * or get keys; a new certificate then needs approval. */
int hosts_revoke_cert(manager *m, const char *actor, const char *name)
{
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r, "SELECT fingerprint FROM hosts WHERE name = $1", name, STORE_END);
    if (rc < 0)
        return rc;
    if (store_rows_count(r) == 0) {
        store_rows_free(r);
        return vmseal_fail(ENOENT, "no host named %s", name);
    }
    char fp[80], now[32];
    snprintf(fp, sizeof(fp), "%s", store_rows_get(r, 0, 0));
    store_rows_free(r);
    if (!fp[0])
        return vmseal_fail(EEXIST, "host %s has no certificate in force", name);
    snprintf(now, sizeof(now), "%lld", (long long)mgr_now());
    rc = store_execv(m->db, NULL, "INSERT INTO revoked_certs (fingerprint, host, revoked) VALUES ($1, $2, $3)", fp,
                     name, now, STORE_END);
    if (rc == -EEXIST)
        rc = 0;
    if (rc >= 0)
        rc = store_execv(m->db, NULL, "UPDATE hosts SET fingerprint = '' WHERE name = $1", name, STORE_END);
    if (rc < 0)
        return rc;
    json_t *ov = json_pack("{s:s}", "fingerprint", fp);
    event_add(m, actor, "host.revoke-cert", name, ov, NULL);
    json_decref(ov);
    return 0;
}
