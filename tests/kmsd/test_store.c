/* kmsd store + master key (file backend): wrapping bound to the object id,
 * wrong master key refused, objects/attributes/locate/grants, backup and
 * restore. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "masterkey.h"
#include "store.h"

static char dir[64];

static void p(char *out, const char *name)
{
    snprintf(out, 256, "%s/%s", dir, name);
}

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/vmseal-store.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static kmsd_masterkey *new_mk(const char *name)
{
    char path[256];
    p(path, name);
    assert_int_equal(kmsd_mk_create_file(path), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    kmsd_masterkey *mk;
    assert_int_equal(kmsd_mk_open_file(path, &mk), 0);
    return mk;
}

static void test_wrap_binding(void **state)
{
    (void)state;
    kmsd_masterkey *mk = new_mk("mk-wrap");
    uint8_t key[32];
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)i;
    uint8_t *blob;
    size_t bl;
    assert_int_equal(kmsd_mk_wrap(mk, "7", key, 32, &blob, &bl), 0);
    assert_int_equal(bl, 32 + KMSD_MK_OVERHEAD);
    assert_null(memmem(blob, bl, key, 8)); /* not stored in clear */
    vmseal_secret *s;
    assert_int_equal(kmsd_mk_unwrap(mk, "7", blob, bl, &s), 0);
    assert_memory_equal(vmseal_secret_cdata(s), key, 32);
    vmseal_secret_free(s);
    /* bound to the object id */
    assert_int_equal(kmsd_mk_unwrap(mk, "8", blob, bl, &s), -EBADMSG);
    /* tampering detected */
    blob[20] ^= 1;
    assert_int_equal(kmsd_mk_unwrap(mk, "7", blob, bl, &s), -EBADMSG);
    free(blob);
    kmsd_mk_free(mk);
    /* group-readable key file refused */
    char path[256];
    p(path, "mk-wrap");
    chmod(path, 0640);
    assert_int_equal(kmsd_mk_open_file(path, &mk), -EPERM);
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
    free(blob);
    assert_int_equal(kmsd_db_attr_put(db, uid, "Name", 0, (const uint8_t *)name, strlen(name)), 0);
    assert_int_equal(kmsd_store_end(st, db, 1), 0);
}

static void test_store_objects(void **state)
{
    (void)state;
    kmsd_masterkey *mk = new_mk("mk-store");
    char dbp[256];
    p(dbp, "s.db");
    kmsd_store *st;
    assert_int_equal(kmsd_store_open(dbp, "wal", mk, 1, &st), 0);
    char u1[KMSD_UID_MAX], u2[KMSD_UID_MAX], u3[KMSD_UID_MAX];
    add_obj(st, "CN=a", "alpha", u1);
    add_obj(st, "CN=b", "beta", u2);
    add_obj(st, "CN=a", "gamma", u3);
    assert_string_equal(u1, "1");
    assert_string_equal(u2, "2");
    assert_string_equal(u3, "3");

    kmsd_db *db;
    assert_int_equal(kmsd_store_read_begin(st, &db), 0);
    kmsd_obj o;
    assert_int_equal(kmsd_db_get(db, "2", &o), 0);
    assert_string_equal(o.owner, "CN=b");
    assert_int_equal(o.state, 1);
    assert_int_equal(o.has_material, 1);
    assert_int_equal(kmsd_db_get(db, "99", &o), -ENOENT);
    uint8_t *blob;
    size_t bl;
    assert_int_equal(kmsd_db_material(db, "2", &blob, &bl), 0);
    vmseal_secret *s;
    assert_int_equal(kmsd_mk_unwrap(mk, "2", blob, bl, &s), 0);
    assert_int_equal(vmseal_secret_len(s), 16);
    vmseal_secret_free(s);
    free(blob);
    char found[256] = "";
    assert_int_equal(kmsd_db_locate(db, "CN=a", 0, 0, NULL, 0, 0, 0, collect, found), 2);
    assert_string_equal(found, "1,3,");
    found[0] = '\0';
    kmsd_filter f = {.name = "Name", .value = (const uint8_t *)"beta", .len = 4};
    assert_int_equal(kmsd_db_locate(db, NULL, 2, 1, &f, 1, 0, 0, collect, found), 1);
    assert_string_equal(found, "2,");
    found[0] = '\0';
    assert_int_equal(kmsd_db_locate(db, "CN=a", 0, 0, &f, 1, 0, 0, collect, found), 0);
    assert_int_equal(kmsd_db_locate(db, NULL, 0, 0, NULL, 0, 1, 1, collect, found), 1);
    assert_string_equal(found, "2,");
    assert_int_equal(kmsd_store_end(st, db, 0), 0);

    /* grants make objects visible to another identity */
    assert_int_equal(kmsd_store_write_begin(st, &db), 0);
    assert_int_equal(kmsd_db_grant(db, "2", "CN=a"), 0);
    assert_int_equal(kmsd_db_granted(db, "2", "CN=a"), 1);
    assert_int_equal(kmsd_db_granted(db, "1", "CN=b"), 0);
    found[0] = '\0';
    assert_int_equal(kmsd_db_locate(db, "CN=a", 0, 0, NULL, 0, 0, 0, collect, found), 3);
    assert_int_equal(kmsd_db_revoke_access(db, "2", "CN=a"), 1);
    assert_int_equal(kmsd_db_revoke_access(db, "2", "CN=a"), 0);
    /* attributes */
    assert_int_equal(kmsd_db_attr_next_index(db, "1", "Name"), 1);
    assert_int_equal(kmsd_db_attr_put(db, "1", "Name", 1, (const uint8_t *)"a2", 2), 0);
    assert_int_equal(kmsd_db_attr_count(db, "1", "Name"), 2);
    assert_int_equal(kmsd_db_attr_delete(db, "1", "Name", 0), 1);
    assert_int_equal(kmsd_db_attr_delete(db, "1", "Name", -1), 1);
    assert_int_equal(kmsd_db_attr_count(db, "1", "Name"), 0);
    assert_int_equal(kmsd_db_set_state(db, "1", 2, 2000), 0);
    assert_int_equal(kmsd_db_set_state(db, "42", 2, 2000), -ENOENT);
    assert_int_equal(kmsd_db_erase_material(db, "3"), 0);
    assert_int_equal(kmsd_store_end(st, db, 1), 0);

    assert_int_equal(kmsd_store_read_begin(st, &db), 0);
    assert_int_equal(kmsd_db_get(db, "1", &o), 0);
    assert_int_equal(o.state, 2);
    assert_int_equal(o.changed, 2000);
    assert_int_equal(kmsd_db_material(db, "3", &blob, &bl), -ENODATA);
    assert_int_equal(kmsd_store_end(st, db, 0), 0);

    /* online backup, then restore into a fresh place */
    char bk[256], db2[256];
    p(bk, "backup.db");
    assert_int_equal(kmsd_store_backup(dbp, bk), 0);
    assert_int_equal(kmsd_store_backup(dbp, bk), -EEXIST);
    struct stat sb;
    assert_int_equal(stat(bk, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    kmsd_store_close(st);

    p(db2, "restored.db");
    assert_int_equal(kmsd_store_restore(bk, db2, mk), 0);
    assert_int_equal(kmsd_store_open(db2, "wal", mk, 0, &st), 0);
    assert_int_equal(kmsd_store_read_begin(st, &db), 0);
    assert_int_equal(kmsd_db_get(db, "2", &o), 0);
    assert_string_equal(o.owner, "CN=b");
    assert_int_equal(kmsd_db_material(db, "2", &blob, &bl), 0);
    assert_int_equal(kmsd_mk_unwrap(mk, "2", blob, bl, &s), 0);
    vmseal_secret_free(s);
    free(blob);
    assert_int_equal(kmsd_store_end(st, db, 0), 0);
    /* the lock refuses a restore under a running server */
    int lock = kmsd_store_lock(db2);
    assert_true(lock >= 0);
    assert_int_equal(kmsd_store_restore(bk, db2, mk), -EBUSY);
    close(lock);
    kmsd_store_close(st);

    /* another master key cannot open the store, nor restore the backup */
    kmsd_masterkey *other = new_mk("mk-other");
    assert_int_equal(kmsd_store_open(dbp, "wal", other, 0, &st), -EKEYREJECTED);
    char db3[256];
    p(db3, "restored2.db");
    assert_int_equal(kmsd_store_restore(bk, db3, other), -EKEYREJECTED);
    assert_int_not_equal(access(db3, F_OK), 0);
    /* garbage is not a backup */
    char junk[256];
    p(junk, "junk.db");
    FILE *jf = fopen(junk, "w");
    fputs("this is not sqlite, just some words that go on for a while......", jf);
    fclose(jf);
    assert_true(kmsd_store_restore(junk, db3, mk) < 0);
    kmsd_mk_free(other);
    kmsd_mk_free(mk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wrap_binding),
        cmocka_unit_test(test_store_objects),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
