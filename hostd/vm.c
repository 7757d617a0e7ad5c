/* One VM: home folder, vm.conf, key safes, images, QEMU. */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <vmseal/diskdesc.h>
#include <vmseal/diskimport.h>
#include <vmseal/keysafe.h>
#include <vmseal/log.h>
#include <vmseal/sealed.h>
#include <vmseal/vmkeys.h>
#include <vmseal/vmrecord.h>

#include "blockserver.h"
#include "cdrom.h"
#include "confine.h"
#include "coredump.h"
#include "nic.h"
#include "serial.h"
#include "strutil.h"
#include "tpm.h"
#include "vm.h"
#include "vm_snap.h"
#include "vmstate.h"
#include "snapshot.h"

struct hostd_vm {
    pthread_mutex_t lock;   /* guards rec (pointer swap), qemu, busy */
    char *home;
    int home_fd;            /* the home folder (opened without following a symlink):
                               vm.conf is read and replaced relative to it */
    char uuid[37];
    char name[65];
    vmseal_vmrec *rec;      /* vm.conf; replaced as a whole by the busy holder */
    hostd_qemu *qemu;
    hostd_console *console; /* encrypted VM: the sealed console log of this run */
    int console_hold;       /* a migration's destination: the console is kept in memory
                               (no segment written) until the source's run ended
                               (hostd_vm_console_release) */
    const char *busy;       /* what runs now, or NULL */
    int deleted;
    uint64_t rec_seq;       /* counts the records committed (rec replaced) */
    /* hostd_vm_locked's last answer, for record rec_seq and the keys of
     * keystore generation lock_gen */
    int lock_known, lock_state;
    uint64_t lock_seq, lock_gen;
    char lock_reason[600];
    /* interactive serial consoles attached to this run's console */
    pthread_mutex_t tap_lock;
    struct {
        hostd_vm_tap_fn fn;
        void *arg;
    } taps[HOSTD_VM_TAPS_MAX];
    unsigned ntaps;
    uint64_t state_bytes;   /* suspend / resume: stream bytes so far (progress) */
};

/* ---------------------------------------------------------------- helpers */

/* VM names and image names: the vm.conf schema's rules
 * (include/vmseal/vmrecord.h). */
int hostd_vm_name_valid(const char *name)
{
    return vmseal_vmrec_name_valid(name);
}

/* Where this host's QEMU of a VM keeps its run files (qemu.pid, qmp.sock,
 * serial.sock, vnc.sock, qemu.log): <home>/run-<host name> once hostd set
 * its name (hostd_vm_set_run_folder), so that two hosts sharing a
 * datastore folder (a live migration's source and destination) do not
 * clash; else the home itself (tests of vm.c alone). */
static char run_folder[80];

void hostd_vm_set_run_folder(const char *host_name)
{
    run_folder[0] = '\0';
    if (host_name && hostd_vm_name_valid(host_name) && strlen(host_name) < sizeof(run_folder) - 5)
        snprintf(run_folder, sizeof(run_folder), "run-%s", host_name);
}

/* The run folder's path (made, 0700, when mk); -errno. */
static int vm_run_dir(const hostd_vm *vm, int mk, char *buf, size_t len)
{
    int n = run_folder[0] ? snprintf(buf, len, "%s/%s", vm->home, run_folder)
                          : snprintf(buf, len, "%s", vm->home);
    if (n < 0 || (size_t)n >= len)
        return vmseal_fail(ENAMETOOLONG, "%s: run folder path too long", vm->home);
    if (mk && run_folder[0] && mkdirat(vm->home_fd, run_folder, 0700) != 0 && errno != EEXIST)
        return vmseal_fail(errno, "cannot make %s: %s", buf, strerror(errno));
    struct stat st;
    if (run_folder[0] && mk &&
        (fstatat(vm->home_fd, run_folder, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)))
        return vmseal_fail(ENOTDIR, "%s is not a folder", buf);
    return 0;
}

static int rec_encrypted(const vmseal_vmrec *r)
{
    return r->policy == VMSEAL_POLICY_ENCRYPTED;
}

static int rec_uefi(const vmseal_vmrec *r)
{
    return r->firmware == VMSEAL_FIRMWARE_UEFI;
}

/* Move a string out of a record field (the field is left NULL). */
static char *take_str(char **field)
{
    char *v = *field;
    *field = NULL;
    return v;
}

/* Files of the VM home are named relative to the home's descriptor
 * (vm->home_fd) and never followed when they are symlinks; the path is
 * only for messages. */

/* Open a file of the VM home (O_NOFOLLOW). -errno, message set. */
static int home_openat(const hostd_vm *vm, const char *file, int flags, mode_t mode)
{
    int fd = openat(vm->home_fd, file, flags | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, mode);
    if (fd < 0) {
        int e = errno;
        return e == ELOOP ? vmseal_fail(ELOOP, "%s/%s is a symlink (not followed)", vm->home, file)
                          : vmseal_fail(e, "%s/%s: %s", vm->home, file, strerror(e));
    }
    return fd;
}

/* lstat of a file of the VM home: 1 a regular file, 0 absent, -ELOOP a
 * symlink or anything else (never followed). */
static int home_file_state(const hostd_vm *vm, const char *file)
{
    struct stat st;
    if (fstatat(vm->home_fd, file, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return errno == ENOENT ? 0
                               : vmseal_fail(errno, "%s/%s: %s", vm->home, file, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return vmseal_fail(ELOOP, "%s/%s is %s (not followed)", vm->home, file,
                           S_ISLNK(st.st_mode) ? "a symlink" : "not a regular file");
    return 1;
}

/* The same, for a file the operation needs: absent is an error too. */
static int home_file_regular(const hostd_vm *vm, const char *file)
{
    int r = home_file_state(vm, file);
    if (r == 0)
        return vmseal_fail(ENOENT, "%s/%s does not exist", vm->home, file);
    return r < 0 ? r : 0;
}

static uint64_t file_size(const hostd_vm *vm, const char *file)
{
    struct stat st;
    return fstatat(vm->home_fd, file, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)
               ? (uint64_t)st.st_size : 0;
}

int hostd_vm_boot_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 255 || name[0] == '/')
        return 0;
    const char *comp = name;
    for (size_t i = 0; i <= n; i++) {
        char c = name[i];
        if (c == '/' || c == '\0') {
            size_t len = (size_t)(name + i - comp);
            if (len == 0 || (len == 1 && comp[0] == '.') ||
                (len == 2 && comp[0] == '.' && comp[1] == '.'))
                return 0;
            comp = name + i + 1;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int hostd_vm_open_boot_file(const hostd_host_env *env, const char *what, const char *name)
{
    const char *folder = env->images ? env->images : "(images folder)";
    if (!hostd_vm_boot_name_valid(name))
        return vmseal_fail(EINVAL, "%s must be a file name in the host's images folder %s "
                           "(components of [A-Za-z0-9._-], no '..', no leading '/'): %s",
                           what, folder, name ? name : "");
    if (env->images_fd < 0)
        return vmseal_fail(EINVAL, "%s %s: the host has no images folder", what, name);
    struct open_how how = {
        .flags = O_RDONLY | O_CLOEXEC | O_NOCTTY,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    int fd = (int)syscall(SYS_openat2, env->images_fd, name, &how, sizeof(how));
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP || e == EXDEV)
            return vmseal_fail(EINVAL, "%s %s: a symlink in the images folder %s is not followed",
                               what, name, folder);
        return vmseal_fail(EINVAL, "%s %s: not in the images folder %s: %s", what, name, folder,
                           strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return vmseal_fail(EINVAL, "%s %s is not a regular file in the images folder %s", what,
                           name, folder);
    }
    return fd;
}

/* Check boot file names (create, reconfigure): each must open. */
static int check_boot_file(const hostd_host_env *env, const char *what, const char *name)
{
    if (!name || !*name)
        return 0;
    int fd = hostd_vm_open_boot_file(env, what, name);
    if (fd < 0)
        return fd;
    close(fd);
    return 0;
}

void hostd_vm_log(hostd_vm *vm, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    /* relative to the home, never through a symlink */
    char err[512];
    hostd_copy_str(err, sizeof(err), vmseal_last_error());
    int fd = home_openat(vm, "vm.log", O_WRONLY | O_CREAT | O_APPEND, 0600);
    vmseal_fail(0, "%s", err);   /* leave the caller's message as it was */
    if (fd < 0)
        return;
    dprintf(fd, "%s %s\n", ts, msg);
    close(fd);
}

/* ------------------------------------------------------------ key safes */

static int unwrap_line(const hostd_host_env *env, const char *line, const char *object,
                       vmseal_secret **out)
{
    *out = NULL;
    vmseal_keysafe_info info;
    int r = vmseal_keysafe_parse(line, &info);
    if (r < 0)
        return r;
    vmseal_secret *kek = NULL;
    r = hostd_keystore_get(env->keys, info.kek_id, &kek, NULL);
    if (r < 0)
        return r;
    r = vmseal_keysafe_unwrap(kek, line, object, out);
    vmseal_secret_free(kek);
    if (r < 0)
        return vmseal_fail(r, "key safe of %s: %s", object, vmseal_last_error());
    return 0;
}

static int wrap_secret(const hostd_host_env *env, const char *kek_id, const char *object,
                       const vmseal_secret *payload, char **line)
{
    vmseal_secret *kek = NULL;
    char provider[VMSEAL_KEYSAFE_PROVIDER_MAX + 1];
    int r = hostd_keystore_get(env->keys, kek_id, &kek, provider);
    if (r < 0)
        return r;
    r = vmseal_keysafe_wrap(kek, provider, kek_id, object, payload, line);
    vmseal_secret_free(kek);
    return r;
}

/* LUKS passphrase from a key safe: hex of the unwrapped secret. */
static int pass_from_line(const hostd_host_env *env, const char *line, const char *object,
                          vmseal_secret **pass)
{
    *pass = NULL;
    vmseal_secret *s = NULL;
    int r = unwrap_line(env, line, object, &s);
    if (r < 0)
        return r;
    r = vmseal_disk_passphrase_from_secret(s, pass);
    vmseal_secret_free(s);
    return r;
}

static int kek_id_of_line(const char *line, char *out, size_t len)
{
    vmseal_keysafe_info info;
    int r = vmseal_keysafe_parse(line, &info);
    if (r < 0)
        return r;
    hostd_copy_str(out, len, info.kek_id);
    return 0;
}

/* A new random secret wrapped for object: the key safe line. */
static int new_wrapped_secret(const hostd_host_env *env, const char *kek_id, const char *object,
                              char **line)
{
    vmseal_secret *s = NULL;
    int r = vmseal_secret_random(32, &s);
    if (r < 0)
        return r;
    r = wrap_secret(env, kek_id, object, s, line);
    vmseal_secret_free(s);
    return r;
}

/* ------------------------------------------------------ console log */

static void console_note(void *arg, const char *line)
{
    hostd_vm_log(arg, "%s", line);
}

/* The log key of the sealed console log, from the key safe `ks_key`
 * (vm.keysafe, or vm.next.keysafe while encrypting). -ENOKEY "VM locked"
 * when the KEK is not loaded. */
static int log_key_from(hostd_vm *vm, const hostd_host_env *env, const char *line,
                        vmseal_secret **lk)
{
    *lk = NULL;
    char id[VMSEAL_KEYSAFE_KEK_ID_MAX + 1];
    if (!line || kek_id_of_line(line, id, sizeof(id)) < 0)
        return vmseal_fail(EPROTO, "VM %s: vm.conf holds no valid key safe of the VM's secret",
                           vm->name);
    if (!hostd_keystore_has(env->keys, id))
        return vmseal_fail(ENOKEY, "VM locked: KEK %s is not loaded on this host", id);
    char obj[64];
    vmseal_secret *s = NULL;
    int r = vmseal_vmrec_keysafe_object(vm->rec, -1, 0, obj, sizeof(obj));
    if (r == 0)
        r = unwrap_line(env, line, obj, &s);
    if (r == 0)
        r = vmseal_slog_key(s, vm->uuid, lk);
    vmseal_secret_free(s);
    return r;
}

/* What the console's log thread read, for the attached interactive
 * consoles (len 0: the console ended; they are all let go). */
static void console_out(void *arg, const uint8_t *data, size_t len)
{
    hostd_vm *vm = arg;
    pthread_mutex_lock(&vm->tap_lock);
    for (unsigned i = 0; i < vm->ntaps; i++)
        vm->taps[i].fn(vm->taps[i].arg, data, len);
    if (len == 0)
        vm->ntaps = 0;
    pthread_mutex_unlock(&vm->tap_lock);
}

int hostd_vm_console_tap(hostd_vm *vm, hostd_vm_tap_fn fn, void *arg)
{
    pthread_mutex_lock(&vm->lock);
    int r = vm->console ? 0 : vmseal_fail(ENOTCONN, "VM %s has no serial console running", vm->name);
    pthread_mutex_lock(&vm->tap_lock);
    if (r == 0 && vm->ntaps == HOSTD_VM_TAPS_MAX)
        r = vmseal_fail(EUSERS, "VM %s has %d consoles open already", vm->name, HOSTD_VM_TAPS_MAX);
    if (r == 0) {
        vm->taps[vm->ntaps].fn = fn;
        vm->taps[vm->ntaps].arg = arg;
        vm->ntaps++;
    }
    pthread_mutex_unlock(&vm->tap_lock);
    pthread_mutex_unlock(&vm->lock);
    return r;
}

void hostd_vm_console_untap(hostd_vm *vm, void *arg)
{
    pthread_mutex_lock(&vm->tap_lock);
    for (unsigned i = 0; i < vm->ntaps; i++)
        if (vm->taps[i].arg == arg) {
            vm->taps[i] = vm->taps[--vm->ntaps];
            break;
        }
    pthread_mutex_unlock(&vm->tap_lock);
}

int hostd_vm_console_input(hostd_vm *vm, const uint8_t *data, size_t len, int timeout_ms)
{
    pthread_mutex_lock(&vm->lock);
    int r = vm->console ? hostd_console_input(vm->console, data, len, timeout_ms)
                        : vmseal_fail(ENOTCONN, "VM %s has no serial console running", vm->name);
    pthread_mutex_unlock(&vm->lock);
    return r;
}

int hostd_vm_vnc_connect(hostd_vm *vm)
{
    if (!hostd_vm_running(vm))
        return vmseal_fail(ENOTCONN, "VM %s is not running", vm->name);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return vmseal_fail(errno, "socket: %s", strerror(errno));
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char rd[4096];
    if (vm_run_dir(vm, 0, rd, sizeof(rd)) < 0) {
        close(fd);
        return -ENAMETOOLONG;
    }
    int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", rd, HOSTD_VNC_SOCKET);
    if (n < 0 || (size_t)n >= sizeof(sa.sun_path)) {
        close(fd);
        return vmseal_fail(ENAMETOOLONG, "VNC socket path too long");
    }
    /* QEMU made the socket in the VM home's run folder, which hostd owns;
     * connect() does follow a symlink, so refuse anything but a socket */
    struct stat st;
    char rel[128];
    snprintf(rel, sizeof(rel), "%s%s%s", run_folder, run_folder[0] ? "/" : "", HOSTD_VNC_SOCKET);
    if (fstatat(vm->home_fd, rel, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISSOCK(st.st_mode)) {
        close(fd);
        return vmseal_fail(ENOTCONN, "VM %s has no VNC display (started before vmseal had one?)",
                           vm->name);
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int e = errno;
        close(fd);
        return vmseal_fail(ENOTCONN, "VM %s: VNC display: %s", vm->name, strerror(e));
    }
    return fd;
}

int hostd_vm_encrypted(hostd_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    int e = rec_encrypted(vm->rec);
    pthread_mutex_unlock(&vm->lock);
    return e;
}

/* Detach the console (lock held); the caller frees it without the lock. */
static hostd_console *console_detach_locked(hostd_vm *vm)
{
    hostd_console *c = vm->console;
    vm->console = NULL;
    return c;
}

/* ------------------------------------------------------- state handling */

static int vm_begin(hostd_vm *vm, const char *what)
{
    int r = 0;
    pthread_mutex_lock(&vm->lock);
    if (vm->deleted)
        r = vmseal_fail(ENOENT, "VM %s was deleted", vm->name);
    else if (vm->busy)
        r = vmseal_fail(EBUSY, "VM %s is busy (%s)", vm->name, vm->busy);
    else
        vm->busy = what;
    pthread_mutex_unlock(&vm->lock);
    return r;
}

static void vm_end(hostd_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    vm->busy = NULL;
    pthread_mutex_unlock(&vm->lock);
}

/* Save `next` as vm.conf (checked, atomically) and make it current; takes
 * next. */
static int vm_commit(hostd_vm *vm, vmseal_vmrec *next)
{
    int r = vmseal_vmrec_saveat(next, vm->home_fd, VMSEAL_VMREC_FILE);
    if (r < 0) {
        vmseal_vmrec_free(next);
        return r;
    }
    pthread_mutex_lock(&vm->lock);
    vmseal_vmrec *old = vm->rec;
    vm->rec = next;
    vm->rec_seq++;
    pthread_mutex_unlock(&vm->lock);
    vmseal_vmrec_free(old);
    return 0;
}

/* A copy of the current record to change and commit. */
static vmseal_vmrec *vm_next(hostd_vm *vm)
{
    vmseal_vmrec *n = vmseal_vmrec_dup(vm->rec);
    if (!n)
        vmseal_fail(ENOMEM, "out of memory");
    return n;
}

/* Busy holder only: is QEMU running? */
static int qemu_running_owned(hostd_vm *vm)
{
    if (!vm->qemu)
        return 0;
    if (hostd_qemu_alive(vm->qemu))
        return 1;
    pthread_mutex_lock(&vm->lock);
    hostd_qemu *q = vm->qemu;
    vm->qemu = NULL;
    hostd_console *con = console_detach_locked(vm);
    pthread_mutex_unlock(&vm->lock);
    hostd_qemu_free(q);
    hostd_console_free(con);
    hostd_vm_log(vm, "guest powered off");
    return 0;
}

int hostd_vm_running(hostd_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    if (vm->qemu && !vm->busy && !hostd_qemu_alive(vm->qemu)) {
        hostd_qemu_free(vm->qemu);
        vm->qemu = NULL;
        hostd_console *con = console_detach_locked(vm);
        pthread_mutex_unlock(&vm->lock);
        hostd_console_free(con);   /* QEMU closed the console: seals the rest, ends the segment */
        hostd_vm_log(vm, "guest powered off");
        return 0;
    }
    int on = vm->qemu != NULL;
    pthread_mutex_unlock(&vm->lock);
    return on;
}

const char *hostd_vm_uuid(const hostd_vm *vm) { return vm->uuid; }
const char *hostd_vm_name(const hostd_vm *vm) { return vm->name; }
const char *hostd_vm_home(const hostd_vm *vm) { return vm->home; }

void hostd_vm_pending_op(hostd_vm *vm, char *buf, size_t len)
{
    pthread_mutex_lock(&vm->lock);
    hostd_copy_str(buf, len, vmseal_vmrec_op_name(vm->rec->op));
    pthread_mutex_unlock(&vm->lock);
}

static void add_id(json_t *arr, const char *id)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
        if (strcmp(json_string_value(v), id) == 0)
            return;
    json_array_append_new(arr, json_string(id));
}

static json_t *kek_ids_of(const vmseal_vmrec *r)
{
    json_t *arr = json_array();
    vmseal_vmrec_keysafe_ref ks[VMSEAL_VMREC_KEYSAFES_MAX];
    size_t n = vmseal_vmrec_keysafes(r, ks);
    for (size_t i = 0; i < n; i++) {
        char id[VMSEAL_KEYSAFE_KEK_ID_MAX + 1];
        if (kek_id_of_line(ks[i].line, id, sizeof(id)) == 0)
            add_id(arr, id);
    }
    for (size_t k = 0; k < r->nsnaps; k++)
        for (size_t i = 0; i < r->ndisks; i++) {
            char id[VMSEAL_KEYSAFE_KEK_ID_MAX + 1];
            const char *l = r->snaps[k].disks[i].keysafe;
            if (l && kek_id_of_line(l, id, sizeof(id)) == 0)
                add_id(arr, id);
        }
    if (r->op_kek[0])
        add_id(arr, r->op_kek);
    vmseal_clear_error();
    return arr;
}

json_t *hostd_vm_kek_ids(hostd_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    json_t *a = kek_ids_of(vm->rec);
    pthread_mutex_unlock(&vm->lock);
    return a;
}

/* What the host can prove with the keys it holds: every key safe of record
 * c unwraps with the KEK it names (that KEK is here, and it is the right
 * one), and the KEK an unfinished operation moves to is here. 1 and the
 * first reason when not. */
static int prove_unlocked(const vmseal_vmrec *c, const hostd_host_env *env, char *reason, size_t len)
{
    vmseal_vmrec_keysafe_ref ks[VMSEAL_VMREC_KEYSAFES_MAX];
    size_t n = vmseal_vmrec_keysafes(c, ks);
    for (size_t i = 0; i < n; i++) {
        char id[VMSEAL_KEYSAFE_KEK_ID_MAX + 1], obj[64];
        if (kek_id_of_line(ks[i].line, id, sizeof(id)) < 0) {
            snprintf(reason, len, "%s is not a key safe", ks[i].key);
            return 1;
        }
        if (!hostd_keystore_has(env->keys, id)) {
            snprintf(reason, len, "KEK %s is not available on this host", id);
            return 1;
        }
        vmseal_secret *s = NULL;
        int r = vmseal_vmrec_keysafe_object(c, ks[i].idx, ks[i].next, obj, sizeof(obj));
        if (r == 0)
            r = unwrap_line(env, ks[i].line, obj, &s);
        vmseal_secret_free(s);
        if (r < 0) {
            snprintf(reason, len, "KEK %s is on this host but does not open %s (a wrong key, or a "
                     "key safe that was changed)", id, ks[i].key);
            return 1;
        }
    }
    if (c->op_kek[0] && !hostd_keystore_has(env->keys, c->op_kek)) {
        snprintf(reason, len, "KEK %s is not available on this host", c->op_kek);
        return 1;
    }
    return 0;
}

int hostd_vm_locked(hostd_vm *vm, const hostd_host_env *env, char *reason, size_t len)
{
    uint64_t gen = hostd_keystore_generation(env->keys);
    pthread_mutex_lock(&vm->lock);
    if (vm->lock_known && vm->lock_seq == vm->rec_seq && vm->lock_gen == gen) {
        int locked = vm->lock_state;
        if (len)
            snprintf(reason, len, "%s", locked ? vm->lock_reason : "");
        pthread_mutex_unlock(&vm->lock);
        return locked;
    }
    uint64_t seq = vm->rec_seq;
    vmseal_vmrec *c = vmseal_vmrec_dup(vm->rec);
    pthread_mutex_unlock(&vm->lock);
    char why[600] = "";
    int locked = c ? prove_unlocked(c, env, why, sizeof(why)) : 1;
    if (!c)
        snprintf(why, sizeof(why), "out of memory");
    vmseal_vmrec_free(c);
    char err[512];
    hostd_copy_str(err, sizeof(err), vmseal_last_error());
    vmseal_fail(0, "%s", err);   /* the caller's message stays */
    pthread_mutex_lock(&vm->lock);
    if (vm->rec_seq == seq && hostd_keystore_generation(env->keys) == gen) {
        vm->lock_known = 1;
        vm->lock_seq = seq;
        vm->lock_gen = gen;
        vm->lock_state = locked;
        hostd_copy_str(vm->lock_reason, sizeof(vm->lock_reason), why);
    }
    pthread_mutex_unlock(&vm->lock);
    if (len)
        snprintf(reason, len, "%s", locked ? why : "");
    return locked;
}

/* ------------------------------------------------------------- progress */

typedef struct prog_state {
    const hostd_vm_progress *p;
    uint64_t base, total;
} prog_state;

static void prog_cb(uint64_t done, uint64_t total, void *ctx)
{
    (void)total;
    prog_state *st = ctx;
    if (st->p && st->p->fn)
        st->p->fn(st->base + done, st->total, st->p->ctx);
}

static vmseal_disk_opts disk_opts(const hostd_host_env *env, const hostd_vm_progress *p,
                                  prog_state *st, const char *uuid)
{
    vmseal_disk_opts o = {
        .progress = prog_cb,
        .progress_ctx = st,
        .threads = env->threads,
        .uuid = uuid,
        .cancel = p ? p->cancel : NULL,
    };
    return o;
}

static int cancelled(const hostd_vm_progress *p)
{
    return p && p->cancel && *p->cancel;
}

/* ------------------------------------------------------------ load/free */

/* A handle on the home folder `home` (the folder itself is not followed
 * if it is a symlink). */
static int vm_alloc(const char *home, hostd_vm **out)
{
    *out = NULL;
    hostd_vm *vm = calloc(1, sizeof(*vm));
    if (!vm)
        return vmseal_fail(ENOMEM, "out of memory");
    pthread_mutex_init(&vm->lock, NULL);
    pthread_mutex_init(&vm->tap_lock, NULL);
    vm->home_fd = -1;
    vm->home = strdup(home);
    if (!vm->home) {
        hostd_vm_free(vm);
        return vmseal_fail(ENOMEM, "out of memory");
    }
    vm->home_fd = open(home, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (vm->home_fd < 0) {
        int e = errno;
        hostd_vm_free(vm);
        return vmseal_fail(e, "%s: %s", home,
                           e == ELOOP || e == ENOTDIR ? "not a folder (a symlink is not followed)"
                                                      : strerror(e));
    }
    *out = vm;
    return 0;
}

void hostd_vm_free(hostd_vm *vm)
{
    if (!vm)
        return;
    hostd_console_free(vm->console);   /* QEMU keeps running; the next hostd reads on */
    hostd_qemu_free(vm->qemu);
    vmseal_vmrec_free(vm->rec);
    if (vm->home_fd >= 0)
        close(vm->home_fd);
    free(vm->home);
    pthread_mutex_destroy(&vm->lock);
    pthread_mutex_destroy(&vm->tap_lock);
    free(vm);
}

/* At load, after a hostd that stopped in the middle of a suspend or a
 * resume (QEMU outlives it): vm.conf names a state file and QEMU runs the
 * guest -> it was resumed: drop the file; names one and QEMU is there but
 * the guest is not running -> saved, or not yet loaded: QEMU ends, the VM
 * stays suspended (the guest has not run since the state was saved).
 * vm.conf names none, QEMU is there -> state files left over are removed
 * and a guest a suspend had stopped goes on. */
static void recover_state(hostd_vm *vm)
{
    char st[40] = "";
    if (vm->qemu && hostd_qemu_status(vm->qemu, st, sizeof(st)) < 0)
        st[0] = '\0';
    const char *sf = vm->rec->state_file;
    if (sf[0] && vm->qemu) {
        if (strcmp(st, "running") == 0) {
            char file[VMSEAL_VMREC_FILE_MAX + 1];
            hostd_copy_str(file, sizeof(file), sf);
            vmseal_vmrec *n = vm_next(vm);
            if (n) {
                n->state_file[0] = '\0';
                if (vm_commit(vm, n) == 0) {
                    unlinkat(vm->home_fd, file, 0);
                    hostd_vm_log(vm, "the resume from %s had finished when hostd stopped: the "
                                 "saved state is dropped", file);
                }
            }
        } else {
            hostd_qemu_kill(vm->qemu);
            hostd_qemu_free(vm->qemu);
            vm->qemu = NULL;
            /* the console stays: once it has the log key (the next log read
             * or power-on) it closes the segment this run left open */
            hostd_vm_log(vm, "hostd stopped during a suspend or resume (QEMU %s): QEMU ended, "
                         "the VM stays suspended from %s", st[0] ? st : "not answering", sf);
        }
        return;
    }
    /* Only where the QEMU of an unfinished suspend runs: another host that
     * sees the datastore must not take files a suspend there is writing. */
    if (!vm->qemu)
        return;
    int dfd = dup(vm->home_fd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return;
    }
    int removed = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int partial;
        if ((sf[0] && strcmp(de->d_name, sf) == 0) ||
            !hostd_vmstate_is_state_name(de->d_name, &partial))
            continue;
        if (unlinkat(vm->home_fd, de->d_name, 0) == 0) {
            removed++;
            hostd_vm_log(vm, "removed %s, left by a suspend that did not finish", de->d_name);
        }
    }
    closedir(d);
    if (removed && !sf[0] && strcmp(st, "running") != 0 &&
        hostd_qmp_execute(hostd_qemu_monitor(vm->qemu), "cont", NULL, 15000, NULL) == 0)
        hostd_vm_log(vm, "the guest a suspend had stopped goes on");
}

int hostd_vm_load(const char *home, hostd_vm **out)
{
    *out = NULL;
    hostd_vm *vm = NULL;
    int r = vm_alloc(home, &vm);
    if (r < 0)
        return r;
    r = vmseal_vmrec_loadat(vm->home_fd, VMSEAL_VMREC_FILE, &vm->rec);
    if (r < 0) {
        r = vmseal_fail(-r, "%s: %s", home, vmseal_last_error());
        hostd_vm_free(vm);
        return r;
    }
    hostd_copy_str(vm->name, sizeof(vm->name), vm->rec->name);
    hostd_copy_str(vm->uuid, sizeof(vm->uuid), vm->rec->uuid);
    char rd[4096];
    if (vm_run_dir(vm, 0, rd, sizeof(rd)) < 0 || hostd_qemu_attach(rd, vm->uuid, 5000, &vm->qemu) < 0)
        vm->qemu = NULL;
    if (vm->qemu && !rec_encrypted(vm->rec)) {
        /* the interactive console of a VM without encryption (a QEMU
         * started before vmseal had one has no serial.sock: none) */
        int fd = hostd_qemu_connect_serial(rd, 2000);
        hostd_console *con = NULL;
        if (fd >= 0 && hostd_console_new_passthrough(home, vm->uuid, console_note, vm, &con) == 0) {
            hostd_console_set_output(con, console_out, vm);
            if (hostd_console_attach(con, fd) == 0)
                vm->console = con;
            else
                hostd_console_free(con);
        } else if (fd >= 0) {
            close(fd);
        }
    }
    if (vm->qemu && rec_encrypted(vm->rec)) {
        /* Read the console at once; it is sealed when the KEK comes
         * (hostd_vm_tick), buffered in memory until then. */
        int fd = hostd_qemu_connect_serial(rd, 2000);
        hostd_console *con = NULL;
        if (fd >= 0 && hostd_console_new(home, vm->uuid, NULL, console_note, vm, &con) == 0) {
            hostd_console_set_output(con, console_out, vm);
            if (hostd_console_attach(con, fd) == 0)
                vm->console = con;
            else
                hostd_console_free(con);
        } else if (fd >= 0) {
            close(fd);
        }
        if (!vm->console)
            hostd_vm_log(vm, "serial log: cannot read the console of the running VM: %s",
                          vmseal_last_error());
    }
    recover_state(vm);
    hostd_snapshot_recover(vm);   /* a snapshot operation hostd did not finish */
    vmseal_clear_error();
    *out = vm;
    return 0;
}

/* ---------------------------------------------------------------- create */

/* A raw image of `size` bytes in the VM home: an existing regular file is
 * sized, a new one is created (O_EXCL); a symlink is not followed. */
static int make_plain_image(const hostd_vm *vm, const char *file, uint64_t size)
{
    int fd = home_openat(vm, file, O_RDWR | O_NONBLOCK, 0);
    if (fd == -ENOENT)
        fd = home_openat(vm, file, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return fd;
    struct stat st;
    int r = 0;
    if (fstat(fd, &st) != 0)
        r = vmseal_fail(errno, "%s/%s: %s", vm->home, file, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        r = vmseal_fail(ELOOP, "%s/%s is not a regular file", vm->home, file);
    else if ((uint64_t)st.st_size != size && ftruncate(fd, (off_t)size) != 0)
        r = vmseal_fail(errno, "%s/%s: %s", vm->home, file, strerror(errno));
    else if (fsync(fd) != 0)
        r = vmseal_fail(errno, "%s/%s: %s", vm->home, file, strerror(errno));
    close(fd);
    return r;
}

/* Copy the host file `from` (a template of the host's, which may be a
 * symlink of the distribution's) into the VM home as `to`: written as
 * TO.partial (created new, never through a symlink), fsync'd, renamed into
 * place relative to the home. */
static int copy_into_home(const hostd_vm *vm, const char *from, const char *to)
{
    char tmp[VMSEAL_VMREC_FILE_MAX + 16];
    snprintf(tmp, sizeof(tmp), "%s.partial", to);
    int in = open(from, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (in < 0)
        return vmseal_fail(errno, "%s: %s", from, strerror(errno));
    struct stat st;
    if (fstat(in, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(in);
        return vmseal_fail(EINVAL, "%s is not a regular file", from);
    }
    int r = 0;
    if (unlinkat(vm->home_fd, tmp, 0) != 0 && errno != ENOENT)
        r = vmseal_fail(errno, "%s/%s: %s", vm->home, tmp, strerror(errno));
    int outfd = r < 0 ? r : home_openat(vm, tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (outfd < 0) {
        close(in);
        return outfd;
    }
    char buf[65536];
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = vmseal_fail(errno, "%s: %s", from, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        int w = vmseal_write_all(outfd, buf, (size_t)n);
        if (w < 0) {
            r = vmseal_fail(-w, "%s/%s: %s", vm->home, tmp, strerror(-w));
            break;
        }
    }
    if (r == 0 && fsync(outfd) != 0)
        r = vmseal_fail(errno, "%s/%s: %s", vm->home, tmp, strerror(errno));
    close(outfd);
    close(in);
    if (r == 0 && renameat(vm->home_fd, tmp, vm->home_fd, to) != 0)
        r = vmseal_fail(errno, "%s/%s: %s", vm->home, to, strerror(errno));
    if (r == 0 && fsync(vm->home_fd) != 0)
        r = vmseal_fail(errno, "fsync of %s: %s", vm->home, strerror(errno));
    if (r < 0)
        (void)unlinkat(vm->home_fd, tmp, 0);
    return r;
}

/* Inspect an image of the images folder for import: its format and the
 * disk size it becomes. */
int hostd_vm_inspect_image(const hostd_host_env *env, const char *name, uint64_t *size)
{
    int fd = hostd_vm_open_boot_file(env, "disk image", name);
    if (fd < 0)
        return fd;
    vmseal_image_info info;
    hostd_import_confine cf;   /* qemu-img as qemu_user (confine.h) */
    vmseal_import_opts io;
    int r = hostd_import_confine_init(env->qemu_user, fd, name, &cf, &io);
    if (r == 0)
        r = vmseal_image_inspect(fd, name, NULL, &io, &info);
    close(fd);
    if (r < 0)
        return vmseal_fail(EINVAL, "disk image %s: %s", name, vmseal_last_error());
    *size = info.disk_size;
    return 0;
}

/* Import disk idx from its `from` image (opened beneath the images
 * folder) into its file: encrypted with pass, or plain. Resumes an
 * interrupted import (lib/disk/disk_import.c). */
static int import_disk(hostd_vm *vm, const hostd_host_env *env, size_t idx, const vmseal_secret *pass,
                       const vmseal_disk_opts *o)
{
    const vmseal_vmrec_image *d = &vm->rec->disks[idx];
    int fd = hostd_vm_open_boot_file(env, "disk image", d->from);
    if (fd < 0)
        return fd;
    vmseal_image_info info;
    hostd_import_confine cf;   /* qemu-img as qemu_user (confine.h) */
    vmseal_import_opts io;
    int r = hostd_import_confine_init(env->qemu_user, fd, d->from, &cf, &io);
    if (r == 0)
        r = vmseal_image_inspect(fd, d->from, NULL, &io, &info);
    if (r == 0 && info.disk_size != d->size)
        r = vmseal_fail(ESTALE, "disk image %s changed: it is now %llu MiB, disk%zu is %llu MiB",
                        d->from, (unsigned long long)(info.disk_size >> 20), idx,
                        (unsigned long long)(d->size >> 20));
    if (r == 0)
        r = vmseal_disk_import_at(fd, d->from, NULL, vm->home_fd, d->file, pass, o, &io, &info);
    close(fd);
    if (r == 0)
        hostd_import_done(&cf, vm->home_fd, d->file);
    if (r == 0)
        hostd_vm_log(vm, "disk%zu imported from %s (%s, %llu MiB)%s", idx, d->from, info.format,
                     (unsigned long long)(d->size >> 20), pass ? ", encrypted" : "");
    return r;
}

/* Make every image the configuration names that does not exist yet. */
static int run_create(hostd_vm *vm, const hostd_host_env *env, const hostd_vm_progress *prog)
{
    const vmseal_vmrec *c = vm->rec;
    size_t nd = c->ndisks;
    prog_state st = {.p = prog};
    int r = 0;
    for (size_t i = 0; i < nd; i++)
        if (c->disks[i].from[0])
            st.total += c->disks[i].size;
    for (size_t i = 0; i < nd && r == 0; i++) {
        uint64_t size = c->disks[i].size;
        const char *file = c->disks[i].file;
        const char *ks = c->disks[i].keysafe;
        const char *from = c->disks[i].from;
        if (from[0] && !ks) {
            vmseal_disk_opts o = disk_opts(env, prog, &st, NULL);
            r = home_file_state(vm, file);
            if (r == 0)
                r = import_disk(vm, env, i, NULL, &o);
            else if (r == 1)
                r = 0;
            st.base += size;
        } else if (ks) {
            const char *luuid = c->disks[i].luks_uuid;
            char obj[64];
            vmseal_secret *pass = NULL;
            r = vmseal_vmrec_keysafe_object(c, (long)i, 0, obj, sizeof(obj));
            if (r == 0)
                r = pass_from_line(env, ks, obj, &pass);
            if (r == 0) {
                vmseal_disk_opts o = disk_opts(env, prog, &st, luuid);
                r = home_file_state(vm, file);
                if (r == 1)
                    r = vmseal_disk_verify_passphrase_at(vm->home_fd, file, pass);
                else if (r == 0 && from[0])
                    r = import_disk(vm, env, i, pass, &o);
                else if (r == 0)
                    r = vmseal_disk_create_at(vm->home_fd, file, size, pass, &o);
            }
            if (from[0])
                st.base += size;
            vmseal_secret_free(pass);
        } else {
            r = make_plain_image(vm, file, size);
        }
    }
    const char *nv = c->nvram.file;
    if (r == 0 && nv[0]) {
        r = home_file_state(vm, nv);
        if (r == 0) {
            const char *vars = c->secure_boot ? env->ovmf_vars_secure : env->ovmf_vars;
            if (!vars)
                r = vmseal_fail(EINVAL, "no UEFI variable store template configured");
            else if (rec_encrypted(c)) {
                char obj[64];
                vmseal_secret *pass = NULL;
                r = vmseal_vmrec_keysafe_object(c, -1, 0, obj, sizeof(obj));
                if (r == 0)
                    r = pass_from_line(env, c->vm_keysafe, obj, &pass);
                if (r == 0) {
                    vmseal_disk_opts o = disk_opts(env, prog, &st, NULL);
                    /* the template is the host's (a distribution may make it
                     * a symlink); the library opens images with O_NOFOLLOW */
                    char *tmpl = realpath(vars, NULL);
                    r = tmpl ? vmseal_disk_encrypt_at(AT_FDCWD, tmpl, vm->home_fd, nv, pass, &o)
                             : vmseal_fail(errno, "%s: %s", vars, strerror(errno));
                    free(tmpl);
                }
                vmseal_secret_free(pass);
            } else {
                r = copy_into_home(vm, vars, nv);
            }
        }
    }
    if (r < 0)
        return r;
    vmseal_vmrec *next = vm_next(vm);
    if (!next)
        return -ENOMEM;
    next->op = VMSEAL_VMREC_OP_NONE;
    next->op_kek[0] = '\0';
    for (size_t i = 0; i < next->ndisks; i++)
        next->disks[i].from[0] = '\0';
    return vm_commit(vm, next);
}

static int check_offline(hostd_vm *vm, const char *what);

/* The usual name of a new image is taken (a disk removed with its file
 * kept, or a later disk that moved down after a removal): diskN-K.EXT,
 * the first K free. Existing files are never overwritten. */
static int free_image_name(hostd_vm *vm, long idx, int encrypted, char *buf, size_t len)
{
    for (int k = 1; k < 100; k++) {
        int n = snprintf(buf, len, "disk%ld-%d.%s", idx, k, encrypted ? "luks" : "img");
        if (n < 0 || (size_t)n >= len)
            break;
        if (home_file_state(vm, buf) == 0)
            return 0;
    }
    return vmseal_fail(EEXIST, "%s: no free file name for disk%ld", vm->home, idx);
}

int hostd_vm_add_disk(hostd_vm *vm, const hostd_host_env *env, const char *from, uint64_t size)
{
    int r = vm_begin(vm, "adding a disk");
    if (r < 0)
        return r;
    const vmseal_vmrec *c = vm->rec;
    char reason[300];
    vmseal_vmrec *next = NULL;
    size_t idx = c->ndisks;
    if ((r = check_offline(vm, "add a disk")) < 0)
        goto out;
    if (c->op != VMSEAL_VMREC_OP_NONE) {
        r = vmseal_fail(EBUSY, "VM %s has an unfinished %s operation", vm->name,
                        vmseal_vmrec_op_name(c->op));
        goto out;
    }
    if (idx >= VMSEAL_VM_MAX_DISKS) {
        r = vmseal_fail(EINVAL, "VM %s has %d disks already (the most)", vm->name,
                        VMSEAL_VM_MAX_DISKS);
        goto out;
    }
    if (rec_encrypted(c) && hostd_vm_locked(vm, env, reason, sizeof(reason))) {
        r = vmseal_fail(ENOKEY, "VM %s is locked: %s", vm->name, reason);
        goto out;
    }
    if (from && (r = hostd_vm_inspect_image(env, from, &size)) < 0)
        goto out;
    if (size < VMSEAL_VMREC_DISK_SIZE_MIN || size > VMSEAL_VMREC_DISK_SIZE_MAX ||
        size % (1u << 20)) {
        r = vmseal_fail(EINVAL, "disk sizes must be whole MiB, 1 MiB to 1 TiB");
        goto out;
    }
    next = vm_next(vm);
    if (!next) {
        r = -ENOMEM;
        goto out;
    }
    vmseal_vmrec_image *d = &next->disks[idx];
    r = vmseal_vmrec_image_file_name((long)idx, rec_encrypted(c), d->file, sizeof(d->file));
    if (r == 0 && home_file_state(vm, d->file) != 0)
        r = free_image_name(vm, (long)idx, rec_encrypted(c), d->file, sizeof(d->file));
    d->size = size;
    if (from)
        hostd_copy_str(d->from, sizeof(d->from), from);
    next->ndisks = idx + 1;
    next->op = VMSEAL_VMREC_OP_CREATE;
    if (r == 0 && rec_encrypted(c)) {
        char kek[VMSEAL_KEYSAFE_KEK_ID_MAX + 1], obj[64];
        r = kek_id_of_line(c->vm_keysafe ? c->vm_keysafe : "", kek, sizeof(kek));
        if (r == 0)
            r = vmseal_uuid_random(d->luks_uuid);
        if (r == 0)
            r = vmseal_vmrec_keysafe_object(next, (long)idx, 0, obj, sizeof(obj));
        if (r == 0)
            r = new_wrapped_secret(env, kek, obj, &d->keysafe);
    }
    if (r == 0) {
        r = vm_commit(vm, next);
        next = NULL;
    }
    if (r == 0)
        hostd_vm_log(vm, "disk%zu added (%llu MiB%s%s)", idx, (unsigned long long)(size >> 20),
                     from ? ", from " : ", empty", from ? from : "");
out:
    vmseal_vmrec_free(next);
    vm_end(vm);
    return r < 0 ? r : (int)idx;
}

/* Remove everything in the folder dirfd, relative to it: sub-folders
 * (a VM home has none of its own) are emptied the same way, symlinks are
 * removed, never followed. */
static int empty_dir_at(int dirfd, int depth)
{
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return vmseal_fail(e, "cannot list a folder: %s", strerror(e));
    }
    int r = 0;
    struct dirent *de;
    while (r == 0 && (de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(dirfd, n, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        int flags = 0;
        if (S_ISDIR(st.st_mode)) {
            int sub = depth < 8 ? openat(dirfd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                                : -1;
            if (sub < 0) {
                r = vmseal_fail(errno ? errno : ELOOP, "cannot remove the folder %s", n);
                break;
            }
            r = empty_dir_at(sub, depth + 1);
            close(sub);
            flags = AT_REMOVEDIR;
        }
        if (r == 0 && unlinkat(dirfd, n, flags) != 0 && errno != ENOENT)
            r = vmseal_fail(errno, "cannot remove %s: %s", n, strerror(errno));
    }
    closedir(d);
    return r;
}

/* Delete the VM's home: its files through the home's descriptor, then the
 * (now empty) folder by name. */
static int remove_home(hostd_vm *vm)
{
    /* the home's name must still be this folder (not moved, not replaced
     * by a symlink or another folder): else nothing is removed */
    struct stat a, b;
    if (fstat(vm->home_fd, &a) != 0 || fstatat(AT_FDCWD, vm->home, &b, AT_SYMLINK_NOFOLLOW) != 0 ||
        !S_ISDIR(b.st_mode) || a.st_dev != b.st_dev || a.st_ino != b.st_ino)
        return vmseal_fail(ELOOP, "%s is no longer the VM's folder (moved or replaced): "
                           "nothing removed", vm->home);
    int r = empty_dir_at(vm->home_fd, 0);
    if (r == 0 && rmdir(vm->home) != 0 && errno != ENOENT)
        r = vmseal_fail(errno, "cannot remove %s: %s", vm->home, strerror(errno));
    return r;
}

int hostd_vm_create(const hostd_host_env *env, const char *datastore,
                     const hostd_vm_create_req *req, const hostd_vm_progress *prog,
                     hostd_vm **out)
{
    *out = NULL;
    if (!hostd_vm_name_valid(req->name))
        return vmseal_fail(EINVAL, "VM name must be 1-64 of [A-Za-z0-9._-], not starting with . or -");
    if (req->uuid && !vmseal_vmrec_uuid_valid(req->uuid))
        return vmseal_fail(EINVAL, "uuid must be a lower-case RFC 4122 UUID");
    if (req->cpus < 1 || req->cpus > 64)
        return vmseal_fail(EINVAL, "cpus must be 1..64");
    if (req->memory_mb < 16 || req->memory_mb > 65536)
        return vmseal_fail(EINVAL, "memory_mb must be 16..65536");
    if (req->ndisks > VMSEAL_VM_MAX_DISKS)
        return vmseal_fail(EINVAL, "at most %d disks", VMSEAL_VM_MAX_DISKS);
    for (size_t i = 0; i < req->ndisks; i++)
        if (req->disk_sizes[i] < (1u << 20) || req->disk_sizes[i] > (1ull << 40) ||
            req->disk_sizes[i] % (1u << 20))
            return vmseal_fail(EINVAL, "disk sizes must be whole MiB, 1 MiB to 1 TiB");
    const char *paths[] = {req->kernel, req->initrd, req->append};
    for (size_t i = 0; i < 3; i++)
        if (paths[i] && !vmseal_vmrec_text_valid(paths[i]))
            return vmseal_fail(EINVAL, "kernel, initrd and append must be printable text");
    if (check_boot_file(env, "kernel", req->kernel) < 0 ||
        check_boot_file(env, "initrd", req->initrd) < 0)
        return -EINVAL;
    if (req->firmware == VMSEAL_FIRMWARE_UEFI &&
        (!env->ovmf_code || !env->ovmf_vars || access(env->ovmf_code, R_OK) != 0 ||
         access(env->ovmf_vars, R_OK) != 0))
        return vmseal_fail(ENOTSUP, "UEFI firmware (ovmf) is not available on this host");
    if (req->secure_boot &&
        (req->firmware != VMSEAL_FIRMWARE_UEFI || !env->ovmf_code_secure || !env->ovmf_vars_secure ||
         access(env->ovmf_code_secure, R_OK) != 0 || access(env->ovmf_vars_secure, R_OK) != 0))
        return vmseal_fail(req->firmware != VMSEAL_FIRMWARE_UEFI ? EINVAL : ENOTSUP,
                           req->firmware != VMSEAL_FIRMWARE_UEFI
                               ? "Secure Boot needs firmware uefi"
                               : "UEFI Secure Boot firmware (ovmf: OVMF_CODE_4M.ms.fd, "
                                 "OVMF_VARS_4M.ms.fd) is not available on this host");
    if (req->tpm && !req->encrypted)
        return vmseal_fail(EINVAL, "a vTPM needs an encrypted VM (its state is sealed under the "
                                   "VM's keys)");
    if (req->encrypted) {
        if (!req->kek_id || !vmseal_keysafe_kek_id_valid(req->kek_id))
            return vmseal_fail(EINVAL, "an encrypted VM needs a kek_id");
        if (!hostd_keystore_has(env->keys, req->kek_id))
            return vmseal_fail(ENOKEY, "KEK %s is not available on this host", req->kek_id);
    }

    char uuid[37];
    if (req->uuid)
        hostd_copy_str(uuid, sizeof(uuid), req->uuid);
    else if (vmseal_uuid_random(uuid) < 0)
        return -EIO;
    char *home = hostd_asprintf("%s/%s", datastore, req->name);
    if (!home)
        return vmseal_fail(ENOMEM, "out of memory");
    if (mkdir(home, 0700) != 0) {
        int e = errno;
        int r = e == EEXIST ? vmseal_fail(EEXIST, "a VM named %s exists already", req->name)
                            : vmseal_fail(e, "cannot create %s: %s", home, strerror(e));
        free(home);
        return r;
    }
    hostd_vm *vm = NULL;
    int r = vm_alloc(home, &vm);
    if (r < 0) {
        char msg[512];
        hostd_copy_str(msg, sizeof(msg), vmseal_last_error());
        (void)rmdir(home);
        free(home);
        return vmseal_fail(-r, "%s", msg);
    }
    free(home);
    hostd_copy_str(vm->name, sizeof(vm->name), req->name);
    hostd_copy_str(vm->uuid, sizeof(vm->uuid), uuid);

    vmseal_vmrec *c = vmseal_vmrec_new();
    r = c ? 0 : vmseal_fail(ENOMEM, "out of memory");
    if (r == 0) {
        hostd_copy_str(c->name, sizeof(c->name), req->name);
        hostd_copy_str(c->uuid, sizeof(c->uuid), uuid);
        c->cpus = req->cpus;
        c->memory_mb = req->memory_mb;
        c->firmware = req->firmware;
        c->tpm = req->tpm;
        c->secure_boot = req->secure_boot;
        c->policy = req->encrypted ? VMSEAL_POLICY_ENCRYPTED : VMSEAL_POLICY_NONE;
        c->ndisks = req->ndisks;
        c->op = VMSEAL_VMREC_OP_CREATE;
        r = vmseal_vmrec_set_str(&c->kernel, req->kernel);
    }
    if (r == 0)
        r = vmseal_vmrec_set_str(&c->initrd, req->initrd);
    if (r == 0)
        r = vmseal_vmrec_set_str(&c->append, req->append);
    if (r == 0 && req->encrypted) {
        char obj[64];
        r = vmseal_vmrec_keysafe_object(c, -1, 0, obj, sizeof(obj));
        if (r == 0)
            r = new_wrapped_secret(env, req->kek_id, obj, &c->vm_keysafe);
    }
    if (r == 0 && req->firmware == VMSEAL_FIRMWARE_UEFI)
        r = vmseal_vmrec_image_file_name(-1, req->encrypted, c->nvram.file, sizeof(c->nvram.file));
    for (size_t i = 0; i < req->ndisks && r == 0; i++) {
        vmseal_vmrec_image *d = &c->disks[i];
        r = vmseal_vmrec_image_file_name((long)i, req->encrypted, d->file, sizeof(d->file));
        d->size = req->disk_sizes[i];
        if (req->disk_from && req->disk_from[i]) {
            if (!hostd_vm_boot_name_valid(req->disk_from[i]))
                r = vmseal_fail(EINVAL, "disk image %s: not a name in the images folder",
                                req->disk_from[i]);
            hostd_copy_str(d->from, sizeof(d->from), req->disk_from[i]);
        }
        if (r == 0 && req->encrypted) {
            char obj[64];
            r = vmseal_uuid_random(d->luks_uuid);
            if (r == 0)
                r = vmseal_vmrec_keysafe_object(c, (long)i, 0, obj, sizeof(obj));
            if (r == 0)
                r = new_wrapped_secret(env, req->kek_id, obj, &d->keysafe);
        }
    }
    if (r == 0) {
        r = vm_commit(vm, c);
        c = NULL;
    }
    vmseal_vmrec_free(c);
    int imports = 0;
    for (size_t i = 0; req->disk_from && i < req->ndisks; i++)
        imports |= req->disk_from[i] != NULL;
    /* Disks imported from images take their time: the caller runs the rest
     * of the create as a task (hostd_vm_resume); vm.conf says op = create
     * until then. */
    if (r == 0 && !imports) {
        vm->busy = "creating";
        r = run_create(vm, env, prog);
        vm->busy = NULL;
    }
    if (r < 0) {
        char msg[512];
        hostd_copy_str(msg, sizeof(msg), vmseal_last_error());
        if (r != -ECANCELED)
            (void)remove_home(vm);
        hostd_vm_free(vm);
        return vmseal_fail(r, "%s", msg);
    }
    hostd_vm_log(vm, "created (%s, %zu disk(s), firmware %s)%s%s",
                  req->encrypted ? "encrypted" : "not encrypted", req->ndisks,
                  req->firmware == VMSEAL_FIRMWARE_UEFI ? "uefi" : "bios",
                  req->encrypted ? " under KEK " : "", req->encrypted ? req->kek_id : "");
    *out = vm;
    return 0;
}

/* ------------------------------------------------------------- power */

static void stop_block_servers(hostd_vm *vm);

static void state_note(void *arg, const char *line)
{
    hostd_vm_log(arg, "%s", line);
}

#define STATE_TIMEOUT_MS 120000   /* a wait without progress while saving or loading */

/* Power on of a suspended VM (busy held, QEMU started with incoming_defer):
 * load the saved state, then the record without it; the file goes last.
 * On failure QEMU is ended here and the VM stays suspended. */
static int resume_state(hostd_vm *vm, hostd_qemu *q, const vmseal_secret *vm_secret)
{
    const vmseal_vmrec *c = vm->rec;
    vmseal_secret *key = NULL;
    char label[VMSEAL_KEYSAFE_KEK_ID_MAX + 1];
    int r = 0;
    if (vm_secret)
        r = hostd_vmstate_key(vm_secret, vm->uuid, c->state_file, &key, label, sizeof(label));
    if (r == 0)
        r = hostd_vmstate_load(hostd_qemu_monitor(q), vm->home_fd, c->state_file, key, state_note,
                               vm, STATE_TIMEOUT_MS, &vm->state_bytes);
    vmseal_secret_free(key);
    char file[VMSEAL_VMREC_FILE_MAX + 1];
    hostd_copy_str(file, sizeof(file), c->state_file);
    vmseal_vmrec *n = r == 0 ? vm_next(vm) : NULL;
    if (r == 0 && !n)
        r = -ENOMEM;
    if (r == 0) {
        hostd_vmstate_crash_point("resume-continued");
        n->state_file[0] = '\0';
        r = vm_commit(vm, n);
    }
    if (r < 0) {
        char msg[700];
        hostd_copy_str(msg, sizeof(msg), vmseal_last_error());
        hostd_qemu_kill(q);
        hostd_qemu_free(q);
        return vmseal_fail(-r, "resume of VM %s failed (it stays suspended): %s", vm->name, msg);
    }
    if (unlinkat(vm->home_fd, file, 0) < 0)
        hostd_vm_log(vm, "cannot remove the saved state %s: %s", file, strerror(errno));
    hostd_vm_log(vm, "resumed from %s", file);
    return 0;
}

int hostd_vm_suspend(hostd_vm *vm, const hostd_host_env *env)
{
    int r = vm_begin(vm, "suspending");
    if (r < 0)
        return r;
    const vmseal_vmrec *c = vm->rec;
    vmseal_secret *vm_secret = NULL, *key = NULL;
    char file[VMSEAL_VMREC_FILE_MAX + 1], label[VMSEAL_KEYSAFE_KEK_ID_MAX + 1], obj[64];
    int enc = rec_encrypted(c);
    if (!qemu_running_owned(vm)) {
        r = vmseal_fail(EALREADY, "VM %s is not powered on", vm->name);
        goto out;
    }
    if (c->op != VMSEAL_VMREC_OP_NONE) {
        r = vmseal_fail(EBUSY, "VM %s has an unfinished %s operation", vm->name,
                        vmseal_vmrec_op_name(c->op));
        goto out;
    }
    if (enc) {
        r = vmseal_vmrec_keysafe_object(c, -1, 0, obj, sizeof(obj));
        if (r == 0)
            r = unwrap_line(env, c->vm_keysafe ? c->vm_keysafe : "", obj, &vm_secret);
        if (r < 0)
            goto out;
    }
    r = hostd_vmstate_new_name("suspend", enc, file, sizeof(file));
    if (r == 0 && enc)
        r = hostd_vmstate_key(vm_secret, vm->uuid, file, &key, label, sizeof(label));
    if (r == 0)
        r = hostd_vmstate_save(hostd_qemu_monitor(vm->qemu), vm->home_fd, file, key,
                               enc ? label : NULL, state_note, vm, STATE_TIMEOUT_MS, &vm->state_bytes);
    if (r < 0) {
        hostd_vm_log(vm, "suspend failed (the VM runs on): %s", vmseal_last_error());
        goto out;
    }
    hostd_vmstate_crash_point("suspend-saved");
    vmseal_vmrec *n = vm_next(vm);
    r = n ? 0 : -ENOMEM;
    if (r == 0) {
        hostd_copy_str(n->state_file, sizeof(n->state_file), file);
        r = vm_commit(vm, n);
    }
    if (r == 0)
        hostd_vmstate_crash_point("suspend-recorded");
    if (r < 0) {
        hostd_vm_log(vm, "suspend failed (the VM runs on): %s", vmseal_last_error());
        unlinkat(vm->home_fd, file, 0);
        if (hostd_qmp_execute(hostd_qemu_monitor(vm->qemu), "cont", NULL, 15000, NULL) < 0)
            hostd_vm_log(vm, "the guest could not be continued: %s", vmseal_last_error());
        goto out;
    }
    /* the state is saved: QEMU ends (the guest never ran since) */
    hostd_qemu_kill(vm->qemu);
    pthread_mutex_lock(&vm->lock);
    hostd_qemu *q = vm->qemu;
    vm->qemu = NULL;
    hostd_console *con = console_detach_locked(vm);
    pthread_mutex_unlock(&vm->lock);
    hostd_qemu_free(q);
    hostd_console_free(con);
    stop_block_servers(vm);   /* the disks' NBD servers, if it used them */
    hostd_vm_log(vm, "suspended (state in %s)", file);
out:
    vmseal_secret_free(vm_secret);
    vmseal_secret_free(key);
    vm_end(vm);
    return r;
}

int hostd_vm_discard_state(hostd_vm *vm)
{
    int r = vm_begin(vm, "discarding its saved state");
    if (r < 0)
        return r;
    char file[VMSEAL_VMREC_FILE_MAX + 1];
    hostd_copy_str(file, sizeof(file), vm->rec->state_file);
    vmseal_vmrec *n = NULL;
    if (qemu_running_owned(vm))
        r = vmseal_fail(EBUSY, "VM %s is powered on", vm->name);
    else if (!file[0])
        r = vmseal_fail(EALREADY, "VM %s is not suspended", vm->name);
    else if (!(n = vm_next(vm)))
        r = -ENOMEM;
    if (r == 0) {
        n->state_file[0] = '\0';
        r = vm_commit(vm, n);
    }
    if (r == 0) {
        if (unlinkat(vm->home_fd, file, 0) < 0 && errno != ENOENT)
            hostd_vm_log(vm, "cannot remove the saved state %s: %s", file, strerror(errno));
        hostd_vm_log(vm, "saved state %s discarded (the VM is powered off)", file);
    }
    vm_end(vm);
    return r;
}

/* The NBD data path (hostd/blockserver.h): the images of the VM's disks,
 * for the server records. */
static void disk_files(const hostd_vm *vm, const char *files[VMSEAL_VM_MAX_DISKS], size_t *n)
{
    const vmseal_vmrec *c = vm->rec;
    *n = c->ndisks;
    for (size_t i = 0; i < c->ndisks; i++)
        files[i] = c->disks[i].file;
}

static void stop_block_servers(hostd_vm *vm)
{
    const char *files[VMSEAL_VM_MAX_DISKS];
    size_t n;
    disk_files(vm, files, &n);
    hostd_blockserver_stop_all(vm->home_fd, vm->home, n, files, 5000);
}

/* One nbdkit per encrypted disk that uses the nbd path; the connected
 * sockets go into disks[i].nbd_sock. Stale records of a previous run are
 * cleared first. */
static int start_block_servers(hostd_vm *vm, const hostd_host_env *env, hostd_qemu_disk *disks,
                               vmseal_secret *const *pass, size_t nd)
{
    stop_block_servers(vm);
    const char *vm_override = vm->rec->disk_path[0] ? vm->rec->disk_path : NULL;
    for (size_t i = 0; i < nd; i++) {
        const char *dp = vm->rec->disks[i].disk_path;
        if (!pass[i] || !hostd_diskpath_use_nbd(env->diskpath, dp[0] ? dp : vm_override))
            continue;
        hostd_blockserver_spec bs = {
            .path = env->diskpath,
            .home = vm->home,
            .home_fd = vm->home_fd,
            .index = i,
            .file = disks[i].path,
            .passphrase = pass[i],
            .run_as = env->qemu_user,
            .read_only = disks[i].read_only,
        };
        int sock = -1;
        int r = hostd_blockserver_start(&bs, &sock);
        if (r < 0) {
            for (size_t k = 0; k < i; k++)
                if (disks[k].nbd_sock > 0) {
                    close(disks[k].nbd_sock);
                    disks[k].nbd_sock = 0;
                }
            stop_block_servers(vm);
            return r;
        }
        disks[i].nbd_sock = sock;
    }
    return 0;
}

/* QEMU failed to start: if a disk server has exited, its last message says
 * why (a wrong key, a damaged header) better than QEMU's handshake error. */
static void block_server_reason(hostd_vm *vm, size_t nd)
{
    for (size_t i = 0; i < nd; i++) {
        if (hostd_blockserver_query(vm->home_fd, vm->home, i, vm->rec->disks[i].file, NULL) !=
            HOSTD_BS_EXITED)
            continue;
        char tail[300], msg[512];
        hostd_blockserver_log_tail(vm->home_fd, i, tail, sizeof(tail));
        hostd_copy_str(msg, sizeof(msg), vmseal_last_error());
        vmseal_fail(EIO, "%s (disk %zu's NBD server: %s)", msg, i,
                    tail[0] ? tail : "exited without a message");
        return;
    }
}

static void detach_console_on_failure(hostd_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    hostd_console *con = console_detach_locked(vm);
    pthread_mutex_unlock(&vm->lock);
    hostd_console_free(con);
}

/* The VM's swtpm, its keys derived from the per-VM secret (hostd/tpm.h). */
static int start_vtpm(hostd_vm *vm, const hostd_host_env *env, const vmseal_secret *vm_secret,
                      int *fd)
{
    if (!vm_secret)
        return vmseal_fail(EINVAL, "VM %s: a vTPM needs an encrypted VM", vm->name);
    vmseal_secret *k = NULL, *mk = NULL;
    int r = vmseal_vm_subkey(vm_secret, vm->uuid, VMSEAL_VMKEY_VTPM, &k);
    if (r == 0)
        r = vmseal_vm_subkey(vm_secret, vm->uuid, VMSEAL_VMKEY_VTPM_MIGRATION, &mk);
    if (r == 0) {
        hostd_tpm_spec ts = {.home_fd = vm->home_fd, .key = k, .migration_key = mk,
                             .run_as = env->qemu_user};
        r = hostd_tpm_start(&ts, fd);
    }
    vmseal_secret_free(k);
    vmseal_secret_free(mk);
    return r;
}

static int power_on(hostd_vm *vm, const hostd_host_env *env, int incoming);
static int power_on_busy(hostd_vm *vm, const hostd_host_env *env, int incoming,
                         const char *snap_state);

int hostd_vm_power_on(hostd_vm *vm, const hostd_host_env *env)
{
    return power_on(vm, env, 0);
}

int hostd_vm_power_on_incoming(hostd_vm *vm, const hostd_host_env *env)
{
    return power_on(vm, env, 1);
}

/* incoming: a live migration's destination (QEMU paused with -incoming
 * defer; hostd/migrate.c feeds it), never a suspended VM */
static int power_on(hostd_vm *vm, const hostd_host_env *env, int incoming)
{
    int r = vm_begin(vm, incoming ? "receiving a migration" : "powering on");
    if (r < 0)
        return r;
    r = power_on_busy(vm, env, incoming, NULL);
    vm_end(vm);
    return r;
}

/* Busy held. incoming: a live migration's destination; snap_state: a
 * snapshot's memory state to load (kept). */
static int power_on_busy(hostd_vm *vm, const hostd_host_env *env, int incoming,
                         const char *snap_state)
{
    int r = 0;
    const vmseal_vmrec *c = vm->rec;
    hostd_snapshot_layers lay;
    hostd_snapshot_layers_init(&lay);
    vmseal_secret *vm_secret = NULL, *nv_pass = NULL, *pass[VMSEAL_VM_MAX_DISKS] = {0};
    hostd_qemu_disk disks[VMSEAL_VM_MAX_DISKS];
    hostd_qemu_disk nvram = {0};
    int kernel_fd = -1, initrd_fd = -1, tpm_fd = -1;
    size_t nd = c->ndisks;
    char reason[300];
    hostd_nic_run nics;
    hostd_nic_run_init(&nics);
    if (qemu_running_owned(vm)) {
        r = vmseal_fail(EALREADY, "VM %s is already powered on", vm->name);
        goto out;
    }
    if (c->op != VMSEAL_VMREC_OP_NONE) {
        r = vmseal_fail(EBUSY, "VM %s has an unfinished %s operation", vm->name,
                        vmseal_vmrec_op_name(c->op));
        goto out;
    }
    if (hostd_vm_locked(vm, env, reason, sizeof(reason))) {
        r = vmseal_fail(ENOKEY, "VM %s is locked: %s", vm->name, reason);
        goto out;
    }
    if (incoming && c->state_file[0]) {
        r = vmseal_fail(EBUSY, "VM %s is suspended: it cannot receive a migration", vm->name);
        goto out;
    }
    if (incoming && c->tpm) {
        r = vmseal_fail(EBUSY, "VM %s has a vTPM: live migration of its state is not supported",
                        vm->name);
        goto out;
    }
    char rundir[4096];
    r = vm_run_dir(vm, 1, rundir, sizeof(rundir));
    if (r < 0)
        goto out;
    char obj[64];
    if (rec_encrypted(c)) {
        r = vmseal_vmrec_keysafe_object(c, -1, 0, obj, sizeof(obj));
        if (r == 0)
            r = unwrap_line(env, c->vm_keysafe ? c->vm_keysafe : "", obj, &vm_secret);
        if (r < 0)
            goto out;
    }
    for (size_t i = 0; i < nd; i++) {
        const char *file = c->disks[i].file;
        disks[i] = (hostd_qemu_disk){.path = file, .dir_fd = vm->home_fd};
        const char *ks = c->disks[i].keysafe;
        if (!ks)
            continue;
        /* The key safe is bound to the LUKS UUID in the disk's own header:
         * a key safe next to another disk does not open it. */
        vmseal_disk_info info;
        r = home_file_regular(vm, file);
        if (r == 0)
            r = vmseal_disk_probe_at(vm->home_fd, file, &info);
        if (r < 0)
            goto out;
        const char *want = c->disks[i].luks_uuid;
        if (strcmp(want, info.uuid) != 0) {
            r = vmseal_fail(EKEYREJECTED,
                            "%s/%s is not the disk its key safe belongs to (LUKS UUID %s)",
                            vm->home, file, info.uuid);
            goto out;
        }
        r = vmseal_vmrec_keysafe_object(c, (long)i, 0, obj, sizeof(obj));   /* = info.uuid */
        if (r == 0)
            r = pass_from_line(env, ks, obj, &pass[i]);
        if (r < 0)
            goto out;
        disks[i].passphrase = pass[i];
    }
    /* snapshot layers over the disks (hostd/snapshot.h) */
    if ((r = hostd_snapshot_layers_open(env, c, &lay, disks, nd)) < 0) {
        hostd_vm_log(vm, "power on failed: %s", vmseal_last_error());
        goto out;
    }
    /* Kernel and initrd: opened beneath the images folder now and handed to
     * QEMU as descriptors (a file swapped in later changes nothing). */
    const char *kname = c->kernel, *iname = c->initrd;
    if (kname && (kernel_fd = hostd_vm_open_boot_file(env, "kernel", kname)) < 0) {
        r = kernel_fd;
        hostd_vm_log(vm, "power on failed: %s", vmseal_last_error());
        goto out;
    }
    if (iname && (initrd_fd = hostd_vm_open_boot_file(env, "initrd", iname)) < 0) {
        r = initrd_fd;
        hostd_vm_log(vm, "power on failed: %s", vmseal_last_error());
        goto out;
    }
    /* NICs: checked against the host's networks, taps opened (hostd/nic.c) */
    if ((r = hostd_nic_prepare(env->net, c, vm->name, &nics)) < 0) {
        hostd_vm_log(vm, "power on failed: %s", vmseal_last_error());
        goto out;
    }
    hostd_console *con = NULL;
    if (vm_secret) {
        /* Encrypted: the console goes to hostd, which seals it. The log is
         * prepared before QEMU starts (a planted symlink stops it here). */
        vmseal_secret *lk = NULL;
        /* a migration's destination: the source still writes the log;
         * this run's output waits in memory (no key, no segment yet) */
        r = incoming ? 0 : vmseal_slog_key(vm_secret, vm->uuid, &lk);
        if (r == 0)
            r = hostd_console_new(vm->home, vm->uuid, lk, console_note, vm, &con);
        if (r == 0)
            hostd_console_set_output(con, console_out, vm);
        if (r < 0) {
            hostd_vm_log(vm, "power on failed: %s", vmseal_last_error());
            goto out;
        }
        pthread_mutex_lock(&vm->lock);
        hostd_console *old = console_detach_locked(vm);
        vm->console = con;
        vm->console_hold = incoming;
        pthread_mutex_unlock(&vm->lock);
        hostd_console_free(old);
    }
    r = start_block_servers(vm, env, disks, pass, nd);
    if (r < 0) {
        hostd_vm_log(vm, "power on failed: %s", vmseal_last_error());
        detach_console_on_failure(vm);
        goto out;
    }
    hostd_qemu_spec spec = {
        .qemu = env->qemu,
        .run_dir = rundir,
        .home_dir = vm->home,
        .serial_socket = con != NULL,
        .name = vm->name,
        .uuid = vm->uuid,
        .accel = env->accel,
        .run_as = env->qemu_user,
        .append = c->append,
        .disks = disks,
        .ndisks = nd,
        .incoming_defer = incoming || c->state_file[0] != 0 || snap_state != NULL,
    };
    spec.kernel_fd = kernel_fd > 0 ? kernel_fd : 0;
    spec.initrd_fd = initrd_fd > 0 ? initrd_fd : 0;
    spec.cpus = c->cpus;
    spec.memory_mb = c->memory_mb;
    if (rec_uefi(c)) {
        nvram.path = c->nvram.file;
        nvram.dir_fd = vm->home_fd;
        if (vm_secret) {
            r = vmseal_disk_passphrase_from_secret(vm_secret, &nv_pass);
            if (r < 0)
                goto out;
            nvram.passphrase = nv_pass;
        }
        spec.firmware_code = c->secure_boot ? env->ovmf_code_secure : env->ovmf_code;
        spec.secure_boot = c->secure_boot;
        spec.nvram = &nvram;
    }
    spec.nics = nics.q;
    spec.nnics = nics.n;
    if (c->tpm) {
        r = start_vtpm(vm, env, vm_secret, &tpm_fd);
        if (r < 0) {
            hostd_vm_log(vm, "power on failed: %s", vmseal_last_error());
            pthread_mutex_lock(&vm->lock);
            con = console_detach_locked(vm);
            pthread_mutex_unlock(&vm->lock);
            hostd_console_free(con);
            stop_block_servers(vm);
            goto out;
        }
        spec.tpm_fd = tpm_fd;
    }
    int cd_fd = -1;
    if (hostd_cdrom_wanted(c)) {
        /* the ISO opened beneath the images folder, no symlink followed;
         * one that no longer opens leaves the drive empty */
        spec.cdrom = 1;
        if (c->cdrom[0] && (cd_fd = hostd_vm_open_boot_file(env, "ISO", c->cdrom)) < 0)
            hostd_vm_log(vm, "CD-ROM drive left empty: %s", vmseal_last_error());
        spec.cdrom_fd = cd_fd > 0 ? cd_fd : 0;
    }
    spec.boot_order = c->boot[0] ? c->boot : NULL;
    hostd_qemu *q = NULL;
    r = hostd_qemu_start(&spec, &q);
    if (cd_fd >= 0)
        close(cd_fd);   /* QEMU has its own copy */
    hostd_nic_run_release(&nics);   /* QEMU has its own tap descriptors */
    for (size_t i = 0; i < nd; i++)
        if (disks[i].nbd_sock > 0)
            close(disks[i].nbd_sock);   /* QEMU has its own copy now */
    if (r < 0)
        block_server_reason(vm, nd);
    if (r == 0 && con && (r = hostd_console_attach(con, hostd_qemu_take_serial(q))) < 0) {
        char msg[512];
        hostd_copy_str(msg, sizeof(msg), vmseal_last_error());
        hostd_qemu_kill(q);
        hostd_qemu_free(q);
        vmseal_fail(-r, "%s", msg);
    }
    if (r == 0 && snap_state)
        r = hostd_snapshot_load_state(vm, q, vm_secret, snap_state);   /* a revert */
    else if (r == 0 && c->state_file[0] && !incoming)
        r = resume_state(vm, q, vm_secret);   /* suspended: its saved state, then it runs */
    if (r < 0) {
        char why[700];
        hostd_copy_str(why, sizeof(why), vmseal_last_error());
        hostd_vm_log(vm, "power on failed: %s", why);
        pthread_mutex_lock(&vm->lock);
        con = console_detach_locked(vm);
        pthread_mutex_unlock(&vm->lock);
        hostd_console_free(con);
        stop_block_servers(vm);
        vmseal_fail(-r, "%s", why);   /* the console's end may have set another */
        goto out;
    }
    if (!con) {
        /* no encryption: QEMU logs the console itself; hostd reads the
         * socket only for the interactive consoles */
        int sfd = hostd_qemu_connect_serial(rundir, 5000);
        if (sfd >= 0 && hostd_console_new_passthrough(vm->home, vm->uuid, console_note, vm, &con) == 0) {
            hostd_console_set_output(con, console_out, vm);
            if (hostd_console_attach(con, sfd) < 0) {
                hostd_console_free(con);
                con = NULL;
            }
        } else if (sfd >= 0) {
            close(sfd);
        }
        if (!con)
            hostd_vm_log(vm, "no interactive serial console: %s", vmseal_last_error());
        vmseal_clear_error();
    }
    pthread_mutex_lock(&vm->lock);
    vm->qemu = q;
    hostd_console *old_con = NULL;
    if (con && vm->console != con) {
        old_con = console_detach_locked(vm);
        vm->console = con;
    }
    pthread_mutex_unlock(&vm->lock);
    hostd_console_free(old_con);
    hostd_vm_log(vm, "%s (QEMU pid %d, %s)", incoming ? "waiting for a migration" : "powered on",
                 (int)hostd_qemu_pid(q),
                  env->accel == VMSEAL_ACCEL_KVM ? "kvm" : "tcg");
out:
    vmseal_secret_free(vm_secret);
    vmseal_secret_free(nv_pass);
    for (size_t i = 0; i < VMSEAL_VM_MAX_DISKS; i++)
        vmseal_secret_free(pass[i]);
    if (kernel_fd >= 0)
        close(kernel_fd);
    if (initrd_fd >= 0)
        close(initrd_fd);
    hostd_nic_run_release(&nics);
    if (tpm_fd >= 0)
        close(tpm_fd);   /* QEMU has its own; swtpm ends with QEMU */
    hostd_snapshot_layers_free(&lay);
    return r;
}

/* ------------------------------------------------------------ export */

int hostd_vm_export_begin(hostd_vm *vm, const hostd_host_env *env, size_t idx, char *file,
                          size_t flen, uint64_t *size, vmseal_secret **pass,
                          struct hostd_qmp **live)
{
    *pass = NULL;
    *size = 0;
    *live = NULL;
    int r = vm_begin(vm, "exporting");
    if (r < 0)
        return r;
    const vmseal_vmrec *c = vm->rec;
    char reason[300];
    int running = qemu_running_owned(vm);
    if (running && !(*live = hostd_qemu_monitor(vm->qemu)))
        r = vmseal_fail(EBUSY, "VM %s: no monitor (%s)", vm->name, vmseal_last_error());
    else if (c->op != VMSEAL_VMREC_OP_NONE)
        r = vmseal_fail(EBUSY, "VM %s has an unfinished %s operation", vm->name,
                        vmseal_vmrec_op_name(c->op));
    else if (idx >= c->ndisks)
        r = vmseal_fail(ENOENT, "VM %s has no disk %zu", vm->name, idx);
    else if (c->nsnaps)
        r = vmseal_fail(EBUSY, "VM %s has snapshots: its disks are layered (remove the snapshots "
                        "to export one)", vm->name);
    else if (hostd_vm_locked(vm, env, reason, sizeof(reason)))
        r = vmseal_fail(ENOKEY, "VM %s is locked: %s", vm->name, reason);
    if (r == 0) {
        hostd_copy_str(file, flen, c->disks[idx].file);
        r = home_file_regular(vm, file);
    }
    vmseal_disk_info info;
    memset(&info, 0, sizeof(info));
    const char *ks = r == 0 ? c->disks[idx].keysafe : NULL;
    if (ks)
        r = vmseal_disk_probe_at(vm->home_fd, file, &info);
    if (r == 0 && ks && strcmp(c->disks[idx].luks_uuid, info.uuid) != 0)
        r = vmseal_fail(EKEYREJECTED, "%s/%s is not the disk its key safe belongs to", vm->home,
                        file);
    char obj[64];
    if (r == 0 && ks && !running) {   /* running: QEMU's node has the key */
        r = vmseal_vmrec_keysafe_object(c, (long)idx, 0, obj, sizeof(obj));
        if (r == 0)
            r = pass_from_line(env, ks, obj, pass);
    }
    if (r == 0) {
        struct stat st;
        if (fstatat(vm->home_fd, file, &st, AT_SYMLINK_NOFOLLOW) != 0)
            r = vmseal_fail(errno, "%s/%s: %s", vm->home, file, strerror(errno));
        else if (ks)
            *size = ((uint64_t)st.st_size - info.payload_offset_bytes) & ~(uint64_t)511;
        else
            *size = (uint64_t)st.st_size;
    }
    if (r < 0) {
        vmseal_secret_free(*pass);
        *pass = NULL;
        *live = NULL;
        vm_end(vm);
    }
    return r;
}

struct hostd_qmp *hostd_vm_export_monitor(hostd_vm *vm)
{
    return qemu_running_owned(vm) ? hostd_qemu_monitor(vm->qemu) : NULL;
}

int hostd_vm_home_dirfd(const hostd_vm *vm)
{
    return vm->home_fd;
}

int hostd_vm_disk_encrypted(hostd_vm *vm, size_t idx)
{
    pthread_mutex_lock(&vm->lock);
    int e = idx < vm->rec->ndisks && vm->rec->disks[idx].keysafe != NULL;
    pthread_mutex_unlock(&vm->lock);
    return e;
}

void hostd_vm_export_end(hostd_vm *vm)
{
    vm_end(vm);
}

int hostd_vm_power_off(hostd_vm *vm, int grace_ms)
{
    int r = vm_begin(vm, "powering off");
    if (r < 0)
        return r;
    if (!qemu_running_owned(vm)) {
        vm_end(vm);
        return vmseal_fail(EALREADY, "VM %s is not powered on", vm->name);
    }
    r = hostd_qemu_power_off(vm->qemu, grace_ms);
    pthread_mutex_lock(&vm->lock);
    hostd_qemu *q = vm->qemu;
    vm->qemu = NULL;
    hostd_console *con = console_detach_locked(vm);
    pthread_mutex_unlock(&vm->lock);
    hostd_qemu_free(q);
    hostd_console_free(con);
    stop_block_servers(vm);
    hostd_vm_log(vm, r == 0 ? "powered off (guest shut down)" : "powered off (QEMU stopped after %d ms)",
                  grace_ms);
    vm_end(vm);
    return r;
}

/* ---------------------------------------------------- encrypt / decrypt */

static int check_space_rec(const hostd_vm *vm, const hostd_host_env *env, const vmseal_vmrec *c,
                           const char *what);

/* Remove the images a finished step left for deletion (an image's
 * old_file). */
static int finish_cleanups(hostd_vm *vm)
{
    const vmseal_vmrec *c = vm->rec;
    vmseal_vmrec *next = NULL;
    /* the disks first, then the NVRAM */
    for (long i = 0; i <= (long)c->ndisks; i++) {
        long idx = i < (long)c->ndisks ? i : -1;
        const char *f = vmseal_vmrec_image_at_const(c, idx)->old_file;
        if (!f[0])
            continue;
        if (unlinkat(vm->home_fd, f, 0) != 0 && errno != ENOENT) {
            int e = errno;
            vmseal_vmrec_free(next);
            return vmseal_fail(e, "cannot remove %s: %s", f, strerror(e));
        }
        if (!next && !(next = vm_next(vm)))
            return -ENOMEM;
        vmseal_vmrec_image_at(next, idx)->old_file[0] = '\0';
    }
    return next ? vm_commit(vm, next) : 0;
}

/* Bytes the pending conversions (rekey = 0: images with a next_file) or
 * rekeys (rekey = 1: images not yet rekeyed) will read (for progress). */
static uint64_t pending_bytes(hostd_vm *vm, int rekey)
{
    const vmseal_vmrec *c = vm->rec;
    uint64_t total = 0;
    for (long i = 0; i <= (long)c->ndisks; i++) {
        const vmseal_vmrec_image *im =
            vmseal_vmrec_image_at_const(c, i < (long)c->ndisks ? i : -1);
        if (rekey ? im->rekeyed : !im->next_file[0])
            continue;
        if (!im->file[0])
            continue;
        total += file_size(vm, im->file);
    }
    return total ? total : 1;
}

/* One image of an encrypt (to_luks) or decrypt: convert, then swap the
 * configuration over to the new file and drop the old one. `idx` is the
 * disk index, or -1 for the NVRAM. */
static int convert_one(hostd_vm *vm, const hostd_host_env *env, long idx, int to_luks,
                       const hostd_vm_progress *prog, prog_state *st)
{
    const vmseal_vmrec *c = vm->rec;
    const vmseal_vmrec_image *im = vmseal_vmrec_image_at_const(c, idx);
    char label[16];
    int r = vmseal_vmrec_image_label(idx, label, sizeof(label));
    if (r < 0)
        return r;
    if (!im->next_file[0])
        return 0;   /* done already */
    const char *in = im->file, *out = im->next_file;
    vmseal_secret *pass = NULL;
    char obj[64];
    const char *luks_uuid = NULL;
    if (r == 0) {
        const char *ks;
        if (idx < 0) {
            /* the NVRAM is opened with the VM secret */
            ks = to_luks ? c->vm_next_keysafe : c->vm_keysafe;
        } else if (to_luks) {
            luks_uuid = im->next_luks_uuid;
            ks = im->next_keysafe;
        } else {
            ks = im->keysafe;
        }
        r = vmseal_vmrec_keysafe_object(c, idx, to_luks, obj, sizeof(obj));
        if (r == 0)
            r = pass_from_line(env, ks ? ks : "", obj, &pass);
    }
    uint64_t in_size = file_size(vm, in);
    /* Neither image may be a symlink: the input is read, the output written. */
    if (r == 0)
        r = home_file_regular(vm, in);
    if (r == 0 && (r = home_file_state(vm, out)) > 0)
        r = 0;
    if (r == 0) {
        vmseal_disk_opts o = disk_opts(env, prog, st, luks_uuid);
        if (to_luks) {
            r = vmseal_disk_encrypt_at(vm->home_fd, in, vm->home_fd, out, pass, &o);
            if (r == -EEXIST)   /* finished before a crash: check it is ours */
                r = vmseal_disk_verify_passphrase_at(vm->home_fd, out, pass);
        } else {
            r = vmseal_disk_decrypt_at(vm->home_fd, in, vm->home_fd, out, pass, &o);
            if (r == -EEXIST)   /* outputs only appear complete */
                r = 0;
        }
    }
    vmseal_secret_free(pass);
    if (r < 0)
        return r;
    st->base += in_size;
    hostd_vm_log(vm, "%s %s into %s", to_luks ? "encrypted" : "decrypted", label, out);
    return 0;
}

/* In record n, image idx moves to the image the operation wrote (its
 * next_file); the old one is left to be removed (old_file). */
static void switch_image(vmseal_vmrec *n, long idx, int to_luks)
{
    vmseal_vmrec_image *ni = vmseal_vmrec_image_at(n, idx);
    if (!ni->next_file[0])
        return;
    hostd_copy_str(ni->old_file, sizeof(ni->old_file), ni->file);
    hostd_copy_str(ni->file, sizeof(ni->file), ni->next_file);
    if (idx >= 0) {
        if (to_luks) {
            hostd_copy_str(ni->luks_uuid, sizeof(ni->luks_uuid), ni->next_luks_uuid);
            free(ni->keysafe);
            ni->keysafe = take_str(&ni->next_keysafe);
        } else {
            ni->luks_uuid[0] = '\0';
            free(take_str(&ni->keysafe));
        }
    }
    ni->next_file[0] = '\0';
    ni->next_luks_uuid[0] = '\0';
    free(take_str(&ni->next_keysafe));
}

static int run_convert(hostd_vm *vm, const hostd_host_env *env, int to_luks,
                       const hostd_vm_progress *prog)
{
    int r = finish_cleanups(vm);
    if (r < 0)
        return r;
    prog_state st = {.p = prog, .total = pending_bytes(vm, 0)};
    if (prog && prog->fn)
        prog->fn(0, st.total, prog->ctx);
    size_t nd = vm->rec->ndisks;
    for (size_t i = 0; i < nd && r == 0; i++) {
        if (cancelled(prog))
            return vmseal_fail(ECANCELED, "cancelled");
        r = convert_one(vm, env, (long)i, to_luks, prog, &st);
    }
    if (r == 0 && vm->rec->nvram.next_file[0])
        r = convert_one(vm, env, -1, to_luks, prog, &st);
    if (r < 0)
        return r;
    /* The console log follows the policy: a clear serial.log is sealed
     * under the new VM secret; a sealed log is written out in clear while
     * its key safe still exists. */
    const char *lks = to_luks && vm->rec->vm_next_keysafe ? vm->rec->vm_next_keysafe
                                                          : vm->rec->vm_keysafe;
    vmseal_secret *lk = NULL;
    r = log_key_from(vm, env, lks, &lk);
    if (r == 0)
        r = to_luks ? hostd_console_seal_plain(vm->home, vm->uuid, lk, console_note, vm)
                    : hostd_console_unseal_to_plain(vm->home, vm->uuid, lk, console_note, vm);
    vmseal_secret_free(lk);
    if (r < 0)
        return vmseal_fail(-r, "serial log: %s", vmseal_last_error());
    /* Every image at once: until this commit vm.conf is the VM as it was
     * (its images untouched) plus the plan; after it, the new VM. */
    vmseal_vmrec *n = vm_next(vm);
    if (!n)
        return -ENOMEM;
    for (long i = -1; i < (long)n->ndisks; i++)
        switch_image(n, i, to_luks);
    if (to_luks) {
        if (n->vm_next_keysafe) {
            free(n->vm_keysafe);
            n->vm_keysafe = take_str(&n->vm_next_keysafe);
        }
        n->policy = VMSEAL_POLICY_ENCRYPTED;
    } else {
        free(take_str(&n->vm_keysafe));
        n->policy = VMSEAL_POLICY_NONE;
    }
    free(take_str(&n->vm_next_keysafe));
    n->op = VMSEAL_VMREC_OP_NONE;
    n->op_kek[0] = '\0';
    r = vm_commit(vm, n);
    if (r == 0)
        r = finish_cleanups(vm);   /* the old images */
    if (r == 0 && prog && prog->fn)
        prog->fn(st.total, st.total, prog->ctx);
    return r;
}

/* Common checks before an offline operation; the caller holds busy. */
static int check_offline(hostd_vm *vm, const char *what)
{
    if (qemu_running_owned(vm))
        return vmseal_fail(EBUSY, "VM %s must be powered off to %s", vm->name, what);
    if (vm->rec->state_file[0])
        return vmseal_fail(EBUSY, "VM %s is suspended: resume it (or discard its saved state) "
                           "to %s", vm->name, what);
    if (vm->rec->nsnaps)
        return vmseal_fail(EBUSY, "VM %s has %zu snapshot(s): remove them (vmseal vm snapshot rm) "
                           "to %s", vm->name, vm->rec->nsnaps, what);
    return 0;
}

int hostd_vm_encrypt(hostd_vm *vm, const hostd_host_env *env, const char *kek_id,
                      const hostd_vm_progress *prog)
{
    int r = vm_begin(vm, "encrypting");
    if (r < 0)
        return r;
    const vmseal_vmrec *c = vm->rec;
    const char *op = c->op ? vmseal_vmrec_op_name(c->op) : NULL;
    if ((r = check_offline(vm, "encrypt it")) < 0)
        goto out;
    if (!kek_id || !vmseal_keysafe_kek_id_valid(kek_id)) {
        r = vmseal_fail(EINVAL, "invalid kek_id");
        goto out;
    }
    if (c->op == VMSEAL_VMREC_OP_ENCRYPT) {
        const char *k = c->op_kek;
        if (strcmp(k, kek_id) != 0) {
            r = vmseal_fail(EBUSY, "an unfinished encrypt under KEK %s must be resumed first", k);
            goto out;
        }
        if ((r = check_space_rec(vm, env, c, "encrypt")) < 0)
            goto out;
        hostd_vm_log(vm, "resuming encryption under KEK %s", kek_id);
        r = run_convert(vm, env, 1, prog);
        goto out;
    }
    if (op) {
        r = vmseal_fail(EBUSY, "VM %s has an unfinished %s operation", vm->name, op);
        goto out;
    }
    if (rec_encrypted(c)) {
        r = vmseal_fail(EALREADY, "VM %s is encrypted already", vm->name);
        goto out;
    }
    if (!hostd_keystore_has(env->keys, kek_id)) {
        r = vmseal_fail(ENOKEY, "KEK %s is not available on this host", kek_id);
        goto out;
    }
    if ((r = check_space_rec(vm, env, c, "encrypt")) < 0)
        goto out;
    /* Record the plan with the new key safes before touching any data. */
    vmseal_vmrec *n = vm_next(vm);
    if (!n) {
        r = -ENOMEM;
        goto out;
    }
    char obj[64];
    r = vmseal_vmrec_keysafe_object(n, -1, 1, obj, sizeof(obj));
    if (r == 0)
        r = new_wrapped_secret(env, kek_id, obj, &n->vm_next_keysafe);
    for (size_t i = 0; i < n->ndisks && r == 0; i++) {
        vmseal_vmrec_image *d = &n->disks[i];
        r = vmseal_uuid_random(d->next_luks_uuid);
        if (r == 0)
            r = vmseal_vmrec_keysafe_object(n, (long)i, 1, obj, sizeof(obj));
        if (r == 0)
            r = new_wrapped_secret(env, kek_id, obj, &d->next_keysafe);
        if (r == 0)
            r = vmseal_vmrec_image_file_name((long)i, 1, d->next_file, sizeof(d->next_file));
    }
    if (r == 0 && rec_uefi(n))
        r = vmseal_vmrec_image_file_name(-1, 1, n->nvram.next_file, sizeof(n->nvram.next_file));
    n->op = VMSEAL_VMREC_OP_ENCRYPT;
    hostd_copy_str(n->op_kek, sizeof(n->op_kek), kek_id);
    if (r < 0) {
        vmseal_vmrec_free(n);
        goto out;
    }
    r = vm_commit(vm, n);
    if (r < 0)
        goto out;
    hostd_vm_log(vm, "encrypting under KEK %s", kek_id);
    r = run_convert(vm, env, 1, prog);
out:
    if (r == 0)
        hostd_vm_log(vm, "encrypted under KEK %s", kek_id);
    else if (r != -EBUSY && r != -EALREADY && r != -EINVAL)
        hostd_vm_log(vm, "encrypt stopped: %s", vmseal_last_error());
    vm_end(vm);
    return r;
}

int hostd_vm_decrypt(hostd_vm *vm, const hostd_host_env *env, const hostd_vm_progress *prog)
{
    int r = vm_begin(vm, "decrypting");
    if (r < 0)
        return r;
    const vmseal_vmrec *c = vm->rec;
    const char *op = c->op ? vmseal_vmrec_op_name(c->op) : NULL;
    char reason[300];
    if ((r = check_offline(vm, "decrypt it")) < 0)
        goto out;
    if (c->op == VMSEAL_VMREC_OP_DECRYPT) {
        if ((r = check_space_rec(vm, env, c, "decrypt")) < 0)
            goto out;
        hostd_vm_log(vm, "resuming decryption");
        r = run_convert(vm, env, 0, prog);
        goto out;
    }
    if (op) {
        r = vmseal_fail(EBUSY, "VM %s has an unfinished %s operation", vm->name, op);
        goto out;
    }
    if (!rec_encrypted(c)) {
        r = vmseal_fail(EALREADY, "VM %s is not encrypted", vm->name);
        goto out;
    }
    if (c->tpm) {
        r = vmseal_fail(EBUSY, "VM %s has a vTPM, whose state only an encrypted VM keeps: "
                               "remove the vTPM first", vm->name);
        goto out;
    }
    if (hostd_vm_locked(vm, env, reason, sizeof(reason))) {
        r = vmseal_fail(ENOKEY, "VM %s is locked: %s", vm->name, reason);
        goto out;
    }
    if ((r = check_space_rec(vm, env, c, "decrypt")) < 0)
        goto out;
    vmseal_vmrec *n = vm_next(vm);
    if (!n) {
        r = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n->ndisks && r == 0; i++) {
        vmseal_vmrec_image *d = &n->disks[i];
        if (d->keysafe)
            r = vmseal_vmrec_image_file_name((long)i, 0, d->next_file, sizeof(d->next_file));
    }
    if (r == 0 && rec_uefi(n))
        r = vmseal_vmrec_image_file_name(-1, 0, n->nvram.next_file, sizeof(n->nvram.next_file));
    n->op = VMSEAL_VMREC_OP_DECRYPT;
    if (r < 0) {
        vmseal_vmrec_free(n);
        goto out;
    }
    r = vm_commit(vm, n);
    if (r < 0)
        goto out;
    hostd_vm_log(vm, "decrypting");
    r = run_convert(vm, env, 0, prog);
out:
    if (r == 0)
        hostd_vm_log(vm, "decrypted");
    else if (r != -EBUSY && r != -EALREADY)
        hostd_vm_log(vm, "decrypt stopped: %s", vmseal_last_error());
    vm_end(vm);
    return r;
}

/* ---------------------------------------------------------------- recrypt */

/* Rewrap every key safe of record `n` (the VM's and the disks', not those
 * of an unfinished operation) under new_kek_id, in place. */
static int rewrap_all(hostd_vm *vm, const hostd_host_env *env, vmseal_vmrec *n,
                      const char *new_kek_id)
{
    vmseal_secret *new_kek = NULL;
    char provider[VMSEAL_KEYSAFE_PROVIDER_MAX + 1];
    int r = hostd_keystore_get(env->keys, new_kek_id, &new_kek, provider);
    if (r < 0)
        return r;
    size_t nd = n->ndisks;
    /* the disks first, then the VM's */
    for (size_t i = 0; i <= nd && r == 0; i++) {
        long idx = i < nd ? (long)i : -1;
        char key[VMSEAL_VMREC_KEY_MAX], obj[64];
        char **line = idx >= 0 ? &n->disks[i].keysafe : &n->vm_keysafe;
        if (!*line)
            continue;
        (void)vmseal_vmrec_keysafe_key(idx, 0, key, sizeof(key));
        char id[VMSEAL_KEYSAFE_KEK_ID_MAX + 1];
        vmseal_secret *old_kek = NULL;
        r = vmseal_vmrec_keysafe_object(n, idx, 0, obj, sizeof(obj));
        if (r == 0)
            r = kek_id_of_line(*line, id, sizeof(id));
        if (r == 0)
            r = hostd_keystore_get(env->keys, id, &old_kek, NULL);
        char *nl = NULL;
        if (r == 0)
            r = vmseal_keysafe_rewrap(old_kek, *line, obj, new_kek, provider, new_kek_id, &nl);
        vmseal_secret_free(old_kek);
        if (r == 0) {
            free(*line);
            *line = nl;
        }
        if (r < 0)
            r = vmseal_fail(-r, "%s: %s", key, vmseal_last_error());
    }
    /* every snapshot layer's key safe (hostd/snapshot.h) */
    for (size_t k = 0; k < n->nsnaps && r == 0; k++)
        for (size_t i = 0; i < nd && r == 0; i++) {
            vmseal_vmrec_layer *ly = &n->snaps[k].disks[i];
            if (!ly->keysafe)
                continue;
            char obj[64], id[VMSEAL_KEYSAFE_KEK_ID_MAX + 1];
            vmseal_secret *old_kek = NULL;
            char *nl = NULL;
            r = vmseal_vmrec_layer_object(ly, obj, sizeof(obj));
            if (r == 0)
                r = kek_id_of_line(ly->keysafe, id, sizeof(id));
            if (r == 0)
                r = hostd_keystore_get(env->keys, id, &old_kek, NULL);
            if (r == 0)
                r = vmseal_keysafe_rewrap(old_kek, ly->keysafe, obj, new_kek, provider,
                                          new_kek_id, &nl);
            vmseal_secret_free(old_kek);
            if (r == 0) {
                free(ly->keysafe);
                ly->keysafe = nl;
            }
            if (r < 0)
                r = vmseal_fail(-r, "snapshot %s, disk%zu: %s", n->snaps[k].name, i,
                                vmseal_last_error());
        }
    vmseal_secret_free(new_kek);
    return r;
}

static int run_rekey(hostd_vm *vm, const hostd_host_env *env, const hostd_vm_progress *prog)
{
    if (!vm->rec->op_kek[0])
        return vmseal_fail(EPROTO, "vm.conf: a deep recrypt without the KEK it moves to");
    char kek_id[VMSEAL_KEYSAFE_KEK_ID_MAX + 1];
    hostd_copy_str(kek_id, sizeof(kek_id), vm->rec->op_kek);
    prog_state st = {.p = prog, .total = pending_bytes(vm, 1)};
    if (prog && prog->fn)
        prog->fn(0, st.total, prog->ctx);
    size_t nd = vm->rec->ndisks;
    int r = 0;
    /* the disks first, then the NVRAM (under the VM's secret) */
    for (size_t i = 0; i <= nd && r == 0; i++) {
        const vmseal_vmrec *c = vm->rec;
        long idx = i < nd ? (long)i : -1;
        const vmseal_vmrec_image *im = vmseal_vmrec_image_at_const(c, idx);
        char obj[64];
        const char *file = idx >= 0 || rec_uefi(c) ? im->file : "";
        const char *line = idx >= 0 ? im->keysafe : c->vm_keysafe;
        if (!file[0] || !line || im->rekeyed)
            continue;
        if (cancelled(prog))
            return vmseal_fail(ECANCELED, "cancelled");
        r = vmseal_vmrec_keysafe_object(c, idx, 0, obj, sizeof(obj));
        if (r < 0)
            return r;
        vmseal_secret *pass = NULL;
        r = pass_from_line(env, line, obj, &pass);
        uint64_t size = file_size(vm, file);
        if (r == 0)
            r = home_file_regular(vm, file);
        if (r == 0) {
            vmseal_disk_opts o = disk_opts(env, prog, &st, NULL);
            r = vmseal_disk_rekey_at(vm->home_fd, file, pass, &o);
        }
        vmseal_secret_free(pass);
        if (r < 0)
            return r;
        st.base += size;
        char fname[VMSEAL_VMREC_FILE_MAX + 1];
        hostd_copy_str(fname, sizeof(fname), file);
        vmseal_vmrec *n = vm_next(vm);
        if (!n)
            return -ENOMEM;
        vmseal_vmrec_image_at(n, idx)->rekeyed = 1;
        r = vm_commit(vm, n);   /* c, im, file and line are gone from here on */
        if (r == 0)
            hostd_vm_log(vm, "new volume key for %s", fname);
    }
    if (r < 0)
        return r;
    vmseal_vmrec *n = vm_next(vm);
    if (!n)
        return -ENOMEM;
    r = rewrap_all(vm, env, n, kek_id);
    n->op = VMSEAL_VMREC_OP_NONE;
    n->op_kek[0] = '\0';
    for (long i = -1; i < (long)nd; i++)
        vmseal_vmrec_image_at(n, i)->rekeyed = 0;
    if (r < 0) {
        vmseal_vmrec_free(n);
        return r;
    }
    r = vm_commit(vm, n);
    if (r == 0 && prog && prog->fn)
        prog->fn(st.total, st.total, prog->ctx);
    return r;
}

int hostd_vm_recrypt(hostd_vm *vm, const hostd_host_env *env, const char *new_kek_id, int deep,
                      const hostd_vm_progress *prog)
{
    int r = vm_begin(vm, deep ? "deep recrypt" : "shallow recrypt");
    if (r < 0)
        return r;
    const vmseal_vmrec *c = vm->rec;
    const char *op = c->op ? vmseal_vmrec_op_name(c->op) : NULL;
    char reason[300];
    if (!new_kek_id || !vmseal_keysafe_kek_id_valid(new_kek_id)) {
        r = vmseal_fail(EINVAL, "invalid new_kek_id");
        goto out;
    }
    if (deep && c->op == VMSEAL_VMREC_OP_RECRYPT_DEEP) {
        const char *k = c->op_kek;
        if (strcmp(k, new_kek_id) != 0) {
            r = vmseal_fail(EBUSY, "an unfinished deep recrypt to KEK %s must be resumed first",
                            k);
            goto out;
        }
        if ((r = check_offline(vm, "deep recrypt it")) < 0 ||
            (r = check_space_rec(vm, env, c, "recrypt-deep")) < 0)
            goto out;
        hostd_vm_log(vm, "resuming deep recrypt to KEK %s", new_kek_id);
        r = run_rekey(vm, env, prog);
        goto out;
    }
    if (op) {
        r = vmseal_fail(EBUSY, "VM %s has an unfinished %s operation", vm->name, op);
        goto out;
    }
    if (!rec_encrypted(c)) {
        r = vmseal_fail(EINVAL, "VM %s is not encrypted", vm->name);
        goto out;
    }
    if (hostd_vm_locked(vm, env, reason, sizeof(reason))) {
        r = vmseal_fail(ENOKEY, "VM %s is locked: %s", vm->name, reason);
        goto out;
    }
    if (!hostd_keystore_has(env->keys, new_kek_id)) {
        r = vmseal_fail(ENOKEY, "KEK %s is not available on this host", new_kek_id);
        goto out;
    }
    if (!deep) {
        /* Only the key safes change: one atomic replacement of vm.conf. */
        vmseal_vmrec *n = vm_next(vm);
        r = n ? rewrap_all(vm, env, n, new_kek_id) : -ENOMEM;
        if (r == 0)
            r = vm_commit(vm, n);
        else
            vmseal_vmrec_free(n);
        if (r == 0)
            hostd_vm_log(vm, "key safes rewrapped under KEK %s (shallow recrypt)", new_kek_id);
        goto out;
    }
    if ((r = check_offline(vm, "deep recrypt it")) < 0 ||
        (r = check_space_rec(vm, env, c, "recrypt-deep")) < 0)
        goto out;
    /* Check every key safe opens before changing anything. */
    vmseal_vmrec *probe = vm_next(vm);
    r = probe ? rewrap_all(vm, env, probe, new_kek_id) : -ENOMEM;
    vmseal_vmrec_free(probe);
    if (r < 0)
        goto out;
    vmseal_vmrec *n = vm_next(vm);
    if (!n) {
        r = -ENOMEM;
        goto out;
    }
    n->op = VMSEAL_VMREC_OP_RECRYPT_DEEP;
    hostd_copy_str(n->op_kek, sizeof(n->op_kek), new_kek_id);
    r = vm_commit(vm, n);
    if (r < 0)
        goto out;
    hostd_vm_log(vm, "deep recrypt to KEK %s", new_kek_id);
    r = run_rekey(vm, env, prog);
    if (r == 0)
        hostd_vm_log(vm, "deep recrypt done: new volume keys, key safes under KEK %s", new_kek_id);
out:
    if (r < 0 && r != -EBUSY && r != -EINVAL)
        hostd_vm_log(vm, "recrypt stopped: %s", vmseal_last_error());
    vm_end(vm);
    return r;
}

int hostd_vm_resume(hostd_vm *vm, const hostd_host_env *env, const hostd_vm_progress *prog)
{
    int r = vm_begin(vm, "resuming");
    if (r < 0)
        return r;
    vmseal_vmrec_op op = vm->rec->op;
    const char *opname = vmseal_vmrec_op_name(op);
    char reason[300];
    if (op == VMSEAL_VMREC_OP_NONE) {
        r = finish_cleanups(vm);
    } else if (hostd_vm_locked(vm, env, reason, sizeof(reason))) {
        r = vmseal_fail(ENOKEY, "cannot finish %s: %s", opname, reason);
    } else if (qemu_running_owned(vm)) {
        r = vmseal_fail(EBUSY, "VM %s runs during an unfinished %s", vm->name, opname);
    } else if (op == VMSEAL_VMREC_OP_CREATE) {
        r = run_create(vm, env, prog);
    } else if ((r = check_space_rec(vm, env, vm->rec, "resume")) < 0) {
        /* no room to finish: said so, nothing touched */
    } else if (op == VMSEAL_VMREC_OP_ENCRYPT) {
        r = run_convert(vm, env, 1, prog);
    } else if (op == VMSEAL_VMREC_OP_DECRYPT) {
        r = run_convert(vm, env, 0, prog);
    } else {
        r = run_rekey(vm, env, prog);
    }
    if (op != VMSEAL_VMREC_OP_NONE)
        hostd_vm_log(vm, r == 0 ? "finished interrupted %s" : "could not finish %s: %s", opname,
                      r == 0 ? "" : vmseal_last_error());
    vm_end(vm);
    return r;
}

/* ------------------------------------------------------------ free space */

/* Bytes the file takes on disk (0 when absent; never followed). */
static uint64_t file_alloc(const hostd_vm *vm, const char *file, const char *suffix)
{
    char name[VMSEAL_VMREC_FILE_MAX + 32];
    snprintf(name, sizeof(name), "%s%s", file, suffix);
    struct stat st;
    return fstatat(vm->home_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)
               ? (uint64_t)st.st_blocks * 512 : 0;
}

#define LUKS_HEADER_BYTES (2ull << 20)   /* payload offset of the images hostd writes */
#define SPACE_MARGIN (4ull << 20)        /* vm.conf, checkpoints, logs */

static uint64_t left(uint64_t want, uint64_t done)
{
    return want > done ? want - done : 0;
}

/* What `what` still has to write, from record c (see hostd_vm_check_space). */
static uint64_t space_needed(const hostd_vm *vm, const vmseal_vmrec *c, const char *what)
{
    if (!strcmp(what, "resume"))
        what = vmseal_vmrec_op_name(c->op);
    int enc = !strcmp(what, "encrypt"), dec = !strcmp(what, "decrypt");
    int deep = !strcmp(what, "recrypt-deep");
    int planned = c->op != VMSEAL_VMREC_OP_NONE;   /* resuming: next_file says what is left */
    /* an operation that will be refused for another reason needs nothing */
    if (planned ? strcmp(vmseal_vmrec_op_name(c->op), what) != 0
                : (enc ? rec_encrypted(c) : (dec || deep) ? !rec_encrypted(c) : 1))
        return 0;
    uint64_t need = 0, largest = 0;
    for (long i = -1; i < (long)c->ndisks; i++) {
        const vmseal_vmrec_image *im = vmseal_vmrec_image_at_const(c, i);
        if (!im->file[0])
            continue;
        uint64_t in = file_size(vm, im->file);
        if (enc || dec) {
            if (planned && !im->next_file[0])
                continue;   /* not part of it, or written already (older hostd) */
            if (planned && home_file_state(vm, im->next_file) == 1)
                continue;   /* written already */
            if (dec && i >= 0 && !im->keysafe)
                continue;   /* a plain disk is not decrypted */
            uint64_t out = enc ? (in + 511) / 512 * 512 + LUKS_HEADER_BYTES : in;
            need += planned ? left(out, file_alloc(vm, im->next_file, ".partial")) : out;
        } else if (deep) {
            if (im->rekeyed || (i >= 0 && !im->keysafe))
                continue;
            uint64_t n = left(file_alloc(vm, im->file, "") + LUKS_HEADER_BYTES,
                              file_alloc(vm, im->file, ".rekey.partial"));
            if (n > largest)
                largest = n;
        }
    }
    vmseal_clear_error();
    return need + largest + SPACE_MARGIN;
}

static int check_space_rec(const hostd_vm *vm, const hostd_host_env *env, const vmseal_vmrec *c,
                           const char *what)
{
    if (env->skip_space_check)
        return 0;
    uint64_t need = space_needed(vm, c, what);
    struct statvfs sv;
    if (fstatvfs(vm->home_fd, &sv) != 0)
        return vmseal_fail(errno, "%s: cannot tell the free space: %s", vm->home, strerror(errno));
    uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
    if (need <= avail)
        return 0;
    const char *op = !strcmp(what, "resume") ? vmseal_vmrec_op_name(c->op) : what;
    return vmseal_fail(ENOSPC, "not enough room on the datastore for the %s of VM %s: it needs %llu MiB, "
                       "%llu MiB are free", !strcmp(op, "recrypt-deep") ? "deep recrypt" : op, vm->name,
                       (unsigned long long)((need + (1u << 20) - 1) >> 20),
                       (unsigned long long)(avail >> 20));
}

int hostd_vm_check_space(hostd_vm *vm, const hostd_host_env *env, const char *what)
{
    pthread_mutex_lock(&vm->lock);
    vmseal_vmrec *c = vmseal_vmrec_dup(vm->rec);
    pthread_mutex_unlock(&vm->lock);
    if (!c)
        return vmseal_fail(ENOMEM, "out of memory");
    int r = check_space_rec(vm, env, c, what);
    vmseal_vmrec_free(c);
    return r;
}

/* ------------------------------------------------------------ rollback */

/* Does the VM home hold sealed console segments (serial-*.vmslog)? */
static int home_has_sealed_log(const hostd_vm *vm)
{
    int fd = openat(vm->home_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    int found = 0;
    struct dirent *de;
    while (!found && (de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        found = n > 14 && strncmp(de->d_name, "serial-", 7) == 0 &&
                strcmp(de->d_name + n - 7, ".vmslog") == 0;
    }
    closedir(d);
    return found;
}

/* Undo an unfinished encrypt (to_luks) or decrypt. */
static int rollback_convert(hostd_vm *vm, const hostd_host_env *env, int to_luks)
{
    const vmseal_vmrec *c = vm->rec;
    long nd = (long)c->ndisks;
    /* What cannot be put back: an image a vm.conf of an older hostd
     * switched over one by one, whose original (or key safe) is gone. */
    for (long i = -1; i < nd; i++) {
        const vmseal_vmrec_image *im = vmseal_vmrec_image_at_const(c, i);
        if (i < 0 && !c->nvram.file[0])
            continue;
        if (im->next_file[0])
            continue;
        int switched = i >= 0 ? (to_luks ? im->keysafe != NULL : im->keysafe == NULL)
                              : im->old_file[0] != 0;
        if (!switched)
            continue;
        char label[16];
        (void)vmseal_vmrec_image_label(i, label, sizeof(label));
        if (!im->old_file[0] || (!to_luks && i >= 0))
            return vmseal_fail(ENOTRECOVERABLE, "cannot roll back the %s of VM %s: %s was converted "
                               "and its original %s is gone; resume the operation instead",
                               to_luks ? "encrypt" : "decrypt", vm->name, label,
                               to_luks ? "image" : "key safe");
    }
    /* 1. the images being written go first: the room comes back */
    for (long i = -1; i < nd; i++) {
        const char *f = vmseal_vmrec_image_at_const(c, i)->next_file;
        if (!f[0])
            continue;
        int r = vmseal_disk_discard_partial_at(vm->home_fd, f);
        if (r < 0)
            return r;
        if (unlinkat(vm->home_fd, f, 0) != 0 && errno != ENOENT)
            return vmseal_fail(errno, "cannot remove %s/%s: %s", vm->home, f, strerror(errno));
    }
    /* 2. the console log back under the old policy, when the operation had
     * converted it already */
    int r = 0;
    vmseal_secret *lk = NULL;
    if (to_luks && c->vm_next_keysafe && home_has_sealed_log(vm)) {
        r = log_key_from(vm, env, c->vm_next_keysafe, &lk);
        if (r == 0)
            r = hostd_console_unseal_to_plain(vm->home, vm->uuid, lk, console_note, vm);
    } else if (!to_luks && c->vm_keysafe && home_file_state(vm, "serial.log") == 1) {
        r = log_key_from(vm, env, c->vm_keysafe, &lk);
        if (r == 0)
            r = hostd_console_seal_plain(vm->home, vm->uuid, lk, console_note, vm);
    }
    vmseal_secret_free(lk);
    if (r < 0)
        return vmseal_fail(-r, "serial log: %s", vmseal_last_error());
    /* 3. vm.conf without the operation */
    vmseal_vmrec *n = vm_next(vm);
    if (!n)
        return -ENOMEM;
    for (long i = -1; i < nd; i++) {
        vmseal_vmrec_image *im = vmseal_vmrec_image_at(n, i);
        if (i < 0 && !n->nvram.file[0])
            continue;
        if (!im->next_file[0] && im->old_file[0]) {
            /* switched by an older hostd: back to its original */
            char cur[sizeof(im->file)];
            hostd_copy_str(cur, sizeof(cur), im->file);
            hostd_copy_str(im->file, sizeof(im->file), im->old_file);
            hostd_copy_str(im->old_file, sizeof(im->old_file), cur);
            if (i >= 0) {
                im->luks_uuid[0] = '\0';
                free(take_str(&im->keysafe));
            }
        }
        im->next_file[0] = '\0';
        im->next_luks_uuid[0] = '\0';
        free(take_str(&im->next_keysafe));
    }
    free(take_str(&n->vm_next_keysafe));
    n->op = VMSEAL_VMREC_OP_NONE;
    n->op_kek[0] = '\0';
    r = vm_commit(vm, n);
    if (r == 0)
        r = finish_cleanups(vm);
    return r;
}

/* Undo an unfinished deep recrypt: the key safes are still the old ones
 * (they move to the new KEK in its last commit). */
static int rollback_rekey(hostd_vm *vm)
{
    const vmseal_vmrec *c = vm->rec;
    for (long i = -1; i < (long)c->ndisks; i++) {
        const char *f = vmseal_vmrec_image_at_const(c, i)->file;
        if (!f[0])
            continue;
        int r = vmseal_disk_discard_partial_at(vm->home_fd, f);
        if (r < 0)
            return r;
    }
    vmseal_vmrec *n = vm_next(vm);
    if (!n)
        return -ENOMEM;
    n->op = VMSEAL_VMREC_OP_NONE;
    n->op_kek[0] = '\0';
    for (long i = -1; i < (long)n->ndisks; i++)
        vmseal_vmrec_image_at(n, i)->rekeyed = 0;
    return vm_commit(vm, n);
}

int hostd_vm_rollback(hostd_vm *vm, const hostd_host_env *env)
{
    int r = vm_begin(vm, "rolling back");
    if (r < 0)
        return r;
    vmseal_vmrec_op op = vm->rec->op;
    char opname[24], kek[VMSEAL_KEYSAFE_KEK_ID_MAX + 1];
    hostd_copy_str(opname, sizeof(opname), vmseal_vmrec_op_name(op));
    hostd_copy_str(kek, sizeof(kek), vm->rec->op_kek);
    if (qemu_running_owned(vm))
        r = vmseal_fail(EBUSY, "VM %s runs during an unfinished %s", vm->name, opname);
    else if (op == VMSEAL_VMREC_OP_NONE)
        r = finish_cleanups(vm);
    else if (op == VMSEAL_VMREC_OP_CREATE)
        r = vmseal_fail(ENOTSUP, "an unfinished create is not rolled back: resume it or delete the VM");
    else if (op == VMSEAL_VMREC_OP_ENCRYPT || op == VMSEAL_VMREC_OP_DECRYPT)
        r = rollback_convert(vm, env, op == VMSEAL_VMREC_OP_ENCRYPT);
    else
        r = rollback_rekey(vm);
    if (op != VMSEAL_VMREC_OP_NONE) {
        if (r == 0)
            hostd_vm_log(vm, "rolled back the unfinished %s%s%s: the VM is as it was before", opname,
                          kek[0] ? " to KEK " : "", kek);
        else
            hostd_vm_log(vm, "could not roll back the unfinished %s: %s", opname, vmseal_last_error());
    }
    vm_end(vm);
    return r;
}

/* ------------------------------------------------------------ reconfigure */

int hostd_vm_reconfigure(hostd_vm *vm, const hostd_host_env *env, unsigned cpus,
                          unsigned memory_mb, const char *kernel, const char *initrd,
                          const char *append)
{
    if ((cpus && cpus > 64) || (memory_mb && (memory_mb < 16 || memory_mb > 65536)))
        return vmseal_fail(EINVAL, "cpus must be 1..64 and memory_mb 16..65536");
    const char *vals[] = {kernel, initrd, append};
    const char *keys[] = {"kernel", "initrd", "append"};
    for (size_t i = 0; i < 3; i++)
        if (vals[i] && *vals[i] && !vmseal_vmrec_text_valid(vals[i]))
            return vmseal_fail(EINVAL, "%s must be printable text", keys[i]);
    for (size_t i = 0; i < 2; i++)
        if (check_boot_file(env, keys[i], vals[i]) < 0)
            return -EINVAL;
    int r = vm_begin(vm, "reconfiguring");
    if (r < 0)
        return r;
    if (qemu_running_owned(vm)) {
        vm_end(vm);
        return vmseal_fail(EBUSY, "VM %s must be powered off to reconfigure it", vm->name);
    }
    if (vm->rec->state_file[0]) {
        vm_end(vm);
        return vmseal_fail(EBUSY, "VM %s is suspended: resume it (or discard its saved state) "
                           "to reconfigure it", vm->name);
    }
    for (size_t k = 0; k < vm->rec->nsnaps; k++)
        if (vm->rec->snaps[k].state_file[0] && ((cpus && cpus != vm->rec->cpus) ||
                                                (memory_mb && memory_mb != vm->rec->memory_mb))) {
            /* the saved memory needs the machine it was taken on */
            vm_end(vm);
            return vmseal_fail(EBUSY, "VM %s has a snapshot with memory (%s): its CPUs and memory "
                               "stay until it is removed", vm->name, vm->rec->snaps[k].name);
        }
    vmseal_vmrec *n = vm_next(vm);
    r = n ? 0 : -ENOMEM;
    if (r == 0) {
        if (cpus)
            n->cpus = cpus;
        if (memory_mb)
            n->memory_mb = memory_mb;
        char **fields[] = {&n->kernel, &n->initrd, &n->append};
        for (size_t i = 0; i < 3 && r == 0; i++)
            if (vals[i])
                r = vmseal_vmrec_set_str(fields[i], *vals[i] ? vals[i] : NULL);
    }
    if (r == 0)
        r = vm_commit(vm, n);
    else
        vmseal_vmrec_free(n);
    if (r == 0)
        hostd_vm_log(vm, "reconfigured");
    vm_end(vm);
    return r;
}

/* ------------------------------------------------------------ devices */

int hostd_vm_edit(hostd_vm *vm, const char *what, int (*fn)(vmseal_vmrec *next, void *ctx),
                  void *ctx)
{
    int r = vm_begin(vm, what);
    if (r < 0)
        return r;
    if (qemu_running_owned(vm)) {
        vm_end(vm);
        return vmseal_fail(EBUSY, "VM %s must be powered off to change its devices", vm->name);
    }
    if (vm->rec->op != VMSEAL_VMREC_OP_NONE) {
        vm_end(vm);
        return vmseal_fail(EBUSY, "VM %s has an unfinished %s operation", vm->name,
                           vmseal_vmrec_op_name(vm->rec->op));
    }
    vmseal_vmrec *n = vm_next(vm);
    r = n ? fn(n, ctx) : -ENOMEM;
    if (r == 0)
        r = vm_commit(vm, n);
    else
        vmseal_vmrec_free(n);
    vm_end(vm);
    return r;
}

int hostd_vm_edit_live(hostd_vm *vm, const char *what,
                       int (*fn)(vmseal_vmrec *next, void *ctx),
                       int (*live)(struct hostd_qmp *qmp, const vmseal_vmrec *next, void *ctx),
                       void *ctx)
{
    int r = vm_begin(vm, what);
    if (r < 0)
        return r;
    if (vm->rec->op != VMSEAL_VMREC_OP_NONE) {
        vm_end(vm);
        return vmseal_fail(EBUSY, "VM %s has an unfinished %s operation", vm->name,
                           vmseal_vmrec_op_name(vm->rec->op));
    }
    int running = qemu_running_owned(vm);
    vmseal_vmrec *n = vm_next(vm);
    r = n ? fn(n, ctx) : -ENOMEM;
    if (r == 0 && running) {
        struct hostd_qmp *q = hostd_qemu_monitor(vm->qemu);
        r = q ? live(q, n, ctx) : vmseal_fail(EBUSY, "VM %s: no monitor", vm->name);
        if (r == 0)
            hostd_vm_log(vm, "%s while running", what);
    }
    if (r == 0)
        r = vm_commit(vm, n);
    else
        vmseal_vmrec_free(n);
    vm_end(vm);
    return r;
}

vmseal_vmrec *hostd_vm_record(hostd_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    vmseal_vmrec *d = vmseal_vmrec_dup(vm->rec);
    pthread_mutex_unlock(&vm->lock);
    if (!d)
        vmseal_fail(ENOMEM, "out of memory");
    return d;
}

/* ---------------------------------------------------------------- destroy */

int hostd_vm_destroy(hostd_vm *vm)
{
    int r = vm_begin(vm, "deleting");
    if (r < 0)
        return r;
    if (qemu_running_owned(vm)) {
        vm_end(vm);
        return vmseal_fail(EBUSY, "VM %s must be powered off to delete it", vm->name);
    }
    r = remove_home(vm);
    pthread_mutex_lock(&vm->lock);
    if (r == 0)
        vm->deleted = 1;
    vm->busy = NULL;
    pthread_mutex_unlock(&vm->lock);
    return r;
}

/* ---------------------------------------------------------------- describe */

/* Which data path a running VM's disk uses: nbd (with its server's pid and
 * whether it still runs), qemu-luks or raw; null while powered off. */
static void describe_data_path(hostd_vm *vm, int on, size_t i, const vmseal_vmrec_image *d,
                               json_t *o)
{
    if (!on) {
        json_object_set_new(o, "data_path", json_null());
        return;
    }
    pid_t pid = 0;
    hostd_blockserver_state st = hostd_blockserver_query(vm->home_fd, vm->home, i, d->file, &pid);
    if (st == HOSTD_BS_NONE) {
        json_object_set_new(o, "data_path", json_string(d->keysafe ? "qemu-luks" : "raw"));
        return;
    }
    json_object_set_new(o, "data_path", json_string("nbd"));
    json_object_set_new(o, "nbd_server",
                        json_pack("{s:I, s:s}", "pid", (json_int_t)pid, "state",
                                  st == HOSTD_BS_RUNNING ? "running" : "exited"));
}

json_t *hostd_vm_describe(hostd_vm *vm, const hostd_host_env *env)
{
    int on = hostd_vm_running(vm);
    char reason[300];
    int locked = hostd_vm_locked(vm, env, reason, sizeof(reason));
    pthread_mutex_lock(&vm->lock);
    const vmseal_vmrec *c = vm->rec;
    json_t *j = json_object();
    json_object_set_new(j, "uuid", json_string(vm->uuid));
    json_object_set_new(j, "name", json_string(vm->name));
    json_object_set_new(j, "cpus", json_integer((json_int_t)c->cpus));
    json_object_set_new(j, "memory_mb", json_integer((json_int_t)c->memory_mb));
    json_object_set_new(j, "firmware", json_string(rec_uefi(c) ? "uefi" : "bios"));
    json_object_set_new(j, "tpm", json_boolean(c->tpm));
    json_object_set_new(j, "secure_boot", json_boolean(c->secure_boot));
    json_object_set_new(j, "cdrom", c->cdrom[0] ? json_string(c->cdrom) : json_null());
    json_object_set_new(j, "boot", c->boot[0] ? json_string(c->boot) : json_null());
    int enc = rec_encrypted(c);
    json_object_set_new(j, "policy", json_string(enc ? "encrypted" : "none"));
    json_object_set_new(j, "encrypted", json_boolean(enc));
    char kek[VMSEAL_KEYSAFE_KEK_ID_MAX + 1];
    if (c->vm_keysafe && kek_id_of_line(c->vm_keysafe, kek, sizeof(kek)) == 0)
        json_object_set_new(j, "kek_id", json_string(kek));
    else
        json_object_set_new(j, "kek_id", json_null());
    json_object_set_new(j, "power_state",
                        json_string(on ? "on" : c->state_file[0] ? "suspended" : "off"));
    json_object_set_new(j, "state_file", c->state_file[0] ? json_string(c->state_file) : json_null());
    json_object_set_new(j, "snapshots", json_integer((json_int_t)c->nsnaps));
    json_object_set_new(j, "nics", hostd_nic_list_json(c));
    json_object_set_new(j, "busy", vm->busy ? json_string(vm->busy) : json_null());
    /* suspending / powering on a suspended VM: memory state bytes so far */
    if (vm->busy && (c->state_file[0] || !strcmp(vm->busy, "suspending")))
        json_object_set_new(j, "state_bytes",
                            json_integer((json_int_t)__atomic_load_n(&vm->state_bytes,
                                                                     __ATOMIC_RELAXED)));
    json_object_set_new(j, "locked", json_boolean(locked));
    json_object_set_new(j, "locked_reason", locked ? json_string(reason) : json_null());
    json_object_set_new(j, "pending_operation",
                        c->op ? json_string(vmseal_vmrec_op_name(c->op)) : json_null());
    /* the KEK the unfinished operation moves the VM to (op.kek) */
    json_object_set_new(j, "pending_kek", c->op_kek[0] ? json_string(c->op_kek) : json_null());
    json_t *disks = json_array();
    for (size_t i = 0; i < c->ndisks; i++) {
        const vmseal_vmrec_image *d = &c->disks[i];
        json_t *o = json_object();
        json_object_set_new(o, "index", json_integer((json_int_t)i));
        json_object_set_new(o, "file", json_string(d->file));
        json_object_set_new(o, "size_mb", json_integer((json_int_t)(d->size >> 20)));
        json_object_set_new(o, "encrypted", json_boolean(d->keysafe != NULL));
        json_object_set_new(o, "luks_uuid", d->luks_uuid[0] ? json_string(d->luks_uuid) : json_null());
        describe_data_path(vm, on, i, d, o);
        json_array_append_new(disks, o);
    }
    json_object_set_new(j, "disks", disks);
    const char *nv = c->nvram.file;
    if (nv[0]) {
        size_t nl = strlen(nv);
        json_object_set_new(j, "nvram",
                            json_pack("{s:s, s:b}", "file", nv, "encrypted",
                                      nl > 5 && strcmp(nv + nl - 5, ".luks") == 0));
    }
    const char *txt[] = {"kernel", "initrd", "append"};
    const char *vals[] = {c->kernel, c->initrd, c->append};
    for (size_t i = 0; i < 3; i++)
        json_object_set_new(j, txt[i], vals[i] ? json_string(vals[i]) : json_null());
    json_object_set_new(j, "home", json_string(vm->home));
    pthread_mutex_unlock(&vm->lock);
    return j;
}

/* ---------------------------------------------------------- console */

/* A disk's NBD server died while QEMU runs: the guest gets I/O errors on
 * that disk (QEMU cannot reconnect); say so once. A server that exits
 * because QEMU did is not reported. */
static void check_block_servers(hostd_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    size_t n = vm->rec->ndisks;
    char files[VMSEAL_VM_MAX_DISKS][VMSEAL_VMREC_FILE_MAX + 1];
    for (size_t i = 0; i < n; i++)
        hostd_copy_str(files[i], sizeof(files[i]), vm->rec->disks[i].file);
    pthread_mutex_unlock(&vm->lock);
    for (size_t i = 0; i < n; i++) {
        pid_t pid = 0;
        if (hostd_blockserver_query(vm->home_fd, vm->home, i, files[i], &pid) != HOSTD_BS_EXITED)
            continue;
        struct timespec ts = {0, 200000000L};
        nanosleep(&ts, NULL);
        if (!hostd_vm_running(vm) || !hostd_blockserver_note_exit(vm->home_fd, i))
            continue;
        char tail[300];
        hostd_blockserver_log_tail(vm->home_fd, i, tail, sizeof(tail));
        hostd_vm_log(vm, "disk %zu: its NBD server (pid %d) exited while the VM runs: the guest "
                     "gets I/O errors on this disk until the VM is powered off and on (%s)",
                     i, (int)pid, tail[0] ? tail : "no message");
        vmseal_log(VMSEAL_LOG_WARNING, "VM %s: disk %zu: its NBD server (pid %d) exited while the "
                   "VM runs: the guest gets I/O errors on this disk until the VM is powered off "
                   "and on", vm->name, i, (int)pid);
    }
}

void hostd_vm_tick(hostd_vm *vm, const hostd_host_env *env)
{
    if (!hostd_vm_running(vm))
        return;
    check_block_servers(vm);
    /* re-attached after a restart: seal the console once the KEK is here */
    pthread_mutex_lock(&vm->lock);
    if (vm->console && !vm->console_hold && !hostd_console_has_key(vm->console)) {
        vmseal_secret *lk = NULL;
        if (log_key_from(vm, env, vm->rec->vm_keysafe, &lk) == 0)
            (void)hostd_console_set_key(vm->console, lk);
        vmseal_clear_error();
    }
    pthread_mutex_unlock(&vm->lock);
}

int hostd_vm_serial_log(hostd_vm *vm, const hostd_host_env *env, size_t tail, uint8_t **text,
                         size_t *len, uint64_t *total, int *encrypted)
{
    *text = NULL;
    *len = 0;
    *total = 0;
    (void)hostd_vm_running(vm);
    pthread_mutex_lock(&vm->lock);
    int enc = rec_encrypted(vm->rec);
    *encrypted = enc;
    int r;
    if (vm->busy && (strcmp(vm->busy, "encrypting") == 0 || strcmp(vm->busy, "decrypting") == 0)) {
        r = vmseal_fail(EBUSY, "VM %s is busy (%s): its serial log is being converted", vm->name,
                        vm->busy);
    } else if (!enc) {
        r = hostd_console_read_plain(vm->home, tail, text, len, total);
    } else {
        vmseal_secret *lk = NULL;
        r = log_key_from(vm, env, vm->rec->vm_keysafe, &lk);
        if (r == 0 && vm->console && !vm->console_hold && !hostd_console_has_key(vm->console)) {
            r = hostd_console_set_key(vm->console, lk);
            lk = NULL;
        }
        if (r == 0)
            r = vm->console && !vm->console_hold ? hostd_console_read(vm->console, tail, text, len, total)
                            : hostd_console_read_sealed(vm->home, vm->uuid, lk, tail, text, len,
                                                         total);
        vmseal_secret_free(lk);
    }
    pthread_mutex_unlock(&vm->lock);
    return r;
}

/* ------------------------------------------------------ live migration */

int hostd_vm_op_begin(hostd_vm *vm, const char *what)
{
    int r = vm_begin(vm, what);
    if (r == 0 && !qemu_running_owned(vm)) {
        vm_end(vm);
        return vmseal_fail(EALREADY, "VM %s is not powered on", vm->name);
    }
    return r;
}

void hostd_vm_op_end(hostd_vm *vm)
{
    vm_end(vm);
}

int hostd_vm_has_tpm(hostd_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    int t = vm->rec && vm->rec->tpm;
    pthread_mutex_unlock(&vm->lock);
    return t;
}

hostd_qmp *hostd_vm_monitor(hostd_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    hostd_qmp *q = vm->qemu ? hostd_qemu_monitor(vm->qemu) : NULL;
    pthread_mutex_unlock(&vm->lock);
    return q;
}

int hostd_vm_console_held(hostd_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    int h = vm->console_hold;
    pthread_mutex_unlock(&vm->lock);
    return h;
}

int hostd_vm_console_release(hostd_vm *vm, const hostd_host_env *env)
{
    pthread_mutex_lock(&vm->lock);
    int r = 0;
    if (vm->console_hold) {
        vm->console_hold = 0;
        vmseal_secret *lk = NULL;
        r = vm->console ? log_key_from(vm, env, vm->rec->vm_keysafe, &lk) : 0;
        if (r == 0 && vm->console)
            r = hostd_console_set_key(vm->console, lk);   /* the output kept meanwhile first */
    }
    pthread_mutex_unlock(&vm->lock);
    return r;
}

/* ---------------------------------------------------------------- vTPM */

int hostd_vm_set_tpm(hostd_vm *vm, int on)
{
    int r = vm_begin(vm, "reconfiguring");
    if (r < 0)
        return r;
    const vmseal_vmrec *c = vm->rec;
    if (qemu_running_owned(vm))
        r = vmseal_fail(EBUSY, "VM %s must be powered off to add or remove its vTPM", vm->name);
    else if (c->op != VMSEAL_VMREC_OP_NONE)
        r = vmseal_fail(EBUSY, "VM %s has an unfinished %s operation", vm->name,
                        vmseal_vmrec_op_name(c->op));
    else if (on && !rec_encrypted(c))
        r = vmseal_fail(EINVAL, "VM %s: a vTPM needs an encrypted VM (its state is sealed under "
                                "the VM's keys)", vm->name);
    if (r == 0 && !c->tpm != !on) {
        vmseal_vmrec *n = vm_next(vm);
        r = n ? 0 : -ENOMEM;
        if (r == 0) {
            n->tpm = on ? 1 : 0;
            r = vm_commit(vm, n);
        }
        /* a removed vTPM's secrets go with it; a new one starts empty */
        if (r == 0)
            r = hostd_tpm_remove_state(vm->home_fd);
        if (r == 0)
            hostd_vm_log(vm, on ? "vTPM added" : "vTPM removed (its state deleted)");
    }
    vm_end(vm);
    return r;
}

/* ------------------------------------------------------------ memory dump */

int hostd_vm_dump(hostd_vm *vm, const hostd_host_env *env, hostd_coredump_result *res)
{
    memset(res, 0, sizeof(*res));
    int r = vm_begin(vm, "dumping memory");
    if (r < 0)
        return r;
    const vmseal_vmrec *c = vm->rec;
    vmseal_secret *kek = NULL;
    char kek_id[VMSEAL_KEYSAFE_KEK_ID_MAX + 1] = "";
    char provider[VMSEAL_KEYSAFE_PROVIDER_MAX + 1] = "";
    if (!qemu_running_owned(vm)) {
        r = vmseal_fail(ESRCH, "VM %s is not powered on", vm->name);
        goto out;
    }
    if (c->op != VMSEAL_VMREC_OP_NONE) {
        r = vmseal_fail(EBUSY, "VM %s has an unfinished %s operation", vm->name,
                        vmseal_vmrec_op_name(c->op));
        goto out;
    }
    if (rec_encrypted(c)) {
        /* sealed under the KEK of the VM's own key safe */
        r = kek_id_of_line(c->vm_keysafe ? c->vm_keysafe : "", kek_id, sizeof(kek_id));
        if (r == 0)
            r = hostd_keystore_get(env->keys, kek_id, &kek, provider);
        if (r < 0) {
            r = vmseal_fail(ENOKEY, "VM %s is locked: KEK %s not loaded", vm->name, kek_id);
            goto out;
        }
    }
    r = hostd_coredump_write(hostd_qemu_monitor(vm->qemu), vm->home_fd, kek, provider, kek_id, 0,
                             res);
    if (r == 0)
        hostd_vm_log(vm, "memory dumped to %s (%s, %llu bytes)", res->file,
                     res->sealed ? "sealed" : "not encrypted", (unsigned long long)res->bytes);
    else
        hostd_vm_log(vm, "memory dump failed: %s", vmseal_last_error());
out:
    vmseal_secret_free(kek);
    vm_end(vm);
    return r;
}

/* ------------------------------------------------------------- clone */

/* Copy image `file` from src_fd to dst_fd: data extents only (holes stay
 * holes), the new file created (never through a symlink), fsync'd. */
static int clone_copy_image(int src_fd, int dst_fd, const char *file, prog_state *st)
{
    int in = openat(src_fd, file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (in < 0)
        return vmseal_fail(errno, "%s: %s", file, strerror(errno));
    struct stat sb;
    if (fstat(in, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(in);
        return vmseal_fail(EINVAL, "%s is not a regular file", file);
    }
    int out = openat(dst_fd, file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0) {
        int e = errno;
        close(in);
        return vmseal_fail(e, "clone's %s: %s", file, strerror(e));
    }
    int r = 0;
    if (ftruncate(out, sb.st_size) != 0)
        r = vmseal_fail(errno, "clone's %s: %s", file, strerror(errno));
    static __thread uint8_t buf[1 << 20];
    off_t pos = 0;
    while (r == 0 && pos < sb.st_size) {
        off_t data = lseek(in, pos, SEEK_DATA);
        if (data < 0) {
            if (errno == ENXIO)
                break;   /* a hole to the end */
            r = vmseal_fail(errno, "%s: %s", file, strerror(errno));
            break;
        }
        off_t hole = lseek(in, data, SEEK_HOLE);
        if (hole < 0)
            hole = sb.st_size;
        for (off_t o = data; r == 0 && o < hole;) {
            size_t want = (size_t)(hole - o) < sizeof(buf) ? (size_t)(hole - o) : sizeof(buf);
            ssize_t n = pread(in, buf, want, o);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                r = vmseal_fail(n < 0 ? errno : EIO, "%s: read failed", file);
                break;
            }
            for (ssize_t w = 0; w < n && r == 0;) {
                ssize_t k = pwrite(out, buf + w, (size_t)(n - w), o + w);
                if (k < 0 && errno == EINTR)
                    continue;
                if (k < 0)
                    r = vmseal_fail(errno, "clone's %s: %s", file, strerror(errno));
                else
                    w += k;
            }
            o += n;
            if (st)
                prog_cb((uint64_t)o, 0, st);
            if (r == 0 && st && cancelled(st->p))
                r = vmseal_fail(ECANCELED, "cancelled");
        }
        pos = hole;
    }
    if (r == 0 && fsync(out) != 0)
        r = vmseal_fail(errno, "clone's %s: %s", file, strerror(errno));
    close(out);
    close(in);
    return r;
}

/* The clone's image `file` (a copy of the source's, opened by old_pass) gets
 * new_pass in a new keyslot and loses the keyslot old_pass opens: its disk
 * secret is no longer the source's. deep: a new volume key too (the data
 * re-encrypted: the clone's DEK is not the source's either). */
static int clone_rekey_image(int dirfd, const char *path, const char *file,
                             const vmseal_secret *old_pass, const vmseal_secret *new_pass, int deep,
                             const hostd_host_env *env, prog_state *st)
{
    int r = vmseal_disk_keyslot_add(path, old_pass, new_pass);
    if (r >= 0)
        r = vmseal_disk_keyslot_remove(path, old_pass);
    if (r >= 0 && vmseal_disk_verify_passphrase(path, old_pass) != -EKEYREJECTED)
        r = vmseal_fail(EPROTO, "clone's %s still opens with the source's secret", file);
    if (r >= 0 && deep) {
        vmseal_disk_opts o = disk_opts(env, st ? st->p : NULL, st, NULL);
        r = vmseal_disk_rekey_at(dirfd, file, new_pass, &o);
    }
    return r < 0 ? r : 0;
}

/* A fresh MAC address under the host's prefix (hostd.conf mac_prefix). */
static int clone_new_mac(const hostd_host_env *env, char mac[18])
{
    static const unsigned char def[3] = {0x0a, 0x76, 0x6d};
    const unsigned char *p = env->net ? env->net->mac_prefix : def;
    unsigned char b[3];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
        return vmseal_fail(EIO, "getrandom: %s", strerror(errno));
    snprintf(mac, 18, "%02x:%02x:%02x:%02x:%02x:%02x", p[0], p[1], p[2], b[0], b[1], b[2]);
    return 0;
}

/* The work of hostd_vm_clone in the folder tmp_fd (busy held on src). */
static int clone_into(hostd_vm *src, const hostd_host_env *env, int tmp_fd, const char *tmp_path,
                      const hostd_vm_clone_req *req, const hostd_vm_progress *prog)
{
    const vmseal_vmrec *c = src->rec;
    int enc = rec_encrypted(c);
    vmseal_vmrec *n = vmseal_vmrec_dup(c);
    if (!n)
        return vmseal_fail(ENOMEM, "out of memory");
    int r = 0;
    hostd_copy_str(n->name, sizeof(n->name), req->name);
    hostd_copy_str(n->uuid, sizeof(n->uuid), req->uuid);
    n->state_file[0] = '\0';
    for (size_t i = 0; i < n->nnics && r == 0; i++) {
        r = clone_new_mac(env, n->nics[i].mac);
        n->nics[i].nforwards = 0;   /* host ports are the source's: not taken twice */
    }
    char obj[64];
    if (r == 0 && enc) {
        free(n->vm_keysafe);
        n->vm_keysafe = NULL;
        r = vmseal_vmrec_keysafe_object(n, -1, 0, obj, sizeof(obj));
        if (r == 0)
            r = new_wrapped_secret(env, req->kek_id, obj, &n->vm_keysafe);
    }
    uint64_t total = 0;
    for (long i = -1; i < (long)c->ndisks; i++) {
        const vmseal_vmrec_image *im = vmseal_vmrec_image_at_const(c, i);
        if (im->file[0])
            total += file_size(src, im->file) * (req->deep && enc ? 2 : 1);
    }
    prog_state st = {.p = prog, .total = total};
    for (long i = -1; i < (long)c->ndisks && r == 0; i++) {
        const vmseal_vmrec_image *im = vmseal_vmrec_image_at_const(c, i);
        if (!im->file[0])
            continue;
        uint64_t size = file_size(src, im->file);
        hostd_vm_log(src, "cloning %s into VM %s", im->file, req->name);
        r = clone_copy_image(src->home_fd, tmp_fd, im->file, &st);
        st.base += size;
        int luks = enc && (i < 0 ? rec_uefi(c) && im->file[0] : im->luks_uuid[0] != '\0');
        if (r < 0 || !luks)
            continue;
        char sobj[64];
        vmseal_secret *old_pass = NULL, *new_pass = NULL;
        const char *old_line = i < 0 ? c->vm_keysafe : im->keysafe;
        r = vmseal_vmrec_keysafe_object(c, i, 0, sobj, sizeof(sobj));
        if (r == 0)
            r = pass_from_line(env, old_line, sobj, &old_pass);
        if (r == 0)
            r = vmseal_vmrec_keysafe_object(n, i, 0, obj, sizeof(obj));
        if (r == 0 && i >= 0) {
            free(n->disks[i].keysafe);
            n->disks[i].keysafe = NULL;
            r = new_wrapped_secret(env, req->kek_id, obj, &n->disks[i].keysafe);
        }
        if (r == 0)
            r = pass_from_line(env, i < 0 ? n->vm_keysafe : n->disks[i].keysafe, obj, &new_pass);
        char *path = r == 0 ? hostd_asprintf("%s/%s", tmp_path, im->file) : NULL;
        if (r == 0 && !path)
            r = vmseal_fail(ENOMEM, "out of memory");
        if (r == 0)
            r = clone_rekey_image(tmp_fd, path, im->file, old_pass, new_pass, req->deep, env, &st);
        if (req->deep)
            st.base += size;
        free(path);
        vmseal_secret_free(old_pass);
        vmseal_secret_free(new_pass);
    }
    if (r == 0)
        r = vmseal_vmrec_saveat(n, tmp_fd, VMSEAL_VMREC_FILE);
    if (r == 0 && fsync(tmp_fd) != 0)
        r = vmseal_fail(errno, "fsync: %s", strerror(errno));
    vmseal_vmrec_free(n);
    return r;
}

int hostd_vm_clone(hostd_vm *src, const hostd_host_env *env, const char *datastore,
                   const hostd_vm_clone_req *req, const hostd_vm_progress *prog, hostd_vm **out)
{
    *out = NULL;
    if (!req->name || !hostd_vm_name_valid(req->name))
        return vmseal_fail(EINVAL, "VM name must be 1-64 of [A-Za-z0-9._-], not starting with . or -");
    if (!req->uuid || !vmseal_vmrec_uuid_valid(req->uuid))
        return vmseal_fail(EINVAL, "uuid must be a lower-case RFC 4122 UUID");
    int r = vm_begin(src, "cloning");
    if (r < 0)
        return r;
    const vmseal_vmrec *c = src->rec;
    char reason[300];
    char *home = NULL, *tmp = NULL;
    int tmp_fd = -1;
    if ((r = check_offline(src, "clone it")) < 0)
        goto out;
    if (c->op != VMSEAL_VMREC_OP_NONE) {
        r = vmseal_fail(EBUSY, "VM %s has an unfinished %s operation", src->name,
                        vmseal_vmrec_op_name(c->op));
        goto out;
    }
    if (rec_encrypted(c)) {
        if (!req->kek_id || !vmseal_keysafe_kek_id_valid(req->kek_id)) {
            r = vmseal_fail(EINVAL, "an encrypted VM's clone needs its own kek_id");
            goto out;
        }
        if (!hostd_keystore_has(env->keys, req->kek_id)) {
            r = vmseal_fail(ENOKEY, "KEK %s is not available on this host", req->kek_id);
            goto out;
        }
        if (hostd_vm_locked(src, env, reason, sizeof(reason))) {
            r = vmseal_fail(ENOKEY, "VM %s is locked: %s", src->name, reason);
            goto out;
        }
    } else if (req->kek_id || req->deep) {
        r = vmseal_fail(EINVAL, "VM %s is not encrypted: its clone is not either", src->name);
        goto out;
    }
    home = hostd_asprintf("%s/%s", datastore, req->name);
    tmp = hostd_asprintf("%s/.%s.clone", datastore, req->name);
    if (!home || !tmp) {
        r = vmseal_fail(ENOMEM, "out of memory");
        goto out;
    }
    struct stat sb;
    if (fstatat(AT_FDCWD, home, &sb, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT) {
        r = vmseal_fail(EEXIST, "a VM named %s exists already", req->name);
        goto out;
    }
    /* what an interrupted clone to this name left: removed first */
    int old = open(tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (old >= 0) {
        r = empty_dir_at(old, 0);
        close(old);
        if (r == 0 && rmdir(tmp) != 0)
            r = vmseal_fail(errno, "cannot remove %s: %s", tmp, strerror(errno));
        if (r < 0)
            goto out;
    } else if (errno != ENOENT) {
        r = vmseal_fail(errno, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    if (mkdir(tmp, 0700) != 0) {
        r = vmseal_fail(errno, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    tmp_fd = open(tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (tmp_fd < 0) {
        r = vmseal_fail(errno, "%s: %s", tmp, strerror(errno));
        goto undo;
    }
    hostd_vm_log(src, "cloning into VM %s (%s)%s", req->name, req->uuid,
                 rec_encrypted(c) ? (req->deep ? ", own KEK, disk secrets and volume keys"
                                               : ", own KEK and disk secrets")
                                  : "");
    r = clone_into(src, env, tmp_fd, tmp, req, prog);
    /* in place in one step: the clone's folder appears whole or not at all */
    if (r == 0 && syscall(SYS_renameat2, AT_FDCWD, tmp, AT_FDCWD, home, 1 /* RENAME_NOREPLACE */) != 0)
        r = vmseal_fail(errno == EEXIST ? EEXIST : errno, "cannot move the clone to %s: %s", home,
                        strerror(errno));
    if (r == 0)
        r = hostd_vm_load(home, out);
    if (r == 0) {
        hostd_vm_log(src, "cloned into VM %s", req->name);
        hostd_vm_log(*out, "cloned from VM %s (%s)", src->name, src->uuid);
        goto out;
    }
undo:;
    char msg[512];
    hostd_copy_str(msg, sizeof(msg), vmseal_last_error());
    if (tmp_fd >= 0 && empty_dir_at(tmp_fd, 0) == 0)
        (void)rmdir(tmp);
    hostd_vm_log(src, "clone into VM %s failed (nothing kept): %s", req->name, msg);
    r = vmseal_fail(-r, "%s", msg);
out:
    if (tmp_fd >= 0)
        close(tmp_fd);
    free(home);
    free(tmp);
    vm_end(src);
    return r;
}

/* ------------------------------------------------------------ disk rm */

int hostd_vm_remove_disk(hostd_vm *vm, size_t idx, int keep_file)
{
    int r = vm_begin(vm, "removing a disk");
    if (r < 0)
        return r;
    const vmseal_vmrec *c = vm->rec;
    vmseal_vmrec *next = NULL;
    char file[VMSEAL_VMREC_FILE_MAX + 1];
    if ((r = check_offline(vm, "remove a disk")) < 0)
        goto out;
    if (c->op != VMSEAL_VMREC_OP_NONE) {
        r = vmseal_fail(EBUSY, "VM %s has an unfinished %s operation", vm->name,
                        vmseal_vmrec_op_name(c->op));
        goto out;
    }
    if (idx >= c->ndisks) {
        r = vmseal_fail(ENOENT, "VM %s has no disk%zu", vm->name, idx);
        goto out;
    }
    hostd_copy_str(file, sizeof(file), c->disks[idx].file);
    next = vm_next(vm);
    if (!next) {
        r = -ENOMEM;
        goto out;
    }
    /* the later disks move down one index (their key safes are bound to
     * their LUKS UUIDs, not to the index; their files keep their names) */
    free(next->disks[idx].keysafe);
    free(next->disks[idx].next_keysafe);
    for (size_t i = idx; i + 1 < next->ndisks; i++)
        next->disks[i] = next->disks[i + 1];
    memset(&next->disks[next->ndisks - 1], 0, sizeof(next->disks[0]));
    next->ndisks--;
    r = vm_commit(vm, next);
    next = NULL;
    if (r < 0)
        goto out;
    /* vm.conf no longer names it: the file goes, or stays as it is */
    if (!keep_file && unlinkat(vm->home_fd, file, 0) != 0 && errno != ENOENT)
        hostd_vm_log(vm, "disk%zu removed; its file %s could not be deleted: %s", idx, file,
                     strerror(errno));
    else
        hostd_vm_log(vm, "disk%zu removed (%s %s)", idx, file, keep_file ? "kept" : "deleted");
out:
    vmseal_vmrec_free(next);
    vm_end(vm);
    return r;
}

/* ------------------------------------------------ for hostd/snapshot.c */

int hostd_vmi_begin(hostd_vm *vm, const char *what) { return vm_begin(vm, what); }
void hostd_vmi_end(hostd_vm *vm) { vm_end(vm); }
const vmseal_vmrec *hostd_vmi_rec(hostd_vm *vm) { return vm->rec; }
int hostd_vmi_home_fd(hostd_vm *vm) { return vm->home_fd; }
vmseal_vmrec *hostd_vmi_next(hostd_vm *vm) { return vm_next(vm); }
int hostd_vmi_commit(hostd_vm *vm, vmseal_vmrec *next) { return vm_commit(vm, next); }
hostd_qemu *hostd_vmi_qemu(hostd_vm *vm) { return qemu_running_owned(vm) ? vm->qemu : NULL; }

void hostd_vmi_kill(hostd_vm *vm)
{
    if (!vm->qemu)
        return;
    hostd_qemu_kill(vm->qemu);
    pthread_mutex_lock(&vm->lock);
    hostd_qemu *q = vm->qemu;
    vm->qemu = NULL;
    hostd_console *con = console_detach_locked(vm);
    pthread_mutex_unlock(&vm->lock);
    hostd_qemu_free(q);
    hostd_console_free(con);
    stop_block_servers(vm);
}

int hostd_vmi_power_on(hostd_vm *vm, const hostd_host_env *env, const char *snap_state)
{
    return power_on_busy(vm, env, 0, snap_state);
}

int hostd_vmi_unwrap(const hostd_host_env *env, const char *line, const char *object,
                     vmseal_secret **out)
{
    return unwrap_line(env, line, object, out);
}

int hostd_vmi_pass(const hostd_host_env *env, const char *line, const char *object,
                   vmseal_secret **pass)
{
    return pass_from_line(env, line, object, pass);
}

int hostd_vmi_wrap(const hostd_host_env *env, const char *kek_id, const char *object,
                   const vmseal_secret *payload, char **line)
{
    return wrap_secret(env, kek_id, object, payload, line);
}
