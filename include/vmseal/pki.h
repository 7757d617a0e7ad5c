/* vmseal — small X.509 issuing helpers (OpenSSL 3 API, no openssl CLI).
 *
 * Used by `vmseal-kmsd init/enroll` and by tests that need CAs, server and
 * client certificates (including deliberately bad ones: expired, wrong EKU).
 */
#ifndef VMSEAL_PKI_H
#define VMSEAL_PKI_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <vmseal/common.h>

enum vmseal_pki_keytype {
    VMSEAL_PKI_RSA2048 = 0,   /* broadest compatibility (PyKMIP, vCenter) */
    VMSEAL_PKI_EC_P256 = 1,
    VMSEAL_PKI_RSA3072 = 2,
};

enum vmseal_pki_eku {
    VMSEAL_PKI_EKU_NONE = 0,
    VMSEAL_PKI_EKU_SERVER = 1,  /* serverAuth */
    VMSEAL_PKI_EKU_CLIENT = 2,  /* clientAuth */
};

typedef struct vmseal_pki_req {
    const char *common_name;      /* required */
    const char *organization;     /* optional O= */
    int key_type;                 /* enum vmseal_pki_keytype */
    int is_ca;                    /* basicConstraints CA:TRUE, keyCertSign */
    int eku;                      /* bitmask of enum vmseal_pki_eku */
    const char *const *dns_names; /* subjectAltName DNS entries */
    size_t n_dns;
    const char *const *ip_addrs;  /* subjectAltName IP entries (text) */
    size_t n_ip;
    long not_before_s;            /* offset from now in seconds (e.g. -300) */
    long not_after_s;             /* offset from now in seconds (> not_before_s) */
} vmseal_pki_req;

/* Generate a key and a certificate. With issuer_cert/issuer_key NULL the
 * certificate is self-signed (a root CA when req->is_ca). */
int vmseal_pki_issue(const vmseal_pki_req *req, X509 *issuer_cert, EVP_PKEY *issuer_key,
                     EVP_PKEY **key_out, X509 **cert_out) VMSEAL_MUST_CHECK;

/* Write a private key as PEM (PKCS#8), created 0600; refuses to replace an
 * existing file unless overwrite is set. */
int vmseal_pki_write_key(const char *path, EVP_PKEY *key, int overwrite) VMSEAL_MUST_CHECK;

/* Write a certificate (PEM, 0644); append adds it to an existing bundle. */
int vmseal_pki_write_cert(const char *path, X509 *cert, int append) VMSEAL_MUST_CHECK;

/* Load a PEM certificate / private key. */
int vmseal_pki_read_cert(const char *path, X509 **out) VMSEAL_MUST_CHECK;
int vmseal_pki_read_key(const char *path, EVP_PKEY **out) VMSEAL_MUST_CHECK;

#endif
