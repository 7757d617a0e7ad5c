/* Test helper: seal stdin as a suspend state file of an encrypted VM the way
 * vmseal-hostd does (hostd_vmstate_key: the per-VM secret from vm.conf's key
 * safe, purpose "state:<file name>"; the header names that label).
 *   seal-vmstate VM.CONF KEK_FILE FILE_NAME   (stdin -> VMHOME/FILE_NAME)
 * KEK_FILE holds the 32 raw KEK bytes. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <vmseal/keysafe.h>
#include <vmseal/sealed.h>
#include <vmseal/vmrecord.h>

#include "vmstate.h"

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: seal-vmstate VM.CONF KEK_FILE FILE_NAME < STREAM\n");
        return 64;
    }
    unsigned char raw[33];
    FILE *f = fopen(argv[2], "rb");
    size_t n = f ? fread(raw, 1, sizeof(raw), f) : 0;
    if (f)
        fclose(f);
    vmseal_secret *kek = NULL, *vm_secret = NULL, *key = NULL;
    vmseal_vmrec *c = NULL;
    if (n != 32 || vmseal_secret_from(raw, 32, &kek) < 0) {
        fprintf(stderr, "seal-vmstate: %s: need 32 raw bytes\n", argv[2]);
        return 2;
    }
    memset(raw, 0, sizeof(raw));
    char obj[64], label[VMSEAL_KEYSAFE_KEK_ID_MAX + 1], path[4096];
    int r = vmseal_vmrec_load(argv[1], &c);
    if (r == 0)
        r = vmseal_vmrec_keysafe_object(c, -1, 0, obj, sizeof(obj));
    if (r == 0)
        r = vmseal_keysafe_unwrap(kek, c->vm_keysafe ? c->vm_keysafe : "", obj, &vm_secret);
    if (r == 0)
        r = hostd_vmstate_key(vm_secret, c->uuid, argv[3], &key, label, sizeof(label));
    int fd = -1;
    if (r == 0) {
        const char *slash = strrchr(argv[1], '/');
        snprintf(path, sizeof(path), "%.*s%s", slash ? (int)(slash - argv[1]) + 1 : 0, argv[1],
                 argv[3]);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        r = fd < 0 ? -1 : vmseal_seal_stream(key, VMSEAL_VMFILE_PROVIDER, label, 0, fd);
    }
    if (r < 0)
        fprintf(stderr, "seal-vmstate: %s\n", vmseal_last_error());
    if (fd >= 0)
        close(fd);
    vmseal_secret_free(kek);
    vmseal_secret_free(vm_secret);
    vmseal_secret_free(key);
    vmseal_vmrec_free(c);
    return r < 0 ? 2 : 0;
}
