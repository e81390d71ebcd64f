/*
 * Inside the node service, shared by its files: node.c (the stage and
 * publish handlers, and the fill glue), node_mount.c (mounts, writable
 * layers, records, the start-up reconcile) and node_stats.c (stats,
 * capabilities, info). Not for the rest of the driver.
 */
#pragma once

#include "csi/csi.h"

/* Mount flags the staging mount always has: a cache of data, never of
 * programs that gain privilege or of devices. */
#define STAGING_FLAGS "nosuid,nodev"

static inline int need_node(const struct csi_ctx *c, struct wc_error *e)
{
    return c->node ? 0 : wc_err(e, -EOPNOTSUPP, "this plugin instance does not run the node service");
}

/* Unmounts every mount stacked at path (a retried mount after a crash). */
int unmount_all(struct csi_ctx *c, const char *path, struct wc_error *e);
/* 1 when path is mounted the way a read-only (or writable) use wants it, 0
 * when not (or a writable bind where a read-only one belongs), < 0 on error. */
int mounted_as(struct csi_ctx *c, const char *path, int writable, struct wc_error *e);
/* The PV's mountOptions as bind flags (only the allowed ones), "ro" in *ret_ro. */
int mount_flags(const Csi__V1__VolumeCapability *cap, char *out, size_t n, int *ret_ro, struct wc_error *e);
/* Removes a target's writable layer (logs what stays behind). */
void layer_remove(struct csi_ctx *c, const char *volid, const char *target);
/* Saves rec (which already names the mount), then mounts copy cid at path:
 * the staging path (t NULL) or target t; a failed mount that left nothing
 * takes its entry out of the record again. */
int record_and_mount(struct csi_ctx *c, struct vol_record *rec, const char *cid, const char *path,
                     const struct vol_target *t, struct wc_error *e);
/* The volume's record, or NULL in *ret when it has none. */
int load_record(struct csi_ctx *c, const char *volid, struct vol_record **ret, struct wc_error *e);
