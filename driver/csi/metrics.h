/* Prometheus metrics of the plugin over HTTP (metrics.c). */
#pragma once

#include "csi/csi.h"

struct metrics_server;

/* addr: "[host]:port", e.g. ":9809". */
int metrics_start(struct csi_ctx *c, const char *addr, struct metrics_server **ret, struct wc_error *e);
void metrics_stop(struct metrics_server *m);

/* The exposition text (malloc'd). */
char *metrics_render(struct csi_ctx *c);
