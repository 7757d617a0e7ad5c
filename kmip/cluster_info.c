/* The cluster facts a vmseal-kmsd node puts in a Query's Server Information
 * (docs/kmsd.md, "Cluster status over KMIP"), read by a client that must
 * not trust them: every text escaped and cut to its field, every number
 * bounded, at most so many nodes and standbys. */
#include <string.h>

#include <vmseal/kmip_client.h>
#include <vmseal/log.h>

/* Escape text[0..len) into dst (cap bytes): the log's escaping (no control
 * character, valid UTF-8, "\xHH" for bytes that are not); a value that does
 * not fit is cut at a character and ends with "...". */
static void copy_text(char *dst, size_t cap, const char *text, size_t len)
{
    if (cap < 8) {
        if (cap)
            dst[0] = '\0';
        return;
    }
    size_t used = vmseal_log_escape(text, len, dst, cap);
    if (used < len) {
        vmseal_log_escape(text, len, dst, cap - 3);
        strcat(dst, "...");
    }
}

static void get_text(const vmseal_ttlv *item, char *dst, size_t cap)
{
    const char *s;
    size_t len;
    if (vmseal_ttlv_type_of(item) == VMSEAL_TTLV_TEXT && vmseal_ttlv_get_text(item, &s, &len) == 0)
        copy_text(dst, cap, s, len);
}

/* A count or a duration: Integer or Long Integer, -1 when negative or of
 * another type, at most VMSEAL_KMIP_FACT_MAX. */
static int64_t get_num(const vmseal_ttlv *item)
{
    int64_t v = -1;
    int32_t i;
    if (vmseal_ttlv_type_of(item) == VMSEAL_TTLV_LONG) {
        if (vmseal_ttlv_get_long(item, &v) < 0)
            v = -1;
    } else if (vmseal_ttlv_type_of(item) == VMSEAL_TTLV_INTEGER && vmseal_ttlv_get_int(item, &i) == 0) {
        v = i;
    }
    if (v < 0)
        return -1;
    return v > VMSEAL_KMIP_FACT_MAX ? VMSEAL_KMIP_FACT_MAX : v;
}

/* A child item of a structure (the first of that tag), or NULL when parent
 * is not a structure. */
static const vmseal_ttlv *child(const vmseal_ttlv *parent, uint32_t tag)
{
    if (vmseal_ttlv_type_of(parent) != VMSEAL_TTLV_STRUCTURE)
        return NULL;
    return vmseal_ttlv_find(parent, tag);
}

static void parse_database(const vmseal_ttlv *d, vmseal_kmip_cluster_info *out)
{
    get_text(child(d, VMSEAL_KMIP_TAG_X_ROLE), out->db_role, sizeof(out->db_role));
    get_text(child(d, VMSEAL_KMIP_TAG_X_ADDRESS), out->db_address, sizeof(out->db_address));
    get_text(child(d, VMSEAL_KMIP_TAG_X_VERSION), out->db_version, sizeof(out->db_version));
    get_text(child(d, VMSEAL_KMIP_TAG_X_ERROR), out->db_error, sizeof(out->db_error));
    get_text(child(d, VMSEAL_KMIP_TAG_X_SYNCHRONOUS_COMMIT), out->synchronous_commit,
             sizeof(out->synchronous_commit));
    get_text(child(d, VMSEAL_KMIP_TAG_X_SYNCHRONOUS_STANDBY_NAMES), out->synchronous_standby_names,
             sizeof(out->synchronous_standby_names));
}

static void parse_standby(const vmseal_ttlv *x, vmseal_kmip_cluster_standby *s)
{
    memset(s, 0, sizeof(*s));
    get_text(child(x, VMSEAL_KMIP_TAG_X_NAME), s->name, sizeof(s->name));
    get_text(child(x, VMSEAL_KMIP_TAG_X_STATE), s->state, sizeof(s->state));
    get_text(child(x, VMSEAL_KMIP_TAG_X_SYNC_STATE), s->sync_state, sizeof(s->sync_state));
    s->replay_lag_ms = get_num(child(x, VMSEAL_KMIP_TAG_X_REPLAY_LAG));
    s->bytes_behind = get_num(child(x, VMSEAL_KMIP_TAG_X_BYTES_BEHIND));
}

static void parse_node(const vmseal_ttlv *x, vmseal_kmip_cluster_node *n)
{
    memset(n, 0, sizeof(*n));
    get_text(child(x, VMSEAL_KMIP_TAG_X_NAME), n->name, sizeof(n->name));
    get_text(child(x, VMSEAL_KMIP_TAG_X_ADDRESS), n->address, sizeof(n->address));
    get_text(child(x, VMSEAL_KMIP_TAG_X_VERSION), n->version, sizeof(n->version));
    get_text(child(x, VMSEAL_KMIP_TAG_X_STATE), n->state, sizeof(n->state));
    n->seen_ago_ms = get_num(child(x, VMSEAL_KMIP_TAG_X_SEEN_AGO));
}

void vmseal_kmip_cluster_info_parse(const vmseal_ttlv *si, vmseal_kmip_cluster_info *out)
{
    memset(out, 0, sizeof(*out));
    out->facts_age_ms = out->standbys_total = out->nodes_total = -1;
    const vmseal_ttlv *store = child(si, VMSEAL_KMIP_TAG_X_STORE);
    if (vmseal_ttlv_type_of(store) != VMSEAL_TTLV_TEXT)
        return;
    out->present = 1;
    get_text(store, out->store, sizeof(out->store));
    get_text(child(si, VMSEAL_KMIP_TAG_X_NODE), out->node, sizeof(out->node));
    out->facts_age_ms = get_num(child(si, VMSEAL_KMIP_TAG_X_FACTS_AGE));
    const vmseal_ttlv *d = child(si, VMSEAL_KMIP_TAG_X_DATABASE);
    if (vmseal_ttlv_type_of(d) == VMSEAL_TTLV_STRUCTURE)
        parse_database(d, out);
    out->standbys_total = get_num(child(si, VMSEAL_KMIP_TAG_X_STANDBYS_TOTAL));
    out->nodes_total = get_num(child(si, VMSEAL_KMIP_TAG_X_NODES_TOTAL));
    size_t standbys = 0, nodes = 0;
    for (const vmseal_ttlv *x = NULL; (x = vmseal_ttlv_next(si, VMSEAL_KMIP_TAG_X_STANDBY, x));) {
        if (vmseal_ttlv_type_of(x) != VMSEAL_TTLV_STRUCTURE)
            continue;
        standbys++;
        if (out->n_standbys < VMSEAL_KMIP_CLUSTER_STANDBYS)
            parse_standby(x, &out->standbys[out->n_standbys++]);
    }
    for (const vmseal_ttlv *x = NULL; (x = vmseal_ttlv_next(si, VMSEAL_KMIP_TAG_X_CLUSTER_NODE, x));) {
        if (vmseal_ttlv_type_of(x) != VMSEAL_TTLV_STRUCTURE)
            continue;
        nodes++;
        if (out->n_nodes < VMSEAL_KMIP_CLUSTER_NODES)
            parse_node(x, &out->nodes[out->n_nodes++]);
    }
    /* the totals are at least what was sent */
    if (out->standbys_total < (int64_t)standbys)
        out->standbys_total = (int64_t)standbys;
    if (out->nodes_total < (int64_t)nodes)
        out->nodes_total = (int64_t)nodes;
}
