/* check: is each file encrypted, in which format, with which key (no key
 * needed). Exit 0: every file is encrypted or holds only wrapped keys;
 * 1: some file is plain; 2: some file could not be checked or is damaged. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include <vmseal/disk.h>
#include <vmseal/diskdesc.h>
#include <vmseal/keysafe.h>
#include <vmseal/hostcore.h>
#include <vmseal/sealed.h>
#include <vmseal/vmconf.h>
#include <vmseal/vmrecord.h>

#include "cu.h"

#define SCAN_MAX (1u << 20)   /* bytes of a text file searched for key safes */

enum status { ST_ENCRYPTED, ST_KEYSAFE, ST_PLAIN, ST_ERROR };
static const char *const status_name[] = {"encrypted", "keysafe", "plain", "error"};

typedef struct result {
    enum status st;
    char format[32];          /* luks1, luks2, sealed, sealed-log, disk-descriptor, config, raw */
    char detail[256];
    char provider[VMSEAL_KEYSAFE_PROVIDER_MAX + 1];
    char kek_id[VMSEAL_KEYSAFE_KEK_ID_MAX + 1];
    char uuid[40];
    char error[512];
    int keysafes;
    vmseal_vmrec *conf;       /* a VM config: its key safes are listed */
    char vm_config[512];      /* a VM's disk or NVRAM: the vm.conf holding its key safe */
    char vm_key[48];          /* ... and the key there */
} result;

static void VMSEAL_PRINTF(2, 3) set_error(result *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    r->st = ST_ERROR;
    vsnprintf(r->error, sizeof(r->error), fmt, ap);
    va_end(ap);
}

static void take_keysafe(result *r, const char *line)
{
    vmseal_keysafe_info ki;
    if (vmseal_keysafe_parse(line, &ki) < 0) {
        set_error(r, "%s", vmseal_last_error());
        return;
    }
    snprintf(r->provider, sizeof(r->provider), "%s", ki.provider);
    snprintf(r->kek_id, sizeof(r->kek_id), "%s", ki.kek_id);
}

/* No descriptor: a disk or the NVRAM of a vmseal-hostd VM home folder,
 * whose key safe is in the vm.conf beside it. */
static void check_vm_disk(const char *path, const vmseal_disk_info *di, result *r)
{
    cu_vmdisk d;
    int rc = cu_vmhome_lookup(path, &d);
    size_t l = strlen(r->detail);
    if (rc < 0) {
        set_error(r, "%s", vmseal_last_error());
    } else if (rc == 0) {
        snprintf(r->detail + l, sizeof(r->detail) - l, "; no vmseal descriptor (key unknown)");
    } else if (!d.keysafe) {
        set_error(r, "%s names this image but has no %s", d.conf_path, d.key);
    } else if (d.index >= 0 && strcasecmp(d.uuid, di->uuid) != 0) {
        set_error(r, "%s: %s belongs to disk %s, but this disk is %s (vm.conf of another VM?)",
                  d.conf_path, d.key, d.uuid[0] ? d.uuid : "(none)", di->uuid);
    } else {
        const char *name = d.rec->name;
        const char *nx = d.next ? "new image of " : "";
        if (d.index >= 0)
            snprintf(r->detail + l, sizeof(r->detail) - l, "; %sdisk %d of VM '%s', key safe %s in %s",
                     nx, d.index, name ? name : "?", d.key, d.conf_path);
        else
            snprintf(r->detail + l, sizeof(r->detail) - l, "; %sNVRAM of VM '%s', key safe %s in %s",
                     nx, name ? name : "?", d.key, d.conf_path);
        take_keysafe(r, d.keysafe);
        r->keysafes = 1;
        snprintf(r->vm_config, sizeof(r->vm_config), "%s", d.conf_path);
        snprintf(r->vm_key, sizeof(r->vm_key), "%s", d.key);
        if (r->st != ST_ERROR && d.rec->op != VMSEAL_VMREC_OP_NONE)
            snprintf(r->detail + strlen(r->detail), sizeof(r->detail) - strlen(r->detail),
                     "; unfinished '%s' operation", vmseal_vmrec_op_name(d.rec->op));
    }
    cu_vmdisk_clear(&d);
}

/* A segment of a VM's sealed console log: its key is the VM secret of the
 * vm.conf beside it (vm.keysafe). */
static void check_slog(const char *path, const uint8_t *buf, size_t n, result *r)
{
    vmseal_slog_info si;
    snprintf(r->format, sizeof(r->format), "sealed-log");
    int rc = vmseal_slog_probe_header(buf, n, &si);
    if (rc == -ENODATA) {
        set_error(r, "%s", "sealed log segment truncated inside its header");
        return;
    }
    if (rc < 0) {
        set_error(r, "%s", vmseal_last_error());
        return;
    }
    r->st = ST_ENCRYPTED;
    snprintf(r->uuid, sizeof(r->uuid), "%s", si.uuid);
    snprintf(r->detail, sizeof(r->detail), "sealed console log v%u, segment %llu of VM %s",
             si.version, (unsigned long long)si.seq, si.uuid);
    char *dir = strdup(path);
    char *slash = dir ? strrchr(dir, '/') : NULL;
    char conf_path[512];
    if (slash)
        slash[0] = '\0';
    snprintf(conf_path, sizeof(conf_path), "%s/%s", slash ? dir : ".", VMSEAL_VMREC_FILE);
    free(dir);
    struct stat cst;
    if (lstat(conf_path, &cst) != 0) {
        size_t l = strlen(r->detail);
        snprintf(r->detail + l, sizeof(r->detail) - l, "; no vm.conf beside it (key unknown)");
        return;
    }
    vmseal_vmrec *c = NULL;
    if (vmseal_vmrec_load(conf_path, &c) < 0) {
        set_error(r, "the vm.conf beside it: %s", vmseal_last_error());
        return;
    }
    char key[VMSEAL_VMREC_KEY_MAX];
    (void)vmseal_vmrec_keysafe_key(-1, 0, key, sizeof(key));
    if (strcasecmp(c->uuid, si.uuid) != 0) {
        set_error(r, "%s is the vm.conf of VM %s, but this segment belongs to VM %s", conf_path,
                  c->uuid, si.uuid);
    } else if (!c->vm_keysafe) {
        set_error(r, "%s has no %s (the VM is not encrypted): the log key is gone", conf_path,
                  key);
    } else {
        size_t l = strlen(r->detail);
        snprintf(r->detail + l, sizeof(r->detail) - l, "; key from %s in %s", key, conf_path);
        take_keysafe(r, c->vm_keysafe);
        r->keysafes = 1;
        snprintf(r->vm_config, sizeof(r->vm_config), "%s", conf_path);
        snprintf(r->vm_key, sizeof(r->vm_key), "%s", key);
    }
    vmseal_vmrec_free(c);
}

static void check_luks(const char *path, const uint8_t *buf, size_t n, result *r)
{
    unsigned version = n >= 8 ? (unsigned)buf[6] << 8 | buf[7] : 0;
    if (version == 2) {
        r->st = ST_ENCRYPTED;
        snprintf(r->format, sizeof(r->format), "luks2");
        snprintf(r->detail, sizeof(r->detail), "LUKS2 volume (not made by vmseal)");
        return;
    }
    vmseal_disk_info di;
    if (vmseal_disk_probe(path, &di) < 0) {
        snprintf(r->format, sizeof(r->format), "luks1");
        set_error(r, "damaged LUKS header: %s", cu_msg_after(vmseal_last_error(), path));
        return;
    }
    r->st = ST_ENCRYPTED;
    snprintf(r->format, sizeof(r->format), "luks1");
    snprintf(r->uuid, sizeof(r->uuid), "%s", di.uuid);
    snprintf(r->detail, sizeof(r->detail), "LUKS1 disk, %s-%s %u-bit, %d keyslot%s",
             di.cipher, di.cipher_mode, di.key_bits, di.active_slots,
             di.active_slots == 1 ? "" : "s");
    char *dpath = vmseal_diskdesc_path(path);
    vmseal_diskdesc d;
    int rc = dpath ? vmseal_diskdesc_read(dpath, &d) : -ENOMEM;
    if (rc == -ENOENT) {
        check_vm_disk(path, &di, r);
    } else if (rc < 0) {
        set_error(r, "%s", vmseal_last_error());
    } else if (strcasecmp(d.uuid, di.uuid) != 0) {
        char msg[200];
        snprintf(msg, sizeof(msg), "%s belongs to disk %s, but this disk is %s", dpath, d.uuid,
                 di.uuid);
        set_error(r, "%s", msg);
    } else {
        take_keysafe(r, d.keysafe);
        r->keysafes = 1;
        if (d.incomplete) {
            size_t l = strlen(r->detail);
            snprintf(r->detail + l, sizeof(r->detail) - l, "; descriptor marked incomplete");
        }
    }
    free(dpath);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static void check_text(const char *path, const char *buf, size_t n, result *r)
{
    if (ends_with(path, VMSEAL_DISKDESC_SUFFIX)) {
        vmseal_diskdesc d;
        snprintf(r->format, sizeof(r->format), "disk-descriptor");
        if (vmseal_diskdesc_parse(buf, n, &d) < 0) {
            set_error(r, "%s", vmseal_last_error());
            return;
        }
        r->st = ST_KEYSAFE;
        r->keysafes = 1;
        snprintf(r->uuid, sizeof(r->uuid), "%s", d.uuid);
        snprintf(r->detail, sizeof(r->detail), "disk descriptor (key safe of disk %s%s)", d.uuid,
                 d.incomplete ? ", incomplete" : "");
        take_keysafe(r, d.keysafe);
        return;
    }
    /* A vmseal-hostd VM config (config.version set): checked as vmseal-hostd
     * reads it; its key safes are listed. */
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    vmseal_vmconf *file = NULL;
    if (strcmp(base, VMSEAL_VMREC_FILE) == 0 && vmseal_vmconf_parse(buf, n, &file) == 0 &&
        vmseal_vmrec_is_vmconf(file)) {
        vmseal_vmrec *conf = NULL;
        snprintf(r->format, sizeof(r->format), "vm-config");
        int rc = vmseal_vmrec_from_conf(file, &conf);
        vmseal_vmconf_free(file);
        if (rc < 0) {
            set_error(r, "%s", vmseal_last_error());
            return;
        }
        vmseal_vmrec_keysafe_ref ks[VMSEAL_VMREC_KEYSAFES_MAX];
        r->keysafes = (int)vmseal_vmrec_keysafes(conf, ks);
        for (int i = 0; i < r->keysafes; i++)
            take_keysafe(r, ks[i].line);   /* each parses: checked above */
        r->st = r->keysafes ? ST_KEYSAFE : ST_PLAIN;
        snprintf(r->detail, sizeof(r->detail), "VM config of '%s' with %d key safe%s",
                 conf->name, r->keysafes, r->keysafes == 1 ? "" : "s");
        if (r->keysafes)
            r->conf = conf;
        else
            vmseal_vmrec_free(conf);
        return;
    }
    vmseal_vmconf_free(file);   /* not written by vmseal-hostd: scanned as text */
    /* Any text file (VM config, ...): every key safe in it must parse. */
    const char *p = buf, *end = buf + n;
    size_t plen = strlen(VMSEAL_KEYSAFE_PREFIX);
    while ((p = memmem(p, (size_t)(end - p), VMSEAL_KEYSAFE_PREFIX, plen)) != NULL) {
        const char *e = p;
        while (e < end && *e != '\n' && *e != '\r' && *e != ' ' && *e != '\t' && *e != '"' &&
               *e != '\'')
            e++;
        char line[VMSEAL_KEYSAFE_LINE_MAX + 2];
        size_t l = (size_t)(e - p) > VMSEAL_KEYSAFE_LINE_MAX + 1 ? VMSEAL_KEYSAFE_LINE_MAX + 1
                                                                 : (size_t)(e - p);
        memcpy(line, p, l);
        line[l] = '\0';
        r->keysafes++;
        snprintf(r->format, sizeof(r->format), "config");
        take_keysafe(r, line);
        if (r->st == ST_ERROR)
            return;
        p = e;
    }
    if (r->keysafes) {
        r->st = ST_KEYSAFE;
        snprintf(r->detail, sizeof(r->detail), "config file with %d key safe%s", r->keysafes,
                 r->keysafes == 1 ? "" : "s");
    }
}

static void check_one(const char *path, result *r)
{
    memset(r, 0, sizeof(*r));
    r->st = ST_PLAIN;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0) {
        set_error(r, "%s", errno == ELOOP ? "a symlink (not followed)" : strerror(errno));
        return;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        set_error(r, "%s", S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file");
        return;
    }
    uint8_t *buf = malloc(SCAN_MAX + 1);
    if (!buf) {
        close(fd);
        set_error(r, "%s", "out of memory");
        return;
    }
    size_t n = 0;
    while (n < SCAN_MAX) {
        ssize_t got = read(fd, buf + n, SCAN_MAX - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            set_error(r, "read: %s", strerror(errno));
            goto out;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    buf[n] = 0;
    if (n >= 6 && memcmp(buf, "LUKS\xba\xbe", 6) == 0) {
        check_luks(path, buf, n, r);
    } else if (n >= 8 && memcmp(buf, VMSEAL_SEALED_MAGIC, 8) == 0) {
        vmseal_sealed_info si;
        snprintf(r->format, sizeof(r->format), "sealed");
        int rc = vmseal_sealed_probe_header(buf, n, &si);
        if (rc == -ENODATA)
            set_error(r, "%s", "sealed file truncated inside its header");
        else if (rc < 0)
            set_error(r, "%s", vmseal_last_error());
        else {
            r->st = ST_ENCRYPTED;
            snprintf(r->provider, sizeof(r->provider), "%s", si.provider);
            snprintf(r->kek_id, sizeof(r->kek_id), "%s", si.kek_id);
            snprintf(r->detail, sizeof(r->detail), "sealed file v%u, %u KiB chunks", si.version,
                     si.chunk_size / 1024);
        }
    } else if (n >= 8 && memcmp(buf, VMSEAL_SLOG_MAGIC, 8) == 0) {
        check_slog(path, buf, n, r);
    } else if (n >= 16 && memcmp(buf, "nilmptws", 8) == 0) {
        /* swtpm's linear state file (a vTPM's vtpm.state): its first state
         * blob's header says whether swtpm encrypted it (flags bit 0) */
        snprintf(r->format, sizeof(r->format), "swtpm-state");
        uint32_t off = (uint32_t)buf[12] | (uint32_t)buf[13] << 8 | (uint32_t)buf[14] << 16 |
                       (uint32_t)buf[15] << 24;
        if (off < 16 || off > n - 10 || n < 10) {
            snprintf(r->detail, sizeof(r->detail), "swtpm state file without a state blob");
            r->st = ST_PLAIN;
        } else {
            unsigned flags = (unsigned)buf[off + 4] << 8 | buf[off + 5];
            r->st = (flags & 1) ? ST_ENCRYPTED : ST_PLAIN;
            snprintf(r->detail, sizeof(r->detail), "vTPM state (swtpm), %s",
                     (flags & 1) ? ((flags & 8) ? "AES-256-CBC + HMAC" : "AES-128-CBC + HMAC")
                                 : "not encrypted");
        }
    } else if (n >= 8 && memcmp(buf, VMSEAL_HOSTCORE_MAGIC, 8) == 0) {
        /* a host's own core dump (host encryption mode): sealed to a host key */
        snprintf(r->format, sizeof(r->format), "host-sealed");
        if (n < VMSEAL_HOSTCORE_PREFIX_LEN + VMSEAL_SEALED_FIXED_LEN ||
            buf[8] != VMSEAL_HOSTCORE_VERSION) {
            set_error(r, "%s", "host-sealed core dump truncated or of an unknown version");
        } else {
            r->st = ST_ENCRYPTED;
            snprintf(r->detail, sizeof(r->detail), "host-sealed core dump v%u (host key)", buf[8]);
        }
    } else if (!memchr(buf, 0, n)) {
        check_text(path, (const char *)buf, n, r);
    }
out:
    free(buf);
    close(fd);
}

static void print_text(const char *path, const result *r)
{
    switch (r->st) {
    case ST_ERROR:
        printf("%s: error: %s\n", path, r->error);
        break;
    case ST_PLAIN:
        printf("%s: not encrypted\n", path);
        break;
    case ST_ENCRYPTED:
    case ST_KEYSAFE:
        printf("%s: %s (%s)", path, r->st == ST_ENCRYPTED ? "encrypted" : "holds wrapped keys",
               r->detail);
        if (r->conf) {
            printf("\n");
            vmseal_vmrec_keysafe_ref ks[VMSEAL_VMREC_KEYSAFES_MAX];
            size_t nks = vmseal_vmrec_keysafes(r->conf, ks);
            for (size_t i = 0; i < nks; i++) {
                vmseal_keysafe_info ki;
                if (vmseal_keysafe_parse(ks[i].line, &ki) < 0)
                    continue;
                printf("  %s: KEK '%s' at provider '%s'\n", ks[i].key, ki.kek_id, ki.provider);
            }
            break;
        }
        if (r->kek_id[0])
            printf("; KEK '%s' at provider '%s'", r->kek_id, r->provider);
        printf("\n");
        break;
    }
}

static json_t *to_json(const char *path, const result *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "file", json_string(path));
    json_object_set_new(o, "status", json_string(status_name[r->st]));
    json_object_set_new(o, "encrypted", json_boolean(r->st == ST_ENCRYPTED));
    if (r->format[0])
        json_object_set_new(o, "format", json_string(r->format));
    if (r->detail[0])
        json_object_set_new(o, "detail", json_string(r->detail));
    if (r->uuid[0])
        json_object_set_new(o, "uuid", json_string(r->uuid));
    if (r->kek_id[0]) {
        /* KEK ids may be any bytes: JSON needs UTF-8. */
        json_t *id = json_string(r->kek_id);
        json_object_set_new(o, "kek_id", id ? id : json_null());
        json_object_set_new(o, "provider", json_string(r->provider));
    }
    if (r->vm_config[0]) {
        json_object_set_new(o, "vm_config", json_string(r->vm_config));
        json_object_set_new(o, "vm_config_key", json_string(r->vm_key));
    }
    if (r->conf) {
        /* One entry per key safe: which key of vm.conf, which KEK. */
        json_t *arr = json_array();
        vmseal_vmrec_keysafe_ref ks[VMSEAL_VMREC_KEYSAFES_MAX];
        size_t nks = vmseal_vmrec_keysafes(r->conf, ks);
        for (size_t i = 0; i < nks; i++) {
            vmseal_keysafe_info ki;
            if (vmseal_keysafe_parse(ks[i].line, &ki) < 0)
                continue;
            json_t *e = json_object(), *id = json_string(ki.kek_id);
            json_object_set_new(e, "key", json_string(ks[i].key));
            json_object_set_new(e, "kek_id", id ? id : json_null());
            json_object_set_new(e, "provider", json_string(ki.provider));
            json_array_append_new(arr, e);
        }
        json_object_set_new(o, "keysafes", arr);
    }
    if (r->st == ST_ERROR)
        json_object_set_new(o, "error", json_string(r->error));
    return o;
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: vmseal-crypto-util check [--json] FILE...\n"
        "\n"
        "Tell for each FILE whether it is encrypted, in which format and with which\n"
        "key, without needing any key:\n"
        "  LUKS1 disk      (with the KEK named by its <image>.vmdesc descriptor, or,\n"
        "                  in a VM home folder, by the key safe in the vm.conf beside it)\n"
        "  sealed file     (VM home files: NVRAM, memory, core dumps, vTPM)\n"
        "  sealed log      (an encrypted VM's console log; key from the vm.conf beside it)\n"
        "  host-sealed     (a host's own core dump in host encryption mode)\n"
        "  key safe        (disk descriptor or config file holding wrapped keys)\n"
        "  not encrypted\n"
        "Exit status: 0 every file is encrypted or holds only wrapped keys,\n"
        "             1 some file is not encrypted, 2 some file could not be checked\n"
        "             or is damaged (2 wins over 1), 64 usage.\n");
}

int cu_check_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 'h': usage(stdout); return CU_OK;
        default: usage(stderr); return CU_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return CU_USAGE;
    }
    int any_plain = 0, any_error = 0;
    json_t *arr = json ? json_array() : NULL;
    for (int i = optind; i < argc; i++) {
        result r;
        check_one(argv[i], &r);
        any_plain |= r.st == ST_PLAIN;
        any_error |= r.st == ST_ERROR;
        if (json)
            json_array_append_new(arr, to_json(argv[i], &r));
        else
            print_text(argv[i], &r);
        vmseal_vmrec_free(r.conf);
    }
    if (json) {
        char *s = json_dumps(arr, JSON_INDENT(2) | JSON_ENSURE_ASCII);
        if (s)
            printf("%s\n", s);
        free(s);
        json_decref(arr);
    }
    return any_error ? CU_ERROR : any_plain ? CU_PLAIN : CU_OK;
}
