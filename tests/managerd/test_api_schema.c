/* The manager's request body validation: strict JSON, known fields only,
 * types and bounds, names. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "api_schema.h"

static int parse(const char *body, const api_schema *s, char *err)
{
    json_t *v = NULL;
    int rc = api_parse(body, strlen(body), s, &v, err, 256);
    if (rc == 0)
        assert_non_null(v);
    else
        assert_null(v);
    json_decref(v);
    return rc;
}

static void test_valid_bodies(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(parse("{\"user\":\"administrator\",\"password\":\"x\"}", &schema_session, err), 0);
    assert_int_equal(parse("{\"name\":\"vm-1\",\"host\":\"esx1\",\"cpus\":2,\"memory_mb\":512,"
                           "\"disks\":[{\"size_mb\":64},{\"size_mb\":1}],\"policy\":\"encrypted\","
                           "\"firmware\":\"uefi\"}", &schema_vm_create, err), 0);
    assert_int_equal(parse("{\"name\":\"k1\",\"servers\":[\"kms1:5696\",\"[::1]:5696\"],\"default\":true}",
                           &schema_kms_add, err), 0);
    assert_int_equal(parse("{\"policy\":\"none\"}", &schema_vm_patch, err), 0);
    assert_int_equal(parse("{\"cpus\":2,\"memory_mb\":512,\"kernel\":\"/k\",\"initrd\":\"\","
                           "\"append\":\"console=ttyS0\"}", &schema_vm_patch, err), 0);
    assert_int_equal(parse("{}", &schema_vm_rekey, err), 0);
    assert_int_equal(parse("{\"kek_ids\":[]}", &schema_host_keys, err), 0);
}

static void test_invalid_bodies(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(parse("", &schema_session, err), -EINVAL);
    assert_non_null(strstr(err, "body is required"));
    assert_int_equal(parse("{\"user\":\"a\"", &schema_session, err), -EINVAL);
    assert_non_null(strstr(err, "invalid JSON"));
    assert_int_equal(parse("[1,2]", &schema_session, err), -EINVAL);
    assert_non_null(strstr(err, "JSON object"));
    assert_int_equal(parse("{\"user\":\"a\",\"user\":\"b\",\"password\":\"x\"}", &schema_session, err), -EINVAL);
    assert_int_equal(parse("{\"user\":\"a\"}", &schema_session, err), -EINVAL);
    assert_non_null(strstr(err, "missing field 'password'"));
    assert_int_equal(parse("{\"user\":\"a\",\"password\":\"x\",\"admin\":true}", &schema_session, err), -EINVAL);
    assert_non_null(strstr(err, "unknown field 'admin'"));
    assert_int_equal(parse("{\"user\":5,\"password\":\"x\"}", &schema_session, err), -EINVAL);
    assert_non_null(strstr(err, "wrong type"));
    assert_int_equal(parse("{\"user\":\"a\\u0000b\",\"password\":\"x\"}", &schema_session, err), -EINVAL);
    assert_int_equal(parse("{\"user\":\"../../etc\",\"password\":\"x\"}", &schema_session, err), -EINVAL);
    assert_int_equal(parse("{\"user\":\"-rf\",\"password\":\"x\"}", &schema_session, err), -EINVAL);
    assert_int_equal(parse("{\"user\":\"a b\",\"password\":\"x\"}", &schema_session, err), -EINVAL);
    assert_int_equal(parse("{\"name\":\"u\",\"password\":\"short\",\"role\":\"Administrator\"}",
                           &schema_user_add, err), -EINVAL);
    assert_int_equal(parse("{\"name\":\"v\",\"host\":\"h\",\"cpus\":0}", &schema_vm_create, err), -EINVAL);
    assert_non_null(strstr(err, "cpus"));
    assert_int_equal(parse("{\"name\":\"v\",\"host\":\"h\",\"cpus\":1.5}", &schema_vm_create, err), -EINVAL);
    assert_int_equal(parse("{\"name\":\"v\",\"host\":\"h\",\"policy\":\"maybe\"}", &schema_vm_create, err),
                     -EINVAL);
    assert_non_null(strstr(err, "encrypted, none"));
    assert_int_equal(parse("{\"name\":\"v\",\"host\":\"h\",\"disks\":[{\"size_mb\":1,\"x\":2}]}",
                           &schema_vm_create, err), -EINVAL);
    assert_non_null(strstr(err, "disks' item 0"));
    assert_int_equal(parse("{\"name\":\"v\",\"host\":\"h\",\"disks\":[5]}", &schema_vm_create, err), -EINVAL);
    assert_int_equal(parse("{\"cpus\":65}", &schema_vm_patch, err), -EINVAL);
    assert_non_null(strstr(err, "cpus"));
    assert_int_equal(parse("{\"memory_mb\":65537}", &schema_vm_patch, err), -EINVAL);
    assert_non_null(strstr(err, "memory_mb"));
    assert_int_equal(parse("{\"append\":7}", &schema_vm_patch, err), -EINVAL);
    assert_int_equal(parse("{\"disks\":[]}", &schema_vm_patch, err), -EINVAL);
    assert_non_null(strstr(err, "unknown field 'disks'"));
    assert_int_equal(parse("{\"name\":\"k\",\"servers\":[]}", &schema_kms_add, err), -EINVAL);
    assert_int_equal(parse("{\"name\":\"k\",\"servers\":[\"\"]}", &schema_kms_add, err), -EINVAL);
    assert_int_equal(parse("{\"ca_pem\":\"hello\"}", &schema_kms_trust, err), -EINVAL);
    assert_non_null(strstr(err, "PEM"));
    /* deep nesting is refused before schema checks */
    char deep[200] = "{\"name\":\"v\",\"host\":\"h\",\"disks\":";
    for (int i = 0; i < 20; i++)
        strcat(deep, "[");
    for (int i = 0; i < 20; i++)
        strcat(deep, "]");
    strcat(deep, "}");
    assert_int_equal(parse(deep, &schema_vm_create, err), -EINVAL);
}

static void test_names(void **state)
{
    (void)state;
    assert_true(api_valid_name("vm1"));
    assert_true(api_valid_name("a.b_c-d"));
    assert_false(api_valid_name(""));
    assert_false(api_valid_name(".hidden"));
    assert_false(api_valid_name("-x"));
    assert_false(api_valid_name("a/b"));
    assert_false(api_valid_name("a%2fb"));
    char longname[70];
    memset(longname, 'a', 65);
    longname[65] = '\0';
    assert_false(api_valid_name(longname));
    longname[64] = '\0';
    assert_true(api_valid_name(longname));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_bodies),
        cmocka_unit_test(test_invalid_bodies),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
