/*
 * Volume ids. CreateVolume derives the id from the request name, so a retried
 * CreateVolume returns the same id without any lookup. Node calls take ids
 * from the CO (and from hand-written static PVs): they are checked for sanity
 * and never used in a path directly; node records are named by a hash.
 */
#pragma once

#include <stddef.h>

#include "base/error.h"

#define VOLID_MAX 256
#define VOLID_PREFIX "wc1-"
#define VOLID_LEN (4 + 32)

void volid_from_name(const char *name, char out[VOLID_LEN + 1]);
/* 1 if id has the form CreateVolume gives. */
int volid_is_ours(const char *id);
/* Refuses empty, over-long and non-printable ids; `what` names the field. */
int volid_check(const char *id, const char *what, struct wc_error *e);
/* File-name-safe key for per-volume node state: 32 hex digits. */
void volid_key(const char *id, char out[33]);
