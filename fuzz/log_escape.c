/* libFuzzer target: the log's escaping of message text (lib/log.c
 * vmseal_log_escape), which sees whatever a peer put in a path, a name or a
 * reason. Beyond "no crash": the output fits the buffer, holds no control
 * character (no line can be forged), is valid UTF-8 without the characters
 * viewers treat as line ends or use to reorder text, and unescapes to
 * exactly the input bytes consumed; only a full buffer stops it early. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <vmseal/log.h>

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Undo the escaping; -1 on an escape the logger never writes. */
static long unescape(const char *s, size_t n, unsigned char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            out[o++] = (unsigned char)s[i];
            continue;
        }
        if (++i >= n)
            return -1;
        switch (s[i]) {
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case '\\': out[o++] = '\\'; break;
        case 'x':
            if (i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
                return -1;
            out[o++] = (unsigned char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
            i += 2;
            break;
        default:
            return -1;
        }
    }
    return (long)o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t cap = (size_t)data[0] * 8 + 1;   /* 1 .. 2041 bytes of room */
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    char *out = malloc(cap);
    unsigned char *back = malloc(cap);
    if (!out || !back)
        abort();
    size_t used = vmseal_log_escape(in, len, out, cap);
    size_t n = strlen(out);
    if (used > len || n >= cap)
        abort();
    if (used < len && n + 16 < cap)   /* stopped early with room to spare */
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
            abort();
    /* valid UTF-8 (jansson checks), and nothing suspect left in it */
    json_t *j = json_stringn(out, n);
    if (!j)
        abort();
    json_decref(j);
    if (strstr(out, "\xc2\x85") || strstr(out, "\xe2\x80\xa8") || strstr(out, "\xe2\x80\xa9") ||
        strstr(out, "\xe2\x80\xae") || strstr(out, "\xe2\x81\xa6"))
        abort();
    long m = unescape(out, n, back);
    if (m < 0 || (size_t)m != used || memcmp(back, in, used) != 0)
        abort();
    free(out);
    free(back);
    return 0;
}
