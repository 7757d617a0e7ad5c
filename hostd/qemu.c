/* Running QEMU guests with LUKS1 disks opened over QMP. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <vmseal/diskdesc.h>

#include "confine.h"
#include "qemu.h"
#include "cdrom.h"
#include "qmp.h"
#include "serial.h"
#include "strutil.h"

#define MAX_DISKS 16
#define DEFAULT_TIMEOUT_MS 15000
#define SPAWN_MAX_FDS 48   /* serial, kernel, initrd, 2 per disk and for the NVRAM, taps */

struct hostd_qemu {
    pid_t pid;
    int is_child;       /* we forked it: reap with waitpid */
    int exited;
    char *run_dir;
    char *sock_path;
    hostd_qmp *qmp;    /* NULL when not connected */
    int timeout_ms;
    int serial_fd;      /* connected console socket not yet taken, or -1 */
};

/* ---- small helpers ---- */

/* QEMU option values: a comma is written as two commas. */
static char *opt_escape(const char *s)
{
    size_t n = 0;
    for (const char *p = s; *p; p++)
        n += (*p == ',') ? 2 : 1;
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    char *o = out;
    for (const char *p = s; *p; p++) {
        *o++ = *p;
        if (*p == ',')
            *o++ = ',';
    }
    *o = '\0';
    return out;
}

static int name_ok(const char *s)
{
    if (!s || !*s || strlen(s) > 64)
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
            return 0;
    return 1;
}

typedef struct argv_buf {
    char **v;
    size_t n, cap;
    int oom;
} argv_buf;

static void arg_add_owned(argv_buf *a, char *s)
{
    if (!s) {
        a->oom = 1;
        return;
    }
    if (a->n + 2 > a->cap) {
        size_t ncap = a->cap ? a->cap * 2 : 32;
        char **nv = realloc(a->v, ncap * sizeof(*nv));
        if (!nv) {
            free(s);
            a->oom = 1;
            return;
        }
        a->v = nv;
        a->cap = ncap;
    }
    a->v[a->n++] = s;
    a->v[a->n] = NULL;
}

static void arg_add(argv_buf *a, const char *s)
{
    arg_add_owned(a, strdup(s));
}

static void argv_free(argv_buf *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

static const char *qemu_binary(const char *given)
{
    if (given && *given)
        return given;
    const char *env = getenv("VMSEAL_QEMU");
    return env && *env ? env : "qemu-system-x86_64";
}

/* Fork and exec argv in its own session, stdin from /dev/null, stdout and
 * stderr appended to log_path. Only async-signal-safe calls in the child. */
/* die_with_parent: the child gets SIGKILL when hostd exits (the KVM probe);
 * VM QEMUs are left running on purpose so a restarted hostd adopts them. */
/* pass_fd >= 0: given to the child as descriptor 3 (QEMU's -add-fd fd=3). */
/* pass[0..npass-1]: given to the child as descriptors 3, 4, ... (QEMU's
 * -add-fd fd=N and /proc/self/fd/N). The child sets PR_SET_NO_NEW_PRIVS:
 * QEMU can never gain privileges (with -runas it only drops them). */
/* confine: QEMU starts as root only to drop to -runas: keep nothing in the
 * capability bounding set but CAP_SETUID and CAP_SETGID (exec'd as root it
 * gets the bounding set), which the drop itself then clears. */
static int spawn(char *const argv[], const char *log_path, int die_with_parent, const int *pass,
                 size_t npass, int confine, pid_t *pid_out)
{
    pid_t parent = getpid();
    int logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (logfd < 0)
        return vmseal_fail(errno, "cannot open %s: %s", log_path, strerror(errno));
    int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (nullfd < 0) {
        int e = errno;
        close(logfd);
        return vmseal_fail(e, "cannot open /dev/null: %s", strerror(e));
    }
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(logfd);
        close(nullfd);
        return vmseal_fail(e, "fork: %s", strerror(e));
    }
    if (pid == 0) {
        if (die_with_parent) {
            if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                _exit(126);
            if (getppid() != parent) /* parent already gone */
                _exit(126);
        }
        setsid();
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        if (dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
            _exit(126);
        if (hostd_confine_child(confine, (uid_t)-1, (gid_t)-1) < 0)   /* confine.h */
            _exit(126);
        /* Move the descriptors out of the way first (a source may sit on a
         * target number), then onto 3, 4, ...; dup2 clears close-on-exec. */
        int high[SPAWN_MAX_FDS];
        for (size_t i = 0; i < npass && i < SPAWN_MAX_FDS; i++)
            if ((high[i] = fcntl(pass[i], F_DUPFD_CLOEXEC, 64 + SPAWN_MAX_FDS)) < 0)
                _exit(126);
        for (size_t i = 0; i < npass && i < SPAWN_MAX_FDS; i++)
            if (dup2(high[i], 3 + (int)i) < 0)
                _exit(126);
        closefrom(3 + (int)npass);
        execvp(argv[0], argv);
        static const char msg[] = "vmseal: cannot execute QEMU\n";
        ssize_t w = write(2, msg, sizeof(msg) - 1);
        (void)w;
        _exit(127);
    }
    close(logfd);
    close(nullfd);
    *pid_out = pid;
    return 0;
}

/* Last non-empty line of a log file, for error messages. */
static void log_tail(const char *path, char *buf, size_t len)
{
    hostd_fd_last_line(open(path, O_RDONLY | O_CLOEXEC), buf, len);
}

/* Is `pid` alive? For our own child, reap it when it has exited. */
static int pid_alive(pid_t pid, int is_child)
{
    if (pid <= 0)
        return 0;
    if (is_child) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return 0;
        if (r < 0 && errno == ECHILD)
            is_child = 0;   /* reaped elsewhere: fall through to kill(0) */
        else
            return 1;
    }
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return 0;
    /* A zombie nobody reaps yet counts as exited. */
    char path[64], stat[256];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, stat, sizeof(stat) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    stat[n] = '\0';
    char *rp = strrchr(stat, ')');
    if (rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'))
        return 0;
    return 1;
}

static int wait_pid_exit(pid_t pid, int is_child, int timeout_ms)
{
    int64_t deadline = hostd_now_ms() + timeout_ms;
    for (;;) {
        if (!pid_alive(pid, is_child))
            return 0;
        if (hostd_now_ms() >= deadline)
            return -ETIMEDOUT;
        hostd_sleep_ms(20);
    }
}

/* ---- life cycle ---- */

static int ensure_qmp(hostd_qemu *vm);

pid_t hostd_qemu_pid(const hostd_qemu *vm)
{
    return vm->pid;
}

hostd_qmp *hostd_qemu_monitor(hostd_qemu *vm)
{
    if (ensure_qmp(vm) < 0)
        return NULL;
    return vm->qmp;
}

int hostd_qemu_alive(hostd_qemu *vm)
{
    if (vm->exited)
        return 0;
    if (!pid_alive(vm->pid, vm->is_child)) {
        vm->exited = 1;
        hostd_qmp_close(vm->qmp);
        vm->qmp = NULL;
        return 0;
    }
    return 1;
}

int hostd_qemu_wait_exit(hostd_qemu *vm, int timeout_ms)
{
    if (vm->exited)
        return 0;
    int r = wait_pid_exit(vm->pid, vm->is_child, timeout_ms);
    if (r == 0) {
        vm->exited = 1;
        hostd_qmp_close(vm->qmp);
        vm->qmp = NULL;
        return 0;
    }
    return vmseal_fail(ETIMEDOUT, "QEMU (pid %d) still runs after %d ms", (int)vm->pid, timeout_ms);
}

static int ensure_qmp(hostd_qemu *vm)
{
    if (vm->qmp)
        return 0;
    if (!hostd_qemu_alive(vm))
        return vmseal_fail(ESRCH, "QEMU has exited");
    return hostd_qmp_connect(vm->sock_path, vm->timeout_ms, &vm->qmp);
}

int hostd_qemu_status(hostd_qemu *vm, char *buf, size_t len)
{
    if (!hostd_qemu_alive(vm))
        return vmseal_fail(ESRCH, "QEMU has exited");
    int r = ensure_qmp(vm);
    if (r < 0)
        return r;
    json_t *ret = NULL;
    r = hostd_qmp_execute(vm->qmp, "query-status", NULL, vm->timeout_ms, &ret);
    if (r < 0) {
        if (r == -ECONNRESET && !hostd_qemu_alive(vm))
            return vmseal_fail(ESRCH, "QEMU has exited");
        return r;
    }
    const char *st = json_string_value(json_object_get(ret, "status"));
    hostd_copy_str(buf, len, st ? st : "unknown");
    json_decref(ret);
    return 0;
}

void hostd_qemu_kill(hostd_qemu *vm)
{
    if (!hostd_qemu_alive(vm))
        return;
    if (ensure_qmp(vm) == 0) {
        int r = hostd_qmp_execute(vm->qmp, "quit", NULL, 3000, NULL);
        (void)r;
        if (hostd_qemu_wait_exit(vm, 5000) == 0)
            return;
    }
    kill(vm->pid, SIGKILL);
    (void)hostd_qemu_wait_exit(vm, 10000);
}

int hostd_qemu_power_off(hostd_qemu *vm, int grace_ms)
{
    if (!hostd_qemu_alive(vm))
        return 0;
    /* Press the power button again every few seconds: a guest that was
     * still booting may have missed the first press. */
    int64_t deadline = hostd_now_ms() + grace_ms;
    for (;;) {
        int r = ensure_qmp(vm);
        if (r == 0)
            r = hostd_qmp_execute(vm->qmp, "system_powerdown", NULL, vm->timeout_ms, NULL);
        if (r < 0)
            break;
        int64_t left = deadline - hostd_now_ms();
        if (left <= 0)
            break;
        if (hostd_qemu_wait_exit(vm, left < 5000 ? (int)left : 5000) == 0)
            return 0;
    }
    if (!hostd_qemu_alive(vm))
        return 0;
    hostd_qemu_kill(vm);
    vmseal_clear_error();
    return 1;
}

int hostd_qemu_take_serial(hostd_qemu *vm)
{
    int fd = vm->serial_fd;
    vm->serial_fd = -1;
    return fd;
}

int hostd_qemu_connect_serial(const char *run_dir, int timeout_ms)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", run_dir, VMSEAL_CONSOLE_SOCKET);
    if (n < 0 || (size_t)n >= sizeof(sa.sun_path))
        return vmseal_fail(ENAMETOOLONG, "QEMU: console socket path is too long");
    int64_t deadline = hostd_now_ms() + (timeout_ms > 0 ? timeout_ms : DEFAULT_TIMEOUT_MS);
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return vmseal_fail(errno, "socket: %s", strerror(errno));
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            return fd;
        int e = errno;
        close(fd);
        if ((e != ENOENT && e != ECONNREFUSED && e != EAGAIN) || hostd_now_ms() >= deadline)
            return vmseal_fail(e, "QEMU: cannot connect to the console socket %s: %s",
                               sa.sun_path, strerror(e));
        hostd_sleep_ms(20);
    }
}

void hostd_qemu_free(hostd_qemu *vm)
{
    if (!vm)
        return;
    if (vm->serial_fd >= 0)
        close(vm->serial_fd);
    hostd_qmp_close(vm->qmp);
    if (vm->is_child && !vm->exited)
        (void)pid_alive(vm->pid, 1);   /* reap if it has just exited */
    free(vm->run_dir);
    free(vm->sock_path);
    free(vm);
}

/* ---- start ---- */

/* Descriptors hostd opened for QEMU: handed over as 3, 4, ... */
typedef struct fd_list {
    int fd[SPAWN_MAX_FDS];
    size_t n;
} fd_list;

/* The number the descriptor will have in QEMU, or -1 when full. */
static int fds_add(fd_list *l, int fd)
{
    if (l->n >= SPAWN_MAX_FDS)
        return -1;
    l->fd[l->n] = fd;
    return 3 + (int)l->n++;
}

static void fds_close(fd_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        close(l->fd[i]);
    l->n = 0;
}

/* What build_argv needs to know about the descriptors handed over. */
typedef struct fd_map {
    int kernel, initrd;                 /* QEMU's number, or -1 */
    int disk_fd[MAX_DISKS][2];          /* read-write (or -1), read-only */
    int nvram_fd[2];
    int nic_fd[HOSTD_QEMU_MAX_NICS];    /* a tap's number in QEMU, or -1 */
    int tpm;                            /* swtpm's control channel, or -1 */
} fd_map;

#define FDSET_NVRAM 9
#define FDSET_DISK0 10

/* Open an image for QEMU without following a symlink: a regular file only. */
static int open_image(const hostd_qemu_disk *d, int flags)
{
    const char *path = d->path;
    int fd = openat(d->dir_fd > 0 ? d->dir_fd : AT_FDCWD, path,
                    flags | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP)
            return vmseal_fail(ELOOP, "QEMU: disk %s is a symlink (not followed)", path);
        return vmseal_fail(e, "QEMU: disk %s: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return vmseal_fail(EINVAL, "QEMU: disk %s is not a regular file", path);
    }
    /* O_NONBLOCK only kept a planted FIFO from blocking the open */
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        int e = errno;
        close(fd);
        return vmseal_fail(e, "QEMU: disk %s: %s", path, strerror(e));
    }
    return fd;
}

/* Open one image (read-write and read-only descriptors; QEMU's file driver
 * picks the one matching the access it wants from the fdset). */
static int hand_image(fd_list *l, const hostd_qemu_disk *d, int out[2])
{
    out[0] = out[1] = -1;
    if (!d->read_only) {
        int fd = open_image(d, O_RDWR);
        if (fd < 0)
            return fd;
        if ((out[0] = fds_add(l, fd)) < 0) {
            close(fd);
            return vmseal_fail(EMFILE, "QEMU: too many descriptors");
        }
    }
    int fd = open_image(d, O_RDONLY);
    if (fd < 0)
        return fd;
    if ((out[1] = fds_add(l, fd)) < 0) {
        close(fd);
        return vmseal_fail(EMFILE, "QEMU: too many descriptors");
    }
    return 0;
}

static void arg_add_fdset(argv_buf *a, const int fds[2], int set)
{
    for (int k = 0; k < 2; k++)
        if (fds[k] >= 0) {
            arg_add(a, "-add-fd");
            arg_add_owned(a, hostd_asprintf("fd=%d,set=%d", fds[k], set));
        }
}

static int confined(const hostd_qemu_spec *s)
{
    return s->run_as && *s->run_as && geteuid() == 0;
}

static int build_argv(const hostd_qemu_spec *s, const fd_map *m, argv_buf *a)
{
    char *rd = opt_escape(s->run_dir);
    if (!rd)
        return vmseal_fail(ENOMEM, "out of memory");
    arg_add(a, qemu_binary(s->qemu));
    arg_add(a, "-name");
    arg_add_owned(a, hostd_asprintf("guest=%s,debug-threads=on", s->name));
    arg_add(a, "-uuid");
    arg_add(a, s->uuid);
    arg_add(a, "-machine");
    arg_add(a, s->secure_boot ? "q35,smm=on" : "pc");
    if (s->secure_boot) {
        /* OVMF's Secure Boot build: only SMM code may write the variables;
         * disks go on a bridge that takes them while the machine is built */
        arg_add(a, "-global");
        arg_add(a, "driver=cfi.pflash01,property=secure,value=on");
        arg_add(a, "-device");
        arg_add(a, "pcie-pci-bridge,id=vmseal-pci,bus=pcie.0");
    }
    arg_add(a, "-accel");
    arg_add(a, s->accel == VMSEAL_ACCEL_KVM ? "kvm" : "tcg");
    arg_add(a, "-m");
    arg_add_owned(a, hostd_asprintf("%u", s->memory_mb ? s->memory_mb : 256));
    arg_add(a, "-smp");
    arg_add_owned(a, hostd_asprintf("%u", s->cpus ? s->cpus : 1));
    arg_add(a, "-nodefaults");
    arg_add(a, "-nographic");
    arg_add(a, "-msg");
    arg_add(a, "timestamp=on");
    /* QEMU may not spawn helpers, gain privileges or use obsolete calls.
     * With -runas the set*id calls are QEMU's own drop to the user (the
     * filter is installed before it): they stay allowed, and once dropped
     * (no capabilities, no_new_privs) they cannot raise anything. */
    arg_add(a, "-sandbox");
    arg_add(a, confined(s) ? "on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny"
                           : "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
    if (s->serial_socket) {
        /* Encrypted VM: QEMU serves the console; hostd reads and seals it
         * (hostd/serial.h). Nothing is written in clear. */
        arg_add(a, "-chardev");
        arg_add_owned(a, hostd_asprintf("socket,id=vmseal-serial,path=%s/%s,server=on,wait=off",
                                        rd, VMSEAL_CONSOLE_SOCKET));
    } else {
        /* serial.log, opened by hostd (O_NOFOLLOW, 0600), is descriptor 3:
         * QEMU appends everything the guest writes to it (the chardev's
         * log file), and serves serial.sock for the interactive console. */
        arg_add(a, "-add-fd");
        arg_add(a, "fd=3,set=1,opaque=vmseal-serial");
        arg_add(a, "-chardev");
        arg_add_owned(a, hostd_asprintf("socket,id=vmseal-serial,path=%s/%s,server=on,wait=off,"
                                        "logfile=/dev/fdset/1,logappend=on",
                                        rd, VMSEAL_CONSOLE_SOCKET));
    }
    arg_add(a, "-serial");
    arg_add(a, "chardev:vmseal-serial");
    /* A display for the VNC console (hostd/console_mux.c), served on a
     * UNIX socket in the VM home only: never TCP, no password (the
     * manager's websocket is the only way in). */
    arg_add(a, "-device");
    arg_add(a, "VGA");
    arg_add(a, "-vnc");
    arg_add_owned(a, hostd_asprintf("unix:%s/%s", rd, HOSTD_VNC_SOCKET));
    arg_add(a, "-chardev");
    arg_add_owned(a,
                  hostd_asprintf("socket,id=vmseal-qmp,path=%s/qmp.sock,server=on,wait=off", rd));
    arg_add(a, "-mon");
    arg_add(a, "chardev=vmseal-qmp,mode=control");
    arg_add(a, "-pidfile");
    arg_add_owned(a, hostd_asprintf("%s/qemu.pid", s->run_dir));
    /* Kernel and initrd were opened by hostd (images folder, no symlink):
     * QEMU reads the very files opened, through its own descriptors. */
    if (m->kernel >= 0) {
        arg_add(a, "-kernel");
        arg_add_owned(a, hostd_asprintf("/proc/self/fd/%d", m->kernel));
    } else if (s->kernel) {
        arg_add(a, "-kernel");
        arg_add(a, s->kernel);
    }
    if (m->initrd >= 0) {
        arg_add(a, "-initrd");
        arg_add_owned(a, hostd_asprintf("/proc/self/fd/%d", m->initrd));
    } else if (s->initrd) {
        arg_add(a, "-initrd");
        arg_add(a, s->initrd);
    }
    /* Disk images: descriptors in fdsets, opened by QEMU as /dev/fdset/N
     * (a dup, no path lookup: works after -runas drops privileges). */
    for (size_t i = 0; i < s->ndisks; i++)
        arg_add_fdset(a, m->disk_fd[i], FDSET_DISK0 + (int)i);
    if (s->nvram)
        arg_add_fdset(a, m->nvram_fd, FDSET_NVRAM);
    /* NICs: virtio-net on a user-mode (slirp) netdev, or on a tap hostd
     * opened (QEMU never opens /dev/net/tun). romfile= : no option ROM
     * (no PXE boot; Debian's QEMU ships none without ipxe-qemu). */
    for (size_t i = 0; i < s->nnics; i++) {
        const hostd_qemu_nic *n = &s->nics[i];
        arg_add(a, "-netdev");
        if (m->nic_fd[i] >= 0)
            arg_add_owned(a, hostd_asprintf("tap,id=vmseal-net%zu,fd=%d", i, m->nic_fd[i]));
        else
            arg_add_owned(a, hostd_asprintf("%s,id=vmseal-net%zu", n->netdev, i));
        arg_add(a, "-device");
        int bi = i == 0 ? hostd_boot_index(s->boot_order, "net") : -1;
        char bis[24] = "";
        if (bi >= 0)
            snprintf(bis, sizeof(bis), ",bootindex=%d", bi);
        arg_add_owned(a, hostd_asprintf("virtio-net-pci,netdev=vmseal-net%zu,mac=%s,"
                                        "id=vmseal-nic%zu,addr=0x%zx,romfile=%s", i, n->mac, i, 0x8 + i,
                                        bis));
    }
    if (m->tpm >= 0) {
        /* vTPM: swtpm's control channel, a socketpair end (hostd/tpm.h) */
        arg_add(a, "-chardev");
        arg_add_owned(a, hostd_asprintf("socket,id=vmseal-tpm,fd=%d", m->tpm));
        arg_add(a, "-tpmdev");
        arg_add(a, "emulator,id=vmseal-tpm0,chardev=vmseal-tpm");
        arg_add(a, "-device");
        arg_add(a, "tpm-tis,tpmdev=vmseal-tpm0");
    }
    if (confined(s)) {
        /* Everything QEMU needs is open before it drops to the user:
         * sockets, pid file, /dev/kvm, kernel, initrd, disk descriptors. */
        arg_add(a, "-runas");
        arg_add(a, s->run_as);
    }
    if (s->append) {
        arg_add(a, "-append");
        arg_add(a, s->append);
    }
    if (s->firmware_code && !s->nvram) {
        arg_add(a, "-bios");
        arg_add(a, s->firmware_code);
    }
    if (s->firmware_code && s->nvram) {
        /* UEFI with a persistent variable store: the code is a read-only
         * pflash; the store (pflash1) is attached over QMP before the
         * machine is built (--preconfig), since it may be a LUKS image. */
        char *code = opt_escape(s->firmware_code);
        arg_add(a, "-drive");
        arg_add_owned(a, code ? hostd_asprintf("if=pflash,unit=0,format=raw,readonly=on,file=%s",
                                               code)
                              : NULL);
        free(code);
        arg_add(a, "--preconfig");
    }
    arg_add(a, "-S");
    if (s->incoming_defer) {
        /* a live-migration destination or saved state being resumed: hostd
         * feeds the stream with migrate-incoming */
        arg_add(a, "-incoming");
        arg_add(a, "defer");
    }
    free(rd);
    if (a->oom)
        return vmseal_fail(ENOMEM, "out of memory");
    return 0;
}

/* blockdev-add for one image; for a LUKS image the secret `sec_id` must
 * already exist. */
static int add_blockdev(hostd_qmp *q, const char *node, const hostd_qemu_disk *d, int fdset,
                        const char *sec_id, int timeout_ms)
{
    char fname[32];
    snprintf(fname, sizeof(fname), "/dev/fdset/%d", fdset);
    json_t *file = json_pack("{s:s, s:s, s:b}", "driver", "file", "filename", fname,
                             "read-only", d->read_only ? 1 : 0);
    json_t *args;
    if (sec_id)
        args = json_pack("{s:s, s:s, s:s, s:o, s:b, s:s}", "driver", "luks", "node-name", node,
                         "key-secret", sec_id, "file", file, "read-only", d->read_only ? 1 : 0,
                         "discard", "unmap");
    else
        args = json_pack("{s:s, s:s, s:o, s:b, s:s}", "driver", "raw", "node-name", node, "file",
                         file, "read-only", d->read_only ? 1 : 0, "discard", "unmap");
    if (!args)
        return vmseal_fail(ENOMEM, "out of memory");
    int r = hostd_qmp_execute(q, "blockdev-add", args, timeout_ms, NULL);
    if (r < 0)
        return vmseal_fail(r, "disk %s: %s", d->path, vmseal_last_error());
    return 0;
}

/* An NBD disk: the connected socket becomes QEMU's (getfd), and the NBD
 * client runs on it. No reconnect: QEMU cannot reopen a passed descriptor,
 * so a dead server means I/O errors, never another server's data. */
static int add_nbd_blockdev(hostd_qmp *q, const char *node, const hostd_qemu_disk *d,
                            int timeout_ms)
{
    char fdname[48];
    snprintf(fdname, sizeof(fdname), "%s-nbd", node);
    int r = hostd_qmp_getfd(q, fdname, d->nbd_sock, timeout_ms);
    if (r < 0)
        return vmseal_fail(r, "disk %s: %s", d->path, vmseal_last_error());
    json_t *args = json_pack("{s:s, s:s, s:{s:s, s:s}, s:b}", "driver", "nbd", "node-name", node,
                             "server", "type", "fd", "str", fdname, "read-only",
                             d->read_only ? 1 : 0);
    if (!args)
        return vmseal_fail(ENOMEM, "out of memory");
    r = hostd_qmp_execute(q, "blockdev-add", args, timeout_ms, NULL);
    if (r < 0)
        return vmseal_fail(r, "disk %s (nbd): %s", d->path, vmseal_last_error());
    return 0;
}

static int del_object(hostd_qmp *q, const char *id, int timeout_ms)
{
    return hostd_qmp_execute(q, "object-del", json_pack("{s:s}", "id", id), timeout_ms, NULL);
}

/* In the preconfig state: open the UEFI variable store and make it the
 * machine's pflash1, then let QEMU build the machine. */
static int attach_nvram(hostd_qemu *vm, const hostd_qemu_spec *s)
{
    hostd_qmp *q = vm->qmp;
    int t = vm->timeout_ms;
    const hostd_qemu_disk *d = s->nvram;
    const char *node = "vmseal-nvram", *sec = "vmseal-sec-nvram";
    int r;
    if (d->passphrase) {
        r = hostd_qmp_add_secret(q, sec, d->passphrase, t);
        if (r < 0)
            return r;
    }
    r = add_blockdev(q, node, d, FDSET_NVRAM, d->passphrase ? sec : NULL, t);
    if (d->passphrase) {
        int rd = del_object(q, sec, t);
        if (r == 0 && rd < 0)
            r = rd;
    }
    if (r < 0)
        return r;
    r = hostd_qmp_execute(q, "qom-set",
                           json_pack("{s:s, s:s, s:s}", "path", "/machine", "property", "pflash1",
                                     "value", node),
                           t, NULL);
    if (r < 0)
        return r;
    r = hostd_qmp_execute(q, "x-exit-preconfig", NULL, t, NULL);
    if (r < 0)
        return vmseal_fail(r, "UEFI variable store %s: %s", d->path, vmseal_last_error());
    return 0;
}

static int attach_disks(hostd_qemu *vm, const hostd_qemu_spec *s)
{
    hostd_qmp *q = vm->qmp;
    int t = vm->timeout_ms;
    for (size_t i = 0; i < s->ndisks; i++) {
        const hostd_qemu_disk *d = &s->disks[i];
        char node[32], sec[32], dev[32], addr[8];
        snprintf(node, sizeof(node), "vmseal-disk%zu", i);
        snprintf(sec, sizeof(sec), "vmseal-sec%zu", i);
        snprintf(dev, sizeof(dev), "vmseal-vd%zu", i);
        snprintf(addr, sizeof(addr), "0x%zx", 0x10 + i);   /* stable order: vda, vdb, ... */
        int r = 0;
        if (d->nbd_sock > 0) {
            r = add_nbd_blockdev(q, node, d, t);
            if (r < 0)
                return r;
        } else if (d->passphrase) {
            r = hostd_qmp_add_secret(q, sec, d->passphrase, t);
            if (r < 0)
                return r;
        }
        if (d->nbd_sock <= 0)
            r = add_blockdev(q, node, d, FDSET_DISK0 + (int)i, d->passphrase ? sec : NULL, t);
        if (d->nbd_sock <= 0 && d->passphrase) {
            /* The LUKS driver has unlocked the volume key: the passphrase
             * object is no longer needed inside QEMU. */
            int rd = del_object(q, sec, t);
            if (r == 0 && rd < 0)
                r = rd;
        }
        /* snapshot layers: each over the one below, the guest sees the top */
        if (d->nlayers > HOSTD_QEMU_MAX_LAYERS)
            return vmseal_fail(EINVAL, "QEMU: at most %d layers per disk", HOSTD_QEMU_MAX_LAYERS);
        for (size_t k = 1; r == 0 && k <= d->nlayers; k++) {
            char below[32];
            hostd_qemu_layer_node(i, k - 1, below, sizeof(below));
            r = hostd_qemu_add_layer(q, i, k, d->dir_fd, d->layers[k - 1].path,
                                     d->layers[k - 1].passphrase, below, t);
            if (r == 0)
                hostd_qemu_layer_node(i, k, node, sizeof(node));
        }
        if (r < 0)
            return r;
        json_t *da = json_pack("{s:s, s:s, s:s, s:s, s:s}", "driver", "virtio-blk-pci", "id", dev,
                               "drive", node, "addr", addr, "serial", dev);
        if (da && s->secure_boot)
            json_object_set_new(da, "bus", json_string("vmseal-pci"));
        if (da && i == 0 && hostd_boot_index(s->boot_order, "disk") >= 0)
            json_object_set_new(da, "bootindex", json_integer(hostd_boot_index(s->boot_order, "disk")));
        r = hostd_qmp_execute(q, "device_add", da, t, NULL);
        if (r < 0)
            return r;
    }
    return 0;
}

static int check_spec(const hostd_qemu_spec *s)
{
    if (!s->run_dir || !*s->run_dir)
        return vmseal_fail(EINVAL, "QEMU: no run directory");
    if (!name_ok(s->name))
        return vmseal_fail(EINVAL, "QEMU: VM name must be 1-64 of [A-Za-z0-9._-]");
    if (!vmseal_uuid_valid(s->uuid))
        return vmseal_fail(EINVAL, "QEMU: VM uuid is not a UUID");
    if (s->ndisks > MAX_DISKS)
        return vmseal_fail(EINVAL, "QEMU: at most %d disks", MAX_DISKS);
    if (s->nnics > HOSTD_QEMU_MAX_NICS)
        return vmseal_fail(EINVAL, "QEMU: at most %d NICs", HOSTD_QEMU_MAX_NICS);
    for (size_t i = 0; i < s->nnics; i++)
        if (!s->nics[i].mac || (s->nics[i].tap_fd <= 0 && !s->nics[i].netdev))
            return vmseal_fail(EINVAL, "QEMU: NIC %zu has no MAC or no backend", i);
    if (s->nvram && !s->firmware_code)
        return vmseal_fail(EINVAL, "QEMU: a UEFI variable store needs the firmware code image");
    if (confined(s) && !getpwnam(s->run_as))
        return vmseal_fail(ENOENT, "QEMU: user %s (qemu_user) does not exist", s->run_as);
    if (s->nvram && !s->nvram->path)
        return vmseal_fail(EINVAL, "QEMU: UEFI variable store without a path");
    if (s->firmware_code && access(s->firmware_code, R_OK) != 0)
        return vmseal_fail(ENOENT, "QEMU: firmware %s is not readable", s->firmware_code);
    struct stat st;
    if (stat(s->run_dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return vmseal_fail(ENOENT, "QEMU: run directory %s does not exist", s->run_dir);
    for (size_t i = 0; i < s->ndisks; i++)
        if (!s->disks[i].path)
            return vmseal_fail(EINVAL, "QEMU: disk %zu has no path", i);
    return 0;
}

static int cmdline_has_uuid(pid_t pid, const char *uuid);

/* The pid recorded in run_dir/qemu.pid if that process is the QEMU of this
 * VM (guards against pid reuse); 0 otherwise. */
static pid_t running_pid(const char *run_dir, const char *uuid)
{
    char *pid_path = hostd_asprintf("%s/qemu.pid", run_dir);
    if (!pid_path)
        return 0;
    FILE *f = fopen(pid_path, "re");
    free(pid_path);
    if (!f)
        return 0;
    long pid = 0;
    int got = fscanf(f, "%ld", &pid);
    fclose(f);
    if (got != 1 || pid <= 1 || !pid_alive((pid_t)pid, 0) || !cmdline_has_uuid((pid_t)pid, uuid))
        return 0;
    return (pid_t)pid;
}

/* Is a QEMU using this home? Either its pid file is locked (QEMU holds a
 * lock on it while it runs) or it names a live QEMU of this VM. */
static int home_in_use(const char *run_dir, const char *uuid)
{
    if (running_pid(run_dir, uuid) > 0)
        return 1;
    char *pid_path = hostd_asprintf("%s/qemu.pid", run_dir);
    if (!pid_path)
        return 1;
    int fd = open(pid_path, O_RDONLY | O_CLOEXEC);
    free(pid_path);
    if (fd < 0)
        return 0;
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    int busy = fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
    close(fd);
    return busy;
}

int hostd_qemu_start(const hostd_qemu_spec *s, hostd_qemu **out)
{
    *out = NULL;
    int r = check_spec(s);
    if (r < 0)
        return r;
    int timeout = s->timeout_ms > 0 ? s->timeout_ms : DEFAULT_TIMEOUT_MS;

    hostd_qemu *vm = calloc(1, sizeof(*vm));
    if (!vm)
        return vmseal_fail(ENOMEM, "out of memory");
    vm->timeout_ms = timeout;
    vm->serial_fd = -1;
    vm->run_dir = strdup(s->run_dir);
    vm->sock_path = hostd_asprintf("%s/qmp.sock", s->run_dir);
    char *log_path = hostd_asprintf("%s/qemu.log", s->run_dir);
    char *pid_path = hostd_asprintf("%s/qemu.pid", s->run_dir);
    char *serial_path = hostd_asprintf("%s/%s", s->run_dir, VMSEAL_CONSOLE_SOCKET);
    fd_list fds = {.n = 0};
    fd_map map = {.kernel = -1, .initrd = -1, .nic_fd = {-1, -1, -1, -1}, .tpm = -1};
    argv_buf a = {0};
    if (!vm->run_dir || !vm->sock_path || !log_path || !pid_path || !serial_path) {
        r = vmseal_fail(ENOMEM, "out of memory");
        goto fail;
    }
    if (strlen(vm->sock_path) >= 108 || strlen(serial_path) >= 108) {
        r = vmseal_fail(ENAMETOOLONG, "QEMU: socket path %s is too long", serial_path);
        goto fail;
    }
    /* Refuse to start a second QEMU on the same home. */
    if (home_in_use(s->run_dir, s->uuid)) {
        r = vmseal_fail(EBUSY, "QEMU: VM %s is already running", s->name);
        goto fail;
    }
    unlink(vm->sock_path);
    unlink(pid_path);
    unlink(serial_path);
    if (!s->serial_socket) {
        int serial_file = hostd_console_open_plain(s->home_dir ? s->home_dir : s->run_dir);
        if (serial_file < 0) {
            r = vmseal_fail(-serial_file, "QEMU: serial console: %s", vmseal_last_error());
            goto fail;
        }
        (void)fds_add(&fds, serial_file);   /* descriptor 3: -add-fd fd=3 */
    }
    if (s->kernel_fd > 0 && (map.kernel = fds_add(&fds, dup(s->kernel_fd))) < 0)
        r = vmseal_fail(EMFILE, "QEMU: too many descriptors");
    if (r == 0 && s->initrd_fd > 0 && (map.initrd = fds_add(&fds, dup(s->initrd_fd))) < 0)
        r = vmseal_fail(EMFILE, "QEMU: too many descriptors");
    if (r == 0 && s->tpm_fd > 0 && (map.tpm = fds_add(&fds, dup(s->tpm_fd))) < 0)
        r = vmseal_fail(EMFILE, "QEMU: too many descriptors");
    for (size_t i = 0; r == 0 && i < s->ndisks; i++) {
        map.disk_fd[i][0] = map.disk_fd[i][1] = -1;
        if (s->disks[i].nbd_sock <= 0)   /* an NBD disk: QEMU gets no image */
            r = hand_image(&fds, &s->disks[i], map.disk_fd[i]);
    }
    if (r == 0 && s->nvram)
        r = hand_image(&fds, s->nvram, map.nvram_fd);
    for (size_t i = 0; r == 0 && i < s->nnics; i++)
        if (s->nics[i].tap_fd > 0 && (map.nic_fd[i] = fds_add(&fds, dup(s->nics[i].tap_fd))) < 0)
            r = vmseal_fail(EMFILE, "QEMU: too many descriptors");
    for (size_t i = 0; r == 0 && i < fds.n; i++)
        if (fds.fd[i] < 0)
            r = vmseal_fail(errno, "QEMU: dup: %s", strerror(errno));
    if (r < 0)
        goto fail;

    r = build_argv(s, &map, &a);
    if (r < 0)
        goto fail;
    r = spawn(a.v, log_path, 0, fds.fd, fds.n, confined(s), &vm->pid);
    fds_close(&fds);
    if (r < 0)
        goto fail;
    vm->is_child = 1;

    /* Wait for the monitor socket, watching QEMU does not die meanwhile. */
    int64_t deadline = hostd_now_ms() + timeout;
    for (;;) {
        if (!pid_alive(vm->pid, 1)) {
            vm->exited = 1;
            char tail[512];
            log_tail(log_path, tail, sizeof(tail));
            r = vmseal_fail(EIO, "QEMU exited at start: %s", tail[0] ? tail : "(no message)");
            goto fail;
        }
        r = hostd_qmp_connect(vm->sock_path, timeout, &vm->qmp);
        if (r == 0)
            break;
        if ((r != -ENOENT && r != -ECONNREFUSED) || hostd_now_ms() >= deadline) {
            r = vmseal_fail(r, "QEMU monitor: %s", vmseal_last_error());
            goto fail;
        }
        hostd_sleep_ms(20);
    }

    /* The console reader is there before the guest runs: nothing is lost.
     * (A VM without encryption: QEMU logs to serial.log with or without a
     * reader; hostd connects one for the interactive consoles. A client
     * that does not read stalls the guest's serial port within a few
     * hundred bytes, QEMU writing it a byte at a time: never leave one.) */
    if (s->serial_socket) {
        vm->serial_fd = hostd_qemu_connect_serial(s->run_dir, timeout);
        if (vm->serial_fd < 0) {
            r = vm->serial_fd;
            vm->serial_fd = -1;
            goto fail;
        }
    }
    if (s->firmware_code && s->nvram) {
        r = attach_nvram(vm, s);
        if (r < 0)
            goto fail;
    }
    r = attach_disks(vm, s);
    if (r < 0)
        goto fail;
    if (s->cdrom) {
        r = hostd_cdrom_attach(vm->qmp, s->cdrom_fd, s->secure_boot ? "vmseal-pci" : NULL,
                               hostd_boot_index(s->boot_order, "cdrom"), timeout);
        if (r < 0)
            goto fail;
    }
    /* bootindex of devices plugged after -S: the firmware's list is made
     * at a reset (not on a resumed or incoming machine) */
    if (s->boot_order && !s->incoming_defer)
        r = hostd_qmp_execute(vm->qmp, "system_reset", NULL, timeout, NULL);
    if (r == 0 && !s->incoming_defer)
        r = hostd_qmp_execute(vm->qmp, "cont", NULL, timeout, NULL);
    if (r < 0)
        goto fail;

    argv_free(&a);
    free(log_path);
    free(pid_path);
    free(serial_path);
    vmseal_clear_error();
    *out = vm;
    return 0;

fail:
    {
        char msg[512];
        hostd_copy_str(msg, sizeof(msg), vmseal_last_error());
        if (vm->pid > 0 && !vm->exited) {
            kill(vm->pid, SIGKILL);
            (void)wait_pid_exit(vm->pid, 1, 10000);
        }
        vmseal_fail(r, "%s", msg);
    }
    fds_close(&fds);
    argv_free(&a);
    free(log_path);
    free(pid_path);
    free(serial_path);
    vm->exited = 1;
    hostd_qemu_free(vm);
    return r;
}

/* ---- re-attach ---- */

/* Does /proc/<pid>/cmdline carry "-uuid <uuid>"? */
static int cmdline_has_uuid(pid_t pid, const char *uuid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char buf[8192];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    for (char *p = buf; p < buf + n; p += strlen(p) + 1) {
        char *next = p + strlen(p) + 1;
        if (strcmp(p, "-uuid") == 0 && next < buf + n && strcasecmp(next, uuid) == 0)
            return 1;
    }
    return 0;
}

int hostd_qemu_attach(const char *run_dir, const char *uuid, int timeout_ms, hostd_qemu **out)
{
    *out = NULL;
    pid_t pid = running_pid(run_dir, uuid);
    if (pid <= 0)
        return vmseal_fail(ESRCH, "no QEMU runs in %s", run_dir);
    hostd_qemu *vm = calloc(1, sizeof(*vm));
    if (!vm)
        return vmseal_fail(ENOMEM, "out of memory");
    vm->pid = (pid_t)pid;
    vm->serial_fd = -1;
    vm->timeout_ms = timeout_ms > 0 ? timeout_ms : DEFAULT_TIMEOUT_MS;
    vm->run_dir = strdup(run_dir);
    vm->sock_path = hostd_asprintf("%s/qmp.sock", run_dir);
    if (!vm->run_dir || !vm->sock_path) {
        hostd_qemu_free(vm);
        return vmseal_fail(ENOMEM, "out of memory");
    }
    int r = hostd_qmp_connect(vm->sock_path, vm->timeout_ms, &vm->qmp);
    if (r < 0) {
        hostd_qemu_free(vm);
        return r;
    }
    *out = vm;
    return 0;
}

/* ---- accelerator probe ---- */

static int read_cache(const char *path, const char *key)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    char line[512];
    int val = -1;
    if (fgets(line, sizeof(line), f)) {
        size_t kl = strlen(key);
        if (strncmp(line, key, kl) == 0 && line[kl] == ' ' && (line[kl + 1] == '0' || line[kl + 1] == '1'))
            val = line[kl + 1] - '0';
    }
    fclose(f);
    return val;
}

static void write_cache(const char *path, const char *key, int val)
{
    char *tmp = hostd_asprintf("%s.tmp.%d", path, (int)getpid());
    if (!tmp)
        return;
    FILE *f = fopen(tmp, "we");
    if (f) {
        fprintf(f, "%s %d\n", key, val);
        if (fclose(f) == 0 && rename(tmp, path) == 0) {
            free(tmp);
            return;
        }
    }
    unlink(tmp);
    free(tmp);
}

/* Find the binary on PATH to key the cache by its modification time. */
static void binary_stamp(const char *bin, char *out, size_t len)
{
    struct stat st;
    if (strchr(bin, '/')) {
        if (stat(bin, &st) == 0) {
            snprintf(out, len, "%s@%lld", bin, (long long)st.st_mtime);
            return;
        }
    } else {
        const char *path = getenv("PATH");
        char *copy = strdup(path ? path : "/usr/bin:/bin");
        char *save = NULL;
        for (char *d = copy ? strtok_r(copy, ":", &save) : NULL; d; d = strtok_r(NULL, ":", &save)) {
            char full[4096];
            snprintf(full, sizeof(full), "%s/%s", d, bin);
            if (stat(full, &st) == 0) {
                snprintf(out, len, "%s@%lld", full, (long long)st.st_mtime);
                free(copy);
                return;
            }
        }
        free(copy);
    }
    snprintf(out, len, "%s", bin);
}

static int file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    char buf[65536];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* the console may carry NULs or escapes: search with memmem */
    return memmem(buf, n, needle, strlen(needle)) != NULL;
}

int hostd_qemu_probe_kvm(const hostd_kvm_probe *p)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return 0;
    close(fd);
    if (!p || !p->kernel || !p->expect)
        return vmseal_fail(EINVAL, "KVM probe needs a kernel and the text to expect");
    const char *qemu = qemu_binary(p->qemu);
    struct utsname u;
    uname(&u);
    char stamp[4096 + 64], key[8192];
    binary_stamp(qemu, stamp, sizeof(stamp));
    snprintf(key, sizeof(key), "kvm-probe:%s:%s:%s", stamp, u.release, p->kernel);
    for (char *c = key; *c; c++)
        if (*c == ' ' || *c == '\n')
            *c = '_';
    if (p->cache_file) {
        int v = read_cache(p->cache_file, key);
        if (v >= 0)
            return v;
    }

    char dir[] = "/tmp/vmseal-kvm-probe.XXXXXX";
    if (!mkdtemp(dir))
        return vmseal_fail(errno, "KVM probe: mkdtemp: %s", strerror(errno));
    char serial[64], log[64];
    snprintf(serial, sizeof(serial), "%s/serial.log", dir);
    snprintf(log, sizeof(log), "%s/qemu.log", dir);
    argv_buf a = {0};
    arg_add(&a, qemu);
    arg_add(&a, "-accel");
    arg_add(&a, "kvm");
    arg_add(&a, "-m");
    arg_add(&a, "256");
    arg_add(&a, "-nodefaults");
    arg_add(&a, "-nographic");
    arg_add(&a, "-no-reboot");
    arg_add(&a, "-serial");
    arg_add_owned(&a, hostd_asprintf("file:%s", serial));
    arg_add(&a, "-kernel");
    arg_add(&a, p->kernel);
    if (p->initrd) {
        arg_add(&a, "-initrd");
        arg_add(&a, p->initrd);
    }
    arg_add(&a, "-append");
    arg_add(&a, p->append ? p->append : "console=ttyS0 quiet");
    int works = 0;
    pid_t pid = 0;
    int stopped = 0;
    if (!a.oom && spawn(a.v, log, 1, NULL, 0, 0, &pid) == 0) {
        int timeout = p->timeout_ms > 0 ? p->timeout_ms : 20000;
        int64_t deadline = hostd_now_ms() + timeout;
        int exited = 0;
        for (;;) {
            if (!pid_alive(pid, 1)) {
                exited = 1;
                break;
            }
            if (hostd_now_ms() >= deadline)
                break;
            if (p->stop && *p->stop) {
                stopped = 1;
                break;
            }
            hostd_sleep_ms(20);
        }
        if (exited) {
            works = file_contains(serial, p->expect);
        } else {
            kill(pid, SIGKILL);
            (void)wait_pid_exit(pid, 1, 10000);
        }
    }
    argv_free(&a);
    unlink(serial);
    unlink(log);
    rmdir(dir);
    if (p->cache_file && pid > 0 && !stopped)
        write_cache(p->cache_file, key, works);
    vmseal_clear_error();
    return works;
}

hostd_accel hostd_qemu_pick_accel(const hostd_kvm_probe *probe)
{
    const char *env = getenv("VMSEAL_ACCEL");
    if (env && strcmp(env, "kvm") == 0)
        return VMSEAL_ACCEL_KVM;
    if (env && strcmp(env, "tcg") == 0)
        return VMSEAL_ACCEL_TCG;
    if (probe && hostd_qemu_probe_kvm(probe) == 1)
        return VMSEAL_ACCEL_KVM;
    return VMSEAL_ACCEL_TCG;
}
