/* vmseal-hostd — calls to the manager (vmseal-managerd), made by the
 * network process with the host's own certificate (mutual TLS; its CN is
 * the host name):
 *   POST /api/v1/hosts/register    {name, url, datastore, custody_key}
 *   POST /api/v1/hosts/self/keys   {kek_ids: [...]}
 *        -> {keys: [{kek_id, provider, sealed_key}], denied: [...],
 *            failed: [{kek_id, error}]}
 * KEKs arrive sealed to the monitor's custody key (lib/crypto/kek_delivery.c):
 * this side only checks their shape and hands the blobs on.
 */
#ifndef VMSEAL_HOSTD_MANAGER_LINK_H
#define VMSEAL_HOSTD_MANAGER_LINK_H

#include <jansson.h>

#include <vmseal/common.h>

#include "privsep.h"

typedef struct hostd_manager_link {
    const char *url;           /* https://manager:port (no trailing /api) */
    const char *ca_file;       /* CA the manager's certificate chains to */
    const char *cert_file;     /* our certificate (clientAuth) */
    const char *key_file;
    /* or the same in memory (network_user: read before privileges are
     * dropped); used when set */
    const char *ca_pem, *cert_pem, *key_pem;
} hostd_manager_link;

/* custody_b64: base64 of the custody public key. */
int hostd_manager_register(const hostd_manager_link *l, const char *name, const char *self_url,
                            const char *datastore, const char *custody_b64) VMSEAL_MUST_CHECK;

/* Ask for the KEKs named in ids (JSON array of strings); out->keys,
 * denied and failed are filled (out->id is left alone). */
int hostd_manager_fetch_keys(const hostd_manager_link *l, json_t *ids, ps_keys *out)
    VMSEAL_MUST_CHECK;

#endif
