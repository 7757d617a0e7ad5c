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
 *   POST   /vms/{name}/suspend | resume | discard-state
 *   POST   /vms/{name}/migrate        {"host"}: live migration, a task
 *   POST   /vms/{name}/dump                the guest's memory, sealed, into its home
 *   POST   /vms/{name}/disks       {size_mb} | {from: IMAGE} -> 202 the host's task
 *                                  | {adopt: IMAGE, passphrase, remove_passphrase?} -> 201 {disk}
 *   DELETE /vms/{name}/disks/{N}[?keep_file=1]  -> 200 the VM (powered off)
 *   POST   /vms/{name}/cdrom       {iso: NAME} | {eject: true} -> 200 (running or off)
 *   POST   /vms/{name}/clone       {name, host?, deep?, kms?} -> 201 the clone (powered off)
 *   GET    /vms/{name}/log?tail=BYTES  guest console output (sealed on the host when encrypted)
 *   DELETE /vms/{name}
 *   POST   /vms/{name}/unregister     leave the inventory; the host keeps the VM
 *   POST   /vms/register              {host, uuid, name?, kms?}: take a host's VM back in
 * Which privilege each needs: api_table.c.
 *   GET    /tasks, GET /tasks/{id}
 *   POST   /tasks/{id}/cancel     go back: stop the host's task, roll back what it did
 *   POST   /tasks/{id}/resume     go on: try again now, or run an ended task again
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"

/* POST /vms: the policy asked for, or the host's default, decides which
 * operation (and so which privileges) it is. */
static void vm_create(api_ctx *ctx, const json_t *req)
{
    const char *host = json_string_value(json_object_get(req, "host"));
    const char *folder = json_string_value(json_object_get(req, "folder"));
    const char *policy = json_string_value(json_object_get(req, "policy"));
    char host_default[16];
    (void)vms_host_default_policy(ctx->m, host, host_default, sizeof(host_default));
    if (!policy)
        policy = host_default;
    const char *op = !strcmp(policy, "encrypted") ? "vm.create-encrypted" : "vm.create";
    char fobj[80];
    snprintf(fobj, sizeof(fobj), "folder:%s", folder ? folder : "");
    if (api_authorize(ctx, op, host) < 0 ||
        (folder && api_authorize_set(ctx, op, fobj, privset_parse(api_op_find(op)->privileges)) < 0))
        return;
    json_t *out = NULL;
    int rc = vms_create(ctx->m, ctx->user, req, policy, &out);
    api_reply(ctx, rc, 201, out);
}

/* POST /vms/register: an encrypted VM needs Cryptographer.RegisterVM on the
 * host as well, which only the host's view tells. */
static void vm_register(api_ctx *ctx, const json_t *req)
{
    const char *host = json_string_value(json_object_get(req, "host"));
    if (api_authorize(ctx, "vm.register", host) < 0)
        return;
    json_t *vm = NULL;
    int rc = vms_register_probe(ctx->m, host, json_string_value(json_object_get(req, "uuid")), &vm);
    if (rc < 0) {
        api_fail(ctx, rc);
        return;
    }
    char hobj[96];
    snprintf(hobj, sizeof(hobj), "host:%s", host);
    if (json_is_true(json_object_get(vm, "encrypted")) &&
        api_authorize_set(ctx, "vm.register", hobj,
                          privset_parse(api_op_find("vm.register-encrypted")->privileges)) < 0) {
        json_decref(vm);
        return;
    }
    json_t *out = NULL;
    rc = vms_register(ctx->m, ctx->user, req, vm, &out);
    json_decref(vm);
    api_reply(ctx, rc, 201, out);
}

/* PATCH {folder}: the privilege on the VM and on the folder it goes to
 * (else a VM could be moved to where someone holds more on it). */
static void vm_move(api_ctx *ctx, const char *name, const char *folder)
{
    if (*folder && !api_valid_name(folder)) {
        vmseal_http_error(ctx->resp, 400, "invalid folder name %s", folder);
        return;
    }
    char dest[96];
    snprintf(dest, sizeof(dest), "folder:%s", folder);
    if (api_authorize(ctx, "vm.move", name) < 0 ||
        (*folder && api_authorize_set(ctx, "vm.move", dest, privset_parse(api_op_find("vm.move")->privileges)) < 0))
        return;
    json_t *out = NULL;
    int rc = vms_move(ctx->m, ctx->user, name, folder, &out);
    api_reply(ctx, rc, 200, out);
}

/* PATCH {policy, kms?}: encrypt or decrypt (202 {task}), or nothing to do
 * (200 VM). */
static void vm_set_policy(api_ctx *ctx, const char *name, const json_t *req)
{
    int rc = vms_find(ctx->m, name);
    if (rc < 0) {
        api_fail(ctx, rc);
        return;
    }
    const char *want = json_string_value(json_object_get(req, "policy"));
    if (api_authorize(ctx, !strcmp(want, "encrypted") ? "vm.encrypt" : "vm.decrypt", name) < 0)
        return;
    json_t *out = NULL;
    rc = vms_set_policy(ctx->m, ctx->user, name, want, json_string_value(json_object_get(req, "kms")), &out);
    api_reply(ctx, rc, rc == 1 ? 202 : 200, out);
}

/* PATCH {cpus?, memory_mb?, kernel?, initrd?, append?}: changing how a VM
 * boots is a cryptographic act when the VM is encrypted (a new kernel or
 * initrd could read its data out). */
static void vm_reconfigure(api_ctx *ctx, const char *name, const json_t *req)
{
    int boot = json_object_get(req, "kernel") || json_object_get(req, "initrd") || json_object_get(req, "append") ||
               json_object_get(req, "tpm");
    if (api_authorize(ctx, boot ? "vm.reconfigure-boot" : "vm.reconfigure", name) < 0)
        return;
    json_t *out = NULL;
    int rc = vms_reconfigure(ctx->m, ctx->user, name, req, &out);
    api_reply(ctx, rc, 200, out);
}

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
        vm_create(ctx, b);
        json_decref(b);
        return;
    }
    if (ctx->nseg == 2 && !strcmp(ctx->seg[1], "register") && !strcmp(m, "POST")) {
        if (api_body(ctx, &schema_vm_register, &b) < 0)
            return;
        vm_register(ctx, b);
        json_decref(b);
        return;
    }
    if (ctx->nseg >= 3 && ctx->nseg <= 4 && !strcmp(ctx->seg[2], "nics") && api_valid_name(ctx->seg[1])) {
        api_vm_nics(ctx);
        return;
    }
    if (ctx->nseg == 4 && !strcmp(ctx->seg[2], "disks") && api_valid_name(ctx->seg[1])) {
        /* DELETE /vms/{name}/disks/{N}[?keep_file=1] */
        char *end = NULL;
        long n = strtol(ctx->seg[3], &end, 10);
        const char *keep = vmseal_http_query(ctx->req, "keep_file");
        if (strcmp(m, "DELETE") != 0)
            vmseal_http_error(ctx->resp, 405, "use DELETE");
        else if (!ctx->seg[3][0] || *end || n < 0 || n > 7 || (keep && strcmp(keep, "0") && strcmp(keep, "1")))
            vmseal_http_error(ctx->resp, 400, "a disk index 0..7 (and keep_file=0|1)");
        else if (api_authorize(ctx, "vm.disk-remove", ctx->seg[1]) >= 0) {
            rc = vms_remove_disk(ctx->m, ctx->user, ctx->seg[1], (int)n, keep && !strcmp(keep, "1"), &out);
            api_reply(ctx, rc, 200, out);
        }
        return;
    }
    if (ctx->nseg >= 3 && ctx->nseg <= 5 && !strcmp(ctx->seg[2], "snapshots") &&
        api_valid_name(ctx->seg[1])) {
        api_vm_snapshots(ctx);   /* api_vms_snap.c */
        return;
    }
    if (ctx->nseg < 2 || ctx->nseg > 3 || !api_valid_name(ctx->seg[1])) {
        vmseal_http_error(ctx->resp, 404, "no such VM");
        return;
    }
    const char *name = ctx->seg[1];
    const char *sub = ctx->nseg == 3 ? ctx->seg[2] : NULL;
    if (sub && (!strcmp(sub, "console") || !strcmp(sub, "vnc"))) {
        api_vm_console(ctx, name, !strcmp(sub, "vnc"));
        return;
    }
    if (!sub && !strcmp(m, "GET")) {
        if (api_authorize(ctx, "vm.get", name) < 0)
            return;
        const char *live = vmseal_http_query(ctx->req, "live");
        rc = vms_get(ctx->m, name, !(live && !strcmp(live, "0")), &out);
        api_reply(ctx, rc, 200, out);
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
        else if (json_object_get(b, "boot") && n > 1)
            vmseal_http_error(ctx->resp, 400, "set the boot order in a request of its own");
        else if (json_object_get(b, "boot")) {
            /* how the VM boots: Cryptographer.Encrypt too when encrypted
             * (booting a CD-ROM first could read the disks out) */
            if (api_authorize(ctx, "vm.reconfigure-boot", name) >= 0) {
                json_t *hb = json_pack("{s:O}", "order", json_object_get(b, "boot"));
                rc = vms_host_setting(ctx->m, ctx->user, name, "boot", "vm.boot-order", hb, &out);
                json_decref(hb);
                json_decref(out);
                out = NULL;
                if (rc == 0)
                    rc = vms_get(ctx->m, name, 1, &out);
                api_reply(ctx, rc, 200, out);
            }
        }
        else if (folder)
            vm_move(ctx, name, json_string_value(json_object_get(b, "folder")));
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
            vm_set_policy(ctx, name, b);
        else
            vm_reconfigure(ctx, name, b);
        json_decref(b);
        return;
    }
    if (!sub && !strcmp(m, "DELETE")) {
        if (api_authorize(ctx, "vm.delete", name) < 0)
            return;
        rc = vms_delete(ctx->m, ctx->user, name);
        api_reply(ctx, rc, 200, rc < 0 ? NULL : json_pack("{s:s,s:b}", "name", name, "deleted", 1));
        return;
    }
    if (sub && !strcmp(sub, "rekey") && !strcmp(m, "POST")) {
        if (ctx->req->body_len && api_body(ctx, &schema_vm_rekey, &b) < 0)
            return;
        if (api_authorize(ctx, "vm.rekey", name) >= 0) {
            rc = vms_rekey(ctx->m, ctx->user, name, json_is_true(json_object_get(b, "deep")),
                           json_string_value(json_object_get(b, "kms")), &out);
            api_reply(ctx, rc, 202, out);
        }
        json_decref(b);
        return;
    }
    if (sub && !strcmp(sub, "unregister") && !strcmp(m, "POST")) {
        if (api_authorize(ctx, "vm.unregister", name) < 0)
            return;
        char uuid[40] = "";
        rc = vms_unregister(ctx->m, ctx->user, name, uuid);
        api_reply(ctx, rc, 200,
                  rc < 0 ? NULL : json_pack("{s:s,s:s,s:b}", "name", name, "uuid", uuid, "registered", 0));
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
        if (api_authorize(ctx, "vm.log", name) < 0)
            return;
        rc = vms_log(ctx->m, ctx->user, name, tail, &out);
        api_reply(ctx, rc, 200, out);
        return;
    }
    if (sub && !strcmp(sub, "export") && !strcmp(m, "POST")) {
        if (api_body(ctx, &schema_vm_export, &b) < 0)
            return;
        /* the ciphertext reveals nothing without the KEK: no crypto privilege */
        const char *op = json_is_true(json_object_get(b, "ciphertext")) ? "vm.export-ciphertext"
                                                                          : "vm.export";
        if (api_authorize(ctx, op, name) >= 0) {
            rc = vms_export(ctx->m, ctx->user, name, b, &out);
            api_reply(ctx, rc, 200, out);
        }
        json_decref(b);
        return;
    }
    if (sub && !strcmp(sub, "disks") && !strcmp(m, "POST")) {
        /* Cryptographer.AddDisk too when the VM is encrypted (api_table.c) */
        if (api_body(ctx, &schema_disk_add, &b) < 0)
            return;
        int kinds = !!json_object_get(b, "size_mb") + !!json_object_get(b, "from") +
                    !!json_object_get(b, "adopt");
        int adopt = json_object_get(b, "adopt") != NULL;
        if (kinds != 1)
            vmseal_http_error(ctx->resp, 400, "give size_mb, from or adopt (an image in the host's "
                              "images folder), one of them");
        else if (adopt != (json_object_get(b, "passphrase") != NULL) ||
                 (!adopt && json_object_get(b, "remove_passphrase")))
            vmseal_http_error(ctx->resp, 400, "passphrase (and remove_passphrase) go with adopt only, "
                              "and adopt needs the passphrase");
        else if (api_authorize(ctx, "vm.disk-add", name) >= 0) {
            rc = vms_add_disk(ctx->m, ctx->user, name, b, &out);
            api_reply(ctx, rc, adopt ? 201 : 202, out);
        }
        json_decref(b);
        return;
    }
    if (sub && !strcmp(sub, "cdrom") && !strcmp(m, "POST")) {
        if (api_body(ctx, &schema_vm_cdrom, &b) < 0)
            return;
        if (!json_object_get(b, "iso") == !json_is_true(json_object_get(b, "eject")))
            vmseal_http_error(ctx->resp, 400, "give iso (an ISO in the host's images folder) or eject: true");
        else if (api_authorize(ctx, "vm.cdrom", name) >= 0) {
            rc = vms_host_setting(ctx->m, ctx->user, name, "cdrom", "vm.cdrom", b, &out);
            api_reply(ctx, rc, 200, out);
        }
        json_decref(b);
        return;
    }
    if (sub && !strcmp(sub, "clone") && !strcmp(m, "POST")) {
        /* on the source (+ Cryptographer.Clone when encrypted), and create
         * rights on the host the clone is made on */
        if (api_body(ctx, &schema_vm_clone, &b) < 0)
            return;
        char host[80], uuid[40], hobj[96];
        int enc = 0;
        rc = vms_locate(ctx->m, name, uuid, host, &enc);
        if (rc < 0)
            api_fail(ctx, rc);
        else if (api_authorize(ctx, "vm.clone", name) >= 0 &&
                 api_authorize_set(ctx, "vm.clone", (snprintf(hobj, sizeof(hobj), "host:%s", host), hobj),
                                   privset_parse("VirtualMachine.Inventory.Create")) >= 0) {
            rc = vms_clone(ctx->m, ctx->user, name, b, &out);
            api_reply(ctx, rc, 201, out);
        }
        json_decref(b);
        return;
    }
    if (sub && (!strcmp(sub, "power-on") || !strcmp(sub, "power-off")) && !strcmp(m, "POST")) {
        int on = !strcmp(sub, "power-on");
        if (api_authorize(ctx, on ? "vm.power-on" : "vm.power-off", name) < 0)
            return;
        rc = vms_power(ctx->m, ctx->user, name, on, &out);
        api_reply(ctx, rc, 200, out);
        return;
    }
    if (sub && !strcmp(sub, "migrate") && !strcmp(m, "POST")) {
        /* a running VM to another host (managerd/migrate.c): a task */
        if (api_body(ctx, &schema_vm_migrate, &b) < 0)
            return;
        if (api_authorize(ctx, "vm.migrate", name) >= 0) {
            rc = vms_migrate(ctx->m, ctx->user, name, json_string_value(json_object_get(b, "host")), &out);
            api_reply(ctx, rc, 202, out);
        }
        json_decref(b);
        return;
    }
    if (sub && (!strcmp(sub, "suspend") || !strcmp(sub, "resume") || !strcmp(sub, "discard-state")) &&
        !strcmp(m, "POST")) {
        if (!strcmp(sub, "resume") && ctx->req->body_len && api_body(ctx, &schema_vm_resume, &b) < 0)
            return;
        const char *to = json_string_value(json_object_get(b, "host"));
        char op[32];
        snprintf(op, sizeof(op), "vm.%s%s", sub, to ? "-host" : "");
        if (api_authorize(ctx, op, name) >= 0) {
            rc = vms_state(ctx->m, ctx->user, name, sub, to, &out);
            api_reply(ctx, rc, 200, out);
        }
        json_decref(b);
        return;
    }
    if (sub && !strcmp(sub, "dump") && !strcmp(m, "POST")) {
        if (api_authorize(ctx, "vm.dump", name) < 0)
            return;
        rc = vms_dump(ctx->m, ctx->user, name, &out);
        api_reply(ctx, rc, 200, out);
        return;
    }
    vmseal_http_error(ctx->resp, 404, "no such resource or method: %s %s", m, ctx->req->path);
}

/* POST /tasks/{id}/cancel | resume: checked on the task's VM. Resuming
 * needs the privilege of the task's own operation (it carries it out);
 * cancelling needs Global.CancelTask and that privilege too, since rolling
 * an encrypt, decrypt or rekey back decides the VM's encryption as much as
 * running it (a No Cryptography Administrator may not keep a VM from being
 * encrypted). */
static void task_act(api_ctx *ctx, long long id, const char *what)
{
    json_t *t = NULL;
    int rc = tasks_get(ctx->m, id, &t);
    if (rc < 0) {
        api_fail(ctx, rc);
        return;
    }
    const char *action = json_string_value(json_object_get(t, "action"));
    const char *vm = json_string_value(json_object_get(t, "vm"));   /* NULL: the VM is gone */
    int cancel = !strcmp(what, "cancel");
    const char *op = !action                       ? NULL
                     : !strcmp(action, "encrypt")  ? (cancel ? "task.cancel-encrypt" : "task.resume-encrypt")
                     : !strcmp(action, "decrypt")  ? (cancel ? "task.cancel-decrypt" : "task.resume-decrypt")
                     : !strncmp(action, "recrypt", 7) ? (cancel ? "task.cancel-rekey" : "task.resume-rekey")
                     /* stopping or finishing an import: what adding the disk needs */
                     : !strcmp(action, "import")   ? "vm.disk-add"
                                                   : NULL;
    if (!op) {
        json_decref(t);
        vmseal_http_error(ctx->resp, 409, "task %lld (%s) cannot be %s", id, action ? action : "?",
                          cancel ? "cancelled" : "resumed");
        return;
    }
    rc = api_authorize(ctx, op, vm);
    json_decref(t);
    if (rc < 0)
        return;
    json_t *out = NULL;
    rc = cancel ? tasks_cancel(ctx->m, ctx->user, id, &out)
                                 : tasks_resume(ctx->m, ctx->user, id, &out);
    api_reply(ctx, rc, 202, out);
}

void api_tasks(api_ctx *ctx)
{
    if (ctx->nseg == 3 && !strcmp(ctx->req->method, "POST") &&
        (!strcmp(ctx->seg[2], "cancel") || !strcmp(ctx->seg[2], "resume"))) {
        char *end;
        long long id = strtoll(ctx->seg[1], &end, 10);
        if (*end || id <= 0) {
            vmseal_http_error(ctx->resp, 404, "no such task");
            return;
        }
        task_act(ctx, id, ctx->seg[2]);
        return;
    }
    if (strcmp(ctx->req->method, "GET") != 0 || ctx->nseg > 2) {
        vmseal_http_error(ctx->resp, 404, "use GET /api/v1/tasks[/ID], POST /api/v1/tasks/ID/cancel|resume");
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
    api_reply(ctx, rc, 200, out);
}
