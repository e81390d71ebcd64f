/* See rate.h. */
#include "s3/rate.h"
#include "base/macros.h"
#include "base/units.h"
#include "observe/metrics.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void s3_rates_init(struct s3_rates *t)
{
    *t = (struct s3_rates){0};
    pthread_mutex_init(&t->lock, NULL);
}

void s3_rates_fini(struct s3_rates *t)
{
    for (struct s3_rate *r = t->list, *next; r; r = next) {
        next = r->next;
        pthread_mutex_destroy(&r->lock);
        free(r);
    }
    pthread_mutex_destroy(&t->lock);
}

struct s3_rate *s3_rate_get(struct s3_rates *t, const char *key)
{
    pthread_mutex_lock(&t->lock);
    struct s3_rate *r = t->list;
    while (r && strncmp(r->key, key, sizeof(r->key) - 1) != 0)
        r = r->next;
    if (!r && (r = calloc(1, sizeof(*r)))) {
        snprintf(r->key, sizeof(r->key), "%s", key);
        pthread_mutex_init(&r->lock, NULL);
        r->next = t->list;
        t->list = r;
    }
    if (r) {
        pthread_mutex_lock(&r->lock);
        r->refs++;
        pthread_mutex_unlock(&r->lock);
    }
    pthread_mutex_unlock(&t->lock);
    return r;
}

/* A prefix no fill uses goes once it has no limit, or its limit has been
 * calm for RATE_CALM_S: a limit outlives its fills for a while (the next
 * fill of the prefix starts where S3 left the node), not for ever. */
static void prune_locked(struct s3_rates *t, double now)
{
    for (struct s3_rate **p = &t->list; *p;) {
        struct s3_rate *x = *p;
        pthread_mutex_lock(&x->lock);
        int drop = x->refs == 0 && (x->limit == 0 || now - x->last_throttle > RATE_CALM_S);
        unsigned long cuts = x->cuts;
        pthread_mutex_unlock(&x->lock);
        if (!drop) {
            p = &x->next;
            continue;
        }
        *p = x->next;
        atomic_fetch_add(&t->cuts, cuts);
        pthread_mutex_destroy(&x->lock);
        free(x);
    }
}

void s3_rate_put(struct s3_rates *t, struct s3_rate *r, double now)
{
    if (!r)
        return;
    pthread_mutex_lock(&t->lock);
    pthread_mutex_lock(&r->lock);
    r->refs--;
    pthread_mutex_unlock(&r->lock);
    prune_locked(t, now);
    pthread_mutex_unlock(&t->lock);
}

/* Starts a new counting window once a second. */
static void tick_locked(struct s3_rate *r, double now)
{
    if (r->window == 0)
        r->window = now;
    double span = now - r->window;
    if (span < 1.0)
        return;
    r->prev = span < 2.0 ? r->sent / span : 0;
    r->prev_answered = span < 2.0 ? r->answered / span : 0;
    r->prev_slowed = span < 2.0 ? r->slowed / span : 0;
    if (r->prev_answered - r->prev_slowed > r->best)
        r->best = r->prev_answered - r->prev_slowed;
    r->sent = r->answered = r->slowed = 0;
    r->window = now;
}

/* Requests a second over the last second: the part of the window before
 * that still in it, and this one's. */
static double sending_locked(const struct s3_rate *r, double now)
{
    double span = now - r->window;
    return r->prev * (span < 1.0 ? 1.0 - span : 0) + r->sent;
}

/* SlowDowns, and their share of the answers, over the last second */
static double slowed_share_locked(const struct s3_rate *r, double now, double *ret_slowed)
{
    double span = now - r->window, keep = span < 1.0 ? 1.0 - span : 0;
    double answered = r->prev_answered * keep + r->answered, slowed = r->prev_slowed * keep + r->slowed;
    *ret_slowed = slowed;
    return answered > 0 ? slowed / answered : 0;
}

double s3_rate_take(struct s3_rate *r, double now)
{
    if (!r)
        return 0;
    pthread_mutex_lock(&r->lock);
    if (now < r->refilled)
        now = r->refilled; /* another thread's later clock reading came first */
    tick_locked(r, now);
    double wait = 0;
    if (r->limit > 0) {
        double burst = r->limit / 10 > 1 ? r->limit / 10 : 1; /* 100 ms of requests at once, at most */
        r->tokens += (now - r->refilled) * r->limit;
        if (r->tokens > burst)
            r->tokens = burst;
        r->refilled = now;
        if (r->tokens >= 1)
            r->tokens -= 1;
        else
            wait = (1 - r->tokens) / r->limit;
    }
    if (wait == 0)
        r->sent++;
    pthread_mutex_unlock(&r->lock);
    return wait;
}

void s3_rate_untake(struct s3_rate *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    if (r->limit > 0)
        r->tokens += 1;
    if (r->sent > 0)
        r->sent--;
    pthread_mutex_unlock(&r->lock);
}

void s3_rate_throttled(struct s3_rate *r, double now)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    tick_locked(r, now);
    r->answered++;
    r->slowed++;
    double slowed, share = slowed_share_locked(r, now, &slowed);
    if (share < RATE_CUT_SHARE || slowed < RATE_CUT_MIN) {
        pthread_mutex_unlock(&r->lock); /* a stray one: not S3's rate */
        return;
    }
    r->last_throttle = now;
    if (r->last_cut == 0 || now - r->last_cut >= RATE_CUT_S) {
        double sending = sending_locked(r, now);
        double base = r->limit > 0 && r->limit < sending ? r->limit : sending;
        if (base < 2 * RATE_MIN)
            base = 2 * RATE_MIN;
        r->limit = base / 2;
        if (r->limit < r->best * RATE_FLOOR_SHARE)
            r->limit = r->best * RATE_FLOOR_SHARE;
        r->grow = base / 10 > 1 ? base / 10 : 1;
        if (r->tokens > 1)
            r->tokens = 1;
        r->refilled = now;
        r->last_cut = r->last_grow = now;
        r->cuts++;
    }
    pthread_mutex_unlock(&r->lock);
}

void s3_rate_ok(struct s3_rate *r, double now)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    tick_locked(r, now);
    r->answered++;
    if (r->limit > 0) {
        double dt = now - r->last_grow;
        if (dt > 1.0)
            dt = 1.0; /* idle time earns nothing */
        r->limit += r->grow * dt;
        r->last_grow = now;
        /* calm for long, and sending well under the limit: it no longer binds */
        if (now - r->last_throttle > RATE_CALM_S && sending_locked(r, now) < r->limit / 2)
            r->limit = 0;
    }
    pthread_mutex_unlock(&r->lock);
}

double s3_rate_limit(struct s3_rate *r)
{
    if (!r)
        return 0;
    pthread_mutex_lock(&r->lock);
    double l = r->limit;
    pthread_mutex_unlock(&r->lock);
    return l;
}

void s3_rates_collect(struct s3_rates *t, struct obs_text *o)
{
    unsigned limited = 0;
    double limits = 0, rate = 0;
    double now = mono_s();
    pthread_mutex_lock(&t->lock);
    prune_locked(t, now);
    unsigned long cuts = atomic_load(&t->cuts); /* under the lock: a pruned entry's cuts move there */
    for (struct s3_rate *r = t->list; r; r = r->next) {
        pthread_mutex_lock(&r->lock);
        tick_locked(r, now);
        limited += r->limit > 0;
        limits += r->limit;
        rate += sending_locked(r, now);
        cuts += r->cuts;
        pthread_mutex_unlock(&r->lock);
    }
    pthread_mutex_unlock(&t->lock);
    obs_gauge(o, "warmcache_s3_rate_limited_prefixes",
              "S3 prefixes this node sends requests to at a limited rate now, after SlowDown.", limited);
    obs_gauge(o, "warmcache_s3_rate_limit_requests_per_second",
              "The sum of those limits (requests a second); 0 while none is limited.", limits);
    obs_counter(o, "warmcache_s3_rate_limit_cuts_total",
                "Times a SlowDown halved the request rate to a prefix.", cuts);
    obs_gauge(o, "warmcache_s3_request_rate", "Object requests a second sent to S3 over the last second.", rate);
}
