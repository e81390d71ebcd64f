/*
 * Ownership idioms shared by every module (systemd/crun style).
 *
 * A local declared with _cleanup_free_ or _cleanup_close_ is released when it
 * goes out of scope; TAKE_PTR/TAKE_FD hand ownership on and disarm the cleanup.
 * This keeps error paths short: return early, nothing leaks.
 */
#pragma once

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void freep(void *p) { free(*(void **)p); }
static inline void closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)

#define TAKE_PTR(p) ({ typeof(p) _tp = (p); (p) = NULL; _tp; })
#define TAKE_FD(fd) ({ int _tf = (fd); (fd) = -1; _tf; })

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define streq(a, b) (strcmp((a), (b)) == 0)

/* Retry a syscall expression while it fails with EINTR. */
#define RETRY_EINTR(expr) ({ typeof(expr) _r; do { _r = (expr); } while (_r < 0 && errno == EINTR); _r; })

/* jansson (>= 2.14 ships json_decrefp): json_t *x _cleanup_json_ = ...; */
#define _cleanup_json_ _cleanup_(json_decrefp)
