/*
 * Pre-warming: a node plugin fills copies before any pod asks, for every
 * warmcache PV whose `prewarm` node selector (a StorageClass parameter or a
 * PVC annotation, carried in the PV's volume attributes) matches this node's
 * labels. It lists the PVs, then watches them from the list's
 * resourceVersion; the stream ends every few minutes (or on an error, with
 * backoff) and the loop lists again, which also picks up new node labels.
 *
 * A pre-warm fill goes through the same fills (and so the same store,
 * eviction and journal) as a NodeStage: a pod arriving meanwhile joins it.
 * It has no CSI secrets, so it signs with the plugin's own credentials
 * (IRSA, Pod Identity, instance role); PVs whose class names a node-stage
 * Secret are left to NodeStage.
 */
#include "csi/prewarm.h"
#include "base/log.h"
#include "base/macros.h"
#include "csi/params.h"
#include "csi/report.h"
#include "kube/selector.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DRIVER "warmcache.csi.dev"

struct prewarmer {
    struct csi_ctx *c;
    pthread_t thread;
    atomic_int stop;
    json_t *labels;   /* this node's, from the last list */
    json_t *started;  /* PV name -> listing digest already started */
};

enum prewarm_verdict prewarm_judge(json_t *pv, json_t *node_labels, struct volume_context *vc, struct wc_error *e)
{
    json_t *spec = json_object_get(pv, "spec"), *csi = json_object_get(spec, "csi");
    const char *driver = json_string_value(json_object_get(csi, "driver"));
    const char *name = json_string_value(json_object_get(json_object_get(pv, "metadata"), "name"));
    json_t *attrs = json_object_get(csi, "volumeAttributes");
    const char *sel = json_string_value(json_object_get(attrs, CTX_PREWARM));
    const char *phase = json_string_value(json_object_get(json_object_get(pv, "status"), "phase"));
    if (!driver || !streq(driver, DRIVER) || !name || !sel || !json_is_object(attrs) ||
        (phase && (streq(phase, "Released") || streq(phase, "Failed"))))
        return PREWARM_NO; /* a released volume's pods are gone: nothing to warm for */
    if (selector_matches(sel, node_labels) != 1)
        return PREWARM_NO;
    if (json_object_get(csi, "nodeStageSecretRef"))
        return PREWARM_SECRET;
    /* the volume attributes as a volume context (the strings stay the PV's) */
    size_t n = json_object_size(attrs), i = 0;
    _cleanup_free_ struct kv *kv = calloc(n ? n : 1, sizeof(*kv));
    const char *k;
    json_t *v;
    if (!kv)
        return wc_err(e, -ENOMEM, "out of memory"), PREWARM_BAD;
    json_object_foreach(attrs, k, v)
        kv[i++] = (struct kv){k, json_string_value(v) ? json_string_value(v) : ""};
    return volctx_parse(kv, n, vc, e) < 0 ? PREWARM_BAD : PREWARM_FILL;
}

static void consider(struct prewarmer *p, json_t *pv)
{
    json_t *spec = json_object_get(pv, "spec");
    json_t *attrs = json_object_get(json_object_get(spec, "csi"), "volumeAttributes");
    const char *name = json_string_value(json_object_get(json_object_get(pv, "metadata"), "name"));
    const char *digest = json_string_value(json_object_get(attrs, CTX_DIGEST));
    const char *seen = name ? json_string_value(json_object_get(p->started, name)) : NULL;
    if (seen && digest && streq(seen, digest))
        return;
    struct volume_context vc;
    struct wc_error e;
    switch (prewarm_judge(pv, p->labels, &vc, &e)) {
    case PREWARM_NO:
        return;
    case PREWARM_SECRET:
        log_json(LOG_INFO, "not pre-warming: the volume's credentials come from a node-stage Secret",
                 json_pack("{s:s}", "pv", name));
        json_object_set_new(p->started, name, json_string(digest ? digest : ""));
        return;
    case PREWARM_BAD:
        log_json(LOG_WARN, "not pre-warming a PV with bad attributes", json_pack("{s:s, s:s}", "pv", name, "error",
                 e.msg));
        json_object_set_new(p->started, name, json_string(digest ? digest : ""));
        return;
    case PREWARM_FILL:
        break;
    }
    struct source_use use = {.spec = &vc.src, .allow_plain_http = vc.allow_plain_http};
    if (policy_check(&p->c->policy, &use, &e) < 0) {
        log_json(LOG_WARN, "not pre-warming a PV whose source this node does not serve",
                 json_pack("{s:s, s:s}", "pv", name, "error", e.msg));
        json_object_set_new(p->started, name, json_string(digest ? digest : ""));
        return;
    }
    json_t *claim = json_object_get(spec, "claimRef");
    json_t *targets _cleanup_json_ = reporter_targets(p->c->reporter, json_string_value(json_object_get(claim,
        "namespace")), json_string_value(json_object_get(claim, "name")), name);
    struct fill_request rq = {
        .spec = &vc.src, .pinned = vc.digest, .follow = vc.policy == CHANGE_FOLLOW, .pinned_objects = vc.objects,
        .pinned_bytes = vc.bytes, .targets = targets,
    };
    char cid[CONTENT_ID_LEN + 1];
    int r = jobs_ensure(&p->c->jobs, &rq, 0, NULL, cid, &e); /* starts it; does not wait */
    log_json(LOG_INFO, "pre-warming", json_pack("{s:s, s:s, s:s, s:s}", "pv", name, "selector", vc.prewarm ?
             vc.prewarm : "", "source", vc.src.url, "state", r == 0 ? "already here" : e.msg));
    json_object_set_new(p->started, name, json_string(digest ? digest : ""));
}

static int on_event(void *ctx, const char *type, json_t *obj)
{
    struct prewarmer *p = ctx;
    if (streq(type, "ERROR"))
        return -ESTALE; /* usually 410 Gone: list again */
    if (streq(type, "ADDED") || streq(type, "MODIFIED"))
        consider(p, obj);
    return 0;
}

static int consider_item(void *ctx, json_t *pv)
{
    struct prewarmer *p = ctx;
    if (atomic_load(&p->stop))
        return -ECANCELED;
    consider(p, pv);
    return 0;
}

static int round_once(struct prewarmer *p, struct wc_error *e)
{
    struct kube *k = p->c->kube;
    char path[600], node[300], rv[64];
    if (kube_escape(p->c->node_id, node, sizeof(node)) < 0)
        return wc_err(e, -EINVAL, "node name %.60s... is too long to look up", p->c->node_id);
    snprintf(path, sizeof(path), "/api/v1/nodes/%s", node);
    json_t *n _cleanup_json_ = NULL;
    int r = kube_get(k, path, &n, e);
    if (r < 0)
        return r;
    json_decref(p->labels);
    p->labels = json_incref(json_object_get(json_object_get(n, "metadata"), "labels"));
    if ((r = kube_list(k, "/api/v1/persistentvolumes", consider_item, p, rv, e)) < 0)
        return r == -ECANCELED ? 0 : r;
    r = kube_watch(k, "/api/v1/persistentvolumes", rv, p->c->kube_watch_timeout_s, on_event, p, &p->stop, e);
    return r == -ESTALE ? 0 : r;
}

static void *prewarm_main(void *arg)
{
    struct prewarmer *p = arg;
    unsigned backoff = 1;
    while (!atomic_load(&p->stop)) {
        struct wc_error e;
        int r = round_once(p, &e);
        if (atomic_load(&p->stop))
            break;
        if (r == 0) {
            backoff = 1;
            continue;
        }
        log_json(LOG_WARN, "pre-warm watch", json_pack("{s:s, s:i}", "error", e.msg, "retry_in_s", backoff));
        for (unsigned s = 0; s < backoff * 10 && !atomic_load(&p->stop); s++)
            usleep(100 * 1000);
        backoff = backoff < 30 ? backoff * 2 : 30;
    }
    return NULL;
}

int prewarm_start(struct csi_ctx *c, struct prewarmer **ret, struct wc_error *e)
{
    struct prewarmer *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->c = c;
    p->started = json_object();
    if (pthread_create(&p->thread, NULL, prewarm_main, p) != 0) {
        json_decref(p->started);
        free(p);
        return wc_err(e, -EAGAIN, "cannot start the pre-warm thread");
    }
    *ret = p;
    return 0;
}

void prewarm_stop(struct prewarmer *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, 1);
    pthread_join(p->thread, NULL);
    json_decref(p->labels);
    json_decref(p->started);
    free(p);
}
