/* KEKs in locked memory, by key id. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "keystore.h"

typedef struct kek_entry {
    char *id;
    char provider[VMSEAL_KEYSAFE_PROVIDER_MAX + 1];
    vmseal_secret *kek;
} kek_entry;

struct hostd_keystore {
    pthread_mutex_t lock;
    kek_entry *e;
    size_t n, cap;
    uint64_t generation;            /* changes with every put and delete */
    char default_provider[VMSEAL_KEYSAFE_PROVIDER_MAX + 1];
};

hostd_keystore *hostd_keystore_new(const char *default_provider)
{
    if (!default_provider || !vmseal_keysafe_provider_valid(default_provider)) {
        errno = EINVAL;
        return NULL;
    }
    hostd_keystore *ks = calloc(1, sizeof(*ks));
    if (!ks)
        return NULL;
    pthread_mutex_init(&ks->lock, NULL);
    strcpy(ks->default_provider, default_provider);
    return ks;
}

void hostd_keystore_free(hostd_keystore *ks)
{
    if (!ks)
        return;
    for (size_t i = 0; i < ks->n; i++) {
        vmseal_secret_free(ks->e[i].kek);
        free(ks->e[i].id);
    }
    free(ks->e);
    pthread_mutex_destroy(&ks->lock);
    free(ks);
}

const char *hostd_keystore_default_provider(const hostd_keystore *ks)
{
    return ks->default_provider;
}

static kek_entry *find(hostd_keystore *ks, const char *id)
{
    for (size_t i = 0; i < ks->n; i++)
        if (strcmp(ks->e[i].id, id) == 0)
            return &ks->e[i];
    return NULL;
}

int hostd_keystore_put(hostd_keystore *ks, const char *kek_id, const char *provider,
                        vmseal_secret *kek)
{
    if (!kek)
        return vmseal_fail(EINVAL, "no key");
    if (!kek_id || !vmseal_keysafe_kek_id_valid(kek_id)) {
        vmseal_secret_free(kek);
        return vmseal_fail(EINVAL, "invalid KEK id");
    }
    if (!provider)
        provider = ks->default_provider;
    if (!vmseal_keysafe_provider_valid(provider)) {
        vmseal_secret_free(kek);
        return vmseal_fail(EINVAL, "invalid key provider name");
    }
    if (vmseal_secret_len(kek) != VMSEAL_KEYSAFE_KEK_LEN) {
        vmseal_secret_free(kek);
        return vmseal_fail(EINVAL, "a KEK is %d bytes", VMSEAL_KEYSAFE_KEK_LEN);
    }
    pthread_mutex_lock(&ks->lock);
    kek_entry *e = find(ks, kek_id);
    if (e) {
        vmseal_secret_free(e->kek);
        e->kek = kek;
        strcpy(e->provider, provider);
        ks->generation++;
        pthread_mutex_unlock(&ks->lock);
        return 0;
    }
    if (ks->n == ks->cap) {
        size_t ncap = ks->cap ? ks->cap * 2 : 16;
        kek_entry *ne = realloc(ks->e, ncap * sizeof(*ne));
        if (!ne) {
            pthread_mutex_unlock(&ks->lock);
            vmseal_secret_free(kek);
            return vmseal_fail(ENOMEM, "out of memory");
        }
        ks->e = ne;
        ks->cap = ncap;
    }
    char *id = strdup(kek_id);
    if (!id) {
        pthread_mutex_unlock(&ks->lock);
        vmseal_secret_free(kek);
        return vmseal_fail(ENOMEM, "out of memory");
    }
    ks->e[ks->n].id = id;
    ks->e[ks->n].kek = kek;
    strcpy(ks->e[ks->n].provider, provider);
    ks->n++;
    ks->generation++;
    pthread_mutex_unlock(&ks->lock);
    return 0;
}

int hostd_keystore_get(hostd_keystore *ks, const char *kek_id, vmseal_secret **kek,
                        char provider[VMSEAL_KEYSAFE_PROVIDER_MAX + 1])
{
    *kek = NULL;
    pthread_mutex_lock(&ks->lock);
    kek_entry *e = kek_id ? find(ks, kek_id) : NULL;
    if (!e) {
        pthread_mutex_unlock(&ks->lock);
        return vmseal_fail(ENOKEY, "KEK %s is not available on this host", kek_id ? kek_id : "");
    }
    int r = vmseal_secret_dup(e->kek, kek);
    if (r == 0 && provider)
        strcpy(provider, e->provider);
    pthread_mutex_unlock(&ks->lock);
    return r;
}

int hostd_keystore_has(hostd_keystore *ks, const char *kek_id)
{
    pthread_mutex_lock(&ks->lock);
    int has = kek_id && find(ks, kek_id) != NULL;
    pthread_mutex_unlock(&ks->lock);
    return has;
}

int hostd_keystore_delete(hostd_keystore *ks, const char *kek_id)
{
    pthread_mutex_lock(&ks->lock);
    kek_entry *e = kek_id ? find(ks, kek_id) : NULL;
    if (!e) {
        pthread_mutex_unlock(&ks->lock);
        return vmseal_fail(ENOKEY, "KEK %s is not on this host", kek_id ? kek_id : "");
    }
    size_t i = (size_t)(e - ks->e);
    vmseal_secret_free(e->kek);
    free(e->id);
    memmove(&ks->e[i], &ks->e[i + 1], (ks->n - i - 1) * sizeof(*e));
    ks->n--;
    ks->generation++;
    pthread_mutex_unlock(&ks->lock);
    return 0;
}

size_t hostd_keystore_count(hostd_keystore *ks)
{
    pthread_mutex_lock(&ks->lock);
    size_t n = ks->n;
    pthread_mutex_unlock(&ks->lock);
    return n;
}

uint64_t hostd_keystore_generation(hostd_keystore *ks)
{
    pthread_mutex_lock(&ks->lock);
    uint64_t g = ks->generation;
    pthread_mutex_unlock(&ks->lock);
    return g;
}
