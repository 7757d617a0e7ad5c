/* One VM: home folder, vm.conf, key safes, images, QEMU. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <vmseal/diskdesc.h>
#include <vmseal/keysafe.h>
#include <vmseal/sealed.h>

#include "serial.h"
#include "strutil.h"
#include "vm.h"
#include <vmseal/vmconf.h>

struct vmseal_vm {
    pthread_mutex_t lock;   /* guards conf (pointer swap), qemu, busy */
    char *home;
    char *conf_path;
    char uuid[37];
    char name[65];
    vmseal_vmconf *conf;    /* replaced as a whole by the busy holder */
    vmseal_qemu *qemu;
    vmseal_console *console; /* encrypted VM: the sealed console log of this run */
    const char *busy;       /* what runs now, or NULL */
    int deleted;
};

/* ---------------------------------------------------------------- helpers */

/* VM UUIDs name directories: lower-case 8-4-4-4-12 only. */
static int uuid_valid(const char *s)
{
    if (!vmseal_uuid_valid(s))
        return 0;
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'F')
            return 0;
    return 1;
}

int vmseal_vm_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 64 || name[0] == '.' || name[0] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* Image file names in vm.conf are plain names inside the home folder. */
static int file_name_ok(const char *f)
{
    return vmseal_vm_name_valid(f);
}

static const char *cget(const vmseal_vmconf *c, const char *fmt, ...) VMSEAL_PRINTF(2, 3);
static const char *cget(const vmseal_vmconf *c, const char *fmt, ...)
{
    char key[VMSEAL_VMCONF_KEY_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(key, sizeof(key), fmt, ap);
    va_end(ap);
    return vmseal_vmconf_get(c, key);
}

static int cset(vmseal_vmconf *c, const char *value, const char *fmt, ...) VMSEAL_PRINTF(3, 4);
static int cset(vmseal_vmconf *c, const char *value, const char *fmt, ...)
{
    char key[VMSEAL_VMCONF_KEY_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(key, sizeof(key), fmt, ap);
    va_end(ap);
    return vmseal_vmconf_set(c, key, value);
}

static void cunset(vmseal_vmconf *c, const char *fmt, ...) VMSEAL_PRINTF(2, 3);
static void cunset(vmseal_vmconf *c, const char *fmt, ...)
{
    char key[VMSEAL_VMCONF_KEY_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(key, sizeof(key), fmt, ap);
    va_end(ap);
    vmseal_vmconf_unset(c, key);
}

static size_t conf_ndisks(const vmseal_vmconf *c)
{
    uint64_t n = 0;
    if (vmseal_vmconf_get_u64(c, "disks", &n) < 0 || n > VMSEAL_VM_MAX_DISKS)
        return 0;
    return (size_t)n;
}

static int conf_encrypted(const vmseal_vmconf *c)
{
    const char *p = vmseal_vmconf_get(c, "policy");
    return p && strcmp(p, "encrypted") == 0;
}

static int conf_uefi(const vmseal_vmconf *c)
{
    const char *f = vmseal_vmconf_get(c, "firmware");
    return f && strcmp(f, "uefi") == 0;
}

static char *home_path(const vmseal_vm *vm, const char *file)
{
    return hostd_asprintf("%s/%s", vm->home, file);
}

/* A file of the VM home, opened relative to the folder without following a
 * symlink (O_NOFOLLOW; the folder itself neither). -errno, message set. */
static int home_openat(const char *home, const char *file, int flags, mode_t mode)
{
    int dfd = open(home, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return vmseal_fail(errno, "%s: %s", home, strerror(errno));
    int fd = openat(dfd, file, flags | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, mode);
    int e = errno;
    close(dfd);
    if (fd < 0)
        return e == ELOOP ? vmseal_fail(ELOOP, "%s is a symlink (not followed)", file)
                          : vmseal_fail(e, "%s: %s", file, strerror(e));
    return fd;
}

/* lstat of a file of the VM home: 1 a regular file, 0 absent, -ELOOP a
 * symlink or anything else (never followed). */
static int home_file_state(const char *path)
{
    struct stat st;
    if (fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return errno == ENOENT ? 0 : vmseal_fail(errno, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return vmseal_fail(ELOOP, "%s is %s (not followed)", path,
                           S_ISLNK(st.st_mode) ? "a symlink" : "not a regular file");
    return 1;
}

/* The same, for a file the operation needs: absent is an error too. */
static int home_file_regular(const char *path)
{
    int r = home_file_state(path);
    if (r == 0)
        return vmseal_fail(ENOENT, "%s does not exist", path);
    return r < 0 ? r : 0;
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    return fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)
               ? (uint64_t)st.st_size : 0;
}

int vmseal_vm_boot_name_valid(const char *name)
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

int vmseal_vm_open_boot_file(const vmseal_host_env *env, const char *what, const char *name)
{
    const char *folder = env->images ? env->images : "(images folder)";
    if (!vmseal_vm_boot_name_valid(name))
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
static int check_boot_file(const vmseal_host_env *env, const char *what, const char *name)
{
    if (!name || !*name)
        return 0;
    int fd = vmseal_vm_open_boot_file(env, what, name);
    if (fd < 0)
        return fd;
    close(fd);
    return 0;
}

void vmseal_vm_log(vmseal_vm *vm, const char *fmt, ...)
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
    int fd = home_openat(vm->home, "vm.log", O_WRONLY | O_CREAT | O_APPEND, 0600);
    vmseal_fail(0, "%s", err);   /* leave the caller's message as it was */
    if (fd < 0)
        return;
    dprintf(fd, "%s %s\n", ts, msg);
    close(fd);
}

/* ------------------------------------------------------------ key safes */

static int unwrap_line(const vmseal_host_env *env, const char *line, const char *object,
                       vmseal_secret **out)
{
    *out = NULL;
    vmseal_keysafe_info info;
    int r = vmseal_keysafe_parse(line, &info);
    if (r < 0)
        return r;
    vmseal_secret *kek = NULL;
    r = vmseal_keystore_get(env->keys, info.kek_id, &kek, NULL);
    if (r < 0)
        return r;
    r = vmseal_keysafe_unwrap(kek, line, object, out);
    vmseal_secret_free(kek);
    if (r < 0)
        return vmseal_fail(r, "key safe of %s: %s", object, vmseal_last_error());
    return 0;
}

static int wrap_secret(const vmseal_host_env *env, const char *kek_id, const char *object,
                       const vmseal_secret *payload, char **line)
{
    vmseal_secret *kek = NULL;
    char provider[VMSEAL_KEYSAFE_PROVIDER_MAX + 1];
    int r = vmseal_keystore_get(env->keys, kek_id, &kek, provider);
    if (r < 0)
        return r;
    r = vmseal_keysafe_wrap(kek, provider, kek_id, object, payload, line);
    vmseal_secret_free(kek);
    return r;
}

/* LUKS passphrase from a key safe: hex of the unwrapped secret. */
static int pass_from_line(const vmseal_host_env *env, const char *line, const char *object,
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
static int new_wrapped_secret(const vmseal_host_env *env, const char *kek_id, const char *object,
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
    vmseal_vm_log(arg, "%s", line);
}

/* The log key of the sealed console log, from the key safe `ks_key`
 * (vm.keysafe, or vm.next.keysafe while encrypting). -ENOKEY "VM locked"
 * when the KEK is not loaded. */
static int log_key_from(vmseal_vm *vm, const vmseal_host_env *env, const char *line,
                        vmseal_secret **lk)
{
    *lk = NULL;
    char id[VMSEAL_KEYSAFE_KEK_ID_MAX + 1];
    if (!line || kek_id_of_line(line, id, sizeof(id)) < 0)
        return vmseal_fail(EPROTO, "VM %s: vm.conf has no valid vm.keysafe", vm->name);
    if (!vmseal_keystore_has(env->keys, id))
        return vmseal_fail(ENOKEY, "VM locked: KEK %s is not loaded on this host", id);
    char obj[64];
    vmseal_secret *s = NULL;
    int r = vmseal_keysafe_object_id("vm", vm->uuid, obj, sizeof(obj));
    if (r == 0)
        r = unwrap_line(env, line, obj, &s);
    if (r == 0)
        r = vmseal_slog_key(s, vm->uuid, lk);
    vmseal_secret_free(s);
    return r;
}

/* Detach the console (lock held); the caller frees it without the lock. */
static vmseal_console *console_detach_locked(vmseal_vm *vm)
{
    vmseal_console *c = vm->console;
    vm->console = NULL;
    return c;
}

/* ------------------------------------------------------- state handling */

static int vm_begin(vmseal_vm *vm, const char *what)
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

static void vm_end(vmseal_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    vm->busy = NULL;
    pthread_mutex_unlock(&vm->lock);
}

/* Save `next` as vm.conf (atomically) and make it current; takes next. */
static int vm_commit(vmseal_vm *vm, vmseal_vmconf *next)
{
    int r = vmseal_vmconf_save(next, vm->conf_path);
    if (r < 0) {
        vmseal_vmconf_free(next);
        return r;
    }
    pthread_mutex_lock(&vm->lock);
    vmseal_vmconf *old = vm->conf;
    vm->conf = next;
    pthread_mutex_unlock(&vm->lock);
    vmseal_vmconf_free(old);
    return 0;
}

/* Busy holder only: is QEMU running? */
static int qemu_running_owned(vmseal_vm *vm)
{
    if (!vm->qemu)
        return 0;
    if (vmseal_qemu_alive(vm->qemu))
        return 1;
    pthread_mutex_lock(&vm->lock);
    vmseal_qemu *q = vm->qemu;
    vm->qemu = NULL;
    vmseal_console *con = console_detach_locked(vm);
    pthread_mutex_unlock(&vm->lock);
    vmseal_qemu_free(q);
    vmseal_console_free(con);
    vmseal_vm_log(vm, "guest powered off");
    return 0;
}

int vmseal_vm_running(vmseal_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    if (vm->qemu && !vm->busy && !vmseal_qemu_alive(vm->qemu)) {
        vmseal_qemu_free(vm->qemu);
        vm->qemu = NULL;
        vmseal_console *con = console_detach_locked(vm);
        pthread_mutex_unlock(&vm->lock);
        vmseal_console_free(con);   /* QEMU closed the console: seals the rest, ends the segment */
        vmseal_vm_log(vm, "guest powered off");
        return 0;
    }
    int on = vm->qemu != NULL;
    pthread_mutex_unlock(&vm->lock);
    return on;
}

const char *vmseal_vm_uuid(const vmseal_vm *vm) { return vm->uuid; }
const char *vmseal_vm_name(const vmseal_vm *vm) { return vm->name; }
const char *vmseal_vm_home(const vmseal_vm *vm) { return vm->home; }

void vmseal_vm_pending_op(vmseal_vm *vm, char *buf, size_t len)
{
    pthread_mutex_lock(&vm->lock);
    const char *op = vmseal_vmconf_get(vm->conf, "op");
    hostd_copy_str(buf, len, op ? op : "");
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

static json_t *kek_ids_of(const vmseal_vmconf *c)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < vmseal_vmconf_count(c); i++) {
        const char *k = vmseal_vmconf_key_at(c, i), *v = vmseal_vmconf_value_at(c, i);
        size_t kl = strlen(k);
        char id[VMSEAL_KEYSAFE_KEK_ID_MAX + 1];
        if (kl >= 7 && strcmp(k + kl - 7, "keysafe") == 0 && kek_id_of_line(v, id, sizeof(id)) == 0)
            add_id(arr, id);
    }
    const char *opk = vmseal_vmconf_get(c, "op.kek");
    if (opk)
        add_id(arr, opk);
    vmseal_clear_error();
    return arr;
}

json_t *vmseal_vm_kek_ids(vmseal_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    json_t *a = kek_ids_of(vm->conf);
    pthread_mutex_unlock(&vm->lock);
    return a;
}

int vmseal_vm_locked(vmseal_vm *vm, const vmseal_host_env *env, char *reason, size_t len)
{
    json_t *ids = vmseal_vm_kek_ids(vm);
    size_t i;
    json_t *v;
    int locked = 0;
    json_array_foreach(ids, i, v) {
        if (!vmseal_keystore_has(env->keys, json_string_value(v))) {
            snprintf(reason, len, "KEK %s is not available on this host", json_string_value(v));
            locked = 1;
            break;
        }
    }
    json_decref(ids);
    if (!locked && len)
        reason[0] = '\0';
    return locked;
}

/* ------------------------------------------------------------- progress */

typedef struct prog_state {
    const vmseal_vm_progress *p;
    uint64_t base, total;
} prog_state;

static void prog_cb(uint64_t done, uint64_t total, void *ctx)
{
    (void)total;
    prog_state *st = ctx;
    if (st->p && st->p->fn)
        st->p->fn(st->base + done, st->total, st->p->ctx);
}

static vmseal_disk_opts disk_opts(const vmseal_host_env *env, const vmseal_vm_progress *p,
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

static int cancelled(const vmseal_vm_progress *p)
{
    return p && p->cancel && *p->cancel;
}

/* ------------------------------------------------------------ load/free */

static int check_conf(const vmseal_vmconf *c, char *name, char *uuid)
{
    const char *n = vmseal_vmconf_get(c, "name"), *u = vmseal_vmconf_get(c, "uuid");
    if (!n || !vmseal_vm_name_valid(n))
        return vmseal_fail(EPROTO, "vm.conf: name missing or invalid");
    if (!u || !uuid_valid(u))
        return vmseal_fail(EPROTO, "vm.conf: uuid missing or invalid");
    uint64_t nd;
    if (vmseal_vmconf_get_u64(c, "disks", &nd) < 0 || nd > VMSEAL_VM_MAX_DISKS)
        return vmseal_fail(EPROTO, "vm.conf: disks missing or more than %d", VMSEAL_VM_MAX_DISKS);
    for (size_t i = 0; i < nd; i++) {
        const char *f = cget(c, "disk%zu.file", i);
        if (!f || !file_name_ok(f))
            return vmseal_fail(EPROTO, "vm.conf: disk%zu.file missing or not a plain file name", i);
        const char *nf = cget(c, "disk%zu.next.file", i);
        if (nf && !file_name_ok(nf))
            return vmseal_fail(EPROTO, "vm.conf: disk%zu.next.file is not a plain file name", i);
        const char *of = cget(c, "disk%zu.old.file", i);
        if (of && !file_name_ok(of))
            return vmseal_fail(EPROTO, "vm.conf: disk%zu.old.file is not a plain file name", i);
    }
    const char *keys[] = {"nvram.file", "nvram.next.file", "nvram.old.file"};
    for (size_t i = 0; i < 3; i++) {
        const char *f = vmseal_vmconf_get(c, keys[i]);
        if (f && !file_name_ok(f))
            return vmseal_fail(EPROTO, "vm.conf: %s is not a plain file name", keys[i]);
    }
    if (conf_uefi(c) && !vmseal_vmconf_get(c, "nvram.file"))
        return vmseal_fail(EPROTO, "vm.conf: UEFI VM without nvram.file");
    hostd_copy_str(name, 65, n);
    hostd_copy_str(uuid, 37, u);
    return 0;
}

static vmseal_vm *vm_alloc(const char *home)
{
    vmseal_vm *vm = calloc(1, sizeof(*vm));
    if (!vm)
        return NULL;
    pthread_mutex_init(&vm->lock, NULL);
    vm->home = strdup(home);
    vm->conf_path = hostd_asprintf("%s/vm.conf", home);
    if (!vm->home || !vm->conf_path) {
        free(vm->home);
        free(vm->conf_path);
        free(vm);
        return NULL;
    }
    return vm;
}

void vmseal_vm_free(vmseal_vm *vm)
{
    if (!vm)
        return;
    vmseal_console_free(vm->console);   /* QEMU keeps running; the next hostd reads on */
    vmseal_qemu_free(vm->qemu);
    vmseal_vmconf_free(vm->conf);
    free(vm->home);
    free(vm->conf_path);
    pthread_mutex_destroy(&vm->lock);
    free(vm);
}

int vmseal_vm_load(const char *home, vmseal_vm **out)
{
    *out = NULL;
    vmseal_vm *vm = vm_alloc(home);
    if (!vm)
        return vmseal_fail(ENOMEM, "out of memory");
    int r = vmseal_vmconf_load(vm->conf_path, &vm->conf);
    if (r == 0)
        r = check_conf(vm->conf, vm->name, vm->uuid);
    if (r < 0) {
        r = vmseal_fail(r, "%s: %s", home, vmseal_last_error());
        vmseal_vm_free(vm);
        return r;
    }
    if (vmseal_qemu_attach(home, vm->uuid, 5000, &vm->qemu) < 0)
        vm->qemu = NULL;
    if (vm->qemu && conf_encrypted(vm->conf)) {
        /* Read the console at once; it is sealed when the KEK comes
         * (vmseal_vm_tick), buffered in memory until then. */
        int fd = vmseal_qemu_connect_serial(home, 2000);
        vmseal_console *con = NULL;
        if (fd >= 0 && vmseal_console_new(home, vm->uuid, NULL, console_note, vm, &con) == 0) {
            if (vmseal_console_attach(con, fd) == 0)
                vm->console = con;
            else
                vmseal_console_free(con);
        } else if (fd >= 0) {
            close(fd);
        }
        if (!vm->console)
            vmseal_vm_log(vm, "serial log: cannot read the console of the running VM: %s",
                          vmseal_last_error());
    }
    vmseal_clear_error();
    *out = vm;
    return 0;
}

/* ---------------------------------------------------------------- create */

static int make_plain_image(const char *path, uint64_t size)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return vmseal_fail(errno, "%s: %s", path, strerror(errno));
    struct stat st;
    int r = 0;
    if (fstat(fd, &st) != 0)
        r = vmseal_fail(errno, "%s: %s", path, strerror(errno));
    else if ((uint64_t)st.st_size != size && ftruncate(fd, (off_t)size) != 0)
        r = vmseal_fail(errno, "%s: %s", path, strerror(errno));
    else if (fsync(fd) != 0)
        r = vmseal_fail(errno, "%s: %s", path, strerror(errno));
    close(fd);
    return r;
}

static int copy_file(const char *from, const char *to)
{
    char *tmp = hostd_asprintf("%s.partial", to);
    if (!tmp)
        return vmseal_fail(ENOMEM, "out of memory");
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        free(tmp);
        return vmseal_fail(errno, "%s: %s", from, strerror(errno));
    }
    int outfd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    int r = 0;
    if (outfd < 0) {
        r = vmseal_fail(errno, "%s: %s", tmp, strerror(errno));
        goto out;
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
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(outfd, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                r = vmseal_fail(errno, "%s: %s", tmp, strerror(errno));
                break;
            }
            off += w;
        }
        if (r < 0)
            break;
    }
    if (r == 0 && fsync(outfd) != 0)
        r = vmseal_fail(errno, "%s: %s", tmp, strerror(errno));
    close(outfd);
    if (r == 0 && rename(tmp, to) != 0)
        r = vmseal_fail(errno, "%s: %s", to, strerror(errno));
    if (r < 0)
        unlink(tmp);
out:
    close(in);
    free(tmp);
    return r;
}

/* Make every image the configuration names that does not exist yet. */
static int run_create(vmseal_vm *vm, const vmseal_host_env *env, const vmseal_vm_progress *prog)
{
    const vmseal_vmconf *c = vm->conf;
    size_t nd = conf_ndisks(c);
    prog_state st = {.p = prog};
    int r = 0;
    for (size_t i = 0; i < nd && r == 0; i++) {
        uint64_t size;
        char key[32];
        snprintf(key, sizeof(key), "disk%zu.size", i);
        r = vmseal_vmconf_get_u64(c, key, &size);
        if (r < 0)
            break;
        char *path = home_path(vm, cget(c, "disk%zu.file", i));
        if (!path)
            return vmseal_fail(ENOMEM, "out of memory");
        const char *ks = cget(c, "disk%zu.keysafe", i);
        if (ks) {
            const char *luuid = cget(c, "disk%zu.luks.uuid", i);
            char obj[64];
            vmseal_secret *pass = NULL;
            r = vmseal_keysafe_object_id("disk", luuid, obj, sizeof(obj));
            if (r == 0)
                r = pass_from_line(env, ks, obj, &pass);
            if (r == 0) {
                vmseal_disk_opts o = disk_opts(env, prog, &st, luuid);
                r = home_file_state(path);
                if (r == 1)
                    r = vmseal_disk_verify_passphrase(path, pass);
                else if (r == 0)
                    r = vmseal_disk_create(path, size, pass, &o);
            }
            vmseal_secret_free(pass);
        } else {
            r = make_plain_image(path, size);
        }
        free(path);
    }
    const char *nv = vmseal_vmconf_get(c, "nvram.file");
    if (r == 0 && nv) {
        char *path = home_path(vm, nv);
        if (!path)
            return vmseal_fail(ENOMEM, "out of memory");
        r = home_file_state(path);
        if (r == 0) {
            if (!env->ovmf_vars)
                r = vmseal_fail(EINVAL, "no UEFI variable store template configured");
            else if (conf_encrypted(c)) {
                char obj[64];
                vmseal_secret *pass = NULL;
                r = vmseal_keysafe_object_id("vm", vm->uuid, obj, sizeof(obj));
                if (r == 0)
                    r = pass_from_line(env, vmseal_vmconf_get(c, "vm.keysafe"), obj, &pass);
                if (r == 0) {
                    vmseal_disk_opts o = disk_opts(env, prog, &st, NULL);
                    /* the template is the host's (a distribution may make it
                     * a symlink); the library opens images with O_NOFOLLOW */
                    char *tmpl = realpath(env->ovmf_vars, NULL);
                    r = tmpl ? vmseal_disk_encrypt(tmpl, path, pass, &o)
                             : vmseal_fail(errno, "%s: %s", env->ovmf_vars, strerror(errno));
                    free(tmpl);
                }
                vmseal_secret_free(pass);
            } else {
                r = copy_file(env->ovmf_vars, path);
            }
        }
        free(path);
    }
    if (r < 0)
        return r;
    vmseal_vmconf *next = vmseal_vmconf_dup(c);
    if (!next)
        return vmseal_fail(ENOMEM, "out of memory");
    vmseal_vmconf_unset(next, "op");
    vmseal_vmconf_unset(next, "op.kek");
    return vm_commit(vm, next);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

static int remove_tree(const char *path)
{
    if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return vmseal_fail(errno ? errno : EIO, "cannot remove %s: %s", path, strerror(errno));
    return 0;
}

int vmseal_vm_create(const vmseal_host_env *env, const char *datastore,
                     const vmseal_vm_create_req *req, const vmseal_vm_progress *prog,
                     vmseal_vm **out)
{
    *out = NULL;
    if (!vmseal_vm_name_valid(req->name))
        return vmseal_fail(EINVAL, "VM name must be 1-64 of [A-Za-z0-9._-], not starting with . or -");
    if (req->uuid && !uuid_valid(req->uuid))
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
        if (paths[i] && !vmseal_vmconf_value_valid(paths[i]))
            return vmseal_fail(EINVAL, "kernel, initrd and append must be printable text");
    if (check_boot_file(env, "kernel", req->kernel) < 0 ||
        check_boot_file(env, "initrd", req->initrd) < 0)
        return -EINVAL;
    if (req->firmware == VMSEAL_FIRMWARE_UEFI &&
        (!env->ovmf_code || !env->ovmf_vars || access(env->ovmf_code, R_OK) != 0 ||
         access(env->ovmf_vars, R_OK) != 0))
        return vmseal_fail(ENOTSUP, "UEFI firmware (ovmf) is not available on this host");
    if (req->encrypted) {
        if (!req->kek_id || !vmseal_keysafe_kek_id_valid(req->kek_id))
            return vmseal_fail(EINVAL, "an encrypted VM needs a kek_id");
        if (!vmseal_keystore_has(env->keys, req->kek_id))
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
    vmseal_vm *vm = vm_alloc(home);
    free(home);
    if (!vm)
        return vmseal_fail(ENOMEM, "out of memory");
    hostd_copy_str(vm->name, sizeof(vm->name), req->name);
    hostd_copy_str(vm->uuid, sizeof(vm->uuid), uuid);

    vmseal_vmconf *c = vmseal_vmconf_new();
    int r = c ? 0 : vmseal_fail(ENOMEM, "out of memory");
    char *line = NULL;
    if (r == 0)
        r = vmseal_vmconf_set(c, "config.version", "1");
    if (r == 0)
        r = vmseal_vmconf_set(c, "name", req->name);
    if (r == 0)
        r = vmseal_vmconf_set(c, "uuid", uuid);
    if (r == 0)
        r = vmseal_vmconf_setf(c, "cpus", "%u", req->cpus);
    if (r == 0)
        r = vmseal_vmconf_setf(c, "memory", "%u", req->memory_mb);
    if (r == 0)
        r = vmseal_vmconf_set(c, "firmware", req->firmware == VMSEAL_FIRMWARE_UEFI ? "uefi" : "bios");
    if (r == 0)
        r = vmseal_vmconf_set(c, "policy", req->encrypted ? "encrypted" : "none");
    if (r == 0 && req->kernel)
        r = vmseal_vmconf_set(c, "kernel", req->kernel);
    if (r == 0 && req->initrd)
        r = vmseal_vmconf_set(c, "initrd", req->initrd);
    if (r == 0 && req->append)
        r = vmseal_vmconf_set(c, "append", req->append);
    if (r == 0 && req->encrypted) {
        char obj[64];
        r = vmseal_keysafe_object_id("vm", uuid, obj, sizeof(obj));
        if (r == 0)
            r = new_wrapped_secret(env, req->kek_id, obj, &line);
        if (r == 0)
            r = vmseal_vmconf_set(c, "vm.keysafe", line);
        free(line);
        line = NULL;
    }
    if (r == 0 && req->firmware == VMSEAL_FIRMWARE_UEFI)
        r = vmseal_vmconf_set(c, "nvram.file", req->encrypted ? "nvram.luks" : "nvram.fd");
    if (r == 0)
        r = vmseal_vmconf_setf(c, "disks", "%zu", req->ndisks);
    for (size_t i = 0; i < req->ndisks && r == 0; i++) {
        char fname[32];
        snprintf(fname, sizeof(fname), "disk%zu.%s", i, req->encrypted ? "luks" : "img");
        r = cset(c, fname, "disk%zu.file", i);
        char size[32];
        snprintf(size, sizeof(size), "%llu", (unsigned long long)req->disk_sizes[i]);
        if (r == 0)
            r = cset(c, size, "disk%zu.size", i);
        if (r == 0 && req->encrypted) {
            char luuid[37], obj[64];
            r = vmseal_uuid_random(luuid);
            if (r == 0)
                r = vmseal_keysafe_object_id("disk", luuid, obj, sizeof(obj));
            if (r == 0)
                r = cset(c, luuid, "disk%zu.luks.uuid", i);
            if (r == 0)
                r = new_wrapped_secret(env, req->kek_id, obj, &line);
            if (r == 0)
                r = cset(c, line, "disk%zu.keysafe", i);
            free(line);
            line = NULL;
        }
    }
    if (r == 0)
        r = vmseal_vmconf_set(c, "op", "create");
    if (r == 0) {
        r = vm_commit(vm, c);
        c = NULL;
    }
    vmseal_vmconf_free(c);
    if (r == 0) {
        vm->busy = "creating";
        r = run_create(vm, env, prog);
        vm->busy = NULL;
    }
    if (r < 0) {
        char msg[512];
        hostd_copy_str(msg, sizeof(msg), vmseal_last_error());
        if (r != -ECANCELED)
            (void)remove_tree(vm->home);
        vmseal_vm_free(vm);
        return vmseal_fail(r, "%s", msg);
    }
    vmseal_vm_log(vm, "created (%s, %zu disk(s), firmware %s)%s%s",
                  req->encrypted ? "encrypted" : "not encrypted", req->ndisks,
                  req->firmware == VMSEAL_FIRMWARE_UEFI ? "uefi" : "bios",
                  req->encrypted ? " under KEK " : "", req->encrypted ? req->kek_id : "");
    *out = vm;
    return 0;
}

/* ------------------------------------------------------------- power */

int vmseal_vm_power_on(vmseal_vm *vm, const vmseal_host_env *env)
{
    int r = vm_begin(vm, "powering on");
    if (r < 0)
        return r;
    const vmseal_vmconf *c = vm->conf;
    vmseal_secret *vm_secret = NULL, *nv_pass = NULL, *pass[VMSEAL_VM_MAX_DISKS] = {0};
    char *paths[VMSEAL_VM_MAX_DISKS] = {0}, *nv_path = NULL;
    vmseal_qemu_disk disks[VMSEAL_VM_MAX_DISKS];
    vmseal_qemu_disk nvram = {0};
    int kernel_fd = -1, initrd_fd = -1;
    size_t nd = conf_ndisks(c);
    char reason[300];
    if (qemu_running_owned(vm)) {
        r = vmseal_fail(EALREADY, "VM %s is already powered on", vm->name);
        goto out;
    }
    if (vmseal_vmconf_get(c, "op")) {
        r = vmseal_fail(EBUSY, "VM %s has an unfinished %s operation", vm->name,
                        vmseal_vmconf_get(c, "op"));
        goto out;
    }
    if (vmseal_vm_locked(vm, env, reason, sizeof(reason))) {
        r = vmseal_fail(ENOKEY, "VM %s is locked: %s", vm->name, reason);
        goto out;
    }
    char obj[64];
    if (conf_encrypted(c)) {
        r = vmseal_keysafe_object_id("vm", vm->uuid, obj, sizeof(obj));
        if (r == 0)
            r = unwrap_line(env, vmseal_vmconf_get(c, "vm.keysafe") ? vmseal_vmconf_get(c, "vm.keysafe") : "",
                            obj, &vm_secret);
        if (r < 0)
            goto out;
    }
    for (size_t i = 0; i < nd; i++) {
        paths[i] = home_path(vm, cget(c, "disk%zu.file", i));
        if (!paths[i]) {
            r = vmseal_fail(ENOMEM, "out of memory");
            goto out;
        }
        disks[i] = (vmseal_qemu_disk){.path = paths[i]};
        const char *ks = cget(c, "disk%zu.keysafe", i);
        if (!ks)
            continue;
        /* The key safe is bound to the LUKS UUID in the disk's own header:
         * a key safe next to another disk does not open it. */
        vmseal_disk_info info;
        r = home_file_regular(paths[i]);
        if (r == 0)
            r = vmseal_disk_probe(paths[i], &info);
        if (r < 0)
            goto out;
        const char *want = cget(c, "disk%zu.luks.uuid", i);
        if (!want || strcmp(want, info.uuid) != 0) {
            r = vmseal_fail(EKEYREJECTED, "%s is not the disk its key safe belongs to (LUKS UUID %s)",
                            paths[i], info.uuid);
            goto out;
        }
        r = vmseal_keysafe_object_id("disk", info.uuid, obj, sizeof(obj));
        if (r == 0)
            r = pass_from_line(env, ks, obj, &pass[i]);
        if (r < 0)
            goto out;
        disks[i].passphrase = pass[i];
    }
    /* Kernel and initrd: opened beneath the images folder now and handed to
     * QEMU as descriptors (a file swapped in later changes nothing). */
    const char *kname = vmseal_vmconf_get(c, "kernel"), *iname = vmseal_vmconf_get(c, "initrd");
    if (kname && (kernel_fd = vmseal_vm_open_boot_file(env, "kernel", kname)) < 0) {
        r = kernel_fd;
        vmseal_vm_log(vm, "power on failed: %s", vmseal_last_error());
        goto out;
    }
    if (iname && (initrd_fd = vmseal_vm_open_boot_file(env, "initrd", iname)) < 0) {
        r = initrd_fd;
        vmseal_vm_log(vm, "power on failed: %s", vmseal_last_error());
        goto out;
    }
    vmseal_console *con = NULL;
    if (vm_secret) {
        /* Encrypted: the console goes to hostd, which seals it. The log is
         * prepared before QEMU starts (a planted symlink stops it here). */
        vmseal_secret *lk = NULL;
        r = vmseal_slog_key(vm_secret, vm->uuid, &lk);
        if (r == 0)
            r = vmseal_console_new(vm->home, vm->uuid, lk, console_note, vm, &con);
        if (r < 0) {
            vmseal_vm_log(vm, "power on failed: %s", vmseal_last_error());
            goto out;
        }
        pthread_mutex_lock(&vm->lock);
        vmseal_console *old = console_detach_locked(vm);
        vm->console = con;
        pthread_mutex_unlock(&vm->lock);
        vmseal_console_free(old);
    }
    vmseal_qemu_spec spec = {
        .qemu = env->qemu,
        .run_dir = vm->home,
        .serial_socket = con != NULL,
        .name = vm->name,
        .uuid = vm->uuid,
        .accel = env->accel,
        .run_as = env->qemu_user,
        .append = vmseal_vmconf_get(c, "append"),
        .disks = disks,
        .ndisks = nd,
    };
    spec.kernel_fd = kernel_fd > 0 ? kernel_fd : 0;
    spec.initrd_fd = initrd_fd > 0 ? initrd_fd : 0;
    uint64_t v;
    spec.cpus = vmseal_vmconf_get_u64(c, "cpus", &v) == 0 && v <= 64 ? (unsigned)v : 1;
    spec.memory_mb = vmseal_vmconf_get_u64(c, "memory", &v) == 0 && v <= 65536 ? (unsigned)v : 256;
    if (conf_uefi(c)) {
        nv_path = home_path(vm, vmseal_vmconf_get(c, "nvram.file"));
        if (!nv_path) {
            r = vmseal_fail(ENOMEM, "out of memory");
            goto out;
        }
        nvram.path = nv_path;
        if (vm_secret) {
            r = vmseal_disk_passphrase_from_secret(vm_secret, &nv_pass);
            if (r < 0)
                goto out;
            nvram.passphrase = nv_pass;
        }
        spec.firmware_code = env->ovmf_code;
        spec.nvram = &nvram;
    }
    vmseal_qemu *q = NULL;
    r = vmseal_qemu_start(&spec, &q);
    if (r == 0 && con && (r = vmseal_console_attach(con, vmseal_qemu_take_serial(q))) < 0) {
        char msg[512];
        hostd_copy_str(msg, sizeof(msg), vmseal_last_error());
        vmseal_qemu_kill(q);
        vmseal_qemu_free(q);
        vmseal_fail(-r, "%s", msg);
    }
    if (r < 0) {
        vmseal_vm_log(vm, "power on failed: %s", vmseal_last_error());
        pthread_mutex_lock(&vm->lock);
        con = console_detach_locked(vm);
        pthread_mutex_unlock(&vm->lock);
        vmseal_console_free(con);
        goto out;
    }
    pthread_mutex_lock(&vm->lock);
    vm->qemu = q;
    pthread_mutex_unlock(&vm->lock);
    vmseal_vm_log(vm, "powered on (QEMU pid %d, %s)", (int)vmseal_qemu_pid(q),
                  env->accel == VMSEAL_ACCEL_KVM ? "kvm" : "tcg");
out:
    vmseal_secret_free(vm_secret);
    vmseal_secret_free(nv_pass);
    for (size_t i = 0; i < VMSEAL_VM_MAX_DISKS; i++) {
        vmseal_secret_free(pass[i]);
        free(paths[i]);
    }
    free(nv_path);
    if (kernel_fd >= 0)
        close(kernel_fd);
    if (initrd_fd >= 0)
        close(initrd_fd);
    vm_end(vm);
    return r;
}

int vmseal_vm_power_off(vmseal_vm *vm, int grace_ms)
{
    int r = vm_begin(vm, "powering off");
    if (r < 0)
        return r;
    if (!qemu_running_owned(vm)) {
        vm_end(vm);
        return vmseal_fail(EALREADY, "VM %s is not powered on", vm->name);
    }
    r = vmseal_qemu_power_off(vm->qemu, grace_ms);
    pthread_mutex_lock(&vm->lock);
    vmseal_qemu *q = vm->qemu;
    vm->qemu = NULL;
    vmseal_console *con = console_detach_locked(vm);
    pthread_mutex_unlock(&vm->lock);
    vmseal_qemu_free(q);
    vmseal_console_free(con);
    vmseal_vm_log(vm, r == 0 ? "powered off (guest shut down)" : "powered off (QEMU stopped after %d ms)",
                  grace_ms);
    vm_end(vm);
    return r;
}

/* ---------------------------------------------------- encrypt / decrypt */

/* Remove files a finished step left for deletion (diskN.old.file,
 * nvram.old.file). */
static int finish_cleanups(vmseal_vm *vm)
{
    const vmseal_vmconf *c = vm->conf;
    vmseal_vmconf *next = NULL;
    size_t nd = conf_ndisks(c);
    for (size_t i = 0; i <= nd; i++) {
        char key[32];
        if (i < nd)
            snprintf(key, sizeof(key), "disk%zu.old.file", i);
        else
            snprintf(key, sizeof(key), "nvram.old.file");
        const char *f = vmseal_vmconf_get(c, key);
        if (!f)
            continue;
        char *p = home_path(vm, f);
        if (!p) {
            vmseal_vmconf_free(next);
            return vmseal_fail(ENOMEM, "out of memory");
        }
        if (unlink(p) != 0 && errno != ENOENT) {
            int e = errno;
            free(p);
            vmseal_vmconf_free(next);
            return vmseal_fail(e, "cannot remove %s: %s", f, strerror(e));
        }
        free(p);
        if (!next && !(next = vmseal_vmconf_dup(c)))
            return vmseal_fail(ENOMEM, "out of memory");
        vmseal_vmconf_unset(next, key);
    }
    return next ? vm_commit(vm, next) : 0;
}

/* Bytes the pending conversions will read (for progress). */
static uint64_t pending_bytes(vmseal_vm *vm, const char *disk_marker, const char *marker_nvram,
                              int marker_means_done)
{
    const vmseal_vmconf *c = vm->conf;
    uint64_t total = 0;
    size_t nd = conf_ndisks(c);
    for (size_t i = 0; i <= nd; i++) {
        char key[48];
        if (i < nd)
            snprintf(key, sizeof(key), "disk%zu.%s", i, disk_marker);
        else
            snprintf(key, sizeof(key), "%s", marker_nvram);
        int has = vmseal_vmconf_get(c, key) != NULL;
        if (has == marker_means_done)
            continue;
        const char *f = i < nd ? cget(c, "disk%zu.file", i) : vmseal_vmconf_get(c, "nvram.file");
        if (!f)
            continue;
        char *p = home_path(vm, f);
        if (p)
            total += file_size(p);
        free(p);
    }
    return total ? total : 1;
}

/* One image of an encrypt (to_luks) or decrypt: convert, then swap the
 * configuration over to the new file and drop the old one. `idx` is the
 * disk index, or -1 for the NVRAM. */
static int convert_one(vmseal_vm *vm, const vmseal_host_env *env, long idx, int to_luks,
                       const vmseal_vm_progress *prog, prog_state *st)
{
    const vmseal_vmconf *c = vm->conf;
    char pre[32];
    if (idx >= 0)
        snprintf(pre, sizeof(pre), "disk%ld", idx);
    else
        snprintf(pre, sizeof(pre), "nvram");
    const char *next_file = cget(c, "%s.next.file", pre);
    if (!next_file)
        return 0;   /* done already */
    const char *cur_file = cget(c, "%s.file", pre);
    char *in = home_path(vm, cur_file), *out = home_path(vm, next_file);
    vmseal_secret *pass = NULL;
    int r = (in && out) ? 0 : vmseal_fail(ENOMEM, "out of memory");
    char obj[64];
    const char *luks_uuid = NULL;
    if (r == 0) {
        if (idx < 0) {
            /* the NVRAM is opened with the VM secret */
            const char *ks = to_luks ? vmseal_vmconf_get(c, "vm.next.keysafe")
                                     : vmseal_vmconf_get(c, "vm.keysafe");
            r = vmseal_keysafe_object_id("vm", vm->uuid, obj, sizeof(obj));
            if (r == 0)
                r = pass_from_line(env, ks ? ks : "", obj, &pass);
        } else if (to_luks) {
            luks_uuid = cget(c, "%s.next.luks.uuid", pre);
            const char *ks = cget(c, "%s.next.keysafe", pre);
            r = vmseal_keysafe_object_id("disk", luks_uuid, obj, sizeof(obj));
            if (r == 0)
                r = pass_from_line(env, ks ? ks : "", obj, &pass);
        } else {
            const char *u = cget(c, "%s.luks.uuid", pre);
            const char *ks = cget(c, "%s.keysafe", pre);
            r = vmseal_keysafe_object_id("disk", u, obj, sizeof(obj));
            if (r == 0)
                r = pass_from_line(env, ks ? ks : "", obj, &pass);
        }
    }
    uint64_t in_size = in ? file_size(in) : 0;
    /* Neither image may be a symlink: the input is read, the output written. */
    if (r == 0)
        r = home_file_regular(in);
    if (r == 0 && (r = home_file_state(out)) > 0)
        r = 0;
    if (r == 0) {
        vmseal_disk_opts o = disk_opts(env, prog, st, luks_uuid);
        if (to_luks) {
            r = vmseal_disk_encrypt(in, out, pass, &o);
            if (r == -EEXIST)   /* finished before a crash: check it is ours */
                r = vmseal_disk_verify_passphrase(out, pass);
        } else {
            r = vmseal_disk_decrypt(in, out, pass, &o);
            if (r == -EEXIST)   /* outputs only appear complete */
                r = 0;
        }
    }
    vmseal_secret_free(pass);
    free(in);
    free(out);
    if (r < 0)
        return r;
    st->base += in_size;

    vmseal_vmconf *n = vmseal_vmconf_dup(c);
    if (!n)
        return vmseal_fail(ENOMEM, "out of memory");
    char *old = strdup(cur_file), *nf = strdup(next_file);
    r = old && nf ? 0 : vmseal_fail(ENOMEM, "out of memory");
    if (r == 0)
        r = cset(n, nf, "%s.file", pre);
    if (r == 0)
        r = cset(n, old, "%s.old.file", pre);
    if (r == 0 && idx >= 0) {
        if (to_luks) {
            r = cset(n, cget(c, "%s.next.luks.uuid", pre), "%s.luks.uuid", pre);
            if (r == 0)
                r = cset(n, cget(c, "%s.next.keysafe", pre), "%s.keysafe", pre);
        } else {
            cunset(n, "%s.luks.uuid", pre);
            cunset(n, "%s.keysafe", pre);
        }
    }
    cunset(n, "%s.next.file", pre);
    cunset(n, "%s.next.luks.uuid", pre);
    cunset(n, "%s.next.keysafe", pre);
    if (r < 0) {
        free(old);
        free(nf);
        vmseal_vmconf_free(n);
        return r;
    }
    r = vm_commit(vm, n);   /* c, cur_file and next_file are gone from here on */
    if (r == 0)
        r = finish_cleanups(vm);
    if (r == 0)
        vmseal_vm_log(vm, "%s %s: now %s", to_luks ? "encrypted" : "decrypted", pre, nf);
    free(old);
    free(nf);
    return r;
}

static int run_convert(vmseal_vm *vm, const vmseal_host_env *env, int to_luks,
                       const vmseal_vm_progress *prog)
{
    int r = finish_cleanups(vm);
    if (r < 0)
        return r;
    prog_state st = {.p = prog, .total = pending_bytes(vm, "next.file", "nvram.next.file", 0)};
    if (prog && prog->fn)
        prog->fn(0, st.total, prog->ctx);
    size_t nd = conf_ndisks(vm->conf);
    for (size_t i = 0; i < nd && r == 0; i++) {
        if (cancelled(prog))
            return vmseal_fail(ECANCELED, "cancelled");
        r = convert_one(vm, env, (long)i, to_luks, prog, &st);
    }
    if (r == 0 && vmseal_vmconf_get(vm->conf, "nvram.next.file"))
        r = convert_one(vm, env, -1, to_luks, prog, &st);
    if (r < 0)
        return r;
    /* The console log follows the policy: a clear serial.log is sealed
     * under the new VM secret; a sealed log is written out in clear while
     * its key safe still exists. */
    const char *lks = to_luks && vmseal_vmconf_get(vm->conf, "vm.next.keysafe")
                          ? vmseal_vmconf_get(vm->conf, "vm.next.keysafe")
                          : vmseal_vmconf_get(vm->conf, "vm.keysafe");
    vmseal_secret *lk = NULL;
    r = log_key_from(vm, env, lks, &lk);
    if (r == 0)
        r = to_luks ? vmseal_console_seal_plain(vm->home, vm->uuid, lk, console_note, vm)
                    : vmseal_console_unseal_to_plain(vm->home, vm->uuid, lk, console_note, vm);
    vmseal_secret_free(lk);
    if (r < 0)
        return vmseal_fail(-r, "serial log: %s", vmseal_last_error());
    vmseal_vmconf *n = vmseal_vmconf_dup(vm->conf);
    if (!n)
        return vmseal_fail(ENOMEM, "out of memory");
    if (to_luks) {
        const char *ks = vmseal_vmconf_get(vm->conf, "vm.next.keysafe");
        if (ks)
            r = vmseal_vmconf_set(n, "vm.keysafe", ks);
        if (r == 0)
            r = vmseal_vmconf_set(n, "policy", "encrypted");
    } else {
        vmseal_vmconf_unset(n, "vm.keysafe");
        r = vmseal_vmconf_set(n, "policy", "none");
    }
    vmseal_vmconf_unset(n, "vm.next.keysafe");
    vmseal_vmconf_unset(n, "op");
    vmseal_vmconf_unset(n, "op.kek");
    if (r < 0) {
        vmseal_vmconf_free(n);
        return r;
    }
    r = vm_commit(vm, n);
    if (r == 0 && prog && prog->fn)
        prog->fn(st.total, st.total, prog->ctx);
    return r;
}

/* Common checks before an offline operation; the caller holds busy. */
static int check_offline(vmseal_vm *vm, const char *what)
{
    if (qemu_running_owned(vm))
        return vmseal_fail(EBUSY, "VM %s must be powered off to %s", vm->name, what);
    return 0;
}

int vmseal_vm_encrypt(vmseal_vm *vm, const vmseal_host_env *env, const char *kek_id,
                      const vmseal_vm_progress *prog)
{
    int r = vm_begin(vm, "encrypting");
    if (r < 0)
        return r;
    const vmseal_vmconf *c = vm->conf;
    const char *op = vmseal_vmconf_get(c, "op");
    if ((r = check_offline(vm, "encrypt it")) < 0)
        goto out;
    if (!kek_id || !vmseal_keysafe_kek_id_valid(kek_id)) {
        r = vmseal_fail(EINVAL, "invalid kek_id");
        goto out;
    }
    if (op && strcmp(op, "encrypt") == 0) {
        const char *k = vmseal_vmconf_get(c, "op.kek");
        if (!k || strcmp(k, kek_id) != 0) {
            r = vmseal_fail(EBUSY, "an unfinished encrypt under KEK %s must be resumed first", k ? k : "?");
            goto out;
        }
        vmseal_vm_log(vm, "resuming encryption under KEK %s", kek_id);
        r = run_convert(vm, env, 1, prog);
        goto out;
    }
    if (op) {
        r = vmseal_fail(EBUSY, "VM %s has an unfinished %s operation", vm->name, op);
        goto out;
    }
    if (conf_encrypted(c)) {
        r = vmseal_fail(EALREADY, "VM %s is encrypted already", vm->name);
        goto out;
    }
    if (!vmseal_keystore_has(env->keys, kek_id)) {
        r = vmseal_fail(ENOKEY, "KEK %s is not available on this host", kek_id);
        goto out;
    }
    /* Record the plan with the new key safes before touching any data. */
    vmseal_vmconf *n = vmseal_vmconf_dup(c);
    if (!n) {
        r = vmseal_fail(ENOMEM, "out of memory");
        goto out;
    }
    char obj[64], *line = NULL;
    r = vmseal_keysafe_object_id("vm", vm->uuid, obj, sizeof(obj));
    if (r == 0)
        r = new_wrapped_secret(env, kek_id, obj, &line);
    if (r == 0)
        r = vmseal_vmconf_set(n, "vm.next.keysafe", line);
    free(line);
    line = NULL;
    size_t nd = conf_ndisks(c);
    for (size_t i = 0; i < nd && r == 0; i++) {
        char luuid[37], fname[32];
        snprintf(fname, sizeof(fname), "disk%zu.luks", i);
        r = vmseal_uuid_random(luuid);
        if (r == 0)
            r = vmseal_keysafe_object_id("disk", luuid, obj, sizeof(obj));
        if (r == 0)
            r = new_wrapped_secret(env, kek_id, obj, &line);
        if (r == 0)
            r = cset(n, fname, "disk%zu.next.file", i);
        if (r == 0)
            r = cset(n, luuid, "disk%zu.next.luks.uuid", i);
        if (r == 0)
            r = cset(n, line, "disk%zu.next.keysafe", i);
        free(line);
        line = NULL;
    }
    if (r == 0 && conf_uefi(c))
        r = vmseal_vmconf_set(n, "nvram.next.file", "nvram.luks");
    if (r == 0)
        r = vmseal_vmconf_set(n, "op", "encrypt");
    if (r == 0)
        r = vmseal_vmconf_set(n, "op.kek", kek_id);
    if (r < 0) {
        vmseal_vmconf_free(n);
        goto out;
    }
    r = vm_commit(vm, n);
    if (r < 0)
        goto out;
    vmseal_vm_log(vm, "encrypting under KEK %s", kek_id);
    r = run_convert(vm, env, 1, prog);
out:
    if (r == 0)
        vmseal_vm_log(vm, "encrypted under KEK %s", kek_id);
    else if (r != -EBUSY && r != -EALREADY && r != -EINVAL)
        vmseal_vm_log(vm, "encrypt stopped: %s", vmseal_last_error());
    vm_end(vm);
    return r;
}

int vmseal_vm_decrypt(vmseal_vm *vm, const vmseal_host_env *env, const vmseal_vm_progress *prog)
{
    int r = vm_begin(vm, "decrypting");
    if (r < 0)
        return r;
    const vmseal_vmconf *c = vm->conf;
    const char *op = vmseal_vmconf_get(c, "op");
    char reason[300];
    if ((r = check_offline(vm, "decrypt it")) < 0)
        goto out;
    if (op && strcmp(op, "decrypt") == 0) {
        vmseal_vm_log(vm, "resuming decryption");
        r = run_convert(vm, env, 0, prog);
        goto out;
    }
    if (op) {
        r = vmseal_fail(EBUSY, "VM %s has an unfinished %s operation", vm->name, op);
        goto out;
    }
    if (!conf_encrypted(c)) {
        r = vmseal_fail(EALREADY, "VM %s is not encrypted", vm->name);
        goto out;
    }
    if (vmseal_vm_locked(vm, env, reason, sizeof(reason))) {
        r = vmseal_fail(ENOKEY, "VM %s is locked: %s", vm->name, reason);
        goto out;
    }
    vmseal_vmconf *n = vmseal_vmconf_dup(c);
    if (!n) {
        r = vmseal_fail(ENOMEM, "out of memory");
        goto out;
    }
    size_t nd = conf_ndisks(c);
    for (size_t i = 0; i < nd && r == 0; i++) {
        if (!cget(c, "disk%zu.keysafe", i))
            continue;
        char fname[32];
        snprintf(fname, sizeof(fname), "disk%zu.img", i);
        r = cset(n, fname, "disk%zu.next.file", i);
    }
    if (r == 0 && conf_uefi(c))
        r = vmseal_vmconf_set(n, "nvram.next.file", "nvram.fd");
    if (r == 0)
        r = vmseal_vmconf_set(n, "op", "decrypt");
    if (r < 0) {
        vmseal_vmconf_free(n);
        goto out;
    }
    r = vm_commit(vm, n);
    if (r < 0)
        goto out;
    vmseal_vm_log(vm, "decrypting");
    r = run_convert(vm, env, 0, prog);
out:
    if (r == 0)
        vmseal_vm_log(vm, "decrypted");
    else if (r != -EBUSY && r != -EALREADY)
        vmseal_vm_log(vm, "decrypt stopped: %s", vmseal_last_error());
    vm_end(vm);
    return r;
}

/* ---------------------------------------------------------------- recrypt */

/* Rewrap every key safe of conf `n` under new_kek_id (in place). */
static int rewrap_all(vmseal_vm *vm, const vmseal_host_env *env, vmseal_vmconf *n,
                      const char *new_kek_id)
{
    vmseal_secret *new_kek = NULL;
    char provider[VMSEAL_KEYSAFE_PROVIDER_MAX + 1];
    int r = vmseal_keystore_get(env->keys, new_kek_id, &new_kek, provider);
    if (r < 0)
        return r;
    size_t nd = conf_ndisks(n);
    for (size_t i = 0; i <= nd && r == 0; i++) {
        char key[32], obj[64];
        const char *line, *kind, *uuid;
        if (i < nd) {
            snprintf(key, sizeof(key), "disk%zu.keysafe", i);
            line = vmseal_vmconf_get(n, key);
            kind = "disk";
            uuid = cget(n, "disk%zu.luks.uuid", i);
        } else {
            snprintf(key, sizeof(key), "vm.keysafe");
            line = vmseal_vmconf_get(n, key);
            kind = "vm";
            uuid = vm->uuid;
        }
        if (!line)
            continue;
        char id[VMSEAL_KEYSAFE_KEK_ID_MAX + 1];
        vmseal_secret *old_kek = NULL;
        r = vmseal_keysafe_object_id(kind, uuid, obj, sizeof(obj));
        if (r == 0)
            r = kek_id_of_line(line, id, sizeof(id));
        if (r == 0)
            r = vmseal_keystore_get(env->keys, id, &old_kek, NULL);
        char *nl = NULL;
        if (r == 0)
            r = vmseal_keysafe_rewrap(old_kek, line, obj, new_kek, provider, new_kek_id, &nl);
        vmseal_secret_free(old_kek);
        if (r == 0)
            r = vmseal_vmconf_set(n, key, nl);
        free(nl);
        if (r < 0)
            r = vmseal_fail(r, "%s: %s", key, vmseal_last_error());
    }
    vmseal_secret_free(new_kek);
    return r;
}

static int run_rekey(vmseal_vm *vm, const vmseal_host_env *env, const vmseal_vm_progress *prog)
{
    const char *new_kek = vmseal_vmconf_get(vm->conf, "op.kek");
    if (!new_kek)
        return vmseal_fail(EPROTO, "vm.conf: recrypt-deep without op.kek");
    char kek_id[VMSEAL_KEYSAFE_KEK_ID_MAX + 1];
    hostd_copy_str(kek_id, sizeof(kek_id), new_kek);
    prog_state st = {.p = prog, .total = pending_bytes(vm, "rekeyed", "nvram.rekeyed", 1)};
    if (prog && prog->fn)
        prog->fn(0, st.total, prog->ctx);
    size_t nd = conf_ndisks(vm->conf);
    int r = 0;
    for (size_t i = 0; i <= nd && r == 0; i++) {
        const vmseal_vmconf *c = vm->conf;
        char mark[32], obj[64];
        const char *file, *line, *kind, *uuid;
        if (i < nd) {
            snprintf(mark, sizeof(mark), "disk%zu.rekeyed", i);
            file = cget(c, "disk%zu.file", i);
            line = cget(c, "disk%zu.keysafe", i);
            kind = "disk";
            uuid = cget(c, "disk%zu.luks.uuid", i);
        } else {
            snprintf(mark, sizeof(mark), "nvram.rekeyed");
            file = conf_uefi(c) ? vmseal_vmconf_get(c, "nvram.file") : NULL;
            line = vmseal_vmconf_get(c, "vm.keysafe");
            kind = "vm";
            uuid = vm->uuid;
        }
        if (!file || !line || vmseal_vmconf_get(c, mark))
            continue;
        if (cancelled(prog))
            return vmseal_fail(ECANCELED, "cancelled");
        r = vmseal_keysafe_object_id(kind, uuid, obj, sizeof(obj));
        if (r < 0)
            return r;
        char *path = home_path(vm, file);
        vmseal_secret *pass = NULL;
        r = path ? pass_from_line(env, line, obj, &pass) : vmseal_fail(ENOMEM, "out of memory");
        uint64_t size = path ? file_size(path) : 0;
        if (r == 0) {
            vmseal_disk_opts o = disk_opts(env, prog, &st, NULL);
            r = vmseal_disk_rekey(path, pass, &o);
        }
        vmseal_secret_free(pass);
        free(path);
        if (r < 0)
            return r;
        st.base += size;
        char fname[80];
        hostd_copy_str(fname, sizeof(fname), file);
        vmseal_vmconf *n = vmseal_vmconf_dup(c);
        if (!n)
            return vmseal_fail(ENOMEM, "out of memory");
        r = vmseal_vmconf_set(n, mark, "1");
        if (r == 0)
            r = vm_commit(vm, n);   /* c, file and line are gone from here on */
        else
            vmseal_vmconf_free(n);
        if (r == 0)
            vmseal_vm_log(vm, "new volume key for %s", fname);
    }
    if (r < 0)
        return r;
    vmseal_vmconf *n = vmseal_vmconf_dup(vm->conf);
    if (!n)
        return vmseal_fail(ENOMEM, "out of memory");
    r = rewrap_all(vm, env, n, kek_id);
    vmseal_vmconf_unset_prefix(n, "op");
    for (size_t i = 0; i < nd; i++)
        cunset(n, "disk%zu.rekeyed", i);
    vmseal_vmconf_unset(n, "nvram.rekeyed");
    if (r < 0) {
        vmseal_vmconf_free(n);
        return r;
    }
    r = vm_commit(vm, n);
    if (r == 0 && prog && prog->fn)
        prog->fn(st.total, st.total, prog->ctx);
    return r;
}

int vmseal_vm_recrypt(vmseal_vm *vm, const vmseal_host_env *env, const char *new_kek_id, int deep,
                      const vmseal_vm_progress *prog)
{
    int r = vm_begin(vm, deep ? "deep recrypt" : "shallow recrypt");
    if (r < 0)
        return r;
    const vmseal_vmconf *c = vm->conf;
    const char *op = vmseal_vmconf_get(c, "op");
    char reason[300];
    if (!new_kek_id || !vmseal_keysafe_kek_id_valid(new_kek_id)) {
        r = vmseal_fail(EINVAL, "invalid new_kek_id");
        goto out;
    }
    if (deep && op && strcmp(op, "recrypt-deep") == 0) {
        const char *k = vmseal_vmconf_get(c, "op.kek");
        if (!k || strcmp(k, new_kek_id) != 0) {
            r = vmseal_fail(EBUSY, "an unfinished deep recrypt to KEK %s must be resumed first",
                            k ? k : "?");
            goto out;
        }
        if ((r = check_offline(vm, "deep recrypt it")) < 0)
            goto out;
        vmseal_vm_log(vm, "resuming deep recrypt to KEK %s", new_kek_id);
        r = run_rekey(vm, env, prog);
        goto out;
    }
    if (op) {
        r = vmseal_fail(EBUSY, "VM %s has an unfinished %s operation", vm->name, op);
        goto out;
    }
    if (!conf_encrypted(c)) {
        r = vmseal_fail(EINVAL, "VM %s is not encrypted", vm->name);
        goto out;
    }
    if (vmseal_vm_locked(vm, env, reason, sizeof(reason))) {
        r = vmseal_fail(ENOKEY, "VM %s is locked: %s", vm->name, reason);
        goto out;
    }
    if (!vmseal_keystore_has(env->keys, new_kek_id)) {
        r = vmseal_fail(ENOKEY, "KEK %s is not available on this host", new_kek_id);
        goto out;
    }
    if (!deep) {
        /* Only the key safes change: one atomic replacement of vm.conf. */
        vmseal_vmconf *n = vmseal_vmconf_dup(c);
        r = n ? rewrap_all(vm, env, n, new_kek_id) : vmseal_fail(ENOMEM, "out of memory");
        if (r == 0)
            r = vm_commit(vm, n);
        else
            vmseal_vmconf_free(n);
        if (r == 0)
            vmseal_vm_log(vm, "key safes rewrapped under KEK %s (shallow recrypt)", new_kek_id);
        goto out;
    }
    if ((r = check_offline(vm, "deep recrypt it")) < 0)
        goto out;
    /* Check every key safe opens before changing anything. */
    vmseal_vmconf *probe = vmseal_vmconf_dup(c);
    r = probe ? rewrap_all(vm, env, probe, new_kek_id) : vmseal_fail(ENOMEM, "out of memory");
    vmseal_vmconf_free(probe);
    if (r < 0)
        goto out;
    vmseal_vmconf *n = vmseal_vmconf_dup(c);
    if (!n) {
        r = vmseal_fail(ENOMEM, "out of memory");
        goto out;
    }
    r = vmseal_vmconf_set(n, "op", "recrypt-deep");
    if (r == 0)
        r = vmseal_vmconf_set(n, "op.kek", new_kek_id);
    if (r == 0)
        r = vm_commit(vm, n);
    else
        vmseal_vmconf_free(n);
    if (r < 0)
        goto out;
    vmseal_vm_log(vm, "deep recrypt to KEK %s", new_kek_id);
    r = run_rekey(vm, env, prog);
    if (r == 0)
        vmseal_vm_log(vm, "deep recrypt done: new volume keys, key safes under KEK %s", new_kek_id);
out:
    if (r < 0 && r != -EBUSY && r != -EINVAL)
        vmseal_vm_log(vm, "recrypt stopped: %s", vmseal_last_error());
    vm_end(vm);
    return r;
}

int vmseal_vm_resume(vmseal_vm *vm, const vmseal_host_env *env, const vmseal_vm_progress *prog)
{
    int r = vm_begin(vm, "resuming");
    if (r < 0)
        return r;
    const char *op = vmseal_vmconf_get(vm->conf, "op");
    char opname[32];
    hostd_copy_str(opname, sizeof(opname), op ? op : "");
    char reason[300];
    if (!op) {
        r = finish_cleanups(vm);
    } else if (vmseal_vm_locked(vm, env, reason, sizeof(reason))) {
        r = vmseal_fail(ENOKEY, "cannot finish %s: %s", opname, reason);
    } else if (qemu_running_owned(vm)) {
        r = vmseal_fail(EBUSY, "VM %s runs during an unfinished %s", vm->name, opname);
    } else if (strcmp(opname, "create") == 0) {
        r = run_create(vm, env, prog);
    } else if (strcmp(opname, "encrypt") == 0) {
        r = run_convert(vm, env, 1, prog);
    } else if (strcmp(opname, "decrypt") == 0) {
        r = run_convert(vm, env, 0, prog);
    } else if (strcmp(opname, "recrypt-deep") == 0) {
        r = run_rekey(vm, env, prog);
    } else {
        r = vmseal_fail(EPROTO, "vm.conf: unknown op %s", opname);
    }
    if (op)
        vmseal_vm_log(vm, r == 0 ? "finished interrupted %s" : "could not finish %s: %s", opname,
                      r == 0 ? "" : vmseal_last_error());
    vm_end(vm);
    return r;
}

/* ------------------------------------------------------------ reconfigure */

int vmseal_vm_reconfigure(vmseal_vm *vm, const vmseal_host_env *env, unsigned cpus,
                          unsigned memory_mb, const char *kernel, const char *initrd,
                          const char *append)
{
    if ((cpus && cpus > 64) || (memory_mb && (memory_mb < 16 || memory_mb > 65536)))
        return vmseal_fail(EINVAL, "cpus must be 1..64 and memory_mb 16..65536");
    const char *vals[] = {kernel, initrd, append};
    const char *keys[] = {"kernel", "initrd", "append"};
    for (size_t i = 0; i < 3; i++)
        if (vals[i] && *vals[i] && !vmseal_vmconf_value_valid(vals[i]))
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
    vmseal_vmconf *n = vmseal_vmconf_dup(vm->conf);
    r = n ? 0 : vmseal_fail(ENOMEM, "out of memory");
    if (r == 0 && cpus)
        r = vmseal_vmconf_setf(n, "cpus", "%u", cpus);
    if (r == 0 && memory_mb)
        r = vmseal_vmconf_setf(n, "memory", "%u", memory_mb);
    for (size_t i = 0; i < 3 && r == 0; i++) {
        if (!vals[i])
            continue;
        if (*vals[i])
            r = vmseal_vmconf_set(n, keys[i], vals[i]);
        else
            vmseal_vmconf_unset(n, keys[i]);
    }
    if (r == 0)
        r = vm_commit(vm, n);
    else
        vmseal_vmconf_free(n);
    if (r == 0)
        vmseal_vm_log(vm, "reconfigured");
    vm_end(vm);
    return r;
}

/* ---------------------------------------------------------------- destroy */

int vmseal_vm_destroy(vmseal_vm *vm)
{
    int r = vm_begin(vm, "deleting");
    if (r < 0)
        return r;
    if (qemu_running_owned(vm)) {
        vm_end(vm);
        return vmseal_fail(EBUSY, "VM %s must be powered off to delete it", vm->name);
    }
    r = remove_tree(vm->home);
    pthread_mutex_lock(&vm->lock);
    if (r == 0)
        vm->deleted = 1;
    vm->busy = NULL;
    pthread_mutex_unlock(&vm->lock);
    return r;
}

/* ---------------------------------------------------------------- describe */

json_t *vmseal_vm_describe(vmseal_vm *vm, const vmseal_host_env *env)
{
    int on = vmseal_vm_running(vm);
    char reason[300];
    int locked = vmseal_vm_locked(vm, env, reason, sizeof(reason));
    pthread_mutex_lock(&vm->lock);
    const vmseal_vmconf *c = vm->conf;
    json_t *j = json_object();
    json_object_set_new(j, "uuid", json_string(vm->uuid));
    json_object_set_new(j, "name", json_string(vm->name));
    uint64_t v;
    json_object_set_new(j, "cpus", json_integer(vmseal_vmconf_get_u64(c, "cpus", &v) == 0 ? (json_int_t)v : 0));
    json_object_set_new(j, "memory_mb",
                        json_integer(vmseal_vmconf_get_u64(c, "memory", &v) == 0 ? (json_int_t)v : 0));
    json_object_set_new(j, "firmware", json_string(conf_uefi(c) ? "uefi" : "bios"));
    int enc = conf_encrypted(c);
    json_object_set_new(j, "policy", json_string(enc ? "encrypted" : "none"));
    json_object_set_new(j, "encrypted", json_boolean(enc));
    char kek[VMSEAL_KEYSAFE_KEK_ID_MAX + 1];
    const char *vks = vmseal_vmconf_get(c, "vm.keysafe");
    if (vks && kek_id_of_line(vks, kek, sizeof(kek)) == 0)
        json_object_set_new(j, "kek_id", json_string(kek));
    else
        json_object_set_new(j, "kek_id", json_null());
    json_object_set_new(j, "power_state", json_string(on ? "on" : "off"));
    json_object_set_new(j, "busy", vm->busy ? json_string(vm->busy) : json_null());
    json_object_set_new(j, "locked", json_boolean(locked));
    json_object_set_new(j, "locked_reason", locked ? json_string(reason) : json_null());
    const char *op = vmseal_vmconf_get(c, "op");
    json_object_set_new(j, "pending_operation", op ? json_string(op) : json_null());
    json_t *disks = json_array();
    size_t nd = conf_ndisks(c);
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_object();
        json_object_set_new(d, "index", json_integer((json_int_t)i));
        const char *f = cget(c, "disk%zu.file", i);
        json_object_set_new(d, "file", json_string(f ? f : ""));
        char key[32];
        snprintf(key, sizeof(key), "disk%zu.size", i);
        json_object_set_new(d, "size_mb",
                            json_integer(vmseal_vmconf_get_u64(c, key, &v) == 0 ? (json_int_t)(v >> 20) : 0));
        const char *u = cget(c, "disk%zu.luks.uuid", i);
        json_object_set_new(d, "encrypted", json_boolean(cget(c, "disk%zu.keysafe", i) != NULL));
        json_object_set_new(d, "luks_uuid", u ? json_string(u) : json_null());
        json_array_append_new(disks, d);
    }
    json_object_set_new(j, "disks", disks);
    const char *nv = vmseal_vmconf_get(c, "nvram.file");
    if (nv) {
        size_t nl = strlen(nv);
        json_object_set_new(j, "nvram",
                            json_pack("{s:s, s:b}", "file", nv, "encrypted",
                                      nl > 5 && strcmp(nv + nl - 5, ".luks") == 0));
    }
    const char *txt[] = {"kernel", "initrd", "append"};
    for (size_t i = 0; i < 3; i++) {
        const char *val = vmseal_vmconf_get(c, txt[i]);
        json_object_set_new(j, txt[i], val ? json_string(val) : json_null());
    }
    json_object_set_new(j, "home", json_string(vm->home));
    pthread_mutex_unlock(&vm->lock);
    return j;
}

/* ---------------------------------------------------------- console */

void vmseal_vm_tick(vmseal_vm *vm, const vmseal_host_env *env)
{
    if (!vmseal_vm_running(vm))
        return;
    /* re-attached after a restart: seal the console once the KEK is here */
    pthread_mutex_lock(&vm->lock);
    if (vm->console && !vmseal_console_has_key(vm->console)) {
        vmseal_secret *lk = NULL;
        if (log_key_from(vm, env, vmseal_vmconf_get(vm->conf, "vm.keysafe"), &lk) == 0)
            (void)vmseal_console_set_key(vm->console, lk);
        vmseal_clear_error();
    }
    pthread_mutex_unlock(&vm->lock);
}

int vmseal_vm_serial_log(vmseal_vm *vm, const vmseal_host_env *env, size_t tail, uint8_t **text,
                         size_t *len, uint64_t *total, int *encrypted)
{
    *text = NULL;
    *len = 0;
    *total = 0;
    (void)vmseal_vm_running(vm);
    pthread_mutex_lock(&vm->lock);
    int enc = conf_encrypted(vm->conf);
    *encrypted = enc;
    int r;
    if (vm->busy && (strcmp(vm->busy, "encrypting") == 0 || strcmp(vm->busy, "decrypting") == 0)) {
        r = vmseal_fail(EBUSY, "VM %s is busy (%s): its serial log is being converted", vm->name,
                        vm->busy);
    } else if (!enc) {
        r = vmseal_console_read_plain(vm->home, tail, text, len, total);
    } else {
        vmseal_secret *lk = NULL;
        r = log_key_from(vm, env, vmseal_vmconf_get(vm->conf, "vm.keysafe"), &lk);
        if (r == 0 && vm->console && !vmseal_console_has_key(vm->console)) {
            r = vmseal_console_set_key(vm->console, lk);
            lk = NULL;
        }
        if (r == 0)
            r = vm->console ? vmseal_console_read(vm->console, tail, text, len, total)
                            : vmseal_console_read_sealed(vm->home, vm->uuid, lk, tail, text, len,
                                                         total);
        vmseal_secret_free(lk);
    }
    pthread_mutex_unlock(&vm->lock);
    return r;
}
