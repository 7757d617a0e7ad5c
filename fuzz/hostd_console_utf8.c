/* libFuzzer target: hostd's cleaning of guest console bytes into the JSON
 * text of GET /v1/vms/{uuid}/log (hostd/serial.c hostd_console_utf8).
 * Beyond "no crash": the result is valid UTF-8 without NUL (jansson takes
 * it as a JSON string), its length is right, ASCII text (but NUL) passes
 * unchanged, and it is never more than 3 bytes per input byte. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "serial.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int cut = 0; cut < 2; cut++) {
        size_t n = 0;
        char *s = hostd_console_utf8(data, size, cut, &n);
        if (!s)
            abort();
        if (strlen(s) != n || n > 3 * size)
            abort();
        json_t *j = json_stringn(s, n);
        if (!j)
            abort();
        json_decref(j);
        int ascii = 1;
        for (size_t i = 0; i < size; i++)
            if (data[i] == 0 || data[i] >= 0x80)
                ascii = 0;
        if (ascii && (n != size || memcmp(s, data, size) != 0))
            abort();
        free(s);
    }
    return 0;
}
