/* vm.conf schema: a VM's network cards (include/vmseal/vmrecord.h,
 * docs/formats.md "VM configuration").
 *
 *   nics = N                 0..4 (absent: 0)
 *   nicN.mac = 0a:76:6d:12:34:56
 *   nicN.mode = user|bridge
 *   nicN.network = NAME      bridge: a network hostd.conf defines
 *   nicN.forward = tcp:127.0.0.1:8080:80,udp:127.0.0.1:5353:53
 *                            user: host address and port -> guest port
 *
 * vm.conf is untrusted (a datastore user may edit it): every value is
 * checked here once; what the host allows (its networks, the host
 * addresses a forward may bind) is checked by vmseal-hostd at power-on. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <vmseal/vmrecord.h>

#include "vmrecord_nic.h"

enum nic_field { N_MAC, N_MODE, N_NETWORK, N_FORWARD, N_COUNT };

static const char *const nic_fields[N_COUNT] = {
    [N_MAC] = "mac",
    [N_MODE] = "mode",
    [N_NETWORK] = "network",
    [N_FORWARD] = "forward",
};

static const char count_key[] = "nics";

static int fail_key(const vmseal_vmconf *src, const char *key, int err, const char *fmt, ...)
    VMSEAL_PRINTF(4, 5);
static int fail_key(const vmseal_vmconf *src, const char *key, int err, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    unsigned line = src ? vmseal_vmconf_line_of(src, key) : 0;
    if (line)
        return vmseal_fail(err, "vm.conf line %u: %s: %s", line, key, what);
    return vmseal_fail(err, "vm.conf: %s: %s", key, what);
}

static void nic_key(char *buf, size_t len, size_t idx, enum nic_field f)
{
    snprintf(buf, len, "nic%zu.%s", idx, nic_fields[f]);
}

/* ---------------------------------------------------------------- syntax */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int vmseal_vmrec_mac_valid(const char *mac)
{
    if (!mac || strlen(mac) != 17)
        return 0;
    int nonzero = 0;
    for (int i = 0; i < 6; i++) {
        int hi = hexval(mac[3 * i]), lo = hexval(mac[3 * i + 1]);
        if (hi < 0 || lo < 0 || (i < 5 && mac[3 * i + 2] != ':'))
            return 0;
        if (i == 0 && (lo & 1))
            return 0;   /* multicast / broadcast */
        nonzero |= hi | lo;
    }
    return nonzero != 0;
}

int vmseal_vmrec_network_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > VMSEAL_VMREC_NETWORK_MAX ||
        !((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= 'A' && name[0] <= 'Z')))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* Decimal 0..max, no sign, no leading zero; advances *p. */
static int parse_uint(const char **p, unsigned max, unsigned *out)
{
    const char *s = *p;
    unsigned v = 0;
    size_t n = 0;
    while (s[n] >= '0' && s[n] <= '9') {
        if (n >= 5)
            return -1;
        v = v * 10 + (unsigned)(s[n] - '0');
        n++;
    }
    if (n == 0 || (n > 1 && s[0] == '0') || v > max)
        return -1;
    *p = s + n;
    *out = v;
    return 0;
}

int vmseal_vmrec_forward_parse(const char *text, vmseal_vmrec_forward *out)
{
    memset(out, 0, sizeof(*out));
    const char *p = text ? text : "";
    if (strncmp(p, "tcp:", 4) == 0) {
        out->udp = 0;
    } else if (strncmp(p, "udp:", 4) == 0) {
        out->udp = 1;
    } else {
        return vmseal_fail(EINVAL, "a forward starts with tcp: or udp:");
    }
    p += 4;
    const char *addr = p;
    for (int i = 0; i < 4; i++) {
        unsigned o;
        if (parse_uint(&p, 255, &o) < 0 || *p != (i < 3 ? '.' : ':'))
            return vmseal_fail(EINVAL, "the host address of a forward is an IPv4 address "
                               "(A.B.C.D)");
        p++;
    }
    size_t alen = (size_t)(p - 1 - addr);
    memcpy(out->host_addr, addr, alen);
    out->host_addr[alen] = '\0';
    if (parse_uint(&p, 65535, &out->host_port) < 0 || *p != ':' ||
        out->host_port < VMSEAL_VMREC_FORWARD_PORT_MIN)
        return vmseal_fail(EINVAL, "the host port of a forward is %d..65535 (not a privileged "
                           "port)", VMSEAL_VMREC_FORWARD_PORT_MIN);
    p++;
    if (parse_uint(&p, 65535, &out->guest_port) < 0 || *p || out->guest_port == 0)
        return vmseal_fail(EINVAL, "the guest port of a forward is 1..65535");
    return 0;
}

int vmseal_vmrec_forward_format(const vmseal_vmrec_forward *f, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s:%s:%u:%u", f->udp ? "udp" : "tcp", f->host_addr, f->host_port,
                     f->guest_port);
    return n < 0 || (size_t)n >= len ? vmseal_fail(ENOSPC, "forward buffer too small") : 0;
}

const char *vmseal_vmrec_nic_mode_name(vmseal_nic_mode mode)
{
    return mode == VMSEAL_NIC_BRIDGE ? "bridge" : "user";
}

int vmseal_vmrec_nic_mode_parse(const char *s, vmseal_nic_mode *out)
{
    if (s && strcmp(s, "user") == 0)
        *out = VMSEAL_NIC_USER;
    else if (s && strcmp(s, "bridge") == 0)
        *out = VMSEAL_NIC_BRIDGE;
    else
        return vmseal_fail(EINVAL, "a NIC's mode is user or bridge");
    return 0;
}

/* ---------------------------------------------------------------- reading */

int vmrec_nic_reserved(const char *key)
{
    return strncmp(key, "nic", 3) == 0;
}

/* "nic<N>.<field>": 1 and idx/field; -1 when in the namespace but not a
 * NIC key. */
static int parse_nic_key(const char *key, size_t *idx, enum nic_field *field)
{
    const char *p = key + 3;
    if (*p < '0' || *p > '9')
        return -1;
    size_t n = 0, digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 4; p++, digits++)
        n = n * 10 + (size_t)(*p - '0');
    if (*p != '.' || (digits > 1 && key[3] == '0'))
        return -1;
    for (int f = 0; f < N_COUNT; f++)
        if (strcmp(p + 1, nic_fields[f]) == 0) {
            *idx = n;
            *field = (enum nic_field)f;
            return 1;
        }
    return -1;
}

static int parse_forwards(vmseal_vmrec_nic *nic, const vmseal_vmconf *src, const char *key,
                          const char *v)
{
    nic->nforwards = 0;
    const char *p = v;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char one[64];
        if (len == 0 || len >= sizeof(one))
            return fail_key(src, key, EPROTO, "a comma-separated list of "
                            "tcp|udp:HOSTADDR:HOSTPORT:GUESTPORT");
        if (nic->nforwards >= VMSEAL_VMREC_MAX_FORWARDS)
            return fail_key(src, key, EPROTO, "at most %d forwards per NIC",
                            VMSEAL_VMREC_MAX_FORWARDS);
        memcpy(one, p, len);
        one[len] = '\0';
        if (vmseal_vmrec_forward_parse(one, &nic->forwards[nic->nforwards]) < 0)
            return fail_key(src, key, EPROTO, "%s: %s", one, vmseal_last_error());
        nic->nforwards++;
        p += len;
        if (*p == ',') {
            p++;
            if (!*p)
                return fail_key(src, key, EPROTO, "ends with a comma");
        }
    }
    if (nic->nforwards == 0)
        return fail_key(src, key, EPROTO, "empty (leave the key out)");
    return 0;
}

int vmrec_nic_set(vmseal_vmrec *r, const vmseal_vmconf *src, const char *key, const char *v)
{
    if (strcmp(key, count_key) == 0) {
        size_t n = strlen(v);
        if (n != 1 || v[0] < '0' || v[0] > '0' + VMSEAL_VMREC_MAX_NICS)
            return fail_key(src, key, EPROTO, "0..%d", VMSEAL_VMREC_MAX_NICS);
        r->nnics = (size_t)(v[0] - '0');
        return 0;
    }
    size_t idx;
    enum nic_field f;
    if (parse_nic_key(key, &idx, &f) < 0)
        return fail_key(src, key, EPROTO, "unknown key in vmseal's namespace (a typo, or a file "
                        "of a newer vmseal?)");
    if (idx >= VMSEAL_VMREC_MAX_NICS)
        return fail_key(src, key, EPROTO, "a VM has at most %d NICs", VMSEAL_VMREC_MAX_NICS);
    vmseal_vmrec_nic *nic = &r->nics[idx];
    switch (f) {
    case N_MAC:
        if (!vmseal_vmrec_mac_valid(v))
            return fail_key(src, key, EPROTO, "a unicast MAC address xx:xx:xx:xx:xx:xx");
        for (size_t i = 0; i < 17; i++)
            nic->mac[i] = (char)(v[i] >= 'A' && v[i] <= 'F' ? v[i] - 'A' + 'a' : v[i]);
        nic->mac[17] = '\0';
        return 0;
    case N_MODE:
        if (vmseal_vmrec_nic_mode_parse(v, &nic->mode) < 0)
            return fail_key(src, key, EPROTO, "user or bridge");
        return 0;
    case N_NETWORK:
        if (!vmseal_vmrec_network_name_valid(v))
            return fail_key(src, key, EPROTO, "a network name: 1..%d of [A-Za-z0-9_-], starting "
                            "with a letter", VMSEAL_VMREC_NETWORK_MAX);
        memcpy(nic->network, v, strlen(v) + 1);
        return 0;
    case N_FORWARD:
        return parse_forwards(nic, src, key, v);
    case N_COUNT:
        break;
    }
    return vmseal_fail(EPROTO, "vm.conf: %s: not handled", key);
}

/* ---------------------------------------------------------------- checks */

static int nic_unused(const vmseal_vmrec_nic *n)
{
    return !n->mac[0] && n->mode == VMSEAL_NIC_USER && !n->network[0] && n->nforwards == 0;
}

int vmrec_nic_check(const vmseal_vmrec *r, const vmseal_vmconf *src)
{
    char k[VMSEAL_VMREC_KEY_MAX];
    if (r->nnics > VMSEAL_VMREC_MAX_NICS)
        return fail_key(src, count_key, EPROTO, "0..%d", VMSEAL_VMREC_MAX_NICS);
    for (size_t i = 0; i < VMSEAL_VMREC_MAX_NICS; i++) {
        const vmseal_vmrec_nic *n = &r->nics[i];
        if (i >= r->nnics) {
            if (nic_unused(n))
                continue;
            nic_key(k, sizeof(k), i, N_MAC);
            for (int f = 0; src && f < N_COUNT; f++) {
                nic_key(k, sizeof(k), i, (enum nic_field)f);
                if (vmseal_vmconf_line_of(src, k))
                    break;
            }
            return fail_key(src, k, EPROTO, "there are only %zu NICs", r->nnics);
        }
        nic_key(k, sizeof(k), i, N_MAC);
        if (!n->mac[0])
            return fail_key(src, k, EPROTO, "missing");
        if (!vmseal_vmrec_mac_valid(n->mac))
            return fail_key(src, k, EPROTO, "a unicast MAC address xx:xx:xx:xx:xx:xx");
        for (size_t j = 0; j < i; j++)
            if (strcasecmp(r->nics[j].mac, n->mac) == 0)
                return fail_key(src, k, EPROTO, "the same MAC address as nic%zu", j);
        if (n->mode != VMSEAL_NIC_USER && n->mode != VMSEAL_NIC_BRIDGE) {
            nic_key(k, sizeof(k), i, N_MODE);
            return fail_key(src, k, EPROTO, "user or bridge");
        }
        nic_key(k, sizeof(k), i, N_NETWORK);
        if (n->mode == VMSEAL_NIC_BRIDGE && !vmseal_vmrec_network_name_valid(n->network))
            return fail_key(src, k, EPROTO, "a bridged NIC names a network of the host");
        if (n->mode == VMSEAL_NIC_USER && n->network[0])
            return fail_key(src, k, EPROTO, "only for mode bridge");
        nic_key(k, sizeof(k), i, N_FORWARD);
        if (n->nforwards > VMSEAL_VMREC_MAX_FORWARDS)
            return fail_key(src, k, EPROTO, "at most %d forwards per NIC",
                            VMSEAL_VMREC_MAX_FORWARDS);
        if (n->mode == VMSEAL_NIC_BRIDGE && n->nforwards)
            return fail_key(src, k, EPROTO, "port forwards are for mode user only");
        for (size_t a = 0; a < n->nforwards; a++) {
            const vmseal_vmrec_forward *fa = &n->forwards[a];
            char txt[64];
            if (vmseal_vmrec_forward_format(fa, txt, sizeof(txt)) < 0)
                return fail_key(src, k, EPROTO, "a forward that cannot be written");
            vmseal_vmrec_forward chk;
            if (vmseal_vmrec_forward_parse(txt, &chk) < 0 || strcmp(chk.host_addr, fa->host_addr))
                return fail_key(src, k, EPROTO, "%s: %s", txt, vmseal_last_error());
            /* one host port once per VM (every NIC of it) */
            for (size_t j = 0; j <= i; j++)
                for (size_t b = 0; b < (j == i ? a : r->nics[j].nforwards); b++) {
                    const vmseal_vmrec_forward *fb = &r->nics[j].forwards[b];
                    if (fb->udp == fa->udp && fb->host_port == fa->host_port)
                        return fail_key(src, k, EPROTO, "host port %s %u is forwarded twice",
                                        fa->udp ? "udp" : "tcp", fa->host_port);
                }
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- writing */

void vmrec_nic_keys(const vmseal_vmrec *r, vmrec_nic_text *t,
                    void (*put)(void *ctx, const char *key, const char *value), void *ctx)
{
    if (r->nnics == 0)
        return;     /* files without NICs stay as they were */
    char k[VMSEAL_VMREC_KEY_MAX];
    snprintf(t->count, sizeof(t->count), "%zu", r->nnics);
    put(ctx, count_key, t->count);
    for (size_t i = 0; i < r->nnics && i < VMSEAL_VMREC_MAX_NICS; i++) {
        const vmseal_vmrec_nic *n = &r->nics[i];
        nic_key(k, sizeof(k), i, N_MAC);
        put(ctx, k, n->mac);
        nic_key(k, sizeof(k), i, N_MODE);
        put(ctx, k, vmseal_vmrec_nic_mode_name(n->mode));
        if (n->network[0]) {
            nic_key(k, sizeof(k), i, N_NETWORK);
            put(ctx, k, n->network);
        }
        if (n->nforwards) {
            size_t off = 0;
            char *buf = t->forward[i];
            buf[0] = '\0';
            for (size_t a = 0; a < n->nforwards && a < VMSEAL_VMREC_MAX_FORWARDS; a++) {
                if (a)
                    buf[off++] = ',';
                if (vmseal_vmrec_forward_format(&n->forwards[a], buf + off,
                                                sizeof(t->forward[i]) - off) < 0)
                    break;
                off += strlen(buf + off);
            }
            nic_key(k, sizeof(k), i, N_FORWARD);
            put(ctx, k, buf);
        }
    }
}
