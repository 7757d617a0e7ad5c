/* vmseal — the admin CLI for vmseal-managerd. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmseal/https_server.h>

#include "cli.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vmseal [--url URL] [--ca FILE] [--json] [--quiet] COMMAND ...\n"
            "\n"
            "  login [USER] [--password-file FILE|-] [--password-fd N]\n"
            "                                 log in; the session is kept in ~/.config/vmseal (0600)\n"
            "  logout | whoami [--on OBJECT]\n"
            "  kms ls | show NAME | status NAME | add NAME --server HOST:PORT... [--default] | rm NAME\n"
            "  kms default NAME | servers NAME --server HOST:PORT...\n"
            "  kms credentials NAME --username USER [--password-file F] | --clear\n"
            "  kms trust NAME [--ca FILE] [--yes]       the manager trusts the KMS (its CA certificate)\n"
            "  kms csr NAME [--cn CN] [--out FILE]      key pair + CSR for the KMS to sign\n"
            "  kms client-cert NAME --cert FILE [--key FILE]\n"
            "                                 the manager's KMIP client certificate (the KMS trusts us)\n"
            "  host ls | show NAME | rm NAME | default-policy NAME encrypted|none\n"
            "  host encryption-mode enable NAME | encryption-mode disable NAME |\n"
            "       encryption-mode show NAME      host encryption mode: its core dumps sealed\n"
            "  host approve-cert NAME --fingerprint SHA256 | revoke-cert NAME\n"
            "  vm ls | info NAME | start NAME | stop NAME | rm NAME\n"
            "  vm create NAME --host HOST [--cpus N] [--memory MB] [--disk MB]... [--disk-from IMAGE]...\n"
            "            [--encrypt|--no-encrypt] [--kms NAME] [--folder F] [--no-wait]\n"
            "            [--kernel FILE --initrd FILE --append ARGS] [--firmware bios|uefi|uefi-secure] [--tpm]\n"
            "                                 (no --encrypt/--no-encrypt: the host's default policy;\n"
            "                                 --disk-from: an image in the host's images folder, converted\n"
            "                                 into an encrypted disk; --tpm: a vTPM 2.0, encrypted VMs only)\n"
            "  vm disk add NAME --from IMAGE | --size MB [--no-wait]\n"
            "                                 a new disk, or one imported from the host's images folder\n"
            "  vm disk adopt NAME --image IMAGE (--passphrase-file F | --passphrase-fd N)\n"
            "               [--remove-passphrase]\n"
            "                                 a LUKS1 image (qemu-img, cryptsetup) of the host's images\n"
            "                                 folder joins the encrypted VM without re-encryption\n"
            "  vm disk rm NAME N [--keep-file]  remove disk N of a powered-off VM (its file is deleted,\n"
            "                                 or kept in the VM home); the later disks move down one\n"
            "  vm clone SRC NEW [--host HOST] [--deep] [--kms NAME]\n"
            "                                 clone a powered-off VM; an encrypted one gets its own KEK\n"
            "                                 and disk secrets (--deep: new volume keys too)\n"
            "  vm cdrom NAME --iso FILE | --eject\n"
            "                                 an ISO of the host's images folder in the VM's CD-ROM\n"
            "                                 drive (read-only; a running VM too if it has the drive)\n"
            "  vm set NAME --boot disk,cdrom,net   boot order (\"\" the default; alone)\n"
            "  vm tpm NAME on|off             add or remove a powered-off VM's vTPM (off deletes its state)\n"
            "  vm suspend NAME | resume NAME [--host HOST] | discard-state NAME\n"
            "                                 memory state to a sealed file in the VM home and back\n"
            "  vm migrate NAME --to HOST [--no-wait]\n"
            "                                 live migration of a running VM (encrypted stream)\n"
            "  vm snapshot create NAME SNAP [--memory] | vm snapshot ls NAME\n"
            "    | vm snapshot revert NAME SNAP | vm snapshot rm NAME SNAP\n"
            "                                 snapshots, a linear chain (encrypted layers, memory\n"
            "                                 sealed); revert: to the latest; rm: powered off\n"
            "  vm move NAME FOLDER | vm log NAME [--tail BYTES]\n"
            "  vm dump NAME                   the running guest's memory into its home (sealed when\n"
            "                                 encrypted; vmseal-crypto-util coredump decrypt opens it)\n"
            "  vm console NAME                the terminal on the guest's serial port (Ctrl-] detaches)\n"
            "  vm vnc NAME [--listen ADDR:PORT]  a local port for one VNC viewer of the VM's display\n"
            "  vm export NAME --disk N --psk-file FILE [--ttl SECONDS] [--ciphertext --bundle-file FILE]\n"
            "                                 one-time NBD-over-TLS endpoint on a powered-off VM's\n"
            "                                 disk (read-only; the TLS key goes into FILE)\n"
            "  vm unregister NAME | vm register HOST UUID [--name NAME] [--kms P]\n"
            "                                 leave the inventory (the host keeps the VM) / take it back\n"
            "  vm set NAME [--cpus N] [--memory MB] [--kernel FILE] [--initrd FILE] [--append ARGS]\n"
            "                                 reconfigure a powered-off VM (\"\" removes kernel/initrd/append)\n"
            "  vm nic ls NAME | vm nic rm NAME MAC\n"
            "  vm nic add NAME [--network NET] [--mac MAC] [--forward [tcp|udp:][ADDR:]HPORT:GPORT]...\n"
            "                                 network cards: user-mode NAT (default; hot-plugged into a\n"
            "                                 running VM) or a bridge network the host defines (off)\n"
            "  vm encrypt NAME [--kms NAME] [--no-wait]  apply the VM Encryption policy\n"
            "  vm decrypt NAME [--no-wait]               back to the datastore default policy\n"
            "  vm rekey NAME [--deep] [--kms NAME] [--no-wait]\n"
            "                                 new KEK (shallow) or new KEK and disk keys (deep)\n"
            "  task ls | info ID | wait ID | cancel ID [--no-wait] | resume ID [--no-wait]\n"
            "  events [--since ID] [--limit N] [--follow] [--user U] [--object O] [--action A]\n"
            "         [--result ok|denied|failed] [--from T] [--to T]     T: unix time or YYYY-MM-DDTHH:MM:SS\n"
            "  events verify                  check the event log's hash chain\n"
            "  user ls | show NAME | add NAME --role ROLE | passwd [NAME] | rm NAME | role NAME ROLE\n"
            "       passwords: --password-file FILE|-, --password-fd N, or a prompt (never argv)\n"
            "  role ls | add NAME PRIVILEGE... | set NAME PRIVILEGE... | rm NAME\n"
            "  group ls | add NAME | rm NAME | add-user GROUP USER | rm-user GROUP USER\n"
            "  permission ls [OBJECT] | add OBJECT --user U|--group G --role R [--no-propagate]\n"
            "             | rm OBJECT --user U|--group G     OBJECT: root, host:H, folder:F, vm:V\n"
            "  keys ls [--vm NAME]            KEK ids the manager recorded and their state\n"
            "  keys ls --orphans KMS          keys of this manager on KMS that it never recorded\n"
            "  keys info ID [--kms NAME]      a KEK: its VM, who uses it, when it will be destroyed\n"
            "  keys cleanup                   revoke and destroy KEKs nothing needs any more, now\n"
            "  (also as: kms key ls|info|cleanup)\n"
            "  diagnostics\n"
            "\n"
            "The manager: --url or $VMSEAL_URL (https://HOST:PORT), verified with --ca or $VMSEAL_CA;\n"
            "after `vmseal login` both are remembered.\n"
            "\n"
            "exit codes: 0 ok, 1 failed, 2 usage, 3 not logged in / wrong password / session expired,\n"
            "            4 not found, 5 permission denied, 6 conflict (exists, busy, wrong state),\n"
            "            7 manager unreachable or not trusted\n");
}

int main(int argc, char **argv)
{
    vmseal_json_wipe_on_free();
    cli c = {0};
    c.url = getenv("VMSEAL_URL");
    c.ca = getenv("VMSEAL_CA");
    if (c.url && !*c.url)
        c.url = NULL;
    if (c.ca && !*c.ca)
        c.ca = NULL;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--url") && i + 1 < argc)
            c.url = argv[++i];
        else if (!strcmp(argv[i], "--ca") && i + 1 < argc)
            c.ca = argv[++i];
        else if (!strcmp(argv[i], "--json"))
            c.json = 1;
        else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q"))
            c.quiet = 1;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return EXIT_OK;
        } else {
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    (void)cli_load_session(&c);
    const char *cmd = argv[i];
    int sub_argc = argc - i;
    char **sub_argv = argv + i;
    int rc;
    if (!strcmp(cmd, "login"))
        rc = cmd_login(&c, sub_argc, sub_argv);
    else if (!strcmp(cmd, "logout"))
        rc = cmd_logout(&c, sub_argc, sub_argv);
    else if (!strcmp(cmd, "whoami"))
        rc = cmd_whoami(&c, sub_argc, sub_argv);
    else if (!strcmp(cmd, "kms"))
        rc = cmd_kms(&c, sub_argc, sub_argv);
    else if (!strcmp(cmd, "host"))
        rc = cmd_host(&c, sub_argc, sub_argv);
    else if (!strcmp(cmd, "vm"))
        rc = cmd_vm(&c, sub_argc, sub_argv);
    else if (!strcmp(cmd, "task"))
        rc = cmd_task(&c, sub_argc, sub_argv);
    else if (!strcmp(cmd, "events"))
        rc = cmd_events(&c, sub_argc, sub_argv);
    else if (!strcmp(cmd, "user"))
        rc = cmd_user(&c, sub_argc, sub_argv);
    else if (!strcmp(cmd, "role"))
        rc = cmd_role(&c, sub_argc, sub_argv);
    else if (!strcmp(cmd, "permission"))
        rc = cmd_permission(&c, sub_argc, sub_argv);
    else if (!strcmp(cmd, "group"))
        rc = cmd_group(&c, sub_argc, sub_argv);
    else if (!strcmp(cmd, "keys"))
        rc = cmd_keys(&c, sub_argc, sub_argv);
    else if (!strcmp(cmd, "diagnostics"))
        rc = cmd_diagnostics(&c, sub_argc, sub_argv);
    else
        rc = EXIT_USAGE;
    if (rc == EXIT_USAGE && !cli_reported)
        fprintf(stderr, "vmseal: see `vmseal --help` for the usage of %s\n", cmd);
    json_decref(c.session);
    free(c.session_path);
    return rc;
}
