/* vmseal-hostd — QMP (QEMU Machine Protocol) client over a UNIX socket.
 *
 * One JSON object per line in both directions. Every command carries an
 * "id" so its reply is matched exactly; asynchronous events that arrive
 * meanwhile are queued (bounded) for hostd_qmp_wait_event(). All calls are
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

typedef struct hostd_qmp hostd_qmp;

/* Connect to the monitor socket at `path`, read the greeting and negotiate
 * capabilities. A missing or refusing socket fails at once with -ENOENT /
 * -ECONNREFUSED (QEMU may still be starting: the caller retries). */
int hostd_qmp_connect(const char *path, int timeout_ms, hostd_qmp **out) VMSEAL_MUST_CHECK;

/* The same on an already connected stream socket (taken over: closed on
 * failure and by hostd_qmp_close). */
int hostd_qmp_open_fd(int fd, int timeout_ms, hostd_qmp **out) VMSEAL_MUST_CHECK;

/* Run `cmd` with `args` (a JSON object, reference stolen; NULL for none).
 * On success *ret (if not NULL) receives the "return" value (new ref). */
int hostd_qmp_execute(hostd_qmp *q, const char *cmd, json_t *args, int timeout_ms,
                       json_t **ret) VMSEAL_MUST_CHECK;

/* object-add of a `secret` object named `id` whose data is `data`, sent
 * base64-encoded over the socket. The command text is built in a secure
 * buffer and wiped after sending; the data never passes through jansson.
 * `id` may hold only [A-Za-z0-9_-]. */
int hostd_qmp_add_secret(hostd_qmp *q, const char *id, const vmseal_secret *data,
                          int timeout_ms) VMSEAL_MUST_CHECK;

/* getfd: hand QEMU the descriptor fd (SCM_RIGHTS on the command) under
 * `name` ([A-Za-z0-9_-]{1,64}), e.g. for migrate / migrate-incoming
 * "fd:NAME". fd stays open here (the caller closes its copy). */
int hostd_qmp_getfd(hostd_qmp *q, const char *name, int fd, int timeout_ms) VMSEAL_MUST_CHECK;

/* add-fd: hand QEMU the descriptor fd (SCM_RIGHTS on the command) into the
 * fdset `fdset`, or a new one when fdset < 0; block drivers open it as
 * /dev/fdset/N. *ret (if not NULL) gets QEMU's answer ({"fdset-id", "fd"}).
 * fd stays open here. */
int hostd_qmp_add_fd(hostd_qmp *q, int fdset, int fd, int timeout_ms, json_t **ret) VMSEAL_MUST_CHECK;

/* Wait for an event named `name` (NULL: any event). Queued events are
 * looked at first (oldest first); the matching one is removed from the
 * queue and returned in *event (new ref, may be NULL to discard). */
int hostd_qmp_wait_event(hostd_qmp *q, const char *name, int timeout_ms,
                          json_t **event) VMSEAL_MUST_CHECK;

/* Read whatever is already available (without blocking) and queue the
 * events. Returns -ECONNRESET when QEMU closed the socket. */
int hostd_qmp_poll(hostd_qmp *q);

/* The socket descriptor (to poll for readability together with others). */
int hostd_qmp_fd(const hostd_qmp *q);

void hostd_qmp_close(hostd_qmp *q);

#endif
