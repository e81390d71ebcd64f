/* Human-readable sizes, rates and durations for messages a person reads,
 * and the clock durations are measured with. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* 1536 -> "1.5 KiB"; binary units, one decimal. */
void fmt_bytes(uint64_t b, char *out, size_t n);
/* bytes per second -> "2.4 GB/s" (decimal, as network rates are quoted). */
void fmt_rate(double bytes_per_s, char *out, size_t n);
/* seconds -> "42s", "3m10s", "2h05m". */
void fmt_duration(double s, char *out, size_t n);

/* Seconds on the monotonic clock: for intervals, never for dates. */
double mono_s(void);

/* A Kubernetes-style quantity of bytes: "20Gi", "500M", "1.5Ti", "4096".
 * 0, or -EINVAL for anything else (a unit it does not know, a fraction of a
 * byte, a negative number, an overflow). */
int parse_bytes(const char *s, uint64_t *ret);
