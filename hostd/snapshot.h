/* vmseal-hostd — snapshots of a VM, encrypted or not (docs/architecture.md
 * "Snapshots").
 *
 * A linear chain recorded in vm.conf (include/vmseal/vmrecord.h,
 * "Snapshots"): taking snapshot K gives each disk a new top layer, a qcow2
 * overlay (LUKS-encrypted with a secret of its own in a key safe bound to
 * "disk:<layer uuid>" for an encrypted VM) created by qemu-img with its
 * passphrase from a pipe (`--object secret,file=/proc/self/fd/N`), never
 * argv or a file. A running VM is paused, its memory optionally saved as a
 * sealed file (hostd/vmstate.h, purpose "state:<file>"), the overlays put
 * on top over QMP (add-fd, blockdev-add with the passphrase over the
 * monitor, blockdev-snapshot), vm.conf written, the guest continued.
 *
 * Revert goes to the latest snapshot (a linear chain: a snapshot with
 * newer ones after it is reverted to by removing those first): its top
 * layers are replaced by empty ones and, when it holds memory, the guest
 * runs again from that moment; otherwise the VM is left powered off.
 * Remove merges a snapshot's layer into the one below (`qemu-img commit`,
 * both passphrases from pipes), with the VM powered off. */
#ifndef VMSEAL_HOSTD_SNAPSHOT_H
#define VMSEAL_HOSTD_SNAPSHOT_H

#include <jansson.h>

#include <vmseal/secret.h>
#include <vmseal/vmrecord.h>

#include "qemu.h"
#include "vm.h"

/* The snapshot layers of a power-on (vm.c). */
typedef struct hostd_snapshot_layers {
    hostd_qemu_layer layer[VMSEAL_VMREC_MAX_DISKS][VMSEAL_VMREC_MAX_SNAPSHOTS];
    vmseal_secret *pass[VMSEAL_VMREC_MAX_DISKS][VMSEAL_VMREC_MAX_SNAPSHOTS];
} hostd_snapshot_layers;
void hostd_snapshot_layers_init(hostd_snapshot_layers *l);
/* Fill disks[i].layers from the record (unwrapping each layer's secret). */
int hostd_snapshot_layers_open(const hostd_host_env *env, const vmseal_vmrec *c,
                               hostd_snapshot_layers *l, hostd_qemu_disk *disks, size_t nd)
    VMSEAL_MUST_CHECK;
void hostd_snapshot_layers_free(hostd_snapshot_layers *l);

/* A revert's power-on: load the snapshot's memory (kept) and continue. */
int hostd_snapshot_load_state(hostd_vm *vm, hostd_qemu *q, const vmseal_secret *vm_secret,
                              const char *file) VMSEAL_MUST_CHECK;

int hostd_snapshot_create(hostd_vm *vm, const hostd_host_env *env, const char *name, int memory)
    VMSEAL_MUST_CHECK;
int hostd_snapshot_revert(hostd_vm *vm, const hostd_host_env *env, const char *name)
    VMSEAL_MUST_CHECK;
int hostd_snapshot_remove(hostd_vm *vm, const hostd_host_env *env, const char *name)
    VMSEAL_MUST_CHECK;
/* [{"name", "memory": bool, "removing": bool}, ...] oldest first */
json_t *hostd_snapshot_list(hostd_vm *vm);

/* At load (vm.c): a snapshot operation that did not finish (hostd stopped)
 * is put right: files it left that vm.conf does not name are removed; a
 * guest it had paused goes on, or, when vm.conf already records a snapshot
 * QEMU was not yet switched to, QEMU ends (the snapshot holds that moment). */
void hostd_snapshot_recover(hostd_vm *vm);

/* HTTP: GET|POST /v1/vms/{uuid}/snapshots, POST .../snapshots/NAME/revert,
 * DELETE .../snapshots/NAME. sub: what follows "snapshots". */
void hostd_snapshot_api(const hostd_host_env *env, hostd_vm *vm, const char *method,
                        const char *sub, const char *body, size_t len, int *status,
                        json_t **resp);

#endif
