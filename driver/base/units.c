/* See units.h. */
#include "base/units.h"

#include <stdio.h>
#include <time.h>

void fmt_bytes(uint64_t b, char *out, size_t n)
{
    static const char *const u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)b;
    size_t k = 0;
    while (v >= 1024 && k + 1 < sizeof(u) / sizeof(u[0])) {
        v /= 1024;
        k++;
    }
    snprintf(out, n, k ? "%.1f %s" : "%.0f %s", v, u[k]);
}

void fmt_rate(double r, char *out, size_t n)
{
    if (r >= 1e9)
        snprintf(out, n, "%.1f GB/s", r / 1e9);
    else if (r >= 1e6)
        snprintf(out, n, "%.0f MB/s", r / 1e6);
    else
        snprintf(out, n, "%.0f kB/s", r / 1e3);
}

void fmt_duration(double s, char *out, size_t n)
{
    long t = (long)(s + 0.5);
    if (t < 120)
        snprintf(out, n, "%lds", t);
    else if (t < 7200)
        snprintf(out, n, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(out, n, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
}

double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
