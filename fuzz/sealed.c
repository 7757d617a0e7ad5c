/* libFuzzer target: the sealed-file reader over a memory stream with a
 * fixed test KEK, plus the header probe. Beyond "no crash": probe and reader
 * agree on the header, and a file that unseals produced exactly as many
 * bytes as its length says. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <vmseal/sealed.h>

#include "fuzz_seal_keys.h"

typedef struct src {
    const uint8_t *data;
    size_t len, pos;
} src;

static ssize_t src_read(void *ctx, void *buf, size_t len)
{
    src *s = ctx;
    size_t n = s->len - s->pos;
    if (n > len)
        n = len;
    /* Odd-sized reads, like a pipe. */
    if (n > 4093)
        n = 4093;
    if (n)
        memcpy(buf, s->data + s->pos, n);
    s->pos += n;
    return (ssize_t)n;
}

static int sink_write(void *ctx, const void *buf, size_t len)
{
    (void)buf;
    *(size_t *)ctx += len;
    return 0;
}

static vmseal_secret *kek;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!kek && vmseal_secret_from(fuzz_test_kek, sizeof(fuzz_test_kek), &kek) != 0)
        abort();
    vmseal_sealed_info probe_info, info;
    int hlen = vmseal_sealed_probe_header(data, size, &probe_info);

    src in = {data, size, 0};
    size_t written = 0;
    vmseal_stream io = {src_read, &in, sink_write, &written};
    int rc = vmseal_unseal(kek, &io, &info);
    if (rc == 0) {
        if (hlen <= 0 || (size_t)hlen != info.header_len ||
            strcmp(probe_info.kek_id, info.kek_id) != 0)
            abort();
        size_t cs = info.chunk_size, body = size - (size_t)hlen;
        size_t full = body / (cs + 16);
        size_t expect = full * cs + (body - full * (cs + 16)) - 16;
        if (written != expect)
            abort();
    }
    return 0;
}
