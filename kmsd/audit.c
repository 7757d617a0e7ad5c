/* Audit lines, one per operation, safe against log injection, chained with
 * SHA-256 when they go to a file; and the verifier of that chain. The
 * construction and the torn-line recovery are described in docs/kmsd.md. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <vmseal/common.h>

#include "audit.h"
#include "log.h"

#define BODY_MAX 2048
/* " seq=" N " prev=" HEX64 " hash=" HEX64 "\n" */
#define SUFFIX_MAX (5 + 20 + 6 + 64 + 6 + 64 + 1)
#define TAIL_WINDOW (2 * KMSD_AUDIT_LINE_MAX)
#define SEQ_DIGITS_MAX 19
#define RECOVERED_TAIL " op=audit.recovered uid=\"\" result=Success"

static int audit_fd = STDERR_FILENO;
static pthread_mutex_t audit_lock = PTHREAD_MUTEX_INITIALIZER;
/* Chain state, under audit_lock; only for a file (audit_chained). */
static int audit_chained;
static char audit_path[4096];
static uint64_t audit_seq = 1;       /* seq of the next record */
static unsigned char audit_prev[32]; /* hash of the last record written */
static size_t torn_len;              /* > 0: the file ends with a torn line of this length */
static unsigned char torn_sha[32];   /* and this SHA-256 */

/* ---- construction ---- */

static int sha256(const void *a, size_t alen, const void *b, size_t blen, const void *c,
                  size_t clen, unsigned char out[32])
{
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    unsigned int olen = 0;
    int ok = m && EVP_DigestInit_ex(m, EVP_sha256(), NULL) && EVP_DigestUpdate(m, a, alen) &&
             EVP_DigestUpdate(m, b, blen) && EVP_DigestUpdate(m, c, clen) &&
             EVP_DigestFinal_ex(m, out, &olen) && olen == 32;
    EVP_MD_CTX_free(m);
    return ok ? 0 : -1;
}

int kmsd_audit_chain_hash(const unsigned char prev[32], const char *body, size_t body_len,
                          uint64_t seq, unsigned char out[32])
{
    char dec[24];
    int n = snprintf(dec, sizeof(dec), "%" PRIu64, seq);
    return sha256(prev, 32, body, body_len, dec, (size_t)n, out);
}

static void hex64(const unsigned char in[32], char out[65])
{
    vmseal_hex_encode(in, 32, out);
}

/* Append " seq=N prev=H hash=H\n" to the body line[0..n) (room for
 * SUFFIX_MAX more bytes); the new length, or 0 if hashing failed. */
static size_t add_chain(char *line, size_t n, uint64_t seq, const unsigned char prev[32],
                        unsigned char hash[32])
{
    if (kmsd_audit_chain_hash(prev, line, n, seq, hash) < 0)
        return 0;
    char p[65], h[65];
    hex64(prev, p);
    hex64(hash, h);
    n += (size_t)snprintf(line + n, SUFFIX_MAX, " seq=%" PRIu64 " prev=%s hash=%s\n", seq, p, h);
    return n;
}

/* ---- parsing (untrusted bytes) ---- */

static int unhex_lower(const char *s, unsigned char out[32])
{
    for (size_t i = 0; i < 64; i++) {
        unsigned char c = (unsigned char)s[i];
        unsigned v;
        if (c >= '0' && c <= '9')
            v = c - '0';
        else if (c >= 'a' && c <= 'f')
            v = c - 'a' + 10;
        else
            return -1;
        if (i % 2 == 0)
            out[i / 2] = (unsigned char)(v << 4);
        else
            out[i / 2] |= (unsigned char)v;
    }
    return 0;
}

/* Strip "<key>HEX64" from the end of s[0..*len); 0 and out set, or -1. */
static int take_hex(const char *s, size_t *len, const char *key, unsigned char out[32])
{
    size_t k = strlen(key);
    if (*len < k + 64 || unhex_lower(s + *len - 64, out) < 0 ||
        memcmp(s + *len - 64 - k, key, k) != 0)
        return -1;
    *len -= k + 64;
    return 0;
}

/* Strip "<key>DIGITS" (canonical decimal, 1..19 digits) from the end. */
static int take_dec(const char *s, size_t *len, const char *key, uint64_t *out)
{
    size_t e = *len, b = e, k = strlen(key);
    while (b > 0 && e - b <= SEQ_DIGITS_MAX && s[b - 1] >= '0' && s[b - 1] <= '9')
        b--;
    if (b == e || e - b > SEQ_DIGITS_MAX || (s[b] == '0' && e - b > 1) || b < k ||
        memcmp(s + b - k, key, k) != 0)
        return -1;
    uint64_t v = 0;
    for (size_t i = b; i < e; i++)
        v = v * 10 + (uint64_t)(s[i] - '0');
    *out = v;
    *len = b - k;
    return 0;
}

int kmsd_audit_parse_line(const char *line, size_t len, kmsd_audit_record *r)
{
    memset(r, 0, sizeof(*r));
    size_t n = len;
    if (take_hex(line, &n, " hash=", r->hash) < 0 || take_hex(line, &n, " prev=", r->prev) < 0)
        return -1;
    size_t seq_end = n;
    if (take_dec(line, &n, " seq=", &r->seq) < 0 || r->seq == 0)
        return -1;
    r->body_len = n;
    /* the digits exactly as written: canonical, so they are the decimal seq */
    r->hash_ok = 0;
    unsigned char h[32];
    if (sha256(r->prev, 32, line, n, line + n + 5, seq_end - n - 5, h) == 0)
        r->hash_ok = CRYPTO_memcmp(h, r->hash, 32) == 0;
    /* BODY = ... op=audit.recovered uid="" result=Success torn_bytes=B torn_sha256=H */
    size_t m = n;
    uint64_t tb;
    unsigned char ts[32];
    size_t rt = sizeof(RECOVERED_TAIL) - 1;
    if (take_hex(line, &m, " torn_sha256=", ts) == 0 && take_dec(line, &m, " torn_bytes=", &tb) == 0 &&
        m >= rt && memcmp(line + m - rt, RECOVERED_TAIL, rt) == 0) {
        r->recovered = 1;
        r->torn_bytes = tb;
        memcpy(r->torn_sha256, ts, 32);
    }
    return 0;
}

/* ---- writing ---- */

static ssize_t write_retry(int fd, const void *buf, size_t n)
{
    ssize_t w;
    do
        w = write(fd, buf, n);
    while (w < 0 && errno == EINTR);
    return w;
}

/* The record could not be written to the file: say so and put it on stderr
 * so that it is not lost. line ends with '\n'. */
static void report_failure(const char *line, size_t n, const char *why)
{
    kmsd_err("audit log %s: cannot write a record (%s); it follows on stderr", audit_path, why);
    ssize_t w = write_retry(STDERR_FILENO, line, n);
    (void)w;
}

/* A write of n bytes stopped after w (0 < w < n): the file now ends with a
 * torn line, recorded before the next record. */
static void note_torn(const char *line, size_t w)
{
    torn_len = w;
    if (sha256(line, w, "", 0, "", 0, torn_sha) < 0)
        memset(torn_sha, 0, sizeof(torn_sha));
}

/* Close the torn line with a newline and chain an audit.recovered record
 * naming its length and SHA-256, in one write. Under audit_lock. */
static int recover_torn(void)
{
    char line[BODY_MAX + SUFFIX_MAX], ts[32], th[65];
    kmsd_timestamp(ts);
    hex64(torn_sha, th);
    line[0] = '\n';
    size_t n = 1 + (size_t)snprintf(line + 1, BODY_MAX - 1,
                                    "%s audit peer=- identity=\"vmseal-kmsd\"" RECOVERED_TAIL
                                    " torn_bytes=%zu torn_sha256=%s",
                                    ts, torn_len, th);
    unsigned char h[32];
    size_t m = add_chain(line + 1, n - 1, audit_seq, audit_prev, h);
    if (m == 0) {
        kmsd_err("audit log %s: SHA-256 failed", audit_path);
        return -1;
    }
    m += 1;
    ssize_t w = write_retry(audit_fd, line, m);
    if (w == (ssize_t)m) {
        kmsd_warn("audit log %s: a torn line of %zu bytes (a crash or a failed write mid-line) "
                  "was closed and recorded by audit.recovered seq=%" PRIu64,
                  audit_path, torn_len, audit_seq);
        audit_seq++;
        memcpy(audit_prev, h, 32);
        torn_len = 0;
        return 0;
    }
    int e = errno;
    if (w > 0) {
        /* the newline went out: the old torn line is closed (and will show
         * in audit-verify); what follows it is the new torn line */
        torn_len = 0;
        if (w > 1)
            note_torn(line + 1, (size_t)w - 1);
    }
    kmsd_err("audit log %s: cannot record the torn line (%s)", audit_path,
             w < 0 ? strerror(e) : "short write");
    return -1;
}

/* Write one body (line[0..n), room for SUFFIX_MAX more), chained when the
 * audit goes to a file. Under audit_lock. */
static void emit(char *line, size_t n)
{
    if (!audit_chained) {
        line[n++] = '\n';
        ssize_t w = write_retry(audit_fd, line, n);
        (void)w;
        return;
    }
    if (torn_len && recover_torn() < 0) {
        line[n++] = '\n';
        report_failure(line, n, "the torn line before it could not be recorded");
        return;
    }
    unsigned char h[32];
    size_t m = add_chain(line, n, audit_seq, audit_prev, h);
    if (m == 0) {
        line[n++] = '\n';
        report_failure(line, n, "SHA-256 failed");
        return;
    }
    ssize_t w = write_retry(audit_fd, line, m);
    if (w == (ssize_t)m) {
        audit_seq++;
        memcpy(audit_prev, h, 32);
        return;
    }
    int e = errno;
    if (w > 0)
        note_torn(line, (size_t)w);
    report_failure(line, m, w < 0 ? strerror(e) : "short write, the file ends with a torn line");
}

/* Copy with quotes and control characters escaped. */
static size_t put_quoted(char *out, size_t room, const char *s)
{
    size_t n = 0;
    if (room < 3)
        return 0;
    out[n++] = '"';
    for (; s && *s && n + 5 < room; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            n += (size_t)snprintf(out + n, room - n, "\\x%02x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n++] = '"';
    out[n] = '\0';
    return n;
}

/* snprintf at line + *n, never past BODY_MAX - 1. */
static void VMSEAL_PRINTF(3, 4) put_fmt(char *line, size_t *n, const char *fmt, ...)
{
    if (*n >= BODY_MAX - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(line + *n, BODY_MAX - *n, fmt, ap);
    va_end(ap);
    if (k > 0)
        *n += (size_t)k;
    if (*n > BODY_MAX - 1)
        *n = BODY_MAX - 1;
}

static size_t room_left(size_t n, size_t keep)
{
    return n + keep < BODY_MAX ? BODY_MAX - n - keep : 0;
}

void kmsd_audit(const char *peer, const char *identity, const char *op, const char *uid,
                const char *result, const char *reason)
{
    char line[BODY_MAX + SUFFIX_MAX], ts[32];
    kmsd_timestamp(ts);
    size_t n = 0;
    put_fmt(line, &n, "%s audit ", ts);
    size_t rest = n; /* the database's copy puts node=NAME here */
    put_fmt(line, &n, "peer=%s identity=", peer ? peer : "-");
    n += put_quoted(line + n, room_left(n, 256), identity ? identity : "");
    put_fmt(line, &n, " op=%s uid=", op ? op : "-");
    n += put_quoted(line + n, room_left(n, 128) < 80 ? room_left(n, 128) : 80, uid ? uid : "");
    put_fmt(line, &n, " result=%s", result ? result : "-");
    if (reason && *reason && n + 16 < BODY_MAX) {
        put_fmt(line, &n, " reason=");
        n += put_quoted(line + n, room_left(n, 1), reason);
    }
    if (n > BODY_MAX - 2)
        n = BODY_MAX - 2;
    int in_db = kmsd_audit_db_submit(ts, line + rest, n - rest);
    pthread_mutex_lock(&audit_lock);
    if (audit_chained || !in_db) /* with the database, stderr only as a fallback */
        emit(line, n);
    pthread_mutex_unlock(&audit_lock);
}

/* ---- opening: continue the chain from the tail of the file ---- */

/* Read at most TAIL_WINDOW bytes at the end of the file and set the chain
 * state from its last complete line; note a torn line after it. *close_nl is
 * set when a long unterminated tail must be closed with a bare newline. */
static int read_tail(int fd, off_t size, const char *path, int *close_nl)
{
    audit_seq = 1;
    memset(audit_prev, 0, sizeof(audit_prev));
    torn_len = 0;
    *close_nl = 0;
    if (size == 0)
        return 0;
    size_t w = size < TAIL_WINDOW ? (size_t)size : TAIL_WINDOW;
    int whole = (off_t)w == size; /* the window starts at the start of the file */
    char *buf = malloc(w);
    if (!buf)
        return vmseal_fail(ENOMEM, "out of memory");
    size_t got = 0;
    while (got < w) {
        ssize_t r = pread(fd, buf + got, w - got, size - (off_t)w + (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            free(buf);
            return vmseal_fail(e, "cannot read the end of audit log %s: %s", path,
                               r < 0 ? strerror(e) : "file shrank");
        }
        got += (size_t)r;
    }
    size_t end = w; /* buf[0..end) holds complete lines only */
    if (buf[w - 1] != '\n') {
        const char *nl = memrchr(buf, '\n', w);
        size_t start = nl ? (size_t)(nl - buf) + 1 : 0;
        if (!nl && !whole) {
            kmsd_warn("audit log %s: it ends with more than %d bytes without a newline, not a "
                      "line vmseal-kmsd wrote; closed with a newline, a new chain starts at "
                      "seq=1 (audit-verify will report the line)",
                      path, TAIL_WINDOW);
            *close_nl = 1;
            free(buf);
            return 0;
        }
        note_torn(buf + start, w - start);
        end = start;
    }
    if (end > 0) {
        const char *nl = end > 1 ? memrchr(buf, '\n', end - 1) : NULL;
        size_t ls = nl ? (size_t)(nl - buf) + 1 : 0;
        kmsd_audit_record rec;
        if (!nl && !whole) {
            kmsd_warn("audit log %s: its last line is longer than %d bytes, not one vmseal-kmsd "
                      "wrote; a new chain starts at seq=1 (audit-verify will report it)",
                      path, TAIL_WINDOW);
        } else if (kmsd_audit_parse_line(buf + ls, end - 1 - ls, &rec) < 0 ||
                   rec.seq >= UINT64_C(9999999999999999999)) {
            kmsd_warn("audit log %s: its last line has no hash chain fields (written before the "
                      "chain, or edited); a new chain starts at seq=1 and audit-verify will "
                      "report the earlier lines: move them to another file to verify this one",
                      path);
        } else {
            if (!rec.hash_ok)
                kmsd_warn("audit log %s: its last record (seq=%" PRIu64 ") does not match its "
                          "hash; the chain continues from it, audit-verify will report it",
                          path, rec.seq);
            audit_seq = rec.seq + 1;
            memcpy(audit_prev, rec.hash, 32);
        }
    }
    free(buf);
    return 0;
}

static void reset_state(void)
{
    audit_fd = STDERR_FILENO;
    audit_chained = 0;
    audit_path[0] = '\0';
    audit_seq = 1;
    memset(audit_prev, 0, sizeof(audit_prev));
    torn_len = 0;
}

int kmsd_audit_open(const char *path)
{
    kmsd_audit_close();
    if (!path || !*path)
        return 0;
    int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return vmseal_fail(errno, "cannot open audit log %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return vmseal_fail(e, "cannot stat audit log %s: %s", path, strerror(e));
    }
    pthread_mutex_lock(&audit_lock);
    snprintf(audit_path, sizeof(audit_path), "%s", path);
    int close_nl = 0, r = 0;
    if (S_ISREG(st.st_mode)) {
        /* two writers would fork the chain */
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
            int e = errno;
            r = vmseal_fail(e, "audit log %s is in use by another process (%s)", path,
                            e == EWOULDBLOCK ? "another vmseal-kmsd with the same audit_log?"
                                             : strerror(e));
        } else {
            r = read_tail(fd, st.st_size, path, &close_nl);
        }
    }
    /* a device or pipe (e.g. /dev/null): chained, from seq=1 every time */
    if (r == 0) {
        audit_fd = fd;
        audit_chained = 1;
        if (close_nl && write_retry(fd, "\n", 1) != 1)
            r = vmseal_fail(errno, "cannot write audit log %s: %s", path, strerror(errno));
        else if (torn_len && recover_torn() < 0)
            r = vmseal_fail(EIO, "cannot write audit log %s (see the log above)", path);
    }
    if (r < 0) {
        reset_state();
        pthread_mutex_unlock(&audit_lock);
        close(fd);
        return r;
    }
    char p[65];
    hex64(audit_prev, p);
    if (audit_seq == 1)
        kmsd_info("audit log %s: hash chain starts at seq=1", path);
    else
        kmsd_info("audit log %s: hash chain continues at seq=%" PRIu64 " after hash=%s", path,
                  audit_seq, p);
    pthread_mutex_unlock(&audit_lock);
    return 0;
}

void kmsd_audit_close(void)
{
    pthread_mutex_lock(&audit_lock);
    if (audit_chained && audit_seq > 1) {
        /* the head, for an outside record: a cut tail is not visible otherwise */
        char h[65];
        hex64(audit_prev, h);
        kmsd_info("audit log %s: last record seq=%" PRIu64 " hash=%s", audit_path, audit_seq - 1,
                  h);
    }
    if (audit_fd != STDERR_FILENO)
        close(audit_fd);
    reset_state();
    pthread_mutex_unlock(&audit_lock);
}

/* ---- verifying ---- */

void kmsd_audit_verify_init(kmsd_audit_verifier *v)
{
    memset(v, 0, sizeof(*v));
    v->next_seq = 1;
}

static int VMSEAL_PRINTF(2, 3) bad(kmsd_audit_verifier *v, const char *fmt, ...)
{
    v->bad_record = v->next_seq;
    v->bad_line = v->pending.line;
    int n = snprintf(v->error, sizeof(v->error), "record %" PRIu64 " (line %" PRIu64 "): ",
                     v->bad_record, v->bad_line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->error + n, sizeof(v->error) - (size_t)n, fmt, ap);
    va_end(ap);
    v->failed = 1;
    return -1;
}

#define CHAIN_BROKEN "hash mismatch — edited, deleted or reordered records before or at this line"

/* Judge the pending line as a record of the chain. */
static int judge(kmsd_audit_verifier *v)
{
    const kmsd_audit_record *r = &v->pending.rec;
    v->have_pending = 0;
    if (!v->pending.newline)
        return bad(v, "torn last line (%zu bytes without a newline at the end of the file) — the "
                      "writer stopped mid-line or the file was cut; it is not covered by the chain",
                   v->pending.len);
    if (v->pending.too_long)
        return bad(v, "line longer than %d bytes — not written by vmseal-kmsd (inserted or edited)",
                   KMSD_AUDIT_LINE_MAX);
    if (!v->pending.valid)
        return bad(v, "no valid chain fields (seq=, prev=, hash=) at the end of the line — edited, "
                      "inserted, or written before the chain existed");
    if (r->seq != v->next_seq)
        return bad(v, CHAIN_BROKEN " (it carries seq=%" PRIu64 ", expected %" PRIu64 ")", r->seq,
                   v->next_seq);
    if (CRYPTO_memcmp(r->prev, v->prev, 32) != 0) {
        if (v->next_seq == 1)
            return bad(v, CHAIN_BROKEN " (prev of the first record is not 64 zeros)");
        return bad(v, CHAIN_BROKEN " (prev is not the hash of record %" PRIu64 ")",
                   v->next_seq - 1);
    }
    if (!r->hash_ok)
        return bad(v, CHAIN_BROKEN " (the line's bytes do not match its hash)");
    if (r->recovered && !v->pending.covers_previous)
        return bad(v, "audit.recovered names a torn line of %" PRIu64 " bytes that is not the line "
                      "before it — lines edited or deleted before this one",
                   r->torn_bytes);
    v->next_seq++;
    memcpy(v->prev, r->hash, 32);
    v->records++;
    return 0;
}

static int feed(kmsd_audit_verifier *v, const char *line, size_t len, int newline, int too_long)
{
    if (v->failed)
        return -1;
    v->lines++;
    kmsd_audit_record rec;
    int valid = !too_long && kmsd_audit_parse_line(line, len, &rec) == 0;
    if (!valid)
        memset(&rec, 0, sizeof(rec));
    unsigned char sha[32];
    if (sha256(line, len, "", 0, "", 0, sha) < 0)
        memset(sha, 0, sizeof(sha));
    int covers = 0;
    if (v->have_pending) {
        if (valid && rec.recovered && v->pending.newline && !v->pending.too_long &&
            rec.torn_bytes == v->pending.len && CRYPTO_memcmp(rec.torn_sha256, v->pending.sha256, 32) == 0) {
            /* a torn line closed by kmsd, and the record that names it */
            v->skipped++;
            covers = 1;
        } else if (judge(v) < 0) {
            return -1;
        }
    }
    v->have_pending = 1;
    v->pending.rec = rec;
    v->pending.valid = valid;
    v->pending.newline = newline;
    v->pending.too_long = too_long;
    v->pending.covers_previous = covers;
    v->pending.line = v->lines;
    v->pending.len = len;
    memcpy(v->pending.sha256, sha, 32);
    /* nothing may follow a line without a newline */
    if (!newline)
        return judge(v);
    return 0;
}

int kmsd_audit_verify_line(kmsd_audit_verifier *v, const char *line, size_t len, int newline)
{
    if (len > KMSD_AUDIT_LINE_MAX)
        return feed(v, line, KMSD_AUDIT_LINE_MAX, newline, 1);
    return feed(v, line, len, newline, 0);
}

int kmsd_audit_verify_end(kmsd_audit_verifier *v)
{
    if (v->failed)
        return -1;
    if (v->have_pending)
        return judge(v);
    return 0;
}

int kmsd_audit_verify_file(const char *path, kmsd_audit_verifier *v)
{
    kmsd_audit_verify_init(v);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        vmseal_fail(errno, "cannot open %s: %s", path, strerror(errno));
        return -2;
    }
    enum { CHUNK = 65536 };
    char *chunk = malloc(CHUNK), *lb = malloc(KMSD_AUDIT_LINE_MAX);
    size_t ll = 0;
    int too_long = 0, r = 0;
    if (!chunk || !lb) {
        vmseal_fail(ENOMEM, "out of memory");
        r = -2;
    }
    while (r == 0) {
        ssize_t got = read(fd, chunk, CHUNK);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            vmseal_fail(errno, "cannot read %s: %s", path, strerror(errno));
            r = -2;
            break;
        }
        if (got == 0) {
            if (ll > 0 || too_long)
                r = feed(v, lb, ll, 0, too_long);
            if (r == 0)
                r = kmsd_audit_verify_end(v);
            break;
        }
        size_t i = 0;
        while (i < (size_t)got && r == 0) {
            const char *nl = memchr(chunk + i, '\n', (size_t)got - i);
            size_t seg = nl ? (size_t)(nl - (chunk + i)) : (size_t)got - i;
            size_t take = seg <= KMSD_AUDIT_LINE_MAX - ll ? seg : KMSD_AUDIT_LINE_MAX - ll;
            memcpy(lb + ll, chunk + i, take);
            ll += take;
            if (take < seg)
                too_long = 1;
            i += seg;
            if (nl) {
                r = feed(v, lb, ll, 1, too_long);
                ll = 0;
                too_long = 0;
                i++;
            }
        }
    }
    free(chunk);
    free(lb);
    close(fd);
    return r;
}
