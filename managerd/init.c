/* vmseal-managerd — `init DIR`: a working setup in a new folder, and
 * `issue-host NAME`: certificates for host agents.
 *
 * init makes (or reuses) the manager CA, issues the manager's certificate
 * (serverAuth for the API, clientAuth for calls to hosts), writes
 * managerd.conf, creates the database with the built-in roles and an
 * initial Administrator user whose random password goes to
 * DIR/admin-password (0600) — never to the terminal or a log. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <vmseal/pki.h>

#include "managerd.h"

#define DAY 86400L

static int is_ip(const char *s)
{
    unsigned char b[16];
    return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

static void path_in(char *out, size_t len, const char *dir, const char *file)
{
    snprintf(out, len, "%s/%s", dir, file);
}

/* Issue a certificate for names[] (DNS names and IPs) signed by the CA. */
static int issue_leaf(const char *cn, const char *const *names, size_t n_names, X509 *ca, EVP_PKEY *cakey,
                      const char *cert_path, const char *key_path)
{
    const char *dns[34], *ips[34];
    size_t nd = 0, ni = 0;
    for (size_t i = 0; i < n_names && nd < 32 && ni < 32; i++) {
        if (is_ip(names[i]))
            ips[ni++] = names[i];
        else
            dns[nd++] = names[i];
    }
    vmseal_pki_req req = {
        .common_name = cn, .organization = "vmseal", .key_type = VMSEAL_PKI_EC_P256,
        .eku = VMSEAL_PKI_EKU_SERVER | VMSEAL_PKI_EKU_CLIENT,
        .dns_names = dns, .n_dns = nd, .ip_addrs = ips, .n_ip = ni,
        .not_before_s = -300, .not_after_s = 825 * DAY,
    };
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    int rc = vmseal_pki_issue(&req, ca, cakey, &key, &cert);
    if (rc >= 0)
        rc = vmseal_pki_write_key(key_path, key, 0);
    if (rc >= 0)
        rc = vmseal_pki_write_cert(cert_path, cert, 0);
    if (rc >= 0)
        rc = vmseal_pki_write_cert(cert_path, ca, 1);   /* send the chain */
    EVP_PKEY_free(key);
    X509_free(cert);
    return rc;
}

int mgr_init(const char *dir, const mgr_init_opts *o)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return vmseal_fail(errno, "cannot create %s: %s", dir, strerror(errno));
    char p_conf[4096], p_ca[4096], p_cakey[4096], p_crt[4096], p_key[4096], p_pw[4096], p_db[4096];
    path_in(p_conf, sizeof(p_conf), dir, "managerd.conf");
    path_in(p_ca, sizeof(p_ca), dir, "ca.crt");
    path_in(p_cakey, sizeof(p_cakey), dir, "ca.key");
    path_in(p_crt, sizeof(p_crt), dir, "server.crt");
    path_in(p_key, sizeof(p_key), dir, "server.key");
    path_in(p_pw, sizeof(p_pw), dir, "admin-password");
    path_in(p_db, sizeof(p_db), dir, "managerd.db");
    if (access(p_conf, F_OK) == 0)
        return vmseal_fail(EEXIST, "%s exists already: %s is set up", p_conf, dir);

    X509 *ca = NULL;
    EVP_PKEY *cakey = NULL;
    int rc;
    if (o->ca_cert) {
        rc = vmseal_pki_read_cert(o->ca_cert, &ca);
        if (rc >= 0)
            rc = vmseal_pki_read_key(o->ca_key, &cakey);
        if (rc >= 0 && X509_check_private_key(ca, cakey) != 1)
            rc = vmseal_fail(EINVAL, "CA key %s does not match %s", o->ca_key, o->ca_cert);
        /* written as a made one is: the library's PEM writers (key 0600) */
        if (rc >= 0)
            rc = vmseal_pki_write_cert(p_ca, ca, 0);
        if (rc >= 0)
            rc = vmseal_pki_write_key(p_cakey, cakey, 0);
    } else {
        vmseal_pki_req req = {
            .common_name = "vmseal manager CA", .organization = "vmseal",
            .key_type = VMSEAL_PKI_EC_P256, .is_ca = 1,
            .not_before_s = -300, .not_after_s = 3650 * DAY,
        };
        rc = vmseal_pki_issue(&req, NULL, NULL, &cakey, &ca);
        if (rc >= 0)
            rc = vmseal_pki_write_key(p_cakey, cakey, 0);
        if (rc >= 0)
            rc = vmseal_pki_write_cert(p_ca, ca, 0);
    }
    if (rc < 0)
        goto out;
    const char *names[40];
    size_t n = 0;
    names[n++] = "localhost";
    names[n++] = "127.0.0.1";
    names[n++] = "::1";
    for (size_t i = 0; i < o->n_hosts && n < 40; i++)
        names[n++] = o->hosts[i];
    rc = issue_leaf(o->n_hosts ? o->hosts[0] : "vmseal-manager", names, n, ca, cakey, p_crt, p_key);
    if (rc < 0)
        goto out;

    FILE *f = fopen(p_conf, "wxe");
    if (!f) {
        rc = vmseal_fail(errno, "cannot create %s: %s", p_conf, strerror(errno));
        goto out;
    }
    fprintf(f,
            "# vmseal-managerd configuration (relative paths are relative to this file)\n"
            "listen = %s\n"
            "port = %d\n"
            "# SQLite file, or a PostgreSQL conninfo: postgresql://user@host/dbname\n"
            "database = %s\n"
            "cert = server.crt\n"
            "key = server.key\n"
            "# host agents' certificates must chain to this CA (issue-host issues them)\n"
            "ca = ca.crt\n"
            "ca_key = ca.key\n"
            "kms_dir = kms\n"
            "token_ttl = 28800\n",
            o->listen ? o->listen : "127.0.0.1", o->port ? o->port : 8443,
            o->database ? o->database : "managerd.db");
    if (fclose(f) != 0) {
        rc = vmseal_fail(EIO, "cannot write %s", p_conf);
        goto out;
    }
    mgr_config *cfg = NULL;
    rc = mgr_config_load(p_conf, &cfg);
    if (rc < 0)
        goto out;
    if (mkdir(cfg->kms_dir, 0700) != 0 && errno != EEXIST) {
        rc = vmseal_fail(errno, "cannot create %s", cfg->kms_dir);
        mgr_config_free(cfg);
        goto out;
    }
    manager m = {.cfg = cfg};
    pthread_mutex_init(&m.lock, NULL);
    pthread_cond_init(&m.changed, NULL);
    rc = store_open(cfg->database, &m.db);
    if (rc >= 0)
        rc = auth_seed_roles(m.db);
    /* The first Administrator, with a random password in a 0600 file. */
    unsigned char raw[18];
    char pw[32] = "";
    if (rc >= 0 && RAND_bytes(raw, sizeof(raw)) != 1)
        rc = vmseal_fail(EIO, "random generator failed");
    if (rc >= 0) {
        EVP_EncodeBlock((unsigned char *)pw, raw, sizeof(raw));
        for (char *p = pw; *p; p++)
            *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
        int fd = open(p_pw, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) {
            rc = vmseal_fail(errno, "cannot create %s: %s", p_pw, strerror(errno));
        } else {
            char line[40];
            int len = snprintf(line, sizeof(line), "%s\n", pw);
            if (write(fd, line, (size_t)len) != len)
                rc = vmseal_fail(EIO, "cannot write %s", p_pw);
            OPENSSL_cleanse(line, sizeof(line));
            close(fd);
        }
    }
    if (rc >= 0)
        rc = auth_user_create(&m, "-", o->admin_name ? o->admin_name : "administrator", pw,
                              "Administrator");
    OPENSSL_cleanse(raw, sizeof(raw));
    OPENSSL_cleanse(pw, sizeof(pw));
    store_close(m.db);
    pthread_cond_destroy(&m.changed);
    pthread_mutex_destroy(&m.lock);
    mgr_config_free(cfg);
out:
    X509_free(ca);
    EVP_PKEY_free(cakey);
    return rc < 0 ? rc : 0;
}

int mgr_issue_host(const mgr_config *cfg, const char *name, const char *outdir,
                   const char *const *extra, size_t n_extra)
{
    if (!api_valid_name(name))
        return vmseal_fail(EINVAL, "invalid host name %s", name);
    if (!cfg->ca_key_file)
        return vmseal_fail(EINVAL, "%s names no ca_key: cannot issue host certificates", cfg->path);
    /* A host certificate must never carry the manager's name: hosts that
     * recognise the manager by its subject would take it for the manager. */
    X509 *mine = NULL;
    if (vmseal_pki_read_cert(cfg->cert_file, &mine) == 0) {
        char cn[256] = "";
        X509_NAME_get_text_by_NID(X509_get_subject_name(mine), NID_commonName, cn, sizeof(cn));
        int clash = strcasecmp(cn, name) == 0 || X509_check_host(mine, name, 0, 0, NULL) == 1;
        X509_free(mine);
        if (clash)
            return vmseal_fail(EINVAL, "%s is the manager's own name: a host certificate cannot carry it", name);
    }
    if (!strcasecmp(name, "vmseal-manager"))
        return vmseal_fail(EINVAL, "%s is the manager's default name: choose another host name", name);
    X509 *ca = NULL;
    EVP_PKEY *cakey = NULL;
    int rc = vmseal_pki_read_cert(cfg->ca_file, &ca);
    if (rc >= 0)
        rc = vmseal_pki_read_key(cfg->ca_key_file, &cakey);
    if (rc < 0)
        goto out;
    if (mkdir(outdir, 0700) != 0 && errno != EEXIST) {
        rc = vmseal_fail(errno, "cannot create %s: %s", outdir, strerror(errno));
        goto out;
    }
    const char *names[40];
    size_t n = 0;
    names[n++] = name;
    if (n_extra == 0) {
        names[n++] = "localhost";
        names[n++] = "127.0.0.1";
    }
    for (size_t i = 0; i < n_extra && n < 40; i++)
        names[n++] = extra[i];
    char crt[4096], key[4096], cacopy[4096], file[300];
    snprintf(file, sizeof(file), "%s.crt", name);
    path_in(crt, sizeof(crt), outdir, file);
    snprintf(file, sizeof(file), "%s.key", name);
    path_in(key, sizeof(key), outdir, file);
    path_in(cacopy, sizeof(cacopy), outdir, "ca.crt");
    rc = issue_leaf(name, names, n, ca, cakey, crt, key);
    if (rc >= 0 && access(cacopy, F_OK) != 0)
        rc = vmseal_pki_write_cert(cacopy, ca, 0);
    /* The host knows the manager by its certificate's fingerprint
     * (hostd.conf manager_fingerprint): write it beside the host's files. */
    if (rc >= 0) {
        X509 *mgr = NULL;
        unsigned char md[32];
        unsigned int mdlen = 0;
        char hex[65], fpath[4096];
        rc = vmseal_pki_read_cert(cfg->cert_file, &mgr);
        if (rc >= 0 && X509_digest(mgr, EVP_sha256(), md, &mdlen) != 1)
            rc = vmseal_fail(EIO, "cannot hash the manager's certificate");
        X509_free(mgr);
        if (rc >= 0) {
            vmseal_hex_encode(md, 32, hex);
            path_in(fpath, sizeof(fpath), outdir, "manager.sha256");
            FILE *f = fopen(fpath, "we");
            if (!f || fprintf(f, "%s\n", hex) < 0 || fclose(f) != 0)
                rc = vmseal_fail(EIO, "cannot write %s", fpath);
        }
    }
out:
    X509_free(ca);
    EVP_PKEY_free(cakey);
    return rc < 0 ? rc : 0;
}
