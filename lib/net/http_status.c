/* The one errno -> HTTP status table (include/vmseal/http_status.h), used
 * by vmseal-managerd and vmseal-hostd; documented in docs/api.md, "Errors".
 * Anything not listed is 500. */
#include <errno.h>

#include <vmseal/http_status.h>

#define E(e, s) {e, s, #e}

static const vmseal_http_errno_status table[] = {
    /* 400: the request is malformed, or a value in it is out of bounds */
    E(EINVAL, 400),
    E(EPROTO, 400),
    E(E2BIG, 400),
    E(ERANGE, 400),
    /* 403: not allowed */
    E(EACCES, 403),
    E(EPERM, 403),
    /* 404: no such object */
    E(ENOENT, 404),
    /* 409: the object's state forbids it: exists already, busy, in the
     * wrong state, locked (its KEK is not here), a symlink where a file
     * goes, or a record that no longer matches the object */
    E(EEXIST, 409),
    E(EBUSY, 409),
    E(EALREADY, 409),
    E(ENOTEMPTY, 409),
    E(ENOKEY, 409),
    E(ELOOP, 409),
    E(ESTALE, 409),
    /* 422: well-formed, but a key or sealed data does not open or check */
    E(EKEYREJECTED, 422),
    E(EBADMSG, 422),
    /* 429: too many attempts; try again later */
    E(EAGAIN, 429),
    /* 501: not implemented */
    E(ENOTSUP, 501),
    E(ENOSYS, 501),
    /* 502: a peer the daemon called (host agent, key server, QEMU) failed
     * or refused */
    E(EREMOTEIO, 502),
    /* 503: too busy right now (too many requests at once) */
    E(ENOBUFS, 503),
};

int vmseal_http_status_for(int err)
{
    if (err < 0)
        err = -err;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (table[i].err == err)
            return table[i].status;
    return 500;
}

const vmseal_http_errno_status *vmseal_http_status_table(size_t *n)
{
    *n = sizeof(table) / sizeof(table[0]);
    return table;
}
