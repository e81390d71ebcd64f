/*
 * See sigv4.h. The canonical request is built in one growable string; the
 * steps follow the AWS description in order: canonical URI (checked, not
 * rewritten), canonical query (decoded, re-encoded, sorted by key then
 * value), canonical headers (lower-cased, trimmed, repeated names joined,
 * sorted by name), signed headers, payload hash; then the string to sign
 * and the HMAC chain date -> region -> service -> "aws4_request".
 *
 * Every check that can fail is done before the secret is touched, and the
 * secret-derived keys are wiped after use. Messages name what is wrong
 * (a header name, an offset) but never a value: header values may carry
 * tokens, and the credentials are never quoted at all.
 */
#include "s3/sigv4.h"
#include "base/macros.h"
#include "base/uri.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIGV4_ALGORITHM "AWS4-HMAC-SHA256"
#define SHA256_LEN 32
#define HEADER_NAME_MAX 256

/* ---- a growable string: an allocation failure is remembered, checked once ---- */

struct strbuf {
    char *s;
    size_t n, cap;
    bool oom;
};

static void strbuf_addn(struct strbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->oom = true;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void strbuf_add(struct strbuf *b, const char *s)
{
    strbuf_addn(b, s, strlen(s));
}

static void strbuf_addc(struct strbuf *b, char c)
{
    strbuf_addn(b, &c, 1);
}

static void strbuf_done(struct strbuf *b)
{
    free(b->s);
    b->s = NULL;
}

#define _cleanup_strbuf_ _cleanup_(strbuf_done)

/* ---- character classes, ASCII only: isalnum() would follow the locale ---- */

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static bool is_upper_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

/* RFC 9110 token characters: what a header name may consist of. */
static bool is_tchar(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c);
}

static void to_hex(const unsigned char *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* ---- URI encoding -------------------------------------------------------- */

static void uri_encode_into(struct strbuf *b, const char *s, size_t n, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (uri_unreserved(c) || (keep_slash && c == '/')) {
            strbuf_addc(b, (char)c);
        } else {
            char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
            strbuf_addn(b, esc, 3);
        }
    }
}

int sigv4_uri_encode(const char *in, int keep_slash, char *out, size_t n)
{
    return uri_encode(in, keep_slash, out, n);
}

/* ---- canonical URI: S3 takes the path as sent, so we only check it -------- */

static int check_path(const char *path, struct wc_error *e)
{
    if (path[0] != '/')
        return wc_err(e, -EINVAL, "cannot sign the request: its path does not start with '/'");
    for (size_t i = 0; path[i]; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c == '/' || uri_unreserved(c))
            continue;
        if (c == '%' && is_upper_hex((unsigned char)path[i + 1]) && is_upper_hex((unsigned char)path[i + 2])) {
            i += 2;
            continue;
        }
        return wc_err(e, -EINVAL,
                      "cannot sign the request: its path is not URI-encoded (byte 0x%02x at offset %zu); "
                      "encode it with sigv4_uri_encode",
                      c, i);
    }
    return 0;
}

/* ---- canonical query ------------------------------------------------------- */

struct qparam {
    char *key, *value; /* both encoded */
};

static int qparam_cmp(const void *a, const void *b)
{
    const struct qparam *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : strcmp(x->value, y->value);
}

/* Percent-decodes s[0..n) and appends the S3 encoding of the result to out.
 * A '+' is taken as a literal plus and signed as %2B, never as a space: our
 * client encodes spaces as %20 and pluses as %2B, so nothing depends on how
 * a server reads a bare '+'. The decoded bytes may hold a NUL: they are
 * handled by length, never as a C string. */
static int reencode(const char *s, size_t n, struct strbuf *out, size_t at, struct wc_error *e)
{
    _cleanup_strbuf_ struct strbuf raw = {0};
    strbuf_addn(&raw, "", 0);
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            strbuf_addc(&raw, s[i]);
            continue;
        }
        int h = i + 2 < n ? hex_value((unsigned char)s[i + 1]) : -1;
        int l = i + 2 < n ? hex_value((unsigned char)s[i + 2]) : -1;
        if (h < 0 || l < 0)
            return wc_err(e, -EINVAL, "cannot sign the request: malformed %%-escape in its query at offset %zu",
                          at + i);
        strbuf_addc(&raw, (char)(h << 4 | l));
        i += 2;
    }
    strbuf_addn(out, "", 0);
    if (raw.oom)
        return -ENOMEM;
    uri_encode_into(out, raw.s, raw.n, false);
    return out->oom ? -ENOMEM : 0;
}

struct qparams {
    struct qparam *v;
    size_t n;
};

static void qparams_done(struct qparams *q)
{
    for (size_t i = 0; i < q->n; i++) {
        free(q->v[i].key);
        free(q->v[i].value);
    }
    free(q->v);
}

static int canonical_query(const char *query, struct strbuf *b, struct wc_error *e)
{
    if (!query || !*query)
        return 0;
    size_t max = 1;
    for (const char *p = query; *p; p++)
        max += *p == '&';
    _cleanup_(qparams_done) struct qparams q = {calloc(max, sizeof(struct qparam)), 0};
    if (!q.v)
        return -ENOMEM;
    for (const char *p = query;;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > 0) { /* "a&&b" and a trailing '&' carry no parameter */
            const char *eq = memchr(p, '=', len);
            size_t klen = eq ? (size_t)(eq - p) : len;
            _cleanup_strbuf_ struct strbuf k = {0}, v = {0};
            int r = reencode(p, klen, &k, (size_t)(p - query), e);
            if (r == 0 && eq)
                r = reencode(eq + 1, len - klen - 1, &v, (size_t)(eq + 1 - query), e);
            else if (r == 0)
                strbuf_addn(&v, "", 0); /* "key" signs as "key=" */
            if (r == 0 && v.oom)
                r = -ENOMEM;
            if (r < 0)
                return r;
            q.v[q.n++] = (struct qparam){TAKE_PTR(k.s), TAKE_PTR(v.s)};
        }
        if (!amp)
            break;
        p = amp + 1;
    }
    qsort(q.v, q.n, sizeof(*q.v), qparam_cmp);
    for (size_t i = 0; i < q.n; i++) {
        if (i)
            strbuf_addc(b, '&');
        strbuf_add(b, q.v[i].key);
        strbuf_addc(b, '=');
        strbuf_add(b, q.v[i].value);
    }
    return 0;
}

/* ---- canonical headers ------------------------------------------------------ */

struct chdr {
    char name[HEADER_NAME_MAX]; /* lower case */
    char *value;                /* canonical */
    size_t order;               /* position given, so repeated names join in order */
};

struct chdrs {
    struct chdr *v;
    size_t n;
};

static void chdrs_done(struct chdrs *h)
{
    for (size_t i = 0; i < h->n; i++)
        free(h->v[i].value);
    free(h->v);
}

static int chdr_cmp(const void *a, const void *b)
{
    const struct chdr *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->order > y->order) - (x->order < y->order);
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Trims and collapses inner runs of blanks to one space ("a   b" -> "a b"). */
static char *canonical_value(const char *v)
{
    char *out = malloc(strlen(v) + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    bool blank = false;
    for (; *v; v++) {
        if (is_blank(*v)) {
            blank = true;
            continue;
        }
        if (blank && o)
            out[o++] = ' ';
        blank = false;
        out[o++] = *v;
    }
    out[o] = '\0';
    return out;
}

static int check_value(const char *what, const char *v, struct wc_error *e)
{
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
            return wc_err(e, -EINVAL, "cannot sign the request: %s holds a control character (offset %zu)", what,
                          (size_t)(p - (const unsigned char *)v));
    return 0;
}

static int add_header(struct chdrs *h, const char *name, const char *value, struct wc_error *e)
{
    struct chdr *c = &h->v[h->n];
    size_t len = strlen(name);
    if (len == 0 || len >= sizeof(c->name))
        return wc_err(e, -EINVAL, "cannot sign the request: a header name is empty or longer than %d bytes",
                      HEADER_NAME_MAX - 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (!is_tchar(ch))
            return wc_err(e, -EINVAL, "cannot sign the request: header name has an invalid byte 0x%02x at offset %zu",
                          ch, i);
        c->name[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
    }
    c->name[len] = '\0';
    char what[HEADER_NAME_MAX + 32];
    snprintf(what, sizeof(what), "the value of header %s", c->name);
    int r = check_value(what, value, e);
    if (r < 0)
        return r;
    if (!(c->value = canonical_value(value)))
        return -ENOMEM;
    c->order = h->n++;
    return 0;
}

static const struct chdr *find_header(const struct chdrs *h, const char *name)
{
    for (size_t i = 0; i < h->n; i++)
        if (streq(h->v[i].name, name))
            return &h->v[i];
    return NULL;
}

/* Caller headers plus the ones the signer owns, sorted. */
static int collect_headers(const struct sigv4_request *rq, const struct sigv4_credentials *cr, const char *service,
                           const char *amz_date, struct chdrs *h, bool *ret_content_sha256, struct wc_error *e)
{
    static const char *const reserved[] = {"x-amz-date", "x-amz-security-token", "authorization"};
    int r;
    if (!(h->v = calloc(rq->n_headers + 3, sizeof(*h->v))))
        return -ENOMEM;
    for (size_t i = 0; i < rq->n_headers; i++) {
        if (!rq->headers[i].name || !rq->headers[i].value)
            return wc_err(e, -EINVAL, "cannot sign the request: header %zu has no name or no value", i);
        if ((r = add_header(h, rq->headers[i].name, rq->headers[i].value, e)) < 0)
            return r;
        for (size_t k = 0; k < ARRAY_SIZE(reserved); k++)
            if (streq(h->v[h->n - 1].name, reserved[k]))
                return wc_err(e, -EINVAL, "cannot sign the request: header %s is set by the signer, leave it out",
                              reserved[k]);
    }
    if (!find_header(h, "host"))
        return wc_err(e, -EINVAL, "cannot sign the request: it has no host header");

    const struct chdr *sha = find_header(h, "x-amz-content-sha256");
    if (sha) {
        /* S3 checks the body against this header: one value, the one signed */
        for (size_t i = 0; i < h->n; i++)
            if (&h->v[i] != sha && streq(h->v[i].name, sha->name))
                return wc_err(e, -EINVAL, "cannot sign the request: header x-amz-content-sha256 is given twice");
        if (!streq(sha->value, rq->payload_sha256))
            return wc_err(e, -EINVAL,
                          "cannot sign the request: header x-amz-content-sha256 differs from the payload hash signed");
    }
    bool s3 = streq(service, "s3");
    if (!sha && s3 && (r = add_header(h, "x-amz-content-sha256", rq->payload_sha256, e)) < 0)
        return r;
    if ((r = add_header(h, "x-amz-date", amz_date, e)) < 0)
        return r;
    /* a bad token is reported by header name only, never quoted */
    if (cr->session_token && *cr->session_token &&
        (r = add_header(h, "x-amz-security-token", cr->session_token, e)) < 0)
        return r;
    qsort(h->v, h->n, sizeof(*h->v), chdr_cmp);
    *ret_content_sha256 = sha || s3;
    return 0;
}

/* Appends "name:v1,v2\n" per distinct name to creq and "a;b" to signed_headers. */
static void canonical_headers(const struct chdrs *h, struct strbuf *creq, struct strbuf *signed_headers)
{
    for (size_t i = 0; i < h->n;) {
        if (i)
            strbuf_addc(signed_headers, ';');
        strbuf_add(signed_headers, h->v[i].name);
        strbuf_add(creq, h->v[i].name);
        strbuf_addc(creq, ':');
        size_t j = i;
        for (; j < h->n && streq(h->v[j].name, h->v[i].name); j++) {
            if (j > i)
                strbuf_addc(creq, ',');
            strbuf_add(creq, h->v[j].value);
        }
        strbuf_addc(creq, '\n');
        i = j;
    }
}

/* ---- inputs that are not headers -------------------------------------------- */

static bool is_payload_hash(const char *p)
{
    static const char *const literals[] = {"UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                                           "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                                           "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"};
    for (size_t i = 0; i < ARRAY_SIZE(literals); i++)
        if (streq(p, literals[i]))
            return true;
    size_t n = 0;
    for (; p[n]; n++)
        if (!((p[n] >= '0' && p[n] <= '9') || (p[n] >= 'a' && p[n] <= 'f')))
            return false;
    return n == 2 * SHA256_LEN;
}

/* Region and service go into the credential scope, between '/'. */
static int check_scope_part(const char *what, const char *s, struct wc_error *e)
{
    if (!s || !*s || strlen(s) > 64)
        return wc_err(e, -EINVAL, "cannot sign the request: the %s is empty or too long", what);
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
            return wc_err(e, -EINVAL,
                          "cannot sign the request: the %s has a byte (0x%02x at offset %zu) that no AWS %s has", what,
                          (unsigned char)*p, (size_t)(p - s), what);
    return 0;
}

static int check_request(const struct sigv4_request *rq, const struct sigv4_credentials *cr, const char *region,
                         const char *service, struct wc_error *e)
{
    int r;
    if (!cr || !cr->access_key_id || !*cr->access_key_id || !cr->secret_access_key || !*cr->secret_access_key)
        return wc_err(e, -EACCES, "no AWS credentials to sign the request with");
    /* the key id lands in the Authorization header: no separators, no blanks */
    for (const char *p = cr->access_key_id; *p; p++)
        if (!uri_unreserved((unsigned char)*p))
            return wc_err(e, -EINVAL, "cannot sign the request: the access key id holds a character that is not "
                                      "allowed in it (check the credentials)");
    if (!rq->method || !*rq->method)
        return wc_err(e, -EINVAL, "cannot sign the request: it has no method");
    for (const char *p = rq->method; *p; p++)
        if (!(*p >= 'A' && *p <= 'Z'))
            return wc_err(e, -EINVAL, "cannot sign the request: its method is not an upper-case HTTP method");
    if (rq->path && *rq->path && (r = check_path(rq->path, e)) < 0)
        return r;
    if (!rq->payload_sha256 || !is_payload_hash(rq->payload_sha256))
        return wc_err(e, -EINVAL, "cannot sign the request: the payload hash is neither 64 lower-case hex "
                                  "digits nor UNSIGNED-PAYLOAD");
    if (rq->n_headers && !rq->headers)
        return wc_err(e, -EINVAL, "cannot sign the request: headers counted but not given");
    if ((r = check_scope_part("region", region, e)) < 0 || (r = check_scope_part("service", service, e)) < 0)
        return r;
    return 0;
}

/* ---- the HMAC chain ------------------------------------------------------------ */

static int hmac_sha256(const void *key, size_t klen, const char *msg, unsigned char out[SHA256_LEN])
{
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &len) || len != SHA256_LEN)
        return -EIO;
    return 0;
}

/* signature = HMAC(HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request"), sts) */
static int sign_string(const char *secret, const char *date, const char *region, const char *service,
                       const char *sts, char sig_hex[2 * SHA256_LEN + 1])
{
    size_t slen = strlen(secret);
    _cleanup_free_ char *k0 = malloc(slen + 4);
    if (!k0)
        return -ENOMEM;
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, secret, slen);
    /* each step keys on the previous one; no buffer is both key and output */
    unsigned char kdate[SHA256_LEN], kregion[SHA256_LEN], kservice[SHA256_LEN], ksigning[SHA256_LEN];
    unsigned char sig[SHA256_LEN];
    int r = hmac_sha256(k0, slen + 4, date, kdate);
    if (r == 0)
        r = hmac_sha256(kdate, SHA256_LEN, region, kregion);
    if (r == 0)
        r = hmac_sha256(kregion, SHA256_LEN, service, kservice);
    if (r == 0)
        r = hmac_sha256(kservice, SHA256_LEN, "aws4_request", ksigning);
    if (r == 0)
        r = hmac_sha256(ksigning, SHA256_LEN, sts, sig);
    OPENSSL_cleanse(k0, slen + 4);
    OPENSSL_cleanse(kdate, SHA256_LEN);
    OPENSSL_cleanse(kregion, SHA256_LEN);
    OPENSSL_cleanse(kservice, SHA256_LEN);
    OPENSSL_cleanse(ksigning, SHA256_LEN);
    if (r == 0)
        to_hex(sig, sizeof(sig), sig_hex);
    return r;
}

/* ---- putting it together -------------------------------------------------------- */

int sigv4_sign(const struct sigv4_request *rq, const struct sigv4_credentials *cr, const char *region,
               const char *service, time_t now, struct sigv4_result *ret, struct wc_error *e)
{
    int r = check_request(rq, cr, region, service, e);
    if (r < 0)
        return r;

    struct sigv4_result res = {0};
    struct tm tm;
    if (!gmtime_r(&now, &tm) || strftime(res.amz_date, sizeof(res.amz_date), "%Y%m%dT%H%M%SZ", &tm) != SIGV4_DATE_LEN)
        return wc_err(e, -EINVAL, "cannot sign the request: the clock reads a time outside years 1000-9999");
    char date[9];
    memcpy(date, res.amz_date, 8);
    date[8] = '\0';

    _cleanup_(chdrs_done) struct chdrs h = {0};
    bool content_sha256 = false;
    if ((r = collect_headers(rq, cr, service, res.amz_date, &h, &content_sha256, e)) < 0)
        return r == -ENOMEM ? wc_err(e, r, "cannot sign the request: out of memory") : r;

    _cleanup_strbuf_ struct strbuf creq = {0}, signed_headers = {0}, sts = {0};
    strbuf_add(&creq, rq->method);
    strbuf_addc(&creq, '\n');
    strbuf_add(&creq, rq->path && *rq->path ? rq->path : "/");
    strbuf_addc(&creq, '\n');
    if ((r = canonical_query(rq->query, &creq, e)) < 0)
        return r == -ENOMEM ? wc_err(e, r, "cannot sign the request: out of memory") : r;
    strbuf_addc(&creq, '\n');
    canonical_headers(&h, &creq, &signed_headers);
    strbuf_addc(&creq, '\n');
    strbuf_add(&creq, signed_headers.s ? signed_headers.s : "");
    strbuf_addc(&creq, '\n');
    strbuf_add(&creq, rq->payload_sha256);
    if (creq.oom || signed_headers.oom)
        return wc_err(e, -ENOMEM, "cannot sign the request: out of memory");

    unsigned char md[SHA256_LEN];
    unsigned int mdlen = 0;
    char creq_hash[2 * SHA256_LEN + 1], scope[160];
    if (!EVP_Digest(creq.s, creq.n, md, &mdlen, EVP_sha256(), NULL) || mdlen != SHA256_LEN)
        return wc_err(e, -EIO, "cannot sign the request: SHA-256 failed in OpenSSL");
    to_hex(md, sizeof(md), creq_hash);
    snprintf(scope, sizeof(scope), "%s/%s/%s/aws4_request", date, region, service);
    strbuf_add(&sts, SIGV4_ALGORITHM "\n");
    strbuf_add(&sts, res.amz_date);
    strbuf_addc(&sts, '\n');
    strbuf_add(&sts, scope);
    strbuf_addc(&sts, '\n');
    strbuf_add(&sts, creq_hash);
    if (sts.oom)
        return wc_err(e, -ENOMEM, "cannot sign the request: out of memory");

    char sig[2 * SHA256_LEN + 1];
    if ((r = sign_string(cr->secret_access_key, date, region, service, sts.s, sig)) < 0)
        return wc_err(e, r, r == -ENOMEM ? "cannot sign the request: out of memory"
                                         : "cannot sign the request: HMAC-SHA256 failed in OpenSSL");
    int w = snprintf(res.authorization, sizeof(res.authorization),
                     SIGV4_ALGORITHM " Credential=%s/%s, SignedHeaders=%s, Signature=%s", cr->access_key_id, scope,
                     signed_headers.s, sig);
    if (w < 0 || (size_t)w >= sizeof(res.authorization))
        return wc_err(e, -ENAMETOOLONG, "cannot sign the request: %zu signed headers do not fit in an "
                                        "Authorization header of %d bytes", h.n, SIGV4_AUTH_MAX);

    if (content_sha256)
        snprintf(res.content_sha256, sizeof(res.content_sha256), "%s", rq->payload_sha256);
    res.security_token = cr->session_token && *cr->session_token ? cr->session_token : NULL;
    res.canonical_request = TAKE_PTR(creq.s);
    res.string_to_sign = TAKE_PTR(sts.s);
    *ret = res;
    return 0;
}

void sigv4_result_free(struct sigv4_result *r)
{
    free(r->canonical_request);
    free(r->string_to_sign);
    r->canonical_request = r->string_to_sign = NULL;
}
