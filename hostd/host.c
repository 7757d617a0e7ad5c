/* The host: inventory of VMs, KEKs, asynchronous tasks, JSON API. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <vmseal/diskdesc.h>
#include <vmseal/http_status.h>
#include <vmseal/keysafe.h>
#include <vmseal/log.h>

#include "blockserver.h"
#include "coredump.h"
#include "export.h"
#include "host.h"
#include "import.h"
#include "snapshot.h"
#include "hostmode.h"
#include "migrate.h"
#include "nic.h"
#include "serial.h"
#include "cdrom.h"
#include "strutil.h"

#define MAX_TASKS_KEPT 256

enum task_state { TASK_RUNNING = 0, TASK_SUCCESS = 1, TASK_ERROR = 2 };

typedef struct task {
    char id[37];
    char vm_uuid[37];
    char op[24];                  /* encrypt, decrypt, recrypt, recrypt-deep, resume, rollback */
    char kek[VMSEAL_KEYSAFE_KEK_ID_MAX + 1];
    hostd_vm *vm;
    struct hostd_host *h;
    atomic_int progress;          /* 0..100 */
    volatile sig_atomic_t cancel; /* set: stop at the next checkpoint (kept for resume) */
    int rolled_back;              /* it ran out of room and hostd rolled the operation back */
    int state;
    int err;
    char error[512];
    time_t started, finished;
    pthread_t thread;
    int joined;
    hostd_migrate_req mig;        /* migrate-out: the spec (its key wiped at the end) */
    hostd_migration *incoming;    /* migrate-in: the receiving relay */
} task;

struct hostd_host {
    pthread_mutex_t lock;
    char *datastore, *provider, *qemu, *ovmf_code, *ovmf_vars, *allowed_subject;
    char *images, *qemu_user, *export_listen;
    hostd_diskpath diskpath;     /* hostd.conf disk_path, checked at open */
    struct hostd_hostmode *hostmode;   /* host encryption mode, or NULL */
    int grace_ms;
    hostd_host_env env;
    hostd_vm **vms;
    size_t nvms, capvms;
    hostd_vm **grave;            /* deleted VMs: freed at close (tasks may still point) */
    size_t ngrave, capgrave;
    task **tasks;
    size_t ntasks, captasks;
    json_t *key_notes;            /* kek_id -> why the manager could not give it */
    json_t *auto_resumed;         /* VM uuid -> true: resumed by hostd itself once */
    char *name;                   /* host name sealed KEKs are bound to */
    hostd_vmnet_config net;         /* hostd.conf's networks (hostd/nic.h) */
    vmseal_kd_keypair *custody;   /* KEKs arrive sealed to its public half */
    void (*log)(void *arg, const char *line);
    void *log_arg;
};

static void hostmode_auto(hostd_host *h);

/* ------------------------------------------------------------ helpers */

/* Through the shared logger (include/vmseal/log.h), or to the hook a test
 * set with hostd_host_set_logger. */
static void hlog(hostd_host *h, const char *fmt, ...) VMSEAL_PRINTF(2, 3);
static void hlog(hostd_host *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (h->log) {
        char line[1024];
        vsnprintf(line, sizeof(line), fmt, ap);
        h->log(h->log_arg, line);
    } else {
        vmseal_logv(VMSEAL_LOG_INFO, fmt, ap);
    }
    va_end(ap);
}

void hostd_host_set_logger(hostd_host *h, void (*log)(void *arg, const char *line), void *arg)
{
    h->log = log;
    h->log_arg = arg;
}

static int push(void ***arr, size_t *n, size_t *cap, void *item)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        void **na = realloc(*arr, ncap * sizeof(void *));
        if (!na)
            return vmseal_fail(ENOMEM, "out of memory");
        *arr = na;
        *cap = ncap;
    }
    (*arr)[(*n)++] = item;
    return 0;
}

static char *dup_or(const char *s, const char *def)
{
    return s ? strdup(s) : (def ? strdup(def) : NULL);
}

/* --------------------------------------------------------- open/close */

static int vm_cmp_name(const void *a, const void *b)
{
    return strcmp(hostd_vm_name(*(hostd_vm *const *)a), hostd_vm_name(*(hostd_vm *const *)b));
}

int hostd_host_open(const hostd_host_config *cfg, hostd_host **out)
{
    *out = NULL;
    if (!cfg->datastore)
        return vmseal_fail(EINVAL, "no datastore");
    struct stat st;
    if (stat(cfg->datastore, &st) != 0 || !S_ISDIR(st.st_mode))
        return vmseal_fail(ENOENT, "datastore %s is not a directory", cfg->datastore);
    hostd_host *h = calloc(1, sizeof(*h));
    if (!h)
        return vmseal_fail(ENOMEM, "out of memory");
    pthread_mutex_init(&h->lock, NULL);
    h->key_notes = json_object();
    h->auto_resumed = json_object();
    h->datastore = strdup(cfg->datastore);
    hostd_vm_set_run_folder(cfg->name);   /* QEMU's run files: <home>/run-<name> */
    h->provider = dup_or(cfg->provider, "vmseal");
    h->qemu = dup_or(cfg->qemu, NULL);
    h->ovmf_code = dup_or(cfg->ovmf_code, "/usr/share/OVMF/OVMF_CODE_4M.fd");
    h->ovmf_vars = dup_or(cfg->ovmf_vars, "/usr/share/OVMF/OVMF_VARS_4M.fd");
    h->allowed_subject = dup_or(cfg->allowed_subject, NULL);
    h->name = dup_or(cfg->name, "localhost");
    h->qemu_user = dup_or(cfg->qemu_user, NULL);
    h->env.images_fd = -1;
    if (vmseal_kd_keypair_new(&h->custody) < 0) {
        hostd_host_close(h);
        return vmseal_fail(EIO, "cannot make the KEK custody key pair: %s", vmseal_last_error());
    }
    h->grace_ms = cfg->power_off_grace_ms > 0 ? cfg->power_off_grace_ms : 30000;
    h->env.keys = hostd_keystore_new(h->provider ? h->provider : "vmseal");
    if (!h->datastore || !h->provider || !h->ovmf_code || !h->ovmf_vars || !h->env.keys ||
        !h->name) {
        hostd_host_close(h);
        return vmseal_fail(EINVAL, "bad host configuration (provider name?)");
    }
    h->env.qemu = h->qemu;
    h->env.accel = cfg->accel;
    h->env.ovmf_code = h->ovmf_code;
    h->env.ovmf_vars = h->ovmf_vars;
    h->hostmode = cfg->hostmode;
    h->env.ovmf_code_secure = "/usr/share/OVMF/OVMF_CODE_4M.ms.fd";
    h->env.ovmf_vars_secure = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";
    h->env.threads = cfg->threads;
    h->env.qemu_user = h->qemu_user;
    if (cfg->net)
        h->net = *cfg->net;
    else
        hostd_vmnet_config_init(&h->net);
    h->env.net = &h->net;
    if (hostd_diskpath_init(&h->diskpath, cfg->disk_path, cfg->nbdkit, cfg->nbd_plugin) < 0) {
        char msg[300];
        hostd_copy_str(msg, sizeof(msg), vmseal_last_error());
        hostd_host_close(h);
        return vmseal_fail(EINVAL, "%s", msg);
    }
    h->env.diskpath = &h->diskpath;
    h->export_listen = dup_or(cfg->export_listen, NULL);
    h->env.export_listen = h->export_listen;
    hlog(h, "encrypted disks of running VMs: %s", h->diskpath.why);
    const char *skip = getenv("VMSEAL_TEST_SKIP_SPACE_CHECK");
    if (skip && *skip && strcmp(skip, "0") != 0) {
        h->env.skip_space_check = 1;
        hlog(h, "TEST HOOK VMSEAL_TEST_SKIP_SPACE_CHECK: operations start without checking the "
                "room they need on the datastore");
    }
    /* Boot files come only from the images folder (default DATASTORE/.images:
     * a VM name never starts with '.'). */
    h->images = cfg->images ? strdup(cfg->images) : hostd_asprintf("%s/.images", h->datastore);
    if (!h->images || (!cfg->images && mkdir(h->images, 0755) != 0 && errno != EEXIST)) {
        int e = h->images ? errno : ENOMEM;
        hostd_host_close(h);
        return vmseal_fail(e, "images folder: %s", strerror(e));
    }
    h->env.images = h->images;
    h->env.images_fd = open(h->images, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (h->env.images_fd < 0) {
        int e = errno;
        char *msg = hostd_asprintf("images folder %s: %s", h->images, strerror(e));
        hostd_host_close(h);
        vmseal_fail(e, "%s", msg ? msg : "images folder");
        free(msg);
        return -e;
    }

    DIR *d = opendir(h->datastore);
    if (!d) {
        int e = errno;
        hostd_host_close(h);
        return vmseal_fail(e, "datastore %s: %s", cfg->datastore, strerror(e));
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!hostd_vm_name_valid(de->d_name))
            continue;
        char home[4096], conf[4200];
        snprintf(home, sizeof(home), "%s/%s", h->datastore, de->d_name);
        snprintf(conf, sizeof(conf), "%s/vm.conf", home);
        if (access(conf, F_OK) != 0)
            continue;
        hostd_vm *vm = NULL;
        if (hostd_vm_load(home, &vm) < 0) {
            hlog(h, "skipping %s: %s", home, vmseal_last_error());
            continue;
        }
        if (push((void ***)&h->vms, &h->nvms, &h->capvms, vm) < 0) {
            hostd_vm_free(vm);
            continue;
        }
        hlog(h, "loaded VM %s (%s)%s", hostd_vm_name(vm), hostd_vm_uuid(vm),
             hostd_vm_running(vm) ? ", running" : "");
    }
    closedir(d);
    if (h->nvms > 1)
        qsort(h->vms, h->nvms, sizeof(*h->vms), vm_cmp_name);
    hostmode_auto(h);   /* encrypted VMs on the host: the mode is on */
    *out = h;
    return 0;
}

/* Join task threads that are done (all: every one). Lock held; it is
 * dropped while joining, so the scan restarts after each join. */
static void join_finished(hostd_host *h, int all)
{
    for (;;) {
        task *t = NULL;
        for (size_t i = 0; i < h->ntasks && !t; i++)
            if (!h->tasks[i]->joined && (all || h->tasks[i]->state != TASK_RUNNING))
                t = h->tasks[i];
        if (!t)
            return;
        pthread_t th = t->thread;
        t->joined = 1;
        pthread_mutex_unlock(&h->lock);
        pthread_join(th, NULL);
        pthread_mutex_lock(&h->lock);
    }
}

void hostd_host_close(hostd_host *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->lock);
    for (size_t i = 0; i < h->ntasks; i++)
        h->tasks[i]->cancel = 1;   /* they stop at a checkpoint and stay resumable */
    join_finished(h, 1);
    pthread_mutex_unlock(&h->lock);
    hostd_export_stop_all();   /* before the VMs they hold are freed */
    for (size_t i = 0; i < h->ntasks; i++)
        free(h->tasks[i]);
    free(h->tasks);
    for (size_t i = 0; i < h->nvms; i++)
        hostd_vm_free(h->vms[i]);
    free(h->vms);
    for (size_t i = 0; i < h->ngrave; i++)
        hostd_vm_free(h->grave[i]);
    free(h->grave);
    hostd_keystore_free(h->env.keys);
    json_decref(h->key_notes);
    json_decref(h->auto_resumed);
    free(h->datastore);
    free(h->images);
    free(h->export_listen);
    free(h->qemu_user);
    if (h->env.images_fd >= 0)
        close(h->env.images_fd);
    free(h->provider);
    free(h->qemu);
    free(h->ovmf_code);
    free(h->ovmf_vars);
    free(h->allowed_subject);
    free(h->name);
    vmseal_kd_keypair_free(h->custody);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

/* ------------------------------------------------------------ inventory */

static hostd_vm *find_vm_locked(hostd_host *h, const char *uuid)
{
    for (size_t i = 0; i < h->nvms; i++)
        if (strcmp(hostd_vm_uuid(h->vms[i]), uuid) == 0)
            return h->vms[i];
    return NULL;
}

hostd_vm *hostd_host_find_vm(hostd_host *h, const char *uuid)
{
    pthread_mutex_lock(&h->lock);
    hostd_vm *vm = find_vm_locked(h, uuid);
    pthread_mutex_unlock(&h->lock);
    return vm;
}

static task *running_task_locked(hostd_host *h, const char *uuid)
{
    for (size_t i = 0; i < h->ntasks; i++)
        if (h->tasks[i]->state == TASK_RUNNING && strcmp(h->tasks[i]->vm_uuid, uuid) == 0)
            return h->tasks[i];
    return NULL;
}

json_t *hostd_host_kek_ids(hostd_host *h)
{
    json_t *all = json_array();
    pthread_mutex_lock(&h->lock);
    for (size_t i = 0; i < h->nvms; i++) {
        json_t *ids = hostd_vm_kek_ids(h->vms[i]);
        size_t k;
        json_t *v;
        json_array_foreach(ids, k, v) {
            size_t j;
            json_t *w;
            int seen = 0;
            json_array_foreach(all, j, w)
                if (json_equal(v, w))
                    seen = 1;
            if (!seen)
                json_array_append(all, v);
        }
        json_decref(ids);
    }
    pthread_mutex_unlock(&h->lock);
    return all;
}

void hostd_host_tick(hostd_host *h)
{
    pthread_mutex_lock(&h->lock);
    join_finished(h, 0);
    size_t n = h->nvms;
    hostd_vm **copy = n ? malloc(n * sizeof(*copy)) : NULL;
    if (copy)
        memcpy(copy, h->vms, n * sizeof(*copy));
    pthread_mutex_unlock(&h->lock);
    for (size_t i = 0; copy && i < n; i++)
        hostd_vm_tick(copy[i], &h->env);
    free(copy);
}

/* ---------------------------------------------------------------- tasks */

static void task_progress(uint64_t done, uint64_t total, void *ctx)
{
    task *t = ctx;
    int pct = total ? (int)(done * 100 / total) : 0;
    if (pct > 99)
        pct = 99;   /* 100 only once the configuration is committed */
    if (pct < 0)
        pct = 0;
    atomic_store(&t->progress, pct);
}

static void mig_progress(int pct, void *ctx)
{
    task *t = ctx;
    atomic_store(&t->progress, pct);
}

static void forget_vm_locked(hostd_host *h, hostd_vm *vm);

static void *task_main(void *arg)
{
    task *t = arg;
    hostd_host *h = t->h;
    hostd_vm_progress prog = {.fn = task_progress, .ctx = t, .cancel = &t->cancel};
    int r;
    if (strcmp(t->op, "encrypt") == 0)
        r = hostd_vm_encrypt(t->vm, &h->env, t->kek, &prog);
    else if (strcmp(t->op, "decrypt") == 0)
        r = hostd_vm_decrypt(t->vm, &h->env, &prog);
    else if (strcmp(t->op, "recrypt") == 0)
        r = hostd_vm_recrypt(t->vm, &h->env, t->kek, 0, &prog);
    else if (strcmp(t->op, "recrypt-deep") == 0)
        r = hostd_vm_recrypt(t->vm, &h->env, t->kek, 1, &prog);
    else if (strcmp(t->op, "rollback") == 0)
        r = hostd_vm_rollback(t->vm, &h->env);
    else if (strcmp(t->op, "migrate-out") == 0)
        r = hostd_vm_migrate_out(t->vm, &t->mig, mig_progress, t, &t->cancel);
    else if (strcmp(t->op, "migrate-in") == 0)
        r = hostd_vm_migrate_in_finish(t->vm, t->incoming, 3600 * 1000);
    else    /* resume; import and disk-add: the create vm.conf records */
        r = hostd_vm_resume(t->vm, &h->env, &prog);
    char msg[512];
    hostd_copy_str(msg, sizeof(msg), r < 0 ? vmseal_last_error() : "");
    int rolled_back = 0;
    char op[32];
    hostd_vm_pending_op(t->vm, op, sizeof(op));
    if ((r == -ENOSPC || r == -EDQUOT) && op[0] && strcmp(op, "create") != 0 &&
        strcmp(t->op, "rollback") != 0) {
        /* The datastore filled up part-way: put the VM back as it was
         * (bootable) at once, without waiting for the manager; what the
         * operation wrote goes first, so the room comes back. */
        if (hostd_vm_rollback(t->vm, &h->env) == 0) {
            rolled_back = 1;
            size_t l = strlen(msg);
            snprintf(msg + l, sizeof(msg) - l, " (rolled back: the VM is as it was before)");
        } else {
            hlog(h, "task %s: could not roll back %s of VM %s after running out of room: %s", t->id, op,
                 t->vm_uuid, vmseal_last_error());
        }
    }
    hostd_migrate_req_clear(&t->mig);
    t->incoming = NULL;
    pthread_mutex_lock(&h->lock);
    if (r < 0 && strcmp(t->op, "migrate-in") == 0)
        forget_vm_locked(h, t->vm);   /* the source keeps it */
    t->err = r;
    t->rolled_back = rolled_back;
    t->state = r == 0 ? TASK_SUCCESS : TASK_ERROR;
    hostd_copy_str(t->error, sizeof(t->error), msg);
    if (r == 0)
        atomic_store(&t->progress, 100);
    t->finished = time(NULL);
    pthread_mutex_unlock(&h->lock);
    if (r == 0)
        hlog(h, "task %s: %s of VM %s done", t->id, t->op, t->vm_uuid);
    else
        hlog(h, "task %s: %s of VM %s failed: %s", t->id, t->op, t->vm_uuid, msg);
    return NULL;
}

static void new_id(char out[37])
{
    if (vmseal_uuid_random(out) < 0) /* no randomness: the all-zero v4 id */
        snprintf(out, 37, "00000000-0000-4000-8000-000000000000");
}

/* Drop the oldest finished tasks beyond the history limit (lock held). */
static void prune_tasks(hostd_host *h)
{
    for (size_t i = 0; h->ntasks > MAX_TASKS_KEPT && i < h->ntasks;) {
        task *t = h->tasks[i];
        if (t->state != TASK_RUNNING && t->joined) {
            free(t);
            memmove(&h->tasks[i], &h->tasks[i + 1], (h->ntasks - i - 1) * sizeof(task *));
            h->ntasks--;
        } else {
            i++;
        }
    }
}

/* Start a task on a VM (lock held). */
static int start_task_locked(hostd_host *h, hostd_vm *vm, const char *op, const char *kek,
                             task **out, ...)
{
    if (running_task_locked(h, hostd_vm_uuid(vm)))
        return vmseal_fail(EBUSY, "VM %s has a task running", hostd_vm_name(vm));
    task *t = calloc(1, sizeof(*t));
    if (!t)
        return vmseal_fail(ENOMEM, "out of memory");
    new_id(t->id);
    hostd_copy_str(t->vm_uuid, sizeof(t->vm_uuid), hostd_vm_uuid(vm));
    hostd_copy_str(t->op, sizeof(t->op), op);
    hostd_copy_str(t->kek, sizeof(t->kek), kek ? kek : "");
    t->vm = vm;
    t->h = h;
    t->started = time(NULL);
    atomic_init(&t->progress, 0);
    if (!strcmp(op, "migrate-out") || !strcmp(op, "migrate-in")) {
        /* the migration's own argument: the spec (moved) or the relay */
        va_list ap;
        va_start(ap, out);
        void *arg = va_arg(ap, void *);
        va_end(ap);
        if (!strcmp(op, "migrate-in")) {
            t->incoming = arg;
        } else {
            t->mig = *(hostd_migrate_req *)arg;
            memset(arg, 0, sizeof(t->mig));
        }
    }
    if (push((void ***)&h->tasks, &h->ntasks, &h->captasks, t) < 0) {
        hostd_migrate_req_clear(&t->mig);
        free(t);
        return -ENOMEM;
    }
    int e = pthread_create(&t->thread, NULL, task_main, t);
    if (e != 0) {
        h->ntasks--;
        hostd_migrate_req_clear(&t->mig);
        free(t);
        return vmseal_fail(e, "cannot start a task thread: %s", strerror(e));
    }
    prune_tasks(h);
    hlog(h, "task %s: %s of VM %s started", t->id, op, hostd_vm_name(vm));
    *out = t;
    return 0;
}

static json_t *task_json(const task *t)
{
    static const char *const states[] = {"running", "success", "error"};
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:i, s:I}", "id", t->id, "vm_uuid", t->vm_uuid,
                          "operation", t->op, "state", states[t->state], "progress",
                          atomic_load(&t->progress), "started", (json_int_t)t->started);
    json_object_set_new(j, "error", t->state == TASK_ERROR ? json_string(t->error) : json_null());
    /* the errno of a failure (the manager decides from it whether to try
     * again or to roll back) */
    json_object_set_new(j, "errno", t->state == TASK_ERROR ? json_integer(-t->err) : json_null());
    json_object_set_new(j, "rolled_back", json_boolean(t->rolled_back));
    json_object_set_new(j, "finished", t->finished ? json_integer((json_int_t)t->finished) : json_null());
    return j;
}

int hostd_host_resume_pending(hostd_host *h)
{
    int started = 0;
    pthread_mutex_lock(&h->lock);
    for (size_t i = 0; i < h->nvms; i++) {
        hostd_vm *vm = h->vms[i];
        char op[32], reason[300];
        hostd_vm_pending_op(vm, op, sizeof(op));
        if (!op[0] || running_task_locked(h, hostd_vm_uuid(vm)))
            continue;
        /* once per VM and hostd run: after that the manager decides (ask
         * again with back-off, or roll back), not every key that arrives */
        if (json_object_get(h->auto_resumed, hostd_vm_uuid(vm)))
            continue;
        if (hostd_vm_locked(vm, &h->env, reason, sizeof(reason)))
            continue;
        task *t = NULL;
        if (start_task_locked(h, vm, "resume", NULL, &t) == 0) {
            json_object_set_new(h->auto_resumed, hostd_vm_uuid(vm), json_true());
            started++;
        }
    }
    pthread_mutex_unlock(&h->lock);
    return started;
}

int hostd_host_put_key(hostd_host *h, const char *kek_id, const char *provider,
                        vmseal_secret *kek)
{
    int r = hostd_keystore_put(h->env.keys, kek_id, provider, kek);
    if (r == 0) {
        hostd_host_note_key(h, kek_id, NULL);
        hlog(h, "KEK %s stored in memory", kek_id);
    }
    return r;
}

void hostd_host_note_key(hostd_host *h, const char *kek_id, const char *reason)
{
    pthread_mutex_lock(&h->lock);
    if (reason)
        json_object_set_new(h->key_notes, kek_id, json_string(reason));
    else
        json_object_del(h->key_notes, kek_id);
    pthread_mutex_unlock(&h->lock);
}

int hostd_host_put_sealed(hostd_host *h, const char *kek_id, const char *provider,
                           const uint8_t *blob, size_t bloblen)
{
    if (!vmseal_keysafe_kek_id_valid(kek_id))
        return vmseal_fail(EINVAL, "invalid KEK id");
    if (!provider)
        provider = h->provider;
    if (!vmseal_keysafe_provider_valid(provider))
        return vmseal_fail(EINVAL, "invalid provider name");
    vmseal_secret *kek = NULL;
    int r = vmseal_kd_open(h->custody, h->name, kek_id, provider, blob, bloblen, &kek);
    if (r < 0)
        return vmseal_fail(EBADMSG, "KEK %s: the sealed key does not open on host %s (sealed for "
                           "another host, KEK id or provider, or changed on the way)", kek_id,
                           h->name);
    return hostd_host_put_key(h, kek_id, provider, kek);
}

void hostd_host_custody_public(const hostd_host *h, uint8_t pub[VMSEAL_KD_PUB_LEN])
{
    vmseal_kd_public(h->custody, pub);
}

/* ------------------------------------------------------------------ API */

static void reply(int *status, json_t **resp, int code, json_t *body)
{
    *status = code;
    *resp = body;
}

static void reply_error(int *status, json_t **resp, int code, const char *fmt, ...)
    VMSEAL_PRINTF(4, 5);
static void reply_error(int *status, json_t **resp, int code, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    *status = code;
    *resp = json_pack("{s:s}", "error", msg);
}

/* The status for a failure: the one errno -> HTTP table of both daemons
 * (include/vmseal/http_status.h, docs/api.md "Errors"). */
static void reply_fail(int *status, json_t **resp, int r)
{
    reply_error(status, resp, vmseal_http_status_for(r), "%s",
                vmseal_last_error()[0] ? vmseal_last_error() : strerror(-r));
}

static json_t *vm_json_locked(hostd_host *h, hostd_vm *vm)
{
    json_t *j = hostd_vm_describe(vm, &h->env);
    json_object_set_new(j, "power", json_incref(json_object_get(j, "power_state")));
    if (json_is_true(json_object_get(j, "locked"))) {
        /* say why the key is missing when the manager told us */
        json_t *ids = hostd_vm_kek_ids(vm);
        size_t i;
        json_t *v;
        json_array_foreach(ids, i, v) {
            const char *id = json_string_value(v);
            const char *note = json_string_value(json_object_get(h->key_notes, id));
            if (note && !hostd_keystore_has(h->env.keys, id)) {
                char msg[700];
                snprintf(msg, sizeof(msg), "KEK %s is not available on this host: %s", id, note);
                json_object_set_new(j, "locked_reason", json_string(msg));
                break;
            }
        }
        json_decref(ids);
    }
    task *t = running_task_locked(h, hostd_vm_uuid(vm));
    json_object_set_new(j, "task", t ? task_json(t) : json_null());
    /* the task that ended last on this VM since hostd started (its result
     * stays readable when the manager lost the task id) */
    task *last = NULL;
    for (size_t i = h->ntasks; i-- > 0 && !last;)
        if (h->tasks[i]->state != TASK_RUNNING && strcmp(h->tasks[i]->vm_uuid, hostd_vm_uuid(vm)) == 0)
            last = h->tasks[i];
    json_object_set_new(j, "last_task", last ? task_json(last) : json_null());
    return j;
}

static json_t *parse_body(const char *body, size_t len, int *status, json_t **resp)
{
    if (!body || len == 0) {
        reply_error(status, resp, 400, "a JSON object body is required");
        return NULL;
    }
    json_error_t err;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        reply_error(status, resp, 400, "body is not a JSON object: %s", err.text);
        return NULL;
    }
    return j;
}

/* Optional JSON body (power-off takes an optional one). */
static json_t *parse_optional_body(const char *body, size_t len, int *status, json_t **resp)
{
    if (!body || len == 0)
        return json_object();
    return parse_body(body, len, status, resp);
}

/* PUT /v1/keys/{id} {"sealed_key": base64 of the blob, "provider": NAME}:
 * only the monitor's custody key opens it (a KEK in clear is refused). */
static void api_put_key(hostd_host *h, const char *kek_id, const char *body, size_t len,
                        int *status, json_t **resp)
{
    if (!vmseal_keysafe_kek_id_valid(kek_id)) {
        reply_error(status, resp, 400, "invalid KEK id");
        return;
    }
    json_t *j = parse_body(body, len, status, resp);
    if (!j)
        return;
    if (json_object_get(j, "key")) {
        /* a KEK in clear crossed the network process: wipe it, refuse */
        json_t *k = json_object_get(j, "key");
        if (json_is_string(k))
            OPENSSL_cleanse((void *)json_string_value(k), json_string_length(k));
        json_decref(j);
        reply_error(status, resp, 400, "send sealed_key (a KEK sealed to this host's custody_key)");
        return;
    }
    const char *sealed = json_string_value(json_object_get(j, "sealed_key"));
    json_t *pj = json_object_get(j, "provider");
    const char *provider = json_string_value(pj);
    uint8_t blob[VMSEAL_KD_BLOB_LEN];
    int r = 0;
    if (pj && !json_is_null(pj) && (!provider || !vmseal_keysafe_provider_valid(provider)))
        r = vmseal_fail(EINVAL, "invalid provider name");
    else if (!sealed || vmseal_kd_unb64(sealed, blob, sizeof(blob)) < 0)
        r = vmseal_fail(EINVAL, "sealed_key must be the base64 of a %d-byte sealed KEK",
                        VMSEAL_KD_BLOB_LEN);
    if (r == 0)
        r = hostd_host_put_sealed(h, kek_id, provider, blob, sizeof(blob));
    json_decref(j);
    if (r < 0) {
        reply_fail(status, resp, r);
        return;
    }
    int resumed = hostd_host_resume_pending(h);
    reply(status, resp, 200, json_pack("{s:s, s:b, s:i}", "kek_id", kek_id, "stored", 1,
                                       "resumed_tasks", resumed));
}

static int get_uint(json_t *j, const char *name, json_int_t min, json_int_t max, json_int_t def,
                    json_int_t *out)
{
    json_t *v = json_object_get(j, name);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return vmseal_fail(EINVAL, "%s must be an integer from %lld to %lld", name, (long long)min,
                           (long long)max);
    *out = json_integer_value(v);
    return 0;
}

static int get_opt_string(json_t *j, const char *name, const char **out)
{
    json_t *v = json_object_get(j, name);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return vmseal_fail(EINVAL, "%s must be a string", name);
    *out = json_string_value(v);
    return 0;
}

/* An optional boolean: -1 absent (or null), 0, 1. */
static int get_opt_bool(json_t *j, const char *name, int *out)
{
    json_t *v = json_object_get(j, name);
    *out = -1;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return vmseal_fail(EINVAL, "%s must be true or false", name);
    *out = json_is_true(v);
    return 0;
}

static void api_create_vm(hostd_host *h, const char *body, size_t len, int *status, json_t **resp)
{
    json_t *j = parse_body(body, len, status, resp);
    if (!j)
        return;
    hostd_vm_create_req req = {0};
    uint64_t sizes[VMSEAL_VM_MAX_DISKS];
    json_int_t cpus = 0, mem = 0;
    const char *fw = NULL, *policy = NULL;
    int r = get_opt_string(j, "name", &req.name);
    if (r == 0)
        r = get_opt_string(j, "uuid", &req.uuid);
    if (r == 0)
        r = get_uint(j, "cpus", 1, 64, 1, &cpus);
    if (r == 0)
        r = get_uint(j, "memory_mb", 16, 65536, 256, &mem);
    if (r == 0)
        r = get_opt_string(j, "firmware", &fw);
    if (r == 0)
        r = get_opt_string(j, "kernel", &req.kernel);
    if (r == 0)
        r = get_opt_string(j, "initrd", &req.initrd);
    if (r == 0)
        r = get_opt_string(j, "append", &req.append);
    if (r == 0)
        r = get_opt_string(j, "policy", &policy);
    if (r == 0)
        r = get_opt_string(j, "kek_id", &req.kek_id);
    int tpm = -1;
    if (r == 0)
        r = get_opt_bool(j, "tpm", &tpm);
    req.tpm = tpm > 0;
    if (r == 0 && !req.name)
        r = vmseal_fail(EINVAL, "name is required");
    int secure = -1;
    if (r == 0)
        r = get_opt_bool(j, "secure_boot", &secure);
    if (r == 0 && fw && strcmp(fw, "uefi-secure") == 0)   /* = uefi + secure_boot */
        secure = 1, fw = "uefi";
    if (r == 0 && fw && strcmp(fw, "bios") != 0 && strcmp(fw, "uefi") != 0)
        r = vmseal_fail(EINVAL, "firmware must be \"bios\", \"uefi\" or \"uefi-secure\"");
    if (r == 0 && secure > 0 && !(fw && strcmp(fw, "uefi") == 0))
        r = vmseal_fail(EINVAL, "Secure Boot needs firmware \"uefi\"");
    req.secure_boot = secure > 0;
    if (r == 0 && policy && strcmp(policy, "encrypted") != 0 && strcmp(policy, "none") != 0)
        r = vmseal_fail(EINVAL, "policy must be \"encrypted\" or \"none\"");
    json_t *disks = json_object_get(j, "disks");
    const char *from[VMSEAL_VM_MAX_DISKS] = {0};
    int imports = 0;
    if (r == 0 && disks && (!json_is_array(disks) || json_array_size(disks) > VMSEAL_VM_MAX_DISKS))
        r = vmseal_fail(EINVAL, "disks must be an array of at most %d {\"size_mb\": N} or "
                        "{\"from\": IMAGE}", VMSEAL_VM_MAX_DISKS);
    for (size_t i = 0; r == 0 && i < json_array_size(disks); i++) {
        json_int_t mb;
        json_t *d = json_array_get(disks, i);
        if (json_is_object(d))
            r = get_opt_string(d, "from", &from[i]);
        if (r == 0 && from[i]) {
            /* an image of the images folder: its size is what it holds */
            r = json_object_get(d, "size_mb")
                    ? vmseal_fail(EINVAL, "a disk has size_mb or from, not both")
                    : hostd_vm_inspect_image(&h->env, from[i], &sizes[i]);
            imports = 1;
            continue;
        }
        if (r == 0 && (!json_is_object(d) || !json_object_get(d, "size_mb")))
            r = vmseal_fail(EINVAL, "each disk needs size_mb or from");
        else if (r == 0)
            r = get_uint(d, "size_mb", 1, 1 << 20, 0, &mb);
        if (r == 0)
            sizes[i] = (uint64_t)mb << 20;
    }
    if (r < 0) {
        json_decref(j);
        reply_fail(status, resp, r);
        return;
    }
    req.cpus = (unsigned)cpus;
    req.memory_mb = (unsigned)mem;
    req.disk_sizes = sizes;
    req.disk_from = imports ? from : NULL;
    req.ndisks = json_array_size(disks);
    req.firmware = fw && strcmp(fw, "uefi") == 0 ? VMSEAL_FIRMWARE_UEFI : VMSEAL_FIRMWARE_BIOS;
    req.encrypted = policy && strcmp(policy, "encrypted") == 0;
    if (imports) {
        /* room first: the images it imports, written whole (507) */
        uint64_t need = 0;
        for (size_t i = 0; i < req.ndisks; i++)
            if (from[i])
                need += hostd_import_bytes(&h->env, from[i], sizes[i], req.encrypted);
        int dfd = open(h->datastore, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        r = dfd < 0 ? vmseal_fail(errno, "%s: %s", h->datastore, strerror(errno))
                    : hostd_import_check_space(&h->env, dfd, need, "import", req.name);
        if (dfd >= 0)
            close(dfd);
        if (r < 0) {
            json_decref(j);
            if (r == -ENOSPC)
                reply_error(status, resp, 507, "%s", vmseal_last_error());
            else
                reply_fail(status, resp, r);
            return;
        }
    }

    pthread_mutex_lock(&h->lock);
    for (size_t i = 0; i < h->nvms && r == 0; i++) {
        if (req.uuid && strcmp(hostd_vm_uuid(h->vms[i]), req.uuid) == 0)
            r = vmseal_fail(EEXIST, "a VM with uuid %s exists already", req.uuid);
        if (strcmp(hostd_vm_name(h->vms[i]), req.name) == 0)
            r = vmseal_fail(EEXIST, "a VM named %s exists already", req.name);
    }
    hostd_vm *vm = NULL;
    /* Creating writes only headers and sparse files: quick, done inline. */
    if (r == 0)
        r = hostd_vm_create(&h->env, h->datastore, &req, NULL, &vm);
    if (r == 0)
        r = push((void ***)&h->vms, &h->nvms, &h->capvms, vm);
    if (r < 0) {
        pthread_mutex_unlock(&h->lock);
        json_decref(j);
        reply_fail(status, resp, r);
        return;
    }
    hlog(h, "created VM %s (%s)%s", hostd_vm_name(vm), hostd_vm_uuid(vm),
         req.encrypted ? ", encrypted" : "");
    task *it = NULL;
    if (imports && start_task_locked(h, vm, "import", NULL, &it) < 0)
        hlog(h, "VM %s: cannot start the import of its disks (resume it): %s", hostd_vm_name(vm),
             vmseal_last_error());
    json_t *out = vm_json_locked(h, vm);
    pthread_mutex_unlock(&h->lock);
    json_decref(j);
    reply(status, resp, 201, out);
}

/* POST /v1/vms/{uuid}/export {"disk": N, "ttl_seconds"?, "ciphertext"?}: a
 * one-time NBD-over-TLS endpoint (hostd/export.h). */
static void api_vm_export(hostd_host *h, hostd_vm *vm, const char *body, size_t len, int *status,
                          json_t **resp)
{
    json_t *j = parse_body(body, len, status, resp);
    if (!j)
        return;
    json_int_t disk = 0, ttl = 0;
    int r = 0;
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v)
        if (strcmp(key, "disk") != 0 && strcmp(key, "ttl_seconds") != 0 &&
            strcmp(key, "ciphertext") != 0) {
            reply_error(status, resp, 400, "unknown field '%s' (disk, ttl_seconds, ciphertext)", key);
            json_decref(j);
            return;
        }
    if (!json_is_integer(json_object_get(j, "disk")))
        r = vmseal_fail(EINVAL, "field 'disk' (the disk's index) is required");
    json_t *ct = json_object_get(j, "ciphertext");
    if (r == 0 && ct && !json_is_boolean(ct))
        r = vmseal_fail(EINVAL, "field 'ciphertext' must be true or false");
    int ciphertext = json_is_true(ct);
    if (r == 0)
        r = get_uint(j, "disk", 0, VMSEAL_VM_MAX_DISKS - 1, 0, &disk);
    if (r == 0)
        r = get_uint(j, "ttl_seconds", 1, HOSTD_EXPORT_TTL_MAX, HOSTD_EXPORT_TTL_DEFAULT, &ttl);
    json_decref(j);
    if (r < 0) {
        reply_error(status, resp, 400, "%s", vmseal_last_error());
        return;
    }
    pthread_mutex_lock(&h->lock);
    task *t = running_task_locked(h, hostd_vm_uuid(vm));
    pthread_mutex_unlock(&h->lock);
    if (t) {
        reply_error(status, resp, 409, "VM %s has a task running (%s)", hostd_vm_name(vm), t->op);
        return;
    }
    json_t *out = NULL;
    r = hostd_export_start(vm, &h->env, (size_t)disk, (int)ttl, ciphertext, &out);
    if (r == -ENOKEY || r == -EBUSY) {
        reply_error(status, resp, 409, "%s", vmseal_last_error());
        return;
    }
    if (r < 0) {
        reply_fail(status, resp, r);
        return;
    }
    hlog(h, "VM %s: disk %lld exported for one connection", hostd_vm_name(vm), (long long)disk);
    reply(status, resp, 200, out);
}

/* Room for importing `size` bytes of payload into the VM home. */
static int import_space_check(hostd_host *h, hostd_vm *vm, const char *from, uint64_t size)
{
    int fd = open(hostd_vm_home(vm), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return vmseal_fail(errno, "%s: %s", hostd_vm_home(vm), strerror(errno));
    uint64_t need = hostd_import_bytes(&h->env, from, size, hostd_vm_encrypted(vm));
    int r = hostd_import_check_space(&h->env, fd, need, "import", hostd_vm_name(vm));
    close(fd);
    return r;
}

/* POST /v1/vms/{uuid}/disks {"adopt": IMAGE, "passphrase": P,
 * "remove_passphrase"?: bool}: the LUKS1 image joins the encrypted VM as
 * it is (hostd/import.h), at once: 201 {"disk": its index}; a wrong
 * passphrase is 422 and writes nothing. The passphrase is taken out of the
 * request into a vmseal_secret (jansson's memory is wiped when freed). */
static void api_adopt_disk(hostd_host *h, hostd_vm *vm, json_t *j, int *status, json_t **resp)
{
    const char *key, *image = NULL;
    json_t *v, *pj = json_object_get(j, "passphrase");
    int r = 0, remove_old = -1;
    json_object_foreach(j, key, v)
        if (strcmp(key, "adopt") != 0 && strcmp(key, "passphrase") != 0 &&
            strcmp(key, "remove_passphrase") != 0) {
            r = vmseal_fail(EINVAL, "unknown field '%s' (adopt, passphrase, remove_passphrase)", key);
            break;
        }
    if (r == 0)
        r = get_opt_string(j, "adopt", &image);
    if (r == 0)
        r = get_opt_bool(j, "remove_passphrase", &remove_old);
    if (r == 0 && (!json_is_string(pj) || json_string_length(pj) < 1 ||
                   json_string_length(pj) > HOSTD_ADOPT_PASSPHRASE_MAX))
        r = vmseal_fail(EINVAL, "passphrase must be a string of 1 to %d bytes",
                        HOSTD_ADOPT_PASSPHRASE_MAX);
    vmseal_secret *pass = NULL;
    if (r == 0)
        r = vmseal_secret_from(json_string_value(pj), json_string_length(pj), &pass);
    json_object_del(j, "passphrase");
    pthread_mutex_lock(&h->lock);
    if (r == 0 && running_task_locked(h, hostd_vm_uuid(vm)))
        r = vmseal_fail(EBUSY, "VM %s has a task running", hostd_vm_name(vm));
    pthread_mutex_unlock(&h->lock);
    int idx = r < 0 ? r : hostd_vm_adopt_disk(vm, &h->env, image, pass, remove_old > 0);
    vmseal_secret_free(pass);
    if (idx == -ENOSPC) {
        reply_error(status, resp, 507, "%s", vmseal_last_error());
        return;
    }
    if (idx < 0) {
        reply_fail(status, resp, idx);
        return;
    }
    hlog(h, "VM %s: disk%d adopted from %s%s", hostd_vm_name(vm), idx, image,
         remove_old > 0 ? " (the user's passphrase removed)" : "");
    pthread_mutex_lock(&h->lock);
    json_t *out = vm_json_locked(h, vm);
    pthread_mutex_unlock(&h->lock);
    json_object_set_new(out, "disk", json_integer(idx));
    reply(status, resp, 201, out);
}

/* POST /v1/vms/{uuid}/disks {"size_mb": N} | {"from": IMAGE}: recorded in
 * vm.conf at once (400 for an image that cannot be imported, 507 for one
 * that does not fit on the datastore), made or imported by a task (202
 * task, with "disk": its index). {"adopt": ...}: api_adopt_disk. */
static void api_add_disk(hostd_host *h, hostd_vm *vm, const char *body, size_t len, int *status,
                         json_t **resp)
{
    json_t *j = parse_body(body, len, status, resp);
    if (!j)
        return;
    if (json_object_get(j, "adopt")) {
        api_adopt_disk(h, vm, j, status, resp);
        json_decref(j);
        return;
    }
    const char *from = NULL;
    json_int_t mb = 0;
    int r = get_opt_string(j, "from", &from);
    if (r == 0 && from && json_object_get(j, "size_mb"))
        r = vmseal_fail(EINVAL, "give size_mb or from, not both");
    else if (r == 0 && !from && !json_object_get(j, "size_mb"))
        r = vmseal_fail(EINVAL, "give size_mb or from");
    else if (r == 0 && !from)
        r = get_uint(j, "size_mb", 1, 1 << 20, 0, &mb);
    pthread_mutex_lock(&h->lock);
    if (r == 0 && running_task_locked(h, hostd_vm_uuid(vm)))
        r = vmseal_fail(EBUSY, "VM %s has a task running", hostd_vm_name(vm));
    pthread_mutex_unlock(&h->lock);
    uint64_t isize = 0;
    if (r == 0 && from && (r = hostd_vm_inspect_image(&h->env, from, &isize)) == 0)
        r = import_space_check(h, vm, from, isize);   /* room first: 507, not a task that fails */
    if (r == -ENOSPC) {
        json_decref(j);
        reply_error(status, resp, 507, "%s", vmseal_last_error());
        return;
    }
    int idx = r < 0 ? r : hostd_vm_add_disk(vm, &h->env, from, (uint64_t)mb << 20);
    task *t = NULL;
    json_t *tj = NULL;
    if (idx >= 0) {
        pthread_mutex_lock(&h->lock);
        r = start_task_locked(h, vm, "disk-add", NULL, &t);
        tj = r == 0 ? task_json(t) : NULL;
        pthread_mutex_unlock(&h->lock);
    } else {
        r = idx;
    }
    json_decref(j);
    if (r < 0) {
        reply_fail(status, resp, r);
        return;
    }
    hlog(h, "VM %s: disk%d added%s%s", hostd_vm_name(vm), idx, from ? " from " : "", from ? from : "");
    json_object_set_new(tj, "task_id", json_string(json_string_value(json_object_get(tj, "id"))));
    json_object_set_new(tj, "disk", json_integer(idx));
    reply(status, resp, 202, tj);
}

/* POST /v1/vms/{uuid}/disk-remove {"disk": N, "keep_file"?}: powered off;
 * 200 the VM. */
static void api_remove_disk(hostd_host *h, hostd_vm *vm, const char *body, size_t len, int *status,
                            json_t **resp)
{
    json_t *j = parse_body(body, len, status, resp);
    if (!j)
        return;
    json_int_t disk = 0;
    int keep = -1, r = 0;
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v)
        if (strcmp(key, "disk") && strcmp(key, "keep_file"))
            r = vmseal_fail(EINVAL, "unknown field '%.64s' (disk, keep_file)", key);
    if (r == 0 && !json_is_integer(json_object_get(j, "disk")))
        r = vmseal_fail(EINVAL, "field 'disk' (the disk's index) is required");
    if (r == 0)
        r = get_uint(j, "disk", 0, VMSEAL_VM_MAX_DISKS - 1, 0, &disk);
    if (r == 0)
        r = get_opt_bool(j, "keep_file", &keep);
    json_decref(j);
    pthread_mutex_lock(&h->lock);
    if (r == 0 && running_task_locked(h, hostd_vm_uuid(vm)))
        r = vmseal_fail(EBUSY, "VM %s has a task running", hostd_vm_name(vm));
    pthread_mutex_unlock(&h->lock);
    if (r == 0)
        r = hostd_vm_remove_disk(vm, (size_t)disk, keep > 0);
    if (r < 0) {
        reply_fail(status, resp, r);
        return;
    }
    hlog(h, "VM %s: disk%lld removed%s", hostd_vm_name(vm), (long long)disk, keep > 0 ? " (file kept)" : "");
    pthread_mutex_lock(&h->lock);
    json_t *out = vm_json_locked(h, vm);
    pthread_mutex_unlock(&h->lock);
    reply(status, resp, 200, out);
}

/* POST /v1/vms/{uuid}/clone {"name", "uuid", "kek_id"?, "deep"?}: the
 * powered-off VM cloned into a new VM of this host (hostd_vm_clone), done
 * before the answer (201, the clone); its progress is in the source's
 * hostd log. */
static int name_or_uuid_taken_locked(hostd_host *h, const char *name, const char *uuid)
{
    for (size_t i = 0; i < h->nvms; i++) {
        if (strcmp(hostd_vm_uuid(h->vms[i]), uuid) == 0)
            return vmseal_fail(EEXIST, "a VM with uuid %s exists already", uuid);
        if (strcmp(hostd_vm_name(h->vms[i]), name) == 0)
            return vmseal_fail(EEXIST, "a VM named %s exists already", name);
    }
    return 0;
}

static void api_clone_vm(hostd_host *h, hostd_vm *vm, const char *body, size_t len, int *status,
                         json_t **resp)
{
    json_t *j = parse_body(body, len, status, resp);
    if (!j)
        return;
    hostd_vm_clone_req req = {0};
    int r = 0, deep = -1;
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v)
        if (strcmp(key, "name") && strcmp(key, "uuid") && strcmp(key, "kek_id") && strcmp(key, "deep"))
            r = vmseal_fail(EINVAL, "unknown field '%.64s' (name, uuid, kek_id, deep)", key);
    if (r == 0)
        r = get_opt_string(j, "name", &req.name);
    if (r == 0)
        r = get_opt_string(j, "uuid", &req.uuid);
    if (r == 0)
        r = get_opt_string(j, "kek_id", &req.kek_id);
    if (r == 0)
        r = get_opt_bool(j, "deep", &deep);
    req.deep = deep > 0;
    if (r == 0 && (!req.name || !req.uuid))
        r = vmseal_fail(EINVAL, "name and uuid are required");
    pthread_mutex_lock(&h->lock);
    if (r == 0 && running_task_locked(h, hostd_vm_uuid(vm)))
        r = vmseal_fail(EBUSY, "VM %s has a task running", hostd_vm_name(vm));
    if (r == 0)
        r = name_or_uuid_taken_locked(h, req.name, req.uuid);
    pthread_mutex_unlock(&h->lock);
    hostd_vm *clone = NULL;
    if (r == 0) {
        hlog(h, "VM %s: cloning into %s (%s)", hostd_vm_name(vm), req.name, req.uuid);
        r = hostd_vm_clone(vm, &h->env, h->datastore, &req, NULL, &clone);
    }
    if (r < 0) {
        json_decref(j);
        if (r == -ENOKEY)
            reply_error(status, resp, 409, "%s", vmseal_last_error());
        else
            reply_fail(status, resp, r);
        return;
    }
    pthread_mutex_lock(&h->lock);
    r = name_or_uuid_taken_locked(h, req.name, req.uuid);
    if (r == 0)
        r = push((void ***)&h->vms, &h->nvms, &h->capvms, clone);
    if (r < 0) {
        pthread_mutex_unlock(&h->lock);
        hlog(h, "VM %s: its clone %s is on the datastore but not loaded: %s", hostd_vm_name(vm),
             req.name, vmseal_last_error());
        hostd_vm_free(clone);
        json_decref(j);
        reply_fail(status, resp, r);
        return;
    }
    hlog(h, "VM %s cloned into %s (%s)", hostd_vm_name(vm), req.name, req.uuid);
    json_t *out = vm_json_locked(h, clone);
    pthread_mutex_unlock(&h->lock);
    json_decref(j);
    reply(status, resp, 201, out);
}

static void api_vm_action(hostd_host *h, hostd_vm *vm, const char *action, const char *body,
                          size_t len, int *status, json_t **resp)
{
    int r;
    int on = strcmp(action, "power-on") == 0;
    int susp = strcmp(action, "suspend") == 0, discard = strcmp(action, "discard-state") == 0;
    if (on || susp || discard || strcmp(action, "power-off") == 0) {
        pthread_mutex_lock(&h->lock);
        task *t = running_task_locked(h, hostd_vm_uuid(vm));
        pthread_mutex_unlock(&h->lock);
        if (t) {
            reply_error(status, resp, 409, "VM %s has a task running (%s)", hostd_vm_name(vm), t->op);
            return;
        }
        if (on) {
            r = hostd_vm_power_on(vm, &h->env);
        } else if (susp || discard) {
            /* suspend: the memory state to a (sealed) file, QEMU ends;
             * discard-state: a suspended VM forgets it (hostd/vm.h) */
            r = susp ? hostd_vm_suspend(vm, &h->env) : hostd_vm_discard_state(vm);
        } else {
            json_t *j = parse_optional_body(body, len, status, resp);
            if (!j)
                return;
            json_int_t grace;
            r = get_uint(j, "grace_seconds", 0, 3600, h->grace_ms / 1000, &grace);
            json_decref(j);
            if (r == 0)
                r = hostd_vm_power_off(vm, (int)grace * 1000);
            if (r > 0)
                r = 0;
        }
        if (r < 0) {
            reply_fail(status, resp, r);
            return;
        }
        hlog(h, "VM %s %s", hostd_vm_name(vm),
             on ? "powered on" : susp ? "suspended" : discard ? "saved state discarded" : "powered off");
        pthread_mutex_lock(&h->lock);
        json_t *out = vm_json_locked(h, vm);
        pthread_mutex_unlock(&h->lock);
        reply(status, resp, 200, out);
        return;
    }
    if (strcmp(action, "export") == 0) {
        api_vm_export(h, vm, body, len, status, resp);
        return;
    }
    if (strcmp(action, "dump") == 0) {
        /* the guest's memory, sealed into the VM home (hostd/coredump.h) */
        hostd_coredump_result res;
        r = hostd_vm_dump(vm, &h->env, &res);
        if (r < 0) {
            reply_fail(status, resp, r);
            return;
        }
        hlog(h, "VM %s: memory dumped to %s", hostd_vm_name(vm), res.file);
        reply(status, resp, 200,
              json_pack("{s:s, s:b, s:I, s:I}", "file", res.file, "sealed", res.sealed, "bytes",
                        (json_int_t)res.bytes, "guest_bytes", (json_int_t)res.guest_bytes));
        return;
    }
    const char *op = NULL, *kek = NULL;
    json_t *j = NULL;
    if (strcmp(action, "encrypt") == 0) {
        j = parse_body(body, len, status, resp);
        if (!j)
            return;
        op = "encrypt";
        r = get_opt_string(j, "kek_id", &kek);
        if (r == 0 && !kek)
            r = vmseal_fail(EINVAL, "kek_id is required");
    } else if (strcmp(action, "decrypt") == 0) {
        op = "decrypt";
        r = 0;
    } else if (strcmp(action, "resume") == 0 || strcmp(action, "rollback") == 0) {
        /* finish, or undo, what vm.conf records as unfinished (a VM with
         * nothing unfinished: a task that does nothing) */
        op = strcmp(action, "resume") == 0 ? "resume" : "rollback";
        r = 0;
    } else if (strcmp(action, "cancel") == 0) {
        /* stop the task running on the VM at its next checkpoint; what it
         * did stays recorded (resume or roll back afterwards) */
        pthread_mutex_lock(&h->lock);
        task *rt = running_task_locked(h, hostd_vm_uuid(vm));
        if (rt)
            rt->cancel = 1;
        json_t *tj = rt ? task_json(rt) : NULL;
        pthread_mutex_unlock(&h->lock);
        if (rt)
            hlog(h, "task %s: %s of VM %s cancelled", json_string_value(json_object_get(tj, "id")),
                 json_string_value(json_object_get(tj, "operation")), hostd_vm_name(vm));
        reply(status, resp, rt ? 202 : 200, json_pack("{s:o}", "task", tj ? tj : json_null()));
        return;
    } else if (strcmp(action, "disks") == 0) {
        api_add_disk(h, vm, body, len, status, resp);
        return;
    } else if (strcmp(action, "clone") == 0) {
        api_clone_vm(h, vm, body, len, status, resp);
        return;
    } else if (strcmp(action, "disk-remove") == 0) {
        api_remove_disk(h, vm, body, len, status, resp);
        return;
    } else if (strcmp(action, "cdrom") == 0) {
        hostd_cdrom_api(&h->env, vm, body, len, status, resp);
        if (*status == 200)
            hlog(h, "VM %s: CD-ROM %s", hostd_vm_name(vm), json_string_value(json_object_get(*resp, "cdrom"))
                                                         ? "inserted" : "ejected");
        return;
    } else if (strcmp(action, "boot") == 0) {
        hostd_boot_api(vm, body, len, status, resp);
        return;
    } else if (strcmp(action, "recrypt") == 0) {
        j = parse_body(body, len, status, resp);
        if (!j)
            return;
        r = get_opt_string(j, "new_kek_id", &kek);
        json_t *deep = json_object_get(j, "deep");
        if (r == 0 && !kek)
            r = vmseal_fail(EINVAL, "new_kek_id is required");
        if (r == 0 && deep && !json_is_boolean(deep))
            r = vmseal_fail(EINVAL, "deep must be true or false");
        op = json_is_true(deep) ? "recrypt-deep" : "recrypt";
    } else {
        reply_error(status, resp, 404, "no such action %s", action);
        return;
    }
    if (r == 0 && kek && !vmseal_keysafe_kek_id_valid(kek))
        r = vmseal_fail(EINVAL, "invalid KEK id");
    if (r == 0 && kek && !hostd_keystore_has(h->env.keys, kek))
        r = vmseal_fail(ENOKEY, "KEK %s is not available on this host", kek);
    /* room first: a refusal is an answer (507, what it needs and what is
     * free), not a task that fails */
    if (r == 0 && strcmp(op, "rollback") != 0 && strcmp(op, "recrypt") != 0)
        r = hostd_vm_check_space(vm, &h->env, op);
    if (r == -ENOSPC) {
        json_decref(j);
        reply_error(status, resp, 507, "%s", vmseal_last_error());
        return;
    }
    task *t = NULL;
    if (r == 0) {
        pthread_mutex_lock(&h->lock);
        r = start_task_locked(h, vm, op, kek, &t);
        json_t *tj = r == 0 ? task_json(t) : NULL;
        pthread_mutex_unlock(&h->lock);
        if (r == 0) {
            json_object_set_new(tj, "task_id", json_string(json_string_value(json_object_get(tj, "id"))));
            reply(status, resp, 202, tj);
        }
    }
    json_decref(j);
    if (r < 0)
        reply_fail(status, resp, r);
}

/* POST /v1/vms/adopt {"name", "uuid"}: take the VM in <datastore>/<name>
 * into this host's list (a suspended VM another host that sees the same
 * datastore left, resumed here); a copy loaded before is read again, unless
 * it runs or has a task here. */
static void api_adopt_vm(hostd_host *h, const char *body, size_t len, int *status, json_t **resp)
{
    json_t *j = parse_body(body, len, status, resp);
    if (!j)
        return;
    const char *name = NULL, *uuid = NULL;
    int r = get_opt_string(j, "name", &name);
    if (r == 0)
        r = get_opt_string(j, "uuid", &uuid);
    if (r == 0 && (!name || !hostd_vm_name_valid(name)))
        r = vmseal_fail(EINVAL, "name must be a VM name");
    if (r == 0 && (!uuid || !vmseal_vmrec_uuid_valid(uuid)))
        r = vmseal_fail(EINVAL, "uuid must be a VM UUID (lower case)");
    hostd_vm *vm = NULL;
    if (r == 0) {
        char home[4096];
        snprintf(home, sizeof(home), "%s/%s", h->datastore, name);
        r = hostd_vm_load(home, &vm);
    }
    if (r == 0 && strcmp(hostd_vm_uuid(vm), uuid) != 0)
        r = vmseal_fail(EEXIST, "the VM in %s/%s is %s, not %s", h->datastore, name,
                        hostd_vm_uuid(vm), uuid);
    json_decref(j);   /* name and uuid point into it: from here on, the VM's own */
    if (r < 0) {
        hostd_vm_free(vm);
        reply_fail(status, resp, r);
        return;
    }
    uuid = hostd_vm_uuid(vm);
    pthread_mutex_lock(&h->lock);
    hostd_vm *old = find_vm_locked(h, uuid);
    for (size_t i = 0; i < h->nvms && r == 0; i++)
        if (h->vms[i] != old && strcmp(hostd_vm_name(h->vms[i]), hostd_vm_name(vm)) == 0)
            r = vmseal_fail(EEXIST, "another VM named %s is on this host", hostd_vm_name(vm));
    if (r == 0 && old && (running_task_locked(h, uuid) || hostd_vm_running(old)))
        r = vmseal_fail(EBUSY, "VM %s runs on this host (or has a task)", hostd_vm_name(vm));
    if (r == 0 && old) {
        for (size_t i = 0; i < h->nvms; i++)
            if (h->vms[i] == old)
                h->vms[i] = vm;
        if (push((void ***)&h->grave, &h->ngrave, &h->capgrave, old) < 0) {
            /* cannot park it: leak rather than free memory others may use */
        }
    } else if (r == 0) {
        r = push((void ***)&h->vms, &h->nvms, &h->capvms, vm);
    }
    if (r < 0) {
        pthread_mutex_unlock(&h->lock);
        hostd_vm_free(vm);
        reply_fail(status, resp, r);
        return;
    }
    json_t *out = vm_json_locked(h, vm);
    pthread_mutex_unlock(&h->lock);
    hlog(h, "adopted VM %s (%s) from the datastore%s", hostd_vm_name(vm), uuid,
         old ? " (read again)" : "");
    reply(status, resp, 200, out);
}

/* Drop a VM from the list, keeping its handle for tasks (lock held). */
static void forget_vm_locked(hostd_host *h, hostd_vm *vm)
{
    for (size_t i = 0; i < h->nvms; i++)
        if (h->vms[i] == vm) {
            memmove(&h->vms[i], &h->vms[i + 1], (h->nvms - i - 1) * sizeof(*h->vms));
            h->nvms--;
            if (push((void ***)&h->grave, &h->ngrave, &h->capgrave, vm) < 0) {
                /* cannot park it: leak rather than free memory others may use */
            }
            break;
        }
}

static void api_adopt_vm(hostd_host *h, const char *body, size_t len, int *status, json_t **resp);

/* POST /v1/vms/migrate-in {"name", "uuid", "spec": {key, nonce, listen,
 * peer}}: the destination of a live migration (hostd/migrate.h). Takes the
 * VM from the shared datastore (as adopt), starts its QEMU paused waiting
 * for the stream and the receiving relay; a task waits for the stream and
 * continues the guest. Answers the port the source sends to and the task.
 * When it fails, this host forgets the VM again. */
static void api_migrate_in(hostd_host *h, const char *body, size_t len, int *status, json_t **resp)
{
    json_t *j = parse_body(body, len, status, resp);
    if (!j)
        return;
    hostd_migrate_req rq;
    int r = hostd_migrate_req_parse(json_object_get(j, "spec"), 1, &rq);
    const char *uuid = json_string_value(json_object_get(j, "uuid"));
    char u[37] = "";
    if (r == 0 && (!uuid || !vmseal_vmrec_uuid_valid(uuid)))
        r = vmseal_fail(EINVAL, "uuid must be a VM UUID (lower case)");
    if (r == 0)
        hostd_copy_str(u, sizeof(u), uuid);
    json_t *ab = r == 0 ? json_pack("{s:O?, s:O?}", "name", json_object_get(j, "name"), "uuid",
                                    json_object_get(j, "uuid"))
                        : NULL;
    json_decref(j);   /* the key's text was wiped by the parse */
    if (r < 0) {
        reply_fail(status, resp, r);
        return;
    }
    /* a copy this host loaded from the shared datastore is read again;
     * one that runs here (or has a task) is refused (409) */
    char *abs = json_dumps(ab, JSON_COMPACT);
    json_decref(ab);
    int ast = 0;
    json_t *aresp = NULL;
    api_adopt_vm(h, abs, abs ? strlen(abs) : 0, &ast, &aresp);
    free(abs);
    if (ast != 200) {
        hostd_migrate_req_clear(&rq);
        *status = ast;
        *resp = aresp;
        return;
    }
    json_decref(aresp);
    pthread_mutex_lock(&h->lock);
    hostd_vm *vm = find_vm_locked(h, u);
    pthread_mutex_unlock(&h->lock);
    int port = 0;
    hostd_migration *m = NULL;
    char reason[300];
    if (!vm)
        r = vmseal_fail(ENOENT, "VM %s vanished", u);
    else if (hostd_vm_locked(vm, &h->env, reason, sizeof(reason)))
        r = vmseal_fail(ENOKEY, "VM %s is locked here: %s", hostd_vm_name(vm), reason);
    else
        r = hostd_vm_migrate_in_start(vm, &h->env, &rq, &port, &m);
    hostd_migrate_req_clear(&rq);
    task *t = NULL;
    json_t *tj = NULL;
    pthread_mutex_lock(&h->lock);
    if (r == 0) {
        r = start_task_locked(h, vm, "migrate-in", NULL, &t, m);
        if (r < 0)
            hostd_migrate_free(m);
        else
            tj = task_json(t);
    }
    if (r < 0 && vm)
        forget_vm_locked(h, vm);
    pthread_mutex_unlock(&h->lock);
    if (r < 0) {
        if (vm && hostd_vm_running(vm))
            (void)hostd_vm_power_off(vm, 0);
        reply_fail(status, resp, r);
        return;
    }
    hlog(h, "VM %s: receiving a migration on port %d", hostd_vm_name(vm), port);
    reply(status, resp, 202, json_pack("{s:s, s:i, s:o}", "uuid", u, "port", port, "task", tj));
}

/* POST /v1/vms/{uuid}/migrate-out {"spec": {key, nonce, dest}}: the source
 * of a live migration, as a task (progress: RAM sent). */
static void api_migrate_out(hostd_host *h, hostd_vm *vm, const char *body, size_t len, int *status,
                            json_t **resp)
{
    json_t *j = parse_body(body, len, status, resp);
    if (!j)
        return;
    hostd_migrate_req rq;
    int r = hostd_migrate_req_parse(json_object_get(j, "spec"), 0, &rq);
    json_decref(j);
    if (r == 0 && !hostd_vm_running(vm))
        r = vmseal_fail(EALREADY, "VM %s is not powered on", hostd_vm_name(vm));
    if (r == 0 && hostd_vm_has_tpm(vm))
        r = vmseal_fail(EBUSY, "VM %s has a vTPM: live migration of its state is not supported",
                        hostd_vm_name(vm));
    task *t = NULL;
    json_t *tj = NULL;
    if (r == 0) {
        pthread_mutex_lock(&h->lock);
        r = start_task_locked(h, vm, "migrate-out", NULL, &t, &rq);
        if (r == 0)
            tj = task_json(t);
        pthread_mutex_unlock(&h->lock);
    }
    hostd_migrate_req_clear(&rq);   /* the task has its own (moved) */
    if (r < 0) {
        reply_fail(status, resp, r);
        return;
    }
    json_object_set_new(tj, "task_id", json_string(json_string_value(json_object_get(tj, "id"))));
    reply(status, resp, 202, tj);
}

/* POST /v1/vms/{uuid}/migrate-end {"completed": bool}: the source, after
 * the manager saw the destination run the guest (its QEMU here ends and
 * this host forgets the VM), or not (the guest continues here).
 * {"completed": true, "destination": true}: the destination, once the
 * source's QEMU ended: its sealed console log, held in memory until then,
 * is written in its own segment from now on. */
static void api_migrate_end(hostd_host *h, hostd_vm *vm, const char *body, size_t len,
                            int *status, json_t **resp)
{
    json_t *j = parse_body(body, len, status, resp);
    if (!j)
        return;
    json_t *c = json_object_get(j, "completed");
    int r = json_is_boolean(c) ? 0 : vmseal_fail(EINVAL, "completed must be true or false");
    int done = json_is_true(c);
    int dest = json_is_true(json_object_get(j, "destination"));
    json_decref(j);
    if (r == 0 && dest) {
        /* the destination, told that the source's run ended: its console
         * log goes on in its own segment */
        if (done && hostd_vm_console_held(vm))
            r = hostd_vm_console_release(vm, &h->env);
        if (r < 0)
            reply_fail(status, resp, r);
        else
            reply(status, resp, 200, json_pack("{s:s, s:b}", "uuid", hostd_vm_uuid(vm), "released", 0));
        return;
    }
    pthread_mutex_lock(&h->lock);
    if (r == 0 && running_task_locked(h, hostd_vm_uuid(vm)))
        r = vmseal_fail(EBUSY, "VM %s has a task running", hostd_vm_name(vm));
    pthread_mutex_unlock(&h->lock);
    if (r == 0)
        r = hostd_vm_migrate_out_end(vm, done);
    if (r == 0 && done) {
        pthread_mutex_lock(&h->lock);
        forget_vm_locked(h, vm);
        pthread_mutex_unlock(&h->lock);
        hlog(h, "VM %s migrated away (its files stay on the datastore)", hostd_vm_name(vm));
    }
    if (r < 0) {
        reply_fail(status, resp, r);
        return;
    }
    reply(status, resp, 200, json_pack("{s:s, s:b}", "uuid", hostd_vm_uuid(vm), "released", done));
}

/* POST /v1/vms/{uuid}/release: forget a VM that does not run here (another
 * host resumes it from the shared datastore); its files stay. */
static void api_release_vm(hostd_host *h, hostd_vm *vm, int *status, json_t **resp)
{
    pthread_mutex_lock(&h->lock);
    int r = 0;
    if (running_task_locked(h, hostd_vm_uuid(vm)) || hostd_vm_running(vm))
        r = vmseal_fail(EBUSY, "VM %s runs on this host (or has a task)", hostd_vm_name(vm));
    for (size_t i = 0; r == 0 && i < h->nvms; i++)
        if (h->vms[i] == vm) {
            memmove(&h->vms[i], &h->vms[i + 1], (h->nvms - i - 1) * sizeof(*h->vms));
            h->nvms--;
            if (push((void ***)&h->grave, &h->ngrave, &h->capgrave, vm) < 0) {
                /* cannot park it: leak rather than free memory others may use */
            }
            break;
        }
    pthread_mutex_unlock(&h->lock);
    if (r < 0) {
        reply_fail(status, resp, r);
        return;
    }
    hlog(h, "released VM %s (its files stay on the datastore)", hostd_vm_name(vm));
    reply(status, resp, 200, json_pack("{s:s, s:b}", "uuid", hostd_vm_uuid(vm), "released", 1));
}

static void api_delete_vm(hostd_host *h, hostd_vm *vm, int *status, json_t **resp)
{
    pthread_mutex_lock(&h->lock);
    if (running_task_locked(h, hostd_vm_uuid(vm))) {
        pthread_mutex_unlock(&h->lock);
        reply_error(status, resp, 409, "VM %s has a task running", hostd_vm_name(vm));
        return;
    }
    int r = hostd_vm_destroy(vm);
    if (r == 0) {
        for (size_t i = 0; i < h->nvms; i++)
            if (h->vms[i] == vm) {
                memmove(&h->vms[i], &h->vms[i + 1], (h->nvms - i - 1) * sizeof(*h->vms));
                h->nvms--;
                break;
            }
        if (push((void ***)&h->grave, &h->ngrave, &h->capgrave, vm) < 0) {
            /* cannot park it: leak rather than free memory others may use */
        }
    }
    pthread_mutex_unlock(&h->lock);
    if (r < 0) {
        reply_fail(status, resp, r);
        return;
    }
    hlog(h, "deleted VM %s", hostd_vm_name(vm));
    reply(status, resp, 204, NULL);
}

static void api_reconfigure(hostd_host *h, hostd_vm *vm, const char *body, size_t len,
                            int *status, json_t **resp)
{
    json_t *j = parse_body(body, len, status, resp);
    if (!j)
        return;
    json_int_t cpus, mem;
    const char *kernel, *initrd, *append;
    int r = get_uint(j, "cpus", 1, 64, 0, &cpus);
    if (r == 0)
        r = get_uint(j, "memory_mb", 16, 65536, 0, &mem);
    if (r == 0)
        r = get_opt_string(j, "kernel", &kernel);
    if (r == 0)
        r = get_opt_string(j, "initrd", &initrd);
    if (r == 0)
        r = get_opt_string(j, "append", &append);
    int tpm = -1;
    if (r == 0)
        r = get_opt_bool(j, "tpm", &tpm);
    if (r == 0)
        r = hostd_vm_reconfigure(vm, &h->env, (unsigned)cpus, (unsigned)mem, kernel, initrd, append);
    if (r == 0 && tpm >= 0)
        r = hostd_vm_set_tpm(vm, tpm);
    json_decref(j);
    if (r < 0) {
        reply_fail(status, resp, r);
        return;
    }
    pthread_mutex_lock(&h->lock);
    json_t *out = vm_json_locked(h, vm);
    pthread_mutex_unlock(&h->lock);
    reply(status, resp, 200, out);
}

static const char *after(const char *path, const char *prefix);

/* GET /v1/vms/{uuid}/log?tail=N: the guest's serial console. */
static void api_vm_log(hostd_host *h, hostd_vm *vm, const char *query, int *status, json_t **resp)
{
    size_t tail = VMSEAL_CONSOLE_TAIL_DEFAULT;
    if (query && *query) {
        const char *v = after(query, "tail=");
        size_t n = v ? strlen(v) : 0;
        if (!v || n == 0 || n > 12 || strspn(v, "0123456789") != n) {
            reply_error(status, resp, 400, "the only query parameter is tail=N (bytes, 0 to %u)",
                        VMSEAL_CONSOLE_TAIL_MAX);
            return;
        }
        unsigned long long t = strtoull(v, NULL, 10);
        tail = t > VMSEAL_CONSOLE_TAIL_MAX ? VMSEAL_CONSOLE_TAIL_MAX : (size_t)t;
    }
    uint8_t *raw = NULL;
    size_t len = 0;
    uint64_t total = 0;
    int enc = 0;
    int r = hostd_vm_serial_log(vm, &h->env, tail, &raw, &len, &total, &enc);
    if (r < 0) {
        switch (-r) {
        case ENOKEY:
        case EBUSY:
            reply_error(status, resp, 409, "%s", vmseal_last_error());
            break;
        case EPROTO:
        case EBADMSG:
        case ENOTSUP:
        case ELOOP:
        case E2BIG:
            hlog(h, "VM %s: serial log damaged: %s", hostd_vm_name(vm), vmseal_last_error());
            reply_error(status, resp, 422, "serial log damaged: %s", vmseal_last_error());
            break;
        default:
            reply_fail(status, resp, r);
        }
        return;
    }
    size_t tlen = 0;
    char *txt = hostd_console_utf8(raw, len, total > len, &tlen);
    hostd_console_text_free(raw, len);
    json_t *j = txt ? json_stringn(txt, tlen) : NULL;
    hostd_console_text_free(txt, tlen);
    if (!j) {
        reply_error(status, resp, 500, "out of memory");
        return;
    }
    /* jansson's copy is wiped when freed (vmseal_json_wipe_on_free) */
    reply(status, resp, 200, json_pack("{s:o, s:b, s:I}", "log", j, "encrypted", enc, "bytes",
                                       (json_int_t)total));
}

static const char *after(const char *path, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(path, prefix, n) == 0 ? path + n : NULL;
}

/* ------------------------------------------------ host encryption mode */

static int encrypted_vms_locked(hostd_host *h)
{
    int n = 0;
    for (size_t i = 0; i < h->nvms; i++)
        n += hostd_vm_encrypted(h->vms[i]) ? 1 : 0;
    return n;
}

/* As in vSphere, an encrypted VM on the host turns the mode on (when the
 * host has a core_dump_key). */
static void hostmode_auto(hostd_host *h)
{
    pthread_mutex_lock(&h->lock);
    if (h->hostmode && h->hostmode->configured && !h->hostmode->enabled &&
        encrypted_vms_locked(h) > 0) {
        if (hostd_hostmode_enable(h->hostmode) < 0)
            hlog(h, "host encryption mode: cannot enable it for the encrypted VMs: %s",
                 vmseal_last_error());
        else
            hlog(h, "host encryption mode enabled: an encrypted VM is on the host (core_pattern %s%s)",
                 h->hostmode->pattern, h->hostmode->installed ? "" : ", NOT installed");
    }
    pthread_mutex_unlock(&h->lock);
}

/* GET / PUT /v1/host/encryption-mode {"enabled": bool} */
static void api_hostmode(hostd_host *h, const char *method, const char *body, size_t len,
                         int *status, json_t **resp)
{
    int put = strcmp(method, "PUT") == 0;
    if (!put && strcmp(method, "GET") != 0) {
        reply_error(status, resp, 405, "use GET or PUT");
        return;
    }
    int want = -1;
    if (put) {
        json_t *b = parse_body(body, len, status, resp);
        if (!b)
            return;
        json_t *e = json_object_get(b, "enabled");
        if (json_object_size(b) != 1 || !json_is_boolean(e)) {
            json_decref(b);
            reply_error(status, resp, 400, "the body is {\"enabled\": true|false}");
            return;
        }
        want = json_is_true(e);
        json_decref(b);
    }
    pthread_mutex_lock(&h->lock);
    int nenc = encrypted_vms_locked(h), r = 0, was = h->hostmode && h->hostmode->enabled;
    if (want == 1) {
        r = h->hostmode ? hostd_hostmode_enable(h->hostmode)
                        : vmseal_fail(ENOKEY, "host encryption mode is not available on this host");
    } else if (want == 0 && was && nenc > 0) {
        r = vmseal_fail(EBUSY, "host encryption mode stays on while encrypted VMs are on the host "
                               "(%d)", nenc);
    } else if (want == 0 && h->hostmode) {
        r = hostd_hostmode_disable(h->hostmode);
    }
    json_t *j = NULL;
    if (r == 0) {
        j = hostd_hostmode_json(h->hostmode);
        json_object_set_new(j, "configurable", json_boolean(h->hostmode && h->hostmode->configured));
        json_object_set_new(j, "encrypted_vms", json_integer(nenc));
    }
    int now = h->hostmode && h->hostmode->enabled;
    pthread_mutex_unlock(&h->lock);
    if (r < 0) {
        if (r == -ENOKEY || r == -EBUSY)
            reply_error(status, resp, 409, "%s", vmseal_last_error());
        else
            reply_fail(status, resp, r);
        return;
    }
    if (put && now != was)
        hlog(h, "host encryption mode %s through the API", now ? "enabled" : "disabled");
    reply(status, resp, 200, j);
}

void hostd_host_handle(hostd_host *h, const char *method, const char *full_path,
                        const char *body, size_t body_len, const char *peer_subject, int *status,
                        json_t **resp)
{
    *status = 500;
    *resp = NULL;
    vmseal_clear_error();
    /* "/v1/vms/{uuid}/log?query": the only path with a query (tail=N);
     * anywhere else '?' is part of the path (a KEK id may hold one). */
    char path[1024];
    const char *query = NULL;
    size_t plen = strcspn(full_path, "?");
    if (full_path[plen] != '?' || plen < 12 || strncmp(full_path, "/v1/vms/", 8) != 0 ||
        strncmp(full_path + plen - 4, "/log", 4) != 0)
        plen = strlen(full_path);
    if (plen >= sizeof(path)) {
        reply_error(status, resp, 404, "no such endpoint");
        return;
    }
    memcpy(path, full_path, plen);
    path[plen] = '\0';
    if (full_path[plen] == '?')
        query = full_path + plen + 1;
    if (h->allowed_subject && (!peer_subject || strcmp(peer_subject, h->allowed_subject) != 0)) {
        reply_error(status, resp, 403, "client certificate %s is not the manager's",
                    peer_subject && *peer_subject ? peer_subject : "(none)");
        return;
    }
    int get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    int put = strcmp(method, "PUT") == 0, del = strcmp(method, "DELETE") == 0;
    const char *rest;

    if (strcmp(path, "/v1/host") == 0 && get) {
        pthread_mutex_lock(&h->lock);
        uint8_t pub[VMSEAL_KD_PUB_LEN];
        char pub64[64];
        vmseal_kd_public(h->custody, pub);
        if (vmseal_kd_b64(pub, sizeof(pub), pub64, sizeof(pub64)) < 0)
            pub64[0] = '\0';
        json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:i, s:s}", "name", h->name, "datastore",
                              h->datastore, "accel",
                              h->env.accel == VMSEAL_ACCEL_KVM ? "kvm" : "tcg", "vms", (int)h->nvms,
                              "keks", (int)hostd_keystore_count(h->env.keys), "custody_key", pub64);
        json_object_set_new(j, "network", hostd_vmnet_config_json(&h->net));
        json_object_set_new(j, "encryption_mode", hostd_hostmode_json(h->hostmode));
        pthread_mutex_unlock(&h->lock);
        reply(status, resp, 200, j);
        return;
    }
    if ((rest = after(path, "/v1/keys/")) != NULL && *rest) {
        if (put) {
            api_put_key(h, rest, body, body_len, status, resp);
        } else if (del) {
            int r = hostd_keystore_delete(h->env.keys, rest);
            if (r < 0)
                reply_error(status, resp, 404, "KEK %s is not on this host", rest);
            else {
                hlog(h, "KEK %s removed from memory", rest);
                reply(status, resp, 204, NULL);
            }
        } else {
            reply_error(status, resp, 405, "use PUT or DELETE");
        }
        return;
    }
    if (strcmp(path, "/v1/keys") == 0 && get) {
        json_t *ids = hostd_host_kek_ids(h), *held = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(ids, i, v)
            if (hostd_keystore_has(h->env.keys, json_string_value(v)))
                json_array_append(held, v);
        /* needed: every KEK a VM's configuration here names (key safes,
         * pending operations), held or not: the manager destroys no KEK a
         * host still lists */
        reply(status, resp, 200, json_pack("{s:o, s:o, s:i}", "needed", ids, "needed_and_held", held, "count",
                                           (int)hostd_keystore_count(h->env.keys)));
        return;
    }
    if (strcmp(path, "/v1/vms") == 0) {
        if (get) {
            json_t *arr = json_array();
            pthread_mutex_lock(&h->lock);
            for (size_t i = 0; i < h->nvms; i++)
                json_array_append_new(arr, vm_json_locked(h, h->vms[i]));
            pthread_mutex_unlock(&h->lock);
            reply(status, resp, 200, json_pack("{s:o}", "vms", arr));
        } else if (post) {
            api_create_vm(h, body, body_len, status, resp);
            if (*status >= 200 && *status < 300)
                hostmode_auto(h);
        } else {
            reply_error(status, resp, 405, "use GET or POST");
        }
        return;
    }
    if (strcmp(path, "/v1/vms/migrate-in") == 0 && post) {
        api_migrate_in(h, body, body_len, status, resp);
        return;
    }
    if (strcmp(path, "/v1/vms/adopt") == 0 && post) {
        api_adopt_vm(h, body, body_len, status, resp);
        if (*status >= 200 && *status < 300)
            hostmode_auto(h);
        return;
    }
    if (strcmp(path, "/v1/host/encryption-mode") == 0) {
        api_hostmode(h, method, body, body_len, status, resp);
        return;
    }
    if ((rest = after(path, "/v1/vms/")) != NULL) {
        char uuid[64];
        const char *slash = strchr(rest, '/');
        size_t ul = slash ? (size_t)(slash - rest) : strlen(rest);
        if (ul == 0 || ul >= sizeof(uuid)) {
            reply_error(status, resp, 404, "no such VM");
            return;
        }
        memcpy(uuid, rest, ul);
        uuid[ul] = '\0';
        pthread_mutex_lock(&h->lock);
        hostd_vm *vm = find_vm_locked(h, uuid);
        pthread_mutex_unlock(&h->lock);
        if (!vm) {
            reply_error(status, resp, 404, "no VM %s on this host", uuid);
            return;
        }
        if (slash && strncmp(slash + 1, "nics", 4) == 0 && (!slash[5] || slash[5] == '/')) {
            /* NICs (hostd/nic.c): under the host's lock, MACs and forwarded
             * ports are picked unique among its VMs */
            pthread_mutex_lock(&h->lock);
            hostd_nic_api(&h->env, vm, h->vms, h->nvms, method, slash + 5, body, body_len,
                          status, resp);
            pthread_mutex_unlock(&h->lock);
            if (*status < 300 && !get)
                hlog(h, "VM %s: NIC %s", hostd_vm_name(vm), post ? "added" : "removed");
            return;
        }
        if (slash && strncmp(slash + 1, "snapshots", 9) == 0 &&
            (!slash[10] || slash[10] == '/')) {
            /* snapshots (hostd/snapshot.c) */
            pthread_mutex_lock(&h->lock);
            task *st = running_task_locked(h, hostd_vm_uuid(vm));
            pthread_mutex_unlock(&h->lock);
            if (st && !get) {
                reply_error(status, resp, 409, "VM %s has a task running (%s)",
                            hostd_vm_name(vm), st->op);
                return;
            }
            hostd_snapshot_api(&h->env, vm, method, slash + 10, body, body_len, status, resp);
            if (*status < 300 && !get)
                hlog(h, "VM %s: snapshot %s", hostd_vm_name(vm),
                     post ? (strstr(slash + 10, "/revert") ? "reverted" : "taken") : "removed");
            return;
        }
        if (slash && strcmp(slash + 1, "log") == 0) {
            if (get)
                api_vm_log(h, vm, query, status, resp);
            else
                reply_error(status, resp, 405, "use GET");
            return;
        }
        if (!slash) {
            if (get) {
                pthread_mutex_lock(&h->lock);
                json_t *j = vm_json_locked(h, vm);
                pthread_mutex_unlock(&h->lock);
                reply(status, resp, 200, j);
            } else if (del) {
                api_delete_vm(h, vm, status, resp);
            } else if (strcmp(method, "PATCH") == 0) {
                api_reconfigure(h, vm, body, body_len, status, resp);
            } else {
                reply_error(status, resp, 405, "use GET, PATCH or DELETE");
            }
            return;
        }
        if (!post) {
            reply_error(status, resp, 405, "use POST");
            return;
        }
        if (strcmp(slash + 1, "release") == 0)
            api_release_vm(h, vm, status, resp);
        else if (strcmp(slash + 1, "migrate-out") == 0)
            api_migrate_out(h, vm, body, body_len, status, resp);
        else if (strcmp(slash + 1, "migrate-end") == 0)
            api_migrate_end(h, vm, body, body_len, status, resp);
        else
            api_vm_action(h, vm, slash + 1, body, body_len, status, resp);
        return;
    }
    if ((rest = after(path, "/v1/tasks/")) != NULL && get) {
        pthread_mutex_lock(&h->lock);
        json_t *j = NULL;
        for (size_t i = 0; i < h->ntasks && !j; i++)
            if (strcmp(h->tasks[i]->id, rest) == 0)
                j = task_json(h->tasks[i]);
        pthread_mutex_unlock(&h->lock);
        if (j)
            reply(status, resp, 200, j);
        else
            reply_error(status, resp, 404, "no task %s", rest);
        return;
    }
    if (strcmp(path, "/v1/tasks") == 0 && get) {
        json_t *arr = json_array();
        pthread_mutex_lock(&h->lock);
        for (size_t i = 0; i < h->ntasks; i++)
            json_array_append_new(arr, task_json(h->tasks[i]));
        pthread_mutex_unlock(&h->lock);
        reply(status, resp, 200, json_pack("{s:o}", "tasks", arr));
        return;
    }
    reply_error(status, resp, 404, "no such endpoint %s %s", method, path);
}
