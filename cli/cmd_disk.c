/* vmseal vm disk add NAME --from IMAGE | --size MB [--no-wait]
 * and the wait for a host's disk task (vm create --disk-from).
 *
 * A disk is added (or imported) by a task of the VM's host; the manager
 * answers with it and shows it in the VM's live view (GET /api/v1/vms/NAME:
 * runtime.task while it runs, runtime.last_task once it ended), which is
 * what is followed here. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static volatile sig_atomic_t disk_interrupted;

static void on_disk_int(int sig)
{
    (void)sig;
    disk_interrupted = 1;
}

int cli_wait_host_task(cli *c, const char *vm, const char *task_id, const char *label)
{
    char esc[200], path[300];
    cli_escape(vm, esc, sizeof(esc));
    snprintf(path, sizeof(path), "/api/v1/vms/%s", esc);
    signal(SIGINT, on_disk_int);
    disk_interrupted = 0;
    for (;;) {
        json_t *v = NULL;
        int rc = cli_call(c, "GET", path, NULL, &v);
        if (rc != EXIT_OK)
            return rc;
        json_t *rt = json_object_get(v, "runtime");
        json_t *t = json_object_get(rt, "task"), *last = json_object_get(rt, "last_task");
        if (!rt) {
            fprintf(stderr, "vmseal: cannot follow the host's task: %s\n", jstr(v, "runtime_error"));
            json_decref(v);
            return EXIT_FAIL;
        }
        if (json_is_object(t) && !strcmp(jstr(t, "id"), task_id)) {
            if (!c->json && !c->quiet)
                progress_show(label, (int)json_integer_value(json_object_get(t, "progress")));
        } else if (json_is_object(last) && !strcmp(jstr(last, "id"), task_id)) {
            if (!c->json && !c->quiet)
                progress_done();
            int ok = !strcmp(jstr(last, "state"), "success");
            if (c->json)
                print_json(last);
            if (!ok)
                fprintf(stderr, "vmseal: %s failed: %s\n(vmseal task wait does not follow host tasks; "
                        "the VM keeps the unfinished disk: it is resumed when the host restarts)\n",
                        label, jstr(last, "error"));
            json_decref(v);
            return ok ? EXIT_OK : EXIT_FAIL;
        } else {
            if (!c->json && !c->quiet)
                progress_done();
            fprintf(stderr, "vmseal: the host's task %s is gone (the host restarted?): see vmseal vm "
                    "show %s\n", task_id, vm);
            json_decref(v);
            return EXIT_FAIL;
        }
        json_decref(v);
        if (disk_interrupted) {
            if (!c->json && !c->quiet)
                progress_done();
            fprintf(stderr, "vmseal: stopped waiting; the host's task goes on\n");
            return EXIT_FAIL;
        }
        usleep(300000);
    }
}

int cmd_vm_disk(cli *c, int argc, char **argv)
{
    /* argv[0] = "disk", argv[1] = "add" */
    if (argc < 2 || strcmp(argv[1], "add") != 0)
        return EXIT_USAGE;
    static const struct option opts[] = {
        {"from", required_argument, NULL, 'f'},
        {"size", required_argument, NULL, 's'},
        {"no-wait", no_argument, NULL, 'n'},
        {0, 0, 0, 0},
    };
    const char *from = NULL;
    long size = 0;
    int nowait = 0, ch;
    char *end;
    optind = 2;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'f': from = optarg; break;
        case 's':
            size = strtol(optarg, &end, 10);
            if (*end || size < 1 || size > 16 * 1024 * 1024)
                return EXIT_USAGE;
            break;
        case 'n': nowait = 1; break;
        default: return EXIT_USAGE;
        }
    }
    if (argc - optind != 1 || !from == !size) {
        fprintf(stderr, "vmseal vm disk add NAME: give --from IMAGE (in the host's images folder) or "
                        "--size MB\n");
        cli_reported = 1;
        return EXIT_USAGE;
    }
    const char *name = argv[optind];
    char esc[200], path[300];
    cli_escape(name, esc, sizeof(esc));
    snprintf(path, sizeof(path), "/api/v1/vms/%s/disks", esc);
    json_t *body = from ? json_pack("{s:s}", "from", from) : json_pack("{s:I}", "size_mb", (json_int_t)size);
    json_t *resp = NULL;
    int rc = cli_call(c, "POST", path, body, &resp);
    json_decref(body);
    if (rc != EXIT_OK)
        return rc;
    char label[200];
    snprintf(label, sizeof(label), "VM %s: disk%lld %s", name,
             (long long)json_integer_value(json_object_get(resp, "disk")),
             from ? "importing" : "adding");
    if (nowait) {
        if (c->json)
            print_json(resp);
        else if (!c->quiet)
            printf("VM %s: disk%lld being %s (host task %s)\n", name,
                   (long long)json_integer_value(json_object_get(resp, "disk")),
                   from ? "imported" : "added", jstr(resp, "id"));
        json_decref(resp);
        return EXIT_OK;
    }
    char tid[64];
    snprintf(tid, sizeof(tid), "%s", jstr(resp, "id"));
    long long idx = (long long)json_integer_value(json_object_get(resp, "disk"));
    json_decref(resp);
    rc = cli_wait_host_task(c, name, tid, label);
    if (rc == EXIT_OK && !c->json && !c->quiet)
        printf("VM %s: disk%lld %s\n", name, idx, from ? "imported" : "added");
    return rc;
}
