/* vmseal-crypto-util: shared declarations of the verbs and their helpers. */
#ifndef VMSEAL_CRYPTO_UTIL_H
#define VMSEAL_CRYPTO_UTIL_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <vmseal/common.h>
#include <vmseal/secret.h>

/* Exit statuses (docs/crypto-util.md). */
#define CU_OK 0
#define CU_PLAIN 1     /* check: some file is not encrypted */
#define CU_ERROR 2     /* any failure */
#define CU_USAGE 64    /* bad command line (EX_USAGE) */

extern const char *cu_prog;
extern int cu_quiet;
extern volatile sig_atomic_t cu_cancel;

/* Where the KEK comes from: --kek-file F or --kek-fd N, never argv. */
typedef struct cu_kek_opts {
    const char *file;
    int fd;              /* -1: none */
    const char *id;      /* --kek-id */
    const char *provider;/* --provider (default "local") */
} cu_kek_opts;

void cu_kek_opts_init(cu_kek_opts *k);
/* Load the 32-byte KEK (raw or hex). Prints the error; returns 0 or -1. */
int cu_kek_load(const cu_kek_opts *k, vmseal_secret **kek);
/* Validate --kek-id / --provider for writing; prints the error. */
int cu_kek_check_ids(const cu_kek_opts *k);

/* Read a passphrase (raw bytes, one trailing newline dropped) from an fd or
 * from a file that must not be group/world accessible. */
int cu_passphrase_load(const char *file, int fd, vmseal_secret **out);

/* Error output: "vmseal-crypto-util: <verb>: <message>". */
void cu_err(const char *fmt, ...) VMSEAL_PRINTF(1, 2);
/* cu_err with vmseal_last_error() appended; returns CU_ERROR. A message
 * that already starts with "WHAT: " (a file the library named) is not
 * prefixed twice. */
int cu_fail(const char *what);
/* msg without a leading "what: " */
const char *cu_msg_after(const char *msg, const char *what);
void cu_info(const char *fmt, ...) VMSEAL_PRINTF(1, 2);

/* Parse a non-negative integer / size with K M G T (binary) suffix. */
int cu_parse_uint(const char *s, uint64_t *out);
int cu_parse_size(const char *s, uint64_t *out);
int cu_parse_fd(const char *s, int *fd);

/* Progress bar on stderr when it is a TTY (and not --quiet). */
typedef struct cu_progress {
    const char *label;
    int enabled;
    double start, last;
} cu_progress;
void cu_progress_init(cu_progress *p, const char *label);
void cu_progress_update(uint64_t done, uint64_t total, void *ctx); /* vmseal_progress_fn shape */
void cu_progress_end(cu_progress *p);

/* SIGINT/SIGTERM set cu_cancel (long disk work stops at a checkpoint). */
void cu_install_cancel_handler(void);

/* Output file written as "<dir>/.<name>.tmp-XXXXXX", renamed on commit,
 * removed on abort. "-" means stdout (no temp file). */
typedef struct cu_out {
    const char *path;    /* final path, or "-" */
    char *tmp;
    int fd;
    int force;           /* replace an existing file */
} cu_out;
int cu_out_open(cu_out *o, const char *path, int force, mode_t mode);
int cu_out_commit(cu_out *o);
void cu_out_abort(cu_out *o);

double cu_now(void);

/* A disk (or the NVRAM) of a vmseal-hostd VM home folder: its key safe is
 * in the folder's vm.conf (crypto-util/vmhome.c, read through the schema
 * module include/vmseal/vmrecord.h). */
typedef struct vmseal_vmrec vmseal_vmrec;
typedef struct cu_vmdisk {
    vmseal_vmrec *rec;     /* the VM's configuration */
    char *conf_path;
    char *image;           /* folder of vm.conf + the image's file name */
    int index;             /* disk N, -1 for the NVRAM */
    int next;              /* the image an unfinished operation is writing */
    char key[48];          /* the key safe's key in vm.conf (e.g. disk0.keysafe) */
    const char *keysafe;   /* that key safe (in rec), NULL when absent */
    char object[64];       /* what the key safe is bound to: disk:<uuid>, vm:<uuid> */
    char uuid[40];         /* the disk's LUKS UUID in vm.conf ("" for the NVRAM) */
} cu_vmdisk;
/* vm.conf at conf_path, which = "N" or "nvram" (+ ".next"). 0 or -errno. */
int cu_vmhome_open(const char *conf_path, const char *which, cu_vmdisk *d);
/* The vm.conf beside image, if it names image: 1 found, 0 not, <0 error. */
int cu_vmhome_lookup(const char *image, cu_vmdisk *d);
void cu_vmdisk_clear(cu_vmdisk *d);

/* Verbs: argc/argv start at the verb name. */
int cu_check_main(int argc, char **argv);
int cu_seal_main(int argc, char **argv);
int cu_unseal_main(int argc, char **argv);
int cu_coredump_main(int argc, char **argv);
int cu_hostkey_main(int argc, char **argv);
int cu_hostcore_decrypt_main(int argc, char **argv);
int cu_log_main(int argc, char **argv);
int cu_disk_main(int argc, char **argv);
int cu_bench_main(int argc, char **argv);

#endif
