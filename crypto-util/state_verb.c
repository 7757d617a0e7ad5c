/* state decrypt: open a suspend state file of an encrypted vmseal-hostd VM
 * offline with its KEK (docs/formats.md "Sealed file", docs/architecture.md
 * "Suspend and resume"). The file's key is derived from the per-VM secret
 * (the VM's key safe in vm.conf, unwrapped with the KEK) and the file's own
 * name, as hostd derives it (hostd/vmstate.c): purpose "state:<file name>". */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vmseal/keysafe.h>
#include <vmseal/sealed.h>
#include <vmseal/vmrecord.h>

#include "cu.h"

/* QEMU's migration stream starts with QEMU_VM_FILE_MAGIC "QEVM" and
 * QEMU_VM_FILE_VERSION 3 (big-endian 32-bit each). */
static const uint8_t qemu_stream_head[8] = {'Q', 'E', 'V', 'M', 0, 0, 0, 3};

static void state_usage(FILE *f)
{
    fprintf(f,
        "usage: vmseal-crypto-util state decrypt (--kek-file F | --kek-fd N) [--kek-id ID]\n"
        "                              [--vm-config VM.CONF] [--force] [--quiet] IN OUT\n"
        "\n"
        "Verify and decrypt the suspend state file IN (VMHOME/suspend-*.vmss, written\n"
        "by vmseal-hostd) into OUT ('-' = stdout): QEMU's migration stream, as\n"
        "'qemu-system-x86_64 ... -incoming exec:cat OUT' loads it. The file's key comes\n"
        "from the VM's secret, whose key safe is in vm.conf (default: the vm.conf\n"
        "beside IN), unwrapped with the KEK, and from IN's file name: a renamed or\n"
        "foreign state file does not open. A changed or cut file is refused. A file\n"
        "OUT appears only after every chunk verified (mode 0600); with '-', on a\n"
        "non-zero exit DISCARD what was read. Exit status: 0 success, 2 failure,\n"
        "64 usage.\n");
}

typedef struct sink {
    int fd;
    uint64_t written;
    uint8_t head[sizeof(qemu_stream_head)];
    size_t head_len;
} sink;

static int sink_write(void *ctx, const void *buf, size_t len)
{
    sink *s = ctx;
    const uint8_t *p = buf;
    for (size_t i = 0; i < len && s->head_len < sizeof(s->head); i++)
        s->head[s->head_len++] = p[i];
    int r = vmseal_write_all(s->fd, buf, len);
    if (r == 0)
        s->written += len;
    return r;
}

static ssize_t src_read(void *ctx, void *buf, size_t len)
{
    int fd = *(int *)ctx;
    for (;;) {
        if (cu_cancel)
            return -ECANCELED;
        ssize_t r = read(fd, buf, len);
        if (r < 0 && errno == EINTR)
            continue;
        return r < 0 ? -errno : r;
    }
}

static char *conf_beside(const char *in)
{
    const char *slash = strrchr(in, '/');
    size_t dl = slash ? (size_t)(slash - in) + 1 : 0;
    size_t n = dl + sizeof(VMSEAL_VMREC_FILE);
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%.*s%s", (int)dl, in, VMSEAL_VMREC_FILE);
    return p;
}

static int state_decrypt(int argc, char **argv)
{
    static const struct option opts[] = {
        {"kek-file", required_argument, NULL, 'k'}, {"kek-fd", required_argument, NULL, 'K'},
        {"kek-id", required_argument, NULL, 'i'},   {"vm-config", required_argument, NULL, 'c'},
        {"force", no_argument, NULL, 'f'},          {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    cu_kek_opts ko;
    cu_kek_opts_init(&ko);
    const char *conf_arg = NULL;
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
        case 'c': conf_arg = optarg; break;
        case 'f': force = 1; break;
        case 'q': cu_quiet = 1; break;
        case 'h': state_usage(stdout); return CU_OK;
        default: state_usage(stderr); return CU_USAGE;
        }
    }
    if (argc - optind != 2) {
        state_usage(stderr);
        return CU_USAGE;
    }
    cu_install_cancel_handler();
    const char *in = argv[optind], *out = argv[optind + 1];
    const char *base = strrchr(in, '/') ? strrchr(in, '/') + 1 : in;
    char *conf_path = conf_arg ? strdup(conf_arg) : conf_beside(in);
    vmseal_vmrec *conf = NULL;
    vmseal_secret *kek = NULL, *vm_secret = NULL, *fk = NULL;
    cu_out o = {.fd = -1};
    int in_fd = -1, rc = CU_ERROR;
    char key[VMSEAL_VMREC_KEY_MAX], obj[64], purpose[VMSEAL_VMFILE_PURPOSE_MAX + 1];
    char label[VMSEAL_VMFILE_PURPOSE_MAX + 64];

    if (!conf_path) {
        cu_err("out of memory");
        goto out;
    }
    if (!vmseal_vmrec_state_file_valid(base, 1)) {
        if (vmseal_vmrec_state_file_valid(base, 0))
            cu_err("%s is the clear state file of a VM without encryption: nothing to decrypt", in);
        else
            cu_err("%s: not a suspend state file name (*%s): the name is "
                   "part of the file's key", in, VMSEAL_VMREC_STATE_SEALED_EXT);
        goto out;
    }
    if (vmseal_vmrec_load(conf_path, &conf) < 0) {
        cu_fail(conf_path);
        goto out;
    }
    (void)vmseal_vmrec_keysafe_key(-1, 0, key, sizeof(key));
    const char *line = conf->vm_keysafe;
    if (!line) {
        cu_err("%s: no %s: the VM is not encrypted", conf_path, key);
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
    if (vmseal_vmrec_keysafe_object(conf, -1, 0, obj, sizeof(obj)) < 0 ||
        vmseal_keysafe_unwrap(kek, line, obj, &vm_secret) < 0) {
        cu_err("%s of %s (KEK '%s' at provider '%s'): %s", key, conf_path, ki.kek_id,
               ki.provider, vmseal_last_error());
        goto out;
    }
    /* as hostd_vmstate_key (hostd/vmstate.c) */
    snprintf(purpose, sizeof(purpose), "state:%s", base);
    snprintf(label, sizeof(label), "vm:%s/%s", conf->uuid, purpose);
    if (vmseal_vmfile_key(vm_secret, conf->uuid, purpose, &fk) < 0) {
        cu_fail("state file key");
        goto out;
    }
    in_fd = open(in, O_RDONLY | O_CLOEXEC);
    if (in_fd < 0) {
        cu_err("%s: %s", in, strerror(errno));
        goto out;
    }
    struct stat ist, ost;
    if (fstat(in_fd, &ist) != 0 || !S_ISREG(ist.st_mode)) {
        cu_err("%s: not a regular file", in);
        goto out;
    }
    if (strcmp(out, "-") != 0 && stat(out, &ost) == 0 && ost.st_dev == ist.st_dev &&
        ost.st_ino == ist.st_ino) {
        cu_err("input and output are the same file");
        goto out;
    }
    if (cu_out_open(&o, out, force, 0600) < 0)
        goto out;
    sink s = {.fd = o.fd};
    vmseal_stream io = {src_read, &in_fd, sink_write, &s};
    vmseal_sealed_info info;
    int r = vmseal_unseal(fk, &io, &info);
    if (r == 0 && (strcmp(info.provider, VMSEAL_VMFILE_PROVIDER) != 0 ||
                   strcmp(info.kek_id, label) != 0))
        r = vmseal_fail(EKEYREJECTED, "the header names '%s' at '%s', not this VM's state file",
                        info.kek_id, info.provider);
    if (r == 0 && (s.head_len < sizeof(qemu_stream_head) ||
                   memcmp(s.head, qemu_stream_head, sizeof(qemu_stream_head)) != 0))
        r = vmseal_fail(EPROTO, "the decrypted data is not a QEMU migration stream (version 3)");
    if (r < 0) {
        if (r == -ECANCELED)
            vmseal_fail(ECANCELED, "interrupted");
        cu_err("%s: the saved state is damaged or not this VM's: %s", in, vmseal_last_error());
        cu_out_abort(&o);
        if (strcmp(out, "-") == 0)
            cu_err("the data already written to stdout is incomplete or unverified: discard it");
        else
            cu_err("%s was not written", out);
        goto out;
    }
    if (cu_out_commit(&o) < 0)
        goto out;
    cu_info("verified and decrypted the saved state %s of VM %s -> %s (QEMU migration stream, "
            "%llu bytes)", in, conf->uuid, out, (unsigned long long)s.written);
    rc = CU_OK;
out:
    if (in_fd >= 0)
        close(in_fd);
    vmseal_secret_free(kek);
    vmseal_secret_free(vm_secret);
    vmseal_secret_free(fk);
    vmseal_vmrec_free(conf);
    free(conf_path);
    return rc;
}

int cu_state_main(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        state_usage(stdout);
        return CU_OK;
    }
    if (argc < 2 || strcmp(argv[1], "decrypt") != 0) {
        cu_err("usage: vmseal-crypto-util state decrypt [OPTIONS] IN OUT");
        return CU_USAGE;
    }
    return state_decrypt(argc - 1, argv + 1);
}
