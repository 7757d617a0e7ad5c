/* vmseal-hostd — the KEKs this host holds: in locked memory only.
 *
 * Each KEK (32 bytes) lives in a vmseal_secret (guard pages, mlock,
 * MADV_DONTDUMP, wiped on free) under its KMS key id, with the name of the
 * key provider used in key safes. Nothing here ever touches the disk.
 * Thread-safe.
 */
#ifndef VMSEAL_HOSTD_KEYSTORE_H
#define VMSEAL_HOSTD_KEYSTORE_H

#include <stdint.h>

#include <vmseal/common.h>
#include <vmseal/keysafe.h>
#include <vmseal/secret.h>

typedef struct hostd_keystore hostd_keystore;

/* default_provider: provider name for KEKs stored without one. */
hostd_keystore *hostd_keystore_new(const char *default_provider);
void hostd_keystore_free(hostd_keystore *ks);

/* Store (or replace) a KEK; the secret is taken over in every case.
 * provider NULL: the default. -EINVAL for a bad id/provider/length. */
int hostd_keystore_put(hostd_keystore *ks, const char *kek_id, const char *provider,
                        vmseal_secret *kek);

/* A copy of the KEK (caller frees) and its provider. -ENOKEY when absent. */
int hostd_keystore_get(hostd_keystore *ks, const char *kek_id, vmseal_secret **kek,
                        char provider[VMSEAL_KEYSAFE_PROVIDER_MAX + 1]) VMSEAL_MUST_CHECK;

int hostd_keystore_has(hostd_keystore *ks, const char *kek_id);

/* 0, or -ENOKEY when absent. */
int hostd_keystore_delete(hostd_keystore *ks, const char *kek_id);

size_t hostd_keystore_count(hostd_keystore *ks);

/* A number that changes whenever a KEK is stored, replaced or deleted (for
 * caching what was derived from the keys held). */
uint64_t hostd_keystore_generation(hostd_keystore *ks);

const char *hostd_keystore_default_provider(const hostd_keystore *ks);

#endif
