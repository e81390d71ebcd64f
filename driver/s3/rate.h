/*
 * How fast the node may send requests to one S3 prefix. S3 scales its
 * request rate per prefix (about 5,500 GET/s, S3 Express about ten times
 * that) and answers SlowDown (503, or 429 from S3-compatible servers) beyond
 * it; a fleet of nodes filling the same model reaches that together.
 *
 * One limit per endpoint, bucket and prefix, shared by every fill of the
 * node, kept the way TCP keeps its window (AIMD): none at all until S3 says
 * SlowDown, in a share of the answers (RATE_CUT_SHARE); then half the
 * rate the node was sending at (over the last second), at most one cut
 * every RATE_CUT_S (the SlowDowns of one burst are one signal); then, each second without one, a tenth of the rate it was
 * cut from more; dropped once the node has sent well below it for
 * RATE_CALM_S, or no fill has used it for that long since the last
 * SlowDown. Requests past the limit wait their turn (a token bucket):
 * they are never sent to be refused.
 * Internal to the S3 layer.
 */
#pragma once

#include <pthread.h>

#define RATE_MIN 2.0       /* requests a second: the lowest limit a cut leaves */
#define RATE_CUT_S 0.25
/* A cut needs SlowDown in this share of the last second's answers (and at
 * least RATE_CUT_MIN of them): S3's limit answers many requests so, while a
 * stray SlowDown or two (a partition splitting) is no reason to slow down */
#define RATE_CUT_SHARE 0.10
#define RATE_CUT_MIN 5
/* Never below this share of the best rate S3 has answered (successes a
 * second): random SlowDowns that do not fall when the node slows down (a
 * server that answers some at any rate) must not talk it down to nothing */
#define RATE_FLOOR_SHARE 0.25
#define RATE_CALM_S 60.0

struct s3_ctx;
struct obs_text;

struct s3_rate {
    struct s3_rate *next;
    char key[512];             /* endpoint/bucket/prefix */
    int refs;                  /* transfers using it; changed under the table lock */
    pthread_mutex_t lock;      /* the rest */
    double limit;              /* requests a second; 0: none */
    double grow;               /* added to limit per calm second */
    double tokens, refilled;   /* the bucket, and when it was filled last (mono_s) */
    double window, sent;       /* requests started since window began (a second at most) */
    double prev;               /* requests a second in the window before */
    double answered, slowed;   /* answers since window began, and how many of them SlowDown */
    double prev_answered, prev_slowed; /* the same, a second, in the window before */
    double best;               /* the most successes a second in any window so far */
    double last_cut, last_grow, last_throttle;
    unsigned long cuts;
};

/* The table (in struct s3_ctx). */
struct s3_rates {
    pthread_mutex_t lock;
    struct s3_rate *list;
    _Atomic unsigned long cuts; /* of prefixes no longer in the table, too */
};

void s3_rates_init(struct s3_rates *t);
void s3_rates_fini(struct s3_rates *t);
/* The limit for key, made on first use; NULL only when out of memory (no limit then). */
struct s3_rate *s3_rate_get(struct s3_rates *t, const char *key);
/* Done with it (now: mono_s()); an unused limit calm for RATE_CALM_S goes. */
void s3_rate_put(struct s3_rates *t, struct s3_rate *r, double now);

/* 0: send now (counted); else the seconds until the next request may go. */
double s3_rate_take(struct s3_rate *r, double now);
/* Gives back what s3_rate_take took, for a request that was not sent after all. */
void s3_rate_untake(struct s3_rate *r);
/* What came back: a SlowDown, or a success. */
void s3_rate_throttled(struct s3_rate *r, double now);
void s3_rate_ok(struct s3_rate *r, double now);
/* The limit in force now, requests a second; 0: none. */
double s3_rate_limit(struct s3_rate *r);

/* Metrics: limited prefixes, their limits, cuts, requests a second. */
void s3_rates_collect(struct s3_rates *t, struct obs_text *o);
