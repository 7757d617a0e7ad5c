/* vmseal vm clone SRC NEW [--host HOST] [--deep] [--kms NAME]
 *
 * A powered-off VM cloned on its host (POST /api/v1/vms/SRC/clone). An
 * encrypted source gives an encrypted clone with its own KEK and disk
 * secrets (--deep: new volume keys too, the data re-encrypted). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cmd_vm_clone(cli *c, int argc, char **argv)
{
    /* argv[0] = "clone" */
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'h'},
        {"kms", required_argument, NULL, 'k'},
        {"deep", no_argument, NULL, 'd'},
        {0, 0, 0, 0},
    };
    const char *host = NULL, *kms = NULL;
    int deep = 0, ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'h': host = optarg; break;
        case 'k': kms = optarg; break;
        case 'd': deep = 1; break;
        default: return EXIT_USAGE;
        }
    }
    if (argc - optind != 2)
        return EXIT_USAGE;
    const char *src = argv[optind], *dst = argv[optind + 1];
    char esc[200], path[300];
    cli_escape(src, esc, sizeof(esc));
    snprintf(path, sizeof(path), "/api/v1/vms/%s/clone", esc);
    json_t *body = json_pack("{s:s}", "name", dst);
    if (host)
        json_object_set_new(body, "host", json_string(host));
    if (kms)
        json_object_set_new(body, "kms", json_string(kms));
    if (deep)
        json_object_set_new(body, "deep", json_true());
    if (!c->json && !c->quiet) {
        printf("cloning VM %s into %s%s...\n", src, dst, deep ? " (new volume keys)" : "");
        fflush(stdout);
    }
    json_t *resp = NULL;
    int rc = cli_call(c, "POST", path, body, &resp);
    json_decref(body);
    if (rc != EXIT_OK)
        return rc;
    if (c->json)
        print_json(resp);
    else if (!c->quiet)
        printf("VM %s cloned into %s (%s%s%s)\n", src, dst, jstr(resp, "uuid"),
               json_is_true(json_object_get(resp, "encrypted")) ? ", encrypted under KEK " : "",
               json_is_true(json_object_get(resp, "encrypted")) ? jstr(resp, "kek_id") : "");
    json_decref(resp);
    return EXIT_OK;
}

/* vmseal vm disk rm NAME N [--keep-file] */
int cmd_vm_disk_rm(cli *c, int argc, char **argv)
{
    /* argv[0] = "rm" */
    static const struct option opts[] = {
        {"keep-file", no_argument, NULL, 'k'},
        {0, 0, 0, 0},
    };
    int keep = 0, ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch == 'k')
            keep = 1;
        else
            return EXIT_USAGE;
    }
    if (argc - optind != 2)
        return EXIT_USAGE;
    const char *name = argv[optind], *n = argv[optind + 1];
    char *end = NULL;
    long idx = strtol(n, &end, 10);
    if (!*n || *end || idx < 0 || idx > 7) {
        fprintf(stderr, "vmseal vm disk rm NAME N: N is a disk index, 0..7\n");
        cli_reported = 1;
        return EXIT_USAGE;
    }
    char esc[200], path[300];
    cli_escape(name, esc, sizeof(esc));
    snprintf(path, sizeof(path), "/api/v1/vms/%s/disks/%ld%s", esc, idx, keep ? "?keep_file=1" : "");
    json_t *resp = NULL;
    int rc = cli_call(c, "DELETE", path, NULL, &resp);
    if (rc != EXIT_OK)
        return rc;
    if (c->json)
        print_json(resp);
    else if (!c->quiet)
        printf("VM %s: disk%ld removed%s\n", name, idx, keep ? " (its file is kept in the VM home)" : "");
    json_decref(resp);
    return EXIT_OK;
}

/* vmseal vm cdrom NAME --iso FILE | --eject */
int cmd_vm_cdrom(cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"iso", required_argument, NULL, 'i'},
        {"eject", no_argument, NULL, 'e'},
        {0, 0, 0, 0},
    };
    const char *iso = NULL;
    int eject = 0, ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'i': iso = optarg; break;
        case 'e': eject = 1; break;
        default: return EXIT_USAGE;
        }
    }
    if (argc - optind != 1 || !iso == !eject) {
        fprintf(stderr, "vmseal vm cdrom NAME: give --iso FILE (in the host's images folder) or --eject\n");
        cli_reported = 1;
        return EXIT_USAGE;
    }
    const char *name = argv[optind];
    char esc[200], path[300];
    cli_escape(name, esc, sizeof(esc));
    snprintf(path, sizeof(path), "/api/v1/vms/%s/cdrom", esc);
    json_t *body = iso ? json_pack("{s:s}", "iso", iso) : json_pack("{s:b}", "eject", 1);
    json_t *resp = NULL;
    int rc = cli_call(c, "POST", path, body, &resp);
    json_decref(body);
    if (rc != EXIT_OK)
        return rc;
    if (c->json)
        print_json(resp);
    else if (!c->quiet)
        printf(iso ? "VM %s: %s in the CD-ROM drive\n" : "VM %s: CD-ROM ejected%s\n", name, iso ? iso : "");
    json_decref(resp);
    return EXIT_OK;
}

/* vmseal vm set NAME --boot ORDER */
int cmd_vm_boot(cli *c, int argc, char **argv)
{
    /* argv[0] = "set" */
    static const struct option opts[] = {
        {"boot", required_argument, NULL, 'b'},
        {0, 0, 0, 0},
    };
    const char *order = NULL;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch == 'b')
            order = optarg;
        else
            return EXIT_USAGE;
    }
    if (argc - optind != 1 || !order) {
        fprintf(stderr, "vmseal vm set NAME --boot ORDER: the boot order (disk, cdrom, net, "
                        "comma-separated; \"\" the default) is set alone\n");
        cli_reported = 1;
        return EXIT_USAGE;
    }
    const char *name = argv[optind];
    char esc[200], path[300];
    cli_escape(name, esc, sizeof(esc));
    snprintf(path, sizeof(path), "/api/v1/vms/%s", esc);
    json_t *body = json_pack("{s:s}", "boot", order);
    json_t *resp = NULL;
    int rc = cli_call(c, "PATCH", path, body, &resp);
    json_decref(body);
    if (rc != EXIT_OK)
        return rc;
    if (c->json)
        print_json(resp);
    else if (!c->quiet)
        printf("VM %s: boot order %s\n", name, *order ? order : "(the firmware's default)");
    json_decref(resp);
    return EXIT_OK;
}
