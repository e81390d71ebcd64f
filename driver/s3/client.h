/*
 * A small S3 client on libcurl: ListObjectsV2 with paging, and GET of an
 * object or a byte range into a file at an offset, signed with SigV4. Every
 * failure becomes a message a cluster admin can act on (the bucket, the key,
 * what S3 said and what to check), never containing a secret.
 *
 * Transient failures (503 SlowDown, 5xx, resets, timeouts) are retried with
 * capped exponential backoff and jitter; a changed object (If-Match fails)
 * is -ESTALE at once.
 * More: docs/internals/s3.md.
 */
#pragma once

#include <stdatomic.h>
#include <stdint.h>

#include "base/cksum.h"
#include "base/error.h"
#include "s3/errors.h"
#include "s3/xml.h"

struct s3_ctx;

struct s3_options {
    struct s3_ctx *ctx;          /* required: counters, request budget, credentials cache (s3_ctx_new) */
    const char *region;          /* default: AWS_REGION, else us-east-1 */
    const char *endpoint;        /* default: https://s3.<region>.amazonaws.com */
    const char *addressing;      /* "path" | "virtual"; default: virtual on AWS, path elsewhere */
    const char *access_key_id;   /* default: the environment (AWS_ACCESS_KEY_ID, ...) */
    const char *secret_access_key;
    const char *session_token;
    unsigned stall_seconds;      /* a transfer under 1 KiB/s this long is cut and retried; 0: 30 */
};

struct s3_client;

/* Checks an s3:// URL's form (bucket name rules, prefix) without I/O. */
int s3_url_check(const char *url, struct wc_error *e);

int s3_client_new(const char *url, const struct s3_options *opt, struct s3_client **ret, struct wc_error *e);
void s3_client_free(struct s3_client *c);

/* "s3://bucket/prefix/" */
const char *s3_client_url(const struct s3_client *c);
/* What identifies the data: the endpoint and the URL. */
const char *s3_client_identity(const struct s3_client *c);
/* The same, without a client (no credentials, no I/O): what a content id is
 * derived from, so a node can find its copy while STS or IMDS is down. */
int s3_identity(const char *url, const char *endpoint, char *out, size_t n, struct wc_error *e);

/* 1 for an S3 Express One Zone directory bucket (its listings are not in key order). */
int s3_client_is_express(const struct s3_client *c);

/* Lists every object under the prefix, page by page, until the end, cancel
 * (-ECANCELED), timeout_s seconds (-ETIMEDOUT; 0: no limit), a continuation
 * token the server sent before (-EIO: a listing that goes round in a
 * circle), or fn's error. Memory stays one page, whatever the listing. */
int s3_list(struct s3_client *c, s3_object_fn fn, void *ctx, const atomic_int *cancel, unsigned timeout_s,
            struct wc_error *e);

/* One byte range of one object under the prefix, for s3_transfer_run. */
struct s3_part {
    const char *key, *etag;   /* the listed key and ETag (If-Match) */
    uint64_t off, len, size;  /* size: the whole object's, so a whole-object part needs no Range */
};

/* Many parts at once on one curl multi handle: up to `connections`
 * requests in flight on kept-alive connections, each part's bytes written
 * with pwrite at its offset as they arrive. A part that fails in a way a
 * retry may cure (503 SlowDown, 5xx, a reset, a short body) is retried after
 * a capped, jittered backoff while the others go on; anything else, or a part
 * failing S3_RETRIES times, stops the whole transfer with that part's error. */
struct s3_transfer {
    size_t n;                                                 /* parts */
    void *ctx;
    void (*part)(void *ctx, size_t i, struct s3_part *ret);
    int (*fd)(void *ctx, size_t i, struct wc_error *e);       /* where part i goes */
    int (*done)(void *ctx, size_t i, struct wc_error *e);     /* part i is all written */
    /* optional: what S3 says the whole object's checksum is, learnt from a
     * part that is the whole object (alg CKSUM_NONE: it has none) */
    void (*checksum)(void *ctx, size_t i, const struct cksum *c);
    /* optional: the CRC64NVME of part i's bytes, computed as they arrived */
    void (*part_crc)(void *ctx, size_t i, uint64_t crc64nvme);
    unsigned connections;
    _Atomic uint64_t *progress;                               /* bytes written (a retried part's are taken back) */
    _Atomic uint64_t *retries;                                /* optional: retried requests */
    const atomic_int *cancel;
};

int s3_transfer_run(struct s3_client *c, const struct s3_transfer *t, struct wc_error *e);

/* Requests in flight to reach gbps gigabits per second from S3, at AWS's
 * figure of about 85 MB/s for one GET: 15 at 10 Gb/s, 148 at 100. */
#define S3_DEFAULT_GBPS 100
unsigned s3_connections_for_gbps(double gbps);

/* The S3 layer's state for a process: its counters (metrics), one budget
 * of requests in flight shared by its transfers (each running transfer may
 * hold an equal share, a lone one all of it, so a fill starting on a busy
 * node gets its share as the others' requests end), and the cache of
 * temporary credentials. Made once (a node plugin, a CLI run), passed to
 * every client through s3_options.ctx. */
int s3_ctx_new(struct s3_ctx **ret);
void s3_ctx_free(struct s3_ctx *c);
/* 0 (the default): no budget; each transfer is bounded by its connections. */
void s3_ctx_set_budget(struct s3_ctx *c, unsigned n);
/* The observe collector (observe/metrics.h) of the context's counters. */
struct obs_text;
void s3_collect(void *ctx, struct obs_text *t);

/* An Amazon ECR registry host (ACCOUNT.dkr.ecr[-fips].REGION.amazonaws.com,
 * a port allowed): 1 (2 for a FIPS one) and its region in region, else 0. */
int s3_ecr_host(const char *host, char *region, size_t n);
/* The user name and password of the node's ECR registries, from
 * ecr:GetAuthorizationToken signed with the context's credentials chain
 * (AWS_ENDPOINT_URL_ECR: another endpoint). The answer is kept in the
 * context and given to later fills until an hour before it expires (ECR's
 * last 12 hours); refused: a password a registry refused, not to be given
 * again (a new one is asked, once for all the fills that held it). */
int s3_ecr_token(struct s3_ctx *ctx, const char *region, int fips, const char *refused, char **ret_user,
                 char **ret_pass, struct wc_error *e);
/* Wipes the passwords the context keeps. */
void s3_ecr_forget(struct s3_ctx *ctx);

/* The whole object's checksum as S3 stores it (HEAD with checksum mode, as
 * long as its ETag is still etag); alg CKSUM_NONE if it has none. */
int s3_object_checksum(struct s3_client *c, const char *key, const char *etag, struct cksum *ret, struct wc_error *e);

/* S3 counters, for metrics: requests, retries, and failures by kind
 * (throttled: 503 SlowDown; server: other 5xx; network: resets, timeouts,
 * cut bodies; denied; not_found; changed: the object changed under a fill;
 * other). */
enum s3_error_kind { S3_ERR_THROTTLED, S3_ERR_SERVER, S3_ERR_NETWORK, S3_ERR_DENIED, S3_ERR_NOT_FOUND, S3_ERR_CHANGED,
                     S3_ERR_OTHER, S3_ERR_KINDS };
struct s3_stats {
    _Atomic uint64_t requests, retries;
    _Atomic uint64_t in_flight;     /* parallel-engine requests now */
    _Atomic uint64_t errors[S3_ERR_KINDS];
};
