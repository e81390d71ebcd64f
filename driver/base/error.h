/*
 * Errors travel as values: a function returns 0 or a negative errno-style code
 * and, where the fault is known, fills a struct wc_error with a message meant
 * for the person who has to fix it (a cluster admin reading kubectl describe).
 *
 * The code decides the gRPC status at the CSI boundary (see rpc/status.c, the
 * one table); inner code never logs and returns.
 * More: docs/internals/base.md.
 */
#pragma once

#include <errno.h>
#include <stdarg.h>

#define WC_ERROR_MSG_MAX 1024

struct wc_error {
    int code;                    /* negative errno, 0 when unset */
    char msg[WC_ERROR_MSG_MAX];  /* never contains a secret */
};

/* Set the error and return code (negative), so callers can `return wc_err(...)`. */
int wc_err(struct wc_error *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prefix an already-set error with context ("staging vol-1: " + msg); returns e->code. */
int wc_err_prefix(struct wc_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Like wc_err, appending ": strerror(-code)". */
int wc_err_errno(struct wc_error *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static inline void wc_error_clear(struct wc_error *e)
{
    e->code = 0;
    e->msg[0] = '\0';
}
