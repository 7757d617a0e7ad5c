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

/* Print the cluster's state to out: every database host of the conninfo
 * (primary, standby with its replay lag, or unreachable), the primary's
 * synchronous replication settings and pg_stat_replication, the store, and
 * the nodes with the age of their heartbeats. Needs no master key.
 * 0: a primary answered; 1: none did; < 0: the conninfo cannot be read. */
int kmsd_cluster_status(const kmsd_config *cfg, FILE *out);

#endif
