/* vmseal-hostd — what hostd/snapshot.c needs of a VM's internals (vm.c).
 * Everything but hostd_vmi_begin needs the VM busy (begin .. end). */
#ifndef VMSEAL_HOSTD_VM_SNAP_H
#define VMSEAL_HOSTD_VM_SNAP_H

#include <vmseal/secret.h>
#include <vmseal/vmrecord.h>

#include "qemu.h"
#include "vm.h"

int hostd_vmi_begin(hostd_vm *vm, const char *what) VMSEAL_MUST_CHECK;
void hostd_vmi_end(hostd_vm *vm);
const vmseal_vmrec *hostd_vmi_rec(hostd_vm *vm);
int hostd_vmi_home_fd(hostd_vm *vm);
/* A copy of the record to change; commit saves it (atomically) and makes it
 * current, taking it. */
vmseal_vmrec *hostd_vmi_next(hostd_vm *vm);
int hostd_vmi_commit(hostd_vm *vm, vmseal_vmrec *next) VMSEAL_MUST_CHECK;
/* The running QEMU, or NULL when the VM is off. */
hostd_qemu *hostd_vmi_qemu(hostd_vm *vm);
/* End QEMU now (the guest's state since is lost), with its console and disk servers. */
void hostd_vmi_kill(hostd_vm *vm);
/* Power on; with snap_state, QEMU loads that saved state (a snapshot's
 * memory, kept) before the guest runs. */
int hostd_vmi_power_on(hostd_vm *vm, const hostd_host_env *env, const char *snap_state)
    VMSEAL_MUST_CHECK;
/* Key safes: unwrap (for object), the LUKS passphrase of one, a new
 * random secret wrapped under kek_id. */
int hostd_vmi_unwrap(const hostd_host_env *env, const char *line, const char *object,
                     vmseal_secret **out) VMSEAL_MUST_CHECK;
int hostd_vmi_pass(const hostd_host_env *env, const char *line, const char *object,
                   vmseal_secret **pass) VMSEAL_MUST_CHECK;
int hostd_vmi_wrap(const hostd_host_env *env, const char *kek_id, const char *object,
                   const vmseal_secret *payload, char **line) VMSEAL_MUST_CHECK;

#endif
