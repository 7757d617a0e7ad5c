/* libFuzzer target: the strict LUKS1 header parser that vets untrusted
 * image files before libcryptsetup sees them (vmseal_disk_probe and every
 * disk operation). Pure memory: no files are touched. Anything accepted
 * must satisfy the invariants the rest of the disk code relies on, and the
 * same bytes cut short must be refused. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <vmseal/disk.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vmseal_disk_info in;
    int rc = vmseal_luks1_header_parse(data, size, &in);
    if (rc != 0) {
        if (rc >= 0 || in.is_luks || vmseal_last_error()[0] == '\0')
            abort();                    /* refusals are negative and explained */
        return 0;
    }
    if (!in.is_luks || in.version != 1 || size < VMSEAL_LUKS1_HEADER_SIZE)
        abort();
    if (strnlen(in.cipher, sizeof(in.cipher)) >= sizeof(in.cipher) ||
        strnlen(in.cipher_mode, sizeof(in.cipher_mode)) >= sizeof(in.cipher_mode) ||
        strnlen(in.hash, sizeof(in.hash)) >= sizeof(in.hash) || strlen(in.uuid) != 36)
        abort();
    if (in.key_bits < 128 || in.key_bits > 512 || in.payload_offset_bytes == 0 ||
        in.payload_offset_bytes % 512 || in.mk_digest_iterations == 0 || in.payload_bytes != 0)
        abort();
    int active = 0;
    uint64_t area = ((uint64_t)in.key_bits / 8 * 4000 + 511) / 512 * 512;
    for (int i = 0; i < VMSEAL_LUKS1_NUM_KEYSLOTS; i++) {
        const uint8_t *ks = data + 208 + 48 * i;
        uint64_t km = (uint64_t)be32(ks + 40) * 512;
        if (km < VMSEAL_LUKS1_HEADER_SIZE || km + area > in.payload_offset_bytes)
            abort();                    /* key material inside the header area */
        if (in.slot_mask & (1u << i)) {
            active++;
            if (in.slot_iterations[i] == 0)
                abort();
        }
    }
    if (active != in.active_slots)
        abort();
    /* Any shorter buffer is truncated. */
    vmseal_disk_info cut;
    if (vmseal_luks1_header_parse(data, VMSEAL_LUKS1_HEADER_SIZE - 1, &cut) != -EPROTO || cut.is_luks)
        abort();
    return 0;
}
