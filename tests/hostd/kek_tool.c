/* Test helper (not part of the daemon): what the manager does to hand a KEK
 * to a host, and what a test needs to look for keys in memory.
 *   kek_tool seal CUSTODY_KEY_B64 HOST KEK_ID PROVIDER KEK_B64
 *       -> base64 of the sealed KEK (lib/crypto/kek_delivery.c) for PUT /v1/keys
 *   kek_tool unwrap KEK_B64 OBJECT_ID KEYSAFE_LINE
 *       -> hex of the secret in a key safe (a disk secret, "disk:<LUKS UUID>")
 */
#include <stdio.h>
#include <string.h>

#include <vmseal/kekdelivery.h>
#include <vmseal/keysafe.h>

static int kek_from(const char *b64, vmseal_secret **kek)
{
    uint8_t raw[32];
    if (vmseal_kd_unb64(b64, raw, sizeof(raw)) < 0)
        return -1;
    return vmseal_secret_from(raw, sizeof(raw), kek) < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
    vmseal_secret *kek = NULL;
    if (argc == 7 && strcmp(argv[1], "seal") == 0) {
        uint8_t pub[VMSEAL_KD_PUB_LEN], blob[VMSEAL_KD_BLOB_LEN];
        char out[200];
        if (vmseal_kd_unb64(argv[2], pub, sizeof(pub)) < 0 || kek_from(argv[6], &kek) < 0 ||
            vmseal_kd_seal(pub, argv[3], argv[4], argv[5], kek, blob) < 0 ||
            vmseal_kd_b64(blob, sizeof(blob), out, sizeof(out)) < 0) {
            fprintf(stderr, "kek_tool seal: %s\n", vmseal_last_error());
            return 1;
        }
        vmseal_secret_free(kek);
        puts(out);
        return 0;
    }
    if (argc == 5 && strcmp(argv[1], "unwrap") == 0) {
        vmseal_secret *s = NULL;
        if (kek_from(argv[2], &kek) < 0 || vmseal_keysafe_unwrap(kek, argv[4], argv[3], &s) < 0) {
            fprintf(stderr, "kek_tool unwrap: %s\n", vmseal_last_error());
            return 1;
        }
        for (size_t i = 0; i < vmseal_secret_len(s); i++)
            printf("%02x", vmseal_secret_cdata(s)[i]);
        putchar('\n');
        vmseal_secret_free(s);
        vmseal_secret_free(kek);
        return 0;
    }
    fprintf(stderr, "usage: kek_tool seal CUSTODY_KEY_B64 HOST KEK_ID PROVIDER KEK_B64\n"
                    "       kek_tool unwrap KEK_B64 OBJECT_ID KEYSAFE_LINE\n");
    return 2;
}
