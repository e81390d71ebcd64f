/* See progress.h. */
#include "observe/progress.h"
#include "base/units.h"

#include <stdio.h>

void obs_progress_fmt(const struct obs_progress *p, struct obs_progress_text *ret)
{
    double rate = p->seconds > 0.2 ? (double)p->fresh / p->seconds : 0;
    ret->pct = p->total ? (int)(100.0 * (double)p->done / (double)p->total) : 100;
    fmt_bytes(p->done, ret->done, sizeof(ret->done));
    fmt_bytes(p->total, ret->total, sizeof(ret->total));
    fmt_rate(rate, ret->rate, sizeof(ret->rate));
    if (rate > 0 && p->total >= p->done)
        fmt_duration((double)(p->total - p->done) / rate, ret->eta, sizeof(ret->eta));
    else
        snprintf(ret->eta, sizeof(ret->eta), "unknown");
}

void obs_progress_line(const struct obs_progress *p, char *out, size_t n)
{
    struct obs_progress_text t;
    obs_progress_fmt(p, &t);
    snprintf(out, n, "%s/%s (%d%%), %s, ETA %s", t.done, t.total, t.pct, t.rate, t.eta);
}
