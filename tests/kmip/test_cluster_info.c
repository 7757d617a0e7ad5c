/* The cluster facts of a Query's Server Information as a client reads them
 * (kmip/cluster_info.c): what vmseal-kmsd sends, and what a hostile server
 * could send instead — terminal escapes, forged lines, bidi overrides, huge
 * texts, negative or huge numbers, wrong types, thousands of nodes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <vmseal/kmip_client.h>

/* What vmseal-kmsd sends (kmsd/ops_meta.c). */
static vmseal_ttlv *kmsd_like(void)
{
    vmseal_ttlv *si = vmseal_ttlv_struct(VMSEAL_KMIP_TAG_SERVER_INFORMATION);
    vmseal_ttlv_add_text(si, VMSEAL_KMIP_TAG_X_STORE, "postgresql");
    vmseal_ttlv_add_text(si, VMSEAL_KMIP_TAG_X_NODE, "kms1");
    vmseal_ttlv_add_long(si, VMSEAL_KMIP_TAG_X_FACTS_AGE, 412);
    vmseal_ttlv *d = vmseal_ttlv_add_struct(si, VMSEAL_KMIP_TAG_X_DATABASE);
    vmseal_ttlv_add_text(d, VMSEAL_KMIP_TAG_X_ROLE, "primary");
    vmseal_ttlv_add_text(d, VMSEAL_KMIP_TAG_X_ADDRESS, "db1.example:5432");
    vmseal_ttlv_add_text(d, VMSEAL_KMIP_TAG_X_VERSION, "15.8");
    vmseal_ttlv_add_text(d, VMSEAL_KMIP_TAG_X_SYNCHRONOUS_COMMIT, "on");
    vmseal_ttlv_add_text(d, VMSEAL_KMIP_TAG_X_SYNCHRONOUS_STANDBY_NAMES, "standby1");
    vmseal_ttlv_add_int(si, VMSEAL_KMIP_TAG_X_STANDBYS_TOTAL, 1);
    vmseal_ttlv *s = vmseal_ttlv_add_struct(si, VMSEAL_KMIP_TAG_X_STANDBY);
    vmseal_ttlv_add_text(s, VMSEAL_KMIP_TAG_X_NAME, "standby1");
    vmseal_ttlv_add_text(s, VMSEAL_KMIP_TAG_X_STATE, "streaming");
    vmseal_ttlv_add_text(s, VMSEAL_KMIP_TAG_X_SYNC_STATE, "sync");
    vmseal_ttlv_add_long(s, VMSEAL_KMIP_TAG_X_REPLAY_LAG, 3);
    vmseal_ttlv_add_long(s, VMSEAL_KMIP_TAG_X_BYTES_BEHIND, 0);
    vmseal_ttlv_add_int(si, VMSEAL_KMIP_TAG_X_NODES_TOTAL, 2);
    const char *names[] = {"kms1", "kms2"}, *states[] = {"alive", "gone"};
    for (int i = 0; i < 2; i++) {
        vmseal_ttlv *n = vmseal_ttlv_add_struct(si, VMSEAL_KMIP_TAG_X_CLUSTER_NODE);
        vmseal_ttlv_add_text(n, VMSEAL_KMIP_TAG_X_NAME, names[i]);
        vmseal_ttlv_add_text(n, VMSEAL_KMIP_TAG_X_ADDRESS, i ? "kms2.example:5696" : "kms1.example:5696");
        vmseal_ttlv_add_text(n, VMSEAL_KMIP_TAG_X_VERSION, "0.1.0");
        vmseal_ttlv_add_text(n, VMSEAL_KMIP_TAG_X_STATE, states[i]);
        vmseal_ttlv_add_long(n, VMSEAL_KMIP_TAG_X_SEEN_AGO, i ? 9000 : 700);
    }
    assert_int_equal(vmseal_ttlv_build_error(si), 0);
    return si;
}

/* Parse after an encode/decode round trip, as a client sees the bytes. */
static void parse_wire(const vmseal_ttlv *si, vmseal_kmip_cluster_info *out)
{
    uint8_t *buf;
    size_t len;
    assert_int_equal(vmseal_ttlv_encode(si, &buf, &len), 0);
    vmseal_ttlv *back;
    assert_int_equal(vmseal_ttlv_decode(buf, len, &back), 0);
    vmseal_ttlv_buf_free(buf, len);
    vmseal_kmip_cluster_info_parse(back, out);
    vmseal_ttlv_free(back);
}

/* Every text the parser hands out: NUL-terminated inside its field, valid
 * UTF-8 (checked crudely: no byte the log escaping turns into \xHH), and no
 * control character (C0, DEL) — nothing a terminal or JSON would act on. */
static void check_text(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    assert_true(n < cap);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        assert_false(c < 0x20 || c == 0x7f);
    }
    /* no U+202E / U+2028 left in clear */
    assert_null(strstr(s, "\xe2\x80\xae"));
    assert_null(strstr(s, "\xe2\x80\xa8"));
}

static void check_all(const vmseal_kmip_cluster_info *ci)
{
#define T(f) check_text(f, sizeof(f))
    T(ci->store); T(ci->node); T(ci->db_role); T(ci->db_address); T(ci->db_version); T(ci->db_error);
    T(ci->synchronous_commit); T(ci->synchronous_standby_names);
    assert_true(ci->n_standbys <= VMSEAL_KMIP_CLUSTER_STANDBYS);
    assert_true(ci->n_nodes <= VMSEAL_KMIP_CLUSTER_NODES);
    for (size_t i = 0; i < ci->n_standbys; i++) {
        T(ci->standbys[i].name); T(ci->standbys[i].state); T(ci->standbys[i].sync_state);
        assert_true(ci->standbys[i].replay_lag_ms >= -1 && ci->standbys[i].replay_lag_ms <= VMSEAL_KMIP_FACT_MAX);
        assert_true(ci->standbys[i].bytes_behind >= -1 && ci->standbys[i].bytes_behind <= VMSEAL_KMIP_FACT_MAX);
    }
    for (size_t i = 0; i < ci->n_nodes; i++) {
        T(ci->nodes[i].name); T(ci->nodes[i].address); T(ci->nodes[i].version); T(ci->nodes[i].state);
        assert_true(ci->nodes[i].seen_ago_ms >= -1 && ci->nodes[i].seen_ago_ms <= VMSEAL_KMIP_FACT_MAX);
    }
    assert_true(ci->facts_age_ms >= -1 && ci->facts_age_ms <= VMSEAL_KMIP_FACT_MAX);
    assert_true(ci->nodes_total >= (int64_t)ci->n_nodes || (ci->nodes_total == -1 && ci->n_nodes == 0));
#undef T
}

static void test_kmsd_facts(void **state)
{
    (void)state;
    vmseal_ttlv *si = kmsd_like();
    vmseal_kmip_cluster_info ci;
    parse_wire(si, &ci);
    vmseal_ttlv_free(si);
    assert_true(ci.present);
    assert_string_equal(ci.store, "postgresql");
    assert_string_equal(ci.node, "kms1");
    assert_int_equal(ci.facts_age_ms, 412);
    assert_string_equal(ci.db_role, "primary");
    assert_string_equal(ci.db_address, "db1.example:5432");
    assert_string_equal(ci.db_version, "15.8");
    assert_string_equal(ci.db_error, "");
    assert_string_equal(ci.synchronous_commit, "on");
    assert_string_equal(ci.synchronous_standby_names, "standby1");
    assert_int_equal(ci.n_standbys, 1);
    assert_int_equal(ci.standbys_total, 1);
    assert_string_equal(ci.standbys[0].name, "standby1");
    assert_string_equal(ci.standbys[0].state, "streaming");
    assert_string_equal(ci.standbys[0].sync_state, "sync");
    assert_int_equal(ci.standbys[0].replay_lag_ms, 3);
    assert_int_equal(ci.standbys[0].bytes_behind, 0);
    assert_int_equal(ci.n_nodes, 2);
    assert_int_equal(ci.nodes_total, 2);
    assert_string_equal(ci.nodes[1].name, "kms2");
    assert_string_equal(ci.nodes[1].address, "kms2.example:5696");
    assert_string_equal(ci.nodes[1].state, "gone");
    assert_int_equal(ci.nodes[1].seen_ago_ms, 9000);
    check_all(&ci);
}

/* No facts: nothing sent, an empty structure, another vendor's items, a
 * Store of the wrong type, a Server Information that is not a structure. */
static void test_absent(void **state)
{
    (void)state;
    vmseal_kmip_cluster_info ci;
    memset(&ci, 0x5a, sizeof(ci));
    vmseal_kmip_cluster_info_parse(NULL, &ci);
    assert_false(ci.present);
    assert_int_equal(ci.n_nodes, 0);
    assert_string_equal(ci.node, "");

    vmseal_ttlv *si = vmseal_ttlv_struct(VMSEAL_KMIP_TAG_SERVER_INFORMATION);
    vmseal_kmip_cluster_info_parse(si, &ci);
    assert_false(ci.present);
    vmseal_ttlv_add_text(si, 0x54AB01, "someone else's");
    vmseal_ttlv_add_long(si, VMSEAL_KMIP_TAG_X_STORE, 5);      /* wrong type */
    vmseal_ttlv *n = vmseal_ttlv_add_struct(si, VMSEAL_KMIP_TAG_X_CLUSTER_NODE);
    vmseal_ttlv_add_text(n, VMSEAL_KMIP_TAG_X_NAME, "x");
    parse_wire(si, &ci);
    assert_false(ci.present);
    assert_int_equal(ci.n_nodes, 0);
    vmseal_ttlv_free(si);

    vmseal_ttlv *txt = vmseal_ttlv_struct(VMSEAL_KMIP_TAG_RESPONSE_PAYLOAD);
    vmseal_ttlv *not_struct = vmseal_ttlv_add_text(txt, VMSEAL_KMIP_TAG_SERVER_INFORMATION, "text");
    vmseal_kmip_cluster_info_parse(not_struct, &ci);
    assert_false(ci.present);
    vmseal_ttlv_free(txt);
}

/* Texts a hostile server could send: escapes for the terminal, a line
 * break to forge output, bidi overrides, C1 controls, a backslash, and
 * texts far longer than any field. */
static void test_hostile_text(void **state)
{
    (void)state;
    char huge[20000];
    memset(huge, 'A', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    char huge_utf8[6001];
    for (size_t i = 0; i + 2 < sizeof(huge_utf8); i += 2)
        memcpy(huge_utf8 + i, "\xc3\xa9", 2);   /* é: a cut must not split it */
    huge_utf8[6000] = '\0';
    vmseal_ttlv *si = vmseal_ttlv_struct(VMSEAL_KMIP_TAG_SERVER_INFORMATION);
    vmseal_ttlv_add_text(si, VMSEAL_KMIP_TAG_X_STORE, "sqlite\x1b[2J");
    vmseal_ttlv_add_text(si, VMSEAL_KMIP_TAG_X_NODE, "kms1\x1b]0;pwned\x07\nnode kms9 alive");
    vmseal_ttlv *d = vmseal_ttlv_add_struct(si, VMSEAL_KMIP_TAG_X_DATABASE);
    vmseal_ttlv_add_text(d, VMSEAL_KMIP_TAG_X_ROLE, "primary\r");
    vmseal_ttlv_add_text(d, VMSEAL_KMIP_TAG_X_ADDRESS, huge);
    vmseal_ttlv_add_text(d, VMSEAL_KMIP_TAG_X_ERROR, huge_utf8);
    vmseal_ttlv_add_text(d, VMSEAL_KMIP_TAG_X_VERSION, "\xe2\x80\xae" "51");   /* U+202E */
    vmseal_ttlv_add_text(d, VMSEAL_KMIP_TAG_X_SYNCHRONOUS_STANDBY_NAMES, "a\\x41\xc2\x85" "b"); /* NEL */
    vmseal_ttlv *s = vmseal_ttlv_add_struct(si, VMSEAL_KMIP_TAG_X_STANDBY);
    vmseal_ttlv_add_text(s, VMSEAL_KMIP_TAG_X_NAME, "s1\x7f\xe2\x80\xa8");
    vmseal_ttlv *n = vmseal_ttlv_add_struct(si, VMSEAL_KMIP_TAG_X_CLUSTER_NODE);
    vmseal_ttlv_add_text(n, VMSEAL_KMIP_TAG_X_NAME, "\t\x01");
    vmseal_ttlv_add_text(n, VMSEAL_KMIP_TAG_X_STATE, huge);
    assert_int_equal(vmseal_ttlv_build_error(si), 0);
    vmseal_kmip_cluster_info ci;
    parse_wire(si, &ci);
    vmseal_ttlv_free(si);
    check_all(&ci);
    assert_true(ci.present);
    assert_string_equal(ci.store, "sqlite\\x1b[2J");
    assert_string_equal(ci.node, "kms1\\x1b]0;pwned\\x07\\nnode kms9 alive");
    assert_string_equal(ci.db_role, "primary\\r");
    assert_string_equal(ci.db_version, "\\xe2\\x80\\xae51");
    assert_string_equal(ci.synchronous_standby_names, "a\\\\x41\\xc2\\x85b");
    assert_string_equal(ci.standbys[0].name, "s1\\x7f\\xe2\\x80\\xa8");
    assert_string_equal(ci.nodes[0].name, "\\t\\x01");
    /* cut to the field, at a character, marked */
    size_t l = strlen(ci.db_address);
    assert_true(l < sizeof(ci.db_address) && l > sizeof(ci.db_address) - 8);
    assert_string_equal(ci.db_address + l - 3, "...");
    assert_int_equal(strspn(ci.db_address, "A"), l - 3);
    l = strlen(ci.db_error);
    assert_string_equal(ci.db_error + l - 3, "...");
    assert_int_equal((l - 3) % 2, 0);                      /* whole é only */
    assert_memory_equal(ci.db_error, "\xc3\xa9\xc3\xa9", 4);
    l = strlen(ci.nodes[0].state);
    assert_true(l < sizeof(ci.nodes[0].state));
    assert_string_equal(ci.nodes[0].state + l - 3, "...");
}

static void test_hostile_numbers(void **state)
{
    (void)state;
    vmseal_ttlv *si = vmseal_ttlv_struct(VMSEAL_KMIP_TAG_SERVER_INFORMATION);
    vmseal_ttlv_add_text(si, VMSEAL_KMIP_TAG_X_STORE, "postgresql");
    vmseal_ttlv_add_long(si, VMSEAL_KMIP_TAG_X_FACTS_AGE, INT64_MIN);
    vmseal_ttlv_add_long(si, VMSEAL_KMIP_TAG_X_NODES_TOTAL, INT64_MAX);
    vmseal_ttlv_add_text(si, VMSEAL_KMIP_TAG_X_STANDBYS_TOTAL, "12");   /* wrong type */
    vmseal_ttlv_add_text(si, VMSEAL_KMIP_TAG_X_DATABASE, "not a structure");
    vmseal_ttlv *s = vmseal_ttlv_add_struct(si, VMSEAL_KMIP_TAG_X_STANDBY);
    vmseal_ttlv_add_long(s, VMSEAL_KMIP_TAG_X_REPLAY_LAG, -5);
    vmseal_ttlv_add_text(s, VMSEAL_KMIP_TAG_X_BYTES_BEHIND, "0");
    vmseal_ttlv_add_long(s, VMSEAL_KMIP_TAG_X_NAME, 7);                 /* wrong type */
    s = vmseal_ttlv_add_struct(si, VMSEAL_KMIP_TAG_X_STANDBY);
    vmseal_ttlv_add_int(s, VMSEAL_KMIP_TAG_X_REPLAY_LAG, 250);          /* Integer is fine */
    vmseal_ttlv_add_long(s, VMSEAL_KMIP_TAG_X_BYTES_BEHIND, VMSEAL_KMIP_FACT_MAX + 1);
    vmseal_ttlv_add_enum(s, VMSEAL_KMIP_TAG_X_STATE, 1);
    vmseal_ttlv_add_text(si, VMSEAL_KMIP_TAG_X_CLUSTER_NODE, "a node as text"); /* skipped */
    vmseal_kmip_cluster_info ci;
    parse_wire(si, &ci);
    vmseal_ttlv_free(si);
    check_all(&ci);
    assert_int_equal(ci.facts_age_ms, -1);
    assert_int_equal(ci.nodes_total, VMSEAL_KMIP_FACT_MAX);
    assert_int_equal(ci.standbys_total, 2);                 /* as many as were sent */
    assert_string_equal(ci.db_role, "");
    assert_int_equal(ci.n_standbys, 2);
    assert_int_equal(ci.standbys[0].replay_lag_ms, -1);
    assert_int_equal(ci.standbys[0].bytes_behind, -1);
    assert_string_equal(ci.standbys[0].name, "");
    assert_int_equal(ci.standbys[1].replay_lag_ms, 250);
    assert_int_equal(ci.standbys[1].bytes_behind, VMSEAL_KMIP_FACT_MAX);
    assert_string_equal(ci.standbys[1].state, "");
    assert_int_equal(ci.n_nodes, 0);
}

/* Thousands of nodes and standbys: a bounded number kept, the totals say
 * how many there were (a claimed total below the count sent is raised). */
static void test_many(void **state)
{
    (void)state;
    vmseal_ttlv *si = vmseal_ttlv_struct(VMSEAL_KMIP_TAG_SERVER_INFORMATION);
    vmseal_ttlv_add_text(si, VMSEAL_KMIP_TAG_X_STORE, "postgresql");
    vmseal_ttlv_add_int(si, VMSEAL_KMIP_TAG_X_NODES_TOTAL, 3);
    for (int i = 0; i < 3000; i++) {
        char nm[16];
        snprintf(nm, sizeof(nm), "n%d", i);
        vmseal_ttlv *n = vmseal_ttlv_add_struct(si, VMSEAL_KMIP_TAG_X_CLUSTER_NODE);
        vmseal_ttlv_add_text(n, VMSEAL_KMIP_TAG_X_NAME, nm);
        vmseal_ttlv *s = vmseal_ttlv_add_struct(si, VMSEAL_KMIP_TAG_X_STANDBY);
        vmseal_ttlv_add_text(s, VMSEAL_KMIP_TAG_X_NAME, nm);
    }
    vmseal_kmip_cluster_info ci;
    parse_wire(si, &ci);
    vmseal_ttlv_free(si);
    check_all(&ci);
    assert_int_equal(ci.n_nodes, VMSEAL_KMIP_CLUSTER_NODES);
    assert_int_equal(ci.nodes_total, 3000);
    assert_int_equal(ci.n_standbys, VMSEAL_KMIP_CLUSTER_STANDBYS);
    assert_int_equal(ci.standbys_total, 3000);
    assert_string_equal(ci.nodes[15].name, "n15");
    assert_string_equal(ci.standbys[7].name, "n7");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kmsd_facts),
        cmocka_unit_test(test_absent),
        cmocka_unit_test(test_hostile_text),
        cmocka_unit_test(test_hostile_numbers),
        cmocka_unit_test(test_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
