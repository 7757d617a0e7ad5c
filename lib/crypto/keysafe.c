/* Key safe: AES-256-GCM wrap of a secret, bound to its owner (keysafe.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <vmseal/diskdesc.h>
#include <vmseal/keysafe.h>

#include "gcm.h"

#define AAD_LABEL "vmseal:keysafe:v1"
#define BLOB_MIN (GCM_NONCE_LEN + 1 + GCM_TAG_LEN)
#define BLOB_MAX (GCM_NONCE_LEN + VMSEAL_KEYSAFE_PAYLOAD_MAX + GCM_TAG_LEN)
#define AAD_MAX (sizeof(AAD_LABEL) + 3 + VMSEAL_KEYSAFE_PROVIDER_MAX + \
                 VMSEAL_KEYSAFE_KEK_ID_MAX + VMSEAL_KEYSAFE_OBJECT_ID_MAX)

static int is_alnum(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static int provider_char(unsigned char c)
{
    return is_alnum(c) || c == '.' || c == '_' || c == '-';
}

/* Bytes of a KEK id written as themselves in the line; all others are %XX. */
static int kek_id_plain_char(unsigned char c)
{
    if (c == 0)
        return 0;
    return is_alnum(c) || strchr("-._~+/=@", c) != NULL;
}

int vmseal_keysafe_provider_valid(const char *p)
{
    size_t n = p ? strlen(p) : 0;
    if (n == 0 || n > VMSEAL_KEYSAFE_PROVIDER_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!provider_char((unsigned char)p[i]))
            return 0;
    return 1;
}

int vmseal_keysafe_kek_id_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    return n >= 1 && n <= VMSEAL_KEYSAFE_KEK_ID_MAX;
}

int vmseal_keysafe_object_id(const char *kind, const char *uuid, char *out, size_t outlen)
{
    if (!kind || (strcmp(kind, "vm") != 0 && strcmp(kind, "disk") != 0))
        return vmseal_fail(EINVAL, "key safe object: unknown kind %s", kind ? kind : "(none)");
    if (!uuid || !vmseal_uuid_valid(uuid))
        return vmseal_fail(EINVAL, "key safe object: %s needs a UUID, not \"%.40s\"", kind, uuid ? uuid : "");
    int n = snprintf(out, outlen, "%s:%s", kind, uuid);
    if (n < 0 || (size_t)n >= outlen)
        return vmseal_fail(ENOSPC, "key safe object: buffer too small");
    return 0;
}

int vmseal_keysafe_object_id_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    return n >= 1 && n <= VMSEAL_KEYSAFE_OBJECT_ID_MAX;
}

/* AAD = label NUL | len provider | len kek_id | len object_id (1-byte lengths). */
static size_t build_aad(uint8_t *aad, const char *provider, const char *kek_id,
                        const char *object_id)
{
    size_t n = 0;
    memcpy(aad, AAD_LABEL, sizeof(AAD_LABEL)); /* includes the NUL */
    n += sizeof(AAD_LABEL);
    const char *fields[3] = {provider, kek_id, object_id};
    for (int i = 0; i < 3; i++) {
        size_t l = strlen(fields[i]);
        aad[n++] = (uint8_t)l;
        memcpy(aad + n, fields[i], l);
        n += l;
    }
    return n;
}

static void escape_kek_id(const char *id, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        if (kek_id_plain_char(*p)) {
            *out++ = (char)*p;
        } else {
            *out++ = '%';
            *out++ = hex[*p >> 4];
            *out++ = hex[*p & 15];
        }
    }
    *out = '\0';
}

static int upper_hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode the escaped KEK id field [s, s+len) into out (canonical only). */
static int unescape_kek_id(const char *s, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= len)
                return vmseal_fail(EPROTO, "key safe: KEK id has a cut-off %%XX escape");
            int hi = upper_hex_val(s[i + 1]), lo = upper_hex_val(s[i + 2]);
            if (hi < 0 || lo < 0)
                return vmseal_fail(EPROTO, "key safe: KEK id escape is not %%XX with "
                                           "upper-case hex digits");
            unsigned char v = (unsigned char)(hi << 4 | lo);
            if (v == 0)
                return vmseal_fail(EPROTO, "key safe: KEK id contains an escaped NUL");
            if (kek_id_plain_char(v))
                return vmseal_fail(EPROTO, "key safe: KEK id escapes '%c', which must be "
                                           "written as itself", v);
            c = v;
            i += 2;
        } else if (!kek_id_plain_char(c)) {
            return vmseal_fail(EPROTO, "key safe: KEK id contains byte 0x%02x, which must "
                                       "be escaped as %%XX", c);
        }
        if (o >= VMSEAL_KEYSAFE_KEK_ID_MAX)
            return vmseal_fail(EPROTO, "key safe: KEK id longer than %d bytes",
                               VMSEAL_KEYSAFE_KEK_ID_MAX);
        out[o++] = (char)c;
    }
    if (o == 0)
        return vmseal_fail(EPROTO, "key safe: empty KEK id");
    out[o] = '\0';
    return 0;
}

static int b64_char(unsigned char c)
{
    return is_alnum(c) || c == '+' || c == '/';
}

/* Strict, canonical standard base64 with padding. */
static int b64_decode(const char *s, size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
    if (len == 0 || len % 4 != 0)
        return vmseal_fail(EPROTO, "key safe: base64 length %zu is not a multiple of 4", len);
    size_t pad = 0;
    if (s[len - 1] == '=')
        pad = s[len - 2] == '=' ? 2 : 1;
    for (size_t i = 0; i < len - pad; i++)
        if (!b64_char((unsigned char)s[i]))
            return vmseal_fail(EPROTO, "key safe: invalid base64 character at offset %zu", i);
    size_t n = len / 4 * 3 - pad;
    if (n > cap)
        return vmseal_fail(EPROTO, "key safe: wrapped data longer than %zu bytes", cap);
    uint8_t buf[(BLOB_MAX + 2) / 3 * 3 + 3];
    char re[sizeof(buf) / 3 * 4 + 1];
    if (len / 4 * 3 > sizeof(buf))
        return vmseal_fail(EPROTO, "key safe: wrapped data too long");
    if (EVP_DecodeBlock(buf, (const unsigned char *)s, (int)len) != (int)(len / 4 * 3))
        return vmseal_fail(EPROTO, "key safe: invalid base64");
    /* Canonical: re-encoding gives the same text (no stray low bits). */
    EVP_EncodeBlock((unsigned char *)re, buf, (int)n);
    if (memcmp(re, s, len) != 0)
        return vmseal_fail(EPROTO, "key safe: non-canonical base64");
    memcpy(out, buf, n);
    *out_len = n;
    return 0;
}

typedef struct parsed {
    vmseal_keysafe_info info;
    uint8_t blob[BLOB_MAX];
    size_t blob_len;
} parsed;

static int parse_line(const char *line, parsed *p)
{
    memset(p, 0, sizeof(*p));
    size_t len = strnlen(line, VMSEAL_KEYSAFE_LINE_MAX + 3);
    if (len > 0 && line[len - 1] == '\n') {
        len--;
        if (len > 0 && line[len - 1] == '\r')
            len--;
    }
    if (len > VMSEAL_KEYSAFE_LINE_MAX)
        return vmseal_fail(EPROTO, "key safe: line longer than %d characters",
                           VMSEAL_KEYSAFE_LINE_MAX);
    size_t plen = strlen(VMSEAL_KEYSAFE_PREFIX);
    if (len < plen || memcmp(line, VMSEAL_KEYSAFE_PREFIX, plen) != 0)
        return vmseal_fail(EPROTO, "not a vmseal key safe (does not start with '%s')",
                           VMSEAL_KEYSAFE_PREFIX);
    /* Fields after the prefix: version, provider, kek-id, blob. */
    const char *f[4];
    size_t fl[4];
    size_t nf = 0, start = plen;
    for (size_t i = plen; i <= len; i++) {
        if (i == len || line[i] == ':') {
            if (nf == 4)
                return vmseal_fail(EPROTO, "key safe: too many ':'-separated fields");
            f[nf] = line + start;
            fl[nf] = i - start;
            nf++;
            start = i + 1;
        }
    }
    /* Version first, so a future format with other fields says "v2". */
    if (fl[0] < 2 || f[0][0] != 'v')
        return vmseal_fail(EPROTO, "key safe: bad version field (expected 'v1')");
    unsigned ver = 0;
    for (size_t i = 1; i < fl[0]; i++) {
        if (f[0][i] < '0' || f[0][i] > '9' || ver > 100000 || (i == 1 && f[0][i] == '0'))
            return vmseal_fail(EPROTO, "key safe: bad version field (expected 'v1')");
        ver = ver * 10 + (unsigned)(f[0][i] - '0');
    }
    if (ver != VMSEAL_KEYSAFE_VERSION)
        return vmseal_fail(ENOTSUP, "key safe: version v%u is not supported (this vmseal "
                                    "reads v%d)", ver, VMSEAL_KEYSAFE_VERSION);
    if (nf != 4)
        return vmseal_fail(EPROTO, "key safe: expected 4 fields after '%s' "
                                   "(version:provider:kek-id:data), found %zu",
                           VMSEAL_KEYSAFE_PREFIX, nf);
    p->info.version = ver;
    if (fl[1] == 0 || fl[1] > VMSEAL_KEYSAFE_PROVIDER_MAX)
        return vmseal_fail(EPROTO, "key safe: provider name must be 1..%d characters",
                           VMSEAL_KEYSAFE_PROVIDER_MAX);
    for (size_t i = 0; i < fl[1]; i++)
        if (!provider_char((unsigned char)f[1][i]))
            return vmseal_fail(EPROTO, "key safe: provider name may only hold "
                                       "A-Z a-z 0-9 . _ -");
    memcpy(p->info.provider, f[1], fl[1]);
    int rc = unescape_kek_id(f[2], fl[2], p->info.kek_id);
    if (rc < 0)
        return rc;
    rc = b64_decode(f[3], fl[3], p->blob, sizeof(p->blob), &p->blob_len);
    if (rc < 0)
        return rc;
    if (p->blob_len < BLOB_MIN)
        return vmseal_fail(EPROTO, "key safe: wrapped data too short (%zu bytes)", p->blob_len);
    p->info.payload_len = p->blob_len - GCM_NONCE_LEN - GCM_TAG_LEN;
    return 0;
}

int vmseal_keysafe_parse(const char *line, vmseal_keysafe_info *info)
{
    parsed *p = malloc(sizeof(*p));
    if (!p)
        return vmseal_fail(ENOMEM, "key safe: out of memory");
    int rc = parse_line(line, p);
    if (rc == 0 && info)
        *info = p->info;
    free(p);
    return rc;
}

int vmseal_keysafe_wrap(const vmseal_secret *kek, const char *provider, const char *kek_id,
                        const char *object_id, const vmseal_secret *payload, char **line)
{
    *line = NULL;
    if (vmseal_secret_len(kek) != VMSEAL_KEYSAFE_KEK_LEN)
        return vmseal_fail(EINVAL, "key safe: the KEK must be %d bytes", VMSEAL_KEYSAFE_KEK_LEN);
    if (!vmseal_keysafe_provider_valid(provider))
        return vmseal_fail(EINVAL, "key safe: provider name must be 1..%d characters of "
                                   "A-Z a-z 0-9 . _ -", VMSEAL_KEYSAFE_PROVIDER_MAX);
    if (!vmseal_keysafe_kek_id_valid(kek_id))
        return vmseal_fail(EINVAL, "key safe: KEK id must be 1..%d bytes",
                           VMSEAL_KEYSAFE_KEK_ID_MAX);
    if (!vmseal_keysafe_object_id_valid(object_id))
        return vmseal_fail(EINVAL, "key safe: object id must be 1..%d bytes",
                           VMSEAL_KEYSAFE_OBJECT_ID_MAX);
    size_t n = vmseal_secret_len(payload);
    if (n > VMSEAL_KEYSAFE_PAYLOAD_MAX)
        return vmseal_fail(EINVAL, "key safe: secret longer than %d bytes",
                           VMSEAL_KEYSAFE_PAYLOAD_MAX);

    uint8_t aad[AAD_MAX], blob[BLOB_MAX];
    size_t aad_len = build_aad(aad, provider, kek_id, object_id);
    if (RAND_bytes(blob, GCM_NONCE_LEN) != 1)
        return vmseal_fail(EIO, "key safe: random generator failed");
    gcm_ctx g;
    int rc = gcm_init(&g, vmseal_secret_cdata(kek), 1);
    if (rc < 0)
        return rc;
    rc = gcm_encrypt(&g, blob, aad, aad_len, vmseal_secret_cdata(payload), n,
                     blob + GCM_NONCE_LEN, blob + GCM_NONCE_LEN + n);
    gcm_done(&g);
    if (rc < 0)
        return rc;
    size_t blob_len = GCM_NONCE_LEN + n + GCM_TAG_LEN;

    char esc[VMSEAL_KEYSAFE_KEK_ID_MAX * 3 + 1];
    escape_kek_id(kek_id, esc);
    size_t cap = strlen(VMSEAL_KEYSAFE_PREFIX) + 4 + strlen(provider) + 1 + strlen(esc) + 1 +
                 (blob_len + 2) / 3 * 4 + 1;
    char *out = malloc(cap);
    if (!out)
        return vmseal_fail(ENOMEM, "key safe: out of memory");
    int off = snprintf(out, cap, "%sv%d:%s:%s:", VMSEAL_KEYSAFE_PREFIX, VMSEAL_KEYSAFE_VERSION,
                       provider, esc);
    EVP_EncodeBlock((unsigned char *)out + off, blob, (int)blob_len);
    *line = out;
    return 0;
}

int vmseal_keysafe_unwrap(const vmseal_secret *kek, const char *line, const char *object_id,
                          vmseal_secret **payload)
{
    *payload = NULL;
    if (vmseal_secret_len(kek) != VMSEAL_KEYSAFE_KEK_LEN)
        return vmseal_fail(EINVAL, "key safe: the KEK must be %d bytes", VMSEAL_KEYSAFE_KEK_LEN);
    if (!vmseal_keysafe_object_id_valid(object_id))
        return vmseal_fail(EINVAL, "key safe: object id must be 1..%d bytes",
                           VMSEAL_KEYSAFE_OBJECT_ID_MAX);
    parsed *p = malloc(sizeof(*p));
    if (!p)
        return vmseal_fail(ENOMEM, "key safe: out of memory");
    int rc = parse_line(line, p);
    if (rc < 0)
        goto out;
    uint8_t aad[AAD_MAX];
    size_t aad_len = build_aad(aad, p->info.provider, p->info.kek_id, object_id);
    size_t n = p->info.payload_len;
    vmseal_secret *s = vmseal_secret_new(n);
    if (!s) {
        rc = vmseal_fail(ENOMEM, "key safe: out of memory");
        goto out;
    }
    gcm_ctx g;
    rc = gcm_init(&g, vmseal_secret_cdata(kek), 0);
    if (rc == 0) {
        rc = gcm_decrypt(&g, p->blob, aad, aad_len, p->blob + GCM_NONCE_LEN, n,
                         vmseal_secret_data(s), p->blob + GCM_NONCE_LEN + n);
        gcm_done(&g);
    }
    if (rc == -EBADMSG)
        rc = vmseal_fail(EBADMSG, "key safe (KEK '%s' from provider '%s'): wrong key, or key "
                                  "safe belongs to another object, or it was altered",
                         p->info.kek_id, p->info.provider);
    if (rc < 0) {
        vmseal_secret_free(s);
        goto out;
    }
    *payload = s;
out:
    OPENSSL_cleanse(p, sizeof(*p));
    free(p);
    return rc;
}

int vmseal_keysafe_rewrap(const vmseal_secret *old_kek, const char *line, const char *object_id,
                          const vmseal_secret *new_kek, const char *new_provider,
                          const char *new_kek_id, char **new_line)
{
    *new_line = NULL;
    vmseal_secret *payload = NULL;
    int rc = vmseal_keysafe_unwrap(old_kek, line, object_id, &payload);
    if (rc < 0)
        return rc;
    rc = vmseal_keysafe_wrap(new_kek, new_provider, new_kek_id, object_id, payload, new_line);
    vmseal_secret_free(payload);
    return rc;
}
