/* vmseal — "key = value" configuration files (kmsd.conf, managerd.conf).
 *
 * One setting per line; blank lines and lines starting with '#' are
 * skipped; whitespace around keys and values is dropped. Relative paths in
 * values are taken relative to the directory of the configuration file.
 */
#ifndef VMSEAL_CONFFILE_H
#define VMSEAL_CONFFILE_H

typedef struct vmseal_conffile vmseal_conffile;

/* Open a configuration file for reading. On failure returns -errno with the
 * message "cannot open PATH: REASON". */
int vmseal_conffile_open(const char *path, vmseal_conffile **out);

/* Next setting: returns 1 with *key and *value (trimmed, valid until the
 * next call), 0 at end of file, or -EINVAL ("PATH:LINE: expected key =
 * value") on a line without '='. */
int vmseal_conffile_next(vmseal_conffile *cf, char **key, char **value);

/* Line number of the setting last returned by vmseal_conffile_next(). */
int vmseal_conffile_line(const vmseal_conffile *cf);

void vmseal_conffile_close(vmseal_conffile *cf);

/* PATH itself, or PATH/NAME when PATH is a directory (malloc'd; NULL when
 * out of memory). */
char *vmseal_conffile_path(const char *path, const char *name);

/* Directory holding FILE: "." for a bare name, "/" for a file in the root
 * (malloc'd; NULL when out of memory). */
char *vmseal_conffile_dir(const char *file);

/* VALUE when it is absolute or DIR is NULL, else DIR/VALUE (malloc'd; NULL
 * when out of memory). */
char *vmseal_conffile_resolve(const char *dir, const char *value);

/* Strict base-10 integer in [lo, hi]: 0, or -1 when VALUE is not one. */
int vmseal_conffile_int(const char *value, long lo, long hi, long *out);

/* Remove leading and trailing white space in place. */
char *vmseal_conffile_trim(char *s);

#endif
