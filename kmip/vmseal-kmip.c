/* vmseal-kmip — small KMIP client for testing and administration.
 *
 * Never prints key bytes: `get` reports the key's size; the bytes go only to
 * a file descriptor the caller names with --reveal-to-fd. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vmseal/kmip_client.h>

#define MAX_LIST 64

static void usage(FILE *f)
{
    fprintf(f,
        "usage: vmseal-kmip --server HOST:PORT [--server ...] --cert PEM --key PEM --ca PEM\n"
        "                   [--server-name NAME] [--legacy-cbc] [--timeout MS] [--protocol 1.N]\n"
        "                   [--username U --password-fd N] [--verbose] COMMAND ...\n"
        "commands:\n"
        "  discover                          protocol versions the server offers\n"
        "  query                             vendor, operations and object types\n"
        "  create [--name N] [--bits 256] [--attr x-NAME=VALUE]...   prints the new UID\n"
        "  get UID [--reveal-to-fd N]        key size; raw key bytes only to fd N\n"
        "  activate UID\n"
        "  locate [--name N] [--state pre-active|active|deactivated|compromised|destroyed]\n"
        "         [--attr x-NAME=VALUE]... [--max N]                prints UIDs\n"
        "  attrs UID [NAME...]               attributes (all when no NAME)\n"
        "  add-attr UID NAME=VALUE...        text attributes, in one batch\n"
        "  revoke UID [--reason unspecified|compromise|superseded|cessation] [--message M]\n"
        "  destroy UID\n"
        "Servers are tried in the order given; the first that answers is used.\n");
}

static int split_attr(char *s, vmseal_kmip_text_attr *a)
{
    char *eq = strchr(s, '=');
    if (!eq || eq == s) {
        fprintf(stderr, "vmseal-kmip: attribute must be NAME=VALUE: %s\n", s);
        return -1;
    }
    *eq = 0;
    a->name = s;
    a->value = eq + 1;
    return 0;
}

static int parse_state(const char *s, uint32_t *out)
{
    static const struct { const char *n; uint32_t v; } t[] = {
        {"pre-active", VMSEAL_KMIP_STATE_PRE_ACTIVE}, {"active", VMSEAL_KMIP_STATE_ACTIVE},
        {"deactivated", VMSEAL_KMIP_STATE_DEACTIVATED}, {"compromised", VMSEAL_KMIP_STATE_COMPROMISED},
        {"destroyed", VMSEAL_KMIP_STATE_DESTROYED},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (strcmp(s, t[i].n) == 0) {
            *out = t[i].v;
            return 0;
        }
    return -1;
}

static int parse_reason(const char *s, uint32_t *out)
{
    static const struct { const char *n; uint32_t v; } t[] = {
        {"unspecified", VMSEAL_KMIP_REVOKE_UNSPECIFIED}, {"compromise", VMSEAL_KMIP_REVOKE_KEY_COMPROMISE},
        {"superseded", VMSEAL_KMIP_REVOKE_SUPERSEDED},
        {"cessation", VMSEAL_KMIP_REVOKE_CESSATION_OF_OPERATION},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (strcmp(s, t[i].n) == 0) {
            *out = t[i].v;
            return 0;
        }
    return -1;
}

static int write_all(int fd, const unsigned char *p, size_t len)
{
    return vmseal_write_all(fd, p, len) < 0 ? -1 : 0;
}

static int fail(const char *what)
{
    fprintf(stderr, "vmseal-kmip: %s: %s\n", what, vmseal_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    const char *servers[MAX_LIST];
    size_t n_servers = 0;
    vmseal_kmip_text_attr attrs[MAX_LIST];
    size_t n_attrs = 0;
    vmseal_kmip_client_config cfg = {0};
    cfg.tls.require_eku = 1;
    const char *name = NULL, *message = NULL;
    int bits = 0, reveal_fd = -1, password_fd = -1, max_items = 0, verbose = 0;
    uint32_t state = 0, reason = 0;
    static const struct option opts[] = {
        {"server", required_argument, NULL, 's'}, {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},    {"ca", required_argument, NULL, 'a'},
        {"server-name", required_argument, NULL, 'N'}, {"legacy-cbc", no_argument, NULL, 'L'},
        {"timeout", required_argument, NULL, 't'}, {"protocol", required_argument, NULL, 'P'},
        {"username", required_argument, NULL, 'u'}, {"password-fd", required_argument, NULL, 'p'},
        {"name", required_argument, NULL, 'n'},   {"bits", required_argument, NULL, 'b'},
        {"attr", required_argument, NULL, 'A'},   {"reveal-to-fd", required_argument, NULL, 'R'},
        {"state", required_argument, NULL, 'S'},  {"max", required_argument, NULL, 'm'},
        {"reason", required_argument, NULL, 'r'}, {"message", required_argument, NULL, 'M'},
        {"verbose", no_argument, NULL, 'v'},      {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "hv", opts, NULL)) != -1) {
        switch (o) {
        case 's':
            if (n_servers == MAX_LIST)
                return fprintf(stderr, "vmseal-kmip: too many servers\n"), 2;
            servers[n_servers++] = optarg;
            break;
        case 'c': cfg.tls.cert_file = optarg; break;
        case 'k': cfg.tls.key_file = optarg; break;
        case 'a': cfg.tls.ca_file = optarg; break;
        case 'N': cfg.tls.server_name = optarg; break;
        case 'L': cfg.tls.legacy_cbc_suites = 1; break;
        case 't': cfg.connect_timeout_ms = cfg.io_timeout_ms = atoi(optarg); break;
        case 'P':
            if (sscanf(optarg, "%d.%d", &cfg.version.major, &cfg.version.minor) != 2)
                return fprintf(stderr, "vmseal-kmip: --protocol wants 1.N\n"), 2;
            break;
        case 'u': cfg.username = optarg; break;
        case 'p': password_fd = atoi(optarg); break;
        case 'n': name = optarg; break;
        case 'b': bits = atoi(optarg); break;
        case 'A':
            if (n_attrs == MAX_LIST || split_attr(optarg, &attrs[n_attrs]) < 0)
                return 2;
            n_attrs++;
            break;
        case 'R': reveal_fd = atoi(optarg); break;
        case 'S':
            if (parse_state(optarg, &state) < 0)
                return fprintf(stderr, "vmseal-kmip: unknown state %s\n", optarg), 2;
            break;
        case 'm': max_items = atoi(optarg); break;
        case 'r':
            if (parse_reason(optarg, &reason) < 0)
                return fprintf(stderr, "vmseal-kmip: unknown reason %s\n", optarg), 2;
            break;
        case 'M': message = optarg; break;
        case 'v': verbose = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc || n_servers == 0) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[optind++];
    int nargs = argc - optind;
    char **args = argv + optind;

    vmseal_secret *password = NULL;
    if (password_fd >= 0) {
        if (vmseal_secret_read_fd(password_fd, 1024, &password) < 0)
            return fail("password");
        size_t l = vmseal_secret_len(password);
        unsigned char *p = vmseal_secret_data(password);
        while (l && (p[l - 1] == '\n' || p[l - 1] == '\r'))
            l--;
        vmseal_secret *z = vmseal_secret_new(l + 1); /* NUL-terminated copy */
        if (!z)
            return fail("password");
        memcpy(vmseal_secret_data(z), p, l);
        vmseal_secret_free(password);
        password = z;
        cfg.password = (const char *)vmseal_secret_cdata(password);
    }
    cfg.servers = servers;
    cfg.n_servers = n_servers;
    vmseal_kmip_client *c;
    if (vmseal_kmip_client_new(&cfg, &c) < 0) {
        vmseal_secret_free(password);
        return fail("setup");
    }
    int rc = 0, status = 0;
    const char *uid = nargs > 0 ? args[0] : NULL;
    if (strcmp(cmd, "discover") == 0) {
        vmseal_kmip_version v[16];
        size_t n;
        if ((rc = vmseal_kmip_discover_versions(c, v, 16, &n)) == 0)
            for (size_t i = 0; i < n; i++)
                printf("%d.%d\n", v[i].major, v[i].minor);
    } else if (strcmp(cmd, "query") == 0) {
        vmseal_kmip_server_info info;
        if ((rc = vmseal_kmip_query(c, &info)) == 0) {
            printf("vendor: %s\n", info.vendor);
            for (size_t i = 0; i < info.n_operations; i++) {
                const char *n = vmseal_kmip_enum_name(VMSEAL_KMIP_TAG_OPERATION, info.operations[i]);
                printf("operation: %s\n", n ? n : "?");
            }
            for (size_t i = 0; i < info.n_object_types; i++) {
                const char *n = vmseal_kmip_enum_name(VMSEAL_KMIP_TAG_OBJECT_TYPE, info.object_types[i]);
                printf("object type: %s\n", n ? n : "?");
            }
            const vmseal_kmip_cluster_info *ci = &info.cluster;
            if (ci->present) {
                printf("store: %s\n", ci->store);
                if (ci->node[0])
                    printf("node: %s (facts %lld ms old)\n", ci->node, (long long)ci->facts_age_ms);
                if (ci->db_role[0])
                    printf("database: %s %s %s%s%s\n", ci->db_role, ci->db_address, ci->db_version,
                           ci->db_error[0] ? " " : "", ci->db_error);
                if (ci->synchronous_commit[0])
                    printf("synchronous: synchronous_commit=%s synchronous_standby_names='%s'\n",
                           ci->synchronous_commit, ci->synchronous_standby_names);
                for (size_t i = 0; i < ci->n_standbys; i++)
                    printf("standby: %s %s %s replay_lag_ms=%lld bytes_behind=%lld\n", ci->standbys[i].name,
                           ci->standbys[i].state, ci->standbys[i].sync_state,
                           (long long)ci->standbys[i].replay_lag_ms, (long long)ci->standbys[i].bytes_behind);
                for (size_t i = 0; i < ci->n_nodes; i++)
                    printf("cluster node: %s %s %s seen_ago_ms=%lld version=%s\n", ci->nodes[i].name,
                           ci->nodes[i].address, ci->nodes[i].state, (long long)ci->nodes[i].seen_ago_ms,
                           ci->nodes[i].version);
            }
        }
    } else if (strcmp(cmd, "create") == 0) {
        vmseal_kmip_create_opts co = {.bits = bits, .name = name, .attrs = attrs, .n_attrs = n_attrs};
        char *newuid;
        if ((rc = vmseal_kmip_create_aes(c, &co, &newuid)) == 0) {
            printf("%s\n", newuid);
            free(newuid);
        }
    } else if (strcmp(cmd, "get") == 0 && nargs == 1) {
        vmseal_secret *key;
        if ((rc = vmseal_kmip_get_key(c, uid, &key)) == 0) {
            printf("%s: symmetric key, %zu bytes\n", uid, vmseal_secret_len(key));
            if (reveal_fd >= 0 && write_all(reveal_fd, vmseal_secret_cdata(key), vmseal_secret_len(key)) < 0)
                rc = vmseal_fail(errno ? errno : EIO, "cannot write the key to fd %d", reveal_fd);
            vmseal_secret_free(key);
        }
    } else if (strcmp(cmd, "activate") == 0 && nargs == 1) {
        rc = vmseal_kmip_activate(c, uid);
    } else if (strcmp(cmd, "destroy") == 0 && nargs == 1) {
        rc = vmseal_kmip_destroy(c, uid);
    } else if (strcmp(cmd, "revoke") == 0 && nargs == 1) {
        rc = vmseal_kmip_revoke(c, uid, reason, message);
    } else if (strcmp(cmd, "locate") == 0 && nargs == 0) {
        vmseal_kmip_locate_filter f = {.name = name, .state = state, .attrs = attrs, .n_attrs = n_attrs,
                                       .max_items = max_items};
        char **uids;
        size_t n;
        if ((rc = vmseal_kmip_locate(c, &f, &uids, &n)) == 0) {
            for (size_t i = 0; i < n; i++)
                printf("%s\n", uids[i]);
            vmseal_kmip_uids_free(uids, n);
        }
    } else if (strcmp(cmd, "attrs") == 0 && nargs >= 1) {
        vmseal_ttlv *a;
        if ((rc = vmseal_kmip_get_attributes(c, uid, (const char *const *)args + 1, (size_t)nargs - 1, &a)) == 0) {
            rc = vmseal_ttlv_dump(a, stdout);
            vmseal_ttlv_free(a);
        }
    } else if (strcmp(cmd, "add-attr") == 0 && nargs >= 2) {
        for (int i = 1; i < nargs && n_attrs < MAX_LIST; i++)
            if (split_attr(args[i], &attrs[n_attrs++]) < 0)
                status = 2;
        if (!status)
            rc = vmseal_kmip_add_attributes(c, uid, attrs, n_attrs);
    } else {
        usage(stderr);
        status = 2;
    }
    if (rc < 0)
        status = fail(cmd);
    else if (verbose && vmseal_kmip_client_server(c))
        fprintf(stderr, "vmseal-kmip: server %s, KMIP %d.%d\n", vmseal_kmip_client_server(c),
                vmseal_kmip_client_version(c).major, vmseal_kmip_client_version(c).minor);
    vmseal_kmip_client_free(c);
    vmseal_secret_free(password);
    return status;
}
