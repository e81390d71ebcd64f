/* See http.h. */
#include "observe/http.h"
#include "base/log.h"
#include "base/macros.h"
#include "base/units.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

struct obs_http {
    const struct obs_registry *reg;
    int (*healthy)(void *ctx);
    void *ctx;
    int fd, wake[2];
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t idle;
    /* the connection threads' sockets and start times, under lock; fd -1:
     * free. Twice the cap: a connection past HTTP_CONNECTIONS cuts the oldest short */
    struct { int fd, cut; double t; } live[2 * HTTP_CONNECTIONS];
};

struct conn {
    struct obs_http *m;
    int fd;                     /* non-blocking */
    int slot;                   /* in m->live */
    double deadline;            /* mono_s() */
};

/* Waits until fd is ready for events or the connection's time is up (-1). */
static int ready(const struct conn *c, short events)
{
    for (;;) {
        double left = c->deadline - mono_s();
        if (left <= 0)
            return -1;
        struct pollfd p = {c->fd, events, 0};
        int r = poll(&p, 1, (int)(left * 1000) + 1);
        if (r > 0)
            return p.revents & (events | POLLHUP | POLLERR) ? 0 : -1;
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

static ssize_t read_some(const struct conn *c, char *buf, size_t n)
{
    for (;;) {
        if (ready(c, POLLIN) < 0)
            return -1;
        ssize_t r = read(c->fd, buf, n);
        if (r >= 0 || (errno != EAGAIN && errno != EINTR))
            return r;
    }
}

static int write_all(const struct conn *c, const char *buf, size_t n)
{
    for (size_t off = 0; off < n;) {
        if (ready(c, POLLOUT) < 0)
            return -1;
        ssize_t w = write(c->fd, buf + off, n - off);
        if (w < 0 && errno != EAGAIN && errno != EINTR)
            return -1;
        if (w > 0)
            off += (size_t)w;
    }
    return 0;
}

static void serve_one(struct obs_http *m, const struct conn *c)
{
    char req[4096];
    size_t n = 0;
    while (n < sizeof(req) - 1) {
        ssize_t r = read_some(c, req + n, sizeof(req) - 1 - n);
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
        body = obs_render(m->reg);
        status = "200 OK";
    } else if (health) {
        int ok = !m->healthy || m->healthy(m->ctx);
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
    if (write_all(c, head, (size_t)hl) == 0 && body)
        write_all(c, body, bl);
}

/* connection threads running, cut short or not */
static int running_locked(const struct obs_http *m)
{
    int n = 0;
    for (size_t i = 0; i < ARRAY_SIZE(m->live); i++)
        n += m->live[i].fd >= 0;
    return n;
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    struct obs_http *m = c->m;
    serve_one(m, c);
    pthread_mutex_lock(&m->lock);
    m->live[c->slot].fd = -1; /* before the close: nobody cuts a number reused */
    pthread_cond_broadcast(&m->idle);
    pthread_mutex_unlock(&m->lock);
    close(c->fd);
    free(c);
    return NULL;
}

/* A thread per connection. With HTTP_CONNECTIONS running, a new one cuts
 * the oldest short (shutdown: its thread ends at once), so clients that hold
 * their connections cannot keep a probe out; only a flood of new ones past
 * twice that is closed unanswered. Under m->lock; -1: no room. */
static int take_slot_locked(struct obs_http *m)
{
    int running = 0, oldest = -1, free_slot = -1;
    for (int i = 0; i < (int)ARRAY_SIZE(m->live); i++) {
        if (m->live[i].fd < 0) {
            if (free_slot < 0)
                free_slot = i;
            continue;
        }
        if (!m->live[i].cut) {
            running++;
            if (oldest < 0 || m->live[i].t < m->live[oldest].t)
                oldest = i;
        }
    }
    if (free_slot < 0)
        return -1;
    if (running >= HTTP_CONNECTIONS && oldest >= 0) {
        shutdown(m->live[oldest].fd, SHUT_RDWR);
        m->live[oldest].cut = 1;
    }
    return free_slot;
}

static void start_conn(struct obs_http *m, int fd)
{
    struct conn *c = malloc(sizeof(*c));
    double now = mono_s();
    pthread_mutex_lock(&m->lock);
    int slot = c ? take_slot_locked(m) : -1;
    if (slot >= 0) {
        m->live[slot].fd = fd;
        m->live[slot].cut = 0;
        m->live[slot].t = now;
    }
    pthread_mutex_unlock(&m->lock);
    if (slot < 0) {
        free(c);
        close(fd);
        return;
    }
    *c = (struct conn){m, fd, slot, now + HTTP_DEADLINE_S};
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    if (pthread_create(&t, &attr, conn_main, c) != 0) {
        pthread_mutex_lock(&m->lock);
        m->live[slot].fd = -1;
        pthread_mutex_unlock(&m->lock);
        close(fd);
        free(c);
    }
    pthread_attr_destroy(&attr);
}

static void *http_main(void *arg)
{
    struct obs_http *m = arg;
    for (;;) {
        struct pollfd p[2] = {{m->fd, POLLIN, 0}, {m->wake[0], POLLIN, 0}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        if (p[0].revents & POLLIN) {
            int fd = accept4(m->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (fd >= 0)
                start_conn(m, fd);
        }
    }
    return NULL;
}

int obs_http_start(const char *addr, const struct obs_registry *reg, int (*healthy)(void *ctx), void *ctx,
                   struct obs_http **ret, struct wc_error *e)
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
    struct obs_http *m = calloc(1, sizeof(*m));
    if (!m) {
        freeaddrinfo(ai);
        return -ENOMEM;
    }
    m->reg = reg;
    m->healthy = healthy;
    m->ctx = ctx;
    m->wake[0] = m->wake[1] = -1;
    for (size_t i = 0; i < ARRAY_SIZE(m->live); i++)
        m->live[i].fd = -1;
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->idle, NULL);
    m->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
    int one = 1;
    if (m->fd >= 0)
        setsockopt(m->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    r = m->fd < 0 || bind(m->fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(m->fd, 16) < 0 ? -errno : 0;
    freeaddrinfo(ai);
    if (r == 0 && pipe2(m->wake, O_CLOEXEC) < 0)
        r = -errno;
    if (r == 0 && pthread_create(&m->thread, NULL, http_main, m) != 0)
        r = -EAGAIN;
    if (r < 0) {
        if (m->fd >= 0)
            close(m->fd);
        if (m->wake[0] >= 0) {
            close(m->wake[0]);
            close(m->wake[1]);
        }
        free(m);
        return wc_err_errno(e, r, "metrics on %s", addr);
    }
    log_json(LOG_INFO, "metrics", json_pack("{s:s}", "address", addr));
    *ret = m;
    return 0;
}

void obs_http_stop(struct obs_http *m)
{
    if (!m)
        return;
    if (write(m->wake[1], "x", 1) < 0) {
        /* the thread also ends with the process */
    }
    pthread_join(m->thread, NULL);
    pthread_mutex_lock(&m->lock); /* connections end by their deadline */
    while (running_locked(m) > 0)
        pthread_cond_wait(&m->idle, &m->lock);
    pthread_mutex_unlock(&m->lock);
    close(m->wake[0]);
    close(m->wake[1]);
    close(m->fd);
    free(m);
}
