/*
 * S3 response bodies, parsed with expat: streaming SAX, so a 1000-key page
 * costs a few KiB however it is laid out; no DTD and no entities (a DOCTYPE
 * or entity declaration stops the parse, which also rules out "billion
 * laughs"); every value we keep is bounded (keys 1024 bytes, ETags 128,
 * continuation tokens 1024, anything else 256) and a longer one is an error
 * naming the element. Expat rather than libxml2: a listing is untrusted and
 * can be huge, and we want the smallest parser that does the job.
 *
 * Listings: each key must lie under the listed prefix, and the part after it
 * must pass pathkey_check before it is handed on. Error bodies: errors.h.
 * Nothing here ever copies request headers or secrets.
 *
 * s3/ knows only base/ and observe/ (docs/design.md): objects go to a
 * callback, which the cache layer points at listing_add.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

#define S3_KEY_MAX 1024
#define S3_TOKEN_MAX 1024
#define S3_ETAG_MAX 128
#define S3_FIELD_MAX 256
#define S3_OBJECT_SIZE_MAX (5ULL << 40) /* 5 TiB, S3's limit for one object */

/* Checksum algorithms S3 can list for an object (<ChecksumAlgorithm>). */
enum {
    S3_CHECKSUM_CRC32 = 1u << 0,
    S3_CHECKSUM_CRC32C = 1u << 1,
    S3_CHECKSUM_CRC64NVME = 1u << 2,
    S3_CHECKSUM_SHA1 = 1u << 3,
    S3_CHECKSUM_SHA256 = 1u << 4,
    S3_CHECKSUM_ALL = (1u << 5) - 1,
};

struct s3_list_page {
    int truncated;                     /* another page follows */
    char next_token[S3_TOKEN_MAX + 1]; /* NextContinuationToken; "" unless truncated */
    unsigned keys;                     /* <Contents> on the page, markers included */
    unsigned objects;                  /* handed to fn (markers skipped) */
    unsigned key_count;                /* <KeyCount> as the server reported it, 0 if absent */
    /* S3_CHECKSUM_* bits that every object handed to fn carries: AND it over
     * the pages (start from S3_CHECKSUM_ALL; a page without objects reports
     * S3_CHECKSUM_ALL) to learn which algorithm the whole copy can verify. */
    unsigned checksums;
};

/* Called for each object of a page, with its key relative to the prefix
 * (already through pathkey_check), its size and its ETag without quotes
 * (printable ASCII, safe to put into an If-Match header). A negative return
 * stops the parse and is returned; fn fills e when it has more to say. */
typedef int (*s3_object_fn)(void *ctx, const char *key, size_t key_len, uint64_t size, const char *etag);

/* Parses one ListObjectsV2 page and hands its objects to fn. prefix is the
 * listed prefix: "" or ending in '/'. Zero-byte keys ending in '/' (folder
 * markers made by consoles, the prefix itself included) are skipped. The
 * request must not use encoding-type=url. On error (-EINVAL with a message
 * naming the element or the key, quoted), objects of this page may already
 * have been handed to fn: the caller discards the listing. */
int s3_parse_list_page(const char *body, size_t len, const char *prefix, s3_object_fn fn, void *ctx,
                       struct s3_list_page *ret_page, struct wc_error *e);
