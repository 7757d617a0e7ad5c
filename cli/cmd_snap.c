/* vmseal CLI — a VM's snapshots (a linear chain; docs/cli.md):
 *   vm snapshot ls NAME
 *   vm snapshot create NAME SNAP [--memory]
 *   vm snapshot revert NAME SNAP     (the latest snapshot)
 *   vm snapshot rm NAME SNAP         (powered off: merged into the layer below) */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define SNAP_TIMEOUT_MS (15L * 60 * 1000)   /* memory and qemu-img take a while */

static void snap_table(const json_t *snaps)
{
    static const char *const h[] = {"#", "NAME", "MEMORY", "STATE"};
    table *t = table_new(4, h);
    size_t i;
    json_t *s;
    json_array_foreach(snaps, i, s) {
        char idx[24];
        snprintf(idx, sizeof(idx), "%zu", i);
        const char *st = json_is_true(json_object_get(s, "removing")) ? "removal unfinished"
                         : json_is_true(json_object_get(s, "latest")) ? "latest" : "";
        const char *row[] = {idx, jstr(s, "name"),
                             json_is_true(json_object_get(s, "memory")) ? "yes" : "no", st};
        table_add(t, row);
    }
    table_print(t, stdout);
    table_free(t);
}

int cmd_vm_snapshot(cli *c, int argc, char **argv)
{
    /* argv[0] = "snapshot", argv[1] = ls|create|revert|rm */
    if (argc < 2)
        return EXIT_USAGE;
    const char *sub = argv[1];
    int memory = 0, ch;
    static const struct option opts[] = {
        {"memory", no_argument, NULL, 'm'},
        {0, 0, 0, 0},
    };
    optind = 2;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch == 'm')
            memory = 1;
        else
            return EXIT_USAGE;
    }
    int nargs = argc - optind;
    char **args = argv + optind;
    char esc[200], sesc[400], path[700];
    json_t *resp = NULL, *body = NULL;
    int rc;
    if (nargs < 1)
        return EXIT_USAGE;
    cli_escape(args[0], esc, sizeof(esc));
    if (nargs == 2)
        cli_escape(args[1], sesc, sizeof(sesc));
    if (!strcmp(sub, "ls") && nargs == 1 && !memory) {
        snprintf(path, sizeof(path), "/api/v1/vms/%s/snapshots", esc);
        rc = cli_call(c, "GET", path, NULL, &resp);
        if (rc == EXIT_OK && !c->json)
            snap_table(json_object_get(resp, "snapshots"));
    } else if (!strcmp(sub, "create") && nargs == 2) {
        body = json_pack("{s:s, s:b}", "name", args[1], "memory", memory);
        snprintf(path, sizeof(path), "/api/v1/vms/%s/snapshots", esc);
        rc = cli_call_timeout(c, "POST", path, body, &resp, SNAP_TIMEOUT_MS);
        if (rc == EXIT_OK && !c->json && !c->quiet)
            printf("VM %s: snapshot %s taken%s\n", args[0], args[1],
                   memory ? " (with its memory)" : "");
    } else if (!strcmp(sub, "revert") && nargs == 2 && !memory) {
        snprintf(path, sizeof(path), "/api/v1/vms/%s/snapshots/%s/revert", esc, sesc);
        rc = cli_call_timeout(c, "POST", path, NULL, &resp, SNAP_TIMEOUT_MS);
        if (rc == EXIT_OK && !c->json && !c->quiet)
            printf("VM %s: reverted to snapshot %s\n", args[0], args[1]);
    } else if (!strcmp(sub, "rm") && nargs == 2 && !memory) {
        snprintf(path, sizeof(path), "/api/v1/vms/%s/snapshots/%s", esc, sesc);
        rc = cli_call_timeout(c, "DELETE", path, NULL, &resp, SNAP_TIMEOUT_MS);
        if (rc == EXIT_OK && !c->json && !c->quiet)
            printf("VM %s: snapshot %s removed\n", args[0], args[1]);
    } else {
        return EXIT_USAGE;
    }
    if (rc == EXIT_OK && c->json)
        print_json(resp);
    json_decref(body);
    json_decref(resp);
    return rc;
}
