/* libFuzzer target: one KMIP request message through vmseal-kmsd's request
 * processing (parse, authenticate, dispatch every batch item, build the
 * response) against a real store in a temporary folder. Whatever the bytes,
 * an answer comes back and nothing crashes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vmseal/kmip.h>

#include "audit.h"
#include "config.h"
#include "log.h"
#include "masterkey.h"
#include "server.h"
#include "store.h"

static kmsd_server srv;
static char workdir[64];

static void cleanup(void)
{
    static const char *const names[] = {"kmsd.conf", "master.key", "kmsd.db", "kmsd.db-wal",
                                        "kmsd.db-shm", "kmsd.db-journal"};
    char p[128];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", workdir, names[i]);
        unlink(p);
    }
    rmdir(workdir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char dir[] = "/tmp/vmseal-fuzz-kmsd.XXXXXX";
    if (!mkdtemp(dir))
        abort();
    snprintf(workdir, sizeof(workdir), "%s", dir);
    atexit(cleanup);
    char p[256];
    snprintf(p, sizeof(p), "%s/kmsd.conf", dir);
    FILE *f = fopen(p, "w");
    if (!f)
        abort();
    fprintf(f, "cert = x.crt\nkey = x.key\nca = ca.crt\nmaster_key_file = master.key\n"
               "audit_log = /dev/null\nadmin = CN=admin,O=vmseal\n");
    fclose(f);
    snprintf(p, sizeof(p), "%s/master.key", dir);
    if (kmsd_mk_create_file(p) < 0 || kmsd_config_load(dir, &srv.cfg) < 0 ||
        kmsd_mk_open_file(p, &srv.mk) < 0 ||
        kmsd_store_open(srv.cfg->database, "wal", srv.mk, 1, &srv.store) < 0 ||
        kmsd_audit_open("/dev/null") < 0)
        abort();
    kmsd_log_open(NULL, KMSD_LOG_ERROR, 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* alternate the identity so access control paths run too */
    const char *id = (size && (data[size - 1] & 1)) ? "CN=admin,O=vmseal" : "CN=fuzz,O=vmseal";
    vmseal_ttlv *resp = kmsd_process_message(&srv, id, "fuzz", data, size);
    if (!resp)
        abort();
    uint8_t *buf;
    size_t len;
    if (vmseal_ttlv_encode(resp, &buf, &len) < 0)
        abort(); /* every answer must be encodable */
    vmseal_ttlv_buf_free(buf, len);
    vmseal_ttlv_free(resp);
    return 0;
}
