/* vmseal CLI — key providers: kms add|ls|rm|default|status|trust|csr|client-cert */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cli.h"

static char *read_text_file(const char *path)
{
    FILE *f = !strcmp(path, "-") ? stdin : fopen(path, "re");
    if (!f) {
        fprintf(stderr, "vmseal: cannot read %s\n", path);
        return NULL;
    }
    size_t cap = 8192, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n + 1 == cap) {
            if (cap >= (1u << 20)) {
                fprintf(stderr, "vmseal: %s is too large\n", path);
                free(buf);
                buf = NULL;
                break;
            }
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    if (buf)
        buf[n] = '\0';
    if (f != stdin)
        fclose(f);
    return buf;
}

static void print_provider(const json_t *p)
{
    printf("%s%s\n", jstr(p, "name"), json_is_true(json_object_get(p, "default")) ? " (default)" : "");
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(p, "servers"), i, s)
        printf("  server %zu: %s\n", i + 1, json_string_value(s));
    json_t *ca = json_object_get(p, "kms_ca");
    if (json_is_object(ca))
        printf("  KMS certificate trusted: %s (%s, expires in %lld days)\n", jstr(ca, "subject"),
               jstr(ca, "status"), (long long)json_integer_value(json_object_get(ca, "days_left")));
    else
        printf("  KMS certificate: not trusted yet (vmseal kms trust %s)\n", jstr(p, "name"));
    json_t *cc = json_object_get(p, "client_certificate");
    if (json_is_object(cc))
        printf("  manager certificate: %s, issued by %s (%s)\n", jstr(cc, "subject"), jstr(cc, "issuer"),
               jstr(cc, "status"));
    else if (json_is_true(json_object_get(p, "csr_pending")))
        printf("  manager certificate: CSR waiting for the KMS to sign it (vmseal kms client-cert)\n");
    else
        printf("  manager certificate: none (vmseal kms csr / vmseal kms client-cert)\n");
}

/* "1.234 s" from milliseconds, "?" when the server did not know. */
static const char *fmt_ms(const json_t *v, char *buf, size_t len)
{
    if (!json_is_integer(v))
        return "?";
    snprintf(buf, len, "%.3f s", (double)json_integer_value(v) / 1000.0);
    return buf;
}

/* The cluster a vmseal-kmsd node reports (its Query's Server Information). */
static void print_cluster(const char *server, const json_t *cl)
{
    char a[32], b[32];
    if (strcmp(jstr(cl, "store"), "postgresql")) {
        printf("Server %s: store %s (one node)\n", server, jstr(cl, "store"));
        return;
    }
    printf("Server %s: node %s of a cluster on PostgreSQL (as it saw it %s ago)\n", server, jstr(cl, "node"),
           fmt_ms(json_object_get(cl, "facts_age_ms"), a, sizeof(a)));
    const json_t *db = json_object_get(cl, "database");
    int primary = !strcmp(jstr(db, "role"), "primary");
    if (primary)
        printf("  database: primary %s, PostgreSQL %s, synchronous_commit=%s, synchronous_standby_names='%s'\n",
               jstr(db, "address"), jstr(db, "version"), jstr(db, "synchronous_commit"),
               jstr(db, "synchronous_standby_names"));
    else
        printf("  database: %s: %s\n", json_is_object(db) ? jstr(db, "role") : "not reported",
               jstr(db, "error"));
    size_t i;
    json_t *x;
    if (primary && json_array_size(json_object_get(cl, "standbys")) == 0)
        printf("  standbys: none connected\n");
    json_array_foreach(json_object_get(cl, "standbys"), i, x) {
        const json_t *bb = json_object_get(x, "bytes_behind");
        printf("  standby %s: %s, %s, replay lag %s, ", jstr(x, "name"),
               *jstr(x, "state") ? jstr(x, "state") : "?", *jstr(x, "sync_state") ? jstr(x, "sync_state") : "?",
               fmt_ms(json_object_get(x, "replay_lag_ms"), a, sizeof(a)));
        if (json_is_integer(bb))
            printf("%lld bytes behind\n", (long long)json_integer_value(bb));
        else
            printf("bytes behind unknown (the database user lacks pg_monitor)\n");
    }
    long long sb_total = (long long)json_integer_value(json_object_get(cl, "standbys_total"));
    if (sb_total > (long long)json_array_size(json_object_get(cl, "standbys")))
        printf("  (%lld standbys in all; %zu shown)\n", sb_total, json_array_size(json_object_get(cl, "standbys")));
    json_array_foreach(json_object_get(cl, "nodes"), i, x)
        printf("  node %s  %s  %s  last seen %s ago  vmseal-kmsd %s\n", jstr(x, "name"), jstr(x, "address"),
               jstr(x, "state"), fmt_ms(json_object_get(x, "seen_ago_ms"), b, sizeof(b)), jstr(x, "version"));
    long long total = (long long)json_integer_value(json_object_get(cl, "nodes_total"));
    if (total > (long long)json_array_size(json_object_get(cl, "nodes")))
        printf("  (%lld nodes in all; %zu shown)\n", total, json_array_size(json_object_get(cl, "nodes")));
}

static int kms_status(cli *c, const char *name)
{
    char path[256], esc[200];
    cli_escape(name, esc, sizeof(esc));
    snprintf(path, sizeof(path), "/api/v1/kms/%s/status", esc);
    json_t *resp = NULL;
    int rc = cli_call(c, "GET", path, NULL, &resp);
    if (rc != EXIT_OK)
        return rc;
    int connected = !strcmp(jstr(resp, "state"), "connected");
    if (c->json) {
        print_json(resp);
    } else {
        printf("Key provider %s: %s\n", name, jstr(resp, "state"));
        static const char *const h[] = {"SERVER", "STATE", "TLS", "KMIP", "KMS CERTIFICATE", "EXPIRES",
                                        "LAST ERROR"};
        table *t = table_new(7, h);
        size_t i;
        json_t *s;
        json_array_foreach(json_object_get(resp, "servers"), i, s) {
            json_t *kc = json_object_get(s, "kms_certificate");
            char exp[64] = "-";
            if (json_is_object(kc)) {
                char when[40];
                snprintf(exp, sizeof(exp), "%s (%s)",
                         fmt_time(json_integer_value(json_object_get(kc, "not_after")), when, sizeof(when)),
                         jstr(kc, "status"));
            }
            char kmip[300] = "-";
            if (json_is_true(json_object_get(s, "kmip_ok")))
                snprintf(kmip, sizeof(kmip), "%s %s", jstr(s, "kmip_version"), jstr(s, "vendor"));
            const char *row[] = {jstr(s, "address"), jstr(s, "state"),
                                 json_is_true(json_object_get(s, "tls_ok")) ? "ok" : "-", kmip,
                                 json_is_object(kc) ? jstr(kc, "subject") : "-", exp, jstr(s, "last_error")};
            table_add(t, row);
        }
        table_print(t, stdout);
        table_free(t);
        json_array_foreach(json_object_get(resp, "servers"), i, s) {
            if (json_is_object(json_object_get(s, "cluster")))
                print_cluster(jstr(s, "address"), json_object_get(s, "cluster"));
        }
        json_t *cc = json_object_get(resp, "client_certificate");
        if (json_is_object(cc)) {
            char when[40];
            printf("Manager client certificate: %s, expires %s (%s)\n", jstr(cc, "subject"),
                   fmt_time(json_integer_value(json_object_get(cc, "not_after")), when, sizeof(when)),
                   jstr(cc, "status"));
        }
    }
    json_decref(resp);
    return connected ? EXIT_OK : EXIT_FAIL;
}

static int kms_trust(cli *c, const char *name, const char *ca_file, int yes)
{
    char path[256], esc[200];
    cli_escape(name, esc, sizeof(esc));
    char *pem = NULL;
    if (ca_file) {
        pem = read_text_file(ca_file);
        if (!pem)
            return EXIT_USAGE;
    } else {
        /* vCenter's "Trust KMS": show what the server presents, then trust it. */
        snprintf(path, sizeof(path), "/api/v1/kms/%s/server-certificate", esc);
        json_t *resp = NULL;
        int rc = cli_call(c, "GET", path, NULL, &resp);
        if (rc != EXIT_OK)
            return rc;
        json_t *chain = json_object_get(resp, "chain");
        json_t *pick = NULL;
        size_t i;
        json_t *x;
        json_array_foreach(chain, i, x) {
            if (json_is_true(json_object_get(x, "is_ca")) || json_is_true(json_object_get(x, "self_signed")))
                pick = x;   /* the last CA in the chain: closest to the root */
        }
        printf("Server %s presents:\n", jstr(resp, "server"));
        json_array_foreach(chain, i, x)
            printf("  %zu. %s\n     issued by %s\n     SHA-256 %s\n", i + 1, jstr(x, "subject"), jstr(x, "issuer"),
                   jstr(x, "sha256"));
        if (!pick) {
            fprintf(stderr, "vmseal: the server sent no CA certificate; get the KMS CA certificate from its "
                            "administrator and run: vmseal kms trust %s --ca FILE\n", name);
            json_decref(resp);
            return EXIT_FAIL;
        }
        printf("Trust %s (SHA-256 %s)? ", jstr(pick, "subject"), jstr(pick, "sha256"));
        fflush(stdout);
        if (!yes) {
            char answer[16] = "";
            if (!isatty(STDIN_FILENO) || !fgets(answer, sizeof(answer), stdin) ||
                (answer[0] != 'y' && answer[0] != 'Y')) {
                printf("\nnot trusted (use --yes to accept without asking)\n");
                json_decref(resp);
                return EXIT_FAIL;
            }
        } else {
            printf("yes\n");
        }
        pem = strdup(jstr(pick, "pem"));
        json_decref(resp);
    }
    json_t *body = json_pack("{s:s}", "ca_pem", pem);
    free(pem);
    snprintf(path, sizeof(path), "/api/v1/kms/%s/trust", esc);
    json_t *resp = NULL;
    int rc = cli_call(c, "PUT", path, body, &resp);
    json_decref(body);
    if (rc == EXIT_OK) {
        if (c->json)
            print_json(resp);
        else if (!c->quiet)
            printf("The manager now trusts key provider %s: %s\n", name,
                   jstr(json_object_get(resp, "kms_ca"), "subject"));
    }
    json_decref(resp);
    return rc;
}

int cmd_kms(cli *c, int argc, char **argv)
{
    if (argc < 2)
        return EXIT_USAGE;
    const char *sub = argv[1];
    if (!strcmp(sub, "key"))          /* kms key ls|info|cleanup: as "keys" (govc kms.key.*) */
        return cmd_keys(c, argc - 1, argv + 1);
    const char *servers[16], *ca = NULL, *cert = NULL, *key = NULL, *cn = NULL, *out = NULL, *user = NULL;
    const char *pwfile = NULL;
    size_t ns = 0;
    int def = 0, yes = 0, clear = 0, pwfd = -1, ch;
    static const struct option opts[] = {
        {"server", required_argument, NULL, 's'},
        {"default", no_argument, NULL, 'd'},
        {"ca", required_argument, NULL, 'a'},
        {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},
        {"cn", required_argument, NULL, 'n'},
        {"out", required_argument, NULL, 'o'},
        {"username", required_argument, NULL, 'u'},
        {"yes", no_argument, NULL, 'y'},
        {"password-file", required_argument, NULL, 'f'},
        {"password-fd", required_argument, NULL, 'F'},
        {"clear", no_argument, NULL, 'C'},
        {0, 0, 0, 0},
    };
    optind = 2;
    while ((ch = getopt_long(argc, argv, "s:y", opts, NULL)) != -1) {
        switch (ch) {
        case 's':
            if (ns == 16) {
                fprintf(stderr, "vmseal: at most 16 servers\n");
                return EXIT_USAGE;
            }
            servers[ns++] = optarg;
            break;
        case 'd': def = 1; break;
        case 'a': ca = optarg; break;
        case 'c': cert = optarg; break;
        case 'k': key = optarg; break;
        case 'n': cn = optarg; break;
        case 'o': out = optarg; break;
        case 'u': user = optarg; break;
        case 'y': yes = 1; break;
        case 'f': pwfile = optarg; break;
        case 'F': pwfd = atoi(optarg); break;
        case 'C': clear = 1; break;
        default: return EXIT_USAGE;
        }
    }
    int nargs = argc - optind;
    char **args = argv + optind;
    json_t *resp = NULL, *body = NULL;
    char path[256], esc[200];
    if (nargs >= 1)
        cli_escape(args[0], esc, sizeof(esc));
    int rc;
    if (!strcmp(sub, "ls") && nargs == 0) {
        rc = cli_call(c, "GET", "/api/v1/kms", NULL, &resp);
        if (rc != EXIT_OK)
            return rc;
        if (c->json) {
            print_json(resp);
        } else {
            size_t i;
            json_t *p;
            json_array_foreach(json_object_get(resp, "providers"), i, p)
                print_provider(p);
            if (json_array_size(json_object_get(resp, "providers")) == 0)
                printf("No key providers (vmseal kms add NAME --server HOST:PORT)\n");
        }
        json_decref(resp);
        return EXIT_OK;
    }
    if (!strcmp(sub, "add") && nargs == 1) {
        if (ns == 0) {
            fprintf(stderr, "vmseal kms add: give at least one --server HOST:PORT (in failover order)\n");
            return EXIT_USAGE;
        }
        json_t *arr = json_array();
        for (size_t i = 0; i < ns; i++)
            json_array_append_new(arr, json_string(servers[i]));
        body = json_pack("{s:s,s:o,s:b}", "name", args[0], "servers", arr, "default", def);
        if (user)
            json_object_set_new(body, "username", json_string(user));
        rc = cli_call(c, "POST", "/api/v1/kms", body, &resp);
        if (rc == EXIT_OK && !c->json && !c->quiet)
            print_provider(resp);
    } else if (!strcmp(sub, "rm") && nargs == 1) {
        snprintf(path, sizeof(path), "/api/v1/kms/%s", esc);
        rc = cli_call(c, "DELETE", path, NULL, &resp);
        if (rc == EXIT_OK && !c->json && !c->quiet)
            printf("Key provider %s removed\n", args[0]);
    } else if (!strcmp(sub, "default") && nargs == 1) {
        body = json_pack("{s:b}", "default", 1);
        snprintf(path, sizeof(path), "/api/v1/kms/%s", esc);
        rc = cli_call(c, "PATCH", path, body, &resp);
        if (rc == EXIT_OK && !c->json && !c->quiet)
            printf("Key provider %s is the default\n", args[0]);
    } else if (!strcmp(sub, "servers") && nargs == 1 && ns > 0) {
        json_t *arr = json_array();
        for (size_t i = 0; i < ns; i++)
            json_array_append_new(arr, json_string(servers[i]));
        body = json_pack("{s:o}", "servers", arr);
        snprintf(path, sizeof(path), "/api/v1/kms/%s", esc);
        rc = cli_call(c, "PATCH", path, body, &resp);
        if (rc == EXIT_OK && !c->json && !c->quiet)
            print_provider(resp);
    } else if (!strcmp(sub, "credentials") && nargs == 1 && (clear != (user != NULL))) {
        /* The KMIP Username/Password the manager sends to this provider's
         * servers (the password from a file, a descriptor or a prompt). */
        if (clear) {
            body = json_pack("{s:s}", "username", "");
        } else {
            vmseal_secret *pw = NULL;
            if (read_password(pwfile, pwfd, "KMIP password: ", 0, &pw) < 0)
                return EXIT_USAGE;
            body = json_pack("{s:s,s:s%}", "username", user, "password",
                             (const char *)vmseal_secret_cdata(pw), vmseal_secret_len(pw));
            vmseal_secret_free(pw);
        }
        snprintf(path, sizeof(path), "/api/v1/kms/%s", esc);
        rc = cli_call(c, "PATCH", path, body, &resp);
        if (rc == EXIT_OK && !c->json && !c->quiet)
            printf(clear ? "Key provider %s: no KMIP credentials\n"
                         : "Key provider %s: KMIP credentials set\n", args[0]);
    } else if (!strcmp(sub, "status") && nargs == 1) {
        return kms_status(c, args[0]);
    } else if (!strcmp(sub, "show") && nargs == 1) {
        snprintf(path, sizeof(path), "/api/v1/kms/%s", esc);
        return show_object(c, path);
    } else if (!strcmp(sub, "trust") && nargs == 1) {
        return kms_trust(c, args[0], ca, yes);
    } else if (!strcmp(sub, "csr") && nargs == 1) {
        body = cn ? json_pack("{s:s}", "common_name", cn) : json_object();
        snprintf(path, sizeof(path), "/api/v1/kms/%s/csr", esc);
        rc = cli_call(c, "POST", path, body, &resp);
        if (rc == EXIT_OK) {
            const char *pem = jstr(resp, "csr_pem");
            if (out) {
                FILE *f = fopen(out, "we");
                if (!f || fputs(pem, f) < 0 || fclose(f) != 0) {
                    fprintf(stderr, "vmseal: cannot write %s\n", out);
                    rc = EXIT_FAIL;
                } else if (!c->quiet) {
                    printf("CSR written to %s: have the KMS sign it, then run: vmseal kms client-cert %s "
                           "--cert SIGNED.crt\n", out, args[0]);
                }
            } else {
                fputs(pem, stdout);
            }
        }
        json_decref(body);
        json_decref(resp);
        return rc;
    } else if (!strcmp(sub, "client-cert") && nargs == 1 && cert) {
        char *cp = read_text_file(cert), *kp = key ? read_text_file(key) : NULL;
        if (!cp || (key && !kp)) {
            free(cp);
            free(kp);
            return EXIT_USAGE;
        }
        body = json_pack("{s:s}", "cert_pem", cp);
        if (kp)
            json_object_set_new(body, "key_pem", json_string(kp));
        free(cp);
        if (kp) {
            OPENSSL_cleanse(kp, strlen(kp));
            free(kp);
        }
        snprintf(path, sizeof(path), "/api/v1/kms/%s/client-certificate", esc);
        rc = cli_call(c, "PUT", path, body, &resp);
        if (rc == EXIT_OK && !c->json && !c->quiet)
            print_provider(resp);
    } else {
        return EXIT_USAGE;
    }
    if (rc == EXIT_OK && c->json)
        print_json(resp);
    json_decref(body);
    json_decref(resp);
    return rc;
}
