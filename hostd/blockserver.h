/* vmseal-hostd — the NBD data path of encrypted disks (docs/architecture.md,
 * "Disk data path").
 *
 * hostd.conf `disk_path` picks how a running VM reads its LUKS1 disks:
 *   nbd        (default) one nbdkit per encrypted disk serving the decrypted
 *              view with blockd/nbdkit-vmseal-plugin.so; QEMU's NBD client
 *              reaches it over a socketpair (no socket file, never TCP)
 *   qemu-luks  QEMU's own luks driver (hostd/qemu.c)
 * `nbd` falls back to qemu-luks, saying why, when nbdkit or the plugin is
 * missing or the plugin does not load in this nbdkit (checked once, at
 * hostd start). A VM may override the host's choice (vm.conf
 * `vm.disk_path`), a disk the VM's (`diskN.disk_path`).
 *
 * One server per disk: `nbdkit -s PLUGIN file=HOME/FILE passfd=3`, run in
 * its own session like QEMU (no new privileges; as root with qemu_user it
 * keeps only CAP_SETUID/CAP_SETGID in its bounding set and drops to that
 * user with nbdkit's -u once the image is open). The LUKS passphrase is
 * written into a pipe whose read end is the server's descriptor 3 (never
 * argv, environment or a file); stdin/stdout are one end of a socketpair
 * whose other end hostd hands to QEMU (QMP getfd). The server therefore
 * serves exactly one connection and exits when QEMU closes it; QEMU cannot
 * reconnect (a passed descriptor cannot be re-opened), so a dead server
 * means I/O errors in the guest until the VM is powered off and on — never
 * data from another server.
 *
 * The VM home records each server: nbd-diskN.pid (its pid; renamed
 * nbd-diskN.exited once hostd noticed it died while QEMU ran) and
 * nbd-diskN.log (nbdkit's messages).
 */
#ifndef VMSEAL_HOSTD_BLOCKSERVER_H
#define VMSEAL_HOSTD_BLOCKSERVER_H

#include <stddef.h>
#include <sys/types.h>

#include <vmseal/common.h>
#include <vmseal/secret.h>

#define HOSTD_DISKPATH_MAX 4096

/* Where meson installs blockd/nbdkit-vmseal-plugin.so (LIBDIR/vmseal). */
#ifndef VMSEAL_NBD_PLUGIN_DEFAULT
#define VMSEAL_NBD_PLUGIN_DEFAULT "/usr/local/lib/vmseal/nbdkit-vmseal-plugin.so"
#endif

typedef struct hostd_diskpath {
    int want_nbd;                     /* disk_path = nbd */
    int nbd_ok;                       /* nbdkit and the plugin work here */
    char nbdkit[HOSTD_DISKPATH_MAX];  /* the binary (a name looked up on PATH, or a path) */
    char plugin[HOSTD_DISKPATH_MAX];
    char why[512];                    /* why disks use the path they use (for the log) */
} hostd_diskpath;

/* Parse the setting (NULL: "nbd") and check nbdkit and the plugin (NULL:
 * defaults: "nbdkit", VMSEAL_NBD_PLUGIN_DEFAULT). -EINVAL for a value other
 * than nbd or qemu-luks; a missing plugin is not an error (fallback). */
int hostd_diskpath_init(hostd_diskpath *p, const char *mode, const char *nbdkit,
                        const char *plugin) VMSEAL_MUST_CHECK;

/* Does an encrypted disk use nbd? vm_override: NULL (the host's choice),
 * "nbd" or "qemu-luks". */
int hostd_diskpath_use_nbd(const hostd_diskpath *p, const char *vm_override);

typedef struct hostd_blockserver_spec {
    const hostd_diskpath *path;
    const char *home;                 /* the VM home (absolute) */
    int home_fd;                      /* its descriptor */
    size_t index;                     /* disk index */
    const char *file;                 /* image name in the home */
    const vmseal_secret *passphrase;  /* LUKS passphrase (borrowed) */
    const char *run_as;               /* hostd as root: the server drops to this user */
    int read_only;
} hostd_blockserver_spec;

/* Start the server; *qemu_sock receives hostd's end of the connection (to
 * hand to QEMU, then close). The server reads the key and checks it against
 * the header before it answers the NBD handshake: a wrong key makes QEMU's
 * blockdev-add fail (hostd_blockserver_log_tail says why). */
int hostd_blockserver_start(const hostd_blockserver_spec *s, int *qemu_sock) VMSEAL_MUST_CHECK;

typedef enum hostd_blockserver_state {
    HOSTD_BS_NONE = 0,       /* no server recorded for this disk */
    HOSTD_BS_RUNNING = 1,
    HOSTD_BS_EXITED = 2,     /* recorded, but the process is gone */
} hostd_blockserver_state;

/* The recorded server of disk `index` (whose image is `file`); *pid (may be
 * NULL) its pid. A pid now held by another process counts as exited. */
hostd_blockserver_state hostd_blockserver_query(int home_fd, const char *home, size_t index,
                                                const char *file, pid_t *pid);

/* Mark an exited server as noticed: 1 the first time, 0 after. */
int hostd_blockserver_note_exit(int home_fd, size_t index);

/* Stop the servers of disks 0..ndisks-1 (SIGTERM, then SIGKILL after
 * timeout_ms) and forget them. */
void hostd_blockserver_stop_all(int home_fd, const char *home, size_t ndisks,
                                const char *const *files, int timeout_ms);

/* Fork and exec nbdkit (argv[0] a full path) in its own session with
 * conn_fd as stdin/stdout, log_fd as stderr, key_fd (>= 0) as descriptor
 * 3, nothing else open, an environment of PATH only, no new privileges
 * and, with confine, only CAP_SETUID/CAP_SETGID in its bounding set (for
 * nbdkit's -u). die_with_parent: SIGKILL when the calling thread ends. */
int hostd_nbdkit_spawn(const char *const argv[], int conn_fd, int log_fd, int key_fd, int confine,
                       int die_with_parent, pid_t *pid_out) VMSEAL_MUST_CHECK;

/* The name of user's primary group (for nbdkit's -g: its -u alone keeps
 * group root). */
int hostd_user_group(const char *user, char *group, size_t len) VMSEAL_MUST_CHECK;

/* The last line nbdkit wrote for disk `index` ("" if none). */
void hostd_blockserver_log_tail(int home_fd, size_t index, char *buf, size_t len);

#endif
