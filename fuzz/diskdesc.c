/* libFuzzer target: the disk descriptor parser ("<image>.vmdesc").
 * Beyond "no crash": whatever parses is written back and parses to the
 * same fields. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmseal/diskdesc.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vmseal_diskdesc d, d2;
    if (vmseal_diskdesc_parse((const char *)data, size, &d) != 0)
        return 0;
    if (d.version != 1 || strcmp(d.format, "luks1") != 0 || !vmseal_uuid_valid(d.uuid) ||
        vmseal_keysafe_parse(d.keysafe, NULL) != 0)
        abort();
    char text[VMSEAL_KEYSAFE_LINE_MAX + 256];
    int n = snprintf(text, sizeof(text), "version = 1\nformat = luks1\nuuid = %s\nkeysafe = %s\n%s",
                     d.uuid, d.keysafe, d.incomplete ? "state = incomplete\n" : "");
    if (vmseal_diskdesc_parse(text, (size_t)n, &d2) != 0 || strcmp(d.uuid, d2.uuid) != 0 ||
        strcmp(d.keysafe, d2.keysafe) != 0 || d.incomplete != d2.incomplete)
        abort();
    return 0;
}
