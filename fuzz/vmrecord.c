/* libFuzzer target: the vm.conf schema (lib/conf/vmrecord.c) on untrusted
 * bytes (a VM home a datastore user can edit). Beyond "no crash": a file
 * that parses is valid, is written back, and what is written parses to a
 * record that writes the same text again; a copy writes the same too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <vmseal/vmrecord.h>

static char *format(const vmseal_vmrec *r)
{
    vmseal_vmconf *c = NULL;
    if (vmseal_vmrec_to_conf(r, &c) != 0)
        abort();   /* a record that was read is always writable */
    char *t = vmseal_vmconf_format(c);
    vmseal_vmconf_free(c);
    if (!t)
        abort();
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vmseal_vmrec *r = NULL;
    if (vmseal_vmrec_parse((const char *)data, size, &r) != 0) {
        if (r)
            abort();
        return 0;
    }
    if (vmseal_vmrec_validate(r) != 0 || r->ndisks > VMSEAL_VMREC_MAX_DISKS)
        abort();
    vmseal_vmrec_keysafe_ref ks[VMSEAL_VMREC_KEYSAFES_MAX];
    if (vmseal_vmrec_keysafes(r, ks) > VMSEAL_VMREC_KEYSAFES_MAX)
        abort();
    char *text = format(r);
    vmseal_vmrec *again = NULL;
    if (vmseal_vmrec_parse(text, strlen(text), &again) != 0)
        abort();
    char *text2 = format(again);
    if (strcmp(text, text2) != 0)
        abort();
    vmseal_vmrec *copy = vmseal_vmrec_dup(r);
    if (copy) {
        char *text3 = format(copy);
        if (strcmp(text, text3) != 0)
            abort();
        free(text3);
        vmseal_vmrec_free(copy);
    }
    free(text);
    free(text2);
    vmseal_vmrec_free(again);
    vmseal_vmrec_free(r);
    return 0;
}
