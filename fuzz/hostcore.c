/* libFuzzer target: the host-sealed core dump reader (include/vmseal/
 * hostcore.h) over a memory stream, with the fixed public test key of
 * fuzz_seal_keys.h as the host's X25519 private key. Beyond "no crash":
 * an input that opens produced no more bytes than it holds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <vmseal/hostcore.h>

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

static vmseal_secret *priv;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!priv && vmseal_secret_from(fuzz_test_kek, sizeof(fuzz_test_kek), &priv) != 0)
        abort();
    src in = {data, size, 0};
    size_t written = 0;
    vmseal_stream io = {src_read, &in, sink_write, &written};
    int rc = vmseal_hostcore_open(priv, &io);
    if (rc == 0 && (size < VMSEAL_HOSTCORE_PREFIX_LEN || written > size))
        abort();
    return 0;
}
