/* vmseal-managerd — the manager (the vCenter role): REST API over HTTPS,
 * users and privileges, events, key providers, hosts, VMs and their
 * encryption policy. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <vmseal/common.h>
#include <vmseal/log.h>
#include <vmseal/secret.h>

#include "api.h"
#include "syslog_fwd.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vmseal-managerd [-c CONFIG] [COMMAND [ARGS]]\n"
            "\n"
            "  serve [--listen ADDR] [--port N] [--port-file FILE]\n"
            "        run the manager (the default command)\n"
            "  init DIR [--host NAME]... [--ca-cert FILE --ca-key FILE]\n"
            "       [--database FILE|postgresql://...] [--listen ADDR] [--port N] [--admin NAME]\n"
            "        new setup in DIR: CA, manager certificate, managerd.conf, database,\n"
            "        an Administrator user whose password is written to DIR/admin-password\n"
            "  issue-host NAME [--out DIR] [--host NAME|IP]...\n"
            "        certificate for host agent NAME (CN=NAME), signed by the manager CA\n"
            "  passwd USER --password-file FILE\n"
            "        set a user's password offline (e.g. a lost Administrator password)\n"
            "  events-verify\n"
            "        check the event log's hash chain in the database (exit 1 names the\n"
            "        first edited, deleted or reordered record)\n"
            "  api-table\n"
            "        print the privilege catalogue and which privilege each API operation\n"
            "        and CLI verb needs, as JSON\n"
            "\n"
            "CONFIG defaults to $VMSEAL_MANAGERD_CONFIG, then ./managerd.conf; it may name\n"
            "the folder that holds managerd.conf.\n");
}

static void access_log(void *arg, const char *method, const char *path, int status,
                       const char *peer, const char *remote)
{
    (void)arg;
    if (status == 0)
        vmseal_log(VMSEAL_LOG_WARNING, "TLS handshake from %s failed: %s", remote, path);
    else
        mgr_log("%s %s %s -> %d%s%s", remote, method, path, status, *peer ? " cert " : "", peer);
}

/* Secure memory the manager needs at once: a KMIP answer (up to 1 MiB, read
 * into a secret) and the KEKs passing through on their way to hosts. */
#define MGR_LOCKED_NEED (2u << 20)

static void on_unlocked_secret(size_t bytes, int err)
{
    unsigned long n = vmseal_secret_unlocked_count();
    for (unsigned long p = 1; p <= n && p <= ULONG_MAX / 10; p *= 10)
        if (p == n) {
            vmseal_log(VMSEAL_LOG_WARNING, "WARNING: %zu bytes of key material in UNLOCKED memory "
                       "(mlock: %s; %lu time(s) so far): allow_unlocked_memory = yes", bytes,
                       strerror(err), n);
            break;
        }
}

/* Locked memory or nothing: refuse to start when secrets cannot be locked,
 * unless allow_unlocked_memory = yes (then say so loudly). */
static int check_locked_memory(const mgr_config *cfg)
{
    vmseal_secret_allow_unlocked(cfg->allow_unlocked_memory);
    if (cfg->allow_unlocked_memory) {
        vmseal_secret_set_unlocked_hook(on_unlocked_secret);
        vmseal_log(VMSEAL_LOG_WARNING, "WARNING: allow_unlocked_memory = yes: when memory cannot "
                   "be locked, key material is kept in memory that may be swapped to disk");
    }
    if (vmseal_secret_check_lockable(MGR_LOCKED_NEED) == 0)
        return 0;
    if (!cfg->allow_unlocked_memory)
        return vmseal_fail(ENOMEM, "%s; or set allow_unlocked_memory = yes in %s (key material "
                           "may then be swapped to disk)", vmseal_last_error(), cfg->path);
    vmseal_log(VMSEAL_LOG_WARNING, "WARNING: %s; starting anyway because allow_unlocked_memory = "
               "yes: KEY MATERIAL MAY BE SWAPPED TO DISK", vmseal_last_error());
    return 0;
}

static int cmd_serve(const char *cfgpath, int argc, char **argv)
{
    const char *listen = NULL, *port_file = NULL;
    int port = -1;
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"port", required_argument, NULL, 'p'},
        {"port-file", required_argument, NULL, 'f'},
        {0, 0, 0, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'l': listen = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'f': port_file = optarg; break;
        default: usage(stderr); return 2;
        }
    }
    if (vmseal_harden_process() < 0)
        vmseal_log(VMSEAL_LOG_WARNING, "%s", vmseal_last_error());
    vmseal_json_wipe_on_free();
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);   /* threads inherit the mask */

    manager m = {0};
    pthread_mutex_init(&m.lock, NULL);
    if (keys_pool_init(&m) < 0) {
        fprintf(stderr, "vmseal-managerd: %s\n", vmseal_last_error());
        return 1;
    }
    pthread_cond_init(&m.changed, NULL);
    int rc = mgr_config_load(cfgpath, &m.cfg);
    if (rc < 0) {
        vmseal_log(VMSEAL_LOG_ERROR, "%s", vmseal_last_error());
        return 1;
    }
    vmseal_log_config lc = {.program = "vmseal-managerd",
                            .level = (vmseal_log_level)m.cfg->log_level,
                            .outputs = m.cfg->log_outputs};
    if (vmseal_log_open(&lc) < 0) {
        vmseal_log(VMSEAL_LOG_ERROR, "%s", vmseal_last_error());
        mgr_config_free(m.cfg);
        return 1;
    }
    if (check_locked_memory(m.cfg) < 0) {
        vmseal_log(VMSEAL_LOG_ERROR, "%s", vmseal_last_error());
        mgr_config_free(m.cfg);
        return 1;
    }
    mgr_crash_init();
    rc = store_open(m.cfg->database, &m.db);
    if (rc >= 0)
        rc = auth_seed_roles(m.db);
    if (rc >= 0)
        rc = events_chain_legacy(&m);
    if (rc < 0) {
        vmseal_log(VMSEAL_LOG_ERROR, "%s", vmseal_last_error());
        mgr_config_free(m.cfg);
        return 1;
    }
    syslog_fwd *fwd = NULL;   /* events to the syslog collector, if configured */
    if (syslog_fwd_start(&m, &fwd) < 0) {
        vmseal_log(VMSEAL_LOG_ERROR, "%s", vmseal_last_error());
        store_close(m.db);
        mgr_config_free(m.cfg);
        return 1;
    }
    vmseal_https_config hc = {
        .bind_addr = listen ? listen : m.cfg->listen_address,
        .port = port >= 0 ? port : m.cfg->port,
        .tls = {.cert_file = m.cfg->cert_file, .key_file = m.cfg->key_file, .ca_file = m.cfg->ca_file,
                .require_client_cert = 0, .require_eku = 1},
        .handler = api_handle,
        .handler_arg = &m,
        .log = access_log,
    };
    rc = vmseal_https_server_start(&hc, &m.srv);
    if (rc < 0) {
        vmseal_log(VMSEAL_LOG_ERROR, "%s", vmseal_last_error());
        syslog_fwd_stop(fwd);
        store_close(m.db);
        mgr_config_free(m.cfg);
        return 1;
    }
    int bound = vmseal_https_server_port(m.srv);
    if (port_file) {
        char tmp[4200];
        snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
        FILE *f = fopen(tmp, "we");
        if (!f || fprintf(f, "%d\n", bound) < 0 || fclose(f) != 0 || rename(tmp, port_file) != 0)
            vmseal_log(VMSEAL_LOG_WARNING, "cannot write %s", port_file);
    }
    if (keys_retire_start(&m) < 0)
        mgr_log("%s", vmseal_last_error());
    if (tasks_start_watcher(&m) < 0)
        vmseal_log(VMSEAL_LOG_WARNING, "%s", vmseal_last_error());
    mgr_log("serving https://%s:%d/api/v1 (database: %s, KMIP client: %s)", hc.bind_addr, bound,
            store_backend(m.db), keys_available() ? "yes" : "not built in");
    int sig = 0;
    sigwait(&set, &sig);
    mgr_log("signal %d: stopping", sig);
    pthread_mutex_lock(&m.lock);
    m.stopping = 1;
    pthread_cond_broadcast(&m.changed);
    pthread_mutex_unlock(&m.lock);
    vmseal_https_server_stop(m.srv);
    tasks_stop_watcher(&m);
    keys_retire_stop(&m);
    syslog_fwd_stop(fwd);
    store_close(m.db);
    mgr_config_free(m.cfg);
    pthread_cond_destroy(&m.changed);
    pthread_mutex_destroy(&m.lock);
    keys_pool_free(&m);
    mgr_log("stopped");
    return 0;
}

static int cmd_init(int argc, char **argv)
{
    mgr_init_opts o = {0};
    const char *hosts[32];
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'h'},
        {"ca-cert", required_argument, NULL, 'c'},
        {"ca-key", required_argument, NULL, 'k'},
        {"database", required_argument, NULL, 'd'},
        {"listen", required_argument, NULL, 'l'},
        {"port", required_argument, NULL, 'p'},
        {"admin", required_argument, NULL, 'a'},
        {0, 0, 0, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            if (o.n_hosts < 32)
                hosts[o.n_hosts++] = optarg;
            break;
        case 'c': o.ca_cert = optarg; break;
        case 'k': o.ca_key = optarg; break;
        case 'd': o.database = optarg; break;
        case 'l': o.listen = optarg; break;
        case 'p': o.port = atoi(optarg); break;
        case 'a': o.admin_name = optarg; break;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc - 1 || (o.ca_cert == NULL) != (o.ca_key == NULL)) {
        usage(stderr);
        return 2;
    }
    o.hosts = hosts;
    const char *dir = argv[optind];
    if (mgr_init(dir, &o) < 0) {
        fprintf(stderr, "vmseal-managerd init: %s\n", vmseal_last_error());
        return 1;
    }
    printf("vmseal-managerd: set up in %s\n"
           "  configuration   %s/managerd.conf\n"
           "  CA certificate  %s/ca.crt (clients use it to verify the manager)\n"
           "  user            %s (role Administrator); its password is in %s/admin-password (0600)\n"
           "start it with:    vmseal-managerd -c %s serve\n",
           dir, dir, dir, o.admin_name ? o.admin_name : "administrator", dir, dir);
    return 0;
}

static int cmd_issue_host(const char *cfgpath, int argc, char **argv)
{
    const char *out = NULL, *extra[32];
    size_t n = 0;
    static const struct option opts[] = {
        {"out", required_argument, NULL, 'o'},
        {"host", required_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'h':
            if (n < 32)
                extra[n++] = optarg;
            break;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    mgr_config *cfg = NULL;
    if (mgr_config_load(cfgpath, &cfg) < 0) {
        fprintf(stderr, "vmseal-managerd: %s\n", vmseal_last_error());
        return 1;
    }
    const char *name = argv[optind];
    char def[4096];
    if (!out) {
        snprintf(def, sizeof(def), "%s/hosts/%s", cfg->dir, name);
        char parent[4096];
        snprintf(parent, sizeof(parent), "%s/hosts", cfg->dir);
        mkdir(parent, 0700);
        out = def;
    }
    int rc = mgr_issue_host(cfg, name, out, extra, n);
    mgr_config_free(cfg);
    if (rc < 0) {
        fprintf(stderr, "vmseal-managerd issue-host: %s\n", vmseal_last_error());
        return 1;
    }
    printf("%s/%s.crt\n%s/%s.key\n%s/ca.crt\n", out, name, out, name, out);
    return 0;
}

static int cmd_passwd(const char *cfgpath, int argc, char **argv)
{
    const char *pwfile = NULL;
    static const struct option opts[] = {
        {"password-file", required_argument, NULL, 'f'},
        {0, 0, 0, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'f')
            pwfile = optarg;
        else {
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1 || !pwfile) {
        usage(stderr);
        return 2;
    }
    int fd = !strcmp(pwfile, "-") ? 0 : open(pwfile, O_RDONLY | O_CLOEXEC);
    vmseal_secret *pw = NULL;
    if (fd < 0 || vmseal_secret_read_fd(fd, 1024, &pw) < 0) {
        fprintf(stderr, "vmseal-managerd passwd: cannot read %s\n", pwfile);
        return 1;
    }
    if (fd > 0)
        close(fd);
    size_t len = vmseal_secret_len(pw);
    const char *p = (const char *)vmseal_secret_cdata(pw);
    while (len && (p[len - 1] == '\n' || p[len - 1] == '\r'))
        len--;
    mgr_config *cfg = NULL;
    store *db = NULL;
    char hash[256];
    int rc = mgr_config_load(cfgpath, &cfg);
    if (rc >= 0)
        rc = store_open(cfg->database, &db);
    if (rc >= 0 && len < 8)
        rc = vmseal_fail(EINVAL, "a password has at least 8 characters");
    if (rc >= 0)
        rc = auth_password_hash(p, len, hash, sizeof(hash));
    vmseal_secret_free(pw);
    char now[32];
    snprintf(now, sizeof(now), "%lld", (long long)mgr_now());
    if (rc >= 0)
        rc = store_execv(db, NULL, "UPDATE users SET pwhash = $2, pw_changed = $3 WHERE name = $1",
                         argv[optind], hash, now, STORE_END);
    OPENSSL_cleanse(hash, sizeof(hash));
    if (rc == 0)
        rc = vmseal_fail(ENOENT, "no user named %s", argv[optind]);
    if (rc > 0) {
        manager m = {.cfg = cfg, .db = db};
        pthread_mutex_init(&m.lock, NULL);
        pthread_cond_init(&m.changed, NULL);
        json_t *nv = json_pack("{s:s}", "password", "reset offline");
        event_add(&m, "-", "user.password", argv[optind], NULL, nv);
        json_decref(nv);
        (void)store_execv(db, NULL, "DELETE FROM sessions WHERE user_name = $1", argv[optind], STORE_END);
    }
    store_close(db);
    mgr_config_free(cfg);
    if (rc < 0) {
        fprintf(stderr, "vmseal-managerd passwd: %s\n", vmseal_last_error());
        return 1;
    }
    return 0;
}

static int cmd_events_verify(const char *cfgpath)
{
    mgr_config *cfg = NULL;
    manager m = {0};
    pthread_mutex_init(&m.lock, NULL);
    pthread_cond_init(&m.changed, NULL);
    json_t *out = NULL;
    int rc = mgr_config_load(cfgpath, &cfg);
    if (rc >= 0)
        rc = store_open(cfg->database, &m.db);
    m.cfg = cfg;
    if (rc >= 0)
        rc = events_verify(&m, &out);
    if (rc < 0) {
        fprintf(stderr, "vmseal-managerd events-verify: %s\n", vmseal_last_error());
    } else if (json_is_true(json_object_get(out, "ok"))) {
        printf("event log: %lld records, chain intact (last %lld, head %s)\n",
               (long long)json_integer_value(json_object_get(out, "records")),
               (long long)json_integer_value(json_object_get(out, "last")),
               json_string_value(json_object_get(out, "head")));
    } else {
        printf("event log: record %lld is bad: %s (%lld records before it are intact)\n",
               (long long)json_integer_value(json_object_get(out, "first_bad")),
               json_string_value(json_object_get(out, "reason")),
               (long long)json_integer_value(json_object_get(out, "records")));
        rc = -EBADMSG;
    }
    json_decref(out);
    store_close(m.db);
    mgr_config_free(cfg);
    return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    const char *cfg = getenv("VMSEAL_MANAGERD_CONFIG");
    int i = 1;
    /* stderr at level info until `serve` reads managerd.conf */
    vmseal_log_config lc = {.program = "vmseal-managerd", .level = VMSEAL_LOG_INFO};
    if (vmseal_log_open(&lc) < 0)
        return 1;
    if (i < argc && (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))) {
        usage(stdout);
        return 0;
    }
    if (i + 1 < argc && !strcmp(argv[i], "-c")) {
        cfg = argv[i + 1];
        i += 2;
    }
    if (!cfg)
        cfg = "managerd.conf";
    const char *cmd = i < argc ? argv[i] : "serve";
    int sub_argc = i < argc ? argc - i : 1;
    char *serve_argv[] = {(char *)"serve", NULL};
    char **sub_argv = i < argc ? argv + i : serve_argv;
    if (!strcmp(cmd, "serve"))
        return cmd_serve(cfg, sub_argc, sub_argv);
    if (!strcmp(cmd, "init"))
        return cmd_init(sub_argc, sub_argv);
    if (!strcmp(cmd, "issue-host"))
        return cmd_issue_host(cfg, sub_argc, sub_argv);
    if (!strcmp(cmd, "passwd"))
        return cmd_passwd(cfg, sub_argc, sub_argv);
    if (!strcmp(cmd, "events-verify"))
        return cmd_events_verify(cfg);
    if (!strcmp(cmd, "api-table")) {
        json_t *t = api_table_json();
        json_dumpf(t, stdout, JSON_INDENT(1));
        putchar('\n');
        json_decref(t);
        return 0;
    }
    usage(stderr);
    return 2;
}
