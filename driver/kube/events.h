/*
 * Events where users look: `kubectl describe pvc` and `kubectl describe pod`.
 *
 * Like the kubelet, repeated events of one reason on one object are one
 * Event whose count goes up and whose message and lastTimestamp are
 * replaced (the series: observe/events.h), so a long fill shows one
 * "FillProgress" line with the latest progress, not hundreds. Callers
 * rate-limit (kube_events_due).
 */
#pragma once

#include "kube/client.h"

struct kube_ref {
    const char *kind;        /* "PersistentVolumeClaim", "Pod", "PersistentVolume" */
    const char *api_version; /* "v1" */
    const char *ns;          /* NULL for cluster-scoped objects (their events go to "default") */
    const char *name;
    const char *uid;         /* may be NULL */
};

struct kube_events;

struct kube_events *kube_events_new(struct kube *k, const char *component, const char *host);
void kube_events_free(struct kube_events *ev);

/* type: "Normal" or "Warning". Posts, or updates the existing event. */
int kube_event(struct kube_events *ev, const struct kube_ref *obj, const char *type, const char *reason,
               const char *message, struct wc_error *e);

/* 1 if no event of this reason on this object was posted in the last
 * min_interval seconds (and marks it as posted now). */
int kube_events_due(struct kube_events *ev, const struct kube_ref *obj, const char *reason, double min_interval);
