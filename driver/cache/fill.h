/*
 * The store's side of one fill (fill.c), used by store_fill: plans the parts
 * still missing from the partial copy, runs the source's transfer into
 * tmpdir, places each file in partial once it is whole and durable. Returns 0
 * when every listed file is in partial and every directory there is synced.
 */
#pragma once

#include <stdatomic.h>
#include <stdint.h>

#include "base/error.h"
#include "cache/source.h"
#include "cache/store.h"

#define FILL_PART_SIZE (8ull << 20)
/* With no part size given, a large file's parts grow (doubling) until it has
 * at most FILL_PARTS_PER_FILE of them, up to FILL_PART_MAX: a 4 GiB shard
 * takes 64 requests of 64 MiB, not 512 of 8 MiB. S3 limits requests a
 * second per prefix, not bytes; a fleet filling one model stays under it. */
#define FILL_PARTS_PER_FILE 64
#define FILL_PART_MAX (64ull << 20)

/* The bytes per request for a file of size bytes: part_size when one is
 * given, else as above from FILL_PART_SIZE. */
uint64_t fill_part_size(uint64_t part_size, uint64_t size);

/* part_size: 0 for the default (fill_part_size). */
int fill_transfer(struct store *s, struct source *src, const struct listing *l, const char *partial,
                  const char *tmpdir, uint64_t part_size, const atomic_int *cancel, struct fill_progress *p,
                  struct wc_error *e);
