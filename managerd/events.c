/* vmseal-managerd — the event log.
 *
 * Every change, and every refused attempt, is one row: time, user, source
 * address, action ("vm.policy", "kms.add"...), object, old value and new
 * value as JSON (never secrets), result ("ok", "denied", "failed"), and a
 * SHA-256 chain over all of it (prev_hash, hash) that events_verify()
 * checks. Each event is also written to the log as one line. Readers can
 * wait for new events (long poll): event_record() wakes them. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include <vmseal/common.h>

#include "managerd.h"

static char *dump_or_null(const json_t *v)
{
    return v ? json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
}

/* The client address of the request this thread serves (set by api.c). */
static __thread char tl_source[64];

void event_set_source(const char *addr)
{
    if (!addr || !*addr) {
        tl_source[0] = '\0';
        return;
    }
    /* "127.0.0.1:41234" -> "127.0.0.1"; "[::1]:5" -> "::1" */
    const char *a = addr, *end = strrchr(addr, ':');
    if (*a == '[') {
        a++;
        end = strchr(a, ']');
    }
    size_t n = end && end > a ? (size_t)(end - a) : strlen(a);
    if (n >= sizeof(tl_source))
        n = sizeof(tl_source) - 1;
    memcpy(tl_source, a, n);
    tl_source[n] = '\0';
}

/* The chain: hash = SHA-256 of the canonical JSON (sorted keys, compact) of
 * {id, time, user, source, action, object, old, new, result, prev} where old
 * and new are the stored JSON texts (or null) and prev is the previous
 * record's hash (64 zeros for the first). Editing, deleting or reordering a
 * record breaks the chain at that record. */
#define ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"

static int chain_hash(const char *id, const char *time, const char *user, const char *source,
                      const char *action, const char *object, const char *ov, const char *nv,
                      const char *result, const char *prev, char out[65])
{
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s?,s:s?,s:s,s:s}", "id", id, "time", time,
                          "user", user ? user : "", "source", source ? source : "", "action",
                          action ? action : "", "object", object ? object : "", "old", ov, "new", nv,
                          "result", result ? result : "", "prev", prev ? prev : "");
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(j);
    if (!text)
        return vmseal_fail(ENOMEM, "out of memory");
    unsigned char md[32];
    unsigned int n = 0;
    int ok = EVP_Digest(text, strlen(text), md, &n, EVP_sha256(), NULL) == 1;
    free(text);
    if (!ok)
        return vmseal_fail(EIO, "SHA-256 failed");
    vmseal_hex_encode(md, 32, out);
    return 0;
}

/* The hash of stored row i of a query whose first nine columns are id,
 * time, user_name, source, action, object, old_value, new_value, result. */
static int row_hash(store_rows *r, size_t i, const char *prev, char out[65])
{
    return chain_hash(store_rows_get(r, i, 0), store_rows_get(r, i, 1), store_rows_get(r, i, 2),
                      store_rows_get(r, i, 3), store_rows_get(r, i, 4), store_rows_get(r, i, 5),
                      store_rows_get(r, i, 6), store_rows_get(r, i, 7), store_rows_get(r, i, 8), prev, out);
}

struct add_args {
    const char *now, *user, *source, *action, *object, *ov, *nv, *result;
    char id[32];
};

static int add_tx(store *db, void *arg)
{
    struct add_args *a = arg;
    store_rows *r = NULL;
    int rc = store_execv(db, &r, "SELECT hash FROM events ORDER BY id DESC LIMIT 1", STORE_END);
    if (rc < 0)
        return rc;
    char prev[65];
    const char *ph = store_rows_get(r, 0, 0);
    snprintf(prev, sizeof(prev), "%s", ph ? ph : ZERO_HASH);
    store_rows_free(r);
    r = NULL;
    rc = store_execv(db, &r,
                     "INSERT INTO events (time, user_name, action, object, old_value, new_value, source, "
                     "result, prev_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                     a->now, a->user, a->action, a->object, a->ov, a->nv, a->source, a->result, prev,
                     STORE_END);
    if (rc < 0)
        return rc;
    snprintf(a->id, sizeof(a->id), "%s", store_rows_get(r, 0, 0) ? store_rows_get(r, 0, 0) : "");
    store_rows_free(r);
    char h[65];
    rc = chain_hash(a->id, a->now, a->user, a->source, a->action, a->object, a->ov, a->nv, a->result,
                    prev, h);
    if (rc < 0)
        return rc;
    return store_execv(db, NULL, "UPDATE events SET hash = $2 WHERE id = $1", a->id, h, STORE_END);
}

int event_record(manager *m, const char *user, const char *action, const char *object,
                 const json_t *old_value, const json_t *new_value, const char *result)
{
    char *ov = dump_or_null(old_value), *nv = dump_or_null(new_value);
    char now[32];
    snprintf(now, sizeof(now), "%lld", (long long)mgr_now());
    struct add_args a = {
        .now = now, .user = user && *user ? user : "-", .source = tl_source[0] ? tl_source : "-",
        .action = action, .object = object && *object ? object : "-", .ov = ov, .nv = nv,
        .result = result ? result : "ok",
    };
    int rc = store_tx(m->db, add_tx, &a);
    if (rc >= 0)
        mgr_log("event %s: user=%s source=%s action=%s object=%s result=%s old=%s new=%s", a.id, a.user,
                a.source, action, a.object, a.result, ov ? ov : "null", nv ? nv : "null");
    else
        mgr_log("cannot record event %s on %s: %s", action, a.object, vmseal_last_error());
    free(ov);
    free(nv);
    pthread_mutex_lock(&m->lock);
    pthread_cond_broadcast(&m->changed);
    pthread_mutex_unlock(&m->lock);
    return rc < 0 ? rc : 0;
}

int event_add(manager *m, const char *user, const char *action, const char *object,
              const json_t *old_value, const json_t *new_value)
{
    return event_record(m, user, action, object, old_value, new_value, "ok");
}

/* Walk the chain from the first record: the first record whose prev_hash is
 * not the hash before it, or whose hash is not what its fields give, is
 * named. Records are read in pages so a long log needs little memory. */
int events_verify(manager *m, json_t **out)
{
    *out = NULL;
    char prev[65] = ZERO_HASH;
    long long last = 0, count = 0;
    for (;;) {
        char s[32];
        snprintf(s, sizeof(s), "%lld", last);
        store_rows *r = NULL;
        int rc = store_execv(m->db, &r,
                             "SELECT id, time, user_name, source, action, object, old_value, new_value, "
                             "result, prev_hash, hash FROM events WHERE id > $1 ORDER BY id LIMIT 500",
                             s, STORE_END);
        if (rc < 0)
            return rc;
        size_t n = store_rows_count(r);
        for (size_t i = 0; i < n; i++) {
            const char *id = store_rows_get(r, i, 0);
            const char *ph = store_rows_get(r, i, 9), *hh = store_rows_get(r, i, 10);
            char want[65];
            rc = row_hash(r, i, ph, want);
            if (rc < 0) {
                store_rows_free(r);
                return rc;
            }
            const char *why = NULL;
            if (!ph || !hh)
                why = "record has no chain hash";
            else if (strcmp(ph, prev) != 0)
                why = "its previous-hash does not match the record before it: a record before it was "
                      "deleted, inserted or reordered, or this one was";
            else if (strcmp(hh, want) != 0)
                why = "its hash does not match its contents: the record was edited";
            if (why) {
                *out = json_pack("{s:b,s:I,s:I,s:s}", "ok", 0, "records", (json_int_t)count,
                                 "first_bad", (json_int_t)atoll(id), "reason", why);
                store_rows_free(r);
                return *out ? 0 : vmseal_fail(ENOMEM, "out of memory");
            }
            snprintf(prev, sizeof(prev), "%s", hh);
            last = atoll(id);
            count++;
        }
        store_rows_free(r);
        if (n < 500)
            break;
    }
    *out = json_pack("{s:b,s:I,s:I,s:s}", "ok", 1, "records", (json_int_t)count, "last",
                     (json_int_t)last, "head", prev);
    return *out ? 0 : vmseal_fail(ENOMEM, "out of memory");
}

/* Events written before schema 2 have no hash: chain them once, in id
 * order, and remember that it was done (after that a missing hash is a
 * verify failure, not something to fill in). */
static int chain_legacy_tx(store *db, void *arg)
{
    (void)arg;
    store_rows *r = NULL;
    int rc = store_execv(db, &r, "SELECT value FROM meta WHERE key = 'events.chained'", STORE_END);
    if (rc < 0)
        return rc;
    int done = store_rows_count(r) > 0;
    store_rows_free(r);
    if (done)
        return 0;
    r = NULL;
    rc = store_execv(db, &r,
                     "SELECT id, time, user_name, source, action, object, old_value, new_value, result, "
                     "hash FROM events ORDER BY id",
                     STORE_END);
    if (rc < 0)
        return rc;
    char prev[65] = ZERO_HASH;
    for (size_t i = 0; rc >= 0 && i < store_rows_count(r); i++) {
        const char *have = store_rows_get(r, i, 9);
        if (have) {
            snprintf(prev, sizeof(prev), "%s", have);
            continue;
        }
        char h[65];
        const char *id = store_rows_get(r, i, 0);
        rc = row_hash(r, i, prev, h);
        if (rc >= 0)
            rc = store_execv(db, NULL, "UPDATE events SET prev_hash = $2, hash = $3 WHERE id = $1", id,
                             prev, h, STORE_END);
        snprintf(prev, sizeof(prev), "%s", h);
    }
    store_rows_free(r);
    if (rc >= 0)
        rc = store_execv(db, NULL, "INSERT INTO meta (key, value) VALUES ('events.chained', '1')", STORE_END);
    return rc < 0 ? rc : 0;
}

int events_chain_legacy(manager *m)
{
    return store_tx(m->db, chain_legacy_tx, NULL);
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

static int query(manager *m, const events_filter *f, long long since, int limit, json_t *arr,
                 long long *last)
{
    char s[32], l[32], t0[32], t1[32];
    snprintf(s, sizeof(s), "%lld", since);
    snprintf(l, sizeof(l), "%d", limit);
    snprintf(t0, sizeof(t0), "%lld", f ? (long long)f->from : 0LL);
    snprintf(t1, sizeof(t1), "%lld", f && f->to ? (long long)f->to : (long long)INT64_MAX);
    /* A filter left empty matches everything: ($N = '' OR column = $N). The
     * action filter matches a whole action or a prefix ending in '.'
     * ("vm." matches vm.create, vm.policy...). */
    const char *user = f && f->user ? f->user : "", *object = f && f->object ? f->object : "";
    const char *action = f && f->action ? f->action : "", *result = f && f->result ? f->result : "";
    char prefix[80] = "";
    size_t al = strlen(action);
    if (al && action[al - 1] == '.' && al < sizeof(prefix) - 1)
        snprintf(prefix, sizeof(prefix), "%s", action);
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r,
                         "SELECT id, time, user_name, action, object, old_value, new_value, source, result "
                         "FROM events WHERE id > $1 AND time >= $3 AND time <= $4 "
                         "AND ($5 = '' OR user_name = $5) AND ($6 = '' OR object = $6) "
                         "AND ($7 = '' OR action = $7 OR ($8 <> '' AND SUBSTR(action, 1, LENGTH($8)) = $8)) "
                         "AND ($9 = '' OR result = $9) ORDER BY id LIMIT $2",
                         s, l, t0, t1, user, object, action, prefix, result, STORE_END);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < store_rows_count(r); i++) {
        long long id = atoll(store_rows_get(r, i, 0));
        json_array_append_new(arr, json_pack("{s:I,s:I,s:s,s:s,s:s,s:o,s:o,s:s,s:s}", "id", (json_int_t)id,
                                             "time", (json_int_t)atoll(store_rows_get(r, i, 1)),
                                             "user", store_rows_get(r, i, 2),
                                             "action", store_rows_get(r, i, 3),
                                             "object", store_rows_get(r, i, 4),
                                             "old", parse_value(store_rows_get(r, i, 5)),
                                             "new", parse_value(store_rows_get(r, i, 6)),
                                             "source", store_rows_get(r, i, 7),
                                             "result", store_rows_get(r, i, 8)));
        *last = id;
    }
    store_rows_free(r);
    return 0;
}

int events_list(manager *m, const events_filter *f, long long since, int limit, int wait_s, json_t **out)
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
        int rc = query(m, f, since, limit, arr, &last);
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
            rc = query(m, f, since, limit, arr, &last);
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
