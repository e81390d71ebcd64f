/*
 * Per-volume operation locks. CSI says a second call on a volume that is
 * still being worked on gets ABORTED (the CO retries); it must not wait, or
 * kubelet's calls pile up behind a long fill.
 */
#pragma once

#include <pthread.h>
#include <stddef.h>

#include "base/error.h"

struct volume_locks {
    pthread_mutex_t lock;
    char **held;
    size_t n, cap;
};

void vlocks_init(struct volume_locks *l);
void vlocks_fini(struct volume_locks *l);
/* 0 when taken; -EBUSY (ABORTED) with a message when another call holds it. */
int vlocks_try(struct volume_locks *l, const char *volume_id, struct wc_error *e);
void vlocks_release(struct volume_locks *l, const char *volume_id);
