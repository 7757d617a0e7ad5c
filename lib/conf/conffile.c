/* "key = value" configuration files shared by the daemons. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <vmseal/common.h>
#include <vmseal/conffile.h>

struct vmseal_conffile {
    FILE *f;
    char *path;
    int lineno;
    char line[4096];
};

char *vmseal_conffile_trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

int vmseal_conffile_open(const char *path, vmseal_conffile **out)
{
    *out = NULL;
    vmseal_conffile *cf = calloc(1, sizeof(*cf));
    if (!cf || !(cf->path = strdup(path))) {
        free(cf);
        return vmseal_fail(ENOMEM, "config: out of memory");
    }
    cf->f = fopen(path, "re");
    if (!cf->f) {
        int e = errno;
        vmseal_conffile_close(cf);
        return vmseal_fail(e, "cannot open %s: %s", path, strerror(e));
    }
    *out = cf;
    return 0;
}

int vmseal_conffile_next(vmseal_conffile *cf, char **key, char **value)
{
    while (fgets(cf->line, sizeof(cf->line), cf->f)) {
        cf->lineno++;
        char *s = vmseal_conffile_trim(cf->line);
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq)
            return vmseal_fail(EINVAL, "%s:%d: expected key = value", cf->path, cf->lineno);
        *eq = '\0';
        *key = vmseal_conffile_trim(s);
        *value = vmseal_conffile_trim(eq + 1);
        return 1;
    }
    return 0;
}

int vmseal_conffile_line(const vmseal_conffile *cf)
{
    return cf->lineno;
}

void vmseal_conffile_close(vmseal_conffile *cf)
{
    if (!cf)
        return;
    if (cf->f)
        fclose(cf->f);
    free(cf->path);
    free(cf);
}

char *vmseal_conffile_path(const char *path, const char *name)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return strdup(path);
    size_t n = strlen(path) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", path, name);
    return p;
}

char *vmseal_conffile_dir(const char *file)
{
    size_t n = strlen(file) + 2;
    char *dir = malloc(n);
    if (!dir)
        return NULL;
    memcpy(dir, file, n - 1);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir)
        *slash = '\0';
    else
        strcpy(dir, slash ? "/" : ".");
    return dir;
}

char *vmseal_conffile_resolve(const char *dir, const char *value)
{
    if (value[0] == '/' || !dir)
        return strdup(value);
    size_t n = strlen(dir) + strlen(value) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, value);
    return p;
}

int vmseal_conffile_int(const char *value, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(value, &end, 10);
    if (errno || end == value || *end || x < lo || x > hi)
        return -1;
    *out = x;
    return 0;
}
