/* vmseal-kmsd — audit trail: one line per KMIP operation
 *   TIME audit peer=ADDR identity="SUBJECT" op=Get uid="7" result=Success [reason="..."]
 * Never key bytes. Written to the audit file (O_APPEND, 0600) or stderr.
 *
 * In a file every line ends with a SHA-256 hash chain (docs/kmsd.md, "Audit"):
 *   BODY seq=N prev=HEX64 hash=HEX64
 *   hash = SHA-256(prev as 32 bytes || BODY || N in decimal)
 * The first record of a log has seq=1 and prev = 64 zeros. A torn last line
 * (crash mid-write) is closed with a newline and followed by an
 * op=audit.recovered record naming its length and SHA-256. */
#ifndef KMSD_AUDIT_H
#define KMSD_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* Longest line the verifier accepts (kmsd writes at most ~2.3 KiB). */
#define KMSD_AUDIT_LINE_MAX 8192

/* path NULL or "" = stderr, without chain fields. Otherwise the file is
 * opened for appending (0600), locked against a second writer, and the chain
 * continues from its last complete line (read from the last 16 KiB only). */
int kmsd_audit_open(const char *path);
void kmsd_audit_close(void);
void kmsd_audit(const char *peer, const char *identity, const char *op, const char *uid,
                const char *result, const char *reason);

/* With store = postgresql the chain lives in the database (audit_db.c):
 * kmsd_audit() queues each record, with " node=NAME" after "audit", and a
 * background thread appends the queue in batches (kmsd_db_audit_append:
 * the chain head row is locked, so the appends of every node form one
 * chain). The queue holds at most KMSD_AUDIT_DB_QUEUE records while the
 * database is unavailable; beyond, records go to stderr. A file given by
 * kmsd_audit_open() still gets its own chain besides. */
#define KMSD_AUDIT_DB_QUEUE 8192
int kmsd_audit_db_start(kmsd_store *st, const char *node);
/* Write what is queued (trying for at most timeout_ms), then stop; records
 * left are written to stderr. */
void kmsd_audit_db_stop(int timeout_ms);
/* For kmsd_audit(): queue the record "TS audit node=NAME REST" when the
 * database sink runs. 1 when queued (or sent to stderr), 0 when it is off. */
int kmsd_audit_db_submit(const char *ts, const char *rest, size_t rest_len);

/* One parsed audit line (without its newline). */
typedef struct {
    uint64_t seq;
    unsigned char prev[32], hash[32];
    size_t body_len;        /* bytes before " seq=" */
    int hash_ok;            /* hash == SHA-256(prev || body || seq) */
    int recovered;          /* an op=audit.recovered record: */
    uint64_t torn_bytes;    /*   length of the skipped torn line */
    unsigned char torn_sha256[32];
} kmsd_audit_record;

/* Parse the chain fields of one line of untrusted bytes (any content, NULs
 * included). 0: the line ends with well-formed " seq=N prev=H hash=H" (lower
 * case hex, N decimal without leading zeros, 1 <= N < 10^19); -1 otherwise. */
int kmsd_audit_parse_line(const char *line, size_t len, kmsd_audit_record *rec);

/* hash = SHA-256(prev || body || decimal seq). 0, or -1 if OpenSSL fails. */
int kmsd_audit_chain_hash(const unsigned char prev[32], const char *body, size_t body_len,
                          uint64_t seq, unsigned char out[32]);

/* Incremental verifier: feed every line in order, then call _end. */
typedef struct {
    uint64_t next_seq;          /* seq the next record must carry */
    unsigned char prev[32];     /* and the hash it must chain from */
    uint64_t lines, records, skipped;
    int failed;
    int have_pending;           /* the last line is judged when the next one is seen */
    struct {
        kmsd_audit_record rec;
        int valid, newline, too_long, covers_previous;
        uint64_t line;
        size_t len;
        unsigned char sha256[32];
    } pending;
    uint64_t bad_record, bad_line; /* where it failed */
    char error[512];            /* "record N (line L): ..." */
} kmsd_audit_verifier;

void kmsd_audit_verify_init(kmsd_audit_verifier *v);
/* line: the bytes without '\n'; newline: whether the line ended with one
 * (only the last line of a file may not). 0, or -1 once a bad record is
 * found (v->error names it; later calls keep returning -1). */
int kmsd_audit_verify_line(kmsd_audit_verifier *v, const char *line, size_t len, int newline);
int kmsd_audit_verify_end(kmsd_audit_verifier *v);
/* The whole file, read in bounded chunks. 0 intact, -1 a bad record
 * (v->error), -2 the file cannot be read (vmseal_last_error()). */
int kmsd_audit_verify_file(const char *path, kmsd_audit_verifier *v);
/* The chain in a PostgreSQL store, read in bounded chunks up to the head
 * row (records appended meanwhile are left for the next run); the last
 * record must match the head. Same results as kmsd_audit_verify_file. */
int kmsd_audit_verify_db(kmsd_store *st, kmsd_audit_verifier *v);

#endif
