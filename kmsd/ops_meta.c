/* DiscoverVersions and Query. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmseal/log.h>

#include "cluster.h"
#include "ops.h"

static const vmseal_kmip_version supported[] = {{1, 4}, {1, 3}, {1, 2}, {1, 1}, {1, 0}};
#define N_SUPPORTED (sizeof(supported) / sizeof(supported[0]))

static void add_version(vmseal_ttlv *resp, const vmseal_kmip_version *v)
{
    vmseal_ttlv *pv = vmseal_ttlv_add_struct(resp, VMSEAL_KMIP_TAG_PROTOCOL_VERSION);
    vmseal_ttlv_add_int(pv, VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MAJOR, v->major);
    vmseal_ttlv_add_int(pv, VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MINOR, v->minor);
}

/* Our versions, highest first; when the client lists some, only those we
 * share, still in our order of preference. */
int kmsd_op_discover_versions(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp)
{
    size_t n_client = vmseal_ttlv_count(req, VMSEAL_KMIP_TAG_PROTOCOL_VERSION);
    for (size_t i = 0; i < N_SUPPORTED; i++) {
        int take = n_client == 0;
        for (vmseal_ttlv *pv = NULL;
             !take && (pv = vmseal_ttlv_next(req, VMSEAL_KMIP_TAG_PROTOCOL_VERSION, pv));) {
            int32_t ma, mi;
            if (vmseal_ttlv_find_int(pv, VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MAJOR, &ma) < 0 ||
                vmseal_ttlv_find_int(pv, VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MINOR, &mi) < 0)
                return kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD, "bad Protocol Version");
            take = ma == supported[i].major && mi == supported[i].minor;
        }
        if (take)
            add_version(resp, &supported[i]);
    }
    return 0;
}

/* Server Information: what this node knows of its cluster (docs/kmsd.md,
 * "Cluster status over KMIP"), from the heartbeat thread's last snapshot. */
static void add_facts(vmseal_ttlv *si, const kmsd_cluster_facts *f);

/* A fact as text: the database's values are valid UTF-8 unless cut short
 * (or set by someone odd, e.g. a standby's application_name); a value that
 * is not is sent escaped rather than failing the whole Query. */
static void add_text(vmseal_ttlv *parent, uint32_t tag, const char *s)
{
    if (vmseal_ttlv_text_valid(s, strlen(s))) {
        vmseal_ttlv_add_text(parent, tag, s);
        return;
    }
    char esc[1024];
    vmseal_log_escape(s, strlen(s), esc, sizeof(esc));
    vmseal_ttlv_add_text(parent, tag, esc);
}

static void add_server_information(kmsd_op *op, vmseal_ttlv *resp)
{
    vmseal_ttlv *si = vmseal_ttlv_add_struct(resp, VMSEAL_KMIP_TAG_SERVER_INFORMATION);
    kmsd_cluster_facts *f = op->srv->cfg->store == KMSD_STORE_POSTGRESQL ? malloc(sizeof(*f)) : NULL;
    if (!f || kmsd_cluster_facts_get(f) < 0)
        vmseal_ttlv_add_text(si, VMSEAL_KMIP_TAG_X_STORE,
                             op->srv->cfg->store == KMSD_STORE_POSTGRESQL ? "postgresql" : "sqlite");
    else
        add_facts(si, f);
    free(f);
}

static void add_facts(vmseal_ttlv *si, const kmsd_cluster_facts *f)
{
    add_text(si, VMSEAL_KMIP_TAG_X_STORE, "postgresql");
    add_text(si, VMSEAL_KMIP_TAG_X_NODE, f->node);
    int64_t age = f->taken_ms ? kmsd_cluster_now_ms() - f->taken_ms : -1;
    vmseal_ttlv_add_long(si, VMSEAL_KMIP_TAG_X_FACTS_AGE, age);
    vmseal_ttlv *d = vmseal_ttlv_add_struct(si, VMSEAL_KMIP_TAG_X_DATABASE);
    if (!f->taken_ms) {
        add_text(d, VMSEAL_KMIP_TAG_X_ROLE, "unknown");
        add_text(d, VMSEAL_KMIP_TAG_X_ERROR, "not yet asked");
        return;
    }
    if (!f->ok) {
        add_text(d, VMSEAL_KMIP_TAG_X_ROLE, "unavailable");
        add_text(d, VMSEAL_KMIP_TAG_X_ERROR, f->error);
        return;
    }
    add_text(d, VMSEAL_KMIP_TAG_X_ROLE, "primary");
    add_text(d, VMSEAL_KMIP_TAG_X_ADDRESS, f->db.primary);
    add_text(d, VMSEAL_KMIP_TAG_X_VERSION, f->db.version);
    add_text(d, VMSEAL_KMIP_TAG_X_SYNCHRONOUS_COMMIT, f->db.synchronous_commit);
    add_text(d, VMSEAL_KMIP_TAG_X_SYNCHRONOUS_STANDBY_NAMES, f->db.synchronous_standby_names);
    vmseal_ttlv_add_int(si, VMSEAL_KMIP_TAG_X_STANDBYS_TOTAL, (int32_t)f->db.n_standby_total);
    for (size_t i = 0; i < f->db.n_standby; i++) {
        const kmsd_standby_info *sb = &f->db.standby[i];
        vmseal_ttlv *x = vmseal_ttlv_add_struct(si, VMSEAL_KMIP_TAG_X_STANDBY);
        add_text(x, VMSEAL_KMIP_TAG_X_NAME, sb->name);
        add_text(x, VMSEAL_KMIP_TAG_X_STATE, sb->state);
        add_text(x, VMSEAL_KMIP_TAG_X_SYNC_STATE, sb->sync_state);
        vmseal_ttlv_add_long(x, VMSEAL_KMIP_TAG_X_REPLAY_LAG, sb->replay_lag_ms);
        vmseal_ttlv_add_long(x, VMSEAL_KMIP_TAG_X_BYTES_BEHIND, sb->bytes_behind);
    }
    vmseal_ttlv_add_int(si, VMSEAL_KMIP_TAG_X_NODES_TOTAL, (int32_t)f->n_nodes_total);
    for (size_t i = 0; i < f->n_nodes; i++) {
        const kmsd_node_info *n = &f->nodes[i];
        /* the heartbeat's age now: as read, plus the age of the snapshot */
        double seen = n->seen_ago + (double)age / 1000.0;
        vmseal_ttlv *x = vmseal_ttlv_add_struct(si, VMSEAL_KMIP_TAG_X_CLUSTER_NODE);
        add_text(x, VMSEAL_KMIP_TAG_X_NAME, n->name);
        add_text(x, VMSEAL_KMIP_TAG_X_ADDRESS, n->address);
        add_text(x, VMSEAL_KMIP_TAG_X_VERSION, n->version);
        add_text(x, VMSEAL_KMIP_TAG_X_STATE, n->stopped                  ? "stopped"
                                                         : seen > KMSD_NODE_GONE_S ? "gone"
                                                                                   : "alive");
        vmseal_ttlv_add_long(x, VMSEAL_KMIP_TAG_X_SEEN_AGO, (int64_t)(seen * 1000.0));
    }
}

int kmsd_op_query(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp)
{
    int ops = 0, objs = 0, info = 0;
    for (vmseal_ttlv *f = NULL; (f = vmseal_ttlv_next(req, VMSEAL_KMIP_TAG_QUERY_FUNCTION, f));) {
        uint32_t fn;
        if (vmseal_ttlv_get_enum(f, &fn) < 0)
            return kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD, "bad Query Function");
        ops |= fn == VMSEAL_KMIP_QUERY_OPERATIONS;
        objs |= fn == VMSEAL_KMIP_QUERY_OBJECTS;
        info |= fn == VMSEAL_KMIP_QUERY_SERVER_INFORMATION;
        /* other functions: nothing to report (no namespaces, extensions...) */
    }
    if (ops)
        for (size_t i = 0; i < kmsd_n_ops; i++)
            vmseal_ttlv_add_enum(resp, VMSEAL_KMIP_TAG_OPERATION, kmsd_ops[i].operation);
    if (objs) {
        vmseal_ttlv_add_enum(resp, VMSEAL_KMIP_TAG_OBJECT_TYPE, VMSEAL_KMIP_OBJ_SYMMETRIC_KEY);
        vmseal_ttlv_add_enum(resp, VMSEAL_KMIP_TAG_OBJECT_TYPE, VMSEAL_KMIP_OBJ_SECRET_DATA);
    }
    if (info) {
        vmseal_ttlv_add_text(resp, VMSEAL_KMIP_TAG_VENDOR_IDENTIFICATION,
                             "vmseal vmseal-kmsd " VMSEAL_VERSION);
        add_server_information(op, resp);
    }
    return 0;
}
