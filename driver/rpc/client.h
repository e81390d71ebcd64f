/* A minimal unary gRPC client over a unix socket, for warmcachectl and tests. */
#pragma once

#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>

#include "base/error.h"

struct rpc_client;

int rpc_client_open(const char *endpoint, struct rpc_client **ret, struct wc_error *e);
void rpc_client_close(struct rpc_client *c);

/* Calls method with req; on OK *ret_resp is an unpacked out_desc message
 * (free with protobuf_c_message_free_unpacked). On a non-OK status returns
 * -1, *ret_status holds the code and e->msg the server's message. */
int rpc_client_call(struct rpc_client *c, const char *method, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *out_desc, double timeout_s,
                    ProtobufCMessage **ret_resp, grpc_status_code *ret_status, struct wc_error *e);
