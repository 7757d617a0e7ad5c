/* vmseal-hostd — a guest's memory state to a file in the VM home and back
 * (suspend / resume).
 *
 * QEMU writes its migration stream to a pipe handed over the monitor
 * (SCM_RIGHTS + `getfd`, then `migrate fd:NAME` with the guest stopped);
 * hostd reads the pipe in a thread and writes the stream, for an encrypted
 * VM, as a sealed file (include/vmseal/sealed.h, docs/formats.md "Sealed
 * file") under a key derived from the per-VM secret (vmseal_vmfile_key,
 * purpose "state:<file name>"), or in clear for a VM without encryption.
 * The stream is never on disk in clear and memory use is one chunk.
 * Loading is the reverse into a QEMU started with `-incoming defer`
 * (`migrate-incoming fd:NAME`): hostd verifies and decrypts the file as it
 * feeds the pipe, and the guest continues only once QEMU has loaded the
 * whole stream and the file verified to its end (a damaged or cut file
 * never runs).
 */
#ifndef VMSEAL_HOSTD_VMSTATE_H
#define VMSEAL_HOSTD_VMSTATE_H

#include <stddef.h>
#include <stdint.h>

#include <vmseal/common.h>
#include <vmseal/secret.h>

#include "qmp.h"

/* A line for the VM's log (progress, what went wrong). */
typedef void (*hostd_vmstate_note)(void *ctx, const char *line);

/* A new state file name: "<prefix>-<16 hex digits>" + ".vmss" (sealed) or
 * ".vmstate" (clear). prefix: [a-z]{1,16}. */
int hostd_vmstate_new_name(const char *prefix, int sealed, char *buf, size_t len)
    VMSEAL_MUST_CHECK;

/* The key and header label of the sealed state file `file` of the VM:
 * vmseal_vmfile_key(vm_secret, uuid, "state:<file>"), label
 * "vm:<uuid>/state:<file>". */
int hostd_vmstate_key(const vmseal_secret *vm_secret, const char *uuid, const char *file,
                      vmseal_secret **key, char *label, size_t label_len) VMSEAL_MUST_CHECK;

/* Save the guest's state into dirfd/name (written as name.partial, fsync'd,
 * renamed). The guest is stopped first; on success it stays stopped (the
 * caller ends QEMU). *bytes (optional) follows the stream's bytes as they
 * pass (atomic stores: another thread may read it for progress); on
 * failure the partial file is removed and a guest that was running runs
 * on. key NULL: clear file. timeout_ms bounds each wait without progress. */
int hostd_vmstate_save(hostd_qmp *q, int dirfd, const char *name, const vmseal_secret *key,
                       const char *label, hostd_vmstate_note note, void *ctx, int timeout_ms,
                       uint64_t *bytes) VMSEAL_MUST_CHECK;

/* Load dirfd/name into a QEMU started with incoming_defer and, once the
 * stream is loaded and the file verified to its end, continue the guest.
 * On failure (-EBADMSG / -EPROTO / -ENOTSUP: the file is damaged, the
 * message says how) the guest has not run: the caller ends QEMU. */
int hostd_vmstate_load(hostd_qmp *q, int dirfd, const char *name, const vmseal_secret *key,
                       hostd_vmstate_note note, void *ctx, int timeout_ms, uint64_t *bytes)
    VMSEAL_MUST_CHECK;

/* Test hook: with VMSEAL_TEST_CRASH_AT=POINT in its environment, hostd
 * kills itself (SIGKILL) when it gets to POINT ("suspend-saved": the state
 * file is complete, vm.conf does not name it yet; "suspend-recorded":
 * vm.conf names it, QEMU still runs; "resume-continued": the guest runs
 * again, vm.conf still names the file). */
void hostd_vmstate_crash_point(const char *point);

/* Is `name` a state file (or its .partial) that hostd writes? */
int hostd_vmstate_is_state_name(const char *name, int *partial);

#endif
