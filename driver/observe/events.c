/* See events.h. */
#include "observe/events.h"
#include "base/macros.h"
#include "base/units.h"

#include <stdio.h>
#include <string.h>

void obs_series_init(struct obs_series *t)
{
    memset(t, 0, sizeof(*t));
    pthread_mutex_init(&t->lock, NULL);
}

void obs_series_fini(struct obs_series *t)
{
    pthread_mutex_destroy(&t->lock);
}

/* The slot of key, or the oldest one recycled; under the lock. */
static struct obs_series_slot *slot_locked(struct obs_series *t, const char *key)
{
    for (unsigned i = 0; i < OBS_SERIES_MAX; i++)
        if (streq(t->s[i].key, key))
            return &t->s[i];
    struct obs_series_slot *s = &t->s[t->next++ % OBS_SERIES_MAX];
    *s = (struct obs_series_slot){0};
    snprintf(s->key, sizeof(s->key), "%s", key);
    return s;
}

int obs_series_due(struct obs_series *t, const char *key, double min_interval)
{
    pthread_mutex_lock(&t->lock);
    struct obs_series_slot *s = slot_locked(t, key);
    double now = mono_s();
    int due = s->last == 0 || now - s->last >= min_interval;
    if (due)
        s->last = now;
    pthread_mutex_unlock(&t->lock);
    return due;
}

int obs_series_add(struct obs_series *t, const char *key, void (*name_fn)(void *ctx, const char *key, char *out,
                   size_t n), void *ctx, char ret_name[OBS_SERIES_NAME])
{
    pthread_mutex_lock(&t->lock);
    struct obs_series_slot *s = slot_locked(t, key);
    if (!s->name[0])
        name_fn(ctx, key, s->name, sizeof(s->name));
    int count = ++s->count;
    memcpy(ret_name, s->name, OBS_SERIES_NAME);
    pthread_mutex_unlock(&t->lock);
    return count;
}
