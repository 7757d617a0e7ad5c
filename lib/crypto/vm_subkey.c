/* libvmseal — keys derived from the per-VM secret (include/vmseal/vmkeys.h). */
#include <errno.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include <vmseal/vmkeys.h>

#define SUBKEY_INFO "vmseal vm subkey v1"

static int uuid_ok(const char *u)
{
    if (!u || strlen(u) != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        char c = u[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

static int purpose_ok(const char *p)
{
    size_t n = p ? strlen(p) : 0;
    if (n < 1 || n > VMSEAL_VMKEY_PURPOSE_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') || p[i] == '-'))
            return 0;
    return 1;
}

int vmseal_vm_subkey(const vmseal_secret *vm_secret, const char *vm_uuid, const char *purpose,
                     vmseal_secret **out)
{
    *out = NULL;
    if (!vm_secret || vmseal_secret_len(vm_secret) < 16)
        return vmseal_fail(EINVAL, "VM subkey: the VM secret is too short");
    if (!uuid_ok(vm_uuid))
        return vmseal_fail(EINVAL, "VM subkey: not a lower-case VM uuid");
    if (!purpose_ok(purpose))
        return vmseal_fail(EINVAL, "VM subkey: invalid purpose");
    char info[sizeof(SUBKEY_INFO) + 3 + 36 + 1 + VMSEAL_VMKEY_PURPOSE_MAX];
    size_t il = 0;
    memcpy(info, SUBKEY_INFO, sizeof(SUBKEY_INFO));   /* with its NUL */
    il += sizeof(SUBKEY_INFO);
    memcpy(info + il, "vm:", 3);
    il += 3;
    memcpy(info + il, vm_uuid, 36);
    il += 36;
    info[il++] = '\0';
    memcpy(info + il, purpose, strlen(purpose));
    il += strlen(purpose);

    vmseal_secret *k = vmseal_secret_new(32);
    if (!k)
        return vmseal_fail(ENOMEM, "VM subkey: %s", vmseal_last_error());
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    int ok = kctx != NULL;
    if (ok) {
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
                                              (void *)vmseal_secret_cdata(vm_secret),
                                              vmseal_secret_len(vm_secret)),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, il),
            OSSL_PARAM_construct_end(),
        };
        ok = EVP_KDF_derive(kctx, vmseal_secret_data(k), 32, params) == 1;
    }
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    if (!ok) {
        vmseal_secret_free(k);
        return vmseal_fail(EIO, "VM subkey: key derivation failed");
    }
    *out = k;
    return 0;
}
