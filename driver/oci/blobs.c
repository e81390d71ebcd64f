/* Blobs in parallel: one thread per connection, each with its own
 * kept-alive handle, taking the next part from a shared counter. A
 * registry serves blobs from blob storage at a few hundred MB/s per
 * connection; blocking requests on a thread each are the simplest engine
 * that fills that (the S3 engine's event loops pay off at 100+ connections).
 * A part retried waits its backoff on its own thread while the others go
 * on; any failure a retry will not cure stops every thread. */
#include "oci/internal.h"
#include "base/macros.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define THREADS_MAX 64
#define WRITE_RUN (256u << 10) /* bytes gathered per pwrite, per connection */

struct pool {
    struct oci_client *c;
    const struct oci_transfer *t;
    atomic_size_t next;
    atomic_int stop;
    pthread_mutex_t lock;
    int err;
    struct wc_error e;
};

static int stopped(struct pool *p)
{
    return atomic_load(&p->stop) || (p->t->cancel && atomic_load(p->t->cancel));
}

static int fetch_part(struct pool *p, CURL *h, char *wbuf, size_t i, struct wc_error *e)
{
    const struct oci_transfer *t = p->t;
    struct oci_part part;
    t->part(t->ctx, i, &part);
    int fd = t->fd(t->ctx, i, e);
    if (fd < 0)
        return fd;
    char path[OCI_REPO_MAX + OCI_DIGEST_LEN + 16], range[64], what[OCI_DIGEST_LEN + 64];
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", p->c->ref.repo, part.digest);
    snprintf(range, sizeof(range), "bytes=%" PRIu64 "-%" PRIu64, part.off, part.off + part.len - 1);
    snprintf(what, sizeof(what), "blob %.19s… bytes %" PRIu64 "+%" PRIu64, part.digest, part.off, part.len);
    int whole = part.off == 0 && part.len == part.size;
    struct oci_req rq = {.path = path, .range = whole ? NULL : range, .range_off = part.off, .follow = 1};
    struct oci_resp rs = {.fd = fd, .off = part.off, .want = part.len, .progress = t->progress, .cancel = t->cancel,
                          .stop = &p->stop, .wbuf = wbuf, .wcap = WRITE_RUN};
    int r = -EAGAIN;
    for (int attempt = 0; attempt < OCI_RETRIES && r == -EAGAIN; attempt++) {
        if (attempt) {
            if (t->retries)
                atomic_fetch_add(t->retries, 1);
            /* in slices: a cancel or another part's failure does not wait out a backoff */
            for (unsigned ms = oci_backoff_ms(attempt); ms > 0 && !stopped(p); ms -= ms < 100 ? ms : 100)
                usleep((ms < 100 ? ms : 100) * 1000);
        }
        if (stopped(p))
            return t->cancel && atomic_load(t->cancel) ? wc_err(e, -ECANCELED, "cancelled") : -ECANCELED;
        wc_error_clear(e);
        r = oci_send(p->c, h, &rq, &rs, what, e);
        if (r == 0 && !whole && rs.status != 206)
            r = wc_err(e, -EPROTO, "%s: registry %s answered a range with HTTP %ld, not 206", what, p->c->ref.host,
                       rs.status);
        else if (r == 0 && rs.written != rs.want)
            r = wc_err(e, -EAGAIN, "%s: the body ended after %" PRIu64 " bytes", what, rs.written);
    }
    free(rs.buf);
    if (r < 0)
        return r == -EAGAIN ? wc_err_prefix(e, "gave up after %d attempts: ", OCI_RETRIES) : r;
    return t->done(t->ctx, i, e);
}

static void *worker(void *arg)
{
    struct pool *p = arg;
    CURL *h = curl_easy_init();
    _cleanup_free_ char *wbuf = malloc(WRITE_RUN);
    struct wc_error e = {0};
    int r = h && wbuf ? 0 : -ENOMEM;
    while (r == 0 && !atomic_load(&p->stop)) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->t->n)
            break;
        r = fetch_part(p, h, wbuf, i, &e);
    }
    curl_easy_cleanup(h);
    if (r < 0 && r != -ECANCELED) {
        pthread_mutex_lock(&p->lock);
        if (!p->err) {
            p->err = r;
            p->e = e;
        }
        pthread_mutex_unlock(&p->lock);
        atomic_store(&p->stop, 1);
    }
    return NULL;
}

int oci_transfer_run(struct oci_client *c, const struct oci_transfer *t, struct wc_error *e)
{
    if (t->n == 0)
        return 0;
    unsigned n = t->connections ? t->connections : 16;
    if (n > THREADS_MAX)
        n = THREADS_MAX;
    if (n > t->n)
        n = (unsigned)t->n;
    struct pool p = {.c = c, .t = t};
    pthread_mutex_init(&p.lock, NULL);
    pthread_t th[THREADS_MAX];
    unsigned started = 0;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 256u << 10);
    for (; started < n; started++)
        if (pthread_create(&th[started], &at, worker, &p) != 0)
            break;
    pthread_attr_destroy(&at);
    for (unsigned i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_destroy(&p.lock);
    if (started == 0)
        return wc_err(e, -EAGAIN, "registry %s: no thread could be started", c->ref.host);
    if (p.err) {
        *e = p.e;
        return p.err;
    }
    if (t->cancel && atomic_load(t->cancel))
        return wc_err(e, -ECANCELED, "cancelled");
    if (atomic_load(&p.next) < t->n) /* cannot be: every thread ran out of parts or failed */
        return wc_err(e, -EIO, "registry %s: %zu parts were not fetched", c->ref.host, t->n - atomic_load(&p.next));
    return 0;
}
