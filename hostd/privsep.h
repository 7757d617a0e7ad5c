/* vmseal-hostd — privilege separation: the messages between the monitor
 * (the parent: VMs, QEMU, disks, KEKs) and the network child (HTTPS
 * server, calls to the manager; never a key).
 *
 * Transport: one SOCK_SEQPACKET socketpair. A message is one 8-byte header
 * packet {uint32 type; uint32 len} (host byte order: both ends are the same
 * binary) followed by len bytes of payload in packets of at most
 * PS_CHUNK bytes. Every type has a maximum length, checked against the
 * header before anything is allocated; a packet larger than what is still
 * missing, a truncated packet, passed descriptors, an unknown type or a
 * payload that does not parse exactly (each field bounded, nothing left
 * over) is a protocol error: the receiver drops the connection.
 *
 * Payload fields: u32, u64 (host order), str/bytes = u32 length + bytes
 * (strings: no NUL inside, each with its own bound).
 *
 *   type            dir       payload
 *   PS_READY        NET->MON  u32 port (the HTTPS port bound)
 *   PS_REQUEST      NET->MON  u64 id, u32 method, str path, str peer subject,
 *                             str peer fingerprint, bytes body (<= 1 MiB)
 *   PS_RESPONSE     MON->NET  u64 id, u32 status, bytes JSON text (may be empty)
 *   PS_REGISTER     MON->NET  u64 id, str name, str url, str datastore,
 *                             bytes custody public key (32)
 *   PS_RESULT       NET->MON  u64 id, u32 errno (0: done), str message
 *   PS_FETCH_KEYS   MON->NET  u64 id, u32 n, n x str kek id
 *   PS_KEYS         NET->MON  u64 id, u32 errno, str message,
 *                             u32 n, n x {str kek id, str provider, bytes sealed (80)},
 *                             u32 n, n x str denied kek id,
 *                             u32 n, n x {str kek id, str reason}
 *   PS_CONSOLE_OPEN   NET->MON  u64 console id (chosen by the child), u32 kind
 *                               (PS_CONSOLE_SERIAL / PS_CONSOLE_VNC), str VM uuid,
 *                               str peer fingerprint
 *   PS_CONSOLE_OPENED MON->NET  u64 id, u32 HTTP status (200: open), str message
 *   PS_CONSOLE_DATA   both      u64 id, bytes (1..PS_CONSOLE_CHUNK): guest output
 *                               to the child, keystrokes / VNC client bytes to
 *                               the monitor (guest data, never key material;
 *                               neither side logs it)
 *   PS_CONSOLE_CLOSE  both      u64 id, str reason (the other side lets go)
 */
#ifndef VMSEAL_HOSTD_PRIVSEP_H
#define VMSEAL_HOSTD_PRIVSEP_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <vmseal/common.h>
#include <vmseal/kekdelivery.h>
#include <vmseal/keysafe.h>

enum ps_type {
    PS_READY = 1,
    PS_REQUEST = 2,
    PS_RESPONSE = 3,
    PS_REGISTER = 4,
    PS_RESULT = 5,
    PS_FETCH_KEYS = 6,
    PS_KEYS = 7,
    PS_CONSOLE_OPEN = 8,
    PS_CONSOLE_OPENED = 9,
    PS_CONSOLE_DATA = 10,
    PS_CONSOLE_CLOSE = 11,
};

enum ps_console_kind { PS_CONSOLE_SERIAL = 1, PS_CONSOLE_VNC = 2 };

enum ps_method { PS_GET = 1, PS_POST, PS_PUT, PS_DELETE, PS_PATCH };

#define PS_CHUNK (64u * 1024)
#define PS_PATH_MAX 1100          /* path with its query */
#define PS_SUBJECT_MAX 1024
#define PS_FPR_MAX 128
#define PS_BODY_MAX (1u << 20)    /* = the HTTPS server's max_body */
#define PS_RESPONSE_MAX (16u << 20)
#define PS_TEXT_MAX 1024          /* names, URLs, messages */
#define PS_KEYS_MAX 1024          /* KEK ids in one FETCH_KEYS / KEYS */
#define PS_CONSOLE_CHUNK (16u * 1024) /* console bytes in one CONSOLE_DATA */
#define PS_UUID_MAX 36

/* Header + payload bound of a type; 0 for an unknown type. */
size_t ps_max_len(uint32_t type);
const char *ps_method_name(uint32_t m);
uint32_t ps_method_of(const char *name);   /* 0 when not one of the five */

/* ----- building a payload */
typedef struct ps_buf {
    uint8_t *p;
    size_t len, cap;
    int err;
} ps_buf;
void ps_put_u32(ps_buf *b, uint32_t v);
void ps_put_u64(ps_buf *b, uint64_t v);
void ps_put_bytes(ps_buf *b, const void *data, size_t len);
void ps_put_str(ps_buf *b, const char *s);
/* Wipe and free. */
void ps_buf_free(ps_buf *b);

/* ----- reading one: every getter fails (and stays failed) on a short or
 * overlong field; ps_rd_end fails unless everything was used. */
typedef struct ps_rd {
    const uint8_t *p;
    size_t len, off;
    int err;
} ps_rd;
uint32_t ps_get_u32(ps_rd *r);
uint64_t ps_get_u64(ps_rd *r);
/* A view into the payload (not NUL-terminated) of at most max bytes. */
const uint8_t *ps_get_bytes(ps_rd *r, size_t max, size_t *len);
/* A string copied into out (outlen > max): 0..max bytes, no NUL inside. */
void ps_get_str(ps_rd *r, char *out, size_t outlen, size_t max);
int ps_rd_end(ps_rd *r);   /* 0 or -EPROTO */

/* ----- the channel: sends are serialized by the channel's lock. */
typedef struct ps_chan {
    int fd;
    pthread_mutex_t wlock;
} ps_chan;
void ps_chan_init(ps_chan *c, int fd);
void ps_chan_destroy(ps_chan *c);   /* does not close fd */

int ps_send(ps_chan *c, uint32_t type, const ps_buf *payload) VMSEAL_MUST_CHECK;
/* Blocks for one whole message. 0 with *type, *data (malloc'd; free with
 * ps_msg_free), *len; -EPIPE at end of file; -EPROTO (vmseal_last_error
 * says why) on a protocol error; -errno on a socket error. */
int ps_recv(ps_chan *c, uint32_t *type, uint8_t **data, size_t *len) VMSEAL_MUST_CHECK;
void ps_msg_free(uint8_t *data, size_t len);

/* Decoded messages that both sides use. */
typedef struct ps_request {
    uint64_t id;
    uint32_t method;
    char path[PS_PATH_MAX + 1];
    char subject[PS_SUBJECT_MAX + 1];
    char fingerprint[PS_FPR_MAX + 1];
    const uint8_t *body;    /* view into the message */
    size_t body_len;
} ps_request;
int ps_request_parse(const uint8_t *data, size_t len, ps_request *out) VMSEAL_MUST_CHECK;

typedef struct ps_sealed_key {
    char kek_id[VMSEAL_KEYSAFE_KEK_ID_MAX + 1];
    char provider[VMSEAL_KEYSAFE_PROVIDER_MAX + 1];
    uint8_t blob[VMSEAL_KD_BLOB_LEN];
} ps_sealed_key;

typedef struct ps_failed_key {
    char kek_id[VMSEAL_KEYSAFE_KEK_ID_MAX + 1];
    char reason[PS_TEXT_MAX + 1];
} ps_failed_key;

typedef struct ps_keys {
    uint64_t id;
    uint32_t err;
    char message[PS_TEXT_MAX + 1];
    ps_sealed_key *keys;
    size_t nkeys;
    char (*denied)[VMSEAL_KEYSAFE_KEK_ID_MAX + 1];
    size_t ndenied;
    ps_failed_key *failed;
    size_t nfailed;
} ps_keys;
int ps_keys_parse(const uint8_t *data, size_t len, ps_keys *out) VMSEAL_MUST_CHECK;
void ps_keys_encode(const ps_keys *k, ps_buf *b);
void ps_keys_free(ps_keys *k);

#endif
