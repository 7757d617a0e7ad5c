/* vmseal-managerd — strict validation of API request bodies.
 *
 * Every request body is decoded by jansson (duplicate keys rejected, no NUL
 * in strings) and then checked against a schema: it must be an object, may
 * hold only the listed fields, every required field must be present, and
 * each value must have the right type and lie within its bounds. Names
 * (users, VMs, hosts, providers) are 1..64 characters of [A-Za-z0-9._-],
 * not starting with '.' or '-'. Handlers therefore never see an unexpected
 * shape. The libFuzzer target fuzz/api_json.c feeds arbitrary bytes here.
 */
#ifndef VMSEAL_MANAGERD_API_SCHEMA_H
#define VMSEAL_MANAGERD_API_SCHEMA_H

#include <stddef.h>

#include <jansson.h>

enum api_ftype {
    F_STRING,     /* min..max bytes (max 0: 4096) */
    F_NAME,       /* an object name: 1..64 of [A-Za-z0-9._-] */
    F_INT,        /* integer in min..max */
    F_BOOL,
    F_ENUM,       /* string, one of enum_values */
    F_STR_ARRAY,  /* array of min..max strings, each 1..item_max bytes */
    F_OBJ_ARRAY,  /* array of min..max objects, each matching items */
    F_PEM,        /* string of at most 64 KiB beginning with "-----BEGIN " */
};

typedef struct api_schema api_schema;

typedef struct api_field {
    const char *name;
    enum api_ftype type;
    int required;
    long long min, max;
    const char *const *enum_values;   /* F_ENUM: NULL-terminated */
    const api_schema *items;          /* F_OBJ_ARRAY */
    size_t item_max;                  /* F_STR_ARRAY: bytes per item (0: 256) */
} api_field;

struct api_schema {
    const char *name;
    const api_field *fields;
    size_t n_fields;
};

/* Decode and check. On success *out is the object (caller decrefs). On
 * failure a negative errno and a message fit for the client in err. */
int api_parse(const char *body, size_t len, const api_schema *s, json_t **out, char *err,
              size_t errlen);

/* Check an already decoded value. */
int api_check(const json_t *v, const api_schema *s, char *err, size_t errlen);

/* Whether s is a valid object name. */
int api_valid_name(const char *s);

/* The request schemas of the manager API. */
extern const api_schema schema_session, schema_user_add, schema_user_patch, schema_password,
    schema_role_add, schema_kms_add, schema_kms_patch, schema_kms_trust, schema_kms_client_cert,
    schema_kms_csr, schema_host_register, schema_host_keys, schema_vm_create, schema_vm_patch,
    schema_vm_rekey, schema_role_patch, schema_group_add, schema_permission, schema_default_policy,
    schema_host_cert, schema_vm_register, schema_vm_resume, schema_vm_clone, schema_vm_cdrom,
    schema_vm_nic_add, schema_vm_export, schema_disk, schema_disk_add, schema_vm_migrate,
    schema_vm_snapshot;
extern const api_schema schema_host_encryption_mode;
/* All of them, for the fuzzer. */
extern const api_schema *const api_all_schemas[];
extern const size_t api_n_schemas;

#endif
