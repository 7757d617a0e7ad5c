/* vmseal-hostd — the host: its datastore of VMs, its KEKs, its tasks, and
 * the JSON API the manager drives (docs/api.md, "Host agent API").
 *
 * The API handler is transport-free: hostd_host_handle() takes a method,
 * a path and a body and returns a status and a JSON body, so the daemon
 * plugs it into the HTTPS server (lib/https_server) and tests may call it
 * directly.
 */
#ifndef VMSEAL_HOSTD_HOST_H
#define VMSEAL_HOSTD_HOST_H

#include <jansson.h>

#include <vmseal/common.h>
#include <vmseal/kekdelivery.h>

#include "vm.h"

typedef struct hostd_host_config {
    const char *datastore;          /* directory holding one folder per VM */
    const char *provider;           /* key provider name for KEKs stored without one */
    const char *qemu;               /* NULL: default */
    hostd_accel accel;
    const char *ovmf_code;          /* NULL: /usr/share/OVMF/OVMF_CODE_4M.fd */
    const char *ovmf_vars;          /* NULL: /usr/share/OVMF/OVMF_VARS_4M.fd */
    unsigned threads;               /* disk conversion threads; 0 = all CPUs */
    int power_off_grace_ms;         /* default for power-off; 0: 30000 */
    const char *allowed_subject;    /* only this client certificate subject may call
                                       the API (NULL: any verified client) */
    const char *name;               /* host name as registered with the manager: sealed
                                       KEKs are bound to it (NULL: "localhost") */
    const char *images;             /* boot files (kernel, initrd): the API names files
                                       in this folder (NULL: DATASTORE/.images, made) */
    const char *qemu_user;          /* QEMU runs as this user when hostd is root
                                       (NULL: hostd's user) */
    const struct hostd_vmnet_config *net; /* networks (hostd/nic.h; copied); NULL: none */
    const char *disk_path;          /* "nbd" (NULL: default) or "qemu-luks"
                                       (hostd/blockserver.h) */
    const char *nbdkit;             /* NULL: "nbdkit" on PATH */
    const char *nbd_plugin;         /* NULL: the installed nbdkit-vmseal-plugin.so */
    const char *export_listen;      /* disk exports (hostd/export.h) listen on this
                                       address (NULL: 127.0.0.1) */
    const struct hostd_hostmode *hostmode;  /* host encryption mode (hostmode.h; NULL: off);
                                       must outlive the host */
} hostd_host_config;

typedef struct hostd_host hostd_host;

/* Load every VM found in the datastore (a folder with a vm.conf). VMs that
 * fail to load are reported in the log and skipped. Makes the host's KEK
 * custody key pair (lib/crypto/kek_delivery.c): KEKs arrive only sealed to it. */
int hostd_host_open(const hostd_host_config *cfg, hostd_host **out) VMSEAL_MUST_CHECK;

/* Cancel running tasks (they stay resumable), wait for them, free. QEMUs
 * keep running. */
void hostd_host_close(hostd_host *h);

/* The VM with this uuid or NULL. The handle stays valid until
 * hostd_host_close (a deleted VM's too). */
hostd_vm *hostd_host_find_vm(hostd_host *h, const char *uuid);

/* KEK ids the VMs on this host need (JSON array, new ref). */
json_t *hostd_host_kek_ids(hostd_host *h);

/* Store a KEK (takes the secret). */
int hostd_host_put_key(hostd_host *h, const char *kek_id, const char *provider,
                        vmseal_secret *kek);

/* Open a KEK sealed to this host's custody key for (host name, kek_id,
 * provider) and store it. -EBADMSG when it does not open here. provider
 * NULL: the host's default provider. */
int hostd_host_put_sealed(hostd_host *h, const char *kek_id, const char *provider,
                           const uint8_t *blob, size_t bloblen) VMSEAL_MUST_CHECK;

/* The custody public key (X25519) sealed KEKs are made for. */
void hostd_host_custody_public(const hostd_host *h, uint8_t pub[VMSEAL_KD_PUB_LEN]);

/* Remember why a KEK could not be had (shown in the VM's locked_reason);
 * reason NULL forgets. */
void hostd_host_note_key(hostd_host *h, const char *kek_id, const char *reason);

/* Start tasks finishing the operations that were interrupted (crash,
 * restart) for VMs whose keys are now present. Returns how many started. */
int hostd_host_resume_pending(hostd_host *h);

/* Periodic housekeeping: notice guests that powered themselves off; seal
 * the console of VMs re-attached after a restart once their KEK is here. */
void hostd_host_tick(hostd_host *h);

/* One API request. path may carry a query ("?tail=N" of GET
 * /v1/vms/{uuid}/log). peer_subject: the verified client certificate
 * subject ("" when none). *status and *resp (new ref, may be NULL for 204). */
void hostd_host_handle(hostd_host *h, const char *method, const char *path, const char *body,
                        size_t body_len, const char *peer_subject, int *status, json_t **resp);

/* Log callback instead of the shared logger (include/vmseal/log.h; what
 * tests use to read the log). Never receives key material. */
void hostd_host_set_logger(hostd_host *h, void (*log)(void *arg, const char *line), void *arg);

#endif
