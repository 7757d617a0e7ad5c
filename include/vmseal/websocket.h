/* vmseal — WebSocket (RFC 6455) framing for the console paths:
 * CLI / web client  <-ws->  vmseal-managerd  <-wss, mutual TLS->  vmseal-hostd.
 *
 * Only what the consoles need: data frames (text, binary, continuation),
 * ping/pong and close; no extensions, no subprotocol negotiation. Every
 * frame is bounded (max_payload, default VMSEAL_WS_MAX_PAYLOAD; control
 * frames 125 bytes as the RFC says). The parser is strict: reserved bits
 * set, an unknown opcode, a fragmented or oversized control frame, a
 * non-minimal or 2^63+ length, a client frame without a mask or a server
 * frame with one are protocol errors (close code 1002; too large: 1009).
 *
 * A vmseal_ws is one end of an open WebSocket on a socket (fd) or a TLS
 * session (ssl) in non-blocking mode, used by one thread at a time. Reads
 * never block; sends wait at most their timeout for the peer to take the
 * bytes (a slow reader is dropped, nothing is buffered beyond one frame).
 */
#ifndef VMSEAL_WEBSOCKET_H
#define VMSEAL_WEBSOCKET_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include <vmseal/common.h>

#define VMSEAL_WS_MAX_PAYLOAD (64u * 1024)   /* default frame bound */
#define VMSEAL_WS_CONTROL_MAX 125
#define VMSEAL_WS_HANDSHAKE_MAX 8192         /* a client's 101 answer, headers */

enum vmseal_ws_opcode {
    VMSEAL_WS_CONT = 0,
    VMSEAL_WS_TEXT = 1,
    VMSEAL_WS_BINARY = 2,
    VMSEAL_WS_CLOSE = 8,
    VMSEAL_WS_PING = 9,
    VMSEAL_WS_PONG = 10,
};

/* Close codes used here */
#define VMSEAL_WS_NORMAL 1000
#define VMSEAL_WS_GOING_AWAY 1001
#define VMSEAL_WS_PROTOCOL_ERROR 1002
#define VMSEAL_WS_POLICY 1008
#define VMSEAL_WS_TOO_BIG 1009
#define VMSEAL_WS_INTERNAL 1011

typedef struct vmseal_ws_frame {
    int fin;
    int opcode;
    uint8_t *payload;      /* unmasked, inside the parsed buffer */
    size_t len;
} vmseal_ws_frame;

/* Parse one frame at buf[0..len): > 0 bytes used (*f set, payload
 * unmasked in place), 0 when more bytes are needed, -EPROTO or -EMSGSIZE
 * (vmseal_last_error says why; *close_code the code to send). masked: 1
 * when frames must be masked (a server reading a client), 0 when they must
 * not be (a client reading a server). */
long vmseal_ws_parse(uint8_t *buf, size_t len, int masked, size_t max_payload,
                     vmseal_ws_frame *f, uint16_t *close_code) VMSEAL_MUST_CHECK;

/* A frame header for opcode and len into out (at most 14 bytes); with a
 * mask (client) the mask key follows and the caller masks the payload
 * (vmseal_ws_mask). Returns the header length. */
size_t vmseal_ws_header(uint8_t out[14], int opcode, int fin, uint64_t len, const uint8_t *mask);
void vmseal_ws_mask(uint8_t *p, size_t len, const uint8_t mask[4], size_t offset);

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key (which must be the base64
 * of 16 bytes: -EINVAL otherwise). out: 28 characters + NUL. */
int vmseal_ws_accept_key(const char *key, char out[29]) VMSEAL_MUST_CHECK;

/* Checks of a server's upgrade request headers (any may be NULL): GET,
 * "Upgrade: websocket", "Connection: ... upgrade ...", version 13 and a
 * valid key. 0, or the HTTP status to answer (400; 426 for a wrong
 * version) with vmseal_last_error set. */
int vmseal_ws_check_request(const char *method, const char *upgrade, const char *connection,
                            const char *version, const char *key);

typedef struct vmseal_ws vmseal_ws;

/* An open WebSocket on fd (ssl NULL) or on ssl (fd: its socket). client: we
 * are the client (we mask, the peer must not). The fd is made
 * non-blocking. Neither fd nor ssl is taken. */
vmseal_ws *vmseal_ws_new(int fd, SSL *ssl, int client, size_t max_payload);
void vmseal_ws_free(vmseal_ws *w);
/* Bytes the server read after the handshake: parsed before the socket. */
int vmseal_ws_feed(vmseal_ws *w, const void *data, size_t len) VMSEAL_MUST_CHECK;
int vmseal_ws_fd(const vmseal_ws *w);
/* 1 when a frame may be ready without waiting for the socket. */
int vmseal_ws_buffered(const vmseal_ws *w);

/* Read what is there: 1 with a data frame (TEXT, BINARY, CONT) or the
 * peer's CLOSE in *f (valid until the next call), 0 when nothing complete
 * is there (poll the fd for POLLIN), < 0 on end of file (-EPIPE), a
 * protocol error (-EPROTO, -EMSGSIZE: a close frame with the code was
 * sent) or a socket error. Pings are answered here. */
int vmseal_ws_recv(vmseal_ws *w, vmseal_ws_frame *f, int timeout_ms) VMSEAL_MUST_CHECK;

/* Send one frame, waiting at most timeout_ms for the peer to take it
 * (-ETIMEDOUT: a slow reader). */
int vmseal_ws_send(vmseal_ws *w, int opcode, const void *data, size_t len, int timeout_ms)
    VMSEAL_MUST_CHECK;
/* A close frame with code and reason (truncated to fit), once. */
void vmseal_ws_close(vmseal_ws *w, uint16_t code, const char *reason);
/* The code and reason of the peer's close frame (0 when none came). */
uint16_t vmseal_ws_peer_close(const vmseal_ws *w, char *reason, size_t len);

/* Client handshake on a connected TLS session: GET path with the extra
 * header lines (each ending in \r\n, may be NULL), within timeout_ms. 0
 * when the server switched protocols; otherwise *status is the HTTP status
 * (-EPROTO) and msg the server's "error" text when it sent JSON. */
int vmseal_ws_client_handshake(SSL *ssl, const char *host, const char *path, const char *headers,
                               int timeout_ms, int *status, char *msg, size_t msglen)
    VMSEAL_MUST_CHECK;

/* Copy data frames both ways between a and b until either closes or
 * errs, or nothing moved for idle_ms (0: no idle bound). A send that
 * takes longer than send_ms ends the relay (slow reader). The other side
 * is closed with the reason; why says what ended it. */
void vmseal_ws_relay(vmseal_ws *a, vmseal_ws *b, int idle_ms, int send_ms, char *why, size_t whylen);

#endif
