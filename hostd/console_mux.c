/* vmseal-hostd — interactive consoles, the monitor's side (console_mux.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <vmseal/log.h>

#include "console_mux.h"
#include "strutil.h"

typedef struct msess {
    struct msess *next;
    hostd_cmux *x;
    uint64_t id;
    uint32_t kind;
    hostd_vm *vm;
    int vnc_fd;
    int wake[2];
    pthread_mutex_t lock;
    uint8_t *out;          /* guest output for the child (serial) */
    size_t out_len;
    uint8_t *in;           /* bytes for the guest / the VNC server */
    size_t in_len;
    int ended;             /* the serial console ended (VM off) */
    int net_closed;        /* the child closed it */
    char why[200];         /* we close it: why */
    int tapped;
    int done;              /* the thread finished: reap */
    pthread_t thread;
} msess;

struct hostd_cmux {
    hostd_host *host;
    ps_chan *chan;
    char manager_fp[65];
    pthread_mutex_t lock;
    msess *list;
    unsigned n;
};

static void wake(msess *s)
{
    if (write(s->wake[1], "x", 1) < 0) {
        /* full pipe: the thread wakes anyway */
    }
}

static void buf_free(uint8_t *p)
{
    if (p) {
        OPENSSL_cleanse(p, CMUX_QUEUE_MAX);
        free(p);
    }
}

/* Close it from our side (lock held): the first reason wins. */
static void fail_locked(msess *s, const char *why)
{
    if (!s->why[0])
        hostd_copy_str(s->why, sizeof(s->why), why);
}

/* The serial console's log thread: never blocks. */
static void tap(void *arg, const uint8_t *data, size_t len)
{
    msess *s = arg;
    pthread_mutex_lock(&s->lock);
    if (len == 0)
        s->ended = 1;
    else if (len > CMUX_QUEUE_MAX - s->out_len)
        fail_locked(s, "the console reader is too slow: closed");
    else {
        memcpy(s->out + s->out_len, data, len);
        s->out_len += len;
    }
    pthread_mutex_unlock(&s->lock);
    wake(s);
}

static int send_data(msess *s, const uint8_t *p, size_t n)
{
    while (n) {
        size_t k = n < PS_CONSOLE_CHUNK ? n : PS_CONSOLE_CHUNK;
        ps_buf b = {0};
        ps_put_u64(&b, s->id);
        ps_put_bytes(&b, p, k);
        int r = ps_send(s->x->chan, PS_CONSOLE_DATA, &b);
        ps_buf_free(&b);   /* wipes */
        if (r < 0)
            return r;
        p += k;
        n -= k;
    }
    return 0;
}

static int send_close(hostd_cmux *x, uint64_t id, const char *why)
{
    ps_buf b = {0};
    ps_put_u64(&b, id);
    char m[PS_TEXT_MAX + 1];
    hostd_copy_str(m, sizeof(m), why);
    ps_put_str(&b, m);
    int r = ps_send(x->chan, PS_CONSOLE_CLOSE, &b);
    ps_buf_free(&b);
    return r;
}

/* Write to the VNC server within a bound. */
static int vnc_write(int fd, const uint8_t *p, size_t n)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR)
            return -errno;
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        long ms = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
        if (ms >= CMUX_INPUT_TIMEOUT_MS)
            return -ETIMEDOUT;
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        (void)poll(&pf, 1, (int)(CMUX_INPUT_TIMEOUT_MS - ms));
    }
    return 0;
}

static void *sess_main(void *arg)
{
    msess *s = arg;
    uint8_t *out = malloc(CMUX_QUEUE_MAX), *in = malloc(CMUX_QUEUE_MAX);
    uint8_t *rd = malloc(PS_CONSOLE_CHUNK);
    int tell = 1;   /* send CLOSE at the end */
    if (!out || !in || !rd) {
        pthread_mutex_lock(&s->lock);
        fail_locked(s, "out of memory");
        pthread_mutex_unlock(&s->lock);
    }
    for (;;) {
        size_t no = 0, ni = 0;
        pthread_mutex_lock(&s->lock);
        if (out && in) {
            memcpy(out, s->out, no = s->out_len);
            memcpy(in, s->in, ni = s->in_len);
            OPENSSL_cleanse(s->out, s->out_len);
            OPENSSL_cleanse(s->in, s->in_len);
            s->out_len = s->in_len = 0;
        }
        int net_closed = s->net_closed, ended = s->ended, failed = s->why[0] != 0;
        pthread_mutex_unlock(&s->lock);
        if (net_closed) {
            tell = 0;
            break;
        }
        if (no && send_data(s, out, no) < 0) {
            tell = 0;   /* the link is gone */
            break;
        }
        if (ni) {
            int r = s->kind == PS_CONSOLE_SERIAL
                        ? hostd_vm_console_input(s->vm, in, ni, CMUX_INPUT_TIMEOUT_MS)
                        : vnc_write(s->vnc_fd, in, ni);
            if (r < 0) {
                pthread_mutex_lock(&s->lock);
                fail_locked(s, r == -ETIMEDOUT ? "the guest does not take input: closed"
                                                     : "the console is gone");
                pthread_mutex_unlock(&s->lock);
                continue;
            }
        }
        if (ended) {
            pthread_mutex_lock(&s->lock);
            fail_locked(s, "the VM's console ended (powered off)");
            pthread_mutex_unlock(&s->lock);
            break;
        }
        if (failed)
            break;
        struct pollfd p[2] = {{.fd = s->wake[0], .events = POLLIN},
                              {.fd = s->vnc_fd, .events = POLLIN}};
        int np = s->vnc_fd >= 0 ? 2 : 1;
        if (poll(p, (nfds_t)np, 1000) < 0 && errno != EINTR)
            break;
        if (p[0].revents) {
            char junk[64];
            while (read(s->wake[0], junk, sizeof(junk)) > 0) {
            }
        }
        if (np == 2 && p[1].revents) {
            ssize_t got = recv(s->vnc_fd, rd, PS_CONSOLE_CHUNK, MSG_DONTWAIT);
            if (got > 0) {
                if (send_data(s, rd, (size_t)got) < 0) {
                    tell = 0;
                    break;
                }
            } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
                pthread_mutex_lock(&s->lock);
                fail_locked(s, "the VM's display ended");
                pthread_mutex_unlock(&s->lock);
            }
        }
    }
    if (s->tapped)
        hostd_vm_console_untap(s->vm, s);   /* no tap() call after this */
    if (tell) {
        pthread_mutex_lock(&s->lock);
        fail_locked(s, "closed");
        pthread_mutex_unlock(&s->lock);
        (void)send_close(s->x, s->id, s->why);
    }
    if (out)
        OPENSSL_cleanse(out, CMUX_QUEUE_MAX);
    if (in)
        OPENSSL_cleanse(in, CMUX_QUEUE_MAX);
    if (rd)
        OPENSSL_cleanse(rd, PS_CONSOLE_CHUNK);
    free(out);
    free(in);
    free(rd);
    vmseal_clear_error();
    pthread_mutex_lock(&s->x->lock);
    s->done = 1;
    pthread_mutex_unlock(&s->x->lock);
    return NULL;
}

static void sess_free(msess *s)
{
    if (s->vnc_fd >= 0)
        close(s->vnc_fd);
    for (int i = 0; i < 2; i++)
        if (s->wake[i] >= 0)
            close(s->wake[i]);
    buf_free(s->out);
    buf_free(s->in);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* Join and free finished consoles (x->lock held). */
static void reap_locked(hostd_cmux *x)
{
    for (msess **pp = &x->list; *pp;) {
        msess *s = *pp;
        if (!s->done) {
            pp = &s->next;
            continue;
        }
        *pp = s->next;
        x->n--;
        pthread_join(s->thread, NULL);
        sess_free(s);
    }
}

static msess *find_locked(hostd_cmux *x, uint64_t id)
{
    for (msess *s = x->list; s; s = s->next)
        if (s->id == id && !s->done)
            return s;
    return NULL;
}

static int answer(hostd_cmux *x, uint64_t id, int status, const char *msg)
{
    ps_buf b = {0};
    ps_put_u64(&b, id);
    ps_put_u32(&b, (uint32_t)status);
    char m[PS_TEXT_MAX + 1];
    hostd_copy_str(m, sizeof(m), msg);
    ps_put_str(&b, m);
    int r = ps_send(x->chan, PS_CONSOLE_OPENED, &b);
    ps_buf_free(&b);
    return r;
}

static int on_open(hostd_cmux *x, const uint8_t *data, size_t len)
{
    ps_rd rd = {.p = data, .len = len};
    uint64_t id = ps_get_u64(&rd);
    uint32_t kind = ps_get_u32(&rd);
    char uuid[PS_UUID_MAX + 1], fpr[PS_FPR_MAX + 1];
    ps_get_str(&rd, uuid, sizeof(uuid), PS_UUID_MAX);
    ps_get_str(&rd, fpr, sizeof(fpr), PS_FPR_MAX);
    if (ps_rd_end(&rd) < 0 || (kind != PS_CONSOLE_SERIAL && kind != PS_CONSOLE_VNC))
        return vmseal_fail(EPROTO, "privsep: malformed CONSOLE_OPEN");
    if (x->manager_fp[0] && strcmp(fpr, x->manager_fp) != 0)
        return answer(x, id, 403, "client certificate is not the manager's (fingerprint)");
    hostd_vm *vm = hostd_host_find_vm(x->host, uuid);
    if (!vm)
        return answer(x, id, 404, "no such VM on this host");
    msess *s = calloc(1, sizeof(*s));
    if (!s)
        return answer(x, id, 503, "out of memory");
    s->x = x;
    s->id = id;
    s->kind = kind;
    s->vm = vm;
    s->vnc_fd = s->wake[0] = s->wake[1] = -1;
    pthread_mutex_init(&s->lock, NULL);
    s->out = malloc(CMUX_QUEUE_MAX);
    s->in = malloc(CMUX_QUEUE_MAX);
    int status = 200;
    char msg[300] = "";
    pthread_mutex_lock(&x->lock);
    reap_locked(x);
    unsigned vnc = 0;
    for (msess *o = x->list; o; o = o->next)
        vnc += o->vm == vm && o->kind == PS_CONSOLE_VNC && !o->done;
    if (find_locked(x, id))
        status = 409, snprintf(msg, sizeof(msg), "console id in use");
    else if (x->n >= CMUX_MAX)
        status = 429, snprintf(msg, sizeof(msg), "this host has %d consoles open already", CMUX_MAX);
    else if (kind == PS_CONSOLE_VNC && vnc >= CMUX_VNC_PER_VM)
        status = 429, snprintf(msg, sizeof(msg), "the VM has %d VNC consoles open already",
                               CMUX_VNC_PER_VM);
    pthread_mutex_unlock(&x->lock);
    if (status == 200 && (!s->out || !s->in || pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) != 0))
        status = 503, snprintf(msg, sizeof(msg), "out of resources");
    if (status == 200 && kind == PS_CONSOLE_VNC && (s->vnc_fd = hostd_vm_vnc_connect(vm)) < 0) {
        s->vnc_fd = -1;
        status = 409;
        hostd_copy_str(msg, sizeof(msg), vmseal_last_error());
    }
    if (status == 200 && kind == PS_CONSOLE_SERIAL) {
        int r = hostd_vm_console_tap(vm, tap, s);
        if (r < 0) {
            status = r == -EUSERS ? 429 : 409;
            hostd_copy_str(msg, sizeof(msg), vmseal_last_error());
            if (r == -ENOTCONN && !hostd_vm_encrypted(vm) && hostd_vm_running(vm))
                snprintf(msg, sizeof(msg), "the VM was started before vmseal had interactive "
                                           "consoles: power it off and on (its output is in "
                                           "vmseal vm log)");
        } else {
            s->tapped = 1;
        }
    }
    if (status == 200) {
        /* told before any DATA can follow */
        int r = answer(x, id, 200, "");
        if (r < 0 || pthread_create(&s->thread, NULL, sess_main, s) != 0) {
            if (s->tapped)
                hostd_vm_console_untap(vm, s);
            sess_free(s);
            return r < 0 ? r : send_close(x, id, "cannot start the console");
        }
        pthread_mutex_lock(&x->lock);
        s->next = x->list;
        x->list = s;
        x->n++;
        pthread_mutex_unlock(&x->lock);
        return 0;
    }
    sess_free(s);
    return answer(x, id, status, msg);
}

int hostd_cmux_handle(hostd_cmux *x, uint32_t type, const uint8_t *data, size_t len)
{
    if (type == PS_CONSOLE_OPEN)
        return on_open(x, data, len);
    ps_rd rd = {.p = data, .len = len};
    uint64_t id = ps_get_u64(&rd);
    if (type == PS_CONSOLE_DATA) {
        size_t n = 0;
        const uint8_t *p = ps_get_bytes(&rd, PS_CONSOLE_CHUNK, &n);
        if (ps_rd_end(&rd) < 0 || n == 0)
            return vmseal_fail(EPROTO, "privsep: malformed CONSOLE_DATA");
        pthread_mutex_lock(&x->lock);
        msess *s = find_locked(x, id);
        if (s) {
            pthread_mutex_lock(&s->lock);
            if (n > CMUX_QUEUE_MAX - s->in_len) {
                fail_locked(s, "input faster than the guest takes it: closed");
            } else {
                memcpy(s->in + s->in_len, p, n);
                s->in_len += n;
            }
            pthread_mutex_unlock(&s->lock);
            wake(s);
        }
        pthread_mutex_unlock(&x->lock);
        return 0;   /* a console that just ended: dropped */
    }
    if (type == PS_CONSOLE_CLOSE) {
        char why[PS_TEXT_MAX + 1];
        ps_get_str(&rd, why, sizeof(why), PS_TEXT_MAX);
        if (ps_rd_end(&rd) < 0)
            return vmseal_fail(EPROTO, "privsep: malformed CONSOLE_CLOSE");
        pthread_mutex_lock(&x->lock);
        msess *s = find_locked(x, id);
        if (s) {
            pthread_mutex_lock(&s->lock);
            s->net_closed = 1;
            pthread_mutex_unlock(&s->lock);
            wake(s);
        }
        pthread_mutex_unlock(&x->lock);
        return 0;
    }
    return vmseal_fail(EPROTO, "privsep: not a console message");
}

int hostd_cmux_new(hostd_host *h, ps_chan *chan, const char *manager_fp, hostd_cmux **out)
{
    hostd_cmux *x = calloc(1, sizeof(*x));
    if (!x)
        return vmseal_fail(ENOMEM, "out of memory");
    x->host = h;
    x->chan = chan;
    hostd_copy_str(x->manager_fp, sizeof(x->manager_fp), manager_fp ? manager_fp : "");
    pthread_mutex_init(&x->lock, NULL);
    *out = x;
    return 0;
}

unsigned hostd_cmux_count(hostd_cmux *x)
{
    pthread_mutex_lock(&x->lock);
    reap_locked(x);
    unsigned n = x->n;
    pthread_mutex_unlock(&x->lock);
    return n;
}

void hostd_cmux_free(hostd_cmux *x)
{
    if (!x)
        return;
    pthread_mutex_lock(&x->lock);
    for (msess *s = x->list; s; s = s->next) {
        pthread_mutex_lock(&s->lock);
        fail_locked(s, "the host agent stops");
        pthread_mutex_unlock(&s->lock);
        wake(s);
    }
    pthread_mutex_unlock(&x->lock);
    for (;;) {
        pthread_mutex_lock(&x->lock);
        reap_locked(x);
        unsigned n = x->n;
        pthread_mutex_unlock(&x->lock);
        if (n == 0)
            break;
        struct timespec ts = {0, 20000000L};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_destroy(&x->lock);
    free(x);
}
