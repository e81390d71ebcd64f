/*
 * Internal errors are negative errno values chosen where the fault is known;
 * this table is the only place that decides what a CO sees. Kubelet retries
 * every code but the final ones, so the choice matters: ABORTED and
 * UNAVAILABLE mean "call again", INVALID_ARGUMENT and FAILED_PRECONDITION mean
 * "a person must fix something".
 */
#include "rpc/status.h"

#include <errno.h>
#include <stddef.h>

static const struct {
    int err;
    grpc_status_code status;
} table[] = {
    {0, GRPC_STATUS_OK},
    {EINVAL, GRPC_STATUS_INVALID_ARGUMENT},
    {ENAMETOOLONG, GRPC_STATUS_INVALID_ARGUMENT},
    {ELOOP, GRPC_STATUS_INVALID_ARGUMENT},
    {ENOENT, GRPC_STATUS_NOT_FOUND},
    {EEXIST, GRPC_STATUS_ALREADY_EXISTS},
    {EACCES, GRPC_STATUS_PERMISSION_DENIED},
    {EPERM, GRPC_STATUS_PERMISSION_DENIED},
    {ENOSPC, GRPC_STATUS_RESOURCE_EXHAUSTED},
    {EDQUOT, GRPC_STATUS_RESOURCE_EXHAUSTED},
    {EMFILE, GRPC_STATUS_RESOURCE_EXHAUSTED},
    {ENOMEM, GRPC_STATUS_RESOURCE_EXHAUSTED},
    {ESTALE, GRPC_STATUS_FAILED_PRECONDITION},      /* source changed under a pinned listing */
    {ENOTCONN, GRPC_STATUS_FAILED_PRECONDITION},    /* not staged yet */
    {EBUSY, GRPC_STATUS_ABORTED},                   /* another call on the same volume */
    {EAGAIN, GRPC_STATUS_ABORTED},
    {EINPROGRESS, GRPC_STATUS_ABORTED},             /* fill still running: call again */
    {ERANGE, GRPC_STATUS_OUT_OF_RANGE},             /* capacity smaller than the source */
    {ENOSYS, GRPC_STATUS_UNIMPLEMENTED},
    {EOPNOTSUPP, GRPC_STATUS_UNIMPLEMENTED},
    {ETIMEDOUT, GRPC_STATUS_DEADLINE_EXCEEDED},
    {ECANCELED, GRPC_STATUS_CANCELLED},
    {ECONNREFUSED, GRPC_STATUS_UNAVAILABLE},
    {ECONNRESET, GRPC_STATUS_UNAVAILABLE},
    {EHOSTUNREACH, GRPC_STATUS_UNAVAILABLE},
    {ENETUNREACH, GRPC_STATUS_UNAVAILABLE},
    {EBADMSG, GRPC_STATUS_DATA_LOSS},               /* a copy failed verification */
};

grpc_status_code rpc_status_from_errno(int code)
{
    int err = code < 0 ? -code : code;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (table[i].err == err)
            return table[i].status;
    return GRPC_STATUS_INTERNAL;
}

const char *rpc_status_name(grpc_status_code s)
{
    static const char *const names[] = {
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
        "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
        "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "UNKNOWN";
}
