/* vmseal-hostd — a VM's vTPM: swtpm started with descriptors (tpm.h). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "strutil.h"
#include "tpm.h"

#define TPM_KEY_LEN 32

static const char *swtpm_binary(const char *given)
{
    if (given && *given)
        return given;
    const char *e = getenv("VMSEAL_SWTPM");
    return e && *e ? e : "swtpm";
}

/* A pipe whose read end holds the key (written whole, write end closed):
 * the key passes through the kernel's pipe buffer only. */
static int key_pipe(const vmseal_secret *key)
{
    if (!key || vmseal_secret_len(key) != TPM_KEY_LEN)
        return vmseal_fail(EINVAL, "vTPM: the key must be %d bytes", TPM_KEY_LEN);
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return vmseal_fail(errno, "vTPM: pipe: %s", strerror(errno));
    ssize_t w = write(p[1], vmseal_secret_cdata(key), TPM_KEY_LEN);
    int e = errno;
    close(p[1]);
    if (w != TPM_KEY_LEN) {
        close(p[0]);
        return vmseal_fail(w < 0 ? e : EIO, "vTPM: cannot pass the key");
    }
    return p[0];
}

static int open_state(int home_fd, uid_t uid, gid_t gid, int chown_it)
{
    int fd = openat(home_fd, VMSEAL_TPM_STATE_FILE,
                    O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK, 0600);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP)
            return vmseal_fail(ELOOP, "vTPM: %s is a symlink (not followed)",
                               VMSEAL_TPM_STATE_FILE);
        return vmseal_fail(e, "vTPM: %s: %s", VMSEAL_TPM_STATE_FILE, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
        close(fd);
        return vmseal_fail(EINVAL, "vTPM: %s is not a regular file", VMSEAL_TPM_STATE_FILE);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0 || fchmod(fd, 0600) != 0 ||
        (chown_it && fchown(fd, uid, gid) != 0)) {
        int e = errno;
        close(fd);
        return vmseal_fail(e, "vTPM: %s: %s", VMSEAL_TPM_STATE_FILE, strerror(e));
    }
    return fd;
}

int hostd_tpm_start(const hostd_tpm_spec *s, int *qemu_fd)
{
    *qemu_fd = -1;
    uid_t uid = 0;
    gid_t gid = 0;
    int drop = s->run_as && *s->run_as && geteuid() == 0;
    if (drop) {
        struct passwd *pw = getpwnam(s->run_as);
        if (!pw)
            return vmseal_fail(ENOENT, "vTPM: no user %s", s->run_as);
        uid = pw->pw_uid;
        gid = pw->pw_gid;
    }
    int sp[2] = {-1, -1}, kfd = -1, mfd = -1, state = -1, logfd = -1, nullfd = -1;
    int r = 0;
    if ((kfd = key_pipe(s->key)) < 0 || (mfd = key_pipe(s->migration_key)) < 0) {
        r = kfd < 0 ? kfd : mfd;
        goto out;
    }
    if ((state = open_state(s->home_fd, uid, gid, drop)) < 0) {
        r = state;
        goto out;
    }
    logfd = openat(s->home_fd, VMSEAL_TPM_LOG_FILE,
                   O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (logfd < 0 || nullfd < 0) {
        r = vmseal_fail(errno, "vTPM: %s: %s", VMSEAL_TPM_LOG_FILE, strerror(errno));
        goto out;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) {
        r = vmseal_fail(errno, "vTPM: socketpair: %s", strerror(errno));
        goto out;
    }
    const char *bin = swtpm_binary(s->swtpm);
    char *const argv[] = {
        (char *)bin, (char *)"socket", (char *)"--tpm2", (char *)"--terminate",
        (char *)"--ctrl", (char *)"type=unixio,clientfd=3",
        (char *)"--key", (char *)"fd=4,mode=aes-256-cbc,format=binary",
        (char *)"--migration-key", (char *)"fd=5,mode=aes-256-cbc,format=binary",
        (char *)"--tpmstate", (char *)"backend-uri=file:///proc/self/fd/6",
        (char *)"--log", (char *)"fd=1,level=1",   /* swtpm refuses fd=2 */
        NULL,
    };
    /* Fork twice: swtpm is nobody's child here (init reaps it), lives in
     * its own session like QEMU, and outlives a restart of hostd. */
    pid_t pid = fork();
    if (pid < 0) {
        r = vmseal_fail(errno, "vTPM: fork: %s", strerror(errno));
        goto out;
    }
    if (pid == 0) {
        setsid();
        pid_t gc = fork();
        if (gc != 0)
            _exit(gc < 0 ? 126 : 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        const int src[] = {sp[1], kfd, mfd, state};
        int high[4];
        for (int i = 0; i < 4; i++)
            if ((high[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 64)) < 0)
                _exit(126);
        if (dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
            _exit(126);
        for (int i = 0; i < 4; i++)
            if (dup2(high[i], 3 + i) < 0)
                _exit(126);
        closefrom(7);
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
            _exit(126);
        if (drop && (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0 ||
                     setuid(0) == 0))
            _exit(126);
        execvp(argv[0], argv);
        static const char msg[] = "vmseal: cannot execute swtpm\n";
        ssize_t w = write(2, msg, sizeof(msg) - 1);
        (void)w;
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        r = vmseal_fail(EIO, "vTPM: cannot start swtpm");
        goto out;
    }
    *qemu_fd = sp[0];
    sp[0] = -1;
out:
    {
        const int fds[] = {sp[0], sp[1], kfd, mfd, state, logfd, nullfd};
        for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
            if (fds[i] >= 0)
                close(fds[i]);
    }
    return r;
}

int hostd_tpm_remove_state(int home_fd)
{
    if (unlinkat(home_fd, VMSEAL_TPM_STATE_FILE, 0) != 0 && errno != ENOENT)
        return vmseal_fail(errno, "vTPM: cannot remove %s: %s", VMSEAL_TPM_STATE_FILE,
                           strerror(errno));
    return 0;
}
