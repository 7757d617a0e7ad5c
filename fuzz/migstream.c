/* libFuzzer target: the migration stream's frame parser (lib/crypto/
 * migstream.c) fed a whole wire stream under the fixed test key and nonce
 * (fuzz/gen-migstream-corpus.py makes the seeds with Python's own AES-GCM).
 * Beyond "no crash": a stream that is accepted to its end frame, sealed
 * again from the clear bytes it gave, with the same frame sizes, is the
 * input byte for byte (nothing unauthenticated can pass), and the clear
 * byte count is what the stream says. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <vmseal/migstream.h>

#include "fuzz_seal_keys.h"

#define FUZZ_MIG_NONCE 0x0706050403020100ULL

static vmseal_secret *key;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!key) {
        vmseal_secret_allow_unlocked(1);
        if (vmseal_secret_from(fuzz_test_kek, sizeof(fuzz_test_kek), &key) != 0)
            abort();
    }
    vmseal_mig_stream *r = NULL;
    if (vmseal_mig_stream_new(key, FUZZ_MIG_NONCE, 0, &r) != 0)
        abort();
    uint8_t *clear = malloc(size + 1);
    size_t *sizes = malloc((size / (VMSEAL_MIG_HDR_LEN + VMSEAL_MIG_TAG_LEN) + 1) * sizeof(size_t));
    size_t pos = 0, clen = 0, nframes = 0;
    int ok = 0;
    while (pos + VMSEAL_MIG_HDR_LEN <= size) {
        const uint8_t *hdr = data + pos;
        size_t blen = 0, plen = 0;
        int end = 0;
        if (vmseal_mig_parse_header(r, hdr, &blen) != 0)
            break;
        if (blen > size - pos - VMSEAL_MIG_HDR_LEN)
            break; /* truncated */
        uint8_t *body = malloc(blen);
        memcpy(body, hdr + VMSEAL_MIG_HDR_LEN, blen);
        int rc = vmseal_mig_open(r, hdr, body, blen, &plen, &end);
        if (rc == 0 && plen) {
            memcpy(clear + clen, body, plen);
            clen += plen;
            sizes[nframes++] = plen;
        }
        free(body);
        if (rc != 0)
            break;
        pos += VMSEAL_MIG_HDR_LEN + blen;
        if (end) {
            ok = pos == size;
            break;
        }
    }
    if (vmseal_mig_bytes(r) != clen)
        abort();
    if (ok) {
        if (!vmseal_mig_finished(r))
            abort();
        vmseal_mig_stream *s = NULL;
        if (vmseal_mig_stream_new(key, FUZZ_MIG_NONCE, 1, &s) != 0)
            abort();
        uint8_t *again = malloc(size);
        size_t off = 0, at = 0, fl = 0;
        for (size_t i = 0; i < nframes; i++) {
            memcpy(again + off + VMSEAL_MIG_HDR_LEN, clear + at, sizes[i]);
            if (vmseal_mig_seal_data(s, again + off, sizes[i], &fl) != 0)
                abort();
            off += fl;
            at += sizes[i];
        }
        if (off + VMSEAL_MIG_HDR_LEN + 8 + VMSEAL_MIG_TAG_LEN != size ||
            vmseal_mig_seal_end(s, again + off, &fl) != 0 || memcmp(again, data, size) != 0)
            abort();
        free(again);
        vmseal_mig_stream_free(s);
    }
    free(sizes);
    free(clear);
    vmseal_mig_stream_free(r);
    return 0;
}
