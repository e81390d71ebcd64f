/*
 * What the node says about itself and its volumes: NodeGetVolumeStats
 * (usage, and a condition a user can act on: a copy that fails its
 * verification, a mount that is gone, a full writable layer),
 * NodeGetCapabilities and NodeGetInfo.
 */
#include "csi/csi.h"
#include "base/macros.h"
#include "base/units.h"
#include "csi/node.h"
#include "csi/volid.h"
#include "rpc/pbutil.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

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

