/* vmseal-managerd — configuration file managerd.conf (key = value lines,
 * '#' comments). Relative paths are resolved against the file's folder. */
#ifndef VMSEAL_MANAGERD_CONFIG_H
#define VMSEAL_MANAGERD_CONFIG_H

typedef struct mgr_config {
    char *path;             /* the configuration file */
    char *dir;              /* its folder */
    char *listen_address;   /* default 127.0.0.1 */
    int port;               /* default 8443 */
    char *database;         /* SQLite file, or postgresql://... conninfo */
    char *cert_file;        /* manager certificate (serverAuth + clientAuth) */
    char *key_file;
    char *ca_file;          /* the manager CA: host certificates must chain to it */
    char *ca_key_file;      /* for `issue-host` (optional) */
    char *host_ca_file;     /* CA host *server* certificates chain to (default ca_file) */
    char *kms_dir;          /* per-provider KMIP client keys (0700) */
    int token_ttl_s;        /* session lifetime, default 28800 */
    int task_poll_ms;       /* how often running host tasks are polled, default 500 */
    int task_retries;       /* a failing step of a task is tried this often, default 5 */
    int task_retry_delay_ms;/* first wait before trying again (doubles, at most 60 s), 2000 */
    int reconcile_interval_s; /* how often every host's VMs are compared, default 30 */
    int kms_timeout_ms;     /* KMIP connect/IO timeout, default 5000 */
    int kek_destroy_grace_s;    /* unused KEKs are destroyed after this long, default 7 days */
    int kek_cleanup_interval_s; /* how often the clean-up runs, default 300 */
    int host_timeout_ms;    /* host agent call timeout, default 30000 */
    char *syslog_target;    /* tcp://HOST:PORT or tls://HOST:PORT; NULL = no forwarding */
    char *syslog_ca;        /* CA the collector's TLS certificate must chain to */
    char *syslog_cert;      /* optional client certificate and key for the collector */
    char *syslog_key;
    char *syslog_hostname;  /* HOSTNAME in the messages (default gethostname()) */
    int syslog_retry_max_s; /* longest wait between tries, default 30 */
    int allow_unlocked_memory; /* run (loudly) when secrets cannot be mlock'd; default 0 */
    int log_level;          /* diagnostic log: VMSEAL_LOG_ERROR..DEBUG, default info */
    unsigned log_outputs;   /* VMSEAL_LOG_STDERR and/or VMSEAL_LOG_SYSLOG, default stderr */
} mgr_config;

/* Load a configuration file, or a folder holding managerd.conf. */
int mgr_config_load(const char *path, mgr_config **out);
void mgr_config_free(mgr_config *c);

#endif
