/*
 * Named crash points, the seam of the stress tests (tests/stress): with
 * WARMCACHE_CRASH_AT=<name> in its environment the process kills itself
 * (SIGKILL, as kill -9 would) when it reaches that point, so a test can stop
 * it exactly between two steps whose order the crash safety argument rests
 * on. Without the variable a point costs one getenv.
 */
#pragma once

#include <signal.h>
#include <stdlib.h>
#include <string.h>

static inline void crash_point(const char *name)
{
    const char *at = getenv("WARMCACHE_CRASH_AT");
    if (at && strcmp(at, name) == 0)
        raise(SIGKILL);
}
