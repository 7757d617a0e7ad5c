/* vmseal-kmsd — `init` (a working setup in a new folder) and `enroll`
 * (client certificates with the clientAuth EKU), with the OpenSSL API. */
#ifndef KMSD_PKI_H
#define KMSD_PKI_H

#include <stddef.h>

#include "config.h"

/* What every node of a key server is made with, by `init` (the first
 * node) and `join` (another node of a cluster on PostgreSQL). */
typedef struct kmsd_node_opts {
    int key_type;              /* of the server key; 0: RSA 2048 (or VMSEAL_PKI_EC_P256) */
    const char *hosts[16];     /* extra server names / addresses for the SAN */
    size_t n_hosts;
    int port;                  /* 0: 5696 */
    const char *listen_address;/* NULL: 0.0.0.0 */
    const char *pkcs11_module; /* NULL: master key in a file */
    const char *pkcs11_token;
    const char *pkcs11_pin_file;
    const char *pkcs11_key_label;
    int cert_days;             /* 0: 825 */
    const char *conninfo_file; /* store = postgresql: this database */
    const char *node_name;     /* NULL: the host name */
} kmsd_node_opts;

typedef struct kmsd_init_opts {
    kmsd_node_opts node;       /* conninfo_file: a database that must hold no store yet */
    int ca_days;               /* 0: 3650 */
} kmsd_init_opts;

/* Create dir (0700) with master key, CA, server certificate, kmsd.conf,
 * the store, and an admin client certificate in dir/clients/admin. */
int kmsd_init(const char *dir, const kmsd_init_opts *o);

/* Another node of a cluster on PostgreSQL: dir gets the cluster's CA
 * (ca.crt, ca.key), a server certificate signed by it, a copy of the
 * master key file (or the same PKCS#11 token settings) and a kmsd.conf on
 * the same database. Refused, before anything is written, when the master
 * key does not open the store in the database (-EKEYREJECTED) or there is
 * no store (-ENOENT). */
typedef struct kmsd_join_opts {
    kmsd_node_opts node;       /* conninfo_file: required, the cluster's database */
    const char *master_key_file;
    const char *ca_file, *ca_key_file;
} kmsd_join_opts;
int kmsd_join(const char *dir, const kmsd_join_opts *o);

/* Issue a client certificate "CN=name,O=vmseal" (clientAuth EKU) with its
 * key (0600) and the CA into outdir (NULL: <config dir>/clients/<name>).
 * The identity string the server will see is written to identity. */
int kmsd_enroll(const kmsd_config *cfg, const char *name, const char *outdir, int key_type,
                int days, char *identity, size_t idlen);

#endif
