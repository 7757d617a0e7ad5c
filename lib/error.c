/* Thread-local last-error message and small shared helpers. */
#include <errno.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include <vmseal/common.h>

static _Thread_local char last_error[512];

const char *vmseal_last_error(void)
{
    return last_error;
}

void vmseal_clear_error(void)
{
    last_error[0] = '\0';
}

int vmseal_fail(int err_no, const char *fmt, ...)
{
    /* Format into a scratch buffer first: callers may pass
     * vmseal_last_error() itself as an argument to add context. */
    char msg[sizeof(last_error)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    memcpy(last_error, msg, sizeof(last_error));
    return err_no > 0 ? -err_no : err_no;
}

int vmseal_memcmp_ct(const void *a, const void *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len) != 0;
}

void vmseal_hex_encode(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0xf];
    }
    out[2 * len] = '\0';
}

/* Branch-free nibble decode: returns 0..15, or a value with bit 8 set. */
static unsigned hex_nibble(unsigned char c)
{
    unsigned num = (unsigned)c - '0';
    unsigned lower = ((unsigned)c | 0x20) - 'a';
    unsigned is_num = (num < 10) ? 1u : 0u;
    unsigned is_alpha = (lower < 6) ? 1u : 0u;
    return (is_num * num) | (is_alpha * (lower + 10)) | ((1u - (is_num | is_alpha)) << 8);
}

int vmseal_hex_decode(const char *in, size_t inlen, uint8_t *out, size_t outlen)
{
    if (inlen != 2 * outlen)
        return vmseal_fail(EPROTO, "hex: expected %zu characters, got %zu", 2 * outlen, inlen);
    unsigned bad = 0;
    for (size_t i = 0; i < outlen; i++) {
        unsigned hi = hex_nibble((unsigned char)in[2 * i]);
        unsigned lo = hex_nibble((unsigned char)in[2 * i + 1]);
        bad |= (hi | lo) & 0x100;
        out[i] = (uint8_t)((hi << 4) | (lo & 0xf));
    }
    if (bad) {
        OPENSSL_cleanse(out, outlen);
        return vmseal_fail(EPROTO, "hex: invalid character");
    }
    return 0;
}

int vmseal_write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        if (w == 0)
            return -EIO;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}
