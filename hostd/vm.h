/* vmseal-hostd — one virtual machine: its home folder, its configuration,
 * its keys and its QEMU.
 *
 * Home folder <datastore>/<name>/:
 *   vm.conf      human-readable configuration, read and written only through
 *                the schema module (include/vmseal/vmrecord.h), with the key
 *                safes: the per-VM secret (object "vm:<uuid>") and each
 *                disk's secret (object "disk:<LUKS UUID of that disk>"), all
 *                wrapped by the KEK
 *   diskN.luks   LUKS1 image (encrypted VM) — passphrase hex(disk secret)
 *   diskN.img    raw image (VM without encryption)
 *   nvram.luks   UEFI variable store as LUKS1 — passphrase hex(VM secret)
 *   nvram.fd     the same without encryption
 *   vm.log       what hostd did to the VM (clear text; never guest output)
 *   serial.log   the console of a VM without encryption (0600)
 *   serial-NNNNNNNN.vmslog  the sealed console log of an encrypted VM
 *                (hostd/serial.h, docs/formats.md "Sealed log") under a
 *                key derived from the per-VM secret; encrypting a VM seals
 *                its serial.log, decrypting writes the sealed log out
 *   suspend-<hex>.vmss  a suspended encrypted VM's memory state, sealed
 *                (hostd/vmstate.h; .vmstate in clear for a VM without
 *                encryption); vm.conf state.file names it
 *   run-<host>/  serial.sock, vnc.sock, qemu.log, qmp.sock, qemu.pid: see
 *                hostd/qemu.h and hostd_vm_set_run_folder below
 *
 * Long operations (encrypt, decrypt, deep recrypt, create) first record
 * what they are about to do in vm.conf ("op = ..." plus the new key safes),
 * so a crash or a cancel at any moment leaves a VM that hostd finishes with
 * hostd_vm_resume() or puts back as it was with hostd_vm_rollback(); each
 * step replaces vm.conf atomically. An encrypt or decrypt writes new images
 * beside the old ones and switches vm.conf to all of them in one commit at
 * the end; the old images are removed after it. Disk data is converted
 * with the resumable bulk paths of include/vmseal/disk.h.
 *
 * Thread-safety: every function may be called from any thread. Operations
 * that change the VM are serialised: while one runs, others get -EBUSY.
 */
#ifndef VMSEAL_HOSTD_VM_H
#define VMSEAL_HOSTD_VM_H

#include <signal.h>
#include <stdint.h>

#include <jansson.h>

#include <vmseal/common.h>
#include <vmseal/disk.h>
#include <vmseal/vmrecord.h>

#include "keystore.h"
#include "qemu.h"
#include "qmp.h"

#define VMSEAL_VM_MAX_DISKS VMSEAL_VMREC_MAX_DISKS

/* Host-wide settings the VM code needs. */
typedef struct hostd_host_env {
    hostd_keystore *keys;
    const char *qemu;               /* NULL: default (hostd/qemu.h) */
    hostd_accel accel;
    const char *ovmf_code;          /* UEFI code image */
    const char *ovmf_vars;          /* UEFI variable store template */
    const char *ovmf_code_secure;   /* Secure Boot: SMM code image (OVMF_CODE_4M.ms.fd) */
    const char *ovmf_vars_secure;   /* Secure Boot: variables with Microsoft's keys
                                       enrolled (OVMF_VARS_4M.ms.fd) */
    unsigned threads;               /* for disk conversion; 0 = all CPUs */
    const char *images;             /* the images folder (boot files), for messages */
    int images_fd;                  /* that folder (O_PATH); kernel and initrd are
                                       names beneath it, opened with openat2 */
    const char *qemu_user;          /* QEMU runs as this user (-runas) when hostd is
                                       root; NULL: as hostd's user */
    const struct hostd_vmnet_config *net; /* networks, forward addresses (hostd/nic.h) */
    const struct hostd_diskpath *diskpath; /* hostd.conf disk_path (hostd/blockserver.h);
                                       NULL: QEMU's luks driver for every disk */
    const char *export_listen;      /* disk exports listen here (hostd.conf listen);
                                       NULL: 127.0.0.1 */
    int skip_space_check;           /* test hook VMSEAL_TEST_SKIP_SPACE_CHECK: operations
                                       start without checking the room they need (so
                                       that a test can fill the disk under them) */
} hostd_host_env;

typedef struct hostd_vm_create_req {
    const char *name;               /* [A-Za-z0-9._-]{1,64}, not starting with '.' */
    const char *uuid;               /* NULL: random */
    unsigned cpus;                  /* 1..64 */
    unsigned memory_mb;             /* 16..65536 */
    const uint64_t *disk_sizes;     /* bytes, each a multiple of 1 MiB, 1 MiB..1 TiB */
    const char *const *disk_from;   /* NULL, or per disk NULL or the image in the images
                                       folder it is imported from (its size from
                                       hostd_vm_inspect_image): then the images are not
                                       made by hostd_vm_create; vm.conf keeps op = create
                                       and the caller finishes with hostd_vm_resume */
    size_t ndisks;                  /* 0..VMSEAL_VM_MAX_DISKS */
    vmseal_firmware firmware;
    const char *kernel, *initrd, *append;   /* direct kernel boot (optional); kernel and
                                               initrd: names in the images folder */
    int encrypted;
    const char *kek_id;             /* required when encrypted; must be in the keystore */
    int tpm;                        /* a vTPM 2.0 (encrypted VMs only; hostd/tpm.h) */
    int secure_boot;                /* UEFI Secure Boot (firmware uefi only) */
} hostd_vm_create_req;

/* Progress of a long operation over all the VM's images, plus a cancel flag
 * (checked between and inside conversions). */
typedef struct hostd_vm_progress {
    vmseal_progress_fn fn;
    void *ctx;
    volatile sig_atomic_t *cancel;
} hostd_vm_progress;

typedef struct hostd_vm hostd_vm;

int hostd_vm_name_valid(const char *name);

/* A boot file (kernel, initrd) is a relative name in the images folder:
 * '/'-separated components of [A-Za-z0-9._-], none "." or "..", at most
 * 255 characters; no leading '/'. */
int hostd_vm_boot_name_valid(const char *name);

/* Open a boot file beneath env->images_fd (openat2 RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS), a regular file only: the
 * descriptor, or -EINVAL with a message naming `what`. */
int hostd_vm_open_boot_file(const hostd_host_env *env, const char *what, const char *name);

/* Create the home folder, configuration and images. On failure nothing is
 * left behind. -EEXIST when the name is taken. */
int hostd_vm_create(const hostd_host_env *env, const char *datastore,
                     const hostd_vm_create_req *req, const hostd_vm_progress *prog,
                     hostd_vm **out) VMSEAL_MUST_CHECK;

/* An image of the images folder to import (raw, qcow2, vmdk, vdi, vhdx;
 * include/vmseal/diskimport.h): checked, and the disk size it becomes
 * (whole MiB). -EINVAL with the reason. */
int hostd_vm_inspect_image(const hostd_host_env *env, const char *name, uint64_t *size)
    VMSEAL_MUST_CHECK;

/* Powered off, nothing unfinished: add a disk, empty of `size` bytes
 * (whole MiB) or imported from the image `from` of the images folder
 * (size NULL). Records it in vm.conf (op = create, diskN.from; a new disk
 * secret wrapped by the VM's KEK when encrypted) and returns its index;
 * hostd_vm_resume then makes or imports it (resumable). */
int hostd_vm_add_disk(hostd_vm *vm, const hostd_host_env *env, const char *from, uint64_t size)
    VMSEAL_MUST_CHECK;

/* Powered off, nothing unfinished: remove disk idx from vm.conf (the
 * later disks move down one index; their files keep their names) and
 * delete its file, or keep it in the home (keep_file; no longer used by
 * the VM). -ENOENT for no such disk. */
int hostd_vm_remove_disk(hostd_vm *vm, size_t idx, int keep_file) VMSEAL_MUST_CHECK;

/* Clone a powered-off VM (nothing unfinished, not suspended) into a new VM
 * `name` with `uuid` in the same datastore. Every image (disks, NVRAM) is
 * copied (holes kept) into DATASTORE/.NAME.clone, which is renamed to
 * DATASTORE/NAME only once the clone's vm.conf is written: a failed or
 * interrupted clone leaves no VM (the folder of an interrupted one is
 * removed by the next clone to that name, and hostd never loads a folder
 * whose name starts with '.').
 * An encrypted source gives an encrypted clone: a new per-VM secret and new
 * disk secrets, all wrapped by kek_id (the clone's own KEK, loaded here);
 * each copied LUKS image gets a keyslot for its new secret and loses the
 * source's. The LUKS volume key (DEK) and LUKS UUID stay the source's
 * unless deep (then each image is re-encrypted under a new volume key).
 * NICs get new MAC addresses and lose their port forwards; the vTPM state,
 * the saved memory state, the sealed console logs and hostd's log are not
 * copied. */
typedef struct hostd_vm_clone_req {
    const char *name;
    const char *uuid;
    const char *kek_id;     /* encrypted source: required; else NULL */
    int deep;               /* new volume keys too */
} hostd_vm_clone_req;
int hostd_vm_clone(hostd_vm *src, const hostd_host_env *env, const char *datastore,
                   const hostd_vm_clone_req *req, const hostd_vm_progress *prog, hostd_vm **out)
    VMSEAL_MUST_CHECK;

/* Load a VM from its home (reads vm.conf; re-attaches to its QEMU if one
 * still runs). */
int hostd_vm_load(const char *home, hostd_vm **out) VMSEAL_MUST_CHECK;

/* Free the handle (QEMU keeps running). */
void hostd_vm_free(hostd_vm *vm);

/* Immutable after load. */
const char *hostd_vm_uuid(const hostd_vm *vm);
const char *hostd_vm_name(const hostd_vm *vm);
const char *hostd_vm_home(const hostd_vm *vm);

struct hostd_qmp;
/* A disk export (hostd/export.h): the VM must be unlocked and without an
 * unfinished operation; it stays busy ("exporting": no power-on, no
 * operation) until hostd_vm_export_end. Gives the disk's image name in the
 * home, its guest-visible size and, for a powered-off VM, (encrypted disk)
 * its LUKS passphrase (NULL for a plain disk); for a running VM *live is its
 * QEMU monitor (the export fleeces the disk's node, hostd/fleece.h) and
 * *pass stays NULL. -EBUSY, -ENOENT, -ENOKEY. */
int hostd_vm_export_begin(hostd_vm *vm, const hostd_host_env *env, size_t idx, char *file,
                          size_t flen, uint64_t *size, vmseal_secret **pass,
                          struct hostd_qmp **live) VMSEAL_MUST_CHECK;
/* While exporting: the running VM's monitor again (NULL: QEMU is gone). */
struct hostd_qmp *hostd_vm_export_monitor(hostd_vm *vm);
/* The VM home's descriptor. */
int hostd_vm_home_dirfd(const hostd_vm *vm);
/* Whether disk idx has a key safe (is encrypted). */
int hostd_vm_disk_encrypted(hostd_vm *vm, size_t idx);
void hostd_vm_export_end(hostd_vm *vm);

/* KEK ids this VM needs (its key safes, pending operation). Returns a JSON
 * array of strings (new ref). */
json_t *hostd_vm_kek_ids(hostd_vm *vm);

/* 1 and a reason when the VM cannot be opened with the keys at hand. */
int hostd_vm_locked(hostd_vm *vm, const hostd_host_env *env, char *reason, size_t len);

/* Name of the interrupted operation recorded in vm.conf, or "" (copied). */
void hostd_vm_pending_op(hostd_vm *vm, char *buf, size_t len);

/* 1 when QEMU runs (reaps it when it has exited). */
int hostd_vm_running(hostd_vm *vm);

/* JSON view for the API (new ref). */
json_t *hostd_vm_describe(hostd_vm *vm, const hostd_host_env *env);

int hostd_vm_power_on(hostd_vm *vm, const hostd_host_env *env) VMSEAL_MUST_CHECK;
/* ACPI power-off, after grace_ms QEMU is stopped. 0 or 1 as
 * hostd_qemu_power_off; -EALREADY when not running. */
int hostd_vm_power_off(hostd_vm *vm, int grace_ms);

/* Suspend: the guest's memory state goes to a file in the home (sealed
 * under a key derived from the per-VM secret for an encrypted VM:
 * hostd/vmstate.h), vm.conf records it (state.file) and QEMU ends. On
 * failure the guest runs on. Powering on a suspended VM resumes it from
 * that file (which is removed once the guest runs); when the file is
 * damaged the power-on fails with a message saying so and the VM stays
 * suspended. Encrypt, decrypt, deep recrypt and reconfigure refuse a
 * suspended VM (EBUSY); a shallow recrypt keeps the per-VM secret, so the
 * state file stays valid. -EALREADY when not powered on. */
int hostd_vm_suspend(hostd_vm *vm, const hostd_host_env *env) VMSEAL_MUST_CHECK;
/* A suspended VM, not running: forget and remove its saved state (it is
 * then powered off). -EALREADY when not suspended. */
int hostd_vm_discard_state(hostd_vm *vm) VMSEAL_MUST_CHECK;

/* Powered-off VM without encryption -> encrypted under kek_id. */
int hostd_vm_encrypt(hostd_vm *vm, const hostd_host_env *env, const char *kek_id,
                      const hostd_vm_progress *prog) VMSEAL_MUST_CHECK;
/* Powered-off encrypted VM -> plain. */
int hostd_vm_decrypt(hostd_vm *vm, const hostd_host_env *env,
                      const hostd_vm_progress *prog) VMSEAL_MUST_CHECK;
/* Shallow (deep = 0): key safes rewrapped under new_kek_id; allowed while
 * running. Deep: every image gets a new LUKS volume key (data re-encrypted)
 * and the key safes move to new_kek_id; powered off only. */
int hostd_vm_recrypt(hostd_vm *vm, const hostd_host_env *env, const char *new_kek_id,
                      int deep, const hostd_vm_progress *prog) VMSEAL_MUST_CHECK;
/* Finish the operation recorded in vm.conf (no-op when none). */
int hostd_vm_resume(hostd_vm *vm, const hostd_host_env *env,
                     const hostd_vm_progress *prog) VMSEAL_MUST_CHECK;
/* Is there room on the VM's datastore for `what` ("encrypt", "decrypt",
 * "recrypt-deep", or "resume": what vm.conf records as unfinished)? The
 * bytes it still has to write, counted from vm.conf and the files: an
 * encrypt writes every image anew beside the old one (dense: payload plus
 * the LUKS header), a decrypt at most every image's payload, a deep
 * recrypt the allocated bytes of its largest image not yet rekeyed (its
 * partial image is beside it); what a previous run wrote counts as done;
 * plus 4 MiB for vm.conf, checkpoints and logs. 0, or -ENOSPC with a
 * message naming what it needs and what is free (MiB). Every operation
 * that writes images (and, when they come, snapshots) asks first; the API
 * asks too, so that a refusal is an answer and not a task that fails. */
int hostd_vm_check_space(hostd_vm *vm, const hostd_host_env *env, const char *what)
    VMSEAL_MUST_CHECK;

/* Undo the unfinished operation recorded in vm.conf, back to the VM as it
 * was before (no-op when none): the images an encrypt or decrypt was
 * writing and the partial images of a deep recrypt are removed first (the
 * room comes back), then vm.conf is replaced once by the record without
 * the operation. Needs no free space and no KEK, except to put the console
 * log back under the old policy when the operation had converted it. A
 * deep recrypt rolled back leaves the disks it had rekeyed with their new
 * volume keys under the same disk secrets and KEK. An unfinished create,
 * and a vm.conf an older hostd wrote whose originals are gone, cannot be
 * rolled back (-ENOTSUP, -ENOTRECOVERABLE: resume instead). */
int hostd_vm_rollback(hostd_vm *vm, const hostd_host_env *env) VMSEAL_MUST_CHECK;

/* Powered off only: change what is given (0 / NULL: keep; "" removes
 * kernel, initrd or append). */
int hostd_vm_reconfigure(hostd_vm *vm, const hostd_host_env *env, unsigned cpus,
                          unsigned memory_mb, const char *kernel, const char *initrd,
                          const char *append) VMSEAL_MUST_CHECK;

/* Powered off only, no unfinished operation: fn changes a copy of the
 * record, which is then checked and committed as vm.conf (fn returns 0) or
 * dropped (fn returns -errno). -EBUSY while running. */
int hostd_vm_edit(hostd_vm *vm, const char *what, int (*fn)(vmseal_vmrec *next, void *ctx),
                  void *ctx) VMSEAL_MUST_CHECK;

/* The same, but a running VM is changed too: after fn, live(qmp, next,
 * ctx) applies the change to its QEMU (hot plug) before the record is
 * committed; live returns -errno to refuse (nothing is committed). */
struct hostd_qmp;
int hostd_vm_edit_live(hostd_vm *vm, const char *what,
                       int (*fn)(vmseal_vmrec *next, void *ctx),
                       int (*live)(struct hostd_qmp *qmp, const vmseal_vmrec *next, void *ctx),
                       void *ctx) VMSEAL_MUST_CHECK;

/* A copy of the current record (vmseal_vmrec_free); NULL out of memory. */
vmseal_vmrec *hostd_vm_record(hostd_vm *vm);
/* Powered off, encrypted VMs only: add (on) or remove the vTPM. Either way
 * the old TPM state is deleted (a new vTPM starts empty). */
int hostd_vm_set_tpm(hostd_vm *vm, int on) VMSEAL_MUST_CHECK;

/* A running VM's memory as an ELF core in its home, sealed under the VM's
 * KEK when it is encrypted (hostd/coredump.h). -ESRCH when it is off. */
struct hostd_coredump_result;
int hostd_vm_dump(hostd_vm *vm, const hostd_host_env *env,
                  struct hostd_coredump_result *res) VMSEAL_MUST_CHECK;

/* Powered off only: delete the home folder. The handle stays valid for
 * hostd_vm_free only. */
int hostd_vm_destroy(hostd_vm *vm) VMSEAL_MUST_CHECK;

/* Periodic: notice a guest that powered itself off; give the console of a
 * VM re-attached after a restart its log key once the KEK is loaded. */
void hostd_vm_tick(hostd_vm *vm, const hostd_host_env *env);

/* The last `tail` bytes (at most 1 MiB) of the guest's serial console log
 * and the log's total length. Plain serial.log, or for an encrypted VM the
 * sealed log, verified and decrypted with the log key from vm.keysafe.
 * *text is malloc'd (wipe and free with hostd_console_text_free), not
 * NUL-terminated. -ENOKEY "VM locked: KEK ... not loaded"; -EPROTO,
 * -EBADMSG, -ENOTSUP, -ELOOP: the log is damaged (message says where);
 * -EBUSY during encrypt/decrypt. */
int hostd_vm_serial_log(hostd_vm *vm, const hostd_host_env *env, size_t tail, uint8_t **text,
                         size_t *len, uint64_t *total, int *encrypted) VMSEAL_MUST_CHECK;

/* Interactive consoles (hostd/console_mux.c). A tap sees everything the
 * serial console's log thread reads (after the sealed log got it) and, with
 * len 0, the console's end (then it is let go). fn runs on the log thread
 * and must not block. At most HOSTD_VM_TAPS_MAX taps (-EUSERS); -ENOTCONN
 * when the VM has no console socket (not running, or not encrypted: the
 * console of a VM without encryption is a file). After untap returns, fn
 * is not called again with arg. */
#define HOSTD_VM_TAPS_MAX 4
typedef void (*hostd_vm_tap_fn)(void *arg, const uint8_t *data, size_t len);
int hostd_vm_console_tap(hostd_vm *vm, hostd_vm_tap_fn fn, void *arg) VMSEAL_MUST_CHECK;
void hostd_vm_console_untap(hostd_vm *vm, void *arg);
/* Keystrokes to the guest's serial port (-ETIMEDOUT: not taken in time). */
int hostd_vm_console_input(hostd_vm *vm, const uint8_t *data, size_t len, int timeout_ms)
    VMSEAL_MUST_CHECK;
/* A connection to QEMU's VNC server on <home>/vnc.sock, or -errno. */
int hostd_vm_vnc_connect(hostd_vm *vm);
int hostd_vm_encrypted(hostd_vm *vm);

/* This host's run folder for QEMU's run files (qemu.pid, qmp.sock,
 * serial.sock, vnc.sock, qemu.log): <home>/run-<host_name>, so that two
 * hosts sharing a datastore (a live migration) never clash; NULL or
 * never called: the home itself. Set once, before any VM is loaded. */
void hostd_vm_set_run_folder(const char *host_name);

/* Live migration (hostd/migrate.c). The destination: power on paused,
 * waiting for the incoming stream (QEMU -incoming defer); a suspended VM
 * is refused (EBUSY). */
int hostd_vm_power_on_incoming(hostd_vm *vm, const hostd_host_env *env) VMSEAL_MUST_CHECK;
/* Hold the VM's operation slot while QEMU runs (EALREADY: not powered on,
 * EBUSY: another operation); hostd_vm_monitor is its QMP while held. */
int hostd_vm_op_begin(hostd_vm *vm, const char *what) VMSEAL_MUST_CHECK;
void hostd_vm_op_end(hostd_vm *vm);
hostd_qmp *hostd_vm_monitor(hostd_vm *vm);
/* 1 when the VM has a vTPM: its migration is refused (-EBUSY; swtpm's state
 * does not travel in the stream yet, docs/architecture.md) */
int hostd_vm_has_tpm(hostd_vm *vm);
/* The destination's sealed console log: held in memory from the incoming
 * power-on (the source still writes the log in the shared home) until
 * released, once the source's QEMU ended; then its own segment follows. */
int hostd_vm_console_held(hostd_vm *vm);
int hostd_vm_console_release(hostd_vm *vm, const hostd_host_env *env);

/* Append a line to the VM's vm.log (clear text; never key material). */
void hostd_vm_log(hostd_vm *vm, const char *fmt, ...) VMSEAL_PRINTF(2, 3);

#endif
