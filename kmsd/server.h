/* vmseal-kmsd — the running server: configuration, TLS context, store. */
#ifndef KMSD_SERVER_H
#define KMSD_SERVER_H

#include <pthread.h>
#include <stdatomic.h>

#include <openssl/ssl.h>

#include <vmseal/kmip.h>

#include "config.h"
#include "masterkey.h"
#include "store.h"

#define KMSD_MAX_LISTEN 4

typedef struct kmsd_conn kmsd_conn;

typedef struct kmsd_server {
    kmsd_config *cfg;
    SSL_CTX *tls;
    kmsd_masterkey *mk;
    kmsd_store *store;
    int lock_fd;
    int listen_fd[KMSD_MAX_LISTEN];
    int n_listen;
    int port;                  /* the bound port (after port 0) */
    int wake[2];               /* self-pipe: stop request */
    atomic_int stopping;
    pthread_mutex_t conn_lock;
    pthread_cond_t conn_cond;
    kmsd_conn *conns;          /* live connections (for shutdown) */
    int n_conns;
} kmsd_server;

/* listener.c */
int kmsd_listen(kmsd_server *srv, const char *address, int port) VMSEAL_MUST_CHECK;
int kmsd_serve(kmsd_server *srv);          /* until kmsd_server_stop() */
void kmsd_server_stop(kmsd_server *srv);   /* async-signal-safe */

/* A live connection (listener.c keeps the list for shutdown). */
struct kmsd_conn {
    int fd;
    int fd_open;               /* handshake done, fd owned by the SSL */
    char peer[64];             /* "address:port" */
    kmsd_conn *next, *prev;
};

/* listener.c: mark the connection's fd live (after the handshake; returns
 * -ECANCELED when the server is stopping) or closing. */
int kmsd_conn_set_open(kmsd_server *srv, kmsd_conn *c, int open);

/* session.c: one TLS connection from handshake to close. */
void kmsd_session_run(kmsd_server *srv, kmsd_conn *c);

/* session.c: answer one request message (exposed for tests and fuzzing). */
vmseal_ttlv *kmsd_process_message(kmsd_server *srv, const char *identity, const char *peer,
                                  const uint8_t *buf, size_t len);

#endif
