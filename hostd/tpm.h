/* vmseal-hostd — a VM's vTPM 2.0: one swtpm process per running VM.
 *
 * The TPM's state is one file in the VM home, VMSEAL_TPM_STATE_FILE,
 * written by swtpm encrypted (AES-256-CBC, encrypt-then-MAC) under a key
 * derived from the per-VM secret (include/vmseal/vmkeys.h, purpose "vtpm").
 * A vTPM is for encrypted VMs only (vm.conf `tpm = 1` needs vm.keysafe).
 *
 * hostd opens everything swtpm needs and hands it over as descriptors,
 * never as paths it would resolve or as argv/environment/file contents:
 *   3  the control channel: one end of a socketpair whose other end is
 *      QEMU's (-chardev socket,fd=N + -tpmdev emulator + -device tpm-tis);
 *      QEMU passes swtpm its data channel over it (CMD_SET_DATAFD)
 *   4  a pipe holding the 32-byte state key (--key fd=4, read once)
 *   5  a pipe holding the 32-byte migration key (--migration-key fd=5):
 *      the state blobs QEMU fetches for a migration or suspend stream are
 *      encrypted with it, and the destination derives the same key
 *   6  the state file (opened here without following symlinks; swtpm
 *      opens it as /proc/self/fd/6)
 *   1, 2  swtpm.log in the VM home (its messages, no key material)
 * swtpm runs in its own session with PR_SET_NO_NEW_PRIVS, as qemu_user
 * when hostd is root and one is set (the state file is then that user's),
 * under its own seccomp profile. It ends (--terminate) when QEMU closes the
 * control channel (power off, crash, a failed start), so it lives exactly as long
 * as the VM's QEMU and survives a restart of hostd with it.
 */
#ifndef VMSEAL_HOSTD_TPM_H
#define VMSEAL_HOSTD_TPM_H

#include <sys/types.h>

#include <vmseal/common.h>
#include <vmseal/secret.h>

#define VMSEAL_TPM_STATE_FILE "vtpm.state"
#define VMSEAL_TPM_LOG_FILE "swtpm.log"

typedef struct hostd_tpm_spec {
    const char *swtpm;                  /* binary; NULL: $VMSEAL_SWTPM or "swtpm" */
    int home_fd;                        /* the VM home */
    const vmseal_secret *key;           /* 32 bytes: the state file key */
    const vmseal_secret *migration_key; /* 32 bytes: the state blob key */
    const char *run_as;                 /* hostd as root: swtpm runs as this user */
} hostd_tpm_spec;

/* Start swtpm; *qemu_fd receives the control channel's other end, for
 * QEMU (close it once QEMU has it: swtpm then ends with QEMU). */
int hostd_tpm_start(const hostd_tpm_spec *spec, int *qemu_fd) VMSEAL_MUST_CHECK;

/* Remove the vTPM's state (the vTPM was removed): 0 also when none. */
int hostd_tpm_remove_state(int home_fd);

#endif
