/*
 * The node store: one directory tree under a root the node plugin owns.
 *
 *   content/<cid>/          a complete, verified, immutable copy
 *   content/<cid>.partial/  a fill in progress: only complete files appear here
 *   tmp/<cid>/<n>           files being written now, in parts (never visible to pods)
 *   tmp/<cid>/parts         the part journal: which parts of them are written
 *   meta/<cid>.json         what the copy is: source, digest, bytes, files, times
 *   volumes/                node volume records (csi/volumes.c)
 *   overlays/               upper/work dirs of writable publishes (csi/volumes.c)
 *
 * A file reaches content/<cid>.partial/ only by rename after a sync, so a
 * killed fill leaves whole files there and resumes by skipping them, and
 * skips the journaled parts of the others (fill.c). The copy
 * becomes visible by one rename of the partial directory after every file and
 * directory is fsynced and the metadata is written.
 *
 * Copies are a cache. A copy is in use while a mount may show it (the store
 * asks its users: the node's volume records), while a call works with it
 * (pinned), and for a while after a fill for a call that stopped waiting
 * (leased). Before a fill writes, it claims its room against the fills
 * already running, and copies in none of those states are evicted least
 * recently used first when the fill would take the store above its high
 * watermark, down to the low one. A fill that cannot fit even then fails
 * with ENOSPC, naming sizes. A copy is deleted only after it left content/
 * by rename, and outside the store lock.
 * More: docs/internals/cache.md.
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

/* Who may be using copies: the node's volume records (csi/volumes.c),
 * asked before a copy is evicted or set aside. NULL refs: nobody. */
struct store_users {
    unsigned (*refs)(void *ctx, const char *cid); /* mounts that may show cid */
    void *ctx;
};

/* Room a running fill has claimed: need bytes, of which those added to
 * *done since, less those added to *resumed (found on disk from an earlier
 * fill: nothing new written), are written already and so show in the file
 * system's own free space. resumed may be NULL. */
struct store_reservation {
    struct store_reservation *next;
    uint64_t need;
    const _Atomic uint64_t *done, *resumed;
    uint64_t done0, resumed0;
};

struct store_lease {
    char cid[CONTENT_ID_LEN + 1];
    double until;            /* mono_s() */
};

struct store {
    char *root;
    int high_pct, low_pct;   /* eviction watermarks, percent of the store used */
    uint64_t part_size;      /* bytes per request of a fill; 0: per file (fill_part_size) */
    struct store_users users;
    pthread_mutex_t lock;    /* guards busy, pins, leases, reservations */
    pthread_cond_t cond;
    struct strbag busy;      /* content ids being filled now */
    struct strbag pins;      /* content ids a call is using now */
    struct store_lease *leases;
    size_t n_leases;
    struct store_reservation *reservations;
    _Atomic uint64_t evictions; /* copies evicted to make room (metrics) */
    _Atomic uint64_t removals;  /* copies evicted or set aside: the reporter's cue to unlabel */
};

int store_open(const char *root, struct store **ret, struct wc_error *e);
void store_set_watermarks(struct store *s, int high_pct, int low_pct);
void store_set_part_size(struct store *s, uint64_t bytes);
void store_set_users(struct store *s, const struct store_users *u);
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
/* Keeps a copy from eviction for a while without a pin: a fill finished for
 * a call that gave up waiting (ABORTED) and will be made again. */
void store_lease(struct store *s, const char *cid, double seconds);
/* Ends the lease: the copy is mounted now (its users keep it) or given up. */
void store_unlease(struct store *s, const char *cid);
/* Evicts unused copies (LRU) until `need` more bytes fit under the
 * watermarks, counting the room other running fills have claimed, and on
 * success claims need for the caller in *res (its done counter tells how
 * much is written so far; store_release_room gives it back). -ENOSPC with a
 * message naming the sizes when it cannot. Deletes the evicted copies after
 * dropping the store lock. */
int store_make_room(struct store *s, uint64_t need, const char *what, struct store_reservation *res,
                    struct wc_error *e);
void store_release_room(struct store *s, struct store_reservation *res);
/* Bytes held by ready copies that nothing uses (could be evicted). */
uint64_t store_evictable_bytes(struct store *s);

/* Metrics (observe/metrics.h): ctx is the store. */
struct obs_text;
void store_collect(void *ctx, struct obs_text *t);

/* Re-verifies a ready copy against its metadata (file count and bytes on
 * disk): 0 when it matches, -EBADMSG with what differs (the copy is
 * damaged), -ENOENT if gone, another negative errno when it could not be
 * read (EMFILE, ENOMEM, EIO): that is no verdict on the copy. */
int store_verify(const struct store *s, const char *cid, struct wc_error *e);

/* Moves a damaged copy out of the way, so the next fill makes a new one,
 * and deletes it; -EBUSY (nothing done) while a mount or call may use it:
 * pods keep what they see until they are gone. */
int store_set_aside(struct store *s, const char *cid);

/* An admin's eviction of one ready copy (warmcachectl evict): the bytes it
 * held in *ret_freed. -ENOENT (NOT_FOUND) when content/<cid> is not there:
 * no such copy, or one still filling (content/<cid>.partial) or set aside;
 * -ENOTCONN (FAILED_PRECONDITION) for a ready copy a mount may show, a call
 * pins, or a fill still holds (busy); another negative errno if it could
 * not be moved out. e says which. */
int store_evict(struct store *s, const char *cid, uint64_t *ret_freed, struct wc_error *e);

/* Copy metadata (meta/<cid>.json), NULL if there is none. */
json_t *store_meta(const struct store *s, const char *cid);
/* Records a use of a copy (last_used), for eviction and status: when it is
 * mounted and when a mount of it goes away. */
void store_touch(const struct store *s, const char *cid);
/* At start: drops debris a crash can leave (unjournaled partial copies,
 * metadata of gone copies) and returns {"resume": [fill journals],
 * "dropped": [paths]}. Mounts are not touched: pods keep working across a
 * plugin restart. */
json_t *store_reconcile(struct store *s);

/* All copies, ready and partial, as a JSON array for status. */
json_t *store_list(const struct store *s);
