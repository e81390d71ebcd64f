/*
 * Metrics, the way every module publishes them: a registry of collectors,
 * each a module's own function that writes its families (counters,
 * gauges, histograms) into the Prometheus text exposition at scrape time,
 * from a snapshot of its own state. Nobody reads another module's structs;
 * the wiring (csi/ctx.c) only registers who collects what.
 *
 * Labels carry no user data: no source URLs, no names, nothing secret.
 * docs/internals/observe.md has the metric list and why each exists.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct obs_text {
    char *p;
    size_t n, cap;
};

/* printf into the exposition text (grows; on ENOMEM the scrape is cut short). */
void obs_printf(struct obs_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void obs_family(struct obs_text *t, const char *name, const char *type, const char *help);
void obs_counter(struct obs_text *t, const char *name, const char *help, uint64_t v);
void obs_gauge(struct obs_text *t, const char *name, const char *help, double v);
/* A histogram from cumulative bucket counts (bounds[i] ascending, the last +Inf). */
void obs_histogram(struct obs_text *t, const char *name, const char *help, const double *bounds,
                   const uint64_t *cumulative, size_t n, double sum, uint64_t count);

typedef void (*obs_collect_fn)(void *ctx, struct obs_text *t);

#define OBS_COLLECTORS_MAX 16
struct obs_registry {
    struct {
        obs_collect_fn fn;
        void *ctx;
    } c[OBS_COLLECTORS_MAX];
    size_t n;
};

/* 0, or -ENOSPC past OBS_COLLECTORS_MAX (a wiring mistake). */
int obs_register(struct obs_registry *r, obs_collect_fn fn, void *ctx);
/* The whole exposition (malloc'd, NUL-terminated), every collector in order. */
char *obs_render(const struct obs_registry *r);
