/*
 * How far a fill is, in the words every surface uses (FillProgress events,
 * ABORTED replies to kubelet, warmcachectl's bar and log lines):
 * "9.8 GiB/15.0 GiB (65%), 2.4 GB/s, ETA 2s". The rate counts only bytes
 * fetched by this run, not those found whole from an interrupted one.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct obs_progress {
    uint64_t done, total;  /* bytes in the copy so far, and in all */
    uint64_t fresh;        /* of done, fetched by this run */
    double seconds;        /* since this run began fetching */
};

struct obs_progress_text {
    int pct;
    char done[32], total[32], rate[32], eta[32]; /* eta "unknown" before a rate is known */
};

void obs_progress_fmt(const struct obs_progress *p, struct obs_progress_text *ret);
/* "9.8 GiB/15.0 GiB (65%), 2.4 GB/s, ETA 2s" */
void obs_progress_line(const struct obs_progress *p, char *out, size_t n);
