/* vmseal-hostd — interactive consoles, the monitor's side: the serial port
 * and the VNC display of running VMs, carried to the network child as
 * PS_CONSOLE_* messages (privsep.h) and from there over the manager's
 * websocket (docs/architecture.md, "Interactive consoles").
 *
 * Serial: the console's log thread stays the only reader of serial.sock;
 * what it read (after the sealed log got it) is copied to each attached
 * console (hostd_vm_console_tap), keystrokes are written to the socket.
 * VNC: a connection to QEMU's VNC server on <home>/vnc.sock per console.
 *
 * Bounds: CMUX_MAX consoles on the host, HOSTD_VM_TAPS_MAX serial and
 * CMUX_VNC_PER_VM VNC consoles per VM; at most CMUX_QUEUE_MAX bytes wait
 * in either direction of a console: a console whose reader does not keep
 * up is closed ("too slow"), nothing is buffered beyond that. Console
 * bytes are guest data: never logged, wiped when freed.
 */
#ifndef VMSEAL_HOSTD_CONSOLE_MUX_H
#define VMSEAL_HOSTD_CONSOLE_MUX_H

#include <stddef.h>
#include <stdint.h>

#include "host.h"
#include "privsep.h"

#define CMUX_MAX 32
#define CMUX_VNC_PER_VM 4
#define CMUX_QUEUE_MAX (256u * 1024)
#define CMUX_INPUT_TIMEOUT_MS 2000   /* QEMU must take input within this */

typedef struct hostd_cmux hostd_cmux;

/* manager_fp: the manager's certificate fingerprint ("" or NULL: any). */
int hostd_cmux_new(hostd_host *h, ps_chan *chan, const char *manager_fp, hostd_cmux **out)
    VMSEAL_MUST_CHECK;
/* Close every console (the child is told), join, free. */
void hostd_cmux_free(hostd_cmux *x);

/* A PS_CONSOLE_OPEN, _DATA or _CLOSE from the network child. < 0 only on a
 * malformed message (the caller drops the link). */
int hostd_cmux_handle(hostd_cmux *x, uint32_t type, const uint8_t *data, size_t len)
    VMSEAL_MUST_CHECK;

/* Consoles open now (tests). */
unsigned hostd_cmux_count(hostd_cmux *x);

#endif
