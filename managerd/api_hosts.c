/* vmseal-managerd — /api/v1/hosts
 *
 * Host agents (client certificate):
 *   POST /hosts/register       {name, url, datastore}
 *   POST /hosts/self/keys      {kek_ids[]} -> {keys[{kek_id, key}], denied[], failed[]}
 * Users (session token):
 *   GET /hosts, GET /hosts/{name}, DELETE /hosts/{name}
 *   PUT /hosts/{name}/default-policy {policy}: what new VMs get by default
 *   GET, PUT /hosts/{name}/encryption-mode {enabled}: host encryption mode
 *   POST /hosts/{name}/approve-cert {fingerprint}: accept the certificate waiting
 *   POST /hosts/{name}/revoke-cert
 */
#include <errno.h>
#include <string.h>

#include "api.h"

void api_hosts(api_ctx *ctx)
{
    const char *m = ctx->req->method;
    json_t *out = NULL, *b = NULL;
    int rc;
    if (ctx->nseg == 2 && !strcmp(ctx->seg[1], "register")) {
        if (strcmp(m, "POST") != 0)
            goto notfound;
        if (api_body(ctx, &schema_host_register, &b) < 0)
            return;
        rc = hosts_register(ctx->m, ctx->req->peer_fingerprint, ctx->req->peer_subject, b, &out);
        json_decref(b);
        if (rc == -EACCES) {
            vmseal_http_error(ctx->resp, 403, "%s", vmseal_last_error());
            return;
        }
        goto done;
    }
    if (ctx->nseg >= 2 && !strcmp(ctx->seg[1], "self")) {
        rc = hosts_identify(ctx->m, ctx->req->peer_fingerprint, ctx->req->peer_subject, ctx->host,
                            sizeof(ctx->host));
        if (rc < 0) {
            vmseal_http_error(ctx->resp, 403, "%s", vmseal_last_error());
            return;
        }
        if (ctx->nseg == 3 && !strcmp(ctx->seg[2], "keys") && !strcmp(m, "POST")) {
            if (api_body(ctx, &schema_host_keys, &b) < 0)
                return;
            rc = hosts_keys_for(ctx->m, ctx->host, json_object_get(b, "kek_ids"), &out);
            json_decref(b);
            goto done;
        }
        if (ctx->nseg == 2 && !strcmp(m, "GET")) {
            out = json_pack("{s:s}", "name", ctx->host);
            rc = 0;
            goto done;
        }
        goto notfound;
    }
    if (ctx->nseg == 1 && !strcmp(m, "GET")) {
        if (api_authorize(ctx, "host.list", NULL) < 0)
            return;
        rc = hosts_list(ctx->m, &out);
        if (rc >= 0) {
            /* Only the hosts one may read. */
            json_t *arr = json_object_get(out, "hosts");
            for (size_t i = json_array_size(arr); i-- > 0;) {
                char obj[96];
                snprintf(obj, sizeof(obj), "host:%s",
                         json_string_value(json_object_get(json_array_get(arr, i), "name")));
                if (!api_may(ctx, "System.Read", obj))
                    json_array_remove(arr, i);
            }
        }
        goto done;
    }
    if (ctx->nseg >= 2 && !api_valid_name(ctx->seg[1])) {
        vmseal_http_error(ctx->resp, 404, "no such host");
        return;
    }
    if (ctx->nseg == 3 && !strcmp(ctx->seg[2], "default-policy") && !strcmp(m, "PUT")) {
        if (api_authorize(ctx, "host.default-policy", ctx->seg[1]) < 0 ||
            api_body(ctx, &schema_default_policy, &b) < 0)
            return;
        rc = hosts_set_default_policy(ctx->m, ctx->user, ctx->seg[1],
                                      json_string_value(json_object_get(b, "policy")));
        if (rc >= 0)
            out = json_pack("{s:s,s:O}", "name", ctx->seg[1], "default_policy", json_object_get(b, "policy"));
        json_decref(b);
        goto done;
    }
    if (ctx->nseg == 3 && !strcmp(ctx->seg[2], "encryption-mode") &&
        (!strcmp(m, "PUT") || !strcmp(m, "GET"))) {
        int put = !strcmp(m, "PUT");
        if (api_authorize(ctx, put ? "host.encryption-mode" : "host.encryption-mode-get",
                          ctx->seg[1]) < 0 ||
            (put && api_body(ctx, &schema_host_encryption_mode, &b) < 0))
            return;
        rc = hosts_encryption_mode(ctx->m, ctx->user, ctx->seg[1],
                                   put ? json_is_true(json_object_get(b, "enabled")) : -1, &out);
        json_decref(b);
        goto done;
    }
    if (ctx->nseg == 3 && !strcmp(ctx->seg[2], "approve-cert") && !strcmp(m, "POST")) {
        if (api_authorize(ctx, "host.approve-cert", ctx->seg[1]) < 0 ||
            api_body(ctx, &schema_host_cert, &b) < 0)
            return;
        rc = hosts_approve_cert(ctx->m, ctx->user, ctx->seg[1], json_string_value(json_object_get(b, "fingerprint")));
        if (rc >= 0)
            out = json_pack("{s:s,s:O}", "name", ctx->seg[1], "fingerprint", json_object_get(b, "fingerprint"));
        json_decref(b);
        goto done;
    }
    if (ctx->nseg == 3 && !strcmp(ctx->seg[2], "revoke-cert") && !strcmp(m, "POST")) {
        if (api_authorize(ctx, "host.revoke-cert", ctx->seg[1]) < 0)
            return;
        rc = hosts_revoke_cert(ctx->m, ctx->user, ctx->seg[1]);
        if (rc >= 0)
            out = json_pack("{s:s,s:b}", "name", ctx->seg[1], "revoked", 1);
        goto done;
    }
    if (ctx->nseg == 2 && !strcmp(m, "GET")) {
        if (api_authorize(ctx, "host.get", ctx->seg[1]) < 0)
            return;
        json_t *all = NULL;
        rc = hosts_list(ctx->m, &all);
        if (rc >= 0) {
            size_t i;
            json_t *h;
            json_array_foreach(json_object_get(all, "hosts"), i, h) {
                if (!strcmp(json_string_value(json_object_get(h, "name")), ctx->seg[1]))
                    out = json_incref(h);
            }
            json_decref(all);
            if (!out)
                rc = vmseal_fail(ENOENT, "no host named %s", ctx->seg[1]);
        }
        goto done;
    }
    if (ctx->nseg == 2 && !strcmp(m, "DELETE")) {
        if (api_authorize(ctx, "host.remove", ctx->seg[1]) < 0)
            return;
        rc = hosts_remove(ctx->m, ctx->user, ctx->seg[1]);
        if (rc >= 0)
            out = json_pack("{s:s,s:b}", "name", ctx->seg[1], "deleted", 1);
        goto done;
    }
notfound:
    vmseal_http_error(ctx->resp, 404, "no such resource or method: %s %s", m, ctx->req->path);
    return;
done:
    if (rc < 0)
        api_fail(ctx, rc);
    else
        vmseal_http_json(ctx->resp, 200, out);
}
