/*
 * The controller's memory of the volumes it created: enough to answer a
 * repeated CreateVolume with the same reply, to refuse an incompatible one
 * with ALREADY_EXISTS, and to know which ids exist. One JSON file per volume
 * under a state directory when one is given (written atomically), else kept
 * in memory only.
 *
 * Nothing on a node depends on it: the volume context carries everything a
 * node needs, so losing it costs only the ALREADY_EXISTS check.
 */
#pragma once

#include <jansson.h>
#include <pthread.h>

#include "base/error.h"

struct registry {
    pthread_mutex_t lock;
    char *dir;      /* NULL: memory only */
    json_t *vols;   /* volume id -> record */
};

int registry_open(const char *dir, struct registry **ret, struct wc_error *e);
void registry_free(struct registry *r);
/* A new reference to the record, or NULL. */
json_t *registry_get(struct registry *r, const char *volume_id);
int registry_put(struct registry *r, const char *volume_id, json_t *record, struct wc_error *e);
int registry_delete(struct registry *r, const char *volume_id, struct wc_error *e);
