/* vmseal-managerd — /api/v1/vms and /api/v1/tasks
 *
 *   GET    /vms                    list
 *   POST   /vms                    create {name, host, cpus, memory_mb, disks[], ..., policy, kms?}
 *   GET    /vms/{name}             one VM, with the host's live view (?live=0 to skip)
 *   PATCH  /vms/{name}             {policy: "encrypted"|"none", kms?} -> 202 {task}
 *                                  or {cpus?, memory_mb?, kernel?, initrd?, append?} -> 200 VM
 *   POST   /vms/{name}/rekey       {deep?, kms?} -> 202 {task}
 *                                  or {folder} -> 200 VM (moved; "" = no folder)
 *   POST   /vms/{name}/power-on | power-off
 *   GET    /vms/{name}/log?tail=BYTES  guest console output (sealed on the host when encrypted)
 *   DELETE /vms/{name}
 *   POST   /vms/{name}/unregister     leave the inventory; the host keeps the VM
 *   POST   /vms/register              {host, uuid, name?, kms?}: take a host's VM back in
 * Which privilege each needs: api_table.c.
 *   GET    /tasks, GET /tasks/{id}
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "managerd.h"

void api_vms(api_ctx *ctx)
{
    const char *m = ctx->req->method;
    json_t *out = NULL, *b = NULL;
    int rc;
    if (ctx->nseg == 1 && !strcmp(m, "GET")) {
        if (api_authorize(ctx, "vm.list", NULL) < 0)
            return;
        rc = vms_list(ctx->m, &out);
        if (rc < 0) {
            api_fail(ctx, rc);
            return;
        }
        /* Only the VMs one may read (a NoAccess permission hides one). */
        json_t *arr = json_object_get(out, "vms");
        for (size_t i = json_array_size(arr); i-- > 0;) {
            char obj[96];
            snprintf(obj, sizeof(obj), "vm:%s", json_string_value(json_object_get(json_array_get(arr, i), "name")));
            if (!api_may(ctx, "System.Read", obj))
                json_array_remove(arr, i);
        }
        vmseal_http_json(ctx->resp, 200, out);
        return;
    }
    if (ctx->nseg == 1 && !strcmp(m, "POST")) {
        if (api_body(ctx, &schema_vm_create, &b) < 0)
            return;
        (void)vms_create(ctx->m, ctx, b);
        json_decref(b);
        return;
    }
    if (ctx->nseg == 2 && !strcmp(ctx->seg[1], "register") && !strcmp(m, "POST")) {
        if (api_body(ctx, &schema_vm_register, &b) < 0)
            return;
        (void)vms_register(ctx->m, ctx, b);
        json_decref(b);
        return;
    }
    if (ctx->nseg < 2 || ctx->nseg > 3 || !api_valid_name(ctx->seg[1])) {
        vmseal_http_error(ctx->resp, 404, "no such VM");
        return;
    }
    const char *name = ctx->seg[1];
    const char *sub = ctx->nseg == 3 ? ctx->seg[2] : NULL;
    if (!sub && !strcmp(m, "GET")) {
        if (api_authorize(ctx, "vm.get", name) < 0)
            return;
        const char *live = vmseal_http_query(ctx->req, "live");
        rc = vms_get(ctx->m, name, !(live && !strcmp(live, "0")), &out);
        if (rc < 0)
            api_fail(ctx, rc);
        else
            vmseal_http_json(ctx->resp, 200, out);
        return;
    }
    if (!sub && !strcmp(m, "PATCH")) {
        if (api_body(ctx, &schema_vm_patch, &b) < 0)
            return;
        int policy = json_object_get(b, "policy") != NULL;
        int folder = json_object_get(b, "folder") != NULL;
        size_t n = json_object_size(b);
        if (folder && n > 1)
            vmseal_http_error(ctx->resp, 400, "move a VM (folder) in a request of its own");
        else if (folder)
            (void)vms_move(ctx->m, ctx, name, json_string_value(json_object_get(b, "folder")));
        else if (policy && n > (json_object_get(b, "kms") ? 2u : 1u))
            vmseal_http_error(ctx->resp, 400,
                              "change the policy and the settings (cpus, memory_mb, kernel, "
                              "initrd, append) in separate requests");
        else if (!policy && json_object_get(b, "kms"))
            vmseal_http_error(ctx->resp, 400, "field 'kms' goes with 'policy'");
        else if (n == 0)
            vmseal_http_error(ctx->resp, 400,
                              "nothing to change: give policy, or cpus, memory_mb, kernel, initrd "
                              "or append");
        else if (policy)
            (void)vms_set_policy(ctx->m, ctx, name, b);
        else
            (void)vms_reconfigure(ctx->m, ctx, name, b);
        json_decref(b);
        return;
    }
    if (!sub && !strcmp(m, "DELETE")) {
        (void)vms_delete(ctx->m, ctx, name);
        return;
    }
    if (sub && !strcmp(sub, "rekey") && !strcmp(m, "POST")) {
        if (ctx->req->body_len && api_body(ctx, &schema_vm_rekey, &b) < 0)
            return;
        json_t *empty = b ? NULL : json_object();
        (void)vms_rekey(ctx->m, ctx, name, b ? b : empty);
        json_decref(b);
        json_decref(empty);
        return;
    }
    if (sub && !strcmp(sub, "unregister") && !strcmp(m, "POST")) {
        (void)vms_unregister(ctx->m, ctx, name);
        return;
    }
    if (sub && !strcmp(sub, "log") && !strcmp(m, "GET")) {
        long long tail = 65536;
        const char *t = vmseal_http_query(ctx->req, "tail");
        if (t) {
            char *end;
            tail = strtoll(t, &end, 10);
            if (end == t || *end || tail < 1 || tail > (1 << 20)) {
                vmseal_http_error(ctx->resp, 400, "tail must be 1..1048576 bytes");
                return;
            }
        }
        (void)vms_log(ctx->m, ctx, name, tail);
        return;
    }
    if (sub && (!strcmp(sub, "power-on") || !strcmp(sub, "power-off")) && !strcmp(m, "POST")) {
        (void)vms_power(ctx->m, ctx, name, !strcmp(sub, "power-on"));
        return;
    }
    vmseal_http_error(ctx->resp, 404, "no such resource or method: %s %s", m, ctx->req->path);
}

void api_tasks(api_ctx *ctx)
{
    if (strcmp(ctx->req->method, "GET") != 0 || ctx->nseg > 2) {
        vmseal_http_error(ctx->resp, 404, "use GET /api/v1/tasks[/ID]");
        return;
    }
    if (api_authorize(ctx, ctx->nseg == 1 ? "task.list" : "task.get", NULL) < 0)
        return;
    json_t *out = NULL;
    int rc;
    if (ctx->nseg == 1) {
        rc = tasks_list(ctx->m, &out);
    } else {
        char *end;
        long long id = strtoll(ctx->seg[1], &end, 10);
        if (*end || id <= 0) {
            vmseal_http_error(ctx->resp, 404, "no such task");
            return;
        }
        rc = tasks_get(ctx->m, id, &out);
    }
    if (rc < 0)
        api_fail(ctx, rc);
    else
        vmseal_http_json(ctx->resp, 200, out);
}
