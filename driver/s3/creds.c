/* See creds.h. */
#include "s3/creds.h"
#include "s3/sigv4.h"
#include "base/buf.h"
#include "base/fsutil.h"
#include "base/macros.h"

#include <ctype.h>
#include <curl/curl.h>
#include <expat.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BODY_MAX (64u << 10)
#define REFRESH_BEFORE 300 /* seconds before expiry: fetch new ones */

void creds_clear(struct creds *c)
{
    explicit_bzero(c->secret_access_key, sizeof(c->secret_access_key));
    explicit_bzero(c->session_token, sizeof(c->session_token));
}

static int set_field(char *dst, size_t n, const char *src, size_t len)
{
    if (len >= n)
        return -1;
    for (size_t i = 0; i < len; i++)
        if (!isprint((unsigned char)src[i]) || src[i] == ' ')
            return -1; /* goes into an HTTP header: nothing that could split it */
    memcpy(dst, src, len);
    dst[len] = '\0';
    return 0;
}

/* "2026-11-25T10:00:00Z", with or without fractional seconds. */
static time_t parse_time(const char *s)
{
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end)
        return 0;
    return timegm(&tm);
}

/* ---- parsing ------------------------------------------------------------- */

enum sts_field { SF_NONE, SF_AKID, SF_SECRET, SF_TOKEN, SF_EXPIRES, SF_CODE, SF_MESSAGE, SF_N };

struct sts_state {
    XML_Parser p;
    enum sts_field cur;
    char text[SF_N][CREDS_FIELD_MAX];
    size_t len[SF_N];
    int bad, dtd;
};

static void XMLCALL sts_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    static const char *const names[SF_N] = {NULL, "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration",
                                            "Code", "Message"};
    struct sts_state *st = ud;
    (void)attrs;
    st->cur = SF_NONE;
    for (int i = 1; i < SF_N; i++)
        if (streq(name, names[i]))
            st->cur = (enum sts_field)i;
}

static void XMLCALL sts_end(void *ud, const XML_Char *name)
{
    (void)name;
    ((struct sts_state *)ud)->cur = SF_NONE;
}

static void XMLCALL sts_text(void *ud, const XML_Char *s, int len)
{
    struct sts_state *st = ud;
    if (st->cur == SF_NONE)
        return;
    size_t *n = &st->len[st->cur];
    if (*n + (size_t)len >= CREDS_FIELD_MAX) {
        st->bad = 1;
        return;
    }
    memcpy(st->text[st->cur] + *n, s, (size_t)len);
    *n += (size_t)len;
    st->text[st->cur][*n] = '\0';
}

static void XMLCALL sts_doctype(void *ud, const XML_Char *n, const XML_Char *s, const XML_Char *p, int i)
{
    struct sts_state *st = ud;
    (void)n, (void)s, (void)p, (void)i;
    st->dtd = 1;
    XML_StopParser(st->p, XML_FALSE);
}

static void XMLCALL sts_entity(void *ud, const XML_Char *n, int ip, const XML_Char *v, int vl, const XML_Char *b,
                               const XML_Char *s, const XML_Char *p, const XML_Char *no)
{
    (void)n, (void)ip, (void)v, (void)vl, (void)b, (void)s, (void)p, (void)no;
    sts_doctype(ud, NULL, NULL, NULL, 0);
}

static int printable(char *s)
{
    for (char *c = s; *c; c++)
        if (!isprint((unsigned char)*c))
            *c = '?';
    return 0;
}

int creds_parse_sts(const char *body, size_t len, struct creds *ret, struct wc_error *e)
{
    if (len > BODY_MAX)
        return wc_err(e, -EIO, "STS answered with %zu bytes, more than a credentials response has", len);
    struct sts_state *st = calloc(1, sizeof(*st));
    if (!st || !(st->p = XML_ParserCreate("UTF-8"))) {
        free(st);
        return -ENOMEM;
    }
    XML_SetUserData(st->p, st);
    XML_SetElementHandler(st->p, sts_start, sts_end);
    XML_SetCharacterDataHandler(st->p, sts_text);
    XML_SetStartDoctypeDeclHandler(st->p, sts_doctype);
    XML_SetEntityDeclHandler(st->p, sts_entity);
    int ok = XML_Parse(st->p, body, (int)len, 1) == XML_STATUS_OK && !st->dtd && !st->bad;
    XML_ParserFree(st->p);
    int r;
    if (!ok)
        r = wc_err(e, -EIO, "STS answered with a body that is not a credentials response");
    else if (st->len[SF_CODE])
        r = wc_err(e, -EACCES, "STS AssumeRoleWithWebIdentity: %.64s: %.300s", (printable(st->text[SF_CODE]),
                   st->text[SF_CODE]), (printable(st->text[SF_MESSAGE]), st->text[SF_MESSAGE]));
    else if (set_field(ret->access_key_id, sizeof(ret->access_key_id), st->text[SF_AKID], st->len[SF_AKID]) < 0 ||
             set_field(ret->secret_access_key, sizeof(ret->secret_access_key), st->text[SF_SECRET],
                       st->len[SF_SECRET]) < 0 ||
             set_field(ret->session_token, sizeof(ret->session_token), st->text[SF_TOKEN], st->len[SF_TOKEN]) < 0 ||
             !st->len[SF_AKID] || !st->len[SF_SECRET] || !st->len[SF_TOKEN])
        r = wc_err(e, -EIO, "STS answered without usable credentials");
    else
        r = (ret->expires = parse_time(st->text[SF_EXPIRES])) ? 0
            : wc_err(e, -EIO, "STS answered without a valid Expiration");
    explicit_bzero(st, sizeof(*st));
    free(st);
    return r;
}

int creds_parse_json(const char *body, size_t len, struct creds *ret, struct wc_error *e)
{
    json_error_t je;
    json_t *j _cleanup_json_ = len <= BODY_MAX ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &je) : NULL;
    if (!json_is_object(j))
        return wc_err(e, -EIO, "the credentials endpoint answered with a body that is not a JSON object");
    const char *code = json_string_value(json_object_get(j, "Code"));
    if (code && !streq(code, "Success"))
        return wc_err(e, -EACCES, "the credentials endpoint said %.64s: %.300s", code,
                      json_string_value(json_object_get(j, "Message")) ?: "");
    const char *a = json_string_value(json_object_get(j, "AccessKeyId"));
    const char *s = json_string_value(json_object_get(j, "SecretAccessKey"));
    const char *t = json_string_value(json_object_get(j, "Token"));
    const char *x = json_string_value(json_object_get(j, "Expiration"));
    if (!a || !s || !t || set_field(ret->access_key_id, sizeof(ret->access_key_id), a, strlen(a)) < 0 ||
        set_field(ret->secret_access_key, sizeof(ret->secret_access_key), s, strlen(s)) < 0 ||
        set_field(ret->session_token, sizeof(ret->session_token), t, strlen(t)) < 0)
        return wc_err(e, -EIO, "the credentials endpoint answered without usable credentials");
    if (!x || !(ret->expires = parse_time(x)))
        return wc_err(e, -EIO, "the credentials endpoint answered without a valid Expiration");
    return 0;
}

/* ---- a tiny HTTP client for the providers --------------------------------- */

/* One request; the body in *out (freed by the caller, wiped: it holds secrets). */
static int http(const char *method, const char *url, struct curl_slist *h, const char *post, struct wc_buf *out,
                long *status, struct wc_error *e)
{
    CURL *c = curl_easy_init();
    if (!c)
        return -ENOMEM;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, wc_buf_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    if (post)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, post);
    else if (!streq(method, "GET"))
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    CURLcode cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_easy_cleanup(c);
    if (cc != CURLE_OK)
        return wc_err(e, -EHOSTUNREACH, "cannot reach %s: %s", url, curl_easy_strerror(cc));
    return 0;
}

static int from_irsa(const char *region, struct creds *ret, struct wc_error *e)
{
    const char *file = getenv("AWS_WEB_IDENTITY_TOKEN_FILE"), *role = getenv("AWS_ROLE_ARN");
    const char *session = getenv("AWS_ROLE_SESSION_NAME");
    char token[8192], url[512];
    int r = fs_read_token(file, token, sizeof(token));
    if (r < 0)
        return wc_err_errno(e, r, "IRSA: reading the service account token %s", file);
    const char *ep = getenv("AWS_ENDPOINT_URL_STS");
    if (ep && *ep)
        snprintf(url, sizeof(url), "%s", ep);
    else
        snprintf(url, sizeof(url), "https://sts.%s.amazonaws.com/", region);
    size_t bn = 3 * (strlen(token) + strlen(role) + 64) + 256;
    _cleanup_free_ char *body = malloc(bn);
    _cleanup_free_ char *et = malloc(3 * strlen(token) + 1), *er = malloc(3 * strlen(role) + 1);
    if (!body || !et || !er)
        return -ENOMEM;
    sigv4_uri_encode(token, 0, et, 3 * strlen(token) + 1); /* 3 bytes an input byte at most: fits */
    sigv4_uri_encode(role, 0, er, 3 * strlen(role) + 1);
    snprintf(body, bn, "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&DurationSeconds=3600&RoleArn=%s"
             "&RoleSessionName=%s&WebIdentityToken=%s", er, session && *session ? session : "warmcache", et);
    explicit_bzero(token, sizeof(token));
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/x-www-form-urlencoded");
    struct wc_buf b = {.max = BODY_MAX};
    long status = 0;
    r = http("POST", url, h, body, &b, &status, e);
    explicit_bzero(body, strlen(body));
    explicit_bzero(et, strlen(et));
    curl_slist_free_all(h);
    if (r == 0)
        r = creds_parse_sts(b.p ? b.p : "", b.n, ret, e);
    wc_buf_wipe(&b);
    if (r < 0)
        return wc_err_prefix(e, "IRSA (role %.200s): ", role);
    ret->source = "irsa";
    return 0;
}

static int from_container(struct creds *ret, struct wc_error *e)
{
    const char *full = getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    const char *rel = getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *tfile = getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    const char *tenv = getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN");
    char url[1024], token[4096] = "", line[4200];
    if (full && *full)
        snprintf(url, sizeof(url), "%s", full);
    else
        snprintf(url, sizeof(url), "http://169.254.170.2%s", rel);
    int r = 0;
    if (tfile && *tfile && (r = fs_read_token(tfile, token, sizeof(token))) < 0)
        return wc_err_errno(e, r, "Pod Identity: reading the token %s", tfile);
    if (!token[0] && tenv)
        snprintf(token, sizeof(token), "%s", tenv);
    struct curl_slist *h = NULL;
    if (token[0]) {
        snprintf(line, sizeof(line), "Authorization: %s", token);
        h = curl_slist_append(h, line);
        explicit_bzero(line, sizeof(line));
        explicit_bzero(token, sizeof(token));
    }
    struct wc_buf b = {.max = BODY_MAX};
    long status = 0;
    r = http("GET", url, h, NULL, &b, &status, e);
    curl_slist_free_all(h);
    if (r == 0 && status != 200)
        r = wc_err(e, -EACCES, "HTTP %ld from %s", status, url);
    if (r == 0)
        r = creds_parse_json(b.p ? b.p : "", b.n, ret, e);
    wc_buf_wipe(&b);
    if (r < 0)
        return wc_err_prefix(e, "Pod Identity: ");
    ret->source = "pod-identity";
    return 0;
}

static int from_imds(struct creds *ret, struct wc_error *e)
{
    const char *ep = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    char base[256], url[512], line[256], role[256];
    snprintf(base, sizeof(base), "%s", ep && *ep ? ep : "http://169.254.169.254");
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/')
        base[--bl] = '\0';
    struct curl_slist *h = curl_slist_append(NULL, "X-aws-ec2-metadata-token-ttl-seconds: 21600");
    struct wc_buf b = {.max = BODY_MAX};
    long status = 0;
    snprintf(url, sizeof(url), "%s/latest/api/token", base);
    int r = http("PUT", url, h, NULL, &b, &status, e);
    curl_slist_free_all(h);
    if (r == 0 && (status != 200 || !b.p || b.n > 200))
        r = wc_err(e, -EACCES, "HTTP %ld for an IMDSv2 session token", status);
    if (r < 0) {
        wc_buf_wipe(&b);
        return wc_err_prefix(e, "instance profile (IMDSv2): ");
    }
    snprintf(line, sizeof(line), "X-aws-ec2-metadata-token: %s", b.p);
    wc_buf_wipe(&b);
    h = curl_slist_append(NULL, line);
    snprintf(url, sizeof(url), "%s/latest/meta-data/iam/security-credentials/", base);
    r = http("GET", url, h, NULL, &b, &status, e);
    if (r == 0 && (status != 200 || !b.p || set_field(role, sizeof(role), b.p, strcspn(b.p, "\r\n")) < 0 || !role[0]))
        r = wc_err(e, -EACCES, "the instance has no IAM role (HTTP %ld)", status);
    wc_buf_wipe(&b);
    if (r == 0) {
        snprintf(url, sizeof(url), "%s/latest/meta-data/iam/security-credentials/%s", base, role);
        r = http("GET", url, h, NULL, &b, &status, e);
        if (r == 0 && status != 200)
            r = wc_err(e, -EACCES, "HTTP %ld for the credentials of role %s", status, role);
        if (r == 0)
            r = creds_parse_json(b.p ? b.p : "", b.n, ret, e);
        wc_buf_wipe(&b);
    }
    explicit_bzero(line, sizeof(line));
    curl_slist_free_all(h);
    if (r < 0)
        return wc_err_prefix(e, "instance profile (IMDSv2): ");
    ret->source = "instance-profile";
    return 0;
}

/* ---- the chain ----------------------------------------------------------- */

void creds_cache_init(struct creds_cache *c)
{
    *c = (struct creds_cache){0};
    pthread_mutex_init(&c->lock, NULL);
}

void creds_cache_fini(struct creds_cache *c)
{
    creds_clear(&c->cached);
    pthread_mutex_destroy(&c->lock);
}

static int from_static(const char *a, const char *s, const char *t, const char *source, struct creds *ret)
{
    *ret = (struct creds){.source = source};
    if (set_field(ret->access_key_id, sizeof(ret->access_key_id), a, strlen(a)) < 0 ||
        set_field(ret->secret_access_key, sizeof(ret->secret_access_key), s, strlen(s)) < 0 ||
        (t && *t && set_field(ret->session_token, sizeof(ret->session_token), t, strlen(t)) < 0))
        return -EINVAL;
    return 0;
}

int creds_get(struct creds_cache *cc, const struct creds_static *given, const char *region, struct creds *ret,
              struct wc_error *e)
{
    if (given && given->access_key_id && *given->access_key_id) {
        if (!given->secret_access_key || !*given->secret_access_key)
            return wc_err(e, -EACCES, "the volume's Secret has awsAccessKeyId but no awsSecretAccessKey");
        if (from_static(given->access_key_id, given->secret_access_key, given->session_token, "secret", ret) < 0)
            return wc_err(e, -EACCES, "the volume's Secret holds credentials with spaces or control characters");
        return 0;
    }
    const char *a = getenv("AWS_ACCESS_KEY_ID"), *s = getenv("AWS_SECRET_ACCESS_KEY");
    if (a && *a && s && *s) {
        if (from_static(a, s, getenv("AWS_SESSION_TOKEN"), "environment", ret) < 0)
            return wc_err(e, -EACCES, "AWS_ACCESS_KEY_ID or its secret has spaces or control characters");
        return 0;
    }
    pthread_mutex_lock(&cc->lock);
    time_t now = time(NULL);
    int r = 0;
    if (!cc->cached.source || cc->cached.expires - now < REFRESH_BEFORE) {
        struct creds fresh = {0};
        const char *irsa = getenv("AWS_WEB_IDENTITY_TOKEN_FILE"), *role = getenv("AWS_ROLE_ARN");
        const char *full = getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
        const char *rel = getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
        const char *off = getenv("AWS_EC2_METADATA_DISABLED");
        if (irsa && *irsa && role && *role)
            r = from_irsa(getenv("AWS_REGION") ?: region, &fresh, e);
        else if ((full && *full) || (rel && *rel))
            r = from_container(&fresh, e);
        else if (!(off && !strcasecmp(off, "true")))
            r = from_imds(&fresh, e);
        else
            r = wc_err(e, -EACCES, "no credentials source (and AWS_EC2_METADATA_DISABLED is set)");
        if (r == 0) {
            creds_clear(&cc->cached);
            cc->cached = fresh;
        } else if (cc->cached.source && cc->cached.expires > now) {
            r = 0; /* a failed refresh with time left: keep signing with what we have */
        }
        creds_clear(&fresh);
    }
    if (r == 0)
        *ret = cc->cached;
    pthread_mutex_unlock(&cc->lock);
    if (r < 0) {
        char why[WC_ERROR_MSG_MAX];
        snprintf(why, sizeof(why), "%s", e->msg);
        return wc_err(e, -EACCES, "no AWS credentials: %s; give the volume a node-stage Secret (awsAccessKeyId, "
                      "awsSecretAccessKey), or set up IRSA or EKS Pod Identity for the warmcache node service "
                      "account (docs/eks.md)", why);
    }
    return 0;
}
