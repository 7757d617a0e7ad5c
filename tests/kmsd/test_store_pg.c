/* The PostgreSQL store against a real server (run by test_pg_store.sh,
 * which starts it and names a conninfo file in $VMSEAL_TEST_PG_CONNINFO;
 * the database must be empty): schema creation and refusals, objects with
 * UUIDs, attributes, locate, grants, row locks across two "nodes", the
 * audit chain appended by many threads of two nodes, heartbeats, and the
 * import of a SQLite store with its ids. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "audit.h"
#include "masterkey.h"
#include "store.h"

static char dir[64];
static vmseal_secret *conninfo;
static kmsd_masterkey *mk;

static kmsd_masterkey *new_mk(const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_int_equal(kmsd_mk_create_file(path), 0);
    kmsd_masterkey *k;
    assert_int_equal(kmsd_mk_open_file(path, &k), 0);
    return k;
}

static int setup(void **state)
{
    (void)state;
    const char *f = getenv("VMSEAL_TEST_PG_CONNINFO");
    if (!f) {
        fprintf(stderr, "VMSEAL_TEST_PG_CONNINFO is not set: run tests/kmsd/test_pg_store.sh\n");
        return -1;
    }
    if (kmsd_pg_read_conninfo(f, &conninfo) < 0) {
        fprintf(stderr, "%s\n", vmseal_last_error());
        return -1;
    }
    strcpy(dir, "/tmp/vmseal-store-pg.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    mk = new_mk("mk");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kmsd_mk_free(mk);
    vmseal_secret_free(conninfo);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static kmsd_store *open_pg(const char *node, kmsd_masterkey *k, int mode, int *rc)
{
    kmsd_pg_params p = {.conninfo = conninfo, .node = node, .timeout_ms = 10000};
    kmsd_store *st = NULL;
    *rc = kmsd_store_open_pg(&p, k, mode, &st);
    return st;
}

static int collect(void *ctx, const char *uid)
{
    char *buf = ctx;
    strcat(buf, uid);
    strcat(buf, ",");
    return 0;
}

static void add_obj(kmsd_store *st, const char *owner, const char *name, char uid[KMSD_UID_MAX])
{
    kmsd_db *db;
    assert_int_equal(kmsd_store_write_begin(st, &db), 0);
    assert_int_equal(kmsd_db_next_uid(db, uid), 0);
    kmsd_obj o = {.object_type = 2, .state = 1, .created = 1000, .changed = 1000};
    snprintf(o.uid, sizeof(o.uid), "%s", uid);
    snprintf(o.owner, sizeof(o.owner), "%s", owner);
    uint8_t key[16] = {1, 2, 3};
    uint8_t *blob;
    size_t bl;
    assert_int_equal(kmsd_mk_wrap(kmsd_store_masterkey(st), uid, key, 16, &blob, &bl), 0);
    assert_int_equal(kmsd_db_insert(db, &o, blob, bl), 0);
    /* the same id twice: refused (checked on PostgreSQL; SQLite says EIO) */
    int dup = kmsd_db_insert(db, &o, blob, bl);
    assert_int_equal(dup, strcmp(kmsd_store_backend(st), "postgresql") ? dup : -EEXIST);
    assert_true(dup < 0);
    free(blob);
    assert_int_equal(kmsd_store_end(st, db, 0), 0);
    /* the failed statement aborted that transaction: do it again cleanly */
    assert_int_equal(kmsd_store_write_begin(st, &db), 0);
    assert_int_equal(kmsd_mk_wrap(kmsd_store_masterkey(st), uid, key, 16, &blob, &bl), 0);
    assert_int_equal(kmsd_db_insert(db, &o, blob, bl), 0);
    free(blob);
    assert_int_equal(kmsd_db_attr_put(db, uid, "Name", 0, (const uint8_t *)name, strlen(name)), 0);
    assert_int_equal(kmsd_store_end(st, db, 1), 0);
}

static int is_uuid4(const char *u)
{
    if (strlen(u) != 36 || u[8] != '-' || u[13] != '-' || u[18] != '-' || u[23] != '-' ||
        u[14] != '4' || !strchr("89ab", u[19]))
        return 0;
    for (int i = 0; i < 36; i++)
        if (i != 8 && i != 13 && i != 18 && i != 23 && !strchr("0123456789abcdef", u[i]))
            return 0;
    return 1;
}

static void test_schema(void **state)
{
    (void)state;
    int r;
    kmsd_store *st = open_pg("n1", mk, KMSD_PG_OPEN, &r);
    assert_null(st);
    assert_int_equal(r, -ENOENT); /* empty database: no store */
    st = open_pg("n1", mk, KMSD_PG_CREATE, &r);
    assert_int_equal(r, 0);
    kmsd_store_close(st);
    assert_null(open_pg("n1", mk, KMSD_PG_CREATE, &r));
    assert_int_equal(r, -EEXIST);
    kmsd_masterkey *other = new_mk("mk-other");
    assert_null(open_pg("n1", other, KMSD_PG_OPEN, &r));
    assert_int_equal(r, -EKEYREJECTED);
    kmsd_mk_free(other);
    st = open_pg("n1", mk, KMSD_PG_OPEN, &r);
    assert_int_equal(r, 0);
    assert_string_equal(kmsd_store_backend(st), "postgresql");
    kmsd_store_close(st);
}

static void test_objects(void **state)
{
    (void)state;
    int r;
    kmsd_store *st = open_pg("n1", mk, KMSD_PG_OPEN, &r);
    assert_int_equal(r, 0);
    char u1[KMSD_UID_MAX], u2[KMSD_UID_MAX], u3[KMSD_UID_MAX];
    add_obj(st, "CN=a", "alpha", u1);
    add_obj(st, "CN=b", "beta", u2);
    add_obj(st, "CN=a", "gamma", u3);
    assert_true(is_uuid4(u1) && is_uuid4(u2) && is_uuid4(u3));
    assert_string_not_equal(u1, u2);
    assert_string_not_equal(u2, u3);

    kmsd_db *db;
    assert_int_equal(kmsd_store_read_begin(st, &db), 0);
    kmsd_obj o;
    assert_int_equal(kmsd_db_get(db, u2, &o), 0);
    assert_string_equal(o.uid, u2);
    assert_string_equal(o.owner, "CN=b");
    assert_int_equal(o.state, 1);
    assert_int_equal(o.object_type, 2);
    assert_int_equal(o.created, 1000);
    assert_int_equal(o.has_material, 1);
    assert_int_equal(kmsd_db_get(db, "99", &o), -ENOENT);
    assert_int_equal(kmsd_db_get(db, "bad\xff\xfe", &o), -ENOENT);
    uint8_t *blob;
    size_t bl;
    assert_int_equal(kmsd_db_material(db, u2, &blob, &bl), 0);
    vmseal_secret *s;
    assert_int_equal(kmsd_mk_unwrap(mk, u2, blob, bl, &s), 0);
    assert_int_equal(vmseal_secret_len(s), 16);
    assert_int_equal(vmseal_secret_cdata(s)[2], 3);
    vmseal_secret_free(s);
    assert_int_equal(kmsd_mk_unwrap(mk, u1, blob, bl, &s), -EBADMSG); /* bound to its id */
    free(blob);
    char found[512] = "", want[512];
    assert_int_equal(kmsd_db_locate(db, "CN=a", 0, 0, NULL, 0, 0, 0, collect, found), 2);
    snprintf(want, sizeof(want), "%s,%s,", u1, u3); /* creation order */
    assert_string_equal(found, want);
    found[0] = '\0';
    kmsd_filter f = {.name = "Name", .value = (const uint8_t *)"beta", .len = 4};
    assert_int_equal(kmsd_db_locate(db, NULL, 2, 1, &f, 1, 0, 0, collect, found), 1);
    snprintf(want, sizeof(want), "%s,", u2);
    assert_string_equal(found, want);
    found[0] = '\0';
    assert_int_equal(kmsd_db_locate(db, "CN=a", 0, 0, &f, 1, 0, 0, collect, found), 0);
    assert_int_equal(kmsd_db_locate(db, NULL, 0, 0, NULL, 0, 1, 1, collect, found), 1);
    assert_string_equal(found, want);
    assert_int_equal(kmsd_db_locate(db, NULL, 3, 0, NULL, 0, 0, 0, collect, found), 0);
    /* a read transaction cannot write */
    assert_true(kmsd_db_set_state(db, u1, 2, 2000) < 0);
    assert_int_equal(kmsd_store_end(st, db, 0), 0);

    assert_int_equal(kmsd_store_write_begin(st, &db), 0);
    assert_int_equal(kmsd_db_grant(db, u2, "CN=a"), 0);
    assert_int_equal(kmsd_db_grant(db, u2, "CN=a"), 0); /* twice: no error */
    assert_int_equal(kmsd_db_granted(db, u2, "CN=a"), 1);
    assert_int_equal(kmsd_db_granted(db, u1, "CN=b"), 0);
    found[0] = '\0';
    assert_int_equal(kmsd_db_locate(db, "CN=a", 0, 0, NULL, 0, 0, 0, collect, found), 3);
    assert_int_equal(kmsd_db_revoke_access(db, u2, "CN=a"), 1);
    assert_int_equal(kmsd_db_revoke_access(db, u2, "CN=a"), 0);
    assert_int_equal(kmsd_db_attr_next_index(db, u1, "Name"), 1);
    assert_int_equal(kmsd_db_attr_put(db, u1, "Name", 1, (const uint8_t *)"a2", 2), 0);
    assert_int_equal(kmsd_db_attr_put(db, u1, "Name", 1, (const uint8_t *)"a3", 2), 0);
    assert_int_equal(kmsd_db_attr_count(db, u1, "Name"), 2);
    assert_int_equal(kmsd_db_attr_put(db, u1, "x-b", 0, (const uint8_t *)"\0\1", 2), 0);
    assert_int_equal(kmsd_db_attr_delete(db, u1, "Name", 0), 1);
    assert_int_equal(kmsd_db_attr_delete(db, u1, "Name", -1), 1);
    assert_int_equal(kmsd_db_attr_count(db, u1, "Name"), 0);
    assert_int_equal(kmsd_db_set_state(db, u1, 2, 2000), 0);
    assert_int_equal(kmsd_db_set_state(db, "42", 2, 2000), -ENOENT);
    assert_int_equal(kmsd_db_erase_material(db, u3), 0);
    assert_int_equal(kmsd_db_touch(db, u2, 3000), 0);
    assert_int_equal(kmsd_store_end(st, db, 1), 0);

    assert_int_equal(kmsd_store_read_begin(st, &db), 0);
    assert_int_equal(kmsd_db_get(db, u1, &o), 0);
    assert_int_equal(o.state, 2);
    assert_int_equal(o.changed, 2000);
    assert_int_equal(kmsd_db_get(db, u3, &o), 0);
    assert_int_equal(o.has_material, 0);
    assert_int_equal(kmsd_db_material(db, u3, &blob, &bl), -ENODATA);
    assert_int_equal(kmsd_db_attr_count(db, u1, "x-b"), 1);
    assert_int_equal(kmsd_store_end(st, db, 0), 0);

    /* a write that is rolled back leaves nothing */
    char u4[KMSD_UID_MAX];
    assert_int_equal(kmsd_store_write_begin(st, &db), 0);
    assert_int_equal(kmsd_db_next_uid(db, u4), 0);
    kmsd_obj o4 = {.object_type = 2, .state = 1, .created = 1, .changed = 1};
    snprintf(o4.uid, sizeof(o4.uid), "%s", u4);
    snprintf(o4.owner, sizeof(o4.owner), "CN=a");
    assert_int_equal(kmsd_db_insert(db, &o4, NULL, 0), 0);
    assert_int_equal(kmsd_store_end(st, db, 0), 0);
    assert_int_equal(kmsd_store_read_begin(st, &db), 0);
    assert_int_equal(kmsd_db_get(db, u4, &o), -ENOENT);
    assert_int_equal(kmsd_store_end(st, db, 0), 0);
    kmsd_store_close(st);
}

/* Attribute rows in name, index order with their bytes. */
typedef struct {
    char names[256];
    int n;
} attr_list;

static int attr_cb(void *ctx, const char *name, int idx, const uint8_t *v, size_t len)
{
    attr_list *a = ctx;
    char b[64];
    snprintf(b, sizeof(b), "%s/%d/%zu,", name, idx, len);
    strcat(a->names, b);
    (void)v;
    a->n++;
    return 0;
}

static void test_attr_order(void **state)
{
    (void)state;
    int r;
    kmsd_store *st = open_pg("n1", mk, KMSD_PG_OPEN, &r);
    assert_int_equal(r, 0);
    char u[KMSD_UID_MAX];
    add_obj(st, "CN=c", "zeta", u);
    kmsd_db *db;
    assert_int_equal(kmsd_store_write_begin(st, &db), 0);
    assert_int_equal(kmsd_db_attr_put(db, u, "x-B", 0, (const uint8_t *)"1", 1), 0);
    assert_int_equal(kmsd_db_attr_put(db, u, "x-a", 1, (const uint8_t *)"22", 2), 0);
    assert_int_equal(kmsd_db_attr_put(db, u, "x-a", 0, (const uint8_t *)"", 0), 0);
    assert_int_equal(kmsd_store_end(st, db, 1), 0);
    assert_int_equal(kmsd_store_read_begin(st, &db), 0);
    attr_list a = {0};
    assert_int_equal(kmsd_db_attrs(db, u, NULL, attr_cb, &a), 4);
    /* byte order, as SQLite's BINARY collation */
    assert_string_equal(a.names, "Name/0/4,x-B/0/1,x-a/0/0,x-a/1/2,");
    assert_int_equal(kmsd_store_end(st, db, 0), 0);
    kmsd_store_close(st);
}

/* ---- two nodes: row locks ---- */

typedef struct {
    kmsd_store *st;
    const char *uid;
    struct timespec t0, t1;
    int rc;
} locker;

static void *second_writer(void *arg)
{
    locker *l = arg;
    kmsd_db *db;
    clock_gettime(CLOCK_MONOTONIC, &l->t0);
    l->rc = kmsd_store_write_begin(l->st, &db);
    if (l->rc == 0) {
        kmsd_obj o;
        l->rc = kmsd_db_get(db, l->uid, &o); /* FOR UPDATE: waits for node 1 */
        clock_gettime(CLOCK_MONOTONIC, &l->t1);
        if (l->rc == 0)
            l->rc = o.state == 3 ? 0 : -EINVAL; /* sees node 1's committed change */
        (void)kmsd_store_end(l->st, db, 0);
    }
    return NULL;
}

static void test_row_lock_two_nodes(void **state)
{
    (void)state;
    int r;
    kmsd_store *n1 = open_pg("n1", mk, KMSD_PG_OPEN, &r);
    assert_int_equal(r, 0);
    kmsd_store *n2 = open_pg("n2", mk, KMSD_PG_OPEN, &r);
    assert_int_equal(r, 0);
    char u[KMSD_UID_MAX];
    add_obj(n1, "CN=a", "locked", u);
    kmsd_db *db;
    kmsd_obj o;
    assert_int_equal(kmsd_store_write_begin(n1, &db), 0);
    assert_int_equal(kmsd_db_get(db, u, &o), 0);
    locker l = {.st = n2, .uid = u, .rc = -1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, second_writer, &l), 0);
    usleep(400000);
    assert_int_equal(kmsd_db_set_state(db, u, 3, 5000), 0);
    assert_int_equal(kmsd_store_end(n1, db, 1), 0);
    pthread_join(th, NULL);
    assert_int_equal(l.rc, 0);
    double waited = (double)(l.t1.tv_sec - l.t0.tv_sec) + (double)(l.t1.tv_nsec - l.t0.tv_nsec) / 1e9;
    assert_true(waited >= 0.3);
    /* readers do not wait for a writer */
    assert_int_equal(kmsd_store_write_begin(n1, &db), 0);
    assert_int_equal(kmsd_db_get(db, u, &o), 0);
    kmsd_db *rd;
    assert_int_equal(kmsd_store_read_begin(n2, &rd), 0);
    assert_int_equal(kmsd_db_get(rd, u, &o), 0);
    assert_int_equal(kmsd_store_end(n2, rd, 0), 0);
    assert_int_equal(kmsd_store_end(n1, db, 0), 0);
    kmsd_store_close(n2);
    kmsd_store_close(n1);
}

/* ---- the audit chain, many writers on two nodes ---- */

#define AUDIT_THREADS 4
#define AUDIT_ROUNDS 40

typedef struct {
    kmsd_store *st;
    int id;
    int appended;
    int rc;
} appender;

static void *append_many(void *arg)
{
    appender *a = arg;
    for (int i = 0; i < AUDIT_ROUNDS && a->rc == 0; i++) {
        char b[3][128];
        const char *bodies[3];
        size_t lens[3];
        int n = 1 + i % 3;
        for (int k = 0; k < n; k++) {
            snprintf(b[k], sizeof(b[k]), "2026-01-01T00:00:00.000Z audit node=t%d op=Test uid=\"%d-%d\" result=Success",
                     a->id, i, k);
            bodies[k] = b[k];
            lens[k] = strlen(b[k]);
        }
        kmsd_db *db;
        uint64_t last;
        a->rc = kmsd_store_write_begin(a->st, &db);
        if (a->rc == 0) {
            a->rc = kmsd_db_audit_append(db, bodies, lens, (size_t)n, &last);
            int c = kmsd_store_end(a->st, db, a->rc == 0);
            if (a->rc == 0)
                a->rc = c;
        }
        if (a->rc == 0)
            a->appended += n;
    }
    return NULL;
}

static void test_audit_chain_two_nodes(void **state)
{
    (void)state;
    int r;
    kmsd_store *n[2];
    n[0] = open_pg("n1", mk, KMSD_PG_OPEN, &r);
    assert_int_equal(r, 0);
    n[1] = open_pg("n2", mk, KMSD_PG_OPEN, &r);
    assert_int_equal(r, 0);
    appender a[2 * AUDIT_THREADS];
    pthread_t th[2 * AUDIT_THREADS];
    for (int i = 0; i < 2 * AUDIT_THREADS; i++) {
        a[i] = (appender){.st = n[i % 2], .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, append_many, &a[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < 2 * AUDIT_THREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(a[i].rc, 0);
        total += a[i].appended;
    }
    kmsd_audit_verifier v;
    assert_int_equal(kmsd_audit_verify_db(n[1], &v), 0);
    assert_int_equal(v.records, total);
    kmsd_db *db;
    uint64_t seq;
    unsigned char h[32];
    assert_int_equal(kmsd_store_read_begin(n[0], &db), 0);
    assert_int_equal(kmsd_db_audit_head(db, &seq, h), 0);
    assert_int_equal(kmsd_store_end(n[0], db, 0), 0);
    assert_int_equal(seq, (uint64_t)total);
    assert_memory_equal(h, v.prev, 32);
    kmsd_store_close(n[0]);
    kmsd_store_close(n[1]);
}

/* ---- heartbeats ---- */

static int node_cb(void *ctx, const kmsd_node_info *n)
{
    kmsd_node_info *want = ctx;
    if (!strcmp(n->name, want->name)) {
        *want = *n;
        return 1;
    }
    return 0;
}

static void test_heartbeat(void **state)
{
    (void)state;
    int r;
    kmsd_store *st = open_pg("n1", mk, KMSD_PG_OPEN, &r);
    assert_int_equal(r, 0);
    kmsd_node_info me = {.name = "n1", .address = "127.0.0.1:5696", .version = "t",
                         .instance = "i1", .pid = 42, .started = 7};
    kmsd_db *db;
    assert_int_equal(kmsd_store_write_begin(st, &db), 0);
    assert_int_equal(kmsd_db_heartbeat(db, &me, 0), 0);
    assert_int_equal(kmsd_store_end(st, db, 1), 0);
    kmsd_node_info got = {.name = "n1"};
    assert_int_equal(kmsd_store_read_begin(st, &db), 0);
    assert_true(kmsd_db_nodes(db, node_cb, &got) >= 1);
    assert_int_equal(kmsd_store_end(st, db, 0), 0);
    assert_string_equal(got.address, "127.0.0.1:5696");
    assert_int_equal(got.pid, 42);
    assert_true(got.seen_ago >= 0 && got.seen_ago < 5);
    assert_int_equal(got.stopped, 0);
    assert_int_equal(kmsd_store_write_begin(st, &db), 0);
    assert_int_equal(kmsd_db_heartbeat(db, &me, 1), 0);
    assert_int_equal(kmsd_store_end(st, db, 1), 0);
    assert_int_equal(kmsd_store_read_begin(st, &db), 0);
    assert_true(kmsd_db_nodes(db, node_cb, &got) >= 1);
    assert_int_equal(kmsd_store_end(st, db, 0), 0);
    assert_int_equal(got.stopped, 1);
    kmsd_store_close(st);
}

/* ---- import from SQLite ---- */

static void test_import_sqlite(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof(path), "%s/old.db", dir);
    kmsd_store *sq;
    assert_int_equal(kmsd_store_open(path, "wal", mk, 1, &sq), 0);
    char a[KMSD_UID_MAX], b[KMSD_UID_MAX];
    add_obj(sq, "CN=old", "old-one", a);
    add_obj(sq, "CN=old", "old-two", b);
    assert_string_equal(a, "1");
    assert_string_equal(b, "2");
    kmsd_db *db;
    assert_int_equal(kmsd_store_write_begin(sq, &db), 0);
    assert_int_equal(kmsd_db_grant(db, "2", "CN=friend"), 0);
    assert_int_equal(kmsd_store_end(sq, db, 1), 0);
    /* refused while a server holds the SQLite store */
    int r;
    kmsd_store *pg = open_pg("n1", mk, KMSD_PG_OPEN, &r);
    assert_int_equal(r, 0);
    int lock = kmsd_store_lock(path);
    assert_true(lock >= 0);
    size_t n;
    assert_int_equal(kmsd_store_import_sqlite(pg, path, &n), -EBUSY);
    close(lock);
    kmsd_store_close(sq);
    /* a SQLite store of another master key: refused */
    kmsd_masterkey *other = new_mk("mk-import");
    char opath[256];
    snprintf(opath, sizeof(opath), "%s/other.db", dir);
    assert_int_equal(kmsd_store_open(opath, "wal", other, 1, &sq), 0);
    add_obj(sq, "CN=x", "x", a);
    kmsd_store_close(sq);
    kmsd_mk_free(other);
    assert_int_equal(kmsd_store_import_sqlite(pg, opath, &n), -EKEYREJECTED);

    assert_int_equal(kmsd_store_import_sqlite(pg, path, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(kmsd_store_read_begin(pg, &db), 0);
    kmsd_obj o;
    assert_int_equal(kmsd_db_get(db, "2", &o), 0);
    assert_string_equal(o.owner, "CN=old");
    uint8_t *blob;
    size_t bl;
    assert_int_equal(kmsd_db_material(db, "2", &blob, &bl), 0);
    vmseal_secret *s;
    assert_int_equal(kmsd_mk_unwrap(mk, "2", blob, bl, &s), 0);
    vmseal_secret_free(s);
    free(blob);
    assert_int_equal(kmsd_db_granted(db, "2", "CN=friend"), 1);
    assert_int_equal(kmsd_db_attr_count(db, "1", "Name"), 1);
    assert_int_equal(kmsd_store_end(pg, db, 0), 0);
    /* twice: the ids are taken, nothing is copied */
    assert_int_equal(kmsd_store_import_sqlite(pg, path, &n), -EEXIST);
    assert_int_equal(n, 0);
    /* new objects still get UUIDs */
    char c[KMSD_UID_MAX];
    add_obj(pg, "CN=old", "new-one", c);
    assert_true(is_uuid4(c));
    kmsd_store_close(pg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema),
        cmocka_unit_test(test_objects),
        cmocka_unit_test(test_attr_order),
        cmocka_unit_test(test_row_lock_two_nodes),
        cmocka_unit_test(test_audit_chain_two_nodes),
        cmocka_unit_test(test_heartbeat),
        cmocka_unit_test(test_import_sqlite),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
