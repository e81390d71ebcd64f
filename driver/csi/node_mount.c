/*
 * The node's mounts and their records: how a copy is bound read-only or
 * under a bounded writable overlay, how a record is saved before a mount is
 * made and trimmed when one fails, and, at start, how the records are
 * checked against the mounts really there. The handlers (node.c) decide
 * what to mount; this file makes it so. docs/internals/csi.md.
 */
#include "csi/csi.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "base/macros.h"
#include "cache/listing.h"
#include "csi/node.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* What a PV's mountOptions may hold: what makes sense for a bind of a read-only copy. */
#define MOUNT_FLAGS_ALLOWED "noexec nosuid nodev noatime nodiratime relatime ro"

/* ---- mounts --------------------------------------------------------------- */

int unmount_all(struct csi_ctx *c, const char *path, struct wc_error *e)
{
    /* stacked mounts (a retried mount after a crash) come off one by one */
    for (int i = 0; i < 8; i++) {
        int m = c->mounter->ops->is_mountpoint(c->mounter, path);
        if (m < 0)
            return wc_err_errno(e, m, "checking the mount at %s", path);
        if (m == 0)
            return 0;
        int r = c->mounter->ops->umount(c->mounter, path, e);
        if (r < 0)
            return r;
    }
    return wc_err(e, -EBUSY, "%s is still mounted after 8 unmounts", path);
}

/* 1 when path is mounted the way a read-only (or writable) use wants it, 0
 * when it is not mounted or is a writable bind where a read-only one
 * belongs (a bind-then-remount cut short on an old kernel), < 0 on error. */
int mounted_as(struct csi_ctx *c, const char *path, int writable, struct wc_error *e)
{
    int m = c->mounter->ops->is_mountpoint(c->mounter, path);
    if (m < 0)
        return wc_err_errno(e, m, "checking the mount at %s", path);
    if (m == 0 || writable)
        return m;
    int ro = c->mounter->ops->is_readonly(c->mounter, path);
    if (ro < 0)
        return wc_err_errno(e, ro, "checking the mount at %s", path);
    if (!ro)
        log_json(LOG_WARN, "a read-only mount of a copy is writable: mounting it again",
                 json_pack("{s:s}", "path", path));
    return ro;
}

/* Mount flags from the PV's mountOptions: only those that make sense for a
 * bind of a read-only copy; anything else is named back to the user. */
/* f is one word of the allowed list, whole (not "noatime nodiratime", not a prefix) */
static int flag_allowed(const char *f)
{
    size_t fl = strlen(f);
    for (const char *a = MOUNT_FLAGS_ALLOWED; *a;) {
        size_t al = strcspn(a, " ");
        if (al == fl && strncmp(a, f, fl) == 0)
            return 1;
        a += al + (a[al] == ' ');
    }
    return 0;
}

int mount_flags(const Csi__V1__VolumeCapability *cap, char *out, size_t n, int *ret_ro, struct wc_error *e)
{
    /* a cache of data, never of programs that gain privilege or devices */
    size_t o = (size_t)snprintf(out, n, STAGING_FLAGS);
    int ro = *ret_ro;
    const Csi__V1__VolumeCapability__MountVolume *mv = cap->mount;
    for (size_t i = 0; mv && i < mv->n_mount_flags; i++) {
        const char *f = mv->mount_flags[i];
        if (!flag_allowed(f))
            return wc_err(e, -EINVAL, "mount option \"%.60s\" is not supported; allowed: %s", f,
                          MOUNT_FLAGS_ALLOWED);
        if (streq(f, "ro")) {
            ro = 1;
            continue;
        }
        if (streq(f, "nosuid") || streq(f, "nodev"))
            continue;
        int w = snprintf(out + o, n - o, ",%s", f);
        if (w < 0 || (size_t)w >= n - o)
            return wc_err(e, -EINVAL, "too many mount options");
        o += (size_t)w;
    }
    *ret_ro = ro;
    return 0;
}

/* ---- writable layers ------------------------------------------------------ */

/* A fresh upper/work pair for a writable publish (nothing an earlier pod
 * wrote leaks into the next), in a tree bounded by scratch bytes. */
static int layer_create(struct csi_ctx *c, const char *volid, const char *target, uint64_t scratch, char *upper,
                        char *work, size_t n, struct wc_error *e)
{
    char base[PATH_MAX], dir[PATH_MAX];
    if (volumes_layer_dir(c->volumes, volid, target, base, sizeof(base)) < 0)
        return wc_err(e, -ENAMETOOLONG, "overlay paths too long");
    int r = c->bounds.ops->remove(&c->bounds, base, e); /* what a crash may have left */
    if (r == 0 && (r = fs_mkdir_p(base, 0755)) < 0)
        wc_err_errno(e, r, "creating the writable layer for %s", target);
    if (r == 0 && (r = c->bounds.ops->make(&c->bounds, base, scratch, dir, sizeof(dir), e)) < 0)
        wc_err_prefix(e, "bounding the writable layer of %s to %" PRIu64 " bytes: ", target, scratch);
    if (r < 0)
        return r;
    if (snprintf(upper, n, "%s/upper", dir) >= (int)n || snprintf(work, n, "%s/work", dir) >= (int)n)
        return wc_err(e, -ENAMETOOLONG, "overlay paths too long");
    if ((r = fs_mkdir_p(upper, 0755)) < 0 || (r = fs_mkdir_p(work, 0700)) < 0)
        return wc_err_errno(e, r, "creating the writable layer for %s", target);
    /* the volume's root is the upper dir's: writable by whatever user the
     * pod runs as (the layer is this pod's alone), sticky as /tmp is */
    if (chmod(upper, 01777) < 0)
        return wc_err_errno(e, -errno, "opening the writable layer of %s to the pod's user", target);
    return 0;
}

void layer_remove(struct csi_ctx *c, const char *volid, const char *target)
{
    char base[PATH_MAX];
    struct wc_error e;
    if (volumes_layer_dir(c->volumes, volid, target, base, sizeof(base)) == 0 &&
        c->bounds.ops->remove(&c->bounds, base, &e) < 0)
        log_json(LOG_WARN, "a writable layer stays behind", json_pack("{s:s, s:s}", "path", base, "error", e.msg));
}

/* ---- record, then mount ---------------------------------------------------- */

/* Saves rec (which already names the mount), then mounts cid at path: the
 * staging path (t NULL) or target t. The copy is pinned meanwhile so that no
 * fill evicts it under our feet. A mount that fails and left nothing takes
 * its entry out of the record again, so it never blocks NodeUnstage. */
int record_and_mount(struct csi_ctx *c, struct vol_record *rec, const char *cid, const char *path,
                            const struct vol_target *t, struct wc_error *e)
{
    store_pin(c->store, cid);
    int r = 0;
    if (!store_content_ready(c->store, cid))
        r = wc_err(e, -EAGAIN, "the copy %s was evicted while being mounted; retry", cid);
    if (r == 0)
        r = volumes_put(c->volumes, rec, e);
    int saved = r == 0;
    if (r == 0 && (r = fs_mkdir_p(path, 0750)) < 0)
        wc_err_errno(e, r, "creating %s", path);
    if (r == 0)
        r = unmount_all(c, path, e);
    char content[PATH_MAX];
    store_path(c->store, content, sizeof(content), "content/%s", cid);
    if (r == 0 && !(t && t->writable)) {
        r = c->mounter->ops->bind(c->mounter, content, path, 1, t ? t->flags : STAGING_FLAGS, e);
    } else if (r == 0) {
        char upper[PATH_MAX], work[PATH_MAX];
        r = layer_create(c, rec->volume_id, path, t->scratch_bytes, upper, work, sizeof(upper), e);
        if (r == 0)
            r = c->mounter->ops->overlay(c->mounter, content, upper, work, path, t->flags, e);
    }
    if (r == 0) {
        store_touch(c->store, cid);
        store_unlease(c->store, cid); /* the record keeps it now */
    } else if (saved && c->mounter->ops->is_mountpoint(c->mounter, path) == 0) {
        size_t idx;
        if (t && vol_record_target(rec, path, &idx)) {
            if (t->writable)
                layer_remove(c, rec->volume_id, path);
            vol_record_remove_target(rec, idx);
        } else if (!t) {
            rec->content_id[0] = '\0';
        }
        struct wc_error ignored;
        if (rec->ephemeral && rec->n_targets == 0)
            volumes_drop(c->volumes, rec->volume_id);
        else
            volumes_put(c->volumes, rec, &ignored);
    }
    store_unpin(c->store, cid);
    return r;
}

int load_record(struct csi_ctx *c, const char *volid, struct vol_record **ret, struct wc_error *e)
{
    *ret = NULL;
    int r = volumes_get(c->volumes, volid, ret, e);
    return r == -ENOENT ? 0 : r;
}

/* ---- start-up: the records against the mounts that are there -------------- */

struct reconcile {
    struct csi_ctx *c;
    unsigned targets, stagings, records, layers;
};

static void drop_layer(void *ctx, const char *dir)
{
    struct reconcile *rc = ctx;
    struct wc_error e;
    rc->layers += rc->c->bounds.ops->remove(&rc->c->bounds, dir, &e) == 0;
}

static int reconcile_one(void *ctx, struct vol_record *rec)
{
    struct reconcile *rc = ctx;
    struct csi_ctx *c = rc->c;
    int changed = 0;
    for (size_t i = rec->n_targets; i-- > 0;) {
        if (c->mounter->ops->is_mountpoint(c->mounter, rec->targets[i].path) == 1)
            continue;
        if (rec->targets[i].writable)
            layer_remove(c, rec->volume_id, rec->targets[i].path);
        vol_record_remove_target(rec, i);
        rc->targets++;
        changed = 1;
    }
    if (rec->content_id[0] && rec->staging_path[0] &&
        c->mounter->ops->is_mountpoint(c->mounter, rec->staging_path) != 1) {
        rec->content_id[0] = '\0';
        rc->stagings++;
        changed = 1;
    }
    struct wc_error ignored;
    if (rec->ephemeral && rec->n_targets == 0) {
        volumes_drop(c->volumes, rec->volume_id);
        rc->records++;
    } else if (changed) {
        volumes_put(c->volumes, rec, &ignored);
    }
    return 0;
}

void node_reconcile(struct csi_ctx *c)
{
    struct reconcile rc = {c, 0, 0, 0, 0};
    volumes_each(c->volumes, reconcile_one, &rc);
    volumes_orphan_layers(c->volumes, drop_layer, &rc);
    log_json(LOG_INFO, "volume records checked against the mounts",
             json_pack("{s:i, s:i, s:i, s:i}", "targets_gone", rc.targets, "stagings_gone", rc.stagings,
                       "records_dropped", rc.records, "orphan_layers_removed", rc.layers));
}

