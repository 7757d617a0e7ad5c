/* vmseal-managerd — /api/v1/vms/{vm}/snapshots (a VM's snapshots,
 * hostd/snapshot.h): GET lists, POST {"name", "memory"} takes one,
 * POST .../{snapshot}/revert reverts to it, DELETE .../{snapshot} removes
 * it. The privileges are api_table.c's (VirtualMachine.State.*); the
 * snapshot's name is checked (vmseal_vmrec_snap_name_valid) before the
 * host sees it. */
#include <string.h>

#include "api.h"

void api_vm_snapshots(api_ctx *ctx)
{
    const char *m = ctx->req->method, *name = ctx->seg[1];
    const char *snap = ctx->nseg >= 4 ? ctx->seg[3] : NULL;
    const char *act = ctx->nseg == 5 ? ctx->seg[4] : NULL;
    json_t *out = NULL, *b = NULL;
    int rc;
    if (!snap && !strcmp(m, "GET")) {
        if (api_authorize(ctx, "vm.snapshot-list", name) < 0)
            return;
        rc = vms_snapshot(ctx->m, ctx->user, name, "list", NULL, 0, &out);
        api_reply(ctx, rc, 200, out);
        return;
    }
    if (!snap && !strcmp(m, "POST")) {
        if (api_body(ctx, &schema_vm_snapshot, &b) < 0)
            return;
        if (api_authorize(ctx, "vm.snapshot-create", name) >= 0) {
            rc = vms_snapshot(ctx->m, ctx->user, name, "create",
                              json_string_value(json_object_get(b, "name")),
                              json_is_true(json_object_get(b, "memory")), &out);
            api_reply(ctx, rc, 201, out);
        }
        json_decref(b);
        return;
    }
    if (snap && act && !strcmp(act, "revert") && !strcmp(m, "POST")) {
        if (api_authorize(ctx, "vm.snapshot-revert", name) < 0)
            return;
        rc = vms_snapshot(ctx->m, ctx->user, name, "revert", snap, 0, &out);
        api_reply(ctx, rc, 200, out);
        return;
    }
    if (snap && !act && !strcmp(m, "DELETE")) {
        if (api_authorize(ctx, "vm.snapshot-remove", name) < 0)
            return;
        rc = vms_snapshot(ctx->m, ctx->user, name, "remove", snap, 0, &out);
        api_reply(ctx, rc, 200, out);
        return;
    }
    vmseal_http_error(ctx->resp, 404, "no such resource or method: %s %s", m, ctx->req->path);
}
