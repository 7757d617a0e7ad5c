/* vmseal — the admin CLI: talks to vmseal-managerd's REST API over HTTPS.
 *   main.c      command dispatch, global options, usage, exit codes
 *   session.c   the saved session (URL, CA, token), API calls
 *   output.c    tables, JSON output, progress bars
 *   prompt.c    passwords: from a file, a descriptor or a no-echo prompt
 *   cmd_*.c     one file per command group
 */
#ifndef VMSEAL_CLI_H
#define VMSEAL_CLI_H

#include <stdio.h>

#include <jansson.h>

#include <vmseal/common.h>
#include <vmseal/secret.h>

/* Exit codes (documented in `vmseal --help` and docs/cli.md). */
enum {
    EXIT_OK = 0,
    EXIT_FAIL = 1,        /* the operation failed */
    EXIT_USAGE = 2,       /* bad command line */
    EXIT_AUTH = 3,        /* not logged in, session expired, wrong password */
    EXIT_NOTFOUND = 4,    /* no such object */
    EXIT_DENIED = 5,      /* permission denied (missing privilege) */
    EXIT_CONFLICT = 6,    /* exists already, busy, wrong state */
    EXIT_UNREACHABLE = 7, /* cannot reach or trust the manager */
};

typedef struct cli {
    const char *url;      /* --url / $VMSEAL_URL / saved session */
    const char *ca;       /* --ca / $VMSEAL_CA / saved session */
    int json;             /* --json */
    int quiet;
    char *session_path;
    json_t *session;      /* {url, ca, token, user, expires} */
} cli;

/* session.c */
extern int cli_reported;   /* an error message was printed already */
int cli_load_session(cli *c);
int cli_save_session(cli *c, const char *url, const char *ca, const char *token, const char *user,
                     long long expires);
int cli_forget_session(cli *c);
/* One API call; path starts with "/api/v1/". Returns an exit code: EXIT_OK
 * for 2xx (with *resp), otherwise prints the error and maps the status. */
int cli_call(cli *c, const char *method, const char *path, const json_t *body, json_t **resp);
/* Same with a longer timeout (long polls). */
int cli_call_timeout(cli *c, const char *method, const char *path, const json_t *body, json_t **resp,
                     long timeout_ms);
/* Percent-encode one path segment into out. */
void cli_escape(const char *in, char *out, size_t outlen);

/* output.c */
typedef struct table table;
table *table_new(size_t ncols, const char *const *headers);
void table_add(table *t, const char *const *cells);
void table_print(table *t, FILE *f);
void table_free(table *t);
void print_json(const json_t *v);
/* GET path and print the object it answers (--json: as JSON). */
int show_object(cli *c, const char *path);
const char *fmt_time(long long t, char *buf, size_t len);
const char *jstr(const json_t *o, const char *key);  /* "" when missing */
/* Progress line (TTY: a bar redrawn in place; otherwise one line per 10%). */
void progress_show(const char *label, int percent);
void progress_done(void);

/* prompt.c */
/* Read a password: --password-file FILE ("-" for stdin) or --password-fd,
 * else prompt on the terminal without echo (twice when confirm). The
 * newline is stripped. */
int read_password(const char *file, int fd, const char *prompt, int confirm, vmseal_secret **out);

/* commands */
int cmd_login(cli *c, int argc, char **argv);
int cmd_logout(cli *c, int argc, char **argv);
int cmd_whoami(cli *c, int argc, char **argv);
int cmd_kms(cli *c, int argc, char **argv);
int cmd_host(cli *c, int argc, char **argv);
int cmd_vm(cli *c, int argc, char **argv);
/* cmd_console.c: vm console NAME | vm vnc NAME [--listen ADDR:PORT] */
int cmd_vm_console(cli *c, int argc, char **argv);
int cmd_vm_nic(cli *c, int argc, char **argv);   /* cmd_nic.c: vm nic ls|add|rm */
int cmd_vm_snapshot(cli *c, int argc, char **argv);   /* cmd_snap.c: vm snapshot ... */
void vm_info_nics(const json_t *runtime);        /* the NIC lines of vm info */
/* cmd_disk.c: vmseal vm disk ...; following a host's task in the VM's live view */
int cmd_vm_disk(cli *c, int argc, char **argv);
int cmd_vm_clone(cli *c, int argc, char **argv);   /* cmd_clone.c */
int cmd_vm_disk_rm(cli *c, int argc, char **argv); /* cmd_clone.c: vm disk rm */
int cmd_vm_cdrom(cli *c, int argc, char **argv);   /* cmd_clone.c: vm cdrom */
int cmd_vm_boot(cli *c, int argc, char **argv);    /* cmd_clone.c: vm set NAME --boot */
int cli_wait_host_task(cli *c, const char *vm, const char *task_id, const char *label);
/* Wait for an import: the manager's task (task: {"id"}) or, without one,
 * the host's task host_task_id. */
int cli_wait_import(cli *c, const char *vm, const json_t *task, const char *host_task_id,
                    const char *label);
int cmd_task(cli *c, int argc, char **argv);
int cmd_events(cli *c, int argc, char **argv);
int cmd_user(cli *c, int argc, char **argv);
int cmd_role(cli *c, int argc, char **argv);
/* cmd_access.c */
int cmd_permission(cli *c, int argc, char **argv);
int cmd_group(cli *c, int argc, char **argv);
int cmd_keys(cli *c, int argc, char **argv);
int cmd_diagnostics(cli *c, int argc, char **argv);
int whoami_on(cli *c, const char *object);
int role_set(cli *c, int argc, char **argv);
int events_verify(cli *c);

/* Wait for a manager task with a progress bar; returns an exit code. */
int wait_task(cli *c, long long id, const char *label);

#endif
