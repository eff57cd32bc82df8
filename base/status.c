/* base/status.c — status names, error records and the assert handler. */
#include "status.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *loco_status_str(loco_status status)
{
    switch (status) {
    case LOCO_OK: return "ok";
    case LOCO_ERR_INVALID_ARG: return "invalid argument";
    case LOCO_ERR_NOMEM: return "out of memory";
    case LOCO_ERR_IO: return "I/O error";
    case LOCO_ERR_FORMAT: return "malformed data";
    case LOCO_ERR_VERSION: return "version mismatch";
    case LOCO_ERR_CHECKSUM: return "checksum mismatch";
    case LOCO_ERR_TRUNCATED: return "truncated data";
    case LOCO_ERR_RANGE: return "value out of range";
    case LOCO_ERR_CONFIG: return "invalid configuration";
    case LOCO_ERR_USAGE: return "invalid usage";
    case LOCO_ERR_NOT_FOUND: return "not found";
    case LOCO_ERR_UNSUPPORTED: return "unsupported";
    case LOCO_ERR_NONFINITE: return "non-finite value";
    case LOCO_ERR_PEER_LOST: return "peer lost";
    case LOCO_ERR_TIMEOUT: return "timed out";
    case LOCO_ERR_AUTH: return "authentication failed";
    case LOCO_ERR_PROTOCOL: return "protocol violation";
    case LOCO_ERR_ABORTED: return "aborted";
    case LOCO_ERR_SYSTEM: return "system call failed";
    case LOCO_ERR_CUDA: return "CUDA error";
    case LOCO_ERR_MPI: return "MPI error";
    case LOCO_ERR_STOPPED: return "stopped";
    case LOCO_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

int loco_status_exit_code(loco_status status)
{
    if (LOCO_OK == status) {
        return 0;
    }
    if (LOCO_ERR_CONFIG == status || LOCO_ERR_USAGE == status) {
        return 2;
    }
    return 1;
}

static loco_status error_vset(loco_error *err, loco_status status, int errnum, const char *fmt,
                              va_list ap)
{
    if (NULL == err || LOCO_OK != err->status) {
        return status;
    }
    err->status = status;
    int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    if (errnum && n >= 0 && (size_t)n < sizeof err->msg) {
        snprintf(err->msg + n, sizeof err->msg - (size_t)n, ": %s", strerror(errnum));
    }
    return status;
}

loco_status loco_error_set(loco_error *err, loco_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_vset(err, status, 0, fmt, ap);
    va_end(ap);
    return status;
}

loco_status loco_error_errno(loco_error *err, loco_status status, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_vset(err, status, errnum, fmt, ap);
    va_end(ap);
    return status;
}

void loco_error_clear(loco_error *err)
{
    if (NULL != err) {
        err->status = LOCO_OK;
        err->msg[0] = '\0';
    }
}

const char *loco_error_msg(const loco_error *err, loco_status status)
{
    if (NULL != err && LOCO_OK != err->status && '\0' != err->msg[0]) {
        return err->msg;
    }
    return loco_status_str(status);
}

void loco_assert_fail(const char *expr, const char *file, int line, const char *func)
{
    fprintf(stderr, "loco: assertion failed: %s (%s:%d in %s)\n", expr, file, line, func);
    fflush(stderr);
    abort();
}
