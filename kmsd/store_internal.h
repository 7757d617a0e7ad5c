/* vmseal-kmsd — what store.c shares with backup.c (not a public API). */
#ifndef KMSD_STORE_INTERNAL_H
#define KMSD_STORE_INTERNAL_H

#include <sqlite3.h>

#include "masterkey.h"
#include "store.h"

#define KMSD_STMT_MAX 32  /* prepared statements cached per connection */

struct kmsd_db {
    sqlite3 *h;
    sqlite3_stmt *st[KMSD_STMT_MAX];
    int writer;
};

/* Open a connection (flags: SQLITE_OPEN_*; journal NULL: wal) with the
 * store's pragmas; read-only connections change nothing. */
int kmsd_db_open(const char *path, int flags, const char *journal, kmsd_db **out);
void kmsd_db_close(kmsd_db *db);
/* vmseal_fail() with SQLite's message, mapped to an errno. */
int kmsd_db_error(sqlite3 *h, const char *what);
/* The schema version is ours; the master key opens the store's probe
 * (with may_create, a store without a probe gets one). */
int kmsd_store_check_schema(kmsd_db *db);
int kmsd_store_check_masterkey(kmsd_db *db, kmsd_masterkey *mk, int may_create);

#endif
