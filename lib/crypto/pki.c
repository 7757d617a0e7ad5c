/* X.509 issuing helpers: keys, CA, server and client certificates. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <vmseal/pki.h>

static EVP_PKEY *gen_key(int type)
{
    switch (type) {
    case VMSEAL_PKI_EC_P256:
        return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    case VMSEAL_PKI_RSA3072:
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
    case VMSEAL_PKI_RSA2048:
    default:
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    }
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer ? issuer : cert, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (!ext)
        return -1;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* Reject characters that would let a name smuggle extra SAN entries. */
static int san_safe(const char *s)
{
    if (!*s || strlen(s) > 253)
        return 0;
    for (const char *p = s; *p; p++)
        if (*p == ',' || (unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
            return 0;
    return 1;
}

int vmseal_pki_issue(const vmseal_pki_req *req, X509 *issuer_cert, EVP_PKEY *issuer_key,
                     EVP_PKEY **key_out, X509 **cert_out)
{
    *key_out = NULL;
    *cert_out = NULL;
    if (!req->common_name || !*req->common_name)
        return vmseal_fail(EINVAL, "pki: a common name is required");
    if (req->not_after_s <= req->not_before_s)
        return vmseal_fail(EINVAL, "pki: validity ends before it starts");
    if ((issuer_cert == NULL) != (issuer_key == NULL))
        return vmseal_fail(EINVAL, "pki: issuer certificate and key go together");

    int rc = -EIO;
    char san[4096] = "";
    EVP_PKEY *key = gen_key(req->key_type);
    X509 *cert = X509_new();
    if (!key || !cert) {
        rc = vmseal_fail(ENOMEM, "pki: key generation failed");
        goto out;
    }
    unsigned char serial[16];
    if (RAND_bytes(serial, sizeof(serial)) != 1)
        goto fail;
    serial[0] &= 0x7f;
    serial[0] |= 0x40;
    BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
    if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert))) {
        BN_free(bn);
        goto fail;
    }
    BN_free(bn);
    if (!X509_set_version(cert, 2) ||
        !X509_gmtime_adj(X509_getm_notBefore(cert), req->not_before_s) ||
        !X509_gmtime_adj(X509_getm_notAfter(cert), req->not_after_s) ||
        !X509_set_pubkey(cert, key))
        goto fail;

    X509_NAME *name = X509_get_subject_name(cert);
    if (req->organization &&
        !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                    (const unsigned char *)req->organization, -1, -1, 0))
        goto fail;
    if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                    (const unsigned char *)req->common_name, -1, -1, 0))
        goto fail;
    if (!X509_set_issuer_name(cert, issuer_cert ? X509_get_subject_name(issuer_cert) : name))
        goto fail;

    if (add_ext(cert, issuer_cert, NID_basic_constraints,
                req->is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE") < 0 ||
        add_ext(cert, issuer_cert, NID_key_usage,
                req->is_ca ? "critical,keyCertSign,cRLSign,digitalSignature"
                           : (req->key_type == VMSEAL_PKI_EC_P256
                                  ? "critical,digitalSignature,keyAgreement"
                                  : "critical,digitalSignature,keyEncipherment")) < 0 ||
        add_ext(cert, issuer_cert, NID_subject_key_identifier, "hash") < 0)
        goto fail;
    if (issuer_cert && add_ext(cert, issuer_cert, NID_authority_key_identifier, "keyid:always") < 0)
        goto fail;
    if (req->eku) {
        char eku[64] = "";
        if (req->eku & VMSEAL_PKI_EKU_SERVER)
            strcat(eku, "serverAuth");
        if (req->eku & VMSEAL_PKI_EKU_CLIENT)
            strcat(eku, *eku ? ",clientAuth" : "clientAuth");
        if (add_ext(cert, issuer_cert, NID_ext_key_usage, eku) < 0)
            goto fail;
    }
    size_t used = 0;
    for (size_t i = 0; i < req->n_dns + req->n_ip; i++) {
        int is_ip = i >= req->n_dns;
        const char *v = is_ip ? req->ip_addrs[i - req->n_dns] : req->dns_names[i];
        if (!san_safe(v) || (!is_ip && strchr(v, ':'))) {
            rc = vmseal_fail(EINVAL, "pki: bad subjectAltName entry \"%s\"", v);
            goto out;
        }
        int n = snprintf(san + used, sizeof(san) - used, "%s%s:%s", used ? "," : "",
                         is_ip ? "IP" : "DNS", v);
        if (n < 0 || (size_t)n >= sizeof(san) - used) {
            rc = vmseal_fail(EINVAL, "pki: too many subjectAltName entries");
            goto out;
        }
        used += (size_t)n;
    }
    if (used && add_ext(cert, issuer_cert, NID_subject_alt_name, san) < 0) {
        rc = vmseal_fail(EINVAL, "pki: bad subjectAltName \"%s\"", san);
        goto out;
    }
    if (!X509_sign(cert, issuer_key ? issuer_key : key, EVP_sha256()))
        goto fail;
    *key_out = key;
    *cert_out = cert;
    return 0;
fail:
    rc = vmseal_fail(EIO, "pki: cannot build the certificate for %s: %s", req->common_name,
                     ERR_reason_error_string(ERR_peek_last_error())
                         ? ERR_reason_error_string(ERR_peek_last_error())
                         : "OpenSSL error");
out:
    ERR_clear_error();
    EVP_PKEY_free(key);
    X509_free(cert);
    return rc;
}

static FILE *open_out(const char *path, mode_t mode, int flags)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | flags, mode);
    if (fd < 0)
        return NULL;
    if (fchmod(fd, mode) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return NULL;
    }
    FILE *f = fdopen(fd, (flags & O_APPEND) ? "a" : "w");
    if (!f)
        close(fd);
    return f;
}

int vmseal_pki_write_key(const char *path, EVP_PKEY *key, int overwrite)
{
    FILE *f = open_out(path, 0600, overwrite ? O_TRUNC : O_EXCL);
    if (!f)
        return vmseal_fail(errno, "pki: cannot create %s: %s", path, strerror(errno));
    int ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    ok = (fflush(f) == 0 && fsync(fileno(f)) == 0) && ok;
    if (fclose(f) != 0)
        ok = 0;
    ERR_clear_error();
    return ok ? 0 : vmseal_fail(EIO, "pki: cannot write %s", path);
}

int vmseal_pki_write_cert(const char *path, X509 *cert, int append)
{
    FILE *f = open_out(path, 0644, append ? O_APPEND : O_TRUNC);
    if (!f)
        return vmseal_fail(errno, "pki: cannot create %s: %s", path, strerror(errno));
    int ok = PEM_write_X509(f, cert);
    ok = fflush(f) == 0 && ok;
    if (fclose(f) != 0)
        ok = 0;
    ERR_clear_error();
    return ok ? 0 : vmseal_fail(EIO, "pki: cannot write %s", path);
}

int vmseal_pki_read_cert(const char *path, X509 **out)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return vmseal_fail(errno, "pki: cannot open %s: %s", path, strerror(errno));
    *out = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    ERR_clear_error();
    return *out ? 0 : vmseal_fail(EPROTO, "pki: %s holds no PEM certificate", path);
}

int vmseal_pki_read_key(const char *path, EVP_PKEY **out)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return vmseal_fail(errno, "pki: cannot open %s: %s", path, strerror(errno));
    *out = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    ERR_clear_error();
    return *out ? 0 : vmseal_fail(EPROTO, "pki: %s holds no PEM private key", path);
}
