/* Sealed files: STREAM-construction AES-256-GCM over fixed-size chunks
 * (include/vmseal/sealed.h, docs/formats.md). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

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
    int fd = *(int *)ctx;
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
