/* vmseal-managerd — the API layer (managerd.h has the domain below it).
 *
 * api.c routes a request by its path and authenticates it; the handler of
 * the resource (api_<resource>.c) parses the request, checks the caller's
 * privileges (api_authz.c, with the one table of operations and privileges
 * in api_table.c), calls a domain function (managerd.h) and maps its result
 * to HTTP and JSON. A failed domain call is answered by api_fail(): the
 * status from its errno by the table of lib/net/http_status.c, the message
 * from vmseal_last_error(). Handlers run no SQL.
 */
#ifndef VMSEAL_MANAGERD_API_H
#define VMSEAL_MANAGERD_API_H

#include "managerd.h"

/* One API request while it is handled. */
typedef struct api_ctx {
    manager *m;
    const vmseal_http_request *req;
    vmseal_http_response *resp;
    char user[80];                 /* authenticated user ("" if none) */
    char role[80];
    char *privileges;              /* space-separated, malloc'd */
    char host[80];                 /* host agent identified by its certificate */
    const char *token;             /* the session token the request carried */
    int cookie;                    /* ...in the web client's cookie (not Bearer) */
    const char *seg[8];            /* path segments after /api/v1/ */
    char segbuf[1024];
    size_t nseg;
} api_ctx;

/* ---- api_table.c: the endpoint table -------------------------------------- */

typedef struct api_op {
    const char *id, *method, *path;
    const char *privileges;  /* all needed, space-separated; NULL = any user */
    const char *crypto;      /* also needed when the VM is encrypted */
    const char *on;          /* root, vm, host, object */
    const char *cli, *note;
} api_op;
extern const api_op mgr_api_ops[];               /* NULL-terminated */
const api_op *api_op_find(const char *id);
json_t *api_table_json(void);

/* ---- api.c ----------------------------------------------------------------- */

void api_handle(void *arg, const vmseal_http_request *req, vmseal_http_response *resp);
/* Helpers for handlers. */
int api_body(api_ctx *ctx, const api_schema *s, json_t **out);      /* 400 on failure */
/* Map a negative errno from a domain function to an HTTP error: the status
 * by lib/net/http_status.c, the message vmseal_last_error(). */
void api_fail(api_ctx *ctx, int rc);
/* rc < 0: api_fail (out, if any, is dropped); else status with out as the
 * body (taken). */
void api_reply(api_ctx *ctx, int rc, int status, json_t *out);

/* ---- api_authz.c: privilege checks ---------------------------------------- */

/* Check the op's privileges (api_table.c) on the object the op names
 * (name: VM/host name, or a whole "kind:name" for ops "on" object); 403
 * naming the missing privilege and a "denied" event on failure. */
int api_authorize(api_ctx *ctx, const char *op, const char *name);
/* 403 + "denied" event for op on object; why replaces the default text. */
int api_deny(api_ctx *ctx, const char *op, const char *object, const char *privilege, const char *why);
/* Need every privilege of want on object (granting, assigning roles). */
int api_authorize_set(api_ctx *ctx, const char *op, const char *object, privset want);
/* Need every privilege target holds (changing or removing a user). */
int api_require_dominance(api_ctx *ctx, const char *op, const char *target);
/* Whether the user holds privilege on object (no reply, no event). */
int api_may(api_ctx *ctx, const char *privilege, const char *object);

/* Resource handlers (api_<resource>.c): they fill ctx->resp. */
void api_session(api_ctx *ctx);
void api_users(api_ctx *ctx);
void api_roles(api_ctx *ctx);
void api_events(api_ctx *ctx);
void api_kms(api_ctx *ctx);
void api_hosts(api_ctx *ctx);
void api_vms(api_ctx *ctx);
/* GET /vms/{vm}/console | /vnc (api_console.c) */
void api_vm_console(api_ctx *ctx, const char *name, int vnc);
void api_vm_nics(api_ctx *ctx);   /* /vms/{vm}/nics[/{mac}] (api_nics.c) */
void api_vm_snapshots(api_ctx *ctx);   /* /vms/{vm}/snapshots[/{snapshot}[/revert]] */
void api_tasks(api_ctx *ctx);
void api_groups(api_ctx *ctx);
void api_session_privileges(api_ctx *ctx);
void api_permissions(api_ctx *ctx);
void api_keys(api_ctx *ctx);
void api_diagnostics(api_ctx *ctx);

/* ---- api_web.c: the web client (docs/web.md) ------------------------------- */

/* The session cookie of the web client (HttpOnly, Secure, SameSite=Strict;
 * the __Host- prefix binds it to this origin and path /). */
#define API_COOKIE "__Host-vmseal-session"
/* Header the web client sends its session's CSRF token in. */
#define API_CSRF_HEADER "X-CSRF-Token"

/* The security headers every answer of the manager carries (CSP without
 * inline script or eval, Trusted Types, no framing, no sniffing, no
 * referrer). */
void api_web_headers(vmseal_http_response *resp);
/* Whether path is the web client's (/, /ui, /ui/...). */
int api_web_path(const char *path);
/* GET / and /ui/...: the embedded static files; /ui/api-table.json is the
 * operation table (api_table.c). */
void api_web(api_ctx *ctx);
/* Set-Cookie for a new session (token, lifetime in seconds) or, token
 * NULL, one that removes the cookie. */
void api_web_set_cookie(vmseal_http_response *resp, const char *token, long long max_age);
/* For a request authenticated by the cookie: refuse (403, "denied" event,
 * -EACCES) a state-changing method that is cross-site or lacks the
 * session's CSRF token; 0 when it may go on. */
int api_web_csrf_check(api_ctx *ctx);
/* A browser's login (cookie mode): refuse one that is not same-origin
 * JSON (login CSRF); 0 when it may go on. */
int api_web_login_check(api_ctx *ctx);

/* Embedded static files (generated from web/ by web/embed.py). */
typedef struct web_asset {
    const char *path;           /* "/ui/js/app.js" */
    const char *type;           /* Content-Type */
    const unsigned char *data;
    size_t len;
} web_asset;
extern const web_asset web_assets[];  /* path NULL ends it */

#endif
