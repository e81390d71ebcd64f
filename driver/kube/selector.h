/*
 * Kubernetes label selectors, the string form users write in a StorageClass
 * (`prewarm: "node.kubernetes.io/instance-type in (p5.48xlarge,p4d.24xlarge)"`):
 * terms separated by commas, all of which must hold:
 *   key  !key  key=value  key==value  key!=value  key in (v1,v2)  key notin (v1,v2)
 */
#pragma once

#include <jansson.h>

#include "base/error.h"

/* 0 if sel is a well-formed selector; -EINVAL with what is wrong. */
int selector_check(const char *sel, struct wc_error *e);

/* 1 if labels (a JSON object of strings) satisfy sel, 0 if not, -EINVAL if sel is malformed. */
int selector_matches(const char *sel, json_t *labels);
