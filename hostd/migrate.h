/* vmseal-hostd — one live migration of a running QEMU, encrypted.
 *
 * QEMU migrates to a descriptor (QMP getfd + migrate / migrate-incoming
 * "fd:NAME"): one end of a socketpair; the other end goes to a
 * vmseal-migrate-relay process (hostd/migrate_relay.c) that seals the
 * stream into AES-256-GCM frames (include/vmseal/migstream.h) and carries
 * it over TCP. The monitor never opens a network socket: the relay does,
 * and it holds the one-time key and that socket only. It is started with
 * fork + exec (no copy of the monitor's memory: vmseal_secret pages are
 * not even mapped in a forked child), with only these descriptors: stdin
 * (/dev/null), hostd's stdout and stderr (the log), the socketpair end, the
 * read end of a pipe carrying the 32-byte key and 8-byte nonce (then
 * closed); and for the destination the write end of a pipe on which it
 * says its port.
 * Nothing secret is in its argv or environment.
 *
 * Source: hostd_migrate_outgoing() then hostd_migrate_wait(); on any
 * failure QEMU ends the migration and the guest goes on running here.
 * Destination: QEMU started with hostd_qemu_spec.incoming_defer (the same VM
 * config, the same disks on the shared datastore, paused), then
 * hostd_migrate_incoming() (says the port to give the source), then,
 * after the source completed, hostd_migrate_wait() and `cont`.
 */
#ifndef VMSEAL_HOSTD_MIGRATE_H
#define VMSEAL_HOSTD_MIGRATE_H

#include <signal.h>
#include <sys/types.h>

#include <vmseal/common.h>
#include <vmseal/secret.h>

#include "qmp.h"

typedef struct hostd_migrate_spec {
    const char *relay;          /* vmseal-migrate-relay; NULL: $VMSEAL_MIGRATE_RELAY or the
                                   one beside /proc/self/exe */
    const vmseal_secret *key;   /* the one-time key, VMSEAL_MIG_KEY_LEN bytes */
    uint64_t nonce;             /* the one-time nonce */
    const char *address;        /* source: the destination relay "HOST:PORT";
                                   destination: where to listen "ADDR:PORT" (port 0: any) */
    const char *peer;           /* destination: accept only this source address (NULL: any) */
    int timeout_s;              /* the relay gives up after this long without progress
                                   (0: 60) */
    uint64_t max_bandwidth;     /* source: QEMU's max-bandwidth in bytes/s (0: 1 TiB/s, i.e.
                                   no cap; QEMU's own default is 128 MiB/s) */
} hostd_migrate_spec;

typedef struct hostd_migration hostd_migration;

/* Destination: start the receiving relay and point QEMU's migrate-incoming
 * at it. *port: the TCP port the relay listens on. */
int hostd_migrate_incoming(hostd_qmp *q, const hostd_migrate_spec *spec, int *port,
                           hostd_migration **out) VMSEAL_MUST_CHECK;

/* Source: start the sending relay and QEMU's migrate to it. */
int hostd_migrate_outgoing(hostd_qmp *q, const hostd_migrate_spec *spec,
                           hostd_migration **out) VMSEAL_MUST_CHECK;

/* Source: wait (up to timeout_ms) for QEMU's migration to end and the
 * relay to exit: 0 completed and the relay sent the end frame; -EIO failed
 * (QEMU's or the relay's reason in vmseal_last_error()), -ETIMEDOUT.
 * Destination: wait for the relay to have verified the whole stream and,
 * with q, for QEMU to have loaded it (paused, ready for `cont`); a source
 * that gave up ends its stream too, and only QEMU's own end marker tells:
 * the destination QEMU then exits (-EIO). */
int hostd_migrate_wait(hostd_migration *m, hostd_qmp *q, int timeout_ms) VMSEAL_MUST_CHECK;

/* Cancel: QMP migrate_cancel (source, q not NULL) and stop the relay. */
void hostd_migrate_cancel(hostd_migration *m, hostd_qmp *q);

/* The relay's pid (tests look at its argv and environment). */
pid_t hostd_migrate_relay_pid(const hostd_migration *m);

/* Stop the relay if it still runs, reap it, free. */
void hostd_migrate_free(hostd_migration *m);


/* ---- the API's side: one VM's migration between two hosts, as the
 * manager drives it (hostd/host.c routes, docs/api.md "Host agent API").
 * The spec arrives in the request body over mutual TLS: {"key": 64 hex
 * digits, "nonce": 16 hex digits, "listen": "ADDR:PORT" (destination),
 * "peer": "ADDR" (destination: the source's address), "dest": "HOST:PORT"
 * (source)}. The key goes into a vmseal_secret and the JSON text holding it
 * is wiped; it is never logged. */
#include <jansson.h>

typedef struct hostd_vm hostd_vm;
typedef struct hostd_host_env hostd_host_env;

typedef struct hostd_migrate_req {
    vmseal_secret *key;
    uint64_t nonce;
    char address[320];      /* destination: listen; source: dest */
    char peer[64];          /* destination: accept only this address ("" any) */
} hostd_migrate_req;

/* Parse and wipe (dest: a destination's spec). */
int hostd_migrate_req_parse(json_t *spec, int dest, hostd_migrate_req *out) VMSEAL_MUST_CHECK;
void hostd_migrate_req_clear(hostd_migrate_req *rq);

/* Destination: QEMU paused waiting (-incoming defer) and the receiving
 * relay listening; *port for the source. On failure QEMU is stopped. */
int hostd_vm_migrate_in_start(hostd_vm *vm, const hostd_host_env *env,
                              const hostd_migrate_req *rq, int *port, hostd_migration **out)
    VMSEAL_MUST_CHECK;
/* Destination (a task): wait for the whole stream, verified and loaded,
 * then `cont`: the guest runs here. On failure QEMU is stopped. Takes m. */
int hostd_vm_migrate_in_finish(hostd_vm *vm, hostd_migration *m, int timeout_ms)
    VMSEAL_MUST_CHECK;

/* Source (a task): migrate; progress in percent of RAM sent; *cancel set:
 * cancelled. 0: QEMU completed and the relay sent the end frame; the guest
 * here is paused (postmigrate) until hostd_vm_migrate_out_end. On failure
 * the guest runs on here. */
int hostd_vm_migrate_out(hostd_vm *vm, const hostd_migrate_req *rq,
                         void (*progress)(int pct, void *ctx), void *ctx,
                         volatile sig_atomic_t *cancel) VMSEAL_MUST_CHECK;
/* Source, after the manager saw the destination run (completed = 1): QEMU
 * here ends; or the destination did not take over (0): the guest
 * continues here. */
int hostd_vm_migrate_out_end(hostd_vm *vm, int completed) VMSEAL_MUST_CHECK;

#endif
