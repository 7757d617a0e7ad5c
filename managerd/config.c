/* vmseal-managerd — configuration file parsing. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmseal/common.h>
#include <vmseal/conffile.h>
#include <vmseal/log.h>

#include "config.h"
#include "syslog_fwd.h"

static char *resolve(const mgr_config *c, const char *v)
{
    return vmseal_conffile_resolve(c->dir, v);
}

static int parse_int(const char *v, long lo, long hi, int *out)
{
    long x;
    if (vmseal_conffile_int(v, lo, hi, &x) < 0)
        return -1;
    *out = (int)x;
    return 0;
}

void mgr_config_free(mgr_config *c)
{
    if (!c)
        return;
    free(c->path);
    free(c->dir);
    free(c->listen_address);
    free(c->database);
    free(c->cert_file);
    free(c->key_file);
    free(c->ca_file);
    free(c->ca_key_file);
    free(c->host_ca_file);
    free(c->kms_dir);
    free(c->syslog_target);
    free(c->syslog_ca);
    free(c->syslog_cert);
    free(c->syslog_key);
    free(c->syslog_hostname);
    free(c);
}

int mgr_config_load(const char *path, mgr_config **out)
{
    *out = NULL;
    mgr_config *c = calloc(1, sizeof(*c));
    if (!c)
        return vmseal_fail(ENOMEM, "config: out of memory");
    c->path = vmseal_conffile_path(path, "managerd.conf");
    if (!c->path) {
        mgr_config_free(c);
        return vmseal_fail(ENOMEM, "config: out of memory");
    }
    c->dir = vmseal_conffile_dir(c->path);
    c->listen_address = strdup("127.0.0.1");
    c->port = 8443;
    c->token_ttl_s = 28800;
    c->task_poll_ms = 500;
    c->task_retries = 5;
    c->task_retry_delay_ms = 2000;
    c->reconcile_interval_s = 30;
    c->kms_timeout_ms = 5000;
    c->kek_destroy_grace_s = 7 * 86400;
    c->kek_cleanup_interval_s = 300;
    c->host_timeout_ms = 30000;
    c->syslog_retry_max_s = 30;
    c->log_level = VMSEAL_LOG_INFO;
    c->log_outputs = VMSEAL_LOG_STDERR;

    vmseal_conffile *cf = NULL;
    int rc = vmseal_conffile_open(c->path, &cf);
    if (rc < 0) {
        vmseal_fail(-rc, "config: cannot open %s: %s", c->path, strerror(-rc));
        mgr_config_free(c);
        return rc;
    }
    char *k, *v;
    while ((rc = vmseal_conffile_next(cf, &k, &v)) > 0) {
        int lineno = vmseal_conffile_line(cf);
        char **slot = NULL;
        int is_path = 1;
        if (!strcmp(k, "listen")) {
            slot = &c->listen_address;
            is_path = 0;
        } else if (!strcmp(k, "port")) {
            if (parse_int(v, 0, 65535, &c->port) < 0)
                rc = vmseal_fail(EINVAL, "%s:%d: bad port", c->path, lineno);
        } else if (!strcmp(k, "database")) {
            slot = &c->database;
            is_path = strncmp(v, "postgres", 8) != 0;
        } else if (!strcmp(k, "cert")) {
            slot = &c->cert_file;
        } else if (!strcmp(k, "key")) {
            slot = &c->key_file;
        } else if (!strcmp(k, "ca")) {
            slot = &c->ca_file;
        } else if (!strcmp(k, "ca_key")) {
            slot = &c->ca_key_file;
        } else if (!strcmp(k, "host_ca")) {
            slot = &c->host_ca_file;
        } else if (!strcmp(k, "kms_dir")) {
            slot = &c->kms_dir;
        } else if (!strcmp(k, "token_ttl")) {
            if (parse_int(v, 60, 30 * 86400, &c->token_ttl_s) < 0)
                rc = vmseal_fail(EINVAL, "%s:%d: token_ttl is 60..2592000 seconds", c->path, lineno);
        } else if (!strcmp(k, "task_retries")) {
            if (parse_int(v, 0, 100, &c->task_retries) < 0)
                rc = vmseal_fail(EINVAL, "%s:%d: task_retries is 0..100", c->path, lineno);
        } else if (!strcmp(k, "task_retry_delay_ms")) {
            if (parse_int(v, 10, 600000, &c->task_retry_delay_ms) < 0)
                rc = vmseal_fail(EINVAL, "%s:%d: task_retry_delay_ms is 10..600000", c->path, lineno);
        } else if (!strcmp(k, "reconcile_interval")) {
            if (parse_int(v, 1, 86400, &c->reconcile_interval_s) < 0)
                rc = vmseal_fail(EINVAL, "%s:%d: reconcile_interval is 1..86400 seconds", c->path, lineno);
        } else if (!strcmp(k, "task_poll_ms")) {
            if (parse_int(v, 20, 60000, &c->task_poll_ms) < 0)
                rc = vmseal_fail(EINVAL, "%s:%d: bad task_poll_ms", c->path, lineno);
        } else if (!strcmp(k, "kms_timeout_ms")) {
            if (parse_int(v, 100, 600000, &c->kms_timeout_ms) < 0)
                rc = vmseal_fail(EINVAL, "%s:%d: bad kms_timeout_ms", c->path, lineno);
        } else if (!strcmp(k, "kek_destroy_grace")) {
            if (parse_int(v, 0, 3650 * 86400, &c->kek_destroy_grace_s) < 0)
                rc = vmseal_fail(EINVAL, "%s:%d: kek_destroy_grace is 0..315360000 seconds", c->path, lineno);
        } else if (!strcmp(k, "kek_cleanup_interval")) {
            if (parse_int(v, 1, 86400, &c->kek_cleanup_interval_s) < 0)
                rc = vmseal_fail(EINVAL, "%s:%d: kek_cleanup_interval is 1..86400 seconds", c->path, lineno);
        } else if (!strcmp(k, "host_timeout_ms")) {
            if (parse_int(v, 100, 600000, &c->host_timeout_ms) < 0)
                rc = vmseal_fail(EINVAL, "%s:%d: bad host_timeout_ms", c->path, lineno);
        } else if (!strcmp(k, "syslog_target")) {
            syslog_target t;
            if (*v && syslog_target_parse(v, &t) < 0)
                rc = vmseal_fail(EINVAL, "%s:%d: %s", c->path, lineno, vmseal_last_error());
            slot = &c->syslog_target;
            is_path = 0;
        } else if (!strcmp(k, "syslog_ca")) {
            slot = &c->syslog_ca;
        } else if (!strcmp(k, "syslog_cert")) {
            slot = &c->syslog_cert;
        } else if (!strcmp(k, "syslog_key")) {
            slot = &c->syslog_key;
        } else if (!strcmp(k, "syslog_hostname")) {
            slot = &c->syslog_hostname;
            is_path = 0;
        } else if (!strcmp(k, "syslog_retry_max")) {
            if (parse_int(v, 1, 3600, &c->syslog_retry_max_s) < 0)
                rc = vmseal_fail(EINVAL, "%s:%d: syslog_retry_max is 1..3600 seconds", c->path, lineno);
        } else if (!strcmp(k, "allow_unlocked_memory")) {
            if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "on"))
                c->allow_unlocked_memory = 1;
            else if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "off"))
                c->allow_unlocked_memory = 0;
            else
                rc = vmseal_fail(EINVAL, "%s:%d: allow_unlocked_memory is yes or no", c->path, lineno);
        } else if (!strcmp(k, "log_level")) {
            vmseal_log_level l;
            if (vmseal_log_level_parse(v, &l) < 0)
                rc = vmseal_fail(EINVAL, "%s:%d: %s", c->path, lineno, vmseal_last_error());
            else
                c->log_level = (int)l;
        } else if (!strcmp(k, "log_output")) {
            if (vmseal_log_outputs_parse(v, &c->log_outputs) < 0)
                rc = vmseal_fail(EINVAL, "%s:%d: %s", c->path, lineno, vmseal_last_error());
        } else {
            rc = vmseal_fail(EINVAL, "%s:%d: unknown setting '%s'", c->path, lineno, k);
        }
        if (rc < 0)
            break;
        if (slot) {
            free(*slot);
            *slot = is_path ? resolve(c, v) : strdup(v);
            if (!*slot) {
                rc = vmseal_fail(ENOMEM, "config: out of memory");
                break;
            }
        }
    }
    vmseal_conffile_close(cf);
    if (rc == 0 && (!c->cert_file || !c->key_file || !c->ca_file || !c->database))
        rc = vmseal_fail(EINVAL, "%s: cert, key, ca and database are required", c->path);
    if (rc == 0 && c->syslog_target && !strncmp(c->syslog_target, "tls://", 6) && !c->syslog_ca)
        rc = vmseal_fail(EINVAL, "%s: syslog_target %s needs syslog_ca", c->path, c->syslog_target);
    if (rc == 0 && (c->syslog_cert == NULL) != (c->syslog_key == NULL))
        rc = vmseal_fail(EINVAL, "%s: syslog_cert and syslog_key go together", c->path);
    if (rc == 0 && !c->host_ca_file)
        c->host_ca_file = strdup(c->ca_file);
    if (rc == 0 && !c->kms_dir)
        c->kms_dir = resolve(c, "kms");
    if (rc == 0 && (!c->host_ca_file || !c->kms_dir || !c->listen_address))
        rc = vmseal_fail(ENOMEM, "config: out of memory");
    if (rc < 0) {
        mgr_config_free(c);
        return rc;
    }
    *out = c;
    return 0;
}
