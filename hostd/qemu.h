/* vmseal-hostd — running QEMU guests whose disks are LUKS1 images.
 *
 * QEMU is started paused (-S) with no disks. The disks are then added over
 * the QMP monitor: for an encrypted disk a `secret` object whose data (the
 * LUKS passphrase) travels over the monitor socket only — never argv,
 * environment or a file — then `blockdev-add` (driver luks, key-secret),
 * `device_add virtio-blk-pci`, and the secret object is deleted again once
 * QEMU has opened the volume key. Then `cont`.
 *
 * The VM's run directory (its home) receives:
 *   serial.log   the guest's serial console (clear text, appended; mode
 *                0600, opened by hostd without following symlinks and
 *                handed to QEMU as a descriptor), unless serial_socket
 *                (encrypted VMs)
 *   serial.sock  the console served by QEMU for hostd: with serial_socket
 *                hostd seals it (hostd/serial.h) — nothing of it is
 *                written in clear; without, hostd reads it only for the
 *                interactive consoles (QEMU logs to serial.log itself)
 *   vnc.sock     QEMU's VNC server (never TCP)
 *   qemu.log     QEMU's own messages (clear text, appended)
 *   qmp.sock     the monitor socket (the directory should be mode 0700)
 *   qemu.pid     QEMU's pid (written and locked by QEMU)
 * QEMU runs in its own session, so it survives a restart of hostd, which
 * then re-attaches with hostd_qemu_attach().
 */
#ifndef VMSEAL_HOSTD_QEMU_H
#define VMSEAL_HOSTD_QEMU_H

#include <signal.h>
#include <sys/types.h>

#include <vmseal/common.h>
#include <vmseal/secret.h>

/* QEMU's VNC server: a UNIX socket in the VM home, never TCP (consoles,
 * hostd/console_mux.c). */
#define HOSTD_VNC_SOCKET "vnc.sock"

typedef enum hostd_accel {
    VMSEAL_ACCEL_TCG = 0,
    VMSEAL_ACCEL_KVM = 1,
} hostd_accel;

/* A snapshot layer over a disk (hostd/snapshot.h): a qcow2 overlay, LUKS-
 * encrypted when it has a passphrase. */
typedef struct hostd_qemu_layer {
    const char *path;                  /* file name in the disk's dir_fd */
    const vmseal_secret *passphrase;   /* NULL: plain qcow2 */
} hostd_qemu_layer;

#define HOSTD_QEMU_MAX_LAYERS 8

typedef struct hostd_qemu_disk {
    const char *path;                  /* image file: opened by hostd (O_NOFOLLOW, regular
                                          files only) and handed to QEMU in an fdset */
    int dir_fd;                        /* > 0: path is a file name in this folder (the VM
                                          home's descriptor, openat); 0: path as given */
    const vmseal_secret *passphrase;   /* LUKS1 passphrase (borrowed); NULL: raw image */
    int read_only;
    int nbd_sock;                      /* > 0: a connected socket to the disk's NBD server
                                          (hostd/blockserver.h), handed to QEMU (getfd) for
                                          a blockdev driver=nbd; path and passphrase are
                                          then not used by QEMU */
    const hostd_qemu_layer *layers;    /* overlays on the image, bottom first: each one's
                                          backing node is the one below (given explicitly,
                                          never from the overlay's header); the guest sees
                                          the last */
    size_t nlayers;                    /* at most HOSTD_QEMU_MAX_LAYERS */
} hostd_qemu_disk;

/* A virtio-net card. */
typedef struct hostd_qemu_nic {
    const char *mac;                   /* xx:xx:xx:xx:xx:xx */
    const char *netdev;                /* user mode: "user,..." (-netdev options, no id);
                                          NULL with tap_fd */
    int tap_fd;                        /* > 0: a tap hostd opened (hostd/nic.c), handed to
                                          QEMU as a descriptor: -netdev tap,fd=N */
} hostd_qemu_nic;

#define HOSTD_QEMU_MAX_NICS 4

typedef struct hostd_qemu_spec {
    const char *qemu;          /* binary; NULL: $VMSEAL_QEMU or qemu-system-x86_64 */
    const char *run_dir;       /* the VM home (see above), or this host's run folder in it
                                  (hostd/vm.h hostd_vm_set_run_folder); must exist */
    const char *home_dir;      /* where a plain VM's serial.log goes; NULL: run_dir */
    const char *name;          /* [A-Za-z0-9._-]+ */
    const char *uuid;          /* RFC 4122 text form */
    unsigned cpus;             /* 0: 1 */
    unsigned memory_mb;        /* 0: 256 */
    hostd_accel accel;
    const char *kernel;        /* direct kernel boot (optional): a path QEMU opens */
    const char *initrd;
    int kernel_fd, initrd_fd;  /* > 0: the opened kernel / initrd, used instead of the
                                  paths (QEMU reads them as /proc/self/fd/N); 0: none */
    const char *run_as;        /* hostd runs as root: QEMU drops to this user (-runas)
                                  once everything is open; NULL: hostd's user */
    const char *append;
    const char *firmware_code; /* UEFI: firmware code image (OVMF_CODE_4M.fd); alone it is
                                  loaded with -bios (a combined image such as OVMF.fd) */
    const hostd_qemu_disk *nvram; /* UEFI: the variable store as pflash1 (LUKS1 when a
                                      passphrase is set); its size must be the firmware's
                                      (e.g. that of OVMF_VARS_4M.fd) */
    const hostd_qemu_disk *disks;
    size_t ndisks;             /* at most 16 */
    int timeout_ms;            /* for start-up and each monitor command; 0: 15000 */
    int serial_socket;         /* console on run_dir/serial.sock only, connected before
                                  the guest runs (hostd_qemu_take_serial); else QEMU
                                  appends it to serial.log and serves serial.sock too
                                  (not connected: hostd_qemu_connect_serial) */
    int incoming_defer;        /* start with -incoming defer and leave the guest paused:
                                  the caller feeds the stream (a live-migration
                                  destination, hostd/migrate.h; saved state,
                                  hostd/vmstate.h) and continues it */
    const hostd_qemu_nic *nics;
    size_t nnics;              /* at most HOSTD_QEMU_MAX_NICS */
    int secure_boot;           /* UEFI Secure Boot: q35 with SMM, the variable store
                                  writable from SMM only; disks on a PCI bridge */
    int tpm_fd;                /* > 0: the control channel of the VM's swtpm (hostd/tpm.h),
                                  given to QEMU as a TPM 2.0 (tpm-emulator, tpm-tis) */
    int cdrom;                 /* a CD-ROM drive (hostd/cdrom.h) */
    int cdrom_fd;              /* > 0: the ISO in it (read-only; hostd keeps its copy) */
    const char *boot_order;    /* vm.conf boot ("disk,cdrom,net"): bootindex; NULL none */
} hostd_qemu_spec;

typedef struct hostd_qemu hostd_qemu;

/* Launch QEMU paused, attach the disks over QMP, resume the guest.
 * On failure QEMU is killed and the reason is in vmseal_last_error(). */
int hostd_qemu_start(const hostd_qemu_spec *spec, hostd_qemu **out) VMSEAL_MUST_CHECK;

/* Re-attach to a QEMU that a previous hostd started in run_dir. -ESRCH when
 * none runs there (or the pid belongs to a process other than the VM with
 * this uuid). */
int hostd_qemu_attach(const char *run_dir, const char *uuid, int timeout_ms,
                       hostd_qemu **out) VMSEAL_MUST_CHECK;

struct hostd_qmp;
pid_t hostd_qemu_pid(const hostd_qemu *vm);

/* Snapshot layers (hostd/qemu_layer.c). The node name of layer `layer` of
 * disk `disk` (0: the image itself, "vmseal-diskN"; k: its k-th overlay). */
void hostd_qemu_layer_node(size_t disk, size_t layer, char *buf, size_t len);
/* Open dir_fd/file (no symlink, a regular file; read-write and read-only
 * descriptors into an fdset of its own) and add it over the monitor as the
 * qcow2 node of layer `layer` of disk `disk`, its LUKS secret over the
 * monitor only (kept in QEMU: qcow2 reopens the header when a node is
 * reactivated after an incoming memory stream); backing: that node's name, or
 * NULL for none (a new overlay for blockdev-snapshot). */
int hostd_qemu_add_layer(struct hostd_qmp *q, size_t disk, size_t layer, int dir_fd,
                         const char *file, const vmseal_secret *passphrase, const char *backing,
                         int timeout_ms) VMSEAL_MUST_CHECK;

/* The console socket connected at start (serial_socket), handed over to the
 * caller; -1 when there is none (or it was taken). */
int hostd_qemu_take_serial(hostd_qemu *vm);

/* Connect to the console socket of a QEMU running in run_dir (after a
 * restart of hostd): the descriptor or -errno. QEMU serves one reader at a
 * time and drops console output while none is connected. */
int hostd_qemu_connect_serial(const char *run_dir, int timeout_ms);

/* The connected monitor (NULL once QEMU has exited), e.g. for queries. */
struct hostd_qmp *hostd_qemu_monitor(hostd_qemu *vm);

/* 1 while the QEMU process lives, 0 once it has exited (reaped if ours). */
int hostd_qemu_alive(hostd_qemu *vm);

/* QEMU's run state ("running", "paused", "shutdown", ...). -ESRCH once
 * QEMU has exited. */
int hostd_qemu_status(hostd_qemu *vm, char *buf, size_t len) VMSEAL_MUST_CHECK;

/* Wait up to timeout_ms for QEMU to exit (guest power-off): 0 when it has,
 * -ETIMEDOUT when it still runs. */
int hostd_qemu_wait_exit(hostd_qemu *vm, int timeout_ms);

/* Graceful power-off: ACPI power button (system_powerdown, pressed again
 * every 5 s), wait up to grace_ms for the guest to power off; then `quit`;
 * then SIGKILL.
 * Returns 0 (guest powered off by itself) or 1 (QEMU had to be stopped). */
int hostd_qemu_power_off(hostd_qemu *vm, int grace_ms);

/* Hard stop: `quit`, then SIGKILL. */
void hostd_qemu_kill(hostd_qemu *vm);

/* Free the handle; does not stop QEMU. */
void hostd_qemu_free(hostd_qemu *vm);

/* Does KVM work here? Boots kernel+initrd under -accel kvm (no disks) and
 * expects `expect` on the serial console within timeout_ms, the guest
 * powering itself off. The answer (1 yes, 0 no) is cached in cache_file
 * (optional), keyed by QEMU binary and host kernel. Without /dev/kvm
 * read-write access the answer is 0 at once. */
typedef struct hostd_kvm_probe {
    const char *qemu;
    const char *kernel;
    const char *initrd;
    const char *append;        /* NULL: "console=ttyS0 quiet" */
    const char *expect;        /* serial text proving a good boot */
    const char *cache_file;
    int timeout_ms;            /* 0: 20000 */
    /* Optional: when *stop becomes non-zero (a signal handler's flag) the
     * probe QEMU is killed at once and the answer is 0, not cached. The
     * probe QEMU also dies with hostd (PR_SET_PDEATHSIG). */
    const volatile sig_atomic_t *stop;
} hostd_kvm_probe;

int hostd_qemu_probe_kvm(const hostd_kvm_probe *probe);

/* Accelerator to use: $VMSEAL_ACCEL ("kvm"/"tcg") if set, else the probe. */
hostd_accel hostd_qemu_pick_accel(const hostd_kvm_probe *probe);

#endif
