/* wc_error helpers: formatting only; the status mapping lives in rpc/status.c. */
#include "base/error.h"

#include <stdio.h>
#include <string.h>

__attribute__((format(printf, 3, 0))) static void set(struct wc_error *e, int code, const char *fmt, va_list ap)
{
    e->code = code < 0 ? code : -code;
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
}

int wc_err(struct wc_error *e, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set(e, code, fmt, ap);
    va_end(ap);
    return e->code;
}

int wc_err_errno(struct wc_error *e, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set(e, code, fmt, ap);
    va_end(ap);
    size_t n = strlen(e->msg);
    snprintf(e->msg + n, sizeof(e->msg) - n, ": %s", strerror(-e->code));
    return e->code;
}

int wc_err_prefix(struct wc_error *e, const char *fmt, ...)
{
    char prefix[WC_ERROR_MSG_MAX];
    char old[WC_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof(old));
    snprintf(e->msg, sizeof(e->msg), "%s%s", prefix, old);
    return e->code;
}
