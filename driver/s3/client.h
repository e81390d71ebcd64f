/*
 * A small S3 client on libcurl: ListObjectsV2 with paging, and GET of an
 * object or a byte range into a file at an offset, signed with SigV4. Every
 * failure becomes a message a cluster admin can act on (the bucket, the key,
 * what S3 said and what to check), never containing a secret.
 *
 * Transient failures (503 SlowDown, 5xx, resets, timeouts) are retried with
 * capped exponential backoff and jitter; a changed object (If-Match fails)
 * is -ESTALE at once.
 */
#pragma once

#include <stdatomic.h>
#include <stdint.h>

#include "base/error.h"
#include "s3/xml.h"

struct s3_options {
    const char *region;          /* default: AWS_REGION, else us-east-1 */
    const char *endpoint;        /* default: https://s3.<region>.amazonaws.com */
    const char *addressing;      /* "path" | "virtual"; default: virtual on AWS, path elsewhere */
    const char *access_key_id;   /* default: the environment (AWS_ACCESS_KEY_ID, ...) */
    const char *secret_access_key;
    const char *session_token;
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

/* Lists every object under the prefix, page by page. */
int s3_list(struct s3_client *c, s3_object_fn fn, void *ctx, struct wc_error *e);

/* GETs [off, off+len) of prefix+key, as long as its ETag is still etag, and
 * writes it at the same offset of fd; adds the bytes to *progress. */
int s3_get_range(struct s3_client *c, const char *key, const char *etag, uint64_t off, uint64_t len, int fd,
                 _Atomic uint64_t *progress, const atomic_int *cancel, struct wc_error *e);
