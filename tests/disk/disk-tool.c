/* disk-tool: a tiny test driver over the LUKS1 disk API (tests only; the
 * user-facing tool is vmseal-crypto-util).
 *
 *   disk-tool [-t THREADS] [-u UUID] [-p] CMD ARGS...
 *     probe IMG                          print the header as key=value lines
 *     create IMG SIZE SECRETFILE
 *     encrypt PLAIN OUT SECRETFILE
 *     decrypt IMG OUT SECRETFILE
 *     rekey IMG SECRETFILE
 *     verify IMG SECRETFILE
 *     keyslot-add IMG SECRETFILE NEWSECRETFILE
 *     keyslot-remove IMG SECRETFILE
 *
 * SECRETFILE holds a 32-byte disk secret (raw or hex, mode 0600); the LUKS
 * passphrase is its lower-case hex, exactly as vmseal hands it to QEMU. A
 * file with the 64 hex digits (no newline) thus also works as QEMU's
 * `secret,file=`. -p prints progress to stderr; SIGINT/SIGTERM cancel (the
 * run can be resumed). Exit status: 0 ok, 1 error, 3 cancelled,
 * 4 wrong passphrase.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vmseal/disk.h>

static volatile sig_atomic_t cancel_flag;

static void on_signal(int sig)
{
    (void)sig;
    cancel_flag = 1;
}

static void progress(uint64_t done, uint64_t total, void *ctx)
{
    (void)ctx;
    fprintf(stderr, "progress %llu/%llu\n", (unsigned long long)done, (unsigned long long)total);
}

static vmseal_secret *load_pass(const char *file)
{
    vmseal_secret *secret = NULL, *pass = NULL;
    if (vmseal_secret_read_keyfile(file, VMSEAL_DISK_SECRET_LEN, &secret) < 0 ||
        vmseal_disk_passphrase_from_secret(secret, &pass) < 0) {
        fprintf(stderr, "disk-tool: %s\n", vmseal_last_error());
        vmseal_secret_free(secret);
        exit(1);
    }
    vmseal_secret_free(secret);
    return pass;
}

static void print_info(const vmseal_disk_info *in)
{
    char digest[41];
    vmseal_hex_encode(in->mk_digest, sizeof(in->mk_digest), digest);
    printf("uuid=%s\ncipher=%s\ncipher_mode=%s\nhash=%s\nkey_bits=%u\n", in->uuid, in->cipher,
           in->cipher_mode, in->hash, in->key_bits);
    printf("payload_offset=%llu\npayload_bytes=%llu\nactive_slots=%d\nslot_mask=%u\n",
           (unsigned long long)in->payload_offset_bytes, (unsigned long long)in->payload_bytes,
           in->active_slots, in->slot_mask);
    printf("mk_digest=%s\nmk_digest_iterations=%u\n", digest, in->mk_digest_iterations);
    for (int i = 0; i < VMSEAL_LUKS1_NUM_KEYSLOTS; i++)
        if (in->slot_mask & (1u << i))
            printf("slot%d_iterations=%u\n", i, in->slot_iterations[i]);
}

static int usage(void)
{
    fprintf(stderr, "usage: disk-tool [-t THREADS] [-u UUID] [-p] "
                    "probe|create|encrypt|decrypt|rekey|verify|keyslot-add|keyslot-remove ARGS\n");
    return 1;
}

int main(int argc, char **argv)
{
    vmseal_disk_opts o = {.cancel = &cancel_flag};
    int c;
    while ((c = getopt(argc, argv, "+t:u:p")) != -1) {
        if (c == 't')
            o.threads = (unsigned)atoi(optarg);
        else if (c == 'u')
            o.uuid = optarg;
        else if (c == 'p')
            o.progress = progress;
        else
            return usage();
    }
    argc -= optind;
    argv += optind;
    if (argc < 2)
        return usage();
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    const char *cmd = argv[0];
    int rc;
    vmseal_secret *pass = NULL, *pass2 = NULL;
    if (!strcmp(cmd, "probe") && argc == 2) {
        vmseal_disk_info in;
        rc = vmseal_disk_probe(argv[1], &in);
        if (rc == 0)
            print_info(&in);
    } else if (!strcmp(cmd, "create") && argc == 4) {
        pass = load_pass(argv[3]);
        rc = vmseal_disk_create(argv[1], strtoull(argv[2], NULL, 0), pass, &o);
    } else if (!strcmp(cmd, "encrypt") && argc == 4) {
        pass = load_pass(argv[3]);
        rc = vmseal_disk_encrypt(argv[1], argv[2], pass, &o);
    } else if (!strcmp(cmd, "decrypt") && argc == 4) {
        pass = load_pass(argv[3]);
        rc = vmseal_disk_decrypt(argv[1], argv[2], pass, &o);
    } else if (!strcmp(cmd, "rekey") && argc == 3) {
        pass = load_pass(argv[2]);
        rc = vmseal_disk_rekey(argv[1], pass, &o);
    } else if (!strcmp(cmd, "verify") && argc == 3) {
        pass = load_pass(argv[2]);
        rc = vmseal_disk_verify_passphrase(argv[1], pass);
    } else if (!strcmp(cmd, "keyslot-add") && argc == 4) {
        pass = load_pass(argv[2]);
        pass2 = load_pass(argv[3]);
        rc = vmseal_disk_keyslot_add(argv[1], pass, pass2);
        if (rc >= 0)
            printf("slot=%d\n", rc);
    } else if (!strcmp(cmd, "keyslot-remove") && argc == 3) {
        pass = load_pass(argv[2]);
        rc = vmseal_disk_keyslot_remove(argv[1], pass);
        if (rc >= 0)
            printf("slot=%d\n", rc);
    } else {
        return usage();
    }
    vmseal_secret_free(pass);
    vmseal_secret_free(pass2);
    if (rc >= 0)
        return 0;
    fprintf(stderr, "disk-tool: %s (%s)\n", vmseal_last_error(), strerror(-rc));
    if (rc == -ECANCELED)
        return 3;
    if (rc == -EKEYREJECTED)
        return 4;
    return 1;
}
