/* See events.h. */
#include "kube/events.h"
#include "base/fsutil.h"
#include "base/macros.h"
#include "base/units.h"
#include "observe/events.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MESSAGE_MAX 1000 /* the API takes about 1 KiB */

struct kube_events {
    struct kube *k;
    char *component, *host;
    struct obs_series series; /* one Event per object and reason, its count going up */
};

struct kube_events *kube_events_new(struct kube *k, const char *component, const char *host)
{
    struct kube_events *ev = calloc(1, sizeof(*ev));
    if (!ev)
        return NULL;
    ev->k = k;
    ev->component = strdup(component);
    ev->host = strdup(host);
    obs_series_init(&ev->series);
    return ev;
}

void kube_events_free(struct kube_events *ev)
{
    if (!ev)
        return;
    free(ev->component);
    free(ev->host);
    obs_series_fini(&ev->series);
    free(ev);
}

/* One series per object, reason and node: two nodes filling one PVC post
 * two Events, not one that each overwrites. */
static void key_of(const struct kube_events *ev, const struct kube_ref *o, const char *reason,
                   char out[SHA256_HEX_LEN + 1])
{
    char buf[1500];
    int n = snprintf(buf, sizeof(buf), "%s/%s/%s/%s/%s/%s", o->kind, o->ns ? o->ns : "", o->name,
                     o->uid ? o->uid : "", reason, ev->host);
    sha256_hex(buf, n > 0 && (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1, out);
}

int kube_events_due(struct kube_events *ev, const struct kube_ref *obj, const char *reason, double min_interval)
{
    char key[SHA256_HEX_LEN + 1];
    key_of(ev, obj, reason, key);
    return obs_series_due(&ev->series, key, min_interval);
}

/* Like the kubelet's: <object>.<unique suffix>. */
static void event_name(void *ctx, const char *key, char *out, size_t n)
{
    const struct kube_ref *obj = ctx;
    snprintf(out, n, "%.200s.%.16s", obj->name, key);
}

static void rfc3339(char out[32])
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int kube_event(struct kube_events *ev, const struct kube_ref *obj, const char *type, const char *reason,
               const char *message, struct wc_error *e)
{
    char key[SHA256_HEX_LEN + 1], now[32], msg[MESSAGE_MAX + 1], path[512], ns_esc[200], name_esc[960];
    key_of(ev, obj, reason, key);
    rfc3339(now);
    snprintf(msg, sizeof(msg), "%s", message);
    const char *ns = obj->ns && *obj->ns ? obj->ns : "default";
    if (kube_escape(ns, ns_esc, sizeof(ns_esc)) < 0)
        return wc_err(e, -EINVAL, "namespace %.60s... is too long for an event", ns);

    char name[OBS_SERIES_NAME];
    int count = obs_series_add(&ev->series, key, event_name, (void *)obj, name);
    if (kube_escape(name, name_esc, sizeof(name_esc)) < 0) /* cannot happen: 320 bytes escape into 960 */
        return wc_err(e, -EINVAL, "event name %.60s... is too long", name);

    int r;
    if (count > 1) {
        json_t *patch _cleanup_json_ = json_pack("{s:i, s:s, s:s}", "count", count, "message", msg, "lastTimestamp", now);
        snprintf(path, sizeof(path), "/api/v1/namespaces/%s/events/%s", ns_esc, name_esc);
        r = kube_merge_patch(ev->k, path, patch, NULL, e);
        if (r != -ENOENT) /* gone (events expire after an hour): post it again */
            return r;
        count = 1;
    }
    json_t *inv = json_pack("{s:s, s:s, s:s}", "kind", obj->kind, "apiVersion", obj->api_version ? obj->api_version : "v1",
                            "name", obj->name);
    if (obj->ns && *obj->ns)
        json_object_set_new(inv, "namespace", json_string(obj->ns));
    if (obj->uid && *obj->uid)
        json_object_set_new(inv, "uid", json_string(obj->uid));
    json_t *body _cleanup_json_ = json_pack(
        "{s:s, s:s, s:{s:s, s:s}, s:o, s:s, s:s, s:s, s:{s:s, s:s}, s:s, s:s, s:i, s:s, s:s}", "apiVersion", "v1",
        "kind", "Event", "metadata", "name", name, "namespace", ns, "involvedObject", inv, "reason", reason, "message",
        msg, "type", type, "source", "component", ev->component, "host", ev->host, "firstTimestamp", now,
        "lastTimestamp", now, "count", count, "reportingComponent", ev->component, "reportingInstance", ev->host);
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/events", ns_esc);
    r = kube_post(ev->k, path, body, NULL, e);
    if (r == -EEXIST) { /* posted before a restart of ours: take it over */
        json_t *patch _cleanup_json_ = json_pack("{s:s, s:s, s:s}", "message", msg, "lastTimestamp", now, "type", type);
        snprintf(path, sizeof(path), "/api/v1/namespaces/%s/events/%s", ns_esc, name_esc);
        r = kube_merge_patch(ev->k, path, patch, NULL, e);
    }
    return r;
}
