/* The NIC keys of the vm.conf schema (lib/conf/vmrecord_nic.c): a file
 * with NICs loads, is written back unchanged, NICs built in memory are
 * written in the schema's order; hostile values (MACs, modes, networks,
 * forwards, counts) are refused naming the key. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <vmseal/vmrecord.h>

static char *read_example(const char *name, size_t *len)
{
    const char *src = getenv("VMSEAL_SRC");
    char path[1024];
    snprintf(path, sizeof(path), "%s/tests/lib/vmconf-examples/%s.conf", src ? src : ".", name);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("%s: %s", path, strerror(errno));
    char *buf = malloc(1 << 16);
    assert_non_null(buf);
    *len = fread(buf, 1, (1 << 16) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static char *format_rec(const vmseal_vmrec *r)
{
    vmseal_vmconf *c = NULL;
    if (vmseal_vmrec_to_conf(r, &c) != 0)
        fail_msg("to_conf failed: %s", vmseal_last_error());
    char *t = vmseal_vmconf_format(c);
    vmseal_vmconf_free(c);
    assert_non_null(t);
    return t;
}

static void test_round_trip(void **state)
{
    (void)state;
    size_t len;
    char *text = read_example("nics", &len);
    vmseal_vmrec *r = NULL;
    if (vmseal_vmrec_parse(text, len, &r) != 0)
        fail_msg("parse: %s", vmseal_last_error());
    assert_int_equal(r->nnics, 2);
    assert_string_equal(r->nics[0].mac, "0a:76:6d:12:34:56");
    assert_int_equal(r->nics[0].mode, VMSEAL_NIC_USER);
    assert_int_equal(r->nics[0].nforwards, 2);
    assert_int_equal(r->nics[0].forwards[0].udp, 0);
    assert_string_equal(r->nics[0].forwards[0].host_addr, "127.0.0.1");
    assert_int_equal(r->nics[0].forwards[0].host_port, 8080);
    assert_int_equal(r->nics[0].forwards[0].guest_port, 80);
    assert_int_equal(r->nics[0].forwards[1].udp, 1);
    assert_int_equal(r->nics[1].mode, VMSEAL_NIC_BRIDGE);
    assert_string_equal(r->nics[1].network, "lan");
    char *out = format_rec(r);
    assert_string_equal(out, text);
    free(out);

    /* remove a NIC and add one in memory: written in the schema's order */
    r->nics[0] = r->nics[1];
    memset(&r->nics[1], 0, sizeof(r->nics[1]));
    r->nnics = 1;
    out = format_rec(r);
    assert_non_null(strstr(out, "nics = 1\nnic0.mac = 0a:76:6d:ab:cd:ef\nnic0.mode = bridge\n"
                                "nic0.network = lan\n"));
    assert_null(strstr(out, "nic1."));
    free(out);
    r->nnics = 0;
    memset(&r->nics[0], 0, sizeof(r->nics[0]));
    out = format_rec(r);
    assert_null(strstr(out, "nic"));   /* no NIC: no key at all */
    free(out);
    /* a record without NICs written from scratch has no nics key */
    vmseal_vmrec *d = vmseal_vmrec_dup(r);
    assert_non_null(d);
    vmseal_vmrec_free(d);
    vmseal_vmrec_free(r);
    free(text);
}

/* Replace (or with value NULL, drop) one key of the example and parse. */
static void refuse(const char *key, const char *value, const char *want)
{
    size_t len;
    char *text = read_example("nics", &len);
    vmseal_vmconf *c = NULL;
    assert_int_equal(vmseal_vmconf_parse(text, len, &c), 0);
    if (value)
        assert_int_equal(vmseal_vmconf_set(c, key, value), 0);
    else
        vmseal_vmconf_unset(c, key);
    vmseal_vmrec *r = NULL;
    int rc = vmseal_vmrec_from_conf(c, &r);
    if (rc != -EPROTO)
        fail_msg("%s = %s: got %d, want -EPROTO (%s)", key, value ? value : "(none)", rc,
                 vmseal_last_error());
    if (!strstr(vmseal_last_error(), want))
        fail_msg("%s = %s: message \"%s\" lacks \"%s\"", key, value ? value : "(none)",
                 vmseal_last_error(), want);
    assert_null(r);
    vmseal_vmconf_free(c);
    free(text);
}

static void test_refusals(void **state)
{
    (void)state;
    /* counts */
    refuse("nics", "5", "nics: 0..4");
    refuse("nics", "01", "nics: 0..4");
    refuse("nics", "-1", "nics: 0..4");
    refuse("nics", "3", "nic2.mac: missing");
    refuse("nics", "1", "nic1.mac: there are only 1 NICs");
    refuse("nic4.mac", "0a:00:00:00:00:01", "nic4.mac: a VM has at most 4 NICs");
    refuse("nic00.mac", "0a:00:00:00:00:01", "unknown key");
    refuse("nic0.speed", "1000", "unknown key");
    refuse("nicx", "1", "unknown key");
    /* MACs */
    refuse("nic0.mac", "01:00:5e:00:00:01", "nic0.mac: a unicast MAC");
    refuse("nic0.mac", "ff:ff:ff:ff:ff:ff", "unicast");
    refuse("nic0.mac", "00:00:00:00:00:00", "unicast");
    refuse("nic0.mac", "0a:76:6d:12:34", "unicast");
    refuse("nic0.mac", "0a:76:6d:12:34:567", "unicast");
    refuse("nic0.mac", "0a-76-6d-12-34-56", "unicast");
    refuse("nic0.mac", "0a:76:6d:12:34:5g", "unicast");
    refuse("nic1.mac", "0A:76:6D:12:34:56", "nic1.mac: the same MAC address as nic0");
    refuse("nic0.mac", NULL, "nic0.mac: missing");
    /* modes and networks */
    refuse("nic0.mode", "tap", "nic0.mode: user or bridge");
    refuse("nic1.network", NULL, "nic1.network: a bridged NIC names a network");
    refuse("nic1.network", "br0;rm", "nic1.network: a network name");
    refuse("nic1.network", "0lan", "nic1.network: a network name");
    refuse("nic1.network", "averyveryverylongname", "nic1.network: a network name");
    refuse("nic0.network", "lan", "nic0.network: only for mode bridge");
    refuse("nic1.forward", "tcp:127.0.0.1:8081:80", "nic1.forward: port forwards are for mode user");
    /* forwards */
    refuse("nic0.forward", "tcp:127.0.0.1:80:80", "nic0.forward: tcp:127.0.0.1:80:80: the host port");
    refuse("nic0.forward", "tcp:127.0.0.1:1023:80", "not a privileged port");
    refuse("nic0.forward", "tcp:127.0.0.1:65536:80", "not a privileged port");
    refuse("nic0.forward", "tcp:127.0.0.1:08080:80", "not a privileged port");
    refuse("nic0.forward", "tcp:127.0.0.1:8080:0", "the guest port");
    refuse("nic0.forward", "tcp:127.0.0.1:8080:65536", "the guest port");
    refuse("nic0.forward", "tcp:127.0.0.1:8080:80x", "the guest port");
    refuse("nic0.forward", "sctp:127.0.0.1:8080:80", "tcp: or udp:");
    refuse("nic0.forward", "tcp:localhost:8080:80", "IPv4 address");
    refuse("nic0.forward", "tcp:127.0.0.256:8080:80", "IPv4 address");
    refuse("nic0.forward", "tcp:127.0.0.01:8080:80", "IPv4 address");
    refuse("nic0.forward", "tcp:127.0.0:8080:80", "IPv4 address");
    refuse("nic0.forward", "tcp:127.0.0.1:8080-10.0.0.1:80", "the host port");
    refuse("nic0.forward", "tcp:127.0.0.1:8080:80,", "ends with a comma");
    refuse("nic0.forward", ",tcp:127.0.0.1:8080:80", "comma-separated");
    refuse("nic0.forward", "tcp:127.0.0.1:8080:80,,tcp:127.0.0.1:8081:80", "comma-separated");
    refuse("nic0.forward", "tcp:127.0.0.1:8080:80,tcp:127.0.0.1:8080:81",
           "host port tcp 8080 is forwarded twice");
    refuse("nic0.forward",
           "tcp:127.0.0.1:8001:1,tcp:127.0.0.1:8002:1,tcp:127.0.0.1:8003:1,tcp:127.0.0.1:8004:1,"
           "tcp:127.0.0.1:8005:1,tcp:127.0.0.1:8006:1,tcp:127.0.0.1:8007:1,tcp:127.0.0.1:8008:1,"
           "tcp:127.0.0.1:8009:1", "at most 8 forwards");
}

static void test_helpers(void **state)
{
    (void)state;
    vmseal_vmrec_forward f;
    assert_int_equal(vmseal_vmrec_forward_parse("udp:10.1.2.3:1024:65535", &f), 0);
    char buf[64];
    assert_int_equal(vmseal_vmrec_forward_format(&f, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "udp:10.1.2.3:1024:65535");
    assert_int_equal(vmseal_vmrec_forward_format(&f, buf, 8), -ENOSPC);
    assert_true(vmseal_vmrec_mac_valid("02:00:00:00:00:01"));
    assert_true(vmseal_vmrec_mac_valid("52:54:00:AB:cd:01"));
    assert_false(vmseal_vmrec_mac_valid("03:00:00:00:00:01"));
    assert_false(vmseal_vmrec_mac_valid(NULL));
    assert_true(vmseal_vmrec_network_name_valid("lan_2-b"));
    assert_false(vmseal_vmrec_network_name_valid(""));
    assert_false(vmseal_vmrec_network_name_valid("-lan"));
    vmseal_nic_mode m;
    assert_int_equal(vmseal_vmrec_nic_mode_parse("bridge", &m), 0);
    assert_int_equal(m, VMSEAL_NIC_BRIDGE);
    assert_string_equal(vmseal_vmrec_nic_mode_name(m), "bridge");
    assert_int_equal(vmseal_vmrec_nic_mode_parse("User", &m), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
