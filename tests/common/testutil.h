/* Helpers shared by the C tests (linked as the test_common library). */
#ifndef VMSEAL_TESTUTIL_H
#define VMSEAL_TESTUTIL_H

#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <vmseal/common.h>

/* Run a shell command built from fmt: its exit status, -1 if it did not exit. */
int testutil_run(const char *fmt, ...) VMSEAL_PRINTF(1, 2);

/* rm -rf dir: 0 when it worked. */
int testutil_rmtree(const char *dir);

/* Occurrences of needle in a file (streamed, matches across chunk
 * boundaries counted once); -1 when the file cannot be read. */
long testutil_count_in_file(const char *path, const char *needle);

/* Build (or reuse) the test guest through tests/guest/build-guest.sh and
 * give the paths of its kernel and initrd: 0, or -1 with a message on
 * stderr (also when not run through meson test). */
int testutil_guest(char *kernel, size_t kernel_len, char *initrd, size_t initrd_len);

/* Issue an EC P-256 certificate (CA when is_ca; self-signed when ca is
 * NULL) valid from now+not_before_s to now+not_after_s, for DNS localhost and
 * IP 127.0.0.1 when eku has VMSEAL_PKI_EKU_SERVER, and write it to
 * dir/name.crt and dir/name.key. Fails the current cmocka test on error.
 * cert_out / key_out may be NULL. */
void testutil_issue(const char *dir, const char *name, const char *cn, int is_ca, int eku,
                    long not_before_s, long not_after_s, X509 *ca, EVP_PKEY *cakey,
                    X509 **cert_out, EVP_PKEY **key_out);

#endif
