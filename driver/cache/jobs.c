/*
 * Background fills; see jobs.h for the contract. A job is keyed by the
 * source URL, the pinned digest and the change policy: those decide what it
 * fills. Jobs live in a list under one mutex (a node runs a handful at a
 * time); each has its own thread and is freed when neither the thread nor
 * any waiter holds it. Waiters wake on a shared condition variable and at
 * least every 200 ms, to notice a cancelled call.
 */
#include "cache/jobs.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "base/macros.h"
#include "base/pathkey.h"
#include "base/units.h"
#include "observe/progress.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct fill_job {
    struct fill_job *next;
    struct jobs *owner;
    char key[SHA256_HEX_LEN + 1];
    struct source_spec *spec;    /* the job's own copy: credentials among them, wiped at the end */
    const char *source;          /* spec->url */
    char *pinned;
    int follow, resume, narrow;
    uint64_t pinned_objects, pinned_bytes;
    enum fill_state state;
    char cid[CONTENT_ID_LEN + 1];
    struct wc_error err;
    struct fill_progress progress;
    double started, running_since;
    int refs;                    /* the thread + each waiter; under owner->lock */
    json_t *targets;             /* whom to tell, from every request that joined; under owner->lock */
};

/* a 500 GB fill at 10 Gbit/s takes about 7 minutes, at 1 Gbit/s more than an hour */
const double jobs_buckets[JOBS_BUCKETS] = {1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 1e308};

/* What decides what a job fills and how it reaches the source: the URL, the
 * pin, the policy, the S3 settings, and whose credentials (a hash of them,
 * or none: the node's own). A call with a Secret never joins a job that runs
 * on other credentials, such as one resumed at start without any. */
static void job_key(const struct fill_request *rq, char out[SHA256_HEX_LEN + 1])
{
    const struct source_spec *o = rq->spec;
    char who[SHA256_HEX_LEN + 1] = "node";
    /* the credentials the source will use: a registry's for oci://, S3's for the rest */
    int oci = strncmp(o->url, "oci://", 6) == 0;
    const char *user = !oci ? o->access_key_id : o->username && *o->username ? o->username : o->docker_config;
    if (user && *user) {
        const char *pass = !oci ? o->secret_access_key : user == o->username ? o->password : "";
        const char *token = !oci ? o->session_token : user == o->username ? "oci" : "dockerconfig";
        size_t n = strlen(user) + strlen(pass ?: "") + strlen(token ?: "") + 3;
        _cleanup_free_ char *c = malloc(n);
        if (c) {
            snprintf(c, n, "%s\n%s\n%s", user, pass ?: "", token ?: "");
            sha256_hex(c, n - 1, who);
            explicit_bzero(c, n);
        } else {
            snprintf(who, sizeof(who), "unhashed:%p", (const void *)rq); /* out of memory: a key no other job has */
        }
    }
    char buf[8192];
    int n = snprintf(buf, sizeof(buf), "%s\n%s\n%d\n%d\n%s\n%s\n%s\n%s\n%s", o->url, rq->pinned ? rq->pinned : "",
                     rq->follow, rq->narrow, o->endpoint ?: "", o->region ?: "", o->addressing ?: "",
                     o->within ?: "", who);
    sha256_hex(buf, n > 0 && (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1, out);
}

void jobs_init(struct jobs *f, struct store *s)
{
    *f = (struct jobs){.store = s};
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->cond, NULL);
}

static void job_unref_locked(struct fill_job *j)
{
    if (--j->refs > 0)
        return;
    source_spec_free(j->spec);
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
    struct jobs *f = j->owner;
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

static void unlink_job_locked(struct jobs *f, struct fill_job *j)
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
    struct jobs *f = j->owner;
    struct source *src _cleanup_source_ = NULL;
    struct source_tuning t = {.env = f->env, .connections = f->connections, .stall_seconds = f->stall_seconds,
                              .list_timeout_s = f->list_timeout_s, .admit = f->admit,
                              .admit_ctx = f->admit_ctx, .narrow = j->narrow};
    int r = source_open(j->spec, &t, &src, e);
    if (r < 0)
        return r;
    if (j->pinned) {
        char cid[CONTENT_ID_LEN + 1];
        content_id(src->identity, j->pinned, cid);
        if (store_content_ready(f->store, cid)) {
            pthread_mutex_lock(&f->lock); /* waiters read j->cid under the lock */
            memcpy(j->cid, cid, sizeof(cid));
            pthread_mutex_unlock(&f->lock);
            return 0;
        }
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
        r = wc_err(e, -ESTALE, "source %s changed since the volume was created (pinned listing %.12s: %" PRIu64
                   " files, %" PRIu64 " bytes; now %.12s: %zu files, %" PRIu64 " bytes); recreate the PVC to take "
                   "the new content, or use sourceChangePolicy: Follow", src->url, j->pinned, j->pinned_objects,
                   j->pinned_bytes, digest, l.n, l.bytes);
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
    struct jobs *f = j->owner;
    struct wc_error e;
    wc_error_clear(&e);
    int r = run_job(j, &e);
    double took = mono_s() - j->started;
    atomic_fetch_add(r < 0 ? &f->failed : &f->ok, 1);
    for (int b = 0; b < JOBS_BUCKETS; b++)
        if (took <= jobs_buckets[b])
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

static struct fill_job *start_job_locked(struct jobs *f, const struct fill_request *rq, const char *key)
{
    struct fill_job *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->owner = f;
    memcpy(j->key, key, sizeof(j->key));
    j->spec = source_spec_dup(rq->spec);
    j->source = j->spec ? j->spec->url : NULL;
    j->pinned = rq->pinned ? strdup(rq->pinned) : NULL;
    j->follow = rq->follow;
    j->narrow = rq->narrow;
    j->resume = rq->resume;
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
    uint64_t done = atomic_load(&j->progress.bytes_done);
    struct obs_progress p = {.done = done, .total = j->progress.bytes_total,
                             .fresh = done - atomic_load(&j->progress.bytes_resumed),
                             .seconds = mono_s() - j->running_since};
    char line[200];
    obs_progress_line(&p, line, sizeof(line));
    snprintf(out, n, "filling %s: %s", j->source, line);
}

/* 0: the pinned copy is here and verified; 1: it is not (fill it); < 0: it
 * is damaged but in use, or could not be checked. */
static int warm_copy(struct jobs *f, const struct fill_request *rq, char ret_cid[CONTENT_ID_LEN + 1],
                     struct wc_error *e)
{
    char identity[PATHKEY_MAX + 400];
    struct wc_error why;
    if (source_identity(rq->spec, identity, sizeof(identity), &why) < 0)
        return 1; /* the job says what is wrong with it */
    char cid[CONTENT_ID_LEN + 1];
    content_id(identity, rq->pinned, cid);
    if (!store_content_ready(f->store, cid))
        return 1;
    int r = store_verify(f->store, cid, &why);
    if (r == 0) {
        memcpy(ret_cid, cid, sizeof(cid));
        atomic_fetch_add(&f->hits, 1);
        if (rq->ret_hit)
            *rq->ret_hit = 1;
        return 0;
    }
    if (r == -ENOENT)
        return 1; /* evicted meanwhile */
    if (r != -EBADMSG)
        return wc_err(e, r, "could not verify the copy of %s on this node: %s; try again", rq->spec->url,
                      why.msg);
    /* damaged (a file changed or vanished on disk): fill a new copy, unless
     * pods still see this one: they keep it until they are gone */
    if (store_set_aside(f->store, cid) == -EBUSY)
        return wc_err(e, -EBADMSG, "%s; it is in use by pods on this node, so it stays until they are gone and is "
                      "filled again then", why.msg);
    log_json(LOG_WARN, "a copy failed verification; filling it again",
             json_pack("{s:s, s:s}", "content_id", cid, "error", why.msg));
    return 1;
}

int jobs_ensure(struct jobs *f, const struct fill_request *rq, int wait_ms, const atomic_int *cancel,
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

void jobs_resume(struct jobs *f, json_t *journals)
{
    size_t i;
    json_t *j;
    json_array_foreach(journals, i, j) {
        struct source_spec spec = {.url = json_string_value(json_object_get(j, "source")),
                                   .region = json_string_value(json_object_get(j, "region")),
                                   .endpoint = json_string_value(json_object_get(j, "endpoint")),
                                   .addressing = json_string_value(json_object_get(j, "addressing"))};
        struct fill_request rq = {
            .spec = &spec,
            .pinned = json_string_value(json_object_get(j, "listing_digest")),
            .pinned_objects = (uint64_t)json_integer_value(json_object_get(j, "files")),
            .pinned_bytes = (uint64_t)json_integer_value(json_object_get(j, "bytes")),
            .resume = 1,
        };
        struct wc_error e;
        if (!spec.url || !rq.pinned || source_url_check(spec.url, &e) < 0)
            continue; /* a journal we did not write: nothing to resume */
        char cid[CONTENT_ID_LEN + 1];
        int r = jobs_ensure(f, &rq, 0, NULL, cid, &e); /* starts it; does not wait */
        log_json(LOG_INFO, "resuming an interrupted fill",
                 json_pack("{s:s, s:s}", "source", spec.url, "state", r == 0 ? "already complete" : e.msg));
    }
}

void jobs_stop(struct jobs *f)
{
    pthread_mutex_lock(&f->lock);
    atomic_store(&f->stopping, 1);
    pthread_cond_broadcast(&f->cond);
    while (f->running_threads > 0)
        pthread_cond_wait(&f->cond, &f->lock);
    pthread_mutex_unlock(&f->lock);
}

json_t *jobs_status(struct jobs *f)
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

void jobs_collect(void *ctx, struct obs_text *t)
{
    struct jobs *f = ctx;
    obs_counter(t, "warmcache_fill_bytes_total", "Bytes written into the node store by fills (resumed bytes "
                "are not counted again).", atomic_load(&f->fetched_total));
    obs_family(t, "warmcache_fills_total", "counter", "Fills finished, by result.");
    obs_printf(t, "warmcache_fills_total{result=\"ok\"} %" PRIu64 "\n", (uint64_t)atomic_load(&f->ok));
    obs_printf(t, "warmcache_fills_total{result=\"failed\"} %" PRIu64 "\n", (uint64_t)atomic_load(&f->failed));
    uint64_t cumulative[JOBS_BUCKETS];
    for (int b = 0; b < JOBS_BUCKETS; b++)
        cumulative[b] = atomic_load(&f->duration_bucket[b]);
    obs_histogram(t, "warmcache_fill_duration_seconds", "Time from the start of a fill (listing included) to "
                  "its end.", jobs_buckets, cumulative, JOBS_BUCKETS,
                  (double)atomic_load(&f->duration_ms_sum) / 1000.0,
                  (uint64_t)(atomic_load(&f->ok) + atomic_load(&f->failed)));
    size_t active = 0;
    pthread_mutex_lock(&f->lock);
    for (struct fill_job *j = f->jobs; j; j = j->next)
        active++;
    pthread_mutex_unlock(&f->lock);
    obs_gauge(t, "warmcache_fills_active", "Fills running now.", (double)active);
    obs_counter(t, "warmcache_cache_hits_total", "Calls for a copy (NodeStage, inline publish, pre-warm, resume) that found the pinned copy ready and verified.",
                atomic_load(&f->hits));
    obs_counter(t, "warmcache_cache_misses_total", "Calls for a copy that had to start or join a fill.",
                atomic_load(&f->misses));
}
