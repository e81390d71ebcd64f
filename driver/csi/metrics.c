/*
 * Prometheus metrics on a plain HTTP port (--metrics-address): GET /metrics
 * answers the text exposition format, GET /healthz 200 when the plugin is
 * ready (what kubelet's liveness probe asks when the livenessprobe sidecar
 * is not used), anything else 404. One thread, one
 * connection at a time (a scrape every few seconds), a 2 s read timeout so a
 * stuck client cannot hold it. Labels carry no user data: no source URLs,
 * no names, nothing secret.
 */
#include "csi/metrics.h"
#include "base/log.h"
#include "base/macros.h"
#include "s3/client.h"

#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <unistd.h>

struct metrics_server {
    struct csi_ctx *c;
    int fd, wake[2];
    pthread_t thread;
};

struct text {
    char *p;
    size_t n, cap;
};

__attribute__((format(printf, 2, 3))) static void add(struct text *t, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int w = vsnprintf(t->p ? t->p + t->n : NULL, t->p ? t->cap - t->n : 0, fmt, ap);
        va_end(ap);
        if (w < 0)
            return;
        if (t->p && t->n + (size_t)w < t->cap) {
            t->n += (size_t)w;
            return;
        }
        size_t cap = (t->cap + (size_t)w + 1) * 2;
        char *np = realloc(t->p, cap);
        if (!np)
            return;
        t->p = np;
        t->cap = cap;
    }
}

static void family(struct text *t, const char *name, const char *type, const char *help)
{
    add(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter(struct text *t, const char *name, const char *help, uint64_t v)
{
    family(t, name, "counter", help);
    add(t, "%s %" PRIu64 "\n", name, v);
}

static void gauge(struct text *t, const char *name, const char *help, double v)
{
    family(t, name, "gauge", help);
    add(t, "%s %.17g\n", name, v);
}

char *metrics_render(struct csi_ctx *c)
{
    struct text t = {0};
    if (c->node) {
        struct fills *f = &c->fills;
        counter(&t, "warmcache_fill_bytes_total", "Bytes written into the node store by fills (resumed bytes "
                "are not counted again).", atomic_load(&f->fetched_total));
        family(&t, "warmcache_fills_total", "counter", "Fills finished, by result.");
        add(&t, "warmcache_fills_total{result=\"ok\"} %" PRIu64 "\n", (uint64_t)atomic_load(&f->ok));
        add(&t, "warmcache_fills_total{result=\"failed\"} %" PRIu64 "\n", (uint64_t)atomic_load(&f->failed));
        family(&t, "warmcache_fill_duration_seconds", "histogram",
               "Time from the start of a fill (listing included) to its end.");
        for (int b = 0; b < FILLS_BUCKETS; b++) {
            if (b == FILLS_BUCKETS - 1)
                add(&t, "warmcache_fill_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n",
                    (uint64_t)atomic_load(&f->duration_bucket[b]));
            else
                add(&t, "warmcache_fill_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n", fills_buckets[b],
                    (uint64_t)atomic_load(&f->duration_bucket[b]));
        }
        add(&t, "warmcache_fill_duration_seconds_sum %.3f\n", (double)atomic_load(&f->duration_ms_sum) / 1000.0);
        add(&t, "warmcache_fill_duration_seconds_count %" PRIu64 "\n",
            (uint64_t)(atomic_load(&f->ok) + atomic_load(&f->failed)));
        json_t *jobs _cleanup_json_ = fills_status(f);
        gauge(&t, "warmcache_fills_active", "Fills running now.", (double)json_array_size(jobs));
        counter(&t, "warmcache_cache_hits_total", "Stages and publishes that found the copy on the node.",
                atomic_load(&f->hits));
        counter(&t, "warmcache_cache_misses_total", "Stages and publishes that had to start or join a fill.",
                atomic_load(&f->misses));
        counter(&t, "warmcache_evictions_total", "Unused copies evicted to make room.",
                atomic_load(&c->store->evictions));
        struct statvfs v;
        double total = 0, avail = 0;
        if (statvfs(c->store->root, &v) == 0) {
            total = (double)v.f_blocks * (double)v.f_frsize;
            avail = (double)v.f_bavail * (double)v.f_frsize;
        }
        gauge(&t, "warmcache_store_capacity_bytes", "Size of the file system holding the node store.", total);
        gauge(&t, "warmcache_store_used_bytes", "Bytes used on that file system.", total - avail);
        gauge(&t, "warmcache_store_evictable_bytes", "Bytes of ready copies no volume uses (evictable).",
              (double)store_evictable_bytes(c->store));
    }
    counter(&t, "warmcache_s3_requests_total", "Requests sent to S3.", atomic_load(&s3_stats.requests));
    counter(&t, "warmcache_s3_retries_total", "S3 requests tried again after a retryable failure.",
            atomic_load(&s3_stats.retries));
    gauge(&t, "warmcache_s3_requests_in_flight", "Object requests of fills in flight now.",
          (double)atomic_load(&s3_stats.in_flight));
    gauge(&t, "warmcache_s3_request_budget", "Requests in flight the node's fills share (--s3-connections).",
          (double)s3_request_budget());
    family(&t, "warmcache_s3_errors_total", "counter", "S3 request failures, by kind.");
    for (int k = 0; k < S3_ERR_KINDS; k++)
        add(&t, "warmcache_s3_errors_total{kind=\"%s\"} %" PRIu64 "\n", s3_error_kind_names[k],
            (uint64_t)atomic_load(&s3_stats.errors[k]));
    return t.p;
}

static void serve_one(struct metrics_server *m, int fd)
{
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    char req[4096];
    size_t n = 0;
    while (n < sizeof(req) - 1) {
        ssize_t r = read(fd, req + n, sizeof(req) - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        req[n] = '\0';
        if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
            break;
    }
    req[n] = '\0';
    int metrics = strncmp(req, "GET /metrics ", 13) == 0 || strncmp(req, "GET /metrics?", 13) == 0;
    int health = strncmp(req, "GET /healthz ", 13) == 0;
    const char *status = "404 Not Found";
    _cleanup_free_ char *body = NULL;
    if (metrics) {
        body = metrics_render(m->c);
        status = "200 OK";
    } else if (health) {
        /* what the livenessprobe sidecar would ask of Probe: ready, and the store reachable */
        struct statvfs v;
        int ok = atomic_load(&m->c->ready) && (!m->c->node || statvfs(m->c->store->root, &v) == 0);
        body = strdup(ok ? "ok\n" : "not ready: the plugin is starting, or its store is unreachable\n");
        status = ok ? "200 OK" : "503 Service Unavailable";
    } else {
        body = strdup("not found: metrics are at /metrics, health at /healthz\n");
    }
    size_t bl = body ? strlen(body) : 0;
    char head[256];
    int hl = snprintf(head, sizeof(head), "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n", status,
                      metrics ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain", bl);
    if (write(fd, head, (size_t)hl) == hl && body)
        for (size_t off = 0; off < bl;) {
            ssize_t w = write(fd, body + off, bl - off);
            if (w <= 0)
                break;
            off += (size_t)w;
        }
}

static void *metrics_main(void *arg)
{
    struct metrics_server *m = arg;
    for (;;) {
        struct pollfd p[2] = {{m->fd, POLLIN, 0}, {m->wake[0], POLLIN, 0}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        if (p[0].revents & POLLIN) {
            int fd = accept4(m->fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0) {
                serve_one(m, fd);
                close(fd);
            }
        }
    }
    return NULL;
}

int metrics_start(struct csi_ctx *c, const char *addr, struct metrics_server **ret, struct wc_error *e)
{
    char host[256] = "";
    const char *colon = strrchr(addr, ':');
    if (!colon || !colon[1])
        return wc_err(e, -EINVAL, "--metrics-address \"%s\": want [host]:port, such as :9809", addr);
    snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
    if (host[0] == '[') { /* [::1]:9809 */
        memmove(host, host + 1, strlen(host));
        host[strcspn(host, "]")] = '\0';
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    int r = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &ai);
    if (r != 0)
        return wc_err(e, -EINVAL, "--metrics-address \"%s\": %s", addr, gai_strerror(r));
    struct metrics_server *m = calloc(1, sizeof(*m));
    if (!m) {
        freeaddrinfo(ai);
        return -ENOMEM;
    }
    m->c = c;
    m->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
    int one = 1;
    if (m->fd >= 0)
        setsockopt(m->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    r = m->fd < 0 || bind(m->fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(m->fd, 16) < 0 ? -errno : 0;
    freeaddrinfo(ai);
    if (r == 0 && pipe2(m->wake, O_CLOEXEC) < 0)
        r = -errno;
    if (r == 0 && pthread_create(&m->thread, NULL, metrics_main, m) != 0)
        r = -EAGAIN;
    if (r < 0) {
        if (m->fd >= 0)
            close(m->fd);
        free(m);
        return wc_err_errno(e, r, "metrics on %s", addr);
    }
    log_json(LOG_INFO, "metrics", json_pack("{s:s}", "address", addr));
    *ret = m;
    return 0;
}

void metrics_stop(struct metrics_server *m)
{
    if (!m)
        return;
    if (write(m->wake[1], "x", 1) < 0) {
        /* the thread also ends with the process */
    }
    pthread_join(m->thread, NULL);
    close(m->wake[0]);
    close(m->wake[1]);
    close(m->fd);
    free(m);
}
