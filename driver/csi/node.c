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
 * How mounts are made: node_mount.c; stats and info: node_stats.c.
 */
#include "csi/csi.h"
#include "csi/node.h"
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


static int check_path(const char *path, const char *what, struct wc_error *e)
{
    return abspath_check(path, what, e);
}

/* ---- filling -------------------------------------------------------------- */

/* Starts or joins the background fill and waits up to --fill-wait for it;
 * -EINPROGRESS (ABORTED, with progress in e) when it is still running. */
static int ensure_copy(struct csi_ctx *c, const struct volume_context *vc, bool is_inline, void *const *secrets,
                       size_t n_secrets, const atomic_int *cancel, char ret_cid[CONTENT_ID_LEN + 1], struct wc_error *e)
{
    /* whom kubectl describe should tell: the PVC, the PV, the pods here */
    json_t *targets _cleanup_json_ = c->reporter ? reporter_targets(c->reporter, vc->pvc_namespace, vc->pvc_name,
                                                                    vc->pv_name) : NULL;
    int hit = 0;
    struct source_spec spec = source_with_secrets(&vc->src, secrets, n_secrets);
    struct fill_request rq = {
        .targets = targets, .ret_hit = &hit, .spec = &spec,
        .pinned = vc->digest, .follow = vc->policy == CHANGE_FOLLOW,
        .pinned_objects = vc->objects, .pinned_bytes = vc->bytes, .narrow = is_inline,
    };
    int r = jobs_ensure(&c->jobs, &rq, c->fill_wait_ms, cancel, ret_cid, e);
    explicit_bzero(&spec, sizeof(spec)); /* pointers to the request's secrets, which the server wipes */
    if (r == 0 && hit) {
        char msg[600];
        snprintf(msg, sizeof(msg), "the copy of %s is already on node %s (verified): no fill needed", vc->src.url,
                 c->node_id);
        reporter_event(c->reporter, targets, "Normal", "CacheHit", msg);
    }
    return r;
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
    if ((r = ensure_copy(c, vc, false, (void *const *)q->secrets, q->n_secrets, cancel, cid, e)) < 0)
        return r;
    /* a record found without its staging mount keeps its targets: pods may still be using them */
    if (!rec && !(rec = vol_record_new(q->volume_id, vc->src.url, q->staging_target_path)))
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
    if ((r = caps_check_one(q->volume_capability, e)) < 0) /* "is required" when absent */
        return r;
    _cleanup_free_ struct kv *kv = pbmap_pairs((void *const *)q->volume_context, q->n_volume_context);
    struct volume_context vc;
    if (!kv)
        return -ENOMEM;
    if ((r = volctx_parse(kv, q->n_volume_context, &vc, e)) < 0)
        return r;
    struct source_use use = {.spec = &vc.src, .allow_plain_http = vc.allow_plain_http,
                             .has_secret = secrets_have_credentials(vc.src.url, (void *const *)q->secrets,
                                                                    q->n_secrets)};
    if ((r = policy_check(&c->policy, &use, e)) < 0)
        return r;
    if ((r = vlocks_try(&c->locks, q->volume_id, e)) < 0)
        return r;
    r = stage_locked(c, q, &vc, rpc_call_cancelled(call), e);
    vlocks_release(&c->locks, q->volume_id);
    return r < 0 ? r : rpc_empty_reply(&csi__v1__node_stage_volume_response__descriptor, ret_resp);
}

/* ---- NodeUnstageVolume ---------------------------------------------------- */

static int unstage_locked(struct csi_ctx *c, const void *req, struct wc_error *e)
{
    const Csi__V1__NodeUnstageVolumeRequest *q = req;
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

/* The shape of NodeUnstage and NodeUnpublish: a volume id and one path
 * checked, then fn under the volume's lock, then the empty reply d. */
static int undo_call(struct csi_ctx *c, const char *volid, const char *path, const char *what, const void *q,
                     int (*fn)(struct csi_ctx *c, const void *q, struct wc_error *e),
                     const ProtobufCMessageDescriptor *d, ProtobufCMessage **ret_resp, struct wc_error *e)
{
    int r = need_node(c, e);
    if (r < 0 || (r = volid_check(volid, "volume id", e)) < 0 || (r = check_path(path, what, e)) < 0)
        return r;
    if ((r = vlocks_try(&c->locks, volid, e)) < 0)
        return r;
    r = fn(c, q, e);
    vlocks_release(&c->locks, volid);
    return r < 0 ? r : rpc_empty_reply(d, ret_resp);
}

int node_unstage_volume(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp, struct rpc_call *call,
                        struct wc_error *e)
{
    const Csi__V1__NodeUnstageVolumeRequest *q = (const void *)req;
    return undo_call(ctx, q->volume_id, q->staging_target_path, "staging target path", q, unstage_locked,
                     &csi__v1__node_unstage_volume_response__descriptor, ret_resp, e);
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
    struct volume_context vc = {.src = p->src, .policy = CHANGE_FOLLOW, .allow_plain_http = p->allow_plain_http};
    char cid[CONTENT_ID_LEN + 1];
    if ((r = ensure_copy(c, &vc, true, (void *const *)q->secrets, q->n_secrets, cancel, cid, e)) < 0)
        return r;
    vol_record_free(rec);
    if (!(rec = vol_record_new(q->volume_id, p->src.url, "")))
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
    struct source_use use = {.spec = &p->src, .allow_plain_http = p->allow_plain_http, .is_inline = true,
                             .has_secret = secrets_have_credentials(p->src.url, (void *const *)q->secrets,
                                                                    q->n_secrets)};
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
    if ((r = caps_check_one(q->volume_capability, e)) < 0) /* "is required" when absent */
        return r;
    _cleanup_free_ struct kv *kv = pbmap_pairs((void *const *)q->volume_context, q->n_volume_context);
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

static int unpublish_locked(struct csi_ctx *c, const void *req, struct wc_error *e)
{
    const Csi__V1__NodeUnpublishVolumeRequest *q = req;
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
    const Csi__V1__NodeUnpublishVolumeRequest *q = (const void *)req;
    return undo_call(ctx, q->volume_id, q->target_path, "target path", q, unpublish_locked,
                     &csi__v1__node_unpublish_volume_response__descriptor, ret_resp, e);
}

