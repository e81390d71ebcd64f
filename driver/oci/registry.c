/* See oci.h. One request at a time on a kept-alive handle for manifests and
 * tokens; the distribution spec's token flow (a 401 with a Bearer challenge
 * is answered from its realm, with the user's credentials if any, for pull
 * of this repository only; a Basic challenge with the credentials); blob
 * redirects followed by hand so the registry's Authorization never leaves
 * its host. */
#include "oci/internal.h"
#include "base/fsutil.h"
#include "base/macros.h"

#include <ctype.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define MANIFEST_MAX (4u << 20) /* what the distribution spec lets a registry refuse above */
#define TOKEN_BODY_MAX (64u << 10)
#define REDIRECTS_MAX 5

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

unsigned oci_backoff_ms(int attempt)
{
    unsigned ms = 200u << (attempt < 5 ? attempt : 5);
    if (ms > 5000)
        ms = 5000;
    return ms / 2 + (unsigned)(rand() % (int)(ms / 2 + 1));
}

static size_t on_header(char *p, size_t size, size_t n, void *ctx)
{
    struct oci_resp *rs = ctx;
    size_t len = size * n;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) { /* a new response (after a 100, say): forget the last one's */
        rs->location[0] = rs->challenge[0] = rs->digest[0] = rs->content_range[0] = '\0';
        return len;
    }
    static const struct { const char *name; size_t off, cap; } want[] = {
        {"location:", offsetof(struct oci_resp, location), OCI_URL_MAX},
        {"www-authenticate:", offsetof(struct oci_resp, challenge), 1024},
        {"docker-content-digest:", offsetof(struct oci_resp, digest), OCI_DIGEST_LEN + 1},
        {"content-range:", offsetof(struct oci_resp, content_range), 96},
    };
    for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
        size_t nl = strlen(want[i].name);
        if (len <= nl || strncasecmp(p, want[i].name, nl) != 0)
            continue;
        const char *v = p + nl, *end = p + len;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
            end--;
        char *out = (char *)rs + want[i].off;
        if ((size_t)(end - v) < want[i].cap) { /* a longer value is not one we would use: dropped */
            memcpy(out, v, (size_t)(end - v));
            out[end - v] = '\0';
        }
    }
    return len;
}

/* A ranged GET's answer is 206 with the Content-Range asked for: anything
 * else (a 200 of the whole blob from a server or cache that ignores Range)
 * would land at the wrong offset. */
static int range_matches(const struct oci_resp *rs)
{
    unsigned long long a, b;
    if (rs->status != 206 || sscanf(rs->content_range, "bytes %llu-%llu/", &a, &b) != 2)
        return 0;
    return a == rs->range_off && b + 1 == rs->range_off + rs->want;
}

static int write_at(struct oci_resp *rs, const char *p, size_t len, uint64_t off)
{
    for (size_t done = 0; done < len;) {
        ssize_t w = pwrite(rs->fd, p + done, len - done, (off_t)(off + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rs->io_error = w < 0 ? errno : EIO;
            return -1;
        }
        done += (size_t)w;
    }
    return 0;
}

/* What wbuf holds, into the file: the bytes before written. */
static int flush(struct oci_resp *rs)
{
    if (!rs->wn)
        return 0;
    int r = write_at(rs, rs->wbuf, rs->wn, rs->off + rs->written - rs->wn);
    rs->wn = 0;
    return r;
}

static size_t on_body(char *p, size_t size, size_t n, void *ctx)
{
    struct oci_resp *rs = ctx;
    size_t len = size * n;
    if ((rs->cancel && atomic_load(rs->cancel)) || (rs->stop && atomic_load(rs->stop)))
        return 0;
    if (rs->status == 0)
        return 0; /* set by oci_send's progress hook before any body: cannot happen, but never write blind */
    if (rs->status < 200 || rs->status >= 300) {
        size_t room = sizeof(rs->err) - 1 - rs->errn, k = len < room ? len : room;
        memcpy(rs->err + rs->errn, p, k);
        rs->errn += k;
        rs->err[rs->errn] = '\0';
        if (k < len) { /* enough to quote: an endless error body must not hold the request */
            rs->cut = 1;
            return 0;
        }
        return len;
    }
    if (rs->ranged && rs->written == 0 && rs->wn == 0 && !range_matches(rs)) {
        rs->bad_range = 1;
        return 0;
    }
    if (rs->fd < 0) {
        if (rs->n + len > rs->max) {
            rs->too_big = 1;
            return 0;
        }
        if (rs->n + len > rs->cap) {
            size_t cap = rs->cap ? rs->cap : 16384;
            while (cap < rs->n + len)
                cap *= 2;
            char *nb = realloc(rs->buf, cap);
            if (!nb)
                return 0;
            rs->buf = nb;
            rs->cap = cap;
        }
        memcpy(rs->buf + rs->n, p, len);
        rs->n += len;
        return len;
    }
    if (rs->written + len > rs->want) {
        rs->too_big = 1;
        return 0;
    }
    if (rs->wbuf && rs->wn + len > rs->wcap && flush(rs) < 0)
        return 0;
    if (rs->wbuf && len <= rs->wcap) {
        memcpy(rs->wbuf + rs->wn, p, len);
        rs->wn += len;
    } else if (write_at(rs, p, len, rs->off + rs->written) < 0) {
        return 0;
    }
    rs->written += len;
    if (rs->progress)
        atomic_fetch_add(rs->progress, len);
    return len;
}

/* The status is known before the first body byte: curl calls this between. */
static int on_progress(void *ctx, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)a, (void)b, (void)c, (void)d;
    struct oci_resp *rs = ctx;
    return (rs->cancel && atomic_load(rs->cancel)) || (rs->stop && atomic_load(rs->stop));
}

static void setup(struct oci_client *c, CURL *h, const char *url, struct curl_slist *hdrs, struct oci_resp *rs,
                  long timeout_s)
{
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, rs);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, rs);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, rs);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 15L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, c->stall_s);
    if (timeout_s)
        curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L); /* redirects are ours to judge */
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
    /* HTTP/1.1: a connection per handle either way, and HTTP/2 framing
     * (nghttp2, flow-control windows) costs CPU a blob GET does not need */
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 256L << 10);
    if (c->ca_file[0])
        curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
    rs->n = 0;
    rs->written = 0;
    rs->wn = 0;
    rs->too_big = rs->io_error = 0;
    rs->status = 0;
    rs->errn = 0;
    rs->err[0] = rs->location[0] = rs->challenge[0] = rs->digest[0] = rs->content_range[0] = '\0';
    rs->cut = rs->bad_range = 0;
}

/* The status as soon as headers are in: the write callback needs it. */
static size_t on_header_status(char *p, size_t size, size_t n, void *ctx)
{
    struct oci_resp *rs = ctx;
    size_t len = size * n;
    if (len >= 12 && memcmp(p, "HTTP/", 5) == 0) {
        const char *sp = memchr(p, ' ', len);
        rs->status = sp ? strtol(sp + 1, NULL, 10) : 0;
    }
    return on_header(p, size, n, ctx);
}

/* scheme://host[:port] of url into out (lower-case host), 0 or -1. */
static int origin_of(const char *url, char *out, size_t n)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    int r = -1;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
        for (char *q = host; *q; q++)
            *q = (char)tolower((unsigned char)*q);
        r = snprintf(out, n, "%s://%s:%s", scheme, host, port) < (int)n ? 0 : -1;
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return r;
}

/* Location (maybe relative) against the URL it answered: an absolute
 * https URL in out, or -1. */
static int resolve_location(const char *from, const char *loc, char *out, size_t n)
{
    CURLU *u = curl_url();
    char *s = NULL, *scheme = NULL;
    int r = -1;
    if (u && curl_url_set(u, CURLUPART_URL, from, 0) == CURLUE_OK &&
        curl_url_set(u, CURLUPART_URL, loc, 0) == CURLUE_OK && curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK && strcmp(scheme, "https") == 0)
        r = snprintf(out, n, "%s", s) < (int)n ? 0 : -1;
    curl_free(s);
    curl_free(scheme);
    curl_url_cleanup(u);
    return r;
}

/* key="value" (or key=value) of a challenge, into out; 0 or -1. */
static int challenge_param(const char *ch, const char *key, char *out, size_t n)
{
    size_t kl = strlen(key);
    for (const char *p = ch; (p = strcasestr(p, key)); p += kl) {
        if (p > ch && p[-1] != ' ' && p[-1] != ',')
            continue;
        if (p[kl] != '=')
            continue;
        const char *v = p + kl + 1, *end;
        if (*v == '"') {
            v++;
            end = strchr(v, '"');
        } else {
            end = v + strcspn(v, ", ");
        }
        if (!end || (size_t)(end - v) >= n)
            return -1;
        memcpy(out, v, (size_t)(end - v));
        out[end - v] = '\0';
        return 0;
    }
    return -1;
}

static char *basic_header(const struct oci_client *c)
{
    size_t ul = strlen(c->user), pl = strlen(c->pass), n = ul + pl + 1;
    _cleanup_free_ char *plain = malloc(n + 1);
    char *out = malloc(sizeof("Authorization: Basic ") + 4 * (n / 3 + 1) + 1);
    if (!plain || !out) {
        free(out);
        return NULL;
    }
    memcpy(plain, c->user, ul);
    plain[ul] = ':';
    memcpy(plain + ul + 1, c->pass, pl);
    strcpy(out, "Authorization: Basic ");
    EVP_EncodeBlock((unsigned char *)out + strlen(out), (const unsigned char *)plain, (int)n);
    explicit_bzero(plain, n);
    return out;
}

static void set_auth(struct oci_client *c, char *h)
{
    pthread_mutex_lock(&c->auth_lock);
    if (c->auth)
        explicit_bzero(c->auth, strlen(c->auth));
    free(c->auth);
    c->auth = h;
    c->auth_gen++;
    pthread_mutex_unlock(&c->auth_lock);
}

/* A curl header list's strings wiped before they are freed: they may hold
 * an Authorization. */
static void slist_wipe_free(struct curl_slist *l)
{
    for (struct curl_slist *i = l; i; i = i->next)
        explicit_bzero(i->data, strlen(i->data));
    curl_slist_free_all(l);
}

/* The last two labels of a host name ("docker.io" of "auth.docker.io"). */
static const char *domain_of(const char *host, size_t n, size_t *ret_n)
{
    size_t end = n, dots = 0, i = n;
    while (i > 0) {
        if (host[i - 1] == '.' && ++dots == 2)
            break;
        i--;
    }
    *ret_n = end - i;
    return host + i;
}

/* An address, not a name: IPv4 digits and dots, or an IPv6 literal. */
static int is_address(const char *host, size_t n)
{
    return n > 0 && (host[0] == '[' || strspn(host, "0123456789.") >= n);
}

/* The realm is the registry's own: the same domain, or for a registry at
 * an address the same address (two addresses sharing their last two
 * numbers are not one party's). */
static int realm_is_home(const struct oci_client *c, const char *realm)
{
    const char *h = realm + 8; /* after https:// */
    size_t hl = h[0] == '[' ? strcspn(h, "]") + 1 : strcspn(h, "/:?#");
    size_t rl = c->ref.host[0] == '[' ? strcspn(c->ref.host, "]") + 1 : strcspn(c->ref.host, ":");
    if (is_address(h, hl) || is_address(c->ref.host, rl))
        return hl == rl && strncasecmp(h, c->ref.host, hl) == 0;
    size_t dl, rdl;
    const char *d = domain_of(h, hl, &dl), *rd = domain_of(c->ref.host, rl, &rdl);
    return dl == rdl && strncasecmp(d, rd, dl) == 0;
}

/* A token from the challenge's realm for pulling this repository. */
static int bearer(struct oci_client *c, const char *ch, struct wc_error *e)
{
    char realm[1024], service[256] = "";
    if (challenge_param(ch, "realm", realm, sizeof(realm)) < 0)
        return wc_err(e, -EPROTO, "registry %s asked for a Bearer token without a realm to get it from", c->ref.host);
    if (strncmp(realm, "https://", 8) != 0)
        return wc_err(e, -EPROTO, "registry %s sends for tokens to \"%.200s\", which is not https://: refused "
                      "(credentials would travel in the clear)", c->ref.host, realm);
    if (memchr(realm + 8, '@', strcspn(realm + 8, "/?#")))
        return wc_err(e, -EPROTO, "registry %s sends for tokens to a URL with a user part: refused (its host "
                      "is not what it seems to be)", c->ref.host);
    challenge_param(ch, "service", service, sizeof(service));
    /* our own scope, whatever the challenge asked: a pull of this repository */
    char scope[OCI_REPO_MAX + 32];
    snprintf(scope, sizeof(scope), "repository:%s:pull", c->ref.repo);
    CURL *h = curl_easy_init();
    char *es = h ? curl_easy_escape(h, service, 0) : NULL, *esc = h ? curl_easy_escape(h, scope, 0) : NULL;
    char url[OCI_URL_MAX];
    int w = es && esc ? snprintf(url, sizeof(url), "%s%sservice=%s&scope=%s", realm, strchr(realm, '?') ? "&" : "?",
                                 es, esc) : -1;
    curl_free(es);
    curl_free(esc);
    if (w < 0 || (size_t)w >= sizeof(url)) {
        curl_easy_cleanup(h);
        return h ? wc_err(e, -ENAMETOOLONG, "registry %s: token URL too long", c->ref.host) : -ENOMEM;
    }
    struct curl_slist *hdrs = NULL;
    /* the password goes to a realm of the registry's own domain only (Docker
     * Hub's is auth.docker.io for registry-1.docker.io); elsewhere the token
     * is asked for anonymously */
    /* a token of the node's own (logged_in) goes to the registry's host only */
    int home = c->logged_in ? strncasecmp(realm + 8, c->ref.host, strlen(c->ref.host)) == 0 &&
                              strchr("/?", realm[8 + strlen(c->ref.host)]) : realm_is_home(c, realm);
    _cleanup_free_ char *basic = c->user && home ? basic_header(c) : NULL;
    if (basic)
        hdrs = curl_slist_append(hdrs, basic);
    struct oci_resp rs = {.fd = -1, .max = TOKEN_BODY_MAX};
    setup(c, h, url, hdrs, &rs, 60);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header_status);
    CURLcode cc = curl_easy_perform(h);
    slist_wipe_free(hdrs);
    if (basic)
        explicit_bzero(basic, strlen(basic));
    curl_easy_cleanup(h);
    int r = 0;
    if (cc != CURLE_OK)
        r = wc_err(e, -EAGAIN, "registry %s: token from %.200s: %s", c->ref.host, realm, curl_easy_strerror(cc));
    else if (rs.status == 401 || rs.status == 403)
        r = wc_err(e, -EACCES, "registry %s: the token service %.200s refused %s (HTTP %ld): %s", c->ref.host, realm,
                   c->user ? "the user name and password of the volume's Secret" : "an anonymous pull; give the "
                   "volume a Secret with username and password", rs.status, scope);
    else if (rs.status != 200)
        r = wc_err(e, rs.status >= 500 || rs.status == 429 ? -EAGAIN : -EPROTO, "registry %s: the token service "
                   "%.200s answered HTTP %ld", c->ref.host, realm, rs.status);
    if (r < 0) {
        free(rs.buf);
        return r;
    }
    json_error_t je;
    json_t *j _cleanup_json_ = json_loadb(rs.buf ? rs.buf : "", rs.n, 0, &je);
    if (rs.buf)
        explicit_bzero(rs.buf, rs.n);
    free(rs.buf);
    const char *tok = json_string_value(json_object_get(j, "token"));
    if (!tok)
        tok = json_string_value(json_object_get(j, "access_token"));
    if (!tok || !*tok || strcspn(tok, "\r\n") != strlen(tok))
        return wc_err(e, -EPROTO, "registry %s: the token service %.200s sent no token", c->ref.host, realm);
    char *hdr;
    if (asprintf(&hdr, "Authorization: Bearer %s", tok) < 0)
        return -ENOMEM;
    set_auth(c, hdr);
    return 0;
}

/* The login's user name and password (again, when the last were refused). */
static int login(struct oci_client *c, struct wc_error *e)
{
    char *u = NULL, *p = NULL;
    int r = c->login(c->login_ctx, c->logged_in ? c->pass : NULL, &u, &p, e); /* only this thread writes them */
    if (r < 0)
        return r;
    pthread_mutex_lock(&c->auth_lock);
    char *old[] = {c->user, c->pass};
    c->user = u;
    c->pass = p;
    c->logged_in = 1;
    pthread_mutex_unlock(&c->auth_lock);
    for (size_t i = 0; i < ARRAY_SIZE(old); i++) {
        if (old[i])
            explicit_bzero(old[i], strlen(old[i]));
        free(old[i]);
    }
    return 0;
}

static int answer_locked(struct oci_client *c, const struct oci_resp *rs, struct wc_error *e);

/* A 401 to a request sent with the Authorization of generation gen: the
 * challenge answered, or why it cannot be. Threads refused together answer
 * it once: a later one finds the Authorization changed and just retries. */
static int answer(struct oci_client *c, const struct oci_resp *rs, unsigned gen, struct wc_error *e)
{
    pthread_mutex_lock(&c->answer_lock);
    pthread_mutex_lock(&c->auth_lock);
    int moved = c->auth_gen != gen;
    pthread_mutex_unlock(&c->auth_lock);
    int r;
    if ((rs->cancel && atomic_load(rs->cancel)) || (rs->stop && atomic_load(rs->stop)))
        r = wc_err(e, -ECANCELED, "cancelled");
    else if (moved)
        r = 0;
    else if (c->failed_code && c->failed_gen == gen) /* the same challenge failed for another request */
        r = wc_err(e, c->failed_code, "%s", c->failed_msg);
    else if ((r = answer_locked(c, rs, e)) < 0 && e->code) {
        c->failed_code = e->code;
        c->failed_gen = gen;
        snprintf(c->failed_msg, sizeof(c->failed_msg), "%s", e->msg);
    }
    pthread_mutex_unlock(&c->answer_lock);
    return r;
}

static int answer_locked(struct oci_client *c, const struct oci_resp *rs, struct wc_error *e)
{
    if ((!c->user || c->logged_in) && c->login) {
        int r = login(c, e);
        if (r < 0)
            return r;
    }
    if (strncasecmp(rs->challenge, "Bearer", 6) == 0)
        return bearer(c, rs->challenge, e);
    if (strncasecmp(rs->challenge, "Basic", 5) == 0 || (c->logged_in && rs->status == 403)) {
        if (!c->user)
            return wc_err(e, -EACCES, "registry %s wants a user name and password: give the volume a Secret with "
                          "username and password", c->ref.host);
        char *h = basic_header(c);
        if (!h)
            return -ENOMEM;
        set_auth(c, h);
        return 0;
    }
    return wc_err(e, -EACCES, "registry %s answered 401 with no challenge warmcache can answer (\"%.60s\")",
                  c->ref.host, rs->challenge);
}

static int outcome(struct oci_client *c, CURLcode cc, const struct oci_resp *rs, int home, const char *what,
                   struct wc_error *e)
{
    if (rs->cancel && atomic_load(rs->cancel))
        return wc_err(e, -ECANCELED, "%s: cancelled", what);
    if (rs->stop && atomic_load(rs->stop))
        return -ECANCELED; /* another part failed: its error is the fill's */
    if (rs->bad_range)
        return wc_err(e, -EPROTO, "%s: registry %s answered a range with HTTP %ld%s%.80s, not 206 with the bytes "
                      "asked for: a server or proxy on the way that ignores Range cannot serve a fill in parts",
                      what, c->ref.host, rs->status, rs->content_range[0] ? ", Content-Range " : "",
                      rs->content_range);
    if (rs->io_error)
        return wc_err_errno(e, -rs->io_error, "%s: writing", what);
    if (rs->too_big)
        return wc_err(e, -EFBIG, "%s: registry %s sent more bytes than %s", what, c->ref.host,
                      rs->fd < 0 ? "warmcache reads for it" : "asked for");
    if (cc != CURLE_OK && !rs->cut)
        return wc_err(e, cc == CURLE_PEER_FAILED_VERIFICATION || cc == CURLE_SSL_CACERT_BADFILE ? -EPERM : -EAGAIN,
                      "%s: %s", what, curl_easy_strerror(cc));
    if (rs->status >= 200 && rs->status < 300)
        return 0;
    const char *hint = rs->status == 404 ? ": no such repository, tag or blob (check the source URL)"
                     : rs->status == 401 || rs->status == 403 ? ": access denied (check the volume's Secret and the "
                                                                "repository's permissions)" : "";
    int code = rs->status == 404 ? -ENOENT : rs->status == 401 || rs->status == 403 ? -EACCES
             : rs->status == 429 || rs->status >= 500 ? -EAGAIN : -EPROTO;
    char body[200];
    size_t k = 0;
    for (size_t i = 0; home && i < rs->errn && k + 1 < sizeof(body); i++) /* another host's words: not quoted */
        body[k++] = isprint((unsigned char)rs->err[i]) ? rs->err[i] : ' ';
    body[k] = '\0';
    return wc_err(e, code, "%s: registry %s answered HTTP %ld%s%s%s", what, c->ref.host, rs->status, hint,
                  k ? ": " : "", body);
}

int oci_send(struct oci_client *c, CURL *h, const struct oci_req *rq, struct oci_resp *rs, const char *what,
             struct wc_error *e)
{
    char url[OCI_URL_MAX];
    if (snprintf(url, sizeof(url), "%s%s", c->base, rq->path) >= (int)sizeof(url))
        return wc_err(e, -ENAMETOOLONG, "%s: URL too long", what);
    int answered = 0, hops = 0, home = 1; /* home: the registry's own origin */
    char base_origin[OCI_HOST_MAX + 32];
    if (origin_of(c->base, base_origin, sizeof(base_origin)) < 0)
        return wc_err(e, -EINVAL, "%s: registry URL %s", what, c->base);
    for (;;) {
        struct curl_slist *hdrs = NULL;
        char accept[512], range[80];
        if (rq->accept && snprintf(accept, sizeof(accept), "Accept: %s", rq->accept) < (int)sizeof(accept))
            hdrs = curl_slist_append(hdrs, accept);
        if (rq->range && snprintf(range, sizeof(range), "Range: %s", rq->range) < (int)sizeof(range))
            hdrs = curl_slist_append(hdrs, range);
        _cleanup_free_ char *auth = NULL;
        unsigned gen = 0;
        if (home) {
            pthread_mutex_lock(&c->auth_lock);
            auth = c->auth ? strdup(c->auth) : NULL;
            gen = c->auth_gen;
            pthread_mutex_unlock(&c->auth_lock);
            if (auth)
                hdrs = curl_slist_append(hdrs, auth);
        }
        setup(c, h, url, hdrs, rs, rq->timeout_s);
        rs->ranged = rq->range != NULL;
        rs->range_off = rq->range_off;
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header_status);
        CURLcode cc = curl_easy_perform(h);
        if (rs->fd >= 0)
            flush(rs); /* before the outcome: an error writing is the fill's */
        if (rs->cut)
            cc = CURLE_OK; /* an error or redirect body cut short: its status and headers are what count */
        slist_wipe_free(hdrs);
        if (auth)
            explicit_bzero(auth, strlen(auth));
        if (rs->progress && rs->written && (cc != CURLE_OK || rs->written != rs->want))
            atomic_fetch_sub(rs->progress, rs->written); /* fetched again whole on a retry */
        /* a 401, or (ECR, its token expired) a 403 to a login of our own: answered once, or
         * twice with a login (what it gave first may be a kept token that has just expired) */
        if (cc == CURLE_OK && (rs->status == 401 || (rs->status == 403 && c->logged_in)) && home &&
            answered < (c->login ? 2 : 1)) {
            answered++;
            int r = answer(c, rs, gen, e);
            if (r < 0)
                return e->code ? wc_err_prefix(e, "%s: ", what) : wc_err(e, r, "%s: out of memory", what);
            continue;
        }
        if (cc == CURLE_OK && rs->status >= 300 && rs->status < 400 && rs->status != 304) {
            if (!rq->follow)
                return wc_err(e, -EPROTO, "%s: registry %s redirected a request warmcache does not follow redirects "
                              "for (HTTP %ld)", what, c->ref.host, rs->status);
            if (++hops > REDIRECTS_MAX)
                return wc_err(e, -ELOOP, "%s: more than %d redirects", what, REDIRECTS_MAX);
            char next[OCI_URL_MAX], o[OCI_HOST_MAX + 32];
            if (!rs->location[0] || resolve_location(url, rs->location, next, sizeof(next)) < 0)
                return wc_err(e, -EPROTO, "%s: registry %s redirected to \"%.*s\", not an https:// URL: refused",
                              what, c->ref.host, (int)strcspn(rs->location, "?#"), rs->location); /* a query may hold a signature */
            home = home && origin_of(next, o, sizeof(o)) == 0 && strcmp(o, base_origin) == 0;
            memcpy(url, next, sizeof(url));
            continue;
        }
        return outcome(c, cc, rs, home, what, e);
    }
}

int oci_client_new(const char *url, const struct oci_options *o, struct oci_client **ret, struct wc_error *e)
{
    pthread_once(&curl_once, curl_init_once);
    struct oci_ref ref;
    int r = oci_ref_parse(url, &ref, e);
    if (r < 0)
        return r;
    if ((o->username && *o->username) != (o->password && *o->password))
        return wc_err(e, -EINVAL, "registry %s: the Secret gives a %s without a %s", ref.host,
                      o->username && *o->username ? "username" : "password",
                      o->username && *o->username ? "password" : "username");
    struct oci_client *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->ref = ref;
    snprintf(c->base, sizeof(c->base), "https://%s", ref.host);
    c->stall_s = o->stall_seconds ? o->stall_seconds : 30;
    c->login = o->login;
    c->login_ctx = o->login_ctx;
    if (o->ca_file)
        snprintf(c->ca_file, sizeof(c->ca_file), "%s", o->ca_file);
    pthread_mutex_init(&c->curl_lock, NULL);
    pthread_mutex_init(&c->auth_lock, NULL);
    pthread_mutex_init(&c->answer_lock, NULL);
    c->curl = curl_easy_init();
    if (o->username && *o->username) {
        c->user = strdup(o->username);
        c->pass = strdup(o->password);
    } else if (o->docker_config && *o->docker_config &&
               (r = oci_docker_config_auth(o->docker_config, strlen(o->docker_config), ref.host, &c->user, &c->pass,
                                           e)) < 0) {
        oci_client_free(c);
        return r;
    }
    if (!c->curl || (o->username && *o->username && (!c->user || !c->pass))) {
        oci_client_free(c);
        return -ENOMEM;
    }
    *ret = c;
    return 0;
}

void oci_client_free(struct oci_client *c)
{
    if (!c)
        return;
    char *secrets[] = {c->user, c->pass, c->auth};
    for (size_t i = 0; i < ARRAY_SIZE(secrets); i++) {
        if (secrets[i])
            explicit_bzero(secrets[i], strlen(secrets[i]));
        free(secrets[i]);
    }
    curl_easy_cleanup(c->curl);
    pthread_mutex_destroy(&c->curl_lock);
    pthread_mutex_destroy(&c->auth_lock);
    pthread_mutex_destroy(&c->answer_lock);
    free(c);
}

#define ACCEPT_MANIFESTS "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, " \
    "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json"

/* One manifest document by tag or digest, checked against the digest it
 * was asked by (or, by tag, against the digest the registry says it has). */
static int fetch_manifest(struct oci_client *c, const char *ref, const atomic_int *cancel, char **ret_body,
                          size_t *ret_n, char ret_digest[OCI_DIGEST_LEN + 1], struct wc_error *e)
{
    char path[OCI_REPO_MAX + OCI_TAG_MAX + 32], what[OCI_HOST_MAX + sizeof(path) + 32];
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", c->ref.repo, ref);
    snprintf(what, sizeof(what), "manifest %s/%s%s%s", c->ref.host, c->ref.repo,
             strncmp(ref, "sha256:", 7) == 0 ? "@" : ":", ref);
    struct oci_req rq = {.path = path, .accept = ACCEPT_MANIFESTS, .timeout_s = 120};
    struct oci_resp rs = {.fd = -1, .max = MANIFEST_MAX, .cancel = cancel};
    int r = -EAGAIN;
    for (int attempt = 0; attempt < OCI_RETRIES && r == -EAGAIN; attempt++) {
        if (attempt)
            usleep(oci_backoff_ms(attempt) * 1000);
        wc_error_clear(e);
        pthread_mutex_lock(&c->curl_lock);
        r = oci_send(c, c->curl, &rq, &rs, what, e);
        pthread_mutex_unlock(&c->curl_lock);
    }
    if (r == -EFBIG)
        r = wc_err(e, -EFBIG, "%s: larger than %u MiB, which no manifest needs: refused", what, MANIFEST_MAX >> 20);
    if (r < 0) {
        free(rs.buf);
        return r;
    }
    char got[OCI_DIGEST_LEN + 1] = "sha256:";
    sha256_hex(rs.buf ? rs.buf : "", rs.n, got + 7);
    const char *want = oci_digest_ok(ref, strlen(ref)) ? ref : rs.digest[0] ? rs.digest : NULL;
    if (want && strcmp(got, want) != 0) {
        free(rs.buf);
        return wc_err(e, -EBADMSG, "%s: the bytes the registry sent have digest %s, not %s: refused", what, got,
                      want);
    }
    *ret_body = rs.buf;
    *ret_n = rs.n;
    memcpy(ret_digest, got, sizeof(got));
    return 0;
}

int oci_resolve(struct oci_client *c, const atomic_int *cancel, struct oci_manifest *ret, struct wc_error *e)
{
    char ref[OCI_DIGEST_LEN + OCI_TAG_MAX + 1];
    snprintf(ref, sizeof(ref), "%s", c->ref.digest[0] ? c->ref.digest : c->ref.tag);
    for (int depth = 0; depth < 2; depth++) { /* an index, then one of its manifests */
        _cleanup_free_ char *body = NULL;
        size_t n = 0;
        char digest[OCI_DIGEST_LEN + 1], next[OCI_DIGEST_LEN + 1];
        int r = fetch_manifest(c, ref, cancel, &body, &n, digest, e);
        if (r < 0)
            return r;
        struct oci_manifest m;
        if ((r = oci_manifest_parse(body, n, &m, next, e)) < 0)
            return e->code ? wc_err_prefix(e, "%s/%s: ", c->ref.host, c->ref.repo) : wc_err(e, r, "out of memory");
        if (!next[0]) {
            memcpy(m.digest, digest, sizeof(digest));
            *ret = m;
            return 0;
        }
        memcpy(ref, next, sizeof(next));
    }
    return wc_err(e, -EBADMSG, "%s/%s: an index that points at another index: refused", c->ref.host, c->ref.repo);
}
