/* vmseal-managerd — what a host's view of a VM means for a task of the
 * manager: pure functions, no I/O (tasks.c does the calls and the writes;
 * tests/managerd/test_reconcile.c drives the table below).
 *
 * A task is an intent the manager recorded before it asked the host
 * (docs/architecture.md, "Intents and reconciliation"). The host's vm.conf
 * says how far the operation got, as one of four phases:
 *
 *   action           before                 after                  partial (unfinished)
 *   encrypt K        plain, no op           encrypted under K      op encrypt, op.kek K
 *   decrypt (old O)  encrypted under O      plain, no op           op decrypt, under O
 *   recrypt-shallow  encrypted under O      encrypted under K      (never: one commit)
 *   recrypt-deep     encrypted under O      encrypted under K      op recrypt-deep, op.kek K, under O
 *
 * Anything else is "other": the VM was changed by something else than this
 * task, and the task cannot continue. The intent says which way to go; the
 * host's vm.conf says where the VM is; the step is the difference.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "managerd.h"

static void copy(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src ? src : "");
}

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

int host_view_parse(const json_t *vm, host_view *v)
{
    memset(v, 0, sizeof(*v));
    if (!json_is_object(vm))
        return vmseal_fail(EPROTO, "the host's answer is not a VM");
    v->found = 1;
    v->encrypted = json_is_true(json_object_get(vm, "encrypted"));
    copy(v->kek, sizeof(v->kek), jstr(vm, "kek_id"));
    copy(v->op, sizeof(v->op), jstr(vm, "pending_operation"));
    copy(v->op_kek, sizeof(v->op_kek), jstr(vm, "pending_kek"));
    const char *ps = jstr(vm, "power_state");
    v->power_on = ps && !strcmp(ps, "on");
    v->locked = json_is_true(json_object_get(vm, "locked"));
    copy(v->locked_reason, sizeof(v->locked_reason), jstr(vm, "locked_reason"));
    const json_t *t = json_object_get(vm, "task");
    if (json_is_object(t)) {
        v->task_running = 1;
        copy(v->task_op, sizeof(v->task_op), jstr(t, "operation"));
        copy(v->task_id, sizeof(v->task_id), jstr(t, "id"));
        v->task_progress = (int)json_integer_value(json_object_get(t, "progress"));
    }
    t = json_object_get(vm, "last_task");
    if (json_is_object(t)) {
        v->last = 1;
        copy(v->last_op, sizeof(v->last_op), jstr(t, "operation"));
        copy(v->last_id, sizeof(v->last_id), jstr(t, "id"));
        copy(v->last_state, sizeof(v->last_state), jstr(t, "state"));
        copy(v->last_error, sizeof(v->last_error), jstr(t, "error"));
        v->last_errno = (int)json_integer_value(json_object_get(t, "errno"));
        v->last_rolled_back = json_is_true(json_object_get(t, "rolled_back"));
    }
    return 0;
}

void host_view_summary(const host_view *v, char *buf, size_t len)
{
    if (!v->found)
        snprintf(buf, len, "absent");
    else
        snprintf(buf, len, "%s%s%s%s%s%s", v->encrypted ? "encrypted under " : "not encrypted",
                 v->encrypted ? v->kek : "", v->op[0] ? ", unfinished " : "", v->op,
                 v->op_kek[0] ? " to " : "", v->op_kek);
}

static int same(const char *a, const char *b)
{
    return a && b && *a && !strcmp(a, b);
}

task_phase task_phase_of(const char *action, const char *old_kek, const char *new_kek,
                         const host_view *v)
{
    int op = v->op[0] != 0;
    if (!strcmp(action, "import")) {
        /* a disk imported (or added) by the host: vm.conf records an
         * unfinished create until it is done; the manager follows it from
         * the host's answer on, so there is no "before" */
        if (op)
            return !strcmp(v->op, "create") ? PHASE_PARTIAL : PHASE_OTHER;
        return PHASE_AFTER;
    }
    if (!strcmp(action, "encrypt")) {
        if (op)
            return !strcmp(v->op, "encrypt") && same(v->op_kek, new_kek) ? PHASE_PARTIAL : PHASE_OTHER;
        if (!v->encrypted)
            return PHASE_BEFORE;
        return same(v->kek, new_kek) ? PHASE_AFTER : PHASE_OTHER;
    }
    if (!strcmp(action, "decrypt")) {
        if (op)
            return !strcmp(v->op, "decrypt") && v->encrypted && same(v->kek, old_kek) ? PHASE_PARTIAL
                                                                                       : PHASE_OTHER;
        if (!v->encrypted)
            return PHASE_AFTER;
        return same(v->kek, old_kek) ? PHASE_BEFORE : PHASE_OTHER;
    }
    if (!strcmp(action, "recrypt-shallow") || !strcmp(action, "recrypt-deep")) {
        int deep = !strcmp(action, "recrypt-deep");
        if (op)
            return deep && !strcmp(v->op, "recrypt-deep") && same(v->op_kek, new_kek) &&
                           v->encrypted && same(v->kek, old_kek)
                       ? PHASE_PARTIAL
                       : PHASE_OTHER;
        if (!v->encrypted)
            return PHASE_OTHER;
        if (same(v->kek, new_kek))
            return PHASE_AFTER;
        return same(v->kek, old_kek) ? PHASE_BEFORE : PHASE_OTHER;
    }
    return PHASE_OTHER;
}

const char *task_phase_name(task_phase p)
{
    static const char *const n[] = {"before", "after", "partial", "other"};
    return (unsigned)p < 4 ? n[p] : "?";
}

/* Failures worth trying again: the host stopped (cancelled by its
 * shutdown), a key not there yet, busy, I/O or a peer that went away.
 * Anything else (no room, a key safe that does not open, a bad vm.conf,
 * a symlink where a file goes...) will fail the same way again. */
int task_errno_retryable(int e)
{
    switch (e < 0 ? -e : e) {
    case ECANCELED:
    case ENOKEY:
    case EBUSY:
    case EIO:
    case EAGAIN:
    case EINTR:
    case ETIMEDOUT:
    case EREMOTEIO:
    case ENOMEM:
    case EPIPE:
    case ECONNRESET:
    case ECONNREFUSED:
    case EHOSTUNREACH:
        return 1;
    default:
        return 0;
    }
}

/* The operations a host task runs for a task of `action` going forward. */
static int forward_op(const char *action, const char *host_op)
{
    if (!strcmp(host_op, "resume"))
        return 1;
    if (!strcmp(action, "recrypt-shallow"))
        return !strcmp(host_op, "recrypt");
    if (!strcmp(action, "import"))
        return !strcmp(host_op, "disk-add") || !strcmp(host_op, "import");
    return !strcmp(action, host_op);
}

static void step(task_step *s, task_step_kind k, const char *fmt, ...) VMSEAL_PRINTF(3, 4);
static void step(task_step *s, task_step_kind k, const char *fmt, ...)
{
    s->kind = k;
    s->why[0] = '\0';
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->why, sizeof(s->why), fmt, ap);
        va_end(ap);
    }
}

/* Is the host's last ended task the one the manager started last (so its
 * failure is the answer to it)? A failure from before a resume is not. */
static int last_is_ours(const task_facts *t, const host_view *v)
{
    return v->last && t->host_task && *t->host_task && !strcmp(v->last_id, t->host_task);
}

/* Going forward and the host runs nothing for the VM: try again (when due
 * and tries are left) or give up: a VM the operation changed is rolled
 * back, one it did not change ends the task. */
static void forward_again(const task_facts *t, const host_view *v, const task_rules *r,
                          task_phase ph, task_step *out)
{
    int failed = last_is_ours(t, v) && !strcmp(v->last_state, "error") && strcmp(v->last_op, "rollback");
    const char *err = failed && v->last_error[0] ? v->last_error
                      : ph == PHASE_BEFORE ? "the host has no trace of the operation (restarted?)"
                                           : "the operation stopped on the host (restarted?)";
    /* the host may have rolled it back itself (out of room) */
    /* an unfinished create is not rolled back (the host resumes it): an
     * import that gives up fails and keeps its partial disk */
    task_step_kind give_up = ph == PHASE_PARTIAL && strcmp(t->action, "import") ? STEP_ROLLBACK
                             : failed && v->last_rolled_back ? STEP_ROLLED_BACK : STEP_FAIL;
    if (failed && v->last_errno && !task_errno_retryable(v->last_errno)) {
        step(out, give_up, "%s", err);
        return;
    }
    if (t->attempts >= r->retries) {
        step(out, give_up, "gave up after %d attempts: %s", t->attempts, err);
        return;
    }
    if (t->now_ms < t->next_try_ms) {
        step(out, STEP_WAIT, "waiting to try again: %s", err);
        return;
    }
    step(out, STEP_RETRY, "%s", err);
}

/* Going back (cancelling, rolling back) and the host runs nothing for the
 * VM, which still has the unfinished operation: ask the host to roll it
 * back, or give up and wait for the user. */
static void backward_again(const task_facts *t, const host_view *v, const task_rules *r,
                           task_step *out)
{
    int failed = last_is_ours(t, v) && !strcmp(v->last_op, "rollback") && !strcmp(v->last_state, "error");
    const char *err = failed && v->last_error[0] ? v->last_error : "the rollback did not complete";
    if (failed && v->last_errno && !task_errno_retryable(v->last_errno)) {
        step(out, STEP_BLOCK, "the host cannot roll it back: %s", err);
        return;
    }
    if (t->attempts >= r->retries) {
        step(out, STEP_BLOCK, "gave up rolling back after %d attempts: %s", t->attempts, err);
        return;
    }
    if (t->now_ms < t->next_try_ms) {
        step(out, STEP_WAIT, "waiting to try the rollback again: %s", err);
        return;
    }
    step(out, STEP_HOST_ROLLBACK, "%s", t->attempts ? err : "rolling back what the operation did");
}

void task_decide(const task_facts *t, const host_view *v, const task_rules *r, task_step *out)
{
    int pending = !strcmp(t->state, "pending");
    int back = !strcmp(t->state, "cancelling") || !strcmp(t->state, "rolling-back");
    int blocked = !strcmp(t->state, "blocked");
    if (!v->found) {
        step(out, STEP_GONE, "the VM is gone from its host");
        return;
    }
    task_phase ph = task_phase_of(t->action, t->old_kek, t->new_kek, v);
    if (v->task_running) {
        int rolling = !strcmp(v->task_op, "rollback");
        if (back) {
            if (rolling)
                step(out, STEP_PROGRESS, NULL);
            else
                step(out, STEP_HOST_CANCEL, "the host still runs %s: stopping it", v->task_op);
            return;
        }
        if (blocked || rolling) {
            step(out, STEP_WAIT, "the host runs %s on the VM", v->task_op);
            return;
        }
        if (!forward_op(t->action, v->task_op)) {
            step(out, STEP_WAIT, "the host runs another operation (%s) on the VM", v->task_op);
            return;
        }
        if (ph == PHASE_OTHER) {
            step(out, STEP_WAIT, "the host runs %s on a VM that is %s", v->task_op,
                 task_phase_name(ph));
            return;
        }
        step(out, pending ? STEP_ADOPT : STEP_PROGRESS, pending ? "the host had started it" : NULL);
        return;
    }
    char seen[400];
    host_view_summary(v, seen, sizeof(seen));
    switch (ph) {
    case PHASE_AFTER:
        step(out, STEP_SUCCESS, back ? "it had finished before it could be stopped"
                                : pending ? "the host had done it" : NULL);
        return;
    case PHASE_OTHER:
        step(out, STEP_DIVERGED, "the VM changed on its host: it is %s", seen);
        return;
    case PHASE_PARTIAL:
        if (back && !strcmp(t->action, "import")) {
            /* the host's task stopped at a window's end: cancelled, the
             * partial disk kept for a resume (task resume, or the host's
             * own after a restart) */
            step(out, STEP_ROLLED_BACK, "stopped; the partial import is kept (vmseal task resume)");
            return;
        }
        if (back) {
            backward_again(t, v, r, out);
            return;
        }
        if (blocked) {
            step(out, STEP_WAIT, NULL);
            return;
        }
        if (pending) {
            step(out, STEP_ADOPT, "the host had started it (%s)", seen);
            return;
        }
        forward_again(t, v, r, ph, out);
        return;
    case PHASE_BEFORE:
        if (back || blocked) {
            step(out, STEP_ROLLED_BACK, NULL);
            return;
        }
        if (pending) {
            if (t->now_ms - t->updated_ms >= r->pending_grace_ms)
                step(out, STEP_ABANDON, "the host never got the request: nothing was changed");
            else
                step(out, STEP_WAIT, NULL);
            return;
        }
        forward_again(t, v, r, ph, out);
        return;
    }
    step(out, STEP_WAIT, NULL);
}
