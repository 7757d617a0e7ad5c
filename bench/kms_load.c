/* kms-load: KMIP load generator for bench/kms-bench. N client threads, each
 * with its own mutually authenticated TLS connection (reused for every
 * request; reconnects resume the TLS session), send Create or Get requests
 * back to back for a fixed time and record each request's latency.
 *
 *   kms-load --port P --ca CA --cert CRT --key KEY [--host H] [--legacy-cbc]
 *            --clients N --seconds S --op create|get [--version 1.2]
 *
 * Prints one line: op clients requests seconds rate p50_ms p99_ms errors
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include <vmseal/kmip.h>
#include <vmseal/kmip_msg.h>
#include <vmseal/tls.h>

typedef struct opts {
    const char *host, *ca, *cert, *key, *op;
    int port, clients, legacy;
    double seconds;
    vmseal_kmip_version version;
} opts;

typedef struct worker {
    const opts *o;
    SSL_CTX *ctx;
    pthread_t th;
    double *lat;     /* seconds */
    size_t n, cap;
    long errors;
    int ready;
    char fatal[256];
} worker;

static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t start_cond = PTHREAD_COND_INITIALIZER;
static int n_ready, go;
static double t_start, t_end;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void add_attr_enum(vmseal_ttlv *t, const char *name, uint32_t v)
{
    vmseal_ttlv *a = vmseal_ttlv_add_struct(t, VMSEAL_KMIP_TAG_ATTRIBUTE);
    vmseal_ttlv_add_text(a, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, name);
    vmseal_ttlv_add_enum(a, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE, v);
}

static void add_attr_int(vmseal_ttlv *t, const char *name, int32_t v)
{
    vmseal_ttlv *a = vmseal_ttlv_add_struct(t, VMSEAL_KMIP_TAG_ATTRIBUTE);
    vmseal_ttlv_add_text(a, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, name);
    vmseal_ttlv_add_int(a, VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE, v);
}

/* A pre-encoded request: Create AES-256, or Get uid. */
static int build(const opts *o, const char *get_uid, uint8_t **buf, size_t *len)
{
    vmseal_ttlv *req = vmseal_kmip_request_new(&o->version, NULL);
    vmseal_ttlv *p;
    if (!get_uid) {
        p = vmseal_kmip_request_add(req, VMSEAL_KMIP_OP_CREATE, NULL, 0);
        vmseal_ttlv_add_enum(p, VMSEAL_KMIP_TAG_OBJECT_TYPE, VMSEAL_KMIP_OBJ_SYMMETRIC_KEY);
        vmseal_ttlv *t = vmseal_ttlv_add_struct(p, VMSEAL_KMIP_TAG_TEMPLATE_ATTRIBUTE);
        add_attr_enum(t, "Cryptographic Algorithm", VMSEAL_KMIP_ALG_AES);
        add_attr_int(t, "Cryptographic Length", 256);
        add_attr_int(t, "Cryptographic Usage Mask",
                     VMSEAL_KMIP_USAGE_ENCRYPT | VMSEAL_KMIP_USAGE_DECRYPT);
    } else {
        p = vmseal_kmip_request_add(req, VMSEAL_KMIP_OP_GET, NULL, 0);
        vmseal_ttlv_add_text(p, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, get_uid);
    }
    int r = vmseal_ttlv_encode(req, buf, len);
    vmseal_ttlv_free(req);
    return r;
}

/* Read one response into buf (a per-thread secure buffer). */
static int recv_into(SSL *ssl, uint8_t *buf, size_t cap, size_t *len)
{
    int r = vmseal_tls_read_full(ssl, buf, 8, 30000);
    if (r == 0)
        return -ECONNRESET;
    if (r < 0)
        return r;
    size_t total;
    if ((r = vmseal_ttlv_frame_len(buf, cap, &total)) < 0)
        return r;
    r = vmseal_tls_read_full(ssl, buf + 8, total - 8, 30000);
    if (r < 0)
        return r;
    if ((size_t)r != total - 8)
        return -ECONNRESET;
    *len = total;
    return 0;
}

/* Full check of a response: one successful item; for Create the new UID,
 * for Get a 32-byte key. */
static int check_full(const uint8_t *buf, size_t len, char *uid_out, size_t uidlen, int is_get)
{
    vmseal_kmip_response *resp;
    int r = vmseal_kmip_response_parse(buf, len, NULL, &resp);
    if (r < 0)
        return r;
    if (resp->count != 1 || resp->items[0].status != VMSEAL_KMIP_STATUS_SUCCESS) {
        r = resp->count ? vmseal_kmip_result_errno(&resp->items[0]) : -EPROTO;
    } else if (uid_out) {
        const char *u;
        if (vmseal_ttlv_find_text(resp->items[0].payload, VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, &u,
                                  NULL) == 0)
            snprintf(uid_out, uidlen, "%s", u);
        else
            r = -EPROTO;
    } else if (is_get) {
        const uint8_t *k;
        size_t kl;
        vmseal_ttlv *km = vmseal_ttlv_dig(resp->items[0].payload, VMSEAL_KMIP_TAG_SYMMETRIC_KEY,
                                          VMSEAL_KMIP_TAG_KEY_BLOCK, VMSEAL_KMIP_TAG_KEY_VALUE,
                                          VMSEAL_KMIP_TAG_KEY_MATERIAL, 0);
        if (vmseal_ttlv_get_bytes(km, &k, &kl) < 0 || kl != 32)
            r = vmseal_fail(EPROTO, "Get did not return a 32-byte key");
    }
    vmseal_kmip_response_free(resp);
    return r;
}

/* Offset of the Time Stamp value in a response (the only bytes that differ
 * between answers to the same Get), 0 when absent. */
static size_t timestamp_offset(const uint8_t *buf, size_t len)
{
    static const uint8_t tag[8] = {0x42, 0x00, 0x92, 0x09, 0, 0, 0, 8};
    for (size_t i = 16; i + 16 <= len && i < 128; i += 8)
        if (!memcmp(buf + i, tag, 8))
            return i + 8;
    return 0;
}

static void *run(void *arg)
{
    worker *w = arg;
    const opts *o = w->o;
    SSL *ssl = NULL;
    SSL_SESSION *sess = NULL;
    uint8_t *req = NULL, *ref = NULL;
    size_t len = 0, reflen = 0, tsoff = 0;
    int is_get = !strcmp(o->op, "get");
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0;
    vmseal_secret *io = vmseal_secret_new(65536);
    if (!io) {
        snprintf(w->fatal, sizeof(w->fatal), "no secure memory");
        goto ready;
    }
    buf = vmseal_secret_data(io);
    cap = vmseal_secret_len(io);
    int r = vmseal_tls_connect(w->ctx, o->host, o->port, 30000, NULL, &ssl);
    if (r < 0) {
        snprintf(w->fatal, sizeof(w->fatal), "connect: %s", vmseal_last_error());
        goto ready;
    }
    if (is_get) {
        /* a key of our own to read, made before the clock starts; the first
         * answer is checked in full and kept to compare the others with */
        uint8_t *creq;
        size_t clen;
        char uid[64];
        if (build(o, NULL, &creq, &clen) < 0 || vmseal_tls_write_full(ssl, creq, clen, 30000) < 0 ||
            recv_into(ssl, buf, cap, &n) < 0 || check_full(buf, n, uid, sizeof(uid), 0) < 0 ||
            build(o, uid, &req, &len) < 0 || vmseal_tls_write_full(ssl, req, len, 30000) < 0 ||
            recv_into(ssl, buf, cap, &n) < 0 || check_full(buf, n, NULL, 0, 1) < 0) {
            snprintf(w->fatal, sizeof(w->fatal), "first create + get: %s", vmseal_last_error());
            goto ready;
        }
        vmseal_ttlv_buf_free(creq, clen);
        ref = malloc(n);
        memcpy(ref, buf, n);
        reflen = n;
        tsoff = timestamp_offset(ref, reflen);
    } else if (build(o, NULL, &req, &len) < 0) {
        snprintf(w->fatal, sizeof(w->fatal), "build: %s", vmseal_last_error());
    }
    sess = SSL_get1_session(ssl);
ready:
    pthread_mutex_lock(&start_lock);
    n_ready++;
    pthread_cond_broadcast(&start_cond);
    while (!go)
        pthread_cond_wait(&start_cond, &start_lock);
    pthread_mutex_unlock(&start_lock);
    if (w->fatal[0])
        goto out;
    while (now() < t_end) {
        double t0 = now();
        r = vmseal_tls_write_full(ssl, req, len, 30000);
        if (r >= 0)
            r = recv_into(ssl, buf, cap, &n);
        if (r >= 0) {
            if (!is_get) {
                r = check_full(buf, n, NULL, 0, 0);
            } else if (n != reflen ||
                       memcmp(buf, ref, tsoff ? tsoff : n) ||
                       (tsoff && memcmp(buf + tsoff + 8, ref + tsoff + 8, n - tsoff - 8))) {
                r = check_full(buf, n, NULL, 0, 1); /* differs: look closely */
            }
            OPENSSL_cleanse(buf, n);
        }
        double t1 = now();
        if (r < 0) {
            w->errors++;
            if (r != -ECONNRESET && r != -EPIPE && r != -ETIMEDOUT && r != -EPROTO)
                continue;
            vmseal_tls_close(ssl);
            ssl = NULL;
            if (vmseal_tls_connect(w->ctx, o->host, o->port, 30000, sess, &ssl) < 0) {
                snprintf(w->fatal, sizeof(w->fatal), "reconnect: %s", vmseal_last_error());
                break;
            }
            continue;
        }
        if (w->n == w->cap) {
            w->cap = w->cap ? w->cap * 2 : 4096;
            double *nl = realloc(w->lat, w->cap * sizeof(double));
            if (!nl)
                break;
            w->lat = nl;
        }
        w->lat[w->n++] = t1 - t0;
    }
out:
    if (req)
        vmseal_ttlv_buf_free(req, len);
    if (ref) {
        OPENSSL_cleanse(ref, reflen);
        free(ref);
    }
    vmseal_secret_free(io);
    SSL_SESSION_free(sess);
    vmseal_tls_close(ssl);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    opts o = {.host = "127.0.0.1", .clients = 1, .seconds = 3, .op = "get",
              .version = {1, 2}};
    static const struct option lo[] = {
        {"host", required_argument, 0, 'H'}, {"port", required_argument, 0, 'p'},
        {"ca", required_argument, 0, 'a'},   {"cert", required_argument, 0, 'c'},
        {"key", required_argument, 0, 'k'},  {"legacy-cbc", no_argument, 0, 'l'},
        {"clients", required_argument, 0, 'n'}, {"seconds", required_argument, 0, 's'},
        {"op", required_argument, 0, 'o'},   {"version", required_argument, 0, 'v'},
        {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'H': o.host = optarg; break;
        case 'p': o.port = atoi(optarg); break;
        case 'a': o.ca = optarg; break;
        case 'c': o.cert = optarg; break;
        case 'k': o.key = optarg; break;
        case 'l': o.legacy = 1; break;
        case 'n': o.clients = atoi(optarg); break;
        case 's': o.seconds = atof(optarg); break;
        case 'o': o.op = optarg; break;
        case 'v':
            if (sscanf(optarg, "%d.%d", &o.version.major, &o.version.minor) != 2)
                return 2;
            break;
        default:
            fprintf(stderr, "usage: see the comment at the top of bench/kms_load.c\n");
            return 2;
        }
    }
    if (!o.port || !o.ca || !o.cert || !o.key || o.clients < 1 || o.clients > 1024 ||
        (strcmp(o.op, "create") && strcmp(o.op, "get"))) {
        fprintf(stderr, "kms-load: --port, --ca, --cert, --key, --op create|get needed\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    vmseal_tls_config tc = {.cert_file = o.cert, .key_file = o.key, .ca_file = o.ca,
                            .legacy_cbc_suites = o.legacy};
    SSL_CTX *ctx = vmseal_tls_client_ctx_new(&tc);
    if (!ctx) {
        fprintf(stderr, "kms-load: %s\n", vmseal_last_error());
        return 1;
    }
    if (o.legacy)
        SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    worker *w = calloc((size_t)o.clients, sizeof(*w));
    for (int i = 0; i < o.clients; i++) {
        w[i].o = &o;
        w[i].ctx = ctx;
        pthread_create(&w[i].th, NULL, run, &w[i]);
    }
    pthread_mutex_lock(&start_lock);
    while (n_ready < o.clients)
        pthread_cond_wait(&start_cond, &start_lock);
    t_start = now();
    t_end = t_start + o.seconds;
    go = 1;
    pthread_cond_broadcast(&start_cond);
    pthread_mutex_unlock(&start_lock);
    size_t total = 0;
    long errors = 0;
    int fatal = 0;
    for (int i = 0; i < o.clients; i++) {
        pthread_join(w[i].th, NULL);
        total += w[i].n;
        errors += w[i].errors;
        if (w[i].fatal[0]) {
            fprintf(stderr, "kms-load: client %d: %s\n", i, w[i].fatal);
            fatal = 1;
        }
    }
    double elapsed = now() - t_start;
    double *all = malloc((total ? total : 1) * sizeof(double));
    size_t k = 0;
    for (int i = 0; i < o.clients; i++) {
        memcpy(all + k, w[i].lat, w[i].n * sizeof(double));
        k += w[i].n;
        free(w[i].lat);
    }
    qsort(all, total, sizeof(double), cmp_double);
    double p50 = total ? all[total / 2] : 0, p99 = total ? all[(size_t)((double)total * 0.99)] : 0;
    printf("op=%s clients=%d requests=%zu seconds=%.2f rate=%.1f p50_ms=%.3f p99_ms=%.3f errors=%ld\n",
           o.op, o.clients, total, elapsed, (double)total / elapsed, p50 * 1e3, p99 * 1e3, errors);
    free(all);
    free(w);
    SSL_CTX_free(ctx);
    return fatal || total == 0 ? 1 : 0;
}
