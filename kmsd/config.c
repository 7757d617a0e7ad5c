/* Configuration file parsing, admin list, KMIP username/password check. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <vmseal/common.h>
#include <vmseal/conffile.h>
#include <vmseal/log.h>

#include "config.h"

#define PBKDF2_ITER 200000

/* Relative paths are taken from the directory of kmsd.conf; "" stays "". */
static char *resolve(const kmsd_config *cfg, const char *v)
{
    return *v ? vmseal_conffile_resolve(cfg->dir, v) : strdup("");
}

static int parse_bool(const char *v, int *out)
{
    if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "1") || !strcmp(v, "on"))
        *out = 1;
    else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "0") || !strcmp(v, "off"))
        *out = 0;
    else
        return -1;
    return 0;
}

/* Bytes, with an optional binary suffix: 4096, 64K, 4M, 1G (also KiB/MiB/GiB). */
static int parse_size(const char *v, unsigned long long lo, unsigned long long hi, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (end == v || errno || *v == '-' || *v == '+')
        return -1;
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k')
        shift = 10;
    else if (*end == 'M')
        shift = 20;
    else if (*end == 'G')
        shift = 30;
    if (shift) {
        end++;
        if (!strcmp(end, "iB") || !strcmp(end, "B"))
            end += strlen(end);
    }
    if (*end || n > (hi >> shift))
        return -1;
    n <<= shift;
    if (n < lo || n > hi)
        return -1;
    *out = (size_t)n;
    return 0;
}

/* A node name: 1-63 letters, digits, - _ . (it is written into audit lines). */
int kmsd_node_name_ok(const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n > KMSD_NODE_NAME_MAX)
        return 0;
    for (const char *p = v; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
            return 0;
    return 1;
}

static void set_str(char **slot, char *v)
{
    free(*slot);
    *slot = v;
}

static int set_defaults(kmsd_config *c)
{
    c->listen_address = strdup("0.0.0.0");
    c->port = 5696;
    c->require_client_eku = 1;
    c->journal_mode = strdup("wal");
    c->pkcs11_key_label = strdup("vmseal-kmsd-master");
    c->log_level = VMSEAL_LOG_INFO;
    c->log_outputs = VMSEAL_LOG_STDERR;
    c->max_connections = 1024;
    c->handshake_timeout_ms = 10000;
    c->idle_timeout_ms = 300000;
    c->max_handshakes = 256;
    c->max_handshakes_per_address = 16;
    c->max_message_size = 1u << 20;
    c->max_locked_memory = 64u << 20;
    c->max_connection_locked_memory = 4u << 20;
    c->max_connection_secrets = 256;
    c->max_batch_items = 64;
    c->database = resolve(c, "kmsd.db");
    c->pg_synchronous_commit = strdup("on");
    c->pg_timeout_ms = 5000;
    c->pg_connect_timeout = 2;
    char host[256] = "";
    if (gethostname(host, sizeof(host) - 1) < 0 || !host[0])
        snprintf(host, sizeof(host), "kmsd");
    host[KMSD_NODE_NAME_MAX] = '\0';
    c->node_name = strdup(host);
    if (!c->listen_address || !c->journal_mode || !c->pkcs11_key_label || !c->database ||
        !c->pg_synchronous_commit || !c->node_name)
        return -ENOMEM;
    return 0;
}

int kmsd_config_load(const char *path, kmsd_config **out)
{
    *out = NULL;
    char *file = vmseal_conffile_path(path, "kmsd.conf");
    if (!file)
        return -ENOMEM;
    vmseal_conffile *cf = NULL;
    int rc = vmseal_conffile_open(file, &cf);
    if (rc < 0) {
        int e = -rc;
        vmseal_fail(e, "cannot open configuration %s: %s", file, strerror(e));
        free(file);
        return -e;
    }
    kmsd_config *c = calloc(1, sizeof(*c));
    if (!c) {
        vmseal_conffile_close(cf);
        free(file);
        return -ENOMEM;
    }
    char real[PATH_MAX];
    c->path = strdup(realpath(file, real) ? real : file);
    c->dir = c->path ? vmseal_conffile_dir(c->path) : NULL;
    if (!c->path || !c->dir || set_defaults(c) < 0) {
        vmseal_conffile_close(cf);
        kmsd_config_free(c);
        free(file);
        return -ENOMEM;
    }

    char *k, *v;
    while ((rc = vmseal_conffile_next(cf, &k, &v)) > 0) {
        int lineno = vmseal_conffile_line(cf);
        long n;
        int b;
        if (!strcmp(k, "listen_address"))
            set_str(&c->listen_address, strdup(v));
        else if (!strcmp(k, "port")) {
            if (vmseal_conffile_int(v, 0, 65535, &n) < 0)
                goto bad;
            c->port = (int)n;
        } else if (!strcmp(k, "cert"))
            set_str(&c->cert_file, resolve(c, v));
        else if (!strcmp(k, "key"))
            set_str(&c->key_file, resolve(c, v));
        else if (!strcmp(k, "ca"))
            set_str(&c->ca_file, resolve(c, v));
        else if (!strcmp(k, "ca_key"))
            set_str(&c->ca_key_file, resolve(c, v));
        else if (!strcmp(k, "require_client_eku")) {
            if (parse_bool(v, &b) < 0)
                goto bad;
            c->require_client_eku = b;
        } else if (!strcmp(k, "store")) {
            if (!strcmp(v, "sqlite"))
                c->store = KMSD_STORE_SQLITE;
            else if (!strcmp(v, "postgresql"))
                c->store = KMSD_STORE_POSTGRESQL;
            else
                goto bad;
        } else if (!strcmp(k, "database"))
            set_str(&c->database, resolve(c, v));
        else if (!strcmp(k, "database_conninfo_file"))
            set_str(&c->conninfo_file, resolve(c, v));
        else if (!strcmp(k, "node_name")) {
            if (!kmsd_node_name_ok(v))
                goto bad;
            set_str(&c->node_name, strdup(v));
        } else if (!strcmp(k, "pg_synchronous_commit")) {
            if (strcmp(v, "on") && strcmp(v, "remote_apply") && strcmp(v, "remote_write") &&
                strcmp(v, "local"))
                goto bad; /* "off" would answer Creates that a crash can lose */
            set_str(&c->pg_synchronous_commit, strdup(v));
        } else if (!strcmp(k, "pg_timeout_ms")) {
            if (vmseal_conffile_int(v, 100, 600000, &n) < 0)
                goto bad;
            c->pg_timeout_ms = (int)n;
        } else if (!strcmp(k, "pg_connect_timeout")) {
            if (vmseal_conffile_int(v, 2, 600, &n) < 0)
                goto bad;
            c->pg_connect_timeout = (int)n;
        }
        else if (!strcmp(k, "journal_mode")) {
            if (strcmp(v, "wal") && strcmp(v, "delete"))
                goto bad;
            set_str(&c->journal_mode, strdup(v));
        } else if (!strcmp(k, "master_key_file"))
            set_str(&c->master_key_file, resolve(c, v));
        else if (!strcmp(k, "pkcs11_module"))
            set_str(&c->pkcs11_module, strdup(v));
        else if (!strcmp(k, "pkcs11_token"))
            set_str(&c->pkcs11_token, strdup(v));
        else if (!strcmp(k, "pkcs11_pin_file"))
            set_str(&c->pkcs11_pin_file, resolve(c, v));
        else if (!strcmp(k, "pkcs11_key_label"))
            set_str(&c->pkcs11_key_label, strdup(v));
        else if (!strcmp(k, "audit_log"))
            set_str(&c->audit_log, (!strcmp(v, "-") || !*v) ? strdup("") : resolve(c, v));
        else if (!strcmp(k, "log_file"))
            set_str(&c->log_file, resolve(c, v));
        else if (!strcmp(k, "log_level")) {
            vmseal_log_level l;
            if (vmseal_log_level_parse(v, &l) < 0)
                goto bad;
            c->log_level = (int)l;
        } else if (!strcmp(k, "log_output")) {
            if (vmseal_log_outputs_parse(v, &c->log_outputs) < 0)
                goto bad;
        } else if (!strcmp(k, "run_as_user"))
            set_str(&c->run_as_user, strdup(v));
        else if (!strcmp(k, "max_connections")) {
            if (vmseal_conffile_int(v, 1, 100000, &n) < 0)
                goto bad;
            c->max_connections = (int)n;
        } else if (!strcmp(k, "handshake_timeout_ms")) {
            if (vmseal_conffile_int(v, 100, 600000, &n) < 0)
                goto bad;
            c->handshake_timeout_ms = (int)n;
        } else if (!strcmp(k, "idle_timeout_ms")) {
            if (vmseal_conffile_int(v, 100, 86400000, &n) < 0)
                goto bad;
            c->idle_timeout_ms = (int)n;
        } else if (!strcmp(k, "max_handshakes")) {
            if (vmseal_conffile_int(v, 1, 100000, &n) < 0)
                goto bad;
            c->max_handshakes = (int)n;
        } else if (!strcmp(k, "max_handshakes_per_address")) {
            if (vmseal_conffile_int(v, 1, 100000, &n) < 0)
                goto bad;
            c->max_handshakes_per_address = (int)n;
        } else if (!strcmp(k, "max_message_size")) {
            if (vmseal_conffile_int(v, 1024, 64L << 20, &n) < 0)
                goto bad;
            c->max_message_size = (size_t)n;
        } else if (!strcmp(k, "allow_unlocked_memory")) {
            if (parse_bool(v, &b) < 0)
                goto bad;
            c->allow_unlocked_memory = b;
        } else if (!strcmp(k, "max_locked_memory")) {
            if (parse_size(v, 1u << 20, 1ull << 40, &c->max_locked_memory) < 0)
                goto bad;
        } else if (!strcmp(k, "max_connection_locked_memory")) {
            if (parse_size(v, 64u << 10, 1ull << 40, &c->max_connection_locked_memory) < 0)
                goto bad;
        } else if (!strcmp(k, "max_connection_secrets")) {
            if (vmseal_conffile_int(v, 8, 1000000, &n) < 0)
                goto bad;
            c->max_connection_secrets = (size_t)n;
        } else if (!strcmp(k, "max_batch_items")) {
            if (vmseal_conffile_int(v, 1, 100000, &n) < 0)
                goto bad;
            c->max_batch_items = (int)n;
        } else if (!strcmp(k, "require_credential")) {
            if (parse_bool(v, &b) < 0)
                goto bad;
            c->require_credential = b;
        } else if (!strcmp(k, "admin")) {
            if (c->n_admins >= KMSD_MAX_ADMINS) {
                rc = vmseal_fail(EINVAL, "%s:%d: too many admins", file, lineno);
                break;
            }
            c->admins[c->n_admins++] = strdup(v);
        } else if (!strcmp(k, "user")) {
            /* user = NAME pbkdf2-sha256$... */
            char *sp = v;
            while (*sp && !isspace((unsigned char)*sp))
                sp++;
            if (!*sp || c->n_users >= KMSD_MAX_USERS)
                goto bad;
            *sp++ = '\0';
            char *h = vmseal_conffile_trim(sp);
            if (strncmp(h, "pbkdf2-sha256$", 14) != 0)
                goto bad;
            c->users[c->n_users].name = strdup(v);
            c->users[c->n_users].hash = strdup(h);
            c->n_users++;
        } else {
            rc = vmseal_fail(EINVAL, "%s:%d: unknown key \"%s\"", file, lineno, k);
            break;
        }
        continue;
bad:
        rc = vmseal_fail(EINVAL, "%s:%d: bad value for %s", file, lineno, k);
        break;
    }
    vmseal_conffile_close(cf);
    if (rc == 0 && (!c->cert_file || !c->key_file || !c->ca_file))
        rc = vmseal_fail(EINVAL, "%s: cert, key and ca are required", file);
    if (rc == 0 && !c->master_key_file && !c->pkcs11_module)
        rc = vmseal_fail(EINVAL, "%s: master_key_file or pkcs11_module is required", file);
    if (rc == 0 && c->master_key_file && c->pkcs11_module)
        rc = vmseal_fail(EINVAL, "%s: master_key_file and pkcs11_module exclude each other", file);
    /* one connection must be able to hold its largest message plus the
     * secrets of the answer, and the server at least one connection */
    if (rc == 0 && c->max_connection_locked_memory < c->max_message_size + (256u << 10))
        rc = vmseal_fail(EINVAL, "%s: max_connection_locked_memory (%zu) must be at least "
                         "max_message_size + 256 KiB (%zu)", file, c->max_connection_locked_memory,
                         c->max_message_size + (256u << 10));
    if (rc == 0 && c->max_locked_memory < c->max_connection_locked_memory)
        rc = vmseal_fail(EINVAL, "%s: max_locked_memory (%zu) is below "
                         "max_connection_locked_memory (%zu)", file, c->max_locked_memory,
                         c->max_connection_locked_memory);
    if (rc == 0 && c->store == KMSD_STORE_POSTGRESQL && (!c->conninfo_file || !*c->conninfo_file))
        rc = vmseal_fail(EINVAL, "%s: store = postgresql needs database_conninfo_file", file);
    if (rc == 0 && c->pkcs11_module && (!c->pkcs11_token || !c->pkcs11_pin_file))
        rc = vmseal_fail(EINVAL, "%s: pkcs11_module needs pkcs11_token and pkcs11_pin_file", file);
    free(file);
    if (rc < 0) {
        kmsd_config_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void kmsd_config_free(kmsd_config *c)
{
    if (!c)
        return;
    char **strs[] = {&c->path, &c->dir, &c->listen_address, &c->cert_file, &c->key_file,
                     &c->ca_file, &c->database, &c->journal_mode, &c->master_key_file,
                     &c->pkcs11_module, &c->pkcs11_token, &c->pkcs11_pin_file,
                     &c->pkcs11_key_label, &c->ca_key_file, &c->audit_log, &c->log_file,
                     &c->run_as_user, &c->conninfo_file, &c->node_name,
                     &c->pg_synchronous_commit};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        free(*strs[i]);
    for (size_t i = 0; i < c->n_admins; i++)
        free(c->admins[i]);
    for (size_t i = 0; i < c->n_users; i++) {
        free(c->users[i].name);
        free(c->users[i].hash);
    }
    free(c);
}

int kmsd_config_is_admin(const kmsd_config *cfg, const char *identity)
{
    for (size_t i = 0; i < cfg->n_admins; i++)
        if (cfg->admins[i] && !strcmp(cfg->admins[i], identity))
            return 1;
    return 0;
}

/* ---- passwords ----------------------------------------------------------- */

int kmsd_password_hash(const char *pw, size_t pwlen, char *out, size_t outlen)
{
    unsigned char salt[16], dk[32];
    if (RAND_bytes(salt, sizeof(salt)) != 1)
        return vmseal_fail(EIO, "no randomness");
    if (PKCS5_PBKDF2_HMAC(pw, (int)pwlen, salt, sizeof(salt), PBKDF2_ITER, EVP_sha256(),
                          sizeof(dk), dk) != 1)
        return vmseal_fail(EIO, "PBKDF2 failed");
    char sh[33], dh[65];
    vmseal_hex_encode(salt, sizeof(salt), sh);
    vmseal_hex_encode(dk, sizeof(dk), dh);
    OPENSSL_cleanse(dk, sizeof(dk));
    int n = snprintf(out, outlen, "pbkdf2-sha256$%d$%s$%s", PBKDF2_ITER, sh, dh);
    return (n > 0 && (size_t)n < outlen) ? 0 : vmseal_fail(ENOSPC, "hash buffer too small");
}

/* Verified passwords are remembered as SHA-256(salt || password) so that a
 * client sending its credential on every request costs one PBKDF2 only. */
static pthread_mutex_t pw_cache_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned char pw_cache[KMSD_MAX_USERS][32];
static int pw_cache_valid[KMSD_MAX_USERS];

int kmsd_config_check_password(const kmsd_config *cfg, const char *user, const char *pw,
                               size_t pwlen)
{
    for (size_t i = 0; i < cfg->n_users; i++) {
        if (strcmp(cfg->users[i].name, user) != 0)
            continue;
        const char *h = cfg->users[i].hash + 14;
        char *end;
        long iter = strtol(h, &end, 10);
        if (*end != '$' || iter < 1000 || iter > 10000000)
            return -EACCES;
        const char *salthex = end + 1;
        const char *d = strchr(salthex, '$');
        if (!d || d - salthex != 32 || strlen(d + 1) != 64)
            return -EACCES;
        unsigned char salt[16], want[32], got[32], quick[32];
        if (vmseal_hex_decode(salthex, 32, salt, 16) < 0 || vmseal_hex_decode(d + 1, 64, want, 32) < 0)
            return -EACCES;
        EVP_MD_CTX *m = EVP_MD_CTX_new();
        unsigned int ql = 0;
        int ok = m && EVP_DigestInit_ex(m, EVP_sha256(), NULL) &&
                 EVP_DigestUpdate(m, salt, sizeof(salt)) && EVP_DigestUpdate(m, pw, pwlen) &&
                 EVP_DigestFinal_ex(m, quick, &ql);
        EVP_MD_CTX_free(m);
        if (!ok)
            return -EACCES;
        pthread_mutex_lock(&pw_cache_lock);
        int hit = pw_cache_valid[i] && vmseal_memcmp_ct(pw_cache[i], quick, 32) == 0;
        pthread_mutex_unlock(&pw_cache_lock);
        if (hit)
            return 0;
        if (PKCS5_PBKDF2_HMAC(pw, (int)pwlen, salt, sizeof(salt), (int)iter, EVP_sha256(),
                              sizeof(got), got) != 1)
            return -EACCES;
        int match = vmseal_memcmp_ct(got, want, 32) == 0;
        OPENSSL_cleanse(got, sizeof(got));
        if (!match)
            return -EACCES;
        pthread_mutex_lock(&pw_cache_lock);
        memcpy(pw_cache[i], quick, 32);
        pw_cache_valid[i] = 1;
        pthread_mutex_unlock(&pw_cache_lock);
        return 0;
    }
    return -EACCES;
}
