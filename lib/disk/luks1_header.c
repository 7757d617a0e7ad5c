/* Strict LUKS1 header parser for untrusted bytes (no key needed).
 *
 * On-disk layout (LUKS1 On-Disk Format Specification 1.2.3), all integers
 * big-endian:
 *     0  magic[6]          "LUKS\xba\xbe"
 *     6  version    u16    1
 *     8  cipher_name[32]   e.g. "aes"
 *    40  cipher_mode[32]   e.g. "xts-plain64"
 *    72  hash_spec[32]     e.g. "sha256"
 *   104  payload_offset u32   sectors
 *   108  key_bytes  u32
 *   112  mk_digest[20]
 *   132  mk_digest_salt[32]
 *   164  mk_digest_iter u32
 *   168  uuid[40]
 *   208  8 x keyslot { active u32, iterations u32, salt[32],
 *                      key_material_offset u32 (sectors), stripes u32 }
 *   592  end
 * Every check below turns bad input into -EPROTO with a message; nothing
 * here trusts a length or offset before bounding it.
 *
 * Work bounds: opening a disk runs PBKDF2 once per enabled keyslot (its
 * iterations) plus the volume-key digest (its iterations) per slot tried,
 * so a header with 2^31 iterations would keep `disk verify` or a VM start
 * busy for hours. Counts above LUKS1_MAX_ITERATIONS are refused here, before
 * libcryptsetup (or QEMU) ever runs PBKDF2. Why 2^25 (33,554,432):
 * cryptsetup and qemu-img time the keyslot PBKDF2 to 2 s by default (the
 * digest to 1/8 s and 1/8 of that); the fastest PBKDF2-SHA256 we measured
 * (x86-64 with SHA extensions, `cryptsetup benchmark`) does 4.9 M
 * iterations/s for a 256-bit key, i.e. headers of ~10 M iterations. 2^25
 * leaves 3x headroom for faster CPUs or a longer --iter-time, and caps one
 * keyslot at ~7 s there (~35 s at 1 M/s). vmseal itself writes 1000.
 */
#include <errno.h>
#include <string.h>

#include <vmseal/disk.h>
#include <vmseal/diskdesc.h>

#define LUKS_MAGIC "LUKS\xba\xbe"
#define LUKS_MAGIC_LEN 6
#define LUKS_SLOT_ACTIVE 0x00AC71F3u
#define LUKS_SLOT_DISABLED 0x0000DEADu
#define LUKS_STRIPES 4000u
#define SECTOR 512u
#define LUKS1_MAX_ITERATIONS (1u << 25)
/* The header area (header + key material before the payload) is 2 MiB with
 * cryptsetup's and qemu-img's defaults; --align-payload may make it larger,
 * but not beyond 1 GiB. */
#define LUKS1_MAX_PAYLOAD_SECTORS (1u << 21)

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A NUL-terminated name of [A-Za-z0-9_.:-] characters inside its field. */
static int name_field(const uint8_t *p, size_t field, char *out, const char *what)
{
    size_t n = 0;
    while (n < field && p[n])
        n++;
    if (n == field)
        return vmseal_fail(EPROTO, "LUKS1 header: %s is not NUL-terminated", what);
    if (n == 0)
        return vmseal_fail(EPROTO, "LUKS1 header: %s is empty", what);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        int okc = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.' || c == ':';
        if (!okc)
            return vmseal_fail(EPROTO, "LUKS1 header: %s has an invalid character", what);
    }
    /* Whatever follows the terminator inside the field is ignored, as
     * cryptsetup does; out receives only the name. */
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

/* 8-4-4-4-12 hex digits. */
static int uuid_field(const uint8_t *p, char *out)
{
    size_t n = 0;
    while (n < 40 && p[n])
        n++;
    if (n != 36)
        return vmseal_fail(EPROTO, "LUKS1 header: UUID is not a 36-character UUID");
    char uuid[37];
    memcpy(uuid, p, 36);
    uuid[36] = '\0';
    if (!vmseal_uuid_valid(uuid))
        return vmseal_fail(EPROTO, "LUKS1 header: malformed UUID");
    memcpy(out, uuid, sizeof(uuid));
    return 0;
}

int vmseal_luks1_header_parse(const uint8_t *buf, size_t len, vmseal_disk_info *info)
{
    memset(info, 0, sizeof(*info));
    if (!buf || len < VMSEAL_LUKS1_HEADER_SIZE)
        return vmseal_fail(EPROTO, "LUKS1 header: truncated (%zu of %u bytes)", buf ? len : 0,
                           VMSEAL_LUKS1_HEADER_SIZE);
    if (memcmp(buf, LUKS_MAGIC, LUKS_MAGIC_LEN) != 0)
        return vmseal_fail(EPROTO, "not a LUKS image (bad magic)");
    unsigned version = (unsigned)buf[6] << 8 | buf[7];
    if (version != 1)
        return vmseal_fail(ENOTSUP, "LUKS version %u is not supported (only LUKS1)", version);

    vmseal_disk_info in = {.version = 1};
    int rc;
    if ((rc = name_field(buf + 8, 32, in.cipher, "cipher name")) < 0 ||
        (rc = name_field(buf + 40, 32, in.cipher_mode, "cipher mode")) < 0 ||
        (rc = name_field(buf + 72, 32, in.hash, "hash spec")) < 0 ||
        (rc = uuid_field(buf + 168, in.uuid)) < 0)
        return rc;

    uint32_t payload = be32(buf + 104);
    uint32_t key_bytes = be32(buf + 108);
    in.mk_digest_iterations = be32(buf + 164);
    memcpy(in.mk_digest, buf + 112, sizeof(in.mk_digest));
    if (payload == 0)
        return vmseal_fail(ENOTSUP, "LUKS1 header: payload offset 0 (detached header) is not supported");
    if (payload > LUKS1_MAX_PAYLOAD_SECTORS)
        return vmseal_fail(EPROTO, "LUKS1 header: payload offset %u sectors exceeds the bound "
                           "of %u sectors (1 GiB)", payload, LUKS1_MAX_PAYLOAD_SECTORS);
    if (key_bytes < 16 || key_bytes > 64 || key_bytes % 8)
        return vmseal_fail(EPROTO, "LUKS1 header: invalid key size %u bytes (key bytes must be "
                           "16..64, a multiple of 8)", key_bytes);
    if (in.mk_digest_iterations == 0)
        return vmseal_fail(EPROTO, "LUKS1 header: zero volume-key digest iterations");
    if (in.mk_digest_iterations > LUKS1_MAX_ITERATIONS)
        return vmseal_fail(EPROTO, "LUKS1 header: volume-key digest iterations %u exceed the "
                           "bound of %u", in.mk_digest_iterations, LUKS1_MAX_ITERATIONS);
    in.key_bits = key_bytes * 8;
    in.payload_offset_bytes = (uint64_t)payload * SECTOR;

    /* Key material: key_bytes * 4000 stripes, rounded up to sectors. */
    uint64_t area_sectors = ((uint64_t)key_bytes * LUKS_STRIPES + SECTOR - 1) / SECTOR;
    uint64_t first_allowed = (VMSEAL_LUKS1_HEADER_SIZE + SECTOR - 1) / SECTOR;
    uint64_t start[VMSEAL_LUKS1_NUM_KEYSLOTS];
    for (int i = 0; i < VMSEAL_LUKS1_NUM_KEYSLOTS; i++) {
        const uint8_t *ks = buf + 208 + 48 * i;
        uint32_t active = be32(ks);
        uint32_t iters = be32(ks + 4);
        uint32_t km_off = be32(ks + 40);
        uint32_t stripes = be32(ks + 44);
        if (active == LUKS_SLOT_ACTIVE) {
            if (iters == 0)
                return vmseal_fail(EPROTO, "LUKS1 header: keyslot %d has zero iterations", i);
            if (iters > LUKS1_MAX_ITERATIONS)
                return vmseal_fail(EPROTO, "LUKS1 header: keyslot %d iterations %u exceed the "
                                   "bound of %u", i, iters, LUKS1_MAX_ITERATIONS);
            in.slot_mask |= 1u << i;
            in.active_slots++;
            in.slot_iterations[i] = iters;
        } else if (active != LUKS_SLOT_DISABLED) {
            return vmseal_fail(EPROTO, "LUKS1 header: keyslot %d has invalid state 0x%08x", i, active);
        }
        if (stripes != LUKS_STRIPES)
            return vmseal_fail(EPROTO, "LUKS1 header: keyslot %d has %u stripes (expected %u)", i,
                               stripes, LUKS_STRIPES);
        if (km_off < first_allowed)
            return vmseal_fail(EPROTO, "LUKS1 header: keyslot %d key material overlaps the header "
                               "(key-material offset %u sectors, at least %llu)", i, km_off,
                               (unsigned long long)first_allowed);
        if ((uint64_t)km_off + area_sectors > payload)
            return vmseal_fail(EPROTO, "LUKS1 header: keyslot %d key material runs into the payload "
                               "(key-material offset %u + %llu sectors, payload offset %u)", i,
                               km_off, (unsigned long long)area_sectors, payload);
        start[i] = km_off;
        for (int j = 0; j < i; j++) {
            if (start[i] < start[j] + area_sectors && start[j] < start[i] + area_sectors)
                return vmseal_fail(EPROTO, "LUKS1 header: keyslots %d and %d overlap", j, i);
        }
    }
    in.is_luks = 1;
    *info = in;
    return 0;
}
