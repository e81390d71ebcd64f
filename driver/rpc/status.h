/* The one table from internal error codes (negative errno) to gRPC status. */
#pragma once

#include <grpc/status.h>

grpc_status_code rpc_status_from_errno(int code);
const char *rpc_status_name(grpc_status_code s);
