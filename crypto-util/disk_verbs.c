/* disk create | encrypt | decrypt | rekey | passphrase | keyslot-add |
 * keyslot-remove: LUKS1 disks whose secret lives in a key safe in the
 * descriptor "<image>.vmdesc" (include/vmseal/diskdesc.h). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vmseal/disk.h>
#include <vmseal/diskdesc.h>
#include <vmseal/diskimport.h>
#include <vmseal/keysafe.h>

#include <vmseal/vmrecord.h>

#include "cu.h"

typedef struct dopts {
    cu_kek_opts kek, new_kek;
    int have_new_kek;
    uint64_t size;
    int have_size;
    unsigned threads;
    int force, shallow, remove_passphrase;
    int out_fd;
    const char *out_file;
    const char *pass_file, *new_pass_file;
    int pass_fd, new_pass_fd;
    const char *vm_config, *disk_which;
    const char *args[2];
    int nargs;
} dopts;

/* Set when the disk is one of a vmseal-hostd VM home folder (key safe in
 * its vm.conf, not in a descriptor): --vm-config, or found beside IMAGE. */
static cu_vmdisk *vm_disk;

static const char *const usage_text[][2] = {
    {"create",
     "usage: vmseal-crypto-util disk create (--kek-file F | --kek-fd N) --kek-id ID\n"
     "                                      [--provider NAME] --size SIZE IMAGE\n"
     "\n"
     "Create an empty encrypted disk: IMAGE is LUKS1 (aes-xts-plain64, 512-bit\n"
     "random data key) of SIZE bytes of payload (suffixes K M G T, multiple of\n"
     "512); a random 32-byte disk secret, wrapped by the KEK in a key safe bound\n"
     "to the disk's LUKS UUID, goes into IMAGE.vmdesc. hex(disk secret) is the\n"
     "LUKS passphrase ('disk passphrase').\n"},
    {"encrypt",
     "usage: vmseal-crypto-util disk encrypt (--kek-file F | --kek-fd N) --kek-id ID\n"
     "                     [--provider NAME] [--threads N] [--quiet] PLAIN IMAGE\n"
     "\n"
     "Encrypt the raw image PLAIN into the new LUKS1 disk IMAGE (+ IMAGE.vmdesc).\n"
     "PLAIN is left as it is. Shows progress on a terminal; Ctrl-C stops at a\n"
     "checkpoint and running the same command again resumes.\n"},
    {"decrypt",
     "usage: vmseal-crypto-util disk decrypt (--kek-file F | --kek-fd N) [--kek-id ID]\n"
     "                     [--threads N] [--quiet] IMAGE PLAIN\n"
     "       vmseal-crypto-util disk decrypt ... --vm-config VM.CONF --disk N|nvram PLAIN\n"
     "\n"
     "Decrypt the vmseal disk IMAGE (secret from IMAGE.vmdesc, or from the vm.conf\n"
     "of the VM home folder IMAGE is in) into the new raw image PLAIN (all-zero\n"
     "blocks become holes). Resumable like encrypt.\n"},
    {"rekey",
     "usage: vmseal-crypto-util disk rekey (--kek-file F | --kek-fd N) [--threads N]\n"
     "          [--new-kek-file F | --new-kek-fd N] [--new-kek-id ID]\n"
     "          [--new-provider NAME] [--shallow] IMAGE\n"
     "\n"
     "Deep rekey (default): a new random LUKS data key, all data re-encrypted in\n"
     "place, crash-safe and resumable. With --new-kek-*, the descriptor's key safe\n"
     "is also rewrapped under the new KEK.\n"
     "--shallow: only rewrap the key safe under the new KEK (data untouched).\n"},
    {"passphrase",
     "usage: vmseal-crypto-util disk passphrase (--kek-file F | --kek-fd N)\n"
     "                     (--out-fd N | --out-file F) IMAGE\n"
     "\n"
     "       vmseal-crypto-util disk passphrase ... --vm-config VM.CONF --disk N|nvram\n"
     "\n"
     "Write the LUKS passphrase of IMAGE (64 hex characters, no newline) to file\n"
     "descriptor N (a pipe, never a terminal) or to the new file F (mode 0600,\n"
     "must not exist), for QEMU: --object secret,id=s0,file=F and\n"
     "-blockdev driver=luks,key-secret=s0,... Delete F after use.\n"},
    {"verify",
     "usage: vmseal-crypto-util disk verify (--kek-file F | --kek-fd N) [--kek-id ID] IMAGE\n"
     "       vmseal-crypto-util disk verify ... --vm-config VM.CONF --disk N|nvram\n"
     "\n"
     "Check that the KEK unwraps the disk's key safe and that the passphrase it\n"
     "holds opens a keyslot of IMAGE (nothing is written).\n"},
    {"keyslot-add",
     "usage: vmseal-crypto-util disk keyslot-add (--kek-file F | --kek-fd N)\n"
     "              (--new-passphrase-fd N | --new-passphrase-file F) IMAGE\n"
     "\n"
     "Add another passphrase (e.g. a recovery passphrase) in a free keyslot.\n"
     "The passphrase file must be mode 0600; one trailing newline is dropped.\n"},
    {"adopt",
     "usage: vmseal-crypto-util disk adopt (--kek-file F | --kek-fd N) --kek-id ID\n"
     "              [--provider NAME] (--passphrase-fd N | --passphrase-file F)\n"
     "              [--remove-passphrase] IMAGE\n"
     "\n"
     "Adopt the LUKS1 image IMAGE that qemu-img or cryptsetup made (aes-xts-plain64),\n"
     "without re-encrypting it: the passphrase given (from a descriptor or a 0600\n"
     "file, never the command line) must open a keyslot; a new random disk secret,\n"
     "wrapped by the KEK and bound to the image's LUKS UUID, goes into IMAGE.vmdesc,\n"
     "and hex(disk secret) into a free keyslot. --remove-passphrase then removes the\n"
     "keyslot of the passphrase given. Interrupted, run it again.\n"},
    {"keyslot-remove",
     "usage: vmseal-crypto-util disk keyslot-remove (--kek-file F | --kek-fd N)\n"
     "              (--passphrase-fd N | --passphrase-file F) [--force] IMAGE\n"
     "\n"
     "Remove the keyslot that the given passphrase opens. Removing vmseal's own\n"
     "keyslot (the one IMAGE.vmdesc unlocks) is refused unless --force (the KEK is\n"
     "then not needed); the last keyslot is never removed.\n"},
};

static void usage(FILE *f, const char *sub)
{
    for (size_t i = 0; i < sizeof(usage_text) / sizeof(usage_text[0]); i++)
        if (sub && strcmp(sub, usage_text[i][0]) == 0) {
            fputs(usage_text[i][1], f);
            fputs("\nCommon options: --quiet, --help. Exit status 0 success, 2 failure, "
                  "64 usage.\n", f);
            if (!strcmp(sub, "passphrase") || !strcmp(sub, "decrypt") || !strcmp(sub, "verify"))
                fputs("VM home folders of vmseal-hostd: the key safes are in vm.conf.\n"
                      "--vm-config F --disk N (or 'nvram') picks the image named there;\n"
                      "an IMAGE without IMAGE.vmdesc in a folder whose vm.conf names it is\n"
                      "found the same way. Refused while a running VM holds the image.\n", f);
            return;
        }
    fprintf(f, "usage: vmseal-crypto-util disk VERB [OPTIONS] ARGS\n"
               "verbs: create encrypt decrypt rekey passphrase verify keyslot-add keyslot-remove adopt\n"
               "'vmseal-crypto-util disk VERB --help' for details.\n");
}

enum {
    O_KEKFILE = 256, O_KEKFD, O_KEKID, O_PROVIDER, O_NKEKFILE, O_NKEKFD, O_NKEKID, O_NPROVIDER,
    O_SIZE, O_THREADS, O_OUTFD, O_OUTFILE, O_PFD, O_PFILE, O_NPFD, O_NPFILE, O_SHALLOW,
    O_VMCONF, O_DISK,
};

static int parse(int argc, char **argv, const char *sub, dopts *o)
{
    static const struct option opts[] = {
        {"kek-file", required_argument, NULL, O_KEKFILE},
        {"kek-fd", required_argument, NULL, O_KEKFD},
        {"kek-id", required_argument, NULL, O_KEKID},
        {"provider", required_argument, NULL, O_PROVIDER},
        {"new-kek-file", required_argument, NULL, O_NKEKFILE},
        {"new-kek-fd", required_argument, NULL, O_NKEKFD},
        {"new-kek-id", required_argument, NULL, O_NKEKID},
        {"new-provider", required_argument, NULL, O_NPROVIDER},
        {"size", required_argument, NULL, O_SIZE},
        {"threads", required_argument, NULL, O_THREADS},
        {"out-fd", required_argument, NULL, O_OUTFD},
        {"out-file", required_argument, NULL, O_OUTFILE},
        {"passphrase-fd", required_argument, NULL, O_PFD},
        {"passphrase-file", required_argument, NULL, O_PFILE},
        {"new-passphrase-fd", required_argument, NULL, O_NPFD},
        {"new-passphrase-file", required_argument, NULL, O_NPFILE},
        {"shallow", no_argument, NULL, O_SHALLOW},
        {"vm-config", required_argument, NULL, O_VMCONF},
        {"disk", required_argument, NULL, O_DISK},
        {"force", no_argument, NULL, 'f'},
        {"remove-passphrase", no_argument, NULL, 'r'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    cu_kek_opts_init(&o->kek);
    cu_kek_opts_init(&o->new_kek);
    o->new_kek.provider = NULL;
    o->out_fd = o->pass_fd = o->new_pass_fd = -1;
    uint64_t v;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "fqh", opts, NULL)) != -1) {
        int *fdp = NULL;
        switch (c) {
        case O_KEKFILE: o->kek.file = optarg; break;
        case O_KEKFD: fdp = &o->kek.fd; break;
        case O_KEKID: o->kek.id = optarg; break;
        case O_PROVIDER: o->kek.provider = optarg; break;
        case O_NKEKFILE: o->new_kek.file = optarg; o->have_new_kek = 1; break;
        case O_NKEKFD: fdp = &o->new_kek.fd; o->have_new_kek = 1; break;
        case O_NKEKID: o->new_kek.id = optarg; break;
        case O_NPROVIDER: o->new_kek.provider = optarg; break;
        case O_SIZE:
            if (cu_parse_size(optarg, &o->size) < 0 || o->size == 0 || o->size % 512) {
                cu_err("--size: a positive multiple of 512 bytes (suffixes K M G T)");
                return -1;
            }
            o->have_size = 1;
            break;
        case O_THREADS:
            if (cu_parse_uint(optarg, &v) < 0 || v == 0 || v > 256) {
                cu_err("--threads: 1..256");
                return -1;
            }
            o->threads = (unsigned)v;
            break;
        case O_OUTFD: fdp = &o->out_fd; break;
        case O_OUTFILE: o->out_file = optarg; break;
        case O_PFD: fdp = &o->pass_fd; break;
        case O_PFILE: o->pass_file = optarg; break;
        case O_NPFD: fdp = &o->new_pass_fd; break;
        case O_NPFILE: o->new_pass_file = optarg; break;
        case O_SHALLOW: o->shallow = 1; break;
        case O_VMCONF: o->vm_config = optarg; break;
        case O_DISK: o->disk_which = optarg; break;
        case 'f': o->force = 1; break;
        case 'r': o->remove_passphrase = 1; break;
        case 'q': cu_quiet = 1; break;
        case 'h': usage(stdout, sub); return 1;
        default: usage(stderr, sub); return -1;
        }
        if (fdp && cu_parse_fd(optarg, fdp) < 0) {
            cu_err("expected a file descriptor number, got '%s'", optarg);
            return -1;
        }
    }
    o->nargs = argc - optind;
    for (int i = 0; i < o->nargs && i < 2; i++)
        o->args[i] = argv[optind + i];
    return 0;
}

static int want_args(const dopts *o, int n, const char *sub)
{
    if (o->nargs != n) {
        usage(stderr, sub);
        return -1;
    }
    return 0;
}

static void fill_disk_opts(vmseal_disk_opts *d, const dopts *o, cu_progress *p)
{
    memset(d, 0, sizeof(*d));
    d->progress = cu_progress_update;
    d->progress_ctx = p;
    d->threads = o->threads;
    d->cancel = &cu_cancel;
}

/* Secret of an existing vmseal disk: descriptor beside it, key safe bound
 * to the UUID in the image's own LUKS header. */
static int disk_secret(const char *image, const cu_kek_opts *ko, const vmseal_secret *kek,
                       vmseal_diskdesc *d, vmseal_secret **secret)
{
    *secret = NULL;
    char *dpath = vmseal_diskdesc_path(image);
    if (!dpath)
        return vmseal_fail(ENOMEM, "out of memory");
    int rc = vmseal_diskdesc_read(dpath, d);
    if (rc == -ENOENT)
        rc = vmseal_fail(ENOENT, "%s: no vmseal disk descriptor %s (not a vmseal disk, or the "
                                 "descriptor was lost)", image, dpath);
    if (rc < 0)
        goto out;
    vmseal_disk_info di;
    if ((rc = vmseal_disk_probe(image, &di)) < 0)
        goto out;
    if (strcasecmp(di.uuid, d->uuid) != 0) {
        rc = vmseal_fail(EKEYREJECTED, "%s belongs to disk %s, but %s is disk %s (descriptor "
                                       "copied from another disk?)", dpath, d->uuid, image,
                         di.uuid);
        goto out;
    }
    vmseal_keysafe_info ki;
    if ((rc = vmseal_keysafe_parse(d->keysafe, &ki)) < 0)
        goto out;
    if (ko->id && strcmp(ko->id, ki.kek_id) != 0) {
        rc = vmseal_fail(EKEYREJECTED, "%s is wrapped by KEK '%s' at provider '%s', not '%s'",
                         image, ki.kek_id, ki.provider, ko->id);
        goto out;
    }
    char obj[64];
    vmseal_disk_object_id(di.uuid, obj, sizeof(obj));
    rc = vmseal_keysafe_unwrap(kek, d->keysafe, obj, secret);
    if (rc == 0 && vmseal_secret_len(*secret) != VMSEAL_DISK_SECRET_LEN) {
        size_t n = vmseal_secret_len(*secret);
        vmseal_secret_free(*secret);
        *secret = NULL;
        rc = vmseal_fail(EPROTO, "%s: the key safe holds %zu bytes, not a disk secret", dpath, n);
    }
out:
    free(dpath);
    return rc;
}

/* Secret of a disk (or the NVRAM) of a VM home folder: key safe from
 * vm.conf, bound to the LUKS UUID in the image's own header (disks) or to
 * the VM's uuid (NVRAM). Refused while a running VM holds the image. */
static int vm_disk_secret(const cu_vmdisk *vd, const cu_kek_opts *ko, const vmseal_secret *kek,
                          vmseal_secret **secret)
{
    *secret = NULL;
    if (vd->rec->op != VMSEAL_VMREC_OP_NONE)
        return vmseal_fail(EBUSY, "%s: the VM has an unfinished '%s' operation; let "
                                  "vmseal-hostd finish it first", vd->conf_path,
                           vmseal_vmrec_op_name(vd->rec->op));
    if (!vd->keysafe)
        return vmseal_fail(ENOENT, "%s: %s is not encrypted (no %s)", vd->conf_path, vd->image,
                           vd->key);
    int rc = vmseal_disk_check_unused(vd->image);
    if (rc < 0)
        return rc;
    char obj[64];
    snprintf(obj, sizeof(obj), "%s", vd->object);
    if (vd->index >= 0) {
        vmseal_disk_info di;
        if ((rc = vmseal_disk_probe(vd->image, &di)) < 0)
            return rc;
        if (strcasecmp(di.uuid, vd->uuid) != 0)
            return vmseal_fail(EKEYREJECTED, "%s: %s belongs to disk %s, but %s is disk %s "
                                             "(vm.conf of another VM?)", vd->conf_path, vd->key,
                               vd->uuid[0] ? vd->uuid : "(none)", vd->image, di.uuid);
        vmseal_disk_object_id(di.uuid, obj, sizeof(obj));
    }
    vmseal_keysafe_info ki;
    if ((rc = vmseal_keysafe_parse(vd->keysafe, &ki)) < 0)
        return rc;
    if (ko->id && strcmp(ko->id, ki.kek_id) != 0)
        return vmseal_fail(EKEYREJECTED, "%s is wrapped by KEK '%s' at provider '%s', not '%s'",
                           vd->image, ki.kek_id, ki.provider, ko->id);
    rc = vmseal_keysafe_unwrap(kek, vd->keysafe, obj, secret);
    if (rc == 0 && vmseal_secret_len(*secret) != VMSEAL_DISK_SECRET_LEN) {
        size_t n = vmseal_secret_len(*secret);
        vmseal_secret_free(*secret);
        *secret = NULL;
        rc = vmseal_fail(EPROTO, "%s: %s holds %zu bytes, not a disk secret", vd->conf_path,
                         vd->key, n);
    }
    return rc;
}

static int disk_pass(const char *image, const cu_kek_opts *ko, vmseal_diskdesc *d,
                     vmseal_secret **pass)
{
    *pass = NULL;
    vmseal_secret *kek = NULL, *secret = NULL;
    if (cu_kek_load(ko, &kek) < 0)
        return -1;
    int rc = vm_disk ? vm_disk_secret(vm_disk, ko, kek, &secret)
                     : disk_secret(image, ko, kek, d, &secret);
    vmseal_secret_free(kek);
    if (rc < 0) {
        cu_fail(image);
        return -1;
    }
    rc = vmseal_disk_passphrase_from_secret(secret, pass);
    vmseal_secret_free(secret);
    if (rc < 0) {
        cu_fail(image);
        return -1;
    }
    return 0;
}

static int exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

/* create and encrypt: descriptor first (marked incomplete, so an
 * interrupted run resumes with the same secret and UUID), image next,
 * then the descriptor is marked complete. */
static int make_disk(const dopts *o, const char *plain, const char *image)
{
    if (cu_kek_check_ids(&o->kek) < 0)
        return CU_USAGE;
    vmseal_secret *kek = NULL, *secret = NULL, *pass = NULL;
    if (cu_kek_load(&o->kek, &kek) < 0)
        return CU_ERROR;
    int rc = CU_ERROR, fresh = 0;
    char *dpath = vmseal_diskdesc_path(image);
    char *partial = malloc(strlen(image) + 16);
    vmseal_diskdesc d;
    if (!dpath || !partial) {
        cu_err("out of memory");
        goto out;
    }
    sprintf(partial, "%s.partial", image);
    int r = vmseal_diskdesc_read(dpath, &d);
    if (r < 0 && r != -ENOENT) {
        cu_fail(dpath);
        goto out;
    }
    int have_desc = r == 0;
    if (exists(image) && !(have_desc && d.incomplete)) {
        cu_err("%s already exists", image);
        goto out;
    }
    if (have_desc && !d.incomplete) {
        cu_err("%s already exists (it belongs to another disk; remove it first)", dpath);
        goto out;
    }
    char obj[64];
    if (have_desc) {
        /* Resume: the secret and UUID of the interrupted run. */
        vmseal_keysafe_info ki;
        if (vmseal_keysafe_parse(d.keysafe, &ki) == 0 && strcmp(ki.kek_id, o->kek.id) != 0) {
            cu_err("%s: an interrupted run used KEK '%s'; resume with that KEK or remove %s",
                   image, ki.kek_id, dpath);
            goto out;
        }
        vmseal_disk_object_id(d.uuid, obj, sizeof(obj));
        if (vmseal_keysafe_unwrap(kek, d.keysafe, obj, &secret) < 0) {
            cu_fail(dpath);
            goto out;
        }
        cu_info("resuming the interrupted run for %s (disk %s)", image, d.uuid);
    } else {
        memset(&d, 0, sizeof(d));
        d.version = 1;
        strcpy(d.format, "luks1");
        d.incomplete = 1;
        char *line = NULL;
        if (vmseal_uuid_random(d.uuid) < 0 ||
            vmseal_secret_random(VMSEAL_DISK_SECRET_LEN, &secret) < 0) {
            cu_fail(image);
            goto out;
        }
        vmseal_disk_object_id(d.uuid, obj, sizeof(obj));
        if (vmseal_keysafe_wrap(kek, o->kek.provider, o->kek.id, obj, secret, &line) < 0) {
            cu_fail(image);
            goto out;
        }
        snprintf(d.keysafe, sizeof(d.keysafe), "%s", line);
        free(line);
        if (vmseal_diskdesc_write(dpath, &d, 0) < 0) {
            cu_fail(dpath);
            goto out;
        }
        fresh = 1;
    }
    if (vmseal_disk_passphrase_from_secret(secret, &pass) < 0) {
        cu_fail(image);
        goto out;
    }
    if (exists(image)) {
        /* A previous run finished the image but not the descriptor. */
        vmseal_disk_info di;
        if (vmseal_disk_probe(image, &di) < 0 || strcasecmp(di.uuid, d.uuid) != 0 ||
            vmseal_disk_verify_passphrase(image, pass) < 0) {
            cu_err("%s exists but is not the disk %s describes", image, dpath);
            goto out;
        }
    } else {
        vmseal_disk_opts dop;
        cu_progress prog;
        cu_progress_init(&prog, plain ? "encrypting" : "creating");
        fill_disk_opts(&dop, o, &prog);
        dop.uuid = d.uuid;
        r = plain ? vmseal_disk_encrypt(plain, image, pass, &dop)
                  : vmseal_disk_create(image, o->size, pass, &dop);
        cu_progress_end(&prog);
        if (r == -ECANCELED) {
            cu_err("%s: interrupted; run the same command again to resume", image);
            fresh = 0; /* keep the descriptor for the resume */
            goto out;
        }
        if (r < 0) {
            cu_fail(image);
            goto out;
        }
    }
    d.incomplete = 0;
    if (vmseal_diskdesc_write(dpath, &d, 1) < 0) {
        cu_fail(dpath);
        fresh = 0;
        goto out;
    }
    fresh = 0;
    vmseal_keysafe_info ki;
    if (vmseal_keysafe_parse(d.keysafe, &ki) < 0)
        memset(&ki, 0, sizeof(ki));
    cu_info("%s: %s LUKS1 disk %s; key safe in %s (KEK '%s' at provider '%s')", image,
            plain ? "encrypted into" : "created", d.uuid, dpath, ki.kek_id, ki.provider);
    rc = CU_OK;
out:
    /* A descriptor made by this run for an image that never appeared. */
    if (fresh && dpath && !exists(image) && !exists(partial))
        unlink(dpath);
    free(dpath);
    free(partial);
    vmseal_secret_free(kek);
    vmseal_secret_free(secret);
    vmseal_secret_free(pass);
    return rc;
}

static int do_decrypt(const dopts *o)
{
    vmseal_diskdesc d;
    vmseal_secret *pass = NULL;
    if (disk_pass(o->args[0], &o->kek, &d, &pass) < 0)
        return CU_ERROR;
    vmseal_disk_opts dop;
    cu_progress prog;
    cu_progress_init(&prog, "decrypting");
    fill_disk_opts(&dop, o, &prog);
    int r = vmseal_disk_decrypt(o->args[0], o->args[1], pass, &dop);
    cu_progress_end(&prog);
    vmseal_secret_free(pass);
    if (r == -ECANCELED) {
        cu_err("%s: interrupted; run the same command again to resume", o->args[1]);
        return CU_ERROR;
    }
    if (r < 0)
        return cu_fail(o->args[0]);
    cu_info("%s: decrypted into %s", o->args[0], o->args[1]);
    return CU_OK;
}

static int rewrap(const char *image, vmseal_diskdesc *d, const vmseal_secret *old_kek,
                  const dopts *o)
{
    vmseal_secret *nk = NULL;
    cu_kek_opts nko = o->new_kek;
    vmseal_keysafe_info ki;
    if (vmseal_keysafe_parse(d->keysafe, &ki) < 0)
        return cu_fail(image);
    if (!nko.provider)
        nko.provider = ki.provider;
    if (cu_kek_check_ids(&nko) < 0) {
        cu_err("(for the new KEK: --new-kek-id ID, --new-provider NAME)");
        return CU_USAGE;
    }
    if (cu_kek_load(&nko, &nk) < 0)
        return CU_ERROR;
    char obj[64], *line = NULL;
    vmseal_disk_object_id(d->uuid, obj, sizeof(obj));
    int r = vmseal_keysafe_rewrap(old_kek, d->keysafe, obj, nk, nko.provider, nko.id, &line);
    vmseal_secret_free(nk);
    if (r < 0)
        return cu_fail(image);
    snprintf(d->keysafe, sizeof(d->keysafe), "%s", line);
    free(line);
    char *dpath = vmseal_diskdesc_path(image);
    r = dpath ? vmseal_diskdesc_write(dpath, d, 1) : vmseal_fail(ENOMEM, "out of memory");
    free(dpath);
    if (r < 0)
        return cu_fail(image);
    cu_info("%s: key safe rewrapped under KEK '%s' at provider '%s'", image, nko.id,
            nko.provider);
    return CU_OK;
}

static int do_rekey(const dopts *o)
{
    const char *image = o->args[0];
    if (o->shallow && !o->have_new_kek) {
        cu_err("--shallow needs the new KEK: --new-kek-file F or --new-kek-fd N, --new-kek-id ID");
        return CU_USAGE;
    }
    vmseal_secret *kek = NULL, *secret = NULL, *pass = NULL;
    vmseal_diskdesc d;
    if (cu_kek_load(&o->kek, &kek) < 0)
        return CU_ERROR;
    int rc = CU_ERROR;
    if (disk_secret(image, &o->kek, kek, &d, &secret) < 0) {
        cu_fail(image);
        goto out;
    }
    if (!o->shallow) {
        if (vmseal_disk_passphrase_from_secret(secret, &pass) < 0) {
            cu_fail(image);
            goto out;
        }
        vmseal_disk_opts dop;
        cu_progress prog;
        cu_progress_init(&prog, "rekeying");
        fill_disk_opts(&dop, o, &prog);
        int r = vmseal_disk_rekey(image, pass, &dop);
        cu_progress_end(&prog);
        if (r == -ECANCELED) {
            cu_err("%s: interrupted; run the same command again to resume", image);
            goto out;
        }
        if (r < 0) {
            cu_fail(image);
            goto out;
        }
        cu_info("%s: new data key; all data re-encrypted", image);
    }
    rc = o->have_new_kek ? rewrap(image, &d, kek, o) : CU_OK;
out:
    vmseal_secret_free(kek);
    vmseal_secret_free(secret);
    vmseal_secret_free(pass);
    return rc;
}

static int do_passphrase(const dopts *o)
{
    if ((o->out_fd >= 0) == (o->out_file != NULL)) {
        cu_err("give exactly one of --out-fd N and --out-file F");
        return CU_USAGE;
    }
    if (o->out_fd >= 0) {
        if (isatty(o->out_fd)) {
            cu_err("refusing to write the passphrase to a terminal");
            return CU_ERROR;
        }
        if (fcntl(o->out_fd, F_GETFD) < 0) {
            cu_err("--out-fd %d: %s", o->out_fd, strerror(errno));
            return CU_ERROR;
        }
    }
    vmseal_diskdesc d;
    vmseal_secret *pass = NULL;
    if (disk_pass(o->args[0], &o->kek, &d, &pass) < 0)
        return CU_ERROR;
    int rc = CU_ERROR;
    if (vmseal_disk_verify_passphrase(o->args[0], pass) < 0) {
        cu_fail(o->args[0]);
        goto out;
    }
    int fd = o->out_fd;
    if (o->out_file) {
        fd = open(o->out_file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
            cu_err("%s: %s%s", o->out_file, strerror(errno),
                   errno == EEXIST ? " (remove the old secret file first)" : "");
            goto out;
        }
    }
    int w = vmseal_write_all(fd, vmseal_secret_cdata(pass), vmseal_secret_len(pass));
    if (w < 0)
        cu_err("writing the passphrase: %s", strerror(-w));
    if (o->out_file) {
        if (w == 0 && fsync(fd) != 0) {
            cu_err("writing the passphrase: %s", strerror(errno));
            w = -EIO;
        }
        close(fd);
        if (w < 0)
            unlink(o->out_file);
    }
    rc = w < 0 ? CU_ERROR : CU_OK;
out:
    vmseal_secret_free(pass);
    return rc;
}

static int do_verify(const dopts *o)
{
    vmseal_diskdesc d;
    vmseal_secret *pass = NULL;
    if (disk_pass(o->args[0], &o->kek, &d, &pass) < 0)
        return CU_ERROR;
    int r = vmseal_disk_verify_passphrase(o->args[0], pass);
    vmseal_secret_free(pass);
    if (r < 0)
        return cu_fail(o->args[0]);
    cu_info("%s: the KEK unwraps its key safe and the passphrase opens the disk", o->args[0]);
    return CU_OK;
}

static int do_keyslot_add(const dopts *o)
{
    if ((o->new_pass_fd >= 0) == (o->new_pass_file != NULL)) {
        cu_err("give exactly one of --new-passphrase-fd N and --new-passphrase-file F");
        return CU_USAGE;
    }
    vmseal_diskdesc d;
    vmseal_secret *pass = NULL, *np = NULL;
    if (cu_passphrase_load(o->new_pass_file, o->new_pass_fd, &np) < 0)
        return CU_ERROR;
    if (disk_pass(o->args[0], &o->kek, &d, &pass) < 0) {
        vmseal_secret_free(np);
        return CU_ERROR;
    }
    int slot = vmseal_disk_keyslot_add(o->args[0], pass, np);
    vmseal_secret_free(pass);
    vmseal_secret_free(np);
    if (slot < 0)
        return cu_fail(o->args[0]);
    cu_info("%s: passphrase added in keyslot %d", o->args[0], slot);
    return CU_OK;
}

static int do_keyslot_remove(const dopts *o)
{
    if ((o->pass_fd >= 0) == (o->pass_file != NULL)) {
        cu_err("give exactly one of --passphrase-fd N and --passphrase-file F");
        return CU_USAGE;
    }
    vmseal_secret *rp = NULL, *pass = NULL;
    vmseal_diskdesc d;
    if (cu_passphrase_load(o->pass_file, o->pass_fd, &rp) < 0)
        return CU_ERROR;
    int rc = CU_ERROR;
    if (!o->force) {
        if (disk_pass(o->args[0], &o->kek, &d, &pass) < 0)
            goto out;
        if (vmseal_secret_cmp(pass, rp) == 0) {
            cu_err("%s: that is vmseal's own keyslot (the one %s%s unlocks); removing it "
                   "makes the disk unusable through vmseal. Use --force to do it anyway.",
                   o->args[0], o->args[0], VMSEAL_DISKDESC_SUFFIX);
            goto out;
        }
    }
    int slot = vmseal_disk_keyslot_remove(o->args[0], rp);
    if (slot < 0) {
        cu_fail(o->args[0]);
        goto out;
    }
    cu_info("%s: keyslot %d removed", o->args[0], slot);
    rc = CU_OK;
out:
    vmseal_secret_free(rp);
    vmseal_secret_free(pass);
    return rc;
}

/* disk adopt: the descriptor first (marked incomplete, so a resumed run
 * uses the same secret), then vmseal's keyslot (and the user's removed),
 * then the descriptor marked complete. */
static int do_adopt(const dopts *o)
{
    if ((o->pass_fd >= 0) == (o->pass_file != NULL)) {
        cu_err("give exactly one of --passphrase-fd N and --passphrase-file F");
        return CU_USAGE;
    }
    if (cu_kek_check_ids(&o->kek) < 0)
        return CU_USAGE;
    const char *image = o->args[0];
    vmseal_secret *kek = NULL, *user = NULL, *secret = NULL, *pass = NULL;
    char *dpath = vmseal_diskdesc_path(image);
    int rc = CU_ERROR, fresh = 0;
    vmseal_diskdesc d;
    vmseal_disk_info info;
    char obj[64];
    if (!dpath) {
        cu_err("out of memory");
        goto out;
    }
    if (cu_kek_load(&o->kek, &kek) < 0 || cu_passphrase_load(o->pass_file, o->pass_fd, &user) < 0)
        goto out;
    if (vmseal_disk_probe(image, &info) < 0) {
        cu_fail(image);
        goto out;
    }
    int r = vmseal_diskdesc_read(dpath, &d);
    if (r < 0 && r != -ENOENT) {
        cu_fail(dpath);
        goto out;
    }
    if (r == 0 && !d.incomplete) {
        cu_err("%s already exists: %s is a vmseal disk already", dpath, image);
        goto out;
    }
    if (r == 0) {
        vmseal_keysafe_info ki;
        if (strcasecmp(d.uuid, info.uuid) != 0) {
            cu_err("%s belongs to another disk (%s); remove it first", dpath, d.uuid);
            goto out;
        }
        if (vmseal_keysafe_parse(d.keysafe, &ki) == 0 && strcmp(ki.kek_id, o->kek.id) != 0) {
            cu_err("%s: an interrupted run used KEK '%s'; resume with that KEK or remove %s",
                   image, ki.kek_id, dpath);
            goto out;
        }
        vmseal_disk_object_id(d.uuid, obj, sizeof(obj));
        if (vmseal_keysafe_unwrap(kek, d.keysafe, obj, &secret) < 0) {
            cu_fail(dpath);
            goto out;
        }
        cu_info("resuming the interrupted adoption of %s", image);
    } else {
        char *line = NULL;
        memset(&d, 0, sizeof(d));
        d.version = 1;
        strcpy(d.format, "luks1");
        d.incomplete = 1;
        snprintf(d.uuid, sizeof(d.uuid), "%s", info.uuid);
        for (char *c = d.uuid; *c; c++)
            if (*c >= 'A' && *c <= 'F')
                *c = (char)(*c - 'A' + 'a');
        if (!vmseal_uuid_valid(d.uuid)) {
            cu_err("%s: its LUKS UUID '%s' is not a UUID vmseal can bind a key safe to", image,
                   info.uuid);
            goto out;
        }
        vmseal_disk_object_id(d.uuid, obj, sizeof(obj));
        if (vmseal_secret_random(VMSEAL_DISK_SECRET_LEN, &secret) < 0 ||
            vmseal_keysafe_wrap(kek, o->kek.provider, o->kek.id, obj, secret, &line) < 0) {
            cu_fail(image);
            goto out;
        }
        snprintf(d.keysafe, sizeof(d.keysafe), "%s", line);
        free(line);
        /* the passphrase first (a wrong one leaves nothing behind) */
        if (vmseal_disk_verify_passphrase(image, user) < 0) {
            cu_fail(image);
            goto out;
        }
        if (vmseal_diskdesc_write(dpath, &d, 0) < 0) {
            cu_fail(dpath);
            goto out;
        }
        fresh = 1;
    }
    /* from here on the descriptor stays: once vmseal's keyslot (or the
     * removal of the user's) is written, it is the way into the image */
    fresh = 0;
    if (vmseal_disk_passphrase_from_secret(secret, &pass) < 0 ||
        vmseal_disk_adopt(image, user, pass, o->remove_passphrase, &info) < 0) {
        cu_fail(image);
        goto out;
    }
    d.incomplete = 0;
    if (vmseal_diskdesc_write(dpath, &d, 1) < 0) {
        cu_fail(dpath);
        goto out;
    }
    fresh = 0;
    cu_info("%s: adopted (LUKS UUID %s, data untouched); key safe in %s%s", image, d.uuid, dpath,
            o->remove_passphrase ? "; the passphrase given no longer opens it" : "");
    rc = CU_OK;
out:
    if (fresh)
        unlink(dpath);
    free(dpath);
    vmseal_secret_free(kek);
    vmseal_secret_free(user);
    vmseal_secret_free(secret);
    vmseal_secret_free(pass);
    return rc;
}

/* --vm-config F --disk N: the image named there becomes the first argument;
 * an IMAGE without descriptor whose folder's vm.conf names it: the same. */
static int vm_disk_setup(dopts *o, const char *sub)
{
    static cu_vmdisk vd;
    int vm_verb = !strcmp(sub, "passphrase") || !strcmp(sub, "decrypt") || !strcmp(sub, "verify");
    if (!o->vm_config && o->disk_which) {
        cu_err("--disk needs --vm-config");
        return CU_USAGE;
    }
    if (o->vm_config) {
        if (!vm_verb) {
            cu_err("--vm-config works with passphrase, decrypt and verify (VM disks are "
                   "rekeyed by vmseal-hostd)");
            return CU_USAGE;
        }
        if (!o->disk_which) {
            cu_err("--vm-config needs --disk N (or --disk nvram)");
            return CU_USAGE;
        }
        if (cu_vmhome_open(o->vm_config, o->disk_which, &vd) < 0) {
            cu_vmdisk_clear(&vd);
            return cu_fail(o->vm_config);
        }
        if (o->nargs >= 2) {
            cu_vmdisk_clear(&vd);
            usage(stderr, sub);
            return CU_USAGE;
        }
        /* The image takes the place of the IMAGE argument. */
        o->args[1] = o->args[0];
        o->args[0] = vd.image;
        o->nargs++;
        vm_disk = &vd;
        return 0;
    }
    if (!vm_verb || o->nargs < 1)
        return 0;
    char *dpath = vmseal_diskdesc_path(o->args[0]);
    struct stat st;
    int has_desc = !dpath || lstat(dpath, &st) == 0;
    free(dpath);
    if (has_desc)
        return 0;
    int r = cu_vmhome_lookup(o->args[0], &vd);
    if (r < 0) {
        cu_vmdisk_clear(&vd);
        return cu_fail(o->args[0]);
    }
    if (r == 0) {
        cu_vmdisk_clear(&vd);
        return 0;
    }
    cu_info("%s: %s of VM home folder, key safe %s in %s", o->args[0],
            vd.index >= 0 ? "disk" : "NVRAM", vd.key, vd.conf_path);
    vm_disk = &vd;
    return 0;
}

static int disk_dispatch(const dopts *o, const char *sub)
{
    if (!strcmp(sub, "create")) {
        if (want_args(o, 1, sub) < 0)
            return CU_USAGE;
        if (!o->have_size) {
            cu_err("disk create needs --size SIZE");
            return CU_USAGE;
        }
        return make_disk(o, NULL, o->args[0]);
    }
    if (!strcmp(sub, "encrypt"))
        return want_args(o, 2, sub) < 0 ? CU_USAGE : make_disk(o, o->args[0], o->args[1]);
    if (!strcmp(sub, "decrypt"))
        return want_args(o, 2, sub) < 0 ? CU_USAGE : do_decrypt(o);
    if (!strcmp(sub, "rekey"))
        return want_args(o, 1, sub) < 0 ? CU_USAGE : do_rekey(o);
    if (!strcmp(sub, "passphrase"))
        return want_args(o, 1, sub) < 0 ? CU_USAGE : do_passphrase(o);
    if (!strcmp(sub, "keyslot-add"))
        return want_args(o, 1, sub) < 0 ? CU_USAGE : do_keyslot_add(o);
    if (!strcmp(sub, "keyslot-remove"))
        return want_args(o, 1, sub) < 0 ? CU_USAGE : do_keyslot_remove(o);
    if (!strcmp(sub, "verify"))
        return want_args(o, 1, sub) < 0 ? CU_USAGE : do_verify(o);
    if (!strcmp(sub, "adopt"))
        return want_args(o, 1, sub) < 0 ? CU_USAGE : do_adopt(o);
    cu_err("unknown disk verb '%s'", sub);
    usage(stderr, NULL);
    return CU_USAGE;
}

int cu_disk_main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout, NULL);
        return argc < 2 ? CU_USAGE : CU_OK;
    }
    const char *sub = argv[1];
    /* From the start, so that Ctrl-C at any moment stops at a checkpoint. */
    cu_install_cancel_handler();
    dopts o;
    int p = parse(argc - 1, argv + 1, sub, &o);
    if (p != 0)
        return p > 0 ? CU_OK : CU_USAGE;
    int r = vm_disk_setup(&o, sub);
    if (r != 0)
        return r;
    r = disk_dispatch(&o, sub);
    if (vm_disk)
        cu_vmdisk_clear(vm_disk);
    vm_disk = NULL;
    return r;
}
