/* Picks the source implementation by URL scheme. */
#include "cache/source.h"
#include "base/macros.h"
#include "oci/oci.h"
#include "s3/client.h"

#include <stdio.h>
#include <string.h>

int source_url_check(const char *url, struct wc_error *e)
{
    if (strncmp(url, "file://", 7) == 0)
        return source_file_url_check(url, e);
    if (strncmp(url, "s3://", 5) == 0)
        return s3_url_check(url, e);
    if (strncmp(url, "oci://", 6) == 0) {
        struct oci_ref ref;
        return oci_ref_parse(url, &ref, e);
    }
    return wc_err(e, -EINVAL, "source \"%.200s\" is not a URL warmcache can read: use file:///path/, "
                  "s3://bucket/prefix/ or oci://registry/repository:tag", url);
}

int source_open(const struct source_spec *spec, const struct source_tuning *t, struct source **ret,
                struct wc_error *e)
{
    if (strncmp(spec->url, "s3://", 5) == 0)
        return source_s3_open(spec, t, ret, e);
    if (strncmp(spec->url, "file://", 7) == 0)
        return source_file_open(spec, t, ret, e);
    if (strncmp(spec->url, "oci://", 6) == 0)
        return source_oci_open(spec, t, ret, e);
    return wc_err(e, -EINVAL, "source \"%.200s\" was not checked: no source of that kind", spec->url);
}

int source_identity(const struct source_spec *spec, char *out, size_t n, struct wc_error *e)
{
    const char *url = spec->url;
    if (strncmp(url, "s3://", 5) == 0)
        return s3_identity(url, spec->endpoint, out, n, e);
    if (strncmp(url, "oci://", 6) == 0)
        return oci_identity(url, out, n, e);
    /* file://: the URL as source_file_open normalizes it (one trailing slash) */
    const char *root = url + 7;
    size_t len = strlen(root);
    while (len > 1 && root[len - 1] == '/')
        len--;
    int w = len == 1 ? snprintf(out, n, "file:///") : snprintf(out, n, "file://%.*s/", (int)len, root);
    return w < 0 || (size_t)w >= n ? wc_err(e, -ENAMETOOLONG, "source %.200s: too long", url) : 0;
}

struct source_spec *source_spec_dup(const struct source_spec *s)
{
    const char *const in[] = {s->url, s->region, s->endpoint, s->addressing, s->access_key_id,
                              s->secret_access_key, s->session_token, s->within, s->username, s->password,
                              s->docker_config};
    size_t need = sizeof(struct source_spec);
    for (size_t i = 0; i < ARRAY_SIZE(in); i++)
        need += in[i] ? strlen(in[i]) + 1 : 0;
    struct source_spec *d = calloc(1, need);
    if (!d)
        return NULL;
    char *p = (char *)(d + 1);
    const char **out[] = {&d->url, &d->region, &d->endpoint, &d->addressing, &d->access_key_id,
                          &d->secret_access_key, &d->session_token, &d->within, &d->username, &d->password,
                          &d->docker_config};
    for (size_t i = 0; i < ARRAY_SIZE(in); i++) {
        if (!in[i])
            continue;
        size_t l = strlen(in[i]) + 1;
        memcpy(p, in[i], l);
        *out[i] = p;
        p += l;
    }
    return d;
}

void source_spec_free(struct source_spec *s)
{
    if (!s)
        return;
    const char *secrets[] = {s->access_key_id, s->secret_access_key, s->session_token, s->password, s->docker_config};
    for (size_t i = 0; i < ARRAY_SIZE(secrets); i++)
        if (secrets[i])
            explicit_bzero((char *)secrets[i], strlen(secrets[i]));
    free(s);
}

static int collect(void *ctx, const char *key, size_t len, uint64_t size, const char *etag)
{
    return listing_add(ctx, key, len, size, etag);
}

int source_list(struct source *s, struct listing *ret, const atomic_int *cancel, struct wc_error *e)
{
    *ret = (struct listing){0};
    int r = s->ops->list(s, collect, ret, cancel, e);
    if (r == 0)
        r = listing_finalize(ret, e);
    if (r < 0)
        listing_free(ret);
    return r;
}

struct summing {
    struct listing_sum sum;
    struct listing all;      /* when the source does not list in order */
    int collecting;
    uint64_t stop_above, bytes;
    struct wc_error *e;
};

static int sum_one(void *ctx, const char *key, size_t len, uint64_t size, const char *etag)
{
    struct summing *m = ctx;
    int r = m->collecting ? listing_add(&m->all, key, len, size, etag)
                          : listing_sum_add(&m->sum, key, len, size, etag, m->e);
    m->bytes += size;
    if (r == 0 && m->stop_above && m->bytes > m->stop_above)
        return -ERANGE; /* more than asked for: no need to see the rest */
    return r;
}

int source_summarize(struct source *s, uint64_t stop_above, const atomic_int *cancel, struct source_summary *ret,
                     struct wc_error *e)
{
    struct summing m = {.collecting = !s->sorted, .stop_above = stop_above, .e = e};
    int r = listing_sum_init(&m.sum);
    if (r == 0)
        r = s->ops->list(s, sum_one, &m, cancel, e);
    if (r == -EDOM) { /* out of key order after all: list again, keeping it */
        m.collecting = 1;
        m.bytes = 0;
        r = s->ops->list(s, sum_one, &m, cancel, e);
    }
    struct source_summary out = {.over = r == -ERANGE};
    if (r == 0 && m.collecting && (r = listing_finalize(&m.all, e)) == 0)
        listing_digest(&m.all, out.digest);
    else if (r == 0)
        listing_sum_digest(&m.sum, out.digest);
    out.objects = m.collecting ? m.all.n : m.sum.n;
    out.bytes = m.bytes;
    listing_sum_free(&m.sum);
    listing_free(&m.all);
    if (r < 0 && r != -ERANGE)
        return r;
    *ret = out;
    return 0;
}

void source_free(struct source *s)
{
    if (s)
        s->ops->free(s);
}
