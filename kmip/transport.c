/* KMIP message framing over a TLS connection (lib/net/tls.c does the I/O). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include <vmseal/kmip_msg.h>
#include <vmseal/tls.h>

#include "transport_internal.h"

void kmip_sigpipe_block(kmip_sigpipe_guard *g)
{
    sigset_t pipe_set, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &g->old);
    sigpending(&pending);
    g->was_pending = sigismember(&pending, SIGPIPE);
}

void kmip_sigpipe_restore(const kmip_sigpipe_guard *g)
{
    if (!g->was_pending) {
        /* Swallow the SIGPIPE our own write raised, if any. */
        sigset_t pipe_set, pending;
        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        sigpending(&pending);
        if (sigismember(&pending, SIGPIPE)) {
            struct timespec zero = {0, 0};
            (void)sigtimedwait(&pipe_set, NULL, &zero);
        }
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

void kmip_close_nosigpipe(SSL *ssl)
{
    kmip_sigpipe_guard g;
    kmip_sigpipe_block(&g);
    vmseal_tls_close(ssl); /* sends close_notify: a write */
    kmip_sigpipe_restore(&g);
}

static int recv_message(SSL *ssl, size_t max_size, int timeout_ms, vmseal_secret **msg)
{
    *msg = NULL;
    uint8_t hdr[8];
    int rc = vmseal_tls_read_full(ssl, hdr, sizeof(hdr), timeout_ms);
    if (rc == 0)
        return 0; /* clean close between messages */
    if (rc < 0)
        return rc;
    size_t total;
    if ((rc = vmseal_ttlv_frame_len(hdr, max_size, &total)) < 0)
        return rc;
    vmseal_secret *s = vmseal_secret_new(total);
    if (!s)
        return vmseal_fail(ENOMEM, "KMIP: cannot allocate %zu bytes for a message", total);
    memcpy(vmseal_secret_data(s), hdr, sizeof(hdr));
    if (total > sizeof(hdr)) {
        rc = vmseal_tls_read_full(ssl, vmseal_secret_data(s) + sizeof(hdr), total - sizeof(hdr), timeout_ms);
        if (rc >= 0 && (size_t)rc != total - sizeof(hdr))
            rc = vmseal_fail(ECONNRESET, "KMIP: connection closed inside a message");
        if (rc < 0) {
            vmseal_secret_free(s);
            return rc;
        }
    }
    *msg = s;
    return 0;
}

int vmseal_kmip_recv(SSL *ssl, size_t max_size, int timeout_ms, vmseal_secret **msg)
{
    /* Even reading can write: OpenSSL sends an alert when the peer vanishes. */
    kmip_sigpipe_guard g;
    kmip_sigpipe_block(&g);
    int rc = recv_message(ssl, max_size, timeout_ms, msg);
    kmip_sigpipe_restore(&g);
    return rc;
}

int vmseal_kmip_send(SSL *ssl, const vmseal_ttlv *msg, int timeout_ms)
{
    vmseal_secret *enc;
    int rc = vmseal_ttlv_encode_secret(msg, &enc);
    if (rc < 0)
        return rc;
    kmip_sigpipe_guard g;
    kmip_sigpipe_block(&g);
    rc = vmseal_tls_write_full(ssl, vmseal_secret_cdata(enc), vmseal_secret_len(enc), timeout_ms);
    kmip_sigpipe_restore(&g);
    size_t len = vmseal_secret_len(enc);
    vmseal_secret_free(enc);
    if (rc < 0)
        return rc;
    if ((size_t)rc != len)
        return vmseal_fail(EIO, "KMIP: short write");
    return 0;
}
