/* libvmseal — the vm.conf schema: a VM's configuration as a typed record.
 *
 * vm.conf is a `key = value` file (include/vmseal/vmconf.h is the file
 * layer); this module is the only place that knows its keys. It reads a
 * parsed file into a vmseal_vmrec, checking every key and value once, and
 * writes a record back. Everything else (vmseal-hostd, vmseal-crypto-util)
 * works on the record's fields and never spells a key.
 *
 * vm.conf lives in the VM's home folder, which a datastore user may edit:
 * it is untrusted input (fuzz/vmrecord.c). The keys, their values and the
 * rules between them are in docs/formats.md, "VM configuration (vm.conf)".
 * In short:
 *
 *   config.version = 1            required; anything else is refused
 *   name, uuid, cpus, memory,     required
 *   firmware (bios|uefi), policy (none|encrypted), disks (0..8)
 *   kernel, initrd, append        optional text
 *   vm.keysafe                    the per-VM secret (policy encrypted)
 *   nvram.file                    the UEFI variable store (uefi only)
 *   vm.disk_path, diskN.disk_path nbd | qemu-luks: how the running VM reads its
 *                                 encrypted disks (optional; the disk's setting, else
 *                                 the VM's, else hostd.conf disk_path)
 *   diskN.file, diskN.size        for each N < disks
 *   diskN.luks.uuid, diskN.keysafe  an encrypted disk
 *   nics (0..4), nicN.mac, nicN.mode (user|bridge), nicN.network (bridge),
 *   nicN.forward (user: PROTO:HOSTADDR:HOSTPORT:GUESTPORT,...)
 *                                 network cards (vmrecord_nic.c)
 *   tpm = 1                       a vTPM (encrypted VMs only; state in vtpm.state)
 *   secure_boot = 1               UEFI Secure Boot (firmware uefi only)
 *   op, op.kek, vm.next.keysafe, diskN.next.file|luks.uuid|keysafe,
 *   diskN.old.file, diskN.rekeyed, nvram.next.file|old.file|rekeyed,
 *   diskN.from                    while an operation is unfinished
 *   state.file                    the saved memory state of a suspended VM
 *   cdrom                         an ISO of the host's images folder in the CD-ROM drive
 *   boot                          boot order: disk, cdrom, net, comma-separated (bootindex)
 *   snapshots (0..8), snapK.name, snapK.state, snapK.removing,
 *   snapK.diskN.file|uuid|keysafe  the snapshot chain (vmrecord_snap.c)
 *
 * Unknown keys: a key in vmseal's namespaces (its first component is one of
 * config, name, uuid, cpus, memory, firmware, policy, kernel, initrd,
 * append, vm, nvram, op, state, tpm, secure_boot, cdrom, boot, or starts with "disk"; or its last component is
 * "keysafe") that is not one of the keys above is refused. Any other key
 * (e.g. `x-owner = ...`) is kept as it is, in its place, when the record is
 * written back; vmseal gives it no meaning.
 *
 * Errors: -EPROTO (or -ENOTSUP for another config.version) with a message
 * naming the key and, for a file that was read, its line:
 *   "vm.conf line 14: disk0.size: ..."
 */
#ifndef VMSEAL_VMRECORD_H
#define VMSEAL_VMRECORD_H

#include <stddef.h>
#include <stdint.h>

#include <vmseal/common.h>
#include <vmseal/keysafe.h>
#include <vmseal/vmconf.h>

#define VMSEAL_VMREC_FILE "vm.conf"     /* its name in the VM home */
#define VMSEAL_VMREC_VERSION 1
#define VMSEAL_VMREC_MAX_DISKS 8
#define VMSEAL_VMREC_NAME_MAX 64          /* VM name */
#define VMSEAL_VMREC_FILE_MAX 64          /* an image's file name in the home */
#define VMSEAL_VMREC_FROM_MAX 255         /* diskN.from: a name in the images folder */
#define VMSEAL_VMREC_CPUS_MAX 64
#define VMSEAL_VMREC_MEMORY_MIN 16        /* MiB */
#define VMSEAL_VMREC_MEMORY_MAX 65536
#define VMSEAL_VMREC_DISK_SIZE_MIN (1ull << 20)   /* bytes, whole MiB */
#define VMSEAL_VMREC_DISK_SIZE_MAX (1ull << 40)
/* vm.keysafe, vm.next.keysafe, diskN.keysafe, diskN.next.keysafe */
#define VMSEAL_VMREC_KEYSAFES_MAX (2 + 2 * VMSEAL_VMREC_MAX_DISKS)
#define VMSEAL_VMREC_KEY_MAX 48           /* longest key name built here, with NUL */
#define VMSEAL_VMREC_MAX_NICS 4
#define VMSEAL_VMREC_MAX_FORWARDS 8       /* port forwards per user-mode NIC */
#define VMSEAL_VMREC_NETWORK_MAX 15       /* a host network's name */
#define VMSEAL_VMREC_FORWARD_PORT_MIN 1024 /* no forward from a privileged host port */
#define VMSEAL_VMREC_BOOT_MAX 24          /* `boot`, with NUL: "disk,cdrom,net" */

typedef enum vmseal_firmware {
    VMSEAL_FIRMWARE_BIOS = 0,
    VMSEAL_FIRMWARE_UEFI = 1,
} vmseal_firmware;

typedef enum vmseal_vmrec_policy {
    VMSEAL_POLICY_NONE = 0,
    VMSEAL_POLICY_ENCRYPTED = 1,
} vmseal_vmrec_policy;

/* The unfinished operation recorded in vm.conf (`op`). */
typedef enum vmseal_vmrec_op {
    VMSEAL_VMREC_OP_NONE = 0,
    VMSEAL_VMREC_OP_CREATE,
    VMSEAL_VMREC_OP_ENCRYPT,
    VMSEAL_VMREC_OP_DECRYPT,
    VMSEAL_VMREC_OP_RECRYPT_DEEP,
} vmseal_vmrec_op;

/* One image of the VM: a disk, or the NVRAM (the UEFI variable store).
 * Empty strings and NULL mean "not set". The NVRAM has no key safe of its
 * own (it opens with the per-VM secret): its size, luks_uuid, keysafe,
 * next_luks_uuid and next_keysafe stay empty. */
typedef struct vmseal_vmrec_image {
    char file[VMSEAL_VMREC_FILE_MAX + 1];       /* diskN.file / nvram.file */
    char next_file[VMSEAL_VMREC_FILE_MAX + 1];  /* .next.file: the image being written */
    char old_file[VMSEAL_VMREC_FILE_MAX + 1];   /* .old.file: left to be removed */
    int rekeyed;                                /* .rekeyed: done in this deep recrypt */
    char disk_path[16];                         /* diskN.disk_path: "nbd", "qemu-luks" or
                                                   "" (vm.disk_path); "" for the NVRAM */
    uint64_t size;                              /* diskN.size, bytes */
    char luks_uuid[37];                         /* diskN.luks.uuid ("" plain) */
    char *keysafe;                              /* diskN.keysafe (NULL plain) */
    char next_luks_uuid[37];                    /* diskN.next.luks.uuid */
    char *next_keysafe;                         /* diskN.next.keysafe */
    char from[VMSEAL_VMREC_FROM_MAX + 1];       /* diskN.from: the image in the host's
                                                   images folder this disk is imported
                                                   from (only while op = create) */
} vmseal_vmrec_image;

/* A network card (virtio-net). */
typedef enum vmseal_nic_mode {
    VMSEAL_NIC_USER = 0,       /* user-mode NAT (QEMU -netdev user, slirp) */
    VMSEAL_NIC_BRIDGE = 1,     /* a tap on a bridge the host defines (hostd.conf network.NAME) */
} vmseal_nic_mode;

/* A port forward of a user-mode NIC: host HOSTADDR:HOSTPORT -> guest port. */
typedef struct vmseal_vmrec_forward {
    int udp;                                    /* 0 tcp, 1 udp */
    char host_addr[16];                         /* IPv4 dotted quad */
    unsigned host_port;                         /* 1024..65535 */
    unsigned guest_port;                        /* 1..65535 */
} vmseal_vmrec_forward;

typedef struct vmseal_vmrec_nic {
    char mac[18];                               /* nicN.mac: xx:xx:xx:xx:xx:xx, lower case */
    vmseal_nic_mode mode;                       /* nicN.mode */
    char network[VMSEAL_VMREC_NETWORK_MAX + 1]; /* nicN.network (bridge only) */
    size_t nforwards;                           /* nicN.forward (user only) */
    vmseal_vmrec_forward forwards[VMSEAL_VMREC_MAX_FORWARDS];
} vmseal_vmrec_nic;

/* Snapshots: a linear chain. Snapshot K froze the disks as they were when
 * it was taken; each disk N then got a new top layer snapK.diskN.file (a
 * qcow2 overlay: LUKS-encrypted, its own secret in snapK.diskN.keysafe bound
 * to "disk:<snapK.diskN.uuid>", for an encrypted VM; plain qcow2 without),
 * holding what the guest wrote after snapshot K. The chain of disk N is
 * diskN.file (the base) <- snap0.diskN.file <- ... <- snap(M-1).diskN.file
 * (the active layer); snapshot K's disk state is the base plus the layers
 * of snapshots 0..K-1. snapK.state: the guest's memory at snapshot K (a
 * state file as state.file), "" for a snapshot of a powered-off VM or one
 * taken without memory. snapK.removing: a removal of snapshot K began
 * (its layer may be partly merged into the one below): it can only be
 * finished, not reverted to. */
#define VMSEAL_VMREC_MAX_SNAPSHOTS 8
#define VMSEAL_VMREC_SNAP_NAME_MAX 64
#define VMSEAL_VMREC_OVERLAY_EXT ".qcow2"

typedef struct vmseal_vmrec_layer {
    char file[VMSEAL_VMREC_FILE_MAX + 1];       /* snapK.diskN.file */
    char uuid[37];                              /* snapK.diskN.uuid (key safe object) */
    char *keysafe;                              /* snapK.diskN.keysafe (NULL plain) */
} vmseal_vmrec_layer;

typedef struct vmseal_vmrec_snapshot {
    char name[VMSEAL_VMREC_SNAP_NAME_MAX + 1];  /* snapK.name */
    char state_file[VMSEAL_VMREC_FILE_MAX + 1]; /* snapK.state ("" none) */
    int removing;                               /* snapK.removing */
    vmseal_vmrec_layer disks[VMSEAL_VMREC_MAX_DISKS];
} vmseal_vmrec_snapshot;

/* A VM's configuration. The char * fields are malloc'd and owned by the
 * record (vmseal_vmrec_set_str / vmseal_vmrec_free). */
typedef struct vmseal_vmrec {
    char name[VMSEAL_VMREC_NAME_MAX + 1];
    char uuid[37];                              /* lower case */
    unsigned cpus;
    unsigned memory_mb;                         /* `memory` */
    vmseal_firmware firmware;
    vmseal_vmrec_policy policy;
    char *kernel, *initrd, *append;             /* NULL: absent */
    char *vm_keysafe;                           /* vm.keysafe */
    char *vm_next_keysafe;                      /* vm.next.keysafe (encrypting) */
    size_t ndisks;                              /* `disks` */
    vmseal_vmrec_image disks[VMSEAL_VMREC_MAX_DISKS];
    vmseal_vmrec_image nvram;                   /* file "" on a BIOS VM */
    size_t nnics;                               /* `nics` (absent: 0) */
    vmseal_vmrec_nic nics[VMSEAL_VMREC_MAX_NICS];
    vmseal_vmrec_op op;
    char op_kek[VMSEAL_KEYSAFE_KEK_ID_MAX + 1]; /* op.kek ("" none) */
    char state_file[VMSEAL_VMREC_FILE_MAX + 1]; /* state.file: the VM is suspended, its
                                                   memory state is this file in the home
                                                   ("" not suspended) */
    char disk_path[16];                         /* vm.disk_path: "nbd", "qemu-luks" or ""
                                                   (the host's hostd.conf disk_path) */
    int tpm;                                    /* `tpm`: a vTPM 2.0 (needs vm.keysafe) */
    int secure_boot;                            /* `secure_boot`: UEFI Secure Boot (q35,
                                                   SMM, OVMF with Microsoft keys) */
    char cdrom[VMSEAL_VMREC_FROM_MAX + 1];      /* `cdrom`: the ISO in the host's images
                                                   folder in the VM's CD-ROM drive ("" none) */
    char boot[VMSEAL_VMREC_BOOT_MAX];           /* `boot`: boot order, e.g. "cdrom,disk"
                                                   ("" the firmware's default) */
    size_t nsnaps;                              /* `snapshots` (absent: 0) */
    vmseal_vmrec_snapshot snaps[VMSEAL_VMREC_MAX_SNAPSHOTS];
    vmseal_vmconf *source;                      /* private: the file as read (the
                                                   order of its keys, unknown keys) */
} vmseal_vmrec;

/* An empty record (fields zero; not valid until filled in). */
vmseal_vmrec *vmseal_vmrec_new(void);
void vmseal_vmrec_free(vmseal_vmrec *r);
/* Deep copy; NULL when out of memory. */
vmseal_vmrec *vmseal_vmrec_dup(const vmseal_vmrec *r);

/* Read and check a parsed vm.conf. The record keeps a copy of c. */
int vmseal_vmrec_from_conf(const vmseal_vmconf *c, vmseal_vmrec **out) VMSEAL_MUST_CHECK;
/* vmseal_vmconf_parse + vmseal_vmrec_from_conf (untrusted bytes). */
int vmseal_vmrec_parse(const char *text, size_t len, vmseal_vmrec **out) VMSEAL_MUST_CHECK;
int vmseal_vmrec_load(const char *path, vmseal_vmrec **out) VMSEAL_MUST_CHECK;
/* name relative to dirfd, not followed if a symlink (vmseal_vmconf_loadat). */
int vmseal_vmrec_loadat(int dirfd, const char *name, vmseal_vmrec **out) VMSEAL_MUST_CHECK;

/* 1 when c claims to be a VM configuration written by vmseal (it has
 * config.version), whatever its content. */
int vmseal_vmrec_is_vmconf(const vmseal_vmconf *c);

/* The checks of vmseal_vmrec_from_conf on a record built or changed in
 * memory. -EPROTO naming the key. */
int vmseal_vmrec_validate(const vmseal_vmrec *r) VMSEAL_MUST_CHECK;

/* Write back (validates first): the keys of the file it was read from
 * stay where they were (changed values in place, removed keys dropped),
 * unknown keys are kept, new keys are appended in the schema's order. */
int vmseal_vmrec_to_conf(const vmseal_vmrec *r, vmseal_vmconf **out) VMSEAL_MUST_CHECK;
/* to_conf + vmseal_vmconf_save / _saveat (atomic replacement). */
int vmseal_vmrec_save(const vmseal_vmrec *r, const char *path) VMSEAL_MUST_CHECK;
int vmseal_vmrec_saveat(const vmseal_vmrec *r, int dirfd, const char *name) VMSEAL_MUST_CHECK;

/* Replace a string field with a copy of value (NULL: unset). */
int vmseal_vmrec_set_str(char **field, const char *value) VMSEAL_MUST_CHECK;

/* `op` values: "create", "encrypt", "decrypt", "recrypt-deep"; "" for none. */
const char *vmseal_vmrec_op_name(vmseal_vmrec_op op);

/* The image `idx` (a disk index, or -1 for the NVRAM); NULL when out of
 * range. */
vmseal_vmrec_image *vmseal_vmrec_image_at(vmseal_vmrec *r, long idx);
const vmseal_vmrec_image *vmseal_vmrec_image_at_const(const vmseal_vmrec *r, long idx);

/* Names, for messages and tools. The key-safe key of image idx:
 * "diskN.keysafe", "diskN.next.keysafe", or for the NVRAM (idx -1) the VM's
 * "vm.keysafe" / "vm.next.keysafe". The image's label: "diskN" or "nvram"
 * (as in its keys). The file name hostd gives a new image: "diskN.luks" /
 * "diskN.img", "nvram.luks" / "nvram.fd". -EINVAL for idx out of range. */
int vmseal_vmrec_keysafe_key(long idx, int next, char *buf, size_t len);
int vmseal_vmrec_image_label(long idx, char *buf, size_t len);
int vmseal_vmrec_image_file_name(long idx, int encrypted, char *buf, size_t len);

/* The object the key safe of image idx is bound to (the AAD of its wrap):
 * "disk:<LUKS UUID>" of that disk (next: of the image an operation is
 * writing), or for the NVRAM (idx -1), the VM's secret: "vm:<VM uuid>".
 * -EINVAL when the disk has no LUKS UUID (a plain disk: no key safe). */
int vmseal_vmrec_keysafe_object(const vmseal_vmrec *r, long idx, int next, char *buf,
                                size_t len) VMSEAL_MUST_CHECK;

/* Every key safe the record holds, in the schema's order. */
typedef struct vmseal_vmrec_keysafe_ref {
    char key[VMSEAL_VMREC_KEY_MAX];             /* e.g. "disk0.keysafe" */
    const char *line;                           /* points into the record */
    long idx;                                   /* disk index; -1: the VM's */
    int next;                                   /* 1: of an unfinished operation */
} vmseal_vmrec_keysafe_ref;
size_t vmseal_vmrec_keysafes(const vmseal_vmrec *r,
                             vmseal_vmrec_keysafe_ref out[VMSEAL_VMREC_KEYSAFES_MAX]);

/* Field syntax, shared with the API that takes these values:
 * VM names: 1..64 of [A-Za-z0-9._-], not starting with '.' or '-'.
 * VM UUIDs: RFC 4122 syntax, lower case (they name folders).
 * Image file names: a VM name that ends in ".luks", ".img" or ".fd" (so
 * never one of hostd's own files in the home, nor a ".partial"). */
int vmseal_vmrec_name_valid(const char *name);
/* `boot`: "disk", "cdrom" and "net", comma-separated, each at most once,
 * at least one. */
int vmseal_vmrec_boot_order_valid(const char *order);
int vmseal_vmrec_uuid_valid(const char *uuid);
int vmseal_vmrec_file_name_valid(const char *file);
/* kernel, initrd, append: printable text (no control characters, no blank
 * at either end) of at most VMSEAL_VMCONF_VALUE_MAX bytes. */
int vmseal_vmrec_text_valid(const char *text);
/* A suspended VM's state file: a VM name ending in ".vmss" (sealed: an
 * encrypted VM) or ".vmstate" (clear: a VM without encryption). */
#define VMSEAL_VMREC_STATE_SEALED_EXT ".vmss"
#define VMSEAL_VMREC_STATE_PLAIN_EXT ".vmstate"
int vmseal_vmrec_state_file_valid(const char *file, int sealed);

/* Snapshots (lib/conf/vmrecord_snap.c). A snapshot name: 1..64 of
 * [A-Za-z0-9._-], not starting with '.' or '-' (the VM-name rule). An
 * overlay file name: a VM name ending in ".qcow2". The object a layer's
 * key safe is bound to: "disk:<uuid>". */
int vmseal_vmrec_snap_name_valid(const char *name);
int vmseal_vmrec_overlay_file_valid(const char *file);
int vmseal_vmrec_layer_object(const vmseal_vmrec_layer *l, char *buf, size_t len)
    VMSEAL_MUST_CHECK;
/* The index of the snapshot called name, or -1. */
long vmseal_vmrec_snap_find(const vmseal_vmrec *r, const char *name);
/* The file of disk idx's active (top) layer: the last snapshot's overlay,
 * or the base image. */
const char *vmseal_vmrec_top_file(const vmseal_vmrec *r, size_t idx);
/* Free the key safes of snapshot k and clear it. */
void vmseal_vmrec_snap_clear(vmseal_vmrec_snapshot *s);
/* Remove snapshot k from the list (its strings freed, later ones move down). */
void vmseal_vmrec_snap_drop(vmseal_vmrec *r, size_t k);

/* NICs (lib/conf/vmrecord_nic.c). A MAC: six lower- or upper-case hex
 * pairs joined by ':', unicast (bit 0 of the first octet clear), not all
 * zero. A network name: 1..15 of [A-Za-z0-9_-], starting with a letter. A
 * forward: "tcp|udp:A.B.C.D:HOSTPORT:GUESTPORT", host port 1024..65535,
 * guest port 1..65535, the address a dotted quad (no leading zeros). */
int vmseal_vmrec_mac_valid(const char *mac);
int vmseal_vmrec_network_name_valid(const char *name);
int vmseal_vmrec_forward_parse(const char *text, vmseal_vmrec_forward *out) VMSEAL_MUST_CHECK;
/* "tcp:127.0.0.1:8080:80"; -ENOSPC when len is too small. */
int vmseal_vmrec_forward_format(const vmseal_vmrec_forward *f, char *buf, size_t len);
/* "user" / "bridge" */
const char *vmseal_vmrec_nic_mode_name(vmseal_nic_mode mode);
int vmseal_vmrec_nic_mode_parse(const char *s, vmseal_nic_mode *out);

#endif
