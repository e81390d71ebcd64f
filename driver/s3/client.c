/* See client.h. One curl easy handle per client, reused (keep-alive). */
#include "s3/client.h"
#include "s3/internal.h"
#include "base/fsutil.h"
#include "base/macros.h"
#include "observe/metrics.h"
#include "base/units.h"
#include "base/pathkey.h"
#include "s3/sigv4.h"

#include <ctype.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define LIST_BODY_MAX (16u << 20)
#define ERROR_BODY_MAX (64u << 10)

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

/* A directory bucket's zone id ("use1-az4" in "models--use1-az4--x-s3"):
 * 0 and the id in out, or -1 if the name is not base--zone--x-s3. */
static int express_zone(const char *b, size_t blen, char *out, size_t n)
{
    if (blen <= 6 || memcmp(b + blen - 6, "--x-s3", 6) != 0)
        return -1;
    size_t end = blen - 6, start = end;
    while (start > 0 && !(start >= 2 && b[start - 1] == '-' && b[start - 2] == '-'))
        start--;
    if (start < 3) /* "--" before the zone, and a base of at least one character */
        return -1;
    const char *z = b + start;
    size_t zl = end - start;
    const char *az = memmem(z, zl, "-az", 3);
    if (zl < 5 || zl > 20 || !az || az == z || az + 3 >= z + zl)
        return -1;
    for (size_t i = 0; i < zl; i++)
        if (!islower((unsigned char)z[i]) && !isdigit((unsigned char)z[i]) && z[i] != '-')
            return -1;
    if (out && snprintf(out, n, "%.*s", (int)zl, z) >= (int)n)
        return -1;
    return 0;
}

/* Bucket names: 3-63 of a-z 0-9 . -; directory buckets end in --x-s3. */
int s3_url_check(const char *url, struct wc_error *e)
{
    if (strncmp(url, "s3://", 5) != 0)
        return wc_err(e, -EINVAL, "source \"%.200s\" is not an s3:// URL", url);
    const char *b = url + 5, *slash = strchr(b, '/');
    size_t blen = slash ? (size_t)(slash - b) : strlen(b);
    if (blen < 3 || blen > 63)
        return wc_err(e, -EINVAL, "source \"%.200s\": a bucket name has 3 to 63 characters", url);
    for (size_t i = 0; i < blen; i++)
        if (!(islower((unsigned char)b[i]) || isdigit((unsigned char)b[i]) || b[i] == '.' || b[i] == '-'))
            return wc_err(e, -EINVAL, "source \"%.200s\": a bucket name has only a-z, 0-9, '.' and '-'", url);
    if (blen > 6 && memcmp(b + blen - 6, "--x-s3", 6) == 0 && express_zone(b, blen, NULL, 0) < 0)
        return wc_err(e, -EINVAL, "source \"%.200s\": a directory bucket is named <base>--<zone id>--x-s3, such as "
                      "my-models--use1-az4--x-s3", url);
    const char *prefix = slash ? slash + 1 : "";
    if (strlen(prefix) > PATHKEY_MAX)
        return wc_err(e, -EINVAL, "source \"%.200s\": the prefix is longer than 1024 bytes", url);
    if (*prefix) {
        /* the prefix is a directory of the bucket: its components must be sane too */
        size_t plen = strlen(prefix);
        int r = pathkey_check(prefix, prefix[plen - 1] == '/' ? plen - 1 : plen, e);
        if (r < 0)
            return wc_err_prefix(e, "source \"%.200s\": ", url);
    }
    return 0;
}

int s3_identity(const char *url, const char *endpoint, char *out, size_t n, struct wc_error *e)
{
    int r = s3_url_check(url, e);
    if (r < 0)
        return r;
    const char *b = url + 5, *slash = strchr(b, '/');
    size_t blen = slash ? (size_t)(slash - b) : strlen(b);
    const char *prefix = slash ? slash + 1 : "";
    int custom = endpoint && *endpoint;
    size_t el = custom ? strlen(endpoint) : 0;
    while (el && endpoint[el - 1] == '/')
        el--;
    int w = snprintf(out, n, "%.*s s3://%.*s/%s%s", custom ? (int)el : 3, custom ? endpoint : "aws", (int)blen, b,
                     prefix, *prefix && prefix[strlen(prefix) - 1] != '/' ? "/" : "");
    return w < 0 || (size_t)w >= n ? wc_err(e, -ENAMETOOLONG, "source %.200s: too long", url) : 0;
}

static int setstr(char *dst, size_t n, const char *src)
{
    return snprintf(dst, n, "%s", src ? src : "") < (int)n ? 0 : -ENAMETOOLONG;
}

int s3_client_new(const char *url, const struct s3_options *opt, struct s3_client **ret, struct wc_error *e)
{
    int r = s3_url_check(url, e);
    if (r < 0)
        return r;
    if (!opt || !opt->ctx)
        return wc_err(e, -EINVAL, "s3: a client needs its context (s3_ctx_new)");
    pthread_once(&curl_once, curl_init_once);
    struct s3_client *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->ctx = opt->ctx;
    const char *b = url + 5, *slash = strchr(b, '/');
    size_t blen = slash ? (size_t)(slash - b) : strlen(b);
    memcpy(c->bucket, b, blen);
    const char *prefix = slash ? slash + 1 : "";
    snprintf(c->prefix, sizeof(c->prefix), "%s%s", prefix, *prefix && prefix[strlen(prefix) - 1] != '/' ? "/" : "");
    snprintf(c->url, sizeof(c->url), "s3://%s/%s", c->bucket, c->prefix);
    c->stall_s = opt && opt->stall_seconds ? (long)opt->stall_seconds : 30;

    const char *region = opt && opt->region && *opt->region ? opt->region : getenv("AWS_REGION");
    setstr(c->region, sizeof(c->region), region && *region ? region : "us-east-1");
    int custom = opt && opt->endpoint && *opt->endpoint;
    char zone[32];
    c->express = express_zone(c->bucket, blen, zone, sizeof(zone)) == 0;
    pthread_mutex_init(&c->session_lock, NULL);
    pthread_mutex_init(&c->curl_lock, NULL);
    if (custom) {
        if (strncmp(opt->endpoint, "http://", 7) != 0 && strncmp(opt->endpoint, "https://", 8) != 0) {
            free(c);
            return wc_err(e, -EINVAL, "endpoint \"%.200s\" must start with http:// or https://", opt->endpoint);
        }
        setstr(c->endpoint, sizeof(c->endpoint), opt->endpoint);
    } else if (c->express) { /* the zonal endpoint of the bucket's Availability Zone */
        snprintf(c->endpoint, sizeof(c->endpoint), "https://s3express-%s.%s.amazonaws.com", zone, c->region);
    } else {
        snprintf(c->endpoint, sizeof(c->endpoint), "https://s3.%s.amazonaws.com", c->region);
    }
    size_t el = strlen(c->endpoint);
    while (el && c->endpoint[el - 1] == '/')
        c->endpoint[--el] = '\0';
    const char *addressing = opt && opt->addressing && *opt->addressing ? opt->addressing : (custom ? "path" : "virtual");
    c->path_style = !c->express && (streq(addressing, "path") || strchr(c->bucket, '.') != NULL);
    const char *hoststart = strstr(c->endpoint, "://") + 3;
    if (c->path_style)
        setstr(c->host, sizeof(c->host), hoststart);
    else
        snprintf(c->host, sizeof(c->host), "%s.%s", c->bucket, hoststart);
    if ((r = s3_identity(url, custom ? c->endpoint : NULL, c->identity, sizeof(c->identity), e)) < 0) {
        s3_client_free(c);
        return r;
    }

    if (opt && opt->access_key_id && *opt->access_key_id) {
        c->akid = strdup(opt->access_key_id);
        c->secret = strdup(opt->secret_access_key ? opt->secret_access_key : "");
        c->token = opt->session_token && *opt->session_token ? strdup(opt->session_token) : NULL;
        if (!c->akid || !c->secret) {
            s3_client_free(c);
            return -ENOMEM;
        }
    }
    /* find credentials now, so a volume without any fails at once and says why */
    struct creds cr;
    struct creds_static given = {c->akid, c->secret, c->token};
    if ((r = creds_get(&c->ctx->creds, &given, c->region, &cr, e)) < 0) {
        s3_client_free(c);
        return wc_err_prefix(e, "%s: ", url);
    }
    creds_clear(&cr);
    c->curl = curl_easy_init();
    if (!c->curl) {
        s3_client_free(c);
        return -ENOMEM;
    }
    *ret = c;
    return 0;
}

void s3_client_free(struct s3_client *c)
{
    if (!c)
        return;
    creds_clear(&c->session);
    pthread_mutex_destroy(&c->session_lock);
    pthread_mutex_destroy(&c->curl_lock);
    if (c->curl)
        curl_easy_cleanup(c->curl);
    if (c->secret)
        explicit_bzero(c->secret, strlen(c->secret));
    if (c->token)
        explicit_bzero(c->token, strlen(c->token));
    free(c->akid);
    free(c->secret);
    free(c->token);
    free(c);
}

const char *s3_client_url(const struct s3_client *c) { return c->url; }
const char *s3_client_identity(const struct s3_client *c) { return c->identity; }
int s3_client_is_express(const struct s3_client *c) { return c->express; }

/* ---- one request ----------------------------------------------------------- */

static int write_at(struct sink *s, const char *data, size_t len, uint64_t at)
{
    for (size_t done = 0; done < len;) {
        ssize_t w = pwrite(s->fd, data + done, len - done, (off_t)(at + done));
        if (w < 0) {
            if (errno == EINTR)
                continue;
            s->io_error = errno;
            return -1;
        }
        done += (size_t)w;
    }
    if (s->progress)
        atomic_fetch_add(s->progress, len);
    return 0;
}

int s3_sink_flush(struct sink *s)
{
    if (!s->wn)
        return 0;
    int r = write_at(s, s->wbuf, s->wn, s->off + s->written - s->wn);
    if (r == 0)
        s->wn = 0;
    return r;
}

static size_t on_body(char *data, size_t sz, size_t nm, void *ud)
{
    struct sink *s = ud;
    size_t len = sz * nm;
    if (s->cancel && atomic_load(s->cancel))
        return 0;
    if (s->fd >= 0 && s->status >= 200 && s->status < 300) {
        if (s->written + len > s->want) {
            s->io_error = EMSGSIZE; /* longer than asked: a lying server */
            return 0;
        }
        if (s->wbuf && s->wn + len > s->wcap && s3_sink_flush(s) < 0)
            return 0;
        if (s->wbuf && len < s->wcap) {
            memcpy(s->wbuf + s->wn, data, len);
            s->wn += len;
        } else if (write_at(s, data, len, s->off + s->written) < 0) {
            return 0;
        }
        s->written += len;
        if (s->crc64) /* while the bytes are in cache: no second pass over the file */
            *s->crc64 = cksum_crc64nvme_update(*s->crc64, data, len);
        return len;
    }
    size_t max = s->status >= 300 ? ERROR_BODY_MAX : s->max;
    if (s->n + len > max) {
        s->io_error = EFBIG;
        return 0;
    }
    if (s->n + len + 1 > s->cap) {
        size_t cap = (s->n + len + 1) * 2;
        char *nb = realloc(s->buf, cap);
        if (!nb) {
            s->io_error = ENOMEM;
            return 0;
        }
        s->buf = nb;
        s->cap = cap;
    }
    memcpy(s->buf + s->n, data, len);
    s->n += len;
    s->buf[s->n] = '\0';
    return len;
}

/* "x-amz-checksum-crc32c: <base64>" and "x-amz-checksum-type: COMPOSITE" */
static void checksum_header(struct sink *s, const char *data, size_t len)
{
    static const char pfx[] = "x-amz-checksum-";
    const size_t pl = sizeof(pfx) - 1;
    if (len <= pl || strncasecmp(data, pfx, pl) != 0)
        return;
    const char *colon = memchr(data, ':', len);
    if (!colon)
        return;
    const char *v = colon + 1, *end = data + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    size_t nl = (size_t)(colon - data) - pl, vl = (size_t)(end - v);
    if (nl == 4 && strncasecmp(data + pl, "type", 4) == 0) {
        if (vl == 9 && strncasecmp(v, "COMPOSITE", 9) == 0)
            s->cks.composite = 1;
        return;
    }
    enum cksum_alg a = cksum_alg_from_name(data + pl, nl);
    if (a == CKSUM_NONE || s->cks.alg != CKSUM_NONE || vl == 0 || vl >= CKSUM_VALUE_MAX)
        return;
    for (size_t i = 0; i < vl; i++)
        if (!isalnum((unsigned char)v[i]) && !strchr("+/=-", v[i]))
            return; /* not base64 (with a composite's -N): ignore rather than trust */
    s->cks.alg = a;
    memcpy(s->cks.value, v, vl);
    s->cks.value[vl] = '\0';
    if (memchr(v, '-', vl))
        s->cks.composite = 1;
}

static size_t on_header(char *data, size_t sz, size_t nm, void *ud)
{
    struct sink *s = ud;
    size_t len = sz * nm; /* not NUL-terminated */
    if (len > 9 && strncmp(data, "HTTP/", 5) == 0) {
        const char *sp = memchr(data, ' ', len);
        s->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        s->n = 0; /* a new response (after a 100 Continue or redirect) */
        s->cks = (struct cksum){0};
        return len;
    }
    checksum_header(s, data, len);
    return len;
}

/* What S3 said, as an errno and a message that says what to check (xml.c). */
static int s3_failure(struct s3_client *c, const char *op, const char *key, struct sink *s,
                      struct wc_error *e)
{
    struct s3_error_info ei;
    char full[PATHKEY_MAX * 2 + 2], msg[WC_ERROR_MSG_MAX];
    s3_parse_error(s->buf, s->n, s->status, &ei);
    /* a HEAD's 503 has no body to say SlowDown in: S3's own; a page is a proxy's */
    s->throttled = s3_error_throttled(&ei) || (s->status == 503 && s->n == 0);
    snprintf(full, sizeof(full), "%s%s", c->prefix, key ? key : "");
    int r = s3_error_message(&ei, op, c->bucket, full, msg, sizeof(msg));
    return wc_err(e, r, "%s", msg);
}

unsigned s3_backoff_ms(int attempt)
{
    unsigned ms = 100u << (attempt < 6 ? attempt : 6);
    if (ms > 5000)
        ms = 5000;
    return ms / 2 + (unsigned)(rand() % (int)(ms / 2 + 1)); /* jitter */
}

static int request(struct s3_client *c, const char *op, const char *key, const char *path,
                   const struct s3_req_opts *o, struct sink *s, struct wc_error *e);

/* The directory bucket's session credentials: cached, and created again (a
 * read-only session) when less than a minute of their five is left. */
static int express_session(struct s3_client *c, struct creds *ret, struct wc_error *e)
{
    pthread_mutex_lock(&c->session_lock);
    int r = 0;
    if (!c->session.source || c->session.expires - time(NULL) < 60) {
        struct s3_req_opts o = {.query = "session", .create_session = 1};
        struct sink s = {.fd = -1, .max = ERROR_BODY_MAX};
        creds_clear(&c->session);
        c->session = (struct creds){0};
        r = request(c, "s3express:CreateSession", NULL, "/", &o, &s, e);
        if (r == 0 && (r = creds_parse_sts(s.buf ? s.buf : "", s.n, &c->session, e)) < 0)
            wc_err_prefix(e, "S3 Express CreateSession on %s: ", c->bucket);
        if (r == 0)
            c->session.source = "s3express-session";
        if (s.buf)
            explicit_bzero(s.buf, s.n);
        free(s.buf);
    }
    if (r == 0)
        *ret = c->session;
    pthread_mutex_unlock(&c->session_lock);
    return r;
}

int s3_req_build(struct s3_client *c, const char *path, const struct s3_req_opts *o, struct s3_req *rq,
                 struct wc_error *e)
{
    const char *query = o->query, *range = o->range, *if_match = o->if_match;
    rq->headers = NULL;
    rq->stall_s = c->stall_s;
    rq->ca_file = c->ctx->ca_file[0] ? c->ctx->ca_file : NULL;
    int w = snprintf(rq->url, sizeof(rq->url), "%s%s%s%s", c->endpoint, path, query ? "?" : "", query ? query : "");
    if (w < 0 || (size_t)w >= sizeof(rq->url))
        return wc_err(e, -ENAMETOOLONG, "request URL too long");
    struct creds k;
    int r;
    if (c->express && !o->create_session) {
        r = express_session(c, &k, e);
    } else {
        struct creds_static given = {c->akid, c->secret, c->token};
        r = creds_get(&c->ctx->creds, &given, c->region, &k, e);
    }
    if (r < 0)
        return r;
    int s3session = c->express && !o->create_session;
    struct sigv4_header h[8] = {{"host", c->host}, {"x-amz-content-sha256", EMPTY_SHA256}};
    size_t nh = 2;
    if (range)
        h[nh++] = (struct sigv4_header){"range", range};
    if (if_match)
        h[nh++] = (struct sigv4_header){"if-match", if_match};
    if (o->checksum_mode)
        h[nh++] = (struct sigv4_header){"x-amz-checksum-mode", "ENABLED"};
    if (o->create_session)
        h[nh++] = (struct sigv4_header){"x-amz-create-session-mode", "ReadOnly"};
    if (s3session)
        h[nh++] = (struct sigv4_header){"x-amz-s3session-token", k.session_token};
    struct sigv4_request sr = {o->method ? o->method : "GET", path, query, h, nh, EMPTY_SHA256};
    /* a session token goes in x-amz-s3session-token, never x-amz-security-token */
    struct sigv4_credentials cr = {k.access_key_id, k.secret_access_key, s3session ? NULL : k.session_token};
    struct sigv4_result sig;
    r = sigv4_sign(&sr, &cr, c->region, c->express ? "s3express" : "s3", time(NULL), &sig, e);
    if (r < 0) {
        creds_clear(&k);
        return r;
    }
    char line[SIGV4_AUTH_MAX + 64];
    struct curl_slist *hl = NULL;
#define ADD(...) (snprintf(line, sizeof(line), __VA_ARGS__), hl = curl_slist_append(hl, line))
    ADD("Authorization: %s", sig.authorization);
    ADD("x-amz-date: %s", sig.amz_date);
    ADD("x-amz-content-sha256: %s", EMPTY_SHA256);
    if (s3session)
        ADD("x-amz-s3session-token: %s", k.session_token);
    else if (k.session_token[0])
        ADD("x-amz-security-token: %s", k.session_token);
    if (o->create_session)
        ADD("x-amz-create-session-mode: ReadOnly");
    if (range)
        ADD("Range: %s", range);
    if (if_match)
        ADD("If-Match: %s", if_match);
    if (o->checksum_mode)
        ADD("x-amz-checksum-mode: ENABLED");
    ADD("Host: %s", c->host);
#undef ADD
    explicit_bzero(line, sizeof(line));
    creds_clear(&k);
    sigv4_result_free(&sig);
    rq->headers = hl;
    return 0;
}

void s3_req_done(struct s3_req *rq)
{
    curl_slist_free_all(rq->headers); /* signatures and tokens only; they expire */
    rq->headers = NULL;
}

void s3_easy_setup(CURL *h, const struct s3_req *rq, struct sink *s, int head)
{
    curl_easy_reset(h);
    if (head)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(h, CURLOPT_URL, rq->url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, rq->headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, s);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);  /* a stalled or slowloris body */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, rq->stall_s > 0 ? rq->stall_s : 30L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 256L << 10);   /* fewer callbacks and pwrites per GiB */
    if (rq->ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, rq->ca_file);
    s->n = 0;
    s->written = 0;
    s->wn = 0;
    s->io_error = 0;
    s->status = 0;
    s->throttled = 0;
    s->cks = (struct cksum){0};
}

static const char *const error_kinds[S3_ERR_KINDS] = {"throttled", "server", "network", "denied", "not_found",
                                                       "changed", "other"};

int s3_ctx_new(struct s3_ctx **ret)
{
    struct s3_ctx *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    pthread_mutex_init(&c->budget_lock, NULL);
    pthread_mutex_init(&c->ecr_lock, NULL);
    creds_cache_init(&c->creds);
    s3_rates_init(&c->rates);
    /* the AWS SDKs' variable: a private CA of an S3-compatible endpoint (or of a TLS-inspecting proxy) */
    const char *ca = getenv("AWS_CA_BUNDLE");
    if (ca && *ca)
        snprintf(c->ca_file, sizeof(c->ca_file), "%s", ca);
    *ret = c;
    return 0;
}

void s3_ctx_free(struct s3_ctx *c)
{
    if (!c)
        return;
    creds_cache_fini(&c->creds);
    s3_rates_fini(&c->rates);
    pthread_mutex_destroy(&c->budget_lock);
    s3_ecr_forget(c);
    pthread_mutex_destroy(&c->ecr_lock);
    free(c);
}

void s3_collect(void *ctx, struct obs_text *t)
{
    struct s3_ctx *c = ctx;
    obs_counter(t, "warmcache_s3_requests_total", "Requests sent to S3.", atomic_load(&c->stats.requests));
    obs_counter(t, "warmcache_s3_retries_total", "S3 requests tried again after a retryable failure.",
                atomic_load(&c->stats.retries));
    obs_gauge(t, "warmcache_s3_requests_in_flight", "Object requests of fills in flight now.",
              (double)atomic_load(&c->stats.in_flight));
    pthread_mutex_lock(&c->budget_lock);
    unsigned budget = c->budget_size;
    pthread_mutex_unlock(&c->budget_lock);
    obs_gauge(t, "warmcache_s3_request_budget", "Requests in flight the node's fills share (--s3-connections).",
              (double)budget);
    obs_family(t, "warmcache_s3_errors_total", "counter", "S3 request failures, by kind.");
    for (int k = 0; k < S3_ERR_KINDS; k++)
        obs_printf(t, "warmcache_s3_errors_total{kind=\"%s\"} %" PRIu64 "\n", error_kinds[k],
                   (uint64_t)atomic_load(&c->stats.errors[k]));
    s3_rates_collect(&c->rates, t);
}

static int count(struct s3_client *c, int r, const struct sink *s)
{
    enum s3_error_kind k = S3_ERR_OTHER;
    if (r == 0)
        return 0;
    if (s->throttled) /* S3 said slow down, not a load balancer's 503 */
        k = S3_ERR_THROTTLED;
    else if (s->status >= 500)
        k = S3_ERR_SERVER;
    else if (r == -EAGAIN)
        k = S3_ERR_NETWORK;
    else if (r == -EACCES)
        k = S3_ERR_DENIED;
    else if (r == -ENOENT || s->status == 404)
        k = S3_ERR_NOT_FOUND;
    else if (r == -ESTALE)
        k = S3_ERR_CHANGED;
    atomic_fetch_add(&c->ctx->stats.errors[k], 1);
    return r;
}

static int outcome(struct s3_client *c, const char *op, const char *key, CURLcode cc, struct sink *s,
                   struct wc_error *e);

int s3_outcome(struct s3_client *c, const char *op, const char *key, CURLcode cc, struct sink *s, struct wc_error *e)
{
    atomic_fetch_add(&c->ctx->stats.requests, 1);
    return count(c, outcome(c, op, key, cc, s, e), s);
}

static int outcome(struct s3_client *c, const char *op, const char *key, CURLcode cc, struct sink *s,
                   struct wc_error *e)
{
    const char *k = key ? key : "";
    if (s->io_error == EMSGSIZE)
        return wc_err(e, -EIO, "%s on s3://%s/%s%s: the server sent more bytes than asked for", op, c->bucket,
                      c->prefix, k);
    if (s->io_error == ENOSPC)
        return wc_err(e, -ENOSPC, "the node store is full while writing s3://%s/%s%s", c->bucket, c->prefix, k);
    if (s->io_error && s->io_error != EFBIG)
        return wc_err_errno(e, -s->io_error, "writing s3://%s/%s%s", c->bucket, c->prefix, k);
    if (cc == CURLE_OPERATION_TIMEDOUT)
        return wc_err(e, -EAGAIN, "%s on s3://%s/%s%s: the transfer from %s stalled (under 1 KiB/s for %lds)", op,
                      c->bucket, c->prefix, k, c->endpoint, c->stall_s);
    if (cc == CURLE_PEER_FAILED_VERIFICATION || cc == CURLE_SSL_CACERT_BADFILE)
        /* a retry will not make the certificate trusted: say so now */
        return wc_err(e, -EACCES, "%s on s3://%s/%s%s: %s has a TLS certificate this node does not trust (%s)%s; "
                      "give the plugins the CA that signed it (AWS_CA_BUNDLE, chart value s3CABundle)", op, c->bucket,
                      c->prefix, k, c->endpoint, curl_easy_strerror(cc),
                      c->ctx->ca_file[0] ? ", not with the CAs of AWS_CA_BUNDLE either" : "");
    if (cc != CURLE_OK)
        return wc_err(e, -EAGAIN, "%s on s3://%s/%s%s: cannot reach %s: %s", op, c->bucket, c->prefix, k,
                      c->endpoint, curl_easy_strerror(cc));
    if (s->status >= 200 && s->status < 300) {
        if (s->fd >= 0 && s->written != s->want)
            return wc_err(e, -EAGAIN, "%s on s3://%s/%s%s: got %" PRIu64 " of %" PRIu64 " bytes", op, c->bucket,
                          c->prefix, k, s->written, s->want);
        return 0;
    }
    return s3_failure(c, op, key, s, e);
}

/* Sends one signed GET; retries what a retry may cure. */
static int request(struct s3_client *c, const char *op, const char *key, const char *path,
                   const struct s3_req_opts *o, struct sink *s, struct wc_error *e)
{
    int r = -EIO;
    for (int attempt = 0; attempt < S3_RETRIES; attempt++) {
        if (attempt)
            usleep(s3_backoff_ms(attempt) * 1000);
        if (s->cancel && atomic_load(s->cancel))
            return wc_err(e, -ECANCELED, "cancelled");
        struct s3_req rq;
        if ((r = s3_req_build(c, path, o, &rq, e)) < 0)
            return r;
        /* one easy handle per client: the listing, the placer's HEADs and an
         * engine thread's CreateSession may want it at once */
        pthread_mutex_lock(&c->curl_lock);
        s3_easy_setup(c->curl, &rq, s, o->method && streq(o->method, "HEAD"));
        CURLcode cc = curl_easy_perform(c->curl);
        pthread_mutex_unlock(&c->curl_lock);
        s3_req_done(&rq);
        if (s->cancel && atomic_load(s->cancel))
            return wc_err(e, -ECANCELED, "cancelled");
        if (s->progress && s->status >= 200 && s->status < 300 && s->written != s->want)
            atomic_fetch_sub(s->progress, s->written);
        if ((r = s3_outcome(c, op, key, cc, s, e)) != -EAGAIN)
            return r;
        if (attempt + 1 < S3_RETRIES)
            atomic_fetch_add(&c->ctx->stats.retries, 1);
    }
    return wc_err_prefix(e, "gave up after %d attempts: ", S3_RETRIES);
}

int s3_object_path(struct s3_client *c, const char *key, char *out, size_t n)
{
    char enc[3 * (PATHKEY_MAX * 2 + 2) + 1];
    char full[PATHKEY_MAX * 2 + 2];
    snprintf(full, sizeof(full), "%s%s", c->prefix, key ? key : "");
    if (sigv4_uri_encode(full, 1, enc, sizeof(enc)) < 0)
        return -ENAMETOOLONG;
    int w = c->path_style ? snprintf(out, n, "/%s/%s", c->bucket, enc) : snprintf(out, n, "/%s", enc);
    return w < 0 || (size_t)w >= n ? -ENAMETOOLONG : 0;
}

/* Continuation tokens seen so far, by a 64-bit hash: a server whose tokens
 * go round in a circle (A, B, A, ...) would otherwise be listed forever. */
struct seen {
    uint64_t *v;
    size_t n, cap; /* open addressing, cap a power of two, load under 1/2 */
};

static uint64_t token_hash(const char *t)
{
    char hex[SHA256_HEX_LEN + 1];
    sha256_hex(t, strlen(t), hex);
    uint64_t h = strtoull((char[17]){hex[0], hex[1], hex[2], hex[3], hex[4], hex[5], hex[6], hex[7], hex[8], hex[9],
                                     hex[10], hex[11], hex[12], hex[13], hex[14], hex[15], 0}, NULL, 16);
    return h ? h : 1;
}

/* 1 if h was there already, 0 after adding it, -ENOMEM. */
static int seen_add(struct seen *s, uint64_t h)
{
    if (2 * (s->n + 1) > s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        uint64_t *v = calloc(cap, sizeof(*v));
        if (!v)
            return -ENOMEM;
        for (size_t i = 0; i < s->cap; i++)
            for (size_t k = s->v[i] & (cap - 1); s->v[i]; k = (k + 1) & (cap - 1))
                if (!v[k]) {
                    v[k] = s->v[i];
                    break;
                }
        free(s->v);
        s->v = v;
        s->cap = cap;
    }
    size_t k = h & (s->cap - 1);
    for (; s->v[k]; k = (k + 1) & (s->cap - 1))
        if (s->v[k] == h)
            return 1;
    s->v[k] = h;
    s->n++;
    return 0;
}

int s3_list(struct s3_client *c, s3_object_fn fn, void *ctx, const atomic_int *cancel, unsigned timeout_s,
            struct wc_error *e)
{
    char path[128], token[3 * S3_TOKEN_MAX + 1] = "", query[8192], pfx[3 * (PATHKEY_MAX + 2) + 1];
    if (c->path_style)
        snprintf(path, sizeof(path), "/%s/", c->bucket);
    else
        snprintf(path, sizeof(path), "/");
    sigv4_uri_encode(c->prefix, 0, pfx, sizeof(pfx));
    struct sink s = {.fd = -1, .max = LIST_BODY_MAX, .cancel = cancel};
    struct seen seen = {0};
    double deadline = timeout_s ? mono_s() + timeout_s : 0;
    uint64_t objects = 0;
    int r = 0;
    for (;;) {
        if (cancel && atomic_load(cancel)) {
            r = wc_err(e, -ECANCELED, "listing s3://%s/%s: cancelled", c->bucket, c->prefix);
            break;
        }
        if (deadline && mono_s() > deadline) {
            r = wc_err(e, -ETIMEDOUT, "listing s3://%s/%s took longer than --list-timeout (%us) and was given up "
                       "after %" PRIu64 " objects: a prefix this large is better split, or the limit raised",
                       c->bucket, c->prefix, timeout_s, objects);
            break;
        }
        if (token[0])
            snprintf(query, sizeof(query), "continuation-token=%s&list-type=2&prefix=%s", token, pfx);
        else
            snprintf(query, sizeof(query), "list-type=2&prefix=%s", pfx);
        struct s3_req_opts o = {.query = query};
        s.n = 0;
        if ((r = request(c, "s3:ListBucket", NULL, path, &o, &s, e)) < 0)
            break;
        struct s3_list_page page;
        if ((r = s3_parse_list_page(s.buf ? s.buf : "", s.n, c->prefix, fn, ctx, &page, e)) < 0)
            break;
        objects += page.objects;
        if (!page.truncated)
            break;
        int dup = seen_add(&seen, token_hash(page.next_token));
        if (dup != 0) {
            r = dup < 0 ? wc_err(e, -ENOMEM, "out of memory listing s3://%s/%s", c->bucket, c->prefix)
                        : wc_err(e, -EIO, "listing s3://%s/%s: the server sent a continuation token it had sent "
                                 "before, after %" PRIu64 " objects: its listing goes round in a circle and would "
                                 "never end (a broken S3-compatible server or proxy)", c->bucket, c->prefix, objects);
            break;
        }
        sigv4_uri_encode(page.next_token, 0, token, sizeof(token));
    }
    free(seen.v);
    free(s.buf);
    return r;
}

int s3_object_checksum(struct s3_client *c, const char *key, const char *etag, struct cksum *ret, struct wc_error *e)
{
    char path[4 * (PATHKEY_MAX + 80)], match[160];
    if (s3_object_path(c, key, path, sizeof(path)) < 0)
        return wc_err(e, -ENAMETOOLONG, "key too long");
    snprintf(match, sizeof(match), "\"%s\"", etag ? etag : "");
    struct s3_req_opts o = {.method = "HEAD", .if_match = etag && *etag ? match : NULL, .checksum_mode = 1};
    struct sink s = {.fd = -1, .max = ERROR_BODY_MAX};
    int r = request(c, "s3:GetObject", key, path, &o, &s, e);
    free(s.buf);
    if (r == 0)
        *ret = s.cks;
    return r;
}
