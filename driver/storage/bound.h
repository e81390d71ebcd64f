/*
 * Bounded directories: a tree that holds at most so many bytes, whatever a
 * writer does. A pod's writable layer gets one, so a pod can never fill the
 * node store, which is often the node's root disk; a writer past the bound
 * gets EDQUOT or ENOSPC inside its own layer, and nobody else notices.
 *
 * Two ways, behind one vtable (tests of the node handlers use a fake):
 * - project quota: the store's XFS is mounted with prjquota (warmcache
 *   mounts the disks it formats that way) and the layer is a project with a
 *   hard limit. Cheap: a couple of ioctls per layer.
 * - loop image: everywhere else (storeMode directory on the root disk, an
 *   adopted array mounted without quotas, a kernel without XFS quota): the
 *   layer is a sparse file of the bound's size in the store, formatted ext4
 *   and mounted through a loop device that goes when it is unmounted. Costs
 *   a mkfs and a mount (tens of milliseconds) per writable publish.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "storage/mount.h"

struct bounder;

struct bound_ops {
    const char *name;
    /* Makes dir (new and empty) hold at most bytes; the directory to write
     * into (dir itself, or a file system mounted inside it) in ret_dir. */
    int (*make)(const struct bounder *b, const char *dir, uint64_t bytes, char *ret_dir, size_t n, struct wc_error *e);
    /* Bytes used under dir and its bound. */
    int (*usage)(const struct bounder *b, const char *dir, uint64_t *ret_used, uint64_t *ret_limit);
    /* Undoes make and deletes the tree (a crash may have left it half made). */
    int (*remove)(const struct bounder *b, const char *dir, struct wc_error *e);
};

struct bounder {
    const struct bound_ops *ops;
    const struct mounter *mounter; /* the loop image's mounts */
    const char *mkfs_ext4;         /* program path */
};

/* 1 if the file system holding path enforces XFS project quotas. */
int bound_quota_enforced(const char *path);

extern const struct bound_ops bound_project_quota;
extern const struct bound_ops bound_loop_image;
