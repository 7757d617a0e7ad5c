/* libFuzzer target: the cluster facts a client reads from a Query's Server
 * Information (kmip/cluster_info.c; the manager's key-provider status),
 * which any KMIP server can fill with anything. Beyond "no crash": every
 * text fits its field, is valid UTF-8 (jansson takes it) without control
 * characters, every number is -1 or within [0, VMSEAL_KMIP_FACT_MAX], at
 * most the bounded number of nodes and standbys are kept and the totals
 * are at least that. The input is a TTLV item: the Server Information
 * itself, or a message or payload holding one. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <vmseal/kmip_client.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void text_ok(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    if (n == cap)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
            abort();
    json_t *j = json_stringn(s, n);
    if (!j)
        abort();
    json_decref(j);
}

static void num_ok(int64_t v)
{
    if (v < -1 || v > VMSEAL_KMIP_FACT_MAX)
        abort();
}

static void check(const vmseal_kmip_cluster_info *ci)
{
#define T(f) text_ok(f, sizeof(f))
    T(ci->store); T(ci->node); T(ci->db_role); T(ci->db_address); T(ci->db_version); T(ci->db_error);
    T(ci->synchronous_commit); T(ci->synchronous_standby_names);
    num_ok(ci->facts_age_ms);
    num_ok(ci->nodes_total);
    num_ok(ci->standbys_total);
    if (ci->n_nodes > VMSEAL_KMIP_CLUSTER_NODES || ci->n_standbys > VMSEAL_KMIP_CLUSTER_STANDBYS)
        abort();
    if ((ci->n_nodes && ci->nodes_total < (int64_t)ci->n_nodes) ||
        (ci->n_standbys && ci->standbys_total < (int64_t)ci->n_standbys))
        abort();
    if (!ci->present && (ci->n_nodes || ci->n_standbys || ci->store[0]))
        abort();
    for (size_t i = 0; i < ci->n_nodes; i++) {
        T(ci->nodes[i].name); T(ci->nodes[i].address); T(ci->nodes[i].version); T(ci->nodes[i].state);
        num_ok(ci->nodes[i].seen_ago_ms);
    }
    for (size_t i = 0; i < ci->n_standbys; i++) {
        T(ci->standbys[i].name); T(ci->standbys[i].state); T(ci->standbys[i].sync_state);
        num_ok(ci->standbys[i].replay_lag_ms);
        num_ok(ci->standbys[i].bytes_behind);
    }
#undef T
}

/* Depth-first: the first Server Information below t. */
static const vmseal_ttlv *find_si(const vmseal_ttlv *t, int depth)
{
    if (vmseal_ttlv_tag(t) == VMSEAL_KMIP_TAG_SERVER_INFORMATION || depth > 8 ||
        vmseal_ttlv_type_of(t) != VMSEAL_TTLV_STRUCTURE)
        return vmseal_ttlv_tag(t) == VMSEAL_KMIP_TAG_SERVER_INFORMATION ? t : NULL;
    for (const vmseal_ttlv *c = NULL; (c = vmseal_ttlv_next(t, 0, c));) {
        const vmseal_ttlv *f = find_si(c, depth + 1);
        if (f)
            return f;
    }
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vmseal_ttlv *t = NULL;
    if (vmseal_ttlv_decode(data, size, &t) != 0)
        return 0;
    static vmseal_kmip_cluster_info ci;
    vmseal_kmip_cluster_info_parse(t, &ci);
    check(&ci);
    const vmseal_ttlv *si = find_si(t, 0);
    if (si && si != t) {
        vmseal_kmip_cluster_info_parse(si, &ci);
        check(&ci);
    }
    vmseal_ttlv_free(t);
    return 0;
}
