/* Interop scenario for the KMIP client library against pykmip-server, run
 * by interop_pykmip.sh (which made the certificates and started the server):
 *   interop_client PORT DEAD_PORT DIR
 * Checks, on a cluster [dead port, live server]: the key life cycle through
 * the library API, that all calls share one TLS connection (counted in the
 * server's log), that the client reconnects by itself after the server was
 * restarted under it, and that PyKMIP's "cannot parse" answer to a batch
 * maps to an error. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vmseal/kmip_client.h>

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "interop_client:%d: ", __LINE__);                   \
            fprintf(stderr, __VA_ARGS__);                                       \
            fprintf(stderr, " [last error: %s]\n", vmseal_last_error());        \
            exit(1);                                                            \
        }                                                                       \
    } while (0)

static const char *dir;

/* TLS sessions that carried at least one request from us, as the server's
 * log shows them: "Session client identity" lines are written while a
 * request is processed (before we get the answer), numbered per server run
 * ("Starting connection service" starts a run). Bare TCP probes and failed
 * handshakes never log an identity. */
static int connections_seen(void)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/server.log", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    static char seen[4096][24];
    int n = 0, run = 0;
    char line[4096];
    while (fgets(line, sizeof(line), f)) {
        if (strstr(line, "Starting connection service"))
            run++;
        const char *id = strstr(line, "kmip.server.session.");
        if (!id || !strstr(line, "Session client identity"))
            continue;
        char key[24];
        snprintf(key, sizeof(key), "%d/%.8s", run, id + strlen("kmip.server.session."));
        int dup = 0;
        for (int i = 0; i < n && !dup; i++)
            dup = strcmp(seen[i], key) == 0;
        if (!dup && n < 4096)
            memcpy(seen[n++], key, sizeof(key));
    }
    fclose(f);
    return n;
}

static char *path_in(const char *name)
{
    char *p;
    if (asprintf(&p, "%s/%s", dir, name) < 0)
        exit(1);
    return p;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: interop_client PORT DEAD_PORT DIR\n");
        return 2;
    }
    dir = argv[3];
    char live[64], dead[64], name[64];
    snprintf(live, sizeof(live), "127.0.0.1:%s", argv[1]);
    snprintf(dead, sizeof(dead), "127.0.0.1:%s", argv[2]);
    snprintf(name, sizeof(name), "vmseal-lib-%d", (int)getpid());
    const char *servers[] = {dead, live};
    vmseal_kmip_client_config cfg = {
        .servers = servers,
        .n_servers = 2,
        .tls = {.cert_file = path_in("client.pem"), .key_file = path_in("client.key"),
                .ca_file = path_in("ca.pem"), .require_eku = 1, .legacy_cbc_suites = 1},
        .connect_timeout_ms = 5000,
        .io_timeout_ms = 10000,
    };
    vmseal_kmip_client *c;
    CHECK(vmseal_kmip_client_new(&cfg, &c) == 0, "client_new");
    int conns0 = connections_seen();
    CHECK(conns0 >= 0, "cannot read the server log");

    /* Life cycle through the API. */
    vmseal_kmip_create_opts co = {.name = name};
    char *uid = NULL;
    CHECK(vmseal_kmip_create_aes(c, &co, &uid) == 0, "create");
    CHECK(vmseal_kmip_client_server(c) && strcmp(vmseal_kmip_client_server(c), live) == 0,
          "connected to %s, not the live server", vmseal_kmip_client_server(c));
    vmseal_kmip_version v = vmseal_kmip_client_version(c);
    CHECK(v.major == 1 && v.minor == 4, "negotiated %d.%d", v.major, v.minor);
    vmseal_secret *k1, *k2;
    CHECK(vmseal_kmip_get_key(c, uid, &k1) == 0, "get");
    CHECK(vmseal_secret_len(k1) == 32, "key is %zu bytes", vmseal_secret_len(k1));
    CHECK(vmseal_kmip_activate(c, uid) == 0, "activate");
    CHECK(vmseal_kmip_get_key(c, uid, &k2) == 0, "get after activate");
    CHECK(vmseal_secret_cmp(k1, k2) == 0, "two Gets returned different keys");
    vmseal_secret_free(k2);

    vmseal_kmip_locate_filter f = {.name = name, .object_type = VMSEAL_KMIP_OBJ_SYMMETRIC_KEY};
    char **uids;
    size_t n;
    CHECK(vmseal_kmip_locate(c, &f, &uids, &n) == 0, "locate");
    CHECK(n == 1 && strcmp(uids[0], uid) == 0, "locate found %zu objects", n);
    vmseal_kmip_uids_free(uids, n);

    const char *want[] = {"State", "Cryptographic Length"};
    vmseal_ttlv *attrs;
    CHECK(vmseal_kmip_get_attributes(c, uid, want, 2, &attrs) == 0, "get attributes");
    uint32_t state;
    int32_t bits;
    CHECK(vmseal_ttlv_get_enum(vmseal_kmip_attr_value(attrs, "State", 0), &state) == 0 &&
          state == VMSEAL_KMIP_STATE_ACTIVE, "state %u", state);
    CHECK(vmseal_ttlv_get_int(vmseal_kmip_attr_value(attrs, "Cryptographic Length", 0), &bits) == 0 &&
          bits == 256, "length %d", bits);
    CHECK(vmseal_kmip_attr_value(attrs, "State", 1) == NULL, "a second State");
    vmseal_ttlv_free(attrs);

    vmseal_kmip_server_info info;
    CHECK(vmseal_kmip_query(c, &info) == 0, "query");
    CHECK(strncmp(info.vendor, "PyKMIP", 6) == 0, "vendor %s", info.vendor);
    vmseal_kmip_version vs[8];
    CHECK(vmseal_kmip_discover_versions(c, vs, 8, &n) == 0 && n >= 5, "discover versions");

    /* All of that went over one connection (the dead server is never seen). */
    int conns1 = connections_seen();
    CHECK(conns1 - conns0 == 1, "%d connections for one client", conns1 - conns0);

    /* PyKMIP cannot parse AddAttribute and answers a batch of two with a
     * single error item: that must come back as an error, not a crash. */
    vmseal_kmip_text_attr xa[] = {{"x-Vendor", "vmseal"}, {"x-Product", "interop"}};
    int rc = vmseal_kmip_add_attributes(c, uid, xa, 2);
    CHECK(rc == -EINVAL && strstr(vmseal_last_error(), "Invalid Message"),
          "add attributes on PyKMIP gave %d", rc);

    /* The server restarts under our open connection: the next call
     * reconnects by itself. */
    char *ctl;
    if (asprintf(&ctl, "'%s/server-ctl.sh' restart", dir) < 0)
        return 1;
    CHECK(system(ctl) == 0, "server restart");
    int conns2 = connections_seen();
    CHECK(vmseal_kmip_get_key(c, uid, &k2) == 0, "get after the server restarted");
    CHECK(vmseal_secret_cmp(k1, k2) == 0, "key changed across the restart");
    vmseal_secret_free(k2);
    int conns3 = connections_seen();
    CHECK(conns3 - conns2 == 1, "%d new connections seen by the server for one reconnection",
          conns3 - conns2);

    /* Explicit disconnect, then calls connect again. */
    vmseal_kmip_client_disconnect(c);
    CHECK(vmseal_kmip_client_server(c) == NULL, "still connected");
    CHECK(vmseal_kmip_revoke(c, uid, VMSEAL_KMIP_REVOKE_KEY_COMPROMISE, "interop") == 0, "revoke");
    CHECK(vmseal_kmip_get_attributes(c, uid, want, 1, &attrs) == 0, "get attributes after revoke");
    CHECK(vmseal_ttlv_get_enum(vmseal_kmip_attr_value(attrs, "State", 0), &state) == 0 &&
          state == VMSEAL_KMIP_STATE_COMPROMISED, "state after compromise %u", state);
    vmseal_ttlv_free(attrs);
    CHECK(vmseal_kmip_destroy(c, uid) == 0, "destroy");
    CHECK(vmseal_kmip_get_key(c, uid, &k2) == -ENOENT, "get of a destroyed key");
    CHECK(strstr(vmseal_last_error(), "Item Not Found"), "message");
    CHECK(vmseal_kmip_activate(c, "") == -EINVAL, "empty uid");

    vmseal_secret_free(k1);
    free(uid);
    free(ctl);
    vmseal_kmip_client_free(c);
    free((void *)cfg.tls.cert_file);
    free((void *)cfg.tls.key_file);
    free((void *)cfg.tls.ca_file);
    printf("interop_client: all checks passed\n");
    return 0;
}
