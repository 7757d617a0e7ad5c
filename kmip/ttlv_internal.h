/* Private: the TTLV tree node, shared by the codec and the dumper. */
#ifndef VMSEAL_KMIP_TTLV_INTERNAL_H
#define VMSEAL_KMIP_TTLV_INTERNAL_H

#include <vmseal/kmip.h>

struct vmseal_ttlv {
    uint32_t tag;
    uint8_t type;         /* vmseal_ttlv_type */
    uint8_t secure;       /* variable-length value lives in v.sec */
    int err;              /* root only: first build error (negative errno) */
    char *errmsg;         /* root only: its message */
    struct vmseal_ttlv *parent, *first, *last, *next;
    size_t len;           /* Text/Byte String/Big Integer: value length */
    union {
        int64_t i;        /* Integer, Long, Enumeration, Boolean, Date-Time, Interval */
        uint8_t *p;       /* variable-length value + a NUL, on the heap */
        vmseal_secret *sec; /* same, in secure memory */
    } v;
};

/* Pointer to a variable-length value (NUL-terminated). */
static inline const uint8_t *ttlv_value_ptr(const struct vmseal_ttlv *t)
{
    return t->secure ? vmseal_secret_cdata(t->v.sec) : t->v.p;
}

/* Strict UTF-8 without NUL. */
bool ttlv_utf8_valid(const char *s, size_t len);

/* Whether an item is key material by its own tag or an ancestor's. */
bool ttlv_in_sensitive(const struct vmseal_ttlv *t);

#endif
