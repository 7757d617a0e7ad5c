/* vm.conf schema: the keys of a VM's configuration, read into a typed
 * record with every value checked once, and written back
 * (include/vmseal/vmrecord.h, docs/formats.md "VM configuration"). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <vmseal/diskdesc.h>
#include <vmseal/keysafe.h>
#include <vmseal/vmrecord.h>

#include "vmrecord_nic.h"
#include "vmrecord_snap.h"

/* ------------------------------------------------------------ the keys */

/* Top-level keys, in the order a new file gets them (the order vmseal-hostd
 * has always written them in); the disks' keys come after K_DISKS. */
enum top_key {
    K_VERSION, K_NAME, K_UUID, K_CPUS, K_MEMORY, K_FIRMWARE, K_POLICY, K_KERNEL, K_INITRD,
    K_APPEND, K_VM_KEYSAFE, K_NVRAM_FILE, K_DISKS,
    K_VM_NEXT_KEYSAFE, K_NVRAM_NEXT_FILE, K_NVRAM_OLD_FILE, K_NVRAM_REKEYED, K_OP, K_OP_KEK,
    K_STATE_FILE, K_VM_DISK_PATH,
    K_TPM, K_SECURE_BOOT,
    K_CDROM, K_BOOT,
    K_TOP_COUNT
};

static const char *const top_names[K_TOP_COUNT] = {
    [K_VERSION] = "config.version",
    [K_NAME] = "name",
    [K_UUID] = "uuid",
    [K_CPUS] = "cpus",
    [K_MEMORY] = "memory",
    [K_FIRMWARE] = "firmware",
    [K_POLICY] = "policy",
    [K_KERNEL] = "kernel",
    [K_INITRD] = "initrd",
    [K_APPEND] = "append",
    [K_VM_KEYSAFE] = "vm.keysafe",
    [K_NVRAM_FILE] = "nvram.file",
    [K_DISKS] = "disks",
    [K_VM_NEXT_KEYSAFE] = "vm.next.keysafe",
    [K_NVRAM_NEXT_FILE] = "nvram.next.file",
    [K_NVRAM_OLD_FILE] = "nvram.old.file",
    [K_NVRAM_REKEYED] = "nvram.rekeyed",
    [K_OP] = "op",
    [K_OP_KEK] = "op.kek",
    [K_STATE_FILE] = "state.file",
    [K_VM_DISK_PATH] = "vm.disk_path",
    [K_TPM] = "tpm",
    [K_SECURE_BOOT] = "secure_boot",
    [K_CDROM] = "cdrom",
    [K_BOOT] = "boot",
};

/* Keys every file has. */
static const enum top_key required[] = {K_VERSION, K_NAME,     K_UUID,   K_CPUS,
                                        K_MEMORY,  K_FIRMWARE, K_POLICY, K_DISKS};

/* A disk's keys: "disk<N>.<field>". */
enum disk_field {
    D_FILE, D_SIZE, D_LUKS_UUID, D_KEYSAFE, D_NEXT_FILE, D_NEXT_LUKS_UUID, D_NEXT_KEYSAFE,
    D_OLD_FILE, D_REKEYED, D_FROM, D_DISK_PATH, D_COUNT
};

static const char *const disk_fields[D_COUNT] = {
    [D_FILE] = "file",
    [D_SIZE] = "size",
    [D_LUKS_UUID] = "luks.uuid",
    [D_KEYSAFE] = "keysafe",
    [D_NEXT_FILE] = "next.file",
    [D_NEXT_LUKS_UUID] = "next.luks.uuid",
    [D_NEXT_KEYSAFE] = "next.keysafe",
    [D_OLD_FILE] = "old.file",
    [D_REKEYED] = "rekeyed",
    [D_FROM] = "from",
    [D_DISK_PATH] = "disk_path",
};

/* First components that belong to vmseal; "disk..." is handled apart. */
static const char *const reserved_first[] = {"config", "name",   "uuid", "cpus",   "memory",
                                             "firmware", "policy", "kernel", "initrd", "append",
                                             "vm",     "nvram",  "op",     "state",
                                             "tpm",    "secure_boot", "cdrom", "boot"};

static const char *const op_names[] = {
    [VMSEAL_VMREC_OP_NONE] = "",
    [VMSEAL_VMREC_OP_CREATE] = "create",
    [VMSEAL_VMREC_OP_ENCRYPT] = "encrypt",
    [VMSEAL_VMREC_OP_DECRYPT] = "decrypt",
    [VMSEAL_VMREC_OP_RECRYPT_DEEP] = "recrypt-deep",
};
#define OP_COUNT (sizeof(op_names) / sizeof(op_names[0]))

const char *vmseal_vmrec_op_name(vmseal_vmrec_op op)
{
    return (size_t)op < OP_COUNT ? op_names[op] : "";
}

static void disk_key(char *buf, size_t len, size_t idx, enum disk_field f)
{
    snprintf(buf, len, "disk%zu.%s", idx, disk_fields[f]);
}

int vmseal_vmrec_keysafe_key(long idx, int next, char *buf, size_t len)
{
    int n;
    if (idx == -1)
        n = snprintf(buf, len, "%s", top_names[next ? K_VM_NEXT_KEYSAFE : K_VM_KEYSAFE]);
    else if (idx >= 0 && idx < VMSEAL_VMREC_MAX_DISKS)
        n = snprintf(buf, len, "disk%ld.%s", idx, disk_fields[next ? D_NEXT_KEYSAFE : D_KEYSAFE]);
    else
        return vmseal_fail(EINVAL, "no image %ld", idx);
    return n < 0 || (size_t)n >= len ? vmseal_fail(ENOSPC, "key name buffer too small") : 0;
}

int vmseal_vmrec_image_label(long idx, char *buf, size_t len)
{
    int n;
    if (idx == -1)
        n = snprintf(buf, len, "nvram");
    else if (idx >= 0 && idx < VMSEAL_VMREC_MAX_DISKS)
        n = snprintf(buf, len, "disk%ld", idx);
    else
        return vmseal_fail(EINVAL, "no image %ld", idx);
    return n < 0 || (size_t)n >= len ? vmseal_fail(ENOSPC, "label buffer too small") : 0;
}

int vmseal_vmrec_image_file_name(long idx, int encrypted, char *buf, size_t len)
{
    int n;
    if (idx == -1)
        n = snprintf(buf, len, "nvram.%s", encrypted ? "luks" : "fd");
    else if (idx >= 0 && idx < VMSEAL_VMREC_MAX_DISKS)
        n = snprintf(buf, len, "disk%ld.%s", idx, encrypted ? "luks" : "img");
    else
        return vmseal_fail(EINVAL, "no image %ld", idx);
    return n < 0 || (size_t)n >= len ? vmseal_fail(ENOSPC, "file name buffer too small") : 0;
}

/* --------------------------------------------------------------- syntax */

int vmseal_vmrec_boot_order_valid(const char *order)
{
    static const char *const devs[] = {"disk", "cdrom", "net"};
    size_t n = order ? strlen(order) : 0;
    if (n == 0 || n >= VMSEAL_VMREC_BOOT_MAX)
        return 0;
    unsigned seen = 0;
    const char *p = order;
    for (;;) {
        size_t len = strcspn(p, ",");
        size_t i;
        for (i = 0; i < 3; i++)
            if (len == strlen(devs[i]) && strncmp(p, devs[i], len) == 0)
                break;
        if (i == 3 || (seen & (1u << i)))
            return 0;
        seen |= 1u << i;
        if (!p[len])
            return 1;
        p += len + 1;
    }
}

int vmseal_vmrec_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > VMSEAL_VMREC_NAME_MAX || name[0] == '.' || name[0] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int vmseal_vmrec_uuid_valid(const char *s)
{
    if (!s || !vmseal_uuid_valid(s))
        return 0;
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'F')
            return 0;
    return 1;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

int vmseal_vmrec_file_name_valid(const char *f)
{
    return vmseal_vmrec_name_valid(f) &&
           (ends_with(f, ".luks") || ends_with(f, ".img") || ends_with(f, ".fd"));
}

int vmseal_vmrec_state_file_valid(const char *f, int sealed)
{
    return vmseal_vmrec_name_valid(f) &&
           ends_with(f, sealed ? VMSEAL_VMREC_STATE_SEALED_EXT : VMSEAL_VMREC_STATE_PLAIN_EXT);
}

int vmseal_vmrec_text_valid(const char *text)
{
    return vmseal_vmconf_value_valid(text);
}

int vmseal_vmrec_is_vmconf(const vmseal_vmconf *c)
{
    return c && vmseal_vmconf_get(c, top_names[K_VERSION]) != NULL;
}

/* ----------------------------------------------------------- messages */

/* "vm.conf line N: KEY: what" (without the line for a key not read from
 * a file). */
static int fail_key(const vmseal_vmconf *src, const char *key, int err, const char *fmt, ...)
    VMSEAL_PRINTF(4, 5);
static int fail_key(const vmseal_vmconf *src, const char *key, int err, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    unsigned line = src ? vmseal_vmconf_line_of(src, key) : 0;
    if (line)
        return vmseal_fail(err, "vm.conf line %u: %s: %s", line, key, what);
    return vmseal_fail(err, "vm.conf: %s: %s", key, what);
}

/* ------------------------------------------------------------- record */

vmseal_vmrec *vmseal_vmrec_new(void)
{
    return calloc(1, sizeof(vmseal_vmrec));
}

static void image_clear(vmseal_vmrec_image *im)
{
    free(im->keysafe);
    free(im->next_keysafe);
    memset(im, 0, sizeof(*im));
}

void vmseal_vmrec_free(vmseal_vmrec *r)
{
    if (!r)
        return;
    free(r->kernel);
    free(r->initrd);
    free(r->append);
    free(r->vm_keysafe);
    free(r->vm_next_keysafe);
    for (size_t i = 0; i < VMSEAL_VMREC_MAX_DISKS; i++)
        image_clear(&r->disks[i]);
    image_clear(&r->nvram);
    vmrec_snap_free(r);
    vmseal_vmconf_free(r->source);
    free(r);
}

int vmseal_vmrec_set_str(char **field, const char *value)
{
    char *v = NULL;
    if (value && !(v = strdup(value)))
        return vmseal_fail(ENOMEM, "out of memory");
    free(*field);
    *field = v;
    return 0;
}

static int dup_str(char **dst, const char *src)
{
    *dst = NULL;
    return src ? vmseal_vmrec_set_str(dst, src) : 0;
}

vmseal_vmrec *vmseal_vmrec_dup(const vmseal_vmrec *r)
{
    vmseal_vmrec *d = vmseal_vmrec_new();
    if (!d)
        return NULL;
    *d = *r;
    /* the copied pointers are r's: replace each by its own copy */
    char **strs[] = {&d->kernel, &d->initrd, &d->append, &d->vm_keysafe, &d->vm_next_keysafe};
    const char *from[] = {r->kernel, r->initrd, r->append, r->vm_keysafe, r->vm_next_keysafe};
    int ok = 1;
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        ok &= dup_str(strs[i], from[i]) == 0;
    for (long i = -1; i < VMSEAL_VMREC_MAX_DISKS; i++) {
        vmseal_vmrec_image *im = vmseal_vmrec_image_at(d, i);
        const vmseal_vmrec_image *src = vmseal_vmrec_image_at_const(r, i);
        ok &= dup_str(&im->keysafe, src->keysafe) == 0;
        ok &= dup_str(&im->next_keysafe, src->next_keysafe) == 0;
    }
    ok &= vmrec_snap_dup(d, r) == 0;
    d->source = NULL;
    if (r->source && !(d->source = vmseal_vmconf_dup(r->source)))
        ok = 0;
    if (!ok) {
        vmseal_vmrec_free(d);
        return NULL;
    }
    return d;
}

vmseal_vmrec_image *vmseal_vmrec_image_at(vmseal_vmrec *r, long idx)
{
    if (idx == -1)
        return &r->nvram;
    return idx >= 0 && idx < VMSEAL_VMREC_MAX_DISKS ? &r->disks[idx] : NULL;
}

const vmseal_vmrec_image *vmseal_vmrec_image_at_const(const vmseal_vmrec *r, long idx)
{
    return vmseal_vmrec_image_at((vmseal_vmrec *)r, idx);
}

int vmseal_vmrec_keysafe_object(const vmseal_vmrec *r, long idx, int next, char *buf, size_t len)
{
    if (idx == -1)
        return vmseal_keysafe_object_id("vm", r->uuid, buf, len);
    const vmseal_vmrec_image *im = vmseal_vmrec_image_at_const(r, idx);
    if (!im)
        return vmseal_fail(EINVAL, "no image %ld", idx);
    return vmseal_keysafe_object_id("disk", next ? im->next_luks_uuid : im->luks_uuid, buf, len);
}

size_t vmseal_vmrec_keysafes(const vmseal_vmrec *r,
                             vmseal_vmrec_keysafe_ref out[VMSEAL_VMREC_KEYSAFES_MAX])
{
    size_t n = 0;
    for (long i = -1; i < (long)r->ndisks && i < VMSEAL_VMREC_MAX_DISKS; i++) {
        for (int next = 0; next < 2; next++) {
            const char *line;
            if (i < 0)
                line = next ? r->vm_next_keysafe : r->vm_keysafe;
            else
                line = next ? r->disks[i].next_keysafe : r->disks[i].keysafe;
            if (!line)
                continue;
            vmseal_vmrec_keysafe_ref *k = &out[n++];
            (void)vmseal_vmrec_keysafe_key(i, next, k->key, sizeof(k->key));
            k->line = line;
            k->idx = i;
            k->next = next;
        }
    }
    return n;
}

/* ------------------------------------------------------------- checks */

/* Decimal, no sign, no leading zero (one spelling per number). */
static int parse_number(const char *v, uint64_t *out)
{
    size_t n = strlen(v);
    if (n == 0 || n > 20 || (n > 1 && v[0] == '0'))
        return -1;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        unsigned d = (unsigned)(v[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    *out = x;
    return 0;
}

static int check_disk_size(uint64_t v)
{
    return v >= VMSEAL_VMREC_DISK_SIZE_MIN && v <= VMSEAL_VMREC_DISK_SIZE_MAX &&
           v % VMSEAL_VMREC_DISK_SIZE_MIN == 0;
}

static int check_keysafe(const vmseal_vmconf *src, const char *key, const char *line)
{
    vmseal_keysafe_info ki;
    if (vmseal_keysafe_parse(line, &ki) < 0)
        return fail_key(src, key, EPROTO, "not a key safe: %s", vmseal_last_error());
    return 0;
}

static int check_file(const vmseal_vmconf *src, const char *key, const char *f)
{
    if (!vmseal_vmrec_file_name_valid(f))
        return fail_key(src, key, EPROTO,
                        "an image is a file name in the VM's folder: 1..%d of [A-Za-z0-9._-], "
                        "not starting with '.' or '-', ending in .luks, .img or .fd",
                        VMSEAL_VMREC_FILE_MAX);
    return 0;
}

static int op_converts(vmseal_vmrec_op op)
{
    return op == VMSEAL_VMREC_OP_ENCRYPT || op == VMSEAL_VMREC_OP_DECRYPT;
}

/* One disk (idx >= 0) or the NVRAM (idx -1) in use. */
static int check_image(const vmseal_vmrec *r, const vmseal_vmconf *src, long idx)
{
    const vmseal_vmrec_image *im = vmseal_vmrec_image_at_const(r, idx);
    char k[VMSEAL_VMREC_KEY_MAX], k2[VMSEAL_VMREC_KEY_MAX];
    int rc;
#define KEY(buf, field, nv) (idx >= 0 ? (disk_key(buf, sizeof(buf), (size_t)idx, field), buf) \
                                      : top_names[nv])
    const char *kf = KEY(k, D_FILE, K_NVRAM_FILE);
    if (!im->file[0])
        return fail_key(src, kf, EPROTO, "missing");
    if ((rc = check_file(src, kf, im->file)) < 0)
        return rc;
    if (im->next_file[0]) {
        const char *kn = KEY(k, D_NEXT_FILE, K_NVRAM_NEXT_FILE);
        if ((rc = check_file(src, kn, im->next_file)) < 0)
            return rc;
        if (!op_converts(r->op))
            return fail_key(src, kn, EPROTO, "only while an encrypt or decrypt is unfinished "
                            "(op is \"%s\")", vmseal_vmrec_op_name(r->op));
    }
    if (im->old_file[0]) {
        const char *ko = KEY(k, D_OLD_FILE, K_NVRAM_OLD_FILE);
        if ((rc = check_file(src, ko, im->old_file)) < 0)
            return rc;
    }
    if (im->rekeyed && r->op != VMSEAL_VMREC_OP_RECRYPT_DEEP)
        return fail_key(src, KEY(k, D_REKEYED, K_NVRAM_REKEYED), EPROTO,
                        "only while a deep recrypt is unfinished");
    if (im->from[0] && idx >= 0) {
        disk_key(k2, sizeof(k2), (size_t)idx, D_FROM);
        if (r->op != VMSEAL_VMREC_OP_CREATE)
            return fail_key(src, k2, EPROTO, "only while a create (or a disk add) is unfinished");
        if (!vmseal_vmrec_text_valid(im->from))
            return fail_key(src, k2, EPROTO, "printable text");
    }
    if (idx < 0) {
        /* the NVRAM opens with the VM's secret: no key safe, UUID or size */
        if (im->size || im->luks_uuid[0] || im->keysafe || im->next_luks_uuid[0] ||
            im->next_keysafe)
            return vmseal_fail(EPROTO, "vm.conf: the NVRAM has no size, LUKS UUID or key safe "
                               "of its own");
        return 0;
    }
    disk_key(k, sizeof(k), (size_t)idx, D_SIZE);
    if (!im->size)
        return fail_key(src, k, EPROTO, "missing");
    if (!check_disk_size(im->size))
        return fail_key(src, k, EPROTO, "bytes, a whole number of MiB from 1 MiB to 1 TiB");
    disk_key(k, sizeof(k), (size_t)idx, D_LUKS_UUID);
    disk_key(k2, sizeof(k2), (size_t)idx, D_KEYSAFE);
    if (im->luks_uuid[0] && !vmseal_uuid_valid(im->luks_uuid))
        return fail_key(src, k, EPROTO, "not a UUID");
    if (!im->luks_uuid[0] != !im->keysafe)
        return fail_key(src, im->keysafe ? k2 : k, EPROTO, "an encrypted disk has both %s and %s",
                        k, k2);
    if (im->keysafe && (rc = check_keysafe(src, k2, im->keysafe)) < 0)
        return rc;
    disk_key(k, sizeof(k), (size_t)idx, D_NEXT_LUKS_UUID);
    disk_key(k2, sizeof(k2), (size_t)idx, D_NEXT_KEYSAFE);
    if (im->next_luks_uuid[0] && !vmseal_uuid_valid(im->next_luks_uuid))
        return fail_key(src, k, EPROTO, "not a UUID");
    if (!im->next_luks_uuid[0] != !im->next_keysafe)
        return fail_key(src, im->next_keysafe ? k2 : k, EPROTO,
                        "a new encrypted image has both %s and %s", k, k2);
    if (im->next_keysafe && (rc = check_keysafe(src, k2, im->next_keysafe)) < 0)
        return rc;
    if (im->next_keysafe && !im->next_file[0])
        return fail_key(src, k2, EPROTO, "without disk%ld.next.file", idx);
    return 0;
#undef KEY
}

/* A disk slot past `disks` or the NVRAM of a BIOS VM: nothing may be set. */
static int check_unused(const vmseal_vmrec *r, const vmseal_vmconf *src, long idx)
{
    const vmseal_vmrec_image *im = vmseal_vmrec_image_at_const(r, idx);
    if (!im->file[0] && !im->next_file[0] && !im->old_file[0] && !im->rekeyed && !im->size &&
        !im->from[0] && !im->luks_uuid[0] && !im->keysafe && !im->next_luks_uuid[0] &&
        !im->next_keysafe && !im->disk_path[0])
        return 0;
    if (idx < 0) {
        const enum top_key nk[] = {K_NVRAM_FILE, K_NVRAM_NEXT_FILE, K_NVRAM_OLD_FILE,
                                   K_NVRAM_REKEYED};
        const char *k = top_names[K_NVRAM_FILE];
        for (size_t i = 0; src && i < sizeof(nk) / sizeof(nk[0]); i++)
            if (vmseal_vmconf_line_of(src, top_names[nk[i]])) {
                k = top_names[nk[i]];
                break;
            }
        return fail_key(src, k, EPROTO, "a BIOS VM has no NVRAM");
    }
    /* name the first key that is there */
    char k[VMSEAL_VMREC_KEY_MAX];
    disk_key(k, sizeof(k), (size_t)idx, D_FILE);
    if (src)
        for (int f = 0; f < D_COUNT; f++) {
            disk_key(k, sizeof(k), (size_t)idx, (enum disk_field)f);
            if (vmseal_vmconf_line_of(src, k))
                break;
        }
    return fail_key(src, k, EPROTO, "there are only %zu disks", r->ndisks);
}

/* Every image file name and every LUKS UUID appears once. */
static int check_distinct(const vmseal_vmrec *r, const vmseal_vmconf *src)
{
    const char *files[3 * (VMSEAL_VMREC_MAX_DISKS + 1)], *fkeys[3 * (VMSEAL_VMREC_MAX_DISKS + 1)];
    char keybuf[3 * (VMSEAL_VMREC_MAX_DISKS + 1)][VMSEAL_VMREC_KEY_MAX];
    const char *uuids[2 * VMSEAL_VMREC_MAX_DISKS];
    char ukeys[2 * VMSEAL_VMREC_MAX_DISKS][VMSEAL_VMREC_KEY_MAX];
    size_t nf = 0, nu = 0;
    for (long i = -1; i < (long)r->ndisks; i++) {
        const vmseal_vmrec_image *im = vmseal_vmrec_image_at_const(r, i);
        const char *names[3] = {im->file, im->next_file, im->old_file};
        const enum disk_field df[3] = {D_FILE, D_NEXT_FILE, D_OLD_FILE};
        const enum top_key nk[3] = {K_NVRAM_FILE, K_NVRAM_NEXT_FILE, K_NVRAM_OLD_FILE};
        for (int j = 0; j < 3; j++) {
            if (!names[j][0])
                continue;
            if (i >= 0)
                disk_key(keybuf[nf], sizeof(keybuf[nf]), (size_t)i, df[j]);
            else
                snprintf(keybuf[nf], sizeof(keybuf[nf]), "%s", top_names[nk[j]]);
            fkeys[nf] = keybuf[nf];
            files[nf++] = names[j];
        }
        if (i < 0)
            continue;
        if (im->luks_uuid[0]) {
            disk_key(ukeys[nu], sizeof(ukeys[nu]), (size_t)i, D_LUKS_UUID);
            uuids[nu++] = im->luks_uuid;
        }
        if (im->next_luks_uuid[0]) {
            disk_key(ukeys[nu], sizeof(ukeys[nu]), (size_t)i, D_NEXT_LUKS_UUID);
            uuids[nu++] = im->next_luks_uuid;
        }
    }
    for (size_t a = 0; a < nf; a++)
        for (size_t b = a + 1; b < nf; b++)
            if (strcmp(files[a], files[b]) == 0)
                return fail_key(src, fkeys[b], EPROTO, "%s is already %s", files[b], fkeys[a]);
    for (size_t a = 0; a < nu; a++)
        for (size_t b = a + 1; b < nu; b++)
            if (strcasecmp(uuids[a], uuids[b]) == 0)
                return fail_key(src, ukeys[b], EPROTO, "the same LUKS UUID as %s", ukeys[a]);
    return 0;
}

static int check_record(const vmseal_vmrec *r, const vmseal_vmconf *src)
{
    int rc;
    if (!vmseal_vmrec_name_valid(r->name))
        return fail_key(src, top_names[K_NAME], EPROTO,
                        "1..%d of [A-Za-z0-9._-], not starting with '.' or '-'",
                        VMSEAL_VMREC_NAME_MAX);
    if (!vmseal_vmrec_uuid_valid(r->uuid))
        return fail_key(src, top_names[K_UUID], EPROTO, "not a lower-case RFC 4122 UUID");
    if (r->cpus < 1 || r->cpus > VMSEAL_VMREC_CPUS_MAX)
        return fail_key(src, top_names[K_CPUS], EPROTO, "1..%d", VMSEAL_VMREC_CPUS_MAX);
    if (r->memory_mb < VMSEAL_VMREC_MEMORY_MIN || r->memory_mb > VMSEAL_VMREC_MEMORY_MAX)
        return fail_key(src, top_names[K_MEMORY], EPROTO, "MiB, %d..%d", VMSEAL_VMREC_MEMORY_MIN,
                        VMSEAL_VMREC_MEMORY_MAX);
    if (r->firmware != VMSEAL_FIRMWARE_BIOS && r->firmware != VMSEAL_FIRMWARE_UEFI)
        return fail_key(src, top_names[K_FIRMWARE], EPROTO, "bios or uefi");
    if (r->policy != VMSEAL_POLICY_NONE && r->policy != VMSEAL_POLICY_ENCRYPTED)
        return fail_key(src, top_names[K_POLICY], EPROTO, "none or encrypted");
    if ((size_t)r->op >= OP_COUNT)
        return fail_key(src, top_names[K_OP], EPROTO, "create, encrypt, decrypt or recrypt-deep");
    if (r->disk_path[0] && strcmp(r->disk_path, "nbd") != 0 &&
        strcmp(r->disk_path, "qemu-luks") != 0)
        return fail_key(src, top_names[K_VM_DISK_PATH], EPROTO, "nbd or qemu-luks");
    const char *texts[] = {r->kernel, r->initrd, r->append};
    const enum top_key tk[] = {K_KERNEL, K_INITRD, K_APPEND};
    for (size_t i = 0; i < 3; i++)
        if (texts[i] && !vmseal_vmrec_text_valid(texts[i]))
            return fail_key(src, top_names[tk[i]], EPROTO, "printable text of at most %d bytes",
                            VMSEAL_VMCONF_VALUE_MAX);
    if (r->ndisks > VMSEAL_VMREC_MAX_DISKS)
        return fail_key(src, top_names[K_DISKS], EPROTO, "0..%d", VMSEAL_VMREC_MAX_DISKS);

    /* the per-VM secret */
    if (r->vm_keysafe && (rc = check_keysafe(src, top_names[K_VM_KEYSAFE], r->vm_keysafe)) < 0)
        return rc;
    if ((r->policy == VMSEAL_POLICY_ENCRYPTED) != (r->vm_keysafe != NULL))
        return fail_key(src, top_names[r->vm_keysafe ? K_VM_KEYSAFE : K_POLICY], EPROTO,
                        "an encrypted VM (policy encrypted) has vm.keysafe, a VM without "
                        "encryption has none");
    if (r->vm_next_keysafe) {
        if ((rc = check_keysafe(src, top_names[K_VM_NEXT_KEYSAFE], r->vm_next_keysafe)) < 0)
            return rc;
        if (r->op != VMSEAL_VMREC_OP_ENCRYPT)
            return fail_key(src, top_names[K_VM_NEXT_KEYSAFE], EPROTO,
                            "only while an encrypt is unfinished");
    }

    /* images */
    for (long i = 0; i < VMSEAL_VMREC_MAX_DISKS; i++)
        if ((rc = (size_t)i < r->ndisks ? check_image(r, src, i) : check_unused(r, src, i)) < 0)
            return rc;
    if (r->firmware == VMSEAL_FIRMWARE_UEFI) {
        if (!r->nvram.file[0])
            return fail_key(src, top_names[K_NVRAM_FILE], EPROTO, "missing (a UEFI VM has one)");
        if ((rc = check_image(r, src, -1)) < 0)
            return rc;
    } else if ((rc = check_unused(r, src, -1)) < 0) {
        return rc;
    }
    if ((rc = check_distinct(r, src)) < 0)
        return rc;
    if ((rc = vmrec_nic_check(r, src)) < 0)
        return rc;
    if ((rc = vmrec_snap_check(r, src)) < 0)
        return rc;

    /* the suspended state */
    if (r->state_file[0] &&
        !vmseal_vmrec_state_file_valid(r->state_file, r->policy == VMSEAL_POLICY_ENCRYPTED))
        return fail_key(src, top_names[K_STATE_FILE], EPROTO,
                        "a file name in the home ending in %s (an encrypted VM: sealed) or %s "
                        "(a VM without encryption)",
                        VMSEAL_VMREC_STATE_SEALED_EXT, VMSEAL_VMREC_STATE_PLAIN_EXT);

    /* a vTPM's state is encrypted under a key from the per-VM secret */
    if (r->secure_boot && r->firmware != VMSEAL_FIRMWARE_UEFI)
        return fail_key(src, top_names[K_SECURE_BOOT], EPROTO, "Secure Boot needs firmware uefi");
    if (r->tpm && !r->vm_keysafe)
        return fail_key(src, top_names[K_TPM], EPROTO, "a vTPM needs an encrypted VM (vm.keysafe)");

    /* the unfinished operation */
    if (r->op_kek[0]) {
        if (!vmseal_keysafe_kek_id_valid(r->op_kek))
            return fail_key(src, top_names[K_OP_KEK], EPROTO, "a KEK id of 1..%d bytes",
                            VMSEAL_KEYSAFE_KEK_ID_MAX);
        if (r->op == VMSEAL_VMREC_OP_NONE)
            return fail_key(src, top_names[K_OP_KEK], EPROTO, "without op");
    } else if (r->op == VMSEAL_VMREC_OP_ENCRYPT || r->op == VMSEAL_VMREC_OP_RECRYPT_DEEP) {
        return fail_key(src, top_names[K_OP], EPROTO, "%s needs op.kek",
                        vmseal_vmrec_op_name(r->op));
    }
    if (r->op == VMSEAL_VMREC_OP_NONE) {
        /* at rest, the disks follow the policy */
        for (size_t i = 0; i < r->ndisks; i++) {
            if ((r->policy == VMSEAL_POLICY_ENCRYPTED) == (r->disks[i].keysafe != NULL))
                continue;
            char k[VMSEAL_VMREC_KEY_MAX];
            disk_key(k, sizeof(k), i, D_KEYSAFE);
            return fail_key(src, r->disks[i].keysafe ? k : top_names[K_POLICY], EPROTO,
                            "every disk of an encrypted VM has a key safe, no disk of a VM "
                            "without encryption has one (disk %zu)", i);
        }
    }
    return 0;
}

int vmseal_vmrec_validate(const vmseal_vmrec *r)
{
    return check_record(r, NULL);
}

/* ------------------------------------------------------------- reading */

/* "disk<N>.<field>": 1 and idx/field when it is one, 0 when not; -1 when
 * the key is in the disks' namespace but not a disk key. */
static int parse_disk_key(const char *key, size_t *idx, enum disk_field *field)
{
    if (strncmp(key, "disk", 4) != 0)
        return 0;
    const char *p = key + 4;
    if (*p < '0' || *p > '9')
        return -1;
    size_t n = 0, digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 4; p++, digits++)
        n = n * 10 + (size_t)(*p - '0');
    if (*p != '.' || (digits > 1 && key[4] == '0'))
        return -1;
    for (int f = 0; f < D_COUNT; f++)
        if (strcmp(p + 1, disk_fields[f]) == 0) {
            *idx = n;
            *field = (enum disk_field)f;
            return 1;
        }
    return -1;
}

/* Is this key vmseal's (then it must be a known one)? */
static int reserved_key(const char *key)
{
    if (strncmp(key, "disk", 4) == 0)
        return 1;
    const char *dot = strchr(key, '.');
    size_t first = dot ? (size_t)(dot - key) : strlen(key);
    for (size_t i = 0; i < sizeof(reserved_first) / sizeof(reserved_first[0]); i++)
        if (strlen(reserved_first[i]) == first && strncmp(key, reserved_first[i], first) == 0)
            return 1;
    const char *last = strrchr(key, '.');
    return strcmp(last ? last + 1 : key, "keysafe") == 0;
}

static int copy_fixed(const vmseal_vmconf *src, const char *key, char *dst, size_t cap,
                      const char *v)
{
    size_t n = strlen(v);
    if (n >= cap)
        return fail_key(src, key, EPROTO, "longer than %zu bytes", cap - 1);
    memcpy(dst, v, n + 1);
    return 0;
}

static int get_number(const vmseal_vmconf *src, const char *key, const char *v, uint64_t min,
                      uint64_t max, uint64_t *out)
{
    if (parse_number(v, out) < 0)
        return fail_key(src, key, EPROTO, "not a number (decimal digits, no leading zero)");
    if (*out < min || *out > max)
        return fail_key(src, key, EPROTO, "%llu is out of range (%llu..%llu)",
                        (unsigned long long)*out, (unsigned long long)min,
                        (unsigned long long)max);
    return 0;
}

static int set_top(vmseal_vmrec *r, const vmseal_vmconf *src, enum top_key k, const char *v)
{
    const char *key = top_names[k];
    uint64_t n;
    int rc = 0;
    switch (k) {
    case K_VERSION:
        if (strcmp(v, "1") == 0)
            return 0;
        if (parse_number(v, &n) == 0)
            return fail_key(src, key, ENOTSUP, "version %s is not supported (this vmseal reads "
                            "version %d; the file was written by a newer vmseal?)", v,
                            VMSEAL_VMREC_VERSION);
        return fail_key(src, key, EPROTO, "not a version number");
    case K_NAME:
        return copy_fixed(src, key, r->name, sizeof(r->name), v);
    case K_UUID:
        return copy_fixed(src, key, r->uuid, sizeof(r->uuid), v);
    case K_CPUS:
        rc = get_number(src, key, v, 1, VMSEAL_VMREC_CPUS_MAX, &n);
        r->cpus = (unsigned)n;
        return rc;
    case K_MEMORY:
        rc = get_number(src, key, v, VMSEAL_VMREC_MEMORY_MIN, VMSEAL_VMREC_MEMORY_MAX, &n);
        r->memory_mb = (unsigned)n;
        return rc;
    case K_FIRMWARE:
        if (strcmp(v, "bios") == 0)
            r->firmware = VMSEAL_FIRMWARE_BIOS;
        else if (strcmp(v, "uefi") == 0)
            r->firmware = VMSEAL_FIRMWARE_UEFI;
        else
            return fail_key(src, key, EPROTO, "bios or uefi");
        return 0;
    case K_POLICY:
        if (strcmp(v, "none") == 0)
            r->policy = VMSEAL_POLICY_NONE;
        else if (strcmp(v, "encrypted") == 0)
            r->policy = VMSEAL_POLICY_ENCRYPTED;
        else
            return fail_key(src, key, EPROTO, "none or encrypted");
        return 0;
    case K_KERNEL:
        return vmseal_vmrec_set_str(&r->kernel, v);
    case K_INITRD:
        return vmseal_vmrec_set_str(&r->initrd, v);
    case K_APPEND:
        return vmseal_vmrec_set_str(&r->append, v);
    case K_VM_KEYSAFE:
        return vmseal_vmrec_set_str(&r->vm_keysafe, v);
    case K_VM_NEXT_KEYSAFE:
        return vmseal_vmrec_set_str(&r->vm_next_keysafe, v);
    case K_NVRAM_FILE:
        return copy_fixed(src, key, r->nvram.file, sizeof(r->nvram.file), v);
    case K_NVRAM_NEXT_FILE:
        return copy_fixed(src, key, r->nvram.next_file, sizeof(r->nvram.next_file), v);
    case K_NVRAM_OLD_FILE:
        return copy_fixed(src, key, r->nvram.old_file, sizeof(r->nvram.old_file), v);
    case K_NVRAM_REKEYED:
        if (strcmp(v, "1") != 0)
            return fail_key(src, key, EPROTO, "1 or absent");
        r->nvram.rekeyed = 1;
        return 0;
    case K_DISKS:
        rc = get_number(src, key, v, 0, VMSEAL_VMREC_MAX_DISKS, &n);
        r->ndisks = (size_t)n;
        return rc;
    case K_OP:
        for (size_t i = 1; i < OP_COUNT; i++)
            if (strcmp(v, op_names[i]) == 0) {
                r->op = (vmseal_vmrec_op)i;
                return 0;
            }
        return fail_key(src, key, EPROTO, "create, encrypt, decrypt or recrypt-deep");
    case K_OP_KEK:
        if (!*v)
            return fail_key(src, key, EPROTO, "empty");
        return copy_fixed(src, key, r->op_kek, sizeof(r->op_kek), v);
    case K_STATE_FILE:
        if (!*v)
            return fail_key(src, key, EPROTO, "empty");
        return copy_fixed(src, key, r->state_file, sizeof(r->state_file), v);
    case K_VM_DISK_PATH:
        if (strcmp(v, "nbd") != 0 && strcmp(v, "qemu-luks") != 0)
            return fail_key(src, key, EPROTO, "nbd or qemu-luks");
        return copy_fixed(src, key, r->disk_path, sizeof(r->disk_path), v);
    case K_TPM:
        if (strcmp(v, "1") != 0)
            return fail_key(src, key, EPROTO, "1 or absent");
        r->tpm = 1;
        return 0;
    case K_SECURE_BOOT:
        if (strcmp(v, "1") != 0)
            return fail_key(src, key, EPROTO, "1 or absent");
        r->secure_boot = 1;
        return 0;
    case K_CDROM:
        if (!*v || !vmseal_vmrec_text_valid(v))
            return fail_key(src, key, EPROTO, "a name in the host's images folder");
        return copy_fixed(src, key, r->cdrom, sizeof(r->cdrom), v);
    case K_BOOT:
        if (!vmseal_vmrec_boot_order_valid(v))
            return fail_key(src, key, EPROTO, "disk, cdrom and net, comma-separated, each at most once");
        return copy_fixed(src, key, r->boot, sizeof(r->boot), v);
    case K_TOP_COUNT:
        break;
    }
    return vmseal_fail(EPROTO, "vm.conf: %s: not handled", key);
}

static int set_disk(vmseal_vmrec *r, const vmseal_vmconf *src, const char *key, size_t idx,
                    enum disk_field f, const char *v)
{
    vmseal_vmrec_image *im = &r->disks[idx];
    uint64_t n;
    int rc;
    switch (f) {
    case D_FILE:
        return copy_fixed(src, key, im->file, sizeof(im->file), v);
    case D_SIZE:
        if (parse_number(v, &n) < 0)
            return fail_key(src, key, EPROTO, "not a number (decimal digits, no leading zero)");
        if (!check_disk_size(n))
            return fail_key(src, key, EPROTO, "bytes, a whole number of MiB from 1 MiB to 1 TiB");
        im->size = n;
        return 0;
    case D_LUKS_UUID:
        return copy_fixed(src, key, im->luks_uuid, sizeof(im->luks_uuid), v);
    case D_KEYSAFE:
        return vmseal_vmrec_set_str(&im->keysafe, v);
    case D_NEXT_FILE:
        return copy_fixed(src, key, im->next_file, sizeof(im->next_file), v);
    case D_NEXT_LUKS_UUID:
        return copy_fixed(src, key, im->next_luks_uuid, sizeof(im->next_luks_uuid), v);
    case D_NEXT_KEYSAFE:
        return vmseal_vmrec_set_str(&im->next_keysafe, v);
    case D_OLD_FILE:
        return copy_fixed(src, key, im->old_file, sizeof(im->old_file), v);
    case D_REKEYED:
        rc = strcmp(v, "1") == 0 ? 0 : fail_key(src, key, EPROTO, "1 or absent");
        im->rekeyed = rc == 0;
        return rc;
    case D_FROM:
        if (!*v)
            return fail_key(src, key, EPROTO, "empty");
        return copy_fixed(src, key, im->from, sizeof(im->from), v);
    case D_DISK_PATH:
        if (strcmp(v, "nbd") != 0 && strcmp(v, "qemu-luks") != 0)
            return fail_key(src, key, EPROTO, "nbd or qemu-luks");
        return copy_fixed(src, key, im->disk_path, sizeof(im->disk_path), v);
    case D_COUNT:
        break;
    }
    return vmseal_fail(EPROTO, "vm.conf: %s: not handled", key);
}

int vmseal_vmrec_from_conf(const vmseal_vmconf *c, vmseal_vmrec **out)
{
    *out = NULL;
    vmseal_vmrec *r = vmseal_vmrec_new();
    if (!r)
        return vmseal_fail(ENOMEM, "out of memory");
    int rc = 0;
    /* config.version first: a file of another version is told so, whatever
     * else it holds */
    const char *ver = vmseal_vmconf_get(c, top_names[K_VERSION]);
    if (!ver)
        rc = vmseal_fail(EPROTO, "vm.conf: config.version: missing (not a VM configuration "
                         "written by vmseal)");
    else
        rc = set_top(r, c, K_VERSION, ver);
    for (size_t i = 0; rc == 0 && i < vmseal_vmconf_count(c); i++) {
        const char *key = vmseal_vmconf_key_at(c, i), *v = vmseal_vmconf_value_at(c, i);
        size_t idx;
        enum disk_field f;
        if (vmrec_nic_reserved(key)) {
            rc = vmrec_nic_set(r, c, key, v);
            continue;
        }
        if (vmrec_snap_reserved(key)) {
            rc = vmrec_snap_set(r, c, key, v);
            continue;
        }
        int d = parse_disk_key(key, &idx, &f);
        if (d > 0) {
            if (idx >= VMSEAL_VMREC_MAX_DISKS)
                rc = fail_key(c, key, EPROTO, "a VM has at most %d disks", VMSEAL_VMREC_MAX_DISKS);
            else
                rc = set_disk(r, c, key, idx, f, v);
            continue;
        }
        int known = 0;
        for (int k = 0; k < K_TOP_COUNT && !known; k++)
            if (strcmp(key, top_names[k]) == 0) {
                known = 1;
                if (k != K_VERSION)
                    rc = set_top(r, c, (enum top_key)k, v);
            }
        if (!known && (d < 0 || reserved_key(key)))
            rc = fail_key(c, key, EPROTO, "unknown key in vmseal's namespace (a typo, or a "
                          "file of a newer vmseal?)");
    }
    for (size_t i = 0; rc == 0 && i < sizeof(required) / sizeof(required[0]); i++)
        if (!vmseal_vmconf_get(c, top_names[required[i]]))
            rc = vmseal_fail(EPROTO, "vm.conf: %s: missing", top_names[required[i]]);
    if (rc == 0)
        rc = check_record(r, c);
    if (rc == 0 && !(r->source = vmseal_vmconf_dup(c)))
        rc = vmseal_fail(ENOMEM, "out of memory");
    if (rc < 0) {
        vmseal_vmrec_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

int vmseal_vmrec_parse(const char *text, size_t len, vmseal_vmrec **out)
{
    *out = NULL;
    vmseal_vmconf *c = NULL;
    int rc = vmseal_vmconf_parse(text, len, &c);
    if (rc == 0)
        rc = vmseal_vmrec_from_conf(c, out);
    vmseal_vmconf_free(c);
    return rc;
}

static int from_loaded(int rc, vmseal_vmconf *c, const char *label, vmseal_vmrec **out)
{
    if (rc == 0) {
        rc = vmseal_vmrec_from_conf(c, out);
        if (rc < 0)
            rc = vmseal_fail(-rc, "%s: %s", label, vmseal_last_error());
    }
    vmseal_vmconf_free(c);
    return rc;
}

int vmseal_vmrec_load(const char *path, vmseal_vmrec **out)
{
    *out = NULL;
    vmseal_vmconf *c = NULL;
    int rc = vmseal_vmconf_load(path, &c);
    return from_loaded(rc, c, path, out);
}

int vmseal_vmrec_loadat(int dirfd, const char *name, vmseal_vmrec **out)
{
    *out = NULL;
    vmseal_vmconf *c = NULL;
    int rc = vmseal_vmconf_loadat(dirfd, name, &c);
    return from_loaded(rc, c, name, out);
}

/* ------------------------------------------------------------- writing */

typedef struct kv {
    char key[VMSEAL_VMREC_KEY_MAX];
    const char *value;
    char num[24];          /* value of a number */
    int used;
} kv;

#define KV_MAX (K_TOP_COUNT + D_COUNT * VMSEAL_VMREC_MAX_DISKS + VMREC_NIC_KEYS_MAX + \
                VMREC_SNAP_KEYS_MAX)

static void put(kv *l, size_t *n, const char *key, const char *value)
{
    if (!value)
        return;
    snprintf(l[*n].key, sizeof(l[*n].key), "%s", key);
    l[*n].value = value;
    l[*n].used = 0;
    (*n)++;
}

static void put_str(kv *l, size_t *n, const char *key, const char *value)
{
    if (value && *value)
        put(l, n, key, value);
}

static void put_num(kv *l, size_t *n, const char *key, uint64_t v)
{
    snprintf(l[*n].num, sizeof(l[*n].num), "%llu", (unsigned long long)v);
    put(l, n, key, l[*n].num);
}

typedef struct kv_list {
    kv *l;
    size_t n;
} kv_list;

static void put_cb(void *ctx, const char *key, const char *value)
{
    kv_list *k = ctx;
    put(k->l, &k->n, key, value);
}

/* The record's keys and values in the schema's order. */
static size_t record_keys(const vmseal_vmrec *r, kv *l, vmrec_nic_text *nt,
                          vmrec_snap_text *st)
{
    size_t n = 0;
    char k[VMSEAL_VMREC_KEY_MAX];
    put_num(l, &n, top_names[K_VERSION], VMSEAL_VMREC_VERSION);
    put(l, &n, top_names[K_NAME], r->name);
    put(l, &n, top_names[K_UUID], r->uuid);
    put_num(l, &n, top_names[K_CPUS], r->cpus);
    put_num(l, &n, top_names[K_MEMORY], r->memory_mb);
    put(l, &n, top_names[K_FIRMWARE], r->firmware == VMSEAL_FIRMWARE_UEFI ? "uefi" : "bios");
    put(l, &n, top_names[K_POLICY], r->policy == VMSEAL_POLICY_ENCRYPTED ? "encrypted" : "none");
    put(l, &n, top_names[K_KERNEL], r->kernel);
    put(l, &n, top_names[K_INITRD], r->initrd);
    put(l, &n, top_names[K_APPEND], r->append);
    put(l, &n, top_names[K_VM_KEYSAFE], r->vm_keysafe);
    put_str(l, &n, top_names[K_NVRAM_FILE], r->nvram.file);
    put_num(l, &n, top_names[K_DISKS], r->ndisks);
    for (size_t i = 0; i < r->ndisks; i++) {
        const vmseal_vmrec_image *im = &r->disks[i];
        disk_key(k, sizeof(k), i, D_FILE);
        put_str(l, &n, k, im->file);
        disk_key(k, sizeof(k), i, D_SIZE);
        put_num(l, &n, k, im->size);
        disk_key(k, sizeof(k), i, D_LUKS_UUID);
        put_str(l, &n, k, im->luks_uuid);
        disk_key(k, sizeof(k), i, D_KEYSAFE);
        put(l, &n, k, im->keysafe);
        disk_key(k, sizeof(k), i, D_NEXT_FILE);
        put_str(l, &n, k, im->next_file);
        disk_key(k, sizeof(k), i, D_NEXT_LUKS_UUID);
        put_str(l, &n, k, im->next_luks_uuid);
        disk_key(k, sizeof(k), i, D_NEXT_KEYSAFE);
        put(l, &n, k, im->next_keysafe);
        disk_key(k, sizeof(k), i, D_OLD_FILE);
        put_str(l, &n, k, im->old_file);
        disk_key(k, sizeof(k), i, D_REKEYED);
        put(l, &n, k, im->rekeyed ? "1" : NULL);
        disk_key(k, sizeof(k), i, D_FROM);
        put_str(l, &n, k, im->from);
        disk_key(k, sizeof(k), i, D_DISK_PATH);
        put_str(l, &n, k, im->disk_path);
    }
    kv_list nl = {l, n};
    vmrec_nic_keys(r, nt, put_cb, &nl);
    vmrec_snap_keys(r, st, put_cb, &nl);
    n = nl.n;
    put(l, &n, top_names[K_VM_NEXT_KEYSAFE], r->vm_next_keysafe);
    put_str(l, &n, top_names[K_NVRAM_NEXT_FILE], r->nvram.next_file);
    put_str(l, &n, top_names[K_NVRAM_OLD_FILE], r->nvram.old_file);
    put(l, &n, top_names[K_NVRAM_REKEYED], r->nvram.rekeyed ? "1" : NULL);
    put(l, &n, top_names[K_OP], r->op ? vmseal_vmrec_op_name(r->op) : NULL);
    put_str(l, &n, top_names[K_OP_KEK], r->op_kek);
    put_str(l, &n, top_names[K_STATE_FILE], r->state_file);
    put_str(l, &n, top_names[K_VM_DISK_PATH], r->disk_path);
    put(l, &n, top_names[K_TPM], r->tpm ? "1" : NULL);
    put(l, &n, top_names[K_SECURE_BOOT], r->secure_boot ? "1" : NULL);
    put_str(l, &n, top_names[K_CDROM], r->cdrom);
    put_str(l, &n, top_names[K_BOOT], r->boot);
    return n;
}

int vmseal_vmrec_to_conf(const vmseal_vmrec *r, vmseal_vmconf **out)
{
    *out = NULL;
    int rc = check_record(r, NULL);
    if (rc < 0)
        return rc;
    kv *l = calloc(KV_MAX, sizeof(kv));
    vmseal_vmconf *c = vmseal_vmconf_new();
    if (!l || !c) {
        free(l);
        vmseal_vmconf_free(c);
        return vmseal_fail(ENOMEM, "out of memory");
    }
    vmrec_nic_text nt;
    vmrec_snap_text *st = malloc(sizeof(*st));
    if (!st) {
        free(l);
        vmseal_vmconf_free(c);
        return vmseal_fail(ENOMEM, "out of memory");
    }
    size_t n = record_keys(r, l, &nt, st);
    /* the file's own order first: its keys in place, unknown keys kept */
    for (size_t i = 0; rc == 0 && r->source && i < vmseal_vmconf_count(r->source); i++) {
        const char *key = vmseal_vmconf_key_at(r->source, i);
        size_t idx;
        enum disk_field f;
        int own = parse_disk_key(key, &idx, &f) != 0 || reserved_key(key) ||
                  vmrec_nic_reserved(key) || vmrec_snap_reserved(key);
        if (!own) {
            rc = vmseal_vmconf_set(c, key, vmseal_vmconf_value_at(r->source, i));
            continue;
        }
        for (size_t j = 0; j < n; j++)
            if (!l[j].used && strcmp(l[j].key, key) == 0) {
                rc = vmseal_vmconf_set(c, key, l[j].value);
                l[j].used = 1;
                break;
            }
    }
    for (size_t j = 0; rc == 0 && j < n; j++)
        if (!l[j].used)
            rc = vmseal_vmconf_set(c, l[j].key, l[j].value);
    free(l);
    free(st);
    if (rc < 0) {
        vmseal_vmconf_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

int vmseal_vmrec_saveat(const vmseal_vmrec *r, int dirfd, const char *name)
{
    vmseal_vmconf *c = NULL;
    int rc = vmseal_vmrec_to_conf(r, &c);
    if (rc == 0)
        rc = vmseal_vmconf_saveat(c, dirfd, name);
    vmseal_vmconf_free(c);
    return rc;
}

int vmseal_vmrec_save(const vmseal_vmrec *r, const char *path)
{
    vmseal_vmconf *c = NULL;
    int rc = vmseal_vmrec_to_conf(r, &c);
    if (rc == 0)
        rc = vmseal_vmconf_save(c, path);
    vmseal_vmconf_free(c);
    return rc;
}
