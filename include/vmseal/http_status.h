/* vmseal — the one errno -> HTTP status table of the daemons' APIs.
 *
 * Library and daemon functions fail with a negative errno and a message
 * (vmseal_last_error()); the API layers of vmseal-managerd and vmseal-hostd
 * turn that errno into the HTTP status of the error answer with this table,
 * so an errno means the same status whichever daemon answers. docs/api.md
 * ("Errors") lists the table; tests/lib/test_http_status.c checks the code
 * against it.
 *
 * The status says what the error means to the client, not where the errno
 * came from: a daemon that fails because a peer it called (a host agent, a
 * key server, QEMU) failed or refused says so with EREMOTEIO (502), whatever
 * errno the peer's failure had.
 */
#ifndef VMSEAL_HTTP_STATUS_H
#define VMSEAL_HTTP_STATUS_H

#include <stddef.h>

typedef struct vmseal_http_errno_status {
    int err;             /* positive errno */
    int status;          /* HTTP status */
    const char *name;    /* "EINVAL" */
} vmseal_http_errno_status;

/* The HTTP status for err (a negative or a positive errno): the table's, or
 * 500 for an errno the table does not list (and for 0). */
int vmseal_http_status_for(int err);

/* The table itself, *n entries (for documentation and tests). */
const vmseal_http_errno_status *vmseal_http_status_table(size_t *n);

#endif
