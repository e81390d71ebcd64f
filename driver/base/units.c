/* See units.h. */
#include "base/units.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int parse_bytes(const char *s, uint64_t *ret)
{
    static const struct {
        const char *suffix;
        double mult;
    } units[] = {{"", 1},      {"k", 1e3},        {"K", 1e3},        {"M", 1e6},        {"G", 1e9},
                 {"T", 1e12},  {"P", 1e15},       {"Ki", 1024.0},    {"Mi", 1048576.0}, {"Gi", 1073741824.0},
                 {"Ti", 1099511627776.0}, {"Pi", 1125899906842624.0}};
    if (!s || !*s || strlen(s) > 32)
        return -EINVAL;
    size_t digits = strspn(s, "0123456789.");
    if (digits == 0 || strchr(s, '.') != strrchr(s, '.') || s[0] == '.')
        return -EINVAL;
    char num[40];
    snprintf(num, sizeof(num), "%.*s", (int)digits, s);
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(s + digits, units[i].suffix) != 0)
            continue;
        double v = strtod(num, NULL) * units[i].mult;
        if (v >= 18446744073709551615.0 || v != (double)(uint64_t)v)
            return -EINVAL; /* too big, or not a whole number of bytes */
        *ret = (uint64_t)v;
        return 0;
    }
    return -EINVAL;
}
