/*
 * A mounter and a bounder that touch no kernel state (storage/mount.h,
 * storage/bound.h), for the node handlers' unit tests without root: mounts
 * are a table the tests read, a bind can be made to fail, and "the node
 * rebooted" is forgetting every mount.
 */
#pragma once

#include <limits.h>

#include "storage/bound.h"
#include "storage/mount.h"

#define FAKE_MOUNTS_MAX 64

struct fake_mount {
    char target[PATH_MAX], source[PATH_MAX], upper[PATH_MAX]; /* upper: overlays only */
    int readonly, overlay;
};

struct fake_mounter {
    struct mounter base;             /* first: the handlers see only this */
    struct fake_mount m[FAKE_MOUNTS_MAX];
    int n;
    int fail_next_mount;             /* a negative errno: the next bind or overlay fails so */
    unsigned mounts, umounts;        /* calls that did something */
};

void fake_mounter_init(struct fake_mounter *f);
/* How many mounts are stacked at target; the top one in *ret (optional). */
int fake_mounted(const struct fake_mounter *f, const char *target, const struct fake_mount **ret);
/* The node rebooted: nothing is mounted any more. */
void fake_reboot(struct fake_mounter *f);

/* Bounds that are plain directories (make: dir itself; remove: rm -rf). */
extern const struct bound_ops fake_bounds;
