/* The manager's KMIP client against a key provider of two vmseal-kmsd
 * servers that do NOT share a store (the worst case a KMS cluster can be:
 * vCenter expects every server to hold every key, a misconfigured one does
 * not), as run by test_kms_cluster.sh:
 *   - KMIP Username/Password: none, wrong and right credentials;
 *   - a key held only by server 2 is found although server 1 answers first
 *     ("not found" there, or a key of the same id tagged for another VM:
 *     never taken);
 *   - 40 keys on both servers fetched in batches, bytes identical to what
 *     each server holds;
 *   - connections are pooled: 30 sequential Gets open no new connection;
 *   - server 1 killed: keys of server 2 still come, at once.
 * usage: interop_kms_cluster DIR NODE1 NODE2 CA CERT KEY PWFILE NODE1_PID */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <vmseal/kmip_client.h>
#include <vmseal/secret.h>

#include "managerd.h"

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);              \
            fprintf(stderr, __VA_ARGS__);                                     \
            fprintf(stderr, " (%s)\n", vmseal_last_error());                  \
            exit(1);                                                          \
        }                                                                     \
    } while (0)

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    CHECK(f, "open %s", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n && (buf[n - 1] == '\n'))
        buf[--n] = '\0';
    return strdup(buf);
}

static int sockets_open(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char p[300], t[300];
        snprintf(p, sizeof(p), "/proc/self/fd/%s", e->d_name);
        ssize_t l = readlink(p, t, sizeof(t) - 1);
        if (l > 0) {
            t[l] = '\0';
            n += !strncmp(t, "socket:", 7);
        }
    }
    closedir(d);
    return n;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static const char *ca_path, *cert_path, *key_path, *user = "manager";
static char *password;

/* A direct client of one server, as the KMS administrator would use it. */
static vmseal_kmip_client *direct(const char *addr)
{
    const char *servers[] = {addr};
    vmseal_kmip_client_config kc = {.servers = servers, .n_servers = 1,
                                    .tls = {.cert_file = cert_path, .key_file = key_path,
                                            .ca_file = ca_path},
                                    .username = user, .password = password};
    vmseal_kmip_client *k = NULL;
    CHECK(vmseal_kmip_client_new(&kc, &k) == 0, "kmip client");
    return k;
}

/* A key made on one server only, tagged for a VM; its id in *uid. */
static void make_key(vmseal_kmip_client *k, const char *vm_uuid, char **uid)
{
    vmseal_kmip_create_opts o = {.bits = 256};
    CHECK(vmseal_kmip_create_aes(k, &o, uid) == 0, "create");
    vmseal_kmip_text_attr t = {"x-Identifier", vm_uuid};
    CHECK(vmseal_kmip_add_attributes(k, *uid, &t, 1) == 0, "tag");
    CHECK(vmseal_kmip_activate(k, *uid) == 0, "activate");
}

static void record(manager *m, const char *kek, const char *vm_uuid)
{
    CHECK(store_execv(m->db, NULL, "INSERT INTO keks (kek_id, provider, vm_uuid, state, created) "
                      "VALUES ($1, 'kp', $2, 'active', 1)", kek, vm_uuid, STORE_END) == 1, "record %s", kek);
}

/* A key on this server whose id the manager had not recorded yet (servers
 * with small-integer ids hand out the same ids), recorded for vm_uuid. */
static char *fresh(manager *m, vmseal_kmip_client *k, const char *vm_uuid)
{
    for (int i = 0; i < 100; i++) {
        char *id = NULL;
        make_key(k, vm_uuid, &id);
        if (store_execv(m->db, NULL, "INSERT INTO keks (kek_id, provider, vm_uuid, state, created) "
                        "VALUES ($1, 'kp', $2, 'active', 1) ON CONFLICT DO NOTHING", id, vm_uuid, STORE_END) == 1)
            return id;
        free(id);
    }
    CHECK(0, "no fresh key id in 100 creates");
    return NULL;
}

static void same_bytes(vmseal_kmip_client *k, const char *uid, const vmseal_secret *got)
{
    vmseal_secret *want = NULL;
    CHECK(vmseal_kmip_get_key(k, uid, &want) == 0, "direct get %s", uid);
    CHECK(vmseal_secret_cmp(want, got) == 0, "KEK %s: the manager got other bytes than the server holds", uid);
    vmseal_secret_free(want);
}

int main(int argc, char **argv)
{
    CHECK(argc == 9, "usage: interop_kms_cluster DIR NODE1 NODE2 CA CERT KEY PWFILE NODE1_PID");
    const char *dir = argv[1], *n1 = argv[2], *n2 = argv[3];
    ca_path = argv[4];
    cert_path = argv[5];
    key_path = argv[6];
    password = slurp(argv[7]);
    pid_t node1_pid = (pid_t)atoi(argv[8]);
    vmseal_json_wipe_on_free();
    char db[4096], kmsdir[4096];
    snprintf(db, sizeof(db), "%s/mgr.db", dir);
    snprintf(kmsdir, sizeof(kmsdir), "%s/mgrkms", dir);
    mgr_config cfg = {.kms_dir = kmsdir, .kms_timeout_ms = 3000, .token_ttl_s = 60};
    manager m = {.cfg = &cfg};
    pthread_mutex_init(&m.lock, NULL);
    pthread_cond_init(&m.changed, NULL);
    CHECK(keys_pool_init(&m) == 0, "key pool");
    CHECK(store_open(db, &m.db) == 0, "store");
    CHECK(auth_seed_roles(m.db) == 0, "roles");

    json_t *req = json_pack("{s:s,s:[s,s]}", "name", "kp", "servers", n1, n2);
    CHECK(kms_provider_add(&m, "tester", req) == 0, "provider add");
    json_decref(req);
    char *ca = slurp(ca_path), *cert = slurp(cert_path), *key = slurp(key_path);
    CHECK(kms_provider_trust(&m, "tester", "kp", ca) == 0, "trust");
    CHECK(kms_provider_client_cert(&m, "tester", "kp", cert, key) == 0, "client cert");

    /* ---- credentials: none, wrong, right ---- */
    const char *vm_a = "11111111-2222-4333-8444-555555555501", *vm_b = "11111111-2222-4333-8444-555555555502";
    const char *vm_c = "11111111-2222-4333-8444-555555555503", *vm_d = "11111111-2222-4333-8444-555555555504";
    const char *vm_e = "11111111-2222-4333-8444-555555555505";
    char *kid = NULL;
    CHECK(keys_create_kek(&m, "kp", vm_a, "a", &kid) < 0, "create without credentials must fail");
    CHECK(strstr(vmseal_last_error(), "username and password"), "the reason is the missing credential");
    req = json_pack("{s:s,s:s}", "username", user, "password", "not-the-password");
    CHECK(kms_provider_patch(&m, "tester", "kp", req) == 0, "set wrong credentials");
    json_decref(req);
    CHECK(keys_create_kek(&m, "kp", vm_a, "a", &kid) < 0, "create with a wrong password must fail");
    CHECK(strstr(vmseal_last_error(), "wrong username or password"), "the reason is the wrong password");
    req = json_pack("{s:s,s:s}", "username", user, "password", password);
    CHECK(kms_provider_patch(&m, "tester", "kp", req) == 0, "set credentials");
    json_decref(req);
    CHECK(keys_create_kek(&m, "kp", vm_a, "a", &kid) == 0, "create with credentials");
    req = json_pack("{s:s,s:s}", "username", user, "password", "bad\ncontrol");
    CHECK(kms_provider_patch(&m, "tester", "kp", req) < 0, "a password with a newline is refused");
    json_decref(req);
    /* the password is in no event and not in the database */
    store_rows *r = NULL;
    CHECK(store_execv(m.db, &r, "SELECT COUNT(*) FROM events WHERE action = 'kms.credentials' AND "
                      "(old_value LIKE '%' || $1 || '%' OR new_value LIKE '%' || $1 || '%')", password,
                      STORE_END) >= 0, "events query");
    CHECK(!strcmp(store_rows_get(r, 0, 0), "0"), "the KMIP password appears in an event");
    store_rows_free(r);
    printf("ok - KMIP credentials: none and a wrong password refused by the servers, the right one works; "
           "the password is in no event\n");

    vmseal_kmip_client *k1 = direct(n1), *k2 = direct(n2);

    /* ---- a create that gets an id recorded for another VM ---- */
    {
        /* VM a's KEK has the id server 1 will hand out next (two stores
         * with small-integer ids, as in the issue) */
        char *probe_id = NULL;
        make_key(k1, vm_a, &probe_id);
        char next[32];
        snprintf(next, sizeof(next), "%lld", atoll(probe_id) + 1);
        free(probe_id);
        CHECK(store_execv(m.db, NULL, "INSERT INTO hosts (name, url, datastore, subject, fingerprint, registered, "
                          "last_seen) VALUES ('h', 'https://127.0.0.1:9', '/d', 'CN=h', 'fh', 1, 1)", STORE_END) == 1,
              "host h");
        CHECK(store_execv(m.db, NULL, "INSERT INTO vms (uuid, name, host, spec, policy, kek_id, provider, created) "
                          "VALUES ($1, 'vma', 'h', '{}', 'encrypted', $2, 'kp', 1)", vm_a, next, STORE_END) == 1, "vm a");
        record(&m, next, vm_a);
        json_t *creq = json_pack("{s:s,s:s}", "name", "vmb", "host", "h"), *cout = NULL;
        CHECK(vms_create(&m, "tester", creq, "encrypted", &cout) < 0, "the create must fail");
        CHECK(strstr(vmseal_last_error(), "recorded for another VM"), "the reason names the clash");
        json_decref(creq);
        store_rows *sr = NULL;
        CHECK(store_execv(m.db, &sr, "SELECT state, vm_uuid FROM keks WHERE provider = 'kp' AND kek_id = $1", next,
                          STORE_END) >= 0 && !strcmp(store_rows_get(sr, 0, 0), "active") &&
              !strcmp(store_rows_get(sr, 0, 1), vm_a), "VM a's KEK record is unchanged (%s)", store_rows_get(sr, 0, 0));
        store_rows_free(sr);
        sr = NULL;
        CHECK(store_execv(m.db, &sr, "SELECT COUNT(*) FROM vms WHERE name = 'vmb'", STORE_END) >= 0 &&
              !strcmp(store_rows_get(sr, 0, 0), "0"), "no VM b left behind");
        store_rows_free(sr);
        json_t *orph = NULL;
        CHECK(keys_orphans(&m, "kp", &orph) == 0, "orphans");
        int found = 0;
        size_t oi;
        json_t *ov;
        json_array_foreach(orph, oi, ov)
            found |= !strcmp(json_string_value(json_object_get(ov, "kek_id")), next) &&
                     !strcmp(json_string_value(json_object_get(ov, "server")), n1);
        CHECK(found, "the key made for VM b is listed as an orphan: %s", json_dumps(orph, JSON_COMPACT));
        json_decref(orph);
        CHECK(store_execv(m.db, NULL, "DELETE FROM vms WHERE name = 'vma'", STORE_END) == 1, "vm a rm");
        CHECK(store_execv(m.db, NULL, "DELETE FROM hosts WHERE name = 'h'", STORE_END) == 1, "host h rm");
        printf("ok - a create that gets a KEK id recorded for another VM fails without touching that VM's KEK; "
               "its key is an orphan\n");
    }

    /* ---- a key held by server 2 only ---- */
    char *on2 = NULL, *on1 = NULL;
    make_key(k2, vm_b, &on2);
    vmseal_secret *probe = NULL;
    int collision = vmseal_kmip_get_key(k1, on2, &probe) == 0;
    vmseal_secret_free(probe);
    if (!collision) {
        /* make server 1 hand out the same id for another VM's key, when its
         * ids are small integers as in old stores */
        for (int i = 0; i < 8 && !collision; i++) {
            free(on1);
            on1 = NULL;
            make_key(k1, vm_a, &on1);
            collision = !strcmp(on1, on2);
        }
    }
    record(&m, on2, vm_b);
    vmseal_secret *got = NULL;
    CHECK(keys_get(&m, "kp", on2, &got) == 0, "KEK %s held by server 2 only", on2);
    same_bytes(k2, on2, got);
    vmseal_secret_free(got);
    printf("ok - KEK %s of server 2 found past server 1 (%s)\n", on2,
           collision ? "which holds another VM's key of the same id: not taken" : "which does not have it");

    /* a key tagged for another VM than the one the manager recorded is never used */
    char *wrong = NULL;
    make_key(k2, vm_a, &wrong);
    record(&m, wrong, vm_b);
    CHECK(keys_get(&m, "kp", wrong, &got) == -EKEYREJECTED, "a key tagged for another VM must be refused");
    CHECK(strstr(vmseal_last_error(), vm_a) && strstr(vmseal_last_error(), vm_b),
          "the refusal names both VMs");
    printf("ok - a key tagged for VM a but recorded for VM b is refused\n");

    /* ---- 40 keys on both servers, in batches ---- */
    enum { NK = 40 };
    char *ids[NK];
    char vms[NK][40];
    keys_want want[NK];
    int recorded[NK];
    for (int i = 0; i < NK; i++) {
        snprintf(vms[i], sizeof(vms[i]), "11111111-2222-4333-8444-5555556%05d", i);
        make_key(i % 2 ? k2 : k1, vms[i], &ids[i]);
        /* servers with small-integer ids hand out the same ids: the manager
         * records an id once, for the first VM */
        recorded[i] = store_execv(m.db, NULL, "INSERT INTO keks (kek_id, provider, vm_uuid, state, created) "
                                  "VALUES ($1, 'kp', $2, 'active', 1) ON CONFLICT DO NOTHING", ids[i], vms[i],
                                  STORE_END) == 1;
    }
    for (int i = 0; i < NK; i++)
        want[i] = (keys_want){.kek_id = ids[i]};
    double t0 = now_s();
    CHECK(keys_get_many(&m, "kp", want, NK) == 0, "get many");
    double dt = now_s() - t0;
    int fetched = 0;
    for (int i = 0; i < NK; i++) {
        if (!recorded[i]) {
            vmseal_secret_free(want[i].key);
            continue;   /* an id another server uses for another VM */
        }
        CHECK(want[i].rc == 0, "key %s: %s", ids[i], want[i].error);
        same_bytes(i % 2 ? k2 : k1, ids[i], want[i].key);
        vmseal_secret_free(want[i].key);
        fetched++;
    }
    CHECK(fetched >= NK / 2, "only %d of %d keys", fetched, NK);
    printf("ok - %d keys spread over both servers fetched in batches in %.0f ms, bytes identical\n", fetched,
           dt * 1000);

    /* keys recorded for this part: one of server 1, two of server 2 */
    char *ka = fresh(&m, k1, vm_c), *kb = fresh(&m, k2, vm_d), *kc = fresh(&m, k2, vm_e);

    /* ---- pooled connections ---- */
    int before = sockets_open();
    for (int i = 0; i < 30; i++) {
        CHECK(keys_get(&m, "kp", i % 2 ? kb : ka, &got) == 0, "get %d", i);
        vmseal_secret_free(got);
    }
    int after = sockets_open();
    CHECK(after <= before + 1, "30 Gets left %d sockets open (before: %d)", after, before);
    printf("ok - 30 sequential Gets reuse pooled connections (%d sockets before, %d after)\n", before, after);

    /* ---- the end of a KEK's life ---- */
    const char *vm_gone = "11111111-2222-4333-8444-555555555510", *vm_live = "11111111-2222-4333-8444-555555555511";
    const char *vm_busy = "11111111-2222-4333-8444-555555555512";
    char *kgone = fresh(&m, k2, vm_gone), *klive = fresh(&m, k1, vm_live), *kbusy = fresh(&m, k2, vm_busy);
    CHECK(store_execv(m.db, NULL, "UPDATE keks SET state = 'retired' WHERE provider = 'kp' AND kek_id IN ($1, $2, $3)",
                      kgone, klive, kbusy, STORE_END) == 3, "retire");
    CHECK(store_execv(m.db, NULL, "INSERT INTO vms (uuid, name, host, spec, policy, kek_id, provider, created) "
                      "VALUES ($1, 'live', 'h', '{}', 'encrypted', $2, 'kp', 1)", vm_live, klive, STORE_END) == 1,
          "a VM still using its KEK");
    CHECK(store_execv(m.db, NULL, "INSERT INTO tasks (vm_uuid, action, host, state, progress, user_name, params, "
                      "created, updated) VALUES ($1, 'rekey', 'h', 'running', 0, 'u', '{}', 1, 1)", vm_busy,
                      STORE_END) == 1, "a running task");
    cfg.kek_destroy_grace_s = 3600;
    json_t *rep = NULL;
    CHECK(keys_retire_pass(&m, &rep) == 0, "pass with a grace period");
    CHECK(json_array_size(json_object_get(rep, "destroyed")) == 0, "nothing destroyed during the grace period");
    json_decref(rep);
    /* a registered host that does not answer stops the whole pass */
    CHECK(store_execv(m.db, NULL, "INSERT INTO hosts (name, url, datastore, subject, fingerprint, registered, "
                      "last_seen) VALUES ('esx-down', 'https://127.0.0.1:9', '/d', 'CN=esx-down', 'f', 1, 1)",
                      STORE_END) == 1, "host");
    cfg.kek_destroy_grace_s = 0;
    cfg.host_timeout_ms = 1000;
    CHECK(keys_retire_pass(&m, &rep) == -EREMOTEIO, "a host that cannot be asked stops the pass");
    CHECK(strstr(vmseal_last_error(), "esx-down"), "the reason names the host");
    vmseal_secret *still = NULL;
    CHECK(vmseal_kmip_get_key(k2, kgone, &still) == 0, "KEK kept while a host cannot be asked");
    vmseal_secret_free(still);
    CHECK(store_execv(m.db, NULL, "DELETE FROM hosts WHERE name = 'esx-down'", STORE_END) == 1, "host rm");
    CHECK(keys_retire_pass(&m, &rep) == 0, "pass");
    json_t *d = json_object_get(rep, "destroyed");
    CHECK(json_array_size(d) == 1 && !strcmp(json_string_value(json_object_get(json_array_get(d, 0), "kek_id")), kgone),
          "exactly the unused KEK destroyed: %s", json_dumps(rep, JSON_COMPACT));
    json_decref(rep);
    CHECK(vmseal_kmip_get_key(k2, kgone, &still) < 0, "the destroyed KEK cannot be read from its server");
    CHECK(vmseal_kmip_get_key(k1, klive, &still) == 0, "the KEK of a VM is kept");
    vmseal_secret_free(still);
    CHECK(vmseal_kmip_get_key(k2, kbusy, &still) == 0, "the KEK of a VM with a running task is kept");
    vmseal_secret_free(still);
    store_rows *st = NULL;
    CHECK(store_execv(m.db, &st, "SELECT state FROM keks WHERE provider = 'kp' AND kek_id = $1", kgone, STORE_END) >= 0 &&
          !strcmp(store_rows_get(st, 0, 0), "destroyed"), "recorded as destroyed");
    store_rows_free(st);
    st = NULL;
    CHECK(store_execv(m.db, &st, "SELECT COUNT(*) FROM events WHERE action = 'key.destroy' AND result = 'ok' AND "
                      "new_value LIKE '%' || $1 || '%'", vm_gone, STORE_END) >= 0 &&
          !strcmp(store_rows_get(st, 0, 0), "1"), "a key.destroy event");
    store_rows_free(st);
    printf("ok - a retired KEK is revoked and destroyed after the grace period; a VM's KEK, a KEK a running task "
           "needs and every KEK while a host cannot be asked are kept\n");

    /* ---- orphans: made by this manager, never recorded ---- */
    char *orphan = NULL;
    CHECK(keys_create_kek(&m, "kp", vm_gone, "lost", &orphan) == 0, "a key whose record is lost");
    char *foreign = NULL;
    make_key(k1, vm_gone, &foreign);   /* another manager's (no x-Manager of ours) */
    json_t *orph = NULL;
    CHECK(keys_orphans(&m, "kp", &orph) == 0, "orphans");
    int seen = 0;
    size_t oi;
    json_t *ov;
    json_array_foreach(orph, oi, ov) {
        seen += !strcmp(json_string_value(json_object_get(ov, "kek_id")), orphan);
        CHECK(strcmp(json_string_value(json_object_get(ov, "kek_id")), foreign) != 0 ||
              strcmp(json_string_value(json_object_get(ov, "server")), n1) != 0, "another manager's key listed");
    }
    CHECK(seen == 1, "the orphan %s is listed once: %s", orphan, json_dumps(orph, JSON_COMPACT));
    json_decref(orph);
    CHECK(keys_retire_pass(&m, &rep) == 0, "pass");
    CHECK(json_array_size(json_object_get(rep, "orphans_revoked")) >= 1, "orphan revoked: %s",
          json_dumps(rep, JSON_COMPACT));
    json_decref(rep);
    vmseal_kmip_client *ko = direct(n1);
    const char *sn[] = {"State"};
    vmseal_ttlv *oa = NULL;
    uint32_t ostate = 0;
    vmseal_kmip_client *holder = vmseal_kmip_get_attributes(ko, orphan, sn, 1, &oa) == 0 ? ko : k2;
    if (holder == k2)
        CHECK(vmseal_kmip_get_attributes(k2, orphan, sn, 1, &oa) == 0, "orphan attributes");
    CHECK(vmseal_ttlv_get_enum(vmseal_kmip_attr_value(oa, "State", 0), &ostate) == 0 &&
          ostate == VMSEAL_KMIP_STATE_DEACTIVATED, "the orphan is Deactivated (state %u)", ostate);
    vmseal_ttlv_free(oa);
    vmseal_kmip_client_free(ko);
    oa = NULL;
    CHECK(vmseal_kmip_get_attributes(k1, foreign, sn, 1, &oa) == 0 &&
          vmseal_ttlv_get_enum(vmseal_kmip_attr_value(oa, "State", 0), &ostate) == 0 &&
          ostate == VMSEAL_KMIP_STATE_ACTIVE, "another manager's key stays Active");
    vmseal_ttlv_free(oa);
    printf("ok - a key this manager made but never recorded is listed as an orphan and revoked; another "
           "manager's key is left alone\n");
    free(orphan);
    free(foreign);
    free(kgone);
    free(klive);
    free(kbusy);

    /* ---- server 1 killed ---- */
    vmseal_kmip_client_free(k1);
    CHECK(kill(node1_pid, SIGKILL) == 0, "kill server 1");
    usleep(200 * 1000);
    t0 = now_s();
    CHECK(keys_get(&m, "kp", kb, &got) == 0, "a key of server 2 with server 1 dead");
    same_bytes(k2, kb, got);
    vmseal_secret_free(got);
    dt = now_s() - t0;
    CHECK(dt < 1.0, "took %.2f s", dt);
    t0 = now_s();
    CHECK(keys_get(&m, "kp", kc, &got) == 0, "again");
    vmseal_secret_free(got);
    double dt2 = now_s() - t0;
    CHECK(dt2 < 1.0, "took %.2f s", dt2);
    CHECK(keys_get(&m, "kp", ka, &got) < 0, "a key only server 1 held cannot come");
    CHECK(strstr(vmseal_last_error(), ka), "the error names the key");
    printf("ok - server 1 killed: server 2's keys come in %.0f ms and %.0f ms; server 1's key fails: %s\n",
           dt * 1000, dt2 * 1000, vmseal_last_error());

    vmseal_kmip_client_free(k2);
    for (int i = 0; i < NK; i++)
        free(ids[i]);
    free(on1);
    free(on2);
    free(ka);
    free(kb);
    free(kc);
    free(wrong);
    free(kid);
    free(ca);
    free(cert);
    free(key);
    free(password);
    store_close(m.db);
    keys_pool_free(&m);
    return 0;
}
