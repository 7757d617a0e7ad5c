/* vmseal CLI — tables, JSON, times, progress bars. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

struct table {
    size_t ncols, nrows, cap;
    char **cells;   /* (nrows + 1) * ncols, row 0 = headers */
};

table *table_new(size_t ncols, const char *const *headers)
{
    table *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->ncols = ncols;
    table_add(t, headers);
    return t;
}

void table_add(table *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 8;
        char **n = realloc(t->cells, cap * t->ncols * sizeof(char *));
        if (!n)
            return;
        t->cells = n;
        t->cap = cap;
    }
    for (size_t i = 0; i < t->ncols; i++) {
        const char *s = cells[i] ? cells[i] : "";
        char *d = strdup(s);
        /* one line per cell: control characters would garble the table */
        for (char *p = d; p && *p; p++)
            if ((unsigned char)*p < 0x20)
                *p = ' ';
        t->cells[t->nrows * t->ncols + i] = d;
    }
    t->nrows++;
}

void table_print(table *t, FILE *f)
{
    size_t w[32] = {0};
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t i = 0; i < t->ncols && i < 32; i++) {
            const char *s = t->cells[r * t->ncols + i];
            size_t n = s ? strlen(s) : 0;
            if (n > w[i])
                w[i] = n;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t i = 0; i < t->ncols; i++) {
            const char *s = t->cells[r * t->ncols + i];
            if (i + 1 < t->ncols)
                fprintf(f, "%-*s  ", (int)w[i], s ? s : "");
            else
                fprintf(f, "%s", s ? s : "");
        }
        fputc('\n', f);
    }
}

void table_free(table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t);
}

void print_json(const json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    if (s) {
        puts(s);
        free(s);
    }
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* GET path and print the object: --json as it came, otherwise a FIELD /
 * VALUE table in key order (nested values as compact JSON; control
 * characters never reach the terminal). */
int show_object(cli *c, const char *path)
{
    json_t *resp = NULL;
    int rc = cli_call(c, "GET", path, NULL, &resp);
    if (rc != EXIT_OK)
        return rc;
    size_t n = json_is_object(resp) ? json_object_size(resp) : 0, i = 0;
    const char **keys = n ? calloc(n, sizeof(*keys)) : NULL;
    if (c->json || !keys) {
        print_json(resp);
        free(keys);
        json_decref(resp);
        return EXIT_OK;
    }
    const char *key;
    json_t *v;
    json_object_foreach(resp, key, v)
        keys[i++] = key;
    qsort(keys, n, sizeof(*keys), cmp_key);
    static const char *const h[] = {"FIELD", "VALUE"};
    table *t = table_new(2, h);
    for (i = 0; t && i < n; i++) {
        v = json_object_get(resp, keys[i]);
        char *text = json_is_string(v) || json_is_null(v)
                         ? NULL
                         : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        const char *row[] = {keys[i], json_is_string(v) ? json_string_value(v)
                                      : text            ? text
                                                        : "-"};
        table_add(t, row);
        free(text);
    }
    if (t)
        table_print(t, stdout);
    table_free(t);
    free(keys);
    json_decref(resp);
    return t ? EXIT_OK : EXIT_FAIL;
}

const char *fmt_time(long long t, char *buf, size_t len)
{
    if (t <= 0) {
        snprintf(buf, len, "-");
        return buf;
    }
    time_t tt = (time_t)t;
    struct tm tm;
    localtime_r(&tt, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
    return buf;
}

const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static int last_shown = -1;

void progress_show(const char *label, int percent)
{
    if (percent < 0)
        percent = 0;
    if (percent > 100)
        percent = 100;
    if (isatty(STDERR_FILENO)) {
        char bar[41];
        int fill = percent * 40 / 100;
        for (int i = 0; i < 40; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[40] = '\0';
        fprintf(stderr, "\r%s [%s] %3d%%", label, bar, percent);
        fflush(stderr);
        last_shown = percent;
    } else if (last_shown < 0 || percent / 10 > last_shown / 10) {
        fprintf(stderr, "%s: %d%%\n", label, percent);
        last_shown = percent;
    }
}

void progress_done(void)
{
    if (isatty(STDERR_FILENO) && last_shown >= 0)
        fputc('\n', stderr);
    last_shown = -1;
}
