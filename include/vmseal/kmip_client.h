/* vmseal — KMIP client: the manager's side of "add a KMS cluster".
 *
 * A client talks KMIP 1.x over mutual TLS (include/vmseal/tls.h) to a
 * cluster of equivalent key servers. It keeps one connection open and
 * reuses it; when a server cannot be reached or the connection breaks, it
 * moves on to the next server in the list (each server is tried at most once
 * per call), and a server that closed an idle connection is simply
 * reconnected. A request whose connection broke after it was sent may have
 * been executed (a Create can then leave an unused key behind). KMIP errors
 * from a server are not failed over: they come back as a negative errno with
 * "Result Reason: server message" in vmseal_last_error() (see
 * vmseal_kmip_result_errno()).
 *
 * The protocol version is negotiated with Discover Versions on the first
 * connection (highest common 1.0–1.4) unless one is configured.
 *
 * Not thread-safe: use one client per thread, or lock around calls.
 */
#ifndef VMSEAL_KMIP_CLIENT_H
#define VMSEAL_KMIP_CLIENT_H

#include <vmseal/kmip_msg.h>
#include <vmseal/secret.h>
#include <vmseal/tls.h>

typedef struct vmseal_kmip_client vmseal_kmip_client;

typedef struct vmseal_kmip_client_config {
    const char *const *servers;   /* "host:port" or "[v6addr]:port"; port defaults to 5696 */
    size_t n_servers;
    vmseal_tls_config tls;        /* cert_file, key_file, ca_file, legacy_cbc_suites, ... */
    int connect_timeout_ms;       /* TCP + TLS handshake, per server; 0: 5000 */
    int io_timeout_ms;            /* per read/write; 0: 30000 */
    vmseal_kmip_version version;  /* {0,0}: negotiate */
    const char *username;         /* optional KMIP Username/Password credential */
    const char *password;
} vmseal_kmip_client_config;

/* Copies what it needs from cfg; does not connect yet. */
/* "host", "host:port", "[v6]" or "[v6]:port" (port 5696 by default) into
 * host (hlen bytes) and port; -EINVAL for anything else. */
int vmseal_kmip_parse_server(const char *s, char *host, size_t hlen, int *port) VMSEAL_MUST_CHECK;

int vmseal_kmip_client_new(const vmseal_kmip_client_config *cfg, vmseal_kmip_client **out)
    VMSEAL_MUST_CHECK;
void vmseal_kmip_client_free(vmseal_kmip_client *c);

/* Connect now (to the first server that answers) — optional, calls connect
 * on demand. */
int vmseal_kmip_client_connect(vmseal_kmip_client *c) VMSEAL_MUST_CHECK;
/* Close the connection (the next call reconnects). */
void vmseal_kmip_client_disconnect(vmseal_kmip_client *c);
/* "host:port" of the connected server, NULL when not connected. */
const char *vmseal_kmip_client_server(const vmseal_kmip_client *c);
/* The protocol version in use ({0,0} before the first connection). */
vmseal_kmip_version vmseal_kmip_client_version(const vmseal_kmip_client *c);
/* How many servers the client knows, which one it is connected to (-1:
 * none), and a connection to server i alone (0-based; the current one is
 * closed first). With these a caller can ask each server of a cluster in
 * turn, e.g. when one answers "not found" for a key another one holds. */
size_t vmseal_kmip_client_n_servers(const vmseal_kmip_client *c);
int vmseal_kmip_client_current(const vmseal_kmip_client *c);
const char *vmseal_kmip_client_server_label(const vmseal_kmip_client *c, size_t i);
int vmseal_kmip_client_connect_to(vmseal_kmip_client *c, size_t i) VMSEAL_MUST_CHECK;

/* Send a request built with vmseal_kmip_request_new()/_add() — using
 * vmseal_kmip_client_version() after vmseal_kmip_client_connect(), and
 * distinct Batch Item IDs when batching — and return the parsed response,
 * whose items match the request's one to one (count, Operation, Batch Item
 * ID: checked). The caller checks each item's status
 * (vmseal_kmip_result_errno()). */
int vmseal_kmip_client_call(vmseal_kmip_client *c, vmseal_ttlv *request, vmseal_kmip_response **out)
    VMSEAL_MUST_CHECK;

/* ---- operations ---------------------------------------------------------- */

/* The versions the server offers, in its order of preference. */
int vmseal_kmip_discover_versions(vmseal_kmip_client *c, vmseal_kmip_version *out, size_t max,
                                  size_t *n) VMSEAL_MUST_CHECK;

/* What a vmseal-kmsd node reports of its cluster in the Query's Server
 * Information (docs/kmsd.md, "Cluster status over KMIP"). A server may send
 * anything: every text is escaped as the diagnostic log escapes it
 * (vmseal_log_escape: no control characters, valid UTF-8, "\xHH" for the
 * rest) and cut to its field ("..." at the end when cut), every number is
 * -1 (unknown) or within [0, VMSEAL_KMIP_FACT_MAX], and at most
 * VMSEAL_KMIP_CLUSTER_NODES nodes and VMSEAL_KMIP_CLUSTER_STANDBYS standbys
 * are kept (the totals say how many the server listed). */
#define VMSEAL_KMIP_CLUSTER_NODES 16
#define VMSEAL_KMIP_CLUSTER_STANDBYS 8
#define VMSEAL_KMIP_FACT_MAX INT64_C(1000000000000000)   /* 10^15 */
typedef struct vmseal_kmip_cluster_node {
    char name[72];
    char address[136];
    char version[40];
    char state[24];              /* alive, gone, stopped */
    int64_t seen_ago_ms;         /* age of its last heartbeat */
} vmseal_kmip_cluster_node;
typedef struct vmseal_kmip_cluster_standby {
    char name[72];               /* its application_name */
    char state[32];              /* streaming, catchup, ... */
    char sync_state[24];         /* sync, async, potential, quorum */
    int64_t replay_lag_ms;
    int64_t bytes_behind;
} vmseal_kmip_cluster_standby;
typedef struct vmseal_kmip_cluster_info {
    int present;                 /* the server sent vmseal's facts (a vmseal Store item) */
    char store[24];              /* sqlite, postgresql */
    char node[72];               /* the node that answered */
    int64_t facts_age_ms;        /* how old its facts are */
    char db_role[24];            /* primary, unavailable, unknown ("": not sent) */
    char db_address[168];        /* HOST:PORT of the primary the node uses */
    char db_version[40];
    char db_error[264];
    char synchronous_commit[40];
    char synchronous_standby_names[136];
    vmseal_kmip_cluster_standby standbys[VMSEAL_KMIP_CLUSTER_STANDBYS];
    size_t n_standbys;
    int64_t standbys_total;      /* as the server claims, at least as many as it sent */
    vmseal_kmip_cluster_node nodes[VMSEAL_KMIP_CLUSTER_NODES];
    size_t n_nodes;
    int64_t nodes_total;         /* likewise */
} vmseal_kmip_cluster_info;
/* Read the facts from a Server Information structure (NULL: none sent).
 * Items of other vendors, unknown tags and items of the wrong type are
 * skipped; never fails. */
void vmseal_kmip_cluster_info_parse(const vmseal_ttlv *server_information,
                                    vmseal_kmip_cluster_info *out);

typedef struct vmseal_kmip_server_info {
    char vendor[256];            /* Vendor Identification ("" if not sent), escaped as above */
    uint32_t operations[64];     /* operations the server lists */
    size_t n_operations;
    uint32_t object_types[16];
    size_t n_object_types;
    vmseal_kmip_cluster_info cluster;  /* from Server Information */
} vmseal_kmip_server_info;
/* Query Operations, Objects and Server Information. */
int vmseal_kmip_query(vmseal_kmip_client *c, vmseal_kmip_server_info *info) VMSEAL_MUST_CHECK;

/* A text attribute, e.g. {"x-Vendor", "vmseal"}; also used as a filter. */
typedef struct vmseal_kmip_text_attr {
    const char *name;
    const char *value;
} vmseal_kmip_text_attr;

typedef struct vmseal_kmip_create_opts {
    int32_t bits;                /* 0: 256 */
    int32_t usage_mask;          /* 0: Encrypt | Decrypt */
    const char *name;            /* Name attribute (Uninterpreted Text String), NULL: none */
    const vmseal_kmip_text_attr *attrs; /* custom ("x-...") text attributes */
    size_t n_attrs;
} vmseal_kmip_create_opts;
/* Create an AES symmetric key; *uid is malloc'd (free()). opts may be NULL. */
int vmseal_kmip_create_aes(vmseal_kmip_client *c, const vmseal_kmip_create_opts *opts, char **uid)
    VMSEAL_MUST_CHECK;

/* Get a symmetric key's bytes (Raw or Transparent Symmetric Key format, not
 * wrapped) into secure memory. */
int vmseal_kmip_get_key(vmseal_kmip_client *c, const char *uid, vmseal_secret **key) VMSEAL_MUST_CHECK;

int vmseal_kmip_activate(vmseal_kmip_client *c, const char *uid) VMSEAL_MUST_CHECK;

/* Many keys in as few requests as possible: per key a Get Attributes of
 * x-Identifier (the VM a vmseal/vCenter key belongs to) and a Get, batched
 * VMSEAL_KMIP_GET_BATCH keys per request with Batch Error Continuation
 * "Continue", so one missing key does not fail the others. The call fails
 * only when no server answers; each item has its own result. */
#define VMSEAL_KMIP_GET_BATCH 16
typedef struct vmseal_kmip_get_item {
    const char *uid;             /* in */
    vmseal_secret *key;          /* out: the key bytes, NULL on failure (caller frees) */
    char identifier[128];        /* out: x-Identifier, "" when the key has none
                                  * (or the server does not keep custom attributes) */
    int rc;                      /* out: 0 or -errno (-ENOENT: this server has no such key) */
    char error[256];             /* out: the reason when rc < 0 */
} vmseal_kmip_get_item;
int vmseal_kmip_get_keys(vmseal_kmip_client *c, vmseal_kmip_get_item *items, size_t n) VMSEAL_MUST_CHECK;

typedef struct vmseal_kmip_locate_filter {
    const char *name;            /* Name (text), NULL: any */
    uint32_t object_type;        /* 0: any */
    uint32_t state;              /* 0: any */
    const vmseal_kmip_text_attr *attrs; /* custom attributes that must match */
    size_t n_attrs;
    int32_t max_items;           /* 0: no limit sent */
} vmseal_kmip_locate_filter;
/* Unique Identifiers of matching objects: *uids is a malloc'd array of
 * malloc'd strings; free with vmseal_kmip_uids_free(). */
int vmseal_kmip_locate(vmseal_kmip_client *c, const vmseal_kmip_locate_filter *f, char ***uids,
                       size_t *n) VMSEAL_MUST_CHECK;
void vmseal_kmip_uids_free(char **uids, size_t n);

/* Get Attributes: names NULL/n 0 = all. *attrs is the detached Response
 * Payload (Unique Identifier + Attribute structures); free with
 * vmseal_ttlv_free(), read with vmseal_kmip_attr_value(). */
int vmseal_kmip_get_attributes(vmseal_kmip_client *c, const char *uid, const char *const *names,
                               size_t n, vmseal_ttlv **attrs) VMSEAL_MUST_CHECK;
/* The Attribute Value of the nth (0-based) attribute with this name in a
 * Get Attributes payload or Template-Attribute; NULL when there is none. */
vmseal_ttlv *vmseal_kmip_attr_value(const vmseal_ttlv *attrs, const char *name, size_t nth);

/* Add text attributes, all in one batch (one Batch Item each). */
int vmseal_kmip_add_attributes(vmseal_kmip_client *c, const char *uid, const vmseal_kmip_text_attr *attrs,
                               size_t n) VMSEAL_MUST_CHECK;

/* Revoke with a Revocation Reason Code (VMSEAL_KMIP_REVOKE_*) and optional
 * message; for Key Compromise the compromise date is now. */
int vmseal_kmip_revoke(vmseal_kmip_client *c, const char *uid, uint32_t reason, const char *message)
    VMSEAL_MUST_CHECK;

int vmseal_kmip_destroy(vmseal_kmip_client *c, const char *uid) VMSEAL_MUST_CHECK;

#endif
