/* vmseal-hostd — a VM's network cards: hostd.conf's networks, the checks
 * of a NIC against them, the taps of bridged NICs and the NIC API
 * (hostd/nic.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vmseal/http_status.h>

#include "nic.h"
#include "qmp.h"
#include "strutil.h"

/* ---------------------------------------------------------------- config */

static const char net_prefix[] = "network.";
static const char bridge_suffix[] = ".bridge";

void hostd_vmnet_config_init(hostd_vmnet_config *n)
{
    memset(n, 0, sizeof(*n));
    snprintf(n->forward_addrs[0], sizeof(n->forward_addrs[0]), "127.0.0.1");
    n->naddrs = 1;
    n->mac_prefix[0] = 0x0a;
    n->mac_prefix[1] = 0x76;
    n->mac_prefix[2] = 0x6d;
}

int hostd_vmnet_config_key(const char *key)
{
    return strncmp(key, net_prefix, sizeof(net_prefix) - 1) == 0 ||
           strcmp(key, "forward_addresses") == 0 || strcmp(key, "mac_prefix") == 0 ||
           strcmp(key, "user_network") == 0;
}

static int ipv4_valid(const char *s)
{
    vmseal_vmrec_forward f;
    char probe[64];
    /* the schema's spelling of an address: a dotted quad without leading zeros */
    if (!s || strlen(s) > 15)
        return 0;
    snprintf(probe, sizeof(probe), "tcp:%s:1024:1", s);
    return vmseal_vmrec_forward_parse(probe, &f) == 0 && strcmp(f.host_addr, s) == 0;
}

/* An interface name: 1..15 of [A-Za-z0-9_.-], not "." or "..". */
static int ifname_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > HOSTD_NET_BRIDGE_MAX || !strcmp(s, ".") || !strcmp(s, ".."))
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
}

int hostd_vmnet_config_set(hostd_vmnet_config *n, const char *key, const char *value)
{
    if (!hostd_vmnet_config_key(key))
        return 0;
    if (strcmp(key, "forward_addresses") == 0) {
        n->naddrs = 0;
        char buf[256];
        if (strlen(value) >= sizeof(buf))
            return vmseal_fail(EINVAL, "forward_addresses: too long");
        snprintf(buf, sizeof(buf), "%s", value);
        for (char *save = NULL, *t = strtok_r(buf, " \t,", &save); t;
             t = strtok_r(NULL, " \t,", &save)) {
            if (!ipv4_valid(t) || !strcmp(t, "0.0.0.0"))
                return vmseal_fail(EINVAL, "forward_addresses: %s is not an IPv4 address of "
                                   "this host (A.B.C.D; not 0.0.0.0)", t);
            if (n->naddrs >= HOSTD_NET_MAX_FORWARD_ADDRS)
                return vmseal_fail(EINVAL, "forward_addresses: at most %d",
                                   HOSTD_NET_MAX_FORWARD_ADDRS);
            snprintf(n->forward_addrs[n->naddrs++], sizeof(n->forward_addrs[0]), "%s", t);
        }
        return 1;
    }
    if (strcmp(key, "mac_prefix") == 0) {
        char mac[18];
        snprintf(mac, sizeof(mac), "%.8s:00:00:01", value);
        unsigned b[3];
        if (strlen(value) != 8 || !vmseal_vmrec_mac_valid(mac) ||
            sscanf(value, "%2x:%2x:%2x", &b[0], &b[1], &b[2]) != 3 || !(b[0] & 2))
            return vmseal_fail(EINVAL, "mac_prefix: three octets xx:xx:xx of a locally "
                               "administered unicast address (second-lowest bit of the first "
                               "octet set, lowest clear), e.g. 0a:76:6d");
        for (int i = 0; i < 3; i++)
            n->mac_prefix[i] = (unsigned char)b[i];
        return 1;
    }
    if (strcmp(key, "user_network") == 0) {
        if (strcmp(value, "nat") == 0)
            n->user_isolated = 0;
        else if (strcmp(value, "isolated") == 0)
            n->user_isolated = 1;
        else
            return vmseal_fail(EINVAL, "user_network: nat or isolated");
        return 1;
    }
    /* network.NAME.bridge = BRIDGE */
    const char *name = key + sizeof(net_prefix) - 1;
    size_t klen = strlen(name), slen = sizeof(bridge_suffix) - 1;
    char nm[VMSEAL_VMREC_NETWORK_MAX + 1];
    if (klen <= slen || strcmp(name + klen - slen, bridge_suffix) != 0 ||
        klen - slen > VMSEAL_VMREC_NETWORK_MAX)
        return vmseal_fail(EINVAL, "%s: a network is network.NAME.bridge = BRIDGE", key);
    memcpy(nm, name, klen - slen);
    nm[klen - slen] = '\0';
    if (!vmseal_vmrec_network_name_valid(nm))
        return vmseal_fail(EINVAL, "%s: a network name is 1..%d of [A-Za-z0-9_-], starting with "
                           "a letter", key, VMSEAL_VMREC_NETWORK_MAX);
    if (!ifname_valid(value))
        return vmseal_fail(EINVAL, "%s: %s is not an interface name", key, value);
    for (size_t i = 0; i < n->nnetworks; i++)
        if (strcmp(n->networks[i].name, nm) == 0)
            return vmseal_fail(EINVAL, "%s: network %s is defined twice", key, nm);
    if (n->nnetworks >= HOSTD_NET_MAX_NETWORKS)
        return vmseal_fail(EINVAL, "%s: at most %d networks", key, HOSTD_NET_MAX_NETWORKS);
    hostd_network *w = &n->networks[n->nnetworks++];
    snprintf(w->name, sizeof(w->name), "%s", nm);
    snprintf(w->bridge, sizeof(w->bridge), "%s", value);
    return 1;
}

json_t *hostd_vmnet_config_json(const hostd_vmnet_config *n)
{
    json_t *nets = json_array(), *addrs = json_array();
    for (size_t i = 0; n && i < n->nnetworks; i++)
        json_array_append_new(nets, json_pack("{s:s, s:s}", "name", n->networks[i].name,
                                              "bridge", n->networks[i].bridge));
    for (size_t i = 0; n && i < n->naddrs; i++)
        json_array_append_new(addrs, json_string(n->forward_addrs[i]));
    if (!n)
        json_array_append_new(addrs, json_string("127.0.0.1"));
    return json_pack("{s:o, s:o, s:s}", "networks", nets, "forward_addresses", addrs,
                     "user_network", n && n->user_isolated ? "isolated" : "nat");
}

static const hostd_network *find_network(const hostd_vmnet_config *n, const char *name)
{
    for (size_t i = 0; n && i < n->nnetworks; i++)
        if (strcmp(n->networks[i].name, name) == 0)
            return &n->networks[i];
    return NULL;
}

static int addr_allowed(const hostd_vmnet_config *n, const char *addr)
{
    if (!n)
        return strcmp(addr, "127.0.0.1") == 0;
    for (size_t i = 0; i < n->naddrs; i++)
        if (strcmp(n->forward_addrs[i], addr) == 0)
            return 1;
    return 0;
}

/* The host's rules for one NIC of a record (vm.conf may have been edited
 * by hand: the same checks as when the NIC was added). */
static int check_host_rules(const hostd_vmnet_config *net, const vmseal_vmrec_nic *nic, size_t idx)
{
    if (nic->mode == VMSEAL_NIC_BRIDGE) {
        if (!find_network(net, nic->network))
            return vmseal_fail(EINVAL, "NIC %zu (%s): this host defines no network %s "
                               "(hostd.conf network.NAME.bridge)", idx, nic->mac, nic->network);
        return 0;
    }
    for (size_t a = 0; a < nic->nforwards; a++)
        if (!addr_allowed(net, nic->forwards[a].host_addr))
            return vmseal_fail(EINVAL, "NIC %zu (%s): a forward may not bind host address %s "
                               "(hostd.conf forward_addresses)", idx, nic->mac,
                               nic->forwards[a].host_addr);
    return 0;
}

/* ---------------------------------------------------------------- taps */

/* Create a tap (the kernel picks vmsealN), give it a host-side MAC that
 * sorts high (fe:..., so the bridge keeps its own address), put it on the
 * bridge and bring it up. The descriptor, or -errno. */
static int open_tap(const hostd_network *w, const char *guest_mac, char *name, size_t nlen)
{
    char path[64];
    struct stat st;
    snprintf(path, sizeof(path), "/sys/class/net/%s/bridge", w->bridge);
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return vmseal_fail(EINVAL, "network %s: %s is not a bridge on this host", w->name,
                           w->bridge);
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return vmseal_fail(errno, "network %s: /dev/net/tun: %s", w->name, strerror(errno));
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "vmseal%%d");
    if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
        int e = errno;
        close(fd);
        return vmseal_fail(e, "network %s: cannot create a tap (%s; hostd needs CAP_NET_ADMIN: "
                           "run it as root)", w->name, strerror(e));
    }
    snprintf(name, nlen, "%.*s", (int)IFNAMSIZ - 1, ifr.ifr_name);
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int r = 0;
    if (s < 0) {
        r = vmseal_fail(errno, "socket: %s", strerror(errno));
        goto out;
    }
    struct ifreq hw;
    memset(&hw, 0, sizeof(hw));
    snprintf(hw.ifr_name, sizeof(hw.ifr_name), "%s", name);
    hw.ifr_hwaddr.sa_family = ARPHRD_ETHER;
    unsigned b[6];
    if (sscanf(guest_mac, "%2x:%2x:%2x:%2x:%2x:%2x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) == 6) {
        hw.ifr_hwaddr.sa_data[0] = (char)0xfe;
        for (int i = 1; i < 6; i++)
            hw.ifr_hwaddr.sa_data[i] = (char)b[i];
        (void)ioctl(s, SIOCSIFHWADDR, &hw);   /* cosmetic: keep going without it */
    }
    struct ifreq br;
    memset(&br, 0, sizeof(br));
    snprintf(br.ifr_name, sizeof(br.ifr_name), "%s", w->bridge);
    br.ifr_ifindex = (int)if_nametoindex(name);
    if (br.ifr_ifindex == 0 || ioctl(s, SIOCBRADDIF, &br) != 0) {
        r = vmseal_fail(errno ? errno : ENODEV, "network %s: cannot put tap %s on bridge %s: %s",
                        w->name, name, w->bridge, strerror(errno ? errno : ENODEV));
        goto out;
    }
    struct ifreq up;
    memset(&up, 0, sizeof(up));
    snprintf(up.ifr_name, sizeof(up.ifr_name), "%s", name);
    if (ioctl(s, SIOCGIFFLAGS, &up) != 0 ||
        (up.ifr_flags |= IFF_UP, ioctl(s, SIOCSIFFLAGS, &up) != 0)) {
        r = vmseal_fail(errno, "network %s: cannot bring tap %s up: %s", w->name, name,
                        strerror(errno));
        goto out;
    }
out:
    if (s >= 0)
        close(s);
    if (r < 0) {
        close(fd);   /* a non-persistent tap goes with its last descriptor */
        return r;
    }
    return fd;
}

/* ---------------------------------------------------------------- power-on */

/* NIC idx's own user-mode network: 10.0.(2+idx).0/24 (NIC 0 has QEMU's
 * usual 10.0.2.0/24), so that a guest with several user NICs routes each
 * back through its own. */
static char *user_netdev(const hostd_vmnet_config *net, const vmseal_vmrec_nic *nic, size_t idx)
{
    size_t cap = 128 + nic->nforwards * 64, off = 0;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    off += (size_t)snprintf(s, cap, "user,net=10.0.%zu.0/24%s", 2 + idx,
                            net && net->user_isolated ? ",restrict=on" : "");
    for (size_t a = 0; a < nic->nforwards && off < cap; a++) {
        const vmseal_vmrec_forward *f = &nic->forwards[a];
        off += (size_t)snprintf(s + off, cap - off, ",hostfwd=%s:%s:%u-:%u", f->udp ? "udp" : "tcp",
                                f->host_addr, f->host_port, f->guest_port);
    }
    if (off >= cap) {
        free(s);
        return NULL;
    }
    return s;
}

void hostd_nic_run_init(hostd_nic_run *run)
{
    memset(run, 0, sizeof(*run));
    for (size_t i = 0; i < VMSEAL_VMREC_MAX_NICS; i++)
        run->fd[i] = -1;
}

int hostd_nic_prepare(const hostd_vmnet_config *net, const vmseal_vmrec *rec, const char *vm_name,
                      hostd_nic_run *out)
{
    hostd_nic_run_init(out);
    int r = 0;
    for (size_t i = 0; r == 0 && i < rec->nnics && i < VMSEAL_VMREC_MAX_NICS; i++) {
        const vmseal_vmrec_nic *nic = &rec->nics[i];
        r = check_host_rules(net, nic, i);
        if (r < 0)
            break;
        out->q[i].mac = nic->mac;
        if (nic->mode == VMSEAL_NIC_BRIDGE) {
            char tap[IFNAMSIZ];
            int fd = open_tap(find_network(net, nic->network), nic->mac, tap, sizeof(tap));
            if (fd < 0) {
                r = fd;
                break;
            }
            out->fd[i] = fd;
            out->q[i].tap_fd = fd;
            (void)vm_name;
        } else if (!(out->netdev[i] = user_netdev(net, nic, i))) {
            r = vmseal_fail(ENOMEM, "out of memory");
            break;
        } else {
            out->q[i].netdev = out->netdev[i];
        }
        out->n = i + 1;
    }
    if (r < 0) {
        out->n = rec->nnics;
        hostd_nic_run_release(out);
    }
    return r;
}

void hostd_nic_run_release(hostd_nic_run *run)
{
    for (size_t i = 0; i < VMSEAL_VMREC_MAX_NICS; i++) {
        if (run->fd[i] >= 0)
            close(run->fd[i]);
        run->fd[i] = -1;
        free(run->netdev[i]);
        run->netdev[i] = NULL;
    }
    run->n = 0;
}

/* ---------------------------------------------------------------- JSON */

static json_t *nic_json(const vmseal_vmrec_nic *nic, size_t idx)
{
    json_t *fw = json_array();
    for (size_t a = 0; a < nic->nforwards; a++) {
        char t[64];
        if (vmseal_vmrec_forward_format(&nic->forwards[a], t, sizeof(t)) == 0)
            json_array_append_new(fw, json_string(t));
    }
    return json_pack("{s:I, s:s, s:s, s:s, s:o?, s:o}", "index", (json_int_t)idx, "mac",
                     nic->mac, "model", "virtio-net", "mode",
                     vmseal_vmrec_nic_mode_name(nic->mode), "network",
                     nic->network[0] ? json_string(nic->network) : NULL, "forwards", fw);
}

json_t *hostd_nic_list_json(const vmseal_vmrec *rec)
{
    json_t *a = json_array();
    for (size_t i = 0; i < rec->nnics && i < VMSEAL_VMREC_MAX_NICS; i++)
        json_array_append_new(a, nic_json(&rec->nics[i], i));
    return a;
}

/* ---------------------------------------------------------------- API */

static void reply_error(int *status, json_t **resp, int code, const char *msg)
{
    *status = code;
    *resp = json_pack("{s:s}", "error", msg);
}

static void reply_fail(int *status, json_t **resp, int r)
{
    reply_error(status, resp, vmseal_http_status_for(r),
                vmseal_last_error()[0] ? vmseal_last_error() : strerror(-r));
}

/* Is the host port free now? (A listening socket, or one a running VM's
 * QEMU holds, makes bind fail; TIME_WAIT does not count.) */
static int port_free(const vmseal_vmrec_forward *f)
{
    int s = socket(AF_INET, (f->udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
    if (s < 0)
        return vmseal_fail(errno, "socket: %s", strerror(errno));
    int one = 1;
    if (!f->udp)
        (void)setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->host_port)};
    int r = 0;
    if (inet_pton(AF_INET, f->host_addr, &sa.sin_addr) != 1)
        r = vmseal_fail(EINVAL, "%s is not an IPv4 address", f->host_addr);
    else if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int e = errno;
        if (e == EADDRINUSE)
            r = vmseal_fail(EEXIST, "host port %s %s:%u is in use", f->udp ? "udp" : "tcp",
                            f->host_addr, f->host_port);
        else if (e == EADDRNOTAVAIL)
            r = vmseal_fail(EINVAL, "%s is not an address of this host", f->host_addr);
        else
            r = vmseal_fail(e, "host port %u: %s", f->host_port, strerror(e));
    }
    close(s);
    return r;
}

typedef struct add_ctx {
    vmseal_vmrec_nic nic;
    size_t idx;               /* out: where it went */
    const hostd_vmnet_config *net;
} add_ctx;

static int add_fn(vmseal_vmrec *n, void *arg)
{
    add_ctx *c = arg;
    if (n->nnics >= VMSEAL_VMREC_MAX_NICS)
        return vmseal_fail(ERANGE, "VM %s has %d NICs already (the most a VM may have)", n->name,
                           VMSEAL_VMREC_MAX_NICS);
    for (size_t i = 0; i < n->nnics; i++)
        if (strcasecmp(n->nics[i].mac, c->nic.mac) == 0)
            return vmseal_fail(EEXIST, "VM %s has a NIC with MAC %s already", n->name, c->nic.mac);
    c->idx = n->nnics;
    n->nics[n->nnics++] = c->nic;
    int r = vmseal_vmrec_validate(n);
    if (r < 0)
        return vmseal_fail(EINVAL, "%s", vmseal_last_error());
    return 0;
}

/* A user-mode NIC added to a running VM: netdev_add, then device_add at
 * its slot (as at power-on: id vmseal-netN / vmseal-nicN, PCI 0x8+N); the
 * guest sees a PCI hot plug (ACPI). A tap would have to be passed over
 * the monitor: bridged NICs are added powered off. */
static int add_live(hostd_qmp *q, const vmseal_vmrec *n, void *arg)
{
    add_ctx *c = arg;
    const hostd_vmnet_config *net = c->net;
    if (c->nic.mode != VMSEAL_NIC_USER)
        return vmseal_fail(EBUSY, "VM %s must be powered off to add a bridged NIC (user-mode NICs "
                           "can be added while it runs)", n->name);
    size_t i = c->idx;
    char id[32], dev[32], addr[16], net_s[32];
    snprintf(id, sizeof(id), "vmseal-net%zu", i);
    snprintf(dev, sizeof(dev), "vmseal-nic%zu", i);
    snprintf(addr, sizeof(addr), "0x%zx", 0x8 + i);
    snprintf(net_s, sizeof(net_s), "10.0.%zu.0/24", 2 + i);
    json_t *fw = json_array();
    for (size_t a = 0; a < c->nic.nforwards; a++) {
        const vmseal_vmrec_forward *f = &c->nic.forwards[a];
        char t[80];
        snprintf(t, sizeof(t), "%s:%s:%u-:%u", f->udp ? "udp" : "tcp", f->host_addr,
                 f->host_port, f->guest_port);
        json_array_append_new(fw, json_pack("{s:s}", "str", t));
    }
    json_t *args = json_pack("{s:s, s:s, s:s, s:b}", "type", "user", "id", id, "net", net_s,
                             "restrict", net && net->user_isolated);
    if (json_array_size(fw))
        json_object_set(args, "hostfwd", fw);
    json_decref(fw);
    int r = hostd_qmp_execute(q, "netdev_add", args, 15000, NULL);
    if (r < 0)
        return vmseal_fail(r == -EIO ? EBUSY : -r, "hot plug: netdev_add: %s", vmseal_last_error());
    r = hostd_qmp_execute(q, "device_add",
                          json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "driver", "virtio-net-pci",
                                    "id", dev, "netdev", id, "mac", c->nic.mac, "addr", addr,
                                    "romfile", ""),
                          15000, NULL);
    if (r < 0) {
        char msg[512];
        hostd_copy_str(msg, sizeof(msg), vmseal_last_error());
        if (hostd_qmp_execute(q, "netdev_del", json_pack("{s:s}", "id", id), 15000, NULL) < 0) {
            /* the netdev stays unused in QEMU until it exits */
        }
        return vmseal_fail(EBUSY, "hot plug: device_add: %s", msg);
    }
    return 0;
}

typedef struct rm_ctx {
    const char *mac;
} rm_ctx;

static int rm_fn(vmseal_vmrec *n, void *arg)
{
    rm_ctx *c = arg;
    for (size_t i = 0; i < n->nnics; i++)
        if (strcasecmp(n->nics[i].mac, c->mac) == 0) {
            memmove(&n->nics[i], &n->nics[i + 1], (n->nnics - i - 1) * sizeof(n->nics[0]));
            n->nnics--;
            memset(&n->nics[n->nnics], 0, sizeof(n->nics[0]));
            return 0;
        }
    return vmseal_fail(ENOENT, "VM %s has no NIC with MAC %s", n->name, c->mac);
}

/* MACs and forwarded host ports of the host's other VMs. */
static int conflicts(hostd_vm *self, hostd_vm *const *others, size_t nothers,
                     const vmseal_vmrec_nic *nic, int check_mac)
{
    for (size_t v = 0; v < nothers; v++) {
        if (others[v] == self)
            continue;
        vmseal_vmrec *o = hostd_vm_record(others[v]);
        if (!o)
            return -ENOMEM;
        int r = 0;
        for (size_t i = 0; r == 0 && i < o->nnics; i++) {
            if (check_mac && strcasecmp(o->nics[i].mac, nic->mac) == 0)
                r = vmseal_fail(EEXIST, "MAC %s is VM %s's already", nic->mac, o->name);
            for (size_t a = 0; r == 0 && a < o->nics[i].nforwards; a++)
                for (size_t b = 0; r == 0 && b < nic->nforwards; b++) {
                    const vmseal_vmrec_forward *x = &o->nics[i].forwards[a], *y = &nic->forwards[b];
                    if (x->udp == y->udp && x->host_port == y->host_port)
                        r = vmseal_fail(EEXIST, "host port %s %u is forwarded to VM %s already",
                                        y->udp ? "udp" : "tcp", y->host_port, o->name);
                }
        }
        vmseal_vmrec_free(o);
        if (r < 0)
            return r;
    }
    return 0;
}

static int new_mac(const hostd_vmnet_config *net, hostd_vm *vm, hostd_vm *const *others,
                   size_t nothers, vmseal_vmrec_nic *nic)
{
    static const unsigned char def[3] = {0x0a, 0x76, 0x6d};
    const unsigned char *p = net ? net->mac_prefix : def;
    for (int tries = 0; tries < 32; tries++) {
        unsigned char b[3];
        if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
            return vmseal_fail(EIO, "getrandom: %s", strerror(errno));
        snprintf(nic->mac, sizeof(nic->mac), "%02x:%02x:%02x:%02x:%02x:%02x", p[0], p[1], p[2],
                 b[0], b[1], b[2]);
        vmseal_vmrec_nic probe = {.nforwards = 0};
        memcpy(probe.mac, nic->mac, sizeof(probe.mac));
        int r = conflicts(NULL, others, nothers, &probe, 1);
        if (r == -EEXIST)
            continue;
        if (r < 0)
            return r;
        vmseal_vmrec *own = hostd_vm_record(vm);
        if (!own)
            return -ENOMEM;
        int dup = 0;
        for (size_t i = 0; i < own->nnics; i++)
            dup |= strcasecmp(own->nics[i].mac, nic->mac) == 0;
        vmseal_vmrec_free(own);
        if (!dup)
            return 0;
    }
    return vmseal_fail(EAGAIN, "no free MAC address found under the prefix");
}

/* The body of POST .../nics: {mode, network?, mac?, forwards?: [..]}. */
static int parse_add(const hostd_vmnet_config *netcfg, json_t *j, vmseal_vmrec_nic *nic,
                     int *have_mac)
{
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v) {
        if (strcmp(k, "mode") && strcmp(k, "network") && strcmp(k, "mac") && strcmp(k, "forwards"))
            return vmseal_fail(EINVAL, "unknown field %.64s (mode, network, mac, forwards)", k);
    }
    const char *mode = json_string_value(json_object_get(j, "mode"));
    if (!mode)
        mode = json_object_get(j, "network") ? "bridge" : "user";
    if (vmseal_vmrec_nic_mode_parse(mode, &nic->mode) < 0)
        return vmseal_fail(EINVAL, "mode is user or bridge");
    json_t *net = json_object_get(j, "network");
    if (nic->mode == VMSEAL_NIC_BRIDGE) {
        const char *nn = json_string_value(net);
        if (!nn || !vmseal_vmrec_network_name_valid(nn))
            return vmseal_fail(EINVAL, "a bridged NIC needs network: the name of a network the "
                               "host defines");
        if (!find_network(netcfg, nn))
            return vmseal_fail(EINVAL, "this host defines no network %s", nn);
        snprintf(nic->network, sizeof(nic->network), "%s", nn);
    } else if (net && !json_is_null(net)) {
        return vmseal_fail(EINVAL, "network is for mode bridge");
    }
    json_t *mac = json_object_get(j, "mac");
    if (mac && !json_is_null(mac)) {
        const char *m = json_string_value(mac);
        if (!m || !vmseal_vmrec_mac_valid(m))
            return vmseal_fail(EINVAL, "mac: a unicast MAC address xx:xx:xx:xx:xx:xx (not "
                               "multicast, not all zero)");
        for (size_t i = 0; i < 17; i++)
            nic->mac[i] = (char)(m[i] >= 'A' && m[i] <= 'F' ? m[i] - 'A' + 'a' : m[i]);
        *have_mac = 1;
    }
    json_t *fw = json_object_get(j, "forwards");
    if (fw && !json_is_null(fw)) {
        if (!json_is_array(fw))
            return vmseal_fail(EINVAL, "forwards: an array of \"tcp|udp:HOSTADDR:HOSTPORT:GUESTPORT\"");
        if (nic->mode != VMSEAL_NIC_USER && json_array_size(fw))
            return vmseal_fail(EINVAL, "port forwards are for mode user only");
        if (json_array_size(fw) > VMSEAL_VMREC_MAX_FORWARDS)
            return vmseal_fail(EINVAL, "at most %d forwards per NIC", VMSEAL_VMREC_MAX_FORWARDS);
        size_t i;
        json_t *x;
        json_array_foreach(fw, i, x) {
            const char *t = json_string_value(x);
            if (!t || strlen(t) > 63)
                return vmseal_fail(EINVAL, "forwards: an array of \"tcp|udp:HOSTADDR:HOSTPORT:"
                                   "GUESTPORT\"");
            vmseal_vmrec_forward *f = &nic->forwards[nic->nforwards];
            if (vmseal_vmrec_forward_parse(t, f) < 0)
                return vmseal_fail(EINVAL, "forward %s: %s", t, vmseal_last_error());
            if (!addr_allowed(netcfg, f->host_addr))
                return vmseal_fail(EINVAL, "forward %s: this host lets forwards bind only %s "
                                   "(hostd.conf forward_addresses)", t,
                                   netcfg && netcfg->naddrs > 1 ? "the addresses it lists"
                                                                    : "127.0.0.1");
            for (size_t b = 0; b < nic->nforwards; b++)
                if (nic->forwards[b].udp == f->udp && nic->forwards[b].host_port == f->host_port)
                    return vmseal_fail(EINVAL, "forward %s: host port %u twice", t, f->host_port);
            nic->nforwards++;
        }
    }
    return 0;
}

int hostd_nic_parse_add(const hostd_vmnet_config *net, const char *body, size_t len,
                        vmseal_vmrec_nic *nic, int *have_mac)
{
    memset(nic, 0, sizeof(*nic));
    *have_mac = 0;
    if (!body || len == 0 || len > HOSTD_NIC_BODY_MAX)
        return vmseal_fail(EINVAL, "the body is a JSON object {mode, network?, mac?, forwards?} "
                           "of at most %d bytes", HOSTD_NIC_BODY_MAX);
    json_error_t jerr;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(j)) {
        json_decref(j);
        return vmseal_fail(EINVAL, "the body is a JSON object {mode, network?, mac?, forwards?}");
    }
    int r = parse_add(net, j, nic, have_mac);
    json_decref(j);
    return r;
}

void hostd_nic_api(const hostd_host_env *env, hostd_vm *vm, hostd_vm *const *others,
                   size_t nothers, const char *method, const char *sub, const char *body,
                   size_t len, int *status, json_t **resp)
{
    int get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0,
        del = strcmp(method, "DELETE") == 0;
    if (!*sub) {
        if (get) {
            vmseal_vmrec *r = hostd_vm_record(vm);
            if (!r) {
                reply_error(status, resp, 500, "out of memory");
                return;
            }
            *status = 200;
            *resp = json_pack("{s:o}", "nics", hostd_nic_list_json(r));
            vmseal_vmrec_free(r);
            return;
        }
        if (!post) {
            reply_error(status, resp, 405, "use GET or POST");
            return;
        }
        add_ctx c;
        int have_mac = 0;
        int r = hostd_nic_parse_add(env->net, body, len, &c.nic, &have_mac);
        if (r == 0 && have_mac)
            r = conflicts(vm, others, nothers, &c.nic, 1);
        if (r == 0 && !have_mac)
            r = new_mac(env->net, vm, others, nothers, &c.nic);
        if (r == 0)
            r = conflicts(vm, others, nothers, &c.nic, 0);
        for (size_t a = 0; r == 0 && a < c.nic.nforwards; a++)
            r = port_free(&c.nic.forwards[a]);
        c.net = env->net;
        if (r == 0)
            r = hostd_vm_edit_live(vm, "adding a NIC", add_fn, add_live, &c);
        if (r < 0) {
            reply_fail(status, resp, r);
            return;
        }
        hostd_vm_log(vm, "NIC %s added (%s%s%s, %zu forward(s))", c.nic.mac,
                     vmseal_vmrec_nic_mode_name(c.nic.mode), c.nic.network[0] ? " on " : "",
                     c.nic.network, c.nic.nforwards);
        *status = 201;
        *resp = nic_json(&c.nic, c.idx);
        return;
    }
    if (sub[0] != '/' || !vmseal_vmrec_mac_valid(sub + 1)) {
        reply_error(status, resp, 404, "no such NIC (give its MAC address)");
        return;
    }
    if (!del) {
        reply_error(status, resp, 405, "use DELETE");
        return;
    }
    rm_ctx c = {.mac = sub + 1};
    int r = hostd_vm_edit(vm, "removing a NIC", rm_fn, &c);
    if (r < 0) {
        reply_fail(status, resp, r);
        return;
    }
    hostd_vm_log(vm, "NIC %s removed", sub + 1);
    *status = 204;
    *resp = NULL;
}
