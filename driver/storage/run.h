/*
 * Running the programs that prepare disks (mdadm, mkfs.xfs, mkfs.ext4): by
 * path, with their output captured into the log and, on failure, into the
 * error a person reads. The path is the seam: tests pass a fake mdadm.
 */
#pragma once

#include "base/error.h"

/* Runs argv (NULL-terminated); a non-zero exit is -EIO with its output. */
int storage_run(const char *const argv[], struct wc_error *e);
