/* vmseal CLI — login, logout, whoami, hosts, events, users, roles, tasks. */
#include <ctype.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define OPT_END {0, 0, 0, 0}

/* Put a password into a JSON object (wiped when jansson frees it). */
static int set_password(json_t *o, const char *key, const vmseal_secret *pw)
{
    json_t *s = json_stringn((const char *)vmseal_secret_cdata(pw), vmseal_secret_len(pw));
    if (!s) {
        fprintf(stderr, "vmseal: the password must be UTF-8 text\n");
        return -1;
    }
    json_object_set_new(o, key, s);
    return 0;
}

int cmd_login(cli *c, int argc, char **argv)
{
    const char *user = NULL, *pwfile = NULL;
    int pwfd = -1, ch;
    static const struct option opts[] = {
        {"user", required_argument, NULL, 'u'},
        {"password-file", required_argument, NULL, 'f'},
        {"password-fd", required_argument, NULL, 'd'},
        OPT_END,
    };
    optind = 1;
    while ((ch = getopt_long(argc, argv, "u:", opts, NULL)) != -1) {
        switch (ch) {
        case 'u': user = optarg; break;
        case 'f': pwfile = optarg; break;
        case 'd': pwfd = atoi(optarg); break;
        default: return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        if (user || optind + 1 < argc)
            return EXIT_USAGE;
        user = argv[optind];
    }
    if (!user)
        user = "administrator";
    const char *url = c->url ? c->url : c->session ? jstr(c->session, "url") : NULL;
    const char *ca = c->ca ? c->ca : c->session ? jstr(c->session, "ca") : NULL;
    if (!url || !*url || !ca || !*ca) {
        fprintf(stderr, "vmseal login: give the manager: --url https://HOST:PORT --ca CA.crt "
                        "(or $VMSEAL_URL, $VMSEAL_CA)\n");
        return EXIT_USAGE;
    }
    char prompt[160];
    snprintf(prompt, sizeof(prompt), "Password for %s: ", user);
    vmseal_secret *pw = NULL;
    if (read_password(pwfile, pwfd, prompt, 0, &pw) < 0)
        return EXIT_USAGE;
    json_t *body = json_pack("{s:s}", "user", user);
    int bad = set_password(body, "password", pw);
    vmseal_secret_free(pw);
    if (bad) {
        json_decref(body);
        return EXIT_USAGE;
    }
    /* log in against the given manager, not an old session's */
    json_t *old = c->session;
    c->session = NULL;
    const char *saved_url = c->url, *saved_ca = c->ca;
    char *url_copy = strdup(url), *ca_copy = strdup(ca);
    c->url = url_copy;
    c->ca = ca_copy;
    json_t *resp = NULL;
    int rc = cli_call(c, "POST", "/api/v1/session", body, &resp);
    json_decref(body);
    c->url = saved_url;
    c->ca = saved_ca;
    json_decref(old);
    if (rc == EXIT_OK) {
        if (cli_save_session(c, url_copy, ca_copy, jstr(resp, "token"), jstr(resp, "user"),
                             (long long)json_integer_value(json_object_get(resp, "expires"))) < 0)
            rc = EXIT_FAIL;
        else if (c->json) {
            json_t *o = json_pack("{s:s,s:s,s:s}", "user", jstr(resp, "user"), "role", jstr(resp, "role"),
                                  "url", url_copy);
            print_json(o);
            json_decref(o);
        }
        else if (!c->quiet)
            printf("Logged in to %s as %s (role %s)\n", url_copy, jstr(resp, "user"), jstr(resp, "role"));
    }
    json_decref(resp);
    free(url_copy);
    free(ca_copy);
    return rc;
}

int cmd_logout(cli *c, int argc, char **argv)
{
    json_t *resp = NULL;
    if (c->session)
        (void)cli_call(c, "DELETE", "/api/v1/session", NULL, &resp);
    json_decref(resp);
    return cli_forget_session(c) < 0 ? EXIT_FAIL : EXIT_OK;
}

int cmd_whoami(cli *c, int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--on"))
        return whoami_on(c, argv[2]);
    if (argc != 1)
        return EXIT_USAGE;
    json_t *resp = NULL;
    int rc = cli_call(c, "GET", "/api/v1/session", NULL, &resp);
    if (rc != EXIT_OK)
        return rc;
    if (c->json)
        print_json(resp);
    else
        printf("%s (role %s)\nprivileges: %s\n", jstr(resp, "user"), jstr(resp, "role"), jstr(resp, "privileges"));
    json_decref(resp);
    return EXIT_OK;
}

int cmd_host(cli *c, int argc, char **argv)
{
    if (argc < 2)
        return EXIT_USAGE;
    json_t *resp = NULL;
    int rc;
    if (!strcmp(argv[1], "ls") && argc == 2) {
        rc = cli_call(c, "GET", "/api/v1/hosts", NULL, &resp);
        if (rc != EXIT_OK)
            return rc;
        if (c->json) {
            print_json(resp);
        } else {
            static const char *const h[] = {"NAME", "URL", "DATASTORE", "VMS", "LAST SEEN", "CERTIFICATE SHA-256",
                                            "WAITING FOR APPROVAL"};
            table *t = table_new(7, h);
            size_t i;
            json_t *x;
            json_array_foreach(json_object_get(resp, "hosts"), i, x) {
                char vms[16], seen[40];
                snprintf(vms, sizeof(vms), "%lld", (long long)json_integer_value(json_object_get(x, "vms")));
                fmt_time(json_integer_value(json_object_get(x, "last_seen")), seen, sizeof(seen));
                const char *row[] = {jstr(x, "name"), jstr(x, "url"), jstr(x, "datastore"), vms, seen,
                                     *jstr(x, "fingerprint") ? jstr(x, "fingerprint") : "(revoked)",
                                     jstr(x, "pending_fingerprint")};
                table_add(t, row);
            }
            table_print(t, stdout);
            table_free(t);
        }
    } else if (!strcmp(argv[1], "approve-cert") && argc == 5 && !strcmp(argv[3], "--fingerprint")) {
        char path[256], esc[200];
        cli_escape(argv[2], esc, sizeof(esc));
        snprintf(path, sizeof(path), "/api/v1/hosts/%s/approve-cert", esc);
        json_t *body = json_pack("{s:s}", "fingerprint", argv[4]);
        rc = cli_call(c, "POST", path, body, &resp);
        json_decref(body);
        if (rc == EXIT_OK && !c->quiet)
            printf("Host %s now presents certificate %s; the old one is revoked\n", argv[2], argv[4]);
    } else if (!strcmp(argv[1], "revoke-cert") && argc == 3) {
        char path[256], esc[200];
        cli_escape(argv[2], esc, sizeof(esc));
        snprintf(path, sizeof(path), "/api/v1/hosts/%s/revoke-cert", esc);
        rc = cli_call(c, "POST", path, NULL, &resp);
        if (rc == EXIT_OK && !c->quiet)
            printf("The certificate of host %s is revoked: it gets no keys until a new one is approved\n", argv[2]);
    } else if (!strcmp(argv[1], "default-policy") && argc == 4) {
        char path[256], esc[200];
        cli_escape(argv[2], esc, sizeof(esc));
        snprintf(path, sizeof(path), "/api/v1/hosts/%s/default-policy", esc);
        json_t *body = json_pack("{s:s}", "policy", argv[3]);
        rc = cli_call(c, "PUT", path, body, &resp);
        json_decref(body);
        if (rc == EXIT_OK && !c->quiet)
            printf("New VMs on %s get the policy %s unless told otherwise\n", argv[2], argv[3]);
    } else if (!strcmp(argv[1], "encryption-mode") && argc == 4 &&
               (!strcmp(argv[2], "enable") || !strcmp(argv[2], "disable") ||
                !strcmp(argv[2], "show"))) {
        /* host encryption mode: its own core dumps sealed (docs/architecture.md) */
        char path[256], esc[200];
        cli_escape(argv[3], esc, sizeof(esc));
        snprintf(path, sizeof(path), "/api/v1/hosts/%s/encryption-mode", esc);
        if (!strcmp(argv[2], "show"))
            return show_object(c, path);
        json_t *body = json_pack("{s:b}", "enabled", !strcmp(argv[2], "enable"));
        rc = cli_call(c, "PUT", path, body, &resp);
        json_decref(body);
        if (rc == EXIT_OK && !c->quiet) {
            int on = json_is_true(json_object_get(resp, "enabled"));
            printf("Host encryption mode on %s is %s", argv[3], on ? "enabled" : "disabled");
            const char *why = json_string_value(json_object_get(resp, "error"));
            if (on && json_is_true(json_object_get(resp, "installed")))
                printf(": its core dumps are sealed to the host key\n");
            else if (on)
                printf(", but its core_pattern is NOT installed: %s\n", why ? why : "?");
            else
                printf("\n");
        }
    } else if (!strcmp(argv[1], "show") && argc == 3) {
        char path[256], esc[200];
        cli_escape(argv[2], esc, sizeof(esc));
        snprintf(path, sizeof(path), "/api/v1/hosts/%s", esc);
        return show_object(c, path);
    } else if (!strcmp(argv[1], "rm") && argc == 3) {
        char path[256], esc[200];
        cli_escape(argv[2], esc, sizeof(esc));
        snprintf(path, sizeof(path), "/api/v1/hosts/%s", esc);
        rc = cli_call(c, "DELETE", path, NULL, &resp);
        if (rc == EXIT_OK && !c->quiet)
            printf("Host %s removed\n", argv[2]);
    } else {
        return EXIT_USAGE;
    }
    json_decref(resp);
    return rc;
}

static volatile sig_atomic_t interrupted;
static void on_int(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void print_event(const json_t *e)
{
    char t[40];
    fmt_time(json_integer_value(json_object_get(e, "time")), t, sizeof(t));
    char *ov = json_dumps(json_object_get(e, "old"), JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    char *nv = json_dumps(json_object_get(e, "new"), JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    printf("%-6lld %s  %-14s %-15s %-18s %-20s", (long long)json_integer_value(json_object_get(e, "id")), t,
           jstr(e, "user"), jstr(e, "source"), jstr(e, "action"), jstr(e, "object"));
    if (strcmp(jstr(e, "result"), "ok") != 0)
        printf(" [%s]", jstr(e, "result"));
    if (ov && strcmp(ov, "null") != 0)
        printf(" old=%s", ov);
    if (nv && strcmp(nv, "null") != 0)
        printf(" new=%s", nv);
    putchar('\n');
    fflush(stdout);
    free(ov);
    free(nv);
}

/* unix seconds, or YYYY-MM-DD[THH:MM[:SS]] in UTC */
static int parse_when(const char *s, long long *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*s && !*end && v >= 0) {
        *out = v;
        return 0;
    }
    struct tm tm = {0};
    const char *r = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!r || *r) {
        memset(&tm, 0, sizeof(tm));
        r = strptime(s, "%Y-%m-%dT%H:%M", &tm);
    }
    if (!r || *r) {
        memset(&tm, 0, sizeof(tm));
        r = strptime(s, "%Y-%m-%d", &tm);
    }
    if (!r || *r)
        return -1;
    *out = (long long)timegm(&tm);
    return 0;
}

static void add_query(char *q, size_t len, const char *key, const char *value)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = strlen(q);
    o += (size_t)snprintf(q + o, len - o, "&%s=", key);
    for (const unsigned char *p = (const unsigned char *)value; *p && o + 4 < len; p++) {
        if (isalnum(*p) || *p == '.' || *p == '-' || *p == '_' || *p == ':') {
            q[o++] = (char)*p;
        } else {
            q[o++] = '%';
            q[o++] = hex[*p >> 4];
            q[o++] = hex[*p & 15];
        }
    }
    q[o] = '\0';
}

int cmd_events(cli *c, int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "verify"))
        return events_verify(c);
    long long since = -20, t;
    int follow = 0, limit = 1000, ch, since_set = 0;
    char filter[768] = "";
    static const struct option opts[] = {
        {"since", required_argument, NULL, 's'},
        {"follow", no_argument, NULL, 'f'},
        {"limit", required_argument, NULL, 'n'},
        {"user", required_argument, NULL, 'u'},
        {"object", required_argument, NULL, 'o'},
        {"action", required_argument, NULL, 'a'},
        {"result", required_argument, NULL, 'r'},
        {"from", required_argument, NULL, 'F'},
        {"to", required_argument, NULL, 'T'},
        OPT_END,
    };
    optind = 1;
    while ((ch = getopt_long(argc, argv, "fs:n:", opts, NULL)) != -1) {
        switch (ch) {
        case 's': since = atoll(optarg); since_set = 1; break;
        case 'f': follow = 1; break;
        case 'n': limit = atoi(optarg); break;
        case 'u': add_query(filter, sizeof(filter), "user", optarg); break;
        case 'o': add_query(filter, sizeof(filter), "object", optarg); break;
        case 'a': add_query(filter, sizeof(filter), "action", optarg); break;
        case 'r': add_query(filter, sizeof(filter), "result", optarg); break;
        case 'F':
        case 'T': {
            if (parse_when(optarg, &t) < 0) {
                fprintf(stderr, "vmseal events: %s: give unix seconds or YYYY-MM-DDTHH:MM:SS (UTC)\n", optarg);
                cli_reported = 1;
                return EXIT_USAGE;
            }
            char n[32];
            snprintf(n, sizeof(n), "%lld", t);
            add_query(filter, sizeof(filter), ch == 'F' ? "from" : "to", n);
            break;
        }
        default: return EXIT_USAGE;
        }
    }
    if (optind != argc || limit < 1 || limit > 1000)
        return EXIT_USAGE;
    if (!since_set && !follow)
        since = 0;
    if (!since_set && follow)
        since = -10;
    signal(SIGINT, on_int);
    int first = 1;
    for (;;) {
        char path[1024];
        snprintf(path, sizeof(path), "/api/v1/events?since=%lld&limit=%d%s%s", since, limit,
                 follow && !first ? "&wait=25" : "", filter);
        json_t *resp = NULL;
        int rc = cli_call_timeout(c, "GET", path, NULL, &resp, 40000);
        if (rc != EXIT_OK)
            return interrupted ? EXIT_OK : rc;
        json_t *evs = json_object_get(resp, "events");
        if (c->json && !follow) {
            print_json(evs);
        } else {
            size_t i;
            json_t *e;
            json_array_foreach(evs, i, e) {
                if (c->json) {
                    char *s = json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS);
                    puts(s ? s : "{}");
                    fflush(stdout);
                    free(s);
                } else {
                    print_event(e);
                }
            }
        }
        since = json_integer_value(json_object_get(resp, "last"));
        json_decref(resp);
        first = 0;
        if (!follow || interrupted)
            break;
    }
    return EXIT_OK;
}

int cmd_user(cli *c, int argc, char **argv)
{
    if (argc < 2)
        return EXIT_USAGE;
    const char *sub = argv[1];
    const char *role = NULL, *pwfile = NULL, *oldfile = NULL;
    int pwfd = -1, ch;
    static const struct option opts[] = {
        {"role", required_argument, NULL, 'r'},
        {"password-file", required_argument, NULL, 'f'},
        {"password-fd", required_argument, NULL, 'd'},
        {"old-password-file", required_argument, NULL, 'o'},
        OPT_END,
    };
    optind = 2;
    while ((ch = getopt_long(argc, argv, "r:", opts, NULL)) != -1) {
        switch (ch) {
        case 'r': role = optarg; break;
        case 'f': pwfile = optarg; break;
        case 'd': pwfd = atoi(optarg); break;
        case 'o': oldfile = optarg; break;
        default: return EXIT_USAGE;
        }
    }
    int nargs = argc - optind;
    char **args = argv + optind;
    json_t *resp = NULL, *body = NULL;
    int rc;
    char path[256], esc[200];
    if (!strcmp(sub, "ls") && nargs == 0) {
        rc = cli_call(c, "GET", "/api/v1/users", NULL, &resp);
        if (rc != EXIT_OK)
            return rc;
        if (c->json) {
            print_json(resp);
        } else {
            static const char *const h[] = {"NAME", "ROLE", "CREATED", "PASSWORD CHANGED"};
            table *t = table_new(4, h);
            size_t i;
            json_t *u;
            json_array_foreach(json_object_get(resp, "users"), i, u) {
                char c1[40], c2[40];
                const char *row[] = {jstr(u, "name"), jstr(u, "role"),
                                     fmt_time(json_integer_value(json_object_get(u, "created")), c1, sizeof(c1)),
                                     fmt_time(json_integer_value(json_object_get(u, "password_changed")), c2, sizeof(c2))};
                table_add(t, row);
            }
            table_print(t, stdout);
            table_free(t);
        }
        json_decref(resp);
        return EXIT_OK;
    }
    if (!strcmp(sub, "add") && nargs == 1) {
        if (!role) {
            fprintf(stderr, "vmseal user add: --role ROLE is required (see `vmseal role ls`)\n");
            return EXIT_USAGE;
        }
        char prompt[160];
        snprintf(prompt, sizeof(prompt), "Password for new user %s: ", args[0]);
        vmseal_secret *pw = NULL;
        if (read_password(pwfile, pwfd, prompt, 1, &pw) < 0)
            return EXIT_USAGE;
        body = json_pack("{s:s,s:s}", "name", args[0], "role", role);
        int bad = set_password(body, "password", pw);
        vmseal_secret_free(pw);
        if (bad) {
            json_decref(body);
            return EXIT_USAGE;
        }
        rc = cli_call(c, "POST", "/api/v1/users", body, &resp);
        if (rc == EXIT_OK && !c->quiet)
            printf("User %s added with role %s\n", args[0], role);
    } else if (!strcmp(sub, "passwd") && nargs <= 1) {
        const char *name = nargs ? args[0] : c->session ? jstr(c->session, "user") : "";
        char prompt[160];
        snprintf(prompt, sizeof(prompt), "New password for %s: ", name);
        vmseal_secret *pw = NULL, *old = NULL;
        int self = c->session && !strcmp(name, jstr(c->session, "user"));
        if ((oldfile || self) && read_password(oldfile, -1, "Current password: ", 0, &old) < 0)
            return EXIT_USAGE;
        if (read_password(pwfile, pwfd, prompt, 1, &pw) < 0) {
            vmseal_secret_free(old);
            return EXIT_USAGE;
        }
        body = json_object();
        int bad = set_password(body, "password", pw) || (old && set_password(body, "old_password", old));
        vmseal_secret_free(pw);
        vmseal_secret_free(old);
        if (bad) {
            json_decref(body);
            return EXIT_USAGE;
        }
        cli_escape(name, esc, sizeof(esc));
        snprintf(path, sizeof(path), "/api/v1/users/%s/password", esc);
        rc = cli_call(c, "PUT", path, body, &resp);
        if (rc == EXIT_OK && !c->quiet)
            printf("Password of %s changed\n", name);
    } else if (!strcmp(sub, "rm") && nargs == 1) {
        cli_escape(args[0], esc, sizeof(esc));
        snprintf(path, sizeof(path), "/api/v1/users/%s", esc);
        rc = cli_call(c, "DELETE", path, NULL, &resp);
        if (rc == EXIT_OK && !c->quiet)
            printf("User %s removed\n", args[0]);
    } else if (!strcmp(sub, "show") && nargs == 1) {
        cli_escape(args[0], esc, sizeof(esc));
        snprintf(path, sizeof(path), "/api/v1/users/%s", esc);
        return show_object(c, path);
    } else if (!strcmp(sub, "role") && nargs == 2) {
        body = json_pack("{s:s}", "role", args[1]);
        cli_escape(args[0], esc, sizeof(esc));
        snprintf(path, sizeof(path), "/api/v1/users/%s", esc);
        rc = cli_call(c, "PATCH", path, body, &resp);
        if (rc == EXIT_OK && !c->quiet)
            printf("User %s now has role %s\n", args[0], args[1]);
    } else {
        return EXIT_USAGE;
    }
    if (rc == EXIT_OK && c->json)
        print_json(resp);
    json_decref(body);
    json_decref(resp);
    return rc;
}

int cmd_role(cli *c, int argc, char **argv)
{
    json_t *resp = NULL;
    int rc;
    if (argc >= 3 && !strcmp(argv[1], "add")) {
        json_t *privs = json_array();
        for (int i = 3; i < argc; i++)
            json_array_append_new(privs, json_string(argv[i]));
        json_t *body = json_pack("{s:s,s:o}", "name", argv[2], "privileges", privs);
        rc = cli_call(c, "POST", "/api/v1/roles", body, &resp);
        json_decref(body);
        if (rc == EXIT_OK && !c->quiet)
            printf("Role %s added\n", argv[2]);
        json_decref(resp);
        return rc;
    }
    if (argc >= 3 && !strcmp(argv[1], "set"))
        return role_set(c, argc, argv);
    if (argc == 3 && !strcmp(argv[1], "rm")) {
        char path[256], esc[200];
        cli_escape(argv[2], esc, sizeof(esc));
        snprintf(path, sizeof(path), "/api/v1/roles/%s", esc);
        rc = cli_call(c, "DELETE", path, NULL, &resp);
        if (rc == EXIT_OK && !c->quiet)
            printf("Role %s removed\n", argv[2]);
        json_decref(resp);
        return rc;
    }
    if (argc != 2 || strcmp(argv[1], "ls") != 0)
        return EXIT_USAGE;
    rc = cli_call(c, "GET", "/api/v1/roles", NULL, &resp);
    if (rc != EXIT_OK)
        return rc;
    if (c->json) {
        print_json(resp);
    } else {
        size_t i;
        json_t *r;
        json_array_foreach(json_object_get(resp, "roles"), i, r) {
            printf("%s%s\n", jstr(r, "name"), json_is_true(json_object_get(r, "builtin")) ? " (built-in)" : "");
            size_t k;
            json_t *p;
            json_array_foreach(json_object_get(r, "privileges"), k, p)
                printf("    %s\n", json_string_value(p));
        }
    }
    json_decref(resp);
    return EXIT_OK;
}

/* A task that has not ended yet (it may still change the VM). */
static int task_going(const char *state)
{
    return !strcmp(state, "pending") || !strcmp(state, "running") || !strcmp(state, "migrating") ||
           !strcmp(state, "cancelling") ||
           !strcmp(state, "rolling-back");
}

/* Wait until the task ends (or is blocked): EXIT_OK when it succeeded, or,
 * waiting for a cancel (cancel = 1), when it was cancelled. */
static int wait_task_for(cli *c, long long id, const char *label, int cancel)
{
    signal(SIGINT, on_int);
    interrupted = 0;
    int rc = EXIT_OK;
    for (;;) {
        char path[64];
        snprintf(path, sizeof(path), "/api/v1/tasks/%lld", id);
        json_t *t = NULL;
        rc = cli_call(c, "GET", path, NULL, &t);
        if (rc != EXIT_OK)
            break;
        const char *state = jstr(t, "state");
        int pct = (int)json_integer_value(json_object_get(t, "progress"));
        char shown[160];
        int back = !strcmp(state, "cancelling") || !strcmp(state, "rolling-back");
        snprintf(shown, sizeof(shown), "%s%s", label, back ? " (rolling back)" : "");
        if (!c->json)
            progress_show(shown, pct);
        if (!task_going(state)) {
            if (!c->json)
                progress_done();
            if (c->json)
                print_json(t);
            const char *err = jstr(t, "error");
            if (!strcmp(state, "success")) {
                rc = EXIT_OK;
                if (cancel)
                    fprintf(stderr, "vmseal: task %lld had finished before it could be cancelled\n", id);
            } else if (!strcmp(state, "cancelled")) {
                rc = cancel ? EXIT_OK : EXIT_FAIL;
                if (!cancel)
                    fprintf(stderr, "vmseal: task %lld was cancelled; the VM is as it was before\n", id);
            } else if (!strcmp(state, "rolled-back")) {
                fprintf(stderr, "vmseal: task %lld failed and was rolled back (the VM is as it was "
                        "before): %s\n(vmseal task resume %lld runs it again)\n", id, err, id);
                rc = EXIT_FAIL;
            } else if (!strcmp(state, "blocked")) {
                fprintf(stderr, "vmseal: task %lld is blocked: %s\n(vmseal task resume %lld goes on, "
                        "vmseal task cancel %lld tries the rollback again)\n", id, err, id, id);
                rc = EXIT_FAIL;
            } else {
                fprintf(stderr, "vmseal: task %lld failed: %s\n", id, err);
                rc = EXIT_FAIL;
            }
            json_decref(t);
            break;
        }
        json_decref(t);
        if (interrupted) {
            if (!c->json)
                progress_done();
            fprintf(stderr, "vmseal: stopped waiting; task %lld goes on (vmseal task wait %lld)\n", id, id);
            return EXIT_FAIL;
        }
        usleep(300000);
    }
    return rc;
}

int wait_task(cli *c, long long id, const char *label)
{
    return wait_task_for(c, id, label, 0);
}

int cmd_task(cli *c, int argc, char **argv)
{
    json_t *resp = NULL;
    int rc;
    if (argc == 2 && !strcmp(argv[1], "ls")) {
        rc = cli_call(c, "GET", "/api/v1/tasks", NULL, &resp);
        if (rc != EXIT_OK)
            return rc;
        if (c->json) {
            print_json(resp);
        } else {
            static const char *const h[] = {"ID", "VM", "ACTION", "STATE", "PROGRESS", "USER", "ERROR"};
            table *t = table_new(7, h);
            size_t i;
            json_t *x;
            json_array_foreach(json_object_get(resp, "tasks"), i, x) {
                char id[24], pct[16];
                snprintf(id, sizeof(id), "%lld", (long long)json_integer_value(json_object_get(x, "id")));
                snprintf(pct, sizeof(pct), "%lld%%", (long long)json_integer_value(json_object_get(x, "progress")));
                const char *row[] = {id, jstr(x, "vm"), jstr(x, "action"), jstr(x, "state"), pct,
                                     jstr(x, "user"), jstr(x, "error")};
                table_add(t, row);
            }
            table_print(t, stdout);
            table_free(t);
        }
        json_decref(resp);
        return EXIT_OK;
    }
    if ((argc == 3 || (argc == 4 && !strcmp(argv[3], "--no-wait"))) &&
        (!strcmp(argv[1], "cancel") || !strcmp(argv[1], "resume"))) {
        /* cancel: go back (stop the host's task, roll back what it did);
         * resume: go on (try again now, or run an ended task again) */
        char *end;
        long long id = strtoll(argv[2], &end, 10);
        if (*end || id <= 0)
            return EXIT_USAGE;
        int cancel = !strcmp(argv[1], "cancel");
        char path[80], label[64];
        snprintf(path, sizeof(path), "/api/v1/tasks/%lld/%s", id, argv[1]);
        json_t *body = json_object();
        rc = cli_call(c, "POST", path, body, &resp);
        json_decref(body);
        if (rc != EXIT_OK)
            return rc;
        json_decref(resp);
        if (argc == 4) {
            if (!c->quiet && !c->json)
                printf("task %lld: %s (vmseal task wait %lld)\n", id, cancel ? "cancelling" : "resumed", id);
            return EXIT_OK;
        }
        snprintf(label, sizeof(label), "task %lld%s", id, cancel ? " cancel" : "");
        return wait_task_for(c, id, label, cancel);
    }
    if (argc == 3 && (!strcmp(argv[1], "info") || !strcmp(argv[1], "wait"))) {
        char *end;
        long long id = strtoll(argv[2], &end, 10);
        if (*end || id <= 0)
            return EXIT_USAGE;
        if (!strcmp(argv[1], "wait")) {
            char label[64];
            snprintf(label, sizeof(label), "task %lld", id);
            return wait_task(c, id, label);
        }
        char path[64];
        snprintf(path, sizeof(path), "/api/v1/tasks/%lld", id);
        rc = cli_call(c, "GET", path, NULL, &resp);
        if (rc == EXIT_OK)
            print_json(resp);
        json_decref(resp);
        return rc;
    }
    return EXIT_USAGE;
}
