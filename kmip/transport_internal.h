/* Private: TLS I/O that cannot kill the process with SIGPIPE. */
#ifndef VMSEAL_KMIP_TRANSPORT_INTERNAL_H
#define VMSEAL_KMIP_TRANSPORT_INTERNAL_H

#include <signal.h>

#include <openssl/ssl.h>

/* Block SIGPIPE for this thread around TLS I/O (any SSL call may write:
 * data, alerts, close_notify), then swallow a SIGPIPE we raised ourselves
 * and restore the mask. A peer that went away then gives -EPIPE instead of
 * terminating the caller; as a library we do not touch the process-wide
 * signal disposition. */
typedef struct {
    sigset_t old;
    int was_pending;
} kmip_sigpipe_guard;
void kmip_sigpipe_block(kmip_sigpipe_guard *g);
void kmip_sigpipe_restore(const kmip_sigpipe_guard *g);

/* vmseal_tls_close() under the guard. */
void kmip_close_nosigpipe(SSL *ssl);

#endif
