/* vmseal CLI — a VM's network cards (user-mode ones are hot-plugged into a
 * running VM; bridged ones are added, and any removed, powered off):
 *   vm nic ls NAME
 *   vm nic add NAME [--network NET] [--mac MAC] [--forward [tcp|udp:][ADDR:]HOSTPORT:GUESTPORT]...
 *       no --network: user-mode NAT (QEMU slirp); --network: a bridge the host defines
 *   vm nic rm NAME MAC */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* [tcp|udp:][ADDR:]HOSTPORT:GUESTPORT -> "tcp|udp:ADDR:HOSTPORT:GUESTPORT"
 * (the host checks the values). */
static int forward_spec(const char *in, char *out, size_t len)
{
    const char *proto = "tcp", *p = in;
    if (!strncmp(p, "tcp:", 4) || !strncmp(p, "udp:", 4)) {
        proto = !strncmp(p, "udp:", 4) ? "udp" : "tcp";
        p += 4;
    }
    int colons = 0;
    for (const char *q = p; *q; q++)
        colons += *q == ':';
    int n;
    if (colons == 1)
        n = snprintf(out, len, "%s:127.0.0.1:%s", proto, p);
    else if (colons == 2)
        n = snprintf(out, len, "%s:%s", proto, p);
    else
        return -1;
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

static void nic_table(const json_t *nics)
{
    static const char *const h[] = {"#", "MAC", "MODE", "NETWORK", "FORWARDS"};
    table *t = table_new(5, h);
    size_t i, k;
    json_t *n, *f;
    json_array_foreach(nics, i, n) {
        char idx[16], fw[600] = "";
        snprintf(idx, sizeof(idx), "%lld", (long long)json_integer_value(json_object_get(n, "index")));
        json_array_foreach(json_object_get(n, "forwards"), k, f) {
            size_t l = strlen(fw);
            snprintf(fw + l, sizeof(fw) - l, "%s%s", l ? " " : "", json_string_value(f));
        }
        const char *row[] = {idx, jstr(n, "mac"), jstr(n, "mode"), jstr(n, "network"), fw};
        table_add(t, row);
    }
    table_print(t, stdout);
    table_free(t);
}

void vm_info_nics(const json_t *rt)
{
    size_t i, k;
    json_t *n, *f;
    json_array_foreach(json_object_get(rt, "nics"), i, n) {
        printf("NIC %zu:       %s %s%s%s", i, jstr(n, "mac"), jstr(n, "mode"),
               *jstr(n, "network") ? " on " : "", jstr(n, "network"));
        json_array_foreach(json_object_get(n, "forwards"), k, f)
            printf("%s%s", k ? ", " : ", forwards ", json_string_value(f));
        printf("\n");
    }
}

int cmd_vm_nic(cli *c, int argc, char **argv)
{
    /* argv[0] = "nic", argv[1] = ls|add|rm */
    if (argc < 2)
        return EXIT_USAGE;
    const char *sub = argv[1], *network = NULL, *mac = NULL;
    json_t *fwd = json_array();
    int ch;
    static const struct option opts[] = {
        {"network", required_argument, NULL, 'n'},
        {"mac", required_argument, NULL, 'm'},
        {"forward", required_argument, NULL, 'f'},
        {0, 0, 0, 0},
    };
    optind = 2;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char spec[128];
        switch (ch) {
        case 'n': network = optarg; break;
        case 'm': mac = optarg; break;
        case 'f':
            if (forward_spec(optarg, spec, sizeof(spec)) < 0) {
                fprintf(stderr, "vmseal vm nic add: --forward [tcp|udp:][ADDR:]HOSTPORT:GUESTPORT\n");
                cli_reported = 1;
                json_decref(fwd);
                return EXIT_USAGE;
            }
            json_array_append_new(fwd, json_string(spec));
            break;
        default:
            json_decref(fwd);
            return EXIT_USAGE;
        }
    }
    int nargs = argc - optind;
    char **args = argv + optind;
    char esc[200], path[400];
    json_t *resp = NULL, *body = NULL;
    int rc;
    if (nargs < 1) {
        json_decref(fwd);
        return EXIT_USAGE;
    }
    cli_escape(args[0], esc, sizeof(esc));
    if (!strcmp(sub, "ls") && nargs == 1 && !network && !mac && !json_array_size(fwd)) {
        snprintf(path, sizeof(path), "/api/v1/vms/%s/nics", esc);
        rc = cli_call(c, "GET", path, NULL, &resp);
        if (rc == EXIT_OK && !c->json)
            nic_table(json_object_get(resp, "nics"));
    } else if (!strcmp(sub, "add") && nargs == 1) {
        body = json_object();
        json_object_set_new(body, "mode", json_string(network ? "bridge" : "user"));
        if (network)
            json_object_set_new(body, "network", json_string(network));
        if (mac)
            json_object_set_new(body, "mac", json_string(mac));
        if (json_array_size(fwd))
            json_object_set(body, "forwards", fwd);
        snprintf(path, sizeof(path), "/api/v1/vms/%s/nics", esc);
        rc = cli_call(c, "POST", path, body, &resp);
        if (rc == EXIT_OK && !c->json && !c->quiet)
            printf("VM %s: NIC %s added (%s%s%s)\n", args[0], jstr(resp, "mac"), jstr(resp, "mode"),
                   network ? " on " : "", network ? network : "");
    } else if (!strcmp(sub, "rm") && nargs == 2 && !network && !mac && !json_array_size(fwd)) {
        char mesc[64];
        cli_escape(args[1], mesc, sizeof(mesc));
        snprintf(path, sizeof(path), "/api/v1/vms/%s/nics/%s", esc, mesc);
        rc = cli_call(c, "DELETE", path, NULL, &resp);
        if (rc == EXIT_OK && !c->json && !c->quiet)
            printf("VM %s: NIC %s removed\n", args[0], args[1]);
    } else {
        json_decref(fwd);
        return EXIT_USAGE;
    }
    if (rc == EXIT_OK && c->json)
        print_json(resp);
    json_decref(fwd);
    json_decref(body);
    json_decref(resp);
    return rc;
}
