/* Test helper: load the shared KMIP byte vectors from $VMSEAL_SHARED.
 * A missing vector directory is a failure, not a skip. */
#ifndef VMSEAL_TEST_KMIP_VECTORS_H
#define VMSEAL_TEST_KMIP_VECTORS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmseal/common.h>

/* Path of a file or folder under $VMSEAL_SHARED/kmip-vectors/. */
static inline void vector_dir(char *out, size_t cap, const char *name)
{
    const char *shared = getenv("VMSEAL_SHARED");
    if (!shared || !*shared)
        fail_msg("VMSEAL_SHARED is not set: run through meson test");
    snprintf(out, cap, "%s/kmip-vectors/%s", shared, name);
}

/* Load vcenter-7.0.3/<name> (one line of hex + "\n") as bytes (free()). */
static inline uint8_t *vector_load(const char *name, size_t *len)
{
    char path[4096];
    char rel[512];
    snprintf(rel, sizeof(rel), "vcenter-7.0.3/%s", name);
    vector_dir(path, sizeof(path), rel);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open vector %s", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t r = getline(&line, &cap, f);
    fclose(f);
    if (r <= 0)
        fail_msg("empty vector %s", path);
    while (r > 0 && (line[r - 1] == '\n' || line[r - 1] == '\r'))
        line[--r] = 0;
    *len = (size_t)r / 2;
    uint8_t *buf = malloc(*len ? *len : 1);
    if (!buf || vmseal_hex_decode(line, (size_t)r, buf, *len) != 0)
        fail_msg("bad hex in %s", path);
    free(line);
    return buf;
}

#endif
