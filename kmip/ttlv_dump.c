/* Human-readable TTLV dump for logs and debugging; never prints secrets. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <time.h>

#include "ttlv_internal.h"

static void dump_text(FILE *out, const uint8_t *s, size_t len)
{
    fputc('"', out);
    for (size_t i = 0; i < len; i++) {
        uint8_t c = s[i];
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            fprintf(out, "\\x%02x", c);
        else
            fputc(c, out); /* UTF-8 was validated when the item was made */
    }
    fputc('"', out);
}

static void dump_hex(FILE *out, const uint8_t *p, size_t len)
{
    const size_t max = 64;
    fputs("0x", out);
    for (size_t i = 0; i < len && i < max; i++)
        fprintf(out, "%02X", p[i]);
    if (len > max)
        fprintf(out, "... (%zu bytes)", len);
    else if (len == 0)
        fputs(" (empty)", out);
}

/* For an Attribute Value, the tag its Attribute Name stands for (so that
 * "State" values get state names); otherwise the item's own tag. */
static uint32_t attr_value_tag(const vmseal_ttlv *t)
{
    if (t->tag != VMSEAL_KMIP_TAG_ATTRIBUTE_VALUE || !t->parent)
        return t->tag;
    const char *name;
    if (vmseal_ttlv_find_text(t->parent, VMSEAL_KMIP_TAG_ATTRIBUTE_NAME, &name, NULL) < 0)
        return t->tag;
    uint32_t tag = vmseal_kmip_tag_by_name(name);
    return tag ? tag : t->tag;
}

static void dump_item(const vmseal_ttlv *t, FILE *out, unsigned depth, int sensitive)
{
    for (unsigned i = 0; i < depth; i++)
        fputs("  ", out);
    const char *name = vmseal_kmip_tag_name(t->tag);
    const char *tname = vmseal_ttlv_type_name(t->type);
    fprintf(out, "Tag: %s (0x%06X), Type: %s (0x%02X), Data:%s", name ? name : "Unknown tag", t->tag,
            tname ? tname : "?", t->type, t->type == VMSEAL_TTLV_STRUCTURE ? "" : " ");
    sensitive = sensitive || vmseal_kmip_tag_is_sensitive(t->tag);
    switch (t->type) {
    case VMSEAL_TTLV_STRUCTURE:
        fputc('\n', out);
        for (const vmseal_ttlv *c = t->first; c; c = c->next)
            dump_item(c, out, depth + 1, sensitive);
        return;
    case VMSEAL_TTLV_INTEGER:
        fprintf(out, "%" PRId32 " (0x%08" PRIX32 ")", (int32_t)t->v.i, (uint32_t)t->v.i);
        break;
    case VMSEAL_TTLV_LONG:
        fprintf(out, "%" PRId64, t->v.i);
        break;
    case VMSEAL_TTLV_ENUM: {
        const char *en = vmseal_kmip_enum_name(attr_value_tag(t), (uint32_t)t->v.i);
        fprintf(out, "0x%08" PRIX32, (uint32_t)t->v.i);
        if (en)
            fprintf(out, " (%s)", en);
        break;
    }
    case VMSEAL_TTLV_BOOL:
        fputs(t->v.i ? "TRUE" : "FALSE", out);
        break;
    case VMSEAL_TTLV_DATETIME: {
        time_t tt = (time_t)t->v.i;
        struct tm tm;
        char buf[40];
        if (gmtime_r(&tt, &tm) && strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm))
            fprintf(out, "%s (0x%" PRIX64 ")", buf, (uint64_t)t->v.i);
        else
            fprintf(out, "%" PRId64, t->v.i);
        break;
    }
    case VMSEAL_TTLV_INTERVAL:
        fprintf(out, "%" PRIu32 " s", (uint32_t)t->v.i);
        break;
    default:
        if (sensitive || t->secure)
            fprintf(out, "<redacted %zu bytes>", t->len);
        else if (t->type == VMSEAL_TTLV_TEXT)
            dump_text(out, ttlv_value_ptr(t), t->len);
        else
            dump_hex(out, ttlv_value_ptr(t), t->len);
        break;
    }
    fputc('\n', out);
}

int vmseal_ttlv_dump(const vmseal_ttlv *root, FILE *out)
{
    if (!root || !out)
        return vmseal_fail(EINVAL, "ttlv dump: nothing to dump");
    dump_item(root, out, 0, ttlv_in_sensitive(root->parent));
    return ferror(out) ? vmseal_fail(EIO, "ttlv dump: write failed") : 0;
}

char *vmseal_ttlv_dump_str(const vmseal_ttlv *root)
{
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    if (!f)
        return NULL;
    int rc = vmseal_ttlv_dump(root, f);
    if (fclose(f) != 0 || rc < 0) {
        free(s);
        return NULL;
    }
    return s;
}
