/* Sealed files: STREAM-construction AES-256-GCM over fixed-size chunks
 * (include/vmseal/sealed.h, docs/formats.md). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <vmseal/diskdesc.h>
#include <vmseal/keysafe.h>
#include <vmseal/keywrap.h>
#include <vmseal/sealed.h>

#include "gcm.h"

#define ALG_AES256GCM_STREAM 1
#define PREFIX_LEN 7
#define MAC_LEN 32
#define HASH_LEN 32
#define FILE_KEY_LEN 32
#define INFO_MAC "vmseal sealed file v1 header mac"
#define INFO_ENC "vmseal sealed file v1 chunk key"

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static int chunk_size_valid(uint32_t cs)
{
    return cs >= VMSEAL_SEALED_CHUNK_MIN && cs <= VMSEAL_SEALED_CHUNK_MAX && (cs & (cs - 1)) == 0;
}

/* Header fields found by probe, with offsets into the header bytes. */
typedef struct hdr {
    vmseal_sealed_info info;
    const uint8_t *prefix;
    const uint8_t *wrapped;
    size_t wrapped_len;
} hdr;

static int parse_header(const uint8_t *b, size_t len, hdr *h)
{
    memset(h, 0, sizeof(*h));
    size_t mlen = strlen(VMSEAL_SEALED_MAGIC);
    if (len < mlen ? memcmp(b, VMSEAL_SEALED_MAGIC, len) != 0
                   : memcmp(b, VMSEAL_SEALED_MAGIC, mlen) != 0)
        return vmseal_fail(EPROTO, "not a vmseal sealed file (bad magic)");
    if (len < VMSEAL_SEALED_FIXED_LEN)
        return vmseal_fail(ENODATA, "sealed file: header truncated");
    if (b[8] != VMSEAL_SEALED_VERSION)
        return vmseal_fail(ENOTSUP, "sealed file: version %u is not supported (this vmseal "
                                    "reads version %d)", b[8], VMSEAL_SEALED_VERSION);
    if (b[9] != ALG_AES256GCM_STREAM)
        return vmseal_fail(ENOTSUP, "sealed file: unknown algorithm %u", b[9]);
    size_t hlen = get16(b + 10);
    uint32_t cs = get32(b + 12);
    size_t plen = b[23], klen = b[24], wlen = b[25];
    if (!chunk_size_valid(cs))
        return vmseal_fail(EPROTO, "sealed file: invalid chunk size %u", cs);
    if (plen == 0 || plen > VMSEAL_KEYSAFE_PROVIDER_MAX || klen == 0)
        return vmseal_fail(EPROTO, "sealed file: invalid provider or KEK id length");
    if (wlen != vmseal_keywrap_pad_wrapped_len(FILE_KEY_LEN))
        return vmseal_fail(EPROTO, "sealed file: invalid wrapped key length %zu", wlen);
    if (get16(b + 26) != 0)
        return vmseal_fail(EPROTO, "sealed file: reserved header bytes are not zero");
    if (hlen != VMSEAL_SEALED_FIXED_LEN + plen + klen + wlen + MAC_LEN)
        return vmseal_fail(EPROTO, "sealed file: header length %zu does not match its fields",
                           hlen);
    if (len < hlen)
        return vmseal_fail(ENODATA, "sealed file: header truncated");
    const uint8_t *p = b + VMSEAL_SEALED_FIXED_LEN;
    for (size_t i = 0; i < plen; i++) {
        unsigned char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return vmseal_fail(EPROTO, "sealed file: invalid provider name");
    }
    if (memchr(p + plen, 0, klen))
        return vmseal_fail(EPROTO, "sealed file: KEK id contains NUL");
    h->info.version = b[8];
    h->info.chunk_size = cs;
    h->info.header_len = hlen;
    memcpy(h->info.provider, p, plen);
    memcpy(h->info.kek_id, p + plen, klen);
    h->prefix = b + 16;
    h->wrapped = p + plen + klen;
    h->wrapped_len = wlen;
    return 0;
}

int vmseal_sealed_probe_header(const uint8_t *buf, size_t len, vmseal_sealed_info *info)
{
    hdr h;
    int rc = parse_header(buf, len, &h);
    if (rc < 0)
        return rc;
    if (info)
        *info = h.info;
    return (int)h.info.header_len;
}

/* HKDF-SHA256(file key) -> header MAC key | chunk key. */
static int derive_keys(const vmseal_secret *file_key, vmseal_secret **mac_key,
                       vmseal_secret **enc_key)
{
    *mac_key = *enc_key = NULL;
    vmseal_secret *k[2] = {vmseal_secret_new(32), vmseal_secret_new(32)};
    const char *infos[2] = {INFO_MAC, INFO_ENC};
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    int ok = k[0] && k[1] && kctx;
    for (int i = 0; ok && i < 2; i++) {
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
                                              (void *)vmseal_secret_cdata(file_key),
                                              vmseal_secret_len(file_key)),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)infos[i],
                                              strlen(infos[i])),
            OSSL_PARAM_construct_end(),
        };
        ok = EVP_KDF_derive(kctx, vmseal_secret_data(k[i]), 32, params) == 1;
    }
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    if (!ok) {
        vmseal_secret_free(k[0]);
        vmseal_secret_free(k[1]);
        return vmseal_fail(EIO, "sealed file: key derivation failed");
    }
    *mac_key = k[0];
    *enc_key = k[1];
    return 0;
}

static int header_mac(const vmseal_secret *mac_key, const uint8_t *hdr_bytes, size_t n,
                      uint8_t out[MAC_LEN])
{
    unsigned int olen = 0;
    if (!HMAC(EVP_sha256(), vmseal_secret_cdata(mac_key), 32, hdr_bytes, n, out, &olen) ||
        olen != MAC_LEN)
        return vmseal_fail(EIO, "sealed file: HMAC failed");
    return 0;
}

static int header_hash(const uint8_t *hdr_bytes, size_t n, uint8_t out[HASH_LEN])
{
    if (EVP_Digest(hdr_bytes, n, out, NULL, EVP_sha256(), NULL) != 1)
        return vmseal_fail(EIO, "sealed file: SHA-256 failed");
    return 0;
}

static void chunk_nonce(uint8_t nonce[GCM_NONCE_LEN], const uint8_t *prefix, uint32_t idx,
                        int final)
{
    memcpy(nonce, prefix, PREFIX_LEN);
    put32(nonce + PREFIX_LEN, idx);
    nonce[11] = final ? 1 : 0;
}

/* Read until len bytes or end of input. Returns bytes read or -errno. */
static ssize_t read_full(const vmseal_stream *io, uint8_t *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = io->read(io->read_ctx, buf + got, len - got);
        if (r < 0)
            return vmseal_fail((int)-r, "sealed file: read failed: %s", strerror((int)-r));
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static int write_out(const vmseal_stream *io, const uint8_t *buf, size_t len)
{
    if (len == 0)
        return 0;
    int rc = io->write(io->write_ctx, buf, len);
    if (rc < 0)
        return vmseal_fail(-rc, "sealed file: write failed: %s", strerror(-rc));
    return 0;
}

int vmseal_seal(const vmseal_secret *kek, const char *provider, const char *kek_id,
                uint32_t chunk_size, const vmseal_stream *io)
{
    if (chunk_size == 0)
        chunk_size = VMSEAL_SEALED_CHUNK_DEFAULT;
    if (!chunk_size_valid(chunk_size))
        return vmseal_fail(EINVAL, "sealed file: chunk size must be a power of two, %u..%u",
                           VMSEAL_SEALED_CHUNK_MIN, VMSEAL_SEALED_CHUNK_MAX);
    if (vmseal_secret_len(kek) != 32)
        return vmseal_fail(EINVAL, "sealed file: the KEK must be 32 bytes");
    if (!vmseal_keysafe_provider_valid(provider) || !vmseal_keysafe_kek_id_valid(kek_id))
        return vmseal_fail(EINVAL, "sealed file: invalid provider name or KEK id");

    size_t plen = strlen(provider), klen = strlen(kek_id);
    size_t wlen = vmseal_keywrap_pad_wrapped_len(FILE_KEY_LEN);
    size_t hlen = VMSEAL_SEALED_FIXED_LEN + plen + klen + wlen + MAC_LEN;
    uint8_t h[VMSEAL_SEALED_HEADER_MAX], hh[HASH_LEN];
    vmseal_secret *file_key = NULL, *mac_key = NULL, *enc_key = NULL;
    uint8_t *buf = NULL;
    gcm_ctx g = {0};
    int rc = vmseal_secret_random(FILE_KEY_LEN, &file_key);
    if (rc < 0)
        return rc;

    memset(h, 0, sizeof(h));
    memcpy(h, VMSEAL_SEALED_MAGIC, 8);
    h[8] = VMSEAL_SEALED_VERSION;
    h[9] = ALG_AES256GCM_STREAM;
    put16(h + 10, (uint16_t)hlen);
    put32(h + 12, chunk_size);
    if (RAND_bytes(h + 16, PREFIX_LEN) != 1) {
        rc = vmseal_fail(EIO, "sealed file: random generator failed");
        goto out;
    }
    h[23] = (uint8_t)plen;
    h[24] = (uint8_t)klen;
    h[25] = (uint8_t)wlen;
    uint8_t *p = h + VMSEAL_SEALED_FIXED_LEN;
    memcpy(p, provider, plen);
    memcpy(p + plen, kek_id, klen);
    size_t wrote = 0;
    rc = vmseal_keywrap_pad_wrap(kek, file_key, p + plen + klen, wlen, &wrote);
    if (rc < 0)
        goto out;
    if ((rc = derive_keys(file_key, &mac_key, &enc_key)) < 0 ||
        (rc = header_mac(mac_key, h, hlen - MAC_LEN, h + hlen - MAC_LEN)) < 0 ||
        (rc = header_hash(h, hlen, hh)) < 0 ||
        (rc = gcm_init(&g, vmseal_secret_cdata(enc_key), 1)) < 0)
        goto out;
    if ((rc = write_out(io, h, hlen)) < 0)
        goto out;

    buf = malloc((size_t)chunk_size + VMSEAL_SEALED_TAG_LEN);
    if (!buf) {
        rc = vmseal_fail(ENOMEM, "sealed file: out of memory");
        goto out;
    }
    for (uint64_t idx = 0;; idx++) {
        if (idx > UINT32_MAX) {
            rc = vmseal_fail(EFBIG, "sealed file: input too large for chunk size %u",
                             chunk_size);
            goto out;
        }
        ssize_t got = read_full(io, buf, chunk_size);
        if (got < 0) {
            rc = (int)got;
            goto out;
        }
        int final = (size_t)got < chunk_size;
        uint8_t nonce[GCM_NONCE_LEN];
        chunk_nonce(nonce, h + 16, (uint32_t)idx, final);
        rc = gcm_encrypt(&g, nonce, hh, HASH_LEN, buf, (size_t)got, buf, buf + got);
        if (rc < 0)
            goto out;
        if ((rc = write_out(io, buf, (size_t)got + VMSEAL_SEALED_TAG_LEN)) < 0)
            goto out;
        if (final)
            break;
    }
    rc = 0;
out:
    if (buf) {
        OPENSSL_cleanse(buf, (size_t)chunk_size + VMSEAL_SEALED_TAG_LEN);
        free(buf);
    }
    if (g.ctx)
        gcm_done(&g);
    vmseal_secret_free(file_key);
    vmseal_secret_free(mac_key);
    vmseal_secret_free(enc_key);
    return rc;
}

int vmseal_unseal(const vmseal_secret *kek, const vmseal_stream *io, vmseal_sealed_info *info)
{
    uint8_t h[VMSEAL_SEALED_HEADER_MAX], hh[HASH_LEN], mac[MAC_LEN];
    hdr hd;
    vmseal_secret *file_key = NULL, *mac_key = NULL, *enc_key = NULL;
    uint8_t *buf = NULL;
    size_t bufsize = 0;
    gcm_ctx g = {0};
    int rc;

    if (info)
        memset(info, 0, sizeof(*info));
    if (vmseal_secret_len(kek) != 32)
        return vmseal_fail(EINVAL, "sealed file: the KEK must be 32 bytes");
    ssize_t got = read_full(io, h, VMSEAL_SEALED_FIXED_LEN);
    if (got < 0)
        return (int)got;
    if (got == 0)
        return vmseal_fail(EPROTO, "not a vmseal sealed file (empty input)");
    rc = parse_header(h, (size_t)got, &hd);
    if (rc == -ENODATA && (size_t)got == VMSEAL_SEALED_FIXED_LEN) {
        /* The fixed part is complete: read the variable part. */
        size_t hlen = get16(h + 10);
        if (hlen > VMSEAL_SEALED_FIXED_LEN && hlen <= sizeof(h)) {
            ssize_t more = read_full(io, h + got, hlen - (size_t)got);
            if (more < 0)
                return (int)more;
            got += more;
            rc = parse_header(h, (size_t)got, &hd);
        }
    }
    if (rc == -ENODATA)
        return vmseal_fail(EPROTO, "sealed file: truncated inside the header");
    if (rc < 0)
        return rc;
    if (info)
        *info = hd.info;
    size_t hlen = hd.info.header_len;

    rc = vmseal_keywrap_pad_unwrap(kek, hd.wrapped, hd.wrapped_len, &file_key);
    if (rc == -EBADMSG) {
        rc = vmseal_fail(EBADMSG, "sealed file: wrong key (the file was sealed with KEK '%s' "
                                  "of provider '%s') or its header is corrupt",
                         hd.info.kek_id, hd.info.provider);
        goto out;
    }
    if (rc < 0)
        goto out;
    if (vmseal_secret_len(file_key) != FILE_KEY_LEN) {
        rc = vmseal_fail(EBADMSG, "sealed file: wrapped key has the wrong length");
        goto out;
    }
    if ((rc = derive_keys(file_key, &mac_key, &enc_key)) < 0 ||
        (rc = header_mac(mac_key, h, hlen - MAC_LEN, mac)) < 0)
        goto out;
    if (CRYPTO_memcmp(mac, h + hlen - MAC_LEN, MAC_LEN) != 0) {
        rc = vmseal_fail(EBADMSG, "sealed file: header was altered (MAC mismatch)");
        goto out;
    }
    if ((rc = header_hash(h, hlen, hh)) < 0 ||
        (rc = gcm_init(&g, vmseal_secret_cdata(enc_key), 0)) < 0)
        goto out;

    uint32_t cs = hd.info.chunk_size;
    bufsize = (size_t)cs + VMSEAL_SEALED_TAG_LEN;
    buf = malloc(bufsize);
    if (!buf) {
        rc = vmseal_fail(ENOMEM, "sealed file: out of memory");
        goto out;
    }
    for (uint64_t idx = 0;; idx++) {
        got = read_full(io, buf, bufsize);
        if (got < 0) {
            rc = (int)got;
            goto out;
        }
        /* A full chunk is never the last one: the final chunk is shorter. */
        int final = (size_t)got < bufsize;
        if (final && got < (ssize_t)VMSEAL_SEALED_TAG_LEN) {
            rc = vmseal_fail(EPROTO, "sealed file: truncated (the final chunk is missing "
                                     "after %llu chunks)", (unsigned long long)idx);
            goto out;
        }
        if (idx > UINT32_MAX) {
            rc = vmseal_fail(EPROTO, "sealed file: too many chunks");
            goto out;
        }
        size_t clen = (size_t)got - VMSEAL_SEALED_TAG_LEN;
        uint8_t nonce[GCM_NONCE_LEN];
        chunk_nonce(nonce, hd.prefix, (uint32_t)idx, final);
        rc = gcm_decrypt(&g, nonce, hh, HASH_LEN, buf, clen, buf, buf + clen);
        if (rc == -EBADMSG) {
            rc = final ? vmseal_fail(EBADMSG, "sealed file: chunk %llu (at byte %llu) fails "
                                              "authentication: the file is truncated, has "
                                              "data appended, or is corrupt",
                                     (unsigned long long)idx,
                                     (unsigned long long)(hlen + idx * bufsize))
                       : vmseal_fail(EBADMSG, "sealed file: chunk %llu (at byte %llu) fails "
                                              "authentication: corrupt, reordered or from "
                                              "another file", (unsigned long long)idx,
                                     (unsigned long long)(hlen + idx * bufsize));
            goto out;
        }
        if (rc < 0)
            goto out;
        if ((rc = write_out(io, buf, clen)) < 0)
            goto out;
        if (final)
            break;
    }
    rc = 0;
out:
    if (buf) {
        OPENSSL_cleanse(buf, bufsize);
        free(buf);
    }
    if (g.ctx)
        gcm_done(&g);
    vmseal_secret_free(file_key);
    vmseal_secret_free(mac_key);
    vmseal_secret_free(enc_key);
    return rc;
}

static ssize_t fd_read(void *ctx, void *buf, size_t len)
{
    int fd = *(int *)ctx;
    for (;;) {
        ssize_t r = read(fd, buf, len);
        if (r >= 0)
            return r;
        if (errno != EINTR)
            return -errno;
    }
}

static int fd_write(void *ctx, const void *buf, size_t len)
{
    return vmseal_write_all(*(int *)ctx, buf, len);
}

int vmseal_seal_stream(const vmseal_secret *kek, const char *provider, const char *kek_id,
                       int in_fd, int out_fd)
{
    vmseal_stream io = {fd_read, &in_fd, fd_write, &out_fd};
    return vmseal_seal(kek, provider, kek_id, 0, &io);
}

int vmseal_unseal_stream(const vmseal_secret *kek, int in_fd, int out_fd,
                         vmseal_sealed_info *info)
{
    vmseal_stream io = {fd_read, &in_fd, fd_write, &out_fd};
    return vmseal_unseal(kek, &io, info);
}

/* ================================================================ sealed logs
 * Segments of a growing log (include/vmseal/sealed.h, docs/formats.md
 * "Sealed log"): a sealed-file style header, then one AES-256-GCM record
 * per flush, the last one marked as the end. */

#define SLOG_ALG 1
#define SLOG_WRAPPED_LEN 40
#define SLOG_OFF_UUID 24
#define SLOG_OFF_SEQ 40
#define SLOG_OFF_FIRST 48
#define SLOG_OFF_OFFSET 56
#define SLOG_OFF_CREATED 64
#define SLOG_OFF_WRAPPED 72
#define SLOG_OFF_MAC (VMSEAL_SLOG_HEADER_LEN - MAC_LEN)
#define SLOG_END_FLAG 0x80000000u
#define SLOG_INFO_KEY "vmseal sealed log v1"
#define SLOG_INFO_MAC "vmseal sealed log v1 header mac"
#define SLOG_INFO_ENC "vmseal sealed log v1 record key"
#define SLOG_MAX_SEGMENTS 100000u
#define SLOG_OFFSET_MAX (UINT64_C(1) << 62)

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}
static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

static int record_max_valid(uint32_t rm)
{
    return rm >= VMSEAL_SLOG_RECORD_MIN && rm <= VMSEAL_SLOG_RECORD_MAX && (rm & (rm - 1)) == 0;
}

/* HKDF-SHA256 of ikm with info into out (len bytes). */
static int hkdf(const uint8_t *ikm, size_t ikm_len, const void *info, size_t info_len,
                uint8_t *out, size_t len)
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    int ok = kctx != NULL;
    if (ok) {
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_len),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, info_len),
            OSSL_PARAM_construct_end(),
        };
        ok = EVP_KDF_derive(kctx, out, len, params) == 1;
    }
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    return ok ? 0 : vmseal_fail(EIO, "sealed log: key derivation failed");
}

/* Segment key -> header MAC key and record key. */
static int slog_subkeys(const vmseal_secret *seg_key, vmseal_secret **mac_key,
                        vmseal_secret **enc_key)
{
    *mac_key = vmseal_secret_new(32);
    *enc_key = vmseal_secret_new(32);
    int r = *mac_key && *enc_key ? 0 : vmseal_fail(ENOMEM, "sealed log: out of memory");
    if (r == 0)
        r = hkdf(vmseal_secret_cdata(seg_key), vmseal_secret_len(seg_key), SLOG_INFO_MAC,
                 strlen(SLOG_INFO_MAC), vmseal_secret_data(*mac_key), 32);
    if (r == 0)
        r = hkdf(vmseal_secret_cdata(seg_key), vmseal_secret_len(seg_key), SLOG_INFO_ENC,
                 strlen(SLOG_INFO_ENC), vmseal_secret_data(*enc_key), 32);
    if (r < 0) {
        vmseal_secret_free(*mac_key);
        vmseal_secret_free(*enc_key);
        *mac_key = *enc_key = NULL;
    }
    return r;
}

static int uuid_to_bytes(const char *uuid, uint8_t out[16])
{
    if (!uuid || !vmseal_uuid_valid(uuid))
        return vmseal_fail(EINVAL, "sealed log: invalid VM uuid");
    char hex[33];
    size_t n = 0;
    for (const char *p = uuid; *p; p++)
        if (*p != '-')
            hex[n++] = *p;
    hex[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (hex[i] >= 'A' && hex[i] <= 'F')
            hex[i] = (char)(hex[i] - 'A' + 'a');
    if (n != 32 || vmseal_hex_decode(hex, 32, out, 16) < 0)
        return vmseal_fail(EINVAL, "sealed log: invalid VM uuid");
    return 0;
}

static void uuid_from_bytes(const uint8_t b[16], char out[37])
{
    char hex[33];
    vmseal_hex_encode(b, 16, hex);
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
}

int vmseal_slog_key(const vmseal_secret *vm_secret, const char *vm_uuid, vmseal_secret **log_key)
{
    *log_key = NULL;
    uint8_t u[16];
    if (!vm_secret || vmseal_secret_len(vm_secret) < 16)
        return vmseal_fail(EINVAL, "sealed log: the VM secret is too short");
    int r = uuid_to_bytes(vm_uuid, u);
    if (r < 0)
        return r;
    char info[64];
    char canon[37];
    uuid_from_bytes(u, canon);
    size_t il = strlen(SLOG_INFO_KEY) + 1;
    memcpy(info, SLOG_INFO_KEY, il);   /* with its NUL */
    il += (size_t)snprintf(info + il, sizeof(info) - il, "vm:%s", canon);
    vmseal_secret *k = vmseal_secret_new(32);
    if (!k)
        return vmseal_fail(ENOMEM, "sealed log: out of memory");
    r = hkdf(vmseal_secret_cdata(vm_secret), vmseal_secret_len(vm_secret), info, il,
             vmseal_secret_data(k), 32);
    if (r < 0) {
        vmseal_secret_free(k);
        return r;
    }
    *log_key = k;
    return 0;
}

#define VMFILE_INFO_KEY "vmseal vm file v1"

int vmseal_vmfile_key(const vmseal_secret *vm_secret, const char *vm_uuid, const char *purpose,
                      vmseal_secret **key)
{
    *key = NULL;
    uint8_t u[16];
    if (!vm_secret || vmseal_secret_len(vm_secret) < 16)
        return vmseal_fail(EINVAL, "VM file key: the VM secret is too short");
    size_t pl = purpose ? strlen(purpose) : 0;
    if (pl == 0 || pl > VMSEAL_VMFILE_PURPOSE_MAX)
        return vmseal_fail(EINVAL, "VM file key: the purpose must be 1..%u bytes",
                           VMSEAL_VMFILE_PURPOSE_MAX);
    for (size_t i = 0; i < pl; i++)
        if ((unsigned char)purpose[i] < 0x21 || (unsigned char)purpose[i] > 0x7e)
            return vmseal_fail(EINVAL, "VM file key: the purpose must be printable ASCII");
    int r = uuid_to_bytes(vm_uuid, u);
    if (r < 0)
        return r;
    char canon[37];
    uuid_from_bytes(u, canon);
    char info[sizeof(VMFILE_INFO_KEY) + 48 + VMSEAL_VMFILE_PURPOSE_MAX];
    size_t il = strlen(VMFILE_INFO_KEY) + 1;
    memcpy(info, VMFILE_INFO_KEY, il);   /* with its NUL */
    il += (size_t)snprintf(info + il, sizeof(info) - il, "vm:%s", canon) + 1;   /* and a NUL */
    memcpy(info + il, purpose, pl);
    il += pl;
    vmseal_secret *k = vmseal_secret_new(32);
    if (!k)
        return vmseal_fail(ENOMEM, "VM file key: out of memory");
    r = hkdf(vmseal_secret_cdata(vm_secret), vmseal_secret_len(vm_secret), info, il,
             vmseal_secret_data(k), 32);
    if (r < 0) {
        vmseal_secret_free(k);
        return r;
    }
    *key = k;
    return 0;
}

int vmseal_slog_probe_header(const uint8_t *b, size_t len, vmseal_slog_info *info)
{
    if (info)
        memset(info, 0, sizeof(*info));
    size_t mlen = strlen(VMSEAL_SLOG_MAGIC);
    if (len < mlen ? memcmp(b, VMSEAL_SLOG_MAGIC, len) != 0 : memcmp(b, VMSEAL_SLOG_MAGIC, mlen) != 0)
        return vmseal_fail(EPROTO, "not a vmseal sealed log segment (bad magic)");
    if (len < 10)
        return vmseal_fail(ENODATA, "sealed log: header truncated");
    if (b[8] != VMSEAL_SLOG_VERSION)
        return vmseal_fail(ENOTSUP, "sealed log: version %u is not supported (this vmseal reads "
                                    "version %d)", b[8], VMSEAL_SLOG_VERSION);
    if (b[9] != SLOG_ALG)
        return vmseal_fail(ENOTSUP, "sealed log: unknown algorithm %u", b[9]);
    if (len < VMSEAL_SLOG_HEADER_LEN)
        return vmseal_fail(ENODATA, "sealed log: header truncated");
    uint32_t rm = get32(b + 12);
    uint64_t seq = get64(b + SLOG_OFF_SEQ), first = get64(b + SLOG_OFF_FIRST);
    uint64_t off = get64(b + SLOG_OFF_OFFSET);
    if (get16(b + 10) != VMSEAL_SLOG_HEADER_LEN)
        return vmseal_fail(EPROTO, "sealed log: header length %u is not %u", get16(b + 10),
                           VMSEAL_SLOG_HEADER_LEN);
    if (!record_max_valid(rm))
        return vmseal_fail(EPROTO, "sealed log: invalid record size %u", rm);
    if (b[23] != SLOG_WRAPPED_LEN)
        return vmseal_fail(EPROTO, "sealed log: invalid wrapped key length %u", b[23]);
    if (seq == 0 || first == 0 || first > seq)
        return vmseal_fail(EPROTO, "sealed log: invalid sequence numbers (segment %" PRIu64
                                   ", first kept %" PRIu64 ")", seq, first);
    if (off > SLOG_OFFSET_MAX)
        return vmseal_fail(EPROTO, "sealed log: invalid log offset");
    if (info) {
        info->version = b[8];
        info->record_max = rm;
        uuid_from_bytes(b + SLOG_OFF_UUID, info->uuid);
        info->seq = seq;
        info->first = first;
        info->offset = off;
        info->created = get64(b + SLOG_OFF_CREATED);
    }
    return 0;
}

/* Keys of a segment whose header verifies under log_key. */
typedef struct slog_keys {
    vmseal_secret *mac, *enc;
    uint8_t hh[HASH_LEN];
} slog_keys;

static void slog_keys_free(slog_keys *k)
{
    vmseal_secret_free(k->mac);
    vmseal_secret_free(k->enc);
    memset(k, 0, sizeof(*k));
}

static int slog_open_header(const vmseal_secret *log_key, const uint8_t *h, slog_keys *k)
{
    memset(k, 0, sizeof(*k));
    vmseal_secret *seg_key = NULL;
    int r = vmseal_keywrap_pad_unwrap(log_key, h + SLOG_OFF_WRAPPED, SLOG_WRAPPED_LEN, &seg_key);
    if (r == -EBADMSG)
        return vmseal_fail(EBADMSG, "sealed log: wrong key (not this VM's log key) or the "
                                    "segment header is corrupt");
    if (r < 0)
        return r;
    if (vmseal_secret_len(seg_key) != FILE_KEY_LEN) {
        vmseal_secret_free(seg_key);
        return vmseal_fail(EBADMSG, "sealed log: wrapped key has the wrong length");
    }
    r = slog_subkeys(seg_key, &k->mac, &k->enc);
    vmseal_secret_free(seg_key);
    uint8_t mac[MAC_LEN];
    if (r == 0)
        r = header_mac(k->mac, h, SLOG_OFF_MAC, mac);
    if (r == 0 && CRYPTO_memcmp(mac, h + SLOG_OFF_MAC, MAC_LEN) != 0)
        r = vmseal_fail(EBADMSG, "sealed log: segment header was altered (MAC mismatch)");
    if (r == 0)
        r = header_hash(h, VMSEAL_SLOG_HEADER_LEN, k->hh);
    if (r < 0)
        slog_keys_free(k);
    return r;
}

static void slog_nonce(uint8_t nonce[GCM_NONCE_LEN], const uint8_t *prefix, uint32_t idx, int end)
{
    chunk_nonce(nonce, prefix, idx, end);
}

/* AAD = header hash | record header. */
static void slog_aad(uint8_t aad[HASH_LEN + 4], const uint8_t hh[HASH_LEN], uint32_t rh)
{
    memcpy(aad, hh, HASH_LEN);
    put32(aad + HASH_LEN, rh);
}

int vmseal_slog_read(const vmseal_secret *log_key, const vmseal_stream *io, vmseal_slog_info *info,
                     vmseal_slog_state *st)
{
    uint8_t h[VMSEAL_SLOG_HEADER_LEN];
    vmseal_slog_info inf;
    vmseal_slog_state dummy;
    slog_keys k = {0};
    gcm_ctx g = {0};
    uint8_t *buf = NULL;
    size_t bufsize = 0;
    int r;
    if (!st)
        st = &dummy;
    memset(st, 0, sizeof(*st));
    if (info)
        memset(info, 0, sizeof(*info));
    if (vmseal_secret_len(log_key) != 32)
        return vmseal_fail(EINVAL, "sealed log: the log key must be 32 bytes");
    ssize_t got = read_full(io, h, sizeof(h));
    if (got < 0)
        return (int)got;
    if (got == 0)
        return vmseal_fail(EPROTO, "not a vmseal sealed log segment (empty input)");
    r = vmseal_slog_probe_header(h, (size_t)got, &inf);
    if (r == -ENODATA) {
        st->torn = 1;
        return vmseal_fail(EPROTO, "sealed log: truncated inside the header");
    }
    if (r < 0)
        return r;
    if (info)
        *info = inf;
    if ((r = slog_open_header(log_key, h, &k)) < 0)
        return r;
    st->header_ok = 1;
    st->good_len = VMSEAL_SLOG_HEADER_LEN;
    if ((r = gcm_init(&g, vmseal_secret_cdata(k.enc), 0)) < 0)
        goto out;
    bufsize = (size_t)inf.record_max + GCM_TAG_LEN;
    buf = malloc(bufsize);
    if (!buf) {
        r = vmseal_fail(ENOMEM, "sealed log: out of memory");
        goto out;
    }
    for (uint64_t idx = 0;; idx++) {
        uint8_t rhb[4];
        uint64_t at = st->good_len;
        got = read_full(io, rhb, 4);
        if (got < 0) {
            r = (int)got;
            goto out;
        }
        if (got == 0)
            break;   /* end of input at a record boundary */
        if (st->ended) {
            r = vmseal_fail(EPROTO, "sealed log: data after the end record (at byte %" PRIu64 ")",
                            at);
            goto out;
        }
        if (got < 4) {
            st->torn = 1;
            r = vmseal_fail(EPROTO, "sealed log: truncated inside record %" PRIu64
                                    " (at byte %" PRIu64 ")", idx, at);
            goto out;
        }
        uint32_t rh = get32(rhb);
        int end = (rh & SLOG_END_FLAG) != 0;
        uint32_t len = rh & ~SLOG_END_FLAG;
        if (len > inf.record_max || (!end && len == 0)) {
            r = vmseal_fail(EPROTO, "sealed log: record %" PRIu64 " (at byte %" PRIu64
                                    ") has an invalid length %u", idx, at, len);
            goto out;
        }
        if (idx > UINT32_MAX) {
            r = vmseal_fail(EPROTO, "sealed log: too many records");
            goto out;
        }
        got = read_full(io, buf, (size_t)len + GCM_TAG_LEN);
        if (got < 0) {
            r = (int)got;
            goto out;
        }
        if ((size_t)got < (size_t)len + GCM_TAG_LEN) {
            st->torn = 1;
            r = vmseal_fail(EPROTO, "sealed log: truncated inside record %" PRIu64
                                    " (at byte %" PRIu64 ")", idx, at);
            goto out;
        }
        uint8_t nonce[GCM_NONCE_LEN], aad[HASH_LEN + 4];
        slog_nonce(nonce, h + 16, (uint32_t)idx, end);
        slog_aad(aad, k.hh, rh);
        r = gcm_decrypt(&g, nonce, aad, sizeof(aad), buf, len, buf, buf + len);
        if (r == -EBADMSG) {
            r = vmseal_fail(EBADMSG, "sealed log: record %" PRIu64 " (at byte %" PRIu64
                                     ") fails authentication: altered, reordered, or from "
                                     "another segment", idx, at);
            goto out;
        }
        if (r < 0)
            goto out;
        if (io->write && (r = write_out(io, buf, len)) < 0)
            goto out;
        st->records++;
        st->bytes += len;
        st->good_len += 4 + (uint64_t)len + GCM_TAG_LEN;
        if (end)
            st->ended = 1;
    }
    r = 0;
out:
    if (buf) {
        OPENSSL_cleanse(buf, bufsize);
        free(buf);
    }
    if (g.ctx)
        gcm_done(&g);
    slog_keys_free(&k);
    return r;
}

struct vmseal_slog_writer {
    vmseal_stream io;
    vmseal_slog_info info;
    uint8_t prefix[PREFIX_LEN];
    uint8_t hh[HASH_LEN];
    gcm_ctx g;
    uint64_t records, bytes, length;
    int ended, failed;
    uint8_t *buf;
    size_t bufsize;
};

void vmseal_slog_writer_free(vmseal_slog_writer *w)
{
    if (!w)
        return;
    if (w->g.ctx)
        gcm_done(&w->g);
    if (w->buf) {
        OPENSSL_cleanse(w->buf, w->bufsize);
        free(w->buf);
    }
    OPENSSL_cleanse(w, sizeof(*w));
    free(w);
}

uint64_t vmseal_slog_writer_bytes(const vmseal_slog_writer *w) { return w->bytes; }
uint64_t vmseal_slog_writer_length(const vmseal_slog_writer *w) { return w->length; }
const vmseal_slog_info *vmseal_slog_writer_info(const vmseal_slog_writer *w) { return &w->info; }

/* One record: header, ciphertext, tag in one write. */
static int slog_put_record(vmseal_slog_writer *w, const uint8_t *data, uint32_t len, int end)
{
    if (w->ended || w->failed)
        return vmseal_fail(EINVAL, "sealed log: the segment is %s",
                           w->ended ? "finished" : "broken by an earlier write error");
    if (w->records > UINT32_MAX)
        return vmseal_fail(EFBIG, "sealed log: too many records in one segment");
    uint32_t rh = len | (end ? SLOG_END_FLAG : 0);
    uint8_t nonce[GCM_NONCE_LEN], aad[HASH_LEN + 4];
    slog_nonce(nonce, w->prefix, (uint32_t)w->records, end);
    slog_aad(aad, w->hh, rh);
    put32(w->buf, rh);
    int r = gcm_encrypt(&w->g, nonce, aad, sizeof(aad), data, len, w->buf + 4, w->buf + 4 + len);
    if (r == 0)
        r = write_out(&w->io, w->buf, 4 + (size_t)len + GCM_TAG_LEN);
    OPENSSL_cleanse(w->buf, 4 + (size_t)len);
    if (r < 0) {
        w->failed = 1;   /* the file may now hold part of this record */
        return r;
    }
    w->records++;
    w->bytes += len;
    w->length += 4 + (uint64_t)len + GCM_TAG_LEN;
    if (end)
        w->ended = 1;
    return 0;
}

/* Writer over a verified header (new or existing segment). */
static int slog_writer_new(const vmseal_secret *log_key, const uint8_t *h, const vmseal_stream *io,
                           vmseal_slog_writer **out)
{
    *out = NULL;
    vmseal_slog_writer *w = calloc(1, sizeof(*w));
    if (!w)
        return vmseal_fail(ENOMEM, "sealed log: out of memory");
    slog_keys k;
    int r = vmseal_slog_probe_header(h, VMSEAL_SLOG_HEADER_LEN, &w->info);
    if (r == 0)
        r = slog_open_header(log_key, h, &k);
    if (r < 0) {
        free(w);
        return r;
    }
    w->io = *io;
    memcpy(w->prefix, h + 16, PREFIX_LEN);
    memcpy(w->hh, k.hh, HASH_LEN);
    r = gcm_init(&w->g, vmseal_secret_cdata(k.enc), 1);
    slog_keys_free(&k);
    w->bufsize = 4 + (size_t)w->info.record_max + GCM_TAG_LEN;
    if (r == 0 && !(w->buf = malloc(w->bufsize)))
        r = vmseal_fail(ENOMEM, "sealed log: out of memory");
    if (r < 0) {
        vmseal_slog_writer_free(w);
        return r;
    }
    w->length = VMSEAL_SLOG_HEADER_LEN;
    *out = w;
    return 0;
}

int vmseal_slog_begin(const vmseal_secret *log_key, const vmseal_slog_info *want,
                      const vmseal_stream *io, vmseal_slog_writer **out)
{
    *out = NULL;
    uint32_t rm = want->record_max ? want->record_max : VMSEAL_SLOG_RECORD_DEFAULT;
    if (vmseal_secret_len(log_key) != 32)
        return vmseal_fail(EINVAL, "sealed log: the log key must be 32 bytes");
    if (!record_max_valid(rm))
        return vmseal_fail(EINVAL, "sealed log: record size must be a power of two, %u..%u",
                           VMSEAL_SLOG_RECORD_MIN, VMSEAL_SLOG_RECORD_MAX);
    if (want->seq == 0 || want->first == 0 || want->first > want->seq ||
        want->offset > SLOG_OFFSET_MAX)
        return vmseal_fail(EINVAL, "sealed log: invalid sequence numbers or offset");
    uint8_t h[VMSEAL_SLOG_HEADER_LEN];
    memset(h, 0, sizeof(h));
    memcpy(h, VMSEAL_SLOG_MAGIC, 8);
    h[8] = VMSEAL_SLOG_VERSION;
    h[9] = SLOG_ALG;
    put16(h + 10, VMSEAL_SLOG_HEADER_LEN);
    put32(h + 12, rm);
    h[23] = SLOG_WRAPPED_LEN;
    int r = uuid_to_bytes(want->uuid, h + SLOG_OFF_UUID);
    if (r < 0)
        return r;
    put64(h + SLOG_OFF_SEQ, want->seq);
    put64(h + SLOG_OFF_FIRST, want->first);
    put64(h + SLOG_OFF_OFFSET, want->offset);
    time_t now = time(NULL);
    put64(h + SLOG_OFF_CREATED, now > 0 ? (uint64_t)now : 0);
    if (RAND_bytes(h + 16, PREFIX_LEN) != 1)
        return vmseal_fail(EIO, "sealed log: random generator failed");
    vmseal_secret *seg_key = NULL, *mac_key = NULL, *enc_key = NULL;
    if ((r = vmseal_secret_random(FILE_KEY_LEN, &seg_key)) < 0)
        return r;
    size_t wrote = 0;
    r = vmseal_keywrap_pad_wrap(log_key, seg_key, h + SLOG_OFF_WRAPPED, SLOG_WRAPPED_LEN, &wrote);
    if (r == 0 && wrote != SLOG_WRAPPED_LEN)
        r = vmseal_fail(EIO, "sealed log: unexpected wrapped key length");
    if (r == 0)
        r = slog_subkeys(seg_key, &mac_key, &enc_key);
    if (r == 0)
        r = header_mac(mac_key, h, SLOG_OFF_MAC, h + SLOG_OFF_MAC);
    vmseal_secret_free(seg_key);
    vmseal_secret_free(mac_key);
    vmseal_secret_free(enc_key);
    if (r < 0)
        return r;
    vmseal_slog_writer *w = NULL;
    if ((r = slog_writer_new(log_key, h, io, &w)) < 0)
        return r;
    if ((r = write_out(io, h, sizeof(h))) < 0) {
        vmseal_slog_writer_free(w);
        return r;
    }
    *out = w;
    return 0;
}

int vmseal_slog_append(vmseal_slog_writer *w, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        uint32_t n = len > w->info.record_max ? w->info.record_max : (uint32_t)len;
        int r = slog_put_record(w, p, n, 0);
        if (r < 0)
            return r;
        p += n;
        len -= n;
    }
    return 0;
}

int vmseal_slog_finish(vmseal_slog_writer *w)
{
    return slog_put_record(w, NULL, 0, 1);
}

int vmseal_slog_terminate(const vmseal_secret *log_key, const uint8_t *header, size_t header_len,
                          uint64_t records, const vmseal_stream *io)
{
    if (header_len < VMSEAL_SLOG_HEADER_LEN)
        return vmseal_fail(EPROTO, "sealed log: header truncated");
    if (records > UINT32_MAX)
        return vmseal_fail(EPROTO, "sealed log: too many records");
    vmseal_slog_writer *w = NULL;
    int r = slog_writer_new(log_key, header, io, &w);
    if (r < 0)
        return r;
    w->records = records;
    r = vmseal_slog_finish(w);
    vmseal_slog_writer_free(w);
    return r;
}

/* ------------------------------------------------------- segment files */

static int base_valid(const char *base)
{
    size_t n = base ? strlen(base) : 0;
    if (n == 0 || n > 32)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((base[i] >= 'a' && base[i] <= 'z') || (base[i] >= '0' && base[i] <= '9') ||
              base[i] == '_'))
            return 0;
    return 1;
}

int vmseal_slog_name(char *buf, size_t len, const char *base, uint64_t seq)
{
    if (!base_valid(base) || seq == 0)
        return vmseal_fail(EINVAL, "sealed log: invalid segment name");
    int n = snprintf(buf, len, "%s-%08" PRIu64 ".vmslog", base, seq);
    if (n < 0 || (size_t)n >= len)
        return vmseal_fail(ENAMETOOLONG, "sealed log: segment name too long");
    return 0;
}

uint64_t vmseal_slog_parse_name(const char *name, const char *base)
{
    if (!base_valid(base))
        return 0;
    size_t bl = strlen(base), nl = strlen(name);
    if (nl <= bl + 1 + 7 || strncmp(name, base, bl) != 0 || name[bl] != '-' ||
        strcmp(name + nl - 7, ".vmslog") != 0)
        return 0;
    const char *d = name + bl + 1;
    size_t dl = nl - bl - 1 - 7;
    if (dl < 8 || dl > 20)
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < dl; i++) {
        if (d[i] < '0' || d[i] > '9')
            return 0;
        unsigned digit = (unsigned)(d[i] - '0');
        if (v > (UINT64_MAX - digit) / 10)
            return 0;
        v = v * 10 + digit;
    }
    char canon[VMSEAL_SLOG_NAME_MAX];
    if (v == 0 || vmseal_slog_name(canon, sizeof(canon), base, v) < 0 || strcmp(canon, name) != 0) {
        vmseal_clear_error();
        return 0;
    }
    return v;
}

int vmseal_slog_list(int dirfd, const char *base, size_t *count, uint64_t *lowest, uint64_t *highest)
{
    *count = 0;
    *lowest = *highest = 0;
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return vmseal_fail(errno, "sealed log: cannot open the folder: %s", strerror(errno));
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return vmseal_fail(e, "sealed log: cannot read the folder: %s", strerror(e));
    }
    struct dirent *de;
    int r = 0;
    while ((de = readdir(d)) != NULL) {
        uint64_t s = vmseal_slog_parse_name(de->d_name, base);
        if (!s)
            continue;
        if (++*count > SLOG_MAX_SEGMENTS) {
            r = vmseal_fail(E2BIG, "sealed log: more than %u segments", SLOG_MAX_SEGMENTS);
            break;
        }
        if (!*lowest || s < *lowest)
            *lowest = s;
        if (s > *highest)
            *highest = s;
    }
    closedir(d);
    return r;
}

static ssize_t slog_fd_read(void *ctx, void *buf, size_t len)
{
    int fd = *(int *)ctx;
    for (;;) {
        ssize_t r = read(fd, buf, len);
        if (r >= 0)
            return r;
        if (errno != EINTR)
            return -errno;
    }
}

/* Open a segment for reading: a regular file, never through a symlink. */
static int slog_open_segment(int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP)
            return vmseal_fail(ELOOP, "%s is a symbolic link (not followed)", name);
        return vmseal_fail(e, "%s: %s", name, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return vmseal_fail(EPROTO, "%s is not a regular file", name);
    }
    return fd;
}

typedef struct emit_ctx {
    int (*emit)(void *ctx, const void *buf, size_t len);
    void *ctx;
} emit_ctx;

static int slog_emit(void *ctx, const void *buf, size_t len)
{
    emit_ctx *e = ctx;
    return e->emit ? e->emit(e->ctx, buf, len) : 0;
}

/* Read one segment file; the message names it on failure. */
static int slog_read_file(const vmseal_secret *log_key, int dirfd, const char *name,
                          emit_ctx *e, vmseal_slog_info *info, vmseal_slog_state *st)
{
    int fd = slog_open_segment(dirfd, name);
    if (fd < 0) {
        memset(info, 0, sizeof(*info));
        memset(st, 0, sizeof(*st));
        return fd;
    }
    vmseal_stream io = {slog_fd_read, &fd, slog_emit, e};
    int r = vmseal_slog_read(log_key, &io, info, st);
    close(fd);
    if (r < 0)
        r = vmseal_fail(-r, "%s: %s", name, vmseal_last_error());
    return r;
}

int vmseal_slog_read_dir(const vmseal_secret *log_key, int dirfd, const char *base,
                         const char *uuid, int flags,
                         int (*emit)(void *ctx, const void *buf, size_t len), void *ctx,
                         vmseal_slog_log_info *out)
{
    vmseal_slog_log_info li;
    memset(&li, 0, sizeof(li));
    if (out)
        *out = li;
    uint8_t want_uuid[16];
    char canon[37];
    int r = uuid_to_bytes(uuid, want_uuid);
    if (r < 0)
        return r;
    uuid_from_bytes(want_uuid, canon);
    size_t count;
    uint64_t lowest, highest;
    if ((r = vmseal_slog_list(dirfd, base, &count, &lowest, &highest)) < 0)
        return r;
    if (count == 0)
        return 0;
    /* The last segment says which ones must be there. */
    char name[VMSEAL_SLOG_NAME_MAX];
    vmseal_slog_info info;
    vmseal_slog_state st;
    if ((r = vmseal_slog_name(name, sizeof(name), base, highest)) < 0)
        return r;
    emit_ctx none = {NULL, NULL};
    r = slog_read_file(log_key, dirfd, name, &none, &info, &st);
    if (r < 0)
        return r;
    uint64_t first = info.first;
    emit_ctx e = {emit, ctx};
    uint64_t expect_offset = 0;
    for (uint64_t s = first;; s++) {
        if ((r = vmseal_slog_name(name, sizeof(name), base, s)) < 0)
            return r;
        r = slog_read_file(log_key, dirfd, name, &e, &info, &st);
        if (r == -ENOENT)
            return vmseal_fail(EPROTO, "segment %s is missing (the log keeps segments %" PRIu64
                                       " to %" PRIu64 ")", name, first, highest);
        if (r < 0)
            return r;
        if (info.seq != s)
            return vmseal_fail(EPROTO, "%s holds segment %" PRIu64 " (renamed or copied)", name,
                               info.seq);
        if (strcmp(info.uuid, canon) != 0)
            return vmseal_fail(EPROTO, "%s belongs to VM %s, not %s", name, info.uuid, canon);
        if (s > first && info.offset != expect_offset)
            return vmseal_fail(EPROTO, "%s starts at log byte %" PRIu64 " but the segment "
                                       "before it ends at %" PRIu64 " (a segment was cut or "
                                       "replaced)", name, info.offset, expect_offset);
        if (s == first)
            li.start = info.offset;
        if (!st.ended && (s < highest || !(flags & VMSEAL_SLOG_ALLOW_OPEN)))
            return vmseal_fail(EPROTO, "%s has no end record: it was cut short%s", name,
                               s < highest ? "" : " (or its writer stopped without closing it)");
        expect_offset = info.offset + st.bytes;
        li.segments++;
        if (s == highest) {
            li.last_open = !st.ended;
            li.total = expect_offset;
            break;
        }
    }
    li.first = first;
    li.last = highest;
    if (out)
        *out = li;
    return 0;
}
