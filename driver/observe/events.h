/*
 * Event aggregation, as the kubelet does it: repeated events of one reason
 * on one object are one series whose count goes up, so a long fill shows one
 * "FillProgress" line with the latest progress, not hundreds; and a series
 * is posted at most so often. A bounded table (the oldest series is
 * forgotten first), keyed by whatever names object and reason; who posts the
 * events (kube/events.c) is not its concern.
 */
#pragma once

#include <pthread.h>
#include <stddef.h>

#define OBS_SERIES_MAX 512  /* series remembered */
#define OBS_SERIES_NAME 320 /* the name a series is posted under */

struct obs_series_slot {
    char key[65];
    char name[OBS_SERIES_NAME];
    int count;
    double last; /* monotonic seconds of the last due(); 0: never */
};

struct obs_series {
    pthread_mutex_t lock;
    struct obs_series_slot s[OBS_SERIES_MAX];
    unsigned next;
};

void obs_series_init(struct obs_series *t);
void obs_series_fini(struct obs_series *t);

/* 1 if the series of key was not due in the last min_interval seconds
 * (and marks it due now), else 0. */
int obs_series_due(struct obs_series *t, const char *key, double min_interval);

/* One more event of the series: its count (1 for a new series) and its
 * name, made by name_fn(ctx, key, out, n) the first time. */
int obs_series_add(struct obs_series *t, const char *key, void (*name_fn)(void *ctx, const char *key, char *out,
                   size_t n), void *ctx, char ret_name[OBS_SERIES_NAME]);
