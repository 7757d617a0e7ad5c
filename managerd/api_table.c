/* vmseal-managerd — the one table of what each API endpoint (and so each
 * CLI verb) needs. Handlers call api_authorize(ctx, "OP", object) with an op
 * id from this table; `vmseal-managerd api-table` prints it, docs/api.md is
 * checked against it (tests/managerd/test_api_table.sh), and the role matrix
 * test (tests/managerd/test_authz_matrix.py) drives every row.
 *
 * Columns:
 *   id         the op id, also the action of the "denied" event
 *   method     HTTP method
 *   path       path under /api/v1 ({vm}, {host}, {kms}, {user}, {role},
 *              {group}, {id}, {kek} are names)
 *   privileges every one of these is needed (space-separated), on `on`
 *   crypto     also needed when the VM is encrypted (VM ops only)
 *   on         where the privileges are checked: root, vm, host, object
 *              ("object" = the object named in the request body)
 *   cli        the CLI verb that calls it
 *   note       when the row applies, for ops that share a method and path
 */
#include <stddef.h>
#include <string.h>

#include "api.h"

/* Every privilege, with vSphere's names where vSphere has one. */
const mgr_privilege mgr_privileges[] = {
    {"System.View", "see that objects exist", NULL},
    {"System.Read", "read objects, events and tasks", NULL},
    {"Global.Diagnostics", "read the manager's diagnostics", NULL},
    {"Global.CancelTask", "cancel a task (what it did is rolled back)", NULL},
    {"Authorization.ModifyRoles", "create, change and remove roles", NULL},
    {"Authorization.ModifyPermissions", "manage users, groups and permissions", NULL},
    {"Cryptographer.Access", "see an encrypted VM's console and guest output", NULL},
    {"Cryptographer.AddDisk", "add disks to an encrypted VM", NULL},
    {"Cryptographer.Clone", "clone an encrypted VM (the clone gets its own KEK and disk secrets)", NULL},
    {"Cryptographer.Decrypt", "decrypt a VM", NULL},
    {"Cryptographer.Encrypt", "encrypt a VM; change how an encrypted VM boots", NULL},
    {"Cryptographer.EncryptNew", "create an encrypted VM", NULL},
    {"Cryptographer.ExportDisk", "export an encrypted VM's disk decrypted (backup over NBD-TLS)", NULL},
    {"Cryptographer.ManageEncryptionPolicy", "set a host's default encryption policy", NULL},
    {"Cryptographer.ManageKeyServers", "add, change, trust and remove key providers", NULL},
    {"Cryptographer.ManageKeys", "list the KEKs the manager has recorded", NULL},
    {"Cryptographer.Migrate", "migrate an encrypted VM", NULL},
    {"Cryptographer.ReadKeyServersInfo", "read key providers and their status", NULL},
    {"Cryptographer.Recrypt", "rekey a VM (shallow or deep)", NULL},
    {"Cryptographer.RegisterHost", "approve or revoke a host certificate (key delivery); turn host encryption mode on or off", NULL},
    {"Cryptographer.RegisterVM", "register an encrypted VM found on a host", NULL},
    {"Resource.HotMigrateVM", "live-migrate a running VM to another host", NULL},
    {"Host.Inventory.AddStandaloneHost", "approve a host's new certificate", NULL},
    {"Host.Inventory.RemoveHost", "remove a host", NULL},
    {"Host.Config.Settings", "change a host's settings", NULL},
    {"VirtualMachine.Inventory.Create", "create a VM", NULL},
    {"VirtualMachine.Inventory.Delete", "delete a VM", NULL},
    {"VirtualMachine.Inventory.Move", "move a VM to another folder", NULL},
    {"VirtualMachine.Inventory.Register", "take a VM found on a host into the inventory", NULL},
    {"VirtualMachine.Inventory.Unregister", "remove a VM from the inventory, keeping it on its host", NULL},
    {"VirtualMachine.Interact.PowerOn", "power a VM on; resume a suspended VM", NULL},
    {"VirtualMachine.Interact.PowerOff", "power a VM off; discard a suspended VM's saved state", NULL},
    {"VirtualMachine.Interact.Suspend", "suspend a VM (its memory state to a sealed file)", NULL},
    {"VirtualMachine.Interact.SetCDMedia", "insert or eject a VM's CD-ROM medium (an ISO of its host)", NULL},
    {"VirtualMachine.Interact.ConsoleInteract", "see a VM's console and guest output", NULL},
    {"VirtualMachine.Config.Settings", "change a VM's settings", NULL},
    {"VirtualMachine.Config.RemoveDisk", "remove a disk from a VM", NULL},
    {"VirtualMachine.Config.AddRemoveDevice", "add or remove a VM's devices (network cards)", NULL},
    {"VirtualMachine.Provisioning.DiskRandomRead", "read a VM's disk (a one-time backup export)", NULL},
    {"VirtualMachine.Provisioning.Clone", "clone a VM", NULL},
    {"VirtualMachine.State.CreateSnapshot", "take a snapshot of a VM (its memory sealed for an encrypted VM)", NULL},
    {"VirtualMachine.State.RevertToSnapshot", "revert a VM to its latest snapshot", NULL},
    {"VirtualMachine.State.RemoveSnapshot", "remove a snapshot (its layer merged into the one below)", NULL},
    {NULL, NULL, NULL},
};

const api_op mgr_api_ops[] = {
    /* sessions: any authenticated user */
    {"session.login", "POST", "/session", NULL, NULL, "root", "login", "no token needed"},
    {"session.get", "GET", "/session", NULL, NULL, "root", "whoami", NULL},
    {"session.logout", "DELETE", "/session", NULL, NULL, "root", "logout", NULL},
    {"whoami.on", "GET", "/session/privileges", "System.View", NULL, "object", "whoami --on OBJECT",
     "?object=vm:NAME|host:NAME|folder:NAME|root"},
    /* users */
    {"user.list", "GET", "/users", "System.Read", NULL, "root", "user ls", NULL},
    {"user.create", "POST", "/users", "Authorization.ModifyPermissions", NULL, "root", "user add",
     "and every privilege of the role"},
    {"user.get", "GET", "/users/{user}", "System.Read", NULL, "root", "user show", "oneself: none"},
    {"user.role", "PATCH", "/users/{user}", "Authorization.ModifyPermissions", NULL, "root", "user role",
     "and every privilege of the new role and of the user"},
    {"user.password", "PUT", "/users/{user}/password", "Authorization.ModifyPermissions", NULL, "root",
     "user passwd", "and every privilege of the user; oneself: old_password instead"},
    {"user.delete", "DELETE", "/users/{user}", "Authorization.ModifyPermissions", NULL, "root", "user rm",
     "and every privilege of the user"},
    /* roles */
    {"role.list", "GET", "/roles", "System.Read", NULL, "root", "role ls", NULL},
    {"role.create", "POST", "/roles", "Authorization.ModifyRoles", NULL, "root", "role add",
     "and every privilege put in the role"},
    {"role.update", "PATCH", "/roles/{role}", "Authorization.ModifyRoles", NULL, "root", "role set",
     "and every privilege of the role before and after"},
    {"role.delete", "DELETE", "/roles/{role}", "Authorization.ModifyRoles", NULL, "root", "role rm",
     "and every privilege of the role"},
    /* groups and permissions */
    {"group.list", "GET", "/groups", "System.Read", NULL, "root", "group ls", NULL},
    {"group.create", "POST", "/groups", "Authorization.ModifyPermissions", NULL, "root", "group add", NULL},
    {"group.delete", "DELETE", "/groups/{group}", "Authorization.ModifyPermissions", NULL, "root",
     "group rm", "and every privilege the group's permissions grant"},
    {"group.member-add", "PUT", "/groups/{group}/members/{user}", "Authorization.ModifyPermissions", NULL,
     "root", "group add-user", "and every privilege the group grants and the user holds"},
    {"group.member-rm", "DELETE", "/groups/{group}/members/{user}", "Authorization.ModifyPermissions",
     NULL, "root", "group rm-user", "and every privilege the group grants and the user holds"},
    {"permission.list", "GET", "/permissions", "System.Read", NULL, "root", "permission ls", NULL},
    {"permission.add", "POST", "/permissions", "Authorization.ModifyPermissions", NULL, "object",
     "permission add", "and every privilege of the role, on that object"},
    {"permission.remove", "DELETE", "/permissions", "Authorization.ModifyPermissions", NULL, "object",
     "permission rm", "and every privilege of the role, on that object"},
    /* events and diagnostics */
    {"event.list", "GET", "/events", "System.Read", NULL, "root", "events", NULL},
    {"event.verify", "GET", "/events/verify", "System.Read", NULL, "root", "events verify", NULL},
    {"diagnostics.get", "GET", "/diagnostics", "Global.Diagnostics", NULL, "root", "diagnostics", NULL},
    /* key providers */
    {"kms.list", "GET", "/kms", "Cryptographer.ReadKeyServersInfo", NULL, "root", "kms ls", NULL},
    {"kms.add", "POST", "/kms", "Cryptographer.ManageKeyServers", NULL, "root", "kms add", NULL},
    {"kms.get", "GET", "/kms/{kms}", "Cryptographer.ReadKeyServersInfo", NULL, "root", "kms show", NULL},
    {"kms.update", "PATCH", "/kms/{kms}", "Cryptographer.ManageKeyServers", NULL, "root",
     "kms servers | kms default | kms credentials", NULL},
    {"kms.remove", "DELETE", "/kms/{kms}", "Cryptographer.ManageKeyServers", NULL, "root", "kms rm", NULL},
    {"kms.status", "GET", "/kms/{kms}/status", "Cryptographer.ReadKeyServersInfo", NULL, "root",
     "kms status", NULL},
    {"kms.server-certificate", "GET", "/kms/{kms}/server-certificate", "Cryptographer.ManageKeyServers",
     NULL, "root", "kms trust", NULL},
    {"kms.trust", "PUT", "/kms/{kms}/trust", "Cryptographer.ManageKeyServers", NULL, "root", "kms trust",
     NULL},
    {"kms.csr", "POST", "/kms/{kms}/csr", "Cryptographer.ManageKeyServers", NULL, "root", "kms csr", NULL},
    {"kms.client-cert", "PUT", "/kms/{kms}/client-certificate", "Cryptographer.ManageKeyServers", NULL,
     "root", "kms client-cert", NULL},
    {"key.list", "GET", "/keys", "Cryptographer.ManageKeys", NULL, "root", "keys ls", NULL},
    {"key.info", "GET", "/keys/{kek}", "Cryptographer.ManageKeys", NULL, "root", "keys info", NULL},
    {"key.cleanup", "POST", "/keys/cleanup", "Cryptographer.ManageKeys", NULL, "root", "keys cleanup", NULL},
    {"kms.orphans", "GET", "/kms/{kms}/orphans", "Cryptographer.ManageKeys", NULL, "root", "keys ls --orphans", NULL},
    /* hosts (host agents use /hosts/register and /hosts/self/... with their certificate) */
    {"host.list", "GET", "/hosts", NULL, NULL, "root", "host ls", "lists the hosts one may read (System.Read)"},
    {"host.get", "GET", "/hosts/{host}", "System.Read", NULL, "host", "host show", NULL},
    {"host.remove", "DELETE", "/hosts/{host}", "Host.Inventory.RemoveHost", NULL, "host", "host rm", NULL},
    {"host.approve-cert", "POST", "/hosts/{host}/approve-cert",
     "Host.Inventory.AddStandaloneHost Cryptographer.RegisterHost", NULL, "host", "host approve-cert",
     "the certificate a known host presented; the old one is revoked"},
    {"host.revoke-cert", "POST", "/hosts/{host}/revoke-cert", "Cryptographer.RegisterHost", NULL, "host",
     "host revoke-cert", NULL},
    {"host.default-policy", "PUT", "/hosts/{host}/default-policy",
     "Host.Config.Settings Cryptographer.ManageEncryptionPolicy", NULL, "host", "host default-policy",
     NULL},
    {"host.encryption-mode", "PUT", "/hosts/{host}/encryption-mode",
     "Host.Config.Settings Cryptographer.RegisterHost", NULL, "host", "host encryption-mode enable | host encryption-mode disable",
     "{\"enabled\"}; disabling is refused (409) while encrypted VMs are on the host"},
    {"host.encryption-mode-get", "GET", "/hosts/{host}/encryption-mode", "System.Read", NULL, "host",
     "host encryption-mode show", "as the host agent reports it"},
    /* VMs */
    {"vm.list", "GET", "/vms", NULL, NULL, "root", "vm ls", "lists the VMs one may read (System.Read)"},
    {"vm.create", "POST", "/vms", "VirtualMachine.Inventory.Create", NULL, "host", "vm create",
     "on the VM's host"},
    {"vm.create-encrypted", "POST", "/vms", "VirtualMachine.Inventory.Create Cryptographer.EncryptNew",
     NULL, "host", "vm create --encrypt", "policy encrypted, or the host's default"},
    {"vm.register", "POST", "/vms/register", "VirtualMachine.Inventory.Register", NULL, "host",
     "vm register", "on the VM's host; a plain VM"},
    {"vm.register-encrypted", "POST", "/vms/register",
     "VirtualMachine.Inventory.Register Cryptographer.RegisterVM", NULL, "host", "vm register",
     "on the VM's host; an encrypted VM"},
    {"vm.unregister", "POST", "/vms/{vm}/unregister", "VirtualMachine.Inventory.Unregister", NULL, "vm",
     "vm unregister", NULL},
    {"vm.get", "GET", "/vms/{vm}", "System.Read", NULL, "vm", "vm info", NULL},
    {"vm.encrypt", "PATCH", "/vms/{vm}", "Cryptographer.Encrypt", NULL, "vm", "vm encrypt",
     "policy encrypted"},
    {"vm.decrypt", "PATCH", "/vms/{vm}", "Cryptographer.Decrypt", NULL, "vm", "vm decrypt", "policy none"},
    {"vm.reconfigure", "PATCH", "/vms/{vm}", "VirtualMachine.Config.Settings", NULL, "vm", "vm set",
     "cpus, memory_mb"},
    {"vm.reconfigure-boot", "PATCH", "/vms/{vm}", "VirtualMachine.Config.Settings",
     "Cryptographer.Encrypt", "vm", "vm set | vm tpm | vm set --boot", "kernel, initrd, append, tpm; boot (alone)"},
    {"vm.move", "PATCH", "/vms/{vm}", "VirtualMachine.Inventory.Move", NULL, "vm", "vm move", "folder"},
    {"vm.rekey", "POST", "/vms/{vm}/rekey", "Cryptographer.Recrypt", NULL, "vm", "vm rekey", NULL},
    {"vm.power-on", "POST", "/vms/{vm}/power-on", "VirtualMachine.Interact.PowerOn", NULL, "vm",
     "vm start", NULL},
    {"vm.power-off", "POST", "/vms/{vm}/power-off", "VirtualMachine.Interact.PowerOff", NULL, "vm",
     "vm stop", NULL},
    {"vm.suspend", "POST", "/vms/{vm}/suspend", "VirtualMachine.Interact.Suspend", NULL, "vm",
     "vm suspend", NULL},
    {"vm.resume", "POST", "/vms/{vm}/resume", "VirtualMachine.Interact.PowerOn", NULL, "vm", "vm resume",
     "a suspended VM (vm start does the same)"},
    {"vm.resume-host", "POST", "/vms/{vm}/resume", "VirtualMachine.Interact.PowerOn VirtualMachine.Inventory.Move",
     NULL, "vm", "vm resume --host", "{\"host\"}: on another host that sees the VM's datastore"},
    {"vm.migrate", "POST", "/vms/{vm}/migrate", "Resource.HotMigrateVM", "Cryptographer.Migrate", "vm",
     "vm migrate", "{\"host\"}: a running VM, to a host that sees its datastore (a task)"},
    {"vm.discard-state", "POST", "/vms/{vm}/discard-state", "VirtualMachine.Interact.PowerOff", NULL, "vm",
     "vm discard-state", "a suspended VM: it is then powered off"},
    {"vm.disk-add", "POST", "/vms/{vm}/disks", "VirtualMachine.Config.Settings", "Cryptographer.AddDisk",
     "vm", "vm disk add", NULL},
    {"vm.disk-remove", "DELETE", "/vms/{vm}/disks/{disk}", "VirtualMachine.Config.RemoveDisk", NULL, "vm",
     "vm disk rm", "powered off; ?keep_file=1 keeps the image file in the VM home"},
    {"vm.cdrom", "POST", "/vms/{vm}/cdrom", "VirtualMachine.Interact.SetCDMedia", NULL, "vm",
     "vm cdrom", "{iso} | {eject}; a running VM too when it has a CD-ROM drive"},
    {"vm.clone", "POST", "/vms/{vm}/clone", "VirtualMachine.Provisioning.Clone VirtualMachine.Inventory.Create",
     "Cryptographer.Clone", "vm", "vm clone",
     "on the source (powered off); VirtualMachine.Inventory.Create on its host too"},
    {"vm.log", "GET", "/vms/{vm}/log", "VirtualMachine.Interact.ConsoleInteract", "Cryptographer.Access",
     "vm", "vm log", NULL},
    {"vm.console", "GET", "/vms/{vm}/console", "VirtualMachine.Interact.ConsoleInteract",
     "Cryptographer.Access", "vm", "vm console", "websocket: the serial port"},
    {"vm.vnc", "GET", "/vms/{vm}/vnc", "VirtualMachine.Interact.ConsoleInteract",
     "Cryptographer.Access", "vm", "vm vnc", "websocket: the display (RFB); the web client's Console tab"},
    {"vm.nic-list", "GET", "/vms/{vm}/nics", "System.Read", NULL, "vm", "vm nic ls", NULL},
    {"vm.nic-add", "POST", "/vms/{vm}/nics", "VirtualMachine.Config.AddRemoveDevice", NULL, "vm",
     "vm nic add", "a bridged NIC: powered off"},
    {"vm.nic-remove", "DELETE", "/vms/{vm}/nics/{mac}", "VirtualMachine.Config.AddRemoveDevice", NULL,
     "vm", "vm nic rm", "powered off"},
    {"vm.export", "POST", "/vms/{vm}/export", "VirtualMachine.Provisioning.DiskRandomRead",
     "Cryptographer.ExportDisk", "vm", "vm export", "the guest's view (decrypted)"},
    {"vm.export-ciphertext", "POST", "/vms/{vm}/export", "VirtualMachine.Provisioning.DiskRandomRead",
     NULL, "vm", "vm export --ciphertext",
     "ciphertext: true: the LUKS image as it is and its key bundle (useless without the KMS)"},
    {"vm.dump", "POST", "/vms/{vm}/dump", "VirtualMachine.Interact.ConsoleInteract",
     "Cryptographer.Access", "vm", "vm dump", "the guest's memory"},
    {"vm.snapshot-list", "GET", "/vms/{vm}/snapshots", "System.Read", NULL, "vm", "vm snapshot ls", NULL},
    {"vm.snapshot-create", "POST", "/vms/{vm}/snapshots", "VirtualMachine.State.CreateSnapshot", NULL,
     "vm", "vm snapshot create", "{\"name\", \"memory\"}: memory needs the VM running"},
    {"vm.snapshot-revert", "POST", "/vms/{vm}/snapshots/{snapshot}/revert",
     "VirtualMachine.State.RevertToSnapshot", NULL, "vm", "vm snapshot revert", "the latest snapshot"},
    {"vm.snapshot-remove", "DELETE", "/vms/{vm}/snapshots/{snapshot}",
     "VirtualMachine.State.RemoveSnapshot", NULL, "vm", "vm snapshot rm", "powered off"},
    {"vm.delete", "DELETE", "/vms/{vm}", "VirtualMachine.Inventory.Delete", NULL, "vm", "vm rm", NULL},
    {"task.list", "GET", "/tasks", "System.Read", NULL, "root", "task ls", NULL},
    {"task.get", "GET", "/tasks/{id}", "System.Read", NULL, "root", "task info", NULL},
    {"task.cancel-encrypt", "POST", "/tasks/{id}/cancel", "Global.CancelTask Cryptographer.Encrypt",
     NULL, "vm", "task cancel", "a task of action encrypt, on its VM (rolled back, the VM stays unencrypted)"},
    {"task.cancel-decrypt", "POST", "/tasks/{id}/cancel", "Global.CancelTask Cryptographer.Decrypt",
     NULL, "vm", "task cancel", "a task of action decrypt, on its VM (rolled back, the VM stays encrypted)"},
    {"task.cancel-rekey", "POST", "/tasks/{id}/cancel", "Global.CancelTask Cryptographer.Recrypt", NULL,
     "vm", "task cancel", "a task of action recrypt-shallow or recrypt-deep, on its VM"},
    {"task.resume-encrypt", "POST", "/tasks/{id}/resume", "Cryptographer.Encrypt", NULL, "vm", "task resume",
     "a task of action encrypt, on its VM"},
    {"task.resume-decrypt", "POST", "/tasks/{id}/resume", "Cryptographer.Decrypt", NULL, "vm", "task resume",
     "a task of action decrypt, on its VM"},
    {"task.resume-rekey", "POST", "/tasks/{id}/resume", "Cryptographer.Recrypt", NULL, "vm", "task resume",
     "a task of action recrypt-shallow or recrypt-deep, on its VM"},
    {NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL},
};

const api_op *api_op_find(const char *id)
{
    for (const api_op *o = mgr_api_ops; o->id; o++)
        if (!strcmp(o->id, id))
            return o;
    return NULL;
}

int mgr_privilege_known(const char *name)
{
    for (const mgr_privilege *p = mgr_privileges; p->name; p++)
        if (!strcmp(p->name, name))
            return 1;
    return 0;
}

json_t *api_table_json(void)
{
    json_t *ops = json_array(), *privs = json_array();
    for (const api_op *o = mgr_api_ops; o->id; o++)
        json_array_append_new(ops, json_pack("{s:s,s:s,s:s,s:s?,s:s?,s:s,s:s?,s:s?}", "id", o->id,
                                             "method", o->method, "path", o->path, "privileges",
                                             o->privileges, "crypto", o->crypto, "on", o->on, "cli",
                                             o->cli, "note", o->note));
    for (const mgr_privilege *p = mgr_privileges; p->name; p++)
        json_array_append_new(privs, json_pack("{s:s,s:s,s:s?}", "name", p->name, "what", p->what,
                                               "planned", p->planned));
    return json_pack("{s:o,s:o}", "operations", ops, "privileges", privs);
}
