/* libFuzzer target: the WebSocket frame parser (lib/net/websocket.c) as the
 * manager and the host agent run it on a client's bytes (masked frames,
 * 64 KiB bound) and as the CLI and the manager run it on a server's
 * (unmasked), plus the handshake key check. The first input byte picks the
 * side and a small payload bound. Beyond "no crash": a frame uses no more
 * than the input, its payload lies inside it and within the bound, control
 * frames are final and short, and its re-encoded header parses back to the
 * same frame. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <vmseal/websocket.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int masked = data[0] & 1;
    size_t max = (data[0] & 2) ? 300 : VMSEAL_WS_MAX_PAYLOAD;
    if (data[0] & 4) {   /* the key check on a string */
        char key[64];
        size_t n = size - 1 < sizeof(key) - 1 ? size - 1 : sizeof(key) - 1;
        memcpy(key, data + 1, n);
        key[n] = '\0';
        char out[29];
        if (vmseal_ws_accept_key(key, out) == 0 && strlen(out) != 28)
            abort();
        (void)vmseal_ws_check_request("GET", "websocket", "Upgrade", "13", key);
        return 0;
    }
    uint8_t *buf = malloc(size);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, size - 1);
    size_t len = size - 1, off = 0;
    while (off < len) {
        vmseal_ws_frame f;
        uint16_t code;
        long n = vmseal_ws_parse(buf + off, len - off, masked, max, &f, &code);
        if (n < 0) {
            if (code != VMSEAL_WS_PROTOCOL_ERROR && code != VMSEAL_WS_TOO_BIG)
                abort();
            break;
        }
        if (n == 0)
            break;
        if ((size_t)n > len - off || f.len > max || f.payload < buf + off ||
            f.payload + f.len != buf + off + n)
            abort();
        if (f.opcode >= 8 && (!f.fin || f.len > VMSEAL_WS_CONTROL_MAX))
            abort();
        /* the header written back parses to the same frame */
        uint8_t hdr[14 + 1];
        static const uint8_t m0[4] = {0, 0, 0, 0};
        size_t h = vmseal_ws_header(hdr, f.opcode, f.fin, f.len, masked ? m0 : NULL);
        uint8_t *re = malloc(h + f.len + 1);
        if (!re)
            break;
        memcpy(re, hdr, h);
        memcpy(re + h, f.payload, f.len);
        vmseal_ws_frame g;
        uint16_t c2;
        long n2 = vmseal_ws_parse(re, h + f.len, masked, max, &g, &c2);
        if (n2 != (long)(h + f.len) || g.opcode != f.opcode || g.fin != f.fin || g.len != f.len ||
            memcmp(g.payload, f.payload, f.len) != 0)
            abort();
        free(re);
        off += (size_t)n;
    }
    free(buf);
    return 0;
}
