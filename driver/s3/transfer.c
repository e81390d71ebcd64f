/*
 * The parallel fill engine: a few threads (one per CPU, at most 8), each
 * driving its share of the connections on its own curl multi handle. Receiving
 * and writing a byte costs kernel time on the receiving core, so one thread
 * tops out near one core's copy bandwidth; more threads use the others.
 *
 * Each thread owns a run of whole objects (the parts split by bytes at object
 * boundaries) and takes its parts in order, so a file's parts finish close
 * together and two threads do not write into one file: writes to a file hold
 * its inode lock, and two threads taking turns on it spent a sixth of the
 * fill's CPU spinning on that lock (perf, 4 x 1 GiB into tmpfs). A thread
 * whose run is done takes parts from the end of the longest run left. A
 * retried part waits out its backoff in its thread's list while every
 * connection keeps working.
 *
 * Every request in flight holds a token of the process's budget (if one is
 * set): concurrent fills on a node share its network instead of each opening
 * its own full set of connections. Every request also waits its turn under
 * the node's rate limit for the prefix (rate.h), which S3's SlowDowns set;
 * a SlowDown is retried for as long as other parts of the fill still
 * arrive (throttling slows a fill, it does not fail it), and counts as a
 * failed attempt only once none has for PROGRESS_WINDOW_S.
 */
#include "s3/client.h"
#include "base/macros.h"
#include "base/units.h"
#include "s3/internal.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROGRESS_WINDOW_S 30
#define WRITE_RUN (128u << 10) /* bytes gathered per pwrite, per connection */

struct slot {
    CURL *h;
    struct sink sink;
    uint64_t crc;
    struct s3_req rq;
    size_t part;
    int busy;
};

struct retry {
    size_t part;
    double due;
};

/* What the threads share. */
struct shared {
    struct s3_client *c;
    const struct s3_transfer *t;
    pthread_mutex_t lock;
    struct run { size_t next, end; } *runs; /* per thread: parts not yet started */
    unsigned nruns;
    atomic_int stop;           /* a thread failed: the others finish now */
    int err;
    struct wc_error e;
    uint8_t *attempts;         /* per part; a part belongs to one thread at a time */
    unsigned held;             /* budget tokens held (under c->budget_lock) */
    struct s3_rate *rate;      /* the prefix's request rate, node-wide; NULL: none */
    _Atomic uint64_t last_done_ms; /* mono ms when a part last arrived; 0: none yet */
};

struct engine {
    struct shared *sh;
    unsigned id;               /* its run in sh->runs */
    struct s3_client *c;
    const struct s3_transfer *t;
    CURLM *m;
    struct slot *slots;
    unsigned nslots, active;
    struct retry *retry;       /* this thread's parts waiting out a backoff */
    unsigned nretry, retry_cap;
    struct wc_error e;
};

unsigned s3_connections_for_gbps(double gbps)
{
    double n = ceil(gbps * 1e9 / 8 / 85e6);
    return n < 1 ? 1 : n > 1024 ? 1024 : (unsigned)n;
}

void s3_ctx_set_budget(struct s3_ctx *c, unsigned n)
{
    pthread_mutex_lock(&c->budget_lock);
    c->budget_size = n;
    pthread_mutex_unlock(&c->budget_lock);
}

static void budget_join(struct s3_ctx *c, int delta)
{
    pthread_mutex_lock(&c->budget_lock);
    c->budget_transfers += delta;
    pthread_mutex_unlock(&c->budget_lock);
}

/* A token for one more request of this transfer: while the budget has one
 * and the transfer holds less than its share. */
static int budget_take(struct shared *sh)
{
    struct s3_ctx *c = sh->c->ctx;
    pthread_mutex_lock(&c->budget_lock);
    unsigned share = c->budget_size ? (c->budget_size + c->budget_transfers - 1) / c->budget_transfers : UINT_MAX;
    int ok = !c->budget_size || (c->budget_taken < c->budget_size && sh->held < share);
    if (ok) {
        c->budget_taken++;
        sh->held++;
    }
    pthread_mutex_unlock(&c->budget_lock);
    if (ok)
        atomic_fetch_add(&c->stats.in_flight, 1);
    return ok;
}

static void budget_give(struct shared *sh)
{
    struct s3_ctx *c = sh->c->ctx;
    pthread_mutex_lock(&c->budget_lock);
    c->budget_taken--;
    sh->held--;
    pthread_mutex_unlock(&c->budget_lock);
    atomic_fetch_sub(&c->stats.in_flight, 1);
}

static int start(struct engine *g, struct slot *sl, size_t i, struct wc_error *e)
{
    const struct s3_transfer *t = g->t;
    struct s3_part p;
    t->part(t->ctx, i, &p);
    int fd = t->fd(t->ctx, i, e);
    if (fd < 0)
        return fd;
    char path[4 * (PATHKEY_MAX + 80)], range[64], match[160];
    if (s3_object_path(g->c, p.key, path, sizeof(path)) < 0)
        return wc_err(e, -ENAMETOOLONG, "key too long: %.200s", p.key);
    int whole = p.off == 0 && p.len == p.size;
    snprintf(range, sizeof(range), "bytes=%" PRIu64 "-%" PRIu64, p.off, p.off + p.len - 1);
    snprintf(match, sizeof(match), "\"%s\"", p.etag ? p.etag : "");
    struct s3_req_opts o = {.range = whole ? NULL : range, .if_match = p.etag && *p.etag ? match : NULL,
                            .checksum_mode = whole && t->checksum};
    int r = s3_req_build(g->c, path, &o, &sl->rq, e);
    if (r < 0)
        return r;
    sl->sink.fd = fd;
    sl->sink.off = p.off;
    sl->sink.want = p.len;
    sl->sink.progress = t->progress;
    sl->sink.cancel = t->cancel;
    s3_easy_setup(sl->h, &sl->rq, &sl->sink, 0);
    sl->crc = cksum_crc64nvme_init();
    sl->sink.crc64 = t->part_crc ? &sl->crc : NULL;
    curl_easy_setopt(sl->h, CURLOPT_PRIVATE, sl);
    if (curl_multi_add_handle(g->m, sl->h) != CURLM_OK) {
        s3_req_done(&sl->rq);
        return wc_err(e, -ENOMEM, "cannot start a request");
    }
    sl->part = i;
    sl->busy = 1;
    g->active++;
    return 0;
}

/* The next part to start: a retry whose backoff is over, else a new one. */
static int pick(struct engine *g, double now, size_t *ret)
{
    for (unsigned k = 0; k < g->nretry; k++)
        if (g->retry[k].due <= now) {
            *ret = g->retry[k].part;
            g->retry[k] = g->retry[--g->nretry];
            return 1;
        }
    struct shared *sh = g->sh;
    pthread_mutex_lock(&sh->lock);
    struct run *own = &sh->runs[g->id], *longest = own;
    int got = own->next < own->end;
    if (got) {
        *ret = own->next++;
    } else {
        for (unsigned k = 0; k < sh->nruns; k++)
            if (sh->runs[k].end - sh->runs[k].next > longest->end - longest->next)
                longest = &sh->runs[k];
        if ((got = longest->next < longest->end))
            *ret = --longest->end;
    }
    pthread_mutex_unlock(&sh->lock);
    return got;
}

static size_t parts_left_locked(const struct shared *sh)
{
    size_t n = 0;
    for (unsigned k = 0; k < sh->nruns; k++)
        n += sh->runs[k].end - sh->runs[k].next;
    return n;
}

static int more_parts(struct engine *g)
{
    pthread_mutex_lock(&g->sh->lock);
    int more = parts_left_locked(g->sh) > 0;
    pthread_mutex_unlock(&g->sh->lock);
    return more;
}

/* Cuts the parts into n runs of about equal bytes, each starting at an
 * object's first part (a run may be empty: one object is one run). */
static void split_runs(const struct s3_transfer *t, struct run *runs, unsigned n)
{
    uint64_t total = 0, acc = 0;
    struct s3_part p;
    for (size_t i = 0; i < t->n; i++) {
        t->part(t->ctx, i, &p);
        total += p.len;
    }
    unsigned k = 0;
    runs[0].next = 0;
    for (size_t i = 0; i < t->n; i++) {
        t->part(t->ctx, i, &p);
        if (p.off == 0 && k + 1 < n && acc >= total / n * (k + 1)) {
            runs[k].end = i;
            runs[++k].next = i;
        }
        acc += p.len;
    }
    runs[k].end = t->n;
    while (++k < n)
        runs[k].next = runs[k].end = t->n;
}

static int finish(struct engine *g, struct slot *sl, CURLcode cc, struct wc_error *e)
{
    const struct s3_transfer *t = g->t;
    curl_multi_remove_handle(g->m, sl->h);
    s3_req_done(&sl->rq);
    sl->busy = 0;
    g->active--;
    budget_give(g->sh);
    s3_sink_flush(&sl->sink); /* all of the body in the file, or io_error says why not */
    struct s3_part p;
    t->part(t->ctx, sl->part, &p);
    int r = s3_outcome(g->c, "s3:GetObject", p.key, cc, &sl->sink, e);
    double now = mono_s();
    int throttled = sl->sink.throttled;
    if (throttled)
        s3_rate_throttled(g->sh->rate, now);
    else if (r == 0)
        s3_rate_ok(g->sh->rate, now);
    if (r == 0)
        atomic_store(&g->sh->last_done_ms, (uint64_t)(now * 1000));
    if (r == 0 && t->checksum && p.off == 0 && p.len == p.size)
        t->checksum(t->ctx, sl->part, &sl->sink.cks);
    if (r == 0 && t->part_crc)
        t->part_crc(t->ctx, sl->part, cksum_crc64nvme_final(sl->crc));
    if (r == 0)
        return t->done(t->ctx, sl->part, e);
    if (t->progress && sl->sink.written - sl->sink.wn)
        atomic_fetch_sub(t->progress, sl->sink.written - sl->sink.wn); /* these bytes come again */
    if (r != -EAGAIN)
        return r;
    uint8_t *attempts = &g->sh->attempts[sl->part];
    uint64_t last = atomic_load(&g->sh->last_done_ms);
    int progressing = throttled && last && now * 1000 - (double)last < PROGRESS_WINDOW_S * 1000;
    int attempt = progressing ? *attempts + 1 : ++*attempts;
    if (!progressing && attempt >= S3_RETRIES)
        return wc_err_prefix(e, "gave up after %d attempts: ", S3_RETRIES);
    if (t->retries)
        atomic_fetch_add(t->retries, 1);
    atomic_fetch_add(&g->c->ctx->stats.retries, 1);
    if (g->nretry == g->retry_cap) {
        unsigned cap = g->retry_cap ? g->retry_cap * 2 : 16;
        struct retry *nr = realloc(g->retry, cap * sizeof(*nr));
        if (!nr)
            return wc_err(e, -ENOMEM, "out of memory");
        g->retry = nr;
        g->retry_cap = cap;
    }
    g->retry[g->nretry++] = (struct retry){sl->part, now + s3_backoff_ms(attempt) / 1000.0};
    return 0;
}

static int run(struct engine *g, struct wc_error *e)
{
    const struct s3_transfer *t = g->t;
    for (;;) {
        if (t->cancel && atomic_load(t->cancel))
            return wc_err(e, -ECANCELED, "fill cancelled");
        if (atomic_load(&g->sh->stop))
            return -ECANCELED; /* another thread failed; its error is the one reported */
        double now = mono_s();
        int starved = 0; /* a free slot and a part, but no token in the budget */
        double paced = 0; /* ... or not yet the prefix's turn: this long to wait */
        for (unsigned k = 0; k < g->nslots && g->active < g->nslots; k++) {
            size_t i;
            if (g->slots[k].busy)
                continue;
            if (!budget_take(g->sh)) {
                starved = 1;
                break;
            }
            if ((paced = s3_rate_take(g->sh->rate, now)) > 0) {
                budget_give(g->sh);
                break;
            }
            if (!pick(g, now, &i)) {
                s3_rate_untake(g->sh->rate);
                budget_give(g->sh);
                break;
            }
            int r = start(g, &g->slots[k], i, e);
            if (r < 0) {
                budget_give(g->sh);
                return r;
            }
        }
        if (g->active == 0 && g->nretry == 0 && !more_parts(g))
            return 0;
        int running;
        curl_multi_perform(g->m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(g->m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct slot *sl;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&sl);
            int r = finish(g, sl, msg->data.result, e);
            if (r < 0)
                return r;
        }
        /* sleep until there is I/O, or the next retry is due, or 100 ms; a
         * free slot with work for it goes at once, unless the prefix's rate
         * (paced) or the node's budget (starved: tokens come back as other
         * fills' requests end) holds it back */
        double wait = 0.1;
        for (unsigned k = 0; k < g->nretry; k++)
            if (g->retry[k].due - now < wait)
                wait = g->retry[k].due - now;
        if (wait < 0)
            wait = 0;
        if (g->active < g->nslots && (paced > 0 || starved))
            wait = paced > 0 ? (paced < 0.1 ? paced : 0.1) : 0.02;
        else if (g->active < g->nslots && more_parts(g))
            wait = 0;
        if (wait > 0)
            curl_multi_poll(g->m, NULL, 0, (int)(wait * 1000) + 1, NULL);
    }
}

static void engine_free(struct engine *g)
{
    const struct s3_transfer *t = g->t;
    for (unsigned k = 0; g->slots && k < g->nslots; k++) {
        struct slot *sl = &g->slots[k];
        if (sl->busy) {
            curl_multi_remove_handle(g->m, sl->h);
            s3_req_done(&sl->rq);
            if (t->progress && sl->sink.written - sl->sink.wn)
                atomic_fetch_sub(t->progress, sl->sink.written - sl->sink.wn);
            budget_give(g->sh);
        }
        if (sl->h)
            curl_easy_cleanup(sl->h);
        free(sl->sink.buf);
        free(sl->sink.wbuf);
    }
    if (g->m)
        curl_multi_cleanup(g->m);
    free(g->slots);
    free(g->retry);
}

static void *engine_main(void *arg)
{
    struct engine *g = arg;
    struct shared *sh = g->sh;
    wc_error_clear(&g->e);
    int r = 0;
    g->m = curl_multi_init();
    g->slots = calloc(g->nslots, sizeof(*g->slots));
    if (!g->m || !g->slots)
        r = -ENOMEM;
    for (unsigned k = 0; r == 0 && k < g->nslots; k++) {
        if (!(g->slots[k].h = curl_easy_init()))
            r = -ENOMEM;
        /* gathered writes (sink.wbuf); without the buffer, a write per arrival */
        if ((g->slots[k].sink.wbuf = malloc(WRITE_RUN)))
            g->slots[k].sink.wcap = WRITE_RUN;
    }
    if (r == 0) {
        curl_multi_setopt(g->m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)g->nslots);
        curl_multi_setopt(g->m, CURLMOPT_MAXCONNECTS, (long)g->nslots);
        r = run(g, &g->e);
    } else {
        r = wc_err(&g->e, r, "out of memory starting %u connections", g->nslots);
    }
    engine_free(g);
    if (r < 0) {
        pthread_mutex_lock(&sh->lock);
        if (!sh->err && !(r == -ECANCELED && atomic_load(&sh->stop))) {
            sh->err = r;
            sh->e = g->e;
        }
        atomic_store(&sh->stop, 1);
        pthread_mutex_unlock(&sh->lock);
    }
    return NULL;
}

int s3_transfer_run(struct s3_client *c, const struct s3_transfer *t, struct wc_error *e)
{
    if (t->n == 0)
        return 0;
    unsigned conns = t->connections ? t->connections : 16;
    if (conns > t->n)
        conns = (unsigned)t->n;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned nthreads = cpus < 1 ? 1 : cpus > 8 ? 8 : (unsigned)cpus;
    if (nthreads > (conns + 3) / 4)
        nthreads = (conns + 3) / 4; /* at least 4 connections a thread */
    struct shared sh = {.c = c, .t = t, .nruns = nthreads};
    struct engine *gs = calloc(nthreads, sizeof(*gs));
    sh.attempts = calloc(t->n, 1);
    sh.runs = calloc(nthreads, sizeof(*sh.runs));
    pthread_t *tids = calloc(nthreads, sizeof(*tids));
    if (!gs || !sh.attempts || !sh.runs || !tids) {
        free(gs);
        free(sh.attempts);
        free(sh.runs);
        free(tids);
        return wc_err(e, -ENOMEM, "out of memory starting a transfer of %zu parts", t->n);
    }
    pthread_mutex_init(&sh.lock, NULL);
    split_runs(t, sh.runs, nthreads);
    char key[sizeof(((struct s3_rate *)0)->key)];
    snprintf(key, sizeof(key), "%s/%s/%s", c->endpoint, c->bucket, c->prefix);
    sh.rate = s3_rate_get(&c->ctx->rates, key);
    budget_join(c->ctx, 1);
    unsigned started = 0;
    for (unsigned k = 0; k < nthreads; k++) {
        gs[k] = (struct engine){.sh = &sh, .id = k, .c = c, .t = t,
                                .nslots = conns / nthreads + (k < conns % nthreads ? 1 : 0)};
        if (k > 0 && pthread_create(&tids[k], NULL, engine_main, &gs[k]) != 0)
            break;
        started++;
    }
    engine_main(&gs[0]); /* this thread is one of them */
    for (unsigned k = 1; k < started; k++)
        pthread_join(tids[k], NULL);
    budget_join(c->ctx, -1);
    s3_rate_put(&c->ctx->rates, sh.rate, mono_s());
    int r = sh.err;
    if (r < 0)
        *e = sh.e;
    else if (parts_left_locked(&sh)) /* a thread could not start and the rest stopped: impossible, but never silent */
        r = wc_err(e, -EIO, "transfer stopped with %zu parts not started", parts_left_locked(&sh));
    pthread_mutex_destroy(&sh.lock);
    free(gs);
    free(sh.attempts);
    free(sh.runs);
    free(tids);
    return r;
}
