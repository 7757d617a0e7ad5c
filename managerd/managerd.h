/* vmseal-managerd — the manager's shared state and its domain functions.
 *
 * Two layers (docs/architecture.md, "The manager's layers"):
 *
 *   API layer (api.h, api*.c): parses the request, authenticates, checks
 *   privileges (api_authz.c with the table of api_table.c), calls a domain
 *   function, and maps its result to HTTP and JSON: the status of a failure
 *   comes from its errno through the one table of lib/net/http_status.c.
 *
 *   Domain (this header): take typed arguments, return 0 (or data: structs,
 *   json_t objects the API layer serialises) or -errno with
 *   vmseal_last_error(); never an HTTP status. Only they (and store*.c) run
 *   SQL. A failure of a peer the manager called — a host agent or a key
 *   provider — is -EREMOTEIO (502), whatever errno it had; a host's own
 *   400, 404 and 409 come back as -EINVAL, -ENOENT and -EBUSY.
 *     config.c        managerd.conf
 *     store*.c        the database (SQLite or PostgreSQL)
 *     auth.c          password hashes, logins, sessions, creating users
 *     authz.c         effective privileges on objects
 *     users.c         users and roles
 *     perms.c         groups and permissions
 *     events.c        the event log (who changed what from what to what)
 *     kms_providers.c key providers (KMIP server clusters), trust, status
 *     keys.c          KEKs on the key server (create, tag, get), via KMIP
 *     hosts.c         host agents: registration, calls to them
 *     vms.c           VMs, encryption policy, power, recrypt
 *     tasks.c         task intents, the task watcher, reconciliation with hosts
 *     reconcile.c     what a host's view of a VM means for a task (pure)
 *     crashpoint.c    the test hook that kills the manager at a named step
 *     diagnostics.c   manager facts for support
 *     init.c          `vmseal-managerd init` / `issue-host`
 */
#ifndef VMSEAL_MANAGERD_H
#define VMSEAL_MANAGERD_H

#include <pthread.h>
#include <stdint.h>

#include <jansson.h>

#include <vmseal/http_client.h>
#include <vmseal/https_server.h>
#include <vmseal/secret.h>

#include "api_schema.h"
#include "config.h"
#include "store.h"

typedef struct manager {
    mgr_config *cfg;
    store *db;
    vmseal_https_server *srv;
    pthread_mutex_t lock;          /* events wake-up, stop flag */
    pthread_cond_t changed;        /* broadcast on each new event and on stop */
    int stopping;
    pthread_t task_thread;
    int task_thread_started;
    struct keys_pool *kpool;       /* open KMIP connections per key provider (keys.c) */
    pthread_t retire_thread;       /* key_retire.c */
    int retire_thread_started;
    int reconcile_due;             /* tasks.c: compare every host's VMs at the next round */
    long long launching[16];       /* tasks.c: tasks an API thread is handing to their host */
} manager;

int64_t mgr_now(void);
void mgr_log(const char *fmt, ...) VMSEAL_PRINTF(1, 2);

/* ---- crashpoint.c: a test hook ---------------------------------------------
 * With VMSEAL_TEST_CRASH_AT=POINT[:ACTION] in its environment, the manager
 * kills itself (SIGKILL, as kill -9 would) when it reaches the named step
 * (of a task of that action). Unset, it does nothing: the hook is read once
 * at start (mgr_crash_init logs it loudly) and compared by name. The steps
 * are listed in docs/architecture.md, "Intents and reconciliation". */
void mgr_crash_init(void);
void mgr_crash_point(const char *point, const char *action);

/* ---- api_table.c: the privilege catalogue -------------------------------- */

typedef struct mgr_privilege {
    const char *name;       /* "Cryptographer.Encrypt" */
    const char *what;       /* what it allows */
    const char *planned;    /* NULL, or the issue whose feature will check it */
} mgr_privilege;
extern const mgr_privilege mgr_privileges[];     /* NULL-terminated */
int mgr_privilege_known(const char *name);

/* ---- authz.c: effective privileges on objects ----------------------------- */

typedef uint64_t privset;    /* bit i = mgr_privileges[i] */
privset privset_all(void);
int privset_index(const char *name);
privset privset_parse(const char *space_separated);
char *privset_string(privset s);                 /* malloc'd */
const char *privset_first_missing(privset have, privset want);
int authz_role_privileges(manager *m, const char *role, privset *out);
/* "root", "host:NAME", "folder:NAME", "vm:NAME" */
int authz_parse_object(const char *object, char *kind, size_t kindlen, const char **name);
int authz_effective(manager *m, const char *user, const char *object, privset *out, int *encrypted);
/* Whether actor holds every privilege target holds, on every object where
 * target has a permission; *missing names the first that actor lacks. */
int authz_dominates(manager *m, const char *actor, const char *target, char *object, size_t olen,
                    const char **missing);
int authz_admin_count(manager *m, long *n);

/* ---- auth.c ---------------------------------------------------------------- */

int auth_seed_roles(store *db);
int auth_password_hash(const char *pw, size_t len, char *out, size_t outlen);
int auth_password_verify(const char *pw, size_t len, const char *stored) VMSEAL_MUST_CHECK;
int auth_user_create(manager *m, const char *actor, const char *name, const char *password,
                     const char *role);
/* Check a password; on success make a session token (out >= 64 bytes). */
int auth_login(manager *m, const char *user, const char *password, char *token, size_t tlen,
               int64_t *expires) VMSEAL_MUST_CHECK;
int auth_logout(manager *m, const char *token);
/* The CSRF token of a session (a browser's cookie session, docs/web.md):
 * hex SHA-256 of "vmseal-csrf-v1:" and the session token, so it is fixed
 * for the session, needs no storage, and tells nothing about the token
 * (nor is it the token's stored hash). out: 65 bytes. */
void auth_csrf_token(const char *token, char out[65]);
/* Resolve a session token ("Authorization: Bearer TOKEN") into its user,
 * role and privileges on the root (space-separated, malloc'd; *privileges
 * is freed first). -EACCES when missing, unknown or expired. */
int auth_session(manager *m, const char *token, char *user, size_t ulen, char *role, size_t rlen,
                 char **privileges) VMSEAL_MUST_CHECK;
/* Set a user's password (8..1024 bytes) and end the user's sessions but
 * keep_token's (may be NULL). */
int auth_set_password(manager *m, const char *user, const char *password, const char *keep_token);

/* ---- users.c: users and roles ------------------------------------------------
 * The last Administrator can be neither demoted nor deleted: -EBUSY and a
 * "failed" event. */

int users_list(manager *m, json_t **out);                          /* {"users": [...]} */
int users_get(manager *m, const char *name, json_t **out);         /* -ENOENT */
int users_exists(manager *m, const char *name);                    /* 1, 0 or -errno */
/* The user's current password: 0, -EACCES when wrong or NULL, -ENOBUFS when
 * too many are being checked at once, -ENOENT for no such user. */
int users_check_password(manager *m, const char *name, const char *password);
int users_set_role(manager *m, const char *actor, const char *name, const char *role);
/* auth_set_password, and the event. */
int users_set_password(manager *m, const char *actor, const char *name, const char *password,
                       const char *keep_token);
int users_delete(manager *m, const char *actor, const char *name);
int roles_list(manager *m, json_t **out);                          /* {"roles", "all_privileges"} */
/* A role one may change or remove (what: "changed", "removed"): its
 * privileges (space-separated, malloc'd); -ENOENT, or -EPERM for a built-in
 * role. */
int roles_get_custom(manager *m, const char *name, const char *what, char **privileges);
/* privileges: known names, space-separated; *out = {name, privileges[]} */
int roles_create(manager *m, const char *actor, const char *name, const char *privileges,
                 json_t **out);
int roles_update(manager *m, const char *actor, const char *name, const char *privileges,
                 json_t **out);
int roles_delete(manager *m, const char *actor, const char *name);   /* -EBUSY while in use */

/* ---- perms.c: groups and permissions --------------------------------------- */

int groups_list(manager *m, json_t **out);                         /* {"groups": [...]} */
int groups_exists(manager *m, const char *name);                   /* 1, 0 or -errno */
int groups_create(manager *m, const char *actor, const char *name, json_t **out);
int groups_delete(manager *m, const char *actor, const char *name);
/* What the group's permissions grant: [{object, role}]. */
int groups_grants(manager *m, const char *group, json_t **out);
/* Add (add = 1) or remove a member; no event when nothing changes. */
int groups_member(manager *m, const char *actor, const char *group, const char *user, int add);
/* object NULL: all; the users' own roles are their permissions on the root. */
int perms_list(manager *m, const char *object, json_t **out);     /* {"permissions": [...]} */
/* The permission of principal (a user, or a group when is_group) on object:
 * its role (rlen >= 80) and propagate flag; -ENOENT when there is none. */
int perms_get(manager *m, const char *principal, int is_group, const char *object, char *role,
              size_t rlen, int *propagate);
/* Set (replace) it; *out = {object, user|group, role, propagate}. */
int perms_set(manager *m, const char *actor, const char *object, const char *principal, int is_group,
              const char *role, int propagate, json_t **out);
int perms_remove(manager *m, const char *actor, const char *object, const char *principal,
                 int is_group);

/* ---- diagnostics.c --------------------------------------------------------- */

int diagnostics_get(manager *m, json_t **out);

/* ---- events.c -------------------------------------------------------------- */

/* Record a change; old/new are borrowed (may be NULL). The source address
 * is the one of the request this thread serves (event_set_source). */
int event_add(manager *m, const char *user, const char *action, const char *object,
              const json_t *old_value, const json_t *new_value);
/* The same with a result: "ok", "denied" (refused by access control) or
 * "failed". */
int event_record(manager *m, const char *user, const char *action, const char *object,
                 const json_t *old_value, const json_t *new_value, const char *result);
void event_set_source(const char *remote_addr);
typedef struct events_filter {
    const char *user, *object, *action, *result;   /* NULL or "" = any; action "vm." = prefix */
    int64_t from, to;                              /* unix seconds; 0 = open */
} events_filter;
/* Events with id > since (at most limit) that match f (may be NULL); waits
 * up to wait_s seconds for the first one when there is none yet. */
int events_list(manager *m, const events_filter *f, long long since, int limit, int wait_s,
                json_t **out);
/* Check the hash chain: {ok, records, first_bad?, reason?, last?, head?}. */
int events_verify(manager *m, json_t **out);
/* Chain events stored before the chain existed (once, at start). */
int events_chain_legacy(manager *m);
void events_wake(manager *m);

/* ---- kms_providers.c ------------------------------------------------------- */

int kms_provider_list(manager *m, json_t **out);
int kms_provider_get(manager *m, const char *name, json_t **out);     /* -ENOENT */
/* The default provider's name (malloc'd), -ENOENT if none. */
int kms_provider_default(manager *m, char **name);
int kms_provider_add(manager *m, const char *actor, const json_t *req);
int kms_provider_patch(manager *m, const char *actor, const char *name, const json_t *req);
int kms_provider_remove(manager *m, const char *actor, const char *name);
int kms_provider_status(manager *m, const char *name, json_t **out);
int kms_provider_peer_cert(manager *m, const char *name, json_t **out);
int kms_provider_trust(manager *m, const char *actor, const char *name, const char *ca_pem);
int kms_provider_csr(manager *m, const char *actor, const char *name, const char *cn, char **csr_pem);
int kms_provider_client_cert(manager *m, const char *actor, const char *name, const char *cert_pem,
                             const char *key_pem);
/* Connection settings for a provider's KMIP client (all malloc'd). */
typedef struct kms_conn {
    char **servers;
    size_t n_servers;
    char *ca_file, *cert_file, *key_file;
    char *username;                /* KMIP Username/Password credential, or NULL */
    vmseal_secret *password;       /* NUL-terminated, or NULL */
    char config_id[65];            /* SHA-256 (hex) of all of the above: changes with any setting */
} kms_conn;
#define KMS_PASSWORD_MAX 256
int kms_provider_conn(manager *m, const char *name, kms_conn *out);
void kms_conn_free(kms_conn *c);

/* ---- keys.c ---------------------------------------------------------------- */

/* Create an AES-256 KEK for a VM on the provider's KMS (Create, tag with
 * x-Vendor/x-Product/x-Identifier/x-Component/x-Name, Activate) and record
 * its ID. kek_id is malloc'd. */
int keys_create_kek(manager *m, const char *provider, const char *vm_uuid, const char *vm_name,
                    char **kek_id);
/* Fetch a KEK's bytes from the provider: each server in turn until one
 * holds the key and, when the key is tagged, tagged for the VM the manager
 * recorded it for. */
int keys_get(manager *m, const char *provider, const char *kek_id, vmseal_secret **key);
/* The KEK ids recorded, with their VM and state (vm NULL: all); never key
 * material. */
int keys_list(manager *m, const char *vm, json_t **out);
/* Many KEKs of one provider in batched requests; each has its own result.
 * Returns < 0 only when the provider cannot be used at all. */
typedef struct keys_want {
    const char *kek_id;            /* in */
    vmseal_secret *key;            /* out (caller frees), NULL on failure */
    int rc;                        /* out: 0 or -errno */
    char error[320];               /* out: why not */
    char server[128];              /* out: the server that gave it */
} keys_want;
int keys_get_many(manager *m, const char *provider, keys_want *want, size_t n);
typedef struct keys_pool keys_pool;
int keys_pool_init(manager *m);
void keys_pool_free(manager *m);
/* A pooled KMIP client of a provider, connected, for one thread until put
 * back (keys_lease_put also after a failed get). */
typedef struct keys_lease {
    struct pool_entry *entry;
    struct pool_client *pc;
} keys_lease;
struct vmseal_kmip_client;
int keys_lease_get(manager *m, const char *provider, keys_lease *l);
void keys_lease_put(manager *m, keys_lease *l);
struct vmseal_kmip_client *keys_lease_client(keys_lease *l);

/* ---- key_retire.c ---------------------------------------------------------- */

/* One clean-up pass: KEKs retired or unused for kek_destroy_grace seconds
 * that no VM, task or host needs are revoked and destroyed on the KMS;
 * orphans (keys this manager made but never recorded) are revoked. report:
 * {destroyed: [...], kept: [...], orphans_revoked: [...]} (may be NULL). */
int keys_retire_pass(manager *m, json_t **report);
/* Revoke (and destroy) one key on the server of the provider that holds it
 * for vm_uuid. */
int keys_revoke_destroy(manager *m, const char *provider, const char *kek_id, const char *vm_uuid,
                        int destroy);
/* Keys of this manager on the provider's servers that it never recorded:
 * [{kek_id, server, vm_uuid}] */
int keys_orphans(manager *m, const char *provider, json_t **out);
/* This manager's id (meta 'instance', a UUID made once), tagged on its
 * keys as x-Manager. */
int keys_manager_id(manager *m, char id[40]);
/* GET /keys/{kek} */
int keys_info(manager *m, const char *kek_id, const char *provider, json_t **out);
int keys_retire_start(manager *m);
void keys_retire_stop(manager *m);
/* Whether the KMIP client is built in (always, since it landed). */
int keys_available(void);

/* ---- hosts.c --------------------------------------------------------------- */

/* Register the host agent whose verified client certificate has this
 * SHA-256 fingerprint and subject ("" when it sent none: -EACCES). */
int hosts_register(manager *m, const char *fingerprint, const char *subject, const json_t *body,
                   json_t **out);
/* Identify a host agent by its client certificate: name into out. */
int hosts_identify(manager *m, const char *fingerprint, const char *subject, char *out,
                   size_t outlen);
int hosts_list(manager *m, json_t **out);
int hosts_remove(manager *m, const char *actor, const char *name);
/* Host certificates: approve the one waiting (fingerprint must match), or
 * revoke the pinned one. */
int hosts_approve_cert(manager *m, const char *actor, const char *name, const char *fingerprint);
int hosts_revoke_cert(manager *m, const char *actor, const char *name);
/* The encryption policy new VMs on the host get when none is asked for. */
int hosts_set_default_policy(manager *m, const char *actor, const char *name, const char *policy);
/* Host encryption mode of a host (managerd/host_mode.c): enable 1 / 0 asks
 * the host agent to change it (an event), -1 only reads it. */
int hosts_encryption_mode(manager *m, const char *actor, const char *name, int enable, json_t **out);
/* Call a host agent (mutual TLS with the manager certificate). */
int hosts_call(manager *m, const char *host, const char *method, const char *path,
               const json_t *body, long *status, json_t **resp);
/* Same, waiting up to timeout_ms (at least the configured host timeout)
 * for an answer: operations the host runs while the caller waits. */
int hosts_call_timeout(manager *m, const char *host, const char *method, const char *path,
                       const json_t *body, long timeout_ms, long *status, json_t **resp);
/* Give a KEK to a host: PUT {url}/v1/keys/{kek_id}. */
int hosts_push_key(manager *m, const char *host, const char *provider, const char *kek_id);
/* Serve POST /api/v1/hosts/self/keys. */
int hosts_keys_for(manager *m, const char *host, const json_t *kek_ids, json_t **out);

/* ---- vms.c ----------------------------------------------------------------- */

int vms_list(manager *m, json_t **out);
int vms_get(manager *m, const char *name, int live, json_t **out);
/* 0, or -ENOENT when there is no VM of that name. */
int vms_find(manager *m, const char *name);
/* The policy a new VM on host gets when none is asked for ("encrypted" or
 * "none"): 1, or 0 for an unknown host ("none"). */
int vms_host_default_policy(manager *m, const char *host, char *policy, size_t len);
/* req: the checked body of POST /vms; policy: the one applied. *out = VM. */
int vms_create(manager *m, const char *user, const json_t *req, const char *policy, json_t **out);
/* Apply policy "encrypted" (with kms, NULL: the default) or "none": 1 and
 * *out = {task} when a host task started, 0 and *out = the VM when the VM
 * has that policy already. */
int vms_set_policy(manager *m, const char *user, const char *name, const char *policy,
                   const char *kms, json_t **out);
/* req {cpus?, memory_mb?, kernel?, initrd?, append?}: powered off only;
 * *out = the VM with "changed". */
int vms_reconfigure(manager *m, const char *user, const char *name, const json_t *req, json_t **out);
/* *out = {task} */
int vms_rekey(manager *m, const char *user, const char *name, int deep, const char *kms,
              json_t **out);
/* *out = the host's answer */
int vms_power(manager *m, const char *user, const char *name, int on, json_t **out);
/* Suspend a running VM, resume a suspended one (the host loads its saved
 * state), or discard that state: action "suspend", "resume" or
 * "discard-state" (the host's POST /v1/vms/{uuid}/suspend | power-on |
 * discard-state); an event vm.<action> with the power state before and
 * after. to_host (resume only, NULL: where it is): resume on that host, which
 * sees the same datastore; the inventory then names it. */
int vms_state(manager *m, const char *user, const char *name, const char *action, const char *to_host,
              json_t **out);
/* Add a disk (req {"size_mb"} or {"from": IMAGE in the host's images
 * folder}): the host's 202 task in *out, with "disk" its index. */
int vms_add_disk(manager *m, const char *user, const char *name, const json_t *req, json_t **out);
/* DELETE /vms/{name}/disks/{N} (vms.c) */
int vms_remove_disk(manager *m, const char *user, const char *name, int disk, int keep_file, json_t **out);
/* POST /vms/{name}/cdrom, PATCH {boot}: a setting the host keeps (vms.c) */
int vms_host_setting(manager *m, const char *user, const char *name, const char *what,
                     const char *action, const json_t *body, json_t **out);
/* POST /vms/{name}/clone {name, host?, deep?, kms?} (vms.c) */
int vms_clone(manager *m, const char *user, const char *name, const json_t *req, json_t **out);
int vms_delete(manager *m, const char *user, const char *name);

/* ---- migrate.c -------------------------------------------------------------- */
/* Live-migrate running VM `name` to host `to` (managerd/migrate.c): checks,
 * then a task (action "migrate", state "migrating" while it runs) that a
 * thread carries out; *out = the task. */
int vms_migrate(manager *m, const char *user, const char *name, const char *to, json_t **out);
/* Move the VM to a folder (a valid name, or "" = none); *out = the VM. */
int vms_move(manager *m, const char *user, const char *name, const char *folder, json_t **out);
/* Leave the inventory; the host keeps the VM. uuid: the VM's. */
int vms_unregister(manager *m, const char *user, const char *name, char uuid[40]);
/* Registering a VM found on a host: first the host's view of it (*vm),
 * checked (a UUID, not in the inventory, a known host); then, once the
 * caller may (an encrypted VM needs more), the registration. req: the
 * checked body {host, uuid, name?, kms?}; *out = the VM. */
int vms_register_probe(manager *m, const char *host, const char *uuid, json_t **vm);
int vms_register(manager *m, const char *user, const json_t *req, const json_t *vm, json_t **out);
/* The guest's console output, from its host. */
int vms_log(manager *m, const char *user, const char *name, long long tail, json_t **out);
/* Where VM name runs: uuid, host, and whether it is encrypted. */
int vms_locate(manager *m, const char *name, char uuid[40], char host[80], int *encrypted);

/* ---- consoles.c: interactive consoles -------------------------------------- */

/* A console of a VM (serial port or VNC display) is a websocket from the
 * client to the manager, relayed to a websocket over mutual TLS to the
 * VM's host agent (docs/architecture.md, "Interactive consoles"). */
#define CONSOLE_IDLE_MS (15 * 60 * 1000)  /* nothing either way: closed */
#define CONSOLE_SEND_MS 5000              /* a side must take a frame within */
typedef struct console_link console_link;
/* Connect to the VM's host and open its console there. -errno with a
 * message; when the host answered but refused, *host_status is its HTTP
 * status (404, 409, 429, ...) and the message its reason. */
int consoles_open(manager *m, const char *user, const char *name, int vnc, console_link **out,
                  int *host_status) VMSEAL_MUST_CHECK;
/* Relay between the client's websocket (fd, after the 101) and the host's
 * until either ends; frees l. fd -1: the client never switched; just free. */
void consoles_relay(console_link *l, int fd, const char *extra, size_t extra_len);
/* NICs (nics.c): list (GET), add (POST, req), remove (DELETE, mac); on the
 * VM's host, powered off; events vm.nic-add and vm.nic-remove. */
int vms_nic(manager *m, const char *user, const char *name, const char *method, const char *mac,
            const json_t *req, json_t **out);
/* A one-time NBD-over-TLS endpoint for one disk (the host's answer). */
int vms_export(manager *m, const char *user, const char *name, const json_t *req, json_t **out);
/* The running guest's memory into its VM home (sealed when encrypted). */
int vms_dump(manager *m, const char *user, const char *name, json_t **out);
/* action: list | create | revert | remove (snap: the snapshot's name) */
int vms_snapshot(manager *m, const char *user, const char *name, const char *action,
                 const char *snap, int memory, json_t **out);

/* ---- tasks.c: intents, host tasks, reconciliation -------------------------- */

/* Task states that are not finished (SQL list): such a task owns its VM. */
#define TASKS_OPEN_SQL "('pending', 'running', 'cancelling', 'rolling-back', 'blocked')"
int tasks_get(manager *m, long long id, json_t **out);
int tasks_list(manager *m, json_t **out);
/* The id of the VM's unfinished task, 0 when none. */
long long tasks_open_for(manager *m, const char *vm_uuid);
/* An operation on a VM the manager asks a host to carry out. */
typedef struct task_intent {
    const char *user, *vm_uuid, *vm_name, *host;
    const char *action;            /* encrypt, decrypt, recrypt-shallow, recrypt-deep */
    const json_t *params;          /* old_policy, policy, old_kek_id, old_kms, kek_id, kms, deep */
    const char *new_kek, *new_kms; /* a KEK made for it, recorded 'pending' with the intent */
} task_intent;
/* Record the intent (task 'pending' and its new KEK, one transaction),
 * then hand it to the host: push the KEKs it needs, ask it to start, and
 * record that it did ('running'). *out = {task}. -EBUSY when the VM has an
 * unfinished task already. A host that refuses ends the task ('error',
 * nothing changed); one that cannot be reached leaves it to the watcher,
 * which finds out from the host what happened. */
int tasks_run(manager *m, const task_intent *in, json_t **out);
/* Follow an operation the host has taken already (action "import": a disk
 * imported or added by its host task host_task): a task recorded
 * 'running' at once, which the watcher follows to its end (progress, the
 * host's result; the inventory's disks refreshed on success). Cancelling
 * stops the host's task and keeps the partial disk (no rollback of a
 * create); task resume finishes it. *out = the task. -EBUSY when the VM
 * has an unfinished task. params: from?, size_mb?, disk, old_kek_id and
 * old_kms (the VM's KEK, pushed to the host on a resume). */
int tasks_follow(manager *m, const task_intent *in, const char *host_task, json_t **out);
/* Cancel: the task goes back — the host's task is stopped and what it did
 * rolled back — and ends 'cancelled' (or 'success' when it had finished).
 * -EALREADY when it has ended. *out = {task}. */
int tasks_cancel(manager *m, const char *user, long long id, json_t **out);
/* Resume: a 'running' task waiting to try again, or a 'blocked' one, goes
 * on forward now with fresh tries; one that ended without doing it
 * ('error', 'rolled-back', 'cancelled') runs again from the start with the
 * same intent and KEK (-ESTALE when the VM moved on or the KEK is gone).
 * *out = {task}. */
int tasks_resume(manager *m, const char *user, long long id, json_t **out);
/* End the VM's unfinished tasks because it leaves the inventory
 * (unregister): its host keeps it as it is, no KEK changes state. */
int tasks_let_go(manager *m, const char *vm_uuid);
/* Compare the manager's record of the VM with its host's view (GET
 * /v1/vms/{uuid}, vm) and bring the manager in line when the VM has no
 * unfinished task (docs/architecture.md, "who wins"). 1 when it adopted an
 * unfinished operation of the host as a task (the VM is busy), else 0. */
int tasks_sync_vm(manager *m, const char *vm_uuid, const json_t *vm);
/* Compare every host's VMs at the watcher's next round (a host came back). */
void tasks_reconcile_soon(manager *m);
int tasks_start_watcher(manager *m);
void tasks_stop_watcher(manager *m);

/* ---- reconcile.c: the host's view against a task (no I/O) ------------------ */

#define VIEW_KEK_MAX 160
typedef struct host_view {
    int found;                     /* the host has the VM */
    int encrypted;
    char kek[VIEW_KEK_MAX];        /* the KEK of its key safes ("" none) */
    char op[24];                   /* unfinished operation in vm.conf ("" none) */
    char op_kek[VIEW_KEK_MAX];     /* the KEK it moves to (op.kek) */
    int power_on;
    int task_running;              /* a host task runs on the VM */
    char task_op[24], task_id[64];
    int task_progress;
    int last;                      /* a host task ended on the VM since the host started */
    char last_op[24], last_id[64], last_state[16], last_error[512];
    int last_errno;
    int last_rolled_back;          /* it ran out of room and the host rolled it back */
    int locked;
    char locked_reason[512];
} host_view;
int host_view_parse(const json_t *vm, host_view *v);
/* "encrypted under K, unfinished recrypt-deep to K2" */
void host_view_summary(const host_view *v, char *buf, size_t len);

typedef enum { PHASE_BEFORE, PHASE_AFTER, PHASE_PARTIAL, PHASE_OTHER } task_phase;
task_phase task_phase_of(const char *action, const char *old_kek, const char *new_kek,
                         const host_view *v);
const char *task_phase_name(task_phase p);
int task_errno_retryable(int e);

typedef struct task_facts {
    const char *action, *state, *old_kek, *new_kek;
    const char *host_task;         /* the host task last started for it ("" / NULL: none) */
    int attempts;
    int64_t next_try_ms, updated_ms, now_ms;
} task_facts;
typedef struct task_rules {
    int retries;                   /* tries of a failing step */
    int64_t pending_grace_ms;      /* an intent the host shows no trace of after this long was
                                      never received */
} task_rules;
typedef enum {
    STEP_WAIT,        /* nothing to do now */
    STEP_PROGRESS,    /* the host works on it: record its progress */
    STEP_ADOPT,       /* a pending intent the host had taken: running */
    STEP_SUCCESS,     /* the host's VM is where the task goes */
    STEP_RETRY,       /* ask the host again (it resumes an unfinished operation) */
    STEP_ABANDON,     /* a pending intent the host never got: ends, nothing changed */
    STEP_FAIL,        /* the operation cannot be finished and changed nothing: ends */
    STEP_ROLLBACK,    /* the operation cannot be finished: roll back what it did */
    STEP_HOST_CANCEL, /* going back while the host still works forward: stop its task */
    STEP_HOST_ROLLBACK, /* ask the host to roll the unfinished operation back */
    STEP_ROLLED_BACK, /* going back and the VM is as it was: ends (cancelled, rolled back) */
    STEP_BLOCK,       /* the rollback cannot be done: wait for the user (resume or cancel) */
    STEP_DIVERGED,    /* the VM changed on its host: the task cannot go on */
    STEP_GONE,        /* the host no longer has the VM */
} task_step_kind;
typedef struct task_step {
    task_step_kind kind;
    char why[800];
} task_step;
void task_decide(const task_facts *t, const host_view *v, const task_rules *r, task_step *out);

/* ---- init.c ---------------------------------------------------------------- */

typedef struct mgr_init_opts {
    const char *const *hosts;      /* extra DNS names / IPs for the server certificate */
    size_t n_hosts;
    const char *ca_cert, *ca_key;  /* reuse an existing CA */
    const char *database;          /* default DIR/managerd.db */
    const char *listen;
    int port;
    const char *admin_name;        /* default "administrator" */
} mgr_init_opts;
int mgr_init(const char *dir, const mgr_init_opts *o);
int mgr_issue_host(const mgr_config *cfg, const char *name, const char *outdir,
                   const char *const *names, size_t n_names);

#endif
