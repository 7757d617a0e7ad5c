/* One encrypted live migration: the relay process and QEMU's side
 * (hostd/migrate.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include <vmseal/migstream.h>

#include "migrate.h"
#include "strutil.h"

#define QMP_TIMEOUT_MS 15000
#define FD_NAME "vmseal-migrate"

struct hostd_migration {
    pid_t pid;
    int status;     /* the relay's wait status once reaped */
    int reaped;
    int sender;
};

static int relay_path(const hostd_migrate_spec *spec, char *buf, size_t len)
{
    const char *p = spec->relay ? spec->relay : getenv("VMSEAL_MIGRATE_RELAY");
    if (p) {
        if (strlen(p) >= len)
            return vmseal_fail(ENAMETOOLONG, "relay path too long");
        strcpy(buf, p);
        return 0;
    }
    ssize_t n = readlink("/proc/self/exe", buf, len - 32);
    if (n <= 0 || (size_t)n >= len - 32)
        return vmseal_fail(ENOENT, "cannot find vmseal-migrate-relay (no /proc/self/exe)");
    buf[n] = 0;
    char *slash = strrchr(buf, '/');
    strcpy(slash ? slash + 1 : buf, "vmseal-migrate-relay");
    return 0;
}

/* Reap if it ended: 1 reaped (now or before), 0 still running. */
static int try_reap(hostd_migration *m, int block_ms)
{
    int64_t deadline = hostd_now_ms() + block_ms;
    while (!m->reaped) {
        pid_t r = waitpid(m->pid, &m->status, WNOHANG);
        if (r == m->pid || (r < 0 && errno == ECHILD)) {
            m->reaped = 1;
            if (r < 0)
                m->status = 0x100; /* lost: count as a failure */
            break;
        }
        if (hostd_now_ms() >= deadline)
            return 0;
        usleep(20 * 1000);
    }
    return 1;
}

static int relay_ok(const hostd_migration *m)
{
    return m->reaped && WIFEXITED(m->status) && WEXITSTATUS(m->status) == 0;
}

static void relay_stop(hostd_migration *m)
{
    if (!m || m->reaped)
        return;
    kill(m->pid, SIGTERM);
    if (!try_reap(m, 2000)) {
        kill(m->pid, SIGKILL);
        try_reap(m, 10000);
    }
}

/* fork + exec the relay with descriptors 3 (key), 4 (QEMU's socket) and,
 * for recv, 5 (ready); nothing else but stdin (/dev/null) and stderr. */
static int spawn(const hostd_migrate_spec *spec, int sender, int qemu_fd, int *ready_rd,
                 hostd_migration **out)
{
    char relay[PATH_MAX], tmo[16];
    int r = relay_path(spec, relay, sizeof(relay));
    if (r < 0)
        return r;
    if (!spec->key || vmseal_secret_len(spec->key) != VMSEAL_MIG_KEY_LEN)
        return vmseal_fail(EINVAL, "migration: the one-time key must be %d bytes",
                           VMSEAL_MIG_KEY_LEN);
    if (!spec->address || strlen(spec->address) > 300)
        return vmseal_fail(EINVAL, "migration: no address");
    snprintf(tmo, sizeof(tmo), "%d", spec->timeout_s > 0 ? spec->timeout_s : 60);
    const char *argv[16];
    int n = 0;
    argv[n++] = relay;
    argv[n++] = sender ? "send" : "recv";
    argv[n++] = "--key-fd";
    argv[n++] = "3";
    argv[n++] = "--qemu-fd";
    argv[n++] = "4";
    argv[n++] = "--timeout";
    argv[n++] = tmo;
    argv[n++] = sender ? "--connect" : "--listen";
    argv[n++] = spec->address;
    if (!sender) {
        argv[n++] = "--ready-fd";
        argv[n++] = "5";
        if (spec->peer) {
            argv[n++] = "--peer";
            argv[n++] = spec->peer;
        }
    }
    argv[n] = NULL;
    char *const envp[] = {NULL};

    /* The key and nonce, in a pipe (64 KiB of room: written before the fork). */
    int kp[2] = {-1, -1}, rp[2] = {-1, -1}, devnull = -1;
    vmseal_secret *km = vmseal_secret_new(VMSEAL_MIG_KEY_LEN + VMSEAL_MIG_NONCE_LEN);
    if (!km)
        return vmseal_fail(ENOMEM, "migration: %s", vmseal_last_error());
    unsigned char *p = vmseal_secret_data(km);
    memcpy(p, vmseal_secret_cdata(spec->key), VMSEAL_MIG_KEY_LEN);
    for (int i = 0; i < VMSEAL_MIG_NONCE_LEN; i++)
        p[VMSEAL_MIG_KEY_LEN + i] = (unsigned char)(spec->nonce >> (56 - 8 * i));
    if (pipe2(kp, O_CLOEXEC) < 0 || (!sender && pipe2(rp, O_CLOEXEC) < 0) ||
        (devnull = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
        r = vmseal_fail(errno, "migration: %s", strerror(errno));
        goto out;
    }
    r = vmseal_write_all(kp[1], p, vmseal_secret_len(km));
    close(kp[1]);
    kp[1] = -1;
    if (r < 0) {
        vmseal_fail(-r, "migration: handing over the key failed");
        goto out;
    }
    hostd_migration *m = calloc(1, sizeof(*m));
    if (!m) {
        r = vmseal_fail(ENOMEM, "out of memory");
        goto out;
    }
    m->sender = sender;
    pid_t parent = getpid();
    m->pid = fork();
    if (m->pid < 0) {
        r = vmseal_fail(errno, "migration: fork: %s", strerror(errno));
        free(m);
        goto out;
    }
    if (m->pid == 0) {
        /* async-signal-safe calls only from here on */
        int k = fcntl(kp[0], F_DUPFD, 10), q = fcntl(qemu_fd, F_DUPFD, 10);
        int rd = sender ? -1 : fcntl(rp[1], F_DUPFD, 10);
        if (k < 0 || q < 0 || (!sender && rd < 0) || dup2(devnull, 0) < 0 || dup2(k, 3) < 0 ||
            dup2(q, 4) < 0 || (!sender && dup2(rd, 5) < 0))
            _exit(127);
        close_range(sender ? 5 : 6, ~0U, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* hostd gone: the migration fails */
        if (getppid() != parent)
            _exit(127);
        execve(relay, (char *const *)argv, envp);
        _exit(127);
    }
    if (!sender) {
        *ready_rd = rp[0];
        rp[0] = -1;
    }
    *out = m;
    r = 0;
out:
    vmseal_secret_free(km);
    for (int i = 0; i < 2; i++) {
        if (kp[i] >= 0)
            close(kp[i]);
        if (rp[i] >= 0)
            close(rp[i]);
    }
    if (devnull >= 0)
        close(devnull);
    return r;
}

static void big_buffers(int fd)
{
    int big = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
}

int hostd_migrate_incoming(hostd_qmp *q, const hostd_migrate_spec *spec, int *port,
                           hostd_migration **out)
{
    *out = NULL;
    *port = 0;
    int sv[2], ready = -1;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return vmseal_fail(errno, "migration: socketpair: %s", strerror(errno));
    big_buffers(sv[0]);
    big_buffers(sv[1]);
    hostd_migration *m = NULL;
    int r = spawn(spec, 0, sv[1], &ready, &m);
    close(sv[1]);
    if (r < 0) {
        close(sv[0]);
        return r;
    }
    /* the relay says its port once it listens */
    char line[16] = {0};
    size_t got = 0;
    int64_t deadline = hostd_now_ms() + QMP_TIMEOUT_MS;
    while (got < sizeof(line) - 1 && !memchr(line, '\n', got)) {
        struct pollfd pf = {.fd = ready, .events = POLLIN};
        int left = (int)(deadline - hostd_now_ms());
        if (left <= 0 || poll(&pf, 1, left) <= 0)
            break;
        ssize_t n = read(ready, line + got, sizeof(line) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(ready);
    char *end = NULL;
    long pt = strtol(line, &end, 10);
    if (got == 0 || !end || *end != '\n' || pt <= 0 || pt > 65535) {
        close(sv[0]);
        try_reap(m, 2000);
        relay_stop(m);
        free(m);
        return vmseal_fail(EIO, "migration: the receiving relay did not start (listening on "
                                "%s)", spec->address);
    }
    r = hostd_qmp_getfd(q, FD_NAME, sv[0], QMP_TIMEOUT_MS);
    close(sv[0]);
    if (r == 0)
        r = hostd_qmp_execute(q, "migrate-incoming", json_pack("{s:s}", "uri", "fd:" FD_NAME),
                              QMP_TIMEOUT_MS, NULL);
    if (r < 0) {
        relay_stop(m);
        free(m);
        return r;
    }
    *port = (int)pt;
    *out = m;
    return 0;
}

int hostd_migrate_outgoing(hostd_qmp *q, const hostd_migrate_spec *spec, hostd_migration **out)
{
    *out = NULL;
    uint64_t bw = spec->max_bandwidth ? spec->max_bandwidth : (1ULL << 40);
    int r = hostd_qmp_execute(q, "migrate-set-parameters",
                              json_pack("{s:I}", "max-bandwidth", (json_int_t)bw),
                              QMP_TIMEOUT_MS, NULL);
    if (r < 0)
        return r;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return vmseal_fail(errno, "migration: socketpair: %s", strerror(errno));
    big_buffers(sv[0]);
    big_buffers(sv[1]);
    hostd_migration *m = NULL;
    r = spawn(spec, 1, sv[1], NULL, &m);
    close(sv[1]);
    if (r == 0)
        r = hostd_qmp_getfd(q, FD_NAME, sv[0], QMP_TIMEOUT_MS);
    close(sv[0]);
    if (r == 0)
        r = hostd_qmp_execute(q, "migrate", json_pack("{s:s}", "uri", "fd:" FD_NAME),
                              QMP_TIMEOUT_MS, NULL);
    if (r < 0) {
        if (m) {
            relay_stop(m);
            free(m);
        }
        return r;
    }
    *out = m;
    return 0;
}

static const char *relay_state(const hostd_migration *m, char *buf, size_t len)
{
    if (!m->reaped)
        snprintf(buf, len, "the relay still runs");
    else if (WIFEXITED(m->status))
        snprintf(buf, len, "the relay exited with status %d", WEXITSTATUS(m->status));
    else
        snprintf(buf, len, "the relay was killed by signal %d", WTERMSIG(m->status));
    return buf;
}

int hostd_migrate_wait(hostd_migration *m, hostd_qmp *q, int timeout_ms)
{
    int64_t deadline = hostd_now_ms() + timeout_ms;
    char rs[64];
    if (!m->sender) {
        if (!try_reap(m, timeout_ms))
            return vmseal_fail(ETIMEDOUT, "migration: the stream did not end within %d ms",
                               timeout_ms);
        if (!relay_ok(m))
            return vmseal_fail(EIO, "migration: the incoming stream failed (%s; its reason "
                                    "is in hostd's log)",
                               relay_state(m, rs, sizeof(rs)));
        /* Every frame verified, but a source QEMU that gave up also ends its
         * stream cleanly: QEMU's own end marker decides. A completed
         * incoming migration leaves the guest paused (-S); a failed one
         * ends QEMU. */
        while (q) {
            json_t *ret = NULL;
            int r = hostd_qmp_execute(q, "query-status", NULL, QMP_TIMEOUT_MS, &ret);
            if (r < 0)
                return vmseal_fail(EIO, "migration: the destination QEMU did not load the "
                                        "stream (%s)", vmseal_last_error());
            const char *st = json_string_value(json_object_get(ret, "status"));
            int done = st && strcmp(st, "inmigrate") != 0;
            int ok = st && strcmp(st, "paused") == 0;
            char stc[32];
            hostd_copy_str(stc, sizeof(stc), st ? st : "?");
            json_decref(ret);
            if (done && ok)
                break;
            if (done)
                return vmseal_fail(EIO, "migration: the destination QEMU is %s", stc);
            if (hostd_now_ms() >= deadline)
                return vmseal_fail(ETIMEDOUT, "migration: the destination QEMU still loads "
                                              "the stream after %d ms", timeout_ms);
            usleep(50 * 1000);
        }
        return 0;
    }
    for (;;) {
        json_t *ret = NULL;
        int r = hostd_qmp_execute(q, "query-migrate", NULL, QMP_TIMEOUT_MS, &ret);
        if (r < 0)
            return r;
        const char *st = json_string_value(json_object_get(ret, "status"));
        if (st && (!strcmp(st, "completed") || !strcmp(st, "failed") ||
                   !strcmp(st, "cancelled"))) {
            int ok = !strcmp(st, "completed");
            char why[256];
            const char *d = json_string_value(json_object_get(ret, "error-desc"));
            hostd_copy_str(why, sizeof(why), d ? d : st);
            json_decref(ret);
            int left = (int)(deadline - hostd_now_ms());
            if (!try_reap(m, left > 0 ? left : 0)) {
                if (ok)
                    return vmseal_fail(ETIMEDOUT, "migration: QEMU completed, the relay did "
                                                  "not finish");
                relay_stop(m);
            }
            if (ok && relay_ok(m))
                return 0;
            return vmseal_fail(EIO, "migration failed: %s; %s", ok ? "QEMU completed" : why,
                               relay_state(m, rs, sizeof(rs)));
        }
        json_decref(ret);
        if (hostd_now_ms() >= deadline)
            return vmseal_fail(ETIMEDOUT, "migration: still %s after %d ms", st ? st : "?",
                               timeout_ms);
        usleep(100 * 1000);
    }
}

void hostd_migrate_cancel(hostd_migration *m, hostd_qmp *q)
{
    if (q && hostd_qmp_execute(q, "migrate_cancel", NULL, QMP_TIMEOUT_MS, NULL) < 0) {
        /* QEMU gone or no migration: the relay's end fails it anyway */
    }
    relay_stop(m);
}

pid_t hostd_migrate_relay_pid(const hostd_migration *m)
{
    return m->pid;
}

void hostd_migrate_free(hostd_migration *m)
{
    if (!m)
        return;
    relay_stop(m);
    free(m);
}

/* ------------------------------------------------ the API's side */

#include <openssl/crypto.h>

#include "vm.h"

static int unhex(const char *s, size_t n, unsigned char *out)
{
    for (size_t i = 0; i < n; i++) {
        int v = 0;
        for (int k = 0; k < 2; k++) {
            char c = s[2 * i + k];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (d < 0)
                return -1;
            v = v * 16 + d;
        }
        out[i] = (unsigned char)v;
    }
    return 0;
}

static void wipe_json_string(json_t *v)
{
    if (json_is_string(v))
        OPENSSL_cleanse((void *)json_string_value(v), json_string_length(v));
}

void hostd_migrate_req_clear(hostd_migrate_req *rq)
{
    vmseal_secret_free(rq->key);
    memset(rq, 0, sizeof(*rq));
}

int hostd_migrate_req_parse(json_t *spec, int dest, hostd_migrate_req *out)
{
    memset(out, 0, sizeof(*out));
    json_t *kj = json_object_get(spec, "key"), *nj = json_object_get(spec, "nonce");
    int r = 0;
    if (!json_is_object(spec))
        r = vmseal_fail(EINVAL, "spec must be an object");
    else if (!json_is_string(kj) || json_string_length(kj) != 2 * VMSEAL_MIG_KEY_LEN)
        r = vmseal_fail(EINVAL, "spec.key must be %d hex digits", 2 * VMSEAL_MIG_KEY_LEN);
    else if (!json_is_string(nj) || json_string_length(nj) != 2 * VMSEAL_MIG_NONCE_LEN)
        r = vmseal_fail(EINVAL, "spec.nonce must be %d hex digits", 2 * VMSEAL_MIG_NONCE_LEN);
    if (r == 0 && !(out->key = vmseal_secret_new(VMSEAL_MIG_KEY_LEN)))
        r = vmseal_fail(ENOMEM, "out of memory");
    unsigned char nb[VMSEAL_MIG_NONCE_LEN];
    if (r == 0 && (unhex(json_string_value(kj), VMSEAL_MIG_KEY_LEN, vmseal_secret_data(out->key)) < 0 ||
                   unhex(json_string_value(nj), VMSEAL_MIG_NONCE_LEN, nb) < 0))
        r = vmseal_fail(EINVAL, "spec.key and spec.nonce must be hex digits");
    wipe_json_string(kj);
    wipe_json_string(nj);
    if (r == 0) {
        for (int i = 0; i < VMSEAL_MIG_NONCE_LEN; i++)
            out->nonce = out->nonce << 8 | nb[i];
        const char *a = json_string_value(json_object_get(spec, dest ? "listen" : "dest"));
        const char *p = json_string_value(json_object_get(spec, "peer"));
        if (!a || !*a || strlen(a) >= sizeof(out->address) || !strchr(a, ':'))
            r = vmseal_fail(EINVAL, "spec.%s must be \"ADDRESS:PORT\"", dest ? "listen" : "dest");
        else if (p && strlen(p) >= sizeof(out->peer))
            r = vmseal_fail(EINVAL, "spec.peer is too long");
        if (r == 0) {
            hostd_copy_str(out->address, sizeof(out->address), a);
            hostd_copy_str(out->peer, sizeof(out->peer), dest && p ? p : "");
        }
    }
    if (r < 0)
        hostd_migrate_req_clear(out);
    return r;
}

static void spec_of(const hostd_migrate_req *rq, hostd_migrate_spec *s)
{
    *s = (hostd_migrate_spec){.key = rq->key, .nonce = rq->nonce, .address = rq->address,
                              .peer = rq->peer[0] ? rq->peer : NULL};
}

int hostd_vm_migrate_in_start(hostd_vm *vm, const hostd_host_env *env,
                              const hostd_migrate_req *rq, int *port, hostd_migration **out)
{
    *out = NULL;
    int r = hostd_vm_power_on_incoming(vm, env);
    if (r < 0)
        return r;
    hostd_migrate_spec s;
    spec_of(rq, &s);
    hostd_qmp *q = hostd_vm_monitor(vm);
    r = q ? hostd_migrate_incoming(q, &s, port, out)
          : vmseal_fail(ESRCH, "VM %s: QEMU ended before the migration", hostd_vm_name(vm));
    if (r < 0) {
        char msg[512];
        hostd_copy_str(msg, sizeof(msg), vmseal_last_error());
        (void)hostd_vm_power_off(vm, 0);
        return vmseal_fail(-r, "%s", msg);
    }
    hostd_vm_log(vm, "migration: receiving on port %d (from %s)", *port,
                 rq->peer[0] ? rq->peer : "any address");
    return 0;
}

int hostd_vm_migrate_in_finish(hostd_vm *vm, hostd_migration *m, int timeout_ms)
{
    int r = hostd_vm_op_begin(vm, "receiving a migration");
    if (r == 0) {
        hostd_qmp *q = hostd_vm_monitor(vm);
        r = hostd_migrate_wait(m, q, timeout_ms);
        if (r == 0)
            r = hostd_qmp_execute(q, "cont", NULL, QMP_TIMEOUT_MS, NULL);
        hostd_vm_op_end(vm);
    }
    hostd_migrate_free(m);
    if (r < 0) {
        char msg[512];
        hostd_copy_str(msg, sizeof(msg), vmseal_last_error());
        hostd_vm_log(vm, "migration in failed: %s", msg);
        if (hostd_vm_power_off(vm, 0) < 0) {
            /* QEMU ended already */
        }
        return vmseal_fail(-r, "%s", msg);
    }
    hostd_vm_log(vm, "migration in completed: the guest runs here");
    return 0;
}

int hostd_vm_migrate_out(hostd_vm *vm, const hostd_migrate_req *rq,
                         void (*progress)(int pct, void *ctx), void *ctx,
                         volatile sig_atomic_t *cancel)
{
    if (hostd_vm_has_tpm(vm))
        return vmseal_fail(EBUSY, "VM %s has a vTPM: live migration of its state is not supported",
                           hostd_vm_name(vm));
    int r = hostd_vm_op_begin(vm, "migrating");
    if (r < 0)
        return r;
    hostd_qmp *q = hostd_vm_monitor(vm);
    hostd_migrate_spec s;
    spec_of(rq, &s);
    /* test hook: a slow migration, to interrupt it part-way */
    const char *bw = getenv("VMSEAL_TEST_MIGRATE_MAX_BANDWIDTH");
    if (bw && strtoull(bw, NULL, 10) > 0)
        s.max_bandwidth = strtoull(bw, NULL, 10);
    hostd_migration *m = NULL;
    r = hostd_migrate_outgoing(q, &s, &m);
    if (r == 0)
        hostd_vm_log(vm, "migration out to %s started", rq->address);
    int cancelled = 0;
    while (r == 0) {
        r = hostd_migrate_wait(m, q, 1000);
        if (r != -ETIMEDOUT)
            break;
        r = 0;
        if (cancel && *cancel && !cancelled) {
            cancelled = 1;
            hostd_migrate_cancel(m, q);
        }
        json_t *ret = NULL;
        if (progress && hostd_qmp_execute(q, "query-migrate", NULL, QMP_TIMEOUT_MS, &ret) == 0) {
            json_t *ram = json_object_get(ret, "ram");
            json_int_t tr = json_integer_value(json_object_get(ram, "transferred"));
            json_int_t tot = json_integer_value(json_object_get(ram, "total"));
            if (tot > 0)
                progress(tr >= tot ? 99 : (int)(tr * 100 / tot), ctx);
        }
        json_decref(ret);
    }
    hostd_migrate_free(m);
    if (r < 0) {
        char msg[512];
        hostd_copy_str(msg, sizeof(msg), vmseal_last_error());
        /* QEMU ends a failed or cancelled migration and the guest runs on;
         * a guest left paused is continued */
        json_t *ret = NULL;
        if (hostd_qmp_execute(q, "query-status", NULL, QMP_TIMEOUT_MS, &ret) == 0 &&
            !json_is_true(json_object_get(ret, "running")) &&
            hostd_qmp_execute(q, "cont", NULL, QMP_TIMEOUT_MS, NULL) < 0)
            hostd_vm_log(vm, "migration out failed and the guest could not be continued: %s",
                         vmseal_last_error());
        json_decref(ret);
        hostd_vm_log(vm, "migration out %s (the VM runs on here): %s",
                     cancelled ? "cancelled" : "failed", msg);
        hostd_vm_op_end(vm);
        return vmseal_fail(cancelled ? ECANCELED : -r, "%s%s", cancelled ? "cancelled: " : "", msg);
    }
    hostd_vm_log(vm, "migration out completed (the guest waits here until the destination runs)");
    hostd_vm_op_end(vm);
    return 0;
}

int hostd_vm_migrate_out_end(hostd_vm *vm, int completed)
{
    if (completed) {
        int r = hostd_vm_power_off(vm, 0);
        if (r == -EALREADY)
            r = 0;
        if (r >= 0)
            hostd_vm_log(vm, "migrated away: QEMU here ended");
        return r < 0 ? r : 0;
    }
    int r = hostd_vm_op_begin(vm, "continuing after a migration");
    if (r < 0)
        return r;
    hostd_qmp *q = hostd_vm_monitor(vm);
    json_t *ret = NULL;
    r = hostd_qmp_execute(q, "query-status", NULL, QMP_TIMEOUT_MS, &ret);
    if (r == 0 && !json_is_true(json_object_get(ret, "running")))
        r = hostd_qmp_execute(q, "cont", NULL, QMP_TIMEOUT_MS, NULL);
    json_decref(ret);
    if (r == 0)
        hostd_vm_log(vm, "the destination did not take over: the guest runs on here");
    hostd_vm_op_end(vm);
    return r;
}
