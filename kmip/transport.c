/* KMIP message framing over a TLS connection (lib/tls.c does the I/O). */
#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>

#include <vmseal/kmip_msg.h>
#include <vmseal/tls.h>

int vmseal_kmip_recv(SSL *ssl, size_t max_size, int timeout_ms, vmseal_secret **msg)
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

int vmseal_kmip_send(SSL *ssl, const vmseal_ttlv *msg, int timeout_ms)
{
    vmseal_secret *enc;
    int rc = vmseal_ttlv_encode_secret(msg, &enc);
    if (rc < 0)
        return rc;
    rc = vmseal_tls_write_full(ssl, vmseal_secret_cdata(enc), vmseal_secret_len(enc), timeout_ms);
    size_t len = vmseal_secret_len(enc);
    vmseal_secret_free(enc);
    if (rc < 0)
        return rc;
    if ((size_t)rc != len)
        return vmseal_fail(EIO, "KMIP: short write");
    return 0;
}
