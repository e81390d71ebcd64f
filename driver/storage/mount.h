/*
 * Mounting, behind a vtable so the CSI logic can run against a fake and
 * against the real kernel. The real one makes read-only binds in one step
 * with the new mount API (open_tree, mount_setattr, move_mount), falls back
 * to libmount's bind-then-remount on older kernels, and reads mountinfo
 * through libmount.
 * More: docs/internals/storage.md.
 */
#pragma once

#include "base/error.h"

struct mounter;

struct mounter_ops {
    /* Bind src at dst; readonly and the extra flags (nosuid, noexec, ...) applied. */
    int (*bind)(const struct mounter *m, const char *src, const char *dst, int readonly, const char *flags,
                struct wc_error *e);
    int (*overlay)(const struct mounter *m, const char *lower, const char *upper, const char *work,
                   const char *dst, const char *flags, struct wc_error *e);
    /* Mount the file system on a block device. */
    int (*mount_fs)(const struct mounter *m, const char *dev, const char *fstype, const char *target, const char *opts,
                    struct wc_error *e);
    int (*umount)(const struct mounter *m, const char *target, struct wc_error *e);
    /* 1 if path is a mount point, 0 if not, negative errno on error. */
    int (*is_mountpoint)(const struct mounter *m, const char *path);
    /* 1 if a whole file system (its root, not a bind of a subdirectory) is
     * mounted at path. In a pod, every hostPath volume is a mount point; only
     * a disk or array the node mounted there is a whole file system. */
    int (*whole_fs_at)(const struct mounter *m, const char *path);
    /* 1 if what is mounted at path is read-only, 0 if writable, negative errno on error. */
    int (*is_readonly)(const struct mounter *m, const char *path);
};

struct mounter {
    const struct mounter_ops *ops;
};

/* The real thing: libmount and the kernel. */
extern const struct mounter mounter_libmount;
