/* TTLV tree: building, reading, strict decoding and canonical encoding. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "ttlv_internal.h"

/* ---- small helpers ------------------------------------------------------- */

static size_t pad8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

static int tag_in_range(uint32_t tag)
{
    return (tag >= 0x420001 && tag <= 0x42FFFF) || (tag >= 0x540000 && tag <= 0x54FFFF);
}

static int type_valid(unsigned type)
{
    return type >= VMSEAL_TTLV_STRUCTURE && type <= VMSEAL_TTLV_INTERVAL;
}

static int is_varlen(unsigned type)
{
    return type == VMSEAL_TTLV_TEXT || type == VMSEAL_TTLV_BYTES || type == VMSEAL_TTLV_BIGINT;
}

/* Fixed value length for scalar types, 0 for the others. */
static size_t fixed_len(unsigned type)
{
    switch (type) {
    case VMSEAL_TTLV_INTEGER:
    case VMSEAL_TTLV_ENUM:
    case VMSEAL_TTLV_INTERVAL:
        return 4;
    case VMSEAL_TTLV_LONG:
    case VMSEAL_TTLV_BOOL:
    case VMSEAL_TTLV_DATETIME:
        return 8;
    default:
        return 0;
    }
}

static const char *tag_label(uint32_t tag, char buf[48])
{
    const char *n = vmseal_kmip_tag_name(tag);
    if (n)
        snprintf(buf, 48, "%s", n);
    else
        snprintf(buf, 48, "tag 0x%06X", tag);
    return buf;
}

/* Strict UTF-8 (RFC 3629): no overlongs, no surrogates, <= U+10FFFF; and no
 * NUL, which cannot be carried by C strings. Returns the offset of the first
 * bad byte, or len when the string is fine. */
static size_t utf8_check(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c == 0)
            return i;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) {
            n = 1; cp = c & 0x1F; min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2; cp = c & 0x0F; min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3; cp = c & 0x07; min = 0x10000;
        } else {
            return i;
        }
        if (len - i <= n)
            return i;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += n + 1;
    }
    return len;
}

bool ttlv_utf8_valid(const char *s, size_t len)
{
    return utf8_check((const uint8_t *)s, len) == len;
}

bool vmseal_ttlv_text_valid(const char *s, size_t len)
{
    return s && ttlv_utf8_valid(s, len);
}

bool ttlv_in_sensitive(const struct vmseal_ttlv *t)
{
    for (; t; t = t->parent)
        if (vmseal_kmip_tag_is_sensitive(t->tag))
            return true;
    return false;
}

/* ---- node lifetime ------------------------------------------------------- */

static void node_free_value(vmseal_ttlv *t)
{
    if (!is_varlen(t->type))
        return;
    if (t->secure) {
        vmseal_secret_free(t->v.sec);
    } else if (t->v.p) {
        OPENSSL_cleanse(t->v.p, t->len + 1);
        free(t->v.p);
    }
    t->v.p = NULL;
}

static void free_tree(vmseal_ttlv *t)
{
    while (t) {
        vmseal_ttlv *next = t->next;
        free_tree(t->first);
        node_free_value(t);
        free(t->errmsg);
        OPENSSL_cleanse(t, sizeof(*t));
        free(t);
        t = next;
    }
}

static void unlink_child(vmseal_ttlv *item)
{
    vmseal_ttlv *p = item->parent;
    if (!p)
        return;
    vmseal_ttlv *prev = NULL;
    for (vmseal_ttlv *c = p->first; c; prev = c, c = c->next) {
        if (c != item)
            continue;
        if (prev)
            prev->next = c->next;
        else
            p->first = c->next;
        if (p->last == c)
            p->last = prev;
        break;
    }
    item->parent = NULL;
    item->next = NULL;
}

void vmseal_ttlv_free(vmseal_ttlv *item)
{
    if (!item)
        return;
    unlink_child(item);
    free_tree(item);
}

vmseal_ttlv *vmseal_ttlv_detach(vmseal_ttlv *item)
{
    if (item)
        unlink_child(item);
    return item;
}

static vmseal_ttlv *root_of(vmseal_ttlv *t)
{
    while (t->parent)
        t = t->parent;
    return t;
}

/* Record a build error at the root of t's tree (first one wins). */
static void record_error(vmseal_ttlv *t, int err, const char *fmt, ...) VMSEAL_PRINTF(3, 4);
static void record_error(vmseal_ttlv *t, int err, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    vmseal_fail(err, "%s", msg);
    if (!t)
        return;
    vmseal_ttlv *root = root_of(t);
    if (root->err)
        return;
    root->err = -err;
    root->errmsg = strdup(msg);
}

int vmseal_ttlv_build_error(const vmseal_ttlv *item)
{
    if (!item)
        return -EINVAL;
    const vmseal_ttlv *t = item;
    while (t->parent)
        t = t->parent;
    return t->err;
}

static vmseal_ttlv *node_new(uint32_t tag, vmseal_ttlv_type type)
{
    vmseal_ttlv *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->tag = tag;
    t->type = (uint8_t)type;
    return t;
}

static void link_child(vmseal_ttlv *parent, vmseal_ttlv *child)
{
    child->parent = parent;
    child->next = NULL;
    if (parent->last)
        parent->last->next = child;
    else
        parent->first = child;
    parent->last = child;
}

/* ---- building ------------------------------------------------------------ */

vmseal_ttlv *vmseal_ttlv_struct(uint32_t tag)
{
    if (!tag_in_range(tag)) {
        vmseal_fail(EINVAL, "ttlv: tag 0x%06X is not a KMIP tag", tag);
        return NULL;
    }
    vmseal_ttlv *t = node_new(tag, VMSEAL_TTLV_STRUCTURE);
    if (!t)
        vmseal_fail(ENOMEM, "ttlv: out of memory");
    return t;
}

/* Common start of every add: validates parent and tag, makes the node. */
static vmseal_ttlv *add_begin(vmseal_ttlv *parent, uint32_t tag, vmseal_ttlv_type type)
{
    char lb[48];
    if (!parent) {
        vmseal_fail(EINVAL, "ttlv: adding %s to a missing parent", tag_label(tag, lb));
        return NULL;
    }
    if (parent->type != VMSEAL_TTLV_STRUCTURE) {
        record_error(parent, EINVAL, "ttlv: adding %s to a non-structure", tag_label(tag, lb));
        return NULL;
    }
    if (!tag_in_range(tag)) {
        record_error(parent, EINVAL, "ttlv: tag 0x%06X is not a KMIP tag", tag);
        return NULL;
    }
    vmseal_ttlv *t = node_new(tag, type);
    if (!t)
        record_error(parent, ENOMEM, "ttlv: out of memory");
    return t;
}

static vmseal_ttlv *add_scalar(vmseal_ttlv *parent, uint32_t tag, vmseal_ttlv_type type, int64_t v)
{
    vmseal_ttlv *t = add_begin(parent, tag, type);
    if (!t)
        return NULL;
    t->v.i = v;
    link_child(parent, t);
    return t;
}

vmseal_ttlv *vmseal_ttlv_add_struct(vmseal_ttlv *parent, uint32_t tag)
{
    return add_scalar(parent, tag, VMSEAL_TTLV_STRUCTURE, 0);
}

vmseal_ttlv *vmseal_ttlv_add_int(vmseal_ttlv *parent, uint32_t tag, int32_t v)
{
    return add_scalar(parent, tag, VMSEAL_TTLV_INTEGER, v);
}

vmseal_ttlv *vmseal_ttlv_add_long(vmseal_ttlv *parent, uint32_t tag, int64_t v)
{
    return add_scalar(parent, tag, VMSEAL_TTLV_LONG, v);
}

vmseal_ttlv *vmseal_ttlv_add_enum(vmseal_ttlv *parent, uint32_t tag, uint32_t v)
{
    return add_scalar(parent, tag, VMSEAL_TTLV_ENUM, (int64_t)v);
}

vmseal_ttlv *vmseal_ttlv_add_bool(vmseal_ttlv *parent, uint32_t tag, bool v)
{
    return add_scalar(parent, tag, VMSEAL_TTLV_BOOL, v ? 1 : 0);
}

vmseal_ttlv *vmseal_ttlv_add_datetime(vmseal_ttlv *parent, uint32_t tag, int64_t t)
{
    return add_scalar(parent, tag, VMSEAL_TTLV_DATETIME, t);
}

vmseal_ttlv *vmseal_ttlv_add_interval(vmseal_ttlv *parent, uint32_t tag, uint32_t seconds)
{
    return add_scalar(parent, tag, VMSEAL_TTLV_INTERVAL, (int64_t)seconds);
}

/* Store a variable-length value (plus a NUL) in t, securely if asked. */
static int set_value(vmseal_ttlv *t, const void *p, size_t len, int secure)
{
    t->len = len;
    if (secure) {
        vmseal_secret *s = vmseal_secret_new(len + 1);
        if (!s)
            return -ENOMEM;
        if (len)
            memcpy(vmseal_secret_data(s), p, len);
        vmseal_secret_data(s)[len] = 0;
        t->v.sec = s;
        t->secure = 1;
    } else {
        t->v.p = malloc(len + 1);
        if (!t->v.p)
            return -ENOMEM;
        if (len)
            memcpy(t->v.p, p, len);
        t->v.p[len] = 0;
    }
    return 0;
}

static vmseal_ttlv *add_varlen(vmseal_ttlv *parent, uint32_t tag, vmseal_ttlv_type type,
                               const void *p, size_t len, int force_secure)
{
    char lb[48];
    if (len > UINT32_MAX - 8 || (len && !p)) {
        if (parent)
            record_error(parent, EINVAL, "ttlv: bad value for %s", tag_label(tag, lb));
        return NULL;
    }
    vmseal_ttlv *t = add_begin(parent, tag, type);
    if (!t)
        return NULL;
    /* Sensitive if the tag or any ancestor is key material. */
    int secure = force_secure || vmseal_kmip_tag_is_sensitive(tag) || ttlv_in_sensitive(parent);
    if (set_value(t, p, len, secure) < 0) {
        free(t);
        record_error(parent, ENOMEM, "ttlv: out of memory");
        return NULL;
    }
    link_child(parent, t);
    return t;
}

vmseal_ttlv *vmseal_ttlv_add_text(vmseal_ttlv *parent, uint32_t tag, const char *s)
{
    char lb[48];
    if (!s) {
        if (parent)
            record_error(parent, EINVAL, "ttlv: NULL text for %s", tag_label(tag, lb));
        return NULL;
    }
    return vmseal_ttlv_add_text_n(parent, tag, s, strlen(s));
}

vmseal_ttlv *vmseal_ttlv_add_text_n(vmseal_ttlv *parent, uint32_t tag, const char *s, size_t len)
{
    char lb[48];
    if (s && utf8_check((const uint8_t *)s, len) != len) {
        if (parent)
            record_error(parent, EINVAL, "ttlv: %s is not valid UTF-8 text", tag_label(tag, lb));
        return NULL;
    }
    return add_varlen(parent, tag, VMSEAL_TTLV_TEXT, s, len, 0);
}

vmseal_ttlv *vmseal_ttlv_add_bytes(vmseal_ttlv *parent, uint32_t tag, const void *p, size_t len)
{
    return add_varlen(parent, tag, VMSEAL_TTLV_BYTES, p, len, 0);
}

vmseal_ttlv *vmseal_ttlv_add_secret(vmseal_ttlv *parent, uint32_t tag, const vmseal_secret *s)
{
    char lb[48];
    if (!s) {
        if (parent)
            record_error(parent, EINVAL, "ttlv: NULL secret for %s", tag_label(tag, lb));
        return NULL;
    }
    return add_varlen(parent, tag, VMSEAL_TTLV_BYTES, vmseal_secret_cdata(s),
                      vmseal_secret_len(s), 1);
}

vmseal_ttlv *vmseal_ttlv_add_secret_space(vmseal_ttlv *parent, uint32_t tag, size_t len,
                                          uint8_t **data)
{
    *data = NULL;
    char lb[48];
    if (len == 0 || len > (1u << 20) - 1) {
        if (parent)
            record_error(parent, EINVAL, "ttlv: bad secret length for %s", tag_label(tag, lb));
        return NULL;
    }
    vmseal_ttlv *t = add_begin(parent, tag, VMSEAL_TTLV_BYTES);
    if (!t)
        return NULL;
    t->len = len;
    t->v.sec = vmseal_secret_new(len + 1); /* zeroed, NUL included */
    if (!t->v.sec) {
        free(t);
        record_error(parent, ENOMEM, "ttlv: out of memory");
        return NULL;
    }
    t->secure = 1;
    link_child(parent, t);
    *data = vmseal_secret_data(t->v.sec);
    return t;
}

vmseal_ttlv *vmseal_ttlv_add_bigint(vmseal_ttlv *parent, uint32_t tag, const uint8_t *be, size_t len)
{
    char lb[48];
    if (len == 0 || len % 8 != 0) {
        if (parent)
            record_error(parent, EINVAL, "ttlv: Big Integer %s must be a non-zero multiple of 8 bytes",
                         tag_label(tag, lb));
        return NULL;
    }
    return add_varlen(parent, tag, VMSEAL_TTLV_BIGINT, be, len, 0);
}

int vmseal_ttlv_append(vmseal_ttlv *parent, vmseal_ttlv *child)
{
    if (!parent || !child)
        return vmseal_fail(EINVAL, "ttlv: append needs a parent and a child");
    if (parent->type != VMSEAL_TTLV_STRUCTURE)
        return vmseal_fail(EINVAL, "ttlv: append to a non-structure");
    if (child->parent)
        return vmseal_fail(EINVAL, "ttlv: append of an item that already has a parent");
    for (vmseal_ttlv *a = parent; a; a = a->parent)
        if (a == child)
            return vmseal_fail(EINVAL, "ttlv: append would make a cycle");
    if (child->err) {
        /* Carry the child's build error up into the new tree. */
        record_error(parent, -child->err, "%s", child->errmsg ? child->errmsg : "ttlv: build error");
        free(child->errmsg);
        child->errmsg = NULL;
        child->err = 0;
    }
    link_child(parent, child);
    return 0;
}

static vmseal_ttlv *dup_node(const vmseal_ttlv *src)
{
    vmseal_ttlv *t = node_new(src->tag, (vmseal_ttlv_type)src->type);
    if (!t)
        return NULL;
    if (is_varlen(src->type)) {
        if (set_value(t, ttlv_value_ptr(src), src->len, src->secure) < 0) {
            free(t);
            return NULL;
        }
    } else {
        t->v.i = src->v.i;
    }
    for (const vmseal_ttlv *c = src->first; c; c = c->next) {
        vmseal_ttlv *cc = dup_node(c);
        if (!cc) {
            free_tree(t);
            return NULL;
        }
        link_child(t, cc);
    }
    return t;
}

int vmseal_ttlv_dup(const vmseal_ttlv *item, vmseal_ttlv **out)
{
    *out = NULL;
    if (!item)
        return vmseal_fail(EINVAL, "ttlv: dup of nothing");
    vmseal_ttlv *t = dup_node(item);
    if (!t)
        return vmseal_fail(ENOMEM, "ttlv: out of memory");
    *out = t;
    return 0;
}

/* ---- reading ------------------------------------------------------------- */

uint32_t vmseal_ttlv_tag(const vmseal_ttlv *item) { return item ? item->tag : 0; }
vmseal_ttlv_type vmseal_ttlv_type_of(const vmseal_ttlv *item)
{
    return item ? (vmseal_ttlv_type)item->type : (vmseal_ttlv_type)0;
}
vmseal_ttlv *vmseal_ttlv_parent(const vmseal_ttlv *item) { return item ? item->parent : NULL; }

vmseal_ttlv *vmseal_ttlv_next(const vmseal_ttlv *parent, uint32_t tag, const vmseal_ttlv *prev)
{
    if (!parent || parent->type != VMSEAL_TTLV_STRUCTURE)
        return NULL;
    if (prev && prev->parent != parent)
        return NULL;
    vmseal_ttlv *c = prev ? prev->next : parent->first;
    for (; c; c = c->next)
        if (tag == 0 || c->tag == tag)
            return c;
    return NULL;
}

vmseal_ttlv *vmseal_ttlv_find(const vmseal_ttlv *parent, uint32_t tag)
{
    return vmseal_ttlv_next(parent, tag, NULL);
}

size_t vmseal_ttlv_count(const vmseal_ttlv *parent, uint32_t tag)
{
    size_t n = 0;
    for (vmseal_ttlv *c = NULL; (c = vmseal_ttlv_next(parent, tag, c));)
        n++;
    return n;
}

vmseal_ttlv *vmseal_ttlv_dig(const vmseal_ttlv *root, ...)
{
    va_list ap;
    va_start(ap, root);
    const vmseal_ttlv *t = root;
    for (;;) {
        uint32_t tag = va_arg(ap, uint32_t);
        if (tag == 0 || !t)
            break;
        t = vmseal_ttlv_find(t, tag);
    }
    va_end(ap);
    return (vmseal_ttlv *)t;
}

static int want_type(const vmseal_ttlv *item, vmseal_ttlv_type type)
{
    char lb[48];
    if (!item)
        return vmseal_fail(EINVAL, "ttlv: no item");
    if (item->type != type)
        return vmseal_fail(EPROTO, "KMIP: %s has type %s, expected %s", tag_label(item->tag, lb),
                           vmseal_ttlv_type_name(item->type) ? vmseal_ttlv_type_name(item->type) : "?",
                           vmseal_ttlv_type_name(type));
    return 0;
}

int vmseal_ttlv_get_int(const vmseal_ttlv *item, int32_t *out)
{
    int rc = want_type(item, VMSEAL_TTLV_INTEGER);
    if (rc == 0)
        *out = (int32_t)item->v.i;
    return rc;
}

int vmseal_ttlv_get_long(const vmseal_ttlv *item, int64_t *out)
{
    int rc = want_type(item, VMSEAL_TTLV_LONG);
    if (rc == 0)
        *out = item->v.i;
    return rc;
}

int vmseal_ttlv_get_enum(const vmseal_ttlv *item, uint32_t *out)
{
    int rc = want_type(item, VMSEAL_TTLV_ENUM);
    if (rc == 0)
        *out = (uint32_t)item->v.i;
    return rc;
}

int vmseal_ttlv_get_bool(const vmseal_ttlv *item, bool *out)
{
    int rc = want_type(item, VMSEAL_TTLV_BOOL);
    if (rc == 0)
        *out = item->v.i != 0;
    return rc;
}

int vmseal_ttlv_get_datetime(const vmseal_ttlv *item, int64_t *out)
{
    int rc = want_type(item, VMSEAL_TTLV_DATETIME);
    if (rc == 0)
        *out = item->v.i;
    return rc;
}

int vmseal_ttlv_get_interval(const vmseal_ttlv *item, uint32_t *out)
{
    int rc = want_type(item, VMSEAL_TTLV_INTERVAL);
    if (rc == 0)
        *out = (uint32_t)item->v.i;
    return rc;
}

int vmseal_ttlv_get_text(const vmseal_ttlv *item, const char **s, size_t *len)
{
    int rc = want_type(item, VMSEAL_TTLV_TEXT);
    if (rc == 0) {
        *s = (const char *)ttlv_value_ptr(item);
        if (len)
            *len = item->len;
    }
    return rc;
}

int vmseal_ttlv_get_bytes(const vmseal_ttlv *item, const uint8_t **p, size_t *len)
{
    int rc = want_type(item, VMSEAL_TTLV_BYTES);
    if (rc == 0) {
        *p = ttlv_value_ptr(item);
        *len = item->len;
    }
    return rc;
}

int vmseal_ttlv_get_bigint(const vmseal_ttlv *item, const uint8_t **p, size_t *len)
{
    int rc = want_type(item, VMSEAL_TTLV_BIGINT);
    if (rc == 0) {
        *p = ttlv_value_ptr(item);
        *len = item->len;
    }
    return rc;
}

int vmseal_ttlv_get_secret(const vmseal_ttlv *item, vmseal_secret **out)
{
    char lb[48];
    *out = NULL;
    int rc = want_type(item, VMSEAL_TTLV_BYTES);
    if (rc < 0)
        return rc;
    if (item->len == 0)
        return vmseal_fail(ENODATA, "KMIP: %s is empty", tag_label(item->tag, lb));
    return vmseal_secret_from(ttlv_value_ptr(item), item->len, out);
}

static int find_child(const vmseal_ttlv *parent, uint32_t tag, const vmseal_ttlv **out)
{
    char lb[48];
    *out = vmseal_ttlv_find(parent, tag);
    if (!*out)
        return vmseal_fail(ENOENT, "KMIP: missing %s", tag_label(tag, lb));
    return 0;
}

#define FIND_GETTER(name, ctype)                                                     \
    int vmseal_ttlv_find_##name(const vmseal_ttlv *parent, uint32_t tag, ctype *out) \
    {                                                                                \
        const vmseal_ttlv *c;                                                        \
        int rc = find_child(parent, tag, &c);                                        \
        return rc < 0 ? rc : vmseal_ttlv_get_##name(c, out);                         \
    }
FIND_GETTER(int, int32_t)
FIND_GETTER(long, int64_t)
FIND_GETTER(enum, uint32_t)
FIND_GETTER(bool, bool)
FIND_GETTER(datetime, int64_t)
FIND_GETTER(interval, uint32_t)
#undef FIND_GETTER

int vmseal_ttlv_find_text(const vmseal_ttlv *parent, uint32_t tag, const char **s, size_t *len)
{
    const vmseal_ttlv *c;
    int rc = find_child(parent, tag, &c);
    return rc < 0 ? rc : vmseal_ttlv_get_text(c, s, len);
}

int vmseal_ttlv_find_bytes(const vmseal_ttlv *parent, uint32_t tag, const uint8_t **p, size_t *len)
{
    const vmseal_ttlv *c;
    int rc = find_child(parent, tag, &c);
    return rc < 0 ? rc : vmseal_ttlv_get_bytes(c, p, len);
}

bool vmseal_ttlv_equal(const vmseal_ttlv *a, const vmseal_ttlv *b)
{
    if (!a || !b)
        return a == b;
    if (a->tag != b->tag || a->type != b->type)
        return false;
    if (is_varlen(a->type))
        return a->len == b->len && CRYPTO_memcmp(ttlv_value_ptr(a), ttlv_value_ptr(b), a->len) == 0;
    if (a->type != VMSEAL_TTLV_STRUCTURE)
        return a->v.i == b->v.i;
    const vmseal_ttlv *x = a->first, *y = b->first;
    for (; x && y; x = x->next, y = y->next)
        if (!vmseal_ttlv_equal(x, y))
            return false;
    return !x && !y;
}

/* ---- encoding ------------------------------------------------------------ */

/* Encoded size of one item, header included; 0 when a length overflows. */
static size_t item_size(const vmseal_ttlv *t)
{
    size_t vlen;
    if (t->type == VMSEAL_TTLV_STRUCTURE) {
        vlen = 0;
        for (const vmseal_ttlv *c = t->first; c; c = c->next) {
            size_t cs = item_size(c);
            if (cs == 0)
                return 0;
            vlen += cs;
            if (vlen > UINT32_MAX)
                return 0;
        }
    } else if (is_varlen(t->type)) {
        vlen = t->len;
    } else {
        vlen = fixed_len(t->type);
    }
    if (vlen > UINT32_MAX - 7)
        return 0;
    return 8 + pad8(vlen);
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

/* Write one item at p (zeroed buffer); returns bytes written. */
static size_t write_item(const vmseal_ttlv *t, uint8_t *p)
{
    p[0] = (uint8_t)(t->tag >> 16);
    p[1] = (uint8_t)(t->tag >> 8);
    p[2] = (uint8_t)t->tag;
    p[3] = t->type;
    size_t vlen;
    switch (t->type) {
    case VMSEAL_TTLV_STRUCTURE:
        vlen = 0;
        for (const vmseal_ttlv *c = t->first; c; c = c->next)
            vlen += write_item(c, p + 8 + vlen);
        break;
    case VMSEAL_TTLV_INTEGER:
    case VMSEAL_TTLV_ENUM:
    case VMSEAL_TTLV_INTERVAL:
        vlen = 4;
        put32(p + 8, (uint32_t)t->v.i);
        break;
    case VMSEAL_TTLV_LONG:
    case VMSEAL_TTLV_BOOL:
    case VMSEAL_TTLV_DATETIME:
        vlen = 8;
        put64(p + 8, (uint64_t)t->v.i);
        break;
    default:
        vlen = t->len;
        if (vlen)
            memcpy(p + 8, ttlv_value_ptr(t), vlen);
        break;
    }
    put32(p + 4, (uint32_t)vlen);
    return 8 + pad8(vlen);
}

size_t vmseal_ttlv_encoded_len(const vmseal_ttlv *root)
{
    return root ? item_size(root) : 0;
}

static int encode_check(const vmseal_ttlv *root, size_t *size)
{
    if (!root)
        return vmseal_fail(EINVAL, "ttlv: nothing to encode");
    int err = vmseal_ttlv_build_error(root);
    if (err) {
        const vmseal_ttlv *r = root;
        while (r->parent)
            r = r->parent;
        return vmseal_fail(err, "%s", r->errmsg ? r->errmsg : "ttlv: the message could not be built");
    }
    *size = item_size(root);
    if (*size == 0)
        return vmseal_fail(EMSGSIZE, "ttlv: an item is longer than 4 GiB");
    return 0;
}

int vmseal_ttlv_encode(const vmseal_ttlv *root, uint8_t **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    size_t size;
    int rc = encode_check(root, &size);
    if (rc < 0)
        return rc;
    uint8_t *p = calloc(1, size);
    if (!p)
        return vmseal_fail(ENOMEM, "ttlv: out of memory (%zu bytes)", size);
    write_item(root, p);
    *buf = p;
    *len = size;
    return 0;
}

void vmseal_ttlv_buf_free(uint8_t *buf, size_t len)
{
    if (!buf)
        return;
    OPENSSL_cleanse(buf, len);
    free(buf);
}

int vmseal_ttlv_encode_secret(const vmseal_ttlv *root, vmseal_secret **out)
{
    *out = NULL;
    size_t size;
    int rc = encode_check(root, &size);
    if (rc < 0)
        return rc;
    vmseal_secret *s = vmseal_secret_new(size);
    if (!s)
        return vmseal_fail(ENOMEM, "ttlv: cannot allocate %zu bytes of secure memory", size);
    write_item(root, vmseal_secret_data(s));
    *out = s;
    return 0;
}

int vmseal_ttlv_encode_into(const vmseal_ttlv *root, uint8_t *buf, size_t cap, size_t *len)
{
    *len = 0;
    size_t size;
    int rc = encode_check(root, &size);
    if (rc < 0)
        return rc;
    *len = size;
    if (size > cap)
        return vmseal_fail(ENOSPC, "ttlv: %zu bytes do not fit in %zu", size, cap);
    memset(buf, 0, size);
    write_item(root, buf);
    return 0;
}

/* ---- decoding ------------------------------------------------------------ */

typedef struct {
    const uint8_t *base;   /* start of the whole buffer, for offsets */
    unsigned max_depth;
} dec_ctx;

static uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t get64(const uint8_t *p)
{
    return ((uint64_t)get32(p) << 32) | get32(p + 4);
}

static int all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

static int dec_fail(const dec_ctx *ctx, const uint8_t *at, const char *fmt, ...) VMSEAL_PRINTF(3, 4);
static int dec_fail(const dec_ctx *ctx, const uint8_t *at, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return vmseal_fail(EPROTO, "KMIP decode at byte %zu: %s", (size_t)(at - ctx->base), msg);
}
#define DEC_FAIL dec_fail

/* Decode one item from p[0..avail); *used gets its padded size. The parent
 * is only used to decide whether values are key material; the new node is
 * linked by the caller. */
static int decode_item(const dec_ctx *ctx, const uint8_t *p, size_t avail, unsigned depth,
                       int in_vendor_ext, int sensitive, vmseal_ttlv **out, size_t *used)
{
    *out = NULL;
    char lb[48];
    if (avail < 8)
        return DEC_FAIL(ctx, p, "truncated item header (%zu of 8 bytes)", avail);
    uint32_t tag = ((uint32_t)p[0] << 16) | ((uint32_t)p[1] << 8) | p[2];
    unsigned type = p[3];
    uint32_t vlen = get32(p + 4);
    if (!in_vendor_ext && !tag_in_range(tag))
        return DEC_FAIL(ctx, p, "tag 0x%06X is not a KMIP tag", tag);
    if (!type_valid(type))
        return DEC_FAIL(ctx, p, "%s has unknown item type 0x%02X", tag_label(tag, lb), type);
    size_t fl = fixed_len(type);
    if (fl && vlen != fl)
        return DEC_FAIL(ctx, p, "%s (%s) has length %u, must be %zu", tag_label(tag, lb),
                        vmseal_ttlv_type_name((int)type), vlen, fl);
    if (type == VMSEAL_TTLV_BIGINT && (vlen == 0 || vlen % 8 != 0))
        return DEC_FAIL(ctx, p, "%s (Big Integer) has length %u, not a non-zero multiple of 8",
                        tag_label(tag, lb), vlen);
    if (type == VMSEAL_TTLV_STRUCTURE && vlen % 8 != 0)
        return DEC_FAIL(ctx, p, "%s (Structure) has length %u, not a multiple of 8",
                        tag_label(tag, lb), vlen);
    size_t padded = pad8(vlen);
    if (padded > avail - 8)
        return DEC_FAIL(ctx, p, "%s claims %u bytes but only %zu remain", tag_label(tag, lb), vlen,
                        avail - 8);
    const uint8_t *v = p + 8;
    if (!all_zero(v + vlen, padded - vlen))
        return DEC_FAIL(ctx, v + vlen, "%s has non-zero padding", tag_label(tag, lb));

    vmseal_ttlv *t = node_new(tag, (vmseal_ttlv_type)type);
    if (!t)
        return vmseal_fail(ENOMEM, "KMIP decode: out of memory");
    int sens = sensitive || vmseal_kmip_tag_is_sensitive(tag);
    int rc = 0;
    switch (type) {
    case VMSEAL_TTLV_STRUCTURE: {
        if (depth + 1 > ctx->max_depth) {
            rc = DEC_FAIL(ctx, p, "structures nested deeper than %u levels", ctx->max_depth);
            break;
        }
        int vext = in_vendor_ext || tag == VMSEAL_KMIP_TAG_VENDOR_EXTENSION;
        size_t off = 0;
        while (off < vlen) {
            vmseal_ttlv *c;
            size_t cu;
            rc = decode_item(ctx, v + off, vlen - off, depth + 1, vext, sens, &c, &cu);
            if (rc < 0)
                break;
            link_child(t, c);
            off += cu;
        }
        break;
    }
    case VMSEAL_TTLV_INTEGER:
    case VMSEAL_TTLV_INTERVAL:
        t->v.i = (type == VMSEAL_TTLV_INTEGER) ? (int64_t)(int32_t)get32(v) : (int64_t)get32(v);
        break;
    case VMSEAL_TTLV_ENUM:
        t->v.i = (int64_t)get32(v);
        break;
    case VMSEAL_TTLV_BOOL: {
        uint64_t b = get64(v);
        if (b > 1)
            rc = DEC_FAIL(ctx, v, "%s (Boolean) is neither 0 nor 1", tag_label(tag, lb));
        t->v.i = (int64_t)b;
        break;
    }
    case VMSEAL_TTLV_LONG:
    case VMSEAL_TTLV_DATETIME:
        t->v.i = (int64_t)get64(v);
        break;
    case VMSEAL_TTLV_TEXT: {
        size_t bad = utf8_check(v, vlen);
        if (bad != vlen) {
            rc = DEC_FAIL(ctx, v + bad, "%s (Text String) is not valid UTF-8 (or has a NUL)",
                          tag_label(tag, lb));
            break;
        }
    }
        /* fall through */
    default: /* Byte String, Big Integer */
        if (set_value(t, v, vlen, sens) < 0)
            rc = vmseal_fail(ENOMEM, "KMIP decode: out of memory");
        break;
    }
    if (rc < 0) {
        free_tree(t);
        return rc;
    }
    *out = t;
    *used = 8 + padded;
    return 0;
}

int vmseal_ttlv_decode_ex(const uint8_t *buf, size_t len, const vmseal_ttlv_limits *limits,
                          vmseal_ttlv **out)
{
    *out = NULL;
    size_t max_size = limits && limits->max_size ? limits->max_size : VMSEAL_TTLV_DEFAULT_MAX_SIZE;
    dec_ctx ctx = {
        .base = buf,
        .max_depth = limits && limits->max_depth ? limits->max_depth : VMSEAL_TTLV_DEFAULT_MAX_DEPTH,
    };
    if (!buf && len)
        return vmseal_fail(EINVAL, "KMIP decode: no buffer");
    if (len > max_size)
        return vmseal_fail(EMSGSIZE, "KMIP decode: message of %zu bytes exceeds the %zu-byte limit",
                           len, max_size);
    if (len == 0)
        return vmseal_fail(EPROTO, "KMIP decode: empty message");
    vmseal_ttlv *t;
    size_t used;
    int rc = decode_item(&ctx, buf, len, 0, 0, 0, &t, &used);
    if (rc < 0)
        return rc;
    if (used != len) {
        free_tree(t);
        return DEC_FAIL(&ctx, buf + used, "%zu trailing bytes after the message", len - used);
    }
    *out = t;
    return 0;
}

int vmseal_ttlv_decode(const uint8_t *buf, size_t len, vmseal_ttlv **out)
{
    return vmseal_ttlv_decode_ex(buf, len, NULL, out);
}

int vmseal_ttlv_frame_len(const uint8_t hdr[8], size_t max_size, size_t *total)
{
    *total = 0;
    if (!max_size)
        max_size = VMSEAL_TTLV_DEFAULT_MAX_SIZE;
    uint32_t tag = ((uint32_t)hdr[0] << 16) | ((uint32_t)hdr[1] << 8) | hdr[2];
    if (!tag_in_range(tag))
        return vmseal_fail(EPROTO, "KMIP: tag 0x%06X is not a KMIP tag (not a KMIP message?)", tag);
    if (hdr[3] != VMSEAL_TTLV_STRUCTURE)
        return vmseal_fail(EPROTO, "KMIP: message is not a structure (type 0x%02X)", hdr[3]);
    uint32_t vlen = get32(hdr + 4);
    if (vlen % 8 != 0)
        return vmseal_fail(EPROTO, "KMIP: message length %u is not a multiple of 8", vlen);
    if ((size_t)vlen + 8 > max_size)
        return vmseal_fail(EMSGSIZE, "KMIP: message of %zu bytes exceeds the %zu-byte limit",
                           (size_t)vlen + 8, max_size);
    *total = (size_t)vlen + 8;
    return 0;
}
