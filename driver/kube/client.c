/* See client.h. */
#include "kube/client.h"
#include "base/buf.h"
#include "base/fsutil.h"
#include "base/macros.h"
#include "base/uri.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define BODY_MAX (8u << 20)

struct kube {
    char *server, *token_file, *ca_file;
    CURLSH *share;
    pthread_mutex_t share_lock[CURL_LOCK_DATA_LAST];
};

int kube_config_in_cluster(struct kube_config *ret, struct wc_error *e)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST"), *port = getenv("KUBERNETES_SERVICE_PORT");
    if (!host || !*host || access(SA_DIR "/token", R_OK) != 0)
        return wc_err(e, -ENOENT, "not in a Kubernetes pod with a service account token (" SA_DIR "/token)");
    snprintf(ret->server_buf, sizeof(ret->server_buf), strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s",
             host, port && *port ? port : "443");
    ret->server = ret->server_buf;
    ret->token_file = SA_DIR "/token";
    ret->ca_file = SA_DIR "/ca.crt";
    return 0;
}

static void share_lock(CURL *h, curl_lock_data d, curl_lock_access a, void *ud)
{
    (void)h, (void)a;
    pthread_mutex_lock(&((struct kube *)ud)->share_lock[d]);
}

static void share_unlock(CURL *h, curl_lock_data d, void *ud)
{
    (void)h;
    pthread_mutex_unlock(&((struct kube *)ud)->share_lock[d]);
}

int kube_open(const struct kube_config *cfg, struct kube **ret, struct wc_error *e)
{
    if (!cfg->server || (strncmp(cfg->server, "https://", 8) != 0 && strncmp(cfg->server, "http://", 7) != 0))
        return wc_err(e, -EINVAL, "Kubernetes API server \"%s\" must be an http(s):// URL",
                      cfg->server ? cfg->server : "");
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct kube *k = calloc(1, sizeof(*k));
    if (!k)
        return -ENOMEM;
    k->server = strdup(cfg->server);
    k->token_file = cfg->token_file ? strdup(cfg->token_file) : NULL;
    k->ca_file = cfg->ca_file ? strdup(cfg->ca_file) : NULL;
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&k->share_lock[i], NULL);
    k->share = curl_share_init();
    if (!k->server || !k->share) {
        kube_close(k);
        return -ENOMEM;
    }
    curl_share_setopt(k->share, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(k->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(k->share, CURLSHOPT_USERDATA, k);
    curl_share_setopt(k->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    curl_share_setopt(k->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_share_setopt(k->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    size_t n = strlen(k->server);
    while (n && k->server[n - 1] == '/')
        k->server[--n] = '\0';
    *ret = k;
    return 0;
}

void kube_close(struct kube *k)
{
    if (!k)
        return;
    if (k->share)
        curl_share_cleanup(k->share);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&k->share_lock[i]);
    free(k->server);
    free(k->token_file);
    free(k->ca_file);
    free(k);
}

int kube_escape(const char *in, char *out, size_t n)
{
    return uri_encode(in, false, out, n);
}

/* Accept and (with a token file) Authorization headers; the token is read
 * again each time (the kubelet rotates it) and wiped from our buffers. */
static int base_headers(struct kube *k, struct curl_slist **ret, struct wc_error *e)
{
    char token[8192], line[8300];
    struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json");
    if (k->token_file) {
        int r = fs_read_token(k->token_file, token, sizeof(token));
        if (r < 0) {
            curl_slist_free_all(h);
            return wc_err_errno(e, r, "reading the service account token %s", k->token_file);
        }
        snprintf(line, sizeof(line), "Authorization: Bearer %s", token);
        h = curl_slist_append(h, line);
        explicit_bzero(line, sizeof(line));
        explicit_bzero(token, sizeof(token));
    }
    *ret = h;
    return 0;
}

/* What every request to the API server sets. */
static void easy_common(struct kube *k, CURL *c)
{
    curl_easy_setopt(c, CURLOPT_SHARE, k->share);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    if (k->ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, k->ca_file);
}

/* What the API server said in its Status, for the message. */
static const char *status_message(json_t *j)
{
    const char *m = json_string_value(json_object_get(j, "message"));
    return m ? m : "";
}

int kube_call(struct kube *k, const char *method, const char *path, const json_t *body, const char *content_type,
              json_t **ret, struct wc_error *e)
{
    if (ret)
        *ret = NULL;
    char url[2048], line[256];
    if (snprintf(url, sizeof(url), "%s%s", k->server, path) >= (int)sizeof(url))
        return wc_err(e, -ENAMETOOLONG, "Kubernetes API path too long");
    struct curl_slist *h;
    int hr = base_headers(k, &h, e);
    if (hr < 0)
        return hr;
    _cleanup_free_ char *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (payload) {
        snprintf(line, sizeof(line), "Content-Type: %s", content_type ? content_type : "application/json");
        h = curl_slist_append(h, line);
    }
    CURL *c = curl_easy_init();
    struct wc_buf b = {.max = BODY_MAX};
    if (!c || !h) {
        curl_slist_free_all(h);
        curl_easy_cleanup(c);
        return -ENOMEM;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (payload)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, wc_buf_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    easy_common(k, c);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    CURLcode cc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    if (cc != CURLE_OK) {
        free(b.p);
        return wc_err(e, -EAGAIN, "cannot reach the Kubernetes API at %s: %s", k->server, curl_easy_strerror(cc));
    }
    json_error_t je;
    json_t *j = b.p ? json_loadb(b.p, b.n, 0, &je) : NULL;
    free(b.p);
    int r = 0;
    if (status >= 200 && status < 300) {
        if (ret)
            *ret = json_incref(j);
    } else if (status == 401) {
        r = wc_err(e, -EACCES, "the Kubernetes API refused the plugin's credentials (401) on %s %s: is the service "
                   "account token mounted (automountServiceAccountToken) and current?", method, path);
    } else if (status == 403) {
        r = wc_err(e, -EACCES, "forbidden (403) %s %s: %s — the warmcache ClusterRole in the Helm chart grants what "
                   "the plugin needs; was it changed?", method, path, status_message(j));
    } else if (status == 404) {
        r = wc_err(e, -ENOENT, "not found (404): %s %s", method, path);
    } else if (status == 409) {
        const char *reason = json_string_value(json_object_get(j, "reason"));
        r = wc_err(e, reason && streq(reason, "AlreadyExists") ? -EEXIST : -EAGAIN, "%s %s: %s (409)", method, path,
                   status_message(j));
    } else if (status == 429 || status >= 500) {
        r = wc_err(e, -EAGAIN, "the Kubernetes API is busy or failing (%ld) on %s %s: %s", status, method, path,
                   status_message(j));
    } else {
        r = wc_err(e, -EINVAL, "%s %s: HTTP %ld: %s", method, path, status, status_message(j));
    }
    json_decref(j);
    return r;
}

int kube_get(struct kube *k, const char *path, json_t **ret, struct wc_error *e)
{
    return kube_call(k, "GET", path, NULL, NULL, ret, e);
}

int kube_post(struct kube *k, const char *path, const json_t *body, json_t **ret, struct wc_error *e)
{
    return kube_call(k, "POST", path, body, "application/json", ret, e);
}

int kube_merge_patch(struct kube *k, const char *path, const json_t *patch, json_t **ret, struct wc_error *e)
{
    return kube_call(k, "PATCH", path, patch, "application/merge-patch+json", ret, e);
}

/* ---- watch ----------------------------------------------------------------- */

struct kube_watch_lines {
    kube_watch_fn fn;
    void *ctx;
    char *line;
    size_t n, cap;
    int r;
};

struct kube_watch_lines *kube_watch_lines_new(kube_watch_fn fn, void *ctx)
{
    struct kube_watch_lines *w = calloc(1, sizeof(*w));
    if (w)
        *w = (struct kube_watch_lines){.fn = fn, .ctx = ctx};
    return w;
}

void kube_watch_lines_free(struct kube_watch_lines *w)
{
    if (w)
        free(w->line);
    free(w);
}

int kube_watch_lines_feed(struct kube_watch_lines *w, const char *d, size_t len)
{
    for (size_t i = 0; w->r == 0 && i < len; i++) {
        if (d[i] != '\n') {
            if (w->n + 1 >= w->cap) {
                size_t cap = w->cap ? w->cap * 2 : 65536;
                char *np = cap <= BODY_MAX ? realloc(w->line, cap) : NULL;
                if (!np)
                    return w->r = -EFBIG; /* one object over 8 MiB: not a PV */
                w->line = np;
                w->cap = cap;
            }
            w->line[w->n++] = d[i];
            continue;
        }
        json_error_t je;
        json_t *ev = json_loadb(w->line, w->n, 0, &je);
        w->n = 0;
        const char *type = json_string_value(json_object_get(ev, "type"));
        json_t *obj = json_object_get(ev, "object");
        int r = type && json_is_object(obj) ? w->fn(w->ctx, type, obj) : 0;
        json_decref(ev);
        if (r < 0)
            w->r = r;
    }
    return w->r;
}

struct watch {
    struct kube_watch_lines *lines;
    const atomic_int *stop;
};

static size_t on_watch(char *d, size_t sz, size_t nm, void *ud)
{
    struct watch *w = ud;
    return kube_watch_lines_feed(w->lines, d, sz * nm) < 0 ? 0 : sz * nm;
}

static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    struct watch *w = ud;
    (void)a, (void)b, (void)c, (void)d;
    return w->stop && atomic_load(w->stop);
}

int kube_list(struct kube *k, const char *path, int (*fn)(void *ctx, json_t *item), void *ctx, char *ret_rv,
              struct wc_error *e)
{
    char cont[2048] = "", url[4096], esc[3 * sizeof(cont)];
    for (;;) {
        if (kube_escape(cont, esc, sizeof(esc)) < 0)
            return wc_err(e, -EPROTO, "the API server's continue token for %s is too long", path);
        if (snprintf(url, sizeof(url), "%s?limit=%d%s%s", path, KUBE_LIST_PAGE, cont[0] ? "&continue=" : "", esc) >=
            (int)sizeof(url)) /* a cut token would list another page, or the first again, for ever */
            return wc_err(e, -EPROTO, "the API server's continue token for %s is too long", path);
        json_t *page _cleanup_json_ = NULL;
        int r = kube_get(k, url, &page, e);
        if (r < 0)
            return r;
        size_t i;
        json_t *item;
        json_array_foreach(json_object_get(page, "items"), i, item)
            if ((r = fn(ctx, item)) < 0)
                return r;
        json_t *meta = json_object_get(page, "metadata");
        const char *next = json_string_value(json_object_get(meta, "continue"));
        if (!next || !*next) {
            const char *rv = json_string_value(json_object_get(meta, "resourceVersion"));
            if (ret_rv)
                snprintf(ret_rv, 64, "%s", rv ? rv : "");
            return 0;
        }
        if (strlen(next) >= sizeof(cont))
            return wc_err(e, -EPROTO, "the API server's continue token for %s is too long", path);
        snprintf(cont, sizeof(cont), "%s", next);
    }
}

int kube_watch(struct kube *k, const char *path, const char *resource_version, unsigned timeout_s, kube_watch_fn fn,
               void *ctx, const atomic_int *stop, struct wc_error *e)
{
    char url[2048], rv[200];
    if (kube_escape(resource_version ? resource_version : "", rv, sizeof(rv)) < 0)
        return wc_err(e, -EPROTO, "the API server's resourceVersion %.60s... is too long to watch from",
                      resource_version);
    if (snprintf(url, sizeof(url), "%s%s?watch=1&allowWatchBookmarks=true&timeoutSeconds=%u&resourceVersion=%s",
                 k->server, path, timeout_s, rv) >= (int)sizeof(url))
        return wc_err(e, -ENAMETOOLONG, "Kubernetes API path too long");
    struct curl_slist *h;
    int hr = base_headers(k, &h, e);
    if (hr < 0)
        return hr;
    struct watch w = {.lines = kube_watch_lines_new(fn, ctx), .stop = stop};
    CURL *c = w.lines ? curl_easy_init() : NULL;
    if (!c) {
        kube_watch_lines_free(w.lines);
        curl_slist_free_all(h);
        return -ENOMEM;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_watch);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &w);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &w);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    easy_common(k, c);
    /* the server ends the stream at timeoutSeconds; one that does not has stalled */
    long grace = timeout_s / 10 > 5 ? (long)timeout_s / 10 : 5;
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)timeout_s + grace);
    CURLcode cc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    int wr = w.lines->r;
    kube_watch_lines_free(w.lines);
    if (stop && atomic_load(stop))
        return -ECANCELED;
    if (wr < 0)
        return wr == -EFBIG ? wc_err(e, wr, "watch %s: an object over 8 MiB", path) : wr;
    if (cc == CURLE_OPERATION_TIMEDOUT)
        return wc_err(e, -EAGAIN, "watch %s: the stream went on past its %us without ending: cut, and watched again",
                      path, timeout_s);
    if (cc != CURLE_OK)
        return wc_err(e, -EAGAIN, "watch %s: %s", path, curl_easy_strerror(cc));
    if (status == 401 || status == 403)
        return wc_err(e, -EACCES, "watch %s: HTTP %ld: check the plugin's RBAC (list/watch)", path, status);
    if (status != 200)
        return wc_err(e, -EAGAIN, "watch %s: HTTP %ld", path, status);
    return 0;
}
