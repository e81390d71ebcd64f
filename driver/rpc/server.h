/*
 * A gRPC server on a unix socket, on gRPC C core and protobuf-c.
 *
 * Routes come from protobuf-c service descriptors: every method of every
 * service given is served; a method without a handler answers UNIMPLEMENTED.
 * Each call runs on its own worker thread (CSI calls are few but some are
 * long: a fill), up to a bound; past it a call gets RESOURCE_EXHAUSTED at
 * once rather than queueing behind fills and starving Probe.
 * More: docs/internals/rpc.md.
 */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stdatomic.h>

#include "base/error.h"

struct rpc_call;

/* A handler builds *ret_resp with heap memory only (every string, array and
 * sub-message malloc'd), so the server frees it with protobuf_c_message_free_unpacked. */
typedef int (*rpc_handler_fn)(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                              struct rpc_call *call, struct wc_error *e);

struct rpc_handler {
    const char *path; /* "/csi.v1.Node/NodeStageVolume" */
    rpc_handler_fn fn;
};

struct rpc_server_config {
    const char *endpoint;      /* unix:///path/csi.sock or /path/csi.sock */
    /* optional: a second socket (kubelet's plugin registration one), which
     * serves only the methods under also_methods ("/pluginregistration.")
     * and the first socket never serves those */
    const char *also;
    const char *also_methods;
    int max_calls;             /* concurrent calls in handlers */
    int max_message_bytes;     /* larger requests are refused by gRPC */
    int shutdown_grace_s;      /* in-flight calls get this long, then are cancelled */
    int (*ready)(void *ctx);   /* optional: called once the socket listens */
};

/* Serves until SIGTERM or SIGINT, then shuts down gracefully: no new calls,
 * in-flight calls finish (or are cancelled after the grace period), the
 * socket is removed. Returns 0 after a clean shutdown. */
int rpc_server_run(const struct rpc_server_config *cfg, const ProtobufCServiceDescriptor *const *services,
                   size_t n_services, const struct rpc_handler *handlers, size_t n_handlers, void *ctx,
                   struct wc_error *e);

/* Set when the client cancelled the call or its deadline passed. */
const atomic_int *rpc_call_cancelled(struct rpc_call *c);
/* Full method path of the call. */
const char *rpc_call_method(const struct rpc_call *c);

/* Socket path of an endpoint, or NULL if it is not a unix endpoint. */
const char *rpc_endpoint_path(const char *endpoint);
