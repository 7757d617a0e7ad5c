/* bench: quick in-memory throughput of the disk data path (AES-256-XTS,
 * 512-byte sectors) and of sealing / unsealing, per thread count. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vmseal/sealed.h>
#include <vmseal/xts.h>

#include "cu.h"

#define BUF_BYTES (8u << 20)

typedef struct job {
    int kind;              /* 0 xts encrypt, 1 xts decrypt, 2 seal, 3 unseal */
    double seconds;
    const vmseal_secret *key;
    uint64_t bytes;
    int failed;
} job;

typedef struct memsrc {
    const uint8_t *data;
    size_t len, pos;
} memsrc;

static ssize_t mem_read(void *ctx, void *buf, size_t len)
{
    memsrc *m = ctx;
    size_t n = m->len - m->pos < len ? m->len - m->pos : len;
    memcpy(buf, m->data + m->pos, n);
    m->pos += n;
    return (ssize_t)n;
}

typedef struct memdst {
    uint8_t *data;
    size_t len, cap;
} memdst;

static int mem_write(void *ctx, const void *buf, size_t len)
{
    memdst *m = ctx;
    if (m->len + len > m->cap)
        return -ENOSPC;
    memcpy(m->data + m->len, buf, len);
    m->len += len;
    return 0;
}

static void *worker(void *arg)
{
    job *j = arg;
    uint8_t *buf = malloc(BUF_BYTES), *out = malloc(BUF_BYTES + BUF_BYTES / 16 + 4096);
    if (!buf || !out) {
        j->failed = 1;
        goto done;
    }
    memset(buf, 0x5a, BUF_BYTES);
    vmseal_xts *x = NULL;
    if (j->kind < 2 && vmseal_xts_new(j->key, &x) < 0) {
        j->failed = 1;
        goto done;
    }
    const vmseal_secret *kek = j->key;
    memdst sealed = {out, 0, BUF_BYTES + BUF_BYTES / 16 + 4096};
    if (j->kind == 3) {
        /* Unseal needs a sealed buffer: make one first (not timed). */
        memsrc s = {buf, BUF_BYTES, 0};
        vmseal_stream io = {mem_read, &s, mem_write, &sealed};
        if (vmseal_seal(kek, "bench", "bench", 0, &io) < 0)
            j->failed = 1;
    }
    double start = cu_now();
    uint64_t sector = 0;
    while (!j->failed && cu_now() - start < j->seconds) {
        int rc = 0;
        if (j->kind == 0)
            rc = vmseal_xts_encrypt(x, sector, buf, buf, BUF_BYTES / 512);
        else if (j->kind == 1)
            rc = vmseal_xts_decrypt(x, sector, buf, buf, BUF_BYTES / 512);
        else if (j->kind == 2) {
            memsrc s = {buf, BUF_BYTES, 0};
            memdst d = {out, 0, sealed.cap};
            vmseal_stream io = {mem_read, &s, mem_write, &d};
            rc = vmseal_seal(kek, "bench", "bench", 0, &io);
        } else {
            memsrc s = {sealed.data, sealed.len, 0};
            memdst d = {buf, 0, BUF_BYTES};
            vmseal_stream io = {mem_read, &s, mem_write, &d};
            rc = vmseal_unseal(kek, &io, NULL);
        }
        if (rc < 0)
            j->failed = 1;
        sector += BUF_BYTES / 512;
        j->bytes += BUF_BYTES;
    }
    j->seconds = cu_now() - start;
    vmseal_xts_free(x);
done:
    free(buf);
    free(out);
    return NULL;
}

int cu_bench_main(int argc, char **argv)
{
    static const struct option opts[] = {{"threads", required_argument, NULL, 't'},
                                         {"seconds", required_argument, NULL, 's'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t max_threads = ncpu > 0 ? (uint64_t)ncpu : 1, v;
    double secs = 1.0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            if (cu_parse_uint(optarg, &max_threads) < 0 || !max_threads || max_threads > 64) {
                cu_err("--threads: 1..64");
                return CU_USAGE;
            }
            break;
        case 's':
            if (cu_parse_uint(optarg, &v) < 0 || !v || v > 60) {
                cu_err("--seconds: 1..60");
                return CU_USAGE;
            }
            secs = (double)v;
            break;
        case 'h':
            printf("usage: vmseal-crypto-util bench [--threads N] [--seconds S]\n"
                   "\n"
                   "In-memory throughput (MB/s, 10^6 bytes) of the disk data path\n"
                   "(AES-256-XTS over 512-byte sectors, as for LUKS1 aes-xts-plain64) and of\n"
                   "sealing / unsealing (AES-256-GCM STREAM, 64 KiB chunks) with 1, 2, 4 ...\n"
                   "up to N threads (default: online CPUs), S seconds each (default 1).\n"
                   "Every thread works on its own 8 MiB buffer; no disk I/O is involved.\n");
            return CU_OK;
        default:
            return CU_USAGE;
        }
    }
    vmseal_secret *xkey = NULL, *kek = NULL;
    if (vmseal_secret_random(64, &xkey) < 0 || vmseal_secret_random(32, &kek) < 0)
        return cu_fail("bench");
    static const char *const names[] = {"xts encrypt (disk)", "xts decrypt (disk)",
                                        "seal (gcm stream)", "unseal (gcm stream)"};
    printf("%-22s %8s %10s\n", "operation", "threads", "MB/s");
    int rc = CU_OK;
    for (int kind = 0; kind < 4 && rc == CU_OK; kind++) {
        for (uint64_t t = 1; t <= max_threads; t = t * 2 > max_threads && t < max_threads
                                                        ? max_threads : t * 2) {
            job jobs[64];
            pthread_t th[64];
            for (uint64_t i = 0; i < t; i++) {
                jobs[i] = (job){kind, secs, kind < 2 ? xkey : kek, 0, 0};
                pthread_create(&th[i], NULL, worker, &jobs[i]);
            }
            double mbps = 0;
            for (uint64_t i = 0; i < t; i++) {
                pthread_join(th[i], NULL);
                if (jobs[i].failed)
                    rc = CU_ERROR;
                mbps += (double)jobs[i].bytes / jobs[i].seconds / 1e6;
            }
            printf("%-22s %8llu %10.0f\n", names[kind], (unsigned long long)t, mbps);
            fflush(stdout);
            if (t == max_threads)
                break;
        }
    }
    if (rc != CU_OK)
        cu_err("bench: a data path failed: %s", vmseal_last_error());
    vmseal_secret_free(xkey);
    vmseal_secret_free(kek);
    return rc;
}
