/* vmseal-kmsd: command line (serve, init, join, enroll, grant,
 * revoke-access, grants, backup, restore, import-sqlite, passwd,
 * audit-verify, cluster status) and daemon start-up. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <vmseal/pki.h>
#include <vmseal/secret.h>
#include <vmseal/tls.h>

#include "audit.h"
#include "cluster.h"
#include "config.h"
#include "log.h"
#include "masterkey.h"
#include "pki.h"
#include "server.h"
#include "store.h"

static const char usage[] =
    "usage: vmseal-kmsd [-c CONFIG] [COMMAND [ARGS]]\n"
    "\n"
    "  serve [--listen ADDR] [--port N] [--port-file FILE]\n"
    "        run the KMIP server (the default command)\n"
    "  init DIR [--ec] [--host NAME]... [--listen ADDR] [--port N]\n"
    "        [--pkcs11-module SO --pkcs11-token LABEL --pkcs11-pin-file FILE\n"
    "         [--pkcs11-key-label LABEL]]\n"
    "        [--store postgresql --conninfo-file FILE [--node-name NAME]]\n"
    "        new setup in DIR: master key, CA, server certificate, kmsd.conf,\n"
    "        store, admin client certificate (DIR/clients/admin); with\n"
    "        --store postgresql the store is made in that (empty) database\n"
    "  join DIR --conninfo-file FILE --ca CA.crt --ca-key CA.key\n"
    "        (--master-key-file FILE | --pkcs11-module SO --pkcs11-token LABEL\n"
    "         --pkcs11-pin-file FILE [--pkcs11-key-label LABEL])\n"
    "        [--node-name NAME] [--host NAME]... [--listen ADDR] [--port N] [--ec]\n"
    "        another node on the cluster's PostgreSQL store; refused when the\n"
    "        master key does not open that store\n"
    "  init --join DIR ...          the same as join DIR ... (--store postgresql\n"
    "        may be given, as for the first node)\n"
    "  enroll NAME [--out DIR] [--ec] [--days N]\n"
    "        issue a client certificate (clientAuth) for identity CN=NAME,O=vmseal\n"
    "  grant OBJECT IDENTITY        let IDENTITY use object OBJECT\n"
    "  revoke-access OBJECT IDENTITY\n"
    "  grants                       list access grants\n"
    "  backup FILE                  consistent online copy of the store\n"
    "  restore FILE                 replace the store with a backup (server stopped)\n"
    "  import-sqlite FILE           copy a SQLite store (its server stopped) into the\n"
    "                               PostgreSQL store, ids unchanged\n"
    "  cluster status               database hosts (primary, standby, lag), nodes\n"
    "  passwd NAME                  read a password on stdin, print a `user =` line\n"
    "  audit-verify [FILE]          check the hash chain of the audit log (default:\n"
    "                               audit_log of the configuration, or the chain in\n"
    "                               the database with store = postgresql); exit 1\n"
    "                               names the first bad record\n"
    "\n"
    "CONFIG defaults to $VMSEAL_KMSD_CONFIG, then ./kmsd.conf; it may name the\n"
    "folder that holds kmsd.conf.\n";

static kmsd_server *g_srv;

static void on_signal(int sig)
{
    (void)sig;
    if (g_srv)
        kmsd_server_stop(g_srv);
}

static int die(const char *what)
{
    fprintf(stderr, "vmseal-kmsd: %s%s%s\n", what, *vmseal_last_error() ? ": " : "",
            vmseal_last_error());
    return 1;
}

/* The server cannot run: why, in the log (stderr until kmsd.conf's log
 * settings are applied). */
static int fatal(const char *what)
{
    kmsd_err("%s%s%s", what, *vmseal_last_error() ? ": " : "", vmseal_last_error());
    return 1;
}

static int open_masterkey(const kmsd_config *cfg, kmsd_masterkey **mk)
{
    if (cfg->pkcs11_module) {
        kmsd_pkcs11_params p = {.module = cfg->pkcs11_module, .token_label = cfg->pkcs11_token,
                                .pin_file = cfg->pkcs11_pin_file,
                                .key_label = cfg->pkcs11_key_label};
        return kmsd_mk_open_pkcs11(&p, 0, mk);
    }
    return kmsd_mk_open_file(cfg->master_key_file, mk);
}

/* The configured store; ci: the conninfo read earlier (serve reads it
 * before dropping privileges), else it is read here. */
static int open_store(const kmsd_config *cfg, kmsd_masterkey *mk, int create,
                      const vmseal_secret *ci, kmsd_store **st)
{
    if (cfg->store == KMSD_STORE_SQLITE)
        return kmsd_store_open(cfg->database, cfg->journal_mode, mk, create, st);
    vmseal_secret *own = NULL;
    if (!ci) {
        int r = kmsd_pg_read_conninfo(cfg->conninfo_file, &own);
        if (r < 0)
            return r;
        ci = own;
    }
    kmsd_pg_params p = {.conninfo = ci, .node = cfg->node_name,
                        .synchronous_commit = cfg->pg_synchronous_commit,
                        .timeout_ms = cfg->pg_timeout_ms,
                        .connect_timeout_s = cfg->pg_connect_timeout};
    int r = kmsd_store_open_pg(&p, mk, KMSD_PG_OPEN, st);
    vmseal_secret_free(own);
    return r;
}

static int drop_privileges(const char *user)
{
    struct passwd *pw = getpwnam(user);
    if (!pw)
        return vmseal_fail(ENOENT, "run_as_user: no user \"%s\"", user);
    if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
        setuid(pw->pw_uid) < 0)
        return vmseal_fail(errno, "cannot become %s: %s", user, strerror(errno));
    if (pw->pw_uid != 0 && setuid(0) == 0)
        return vmseal_fail(EPERM, "privileges could be regained after dropping them");
    return 0;
}

/* Logged when a secret had to go to unlocked memory (allow_unlocked_memory):
 * the 1st, 10th, 100th, ... time. */
static void on_unlocked_secret(size_t bytes, int err)
{
    unsigned long n = vmseal_secret_unlocked_count();
    for (unsigned long p = 1; p <= n && p <= ULONG_MAX / 10; p *= 10)
        if (p == n) {
            kmsd_warn("WARNING: %zu bytes of key material in UNLOCKED memory (mlock: %s; "
                      "%lu time(s) so far): allow_unlocked_memory = yes", bytes, strerror(err), n);
            break;
        }
}

/* Locked memory or nothing: can this process lock what one connection may
 * hold? Refuse to run otherwise, unless allow_unlocked_memory. Then cap the
 * server's secure memory (max_locked_memory, or RLIMIT_MEMLOCK if lower). */
static int check_locked_memory(const kmsd_config *cfg, const char *when)
{
    size_t need = cfg->max_connection_locked_memory;
    if (vmseal_secret_check_lockable(need) < 0) {
        if (!cfg->allow_unlocked_memory)
            return vmseal_fail(ENOMEM, "%s: %s; or set allow_unlocked_memory = yes in %s "
                               "(key material may then be swapped to disk)", when,
                               vmseal_last_error(), cfg->path);
        kmsd_warn("WARNING: %s: %s; starting anyway because allow_unlocked_memory = yes: "
                  "KEY MATERIAL MAY BE SWAPPED TO DISK", when, vmseal_last_error());
    }
    size_t budget = cfg->max_locked_memory, lim = vmseal_secret_memlock_limit();
    if (!cfg->allow_unlocked_memory && lim < budget) {
        kmsd_info("secure memory limited to %zu bytes by RLIMIT_MEMLOCK (max_locked_memory is "
                  "%zu)", lim, budget);
        budget = lim;
    }
    vmseal_secret_set_limit(budget);
    return 0;
}

static int cmd_serve(kmsd_config *cfg, int argc, char **argv)
{
    const char *listen_addr = cfg->listen_address, *port_file = NULL;
    int port = cfg->port;
    static const struct option opts[] = {{"listen", required_argument, 0, 'l'},
                                         {"port", required_argument, 0, 'p'},
                                         {"port-file", required_argument, 0, 'f'},
                                         {0, 0, 0, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch == 'l')
            listen_addr = optarg;
        else if (ch == 'p')
            port = atoi(optarg);
        else if (ch == 'f')
            port_file = optarg;
        else
            return 2;
    }
    if (vmseal_harden_process() < 0)
        return fatal("cannot harden the process");
    signal(SIGPIPE, SIG_IGN);
    if (kmsd_log_open(cfg->log_file, cfg->log_level, cfg->log_outputs) < 0)
        return fatal("log");
    if (cfg->allow_unlocked_memory) {
        vmseal_secret_set_unlocked_hook(on_unlocked_secret);
        kmsd_warn("WARNING: allow_unlocked_memory = yes: when memory cannot be locked, key "
                  "material is kept in memory that may be swapped to disk");
    }
    if (check_locked_memory(cfg, "at start") < 0)
        return fatal("locked memory");

    kmsd_server srv = {.cfg = cfg, .lock_fd = -1, .wake = {-1, -1}};
    pthread_mutex_init(&srv.conn_lock, NULL);
    pthread_cond_init(&srv.conn_cond, NULL);
    if (pipe2(srv.wake, O_CLOEXEC | O_NONBLOCK) < 0)
        return fatal("pipe");
    int pg = cfg->store == KMSD_STORE_POSTGRESQL;
    vmseal_secret *conninfo = NULL;
    if (pg) {
        /* several nodes share the database: no lock file; the conninfo is
         * read now, before privileges are dropped */
        if (kmsd_pg_read_conninfo(cfg->conninfo_file, &conninfo) < 0)
            return fatal("database");
    } else {
        srv.lock_fd = kmsd_store_lock(cfg->database);
        if (srv.lock_fd < 0)
            return fatal("cannot start");
    }
    if (kmsd_listen(&srv, listen_addr, port) < 0)
        return fatal("cannot start");
    if (open_masterkey(cfg, &srv.mk) < 0)
        return fatal("master key");
    vmseal_tls_config tc = {.cert_file = cfg->cert_file, .key_file = cfg->key_file,
                            .ca_file = cfg->ca_file, .require_client_cert = 1,
                            .require_eku = cfg->require_client_eku, .fs_aead_only = 1};
    srv.tls = vmseal_tls_server_ctx_new(&tc);
    if (!srv.tls)
        return fatal("TLS");
    if (cfg->run_as_user && getuid() == 0) {
        if (drop_privileges(cfg->run_as_user) < 0)
            return fatal("privileges");
        /* CAP_IPC_LOCK is gone: RLIMIT_MEMLOCK binds from here on */
        if (check_locked_memory(cfg, "as run_as_user") < 0)
            return fatal("locked memory");
    }
    if (open_store(cfg, srv.mk, 1, conninfo, &srv.store) < 0)
        return fatal("store");
    vmseal_secret_free(conninfo);
    if (kmsd_audit_open(cfg->audit_log) < 0)
        return fatal("audit log");
    if (pg) {
        char where[192];
        const char *a = listen_addr && *listen_addr ? listen_addr : "0.0.0.0";
        if (!strcmp(a, "0.0.0.0") || !strcmp(a, "::")) {
            char host[128] = "";
            a = gethostname(host, sizeof(host) - 1) == 0 && host[0] ? host : a;
            snprintf(where, sizeof(where), "%s:%d", a, srv.port);
        } else {
            snprintf(where, sizeof(where), "%s:%d", a, srv.port);
        }
        if (kmsd_audit_db_start(srv.store, cfg->node_name) < 0 ||
            kmsd_cluster_start(srv.store, cfg->node_name, where) < 0)
            return fatal("cluster");
    }
    if (port_file) {
        char tmp[4096];
        snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%d\n", srv.port) < 0 || fclose(f) != 0 || rename(tmp, port_file) < 0)
            return fatal("cannot write the port file");
    }
    g_srv = &srv;
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    char sdesc[512];
    kmsd_store_describe(srv.store, sdesc, sizeof(sdesc));
    if (pg)
        kmsd_info("listening on %s port %d; master key: %s; store: %s; node %s; audit chain in "
                  "the database", listen_addr && *listen_addr ? listen_addr : "*", srv.port,
                  srv.mk->desc, sdesc, cfg->node_name);
    else
        kmsd_info("listening on %s port %d; master key: %s; store: %s",
                  listen_addr && *listen_addr ? listen_addr : "*", srv.port, srv.mk->desc, sdesc);
    int r = kmsd_serve(&srv);
    if (r == -EBUSY) {
        /* sessions still running: do not free what they use */
        kmsd_info("stopped (forced)");
        _exit(1);
    }
    kmsd_info("stopped");
    kmsd_cluster_stop();
    kmsd_audit_db_stop(5000);
    kmsd_store_close(srv.store);
    SSL_CTX_free(srv.tls);
    kmsd_mk_free(srv.mk);
    kmsd_audit_close();
    kmsd_log_close();
    if (srv.lock_fd >= 0)
        close(srv.lock_fd);
    close(srv.wake[0]);
    close(srv.wake[1]);
    return 0;
}

/* The options every node is made with (init and join): long option
 * entries, and their parser (1: ch was one of them). */
#define NODE_OPTIONS                                                                    \
    {"ec", no_argument, 0, 'e'}, {"rsa", no_argument, 0, 'r'},                          \
        {"host", required_argument, 0, 'h'}, {"port", required_argument, 0, 'p'},       \
        {"listen", required_argument, 0, 'l'},                                          \
        {"pkcs11-module", required_argument, 0, 'm'},                                   \
        {"pkcs11-token", required_argument, 0, 't'},                                    \
        {"pkcs11-pin-file", required_argument, 0, 'i'},                                \
        {"pkcs11-key-label", required_argument, 0, 'k'},                                \
        {"conninfo-file", required_argument, 0, 'C'}, {"node-name", required_argument, 0, 'N'}

static int node_option(int ch, const char *arg, kmsd_node_opts *n)
{
    switch (ch) {
    case 'e': n->key_type = VMSEAL_PKI_EC_P256; return 1;
    case 'r': n->key_type = VMSEAL_PKI_RSA2048; return 1;
    case 'h':
        if (n->n_hosts < 16)
            n->hosts[n->n_hosts++] = arg;
        return 1;
    case 'p': n->port = atoi(arg); return 1;
    case 'l': n->listen_address = arg; return 1;
    case 'm': n->pkcs11_module = arg; return 1;
    case 't': n->pkcs11_token = arg; return 1;
    case 'i': n->pkcs11_pin_file = arg; return 1;
    case 'k': n->pkcs11_key_label = arg; return 1;
    case 'C': n->conninfo_file = arg; return 1;
    case 'N': n->node_name = arg; return 1;
    default: return 0;
    }
}

static int cmd_init(int argc, char **argv)
{
    kmsd_init_opts o = {.node.key_type = VMSEAL_PKI_RSA2048};
    static const struct option opts[] = {NODE_OPTIONS, {"store", required_argument, 0, 's'},
                                         {0, 0, 0, 0}};
    int ch;
    const char *store = "sqlite";
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch == 's')
            store = optarg;
        else if (!node_option(ch, optarg, &o.node))
            return 2;
    }
    if (optind != argc - 1) {
        fputs(usage, stderr);
        return 2;
    }
    if (strcmp(store, "sqlite") && strcmp(store, "postgresql")) {
        fprintf(stderr, "vmseal-kmsd: init: --store sqlite or postgresql\n");
        return 2;
    }
    if (!strcmp(store, "postgresql") != !!o.node.conninfo_file) {
        fprintf(stderr, "vmseal-kmsd: init: --store postgresql and --conninfo-file FILE go "
                        "together\n");
        return 2;
    }
    const char *dir = argv[optind];
    if (kmsd_init(dir, &o) < 0)
        return die("init");
    printf("vmseal-kmsd: set up in %s\n"
           "  start:   vmseal-kmsd -c %s/kmsd.conf\n"
           "  clients: vmseal-kmsd -c %s/kmsd.conf enroll NAME\n"
           "  admin client certificate: %s/clients/admin/\n",
           dir, dir, dir, dir);
    return 0;
}

static int cmd_join(int argc, char **argv)
{
    kmsd_join_opts o = {.node.key_type = VMSEAL_PKI_RSA2048};
    static const struct option opts[] = {NODE_OPTIONS,
                                         {"master-key-file", required_argument, 0, 'M'},
                                         {"ca", required_argument, 0, 'a'},
                                         {"ca-key", required_argument, 0, 'K'},
                                         {0, 0, 0, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'M': o.master_key_file = optarg; break;
        case 'a': o.ca_file = optarg; break;
        case 'K': o.ca_key_file = optarg; break;
        default:
            if (!node_option(ch, optarg, &o.node))
                return 2;
        }
    }
    if (optind != argc - 1) {
        fputs(usage, stderr);
        return 2;
    }
    const char *dir = argv[optind];
    if (kmsd_join(dir, &o) < 0)
        return die("join");
    printf("vmseal-kmsd: %s joins the cluster's store\n"
           "  start:   vmseal-kmsd -c %s/kmsd.conf\n"
           "  status:  vmseal-kmsd -c %s/kmsd.conf cluster status\n",
           dir, dir, dir);
    if (o.master_key_file)
        printf("  the master key was copied to %s/master.key: delete the transferred copy %s\n",
               dir, o.master_key_file);
    return 0;
}

/* `init --join DIR ...` (the and some operators' spelling) is
 * `join DIR ...`; a --store postgresql given as for the first node is
 * accepted, any other store refused. */
static int cmd_init_join(int argc, char **argv)
{
    char **av = calloc((size_t)argc + 1, sizeof(char *));
    if (!av)
        return die("init --join");
    int n = 0;
    av[n++] = (char *)"join";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--join"))
            continue;
        const char *store = !strncmp(a, "--store=", 8) ? a + 8
                            : !strcmp(a, "--store") && i + 1 < argc ? argv[++i]
                                                                    : NULL;
        if (!strcmp(a, "--store") && !store) {
            free(av);
            fputs(usage, stderr);
            return 2;
        }
        if (store) {
            if (strcmp(store, "postgresql")) {
                fprintf(stderr, "vmseal-kmsd: init --join: a node joins a cluster on PostgreSQL "
                                "(--store %s is not one)\n", store);
                free(av);
                return 2;
            }
            continue;
        }
        av[n++] = argv[i];
    }
    int r = cmd_join(n, av);
    free(av);
    return r;
}

static int cmd_cluster(kmsd_config *cfg, int argc, char **argv)
{
    if (argc != 2 || strcmp(argv[1], "status")) {
        fputs(usage, stderr);
        return 2;
    }
    int r = kmsd_cluster_status(cfg, stdout);
    if (r < 0)
        return die("cluster status");
    return r;
}

static int cmd_import_sqlite(kmsd_config *cfg, int argc, char **argv)
{
    if (argc != 2) {
        fputs(usage, stderr);
        return 2;
    }
    if (cfg->store != KMSD_STORE_POSTGRESQL) {
        fprintf(stderr, "vmseal-kmsd: import-sqlite: %s has store = sqlite; it imports into a "
                        "PostgreSQL store\n", cfg->path);
        return 2;
    }
    kmsd_masterkey *mk;
    kmsd_store *st;
    if (open_masterkey(cfg, &mk) < 0)
        return die("master key");
    if (open_store(cfg, mk, 0, NULL, &st) < 0) {
        kmsd_mk_free(mk);
        return die("store");
    }
    size_t n;
    int r = kmsd_store_import_sqlite(st, argv[1], &n);
    kmsd_store_close(st);
    kmsd_mk_free(mk);
    if (r < 0)
        return die("import-sqlite");
    printf("vmseal-kmsd: %zu objects of %s imported with their identifiers, attributes and "
           "grants\n", n, argv[1]);
    return 0;
}

static int cmd_enroll(kmsd_config *cfg, int argc, char **argv)
{
    const char *out = NULL;
    int key_type = VMSEAL_PKI_RSA2048, days = 0;
    static const struct option opts[] = {{"out", required_argument, 0, 'o'},
                                         {"ec", no_argument, 0, 'e'},
                                         {"days", required_argument, 0, 'd'},
                                         {0, 0, 0, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch == 'o')
            out = optarg;
        else if (ch == 'e')
            key_type = VMSEAL_PKI_EC_P256;
        else if (ch == 'd')
            days = atoi(optarg);
        else
            return 2;
    }
    if (optind != argc - 1) {
        fputs(usage, stderr);
        return 2;
    }
    char identity[KMSD_IDENTITY_MAX];
    if (kmsd_enroll(cfg, argv[optind], out, key_type, days, identity, sizeof(identity)) < 0)
        return die("enroll");
    char dir[4096];
    if (out)
        snprintf(dir, sizeof(dir), "%s", out);
    else
        snprintf(dir, sizeof(dir), "%s/clients/%s", cfg->dir, argv[optind]);
    printf("%s\n", identity);
    fprintf(stderr, "vmseal-kmsd: certificate, key (0600) and CA for %s in %s\n", identity, dir);
    return 0;
}

static int open_store_rw(kmsd_config *cfg, kmsd_masterkey **mk, kmsd_store **st)
{
    if (open_masterkey(cfg, mk) < 0)
        return -1;
    if (open_store(cfg, *mk, 0, NULL, st) < 0) {
        kmsd_mk_free(*mk);
        return -1;
    }
    return 0;
}

static int cmd_grant(kmsd_config *cfg, int argc, char **argv, int grant)
{
    if (argc != 3) {
        fputs(usage, stderr);
        return 2;
    }
    kmsd_masterkey *mk;
    kmsd_store *st;
    if (open_store_rw(cfg, &mk, &st) < 0)
        return die("store");
    kmsd_db *db;
    int r = kmsd_store_write_begin(st, &db);
    kmsd_obj o;
    if (r == 0) {
        r = kmsd_db_get(db, argv[1], &o);
        if (r == -ENOENT)
            vmseal_fail(ENOENT, "no object %s", argv[1]);
        else if (r == 0 && grant)
            r = kmsd_db_grant(db, argv[1], argv[2]);
        else if (r == 0) {
            r = kmsd_db_revoke_access(db, argv[1], argv[2]);
            if (r == 0)
                r = vmseal_fail(ENOENT, "%s had no grant on object %s", argv[2], argv[1]);
        }
        int c = kmsd_store_end(st, db, r >= 0);
        if (r >= 0)
            r = c;
    }
    kmsd_store_close(st);
    kmsd_mk_free(mk);
    if (r < 0)
        return die(grant ? "grant" : "revoke-access");
    printf("%s %s object %s\n", argv[2], grant ? "may now use" : "may no longer use", argv[1]);
    return 0;
}

static int print_grant(void *ctx, const char *uid, const char *identity)
{
    (void)ctx;
    printf("%s\t%s\n", uid, identity);
    return 0;
}

static int cmd_grants(kmsd_config *cfg)
{
    kmsd_masterkey *mk;
    kmsd_store *st;
    if (open_store_rw(cfg, &mk, &st) < 0)
        return die("store");
    kmsd_db *db;
    int r = kmsd_store_read_begin(st, &db);
    if (r == 0) {
        r = kmsd_db_grants(db, print_grant, NULL);
        (void)kmsd_store_end(st, db, 0);
    }
    kmsd_store_close(st);
    kmsd_mk_free(mk);
    return r < 0 ? die("grants") : 0;
}

/* backup and restore copy SQLite files; a PostgreSQL store has its own. */
static int sqlite_only(const kmsd_config *cfg, const char *cmd)
{
    if (cfg->store == KMSD_STORE_SQLITE)
        return 0;
    fprintf(stderr, "vmseal-kmsd: %s: the store is in PostgreSQL: use its backups "
                    "(pg_dump, pg_basebackup with WAL archiving); see docs/kmsd.md\n", cmd);
    return 2;
}

static int cmd_backup(kmsd_config *cfg, int argc, char **argv)
{
    if (argc != 2) {
        fputs(usage, stderr);
        return 2;
    }
    if (sqlite_only(cfg, "backup"))
        return 2;
    if (kmsd_store_backup(cfg->database, argv[1]) < 0)
        return die("backup");
    fprintf(stderr, "vmseal-kmsd: store backed up to %s (keys stay wrapped by the master key)\n",
            argv[1]);
    return 0;
}

static int cmd_restore(kmsd_config *cfg, int argc, char **argv)
{
    if (argc != 2) {
        fputs(usage, stderr);
        return 2;
    }
    if (sqlite_only(cfg, "restore"))
        return 2;
    kmsd_masterkey *mk;
    if (open_masterkey(cfg, &mk) < 0)
        return die("master key");
    int r = kmsd_store_restore(argv[1], cfg->database, mk);
    kmsd_mk_free(mk);
    if (r < 0)
        return die("restore");
    fprintf(stderr, "vmseal-kmsd: %s restored into %s\n", argv[1], cfg->database);
    return 0;
}

static int cmd_passwd(int argc, char **argv)
{
    if (argc != 2) {
        fputs(usage, stderr);
        return 2;
    }
    struct termios t0, t1;
    int tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &t0) == 0;
    if (tty) {
        fprintf(stderr, "password for %s: ", argv[1]);
        t1 = t0;
        t1.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &t1);
    }
    vmseal_secret *pw;
    int r = vmseal_secret_read_fd(STDIN_FILENO, 1024, &pw);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &t0);
        fputc('\n', stderr);
    }
    if (r < 0)
        return die("cannot read the password");
    size_t n = vmseal_secret_len(pw);
    const unsigned char *p = vmseal_secret_cdata(pw);
    while (n && (p[n - 1] == '\n' || p[n - 1] == '\r'))
        n--;
    char line[256];
    r = kmsd_password_hash((const char *)p, n, line, sizeof(line));
    vmseal_secret_free(pw);
    if (r < 0)
        return die("passwd");
    printf("user = %s %s\n", argv[1], line);
    return 0;
}

static void print_head(const kmsd_audit_verifier *v)
{
    if (v->records) {
        char h[65];
        vmseal_hex_encode(v->prev, 32, h);
        printf("  last record: seq=%" PRIu64 " hash=%s\n", v->next_seq - 1, h);
    }
}

/* The chain in the database of a PostgreSQL store (no master key needed). */
static int audit_verify_db(const kmsd_config *cfg)
{
    kmsd_store *st;
    if (open_store(cfg, NULL, 0, NULL, &st) < 0) {
        die("audit-verify");
        return 2;
    }
    kmsd_audit_verifier v;
    int r = kmsd_audit_verify_db(st, &v);
    kmsd_store_close(st);
    if (r == -2) {
        die("audit-verify");
        return 2;
    }
    if (r < 0) {
        printf("audit chain in the database: %s\n", v.error);
        return 1;
    }
    printf("audit chain in the database: %" PRIu64 " records, chain intact\n", v.records);
    print_head(&v);
    return 0;
}

static int cmd_audit_verify(const kmsd_config *cfg, int argc, char **argv)
{
    if (argc > 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *file = argc == 2 ? argv[1] : cfg ? cfg->audit_log : NULL;
    if (argc == 1 && cfg && cfg->store == KMSD_STORE_POSTGRESQL)
        return audit_verify_db(cfg);
    if (!file || !*file) {
        fprintf(stderr, "vmseal-kmsd: audit-verify: audit_log is unset or \"-\": the audit lines "
                        "go to stderr, there is no chained file; name one: audit-verify FILE\n");
        return 2;
    }
    kmsd_audit_verifier v;
    int r = kmsd_audit_verify_file(file, &v);
    if (r == -2) {
        die("audit-verify");
        return 2;
    }
    if (r < 0) {
        printf("audit log %s: %s\n", file, v.error);
        return 1;
    }
    printf("audit log %s: %" PRIu64 " records, chain intact\n", file, v.records);
    if (v.skipped)
        printf("  %" PRIu64 " torn line(s) skipped, each named by the audit.recovered record "
               "after it\n", v.skipped);
    print_head(&v);
    return 0;
}

int main(int argc, char **argv)
{
    const char *config = getenv("VMSEAL_KMSD_CONFIG");
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc) {
            config = argv[i + 1];
            i += 2;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--version")) {
            puts("vmseal-kmsd " VMSEAL_VERSION);
            return 0;
        } else {
            break; /* serve options */
        }
    }
    const char *cmd = i < argc && argv[i][0] != '-' ? argv[i] : "serve";
    int sub_argc = argc - i;
    char **sub_argv = argv + i;
    if (i < argc && argv[i][0] == '-') {
        /* "vmseal-kmsd -c X --port 0": serve with options; give getopt a name */
        sub_argv = argv + i - 1;
        sub_argc = argc - i + 1;
    }
    if (!strcmp(cmd, "init")) {
        for (int k = 1; k < sub_argc && strcmp(sub_argv[k], "--"); k++)
            if (!strcmp(sub_argv[k], "--join"))
                return cmd_init_join(sub_argc, sub_argv);
        return cmd_init(sub_argc, sub_argv);
    }
    if (!strcmp(cmd, "join"))
        return cmd_join(sub_argc, sub_argv);
    if (!strcmp(cmd, "passwd"))
        return cmd_passwd(sub_argc, sub_argv);
    if (!strcmp(cmd, "audit-verify") && sub_argc == 2)
        return cmd_audit_verify(NULL, sub_argc, sub_argv); /* a FILE: no configuration needed */
    if (!config)
        config = "kmsd.conf";
    kmsd_config *cfg;
    if (kmsd_config_load(config, &cfg) < 0)
        return die("configuration");
    vmseal_secret_allow_unlocked(cfg->allow_unlocked_memory);
    int r;
    if (!strcmp(cmd, "serve"))
        r = cmd_serve(cfg, sub_argc, sub_argv);
    else if (!strcmp(cmd, "enroll"))
        r = cmd_enroll(cfg, sub_argc, sub_argv);
    else if (!strcmp(cmd, "grant"))
        r = cmd_grant(cfg, sub_argc, sub_argv, 1);
    else if (!strcmp(cmd, "revoke-access"))
        r = cmd_grant(cfg, sub_argc, sub_argv, 0);
    else if (!strcmp(cmd, "grants"))
        r = cmd_grants(cfg);
    else if (!strcmp(cmd, "backup"))
        r = cmd_backup(cfg, sub_argc, sub_argv);
    else if (!strcmp(cmd, "restore"))
        r = cmd_restore(cfg, sub_argc, sub_argv);
    else if (!strcmp(cmd, "audit-verify"))
        r = cmd_audit_verify(cfg, sub_argc, sub_argv);
    else if (!strcmp(cmd, "import-sqlite"))
        r = cmd_import_sqlite(cfg, sub_argc, sub_argv);
    else if (!strcmp(cmd, "cluster"))
        r = cmd_cluster(cfg, sub_argc, sub_argv);
    else {
        fprintf(stderr, "vmseal-kmsd: unknown command \"%s\"\n\n%s", cmd, usage);
        r = 2;
    }
    kmsd_config_free(cfg);
    return r;
}
