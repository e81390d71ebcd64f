/* See metrics.h. */
#include "observe/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void obs_printf(struct obs_text *t, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int w = vsnprintf(t->p ? t->p + t->n : NULL, t->p ? t->cap - t->n : 0, fmt, ap);
        va_end(ap);
        if (w < 0)
            return;
        if (t->p && t->n + (size_t)w < t->cap) {
            t->n += (size_t)w;
            return;
        }
        size_t cap = (t->cap + (size_t)w + 1) * 2;
        char *np = realloc(t->p, cap);
        if (!np)
            return;
        t->p = np;
        t->cap = cap;
    }
}

void obs_family(struct obs_text *t, const char *name, const char *type, const char *help)
{
    obs_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void obs_counter(struct obs_text *t, const char *name, const char *help, uint64_t v)
{
    obs_family(t, name, "counter", help);
    obs_printf(t, "%s %" PRIu64 "\n", name, v);
}

void obs_gauge(struct obs_text *t, const char *name, const char *help, double v)
{
    obs_family(t, name, "gauge", help);
    obs_printf(t, "%s %.17g\n", name, v);
}

void obs_histogram(struct obs_text *t, const char *name, const char *help, const double *bounds,
                   const uint64_t *cumulative, size_t n, double sum, uint64_t count)
{
    obs_family(t, name, "histogram", help);
    for (size_t b = 0; b < n; b++) {
        if (b == n - 1)
            obs_printf(t, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cumulative[b]);
        else
            obs_printf(t, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, bounds[b], cumulative[b]);
    }
    obs_printf(t, "%s_sum %.3f\n%s_count %" PRIu64 "\n", name, sum, name, count);
}

int obs_register(struct obs_registry *r, obs_collect_fn fn, void *ctx)
{
    if (r->n == OBS_COLLECTORS_MAX)
        return -ENOSPC;
    r->c[r->n].fn = fn;
    r->c[r->n].ctx = ctx;
    r->n++;
    return 0;
}

char *obs_render(const struct obs_registry *r)
{
    struct obs_text t = {0};
    obs_printf(&t, "%s", "");
    for (size_t i = 0; i < r->n; i++)
        r->c[i].fn(r->c[i].ctx, &t);
    return t.p;
}
