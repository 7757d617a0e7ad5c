/* vmseal-managerd — facts about the manager for support (GET
 * /api/v1/diagnostics): version, database, counts of what it holds. */
#include <stdlib.h>

#include "managerd.h"
#include "vmseal_version.h"

int diagnostics_get(manager *m, json_t **out)
{
    store_rows *r = NULL;
    int rc = store_execv(m->db, &r,
                         "SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM hosts), "
                         "(SELECT COUNT(*) FROM vms), (SELECT COUNT(*) FROM events), "
                         "(SELECT COUNT(*) FROM sessions), (SELECT COUNT(*) FROM tasks WHERE state IN " TASKS_OPEN_SQL "), "
                         "(SELECT value FROM meta WHERE key = 'schema')",
                         STORE_END);
    if (rc < 0)
        return rc;
    json_t *o = json_pack("{s:s,s:s,s:s?,s:I,s:I,s:I,s:I,s:I,s:I}", "version", VMSEAL_VERSION_STRING,
                          "database", store_backend(m->db), "schema", store_rows_get(r, 0, 6), "users",
                          (json_int_t)atoll(store_rows_get(r, 0, 0)), "hosts",
                          (json_int_t)atoll(store_rows_get(r, 0, 1)), "vms",
                          (json_int_t)atoll(store_rows_get(r, 0, 2)), "events",
                          (json_int_t)atoll(store_rows_get(r, 0, 3)), "sessions",
                          (json_int_t)atoll(store_rows_get(r, 0, 4)), "running_tasks",
                          (json_int_t)atoll(store_rows_get(r, 0, 5)));
    store_rows_free(r);
    *out = o;
    return 0;
}
