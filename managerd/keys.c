/* vmseal-managerd — KEKs on the key server, through the KMIP client
 * (include/vmseal/kmip_client.h): one KEK per encrypted VM, created as an
 * AES-256 key, tagged the way vCenter tags its keys (x-Vendor "vmseal",
 * x-Product, x-Identifier = VM UUID, x-Component "Virtual Machine",
 * x-Name = VM name), then activated. The manager records only the KEK's
 * identifier; key bytes pass through memory (vmseal_secret) on their way to
 * a host. keys_list: the KEK ids recorded (GET /api/v1/keys).
 *
 * Connections: a small pool per key provider (KEYS_POOL_MAX KMIP clients,
 * each used by one thread at a time, kept open between calls), rebuilt when
 * the provider's settings change. A server that could not be reached is
 * skipped by new connections for KEYS_DOWN_SECONDS.
 *
 * A key is looked for on every server of the provider in turn: a server
 * that answers "not found" (a key made while it was down, on a cluster
 * that does not replicate) or holds a key of that id tagged for another VM
 * (two servers handing out the same id) is not the right one; the next
 * server is asked. Many keys are fetched in batches (Get Attributes of
 * x-Identifier + Get per key, one request per VMSEAL_KMIP_GET_BATCH keys). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vmseal/common.h>

#include "managerd.h"
#include "vmseal_version.h"

#include <vmseal/kmip_client.h>

#define KEYS_POOL_MAX 4
#define KEYS_DOWN_SECONDS 5
#define KEYS_SERVERS_MAX 16

typedef struct pool_client {
    vmseal_kmip_client *k;
    unsigned generation;
    struct pool_client *next;
} pool_client;

typedef struct pool_entry {
    char name[64];
    char config_id[65];
    unsigned generation;           /* bumped when the provider's settings change */
    pool_client *idle;
    int open;                      /* clients made and not freed (idle + lent) */
    time_t down_until[KEYS_SERVERS_MAX];
    struct pool_entry *next;
} pool_entry;

struct keys_pool {
    pthread_mutex_t mu;
    pthread_cond_t freed;
    pool_entry *entries;
};

int keys_available(void)
{
    return 1;
}

int keys_pool_init(manager *m)
{
    keys_pool *p = calloc(1, sizeof(*p));
    if (!p)
        return vmseal_fail(ENOMEM, "out of memory");
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->freed, NULL);
    m->kpool = p;
    return 0;
}

void keys_pool_free(manager *m)
{
    keys_pool *p = m->kpool;
    if (!p)
        return;
    for (pool_entry *e = p->entries, *en; e; e = en) {
        en = e->next;
        for (pool_client *c = e->idle, *cn; c; c = cn) {
            cn = c->next;
            vmseal_kmip_client_free(c->k);
            free(c);
        }
        free(e);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->freed);
    free(p);
    m->kpool = NULL;
}

static pool_entry *entry_for(keys_pool *p, const char *name)
{
    for (pool_entry *e = p->entries; e; e = e->next)
        if (!strcmp(e->name, name))
            return e;
    pool_entry *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    snprintf(e->name, sizeof(e->name), "%s", name);
    e->next = p->entries;
    p->entries = e;
    return e;
}

static void drop_idle(pool_entry *e)
{
    for (pool_client *c = e->idle, *cn; c; c = cn) {
        cn = c->next;
        vmseal_kmip_client_free(c->k);
        free(c);
        e->open--;
    }
    e->idle = NULL;
}

/* A connected client of this provider's pool: connected to the first server
 * in order that is not marked down, else to any that answers. */
typedef keys_lease lease;

vmseal_kmip_client *keys_lease_client(keys_lease *l)
{
    return l->pc ? l->pc->k : NULL;
}

static int check_conn(const char *provider, const kms_conn *c)
{
    if (!c->ca_file)
        return vmseal_fail(EKEYREJECTED, "key provider %s is not trusted yet (vmseal kms trust %s)",
                           provider, provider);
    if (!c->cert_file || !c->key_file)
        return vmseal_fail(EKEYREJECTED,
                           "the manager has no client certificate for key provider %s "
                           "(vmseal kms csr / kms client-cert)", provider);
    if (c->n_servers == 0 || c->n_servers > KEYS_SERVERS_MAX)
        return vmseal_fail(EINVAL, "key provider %s has %zu servers (1..%d)", provider, c->n_servers,
                           KEYS_SERVERS_MAX);
    return 0;
}

static int new_client(manager *m, const kms_conn *c, vmseal_kmip_client **out)
{
    vmseal_kmip_client_config kc = {
        .servers = (const char *const *)c->servers,
        .n_servers = c->n_servers,
        .tls = {.cert_file = c->cert_file, .key_file = c->key_file, .ca_file = c->ca_file,
                .legacy_cbc_suites = 1},
        .connect_timeout_ms = m->cfg->kms_timeout_ms,
        .io_timeout_ms = m->cfg->kms_timeout_ms * 2,
        .username = c->username,
        .password = c->password ? (const char *)vmseal_secret_cdata(c->password) : NULL,
    };
    return vmseal_kmip_client_new(&kc, out);
}

/* Connect k to the first server not marked down; mark the ones that fail. */
static int connect_live(keys_pool *p, pool_entry *e, vmseal_kmip_client *k)
{
    if (vmseal_kmip_client_current(k) >= 0)
        return 0;
    size_t n = vmseal_kmip_client_n_servers(k);
    time_t now = time(NULL);
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&p->mu);
        int down = e->down_until[i] > now;
        pthread_mutex_unlock(&p->mu);
        if (down)
            continue;
        if (vmseal_kmip_client_connect_to(k, i) == 0)
            return 0;
        pthread_mutex_lock(&p->mu);
        e->down_until[i] = now + KEYS_DOWN_SECONDS;
        pthread_mutex_unlock(&p->mu);
    }
    /* Every server is marked down: try them all once more, in order. */
    int rc = vmseal_kmip_client_connect(k);
    if (rc == 0) {
        pthread_mutex_lock(&p->mu);
        e->down_until[vmseal_kmip_client_current(k)] = 0;
        pthread_mutex_unlock(&p->mu);
    }
    return rc;
}

int keys_lease_get(manager *m, const char *provider, keys_lease *l)
{
    memset(l, 0, sizeof(*l));
    keys_pool *p = m->kpool;
    kms_conn c;
    int rc = kms_provider_conn(m, provider, &c);
    if (rc < 0)
        return rc;
    if ((rc = check_conn(provider, &c)) < 0) {
        kms_conn_free(&c);
        return rc;
    }
    pthread_mutex_lock(&p->mu);
    pool_entry *e = entry_for(p, provider);
    if (!e) {
        pthread_mutex_unlock(&p->mu);
        kms_conn_free(&c);
        return vmseal_fail(ENOMEM, "out of memory");
    }
    if (strcmp(e->config_id, c.config_id) != 0) {
        /* New settings (servers, certificates, credentials): old clients go. */
        drop_idle(e);
        e->generation++;
        memset(e->down_until, 0, sizeof(e->down_until));
        snprintf(e->config_id, sizeof(e->config_id), "%s", c.config_id);
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 2 * (m->cfg->kms_timeout_ms / 1000 + 1);
    while (!e->idle && e->open >= KEYS_POOL_MAX) {
        if (pthread_cond_timedwait(&p->freed, &p->mu, &until) != 0 && !e->idle && e->open >= KEYS_POOL_MAX) {
            pthread_mutex_unlock(&p->mu);
            kms_conn_free(&c);
            return vmseal_fail(EBUSY, "key provider %s: all %d connections are busy", provider,
                               KEYS_POOL_MAX);
        }
    }
    l->entry = e;
    if (e->idle) {
        l->pc = e->idle;
        e->idle = l->pc->next;
        pthread_mutex_unlock(&p->mu);
        kms_conn_free(&c);
    } else {
        e->open++;
        unsigned gen = e->generation;
        pthread_mutex_unlock(&p->mu);
        l->pc = calloc(1, sizeof(*l->pc));
        rc = l->pc ? new_client(m, &c, &l->pc->k) : vmseal_fail(ENOMEM, "out of memory");
        kms_conn_free(&c);
        if (rc < 0) {
            free(l->pc);
            l->pc = NULL;
            pthread_mutex_lock(&p->mu);
            e->open--;
            pthread_cond_signal(&p->freed);
            pthread_mutex_unlock(&p->mu);
            return rc;
        }
        l->pc->generation = gen;
    }
    rc = connect_live(p, e, l->pc->k);
    return rc < 0 ? vmseal_fail(rc, "key provider %s: %s", provider, vmseal_last_error()) : 0;
}

/* Back to the pool (or freed when its provider changed meanwhile). A
 * client is kept even when its last call failed: it reconnects on demand. */
void keys_lease_put(manager *m, keys_lease *l)
{
    keys_pool *p = m->kpool;
    if (!l->pc)
        return;
    pthread_mutex_lock(&p->mu);
    pool_entry *e = l->entry;
    if (l->pc->generation == e->generation) {
        l->pc->next = e->idle;
        e->idle = l->pc;
        l->pc = NULL;
    } else {
        e->open--;
    }
    pthread_cond_signal(&p->freed);
    pthread_mutex_unlock(&p->mu);
    if (l->pc) {
        vmseal_kmip_client_free(l->pc->k);
        free(l->pc);
        l->pc = NULL;
    }
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
    lease l;
    int rc = keys_lease_get(m, provider, &l);
    if (rc < 0) {
        keys_lease_put(m, &l);
        return rc;
    }
    vmseal_kmip_client *k = l.pc->k;
    char me[40];
    if ((rc = keys_manager_id(m, me)) < 0) {
        keys_lease_put(m, &l);
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
            {"x-Manager", me},     /* which manager made it: its orphans are its own */
        };
        /* Servers that do not list AddAttribute in Query (pykmip-server)
         * get untagged keys: the tags are a courtesy to KMS administrators
         * and the identity check of keys_get(); the manager keeps the
         * VM <-> KEK map itself. */
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
    keys_lease_put(m, &l);
    return rc < 0 ? rc : 0;
}

/* The VM a recorded KEK belongs to ("" when the manager has no record). */
static void kek_owner(manager *m, const char *provider, const char *kek_id, char *uuid, size_t len)
{
    uuid[0] = '\0';
    store_rows *r = NULL;
    if (store_execv(m->db, &r, "SELECT vm_uuid FROM keks WHERE provider = $1 AND kek_id = $2", provider,
                    kek_id, STORE_END) >= 0 &&
        store_rows_get(r, 0, 0))
        snprintf(uuid, len, "%s", store_rows_get(r, 0, 0));
    store_rows_free(r);
}

int keys_get_many(manager *m, const char *provider, keys_want *want, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        want[i].key = NULL;
        want[i].rc = -ENOENT;
        want[i].error[0] = '\0';
        want[i].server[0] = '\0';
    }
    if (n == 0)
        return 0;
    lease l;
    int rc = keys_lease_get(m, provider, &l);
    if (rc < 0) {
        keys_lease_put(m, &l);
        for (size_t i = 0; i < n; i++) {
            want[i].rc = rc;
            snprintf(want[i].error, sizeof(want[i].error), "%s", vmseal_last_error());
        }
        return rc;
    }
    vmseal_kmip_client *k = l.pc->k;
    size_t nserv = vmseal_kmip_client_n_servers(k);
    vmseal_kmip_get_item *items = calloc(n, sizeof(*items));
    size_t *idx = calloc(n, sizeof(*idx));
    char (*owner)[64] = calloc(n, sizeof(*owner));
    unsigned char tried[KEYS_SERVERS_MAX] = {0};
    if (!items || !idx || !owner) {
        rc = vmseal_fail(ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        kek_owner(m, provider, want[i].kek_id, owner[i], sizeof(owner[i]));
    /* Ask the connected server for every key still missing, then the next
     * server for what it did not have, until all servers were asked. */
    for (size_t round = 0; round < nserv; round++) {
        size_t m_missing = 0;
        for (size_t i = 0; i < n; i++)
            if (!want[i].key)
                idx[m_missing++] = i;
        if (!m_missing)
            break;
        int cur = vmseal_kmip_client_current(k);
        if (cur < 0 || tried[cur]) {
            cur = -1;
            for (size_t s = 0; s < nserv && cur < 0; s++)
                if (!tried[s]) {
                    tried[s] = 1;
                    if (vmseal_kmip_client_connect_to(k, s) == 0) {
                        cur = (int)s;
                    } else {
                        for (size_t j = 0; j < m_missing; j++) {
                            keys_want *w = &want[idx[j]];
                            if (w->rc == -ENOENT || w->rc == 0) {
                                w->rc = -EHOSTUNREACH;
                                snprintf(w->error, sizeof(w->error), "%s", vmseal_last_error());
                            }
                        }
                    }
                }
            if (cur < 0)
                break;
        }
        tried[cur] = 1;
        for (size_t j = 0; j < m_missing; j++)
            items[j] = (vmseal_kmip_get_item){.uid = want[idx[j]].kek_id};
        const char *label = vmseal_kmip_client_server_label(k, (size_t)cur);
        rc = vmseal_kmip_get_keys(k, items, m_missing);
        if (rc < 0) {
            /* The server went away mid-way: its keys are asked elsewhere. */
            for (size_t j = 0; j < m_missing; j++) {
                want[idx[j]].rc = rc;
                snprintf(want[idx[j]].error, sizeof(want[idx[j]].error), "%s", vmseal_last_error());
            }
            vmseal_kmip_client_disconnect(k);
            continue;
        }
        for (size_t j = 0; j < m_missing; j++) {
            keys_want *w = &want[idx[j]];
            vmseal_kmip_get_item *it = &items[j];
            if (it->rc < 0) {
                /* "not found" here is not final while other servers remain;
                 * a real error is kept unless another server has the key */
                if (w->rc == -ENOENT || it->rc != -ENOENT) {
                    w->rc = it->rc;
                    snprintf(w->error, sizeof(w->error), "%s: %s", label ? label : "?", it->error);
                }
                continue;
            }
            if (it->identifier[0] && owner[idx[j]][0] && strcmp(it->identifier, owner[idx[j]]) != 0) {
                /* Same id, another VM's key: never the right one. */
                vmseal_secret_free(it->key);
                it->key = NULL;
                w->rc = -EKEYREJECTED;
                snprintf(w->error, sizeof(w->error),
                         "%s holds a key %s that belongs to VM %s, not to VM %s: not used",
                         label ? label : "?", w->kek_id, it->identifier, owner[idx[j]]);
                mgr_log("key provider %s: %s", provider, w->error);
                continue;
            }
            w->key = it->key;
            it->key = NULL;
            w->rc = 0;
            w->error[0] = '\0';
            snprintf(w->server, sizeof(w->server), "%s", label ? label : "");
        }
    }
    rc = 0;
out:
    free(items);
    free(idx);
    free(owner);
    keys_lease_put(m, &l);
    if (rc < 0) {
        for (size_t i = 0; i < n; i++) {
            vmseal_secret_free(want[i].key);
            want[i].key = NULL;
            want[i].rc = rc;
        }
        return rc;
    }
    return 0;
}

int keys_get(manager *m, const char *provider, const char *kek_id, vmseal_secret **key)
{
    *key = NULL;
    keys_want w = {.kek_id = kek_id};
    int rc = keys_get_many(m, provider, &w, 1);
    if (rc >= 0 && w.rc < 0)
        rc = w.rc;
    if (rc < 0)
        return vmseal_fail(rc, "key provider %s: cannot get KEK %s: %s", provider, kek_id,
                           w.error[0] ? w.error : vmseal_last_error());
    *key = w.key;
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
