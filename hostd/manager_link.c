/* Registration with the manager and KEK retrieval. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <vmseal/http_client.h>

#include "manager_link.h"

static int call(const vmseal_manager_link *l, const char *path, json_t *body, json_t **resp)
{
    vmseal_http_client_config cc = {
        .ca_file = l->ca_file,
        .cert_file = l->cert_file,
        .key_file = l->key_file,
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

int vmseal_manager_register(const vmseal_manager_link *l)
{
    json_t *body = json_pack("{s:s, s:s, s:s}", "name", l->name, "url", l->self_url, "datastore",
                             l->datastore);
    if (!body)
        return vmseal_fail(EINVAL, "host name, url and datastore are required to register");
    json_t *resp = NULL;
    int r = call(l, "/api/v1/hosts/register", body, &resp);
    json_decref(resp);
    return r;
}

int vmseal_manager_fetch_keys(const vmseal_manager_link *l, vmseal_host *h)
{
    json_t *ids = vmseal_host_kek_ids(h);
    if (json_array_size(ids) == 0) {
        json_decref(ids);
        return 0;
    }
    json_t *resp = NULL;
    int r = call(l, "/api/v1/hosts/self/keys", json_pack("{s:o}", "kek_ids", ids), &resp);
    if (r < 0)
        return r;
    int stored = 0;
    json_t *keys = json_object_get(resp, "keys");
    size_t i;
    json_t *v;
    if (json_is_array(keys)) {
        json_array_foreach(keys, i, v) {
            const char *id = json_string_value(json_object_get(v, "kek_id"));
            const char *b64 = json_string_value(json_object_get(v, "key"));
            const char *provider = json_string_value(json_object_get(v, "provider"));
            if (id && b64 && vmseal_host_put_key_b64(h, id, provider, b64) == 0)
                stored++;
            else if (id)
                vmseal_host_note_key(h, id, "the manager sent a malformed key");
        }
    } else if (json_is_object(keys)) {
        const char *id;
        json_object_foreach(keys, id, v) {
            const char *b64 = json_string_value(v);
            if (b64 && vmseal_host_put_key_b64(h, id, NULL, b64) == 0)
                stored++;
            else
                vmseal_host_note_key(h, id, "the manager sent a malformed key");
        }
    }
    json_array_foreach(json_object_get(resp, "denied"), i, v)
        if (json_string_value(v))
            vmseal_host_note_key(h, json_string_value(v),
                                 "the manager refused it (no VM of this host uses it there)");
    json_array_foreach(json_object_get(resp, "failed"), i, v) {
        const char *id = json_string_value(json_object_get(v, "kek_id"));
        const char *err = json_string_value(json_object_get(v, "error"));
        if (id) {
            char msg[600];
            snprintf(msg, sizeof(msg), "the manager could not get it from the key server: %s",
                     err ? err : "no reason given");
            vmseal_host_note_key(h, id, msg);
        }
    }
    json_decref(resp);
    return stored;
}
