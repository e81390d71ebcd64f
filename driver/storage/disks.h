/*
 * Preparing the node's disks for the store, by mode:
 *
 *   directory  an existing path (tests, demos, a Bottlerocket data volume)
 *   device     one disk: formatted xfs if blank, mounted noatime
 *   raid0      the instance-store NVMe disks striped with mdadm, xfs with
 *              stripe alignment, mounted noatime; or, when the node already
 *              has an array mounted (EKS AL2023 nodeadm / Karpenter
 *              instanceStorePolicy: RAID0 -> /dev/md/kubernetes on
 *              /mnt/k8s-disks/0), a directory inside it: adopt, never fight.
 *
 * Re-running on a prepared node changes nothing. A disk that holds any
 * signature (file system, RAID member, partition table) is never formatted
 * unless force_format is set; one we formatted carries the label
 * "warmcache" and is recognised after a reboot.
 *
 * mdadm and mkfs.xfs are run by path (the seam: tests pass a fake mdadm,
 * since the test kernel has no md driver; mkfs.xfs and mounts stay real).
 */
#pragma once

#include "base/error.h"
#include "storage/mount.h"

enum store_mode { STORE_DIRECTORY, STORE_DEVICE, STORE_RAID0 };

struct disk_config {
    enum store_mode mode;
    const char *path;          /* directory: the store root; device/raid0: the mount point */
    const char *device;        /* device mode */
    const char *disk_glob;     /* raid0: which disks are instance store */
    const char *adopt;         /* raid0: ':'-separated mount points of arrays to adopt */
    const char *array;         /* raid0: the md device we create */
    const char *mdadm;         /* program paths */
    const char *mkfs;
    int force_format;
};

#define DISK_DEFAULT_GLOB "/dev/disk/by-id/*NVMe_Instance_Storage*"
#define DISK_DEFAULT_ADOPT "/mnt/k8s-disks/0"
#define DISK_DEFAULT_ARRAY "/dev/md/warmcache"
#define DISK_LABEL "warmcache"

int store_mode_parse(const char *s, enum store_mode *ret);

/* Prepares the disks; *ret_root is the directory the store lives in. */
int disks_prepare(const struct disk_config *cfg, const struct mounter *m, char **ret_root, struct wc_error *e);
