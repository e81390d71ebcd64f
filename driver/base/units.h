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
