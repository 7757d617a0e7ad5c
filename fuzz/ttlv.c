/* libFuzzer target: the KMIP TTLV decoder and the message parsers.
 * Decode; anything accepted must re-encode to the same bytes, dump without
 * trouble, and survive dup/equal; then the same bytes go through the
 * request and response parsers (what vmseal-kmsd and the client run on
 * bytes from the network), and a refused request still yields an error
 * response that encodes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmseal/kmip_msg.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vmseal_ttlv *t = NULL;
    if (vmseal_ttlv_decode(data, size, &t) == 0) {
        uint8_t *enc = NULL;
        size_t len = 0;
        if (vmseal_ttlv_encode(t, &enc, &len) != 0 || len != size || memcmp(enc, data, size) != 0)
            abort(); /* accepted input must be canonical */
        vmseal_ttlv_buf_free(enc, len);
        char *dump = vmseal_ttlv_dump_str(t);
        if (!dump)
            abort();
        free(dump);
        vmseal_ttlv *copy = NULL;
        if (vmseal_ttlv_dup(t, &copy) != 0 || !vmseal_ttlv_equal(t, copy))
            abort();
        vmseal_ttlv_free(copy);
        vmseal_ttlv_free(t);
    }

    size_t framed;
    if (size >= 8 && vmseal_ttlv_frame_len(data, 0, &framed) == 0 && framed > size + 0x7fffffffu)
        abort();

    vmseal_kmip_request *req = NULL;
    vmseal_kmip_version seen;
    if (vmseal_kmip_request_parse(data, size, NULL, &req, &seen) == 0) {
        if (req->count == 0 || !req->items)
            abort();
        vmseal_ttlv *resp = vmseal_kmip_response_new(&req->version, 1);
        for (size_t i = 0; i < req->count; i++) {
            if (!req->items[i].payload)
                abort();
            vmseal_kmip_response_add_success(resp, &req->items[i]);
        }
        uint8_t *enc;
        size_t len;
        if (vmseal_ttlv_encode(resp, &enc, &len) != 0)
            abort();
        vmseal_kmip_response *back;
        if (vmseal_kmip_response_parse(enc, len, NULL, &back) != 0 || back->count != req->count)
            abort();
        vmseal_kmip_response_free(back);
        vmseal_ttlv_buf_free(enc, len);
        vmseal_ttlv_free(resp);
        vmseal_kmip_request_free(req);
    } else {
        vmseal_ttlv *resp = vmseal_kmip_error_response(&seen, VMSEAL_KMIP_REASON_INVALID_MESSAGE,
                                                       vmseal_last_error());
        uint8_t *enc;
        size_t len;
        if (vmseal_ttlv_encode(resp, &enc, &len) != 0)
            abort();
        vmseal_ttlv_buf_free(enc, len);
        vmseal_ttlv_free(resp);
    }

    vmseal_kmip_response *resp = NULL;
    if (vmseal_kmip_response_parse(data, size, NULL, &resp) == 0) {
        for (size_t i = 0; i < resp->count; i++)
            (void)vmseal_kmip_result_errno(&resp->items[i]);
        vmseal_kmip_response_free(resp);
    }
    return 0;
}
