/*
 * Node volume state: what each volume staged or published on this node has
 * mounted, one record per volume (volumes/<key>.json under the store root),
 * read and written only through this module.
 *
 * A record is written *before* a mount is made and trimmed *after* one is
 * removed or has failed, so at any moment it names every mount that may
 * exist: after a crash a retried call converges, and no copy a mount may
 * show is ever counted as unused. Each mount names the copy it shows (the
 * staging mount and every target on its own), so a copy refilled under a
 * new id never leaves an older one unreferenced while a pod still sees it.
 * At start the records are checked against the mounts that are really there
 * (a reboot leaves none): see node_reconcile in node.c.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "cache/listing.h"

struct vol_target {
    char *path;
    char content_id[CONTENT_ID_LEN + 1]; /* the copy this mount shows */
    bool writable;                        /* a private overlay, else a read-only bind */
    char *flags;                          /* mount flags as given */
    uint64_t scratch_bytes;               /* writable: the writable layer's bound (0: none) */
};

struct vol_record {
    char *volume_id;
    char *source;
    char *staging_path;                   /* "" for an inline volume */
    char content_id[CONTENT_ID_LEN + 1];  /* the copy the staging mount shows; "" while none may exist */
    bool ephemeral;
    struct vol_target *targets;
    size_t n_targets;
};

struct volumes;

int volumes_open(const char *store_root, struct volumes **ret, struct wc_error *e);
void volumes_free(struct volumes *v);

/* A new, empty record for volid (the caller fills it). */
struct vol_record *vol_record_new(const char *volume_id, const char *source, const char *staging_path);
void vol_record_free(struct vol_record *r);
static inline void vol_record_freep(struct vol_record **r) { vol_record_free(*r); }
#define _cleanup_vol_record_ __attribute__((cleanup(vol_record_freep)))

/* 0 and the record; -ENOENT when the volume has none here; other errors
 * (a record that cannot be read) with e set. */
int volumes_get(struct volumes *v, const char *volume_id, struct vol_record **ret, struct wc_error *e);
int volumes_put(struct volumes *v, const struct vol_record *r, struct wc_error *e);
void volumes_drop(struct volumes *v, const char *volume_id);

/* Every record, for status and reconciliation; fn returns < 0 to stop. */
int volumes_each(struct volumes *v, int (*fn)(void *ctx, struct vol_record *r), void *ctx);

/* Mounts of records that may show the copy cid: what the store asks before
 * it evicts or sets a copy aside. */
unsigned volumes_refs(void *v, const char *cid);

struct vol_target *vol_record_target(const struct vol_record *r, const char *path, size_t *ret_index);
int vol_record_add_target(struct vol_record *r, const char *path, const char *cid, bool writable, const char *flags,
                          uint64_t scratch_bytes);
void vol_record_remove_target(struct vol_record *r, size_t index);

/* The directory of a target's writable layer: overlays/<volume key>/<target key>. */
int volumes_layer_dir(const struct volumes *v, const char *volume_id, const char *target, char *out, size_t n);
/* Calls fn for each writable layer no record names (a crash between the
 * unmount and the trim), then drops the volume directories left empty. Run
 * once at start, before calls are served. */
void volumes_orphan_layers(struct volumes *v, void (*fn)(void *ctx, const char *dir), void *ctx);
