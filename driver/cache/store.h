/*
 * The node store: one directory tree under a root the node plugin owns.
 *
 *   content/<cid>/          a complete, verified, immutable copy
 *   content/<cid>.partial/  a fill in progress: only complete files appear here
 *   tmp/<cid>/<n>           files being written now, in parts (never visible to pods)
 *   tmp/<cid>/parts         the part journal: which parts of them are written
 *   meta/<cid>.json         what the copy is: source, digest, bytes, files, times
 *   volumes/                node volume records (csi/node.c)
 *   overlays/               upper/work dirs of writable publishes
 *
 * A file reaches content/<cid>.partial/ only by rename after a sync, so a
 * killed fill leaves whole files there and resumes by skipping them, and
 * skips the journaled parts of the others (fill.c). The copy
 * becomes visible by one rename of the partial directory after every file and
 * directory is fsynced and the metadata is written.
 *
 * Copies are a cache. A copy is referenced by every volume record (volumes/)
 * that names it and pinned in memory while a call works with it; before a
 * fill writes, copies that are neither are evicted least recently used first
 * when the fill would take the store above its high watermark, down to the
 * low one. A fill that cannot fit even then fails with ENOSPC, naming sizes.
 */
#pragma once

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "base/error.h"
#include "cache/listing.h"
#include "cache/source.h"

struct strbag {              /* a small multiset of strings */
    char **v;
    size_t n, cap;
};

struct store {
    char *root;
    int high_pct, low_pct;   /* eviction watermarks, percent of the store used */
    uint64_t part_size;      /* bytes per request of a fill; 0: FILL_PART_SIZE */
    pthread_mutex_t lock;    /* guards busy and pins */
    pthread_cond_t cond;
    struct strbag busy;      /* content ids being filled now */
    struct strbag pins;      /* content ids a call is using now */
    _Atomic uint64_t evictions; /* copies evicted to make room (metrics) */
    _Atomic uint64_t removals;  /* copies evicted or set aside: the reporter's cue to unlabel */
};

int store_open(const char *root, struct store **ret, struct wc_error *e);
void store_set_watermarks(struct store *s, int high_pct, int low_pct);
void store_set_part_size(struct store *s, uint64_t bytes);
void store_free(struct store *s);

/* Path of a store subdirectory or file: store_path(s, buf, n, "content/%s", cid). */
int store_path(const struct store *s, char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* 1 if a ready copy of cid is here; 0 too for a string that is no content id
 * (it may come from outside: a Node label, a PV annotation). */
int store_content_ready(const struct store *s, const char *cid);

/* Fills content `cid` from src per listing, unless it is already there.
 * Waits if another thread fills the same content. Returns 0 when ready. */
int store_fill(struct store *s, struct source *src, const struct listing *l, const char *cid,
               const atomic_int *cancel, struct fill_progress *p, struct wc_error *e);

/* Forgets a fill that can never finish (its source changed): the partial
 * copy, its written parts and its journal. */
void store_drop_partial(struct store *s, const char *cid);

/* A pinned copy is never evicted; pin before using a copy, unpin after. */
void store_pin(struct store *s, const char *cid);
void store_unpin(struct store *s, const char *cid);
/* Volume records that name cid. */
unsigned store_refs(const struct store *s, const char *cid);
/* Evicts unreferenced copies (LRU) until `need` more bytes fit under the
 * watermarks; -ENOSPC with a message naming the sizes when they cannot. */
int store_make_room(struct store *s, uint64_t need, const char *what, struct wc_error *e);
/* Bytes held by ready copies that nothing references (could be evicted). */
uint64_t store_evictable_bytes(struct store *s);

/* Re-verifies a ready copy against its metadata (file count and bytes on
 * disk): 0 when it matches, -EBADMSG with what differs, -ENOENT if gone. */
int store_verify(const struct store *s, const char *cid, struct wc_error *e);

/* Moves a damaged copy out of the way (pods that mount it keep what they
 * have; the next start deletes it) so the next fill makes a new one. */
int store_set_aside(struct store *s, const char *cid);

/* Copy metadata (meta/<cid>.json), NULL if there is none. */
json_t *store_meta(const struct store *s, const char *cid);
/* Records a use of a copy (last_used), for eviction and status. */
void store_touch(const struct store *s, const char *cid);
/* At start: drops debris a crash can leave (unjournaled partial copies,
 * metadata of gone copies, writable layers no record names) and returns
 * {"resume": [fill journals], "dropped": [paths]}. Mounts are not touched:
 * pods keep working across a plugin restart. */
json_t *store_reconcile(struct store *s);

/* All copies, ready and partial, as a JSON array for status. */
json_t *store_list(const struct store *s);
