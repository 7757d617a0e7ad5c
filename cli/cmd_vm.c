/* vmseal CLI — VMs: vm create|ls|info|set|start|stop|rm|encrypt|decrypt|rekey
 *   set = reconfigure a powered-off VM (PowerCLI Set-VM)
 *   encrypt/decrypt = apply the "encrypted"/"none" policy
 *                     (PowerCLI Enable-/Disable-VMEncryption)
 *   rekey [--deep]  = Set-VMEncryptionKey [-Deep] */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static void vm_path(char *out, size_t len, const char *name, const char *suffix)
{
    char esc[200];
    cli_escape(name, esc, sizeof(esc));
    snprintf(out, len, "/api/v1/vms/%s%s", esc, suffix);
}

static int follow_task(cli *c, json_t *resp, const char *label, int nowait)
{
    json_t *t = json_object_get(resp, "task");
    long long id = json_integer_value(json_object_get(t, "id"));
    if (!id) {
        /* nothing to do (policy already applied) */
        if (c->json)
            print_json(resp);
        else if (!c->quiet)
            printf("%s: nothing to do\n", label);
        return EXIT_OK;
    }
    if (nowait) {
        if (c->json)
            print_json(t);
        else
            printf("task %lld started (vmseal task wait %lld)\n", id, id);
        return EXIT_OK;
    }
    return wait_task(c, id, label);
}

static void vm_info(const json_t *v)
{
    printf("Name:        %s\n", jstr(v, "name"));
    printf("UUID:        %s\n", jstr(v, "uuid"));
    printf("Host:        %s\n", jstr(v, "host"));
    printf("Policy:      %s\n", !strcmp(jstr(v, "policy"), "encrypted") ? "VM Encryption (encrypted)"
                                                                          : "Datastore default (none)");
    printf("Encrypted:   %s\n", json_is_true(json_object_get(v, "encrypted")) ? "yes" : "no");
    if (*jstr(v, "kek_id"))
        printf("KEK:         %s on key provider %s\n", jstr(v, "kek_id"), jstr(v, "kms"));
    printf("CPUs:        %lld\n", (long long)json_integer_value(json_object_get(v, "cpus")));
    printf("Memory:      %lld MB\n", (long long)json_integer_value(json_object_get(v, "memory_mb")));
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(v, "disks"), i, d)
        printf("Disk %zu:      %lld MB\n", i, (long long)json_integer_value(json_object_get(d, "size_mb")));
    json_t *rt = json_object_get(v, "runtime");
    if (json_is_object(rt)) {
        printf("Power:       %s\n", jstr(rt, "power_state"));
        vm_info_nics(rt);
        if (json_is_true(json_object_get(rt, "locked")))
            printf("Locked:      yes (%s)\n", jstr(rt, "locked_reason"));
        json_t *rd;
        json_array_foreach(json_object_get(rt, "disks"), i, rd) {
            /* the data path of a running VM's disk (docs/architecture.md) */
            json_t *ns = json_object_get(rd, "nbd_server");
            if (*jstr(rd, "data_path"))
                printf("Disk %zu path: %s%s%s%s\n", i, jstr(rd, "data_path"),
                       json_is_object(ns) ? " (server " : "", json_is_object(ns) ? jstr(ns, "state") : "",
                       json_is_object(ns) ? ")" : "");
        }
        json_t *task = json_object_get(rt, "task");
        if (json_is_object(task))
            printf("Host task:   %s %lld%%\n", jstr(task, "state"),
                   (long long)json_integer_value(json_object_get(task, "progress")));
    } else if (*jstr(v, "runtime_error")) {
        printf("Power:       unknown (%s)\n", jstr(v, "runtime_error"));
    }
    if (json_object_get(v, "task")) {
        long long t = (long long)json_integer_value(json_object_get(v, "task"));
        printf("Task:        %lld not finished (vmseal task info %lld)\n", t, t);
    }
}

/* Add a string member only when the option was given. */
static void set_str_if(json_t *body, const char *key, const char *value)
{
    if (value)
        json_object_set_new(body, key, json_string(value));
}

/* The guest boot settings shared by `vm create` and `vm set`. */
static void set_boot_fields(json_t *body, const char *kernel, const char *initrd, const char *append)
{
    set_str_if(body, "kernel", kernel);
    set_str_if(body, "initrd", initrd);
    set_str_if(body, "append", append);
}

int cmd_vm(cli *c, int argc, char **argv)
{
    if (argc < 2)
        return EXIT_USAGE;
    if (!strcmp(argv[1], "nic"))
        return cmd_vm_nic(c, argc - 1, argv + 1);
    if (!strcmp(argv[1], "snapshot"))
        return cmd_vm_snapshot(c, argc - 1, argv + 1);
    const char *sub = argv[1];
    if (!strcmp(sub, "console") || !strcmp(sub, "vnc"))
        return cmd_vm_console(c, argc, argv);
    if (!strcmp(sub, "disk"))
        return cmd_vm_disk(c, argc - 1, argv + 1);
    if (!strcmp(sub, "clone"))
        return cmd_vm_clone(c, argc - 1, argv + 1);
    if (!strcmp(sub, "cdrom"))
        return cmd_vm_cdrom(c, argc - 1, argv + 1);
    for (int i = 2; !strcmp(sub, "set") && i < argc; i++)
        if (!strncmp(argv[i], "--boot", 6))
            return cmd_vm_boot(c, argc - 1, argv + 1);   /* vm set NAME --boot ORDER */
    const char *disk_from[16];
    size_t nfrom = 0;
    const char *host = NULL, *kms = NULL, *kernel = NULL, *initrd = NULL, *append = NULL, *fw = NULL;
    long cpus = 0, mem = 0, disks[16];
    size_t nd = 0;
    int encrypt = 0, deep = 0, nowait = 0, ch;
    int have_cpus = 0, have_mem = 0;
    char *end;
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'H'},
        {"cpus", required_argument, NULL, 'c'},
        {"memory", required_argument, NULL, 'm'},
        {"disk", required_argument, NULL, 'd'},
        {"encrypt", no_argument, NULL, 'e'},
        {"kms", required_argument, NULL, 'k'},
        {"kernel", required_argument, NULL, 'K'},
        {"initrd", required_argument, NULL, 'I'},
        {"append", required_argument, NULL, 'A'},
        {"firmware", required_argument, NULL, 'F'},
        {"deep", no_argument, NULL, 'D'},
        {"no-wait", no_argument, NULL, 'n'},
        {"no-encrypt", no_argument, NULL, 'E'},
        {"folder", required_argument, NULL, 'f'},
        {"tail", required_argument, NULL, 't'},
        {"name", required_argument, NULL, 'N'},
        {"ttl", required_argument, NULL, 'T'},
        {"psk-file", required_argument, NULL, 'P'},
        {"tpm", no_argument, NULL, 'M'},
        {"disk-from", required_argument, NULL, 'B'},
        {"ciphertext", no_argument, NULL, 'X'},
        {"bundle-file", required_argument, NULL, 'U'},
        {"to", required_argument, NULL, 'O'},
        {0, 0, 0, 0},
    };
    const char *folder = NULL, *vm_name_opt = NULL, *psk_file = NULL, *bundle_file = NULL;
    const char *to = NULL;
    long tail = 0, ttl = 0;
    int ciphertext = 0;
    int tpm = 0;
    optind = 2;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'H': host = optarg; break;
        case 'c':
            cpus = strtol(optarg, &end, 10);
            if (*end || !*optarg)
                return EXIT_USAGE;
            have_cpus = 1;
            break;
        case 'm':
            mem = strtol(optarg, &end, 10);
            if (*end || !*optarg)
                return EXIT_USAGE;
            have_mem = 1;
            break;
        case 'd':
            if (nd == 16)
                return EXIT_USAGE;
            disks[nd++] = atol(optarg);
            break;
        case 'e': encrypt = 1; break;
        case 'k': kms = optarg; break;
        case 'K': kernel = optarg; break;
        case 'I': initrd = optarg; break;
        case 'A': append = optarg; break;
        case 'F': fw = optarg; break;
        case 'D': deep = 1; break;
        case 'n': nowait = 1; break;
        case 'E': encrypt = -1; break;
        case 'f': folder = optarg; break;
        case 'N': vm_name_opt = optarg; break;
        case 'P': psk_file = optarg; break;
        case 'T':
            ttl = strtol(optarg, &end, 10);
            if (*end || ttl < 1 || ttl > 86400)
                return EXIT_USAGE;
            break;
        case 'M': tpm = 1; break;
        case 'X': ciphertext = 1; break;
        case 'U': bundle_file = optarg; break;
        case 'B':
            if (nfrom + nd >= 8)
                return EXIT_USAGE;
            disk_from[nfrom++] = optarg;
            break;
        case 'O': to = optarg; break;
        case 't':
            tail = strtol(optarg, &end, 10);
            if (*end || tail < 1 || tail > (1 << 20))
                return EXIT_USAGE;
            break;
        default: return EXIT_USAGE;
        }
    }
    int nargs = argc - optind;
    char **args = argv + optind;
    json_t *resp = NULL, *body = NULL;
    char path[300], label[160];
    int rc;
    if (!strcmp(sub, "ls") && nargs == 0) {
        rc = cli_call(c, "GET", "/api/v1/vms", NULL, &resp);
        if (rc != EXIT_OK)
            return rc;
        if (c->json) {
            print_json(resp);
        } else {
            static const char *const h[] = {"NAME", "HOST", "POLICY", "ENCRYPTED", "KEY PROVIDER", "KEK", "UUID"};
            table *t = table_new(7, h);
            size_t i;
            json_t *v;
            json_array_foreach(json_object_get(resp, "vms"), i, v) {
                const char *row[] = {jstr(v, "name"), jstr(v, "host"), jstr(v, "policy"),
                                     json_is_true(json_object_get(v, "encrypted")) ? "yes" : "no",
                                     jstr(v, "kms"), jstr(v, "kek_id"), jstr(v, "uuid")};
                table_add(t, row);
            }
            table_print(t, stdout);
            table_free(t);
        }
        json_decref(resp);
        return EXIT_OK;
    }
    if (!strcmp(sub, "register") && nargs == 2) {
        /* vm register HOST UUID [--name N] [--kms P]: a VM the host has */
        body = json_pack("{s:s,s:s}", "host", args[0], "uuid", args[1]);
        set_str_if(body, "name", vm_name_opt);
        set_str_if(body, "kms", kms);
        rc = cli_call(c, "POST", "/api/v1/vms/register", body, &resp);
        if (rc == EXIT_OK && !c->json && !c->quiet)
            printf("VM %s (%s) on %s is in the inventory%s%s\n", jstr(resp, "name"), args[1], args[0],
                   *jstr(resp, "kek_id") ? ", encrypted with KEK " : "", jstr(resp, "kek_id"));
        goto out;
    }
    if (!strcmp(sub, "move") && nargs == 2) {
        /* vm move NAME FOLDER ("" = out of any folder) */
        body = json_pack("{s:s}", "folder", args[1]);
        vm_path(path, sizeof(path), args[0], "");
        rc = cli_call(c, "PATCH", path, body, &resp);
        if (rc == EXIT_OK && !c->json && !c->quiet)
            printf(*args[1] ? "VM %s moved to folder %s\n" : "VM %s is in no folder%s\n", args[0], args[1]);
        goto out;
    }
    if (!strcmp(sub, "tpm") && nargs == 2) {
        /* vm tpm NAME on|off: add or remove the vTPM (powered off, encrypted VMs) */
        int on = !strcmp(args[1], "on");
        if (!on && strcmp(args[1], "off") != 0)
            return EXIT_USAGE;
        body = json_pack("{s:b}", "tpm", on);
        vm_path(path, sizeof(path), args[0], "");
        rc = cli_call(c, "PATCH", path, body, &resp);
        if (rc == EXIT_OK && !c->json && !c->quiet)
            printf(on ? "VM %s has a vTPM\n" : "VM %s has no vTPM (its state was deleted)\n", args[0]);
        goto out;
    }
    if (nargs != 1)
        return EXIT_USAGE;
    const char *name = args[0];
    if (!strcmp(sub, "create")) {
        if (!host) {
            fprintf(stderr, "vmseal vm create: --host HOST is required\n");
            return EXIT_USAGE;
        }
        body = json_pack("{s:s,s:s}", "name", name, "host", host);
        /* Neither --encrypt nor --no-encrypt: the host's default policy. */
        if (encrypt)
            json_object_set_new(body, "policy", json_string(encrypt > 0 ? "encrypted" : "none"));
        set_str_if(body, "folder", folder);
        if (cpus)
            json_object_set_new(body, "cpus", json_integer(cpus));
        if (mem)
            json_object_set_new(body, "memory_mb", json_integer(mem));
        json_t *da = json_array();
        for (size_t i = 0; i < nd; i++)
            json_array_append_new(da, json_pack("{s:I}", "size_mb", (json_int_t)disks[i]));
        for (size_t i = 0; i < nfrom; i++)   /* imported disks come after the empty ones */
            json_array_append_new(da, json_pack("{s:s}", "from", disk_from[i]));
        json_object_set_new(body, "disks", da);
        set_str_if(body, "kms", kms);
        set_boot_fields(body, kernel, initrd, append);
        set_str_if(body, "firmware", fw);
        if (tpm)
            json_object_set_new(body, "tpm", json_true());
        rc = cli_call(c, "POST", "/api/v1/vms", body, &resp);
        if (rc == EXIT_OK && !c->json && !c->quiet)
            printf("VM %s created on %s (%s)%s%s\n", name, host, jstr(resp, "uuid"),
                   *jstr(resp, "kek_id") ? ", encrypted with KEK " : "", jstr(resp, "kek_id"));
        /* --disk-from: the host imports them in a task of its own */
        json_t *it = json_object_get(resp, "host_task");
        if (rc == EXIT_OK && nfrom && !nowait && json_is_object(it)) {
            char tid[64], lbl[160];
            snprintf(tid, sizeof(tid), "%s", jstr(it, "id"));
            snprintf(lbl, sizeof(lbl), "VM %s: importing %zu disk(s)", name, nfrom);
            rc = cli_wait_import(c, name, json_object_get(resp, "task"), tid, lbl);
        }
    } else if (!strcmp(sub, "set")) {
        body = json_object();
        if (have_cpus)
            json_object_set_new(body, "cpus", json_integer(cpus));
        if (have_mem)
            json_object_set_new(body, "memory_mb", json_integer(mem));
        set_boot_fields(body, kernel, initrd, append);
        if (json_object_size(body) == 0 || host || kms || encrypt || deep || nowait || fw || nd) {
            fprintf(stderr, "vmseal vm set: give --cpus, --memory, --kernel, --initrd or --append "
                            "(nothing else)\n");
            cli_reported = 1;
            json_decref(body);
            return EXIT_USAGE;
        }
        vm_path(path, sizeof(path), name, "");
        rc = cli_call(c, "PATCH", path, body, &resp);
        if (rc == EXIT_OK && !c->json && !c->quiet) {
            if (!json_is_true(json_object_get(resp, "changed"))) {
                printf("VM %s: nothing to change\n", name);
            } else {
                printf("VM %s reconfigured:", name);
                const char *k;
                json_t *x;
                json_object_foreach(body, k, x) {
                    json_t *now = json_object_get(resp, k);
                    if (json_is_integer(now))
                        printf(" %s=%lld", k, (long long)json_integer_value(now));
                    else if (json_is_string(now))
                        printf(" %s=\"%s\"", k, json_string_value(now));
                    else
                        printf(" %s removed", k);
                }
                printf("\n");
            }
        }
    } else if (!strcmp(sub, "unregister")) {
        vm_path(path, sizeof(path), name, "/unregister");
        rc = cli_call(c, "POST", path, NULL, &resp);
        if (rc == EXIT_OK && !c->json && !c->quiet)
            printf("VM %s left the inventory; its host keeps it (vmseal vm register %s %s)\n", name, "HOST",
                   jstr(resp, "uuid"));
    } else if (!strcmp(sub, "log")) {
        vm_path(path, sizeof(path), name, "/log");
        if (tail)
            snprintf(path + strlen(path), sizeof(path) - strlen(path), "?tail=%ld", tail);
        rc = cli_call(c, "GET", path, NULL, &resp);
        if (rc == EXIT_OK && !c->json) {
            fputs(jstr(resp, "log"), stdout);
            fflush(stdout);
        }
    } else if (!strcmp(sub, "export")) {
        if (nd != 1 || disks[0] < 0 || (!psk_file && !c->json) ||
            (ciphertext && !bundle_file && !c->json) || (bundle_file && !ciphertext)) {
            fprintf(stderr, "vmseal vm export: give --disk N (the disk's index) and --psk-file FILE "
                            "(where the one-time TLS key goes; or --json); with --ciphertext also "
                            "--bundle-file FILE (where the disk's key bundle goes)\n");
            cli_reported = 1;
            return EXIT_USAGE;
        }
        body = json_pack("{s:I}", "disk", (json_int_t)disks[0]);
        if (ciphertext)
            json_object_set_new(body, "ciphertext", json_true());
        if (ttl)
            json_object_set_new(body, "ttl_seconds", json_integer(ttl));
        vm_path(path, sizeof(path), name, "/export");
        rc = cli_call(c, "POST", path, body, &resp);
        if (rc == EXIT_OK && psk_file) {
            /* the one-time key, in nbdkit/libnbd's PSK file format */
            int fd = open(psk_file, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
            if (fd < 0 || dprintf(fd, "%s:%s\n", jstr(resp, "psk_identity"), jstr(resp, "psk")) < 0 ||
                close(fd) != 0) {
                fprintf(stderr, "vmseal vm export: cannot write %s: %s\n", psk_file, strerror(errno));
                cli_reported = 1;
                rc = EXIT_FAIL;
            }
        }
        if (rc == EXIT_OK && bundle_file) {
            /* the key bundle: the disk's key safe, wrapped under its KEK */
            json_t *bundle = json_object_get(resp, "bundle");
            int fd = open(bundle_file, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
            FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
            if (!f && fd >= 0)
                close(fd);
            int ok = f && json_is_object(bundle) &&
                     json_dumpf(bundle, f, JSON_INDENT(2) | JSON_SORT_KEYS) == 0 && fputc('\n', f) != EOF;
            if ((f && fclose(f) != 0) || !ok) {
                fprintf(stderr, "vmseal vm export: cannot write the key bundle to %s\n", bundle_file);
                cli_reported = 1;
                rc = EXIT_FAIL;
            }
        }
        if (rc == EXIT_OK && !c->json && !c->quiet)
            printf("Disk %lld of VM %s (%s, read-only, %lld bytes): one connection to %s within "
                   "%lld s, TLS with the key in %s\n  e.g. nbdcopy '%s?tls-psk-file=%s' disk.img\n",
                   (long long)disks[0], name, jstr(resp, "view"),
                   (long long)json_integer_value(json_object_get(resp, "size")), jstr(resp, "uri"),
                   (long long)(json_integer_value(json_object_get(resp, "expires")) - time(NULL)),
                   psk_file, jstr(resp, "uri"), psk_file);
    } else if (!strcmp(sub, "dump")) {
        /* the running guest's memory, sealed into its VM home */
        vm_path(path, sizeof(path), name, "/dump");
        body = json_object();
        rc = cli_call(c, "POST", path, body, &resp);
        if (rc == EXIT_OK && !c->json && !c->quiet)
            printf("VM %s: memory dumped to %s in its home (%s, %lld bytes)\n", name, jstr(resp, "file"),
                   json_is_true(json_object_get(resp, "sealed")) ? "sealed under its KEK" : "not encrypted",
                   (long long)json_integer_value(json_object_get(resp, "bytes")));
    } else if (!strcmp(sub, "info")) {
        vm_path(path, sizeof(path), name, "");
        rc = cli_call(c, "GET", path, NULL, &resp);
        if (rc == EXIT_OK && !c->json)
            vm_info(resp);
    } else if (!strcmp(sub, "start") || !strcmp(sub, "stop")) {
        vm_path(path, sizeof(path), name, !strcmp(sub, "start") ? "/power-on" : "/power-off");
        body = json_object();
        rc = cli_call(c, "POST", path, body, &resp);
        if (rc == EXIT_OK && !c->json && !c->quiet)
            printf("VM %s powered %s\n", name, !strcmp(sub, "start") ? "on" : "off");
    } else if (!strcmp(sub, "suspend") || !strcmp(sub, "resume") || !strcmp(sub, "discard-state")) {
        char act[32];
        snprintf(act, sizeof(act), "/%s", sub);
        vm_path(path, sizeof(path), name, act);
        if (host && strcmp(sub, "resume") != 0)
            return EXIT_USAGE;
        body = json_object();
        if (host)
            json_object_set_new(body, "host", json_string(host));   /* resume on that host */
        rc = cli_call(c, "POST", path, body, &resp);
        if (rc == EXIT_OK && !c->json && !c->quiet)
            printf("VM %s %s%s%s\n", name,
                   !strcmp(sub, "suspend") ? "suspended (its memory state is sealed in its home)"
                   : !strcmp(sub, "resume") ? "resumed"
                                            : "powered off (saved state discarded)",
                   host ? " on " : "", host ? host : "");
    } else if (!strcmp(sub, "rm")) {
        vm_path(path, sizeof(path), name, "");
        rc = cli_call(c, "DELETE", path, NULL, &resp);
        if (rc == EXIT_OK && !c->json && !c->quiet)
            printf("VM %s removed\n", name);
    } else if (!strcmp(sub, "encrypt") || !strcmp(sub, "decrypt")) {
        int enc = !strcmp(sub, "encrypt");
        body = json_pack("{s:s}", "policy", enc ? "encrypted" : "none");
        if (kms)
            json_object_set_new(body, "kms", json_string(kms));
        vm_path(path, sizeof(path), name, "");
        rc = cli_call(c, "PATCH", path, body, &resp);
        snprintf(label, sizeof(label), "%s %s", enc ? "encrypting" : "decrypting", name);
        if (rc == EXIT_OK) {
            rc = follow_task(c, resp, label, nowait);
            if (rc == EXIT_OK && !c->json && !c->quiet && json_object_get(resp, "task"))
                printf("VM %s is %s\n", name, enc ? "encrypted" : "decrypted");
        }
        json_decref(body);
        json_decref(resp);
        return rc;
    } else if (!strcmp(sub, "migrate")) {
        /* live migration to another host (the guest runs on): a task */
        if (!to) {
            fprintf(stderr, "vmseal vm migrate: --to HOST is required\n");
            cli_reported = 1;
            return EXIT_USAGE;
        }
        body = json_pack("{s:s}", "host", to);
        vm_path(path, sizeof(path), name, "/migrate");
        rc = cli_call(c, "POST", path, body, &resp);
        snprintf(label, sizeof(label), "migrating %s to %s", name, to);
        if (rc == EXIT_OK) {
            rc = follow_task(c, resp, label, nowait);
            if (rc == EXIT_OK && !c->json && !c->quiet && !nowait)
                printf("VM %s runs on %s\n", name, to);
        }
        json_decref(body);
        json_decref(resp);
        return rc;
    } else if (!strcmp(sub, "rekey")) {
        body = json_pack("{s:b}", "deep", deep);
        if (kms)
            json_object_set_new(body, "kms", json_string(kms));
        vm_path(path, sizeof(path), name, "/rekey");
        rc = cli_call(c, "POST", path, body, &resp);
        snprintf(label, sizeof(label), "%s rekey %s", deep ? "deep" : "shallow", name);
        if (rc == EXIT_OK) {
            rc = follow_task(c, resp, label, nowait);
            if (rc == EXIT_OK && !c->json && !c->quiet && !nowait)
                printf("VM %s has a new KEK%s\n", name, deep ? " and new disk keys" : "");
        }
        json_decref(body);
        json_decref(resp);
        return rc;
    } else {
        return EXIT_USAGE;
    }
out:
    if (rc == EXIT_OK && c->json)
        print_json(resp);
    json_decref(body);
    json_decref(resp);
    return rc;
}
