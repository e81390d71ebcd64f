/*
 * The node store: one directory tree under a root the node plugin owns.
 *
 *   content/<cid>/          a complete, verified, immutable copy
 *   content/<cid>.partial/  a fill in progress: only complete files appear here
 *   tmp/<cid>/<n>           the file being written now (never visible to pods)
 *   meta/<cid>.json         what the copy is: source, digest, bytes, files, times
 *   volumes/                node volume records (csi/node.c)
 *   overlays/               upper/work dirs of writable publishes
 *
 * A file reaches content/<cid>.partial/ only by rename after fsync, so a
 * killed fill leaves whole files there and resumes by skipping them. The copy
 * becomes visible by one rename of the partial directory after every file and
 * directory is fsynced and the metadata is written.
 */
#pragma once

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>

#include "base/error.h"
#include "cache/listing.h"
#include "cache/source.h"

struct store {
    char *root;
    pthread_mutex_t lock;   /* guards busy */
    pthread_cond_t cond;
    char **busy;            /* content ids being filled now */
    size_t n_busy, cap_busy;
};

int store_open(const char *root, struct store **ret, struct wc_error *e);
void store_free(struct store *s);

/* Path of a store subdirectory or file: store_path(s, buf, n, "content/%s", cid). */
int store_path(const struct store *s, char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

int store_content_ready(const struct store *s, const char *cid);

/* Fills content `cid` from src per listing, unless it is already there.
 * Waits if another thread fills the same content. Returns 0 when ready. */
int store_fill(struct store *s, struct source *src, const struct listing *l, const char *cid,
               const atomic_int *cancel, struct fill_progress *p, struct wc_error *e);

/* Copy metadata (meta/<cid>.json), NULL if there is none. */
json_t *store_meta(const struct store *s, const char *cid);
/* Records a use of a copy (last_used), for eviction and status. */
void store_touch(const struct store *s, const char *cid);
/* All copies, ready and partial, as a JSON array for status. */
json_t *store_list(const struct store *s);
