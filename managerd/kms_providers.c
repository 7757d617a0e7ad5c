/* vmseal-managerd — key providers: clusters of KMIP servers.
 *
 * A standard key provider is a named list of KMIP servers ("host:port", in
 * failover order), one of which providers is the default. Trust is set up
 * both ways, as in vCenter:
 *   - the manager trusts the KMS: the KMS CA certificate is uploaded (or
 *     taken from what the server presents when it is a CA/self-signed
 *     certificate), stored in the database and in KMS_DIR/NAME/ca.crt;
 *   - the KMS trusts the manager: the manager makes a key pair and a CSR for
 *     the KMS administrator to sign (kms csr), or is given a certificate and
 *     key issued by the KMS (`vmseal-kmsd enroll manager`; kms client-cert).
 *     The private key stays in KMS_DIR/NAME/client.key (0600).
 * Only KEK identifiers are kept by the manager, never key material.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <vmseal/common.h>
#include <vmseal/kmip_client.h>
#include <vmseal/tls.h>

#include "managerd.h"

/* ------------------------------------------------------------- helpers */

static char *provider_dir(manager *m, const char *name)
{
    size_t n = strlen(m->cfg->kms_dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", m->cfg->kms_dir, name);
    return p;
}

static char *provider_file(manager *m, const char *name, const char *file)
{
    size_t n = strlen(m->cfg->kms_dir) + strlen(name) + strlen(file) + 3;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s/%s", m->cfg->kms_dir, name, file);
    return p;
}

static int ensure_dir(const char *path)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return vmseal_fail(errno, "cannot create %s: %s", path, strerror(errno));
    return 0;
}

static int write_file(const char *path, const char *data, size_t len, mode_t mode)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return vmseal_fail(errno, "cannot write %s: %s", tmp, strerror(errno));
    int w = vmseal_write_all(fd, data, len);
    if (w < 0) {
        close(fd);
        unlink(tmp);
        return vmseal_fail(-w, "cannot write %s: %s", tmp, strerror(-w));
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return vmseal_fail(e, "cannot write %s: %s", path, strerror(e));
    }
    return 0;
}

static X509 *pem_cert(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    ERR_clear_error();
    return x;
}

static char *cert_to_pem(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b || PEM_write_bio_X509(b, x) != 1) {
        BIO_free(b);
        return NULL;
    }
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *out = malloc((size_t)n + 1);
    if (out) {
        memcpy(out, data, (size_t)n);
        out[n] = '\0';
    }
    BIO_free(b);
    return out;
}

static void name_str(const X509_NAME *nm, char *out, size_t len)
{
    out[0] = '\0';
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return;
    X509_NAME_print_ex(b, nm, 0, XN_FLAG_RFC2253);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    snprintf(out, len, "%.*s", (int)n, data);
    BIO_free(b);
}

static int64_t asn1_epoch(const ASN1_TIME *t)
{
    struct tm tm;
    if (ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm);
}

/* {subject, issuer, not_before, not_after, sha256, is_ca, days_left, status} */
static json_t *cert_info(X509 *x)
{
    char subj[512], iss[512], fp[65];
    unsigned char md[32];
    unsigned int mdlen = 0;
    name_str(X509_get_subject_name(x), subj, sizeof(subj));
    name_str(X509_get_issuer_name(x), iss, sizeof(iss));
    X509_digest(x, EVP_sha256(), md, &mdlen);
    vmseal_hex_encode(md, 32, fp);
    int64_t nb = asn1_epoch(X509_get0_notBefore(x)), na = asn1_epoch(X509_get0_notAfter(x));
    int64_t now = mgr_now();
    long long days = (na - now) / 86400;
    const char *status = na < now ? "expired" : nb > now ? "not yet valid" : days < 30 ? "expiring" : "valid";
    return json_pack("{s:s,s:s,s:I,s:I,s:s,s:b,s:I,s:s}", "subject", subj, "issuer", iss,
                     "not_before", (json_int_t)nb, "not_after", (json_int_t)na, "sha256", fp,
                     "is_ca", X509_check_ca(x) > 0, "days_left", (json_int_t)days, "status", status);
}

static json_t *pem_info(const char *pem)
{
    X509 *x = pem ? pem_cert(pem) : NULL;
    if (!x)
        return json_null();
    json_t *j = cert_info(x);
    X509_free(x);
    return j;
}

/* -------------------------------------------------------------- reading */

static const char provider_cols[] =
    "SELECT name, is_default, ca_pem, client_cert_pem, client_key_file, csr_pem, kmip_user "
    "FROM kms_providers";

static json_t *servers_of(manager *m, const char *name)
{
    store_rows *r = NULL;
    json_t *arr = json_array();
    if (store_execv(m->db, &r, "SELECT address FROM kms_servers WHERE provider = $1 ORDER BY pos",
                    name, STORE_END) < 0)
        return arr;
    for (size_t i = 0; i < store_rows_count(r); i++)
        json_array_append_new(arr, json_string(store_rows_get(r, i, 0)));
    store_rows_free(r);
    return arr;
}

static json_t *provider_json(manager *m, store_rows *r, size_t i)
{
    const char *name = store_rows_get(r, i, 0);
    store_rows *k = NULL;
    long long keks = 0;
    if (store_execv(m->db, &k, "SELECT COUNT(*) FROM keks WHERE provider = $1", name, STORE_END) >= 0)
        keks = atoll(store_rows_get(k, 0, 0) ? store_rows_get(k, 0, 0) : "0");
    store_rows_free(k);
    const char *ca = store_rows_get(r, i, 2), *cc = store_rows_get(r, i, 3);
    return json_pack("{s:s,s:b,s:o,s:b,s:o,s:o,s:b,s:s?,s:I}", "name", name, "default",
                     atoi(store_rows_get(r, i, 1)), "servers", servers_of(m, name), "trusted",
                     ca != NULL, "kms_ca", pem_info(ca), "client_certificate", pem_info(cc),
                     "csr_pending", store_rows_get(r, i, 5) != NULL && cc == NULL, "kmip_user",
                     store_rows_get(r, i, 6), "keks", (json_int_t)keks);
}

int kms_provider_list(manager *m, json_t **out)
{
    store_rows *r = NULL;
    char sql[512];
    snprintf(sql, sizeof(sql), "%s ORDER BY name", provider_cols);
    int rc = store_exec(m->db, sql, 0, NULL, &r);
    if (rc < 0)
        return rc;
    json_t *arr = json_array();
    for (size_t i = 0; i < store_rows_count(r); i++)
        json_array_append_new(arr, provider_json(m, r, i));
    store_rows_free(r);
    *out = json_pack("{s:o}", "providers", arr);
    return 0;
}

static int load_provider(manager *m, const char *name, store_rows **r)
{
    char sql[512];
    snprintf(sql, sizeof(sql), "%s WHERE name = $1", provider_cols);
    const char *p[] = {name};
    int rc = store_exec(m->db, sql, 1, p, r);
    if (rc < 0)
        return rc;
    if (store_rows_count(*r) == 0) {
        store_rows_free(*r);
        *r = NULL;
        return vmseal_fail(ENOENT, "no key provider named %s", name);
    }
    return 0;
}

int kms_provider_get(manager *m, const char *name, json_t **out)
{
    store_rows *r = NULL;
    int rc = load_provider(m, name, &r);
    if (rc < 0)
        return rc;
    *out = provider_json(m, r, 0);
    store_rows_free(r);
    return 0;
}

int kms_provider_default(manager *m, char **name)
{
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r, "SELECT name FROM kms_providers WHERE is_default = 1", STORE_END);
    if (rc < 0)
        return rc;
    const char *n = store_rows_get(r, 0, 0);
    if (!n) {
        store_rows_free(r);
        return vmseal_fail(ENOENT, "no default key provider; add one with `vmseal kms add`");
    }
    *name = strdup(n);
    store_rows_free(r);
    return *name ? 0 : vmseal_fail(ENOMEM, "out of memory");
}

/* ------------------------------------------------------------- changing */

struct add_tx {
    const char *name;
    const json_t *servers;
    int make_default;
    const char *user;
};

static int set_servers(store *db, const char *name, const json_t *servers)
{
    int rc = store_execv(db, NULL, "DELETE FROM kms_servers WHERE provider = $1", name, STORE_END);
    size_t i;
    json_t *s;
    json_array_foreach(servers, i, s) {
        if (rc < 0)
            break;
        char pos[24];
        snprintf(pos, sizeof(pos), "%zu", i);
        rc = store_execv(db, NULL, "INSERT INTO kms_servers (provider, pos, address) VALUES ($1, $2, $3)",
                         name, pos, json_string_value(s), STORE_END);
    }
    return rc;
}

static int make_default(store *db, const char *name)
{
    int rc = store_execv(db, NULL, "UPDATE kms_providers SET is_default = 0 WHERE name <> $1", name, STORE_END);
    if (rc >= 0)
        rc = store_execv(db, NULL, "UPDATE kms_providers SET is_default = 1 WHERE name = $1", name, STORE_END);
    return rc;
}

static int add_fn(store *db, void *arg)
{
    struct add_tx *a = arg;
    char now[32];
    snprintf(now, sizeof(now), "%lld", (long long)mgr_now());
    int rc = store_execv(db, NULL, "INSERT INTO kms_providers (name, kmip_user, created) VALUES ($1, $2, $3)",
                         a->name, a->user, now, STORE_END);
    if (rc == -EEXIST)
        return vmseal_fail(EEXIST, "key provider %s exists already", a->name);
    if (rc >= 0)
        rc = set_servers(db, a->name, a->servers);
    store_rows *r = NULL;
    if (rc >= 0)
        rc = store_execv(db, &r, "SELECT COUNT(*) FROM kms_providers WHERE is_default = 1", STORE_END);
    if (rc >= 0 && (a->make_default || atoi(store_rows_get(r, 0, 0)) == 0)) {
        a->make_default = 1;
        rc = make_default(db, a->name);
    }
    store_rows_free(r);
    return rc;
}

static int check_servers(const json_t *servers)
{
    size_t i;
    json_t *s;
    json_array_foreach(servers, i, s) {
        char host[256];
        int port;
        if (vmseal_kmip_parse_server(json_string_value(s), host, sizeof(host), &port) < 0)
            return vmseal_fail(EINVAL, "server %zu: expected host:port, got '%.64s'", i + 1,
                               json_string_value(s));
        for (size_t k = 0; k < i; k++)
            if (!strcmp(json_string_value(json_array_get(servers, k)), json_string_value(s)))
                return vmseal_fail(EINVAL, "server %s listed twice", json_string_value(s));
    }
    return 0;
}

int kms_provider_add(manager *m, const char *actor, const json_t *req)
{
    struct add_tx a = {
        .name = json_string_value(json_object_get(req, "name")),
        .servers = json_object_get(req, "servers"),
        .make_default = json_is_true(json_object_get(req, "default")),
        .user = json_string_value(json_object_get(req, "username")),
    };
    if (strlen(a.name) > 32)
        return vmseal_fail(EINVAL, "a key provider name has at most 32 characters (it is bound "
                           "into every key safe)");
    int rc = check_servers(a.servers);
    if (rc < 0)
        return rc;
    rc = store_tx(m->db, add_fn, &a);
    if (rc < 0)
        return rc;
    char *dir = provider_dir(m, a.name);
    rc = dir ? ensure_dir(m->cfg->kms_dir) : -ENOMEM;
    if (rc >= 0)
        rc = ensure_dir(dir);
    free(dir);
    json_t *nv = json_pack("{s:s,s:O,s:b}", "name", a.name, "servers", a.servers, "default", a.make_default);
    event_add(m, actor, "kms.add", a.name, NULL, nv);
    json_decref(nv);
    return rc < 0 ? rc : 0;
}

struct patch_tx {
    const char *name;
    const json_t *servers;
    int set_default;
    const char *username;          /* NULL: unchanged; "": none */
};

static int patch_fn(store *db, void *arg)
{
    struct patch_tx *p = arg;
    int rc = 0;
    if (p->servers)
        rc = set_servers(db, p->name, p->servers);
    if (rc >= 0 && p->set_default)
        rc = make_default(db, p->name);
    if (rc >= 0 && p->username)
        rc = store_execv(db, NULL, "UPDATE kms_providers SET kmip_user = $2 WHERE name = $1", p->name,
                         p->username[0] ? p->username : NULL, STORE_END);
    return rc;
}

/* The KMIP password goes to kms_dir/NAME/kmip.password (0600, replaced
 * atomically), never to the database or an event; NULL removes it. */
static int store_password(manager *m, const char *name, const char *password)
{
    char *p = provider_file(m, name, "kmip.password");
    char *t = provider_file(m, name, ".kmip.password.tmp");
    char *d = provider_dir(m, name);
    int rc = p && t && d ? 0 : vmseal_fail(ENOMEM, "out of memory");
    if (rc >= 0 && !password) {
        if (unlink(p) != 0 && errno != ENOENT)
            rc = vmseal_fail(errno, "cannot remove %s: %s", p, strerror(errno));
    } else if (rc >= 0) {
        rc = ensure_dir(m->cfg->kms_dir);
        if (rc >= 0)
            rc = ensure_dir(d);
        (void)unlink(t);
        int fd = rc >= 0 ? open(t, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600) : -1;
        if (rc >= 0 && fd < 0)
            rc = vmseal_fail(errno, "cannot create %s: %s", t, strerror(errno));
        if (fd >= 0) {
            if (vmseal_write_all(fd, password, strlen(password)) < 0 || fsync(fd) != 0)
                rc = vmseal_fail(EIO, "cannot write %s", t);
            close(fd);
            if (rc >= 0 && rename(t, p) != 0)
                rc = vmseal_fail(errno, "cannot rename %s: %s", t, strerror(errno));
            if (rc < 0)
                (void)unlink(t);
        }
    }
    free(p);
    free(t);
    free(d);
    return rc;
}

int kms_provider_patch(manager *m, const char *actor, const char *name, const json_t *req)
{
    store_rows *r = NULL;
    int rc = load_provider(m, name, &r);
    if (rc < 0)
        return rc;
    int was_default = atoi(store_rows_get(r, 0, 1));
    store_rows_free(r);
    const json_t *servers = json_object_get(req, "servers");
    const json_t *def = json_object_get(req, "default");
    if (def && json_is_false(def))
        return vmseal_fail(EINVAL, "make another provider the default instead");
    if (servers && (rc = check_servers(servers)) < 0)
        return rc;
    const char *user = json_string_value(json_object_get(req, "username"));
    const char *password = json_string_value(json_object_get(req, "password"));
    if (password && (!user || !user[0]))
        return vmseal_fail(EINVAL, "a KMIP password goes with a username");
    if (user && user[0] && !password)
        return vmseal_fail(EINVAL, "give the KMIP password with the username");
    for (const char *c = user; c && *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return vmseal_fail(EINVAL, "a KMIP username has no control characters");
    for (const char *c = password; c && *c; c++)
        if (*c == '\0' || (unsigned char)*c < 0x20)
            return vmseal_fail(EINVAL, "a KMIP password has no control characters");
    json_t *old = json_pack("{s:o,s:b}", "servers", servers_of(m, name), "default", was_default);
    struct patch_tx p = {.name = name, .servers = servers, .set_default = json_is_true(def),
                         .username = user};
    if (user)
        rc = store_password(m, name, user[0] ? password : NULL);
    if (rc >= 0)
        rc = store_tx(m->db, patch_fn, &p);
    if (rc >= 0) {
        json_t *nv = json_pack("{s:o,s:b}", "servers", servers_of(m, name), "default",
                               was_default || p.set_default);
        if (user) {
            /* who, and that a password is set: never the password */
            json_object_set_new(nv, "kmip_user", user[0] ? json_string(user) : json_null());
            json_object_set_new(nv, "kmip_password", json_string(user[0] ? "set" : "none"));
        }
        event_add(m, actor, user ? "kms.credentials" : p.set_default && !servers ? "kms.default" : "kms.update",
                  name, old, nv);
        json_decref(nv);
    }
    json_decref(old);
    return rc < 0 ? rc : 0;
}

int kms_provider_remove(manager *m, const char *actor, const char *name)
{
    store_rows *r = NULL;
    int rc = load_provider(m, name, &r);
    if (rc < 0)
        return rc;
    json_t *old = provider_json(m, r, 0);
    store_rows_free(r);
    rc = store_execv(m->db, &r, "SELECT COUNT(*) FROM vms WHERE provider = $1 AND kek_id IS NOT NULL",
                     name, STORE_END);
    if (rc >= 0 && atoi(store_rows_get(r, 0, 0)) > 0)
        rc = vmseal_fail(EBUSY, "key provider %s holds the keys of %s encrypted VM(s); decrypt or "
                         "rekey them first", name, store_rows_get(r, 0, 0));
    store_rows_free(r);
    if (rc >= 0)
        rc = store_execv(m->db, NULL, "DELETE FROM kms_servers WHERE provider = $1", name, STORE_END);
    if (rc >= 0)
        rc = store_execv(m->db, NULL, "DELETE FROM kms_providers WHERE name = $1", name, STORE_END);
    if (rc >= 0) {
        const char *files[] = {"ca.crt", "client.crt", "client.key", "kmip.password"};
        for (size_t i = 0; i < 4; i++) {
            char *f = provider_file(m, name, files[i]);
            if (f)
                unlink(f);
            free(f);
        }
        char *d = provider_dir(m, name);
        if (d)
            rmdir(d);
        free(d);
        event_add(m, actor, "kms.remove", name, old, NULL);
    }
    json_decref(old);
    return rc < 0 ? rc : 0;
}

/* Files for the provider's TLS settings, rewritten from the database when
 * missing (e.g. a PostgreSQL store moved to another machine). */
static int sync_file(manager *m, const char *name, const char *file, const char *pem, char **path)
{
    *path = NULL;
    if (!pem)
        return 0;
    char *p = provider_file(m, name, file);
    if (!p)
        return vmseal_fail(ENOMEM, "out of memory");
    struct stat st;
    if (stat(p, &st) != 0) {
        char *d = provider_dir(m, name);
        int rc = d ? ensure_dir(m->cfg->kms_dir) : -ENOMEM;
        if (rc >= 0)
            rc = ensure_dir(d);
        free(d);
        if (rc >= 0)
            rc = write_file(p, pem, strlen(pem), 0644);
        if (rc < 0) {
            free(p);
            return rc;
        }
    }
    *path = p;
    return 0;
}

void kms_conn_free(kms_conn *c)
{
    for (size_t i = 0; i < c->n_servers; i++)
        free(c->servers[i]);
    free(c->servers);
    free(c->ca_file);
    free(c->cert_file);
    free(c->key_file);
    free(c->username);
    vmseal_secret_free(c->password);
    memset(c, 0, sizeof(*c));
}

/* The KMIP password of a provider (kms_dir/NAME/kmip.password, 0600, set by
 * kms_provider_set_credentials), into locked memory, NUL-terminated; NULL
 * when there is none. */
static int read_password(manager *m, const char *name, vmseal_secret **out)
{
    *out = NULL;
    char *p = provider_file(m, name, "kmip.password");
    if (!p)
        return vmseal_fail(ENOMEM, "out of memory");
    int fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    free(p);
    if (fd < 0)
        return errno == ENOENT ? 0 : vmseal_fail(errno, "key provider %s: cannot read its KMIP password: %s",
                                                 name, strerror(errno));
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 1 || st.st_size > KMS_PASSWORD_MAX) {
        rc = vmseal_fail(EINVAL, "key provider %s: its KMIP password file is not a file of 1..%d bytes",
                         name, KMS_PASSWORD_MAX);
    } else if (!(*out = vmseal_secret_new((size_t)st.st_size + 1))) {
        rc = vmseal_fail(ENOMEM, "key provider %s: %s", name, vmseal_last_error());
    } else {
        size_t got = 0;
        while (got < (size_t)st.st_size) {
            ssize_t r = read(fd, vmseal_secret_data(*out) + got, (size_t)st.st_size - got);
            if (r <= 0) {
                rc = vmseal_fail(EIO, "key provider %s: cannot read its KMIP password", name);
                break;
            }
            got += (size_t)r;
        }
        vmseal_secret_data(*out)[st.st_size] = '\0';
        if (rc < 0) {
            vmseal_secret_free(*out);
            *out = NULL;
        }
    }
    close(fd);
    return rc;
}

static void digest_str(EVP_MD_CTX *d, const char *tag, const char *v)
{
    EVP_DigestUpdate(d, tag, strlen(tag) + 1);
    if (v)
        EVP_DigestUpdate(d, v, strlen(v) + 1);
}

int kms_provider_conn(manager *m, const char *name, kms_conn *out)
{
    memset(out, 0, sizeof(*out));
    store_rows *r = NULL;
    int rc = load_provider(m, name, &r);
    if (rc < 0)
        return rc;
    rc = sync_file(m, name, "ca.crt", store_rows_get(r, 0, 2), &out->ca_file);
    if (rc >= 0)
        rc = sync_file(m, name, "client.crt", store_rows_get(r, 0, 3), &out->cert_file);
    if (rc >= 0 && out->cert_file && store_rows_get(r, 0, 4))
        out->key_file = strdup(store_rows_get(r, 0, 4));
    if (rc >= 0 && store_rows_get(r, 0, 6) && !(out->username = strdup(store_rows_get(r, 0, 6))))
        rc = vmseal_fail(ENOMEM, "out of memory");
    if (rc >= 0)
        rc = read_password(m, name, &out->password);
    json_t *servers = servers_of(m, name);
    out->n_servers = json_array_size(servers);
    out->servers = calloc(out->n_servers ? out->n_servers : 1, sizeof(char *));
    for (size_t i = 0; out->servers && i < out->n_servers; i++)
        out->servers[i] = strdup(json_string_value(json_array_get(servers, i)));
    json_decref(servers);
    if (rc >= 0 && !out->servers)
        rc = vmseal_fail(ENOMEM, "out of memory");
    /* One id for all settings, so that open connections are dropped when
     * any of them changes. */
    EVP_MD_CTX *d = rc >= 0 ? EVP_MD_CTX_new() : NULL;
    unsigned char h[32];
    if (rc >= 0 && (!d || EVP_DigestInit_ex(d, EVP_sha256(), NULL) != 1))
        rc = vmseal_fail(ENOMEM, "out of memory");
    if (rc >= 0) {
        for (size_t i = 0; i < out->n_servers; i++)
            digest_str(d, "server", out->servers[i]);
        digest_str(d, "ca", store_rows_get(r, 0, 2));
        digest_str(d, "cert", store_rows_get(r, 0, 3));
        digest_str(d, "key", store_rows_get(r, 0, 4));
        digest_str(d, "user", out->username);
        digest_str(d, "password", out->password ? (const char *)vmseal_secret_cdata(out->password) : NULL);
        unsigned hl = 0;
        EVP_DigestFinal_ex(d, h, &hl);
        for (size_t i = 0; i < 32; i++)
            snprintf(out->config_id + 2 * i, 3, "%02x", h[i]);
    }
    EVP_MD_CTX_free(d);
    store_rows_free(r);
    if (rc < 0)
        kms_conn_free(out);
    return rc < 0 ? rc : 0;
}

/* ------------------------------------------------------------- status */

static int tcp_probe(const char *host, int port, int timeout_ms, char *err, size_t errlen)
{
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int g = getaddrinfo(host, ps, &hints, &res);
    if (g != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(g));
        return -EHOSTUNREACH;
    }
    int rc = -ECONNREFUSED;
    snprintf(err, errlen, "connection refused");
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int c = connect(fd, a->ai_addr, a->ai_addrlen);
        if (c != 0 && errno == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int w = poll(&p, 1, timeout_ms);
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            if (w == 0) {
                snprintf(err, errlen, "no answer within %d ms", timeout_ms);
                rc = -ETIMEDOUT;
            } else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0) {
                c = 0;
            } else {
                snprintf(err, errlen, "%s", strerror(soerr));
                rc = -soerr;
            }
        }
        close(fd);
        if (c == 0) {
            rc = 0;
            break;
        }
    }
    freeaddrinfo(res);
    return rc;
}

/* A number the server reported, or null when it did not know. */
static json_t *fact_num(int64_t v)
{
    return v < 0 ? json_null() : json_integer((json_int_t)v);
}

/* The cluster facts a vmseal-kmsd node sent (already escaped and bounded
 * by vmseal_kmip_cluster_info_parse: valid UTF-8 without control
 * characters, so every json_string() below succeeds). */
static json_t *cluster_json(const vmseal_kmip_cluster_info *ci)
{
    json_t *standbys = json_array(), *nodes = json_array();
    for (size_t i = 0; i < ci->n_standbys; i++) {
        const vmseal_kmip_cluster_standby *sb = &ci->standbys[i];
        json_array_append_new(standbys, json_pack("{s:s,s:s,s:s,s:o,s:o}", "name", sb->name, "state",
                                                  sb->state, "sync_state", sb->sync_state,
                                                  "replay_lag_ms", fact_num(sb->replay_lag_ms),
                                                  "bytes_behind", fact_num(sb->bytes_behind)));
    }
    for (size_t i = 0; i < ci->n_nodes; i++) {
        const vmseal_kmip_cluster_node *n = &ci->nodes[i];
        json_array_append_new(nodes, json_pack("{s:s,s:s,s:s,s:s,s:o}", "name", n->name, "address",
                                               n->address, "version", n->version, "state", n->state,
                                               "seen_ago_ms", fact_num(n->seen_ago_ms)));
    }
    json_t *db = !ci->db_role[0] ? NULL : json_pack("{s:s,s:s,s:s,s:s,s:s}", "role", ci->db_role, "address", ci->db_address,
                           "version", ci->db_version, "synchronous_commit", ci->synchronous_commit,
                           "synchronous_standby_names", ci->synchronous_standby_names);
    if (db && ci->db_error[0])
        json_object_set_new(db, "error", json_string(ci->db_error));
    return json_pack("{s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:o}", "store", ci->store, "node", ci->node,
                     "facts_age_ms", fact_num(ci->facts_age_ms), "database", db ? db : json_null(),
                     "standbys", standbys, "standbys_total", fact_num(ci->standbys_total), "nodes",
                     nodes, "nodes_total", fact_num(ci->nodes_total));
}

/* A KMIP round trip (Query) with the manager's identity: the server speaks
 * KMIP and accepts us; a vmseal-kmsd node also says how its cluster is. */
static void kmip_probe(const kms_conn *c, const char *addr, int timeout_ms, json_t *s)
{
    const char *servers[] = {addr};
    vmseal_kmip_client_config kc = {
        .servers = servers, .n_servers = 1,
        .tls = {.cert_file = c->cert_file, .key_file = c->key_file, .ca_file = c->ca_file,
                .legacy_cbc_suites = 1},
        .connect_timeout_ms = timeout_ms, .io_timeout_ms = timeout_ms,
    };
    vmseal_kmip_client *k = NULL;
    vmseal_kmip_server_info info;
    int rc = vmseal_kmip_client_new(&kc, &k);
    if (rc >= 0)
        rc = vmseal_kmip_query(k, &info);
    if (rc >= 0) {
        vmseal_kmip_version v = vmseal_kmip_client_version(k);
        char ver[16];
        snprintf(ver, sizeof(ver), "%d.%d", (int)v.major, (int)v.minor);
        json_object_set_new(s, "kmip_ok", json_true());
        json_object_set_new(s, "kmip_version", json_string(ver));
        json_object_set_new(s, "vendor", json_string(info.vendor));
        if (info.cluster.present)
            json_object_set_new(s, "cluster", cluster_json(&info.cluster));
    } else {
        json_object_set_new(s, "kmip_ok", json_false());
        json_object_set_new(s, "state", json_string("KMIP failed"));
        json_object_set_new(s, "tls_ok", json_false());
        json_object_set_new(s, "last_error", json_string(vmseal_last_error()));
    }
    vmseal_kmip_client_free(k);
}

static json_t *server_status(const kms_conn *c, const char *addr, int timeout_ms)
{
    char host[256], err[512] = "";
    int port = 0;
    json_t *s = json_pack("{s:s}", "address", addr);
    if (vmseal_kmip_parse_server(addr, host, sizeof(host), &port) < 0) {
        json_object_set_new(s, "reachable", json_false());
        json_object_set_new(s, "last_error", json_string("bad address"));
        return s;
    }
    int rc = tcp_probe(host, port, timeout_ms, err, sizeof(err));
    json_object_set_new(s, "reachable", json_boolean(rc == 0));
    if (rc < 0) {
        json_object_set_new(s, "state", json_string("unreachable"));
        json_object_set_new(s, "tls_ok", json_false());
        json_object_set_new(s, "last_error", json_string(err));
        return s;
    }
    if (!c->ca_file) {
        json_object_set_new(s, "state", json_string("not trusted"));
        json_object_set_new(s, "tls_ok", json_false());
        json_object_set_new(s, "last_error",
                            json_string("the manager does not trust this KMS yet (vmseal kms trust)"));
        return s;
    }
    vmseal_tls_config tc = {.cert_file = c->cert_file, .key_file = c->key_file, .ca_file = c->ca_file,
                            .legacy_cbc_suites = 1};
    SSL_CTX *ctx = vmseal_tls_client_ctx_new(&tc);
    if (!ctx) {
        json_object_set_new(s, "state", json_string("error"));
        json_object_set_new(s, "tls_ok", json_false());
        json_object_set_new(s, "last_error", json_string(vmseal_last_error()));
        return s;
    }
    SSL *ssl = NULL;
    rc = vmseal_tls_connect(ctx, host, port, timeout_ms, NULL, &ssl);
    if (rc < 0) {
        json_object_set_new(s, "state", json_string("TLS failed"));
        json_object_set_new(s, "tls_ok", json_false());
        json_object_set_new(s, "last_error", json_string(vmseal_last_error()));
        SSL_CTX_free(ctx);
        return s;
    }
    X509 *peer = SSL_get1_peer_certificate(ssl);
    if (peer) {
        json_object_set_new(s, "kms_certificate", cert_info(peer));
        X509_free(peer);
    }
    json_object_set_new(s, "protocol", json_string(SSL_get_version(ssl)));
    /* With TLS 1.3 the server judges our certificate after the handshake:
     * wait briefly for a refusal alert. */
    unsigned char b;
    int r = vmseal_tls_read_full(ssl, &b, 1, 300);
    if (r < 0 && r != -ETIMEDOUT) {
        json_object_set_new(s, "state", json_string("client refused"));
        json_object_set_new(s, "tls_ok", json_false());
        json_object_set_new(s, "kms_trusts_manager", json_false());
        json_object_set_new(s, "last_error", json_string(vmseal_last_error()));
    } else if (r == 0) {
        json_object_set_new(s, "state", json_string("closed"));
        json_object_set_new(s, "tls_ok", json_false());
        json_object_set_new(s, "last_error", json_string("the server closed the connection at once"));
    } else {
        json_object_set_new(s, "state", json_string(c->cert_file ? "connected" : "no client certificate"));
        json_object_set_new(s, "tls_ok", json_true());
        json_object_set_new(s, "kms_trusts_manager", json_boolean(c->cert_file != NULL));
        if (!c->cert_file)
            json_object_set_new(s, "last_error",
                                json_string("the manager has no client certificate for this KMS "
                                            "(vmseal kms csr / kms client-cert)"));
    }
    vmseal_tls_close(ssl);
    SSL_CTX_free(ctx);
    if (json_is_true(json_object_get(s, "tls_ok")) && c->cert_file)
        kmip_probe(c, addr, timeout_ms, s);
    return s;
}

int kms_provider_status(manager *m, const char *name, json_t **out)
{
    kms_conn c;
    int rc = kms_provider_conn(m, name, &c);
    if (rc < 0)
        return rc;
    json_t *arr = json_array();
    int any = 0;
    for (size_t i = 0; i < c.n_servers; i++) {
        json_t *s = server_status(&c, c.servers[i], m->cfg->kms_timeout_ms);
        if (json_is_true(json_object_get(s, "tls_ok")) && c.cert_file)
            any = 1;
        json_array_append_new(arr, s);
    }
    json_t *cc = json_null();
    if (c.cert_file) {
        X509 *x = NULL;
        FILE *f = fopen(c.cert_file, "re");
        if (f) {
            x = PEM_read_X509(f, NULL, NULL, NULL);
            fclose(f);
        }
        if (x) {
            json_decref(cc);
            cc = cert_info(x);
            X509_free(x);
        }
    }
    *out = json_pack("{s:s,s:s,s:o,s:o,s:b}", "name", name, "state", any ? "connected" : "not connected",
                     "servers", arr, "client_certificate", cc, "kmip_client", keys_available());
    kms_conn_free(&c);
    return 0;
}

/* The certificates a server presents, unverified (for "Trust KMS"). */
int kms_provider_peer_cert(manager *m, const char *name, json_t **out)
{
    kms_conn c;
    int rc = kms_provider_conn(m, name, &c);
    if (rc < 0)
        return rc;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        kms_conn_free(&c);
        return vmseal_fail(ENOMEM, "out of memory");
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    rc = vmseal_fail(ENOENT, "no servers");
    for (size_t i = 0; i < c.n_servers; i++) {
        char host[256];
        int port;
        if (vmseal_kmip_parse_server(c.servers[i], host, sizeof(host), &port) < 0)
            continue;
        SSL *ssl = NULL;
        rc = vmseal_tls_connect(ctx, host, port, m->cfg->kms_timeout_ms, NULL, &ssl);
        if (rc < 0) {
            rc = vmseal_fail(EREMOTEIO, "%s", vmseal_last_error());   /* the KMS's failure: 502 */
            continue;
        }
        STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
        json_t *arr = json_array();
        for (int k = 0; chain && k < sk_X509_num(chain); k++) {
            X509 *x = sk_X509_value(chain, k);
            json_t *info = cert_info(x);
            char *pem = cert_to_pem(x);
            json_object_set_new(info, "pem", json_string(pem ? pem : ""));
            json_object_set_new(info, "self_signed",
                                json_boolean(X509_check_issued(x, x) == X509_V_OK));
            free(pem);
            json_array_append_new(arr, info);
        }
        *out = json_pack("{s:s,s:o}", "server", c.servers[i], "chain", arr);
        vmseal_tls_close(ssl);
        rc = 0;
        break;
    }
    SSL_CTX_free(ctx);
    kms_conn_free(&c);
    return rc;
}

int kms_provider_trust(manager *m, const char *actor, const char *name, const char *ca_pem)
{
    store_rows *r = NULL;
    int rc = load_provider(m, name, &r);
    if (rc < 0)
        return rc;
    json_t *old = pem_info(store_rows_get(r, 0, 2));
    store_rows_free(r);
    /* Every certificate in the bundle must parse and be a CA or self-signed. */
    BIO *b = BIO_new_mem_buf(ca_pem, -1);
    int n = 0;
    X509 *first = NULL;
    for (X509 *x; b && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL; n++) {
        int ok = X509_check_ca(x) > 0 || X509_check_issued(x, x) == X509_V_OK;
        if (!ok) {
            X509_free(x);
            X509_free(first);
            BIO_free(b);
            json_decref(old);
            return vmseal_fail(EINVAL, "certificate %d is neither a CA nor self-signed: upload the "
                               "KMS CA certificate instead", n + 1);
        }
        if (!first)
            first = x;
        else
            X509_free(x);
    }
    BIO_free(b);
    ERR_clear_error();
    if (n == 0) {
        json_decref(old);
        return vmseal_fail(EINVAL, "no PEM certificate found");
    }
    json_t *nv = cert_info(first);
    X509_free(first);
    char *path = provider_file(m, name, "ca.crt");
    char *dir = provider_dir(m, name);
    rc = path && dir ? ensure_dir(m->cfg->kms_dir) : -ENOMEM;
    if (rc >= 0)
        rc = ensure_dir(dir);
    if (rc >= 0)
        rc = write_file(path, ca_pem, strlen(ca_pem), 0644);
    if (rc >= 0)
        rc = store_execv(m->db, NULL, "UPDATE kms_providers SET ca_pem = $2 WHERE name = $1", name,
                         ca_pem, STORE_END);
    if (rc >= 0)
        event_add(m, actor, "kms.trust", name, old, nv);
    free(path);
    free(dir);
    json_decref(old);
    json_decref(nv);
    return rc < 0 ? rc : 0;
}

/* A key pair and CSR for the manager's KMIP client identity at this KMS. */
int kms_provider_csr(manager *m, const char *actor, const char *name, const char *cn, char **csr_pem)
{
    *csr_pem = NULL;
    store_rows *r = NULL;
    int rc = load_provider(m, name, &r);
    if (rc < 0)
        return rc;
    store_rows_free(r);
    EVP_PKEY *key = EVP_RSA_gen(2048);   /* broadest KMS compatibility */
    X509_REQ *req = X509_REQ_new();
    X509_NAME *nm = X509_NAME_new();
    rc = vmseal_fail(EIO, "cannot make a certificate request");
    if (!key || !req || !nm)
        goto out;
    if (!X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) ||
        !X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_UTF8, (const unsigned char *)"vmseal", -1, -1, 0) ||
        !X509_REQ_set_subject_name(req, nm) || !X509_REQ_set_pubkey(req, key))
        goto out;
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    X509_EXTENSION *eku = X509V3_EXT_conf_nid(NULL, NULL, NID_ext_key_usage, "clientAuth");
    if (exts && eku)
        sk_X509_EXTENSION_push(exts, eku);
    else
        X509_EXTENSION_free(eku);
    if (exts)
        X509_REQ_add_extensions(req, exts);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    if (!X509_REQ_sign(req, key, EVP_sha256()))
        goto out;
    char *dir = provider_dir(m, name);
    char *kpath = provider_file(m, name, "client.key");
    char *tmp = kpath ? malloc(strlen(kpath) + 5) : NULL;
    if (!dir || !kpath || !tmp) {
        free(dir);
        free(kpath);
        free(tmp);
        rc = vmseal_fail(ENOMEM, "out of memory");
        goto out;
    }
    sprintf(tmp, "%s.new", kpath);
    rc = ensure_dir(m->cfg->kms_dir);
    if (rc >= 0)
        rc = ensure_dir(dir);
    if (rc >= 0) {
        /* The key under a new name until its certificate arrives, so that a
         * working client key is not lost by asking for a CSR. */
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (!f || PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) != 1)
            rc = vmseal_fail(EIO, "cannot write %s", tmp);
        if (f)
            fclose(f);
        else if (fd >= 0)
            close(fd);
    }
    BIO *b = BIO_new(BIO_s_mem());
    if (rc >= 0 && b && PEM_write_bio_X509_REQ(b, req) == 1) {
        char *data;
        long n = BIO_get_mem_data(b, &data);
        *csr_pem = strndup(data, (size_t)n);
    }
    BIO_free(b);
    if (rc >= 0 && !*csr_pem)
        rc = vmseal_fail(EIO, "cannot encode the certificate request");
    if (rc >= 0)
        rc = store_execv(m->db, NULL, "UPDATE kms_providers SET csr_pem = $2 WHERE name = $1", name,
                         *csr_pem, STORE_END);
    if (rc >= 0) {
        json_t *nv = json_pack("{s:s}", "csr_subject_cn", cn);
        event_add(m, actor, "kms.csr", name, NULL, nv);
        json_decref(nv);
    } else {
        free(*csr_pem);
        *csr_pem = NULL;
    }
    free(dir);
    free(kpath);
    free(tmp);
out:
    X509_NAME_free(nm);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return rc < 0 ? rc : 0;
}

int kms_provider_client_cert(manager *m, const char *actor, const char *name, const char *cert_pem,
                             const char *key_pem)
{
    store_rows *r = NULL;
    int rc = load_provider(m, name, &r);
    if (rc < 0)
        return rc;
    json_t *old = pem_info(store_rows_get(r, 0, 3));
    store_rows_free(r);
    X509 *cert = pem_cert(cert_pem);
    EVP_PKEY *key = NULL;
    char *kpath = provider_file(m, name, "client.key");
    char *newkey = kpath ? malloc(strlen(kpath) + 5) : NULL;
    char *cpath = provider_file(m, name, "client.crt");
    char *dir = provider_dir(m, name);
    json_t *nv = NULL;
    if (!kpath || !newkey || !cpath || !dir) {
        rc = vmseal_fail(ENOMEM, "out of memory");
        goto out;
    }
    sprintf(newkey, "%s.new", kpath);
    if (!cert) {
        rc = vmseal_fail(EINVAL, "cert_pem is not a PEM certificate");
        goto out;
    }
    const char *keysrc;
    if (key_pem) {
        BIO *b = BIO_new_mem_buf(key_pem, -1);
        key = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
        keysrc = "uploaded";
    } else {
        /* The key made with the CSR (or the one in use, for a renewal). */
        FILE *f = fopen(newkey, "re");
        keysrc = newkey;
        if (!f) {
            f = fopen(kpath, "re");
            keysrc = kpath;
        }
        if (f) {
            key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
            fclose(f);
        }
    }
    ERR_clear_error();
    if (!key) {
        rc = vmseal_fail(EINVAL, key_pem ? "key_pem is not a PEM private key"
                                         : "no private key: ask for a CSR first (kms csr) or "
                                           "upload the key with the certificate");
        goto out;
    }
    if (X509_check_private_key(cert, key) != 1) {
        ERR_clear_error();
        rc = vmseal_fail(EINVAL, "the certificate does not match the %s private key",
                         key_pem ? "uploaded" : "manager's");
        goto out;
    }
    rc = ensure_dir(m->cfg->kms_dir);
    if (rc >= 0)
        rc = ensure_dir(dir);
    if (rc >= 0 && key_pem)
        rc = write_file(kpath, key_pem, strlen(key_pem), 0600);
    else if (rc >= 0 && keysrc == newkey && rename(newkey, kpath) != 0)
        rc = vmseal_fail(errno, "cannot install %s: %s", kpath, strerror(errno));
    if (rc >= 0)
        rc = write_file(cpath, cert_pem, strlen(cert_pem), 0644);
    if (rc >= 0)
        rc = store_execv(m->db, NULL,
                         "UPDATE kms_providers SET client_cert_pem = $2, client_key_file = $3, "
                         "csr_pem = NULL WHERE name = $1",
                         name, cert_pem, kpath, STORE_END);
    if (rc >= 0) {
        nv = cert_info(cert);
        event_add(m, actor, "kms.client-cert", name, old, nv);
    }
out:
    json_decref(old);
    json_decref(nv);
    X509_free(cert);
    EVP_PKEY_free(key);
    free(kpath);
    free(newkey);
    free(cpath);
    free(dir);
    return rc < 0 ? rc : 0;
}
