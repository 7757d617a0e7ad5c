/* vmseal-managerd store, users/sessions and events, against a real
 * database: SQLite in a temp folder by default, or the PostgreSQL server
 * named by $VMSEAL_TEST_PG (tests/managerd/test_postgres.sh starts one). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "managerd.h"

/* Whether name is one of the space-separated privileges in list. */
static int listed(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ' ');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, name, n))
            return 1;
        p = e ? e + 1 : p + len;
    }
    return 0;
}

static char dir[64];
static char uri[1024];
static mgr_config cfg;

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/vmseal-mstore.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    const char *pg = getenv("VMSEAL_TEST_PG");
    if (pg && *pg)
        snprintf(uri, sizeof(uri), "%s", pg);
    else
        snprintf(uri, sizeof(uri), "%s/test.db", dir);
    cfg.token_ttl_s = 2;
    cfg.kms_dir = dir;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A manager over a fresh database (tables emptied). */
static void mgr_open(manager *m)
{
    memset(m, 0, sizeof(*m));
    m->cfg = &cfg;
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->changed, NULL);
    assert_int_equal(store_open(uri, &m->db), 0);
    static const char *const tables[] = {"sessions", "permissions", "group_members", "groups",
                                         "login_failures", "users", "events", "kms_servers",
                                         "kms_providers", "keks", "tasks", "vms", "hosts", "roles"};
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        char sql[64];
        snprintf(sql, sizeof(sql), "DELETE FROM %s", tables[i]);
        assert_true(store_exec(m->db, sql, 0, NULL, NULL) >= 0);
    }
    assert_int_equal(auth_seed_roles(m->db), 0);
}

static void mgr_close(manager *m)
{
    store_close(m->db);
    pthread_cond_destroy(&m->changed);
    pthread_mutex_destroy(&m->lock);
}

static void test_store_basics(void **state)
{
    (void)state;
    manager m;
    mgr_open(&m);
    /* parameters, NULLs, RETURNING, counts of changed rows */
    store_rows *r = NULL;
    assert_int_equal(store_execv(m.db, &r,
                                 "INSERT INTO events (time, user_name, action, object, old_value, new_value) "
                                 "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                                 "10", "u", "a", "o", NULL, "{\"x\":1}", STORE_END), 0);
    assert_int_equal(store_rows_count(r), 1);
    long long id = atoll(store_rows_get(r, 0, 0));
    assert_true(id > 0);
    store_rows_free(r);
    char ids[32];
    snprintf(ids, sizeof(ids), "%lld", id);
    assert_int_equal(store_execv(m.db, &r, "SELECT old_value, new_value, time FROM events WHERE id = $1",
                                 ids, STORE_END), 0);
    assert_null(store_rows_get(r, 0, 0));
    assert_string_equal(store_rows_get(r, 0, 1), "{\"x\":1}");
    assert_string_equal(store_rows_get(r, 0, 2), "10");
    assert_null(store_rows_get(r, 1, 0));   /* out of range */
    assert_null(store_rows_get(r, 0, 3));
    store_rows_free(r);
    assert_int_equal(store_execv(m.db, NULL, "UPDATE events SET time = $2 WHERE id = $1", ids, "11",
                                 STORE_END), 1);
    assert_int_equal(store_execv(m.db, NULL, "UPDATE events SET time = 1 WHERE id = -5", STORE_END), 0);
    /* text with quotes and dollar signs is data, not SQL */
    assert_int_equal(store_execv(m.db, NULL, "INSERT INTO hosts (name, url, datastore, subject, "
                                 "fingerprint, registered, last_seen) VALUES ($1, $2, $3, $4, $5, 1, 1)",
                                 "h'1", "https://x", "$1 '; DROP TABLE users; --", "s", "f", STORE_END), 1);
    assert_int_equal(store_execv(m.db, &r, "SELECT datastore FROM hosts WHERE name = $1", "h'1", STORE_END), 0);
    assert_string_equal(store_rows_get(r, 0, 0), "$1 '; DROP TABLE users; --");
    store_rows_free(r);
    /* unique violation is -EEXIST */
    assert_int_equal(store_execv(m.db, NULL, "INSERT INTO hosts (name, url, datastore, subject, "
                                 "fingerprint, registered, last_seen) VALUES ($1, 'u', 'd', 's', 'f', 1, 1)",
                                 "h'1", STORE_END), -EEXIST);
    /* SQL errors are reported, not crashes */
    assert_true(store_execv(m.db, NULL, "SELEKT 1", STORE_END) < 0);
    assert_true(strlen(vmseal_last_error()) > 0);
    mgr_close(&m);
}

static int tx_insert_then_fail(store *s, void *arg)
{
    int *fail = arg;
    int rc = store_execv(s, NULL, "INSERT INTO roles (name, privileges) VALUES ('txrole', 'x')", STORE_END);
    if (rc < 0)
        return rc;
    return *fail ? vmseal_fail(EIO, "deliberate failure") : 0;
}

static void test_store_transactions(void **state)
{
    (void)state;
    manager m;
    mgr_open(&m);
    int fail = 1;
    assert_int_equal(store_tx(m.db, tx_insert_then_fail, &fail), -EIO);
    assert_string_equal(vmseal_last_error(), "deliberate failure");
    store_rows *r = NULL;
    assert_int_equal(store_execv(m.db, &r, "SELECT COUNT(*) FROM roles WHERE name = 'txrole'", STORE_END), 0);
    assert_string_equal(store_rows_get(r, 0, 0), "0");   /* rolled back */
    store_rows_free(r);
    fail = 0;
    assert_int_equal(store_tx(m.db, tx_insert_then_fail, &fail), 0);
    assert_int_equal(store_execv(m.db, &r, "SELECT COUNT(*) FROM roles WHERE name = 'txrole'", STORE_END), 0);
    assert_string_equal(store_rows_get(r, 0, 0), "1");
    store_rows_free(r);
    /* a second open finds the schema in place (idempotent) and the data */
    store *again = NULL;
    assert_int_equal(store_open(uri, &again), 0);
    assert_int_equal(store_execv(again, &r, "SELECT value FROM meta WHERE key = 'schema'", STORE_END), 0);
    assert_string_equal(store_rows_get(r, 0, 0), STORE_SCHEMA_VERSION);
    store_rows_free(r);
    store_close(again);
    mgr_close(&m);
}

static void test_password_hash(void **state)
{
    (void)state;
    char h1[256], h2[256];
    assert_int_equal(auth_password_hash("correct horse", 13, h1, sizeof(h1)), 0);
    assert_int_equal(auth_password_hash("correct horse", 13, h2, sizeof(h2)), 0);
    assert_string_not_equal(h1, h2);   /* salted */
    assert_int_equal(strncmp(h1, "scrypt$15$8$1$", 14), 0);
    assert_null(strstr(h1, "correct"));
    assert_int_equal(auth_password_verify("correct horse", 13, h1), 0);
    assert_int_equal(auth_password_verify("correct horsf", 13, h1), -EACCES);
    assert_int_equal(auth_password_verify("correct hors", 12, h1), -EACCES);
    assert_int_equal(auth_password_verify("x", 1, "plain"), -EINVAL);
    assert_int_equal(auth_password_verify("x", 1, "scrypt$40$8$1$00$00"), -EINVAL);
    char small[16];
    assert_true(auth_password_hash("pw", 2, small, sizeof(small)) < 0);
}

static void test_users_sessions(void **state)
{
    (void)state;
    manager m;
    mgr_open(&m);
    assert_int_equal(auth_user_create(&m, "-", "alice", "alicepassword", "Administrator"), 0);
    assert_int_equal(auth_user_create(&m, "-", "bob", "bobpassword", "NoCryptoAdmin"), 0);
    assert_int_equal(auth_user_create(&m, "-", "carl", "carlpassword", "NoCryptoAdmin"), 0);
    assert_int_equal(auth_user_create(&m, "-", "alice", "x", "Administrator"), -EEXIST);
    assert_int_equal(auth_user_create(&m, "-", "carol", "carolpassword", "NoSuchRole"), -ENOENT);
    assert_int_equal(auth_user_create(&m, "-", "../evil", "pw", "Administrator"), -EINVAL);
    /* the hash is stored, never the password */
    store_rows *r = NULL;
    assert_int_equal(store_execv(m.db, &r, "SELECT pwhash FROM users WHERE name = 'alice'", STORE_END), 0);
    assert_null(strstr(store_rows_get(r, 0, 0), "alicepassword"));
    store_rows_free(r);

    char token[80];
    int64_t exp = 0;
    assert_int_equal(auth_login(&m, "alice", "wrong", token, sizeof(token), &exp), -EACCES);
    assert_int_equal(auth_login(&m, "nobody", "alicepassword", token, sizeof(token), &exp), -EACCES);
    assert_int_equal(auth_login(&m, "alice", "alicepassword", token, sizeof(token), &exp), 0);
    assert_int_equal(strlen(token), 64);
    assert_true(exp > mgr_now());
    /* only the token's hash is stored */
    assert_int_equal(store_execv(m.db, &r, "SELECT token_hash FROM sessions", STORE_END), 0);
    assert_int_equal(store_rows_count(r), 1);
    assert_string_not_equal(store_rows_get(r, 0, 0), token);
    store_rows_free(r);

    char user[80], role[80], *privs = NULL;
    assert_int_equal(auth_session(&m, token, user, sizeof(user), role, sizeof(role), &privs), 0);
    assert_string_equal(user, "alice");
    assert_string_equal(role, "Administrator");
    assert_true(listed(privs, "Cryptographer.Encrypt"));
    assert_true(listed(privs, "Cryptographer.ManageKeyServers"));
    assert_false(listed(privs, "Cryptographer"));

    /* No cryptography administrator: everything but Cryptographer.* */
    char btok[80];
    assert_int_equal(auth_login(&m, "carl", "carlpassword", btok, sizeof(btok), &exp), 0);
    assert_int_equal(auth_session(&m, btok, user, sizeof(user), role, sizeof(role), &privs), 0);
    assert_string_equal(user, "carl");
    assert_false(listed(privs, "Cryptographer.Encrypt"));
    assert_false(listed(privs, "Cryptographer.Decrypt"));
    assert_false(listed(privs, "Cryptographer.ManageKeyServers"));
    assert_true(listed(privs, "VirtualMachine.Interact.PowerOn"));
    assert_true(listed(privs, "Authorization.ModifyPermissions"));

    /* bad, unknown, logged out and expired tokens */
    assert_int_equal(auth_session(&m, NULL, user, sizeof(user), role, sizeof(role), &privs), -EACCES);
    assert_int_equal(auth_session(&m, "short", user, sizeof(user), role, sizeof(role), &privs), -EACCES);
    char forged[65];
    memset(forged, 'a', 64);
    forged[64] = '\0';
    assert_int_equal(auth_session(&m, forged, user, sizeof(user), role, sizeof(role), &privs), -EACCES);
    assert_int_equal(auth_logout(&m, btok), 0);
    assert_int_equal(auth_session(&m, btok, user, sizeof(user), role, sizeof(role), &privs), -EACCES);
    sleep(3);   /* token_ttl is 2 s in this test */
    assert_int_equal(auth_session(&m, token, user, sizeof(user), role, sizeof(role), &privs), -EACCES);
    free(privs);
    /* five failures lock the name for a minute, even with the right password */
    char tok2[80];
    for (int i = 0; i < 5; i++)
        assert_int_equal(auth_login(&m, "bob", "guess", tok2, sizeof(tok2), &exp), -EACCES);
    assert_int_equal(auth_login(&m, "bob", "bobpassword", tok2, sizeof(tok2), &exp), -EAGAIN);
    assert_non_null(strstr(vmseal_last_error(), "too many failed logins"));
    for (int i = 0; i < 5; i++)
        assert_int_equal(auth_login(&m, "ghost", "guess", tok2, sizeof(tok2), &exp), -EACCES);
    assert_int_equal(auth_login(&m, "ghost", "guess", tok2, sizeof(tok2), &exp), -EAGAIN);
    /* other names are not affected */
    assert_int_equal(auth_login(&m, "alice", "alicepassword", tok2, sizeof(tok2), &exp), 0);
    /* the lock is in the database: a restarted manager still refuses */
    mgr_close(&m);
    assert_int_equal(store_open(uri, &m.db), 0);
    pthread_mutex_init(&m.lock, NULL);
    pthread_cond_init(&m.changed, NULL);
    assert_int_equal(auth_login(&m, "bob", "bobpassword", tok2, sizeof(tok2), &exp), -EAGAIN);

    mgr_close(&m);
}

/* 40 wrong passwords at once: at most five are checked, the rest are
 * refused as locked (the count is taken before the check, atomically). */
struct guesser {
    manager *m;
    int rc;
};

static void *guess(void *arg)
{
    struct guesser *g = arg;
    char tok[80];
    int64_t exp;
    g->rc = auth_login(g->m, "dora", "wrongpassword", tok, sizeof(tok), &exp);
    return NULL;
}

static void test_login_flood(void **state)
{
    (void)state;
    manager m;
    mgr_open(&m);
    assert_int_equal(auth_user_create(&m, "-", "dora", "dorapassword", "ReadOnly"), 0);
    enum { N = 40 };
    pthread_t t[N];
    struct guesser g[N];
    for (int i = 0; i < N; i++) {
        g[i] = (struct guesser){.m = &m};
        assert_int_equal(pthread_create(&t[i], NULL, guess, &g[i]), 0);
    }
    int checked = 0, locked = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        checked += g[i].rc == -EACCES;
        locked += g[i].rc == -EAGAIN || g[i].rc == -ENOBUFS;
    }
    assert_true(checked <= 5);
    assert_int_equal(checked + locked, N);
    char tok[80];
    int64_t exp;
    assert_int_equal(auth_login(&m, "dora", "dorapassword", tok, sizeof(tok), &exp), -EAGAIN);
    mgr_close(&m);
}

/* Effective privileges: the most specific level wins, user over group,
 * groups united, propagation. */
static void grant(manager *m, const char *principal, int is_group, const char *object, const char *role,
                  int propagate)
{
    assert_true(store_execv(m->db, NULL,
                            "INSERT INTO permissions (principal, is_group, object, role, propagate, created) "
                            "VALUES ($1, $2, $3, $4, $5, 0)",
                            principal, is_group ? "1" : "0", object, role, propagate ? "1" : "0", STORE_END) >= 0);
}

static int may(manager *m, const char *user, const char *object, const char *priv)
{
    privset p = 0;
    assert_int_equal(authz_effective(m, user, object, &p, NULL), 0);
    return (p >> privset_index(priv)) & 1;
}

static void test_authz(void **state)
{
    (void)state;
    manager m;
    mgr_open(&m);
    assert_int_equal(auth_user_create(&m, "-", "ann", "annpassword", "Administrator"), 0);
    assert_int_equal(auth_user_create(&m, "-", "ed", "edpassword1", "NoAccess"), 0);
    assert_true(store_execv(m.db, NULL, "INSERT INTO hosts (name, url, datastore, subject, fingerprint, registered, "
                                        "last_seen) VALUES ('h1', 'https://x', '/d', 's', 'f', 0, 0)", STORE_END) >= 0);
    assert_true(store_execv(m.db, NULL, "INSERT INTO vms (uuid, name, host, spec, policy, created, folder) VALUES "
                                        "('u1', 'vm1', 'h1', '{}', 'none', 0, 'prod'), "
                                        "('u2', 'vm2', 'h1', '{}', 'none', 0, '')", STORE_END) >= 0);
    /* the root role reaches everything */
    assert_true(may(&m, "ann", "vm:vm1", "Cryptographer.Decrypt"));
    assert_false(may(&m, "ed", "vm:vm1", "System.Read"));
    /* NoAccess on one VM hides it from an Administrator */
    grant(&m, "ann", 0, "vm:vm1", "NoAccess", 0);
    assert_false(may(&m, "ann", "vm:vm1", "System.Read"));
    assert_true(may(&m, "ann", "vm:vm2", "System.Read"));
    /* a role on a host reaches its VMs when it propagates, not otherwise */
    grant(&m, "ed", 0, "host:h1", "ReadOnly", 0);
    assert_true(may(&m, "ed", "host:h1", "System.Read"));
    assert_false(may(&m, "ed", "vm:vm2", "System.Read"));
    assert_true(store_execv(m.db, NULL, "UPDATE permissions SET propagate = 1 WHERE principal = 'ed'", STORE_END) > 0);
    assert_true(may(&m, "ed", "vm:vm2", "System.Read"));
    assert_false(may(&m, "ed", "vm:vm2", "VirtualMachine.Interact.PowerOn"));
    /* groups: united at the same level; the user's own permission wins */
    assert_true(store_execv(m.db, NULL, "INSERT INTO groups (name, created) VALUES ('ops', 0), ('sec', 0)", STORE_END) >= 0);
    assert_true(store_execv(m.db, NULL, "INSERT INTO group_members (group_name, user_name) VALUES ('ops', 'ed'), "
                                        "('sec', 'ed')", STORE_END) >= 0);
    assert_true(store_execv(m.db, NULL, "INSERT INTO roles (name, privileges, builtin) VALUES "
                                        "('Power', 'System.Read VirtualMachine.Interact.PowerOn', 0), "
                                        "('Crypt', 'Cryptographer.Encrypt', 0)", STORE_END) >= 0);
    grant(&m, "ops", 1, "folder:prod", "Power", 1);
    grant(&m, "sec", 1, "folder:prod", "Crypt", 1);
    assert_true(may(&m, "ed", "vm:vm1", "VirtualMachine.Interact.PowerOn"));
    assert_true(may(&m, "ed", "vm:vm1", "Cryptographer.Encrypt"));
    assert_false(may(&m, "ed", "vm:vm1", "Cryptographer.Decrypt"));
    grant(&m, "ed", 0, "folder:prod", "ReadOnly", 1);
    assert_false(may(&m, "ed", "vm:vm1", "VirtualMachine.Interact.PowerOn"));
    /* dominance: ann (Administrator) does not hold what ed holds on vm1? ann
     * has NoAccess there, so she cannot change ed */
    char obj[96];
    const char *miss = NULL;
    assert_int_equal(authz_dominates(&m, "ann", "ed", obj, sizeof(obj), &miss), 0);
    assert_null(miss);   /* ed's permissions are on host:h1 and folder:prod, where ann is Administrator */
    grant(&m, "ed", 0, "vm:vm1", "ReadOnly", 0);
    assert_int_equal(authz_dominates(&m, "ann", "ed", obj, sizeof(obj), &miss), 0);
    assert_non_null(miss);
    assert_string_equal(obj, "vm:vm1");
    assert_int_equal(authz_dominates(&m, "ed", "ann", obj, sizeof(obj), &miss), 0);
    assert_non_null(miss);
    mgr_close(&m);
}

/* The event chain finds an edited, a deleted and a reordered record. */
static void test_event_chain(void **state)
{
    (void)state;
    manager m;
    mgr_open(&m);
    for (int i = 0; i < 6; i++) {
        json_t *nv = json_pack("{s:i}", "n", i);
        assert_int_equal(event_record(&m, "alice", "test.event", "obj", NULL, nv, i == 3 ? "denied" : "ok"), 0);
        json_decref(nv);
    }
    json_t *out = NULL;
    assert_int_equal(events_verify(&m, &out), 0);
    assert_true(json_is_true(json_object_get(out, "ok")));
    assert_int_equal(json_integer_value(json_object_get(out, "records")), 6);
    json_decref(out);
    store_rows *r = NULL;
    assert_int_equal(store_execv(m.db, &r, "SELECT id FROM events ORDER BY id", STORE_END), 0);
    long long id0 = atoll(store_rows_get(r, 0, 0));
    store_rows_free(r);
    char id[32], id2[32];
    /* filters: result and user */
    events_filter f = {.result = "denied"};
    assert_int_equal(events_list(&m, &f, 0, 100, 0, &out), 0);
    assert_int_equal(json_array_size(json_object_get(out, "events")), 1);
    json_decref(out);
    events_filter f2 = {.user = "bob"};
    assert_int_equal(events_list(&m, &f2, 0, 100, 0, &out), 0);
    assert_int_equal(json_array_size(json_object_get(out, "events")), 0);
    json_decref(out);
    events_filter f3 = {.action = "test."};
    assert_int_equal(events_list(&m, &f3, 0, 100, 0, &out), 0);
    assert_int_equal(json_array_size(json_object_get(out, "events")), 6);
    json_decref(out);
    /* edit one record: "denied" made "ok" */
    snprintf(id, sizeof(id), "%lld", id0 + 3);
    assert_true(store_execv(m.db, NULL, "UPDATE events SET result = 'ok' WHERE id = $1", id, STORE_END) > 0);
    assert_int_equal(events_verify(&m, &out), 0);
    assert_false(json_is_true(json_object_get(out, "ok")));
    assert_int_equal(json_integer_value(json_object_get(out, "first_bad")), id0 + 3);
    assert_non_null(strstr(json_string_value(json_object_get(out, "reason")), "edited"));
    json_decref(out);
    /* the true value again: intact */
    assert_true(store_execv(m.db, NULL, "UPDATE events SET result = 'denied' WHERE id = $1", id, STORE_END) > 0);
    assert_int_equal(events_verify(&m, &out), 0);
    assert_true(json_is_true(json_object_get(out, "ok")));
    json_decref(out);
    /* swap the contents of two records (reorder) */
    snprintf(id, sizeof(id), "%lld", id0 + 1);
    snprintf(id2, sizeof(id2), "%lld", id0 + 4);
    assert_true(store_execv(m.db, NULL, "UPDATE events SET new_value = '{\"n\":4}' WHERE id = $1", id, STORE_END) > 0);
    assert_true(store_execv(m.db, NULL, "UPDATE events SET new_value = '{\"n\":1}' WHERE id = $1", id2, STORE_END) > 0);
    assert_int_equal(events_verify(&m, &out), 0);
    assert_int_equal(json_integer_value(json_object_get(out, "first_bad")), id0 + 1);
    json_decref(out);
    assert_true(store_execv(m.db, NULL, "UPDATE events SET new_value = '{\"n\":1}' WHERE id = $1", id, STORE_END) > 0);
    assert_true(store_execv(m.db, NULL, "UPDATE events SET new_value = '{\"n\":4}' WHERE id = $1", id2, STORE_END) > 0);
    /* delete record 2: record 3 is named */
    assert_true(store_execv(m.db, NULL, "DELETE FROM events WHERE id = $1", id, STORE_END) > 0);
    assert_int_equal(events_verify(&m, &out), 0);
    assert_false(json_is_true(json_object_get(out, "ok")));
    assert_int_equal(json_integer_value(json_object_get(out, "first_bad")), id0 + 2);
    assert_int_equal(json_integer_value(json_object_get(out, "records")), 1);
    json_decref(out);
    mgr_close(&m);
}

/* A schema 1 database (as the previous release wrote it) is migrated to
 * the current one, step by step: new columns, RecryptVM renamed in stored
 * roles, old events chained. */
static void test_migrate_schema1(void **state)
{
    (void)state;
    if (getenv("VMSEAL_TEST_PG") && *getenv("VMSEAL_TEST_PG"))
        skip();
    char path[128];
    snprintf(path, sizeof(path), "%s/v1.db", dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    const char *v1 =
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema', '1');"
        "CREATE TABLE roles (name TEXT PRIMARY KEY, privileges TEXT NOT NULL, builtin INTEGER NOT NULL DEFAULT 0);"
        "INSERT INTO roles VALUES ('Rekeyer', 'System.Read Cryptographer.RecryptVM', 0);"
        "CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, role TEXT NOT NULL "
        "REFERENCES roles(name), pwhash TEXT NOT NULL, created INTEGER NOT NULL, pw_changed INTEGER NOT NULL);"
        "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, user_name TEXT NOT NULL, "
        "action TEXT NOT NULL, object TEXT NOT NULL, old_value TEXT, new_value TEXT);"
        "INSERT INTO events (time, user_name, action, object, old_value, new_value) VALUES "
        "(1, 'a', 'user.create', 'a', NULL, '{\"role\":\"Administrator\"}'), (2, 'a', 'kms.add', 'k', NULL, NULL);"
        "CREATE TABLE hosts (name TEXT PRIMARY KEY, url TEXT NOT NULL, datastore TEXT NOT NULL, subject TEXT NOT NULL, "
        "fingerprint TEXT NOT NULL, registered INTEGER NOT NULL, last_seen INTEGER NOT NULL);"
        "INSERT INTO hosts VALUES ('h', 'https://h', '/d', 's', 'f', 0, 0);"
        "CREATE TABLE vms (uuid TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, host TEXT NOT NULL, spec TEXT NOT NULL, "
        "policy TEXT NOT NULL, kek_id TEXT, provider TEXT, created INTEGER NOT NULL);"
        "INSERT INTO vms VALUES ('u', 'vm', 'h', '{}', 'none', NULL, NULL, 0);";
    assert_int_equal(sqlite3_exec(db, v1, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    manager m = {.cfg = &cfg};
    pthread_mutex_init(&m.lock, NULL);
    pthread_cond_init(&m.changed, NULL);
    assert_int_equal(store_open(path, &m.db), 0);
    assert_int_equal(auth_seed_roles(m.db), 0);
    assert_int_equal(events_chain_legacy(&m), 0);
    store_rows *r = NULL;
    assert_int_equal(store_execv(m.db, &r, "SELECT privileges FROM roles WHERE name = 'Rekeyer'", STORE_END), 0);
    assert_string_equal(store_rows_get(r, 0, 0), "System.Read Cryptographer.Recrypt");
    store_rows_free(r);
    assert_int_equal(store_execv(m.db, &r, "SELECT value FROM meta WHERE key = 'schema'", STORE_END), 0);
    assert_string_equal(store_rows_get(r, 0, 0), STORE_SCHEMA_VERSION);
    store_rows_free(r);
    assert_int_equal(store_execv(m.db, &r, "SELECT folder FROM vms", STORE_END), 0);
    assert_string_equal(store_rows_get(r, 0, 0), "");
    store_rows_free(r);
    /* schema 3: a VM's change counter and last host view, task tries */
    assert_int_equal(store_execv(m.db, &r, "SELECT gen, host_view FROM vms", STORE_END), 0);
    assert_string_equal(store_rows_get(r, 0, 0), "0");
    assert_null(store_rows_get(r, 0, 1));
    store_rows_free(r);
    assert_int_equal(store_execv(m.db, &r, "SELECT attempts, next_try FROM tasks", STORE_END), 0);
    assert_int_equal(store_rows_count(r), 0);
    store_rows_free(r);
    json_t *out = NULL;
    assert_int_equal(events_verify(&m, &out), 0);
    assert_true(json_is_true(json_object_get(out, "ok")));
    assert_int_equal(json_integer_value(json_object_get(out, "records")), 2);
    json_decref(out);
    /* new events continue the chain */
    assert_int_equal(event_add(&m, "b", "vm.create", "x", NULL, NULL), 0);
    assert_int_equal(events_verify(&m, &out), 0);
    assert_true(json_is_true(json_object_get(out, "ok")));
    json_decref(out);
    /* chaining happens once: a hash removed later is a failure, not refilled */
    assert_true(store_execv(m.db, NULL, "UPDATE events SET hash = NULL WHERE id = 1", STORE_END) > 0);
    assert_int_equal(events_chain_legacy(&m), 0);
    assert_int_equal(events_verify(&m, &out), 0);
    assert_false(json_is_true(json_object_get(out, "ok")));
    json_decref(out);
    mgr_close(&m);
}

/* A schema 2 database with tasks and VMs gets the columns of schema 3
 * (task tries, a VM's change counter and last host view); its rows stay. */
static void test_migrate_schema2(void **state)
{
    (void)state;
    if (getenv("VMSEAL_TEST_PG") && *getenv("VMSEAL_TEST_PG"))
        skip();
    char path[128];
    snprintf(path, sizeof(path), "%s/v2.db", dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    const char *v2 =
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema', '2');"
        "CREATE TABLE vms (uuid TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, host TEXT NOT NULL, spec TEXT NOT NULL, "
        "policy TEXT NOT NULL, kek_id TEXT, provider TEXT, created INTEGER NOT NULL, folder TEXT NOT NULL DEFAULT '');"
        "INSERT INTO vms VALUES ('u', 'vm', 'h', '{}', 'encrypted', 'k1', 'p', 0, '');"
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY AUTOINCREMENT, vm_uuid TEXT NOT NULL, action TEXT NOT NULL, "
        "host TEXT NOT NULL, host_task TEXT, state TEXT NOT NULL, progress INTEGER NOT NULL, error TEXT, "
        "user_name TEXT NOT NULL, params TEXT NOT NULL, created INTEGER NOT NULL, updated INTEGER NOT NULL);"
        "INSERT INTO tasks (vm_uuid, action, host, host_task, state, progress, user_name, params, created, updated) "
        "VALUES ('u', 'decrypt', 'h', 'ht', 'running', 40, 'a', '{}', 1, 2);";
    assert_int_equal(sqlite3_exec(db, v2, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    store *st = NULL;
    assert_int_equal(store_open(path, &st), 0);
    store_rows *r = NULL;
    assert_int_equal(store_execv(st, &r, "SELECT value FROM meta WHERE key = 'schema'", STORE_END), 0);
    assert_string_equal(store_rows_get(r, 0, 0), STORE_SCHEMA_VERSION);
    store_rows_free(r);
    assert_int_equal(store_execv(st, &r, "SELECT state, progress, attempts, next_try FROM tasks", STORE_END), 0);
    assert_int_equal(store_rows_count(r), 1);
    assert_string_equal(store_rows_get(r, 0, 0), "running");
    assert_string_equal(store_rows_get(r, 0, 1), "40");
    assert_string_equal(store_rows_get(r, 0, 2), "0");
    assert_string_equal(store_rows_get(r, 0, 3), "0");
    store_rows_free(r);
    assert_int_equal(store_execv(st, &r, "SELECT kek_id, gen, host_view FROM vms", STORE_END), 0);
    assert_string_equal(store_rows_get(r, 0, 0), "k1");
    assert_string_equal(store_rows_get(r, 0, 1), "0");
    assert_null(store_rows_get(r, 0, 2));
    store_rows_free(r);
    store_close(st);
    /* opened again: nothing left to migrate */
    assert_int_equal(store_open(path, &st), 0);
    store_close(st);
}

static const char *row1(manager *m, const char *sql, const char *param)
{
    static char buf[4][256];
    static int i;
    store_rows *r = NULL;
    assert_true(store_execv(m->db, &r, sql, param, STORE_END) >= 0);
    char *b = buf[i++ % 4];
    snprintf(b, 256, "%s", store_rows_count(r) && store_rows_get(r, 0, 0) ? store_rows_get(r, 0, 0) : "");
    store_rows_free(r);
    return b;
}

/* The task journal's statements on this database (SQLite or PostgreSQL),
 * with hosts and key providers that cannot be reached: an intent recorded,
 * ended when its KEK cannot be handed over, run again, a host's view of a
 * VM taken, a host's unfinished operation adopted, cancelled, let go. */
static void test_tasks_sql(void **state)
{
    (void)state;
    manager m;
    mgr_open(&m);
    cfg.task_retries = 3;
    cfg.task_retry_delay_ms = 100;
    const char *u = "55555555-5555-4555-8555-555555555555";
    assert_true(store_execv(m.db, NULL, "INSERT INTO hosts (name, url, datastore, subject, fingerprint, registered, "
                            "last_seen) VALUES ('h1', 'https://127.0.0.1:9', '/d', 'CN=h1', 'f', 0, 0)",
                            STORE_END) >= 0);
    assert_true(store_execv(m.db, NULL, "INSERT INTO vms (uuid, name, host, spec, policy, created) VALUES "
                            "($1, 'v1', 'h1', '{}', 'none', 0)", u, STORE_END) >= 0);
    /* an intent: recorded with its KEK, ended when the KEK cannot be pushed */
    json_t *params = json_pack("{s:s,s:s,s:s,s:s}", "old_policy", "none", "policy", "encrypted", "kek_id", "k1",
                               "kms", "nokms");
    task_intent in = {.user = "alice", .vm_uuid = u, .vm_name = "v1", .host = "h1", .action = "encrypt",
                      .params = params, .new_kek = "k1", .new_kms = "nokms"};
    json_t *out = NULL;
    assert_int_equal(tasks_run(&m, &in, &out), -EREMOTEIO);
    assert_null(out);
    const char *id = row1(&m, "SELECT id FROM tasks WHERE vm_uuid = $1", u);
    assert_string_equal(row1(&m, "SELECT state FROM tasks WHERE vm_uuid = $1", u), "error");
    assert_string_equal(row1(&m, "SELECT state FROM keks WHERE kek_id = $1", "k1"), "unused");
    assert_int_equal(tasks_open_for(&m, u), 0);
    /* a second intent with the same KEK id (another VM's): refused, nothing recorded */
    in.vm_uuid = "66666666-6666-4666-8666-666666666666";
    assert_int_equal(tasks_run(&m, &in, &out), -EEXIST);
    in.vm_uuid = u;
    /* cancel of an ended task: refused; resume: run again (and ended again) */
    long long tid = atoll(id);
    assert_int_equal(tasks_cancel(&m, "alice", tid, &out), -EALREADY);
    assert_int_equal(tasks_resume(&m, "alice", tid, &out), -EREMOTEIO);
    assert_string_equal(row1(&m, "SELECT state FROM tasks WHERE id = $1", id), "error");
    assert_string_equal(row1(&m, "SELECT state FROM keks WHERE kek_id = $1", "k1"), "unused");
    /* the host's view: encrypted under k1 (recorded for this VM) -> taken */
    json_t *hv = json_pack("{s:b,s:s,s:n}", "encrypted", 1, "kek_id", "k1", "pending_operation");
    assert_int_equal(tasks_sync_vm(&m, u, hv), 0);
    json_decref(hv);
    assert_string_equal(row1(&m, "SELECT policy FROM vms WHERE uuid = $1", u), "encrypted");
    assert_string_equal(row1(&m, "SELECT kek_id FROM vms WHERE uuid = $1", u), "k1");
    assert_string_equal(row1(&m, "SELECT state FROM keks WHERE kek_id = $1", "k1"), "active");
    assert_string_equal(row1(&m, "SELECT action FROM events WHERE object = $1 ORDER BY id DESC LIMIT 1", "v1"),
                        "vm.reconcile");
    /* a KEK the manager never recorded for it: not taken */
    hv = json_pack("{s:b,s:s,s:n}", "encrypted", 1, "kek_id", "k9", "pending_operation");
    assert_int_equal(tasks_sync_vm(&m, u, hv), 0);
    json_decref(hv);
    assert_string_equal(row1(&m, "SELECT kek_id FROM vms WHERE uuid = $1", u), "k1");
    /* an unfinished deep recrypt on the host: followed as a task */
    assert_true(store_execv(m.db, NULL, "INSERT INTO keks (kek_id, provider, vm_uuid, state, created) VALUES "
                            "('k2', 'nokms', $1, 'pending', 1)", u, STORE_END) >= 0);
    hv = json_pack("{s:b,s:s,s:s,s:s}", "encrypted", 1, "kek_id", "k1", "pending_operation", "recrypt-deep",
                   "pending_kek", "k2");
    assert_int_equal(tasks_sync_vm(&m, u, hv), 1);
    assert_int_equal(tasks_sync_vm(&m, u, hv), 0);   /* one task, not two */
    json_decref(hv);
    long long adopted = tasks_open_for(&m, u);
    assert_true(adopted > tid);
    assert_int_equal(tasks_get(&m, adopted, &out), 0);
    assert_string_equal(json_string_value(json_object_get(out, "action")), "recrypt-deep");
    assert_string_equal(json_string_value(json_object_get(out, "state")), "running");
    assert_true(json_is_true(json_object_get(json_object_get(out, "params"), "adopted")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(out, "params"), "kms")), "nokms");
    json_decref(out);
    /* cancel, then let go (unregister): ended, k2 left as it was */
    assert_int_equal(tasks_cancel(&m, "alice", adopted, &out), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(out, "task"), "state")), "cancelling");
    json_decref(out);
    assert_int_equal(tasks_resume(&m, "alice", adopted, &out), -EBUSY);   /* going back now */
    assert_int_equal(tasks_let_go(&m, u), 0);
    assert_int_equal(tasks_open_for(&m, u), 0);
    assert_string_equal(row1(&m, "SELECT state FROM keks WHERE kek_id = $1", "k2"), "pending");
    assert_int_equal(tasks_list(&m, &out), 0);
    assert_int_equal(json_array_size(json_object_get(out, "tasks")), 2);
    json_decref(out);
    json_decref(params);
    mgr_close(&m);
}

struct waiter {
    manager *m;
    long long since;
    json_t *out;
};

static void *wait_events(void *arg)
{
    struct waiter *w = arg;
    if (events_list(w->m, NULL, w->since, 10, 5, &w->out) < 0)
        w->out = NULL;
    return NULL;
}

static void test_events(void **state)
{
    (void)state;
    manager m;
    mgr_open(&m);
    json_t *ov = json_pack("{s:i}", "memory_mb", 6144);
    json_t *nv = json_pack("{s:i}", "memory_mb", 10240);
    assert_int_equal(event_add(&m, "alice", "vm.reconfigure", "vm1", ov, nv), 0);
    assert_int_equal(event_add(&m, "bob", "kms.add", "k1", NULL, nv), 0);
    json_t *out = NULL;
    assert_int_equal(events_list(&m, NULL, 0, 100, 0, &out), 0);
    json_t *evs = json_object_get(out, "events");
    assert_int_equal(json_array_size(evs), 2);
    json_t *e0 = json_array_get(evs, 0);
    assert_string_equal(json_string_value(json_object_get(e0, "user")), "alice");
    assert_string_equal(json_string_value(json_object_get(e0, "action")), "vm.reconfigure");
    assert_string_equal(json_string_value(json_object_get(e0, "object")), "vm1");
    assert_true(json_equal(json_object_get(e0, "old"), ov));
    assert_true(json_equal(json_object_get(e0, "new"), nv));
    assert_true(json_is_null(json_object_get(json_array_get(evs, 1), "old")));
    long long first = json_integer_value(json_object_get(e0, "id"));
    long long last = json_integer_value(json_object_get(out, "last"));
    assert_true(last > first);
    json_decref(out);
    /* since and limit */
    assert_int_equal(events_list(&m, NULL, first, 100, 0, &out), 0);
    assert_int_equal(json_array_size(json_object_get(out, "events")), 1);
    json_decref(out);
    assert_int_equal(events_list(&m, NULL, 0, 1, 0, &out), 0);
    assert_int_equal(json_array_size(json_object_get(out, "events")), 1);
    json_decref(out);
    /* negative since: the last N */
    assert_int_equal(events_list(&m, NULL, -1, 100, 0, &out), 0);
    assert_int_equal(json_array_size(json_object_get(out, "events")), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(out, "events"), 0),
                                                          "action")), "kms.add");
    json_decref(out);
    /* nothing new: returns empty after the wait */
    assert_int_equal(events_list(&m, NULL, last, 100, 1, &out), 0);
    assert_int_equal(json_array_size(json_object_get(out, "events")), 0);
    assert_int_equal(json_integer_value(json_object_get(out, "last")), last);
    json_decref(out);
    /* long poll: a waiter is woken by a new event well before its timeout */
    struct waiter w = {.m = &m, .since = last};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, wait_events, &w), 0);
    usleep(300000);
    time_t before = time(NULL);
    assert_int_equal(event_add(&m, "alice", "vm.power-on", "vm1", NULL, NULL), 0);
    pthread_join(t, NULL);
    assert_true(time(NULL) - before <= 2);
    assert_non_null(w.out);
    assert_int_equal(json_array_size(json_object_get(w.out, "events")), 1);
    json_decref(w.out);
    json_decref(ov);
    json_decref(nv);
    mgr_close(&m);
}

int main(void)
{
    vmseal_json_wipe_on_free();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_basics),
        cmocka_unit_test(test_store_transactions),
        cmocka_unit_test(test_password_hash),
        cmocka_unit_test(test_users_sessions),
        cmocka_unit_test(test_events),
        cmocka_unit_test(test_login_flood),
        cmocka_unit_test(test_authz),
        cmocka_unit_test(test_event_chain),
        cmocka_unit_test(test_migrate_schema1),
        cmocka_unit_test(test_migrate_schema2),
        cmocka_unit_test(test_tasks_sql),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
