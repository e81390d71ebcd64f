/*
 * Shared by client.c (one request at a time: listing) and transfer.c (the
 * parallel engine): how a signed request is built, how a response lands, and
 * how its outcome is judged. Not part of the S3 API of the rest of warmcache.
 */
#pragma once

#include <curl/curl.h>
#include <pthread.h>
#include <time.h>
#include <stdatomic.h>
#include <stdint.h>

#include "base/cksum.h"
#include "base/error.h"
#include "base/pathkey.h"
#include "s3/client.h"
#include "s3/creds.h"
#include "s3/rate.h"

#define S3_RETRIES 6

/* The S3 layer's process state, made once and handed to every client. */
/* An ECR password the node's role was given, kept for the fills after it
 * (ecr.c): by region, FIPS or not, and the endpoint asked. */
#define ECR_TOKENS_MAX 8
struct ecr_token {
    char key[320];
    char *user, *pass;
    time_t expires;
};

struct s3_ctx {
    struct s3_stats stats;
    pthread_mutex_t budget_lock;   /* guards the budget */
    unsigned budget_size;          /* 0: no budget */
    unsigned budget_taken;
    unsigned budget_transfers;     /* running */
    struct creds_cache creds;
    struct s3_rates rates;         /* per prefix, after SlowDown (rate.h) */
    char ca_file[4096];            /* AWS_CA_BUNDLE: the CAs an https endpoint is checked against; "": the system's */
    pthread_mutex_t ecr_lock;      /* one GetAuthorizationToken at a time; guards ecr */
    struct ecr_token ecr[ECR_TOKENS_MAX];
};

struct s3_client {
    struct s3_ctx *ctx;
    CURL *curl;
    char bucket[64];
    char prefix[PATHKEY_MAX + 2];
    char url[PATHKEY_MAX + 80];
    char identity[PATHKEY_MAX + 400];
    char region[64];
    char endpoint[256];   /* scheme://host[:port], no trailing slash */
    char host[256];       /* the Host header value */
    int path_style;
    char *akid, *secret, *token; /* the volume's Secret, if it gave one; else the chain (creds.h) */
    long stall_s;
    /* S3 Express One Zone: requests are signed for "s3express" with the
     * credentials of a CreateSession (5 minutes), fetched again before they end */
    int express;
    pthread_mutex_t session_lock, curl_lock;
    struct creds session;
};

/* Where a response goes: a list or error body into memory, object bytes
 * into fd at an offset (only for a 2xx; an error body is always kept). */
struct sink {
    char *buf;
    size_t n, cap, max;
    int fd;
    uint64_t off, written, want;
    _Atomic uint64_t *progress;
    const atomic_int *cancel;
    int io_error;
    long status;
    int throttled;               /* the error said slow down (s3_error_throttled) */
    struct cksum cks;            /* x-amz-checksum-* of the response, if it carried one */
    uint64_t *crc64;             /* if set: CRC64NVME state of the object bytes received */
    /* optional: object bytes gathered here and written in runs of up to
     * wcap (over TLS they come a 16 KiB record at a time: a pwrite each was
     * 262,000 of them for 1 GiB); wn of them not written yet, so
     * written - wn are in the file (and in progress). s3_sink_flush writes
     * the rest: before the outcome is judged. */
    char *wbuf;
    size_t wn, wcap;
};

/* Writes what wbuf holds; 0, or -1 with io_error set. */
int s3_sink_flush(struct sink *s);

/* A signed request ready for curl. */
struct s3_req {
    char url[4096];
    struct curl_slist *headers;
    long stall_s;
    const char *ca_file;       /* NULL: the system's CAs */
};

/* What to send besides the path: all optional. */
struct s3_req_opts {
    const char *method;        /* "GET" (default) or "HEAD" */
    const char *query;         /* encoded */
    const char *range, *if_match;
    int checksum_mode;         /* x-amz-checksum-mode: ENABLED (whole objects and HEAD only: S3 sends
                                  no checksum for a range) */
    int create_session;        /* S3 Express CreateSession: signed with the caller's own credentials */
};

/* Signs a request for path (encoded) with the current credentials. */
int s3_req_build(struct s3_client *c, const char *path, const struct s3_req_opts *o, struct s3_req *rq,
                 struct wc_error *e);
void s3_req_done(struct s3_req *rq);
/* Points h at rq and s (resetting s for a new attempt); head: no body. */
void s3_easy_setup(CURL *h, const struct s3_req *rq, struct sink *s, int head);
/* 0 on success; -EAGAIN for what a retry may cure (5xx, SlowDown, resets,
 * short bodies); another negative errno for what it will not. */
int s3_outcome(struct s3_client *c, const char *op, const char *key, CURLcode cc, struct sink *s, struct wc_error *e);
/* Capped exponential backoff with jitter, in ms, before attempt n (n >= 1). */
unsigned s3_backoff_ms(int attempt);
/* The encoded request path of prefix+key. */
int s3_object_path(struct s3_client *c, const char *key, char *out, size_t n);
