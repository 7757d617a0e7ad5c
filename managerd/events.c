/* vmseal-managerd — the event log.
 *
 * Every change is one row: time, user, action ("vm.policy", "kms.add"...),
 * object, old value and new value as JSON (never secrets). Each event is
 * also written to the log as one "actionable" line. Readers can wait for
 * new events (long poll): event_add() wakes them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vmseal/common.h>

#include "managerd.h"

static char *dump_or_null(const json_t *v)
{
    return v ? json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
}

int event_add(manager *m, const char *user, const char *action, const char *object,
              const json_t *old_value, const json_t *new_value)
{
    char *ov = dump_or_null(old_value), *nv = dump_or_null(new_value);
    char now[32];
    snprintf(now, sizeof(now), "%lld", (long long)mgr_now());
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r,
                         "INSERT INTO events (time, user_name, action, object, old_value, new_value) "
                         "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                         now, user && *user ? user : "-", action, object, ov, nv, STORE_END);
    const char *id = store_rows_get(r, 0, 0);
    if (rc >= 0)
        mgr_log("event %s: user=%s action=%s object=%s old=%s new=%s", id ? id : "?",
                user && *user ? user : "-", action, object, ov ? ov : "null", nv ? nv : "null");
    else
        mgr_log("cannot record event %s on %s: %s", action, object, vmseal_last_error());
    store_rows_free(r);
    free(ov);
    free(nv);
    pthread_mutex_lock(&m->lock);
    pthread_cond_broadcast(&m->changed);
    pthread_mutex_unlock(&m->lock);
    return rc < 0 ? rc : 0;
}

void events_wake(manager *m)
{
    pthread_mutex_lock(&m->lock);
    pthread_cond_broadcast(&m->changed);
    pthread_mutex_unlock(&m->lock);
}

static json_t *parse_value(const char *s)
{
    if (!s)
        return json_null();
    json_t *v = json_loads(s, JSON_DECODE_ANY, NULL);
    return v ? v : json_string(s);
}

static int query(manager *m, long long since, int limit, json_t *arr, long long *last)
{
    char s[32], l[32];
    snprintf(s, sizeof(s), "%lld", since);
    snprintf(l, sizeof(l), "%d", limit);
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r,
                         "SELECT id, time, user_name, action, object, old_value, new_value "
                         "FROM events WHERE id > $1 ORDER BY id LIMIT $2",
                         s, l, STORE_END);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < store_rows_count(r); i++) {
        long long id = atoll(store_rows_get(r, i, 0));
        json_array_append_new(arr, json_pack("{s:I,s:I,s:s,s:s,s:s,s:o,s:o}", "id", (json_int_t)id,
                                             "time", (json_int_t)atoll(store_rows_get(r, i, 1)),
                                             "user", store_rows_get(r, i, 2),
                                             "action", store_rows_get(r, i, 3),
                                             "object", store_rows_get(r, i, 4),
                                             "old", parse_value(store_rows_get(r, i, 5)),
                                             "new", parse_value(store_rows_get(r, i, 6))));
        *last = id;
    }
    store_rows_free(r);
    return 0;
}

int events_list(manager *m, long long since, int limit, int wait_s, json_t **out)
{
    *out = NULL;
    if (limit <= 0 || limit > 1000)
        limit = 1000;
    json_t *arr = json_array();
    long long last = since;
    if (since < 0) {
        /* "since=-N": the last N events */
        store_rows *r = NULL;
        int rc = store_execv(m->db, &r, "SELECT COALESCE(MAX(id), 0) FROM events", STORE_END);
        if (rc < 0) {
            json_decref(arr);
            return rc;
        }
        long long max = atoll(store_rows_get(r, 0, 0) ? store_rows_get(r, 0, 0) : "0");
        store_rows_free(r);
        since = max + since > 0 ? max + since : 0;
        last = since;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += wait_s;
    for (;;) {
        int rc = query(m, since, limit, arr, &last);
        if (rc < 0) {
            json_decref(arr);
            return rc;
        }
        if (json_array_size(arr) > 0 || wait_s <= 0)
            break;
        pthread_mutex_lock(&m->lock);
        int timed_out = 0;
        if (!m->stopping) {
            /* Re-check under the lock would need the id; a spurious extra
             * query is cheap, a missed wake-up costs one poll period. */
            struct timespec step;
            clock_gettime(CLOCK_REALTIME, &step);
            step.tv_sec += 1;
            if (step.tv_sec > deadline.tv_sec ||
                (step.tv_sec == deadline.tv_sec && step.tv_nsec > deadline.tv_nsec))
                step = deadline;
            int w = pthread_cond_timedwait(&m->changed, &m->lock, &step);
            struct timespec now;
            clock_gettime(CLOCK_REALTIME, &now);
            if (w == ETIMEDOUT && (now.tv_sec > deadline.tv_sec ||
                                   (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec)))
                timed_out = 1;
        }
        int stop = m->stopping;
        pthread_mutex_unlock(&m->lock);
        if (stop || timed_out) {
            rc = query(m, since, limit, arr, &last);
            if (rc < 0) {
                json_decref(arr);
                return rc;
            }
            break;
        }
    }
    *out = json_pack("{s:o,s:I}", "events", arr, "last", (json_int_t)last);
    return 0;
}
