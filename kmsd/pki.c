/* init and enroll: CA, server and client certificates, master key, config. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <openssl/x509.h>

#include <vmseal/pki.h>

#include "masterkey.h"
#include "pki.h"
#include "store.h"

#define DAY 86400L

static int mkdir_private(const char *p)
{
    if (mkdir(p, 0700) < 0 && errno != EEXIST)
        return vmseal_fail(errno, "cannot create %s: %s", p, strerror(errno));
    struct stat st;
    if (stat(p, &st) < 0 || !S_ISDIR(st.st_mode))
        return vmseal_fail(ENOTDIR, "%s is not a folder", p);
    return 0;
}

static int inet_pton_any(const char *s, unsigned char buf[16])
{
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static int name_ok(const char *n)
{
    size_t len = strlen(n);
    if (len == 0 || len > 64)
        return 0;
    for (const char *p = n; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == '@'))
            return 0;
    }
    return n[0] != '.';
}

static int write_pair(const char *dir, const char *base, X509 *cert, EVP_PKEY *key)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/%s.key", dir, base);
    int r = vmseal_pki_write_key(p, key, 0);
    if (r < 0)
        return r;
    snprintf(p, sizeof(p), "%s/%s.crt", dir, base);
    return vmseal_pki_write_cert(p, cert, 0);
}

static int issue_client(X509 *ca, EVP_PKEY *cakey, const char *name, const char *outdir,
                        int key_type, int days)
{
    vmseal_pki_req req = {.common_name = name, .organization = "vmseal", .key_type = key_type,
                          .eku = VMSEAL_PKI_EKU_CLIENT, .not_before_s = -300,
                          .not_after_s = (long)days * DAY};
    X509 *cert;
    EVP_PKEY *key;
    int r = vmseal_pki_issue(&req, ca, cakey, &key, &cert);
    if (r < 0)
        return r;
    r = mkdir_private(outdir);
    if (r == 0)
        r = write_pair(outdir, name, cert, key);
    if (r == 0) {
        char p[PATH_MAX];
        snprintf(p, sizeof(p), "%s/ca.crt", outdir);
        r = vmseal_pki_write_cert(p, ca, 0);
    }
    X509_free(cert);
    EVP_PKEY_free(key);
    return r;
}

/* server certificate: localhost, 127.0.0.1, ::1, this host's name, extras */
static int issue_server(const char *dir, X509 *ca, EVP_PKEY *cakey, int key_type,
                        const char *const *hosts, size_t n_hosts, int cert_days)
{
    const char *dns[24], *ips[24];
    size_t nd = 0, ni = 0;
    char host[256] = "";
    dns[nd++] = "localhost";
    ips[ni++] = "127.0.0.1";
    ips[ni++] = "::1";
    if (gethostname(host, sizeof(host) - 1) == 0 && host[0] && strcmp(host, "localhost"))
        dns[nd++] = host;
    for (size_t i = 0; i < n_hosts && nd < 24 && ni < 24; i++) {
        unsigned char buf[16];
        if (inet_pton_any(hosts[i], buf))
            ips[ni++] = hosts[i];
        else
            dns[nd++] = hosts[i];
    }
    vmseal_pki_req sreq = {.common_name = host[0] ? host : "localhost", .organization = "vmseal",
                           .key_type = key_type, .eku = VMSEAL_PKI_EKU_SERVER,
                           .dns_names = dns, .n_dns = nd, .ip_addrs = ips, .n_ip = ni,
                           .not_before_s = -300, .not_after_s = (long)cert_days * DAY};
    X509 *srv = NULL;
    EVP_PKEY *srvkey = NULL;
    int r = vmseal_pki_issue(&sreq, ca, cakey, &srvkey, &srv);
    if (r == 0)
        r = write_pair(dir, "server", srv, srvkey);
    X509_free(srv);
    EVP_PKEY_free(srvkey);
    return r;
}

/* kmsd.conf of a new setup. */
typedef struct conf_params {
    const char *listen_address;
    int port;
    const char *conninfo_file;   /* NULL: SQLite */
    const char *node_name;
    const char *pkcs11_module, *pkcs11_token, *pkcs11_pin_file, *pkcs11_key_label;
} conf_params;

static int write_conf(const char *p, const conf_params *c)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        int r = vmseal_fail(errno, "cannot create %s: %s", p, strerror(errno));
        if (fd >= 0)
            close(fd);
        return r;
    }
    fprintf(f,
            "# vmseal-kmsd configuration (relative paths: from this folder)\n"
            "listen_address = %s\n"
            "port = %d\n"
            "cert = server.crt\n"
            "key = server.key\n"
            "ca = ca.crt\n"
            "ca_key = ca.key\n"
            "require_client_eku = true\n",
            c->listen_address ? c->listen_address : "0.0.0.0", c->port ? c->port : 5696);
    if (c->conninfo_file)
        fprintf(f,
                "# one PostgreSQL store for every node of the cluster (docs/kmsd.md)\n"
                "store = postgresql\n"
                "database_conninfo_file = %s\n"
                "node_name = %s\n"
                "pg_synchronous_commit = on\n",
                c->conninfo_file, c->node_name);
    else
        fprintf(f,
                "database = kmsd.db\n"
                "journal_mode = wal\n");
    if (c->pkcs11_module) {
        char pin[PATH_MAX];
        const char *pf = c->pkcs11_pin_file;
        if (pf[0] != '/' && realpath(pf, pin))
            pf = pin;
        fprintf(f,
                "pkcs11_module = %s\n"
                "pkcs11_token = %s\n"
                "pkcs11_pin_file = %s\n"
                "pkcs11_key_label = %s\n",
                c->pkcs11_module, c->pkcs11_token, pf,
                c->pkcs11_key_label ? c->pkcs11_key_label : "vmseal-kmsd-master");
    } else {
        fprintf(f, "master_key_file = master.key\n");
    }
    if (c->conninfo_file)
        fprintf(f, "# the audit chain is in the database; audit_log = FILE adds a chain per node\n");
    else
        fprintf(f, "audit_log = audit.log\n");
    fprintf(f,
            "log_level = info\n"
            "# identities (certificate subjects) that may act on every object\n"
            "admin = CN=admin,O=vmseal\n"
            "# optional KMIP username/password: `vmseal-kmsd passwd NAME` prints a line\n"
            "# user = NAME pbkdf2-sha256$...\n");
    if (fclose(f) != 0)
        return vmseal_fail(EIO, "cannot write %s", p);
    return 0;
}

/* The node name to write: given, else the host name (made valid). */
static void default_node(const char *given, char out[KMSD_NODE_MAX])
{
    if (given) {
        snprintf(out, KMSD_NODE_MAX, "%s", given);
        return;
    }
    char host[256] = "";
    if (gethostname(host, sizeof(host) - 1) < 0 || !host[0])
        snprintf(host, sizeof(host), "kmsd");
    for (char *q = host; *q; q++)
        if (!isalnum((unsigned char)*q) && *q != '-' && *q != '_' && *q != '.')
            *q = '-';
    host[KMSD_NODE_NAME_MAX] = '\0';
    snprintf(out, KMSD_NODE_MAX, "%s", host);
}

/* A PostgreSQL store's parameters from a conninfo file (read into *ci). */
static int pg_params(const char *conninfo_file, const char *node, vmseal_secret **ci,
                     kmsd_pg_params *pp)
{
    int r = kmsd_pg_read_conninfo(conninfo_file, ci);
    if (r < 0)
        return r;
    *pp = (kmsd_pg_params){.conninfo = *ci, .node = node};
    return 0;
}

/* The node name to record: o->node_name checked, or the host's. */
static int node_name_for(const kmsd_node_opts *n, char out[KMSD_NODE_MAX])
{
    if (n->node_name && !kmsd_node_name_ok(n->node_name))
        return vmseal_fail(EINVAL, "node name \"%s\": use 1-%d letters, digits, - _ .",
                           n->node_name, KMSD_NODE_NAME_MAX);
    default_node(n->node_name, out);
    return 0;
}

/* The master key on the node's PKCS#11 token (made when create is set). */
static int open_token_master_key(const kmsd_node_opts *n, int create, kmsd_masterkey **mk)
{
    kmsd_pkcs11_params pp = {.module = n->pkcs11_module, .token_label = n->pkcs11_token,
                             .pin_file = n->pkcs11_pin_file,
                             .key_label = n->pkcs11_key_label ? n->pkcs11_key_label
                                                              : "vmseal-kmsd-master"};
    if (!pp.token_label || !pp.pin_file)
        return vmseal_fail(EINVAL, "--pkcs11-module needs --pkcs11-token and --pkcs11-pin-file");
    return kmsd_mk_open_pkcs11(&pp, create, mk);
}

/* The node's server certificate (signed by the cluster's CA) and its
 * kmsd.conf at conf_path. */
static int write_node(const char *dir, const char *conf_path, const kmsd_node_opts *n, X509 *ca,
                      EVP_PKEY *cakey, const char *conninfo_abs, const char *node)
{
    int r = issue_server(dir, ca, cakey, n->key_type ? n->key_type : VMSEAL_PKI_RSA2048,
                         n->hosts, n->n_hosts, n->cert_days > 0 ? n->cert_days : 825);
    if (r < 0)
        return r;
    conf_params cp = {.listen_address = n->listen_address, .port = n->port,
                      .conninfo_file = conninfo_abs, .node_name = node,
                      .pkcs11_module = n->pkcs11_module, .pkcs11_token = n->pkcs11_token,
                      .pkcs11_pin_file = n->pkcs11_pin_file,
                      .pkcs11_key_label = n->pkcs11_key_label};
    return write_conf(conf_path, &cp);
}

int kmsd_init(const char *dir, const kmsd_init_opts *o)
{
    const kmsd_node_opts *n = &o->node;
    char p[PATH_MAX], q[PATH_MAX];
    int r;
    snprintf(p, sizeof(p), "%s/kmsd.conf", dir);
    if (access(p, F_OK) == 0)
        return vmseal_fail(EEXIST, "%s already exists: this folder is set up", p);
    int key_type = n->key_type ? n->key_type : VMSEAL_PKI_RSA2048;
    int ca_days = o->ca_days > 0 ? o->ca_days : 3650;
    int cert_days = n->cert_days > 0 ? n->cert_days : 825;

    /* CA */
    vmseal_pki_req careq = {.common_name = "vmseal-kmsd CA", .organization = "vmseal",
                            .key_type = key_type, .is_ca = 1, .not_before_s = -300,
                            .not_after_s = (long)ca_days * DAY};
    X509 *ca = NULL;
    EVP_PKEY *cakey = NULL;
    kmsd_masterkey *mk = NULL;
    kmsd_store *st = NULL;
    vmseal_secret *ci = NULL;
    kmsd_pg_params pgp;
    char node[KMSD_NODE_MAX], conninfo_abs[PATH_MAX];
    if ((r = node_name_for(n, node)) < 0)
        return r;
    if (n->conninfo_file) {
        /* before anything is made: the database must hold no store yet */
        if (!realpath(n->conninfo_file, conninfo_abs))
            return vmseal_fail(errno, "%s: %s", n->conninfo_file, strerror(errno));
        if ((r = pg_params(conninfo_abs, node, &ci, &pgp)) < 0)
            return r;
        r = kmsd_store_open_pg(&pgp, NULL, KMSD_PG_OPEN, &st);
        kmsd_store_close(st);
        st = NULL;
        if (r == 0 || r != -ENOENT) {
            vmseal_secret_free(ci);
            if (r == 0)
                return vmseal_fail(EEXIST, "the database of %s holds a vmseal-kmsd store "
                                   "already: add this node to it with `vmseal-kmsd join`",
                                   n->conninfo_file);
            return r;
        }
    }
    if ((r = mkdir_private(dir)) < 0) {
        vmseal_secret_free(ci);
        return r;
    }
    if ((r = vmseal_pki_issue(&careq, NULL, NULL, &cakey, &ca)) < 0)
        goto out;
    if ((r = write_pair(dir, "ca", ca, cakey)) < 0)
        goto out;

    /* master key */
    if (n->pkcs11_module) {
        if ((r = open_token_master_key(n, 1, &mk)) < 0)
            goto out;
    } else {
        snprintf(q, sizeof(q), "%s/master.key", dir);
        if ((r = kmsd_mk_create_file(q)) < 0 || (r = kmsd_mk_open_file(q, &mk)) < 0)
            goto out;
    }
    if (n->conninfo_file) {
        if ((r = kmsd_store_open_pg(&pgp, mk, KMSD_PG_CREATE, &st)) < 0)
            goto out;
    } else {
        snprintf(q, sizeof(q), "%s/kmsd.db", dir);
        if ((r = kmsd_store_open(q, "wal", mk, 1, &st)) < 0)
            goto out;
    }

    /* admin client */
    snprintf(q, sizeof(q), "%s/clients", dir);
    if ((r = mkdir_private(q)) < 0)
        goto out;
    snprintf(q, sizeof(q), "%s/clients/admin", dir);
    if ((r = issue_client(ca, cakey, "admin", q, key_type, cert_days)) < 0)
        goto out;

    /* server certificate and configuration */
    r = write_node(dir, p, n, ca, cakey, n->conninfo_file ? conninfo_abs : NULL, node);
out:
    kmsd_store_close(st);
    kmsd_mk_free(mk);
    vmseal_secret_free(ci);
    X509_free(ca);
    EVP_PKEY_free(cakey);
    return r;
}

int kmsd_join(const char *dir, const kmsd_join_opts *o)
{
    const kmsd_node_opts *n = &o->node;
    if (!n->conninfo_file)
        return vmseal_fail(EINVAL, "join needs --conninfo-file (the cluster's database)");
    if (!o->ca_file || !o->ca_key_file)
        return vmseal_fail(EINVAL, "join needs --ca and --ca-key: the cluster's CA (ca.crt, "
                           "ca.key of the first node), so that clients trust every node");
    if (!o->master_key_file == !n->pkcs11_module)
        return vmseal_fail(EINVAL, "join needs the cluster's master key: --master-key-file "
                           "(a copy of the first node's master.key) or --pkcs11-module with "
                           "the same token");
    char node[KMSD_NODE_MAX], conninfo_abs[PATH_MAX], p[PATH_MAX];
    int r;
    if ((r = node_name_for(n, node)) < 0)
        return r;
    if (!realpath(n->conninfo_file, conninfo_abs))
        return vmseal_fail(errno, "%s: %s", n->conninfo_file, strerror(errno));
    snprintf(p, sizeof(p), "%s/kmsd.conf", dir);
    if (access(p, F_OK) == 0)
        return vmseal_fail(EEXIST, "%s already exists: this folder is set up", p);

    /* 1. the master key must open the cluster's store: checked before
     * anything is written, here or in the database */
    kmsd_masterkey *mk = NULL;
    kmsd_store *st = NULL;
    vmseal_secret *ci = NULL;
    X509 *ca = NULL;
    EVP_PKEY *cakey = NULL;
    kmsd_pg_params pp;
    if (n->pkcs11_module)
        r = open_token_master_key(n, 0, &mk);
    else
        r = kmsd_mk_open_file(o->master_key_file, &mk);
    if (r < 0)
        return r;
    if ((r = pg_params(conninfo_abs, node, &ci, &pp)) < 0)
        goto out;
    if ((r = kmsd_store_open_pg(&pp, mk, KMSD_PG_OPEN, &st)) < 0) {
        if (r == -EKEYREJECTED)
            r = vmseal_fail(EKEYREJECTED, "refused: this master key (%s) does not open the "
                            "cluster's store (its master-key check does not match); use the "
                            "first node's master key. Nothing was written.", mk->desc);
        goto out;
    }
    kmsd_store_close(st);
    st = NULL;
    /* 2. the cluster's CA, which signs this node's certificate */
    if ((r = vmseal_pki_read_cert(o->ca_file, &ca)) < 0 ||
        (r = vmseal_pki_read_key(o->ca_key_file, &cakey)) < 0)
        goto out;
    if (X509_check_private_key(ca, cakey) != 1) {
        r = vmseal_fail(EINVAL, "%s is not the key of %s", o->ca_key_file, o->ca_file);
        goto out;
    }
    /* 3. the folder */
    if ((r = mkdir_private(dir)) < 0)
        goto out;
    if ((r = write_pair(dir, "ca", ca, cakey)) < 0)
        goto out;
    if (o->master_key_file) {
        char q[PATH_MAX];
        snprintf(q, sizeof(q), "%s/master.key", dir);
        if ((r = kmsd_mk_copy_file(o->master_key_file, q)) < 0)
            goto out;
    }
    r = write_node(dir, p, n, ca, cakey, conninfo_abs, node);
out:
    kmsd_store_close(st);
    kmsd_mk_free(mk);
    vmseal_secret_free(ci);
    X509_free(ca);
    EVP_PKEY_free(cakey);
    return r;
}

int kmsd_enroll(const kmsd_config *cfg, const char *name, const char *outdir, int key_type,
                int days, char *identity, size_t idlen)
{
    if (!name_ok(name))
        return vmseal_fail(EINVAL, "client name \"%s\": use 1-64 letters, digits, - _ . @", name);
    if (!cfg->ca_key_file)
        return vmseal_fail(EINVAL, "%s has no ca_key: cannot issue certificates", cfg->path);
    X509 *ca;
    EVP_PKEY *cakey;
    int r = vmseal_pki_read_cert(cfg->ca_file, &ca);
    if (r < 0)
        return r;
    if ((r = vmseal_pki_read_key(cfg->ca_key_file, &cakey)) < 0) {
        X509_free(ca);
        return r;
    }
    char out[PATH_MAX];
    if (outdir) {
        snprintf(out, sizeof(out), "%s", outdir);
    } else {
        snprintf(out, sizeof(out), "%s/clients", cfg->dir);
        if ((r = mkdir_private(out)) < 0)
            goto done;
        snprintf(out, sizeof(out), "%s/clients/%s", cfg->dir, name);
    }
    r = issue_client(ca, cakey, name, out, key_type, days > 0 ? days : 825);
    if (r == 0)
        snprintf(identity, idlen, "CN=%s,O=vmseal", name);
done:
    X509_free(ca);
    EVP_PKEY_free(cakey);
    return r;
}
