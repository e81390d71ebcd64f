/* See sigv4.h. Memory: the canonical pieces are built in growable strings. */
#include "s3/sigv4.h"
#include "base/macros.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct buf {
    char *s;
    size_t n, cap;
    int oom;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->oom = 1;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void buf_str(struct buf *b, const char *s) { buf_add(b, s, strlen(s)); }

int sigv4_uri_encode(const char *in, int keep_slash, char *out, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        int plain = isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~' || (keep_slash && *p == '/');
        if (o + (plain ? 1 : 3) >= n)
            return -ENAMETOOLONG;
        if (plain) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
    return 0;
}

static void sha256_hex_of(const char *s, size_t n, char out[65])
{
    unsigned char md[32];
    unsigned int len = 0;
    EVP_Digest(s, n, md, &len, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
}

static void hmac(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
    unsigned int len = 32;
    HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &len);
}

/* ---- canonical query: split on '&', sort by key then value ------------- */

struct qparam {
    char *k, *v;
};

static int qcmp(const void *a, const void *b)
{
    const struct qparam *x = a, *y = b;
    int c = strcmp(x->k, y->k);
    return c ? c : strcmp(x->v, y->v);
}

/* The query may arrive encoded or not: decode, then encode the S3 way, so
 * "a b" and "a%20b" sign alike ('+' stays a literal plus, as S3 reads it). */
static void url_decode(const char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '%' && i + 2 < n && isxdigit((unsigned char)in[i + 1]) && isxdigit((unsigned char)in[i + 2])) {
            char h[3] = {in[i + 1], in[i + 2], 0};
            out[o++] = (char)strtol(h, NULL, 16);
            i += 2;
        } else {
            out[o++] = in[i];
        }
    }
    out[o] = '\0';
}

static int canonical_query(const char *query, struct buf *b)
{
    if (!query || !*query)
        return 0;
    size_t n = 1;
    for (const char *p = query; *p; p++)
        n += *p == '&';
    struct qparam *v = calloc(n, sizeof(*v));
    if (!v)
        return -ENOMEM;
    size_t cnt = 0;
    int r = 0;
    for (const char *p = query; *p && r == 0;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t klen = eq ? (size_t)(eq - p) : len;
        size_t vlen = eq ? len - klen - 1 : 0;
        char *kd = malloc(klen + 1), *vd = malloc(vlen + 1);
        char *ke = malloc(klen * 3 + 1), *ve = malloc(vlen * 3 + 1);
        if (!kd || !vd || !ke || !ve) {
            r = -ENOMEM;
        } else if (len > 0) {
            url_decode(p, klen, kd);
            url_decode(eq ? eq + 1 : "", vlen, vd);
            sigv4_uri_encode(kd, 0, ke, klen * 3 + 1);
            sigv4_uri_encode(vd, 0, ve, vlen * 3 + 1);
            v[cnt++] = (struct qparam){ke, ve};
            ke = ve = NULL;
        }
        free(kd);
        free(vd);
        free(ke);
        free(ve);
        p = amp ? amp + 1 : p + len;
    }
    if (r == 0) {
        qsort(v, cnt, sizeof(*v), qcmp);
        for (size_t i = 0; i < cnt; i++) {
            if (i)
                buf_str(b, "&");
            buf_str(b, v[i].k);
            buf_str(b, "=");
            buf_str(b, v[i].v);
        }
    }
    for (size_t i = 0; i < cnt; i++) {
        free(v[i].k);
        free(v[i].v);
    }
    free(v);
    return r;
}

/* ---- canonical headers ---------------------------------------------------- */

struct hdr {
    char name[128];
    char *value;
};

static int hcmp(const void *a, const void *b)
{
    return strcmp(((const struct hdr *)a)->name, ((const struct hdr *)b)->name);
}

/* Trim, collapse inner runs of white space to one space. */
static char *canonical_value(const char *v)
{
    char *out = malloc(strlen(v) + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    int space = 0;
    while (*v == ' ' || *v == '\t')
        v++;
    for (; *v; v++) {
        if (*v == ' ' || *v == '\t') {
            space = 1;
            continue;
        }
        if (space && o)
            out[o++] = ' ';
        space = 0;
        out[o++] = *v;
    }
    out[o] = '\0';
    return out;
}

int sigv4_sign(const struct sigv4_request *rq, const struct sigv4_credentials *cr, const char *region,
               const char *service, time_t now, struct sigv4_result *ret, struct wc_error *e)
{
    if (!cr || !cr->access_key_id || !*cr->access_key_id || !cr->secret_access_key || !*cr->secret_access_key)
        return wc_err(e, -EACCES, "no AWS credentials to sign the request with");
    struct sigv4_result res = {0};
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(res.amz_date, sizeof(res.amz_date), "%Y%m%dT%H%M%SZ", &tm);
    char date[9];
    memcpy(date, res.amz_date, 8);
    date[8] = '\0';

    /* headers: the caller's, plus x-amz-date and the session token */
    size_t nh = rq->n_headers + 2;
    struct hdr *h = calloc(nh, sizeof(*h));
    if (!h)
        return -ENOMEM;
    size_t k = 0;
    int r = 0;
    for (size_t i = 0; i < rq->n_headers && r == 0; i++, k++) {
        snprintf(h[k].name, sizeof(h[k].name), "%s", rq->headers[i].name);
        for (char *p = h[k].name; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        if (!(h[k].value = canonical_value(rq->headers[i].value)))
            r = -ENOMEM;
    }
    if (r == 0) {
        snprintf(h[k].name, sizeof(h[k].name), "x-amz-date");
        r = (h[k++].value = strdup(res.amz_date)) ? 0 : -ENOMEM;
    }
    if (r == 0 && cr->session_token && *cr->session_token) {
        snprintf(h[k].name, sizeof(h[k].name), "x-amz-security-token");
        r = (h[k++].value = strdup(cr->session_token)) ? 0 : -ENOMEM;
    }
    qsort(h, k, sizeof(*h), hcmp);

    struct buf creq = {0}, signed_h = {0}, sts = {0};
    buf_str(&creq, rq->method);
    buf_str(&creq, "\n");
    buf_str(&creq, rq->path && *rq->path ? rq->path : "/");
    buf_str(&creq, "\n");
    if (r == 0)
        r = canonical_query(rq->query, &creq);
    buf_str(&creq, "\n");
    for (size_t i = 0; i < k; i++) {
        buf_str(&creq, h[i].name);
        buf_str(&creq, ":");
        buf_str(&creq, h[i].value ? h[i].value : "");
        buf_str(&creq, "\n");
        if (i)
            buf_str(&signed_h, ";");
        buf_str(&signed_h, h[i].name);
    }
    buf_str(&creq, "\n");
    buf_str(&creq, signed_h.s ? signed_h.s : "");
    buf_str(&creq, "\n");
    buf_str(&creq, rq->payload_sha256);

    char scope[256], creq_hash[65];
    snprintf(scope, sizeof(scope), "%s/%s/%s/aws4_request", date, region, service);
    if (!creq.oom && creq.s)
        sha256_hex_of(creq.s, creq.n, creq_hash);
    buf_str(&sts, "AWS4-HMAC-SHA256\n");
    buf_str(&sts, res.amz_date);
    buf_str(&sts, "\n");
    buf_str(&sts, scope);
    buf_str(&sts, "\n");
    buf_add(&sts, creq_hash, 64);

    if (r == 0 && (creq.oom || sts.oom || signed_h.oom || !signed_h.s))
        r = -ENOMEM;
    if (r == 0) {
        /* signing key: HMAC chain over date, region, service; the secret only enters here */
        size_t slen = strlen(cr->secret_access_key);
        _cleanup_free_ char *k0 = malloc(slen + 5);
        unsigned char k1[32], k2[32], k3[32], k4[32], sig[32];
        if (!k0) {
            r = -ENOMEM;
        } else {
            memcpy(k0, "AWS4", 4);
            memcpy(k0 + 4, cr->secret_access_key, slen + 1);
            hmac(k0, slen + 4, date, k1);
            hmac(k1, 32, region, k2);
            hmac(k2, 32, service, k3);
            hmac(k3, 32, "aws4_request", k4);
            hmac(k4, 32, sts.s, sig);
            explicit_bzero(k0, slen + 4);
            explicit_bzero(k4, sizeof(k4));
            char sighex[65];
            for (int i = 0; i < 32; i++)
                sprintf(sighex + 2 * i, "%02x", sig[i]);
            int w = snprintf(res.authorization, sizeof(res.authorization),
                             "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s", cr->access_key_id,
                             scope, signed_h.s, sighex);
            if (w < 0 || (size_t)w >= sizeof(res.authorization))
                r = wc_err(e, -ENAMETOOLONG, "the signed headers do not fit in an Authorization header");
        }
    }
    for (size_t i = 0; i < k; i++)
        free(h[i].value);
    free(h);
    free(signed_h.s);
    if (r < 0) {
        free(creq.s);
        free(sts.s);
        return e->code ? r : wc_err(e, r, "signing the request failed");
    }
    res.canonical_request = creq.s;
    res.string_to_sign = sts.s;
    *ret = res;
    return 0;
}

void sigv4_result_free(struct sigv4_result *r)
{
    free(r->canonical_request);
    free(r->string_to_sign);
    r->canonical_request = r->string_to_sign = NULL;
}
