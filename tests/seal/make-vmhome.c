/* Test helper: create an encrypted VM home folder through vmseal-hostd's
 * own code path (the host API handler; disks and NVRAM made, nothing
 * booted).
 *   make-vmhome DATASTORE KEK_FILE KEK_ID NAME NDISKS bios|uefi
 * KEK_FILE holds the 32 raw KEK bytes. Prints the VM's uuid. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <vmseal/secret.h>

#include "host.h"

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: make-vmhome DATASTORE KEK_FILE KEK_ID NAME NDISKS bios|uefi\n");
        return 64;
    }
    unsigned char raw[33];
    FILE *f = fopen(argv[2], "rb");
    size_t n = f ? fread(raw, 1, sizeof(raw), f) : 0;
    if (f)
        fclose(f);
    vmseal_secret *kek = NULL;
    if (n != 32 || vmseal_secret_from(raw, 32, &kek) < 0) {
        fprintf(stderr, "make-vmhome: %s: need 32 raw bytes\n", argv[2]);
        return 2;
    }
    memset(raw, 0, sizeof(raw));
    hostd_host_config cfg = {.datastore = argv[1], .accel = VMSEAL_ACCEL_TCG};
    hostd_host *h = NULL;
    if (hostd_host_open(&cfg, &h) < 0 || hostd_host_put_key(h, argv[3], "local", kek) < 0) {
        fprintf(stderr, "make-vmhome: %s\n", vmseal_last_error());
        return 2;
    }
    int nd = atoi(argv[5]);
    char disks[512] = "[";
    for (int i = 0; i < nd && i < 8; i++)
        snprintf(disks + strlen(disks), sizeof(disks) - strlen(disks), "%s{\"size_mb\": %d}",
                 i ? ", " : "", 2 + i);
    strcat(disks, "]");
    char body[1024];
    snprintf(body, sizeof(body),
             "{\"name\": \"%s\", \"disks\": %s, \"firmware\": \"%s\", \"policy\": \"encrypted\", "
             "\"kek_id\": \"%s\"}", argv[4], disks, argv[6], argv[3]);
    int status = 0;
    json_t *resp = NULL;
    hostd_host_handle(h, "POST", "/v1/vms", body, strlen(body), "", &status, &resp);
    int rc = 0;
    if (status != 201) {
        char *t = resp ? json_dumps(resp, 0) : NULL;
        fprintf(stderr, "make-vmhome: POST /v1/vms: %d %s\n", status, t ? t : "");
        free(t);
        rc = 2;
    } else {
        printf("%s\n", json_string_value(json_object_get(resp, "uuid")));
    }
    json_decref(resp);
    hostd_host_close(h);
    return rc;
}
