/* Store lock (one server per store), online backup (VACUUM INTO, a
 * consistent snapshot while the server writes) and restore (integrity,
 * schema and master-key checks before the store is replaced), and the
 * import of a SQLite store into a PostgreSQL one. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store.h"
#include "store_internal.h"

int kmsd_store_lock(const char *db_path)
{
    char lp[4096];
    snprintf(lp, sizeof(lp), "%s.lock", db_path);
    int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return vmseal_fail(errno, "cannot open lock file %s: %s", lp, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            return vmseal_fail(EBUSY, "the store %s is in use by a running vmseal-kmsd", db_path);
        return vmseal_fail(e, "cannot lock %s: %s", lp, strerror(e));
    }
    return fd;
}

static int fsync_path(const char *p)
{
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return r;
}

static void dir_of(const char *p, char *out, size_t len)
{
    snprintf(out, len, "%s", p);
    char *s = strrchr(out, '/');
    if (s == out)
        out[1] = '\0';
    else if (s)
        *s = '\0';
    else
        snprintf(out, len, ".");
}

int kmsd_store_backup(const char *db_path, const char *dest)
{
    struct stat sb;
    if (stat(dest, &sb) == 0)
        return vmseal_fail(EEXIST, "backup: %s already exists", dest);
    kmsd_db *db;
    int r = kmsd_db_open(db_path, SQLITE_OPEN_READONLY, NULL, &db);
    if (r < 0)
        return r;
    /* create the destination private, then let VACUUM INTO fill it */
    int fd = open(dest, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        r = vmseal_fail(errno, "backup: cannot create %s: %s", dest, strerror(errno));
        kmsd_db_close(db);
        return r;
    }
    close(fd);
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db->h, "VACUUM INTO ?", -1, &s, NULL) != SQLITE_OK) {
        r = kmsd_db_error(db->h, "backup");
        unlink(dest);
        kmsd_db_close(db);
        return r;
    }
    sqlite3_bind_text(s, 1, dest, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        r = kmsd_db_error(db->h, "backup (VACUUM INTO)");
        unlink(dest);
        kmsd_db_close(db);
        return r;
    }
    kmsd_db_close(db);
    char d[4096];
    dir_of(dest, d, sizeof(d));
    if (fsync_path(dest) < 0 || fsync_path(d) < 0)
        return vmseal_fail(EIO, "backup: cannot sync %s", dest);
    return 0;
}

int kmsd_store_restore(const char *backup, const char *db_path, kmsd_masterkey *mk)
{
    int lock = kmsd_store_lock(db_path);
    if (lock < 0)
        return lock;
    int r;
    kmsd_db *src = NULL, *dst = NULL;
    char tmp[4096], side[4096];
    snprintf(tmp, sizeof(tmp), "%s.restore-tmp", db_path);
    unlink(tmp);
    /* check the backup: integrity, schema, and that our master key opens it */
    if ((r = kmsd_db_open(backup, SQLITE_OPEN_READONLY, "delete", &src)) < 0)
        goto out;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(src->h, "PRAGMA integrity_check", -1, &s, NULL) != SQLITE_OK) {
        r = vmseal_fail(EBADMSG, "restore: %s is not an SQLite database", backup);
        goto out;
    }
    int ok = sqlite3_step(s) == SQLITE_ROW &&
             !strcmp((const char *)sqlite3_column_text(s, 0), "ok");
    sqlite3_finalize(s);
    if (!ok) {
        r = vmseal_fail(EBADMSG, "restore: %s fails the integrity check", backup);
        goto out;
    }
    if ((r = kmsd_store_check_schema(src)) < 0 || (r = kmsd_store_check_masterkey(src, mk, 0)) < 0)
        goto out;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        r = vmseal_fail(errno, "restore: cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    close(fd);
    if ((r = kmsd_db_open(tmp, SQLITE_OPEN_READWRITE, "delete", &dst)) < 0)
        goto out;
    sqlite3_backup *b = sqlite3_backup_init(dst->h, "main", src->h, "main");
    if (!b) {
        r = kmsd_db_error(dst->h, "restore");
        goto out;
    }
    int rc = sqlite3_backup_step(b, -1);
    sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE) {
        r = kmsd_db_error(dst->h, "restore copy");
        goto out;
    }
    kmsd_db_close(dst);
    dst = NULL;
    if (fsync_path(tmp) < 0) {
        r = vmseal_fail(EIO, "restore: cannot sync %s", tmp);
        goto out;
    }
    /* stale WAL/SHM of the old store must not be replayed onto the new one */
    snprintf(side, sizeof(side), "%s-wal", db_path);
    unlink(side);
    snprintf(side, sizeof(side), "%s-shm", db_path);
    unlink(side);
    if (rename(tmp, db_path) < 0) {
        r = vmseal_fail(errno, "restore: cannot replace %s: %s", db_path, strerror(errno));
        goto out;
    }
    char d[4096];
    dir_of(db_path, d, sizeof(d));
    (void)fsync_path(d);
    r = 0;
out:
    kmsd_db_close(src);
    kmsd_db_close(dst);
    if (r < 0)
        unlink(tmp);
    close(lock);
    return r;
}

/* ---- import into a PostgreSQL store --------------------------------------- */

static int import_rows(kmsd_db *src, kmsd_db *dst, size_t *n_objects)
{
    sqlite3_stmt *s;
    int r = 0;
    if (sqlite3_prepare_v2(src->h, "SELECT uid, owner, object_type, state, material, created,"
                           " changed, key_format, subtype, alg, bits FROM objects ORDER BY id",
                           -1, &s, NULL) != SQLITE_OK)
        return kmsd_db_error(src->h, "import");
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        kmsd_obj o = {0};
        snprintf(o.uid, sizeof(o.uid), "%s", (const char *)sqlite3_column_text(s, 0));
        snprintf(o.owner, sizeof(o.owner), "%s", (const char *)sqlite3_column_text(s, 1));
        o.object_type = (uint32_t)sqlite3_column_int64(s, 2);
        o.state = (uint32_t)sqlite3_column_int64(s, 3);
        o.created = sqlite3_column_int64(s, 5);
        o.changed = sqlite3_column_int64(s, 6);
        o.key_format = (uint32_t)sqlite3_column_int64(s, 7);
        o.subtype = (uint32_t)sqlite3_column_int64(s, 8);
        o.alg = (uint32_t)sqlite3_column_int64(s, 9);
        o.bits = (int32_t)sqlite3_column_int64(s, 10);
        const uint8_t *m = sqlite3_column_blob(s, 4);
        int ml = sqlite3_column_bytes(s, 4);
        /* the wrapped key is bound to its uid, which stays: copied as is */
        if ((r = kmsd_db_import_object(dst, &o, m && ml > 0 ? m : NULL, m ? (size_t)ml : 0)) < 0)
            break;
        (*n_objects)++;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = kmsd_db_error(src->h, "import objects");
    sqlite3_finalize(s);
    if (r < 0)
        return r;
    if (sqlite3_prepare_v2(src->h, "SELECT uid, name, idx, value FROM attributes"
                           " ORDER BY uid, name, idx", -1, &s, NULL) != SQLITE_OK)
        return kmsd_db_error(src->h, "import");
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *uid = (const char *)sqlite3_column_text(s, 0);
        const char *name = (const char *)sqlite3_column_text(s, 1);
        if ((r = kmsd_db_attr_put(dst, uid, name, sqlite3_column_int(s, 2),
                                  sqlite3_column_blob(s, 3),
                                  (size_t)sqlite3_column_bytes(s, 3))) < 0)
            break;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = kmsd_db_error(src->h, "import attributes");
    sqlite3_finalize(s);
    if (r < 0)
        return r;
    if (sqlite3_prepare_v2(src->h, "SELECT uid, identity FROM grants", -1, &s, NULL) != SQLITE_OK)
        return kmsd_db_error(src->h, "import");
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if ((r = kmsd_db_grant(dst, (const char *)sqlite3_column_text(s, 0),
                               (const char *)sqlite3_column_text(s, 1))) < 0)
            break;
    if (r == 0 && rc != SQLITE_DONE)
        r = kmsd_db_error(src->h, "import grants");
    sqlite3_finalize(s);
    return r;
}

int kmsd_store_import_sqlite(kmsd_store *dst, const char *sqlite_path, size_t *n_objects)
{
    *n_objects = 0;
    if (dst->be == &kmsd_sqlite_backend)
        return vmseal_fail(ENOTSUP, "import: the configured store is SQLite already");
    /* a server still writing the old store would make keys the import misses */
    int lock = kmsd_store_lock(sqlite_path);
    if (lock < 0)
        return vmseal_fail(-lock, "import: %s (stop the server of the SQLite store first)",
                           vmseal_last_error());
    kmsd_db *src = NULL, *db = NULL;
    int r = kmsd_db_open(sqlite_path, SQLITE_OPEN_READONLY, NULL, &src);
    if (r == 0 && (r = kmsd_store_check_schema(src)) == 0)
        r = kmsd_store_check_masterkey(src, dst->mk, 0);
    if (r == 0 && sqlite3_exec(src->h, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        r = kmsd_db_error(src->h, "import");
    if (r == 0 && (r = kmsd_store_write_begin(dst, &db)) == 0) {
        r = import_rows(src, db, n_objects);
        int c = kmsd_store_end(dst, db, r == 0);
        if (r == 0)
            r = c;
    }
    kmsd_db_close(src);
    close(lock);
    if (r < 0)
        *n_objects = 0;
    return r;
}
