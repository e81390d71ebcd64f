/* Pre-warming on nodes whose labels match a PV's prewarm selector (prewarm.c). */
#pragma once

#include "csi/csi.h"

struct prewarmer;

int prewarm_start(struct csi_ctx *c, struct prewarmer **ret, struct wc_error *e);
void prewarm_stop(struct prewarmer *p);
