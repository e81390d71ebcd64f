/*
 * gRPC C-core server loop.
 *
 * One thread (the caller of rpc_server_run) sits in grpc_completion_queue_next
 * and only moves calls along; it never runs a handler. Several
 * grpc_server_request_call()s are kept outstanding so new calls are accepted
 * while others run. For each call we post RECV_CLOSE_ON_SERVER at once (it
 * completes when the client goes away or cancels, which is how a running fill
 * learns to stop) and RECV_MESSAGE; when the request has arrived a worker
 * thread decodes it, runs the handler and sends the reply in one batch
 * (initial metadata, message, status). A call is freed when both its close
 * and its reply batch have completed.
 *
 * A second socket (kubelet's registration one, in a directory other node
 * agents may reach) is a second grpc_server on the same queue with a route
 * table of its own: it serves the registration methods and nothing else.
 *
 * Shutdown: a signal thread waits for SIGTERM/SIGINT and calls
 * grpc_server_shutdown_and_notify; the loop keeps draining until that tag and
 * every call are done, cancelling stragglers after the grace period.
 */
#include "rpc/server.h"
#include "base/log.h"
#include "base/macros.h"
#include "rpc/pbjson.h"
#include "rpc/status.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define PENDING_ACCEPTS 8
/* Identity calls (Probe, GetPluginInfo) answer from memory at once: they get
 * slots of their own, so calls waiting on fills never make the liveness
 * probe fail (kubelet would restart the plugin and kill every waiting call). */
#define IDENTITY_CALLS 16
/* kubelet's registration calls (GetInfo, NotifyRegistrationStatus), on their socket */
#define REGISTRATION_CALLS 4

enum tag_kind { TAG_NEW, TAG_RECV, TAG_CLOSE, TAG_SEND, TAG_SHUTDOWN };

struct tag {
    enum tag_kind kind;
    struct rpc_call *call;
};

struct route {
    char *path;
    const ProtobufCMethodDescriptor *method;
    rpc_handler_fn fn;
};

enum { LISTEN_CSI, LISTEN_ALSO, LISTENERS };

struct server {
    grpc_server *grpc[LISTENERS]; /* the second only with cfg->also */
    grpc_completion_queue *cq;
    struct route *routes;
    size_t n_routes;
    void *ctx;
    const struct rpc_server_config *cfg;
    atomic_int in_handlers;      /* calls in handlers, bounded by max_calls */
    atomic_int in_identity;      /* Identity calls, bounded on their own (IDENTITY_CALLS) */
    atomic_int in_registration;  /* ... and registration calls (REGISTRATION_CALLS) */
    atomic_int live_calls;
    atomic_int shutting_down;
    struct tag shutdown_tag[LISTENERS];
    pthread_mutex_t lock;
    pthread_cond_t drained_cond;
    int drained;
};

struct rpc_call {
    struct server *srv;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array request_md;
    grpc_byte_buffer *request;
    grpc_byte_buffer *response;
    grpc_slice status_details;
    int close_cancelled;
    int identity;                /* counted in in_identity (or in_registration, on that socket) */
    int listener;                /* LISTEN_*: which socket it came on */
    atomic_int cancelled;
    atomic_int refs;
    char method[256];
    struct timespec started;
    grpc_op send_ops[3];
    struct tag t_new, t_recv, t_close, t_send;
};

const atomic_int *rpc_call_cancelled(struct rpc_call *c) { return c ? &c->cancelled : NULL; }
const char *rpc_call_method(const struct rpc_call *c) { return c->method; }

const char *rpc_endpoint_path(const char *endpoint)
{
    if (strncmp(endpoint, "unix://", 7) == 0)
        endpoint += 7;
    else if (strncmp(endpoint, "unix:", 5) == 0)
        endpoint += 5;
    return endpoint[0] == '/' ? endpoint : NULL;
}

/* ---- call lifetime ------------------------------------------------------ */

static void call_unref(struct rpc_call *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    struct server *srv = c->srv;
    if (c->call)
        grpc_call_unref(c->call);
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->request_md);
    if (c->request)
        grpc_byte_buffer_destroy(c->request);
    if (c->response)
        grpc_byte_buffer_destroy(c->response);
    grpc_slice_unref(c->status_details);
    free(c);
    atomic_fetch_sub(&srv->live_calls, 1);
}

static void post_accept(struct server *srv, int listener)
{
    struct rpc_call *c = calloc(1, sizeof(*c));
    if (!c)
        return; /* the other outstanding accepts keep the server serving */
    c->srv = srv;
    c->listener = listener;
    c->t_new = (struct tag){TAG_NEW, c};
    c->t_recv = (struct tag){TAG_RECV, c};
    c->t_close = (struct tag){TAG_CLOSE, c};
    c->t_send = (struct tag){TAG_SEND, c};
    c->status_details = grpc_empty_slice();
    atomic_init(&c->refs, 1);
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->request_md);
    atomic_fetch_add(&srv->live_calls, 1);
    grpc_call_error err = grpc_server_request_call(srv->grpc[listener], &c->call, &c->details, &c->request_md,
                                                   srv->cq, srv->cq, &c->t_new);
    if (err != GRPC_CALL_OK)
        call_unref(c);
}

/* ---- replying ----------------------------------------------------------- */

static double elapsed_ms(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Sends the whole reply in one batch; the TAG_SEND completion drops a ref. */
static void send_reply(struct rpc_call *c, grpc_status_code status, const char *msg,
                       const ProtobufCMessage *resp)
{
    if (status == GRPC_STATUS_OK && resp) {
        size_t len = protobuf_c_message_get_packed_size(resp);
        uint8_t *buf = malloc(len ? len : 1);
        if (!buf) {
            status = GRPC_STATUS_RESOURCE_EXHAUSTED;
            msg = "out of memory encoding the reply";
        } else {
            protobuf_c_message_pack(resp, buf);
            grpc_slice s = grpc_slice_new(buf, len, free);
            c->response = grpc_raw_byte_buffer_create(&s, 1);
            grpc_slice_unref(s);
        }
    }
    c->status_details = grpc_slice_from_copied_string(msg ? msg : "");
    size_t n = 0;
    grpc_op *ops = c->send_ops;
    memset(ops, 0, sizeof(c->send_ops));
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    n++;
    if (status == GRPC_STATUS_OK && c->response) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = c->response;
        n++;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = status;
    ops[n].data.send_status_from_server.status_details = &c->status_details;
    n++;
    if (grpc_call_start_batch(c->call, ops, n, &c->t_send, NULL) != GRPC_CALL_OK)
        call_unref(c);
}

static void log_call(struct rpc_call *c, const ProtobufCMessage *req, grpc_status_code status,
                     const char *msg)
{
    /* Identity calls come every few seconds from probes: only failures are news. */
    int routine = strncmp(c->method, "/csi.v1.Identity/", 17) == 0 ||
                  strcmp(c->method, "/csi.v1.Node/NodeGetCapabilities") == 0;
    enum log_level level = status == GRPC_STATUS_OK ? (routine ? LOG_DEBUG : LOG_INFO) : LOG_WARN;
    json_t *f = json_pack("{s:s, s:s, s:f}", "method", c->method, "code", rpc_status_name(status),
                          "ms", elapsed_ms(&c->started));
    if (status != GRPC_STATUS_OK && msg && *msg)
        json_object_set_new(f, "error", json_string(msg));
    if (atomic_load(&c->cancelled))
        json_object_set_new(f, "cancelled", json_true());
    if (req)
        json_object_set_new(f, "request", pbjson_from_message(req, 1));
    log_json(level, "call", f);
}

static const struct route *find_route(struct server *srv, const char *path)
{
    if (!path)
        return NULL;
    for (size_t i = 0; i < srv->n_routes; i++)
        if (streq(srv->routes[i].path, path))
            return &srv->routes[i];
    return NULL;
}

/* The request's bytes as the transport received them (the slices of the
 * HTTP/2 frames): zeroed once unpacked, so a node-stage secret does not wait
 * in freed memory. Only this message's bytes are touched. */
static void wipe_request(grpc_byte_buffer *bb)
{
    if (bb->type != GRPC_BB_RAW)
        return;
    for (size_t i = 0; i < bb->data.raw.slice_buffer.count; i++) {
        grpc_slice *s = &bb->data.raw.slice_buffer.slices[i];
        explicit_bzero(GRPC_SLICE_START_PTR(*s), GRPC_SLICE_LENGTH(*s));
    }
}

/* Which calls a call competes with for a slot: those answered from memory
 * (Identity; registration, on its own socket) never wait behind fills. */
static atomic_int *slots_of(struct server *srv, const struct rpc_call *c, int *ret_cap)
{
    int cap = c->listener == LISTEN_ALSO ? REGISTRATION_CALLS : c->identity ? IDENTITY_CALLS : srv->cfg->max_calls;
    if (ret_cap)
        *ret_cap = cap;
    return c->listener == LISTEN_ALSO ? &srv->in_registration : c->identity ? &srv->in_identity : &srv->in_handlers;
}

/* Each socket its own methods: the registration socket only
 * cfg->also_methods, the CSI socket everything but those. */
static int served_on(const struct server *srv, const struct rpc_call *c)
{
    const char *only = srv->cfg->also_methods;
    int theirs = only && strncmp(c->method, only, strlen(only)) == 0;
    return c->listener == LISTEN_ALSO ? theirs : !theirs;
}

static void *worker(void *arg)
{
    struct rpc_call *c = arg;
    struct server *srv = c->srv;
    /* the call may be freed once its reply is sent: its slot is known now */
    atomic_int *slots = slots_of(srv, c, NULL);
    const struct route *rt = find_route(srv, served_on(srv, c) ? c->method : NULL);
    ProtobufCMessage *req = NULL, *resp = NULL;
    struct wc_error e;
    wc_error_clear(&e);
    grpc_status_code status = GRPC_STATUS_OK;

    if (!rt) {
        status = GRPC_STATUS_UNIMPLEMENTED;
        snprintf(e.msg, sizeof(e.msg), "method %s is not served by warmcache", c->method);
    } else {
        grpc_byte_buffer_reader reader;
        if (c->request && grpc_byte_buffer_reader_init(&reader, c->request)) {
            grpc_slice s = grpc_byte_buffer_reader_readall(&reader);
            grpc_byte_buffer_reader_destroy(&reader);
            req = protobuf_c_message_unpack(rt->method->input, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
            explicit_bzero(GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s)); /* requests carry secrets */
            grpc_slice_unref(s);
            wipe_request(c->request);
        }
        if (!req) {
            status = GRPC_STATUS_INVALID_ARGUMENT;
            snprintf(e.msg, sizeof(e.msg), "the request is not a valid %s message", rt->method->input->name);
        } else if (!rt->fn) {
            status = GRPC_STATUS_UNIMPLEMENTED;
            snprintf(e.msg, sizeof(e.msg), "%s is not offered by this plugin", c->method);
        } else {
            int r = rt->fn(srv->ctx, req, &resp, c, &e);
            if (r < 0) {
                status = rpc_status_from_errno(e.code ? e.code : r);
                if (!e.msg[0])
                    snprintf(e.msg, sizeof(e.msg), "%s failed: %s", c->method, strerror(-r));
            } else if (!resp) {
                status = GRPC_STATUS_INTERNAL;
                snprintf(e.msg, sizeof(e.msg), "%s produced no reply", c->method);
            }
        }
    }
    log_call(c, req, status, e.msg);
    send_reply(c, status, status == GRPC_STATUS_OK ? NULL : e.msg, resp);
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    if (req) {
        pb_wipe_secrets(req);
        protobuf_c_message_free_unpacked(req, NULL);
    }
    atomic_fetch_sub(slots, 1);
    return NULL;
}

/* ---- completion-queue events -------------------------------------------- */

static void on_new(struct rpc_call *c, int ok)
{
    struct server *srv = c->srv;
    if (!ok) { /* server shutting down: the accept was cancelled */
        call_unref(c);
        return;
    }
    if (!atomic_load(&srv->shutting_down))
        post_accept(srv, c->listener);
    clock_gettime(CLOCK_MONOTONIC, &c->started);
    size_t mlen = GRPC_SLICE_LENGTH(c->details.method);
    if (mlen >= sizeof(c->method))
        mlen = sizeof(c->method) - 1;
    memcpy(c->method, GRPC_SLICE_START_PTR(c->details.method), mlen);
    c->method[mlen] = '\0';

    atomic_store(&c->refs, 2); /* the close batch and the reply batch */
    grpc_op close_op = {.op = GRPC_OP_RECV_CLOSE_ON_SERVER};
    close_op.data.recv_close_on_server.cancelled = &c->close_cancelled;
    if (grpc_call_start_batch(c->call, &close_op, 1, &c->t_close, NULL) != GRPC_CALL_OK)
        call_unref(c);
    grpc_op recv_op = {.op = GRPC_OP_RECV_MESSAGE};
    recv_op.data.recv_message.recv_message = &c->request;
    if (grpc_call_start_batch(c->call, &recv_op, 1, &c->t_recv, NULL) != GRPC_CALL_OK)
        send_reply(c, GRPC_STATUS_INTERNAL, "cannot receive the request", NULL);
}

static void on_recv(struct rpc_call *c, int ok)
{
    struct server *srv = c->srv;
    if (!ok || !c->request) {
        send_reply(c, GRPC_STATUS_INVALID_ARGUMENT, "no request message received", NULL);
        return;
    }
    /* answered from memory: slots of their own */
    c->identity = strncmp(c->method, "/csi.v1.Identity/", 17) == 0;
    int cap;
    atomic_int *slots = slots_of(srv, c, &cap);
    if (atomic_fetch_add(slots, 1) >= cap) {
        atomic_fetch_sub(slots, 1);
        log_call(c, NULL, GRPC_STATUS_RESOURCE_EXHAUSTED, "too many calls in progress");
        send_reply(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "too many calls in progress; try again", NULL);
        return;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    if (pthread_create(&t, &attr, worker, c) != 0) {
        atomic_fetch_sub(slots, 1);
        send_reply(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "cannot start a worker thread", NULL);
    }
    pthread_attr_destroy(&attr);
}

/* ---- signals and shutdown ----------------------------------------------- */

struct sigctx {
    struct server *srv;
    sigset_t set;
};

static void *signal_thread(void *arg)
{
    struct sigctx *sc = arg;
    struct server *srv = sc->srv;
    int sig = 0;
    while (sigwait(&sc->set, &sig) != 0 || (sig != SIGTERM && sig != SIGINT))
        ;
    log_info("received %s: shutting down, letting in-flight calls finish", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    atomic_store(&srv->shutting_down, 1);
    for (int i = 0; i < LISTENERS; i++)
        if (srv->grpc[i])
            grpc_server_shutdown_and_notify(srv->grpc[i], srv->cq, &srv->shutdown_tag[i]);

    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += srv->cfg->shutdown_grace_s;
    pthread_mutex_lock(&srv->lock);
    int timed_out = 0;
    while (!srv->drained && !timed_out)
        timed_out = pthread_cond_timedwait(&srv->drained_cond, &srv->lock, &deadline) != 0;
    pthread_mutex_unlock(&srv->lock);
    if (timed_out) {
        log_warn("calls still running after %ds: cancelling them", srv->cfg->shutdown_grace_s);
        for (int i = 0; i < LISTENERS; i++)
            if (srv->grpc[i])
                grpc_server_cancel_all_calls(srv->grpc[i]);
    }
    return NULL;
}

static int build_routes(struct server *srv, const ProtobufCServiceDescriptor *const *services, size_t n_services,
                        const struct rpc_handler *handlers, size_t n_handlers, struct wc_error *e)
{
    size_t total = 0;
    for (size_t i = 0; i < n_services; i++)
        total += services[i]->n_methods;
    srv->routes = calloc(total, sizeof(*srv->routes));
    if (!srv->routes)
        return wc_err(e, -ENOMEM, "out of memory");
    for (size_t i = 0; i < n_services; i++)
        for (unsigned m = 0; m < services[i]->n_methods; m++) {
            struct route *rt = &srv->routes[srv->n_routes++];
            rt->method = &services[i]->methods[m];
            if (asprintf(&rt->path, "/%s/%s", services[i]->name, rt->method->name) < 0)
                return wc_err(e, -ENOMEM, "out of memory");
            for (size_t h = 0; h < n_handlers; h++)
                if (streq(handlers[h].path, rt->path))
                    rt->fn = handlers[h].fn;
        }
    /* A handler naming no method is a programming error: say so loudly. */
    for (size_t h = 0; h < n_handlers; h++)
        if (!find_route(srv, handlers[h].path))
            return wc_err(e, -EINVAL, "a handler for %s matches no method in the wire definition",
                          handlers[h].path);
    return 0;
}

static void free_routes(struct server *srv)
{
    for (size_t i = 0; i < srv->n_routes; i++)
        free(srv->routes[i].path);
    free(srv->routes);
}

/* Destroys the server, drains and destroys its queue, releases gRPC. */
static void teardown(struct server *srv)
{
    for (int i = 0; i < LISTENERS; i++)
        if (srv->grpc[i])
            grpc_server_destroy(srv->grpc[i]);
    grpc_completion_queue_shutdown(srv->cq);
    while (grpc_completion_queue_next(srv->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(srv->cq);
    grpc_shutdown();
    free_routes(srv);
}

static int remove_stale_socket(const char *path, struct wc_error *e)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : wc_err_errno(e, -errno, "endpoint %s", path);
    if (!S_ISSOCK(st.st_mode))
        return wc_err(e, -EEXIST, "endpoint %s exists and is not a socket; refusing to replace it", path);
    return unlink(path) < 0 ? wc_err_errno(e, -errno, "removing the stale socket %s", path) : 0;
}

int rpc_server_run(const struct rpc_server_config *cfg, const ProtobufCServiceDescriptor *const *services,
                   size_t n_services, const struct rpc_handler *handlers, size_t n_handlers, void *ctx,
                   struct wc_error *e)
{
    const char *path = rpc_endpoint_path(cfg->endpoint);
    if (!path)
        return wc_err(e, -EINVAL, "endpoint \"%s\": only unix sockets are served (unix:///path/csi.sock)",
                      cfg->endpoint);
    const char *also = cfg->also ? rpc_endpoint_path(cfg->also) : NULL;
    if (cfg->also && !also)
        return wc_err(e, -EINVAL, "endpoint \"%s\": only unix sockets are served", cfg->also);
    int r = remove_stale_socket(path, e);
    if (r == 0 && also)
        r = remove_stale_socket(also, e);
    if (r < 0)
        return r;

    /* Block the shutdown signals before gRPC starts its threads, so that only
     * the signal thread ever receives them. */
    struct sigctx sc;
    sigemptyset(&sc.set);
    sigaddset(&sc.set, SIGTERM);
    sigaddset(&sc.set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sc.set, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct server srv = {.ctx = ctx, .cfg = cfg,
                         .shutdown_tag = {{TAG_SHUTDOWN, NULL}, {TAG_SHUTDOWN, NULL}}};
    pthread_mutex_init(&srv.lock, NULL);
    pthread_cond_init(&srv.drained_cond, NULL);
    if ((r = build_routes(&srv, services, n_services, handlers, n_handlers, e)) < 0) {
        free_routes(&srv);
        return r;
    }

    grpc_init();
    grpc_arg args[2] = {
        {.type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         .value.integer = cfg->max_message_bytes},
        {.type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
         .value.integer = cfg->max_message_bytes},
    };
    grpc_channel_args cargs = {.num_args = 2, .args = args};
    srv.cq = grpc_completion_queue_create_for_next(NULL);
    const char *paths[LISTENERS] = {path, also};
    int listeners = also ? 2 : 1;
    for (int i = 0; i < listeners; i++) {
        srv.grpc[i] = grpc_server_create(&cargs, NULL);
        grpc_server_register_completion_queue(srv.grpc[i], srv.cq, NULL);
        char addr[4200];
        snprintf(addr, sizeof(addr), "unix:%s", paths[i]);
        grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
        int port = grpc_server_add_http2_port(srv.grpc[i], addr, creds);
        grpc_server_credentials_release(creds);
        if (port == 0) {
            teardown(&srv);
            return wc_err(e, -EADDRNOTAVAIL, "cannot listen on %s (is the directory there and writable?)", paths[i]);
        }
    }
    for (int i = 0; i < listeners; i++) {
        grpc_server_start(srv.grpc[i]);
        for (int k = 0; k < (i == LISTEN_CSI ? PENDING_ACCEPTS : 2); k++)
            post_accept(&srv, i);
    }
    log_json(LOG_INFO, "serving", json_pack("{s:s, s:i}", "endpoint", path, "max_calls", cfg->max_calls));
    if (cfg->ready)
        cfg->ready(ctx);

    sc.srv = &srv;
    pthread_t sigt;
    pthread_create(&sigt, NULL, signal_thread, &sc);

    int shutdown_done = 0;
    while (shutdown_done < listeners || atomic_load(&srv.live_calls) > 0) {
        grpc_event ev = grpc_completion_queue_next(srv.cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE)
            break;
        struct tag *t = ev.tag;
        switch (t->kind) {
        case TAG_NEW: on_new(t->call, ev.success); break;
        case TAG_RECV: on_recv(t->call, ev.success); break;
        case TAG_CLOSE:
            if (t->call->close_cancelled)
                atomic_store(&t->call->cancelled, 1);
            call_unref(t->call);
            break;
        case TAG_SEND: call_unref(t->call); break;
        case TAG_SHUTDOWN: shutdown_done++; break;
        }
    }

    pthread_mutex_lock(&srv.lock);
    srv.drained = 1;
    pthread_cond_signal(&srv.drained_cond);
    pthread_mutex_unlock(&srv.lock);
    pthread_join(sigt, NULL);

    teardown(&srv);
    if (also)
        unlink(also); /* first: kubelet deregisters the plugin when this socket goes */
    unlink(path);
    log_info("shut down cleanly; removed %s", path);
    return 0;
}
