/* vmseal-hostd — a point-in-time view of a running VM's disk for an export
 * (QEMU image fleecing; docs/architecture.md, "Disk export").
 *
 * Over QMP, on the disk's node vmseal-diskN (the decrypted guest view, NBD
 * or QEMU luks path alike):
 *   1. hostd creates fleeceN.luks in the VM home: a sparse LUKS1
 *      volume (lib/disk) under a one-time random passphrase that only QEMU
 *      gets (a secret object over QMP); QEMU, which runs as qemu_user and
 *      cannot open files in the home, gets its descriptor (add-fd);
 *   2. QEMU opens it (driver luks) and formats a qcow2 inside it whose
 *      backing is vmseal-diskN (blockdev-create, no PBKDF calibration in
 *      QEMU: that fails on tick-based CPU accounting);
 *   3. blockdev-backup sync=none from vmseal-diskN to the qcow2: before the
 *      guest overwrites a cluster, QEMU copies the old one into the qcow2,
 *      so the qcow2 reads as the disk at this moment while the guest goes
 *      on writing;
 *   4. QEMU exports the qcow2 read-only over NBD (nbd-server-start, one
 *      connection, block-export-add) on the unix socket fleeceN.sock
 *      that hostd binds in the VM home (only root reaches it there) and
 *      hands QEMU listening (getfd); hostd connects to it when the export's
 *      client arrives and gives the connection to the export's nbdkit (its
 *      nbd plugin, socket-fd), which relays it over TLS.
 * The old blocks that land in the file are ciphertext under the one-time
 * key. hostd_fleece_stop undoes all of it (export, server, job, nodes,
 * secret) and wipes and removes the file; every step is tried even if one
 * before failed (QEMU may be gone).
 */
#ifndef VMSEAL_HOSTD_FLEECE_H
#define VMSEAL_HOSTD_FLEECE_H

#include <stddef.h>
#include <stdint.h>

#include <vmseal/common.h>

#include "qmp.h"

typedef struct hostd_fleece hostd_fleece;

/* Start fleecing disk `idx` (guest-visible `size` bytes) of the QEMU behind
 * `q`, whose home is `home` (descriptor `home_fd`). */
int hostd_fleece_start(hostd_qmp *q, int home_fd, const char *home, size_t idx, uint64_t size,
                       hostd_fleece **out) VMSEAL_MUST_CHECK;

/* A connection to QEMU's NBD export of the view (a descriptor, or a
 * negative errno); QEMU serves one. */
int hostd_fleece_connect(const hostd_fleece *f) VMSEAL_MUST_CHECK;
/* The export name of the view on that connection. */
const char *hostd_fleece_export_name(const hostd_fleece *f);

/* Tear down (q may be NULL when QEMU is gone) and free; NULL is fine. */
void hostd_fleece_stop(hostd_fleece *f, hostd_qmp *q);

#endif
