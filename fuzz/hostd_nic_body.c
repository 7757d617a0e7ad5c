/* libFuzzer target: the body of POST /v1/vms/{uuid}/nics as vmseal-hostd
 * reads it (hostd_nic_parse_add, hostd/nic.c) on a host that defines the
 * network "lan" and lets forwards bind 127.0.0.1 and 192.0.2.7.
 * Properties beyond "no crash": an accepted NIC keeps the host's rules (a
 * bridged NIC names "lan" and has no forward; every forward binds an
 * allowed address on a port >= 1024 and survives a format/parse round
 * trip; a MAC given is valid), and a refused body comes with a message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nic.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static hostd_vmnet_config net;
    static int init;
    if (!init) {
        hostd_vmnet_config_init(&net);
        if (hostd_vmnet_config_set(&net, "network.lan.bridge", "br0") != 1 ||
            hostd_vmnet_config_set(&net, "forward_addresses", "127.0.0.1 192.0.2.7") != 1)
            abort();
        init = 1;
    }
    vmseal_vmrec_nic nic;
    int have_mac = 0;
    vmseal_clear_error();
    if (hostd_nic_parse_add(&net, (const char *)data, size, &nic, &have_mac) < 0) {
        if (!vmseal_last_error()[0])
            abort();
        return 0;
    }
    if (have_mac ? !vmseal_vmrec_mac_valid(nic.mac) : nic.mac[0] != '\0')
        abort();
    if (nic.mode == VMSEAL_NIC_BRIDGE && (strcmp(nic.network, "lan") != 0 || nic.nforwards))
        abort();
    if (nic.mode == VMSEAL_NIC_USER && nic.network[0])
        abort();
    if (nic.nforwards > VMSEAL_VMREC_MAX_FORWARDS)
        abort();
    for (size_t i = 0; i < nic.nforwards; i++) {
        const vmseal_vmrec_forward *f = &nic.forwards[i];
        if (f->host_port < VMSEAL_VMREC_FORWARD_PORT_MIN || f->host_port > 65535 ||
            f->guest_port < 1 || f->guest_port > 65535 ||
            (strcmp(f->host_addr, "127.0.0.1") != 0 && strcmp(f->host_addr, "192.0.2.7") != 0))
            abort();
        char t[64];
        vmseal_vmrec_forward g;
        if (vmseal_vmrec_forward_format(f, t, sizeof(t)) != 0 ||
            vmseal_vmrec_forward_parse(t, &g) != 0 || memcmp(&g, f, sizeof(g)) != 0)
            abort();
    }
    return 0;
}
