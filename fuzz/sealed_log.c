/* libFuzzer target: the sealed-log segment reader (lib/crypto/sealed_file.c,
 * docs/formats.md "Sealed log") over a memory stream with the fixed test
 * key as the log key, plus the header probe and the segment name parser.
 * Beyond "no crash": probe and reader agree on the header; what the reader
 * verified adds up to the bytes it consumed; a segment that reads cleanly
 * has exactly the length its records say. */
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
    if (n > 4093)   /* odd-sized reads, like a pipe */
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

static vmseal_secret *key;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!key && vmseal_secret_from(fuzz_test_kek, sizeof(fuzz_test_kek), &key) != 0)
        abort();
    /* the name parser on the first bytes as text */
    char name[80];
    size_t nl = size < sizeof(name) - 1 ? size : sizeof(name) - 1;
    memcpy(name, data, nl);
    name[nl] = '\0';
    uint64_t seq = vmseal_slog_parse_name(name, "serial");
    if (seq) {
        char canon[VMSEAL_SLOG_NAME_MAX];
        if (vmseal_slog_name(canon, sizeof(canon), "serial", seq) != 0 || strcmp(canon, name) != 0)
            abort();
    }

    vmseal_slog_info probe, info;
    int pr = vmseal_slog_probe_header(data, size, &probe);
    src in = {data, size, 0};
    size_t written = 0;
    vmseal_stream io = {src_read, &in, sink_write, &written};
    vmseal_slog_state st;
    int rc = vmseal_slog_read(key, &io, &info, &st);
    if (st.bytes != written)
        abort();
    if (st.header_ok) {
        if (pr != 0 || memcmp(&probe, &info, sizeof(info)) != 0)
            abort();
        if (st.good_len != VMSEAL_SLOG_HEADER_LEN + st.records * VMSEAL_SLOG_RECORD_OVERHEAD +
                               st.bytes || st.good_len > size)
            abort();
    }
    if (rc == 0 && (!st.header_ok || st.good_len != size))
        abort();
    return 0;
}
