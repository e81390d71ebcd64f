/*
 * The plugins' own HTTP port (--metrics-address): GET /metrics answers the
 * registry's exposition text, GET /healthz 200 while healthy() says so (what
 * kubelet's liveness probe asks when the livenessprobe sidecar is not used),
 * anything else 404. A thread per connection, each with HTTP_DEADLINE_S for
 * the whole exchange; past HTTP_CONNECTIONS at once a new connection cuts
 * the oldest short. A client that trickles its request or never reads the
 * answer cannot hold the port, nor keep the liveness probe from its answer;
 * only a flood of new connections (twice that many at once) can.
 * More: docs/internals/observe.md.
 */
#pragma once

#include "base/error.h"
#include "observe/metrics.h"

struct obs_http;

#define HTTP_CONNECTIONS 8
#define HTTP_DEADLINE_S 2

/* addr: "[host]:port", e.g. ":9810" or "127.0.0.1:9810". */
int obs_http_start(const char *addr, const struct obs_registry *reg, int (*healthy)(void *ctx), void *ctx,
                   struct obs_http **ret, struct wc_error *e);
void obs_http_stop(struct obs_http *h);
