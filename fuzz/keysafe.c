/* libFuzzer target: the key-safe line parser and unwrap with a fixed test
 * KEK. Properties checked beyond "no crash": a line that parses re-wraps to
 * a line that parses to the same fields, and an unwrapped payload has the
 * length the parser announced. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <vmseal/keysafe.h>

#include "fuzz_seal_keys.h"

static vmseal_secret *kek;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!kek && vmseal_secret_from(fuzz_test_kek, sizeof(fuzz_test_kek), &kek) != 0)
        abort();
    if (size > 4 * VMSEAL_KEYSAFE_LINE_MAX)
        return 0;
    char *line = malloc(size + 1);
    if (!line)
        return 0;
    memcpy(line, data, size);
    line[size] = '\0';

    vmseal_keysafe_info info;
    int prc = vmseal_keysafe_parse(line, &info);
    vmseal_secret *payload = NULL;
    int urc = vmseal_keysafe_unwrap(kek, line, FUZZ_TEST_OBJECT_ID, &payload);
    if (urc == 0) {
        if (prc != 0 || !payload || vmseal_secret_len(payload) != info.payload_len)
            abort();
        /* Re-wrap what came out and read it back. */
        char *again = NULL;
        if (vmseal_keysafe_wrap(kek, info.provider, info.kek_id, FUZZ_TEST_OBJECT_ID, payload,
                                &again) != 0)
            abort();
        vmseal_keysafe_info info2;
        vmseal_secret *back = NULL;
        if (vmseal_keysafe_parse(again, &info2) != 0 ||
            strcmp(info.provider, info2.provider) != 0 || strcmp(info.kek_id, info2.kek_id) != 0 ||
            vmseal_keysafe_unwrap(kek, again, FUZZ_TEST_OBJECT_ID, &back) != 0 ||
            vmseal_secret_cmp(back, payload) != 0)
            abort();
        vmseal_secret_free(back);
        free(again);
    } else if (payload) {
        abort(); /* nothing may come out of a failed unwrap */
    }
    vmseal_secret_free(payload);
    free(line);
    return 0;
}
