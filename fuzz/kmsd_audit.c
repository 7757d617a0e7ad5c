/* libFuzzer target: vmseal-kmsd's audit log verifier (audit-verify) on
 * untrusted bytes: the line parser (chain fields, audit.recovered fields)
 * and the verifier's state machine (torn lines, recovery records, too long
 * lines). Beyond "no crash": a line that parses is written back from its
 * fields byte for byte (the syntax is canonical, so no byte escapes the
 * hash), and the verdict is the same whether the input is fed line by line
 * or through a file. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vmseal/common.h>

#include "audit.h"

static char path[64];

static void cleanup(void)
{
    unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(path, sizeof(path), "/tmp/vmseal-fuzz-audit.%d", (int)getpid());
    atexit(cleanup);
    return 0;
}

static void check_line(const char *line, size_t len)
{
    kmsd_audit_record r;
    if (kmsd_audit_parse_line(line, len, &r) != 0)
        return;
    char p[65], h[65], tail[256];
    vmseal_hex_encode(r.prev, 32, p);
    vmseal_hex_encode(r.hash, 32, h);
    int n = snprintf(tail, sizeof(tail), " seq=%" PRIu64 " prev=%s hash=%s", r.seq, p, h);
    if (r.seq == 0 || r.body_len + (size_t)n != len || memcmp(line + r.body_len, tail, (size_t)n))
        abort();
    unsigned char want[32];
    if (kmsd_audit_chain_hash(r.prev, line, r.body_len, r.seq, want) != 0 ||
        r.hash_ok != (memcmp(want, r.hash, 32) == 0))
        abort();
    if (r.recovered && !memmem(line, r.body_len, " op=audit.recovered ", 20))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    check_line(s, size);

    kmsd_audit_verifier v;
    kmsd_audit_verify_init(&v);
    size_t i = 0;
    int rc = 0;
    while (i < size && rc == 0) {
        const char *nl = memchr(s + i, '\n', size - i);
        size_t n = nl ? (size_t)(nl - (s + i)) : size - i;
        check_line(s + i, n);
        rc = kmsd_audit_verify_line(&v, s + i, n, nl != NULL);
        i += n + (nl != NULL);
    }
    if (rc == 0)
        rc = kmsd_audit_verify_end(&v);
    if (rc == 0 && (v.records + v.skipped != v.lines || v.next_seq != v.records + 1))
        abort();
    if (rc != 0 && (!v.failed || strncmp(v.error, "record ", 7) != 0 || v.bad_line == 0 ||
                    v.bad_line > v.lines))
        abort();

    /* the same through the file reader */
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();
    kmsd_audit_verifier w;
    int rf = kmsd_audit_verify_file(path, &w);
    if ((rf == 0) != (rc == 0) || w.records != v.records || w.bad_line != v.bad_line ||
        w.bad_record != v.bad_record || strcmp(w.error, v.error) != 0)
        abort();
    return 0;
}
