/* Store lock (one server per store), online backup (VACUUM INTO, a
 * consistent snapshot while the server writes) and restore (integrity,
 * schema and master-key checks before the store is replaced). */
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
