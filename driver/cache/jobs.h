/*
 * Fill jobs, keyed by what they fill, so kubelet's clock never meets
 * a download: a CSI call starts a fill (or joins the one already running for
 * the same source and pinned listing), waits a bounded time, and if the copy
 * is not ready by then answers ABORTED with a progress line; kubelet's retry
 * joins the same fill. A final error (bad source, changed source, no room)
 * is returned to every waiter the moment it is known.
 *
 * A fill lists the source (unless the pinned listing's copy is already
 * there), checks it against the pin, makes room (eviction), and fills the
 * store. Jobs stop when the process shuts down (jobs_stop); the partial copy
 * stays and the next fill resumes it.
 * More: docs/internals/cache.md.
 */
#pragma once

#include <pthread.h>
#include <stdint.h>

#include "base/error.h"
#include "cache/listing.h"
#include "cache/source.h"
#include "cache/store.h"
#include "observe/metrics.h"

enum fill_state { FILL_LISTING, FILL_RUNNING, FILL_DONE, FILL_FAILED };

struct fill_request {
    const struct source_spec *spec; /* what to fill from, and with whose credentials; copied by the job */
    const char *pinned;      /* listing digest from the volume context, or NULL */
    int follow;              /* sourceChangePolicy: Follow */
    int narrow;              /* an inline volume's: the source is judged by the inline list (source_tuning.admit) */
    uint64_t pinned_objects, pinned_bytes;
    int resume;              /* restarted from a journal at start: drop the partial if it cannot finish */
    json_t *targets;         /* optional: whom to tell (events): a JSON array, merged into the job's */
    int *ret_hit;            /* optional: set to 1 when the copy was already here (no fill at all) */
};

struct fill_job;

/* A finished fill's copy is kept from eviction this long without a pin: its
 * caller may have got ABORTED and be waiting out kubelet's backoff. */
#define FILL_LEASE_SECONDS 300

/* Upper bounds (seconds) of the fill duration histogram; the last is +Inf. */
#define JOBS_BUCKETS 13
extern const double jobs_buckets[JOBS_BUCKETS];

/* What a fill tells whoever watches it (the CSI layer posts events). */
enum fill_event { FILL_EVENT_STARTED, FILL_EVENT_DONE, FILL_EVENT_FAILED };

struct fill_report {
    const char *source, *cid;
    const char *message;        /* the progress line, the error, or nothing */
    uint64_t bytes, files, fetched, checksummed;
    double seconds;
    json_t *targets;            /* the job's targets (borrowed) */
};

struct jobs {
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
    _Atomic uint64_t duration_bucket[JOBS_BUCKETS]; /* fills that took <= jobs_buckets[i] seconds */
    _Atomic uint64_t duration_ms_sum;
    struct source_env *env;     /* what every source shares (source.h) */
    unsigned connections;       /* per fill (--s3-connections); 0: the source default */
    unsigned stall_seconds;     /* --s3-stall-timeout; 0: the default */
    unsigned list_timeout_s;    /* --list-timeout; 0: none */
    /* optional: judges where a source really is when a fill opens it (source_tuning.admit) */
    int (*admit)(void *ctx, const char *real_url, int narrow, struct wc_error *e);
    void *admit_ctx;
    /* optional, called from the job's thread, without the lock */
    void (*notify)(void *ctx, enum fill_event ev, const struct fill_report *r);
    void *notify_ctx;
};

void jobs_init(struct jobs *f, struct store *s);
/* Cancels running jobs and waits for their threads. */
void jobs_stop(struct jobs *f);

/*
 * Starts or joins the fill for rq, and waits up to wait_ms for it.
 * 0: the copy is ready, its id in ret_cid.
 * -EINPROGRESS: still filling; e->msg says how far (ABORTED for the CO).
 * -ECANCELED: the caller's call was cancelled (cancel set) or we are stopping.
 * other: the fill failed; e says why.
 */
int jobs_ensure(struct jobs *f, const struct fill_request *rq, int wait_ms, const atomic_int *cancel,
                 char ret_cid[CONTENT_ID_LEN + 1], struct wc_error *e);

/* Resumes the fills named by store_reconcile()'s journals, in the background. */
void jobs_resume(struct jobs *f, json_t *journals);

/* Progress of running fills, for status and progress events: a JSON array
 * of objects with source, content_id, state, bytes/files done and total,
 * message (the progress line) and targets. */
json_t *jobs_status(struct jobs *f);

/* Metrics (observe/metrics.h): ctx is the struct jobs. */
void jobs_collect(void *ctx, struct obs_text *t);
