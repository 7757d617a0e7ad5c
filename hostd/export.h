/* vmseal-hostd — one-time NBD-over-TLS export of a VM disk for backups
 * (docs/architecture.md, "Disk export"; POST /v1/vms/{uuid}/export).
 *
 * The VM must be powered off (the consistent point) and stays busy
 * ("exporting") until the export ends. hostd listens on one ephemeral TCP
 * port of its `listen` address, accepts exactly one connection and closes
 * the port: a second connection is refused, and so is one after the
 * endpoint's lifetime. The accepted socket becomes the stdin/stdout of
 * `nbdkit -s --tls=require --tls-psk=FILE -r` serving the decrypted view
 * (nbdkit-vmseal-plugin, passphrase over a pipe as for running VMs) or a
 * plain disk (the plugin's raw=1), read-only, confined like the disk
 * servers (hostd/blockserver.h). TLS is required and authenticated with a
 * one-time pre-shared key made for this export: only the caller of the API
 * has it.
 *
 * The PSK file: nbdkit 1.32 canonicalises --tls-psk (realpath), so a
 * /proc/self/fd/N path of a memfd or pipe does not work, and GnuTLS reads
 * the file at the TLS handshake, after nbdkit has dropped to qemu_user. So
 * it is a file (mode 0400 in a fresh 0700 directory under /tmp; with
 * qemu_user root:its-group 0440 in 0750, as nbdkit reads it first as root
 * without CAP_DAC_OVERRIDE, then as the user), removed when the server ends; the key in it
 * opens one connection that is already accepted, nothing else.
 */
#ifndef VMSEAL_HOSTD_EXPORT_H
#define VMSEAL_HOSTD_EXPORT_H

#include <jansson.h>

#include "vm.h"

#define HOSTD_EXPORT_TTL_DEFAULT 300     /* seconds to connect */
#define HOSTD_EXPORT_TTL_MAX 86400
#define HOSTD_EXPORT_RUN_MAX (24 * 3600) /* the connection is cut after this */

/* Start an export of disk `idx` of `vm`: *out = {"host", "port", "uri",
 * "psk_identity", "psk" (hex), "tls": "psk", "expires" (unix time),
 * "disk", "size", "view": "decrypted"|"plain", "read_only": true}. */
int hostd_export_start(hostd_vm *vm, const hostd_host_env *env, size_t idx, int ttl_s,
                       json_t **out) VMSEAL_MUST_CHECK;

/* End every export (hostd stops): servers killed, threads joined. */
void hostd_export_stop_all(void);

#endif
