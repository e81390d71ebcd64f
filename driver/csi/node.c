/*
 * Node service: fill a local copy, bind it read-only at the staging path,
 * and bind it (or a private writable overlay of it) into each pod's target.
 *
 * Each volume has a record under the store (volumes/<hash>.json) naming its
 * copy, staging path and targets. The record is written *before* a mount is
 * made and trimmed *after* it is removed, so after a crash at any point the
 * record names every mount that may exist and a retried call converges:
 * stage/publish re-mount what is missing, unstage/unpublish unmount what is
 * there. Copies outlive volumes: they are the cache.
 */
#include "csi/csi.h"
#include "csi/report.h"
#include "base/fsutil.h"
#include "base/macros.h"
#include "base/pathkey.h"
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

static int need_node(struct csi_ctx *c, struct wc_error *e)
{
    return c->node ? 0 : wc_err(e, -EOPNOTSUPP, "this plugin instance does not run the node service");
}

static int check_path(const char *path, const char *what, struct wc_error *e)
{
    return abspath_check(path, what, e);
}

/* ---- the volume record ---------------------------------------------------- */

static int rec_path(struct csi_ctx *c, const char *volid, char *buf, size_t n)
{
    char key[33];
    volid_key(volid, key);
    return store_path(c->store, buf, n, "volumes/%s.json", key);
}

static json_t *rec_load(struct csi_ctx *c, const char *volid)
{
    char p[PATH_MAX];
    if (rec_path(c, volid, p, sizeof(p)) < 0)
        return NULL;
    json_t *rec = json_load_file(p, 0, NULL);
    /* a record is ours only if it names this volume (guards hash misuse) */
    if (rec && !streq(json_string_value(json_object_get(rec, "volume_id")) ?: "", volid)) {
        json_decref(rec);
        return NULL;
    }
    return rec;
}

static int rec_save(struct csi_ctx *c, const char *volid, json_t *rec, struct wc_error *e)
{
    char p[PATH_MAX];
    _cleanup_free_ char *txt = json_dumps(rec, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    int r = txt ? rec_path(c, volid, p, sizeof(p)) : -ENOMEM;
    if (r == 0)
        r = fs_write_atomic(p, txt, strlen(txt), 0600);
    return r < 0 ? wc_err_errno(e, r, "saving the node record of volume %s", volid) : 0;
}

static void rec_remove(struct csi_ctx *c, const char *volid)
{
    char p[PATH_MAX];
    if (rec_path(c, volid, p, sizeof(p)) == 0)
        unlink(p);
}

static json_t *rec_target(json_t *rec, const char *path, size_t *ret_index)
{
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(rec, "targets"), i, t)
        if (streq(json_string_value(json_object_get(t, "path")) ?: "", path)) {
            if (ret_index)
                *ret_index = i;
            return t;
        }
    return NULL;
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

/* Mount flags from the PV's mountOptions: only those that make sense for a
 * bind of a read-only copy; anything else is named back to the user. */
static int mount_flags(const Csi__V1__VolumeCapability *cap, char *out, size_t n, int *ret_ro, struct wc_error *e)
{
    /* a cache of data, never of programs that gain privilege or devices */
    size_t o = (size_t)snprintf(out, n, "nosuid,nodev");
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

/* ---- filling -------------------------------------------------------------- */

static int mount_overlay(struct csi_ctx *c, const char *volid, const char *cid, const char *target,
                         const char *flags, struct wc_error *e);

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

/* Records the volume, then mounts: see the file comment for why in that order.
 * The copy is pinned meanwhile so that no fill evicts it under our feet. */
static int record_and_mount(struct csi_ctx *c, json_t *rec, const char *volid, const char *cid,
                            const char *target, int writable, const char *flags, struct wc_error *e)
{
    store_pin(c->store, cid);
    int r = 0;
    if (!store_content_ready(c->store, cid))
        r = wc_err(e, -EAGAIN, "the copy %s was evicted while being mounted; retry", cid);
    if (r == 0)
        r = rec_save(c, volid, rec, e);
    if (r == 0 && (r = fs_mkdir_p(target, 0750)) < 0)
        wc_err_errno(e, r, "creating %s", target);
    if (r == 0)
        r = unmount_all(c, target, e);
    if (r == 0 && !writable) {
        char content[PATH_MAX];
        store_path(c->store, content, sizeof(content), "content/%s", cid);
        r = c->mounter->ops->bind(c->mounter, content, target, 1, flags, e);
    } else if (r == 0) {
        r = mount_overlay(c, volid, cid, target, flags, e);
    }
    if (r == 0)
        store_touch(c->store, cid);
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

/* ---- NodeStageVolume ------------------------------------------------------ */

static int stage_locked(struct csi_ctx *c, const Csi__V1__NodeStageVolumeRequest *q, const struct volume_context *vc,
                        const atomic_int *cancel, struct wc_error *e)
{
    json_t *rec _cleanup_json_ = rec_load(c, q->volume_id);
    if (rec) {
        const char *staged = json_string_value(json_object_get(rec, "staging_path")) ?: "";
        if (!streq(staged, q->staging_target_path))
            return wc_err(e, -EEXIST, "volume %s is already staged at %s", q->volume_id, staged);
        const char *cid = json_string_value(json_object_get(rec, "content_id")) ?: "";
        if (c->mounter->ops->is_mountpoint(c->mounter, q->staging_target_path) == 1 &&
            store_content_ready(c->store, cid))
            return 0; /* already staged: same answer again */
    }
    char cid[CONTENT_ID_LEN + 1];
    int r = ensure_copy(c, vc, (void *const *)q->secrets, q->n_secrets, cancel, cid, e);
    if (r < 0)
        return r;
    json_decref(rec);
    rec = json_pack("{s:s, s:s, s:s, s:s, s:[]}", "volume_id", q->volume_id, "content_id", cid, "source",
                    vc->source, "staging_path", q->staging_target_path, "targets");
    if (!rec)
        return -ENOMEM;
    return record_and_mount(c, rec, q->volume_id, cid, q->staging_target_path, 0, "nosuid,nodev", e);
}

DECLARE_HANDLER(node_stage_volume)
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
    if ((r = vlocks_try(&c->locks, q->volume_id, e)) < 0)
        return r;
    r = stage_locked(c, q, &vc, rpc_call_cancelled(call), e);
    vlocks_release(&c->locks, q->volume_id);
    if (r < 0)
        return r;
    Csi__V1__NodeStageVolumeResponse *resp = pb_new(&csi__v1__node_stage_volume_response__descriptor);
    if (!resp)
        return -ENOMEM;
    *ret_resp = &resp->base;
    return 0;
}

/* ---- NodeUnstageVolume ---------------------------------------------------- */

static int unstage_locked(struct csi_ctx *c, const Csi__V1__NodeUnstageVolumeRequest *q, struct wc_error *e)
{
    json_t *rec _cleanup_json_ = rec_load(c, q->volume_id);
    if (rec) {
        const char *staged = json_string_value(json_object_get(rec, "staging_path")) ?: "";
        if (!streq(staged, q->staging_target_path))
            return wc_err(e, -EINVAL, "volume %s is staged at %s, not at %s", q->volume_id, staged,
                          q->staging_target_path);
        json_t *t = json_array_get(json_object_get(rec, "targets"), 0);
        if (t)
            return wc_err(e, -ENOTCONN, "volume %s is still published at %s; unpublish it first", q->volume_id,
                          json_string_value(json_object_get(t, "path")));
    }
    int r = unmount_all(c, q->staging_target_path, e);
    if (r < 0)
        return r;
    rec_remove(c, q->volume_id);
    return 0;
}

DECLARE_HANDLER(node_unstage_volume)
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
    if (r < 0)
        return r;
    Csi__V1__NodeUnstageVolumeResponse *resp = pb_new(&csi__v1__node_unstage_volume_response__descriptor);
    if (!resp)
        return -ENOMEM;
    *ret_resp = &resp->base;
    return 0;
}

/* ---- NodePublishVolume ---------------------------------------------------- */

static int overlay_dirs(struct csi_ctx *c, const char *volid, const char *target, char *upper, char *work,
                        char *base, size_t n)
{
    char vkey[33], tkey[33];
    volid_key(volid, vkey);
    volid_key(target, tkey);
    int r = store_path(c->store, base, n, "overlays/%s/%s", vkey, tkey);
    if (r == 0 && snprintf(upper, n, "%s/upper", base) >= (int)n)
        r = -ENAMETOOLONG;
    if (r == 0 && snprintf(work, n, "%s/work", base) >= (int)n)
        r = -ENAMETOOLONG;
    return r;
}

/* A writable publish: a private overlay on the copy, fresh for each publish,
 * so nothing an earlier pod wrote leaks into the next. */
static int mount_overlay(struct csi_ctx *c, const char *volid, const char *cid, const char *target,
                         const char *flags, struct wc_error *e)
{
    char upper[PATH_MAX], work[PATH_MAX], base[PATH_MAX], lower[PATH_MAX];
    if (overlay_dirs(c, volid, target, upper, work, base, sizeof(base)) < 0 ||
        store_path(c->store, lower, sizeof(lower), "content/%s", cid) < 0)
        return wc_err(e, -ENAMETOOLONG, "overlay paths too long");
    fs_rm_rf(base);
    int r;
    if ((r = fs_mkdir_p(upper, 0755)) < 0 || (r = fs_mkdir_p(work, 0700)) < 0)
        return wc_err_errno(e, r, "creating the writable layer for %s", target);
    return c->mounter->ops->overlay(c->mounter, lower, upper, work, target, flags, e);
}

/* Checks an existing target entry: 1 when it is already published the same
 * way (nothing to do), 0 when it must be (re)mounted, <0 when it conflicts. */
static int target_state(struct csi_ctx *c, json_t *rec, const char *volid, const char *target, int writable,
                        const char *flags, struct wc_error *e)
{
    int mounted = c->mounter->ops->is_mountpoint(c->mounter, target);
    if (mounted < 0)
        return wc_err_errno(e, mounted, "checking the mount at %s", target);
    json_t *t = rec ? rec_target(rec, target, NULL) : NULL;
    if (!t)
        return mounted ? wc_err(e, -EEXIST, "%s is already a mount point of something else", target) : 0;
    int was_writable = json_is_true(json_object_get(t, "writable"));
    const char *was_flags = json_string_value(json_object_get(t, "flags")) ?: "";
    if (was_writable != writable || !streq(was_flags, flags))
        return wc_err(e, -EEXIST, "volume %s is already published at %s with other options (%s)", volid, target,
                      was_writable ? "writable" : "read-only");
    return mounted;
}

static int add_target(json_t *rec, const char *target, int writable, const char *flags)
{
    if (rec_target(rec, target, NULL))
        return 0;
    json_t *t = json_pack("{s:s, s:b, s:s}", "path", target, "writable", writable, "flags", flags);
    return t && json_array_append_new(json_object_get(rec, "targets"), t) == 0 ? 0 : -ENOMEM;
}

static int publish_locked(struct csi_ctx *c, const Csi__V1__NodePublishVolumeRequest *q, int writable,
                          const char *flags, struct wc_error *e)
{
    json_t *rec _cleanup_json_ = rec_load(c, q->volume_id);
    if (!rec)
        return wc_err(e, -ENOTCONN, "volume %s is not staged on this node; NodeStageVolume must come first",
                      q->volume_id);
    const char *staged = json_string_value(json_object_get(rec, "staging_path")) ?: "";
    if (!streq(staged, q->staging_target_path))
        return wc_err(e, -ENOTCONN, "volume %s is staged at %s, not at %s", q->volume_id, staged,
                      q->staging_target_path);
    int r = target_state(c, rec, q->volume_id, q->target_path, writable, flags, e);
    if (r != 0)
        return r < 0 ? r : 0;
    if (add_target(rec, q->target_path, writable, flags) < 0)
        return -ENOMEM;
    const char *cid = json_string_value(json_object_get(rec, "content_id")) ?: "";
    return record_and_mount(c, rec, q->volume_id, cid, q->target_path, writable, flags, e);
}

/* An inline ephemeral volume (csi: in the pod spec): no CreateVolume, no
 * NodeStage. The volume attributes are the parameters; fill, then mount. */
static int publish_ephemeral_locked(struct csi_ctx *c, const Csi__V1__NodePublishVolumeRequest *q,
                                    const struct volume_params *p, int writable, const char *flags,
                                    const atomic_int *cancel, struct wc_error *e)
{
    json_t *rec _cleanup_json_ = rec_load(c, q->volume_id);
    int r = target_state(c, rec, q->volume_id, q->target_path, writable, flags, e);
    if (r != 0)
        return r < 0 ? r : 0;
    struct volume_context vc = {.source = p->source, .policy = CHANGE_FOLLOW, .s3 = p->s3};
    char cid[CONTENT_ID_LEN + 1];
    if ((r = ensure_copy(c, &vc, (void *const *)q->secrets, q->n_secrets, cancel, cid, e)) < 0)
        return r;
    json_decref(rec);
    rec = json_pack("{s:s, s:s, s:s, s:s, s:b, s:[]}", "volume_id", q->volume_id, "content_id", cid, "source",
                    p->source, "staging_path", "", "ephemeral", 1, "targets");
    if (!rec || add_target(rec, q->target_path, writable, flags) < 0)
        return -ENOMEM;
    return record_and_mount(c, rec, q->volume_id, cid, q->target_path, writable, flags, e);
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

DECLARE_HANDLER(node_publish_volume)
{
    struct csi_ctx *c = ctx;
    const Csi__V1__NodePublishVolumeRequest *q = (const void *)req;
    int r = need_node(c, e);
    int ephemeral = is_ephemeral(q);
    if (r < 0 || (r = volid_check(q->volume_id, "volume id", e)) < 0 ||
        (r = check_path(q->target_path, "target path", e)) < 0 ||
        (!ephemeral && (r = check_path(q->staging_target_path, "staging target path", e)) < 0))
        return r;
    struct volume_params params = {0};
    _cleanup_free_ struct kv *kv = NULL;
    if (ephemeral) {
        if (!(kv = ctx_kv((void *)q->volume_context, q->n_volume_context)))
            return -ENOMEM;
        if ((r = params_parse(kv, q->n_volume_context, &params, e)) < 0)
            return wc_err_prefix(e, "inline volume attributes: ");
    }
    if (!q->volume_capability)
        return wc_err(e, -EINVAL, "volume capability is required");
    if ((r = caps_check_one(q->volume_capability, e)) < 0)
        return r;
    char flags[256];
    int ro = q->readonly;
    if ((r = mount_flags(q->volume_capability, flags, sizeof(flags), &ro, e)) < 0)
        return r;
    int writable = !ro && caps_mode_writable(q->volume_capability);
    if ((r = vlocks_try(&c->locks, q->volume_id, e)) < 0)
        return r;
    r = ephemeral ? publish_ephemeral_locked(c, q, &params, writable, flags, rpc_call_cancelled(call), e)
                  : publish_locked(c, q, writable, flags, e);
    vlocks_release(&c->locks, q->volume_id);
    if (r < 0)
        return r;
    tell_pod(c, q, writable);
    Csi__V1__NodePublishVolumeResponse *resp = pb_new(&csi__v1__node_publish_volume_response__descriptor);
    if (!resp)
        return -ENOMEM;
    *ret_resp = &resp->base;
    return 0;
}

/* ---- NodeUnpublishVolume -------------------------------------------------- */

static int unpublish_locked(struct csi_ctx *c, const Csi__V1__NodeUnpublishVolumeRequest *q, struct wc_error *e)
{
    int r = unmount_all(c, q->target_path, e);
    if (r < 0)
        return r;
    json_t *rec _cleanup_json_ = rec_load(c, q->volume_id);
    size_t idx;
    if (rec && rec_target(rec, q->target_path, &idx)) {
        char upper[PATH_MAX], work[PATH_MAX], base[PATH_MAX];
        if (overlay_dirs(c, q->volume_id, q->target_path, upper, work, base, sizeof(base)) == 0)
            fs_rm_rf(base);
        json_array_remove(json_object_get(rec, "targets"), idx);
        if (json_is_true(json_object_get(rec, "ephemeral")) && json_array_size(json_object_get(rec, "targets")) == 0)
            rec_remove(c, q->volume_id); /* no NodeUnstage will come for an inline volume */
        else if ((r = rec_save(c, q->volume_id, rec, e)) < 0)
            return r;
    }
    /* the target is ours to remove once nothing is mounted there */
    if (rmdir(q->target_path) < 0 && errno != ENOENT && errno != ENOTDIR)
        return wc_err_errno(e, -errno, "removing the target path %s", q->target_path);
    return 0;
}

DECLARE_HANDLER(node_unpublish_volume)
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
    if (r < 0)
        return r;
    Csi__V1__NodeUnpublishVolumeResponse *resp = pb_new(&csi__v1__node_unpublish_volume_response__descriptor);
    if (!resp)
        return -ENOMEM;
    *ret_resp = &resp->base;
    return 0;
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

DECLARE_HANDLER(node_get_volume_stats)
{
    struct csi_ctx *c = ctx;
    const Csi__V1__NodeGetVolumeStatsRequest *q = (const void *)req;
    int r = need_node(c, e);
    if (r < 0 || (r = volid_check(q->volume_id, "volume id", e)) < 0)
        return r;
    if (!q->volume_path || !*q->volume_path)
        return wc_err(e, -EINVAL, "volume path is required");
    json_t *rec _cleanup_json_ = rec_load(c, q->volume_id);
    if (!rec)
        return wc_err(e, -ENOENT, "volume %s is not staged on this node", q->volume_id);
    const char *staged = json_string_value(json_object_get(rec, "staging_path")) ?: "";
    json_t *t = rec_target(rec, q->volume_path, NULL);
    if ((!*staged || !streq(staged, q->volume_path)) && !t)
        return wc_err(e, -ENOENT, "%s is not a path of volume %s", q->volume_path, q->volume_id);
    struct stat st;
    if (stat(q->volume_path, &st) < 0)
        return wc_err(e, -ENOENT, "volume path %s does not exist", q->volume_path);

    const char *cid = json_string_value(json_object_get(rec, "content_id")) ?: "";
    json_t *meta _cleanup_json_ = store_meta(c->store, cid);
    uint64_t bytes = (uint64_t)json_integer_value(json_object_get(meta, "bytes"));
    uint64_t files = (uint64_t)json_integer_value(json_object_get(meta, "files"));
    struct statvfs vfs;
    uint64_t free_b = 0, free_i = 0;
    if (statvfs(c->store->root, &vfs) == 0) {
        free_b = (uint64_t)vfs.f_bavail * vfs.f_frsize;
        free_i = vfs.f_favail;
    }
    /* A read-only copy has no room to grow; a writable publish has the store's. */
    int writable = t && json_is_true(json_object_get(t, "writable"));
    if (!writable)
        free_b = free_i = 0;

    Csi__V1__NodeGetVolumeStatsResponse *resp = pb_new(&csi__v1__node_get_volume_stats_response__descriptor);
    if (!resp)
        return -ENOMEM;
    *ret_resp = &resp->base;
    resp->usage = calloc(2, sizeof(*resp->usage));
    if (!resp->usage)
        return -ENOMEM;
    if (!(resp->usage[resp->n_usage++] = usage(CSI__V1__VOLUME_USAGE__UNIT__BYTES, bytes + free_b, bytes, free_b)) ||
        !(resp->usage[resp->n_usage++] = usage(CSI__V1__VOLUME_USAGE__UNIT__INODES, files + free_i, files, free_i)))
        return -ENOMEM;

    Csi__V1__VolumeCondition *cond = pb_new(&csi__v1__volume_condition__descriptor);
    if (!(resp->volume_condition = cond))
        return -ENOMEM;
    char msg[WC_ERROR_MSG_MAX + 128];
    struct wc_error why;
    wc_error_clear(&why);
    if (store_verify(c->store, cid, &why) < 0) {
        cond->abnormal = 1;
        snprintf(msg, sizeof(msg), "%s; unstage and stage the volume again to refill it", why.msg);
    } else if (c->mounter->ops->is_mountpoint(c->mounter, q->volume_path) != 1) {
        cond->abnormal = 1;
        snprintf(msg, sizeof(msg), "%s is not mounted", q->volume_path);
    } else {
        snprintf(msg, sizeof(msg), "copy of %s ready: %" PRIu64 " files, %" PRIu64 " bytes, verified",
                 json_string_value(json_object_get(meta, "source")) ?: "?", files, bytes);
    }
    cond->message = xstrdup(msg);
    return cond->message ? 0 : -ENOMEM;
}

/* ---- capabilities and info ------------------------------------------------ */

DECLARE_HANDLER(node_get_capabilities)
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
    if (!resp)
        return -ENOMEM;
    *ret_resp = &resp->base;
    if (!(resp->capabilities = calloc(ARRAY_SIZE(offered), sizeof(void *))))
        return -ENOMEM;
    for (size_t i = 0; i < ARRAY_SIZE(offered); i++) {
        Csi__V1__NodeServiceCapability *cap = pb_new(&csi__v1__node_service_capability__descriptor);
        Csi__V1__NodeServiceCapability__RPC *rpc = pb_new(&csi__v1__node_service_capability__rpc__descriptor);
        if (!cap || !rpc) {
            free(cap);
            free(rpc);
            return -ENOMEM;
        }
        rpc->type = offered[i];
        cap->type_case = CSI__V1__NODE_SERVICE_CAPABILITY__TYPE_RPC;
        cap->rpc = rpc;
        resp->capabilities[resp->n_capabilities++] = cap;
    }
    return 0;
}

DECLARE_HANDLER(node_get_info)
{
    struct csi_ctx *c = ctx;
    int r = need_node(c, e);
    if (r < 0)
        return r;
    Csi__V1__NodeGetInfoResponse *resp = pb_new(&csi__v1__node_get_info_response__descriptor);
    if (!resp)
        return -ENOMEM;
    *ret_resp = &resp->base;
    resp->node_id = xstrdup(c->node_id);
    return resp->node_id ? 0 : -ENOMEM;
}
