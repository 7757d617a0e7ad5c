/* Snapshots of a VM: see snapshot.h. */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/rand.h>

#include <vmseal/disk.h>
#include <vmseal/diskdesc.h>
#include <vmseal/http_status.h>
#include <vmseal/keysafe.h>
#include <vmseal/log.h>

#include "qmp.h"
#include "snapshot.h"
#include "strutil.h"
#include "vm_snap.h"
#include "vmstate.h"

#define MARKER "snapshot.busy"            /* in the home while an operation runs */
#define STATE_TIMEOUT_MS 120000
#define QMP_TIMEOUT_MS 30000
#define IMG_TIMEOUT_S 600
#define ERR_MAX 1024

/* ------------------------------------------------------------ layers */

void hostd_snapshot_layers_init(hostd_snapshot_layers *l)
{
    memset(l, 0, sizeof(*l));
}

void hostd_snapshot_layers_free(hostd_snapshot_layers *l)
{
    for (size_t i = 0; i < VMSEAL_VMREC_MAX_DISKS; i++)
        for (size_t k = 0; k < VMSEAL_VMREC_MAX_SNAPSHOTS; k++) {
            vmseal_secret_free(l->pass[i][k]);
            l->pass[i][k] = NULL;
        }
}

static int layer_pass(const hostd_host_env *env, const vmseal_vmrec_layer *ly,
                      vmseal_secret **pass)
{
    *pass = NULL;
    if (!ly->keysafe)
        return 0;
    char obj[64];
    int r = vmseal_vmrec_layer_object(ly, obj, sizeof(obj));
    return r < 0 ? r : hostd_vmi_pass(env, ly->keysafe, obj, pass);
}

int hostd_snapshot_layers_open(const hostd_host_env *env, const vmseal_vmrec *c,
                               hostd_snapshot_layers *l, hostd_qemu_disk *disks, size_t nd)
{
    for (size_t i = 0; i < nd && i < c->ndisks; i++) {
        for (size_t k = 0; k < c->nsnaps; k++) {
            const vmseal_vmrec_layer *ly = &c->snaps[k].disks[i];
            int r = layer_pass(env, ly, &l->pass[i][k]);
            if (r < 0)
                return r;
            l->layer[i][k] = (hostd_qemu_layer){.path = ly->file, .passphrase = l->pass[i][k]};
        }
        disks[i].layers = c->nsnaps ? l->layer[i] : NULL;
        disks[i].nlayers = c->nsnaps;
    }
    return 0;
}

static void state_note(void *arg, const char *line)
{
    hostd_vm_log(arg, "%s", line);
}

int hostd_snapshot_load_state(hostd_vm *vm, hostd_qemu *q, const vmseal_secret *vm_secret,
                              const char *file)
{
    vmseal_secret *key = NULL;
    char label[VMSEAL_KEYSAFE_KEK_ID_MAX + 1];
    int r = 0;
    if (vm_secret)
        r = hostd_vmstate_key(vm_secret, hostd_vm_uuid(vm), file, &key, label, sizeof(label));
    if (r == 0)
        r = hostd_vmstate_load(hostd_qemu_monitor(q), hostd_vmi_home_fd(vm), file, key,
                               state_note, vm, STATE_TIMEOUT_MS, NULL);
    vmseal_secret_free(key);
    if (r < 0) {
        char msg[700];
        hostd_copy_str(msg, sizeof(msg), vmseal_last_error());
        hostd_qemu_kill(q);
        hostd_qemu_free(q);
        return vmseal_fail(-r, "the snapshot's memory state did not load (the VM stays powered "
                           "off): %s", msg);
    }
    return 0;
}

/* ----------------------------------------------------------- qemu-img */

/* Run qemu-img with argv; secrets[i] is written into a pipe whose read end
 * the child has as descriptor 3 + i; files[j] (opened here) are its
 * descriptors 3 + nsec + j. 0 when it exited 0. */
static int run_img(const char *const argv[], const vmseal_secret *const secrets[], size_t nsec,
                   const int files[], size_t nfiles)
{
    int fds[8];
    size_t nfd = 0;
    int r = 0;
    if (nsec + nfiles > 8)
        return vmseal_fail(EINVAL, "too many descriptors for qemu-img");
    for (size_t i = 0; i < nsec && r == 0; i++) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0) {
            r = vmseal_fail(errno, "pipe: %s", strerror(errno));
            break;
        }
        size_t len = vmseal_secret_len(secrets[i]);
        ssize_t w = write(p[1], vmseal_secret_cdata(secrets[i]), len);   /* < pipe size */
        close(p[1]);
        if (w != (ssize_t)len) {
            close(p[0]);
            r = vmseal_fail(EIO, "cannot hand qemu-img its secret");
            break;
        }
        fds[nfd++] = p[0];
    }
    for (size_t j = 0; j < nfiles && r == 0; j++) {
        int d = fcntl(files[j], F_DUPFD_CLOEXEC, 0);
        if (d < 0)
            r = vmseal_fail(errno, "dup: %s", strerror(errno));
        else
            fds[nfd++] = d;
    }
    int ep[2] = {-1, -1};
    if (r == 0 && pipe2(ep, O_CLOEXEC) < 0)
        r = vmseal_fail(errno, "pipe: %s", strerror(errno));
    pid_t pid = -1;
    if (r == 0 && (pid = fork()) < 0)
        r = vmseal_fail(errno, "fork: %s", strerror(errno));
    if (pid == 0) {
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        (void)prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        int high[8];
        for (size_t i = 0; i < nfd; i++)
            high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 20);
        int ew = fcntl(ep[1], F_DUPFD_CLOEXEC, 20);
        if (devnull < 0 || ew < 0 || dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 ||
            dup2(ew, 2) < 0)
            _exit(126);
        for (size_t i = 0; i < nfd; i++)
            if (high[i] < 0 || dup2(high[i], 3 + (int)i) < 0)
                _exit(126);
        if (close_range(3 + (unsigned)nfd, ~0u, 0) != 0)
            _exit(126);
        signal(SIGPIPE, SIG_DFL);
        const char *img = getenv("VMSEAL_QEMU_IMG");
        execvp(img && *img ? img : "qemu-img", (char *const *)argv);
        _exit(127);
    }
    for (size_t i = 0; i < nfd; i++)
        close(fds[i]);
    if (r < 0) {
        if (ep[0] >= 0)
            close(ep[0]), close(ep[1]);
        return r;
    }
    close(ep[1]);
    char err[ERR_MAX + 1];
    size_t elen = 0;
    for (;;) {
        struct pollfd pf = {.fd = ep[0], .events = POLLIN};
        int n = poll(&pf, 1, IMG_TIMEOUT_S * 1000);
        if (n <= 0) {
            kill(pid, SIGKILL);
            break;
        }
        char tmp[512];
        ssize_t got = read(ep[0], tmp, sizeof(tmp));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        size_t take = elen + (size_t)got > ERR_MAX ? ERR_MAX - elen : (size_t)got;
        memcpy(err + elen, tmp, take);
        elen += take;
    }
    close(ep[0]);
    err[elen] = '\0';
    while (elen > 0 && err[elen - 1] == '\n')
        err[--elen] = '\0';
    for (char *p = err; *p; p++)
        if (*p == '\n')
            *p = ';';   /* qemu-img's first line is often not the cause */
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
        return vmseal_fail(ENOENT, "cannot run qemu-img");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return vmseal_fail(EIO, "qemu-img failed: %s", elen ? err : "no message");
    return 0;
}

static int open_home_file(hostd_vm *vm, const char *file, int flags)
{
    int fd = openat(hostd_vmi_home_fd(vm), file,
                    flags | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK, 0600);
    if (fd < 0)
        return vmseal_fail(errno, "%s: %s", file,
                           errno == ELOOP ? "a symbolic link (not followed)" : strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return vmseal_fail(EINVAL, "%s is not a regular file", file);
    }
    return fd;
}

/* A new empty overlay `file` of `size` bytes (LUKS-encrypted with pass). */
static int create_overlay(hostd_vm *vm, const char *file, uint64_t size,
                          const vmseal_secret *pass)
{
    int fd = open_home_file(vm, file, O_RDWR | O_CREAT | O_EXCL);
    if (fd < 0)
        return fd;
    char sz[32], target[32];
    snprintf(sz, sizeof(sz), "%llu", (unsigned long long)size);
    /* descriptors: 3 the secret (if any), then the file */
    snprintf(target, sizeof(target), "/dev/fd/%d", pass ? 4 : 3);
    const char *argv_enc[] = {"qemu-img", "create", "-q", "-f", "qcow2",
                              "--object", "secret,id=vmseal-s0,file=/proc/self/fd/3",
                              "-o", "encrypt.format=luks,encrypt.key-secret=vmseal-s0,"
                                    "encrypt.iter-time=10",
                              target, sz, NULL};
    const char *argv_plain[] = {"qemu-img", "create", "-q", "-f", "qcow2", target, sz, NULL};
    const vmseal_secret *secs[1] = {pass};
    /* QEMU times its LUKS PBKDF with the thread's CPU clock and gives up
     * ("Unable to get accurate CPU usage") when one round measures 0 ms,
     * which a loaded machine does now and then: try again */
    int r = -EIO;
    for (int attempt = 0; attempt < 10; attempt++) {
        r = run_img(pass ? argv_enc : argv_plain, secs, pass ? 1 : 0, &fd, 1);
        if (r == 0 || !strstr(vmseal_last_error(), "accurate CPU usage"))
            break;
    }
    if (r == 0 && fsync(fd) < 0)
        r = vmseal_fail(errno, "fsync %s: %s", file, strerror(errno));
    close(fd);
    if (r < 0)
        unlinkat(hostd_vmi_home_fd(vm), file, 0);
    return r;
}

/* The block-node JSON of one image given as descriptor /dev/fd/N. */
static json_t *node_json(int fdno, int qcow2, const char *secret_id)
{
    char fname[32];
    snprintf(fname, sizeof(fname), "/dev/fd/%d", fdno);
    json_t *file = json_pack("{s:s, s:s}", "driver", "file", "filename", fname);
    json_t *n;
    if (qcow2) {
        n = json_pack("{s:s, s:o, s:n}", "driver", "qcow2", "file", file, "backing");
        if (n && secret_id)
            json_object_set_new(n, "encrypt",
                                json_pack("{s:s, s:s}", "format", "luks", "key-secret", secret_id));
    } else if (secret_id) {
        n = json_pack("{s:s, s:s, s:o}", "driver", "luks", "key-secret", secret_id, "file", file);
    } else {
        n = json_pack("{s:s, s:o}", "driver", "raw", "file", file);
    }
    return n;
}

/* qemu-img commit of overlay `top` into `below` (a qcow2 overlay, or the
 * base image: LUKS1 with a passphrase, raw without). */
static int commit_layer(hostd_vm *vm, const char *top, const vmseal_secret *top_pass,
                        const char *below, int below_qcow2, const vmseal_secret *below_pass)
{
    int files[2] = {-1, -1};
    files[0] = open_home_file(vm, top, O_RDWR);
    if (files[0] < 0)
        return files[0];
    files[1] = open_home_file(vm, below, O_RDWR);
    if (files[1] < 0) {
        close(files[0]);
        return files[1];
    }
    const vmseal_secret *secs[2];
    size_t nsec = 0;
    const char *top_id = NULL, *below_id = NULL;
    char obj0[64], obj1[64];
    if (top_pass) {
        snprintf(obj0, sizeof(obj0), "secret,id=vmseal-s%zu,file=/proc/self/fd/%zu", nsec, 3 + nsec);
        top_id = nsec == 0 ? "vmseal-s0" : "vmseal-s1";
        secs[nsec++] = top_pass;
    }
    if (below_pass) {
        snprintf(obj1, sizeof(obj1), "secret,id=vmseal-s%zu,file=/proc/self/fd/%zu", nsec, 3 + nsec);
        below_id = nsec == 0 ? "vmseal-s0" : "vmseal-s1";
        secs[nsec++] = below_pass;
    }
    json_t *t = node_json(3 + (int)nsec, 1, top_id);
    json_t *b = node_json(4 + (int)nsec, below_qcow2, below_id);
    char *spec = NULL;
    if (t && b) {
        json_object_set_new(t, "backing", b);
        b = NULL;
        char *js = json_dumps(t, JSON_COMPACT);
        if (js && asprintf(&spec, "json:%s", js) < 0)
            spec = NULL;
        free(js);
    }
    json_decref(t);
    json_decref(b);
    int r;
    if (!spec) {
        r = vmseal_fail(ENOMEM, "out of memory");
    } else {
        const char *argv[10];
        size_t a = 0;
        argv[a++] = "qemu-img";
        argv[a++] = "commit";
        argv[a++] = "-q";
        argv[a++] = "-d";   /* the top is removed afterwards: not emptied */
        if (top_pass) {
            argv[a++] = "--object";
            argv[a++] = obj0;
        }
        if (below_pass) {
            argv[a++] = "--object";
            argv[a++] = obj1;
        }
        argv[a++] = spec;
        argv[a] = NULL;
        r = run_img(argv, secs, nsec, files, 2);
    }
    free(spec);
    if (r == 0 && fsync(files[1]) < 0)
        r = vmseal_fail(errno, "fsync %s: %s", below, strerror(errno));
    close(files[0]);
    close(files[1]);
    return r;
}

/* --------------------------------------------------------- helpers */

static int new_file_name(const char *ext, char *buf, size_t len)
{
    uint8_t rnd[8];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return vmseal_fail(EIO, "no random bytes");
    char hex[17];
    vmseal_hex_encode(rnd, sizeof(rnd), hex);
    snprintf(buf, len, "snap-%s%s", hex, ext);
    return 0;
}

static int new_uuid(char out[37])
{
    uint8_t b[16];
    if (RAND_bytes(b, sizeof(b)) != 1)
        return vmseal_fail(EIO, "no random bytes");
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
    return 0;
}

static int kek_of(const vmseal_vmrec *c, char *out, size_t len)
{
    vmseal_keysafe_info info;
    int r = vmseal_keysafe_parse(c->vm_keysafe ? c->vm_keysafe : "", &info);
    if (r < 0)
        return r;
    hostd_copy_str(out, len, info.kek_id);
    return 0;
}

/* New layers for every disk of c (files created, secrets wrapped): filled
 * into *s (files listed in made[] for removal on failure). */
static int new_layers(hostd_vm *vm, const hostd_host_env *env, const vmseal_vmrec *c,
                      vmseal_vmrec_snapshot *s)
{
    int enc = c->policy == VMSEAL_POLICY_ENCRYPTED;
    char kek[VMSEAL_KEYSAFE_KEK_ID_MAX + 1] = "";
    int r = enc ? kek_of(c, kek, sizeof(kek)) : 0;
    for (size_t i = 0; i < c->ndisks && r == 0; i++) {
        vmseal_vmrec_layer *ly = &s->disks[i];
        r = new_file_name(VMSEAL_VMREC_OVERLAY_EXT, ly->file, sizeof(ly->file));
        if (r == 0)
            r = new_uuid(ly->uuid);
        vmseal_secret *sec = NULL, *pass = NULL;
        char obj[64];
        if (r == 0 && enc) {
            r = vmseal_secret_random(32, &sec);
            if (r == 0)
                r = vmseal_vmrec_layer_object(ly, obj, sizeof(obj));
            if (r == 0)
                r = hostd_vmi_wrap(env, kek, obj, sec, &ly->keysafe);
            if (r == 0)
                r = vmseal_disk_passphrase_from_secret(sec, &pass);
        }
        if (r == 0)
            r = create_overlay(vm, ly->file, c->disks[i].size, pass);
        vmseal_secret_free(sec);
        vmseal_secret_free(pass);
        if (r < 0)
            ly->file[0] = '\0';
    }
    return r;
}

static void remove_layer_files(hostd_vm *vm, const vmseal_vmrec_snapshot *s)
{
    for (size_t i = 0; i < VMSEAL_VMREC_MAX_DISKS; i++)
        if (s->disks[i].file[0])
            unlinkat(hostd_vmi_home_fd(vm), s->disks[i].file, 0);
}

static int marker_set(hostd_vm *vm)
{
    int fd = openat(hostd_vmi_home_fd(vm), MARKER,
                    O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return vmseal_fail(errno, "%s: %s", MARKER, strerror(errno));
    int r = fsync(fd) < 0 ? vmseal_fail(errno, "fsync: %s", strerror(errno)) : 0;
    close(fd);
    if (r == 0 && fsync(hostd_vmi_home_fd(vm)) < 0)
        r = vmseal_fail(errno, "fsync of the VM home: %s", strerror(errno));
    return r;
}

static void marker_clear(hostd_vm *vm)
{
    unlinkat(hostd_vmi_home_fd(vm), MARKER, 0);
}

/* Does vm.conf name this file (a layer or a snapshot's state)? */
static int rec_names(const vmseal_vmrec *c, const char *f)
{
    if (strcmp(c->state_file, f) == 0)
        return 1;
    for (size_t k = 0; k < c->nsnaps; k++) {
        if (strcmp(c->snaps[k].state_file, f) == 0)
            return 1;
        for (size_t i = 0; i < c->ndisks; i++)
            if (strcmp(c->snaps[k].disks[i].file, f) == 0)
                return 1;
    }
    return 0;
}

/* Remove the snap-* files vm.conf does not name (left by an operation that
 * did not finish). The count removed. */
static int sweep(hostd_vm *vm)
{
    const vmseal_vmrec *c = hostd_vmi_rec(vm);
    int dfd = dup(hostd_vmi_home_fd(vm));
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return 0;
    }
    /* the dup shares its offset with the home's descriptor, which another
     * listing may have left at the end */
    rewinddir(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "snap-", 5) != 0 || rec_names(c, de->d_name))
            continue;
        if (unlinkat(hostd_vmi_home_fd(vm), de->d_name, 0) == 0) {
            n++;
            hostd_vm_log(vm, "removed %s, left by a snapshot operation that did not finish",
                         de->d_name);
        }
    }
    closedir(d);
    return n;
}

static void crash_point(const char *p)
{
    hostd_vmstate_crash_point(p);
}

/* ----------------------------------------------------------- create */

/* The top node of disk idx in QEMU ("" when not found). */
static void qemu_top_node(hostd_qmp *q, size_t idx, char *out, size_t len)
{
    out[0] = '\0';
    json_t *ret = NULL;
    if (hostd_qmp_execute(q, "query-block", NULL, QMP_TIMEOUT_MS, &ret) < 0)
        return;
    char want[48];
    snprintf(want, sizeof(want), "/vmseal-vd%zu/", idx);
    size_t i;
    json_t *d;
    json_array_foreach(ret, i, d) {
        const char *qdev = json_string_value(json_object_get(d, "qdev"));
        const char *node =
            json_string_value(json_object_get(json_object_get(d, "inserted"), "node-name"));
        if (qdev && node && strstr(qdev, want))
            hostd_copy_str(out, len, node);
    }
    json_decref(ret);
}

/* Put the new layers (of the last snapshot in `layers`, layer index
 * `layer`) on top of every disk of the running QEMU: the count switched. */
static size_t switch_layers(hostd_vm *vm, const hostd_host_env *env, hostd_qmp *m,
                            const vmseal_vmrec *c, const vmseal_vmrec_snapshot *s, size_t layer,
                            int *rc)
{
    size_t switched = 0;
    int r = 0;
    for (size_t i = 0; i < c->ndisks && r == 0; i++) {
        const vmseal_vmrec_layer *ly = &s->disks[i];
        vmseal_secret *pass = NULL;
        char top[32], node[32];
        qemu_top_node(m, i, top, sizeof(top));
        hostd_qemu_layer_node(i, layer, node, sizeof(node));
        r = top[0] ? layer_pass(env, ly, &pass)
                   : vmseal_fail(EIO, "QEMU does not show disk %zu", i);
        if (r == 0)
            r = hostd_qemu_add_layer(m, i, layer, hostd_vmi_home_fd(vm), ly->file, pass, NULL,
                                     QMP_TIMEOUT_MS);
        vmseal_secret_free(pass);
        if (r == 0)
            r = hostd_qmp_execute(m, "blockdev-snapshot",
                                  json_pack("{s:s, s:s}", "node", top, "overlay", node),
                                  QMP_TIMEOUT_MS, NULL);
        if (r == 0)
            switched++;
    }
    *rc = r;
    return switched;
}

/* Order, for a running VM: pause; make the layer files; switch QEMU onto
 * them (the guest is paused: nothing is written to them yet); save the
 * memory (QEMU's migration stream, sealed); record vm.conf; continue. A
 * hostd that stops in between is put right at load (hostd_snapshot_recover). */
int hostd_snapshot_create(hostd_vm *vm, const hostd_host_env *env, const char *name, int memory)
{
    if (!name || !vmseal_vmrec_snap_name_valid(name))
        return vmseal_fail(EINVAL, "a snapshot name is 1..64 of [A-Za-z0-9._-], not starting "
                           "with '.' or '-'");
    int r = hostd_vmi_begin(vm, "taking a snapshot");
    if (r < 0)
        return r;
    const vmseal_vmrec *c = hostd_vmi_rec(vm);
    hostd_qemu *q = hostd_vmi_qemu(vm);
    hostd_qmp *m = q ? hostd_qemu_monitor(q) : NULL;
    int enc = c->policy == VMSEAL_POLICY_ENCRYPTED;
    vmseal_vmrec_snapshot s;
    memset(&s, 0, sizeof(s));
    vmseal_secret *vm_secret = NULL, *key = NULL;
    int paused = 0, marked = 0;
    size_t switched = 0;
    char mem_err[600] = "";
    if (c->op != VMSEAL_VMREC_OP_NONE)
        r = vmseal_fail(EBUSY, "VM %s has an unfinished %s operation", hostd_vm_name(vm),
                        vmseal_vmrec_op_name(c->op));
    else if (c->state_file[0])
        r = vmseal_fail(EBUSY, "VM %s is suspended: resume it (or discard its state) first",
                        hostd_vm_name(vm));
    else if (c->nsnaps >= VMSEAL_VMREC_MAX_SNAPSHOTS)
        r = vmseal_fail(EBUSY, "VM %s has %d snapshots already (the most it may have): remove "
                        "one first", hostd_vm_name(vm), VMSEAL_VMREC_MAX_SNAPSHOTS);
    else if (vmseal_vmrec_snap_find(c, name) >= 0)
        r = vmseal_fail(EEXIST, "VM %s has a snapshot called %s already", hostd_vm_name(vm),
                        name);
    else if (memory && !q)
        r = vmseal_fail(EALREADY, "VM %s is powered off: a snapshot with memory needs it "
                        "running", hostd_vm_name(vm));
    else if (c->ndisks == 0)
        r = vmseal_fail(EINVAL, "VM %s has no disks: nothing to snapshot", hostd_vm_name(vm));
    else if (q && c->tpm)
        r = vmseal_fail(EBUSY, "VM %s has a vTPM: its state is not snapshotted yet (power it "
                        "off first)", hostd_vm_name(vm));
    if (r == 0 && (r = marker_set(vm)) == 0)
        marked = 1;
    if (r < 0)
        goto out;
    (void)sweep(vm);
    hostd_copy_str(s.name, sizeof(s.name), name);
    if (m) {
        /* the guest stops here and runs again when the snapshot is whole */
        r = hostd_qmp_execute(m, "stop", NULL, QMP_TIMEOUT_MS, NULL);
        paused = r == 0;
    }
    if (r == 0)
        r = new_layers(vm, env, c, &s);
    if (r < 0)
        goto out;
    crash_point("snapshot-files");
    if (m && !memory) {
        switched = switch_layers(vm, env, m, c, &s, c->nsnaps + 1, &r);
        if (r < 0 && switched) {
            /* half switched: QEMU ends; vm.conf still has the old chain,
             * which holds everything (the guest was paused) */
            char msg[700];
            hostd_copy_str(msg, sizeof(msg), vmseal_last_error());
            hostd_vmi_kill(vm);
            paused = 0;
            r = vmseal_fail(-r, "QEMU could not switch to the snapshot's layers, so the VM was "
                            "powered off (its disks are as they were): %s", msg);
        }
        if (r < 0)
            goto out;
        crash_point("snapshot-switched");
    }
    if (m && memory) {
        char obj[64], label[VMSEAL_KEYSAFE_KEK_ID_MAX + 1];
        if (enc) {
            r = vmseal_vmrec_keysafe_object(c, -1, 0, obj, sizeof(obj));
            if (r == 0)
                r = hostd_vmi_unwrap(env, c->vm_keysafe, obj, &vm_secret);
        }
        if (r == 0)
            r = new_file_name(enc ? VMSEAL_VMREC_STATE_SEALED_EXT : VMSEAL_VMREC_STATE_PLAIN_EXT,
                              s.state_file, sizeof(s.state_file));
        if (r == 0 && enc)
            r = hostd_vmstate_key(vm_secret, hostd_vm_uuid(vm), s.state_file, &key, label,
                                  sizeof(label));
        if (r == 0)
            r = hostd_vmstate_save(m, hostd_vmi_home_fd(vm), s.state_file, key,
                                   enc ? label : NULL, state_note, vm, STATE_TIMEOUT_MS, NULL);
        if (r < 0) {
            s.state_file[0] = '\0';
            goto out;   /* nothing recorded: the files go, the guest goes on */
        }
    }
    vmseal_vmrec *n = hostd_vmi_next(vm);
    r = n ? 0 : -ENOMEM;
    if (r == 0) {
        n->snaps[n->nsnaps++] = s;
        memset(&s, 0, sizeof(s));   /* n owns the key safes now */
        r = hostd_vmi_commit(vm, n);
    }
    if (r < 0) {
        if (switched) {
            char msg[700];
            hostd_copy_str(msg, sizeof(msg), vmseal_last_error());
            hostd_vmi_kill(vm);
            paused = 0;
            vmseal_fail(-r, "vm.conf could not record the snapshot, so the VM was powered off "
                        "(its disks are as they were): %s", msg);
        }
        (void)sweep(vm);   /* the files n named */
        goto out;
    }
    crash_point("snapshot-recorded");
    c = hostd_vmi_rec(vm);
    if (m && memory && c->snaps[c->nsnaps - 1].state_file[0]) {
        /* QEMU's disks were let go when the memory stream ended (a `cont`
         * then fails on the image locks): QEMU restarts on the new layers
         * from the state just saved, so the guest goes on from there */
        char st[VMSEAL_VMREC_FILE_MAX + 1];
        hostd_copy_str(st, sizeof(st), c->snaps[c->nsnaps - 1].state_file);
        hostd_vmi_kill(vm);
        paused = 0;
        r = hostd_vmi_power_on(vm, env, st);
        if (r < 0)
            hostd_vm_log(vm, "snapshot %s is taken, but the guest did not go on from it (revert "
                         "to it): %s", name, vmseal_last_error());
        c = hostd_vmi_rec(vm);
    } else if (paused && hostd_qmp_execute(m, "cont", NULL, QMP_TIMEOUT_MS, NULL) == 0) {
        paused = 0;
    }
    hostd_vm_log(vm, "snapshot %s taken (%s%s)", name, q ? "running" : "powered off",
                 c->snaps[c->nsnaps - 1].state_file[0] ? ", with memory" : "");
    if (mem_err[0])
        r = vmseal_fail(EIO, "snapshot %s was taken without the guest's memory: saving it "
                        "failed: %s", name, mem_err);
out:
    if (r < 0 && !mem_err[0]) {
        remove_layer_files(vm, &s);
        if (s.state_file[0])
            unlinkat(hostd_vmi_home_fd(vm), s.state_file, 0);
    }
    if (marked)
        marker_clear(vm);
    vmseal_vmrec_snap_clear(&s);
    if (paused && hostd_qmp_execute(m, "cont", NULL, QMP_TIMEOUT_MS, NULL) < 0)
        hostd_vm_log(vm, "the guest could not be continued: %s", vmseal_last_error());
    vmseal_secret_free(vm_secret);
    vmseal_secret_free(key);
    hostd_vmi_end(vm);
    return r;
}

/* ----------------------------------------------------------- revert */

static long find_or_fail(hostd_vm *vm, const vmseal_vmrec *c, const char *name)
{
    long k = name && vmseal_vmrec_snap_name_valid(name) ? vmseal_vmrec_snap_find(c, name) : -1;
    if (k < 0)
        vmseal_fail(ENOENT, "VM %s has no snapshot called that", hostd_vm_name(vm));
    return k;
}

int hostd_snapshot_revert(hostd_vm *vm, const hostd_host_env *env, const char *name)
{
    int r = hostd_vmi_begin(vm, "reverting to a snapshot");
    if (r < 0)
        return r;
    const vmseal_vmrec *c = hostd_vmi_rec(vm);
    vmseal_vmrec_snapshot fresh;
    memset(&fresh, 0, sizeof(fresh));
    vmseal_vmrec_snapshot old;
    memset(&old, 0, sizeof(old));
    char old_state[VMSEAL_VMREC_FILE_MAX + 1] = "";
    long k = find_or_fail(vm, c, name);
    if (k < 0)
        r = -ENOENT;
    else if (c->op != VMSEAL_VMREC_OP_NONE)
        r = vmseal_fail(EBUSY, "VM %s has an unfinished %s operation", hostd_vm_name(vm),
                        vmseal_vmrec_op_name(c->op));
    else if (c->snaps[k].removing)
        r = vmseal_fail(EBUSY, "snapshot %s is being removed: run the removal again to finish "
                        "it", name);
    else if ((size_t)k + 1 != c->nsnaps)
        r = vmseal_fail(EBUSY, "snapshot %s is not the latest: the chain is linear, remove the "
                        "%zu newer snapshot(s) first", name, c->nsnaps - (size_t)k - 1);
    if (r == 0)
        r = marker_set(vm);
    if (r < 0)
        goto out;
    (void)sweep(vm);
    /* the state since the snapshot is discarded: QEMU ends */
    if (hostd_vmi_qemu(vm)) {
        hostd_vmi_kill(vm);
        hostd_vm_log(vm, "powered off to revert to snapshot %s", name);
    }
    c = hostd_vmi_rec(vm);
    r = new_layers(vm, env, c, &fresh);
    if (r < 0)
        goto out;
    vmseal_vmrec *n = hostd_vmi_next(vm);
    r = n ? 0 : -ENOMEM;
    if (r == 0) {
        vmseal_vmrec_snapshot *sk = &n->snaps[k];
        for (size_t i = 0; i < n->ndisks; i++) {
            old.disks[i] = sk->disks[i];        /* its key safe is freed with old */
            sk->disks[i] = fresh.disks[i];
            fresh.disks[i].keysafe = NULL;
            fresh.disks[i].file[0] = '\0';
        }
        hostd_copy_str(old_state, sizeof(old_state), n->state_file);
        n->state_file[0] = '\0';   /* a suspended VM's saved state goes too */
        r = hostd_vmi_commit(vm, n);
    }
    if (r < 0) {
        /* n is freed; the new layers are not named: removed */
        for (size_t i = 0; i < VMSEAL_VMREC_MAX_DISKS; i++)
            old.disks[i].keysafe = NULL;   /* freed with n */
        (void)sweep(vm);
        goto out;
    }
    crash_point("revert-recorded");
    remove_layer_files(vm, &old);
    if (old_state[0])
        unlinkat(hostd_vmi_home_fd(vm), old_state, 0);
    marker_clear(vm);
    c = hostd_vmi_rec(vm);
    if (c->snaps[k].state_file[0]) {
        char st[VMSEAL_VMREC_FILE_MAX + 1];
        hostd_copy_str(st, sizeof(st), c->snaps[k].state_file);
        r = hostd_vmi_power_on(vm, env, st);
        if (r == 0)
            hostd_vm_log(vm, "reverted to snapshot %s: the guest runs from its memory state",
                         name);
    } else {
        hostd_vm_log(vm, "reverted to snapshot %s (powered off)", name);
    }
out:
    remove_layer_files(vm, &fresh);
    vmseal_vmrec_snap_clear(&fresh);
    vmseal_vmrec_snap_clear(&old);
    marker_clear(vm);
    hostd_vmi_end(vm);
    return r;
}

/* ----------------------------------------------------------- remove */

int hostd_snapshot_remove(hostd_vm *vm, const hostd_host_env *env, const char *name)
{
    int r = hostd_vmi_begin(vm, "removing a snapshot");
    if (r < 0)
        return r;
    const vmseal_vmrec *c = hostd_vmi_rec(vm);
    long k = find_or_fail(vm, c, name);
    if (k < 0)
        r = -ENOENT;
    else if (hostd_vmi_qemu(vm))
        r = vmseal_fail(EBUSY, "VM %s is powered on: power it off to remove a snapshot (the "
                        "layers are merged offline)", hostd_vm_name(vm));
    else if (c->op != VMSEAL_VMREC_OP_NONE)
        r = vmseal_fail(EBUSY, "VM %s has an unfinished %s operation", hostd_vm_name(vm),
                        vmseal_vmrec_op_name(c->op));
    if (r < 0)
        goto out;
    (void)sweep(vm);
    if (!c->snaps[k].removing) {
        vmseal_vmrec *n = hostd_vmi_next(vm);
        r = n ? 0 : -ENOMEM;
        if (r == 0) {
            n->snaps[k].removing = 1;
            r = hostd_vmi_commit(vm, n);
        }
        if (r < 0)
            goto out;
        c = hostd_vmi_rec(vm);
    }
    crash_point("remove-marked");
    /* snapshot k's layer (what was written after it) into the layer below */
    for (size_t i = 0; i < c->ndisks && r == 0; i++) {
        const vmseal_vmrec_layer *top = &c->snaps[k].disks[i];
        const char *below;
        const char *below_ks;
        char below_obj[64];
        int below_qcow2 = k > 0;
        if (k > 0) {
            const vmseal_vmrec_layer *b = &c->snaps[k - 1].disks[i];
            below = b->file;
            below_ks = b->keysafe;
            r = b->keysafe ? vmseal_vmrec_layer_object(b, below_obj, sizeof(below_obj)) : 0;
        } else {
            below = c->disks[i].file;
            below_ks = c->disks[i].keysafe;
            r = below_ks ? vmseal_vmrec_keysafe_object(c, (long)i, 0, below_obj,
                                                       sizeof(below_obj))
                         : 0;
        }
        vmseal_secret *tp = NULL, *bp = NULL;
        if (r == 0)
            r = layer_pass(env, top, &tp);
        if (r == 0 && below_ks)
            r = hostd_vmi_pass(env, below_ks, below_obj, &bp);
        if (r == 0)
            r = commit_layer(vm, top->file, tp, below, below_qcow2, bp);
        vmseal_secret_free(tp);
        vmseal_secret_free(bp);
        if (r == 0)
            crash_point("remove-committed-one");
    }
    if (r < 0) {
        hostd_vm_log(vm, "removing snapshot %s stopped (run it again to finish): %s", name,
                     vmseal_last_error());
        goto out;
    }
    vmseal_vmrec *n = hostd_vmi_next(vm);
    r = n ? 0 : -ENOMEM;
    vmseal_vmrec_snapshot gone;
    memset(&gone, 0, sizeof(gone));
    if (r == 0) {
        for (size_t i = 0; i < n->ndisks; i++)
            hostd_copy_str(gone.disks[i].file, sizeof(gone.disks[i].file),
                           n->snaps[k].disks[i].file);
        hostd_copy_str(gone.state_file, sizeof(gone.state_file), n->snaps[k].state_file);
        vmseal_vmrec_snap_drop(n, (size_t)k);
        r = hostd_vmi_commit(vm, n);
    }
    if (r == 0) {
        remove_layer_files(vm, &gone);
        if (gone.state_file[0])
            unlinkat(hostd_vmi_home_fd(vm), gone.state_file, 0);
        hostd_vm_log(vm, "snapshot %s removed (its layer merged into the one below)", name);
    }
out:
    hostd_vmi_end(vm);
    return r;
}

/* ------------------------------------------------------------- list */

json_t *hostd_snapshot_list(hostd_vm *vm)
{
    vmseal_vmrec *c = hostd_vm_record(vm);
    json_t *a = json_array();
    for (size_t k = 0; c && a && k < c->nsnaps; k++)
        json_array_append_new(a, json_pack("{s:s, s:b, s:b, s:b}", "name", c->snaps[k].name,
                                           "memory", c->snaps[k].state_file[0] != 0, "removing",
                                           c->snaps[k].removing, "latest",
                                           k + 1 == c->nsnaps));
    vmseal_vmrec_free(c);
    return a;
}

/* ---------------------------------------------------------- recovery */

void hostd_snapshot_recover(hostd_vm *vm)
{
    int fd = openat(hostd_vmi_home_fd(vm), MARKER, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return;
    close(fd);
    hostd_qemu *q = hostd_vmi_qemu(vm);
    const vmseal_vmrec *c = hostd_vmi_rec(vm);
    int swept = 0;
    if (q) {
        hostd_qmp *m = hostd_qemu_monitor(q);
        int behind = 0;
        for (size_t i = 0; i < c->ndisks; i++) {
            char top[32], want[32];
            qemu_top_node(m, i, top, sizeof(top));
            hostd_qemu_layer_node(i, c->nsnaps, want, sizeof(want));
            if (top[0] && strcmp(top, want) != 0)
                behind = 1;
        }
        if (behind) {
            /* QEMU was switched to layers vm.conf does not name (the guest
             * was paused since: they hold nothing of it): it ends, the VM
             * is powered off with the chain vm.conf has */
            hostd_vmi_kill(vm);
            swept = sweep(vm);
            hostd_vm_log(vm, "hostd stopped while a snapshot was being taken, before vm.conf "
                         "recorded it: QEMU ended (the disks are as they were before it)");
        } else if ((swept = sweep(vm)) >= 0 &&
                   hostd_qmp_execute(m, "cont", NULL, QMP_TIMEOUT_MS, NULL) == 0) {
            hostd_vm_log(vm, "hostd stopped during a snapshot operation: %d file(s) it left "
                         "removed, the guest goes on", swept);
        }
    } else if ((swept = sweep(vm)) > 0) {
        hostd_vm_log(vm, "hostd stopped during a snapshot operation: %d file(s) it left removed",
                     swept);
    }
    marker_clear(vm);
}

/* -------------------------------------------------------------- HTTP */

static void reply_error(int *status, json_t **resp, int code, const char *msg)
{
    *status = code;
    *resp = json_pack("{s:s}", "error", msg);
}

static void reply_fail(int *status, json_t **resp, int r)
{
    reply_error(status, resp, vmseal_http_status_for(r),
                vmseal_last_error()[0] ? vmseal_last_error() : strerror(-r));
}

void hostd_snapshot_api(const hostd_host_env *env, hostd_vm *vm, const char *method,
                        const char *sub, const char *body, size_t len, int *status,
                        json_t **resp)
{
    int get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0,
        del = strcmp(method, "DELETE") == 0;
    int r;
    if (!*sub) {
        if (get) {
            *status = 200;
            *resp = json_pack("{s:o}", "snapshots", hostd_snapshot_list(vm));
            return;
        }
        if (!post) {
            reply_error(status, resp, 405, "use GET or POST");
            return;
        }
        json_error_t je;
        json_t *j = len <= 4096 ? json_loadb(body, len, 0, &je) : NULL;
        const char *name = json_string_value(json_object_get(j, "name"));
        json_t *mem = json_object_get(j, "memory");
        if (!j || !json_is_object(j) || !name || (mem && !json_is_boolean(mem))) {
            json_decref(j);
            reply_error(status, resp, 400, "the body is {\"name\": NAME, \"memory\": bool}");
            return;
        }
        r = hostd_snapshot_create(vm, env, name, json_is_true(mem));
        json_decref(j);
    } else {
        if (sub[0] != '/') {
            reply_error(status, resp, 404, "no such path");
            return;
        }
        char name[VMSEAL_VMREC_SNAP_NAME_MAX + 1];
        const char *p = sub + 1, *slash = strchr(p, '/');
        size_t nl = slash ? (size_t)(slash - p) : strlen(p);
        if (nl == 0 || nl >= sizeof(name)) {
            reply_error(status, resp, 404, "no such snapshot");
            return;
        }
        memcpy(name, p, nl);
        name[nl] = '\0';
        if (slash && strcmp(slash, "/revert") == 0 && post) {
            r = hostd_snapshot_revert(vm, env, name);
        } else if (!slash && del) {
            r = hostd_snapshot_remove(vm, env, name);
        } else {
            reply_error(status, resp, 405, "use POST .../revert or DELETE");
            return;
        }
    }
    if (r < 0) {
        reply_fail(status, resp, r);
        return;
    }
    *status = 200;
    *resp = json_pack("{s:o}", "snapshots", hostd_snapshot_list(vm));
}
