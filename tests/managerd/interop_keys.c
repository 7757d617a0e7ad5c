/* The manager's KEK handling against a real key server (run by
 * test_kms_keys.sh with vmseal-kmsd, and by test_cli_pykmip.sh with
 * pykmip-server, which made the certificates and started the server):
 *   interop_keys DIR KMS_ADDR DEAD_ADDR CA CERT KEY kmsd|pykmip
 * (pykmip-server has no AddAttribute, so tags are only checked on kmsd)
 * A key provider with two servers [dead, live] is set up through the same
 * functions the API uses (add, trust, client certificate); then KEKs are
 * created for VMs (Create + AddAttribute tags + Activate, failing over past
 * the dead server), read back, and handed out to hosts only for the VMs
 * they run. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <vmseal/kekdelivery.h>
#include <vmseal/kmip_client.h>

#include "managerd.h"

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "interop_keys:%d: ", __LINE__);                     \
            fprintf(stderr, __VA_ARGS__);                                       \
            fprintf(stderr, " [last error: %s]\n", vmseal_last_error());        \
            exit(1);                                                            \
        }                                                                       \
    } while (0)

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    CHECK(f, "open %s", path);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strdup(buf);
}

static const char *text_attr(vmseal_ttlv *attrs, const char *name)
{
    const char *s = NULL;
    vmseal_ttlv *v = vmseal_kmip_attr_value(attrs, name, 0);
    if (!v || vmseal_ttlv_get_text(v, &s, NULL) < 0)
        return "";
    return s;
}

int main(int argc, char **argv)
{
    CHECK(argc == 8, "usage: interop_keys DIR KMS_ADDR DEAD_ADDR CA CERT KEY kmsd|pykmip");
    const char *dir = argv[1], *live = argv[2], *dead = argv[3];
    const char *ca_path = argv[4], *cert_path = argv[5], *key_path = argv[6];
    int tags = !strcmp(argv[7], "kmsd");
    vmseal_json_wipe_on_free();
    char db[4096], kmsdir[4096];
    snprintf(db, sizeof(db), "%s/mgr.db", dir);
    snprintf(kmsdir, sizeof(kmsdir), "%s/mgrkms", dir);
    mgr_config cfg = {.kms_dir = kmsdir, .kms_timeout_ms = 3000, .token_ttl_s = 60};
    manager m = {.cfg = &cfg};
    pthread_mutex_init(&m.lock, NULL);
    CHECK(keys_pool_init(&m) == 0, "key pool");
    pthread_cond_init(&m.changed, NULL);
    CHECK(store_open(db, &m.db) == 0, "store");
    CHECK(auth_seed_roles(m.db) == 0, "roles");
    CHECK(keys_available(), "this build has no KMIP client");

    json_t *req = json_pack("{s:s,s:[s,s]}", "name", "kp", "servers", dead, live);
    CHECK(kms_provider_add(&m, "tester", req) == 0, "provider add");
    json_decref(req);
    char *kid = NULL;
    CHECK(keys_create_kek(&m, "kp", "u", "n", &kid) == -EKEYREJECTED, "create before trust must fail");
    CHECK(strstr(vmseal_last_error(), "not trusted"), "message names the missing trust");
    char *ca = slurp(ca_path);
    CHECK(kms_provider_trust(&m, "tester", "kp", ca) == 0, "trust");
    CHECK(keys_create_kek(&m, "kp", "u", "n", &kid) == -EKEYREJECTED, "create without client cert must fail");
    CHECK(strstr(vmseal_last_error(), "client certificate"), "message names the missing certificate");
    char *cert = slurp(cert_path);
    char *key = slurp(key_path);
    CHECK(kms_provider_client_cert(&m, "tester", "kp", cert, key) == 0, "client cert");
    printf("ok - key provider [%s (down), %s] trusted both ways\n", dead, live);

    /* one KEK per VM, tagged like vCenter does */
    const char *uuid1 = "8c5d5d6a-6a4e-4e0f-9d57-0d4f9c0e1a01", *uuid2 = "8c5d5d6a-6a4e-4e0f-9d57-0d4f9c0e1a02";
    char *k1 = NULL, *k2 = NULL;
    CHECK(keys_create_kek(&m, "kp", uuid1, "vm-one", &k1) == 0, "create KEK 1");
    CHECK(keys_create_kek(&m, "kp", uuid2, "vm-two", &k2) == 0, "create KEK 2");
    CHECK(strcmp(k1, k2) != 0, "distinct ids");
    vmseal_secret *s1 = NULL, *s2 = NULL;
    CHECK(keys_get(&m, "kp", k1, &s1) == 0, "get KEK 1");
    CHECK(keys_get(&m, "kp", k2, &s2) == 0, "get KEK 2");
    CHECK(vmseal_secret_len(s1) == 32 && vmseal_secret_len(s2) == 32, "AES-256 KEKs");
    CHECK(vmseal_secret_cmp(s1, s2) != 0, "distinct keys");
    printf("ok - KEKs %s and %s created (failover past the dead server) and read back\n", k1, k2);

    /* the tags, read with our KMIP client as the manager identity */
    const char *servers[] = {live};
    vmseal_kmip_client_config kc = {.servers = servers, .n_servers = 1,
                                    .tls = {.cert_file = cert_path, .key_file = key_path,
                                            .ca_file = ca_path, .legacy_cbc_suites = 1}};
    vmseal_kmip_client *k = NULL;
    CHECK(vmseal_kmip_client_new(&kc, &k) == 0, "kmip client");
    vmseal_ttlv *attrs = NULL;
    CHECK(vmseal_kmip_get_attributes(k, k1, NULL, 0, &attrs) == 0, "get attributes");
    if (tags) {
    CHECK(!strcmp(text_attr(attrs, "x-Vendor"), "vmseal"), "x-Vendor = %s", text_attr(attrs, "x-Vendor"));
    CHECK(!strcmp(text_attr(attrs, "x-Product"), "vmseal-managerd"), "x-Product");
    CHECK(!strcmp(text_attr(attrs, "x-Component"), "Virtual Machine"), "x-Component");
    CHECK(!strcmp(text_attr(attrs, "x-Identifier"), uuid1), "x-Identifier = %s", text_attr(attrs, "x-Identifier"));
    CHECK(!strcmp(text_attr(attrs, "x-Name"), "vm-one"), "x-Name");
    }
    uint32_t state = 0;
    CHECK(vmseal_ttlv_get_enum(vmseal_kmip_attr_value(attrs, "State", 0), &state) == 0 && state == 2,
          "State is Active (%u)", state);
    vmseal_ttlv_free(attrs);
    if (tags) {
        /* Locate by the VM's UUID finds exactly its KEK */
        vmseal_kmip_text_attr want = {"x-Identifier", uuid2};
        vmseal_kmip_locate_filter f = {.attrs = &want, .n_attrs = 1};
        char **uids = NULL;
        size_t n = 0;
        CHECK(vmseal_kmip_locate(k, &f, &uids, &n) == 0, "locate");
        CHECK(n == 1 && !strcmp(uids[0], k2), "locate by x-Identifier found %zu", n);
        vmseal_kmip_uids_free(uids, n);
    }
    vmseal_kmip_client_free(k);
    printf(tags ? "ok - KEKs are Active and tagged x-Vendor/x-Product/x-Component/x-Identifier/x-Name\n"
                : "ok - KEKs are Active (this server has no AddAttribute: untagged)\n");

    /* hand-out: a host gets only the KEKs of the VMs it runs, sealed to
     * its key-custody key */
    const char *now = "1";
    vmseal_kd_keypair *custody = NULL;
    CHECK(vmseal_kd_keypair_new(&custody) == 0, "custody key pair");
    uint8_t cpub[VMSEAL_KD_PUB_LEN];
    char cpub64[64];
    vmseal_kd_public(custody, cpub);
    CHECK(vmseal_kd_b64(cpub, sizeof(cpub), cpub64, sizeof(cpub64)) == 0, "custody key base64");
    CHECK(store_execv(m.db, NULL, "INSERT INTO hosts (name, url, datastore, subject, fingerprint, registered, "
                      "last_seen, custody_key) VALUES ('esx1', 'https://127.0.0.1:1', '/d', 'CN=esx1', 'f1', $1, $1, $2)",
                      now, cpub64, STORE_END) == 1, "host");
    CHECK(store_execv(m.db, NULL, "INSERT INTO vms (uuid, name, host, spec, policy, kek_id, provider, created) "
                      "VALUES ($1, 'vm-one', 'esx1', '{}', 'encrypted', $2, 'kp', 1), "
                      "($3, 'vm-two', 'esx2', '{}', 'encrypted', $4, 'kp', 1)",
                      uuid1, k1, uuid2, k2, STORE_END) == 2, "vms");
    CHECK(store_execv(m.db, NULL, "INSERT INTO keks (kek_id, provider, vm_uuid, state, created) VALUES "
                      "($1, 'kp', $2, 'active', 1), ($3, 'kp', $4, 'active', 1)",
                      k1, uuid1, k2, uuid2, STORE_END) == 2, "keks");
    json_t *ids = json_pack("[s,s,s]", k1, k2, "no-such-kek");
    json_t *out = NULL;
    CHECK(hosts_keys_for(&m, "esx1", ids, &out) == 0, "keys for esx1");
    json_t *keys = json_object_get(out, "keys");
    CHECK(json_array_size(keys) == 1, "one key for esx1");
    json_t *k0 = json_array_get(keys, 0);
    CHECK(!strcmp(json_string_value(json_object_get(k0, "kek_id")), k1), "the key of vm-one");
    CHECK(json_object_get(k0, "key") == NULL, "no plain key in the answer");
    uint8_t blob[VMSEAL_KD_BLOB_LEN];
    vmseal_secret *opened = NULL;
    CHECK(vmseal_kd_unb64(json_string_value(json_object_get(k0, "sealed_key")), blob, sizeof(blob)) == 0,
          "sealed_key is 80 bytes of base64");
    CHECK(vmseal_kd_open(custody, "esx1", k1, "kp", blob, sizeof(blob), &opened) == 0, "the host opens it");
    CHECK(vmseal_secret_cmp(opened, s1) == 0, "the key bytes of KEK 1");
    vmseal_secret_free(opened);
    opened = NULL;
    CHECK(vmseal_kd_open(custody, "esx2", k1, "kp", blob, sizeof(blob), &opened) < 0, "bound to the host");
    vmseal_kd_keypair_free(custody);
    CHECK(json_array_size(json_object_get(out, "denied")) == 2, "KEK 2 (other host) and a bogus id denied");
    json_decref(out);
    json_decref(ids);
    printf("ok - a host gets only the KEKs of its own VMs\n");

    vmseal_secret_free(s2);
    CHECK(keys_get(&m, "kp", "999999", &s2) < 0, "an unknown KEK id fails");
    CHECK(strstr(vmseal_last_error(), "999999"), "message names the id");
    /* the manager's database holds only KEK ids, never key bytes */
    char hex[65];
    vmseal_hex_encode(vmseal_secret_cdata(s1), 32, hex);
    store_close(m.db);
    FILE *dbf = fopen(db, "rb");
    CHECK(dbf, "open db");
    static unsigned char buf[1 << 22];
    size_t got = fread(buf, 1, sizeof(buf), dbf);
    fclose(dbf);
    CHECK(!memmem(buf, got, vmseal_secret_cdata(s1), 32) && !memmem(buf, got, hex, 64), "key bytes in the database");
    printf("ok - the manager's database holds KEK ids only\n");
    vmseal_secret_free(s1);
    free(k1);
    free(k2);
    free(ca);
    free(cert);
    free(key);
    return 0;
}
