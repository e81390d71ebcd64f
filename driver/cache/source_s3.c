/*
 * s3:// source: lists with ListObjectsV2 and fetches the store's parts with
 * the parallel engine (s3/transfer.c), each a ranged GET with If-Match on the
 * listed ETag, so an object replaced mid-fill is caught (-ESTALE) instead of
 * copied half old, half new.
 */
#include "cache/source.h"
#include "base/macros.h"
#include "s3/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct source_env {
    struct s3_ctx *s3;
    char ca_file[4096];  /* SSL_CERT_FILE; "": the system's CAs */
};

_Static_assert(SOURCE_DEFAULT_GBPS == S3_DEFAULT_GBPS, "one default rate");

struct s3_source {
    struct source base;
    struct s3_client *client;
    unsigned connections;
    unsigned list_timeout_s;
};

static int s3src_list(struct source *s, source_object_fn fn, void *ctx, const atomic_int *cancel,
                      struct wc_error *e)
{
    struct s3_source *ss = (struct s3_source *)s;
    return s3_list(ss->client, fn, ctx, cancel, ss->list_timeout_s, e);
}

struct xfer {
    const struct listing *l;
    struct fill_sink *k;
};

static void xfer_part(void *ctx, size_t i, struct s3_part *ret)
{
    struct xfer *x = ctx;
    const struct fill_part *p = &x->k->parts[i];
    const struct listing_entry *ent = &x->l->v[p->file];
    *ret = (struct s3_part){ent->key, ent->etag, p->off, p->len, ent->size};
}

static int xfer_fd(void *ctx, size_t i, struct wc_error *e)
{
    struct xfer *x = ctx;
    return x->k->fd(x->k, i, e);
}

static int xfer_done(void *ctx, size_t i, struct wc_error *e)
{
    struct xfer *x = ctx;
    return x->k->done(x->k, i, e);
}

static void xfer_checksum(void *ctx, size_t i, const struct cksum *c)
{
    struct xfer *x = ctx;
    x->k->expect(x->k, x->k->parts[i].file, c);
}

static void xfer_part_crc(void *ctx, size_t i, uint64_t crc)
{
    struct xfer *x = ctx;
    x->k->part_crc(x->k, i, crc);
}

static int s3src_checksum(struct source *s, const struct listing_entry *ent, struct cksum *ret, struct wc_error *e)
{
    return s3_object_checksum(((struct s3_source *)s)->client, ent->key, ent->etag, ret, e);
}

static int s3src_transfer(struct source *s, const struct listing *l, struct fill_sink *k, const atomic_int *cancel,
                          struct fill_progress *p, struct wc_error *e)
{
    struct s3_source *ss = (struct s3_source *)s;
    struct xfer x = {l, k};
    struct s3_transfer t = {
        .n = k->n, .ctx = &x, .part = xfer_part, .fd = xfer_fd, .done = xfer_done,
        .checksum = k->expect ? xfer_checksum : NULL, .part_crc = k->part_crc ? xfer_part_crc : NULL,
        .connections = ss->connections, .progress = &p->bytes_done, .retries = &p->retries, .cancel = cancel,
    };
    return s3_transfer_run(ss->client, &t, e);
}

static void s3src_free(struct source *s)
{
    struct s3_source *ss = (struct s3_source *)s;
    s3_client_free(ss->client);
    free(s->url);
    free(s->identity);
    free(s->region);
    free(s->endpoint);
    free(s->addressing);
    free(ss);
}

static const struct source_ops s3_ops = {
    .scheme = "s3",
    .list = s3src_list,
    .transfer = s3src_transfer,
    .checksum = s3src_checksum,
    .free = s3src_free,
};

static char *dup_or_null(const char *s) { return s && *s ? strdup(s) : NULL; }

int source_s3_open(const struct source_spec *spec, const struct source_tuning *t, struct source **ret,
                   struct wc_error *e)
{
    struct s3_source *ss = calloc(1, sizeof(*ss));
    if (!ss)
        return -ENOMEM;
    /* the S3 layer's own options: the one place a spec becomes them */
    struct s3_options so = {
        .ctx = t->env ? t->env->s3 : NULL, .region = spec->region, .endpoint = spec->endpoint, .addressing = spec->addressing,
        .access_key_id = spec->access_key_id, .secret_access_key = spec->secret_access_key,
        .session_token = spec->session_token, .stall_seconds = t->stall_seconds,
    };
    int r = s3_client_new(spec->url, &so, &ss->client, e);
    if (r < 0) {
        free(ss);
        return r;
    }
    ss->base.ops = &s3_ops;
    ss->connections = t->connections ? t->connections : s3_connections_for_gbps(S3_DEFAULT_GBPS);
    ss->list_timeout_s = t->list_timeout_s;
    /* general purpose buckets list in key order; directory buckets do not */
    ss->base.sorted = !s3_client_is_express(ss->client);
    ss->base.url = strdup(s3_client_url(ss->client));
    ss->base.identity = strdup(s3_client_identity(ss->client));
    ss->base.region = dup_or_null(spec->region);
    ss->base.endpoint = dup_or_null(spec->endpoint);
    ss->base.addressing = dup_or_null(spec->addressing);
    if (!ss->base.url || !ss->base.identity) {
        s3src_free(&ss->base);
        return -ENOMEM;
    }
    *ret = &ss->base;
    return 0;
}

/* ---- the process's shared S3 state ------------------------------------- */


int source_env_new(struct source_env **ret)
{
    struct source_env *env = calloc(1, sizeof(*env));
    if (!env || s3_ctx_new(&env->s3) < 0) {
        free(env);
        return -ENOMEM;
    }
    const char *ca = getenv("SSL_CERT_FILE");
    if (ca && *ca)
        snprintf(env->ca_file, sizeof(env->ca_file), "%s", ca);
    *ret = env;
    return 0;
}

struct s3_ctx *source_env_s3(struct source_env *env)
{
    return env->s3;
}

const char *source_env_ca_file(const struct source_env *env)
{
    return env->ca_file[0] ? env->ca_file : NULL;
}

void source_env_free(struct source_env *env)
{
    if (!env)
        return;
    s3_ctx_free(env->s3);
    free(env);
}

void source_env_set_budget(struct source_env *env, unsigned connections)
{
    s3_ctx_set_budget(env->s3, connections);
}

void source_env_collect(void *ctx, struct obs_text *t)
{
    struct source_env *env = ctx;
    s3_collect(env->s3, t);
}

unsigned source_connections_for_gbps(double gbps)
{
    return s3_connections_for_gbps(gbps);
}
