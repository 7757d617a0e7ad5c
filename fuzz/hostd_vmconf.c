/* libFuzzer target: the vm.conf parser (lib/conf/vmconf.c). Beyond "no
 * crash": whatever parses is written back and parses to the same entries. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <vmseal/vmconf.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vmseal_vmconf *c = NULL;
    if (vmseal_vmconf_parse((const char *)data, size, &c) != 0)
        return 0;
    char *text = vmseal_vmconf_format(c);
    if (!text)
        abort();
    vmseal_vmconf *again = NULL;
    if (vmseal_vmconf_parse(text, strlen(text), &again) != 0)
        abort();
    if (vmseal_vmconf_count(c) != vmseal_vmconf_count(again))
        abort();
    for (size_t i = 0; i < vmseal_vmconf_count(c); i++) {
        if (strcmp(vmseal_vmconf_key_at(c, i), vmseal_vmconf_key_at(again, i)) != 0 ||
            strcmp(vmseal_vmconf_value_at(c, i), vmseal_vmconf_value_at(again, i)) != 0)
            abort();
        if (!vmseal_vmconf_key_valid(vmseal_vmconf_key_at(c, i)) ||
            !vmseal_vmconf_value_valid(vmseal_vmconf_value_at(c, i)))
            abort();
    }
    free(text);
    vmseal_vmconf_free(again);
    vmseal_vmconf_free(c);
    return 0;
}
