/* vmseal-managerd — the crash test hook (managerd.h, "crashpoint.c").
 *
 * tests/system/test_e2e_intent.sh kills the manager at every step where a
 * task's state is written or a host is asked, to show that whatever the
 * manager had or had not written, it agrees again with the host after a
 * restart. Timing luck would not hit every step, so the step itself does
 * it: VMSEAL_TEST_CRASH_AT=POINT or POINT:ACTION (the task's action:
 * encrypt, decrypt, recrypt-shallow, recrypt-deep). The variable is read
 * once at start; without it mgr_crash_point() compares nothing and returns.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "managerd.h"

static char crash_at[96];

void mgr_crash_init(void)
{
    const char *v = getenv("VMSEAL_TEST_CRASH_AT");
    if (!v || !*v)
        return;
    snprintf(crash_at, sizeof(crash_at), "%s", v);
    mgr_log("TEST HOOK VMSEAL_TEST_CRASH_AT=%s: the manager kills itself when it gets there",
            crash_at);
}

void mgr_crash_point(const char *point, const char *action)
{
    if (!crash_at[0])
        return;
    size_t n = strlen(point);
    if (strncmp(crash_at, point, n) != 0)
        return;
    const char *rest = crash_at + n;
    if (*rest == ':' ? !action || strcmp(rest + 1, action) != 0 : *rest != '\0')
        return;
    mgr_log("TEST HOOK: killed at %s%s%s", point, action ? " of " : "", action ? action : "");
    raise(SIGKILL);
}
