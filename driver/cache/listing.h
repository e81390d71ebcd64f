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
void content_id(const char *source_url, const char *digest, char out[CONTENT_ID_LEN + 1]);
