/* The vm.conf schema (lib/conf/vmrecord.c): real vm.conf files written by
 * vmseal-hostd load and are written back unchanged; records built and
 * edited in memory are written in the schema's order with unknown keys
 * kept in place; hostile values are refused naming the key and line. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <vmseal/diskdesc.h>
#include <vmseal/vmrecord.h>

static const char *const examples[] = {
    "plain-bios-boot-files",  "encrypted-bios-boot-files", "encrypted-uefi-3-disks",
    "shallow-recrypted",      "deep-recrypted",            "decrypted-uefi-3-disks",
    "no-disks-empty-append",  "op-encrypt-start",          "op-encrypt-mid",
    "op-decrypt-mid",         "op-recrypt-deep-mid",       "op-create",
    "op-encrypt-old-file",    "legacy-absolute-boot-paths", "unknown-keys",
};
#define NEXAMPLES (sizeof(examples) / sizeof(examples[0]))

static char *read_example(const char *name, size_t *len)
{
    const char *src = getenv("VMSEAL_SRC");
    char path[1024];
    snprintf(path, sizeof(path), "%s/tests/lib/vmconf-examples/%s.conf", src ? src : ".", name);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("%s: %s", path, strerror(errno));
    char *buf = malloc(1 << 16);
    assert_non_null(buf);
    *len = fread(buf, 1, (1 << 16) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static vmseal_vmrec *parse_ok(const char *text)
{
    vmseal_vmrec *r = NULL;
    if (vmseal_vmrec_parse(text, strlen(text), &r) != 0)
        fail_msg("parse failed: %s", vmseal_last_error());
    return r;
}

static char *format_rec(const vmseal_vmrec *r)
{
    vmseal_vmconf *c = NULL;
    if (vmseal_vmrec_to_conf(r, &c) != 0)
        fail_msg("to_conf failed: %s", vmseal_last_error());
    char *t = vmseal_vmconf_format(c);
    vmseal_vmconf_free(c);
    return t;
}

/* The whole file as the key = value layer writes it. */
static char *format_plain(const char *text)
{
    vmseal_vmconf *c = NULL;
    assert_int_equal(vmseal_vmconf_parse(text, strlen(text), &c), 0);
    char *t = vmseal_vmconf_format(c);
    vmseal_vmconf_free(c);
    return t;
}

/* ------------------------------------------------------ real examples */

static void test_examples_round_trip(void **state)
{
    (void)state;
    for (size_t i = 0; i < NEXAMPLES; i++) {
        size_t len;
        char *text = read_example(examples[i], &len);
        vmseal_vmrec *r = NULL;
        if (vmseal_vmrec_parse(text, len, &r) != 0)
            fail_msg("%s: %s", examples[i], vmseal_last_error());
        /* written back: the same keys, values and order */
        char *out = format_rec(r), *want = format_plain(text);
        if (strcmp(out, want) != 0)
            fail_msg("%s changed on write:\n%s\n--- want ---\n%s", examples[i], out, want);
        /* a copy writes the same, and is independent */
        vmseal_vmrec *d = vmseal_vmrec_dup(r);
        assert_non_null(d);
        char *out2 = format_rec(d);
        assert_string_equal(out, out2);
        d->cpus = d->cpus == 1 ? 2 : 1;
        free(out2);
        out2 = format_rec(r);
        assert_string_equal(out, out2);
        free(out2);
        vmseal_vmrec_free(d);
        free(out);
        free(want);
        vmseal_vmrec_free(r);
        free(text);
    }
}

static vmseal_vmrec *example(const char *name)
{
    size_t len;
    char *text = read_example(name, &len);
    vmseal_vmrec *r = parse_ok(text);
    free(text);
    return r;
}

static void test_examples_fields(void **state)
{
    (void)state;
    vmseal_vmrec *r = example("plain-bios-boot-files");
    assert_string_equal(r->name, "plain-bios");
    assert_int_equal(r->cpus, 2);
    assert_int_equal(r->memory_mb, 512);
    assert_int_equal(r->firmware, VMSEAL_FIRMWARE_BIOS);
    assert_int_equal(r->policy, VMSEAL_POLICY_NONE);
    assert_string_equal(r->kernel, "vmlinuz");
    assert_string_equal(r->initrd, "initrd.gz");
    assert_string_equal(r->append, "console=ttyS0 root=/dev/vda quiet");
    assert_int_equal(r->ndisks, 1);
    assert_string_equal(r->disks[0].file, "disk0.img");
    assert_true(r->disks[0].size == 4u << 20);
    assert_null(r->disks[0].keysafe);
    assert_null(r->vm_keysafe);
    assert_int_equal(r->op, VMSEAL_VMREC_OP_NONE);
    assert_string_equal(r->nvram.file, "");
    vmseal_vmrec_free(r);

    r = example("encrypted-uefi-3-disks");
    assert_int_equal(r->firmware, VMSEAL_FIRMWARE_UEFI);
    assert_int_equal(r->policy, VMSEAL_POLICY_ENCRYPTED);
    assert_string_equal(r->nvram.file, "nvram.luks");
    assert_int_equal(r->ndisks, 3);
    assert_non_null(r->vm_keysafe);
    for (size_t i = 0; i < 3; i++) {
        assert_non_null(r->disks[i].keysafe);
        assert_true(vmseal_uuid_valid(r->disks[i].luks_uuid));
    }
    vmseal_vmrec_keysafe_ref ks[VMSEAL_VMREC_KEYSAFES_MAX];
    assert_int_equal(vmseal_vmrec_keysafes(r, ks), 4);
    assert_string_equal(ks[0].key, "vm.keysafe");
    assert_int_equal(ks[0].idx, -1);
    assert_string_equal(ks[3].key, "disk2.keysafe");
    assert_int_equal(ks[3].idx, 2);
    assert_ptr_equal(ks[3].line, r->disks[2].keysafe);
    vmseal_vmrec_free(r);

    r = example("op-encrypt-mid");
    assert_int_equal(r->op, VMSEAL_VMREC_OP_ENCRYPT);
    assert_string_equal(r->op_kek, "kek-2");
    assert_non_null(r->vm_next_keysafe);
    assert_string_equal(r->disks[2].next_file, "disk2.luks");
    assert_non_null(r->disks[2].next_keysafe);
    assert_non_null(r->disks[0].keysafe);   /* converted already */
    assert_string_equal(r->nvram.next_file, "nvram.luks");
    assert_int_equal(vmseal_vmrec_keysafes(r, ks), 4);
    assert_string_equal(ks[0].key, "vm.next.keysafe");
    assert_int_equal(ks[0].next, 1);
    assert_string_equal(ks[3].key, "disk2.next.keysafe");
    /* what each key safe is bound to */
    char obj[80], want[80];
    assert_int_equal(vmseal_vmrec_keysafe_object(r, -1, 1, obj, sizeof(obj)), 0);
    snprintf(want, sizeof(want), "vm:%s", r->uuid);
    assert_string_equal(obj, want);
    assert_int_equal(vmseal_vmrec_keysafe_object(r, 2, 1, obj, sizeof(obj)), 0);
    snprintf(want, sizeof(want), "disk:%s", r->disks[2].next_luks_uuid);
    assert_string_equal(obj, want);
    assert_int_equal(vmseal_vmrec_keysafe_object(r, 0, 0, obj, sizeof(obj)), 0);
    assert_string_equal(obj, "disk:d016c901-bb28-49f3-b613-904f68023e9c");
    assert_int_equal(vmseal_vmrec_keysafe_object(r, 2, 0, obj, sizeof(obj)), -EINVAL);  /* plain */
    assert_int_equal(vmseal_vmrec_keysafe_object(r, 8, 0, obj, sizeof(obj)), -EINVAL);
    vmseal_vmrec_free(r);

    r = example("op-recrypt-deep-mid");
    assert_int_equal(r->op, VMSEAL_VMREC_OP_RECRYPT_DEEP);
    assert_string_equal(r->op_kek, "kek-1");
    assert_int_equal(r->disks[0].rekeyed, 1);
    assert_int_equal(r->disks[1].rekeyed, 0);
    vmseal_vmrec_free(r);

    r = example("op-encrypt-old-file");
    assert_string_equal(r->disks[1].old_file, "disk1.img");
    vmseal_vmrec_free(r);
    r = example("legacy-absolute-boot-paths");
    assert_string_equal(r->kernel, "/var/lib/vmseal/guest/vmlinuz");
    vmseal_vmrec_free(r);
    r = example("no-disks-empty-append");
    assert_int_equal(r->ndisks, 0);
    assert_string_equal(r->append, "");
    assert_int_equal(r->cpus, 64);
    assert_int_equal(r->memory_mb, 65536);
    vmseal_vmrec_free(r);
}

/* ---------------------------------------------------- editing, writing */

/* An operation as hostd records it: changed values stay where they are,
 * removed keys go, new keys come at the end in the schema's order; keys
 * vmseal does not know stay in place. */
static void test_edit_keeps_order(void **state)
{
    (void)state;
    vmseal_vmrec *r = example("unknown-keys");
    assert_int_equal(vmseal_vmrec_set_str(&r->disks[1].keysafe, NULL), 0);
    r->disks[1].luks_uuid[0] = '\0';
    snprintf(r->disks[1].next_file, sizeof(r->disks[1].next_file), "disk1.img");
    snprintf(r->disks[1].file, sizeof(r->disks[1].file), "disk1.luks");
    r->op = VMSEAL_VMREC_OP_DECRYPT;
    r->cpus = 8;
    char *t = format_rec(r);
    const char *a = strstr(t, "\nmemory = 256\nx-owner = team storage (ticket 4711)\n");
    assert_non_null(a);
    assert_non_null(strstr(t, "\ncpus = 8\nmemory"));
    assert_null(strstr(t, "disk1.keysafe"));
    assert_null(strstr(t, "disk1.luks.uuid"));
    const char *notes = strstr(t, "\nnotes.backup = nightly\n");
    const char *next = strstr(t, "\ndisk1.next.file = disk1.img\nop = decrypt\n");
    assert_non_null(notes);
    assert_non_null(next);
    assert_true(notes < next);
    /* and it reads back to the same */
    vmseal_vmrec *back = parse_ok(t);
    char *t2 = format_rec(back);
    assert_string_equal(t, t2);
    free(t2);
    vmseal_vmrec_free(back);
    free(t);
    vmseal_vmrec_free(r);
}

/* A new record (vmseal-hostd's create) is written in the schema's order,
 * saved, loaded back; an invalid record is not written at all. */
static void test_new_record_save_load(void **state)
{
    (void)state;
    vmseal_vmrec *r = vmseal_vmrec_new();
    snprintf(r->name, sizeof(r->name), "web01");
    snprintf(r->uuid, sizeof(r->uuid), "6c1f0b5e-3c55-4a8e-9d0e-1b2b3c4d5e6f");
    r->cpus = 1;
    r->memory_mb = 256;
    r->firmware = VMSEAL_FIRMWARE_UEFI;
    r->ndisks = 1;
    assert_int_equal(vmseal_vmrec_image_file_name(-1, 0, r->nvram.file, sizeof(r->nvram.file)), 0);
    assert_int_equal(vmseal_vmrec_image_file_name(0, 0, r->disks[0].file, sizeof(r->disks[0].file)),
                     0);
    r->disks[0].size = 16u << 20;
    assert_int_equal(vmseal_vmrec_set_str(&r->append, "console=ttyS0"), 0);
    r->op = VMSEAL_VMREC_OP_CREATE;
    snprintf(r->disk_path, sizeof(r->disk_path), "qemu-luks");
    snprintf(r->disks[0].disk_path, sizeof(r->disks[0].disk_path), "nbd");
    char *t = format_rec(r);
    const char *want_tail =
        "config.version = 1\nname = web01\nuuid = 6c1f0b5e-3c55-4a8e-9d0e-1b2b3c4d5e6f\n"
        "cpus = 1\nmemory = 256\nfirmware = uefi\npolicy = none\nappend = console=ttyS0\n"
        "nvram.file = nvram.fd\ndisks = 1\ndisk0.file = disk0.img\ndisk0.size = 16777216\n"
        "disk0.disk_path = nbd\nop = create\nvm.disk_path = qemu-luks\n";
    assert_non_null(strstr(t, want_tail));
    assert_string_equal(strstr(t, want_tail), want_tail);
    free(t);

    char dir[] = "/tmp/vmseal-vmrec.XXXXXX";
    assert_non_null(mkdtemp(dir));
    int dfd = open(dir, O_PATH | O_DIRECTORY);
    assert_true(dfd >= 0);
    assert_int_equal(vmseal_vmrec_saveat(r, dfd, "vm.conf"), 0);
    vmseal_vmrec *back = NULL;
    assert_int_equal(vmseal_vmrec_loadat(dfd, "vm.conf", &back), 0);
    assert_string_equal(back->name, "web01");
    assert_int_equal(back->op, VMSEAL_VMREC_OP_CREATE);
    assert_string_equal(back->disk_path, "qemu-luks");
    assert_string_equal(back->disks[0].disk_path, "nbd");
    assert_true(back->disks[0].size == 16u << 20);
    /* invalid: refused, the file on disk stays as it was */
    back->ndisks = 2;
    assert_int_equal(vmseal_vmrec_saveat(back, dfd, "vm.conf"), -EPROTO);
    assert_non_null(strstr(vmseal_last_error(), "disk1.file"));
    vmseal_vmrec *again = NULL;
    assert_int_equal(vmseal_vmrec_loadat(dfd, "vm.conf", &again), 0);
    assert_int_equal(again->ndisks, 1);
    vmseal_vmrec_free(again);
    vmseal_vmrec_free(back);
    char path[128];
    snprintf(path, sizeof(path), "%s/vm.conf", dir);
    assert_int_equal(vmseal_vmrec_load(path, &back), 0);
    vmseal_vmrec_free(back);
    /* vm.conf replaced by a symlink: loadat does not follow it */
    assert_int_equal(unlinkat(dfd, "vm.conf", 0), 0);
    assert_int_equal(symlinkat("/etc/passwd", dfd, "vm.conf"), 0);
    assert_int_equal(vmseal_vmrec_loadat(dfd, "vm.conf", &back), -ELOOP);
    assert_null(back);
    unlinkat(dfd, "vm.conf", 0);
    close(dfd);
    rmdir(dir);
    vmseal_vmrec_free(r);
}

static void test_names_and_accessors(void **state)
{
    (void)state;
    char b[VMSEAL_VMREC_KEY_MAX];
    assert_int_equal(vmseal_vmrec_keysafe_key(-1, 0, b, sizeof(b)), 0);
    assert_string_equal(b, "vm.keysafe");
    assert_int_equal(vmseal_vmrec_keysafe_key(-1, 1, b, sizeof(b)), 0);
    assert_string_equal(b, "vm.next.keysafe");
    assert_int_equal(vmseal_vmrec_keysafe_key(7, 1, b, sizeof(b)), 0);
    assert_string_equal(b, "disk7.next.keysafe");
    assert_int_equal(vmseal_vmrec_keysafe_key(8, 0, b, sizeof(b)), -EINVAL);
    assert_int_equal(vmseal_vmrec_keysafe_key(-2, 0, b, sizeof(b)), -EINVAL);
    assert_int_equal(vmseal_vmrec_keysafe_key(0, 0, b, 4), -ENOSPC);
    assert_int_equal(vmseal_vmrec_image_label(3, b, sizeof(b)), 0);
    assert_string_equal(b, "disk3");
    assert_int_equal(vmseal_vmrec_image_label(-1, b, sizeof(b)), 0);
    assert_string_equal(b, "nvram");
    assert_int_equal(vmseal_vmrec_image_file_name(2, 1, b, sizeof(b)), 0);
    assert_string_equal(b, "disk2.luks");
    assert_int_equal(vmseal_vmrec_image_file_name(-1, 1, b, sizeof(b)), 0);
    assert_string_equal(b, "nvram.luks");
    assert_string_equal(vmseal_vmrec_op_name(VMSEAL_VMREC_OP_RECRYPT_DEEP), "recrypt-deep");
    assert_string_equal(vmseal_vmrec_op_name(VMSEAL_VMREC_OP_NONE), "");
    assert_string_equal(vmseal_vmrec_op_name((vmseal_vmrec_op)99), "");
    vmseal_vmrec *r = vmseal_vmrec_new();
    assert_ptr_equal(vmseal_vmrec_image_at(r, -1), &r->nvram);
    assert_ptr_equal(vmseal_vmrec_image_at(r, 7), &r->disks[7]);
    assert_null(vmseal_vmrec_image_at(r, 8));
    assert_null(vmseal_vmrec_image_at(r, -2));
    assert_int_equal(vmseal_vmrec_validate(r), -EPROTO);   /* empty: no name */
    vmseal_vmrec_free(r);
    assert_true(vmseal_vmrec_name_valid("web-01.prod_2"));
    assert_false(vmseal_vmrec_name_valid(".hidden"));
    assert_false(vmseal_vmrec_name_valid("-x"));
    assert_false(vmseal_vmrec_name_valid("a/b"));
    assert_true(vmseal_vmrec_file_name_valid("disk0.luks"));
    assert_false(vmseal_vmrec_file_name_valid("vm.conf"));
    assert_false(vmseal_vmrec_file_name_valid("disk0.luks.partial"));
    assert_false(vmseal_vmrec_file_name_valid("../disk0.img"));
    assert_true(vmseal_vmrec_uuid_valid("6c1f0b5e-3c55-4a8e-9d0e-1b2b3c4d5e6f"));
    assert_false(vmseal_vmrec_uuid_valid("6C1F0B5E-3C55-4A8E-9D0E-1B2B3C4D5E6F"));
}

/* ------------------------------------------------------------ refusals */

/* The base file (encrypted UEFI VM, 3 disks) with one change: drop `key`
 * when value is NULL, replace its value, or append "key = value". */
static char *mutate(const char *example_name, const char *key, const char *value)
{
    size_t len;
    char *text = read_example(example_name, &len);
    size_t cap = len + 8192;
    char *out = malloc(cap), *o = out;
    assert_non_null(out);
    int found = 0;
    size_t kl = strlen(key);
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        size_t ll = nl ? (size_t)(nl - line) : strlen(line);
        if (ll > kl + 2 && strncmp(line, key, kl) == 0 && line[kl] == ' ' && line[kl + 1] == '=') {
            found = 1;
            if (value)
                o += sprintf(o, "%s = %s\n", key, value);
        } else {
            memcpy(o, line, ll);
            o += ll;
            *o++ = '\n';
        }
        line += ll + (nl ? 1 : 0);
    }
    if (!found && value)
        o += snprintf(o, cap - (size_t)(o - out), "%s = %s\n", key, value);
    *o = '\0';
    free(text);
    return out;
}

typedef struct refusal {
    const char *base, *key, *value;   /* value NULL: key removed */
    int err;
    const char *msg;                  /* part of the message */
} refusal;

static void test_refusals(void **state)
{
    (void)state;
    char huge[5000];
    memset(huge, 'k', 300);
    huge[300] = '\0';
    const char *E = "encrypted-uefi-3-disks", *P = "plain-bios-boot-files",
               *M = "op-encrypt-mid", *R = "op-recrypt-deep-mid";
    const refusal cases[] = {
        /* counts */
        {E, "disks", "9", EPROTO, "line 14: disks: 9 is out of range"},
        {E, "disks", "18446744073709551616", EPROTO, "disks: not a number"},
        {E, "disks", "4", EPROTO, "disk3.file: missing"},
        {E, "disks", "2", EPROTO, "line 23: disk2.file: there are only 2 disks"},
        {E, "disk8.file", "disk8.img", EPROTO, "disk8.file: a VM has at most 8 disks"},
        {E, "disk4294967296.file", "x.img", EPROTO, "unknown key"},
        /* the vTPM: encrypted VMs only */
        {P, "tpm", "1", EPROTO, "tpm: a vTPM needs an encrypted VM"},
        {E, "tpm", "yes", EPROTO, "tpm: 1 or absent"},
        {E, "tpm", "0", EPROTO, "tpm: 1 or absent"},
        {E, "tpm.state", "x", EPROTO, "unknown key"},
        {P, "secure_boot", "1", EPROTO, "secure_boot: Secure Boot needs firmware uefi"},
        {E, "secure_boot", "on", EPROTO, "secure_boot: 1 or absent"},
        /* the CD-ROM and the boot order */
        {P, "cdrom", "", EPROTO, "cdrom: a name in the host's images folder"},
        {P, "cdrom", huge, EPROTO, "cdrom"},
        {P, "boot", "floppy", EPROTO, "boot: disk, cdrom and net"},
        {P, "boot", "disk,disk", EPROTO, "boot: disk, cdrom and net"},
        {P, "boot", "disk,", EPROTO, "boot: disk, cdrom and net"},
        {P, "boot", ",cdrom", EPROTO, "boot: disk, cdrom and net"},
        {P, "boot", "", EPROTO, "boot: disk, cdrom and net"},
        {P, "cdrom.file", "x", EPROTO, "unknown key"},
        /* numbers: huge, zero, signs, leading zeros */
        {E, "cpus", "99999999999999999999999", EPROTO, "line 8: cpus: not a number"},
        {E, "cpus", "0", EPROTO, "cpus: 0 is out of range"},
        {E, "cpus", "65", EPROTO, "cpus: 65 is out of range"},
        {E, "cpus", "-1", EPROTO, "cpus: not a number"},
        {E, "cpus", "+1", EPROTO, "cpus: not a number"},
        {E, "cpus", "01", EPROTO, "cpus: not a number"},
        {E, "memory", "18446744073709551615", EPROTO, "memory: 18446744073709551615 is out of range"},
        {E, "memory", "15", EPROTO, "memory: 15 is out of range"},
        {E, "disk0.size", "18446744073709551615", EPROTO, "disk0.size: bytes, a whole number of MiB"},
        {E, "disk0.size", "2199023255552", EPROTO, "disk0.size"},
        {E, "disk0.size", "1048577", EPROTO, "disk0.size"},
        {E, "disk0.size", "0", EPROTO, "disk0.size"},
        {E, "disk0.size", NULL, EPROTO, "disk0.size: missing"},
        /* UUIDs and names */
        {E, "uuid", "not-a-uuid", EPROTO, "line 7: uuid: not a lower-case RFC 4122 UUID"},
        {E, "uuid", "619E3975-E4E5-46CC-BB43-7A73C163D3F1", EPROTO, "uuid"},
        {E, "uuid", "619e3975-e4e5-46cc-bb43-7a73c163d3f1-0000000000000", EPROTO, "uuid: longer"},
        {E, "disk1.luks.uuid", "zz", EPROTO, "disk1.luks.uuid: not a UUID"},
        {E, "disk1.luks.uuid", "a1fb46e3-b28a-4afe-b4e7-c589cced766d", EPROTO,
         "line 21: disk1.luks.uuid: the same LUKS UUID as disk0.luks.uuid"},
        {E, "name", "../etc", EPROTO, "line 6: name: 1..64"},
        {E, "name", ".hidden", EPROTO, "name"},
        {E, "name", huge, EPROTO, "name: longer than 64 bytes"},
        /* required keys */
        {E, "name", NULL, EPROTO, "name: missing"},
        {E, "uuid", NULL, EPROTO, "uuid: missing"},
        {E, "config.version", NULL, EPROTO, "config.version: missing"},
        {E, "policy", NULL, EPROTO, "policy: missing"},
        {E, "firmware", NULL, EPROTO, "firmware: missing"},
        {E, "disks", NULL, EPROTO, "disks: missing"},
        {E, "disk1.file", NULL, EPROTO, "disk1.file: missing"},
        {E, "nvram.file", NULL, EPROTO, "nvram.file: missing"},
        /* versions and enums */
        {E, "config.version", "2", ENOTSUP, "config.version: version 2 is not supported"},
        {E, "config.version", "one", EPROTO, "config.version: not a version number"},
        {E, "firmware", "efi", EPROTO, "firmware: bios or uefi"},
        {E, "policy", "yes", EPROTO, "policy: none or encrypted"},
        {E, "op", "destroy", EPROTO, "op: create, encrypt, decrypt or recrypt-deep"},
        {E, "vm.disk_path", "fast", EPROTO, "vm.disk_path: nbd or qemu-luks"},
        {E, "vm.disk_path", "", EPROTO, "vm.disk_path: nbd or qemu-luks"},
        {E, "vm.disk_path", "nbdnbdnbdnbdnbdnbd", EPROTO, "vm.disk_path: nbd or qemu-luks"},
        {E, "disk1.disk_path", "vhost", EPROTO, "disk1.disk_path: nbd or qemu-luks"},
        {E, "disk7.disk_path", "nbd", EPROTO, "disk7.disk_path: there are only 3 disks"},
        {E, "nvram.disk_path", "nbd", EPROTO, "nvram.disk_path: unknown key"},
        /* image files: paths, hostd's own files, duplicates */
        {E, "disk0.file", "../../etc/shadow", EPROTO, "disk0.file: an image is a file name"},
        {E, "disk0.file", "vm.conf", EPROTO, "disk0.file"},
        {E, "disk0.file", "disk0.luks.partial", EPROTO, "disk0.file"},
        {E, "disk0.file", "serial.log", EPROTO, "disk0.file"},
        {E, "disk1.file", "disk0.luks", EPROTO, "line 19: disk1.file: disk0.luks is already disk0.file"},
        {E, "nvram.file", "disk2.luks", EPROTO, "disk2.file: disk2.luks is already nvram.file"},
        {E, "disk0.old.file", "disk1.luks", EPROTO, "is already"},
        /* keys that look like vmseal's */
        {E, "disk00.file", "disk0.luks", EPROTO, "disk00.file: unknown key"},
        {E, "disk01.size", "1048576", EPROTO, "unknown key"},
        {E, "disk0.foo", "1", EPROTO, "disk0.foo: unknown key"},
        {E, "disk.file", "x.img", EPROTO, "unknown key"},
        {E, "diskx", "1", EPROTO, "unknown key"},
        {E, "vm.foo", "1", EPROTO, "vm.foo: unknown key"},
        {E, "nvram.size", "1", EPROTO, "unknown key"},
        {E, "op.extra", "1", EPROTO, "unknown key"},
        {E, "x.keysafe", "vmseal:keysafe:v1:a:b:AAAA", EPROTO, "x.keysafe: unknown key"},
        {E, "name.first", "x", EPROTO, "unknown key"},
        /* key safes and the policy */
        {E, "disk0.keysafe", "vmseal:keysafe:v1:broken", EPROTO, "disk0.keysafe: not a key safe"},
        {E, "disk0.keysafe", NULL, EPROTO, "an encrypted disk has both"},
        {E, "disk0.luks.uuid", NULL, EPROTO, "an encrypted disk has both"},
        {E, "vm.keysafe", NULL, EPROTO, "policy"},
        {P, "vm.keysafe", "vmseal:keysafe:v1:prov1:kek-1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
         EPROTO, "vm.keysafe: an encrypted VM"},
        {E, "policy", "none", EPROTO, "an encrypted VM"},
        /* the unfinished operation */
        {E, "op.kek", "kek-1", EPROTO, "op.kek: without op"},
        {M, "op.kek", NULL, EPROTO, "op: encrypt needs op.kek"},
        {R, "op.kek", NULL, EPROTO, "recrypt-deep needs op.kek"},
        {M, "op.kek", huge, EPROTO, "op.kek: longer than 255"},
        /* the suspended state: sealed for an encrypted VM, clear otherwise, a
         * file name in the home */
        {E, "state.file", "suspend-0123456789abcdef.vmstate", EPROTO, "state.file: a file name"},
        {P, "state.file", "suspend-0123456789abcdef.vmss", EPROTO, "state.file: a file name"},
        {E, "state.file", "../../etc/x.vmss", EPROTO, "state.file"},
        {E, "state.file", "disk0.luks", EPROTO, "state.file"},
        {E, "state.file", "", EPROTO, "state.file: empty"},
        {E, "state.file", huge, EPROTO, "state.file"},
        {E, "state.other", "1", EPROTO, "state.other: unknown key"},
        {E, "disk0.rekeyed", "1", EPROTO, "disk0.rekeyed: only while a deep recrypt"},
        {R, "disk0.rekeyed", "yes", EPROTO, "disk0.rekeyed: 1 or absent"},
        {E, "disk0.next.file", "disk0.img", EPROTO, "disk0.next.file: only while an encrypt"},
        {M, "op", "decrypt", EPROTO, "vm.next.keysafe: only while an encrypt"},
        {M, "disk2.next.file", NULL, EPROTO, "disk2.next.keysafe: without disk2.next.file"},
        {M, "disk2.next.keysafe", NULL, EPROTO, "a new encrypted image has both"},
        {E, "nvram.next.file", "nvram.fd", EPROTO, "nvram.next.file: only while"},
        {P, "nvram.file", "nvram.fd", EPROTO, "nvram.file: a BIOS VM has no NVRAM"},
        {P, "nvram.rekeyed", "1", EPROTO, "a BIOS VM has no NVRAM"},
        /* at rest, disks follow the policy */
        {P, "disk0.luks.uuid", "ec7b2da2-aa77-43b4-9384-079c8148f001", EPROTO, "an encrypted disk has both"},
        /* text values */
        {E, "append", "x\x01y", EPROTO, "control characters"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const refusal *c = &cases[i];
        char *text = mutate(c->base, c->key, c->value);
        vmseal_vmrec *r = NULL;
        int rc = vmseal_vmrec_parse(text, strlen(text), &r);
        if (rc != -c->err || r)
            fail_msg("case %zu (%s = %.40s): %d (%s), want %d", i, c->key,
                     c->value ? c->value : "(removed)", rc, vmseal_last_error(), -c->err);
        if (!strstr(vmseal_last_error(), c->msg))
            fail_msg("case %zu (%s): message '%s' lacks '%s'", i, c->key, vmseal_last_error(),
                     c->msg);
        free(text);
    }
    /* a disk key safe next to a plain VM at rest: a refused combination */
    char *text = mutate(P, "disk0.keysafe",
                        "vmseal:keysafe:v1:prov1:kek-1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    char *t2 = strdup(text);
    free(text);
    size_t n = strlen(t2);
    t2 = realloc(t2, n + 64);
    strcpy(t2 + n, "disk0.luks.uuid = ec7b2da2-aa77-43b4-9384-079c8148f001\n");
    vmseal_vmrec *r = NULL;
    assert_int_equal(vmseal_vmrec_parse(t2, strlen(t2), &r), -EPROTO);
    assert_non_null(strstr(vmseal_last_error(), "every disk of an encrypted VM has a key safe"));
    free(t2);
    /* not even key = value */
    assert_int_equal(vmseal_vmrec_parse("name = a\nname = b\n", 18, &r), -EPROTO);
    assert_int_equal(vmseal_vmrec_parse("", 0, &r), -EPROTO);
    assert_null(r);
}

/* A suspended VM: state.file is read, kept through a round trip and
 * written back after the other keys; removing it removes the line. */
static void test_state_file(void **state)
{
    (void)state;
    size_t len;
    char *text = read_example("encrypted-uefi-3-disks", &len);
    text = realloc(text, len + 64);
    strcpy(text + len, "state.file = suspend-0123456789abcdef.vmss\n");
    vmseal_vmrec *r = parse_ok(text);
    assert_string_equal(r->state_file, "suspend-0123456789abcdef.vmss");
    char *out = format_rec(r);
    assert_non_null(strstr(out, "\nstate.file = suspend-0123456789abcdef.vmss\n"));
    free(out);
    vmseal_vmrec *d = vmseal_vmrec_dup(r);
    assert_non_null(d);
    assert_string_equal(d->state_file, r->state_file);
    d->state_file[0] = '\0';
    out = format_rec(d);
    assert_null(strstr(out, "state.file"));
    free(out);
    vmseal_vmrec_free(d);
    vmseal_vmrec_free(r);
    free(text);
    assert_true(vmseal_vmrec_state_file_valid("suspend-00.vmss", 1));
    assert_false(vmseal_vmrec_state_file_valid("suspend-00.vmss", 0));
    assert_true(vmseal_vmrec_state_file_valid("suspend-00.vmstate", 0));
    assert_false(vmseal_vmrec_state_file_valid(".vmss", 1));
    assert_false(vmseal_vmrec_state_file_valid("a/b.vmss", 1));
}


/* The snapshot chain: read, written back in place, copied, dropped; hostile
 * values refused. */
static char *with_lines(const char *example, const char *extra)
{
    size_t len;
    char *text = read_example(example, &len);
    text = realloc(text, len + strlen(extra) + 1);
    strcpy(text + len, extra);
    return text;
}

static void refused(const char *example, const char *extra, const char *needle)
{
    char *text = with_lines(example, extra);
    vmseal_vmrec *r = NULL;
    if (vmseal_vmrec_parse(text, strlen(text), &r) == 0)
        fail_msg("accepted: %s", extra);
    if (!strstr(vmseal_last_error(), needle))
        fail_msg("for %s: %s (wanted %s)", extra, vmseal_last_error(), needle);
    free(text);
}

static void test_snapshots(void **state)
{
    (void)state;
    size_t len;
    char *base = read_example("encrypted-bios-boot-files", &len);
    const char *ks = strstr(base, "disk0.keysafe = ");
    assert_non_null(ks);
    ks += strlen("disk0.keysafe = ");
    char line[1024];
    size_t n = strcspn(ks, "\n");
    assert_true(n < sizeof(line));
    memcpy(line, ks, n);
    line[n] = '\0';
    free(base);
    char extra[4096];
    snprintf(extra, sizeof(extra),
             "snapshots = 2\n"
             "snap0.name = before-update\n"
             "snap0.state = snap-00112233aabbccdd.vmss\n"
             "snap0.disk0.file = snap-0011223344556677.qcow2\n"
             "snap0.disk0.uuid = 0b0d8a9e-8f7a-4c1e-9a39-5b0e6b1a2c3d\n"
             "snap0.disk0.keysafe = %s\n"
             "snap1.name = after\n"
             "snap1.disk0.file = snap-8899aabbccddeeff.qcow2\n"
             "snap1.disk0.uuid = 1b0d8a9e-8f7a-4c1e-9a39-5b0e6b1a2c3d\n"
             "snap1.disk0.keysafe = %s\n",
             line, line);
    char *text = with_lines("encrypted-bios-boot-files", extra);
    vmseal_vmrec *r = parse_ok(text);
    assert_int_equal(r->nsnaps, 2);
    assert_string_equal(r->snaps[0].name, "before-update");
    assert_string_equal(r->snaps[0].state_file, "snap-00112233aabbccdd.vmss");
    assert_string_equal(r->snaps[1].state_file, "");
    assert_string_equal(vmseal_vmrec_top_file(r, 0), "snap-8899aabbccddeeff.qcow2");
    assert_int_equal(vmseal_vmrec_snap_find(r, "after"), 1);
    assert_int_equal(vmseal_vmrec_snap_find(r, "nope"), -1);
    char obj[64];
    assert_int_equal(vmseal_vmrec_layer_object(&r->snaps[1].disks[0], obj, sizeof(obj)), 0);
    assert_string_equal(obj, "disk:1b0d8a9e-8f7a-4c1e-9a39-5b0e6b1a2c3d");
    char *out = format_rec(r);
    assert_string_equal(out, text);   /* written back as it was */
    free(out);
    vmseal_vmrec *d = vmseal_vmrec_dup(r);
    assert_non_null(d);
    assert_ptr_not_equal(d->snaps[0].disks[0].keysafe, r->snaps[0].disks[0].keysafe);
    vmseal_vmrec_snap_drop(d, 0);
    assert_int_equal(d->nsnaps, 1);
    assert_string_equal(d->snaps[0].name, "after");
    out = format_rec(d);
    assert_null(strstr(out, "before-update"));
    assert_null(strstr(out, "snap1."));
    assert_non_null(strstr(out, "snap0.name = after\n"));
    free(out);
    d->snaps[0].removing = 1;
    out = format_rec(d);
    assert_non_null(strstr(out, "snap0.removing = 1\n"));
    free(out);
    vmseal_vmrec_snap_drop(d, 0);
    out = format_rec(d);
    assert_null(strstr(out, "snap"));
    free(out);
    vmseal_vmrec_free(d);
    vmseal_vmrec_free(r);
    free(text);

    const char *ex = "encrypted-bios-boot-files";
    char bad[4096];
    snprintf(bad, sizeof(bad), "snapshots = 1\nsnap0.name = ../x\nsnap0.disk0.file = a.qcow2\n"
             "snap0.disk0.uuid = 0b0d8a9e-8f7a-4c1e-9a39-5b0e6b1a2c3d\nsnap0.disk0.keysafe = %s\n",
             line);
    refused(ex, bad, "snap0.name");
    snprintf(bad, sizeof(bad), "snapshots = 1\nsnap0.name = x\nsnap0.disk0.file = ../a.qcow2\n"
             "snap0.disk0.uuid = 0b0d8a9e-8f7a-4c1e-9a39-5b0e6b1a2c3d\nsnap0.disk0.keysafe = %s\n",
             line);
    refused(ex, bad, "snap0.disk0.file");
    snprintf(bad, sizeof(bad), "snapshots = 1\nsnap0.name = x\nsnap0.disk0.file = a.qcow2\n"
             "snap0.disk0.uuid = 0b0d8a9e-8f7a-4c1e-9a39-5b0e6b1a2c3d\n");
    refused(ex, bad, "snap0.disk0.keysafe");
    snprintf(bad, sizeof(bad), "snapshots = 2\nsnap0.name = x\nsnap0.disk0.file = a.qcow2\n"
             "snap0.disk0.uuid = 0b0d8a9e-8f7a-4c1e-9a39-5b0e6b1a2c3d\nsnap0.disk0.keysafe = %s\n"
             "snap1.name = x\nsnap1.disk0.file = a.qcow2\n"
             "snap1.disk0.uuid = 0b0d8a9e-8f7a-4c1e-9a39-5b0e6b1a2c3d\nsnap1.disk0.keysafe = %s\n",
             line, line);
    refused(ex, bad, "two snapshots are called x");
    refused(ex, "snap0.name = x\n", "beyond");
    refused(ex, "snapshots = 9\n", "snapshots");
    refused(ex, "snap0.nme = x\n", "unknown key");
    refused(ex, "snap0.disk9.file = a.qcow2\n", "at most");
    assert_true(vmseal_vmrec_overlay_file_valid("snap-00.qcow2"));
    assert_false(vmseal_vmrec_overlay_file_valid(".qcow2"));
    assert_false(vmseal_vmrec_overlay_file_valid("a.luks"));
    assert_false(vmseal_vmrec_snap_name_valid("\xc3\xa9t\xc3\xa9"));
}

/* Keys outside vmseal's namespaces are kept; a record never writes one of
 * vmseal's keys it does not know. */
/* tpm = 1 is read, kept and written back; absent means no vTPM. */
static void test_tpm_key(void **state)
{
    (void)state;
    size_t len;
    char *text = read_example("encrypted-uefi-3-disks", &len);
    vmseal_vmrec *r = parse_ok(text);
    assert_int_equal(r->tpm, 0);
    char *out = format_rec(r);
    assert_null(strstr(out, "tpm"));
    free(out);
    r->tpm = 1;
    out = format_rec(r);
    assert_non_null(strstr(out, "\ntpm = 1\n"));
    vmseal_vmrec *back = parse_ok(out);
    assert_int_equal(back->tpm, 1);
    vmseal_vmrec *copy = vmseal_vmrec_dup(back);
    assert_non_null(copy);
    assert_int_equal(copy->tpm, 1);
    vmseal_vmrec_free(copy);
    vmseal_vmrec_free(back);
    free(out);
    /* a record without a per-VM secret cannot be written with a vTPM */
    char *plain = read_example("plain-bios-boot-files", &len);
    vmseal_vmrec *p = parse_ok(plain);
    p->tpm = 1;
    vmseal_vmconf *c = NULL;
    assert_int_equal(vmseal_vmrec_to_conf(p, &c), -EPROTO);
    assert_null(c);
    vmseal_vmrec_free(p);
    vmseal_vmrec_free(r);
    free(plain);
    free(text);
}

static void test_cdrom_boot_keys(void **state)
{
    (void)state;
    size_t len;
    char *text = read_example("plain-bios-boot-files", &len);
    vmseal_vmrec *r = parse_ok(text);
    assert_string_equal(r->cdrom, "");
    assert_string_equal(r->boot, "");
    snprintf(r->cdrom, sizeof(r->cdrom), "isos/debian-12.iso");
    snprintf(r->boot, sizeof(r->boot), "cdrom,disk,net");
    char *out = format_rec(r);
    assert_non_null(strstr(out, "\ncdrom = isos/debian-12.iso\n"));
    assert_non_null(strstr(out, "\nboot = cdrom,disk,net\n"));
    vmseal_vmrec *back = parse_ok(out);
    assert_string_equal(back->cdrom, "isos/debian-12.iso");
    assert_string_equal(back->boot, "cdrom,disk,net");
    vmseal_vmrec *copy = vmseal_vmrec_dup(back);
    assert_non_null(copy);
    assert_string_equal(copy->boot, "cdrom,disk,net");
    assert_true(vmseal_vmrec_boot_order_valid("net"));
    assert_false(vmseal_vmrec_boot_order_valid("disk,cdrom,net,disk"));
    assert_false(vmseal_vmrec_boot_order_valid("Disk"));
    assert_false(vmseal_vmrec_boot_order_valid(NULL));
    vmseal_vmrec_free(copy);
    vmseal_vmrec_free(back);
    vmseal_vmrec_free(r);
    free(out);
    free(text);
}

static void test_unknown_keys_kept(void **state)
{
    (void)state;
    vmseal_vmrec *r = example("unknown-keys");
    char *t = format_rec(r);
    assert_non_null(strstr(t, "\nx-owner = team storage (ticket 4711)\n"));
    assert_non_null(strstr(t, "\nnotes.backup = nightly\n"));
    free(t);
    vmseal_vmrec_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_examples_round_trip),
        cmocka_unit_test(test_examples_fields),
        cmocka_unit_test(test_edit_keeps_order),
        cmocka_unit_test(test_new_record_save_load),
        cmocka_unit_test(test_names_and_accessors),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_unknown_keys_kept),
        cmocka_unit_test(test_state_file),
        cmocka_unit_test(test_tpm_key),
        cmocka_unit_test(test_cdrom_boot_keys),
        cmocka_unit_test(test_snapshots),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
