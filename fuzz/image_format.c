/* libFuzzer target: the image format sniffer (vmseal_image_format_detect,
 * lib/disk/disk_import.c) over the first bytes of a user's disk image.
 * Beyond "no crash": the answer is one of the known names (or NULL), an
 * importable answer is stable when the tail after 4 KiB changes, and
 * anything under 512 bytes is refused. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <vmseal/diskimport.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *f = vmseal_image_format_detect(data, size);
    if (size < 512 && f)
        abort();
    if (!f)
        return 0;
    static const char *const known[] = {"raw", "qcow2", "vmdk", "vdi", "vhdx", "luks"};
    int ok = 0;
    for (size_t i = 0; i < 6; i++)
        ok |= !strcmp(f, known[i]);
    if (!ok)
        abort();
    if (size > 4096) {
        const char *g = vmseal_image_format_detect(data, 4096);
        if (!g || strcmp(f, g))
            abort();
    }
    return 0;
}
