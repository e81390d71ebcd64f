/*
 * An Amazon ECR registry's password, from ecr:GetAuthorizationToken signed
 * with the node's credentials chain (IRSA, Pod Identity, the instance
 * profile): what `aws ecr get-login-password` does, for an oci:// source
 * of an ECR registry whose volume brings no Secret. It lives here because
 * it is an AWS call signed like S3's (sigv4.c, creds.c); the registry client
 * (oci/) only asks for a user name and password.
 *
 * The token is for the caller's account registries; it is good for 12
 * hours. It is kept in the S3 context, so every fill of the process uses
 * one until an hour before it ends, and a new one is asked when a
 * registry refuses it (the oci client says so).
 */
#include "s3/client.h"
#include "base/buf.h"
#include "base/fsutil.h"
#include "base/macros.h"
#include "base/userpass.h"
#include "s3/internal.h"
#include "s3/sigv4.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ECR_BODY_MAX (64u << 10)
#define ECR_TARGET "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"

int s3_ecr_host(const char *host, char *region, size_t n)
{
    /* ACCOUNT.dkr.ecr[-fips].REGION.amazonaws.com[.cn][:port] */
    size_t i = 0;
    while (isdigit((unsigned char)host[i]))
        i++;
    if (i != 12 || strncmp(host + i, ".dkr.ecr", 8) != 0)
        return 0;
    const char *p = host + i + 8;
    int fips = strncmp(p, "-fips", 5) == 0;
    if (fips)
        p += 5;
    if (*p++ != '.')
        return 0;
    const char *dot = strchr(p, '.');
    if (!dot || dot == p || (size_t)(dot - p) >= n)
        return 0;
    for (const char *q = p; q < dot; q++)
        if (!islower((unsigned char)*q) && !isdigit((unsigned char)*q) && *q != '-')
            return 0;
    const char *rest = dot + 1;
    size_t rl = strcspn(rest, ":");
    if (!((rl == 13 && strncmp(rest, "amazonaws.com", 13) == 0) || (rl == 16 && strncmp(rest, "amazonaws.com.cn", 16) == 0)))
        return 0;
    snprintf(region, n, "%.*s", (int)(dot - p), p);
    return fips ? 2 : 1;
}

static int parse_token(const char *body, size_t len, char **ret_user, char **ret_pass, time_t *ret_expires,
                       struct wc_error *e)
{
    json_error_t je;
    json_t *j _cleanup_json_ = json_loadb(body, len, 0, &je);
    json_t *d = json_array_get(json_object_get(j, "authorizationData"), 0);
    double exp = json_number_value(json_object_get(d, "expiresAt")); /* seconds since the epoch; 0 if absent */
    const char *tok = json_string_value(json_object_get(d, "authorizationToken"));
    size_t n = tok ? strlen(tok) : 0;
    if (!n || n % 4 || n > 16384)
        return wc_err(e, -EPROTO, "ecr:GetAuthorizationToken answered without a token");
    int r = userpass_decode(tok, ret_user, ret_pass);
    if (r == 0) { /* none counts as expired (not kept); never past ECR's 12 hours */
        time_t now = time(NULL);
        *ret_expires = exp <= 0 ? 0 : exp > (double)(now + 43200) ? now + 43200 : (time_t)exp;
    }
    return r == -EINVAL ? wc_err(e, -EPROTO, "ecr:GetAuthorizationToken answered a token that is not "
                                 "user:password") : r;
}

/* Appends to *l; on failure (out of memory) the list is wiped and freed:
 * it may hold the Authorization already. */
static int append(struct curl_slist **l, const char *line)
{
    struct curl_slist *n = curl_slist_append(*l, line);
    if (!n) {
        for (struct curl_slist *i = *l; i; i = i->next)
            explicit_bzero(i->data, strlen(i->data));
        curl_slist_free_all(*l);
        *l = NULL;
        return -ENOMEM;
    }
    *l = n;
    return 0;
}

/* A short printable copy of an AWS error's __type ("…#AccessDeniedException"). */
static void error_type(const char *t, char *out, size_t n)
{
    const char *hash = t ? strrchr(t, '#') : NULL;
    t = hash ? hash + 1 : t ? t : "";
    size_t k = 0;
    for (; *t && k + 1 < n; t++)
        if (isalnum((unsigned char)*t))
            out[k++] = *t;
    out[k] = '\0';
}

static int fetch_token(struct s3_ctx *ctx, const char *region, int fips, const char *endpoint, char **ret_user,
                       char **ret_pass, time_t *ret_expires, struct wc_error *e)
{
    struct creds cr;
    int r = creds_get(&ctx->creds, NULL, region, &cr, e);
    if (r < 0) /* not creds_get's advice: an S3 Secret would not help here */
        return wc_err(e, r, "an ECR registry and no Secret: this plugin has no AWS credentials to ask "
                      "ecr:GetAuthorizationToken with (give it an IAM role: IRSA, EKS Pod Identity or an instance "
                      "profile), or give the volume a Secret with username and password");
    char host[256];
    const char *h = strstr(endpoint, "://");
    snprintf(host, sizeof(host), "%.*s", (int)strcspn(h ? h + 3 : endpoint, "/"), h ? h + 3 : endpoint);
    static const char body[] = "{}";
    char sha[SHA256_HEX_LEN + 1];
    sha256_hex(body, strlen(body), sha);
    const struct sigv4_header hs[] = {{"host", host}, {"content-type", "application/x-amz-json-1.1"},
                                      {"x-amz-target", ECR_TARGET}};
    const struct sigv4_request rq = {.method = "POST", .path = "/", .headers = hs, .n_headers = ARRAY_SIZE(hs),
                                     .payload_sha256 = sha};
    const struct sigv4_credentials sc = {cr.access_key_id, cr.secret_access_key, cr.session_token};
    struct sigv4_result sr;
    r = sigv4_sign(&rq, &sc, region, "ecr", time(NULL), &sr, e);
    if (r < 0) {
        creds_clear(&cr);
        return r;
    }
    char line[SIGV4_AUTH_MAX + CREDS_FIELD_MAX + 64];
    struct curl_slist *l = NULL;
    int ok = append(&l, "Content-Type: application/x-amz-json-1.1") == 0 && append(&l, "X-Amz-Target: " ECR_TARGET) == 0;
    snprintf(line, sizeof(line), "X-Amz-Date: %s", sr.amz_date);
    ok = ok && append(&l, line) == 0;
    snprintf(line, sizeof(line), "Authorization: %s", sr.authorization);
    ok = ok && append(&l, line) == 0;
    if (sr.security_token) {
        snprintf(line, sizeof(line), "X-Amz-Security-Token: %s", sr.security_token);
        ok = ok && append(&l, line) == 0;
    }
    explicit_bzero(line, sizeof(line));
    sigv4_result_free(&sr);
    creds_clear(&cr);
    struct wc_buf out = {.max = ECR_BODY_MAX};
    CURL *c = curl_easy_init();
    long status = 0;
    CURLcode cc = CURLE_FAILED_INIT;
    if (c && ok) {
        curl_easy_setopt(c, CURLOPT_URL, endpoint);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, l);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, wc_buf_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
        if (ctx->ca_file[0])
            curl_easy_setopt(c, CURLOPT_CAINFO, ctx->ca_file);
        cc = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    }
    curl_easy_cleanup(c);
    for (struct curl_slist *i = l; i; i = i->next)
        explicit_bzero(i->data, strlen(i->data));
    curl_slist_free_all(l);
    if (!ok)
        r = -ENOMEM;
    else if (cc != CURLE_OK)
        r = wc_err(e, -EAGAIN, "ecr:GetAuthorizationToken at %s: %s (nodes in a private VPC need the ecr.api "
                   "interface endpoint as well as ecr.dkr)", host, curl_easy_strerror(cc));
    else if (status != 200) {
        /* the type only: ECR's message names the caller's role and session */
        json_error_t je;
        json_t *j _cleanup_json_ = out.p ? json_loadb(out.p, out.n, 0, &je) : NULL;
        char type[80];
        error_type(json_string_value(json_object_get(j, "__type")), type, sizeof(type));
        int denied = strcmp(type, "AccessDeniedException") == 0 || status == 403;
        int again = status >= 500 || strstr(type, "Throttl") != NULL;
        r = wc_err(e, denied ? -EACCES : again ? -EAGAIN : -EPROTO, "ecr:GetAuthorizationToken at %s answered HTTP "
                   "%ld %s%s", host, status, type[0] ? type : "(no error type)",
                   denied ? ": this plugin's IAM role needs ecr:GetAuthorizationToken (and ecr:BatchGetImage, "
                            "ecr:GetDownloadUrlForLayer on the repository)" : "");
    } else {
        r = parse_token(out.p ? out.p : "", out.n, ret_user, ret_pass, ret_expires, e);
    }
    wc_buf_wipe(&out);
    return r;
}

/* Reused until this close to its end: a fill that starts with it should
 * not see it expire (if one does, the registry's refusal asks anew). */
#define ECR_REFRESH_S 3600

static void token_clear(struct ecr_token *t)
{
    for (char **p = (char *[]){t->user, t->pass, NULL}; *p; p++)
        explicit_bzero(*p, strlen(*p));
    free(t->user);
    free(t->pass);
    *t = (struct ecr_token){0};
}

void s3_ecr_forget(struct s3_ctx *ctx)
{
    for (size_t i = 0; i < ECR_TOKENS_MAX; i++)
        if (ctx->ecr[i].user)
            token_clear(&ctx->ecr[i]);
}

static int dup2_strs(const char *u, const char *p, char **ret_user, char **ret_pass)
{
    char *a = strdup(u), *b = strdup(p);
    if (!a || !b) {
        free(a);
        if (b)
            explicit_bzero(b, strlen(b));
        free(b);
        return -ENOMEM;
    }
    *ret_user = a;
    *ret_pass = b;
    return 0;
}

int s3_ecr_token(struct s3_ctx *ctx, const char *region, int fips, const char *refused, char **ret_user,
                 char **ret_pass, struct wc_error *e)
{
    char endpoint[256], key[sizeof(((struct ecr_token *)0)->key)];
    const char *ep = getenv("AWS_ENDPOINT_URL_ECR");
    if (ep && *ep)
        snprintf(endpoint, sizeof(endpoint), "%s", ep);
    else
        snprintf(endpoint, sizeof(endpoint), "https://%s.%s.amazonaws.com%s", fips ? "ecr-fips" : "api.ecr", region,
                 strncmp(region, "cn-", 3) == 0 ? ".cn" : "");
    snprintf(key, sizeof(key), "%s %d %s", region, fips, endpoint);
    time_t now = time(NULL);
    pthread_mutex_lock(&ctx->ecr_lock);
    struct ecr_token *slot = NULL, *oldest = &ctx->ecr[0];
    for (size_t i = 0; i < ECR_TOKENS_MAX && !slot; i++) {
        if (ctx->ecr[i].user && strcmp(ctx->ecr[i].key, key) == 0)
            slot = &ctx->ecr[i];
        else if (ctx->ecr[i].expires < oldest->expires)
            oldest = &ctx->ecr[i];
    }
    int r;
    if (slot && slot->expires - now > ECR_REFRESH_S && !(refused && strcmp(slot->pass, refused) == 0)) {
        r = dup2_strs(slot->user, slot->pass, ret_user, ret_pass);
    } else {
        char *u = NULL, *p = NULL;
        time_t expires = 0;
        r = fetch_token(ctx, region, fips, endpoint, &u, &p, &expires, e);
        if (r == 0 && (r = dup2_strs(u, p, ret_user, ret_pass)) == 0 && expires > now) {
            struct ecr_token *t = slot ? slot : oldest;
            if (t->user)
                token_clear(t);
            *t = (struct ecr_token){.user = u, .pass = p, .expires = expires};
            snprintf(t->key, sizeof(t->key), "%s", key);
            u = p = NULL;
        }
        if (p)
            explicit_bzero(p, strlen(p));
        free(u);
        free(p);
    }
    pthread_mutex_unlock(&ctx->ecr_lock);
    return r;
}
