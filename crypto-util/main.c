/* vmseal-crypto-util: host-local tool for vmseal-encrypted files, in the
 * spirit of ESXi's crypto-util. Usage: docs/crypto-util.md. */
#include <stdio.h>
#include <string.h>

#include <vmseal/secret.h>

#include "cu.h"
#include "vmseal_version.h"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: vmseal-crypto-util VERB [OPTIONS] ARGS...\n"
        "\n"
        "Verbs:\n"
        "  check FILE...              is each file encrypted, in which format, with which key\n"
        "                             (no key needed); exit 0 all encrypted, 1 some plain, 2 error\n"
        "  disk create IMAGE --size N          new empty encrypted (LUKS1) disk + descriptor\n"
        "  disk encrypt PLAIN IMAGE            encrypt a raw image into a new LUKS1 disk\n"
        "  disk decrypt IMAGE PLAIN            decrypt a vmseal disk into a raw image\n"
        "  disk rekey IMAGE                    deep rekey (new data key), or --shallow: new KEK\n"
        "  disk passphrase IMAGE --out-fd N    hand the LUKS passphrase to QEMU (fd or 0600 file)\n"
        "  disk verify IMAGE                   does the KEK open this disk\n"
        "       (passphrase, decrypt, verify: a vmseal-hostd VM's disk with\n"
        "        --vm-config VM.CONF --disk N|nvram, or found from the vm.conf beside IMAGE)\n"
        "  disk keyslot-add IMAGE              add another passphrase (recovery)\n"
        "  disk keyslot-remove IMAGE           remove a passphrase\n"
        "  seal IN OUT                seal a VM home file ('-' = stdin/stdout)\n"
        "  unseal IN OUT              verify and decrypt a sealed file\n"
        "  coredump decrypt IN OUT    decrypt an encrypted core dump (= unseal)\n"
        "  coredump decrypt --host-key PRIV IN OUT   a host's own core dump (host encryption mode)\n"
        "  hostkey generate PRIV PUB  a host key pair for host encryption mode\n"
        "  log VMHOME [OUT]           verify and decrypt an encrypted VM's sealed console log\n"
        "  bench                      in-memory throughput of the disk and sealing data paths\n"
        "\n"
        "Keys never come from the command line: --kek-file FILE (mode 0600, 32 raw\n"
        "bytes or 64 hex digits) or --kek-fd N; --kek-id ID and --provider NAME\n"
        "(default 'local') name the KEK. 'vmseal-crypto-util VERB --help' for details.\n");
}

int main(int argc, char **argv)
{
    char *help_args[3] = {NULL, (char *)"--help", NULL};
    if (argc < 2) {
        usage(stderr);
        return CU_USAGE;
    }
    const char *verb = argv[1];
    if (!strcmp(verb, "--help") || !strcmp(verb, "-h") || !strcmp(verb, "help")) {
        if (argc > 2 && strcmp(verb, "help") == 0) {
            /* "help VERB" = "VERB --help" */
            help_args[0] = argv[2];
            argv = help_args;
            argc = 2;
            verb = argv[0];
            goto dispatch;
        }
        usage(stdout);
        return CU_OK;
    }
    if (!strcmp(verb, "--version")) {
        printf("vmseal-crypto-util %s\n", VMSEAL_VERSION_STRING);
        return CU_OK;
    }
    argv++;
    argc--;
dispatch:
    /* We hold KEKs and plaintext: no core dumps of this process. */
    if (vmseal_harden_process() < 0)
        return cu_fail("cannot disable core dumps");
    if (!strcmp(verb, "check"))
        return cu_check_main(argc, argv);
    if (!strcmp(verb, "disk"))
        return cu_disk_main(argc, argv);
    if (!strcmp(verb, "seal"))
        return cu_seal_main(argc, argv);
    if (!strcmp(verb, "unseal"))
        return cu_unseal_main(argc, argv);
    if (!strcmp(verb, "coredump"))
        return cu_coredump_main(argc, argv);
    if (!strcmp(verb, "hostkey"))
        return cu_hostkey_main(argc, argv);
    if (!strcmp(verb, "log"))
        return cu_log_main(argc, argv);
    if (!strcmp(verb, "bench"))
        return cu_bench_main(argc, argv);
    cu_err("unknown verb '%s'", verb);
    usage(stderr);
    return CU_USAGE;
}
