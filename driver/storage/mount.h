/*
 * Mounting, behind a vtable so the CSI logic can run against a fake and
 * against the real kernel. The real one uses libmount, which knows how to do
 * a read-only bind mount (bind, then remount ro) and reads mountinfo for us.
 */
#pragma once

#include "base/error.h"

struct mounter;

struct mounter_ops {
    /* Bind src at dst; readonly and the extra flags (nosuid, noexec, ...) applied. */
    int (*bind)(struct mounter *m, const char *src, const char *dst, int readonly, const char *flags,
                struct wc_error *e);
    int (*overlay)(struct mounter *m, const char *lower, const char *upper, const char *work,
                   const char *dst, const char *flags, struct wc_error *e);
    /* Mount the file system on a block device. */
    int (*mount_fs)(struct mounter *m, const char *dev, const char *fstype, const char *target, const char *opts,
                    struct wc_error *e);
    int (*umount)(struct mounter *m, const char *target, struct wc_error *e);
    /* 1 if path is a mount point, 0 if not, negative errno on error. */
    int (*is_mountpoint)(struct mounter *m, const char *path);
    /* 1 if a whole file system (its root, not a bind of a subdirectory) is
     * mounted at path. In a pod, every hostPath volume is a mount point; only
     * a disk or array the node mounted there is a whole file system. */
    int (*whole_fs_at)(struct mounter *m, const char *path);
};

struct mounter {
    const struct mounter_ops *ops;
};

/* The real thing: libmount and the kernel. */
extern struct mounter mounter_libmount;
