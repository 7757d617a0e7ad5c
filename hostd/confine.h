/* vmseal-hostd — what every helper process hostd starts gets in its child
 * before exec (QEMU, the nbdkit disk servers and exports, qemu-img for
 * imports): no new privileges ever (PR_SET_NO_NEW_PRIVS) and, confined
 * (hostd is root and qemu_user is set), a capability bounding set of only
 * CAP_SETUID and CAP_SETGID, which a program that drops itself (QEMU
 * -runas, nbdkit -u) needs and its drop then clears; a program that does
 * not drop itself (qemu-img) is dropped here to the user and its group
 * with no supplementary groups and no way back to root.
 */
#ifndef VMSEAL_HOSTD_CONFINE_H
#define VMSEAL_HOSTD_CONFINE_H

#include <sys/types.h>

#include <vmseal/common.h>
#include <vmseal/diskimport.h>

/* In a forked child, async-signal-safe calls only: 0, or -1 (the caller
 * _exit(126)s). confine 0: no new privileges only. uid (gid) (uid_t)-1:
 * the program drops itself; else setgroups(0), setgid, setuid here. */
int hostd_confine_child(int confine, uid_t uid, gid_t gid);

/* qemu-img for imports, confined like QEMU: with qemu_user (hostd root)
 * it runs as that user (vmseal_import_opts.child_setup); the output (fd 4)
 * and the passphrase pipe (fd 5) are handed to the user for the import
 * (hostd_import_done gives the output back to root). The source must be
 * readable by the user: qemu-img reopens it through /dev/fd. */
typedef struct hostd_import_confine {
    int confine;
    uid_t uid;
    gid_t gid;
} hostd_import_confine;

/* Fill *c and *opts for qemu_user (NULL or "": not confined, opts of
 * defaults); src_fd, name: the source, checked readable by the user. A
 * negative errno with a message naming the user when it is not. */
int hostd_import_confine_init(const char *qemu_user, int src_fd, const char *name,
                              hostd_import_confine *c, vmseal_import_opts *opts) VMSEAL_MUST_CHECK;
/* After the import: the output file dirfd/name back to root:root 0600. */
void hostd_import_done(const hostd_import_confine *c, int dirfd, const char *name);

#endif
