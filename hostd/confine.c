/* vmseal-hostd — helper processes' confinement (confine.h). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include "confine.h"

int hostd_confine_child(int confine, uid_t uid, gid_t gid)
{
    if (confine)
        for (int cap = 0; cap <= 63; cap++)
            if (cap != CAP_SETUID && cap != CAP_SETGID &&
                prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
                return -1;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -1;
    if (confine && uid != (uid_t)-1 &&
        (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0 || setuid(0) == 0 ||
         getegid() != gid))
        return -1;
    return 0;
}

/* In the qemu-img child (root still): the output to the user, then drop. */
static int import_child_setup(void *arg)
{
    const hostd_import_confine *c = arg;
    /* 4: the output, 5: the passphrase pipe, when there are (the library
     * closes unused numbers): qemu-img reopens them through /dev/fd, which
     * checks their owner */
    struct stat st;
    if (c->confine && fstat(4, &st) == 0 && S_ISREG(st.st_mode) && fchown(4, c->uid, c->gid) != 0)
        return -1;
    if (c->confine && fstat(5, &st) == 0 && S_ISFIFO(st.st_mode) && fchown(5, c->uid, c->gid) != 0)
        return -1;
    return hostd_confine_child(c->confine, c->confine ? c->uid : (uid_t)-1, c->gid);
}

int hostd_import_confine_init(const char *qemu_user, int src_fd, const char *name,
                              hostd_import_confine *c, vmseal_import_opts *opts)
{
    memset(c, 0, sizeof(*c));
    memset(opts, 0, sizeof(*opts));
    c->uid = (uid_t)-1;
    c->gid = (gid_t)-1;
    opts->child_setup = import_child_setup;
    opts->child_arg = c;
    if (!qemu_user || !*qemu_user || geteuid() != 0)
        return 0;
    struct passwd *pw = getpwnam(qemu_user);
    if (!pw || pw->pw_uid == 0)
        return vmseal_fail(ENOENT, "user %s (qemu_user) does not exist or is root", qemu_user);
    c->confine = 1;
    c->uid = pw->pw_uid;
    c->gid = pw->pw_gid;
    struct stat st;
    if (fstat(src_fd, &st) != 0)
        return vmseal_fail(errno, "disk image %s: %s", name, strerror(errno));
    int readable = (st.st_uid == c->uid && (st.st_mode & S_IRUSR)) ||
                   (st.st_uid != c->uid && st.st_gid == c->gid && (st.st_mode & S_IRGRP)) ||
                   (st.st_uid != c->uid && st.st_gid != c->gid && (st.st_mode & S_IROTH));
    if (!readable)
        return vmseal_fail(EACCES, "%s is not readable by %s (qemu_user, as which qemu-img "
                           "runs): make it readable by that user's group or others", name,
                           qemu_user);
    return 0;
}

void hostd_import_done(const hostd_import_confine *c, int dirfd, const char *name)
{
    if (!c->confine)
        return;
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0) {
        (void)fchown(fd, 0, 0);
        (void)fchmod(fd, 0600);
        close(fd);
    }
}
