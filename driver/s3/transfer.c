/*
 * The parallel fill engine: one thread drives up to `connections` ranged GETs
 * on a curl multi handle. Parts are started in order, so a file's parts finish
 * close together and few files are open at once; a retried part waits out its
 * backoff in a small list while every connection keeps working.
 */
#include "s3/client.h"
#include "base/macros.h"
#include "s3/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct slot {
    CURL *h;
    struct sink sink;
    struct s3_req rq;
    size_t part;
    int busy;
};

struct retry {
    size_t part;
    double due;
};

struct engine {
    struct s3_client *c;
    const struct s3_transfer *t;
    CURLM *m;
    struct slot *slots;
    unsigned nslots, active;
    size_t next;               /* first part never started */
    uint8_t *attempts;         /* per part */
    struct retry *retry;       /* parts waiting out a backoff */
    unsigned nretry;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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
    int r = s3_req_build(g->c, path, NULL, whole ? NULL : range, p.etag && *p.etag ? match : NULL, &sl->rq, e);
    if (r < 0)
        return r;
    sl->sink.fd = fd;
    sl->sink.off = p.off;
    sl->sink.want = p.len;
    sl->sink.progress = t->progress;
    sl->sink.cancel = t->cancel;
    s3_easy_setup(sl->h, &sl->rq, &sl->sink);
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
    if (g->next < g->t->n) {
        *ret = g->next++;
        return 1;
    }
    return 0;
}

static int finish(struct engine *g, struct slot *sl, CURLcode cc, struct wc_error *e)
{
    const struct s3_transfer *t = g->t;
    curl_multi_remove_handle(g->m, sl->h);
    s3_req_done(&sl->rq);
    sl->busy = 0;
    g->active--;
    struct s3_part p;
    t->part(t->ctx, sl->part, &p);
    int r = s3_outcome(g->c, "s3:GetObject", p.key, cc, &sl->sink, e);
    if (r == 0)
        return t->done(t->ctx, sl->part, e);
    if (t->progress && sl->sink.written)
        atomic_fetch_sub(t->progress, sl->sink.written); /* these bytes come again */
    if (r != -EAGAIN)
        return r;
    if (++g->attempts[sl->part] >= S3_RETRIES)
        return wc_err_prefix(e, "gave up after %d attempts: ", S3_RETRIES);
    if (t->retries)
        atomic_fetch_add(t->retries, 1);
    g->retry[g->nretry++] = (struct retry){sl->part, now_s() + s3_backoff_ms(g->attempts[sl->part]) / 1000.0};
    return 0;
}

static int run(struct engine *g, struct wc_error *e)
{
    const struct s3_transfer *t = g->t;
    for (;;) {
        if (t->cancel && atomic_load(t->cancel))
            return wc_err(e, -ECANCELED, "fill cancelled");
        double now = now_s();
        for (unsigned k = 0; k < g->nslots && g->active < g->nslots; k++) {
            size_t i;
            if (g->slots[k].busy || !pick(g, now, &i))
                continue;
            int r = start(g, &g->slots[k], i, e);
            if (r < 0)
                return r;
        }
        if (g->active == 0 && g->nretry == 0 && g->next >= t->n)
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
        /* sleep until there is I/O, or the next retry is due, or 100 ms */
        double wait = 0.1;
        for (unsigned k = 0; k < g->nretry; k++)
            if (g->retry[k].due - now < wait)
                wait = g->retry[k].due - now;
        if (g->active < g->nslots && g->next < t->n)
            wait = 0;
        if (wait > 0)
            curl_multi_poll(g->m, NULL, 0, (int)(wait * 1000) + 1, NULL);
    }
}

int s3_transfer_run(struct s3_client *c, const struct s3_transfer *t, struct wc_error *e)
{
    if (t->n == 0)
        return 0;
    unsigned n = t->connections ? t->connections : 16;
    if (n > t->n)
        n = (unsigned)t->n;
    struct engine g = {.c = c, .t = t, .nslots = n};
    g.m = curl_multi_init();
    g.slots = calloc(n, sizeof(*g.slots));
    g.retry = calloc(t->n, sizeof(*g.retry)); /* at most one wait per part */
    g.attempts = calloc(t->n, 1);
    int r = 0;
    if (!g.m || !g.slots || !g.retry || !g.attempts)
        r = -ENOMEM;
    for (unsigned k = 0; r == 0 && k < n; k++)
        if (!(g.slots[k].h = curl_easy_init()))
            r = -ENOMEM;
    if (r == 0) {
        curl_multi_setopt(g.m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)n);
        curl_multi_setopt(g.m, CURLMOPT_MAXCONNECTS, (long)n);
        r = run(&g, e);
    } else {
        r = wc_err(e, r, "out of memory starting %u connections", n);
    }
    for (unsigned k = 0; g.slots && k < n; k++) {
        struct slot *sl = &g.slots[k];
        if (sl->busy) {
            curl_multi_remove_handle(g.m, sl->h);
            s3_req_done(&sl->rq);
            if (t->progress && sl->sink.written)
                atomic_fetch_sub(t->progress, sl->sink.written);
        }
        if (sl->h)
            curl_easy_cleanup(sl->h);
        free(sl->sink.buf);
    }
    if (g.m)
        curl_multi_cleanup(g.m);
    free(g.slots);
    free(g.retry);
    free(g.attempts);
    return r;
}
