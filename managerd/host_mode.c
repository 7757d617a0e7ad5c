/* vmseal-managerd — host encryption mode through the API: the manager asks
 * the host agent (GET / PUT {url}/v1/host/encryption-mode) and records an
 * event for a change. The host agent decides: it refuses to disable the
 * mode while encrypted VMs are on it (409), as vSphere does. */
#include <errno.h>
#include <string.h>

#include "managerd.h"

int hosts_encryption_mode(manager *m, const char *actor, const char *name, int enable, json_t **out)
{
    *out = NULL;
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r, "SELECT name FROM hosts WHERE name = $1", name, STORE_END);
    if (rc < 0)
        return rc;
    size_t n = store_rows_count(r);
    store_rows_free(r);
    if (n == 0)
        return vmseal_fail(ENOENT, "no host named %s", name);
    json_t *before = NULL, *resp = NULL, *body = NULL;
    long status = 0;
    if (enable >= 0) {
        /* what it was, for the event */
        if (hosts_call(m, name, "GET", "/v1/host/encryption-mode", NULL, &status, &before) < 0 ||
            status != 200) {
            json_decref(before);
            before = NULL;
        }
        body = json_pack("{s:b}", "enabled", enable);
    }
    rc = hosts_call(m, name, enable >= 0 ? "PUT" : "GET", "/v1/host/encryption-mode", body, &status,
                    &resp);
    json_decref(body);
    if (rc < 0) {
        json_decref(before);
        json_decref(resp);
        return vmseal_fail(EREMOTEIO, "host %s: %s", name, vmseal_last_error());
    }
    if (status < 200 || status > 299) {
        int e = status == 409 ? EBUSY : status == 400 ? EINVAL : status == 404 ? ENOTSUP : EREMOTEIO;
        rc = vmseal_fail(e, "host %s: %s", name,
                         status == 404 ? "its host agent has no host encryption mode API"
                                       : vmseal_http_error_text(resp));
        json_decref(before);
        json_decref(resp);
        return rc;
    }
    if (enable >= 0) {
        json_t *ov = json_pack("{s:O?}", "enabled", json_object_get(before, "enabled"));
        json_t *nv = json_pack("{s:O?, s:O?}", "enabled", json_object_get(resp, "enabled"),
                               "installed", json_object_get(resp, "installed"));
        event_add(m, actor, "host.encryption-mode", name, ov, nv);
        json_decref(ov);
        json_decref(nv);
    }
    json_decref(before);
    json_object_set_new(resp, "name", json_string(name));
    *out = resp;
    return 0;
}
