/* Seed corpora of the keysafe, sealed and diskdesc fuzz targets.
 *
 *   fuzz_corpus --write      regenerate fuzz/corpus/{keysafe,sealed,diskdesc}/ (in VMSEAL_SRC)
 *   fuzz_corpus              (unit test) check the committed seeds still mean
 *                            what their names say: "valid-*" unwrap/unseal with
 *                            the fuzz test KEK, "bad-*" are refused.
 *
 * Seeds are made with the public test KEK of fuzz/fuzz_seal_keys.h, so the
 * fuzzers get past the authentication and reach the chunk reader.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vmseal/diskdesc.h>
#include <vmseal/keysafe.h>
#include <vmseal/sealed.h>

#include "fuzz_seal_keys.h"

static vmseal_secret *kek, *other_kek;
static char ks_dir[4096], se_dir[4096], dd_dir[4096];

static void die(const char *what)
{
    fprintf(stderr, "fuzz_corpus: %s: %s\n", what, vmseal_last_error());
    exit(1);
}

static void put(const char *dir, const char *name, const void *data, size_t len)
{
    char path[8192];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

typedef struct membuf {
    uint8_t *data;
    size_t len, cap, pos;
} membuf;

static ssize_t mb_read(void *ctx, void *buf, size_t len)
{
    membuf *m = ctx;
    size_t n = m->len - m->pos < len ? m->len - m->pos : len;
    if (n)
        memcpy(buf, m->data + m->pos, n);
    m->pos += n;
    return (ssize_t)n;
}

static int mb_write(void *ctx, const void *buf, size_t len)
{
    membuf *m = ctx;
    if (m->len + len > m->cap) {
        m->cap = (m->len + len) * 2;
        m->data = realloc(m->data, m->cap);
        if (!m->data)
            return -ENOMEM;
    }
    memcpy(m->data + m->len, buf, len);
    m->len += len;
    return 0;
}

static membuf seal_bytes(const vmseal_secret *k, size_t n, uint32_t cs)
{
    membuf in = {malloc(n + 1), n, n + 1, 0}, out = {0};
    for (size_t i = 0; i < n; i++)
        in.data[i] = (uint8_t)(i * 7 + 3);
    vmseal_stream io = {mb_read, &in, mb_write, &out};
    if (vmseal_seal(k, "local", "fuzz-kek", cs, &io) != 0)
        die("seal");
    free(in.data);
    return out;
}

static void write_keysafe_seeds(void)
{
    vmseal_secret *dek = NULL, *big = NULL;
    if (vmseal_secret_from("0123456789abcdef0123456789abcdef", 32, &dek) ||
        vmseal_secret_random(VMSEAL_KEYSAFE_PAYLOAD_MAX, &big))
        die("secret");
    char *l = NULL, buf[VMSEAL_KEYSAFE_LINE_MAX + 64];
    if (vmseal_keysafe_wrap(kek, "local", "kek-1", FUZZ_TEST_OBJECT_ID, dek, &l))
        die("wrap");
    put(ks_dir, "valid-basic", l, strlen(l));
    snprintf(buf, sizeof(buf), "%s\r\n", l);
    put(ks_dir, "valid-crlf", buf, strlen(buf));
    /* Same line under a key or for an object the fuzzer does not have. */
    free(l);
    if (vmseal_keysafe_wrap(other_kek, "local", "kek-1", FUZZ_TEST_OBJECT_ID, dek, &l))
        die("wrap");
    put(ks_dir, "bad-other-kek", l, strlen(l));
    free(l);
    if (vmseal_keysafe_wrap(kek, "local", "kek-1", "vm:other", dek, &l))
        die("wrap");
    put(ks_dir, "bad-other-object", l, strlen(l));
    free(l);
    if (vmseal_keysafe_wrap(kek, "kmip-prod.example", "a b:c%\xc3\xbc/=@~", FUZZ_TEST_OBJECT_ID,
                            dek, &l))
        die("wrap");
    put(ks_dir, "valid-escaped-id", l, strlen(l));
    snprintf(buf, sizeof(buf), "vmseal:keysafe:v2%s", strchr(l + 15, ':'));
    put(ks_dir, "bad-version-v2", buf, strlen(buf));
    free(l);
    char id[VMSEAL_KEYSAFE_KEK_ID_MAX + 1];
    for (size_t i = 0; i < VMSEAL_KEYSAFE_KEK_ID_MAX; i++)
        id[i] = (char)(i % 2 ? ':' : 'k');
    id[VMSEAL_KEYSAFE_KEK_ID_MAX] = '\0';
    if (vmseal_keysafe_wrap(kek, "p", id, FUZZ_TEST_OBJECT_ID, big, &l))
        die("wrap");
    put(ks_dir, "valid-longest", l, strlen(l));
    free(l);
    const char *bad[] = {"vmseal:keysafe:v1:local:kek-1:AAAA",
                         "keysafe = vmseal:keysafe:v1:local:k:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                         "vmseal:keysafe:v1:local:%4:AAAA", "vmseal:keysafe:v1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(buf, sizeof(buf), "bad-malformed-%zu", i);
        put(ks_dir, buf, bad[i], strlen(bad[i]));
    }
    vmseal_secret_free(dek);
    vmseal_secret_free(big);
}

static void write_sealed_seeds(void)
{
    const struct { const char *name; size_t n; uint32_t cs; } v[] = {
        {"valid-empty", 0, 512}, {"valid-1", 1, 512}, {"valid-one-chunk", 512, 512},
        {"valid-3-chunks", 1300, 512}, {"valid-default-chunk", 100, 0},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        membuf m = seal_bytes(kek, v[i].n, v[i].cs);
        put(se_dir, v[i].name, m.data, m.len);
        if (v[i].n == 1300) {
            put(se_dir, "bad-truncated", m.data, m.len - 600);
            m.data[m.len - 1] ^= 1;
            put(se_dir, "bad-bitflip", m.data, m.len);
        }
        free(m.data);
    }
    membuf m = seal_bytes(other_kek, 10, 512);
    put(se_dir, "bad-other-kek", m.data, m.len);
    free(m.data);
}

static void write_diskdesc_seeds(void)
{
    vmseal_secret *dek = NULL;
    char *l = NULL, buf[VMSEAL_KEYSAFE_LINE_MAX + 512];
    const char *uuid = "6f1c2a3e-1111-4222-8333-944455556666";
    if (vmseal_secret_random(32, &dek) ||
        vmseal_keysafe_wrap(kek, "local", "kek 1", "disk:6f1c2a3e-1111-4222-8333-944455556666",
                            dek, &l))
        die("wrap");
    snprintf(buf, sizeof(buf), "# vmseal disk descriptor\nversion = 1\nformat = luks1\n"
                               "uuid = %s\nkeysafe = %s\n", uuid, l);
    put(dd_dir, "valid-basic", buf, strlen(buf));
    snprintf(buf, sizeof(buf), "version=1\r\nformat=luks1\r\nuuid=%s\r\nstate = incomplete\r\n"
                               "x_note = made by hand\r\nkeysafe=%s", uuid, l);
    put(dd_dir, "valid-crlf-incomplete", buf, strlen(buf));
    snprintf(buf, sizeof(buf), "version = 1\nformat = luks1\nuuid = %s\nuuid = %s\nkeysafe = %s\n",
             uuid, uuid, l);
    put(dd_dir, "bad-duplicate", buf, strlen(buf));
    snprintf(buf, sizeof(buf), "version = 2\nformat = luks1\nuuid = %s\nkeysafe = %s\n", uuid, l);
    put(dd_dir, "bad-version", buf, strlen(buf));
    snprintf(buf, sizeof(buf), "version = 1\nformat = luks1\nuuid = %s\n", uuid);
    put(dd_dir, "bad-no-keysafe", buf, strlen(buf));
    free(l);
    vmseal_secret_free(dek);
}

static int check_seeds(void)
{
    int bad = 0, n = 0;
    const char *dirs[3] = {ks_dir, se_dir, dd_dir};
    for (int d = 0; d < 3; d++) {
        DIR *dir = opendir(dirs[d]);
        if (!dir) {
            perror(dirs[d]);
            return 1;
        }
        struct dirent *e;
        while ((e = readdir(dir))) {
            if (e->d_name[0] == '.')
                continue;
            char path[8192];
            snprintf(path, sizeof(path), "%s/%s", dirs[d], e->d_name);
            FILE *f = fopen(path, "rb");
            membuf m = {malloc(1 << 20), 0, 1 << 20, 0};
            m.len = fread(m.data, 1, m.cap - 1, f);
            fclose(f);
            m.data[m.len] = 0;
            int rc;
            if (d == 0) {
                vmseal_secret *p = NULL;
                rc = vmseal_keysafe_unwrap(kek, (char *)m.data, FUZZ_TEST_OBJECT_ID, &p);
                vmseal_secret_free(p);
            } else if (d == 2) {
                vmseal_diskdesc dd;
                rc = vmseal_diskdesc_parse((char *)m.data, m.len, &dd);
            } else {
                membuf out = {0};
                vmseal_stream io = {mb_read, &m, mb_write, &out};
                rc = vmseal_unseal(kek, &io, NULL);
                free(out.data);
            }
            int want_ok = strncmp(e->d_name, "valid-", 6) == 0;
            if ((rc == 0) != want_ok) {
                fprintf(stderr, "not ok - %s: rc %d (%s)\n", path, rc, vmseal_last_error());
                bad++;
            } else {
                printf("ok - %s\n", path);
            }
            n++;
            free(m.data);
        }
        closedir(dir);
    }
    if (n < 10) {
        fprintf(stderr, "corpus too small (%d seeds)\n", n);
        return 1;
    }
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    const char *src = getenv("VMSEAL_SRC");
    if (!src)
        src = ".";
    snprintf(ks_dir, sizeof(ks_dir), "%s/fuzz/corpus/keysafe", src);
    snprintf(se_dir, sizeof(se_dir), "%s/fuzz/corpus/sealed", src);
    snprintf(dd_dir, sizeof(dd_dir), "%s/fuzz/corpus/diskdesc", src);
    if (vmseal_secret_from(fuzz_test_kek, sizeof(fuzz_test_kek), &kek) ||
        vmseal_secret_random(32, &other_kek))
        die("secret");
    int rc = 0;
    if (argc > 1 && strcmp(argv[1], "--write") == 0) {
        mkdir(ks_dir, 0755);
        mkdir(se_dir, 0755);
        mkdir(dd_dir, 0755);
        write_keysafe_seeds();
        write_sealed_seeds();
        write_diskdesc_seeds();
    } else {
        rc = check_seeds();
    }
    vmseal_secret_free(kek);
    vmseal_secret_free(other_kek);
    return rc;
}
