/* The shared diagnostic log (lib/log.c): the line format, escaping of what
 * a peer could send (newlines that would forge a line, control characters,
 * bytes that are not UTF-8, characters that viewers treat as line ends or
 * use to reorder text), the bound on a line, level filtering, whole lines
 * from concurrent threads, the file output, and syslog (a private /dev/log
 * in a mount namespace of a child process). Output is read back from where
 * the logger wrote it. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <regex.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <vmseal/log.h>

/* ---- stderr captured into a temporary file ----------------------------- */

static int saved_stderr = -1, cap_fd = -1;

static void capture_start(void)
{
    char path[] = "/tmp/vmseal-test-log-XXXXXX";
    cap_fd = mkstemp(path);
    assert_true(cap_fd >= 0);
    unlink(path);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(saved_stderr >= 0);
    assert_int_equal(dup2(cap_fd, STDERR_FILENO), STDERR_FILENO);
}

/* Stop capturing; what was written (malloc'd, NUL-terminated). */
static char *capture_end(size_t *len_out)
{
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    struct stat st;
    assert_int_equal(fstat(cap_fd, &st), 0);
    char *buf = malloc((size_t)st.st_size + 1);
    assert_non_null(buf);
    assert_int_equal(pread(cap_fd, buf, (size_t)st.st_size, 0), st.st_size);
    buf[st.st_size] = '\0';
    close(cap_fd);
    if (len_out)
        *len_out = (size_t)st.st_size;
    return buf;
}

static void setup_log(const char *process, vmseal_log_level level)
{
    vmseal_log_config c = {.program = "vmseal-test", .process = process, .level = level,
                           .outputs = VMSEAL_LOG_STDERR};
    assert_int_equal(vmseal_log_open(&c), 0);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* The message part of a one-line capture (after "LEVEL: "), newline cut. */
static char *message_of(char *line, const char *level)
{
    char key[32];
    snprintf(key, sizeof(key), " %s: ", level);
    char *m = strstr(line, key);
    assert_non_null(m);
    m += strlen(key);
    char *nl = strchr(m, '\n');
    assert_non_null(nl);
    assert_string_equal(nl, "\n");   /* one line, nothing after it */
    *nl = '\0';
    return m;
}

/* Log one message at info and return its escaped text (malloc'd line). */
static char *log_one(char **line, const char *fmt, ...) VMSEAL_PRINTF(2, 3);
static char *log_one(char **line, const char *fmt, ...)
{
    capture_start();
    va_list ap;
    va_start(ap, fmt);
    vmseal_logv(VMSEAL_LOG_INFO, fmt, ap);
    va_end(ap);
    *line = capture_end(NULL);
    assert_int_equal(count_lines(*line), 1);
    return message_of(*line, "info");
}

/* ---- format ------------------------------------------------------------ */

static void test_format(void **state)
{
    (void)state;
    setup_log("monitor", VMSEAL_LOG_DEBUG);
    time_t before = time(NULL);
    capture_start();
    vmseal_log(VMSEAL_LOG_INFO, "VM %s powered %s", "web1", "on");
    vmseal_log(VMSEAL_LOG_ERROR, "failed: %d", 42);
    vmseal_log(VMSEAL_LOG_WARNING, "careful");
    vmseal_log(VMSEAL_LOG_DEBUG, "detail");
    char *out = capture_end(NULL);
    time_t after = time(NULL);

    regex_t re;
    assert_int_equal(regcomp(&re,
        "^([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})\\.[0-9]{3}Z "
        "vmseal-test\\[monitor\\] info: VM web1 powered on\n"
        "[0-9T:.-]{23}Z vmseal-test\\[monitor\\] error: failed: 42\n"
        "[0-9T:.-]{23}Z vmseal-test\\[monitor\\] warning: careful\n"
        "[0-9T:.-]{23}Z vmseal-test\\[monitor\\] debug: detail\n$",
        REG_EXTENDED), 0);
    regmatch_t m[2];
    if (regexec(&re, out, 2, m, 0) != 0)
        fail_msg("unexpected log output:\n%s", out);
    regfree(&re);
    /* the timestamp is UTC now */
    struct tm tm = {0};
    char ts[32];
    snprintf(ts, sizeof(ts), "%.*s", (int)(m[1].rm_eo - m[1].rm_so), out + m[1].rm_so);
    assert_non_null(strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm));
    time_t t = timegm(&tm);
    /* time() reads a coarse clock that may lag the logger's by a tick */
    assert_true(t >= before - 1 && t <= after + 1);
    free(out);

    /* without a process part; then another process name */
    setup_log(NULL, VMSEAL_LOG_INFO);
    capture_start();
    vmseal_log(VMSEAL_LOG_INFO, "plain");
    vmseal_log_set_process("network");
    vmseal_log(VMSEAL_LOG_INFO, "child");
    out = capture_end(NULL);
    assert_int_equal(regcomp(&re, "^[0-9T:.-]{23}Z vmseal-test info: plain\n"
                                  "[0-9T:.-]{23}Z vmseal-test\\[network\\] info: child\n$",
                             REG_EXTENDED), 0);
    if (regexec(&re, out, 0, NULL, 0) != 0)
        fail_msg("unexpected log output:\n%s", out);
    regfree(&re);
    free(out);

    /* names cannot break the tag */
    vmseal_log_config c = {.program = "bad name[x]", .process = "a]\nb", .level = VMSEAL_LOG_INFO};
    assert_int_equal(vmseal_log_open(&c), 0);
    char *line, *msg = log_one(&line, "x");
    assert_string_equal(msg, "x");
    if (!strstr(line, "Z bad_name_x_[a__b] info: x"))
        fail_msg("tag not made safe: %s", line);
    free(line);
}

/* ---- escaping ---------------------------------------------------------- */

static void expect_escaped(const char *in, const char *want)
{
    char *line, *msg = log_one(&line, "%s", in);
    assert_string_equal(msg, want);
    free(line);
}

static void test_escaping(void **state)
{
    (void)state;
    setup_log(NULL, VMSEAL_LOG_INFO);
    /* a value from the network that tries to forge a second line */
    const char *forged = "user=eve\n2030-01-01T00:00:00.000Z vmseal-test info: admin logged in";
    capture_start();
    vmseal_log(VMSEAL_LOG_INFO, "login failed: %s", forged);
    char *out = capture_end(NULL);
    assert_int_equal(count_lines(out), 1);
    assert_non_null(strstr(out, " info: login failed: user=eve\\n2030-01-01T00:00:00.000Z "
                                "vmseal-test info: admin logged in\n"));
    free(out);

    expect_escaped("a\nb\rc\td", "a\\nb\\rc\\td");
    expect_escaped("back\\slash", "back\\\\slash");      /* "\\n" stays told apart from "\n" */
    expect_escaped("\x01\x1b[31mred\x7f", "\\x01\\x1b[31mred\\x7f");
    expect_escaped("\r\n\r\n", "\\r\\n\\r\\n");
    /* UTF-8: letters pass; what is not UTF-8 is escaped byte by byte */
    expect_escaped("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91");
    expect_escaped("\xff\xfe", "\\xff\\xfe");
    expect_escaped("\xc3(", "\\xc3(");                    /* truncated sequence */
    expect_escaped("\xc0\xaf", "\\xc0\\xaf");             /* overlong '/' */
    expect_escaped("\xed\xa0\x80", "\\xed\\xa0\\x80");    /* a surrogate */
    expect_escaped("\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"); /* above U+10FFFF */
    expect_escaped("x\xe2\x82", "x\\xe2\\x82");           /* cut at the end */
    /* characters a viewer may take as a line end or use to reorder text */
    expect_escaped("a\xc2\x85" "b", "a\\xc2\\x85b");      /* NEL */
    expect_escaped("a\xe2\x80\xa8" "b\xe2\x80\xa9", "a\\xe2\\x80\\xa8b\\xe2\\x80\\xa9");
    expect_escaped("\xe2\x80\xae" "txt.exe", "\\xe2\\x80\\xaetxt.exe"); /* RLO */
    expect_escaped("\xe2\x81\xa6" "x", "\\xe2\\x81\\xa6x");             /* LRI */
    expect_escaped("\xc2\xa0\xe2\x80\x94", "\xc2\xa0\xe2\x80\x94");     /* NBSP, em dash: fine */

    /* the escaper alone: stops before a unit that does not fit */
    char buf[8];
    assert_int_equal(vmseal_log_escape("ab\ncd", 5, buf, sizeof(buf)), 5);
    assert_string_equal(buf, "ab\\ncd");
    assert_int_equal(vmseal_log_escape("abcde\x01", 6, buf, sizeof(buf)), 5);
    assert_string_equal(buf, "abcde");
    assert_int_equal(vmseal_log_escape("abcdef\xc3\xa9", 8, buf, sizeof(buf)), 6);
    assert_string_equal(buf, "abcdef");
    assert_int_equal(vmseal_log_escape("x", 1, buf, 1), 0);
    assert_string_equal(buf, "");
}

/* ---- the bound on a line ----------------------------------------------- */

static void test_truncation(void **state)
{
    (void)state;
    setup_log("monitor", VMSEAL_LOG_INFO);
    size_t big = 3 * VMSEAL_LOG_LINE_MAX;
    char *s = malloc(big + 1);
    assert_non_null(s);

    /* plain text: the line is exactly the maximum and says it was cut */
    memset(s, 'a', big);
    s[big] = '\0';
    capture_start();
    vmseal_log(VMSEAL_LOG_INFO, "%s", s);
    size_t len;
    char *out = capture_end(&len);
    assert_int_equal(len, VMSEAL_LOG_LINE_MAX);
    assert_int_equal(count_lines(out), 1);
    assert_string_equal(out + len - 4, "...\n");
    assert_int_equal(out[len - 5], 'a');
    free(out);

    /* escapes are never cut in half */
    memset(s, '\x01', big);
    capture_start();
    vmseal_log(VMSEAL_LOG_INFO, "%s", s);
    out = capture_end(&len);
    assert_true(len <= VMSEAL_LOG_LINE_MAX && len > VMSEAL_LOG_LINE_MAX - 8);
    char *m = message_of(out, "info");
    size_t mlen = strlen(m);
    assert_string_equal(m + mlen - 3, "...");
    assert_int_equal((mlen - 3) % 4, 0);
    for (size_t i = 0; i + 3 < mlen; i += 4)
        assert_memory_equal(m + i, "\\x01", 4);
    free(out);

    /* nor UTF-8 characters */
    for (size_t i = 0; i + 2 <= big; i += 2)
        memcpy(s + i, "\xc3\xa9", 2);
    capture_start();
    vmseal_log(VMSEAL_LOG_INFO, "%s", s);
    out = capture_end(&len);
    assert_true(len <= VMSEAL_LOG_LINE_MAX && len >= VMSEAL_LOG_LINE_MAX - 1);
    m = message_of(out, "info");
    mlen = strlen(m);
    assert_string_equal(m + mlen - 3, "...");
    assert_int_equal((mlen - 3) % 2, 0);
    for (size_t i = 0; i + 3 < mlen; i += 2)
        assert_memory_equal(m + i, "\xc3\xa9", 2);
    free(out);

    /* the longest message that fits is not marked */
    capture_start();
    vmseal_log(VMSEAL_LOG_INFO, "x");
    out = capture_end(&len);
    size_t prefix = len - 2;                 /* all but "x\n" */
    free(out);
    size_t fits = VMSEAL_LOG_LINE_MAX - prefix - 4;
    memset(s, 'b', fits);
    s[fits] = '\0';
    capture_start();
    vmseal_log(VMSEAL_LOG_INFO, "%s", s);
    out = capture_end(&len);
    assert_int_equal(len, prefix + fits + 1);
    assert_int_equal(out[len - 2], 'b');
    free(out);
    s[fits] = 'b';
    s[fits + 1] = '\0';
    capture_start();
    vmseal_log(VMSEAL_LOG_INFO, "%s", s);
    out = capture_end(&len);
    assert_int_equal(len, VMSEAL_LOG_LINE_MAX);
    assert_string_equal(out + len - 4, "...\n");
    free(out);
    free(s);
}

/* ---- levels ------------------------------------------------------------ */

static void test_levels(void **state)
{
    (void)state;
    setup_log(NULL, VMSEAL_LOG_WARNING);
    assert_true(vmseal_log_enabled(VMSEAL_LOG_ERROR));
    assert_true(vmseal_log_enabled(VMSEAL_LOG_WARNING));
    assert_false(vmseal_log_enabled(VMSEAL_LOG_INFO));
    assert_false(vmseal_log_enabled((vmseal_log_level)7));
    assert_false(vmseal_log_enabled((vmseal_log_level)-1));
    capture_start();
    vmseal_log(VMSEAL_LOG_DEBUG, "d1");
    vmseal_log(VMSEAL_LOG_INFO, "i1");
    vmseal_log(VMSEAL_LOG_WARNING, "w1");
    vmseal_log(VMSEAL_LOG_ERROR, "e1");
    vmseal_log((vmseal_log_level)9, "bogus");
    vmseal_log_set_level(VMSEAL_LOG_DEBUG);
    vmseal_log(VMSEAL_LOG_DEBUG, "d2");
    vmseal_log_set_level(VMSEAL_LOG_ERROR);
    vmseal_log(VMSEAL_LOG_WARNING, "w2");
    vmseal_log(VMSEAL_LOG_ERROR, "e2");
    char *out = capture_end(NULL);
    assert_int_equal(count_lines(out), 4);
    assert_null(strstr(out, "d1"));
    assert_null(strstr(out, "i1"));
    assert_null(strstr(out, "bogus"));
    assert_null(strstr(out, "w2"));
    assert_non_null(strstr(out, " warning: w1\n"));
    assert_non_null(strstr(out, " error: e1\n"));
    assert_non_null(strstr(out, " debug: d2\n"));
    assert_non_null(strstr(out, " error: e2\n"));
    free(out);

    vmseal_log_level l;
    assert_int_equal(vmseal_log_level_parse("debug", &l), 0);
    assert_int_equal(l, VMSEAL_LOG_DEBUG);
    assert_int_equal(vmseal_log_level_parse("error", &l), 0);
    assert_int_equal(l, VMSEAL_LOG_ERROR);
    assert_int_equal(vmseal_log_level_parse("warning", &l), 0);
    assert_int_equal(l, VMSEAL_LOG_WARNING);
    assert_int_equal(vmseal_log_level_parse("verbose", &l), -EINVAL);
    assert_int_equal(vmseal_log_level_parse("", &l), -EINVAL);
    unsigned o;
    assert_int_equal(vmseal_log_outputs_parse("stderr", &o), 0);
    assert_int_equal(o, VMSEAL_LOG_STDERR);
    assert_int_equal(vmseal_log_outputs_parse("syslog", &o), 0);
    assert_int_equal(o, VMSEAL_LOG_SYSLOG);
    assert_int_equal(vmseal_log_outputs_parse("stderr, syslog", &o), 0);
    assert_int_equal(o, VMSEAL_LOG_STDERR | VMSEAL_LOG_SYSLOG);
    assert_int_equal(vmseal_log_outputs_parse("both", &o), 0);
    assert_int_equal(o, VMSEAL_LOG_STDERR | VMSEAL_LOG_SYSLOG);
    assert_int_equal(vmseal_log_outputs_parse("", &o), -EINVAL);
    assert_int_equal(vmseal_log_outputs_parse("stderr,", &o), -EINVAL);
    assert_int_equal(vmseal_log_outputs_parse("file", &o), -EINVAL);
    assert_int_equal(vmseal_log_outputs_parse("stderrsyslog", &o), -EINVAL);

    vmseal_log_config bad = {.level = (vmseal_log_level)4};
    assert_int_equal(vmseal_log_open(&bad), -EINVAL);
    vmseal_log_config nofile = {.level = VMSEAL_LOG_INFO, .outputs = VMSEAL_LOG_FILE};
    assert_int_equal(vmseal_log_open(&nofile), -EINVAL);
}

/* ---- concurrent writers ------------------------------------------------- */

#define THREADS 8
#define PER_THREAD 2000

static void *writer(void *arg)
{
    int t = (int)(intptr_t)arg;
    char pad[1500];
    for (int i = 0; i < PER_THREAD; i++) {
        /* lengths vary up to more than stdio's buffer */
        size_t n = (size_t)((i * 37 + t * 101) % (int)(sizeof(pad) - 1));
        memset(pad, 'a' + t, n);
        pad[n] = '\0';
        vmseal_log(VMSEAL_LOG_INFO, "thread %d message %d len %zu %s", t, i, n, pad);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    setup_log("worker", VMSEAL_LOG_INFO);
    capture_start();
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, writer, (void *)(intptr_t)t), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    char *out = capture_end(NULL);
    static unsigned char seen[THREADS][PER_THREAD];
    memset(seen, 0, sizeof(seen));
    int lines = 0;
    for (char *line = out, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        int t = 0, i = 0, off = 0;
        size_t n = 0;
        char *m = strstr(line, " vmseal-test[worker] info: thread ");
        if (!m || m - line != 24 ||
            sscanf(m, " vmseal-test[worker] info: thread %d message %d len %zu %n", &t, &i, &n, &off) != 3 ||
            t < 0 || t >= THREADS || i < 0 || i >= PER_THREAD)
            fail_msg("torn or foreign line %d: %.200s", lines, line);
        const char *pad = m + off;
        if (strlen(pad) != n)
            fail_msg("line %d has %zu pad bytes, says %zu", lines, strlen(pad), n);
        for (size_t k = 0; k < strlen(pad); k++)
            if (pad[k] != 'a' + t)
                fail_msg("line %d mixes writers", lines);
        assert_int_equal(seen[t][i], 0);
        seen[t][i] = 1;
        lines++;
    }
    assert_int_equal(lines, THREADS * PER_THREAD);
    free(out);
}

/* ---- the file output ---------------------------------------------------- */

static void test_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/vmseal-test-logf-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/kmsd.log", dir);
    vmseal_log_config c = {.program = "vmseal-test", .level = VMSEAL_LOG_INFO,
                           .outputs = VMSEAL_LOG_FILE, .file = path};
    capture_start();
    assert_int_equal(vmseal_log_open(&c), 0);
    vmseal_log(VMSEAL_LOG_INFO, "to the file only");
    /* a file that cannot be opened leaves the configuration as it was */
    vmseal_log_config bad = c;
    bad.file = "/nonexistent-dir/x.log";
    bad.outputs = VMSEAL_LOG_STDERR | VMSEAL_LOG_FILE;
    assert_int_equal(vmseal_log_open(&bad), -ENOENT);
    vmseal_log(VMSEAL_LOG_INFO, "still the file only");
    c.outputs = VMSEAL_LOG_FILE | VMSEAL_LOG_STDERR;
    assert_int_equal(vmseal_log_open(&c), 0);
    vmseal_log(VMSEAL_LOG_WARNING, "both");
    vmseal_log_close();
    vmseal_log(VMSEAL_LOG_INFO, "stderr after close");
    char *err = capture_end(NULL);
    assert_null(strstr(err, "file only"));
    assert_non_null(strstr(err, " warning: both\n"));
    assert_non_null(strstr(err, " info: stderr after close\n"));
    free(err);

    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char buf[4096];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    assert_int_equal(count_lines(buf), 3);
    assert_non_null(strstr(buf, " vmseal-test info: to the file only\n"));
    assert_non_null(strstr(buf, " vmseal-test info: still the file only\n"));
    assert_non_null(strstr(buf, " vmseal-test warning: both\n"));
    assert_null(strstr(buf, "after close"));
    unlink(path);
    rmdir(dir);
}

/* ---- syslog -------------------------------------------------------------- */

/* In a child: a mount namespace with a private /dev holding our own
 * /dev/log; returns 0 when every check passed, 77 when namespaces are not
 * available, else the number of the failed check. */
static int syslog_child(void)
{
    if (unshare(CLONE_NEWNS) != 0)
        return 77;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", "/dev", "tmpfs", 0, "mode=0755") != 0)
        return 77;
    int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX, .sun_path = "/dev/log"};
    if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        return 1;
    struct timeval tv = {5, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

    vmseal_log_config c = {.program = "vmseal-test", .process = "network",
                           .level = VMSEAL_LOG_INFO, .outputs = VMSEAL_LOG_SYSLOG};
    if (vmseal_log_open(&c) != 0)
        return 2;
    vmseal_log(VMSEAL_LOG_DEBUG, "not sent");
    vmseal_log(VMSEAL_LOG_WARNING, "peer said %s", "hi\n<13>forged");
    char buf[4096], want[256];
    ssize_t n = recv(s, buf, sizeof(buf) - 1, 0);
    if (n <= 0)
        return 3;
    buf[n] = '\0';
    /* <daemon.warning> ... vmseal-test[PID]: network: message */
    if (strncmp(buf, "<28>", 4) != 0)
        return 4;
    snprintf(want, sizeof(want), " vmseal-test[%d]: network: peer said hi\\n<13>forged", (int)getpid());
    if (!strstr(buf, want) || strchr(buf, '\n'))
        return 5;

    /* a child that closes descriptors it did not open: set_process first,
     * and the log reconnects afterwards */
    vmseal_log_set_process("child");
    for (int fd = 3; fd < 64; fd++)
        if (fd != s)
            close(fd);
    vmseal_log(VMSEAL_LOG_ERROR, "after closing");
    n = recv(s, buf, sizeof(buf) - 1, 0);
    if (n <= 0)
        return 6;
    buf[n] = '\0';
    snprintf(want, sizeof(want), " vmseal-test[%d]: child: after closing", (int)getpid());
    if (strncmp(buf, "<27>", 4) != 0 || !strstr(buf, want))
        return 7;

    /* close: nothing more to syslog */
    vmseal_log_close();
    int saved = dup(STDERR_FILENO), null = open("/tmp", O_TMPFILE | O_RDWR, 0600);
    dup2(null, STDERR_FILENO);
    vmseal_log(VMSEAL_LOG_ERROR, "stderr only");
    dup2(saved, STDERR_FILENO);
    tv.tv_sec = 0;
    tv.tv_usec = 300000;
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (recv(s, buf, sizeof(buf), 0) >= 0)
        return 8;
    return 0;
}

static void test_syslog(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(syslog_child());
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) == 77)
        skip();   /* no mount namespaces here (not root, or a container without them) */
    assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_file),
        cmocka_unit_test(test_syslog),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
