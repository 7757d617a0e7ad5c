/* libFuzzer target: the QMP client (hostd/qmp.c) reading whatever a
 * (possibly compromised) QEMU sends on the monitor socket: greeting,
 * replies matched by id, events, garbage, overlong lines, early EOF. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "qmp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    int bufsize = 1 << 20;
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof(bufsize));
    setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof(bufsize));
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(sv[1], data + off, size - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    shutdown(sv[1], SHUT_WR);   /* the client sees EOF after the input */
    hostd_qmp *q = NULL;
    if (hostd_qmp_open_fd(sv[0], 50, &q) == 0) {
        json_t *ret = NULL;
        if (hostd_qmp_execute(q, "query-status", NULL, 50, &ret) == 0)
            json_decref(ret);
        json_t *ev = NULL;
        (void)hostd_qmp_wait_event(q, "SHUTDOWN", 0, &ev);
        json_decref(ev);
        (void)hostd_qmp_wait_event(q, NULL, 0, &ev);
        json_decref(ev);
        (void)hostd_qmp_poll(q);
        hostd_qmp_close(q);
    }
    close(sv[1]);
    return 0;
}
