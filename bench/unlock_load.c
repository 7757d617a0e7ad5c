/* unlock-load: the manager's side of "a host restarts and asks for the KEKs
 * of all its encrypted VMs" (POST /hosts/self/keys), for N VMs, two ways in
 * one run against one vmseal-kmsd:
 *   anchor  the design before the pool: per KEK a new KMIP client (TCP +
 *           mutual TLS handshake), one Get, then sealing the KEK for the
 *           host, one after the other under one lock;
 *   vmseal  hosts_keys_for(): pooled connection, batched Gets (Get
 *           Attributes + Get per key, 16 keys per request), identity check,
 *           sealing.
 * Prints seconds and keys/s for each, and the ratio.
 * usage: unlock-load DIR KMS_ADDR CA CERT KEY N */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vmseal/kekdelivery.h>
#include <vmseal/kmip_client.h>

#include "managerd.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strdup(buf);
}

#define DIE(...) do { fprintf(stderr, "unlock-load: " __VA_ARGS__); fprintf(stderr, ": %s\n", vmseal_last_error()); exit(1); } while (0)

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: unlock-load DIR KMS_ADDR CA CERT KEY N\n");
        return 2;
    }
    const char *dir = argv[1], *kms = argv[2], *ca_path = argv[3], *cert_path = argv[4], *key_path = argv[5];
    int n = atoi(argv[6]);
    if (n < 1 || n > 100000)
        return 2;
    char db[4096], kmsdir[4096];
    snprintf(db, sizeof(db), "%s/mgr.db", dir);
    snprintf(kmsdir, sizeof(kmsdir), "%s/mgrkms", dir);
    mgr_config cfg = {.kms_dir = kmsdir, .kms_timeout_ms = 5000, .token_ttl_s = 60};
    manager m = {.cfg = &cfg};
    pthread_mutex_init(&m.lock, NULL);
    pthread_cond_init(&m.changed, NULL);
    if (keys_pool_init(&m) < 0 || store_open(db, &m.db) < 0 || auth_seed_roles(m.db) < 0)
        DIE("manager");
    json_t *req = json_pack("{s:s,s:[s]}", "name", "kp", "servers", kms);
    char *ca = slurp(ca_path), *cert = slurp(cert_path), *key = slurp(key_path);
    if (kms_provider_add(&m, "bench", req) < 0 || kms_provider_trust(&m, "bench", "kp", ca) < 0 ||
        kms_provider_client_cert(&m, "bench", "kp", cert, key) < 0)
        DIE("provider");
    json_decref(req);

    /* N VMs on one host, each with its KEK on the KMS */
    vmseal_kd_keypair *custody = NULL;
    uint8_t pub[VMSEAL_KD_PUB_LEN];
    char pub64[64];
    if (vmseal_kd_keypair_new(&custody) < 0)
        DIE("custody key");
    vmseal_kd_public(custody, pub);
    if (vmseal_kd_b64(pub, sizeof(pub), pub64, sizeof(pub64)) < 0 ||
        store_execv(m.db, NULL, "INSERT INTO hosts (name, url, datastore, subject, fingerprint, registered, "
                    "last_seen, custody_key) VALUES ('esx1', 'https://127.0.0.1:1', '/d', 'CN=esx1', 'f', 1, 1, $1)",
                    pub64, STORE_END) < 0)
        DIE("host");
    const char *servers[] = {kms};
    vmseal_kmip_client_config kc = {.servers = servers, .n_servers = 1,
                                    .tls = {.cert_file = cert_path, .key_file = key_path, .ca_file = ca_path}};
    vmseal_kmip_client *k = NULL;
    if (vmseal_kmip_client_new(&kc, &k) < 0)
        DIE("client");
    json_t *ids = json_array();
    double t0 = now_s();
    (void)store_execv(m.db, NULL, "BEGIN", STORE_END);
    for (int i = 0; i < n; i++) {
        char uuid[40], name[32], *uid = NULL;
        snprintf(uuid, sizeof(uuid), "00000000-0000-4000-8000-%012d", i);
        snprintf(name, sizeof(name), "vm%d", i);
        vmseal_kmip_create_opts o = {.bits = 256};
        vmseal_kmip_text_attr t = {"x-Identifier", uuid};
        if (vmseal_kmip_create_aes(k, &o, &uid) < 0 || vmseal_kmip_add_attributes(k, uid, &t, 1) < 0 ||
            vmseal_kmip_activate(k, uid) < 0)
            DIE("create key %d", i);
        if (store_execv(m.db, NULL, "INSERT INTO vms (uuid, name, host, spec, policy, kek_id, provider, created) "
                        "VALUES ($1, $2, 'esx1', '{}', 'encrypted', $3, 'kp', 1)", uuid, name, uid, STORE_END) < 0 ||
            store_execv(m.db, NULL, "INSERT INTO keks (kek_id, provider, vm_uuid, state, created) VALUES "
                        "($1, 'kp', $2, 'active', 1)", uid, uuid, STORE_END) < 0)
            DIE("record");
        json_array_append_new(ids, json_string(uid));
        free(uid);
    }
    (void)store_execv(m.db, NULL, "COMMIT", STORE_END);
    vmseal_kmip_client_free(k);
    fprintf(stderr, "setup: %d KEKs made and recorded in %.1f s\n", n, now_s() - t0);

    /* anchor: a new client (handshake) and one Get per KEK, then seal it */
    t0 = now_s();
    for (int i = 0; i < n; i++) {
        const char *uid = json_string_value(json_array_get(ids, (size_t)i));
        kms_conn c;
        vmseal_kmip_client *one = NULL;
        vmseal_secret *s = NULL;
        if (kms_provider_conn(&m, "kp", &c) < 0)
            DIE("conn");
        vmseal_kmip_client_config oc = {.servers = (const char *const *)c.servers, .n_servers = c.n_servers,
                                        .tls = {.cert_file = c.cert_file, .key_file = c.key_file,
                                                .ca_file = c.ca_file, .legacy_cbc_suites = 1}};
        if (vmseal_kmip_client_new(&oc, &one) < 0 || vmseal_kmip_get_key(one, uid, &s) < 0)
            DIE("anchor get %s", uid);
        uint8_t blob[VMSEAL_KD_BLOB_LEN];
        if (vmseal_kd_seal(pub, "esx1", uid, "kp", s, blob) < 0)
            DIE("seal");
        vmseal_secret_free(s);
        vmseal_kmip_client_free(one);
        kms_conn_free(&c);
    }
    double anchor = now_s() - t0;

    /* vmseal: what POST /hosts/self/keys does now */
    t0 = now_s();
    json_t *out = NULL;
    if (hosts_keys_for(&m, "esx1", ids, &out) < 0)
        DIE("hosts_keys_for");
    double ours = now_s() - t0;
    size_t given = json_array_size(json_object_get(out, "keys"));
    if (given != (size_t)n) {
        fprintf(stderr, "unlock-load: %zu of %d keys given: %s\n", given, n,
                json_dumps(json_object_get(out, "failed"), JSON_COMPACT));
        return 1;
    }
    json_decref(out);
    printf("%-48s %8.3f s %9.0f keys/s  x %.2f of anchor time\n", "anchor: per-KEK connection + Get + seal", anchor,
           n / anchor, 1.0);
    printf("%-48s %8.3f s %9.0f keys/s  x %.2f of anchor time\n", "vmseal: pooled, batched Get + check + seal", ours,
           n / ours, ours / anchor);
    json_decref(ids);
    vmseal_kd_keypair_free(custody);
    store_close(m.db);
    keys_pool_free(&m);
    free(ca);
    free(cert);
    free(key);
    return 0;
}
