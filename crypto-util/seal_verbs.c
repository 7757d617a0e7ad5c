/* seal / unseal / coredump decrypt: VM home files in the sealed format. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vmseal/sealed.h>

#include "cu.h"

typedef struct src {
    int fd;
    uint64_t done, total;
    cu_progress *prog;
} src;

static ssize_t src_read(void *ctx, void *buf, size_t len)
{
    src *s = ctx;
    if (cu_cancel)
        return -ECANCELED;
    for (;;) {
        ssize_t r = read(s->fd, buf, len);
        if (r < 0 && errno == EINTR) {
            if (cu_cancel)
                return -ECANCELED;
            continue;
        }
        if (r < 0)
            return -errno;
        s->done += (uint64_t)r;
        cu_progress_update(s->done, s->total, s->prog);
        return r;
    }
}

typedef struct dst {
    int fd;
    uint64_t written;
} dst;

static int fd_write(void *ctx, const void *buf, size_t len)
{
    dst *d = ctx;
    d->written += len;
    return vmseal_write_all(d->fd, buf, len);
}

static void seal_usage(FILE *f, const char *verb, int sealing)
{
    if (sealing)
        fprintf(f,
            "usage: vmseal-crypto-util seal (--kek-file F | --kek-fd N) --kek-id ID\n"
            "                               [--provider NAME] [--force] [--quiet] IN OUT\n"
            "\n"
            "Seal IN (a VM home file: NVRAM, suspend or snapshot memory, core dump,\n"
            "vTPM state) into OUT: streaming AES-256-GCM under a random per-file key\n"
            "wrapped by the KEK (docs/formats.md, 'Sealed file'). '-' reads stdin /\n"
            "writes stdout; pipes work. OUT is written to a temporary file and renamed\n"
            "when complete (mode 0600); an existing OUT is kept unless --force.\n");
    else
        fprintf(f,
            "usage: vmseal-crypto-util %s (--kek-file F | --kek-fd N) [--kek-id ID]\n"
            "                               [--force] [--quiet] IN OUT\n"
            "\n"
            "Verify and decrypt the sealed file IN into OUT ('-' = stdin / stdout).\n"
            "A file OUT appears only after every chunk verified (temporary file,\n"
            "renamed on success, removed on failure; mode 0600). When OUT is '-', data\n"
            "is written as it verifies: on a non-zero exit DISCARD what was read.\n"
            "With --kek-id, the file must have been sealed under that KEK id.\n"
            "Exit status: 0 success, 2 failure (wrong key, corrupt or truncated\n"
            "input, not a sealed file), 64 usage.\n", verb);
}

static int run(int argc, char **argv, int sealing, const char *verb)
{
    static const struct option opts[] = {
        {"kek-file", required_argument, NULL, 'k'}, {"kek-fd", required_argument, NULL, 'K'},
        {"kek-id", required_argument, NULL, 'i'},   {"provider", required_argument, NULL, 'p'},
        {"force", no_argument, NULL, 'f'},          {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    cu_kek_opts ko;
    cu_kek_opts_init(&ko);
    int force = 0, c;
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
        case 'p': ko.provider = optarg; break;
        case 'f': force = 1; break;
        case 'q': cu_quiet = 1; break;
        case 'h': seal_usage(stdout, verb, sealing); return CU_OK;
        default: seal_usage(stderr, verb, sealing); return CU_USAGE;
        }
    }
    if (argc - optind != 2) {
        seal_usage(stderr, verb, sealing);
        return CU_USAGE;
    }
    cu_install_cancel_handler();
    const char *in = argv[optind], *out = argv[optind + 1];
    if (sealing && cu_kek_check_ids(&ko) < 0)
        return CU_USAGE;
    vmseal_secret *kek = NULL;
    if (cu_kek_load(&ko, &kek) < 0)
        return CU_ERROR;

    int rc = CU_ERROR;
    src s = {STDIN_FILENO, 0, 0, NULL};
    struct stat ist, ost;
    memset(&ist, 0, sizeof(ist));
    if (strcmp(in, "-") != 0) {
        s.fd = open(in, O_RDONLY | O_CLOEXEC);
        if (s.fd < 0) {
            cu_err("%s: %s", in, strerror(errno));
            goto out;
        }
    }
    if (fstat(s.fd, &ist) == 0 && S_ISREG(ist.st_mode))
        s.total = (uint64_t)ist.st_size;
    /* Bigger pipe buffers: fewer context switches per 64 KiB chunk. */
    if (S_ISFIFO(ist.st_mode))
        (void)fcntl(s.fd, F_SETPIPE_SZ, 1 << 20);
    if (strcmp(out, "-") == 0 && fstat(STDOUT_FILENO, &ost) == 0 && S_ISFIFO(ost.st_mode))
        (void)fcntl(STDOUT_FILENO, F_SETPIPE_SZ, 1 << 20);
    if (strcmp(out, "-") != 0 && stat(out, &ost) == 0 && ost.st_dev == ist.st_dev &&
        ost.st_ino == ist.st_ino) {
        cu_err("input and output are the same file");
        goto out;
    }
    cu_out o;
    if (cu_out_open(&o, out, force, 0600) < 0)
        goto out;
    cu_progress prog;
    cu_progress_init(&prog, sealing ? "sealing" : "unsealing");
    s.prog = &prog;
    dst dd = {o.fd, 0};
    vmseal_stream io = {src_read, &s, fd_write, &dd};
    vmseal_sealed_info info;
    int r = sealing ? vmseal_seal(kek, ko.provider, ko.id, 0, &io) : vmseal_unseal(kek, &io, &info);
    cu_progress_end(&prog);
    if (r == 0 && !sealing && ko.id && strcmp(ko.id, info.kek_id) != 0) {
        vmseal_fail(EKEYREJECTED, "sealed with KEK '%s', not '%s'", info.kek_id, ko.id);
        r = -EKEYREJECTED;
    }
    if (r < 0) {
        if (r == -ECANCELED)
            vmseal_fail(ECANCELED, "interrupted");
        cu_fail(in);
        cu_out_abort(&o);
        if (o.fd == STDOUT_FILENO || strcmp(out, "-") == 0)
            cu_err("the data already written to stdout is incomplete or unverified: discard it");
        else
            cu_err("%s was not written", out);
        goto out;
    }
    if (cu_out_commit(&o) < 0)
        goto out;
    if (sealing)
        cu_info("sealed %s -> %s (wrote %llu bytes; KEK '%s' at provider '%s')", in, out,
                (unsigned long long)dd.written, ko.id, ko.provider);
    else
        cu_info("verified and decrypted %s -> %s (wrote %llu bytes; KEK '%s' at provider '%s')", in,
                out, (unsigned long long)dd.written, info.kek_id, info.provider);
    rc = CU_OK;
out:
    if (s.fd > STDIN_FILENO)
        close(s.fd);
    vmseal_secret_free(kek);
    return rc;
}

int cu_seal_main(int argc, char **argv)
{
    return run(argc, argv, 1, "seal");
}

int cu_unseal_main(int argc, char **argv)
{
    return run(argc, argv, 0, "unseal");
}

int cu_coredump_main(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: vmseal-crypto-util coredump decrypt [OPTIONS] IN OUT\n"
               "Decrypt an encrypted (sealed) core dump; the same as 'unseal'.\n"
               "'vmseal-crypto-util coredump decrypt --help' for the options.\n");
        return CU_OK;
    }
    if (argc < 2 || strcmp(argv[1], "decrypt") != 0) {
        cu_err("usage: vmseal-crypto-util coredump decrypt [OPTIONS] IN OUT");
        return CU_USAGE;
    }
    /* a host's own core dump (host encryption mode): the host's private key */
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--host-key") || !strncmp(argv[i], "--host-key=", 11))
            return cu_hostcore_decrypt_main(argc - 1, argv + 1);
    return run(argc - 1, argv + 1, 0, "coredump decrypt");
}
