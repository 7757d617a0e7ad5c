/* vmseal-managerd — a VM's network cards: carried to the VM's host
 * (hostd/nic.c checks and records them in vm.conf), audited here.
 *
 *   GET    /v1/vms/{uuid}/nics          list
 *   POST   /v1/vms/{uuid}/nics          add {mode, network?, mac?, forwards?}
 *   DELETE /v1/vms/{uuid}/nics/{mac}    remove
 * Events: vm.nic-add (new: the NIC as the host recorded it), vm.nic-remove
 * (old: {mac}). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <vmseal/http_client.h>

#include "managerd.h"

int vms_nic(manager *m, const char *user, const char *name, const char *method, const char *mac,
            const json_t *req, json_t **out)
{
    *out = NULL;
    char uuid[40], host[80];
    int rc = vms_locate(m, name, uuid, host, NULL);
    if (rc < 0)
        return rc;
    int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (!get) {
        long long t = tasks_open_for(m, uuid);
        if (t)
            return vmseal_fail(EBUSY, "VM %s is busy with task %lld", name, t);
    }
    char path[160];
    snprintf(path, sizeof(path), "/v1/vms/%s/nics%s%s", uuid, mac ? "/" : "", mac ? mac : "");
    long status = 0;
    json_t *resp = NULL;
    rc = hosts_call(m, host, method, path, post ? req : NULL, &status, &resp);
    if (rc < 0)
        return vmseal_fail(EREMOTEIO, "%s", vmseal_last_error());
    if (status < 200 || status > 299) {
        int e = status == 409 ? EBUSY : status == 400 ? EINVAL : status == 404 ? ENOENT : EREMOTEIO;
        rc = vmseal_fail(e, "host %s: %s", host, vmseal_http_error_text(resp));
        json_decref(resp);
        return rc;
    }
    if (post) {
        event_add(m, user, "vm.nic-add", name, NULL, resp);
    } else if (!get) {
        json_t *old = json_pack("{s:s}", "mac", mac ? mac : "");
        event_add(m, user, "vm.nic-remove", name, old, NULL);
        json_decref(old);
        json_decref(resp);
        resp = json_pack("{s:s, s:s, s:b}", "vm", name, "mac", mac ? mac : "", "removed", 1);
    }
    *out = resp;
    return 0;
}
