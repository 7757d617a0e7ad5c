/* vmseal-hostd — one-time NBD-over-TLS disk export (export.h). */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <vmseal/keysafe.h>
#include <vmseal/log.h>
#include <vmseal/vmrecord.h>

#include "blockserver.h"
#include "export.h"
#include "fleece.h"
#include "strutil.h"

#define PSK_BYTES 32
#define PSK_IDENTITY "vmseal"

typedef struct export_job {
    struct export_job *next;
    pthread_t thread;
    hostd_vm *vm;
    size_t disk;
    int listen_fd;
    int64_t deadline_ms;            /* to connect */
    vmseal_secret *pass;            /* NULL: a plain disk */
    hostd_fleece *fleece;           /* a running VM: its point-in-time view */
    char *argv[20];
    size_t argc;
    char dir[64], psk_path[96];
    int confine;
    int done;
} export_job;

static pthread_mutex_t jobs_lock = PTHREAD_MUTEX_INITIALIZER;
static export_job *jobs;
static atomic_int stopping;   /* hostd stops: every export ends */

/* The key file: wiped, then removed with its directory. */
static void remove_psk(export_job *j)
{
    if (j->psk_path[0]) {
        int fd = open(j->psk_path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd >= 0) {
            char zero[128] = {0};
            ssize_t w = write(fd, zero, sizeof(zero));
            (void)w;
            close(fd);
        }
        unlink(j->psk_path);
        j->psk_path[0] = '\0';
    }
    if (j->dir[0])
        rmdir(j->dir);
    j->dir[0] = '\0';
}

static void job_free(export_job *j)
{
    if (j->listen_fd >= 0)
        close(j->listen_fd);
    vmseal_secret_free(j->pass);
    for (size_t i = 0; i < j->argc; i++)
        free(j->argv[i]);
    remove_psk(j);
    free(j);
}

/* nbdkit's log filter writes "DATE TIME connection=N Connect export=..."
 * when a client has finished the negotiation: with --tls=require that is
 * after a TLS handshake with the export's key (no option but STARTTLS is
 * answered before it). 1 when line is that line. */
static int is_connect_line(const char *line)
{
    int y, mo, d, h, mi, n = 0;
    double sec;
    unsigned long conn;
    return sscanf(line, "%4d-%2d-%2d %2d:%2d:%lf connection=%lu Connect %n", &y, &mo, &d, &h, &mi,
                  &sec, &conn, &n) == 7 && n > 0;
}

/* One line of nbdkit's stderr: its own messages and the log filter's
 * connect/disconnect into the export log (not its line a request). */
static void take_line(const char *line, int logfd, int *connected)
{
    int filter_line = line[0] >= '0' && line[0] <= '9';
    if (filter_line && is_connect_line(line))
        *connected = 1;
    if (logfd >= 0 && (!filter_line || strstr(line, " Connect ") || strstr(line, " Disconnect "))) {
        ssize_t w = write(logfd, line, strlen(line));
        w = write(logfd, "\n", 1);
        (void)w;
    }
}

/* Serve one connection: spawn nbdkit on it, wait for the end (bounded).
 * 1 when the client completed the TLS handshake and the negotiation (the
 * endpoint is used up), 0 when it did not (a port probe, a wrong key, a
 * client silent for HOSTD_EXPORT_HANDSHAKE_S: killed), -1 when nbdkit
 * could not start. */
static int serve(export_job *j, int conn)
{
    int pipefd[2] = {-1, -1}, errp[2] = {-1, -1};
    int r = 0;
    if (j->pass) {
        if (pipe2(pipefd, O_CLOEXEC) != 0)
            r = -errno;
        size_t n = vmseal_secret_len(j->pass);
        if (r == 0 && write(pipefd[1], vmseal_secret_cdata(j->pass), n) != (ssize_t)n)
            r = -EIO;
        if (pipefd[1] >= 0)
            close(pipefd[1]);
    }
    if (r == 0 && j->fleece) {   /* descriptor 3: a connection to QEMU's export of the view */
        pipefd[0] = hostd_fleece_connect(j->fleece);
        if (pipefd[0] < 0) {
            r = pipefd[0];
            pipefd[0] = -1;
        }
    }
    if (r == 0 && pipe2(errp, O_CLOEXEC) != 0)
        r = -errno;
    if (r == 0 && fcntl(errp[0], F_SETFL, O_NONBLOCK) != 0)
        r = -errno;
    char logname[96];
    snprintf(logname, sizeof(logname), "%s/export-disk%zu.log", hostd_vm_home(j->vm), j->disk);
    int logfd = open(logname, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    pid_t pid = -1;
    if (r == 0 && logfd < 0)
        r = -errno;
    if (r == 0)
        r = hostd_nbdkit_spawn((const char *const *)j->argv, conn, errp[1], pipefd[0], j->confine,
                               1, &pid);
    if (pipefd[0] >= 0)
        close(pipefd[0]);
    if (errp[1] >= 0)
        close(errp[1]);
    close(conn);
    if (r < 0) {
        vmseal_log(VMSEAL_LOG_ERROR, "VM %s: export of disk %zu: cannot start nbdkit: %s",
                   hostd_vm_name(j->vm), j->disk, strerror(-r));
        if (errp[0] >= 0)
            close(errp[0]);
        if (logfd >= 0)
            close(logfd);
        return -1;
    }
    int64_t start = hostd_now_ms();
    int64_t end = start + (int64_t)HOSTD_EXPORT_RUN_MAX * 1000;
    int64_t hs_end = start + (int64_t)HOSTD_EXPORT_HANDSHAKE_S * 1000;
    int st = 0, connected = 0, timed_out = 0;
    char line[1024];
    size_t ll = 0;
    for (;;) {
        struct pollfd p = {.fd = errp[0], .events = POLLIN};
        if (errp[0] >= 0 && poll(&p, 1, 100) > 0) {
            char buf[4096];
            ssize_t n = read(errp[0], buf, sizeof(buf));
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                close(errp[0]);
                errp[0] = -1;
            }
            for (ssize_t i = 0; i < n; i++) {
                if (buf[i] == '\n' || ll == sizeof(line) - 1) {   /* long lines: cut */
                    line[ll] = '\0';
                    take_line(line, logfd, &connected);
                    ll = 0;
                    if (buf[i] == '\n')
                        continue;
                }
                line[ll++] = buf[i];
            }
        } else if (errp[0] < 0) {
            struct timespec ts = {0, 100000000L};
            nanosleep(&ts, NULL);
        }
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid || (w < 0 && errno != EINTR))
            break;
        int64_t now = hostd_now_ms();
        if (!connected && now >= hs_end)
            timed_out = 1;
        if (stopping || now >= end || timed_out) {
            kill(pid, SIGKILL);
            (void)waitpid(pid, &st, 0);
            break;
        }
    }
    /* what is still in the pipe */
    for (ssize_t n; errp[0] >= 0 && (n = read(errp[0], line + ll, sizeof(line) - 1 - ll)) > 0;) {
        ll += (size_t)n;
        line[ll] = '\0';
        char *nl;
        while ((nl = memchr(line, '\n', ll))) {
            *nl = '\0';
            take_line(line, logfd, &connected);
            ll -= (size_t)(nl + 1 - line);
            memmove(line, nl + 1, ll);
        }
        if (ll == sizeof(line) - 1) {
            line[ll] = '\0';
            take_line(line, logfd, &connected);
            ll = 0;
        }
    }
    if (ll) {
        line[ll] = '\0';
        take_line(line, logfd, &connected);
    }
    if (errp[0] >= 0)
        close(errp[0]);
    if (logfd >= 0)
        close(logfd);
    if (connected)
        vmseal_log(VMSEAL_LOG_INFO, "VM %s: export of disk %zu ended (nbdkit status %d)",
                   hostd_vm_name(j->vm), j->disk,
                   WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    else
        vmseal_log(VMSEAL_LOG_WARNING, "VM %s: export of disk %zu: a connection that did not "
                   "complete the TLS handshake%s (not counted: the endpoint stays open)",
                   hostd_vm_name(j->vm), j->disk, timed_out ? " in time" : "");
    return connected;
}

static void *export_main(void *arg)
{
    export_job *j = arg;
    int used = 0;
    /* Connections one at a time until one completes the TLS handshake with
     * the export's key (it uses the endpoint up) or the time to connect
     * ends: a port probe or a wrong key does not burn the export. */
    while (!stopping && !used) {
        int64_t left = j->deadline_ms - hostd_now_ms();
        if (left <= 0)
            break;
        struct pollfd p = {.fd = j->listen_fd, .events = POLLIN};
        int n = poll(&p, 1, left > 200 ? 200 : (int)left);
        if (n <= 0)
            continue;
        int conn = accept4(j->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (conn < 0)
            continue;
        int r = serve(j, conn);
        if (r != 0)
            used = 1;   /* served, or nbdkit cannot start: the export ends */
    }
    /* the endpoint is closed: used, or not used in time */
    close(j->listen_fd);
    j->listen_fd = -1;
    vmseal_secret_free(j->pass);
    j->pass = NULL;
    if (!used && !stopping)
        vmseal_log(VMSEAL_LOG_INFO, "VM %s: export of disk %zu expired unused",
                   hostd_vm_name(j->vm), j->disk);
    remove_psk(j);
    if (j->fleece) {   /* the VM is still busy: the monitor is ours */
        hostd_fleece_stop(j->fleece, hostd_vm_export_monitor(j->vm));
        j->fleece = NULL;
    }
    hostd_vm_export_end(j->vm);
    pthread_mutex_lock(&jobs_lock);
    j->done = 1;
    pthread_mutex_unlock(&jobs_lock);
    return NULL;
}

/* Join and free the jobs that ended (lock held). */
static void reap_locked(int all)
{
    for (export_job **pp = &jobs; *pp;) {
        export_job *j = *pp;
        if (j->done || all) {
            *pp = j->next;
            pthread_mutex_unlock(&jobs_lock);
            pthread_join(j->thread, NULL);
            job_free(j);
            pthread_mutex_lock(&jobs_lock);
            pp = &jobs;
        } else {
            pp = &j->next;
        }
    }
}

void hostd_export_stop_all(void)
{
    stopping = 1;
    pthread_mutex_lock(&jobs_lock);
    reap_locked(1);
    pthread_mutex_unlock(&jobs_lock);
    stopping = 0;
}

static int open_listener(const char *addr, int *port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_PASSIVE};
    struct addrinfo *ai = NULL;
    int g = getaddrinfo(addr, "0", &hints, &ai);
    if (g != 0)
        return vmseal_fail(EINVAL, "export: listen address %s: %s", addr, gai_strerror(g));
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int r = 0;
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 8) != 0)
        r = vmseal_fail(errno, "export: cannot listen on %s: %s", addr, strerror(errno));
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (r == 0 && getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        r = vmseal_fail(errno, "export: getsockname: %s", strerror(errno));
    if (r < 0) {
        if (fd >= 0)
            close(fd);
        return r;
    }
    char serv[16];
    if (getnameinfo((struct sockaddr *)&ss, sl, NULL, 0, serv, sizeof(serv), NI_NUMERICSERV) != 0) {
        close(fd);
        return vmseal_fail(EIO, "export: getnameinfo failed");
    }
    *port = atoi(serv);
    return fd;
}

/* The one-time PSK: "vmseal:HEX" in DIR/psk under a fresh directory
 * (0400 in 0700; with qemu_user root:ITS-GROUP 0440 in 0750); hex also into
 * psk_hex. */
static int write_psk(export_job *j, const char *run_as, char psk_hex[2 * PSK_BYTES + 1])
{
    unsigned char key[PSK_BYTES];
    if (RAND_bytes(key, sizeof(key)) != 1)
        return vmseal_fail(EIO, "export: no random bytes");
    for (size_t i = 0; i < sizeof(key); i++)
        snprintf(psk_hex + 2 * i, 3, "%02x", key[i]);
    OPENSSL_cleanse(key, sizeof(key));
    snprintf(j->dir, sizeof(j->dir), "/tmp/vmseal-export.XXXXXX");
    if (!mkdtemp(j->dir)) {
        j->dir[0] = '\0';
        return vmseal_fail(errno, "export: mkdtemp: %s", strerror(errno));
    }
    snprintf(j->psk_path, sizeof(j->psk_path), "%s/psk", j->dir);
    int fd = open(j->psk_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0400);
    if (fd < 0) {
        j->psk_path[0] = '\0';
        return vmseal_fail(errno, "export: %s", strerror(errno));
    }
    char line[16 + 2 * PSK_BYTES];
    int n = snprintf(line, sizeof(line), "%s:%s\n", PSK_IDENTITY, psk_hex);
    int ok = write(fd, line, (size_t)n) == n;
    OPENSSL_cleanse(line, sizeof(line));
    if (ok && j->confine) {
        /* nbdkit reads it as root without CAP_DAC_OVERRIDE (owner) and,
         * after -u, as the user (its group): root:GROUP, 0440 in 0750 */
        struct passwd *pw = getpwnam(run_as);
        ok = pw && fchown(fd, 0, pw->pw_gid) == 0 && fchmod(fd, 0440) == 0 &&
             chown(j->dir, 0, pw->pw_gid) == 0 && chmod(j->dir, 0750) == 0;
    }
    ok &= close(fd) == 0;
    if (!ok)
        return vmseal_fail(EIO, "export: cannot write the key file");
    return 0;
}

static void arg(export_job *j, char *s)
{
    if (j->argc < sizeof(j->argv) / sizeof(j->argv[0]) - 1)
        j->argv[j->argc++] = s;
    else
        free(s);
}

/* The key bundle of an encrypted disk: its key safe as it is (see export.h). */
static json_t *key_bundle(hostd_vm *vm, size_t idx)
{
    vmseal_vmrec *rec = hostd_vm_record(vm);
    if (!rec)
        return NULL;
    json_t *b = NULL;
    char obj[64];
    vmseal_keysafe_info info;
    const char *ks = idx < rec->ndisks ? rec->disks[idx].keysafe : NULL;
    if (!ks)
        vmseal_fail(EINVAL, "VM %s: disk %zu is not encrypted: no ciphertext to export",
                    hostd_vm_name(vm), idx);
    else if (vmseal_vmrec_keysafe_object(rec, (long)idx, 0, obj, sizeof(obj)) == 0 &&
             vmseal_keysafe_parse(ks, &info) == 0)
        b = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:s}", "format",
                      "vmseal-disk-key-bundle-1", "vm", rec->uuid, "disk", (json_int_t)idx,
                      "disk_id", obj, "luks_uuid", rec->disks[idx].luks_uuid, "kek_id",
                      info.kek_id, "key_provider", info.provider, "keysafe", ks);
    vmseal_vmrec_free(rec);
    return b;
}

int hostd_export_start(hostd_vm *vm, const hostd_host_env *env, size_t idx, int ttl_s,
                       int ciphertext, json_t **out)
{
    *out = NULL;
    pthread_mutex_lock(&jobs_lock);
    reap_locked(0);
    pthread_mutex_unlock(&jobs_lock);
    const hostd_diskpath *dp = env->diskpath;
    if (!dp || !dp->nbdkit[0] || access(dp->nbdkit, X_OK) != 0)
        return vmseal_fail(ENOTSUP, "export needs nbdkit on this host");
    if (ttl_s <= 0)
        ttl_s = HOSTD_EXPORT_TTL_DEFAULT;
    export_job *j = calloc(1, sizeof(*j));
    if (!j)
        return vmseal_fail(ENOMEM, "out of memory");
    j->listen_fd = -1;
    j->vm = vm;
    j->disk = idx;
    char file[VMSEAL_VMREC_FILE_MAX + 1];
    uint64_t size = 0;
    struct hostd_qmp *live = NULL;
    int r = hostd_vm_export_begin(vm, env, idx, file, sizeof(file), &size, &j->pass, &live);
    if (r < 0) {
        free(j);
        return r;
    }
    /* encrypted or not, a running VM's disk is read through QEMU's own
     * (decrypted) node; the vmseal plugin is needed for a powered-off one */
    int encrypted = j->pass != NULL || (live && hostd_vm_disk_encrypted(vm, idx));
    json_t *bundle = NULL;
    if (ciphertext) {
        /* the image file as it is: a running VM writes it meanwhile (and on
         * the NBD path QEMU has no node of the ciphertext to fleece) */
        if (live)
            r = vmseal_fail(EBUSY, "VM %s is powered on: its ciphertext is exported from the "
                            "powered-off VM", hostd_vm_name(vm));
        else if (!(bundle = key_bundle(vm, idx)))
            r = -EINVAL;
        else {
            struct stat st;   /* header and payload: the whole file */
            if (fstatat(hostd_vm_home_dirfd(vm), file, &st, AT_SYMLINK_NOFOLLOW) != 0)
                r = vmseal_fail(errno, "%s: %s", file, strerror(errno));
            else
                size = (uint64_t)st.st_size;
        }
        vmseal_secret_free(j->pass);   /* nothing is decrypted */
        j->pass = NULL;
    } else if (live)
        r = hostd_fleece_start(live, hostd_vm_home_dirfd(vm), hostd_vm_home(vm), idx, size,
                               &j->fleece);
    else if (!dp->nbd_ok)
        r = vmseal_fail(ENOTSUP, "export needs nbdkit and its vmseal plugin here (%s)", dp->why);
    const char *run_as = env->qemu_user;
    j->confine = run_as && *run_as && geteuid() == 0;
    char psk_hex[2 * PSK_BYTES + 1] = "";
    if (r == 0)
        r = write_psk(j, run_as, psk_hex);
    const char *listen_addr = env->export_listen ? env->export_listen : "127.0.0.1";
    int port = 0;
    if (r == 0) {
        j->listen_fd = open_listener(listen_addr, &port);
        if (j->listen_fd < 0) {
            r = j->listen_fd;
            j->listen_fd = -1;
        }
    }
    if (r == 0) {
        arg(j, strdup(dp->nbdkit));
        arg(j, strdup("-s"));
        arg(j, strdup("--log=stderr"));
        arg(j, strdup("--tls=require"));
        arg(j, hostd_asprintf("--tls-psk=%s", j->psk_path));
        arg(j, strdup("-r"));
        char group[64];
        if (j->confine && (r = hostd_user_group(run_as, group, sizeof(group))) == 0) {
            arg(j, strdup("-u"));
            arg(j, strdup(run_as));
            arg(j, strdup("-g"));
            arg(j, strdup(group));
        }
        /* one connection: clients such as nbdcopy must not count on more */
        arg(j, strdup("--filter=multi-conn"));
        /* its "Connect" line tells hostd the client got past TLS (serve) */
        arg(j, strdup("--filter=log"));
        if (j->fleece) {   /* relay to QEMU's NBD export of the view */
            arg(j, strdup("nbd"));
            arg(j, strdup("socket-fd=3"));
            arg(j, hostd_asprintf("export=%s", hostd_fleece_export_name(j->fleece)));
        } else {
            arg(j, strdup(dp->plugin));
            arg(j, hostd_asprintf("file=%s/%s", hostd_vm_home(vm), file));
            arg(j, strdup(j->pass ? "passfd=3" : "raw=1"));   /* raw: plain or ciphertext */
        }
        arg(j, strdup("multi-conn-mode=disable"));
        arg(j, strdup("logfile=/dev/stderr"));
        for (size_t i = 0; i < j->argc; i++)
            if (!j->argv[i])
                r = vmseal_fail(ENOMEM, "out of memory");
    }
    j->deadline_ms = hostd_now_ms() + (int64_t)ttl_s * 1000;
    int running = j->fleece != NULL;   /* j is the thread's once it runs */
    if (r == 0) {
        pthread_mutex_lock(&jobs_lock);
        if (pthread_create(&j->thread, NULL, export_main, j) != 0) {
            r = vmseal_fail(EAGAIN, "export: cannot start a thread");
        } else {
            j->next = jobs;
            jobs = j;
        }
        pthread_mutex_unlock(&jobs_lock);
    }
    if (r < 0) {
        hostd_fleece_stop(j->fleece, live);
        j->fleece = NULL;
        json_decref(bundle);
        hostd_vm_export_end(vm);
        job_free(j);
        OPENSSL_cleanse(psk_hex, sizeof(psk_hex));
        return r;
    }
    int v6 = strchr(listen_addr, ':') != NULL;
    char *uri = hostd_asprintf("nbds://%s@%s%s%s:%d/", PSK_IDENTITY, v6 ? "[" : "", listen_addr,
                               v6 ? "]" : "", port);
    *out = json_pack("{s:s, s:i, s:s?, s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:b, s:s}", "host", listen_addr,
                     "port", port, "uri", uri, "tls", "psk", "psk_identity", PSK_IDENTITY, "psk",
                     psk_hex, "expires", (json_int_t)(time(NULL) + ttl_s), "disk", (json_int_t)idx,
                     "size", (json_int_t)size,
                     "view", ciphertext ? "ciphertext" : encrypted ? "decrypted" : "plain",
                     "read_only", 1, "source", running ? "running" : "powered-off");
    free(uri);
    if (bundle)
        json_object_set_new(*out, "bundle", bundle);
    OPENSSL_cleanse(psk_hex, sizeof(psk_hex));
    vmseal_log(VMSEAL_LOG_INFO, "VM %s: disk %zu exported (%s%s, read-only) on %s port %d for one "
               "connection within %d s", hostd_vm_name(vm), idx,
               ciphertext ? "ciphertext" : encrypted ? "decrypted" : "plain",
               running ? ", point-in-time view of the running VM" : "", listen_addr, port, ttl_s);
    return 0;
}
