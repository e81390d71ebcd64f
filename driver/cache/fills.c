/*
 * Background fills; see fills.h for the contract. A job is keyed by the
 * source URL, the pinned digest and the change policy: those decide what it
 * fills. Jobs live in a list under one mutex (a node runs a handful at a
 * time); each has its own thread and is freed when neither the thread nor
 * any waiter holds it. Waiters wake on a shared condition variable and at
 * least every 200 ms, to notice a cancelled call.
 */
#include "cache/fills.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "base/macros.h"
#include "base/pathkey.h"
#include "base/units.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct fill_job {
    struct fill_job *next;
    struct fills *owner;
    char key[SHA256_HEX_LEN + 1];
    char *source, *pinned;
    int follow, resume;
    char *opt[6];                /* region, endpoint, addressing, key id, secret, token */
    struct source_options opts;  /* points into opt[] */
    uint64_t pinned_objects, pinned_bytes;
    enum fill_state state;
    char cid[CONTENT_ID_LEN + 1];
    struct wc_error err;
    struct fill_progress progress;
    double started, running_since;
    int refs;                    /* the thread + each waiter; under owner->lock */
    json_t *targets;             /* whom to tell, from every request that joined; under owner->lock */
};

const double fills_buckets[FILLS_BUCKETS] = {1, 5, 15, 30, 60, 120, 300, 900, 1e308};

/* What decides what a job fills and how it reaches the source: the URL, the
 * pin, the policy, the S3 settings, and whose credentials (a hash of them,
 * or none: the node's own). A call with a Secret never joins a job that runs
 * on other credentials, such as one resumed at start without any. */
static void job_key(const struct fill_request *rq, char out[SHA256_HEX_LEN + 1])
{
    const struct source_options *o = &rq->opts;
    char who[SHA256_HEX_LEN + 1] = "node";
    if (o->access_key_id && *o->access_key_id) {
        size_t n = strlen(o->access_key_id) + strlen(o->secret_access_key ?: "") + strlen(o->session_token ?: "") + 3;
        _cleanup_free_ char *c = malloc(n);
        if (c) {
            snprintf(c, n, "%s\n%s\n%s", o->access_key_id, o->secret_access_key ?: "", o->session_token ?: "");
            sha256_hex(c, n - 1, who);
            explicit_bzero(c, n);
        } else {
            snprintf(who, sizeof(who), "secret:%.40s", o->access_key_id);
        }
    }
    char buf[8192];
    int n = snprintf(buf, sizeof(buf), "%s\n%s\n%d\n%s\n%s\n%s\n%s", rq->source, rq->pinned ? rq->pinned : "",
                     rq->follow, o->endpoint ?: "", o->region ?: "", o->addressing ?: "", who);
    sha256_hex(buf, n > 0 && (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1, out);
}

void fills_init(struct fills *f, struct store *s)
{
    *f = (struct fills){.store = s};
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->cond, NULL);
}

static void job_unref_locked(struct fill_job *j)
{
    if (--j->refs > 0)
        return;
    for (int i = 0; i < 6; i++) {
        if (j->opt[i])
            explicit_bzero(j->opt[i], strlen(j->opt[i])); /* credentials among them */
        free(j->opt[i]);
    }
    free(j->source);
    free(j->pinned);
    json_decref(j->targets);
    free(j);
}

static void add_targets_locked(struct fill_job *j, json_t *targets)
{
    size_t i, k;
    json_t *t, *have;
    json_array_foreach(targets, i, t) {
        int dup = 0;
        json_array_foreach(j->targets, k, have)
            dup = dup || json_equal(have, t);
        if (!dup)
            json_array_append(j->targets, t);
    }
}

/* Tells the watcher, if there is one; the targets are copied under the lock. */
static void notify(struct fill_job *j, enum fill_event ev, const char *message, double seconds)
{
    struct fills *f = j->owner;
    if (!f->notify)
        return;
    pthread_mutex_lock(&f->lock);
    json_t *targets = json_deep_copy(j->targets);
    pthread_mutex_unlock(&f->lock);
    uint64_t done = atomic_load(&j->progress.bytes_done);
    struct fill_report r = {
        .source = j->source, .cid = j->cid, .message = message, .bytes = j->progress.bytes_total,
        .files = j->progress.files_total, .fetched = done - atomic_load(&j->progress.bytes_resumed),
        .checksummed = atomic_load(&j->progress.files_checksummed), .seconds = seconds, .targets = targets,
    };
    f->notify(f->notify_ctx, ev, &r);
    json_decref(targets);
}

static void unlink_job_locked(struct fills *f, struct fill_job *j)
{
    for (struct fill_job **p = &f->jobs; *p; p = &(*p)->next)
        if (*p == j) {
            *p = j->next;
            return;
        }
}

/* Lists, checks the pin, fills. Runs without the lock; publishes state under it. */
static int run_job(struct fill_job *j, struct wc_error *e)
{
    struct fills *f = j->owner;
    struct source *src _cleanup_source_ = NULL;
    int r = source_open(j->source, &j->opts, &src, e);
    if (r < 0)
        return r;
    if (j->pinned) {
        content_id(src->identity, j->pinned, j->cid);
        if (store_content_ready(f->store, j->cid))
            return 0;
    }
    struct listing l = {0};
    if ((r = source_list(src, &l, &f->stopping, e)) < 0)
        return r;
    if (l.n == 0) {
        listing_free(&l);
        return wc_err(e, -ENOENT, "source %s holds no files: a shared file system not mounted on this node yet, or "
                      "a prefix deleted since the volume was created; nothing is mounted until it holds the data",
                      src->url);
    }
    char digest[LISTING_DIGEST_LEN + 1];
    listing_digest(&l, digest);
    if (j->pinned && !streq(digest, j->pinned) && !j->follow) {
        r = wc_err(e, -ESTALE, "source %s changed since the volume was created (pinned %" PRIu64 " files, %" PRIu64
                   " bytes; now %zu files, %" PRIu64 " bytes); recreate the PVC to take the new content, or use "
                   "sourceChangePolicy: Follow", src->url, j->pinned_objects, j->pinned_bytes, l.n, l.bytes);
        listing_free(&l);
        return r;
    }
    pthread_mutex_lock(&f->lock);
    content_id(src->identity, digest, j->cid);
    j->state = FILL_RUNNING;
    j->running_since = mono_s();
    j->progress.bytes_total = l.bytes; /* store_fill sets them too; the start event wants them now */
    j->progress.files_total = l.n;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
    notify(j, FILL_EVENT_STARTED, NULL, 0);

    r = store_fill(f->store, src, &l, j->cid, &f->stopping, &j->progress, e);
    uint64_t fetched = atomic_load(&j->progress.bytes_done) - atomic_load(&j->progress.bytes_resumed);
    atomic_fetch_add(&f->fetched_total, fetched);
    listing_free(&l);
    if (r < 0)
        return wc_err_prefix(e, "filling %s: ", src->url);
    char b[32], rate[32];
    double secs = mono_s() - j->running_since;
    fmt_bytes(j->progress.bytes_total, b, sizeof(b));
    fmt_rate(secs > 0 ? (double)fetched / secs : 0, rate, sizeof(rate));
    log_json(LOG_INFO, "fill done", json_pack("{s:s, s:s, s:I, s:I, s:I, s:f, s:s}", "source", src->url,
             "content_id", j->cid, "bytes", (json_int_t)j->progress.bytes_total, "files",
             (json_int_t)j->progress.files_total, "fetched_bytes", (json_int_t)fetched, "seconds", secs, "rate", rate));
    return 0;
}

static void *job_thread(void *arg)
{
    struct fill_job *j = arg;
    struct fills *f = j->owner;
    struct wc_error e;
    wc_error_clear(&e);
    int r = run_job(j, &e);
    double took = mono_s() - j->started;
    atomic_fetch_add(r < 0 ? &f->failed : &f->ok, 1);
    for (int b = 0; b < FILLS_BUCKETS; b++)
        if (took <= fills_buckets[b])
            atomic_fetch_add(&f->duration_bucket[b], 1);
    atomic_fetch_add(&f->duration_ms_sum, (uint64_t)(took * 1000));
    if (r == 0) /* its caller may have stopped waiting: keep it until kubelet comes back */
        store_lease(f->store, j->cid, FILL_LEASE_SECONDS);
    notify(j, r < 0 ? FILL_EVENT_FAILED : FILL_EVENT_DONE, r < 0 ? e.msg : NULL,
           j->running_since > 0 ? mono_s() - j->running_since : 0);
    if (r == -ESTALE && j->resume && j->cid[0]) {
        /* the source moved on: this partial copy can never finish (other
         * failures, such as missing credentials, keep it for the next call) */
        store_drop_partial(f->store, j->cid);
        log_json(LOG_WARN, "dropped a partial copy that cannot be resumed",
                 json_pack("{s:s, s:s}", "source", j->source, "error", e.msg));
    }
    pthread_mutex_lock(&f->lock);
    if (r < 0) {
        j->err = e;
        if (!j->err.code)
            j->err.code = r;
    }
    j->state = r < 0 ? FILL_FAILED : FILL_DONE;
    unlink_job_locked(f, j); /* the next call after this one starts afresh */
    job_unref_locked(j);
    f->running_threads--;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
    return NULL;
}

static struct fill_job *start_job_locked(struct fills *f, const struct fill_request *rq, const char *key)
{
    struct fill_job *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->owner = f;
    memcpy(j->key, key, sizeof(j->key));
    j->source = strdup(rq->source);
    j->pinned = rq->pinned ? strdup(rq->pinned) : NULL;
    j->follow = rq->follow;
    j->resume = rq->resume;
    const char *o[6] = {rq->opts.region, rq->opts.endpoint, rq->opts.addressing, rq->opts.access_key_id,
                        rq->opts.secret_access_key, rq->opts.session_token};
    for (int i = 0; i < 6; i++)
        j->opt[i] = o[i] ? strdup(o[i]) : NULL;
    j->opts = (struct source_options){j->opt[0], j->opt[1], j->opt[2], j->opt[3], j->opt[4], j->opt[5],
                                      f->connections, f->stall_seconds, f->list_timeout_s};
    j->pinned_objects = rq->pinned_objects;
    j->pinned_bytes = rq->pinned_bytes;
    j->state = FILL_LISTING;
    j->started = mono_s();
    j->refs = 1;
    j->targets = json_array();
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    int ok = j->source && (!rq->pinned || j->pinned) && pthread_create(&t, &attr, job_thread, j) == 0;
    pthread_attr_destroy(&attr);
    if (!ok) {
        j->refs = 1;
        job_unref_locked(j);
        return NULL;
    }
    f->running_threads++;
    j->next = f->jobs;
    f->jobs = j;
    return j;
}

/* "filling file:///m/: 9.8 GiB/15.0 GiB (65%), 2.4 GB/s, ETA 2s" */
static void progress_text(const struct fill_job *j, char *out, size_t n)
{
    if (j->state == FILL_LISTING) {
        snprintf(out, n, "listing %s (%.0fs so far)", j->source, mono_s() - j->started);
        return;
    }
    uint64_t done = atomic_load(&j->progress.bytes_done), total = j->progress.bytes_total;
    uint64_t resumed = atomic_load(&j->progress.bytes_resumed);
    double secs = mono_s() - j->running_since;
    double rate = secs > 0.2 ? (double)(done - resumed) / secs : 0;
    char d[32], t[32], r[32], eta[32];
    fmt_bytes(done, d, sizeof(d));
    fmt_bytes(total, t, sizeof(t));
    fmt_rate(rate, r, sizeof(r));
    if (rate > 0)
        fmt_duration((double)(total - done) / rate, eta, sizeof(eta));
    else
        snprintf(eta, sizeof(eta), "unknown");
    snprintf(out, n, "filling %s: %s/%s (%.0f%%), %s, ETA %s", j->source, d, t,
             total ? 100.0 * (double)done / (double)total : 100.0, r, eta);
}

/* 0: the pinned copy is here and verified; 1: it is not (fill it); < 0: it
 * is damaged but in use, or could not be checked. */
static int warm_copy(struct fills *f, const struct fill_request *rq, char ret_cid[CONTENT_ID_LEN + 1],
                     struct wc_error *e)
{
    char identity[PATHKEY_MAX + 400];
    struct wc_error why;
    if (source_identity(rq->source, &rq->opts, identity, sizeof(identity), &why) < 0)
        return 1; /* the job says what is wrong with it */
    content_id(identity, rq->pinned, ret_cid);
    if (!store_content_ready(f->store, ret_cid))
        return 1;
    int r = store_verify(f->store, ret_cid, &why);
    if (r == 0) {
        atomic_fetch_add(&f->hits, 1);
        if (rq->ret_hit)
            *rq->ret_hit = 1;
        return 0;
    }
    if (r == -ENOENT)
        return 1; /* evicted meanwhile */
    if (r != -EBADMSG)
        return wc_err(e, r, "could not verify the copy of %s on this node: %s; try again", rq->source, why.msg);
    /* damaged (a file changed or vanished on disk): fill a new copy, unless
     * pods still see this one: they keep it until they are gone */
    if (store_set_aside(f->store, ret_cid) == -EBUSY)
        return wc_err(e, -EBADMSG, "%s; it is in use by pods on this node, so it stays until they are gone and is "
                      "filled again then", why.msg);
    log_json(LOG_WARN, "a copy failed verification; filling it again",
             json_pack("{s:s, s:s}", "content_id", ret_cid, "error", why.msg));
    return 1;
}

int fills_ensure(struct fills *f, const struct fill_request *rq, int wait_ms, const atomic_int *cancel,
                 char ret_cid[CONTENT_ID_LEN + 1], struct wc_error *e)
{
    /* Warm path: the pinned listing's copy is here; no thread, no listing,
     * no credentials (the content id needs only the source's identity). */
    if (rq->pinned) {
        int r = warm_copy(f, rq, ret_cid, e);
        if (r <= 0)
            return r;
    }
    char key[SHA256_HEX_LEN + 1];
    job_key(rq, key);
    pthread_mutex_lock(&f->lock);
    if (atomic_load(&f->stopping)) {
        pthread_mutex_unlock(&f->lock);
        return wc_err(e, -ECANCELED, "the plugin is shutting down");
    }
    struct fill_job *j = f->jobs;
    while (j && !streq(j->key, key))
        j = j->next;
    if (!j && !(j = start_job_locked(f, rq, key))) {
        pthread_mutex_unlock(&f->lock);
        return wc_err(e, -ENOMEM, "cannot start a fill");
    }
    j->refs++;
    atomic_fetch_add(&f->misses, 1);
    if (rq->targets)
        add_targets_locked(j, rq->targets);
    double deadline = mono_s() + wait_ms / 1000.0;
    int r = 0;
    while (j->state != FILL_DONE && j->state != FILL_FAILED) {
        if ((cancel && atomic_load(cancel)) || atomic_load(&f->stopping)) {
            r = wc_err(e, -ECANCELED, "call cancelled; the fill of %s goes on", j->source);
            break;
        }
        double left = deadline - mono_s();
        if (left <= 0) {
            char msg[512];
            progress_text(j, msg, sizeof(msg));
            r = wc_err(e, -EINPROGRESS, "%s", msg);
            break;
        }
        double slice = left < 0.2 ? left : 0.2;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long ns = ts.tv_nsec + (long)(slice * 1e9);
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&f->cond, &f->lock, &ts);
    }
    if (r == 0 && j->state == FILL_DONE)
        memcpy(ret_cid, j->cid, CONTENT_ID_LEN + 1);
    else if (r == 0) {
        *e = j->err;
        r = e->code ? e->code : -EIO;
    }
    job_unref_locked(j);
    pthread_mutex_unlock(&f->lock);
    return r;
}

void fills_resume(struct fills *f, json_t *journals)
{
    size_t i;
    json_t *j;
    json_array_foreach(journals, i, j) {
        struct fill_request rq = {
            .source = json_string_value(json_object_get(j, "source")),
            .pinned = json_string_value(json_object_get(j, "listing_digest")),
            .pinned_objects = (uint64_t)json_integer_value(json_object_get(j, "files")),
            .pinned_bytes = (uint64_t)json_integer_value(json_object_get(j, "bytes")),
            .resume = 1,
            .opts = {.region = json_string_value(json_object_get(j, "region")),
                     .endpoint = json_string_value(json_object_get(j, "endpoint")),
                     .addressing = json_string_value(json_object_get(j, "addressing"))},
        };
        if (!rq.source || !rq.pinned)
            continue;
        char cid[CONTENT_ID_LEN + 1];
        struct wc_error e;
        int r = fills_ensure(f, &rq, 0, NULL, cid, &e); /* starts it; does not wait */
        log_json(LOG_INFO, "resuming an interrupted fill",
                 json_pack("{s:s, s:s}", "source", rq.source, "state", r == 0 ? "already complete" : e.msg));
    }
}

void fills_stop(struct fills *f)
{
    pthread_mutex_lock(&f->lock);
    atomic_store(&f->stopping, 1);
    pthread_cond_broadcast(&f->cond);
    while (f->running_threads > 0)
        pthread_cond_wait(&f->cond, &f->lock);
    pthread_mutex_unlock(&f->lock);
}

json_t *fills_status(struct fills *f)
{
    json_t *arr = json_array();
    pthread_mutex_lock(&f->lock);
    for (struct fill_job *j = f->jobs; j; j = j->next) {
        char msg[512];
        progress_text(j, msg, sizeof(msg));
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s, s:O}", "source", j->source,
            "content_id", j->cid, "state", j->state == FILL_LISTING ? "listing" : "filling",
            "bytes_done", (json_int_t)atomic_load(&j->progress.bytes_done), "bytes_total",
            (json_int_t)j->progress.bytes_total, "files_done", (json_int_t)atomic_load(&j->progress.files_done),
            "files_total", (json_int_t)j->progress.files_total, "message", msg, "targets", j->targets));
    }
    pthread_mutex_unlock(&f->lock);
    return arr;
}
