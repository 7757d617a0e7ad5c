/* A node's heartbeat in the cluster's database, and `cluster status`
 * (libpq directly: it asks every database host of the conninfo itself). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <openssl/rand.h>

#include <vmseal/common.h>

#include "cluster.h"
#include "log.h"

/* ---- heartbeat -------------------------------------------------------------- */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int running, stop;
    pthread_t th;
    kmsd_store *st;
    kmsd_node_info self;
    kmsd_cluster_facts facts;   /* under lock */
} hb = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int beat(int stopping)
{
    kmsd_db *db;
    int r = kmsd_store_write_begin(hb.st, &db);
    if (r < 0)
        return r;
    r = kmsd_db_heartbeat(db, &hb.self, stopping);
    int c = kmsd_store_end(hb.st, db, r == 0);
    return r < 0 ? r : c;
}

int64_t kmsd_cluster_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int add_node(void *ctx, const kmsd_node_info *n)
{
    kmsd_cluster_facts *f = ctx;
    if (f->n_nodes < KMSD_FACT_NODES)
        f->nodes[f->n_nodes++] = *n;
    f->n_nodes_total++;
    return 0;
}

/* Read the cluster's facts (heartbeat thread only) and publish them. */
static void refresh_facts(void)
{
    static kmsd_cluster_facts f;   /* one thread: no need for 6 KiB of stack */
    memset(&f, 0, sizeof(f));
    snprintf(f.node, sizeof(f.node), "%s", hb.self.name);
    kmsd_db *db;
    int r = kmsd_store_read_begin(hb.st, &db);
    if (r == 0) {
        r = kmsd_db_replication_info(db, &f.db);
        if (r == 0 && (r = kmsd_db_nodes(db, add_node, &f)) > 0)
            r = 0;
        if (r < 0)
            snprintf(f.error, sizeof(f.error), "%s", vmseal_last_error());
        kmsd_store_end(hb.st, db, 0);
    } else {
        snprintf(f.error, sizeof(f.error), "%s", vmseal_last_error());
    }
    f.ok = r == 0;
    if (!f.ok) {
        if (!f.error[0])
            kmsd_store_describe(hb.st, f.error, sizeof(f.error));
        memset(&f.db, 0, sizeof(f.db));
        f.n_nodes = f.n_nodes_total = 0;
    }
    f.taken_ms = kmsd_cluster_now_ms();
    pthread_mutex_lock(&hb.lock);
    hb.facts = f;
    pthread_mutex_unlock(&hb.lock);
}

int kmsd_cluster_facts_get(kmsd_cluster_facts *out)
{
    pthread_mutex_lock(&hb.lock);
    int running = hb.running;
    if (running)
        *out = hb.facts;
    pthread_mutex_unlock(&hb.lock);
    return running ? 0 : -ENODATA;
}

static void *heartbeat_thread(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&hb.lock);
    while (!hb.stop) {
        pthread_mutex_unlock(&hb.lock);
        if (beat(0) < 0)
            kmsd_debug("heartbeat: %s", vmseal_last_error());
        refresh_facts();
        pthread_mutex_lock(&hb.lock);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += KMSD_HEARTBEAT_S;
        while (!hb.stop && pthread_cond_timedwait(&hb.cond, &hb.lock, &ts) == 0)
            ;
    }
    pthread_mutex_unlock(&hb.lock);
    if (beat(1) < 0)
        kmsd_debug("last heartbeat: %s", vmseal_last_error());
    return NULL;
}

int kmsd_cluster_start(kmsd_store *st, const char *node, const char *address)
{
    pthread_mutex_lock(&hb.lock);
    if (hb.running) {
        pthread_mutex_unlock(&hb.lock);
        return vmseal_fail(EBUSY, "heartbeat runs already");
    }
    memset(&hb.self, 0, sizeof(hb.self));
    snprintf(hb.self.name, sizeof(hb.self.name), "%s", node);
    snprintf(hb.self.address, sizeof(hb.self.address), "%s", address);
    snprintf(hb.self.version, sizeof(hb.self.version), "%s", VMSEAL_VERSION);
    unsigned char rnd[16];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        pthread_mutex_unlock(&hb.lock);
        return vmseal_fail(EIO, "no randomness");
    }
    vmseal_hex_encode(rnd, sizeof(rnd), hb.self.instance);
    hb.self.pid = getpid();
    hb.self.started = (int64_t)time(NULL);
    hb.st = st;
    hb.stop = 0;
    memset(&hb.facts, 0, sizeof(hb.facts));
    snprintf(hb.facts.node, sizeof(hb.facts.node), "%s", node);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&hb.cond, &ca);
    pthread_condattr_destroy(&ca);
    int r = pthread_create(&hb.th, NULL, heartbeat_thread, NULL);
    if (r != 0) {
        pthread_cond_destroy(&hb.cond);
        pthread_mutex_unlock(&hb.lock);
        return vmseal_fail(r, "cannot start the heartbeat thread: %s", strerror(r));
    }
    hb.running = 1;
    pthread_mutex_unlock(&hb.lock);
    return 0;
}

void kmsd_cluster_stop(void)
{
    pthread_mutex_lock(&hb.lock);
    if (!hb.running) {
        pthread_mutex_unlock(&hb.lock);
        return;
    }
    hb.stop = 1;
    pthread_cond_broadcast(&hb.cond);
    pthread_mutex_unlock(&hb.lock);
    pthread_join(hb.th, NULL);
    pthread_mutex_lock(&hb.lock);
    hb.running = 0;
    pthread_cond_destroy(&hb.cond);
    pthread_mutex_unlock(&hb.lock);
}

/* ---- cluster status ------------------------------------------------------------ */

#define MAX_HOSTS 16

/* Split a comma-separated libpq list; returns the count (0 for NULL/""). */
static int split(const char *s, char out[MAX_HOSTS][256])
{
    if (!s || !*s)
        return 0;
    int n = 0;
    while (n < MAX_HOSTS) {
        const char *c = strchr(s, ',');
        size_t len = c ? (size_t)(c - s) : strlen(s);
        snprintf(out[n], 256, "%.*s", (int)(len < 255 ? len : 255), s);
        n++;
        if (!c)
            break;
        s = c + 1;
    }
    return n;
}

static PGresult *query(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        return NULL;
    }
    return r;
}

static void first_line(char *out, size_t len, const char *msg)
{
    snprintf(out, len, "%s", msg && *msg ? msg : "unknown error");
    out[strcspn(out, "\n")] = '\0';
}

static void show_primary(PGconn *c, FILE *out)
{
    PGresult *r = query(c, "SELECT current_setting('synchronous_commit'),"
                           " current_setting('synchronous_standby_names')");
    if (r && PQntuples(r) == 1)
        fprintf(out, "synchronous replication: synchronous_commit=%s synchronous_standby_names='%s'%s\n",
                PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1),
                *PQgetvalue(r, 0, 1) ? "" : " (none: a Create is acknowledged once on the primary)");
    PQclear(r);
    r = query(c, "SELECT application_name, COALESCE(host(client_addr), 'local'), state,"
                 " COALESCE(sync_state, '-'),"
                 " COALESCE(round(EXTRACT(EPOCH FROM write_lag)::numeric, 3)::text, '0'),"
                 " COALESCE(round(EXTRACT(EPOCH FROM flush_lag)::numeric, 3)::text, '0'),"
                 " COALESCE(round(EXTRACT(EPOCH FROM replay_lag)::numeric, 3)::text, '0'),"
                 " COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint::text, '?')"
                 " FROM pg_stat_replication ORDER BY 1");
    fprintf(out, "replication (pg_stat_replication on the primary):\n");
    if (!r) {
        fprintf(out, "  (cannot read pg_stat_replication: %s)\n", PQerrorMessage(c));
    } else if (PQntuples(r) == 0) {
        fprintf(out, "  no standby connected\n");
    } else {
        for (int i = 0; i < PQntuples(r); i++) {
            if (PQgetisnull(r, i, 2)) {
                fprintf(out, "  %s  %s  (details need the pg_monitor role for this database user)\n",
                        PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
                continue;
            }
            fprintf(out, "  %s  %s  %s  %s  lag: write %s s, flush %s s, replay %s s, %s bytes "
                         "behind\n",
                    PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
                    PQgetvalue(r, i, 3), PQgetvalue(r, i, 4), PQgetvalue(r, i, 5),
                    PQgetvalue(r, i, 6), PQgetvalue(r, i, 7));
        }
    }
    PQclear(r);
    r = query(c, "SELECT (SELECT convert_from(v, 'UTF8') FROM kmsd_meta WHERE k='schema'),"
                 " (SELECT to_timestamp(convert_from(v, 'UTF8')::bigint)::text FROM kmsd_meta"
                 "  WHERE k='created'),"
                 " (SELECT count(*) FROM kmsd_objects), (SELECT seq FROM kmsd_audit_head)");
    if (r && PQntuples(r) == 1)
        fprintf(out, "store: schema %s, created %s, %s objects, audit chain at seq %s\n",
                PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3));
    else
        fprintf(out, "store: none in this database (vmseal-kmsd init --store postgresql)\n");
    PQclear(r);
    r = query(c, "SELECT name, address, version, pid,"
                 " round(EXTRACT(EPOCH FROM clock_timestamp()-seen)::numeric, 1),"
                 " round(EXTRACT(EPOCH FROM clock_timestamp()-up_since)::numeric, 0), stopped"
                 " FROM kmsd_nodes ORDER BY name COLLATE \"C\"");
    fprintf(out, "nodes (heartbeat every %d s):\n", KMSD_HEARTBEAT_S);
    if (!r || PQntuples(r) == 0)
        fprintf(out, "  none\n");
    for (int i = 0; r && i < PQntuples(r); i++) {
        double ago = atof(PQgetvalue(r, i, 4));
        const char *st = !strcmp(PQgetvalue(r, i, 6), "t") ? "stopped"
                         : ago > KMSD_NODE_GONE_S          ? "gone"
                                                            : "alive";
        fprintf(out, "  %s  %s  pid %s  vmseal-kmsd %s  up %s s  last seen %s s ago  %s\n",
                PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 3),
                PQgetvalue(r, i, 2), PQgetvalue(r, i, 5), PQgetvalue(r, i, 4), st);
    }
    PQclear(r);
}

int kmsd_cluster_status(const kmsd_config *cfg, FILE *out)
{
    if (cfg->store != KMSD_STORE_POSTGRESQL)
        return vmseal_fail(ENOTSUP, "cluster status: %s has store = sqlite (one node)", cfg->path);
    vmseal_secret *ci;
    int r = kmsd_pg_read_conninfo(cfg->conninfo_file, &ci);
    if (r < 0)
        return r;
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse((const char *)vmseal_secret_cdata(ci), &err);
    vmseal_secret_free(ci);
    if (!opts) {
        PQfreemem(err);
        return vmseal_fail(EINVAL, "%s: not a valid connection string", cfg->conninfo_file);
    }
    static char hosts[MAX_HOSTS][256], addrs[MAX_HOSTS][256], ports[MAX_HOSTS][256];
    int nh = 0, na = 0, np = 0;
    const char *kw[64], *val[64];
    int nk = 0;
    for (PQconninfoOption *o = opts; o->keyword && nk < 56; o++) {
        if (!o->val)
            continue;
        if (!strcmp(o->keyword, "host"))
            nh = split(o->val, hosts);
        else if (!strcmp(o->keyword, "hostaddr"))
            na = split(o->val, addrs);
        else if (!strcmp(o->keyword, "port"))
            np = split(o->val, ports);
        else if (strcmp(o->keyword, "target_session_attrs") && strcmp(o->keyword, "connect_timeout")) {
            kw[nk] = o->keyword;
            val[nk++] = o->val;
        }
    }
    int n = nh > na ? nh : na;
    if (n == 0)
        n = 1;
    char cto[12];
    snprintf(cto, sizeof(cto), "%d", cfg->pg_connect_timeout);
    fprintf(out, "node %s: store = postgresql, conninfo from %s\n", cfg->node_name,
            cfg->conninfo_file);
    fprintf(out, "database hosts:\n");
    PGconn *primary = NULL;
    char primary_name[520] = "";
    for (int i = 0; i < n; i++) {
        int k = nk;
        kw[k] = "target_session_attrs";
        val[k++] = "any";
        kw[k] = "connect_timeout";
        val[k++] = cto;
        kw[k] = "application_name";
        val[k++] = "vmseal-kmsd cluster status";
        if (nh) {
            kw[k] = "host";
            val[k++] = hosts[i < nh ? i : nh - 1];
        }
        if (na) {
            kw[k] = "hostaddr";
            val[k++] = addrs[i < na ? i : na - 1];
        }
        if (np) {
            kw[k] = "port";
            val[k++] = ports[np == 1 ? 0 : i < np ? i : np - 1];
        }
        kw[k] = NULL;
        val[k] = NULL;
        char name[520];
        snprintf(name, sizeof(name), "%.255s:%.200s", nh ? hosts[i < nh ? i : nh - 1] : na ? addrs[i] : "(default)",
                 np ? ports[np == 1 ? 0 : i < np ? i : np - 1] : "5432");
        PGconn *c = PQconnectdbParams(kw, val, 0);
        if (!c || PQstatus(c) != CONNECTION_OK) {
            char msg[300];
            first_line(msg, sizeof(msg), c ? PQerrorMessage(c) : "out of memory");
            fprintf(out, "  %-24s unreachable: %s\n", name, msg);
            PQfinish(c);
            continue;
        }
        PGresult *res = query(c, "SELECT pg_is_in_recovery(), current_setting('server_version'),"
                                 " COALESCE(round(EXTRACT(EPOCH FROM now()-"
                                 "pg_last_xact_replay_timestamp())::numeric, 1)::text, '-'),"
                                 " COALESCE(pg_wal_lsn_diff(pg_last_wal_receive_lsn(),"
                                 " pg_last_wal_replay_lsn())::bigint::text, '-')");
        if (!res || PQntuples(res) != 1) {
            fprintf(out, "  %-24s error: %s\n", name, PQerrorMessage(c));
            PQclear(res);
            PQfinish(c);
            continue;
        }
        int standby = !strcmp(PQgetvalue(res, 0, 0), "t");
        if (standby)
            fprintf(out, "  %-24s standby  PostgreSQL %s  received but not replayed: %s bytes, "
                         "last replayed transaction %s s ago\n",
                    name, PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 3), PQgetvalue(res, 0, 2));
        else
            fprintf(out, "  %-24s primary  PostgreSQL %s\n", name, PQgetvalue(res, 0, 1));
        PQclear(res);
        if (!standby && !primary) {
            primary = c;
            snprintf(primary_name, sizeof(primary_name), "%s", name);
        } else {
            PQfinish(c);
        }
    }
    PQconninfoFree(opts);
    if (!primary) {
        fprintf(out, "no primary answered: the nodes answer every request with an error until "
                     "one does (promote a standby: pg_ctl promote)\n");
        return 1;
    }
    fprintf(out, "primary: %s\n", primary_name);
    show_primary(primary, out);
    PQfinish(primary);
    return 0;
}
