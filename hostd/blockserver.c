/* vmseal-hostd — nbdkit servers for encrypted disks (blockserver.h). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "blockserver.h"
#include "strutil.h"

#define PASS_MAX 512   /* the plugin reads at most this much */

/* ---- the host's choice ---- */

static int find_exe(const char *name, char *out, size_t len)
{
    if (strchr(name, '/')) {
        if (access(name, X_OK) != 0)
            return -1;
        hostd_copy_str(out, len, name);
        return 0;
    }
    const char *path = getenv("PATH");
    char *copy = strdup(path && *path ? path : "/usr/local/bin:/usr/bin:/bin");
    char *save = NULL;
    int r = -1;
    for (char *d = copy ? strtok_r(copy, ":", &save) : NULL; d; d = strtok_r(NULL, ":", &save)) {
        char *full = hostd_asprintf("%s/%s", d, name);
        struct stat st;
        if (full && stat(full, &st) == 0 && S_ISREG(st.st_mode) && access(full, X_OK) == 0) {
            hostd_copy_str(out, len, full);
            r = 0;
        }
        free(full);
        if (r == 0)
            break;
    }
    free(copy);
    return r;
}

/* `nbdkit PLUGIN --dump-plugin`: does this nbdkit load the plugin? */
static int plugin_loads(const char *nbdkit, const char *plugin, char *why, size_t len)
{
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, len, "fork: %s", strerror(errno));
        return 0;
    }
    if (pid == 0) {
        int nul = open("/dev/null", O_RDWR);
        if (nul < 0 || dup2(nul, 0) < 0 || dup2(nul, 1) < 0 || dup2(nul, 2) < 0)
            _exit(126);
        closefrom(3);
        execl(nbdkit, nbdkit, plugin, "--dump-plugin", (char *)NULL);
        _exit(127);
    }
    int64_t deadline = hostd_now_ms() + 20000;
    int st = 0;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR) {
            snprintf(why, len, "waitpid: %s", strerror(errno));
            return 0;
        }
        if (hostd_now_ms() >= deadline) {
            kill(pid, SIGKILL);
            (void)waitpid(pid, &st, 0);
            snprintf(why, len, "%.200s --dump-plugin did not finish", nbdkit);
            return 0;
        }
        hostd_sleep_ms(20);
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 1;
    snprintf(why, len, "%.150s cannot load %.200s (exit status %d)", nbdkit, plugin,
             WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    return 0;
}

int hostd_diskpath_init(hostd_diskpath *p, const char *mode, const char *nbdkit,
                        const char *plugin)
{
    memset(p, 0, sizeof(*p));
    if (!mode || strcmp(mode, "nbd") == 0)
        p->want_nbd = 1;
    else if (strcmp(mode, "qemu-luks") != 0)
        return vmseal_fail(EINVAL, "disk_path must be nbd or qemu-luks, not %s", mode);
    const char *bin = nbdkit && *nbdkit ? nbdkit : "nbdkit";
    const char *plug = plugin && *plugin ? plugin : VMSEAL_NBD_PLUGIN_DEFAULT;
    hostd_copy_str(p->plugin, sizeof(p->plugin), plug);
    /* checked in both modes: disk exports and vm.disk_path = nbd use it */
    struct stat st;
    char why[400];
    if (find_exe(bin, p->nbdkit, sizeof(p->nbdkit)) != 0) {
        hostd_copy_str(p->nbdkit, sizeof(p->nbdkit), bin);
        snprintf(p->why, sizeof(p->why), "nbd unavailable (%.200s is not installed): QEMU's luks "
                 "driver instead", bin);
    } else if (stat(plug, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(p->why, sizeof(p->why), "nbd unavailable (no plugin at %.300s): QEMU's luks "
                 "driver instead", plug);
    } else if (!plugin_loads(p->nbdkit, plug, why, sizeof(why))) {
        snprintf(p->why, sizeof(p->why), "nbd unavailable (%.400s): QEMU's luks driver instead", why);
    } else {
        p->nbd_ok = 1;
        snprintf(p->why, sizeof(p->why), "nbd: %.200s with %.250s", p->nbdkit, plug);
    }
    if (!p->want_nbd)
        snprintf(p->why, sizeof(p->why), "qemu-luks (disk_path = qemu-luks in hostd.conf; nbd %s)",
                 p->nbd_ok ? "available" : "unavailable");
    return 0;
}

int hostd_diskpath_use_nbd(const hostd_diskpath *p, const char *vm_override)
{
    if (!p || !p->nbd_ok)
        return 0;
    if (vm_override)
        return strcmp(vm_override, "nbd") == 0;
    return p->want_nbd;
}

/* ---- records in the VM home ---- */

static void rec_name(char *buf, size_t len, size_t index, const char *what)
{
    snprintf(buf, len, "nbd-disk%zu.%s", index, what);
}

static pid_t read_pid(int home_fd, const char *name)
{
    int fd = openat(home_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return 0;
    char buf[32];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *end = NULL;
    long v = strtol(buf, &end, 10);
    if (v <= 1 || v > 4194304 || !end || (*end && *end != '\n'))
        return 0;
    return (pid_t)v;
}

static int write_pid(int home_fd, size_t index, pid_t pid)
{
    char name[64], tmp[72];
    rec_name(name, sizeof(name), index, "pid");
    snprintf(tmp, sizeof(tmp), "%s.tmp", name);
    unlinkat(home_fd, tmp, 0);
    int fd = openat(home_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return vmseal_fail(errno, "cannot record the disk server: %s", strerror(errno));
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%d\n", (int)pid);
    int ok = write(fd, buf, (size_t)n) == n;
    ok &= close(fd) == 0;
    if (!ok || renameat(home_fd, tmp, home_fd, name) != 0) {
        int e = errno ? errno : EIO;
        unlinkat(home_fd, tmp, 0);
        return vmseal_fail(e, "cannot record the disk server: %s", strerror(e));
    }
    return 0;
}

/* Is pid alive and the server of HOME/FILE? Reaps it when it is our child. */
static int server_alive(pid_t pid, const char *home, const char *file)
{
    int st;
    pid_t w = waitpid(pid, &st, WNOHANG);
    if (w == pid)
        return 0;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char buf[8192];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;   /* a zombie has an empty cmdline */
    buf[n] = '\0';
    char *want = hostd_asprintf("file=%s/%s", home, file);
    int found = 0;
    for (char *p = buf; want && p < buf + n; p += strlen(p) + 1)
        if (strcmp(p, want) == 0)
            found = 1;
    free(want);
    return found;
}

hostd_blockserver_state hostd_blockserver_query(int home_fd, const char *home, size_t index,
                                                const char *file, pid_t *pid_out)
{
    char name[64];
    rec_name(name, sizeof(name), index, "pid");
    pid_t pid = read_pid(home_fd, name);
    if (pid_out)
        *pid_out = pid;
    if (pid > 0)
        return server_alive(pid, home, file) ? HOSTD_BS_RUNNING : HOSTD_BS_EXITED;
    rec_name(name, sizeof(name), index, "exited");
    pid = read_pid(home_fd, name);
    if (pid_out)
        *pid_out = pid;
    return pid > 0 ? HOSTD_BS_EXITED : HOSTD_BS_NONE;
}

int hostd_blockserver_note_exit(int home_fd, size_t index)
{
    char from[64], to[64];
    rec_name(from, sizeof(from), index, "pid");
    rec_name(to, sizeof(to), index, "exited");
    return renameat(home_fd, from, home_fd, to) == 0;
}

void hostd_blockserver_stop_all(int home_fd, const char *home, size_t ndisks,
                                const char *const *files, int timeout_ms)
{
    for (size_t i = 0; i < ndisks; i++) {
        char name[64];
        rec_name(name, sizeof(name), i, "pid");
        pid_t pid = read_pid(home_fd, name);
        if (pid > 0 && files[i] && server_alive(pid, home, files[i])) {
            kill(pid, SIGTERM);
            int64_t deadline = hostd_now_ms() + timeout_ms;
            while (server_alive(pid, home, files[i]) && hostd_now_ms() < deadline)
                hostd_sleep_ms(20);
            if (server_alive(pid, home, files[i])) {
                kill(pid, SIGKILL);
                deadline = hostd_now_ms() + 10000;
                while (server_alive(pid, home, files[i]) && hostd_now_ms() < deadline)
                    hostd_sleep_ms(20);
            }
        }
        unlinkat(home_fd, name, 0);
        rec_name(name, sizeof(name), i, "exited");
        unlinkat(home_fd, name, 0);
    }
}

void hostd_blockserver_log_tail(int home_fd, size_t index, char *buf, size_t len)
{
    char name[64];
    rec_name(name, sizeof(name), index, "log");
    hostd_fd_last_line(openat(home_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), buf, len);
}

/* ---- start ---- */

int hostd_user_group(const char *user, char *group, size_t len)
{
    struct passwd *pw = getpwnam(user);
    struct group *gr = pw ? getgrgid(pw->pw_gid) : NULL;
    if (!gr)
        return vmseal_fail(ENOENT, "user %s (qemu_user) or its group does not exist", user);
    if (strlen(gr->gr_name) >= len)
        return vmseal_fail(ENAMETOOLONG, "group name of %s is too long", user);
    hostd_copy_str(group, len, gr->gr_name);
    return 0;
}

int hostd_nbdkit_spawn(const char *const argv[], int conn_fd, int log_fd, int key_fd, int confine,
                       int die_with_parent, pid_t *pid_out)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return vmseal_fail(errno, "fork: %s", strerror(errno));
    if (pid == 0) {
        if (die_with_parent && (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent))
            _exit(126);
        setsid();
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        /* out of the way first, then 0, 1 (the connection), 2 (log), 3 (key) */
        int c = fcntl(conn_fd, F_DUPFD_CLOEXEC, 64);
        int l = fcntl(log_fd, F_DUPFD_CLOEXEC, 64);
        int k = key_fd >= 0 ? fcntl(key_fd, F_DUPFD_CLOEXEC, 64) : 0;
        if (c < 0 || l < 0 || k < 0 || dup2(c, 0) < 0 || dup2(c, 1) < 0 || dup2(l, 2) < 0 ||
            (key_fd >= 0 && dup2(k, 3) < 0))
            _exit(126);
        if (confine)
            for (int cap = 0; cap <= 63; cap++)
                if (cap != CAP_SETUID && cap != CAP_SETGID &&
                    prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
                    _exit(126);
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
            _exit(126);
        closefrom(key_fd >= 0 ? 4 : 3);
        /* nothing of hostd's environment: the server needs none */
        static char *const envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                     NULL};
        execve(argv[0], (char *const *)argv, envp);
        static const char msg[] = "vmseal: cannot execute nbdkit\n";
        ssize_t wr = write(2, msg, sizeof(msg) - 1);
        (void)wr;
        _exit(127);
    }
    *pid_out = pid;
    return 0;
}

int hostd_blockserver_start(const hostd_blockserver_spec *s, int *qemu_sock)
{
    *qemu_sock = -1;
    const hostd_diskpath *p = s->path;
    if (!p || !p->nbd_ok)
        return vmseal_fail(ENOTSUP, "the nbd disk path is not available here");
    size_t plen = vmseal_secret_len(s->passphrase);
    if (plen == 0 || plen > PASS_MAX)
        return vmseal_fail(EINVAL, "disk %zu: bad passphrase length", s->index);
    int confine = s->run_as && *s->run_as && geteuid() == 0;
    char group[64];
    if (confine && hostd_user_group(s->run_as, group, sizeof(group)) < 0)
        return -ENOENT;
    char *file_arg = hostd_asprintf("file=%s/%s", s->home, s->file);
    char logname[64];
    rec_name(logname, sizeof(logname), s->index, "log");
    int logfd = openat(s->home_fd, logname,
                       O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    int pipefd[2] = {-1, -1}, sv[2] = {-1, -1};
    int r = 0;
    if (!file_arg)
        r = vmseal_fail(ENOMEM, "out of memory");
    else if (logfd < 0)
        r = vmseal_fail(errno, "cannot open %s/%s: %s", s->home, logname, strerror(errno));
    else if (pipe2(pipefd, O_CLOEXEC) != 0 ||
             socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        r = vmseal_fail(errno, "pipe: %s", strerror(errno));
    if (r == 0) {
        /* The passphrase (at most 512 bytes) fits in the pipe's buffer:
         * written whole now, the write end closed, the server reads to EOF. */
        ssize_t w = write(pipefd[1], vmseal_secret_cdata(s->passphrase), plen);
        if (w != (ssize_t)plen)
            r = vmseal_fail(EIO, "cannot hand the key to the disk server");
        close(pipefd[1]);
        pipefd[1] = -1;
    }
    const char *argv[14];
    size_t n = 0;
    argv[n++] = p->nbdkit;
    argv[n++] = "-s";            /* one connection: stdin/stdout */
    argv[n++] = "--log=stderr";
    if (confine) {   /* nbdkit's -u alone keeps group root */
        argv[n++] = "-u";
        argv[n++] = s->run_as;
        argv[n++] = "-g";
        argv[n++] = group;
    }
    if (s->read_only)
        argv[n++] = "-r";
    argv[n++] = p->plugin;
    argv[n++] = file_arg;
    argv[n++] = "passfd=3";
    argv[n] = NULL;
    pid_t pid = -1;
    if (r == 0)
        r = hostd_nbdkit_spawn(argv, sv[1], logfd, pipefd[0], confine, 0, &pid);
    if (pipefd[0] >= 0)
        close(pipefd[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    if (logfd >= 0)
        close(logfd);
    free(file_arg);
    if (r == 0 && (r = write_pid(s->home_fd, s->index, pid)) < 0) {
        kill(pid, SIGKILL);
        (void)waitpid(pid, NULL, 0);
    }
    if (r < 0) {
        if (sv[0] >= 0)
            close(sv[0]);
        return r;
    }
    *qemu_sock = sv[0];
    return 0;
}
