/* vmseal-hostd — QMP (QEMU Machine Protocol) client over a UNIX socket.
 *
 * One JSON object per line in both directions. Every command carries an
 * "id" so its reply is matched exactly; asynchronous events that arrive
 * meanwhile are queued (bounded) for vmseal_qmp_wait_event(). All calls are
 * bounded by a timeout in milliseconds and return 0 or a negative errno with
 * vmseal_last_error() set:
 *   -ETIMEDOUT    no reply in time
 *   -ECONNRESET   QEMU closed the monitor (it exited)
 *   -EREMOTEIO    QEMU answered with an error (class and description in the
 *                 message)
 *   -EPROTO       QEMU sent something that is not QMP
 */
#ifndef VMSEAL_HOSTD_QMP_H
#define VMSEAL_HOSTD_QMP_H

#include <jansson.h>

#include <vmseal/common.h>
#include <vmseal/secret.h>

typedef struct vmseal_qmp vmseal_qmp;

/* Connect to the monitor socket at `path`, read the greeting and negotiate
 * capabilities. A missing or refusing socket fails at once with -ENOENT /
 * -ECONNREFUSED (QEMU may still be starting: the caller retries). */
int vmseal_qmp_connect(const char *path, int timeout_ms, vmseal_qmp **out) VMSEAL_MUST_CHECK;

/* The same on an already connected stream socket (taken over: closed on
 * failure and by vmseal_qmp_close). */
int vmseal_qmp_open_fd(int fd, int timeout_ms, vmseal_qmp **out) VMSEAL_MUST_CHECK;

/* Run `cmd` with `args` (a JSON object, reference stolen; NULL for none).
 * On success *ret (if not NULL) receives the "return" value (new ref). */
int vmseal_qmp_execute(vmseal_qmp *q, const char *cmd, json_t *args, int timeout_ms,
                       json_t **ret) VMSEAL_MUST_CHECK;

/* object-add of a `secret` object named `id` whose data is `data`, sent
 * base64-encoded over the socket. The command text is built in a secure
 * buffer and wiped after sending; the data never passes through jansson.
 * `id` may hold only [A-Za-z0-9_-]. */
int vmseal_qmp_add_secret(vmseal_qmp *q, const char *id, const vmseal_secret *data,
                          int timeout_ms) VMSEAL_MUST_CHECK;

/* Wait for an event named `name` (NULL: any event). Queued events are
 * looked at first (oldest first); the matching one is removed from the
 * queue and returned in *event (new ref, may be NULL to discard). */
int vmseal_qmp_wait_event(vmseal_qmp *q, const char *name, int timeout_ms,
                          json_t **event) VMSEAL_MUST_CHECK;

/* Read whatever is already available (without blocking) and queue the
 * events. Returns -ECONNRESET when QEMU closed the socket. */
int vmseal_qmp_poll(vmseal_qmp *q);

/* The socket descriptor (to poll for readability together with others). */
int vmseal_qmp_fd(const vmseal_qmp *q);

void vmseal_qmp_close(vmseal_qmp *q);

#endif
