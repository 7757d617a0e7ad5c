/* vm.conf schema: a VM's snapshot chain (include/vmseal/vmrecord.h,
 * docs/formats.md "VM configuration").
 *
 *   snapshots = M            0..8 (absent: 0)
 *   snapK.name = NAME        K < M, distinct names
 *   snapK.state = FILE       the memory state at snapshot K (optional)
 *   snapK.removing = 1       a removal of snapshot K is unfinished
 *   snapK.diskN.file = FILE  N < disks: the overlay taken at snapshot K
 *   snapK.diskN.uuid = UUID  its key safe's object id ("disk:<uuid>")
 *   snapK.diskN.keysafe = L  an encrypted VM's overlay: its secret
 *
 * vm.conf is untrusted (a datastore user may edit it): every value is
 * checked here once. The chain is vm.conf's alone: hostd gives QEMU every
 * layer's backing node explicitly and never follows a backing file name
 * written in an overlay's header. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmseal/keysafe.h>
#include <vmseal/vmrecord.h>

#include "vmrecord_snap.h"

enum snap_field { S_NAME, S_STATE, S_REMOVING, S_COUNT };
static const char *const snap_fields[S_COUNT] = {
    [S_NAME] = "name", [S_STATE] = "state", [S_REMOVING] = "removing"};
enum layer_field { L_FILE, L_UUID, L_KEYSAFE, L_COUNT };
static const char *const layer_fields[L_COUNT] = {
    [L_FILE] = "file", [L_UUID] = "uuid", [L_KEYSAFE] = "keysafe"};

static const char count_key[] = "snapshots";

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

int vmseal_vmrec_snap_name_valid(const char *name)
{
    return vmseal_vmrec_name_valid(name);
}

int vmseal_vmrec_overlay_file_valid(const char *file)
{
    size_t n = strlen(file), e = strlen(VMSEAL_VMREC_OVERLAY_EXT);
    return n > e && n <= VMSEAL_VMREC_FILE_MAX && vmseal_vmrec_name_valid(file) &&
           strcmp(file + n - e, VMSEAL_VMREC_OVERLAY_EXT) == 0;
}

int vmseal_vmrec_layer_object(const vmseal_vmrec_layer *l, char *buf, size_t len)
{
    return vmseal_keysafe_object_id("disk", l->uuid, buf, len);
}

long vmseal_vmrec_snap_find(const vmseal_vmrec *r, const char *name)
{
    for (size_t k = 0; k < r->nsnaps; k++)
        if (strcmp(r->snaps[k].name, name) == 0)
            return (long)k;
    return -1;
}

const char *vmseal_vmrec_top_file(const vmseal_vmrec *r, size_t idx)
{
    if (idx >= r->ndisks)
        return "";
    return r->nsnaps ? r->snaps[r->nsnaps - 1].disks[idx].file : r->disks[idx].file;
}

void vmseal_vmrec_snap_clear(vmseal_vmrec_snapshot *s)
{
    for (size_t i = 0; i < VMSEAL_VMREC_MAX_DISKS; i++)
        free(s->disks[i].keysafe);
    memset(s, 0, sizeof(*s));
}

void vmseal_vmrec_snap_drop(vmseal_vmrec *r, size_t k)
{
    if (k >= r->nsnaps)
        return;
    vmseal_vmrec_snap_clear(&r->snaps[k]);
    memmove(&r->snaps[k], &r->snaps[k + 1], (r->nsnaps - k - 1) * sizeof(r->snaps[0]));
    memset(&r->snaps[r->nsnaps - 1], 0, sizeof(r->snaps[0]));
    r->nsnaps--;
}

/* "snap<K>.<field>" or "snap<K>.disk<N>.<field>": 1 when it parses. */
static int parse_key(const char *key, size_t *k, long *disk, int *field)
{
    if (strncmp(key, "snap", 4) != 0)
        return 0;
    const char *p = key + 4;
    size_t n = 0, digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 3; p++, digits++)
        n = n * 10 + (size_t)(*p - '0');
    if (digits == 0 || *p != '.' || (digits > 1 && key[4] == '0'))
        return 0;
    p++;
    *k = n;
    *disk = -1;
    if (strncmp(p, "disk", 4) == 0) {
        const char *q = p + 4;
        size_t d = 0, dd = 0;
        for (; *q >= '0' && *q <= '9' && dd < 3; q++, dd++)
            d = d * 10 + (size_t)(*q - '0');
        if (dd == 0 || *q != '.' || (dd > 1 && p[4] == '0'))
            return 0;
        for (int f = 0; f < L_COUNT; f++)
            if (strcmp(q + 1, layer_fields[f]) == 0) {
                *disk = (long)d;
                *field = f;
                return 1;
            }
        return 0;
    }
    for (int f = 0; f < S_COUNT; f++)
        if (strcmp(p, snap_fields[f]) == 0) {
            *field = f;
            return 1;
        }
    return 0;
}

int vmrec_snap_reserved(const char *key)
{
    return strcmp(key, count_key) == 0 ||
           (strncmp(key, "snap", 4) == 0 && key[4] >= '0' && key[4] <= '9');
}

static int copy_fixed(const vmseal_vmconf *src, const char *key, char *dst, size_t cap,
                      const char *v)
{
    size_t n = strlen(v);
    if (n == 0)
        return fail_key(src, key, EPROTO, "empty");
    if (n >= cap)
        return fail_key(src, key, EPROTO, "longer than %zu bytes", cap - 1);
    memcpy(dst, v, n + 1);
    return 0;
}

int vmrec_snap_set(vmseal_vmrec *r, const vmseal_vmconf *src, const char *key, const char *v)
{
    if (strcmp(key, count_key) == 0) {
        if (strlen(v) != 1 || v[0] < '0' || v[0] > '0' + VMSEAL_VMREC_MAX_SNAPSHOTS)
            return fail_key(src, key, EPROTO, "0..%d", VMSEAL_VMREC_MAX_SNAPSHOTS);
        r->nsnaps = (size_t)(v[0] - '0');
        return 0;
    }
    size_t k;
    long d;
    int f;
    if (!parse_key(key, &k, &d, &f))
        return fail_key(src, key, EPROTO, "unknown key in vmseal's namespace (a typo, or a "
                        "file of a newer vmseal?)");
    if (k >= VMSEAL_VMREC_MAX_SNAPSHOTS)
        return fail_key(src, key, EPROTO, "a VM has at most %d snapshots",
                        VMSEAL_VMREC_MAX_SNAPSHOTS);
    vmseal_vmrec_snapshot *s = &r->snaps[k];
    if (d >= 0) {
        if (d >= VMSEAL_VMREC_MAX_DISKS)
            return fail_key(src, key, EPROTO, "a VM has at most %d disks",
                            VMSEAL_VMREC_MAX_DISKS);
        vmseal_vmrec_layer *l = &s->disks[d];
        switch (f) {
        case L_FILE:
            return copy_fixed(src, key, l->file, sizeof(l->file), v);
        case L_UUID:
            return copy_fixed(src, key, l->uuid, sizeof(l->uuid), v);
        default:
            return vmseal_vmrec_set_str(&l->keysafe, v);
        }
    }
    switch (f) {
    case S_NAME:
        return copy_fixed(src, key, s->name, sizeof(s->name), v);
    case S_STATE:
        return copy_fixed(src, key, s->state_file, sizeof(s->state_file), v);
    default:
        if (strcmp(v, "1") != 0)
            return fail_key(src, key, EPROTO, "1 or absent");
        s->removing = 1;
        return 0;
    }
}

static void key_of(char *buf, size_t len, size_t k, long d, int f)
{
    /* k < VMSEAL_VMREC_MAX_SNAPSHOTS and d < VMSEAL_VM_MAX_DISKS: it fits;
     * a key that did not would be no key at all (never a cut one) */
    int n = d < 0 ? snprintf(buf, len, "snap%zu.%s", k, snap_fields[f])
                  : snprintf(buf, len, "snap%zu.disk%ld.%s", k, d, layer_fields[f]);
    if (n < 0 || (size_t)n >= len)
        buf[0] = '\0';
}

int vmrec_snap_check(const vmseal_vmrec *r, const vmseal_vmconf *src)
{
    char key[VMSEAL_VMREC_KEY_MAX];
    int enc = r->policy == VMSEAL_POLICY_ENCRYPTED;
    if (r->nsnaps > VMSEAL_VMREC_MAX_SNAPSHOTS)
        return fail_key(src, count_key, EPROTO, "0..%d", VMSEAL_VMREC_MAX_SNAPSHOTS);
    if (r->nsnaps && (r->op == VMSEAL_VMREC_OP_ENCRYPT || r->op == VMSEAL_VMREC_OP_DECRYPT ||
                      r->op == VMSEAL_VMREC_OP_RECRYPT_DEEP))
        return fail_key(src, count_key, EPROTO, "a VM with snapshots is not encrypted, "
                        "decrypted or deep recrypted (op %s)", vmseal_vmrec_op_name(r->op));
    for (size_t k = 0; k < VMSEAL_VMREC_MAX_SNAPSHOTS; k++) {
        const vmseal_vmrec_snapshot *s = &r->snaps[k];
        if (k >= r->nsnaps) {
            int used = s->name[0] || s->state_file[0] || s->removing;
            for (size_t i = 0; i < VMSEAL_VMREC_MAX_DISKS; i++)
                used |= s->disks[i].file[0] || s->disks[i].uuid[0] || s->disks[i].keysafe;
            if (used) {
                key_of(key, sizeof(key), k, -1, S_NAME);
                return fail_key(src, key, EPROTO, "a snapshot beyond `snapshots`");
            }
            continue;
        }
        key_of(key, sizeof(key), k, -1, S_NAME);
        if (!vmseal_vmrec_snap_name_valid(s->name))
            return fail_key(src, key, EPROTO, "1..64 of [A-Za-z0-9._-], not starting with "
                            "'.' or '-'");
        for (size_t j = 0; j < k; j++)
            if (strcmp(r->snaps[j].name, s->name) == 0)
                return fail_key(src, key, EPROTO, "two snapshots are called %s", s->name);
        key_of(key, sizeof(key), k, -1, S_STATE);
        if (s->state_file[0] && !vmseal_vmrec_state_file_valid(s->state_file, enc))
            return fail_key(src, key, EPROTO, "a file name in the home ending in %s",
                            enc ? VMSEAL_VMREC_STATE_SEALED_EXT : VMSEAL_VMREC_STATE_PLAIN_EXT);
        if (s->state_file[0] && strcmp(s->state_file, r->state_file) == 0)
            return fail_key(src, key, EPROTO, "the same file as state.file");
        for (size_t i = 0; i < VMSEAL_VMREC_MAX_DISKS; i++) {
            const vmseal_vmrec_layer *l = &s->disks[i];
            if (i >= r->ndisks) {
                if (l->file[0] || l->uuid[0] || l->keysafe) {
                    key_of(key, sizeof(key), k, (long)i, L_FILE);
                    return fail_key(src, key, EPROTO, "the VM has %zu disks", r->ndisks);
                }
                continue;
            }
            key_of(key, sizeof(key), k, (long)i, L_FILE);
            if (!vmseal_vmrec_overlay_file_valid(l->file))
                return fail_key(src, key, EPROTO, "a file name in the home ending in %s",
                                VMSEAL_VMREC_OVERLAY_EXT);
            /* every file of the chain is distinct, and none is a base image */
            for (size_t b = 0; b < r->ndisks; b++)
                if (strcmp(r->disks[b].file, l->file) == 0)
                    return fail_key(src, key, EPROTO, "%s is a disk's base image", l->file);
            for (size_t j = 0; j <= k; j++)
                for (size_t b = 0; b < r->ndisks; b++)
                    if ((j < k || b < i) && strcmp(r->snaps[j].disks[b].file, l->file) == 0)
                        return fail_key(src, key, EPROTO, "%s is in the chain twice", l->file);
            key_of(key, sizeof(key), k, (long)i, L_UUID);
            if (!vmseal_vmrec_uuid_valid(l->uuid))
                return fail_key(src, key, EPROTO, "a UUID (lower case)");
            key_of(key, sizeof(key), k, (long)i, L_KEYSAFE);
            if (enc != (l->keysafe != NULL))
                return fail_key(src, key, EPROTO, "an encrypted VM's overlay has one, a VM "
                                "without encryption's none");
            vmseal_keysafe_info info;
            if (l->keysafe && vmseal_keysafe_parse(l->keysafe, &info) < 0)
                return fail_key(src, key, EPROTO, "not a key safe: %s", vmseal_last_error());
        }
    }
    return 0;
}

void vmrec_snap_keys(const vmseal_vmrec *r, vmrec_snap_text *t,
                     void (*put)(void *ctx, const char *key, const char *value), void *ctx)
{
    if (r->nsnaps == 0)
        return;
    snprintf(t->count, sizeof(t->count), "%zu", r->nsnaps);
    put(ctx, count_key, t->count);
    for (size_t k = 0; k < r->nsnaps; k++) {
        const vmseal_vmrec_snapshot *s = &r->snaps[k];
        size_t slot = 0;
        key_of(t->key[slot][k], VMSEAL_VMREC_KEY_MAX, k, -1, S_NAME);
        put(ctx, t->key[slot++][k], s->name);
        if (s->state_file[0]) {
            key_of(t->key[slot][k], VMSEAL_VMREC_KEY_MAX, k, -1, S_STATE);
            put(ctx, t->key[slot][k], s->state_file);
        }
        slot++;
        if (s->removing) {
            key_of(t->key[slot][k], VMSEAL_VMREC_KEY_MAX, k, -1, S_REMOVING);
            put(ctx, t->key[slot][k], "1");
        }
        slot++;
        for (size_t i = 0; i < r->ndisks; i++) {
            const vmseal_vmrec_layer *l = &s->disks[i];
            key_of(t->key[slot][k], VMSEAL_VMREC_KEY_MAX, k, (long)i, L_FILE);
            put(ctx, t->key[slot++][k], l->file);
            key_of(t->key[slot][k], VMSEAL_VMREC_KEY_MAX, k, (long)i, L_UUID);
            put(ctx, t->key[slot++][k], l->uuid);
            if (l->keysafe) {
                key_of(t->key[slot][k], VMSEAL_VMREC_KEY_MAX, k, (long)i, L_KEYSAFE);
                put(ctx, t->key[slot][k], l->keysafe);
            }
            slot++;
        }
    }
}

int vmrec_snap_dup(vmseal_vmrec *d, const vmseal_vmrec *r)
{
    int ok = 1;
    for (size_t k = 0; k < VMSEAL_VMREC_MAX_SNAPSHOTS; k++)
        for (size_t i = 0; i < VMSEAL_VMREC_MAX_DISKS; i++) {
            d->snaps[k].disks[i].keysafe = NULL;
            if (r->snaps[k].disks[i].keysafe)
                ok &= vmseal_vmrec_set_str(&d->snaps[k].disks[i].keysafe,
                                           r->snaps[k].disks[i].keysafe) == 0;
        }
    return ok ? 0 : -ENOMEM;
}

void vmrec_snap_free(vmseal_vmrec *r)
{
    for (size_t k = 0; k < VMSEAL_VMREC_MAX_SNAPSHOTS; k++)
        for (size_t i = 0; i < VMSEAL_VMREC_MAX_DISKS; i++) {
            free(r->snaps[k].disks[i].keysafe);
            r->snaps[k].disks[i].keysafe = NULL;
        }
}
