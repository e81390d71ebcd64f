/*
 * A source is where a copy's bytes come from, behind a small vtable (curl
 * style) so that file://, s3:// and test fakes share one fill path.
 *
 * list() returns a finalized listing; fetch() writes one object's bytes into
 * an already-opened, already-sized file, adds them to p->bytes_done as they
 * land (so a 10 GiB file shows progress), and must fail with -ESTALE when the
 * object no longer matches the listing (the copy would mix versions).
 */
#pragma once

#include <stdatomic.h>
#include <stdint.h>

#include "base/error.h"
#include "cache/listing.h"

struct fill_progress {
    _Atomic uint64_t bytes_done;    /* in the copy so far, resumed bytes included */
    _Atomic uint64_t files_done;
    _Atomic uint64_t bytes_resumed; /* found whole from an earlier, interrupted fill */
    uint64_t bytes_total;
    uint64_t files_total;
};

struct source;

struct source_ops {
    const char *scheme;
    int (*list)(struct source *s, struct listing *ret, struct wc_error *e);
    int (*fetch)(struct source *s, const struct listing_entry *ent, int fd,
                 const atomic_int *cancel, struct fill_progress *p, struct wc_error *e);
    void (*free)(struct source *s);
};

struct source {
    const struct source_ops *ops;
    char *url;       /* normalized: scheme://…/ with exactly one trailing slash */
    char *identity;  /* what names the data (the endpoint too, for S3): content ids derive from it */
    char *region, *endpoint, *addressing; /* S3 options, NULL for file://; never secrets */
};

/* How to reach a source: S3 settings and credentials (NULL fields: defaults). */
struct source_options {
    const char *region, *endpoint, *addressing;
    const char *access_key_id, *secret_access_key, *session_token;
};

/* Checks the URL's form without touching the network or the disk. */
int source_url_check(const char *url, struct wc_error *e);
int source_open(const char *url, const struct source_options *opt, struct source **ret, struct wc_error *e);
void source_free(struct source *s);
static inline void source_freep(struct source **s) { if (*s) source_free(*s); }
#define _cleanup_source_ __attribute__((cleanup(source_freep)))

/* The s3:// implementation (source_s3.c). */
int source_s3_open(const char *url, const struct source_options *opt, struct source **ret, struct wc_error *e);

/* The file:// implementation (source_file.c). */
int source_file_open(const char *url, struct source **ret, struct wc_error *e);
int source_file_url_check(const char *url, struct wc_error *e);
