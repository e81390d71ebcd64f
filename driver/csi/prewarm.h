/* Pre-warming on nodes whose labels match a PV's prewarm selector (prewarm.c). */
#pragma once

#include <jansson.h>

#include "csi/csi.h"
#include "csi/params.h"

struct prewarmer;

int prewarm_start(struct csi_ctx *c, struct prewarmer **ret, struct wc_error *e);
void prewarm_stop(struct prewarmer *p);

/* What a PV (as the API server sent it: untrusted JSON) asks of a node with
 * these labels. FILL: a warmcache PV, not released, whose prewarm selector
 * matches, with *vc its attributes (borrowed from pv); SECRET: it would, but
 * its credentials come from a node-stage Secret the plugin cannot read; BAD:
 * its attributes are not valid (e says why); NO: nothing to do. */
enum prewarm_verdict { PREWARM_NO, PREWARM_FILL, PREWARM_SECRET, PREWARM_BAD };
enum prewarm_verdict prewarm_judge(json_t *pv, json_t *node_labels, struct volume_context *vc, struct wc_error *e);
