/* Locked memory or nothing (lib/crypto/secret.c): an mlock failure fails the
 * allocation unless unlocked secrets were allowed; the process-wide limit;
 * per-thread quotas (bytes and count, refunds from any thread, a quota
 * outliving its owner's free); the start-up lock check.
 *
 * The mlock failures are real: a forked child drops CAP_IPC_LOCK (tests run
 * as root, where RLIMIT_MEMLOCK does not bind) and sets RLIMIT_MEMLOCK to 0. */
#include <errno.h>
#include <linux/capability.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <vmseal/secret.h>

/* AddressSanitizer intercepts mlock and makes it a no-op that succeeds, so
 * lock failures cannot be provoked in a sanitizer build. */
#if defined(__SANITIZE_ADDRESS__)
#define MLOCK_IS_REAL 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MLOCK_IS_REAL 0
#endif
#endif
#ifndef MLOCK_IS_REAL
#define MLOCK_IS_REAL 1
#endif

/* In a child: no CAP_IPC_LOCK, RLIMIT_MEMLOCK = limit bytes. */
static void child_without_memlock(rlim_t limit)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];
    memset(d, 0, sizeof(d));
    if (syscall(SYS_capget, &h, d) != 0)
        _exit(90);
    unsigned w = CAP_IPC_LOCK / 32, bit = 1u << (CAP_IPC_LOCK % 32);
    d[w].effective &= ~bit;
    d[w].permitted &= ~bit;
    d[w].inheritable &= ~bit;
    if (syscall(SYS_capset, &h, d) != 0)
        _exit(91);
    struct rlimit rl = {limit, limit};
    if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0)
        _exit(92);
}

static int run_child(void (*fn)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        fn();
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "child: line %d: %s (last error: %s)\n", __LINE__, #cond,        \
                    vmseal_last_error());                                                    \
            _exit(1);                                                                        \
        }                                                                                    \
    } while (0)

static int hook_calls;
static void hook(size_t bytes, int err)
{
    (void)err;
    if (bytes > 0)
        hook_calls++;
}

static void no_lock_child(void)
{
    child_without_memlock(0);
    /* default: refused, with a message naming the limit */
    errno = 0;
    vmseal_secret *s = vmseal_secret_new(32);
    CHECK(s == NULL);
    CHECK(errno == ENOMEM);
    CHECK(strstr(vmseal_last_error(), "cannot lock") != NULL);
    CHECK(strstr(vmseal_last_error(), "RLIMIT_MEMLOCK is 0 bytes") != NULL);
    CHECK(vmseal_secret_in_use() == 0);
    vmseal_secret *r = NULL;
    CHECK(vmseal_secret_random(32, &r) == -ENOMEM && r == NULL);
    CHECK(strstr(vmseal_last_error(), "locked memory only") != NULL);
    CHECK(vmseal_secret_check_lockable(4096) == -ENOMEM);
    CHECK(strstr(vmseal_last_error(), "RLIMIT_MEMLOCK") != NULL);
    CHECK(vmseal_secret_memlock_limit() == 0);
    /* allowed: handed out unlocked, the hook is told */
    vmseal_secret_allow_unlocked(1);
    vmseal_secret_set_unlocked_hook(hook);
    s = vmseal_secret_new(32);
    CHECK(s != NULL);
    CHECK(!vmseal_secret_is_locked(s));
    CHECK(hook_calls == 1 && vmseal_secret_unlocked_count() == 1);
    vmseal_secret_free(s);
    /* the start-up check does not depend on the policy */
    CHECK(vmseal_secret_check_lockable(4096) == -ENOMEM);
}

static void test_mlock_failure_refused(void **state)
{
    (void)state;
    if (!MLOCK_IS_REAL)
        skip();
    assert_int_equal(run_child(no_lock_child), 0);
}

static void small_limit_child(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    child_without_memlock((rlim_t)(4 * ps));
    CHECK(vmseal_secret_memlock_limit() == (size_t)(4 * ps));
    CHECK(vmseal_secret_check_lockable((size_t)(4 * ps)) == 0);
    CHECK(vmseal_secret_check_lockable((size_t)(5 * ps)) == -ENOMEM);
    /* runtime: locks work until the limit, then allocation fails */
    vmseal_secret *s[5] = {0};
    for (int i = 0; i < 4; i++) {
        s[i] = vmseal_secret_new(16);
        CHECK(s[i] != NULL && vmseal_secret_is_locked(s[i]));
    }
    s[4] = vmseal_secret_new(16);
    CHECK(s[4] == NULL && errno == ENOMEM);
    vmseal_secret_free(s[0]);
    s[4] = vmseal_secret_new(16);
    CHECK(s[4] != NULL);
    for (int i = 1; i < 5; i++)
        vmseal_secret_free(s[i]);
}

static void test_runtime_lock_failure(void **state)
{
    (void)state;
    if (!MLOCK_IS_REAL)
        skip();
    assert_int_equal(run_child(small_limit_child), 0);
}

static void test_check_lockable_as_root(void **state)
{
    (void)state;
    assert_int_equal(vmseal_secret_check_lockable(1u << 20), 0);
}

static void test_process_limit(void **state)
{
    (void)state;
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    size_t base = vmseal_secret_in_use();
    vmseal_secret *a = vmseal_secret_new(1);
    assert_non_null(a);
    assert_int_equal(vmseal_secret_in_use(), base + ps);   /* page-rounded */
    vmseal_secret_set_limit(base + 3 * ps);
    vmseal_secret *b = vmseal_secret_new(2 * ps);
    assert_non_null(b);
    errno = 0;
    assert_null(vmseal_secret_new(1));
    assert_int_equal(errno, ENOMEM);
    assert_non_null(strstr(vmseal_last_error(), "limit on secure memory"));
    vmseal_secret_free(b);
    vmseal_secret *c = vmseal_secret_new(ps + 1);
    assert_non_null(c);
    vmseal_secret_free(c);
    vmseal_secret_set_limit(0);
    vmseal_secret_free(a);
    assert_int_equal(vmseal_secret_in_use(), base);
}

static void *free_in_thread(void *p)
{
    vmseal_secret_free(p);
    return NULL;
}

static void test_quota(void **state)
{
    (void)state;
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    vmseal_secret_quota *q = vmseal_secret_quota_new(4 * ps, 3);
    assert_non_null(q);
    assert_null(vmseal_secret_quota_enter(q));
    assert_ptr_equal(vmseal_secret_quota_current(), q);
    vmseal_secret *a = vmseal_secret_new(2 * ps), *b = vmseal_secret_new(10);
    assert_non_null(a);
    assert_non_null(b);
    size_t bytes, count;
    vmseal_secret_quota_usage(q, &bytes, &count);
    assert_int_equal(bytes, 3 * ps);
    assert_int_equal(count, 2);
    /* bytes: 3 pages held, 2 more asked */
    errno = 0;
    assert_null(vmseal_secret_new(ps + 1));
    assert_int_equal(errno, EDQUOT);
    assert_non_null(strstr(vmseal_last_error(), "quota used up"));
    assert_int_equal(vmseal_secret_quota_refusals(q), 1);
    /* count: the third fits, a fourth does not */
    vmseal_secret *c = vmseal_secret_new(1);
    assert_non_null(c);
    assert_null(vmseal_secret_new(1));
    assert_int_equal(errno, EDQUOT);
    assert_non_null(strstr(vmseal_last_error(), "secure buffers"));
    /* refunds, also from another thread */
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, free_in_thread, c), 0);
    pthread_join(th, NULL);
    vmseal_secret_quota_usage(q, &bytes, &count);
    assert_int_equal(count, 2);
    /* outside the quota (another thread's view): not charged */
    assert_ptr_equal(vmseal_secret_quota_enter(NULL), q);
    vmseal_secret *d = vmseal_secret_new(8 * ps);
    assert_non_null(d);
    vmseal_secret_free(d);
    vmseal_secret_quota_usage(q, &bytes, &count);
    assert_int_equal(count, 2);
    /* the owner lets go first; the quota lives until its last secret */
    vmseal_secret_quota_free(q);
    vmseal_secret_free(a);
    vmseal_secret_free(b); /* frees the quota (ASan would flag a leak or a use after free) */
}

/* Freed small secrets are kept for reuse: wiped, and forgotten in a forked
 * child (whose address space lacks them: MADV_DONTFORK). */
static void pool_child(void)
{
    vmseal_secret *s = vmseal_secret_new(100);
    CHECK(s != NULL);
    memset(vmseal_secret_data(s), 0x5a, 100); /* faults if the mapping is not ours */
    vmseal_secret_free(s);
}

static void test_pool(void **state)
{
    (void)state;
    size_t base = vmseal_secret_in_use();
    for (int round = 0; round < 3; round++) {
        vmseal_secret *s = vmseal_secret_new(100);
        assert_non_null(s);
        for (size_t i = 0; i < 100; i++)
            assert_int_equal(vmseal_secret_data(s)[i], 0);
        memset(vmseal_secret_data(s), 0xa5, 100);
        assert_true(vmseal_secret_is_locked(s));
        vmseal_secret_free(s);
        assert_int_equal(vmseal_secret_in_use(), base);
    }
    assert_int_equal(run_child(pool_child), 0);
    vmseal_secret *t = vmseal_secret_new(100);
    assert_non_null(t);
    assert_int_equal(vmseal_secret_data(t)[0], 0);
    vmseal_secret_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mlock_failure_refused),
        cmocka_unit_test(test_runtime_lock_failure),
        cmocka_unit_test(test_check_lockable_as_root),
        cmocka_unit_test(test_process_limit),
        cmocka_unit_test(test_quota),
        cmocka_unit_test(test_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
