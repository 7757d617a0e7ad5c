/* libvmseal internal — the NIC keys of the vm.conf schema (vmrecord_nic.c),
 * called by vmrecord.c when it reads, checks and writes a record. */
#ifndef VMSEAL_VMRECORD_NIC_H
#define VMSEAL_VMRECORD_NIC_H

#include <vmseal/vmrecord.h>

/* Room for the NIC values written back: the count and each NIC's forward
 * list (the other values point into the record). */
typedef struct vmrec_nic_text {
    char count[24];
    char forward[VMSEAL_VMREC_MAX_NICS][VMSEAL_VMREC_MAX_FORWARDS * 32];
} vmrec_nic_text;

#define VMREC_NIC_KEYS_MAX (1 + 4 * VMSEAL_VMREC_MAX_NICS)

/* 1: the key is in the NICs' namespace ("nics", "nic<...>"). */
int vmrec_nic_reserved(const char *key);
/* Read one key of that namespace into r: 0 or -EPROTO naming the key. */
int vmrec_nic_set(vmseal_vmrec *r, const vmseal_vmconf *src, const char *key, const char *v);
/* The rules between the NIC fields (src: the file, for line numbers). */
int vmrec_nic_check(const vmseal_vmrec *r, const vmseal_vmconf *src);
/* The keys and values to write, in the schema's order; put(ctx, key,
 * value) is called for each. */
void vmrec_nic_keys(const vmseal_vmrec *r, vmrec_nic_text *t,
                    void (*put)(void *ctx, const char *key, const char *value), void *ctx);

#endif
