/* What a host's view of a VM means for a task of the manager
 * (managerd/reconcile.c): the phase of each operation for every shape a
 * vm.conf can have, and the step the watcher takes for each state of the
 * task. The views are parsed from the JSON hostd answers, as the manager
 * gets them. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "managerd.h"

/* A host's GET /v1/vms/{uuid} answer, reduced to what matters here. */
static host_view view(const char *json)
{
    json_error_t err;
    json_t *j = json_loads(json, 0, &err);
    assert_non_null(j);
    host_view v;
    assert_int_equal(host_view_parse(j, &v), 0);
    json_decref(j);
    return v;
}

#define PLAIN "{\"encrypted\": false, \"kek_id\": null, \"pending_operation\": null}"
#define UNDER(k) "{\"encrypted\": true, \"kek_id\": \"" k "\", \"pending_operation\": null}"

static void test_parse(void **state)
{
    (void)state;
    host_view v = view("{\"encrypted\": true, \"kek_id\": \"7\", \"pending_operation\": \"recrypt-deep\", "
                       "\"pending_kek\": \"9\", \"power_state\": \"off\", \"locked\": true, "
                       "\"locked_reason\": \"KEK 9 is not available on this host\", "
                       "\"task\": {\"id\": \"t1\", \"operation\": \"resume\", \"progress\": 42}, "
                       "\"last_task\": {\"id\": \"t0\", \"operation\": \"recrypt-deep\", \"state\": \"error\", "
                       "\"error\": \"No space left on device\", \"errno\": 28}}");
    assert_true(v.found && v.encrypted && v.locked && v.task_running && v.last);
    assert_false(v.power_on);
    assert_string_equal(v.kek, "7");
    assert_string_equal(v.op, "recrypt-deep");
    assert_string_equal(v.op_kek, "9");
    assert_string_equal(v.task_op, "resume");
    assert_int_equal(v.task_progress, 42);
    assert_string_equal(v.last_state, "error");
    assert_int_equal(v.last_errno, ENOSPC);
    char s[400];
    host_view_summary(&v, s, sizeof(s));
    assert_string_equal(s, "encrypted under 7, unfinished recrypt-deep to 9");
    v = view(PLAIN);
    host_view_summary(&v, s, sizeof(s));
    assert_string_equal(s, "not encrypted");
    /* not a VM */
    json_t *j = json_string("x");
    assert_int_equal(host_view_parse(j, &v), -EPROTO);
    json_decref(j);
}

static void test_phases(void **state)
{
    (void)state;
    host_view plain = view(PLAIN), k1 = view(UNDER("k1")), k2 = view(UNDER("k2")),
              k3 = view(UNDER("k3"));
    host_view enc_part = view("{\"encrypted\": false, \"pending_operation\": \"encrypt\", \"pending_kek\": \"k2\"}");
    host_view enc_other = view("{\"encrypted\": false, \"pending_operation\": \"encrypt\", \"pending_kek\": \"k9\"}");
    host_view dec_part = view("{\"encrypted\": true, \"kek_id\": \"k1\", \"pending_operation\": \"decrypt\"}");
    host_view deep_part = view("{\"encrypted\": true, \"kek_id\": \"k1\", \"pending_operation\": \"recrypt-deep\", "
                               "\"pending_kek\": \"k2\"}");
    /* encrypt to k2 */
    assert_int_equal(task_phase_of("encrypt", NULL, "k2", &plain), PHASE_BEFORE);
    assert_int_equal(task_phase_of("encrypt", NULL, "k2", &k2), PHASE_AFTER);
    assert_int_equal(task_phase_of("encrypt", NULL, "k2", &enc_part), PHASE_PARTIAL);
    assert_int_equal(task_phase_of("encrypt", NULL, "k2", &enc_other), PHASE_OTHER);
    assert_int_equal(task_phase_of("encrypt", NULL, "k2", &k3), PHASE_OTHER);
    assert_int_equal(task_phase_of("encrypt", NULL, "k2", &dec_part), PHASE_OTHER);
    /* decrypt from k1 */
    assert_int_equal(task_phase_of("decrypt", "k1", NULL, &k1), PHASE_BEFORE);
    assert_int_equal(task_phase_of("decrypt", "k1", NULL, &plain), PHASE_AFTER);
    assert_int_equal(task_phase_of("decrypt", "k1", NULL, &dec_part), PHASE_PARTIAL);
    assert_int_equal(task_phase_of("decrypt", "k1", NULL, &k3), PHASE_OTHER);
    assert_int_equal(task_phase_of("decrypt", "k1", NULL, &deep_part), PHASE_OTHER);
    /* rekeys k1 -> k2 */
    for (int deep = 0; deep < 2; deep++) {
        const char *a = deep ? "recrypt-deep" : "recrypt-shallow";
        assert_int_equal(task_phase_of(a, "k1", "k2", &k1), PHASE_BEFORE);
        assert_int_equal(task_phase_of(a, "k1", "k2", &k2), PHASE_AFTER);
        assert_int_equal(task_phase_of(a, "k1", "k2", &plain), PHASE_OTHER);
        assert_int_equal(task_phase_of(a, "k1", "k2", &k3), PHASE_OTHER);
        assert_int_equal(task_phase_of(a, "k1", "k2", &deep_part), deep ? PHASE_PARTIAL : PHASE_OTHER);
        assert_int_equal(task_phase_of(a, "k1", "k3", &deep_part), PHASE_OTHER);
    }
    assert_int_equal(task_phase_of("unknown", "k1", "k2", &k1), PHASE_OTHER);
}

static task_step_kind decide(const char *action, const char *state, int attempts, int64_t next_try,
                             int64_t updated, const char *json);

/* An import the manager follows (tasks_follow): vm.conf's unfinished
 * create is the partial phase; no rollback of it, a cancel keeps it. */
static void test_import(void **state)
{
    (void)state;
    const char *importing = "{\"encrypted\": true, \"kek_id\": \"k1\", \"pending_operation\": \"create\", "
                            "\"task\": {\"id\": \"h1\", \"operation\": \"disk-add\", \"progress\": 40}}";
    const char *resuming = "{\"encrypted\": true, \"kek_id\": \"k1\", \"pending_operation\": \"create\", "
                           "\"task\": {\"id\": \"h2\", \"operation\": \"resume\", \"progress\": 40}}";
    const char *stopped = "{\"encrypted\": true, \"kek_id\": \"k1\", \"pending_operation\": \"create\"}";
    const char *nospace = "{\"encrypted\": true, \"kek_id\": \"k1\", \"pending_operation\": \"create\", "
                          "\"last_task\": {\"id\": \"h1\", \"operation\": \"import\", \"state\": \"error\", "
                          "\"errno\": 28, \"error\": \"No space left on device\"}}";
    const char *done = "{\"encrypted\": true, \"kek_id\": \"k1\"}";
    const char *other = "{\"encrypted\": true, \"kek_id\": \"k1\", \"pending_operation\": \"encrypt\", "
                        "\"pending_kek\": \"k2\"}";
    host_view v = view(importing);
    assert_int_equal(task_phase_of("import", "k1", NULL, &v), PHASE_PARTIAL);
    v = view(done);
    assert_int_equal(task_phase_of("import", "k1", NULL, &v), PHASE_AFTER);
    v = view(other);
    assert_int_equal(task_phase_of("import", "k1", NULL, &v), PHASE_OTHER);
    assert_int_equal(decide("import", "running", 0, 0, 0, importing), STEP_PROGRESS);
    assert_int_equal(decide("import", "running", 0, 0, 0, resuming), STEP_PROGRESS);
    assert_int_equal(decide("import", "running", 0, 0, 0, done), STEP_SUCCESS);
    assert_int_equal(decide("import", "running", 0, 0, 0, stopped), STEP_RETRY);   /* host restarted */
    assert_int_equal(decide("import", "running", 3, 0, 0, stopped), STEP_FAIL);    /* no rollback */
    assert_int_equal(decide("import", "running", 0, 0, 0, nospace), STEP_FAIL);
    assert_int_equal(decide("import", "running", 0, 0, 0, other), STEP_DIVERGED);
    assert_int_equal(decide("import", "cancelling", 0, 0, 0, importing), STEP_HOST_CANCEL);
    assert_int_equal(decide("import", "cancelling", 0, 0, 0, stopped), STEP_ROLLED_BACK);
    assert_int_equal(decide("import", "cancelling", 0, 0, 0, done), STEP_SUCCESS);
    /* another host operation is not the import going on */
    assert_int_equal(decide("import", "running", 0, 0, 0,
                            "{\"encrypted\": true, \"kek_id\": \"k1\", \"pending_operation\": \"create\", "
                            "\"task\": {\"operation\": \"decrypt\"}}"),
                     STEP_WAIT);
}

static void test_retryable(void **state)
{
    (void)state;
    assert_true(task_errno_retryable(ECANCELED));
    assert_true(task_errno_retryable(-ENOKEY));
    assert_true(task_errno_retryable(EIO));
    assert_false(task_errno_retryable(ENOSPC));
    assert_false(task_errno_retryable(EKEYREJECTED));
    assert_false(task_errno_retryable(EPROTO));
    assert_false(task_errno_retryable(0));
}

static task_step_kind decide(const char *action, const char *state, int attempts, int64_t next_try,
                             int64_t updated, const char *json)
{
    host_view v = view(json);
    task_facts f = {.action = action, .state = state, .old_kek = "k1", .new_kek = "k2",
                    .host_task = "h1", .attempts = attempts, .next_try_ms = next_try,
                    .updated_ms = updated, .now_ms = 100000};
    if (!strcmp(action, "encrypt"))
        f.old_kek = NULL;
    if (!strcmp(action, "decrypt"))
        f.new_kek = NULL;
    task_rules r = {.retries = 3, .pending_grace_ms = 3000};
    task_step s;
    task_decide(&f, &v, &r, &s);
    return s.kind;
}

static void test_decide(void **state)
{
    (void)state;
    const char *running_enc = "{\"encrypted\": false, \"pending_operation\": \"encrypt\", \"pending_kek\": \"k2\", "
                              "\"task\": {\"id\": \"h1\", \"operation\": \"encrypt\", \"progress\": 30}}";
    const char *stopped_enc = "{\"encrypted\": false, \"pending_operation\": \"encrypt\", \"pending_kek\": \"k2\"}";
    const char *enospc = "{\"encrypted\": false, \"pending_operation\": \"encrypt\", \"pending_kek\": \"k2\", "
                         "\"last_task\": {\"id\": \"h1\", \"operation\": \"encrypt\", \"state\": \"error\", "
                         "\"errno\": 28, \"error\": \"No space left on device\"}}";
    const char *cancelled = "{\"encrypted\": false, \"pending_operation\": \"encrypt\", \"pending_kek\": \"k2\", "
                            "\"last_task\": {\"id\": \"h1\", \"operation\": \"encrypt\", \"state\": \"error\", "
                            "\"errno\": 125, \"error\": \"cancelled\"}}";
    /* the same failure, but of a host task from before (a resume since) */
    const char *stale = "{\"encrypted\": false, \"pending_operation\": \"encrypt\", \"pending_kek\": \"k2\", "
                        "\"last_task\": {\"id\": \"h0\", \"operation\": \"encrypt\", \"state\": \"error\", "
                        "\"errno\": 28, \"error\": \"No space left on device\"}}";
    const char *plain_enospc = "{\"encrypted\": false, \"last_task\": {\"id\": \"h1\", \"operation\": "
                               "\"encrypt\", \"state\": \"error\", \"errno\": 28}}";
    /* an intent the manager crashed on, before or after the host got it */
    assert_int_equal(decide("encrypt", "pending", 0, 0, 99000, PLAIN), STEP_WAIT);        /* just made */
    assert_int_equal(decide("encrypt", "pending", 0, 0, 90000, PLAIN), STEP_ABANDON);     /* never got it */
    assert_int_equal(decide("encrypt", "pending", 0, 0, 90000, running_enc), STEP_ADOPT);
    assert_int_equal(decide("encrypt", "pending", 0, 0, 90000, stopped_enc), STEP_ADOPT);
    assert_int_equal(decide("encrypt", "pending", 0, 0, 90000, UNDER("k2")), STEP_SUCCESS);
    assert_int_equal(decide("encrypt", "pending", 0, 0, 90000, UNDER("k7")), STEP_DIVERGED);
    /* a running task */
    assert_int_equal(decide("encrypt", "running", 0, 0, 0, running_enc), STEP_PROGRESS);
    assert_int_equal(decide("encrypt", "running", 0, 0, 0, UNDER("k2")), STEP_SUCCESS);
    assert_int_equal(decide("encrypt", "running", 0, 0, 0, stopped_enc), STEP_RETRY);     /* host restarted */
    assert_int_equal(decide("encrypt", "running", 0, 0, 0, cancelled), STEP_RETRY);
    assert_int_equal(decide("encrypt", "running", 1, 200000, 0, cancelled), STEP_WAIT);   /* backing off */
    assert_int_equal(decide("encrypt", "running", 3, 0, 0, cancelled), STEP_ROLLBACK);    /* tries used up */
    assert_int_equal(decide("encrypt", "running", 0, 0, 0, enospc), STEP_ROLLBACK);       /* will not fit */
    assert_int_equal(decide("encrypt", "running", 0, 0, 0, stale), STEP_RETRY);           /* resumed since */
    assert_int_equal(decide("encrypt", "running", 0, 0, 0, plain_enospc), STEP_FAIL);     /* nothing to undo */
    /* the host ran out of room and rolled it back itself */
    assert_int_equal(decide("encrypt", "running", 0, 0, 0,
                            "{\"encrypted\": false, \"last_task\": {\"id\": \"h1\", \"operation\": "
                            "\"encrypt\", \"state\": \"error\", \"errno\": 28, \"rolled_back\": true}}"),
                     STEP_ROLLED_BACK);
    assert_int_equal(decide("encrypt", "running", 0, 0, 0, PLAIN), STEP_RETRY);           /* host lost it */
    assert_int_equal(decide("encrypt", "running", 0, 0, 0, "{\"found\": 1}"), STEP_RETRY);
    /* the VM changed on its host, or is gone */
    assert_int_equal(decide("decrypt", "running", 0, 0, 0, UNDER("k5")), STEP_DIVERGED);
    host_view gone = {0};
    task_facts f = {.action = "decrypt", .state = "running", .old_kek = "k1"};
    task_rules r = {.retries = 3};
    task_step s;
    task_decide(&f, &gone, &r, &s);
    assert_int_equal(s.kind, STEP_GONE);
    /* another operation runs on the host: wait for it */
    assert_int_equal(decide("recrypt-deep", "running", 0, 0, 0,
                            "{\"encrypted\": true, \"kek_id\": \"k1\", \"task\": {\"operation\": \"decrypt\"}}"),
                     STEP_WAIT);
    /* a host resuming by itself is the task going on */
    assert_int_equal(decide("recrypt-deep", "running", 0, 0, 0,
                            "{\"encrypted\": true, \"kek_id\": \"k1\", \"pending_operation\": \"recrypt-deep\", "
                            "\"pending_kek\": \"k2\", \"task\": {\"operation\": \"resume\"}}"),
                     STEP_PROGRESS);
    /* going back: cancelled or failed part-way */
    const char *rolling = "{\"encrypted\": false, \"pending_operation\": \"encrypt\", \"pending_kek\": \"k2\", "
                          "\"task\": {\"id\": \"h2\", \"operation\": \"rollback\", \"progress\": 0}}";
    const char *rb_failed = "{\"encrypted\": false, \"pending_operation\": \"encrypt\", \"pending_kek\": \"k2\", "
                            "\"last_task\": {\"id\": \"h1\", \"operation\": \"rollback\", \"state\": \"error\", "
                            "\"errno\": 21, \"error\": \"Is a directory\"}}";
    const char *rb_busy = "{\"encrypted\": false, \"pending_operation\": \"encrypt\", \"pending_kek\": \"k2\", "
                          "\"last_task\": {\"id\": \"h1\", \"operation\": \"rollback\", \"state\": \"error\", "
                          "\"errno\": 16, \"error\": \"busy\"}}";
    for (int c = 0; c < 2; c++) {
        const char *st = c ? "cancelling" : "rolling-back";
        assert_int_equal(decide("encrypt", st, 0, 0, 0, running_enc), STEP_HOST_CANCEL);
        assert_int_equal(decide("encrypt", st, 0, 0, 0, rolling), STEP_PROGRESS);
        assert_int_equal(decide("encrypt", st, 0, 0, 0, stopped_enc), STEP_HOST_ROLLBACK);
        assert_int_equal(decide("encrypt", st, 1, 200000, 0, rb_busy), STEP_WAIT);
        assert_int_equal(decide("encrypt", st, 1, 0, 0, rb_busy), STEP_HOST_ROLLBACK);
        assert_int_equal(decide("encrypt", st, 3, 0, 0, rb_busy), STEP_BLOCK);
        assert_int_equal(decide("encrypt", st, 1, 0, 0, rb_failed), STEP_BLOCK);
        assert_int_equal(decide("encrypt", st, 1, 0, 0, PLAIN), STEP_ROLLED_BACK);
        assert_int_equal(decide("encrypt", st, 1, 0, 0, UNDER("k2")), STEP_SUCCESS);   /* too late */
        assert_int_equal(decide("encrypt", st, 1, 0, 0, UNDER("k5")), STEP_DIVERGED);
    }
    /* blocked: waits for the user, unless the VM got back or through meanwhile */
    assert_int_equal(decide("encrypt", "blocked", 0, 0, 0, rb_failed), STEP_WAIT);
    assert_int_equal(decide("encrypt", "blocked", 0, 0, 0, running_enc), STEP_WAIT);
    assert_int_equal(decide("encrypt", "blocked", 0, 0, 0, PLAIN), STEP_ROLLED_BACK);
    assert_int_equal(decide("encrypt", "blocked", 0, 0, 0, UNDER("k2")), STEP_SUCCESS);
    /* a rollback the host runs by itself (no room) while the task goes forward */
    assert_int_equal(decide("encrypt", "running", 0, 0, 0, rolling), STEP_WAIT);
    /* a shallow rekey is one commit: done or not done */
    assert_int_equal(decide("recrypt-shallow", "running", 0, 0, 0, UNDER("k2")), STEP_SUCCESS);
    assert_int_equal(decide("recrypt-shallow", "running", 0, 0, 0,
                            "{\"encrypted\": true, \"kek_id\": \"k1\", \"task\": {\"operation\": \"recrypt\"}}"),
                     STEP_PROGRESS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_phases),
        cmocka_unit_test(test_retryable),
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_import),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
