/* vmseal CLI — access control and audit:
 *   permission ls [OBJECT] | add OBJECT (--user U | --group G) --role R [--no-propagate]
 *              | rm OBJECT (--user U | --group G)
 *   group ls | add NAME | rm NAME | add-user GROUP USER | rm-user GROUP USER
 *   role set NAME PRIVILEGE...
 *   events verify
 *   keys ls [--vm NAME]
 *   diagnostics
 * OBJECT is root, host:NAME, folder:NAME or vm:NAME. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void query_escape(const char *in, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *in && o + 4 < outlen; in++) {
        unsigned char ch = (unsigned char)*in;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
            ch == '.' || ch == '_' || ch == ':') {
            out[o++] = (char)ch;
        } else {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = '\0';
}

/* Print resp as JSON (--json) or run the printer; frees resp. */
static int done(cli *c, int rc, json_t *resp, const char *text)
{
    if (rc == EXIT_OK && c->json && resp)
        print_json(resp);
    else if (rc == EXIT_OK && !c->quiet && text)
        printf("%s\n", text);
    json_decref(resp);
    return rc;
}

int cmd_permission(cli *c, int argc, char **argv)
{
    if (argc < 2)
        return EXIT_USAGE;
    const char *sub = argv[1], *user = NULL, *group = NULL, *role = NULL;
    int propagate = 1, ch;
    static const struct option opts[] = {
        {"user", required_argument, NULL, 'u'},
        {"group", required_argument, NULL, 'g'},
        {"role", required_argument, NULL, 'r'},
        {"no-propagate", no_argument, NULL, 'n'},
        {0, 0, 0, 0},
    };
    optind = 2;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'u': user = optarg; break;
        case 'g': group = optarg; break;
        case 'r': role = optarg; break;
        case 'n': propagate = 0; break;
        default: return EXIT_USAGE;
        }
    }
    int nargs = argc - optind;
    const char *object = nargs ? argv[optind] : NULL;
    json_t *resp = NULL;
    char path[512], eo[200], ep[200];
    if (!strcmp(sub, "ls") && nargs <= 1) {
        if (object) {
            query_escape(object, eo, sizeof(eo));
            snprintf(path, sizeof(path), "/api/v1/permissions?object=%s", eo);
        } else {
            snprintf(path, sizeof(path), "/api/v1/permissions");
        }
        int rc = cli_call(c, "GET", path, NULL, &resp);
        if (rc != EXIT_OK || c->json)
            return done(c, rc, resp, NULL);
        static const char *const h[] = {"OBJECT", "USER/GROUP", "ROLE", "PROPAGATE"};
        table *t = table_new(4, h);
        size_t i;
        json_t *p;
        json_array_foreach(json_object_get(resp, "permissions"), i, p) {
            char who[100];
            if (json_object_get(p, "group"))
                snprintf(who, sizeof(who), "group %s", jstr(p, "group"));
            else
                snprintf(who, sizeof(who), "%s%s", jstr(p, "user"),
                         json_is_true(json_object_get(p, "user_role")) ? " (user role)" : "");
            const char *row[] = {jstr(p, "object"), who, jstr(p, "role"),
                                 json_is_true(json_object_get(p, "propagate")) ? "yes" : "no"};
            table_add(t, row);
        }
        table_print(t, stdout);
        table_free(t);
        json_decref(resp);
        return EXIT_OK;
    }
    if (nargs != 1 || (user != NULL) == (group != NULL)) {
        fprintf(stderr, "vmseal permission %s: give OBJECT and one of --user USER or --group GROUP\n", sub);
        cli_reported = 1;
        return EXIT_USAGE;
    }
    char text[300];
    if (!strcmp(sub, "add")) {
        if (!role) {
            fprintf(stderr, "vmseal permission add: --role ROLE is required\n");
            cli_reported = 1;
            return EXIT_USAGE;
        }
        json_t *body = json_pack("{s:s,s:s,s:s,s:b}", "object", object, user ? "user" : "group",
                                 user ? user : group, "role", role, "propagate", propagate);
        int rc = cli_call(c, "POST", "/api/v1/permissions", body, &resp);
        json_decref(body);
        snprintf(text, sizeof(text), "%s %s has role %s on %s%s", user ? "User" : "Group", user ? user : group,
                 role, object, propagate ? " (and below)" : "");
        return done(c, rc, resp, text);
    }
    if (!strcmp(sub, "rm")) {
        query_escape(object, eo, sizeof(eo));
        query_escape(user ? user : group, ep, sizeof(ep));
        snprintf(path, sizeof(path), "/api/v1/permissions?object=%s&%s=%s", eo, user ? "user" : "group", ep);
        int rc = cli_call(c, "DELETE", path, NULL, &resp);
        snprintf(text, sizeof(text), "Permission of %s on %s removed", user ? user : group, object);
        return done(c, rc, resp, text);
    }
    return EXIT_USAGE;
}

int cmd_group(cli *c, int argc, char **argv)
{
    json_t *resp = NULL;
    char path[512], e1[200], e2[200], text[300];
    int rc;
    if (argc == 2 && !strcmp(argv[1], "ls")) {
        rc = cli_call(c, "GET", "/api/v1/groups", NULL, &resp);
        if (rc != EXIT_OK || c->json)
            return done(c, rc, resp, NULL);
        size_t i;
        json_t *g;
        json_array_foreach(json_object_get(resp, "groups"), i, g) {
            printf("%s:", jstr(g, "name"));
            size_t k;
            json_t *u;
            json_array_foreach(json_object_get(g, "members"), k, u)
                printf(" %s", json_string_value(u));
            putchar('\n');
        }
        json_decref(resp);
        return EXIT_OK;
    }
    if (argc == 3 && !strcmp(argv[1], "add")) {
        json_t *body = json_pack("{s:s}", "name", argv[2]);
        rc = cli_call(c, "POST", "/api/v1/groups", body, &resp);
        json_decref(body);
        snprintf(text, sizeof(text), "Group %s added", argv[2]);
        return done(c, rc, resp, text);
    }
    if (argc == 3 && !strcmp(argv[1], "rm")) {
        cli_escape(argv[2], e1, sizeof(e1));
        snprintf(path, sizeof(path), "/api/v1/groups/%s", e1);
        rc = cli_call(c, "DELETE", path, NULL, &resp);
        snprintf(text, sizeof(text), "Group %s removed", argv[2]);
        return done(c, rc, resp, text);
    }
    if (argc == 4 && (!strcmp(argv[1], "add-user") || !strcmp(argv[1], "rm-user"))) {
        int add = !strcmp(argv[1], "add-user");
        cli_escape(argv[2], e1, sizeof(e1));
        cli_escape(argv[3], e2, sizeof(e2));
        snprintf(path, sizeof(path), "/api/v1/groups/%s/members/%s", e1, e2);
        rc = cli_call(c, add ? "PUT" : "DELETE", path, NULL, &resp);
        snprintf(text, sizeof(text), "User %s %s group %s", argv[3], add ? "is in" : "left", argv[2]);
        return done(c, rc, resp, text);
    }
    return EXIT_USAGE;
}

/* whoami --on OBJECT: the privileges and operations one has there. */
int whoami_on(cli *c, const char *object)
{
    char path[512], eo[200];
    query_escape(object, eo, sizeof(eo));
    snprintf(path, sizeof(path), "/api/v1/session/privileges?object=%s", eo);
    json_t *resp = NULL;
    int rc = cli_call(c, "GET", path, NULL, &resp);
    if (rc != EXIT_OK || c->json)
        return done(c, rc, resp, NULL);
    printf("%s on %s:\nprivileges:", jstr(resp, "user"), jstr(resp, "object"));
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(resp, "privileges"), i, p)
        printf(" %s", json_string_value(p));
    printf("%s\noperations:", json_array_size(json_object_get(resp, "privileges")) ? "" : " (none)");
    json_array_foreach(json_object_get(resp, "operations"), i, p)
        printf(" %s", json_string_value(p));
    printf("%s\n", json_array_size(json_object_get(resp, "operations")) ? "" : " (none)");
    json_decref(resp);
    return EXIT_OK;
}

int role_set(cli *c, int argc, char **argv)
{
    json_t *privs = json_array(), *resp = NULL;
    for (int i = 3; i < argc; i++)
        json_array_append_new(privs, json_string(argv[i]));
    json_t *body = json_pack("{s:o}", "privileges", privs);
    char path[256], esc[200], text[200];
    cli_escape(argv[2], esc, sizeof(esc));
    snprintf(path, sizeof(path), "/api/v1/roles/%s", esc);
    int rc = cli_call(c, "PATCH", path, body, &resp);
    json_decref(body);
    snprintf(text, sizeof(text), "Role %s changed", argv[2]);
    return done(c, rc, resp, text);
}

int events_verify(cli *c)
{
    json_t *resp = NULL;
    int rc = cli_call_timeout(c, "GET", "/api/v1/events/verify", NULL, &resp, 120000);
    if (rc != EXIT_OK)
        return rc;
    int ok = json_is_true(json_object_get(resp, "ok"));
    if (c->json)
        print_json(resp);
    else if (ok)
        printf("event log: %lld records, chain intact\n",
               (long long)json_integer_value(json_object_get(resp, "records")));
    else
        printf("event log: record %lld is bad: %s\n",
               (long long)json_integer_value(json_object_get(resp, "first_bad")), jstr(resp, "reason"));
    json_decref(resp);
    return ok ? EXIT_OK : EXIT_FAIL;
}

static int keys_info_cmd(cli *c, const char *kek, const char *kms)
{
    char path[512], e1[200], e2[200];
    cli_escape(kek, e1, sizeof(e1));
    if (kms) {
        query_escape(kms, e2, sizeof(e2));
        snprintf(path, sizeof(path), "/api/v1/keys/%s?kms=%s", e1, e2);
    } else {
        snprintf(path, sizeof(path), "/api/v1/keys/%s", e1);
    }
    json_t *resp = NULL;
    int rc = cli_call(c, "GET", path, NULL, &resp);
    if (rc != EXIT_OK || c->json)
        return done(c, rc, resp, NULL);
    char when[40];
    printf("KEK %s (key provider %s): %s, created %s\n", jstr(resp, "kek_id"), jstr(resp, "kms"),
           jstr(resp, "state"), fmt_time(json_integer_value(json_object_get(resp, "created")), when, sizeof(when)));
    printf("  made for VM %s (%s)%s%s\n", *jstr(resp, "vm") ? jstr(resp, "vm") : "(gone)", jstr(resp, "vm_uuid"),
           *jstr(resp, "host") ? " on host " : "", jstr(resp, "host"));
    size_t i;
    json_t *u;
    json_array_foreach(json_object_get(resp, "used_by"), i, u)
        printf("  in use by VM %s on host %s\n", jstr(u, "vm"), jstr(u, "host"));
    json_array_foreach(json_object_get(resp, "running_tasks"), i, u)
        printf("  needed by running task %s (%s)\n", jstr(u, "id"), jstr(u, "action"));
    if (json_object_get(resp, "destroy_after"))
        printf("  to be revoked and destroyed after %s, unless a VM or host needs it\n",
               fmt_time(json_integer_value(json_object_get(resp, "destroy_after")), when, sizeof(when)));
    json_decref(resp);
    return EXIT_OK;
}

static int keys_orphans_cmd(cli *c, const char *kms)
{
    char path[300], e[200];
    cli_escape(kms, e, sizeof(e));
    snprintf(path, sizeof(path), "/api/v1/kms/%s/orphans", e);
    json_t *resp = NULL;
    int rc = cli_call(c, "GET", path, NULL, &resp);
    if (rc != EXIT_OK || c->json)
        return done(c, rc, resp, NULL);
    static const char *const h[] = {"KEK ID", "SERVER", "STATE", "TAGGED FOR VM"};
    table *t = table_new(4, h);
    size_t i;
    json_t *k;
    json_array_foreach(json_object_get(resp, "orphans"), i, k) {
        const char *row[] = {jstr(k, "kek_id"), jstr(k, "server"), jstr(k, "state"), jstr(k, "vm_uuid")};
        table_add(t, row);
    }
    if (json_array_size(json_object_get(resp, "orphans")))
        table_print(t, stdout);
    else if (!c->quiet)
        printf("No orphan keys of this manager on key provider %s\n", kms);
    table_free(t);
    json_decref(resp);
    return EXIT_OK;
}

static int keys_cleanup_cmd(cli *c)
{
    json_t *resp = NULL, *body = json_object();
    int rc = cli_call(c, "POST", "/api/v1/keys/cleanup", body, &resp);
    json_decref(body);
    if (rc != EXIT_OK || c->json)
        return done(c, rc, resp, NULL);
    size_t i;
    json_t *k;
    json_array_foreach(json_object_get(resp, "destroyed"), i, k)
        printf("KEK %s (key provider %s): revoked and destroyed\n", jstr(k, "kek_id"), jstr(k, "kms"));
    json_array_foreach(json_object_get(resp, "orphans_revoked"), i, k)
        printf("orphan key %s (key provider %s): revoked\n", jstr(k, "kek_id"), jstr(k, "kms"));
    json_array_foreach(json_object_get(resp, "kept"), i, k)
        printf("KEK %s (key provider %s): kept: %s%s\n", jstr(k, "kek_id"), jstr(k, "kms"),
               *jstr(k, "needed_by") ? "host " : "", *jstr(k, "needed_by") ? jstr(k, "needed_by") : jstr(k, "error"));
    json_decref(resp);
    return EXIT_OK;
}

/* keys ls [--vm NAME] | keys ls --orphans KMS | keys info ID [--kms NAME] |
 * keys cleanup (also as "kms key ...") */
int cmd_keys(cli *c, int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "info"))
        return keys_info_cmd(c, argv[2], NULL);
    if (argc == 5 && !strcmp(argv[1], "info") && !strcmp(argv[3], "--kms"))
        return keys_info_cmd(c, argv[2], argv[4]);
    if (argc == 4 && !strcmp(argv[1], "ls") && !strcmp(argv[2], "--orphans"))
        return keys_orphans_cmd(c, argv[3]);
    if (argc == 2 && !strcmp(argv[1], "cleanup"))
        return keys_cleanup_cmd(c);
    const char *vm = NULL;
    if (argc == 4 && !strcmp(argv[1], "ls") && !strcmp(argv[2], "--vm"))
        vm = argv[3];
    else if (argc != 2 || strcmp(argv[1], "ls") != 0)
        return EXIT_USAGE;
    char path[256], ev[200];
    if (vm) {
        query_escape(vm, ev, sizeof(ev));
        snprintf(path, sizeof(path), "/api/v1/keys?vm=%s", ev);
    } else {
        snprintf(path, sizeof(path), "/api/v1/keys");
    }
    json_t *resp = NULL;
    int rc = cli_call(c, "GET", path, NULL, &resp);
    if (rc != EXIT_OK || c->json)
        return done(c, rc, resp, NULL);
    static const char *const h[] = {"KEK ID", "KEY PROVIDER", "VM", "STATE", "CREATED"};
    table *t = table_new(5, h);
    size_t i;
    json_t *k;
    json_array_foreach(json_object_get(resp, "keys"), i, k) {
        char when[40];
        const char *row[] = {jstr(k, "kek_id"), jstr(k, "kms"), *jstr(k, "vm") ? jstr(k, "vm") : jstr(k, "vm_uuid"),
                             jstr(k, "state"), fmt_time(json_integer_value(json_object_get(k, "created")), when, sizeof(when))};
        table_add(t, row);
    }
    table_print(t, stdout);
    table_free(t);
    json_decref(resp);
    return EXIT_OK;
}

int cmd_diagnostics(cli *c, int argc, char **argv)
{
    if (argc != 1)
        return EXIT_USAGE;
    json_t *resp = NULL;
    int rc = cli_call(c, "GET", "/api/v1/diagnostics", NULL, &resp);
    if (rc == EXIT_OK)
        print_json(resp);
    json_decref(resp);
    return rc;
}
