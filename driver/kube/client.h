/*
 * A small Kubernetes API client on libcurl and jansson: enough for a CSI
 * plugin to post events, annotate PVs, label its node and read PVCs.
 *
 * Configuration: in the cluster, the service account (KUBERNETES_SERVICE_HOST
 * and _PORT, the token and CA under /var/run/secrets/kubernetes.io/
 * serviceaccount); for development and tests, an API server URL, a token file
 * and a CA file given as flags. The token file is read again for every
 * request: the kubelet rotates projected tokens in place.
 *
 * Every call is synchronous and thread-safe (a curl handle per call; one
 * shared connection cache). Failures come back as a negative errno and a
 * message that says what to check: -EACCES for 401/403 (naming the RBAC verb
 * and resource), -ENOENT for 404, -EEXIST for 409 AlreadyExists, -EAGAIN for
 * 409 Conflict and 429/5xx.
 * More: docs/internals/kube.md.
 */
#pragma once

#include <jansson.h>
#include <stdatomic.h>

#include "base/error.h"

struct kube_config {
    const char *server;      /* "https://10.100.0.1:443" */
    const char *token_file;
    const char *ca_file;     /* NULL: the system's CAs */
    char server_buf[300];    /* kube_config_in_cluster: where server points */
};

struct kube;

/* The in-cluster configuration, or -ENOENT when not running in a pod. */
int kube_config_in_cluster(struct kube_config *ret, struct wc_error *e);

int kube_open(const struct kube_config *cfg, struct kube **ret, struct wc_error *e);
void kube_close(struct kube *k);

/* method path [body]: the parsed JSON reply in *ret (may be NULL). verb and
 * what name the call in messages ("patch", "persistentvolumes pv-1"). */
int kube_call(struct kube *k, const char *method, const char *path, const json_t *body, const char *content_type,
              json_t **ret, struct wc_error *e);

int kube_get(struct kube *k, const char *path, json_t **ret, struct wc_error *e);
int kube_post(struct kube *k, const char *path, const json_t *body, json_t **ret, struct wc_error *e);
/* RFC 7386 JSON merge patch. */
int kube_merge_patch(struct kube *k, const char *path, const json_t *patch, json_t **ret, struct wc_error *e);

/* Percent-encodes a path segment or query value (uri_encode): -ENAMETOOLONG
 * if out is too small, never a truncated name. */
__attribute__((warn_unused_result)) int kube_escape(const char *in, char *out, size_t n);

/* Lists a collection (path without a query) in pages of KUBE_LIST_PAGE,
 * following the continue token, handing each item to fn (< 0 stops with
 * that value); *ret_rv (optional, at least 64 bytes) gets the list's
 * resourceVersion to watch from. Memory is one page, however many objects. */
#define KUBE_LIST_PAGE 250
int kube_list(struct kube *k, const char *path, int (*fn)(void *ctx, json_t *item), void *ctx, char *ret_rv,
              struct wc_error *e);

/* Watches path (a collection, no query) from resource_version for
 * timeout_s seconds (the server's timeoutSeconds): calls fn with each
 * event's type ("ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR") and
 * object until the server ends the stream (0), *stop is set (-ECANCELED),
 * or fn returns < 0 (that value). A server that keeps the stream open
 * past timeout_s (and a little grace) without ending it is cut (-EAGAIN). */
typedef int (*kube_watch_fn)(void *ctx, const char *type, json_t *object);
int kube_watch(struct kube *k, const char *path, const char *resource_version, unsigned timeout_s, kube_watch_fn fn,
               void *ctx, const atomic_int *stop, struct wc_error *e);

/* The watch stream's framing, for kube_watch and tests: one JSON event per
 * line, in chunks cut anywhere; each {type, object} goes to fn. feed returns
 * 0, fn's first negative value, or -EFBIG for a line over 8 MiB (and keeps
 * returning it). */
struct kube_watch_lines;
struct kube_watch_lines *kube_watch_lines_new(kube_watch_fn fn, void *ctx);
int kube_watch_lines_feed(struct kube_watch_lines *w, const char *d, size_t len);
void kube_watch_lines_free(struct kube_watch_lines *w);
