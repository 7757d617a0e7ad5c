/* vmseal-hostd — calls to the manager (vmseal-managerd), mutual TLS with
 * the host's own certificate (whose CN is the host name):
 *   POST /api/v1/hosts/register    {name, url, datastore}
 *   POST /api/v1/hosts/self/keys   {kek_ids: [...]}
 *        -> {keys: [{kek_id, key}], denied: [...], failed: [{kek_id, error}]}
 *           (a map {"keys": {id: base64}} is accepted too)
 */
#ifndef VMSEAL_HOSTD_MANAGER_LINK_H
#define VMSEAL_HOSTD_MANAGER_LINK_H

#include <vmseal/common.h>

#include "host.h"

typedef struct vmseal_manager_link {
    const char *url;           /* https://manager:port (no trailing /api) */
    const char *ca_file;       /* CA the manager's certificate chains to */
    const char *cert_file;     /* our certificate (clientAuth) */
    const char *key_file;
    const char *name;          /* our host name (= CN of cert_file) */
    const char *self_url;      /* where the manager reaches our API */
    const char *datastore;
} vmseal_manager_link;

int vmseal_manager_register(const vmseal_manager_link *l) VMSEAL_MUST_CHECK;

/* Ask for the KEKs the host's VMs need and store those given; the others
 * are noted (vmseal_host_note_key) so locked VMs say why. Returns the number
 * of keys stored. */
int vmseal_manager_fetch_keys(const vmseal_manager_link *l, vmseal_host *h) VMSEAL_MUST_CHECK;

#endif
