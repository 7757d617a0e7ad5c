/* DiscoverVersions and Query. */
#include <stdio.h>

#include "ops.h"

static const vmseal_kmip_version supported[] = {{1, 4}, {1, 3}, {1, 2}, {1, 1}, {1, 0}};
#define N_SUPPORTED (sizeof(supported) / sizeof(supported[0]))

static void add_version(vmseal_ttlv *resp, const vmseal_kmip_version *v)
{
    vmseal_ttlv *pv = vmseal_ttlv_add_struct(resp, VMSEAL_KMIP_TAG_PROTOCOL_VERSION);
    vmseal_ttlv_add_int(pv, VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MAJOR, v->major);
    vmseal_ttlv_add_int(pv, VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MINOR, v->minor);
}

/* Our versions, highest first; when the client lists some, only those we
 * share, still in our order of preference. */
int kmsd_op_discover_versions(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp)
{
    size_t n_client = vmseal_ttlv_count(req, VMSEAL_KMIP_TAG_PROTOCOL_VERSION);
    for (size_t i = 0; i < N_SUPPORTED; i++) {
        int take = n_client == 0;
        for (vmseal_ttlv *pv = NULL;
             !take && (pv = vmseal_ttlv_next(req, VMSEAL_KMIP_TAG_PROTOCOL_VERSION, pv));) {
            int32_t ma, mi;
            if (vmseal_ttlv_find_int(pv, VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MAJOR, &ma) < 0 ||
                vmseal_ttlv_find_int(pv, VMSEAL_KMIP_TAG_PROTOCOL_VERSION_MINOR, &mi) < 0)
                return kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD, "bad Protocol Version");
            take = ma == supported[i].major && mi == supported[i].minor;
        }
        if (take)
            add_version(resp, &supported[i]);
    }
    return 0;
}

int kmsd_op_query(kmsd_op *op, const vmseal_ttlv *req, vmseal_ttlv *resp)
{
    int ops = 0, objs = 0, info = 0;
    for (vmseal_ttlv *f = NULL; (f = vmseal_ttlv_next(req, VMSEAL_KMIP_TAG_QUERY_FUNCTION, f));) {
        uint32_t fn;
        if (vmseal_ttlv_get_enum(f, &fn) < 0)
            return kmsd_op_fail(op, VMSEAL_KMIP_REASON_INVALID_FIELD, "bad Query Function");
        ops |= fn == VMSEAL_KMIP_QUERY_OPERATIONS;
        objs |= fn == VMSEAL_KMIP_QUERY_OBJECTS;
        info |= fn == VMSEAL_KMIP_QUERY_SERVER_INFORMATION;
        /* other functions: nothing to report (no namespaces, extensions...) */
    }
    if (ops)
        for (size_t i = 0; i < kmsd_n_ops; i++)
            vmseal_ttlv_add_enum(resp, VMSEAL_KMIP_TAG_OPERATION, kmsd_ops[i].operation);
    if (objs) {
        vmseal_ttlv_add_enum(resp, VMSEAL_KMIP_TAG_OBJECT_TYPE, VMSEAL_KMIP_OBJ_SYMMETRIC_KEY);
        vmseal_ttlv_add_enum(resp, VMSEAL_KMIP_TAG_OBJECT_TYPE, VMSEAL_KMIP_OBJ_SECRET_DATA);
    }
    if (info)
        vmseal_ttlv_add_text(resp, VMSEAL_KMIP_TAG_VENDOR_IDENTIFICATION,
                             "vmseal vmseal-kmsd " VMSEAL_VERSION);
    return 0;
}
