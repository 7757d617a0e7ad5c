/* vmseal CLI — the saved session and API calls.
 *
 * `vmseal login` stores {url, ca, token, user, expires} in
 * $XDG_CONFIG_HOME/vmseal/session.json (default ~/.config/vmseal/), created
 * 0600 in a 0700 folder. The token is a bearer credential: it is never
 * printed and never passed on a command line. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <vmseal/http_client.h>

#include "cli.h"

static char *session_dir(void)
{
    const char *xdg = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");
    char buf[4096];
    if (xdg && *xdg)
        snprintf(buf, sizeof(buf), "%s/vmseal", xdg);
    else if (home && *home)
        snprintf(buf, sizeof(buf), "%s/.config/vmseal", home);
    else
        return NULL;
    return strdup(buf);
}

int cli_load_session(cli *c)
{
    char *d = session_dir();
    if (!d)
        return -ENOENT;
    size_t n = strlen(d) + sizeof("/session.json");
    c->session_path = malloc(n);
    if (!c->session_path) {
        free(d);
        return -ENOMEM;
    }
    snprintf(c->session_path, n, "%s/session.json", d);
    free(d);
    struct stat st;
    if (stat(c->session_path, &st) != 0)
        return -ENOENT;
    if (st.st_mode & 077) {
        fprintf(stderr, "vmseal: %s is readable by others; ignoring it (log in again)\n", c->session_path);
        return -EPERM;
    }
    c->session = json_load_file(c->session_path, 0, NULL);
    return c->session ? 0 : -EINVAL;
}

int cli_save_session(cli *c, const char *url, const char *ca, const char *token, const char *user,
                     long long expires)
{
    char *d = session_dir();
    if (!d || !c->session_path) {
        free(d);
        fprintf(stderr, "vmseal: no HOME or XDG_CONFIG_HOME to keep the session in\n");
        return -ENOENT;
    }
    char parent[4096];
    snprintf(parent, sizeof(parent), "%s", d);
    char *slash = strrchr(parent, '/');
    if (slash) {
        *slash = '\0';
        mkdir(parent, 0700);
    }
    if (mkdir(d, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "vmseal: cannot create %s: %s\n", d, strerror(errno));
        free(d);
        return -errno;
    }
    free(d);
    char *real_ca = ca ? realpath(ca, NULL) : NULL;
    json_t *s = json_pack("{s:s,s:s?,s:s,s:s,s:I}", "url", url, "ca", real_ca ? real_ca : ca, "token", token,
                          "user", user, "expires", (json_int_t)expires);
    free(real_ca);
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", c->session_path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    char *txt = json_dumps(s, JSON_INDENT(2));
    int rc = 0;
    if (fd < 0 || !txt || write(fd, txt, strlen(txt)) != (ssize_t)strlen(txt) || fsync(fd) != 0) {
        rc = -EIO;
        fprintf(stderr, "vmseal: cannot write %s\n", tmp);
    }
    if (fd >= 0)
        close(fd);
    if (txt) {
        OPENSSL_cleanse(txt, strlen(txt));
        free(txt);
    }
    json_decref(s);
    if (rc == 0 && rename(tmp, c->session_path) != 0) {
        rc = -errno;
        fprintf(stderr, "vmseal: cannot write %s: %s\n", c->session_path, strerror(errno));
    }
    return rc;
}

int cli_forget_session(cli *c)
{
    if (c->session_path && unlink(c->session_path) != 0 && errno != ENOENT)
        return -errno;
    return 0;
}

void cli_escape(const char *in, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 4 < outlen; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
}

int cli_reported;

static int status_exit(long status)
{
    switch (status) {
    case 401:
    case 429: return EXIT_AUTH;
    case 403: return EXIT_DENIED;
    case 404: return EXIT_NOTFOUND;
    case 409: return EXIT_CONFLICT;
    case 400:
    case 413: return EXIT_USAGE;
    default: return EXIT_FAIL;
    }
}

int cli_call_timeout(cli *c, const char *method, const char *path, const json_t *body, json_t **resp,
                     long timeout_ms)
{
    *resp = NULL;
    const char *url = c->url ? c->url : c->session ? jstr(c->session, "url") : NULL;
    const char *ca = c->ca ? c->ca : c->session ? jstr(c->session, "ca") : NULL;
    const char *token = c->session ? jstr(c->session, "token") : "";
    if (!url || !*url) {
        fprintf(stderr, "vmseal: not logged in: run `vmseal login --url https://MANAGER:PORT --ca CA.crt`\n");
        return EXIT_AUTH;
    }
    if (!ca || !*ca) {
        fprintf(stderr, "vmseal: no CA certificate to verify the manager with (--ca or $VMSEAL_CA)\n");
        return EXIT_USAGE;
    }
    /* The session belongs to the manager it was made with. */
    if (c->session && c->url && strcmp(c->url, jstr(c->session, "url")) != 0)
        token = "";
    vmseal_http_client_config cfg = {.ca_file = ca, .timeout_ms = timeout_ms};
    vmseal_http_client *h = NULL;
    if (vmseal_http_client_new(&cfg, &h) < 0) {
        fprintf(stderr, "vmseal: %s\n", vmseal_last_error());
        return EXIT_FAIL;
    }
    if (*token && vmseal_http_client_set_token(h, token) < 0) {
        vmseal_http_client_free(h);
        return EXIT_FAIL;
    }
    char full[2048];
    size_t ul = strlen(url);
    snprintf(full, sizeof(full), "%.*s%s", (int)(ul && url[ul - 1] == '/' ? ul - 1 : ul), url, path);
    long status = 0;
    json_t *r = NULL;
    int rc = vmseal_http_call(h, method, full, body, &status, &r);
    vmseal_http_client_free(h);
    if (rc < 0) {
        fprintf(stderr, "vmseal: %s\n", vmseal_last_error());
        return EXIT_UNREACHABLE;
    }
    if (status >= 200 && status <= 299) {
        *resp = r ? r : json_object();
        return EXIT_OK;
    }
    cli_reported = 1;
    if (status == 401 && strcmp(path, "/api/v1/session") == 0 && !strcmp(method, "POST"))
        fprintf(stderr, "vmseal: %s\n", vmseal_http_error_text(r));
    else if (status == 401 && !*token)
        fprintf(stderr, "vmseal: not logged in: run `vmseal login`\n");
    else if (status == 401)
        fprintf(stderr, "vmseal: %s (run `vmseal login`)\n", vmseal_http_error_text(r));
    else
        fprintf(stderr, "vmseal: %s\n", vmseal_http_error_text(r));
    json_decref(r);
    return status_exit(status);
}

int cli_call(cli *c, const char *method, const char *path, const json_t *body, json_t **resp)
{
    return cli_call_timeout(c, method, path, body, resp, 120000);
}
