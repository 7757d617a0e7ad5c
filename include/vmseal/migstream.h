/* vmseal — the encrypted live-migration stream.
 *
 * QEMU writes its migration stream, in clear, to a local socket; a relay
 * (vmseal-migrate-relay, started by hostd per migration) cuts it into
 * frames sealed with AES-256-GCM under a one-time 256-bit key and sends
 * them over TCP; the relay on the destination opens each frame before its
 * bytes reach the destination QEMU.
 *
 * Frame (integers big-endian):
 *
 *   header (12 bytes, authenticated as AAD):
 *     magic "VMM1" | type u8 (1 data, 2 end) | 3 zero bytes | len u32
 *   body: ciphertext of len bytes | GCM tag (16 bytes)
 *
 * The GCM nonce of frame i (i = 0, 1, ...) is the migration's 64-bit nonce
 * followed by i as a u32; i is not sent: each side counts. A frame that was
 * replayed, dropped or reordered is opened under the wrong nonce and fails;
 * a bit flipped anywhere fails. The end frame (len 8) carries the number of
 * clear bytes sent; a stream that stops before it (truncated, even at a
 * frame boundary), whose count does not match, or that goes on after it,
 * fails. A data frame holds 1..VMSEAL_MIG_MAX_PAYLOAD bytes; the length is
 * checked before anything is read or allocated. A stream has at most
 * 2^32 - 1 frames (4 PiB at the largest frames).
 *
 * Every failure is final: once a frame failed, the stream refuses all
 * further calls (-EBADMSG / -EPROTO, with vmseal_last_error()).
 */
#ifndef VMSEAL_MIGSTREAM_H
#define VMSEAL_MIGSTREAM_H

#include <vmseal/common.h>
#include <vmseal/secret.h>

#define VMSEAL_MIG_KEY_LEN 32
#define VMSEAL_MIG_NONCE_LEN 8
#define VMSEAL_MIG_HDR_LEN 12
#define VMSEAL_MIG_TAG_LEN 16
#define VMSEAL_MIG_MAX_PAYLOAD (1u << 20)
/* What the sender puts in one data frame at most. */
#define VMSEAL_MIG_FRAME_PAYLOAD (256u << 10)
/* Room for one whole frame of the largest payload. */
#define VMSEAL_MIG_MAX_FRAME (VMSEAL_MIG_HDR_LEN + VMSEAL_MIG_MAX_PAYLOAD + VMSEAL_MIG_TAG_LEN)

enum { VMSEAL_MIG_DATA = 1, VMSEAL_MIG_END = 2 };

typedef struct vmseal_mig_stream vmseal_mig_stream;

/* A stream for one direction: sender = 1 seals, 0 opens. key: exactly
 * VMSEAL_MIG_KEY_LEN bytes (copied into the stream's cipher context). */
int vmseal_mig_stream_new(const vmseal_secret *key, uint64_t nonce, int sender,
                          vmseal_mig_stream **out) VMSEAL_MUST_CHECK;
void vmseal_mig_stream_free(vmseal_mig_stream *s);

/* Sender: seal len (1..VMSEAL_MIG_MAX_PAYLOAD) clear bytes that sit at
 * frame + VMSEAL_MIG_HDR_LEN, in place; frame must have room for
 * HDR + len + TAG bytes. *frame_len: the bytes to send. */
int vmseal_mig_seal_data(vmseal_mig_stream *s, uint8_t *frame, size_t len, size_t *frame_len)
    VMSEAL_MUST_CHECK;
/* Sender: the end frame (room: HDR + 8 + TAG); no frame may follow. */
int vmseal_mig_seal_end(vmseal_mig_stream *s, uint8_t *frame, size_t *frame_len)
    VMSEAL_MUST_CHECK;

/* Receiver: check a header; *body_len: the bytes of the body that follow
 * (payload + tag). -EPROTO: bad magic, type, reserved bytes or length, or a
 * frame after the end. */
int vmseal_mig_parse_header(vmseal_mig_stream *s, const uint8_t hdr[VMSEAL_MIG_HDR_LEN],
                            size_t *body_len) VMSEAL_MUST_CHECK;
/* Receiver: open the body of the frame whose header was just parsed, in
 * place; *plain_len clear bytes are then at body[0..]; *end = 1 for a
 * verified end frame (whose count matched). -EBADMSG: tampered, replayed,
 * dropped, reordered or under another key; -EPROTO: the count of an end
 * frame does not match. */
int vmseal_mig_open(vmseal_mig_stream *s, const uint8_t hdr[VMSEAL_MIG_HDR_LEN], uint8_t *body,
                    size_t body_len, size_t *plain_len, int *end) VMSEAL_MUST_CHECK;

/* Whether the end frame was sealed / opened. */
int vmseal_mig_finished(const vmseal_mig_stream *s);
/* Clear bytes sealed or opened so far, and frames. */
uint64_t vmseal_mig_bytes(const vmseal_mig_stream *s);
uint64_t vmseal_mig_frames(const vmseal_mig_stream *s);

/* Pumps over descriptors (blocking; EINTR retried):
 * send: read in_fd (clear) until EOF, write frames to out_fd, then the end
 * frame. recv: read frames from in_fd, write the clear bytes to out_fd; 0
 * only after a verified end frame followed by EOF on in_fd. -EPROTO /
 * -EBADMSG as above, -EPIPE when in_fd ends early, -errno of read/write
 * (a socket timeout: -EAGAIN). */
int vmseal_mig_send_fd(vmseal_mig_stream *s, int in_fd, int out_fd) VMSEAL_MUST_CHECK;
int vmseal_mig_recv_fd(vmseal_mig_stream *s, int in_fd, int out_fd) VMSEAL_MUST_CHECK;

#endif
