/* vmseal-hostd — guest memory dumps (`vmseal vm dump`).
 *
 * QEMU writes an ELF core of the guest's memory (QMP dump-guest-memory,
 * protocol "fd:vmseal-dump") into a pipe whose write end hostd handed it
 * with `getfd`; hostd reads the pipe as QEMU writes and, for an encrypted
 * VM, seals it on the fly into the VM home (the sealed-file format,
 * include/vmseal/sealed.h: per-file key wrapped by the VM's KEK, 64 KiB
 * AES-256-GCM chunks; memory use is one chunk whatever the guest's size).
 * Nothing of the guest's memory reaches the disk in clear. A VM without
 * encryption gets a plain ELF file (mode 0600). The file is written under a
 * temporary name and renamed once QEMU reports the dump completed; a
 * failed dump leaves nothing behind. `vmseal-crypto-util coredump decrypt`
 * opens a sealed dump with the KEK.
 */
#ifndef VMSEAL_HOSTD_COREDUMP_H
#define VMSEAL_HOSTD_COREDUMP_H

#include <stdint.h>

#include <vmseal/common.h>
#include <vmseal/secret.h>

#include "qmp.h"

#define VMSEAL_COREDUMP_PREFIX "vmcore-"
#define VMSEAL_COREDUMP_SEALED_SUFFIX ".vmsealed"
#define VMSEAL_COREDUMP_PLAIN_SUFFIX ".elf"

typedef struct hostd_coredump_result {
    char file[64];        /* its name in the VM home */
    uint64_t bytes;       /* bytes written (sealed size for a sealed dump) */
    uint64_t guest_bytes; /* bytes of the ELF core QEMU wrote */
    int sealed;
} hostd_coredump_result;

/* Dump the memory of the guest whose monitor is q into home_fd. kek NULL:
 * a plain ELF file; else sealed under kek (provider, kek_id recorded in the
 * header). timeout_ms bounds the whole dump (0: 10 minutes). */
int hostd_coredump_write(hostd_qmp *q, int home_fd, const vmseal_secret *kek,
                         const char *provider, const char *kek_id, int timeout_ms,
                         hostd_coredump_result *out) VMSEAL_MUST_CHECK;

#endif
