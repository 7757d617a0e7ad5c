/* vmseal-managerd — KEKs on the key server, through the KMIP client
 * (include/vmseal/kmip_client.h): one KEK per encrypted VM, created as an
 * AES-256 key, tagged the way vCenter tags its keys (x-Vendor "vmseal",
 * x-Product, x-Identifier = VM UUID, x-Component "Virtual Machine",
 * x-Name = VM name), then activated. The manager records only the KEK's
 * identifier; key bytes pass through memory (vmseal_secret) on their way to
 * a host. Servers of a provider are tried in order (failover). keys_list:
 * the KEK ids recorded (GET /api/v1/keys). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmseal/common.h>

#include "managerd.h"
#include "vmseal_version.h"

#include <vmseal/kmip_client.h>

int keys_available(void)
{
    return 1;
}

static int open_client(manager *m, const char *provider, kms_conn *c, vmseal_kmip_client **out)
{
    int rc = kms_provider_conn(m, provider, c);
    if (rc < 0)
        return rc;
    if (!c->ca_file) {
        kms_conn_free(c);
        return vmseal_fail(EKEYREJECTED, "key provider %s is not trusted yet (vmseal kms trust %s)",
                           provider, provider);
    }
    if (!c->cert_file || !c->key_file) {
        kms_conn_free(c);
        return vmseal_fail(EKEYREJECTED,
                           "the manager has no client certificate for key provider %s "
                           "(vmseal kms csr / kms client-cert)", provider);
    }
    vmseal_kmip_client_config kc = {
        .servers = (const char *const *)c->servers,
        .n_servers = c->n_servers,
        .tls = {.cert_file = c->cert_file, .key_file = c->key_file, .ca_file = c->ca_file,
                .legacy_cbc_suites = 1},
        .connect_timeout_ms = m->cfg->kms_timeout_ms,
        .io_timeout_ms = m->cfg->kms_timeout_ms * 2,
    };
    rc = vmseal_kmip_client_new(&kc, out);
    if (rc < 0)
        kms_conn_free(c);
    return rc;
}

static int supports_add_attribute(vmseal_kmip_client *k)
{
    vmseal_kmip_server_info info;
    if (vmseal_kmip_query(k, &info) < 0)
        return 1;   /* no answer to Query: try, and report what happens */
    for (size_t i = 0; i < info.n_operations; i++)
        if (info.operations[i] == VMSEAL_KMIP_OP_ADD_ATTRIBUTE)
            return 1;
    return 0;
}

int keys_create_kek(manager *m, const char *provider, const char *vm_uuid, const char *vm_name,
                    char **kek_id)
{
    *kek_id = NULL;
    kms_conn c;
    vmseal_kmip_client *k = NULL;
    pthread_mutex_lock(&m->kms_lock);
    int rc = open_client(m, provider, &c, &k);
    if (rc < 0) {
        pthread_mutex_unlock(&m->kms_lock);
        return rc;
    }
    vmseal_kmip_create_opts o = {.bits = 256};
    char *uid = NULL;
    rc = vmseal_kmip_create_aes(k, &o, &uid);
    if (rc >= 0) {
        const vmseal_kmip_text_attr tags[] = {
            {"x-Vendor", "vmseal"},
            {"x-Product", "vmseal-managerd"},
            {"x-Product_Version", VMSEAL_VERSION_STRING},
            {"x-Component", "Virtual Machine"},
            {"x-Identifier", vm_uuid},
            {"x-Name", vm_name},
        };
        /* Servers that do not list AddAttribute in Query (pykmip-server)
         * get untagged keys: the tags are a courtesy to KMS administrators;
         * the manager keeps the VM <-> KEK map itself. */
        if (supports_add_attribute(k)) {
            rc = vmseal_kmip_add_attributes(k, uid, tags, sizeof(tags) / sizeof(tags[0]));
        } else {
            mgr_log("key provider %s: the server does not offer Add Attribute; KEK %s left untagged",
                    provider, uid);
        }
    }
    if (rc >= 0)
        rc = vmseal_kmip_activate(k, uid);
    if (rc >= 0) {
        mgr_log("key provider %s (%s): created KEK %s for VM %s (%s)", provider,
                vmseal_kmip_client_server(k) ? vmseal_kmip_client_server(k) : "?", uid, vm_name, vm_uuid);
        *kek_id = uid;
    } else {
        free(uid);
    }
    vmseal_kmip_client_free(k);
    kms_conn_free(&c);
    pthread_mutex_unlock(&m->kms_lock);
    return rc < 0 ? rc : 0;
}

int keys_get(manager *m, const char *provider, const char *kek_id, vmseal_secret **key)
{
    *key = NULL;
    kms_conn c;
    vmseal_kmip_client *k = NULL;
    pthread_mutex_lock(&m->kms_lock);
    int rc = open_client(m, provider, &c, &k);
    if (rc >= 0) {
        rc = vmseal_kmip_get_key(k, kek_id, key);
        vmseal_kmip_client_free(k);
        kms_conn_free(&c);
    }
    pthread_mutex_unlock(&m->kms_lock);
    if (rc < 0)
        return vmseal_fail(rc, "key provider %s: cannot get KEK %s: %s", provider, kek_id,
                           vmseal_last_error());
    return 0;
}

int keys_list(manager *m, const char *vm, json_t **out)
{
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r,
                         "SELECT k.kek_id, k.provider, k.vm_uuid, v.name, k.state, k.created FROM keks k "
                         "LEFT JOIN vms v ON v.uuid = k.vm_uuid WHERE $1 = '' OR v.name = $1 "
                         "ORDER BY k.created, k.kek_id",
                         vm ? vm : "", STORE_END);
    if (rc < 0)
        return rc;
    json_t *arr = json_array();
    for (size_t i = 0; i < store_rows_count(r); i++)
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:s?,s:s,s:I}", "kek_id", store_rows_get(r, i, 0),
                                             "kms", store_rows_get(r, i, 1), "vm_uuid", store_rows_get(r, i, 2),
                                             "vm", store_rows_get(r, i, 3), "state", store_rows_get(r, i, 4),
                                             "created", (json_int_t)atoll(store_rows_get(r, i, 5))));
    store_rows_free(r);
    *out = json_pack("{s:o}", "keys", arr);
    return 0;
}
