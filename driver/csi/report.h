/*
 * What the node plugin tells Kubernetes, off the CSI call path: a thread
 * with a queue, so a slow or unreachable API server never delays a mount.
 *
 * - Events on the PVC and on the pods of this node that use it (found when
 *   the volume is staged): FillStarted, FillProgress (at most every 5 s per
 *   object, aggregated into one event), CacheReady, FillFailed (Warning),
 *   CacheHit when a stage finds the copy already here.
 * - On the PV, annotations: warmcache.csi.dev/warm-nodes (the nodes holding
 *   a ready copy) and warmcache.csi.dev/content-id.
 * - On the Node, a label per ready copy: content.warmcache.csi.dev/<content
 *   id>=ready, for node affinity towards warm nodes.
 * - Both taken back when the copy leaves the node (evicted, set aside as
 *   damaged, or gone while the plugin was down): swept at start, after every
 *   removal, and every 10 minutes.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "cache/jobs.h"
#include "kube/client.h"

struct reporter;

int reporter_start(struct kube *k, struct jobs *f, const char *node, struct reporter **ret, struct wc_error *e);
void reporter_stop(struct reporter *r);

/* jobs.notify: queues the report's events. */
void reporter_notify(void *ctx, enum fill_event ev, const struct fill_report *rep);

/* Whom to tell about a volume: its PVC and PV (from the volume context that
 * csi-provisioner's --extra-create-metadata fills), and through the PVC the
 * pods on this node that mount it. No I/O here: the reporter's thread looks
 * them up (uids, pods) when it delivers. A JSON array; empty when nothing is
 * known. */
json_t *reporter_targets(struct reporter *r, const char *pvc_ns, const char *pvc_name, const char *pv_name);

/* Queues one event to every target. */
void reporter_event(struct reporter *r, json_t *targets, const char *type, const char *reason, const char *message);

/* The warm-nodes annotation (a comma-separated list) with node added
 * (warm) or taken out: 1 and the new value in *ret (free it), 0 when it
 * already says so. Names are kept whole, however long the list. */
int warm_nodes_edit(const char *have, const char *node, bool warm, char **ret);

/* Appends {kind: Pod, namespace, name, uid} to out for each pod of a pod
 * list (as the API server sent it: untrusted JSON) with a volume from the
 * claim. */
void pods_mounting(json_t *pods, const char *ns, const char *claim, json_t *out);
