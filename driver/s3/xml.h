/*
 * S3 response bodies, parsed with expat: streaming (a 1000-key page or a
 * hostile endless one costs the same memory), no DTD, no entity expansion
 * (a DOCTYPE stops the parse), every value bounded. Listings are untrusted:
 * each key must lie under the listed prefix, and the part after it must pass
 * pathkey_check before it becomes a listing entry.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

#define S3_TOKEN_MAX 1024

struct s3_list_page {
    int truncated;
    char next_token[S3_TOKEN_MAX + 1];  /* NextContinuationToken when truncated */
    unsigned keys;                      /* Contents seen on this page, markers included */
};

/* Called for each object of a page, with its key relative to the prefix
 * (already through pathkey_check); a negative return stops the parse. */
typedef int (*s3_object_fn)(void *ctx, const char *key, size_t key_len, uint64_t size, const char *etag);

/* Hands the page's objects to fn. Zero-byte "dir/" markers and the prefix
 * itself are skipped. -EINVAL with a message for a malformed or hostile body. */
int s3_parse_list_page(const char *body, size_t len, const char *prefix, s3_object_fn fn, void *ctx,
                       struct s3_list_page *ret_page, struct wc_error *e);

struct s3_error_info {
    long http_status;
    char code[64];
    char message[256];
    char region[64];      /* from <Region>, when S3 says which one is right */
    char request_id[128];
};

/* Tolerant: an empty or non-XML body leaves only the HTTP status. */
void s3_parse_error(const char *body, size_t len, long http_status, struct s3_error_info *ret);
