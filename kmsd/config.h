/* vmseal-kmsd — configuration file (key = value lines, '#' comments).
 * Relative paths are resolved against the configuration file's folder. */
#ifndef KMSD_CONFIG_H
#define KMSD_CONFIG_H

#include <stddef.h>

#define KMSD_MAX_ADMINS 32
#define KMSD_MAX_USERS 64

enum { KMSD_STORE_SQLITE = 0, KMSD_STORE_POSTGRESQL = 1 };

typedef struct kmsd_user {
    char *name;
    char *hash;   /* "pbkdf2-sha256$ITER$SALTHEX$HASHHEX" */
} kmsd_user;

typedef struct kmsd_config {
    char *path;              /* the configuration file itself */
    char *dir;               /* its folder */
    char *listen_address;    /* "0.0.0.0" */
    int port;                /* 5696 */
    char *cert_file, *key_file, *ca_file;
    int require_client_eku;  /* default 1 */
    int store;               /* KMSD_STORE_SQLITE (default) or KMSD_STORE_POSTGRESQL */
    char *database;          /* kmsd.db (SQLite) */
    char *journal_mode;      /* "wal" (default) or "delete" */
    char *conninfo_file;     /* PostgreSQL: libpq connection string, 0600 file */
    char *node_name;         /* this node in a cluster (default: the host name) */
    char *pg_synchronous_commit; /* "on" (default), "remote_apply", "remote_write", "local" */
    int pg_timeout_ms;       /* bound on each database statement, default 5000 */
    int pg_connect_timeout;  /* seconds per database host, default 2 */
    char *master_key_file;   /* file backend */
    char *pkcs11_module;     /* PKCS#11 backend (module path) */
    char *pkcs11_token;      /* token label */
    char *pkcs11_pin_file;   /* user PIN, 0600 file */
    char *pkcs11_key_label;  /* AES key object label, default "vmseal-kmsd-master" */
    char *ca_key_file;       /* for enroll (kept beside the CA) */
    char *audit_log;         /* audit lines; "-" or empty = stderr */
    char *log_file;          /* diagnostics also to this file */
    int log_level;           /* 0 error .. 3 debug */
    unsigned log_outputs;    /* VMSEAL_LOG_STDERR and/or VMSEAL_LOG_SYSLOG (default stderr) */
    char *run_as_user;       /* drop privileges to this user after binding */
    int max_connections;     /* default 1024 */
    int handshake_timeout_ms;/* default 10000 */
    int idle_timeout_ms;     /* default 300000 */
    int max_handshakes;      /* connections in the TLS handshake, default 256 */
    int max_handshakes_per_address; /* of them from one source address, default 16 */
    size_t max_message_size; /* default 1 MiB */
    int require_credential;  /* every request must carry a valid username/password */
    /* secure (locked) memory: see docs/kmsd.md, "Locked memory" */
    int allow_unlocked_memory;      /* default 0: locked memory or nothing */
    size_t max_locked_memory;       /* all secrets of the server, default 64 MiB */
    size_t max_connection_locked_memory; /* one connection, default 4 MiB */
    size_t max_connection_secrets;  /* secure buffers one connection holds, default 256 */
    int max_batch_items;            /* batch items in one request, default 64 */
    char *admins[KMSD_MAX_ADMINS];
    size_t n_admins;
    kmsd_user users[KMSD_MAX_USERS];
    size_t n_users;
} kmsd_config;

/* Node names: 1-63 of [A-Za-z0-9._-]. */
#define KMSD_NODE_NAME_MAX 63
int kmsd_node_name_ok(const char *name);

/* Load a configuration file (or a folder holding kmsd.conf). */
int kmsd_config_load(const char *path, kmsd_config **out);
void kmsd_config_free(kmsd_config *cfg);

/* Whether identity (certificate subject) is listed as an admin. */
int kmsd_config_is_admin(const kmsd_config *cfg, const char *identity);

/* Check a username/password against the configured users (constant time
 * in the hash comparison). 0 when valid, -EACCES otherwise. */
int kmsd_config_check_password(const kmsd_config *cfg, const char *user, const char *pw,
                               size_t pwlen);

/* Make a "pbkdf2-sha256$..." hash line for a password. out >= 256 bytes. */
int kmsd_password_hash(const char *pw, size_t pwlen, char *out, size_t outlen);

#endif
