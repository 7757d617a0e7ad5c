/* vmseal-hostd — a VM's network cards (virtio-net).
 *
 * Two kinds (vm.conf nicN.mode, include/vmseal/vmrecord.h):
 *   user    QEMU's user-mode NAT (slirp): no privilege needed. The guest
 *           gets 10.0.2.15 by DHCP, reaches out through hostd's QEMU, and
 *           the host's loopback as 10.0.2.2 (hostd.conf user_network =
 *           isolated cuts every way out: restrict=on). Port forwards bind
 *           a host address hostd.conf allows (forward_addresses, default
 *           127.0.0.1) on an unprivileged port (1024..65535) to a guest
 *           port; never a forward to another host.
 *   bridge  a tap on a bridge the host defines (hostd.conf
 *           network.NAME.bridge = BRIDGE). hostd (root) creates the tap,
 *           puts it on the bridge and hands QEMU the descriptor: QEMU never
 *           opens /dev/net/tun. A VM can only name a network hostd.conf
 *           defines (checked when the NIC is added and again at power-on,
 *           vm.conf being editable by datastore users).
 * MAC addresses are recorded in vm.conf (stable across restarts); new ones
 * are the host's locally administered prefix (hostd.conf mac_prefix,
 * default 0a:76:6d) plus three random bytes, unique among the host's VMs.
 * A user NIC may be added to a running VM (hot plug over QMP); bridged
 * NICs are added, and NICs removed, only while the VM is powered off.
 */
#ifndef VMSEAL_HOSTD_NIC_H
#define VMSEAL_HOSTD_NIC_H

#include <stddef.h>

#include <jansson.h>

#include <vmseal/common.h>
#include <vmseal/vmrecord.h>

#include "qemu.h"
#include "vm.h"

#define HOSTD_NET_MAX_NETWORKS 16
#define HOSTD_NET_MAX_FORWARD_ADDRS 8
#define HOSTD_NET_BRIDGE_MAX 15          /* IFNAMSIZ - 1 */

typedef struct hostd_network {
    char name[VMSEAL_VMREC_NETWORK_MAX + 1];
    char bridge[HOSTD_NET_BRIDGE_MAX + 1];
} hostd_network;

/* What hostd.conf says about networks. */
typedef struct hostd_vmnet_config {
    hostd_network networks[HOSTD_NET_MAX_NETWORKS];
    size_t nnetworks;
    char forward_addrs[HOSTD_NET_MAX_FORWARD_ADDRS][16];  /* host addresses a forward may bind */
    size_t naddrs;
    unsigned char mac_prefix[3];
    int user_isolated;                   /* user_network = isolated */
} hostd_vmnet_config;

/* The defaults: no network, forwards on 127.0.0.1, prefix 0a:76:6d, nat. */
void hostd_vmnet_config_init(hostd_vmnet_config *n);
/* 1 when key is a hostd.conf key of this module. */
int hostd_vmnet_config_key(const char *key);
/* Take one hostd.conf entry: 1 used, 0 not ours, -EINVAL (message naming
 * the key) for a bad value. */
int hostd_vmnet_config_set(hostd_vmnet_config *n, const char *key, const char *value);
/* The host's networks as JSON ({networks: [{name, bridge}], forward_addresses, user_network}). */
json_t *hostd_vmnet_config_json(const hostd_vmnet_config *n);

/* What a power-on hands QEMU. */
typedef struct hostd_nic_run {
    hostd_qemu_nic q[VMSEAL_VMREC_MAX_NICS];
    char *netdev[VMSEAL_VMREC_MAX_NICS];
    int fd[VMSEAL_VMREC_MAX_NICS];
    size_t n;
} hostd_nic_run;

/* An empty run (nothing to release). */
void hostd_nic_run_init(hostd_nic_run *run);
/* Check the record's NICs against the host's rules (networks defined,
 * forward addresses allowed) and open the taps into *out (overwritten:
 * release what it held first). net NULL: no network defined, default
 * rules. On failure nothing is left open. */
int hostd_nic_prepare(const hostd_vmnet_config *net, const vmseal_vmrec *rec, const char *vm_name,
                      hostd_nic_run *out) VMSEAL_MUST_CHECK;
/* Close hostd's copies of the tap descriptors (QEMU keeps its own). */
void hostd_nic_run_release(hostd_nic_run *run);

/* The record's NICs as a JSON array (new ref). */
json_t *hostd_nic_list_json(const vmseal_vmrec *rec);

/* The body of POST .../nics (untrusted; fuzz/hostd_nic_body.c): a NIC with
 * the host's rules applied (network defined, forward addresses allowed);
 * *have_mac when the body gave one (else nic->mac is empty). -EINVAL with
 * a message for the client. */
#define HOSTD_NIC_BODY_MAX 4096
int hostd_nic_parse_add(const hostd_vmnet_config *net, const char *body, size_t len,
                        vmseal_vmrec_nic *nic, int *have_mac) VMSEAL_MUST_CHECK;

/* The API (docs/api.md, "Host agent API"): sub is what follows
 * /v1/vms/{uuid}/nics ("" or "/MAC"); GET list, POST add, DELETE remove.
 * others: every VM of the host (MACs and forwarded ports are unique among
 * them). The caller holds the host's lock (so two adds cannot pick the same
 * MAC or port). */
void hostd_nic_api(const hostd_host_env *env, hostd_vm *vm, hostd_vm *const *others,
                   size_t nothers, const char *method, const char *sub, const char *body,
                   size_t len, int *status, json_t **resp);

#endif
