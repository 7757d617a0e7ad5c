/* hostkey generate / coredump decrypt --host-key: a host's own core dumps
 * in host encryption mode (include/vmseal/hostcore.h, docs/crypto-util.md). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vmseal/hostcore.h>

#include "cu.h"

static int write_all_out(cu_out *o, const void *buf, size_t len)
{
    if (vmseal_write_all(o->fd, buf, len) < 0) {
        cu_err("%s: %s", o->path, strerror(errno));
        return -1;
    }
    return 0;
}

/* hostkey generate PRIV PUB */
int cu_hostkey_main(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: vmseal-crypto-util hostkey generate PRIVATE PUBLIC\n"
               "A host key pair for host encryption mode: PRIVATE (mode 0600, 64 hex digits)\n"
               "opens the host's sealed core dumps and stays off the host; PUBLIC (64 hex\n"
               "digits) goes to the host for vmseal-coredump-handler --key.\n");
        return CU_OK;
    }
    if (argc != 4 || strcmp(argv[1], "generate") != 0) {
        cu_err("usage: vmseal-crypto-util hostkey generate PRIVATE PUBLIC");
        return CU_USAGE;
    }
    vmseal_secret *priv = NULL, *hex = NULL;
    uint8_t pub[32];
    char pubhex[66];
    if (vmseal_hostcore_keygen(&priv, pub) < 0)
        return cu_fail("host key");
    int rc = CU_ERROR;
    hex = vmseal_secret_new(66);
    cu_out po = {0}, qo = {0};
    if (!hex) {
        cu_fail("host key");
        goto out;
    }
    vmseal_hex_encode(vmseal_secret_cdata(priv), 32, (char *)vmseal_secret_data(hex));
    vmseal_secret_data(hex)[64] = '\n';
    vmseal_hex_encode(pub, 32, pubhex);
    pubhex[64] = '\n';
    if (cu_out_open(&po, argv[2], 0, 0600) < 0)
        goto out;
    if (write_all_out(&po, vmseal_secret_cdata(hex), 65) < 0 || cu_out_commit(&po) < 0) {
        cu_out_abort(&po);
        goto out;
    }
    if (cu_out_open(&qo, argv[3], 0, 0644) < 0)
        goto out;
    if (write_all_out(&qo, pubhex, 65) < 0 || cu_out_commit(&qo) < 0) {
        cu_out_abort(&qo);
        goto out;
    }
    cu_info("host key pair: private %s, public %s", argv[2], argv[3]);
    rc = CU_OK;
out:
    vmseal_secret_free(hex);
    vmseal_secret_free(priv);
    return rc;
}

static ssize_t fd_read(void *ctx, void *buf, size_t len)
{
    int fd = *(int *)ctx;
    for (;;) {
        ssize_t n = read(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        return n < 0 ? -errno : n;
    }
}

static int fd_write(void *ctx, const void *buf, size_t len)
{
    return vmseal_write_all(*(int *)ctx, buf, len);
}

/* coredump decrypt --host-key FILE [--force] [--quiet] IN OUT */
int cu_hostcore_decrypt_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"host-key", required_argument, NULL, 'k'},
        {"force", no_argument, NULL, 'f'},
        {"quiet", no_argument, NULL, 'q'},
        {0, 0, 0, 0},
    };
    const char *keyfile = NULL;
    int force = 0, quiet = 0, ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'k': keyfile = optarg; break;
        case 'f': force = 1; break;
        case 'q': quiet = 1; break;
        default: return CU_USAGE;
        }
    }
    if (!keyfile || argc - optind != 2) {
        cu_err("usage: vmseal-crypto-util coredump decrypt --host-key FILE [--force] IN OUT");
        return CU_USAGE;
    }
    const char *in = argv[optind], *outp = argv[optind + 1];
    vmseal_secret *priv = NULL;
    if (vmseal_secret_read_keyfile(keyfile, 32, &priv) < 0)
        return cu_fail("host key");
    int ifd = strcmp(in, "-") == 0 ? STDIN_FILENO : open(in, O_RDONLY | O_CLOEXEC);
    if (ifd < 0) {
        cu_err("%s: %s", in, strerror(errno));
        vmseal_secret_free(priv);
        return CU_ERROR;
    }
    cu_out o = {0};
    int rc = CU_ERROR;
    if (cu_out_open(&o, outp, force, 0600) == 0) {
        vmseal_stream io = {.read = fd_read, .read_ctx = &ifd, .write = fd_write, .write_ctx = &o.fd};
        if (vmseal_hostcore_open(priv, &io) < 0) {
            cu_out_abort(&o);
            rc = cu_fail(in);
        } else if (cu_out_commit(&o) < 0) {
            rc = CU_ERROR;
        } else {
            rc = CU_OK;
            if (!quiet)
                cu_info("%s: decrypted to %s", in, outp);
        }
    }
    if (ifd != STDIN_FILENO)
        close(ifd);
    vmseal_secret_free(priv);
    return rc;
}
