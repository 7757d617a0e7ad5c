/* Master key backend: a non-extractable AES-256 key object on a PKCS#11
 * token (e.g. SoftHSM2, a real HSM). The module is dlopen'ed from the path in
 * the configuration; AES-256-GCM runs ON the token (C_Encrypt/C_Decrypt with
 * CKM_AES_GCM), so the master key never enters this process. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <p11-kit/pkcs11.h>

#include "masterkey.h"

#define MAX_SESSIONS 8

typedef struct p11_mk {
    kmsd_masterkey base;
    void *dl;
    CK_FUNCTION_LIST_PTR f;
    CK_SLOT_ID slot;
    CK_OBJECT_HANDLE key;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    CK_SESSION_HANDLE idle[MAX_SESSIONS];
    int n_idle;
    int n_open;
    int initialized;
} p11_mk;

static const char *ckr_str(CK_RV rv)
{
    switch (rv) {
    case CKR_PIN_INCORRECT: return "PIN incorrect";
    case CKR_PIN_LOCKED: return "PIN locked";
    case CKR_TOKEN_NOT_PRESENT: return "token not present";
    case CKR_ENCRYPTED_DATA_INVALID: return "encrypted data invalid";
    case CKR_MECHANISM_INVALID: return "mechanism not supported by the token";
    case CKR_KEY_HANDLE_INVALID: return "key handle invalid";
    case CKR_SESSION_HANDLE_INVALID: return "session handle invalid";
    case CKR_USER_NOT_LOGGED_IN: return "user not logged in";
    case CKR_DEVICE_ERROR: return "device error";
    default: return "PKCS#11 error";
    }
}

static int p11_fail(int err, const char *what, CK_RV rv)
{
    return vmseal_fail(err, "PKCS#11: %s failed: %s (0x%lx)", what, ckr_str(rv), (unsigned long)rv);
}

static int session_get(p11_mk *m, CK_SESSION_HANDLE *out)
{
    pthread_mutex_lock(&m->lock);
    for (;;) {
        if (m->n_idle > 0) {
            *out = m->idle[--m->n_idle];
            pthread_mutex_unlock(&m->lock);
            return 0;
        }
        if (m->n_open < MAX_SESSIONS) {
            m->n_open++;
            pthread_mutex_unlock(&m->lock);
            CK_RV rv = m->f->C_OpenSession(m->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL,
                                           NULL, out);
            if (rv != CKR_OK) {
                pthread_mutex_lock(&m->lock);
                m->n_open--;
                pthread_cond_signal(&m->cond);
                pthread_mutex_unlock(&m->lock);
                return p11_fail(EIO, "C_OpenSession", rv);
            }
            return 0;
        }
        pthread_cond_wait(&m->cond, &m->lock);
    }
}

static void session_put(p11_mk *m, CK_SESSION_HANDLE s)
{
    pthread_mutex_lock(&m->lock);
    m->idle[m->n_idle++] = s;
    pthread_cond_signal(&m->cond);
    pthread_mutex_unlock(&m->lock);
}

static int p11_crypt(p11_mk *m, int enc, const uint8_t *iv, const uint8_t *aad, size_t aadlen,
                     const uint8_t *in, size_t len, uint8_t *out, uint8_t *tag)
{
    CK_SESSION_HANDLE s;
    int r = session_get(m, &s);
    if (r < 0)
        return r;
    uint8_t ivcopy[KMSD_MK_IV_LEN];
    memcpy(ivcopy, iv, sizeof(ivcopy));
    CK_GCM_PARAMS gp = {.pIv = ivcopy, .ulIvLen = KMSD_MK_IV_LEN, .ulIvBits = KMSD_MK_IV_LEN * 8,
                        .pAAD = (CK_BYTE_PTR)aad, .ulAADLen = aadlen,
                        .ulTagBits = KMSD_MK_TAG_LEN * 8};
    CK_MECHANISM mech = {CKM_AES_GCM, &gp, sizeof(gp)};
    size_t buflen = len + KMSD_MK_TAG_LEN;
    vmseal_secret *buf = vmseal_secret_new(buflen);
    if (!buf) {
        session_put(m, s);
        return -ENOMEM;
    }
    CK_ULONG outlen = buflen;
    CK_RV rv;
    if (enc) {
        rv = m->f->C_EncryptInit(s, &mech, m->key);
        if (rv == CKR_OK)
            rv = m->f->C_Encrypt(s, (CK_BYTE_PTR)in, len, vmseal_secret_data(buf), &outlen);
        if (rv == CKR_OK && outlen != buflen)
            rv = CKR_GENERAL_ERROR;
        if (rv == CKR_OK) {
            memcpy(out, vmseal_secret_cdata(buf), len);
            memcpy(tag, vmseal_secret_cdata(buf) + len, KMSD_MK_TAG_LEN);
        }
    } else {
        uint8_t *ct = malloc(buflen);
        if (!ct) {
            vmseal_secret_free(buf);
            session_put(m, s);
            return -ENOMEM;
        }
        memcpy(ct, in, len);
        memcpy(ct + len, tag, KMSD_MK_TAG_LEN);
        rv = m->f->C_DecryptInit(s, &mech, m->key);
        if (rv == CKR_OK)
            rv = m->f->C_Decrypt(s, ct, buflen, vmseal_secret_data(buf), &outlen);
        free(ct);
        if (rv == CKR_OK && outlen != len)
            rv = CKR_GENERAL_ERROR;
        if (rv == CKR_OK)
            memcpy(out, vmseal_secret_cdata(buf), len);
    }
    vmseal_secret_free(buf);
    session_put(m, s);
    if (rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_ENCRYPTED_DATA_LEN_RANGE)
        return vmseal_fail(EBADMSG, "master key: wrapped key does not authenticate "
                                    "(wrong master key or tampered store)");
    if (rv != CKR_OK)
        return p11_fail(EIO, enc ? "C_Encrypt (AES-GCM)" : "C_Decrypt (AES-GCM)", rv);
    return 0;
}

static int p11_seal(kmsd_masterkey *mk, const uint8_t iv[KMSD_MK_IV_LEN], const uint8_t *aad,
                    size_t aadlen, const uint8_t *in, size_t len, uint8_t *out,
                    uint8_t tag[KMSD_MK_TAG_LEN])
{
    return p11_crypt((p11_mk *)mk, 1, iv, aad, aadlen, in, len, out, tag);
}

static int p11_open(kmsd_masterkey *mk, const uint8_t iv[KMSD_MK_IV_LEN], const uint8_t *aad,
                    size_t aadlen, const uint8_t *in, size_t len, uint8_t *out,
                    const uint8_t tag[KMSD_MK_TAG_LEN])
{
    return p11_crypt((p11_mk *)mk, 0, iv, aad, aadlen, in, len, out, (uint8_t *)tag);
}

static void p11_free(kmsd_masterkey *mk)
{
    p11_mk *m = (p11_mk *)mk;
    if (m->f) {
        for (int i = 0; i < m->n_idle; i++)
            m->f->C_CloseSession(m->idle[i]);
        if (m->initialized)
            m->f->C_Finalize(NULL);
    }
    if (m->dl)
        dlclose(m->dl);
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->cond);
    free(m);
}

/* The PIN file must be private; trailing newline stripped. */
static int read_pin(const char *path, vmseal_secret **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return vmseal_fail(errno, "cannot open PIN file %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077)) {
        close(fd);
        return vmseal_fail(EPERM, "PIN file %s must be a regular file with mode 0600", path);
    }
    vmseal_secret *s;
    int r = vmseal_secret_read_fd(fd, 256, &s);
    close(fd);
    if (r < 0)
        return vmseal_fail(-r, "cannot read PIN file %s", path);
    size_t n = vmseal_secret_len(s);
    while (n && (vmseal_secret_cdata(s)[n - 1] == '\n' || vmseal_secret_cdata(s)[n - 1] == '\r'))
        n--;
    if (n == 0) {
        vmseal_secret_free(s);
        return vmseal_fail(EINVAL, "PIN file %s is empty", path);
    }
    vmseal_secret_truncate(s, n);
    *out = s;
    return 0;
}

static int find_slot(p11_mk *m, const char *label)
{
    CK_ULONG n = 0;
    CK_RV rv = m->f->C_GetSlotList(CK_TRUE, NULL, &n);
    if (rv != CKR_OK)
        return p11_fail(EIO, "C_GetSlotList", rv);
    if (n == 0)
        return vmseal_fail(ENODEV, "PKCS#11: no token present");
    CK_SLOT_ID *slots = calloc(n, sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    rv = m->f->C_GetSlotList(CK_TRUE, slots, &n);
    int found = 0;
    for (CK_ULONG i = 0; rv == CKR_OK && i < n && !found; i++) {
        CK_TOKEN_INFO ti;
        if (m->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
            continue;
        char tl[33];
        memcpy(tl, ti.label, 32);
        tl[32] = '\0';
        for (int j = 31; j >= 0 && tl[j] == ' '; j--)
            tl[j] = '\0';
        if (!strcmp(tl, label)) {
            m->slot = slots[i];
            found = 1;
        }
    }
    free(slots);
    if (rv != CKR_OK)
        return p11_fail(EIO, "C_GetSlotList", rv);
    return found ? 0 : vmseal_fail(ENODEV, "PKCS#11: no token labelled \"%s\"", label);
}

static int find_key(p11_mk *m, CK_SESSION_HANDLE s, const char *label, CK_OBJECT_HANDLE *out,
                    CK_ULONG *count)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_LABEL, (void *)label, strlen(label)},
    };
    CK_RV rv = m->f->C_FindObjectsInit(s, t, 3);
    if (rv != CKR_OK)
        return p11_fail(EIO, "C_FindObjectsInit", rv);
    CK_OBJECT_HANDLE h[2];
    *count = 0;
    rv = m->f->C_FindObjects(s, h, 2, count);
    m->f->C_FindObjectsFinal(s);
    if (rv != CKR_OK)
        return p11_fail(EIO, "C_FindObjects", rv);
    if (*count >= 1)
        *out = h[0];
    return 0;
}

static int generate_key(p11_mk *m, CK_SESSION_HANDLE s, const char *label)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ULONG len = 32;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_VALUE_LEN, &len, sizeof(len)},
        {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)},
        {CKA_EXTRACTABLE, &no, sizeof(no)},
        {CKA_ENCRYPT, &yes, sizeof(yes)},
        {CKA_DECRYPT, &yes, sizeof(yes)},
        {CKA_WRAP, &no, sizeof(no)},
        {CKA_UNWRAP, &no, sizeof(no)},
    };
    CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
    CK_RV rv = m->f->C_GenerateKey(s, &mech, t, sizeof(t) / sizeof(t[0]), &m->key);
    return rv == CKR_OK ? 0 : p11_fail(EIO, "C_GenerateKey (AES-256)", rv);
}

int kmsd_mk_open_pkcs11(const kmsd_pkcs11_params *p, int create, kmsd_masterkey **out)
{
    *out = NULL;
    p11_mk *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    m->base.seal = p11_seal;
    m->base.open = p11_open;
    m->base.free = p11_free;
    snprintf(m->base.desc, sizeof(m->base.desc), "PKCS#11 token \"%s\" key \"%s\" (%s)",
             p->token_label, p->key_label, p->module);
    int r;
    vmseal_secret *pin = NULL;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;

    m->dl = dlopen(p->module, RTLD_NOW | RTLD_LOCAL);
    if (!m->dl) {
        r = vmseal_fail(ENOENT, "PKCS#11: cannot load module %s: %s", p->module, dlerror());
        goto fail;
    }
    CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(m->dl, "C_GetFunctionList");
    if (!gfl || gfl(&m->f) != CKR_OK || !m->f) {
        m->f = NULL;
        r = vmseal_fail(ENOENT, "PKCS#11: %s is not a PKCS#11 module", p->module);
        goto fail;
    }
    CK_C_INITIALIZE_ARGS ia = {.flags = CKF_OS_LOCKING_OK};
    CK_RV rv = m->f->C_Initialize(&ia);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        r = p11_fail(EIO, "C_Initialize", rv);
        goto fail;
    }
    m->initialized = rv == CKR_OK;
    if ((r = find_slot(m, p->token_label)) < 0)
        goto fail;
    if ((r = read_pin(p->pin_file, &pin)) < 0)
        goto fail;
    rv = m->f->C_OpenSession(m->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
    if (rv != CKR_OK) {
        r = p11_fail(EIO, "C_OpenSession", rv);
        goto fail;
    }
    rv = m->f->C_Login(s, CKU_USER, vmseal_secret_data(pin), vmseal_secret_len(pin));
    vmseal_secret_free(pin);
    pin = NULL;
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
        r = p11_fail(EACCES, "C_Login", rv);
        goto fail;
    }
    CK_ULONG count = 0;
    if ((r = find_key(m, s, p->key_label, &m->key, &count)) < 0)
        goto fail;
    if (create) {
        if (count) {
            r = vmseal_fail(EEXIST, "PKCS#11: token \"%s\" already holds a key labelled \"%s\"",
                            p->token_label, p->key_label);
            goto fail;
        }
        if ((r = generate_key(m, s, p->key_label)) < 0)
            goto fail;
    } else if (count != 1) {
        r = vmseal_fail(count ? EEXIST : ENOENT,
                        count ? "PKCS#11: several keys labelled \"%s\" on token \"%s\""
                              : "PKCS#11: no AES key labelled \"%s\" on token \"%s\"",
                        p->key_label, p->token_label);
        goto fail;
    }
    /* The session stays open: it keeps the login alive, and serves as the
     * first pooled session. */
    m->idle[m->n_idle++] = s;
    m->n_open = 1;
    *out = &m->base;
    return 0;
fail:
    vmseal_secret_free(pin);
    if (s != CK_INVALID_HANDLE)
        m->f->C_CloseSession(s);
    p11_free(&m->base);
    return r;
}
