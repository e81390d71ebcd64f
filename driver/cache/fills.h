/*
 * Background fills, keyed by what they fill, so kubelet's clock never meets
 * a download: a CSI call starts a fill (or joins the one already running for
 * the same source and pinned listing), waits a bounded time, and if the copy
 * is not ready by then answers ABORTED with a progress line; kubelet's retry
 * joins the same fill. A final error (bad source, changed source, no room)
 * is returned to every waiter the moment it is known.
 *
 * A fill lists the source (unless the pinned listing's copy is already
 * there), checks it against the pin, makes room (eviction), and fills the
 * store. Jobs stop when the process shuts down (fills_stop); the partial copy
 * stays and the next fill resumes it.
 */
#pragma once

#include <pthread.h>
#include <stdint.h>

#include "base/error.h"
#include "cache/listing.h"
#include "cache/source.h"
#include "cache/store.h"

enum fill_state { FILL_LISTING, FILL_RUNNING, FILL_DONE, FILL_FAILED };

struct fill_request {
    const char *source;      /* URL */
    const char *pinned;      /* listing digest from the volume context, or NULL */
    int follow;              /* sourceChangePolicy: Follow */
    uint64_t pinned_objects, pinned_bytes;
    int resume;              /* restarted from a journal at start: drop the partial if it cannot finish */
    struct source_options opts;  /* S3 settings and credentials; copied by the job */
    json_t *targets;         /* optional: whom to tell (events): a JSON array, merged into the job's */
    int *ret_hit;            /* optional: set to 1 when the copy was already here (no fill at all) */
};

struct fill_job;

/* A finished fill's copy is kept from eviction this long without a pin: its
 * caller may have got ABORTED and be waiting out kubelet's backoff. */
#define FILL_LEASE_SECONDS 300

/* Upper bounds (seconds) of the fill duration histogram; the last is +Inf. */
#define FILLS_BUCKETS 9
extern const double fills_buckets[FILLS_BUCKETS];

/* What a fill tells whoever watches it (the CSI layer posts events). */
enum fill_event { FILL_EVENT_STARTED, FILL_EVENT_DONE, FILL_EVENT_FAILED };

struct fill_report {
    const char *source, *cid;
    const char *message;        /* the progress line, the error, or nothing */
    uint64_t bytes, files, fetched, checksummed;
    double seconds;
    json_t *targets;            /* the job's targets (borrowed) */
};

struct fills {
    struct store *store;
    pthread_mutex_t lock;
    pthread_cond_t cond;        /* signalled on every job state change */
    struct fill_job *jobs;      /* running jobs, a list */
    atomic_int stopping;
    int running_threads;
    _Atomic uint64_t fetched_total; /* bytes written into the store by fills */
    /* for metrics */
    _Atomic uint64_t hits, misses;  /* calls that found the copy / had to start or join a fill */
    _Atomic uint64_t ok, failed;    /* fills finished */
    _Atomic uint64_t duration_bucket[FILLS_BUCKETS]; /* fills that took <= fills_buckets[i] seconds */
    _Atomic uint64_t duration_ms_sum;
    unsigned connections;       /* per fill (--s3-connections); 0: the source default */
    unsigned stall_seconds;     /* --s3-stall-timeout; 0: the default */
    unsigned list_timeout_s;    /* --list-timeout; 0: none */
    /* optional, called from the job's thread, without the lock */
    void (*notify)(void *ctx, enum fill_event ev, const struct fill_report *r);
    void *notify_ctx;
};

void fills_init(struct fills *f, struct store *s);
/* Cancels running jobs and waits for their threads. */
void fills_stop(struct fills *f);

/*
 * Starts or joins the fill for rq, and waits up to wait_ms for it.
 * 0: the copy is ready, its id in ret_cid.
 * -EINPROGRESS: still filling; e->msg says how far (ABORTED for the CO).
 * -ECANCELED: the caller's call was cancelled (cancel set) or we are stopping.
 * other: the fill failed; e says why.
 */
int fills_ensure(struct fills *f, const struct fill_request *rq, int wait_ms, const atomic_int *cancel,
                 char ret_cid[CONTENT_ID_LEN + 1], struct wc_error *e);

/* Resumes the fills named by store_reconcile()'s journals, in the background. */
void fills_resume(struct fills *f, json_t *journals);

/* Progress of running fills, for status and progress events: a JSON array
 * of objects with source, content_id, state, bytes/files done and total,
 * message (the progress line) and targets. */
json_t *fills_status(struct fills *f);
