/* The diagnostic log shared by every program (include/vmseal/log.h). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <vmseal/log.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int log_level = VMSEAL_LOG_INFO;
/* All below under log_lock. */
static unsigned log_outputs = VMSEAL_LOG_STDERR;
static int log_fd = -1;
static int log_facility = LOG_DAEMON;
static int syslog_open;
static char log_program[VMSEAL_LOG_PROGRAM_MAX + 1];   /* "": program_invocation_short_name */
static char log_process[VMSEAL_LOG_PROCESS_MAX + 1];
/* openlog keeps the pointer: the ident must outlive every syslog() call. */
static char syslog_ident[VMSEAL_LOG_PROGRAM_MAX + 1];

static const char *const level_names[] = {"error", "warning", "info", "debug"};
static const int level_prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};

/* ------------------------------------------------------------ escaping */

/* Length of the well-formed UTF-8 character at p (2..4), or 0. */
static size_t utf8_len(const unsigned char *p, size_t avail)
{
    unsigned char b = p[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf;   /* range of the second byte */
    if (b >= 0xc2 && b <= 0xdf)
        n = 2;
    else if (b >= 0xe0 && b <= 0xef) {
        n = 3;
        if (b == 0xe0)
            lo = 0xa0;                    /* no overlong forms */
        else if (b == 0xed)
            hi = 0x9f;                    /* no surrogates */
    } else if (b >= 0xf0 && b <= 0xf4) {
        n = 4;
        if (b == 0xf0)
            lo = 0x90;
        else if (b == 0xf4)
            hi = 0x8f;                    /* nothing above U+10FFFF */
    } else
        return 0;
    if (avail < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

/* Well-formed characters a viewer may treat as a line end or use to
 * reorder what is shown: C1 controls (U+0080..U+009F, NEL among them),
 * U+2028/U+2029, the bidirectional embeddings, overrides and isolates. */
static int utf8_suspect(const unsigned char *p, size_t n)
{
    if (n == 2)
        return p[0] == 0xc2 && p[1] <= 0x9f;
    if (n == 3 && p[0] == 0xe2 && p[1] == 0x80)
        return p[2] >= 0xa8 && p[2] <= 0xae;      /* U+2028..U+202E */
    if (n == 3 && p[0] == 0xe2 && p[1] == 0x81)
        return p[2] >= 0xa6 && p[2] <= 0xa9;      /* U+2066..U+2069 */
    return 0;
}

size_t vmseal_log_escape(const char *in, size_t len, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)in;
    size_t i = 0, o = 0;
    if (cap == 0)
        return 0;
    while (i < len) {
        char unit[16];
        size_t ulen = 0, used = 1;
        unsigned char c = p[i];
        if (c == '\n' || c == '\r' || c == '\t' || c == '\\') {
            unit[ulen++] = '\\';
            unit[ulen++] = c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : '\\';
        } else if (c >= 0x20 && c < 0x7f) {
            unit[ulen++] = (char)c;
        } else {
            size_t n = c >= 0x80 ? utf8_len(p + i, len - i) : 0;
            if (n && !utf8_suspect(p + i, n)) {
                memcpy(unit, p + i, n);
                ulen = used = n;
            } else {
                /* a control character, a stray byte, or a suspect character:
                 * every byte as \xHH */
                used = n ? n : 1;
                for (size_t k = 0; k < used; k++) {
                    unit[ulen++] = '\\';
                    unit[ulen++] = 'x';
                    unit[ulen++] = hex[p[i + k] >> 4];
                    unit[ulen++] = hex[p[i + k] & 0xf];
                }
            }
        }
        if (o + ulen >= cap)
            break;
        memcpy(out + o, unit, ulen);
        o += ulen;
        i += used;
    }
    out[o] = '\0';
    return i;
}

/* --------------------------------------------------------- configuration */

static void copy_name(char *dst, size_t cap, const char *src)
{
    /* program and process names come from the code, but keep the tag one
     * plain word anyway */
    size_t o = 0;
    for (; src && *src && o + 1 < cap; src++) {
        unsigned char c = (unsigned char)*src;
        dst[o++] = (c > 0x20 && c < 0x7f && c != '[' && c != ']') ? (char)c : '_';
    }
    dst[o] = '\0';
}

static const char *program_locked(void)
{
    return log_program[0] ? log_program : program_invocation_short_name;
}

/* (Re)connect syslog under the lock: lazily, on the first line. */
static void syslog_reopen_locked(void)
{
    if (syslog_open)
        closelog();
    syslog_open = 0;
    if (log_outputs & VMSEAL_LOG_SYSLOG) {
        copy_name(syslog_ident, sizeof(syslog_ident), program_locked());
        openlog(syslog_ident, LOG_PID, log_facility);
        syslog_open = 1;
    }
}

int vmseal_log_open(const vmseal_log_config *cfg)
{
    unsigned outputs = cfg->outputs ? cfg->outputs : VMSEAL_LOG_STDERR;
    if ((int)cfg->level < VMSEAL_LOG_ERROR || (int)cfg->level > VMSEAL_LOG_DEBUG ||
        (outputs & ~(VMSEAL_LOG_STDERR | VMSEAL_LOG_SYSLOG | VMSEAL_LOG_FILE)) ||
        ((outputs & VMSEAL_LOG_FILE) && (!cfg->file || !*cfg->file)))
        return vmseal_fail(EINVAL, "log: bad configuration");
    int fd = -1;
    if (outputs & VMSEAL_LOG_FILE) {
        fd = open(cfg->file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0600);
        if (fd < 0) {
            int e = errno;
            return vmseal_fail(e, "cannot open log file %s: %s", cfg->file, strerror(e));
        }
    }
    pthread_mutex_lock(&log_lock);
    if (log_fd >= 0)
        close(log_fd);
    log_fd = fd;
    log_outputs = outputs;
    log_facility = cfg->facility ? cfg->facility : LOG_DAEMON;
    copy_name(log_program, sizeof(log_program), cfg->program);
    copy_name(log_process, sizeof(log_process), cfg->process);
    atomic_store(&log_level, (int)cfg->level);
    syslog_reopen_locked();
    pthread_mutex_unlock(&log_lock);
    return 0;
}

void vmseal_log_close(void)
{
    pthread_mutex_lock(&log_lock);
    if (log_fd >= 0)
        close(log_fd);
    log_fd = -1;
    log_outputs = VMSEAL_LOG_STDERR;
    syslog_reopen_locked();
    pthread_mutex_unlock(&log_lock);
}

void vmseal_log_set_process(const char *process)
{
    pthread_mutex_lock(&log_lock);
    copy_name(log_process, sizeof(log_process), process);
    syslog_reopen_locked();
    pthread_mutex_unlock(&log_lock);
}

void vmseal_log_set_level(vmseal_log_level level)
{
    if ((int)level >= VMSEAL_LOG_ERROR && (int)level <= VMSEAL_LOG_DEBUG)
        atomic_store(&log_level, (int)level);
}

int vmseal_log_enabled(vmseal_log_level level)
{
    return (int)level >= VMSEAL_LOG_ERROR && (int)level <= atomic_load(&log_level);
}

int vmseal_log_level_parse(const char *s, vmseal_log_level *out)
{
    for (int l = VMSEAL_LOG_ERROR; s && l <= VMSEAL_LOG_DEBUG; l++)
        if (strcmp(s, level_names[l]) == 0) {
            *out = (vmseal_log_level)l;
            return 0;
        }
    return vmseal_fail(EINVAL, "log level is error, warning, info or debug");
}

int vmseal_log_outputs_parse(const char *s, unsigned *out)
{
    unsigned bits = 0;
    const char *p = s ? s : "";
    if (strcmp(p, "both") == 0)
        p = "stderr,syslog";
    for (;;) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, ", ");
        if (n == 6 && strncmp(p, "stderr", 6) == 0)
            bits |= VMSEAL_LOG_STDERR;
        else if (n == 6 && strncmp(p, "syslog", 6) == 0)
            bits |= VMSEAL_LOG_SYSLOG;
        else
            return vmseal_fail(EINVAL, "log output is stderr, syslog or stderr,syslog");
        p += n;
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        if (*p++ != ',')
            return vmseal_fail(EINVAL, "log output is stderr, syslog or stderr,syslog");
    }
    *out = bits;
    return 0;
}

void vmseal_log_timestamp(char *out, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    if (n)
        snprintf(out + n, cap - n, ".%03dZ", (int)(ts.tv_nsec / 1000000));
}

/* -------------------------------------------------------------- writing */

static void write_fd(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;   /* nowhere to report it */
        buf += w;
        len -= (size_t)w;
    }
}

void vmseal_logv(vmseal_log_level level, const char *fmt, va_list ap)
{
    if (!vmseal_log_enabled(level))
        return;
    int saved_errno = errno;
    char msg[VMSEAL_LOG_LINE_MAX];
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t mlen = n < 0 ? 0 : (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1;
    int cut = n >= (int)sizeof(msg);

    char ts[32], tag[VMSEAL_LOG_PROGRAM_MAX + VMSEAL_LOG_PROCESS_MAX + 4];
    vmseal_log_timestamp(ts, sizeof(ts));
    pthread_mutex_lock(&log_lock);
    if (log_process[0])
        snprintf(tag, sizeof(tag), "%s[%s]", program_locked(), log_process);
    else
        snprintf(tag, sizeof(tag), "%s", program_locked());
    pthread_mutex_unlock(&log_lock);

    /* line = prefix, the escaped message (maybe "..."), '\n' */
    char line[VMSEAL_LOG_LINE_MAX];
    size_t plen = (size_t)snprintf(line, sizeof(line), "%s %s %s: ", ts, tag, level_names[level]);
    static const char more[] = "...";
    /* room for the message: the line minus prefix, "..." and "\n" (the
     * escape's NUL takes the place of the newline) */
    size_t room = sizeof(line) - plen - (sizeof(more) - 1);
    size_t used = vmseal_log_escape(msg, mlen, line + plen, room);
    size_t len = plen + strlen(line + plen);
    size_t moff = plen;
    if (cut || used < mlen) {
        memcpy(line + len, more, sizeof(more) - 1);
        len += sizeof(more) - 1;
    }
    line[len++] = '\n';

    pthread_mutex_lock(&log_lock);
    if (log_outputs & VMSEAL_LOG_STDERR)
        write_fd(STDERR_FILENO, line, len);
    if (log_fd >= 0)
        write_fd(log_fd, line, len);
    if (log_outputs & VMSEAL_LOG_SYSLOG) {
        int prio = log_facility | level_prio[level];
        int mtext = (int)(len - 1 - moff);
        if (log_process[0])
            syslog(prio, "%s: %.*s", log_process, mtext, line + moff);
        else
            syslog(prio, "%.*s", mtext, line + moff);
    }
    pthread_mutex_unlock(&log_lock);
    errno = saved_errno;
}

void vmseal_log(vmseal_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmseal_logv(level, fmt, ap);
    va_end(ap);
}
