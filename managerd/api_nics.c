/* vmseal-managerd — /api/v1/vms/{vm}/nics (a VM's network cards)
 *
 *   GET    /vms/{vm}/nics          list                      System.Read
 *   POST   /vms/{vm}/nics          add {mode?, network?, mac?, forwards?}
 *   DELETE /vms/{vm}/nics/{mac}    remove
 * Adding and removing need VirtualMachine.Config.AddRemoveDevice on the VM
 * (api_table.c); the host hot-plugs a user-mode NIC into a running VM and
 * says 409 for other changes while it runs. */
#include <string.h>

#include "api.h"

void api_vm_nics(api_ctx *ctx)
{
    const char *m = ctx->req->method, *name = ctx->seg[1];
    const char *mac = ctx->nseg == 4 ? ctx->seg[3] : NULL;
    json_t *out = NULL, *b = NULL;
    int rc;
    if (!mac && !strcmp(m, "GET")) {
        if (api_authorize(ctx, "vm.nic-list", name) < 0)
            return;
        rc = vms_nic(ctx->m, ctx->user, name, "GET", NULL, NULL, &out);
        api_reply(ctx, rc, 200, out);
        return;
    }
    if (!mac && !strcmp(m, "POST")) {
        if (api_body(ctx, &schema_vm_nic_add, &b) < 0)
            return;
        if (api_authorize(ctx, "vm.nic-add", name) >= 0) {
            rc = vms_nic(ctx->m, ctx->user, name, "POST", NULL, b, &out);
            api_reply(ctx, rc, 201, out);
        }
        json_decref(b);
        return;
    }
    if (mac && !strcmp(m, "DELETE")) {
        if (strlen(mac) != 17 || strspn(mac, "0123456789abcdefABCDEF:") != 17) {
            vmseal_http_error(ctx->resp, 404, "no such NIC (give its MAC address)");
            return;
        }
        if (api_authorize(ctx, "vm.nic-remove", name) < 0)
            return;
        rc = vms_nic(ctx->m, ctx->user, name, "DELETE", mac, NULL, &out);
        api_reply(ctx, rc, 200, out);
        return;
    }
    vmseal_http_error(ctx->resp, 405, "use GET or POST /vms/{vm}/nics, DELETE /vms/{vm}/nics/{mac}");
}
