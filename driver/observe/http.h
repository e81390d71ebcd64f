/*
 * The plugins' own HTTP port (--metrics-address): GET /metrics answers the
 * registry's exposition text, GET /healthz 200 while healthy() says so (what
 * kubelet's liveness probe asks when the livenessprobe sidecar is not used),
 * anything else 404. One thread, one connection at a time (a scrape every
 * few seconds), a 2 s timeout on each so a stuck client cannot hold it.
 * More: docs/internals/observe.md.
 */
#pragma once

#include "base/error.h"
#include "observe/metrics.h"

struct obs_http;

/* addr: "[host]:port", e.g. ":9810" or "127.0.0.1:9810". */
int obs_http_start(const char *addr, const struct obs_registry *reg, int (*healthy)(void *ctx), void *ctx,
                   struct obs_http **ret, struct wc_error *e);
void obs_http_stop(struct obs_http *h);
