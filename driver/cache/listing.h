/*
 * A listing is what a source holds: keys, sizes and an ETag-like version tag.
 * It is the unit of truth for a cache volume. The controller pins its digest
 * in the volume context; a node re-lists and compares, so a copy is never
 * silently of other data than the PV promised. The content id (what copies
 * are keyed by on a node) is derived from the source URL and the digest, so
 * two PVCs over the same objects share one copy.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

struct listing_entry {
    char *key;       /* relative to the source prefix, validated by pathkey_check */
    uint64_t size;
    char *etag;      /* S3 ETag, or "mtime_ns" for file:// */
};

struct listing {
    struct listing_entry *v;
    size_t n, cap;
    uint64_t bytes;
};

#define LISTING_DIGEST_LEN 64
#define CONTENT_ID_LEN 32

/* Copies key and etag; -EINVAL for an embedded NUL (run pathkey_check first for the message). */
int listing_add(struct listing *l, const char *key, size_t keylen, uint64_t size, const char *etag);
void listing_free(struct listing *l);

/* Sorts by key and refuses bad keys, duplicates, and a key that is both an
 * object and a prefix of another ("a" and "a/b"): it cannot be both a file and
 * a directory in the copy. */
int listing_finalize(struct listing *l, struct wc_error *e);

void listing_digest(const struct listing *l, char out[LISTING_DIGEST_LEN + 1]);

/*
 * The same digest, count and bytes from a stream of entries in key order
 * (what S3 sends for a general purpose bucket), in memory that does not grow
 * with the listing: what the controller needs at CreateVolume for a prefix
 * of millions of objects. The checks of listing_finalize are made on the
 * way: duplicates are neighbours in key order, and a key that is also a
 * prefix ("a" before "a/b") is caught with a stack of the keys that may
 * still be one (each a prefix of the next, so at most PATHKEY_MAX deep).
 * add returns -EDOM when a key comes out of order: the caller lists again
 * into a struct listing, which sorts.
 */
struct listing_sum {
    void *md;                 /* the running SHA-256 */
    uint64_t n, bytes;
    char *last;               /* the previous key */
    char **open;              /* keys a later key could still have as a directory */
    size_t n_open, cap_open;
};

int listing_sum_init(struct listing_sum *s);
int listing_sum_add(struct listing_sum *s, const char *key, size_t len, uint64_t size, const char *etag,
                    struct wc_error *e);
void listing_sum_digest(struct listing_sum *s, char out[LISTING_DIGEST_LEN + 1]);
void listing_sum_free(struct listing_sum *s);
void content_id(const char *source_url, const char *digest, char out[CONTENT_ID_LEN + 1]);
