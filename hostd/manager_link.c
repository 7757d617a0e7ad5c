/* Registration with the manager and sealed-KEK retrieval (network process). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmseal/http_client.h>

#include "manager_link.h"
#include "strutil.h"

static int call(const hostd_manager_link *l, const char *path, json_t *body, json_t **resp)
{
    vmseal_http_client_config cc = {
        .ca_file = l->ca_file,
        .cert_file = l->cert_file,
        .key_file = l->key_file,
        .ca_pem = l->ca_pem,
        .cert_pem = l->cert_pem,
        .key_pem = l->key_pem,
        .connect_timeout_ms = 5000,
        .timeout_ms = 30000,
    };
    vmseal_http_client *c = NULL;
    int r = vmseal_http_client_new(&cc, &c);
    if (r < 0) {
        json_decref(body);
        return r;
    }
    char url[2048];
    snprintf(url, sizeof(url), "%s%s", l->url, path);
    long status = 0;
    *resp = NULL;
    r = vmseal_http_call(c, "POST", url, body, &status, resp);
    vmseal_http_client_free(c);
    json_decref(body);
    if (r < 0)
        return vmseal_fail(r, "manager %s: %s", l->url, vmseal_last_error());
    if (status < 200 || status > 299) {
        r = vmseal_fail(status == 403 ? EACCES : EIO, "manager %s refused %s: HTTP %ld: %s", l->url,
                        path, status, vmseal_http_error_text(*resp));
        json_decref(*resp);
        *resp = NULL;
        return r;
    }
    return 0;
}

int hostd_manager_register(const hostd_manager_link *l, const char *name, const char *self_url,
                            const char *datastore, const char *custody_b64)
{
    json_t *body = json_pack("{s:s, s:s, s:s, s:s}", "name", name, "url", self_url, "datastore",
                             datastore, "custody_key", custody_b64);
    if (!body)
        return vmseal_fail(EINVAL, "host name, url and datastore are required to register");
    json_t *resp = NULL;
    int r = call(l, "/api/v1/hosts/register", body, &resp);
    json_decref(resp);
    return r;
}

static int ok_id(const char *id)
{
    return id && vmseal_keysafe_kek_id_valid(id);
}

int hostd_manager_fetch_keys(const hostd_manager_link *l, json_t *ids, ps_keys *out)
{
    json_t *resp = NULL;
    int r = call(l, "/api/v1/hosts/self/keys", json_pack("{s:O}", "kek_ids", ids), &resp);
    if (r < 0)
        return r;
    json_t *keys = json_object_get(resp, "keys");
    json_t *denied = json_object_get(resp, "denied");
    json_t *failed = json_object_get(resp, "failed");
    size_t nk = json_is_array(keys) ? json_array_size(keys) : 0;
    size_t nd = json_is_array(denied) ? json_array_size(denied) : 0;
    size_t nf = json_is_array(failed) ? json_array_size(failed) : 0;
    if (nk > PS_KEYS_MAX || nd > PS_KEYS_MAX || nf + nk > PS_KEYS_MAX) {
        json_decref(resp);
        return vmseal_fail(E2BIG, "the manager sent too many keys");
    }
    out->keys = nk ? calloc(nk, sizeof(*out->keys)) : NULL;
    out->denied = nd ? calloc(nd, sizeof(*out->denied)) : NULL;
    out->failed = nk + nf ? calloc(nk + nf, sizeof(*out->failed)) : NULL;
    if ((nk && !out->keys) || (nd && !out->denied) || (nk + nf && !out->failed)) {
        json_decref(resp);
        ps_keys_free(out);
        return vmseal_fail(ENOMEM, "out of memory");
    }
    size_t i;
    json_t *v;
    json_array_foreach(keys, i, v) {
        const char *id = json_string_value(json_object_get(v, "kek_id"));
        const char *prov = json_string_value(json_object_get(v, "provider"));
        const char *sealed = json_string_value(json_object_get(v, "sealed_key"));
        if (!ok_id(id))
            continue;
        ps_sealed_key *k = &out->keys[out->nkeys];
        if (prov && vmseal_keysafe_provider_valid(prov) && sealed &&
            vmseal_kd_unb64(sealed, k->blob, sizeof(k->blob)) == 0) {
            hostd_copy_str(k->kek_id, sizeof(k->kek_id), id);
            hostd_copy_str(k->provider, sizeof(k->provider), prov);
            out->nkeys++;
        } else {
            ps_failed_key *f = &out->failed[out->nfailed++];
            hostd_copy_str(f->kek_id, sizeof(f->kek_id), id);
            hostd_copy_str(f->reason, sizeof(f->reason),
                           "the manager's answer holds no well-formed sealed_key and provider");
        }
    }
    json_array_foreach(denied, i, v)
        if (ok_id(json_string_value(v)))
            hostd_copy_str(out->denied[out->ndenied++], sizeof(out->denied[0]),
                           json_string_value(v));
    json_array_foreach(failed, i, v) {
        const char *id = json_string_value(json_object_get(v, "kek_id"));
        const char *err = json_string_value(json_object_get(v, "error"));
        if (!ok_id(id))
            continue;
        ps_failed_key *f = &out->failed[out->nfailed++];
        hostd_copy_str(f->kek_id, sizeof(f->kek_id), id);
        hostd_copy_str(f->reason, sizeof(f->reason), err ? err : "");
    }
    json_decref(resp);
    return 0;
}
