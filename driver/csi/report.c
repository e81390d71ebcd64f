/* See report.h. */
#include "csi/report.h"
#include "base/log.h"
#include "base/macros.h"
#include "base/units.h"
#include "kube/events.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROGRESS_EVERY 5.0 /* seconds between progress events on one object */
#define RESOLVE_TTL 30.0   /* seconds a resolved target list is reused */
#define SWEEP_EVERY 600.0  /* seconds between sweeps for labels of copies gone unnoticed */
#define WARM_NODES "warmcache.csi.dev/warm-nodes"
#define CONTENT_ID "warmcache.csi.dev/content-id"
#define LABEL_PREFIX "content.warmcache.csi.dev/"

struct item {
    struct item *next;
    json_t *targets;
    char type[8], reason[32];
    char *message;
    char cid[CONTENT_ID_LEN + 1]; /* set for CacheReady: label the node, annotate PVs */
};

struct reporter {
    struct kube *k;
    struct kube_events *ev;
    struct jobs *jobs;
    char *node;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct item *head, **tail;
    int stopping;
    json_t *resolved;          /* targets (as JSON text) -> {at, refs}; the reporter's thread only */
    uint64_t removals_seen;    /* store->removals at the last sweep */
    double swept_at;           /* mono_s() of the last sweep; 0: none yet */
    bool pvs_swept;            /* the PVs have been swept once since the start */
};

static void queue(struct reporter *r, json_t *targets, const char *type, const char *reason, const char *message,
                  const char *cid)
{
    if (!targets || json_array_size(targets) == 0)
        return;
    struct item *it = calloc(1, sizeof(*it));
    if (!it)
        return;
    it->targets = json_deep_copy(targets);
    snprintf(it->type, sizeof(it->type), "%s", type);
    snprintf(it->reason, sizeof(it->reason), "%s", reason);
    it->message = strdup(message);
    if (cid)
        snprintf(it->cid, sizeof(it->cid), "%s", cid);
    pthread_mutex_lock(&r->lock);
    *r->tail = it;
    r->tail = &it->next;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

void reporter_event(struct reporter *r, json_t *targets, const char *type, const char *reason, const char *message)
{
    if (r)
        queue(r, targets, type, reason, message, NULL);
}

void reporter_notify(void *ctx, enum fill_event ev, const struct fill_report *rep)
{
    struct reporter *r = ctx;
    char msg[1024], b[32], rate[32];
    fmt_bytes(rep->bytes, b, sizeof(b));
    switch (ev) {
    case FILL_EVENT_STARTED:
        snprintf(msg, sizeof(msg), "filling %s (%" PRIu64 " files, %s) into the cache of node %s", rep->source,
                 rep->files, b, r->node);
        queue(r, rep->targets, "Normal", "FillStarted", msg, NULL);
        break;
    case FILL_EVENT_DONE: {
        fmt_rate(rep->seconds > 0 ? (double)rep->fetched / rep->seconds : 0, rate, sizeof(rate));
        char verified[160];
        if (strncmp(rep->source, "file://", 7) == 0) /* a file's version is its modification time */
            snprintf(verified, sizeof(verified), "size and modification time of every file, as listed");
        else
            snprintf(verified, sizeof(verified), "size and ETag of every file, S3's checksum of %" PRIu64 " of them",
                     rep->checksummed);
        snprintf(msg, sizeof(msg), "copy of %s ready on node %s: %" PRIu64 " files, %s in %.1fs (%s); verified: %s",
                 rep->source, r->node, rep->files, b, rep->seconds, rate, verified);
        queue(r, rep->targets, "Normal", "CacheReady", msg, rep->cid);
        break;
    }
    case FILL_EVENT_FAILED:
        snprintf(msg, sizeof(msg), "filling %s on node %s failed: %s", rep->source, r->node,
                 rep->message ? rep->message : "unknown error");
        queue(r, rep->targets, "Warning", "FillFailed", msg, NULL);
        break;
    }
}

/* ---- the API work, on the reporter's thread -------------------------------- */

static void ref_of(json_t *t, struct kube_ref *ref)
{
    *ref = (struct kube_ref){
        .kind = json_string_value(json_object_get(t, "kind")),
        .api_version = "v1",
        .ns = json_string_value(json_object_get(t, "namespace")),
        .name = json_string_value(json_object_get(t, "name")),
        .uid = json_string_value(json_object_get(t, "uid")),
    };
}

static void warn(const char *what, const struct wc_error *e)
{
    log_json(LOG_WARN, "kubernetes", json_pack("{s:s, s:s}", "what", what, "error", e->msg));
}

static int escape(const char *name, char *out, size_t n, struct wc_error *e)
{
    if (kube_escape(name, out, n) < 0)
        return wc_err(e, -EINVAL, "name %.60s... is too long for an API path", name);
    return 0;
}

int warm_nodes_edit(const char *have, const char *node, bool warm, char **ret)
{
    size_t hl = have ? strlen(have) : 0, nl = strlen(node);
    _cleanup_free_ char *out = malloc(hl + nl + 2);
    if (!out)
        return -ENOMEM;
    size_t o = 0;
    bool present = false;
    for (const char *t = have ? have : ""; *t;) {
        size_t len = strcspn(t, ",");
        if (len == nl && memcmp(t, node, nl) == 0)
            present = true;
        else if (len) {
            if (o)
                out[o++] = ',';
            memcpy(out + o, t, len);
            o += len;
        }
        t += len + (t[len] == ',');
    }
    if (present == warm)
        return 0;
    if (warm) {
        if (o)
            out[o++] = ',';
        memcpy(out + o, node, nl);
        o += nl;
    }
    out[o] = '\0';
    *ret = TAKE_PTR(out);
    return 1;
}

/* Adds this node to the PV's warm-nodes annotation (warm) or takes it out
 * (read, modify, write with the resourceVersion: a conflict with another
 * node is retried). */
static void annotate_pv(struct reporter *r, const char *pv, const char *cid, bool warm)
{
    char path[400], esc[300];
    struct wc_error e;
    if (escape(pv, esc, sizeof(esc), &e) < 0)
        return warn("annotating the PV", &e);
    snprintf(path, sizeof(path), "/api/v1/persistentvolumes/%s", esc);
    for (int attempt = 0; attempt < 5; attempt++) {
        json_t *obj _cleanup_json_ = NULL;
        if (kube_get(r->k, path, &obj, &e) < 0)
            return warn("reading the PV", &e);
        json_t *meta = json_object_get(obj, "metadata");
        const char *have = json_string_value(json_object_get(json_object_get(meta, "annotations"), WARM_NODES));
        _cleanup_free_ char *nodes = NULL;
        int changed = warm_nodes_edit(have, r->node, warm, &nodes);
        if (changed <= 0)
            return;
        json_t *patch _cleanup_json_ = json_pack("{s:{s:O, s:{s:o, s:s}}}", "metadata", "resourceVersion",
                                                 json_object_get(meta, "resourceVersion"), "annotations", WARM_NODES,
                                                 nodes[0] ? json_string(nodes) : json_null(), CONTENT_ID, cid);
        int rc = kube_merge_patch(r->k, path, patch, NULL, &e);
        if (rc != -EAGAIN)
            return rc < 0 ? warn("annotating the PV", &e) : (void)0;
    }
}

/* The API path of this node's object. */
static int node_path(struct reporter *r, char path[400], struct wc_error *e)
{
    char esc[300];
    if (escape(r->node, esc, sizeof(esc), e) < 0)
        return -EINVAL;
    snprintf(path, 400, "/api/v1/nodes/%s", esc);
    return 0;
}

static void label_node(struct reporter *r, const char *cid)
{
    char path[400], key[80];
    struct wc_error e;
    if (node_path(r, path, &e) < 0)
        return warn("labelling the node", &e);
    snprintf(key, sizeof(key), LABEL_PREFIX "%s", cid);
    json_t *patch _cleanup_json_ = json_pack("{s:{s:{s:s}}}", "metadata", "labels", key, "ready");
    if (kube_merge_patch(r->k, path, patch, NULL, &e) < 0)
        warn("labelling the node", &e);
}

static json_t *resolve(struct reporter *r, json_t *targets);

static void deliver(struct reporter *r, struct item *it)
{
    size_t i;
    json_t *t;
    struct wc_error e;
    json_t *targets _cleanup_json_ = resolve(r, it->targets);
    /* a copy evicted since it was ready is not advertised (the sweep would
     * have to take it back) */
    bool warm = it->cid[0] && store_content_ready(r->jobs->store, it->cid);
    json_array_foreach(targets, i, t) {
        struct kube_ref ref;
        ref_of(t, &ref);
        if (!ref.kind || !ref.name)
            continue;
        if (warm && streq(ref.kind, "PersistentVolume"))
            annotate_pv(r, ref.name, it->cid, true);
        if (kube_event(r->ev, &ref, it->type, it->reason, it->message, &e) < 0)
            warn("posting an event", &e);
    }
    if (warm)
        label_node(r, it->cid);
}

/* A PV that names this node warm for a copy no longer here loses it. */
static int unwarm_pv(void *ctx, json_t *pv)
{
    struct reporter *r = ctx;
    json_t *meta = json_object_get(pv, "metadata");
    json_t *ann = json_object_get(meta, "annotations");
    const char *cid = json_string_value(json_object_get(ann, CONTENT_ID));
    const char *name = json_string_value(json_object_get(meta, "name"));
    if (cid && name && json_is_string(json_object_get(ann, WARM_NODES)) && !store_content_ready(r->jobs->store, cid))
        annotate_pv(r, name, cid, false);
    return 0;
}

/* Takes back what advertises copies this node no longer holds (evicted, set
 * aside as damaged, or gone while the plugin was down): the Node's content
 * labels, and this node in the warm-nodes annotation of their PVs, so node
 * affinity does not steer pods to a cold node. PVs are listed only when a
 * label was stale, and until they have been once (a crash between the two). */
static void sweep(struct reporter *r)
{
    char path[400];
    struct wc_error e;
    if (node_path(r, path, &e) < 0)
        return warn("reading the node's labels", &e);
    json_t *node _cleanup_json_ = NULL;
    if (kube_get(r->k, path, &node, &e) < 0)
        return warn("reading the node's labels", &e);
    json_t *gone _cleanup_json_ = json_object(); /* label key -> null: removed by the merge patch */
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(json_object_get(node, "metadata"), "labels"), key, v) {
        if (strncmp(key, LABEL_PREFIX, strlen(LABEL_PREFIX)) != 0)
            continue;
        const char *cid = key + strlen(LABEL_PREFIX);
        if (!store_content_ready(r->jobs->store, cid))
            json_object_set_new(gone, key, json_null());
    }
    if (json_object_size(gone) > 0) {
        json_t *patch _cleanup_json_ = json_pack("{s:{s:O}}", "metadata", "labels", gone);
        if (kube_merge_patch(r->k, path, patch, NULL, &e) < 0)
            return warn("taking back the node's labels of evicted copies", &e);
        log_json(LOG_INFO, "unlabelled", json_pack("{s:I}", "copies", (json_int_t)json_object_size(gone)));
    } else if (r->pvs_swept) {
        return;
    }
    if (kube_list(r->k, "/api/v1/persistentvolumes", unwarm_pv, r, NULL, &e) < 0)
        return warn("listing PVs for their warm-nodes annotation", &e);
    r->pvs_swept = true;
}

/* Progress of running fills, to each of their targets at a bounded rate. */
static void progress(struct reporter *r)
{
    json_t *jobs _cleanup_json_ = jobs_status(r->jobs);
    size_t i, k;
    json_t *j, *t;
    json_array_foreach(jobs, i, j) {
        char msg[700]; /* several nodes fill one PVC: each says which it is */
        snprintf(msg, sizeof(msg), "node %s: %s", r->node, json_string_value(json_object_get(j, "message")) ?: "filling");
        json_t *targets _cleanup_json_ = resolve(r, json_object_get(j, "targets"));
        json_array_foreach(targets, k, t) {
            struct kube_ref ref;
            struct wc_error e;
            ref_of(t, &ref);
            if (!ref.kind || !ref.name || streq(ref.kind, "PersistentVolume") ||
                !kube_events_due(r->ev, &ref, "FillProgress", PROGRESS_EVERY))
                continue;
            if (kube_event(r->ev, &ref, "Normal", "FillProgress", msg, &e) < 0)
                warn("posting progress", &e);
        }
    }
}

static void *reporter_main(void *arg)
{
    struct reporter *r = arg;
    pthread_mutex_lock(&r->lock);
    while (!r->stopping || r->head) {
        struct item *it = r->head;
        if (it) {
            r->head = it->next;
            if (!r->head)
                r->tail = &r->head;
            pthread_mutex_unlock(&r->lock);
            deliver(r, it);
            json_decref(it->targets);
            free(it->message);
            free(it);
            pthread_mutex_lock(&r->lock);
            continue;
        }
        pthread_mutex_unlock(&r->lock);
        progress(r);
        uint64_t removals = atomic_load(&r->jobs->store->removals);
        if (r->swept_at == 0 || removals != r->removals_seen || mono_s() - r->swept_at >= SWEEP_EVERY) {
            sweep(r);
            r->removals_seen = removals;
            r->swept_at = mono_s();
        }
        pthread_mutex_lock(&r->lock);
        if (r->head || r->stopping)
            continue;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&r->cond, &r->lock, &ts);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

int reporter_start(struct kube *k, struct jobs *f, const char *node, struct reporter **ret, struct wc_error *e)
{
    struct reporter *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->k = k;
    r->jobs = f;
    r->node = strdup(node);
    r->ev = kube_events_new(k, "warmcache-node", node);
    r->tail = &r->head;
    r->resolved = json_object();
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    if (!r->node || !r->ev || pthread_create(&r->thread, NULL, reporter_main, r) != 0) {
        kube_events_free(r->ev);
        free(r->node);
        free(r);
        return wc_err(e, -ENOMEM, "cannot start the Kubernetes reporter");
    }
    *ret = r;
    return 0;
}

void reporter_stop(struct reporter *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->stopping = 1; /* what is queued is still delivered */
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    kube_events_free(r->ev);
    json_decref(r->resolved);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
    free(r->node);
    free(r);
}

/* What a volume names, without asking the API anything: resolved (uids,
 * the pods) on the reporter's thread, so no CSI call waits for the API. */
json_t *reporter_targets(struct reporter *r, const char *pvc_ns, const char *pvc_name, const char *pv_name)
{
    json_t *out = json_array();
    if (!r || !out)
        return out;
    if (pv_name && *pv_name)
        json_array_append_new(out, json_pack("{s:s, s:s}", "kind", "PersistentVolume", "name", pv_name));
    if (pvc_ns && *pvc_ns && pvc_name && *pvc_name)
        json_array_append_new(out, json_pack("{s:s, s:s, s:s}", "kind", "PersistentVolumeClaim", "namespace",
                                             pvc_ns, "name", pvc_name));
    return out;
}

/* A PV or PVC as named by reporter_targets, with its uid (events show in
 * kubectl describe only with it) and, for a PVC, the pods on this node that
 * mount it. Anything else passes as it is. */
static void resolve_one(struct reporter *r, json_t *t, json_t *out)
{
    struct wc_error e;
    char path[700], ns[300], name[300], node[300];
    const char *kind = json_string_value(json_object_get(t, "kind"));
    const char *tname = json_string_value(json_object_get(t, "name"));
    const char *tns = json_string_value(json_object_get(t, "namespace"));
    if (!kind || !tname || json_object_get(t, "uid") || (!streq(kind, "PersistentVolume") &&
                                                        !streq(kind, "PersistentVolumeClaim"))) {
        json_array_append(out, t);
        return;
    }
    if (escape(tname, name, sizeof(name), &e) < 0)
        return warn("reading the PV or PVC", &e);
    json_t *obj _cleanup_json_ = NULL;
    if (streq(kind, "PersistentVolume")) {
        snprintf(path, sizeof(path), "/api/v1/persistentvolumes/%s", name);
        if (kube_get(r->k, path, &obj, &e) < 0)
            return warn("reading the PV", &e);
        json_array_append_new(out, json_pack("{s:s, s:s, s:O*}", "kind", kind, "name", tname, "uid",
                                             json_object_get(json_object_get(obj, "metadata"), "uid")));
        return;
    }
    if (!tns)
        return;
    if (escape(tns, ns, sizeof(ns), &e) < 0)
        return warn("reading the PVC", &e);
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/persistentvolumeclaims/%s", ns, name);
    if (kube_get(r->k, path, &obj, &e) < 0)
        return warn("reading the PVC", &e);
    json_array_append_new(out, json_pack("{s:s, s:s, s:s, s:O*}", "kind", kind, "namespace", tns, "name", tname,
                                         "uid", json_object_get(json_object_get(obj, "metadata"), "uid")));
    char sel[400];
    snprintf(sel, sizeof(sel), "spec.nodeName=%s", r->node);
    if (escape(sel, node, sizeof(node), &e) < 0)
        return warn("listing the pods of the node", &e);
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods?fieldSelector=%s", ns, node);
    json_t *pods _cleanup_json_ = NULL;
    if (kube_get(r->k, path, &pods, &e) < 0)
        return warn("listing the pods of the node", &e);
    pods_mounting(pods, tns, tname, out);
}

void pods_mounting(json_t *pods, const char *ns, const char *claim, json_t *out)
{
    size_t i, k;
    json_t *p, *v;
    json_array_foreach(json_object_get(pods, "items"), i, p) {
        json_t *meta = json_object_get(p, "metadata");
        json_t *name = json_object_get(meta, "name");
        if (!json_is_string(name))
            continue;
        json_array_foreach(json_object_get(json_object_get(p, "spec"), "volumes"), k, v) {
            const char *c = json_string_value(json_object_get(json_object_get(v, "persistentVolumeClaim"),
                                                              "claimName"));
            if (c && streq(c, claim)) {
                json_t *uid = json_object_get(meta, "uid");
                json_array_append_new(out, json_pack("{s:s, s:s, s:O, s:O*}", "kind", "Pod", "namespace", ns,
                                                     "name", name, "uid", json_is_string(uid) ? uid : NULL));
                break;
            }
        }
    }
}

/* The targets, resolved; remembered for RESOLVE_TTL seconds (progress comes
 * every few seconds) so that a pod created later is still found. Only the
 * reporter's thread calls this. */
static json_t *resolve(struct reporter *r, json_t *targets)
{
    _cleanup_free_ char *key = json_dumps(targets, JSON_COMPACT | JSON_SORT_KEYS);
    json_t *hit = key ? json_object_get(r->resolved, key) : NULL;
    double now = mono_s();
    if (hit && now - json_real_value(json_object_get(hit, "at")) < RESOLVE_TTL)
        return json_incref(json_object_get(hit, "refs"));
    json_t *out = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(targets, i, t)
        resolve_one(r, t, out);
    if (key) {
        if (json_object_size(r->resolved) > 256)
            json_object_clear(r->resolved);
        json_object_set_new(r->resolved, key, json_pack("{s:f, s:O}", "at", now, "refs", out));
    }
    return out;
}
