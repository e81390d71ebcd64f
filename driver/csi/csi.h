/*
 * The CSI layer: thin by design. Each handler validates its request exactly
 * as the spec asks, takes the volume lock, calls into cache/ and storage/,
 * and builds the reply. Errors are returned as values; rpc/ maps them to
 * gRPC codes and logs each call once. docs/internals/csi.md.
 */
#pragma once

struct reporter;
struct obs_http;
struct prewarmer;

#include <errno.h>

#include <protobuf-c/protobuf-c.h>
#include <stdatomic.h>

#include "admin.pb-c.h"
#include "cache/jobs.h"
#include "cache/store.h"
#include "csi.pb-c.h"
#include "registration.pb-c.h"
#include "csi/locks.h"
#include "csi/policy.h"
#include "csi/registry.h"
#include "csi/volumes.h"
#include "kube/client.h"
#include "observe/metrics.h"
#include "rpc/server.h"
#include "storage/disks.h"
#include "storage/mount.h"
#include "storage/bound.h"

#define DRIVER_NAME "warmcache.csi.dev"

struct csi_config {
    int controller;          /* serve the Controller service */
    int node;                /* serve the Node service */
    const char *node_id;
    struct disk_config disks;  /* node: where the store lives (disks.h) */
    const char *state_dir;   /* controller: volume registry (optional) */
    int fill_wait_s;         /* node: how long a call waits for a fill before ABORTED */
    int high_pct, low_pct;   /* node: eviction watermarks */
    unsigned s3_connections; /* node: S3 requests in flight, shared by all fills; 0: for SOURCE_DEFAULT_GBPS */
    unsigned s3_stall_s;     /* S3 transfers stalled this long are cut and retried; 0: 30 */
    uint64_t part_size;      /* node: bytes per request; 0: the default */
    const char *kube;        /* "auto" (in-cluster when there), "off", or an API server URL */
    const char *kube_token_file, *kube_ca_file; /* with a URL */
    const char *metrics_address;  /* "[host]:port" for Prometheus, or NULL */
    /* source policy (policy.h) */
    const char *allowed_sources;  /* comma-separated URL prefixes */
    const char *inline_sources;   /* node: prefixes inline volumes may use; NULL: inline volumes off */
    int inline_node_credentials;  /* node: inline s3:// without a Secret may use the node's credentials */
    const char *kubelet_dir;      /* node: never a source (every pod's Secrets are there) */
    unsigned list_timeout_s;      /* a source's whole listing; 0: 900 */
    unsigned kube_watch_timeout_s; /* node: one PV watch; 0: 300 */
    uint64_t scratch_bytes;       /* node: bound of a writable layer the volume does not size; 0: 1 GiB */
    const char *mkfs_ext4;        /* node: formats writable layers' images where there are no quotas */
    const char *kubelet_endpoint; /* node: the CSI socket as kubelet sees it, for plugin registration */
    /* the side effects, for tests: NULL is the real thing */
    const struct mounter *mounter;     /* NULL: the kernel (mounter_libmount) */
    const struct bound_ops *bound_ops; /* NULL: project quota where enforced, else loop images */
};

struct csi_ctx {
    int controller, node;
    char *node_id;
    struct store *store;
    struct volumes *volumes;     /* node: what each volume has mounted here */
    const struct mounter *mounter;
    struct bounder bounds;       /* node: what bounds a writable layer */
    struct source_policy policy;
    uint64_t scratch_bytes;
    unsigned list_timeout_s;
    unsigned kube_watch_timeout_s;
    char *kubelet_endpoint;      /* node: registration with kubelet (registration.c), or NULL */
    struct registry *registry;
    struct jobs jobs;            /* fill jobs (cache/jobs.h) */
    int fill_wait_ms;
    struct volume_locks locks;
    atomic_int ready;
    struct kube *kube;           /* NULL: not talking to Kubernetes */
    struct reporter *reporter;   /* node: events, PV annotations, node labels */
    struct source_env *sources;  /* what every source shares: S3 counters, request budget, credentials */
    struct obs_registry metrics; /* who publishes which metrics (ctx.c) */
    struct obs_http *http;       /* --metrics-address: /metrics and /healthz */
    struct prewarmer *prewarmer; /* node, with Kubernetes: fills before pods ask */
};

int csi_ctx_init(struct csi_ctx *c, const struct csi_config *cfg, struct wc_error *e);
/* Node, at start: volume records against the mounts really there (node.c). */
void node_reconcile(struct csi_ctx *c);
void csi_ctx_fini(struct csi_ctx *c);

/* The routes: handlers by method path, and the services they belong to. */
extern const struct rpc_handler csi_handlers[];
extern const size_t csi_n_handlers;
extern const ProtobufCServiceDescriptor *const csi_services[];
extern const size_t csi_n_services;

/* Volume capability checks shared by controller and node. */
int caps_check_one(const Csi__V1__VolumeCapability *cap, struct wc_error *e);
int caps_check(Csi__V1__VolumeCapability *const *caps, size_t n, struct wc_error *e);
int caps_mode_writable(const Csi__V1__VolumeCapability *cap);

/*
 * The handlers (rpc_handler_fn): each answers one method. *ret_resp is set
 * only when the reply is whole; on error e says why and rpc/ maps it.
 */
/* identity.c */
int identity_get_plugin_info(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                             struct rpc_call *call, struct wc_error *e);
int identity_get_plugin_capabilities(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                                     struct rpc_call *call, struct wc_error *e);
int identity_probe(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp, struct rpc_call *call,
                   struct wc_error *e);
/* controller.c */
int controller_create_volume(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                             struct rpc_call *call, struct wc_error *e);
int controller_delete_volume(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                             struct rpc_call *call, struct wc_error *e);
int controller_validate_volume_capabilities(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                                            struct rpc_call *call, struct wc_error *e);
int controller_get_capabilities(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                                struct rpc_call *call, struct wc_error *e);
/* node.c */
int node_stage_volume(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp, struct rpc_call *call,
                      struct wc_error *e);
int node_unstage_volume(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp, struct rpc_call *call,
                        struct wc_error *e);
int node_publish_volume(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp, struct rpc_call *call,
                        struct wc_error *e);
int node_unpublish_volume(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                          struct rpc_call *call, struct wc_error *e);
int node_get_volume_stats(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                          struct rpc_call *call, struct wc_error *e);
int node_get_capabilities(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                          struct rpc_call *call, struct wc_error *e);
int node_get_info(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp, struct rpc_call *call,
                  struct wc_error *e);
/* admin.c */
int admin_status(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp, struct rpc_call *call,
                 struct wc_error *e);
int admin_evict(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp, struct rpc_call *call,
                struct wc_error *e);
/* registration.c */
int registration_get_info(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                          struct rpc_call *call, struct wc_error *e);
int registration_notify_status(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                               struct rpc_call *call, struct wc_error *e);
