/* vmseal-kmsd — a node of a cluster on one PostgreSQL store: its heartbeat
 * (a row in kmsd_nodes refreshed every KMSD_HEARTBEAT_S seconds, which also
 * reconnects the node to a new primary without client traffic) and
 * `vmseal-kmsd cluster status`. */
#ifndef KMSD_CLUSTER_H
#define KMSD_CLUSTER_H

#include <stdio.h>

#include "config.h"
#include "store.h"

#define KMSD_HEARTBEAT_S 2
/* A node whose heartbeat is older than this is shown as gone. */
#define KMSD_NODE_GONE_S (3 * KMSD_HEARTBEAT_S)

/* Start the heartbeat thread (address: where this node serves KMIP). */
int kmsd_cluster_start(kmsd_store *st, const char *node, const char *address);
/* Stop it; a last heartbeat marks the node stopped. */
void kmsd_cluster_stop(void);

/* What this node knows of its cluster, refreshed after every heartbeat by
 * the heartbeat thread (so that a KMIP Query, which reports it as Server
 * Information, costs no database round trip): the database as seen through
 * the store's connection and the nodes' rows. */
#define KMSD_FACT_NODES 16
typedef struct kmsd_cluster_facts {
    char node[KMSD_NODE_MAX];   /* this node */
    int64_t taken_ms;           /* CLOCK_MONOTONIC ms of the last refresh (0: none yet) */
    int ok;                     /* the database answered */
    char error[256];            /* why not (ok == 0) */
    kmsd_db_replication db;
    kmsd_node_info nodes[KMSD_FACT_NODES];
    size_t n_nodes;             /* kept */
    size_t n_nodes_total;       /* rows in kmsd_nodes */
} kmsd_cluster_facts;
/* A copy of the last facts; -ENODATA when no heartbeat runs (SQLite). */
int kmsd_cluster_facts_get(kmsd_cluster_facts *out);
int64_t kmsd_cluster_now_ms(void);

/* Print the cluster's state to out: every database host of the conninfo
 * (primary, standby with its replay lag, or unreachable), the primary's
 * synchronous replication settings and pg_stat_replication, the store, and
 * the nodes with the age of their heartbeats. Needs no master key.
 * 0: a primary answered; 1: none did; < 0: the conninfo cannot be read. */
int kmsd_cluster_status(const kmsd_config *cfg, FILE *out);

#endif
