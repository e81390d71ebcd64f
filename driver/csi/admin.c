/*
 * warmcache's own Admin service (proto/admin.proto), served beside CSI on the
 * node socket: what copies the node holds and which volumes use them. It is
 * what `warmcachectl status` shows to a person on the node.
 */
#include "csi/csi.h"
#include "base/macros.h"
#include "rpc/pbutil.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

/* A partial copy that a fill is working on now shows that fill's progress. */
static void merge_fill(json_t *copy, json_t *fills)
{
    size_t i;
    json_t *f;
    const char *cid = json_string_value(json_object_get(copy, "content_id")) ?: "";
    json_array_foreach(fills, i, f) {
        if (!streq(json_string_value(json_object_get(f, "content_id")) ?: "", cid))
            continue;
        json_object_set_new(copy, "state", json_string("filling"));
        json_object_set(copy, "source", json_object_get(f, "source"));
        json_object_set(copy, "bytes", json_object_get(f, "bytes_total"));
        json_object_set(copy, "files", json_object_get(f, "files_total"));
        json_object_set(copy, "bytes_done", json_object_get(f, "bytes_done"));
        json_object_set(copy, "files_done", json_object_get(f, "files_done"));
        json_object_set(copy, "message", json_object_get(f, "message"));
    }
}

static int add_copy(Warmcache__Admin__V1__StatusResponse *resp, json_t *o)
{
    Warmcache__Admin__V1__Copy *cp = pb_new(&warmcache__admin__v1__copy__descriptor);
    if (!cp)
        return -ENOMEM;
    resp->copies[resp->n_copies++] = cp;
    const char *state = json_string_value(json_object_get(o, "state")) ?: "";
    cp->content_id = xstrdup(json_string_value(json_object_get(o, "content_id")));
    cp->source = xstrdup(json_string_value(json_object_get(o, "source")));
    cp->state = xstrdup(state);
    cp->bytes_total = (uint64_t)json_integer_value(json_object_get(o, "bytes"));
    cp->files_total = (uint64_t)json_integer_value(json_object_get(o, "files"));
    if (streq(state, "ready")) {
        cp->bytes_done = cp->bytes_total;
        cp->files_done = cp->files_total;
    } else {
        cp->bytes_done = (uint64_t)json_integer_value(json_object_get(o, "bytes_done"));
        cp->files_done = (uint64_t)json_integer_value(json_object_get(o, "files_done"));
    }
    cp->last_used_unix = json_integer_value(json_object_get(o, "last_used"));
    cp->fetched_bytes = (uint64_t)json_integer_value(json_object_get(o, "fetched_bytes"));
    cp->message = xstrdup(json_string_value(json_object_get(o, "message")) ?: "");
    return cp->content_id && cp->source && cp->state && cp->message ? 0 : -ENOMEM;
}

static int add_volume(void *ctx, struct vol_record *rec)
{
    Warmcache__Admin__V1__StatusResponse *resp = ctx;
    Warmcache__Admin__V1__StagedVolume **nv = realloc(resp->volumes, (resp->n_volumes + 1) * sizeof(*nv));
    Warmcache__Admin__V1__StagedVolume *v = nv ? pb_new(&warmcache__admin__v1__staged_volume__descriptor) : NULL;
    if (nv)
        resp->volumes = nv;
    if (!v)
        return -ENOMEM;
    resp->volumes[resp->n_volumes++] = v;
    v->volume_id = xstrdup(rec->volume_id);
    v->content_id = xstrdup(rec->content_id[0] || !rec->n_targets ? rec->content_id : rec->targets[0].content_id);
    v->staging_path = xstrdup(rec->staging_path);
    if (rec->n_targets && !(v->targets = calloc(rec->n_targets, sizeof(char *))))
        return -ENOMEM;
    for (size_t i = 0; i < rec->n_targets; i++)
        if (!(v->targets[v->n_targets++] = xstrdup(rec->targets[i].path)))
            return -ENOMEM; /* counted: the reply's free takes the NULL */
    return v->volume_id && v->content_id && v->staging_path ? 0 : -ENOMEM;
}

int admin_status(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp, struct rpc_call *call,
                 struct wc_error *e)
{
    struct csi_ctx *c = ctx;
    if (!c->node)
        return wc_err(e, -EOPNOTSUPP, "status is served by the node plugin");
    Warmcache__Admin__V1__StatusResponse *resp _cleanup_pb_ =
        pb_new(&warmcache__admin__v1__status_response__descriptor);
    if (!resp || !(resp->node_id = xstrdup(c->node_id)) || !(resp->store_root = xstrdup(c->store->root)))
        return -ENOMEM;
    struct statvfs vfs;
    if (statvfs(c->store->root, &vfs) == 0) {
        resp->store_total_bytes = (uint64_t)vfs.f_blocks * vfs.f_frsize;
        resp->store_free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    }
    resp->store_evictable_bytes = store_evictable_bytes(c->store);
    resp->bytes_fetched_total = atomic_load(&c->jobs.fetched_total);
    json_t *copies _cleanup_json_ = store_list(c->store);
    json_t *fills _cleanup_json_ = jobs_status(&c->jobs);
    size_t i;
    json_t *o;
    json_array_foreach(copies, i, o)
        merge_fill(o, fills);
    if (json_array_size(copies) && !(resp->copies = calloc(json_array_size(copies), sizeof(void *))))
        return -ENOMEM;
    json_array_foreach(copies, i, o)
        if (add_copy(resp, o) < 0)
            return -ENOMEM;

    if (volumes_each(c->volumes, add_volume, resp) == -ENOMEM)
        return -ENOMEM;
    /* a copy's users: the mounts that may show it (staging and targets) */
    for (size_t k = 0; k < resp->n_copies; k++)
        resp->copies[k]->refs = volumes_refs(c->volumes, resp->copies[k]->content_id);
    *ret_resp = &TAKE_PTR(resp)->base;
    return 0;
}

int admin_evict(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp, struct rpc_call *call,
                struct wc_error *e)
{
    struct csi_ctx *c = ctx;
    const Warmcache__Admin__V1__EvictRequest *q = (const void *)req;
    if (!c->node)
        return wc_err(e, -EOPNOTSUPP, "eviction is served by the node plugin");
    const char *cid = q->content_id ? q->content_id : "";
    if (strlen(cid) != CONTENT_ID_LEN || strspn(cid, "0123456789abcdef") != CONTENT_ID_LEN)
        return wc_err(e, -EINVAL, "content id \"%.40s\" is not one (32 hex digits, as warmcachectl status shows)",
                      cid);
    /* the reply first: a copy evicted must not be answered "out of memory" */
    Warmcache__Admin__V1__EvictResponse *resp _cleanup_pb_ = pb_new(&warmcache__admin__v1__evict_response__descriptor);
    if (!resp)
        return -ENOMEM;
    uint64_t freed = 0;
    int r = store_evict(c->store, cid, &freed, e);
    if (r < 0)
        return r;
    resp->freed_bytes = freed;
    *ret_resp = &TAKE_PTR(resp)->base;
    return 0;
}
