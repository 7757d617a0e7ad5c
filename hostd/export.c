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

#include <vmseal/log.h>

#include "blockserver.h"
#include "export.h"
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

/* Serve one connection: spawn nbdkit on it, wait for the end (bounded). */
static void serve(export_job *j, int conn)
{
    int pipefd[2] = {-1, -1};
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
    vmseal_secret_free(j->pass);
    j->pass = NULL;
    char logname[96];
    snprintf(logname, sizeof(logname), "%s/export-disk%zu.log", hostd_vm_home(j->vm), j->disk);
    int logfd = open(logname, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    pid_t pid = -1;
    if (r == 0 && logfd < 0)
        r = -errno;
    if (r == 0)
        r = hostd_nbdkit_spawn((const char *const *)j->argv, conn, logfd, pipefd[0], j->confine, 1,
                               &pid);
    if (pipefd[0] >= 0)
        close(pipefd[0]);
    if (logfd >= 0)
        close(logfd);
    close(conn);
    if (r < 0) {
        vmseal_log(VMSEAL_LOG_ERROR, "VM %s: export of disk %zu: cannot start nbdkit: %s",
                   hostd_vm_name(j->vm), j->disk, strerror(-r));
        return;
    }
    int64_t end = hostd_now_ms() + (int64_t)HOSTD_EXPORT_RUN_MAX * 1000;
    int st = 0;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid || (w < 0 && errno != EINTR))
            break;
        if (stopping || hostd_now_ms() >= end) {
            kill(pid, SIGKILL);
            (void)waitpid(pid, &st, 0);
            break;
        }
        struct timespec ts = {0, 100000000L};
        nanosleep(&ts, NULL);
    }
    vmseal_log(VMSEAL_LOG_INFO, "VM %s: export of disk %zu ended (nbdkit status %d)",
               hostd_vm_name(j->vm), j->disk,
               WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

static void *export_main(void *arg)
{
    export_job *j = arg;
    int conn = -1;
    while (!stopping) {
        int64_t left = j->deadline_ms - hostd_now_ms();
        if (left <= 0)
            break;
        struct pollfd p = {.fd = j->listen_fd, .events = POLLIN};
        int n = poll(&p, 1, left > 200 ? 200 : (int)left);
        if (n > 0) {
            conn = accept4(j->listen_fd, NULL, NULL, SOCK_CLOEXEC);
            if (conn >= 0)
                break;
        }
    }
    /* one connection, or none in time: the endpoint is closed either way */
    close(j->listen_fd);
    j->listen_fd = -1;
    if (conn >= 0)
        serve(j, conn);
    else if (!stopping)
        vmseal_log(VMSEAL_LOG_INFO, "VM %s: export of disk %zu expired unused",
                   hostd_vm_name(j->vm), j->disk);
    remove_psk(j);
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
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1) != 0)
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

int hostd_export_start(hostd_vm *vm, const hostd_host_env *env, size_t idx, int ttl_s,
                       json_t **out)
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
    int r = hostd_vm_export_begin(vm, env, idx, file, sizeof(file), &size, &j->pass);
    if (r < 0) {
        free(j);
        return r;
    }
    if (!dp->nbd_ok)
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
        arg(j, strdup(dp->plugin));
        arg(j, hostd_asprintf("file=%s/%s", hostd_vm_home(vm), file));
        arg(j, strdup(j->pass ? "passfd=3" : "raw=1"));
        arg(j, strdup("multi-conn-mode=disable"));
        for (size_t i = 0; i < j->argc; i++)
            if (!j->argv[i])
                r = vmseal_fail(ENOMEM, "out of memory");
    }
    j->deadline_ms = hostd_now_ms() + (int64_t)ttl_s * 1000;
    int encrypted = j->pass != NULL;   /* j is the thread's once it runs */
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
        hostd_vm_export_end(vm);
        job_free(j);
        OPENSSL_cleanse(psk_hex, sizeof(psk_hex));
        return r;
    }
    int v6 = strchr(listen_addr, ':') != NULL;
    char *uri = hostd_asprintf("nbds://%s@%s%s%s:%d/", PSK_IDENTITY, v6 ? "[" : "", listen_addr,
                               v6 ? "]" : "", port);
    *out = json_pack("{s:s, s:i, s:s?, s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:b}", "host", listen_addr,
                     "port", port, "uri", uri, "tls", "psk", "psk_identity", PSK_IDENTITY, "psk",
                     psk_hex, "expires", (json_int_t)(time(NULL) + ttl_s), "disk", (json_int_t)idx,
                     "size", (json_int_t)size, "view", encrypted ? "decrypted" : "plain",
                     "read_only", 1);
    free(uri);
    OPENSSL_cleanse(psk_hex, sizeof(psk_hex));
    vmseal_log(VMSEAL_LOG_INFO, "VM %s: disk %zu exported (%s, read-only) on %s port %d for one "
               "connection within %d s", hostd_vm_name(vm), idx, encrypted ? "decrypted" : "plain",
               listen_addr, port, ttl_s);
    return 0;
}
