/* libvmseal — host-sealed files: a host's own core dumps in host encryption
 * mode (seed 004), sealed to the host's public key so the program that
 * seals (vmseal-coredump-handler, run by the kernel for kernel.core_pattern)
 * holds no secret at all.
 *
 * Format (docs/formats.md, "Host-sealed core dump"):
 *   0   8  magic "VMSEALHC"
 *   8   1  version 1
 *   9  32  ephemeral X25519 public key E (new for every file)
 *  41  32  the host's X25519 public key H (names the key pair to use)
 *  73   …  a sealed file (include/vmseal/sealed.h, magic "VMSEALSF") whose
 *          KEK is HKDF-SHA256(X25519(e, H), salt = E || H,
 *          info "vmseal host core v1"); provider "host", KEK id
 *          "hostcore-" + hex of the first 8 bytes of SHA-256(H).
 * A changed E or H gives another KEK, so the sealed file's checks (wrong
 * KEK, altered header, truncation, reordering, bit flips) cover the prefix
 * too. Streaming, constant memory.
 */
#ifndef VMSEAL_HOSTCORE_H
#define VMSEAL_HOSTCORE_H

#include <stdint.h>

#include <vmseal/common.h>
#include <vmseal/sealed.h>
#include <vmseal/secret.h>

#define VMSEAL_HOSTCORE_MAGIC "VMSEALHC"
#define VMSEAL_HOSTCORE_VERSION 1
#define VMSEAL_HOSTCORE_PREFIX_LEN 73u
#define VMSEAL_HOSTCORE_KEY_LEN 32u

/* A new host key pair: private key (32 bytes) and its public key. */
int vmseal_hostcore_keygen(vmseal_secret **priv, uint8_t pub[32]) VMSEAL_MUST_CHECK;
/* The public key of a private key. */
int vmseal_hostcore_public(const vmseal_secret *priv, uint8_t pub[32]) VMSEAL_MUST_CHECK;

/* Seal everything io reads to the host public key pub. */
int vmseal_hostcore_seal(const uint8_t pub[32], const vmseal_stream *io) VMSEAL_MUST_CHECK;

/* Verify and decrypt with the host's private key (the streaming caveat of
 * vmseal_unseal applies). -EPROTO not a host-sealed file / malformed,
 * -ENOTSUP another version, -EKEYREJECTED sealed to another host key,
 * -EBADMSG damaged or altered. */
int vmseal_hostcore_open(const vmseal_secret *priv, const vmseal_stream *io) VMSEAL_MUST_CHECK;

#endif
