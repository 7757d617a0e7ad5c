/* log: read the sealed serial console log of an encrypted vmseal-hostd VM
 * offline with its KEK (docs/formats.md "Sealed log"). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <vmseal/diskdesc.h>
#include <vmseal/keysafe.h>
#include <vmseal/sealed.h>
#include <vmseal/vmrecord.h>

#include "cu.h"

#define LOG_BASE "serial"

static void log_usage(FILE *f)
{
    fprintf(f,
        "usage: vmseal-crypto-util log (--kek-file F | --kek-fd N) [--kek-id ID]\n"
        "                              [--tail N] [--allow-open] [--force] [--quiet]\n"
        "                              VMHOME|VM.CONF [OUT]\n"
        "\n"
        "Verify and decrypt the sealed serial console log of an encrypted VM\n"
        "(VMHOME/serial-NNNNNNNN.vmslog, written by vmseal-hostd) into OUT\n"
        "(default '-': stdout). The log key comes from the VM's secret, whose key\n"
        "safe is in the vm.conf of VMHOME, unwrapped with the KEK. Every kept segment\n"
        "is verified; damage (a changed, cut, missing, renamed or foreign segment)\n"
        "is an error. --allow-open accepts a last segment without its end record\n"
        "(the VM is running, or hostd stopped while it ran). --tail N writes only\n"
        "the last N bytes. A file OUT appears only after everything verified (mode\n"
        "0600); on a terminal, control characters other than newline and tab are\n"
        "shown as '?'. Exit status: 0 success, 2 failure, 64 usage.\n");
}

typedef struct sink {
    int fd;
    int tty;
    uint8_t *ring;       /* --tail: the last cap bytes */
    size_t cap, len, pos;
    uint64_t written;
    int err;
} sink;

static int put(sink *s, const uint8_t *buf, size_t len)
{
    uint8_t tmp[4096];
    while (len > 0) {
        size_t n = len;
        const uint8_t *p = buf;
        if (s->tty) {   /* no terminal escapes from the guest */
            n = len < sizeof(tmp) ? len : sizeof(tmp);
            for (size_t i = 0; i < n; i++)
                tmp[i] = (buf[i] < 0x20 && buf[i] != '\n' && buf[i] != '\t') || buf[i] == 0x7f
                             ? '?'
                             : buf[i];
            p = tmp;
        }
        int w = vmseal_write_all(s->fd, p, n);
        if (w < 0) {
            s->err = -w;
            OPENSSL_cleanse(tmp, sizeof(tmp));
            return w;
        }
        s->written += n;
        buf += n;
        len -= n;
    }
    OPENSSL_cleanse(tmp, sizeof(tmp));
    return 0;
}

static int emit(void *ctx, const void *data, size_t n)
{
    sink *s = ctx;
    const uint8_t *p = data;
    if (!s->ring)
        return put(s, p, n);
    if (s->cap == 0)
        return 0;
    if (n >= s->cap) {
        memcpy(s->ring, p + n - s->cap, s->cap);
        s->pos = 0;
        s->len = s->cap;
        return 0;
    }
    size_t first = s->cap - s->pos < n ? s->cap - s->pos : n;
    memcpy(s->ring + s->pos, p, first);
    memcpy(s->ring, p + first, n - first);
    s->pos = (s->pos + n) % s->cap;
    s->len = s->len + n > s->cap ? s->cap : s->len + n;
    return 0;
}

static int flush_ring(sink *s)
{
    if (!s->ring || s->len == 0)
        return 0;
    if (s->len < s->cap)
        return put(s, s->ring, s->len);
    int r = put(s, s->ring + s->pos, s->cap - s->pos);
    return r < 0 ? r : put(s, s->ring, s->pos);
}

/* VMHOME or VMHOME/vm.conf -> the folder and the vm.conf path. */
static int split_home(const char *arg, char **dir, char **conf)
{
    struct stat st;
    if (stat(arg, &st) != 0)
        return vmseal_fail(errno, "%s: %s", arg, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        *dir = strdup(arg);
        size_t n = strlen(arg) + sizeof(VMSEAL_VMREC_FILE) + 1;
        *conf = malloc(n);
        if (*conf)
            snprintf(*conf, n, "%s/%s", arg, VMSEAL_VMREC_FILE);
    } else {
        *conf = strdup(arg);
        *dir = strdup(arg);
        char *slash = *dir ? strrchr(*dir, '/') : NULL;
        if (slash == *dir && slash)
            slash[1] = '\0';
        else if (slash)
            *slash = '\0';
        else if (*dir)
            snprintf(*dir, strlen(arg) + 1, ".");
    }
    if (!*dir || !*conf)
        return vmseal_fail(ENOMEM, "out of memory");
    return 0;
}

int cu_log_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"kek-file", required_argument, NULL, 'k'}, {"kek-fd", required_argument, NULL, 'K'},
        {"kek-id", required_argument, NULL, 'i'},   {"tail", required_argument, NULL, 't'},
        {"allow-open", no_argument, NULL, 'o'},     {"force", no_argument, NULL, 'f'},
        {"quiet", no_argument, NULL, 'q'},          {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    cu_kek_opts ko;
    cu_kek_opts_init(&ko);
    int force = 0, allow_open = 0, c;
    uint64_t tail = 0;
    int have_tail = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "fqh", opts, NULL)) != -1) {
        switch (c) {
        case 'k': ko.file = optarg; break;
        case 'K':
            if (cu_parse_fd(optarg, &ko.fd) < 0) {
                cu_err("--kek-fd needs a file descriptor number");
                return CU_USAGE;
            }
            break;
        case 'i': ko.id = optarg; break;
        case 't':
            if (cu_parse_size(optarg, &tail) < 0 || tail > (64u << 20)) {
                cu_err("--tail needs a number of bytes (at most 64M)");
                return CU_USAGE;
            }
            have_tail = 1;
            break;
        case 'o': allow_open = 1; break;
        case 'f': force = 1; break;
        case 'q': cu_quiet = 1; break;
        case 'h': log_usage(stdout); return CU_OK;
        default: log_usage(stderr); return CU_USAGE;
        }
    }
    if (argc - optind < 1 || argc - optind > 2) {
        log_usage(stderr);
        return CU_USAGE;
    }
    const char *home_arg = argv[optind];
    const char *out = argc - optind == 2 ? argv[optind + 1] : "-";
    char *dir = NULL, *conf_path = NULL;
    vmseal_vmrec *conf = NULL;
    vmseal_secret *kek = NULL, *vm_secret = NULL, *lk = NULL;
    sink s = {.fd = -1};
    cu_out o = {.fd = -1};
    int dirfd = -1, rc = CU_ERROR, r;

    if (split_home(home_arg, &dir, &conf_path) < 0) {
        cu_fail("log");
        goto out;
    }
    if (vmseal_vmrec_load(conf_path, &conf) < 0) {
        cu_fail(conf_path);
        goto out;
    }
    const char *uuid = conf->uuid;
    const char *line = conf->vm_keysafe;
    char key[VMSEAL_VMREC_KEY_MAX];
    (void)vmseal_vmrec_keysafe_key(-1, 0, key, sizeof(key));
    if (!line) {
        cu_err("%s: no %s: the VM is not encrypted (its console log is %s/serial.log)",
               conf_path, key, dir);
        goto out;
    }
    vmseal_keysafe_info ki;
    if (vmseal_keysafe_parse(line, &ki) < 0) {
        cu_fail(conf_path);
        goto out;
    }
    if (ko.id && strcmp(ko.id, ki.kek_id) != 0) {
        cu_err("the VM's key safe is under KEK '%s', not '%s'", ki.kek_id, ko.id);
        goto out;
    }
    if (cu_kek_load(&ko, &kek) < 0)
        goto out;
    char obj[64];
    if (vmseal_vmrec_keysafe_object(conf, -1, 0, obj, sizeof(obj)) < 0 ||
        vmseal_keysafe_unwrap(kek, line, obj, &vm_secret) < 0) {
        cu_err("%s of %s (KEK '%s' at provider '%s'): %s", key, conf_path, ki.kek_id,
               ki.provider, vmseal_last_error());
        goto out;
    }
    if (vmseal_slog_key(vm_secret, uuid, &lk) < 0) {
        cu_fail("log key");
        goto out;
    }
    dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        cu_err("%s: %s", dir, strerror(errno));
        goto out;
    }
    if (strcmp(out, "-") == 0) {
        s.fd = STDOUT_FILENO;
        s.tty = isatty(STDOUT_FILENO);
    } else {
        if (cu_out_open(&o, out, force, 0600) < 0)
            goto out;
        s.fd = o.fd;
    }
    if (have_tail) {
        s.cap = (size_t)tail;
        s.ring = malloc(s.cap ? s.cap : 1);
        if (!s.ring) {
            cu_err("out of memory");
            goto fail_out;
        }
    }
    vmseal_slog_log_info li;
    r = vmseal_slog_read_dir(lk, dirfd, LOG_BASE, uuid, allow_open ? VMSEAL_SLOG_ALLOW_OPEN : 0,
                             emit, &s, &li);
    if (r == 0)
        r = flush_ring(&s);
    if (r < 0) {
        if (s.err)
            cu_err("%s: %s", out, strerror(s.err));
        else
            cu_err("%s: the sealed log is damaged: %s", dir, vmseal_last_error());
        goto fail_out;
    }
    if (o.tmp && cu_out_commit(&o) < 0)
        goto out;
    if (li.segments == 0)
        cu_info("%s: no sealed console log (the VM never ran encrypted)", dir);
    else
        cu_info("verified %zu segment%s (%llu..%llu) of the console log of VM %s: log bytes "
                "%llu..%llu, wrote %llu%s", li.segments, li.segments == 1 ? "" : "s",
                (unsigned long long)li.first, (unsigned long long)li.last, uuid,
                (unsigned long long)li.start, (unsigned long long)li.total,
                (unsigned long long)s.written,
                li.last_open ? "; the last segment is still open (no end record)" : "");
    rc = CU_OK;
    goto out;
fail_out:
    if (o.tmp) {
        cu_out_abort(&o);
        cu_err("%s was not written", out);
    } else if (!have_tail) {
        cu_err("the text already written to stdout is unverified past the damage: discard it");
    }
out:
    if (s.ring) {
        OPENSSL_cleanse(s.ring, s.cap);
        free(s.ring);
    }
    if (dirfd >= 0)
        close(dirfd);
    vmseal_secret_free(kek);
    vmseal_secret_free(vm_secret);
    vmseal_secret_free(lk);
    vmseal_vmrec_free(conf);
    free(dir);
    free(conf_path);
    return rc;
}
