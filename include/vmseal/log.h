/* vmseal — the diagnostic log shared by every program.
 *
 * One line per message:
 *
 *   2024-05-01T12:00:00.123Z vmseal-hostd[monitor] info: VM web1 powered on
 *   (UTC timestamp)          (program[process])   (level) (message)
 *
 * to stderr and/or syslog (openlog/syslog, ident = program, LOG_PID), and/or
 * a file (appended), as configured. Thread-safe: a line is formatted in
 * full first and written with one write() under a lock, so lines from
 * concurrent threads never mix.
 *
 * Messages carry values from the network (paths, peer names, reasons), so
 * the formatted message is escaped before it is written: control
 * characters become \n, \r, \t or \xHH, a backslash \\, bytes that are not
 * UTF-8 and the UTF-8 characters that end or reorder lines in viewers (C1
 * controls, U+2028/U+2029, bidirectional overrides) \xHH per byte. A
 * message cannot forge a second line. Lines are at most VMSEAL_LOG_LINE_MAX
 * bytes (newline included); a longer message is cut at a character and
 * ends with "...".
 *
 * Never pass key material, passwords or tokens: the log is not a secret.
 */
#ifndef VMSEAL_LOG_H
#define VMSEAL_LOG_H

#include <stdarg.h>

#include <vmseal/common.h>

typedef enum vmseal_log_level {
    VMSEAL_LOG_ERROR = 0,
    VMSEAL_LOG_WARNING = 1,
    VMSEAL_LOG_INFO = 2,
    VMSEAL_LOG_DEBUG = 3,
} vmseal_log_level;

/* Outputs (bits). */
#define VMSEAL_LOG_STDERR 1u
#define VMSEAL_LOG_SYSLOG 2u
#define VMSEAL_LOG_FILE 4u

/* Longest line written, newline included. */
#define VMSEAL_LOG_LINE_MAX 2048
/* Longest program and process names kept (longer ones are cut). */
#define VMSEAL_LOG_PROGRAM_MAX 63
#define VMSEAL_LOG_PROCESS_MAX 31

typedef struct vmseal_log_config {
    const char *program;     /* "vmseal-kmsd": line tag and syslog ident
                                (NULL: the name the program was started as) */
    const char *process;     /* NULL, or e.g. "monitor": tag "vmseal-hostd[monitor]" */
    vmseal_log_level level;  /* the most verbose level written */
    unsigned outputs;        /* VMSEAL_LOG_* bits; 0: stderr */
    const char *file;        /* with VMSEAL_LOG_FILE: appended (O_APPEND, 0600) */
    int facility;            /* syslog facility; 0: LOG_DAEMON */
} vmseal_log_config;

/* Until vmseal_log_open is called: stderr, level info, the program's own
 * name. vmseal_log_open replaces the whole configuration (closing an
 * earlier file and syslog connection); -errno when the file cannot be
 * opened (the configuration is then unchanged). */
int vmseal_log_open(const vmseal_log_config *cfg) VMSEAL_MUST_CHECK;

/* Close the file and the syslog connection; lines go to stderr only, at the
 * same level, until the next vmseal_log_open. */
void vmseal_log_close(void);

/* Change the process part of the tag (NULL: none), e.g. in a forked child.
 * Also drops the syslog connection (it reconnects on the next line): call
 * it before a child closes descriptors it did not open. */
void vmseal_log_set_process(const char *process);

/* Change the level only. */
void vmseal_log_set_level(vmseal_log_level level);

/* 1 when a message at this level would be written. */
int vmseal_log_enabled(vmseal_log_level level);

void vmseal_log(vmseal_log_level level, const char *fmt, ...) VMSEAL_PRINTF(2, 3);
void vmseal_logv(vmseal_log_level level, const char *fmt, va_list ap) VMSEAL_PRINTF(2, 0);

/* "error", "warning", "info", "debug" -> the level; -EINVAL otherwise. */
int vmseal_log_level_parse(const char *s, vmseal_log_level *out) VMSEAL_MUST_CHECK;

/* "stderr", "syslog" or both separated by a comma ("stderr,syslog";
 * "both" is the same) -> output bits; -EINVAL otherwise. */
int vmseal_log_outputs_parse(const char *s, unsigned *out) VMSEAL_MUST_CHECK;

/* The current time as the log writes it: "2024-05-01T12:00:00.123Z"
 * (out: at least 32 bytes). */
void vmseal_log_timestamp(char *out, size_t cap);

/* Escape in[0..len) for a log line into out (cap bytes, NUL-terminated),
 * as described above, stopping before a character that does not fit.
 * Returns how many input bytes were consumed (len when all fit). */
size_t vmseal_log_escape(const char *in, size_t len, char *out, size_t cap);

#endif
