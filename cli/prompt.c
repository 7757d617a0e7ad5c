/* vmseal CLI — reading passwords without echo, never from argv. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cli.h"

static int strip(vmseal_secret **s)
{
    size_t n = vmseal_secret_len(*s);
    const unsigned char *p = vmseal_secret_cdata(*s);
    while (n && (p[n - 1] == '\n' || p[n - 1] == '\r'))
        n--;
    /* only the first line counts */
    const unsigned char *nl = memchr(p, '\n', n);
    if (nl)
        n = (size_t)(nl - p);
    if (n == 0) {
        vmseal_secret_free(*s);
        *s = NULL;
        fprintf(stderr, "vmseal: empty password\n");
        return -EINVAL;
    }
    vmseal_secret_truncate(*s, n);
    return 0;
}

static int prompt_tty(const char *prompt, vmseal_secret **out)
{
    *out = NULL;
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "vmseal: no terminal to ask for the password: use --password-file FILE "
                        "(or - for stdin)\n");
        return -ENOTTY;
    }
    struct termios old, quiet;
    int have_tc = tcgetattr(fd, &old) == 0;
    if (have_tc) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
        quiet.c_lflag |= ICANON;
        tcsetattr(fd, TCSAFLUSH, &quiet);
    }
    if (write(fd, prompt, strlen(prompt)) < 0) {
        /* nothing useful to do */
    }
    vmseal_secret *s = vmseal_secret_new(1024);
    size_t n = 0;
    int rc = s ? 0 : -ENOMEM;
    while (rc == 0 && n < 1024) {
        char ch;
        ssize_t r = read(fd, &ch, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || ch == '\n' || ch == '\r')
            break;
        vmseal_secret_data(s)[n++] = (unsigned char)ch;
        ch = 0;
    }
    if (have_tc)
        tcsetattr(fd, TCSAFLUSH, &old);
    if (write(fd, "\n", 1) < 0) {
        /* ignore */
    }
    close(fd);
    if (rc < 0)
        return rc;
    if (n == 0) {
        vmseal_secret_free(s);
        fprintf(stderr, "vmseal: empty password\n");
        return -EINVAL;
    }
    vmseal_secret_truncate(s, n);
    *out = s;
    return 0;
}

int read_password(const char *file, int fd, const char *prompt, int confirm, vmseal_secret **out)
{
    *out = NULL;
    int rc;
    if (file || fd >= 0) {
        int rfd = fd;
        if (file)
            rfd = !strcmp(file, "-") ? STDIN_FILENO : open(file, O_RDONLY | O_CLOEXEC);
        if (rfd < 0) {
            fprintf(stderr, "vmseal: cannot open %s: %s\n", file, strerror(errno));
            return -errno;
        }
        rc = vmseal_secret_read_fd(rfd, 1026, out);
        if (file && strcmp(file, "-") != 0)
            close(rfd);
        if (rc < 0) {
            fprintf(stderr, "vmseal: password: %s\n", vmseal_last_error());
            return rc;
        }
        return strip(out);
    }
    rc = prompt_tty(prompt, out);
    if (rc < 0 || !confirm)
        return rc;
    vmseal_secret *again = NULL;
    rc = prompt_tty("Repeat the password: ", &again);
    if (rc < 0) {
        vmseal_secret_free(*out);
        *out = NULL;
        return rc;
    }
    int same = vmseal_secret_cmp(*out, again) == 0;
    vmseal_secret_free(again);
    if (!same) {
        vmseal_secret_free(*out);
        *out = NULL;
        fprintf(stderr, "vmseal: the passwords differ\n");
        return -EINVAL;
    }
    return 0;
}
