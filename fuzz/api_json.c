/* libFuzzer target: the manager's request-body validation (jansson decode
 * with duplicate-key rejection, depth limit, then the schema of one API
 * request). The first byte picks the schema, the rest is the body.
 * Properties beyond "no crash": an accepted body, re-encoded, is accepted
 * again with the same value; a refused body comes with a message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../managerd/api_schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536)
        return 0;
    const api_schema *s = api_all_schemas[data[0] % api_n_schemas];
    char err[256] = "";
    json_t *v = NULL;
    int rc = api_parse((const char *)data + 1, size - 1, s, &v, err, sizeof(err));
    if (rc < 0) {
        if (v || err[0] == '\0')
            abort();
        return 0;
    }
    char *again = json_dumps(v, JSON_COMPACT);
    if (!again)
        abort();
    json_t *w = NULL;
    char err2[256];
    if (api_parse(again, strlen(again), s, &w, err2, sizeof(err2)) != 0 || !json_equal(v, w))
        abort();
    free(again);
    json_decref(w);
    json_decref(v);
    return 0;
}
