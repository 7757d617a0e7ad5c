/* libvmseal internal — the snapshot keys of the vm.conf schema
 * (vmrecord_snap.c), called by vmrecord.c when it reads, checks, copies,
 * frees and writes a record. */
#ifndef VMSEAL_VMRECORD_SNAP_H
#define VMSEAL_VMRECORD_SNAP_H

#include <vmseal/vmrecord.h>

typedef struct vmrec_snap_text {
    char count[24];
    char key[3 + 3 * VMSEAL_VMREC_MAX_DISKS][VMSEAL_VMREC_MAX_SNAPSHOTS][VMSEAL_VMREC_KEY_MAX];
} vmrec_snap_text;

#define VMREC_SNAP_KEYS_MAX (1 + (3 + 3 * VMSEAL_VMREC_MAX_DISKS) * VMSEAL_VMREC_MAX_SNAPSHOTS)

/* 1: the key is in the snapshots' namespace ("snapshots", "snap<digit>..."). */
int vmrec_snap_reserved(const char *key);
int vmrec_snap_set(vmseal_vmrec *r, const vmseal_vmconf *src, const char *key, const char *v);
int vmrec_snap_check(const vmseal_vmrec *r, const vmseal_vmconf *src);
void vmrec_snap_keys(const vmseal_vmrec *r, vmrec_snap_text *t,
                     void (*put)(void *ctx, const char *key, const char *value), void *ctx);
/* d is a shallow copy of r: give it its own key safe strings (0 / -1). */
int vmrec_snap_dup(vmseal_vmrec *d, const vmseal_vmrec *r);
void vmrec_snap_free(vmseal_vmrec *r);

#endif
