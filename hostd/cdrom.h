/* vmseal-hostd — the VM's CD-ROM drive and its boot order.
 *
 * vm.conf `cdrom = NAME` names an ISO of the host's images folder. It is
 * opened by hostd beneath the images folder without following a symlink
 * (hostd_vm_open_boot_file) and handed to QEMU as a descriptor in an fdset
 * (QMP add-fd), read-only: QEMU never opens a path of the host. The drive is
 * a scsi-cd on a virtio-scsi controller, added over QMP before the guest
 * runs when vm.conf has a cdrom or a boot order naming it; a running VM
 * with the drive changes its medium with blockdev-change-medium / eject.
 *
 * vm.conf `boot = disk,cdrom,net` is the boot order: QEMU bootindex 1, 2,
 * ... for disk0, the CD-ROM drive and NIC0 in that order (a direct kernel
 * boot, -kernel, stays first). The devices are plugged over QMP before the
 * guest first runs, so the machine is reset once then: the firmware's boot
 * list (fw_cfg bootorder) is built at reset. */
#ifndef HOSTD_CDROM_H
#define HOSTD_CDROM_H

#include <jansson.h>

#include <vmseal/vmrecord.h>

#include "vm.h"

struct hostd_qmp;

#define HOSTD_CDROM_DEV "vmseal-cd0"
#define HOSTD_CDROM_BODY_MAX 1024

/* The bootindex of dev ("disk", "cdrom", "net") in order, or -1 (not
 * named, or no order). */
int hostd_boot_index(const char *order, const char *dev);

/* 1 when a VM with this record gets a CD-ROM drive at power-on. */
int hostd_cdrom_wanted(const vmseal_vmrec *rec);

/* Before the guest runs: the virtio-scsi controller and the drive, with
 * the ISO iso_fd (> 0; hostd's copy stays hostd's) or empty (iso_fd <= 0).
 * bus: the PCI bus for the controller (NULL: the machine's). */
int hostd_cdrom_attach(struct hostd_qmp *q, int iso_fd, const char *bus, int bootindex,
                       int timeout_ms) VMSEAL_MUST_CHECK;

/* POST /v1/vms/{uuid}/cdrom {"iso": NAME} | {"eject": true}: vm.conf and,
 * when the VM runs, its drive (409 when it was started without one). */
void hostd_cdrom_api(const hostd_host_env *env, hostd_vm *vm, const char *body, size_t len,
                     int *status, json_t **resp);

/* POST /v1/vms/{uuid}/boot {"order": "disk,cdrom" | ""}: powered off. */
void hostd_boot_api(hostd_vm *vm, const char *body, size_t len, int *status, json_t **resp);

#endif
