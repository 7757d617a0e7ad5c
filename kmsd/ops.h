/* vmseal-kmsd — KMIP operations: the per-item context and the handlers,
 * one file per family (ops_meta.c, ops_keys.c, ops_attrs.c, ops_locate.c,
 * ops_lifecycle.c), sharing the attribute model in attrs.c. */
#ifndef KMSD_OPS_H
#define KMSD_OPS_H

#include <stdint.h>

#include <vmseal/kmip.h>
#include <vmseal/kmip_msg.h>

#include "server.h"
#include "store.h"

typedef struct kmsd_op {
    kmsd_server *srv;
    const char *identity;         /* certificate subject */
    const char *peer;             /* address:port */
    int admin;                    /* identity listed as admin */
    vmseal_kmip_version version;  /* the request's protocol version */
    char placeholder[KMSD_UID_MAX]; /* ID Placeholder within one request */
    /* result of the current item */
    uint32_t reason;
    char message[256];
    char uid[KMSD_UID_MAX];       /* the object acted on, for the audit line */
} kmsd_op;

/* Handlers fill resp (a detached Response Payload) and return 0, or return
 * kmsd_op_fail(). */
typedef int (*kmsd_op_fn)(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp);

int kmsd_op_fail(kmsd_op *op, uint32_t reason, const char *fmt, ...) VMSEAL_PRINTF(3, 4);
/* Store/transport failure: General Failure with the vmseal error message. */
int kmsd_op_fail_errno(kmsd_op *op, int err, const char *what);

/* The Unique Identifier of the request payload, or the ID Placeholder. */
int kmsd_op_uid(kmsd_op *op, const vmseal_ttlv *req, char uid[KMSD_UID_MAX]);
/* Load an object the caller may act on: Item Not Found / Permission Denied. */
int kmsd_op_load(kmsd_op *op, kmsd_db *db, const char *uid, kmsd_obj *o);
/* Open a read (or, with write, a write) transaction and kmsd_op_load() the
 * object; on failure the transaction is ended again and -1 returned. */
int kmsd_op_begin(kmsd_op *op, int write, const char *uid, kmsd_db **db, kmsd_obj *o);

int64_t kmsd_now(void);

/* ops_meta.c */
int kmsd_op_discover_versions(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp);
int kmsd_op_query(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp);
/* ops_keys.c */
int kmsd_op_create(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp);
int kmsd_op_register(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp);
int kmsd_op_get(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp);
/* ops_attrs.c */
int kmsd_op_get_attributes(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp);
int kmsd_op_get_attribute_list(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp);
int kmsd_op_add_attribute(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp);
int kmsd_op_modify_attribute(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp);
int kmsd_op_delete_attribute(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp);
/* ops_locate.c */
int kmsd_op_locate(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp);
/* ops_lifecycle.c */
int kmsd_op_activate(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp);
int kmsd_op_revoke(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp);
int kmsd_op_destroy(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp);

/* The operations this server implements (for Query and dispatch). */
typedef struct kmsd_op_entry {
    uint32_t operation;
    kmsd_op_fn fn;
} kmsd_op_entry;
extern const kmsd_op_entry kmsd_ops[];
extern const size_t kmsd_n_ops;

/* ---- attrs.c: the attribute model ---------------------------------------- */

enum {
    KMSD_ATTR_TEMPLATE = 1,   /* may be given in Create/Register */
    KMSD_ATTR_ADD = 2,        /* AddAttribute */
    KMSD_ATTR_MODIFY = 4,     /* ModifyAttribute */
    KMSD_ATTR_DELETE = 8,     /* DeleteAttribute */
    KMSD_ATTR_COLUMN = 16,    /* derived from the object row, never stored */
    KMSD_ATTR_MULTI = 32,     /* multi-instance */
    KMSD_ATTR_KNOWN = 64,     /* a name this server knows */
};

/* Rules for an attribute name (custom "x-" names: client-settable, multi). */
unsigned kmsd_attr_rules(const char *name);

/* Validate an Attribute Value against the attribute's type. */
int kmsd_attr_check_value(kmsd_op *op, const char *name, const vmseal_ttlv *value);

/* Canonical encoding of an Attribute Value item (malloc'd). */
int kmsd_attr_encode(const vmseal_ttlv *value, uint8_t **buf, size_t *len);

/* Append Attribute { Name, [Index], Value } to parent from stored bytes. */
int kmsd_attr_append_stored(vmseal_ttlv *parent, const char *name, int idx, const uint8_t *v,
                            size_t len);
/* Append the column-derived attributes (name NULL: all of them). */
int kmsd_attr_append_columns(vmseal_ttlv *parent, const kmsd_obj *o, const char *name);

/* Store one attribute value (next free index for multi-instance ones;
 * replacing for single-instance). Returns the index used. */
int kmsd_attr_store(kmsd_db *db, const char *uid, const char *name, const vmseal_ttlv *value,
                    int replace_single);
/* Store a typed value directly. */
int kmsd_attr_store_int(kmsd_db *db, const char *uid, const char *name, int type, int64_t v);

/* Apply the attributes of a Template-Attribute (Create/Register). Returns 0
 * or kmsd_op_fail(); *activation is set from an Activation Date attribute. */
int kmsd_attr_apply_template(kmsd_op *op, kmsd_db *db, const char *uid,
                             const vmseal_ttlv *tmpl, int64_t *activation);

#endif
