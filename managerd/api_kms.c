/* vmseal-managerd — /api/v1/kms: key providers (KMIP server clusters).
 *
 *   GET    /kms                         list
 *   POST   /kms                         add {name, servers[], default?, username?}
 *   GET    /kms/{name}                  one provider
 *   PATCH  /kms/{name}                  {servers?, default: true?}
 *   DELETE /kms/{name}
 *   GET    /kms/{name}/status           reachability, TLS, certificates
 *   GET    /kms/{name}/server-certificate   what the server presents (unverified)
 *   PUT    /kms/{name}/trust            {ca_pem}: the manager trusts the KMS
 *   POST   /kms/{name}/csr              {common_name?} -> {csr_pem}
 *   PUT    /kms/{name}/client-certificate {cert_pem, key_pem?}: the KMS trusts us
 *   GET    /kms/{name}/orphans          keys of this manager on the servers it never recorded
 *   GET    /keys                        the KEKs the manager has recorded
 *   GET    /keys/{kek}                  one KEK and who uses it
 *   POST   /keys/cleanup                revoke and destroy KEKs nothing needs (now)
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"

void api_kms(api_ctx *ctx)
{
    const char *m = ctx->req->method;
    json_t *out = NULL, *b = NULL;
    int rc;
    if (ctx->nseg == 1 && !strcmp(m, "GET")) {
        if (api_authorize(ctx, "kms.list", NULL) < 0)
            return;
        rc = kms_provider_list(ctx->m, &out);
        goto done;
    }
    if (ctx->nseg == 1 && !strcmp(m, "POST")) {
        if (api_authorize(ctx, "kms.add", NULL) < 0 ||
            api_body(ctx, &schema_kms_add, &b) < 0)
            return;
        rc = kms_provider_add(ctx->m, ctx->user, b);
        if (rc >= 0)
            rc = kms_provider_get(ctx->m, json_string_value(json_object_get(b, "name")), &out);
        json_decref(b);
        if (rc >= 0) {
            vmseal_http_json(ctx->resp, 201, out);
            return;
        }
        goto done;
    }
    if (ctx->nseg < 2 || !api_valid_name(ctx->seg[1])) {
        vmseal_http_error(ctx->resp, 404, "no such key provider");
        return;
    }
    const char *name = ctx->seg[1];
    const char *sub = ctx->nseg == 3 ? ctx->seg[2] : NULL;
    if (ctx->nseg > 3)
        goto notfound;
    if (!sub && !strcmp(m, "GET")) {
        if (api_authorize(ctx, "kms.get", NULL) < 0)
            return;
        rc = kms_provider_get(ctx->m, name, &out);
    } else if (sub && !strcmp(sub, "orphans") && !strcmp(m, "GET")) {
        if (api_authorize(ctx, "kms.orphans", NULL) < 0)
            return;
        json_t *arr = NULL;
        rc = kms_provider_get(ctx->m, name, &out);
        json_decref(out);
        out = NULL;
        if (rc >= 0)
            rc = keys_orphans(ctx->m, name, &arr);
        if (rc >= 0)
            out = json_pack("{s:s,s:o}", "kms", name, "orphans", arr);
    } else if (!sub && !strcmp(m, "PATCH")) {
        if (api_authorize(ctx, "kms.update", NULL) < 0 ||
            api_body(ctx, &schema_kms_patch, &b) < 0)
            return;
        rc = kms_provider_patch(ctx->m, ctx->user, name, b);
        if (rc >= 0)
            rc = kms_provider_get(ctx->m, name, &out);
        json_decref(b);
    } else if (!sub && !strcmp(m, "DELETE")) {
        if (api_authorize(ctx, "kms.remove", NULL) < 0)
            return;
        rc = kms_provider_remove(ctx->m, ctx->user, name);
        if (rc >= 0)
            out = json_pack("{s:s,s:b}", "name", name, "deleted", 1);
    } else if (sub && !strcmp(sub, "status") && !strcmp(m, "GET")) {
        if (api_authorize(ctx, "kms.status", NULL) < 0)
            return;
        rc = kms_provider_status(ctx->m, name, &out);
    } else if (sub && !strcmp(sub, "server-certificate") && !strcmp(m, "GET")) {
        if (api_authorize(ctx, "kms.server-certificate", NULL) < 0)
            return;
        rc = kms_provider_peer_cert(ctx->m, name, &out);
    } else if (sub && !strcmp(sub, "trust") && !strcmp(m, "PUT")) {
        if (api_authorize(ctx, "kms.trust", NULL) < 0 ||
            api_body(ctx, &schema_kms_trust, &b) < 0)
            return;
        rc = kms_provider_trust(ctx->m, ctx->user, name, json_string_value(json_object_get(b, "ca_pem")));
        if (rc >= 0)
            rc = kms_provider_get(ctx->m, name, &out);
        json_decref(b);
    } else if (sub && !strcmp(sub, "csr") && !strcmp(m, "POST")) {
        if (api_authorize(ctx, "kms.csr", NULL) < 0)
            return;
        if (ctx->req->body_len && api_body(ctx, &schema_kms_csr, &b) < 0)
            return;
        const char *cn = b ? json_string_value(json_object_get(b, "common_name")) : NULL;
        char *csr = NULL;
        rc = kms_provider_csr(ctx->m, ctx->user, name, cn ? cn : "vmseal-manager", &csr);
        if (rc >= 0)
            out = json_pack("{s:s,s:s}", "name", name, "csr_pem", csr);
        free(csr);
        json_decref(b);
    } else if (sub && !strcmp(sub, "client-certificate") && !strcmp(m, "PUT")) {
        if (api_authorize(ctx, "kms.client-cert", NULL) < 0 ||
            api_body(ctx, &schema_kms_client_cert, &b) < 0)
            return;
        rc = kms_provider_client_cert(ctx->m, ctx->user, name,
                                      json_string_value(json_object_get(b, "cert_pem")),
                                      json_string_value(json_object_get(b, "key_pem")));
        if (rc >= 0)
            rc = kms_provider_get(ctx->m, name, &out);
        json_decref(b);
    } else {
        goto notfound;
    }
done:
    if (rc < 0)
        api_fail(ctx, rc);
    else
        vmseal_http_json(ctx->resp, 200, out);
    return;
notfound:
    vmseal_http_error(ctx->resp, 404, "no such resource or method: %s %s", m, ctx->req->path);
}

/* GET  /keys[?vm=NAME]   the KEK ids the manager recorded, with their VM
 *                         and state; never key material
 * GET  /keys/{kek}[?kms=NAME]  one KEK: its VM, the VMs and host using it,
 *                         running tasks, when it will be destroyed
 * POST /keys/cleanup      run the KEK clean-up pass now (key_retire.c) */
void api_keys(api_ctx *ctx)
{
    const char *m = ctx->req->method;
    json_t *out = NULL;
    int rc;
    if (ctx->nseg == 1 && !strcmp(m, "GET")) {
        if (api_authorize(ctx, "key.list", NULL) < 0)
            return;
        rc = keys_list(ctx->m, vmseal_http_query(ctx->req, "vm"), &out);
    } else if (ctx->nseg == 2 && !strcmp(m, "POST") && !strcmp(ctx->seg[1], "cleanup")) {
        if (api_authorize(ctx, "key.cleanup", NULL) < 0)
            return;
        rc = keys_retire_pass(ctx->m, &out);
        if (rc >= 0)
            event_add(ctx->m, ctx->user, "key.cleanup", "root", NULL, out);
    } else if (ctx->nseg == 2 && !strcmp(m, "GET")) {
        if (api_authorize(ctx, "key.info", NULL) < 0)
            return;
        rc = keys_info(ctx->m, ctx->seg[1], vmseal_http_query(ctx->req, "kms"), &out);
    } else {
        vmseal_http_error(ctx->resp, 404, "no such resource or method: %s %s", m, ctx->req->path);
        return;
    }
    api_reply(ctx, rc, 200, out);
}
