/*
 * Node service: fill a local copy, bind it read-only at the staging path,
 * and bind it (or a private writable overlay of it, bounded in size: see
 * storage/bound.h) into each pod's target.
 *
 * What each volume has mounted is its record (volumes.h), written before a
 * mount is made and trimmed after one is removed or has failed, so after a
 * crash at any point a retried call converges: stage and publish re-mount
 * what is missing, unstage and unpublish unmount what is there, and no copy
 * a mount may show is evicted. At start the records are checked against the
 * mounts that are really there (node_reconcile). Copies outlive volumes:
 * they are the cache. Which sources may be read at all is policy.h's call.
 */
#include "csi/csi.h"
#include "csi/report.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "base/macros.h"
#include "base/pathkey.h"
#include "base/units.h"
#include "cache/listing.h"
#include "cache/source.h"
#include "csi/params.h"
#include "csi/volid.h"
#include "rpc/pbutil.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#define MOUNT_FLAGS_ALLOWED "noexec nosuid nodev noatime nodiratime relatime ro"
#define STAGING_FLAGS "nosuid,nodev"

static int need_node(struct csi_ctx *c, struct wc_error *e)
{
    return c->node ? 0 : wc_err(e, -EOPNOTSUPP, "this plugin instance does not run the node service");
}

static int check_path(const char *path, const char *what, struct wc_error *e)
{
    return abspath_check(path, what, e);
}

static int has_secret(void *const *secrets, size_t n)
{
    const char *k = pbmap_get(secrets, n, SECRET_ACCESS_KEY_ID);
    return k && *k;
}

/* ---- mounts --------------------------------------------------------------- */

static int unmount_all(struct csi_ctx *c, const char *path, struct wc_error *e)
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
static int mounted_as(struct csi_ctx *c, const char *path, int writable, struct wc_error *e)
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
static int mount_flags(const Csi__V1__VolumeCapability *cap, char *out, size_t n, int *ret_ro, struct wc_error *e)
{
    /* a cache of data, never of programs that gain privilege or devices */
    size_t o = (size_t)snprintf(out, n, STAGING_FLAGS);
    const Csi__V1__VolumeCapability__MountVolume *mv = cap->mount;
    for (size_t i = 0; mv && i < mv->n_mount_flags; i++) {
        const char *f = mv->mount_flags[i];
        char needle[64];
        snprintf(needle, sizeof(needle), " %.40s ", f);
        if (!*f || strchr(f, ',') || !strstr(" " MOUNT_FLAGS_ALLOWED " ", needle))
            return wc_err(e, -EINVAL, "mount option \"%.60s\" is not supported; allowed: %s", f,
                          MOUNT_FLAGS_ALLOWED);
        if (streq(f, "ro")) {
            *ret_ro = 1;
            continue;
        }
        if (streq(f, "nosuid") || streq(f, "nodev"))
            continue;
        int w = snprintf(out + o, n - o, ",%s", f);
        if (w < 0 || (size_t)w >= n - o)
            return wc_err(e, -EINVAL, "too many mount options");
        o += (size_t)w;
    }
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

static void layer_remove(struct csi_ctx *c, const char *volid, const char *target)
{
    char base[PATH_MAX];
    struct wc_error e;
    if (volumes_layer_dir(c->volumes, volid, target, base, sizeof(base)) == 0 &&
        c->bounds.ops->remove(&c->bounds, base, &e) < 0)
        log_json(LOG_WARN, "a writable layer stays behind", json_pack("{s:s, s:s}", "path", base, "error", e.msg));
}

/* ---- filling -------------------------------------------------------------- */

/* Starts or joins the background fill and waits up to --fill-wait for it;
 * -EINPROGRESS (ABORTED, with progress in e) when it is still running. */
static int ensure_copy(struct csi_ctx *c, const struct volume_context *vc, void *const *secrets, size_t n_secrets,
                       const atomic_int *cancel, char ret_cid[CONTENT_ID_LEN + 1], struct wc_error *e)
{
    /* whom kubectl describe should tell: the PVC, the PV, the pods here */
    json_t *targets _cleanup_json_ = c->reporter ? reporter_targets(c->reporter, vc->pvc_namespace, vc->pvc_name,
                                                                    vc->pv_name) : NULL;
    int hit = 0;
    struct fill_request rq = {
        .targets = targets, .ret_hit = &hit,
        .source = vc->source, .pinned = vc->digest, .follow = vc->policy == CHANGE_FOLLOW,
        .pinned_objects = vc->objects, .pinned_bytes = vc->bytes,
        .opts = {.region = vc->s3.region, .endpoint = vc->s3.endpoint, .addressing = vc->s3.addressing,
                 .access_key_id = pbmap_get(secrets, n_secrets, SECRET_ACCESS_KEY_ID),
                 .secret_access_key = pbmap_get(secrets, n_secrets, SECRET_SECRET_ACCESS_KEY),
                 .session_token = pbmap_get(secrets, n_secrets, SECRET_SESSION_TOKEN)},
    };
    int r = fills_ensure(&c->fills, &rq, c->fill_wait_ms, cancel, ret_cid, e);
    if (r == 0 && hit) {
        char msg[600];
        snprintf(msg, sizeof(msg), "the copy of %s is already on node %s (verified): no fill needed", vc->source,
                 c->node_id);
        reporter_event(c->reporter, targets, "Normal", "CacheHit", msg);
    }
    return r;
}

/* ---- record, then mount ---------------------------------------------------- */

/* Saves rec (which already names the mount), then mounts cid at path: the
 * staging path (t NULL) or target t. The copy is pinned meanwhile so that no
 * fill evicts it under our feet. A mount that fails and left nothing takes
 * its entry out of the record again, so it never blocks NodeUnstage. */
static int record_and_mount(struct csi_ctx *c, struct vol_record *rec, const char *cid, const char *path,
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

static struct kv *ctx_kv(Csi__V1__NodeStageVolumeRequest__VolumeContextEntry *const *m, size_t n)
{
    struct kv *kv = calloc(n ? n : 1, sizeof(*kv));
    for (size_t i = 0; kv && i < n; i++)
        kv[i] = (struct kv){m[i]->key, m[i]->value};
    return kv;
}

static int load_record(struct csi_ctx *c, const char *volid, struct vol_record **ret, struct wc_error *e)
{
    *ret = NULL;
    int r = volumes_get(c->volumes, volid, ret, e);
    return r == -ENOENT ? 0 : r;
}

/* ---- NodeStageVolume ------------------------------------------------------ */

static int stage_locked(struct csi_ctx *c, const Csi__V1__NodeStageVolumeRequest *q, const struct volume_context *vc,
                        const atomic_int *cancel, struct wc_error *e)
{
    struct vol_record *rec _cleanup_vol_record_ = NULL;
    int r = load_record(c, q->volume_id, &rec, e);
    if (r < 0)
        return r;
    if (rec) {
        if (!streq(rec->staging_path, q->staging_target_path))
            return wc_err(e, -EEXIST, "volume %s is already staged at %s", q->volume_id, rec->staging_path);
        if (rec->content_id[0] && store_content_ready(c->store, rec->content_id) &&
            (r = mounted_as(c, q->staging_target_path, 0, e)) != 0)
            return r < 0 ? r : 0; /* already staged: same answer again */
    }
    char cid[CONTENT_ID_LEN + 1];
    if ((r = ensure_copy(c, vc, (void *const *)q->secrets, q->n_secrets, cancel, cid, e)) < 0)
        return r;
    /* a record found without its staging mount keeps its targets: pods may still be using them */
    if (!rec && !(rec = vol_record_new(q->volume_id, vc->source, q->staging_target_path)))
        return -ENOMEM;
    snprintf(rec->content_id, sizeof(rec->content_id), "%s", cid);
    return record_and_mount(c, rec, cid, q->staging_target_path, NULL, e);
}

int node_stage_volume(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp, struct rpc_call *call,
                      struct wc_error *e)
{
    struct csi_ctx *c = ctx;
    const Csi__V1__NodeStageVolumeRequest *q = (const void *)req;
    int r = need_node(c, e);
    if (r < 0 || (r = volid_check(q->volume_id, "volume id", e)) < 0 ||
        (r = check_path(q->staging_target_path, "staging target path", e)) < 0)
        return r;
    if (!q->volume_capability)
        return wc_err(e, -EINVAL, "volume capability is required");
    if ((r = caps_check_one(q->volume_capability, e)) < 0)
        return r;
    _cleanup_free_ struct kv *kv = ctx_kv(q->volume_context, q->n_volume_context);
    struct volume_context vc;
    if (!kv)
        return -ENOMEM;
    if ((r = volctx_parse(kv, q->n_volume_context, &vc, e)) < 0)
        return r;
    struct source_use use = {.url = vc.source, .s3 = &vc.s3, .allow_plain_http = vc.allow_plain_http,
                             .has_secret = has_secret((void *const *)q->secrets, q->n_secrets)};
    if ((r = policy_check(&c->policy, &use, e)) < 0)
        return r;
    if ((r = vlocks_try(&c->locks, q->volume_id, e)) < 0)
        return r;
    r = stage_locked(c, q, &vc, rpc_call_cancelled(call), e);
    vlocks_release(&c->locks, q->volume_id);
    return r < 0 ? r : rpc_empty_reply(&csi__v1__node_stage_volume_response__descriptor, ret_resp);
}

/* ---- NodeUnstageVolume ---------------------------------------------------- */

static int unstage_locked(struct csi_ctx *c, const Csi__V1__NodeUnstageVolumeRequest *q, struct wc_error *e)
{
    struct vol_record *rec _cleanup_vol_record_ = NULL;
    int r = load_record(c, q->volume_id, &rec, e);
    if (r < 0)
        return r;
    if (!rec)
        return unmount_all(c, q->staging_target_path, e);
    if (!streq(rec->staging_path, q->staging_target_path))
        return wc_err(e, -EINVAL, "volume %s is staged at %s, not at %s", q->volume_id, rec->staging_path,
                      q->staging_target_path);
    /* a target with nothing mounted (a publish that failed, a reboot) is no
     * reason to refuse: kubelet will never unpublish it */
    for (size_t i = rec->n_targets; i-- > 0;) {
        struct vol_target *t = &rec->targets[i];
        int m = c->mounter->ops->is_mountpoint(c->mounter, t->path);
        if (m < 0)
            return wc_err_errno(e, m, "checking the mount at %s", t->path);
        if (m == 1)
            return wc_err(e, -ENOTCONN, "volume %s is still published at %s; unpublish it first", q->volume_id,
                          t->path);
    }
    if ((r = unmount_all(c, q->staging_target_path, e)) < 0)
        return r;
    for (size_t i = 0; i < rec->n_targets; i++) {
        if (rec->targets[i].writable)
            layer_remove(c, rec->volume_id, rec->targets[i].path);
        store_touch(c->store, rec->targets[i].content_id);
    }
    volumes_drop(c->volumes, q->volume_id);
    if (rec->content_id[0])
        store_touch(c->store, rec->content_id); /* in use until now: the least recently used is another */
    return 0;
}

int node_unstage_volume(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp, struct rpc_call *call,
                        struct wc_error *e)
{
    struct csi_ctx *c = ctx;
    const Csi__V1__NodeUnstageVolumeRequest *q = (const void *)req;
    int r = need_node(c, e);
    if (r < 0 || (r = volid_check(q->volume_id, "volume id", e)) < 0 ||
        (r = check_path(q->staging_target_path, "staging target path", e)) < 0)
        return r;
    if ((r = vlocks_try(&c->locks, q->volume_id, e)) < 0)
        return r;
    r = unstage_locked(c, q, e);
    vlocks_release(&c->locks, q->volume_id);
    return r < 0 ? r : rpc_empty_reply(&csi__v1__node_unstage_volume_response__descriptor, ret_resp);
}

/* ---- NodePublishVolume ---------------------------------------------------- */

/* Checks an existing target entry: 1 when it is already published the same
 * way (nothing to do), 0 when it must be (re)mounted, <0 when it conflicts. */
static int target_state(struct csi_ctx *c, const struct vol_record *rec, const char *volid, const char *target,
                        int writable, const char *flags, struct wc_error *e)
{
    const struct vol_target *t = rec ? vol_record_target(rec, target, NULL) : NULL;
    if (!t) {
        int m = c->mounter->ops->is_mountpoint(c->mounter, target);
        if (m < 0)
            return wc_err_errno(e, m, "checking the mount at %s", target);
        return m ? wc_err(e, -EEXIST, "%s is already a mount point of something else", target) : 0;
    }
    if (t->writable != !!writable || !streq(t->flags, flags))
        return wc_err(e, -EEXIST, "volume %s is already published at %s with other options (%s)", volid, target,
                      t->writable ? "writable" : "read-only");
    return mounted_as(c, target, writable, e);
}

static int publish_locked(struct csi_ctx *c, const Csi__V1__NodePublishVolumeRequest *q, int writable,
                          const char *flags, uint64_t scratch, struct wc_error *e)
{
    struct vol_record *rec _cleanup_vol_record_ = NULL;
    int r = load_record(c, q->volume_id, &rec, e);
    if (r < 0)
        return r;
    if (!rec)
        return wc_err(e, -ENOTCONN, "volume %s is not staged on this node; NodeStageVolume must come first",
                      q->volume_id);
    if (!streq(rec->staging_path, q->staging_target_path))
        return wc_err(e, -ENOTCONN, "volume %s is staged at %s, not at %s", q->volume_id, rec->staging_path,
                      q->staging_target_path);
    if (!rec->content_id[0])
        return wc_err(e, -ENOTCONN, "the staging mount of volume %s at %s is gone (a reboot?); NodeStageVolume "
                      "must come first", q->volume_id, rec->staging_path);
    if ((r = target_state(c, rec, q->volume_id, q->target_path, writable, flags, e)) != 0)
        return r < 0 ? r : 0;
    if (vol_record_add_target(rec, q->target_path, rec->content_id, writable, flags, scratch) < 0)
        return -ENOMEM;
    char cid[CONTENT_ID_LEN + 1];
    snprintf(cid, sizeof(cid), "%s", rec->content_id);
    return record_and_mount(c, rec, cid, q->target_path, vol_record_target(rec, q->target_path, NULL), e);
}

/* An inline ephemeral volume (csi: in the pod spec): no CreateVolume, no
 * NodeStage. The volume attributes are the parameters; fill, then mount. */
static int publish_ephemeral_locked(struct csi_ctx *c, const Csi__V1__NodePublishVolumeRequest *q,
                                    const struct volume_params *p, int writable, const char *flags,
                                    const atomic_int *cancel, struct wc_error *e)
{
    struct vol_record *rec _cleanup_vol_record_ = NULL;
    int r = load_record(c, q->volume_id, &rec, e);
    if (r < 0 || (r = target_state(c, rec, q->volume_id, q->target_path, writable, flags, e)) != 0)
        return r < 0 ? r : 0;
    struct volume_context vc = {.source = p->source, .policy = CHANGE_FOLLOW, .s3 = p->s3,
                                .allow_plain_http = p->allow_plain_http};
    char cid[CONTENT_ID_LEN + 1];
    if ((r = ensure_copy(c, &vc, (void *const *)q->secrets, q->n_secrets, cancel, cid, e)) < 0)
        return r;
    vol_record_free(rec);
    if (!(rec = vol_record_new(q->volume_id, p->source, "")))
        return -ENOMEM;
    rec->ephemeral = true;
    uint64_t scratch = writable ? (p->scratch_bytes ? p->scratch_bytes : c->scratch_bytes) : 0;
    if (vol_record_add_target(rec, q->target_path, cid, writable, flags, scratch) < 0)
        return -ENOMEM;
    return record_and_mount(c, rec, cid, q->target_path, vol_record_target(rec, q->target_path, NULL), e);
}

/* With podInfoOnMount the kubelet names the pod: one event on it. */
static void tell_pod(struct csi_ctx *c, const Csi__V1__NodePublishVolumeRequest *q, int writable)
{
    void *const *m = (void *const *)q->volume_context;
    const char *name = pbmap_get(m, q->n_volume_context, K8S_POD_NAME);
    const char *ns = pbmap_get(m, q->n_volume_context, K8S_POD_NAMESPACE);
    const char *uid = pbmap_get(m, q->n_volume_context, K8S_POD_UID);
    const char *src = pbmap_get(m, q->n_volume_context, CTX_SOURCE);
    if (!c->reporter || !name || !ns)
        return;
    json_t *t _cleanup_json_ = json_pack("[{s:s, s:s, s:s, s:s*}]", "kind", "Pod", "namespace", ns, "name", name,
                                         "uid", uid && *uid ? uid : NULL);
    char msg[600];
    snprintf(msg, sizeof(msg), "%s copy of %s from the cache of node %s mounted at %s",
             writable ? "a private writable" : "the read-only", src ? src : "the source", c->node_id, q->target_path);
    reporter_event(c->reporter, t, "Normal", "CachePublished", msg);
}

static int is_ephemeral(const Csi__V1__NodePublishVolumeRequest *q)
{
    const char *v = pbmap_get((void *const *)q->volume_context, q->n_volume_context,
                              "csi.storage.k8s.io/ephemeral");
    return v && streq(v, "true");
}

/* The inline volume's attributes, as parameters, under the inline rules. */
static int inline_params(struct csi_ctx *c, const Csi__V1__NodePublishVolumeRequest *q, struct kv *kv,
                         struct volume_params *p, struct wc_error *e)
{
    int r = params_parse_from(kv, q->n_volume_context, "inline volume attribute ", p, e);
    if (r < 0)
        return r;
    if (p->pvc_overrides || p->pvc_source_prefixes || p->prewarm)
        return wc_err(e, -EINVAL, "inline volume attributes: pvcOverrides, pvcSourcePrefixes and prewarm belong in a "
                      "StorageClass");
    struct source_use use = {.url = p->source, .s3 = &p->s3, .allow_plain_http = p->allow_plain_http,
                             .is_inline = true, .has_secret = has_secret((void *const *)q->secrets, q->n_secrets)};
    return policy_check(&c->policy, &use, e);
}

int node_publish_volume(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp, struct rpc_call *call,
                        struct wc_error *e)
{
    struct csi_ctx *c = ctx;
    const Csi__V1__NodePublishVolumeRequest *q = (const void *)req;
    int r = need_node(c, e);
    int ephemeral = is_ephemeral(q);
    if (r < 0 || (r = volid_check(q->volume_id, "volume id", e)) < 0 ||
        (r = check_path(q->target_path, "target path", e)) < 0 ||
        (!ephemeral && (r = check_path(q->staging_target_path, "staging target path", e)) < 0))
        return r;
    if (!q->volume_capability)
        return wc_err(e, -EINVAL, "volume capability is required");
    if ((r = caps_check_one(q->volume_capability, e)) < 0)
        return r;
    _cleanup_free_ struct kv *kv = ctx_kv((void *)q->volume_context, q->n_volume_context);
    if (!kv)
        return -ENOMEM;
    struct volume_params params = {0};
    struct volume_context vc = {0};
    if (ephemeral && (r = inline_params(c, q, kv, &params, e)) < 0)
        return r;
    if (!ephemeral && volctx_parse(kv, q->n_volume_context, &vc, e) < 0)
        vc = (struct volume_context){0}; /* NodeStage judged the context; here it only sizes the writable layer */
    char flags[256];
    int ro = q->readonly;
    if ((r = mount_flags(q->volume_capability, flags, sizeof(flags), &ro, e)) < 0)
        return r;
    int writable = !ro && caps_mode_writable(q->volume_capability);
    if ((r = vlocks_try(&c->locks, q->volume_id, e)) < 0)
        return r;
    uint64_t scratch = writable ? (vc.scratch_bytes ? vc.scratch_bytes : c->scratch_bytes) : 0;
    r = ephemeral ? publish_ephemeral_locked(c, q, &params, writable, flags, rpc_call_cancelled(call), e)
                  : publish_locked(c, q, writable, flags, scratch, e);
    vlocks_release(&c->locks, q->volume_id);
    if (r < 0)
        return r;
    tell_pod(c, q, writable);
    return rpc_empty_reply(&csi__v1__node_publish_volume_response__descriptor, ret_resp);
}

/* ---- NodeUnpublishVolume -------------------------------------------------- */

static int unpublish_locked(struct csi_ctx *c, const Csi__V1__NodeUnpublishVolumeRequest *q, struct wc_error *e)
{
    int r = unmount_all(c, q->target_path, e);
    if (r < 0)
        return r;
    struct vol_record *rec _cleanup_vol_record_ = NULL;
    if ((r = load_record(c, q->volume_id, &rec, e)) < 0)
        return r;
    size_t idx;
    struct vol_target *t = rec ? vol_record_target(rec, q->target_path, &idx) : NULL;
    if (t) {
        char cid[CONTENT_ID_LEN + 1];
        snprintf(cid, sizeof(cid), "%s", t->content_id);
        if (t->writable)
            layer_remove(c, q->volume_id, q->target_path);
        vol_record_remove_target(rec, idx);
        if (rec->ephemeral && rec->n_targets == 0)
            volumes_drop(c->volumes, q->volume_id); /* no NodeUnstage will come for an inline volume */
        else if ((r = volumes_put(c->volumes, rec, e)) < 0)
            return r;
        store_touch(c->store, cid);
    }
    /* the target is ours to remove once nothing is mounted there */
    if (rmdir(q->target_path) < 0 && errno != ENOENT && errno != ENOTDIR)
        return wc_err_errno(e, -errno, "removing the target path %s", q->target_path);
    return 0;
}

int node_unpublish_volume(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp, struct rpc_call *call,
                          struct wc_error *e)
{
    struct csi_ctx *c = ctx;
    const Csi__V1__NodeUnpublishVolumeRequest *q = (const void *)req;
    int r = need_node(c, e);
    if (r < 0 || (r = volid_check(q->volume_id, "volume id", e)) < 0 ||
        (r = check_path(q->target_path, "target path", e)) < 0)
        return r;
    if ((r = vlocks_try(&c->locks, q->volume_id, e)) < 0)
        return r;
    r = unpublish_locked(c, q, e);
    vlocks_release(&c->locks, q->volume_id);
    return r < 0 ? r : rpc_empty_reply(&csi__v1__node_unpublish_volume_response__descriptor, ret_resp);
}

/* ---- NodeGetVolumeStats --------------------------------------------------- */

static Csi__V1__VolumeUsage *usage(Csi__V1__VolumeUsage__Unit unit, uint64_t total, uint64_t used, uint64_t avail)
{
    Csi__V1__VolumeUsage *u = pb_new(&csi__v1__volume_usage__descriptor);
    if (u) {
        u->unit = unit;
        u->total = (int64_t)total;
        u->used = (int64_t)used;
        u->available = (int64_t)avail;
    }
    return u;
}

struct stats {
    uint64_t bytes, files, free_b, free_i;
    int abnormal;
    char msg[WC_ERROR_MSG_MAX + 256];
};

/* Usage and condition of one path of a volume: its copy, and for a writable
 * target its bounded layer. */
static void path_stats(struct csi_ctx *c, const struct vol_record *rec, const struct vol_target *t, const char *path,
                       struct stats *s)
{
    const char *cid = t ? t->content_id : rec->content_id;
    json_t *meta _cleanup_json_ = store_meta(c->store, cid);
    s->bytes = (uint64_t)json_integer_value(json_object_get(meta, "bytes"));
    s->files = (uint64_t)json_integer_value(json_object_get(meta, "files"));
    struct statvfs vfs;
    if (t && t->writable && statvfs(c->store->root, &vfs) == 0) { /* a read-only copy has no room to grow */
        s->free_b = (uint64_t)vfs.f_bavail * vfs.f_frsize;
        s->free_i = vfs.f_favail;
    }
    uint64_t used = 0, limit = 0;
    char base[PATH_MAX];
    int bounded = t && t->writable && volumes_layer_dir(c->volumes, rec->volume_id, path, base, sizeof(base)) == 0 &&
                  c->bounds.ops->usage(&c->bounds, base, &used, &limit) == 0 && limit > 0;
    uint64_t left = bounded && used < limit ? limit - used : 0;
    if (bounded) {
        s->free_b = left;
        s->bytes += used; /* what the pod wrote counts as the volume's */
    }
    struct wc_error why;
    wc_error_clear(&why);
    char u[32], l[32];
    if (store_verify(c->store, cid, &why) < 0) {
        s->abnormal = 1;
        snprintf(s->msg, sizeof(s->msg), "%s; unstage and stage the volume again to refill it", why.msg);
    } else if (c->mounter->ops->is_mountpoint(c->mounter, path) != 1) {
        s->abnormal = 1;
        snprintf(s->msg, sizeof(s->msg), "%s is not mounted", path);
    } else if (bounded && left < (limit / 50 > (1u << 20) ? limit / 50 : (1u << 20))) {
        fmt_bytes(used, u, sizeof(u));
        fmt_bytes(limit, l, sizeof(l));
        s->abnormal = 1;
        snprintf(s->msg, sizeof(s->msg), "the writable layer of volume %s at %s is full: %s of its %s (the "
                 "volume's size, or scratchSize); the pod's writes fail with EDQUOT", rec->volume_id, path, u, l);
    } else {
        snprintf(s->msg, sizeof(s->msg), "copy of %s ready: %" PRIu64 " files, %" PRIu64 " bytes, verified",
                 json_string_value(json_object_get(meta, "source")) ?: "?", s->files, s->bytes);
    }
}

int node_get_volume_stats(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp, struct rpc_call *call,
                          struct wc_error *e)
{
    struct csi_ctx *c = ctx;
    const Csi__V1__NodeGetVolumeStatsRequest *q = (const void *)req;
    int r = need_node(c, e);
    if (r < 0 || (r = volid_check(q->volume_id, "volume id", e)) < 0)
        return r;
    if (!q->volume_path || !*q->volume_path)
        return wc_err(e, -EINVAL, "volume path is required");
    struct vol_record *rec _cleanup_vol_record_ = NULL;
    if ((r = load_record(c, q->volume_id, &rec, e)) < 0)
        return r;
    if (!rec)
        return wc_err(e, -ENOENT, "volume %s is not staged on this node", q->volume_id);
    const struct vol_target *t = vol_record_target(rec, q->volume_path, NULL);
    if ((!rec->staging_path[0] || !streq(rec->staging_path, q->volume_path)) && !t)
        return wc_err(e, -ENOENT, "%s is not a path of volume %s", q->volume_path, q->volume_id);
    struct stat st;
    if (stat(q->volume_path, &st) < 0)
        return wc_err(e, -ENOENT, "volume path %s does not exist", q->volume_path);
    struct stats s = {0};
    path_stats(c, rec, t, q->volume_path, &s);

    Csi__V1__NodeGetVolumeStatsResponse *resp = pb_new(&csi__v1__node_get_volume_stats_response__descriptor);
    Csi__V1__VolumeCondition *cond = pb_new(&csi__v1__volume_condition__descriptor);
    if (!resp || !cond || !(resp->usage = calloc(2, sizeof(*resp->usage))) || !(cond->message = xstrdup(s.msg))) {
        if (resp)
            protobuf_c_message_free_unpacked(&resp->base, NULL);
        if (cond)
            protobuf_c_message_free_unpacked(&cond->base, NULL);
        return -ENOMEM;
    }
    resp->volume_condition = cond;
    cond->abnormal = s.abnormal;
    resp->usage[resp->n_usage++] = usage(CSI__V1__VOLUME_USAGE__UNIT__BYTES, s.bytes + s.free_b, s.bytes, s.free_b);
    resp->usage[resp->n_usage++] = usage(CSI__V1__VOLUME_USAGE__UNIT__INODES, s.files + s.free_i, s.files, s.free_i);
    if (!resp->usage[0] || !resp->usage[1]) {
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return -ENOMEM;
    }
    *ret_resp = &resp->base;
    return 0;
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

/* ---- capabilities and info ------------------------------------------------ */

int node_get_capabilities(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp, struct rpc_call *call,
                          struct wc_error *e)
{
    struct csi_ctx *c = ctx;
    int r = need_node(c, e);
    if (r < 0)
        return r;
    static const Csi__V1__NodeServiceCapability__RPC__Type offered[] = {
        CSI__V1__NODE_SERVICE_CAPABILITY__RPC__TYPE__STAGE_UNSTAGE_VOLUME,
        CSI__V1__NODE_SERVICE_CAPABILITY__RPC__TYPE__GET_VOLUME_STATS,
        CSI__V1__NODE_SERVICE_CAPABILITY__RPC__TYPE__VOLUME_CONDITION,
    };
    Csi__V1__NodeGetCapabilitiesResponse *resp = pb_new(&csi__v1__node_get_capabilities_response__descriptor);
    if (!resp || !(resp->capabilities = calloc(ARRAY_SIZE(offered), sizeof(void *)))) {
        free(resp);
        return -ENOMEM;
    }
    for (size_t i = 0; i < ARRAY_SIZE(offered); i++) {
        Csi__V1__NodeServiceCapability *cap = pb_new(&csi__v1__node_service_capability__descriptor);
        Csi__V1__NodeServiceCapability__RPC *rpc = pb_new(&csi__v1__node_service_capability__rpc__descriptor);
        if (!cap || !rpc) {
            free(cap);
            free(rpc);
            protobuf_c_message_free_unpacked(&resp->base, NULL);
            return -ENOMEM;
        }
        rpc->type = offered[i];
        cap->type_case = CSI__V1__NODE_SERVICE_CAPABILITY__TYPE_RPC;
        cap->rpc = rpc;
        resp->capabilities[resp->n_capabilities++] = cap;
    }
    *ret_resp = &resp->base;
    return 0;
}

int node_get_info(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp, struct rpc_call *call,
                  struct wc_error *e)
{
    struct csi_ctx *c = ctx;
    int r = need_node(c, e);
    if (r < 0)
        return r;
    Csi__V1__NodeGetInfoResponse *resp = pb_new(&csi__v1__node_get_info_response__descriptor);
    if (!resp || !(resp->node_id = xstrdup(c->node_id))) {
        free(resp);
        return -ENOMEM;
    }
    *ret_resp = &resp->base;
    return 0;
}
