/* vmseal-managerd — request body schemas and the validator. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <vmseal/common.h>

#include "api_schema.h"

#define MAX_BODY_DEPTH 8

int api_valid_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64 || s[0] == '.' || s[0] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static int depth_ok(const json_t *v, int depth)
{
    if (depth > MAX_BODY_DEPTH)
        return 0;
    if (json_is_object(v)) {
        const char *k;
        const json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            if (!depth_ok(x, depth + 1))
                return 0;
        }
    } else if (json_is_array(v)) {
        size_t i;
        const json_t *x;
        json_array_foreach(v, i, x) {
            if (!depth_ok(x, depth + 1))
                return 0;
        }
    }
    return 1;
}

static const api_field *find_field(const api_schema *s, const char *name)
{
    for (size_t i = 0; i < s->n_fields; i++)
        if (strcmp(s->fields[i].name, name) == 0)
            return &s->fields[i];
    return NULL;
}

static int check_field(const api_field *f, const json_t *v, char *err, size_t errlen)
{
    switch (f->type) {
    case F_STRING:
    case F_PEM: {
        if (!json_is_string(v))
            goto type;
        size_t n = json_string_length(v);
        size_t max = f->type == F_PEM ? 65536 : (f->max ? (size_t)f->max : 4096);
        if (n < (size_t)f->min || n > max) {
            snprintf(err, errlen, "field '%s': length must be %lld..%zu", f->name, f->min, max);
            return -EINVAL;
        }
        if (f->type == F_PEM && strncmp(json_string_value(v), "-----BEGIN ", 11) != 0) {
            snprintf(err, errlen, "field '%s': expected a PEM block", f->name);
            return -EINVAL;
        }
        return 0;
    }
    case F_NAME:
        if (!json_is_string(v))
            goto type;
        if (!api_valid_name(json_string_value(v))) {
            snprintf(err, errlen,
                     "field '%s': a name is 1..64 characters of A-Z a-z 0-9 . _ - "
                     "(not starting with . or -)", f->name);
            return -EINVAL;
        }
        return 0;
    case F_INT: {
        if (!json_is_integer(v))
            goto type;
        long long x = json_integer_value(v);
        if (x < f->min || x > f->max) {
            snprintf(err, errlen, "field '%s': must be %lld..%lld", f->name, f->min, f->max);
            return -EINVAL;
        }
        return 0;
    }
    case F_BOOL:
        if (!json_is_boolean(v))
            goto type;
        return 0;
    case F_ENUM: {
        if (!json_is_string(v))
            goto type;
        for (const char *const *e = f->enum_values; *e; e++)
            if (strcmp(*e, json_string_value(v)) == 0)
                return 0;
        char list[256] = "";
        for (const char *const *e = f->enum_values; *e; e++) {
            if (list[0])
                strncat(list, ", ", sizeof(list) - strlen(list) - 1);
            strncat(list, *e, sizeof(list) - strlen(list) - 1);
        }
        snprintf(err, errlen, "field '%s': must be one of %s", f->name, list);
        return -EINVAL;
    }
    case F_STR_ARRAY:
    case F_OBJ_ARRAY: {
        if (!json_is_array(v))
            goto type;
        size_t n = json_array_size(v);
        if ((long long)n < f->min || (long long)n > f->max) {
            snprintf(err, errlen, "field '%s': %lld..%lld items", f->name, f->min, f->max);
            return -EINVAL;
        }
        size_t i;
        const json_t *x;
        json_array_foreach(v, i, x) {
            if (f->type == F_STR_ARRAY) {
                size_t max = f->item_max ? f->item_max : 256;
                if (!json_is_string(x) || json_string_length(x) == 0 || json_string_length(x) > max) {
                    snprintf(err, errlen, "field '%s': item %zu must be a string of 1..%zu bytes",
                             f->name, i, max);
                    return -EINVAL;
                }
            } else {
                char sub[200];
                int rc = api_check(x, f->items, sub, sizeof(sub));
                if (rc < 0) {
                    snprintf(err, errlen, "field '%s' item %zu: %s", f->name, i, sub);
                    return rc;
                }
            }
        }
        return 0;
    }
    }
type:
    snprintf(err, errlen, "field '%s': wrong type", f->name);
    return -EINVAL;
}

int api_check(const json_t *v, const api_schema *s, char *err, size_t errlen)
{
    if (!json_is_object(v)) {
        snprintf(err, errlen, "expected a JSON object");
        return -EINVAL;
    }
    const char *k;
    const json_t *x;
    json_object_foreach((json_t *)v, k, x) {
        const api_field *f = find_field(s, k);
        if (!f) {
            char shown[40];
            snprintf(shown, sizeof(shown), "%.32s", k);
            for (char *p = shown; *p; p++)
                if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
                    *p = '?';
            snprintf(err, errlen, "unknown field '%s'", shown);
            return -EINVAL;
        }
        int rc = check_field(f, x, err, errlen);
        if (rc < 0)
            return rc;
    }
    for (size_t i = 0; i < s->n_fields; i++) {
        if (s->fields[i].required && !json_object_get(v, s->fields[i].name)) {
            snprintf(err, errlen, "missing field '%s'", s->fields[i].name);
            return -EINVAL;
        }
    }
    return 0;
}

int api_parse(const char *body, size_t len, const api_schema *s, json_t **out, char *err,
              size_t errlen)
{
    *out = NULL;
    if (len == 0) {
        snprintf(err, errlen, "a JSON body is required");
        return -EINVAL;
    }
    json_error_t je;
    json_t *v = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!v) {
        snprintf(err, errlen, "invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
        return -EINVAL;
    }
    if (!depth_ok(v, 0)) {
        json_decref(v);
        snprintf(err, errlen, "JSON nested too deeply");
        return -EINVAL;
    }
    int rc = api_check(v, s, err, errlen);
    if (rc < 0) {
        json_decref(v);
        return rc;
    }
    *out = v;
    return 0;
}

/* ---- the schemas -------------------------------------------------------- */

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define SCHEMA(var, label, arr) const api_schema var = {label, arr, N(arr)}

static const api_field f_session[] = {
    {.name = "user", .type = F_NAME, .required = 1},
    {.name = "password", .type = F_STRING, .required = 1, .min = 1, .max = 1024},
    {.name = "cookie", .type = F_BOOL},   /* the web client: token in a cookie */
};
SCHEMA(schema_session, "session", f_session);

static const api_field f_user_add[] = {
    {.name = "name", .type = F_NAME, .required = 1},
    {.name = "password", .type = F_STRING, .required = 1, .min = 8, .max = 1024},
    {.name = "role", .type = F_NAME, .required = 1},
};
SCHEMA(schema_user_add, "user_add", f_user_add);

static const api_field f_user_patch[] = {
    {.name = "role", .type = F_NAME, .required = 1},
};
SCHEMA(schema_user_patch, "user_patch", f_user_patch);

static const api_field f_password[] = {
    {.name = "password", .type = F_STRING, .required = 1, .min = 8, .max = 1024},
    {.name = "old_password", .type = F_STRING, .min = 1, .max = 1024},
};
SCHEMA(schema_password, "password", f_password);

static const api_field f_role_add[] = {
    {.name = "name", .type = F_NAME, .required = 1},
    {.name = "privileges", .type = F_STR_ARRAY, .required = 1, .min = 0, .max = 128, .item_max = 64},
};
SCHEMA(schema_role_add, "role_add", f_role_add);

static const api_field f_kms_add[] = {
    {.name = "name", .type = F_NAME, .required = 1},
    {.name = "servers", .type = F_STR_ARRAY, .required = 1, .min = 1, .max = 16, .item_max = 262},
    {.name = "default", .type = F_BOOL},
    {.name = "username", .type = F_STRING, .min = 1, .max = 256},
};
SCHEMA(schema_kms_add, "kms_add", f_kms_add);

static const api_field f_kms_patch[] = {
    {.name = "servers", .type = F_STR_ARRAY, .min = 1, .max = 16, .item_max = 262},
    {.name = "default", .type = F_BOOL},
    {.name = "username", .type = F_STRING, .min = 0, .max = 256},
    {.name = "password", .type = F_STRING, .min = 1, .max = 256},   /* KMS_PASSWORD_MAX */
};
SCHEMA(schema_kms_patch, "kms_patch", f_kms_patch);

static const api_field f_kms_trust[] = {
    {.name = "ca_pem", .type = F_PEM, .required = 1},
};
SCHEMA(schema_kms_trust, "kms_trust", f_kms_trust);

static const api_field f_kms_client_cert[] = {
    {.name = "cert_pem", .type = F_PEM, .required = 1},
    {.name = "key_pem", .type = F_PEM},
};
SCHEMA(schema_kms_client_cert, "kms_client_cert", f_kms_client_cert);

static const api_field f_kms_csr[] = {
    {.name = "common_name", .type = F_NAME},
};
SCHEMA(schema_kms_csr, "kms_csr", f_kms_csr);

static const api_field f_host_register[] = {
    {.name = "name", .type = F_NAME, .required = 1},
    {.name = "url", .type = F_STRING, .required = 1, .min = 9, .max = 512},
    {.name = "datastore", .type = F_STRING, .required = 1, .min = 1, .max = 1024},
    {.name = "custody_key", .type = F_STRING, .required = 1, .min = 44, .max = 44},
};
SCHEMA(schema_host_register, "host_register", f_host_register);

static const api_field f_host_keys[] = {
    {.name = "kek_ids", .type = F_STR_ARRAY, .required = 1, .min = 0, .max = 4096, .item_max = 128},
};
SCHEMA(schema_host_keys, "host_keys", f_host_keys);

static const char *const policies[] = {"encrypted", "none", NULL};
static const char *const firmwares[] = {"bios", "uefi", "uefi-secure", NULL};

/* A disk: empty of size_mb, or imported from an image of the host's
 * images folder (the host says which one of the two is given, and checks
 * the name) */
static const api_field f_disk[] = {
    {.name = "size_mb", .type = F_INT, .min = 1, .max = 16 * 1024 * 1024},
    {.name = "from", .type = F_STRING, .min = 1, .max = 255},
};
SCHEMA(schema_disk, "disk", f_disk);

/* POST /vms/{vm}/disks: a disk as above, or a LUKS1 image of the images
 * folder adopted as it is, with the passphrase that opens it (passed on to
 * the host in the body only; never logged, never in an event) */
static const api_field f_disk_add[] = {
    {.name = "size_mb", .type = F_INT, .min = 1, .max = 16 * 1024 * 1024},
    {.name = "from", .type = F_STRING, .min = 1, .max = 255},
    {.name = "adopt", .type = F_STRING, .min = 1, .max = 255},
    {.name = "passphrase", .type = F_STRING, .min = 1, .max = 1024},   /* HOSTD_ADOPT_PASSPHRASE_MAX */
    {.name = "remove_passphrase", .type = F_BOOL},
};
SCHEMA(schema_disk_add, "disk_add", f_disk_add);

static const api_field f_vm_create[] = {
    {.name = "name", .type = F_NAME, .required = 1},
    {.name = "host", .type = F_NAME, .required = 1},
    {.name = "cpus", .type = F_INT, .min = 1, .max = 64},
    {.name = "memory_mb", .type = F_INT, .min = 16, .max = 1024 * 1024},
    {.name = "disks", .type = F_OBJ_ARRAY, .min = 0, .max = 16, .items = &schema_disk},
    {.name = "firmware", .type = F_ENUM, .enum_values = firmwares},
    {.name = "kernel", .type = F_STRING, .min = 1, .max = 1024},
    {.name = "initrd", .type = F_STRING, .min = 1, .max = 1024},
    {.name = "append", .type = F_STRING, .min = 0, .max = 2048},
    {.name = "policy", .type = F_ENUM, .enum_values = policies},
    {.name = "kms", .type = F_NAME},
    {.name = "folder", .type = F_NAME},
    {.name = "tpm", .type = F_BOOL},
};
SCHEMA(schema_vm_create, "vm_create", f_vm_create);

/* Either the policy (with kms?) or settings (vms_reconfigure; "" removes
 * kernel, initrd or append); api_vms() rejects a mix. */
static const api_field f_vm_patch[] = {
    {.name = "policy", .type = F_ENUM, .enum_values = policies},
    {.name = "kms", .type = F_NAME},
    {.name = "cpus", .type = F_INT, .min = 1, .max = 64},
    {.name = "memory_mb", .type = F_INT, .min = 16, .max = 65536},
    {.name = "kernel", .type = F_STRING, .min = 0, .max = 1024},
    {.name = "initrd", .type = F_STRING, .min = 0, .max = 1024},
    {.name = "append", .type = F_STRING, .min = 0, .max = 2048},
    {.name = "folder", .type = F_STRING, .min = 0, .max = 64},
    {.name = "tpm", .type = F_BOOL},
    {.name = "boot", .type = F_STRING, .min = 0, .max = 23},
};
SCHEMA(schema_vm_patch, "vm_patch", f_vm_patch);

/* POST /vms/{vm}/nics: the host checks the values (hostd/nic.c). */
static const char *const nic_modes[] = {"user", "bridge", NULL};
static const api_field f_vm_nic_add[] = {
    {.name = "mode", .type = F_ENUM, .enum_values = nic_modes},
    {.name = "network", .type = F_STRING, .min = 1, .max = 15},
    {.name = "mac", .type = F_STRING, .min = 17, .max = 17},
    {.name = "forwards", .type = F_STR_ARRAY, .min = 0, .max = 8, .item_max = 63},
};
SCHEMA(schema_vm_nic_add, "vm_nic_add", f_vm_nic_add);

static const api_field f_role_patch[] = {
    {.name = "privileges", .type = F_STR_ARRAY, .required = 1, .min = 0, .max = 128, .item_max = 64},
};
SCHEMA(schema_role_patch, "role_patch", f_role_patch);

static const api_field f_group_add[] = {
    {.name = "name", .type = F_NAME, .required = 1},
};
SCHEMA(schema_group_add, "group_add", f_group_add);

static const api_field f_permission[] = {
    {.name = "object", .type = F_STRING, .required = 1, .min = 4, .max = 80},
    {.name = "user", .type = F_NAME},
    {.name = "group", .type = F_NAME},
    {.name = "role", .type = F_NAME},
    {.name = "propagate", .type = F_BOOL},
};
SCHEMA(schema_permission, "permission", f_permission);

static const api_field f_default_policy[] = {
    {.name = "policy", .type = F_ENUM, .required = 1, .enum_values = policies},
};
SCHEMA(schema_default_policy, "default_policy", f_default_policy);

static const api_field f_host_encryption_mode[] = {
    {.name = "enabled", .type = F_BOOL, .required = 1},
};
SCHEMA(schema_host_encryption_mode, "host_encryption_mode", f_host_encryption_mode);

static const api_field f_host_cert[] = {
    {.name = "fingerprint", .type = F_STRING, .required = 1, .min = 64, .max = 64},
};
SCHEMA(schema_host_cert, "host_cert", f_host_cert);

static const api_field f_vm_register[] = {
    {.name = "host", .type = F_NAME, .required = 1},
    {.name = "uuid", .type = F_STRING, .required = 1, .min = 36, .max = 36},
    {.name = "name", .type = F_NAME},
    {.name = "kms", .type = F_NAME},
};
SCHEMA(schema_vm_register, "vm_register", f_vm_register);

static const api_field f_vm_rekey[] = {
    {.name = "deep", .type = F_BOOL},
    {.name = "kms", .type = F_NAME},
};
SCHEMA(schema_vm_rekey, "vm_rekey", f_vm_rekey);

static const api_field f_vm_clone[] = {
    {.name = "name", .type = F_NAME, .required = 1},
    {.name = "host", .type = F_NAME},
    {.name = "deep", .type = F_BOOL},
    {.name = "kms", .type = F_NAME},
};
SCHEMA(schema_vm_clone, "vm_clone", f_vm_clone);

static const api_field f_vm_cdrom[] = {
    {.name = "iso", .type = F_STRING, .min = 1, .max = 255},
    {.name = "eject", .type = F_BOOL},
};
SCHEMA(schema_vm_cdrom, "vm_cdrom", f_vm_cdrom);

static const api_field f_vm_resume[] = {
    {.name = "host", .type = F_NAME},
};
SCHEMA(schema_vm_resume, "vm_resume", f_vm_resume);
static const api_field f_vm_snapshot[] = {
    {.name = "name", .type = F_NAME, .required = 1},
    {.name = "memory", .type = F_BOOL},
};
SCHEMA(schema_vm_snapshot, "vm_snapshot", f_vm_snapshot);
static const api_field f_vm_export[] = {
    {.name = "disk", .type = F_INT, .required = 1, .min = 0, .max = 7},
    {.name = "ttl_seconds", .type = F_INT, .min = 1, .max = 86400},
    {.name = "ciphertext", .type = F_BOOL},   /* the LUKS image and its key bundle */
};
SCHEMA(schema_vm_export, "vm_export", f_vm_export);

static const api_field f_vm_migrate[] = {
    {.name = "host", .type = F_NAME, .required = 1},
};
SCHEMA(schema_vm_migrate, "vm_migrate", f_vm_migrate);

const api_schema *const api_all_schemas[] = {
    &schema_session, &schema_user_add, &schema_user_patch, &schema_password, &schema_role_add,
    &schema_kms_add, &schema_kms_patch, &schema_kms_trust, &schema_kms_client_cert, &schema_kms_csr,
    &schema_host_register, &schema_host_keys, &schema_vm_create, &schema_vm_patch, &schema_vm_rekey,
    &schema_role_patch, &schema_group_add, &schema_permission, &schema_default_policy, &schema_host_cert,
    &schema_vm_register, &schema_vm_resume, &schema_vm_clone, &schema_vm_cdrom, &schema_vm_nic_add,
    &schema_vm_export, &schema_disk, &schema_host_encryption_mode, &schema_disk_add,
    &schema_vm_migrate,
    &schema_vm_snapshot,
};
const size_t api_n_schemas = N(api_all_schemas);
