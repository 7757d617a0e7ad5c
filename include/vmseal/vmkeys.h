/* libvmseal — keys derived from a VM's per-VM secret for one purpose.
 *
 * The per-VM secret (vm.keysafe, wrapped by the KEK) is the root of
 * everything a VM keeps besides its disks. Each use gets its own key:
 *
 *   HKDF-SHA256(IKM = per-VM secret, no salt,
 *               info = "vmseal vm subkey v1" NUL "vm:<uuid>" NUL "<purpose>")
 *
 * 32 bytes. The per-VM secret survives shallow and deep recrypts (only its
 * key safe is rewrapped), so a derived key does too. Purposes in use:
 *   "vtpm"            swtpm's state file key (--key)
 *   "vtpm-migration"  swtpm's key for state blobs QEMU carries in its
 *                     migration / suspend stream (--migration-key)
 */
#ifndef VMSEAL_VMKEYS_H
#define VMSEAL_VMKEYS_H

#include <vmseal/common.h>
#include <vmseal/secret.h>

#define VMSEAL_VMKEY_VTPM "vtpm"
#define VMSEAL_VMKEY_VTPM_MIGRATION "vtpm-migration"
#define VMSEAL_VMKEY_PURPOSE_MAX 32   /* [a-z0-9-], 1..32 */

/* The VM's key for `purpose`: -EINVAL for a short secret, a malformed uuid
 * or purpose; -ENOMEM; -EIO when OpenSSL fails. */
int vmseal_vm_subkey(const vmseal_secret *vm_secret, const char *vm_uuid, const char *purpose,
                     vmseal_secret **out) VMSEAL_MUST_CHECK;

#endif
