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
