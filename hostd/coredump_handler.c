/* vmseal-coredump-handler — host encryption mode (seed 004): the kernel
 * pipes a crashing process's core dump to this program (kernel.core_pattern
 * = "|/PATH/vmseal-coredump-handler --key PUB --dir DIR %P %e %t"); it
 * seals stdin to the host's public key (include/vmseal/hostcore.h) into
 * DIR/core-TIME-COMM-PID.vmhcore. It holds no secret: only the host's
 * private key, kept off the host, opens a dump
 * (`vmseal-crypto-util coredump decrypt --host-key PRIV`).
 *
 * usage: vmseal-coredump-handler --key PUBFILE --dir DIR [--max-mb N] PID COMM TIME
 *   PUBFILE  64 hex digits (vmseal-crypto-util hostkey generate)
 *   --max-mb a dump larger than this is dropped (default 65536)
 * Failures go to syslog (never any dump content); exit status 0 on success.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <vmseal/hostcore.h>

typedef struct in_ctx {
    uint64_t bytes, max;
} in_ctx;

static ssize_t in_read(void *ctx, void *buf, size_t len)
{
    in_ctx *c = ctx;
    for (;;) {
        ssize_t n = read(STDIN_FILENO, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        c->bytes += (uint64_t)n;
        if (c->bytes > c->max)
            return vmseal_fail(EFBIG, "the core dump is larger than --max-mb");
        return n;
    }
}

static int out_write(void *ctx, const void *buf, size_t len)
{
    return vmseal_write_all(*(int *)ctx, buf, len);
}

static int read_pub(const char *path, uint8_t pub[32])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return vmseal_fail(errno, "%s: %s", path, strerror(errno));
    char buf[80];
    ssize_t n = read(fd, buf, sizeof(buf));
    close(fd);
    if (n == 65 && buf[64] == '\n')
        n = 64;
    if (n != 64 || vmseal_hex_decode(buf, 64, pub, 32) < 0)
        return vmseal_fail(EINVAL, "%s: not a host public key (64 hex digits)", path);
    return 0;
}

/* [A-Za-z0-9._-], anything else '_', at most 32 characters, never empty */
static void clean(char *out, size_t len, const char *in)
{
    size_t n = 0;
    for (; in && *in && n + 1 < len && n < 32; in++)
        out[n++] = ((*in >= 'a' && *in <= 'z') || (*in >= 'A' && *in <= 'Z') ||
                    (*in >= '0' && *in <= '9') || *in == '.' || *in == '-') ? *in : '_';
    if (n == 0)
        out[n++] = '_';
    out[n] = '\0';
}

int main(int argc, char **argv)
{
    /* never dump ourselves (the kernel does not recurse into a pipe
     * handler, but a crash here must not leave anything either) */
    struct rlimit zero = {0, 0};
    (void)setrlimit(RLIMIT_CORE, &zero);
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    openlog("vmseal-coredump-handler", LOG_PID, LOG_DAEMON);
    static const struct option opts[] = {
        {"key", required_argument, NULL, 'k'},
        {"dir", required_argument, NULL, 'd'},
        {"max-mb", required_argument, NULL, 'm'},
        {0, 0, 0, 0},
    };
    const char *key = NULL, *dir = NULL;
    uint64_t max_mb = 65536;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'k': key = optarg; break;
        case 'd': dir = optarg; break;
        case 'm': {
            char *end;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (*end || !*optarg || v < 1 || v > (1ull << 24)) {
                fprintf(stderr, "vmseal-coredump-handler: --max-mb 1..16777216\n");
                return 2;
            }
            max_mb = v;
            break;
        }
        default: return 2;
        }
    }
    if (!key || !dir || argc - optind != 3) {
        fprintf(stderr, "usage: vmseal-coredump-handler --key PUBFILE --dir DIR [--max-mb N] "
                        "PID COMM TIME\n");
        return 2;
    }
    char pid[24], comm[40], when[24];
    clean(pid, sizeof(pid), argv[optind]);
    clean(comm, sizeof(comm), argv[optind + 1]);
    clean(when, sizeof(when), argv[optind + 2]);
    uint8_t pub[32];
    if (read_pub(key, pub) < 0) {
        syslog(LOG_ERR, "core dump of %s[%s] dropped: %s", comm, pid, vmseal_last_error());
        return 1;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (dfd < 0) {
        syslog(LOG_ERR, "core dump of %s[%s] dropped: %s: %s", comm, pid, dir, strerror(errno));
        return 1;
    }
    char name[160], tmp[176];
    snprintf(name, sizeof(name), "core-%s-%s-%s.vmhcore", when, comm, pid);
    snprintf(tmp, sizeof(tmp), ".%s.part", name);
    int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        syslog(LOG_ERR, "core dump of %s[%s] dropped: %s: %s", comm, pid, tmp, strerror(errno));
        close(dfd);
        return 1;
    }
    in_ctx ic = {.max = max_mb << 20};
    vmseal_stream io = {.read = in_read, .read_ctx = &ic, .write = out_write, .write_ctx = &fd};
    int r = vmseal_hostcore_seal(pub, &io);
    if (r == 0 && fsync(fd) != 0)
        r = vmseal_fail(errno, "fsync: %s", strerror(errno));
    close(fd);
    if (r == 0 && renameat(dfd, tmp, dfd, name) != 0)
        r = vmseal_fail(errno, "rename: %s", strerror(errno));
    if (r < 0) {
        syslog(LOG_ERR, "core dump of %s[%s] dropped: %s", comm, pid, vmseal_last_error());
        (void)unlinkat(dfd, tmp, 0);
        close(dfd);
        return 1;
    }
    syslog(LOG_NOTICE, "core dump of %s[%s] sealed to %s/%s (%llu bytes)", comm, pid, dir, name,
           (unsigned long long)ic.bytes);
    close(dfd);
    return 0;
}
