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

int fill_transfer(struct store *s, struct source *src, const struct listing *l, const char *partial,
                  const char *tmpdir, uint64_t part_size, const atomic_int *cancel, struct fill_progress *p,
                  struct wc_error *e);
