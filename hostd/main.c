/* vmseal-hostd — the host agent (the ESXi role): runs QEMU guests on LUKS1
 * disks, keeps KEKs in locked memory only, serves the manager over mutual
 * TLS (docs/api.md, "Host agent API"). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <vmseal/common.h>
#include <vmseal/https_server.h>
#include <vmseal/log.h>
#include <vmseal/secret.h>

#include "blockserver.h"
#include "host.h"
#include "hostmode.h"
#include "monitor.h"
#include "nic.h"
#include "netchild.h"
#include <vmseal/vmconf.h>

/* The shared logger (include/vmseal/log.h), tagged vmseal-hostd[monitor]. */
#define log_err(...) vmseal_log(VMSEAL_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) vmseal_log(VMSEAL_LOG_WARNING, __VA_ARGS__)
#define log_info(...) vmseal_log(VMSEAL_LOG_INFO, __VA_ARGS__)

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vmseal-hostd [-c CONFIG] [--port N] [--port-file FILE]\n"
            "\n"
            "CONFIG (default $VMSEAL_HOSTD_CONFIG, then ./hostd.conf) holds key = value lines:\n"
            "  name = NAME               host name; the CN of `cert` (default: hostname)\n"
            "  datastore = DIR           one folder per VM (required)\n"
            "  listen = ADDR             default 127.0.0.1\n"
            "  port = N                  default 9443 (0: any free port)\n"
            "  cert = FILE, key = FILE   our certificate (serverAuth + clientAuth) and key\n"
            "  ca = FILE                 CA of the manager's client certificate\n"
            "  manager_fingerprint = SHA256  the manager's certificate (required; written by\n"
            "                            vmseal-managerd issue-host to OUT/manager.sha256)\n"
            "  manager_subject = SUBJ    and, if set, its subject too,\n"
            "                            e.g. CN=manager,O=vmseal (optional)\n"
            "  manager_url = URL         https://manager:port: register and fetch KEKs at start\n"
            "  manager_ca = FILE         CA of the manager's server certificate (default: ca)\n"
            "  url = URL                 how the manager reaches us (default https://LISTEN:PORT)\n"
            "  provider = NAME           key provider name written in key safes (default vmseal)\n"
            "  accel = auto|kvm|tcg      auto: kvm only if a probe guest boots (default auto)\n"
            "  probe_kernel, probe_initrd  guest for the KVM probe (tests/guest/build-guest.sh)\n"
            "  qemu = PATH               default qemu-system-x86_64\n"
            "  images = DIR              the only folder VMs boot from: the API's kernel and\n"
            "                            initrd are file names in it, opened without\n"
            "                            following symlinks (default DATASTORE/.images)\n"
            "  qemu_user = USER          hostd as root: QEMU drops to USER (-runas) with no\n"
            "                            capabilities once hostd has opened its files\n"
            "                            (default: QEMU runs as hostd's user)\n"
            "  disk_path = nbd|qemu-luks  how running VMs read encrypted disks: nbd (default)\n"
            "                            one nbdkit with the vmseal plugin per disk, falling\n"
            "                            back to QEMU's luks driver when nbdkit or the plugin\n"
            "                            is missing; qemu-luks: always QEMU's luks driver\n"
            "  nbdkit = PATH             default nbdkit (on PATH)\n"
            "  nbd_plugin = PATH         default " VMSEAL_NBD_PLUGIN_DEFAULT "\n"
            "  grace_seconds = N         power-off grace before QEMU is stopped (default 30)\n"
            "  allow_unlocked_memory = yes|no  start even when secrets cannot be locked in\n"
            "                            memory (they may be swapped to disk; default no)\n"
            "  log_level = LEVEL         error, warning, info (default) or debug\n"
            "  log_output = OUT          stderr (default), syslog or stderr,syslog\n");
    fprintf(f, "  network.NAME.bridge = BR  a network VMs' bridged NICs may name: hostd puts a tap\n"
               "                            on bridge BR (hostd runs as root; QEMU gets the fd)\n"
               "  forward_addresses = A ... host addresses a user-mode NIC's port forward may\n"
               "                            bind (default 127.0.0.1)\n"
               "  mac_prefix = xx:xx:xx     locally administered prefix of new MACs (0a:76:6d)\n"
               "  user_network = nat|isolated  user-mode NICs reach out (nat, default) or not\n"
               "  encryption_mode = yes|no  host encryption mode: core dumps sealed to\n"
               "                            core_dump_key (a host public key) by\n"
               "                            vmseal-coredump-handler in core_dump_dir\n"
               "                            (default /var/lib/vmseal/cores); core_pattern =\n"
               "                            manage (default: hostd installs it) or check\n");
    fprintf(f, "  network_user = USER       the network process (HTTPS server, calls to the\n"
               "                            manager) runs as USER once its TLS files are read\n"
               "                            (default: stays root; it never holds a KEK anyway)\n");
}

/* Secure memory hostd needs: a locked page per KEK kept (256 VMs) and the
 * disk secrets and passphrases handed to QEMU. */
#define HOSTD_LOCKED_NEED (1u << 20)

static void on_unlocked_secret(size_t bytes, int err)
{
    unsigned long n = vmseal_secret_unlocked_count();
    for (unsigned long p = 1; p <= n && p <= ULONG_MAX / 10; p *= 10)
        if (p == n) {
            log_warn("WARNING: %zu bytes of key material in UNLOCKED memory (mlock: %s; %lu "
                     "time(s) so far): allow_unlocked_memory = yes", bytes, strerror(err), n);
            break;
        }
}

/* Locked memory or nothing: refuse to start when secrets cannot be locked,
 * unless allow_unlocked_memory = yes (then say so loudly). */
static int check_locked_memory(const char *value, const char *cfg_path)
{
    int allow = value && (!strcmp(value, "yes") || !strcmp(value, "true") || !strcmp(value, "1") ||
                          !strcmp(value, "on"));
    if (value && !allow && strcmp(value, "no") && strcmp(value, "false") && strcmp(value, "0") &&
        strcmp(value, "off"))
        return vmseal_fail(EINVAL, "%s: allow_unlocked_memory is yes or no", cfg_path);
    vmseal_secret_allow_unlocked(allow);
    if (allow) {
        vmseal_secret_set_unlocked_hook(on_unlocked_secret);
        log_warn("WARNING: allow_unlocked_memory = yes: when memory cannot be locked, key material "
                 "is kept in memory that may be swapped to disk");
    }
    if (vmseal_secret_check_lockable(HOSTD_LOCKED_NEED) == 0)
        return 0;
    if (!allow)
        return vmseal_fail(ENOMEM, "%s; or set allow_unlocked_memory = yes in %s (key material "
                           "may then be swapped to disk)", vmseal_last_error(), cfg_path);
    log_warn("WARNING: %s; starting anyway because allow_unlocked_memory = yes: KEY MATERIAL MAY "
             "BE SWAPPED TO DISK", vmseal_last_error());
    return 0;
}

static volatile sig_atomic_t stopping;

typedef struct manager_ctx {
    hostd_monitor *mon;
    hostd_host *host;
    const char *name, *url, *datastore, *manager_url;
} manager_ctx;

/* Register with the manager and fetch the KEKs (sealed to our custody key),
 * through the network process; retried until it works or the daemon stops
 * (the manager may start after us). */
static void *manager_thread(void *arg)
{
    manager_ctx *m = arg;
    int registered = 0, delay = 1;
    while (!stopping && hostd_monitor_alive(m->mon)) {
        int r = registered ? 0 : hostd_monitor_register(m->mon, m->name, m->url, m->datastore);
        if (r == 0 && !registered) {
            registered = 1;
            log_info("registered with the manager at %s as %s", m->manager_url, m->name);
        }
        if (r == 0) {
            r = hostd_monitor_fetch_keys(m->mon);
            if (r >= 0) {
                log_info("the manager gave %d KEK(s)", r);
                int resumed = hostd_host_resume_pending(m->host);
                if (resumed)
                    log_info("resuming %d interrupted operation(s)", resumed);
                return NULL;
            }
        }
        if (!hostd_monitor_alive(m->mon))
            break;
        log_warn("manager: %s (retrying in %d s)", vmseal_last_error(), delay);
        for (int i = 0; i < delay * 10 && !stopping && hostd_monitor_alive(m->mon); i++) {
            struct timespec ts = {0, 100000000L};
            nanosleep(&ts, NULL);
        }
        if (delay < 30)
            delay *= 2;
    }
    return NULL;
}

/* SIGTERM the network child and reap it (SIGKILL after 10 s). */
static void stop_child(pid_t child)
{
    kill(child, SIGTERM);
    for (int i = 0; i < 200; i++) {
        int st;
        pid_t r = waitpid(child, &st, WNOHANG);
        if (r == child || (r < 0 && errno != EINTR))
            return;
        struct timespec ts = {0, 50000000L};
        nanosleep(&ts, NULL);
    }
    log_warn("the network process did not stop within 10 s: killed");
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
}

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

static const char *cget(const vmseal_vmconf *c, const char *k)
{
    const char *v = vmseal_vmconf_get(c, k);
    return v && *v ? v : NULL;
}

static int check_keys(const vmseal_vmconf *c)
{
    static const char *const known[] = {
        "name", "datastore", "listen", "port", "cert", "key", "ca", "manager_subject", "manager_fingerprint",
        "manager_url", "manager_ca", "url", "provider", "accel", "probe_kernel", "probe_initrd",
        "qemu", "grace_seconds", "network_user", "allow_unlocked_memory", "images", "qemu_user",
        "log_level", "log_output", "disk_path", "nbdkit", "nbd_plugin", "encryption_mode",
        "core_dump_key", "core_dump_dir", "core_dump_handler", "core_pattern", NULL};
    for (size_t i = 0; i < vmseal_vmconf_count(c); i++) {
        const char *k = vmseal_vmconf_key_at(c, i);
        int ok = 0;
        for (size_t j = 0; known[j]; j++)
            ok |= strcmp(k, known[j]) == 0;
        ok |= hostd_vmnet_config_key(k);   /* networks: hostd/nic.c */
        if (!ok)
            return vmseal_fail(EINVAL, "unknown setting %s", k);
    }
    return 0;
}

/* The diagnostic log: hostd.conf log_level and log_output. This process
 * is the monitor; the network child tags its own lines (netchild.c). */
static int open_log(const vmseal_vmconf *conf, const char *cfg_path)
{
    vmseal_log_config lc = {.program = "vmseal-hostd", .process = "monitor",
                            .level = VMSEAL_LOG_INFO, .outputs = VMSEAL_LOG_STDERR};
    const char *v = conf ? cget(conf, "log_level") : NULL;
    if (v && vmseal_log_level_parse(v, &lc.level) < 0)
        return vmseal_fail(EINVAL, "%s: %s", cfg_path, vmseal_last_error());
    v = conf ? cget(conf, "log_output") : NULL;
    if (v && vmseal_log_outputs_parse(v, &lc.outputs) < 0)
        return vmseal_fail(EINVAL, "%s: %s", cfg_path, vmseal_last_error());
    return vmseal_log_open(&lc);
}

int main(int argc, char **argv)
{
    const char *cfg_path = getenv("VMSEAL_HOSTD_CONFIG");
    const char *port_file = NULL;
    int port_override = -1;
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"port", required_argument, NULL, 'p'},
        {"port-file", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': cfg_path = optarg; break;
        case 'p': port_override = atoi(optarg); break;
        case 'f': port_file = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (!cfg_path)
        cfg_path = "hostd.conf";
    if (open_log(NULL, cfg_path) < 0)
        return 1;

    if (vmseal_harden_process() < 0)
        log_warn("%s", vmseal_last_error());
    vmseal_json_wipe_on_free();
    signal(SIGPIPE, SIG_IGN);

    vmseal_vmconf *conf = NULL;
    if (vmseal_vmconf_load(cfg_path, &conf) < 0 || check_keys(conf) < 0) {
        log_err("%s: %s", cfg_path, vmseal_last_error());
        vmseal_vmconf_free(conf);
        return 2;
    }
    /* VM networks (network.NAME.bridge, forward_addresses, mac_prefix,
     * user_network): hostd/nic.h */
    static hostd_vmnet_config vmnet;
    hostd_vmnet_config_init(&vmnet);
    for (size_t i = 0; i < vmseal_vmconf_count(conf); i++)
        if (hostd_vmnet_config_set(&vmnet, vmseal_vmconf_key_at(conf, i),
                                   vmseal_vmconf_value_at(conf, i)) < 0) {
            log_err("%s: %s", cfg_path, vmseal_last_error());
            vmseal_vmconf_free(conf);
            return 2;
        }
    if (open_log(conf, cfg_path) < 0) {
        log_err("%s", vmseal_last_error());
        vmseal_vmconf_free(conf);
        return 2;
    }
    if (check_locked_memory(vmseal_vmconf_get(conf, "allow_unlocked_memory"), cfg_path) < 0) {
        log_err("%s", vmseal_last_error());
        vmseal_vmconf_free(conf);
        return 1;
    }
    char hostname[256] = "localhost";
    gethostname(hostname, sizeof(hostname) - 1);
    const char *name = cget(conf, "name") ? cget(conf, "name") : hostname;
    const char *datastore = cget(conf, "datastore");
    const char *listen = cget(conf, "listen") ? cget(conf, "listen") : "127.0.0.1";
    const char *cert = cget(conf, "cert"), *key = cget(conf, "key"), *ca = cget(conf, "ca");
    const char *subject = cget(conf, "manager_subject");
    /* manager_fingerprint: the SHA-256 of the manager's certificate, hex,
     * colons and case as openssl prints them are fine */
    char manager_fp[65] = "";
    const char *fps = cget(conf, "manager_fingerprint");
    if (fps) {
        size_t n = 0;
        for (const char *p = fps; *p && n < 65; p++) {
            if (*p == ':')
                continue;
            if (!isxdigit((unsigned char)*p)) {
                n = 65;
                break;
            }
            manager_fp[n++] = (char)tolower((unsigned char)*p);
        }
        if (n != 64) {
            log_err("%s: manager_fingerprint must be the SHA-256 of the manager's "
                    "certificate (64 hex digits)", cfg_path);
            vmseal_vmconf_free(conf);
            return 2;
        }
        manager_fp[64] = '\0';
    }
    const char *accel_s = cget(conf, "accel") ? cget(conf, "accel") : "auto";
    uint64_t v;
    int port = vmseal_vmconf_get_u64(conf, "port", &v) == 0 && v < 65536 ? (int)v : 9443;
    if (port_override >= 0)
        port = port_override;
    int grace = vmseal_vmconf_get_u64(conf, "grace_seconds", &v) == 0 && v <= 3600 ? (int)v : 30;
    const char *missing = !datastore ? "datastore" : !cert ? "cert" : !key ? "key" : !ca ? "ca"
                        : !fps ? "manager_fingerprint" : NULL;
    if (missing) {
        log_err("%s: %s is required", cfg_path, missing);
        vmseal_vmconf_free(conf);
        return 2;
    }

    /* Before the KVM probe: a stop during the probe ends hostd cleanly. */
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    hostd_kvm_probe probe = {
        .qemu = cget(conf, "qemu"),
        .kernel = cget(conf, "probe_kernel"),
        .initrd = cget(conf, "probe_initrd"),
        .expect = "VMSEAL-POWEROFF",
        .timeout_ms = 20000,
        .stop = &stopping,
    };
    char probe_cache[4200];
    snprintf(probe_cache, sizeof(probe_cache), "%s/.kvm-probe", datastore);
    probe.cache_file = probe_cache;
    hostd_accel accel = VMSEAL_ACCEL_TCG;
    if (strcmp(accel_s, "kvm") == 0)
        accel = VMSEAL_ACCEL_KVM;
    else if (strcmp(accel_s, "auto") == 0 && probe.kernel)
        accel = hostd_qemu_pick_accel(&probe);
    else if (strcmp(accel_s, "tcg") != 0 && strcmp(accel_s, "auto") != 0) {
        log_err("accel must be auto, kvm or tcg");
        vmseal_vmconf_free(conf);
        return 2;
    }
    if (stopping) {
        log_info("stopping (during the KVM probe)");
        vmseal_vmconf_free(conf);
        return 0;
    }
    log_info("accelerator: %s", accel == VMSEAL_ACCEL_KVM ? "kvm" : "tcg");

    /* Privilege separation: the network process is forked here, before
     * any network code runs and before this process holds any key. It
     * serves HTTPS and calls the manager; this process (the monitor) keeps
     * the VMs, the KEKs and everything else (docs/architecture.md). */
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        log_err("socketpair: %s", strerror(errno));
        vmseal_vmconf_free(conf);
        return 1;
    }
    pid_t parent = getpid();
    fflush(stderr);
    pid_t child = fork();
    if (child < 0) {
        log_err("fork: %s", strerror(errno));
        vmseal_vmconf_free(conf);
        return 1;
    }
    if (child == 0) {
        close(sv[0]);
        char *title_end = argv[argc - 1] + strlen(argv[argc - 1]);
        hostd_net_config nc = {
            .fd = sv[1],
            .parent = parent,
            .listen = listen,
            .port = port,
            .cert = cert,
            .key = key,
            .ca = ca,
            .manager_subject = subject,
            .manager_fingerprint = manager_fp,
            .manager_url = cget(conf, "manager_url"),
            .manager_ca = cget(conf, "manager_ca") ? cget(conf, "manager_ca") : ca,
            .user = cget(conf, "network_user"),
            .stopping = &stopping,
            .title = argv[0],
            .title_len = (size_t)(title_end - argv[0]) + 1,
        };
        int rc = hostd_net_main(&nc);
        vmseal_vmconf_free(conf);
        return rc;
    }
    close(sv[1]);

    /* Host encryption mode: before anything else can crash (as root). */
    static hostd_hostmode hostmode;
    const char *em = cget(conf, "encryption_mode");
    if (em && strcmp(em, "yes") != 0 && strcmp(em, "no") != 0) {
        log_err("hostd.conf: encryption_mode must be yes or no");
        close(sv[0]);
        stop_child(child);
        vmseal_vmconf_free(conf);
        return 1;
    }
    if (em && strcmp(em, "yes") == 0) {
        const char *cpm = cget(conf, "core_pattern");
        hostd_hostmode_config hmc = {.key = cget(conf, "core_dump_key"),
                                     .dir = cget(conf, "core_dump_dir"),
                                     .handler = cget(conf, "core_dump_handler"),
                                     .manage = !cpm || strcmp(cpm, "check") != 0};
        if ((cpm && strcmp(cpm, "manage") != 0 && strcmp(cpm, "check") != 0) ||
            hostd_hostmode_setup(&hmc, &hostmode) < 0) {
            log_err("hostd.conf: %s", cpm && strcmp(cpm, "manage") != 0 && strcmp(cpm, "check") != 0
                                          ? "core_pattern must be manage or check"
                                          : vmseal_last_error());
            close(sv[0]);
            stop_child(child);
            vmseal_vmconf_free(conf);
            return 1;
        }
        if (hostmode.installed)
            log_info("host encryption mode: core dumps are sealed to %s (core_pattern %s)",
                     hmc.key, hostmode.pattern);
        else
            log_err("host encryption mode: core dumps are NOT sealed: %s", hostmode.error);
    }

    hostd_host_config hc = {
        .datastore = datastore,
        .provider = cget(conf, "provider"),
        .qemu = cget(conf, "qemu"),
        .accel = accel,
        .power_off_grace_ms = grace * 1000,
        .allowed_subject = subject,
        .name = name,
        .images = cget(conf, "images"),
        .qemu_user = cget(conf, "qemu_user"),
        .net = &vmnet,
        .disk_path = cget(conf, "disk_path"),
        .nbdkit = cget(conf, "nbdkit"),
        .nbd_plugin = cget(conf, "nbd_plugin"),
        .export_listen = cget(conf, "listen"),
        .hostmode = &hostmode,
    };
    hostd_host *h = NULL;
    hostd_monitor *mon = NULL;
    if (hostd_host_open(&hc, &h) < 0) {
        log_err("%s", vmseal_last_error());
        close(sv[0]);
        stop_child(child);
        vmseal_vmconf_free(conf);
        return 1;
    }
    hostd_monitor_config mcfg = {.host = h, .fd = sv[0], .manager_fingerprint = manager_fp};
    if (hostd_monitor_start(&mcfg, &mon) < 0 ||
        hostd_monitor_wait_ready(mon, 60000, &stopping, &port) < 0) {
        int quiet = stopping;
        if (!quiet)
            log_err("%s", vmseal_last_error());
        stop_child(child);
        if (mon)
            hostd_monitor_stop(mon);
        else
            close(sv[0]);
        hostd_host_close(h);
        vmseal_vmconf_free(conf);
        return quiet ? 0 : 1;
    }
    log_info("serving https://%s:%d/v1 for %s, datastore %s (network process %ld)",
             listen, port, subject ? subject : "the manager's certificate", datastore, (long)child);
    if (port_file) {
        char tmp[4200];
        snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
        FILE *f = fopen(tmp, "we");
        if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 || rename(tmp, port_file) != 0)
            log_warn("cannot write %s", port_file);
    }

    char self_url[600];
    snprintf(self_url, sizeof(self_url), "https://%s:%d", listen, port);
    manager_ctx mc = {.mon = mon, .host = h, .name = name, .datastore = datastore,
                      .url = cget(conf, "url") ? cget(conf, "url") : self_url,
                      .manager_url = cget(conf, "manager_url")};
    pthread_t mthread;
    int have_mthread = 0;
    if (mc.manager_url)
        have_mthread = pthread_create(&mthread, NULL, manager_thread, &mc) == 0;
    else /* No manager: pending operations wait for their KEKs to be PUT. */
        log_info("no manager_url: waiting for KEKs over the API");

    while (!stopping && hostd_monitor_alive(mon)) {
        for (int i = 0; i < 10 && !stopping && hostd_monitor_alive(mon); i++) {
            struct timespec ts = {0, 100000000L};
            nanosleep(&ts, NULL);
        }
        hostd_host_tick(h);
    }
    /* A network process that ends on its own (crash, protocol error, a
     * stray signal) ends hostd with status 1: the service manager starts it
     * again; VMs keep running as over any restart. A stop signal to both
     * (a process group) may reach the child first: wait a moment for ours. */
    for (int i = 0; i < 10 && !stopping; i++) {
        struct timespec ts = {0, 100000000L};
        nanosleep(&ts, NULL);
    }
    int rc = 0;
    if (!stopping) {
        log_err("the network process ended (%s): stopping with an error (running VMs keep running)",
                hostd_monitor_error(mon));
        rc = 1;
    } else {
        log_info("stopping (running VMs keep running)");
    }
    stop_child(child);
    if (have_mthread)
        pthread_join(mthread, NULL);
    hostd_monitor_stop(mon);
    hostd_host_close(h);
    vmseal_vmconf_free(conf);
    return rc;
}
