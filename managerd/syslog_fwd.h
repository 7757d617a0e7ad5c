/* vmseal-managerd — the event log forwarded to a syslog collector.
 *
 * Each event becomes one RFC 5424 message with the event's fields as
 * structured data, sent over TCP (RFC 6587 octet counting) or TLS (RFC
 * 5425). The spool is the events table itself: a thread sends the events
 * after the last one delivered (meta key 'syslog.sent') in id order, in
 * batches, and moves that cursor only after a batch was written and the
 * collector's TCP acknowledged it. While the collector is down nothing is
 * dropped and the order is kept; after a crash the last batch may be sent
 * again (duplicates, never gaps).
 */
#ifndef VMSEAL_MANAGERD_SYSLOG_FWD_H
#define VMSEAL_MANAGERD_SYSLOG_FWD_H

#include <stddef.h>

struct manager;

#define SYSLOG_MAX_MSG 8192        /* bytes of one message (without the octet count) */
#define SYSLOG_BATCH 100           /* events read and written at a time */
#define SYSLOG_FACILITY 10         /* authpriv */
#define SYSLOG_SD_ID "vmseal@32473"
#define SYSLOG_APP_NAME "vmseal-managerd"

/* "tcp://HOST:PORT" or "tls://HOST:PORT" (HOST may be "[v6]"). */
typedef struct syslog_target {
    int tls;
    char host[256];
    int port;
} syslog_target;
int syslog_target_parse(const char *s, syslog_target *out);

/* One event as stored (text columns; NULL for SQL NULL). */
typedef struct syslog_event {
    const char *id, *time, *user, *source, *action, *object, *old_value, *new_value, *result, *hash;
} syslog_event;

/* Format one RFC 5424 message (no framing, no newline) into out, which has
 * room for at least SYSLOG_MAX_MSG + 1 bytes; returns its length (at most
 * SYSLOG_MAX_MSG). Values are cut, never the message. */
size_t syslog_format(const syslog_event *e, const char *hostname, char *out, size_t cap);

typedef struct syslog_fwd syslog_fwd;

/* Start the forwarder when managerd.conf sets syslog_target (*out stays
 * NULL when it does not). Fails on settings that can never work (e.g. a
 * CA file that does not load). */
int syslog_fwd_start(struct manager *m, syslog_fwd **out);
/* Stop the thread (interrupts waits; a TLS handshake in progress may take
 * up to the 5 s connect timeout) and free it. NULL is fine. */
void syslog_fwd_stop(syslog_fwd *f);

#endif
