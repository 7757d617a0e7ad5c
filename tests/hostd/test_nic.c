/* vmseal-hostd's NIC rules (hostd/nic.c) without QEMU: hostd.conf's
 * network keys (good and hostile values), what a power-on hands QEMU for a
 * record's NICs (the exact user-mode options; undefined networks, foreign
 * forward addresses and missing bridges refused before anything starts),
 * and the NIC body of the API. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nic.h"

static void cfg_ok(hostd_vmnet_config *n, const char *k, const char *v)
{
    if (hostd_vmnet_config_set(n, k, v) != 1)
        fail_msg("%s = %s refused: %s", k, v, vmseal_last_error());
}

static void cfg_bad(const char *k, const char *v, const char *want)
{
    hostd_vmnet_config n;
    hostd_vmnet_config_init(&n);
    int r = hostd_vmnet_config_set(&n, k, v);
    if (r != -EINVAL || !strstr(vmseal_last_error(), want))
        fail_msg("%s = %s: got %d \"%s\", want -EINVAL \"%s\"", k, v, r, vmseal_last_error(), want);
}

static void test_config(void **state)
{
    (void)state;
    hostd_vmnet_config n;
    hostd_vmnet_config_init(&n);
    assert_int_equal(n.naddrs, 1);
    assert_string_equal(n.forward_addrs[0], "127.0.0.1");
    assert_int_equal(hostd_vmnet_config_set(&n, "network_user", "x"), 0);   /* not ours */
    assert_int_equal(hostd_vmnet_config_set(&n, "datastore", "/x"), 0);
    cfg_ok(&n, "network.lan.bridge", "br0");
    cfg_ok(&n, "network.dmz-2.bridge", "vmbr.10");
    cfg_ok(&n, "forward_addresses", "127.0.0.1, 192.0.2.7");
    cfg_ok(&n, "mac_prefix", "02:ab:CD");
    cfg_ok(&n, "user_network", "isolated");
    assert_int_equal(n.nnetworks, 2);
    assert_string_equal(n.networks[1].bridge, "vmbr.10");
    assert_int_equal(n.naddrs, 2);
    assert_int_equal(n.mac_prefix[2], 0xcd);
    assert_true(n.user_isolated);
    hostd_vmnet_config d;
    hostd_vmnet_config_init(&d);
    cfg_ok(&d, "network.lan.bridge", "br0");
    assert_int_equal(hostd_vmnet_config_set(&d, "network.lan.bridge", "br1"), -EINVAL);
    assert_non_null(strstr(vmseal_last_error(), "defined twice"));
    for (int i = 0; i < HOSTD_NET_MAX_NETWORKS - 1; i++) {
        char k[64];
        snprintf(k, sizeof(k), "network.n%d.bridge", i);
        cfg_ok(&d, k, "br0");
    }
    assert_int_equal(hostd_vmnet_config_set(&d, "network.toomany.bridge", "br0"), -EINVAL);
    assert_non_null(strstr(vmseal_last_error(), "at most 16 networks"));

    cfg_bad("network.lan", "br0", "network.NAME.bridge");
    cfg_bad("network.lan.mtu", "1500", "network.NAME.bridge");
    cfg_bad("network..bridge", "br0", "network.NAME.bridge");
    cfg_bad("network.0lan.bridge", "br0", "a network name");
    cfg_bad("network.averyveryverylongname.bridge", "br0", "network.NAME.bridge");
    cfg_bad("network.lan.bridge", "br0/../eth0", "not an interface name");
    cfg_bad("network.lan.bridge", "..", "not an interface name");
    cfg_bad("network.lan.bridge", "averyveryverylongbr", "not an interface name");
    cfg_bad("network.lan.bridge", "", "not an interface name");
    cfg_bad("forward_addresses", "0.0.0.0", "not 0.0.0.0");
    cfg_bad("forward_addresses", "localhost", "not an IPv4 address");
    cfg_bad("forward_addresses", "127.0.0.01", "not an IPv4 address");
    cfg_bad("forward_addresses", "1.1.1.1 1.1.1.2 1.1.1.3 1.1.1.4 1.1.1.5 1.1.1.6 1.1.1.7 1.1.1.8 "
                                 "1.1.1.9", "at most 8");
    cfg_bad("mac_prefix", "01:00:5e", "locally administered");   /* multicast */
    cfg_bad("mac_prefix", "00:16:3e", "locally administered");   /* a vendor's */
    cfg_bad("mac_prefix", "0a:76", "locally administered");
    cfg_bad("mac_prefix", "0a:76:6d:00", "locally administered");
    cfg_bad("mac_prefix", "0a-76-6d", "locally administered");
    cfg_bad("user_network", "open", "nat or isolated");
    assert_true(hostd_vmnet_config_key("network.x.bridge"));
    assert_false(hostd_vmnet_config_key("network_user"));
}

static vmseal_vmrec *record(void)
{
    vmseal_vmrec *r = vmseal_vmrec_new();
    assert_non_null(r);
    snprintf(r->name, sizeof(r->name), "n1");
    snprintf(r->uuid, sizeof(r->uuid), "3b0c0bde-5a8e-4f36-9d43-0b4c1c3f6a10");
    r->cpus = 1;
    r->memory_mb = 64;
    r->nnics = 1;
    snprintf(r->nics[0].mac, sizeof(r->nics[0].mac), "0a:76:6d:00:00:01");
    r->nics[0].nforwards = 2;
    r->nics[0].forwards[0] = (vmseal_vmrec_forward){0, "127.0.0.1", 8080, 80};
    r->nics[0].forwards[1] = (vmseal_vmrec_forward){1, "192.0.2.7", 5353, 53};
    return r;
}

static void test_prepare(void **state)
{
    (void)state;
    hostd_vmnet_config n;
    hostd_vmnet_config_init(&n);
    cfg_ok(&n, "forward_addresses", "127.0.0.1 192.0.2.7");
    cfg_ok(&n, "network.lan.bridge", "vmseal-nobr0");
    vmseal_vmrec *r = record();
    assert_int_equal(vmseal_vmrec_validate(r), 0);
    hostd_nic_run run;
    assert_int_equal(hostd_nic_prepare(&n, r, "n1", &run), 0);
    assert_int_equal(run.n, 1);
    assert_string_equal(run.q[0].mac, "0a:76:6d:00:00:01");
    assert_int_equal(run.q[0].tap_fd, 0);
    assert_string_equal(run.q[0].netdev, "user,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:8080-:80,"
                                         "hostfwd=udp:192.0.2.7:5353-:53");
    hostd_nic_run_release(&run);
    cfg_ok(&n, "user_network", "isolated");
    assert_int_equal(hostd_nic_prepare(&n, r, "n1", &run), 0);
    assert_non_null(strstr(run.q[0].netdev, "user,net=10.0.2.0/24,restrict=on,hostfwd="));
    hostd_nic_run_release(&run);

    /* the default host: 127.0.0.1 only */
    assert_int_equal(hostd_nic_prepare(NULL, r, "n1", &run), -EINVAL);
    assert_non_null(strstr(vmseal_last_error(), "may not bind host address 192.0.2.7"));
    assert_int_equal(run.n, 0);

    /* bridged: an undefined network; a network whose bridge is missing */
    r->nics[0].nforwards = 0;
    r->nics[0].mode = VMSEAL_NIC_BRIDGE;
    snprintf(r->nics[0].network, sizeof(r->nics[0].network), "wan");
    assert_int_equal(hostd_nic_prepare(&n, r, "n1", &run), -EINVAL);
    assert_non_null(strstr(vmseal_last_error(), "defines no network wan"));
    snprintf(r->nics[0].network, sizeof(r->nics[0].network), "lan");
    assert_int_equal(hostd_nic_prepare(&n, r, "n1", &run), -EINVAL);
    assert_non_null(strstr(vmseal_last_error(), "vmseal-nobr0 is not a bridge"));
    assert_int_equal(run.fd[0], -1);

    json_t *j = hostd_nic_list_json(r);
    assert_int_equal(json_array_size(j), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(j, 0), "network")), "lan");
    json_decref(j);
    vmseal_vmrec_free(r);
}

static void body_bad(const hostd_vmnet_config *n, const char *body, const char *want)
{
    vmseal_vmrec_nic nic;
    int have = 0;
    int r = hostd_nic_parse_add(n, body, strlen(body), &nic, &have);
    if (r != -EINVAL || !strstr(vmseal_last_error(), want))
        fail_msg("%s: got %d \"%s\", want \"%s\"", body, r, vmseal_last_error(), want);
}

static void test_body(void **state)
{
    (void)state;
    hostd_vmnet_config n;
    hostd_vmnet_config_init(&n);
    cfg_ok(&n, "network.lan.bridge", "br0");
    vmseal_vmrec_nic nic;
    int have = 0;
    const char *b = "{\"forwards\": [\"tcp:127.0.0.1:8080:80\"]}";
    assert_int_equal(hostd_nic_parse_add(&n, b, strlen(b), &nic, &have), 0);
    assert_int_equal(nic.mode, VMSEAL_NIC_USER);
    assert_false(have);
    assert_int_equal(nic.nforwards, 1);
    b = "{\"network\": \"lan\", \"mac\": \"0A:76:6D:00:00:0F\"}";
    assert_int_equal(hostd_nic_parse_add(&n, b, strlen(b), &nic, &have), 0);
    assert_int_equal(nic.mode, VMSEAL_NIC_BRIDGE);
    assert_true(have);
    assert_string_equal(nic.mac, "0a:76:6d:00:00:0f");
    body_bad(&n, "", "JSON object");
    body_bad(&n, "[]", "JSON object");
    body_bad(&n, "{\"mode\": \"user\", \"mode\": \"bridge\"}", "JSON object");
    body_bad(&n, "{\"mode\": \"tap\"}", "user or bridge");
    body_bad(&n, "{\"model\": \"e1000\"}", "unknown field model");
    body_bad(&n, "{\"network\": \"wan\"}", "defines no network wan");
    body_bad(&n, "{\"mode\": \"bridge\"}", "needs network");
    body_bad(&n, "{\"mode\": \"user\", \"network\": \"lan\"}", "network is for mode bridge");
    body_bad(&n, "{\"network\": \"lan\", \"forwards\": [\"tcp:127.0.0.1:8080:80\"]}", "mode user only");
    body_bad(&n, "{\"mac\": \"ff:ff:ff:ff:ff:ff\"}", "unicast");
    body_bad(&n, "{\"mac\": 5}", "unicast");
    body_bad(&n, "{\"forwards\": \"tcp:127.0.0.1:8080:80\"}", "an array");
    body_bad(&n, "{\"forwards\": [1]}", "an array");
    body_bad(&n, "{\"forwards\": [\"tcp:127.0.0.1:443:443\"]}", "not a privileged port");
    body_bad(&n, "{\"forwards\": [\"tcp:10.0.0.1:8443:443\"]}", "forward_addresses");
    body_bad(&n, "{\"forwards\": [\"tcp:127.0.0.1:8443:443\", \"tcp:127.0.0.1:8443:80\"]}", "twice");
    char big[HOSTD_NIC_BODY_MAX + 64];
    memset(big, ' ', sizeof(big) - 1);
    big[0] = '{';
    big[sizeof(big) - 2] = '}';
    big[sizeof(big) - 1] = '\0';
    body_bad(&n, big, "at most 4096 bytes");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_prepare),
        cmocka_unit_test(test_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
